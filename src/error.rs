//! The error type, one variant per errno value the kernel contract returns.

use std::fmt;

/// Why an operation failed. Each variant maps to exactly one errno value
/// ([`Error::errno`]), so the C layer can hand it on unchanged.
///
/// Non-exhaustive: later releases may add errors (a match needs a `_` arm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// `EINVAL`: a reversed range, a range that misses the space, or another
    /// bad argument. Nothing was changed.
    InvalidArgument,
    /// `ENOSPC`: no ID of the range was free for the whole call.
    NoSpace,
    /// `EDQUOT`: the set already holds its quota of live IDs.
    QuotaExceeded,
    /// `ENOENT`: the ID is not live.
    NotFound,
    /// `EACCES`: the ID is live but belongs to another set.
    PermissionDenied,
    /// `EIO`: a custom allocator (or an RFC vendor) answered with an ID that
    /// is out of range or already live; the answer went back to its `free`
    /// hook and nothing was recorded (SPEC 6.3).
    Io,
    /// `EDEADLK`: waiting for readers from a thread that is itself a reader
    /// of the same domain (it holds a guard): it would wait forever. Nothing
    /// was changed.
    Deadlock,
    /// `EOVERFLOW`: the ID's reference count is at its maximum; the get
    /// was refused and nothing changed.
    Overflow,
    /// `EBUSY`: a quota cut below the set's live count, or a capacity
    /// change while quota is reserved. Nothing was changed.
    Busy,
    /// `EEXIST`: the thing to create exists already (an MM token's set, a
    /// SPID already used in the set, an ID that already has a SPID).
    /// Nothing was changed.
    AlreadyExists,
    /// An error a custom allocator reported, as a positive errno value.
    Custom(i32),
}

/// errno values used by the crate (Linux numbering, as in `<errno.h>`).
pub mod errno {
    /// No such ID.
    pub const ENOENT: i32 = 2;
    /// A custom allocator gave a bad ID.
    pub const EIO: i32 = 5;
    /// Try again (custom allocator registration while IDs are live).
    pub const EAGAIN: i32 = 11;
    /// Out of memory.
    pub const ENOMEM: i32 = 12;
    /// The ID belongs to another set.
    pub const EACCES: i32 = 13;
    /// Busy (a quota below the live count, a capacity in use).
    pub const EBUSY: i32 = 16;
    /// Already registered, or already exists.
    pub const EEXIST: i32 = 17;
    /// Waiting for readers would wait for this thread.
    pub const EDEADLK: i32 = 35;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// No free ID in range.
    pub const ENOSPC: i32 = 28;
    /// A reference count would overflow.
    pub const EOVERFLOW: i32 = 75;
    /// Quota exceeded.
    pub const EDQUOT: i32 = 122;
}

impl Error {
    /// The positive errno value of this error (`EINVAL`, `ENOSPC`, ...).
    ///
    /// ```
    /// assert_eq!(ioasid::Error::NoSpace.errno(), 28);
    /// ```
    pub fn errno(self) -> i32 {
        match self {
            Error::InvalidArgument => errno::EINVAL,
            Error::NoSpace => errno::ENOSPC,
            Error::QuotaExceeded => errno::EDQUOT,
            Error::NotFound => errno::ENOENT,
            Error::PermissionDenied => errno::EACCES,
            Error::Io => errno::EIO,
            Error::Deadlock => errno::EDEADLK,
            Error::Overflow => errno::EOVERFLOW,
            Error::Busy => errno::EBUSY,
            Error::AlreadyExists => errno::EEXIST,
            Error::Custom(e) => e,
        }
    }

    /// The error for a positive errno value; unknown values become [`Error::Custom`].
    ///
    /// ```
    /// use ioasid::Error;
    /// assert_eq!(Error::from_errno(122), Error::QuotaExceeded);
    /// assert_eq!(Error::from_errno(Error::NotFound.errno()), Error::NotFound);
    /// ```
    pub fn from_errno(value: i32) -> Error {
        match value {
            errno::EINVAL => Error::InvalidArgument,
            errno::ENOSPC => Error::NoSpace,
            errno::EDQUOT => Error::QuotaExceeded,
            errno::ENOENT => Error::NotFound,
            errno::EACCES => Error::PermissionDenied,
            errno::EIO => Error::Io,
            errno::EDEADLK => Error::Deadlock,
            errno::EOVERFLOW => Error::Overflow,
            errno::EBUSY => Error::Busy,
            errno::EEXIST => Error::AlreadyExists,
            other => Error::Custom(other),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument => f.write_str("invalid argument (EINVAL)"),
            Error::NoSpace => f.write_str("no free ID in range (ENOSPC)"),
            Error::QuotaExceeded => f.write_str("set quota reached (EDQUOT)"),
            Error::NotFound => f.write_str("ID is not live (ENOENT)"),
            Error::PermissionDenied => f.write_str("ID belongs to another set (EACCES)"),
            Error::Io => f.write_str("custom allocator gave a bad ID (EIO)"),
            Error::Deadlock => {
                f.write_str("would wait for readers from inside a read-side section (EDEADLK)")
            }
            Error::Overflow => f.write_str("reference count at its maximum (EOVERFLOW)"),
            Error::Busy => f.write_str("quota or capacity in use (EBUSY)"),
            Error::AlreadyExists => f.write_str("already exists (EEXIST)"),
            Error::Custom(e) => write!(f, "custom allocator error (errno {e})"),
        }
    }
}

impl std::error::Error for Error {}
