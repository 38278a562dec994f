//! Read-side sections and the waiting checks.
//!
//! A thread that is inside a read-side section (its `ioasid_read_lock`, a
//! `for_each` or `getter` callback, a custom allocator hook) must not wait
//! for readers: it would wait for itself. Waiting functions detect it
//! (`in_read_section`) and return `-EDEADLK`, or abort with a message where
//! they return nothing.
//!
//! `ioasid_read_lock` nests per thread: a counter, and one cached guard
//! pinned by the outermost lock and dropped by the outermost unlock.
//!
//! INVARIANT: a thread's `READ_GUARD` holds a guard exactly while its
//! `DEPTH.locks` is non-zero; `DEPTH.locks + DEPTH.sections` is non-zero
//! exactly while the thread is inside a read-side section.

use crate::errno;
use crate::sets::domain;
use std::cell::Cell;
use std::ffi::c_int;

/// How deep this thread is in read-side sections.
struct Depth {
    /// Its `ioasid_read_lock()` calls not yet unlocked.
    locks: Cell<usize>,
    /// The library's own sections around C callbacks ([`ReadSection`]).
    sections: Cell<usize>,
}

thread_local! {
    /// Plain counters, no destructor: each access is a load from the
    /// thread's block, with no lazy-init check.
    static DEPTH: Depth = const {
        Depth {
            locks: Cell::new(0),
            sections: Cell::new(0),
        }
    };
    /// The guard of this thread's outermost read lock, if any. Touched only
    /// by the outermost lock and unlock.
    /// A `Cell`, not a `RefCell`: the guard only moves in and out whole.
    static READ_GUARD: Cell<Option<ioasid_core::Guard>> = const { Cell::new(None) };
}

/// True if this thread is inside a read-side section, where waiting for
/// readers would wait for itself.
pub(crate) fn in_read_section() -> bool {
    DEPTH.with(|d| d.locks.get() + d.sections.get() > 0)
}

/// Marks a read-side section of the library (around a C callback).
pub(crate) struct ReadSection(());

impl ReadSection {
    pub(crate) fn enter() -> ReadSection {
        DEPTH.with(|d| d.sections.set(d.sections.get() + 1));
        ReadSection(())
    }
}

impl Drop for ReadSection {
    fn drop(&mut self) {
        DEPTH.with(|d| d.sections.set(d.sections.get() - 1));
    }
}

/// Enters a read lock: pins on the outermost one only.
#[inline]
pub(crate) fn read_lock() {
    let outer = DEPTH.with(|d| {
        let locks = d.locks.get();
        d.locks.set(locks + 1);
        locks == 0
    });
    if outer {
        let guard = domain().pin();
        let before = READ_GUARD.with(|g| g.replace(Some(guard)));
        // INVARIANT: the outermost lock finds no guard (the outermost unlock
        // took it), so nothing is dropped here.
        debug_assert!(before.is_none());
        std::mem::forget(before);
    }
}

/// Ends the innermost read lock (unpinning on the outermost); false if this
/// thread held none.
#[inline]
pub(crate) fn read_unlock() -> bool {
    let Some(left) = DEPTH.with(|d| {
        let locks = d.locks.get().checked_sub(1)?;
        d.locks.set(locks);
        Some(locks)
    }) else {
        return false;
    };
    if left == 0 {
        // Taken out before the drop: unpinning may run deferred drops,
        // which must find the cache released.
        let guard = READ_GUARD.with(Cell::take);
        drop(guard);
    }
    true
}

/// True while this thread's read locks hold their cached guard.
#[cfg(test)]
pub(crate) fn holds_read_guard() -> bool {
    READ_GUARD.with(|g| {
        let guard = g.take();
        let held = guard.is_some();
        g.set(guard);
        held
    })
}

/// Waits for every reader of every space, or reports that this thread would
/// wait for itself.
pub(crate) fn wait_for_readers() -> Result<(), c_int> {
    if in_read_section() {
        return Err(-errno::EDEADLK);
    }
    domain().synchronize();
    Ok(())
}

/// Aborts for a void function called where it would wait for itself.
pub(crate) fn abort_deadlock(function: &str) -> ! {
    eprintln!(
        "ioasid: {function}() called inside a read-side section \
         (ioasid_read_lock or a callback) would wait for itself: aborting"
    );
    std::process::abort()
}
