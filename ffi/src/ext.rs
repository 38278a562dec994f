//! Our extensions: spaces, explicit set init/destroy, checked set free,
//! set walks, read-side sections and synchronize.
//!
//! A `struct ioasid_space *` is a leaked `Box<ioasid_space>` holding one
//! reference to the shared space state; sets made in it hold more. The
//! addresses of live handles are kept in `SPACES`, so a destroyed (or never
//! created) handle is refused where the library can tell. INVARIANT: an
//! address is in `SPACES` exactly while its box is alive.

use crate::{
    domain, ffi_guard, global_space, install_set, ioasid_set, ioasid_t, neg, CData, SetImpl,
};
use ioasid_core::{Error, Policy, Space};
use std::ffi::{c_int, c_long, c_uint, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The state of a space that its handle and its sets share.
pub(crate) struct SpaceShared {
    pub(crate) space: Space<CData>,
    /// Set by `ioasid_space_destroy`: sets of the space allocate no more.
    pub(crate) destroyed: AtomicBool,
}

/// An independent ID space (opaque to C).
pub struct ioasid_space {
    shared: Arc<SpaceShared>,
}

/// Addresses of live `ioasid_space` handles (a plain list: spaces are few,
/// and only creation, destruction and set init look here).
static SPACES: Mutex<Vec<usize>> = Mutex::new(Vec::new());

fn with_spaces<R>(f: impl FnOnce(&mut Vec<usize>) -> R) -> R {
    // Every change is one Vec operation, so a poisoned lock still holds a
    // consistent registry.
    let mut spaces = SPACES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut spaces)
}

/// The shared state of a live handle, or `None` for one not (or no longer)
/// made by `ioasid_space_create`.
pub(crate) fn lookup(space: *const ioasid_space) -> Option<Arc<SpaceShared>> {
    with_spaces(|spaces| {
        spaces.contains(&(space as usize)).then(|| {
            // SAFETY: registered, so the box is alive (module invariant), and
            // it stays alive while we hold the registry lock.
            unsafe { (*space).shared.clone() }
        })
    })
}

/// `ioasid_space_create`'s flag, OR'ed into the policy: a Cyclic space
/// keeps the memory of the IDs its cursor has left instead of giving back
/// each chunk of 4096 IDs it left empty (it grows to the size of the whole
/// range, and allocates faster under contention); no effect under the
/// other policies. Kept by save and restore.
pub(crate) const IOASID_SPACE_KEEP_MEMORY: c_uint = 1 << 8;

/// A new space `[min, max]` with `policy` (an `enum ioasid_policy` value,
/// optionally OR'ed with `IOASID_SPACE_KEEP_MEMORY`), or NULL for
/// `min > max`, `max > 0xFFFFFFFE`, an unknown policy or another bit set.
#[no_mangle]
pub extern "C" fn ioasid_space_create(
    min: ioasid_t,
    max: ioasid_t,
    policy: c_uint,
) -> *mut ioasid_space {
    ffi_guard!("ioasid_space_create", std::ptr::null_mut(), {
        let keep_memory = policy & IOASID_SPACE_KEEP_MEMORY != 0;
        let Some(policy) = Policy::from_raw(policy & !IOASID_SPACE_KEEP_MEMORY) else {
            return std::ptr::null_mut();
        };
        let Ok(space) = Space::builder()
            .range(min, max)
            .policy(policy)
            .keep_memory(keep_memory)
            .notifiers(crate::notify::hub().clone())
            .build()
        else {
            return std::ptr::null_mut();
        };
        register(space).0
    })
}

/// A new live handle for `space` (in the global domain), and its shared
/// state for the sets made in it.
pub(crate) fn register(space: Space<CData>) -> (*mut ioasid_space, Arc<SpaceShared>) {
    let shared = Arc::new(SpaceShared {
        space,
        destroyed: AtomicBool::new(false),
    });
    let handle = Box::into_raw(Box::new(ioasid_space {
        shared: shared.clone(),
    }));
    with_spaces(|spaces| spaces.push(handle as usize));
    (handle, shared)
}

/// Destroys a space handle. Its sets allocate no more (their IDs stay until
/// each set is destroyed); NULL, unknown or already destroyed handles are
/// ignored.
///
/// # Safety
/// `space` is any pointer (it is checked against the live handles).
#[no_mangle]
pub unsafe extern "C" fn ioasid_space_destroy(space: *mut ioasid_space) {
    ffi_guard!(
        "ioasid_space_destroy",
        crate::abort_on_panic("ioasid_space_destroy"),
        {
            let removed = with_spaces(|spaces| {
                let index = spaces.iter().position(|&s| s == space as usize)?;
                Some(spaces.swap_remove(index))
            });
            if removed.is_none() {
                return;
            }
            // SAFETY: it was registered, so it is our live box, and removing
            // it from the registry made this call its only user.
            let handle = unsafe { Box::from_raw(space) };
            // Release: a set that sees the flag sees the destroy as done.
            handle.shared.destroyed.store(true, Ordering::Release);
        }
    )
}

/// Live IDs of a space (NULL: the global space), counted by a walk; exact
/// when nothing runs concurrently. `-EINVAL` for an unknown handle.
///
/// # Safety
/// `space` is any pointer (it is checked against the live handles).
#[no_mangle]
pub unsafe extern "C" fn ioasid_space_live_count(space: *const ioasid_space) -> c_long {
    ffi_guard!(
        "ioasid_space_live_count",
        c_long::from(-crate::errno::ENOTRECOVERABLE),
        {
            let count = if space.is_null() {
                global_space().live_count()
            } else {
                match lookup(space) {
                    Some(shared) => shared.space.live_count(),
                    None => return c_long::from(neg(Error::InvalidArgument)),
                }
            };
            c_long::try_from(count).unwrap_or(c_long::MAX)
        }
    )
}

/// Makes `set` a set of `space` (NULL: the global space) with at most
/// `quota` live IDs (0: no quota): 0; `-EINVAL` for a NULL set or an unknown
/// or destroyed space; `-EEXIST` if the set is already in use.
///
/// # Safety
/// `set` is NULL or a valid `struct ioasid_set`; `space` any pointer.
#[no_mangle]
pub unsafe extern "C" fn ioasid_set_init(
    set: *mut ioasid_set,
    space: *mut ioasid_space,
    quota: c_uint,
) -> c_int {
    ffi_guard!("ioasid_set_init", -crate::errno::ENOTRECOVERABLE, {
        if set.is_null() {
            return neg(Error::InvalidArgument);
        }
        let shared = if space.is_null() {
            None
        } else {
            match lookup(space) {
                Some(shared) => Some(shared),
                None => return neg(Error::InvalidArgument),
            }
        };
        let target = shared.as_ref().map_or(global_space(), |s| &s.space);
        let quota = (quota != 0).then_some(quota as usize);
        let core_set = match target.try_new_set(quota) {
            Ok(set) => set,
            // The space has its 16383 live sets already.
            Err(e) => return neg(e),
        };
        let fresh = Box::new(SetImpl {
            set: core_set,
            space: shared,
            auto: None,
        });
        let pin = crate::domain().pin();
        // SAFETY: non-null, valid by the caller's contract.
        match unsafe { install_set(set, fresh, &pin) } {
            Ok(_) => 0,
            Err(_) => -crate::errno::EEXIST,
        }
    })
}

/// Frees every ID of `set` and returns it to its declared (all-zero) state.
/// NULL is a no-op.
///
/// # Safety
/// `set` is NULL or a valid `struct ioasid_set`.
#[no_mangle]
pub unsafe extern "C" fn ioasid_set_destroy(set: *mut ioasid_set) {
    ffi_guard!(
        "ioasid_set_destroy",
        crate::abort_on_panic("ioasid_set_destroy"),
        {
            if set.is_null() {
                return;
            }
            // SAFETY: non-null, valid by the caller's contract.
            unsafe { crate::destroy_set(set) }
        }
    )
}

/// Checked free: 0; `-EINVAL` for a NULL set; `-ENOENT` if `ioasid` is not
/// live; `-EACCES` if another set owns it. Nothing changes on error.
///
/// # Safety
/// `set` is NULL or a valid `struct ioasid_set`.
#[no_mangle]
pub unsafe extern "C" fn ioasid_set_free(set: *mut ioasid_set, ioasid: ioasid_t) -> c_int {
    ffi_guard!("ioasid_set_free", -crate::errno::ENOTRECOVERABLE, {
        if set.is_null() {
            return neg(Error::InvalidArgument);
        }
        // A declared set in use: its state is never freed, and the core's
        // free pins only where it reclaims, so no guard here (as in
        // `ioasid_alloc`).
        // SAFETY: non-null, valid by the caller's contract.
        if let Some(held) = unsafe { crate::sets::load_declared_held(set) } {
            return crate::free_in_set(&held, ioasid).map_or_else(neg, |()| 0);
        }
        // Notifications wait until the guard is gone (callbacks may wait for readers).
        let _scope = crate::notify::scope();
        let pin = crate::domain().pin();
        // SAFETY: non-null, valid by the caller's contract.
        let held = unsafe { crate::sets::load_held(set, &pin) };
        match held {
            Some(imp) => match crate::free_in_set(&imp, ioasid) {
                Ok(()) => 0,
                Err(e) => neg(e),
            },
            // A set that never allocated owns nothing.
            None => {
                let live = global_space().with(ioasid, |_| ()).is_some();
                neg(if live {
                    Error::PermissionDenied
                } else {
                    Error::NotFound
                })
            }
        }
    })
}

/// Calls `func(id, private, data)` for each ID of `set` in ascending order;
/// a non-zero return stops the walk and is returned, else 0. `-EINVAL` for
/// NULL `set` or `func`. `func` may alloc, free and find in the set.
///
/// # Safety
/// `set` is NULL or a valid `struct ioasid_set`; `func` NULL or callable as
/// declared.
#[no_mangle]
pub unsafe extern "C" fn ioasid_set_for_each(
    set: *mut ioasid_set,
    func: Option<
        unsafe extern "C" fn(ioasid: ioasid_t, private_: *mut c_void, data: *mut c_void) -> c_int,
    >,
    data: *mut c_void,
) -> c_int {
    ffi_guard!("ioasid_set_for_each", -crate::errno::ENOTRECOVERABLE, {
        if set.is_null() {
            return neg(Error::InvalidArgument);
        }
        // SAFETY: non-null, valid by the caller's contract.
        unsafe { crate::sets::set_for_each(set, func, data) }
    })
}

/// Enters a read-side section: data found until the matching
/// `ioasid_read_unlock` stays valid. Nestable, per thread; never blocks.
#[no_mangle]
pub extern "C" fn ioasid_read_lock() {
    ffi_guard!(
        "ioasid_read_lock",
        crate::abort_on_panic("ioasid_read_lock"),
        crate::read_lock()
    )
}

/// Ends this thread's innermost read-side section (no-op if it holds none).
#[no_mangle]
pub extern "C" fn ioasid_read_unlock() {
    ffi_guard!(
        "ioasid_read_unlock",
        crate::abort_on_panic("ioasid_read_unlock"),
        {
            let _ = crate::read_unlock();
        }
    )
}

/// Returns once every read-side section that began before the call has
/// ended (`synchronize_rcu()`). Aborts if called inside one of this thread's
/// own sections, where it would wait forever.
#[no_mangle]
pub extern "C" fn ioasid_synchronize() {
    ffi_guard!(
        "ioasid_synchronize",
        crate::abort_on_panic("ioasid_synchronize"),
        {
            if crate::in_read_section() {
                crate::abort_deadlock("ioasid_synchronize");
            }
            domain().synchronize();
        }
    )
}
