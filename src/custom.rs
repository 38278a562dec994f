//! Custom allocators: hooks that take number choice over from a space (a
//! paravirtual PASID allocator asking the host, a vendor driver's table).
//!
//! The space still records owner and data for IDs a hook chose, and keeps
//! which hook chose each of them ([`CustomIds`], a map used only for such
//! IDs), so every one goes back to its own hook when freed, even after the
//! hook was replaced.
//!
//! The order is the kernel's (SPEC 6.3): a free calls the hook while the ID
//! is still recorded (`find` sees it), and only then takes the word out,
//! releases the number and drops the record; an allocation whose hook
//! answers a number still being freed waits for that free to complete. An
//! answer the space refuses (out of range or live) goes back to the hook's
//! `free`, and the allocation fails with [`Error::Io`].

use crate::error::Error;
use crate::sync::{AtomicUsize, Condvar, Mutex, MutexGuard, Ordering};
use crate::Ioasid;
use std::collections::BTreeMap;
use std::fmt;

/// What a custom allocator answers to an allocation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomAlloc {
    /// Use this ID. It must lie in the requested range and not be live,
    /// else it goes back to [`CustomAllocator::free`] and the allocation
    /// fails with [`Error::Io`].
    Id(Ioasid),
    /// Let the space's own policy choose (the RFC's `-EAGAIN`).
    Fallback,
    /// Fail the allocation with this error.
    Failed(Error),
}

/// A hook that takes number choice over from a space (a paravirtual PASID
/// allocator asking the host, or a vendor driver with its own table).
///
/// The space still records owner and data, so find and for_each work
/// unchanged; IDs the hook gave are handed back to the same hook on free.
pub trait CustomAllocator: Send + Sync {
    /// Choose an ID in `min..=max`.
    fn alloc(&self, min: Ioasid, max: Ioasid) -> CustomAlloc;
    /// Takes back an ID this hook gave: one being freed, called while it is
    /// still recorded (`find` sees it; the ID is not recorded again before
    /// this returns), or an answer the space refused. Must not allocate or
    /// free in the same space (the kernel calls it under its lock).
    fn free(&self, id: Ioasid);
}

/// A shared allocator is an allocator: keep an `Arc` to inspect its state.
impl<A: CustomAllocator + ?Sized> CustomAllocator for std::sync::Arc<A> {
    fn alloc(&self, min: Ioasid, max: Ioasid) -> CustomAlloc {
        (**self).alloc(min, max)
    }
    fn free(&self, id: Ioasid) {
        (**self).free(id)
    }
}

/// A registered custom allocator, as installed in a space. Cheap to clone;
/// two handles are equal when they share one registration.
#[derive(Clone)]
pub struct CustomHook(std::sync::Arc<Box<dyn CustomAllocator>>);

impl CustomHook {
    /// Wraps an allocator for installation with [`Space::set_allocator`](crate::Space::set_allocator).
    pub fn new(allocator: impl CustomAllocator + 'static) -> Self {
        CustomHook(std::sync::Arc::new(Box::new(allocator)))
    }

    pub(crate) fn allocator(&self) -> &dyn CustomAllocator {
        &**self.0
    }
}

impl PartialEq for CustomHook {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for CustomHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CustomHook { .. }")
    }
}

/// What the space knows of one custom-allocated ID.
struct Record {
    /// The hook that chose it, to which it goes back.
    hook: CustomHook,
    /// How far a free of it has come; the number is not recorded again
    /// until the record is gone.
    free: FreeStage,
}

/// The stages of a custom ID's free.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum FreeStage {
    /// No free has begun.
    None,
    /// Freed, its FREE on its way: the hook has not been called (the host
    /// still holds the number, so an answer of it is refused, not waited
    /// for).
    Sending,
    /// The hook runs or has run: an answer of the number waits for the
    /// record to go.
    Hook,
}

/// The IDs custom allocators chose, and the hook of each.
///
/// INVARIANT: an ID has a record from the moment its number is claimed in
/// the tree for a hook's answer (under the lock) until its number is
/// released in the tree (under the lock, in [`CustomIds::finish_free`]);
/// `live` is the number of records. So a number that has a record is never
/// claimed by another custom answer, and every record's free calls the hook
/// once.
pub(crate) struct CustomIds {
    records: Mutex<BTreeMap<Ioasid, Record>>,
    /// Signalled when a record in the `Hook` stage goes.
    freed: Condvar,
    /// `records.len()`, read without the lock on every free.
    live: AtomicUsize,
}

/// The records, locked by a free: while it is held no number gains or
/// loses a record.
pub(crate) struct Records<'a>(MutexGuard<'a, BTreeMap<Ioasid, Record>>);

/// A custom-allocated ID's state, as [`Records::state`] reads it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Recorded, no free under way.
    Live,
    /// A free of it has begun.
    Freeing,
}

impl Records<'_> {
    /// The state of `id`, or `None` when it has no record (a software ID).
    pub(crate) fn state(&self, id: Ioasid) -> Option<State> {
        self.0.get(&id).map(|r| match r.free {
            FreeStage::None => State::Live,
            FreeStage::Sending | FreeStage::Hook => State::Freeing,
        })
    }

    /// Marks the live record of `id` as being freed by the caller, who must
    /// then call the returned hook and [`CustomIds::finish_free`].
    pub(crate) fn start_free(&mut self, id: Ioasid) -> CustomHook {
        self.mark(id, FreeStage::Hook)
    }

    /// As [`Records::start_free`], for a free that sends its FREE first:
    /// the caller calls [`CustomIds::begin_hook`] once it was sent, then
    /// the hook, then [`CustomIds::finish_free`].
    pub(crate) fn start_free_sending(&mut self, id: Ioasid) -> CustomHook {
        self.mark(id, FreeStage::Sending)
    }

    fn mark(&mut self, id: Ioasid, stage: FreeStage) -> CustomHook {
        let record = self.0.get_mut(&id).expect("a live record");
        debug_assert_eq!(record.free, FreeStage::None);
        record.free = stage;
        record.hook.clone()
    }
}

impl CustomIds {
    pub(crate) fn new() -> CustomIds {
        CustomIds {
            records: Mutex::new(BTreeMap::new()),
            freed: Condvar::new(),
            live: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Ioasid, Record>> {
        // Every change is one map operation (or one flag store): a poisoned
        // map is still consistent.
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// False when no ID has a record, so a free need not take the lock.
    ///
    /// Relaxed: a hint. An ID's record is made under the lock before its
    /// word is published with Release; a free that loaded that word with
    /// Acquire therefore reads a count that includes it.
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.live.load(Ordering::Relaxed) > 0
    }

    /// Records `id` as `hook`'s if `claim` (the tree claim of its number)
    /// succeeds: waits while a free of the same number is under way, and
    /// returns `None`, recording nothing, when the number has a record of
    /// a live ID or `claim` fails.
    pub(crate) fn record<R>(
        &self,
        id: Ioasid,
        hook: &CustomHook,
        claim: impl FnOnce() -> Option<R>,
    ) -> Option<R> {
        let mut records = self.lock();
        while records.get(&id).is_some_and(|r| r.free == FreeStage::Hook) {
            records = self.freed.wait(records).unwrap_or_else(|e| e.into_inner());
        }
        if records.contains_key(&id) {
            return None;
        }
        let claimed = claim()?;
        records.insert(
            id,
            Record {
                hook: hook.clone(),
                free: FreeStage::None,
            },
        );
        // Relaxed: see `any`; the lock orders the map itself.
        self.live.fetch_add(1, Ordering::Relaxed);
        Some(claimed)
    }

    /// For the invariant walk (quiescent space): the counter matches the
    /// records, and no free is under way.
    pub(crate) fn check_quiescent(&self) -> Result<(), String> {
        let records = self.lock();
        // Relaxed: quiescent.
        let counted = self.live.load(Ordering::Relaxed);
        if records.len() != counted {
            return Err(format!(
                "custom IDs: {} records, counter {counted}",
                records.len()
            ));
        }
        match records.iter().find(|(_, r)| r.free != FreeStage::None) {
            Some((id, _)) => Err(format!("custom ID {id}: a free never finished")),
            None => Ok(()),
        }
    }

    /// True if `id` has a record (a custom allocator gave it).
    pub(crate) fn is_recorded(&self, id: Ioasid) -> bool {
        self.lock().contains_key(&id)
    }

    /// Locks the records for a free's check and CAS.
    pub(crate) fn lock_for_free(&self) -> Records<'_> {
        Records(self.lock())
    }

    /// The FREE of a free begun by [`Records::start_free_sending`] was
    /// sent: its hook is called next.
    pub(crate) fn begin_hook(&self, id: Ioasid) {
        let mut records = self.lock();
        let record = records.get_mut(&id).expect("a record being freed");
        debug_assert_eq!(record.free, FreeStage::Sending);
        record.free = FreeStage::Hook;
    }

    /// Completes a free begun by [`Records::start_free`]: `release` (the tree release
    /// of the number) and the removal of the record happen under the lock,
    /// then waiting allocations of the number go on.
    pub(crate) fn finish_free(&self, id: Ioasid, release: impl FnOnce()) {
        let mut records = self.lock();
        release();
        let removed = records.remove(&id);
        debug_assert!(removed.is_some_and(|r| r.free == FreeStage::Hook));
        // Relaxed: see `any`.
        self.live.fetch_sub(1, Ordering::Relaxed);
        drop(records);
        self.freed.notify_all();
    }
}
