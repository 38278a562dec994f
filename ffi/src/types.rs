//! The C types of the ABI that are not one API family's: `ioasid_t`,
//! `enum ioasid_policy`, `struct ioasid_set`, and the per-ID data `CData`.
//!
//! `struct ioasid_set` is C memory of a fixed size. Its first word is an
//! atomic pointer to the library's set state (see `sets`), null until first
//! use; C must not touch it.

#![allow(non_camel_case_types)]

use std::ffi::c_void;

/// An I/O address space ID (`typedef unsigned int ioasid_t`).
pub type ioasid_t = std::ffi::c_uint;

/// The allocation policy of a space created with `ioasid_space_create`.
/// Functions take it as a plain `unsigned int`: an unknown value is refused,
/// never undefined behaviour.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ioasid_policy {
    /// The lowest free ID at or above `min` (the kernel IDA contract).
    IOASID_POLICY_LOWEST = 0,
    /// The lowest free ID after the last one handed out, wrapping to `min`.
    IOASID_POLICY_CYCLIC = 1,
    /// Any free ID in range (best scaling, no ordering promise).
    IOASID_POLICY_ANY = 2,
}

/// A consumer of IDs (`DECLARE_IOASID_SET(name)` = all zero: ready to use).
///
/// Fixed size so C can embed it by value (the RFC's `struct iommu_pasid`
/// does). C must not touch its fields.
///
/// One array member, so that `{ 0 }` initialises it without warnings in C
/// and C++ alike.
#[repr(C)]
pub struct ioasid_set {
    /// Word 0: atomic pointer to the library's set state, null until first
    /// use. Words 1..3: reserved, zero.
    pub(crate) opaque: [*mut c_void; 4],
}

impl ioasid_set {
    /// The all-zero set of `DECLARE_IOASID_SET`.
    pub(crate) const fn zeroed() -> ioasid_set {
        ioasid_set {
            opaque: [std::ptr::null_mut(); 4],
        }
    }
}

/// The private data the library stores per ID: the caller's pointer only.
/// Facts about a consumer (such as which IDs its vendor gave) live with the
/// consumer, not in every ID, so the data is stored inline in the entry.
#[derive(Clone, Copy)]
pub(crate) struct CData {
    /// The caller's pointer (NULL allowed).
    pub(crate) ptr: *mut c_void,
}

// SAFETY: the pointer is opaque to the library, which never dereferences it.
unsafe impl Send for CData {}
// SAFETY: as above; shared references only copy the pointer.
unsafe impl Sync for CData {}

// SAFETY: a pointer that fits 48 bits is stored inline as its bits and
// rebuilt from them: a plain copy, no ownership, no drop glue, no interior
// mutability. Any other is stored boxed (the provided methods).
unsafe impl ioasid_core::Payload for CData {
    fn to_inline(&self) -> Option<u64> {
        let bits = self.ptr as usize as u64;
        (bits < 1 << 48).then_some(bits)
    }

    unsafe fn from_inline(bits: u64) -> Self {
        CData::new(bits as usize as *mut c_void)
    }
}

impl CData {
    pub(crate) fn new(ptr: *mut c_void) -> Self {
        CData { ptr }
    }
}
