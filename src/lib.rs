//! # ioasid: lock-free PASID / I/O ASID allocation for user space
//!
//! The Linux kernel hands out PCIe PASIDs with its I/O ASID allocator
//! (`ioasid_alloc/free/find/set_data`) and the 2018 `iommu_pasid_*` RFC. This
//! crate gives user space (VMMs emulating a vIOMMU, user-space drivers, C
//! test harnesses) the same contract, lock-free, with epoch-based reclamation
//! (crossbeam-epoch) in the role RCU plays in the kernel.
//!
//! - A [`Space`] is one ID namespace `[min, max]` with a [`Policy`]
//!   (lowest-free, cyclic, or any).
//! - A [`Set`] is a consumer inside a space: it owns IDs, one private value
//!   of type `T` per ID, an optional quota, and walks its own IDs in
//!   ascending order at a cost that grows with the set, not the space.
//! - Lookups ([`Space::find`], [`Set::find`]) never block and write nothing
//!   shared: they pin a [`Guard`] and load one word per tree level; the leaf
//!   word holds owner and data together (inline for small values and
//!   `Box`/`Arc` pointers, see [`Payload`]).
//! - Freed and replaced data is dropped only after every reader that could
//!   have seen it has dropped its guard; [`Space::synchronize`] waits for them.
//! - A [`CustomAllocator`] can take number choice over (paravirtual PASIDs).
//!
//! The whole contract (semantics, errors, the C ABI, performance targets)
//! is the [`contract`] page, `docs/CONTRACT.md` in the repository.
//!
//! ```
//! use ioasid::{Policy, Space};
//!
//! // A 20-bit PASID space without PASID 0, shared by two device drivers.
//! let space: Space<String> = Space::builder().range(1, 0xFFFFF).policy(Policy::Lowest).build()?;
//! let gpu = space.new_set();
//! let nic = space.new_set_with_quota(64);
//!
//! let pasid = gpu.alloc(1, 0xFFFFF, "mm of pid 1234".to_string())?;
//! assert_eq!(pasid, 1);
//!
//! // The fault handler's lookup: lock-free, no reference counts.
//! let guard = space.pin();
//! assert_eq!(space.find(pasid, &guard).as_deref().map(String::as_str), Some("mm of pid 1234"));
//! assert_eq!(nic.find(pasid, &guard), Err(ioasid::Error::PermissionDenied));
//! drop(guard);
//!
//! gpu.free(pasid)?;
//! assert_eq!(gpu.free(pasid), Err(ioasid::Error::NotFound));
//! # Ok::<(), ioasid::Error>(())
//! ```
//!
//! ## Architecture
//!
//! - `tree`: the radix tree of one space (claim bitmaps, free hints, slots).
//! - `auto`: [`Auto`], any `Send + Sync` type as data without an `unsafe impl`.
//! - `entry`: one-word entries (owner index + data), [`Payload`], [`Ref`].
//! - `owners`: set cores and the owner-index table.
//! - `members`: a set's bitmap index of its own IDs (a superset, cleaned
//!   lazily by the walks).
//! - `space`: the space handle and builder (`space/mod.rs`), the per-ID
//!   engine of alloc/free/replace (`space/engine.rs`), the policies
//!   (`space/policy.rs`), the custom allocator slot (`space/hook.rs`).
//! - `refs`: reference counts and FREE_PENDING (extension records).
//! - `notify`: notifier chains (global and per set), events, registrations.
//! - `set`: the set handle.
//! - `iter`: iterators over a set's and a space's IDs under a guard.
//! - `capacity`: a pool of quota that sets reserve from ([`Capacity`]).
//! - `spid`: set private IDs (per-set SPID -> host ID tables).
//! - `tokens`: sets found by token, one live set per token ([`TokenSets`]).
//! - `custom`: custom allocator hooks.
//! - `snapshot`: [`Snapshot`], [`Space::snapshot`] and [`Space::restore`]
//!   (live migration), and the versioned byte format.
//! - `domain`: reclamation domains and guards.
//! - `sync`: the atomics, swapped for loom's under `--cfg ioasid_loom`.

#![deny(missing_docs)]
#![warn(missing_debug_implementations)]
#![warn(clippy::undocumented_unsafe_blocks)]
// loom's `thread_local!` (used under `--cfg ioasid_loom`) takes no `const {}` initialisers.
#![allow(clippy::missing_const_for_thread_local)]

mod auto;
mod capacity;
mod custom;
mod domain;
mod entry;
mod error;
mod iter;
mod members;
mod notify;
mod owners;
mod radix;
mod refs;
mod set;
mod snapshot;
mod space;
mod spid;
mod sync;
mod tokens;
mod tree;

pub use auto::Auto;
pub use capacity::Capacity;
pub use custom::{CustomAlloc, CustomAllocator, CustomHook};
pub use domain::{Domain, Guard};
pub use entry::{inline_pointer, pointer_from_inline, Payload, Ref};
pub use error::{errno, Error};
pub use notify::{Chains, Event, Notification, Notifiers, NotifyScope, Registration, SetId};
pub use snapshot::{IdSnapshot, SetSnapshot, Snapshot};
pub use space::Policy;
pub use tokens::TokenSnapshot;

/// The radix tree's fan-out (children per node) of the public types.
pub const FANOUT: usize = 64;

/// One ID namespace `[min, max]` with a [`Policy`], holding data of type
/// `T` per ID (a cheap handle: clones share the space).
///
/// Its radix tree has the fan-out [`FANOUT`]. (The generic type with the
/// fan-out as a const parameter is for the crate's own tests and models,
/// which need small trees.)
///
/// ```
/// use ioasid::{Set, Space};
/// let a: Space<u32> = Space::builder().range(0, 9).build()?;
/// let b = Space::<u32>::builder().range(0, 9).build()?;
/// let sets: [Set<u32>; 2] = [a.new_set(), b.new_set()];
/// assert_eq!(sets[0].alloc(0, 9, 1)?, sets[1].alloc(0, 9, 1)?);
/// # Ok::<(), ioasid::Error>(())
/// ```
pub type Space<T> = fanout::Space<T, FANOUT>;

/// A consumer inside a [`Space`]: it owns IDs, one value of type `T` per
/// ID, and an optional quota.
pub type Set<T> = fanout::Set<T, FANOUT>;

/// Builds a [`Space`] ([`Space::builder`]).
pub type SpaceBuilder<T> = fanout::SpaceBuilder<T, FANOUT>;

/// The IDs of a [`Set`] under a guard ([`Set::iter`]).
pub type SetIter<'g, T> = fanout::SetIter<'g, T, FANOUT>;

/// The IDs of a [`Space`] under a guard ([`Space::iter`]).
pub type SpaceIter<'g, T> = fanout::SpaceIter<'g, T, FANOUT>;

/// Sets found by token, one live set per token, with quotas from one
/// [`Capacity`].
pub type TokenSets<K, T> = fanout::TokenSets<K, T, FANOUT>;

/// A notifier registered for a token ([`TokenSets::register_notifier`]).
pub type TokenRegistration<K, T> = fanout::TokenRegistration<K, T, FANOUT>;

/// The generic types behind [`Space`], [`Set`], [`SpaceBuilder`],
/// [`SetIter`], [`SpaceIter`], [`TokenSets`] and [`TokenRegistration`], with the tree's fan-out
/// `F` as a const parameter (a power of two, 2 to 64). Not part of the
/// stable API: tests, models and the fuzzer use small fan-outs to reach
/// deep trees with few IDs.
pub mod fanout {
    pub use crate::iter::{SetIter, SpaceIter};
    pub use crate::set::Set;
    pub use crate::space::{Space, SpaceBuilder};
    pub use crate::tokens::{TokenRegistration, TokenSets};
}

/// An I/O address space ID, the kernel's `ioasid_t`.
pub type Ioasid = u32;

/// Never a valid ID: `(ioasid_t)-1`.
pub const INVALID_IOASID: Ioasid = u32::MAX;

/// The largest ID a space may hold.
pub const MAX_IOASID: Ioasid = 0xFFFF_FFFE;

/// The lowest PCIe PASID (0 means "no PASID").
pub const PASID_MIN: Ioasid = 1;

/// The largest 20-bit PCIe PASID.
pub const PASID_MAX: Ioasid = 0xFFFFF;

/// The library's contract: semantics, errors, the C ABI and the numbers
/// the benchmarks hold it to (`docs/CONTRACT.md`, shown here as a page).
pub mod contract {
    #![doc = include_str!("../docs/CONTRACT.md")]
}

/// The README's examples run as doc tests, so the README never lies.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// So do those of the snapshot page (`docs/SNAPSHOT.md`).
#[cfg(doctest)]
#[doc = include_str!("../docs/SNAPSHOT.md")]
pub struct SnapshotDoctests;
