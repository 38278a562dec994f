//! Gives the shared library its SONAME, `libioasid.so.MAJOR` (the crate's
//! major version): programs linked against it record that name, so a later
//! release with an incompatible ABI (a new major) can sit beside it.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "android" || os.ends_with("bsd") {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets the version");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libioasid.so.{major}");
    }
}
