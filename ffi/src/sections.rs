//! Read-side sections and the waiting checks.
//!
//! A thread that is inside a read-side section (its `ioasid_read_lock`, a
//! `for_each` or `getter` callback, a custom allocator hook) must not wait
//! for readers: it would wait for itself. Waiting functions detect it
//! (`in_read_section`) and return `-EDEADLK`, or abort with a message where
//! they return nothing.
//!
//! INVARIANT: a thread's `READ_DEPTH` is the number of its `READ_GUARDS`
//! plus the live `ReadSection`s it entered.

use crate::errno;
use crate::sets::domain;
use std::cell::{Cell, RefCell};
use std::ffi::c_int;

thread_local! {
    /// Guards of this thread's `ioasid_read_lock()` calls, innermost last.
    static READ_GUARDS: RefCell<Vec<ioasid_core::Guard>> = const { RefCell::new(Vec::new()) };
    /// How many read-side sections this thread is in: its read locks plus the
    /// library's own pins around C callbacks.
    static READ_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// True if this thread is inside a read-side section, where waiting for
/// readers would wait for itself.
pub(crate) fn in_read_section() -> bool {
    READ_DEPTH.with(Cell::get) > 0
}

/// Marks a read-side section of the library (around a C callback).
pub(crate) struct ReadSection(());

impl ReadSection {
    pub(crate) fn enter() -> ReadSection {
        READ_DEPTH.with(|d| d.set(d.get() + 1));
        ReadSection(())
    }
}

impl Drop for ReadSection {
    fn drop(&mut self) {
        READ_DEPTH.with(|d| d.set(d.get() - 1));
    }
}

pub(crate) fn read_lock() {
    let guard = domain().pin();
    READ_GUARDS.with(|g| g.borrow_mut().push(guard));
    READ_DEPTH.with(|d| d.set(d.get() + 1));
}

/// Ends the innermost read lock; false if this thread held none.
pub(crate) fn read_unlock() -> bool {
    let guard = READ_GUARDS.with(|g| g.borrow_mut().pop());
    match guard {
        Some(guard) => {
            READ_DEPTH.with(|d| d.set(d.get() - 1));
            drop(guard);
            true
        }
        None => false,
    }
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
