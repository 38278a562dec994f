//! C ABI for ioasid (see the ffi issue).
