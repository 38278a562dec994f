//! The one place the core takes its atomics and thread-locals from.
//!
//! Under `--cfg ioasid_loom` every atomic, fence and thread-local of the core
//! is loom's, so the loom models in `loom-tests/` see every access. Nothing
//! else in the crate names `std::sync::atomic` directly.

#[cfg(not(ioasid_loom))]
pub(crate) use std::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(not(ioasid_loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(not(ioasid_loom))]
pub(crate) use std::thread::yield_now;
#[cfg(not(ioasid_loom))]
pub(crate) use std::thread_local;

#[cfg(ioasid_loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(ioasid_loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(ioasid_loom)]
pub(crate) use loom::thread::yield_now;
#[cfg(ioasid_loom)]
pub(crate) use loom::thread_local;

/// An array of `N` atomics built one by one (loom's atomics have no `const fn new`).
pub(crate) fn atomic_array<A, const N: usize>(make: impl FnMut(usize) -> A) -> [A; N] {
    std::array::from_fn(make)
}

/// Publishes `fresh` in the empty `slot`, or, if another thread published a
/// node first, hands `fresh` to `discard` (nobody else ever saw it) and
/// returns the winner. Returns the slot's node either way. Callers check
/// the slot first (an Acquire load) and call this only when it was empty;
/// installed nodes are never replaced while their parent lives.
pub(crate) fn install<N>(
    slot: &AtomicPtr<N>,
    fresh: *mut N,
    discard: impl FnOnce(*mut N),
) -> *mut N {
    // AcqRel: Release publishes our node's initialised contents to readers'
    // Acquire loads; Acquire on failure reads the winner's.
    match slot.compare_exchange(
        std::ptr::null_mut(),
        fresh,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => fresh,
        Err(winner) => {
            discard(fresh);
            winner
        }
    }
}

/// The node in `slot`, built with `make` and installed if the slot is empty
/// and `create`; `None` if it is empty and not `create`. For lazily built
/// tables whose nodes, once installed, stay until the table drops.
///
/// # Safety
/// A node installed in `slot` is never replaced or freed while `slot` is
/// borrowed (only the table's drop, with exclusive access, frees it).
pub(crate) unsafe fn child_or_install<N>(
    slot: &AtomicPtr<N>,
    create: bool,
    make: impl FnOnce() -> N,
) -> Option<&N> {
    // Acquire: pairs with the Release of `install`, so the node's
    // initialised contents are visible.
    let mut node = slot.load(Ordering::Acquire);
    if node.is_null() {
        if !create {
            return None;
        }
        node = install(slot, Box::into_raw(Box::new(make())), |lost| {
            // SAFETY: our unpublished node.
            drop(unsafe { Box::from_raw(lost) })
        });
    }
    // SAFETY: installed and never replaced or freed while `slot` is
    // borrowed (the caller's contract).
    Some(unsafe { &*node })
}

/// A value alone on its cache lines (128 bytes: adjacent-line prefetch pairs
/// 64-byte lines on x86). For words written on hot paths (the Cyclic cursor,
/// `hint_seq`, quota counters), so that the words every lookup reads (a
/// space's range, the tree's root) do not ping-pong between cores.
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
