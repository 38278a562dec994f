//! loom models of the core's concurrent protocols.
//!
//! The models live in `tests/models.rs` and exist only under
//! `--cfg ioasid_loom` (run them with `loom-tests/run.sh`); in a normal build
//! this crate is empty and its tests compile to nothing.
//!
//! This library holds what the models share (under `--cfg ioasid_loom`
//! only): `Probe`, a data value whose contents loom's causality checker
//! watches and whose drops are counted per token in a `Ledger`.

#[cfg(ioasid_loom)]
mod probe;

#[cfg(ioasid_loom)]
pub use probe::{Ledger, Probe};
