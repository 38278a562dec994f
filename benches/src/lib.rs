//! Baselines and harness for the ioasid criterion benches.
//!
//! - [`ida`]: the IDA/IDR shape (lowest-free bitmap + slot vector), used
//!   behind `Mutex` and `RwLock`;
//! - [`btree`]: a cyclic allocator over a `BTreeMap`;
//! - [`kernel_model`]: a mutex for writers and epoch readers (the kernel's
//!   spinlock + RCU shape);
//! - [`contenders`]: one face (`Table`, `Allocator`) over those, ioasid
//!   under each policy, idr-ebr, sharded-slab, papaya and a plain array;
//! - [`harness`]: threads released together by a barrier, the thread counts,
//!   a cheap random generator.
//!
//! The benches live in `benches/`, the memory report in `src/bin/memory.rs`,
//! the tables and plots of BENCHMARKS.md in `src/bin/report.rs`.

pub mod btree;
pub mod contenders;
pub mod harness;
pub mod ida;
pub mod kernel_model;
