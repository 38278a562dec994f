//! Iterators over a set's IDs and a space's live IDs, bound to a guard.
//!
//! Both are external forms of the walks the library already has: a set's
//! iterator steps through its membership index (`members.rs`) one leaf word
//! at a time ([`Members::next_bits`](crate::members::Members::next_bits)),
//! a space's through the ID tree's claim words, leaf by leaf
//! (`Tree::next_claimed`). Nothing is collected: each step holds one leaf
//! word's bits and the key to resume from, so an iterator is a few words
//! and costs what `for_each` costs.
//!
//! Visibility is `for_each`'s (contract §3): ascending; an ID live for the
//! whole iteration is yielded exactly once; one allocated or freed meanwhile
//! may or may not be; a FREE_PENDING ID never is; a set's iterator never
//! yields another set's ID, and clears the stale member bits it meets as
//! `for_each` does (`members.rs`). Every key is re-checked in the ID tree
//! with an Acquire load under the guard, so a yielded [`Ref`] is a value the
//! ID held at that moment, valid while the guard lives.
//!
//! INVARIANT: an iterator holds `&'g Guard` of the space's domain (checked
//! when it is made) and only loads words under it, so every `Ref<'g, T>` it
//! yields points at a value the epoch keeps until the guard is dropped.

use crate::domain::Guard;
use crate::entry::{Payload, Ref};
use crate::set::Set;
use crate::space::Space;
use crate::sync::{AtomicU64, Ordering};
use crate::Ioasid;
use std::fmt;
use std::iter::FusedIterator;

/// The IDs of a [`Set`] with their data, ascending, under a guard (see
/// [`Set::iter`]).
pub struct SetIter<'g, T: Payload, const F: usize = 64> {
    set: &'g Set<T, F>,
    guard: &'g Guard,
    /// First key of the leaf word `bits` came from.
    base: u64,
    /// Candidate keys of that word not yet looked at.
    bits: u64,
    /// Where the next leaf word is searched from; `None` once past the end.
    resume: Option<u64>,
}

impl<T: Payload, const F: usize> Set<T, F> {
    /// The IDs of this set and their data, ascending, as `(id, data)`
    /// pairs valid while `guard` lives. Same visibility as
    /// [`Set::for_each`]: an ID live for the whole iteration is yielded
    /// exactly once, one allocated or freed meanwhile may or may not be, a
    /// FREE_PENDING one or another set's never is. The loop body may
    /// alloc, free and find in this set.
    ///
    /// ```
    /// let space = ioasid::Space::<u32>::new(0, 100)?;
    /// let (set, other) = (space.new_set(), space.new_set());
    /// set.alloc_exact(40, 4)?;
    /// set.alloc_exact(7, 1)?;
    /// other.alloc_exact(9, 99)?;
    /// let guard = space.pin();
    /// let seen: Vec<(u32, u32)> = set.iter(&guard).map(|(id, data)| (id, *data)).collect();
    /// assert_eq!(seen, [(7, 1), (40, 4)]);
    /// for (id, data) in set.iter(&guard) {
    ///     assert_eq!(set.copied(id), Ok(*data));
    /// }
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    ///
    /// # Panics
    /// If `guard` belongs to another domain.
    pub fn iter<'g>(&'g self, guard: &'g Guard) -> SetIter<'g, T, F> {
        assert!(
            guard.protects(self.space().domain()),
            "guard belongs to another domain"
        );
        SetIter {
            set: self,
            guard,
            base: 0,
            bits: 0,
            resume: Some(0),
        }
    }
}

impl<'g, T: Payload, const F: usize> Iterator for SetIter<'g, T, F> {
    type Item = (Ioasid, Ref<'g, T>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            while self.bits != 0 {
                let key = self.base + u64::from(self.bits.trailing_zeros());
                self.bits &= self.bits - 1;
                if let Some(word) = self.set.visible(key, self.guard) {
                    let id = self.set.space().min() + key as Ioasid;
                    // SAFETY: loaded under `self.guard`, which protects this
                    // space's domain (checked in `Set::iter`).
                    return Some((id, unsafe { Ref::new(word) }));
                }
            }
            let from = self.resume?;
            match self.set.core().members.next_bits(from) {
                Some((base, bits)) => {
                    self.base = base;
                    self.bits = bits;
                    self.resume = Some(base + F as u64);
                }
                None => self.resume = None,
            }
        }
    }
}

impl<T: Payload, const F: usize> FusedIterator for SetIter<'_, T, F> {}

impl<T: Payload, const F: usize> fmt::Debug for SetIter<'_, T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetIter")
            .field("set", &self.set)
            .field("resume", &self.resume)
            .finish_non_exhaustive()
    }
}

/// The live IDs of a [`Space`] with their data, ascending, under a guard
/// (see [`Space::iter`]).
pub struct SpaceIter<'g, T: Payload, const F: usize = 64> {
    space: &'g Space<T, F>,
    _guard: &'g Guard,
    base: u64,
    bits: u64,
    slots: Option<&'g [AtomicU64; F]>,
    resume: Option<u64>,
}

impl<T: Payload, const F: usize> Space<T, F> {
    /// The live IDs of this space, whichever set owns them, with their
    /// data, ascending, valid while `guard` lives. Visibility as
    /// [`Set::for_each`]'s: an ID live for the whole iteration is yielded
    /// exactly once, one allocated or freed meanwhile may or may not be, a
    /// FREE_PENDING one never is. The cost grows with the number of tree
    /// leaves the space has populated.
    ///
    /// ```
    /// let space = ioasid::Space::<u32>::new(1, 0xFFFFF)?;
    /// let (gpu, nic) = (space.new_set(), space.new_set());
    /// gpu.alloc_exact(0xFFFFF, 1)?;
    /// nic.alloc_exact(1, 2)?;
    /// let guard = space.pin();
    /// let all: Vec<(u32, u32)> = space.iter(&guard).map(|(id, v)| (id, *v)).collect();
    /// assert_eq!(all, [(1, 2), (0xFFFFF, 1)]);
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    ///
    /// # Panics
    /// If `guard` belongs to another domain.
    pub fn iter<'g>(&'g self, guard: &'g Guard) -> SpaceIter<'g, T, F> {
        assert!(
            guard.protects(self.domain()),
            "guard belongs to another domain"
        );
        SpaceIter {
            space: self,
            _guard: guard,
            base: 0,
            bits: 0,
            slots: None,
            resume: Some(0),
        }
    }
}

impl<'g, T: Payload, const F: usize> Iterator for SpaceIter<'g, T, F> {
    type Item = (Ioasid, Ref<'g, T>);

    fn next(&mut self) -> Option<Self::Item> {
        let inner = &*self.space.inner;
        loop {
            if let Some(slots) = self.slots {
                while self.bits != 0 {
                    let index = self.bits.trailing_zeros() as usize;
                    self.bits &= self.bits - 1;
                    // Acquire: pairs with the Release publish (alloc,
                    // set_data), so a boxed value's contents are visible.
                    let word = slots[index].load(Ordering::Acquire);
                    let key = self.base + index as u64;
                    if word == 0 || inner.is_pending_word(key, word) {
                        continue;
                    }
                    let id = self.space.min() + key as Ioasid;
                    // SAFETY: loaded under the guard, which protects this
                    // space's domain (checked in `Space::iter`).
                    return Some((id, unsafe { Ref::new(word) }));
                }
            }
            let from = self.resume?;
            match inner.tree.next_claimed(from) {
                Some((base, bits, slots)) => {
                    self.base = base;
                    self.bits = bits;
                    self.slots = Some(slots);
                    self.resume = Some(base + F as u64);
                }
                None => self.resume = None,
            }
        }
    }
}

impl<T: Payload, const F: usize> FusedIterator for SpaceIter<'_, T, F> {}

impl<T: Payload, const F: usize> fmt::Debug for SpaceIter<'_, T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpaceIter")
            .field("space", &self.space)
            .field("resume", &self.resume)
            .finish_non_exhaustive()
    }
}
