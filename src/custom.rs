//! Custom allocators: hooks that take number choice over from a space (a
//! paravirtual PASID allocator asking the host, a vendor driver's table).
//!
//! The space still records owner and data for IDs a hook chose, and keeps
//! which hook chose each of them (a map used only for such IDs), so every
//! one goes back to its own hook when freed, even after the hook was
//! replaced.

use crate::error::Error;
use crate::Ioasid;
use std::fmt;

/// What a custom allocator answers to an allocation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomAlloc {
    /// Use this ID. It must lie in the requested range and not be live,
    /// else the allocation fails with [`Error::BadCustomId`].
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
    /// An ID this hook gave has been freed.
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
