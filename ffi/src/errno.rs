//! errno values this layer returns (Linux numbering, as in `<errno.h>`),
//! and the conversions of errors to C returns: a negative errno, or the
//! kernel's `ERR_PTR`.

pub use ioasid_core::errno::*;
/// Waiting for readers from inside a read-side section.
pub const EDEADLK: i32 = 35;
/// A Rust panic was caught at the ABI boundary.
pub const ENOTRECOVERABLE: i32 = 131;

use ioasid_core::Error;
use std::ffi::{c_int, c_long, c_void};

/// Maps a core error to the negative errno of an `int` return.
pub(crate) fn neg(error: Error) -> c_int {
    -error.errno()
}

/// The kernel's `ERR_PTR`: a negative errno encoded in the top 4095 bytes.
pub(crate) fn err_ptr(negative_errno: c_int) -> *mut c_void {
    c_long::from(negative_errno) as isize as *mut c_void
}
