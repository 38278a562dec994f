//! libFuzzer target: the snapshot decoder (Rust `Snapshot::decode` and the
//! C `ioasid_space_restore`) on arbitrary buffers (see
//! `ioasid_fuzz::snapshot::snapshot_one`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ioasid_fuzz::snapshot::snapshot_one(data);
});
