//! Sets found by token (SPEC 6.4's MM sets): at most one live set per
//! token, looked up by that token.
//!
//! In Rust a set reference is an `Arc<Set>`: a clone is `ioasid_set_get`,
//! a drop `ioasid_set_put`, and the last drop tears the set down (frees
//! its IDs, gives its quota back to its [`Capacity`]). A [`TokenSets`]
//! holds only weak references, so it never keeps a set alive: a token's
//! set is found while someone holds it, and the token is free again once
//! the last holder dropped it.
//!
//! INVARIANT: the map holds, per token, the one set created for it that may
//! still be alive; a create for a token whose set can no longer be upgraded
//! replaces the entry, and entries of dead sets are pruned on create.

use crate::capacity::Capacity;
use crate::entry::Payload;
use crate::error::Error;
use crate::set::Set;
use crate::space::Space;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, Weak};

/// One set per token, in one space, with quotas from one [`Capacity`].
///
/// ```
/// use ioasid::{Capacity, Error, Space, TokenSets};
/// let space = Space::<()>::new(1, 0xFFFFF)?;
/// let mms: TokenSets<u32, ()> = TokenSets::new(space, Capacity::new(0xFFFFF));
/// let vm = mms.create(1234, 16)?; // the set of process 1234
/// assert_eq!(mms.create(1234, 16).err(), Some(Error::AlreadyExists));
/// let found = mms.find(&1234).expect("held by vm");
/// assert!(std::sync::Arc::ptr_eq(&vm, &found));
/// drop((vm, found)); // the last reference: torn down
/// assert!(mms.find(&1234).is_none());
/// assert!(mms.create(1234, 16).is_ok(), "the token is free again");
/// # Ok::<(), Error>(())
/// ```
pub struct TokenSets<K, T: Payload, const F: usize = 64> {
    space: Space<T, F>,
    capacity: Capacity,
    sets: Mutex<HashMap<K, Weak<Set<T, F>>>>,
}

impl<K: Hash + Eq + Clone, T: Payload, const F: usize> TokenSets<K, T, F> {
    /// An empty registry of sets of `space`, reserving from `capacity`.
    pub fn new(space: Space<T, F>, capacity: Capacity) -> Self {
        TokenSets {
            space,
            capacity,
            sets: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<K, Weak<Set<T, F>>>> {
        // Every change is one map operation: a poisoned lock holds a
        // consistent map.
        self.sets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new set for `token` with `quota` reserved from the capacity, held
    /// by the returned `Arc` (`ioasid_alloc_set` of type MM).
    /// [`Error::AlreadyExists`] while the token's set is alive;
    /// [`Error::NoSpace`] when the capacity has less than `quota` left.
    pub fn create(&self, token: K, quota: usize) -> Result<Arc<Set<T, F>>, Error> {
        let mut sets = self.map();
        if sets.get(&token).is_some_and(|s| s.strong_count() > 0) {
            return Err(Error::AlreadyExists);
        }
        let set = Arc::new(self.space.try_new_set_from(&self.capacity, quota)?);
        sets.retain(|_, s| s.strong_count() > 0);
        sets.insert(token, Arc::downgrade(&set));
        Ok(set)
    }

    /// The live set of `token`, with a reference (`ioasid_find_mm_set`);
    /// `None` if it has none. A set whose last reference is being dropped
    /// is never revived.
    ///
    /// ```
    /// let mms = ioasid::TokenSets::<&str, ()>::new(
    ///     ioasid::Space::new(0, 9)?,
    ///     ioasid::Capacity::new(10),
    /// );
    /// assert!(mms.find(&"vm").is_none());
    /// let _vm = mms.create("vm", 1)?;
    /// assert_eq!(mms.find(&"vm").and_then(|s| s.quota()), Some(1));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn find(&self, token: &K) -> Option<Arc<Set<T, F>>> {
        self.map().get(token).and_then(Weak::upgrade)
    }

    /// The capacity the sets reserve from.
    ///
    /// ```
    /// let mms = ioasid::TokenSets::<u8, ()>::new(ioasid::Space::new(0, 9)?, ioasid::Capacity::new(4));
    /// let _a = mms.create(1, 3)?;
    /// assert_eq!(mms.capacity().available(), 1);
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn capacity(&self) -> &Capacity {
        &self.capacity
    }

    /// The space of the sets.
    pub fn space(&self) -> &Space<T, F> {
        &self.space
    }
}

impl<K, T: Payload, const F: usize> fmt::Debug for TokenSets<K, T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSets")
            .field("space", &self.space)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}
