//! Sets with tokens, set references and the system capacity (SPEC 6.4,
//! the extended IOASID core): `ioasid_alloc_set`, `ioasid_set_get/put`,
//! `ioasid_find_mm_set`, `ioasid_adjust_set`, `ioasid_install_capacity`,
//! `ioasid_get_capacity(_avail)`.
//!
//! A set made by `ioasid_alloc_set` is a library-owned [`TokenSet`] record
//! whose first field is the `struct ioasid_set` C sees, so the pointer C
//! holds is the record's address. Its state behind word 0 is an ordinary
//! `SetImpl` of the global space (see `sets`), so every set-taking function
//! works on it unchanged. Its quota is reserved from the process-wide
//! [`ioasid_core::Capacity`] (0xFFFFF IDs unless `ioasid_install_capacity`
//! says otherwise).
//!
//! Creation and teardown each have one function per type, for the layers
//! that hook into them (notifier chains of MM sets): [`create_set`] /
//! [`create_mm_set`] and [`teardown_set`] / [`teardown_mm_set`].
//!
//! INVARIANTS:
//! - Word 1 of a record's `ioasid_set` holds the record's own address (C
//!   never writes it; a declared or `ioasid_set_init` set has 0 there), so
//!   `record_of` tells a token set from any other without a lookup.
//! - `refs` counts the references; the put that takes it to 0 is the one
//!   teardown, and no reference is taken from 0 (`ioasid_find_mm_set`
//!   increments only a non-zero count, under the MM map's lock).
//! - `MM_SETS` maps a token to the one MM set with that token whose count
//!   is not 0, or to one being torn down (count 0), which a new set with the
//!   same token replaces; a teardown removes the entry only if it is still
//!   its own.
//! - A record's memory is freed through the global domain's epoch, after
//!   every reader that could have loaded it.

use crate::sets::{domain, free_in_set, set_ids, set_slot};
use crate::{err_ptr, ffi_guard, global_space, install_set, ioasid_set, ioasid_t, load_set, neg};
use crate::{CData, SetImpl};
use ioasid_core::{Capacity, Error, Set};
use std::collections::BTreeMap;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The token may be any pointer value, shared by any number of sets.
const SET_TYPE_NULL: c_int = 1;
/// The token is a process (`mm`): at most one set per token.
const SET_TYPE_MM: c_int = 2;

/// The system capacity by default: the 20-bit PCIe PASIDs.
const DEFAULT_CAPACITY: u32 = 0xFFFFF;

/// A set made by `ioasid_alloc_set` (see the module invariants).
#[repr(C)]
pub(crate) struct TokenSet {
    /// What C sees; first, so a `*mut ioasid_set` is the record's address.
    set: ioasid_set,
    refs: AtomicUsize,
    token: usize,
    kind: c_int,
}

/// A record on its way to the epoch (raw pointers make it `!Send`).
struct Buried(#[allow(dead_code)] Box<TokenSet>);

// SAFETY: the record is no longer reachable from any `ioasid_set` C may
// legally use; only its drop runs, on the thread that collects the epoch.
unsafe impl Send for Buried {}

/// The process-wide capacity quotas are reserved from.
pub(crate) fn capacity() -> &'static Capacity {
    static CAPACITY: OnceLock<Capacity> = OnceLock::new();
    CAPACITY.get_or_init(|| Capacity::new(DEFAULT_CAPACITY))
}

/// MM token -> its set (see the module invariants).
fn mm_sets() -> MutexGuard<'static, BTreeMap<usize, usize>> {
    static MM_SETS: OnceLock<Mutex<BTreeMap<usize, usize>>> = OnceLock::new();
    // Every change is one map operation: a poisoned lock holds a
    // consistent map.
    MM_SETS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The record of `set` if it is a token set, else `None`.
///
/// # Safety
/// `set` is non-null and valid (a live `struct ioasid_set`).
unsafe fn record_of<'a>(set: *mut ioasid_set) -> Option<&'a TokenSet> {
    // SAFETY: valid by the caller's contract; word 1 is written only
    // before a record is handed to C (module invariant), never after.
    let mark = unsafe { std::ptr::addr_of!((*set).opaque[1]).read() };
    // SAFETY: a set whose word 1 is its own address is a live record
    // (module invariant; a record is freed only after its last put).
    std::ptr::eq(mark.cast::<ioasid_set>(), set).then(|| unsafe { &*set.cast::<TokenSet>() })
}

/// A new record with one reference, its set of `quota` reserved from the
/// capacity: `Error::NoSpace` when less is left (or the global space has
/// its 16383 sets).
fn new_record(token: usize, quota: ioasid_t, kind: c_int) -> Result<*mut TokenSet, Error> {
    let core: Set<CData> = global_space().try_new_set_from(capacity(), quota as usize)?;
    let raw = Box::into_raw(Box::new(TokenSet {
        set: ioasid_set::zeroed(),
        refs: AtomicUsize::new(1),
        token,
        kind,
    }));
    // SAFETY: our fresh record, not shared yet: mark it (module invariant).
    unsafe { (*raw).set.opaque[1] = raw.cast() };
    let pin = domain().pin();
    let imp = Box::new(SetImpl {
        set: core,
        space: None,
        auto: None,
    });
    // SAFETY: our fresh record's set, never used: the install succeeds.
    let installed = unsafe { install_set(raw.cast(), imp, &pin) };
    debug_assert!(installed.is_ok(), "a fresh set is empty");
    Ok(raw)
}

/// Creates a set of type NULL (any token, shared by any number of sets).
pub(crate) fn create_set(token: usize, quota: ioasid_t) -> Result<*mut TokenSet, Error> {
    new_record(token, quota, SET_TYPE_NULL)
}

/// Creates the MM set of `token`: `Error::AlreadyExists` if the token has
/// a set with references already. The one place MM sets are made.
pub(crate) fn create_mm_set(token: usize, quota: ioasid_t) -> Result<*mut TokenSet, Error> {
    let mut sets = mm_sets();
    if let Some(&old) = sets.get(&token) {
        // SAFETY: a mapped record is alive: its teardown unmaps it (under
        // this lock) before freeing it.
        let old = unsafe { &*(old as *const TokenSet) };
        // Acquire: pairs with the Release of the puts; a count of 0 is a
        // set being torn down, which this one replaces.
        if old.refs.load(Ordering::Acquire) != 0 {
            return Err(Error::AlreadyExists);
        }
    }
    let raw = new_record(token, quota, SET_TYPE_MM)?;
    sets.insert(token, raw as usize);
    Ok(raw)
}

/// Tears down a set whose last reference is gone: frees each of its IDs
/// (custom allocator and vendor hooks included; referenced ones stay
/// FREE_PENDING, detached), gives its quota back to the capacity, and frees
/// its state and the record after readers.
fn teardown_set(record: *mut TokenSet) {
    let set: *mut ioasid_set = record.cast();
    // SAFETY: the record is alive until we bury it; this is its one
    // teardown. AcqRel: Acquire reads the SetImpl's contents; Release
    // orders earlier use before the pointer leaves the slot.
    let slot = unsafe { set_slot(set) };
    let raw = slot.swap(std::ptr::null_mut(), Ordering::AcqRel);
    if raw.addr() & 1 != 0 {
        // A declared set's state (tagged), installed by an alloc after a
        // misuse (`ioasid_set_destroy` on this set): its own teardown.
        // Release: as the swap.
        slot.store(raw, Ordering::Release);
        // SAFETY: the record's set is valid until we bury it below.
        unsafe { crate::destroy_set(set) };
    } else if !raw.is_null() {
        // SAFETY: installed by `new_record`, a leaked box; the swap made us
        // its only owner. Readers may still hold it: it goes to the epoch.
        let imp = unsafe { Box::from_raw(raw) };
        for id in set_ids(&imp.set) {
            let _ = free_in_set(&imp, id);
        }
        // Referenced IDs: FREE_PENDING, detached from the set.
        imp.set.clear();
        // The quota back to the capacity now (the set's own drop, after
        // readers, then gives back nothing). Busy only if a caller broke
        // the contract by allocating after the last put.
        let _ = imp.set.adjust_quota(0);
        domain().retire(imp);
    }
    // SAFETY: our record (leaked box in `new_record`), reachable by no one
    // who may use it; readers that loaded it finish before the epoch runs.
    domain().retire(Buried(unsafe { Box::from_raw(record) }));
}

/// Tears down an MM set: its token no longer finds it, then as
/// [`teardown_set`]. The one place MM sets end.
fn teardown_mm_set(record: *mut TokenSet) {
    {
        let mut sets = mm_sets();
        // SAFETY: alive until `teardown_set` buries it.
        let token = unsafe { (*record).token };
        if sets.get(&token) == Some(&(record as usize)) {
            sets.remove(&token);
        }
    }
    teardown_set(record);
}

/// A new set of the global space with one reference, `token` its owner (a
/// process for `IOASID_SET_TYPE_MM`, any value for `IOASID_SET_TYPE_NULL`)
/// and `quota` IDs reserved from the system capacity. Errors as
/// `ERR_PTR`: `-EINVAL` for a zero quota, an unknown type or a NULL MM
/// token; `-EEXIST` for an MM token that has a set already; `-ENOSPC` when
/// the capacity has less than `quota` left. Drop the reference with
/// `ioasid_set_put` (not `ioasid_set_destroy`).
///
/// `token` is any value; it is never dereferenced.
#[no_mangle]
pub extern "C" fn ioasid_alloc_set(
    token: *mut c_void,
    quota: ioasid_t,
    type_: c_int,
) -> *mut ioasid_set {
    ffi_guard!(
        "ioasid_alloc_set",
        err_ptr(-crate::errno::ENOTRECOVERABLE).cast(),
        {
            let made = match type_ {
                _ if quota == 0 => Err(Error::InvalidArgument),
                SET_TYPE_NULL => create_set(token as usize, quota),
                SET_TYPE_MM if token.is_null() => Err(Error::InvalidArgument),
                SET_TYPE_MM => create_mm_set(token as usize, quota),
                _ => Err(Error::InvalidArgument),
            };
            match made {
                Ok(record) => record.cast(),
                Err(e) => err_ptr(neg(e)).cast(),
            }
        }
    )
}

/// Takes a reference on a set made by `ioasid_alloc_set`. A no-op for NULL
/// and for other sets (declared or `ioasid_set_init` ones have no count).
///
/// # Safety
/// `set` is NULL or a valid `struct ioasid_set` on which the caller holds a
/// reference (or another live handle).
#[no_mangle]
pub unsafe extern "C" fn ioasid_set_get(set: *mut ioasid_set) {
    ffi_guard!("ioasid_set_get", crate::abort_on_panic("ioasid_set_get"), {
        if set.is_null() {
            return;
        }
        // SAFETY: non-null, valid by the caller's contract.
        if let Some(record) = unsafe { record_of(set) } {
            // Relaxed: the caller holds a reference, so the count is not 0
            // and no teardown can start; a new reference orders nothing.
            record.refs.fetch_add(1, Ordering::Relaxed);
        }
    })
}

/// Drops a reference of a set made by `ioasid_alloc_set`; the last one
/// frees every ID of the set (custom allocator hooks included; IDs still
/// referenced by `ioasid_get` stay FREE_PENDING, detached from the set),
/// gives its quota back to the capacity, and frees the set once no reader
/// can still use it (an MM set's token finds no set from then on). A no-op
/// for NULL and for other sets.
///
/// # Safety
/// `set` is NULL or a valid `struct ioasid_set`; after its last put the
/// caller must not use it again.
#[no_mangle]
pub unsafe extern "C" fn ioasid_set_put(set: *mut ioasid_set) {
    ffi_guard!("ioasid_set_put", crate::abort_on_panic("ioasid_set_put"), {
        if set.is_null() {
            return;
        }
        // SAFETY: non-null, valid by the caller's contract.
        let Some(record) = (unsafe { record_of(set) }) else {
            return;
        };
        // Release: our use of the set happens before the teardown.
        if record.refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Acquire: the teardown sees every other holder's use.
        fence(Ordering::Acquire);
        let raw = set.cast::<TokenSet>();
        if record.kind == SET_TYPE_MM {
            teardown_mm_set(raw);
        } else {
            teardown_set(raw);
        }
    })
}

/// The MM set of `token` with a reference taken (drop it with
/// `ioasid_set_put`), or NULL if the token has none.
///
/// `token` is any value; it is never dereferenced.
#[no_mangle]
pub extern "C" fn ioasid_find_mm_set(token: *mut c_void) -> *mut ioasid_set {
    ffi_guard!("ioasid_find_mm_set", std::ptr::null_mut(), {
        let sets = mm_sets();
        let Some(&raw) = sets.get(&(token as usize)) else {
            return std::ptr::null_mut();
        };
        // SAFETY: a mapped record is alive while the lock is held (its
        // teardown unmaps it under the lock first).
        let record = unsafe { &*(raw as *const TokenSet) };
        // Relaxed: as in `ioasid_set_get`; only a non-zero count is
        // raised, so a set being torn down is never revived.
        let mut refs = record.refs.load(Ordering::Relaxed);
        loop {
            if refs == 0 {
                return std::ptr::null_mut();
            }
            match record.refs.compare_exchange_weak(
                refs,
                refs + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return raw as *mut ioasid_set,
                Err(now) => refs = now,
            }
        }
    })
}

/// Changes the quota of `set` (one made by `ioasid_alloc_set`, or by
/// `ioasid_set_init` with a quota): 0; `-EINVAL` for a NULL set, a zero
/// quota or a set without quota; `-EBUSY` below the set's live count
/// (FREE_PENDING IDs count); `-ENOSPC` when a raise exceeds the capacity
/// left. A raise is reserved from the capacity, a cut given back (for an
/// `ioasid_alloc_set` set). Nothing changes on error.
///
/// # Safety
/// `set` is NULL or a valid `struct ioasid_set`.
#[no_mangle]
pub unsafe extern "C" fn ioasid_adjust_set(set: *mut ioasid_set, quota: ioasid_t) -> c_int {
    ffi_guard!("ioasid_adjust_set", -crate::errno::ENOTRECOVERABLE, {
        if set.is_null() || quota == 0 {
            return neg(Error::InvalidArgument);
        }
        let pin = domain().pin();
        // SAFETY: non-null, valid by the caller's contract.
        match unsafe { load_set(set, &pin) } {
            Some(imp) => imp
                .set
                .adjust_quota(quota as usize)
                .map_or_else(neg, |()| 0),
            // A declared set never used: no quota.
            None => neg(Error::InvalidArgument),
        }
    })
}

/// Sets the system capacity quotas are reserved from (0xFFFFF until then):
/// 0; `-EBUSY` after an earlier successful install, or while any quota is
/// reserved (nothing changed).
#[no_mangle]
pub extern "C" fn ioasid_install_capacity(total: ioasid_t) -> c_int {
    ffi_guard!("ioasid_install_capacity", -crate::errno::ENOTRECOVERABLE, {
        static INSTALLED: Mutex<bool> = Mutex::new(false);
        let mut installed = INSTALLED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *installed {
            return neg(Error::Busy);
        }
        match capacity().set_total(total) {
            Ok(()) => {
                *installed = true;
                0
            }
            Err(e) => neg(e),
        }
    })
}

/// The system capacity: the most IDs the quotas of all sets may add up to.
#[no_mangle]
pub extern "C" fn ioasid_get_capacity() -> ioasid_t {
    ffi_guard!("ioasid_get_capacity", 0, capacity().total())
}

/// The capacity not reserved by any set's quota.
#[no_mangle]
pub extern "C" fn ioasid_get_capacity_avail() -> ioasid_t {
    ffi_guard!("ioasid_get_capacity_avail", 0, capacity().available())
}
