//! The one place the core takes its atomics and thread-locals from.
//!
//! Under `--cfg ioasid_loom` every atomic, fence and thread-local of the core
//! is loom's, so the loom models in `loom-tests/` see every access. Nothing
//! else in the crate names `std::sync::atomic` directly.

#[cfg(not(ioasid_loom))]
pub(crate) use std::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(not(ioasid_loom))]
pub(crate) use std::sync::Arc;
#[cfg(not(ioasid_loom))]
pub(crate) use std::thread::yield_now;
#[cfg(not(ioasid_loom))]
pub(crate) use std::thread_local;

#[cfg(ioasid_loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(ioasid_loom)]
pub(crate) use loom::sync::Arc;
#[cfg(ioasid_loom)]
pub(crate) use loom::thread::yield_now;
#[cfg(ioasid_loom)]
pub(crate) use loom::thread_local;

/// An array of `N` atomics built one by one (loom's atomics have no `const fn new`).
pub(crate) fn atomic_array<A, const N: usize>(make: impl FnMut(usize) -> A) -> [A; N] {
    std::array::from_fn(make)
}
