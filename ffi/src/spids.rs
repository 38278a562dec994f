//! Set private IDs (SPEC 6.5): `ioasid_attach_spid`, `ioasid_detach_spid`,
//! `ioasid_find_by_spid`. A set maps guest PASIDs (SPIDs) to host IDs of
//! the global space; the core keeps the SPID in the ID's extension record
//! and a per-set index for the lock-free lookup (`ioasid::Set::find_by_spid`).
//!
//! Attach and detach are one function each ([`attach`], [`detach`]), for
//! the layers that report them (BIND / UNBIND notifications).

use crate::sets::{domain, load_held};
use crate::{ffi_guard, global_space, ioasid_set, ioasid_t, load_declared, load_set, neg, SetImpl};
use ioasid_core::{Error, Ioasid, INVALID_IOASID};
use std::ffi::c_int;

/// Attaches `spid` to `id` of the global space, any set.
pub(crate) fn attach(id: Ioasid, spid: Ioasid) -> Result<(), Error> {
    global_space().attach_spid(id, spid)
}

/// Detaches the SPID of `id` of the global space: the SPID it held, if any.
pub(crate) fn detach(id: Ioasid) -> Result<Option<Ioasid>, Error> {
    global_space().detach_spid(id)
}

/// Attaches set private ID `spid` (a guest PASID) to live `ioasid` of the
/// global space; its set then finds it with `ioasid_find_by_spid`, and
/// another set may use the same SPID. Returns 0; `-EINVAL` if either is
/// `INVALID_IOASID` (checked first); `-ENOENT` if `ioasid` is not live (or
/// FREE_PENDING); `-EEXIST` if the set uses `spid` already or `ioasid` has
/// a SPID. Nothing changes on error. Freeing the ID (FREE_PENDING
/// included) detaches its SPID at once.
#[no_mangle]
pub extern "C" fn ioasid_attach_spid(ioasid: ioasid_t, spid: ioasid_t) -> c_int {
    ffi_guard!("ioasid_attach_spid", -crate::errno::ENOTRECOVERABLE, {
        attach(ioasid, spid).map_or_else(neg, |()| 0)
    })
}

/// Detaches the SPID of `ioasid` (global space); a no-op for an ID that
/// is not live or has no SPID.
#[no_mangle]
pub extern "C" fn ioasid_detach_spid(ioasid: ioasid_t) {
    ffi_guard!(
        "ioasid_detach_spid",
        crate::abort_on_panic("ioasid_detach_spid"),
        {
            let _ = detach(ioasid);
        }
    )
}

/// The host ID that holds `spid` in `set`, with a reference taken if `get`
/// (drop it with `ioasid_put`), or `INVALID_IOASID` if none, for a NULL
/// set, or (with `get`) for an ID being freed or at its count's maximum.
/// Lock-free, and it does not scan the set.
///
/// # Safety
/// `set` is NULL or a valid `struct ioasid_set`.
#[no_mangle]
pub unsafe extern "C" fn ioasid_find_by_spid(
    set: *mut ioasid_set,
    spid: ioasid_t,
    get: bool,
) -> ioasid_t {
    ffi_guard!("ioasid_find_by_spid", INVALID_IOASID, {
        if set.is_null() {
            return INVALID_IOASID;
        }
        if get {
            // Taking a reference changes the set: held, so a declared
            // set's state is not reclaimed meanwhile.
            let pin = domain().pin();
            // SAFETY: non-null, valid by the caller's contract.
            let Some(held) = (unsafe { load_held(set, &pin) }) else {
                return INVALID_IOASID; // never used: no SPIDs
            };
            return held.set.get_by_spid(spid).unwrap_or(INVALID_IOASID);
        }
        // A declared set in use: its state is never freed, and the core's
        // lookup takes no guard, so none here.
        // SAFETY: non-null, valid by the caller's contract.
        if let Some(imp) = unsafe { load_declared(set) } {
            return found_in(imp, set, imp.set.find_by_spid(spid));
        }
        let pin = domain().pin();
        // SAFETY: non-null, valid by the caller's contract.
        let Some(imp) = (unsafe { load_set(set, &pin) }) else {
            return INVALID_IOASID; // never used: no SPIDs
        };
        found_in(imp, set, imp.set.find_by_spid(spid))
    })
}

/// The answer of a lookup by SPID in `imp`, the state `set` was loaded
/// with: re-checked after the lookup, as in `ioasid_find` (a declared
/// set's state reclaimed meanwhile may serve another set now, whose IDs
/// are not `set`'s).
fn found_in(imp: &SetImpl, set: *mut ioasid_set, found: Result<Ioasid, Error>) -> ioasid_t {
    match found {
        Ok(id) if imp.serves(set) => id,
        _ => INVALID_IOASID,
    }
}
