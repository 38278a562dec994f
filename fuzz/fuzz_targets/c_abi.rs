//! libFuzzer target: one input is one scenario of C ABI calls checked
//! against the reference model (see `ioasid_fuzz::run_one`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ioasid_fuzz::run_one(data);
});
