//! Saving and restoring a space (SPEC 6.8): `ioasid_space_save` and
//! `ioasid_space_restore` in the versioned byte format of
//! docs/SNAPSHOT.md (the core's `Snapshot::encode`/`decode`), the stable
//! set numbers, and the library-allocated sets a restore hands back.
//!
//! Private pointers are saved as opaque 64-bit values (their addresses);
//! a restore maps each back through the caller's callback before it
//! creates anything, so a failing callback or a bad buffer leaves nothing
//! behind.
//!
//! INVARIANT: an address is in `RESTORED` exactly while it is a live
//! `Box<ioasid_set>` that `ioasid_space_restore` made and
//! `ioasid_set_release` has not freed.

use crate::errno::{EINVAL, ENOSPC, EOPNOTSUPP};
use crate::{domain, ext, ffi_guard, install_set, ioasid_set, ioasid_t, neg, CData, SetImpl};
use ioasid_core::{Error, Snapshot, Space};
use std::ffi::{c_int, c_uint, c_void};
use std::sync::Mutex;

/// Addresses of the live sets restores made (freed by `ioasid_set_release`).
static RESTORED: Mutex<Vec<usize>> = Mutex::new(Vec::new());

fn with_restored<R>(f: impl FnOnce(&mut Vec<usize>) -> R) -> R {
    // Every change is one Vec operation: a poisoned lock is consistent.
    let mut restored = RESTORED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut restored)
}

/// The callback of `ioasid_space_restore`: maps the value saved for
/// `ioasid` of the set numbered `set` (0: an ID detached from its torn-down
/// set, FREE_PENDING) to its new private pointer, written to `*private_`;
/// returns 0, or a negative errno that stops the restore.
pub type ioasid_restore_fn = Option<
    unsafe extern "C" fn(
        ioasid: ioasid_t,
        set: c_uint,
        saved: u64,
        private_: *mut *mut c_void,
        arg: *mut c_void,
    ) -> c_int,
>;

/// Saves the state of `space` (range, policy, Cyclic cursor, set numbers
/// and quotas, every live ID with its set, reference count, FREE_PENDING
/// state, SPID and private pointer as an opaque 64-bit value) into `buf`, in the
/// versioned format of docs/SNAPSHOT.md.
///
/// `*size` is the buffer's size on entry and the bytes needed (on success:
/// written) on return. 0; a NULL `buf` asks for the size only (0, nothing
/// written); `-ENOSPC` if `*size` is too small (nothing written);
/// `-EINVAL` for a NULL `size` or an unknown or destroyed space;
/// `-EOPNOTSUPP` for NULL, the global space (its sets live in the callers'
/// memory and cannot be handed back: make a space per VM to migrate it).
/// Take it while no other thread changes the space.
///
/// # Safety
/// `space` is any pointer (checked against the live handles); `buf` is
/// NULL or valid for `*size` bytes of writes; `size` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn ioasid_space_save(
    space: *const ext::ioasid_space,
    buf: *mut c_void,
    size: *mut usize,
) -> c_int {
    ffi_guard!("ioasid_space_save", -crate::errno::ENOTRECOVERABLE, {
        if size.is_null() {
            return -EINVAL;
        }
        if space.is_null() {
            return -EOPNOTSUPP;
        }
        let Some(shared) = ext::lookup(space) else {
            return -EINVAL;
        };
        let snapshot = shared.space.snapshot();
        let Ok(snapshot) = snapshot
            .try_map(|_, _, data| Ok::<u64, std::convert::Infallible>(data.ptr.addr() as u64));
        let needed = snapshot.encoded_len();
        // SAFETY: non-null, valid by the caller's contract.
        let room = unsafe { *size };
        // SAFETY: as above.
        unsafe { *size = needed };
        if buf.is_null() {
            return 0;
        }
        if room < needed {
            return -ENOSPC;
        }
        let bytes = snapshot.encode();
        // SAFETY: `buf` is valid for `room >= needed` bytes (caller's
        // contract); `bytes` is ours, so the two do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), needed) };
        0
    })
}

/// Restores a space saved by `ioasid_space_save` (in this process or
/// another): a new space in `*space`, and its sets, in ascending set
/// number (their saved order), as library-allocated sets in
/// `sets[0..*nr_sets]` (free each with `ioasid_set_release`, the space
/// with `ioasid_space_destroy`). The restored space answers every call as
/// the saved one would have (same next ID under every policy, owners,
/// quotas, references, FREE_PENDING states, SPIDs, set numbers).
///
/// `map(id, set_number, saved, &private, arg)` is called once per ID, in
/// ascending ID order, before anything is created, and gives its new
/// private pointer; a NULL `map` uses each saved value as the pointer.
///
/// `*nr_sets` is the room in `sets` on entry (NULL `sets`: none) and the
/// number of sets on return. 0; `-EINVAL` for a NULL `buf`, `space` or
/// `nr_sets`, or a buffer that is truncated, corrupt, of another version or
/// holds what this release cannot restore; `-ENOSPC` if `sets` has too
/// little room (`*nr_sets` then says how much is needed); a negative value
/// `map` returned (a positive one reads as `-EINVAL`). On error nothing is
/// created and `*space` and `sets` are not written.
///
/// # Safety
/// `buf` is NULL or valid for `size` bytes of reads; `space` and `nr_sets`
/// NULL or valid; `sets` NULL or valid for `*nr_sets` writes; `map` NULL or
/// callable as declared.
#[no_mangle]
pub unsafe extern "C" fn ioasid_space_restore(
    buf: *const c_void,
    size: usize,
    map: ioasid_restore_fn,
    arg: *mut c_void,
    space: *mut *mut ext::ioasid_space,
    sets: *mut *mut ioasid_set,
    nr_sets: *mut c_uint,
) -> c_int {
    ffi_guard!("ioasid_space_restore", -crate::errno::ENOTRECOVERABLE, {
        if buf.is_null() || space.is_null() || nr_sets.is_null() {
            return -EINVAL;
        }
        // SAFETY: non-null and valid for `size` bytes (caller's contract).
        let bytes = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), size) };
        let Ok(snapshot) = Snapshot::decode(bytes) else {
            return -EINVAL;
        };
        let room = if sets.is_null() {
            0
        } else {
            // SAFETY: non-null, valid by the caller's contract.
            unsafe { *nr_sets }
        };
        let count = snapshot.sets.len();
        if count > room as usize {
            // SAFETY: as above; `count` <= 16383 fits.
            unsafe { *nr_sets = count as c_uint };
            return -ENOSPC;
        }
        let mapped = snapshot.try_map(|id, set, saved| {
            let set = c_uint::from(set.unwrap_or(0));
            let Some(map) = map else {
                let addr = usize::try_from(saved).map_err(|_| -EINVAL)?;
                return Ok(CData::new(std::ptr::with_exposed_provenance_mut(addr)));
            };
            let mut private = std::ptr::null_mut();
            // SAFETY: the caller's callback, called as its contract says,
            // with a valid out pointer.
            match unsafe { map(id, set, saved, &mut private, arg) } {
                0 => Ok(CData::new(private)),
                e if e < 0 => Err(e),
                _ => Err(-EINVAL),
            }
        });
        let mapped = match mapped {
            Ok(mapped) => mapped,
            Err(e) => return e,
        };
        let (restored, core_sets) = match Space::<CData>::restore(mapped) {
            Ok(restored) => restored,
            Err(e) => return neg(e),
        };
        let (handle, shared) = ext::register(restored);
        let pin = domain().pin();
        for (i, core_set) in core_sets.into_iter().enumerate() {
            let raw = Box::into_raw(Box::new(ioasid_set::zeroed()));
            let fresh = Box::new(SetImpl {
                set: core_set,
                space: Some(shared.clone()),
                auto: None,
            });
            // SAFETY: `raw` is a fresh, valid set; `pin` guards the domain.
            let installed = unsafe { install_set(raw, fresh, &pin) };
            debug_assert!(installed.is_ok(), "a fresh set is empty");
            with_restored(|r| r.push(raw as usize));
            // SAFETY: `sets` has room for `count` (checked above).
            unsafe { *sets.add(i) = raw };
        }
        // SAFETY: non-null, valid by the caller's contract.
        unsafe {
            *space = handle;
            *nr_sets = count as c_uint;
        }
        0
    })
}

/// The stable number of `set` in its space (kept by save and restore; the
/// `set` argument of the restore callback): at least 1; `-EINVAL` for a
/// NULL set, `-ENOENT` for a set that holds no state (declared and never
/// used, or destroyed).
///
/// # Safety
/// `set` is NULL or a valid `struct ioasid_set`.
#[no_mangle]
pub unsafe extern "C" fn ioasid_set_number(set: *mut ioasid_set) -> c_int {
    ffi_guard!("ioasid_set_number", -crate::errno::ENOTRECOVERABLE, {
        if set.is_null() {
            return -EINVAL;
        }
        let pin = domain().pin();
        // SAFETY: non-null, valid by the caller's contract.
        match unsafe { crate::load_set(set, &pin) } {
            Some(imp) => c_int::from(imp.set.number()),
            None => neg(Error::NotFound),
        }
    })
}

/// Frees a set that `ioasid_space_restore` handed out: its IDs as
/// `ioasid_set_destroy` frees them (referenced ones stay FREE_PENDING),
/// then the set's memory. NULL, and any set a restore did not make (or
/// one already released), is ignored.
///
/// # Safety
/// `set` is any pointer (it is checked against the restored sets); no
/// other thread uses the set during or after the call.
#[no_mangle]
pub unsafe extern "C" fn ioasid_set_release(set: *mut ioasid_set) {
    ffi_guard!(
        "ioasid_set_release",
        crate::abort_on_panic("ioasid_set_release"),
        {
            let removed = with_restored(|r| {
                let at = r.iter().position(|&s| s == set as usize)?;
                Some(r.swap_remove(at))
            });
            if removed.is_none() {
                return;
            }
            // SAFETY: a restored set, alive until this call (module
            // invariant), which took it out of the registry.
            unsafe { crate::destroy_set(set) };
            // SAFETY: our box (module invariant); the state it pointed to
            // is gone (destroy_set buried it through the epoch), and the
            // caller no longer uses it.
            drop(unsafe { Box::from_raw(set) });
        }
    )
}
