//! The kernel v5.5 functions: `ioasid_alloc/free/find/set_data` and custom
//! allocators (`ioasid_register_allocator`), on the process-global space
//! (or, for `ioasid_alloc`/`ioasid_find`, the space of the given set).
//!
//! Custom allocators follow the kernel: the first registration becomes the
//! active one (only while the default allocator holds no live ID), later
//! ones wait in a list; ops with the same `alloc`/`free` functions as a
//! registered one join its group (kernel `use_same_ops`) and share it.
//! Unregistering the active group's last ops activates the next group, or
//! the default allocator. INVARIANT: `ALLOCATORS[0]`, if any, is the group
//! whose hook is installed in the global space.

use crate::{
    domain, ffi_guard, get_or_install_held, global_space, ioasid_set, ioasid_t, load_declared,
    load_set, null_set, wait_for_readers, CData, ReadSection,
};
use ioasid_core::{CustomAlloc, CustomAllocator, CustomHook, Error, INVALID_IOASID};
use std::ffi::{c_int, c_void};
use std::sync::Mutex;

/// A custom allocator's `alloc`: an ID in `[min, max]`, or `INVALID_IOASID`.
pub type ioasid_alloc_fn_t =
    Option<unsafe extern "C" fn(min: ioasid_t, max: ioasid_t, data: *mut c_void) -> ioasid_t>;

/// A custom allocator's `free`.
pub type ioasid_free_fn_t = Option<unsafe extern "C" fn(ioasid: ioasid_t, data: *mut c_void)>;

/// The kernel's `struct list_head` inside the ops; reserved for the library.
#[repr(C)]
pub struct ioasid_list_head {
    /// Reserved.
    pub next: *mut c_void,
    /// Reserved.
    pub prev: *mut c_void,
}

/// A custom allocator (field order as the kernel's). Must stay valid and
/// unchanged while registered.
#[repr(C)]
pub struct ioasid_allocator_ops {
    /// Chooses an ID in `[min, max]`, or returns `INVALID_IOASID`.
    pub alloc: ioasid_alloc_fn_t,
    /// Takes back an ID that `alloc` gave.
    pub free: ioasid_free_fn_t,
    /// Reserved for the library (the kernel links registrations here).
    pub list: ioasid_list_head,
    /// Passed to `alloc` and `free`.
    pub pdata: *mut c_void,
}

/// Allocates an ID in `[min, max]` for `set` (NULL: the anonymous set) with
/// `private` as its data. Returns the ID, or `INVALID_IOASID` on any error.
///
/// # Safety
/// `set` is NULL or a valid `struct ioasid_set`.
#[no_mangle]
pub unsafe extern "C" fn ioasid_alloc(
    set: *mut ioasid_set,
    min: ioasid_t,
    max: ioasid_t,
    private_: *mut c_void,
) -> ioasid_t {
    ffi_guard!("ioasid_alloc", INVALID_IOASID, {
        // A declared set in use: its state is never freed, and the core's
        // allocation pins only around a custom allocator, so no guard here.
        // SAFETY: NULL or valid, by the caller's contract.
        if let Some(held) = unsafe { crate::sets::load_declared_held(set) } {
            return held
                .set
                .alloc(min, max, CData::new(private_))
                .unwrap_or(INVALID_IOASID);
        }
        // Notifications wait until the guard is gone (callbacks may wait for readers).
        let _scope = crate::notify::scope();
        let pin = crate::domain().pin();
        let alloc_in = |imp: &crate::SetImpl| {
            if !imp.usable() {
                return INVALID_IOASID;
            }
            imp.set
                .alloc(min, max, CData::new(private_))
                .unwrap_or(INVALID_IOASID)
        };
        if set.is_null() {
            return alloc_in(null_set());
        }
        // SAFETY: non-null, valid by the caller's contract.
        let held = unsafe { get_or_install_held(set, &pin) };
        match held {
            Ok(held) => alloc_in(&held),
            Err(_) => INVALID_IOASID,
        }
    })
}

/// Frees `ioasid` whichever set owns it; an ID that is not live is ignored.
/// Acts on the global space.
#[no_mangle]
pub extern "C" fn ioasid_free(ioasid: ioasid_t) {
    ffi_guard!("ioasid_free", crate::abort_on_panic("ioasid_free"), {
        let space = global_space();
        let _ = crate::rfc::free_id(ioasid, || space.free_released(ioasid).ok_or(()));
    })
}

/// The data of `ioasid`: `ERR_PTR(-ENOENT)` if it is not live,
/// `ERR_PTR(-EACCES)` if `set` is non-NULL and does not own it, NULL if
/// `getter` returns false for the data, else the data. Never blocks.
///
/// # Safety
/// `set` is NULL or a valid `struct ioasid_set`; `getter` is NULL or a
/// function that may be called with the data.
#[no_mangle]
pub unsafe extern "C" fn ioasid_find(
    set: *mut ioasid_set,
    ioasid: ioasid_t,
    getter: Option<unsafe extern "C" fn(data: *mut c_void) -> bool>,
) -> *mut c_void {
    ffi_guard!(
        "ioasid_find",
        crate::err_ptr(-crate::errno::ENOTRECOVERABLE),
        {
            if getter.is_none() {
                // SAFETY: as below.
                if let Some(found) = unsafe { find_unpinned(set, ioasid) } {
                    return found;
                }
            }
            // SAFETY: forwarded from the caller.
            unsafe { find_pinned(set, ioasid, getter) }
        }
    )
}

/// `ioasid_find` under a guard of its own (a getter, or a set that needs a
/// guard): out of line, so the unpinned fast path stays small.
///
/// # Safety
/// As for `ioasid_find`.
#[inline(never)]
unsafe fn find_pinned(
    set: *mut ioasid_set,
    ioasid: ioasid_t,
    getter: Option<unsafe extern "C" fn(data: *mut c_void) -> bool>,
) -> *mut c_void {
    let guard = domain().pin();
    let found: Result<CData, Error> = if set.is_null() {
        global_space()
            .find(ioasid, &guard)
            .map(|data| *data)
            .ok_or(Error::NotFound)
    } else {
        // SAFETY: non-null, valid by the caller's contract.
        match unsafe { load_set(set, &guard) } {
            // Re-checked after the lookup: a declared set's state
            // reclaimed meanwhile may serve another set now.
            Some(imp) => match imp.set.find(ioasid, &guard).map(|data| *data) {
                Ok(_) if !imp.serves(set) => Err(Error::PermissionDenied),
                found => found,
            },
            // A set that never allocated owns nothing.
            None => match global_space().find(ioasid, &guard) {
                Some(_) => Err(Error::PermissionDenied),
                None => Err(Error::NotFound),
            },
        }
    };
    match found {
        Err(e) => crate::err_ptr(crate::neg(e)),
        Ok(data) => match getter {
            Some(getter) => {
                let _section = ReadSection::enter();
                // SAFETY: the caller's getter, called as its contract says.
                if unsafe { getter(data.ptr) } {
                    data.ptr
                } else {
                    std::ptr::null_mut()
                }
            }
            None => data.ptr,
        },
    }
}

/// `ioasid_find` with no getter and no guard of its own: the `CData` is
/// copied out of its entry word (`copied` pins only for one stored boxed), and
/// nothing is called with it. `None` when the set needs a guard: it is
/// neither NULL nor a declared set in use.
///
/// # Safety
/// `set` is NULL or a valid `struct ioasid_set`.
#[inline]
unsafe fn find_unpinned(set: *mut ioasid_set, ioasid: ioasid_t) -> Option<*mut c_void> {
    let found = if set.is_null() {
        global_space().copied(ioasid).ok_or(Error::NotFound)
    } else {
        // SAFETY: non-null, valid by the caller's contract.
        let imp = unsafe { load_declared(set) }?;
        match imp.set.copied(ioasid) {
            // Re-checked after the lookup, as in `ioasid_find`.
            Ok(_) if !imp.serves(set) => Err(Error::PermissionDenied),
            found => found,
        }
    };
    Some(match found {
        Ok(data) => data.ptr,
        Err(e) => crate::err_ptr(crate::neg(e)),
    })
}

/// Replaces the data of live `ioasid` in the global space: 0, `-ENOENT`, or
/// `-EDEADLK` when called inside a read-side section (nothing changed).
/// Returns once no reader can still see the old data, so the caller may free
/// it.
#[no_mangle]
pub extern "C" fn ioasid_set_data(ioasid: ioasid_t, data: *mut c_void) -> c_int {
    ffi_guard!("ioasid_set_data", -crate::errno::ENOTRECOVERABLE, {
        if crate::in_read_section() {
            return -crate::errno::EDEADLK;
        }
        let space = global_space();
        if let Err(e) = space.set_data(ioasid, CData::new(data)) {
            return crate::neg(e);
        }
        match wait_for_readers() {
            Ok(()) => 0,
            Err(e) => e,
        }
    })
}

// ---------------------------------------------------------------------------
// Custom allocators.

type AllocFn = unsafe extern "C" fn(ioasid_t, ioasid_t, *mut c_void) -> ioasid_t;
type FreeFn = unsafe extern "C" fn(ioasid_t, *mut c_void);

/// The core hook that calls a registered C allocator.
struct CAllocator {
    alloc: AllocFn,
    free: FreeFn,
    pdata: *mut c_void,
}

// SAFETY: the C allocator is called from any thread, as in the kernel, where
// allocators are called from any CPU; `pdata` is only passed back to it.
unsafe impl Send for CAllocator {}
// SAFETY: as above.
unsafe impl Sync for CAllocator {}

impl CustomAllocator for CAllocator {
    fn alloc(&self, min: ioasid_t, max: ioasid_t) -> CustomAlloc {
        // The core calls us while pinned: C must not wait for readers here.
        let _section = ReadSection::enter();
        // SAFETY: a non-null function registered with its pdata.
        match unsafe { (self.alloc)(min, max, self.pdata) } {
            INVALID_IOASID => CustomAlloc::Failed(Error::NoSpace),
            id => CustomAlloc::Id(id),
        }
    }

    fn free(&self, id: ioasid_t) {
        let _section = ReadSection::enter();
        // SAFETY: a non-null function registered with its pdata.
        unsafe { (self.free)(id, self.pdata) }
    }
}

/// Registered ops sharing one pair of functions (kernel `use_same_ops`).
struct Group {
    alloc: AllocFn,
    free: FreeFn,
    /// The registered ops (addresses), first registered first.
    members: Vec<usize>,
    /// Calls the functions with the first member's pdata, as the kernel does.
    hook: CustomHook,
}

// SAFETY: the raw function pointers are plain code addresses.
unsafe impl Send for Group {}

static ALLOCATORS: Mutex<Vec<Group>> = Mutex::new(Vec::new());

fn allocators() -> std::sync::MutexGuard<'static, Vec<Group>> {
    // A panic while holding the lock left the list consistent (every change
    // is one Vec operation), so a poisoned lock is still usable.
    ALLOCATORS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Registers a custom allocator for the global space: 0; `-EINVAL` for NULL
/// ops or hooks; `-EAGAIN` if the default allocator still holds live IDs
/// and no custom allocator is registered; `-EEXIST` if these ops are
/// registered already.
///
/// # Safety
/// `allocator` is NULL or valid, and stays valid and unchanged until it is
/// unregistered.
#[no_mangle]
pub unsafe extern "C" fn ioasid_register_allocator(allocator: *mut ioasid_allocator_ops) -> c_int {
    ffi_guard!(
        "ioasid_register_allocator",
        -crate::errno::ENOTRECOVERABLE,
        {
            if allocator.is_null() {
                return -crate::errno::EINVAL;
            }
            // SAFETY: non-null and valid by the caller's contract.
            let ops = unsafe { &*allocator };
            let (Some(alloc), Some(free)) = (ops.alloc, ops.free) else {
                return -crate::errno::EINVAL;
            };
            let key = allocator as usize;
            let mut groups = allocators();
            if groups.is_empty() {
                if global_space().live_count() > 0 {
                    return -crate::errno::EAGAIN;
                }
                let hook = CustomHook::new(CAllocator {
                    alloc,
                    free,
                    pdata: ops.pdata,
                });
                global_space().set_allocator(Some(hook.clone()));
                groups.push(Group {
                    alloc,
                    free,
                    members: vec![key],
                    hook,
                });
                return 0;
            }
            if groups.iter().any(|g| g.members.contains(&key)) {
                return -crate::errno::EEXIST;
            }
            // Function addresses compared as integers: same code, same group.
            let same =
                |g: &Group| g.alloc as usize == alloc as usize && g.free as usize == free as usize;
            if let Some(group) = groups.iter_mut().find(|g| same(g)) {
                group.members.push(key);
                return 0;
            }
            groups.push(Group {
                alloc,
                free,
                members: vec![key],
                hook: CustomHook::new(CAllocator {
                    alloc,
                    free,
                    pdata: ops.pdata,
                }),
            });
            0
        }
    )
}

/// Unregisters a custom allocator; unknown or NULL ops are ignored. When the
/// active allocator goes, the next registered one, or else the default
/// allocator, takes over. IDs already given go back to the allocator that
/// gave them.
///
/// # Safety
/// `allocator` is NULL or any pointer (it is only compared).
#[no_mangle]
pub unsafe extern "C" fn ioasid_unregister_allocator(allocator: *mut ioasid_allocator_ops) {
    ffi_guard!(
        "ioasid_unregister_allocator",
        crate::abort_on_panic("ioasid_unregister_allocator"),
        {
            let key = allocator as usize;
            let mut groups = allocators();
            let Some(index) = groups.iter().position(|g| g.members.contains(&key)) else {
                return;
            };
            groups[index].members.retain(|&m| m != key);
            if groups[index].members.is_empty() {
                groups.remove(index);
                if index == 0 {
                    let next = groups.first().map(|g| g.hook.clone());
                    global_space().set_allocator(next);
                }
            }
        }
    )
}
