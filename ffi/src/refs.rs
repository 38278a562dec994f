//! Reference counts (SPEC 6.2: `ioasid_get/put` of v5.11 and our checked
//! forms) and the errno-returning, set-scoped forms of SPEC 6.7
//! (`ioasid_alloc_id`, `ioasid_set_attach_data`).
//!
//! The unchecked forms act on the global space, as `ioasid_free` does; the
//! checked ones on the given set's space (NULL: the global space, any set).

use crate::{
    domain, ffi_guard, get_or_install_held, global_space, ioasid_set, ioasid_t, load_set, neg,
    null_set, wait_for_readers, CData, SetImpl,
};
use ioasid_core::{Error, Ioasid};
use std::ffi::{c_int, c_void};

/// Runs `f` on the state of a non-NULL `set`; a set that never allocated
/// owns nothing: `-EACCES` if `ioasid` is live in the global space, else
/// `-ENOENT`.
///
/// # Safety
/// `set` is a valid `struct ioasid_set`.
unsafe fn with_set(
    set: *mut ioasid_set,
    ioasid: Ioasid,
    f: impl FnOnce(&SetImpl) -> Result<c_int, Error>,
) -> c_int {
    // Notifications wait until the guard is gone (callbacks may wait for readers).
    let _scope = crate::notify::scope();
    let guard = domain().pin();
    // SAFETY: forwarded from the caller.
    let result = match unsafe { load_set(set, &guard) } {
        // A declared set's state reclaimed meanwhile may serve another set.
        Some(imp) if imp.serves(set) => f(imp),
        _ => match global_space().find(ioasid, &guard) {
            Some(_) => Err(Error::PermissionDenied),
            None => Err(Error::NotFound),
        },
    };
    result.unwrap_or_else(neg)
}

/// Takes a reference on live `ioasid` (global space, any set); a no-op for
/// an ID that is not live, FREE_PENDING, or at the count's maximum (see
/// `ioasid_get_checked` for the reason).
#[no_mangle]
pub extern "C" fn ioasid_get(ioasid: ioasid_t) {
    ffi_guard!("ioasid_get", (), {
        let _ = global_space().get(ioasid);
    })
}

/// Drops one reference of `ioasid` (global space): true if this put
/// released it (as `ioasid_free` would), false if references remain or it
/// is not live. `ioasid_alloc` gives an ID one reference; `ioasid_free` of
/// an ID with others outstanding leaves it FREE_PENDING (found, never got,
/// not allocatable) until its last put.
#[no_mangle]
pub extern "C" fn ioasid_put(ioasid: ioasid_t) -> bool {
    ffi_guard!("ioasid_put", false, {
        // A released vendor ID goes back to its driver, as ioasid_free's.
        crate::rfc::free_id(ioasid, || global_space().put(ioasid)).unwrap_or(false)
    })
}

/// The checked `ioasid_get`: 0; `-ENOENT` if `ioasid` is not live or is
/// FREE_PENDING; `-EACCES` if `set` (non-NULL) does not own it;
/// `-EOVERFLOW` at the count's maximum. Nothing changes on error. NULL
/// `set`: the global space, any set.
///
/// # Safety
/// `set` is NULL or a valid `struct ioasid_set`.
#[no_mangle]
pub unsafe extern "C" fn ioasid_get_checked(set: *mut ioasid_set, ioasid: ioasid_t) -> c_int {
    ffi_guard!("ioasid_get_checked", -crate::errno::ENOTRECOVERABLE, {
        if set.is_null() {
            return global_space().get(ioasid).map_or_else(neg, |()| 0);
        }
        // SAFETY: non-null, valid by the caller's contract.
        unsafe { with_set(set, ioasid, |imp| imp.set.get(ioasid).map(|()| 0)) }
    })
}

/// The checked `ioasid_put`: 1 if this put released `ioasid`, 0 if
/// references remain; `-ENOENT` if not live; `-EACCES` if `set` (non-NULL)
/// does not own it. NULL `set`: the global space, any set.
///
/// # Safety
/// `set` is NULL or a valid `struct ioasid_set`.
#[no_mangle]
pub unsafe extern "C" fn ioasid_put_checked(set: *mut ioasid_set, ioasid: ioasid_t) -> c_int {
    ffi_guard!("ioasid_put_checked", -crate::errno::ENOTRECOVERABLE, {
        if set.is_null() {
            return crate::rfc::free_id(ioasid, || global_space().put(ioasid))
                .map_or_else(neg, c_int::from);
        }
        // SAFETY: non-null, valid by the caller's contract.
        unsafe {
            with_set(set, ioasid, |imp| {
                crate::rfc::free_id(ioasid, || imp.set.put(ioasid)).map(c_int::from)
            })
        }
    })
}

/// `ioasid_alloc` that tells its errors apart: 0 and the ID in `*ioasid`,
/// or `-EINVAL` (bad range, NULL `ioasid`), `-EDQUOT`, `-ENOSPC`,
/// `-ENOMEM`, `-EIO` (a custom allocator's bad answer) or a custom
/// allocator's own error; `*ioasid` is written only on success. `set`
/// NULL: the anonymous set of the global space.
///
/// # Safety
/// `set` is NULL or a valid `struct ioasid_set`; `ioasid` is NULL or
/// valid for one write.
#[no_mangle]
pub unsafe extern "C" fn ioasid_alloc_id(
    set: *mut ioasid_set,
    min: ioasid_t,
    max: ioasid_t,
    private_: *mut c_void,
    ioasid: *mut ioasid_t,
) -> c_int {
    ffi_guard!("ioasid_alloc_id", -crate::errno::ENOTRECOVERABLE, {
        if ioasid.is_null() {
            return -crate::errno::EINVAL;
        }
        // Notifications wait until the guard is gone (callbacks may wait for readers).
        let _scope = crate::notify::scope();
        let pin = domain().pin();
        let allocated = if set.is_null() {
            let imp = null_set();
            if imp.usable() {
                imp.set.alloc(min, max, CData::new(private_))
            } else {
                Err(Error::InvalidArgument)
            }
        } else {
            // SAFETY: non-null, valid by the caller's contract.
            match unsafe { get_or_install_held(set, &pin) } {
                Ok(held) if held.usable() => held.set.alloc(min, max, CData::new(private_)),
                // The set's space was destroyed.
                Ok(_) => Err(Error::InvalidArgument),
                Err(e) => Err(e),
            }
        };
        match allocated {
            Ok(id) => {
                // SAFETY: non-null, valid for a write by the caller's contract.
                unsafe { ioasid.write(id) };
                0
            }
            Err(e) => neg(e),
        }
    })
}

/// `ioasid_set_data` for an ID of `set`, in any space: 0, `-EINVAL` for a
/// NULL `set`, `-ENOENT` if not live, `-EACCES` if another set's,
/// `-EDEADLK` inside a read-side section (nothing changed). Returns once no
/// reader can still see the old data.
///
/// # Safety
/// `set` is NULL or a valid `struct ioasid_set`.
#[no_mangle]
pub unsafe extern "C" fn ioasid_set_attach_data(
    set: *mut ioasid_set,
    ioasid: ioasid_t,
    data: *mut c_void,
) -> c_int {
    ffi_guard!("ioasid_set_attach_data", -crate::errno::ENOTRECOVERABLE, {
        if set.is_null() {
            return -crate::errno::EINVAL;
        }
        if crate::in_read_section() {
            return -crate::errno::EDEADLK;
        }
        // SAFETY: non-null, valid by the caller's contract.
        let replaced = unsafe {
            with_set(set, ioasid, |imp| {
                imp.set.set_data(ioasid, CData::new(data)).map(|()| 0)
            })
        };
        if replaced != 0 {
            return replaced;
        }
        match wait_for_readers() {
            Ok(()) => 0,
            Err(e) => e,
        }
    })
}
