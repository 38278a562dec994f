//! The custom allocator slot of a space (SPEC 6.3): install and replace,
//! the guarded load, and the claim through the installed hook.
//!
//! INVARIANT: the slot holds null or a box made by `set_allocator`; a box
//! swapped out is freed through the epoch, so a hook loaded under a guard
//! stays valid for that guard's life.

use super::{Space, SpaceInner};
use crate::custom::{CustomAlloc, CustomHook};
use crate::domain::Guard;
use crate::entry::Payload;
use crate::error::Error;
use crate::sync::{AtomicU64, Ordering};
use crate::Ioasid;
use std::ptr;

impl<T: Payload, const F: usize> Space<T, F> {
    /// Installs (or, with `None`, removes) the custom allocator; returns the
    /// previous one. IDs already given keep going back to their own hook.
    ///
    /// ```
    /// use ioasid::{CustomAlloc, CustomAllocator, CustomHook, Space};
    /// struct Host;
    /// impl CustomAllocator for Host {
    ///     fn alloc(&self, _min: u32, max: u32) -> CustomAlloc { CustomAlloc::Id(max) }
    ///     fn free(&self, _id: u32) {}
    /// }
    /// let space = Space::<()>::new(0, 99)?;
    /// space.set_allocator(Some(CustomHook::new(Host)));
    /// assert_eq!(space.new_set().alloc(0, 99, ())?, 99);
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn set_allocator(&self, hook: Option<CustomHook>) -> Option<CustomHook> {
        let fresh = hook.map_or(ptr::null_mut(), |h| Box::into_raw(Box::new(h)));
        // AcqRel: Release publishes the new box; Acquire takes the old one's
        // contents before we clone it out.
        let old = self.inner.hook.swap(fresh, Ordering::AcqRel);
        if old.is_null() {
            return None;
        }
        // SAFETY: non-null hook pointers are boxes made above; allocations
        // may still read the old one, so it goes through the epoch.
        let previous = unsafe { (*old).clone() };
        let guard = self.pin();
        // SAFETY: `old` is unreachable from the slot now; readers that loaded
        // it are pinned, and the epoch frees it after them.
        unsafe { guard.defer_free(old) };
        Some(previous)
    }

    /// The installed custom allocator, if any.
    pub fn allocator(&self) -> Option<CustomHook> {
        let guard = self.pin();
        self.inner.hook(&guard).cloned()
    }
}

impl<T: Payload, const F: usize> SpaceInner<T, F> {
    fn hook<'g>(&self, _guard: &'g Guard) -> Option<&'g CustomHook> {
        // Acquire: pairs with the Release swap in `set_allocator`.
        let hook = self.hook.load(Ordering::Acquire);
        // SAFETY: a replaced hook box is freed through the epoch, after
        // `_guard`, which protects this domain.
        (!hook.is_null()).then(|| unsafe { &*hook })
    }

    /// Asks the installed hook; `None` when there is none or it says
    /// "fall back to software". An answer out of range or live is refused:
    /// it goes back to the hook's `free` and the allocation fails with
    /// `Error::Io` (SPEC 6.3).
    pub(super) fn claim_custom(
        &self,
        lo: Ioasid,
        hi: Ioasid,
        guard: &Guard,
    ) -> Option<Result<(Ioasid, &AtomicU64), Error>> {
        let hook = self.hook(guard)?;
        let id = match hook.allocator().alloc(lo, hi) {
            CustomAlloc::Id(id) => id,
            CustomAlloc::Failed(e) => return Some(Err(e)),
            CustomAlloc::Fallback => return None,
        };
        if (lo..=hi).contains(&id) {
            let key = u64::from(id - self.min);
            // Recorded before the word is published: a racing free of this
            // ID finds the record. Waits while a free of the number is
            // under way.
            let claimed = self.custom.record(id, hook, || self.tree.claim(key, key));
            if let Some((_, slot)) = claimed {
                return Some(Ok((id, slot)));
            }
        }
        hook.allocator().free(id);
        Some(Err(Error::Io))
    }
}
