//! errno values this layer returns (Linux numbering, as in `<errno.h>`),
//! and the conversions of errors to C returns: a negative errno, or the
//! kernel's `ERR_PTR`.

// The platform's own values (libc's <errno.h>), so C callers comparing
// with -ENOENT and friends agree with us by construction. The core's
// `Error::errno` numbers must equal them: the tests below check each one.
// EDEADLK: waiting for readers from inside a read-side section;
// ENOTRECOVERABLE: a Rust panic was caught at the ABI boundary.
// EOPNOTSUPP: the global space cannot be saved (docs/SNAPSHOT.md).
pub use libc::{
    EACCES, EAGAIN, EBUSY, EDEADLK, EDQUOT, EEXIST, EINVAL, EIO, ENOENT, ENOMEM, ENOSPC,
    ENOTRECOVERABLE, EOPNOTSUPP,
};

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

#[cfg(test)]
mod tests {
    use ioasid_core::Error;

    /// Every error the core hands to this layer carries the platform's errno.
    #[test]
    fn core_errno_values_are_the_platforms() {
        let pairs = [
            (Error::InvalidArgument, libc::EINVAL),
            (Error::NoSpace, libc::ENOSPC),
            (Error::QuotaExceeded, libc::EDQUOT),
            (Error::NotFound, libc::ENOENT),
            (Error::PermissionDenied, libc::EACCES),
            (Error::Io, libc::EIO),
            (Error::Busy, libc::EBUSY),
            (Error::AlreadyExists, libc::EEXIST),
        ];
        for (error, errno) in pairs {
            assert_eq!(error.errno(), errno, "{error:?}");
            assert_eq!(Error::from_errno(errno), error);
        }
        let constants = [
            (ioasid_core::errno::ENOENT, libc::ENOENT),
            (ioasid_core::errno::EIO, libc::EIO),
            (ioasid_core::errno::EAGAIN, libc::EAGAIN),
            (ioasid_core::errno::ENOMEM, libc::ENOMEM),
            (ioasid_core::errno::EACCES, libc::EACCES),
            (ioasid_core::errno::EEXIST, libc::EEXIST),
            (ioasid_core::errno::EBUSY, libc::EBUSY),
            (ioasid_core::errno::EINVAL, libc::EINVAL),
            (ioasid_core::errno::ENOSPC, libc::ENOSPC),
            (ioasid_core::errno::EDQUOT, libc::EDQUOT),
        ];
        for (core, platform) in constants {
            assert_eq!(core, platform);
        }
    }
}
