//! Header drift check: regenerates `include/ioasid.h` with the pinned
//! cbindgen and fails if it differs from the committed one.
//! `IOASID_BLESS=1 cargo test -p ioasid-ffi --test header` rewrites it.

use std::path::Path;

#[test]
fn committed_header_matches_the_crate() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("ffi/cbindgen.toml parses");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen generates the header");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);

    let header = crate_dir.join("../include/ioasid.h");
    if std::env::var_os("IOASID_BLESS").is_some() {
        std::fs::write(&header, &fresh).expect("include/ioasid.h is writable");
        return;
    }
    let committed = std::fs::read(&header).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/ioasid.h differs from what the ffi crate generates; \
         regenerate it with `IOASID_BLESS=1 cargo test -p ioasid-ffi --test header` \
         and commit it.\n--- generated ---\n{}",
        String::from_utf8_lossy(&fresh)
    );
}
