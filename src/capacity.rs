//! Capacity: a pool of quota that sets reserve from (SPEC 6.4, the extended
//! IOASID core's system capacity).
//!
//! A [`Capacity`] holds a total number of IDs; a set made with
//! [`Space::try_new_set_from`](crate::Space::try_new_set_from) reserves its
//! quota from it, [`Set::adjust_quota`](crate::Set::adjust_quota) takes a
//! raise from it or gives a cut back, and dropping the set gives its quota
//! back. The capacity bounds the sum of quotas, not the live IDs: a set
//! still holds at most its quota of live IDs, counted as before.
//!
//! INVARIANT: the one word `[total:32 | reserved:32]` has `reserved <=
//! total` at all times, and `reserved` is the sum of the quotas of the live
//! sets made from this capacity. Every change is one compare-and-swap, so a
//! reservation checks what is left and takes it in one step, and a change of
//! the total checks that nothing is reserved and stores in one step.

use crate::error::Error;
use crate::sync::{Arc, AtomicU64, Ordering};
use std::fmt;

const LOW: u64 = u32::MAX as u64;

/// A shared pool of quota (a cheap handle: clones share the pool).
///
/// ```
/// use ioasid::{Capacity, Error, Space};
/// let capacity = Capacity::new(10);
/// let space = Space::<()>::new(1, 0xFFFFF)?;
/// let vm1 = space.try_new_set_from(&capacity, 6)?;
/// assert_eq!(capacity.available(), 4);
/// assert_eq!(space.try_new_set_from(&capacity, 5).err(), Some(Error::NoSpace));
/// vm1.adjust_quota(10)?;
/// assert_eq!(capacity.available(), 0);
/// drop(vm1); // its quota goes back
/// assert_eq!(capacity.available(), 10);
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone)]
pub struct Capacity {
    word: Arc<AtomicU64>,
}

impl Capacity {
    /// A pool of `total` IDs, none reserved.
    ///
    /// ```
    /// let capacity = ioasid::Capacity::new(0xFFFFF);
    /// assert_eq!((capacity.total(), capacity.available()), (0xFFFFF, 0xFFFFF));
    /// ```
    pub fn new(total: u32) -> Capacity {
        Capacity {
            word: Arc::new(AtomicU64::new(u64::from(total) << 32)),
        }
    }

    fn load(&self) -> u64 {
        // Relaxed: the word guards nothing but itself (module invariant).
        self.word.load(Ordering::Relaxed)
    }

    /// The total.
    ///
    /// ```
    /// assert_eq!(ioasid::Capacity::new(7).total(), 7);
    /// ```
    pub fn total(&self) -> u32 {
        (self.load() >> 32) as u32
    }

    /// The quota reserved by live sets.
    ///
    /// ```
    /// let capacity = ioasid::Capacity::new(8);
    /// let space = ioasid::Space::<()>::new(0, 99)?;
    /// let _set = space.try_new_set_from(&capacity, 3)?;
    /// assert_eq!(capacity.reserved(), 3);
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn reserved(&self) -> u32 {
        (self.load() & LOW) as u32
    }

    /// What is left to reserve: total minus reserved.
    ///
    /// ```
    /// let capacity = ioasid::Capacity::new(8);
    /// let space = ioasid::Space::<()>::new(0, 99)?;
    /// let _set = space.try_new_set_from(&capacity, 3)?;
    /// assert_eq!(capacity.available(), 5);
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn available(&self) -> u32 {
        let word = self.load();
        ((word >> 32) - (word & LOW)) as u32
    }

    /// Changes the total: [`Error::Busy`] while any quota is reserved
    /// (nothing changed).
    ///
    /// ```
    /// let capacity = ioasid::Capacity::new(8);
    /// let space = ioasid::Space::<()>::new(0, 99)?;
    /// let set = space.try_new_set_from(&capacity, 1)?;
    /// assert_eq!(capacity.set_total(100), Err(ioasid::Error::Busy));
    /// drop(set);
    /// capacity.set_total(100)?;
    /// assert_eq!(capacity.total(), 100);
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn set_total(&self, total: u32) -> Result<(), Error> {
        let mut word = self.load();
        loop {
            if word & LOW != 0 {
                return Err(Error::Busy);
            }
            // Relaxed: as in `load`; the CAS checks and stores in one step.
            match self.word.compare_exchange_weak(
                word,
                u64::from(total) << 32,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => word = now,
            }
        }
    }

    /// True if `other` is a handle of the same pool.
    pub(crate) fn same_pool(&self, other: &Capacity) -> bool {
        Arc::ptr_eq(&self.word, &other.word)
    }

    /// Reserves `n`: [`Error::NoSpace`] if less is left (nothing changed).
    pub(crate) fn take(&self, n: u64) -> Result<(), Error> {
        let mut word = self.load();
        loop {
            if (word & LOW) + n > word >> 32 {
                return Err(Error::NoSpace);
            }
            // Relaxed: as in `set_total`.
            match self.word.compare_exchange_weak(
                word,
                word + n,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => word = now,
            }
        }
    }

    /// Gives back `n` that an earlier `take` reserved.
    pub(crate) fn give(&self, n: u64) {
        // Relaxed: as in `load`. `n` was reserved, so the count does not
        // borrow from the total.
        self.word.fetch_sub(n, Ordering::Relaxed);
    }
}

impl fmt::Debug for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.load();
        f.debug_struct("Capacity")
            .field("total", &(word >> 32))
            .field("reserved", &(word & LOW))
            .finish()
    }
}
