//! # C ABI of ioasid (`include/ioasid.h`, `libioasid.a`, `libioasid.so`)
//!
//! A thin layer over the Rust API of the `ioasid` crate: it checks the
//! arguments C hands it, converts them, calls a [`ioasid_core::Space`] or
//! [`ioasid_core::Set`] whose data is the caller's `void *`, and maps errors to
//! negative errno values (or `INVALID_IOASID` / `ERR_PTR` where the kernel's
//! prototypes return those). The functions and their semantics are the
//! kernel's v5.5 `ioasid_*`, the 2018 RFC's `iommu_pasid_*`, and our
//! extensions; see docs/CONTRACT.md §5.
//!
//! ## Layout
//!
//! One module per concern, each stating its invariants:
//! - `types`: the C types shared by the API families (`ioasid_t`,
//!   `enum ioasid_policy`, `struct ioasid_set`) and the per-ID data;
//! - `sets`: the state behind a `struct ioasid_set`, the global space;
//! - `guard`: the panic boundary, [`ffi_guard!`];
//! - `sections`: read-side sections and the checks of waiting functions;
//! - [`errno`]: errno values, negative errno and `ERR_PTR` returns.
//!
//! One module per API family, holding its `extern "C"` functions and types:
//! - `kernel`: the kernel v5.5 `ioasid_*` functions and custom allocators;
//! - `rfc`: the 2018 RFC's `iommu_pasid_*`;
//! - `ext`: our extensions (spaces, set init/destroy, walks, read locks);
//! - `notify`: notifier chains (`struct notifier_block`, `ioasid_notify`).
//! - `tokens`: sets with tokens, set references and the system capacity
//!   of the extended IOASID core (SPEC 6.4);
//! - `spids`: set private IDs, guest PASIDs mapped to host IDs (SPEC 6.5);
//! - `snapshot`: saving and restoring a space (`ioasid_space_save`,
//!   `ioasid_space_restore`, docs/SNAPSHOT.md).
//!
//! ## Invariants
//!
//! - No Rust panic crosses the ABI: every `extern "C"` body runs inside
//!   [`ffi_guard!`], which returns the function's error value on a panic, or
//!   aborts with a message for functions that return nothing.
//! - Every space this layer makes uses the core's global reclamation domain
//!   ([`ioasid_core::Domain::global`]), so one `ioasid_read_lock()` covers them
//!   all and `ioasid_synchronize()` waits for readers of every space.
//! - A `SetImpl` leaves its `ioasid_set` by a swap to null and is dropped
//!   through the global domain's epoch; every function that loads one holds a
//!   guard of that domain while it uses it. A declared set's state is instead
//!   reclaimed when idle and empty and reused, never freed, so a declared set
//!   needs no teardown (`sets`).
//! - A thread inside a read-side section never waits for readers: waiting
//!   functions return `-EDEADLK`, or abort where they return nothing
//!   (`sections`).

#![allow(non_camel_case_types)]
#![deny(missing_docs)]

mod types;

pub mod errno;
mod guard;
mod sections;
mod sets;

mod ext;
mod kernel;
mod notify;
mod refs;
mod rfc;
mod snapshot;
mod spids;
mod tokens;

pub use ext::*;
pub use kernel::*;
pub use notify::*;
pub use refs::*;
pub use rfc::*;
pub use snapshot::*;
pub use spids::*;
pub use tokens::*;
pub use types::{ioasid_policy, ioasid_set, ioasid_t};

#[doc(hidden)]
pub use guard::{abort_on_panic, report_panic};

pub(crate) use errno::{err_ptr, neg};
pub(crate) use sections::{
    abort_deadlock, in_read_section, read_lock, read_unlock, wait_for_readers, ReadSection,
};
pub(crate) use sets::{
    destroy_set, domain, free_in_set, get_or_install_held, global_space, install_set,
    load_declared, load_set, null_set, SetImpl,
};
pub(crate) use types::CData;

#[cfg(test)]
mod tests;
