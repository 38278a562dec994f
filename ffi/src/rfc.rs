//! The 2018 RFC "iommu: Add APIs for IOMMU PASID management":
//! `iommu_pasid_init/exit/alloc/free/find/for_each` with stand-ins for the
//! kernel's `struct iommu_ops` (its PASID hooks only) and `struct bus_type`.
//!
//! A consumer (`struct iommu_pasid`) is a set of the global space with its
//! own range `[min, max]`, `[IOMMU_PASID_MIN, IOMMU_PASID_MAX]` unless the
//! vendor's `pasid_init` narrows it. With a vendor `pasid_alloc`, the vendor
//! picks the number and the library records it with an exact allocation
//! (`min == max`) in the consumer's set, and in `VENDOR_IDS`, so that every
//! free path hands it back through `pasid_free`. Ranges are inclusive (docs/CONTRACT.md,
//! section 2).

use crate::{ffi_guard, install_set, ioasid_set, ioasid_t, load_set, neg, CData, SetImpl};
use ioasid_core::{Error, MAX_IOASID, PASID_MAX, PASID_MIN};
use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// The PASID hooks of the kernel's `struct iommu_ops`. Code with its own
/// definition (of this layout) defines `IOASID_NO_IOMMU_TYPES`.
// The cfg is never set in Rust: it only makes cbindgen wrap the type in
// `#if !defined(IOASID_NO_IOMMU_TYPES)` (cbindgen.toml, [defines]).
#[cfg(not(ioasid_no_iommu_types))]
#[repr(C)]
pub struct iommu_ops {
    /// Called by `iommu_pasid_init`; may narrow `min`/`max` and set `priv`.
    /// Non-zero fails the init.
    pub pasid_init: Option<unsafe extern "C" fn(pasid: *mut iommu_pasid) -> c_int>,
    /// Picks a PASID in `[start, end]` into `*ioasid`: 0, `-EAGAIN` to let
    /// the library allocate, or another negative errno.
    pub pasid_alloc: Option<
        unsafe extern "C" fn(
            pasid: *mut iommu_pasid,
            start: ioasid_t,
            end: ioasid_t,
            ioasid: *mut ioasid_t,
        ) -> c_int,
    >,
    /// Takes back a PASID that `pasid_alloc` gave.
    pub pasid_free: Option<unsafe extern "C" fn(pasid: *mut iommu_pasid, ioasid: ioasid_t)>,
}

/// The kernel's `struct bus_type`, reduced to what the RFC uses (opt out
/// as for `struct iommu_ops`).
#[cfg(not(ioasid_no_iommu_types))]
#[repr(C)]
pub struct bus_type {
    /// The bus name (unused by the library).
    pub name: *const c_char,
    /// The IOMMU driver's ops; NULL: no IOMMU on this bus.
    pub iommu_ops: *const iommu_ops,
}

/// A PASID consumer, made by `iommu_pasid_init`, freed by `iommu_pasid_exit`.
///
/// cbindgen:field-names=[max, min, set, ops, priv]
#[repr(C)]
pub struct iommu_pasid {
    /// Highest PASID of the consumer (inclusive).
    pub max: ioasid_t,
    /// Lowest PASID of the consumer.
    pub min: ioasid_t,
    /// The consumer's set in the global space.
    pub set: ioasid_set,
    /// The vendor hooks.
    pub ops: *const iommu_ops,
    /// The vendor's private pointer.
    pub priv_: *mut c_void,
}

/// IDs a vendor's `pasid_alloc` gave, each with its consumer's address,
/// and per consumer the number of its vendor IDs not yet handed back.
///
/// A kernel-form `ioasid_free` knows no set, so the record is by ID, and
/// only vendor IDs have one: per-ID data stays the caller's pointer alone,
/// and `ioasid_set_data` cannot touch vendor-ness.
///
/// A consumer that exits while some of its vendor IDs are still referenced
/// (`ioasid_get`) leaves them FREE_PENDING; each goes back through the
/// consumer's `pasid_free` at its last put, so the consumer (the memory
/// behind `struct iommu_pasid`) lives until the last of them has been
/// handed back, and is freed by whoever hands it back.
///
/// INVARIANTS:
/// - An ID has a record from its core allocation to its core free, both
///   done under the lock together with the insert and the removal;
///   `VENDOR_LIVE` is at least the number of records (raised before the
///   allocation, lowered after the removal).
/// - `owed[c]` counts the records of consumer `c` plus the removed ones
///   whose `pasid_free` has not returned; it is lowered only after the hook
///   returns. An entry with `exited` is freed by the thread that brings its
///   count to zero, and only then.
static VENDOR_IDS: Mutex<Vendors> = Mutex::new(Vendors {
    ids: BTreeMap::new(),
    owed: BTreeMap::new(),
});
static VENDOR_LIVE: AtomicUsize = AtomicUsize::new(0);

struct Vendors {
    /// Vendor ID -> its consumer's address.
    ids: BTreeMap<ioasid_t, usize>,
    /// Consumer's address -> what it is owed back.
    owed: BTreeMap<usize, Owed>,
}

#[derive(Default)]
struct Owed {
    /// Vendor IDs not yet handed back (see the invariants).
    count: usize,
    /// `iommu_pasid_exit` has run: free the consumer when `count` is zero.
    exited: bool,
}

fn vendor_ids() -> MutexGuard<'static, Vendors> {
    // Every change keeps the maps consistent at each step: a poisoned lock
    // still guards consistent maps.
    VENDOR_IDS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Frees `id` with `free` (a core free or put, answering whether it
/// released the ID); a released vendor ID then goes back to its consumer's
/// `pasid_free` (one left FREE_PENDING goes back at its last put, even
/// after its consumer's exit). While vendor IDs exist, a guard of the
/// global domain is held over the free and the hook, so the hook runs in a
/// read-side section as every vendor hook does. With none, nothing is
/// pinned here.
#[inline]
pub(crate) fn free_id<E>(id: ioasid_t, free: impl FnOnce() -> Result<bool, E>) -> Result<bool, E> {
    // Relaxed: a hint. The count is raised before a vendor ID's word is
    // published (Release); whoever learnt the ID read that word or was
    // handed the ID afterwards, so sees the raised count. A zero count
    // means `id` is no vendor ID: no consumer is touched, no pin needed.
    if VENDOR_LIVE.load(Ordering::Relaxed) == 0 {
        return free();
    }
    // Notifications wait until the guard is gone (callbacks may wait for readers).
    let _scope = crate::notify::scope();
    let _pin = crate::domain().pin();
    let mut vendors = vendor_ids();
    if !free()? {
        return Ok(false);
    }
    let consumer = vendors.ids.remove(&id);
    drop(vendors);
    if let Some(consumer) = consumer {
        // Relaxed: see above.
        VENDOR_LIVE.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: the record's consumer: its `owed` count includes this ID
        // until `handed_back` below, so it is not freed before.
        unsafe { vendor_free(consumer as *mut iommu_pasid, id) };
        handed_back(consumer);
    }
    Ok(true)
}

/// One vendor ID of `consumer` has gone back through its `pasid_free`;
/// frees an exited consumer that is owed nothing more.
fn handed_back(consumer: usize) {
    let mut vendors = vendor_ids();
    let Some(owed) = vendors.owed.get_mut(&consumer) else {
        return;
    };
    owed.count -= 1;
    if owed.count > 0 {
        return;
    }
    let exited = owed.exited;
    vendors.owed.remove(&consumer);
    drop(vendors);
    if exited {
        // SAFETY: made by iommu_pasid_init as a Box; its exit has run (its
        // set is destroyed and its readers waited for) and it is owed no
        // more hook calls (invariant above): this is its last use.
        drop(unsafe { Box::from_raw(consumer as *mut iommu_pasid) });
    }
}

/// Hands a vendor-allocated ID back to its driver.
///
/// # Safety
/// `vendor` is a live consumer.
unsafe fn vendor_free(vendor: *mut iommu_pasid, id: ioasid_t) {
    // SAFETY: a live consumer, by the caller's contract.
    let ops = unsafe { (*vendor).ops };
    if ops.is_null() {
        return;
    }
    // SAFETY: the consumer's ops, valid while the consumer lives.
    if let Some(free) = unsafe { (*ops).pasid_free } {
        // Callers hold a guard: the hook must not wait for readers.
        let _section = crate::ReadSection::enter();
        // SAFETY: the vendor's hook, called as the RFC does.
        unsafe { free(vendor, id) }
    }
}

/// A new consumer for the IOMMU of `bus`, or NULL: for a NULL bus or ops,
/// when `ops->pasid_init` fails, or when it leaves an empty range or one
/// beyond the space.
///
/// # Safety
/// `bus` is NULL or valid, and its `iommu_ops` NULL or valid for the
/// consumer's whole life.
#[no_mangle]
pub unsafe extern "C" fn iommu_pasid_init(bus: *mut bus_type) -> *mut iommu_pasid {
    ffi_guard!("iommu_pasid_init", std::ptr::null_mut(), {
        if bus.is_null() {
            return std::ptr::null_mut();
        }
        // SAFETY: non-null and valid by the caller's contract.
        let ops = unsafe { (*bus).iommu_ops };
        if ops.is_null() {
            return std::ptr::null_mut();
        }
        let pasid = Box::into_raw(Box::new(iommu_pasid {
            max: PASID_MAX,
            min: PASID_MIN,
            set: ioasid_set::zeroed(),
            ops,
            priv_: std::ptr::null_mut(),
        }));
        // SAFETY: `pasid` is ours (just boxed); `ops` valid by contract.
        let failed = match unsafe { (*ops).pasid_init } {
            // SAFETY: the vendor's hook, called as the RFC does.
            Some(init) => (unsafe { init(pasid) }) != 0,
            None => false,
        };
        // SAFETY: ours; the vendor hook has returned.
        let (min, max) = unsafe { ((*pasid).min, (*pasid).max) };
        if failed || min > max || max > MAX_IOASID {
            // SAFETY: ours, never shared; nothing installed yet.
            drop(unsafe { Box::from_raw(pasid) });
            return std::ptr::null_mut();
        }
        let Ok(fresh) = SetImpl::global() else {
            // The global space has its 16383 sets already.
            // SAFETY: ours, never shared; nothing installed.
            drop(unsafe { Box::from_raw(pasid) });
            return std::ptr::null_mut();
        };
        let pin = crate::domain().pin();
        // SAFETY: `set` is a field of our live box.
        let installed =
            unsafe { install_set(std::ptr::addr_of_mut!((*pasid).set), Box::new(fresh), &pin) };
        if installed.is_err() {
            // The vendor's init wrote into the set: refuse it.
            // SAFETY: ours; the set slot holds the vendor's value, not ours.
            drop(unsafe { Box::from_raw(pasid) });
            return std::ptr::null_mut();
        }
        pasid
    })
}

/// Frees every ID the consumer still owns (vendor IDs through
/// `ops->pasid_free`), waits for readers, frees the consumer. An ID that is
/// still referenced (`ioasid_get`) is left FREE_PENDING (contract §6.2); a
/// vendor one goes back through this consumer's `pasid_free` at its last
/// `ioasid_put`, so the library frees the consumer after that hook returns.
/// NULL is a no-op. Aborts if called inside a read-side section (it would
/// wait for itself).
///
/// # Safety
/// `pasid` is NULL or a consumer from `iommu_pasid_init`, not used again by
/// the caller; its `ops` stay valid until its last vendor ID is handed back.
#[no_mangle]
pub unsafe extern "C" fn iommu_pasid_exit(pasid: *mut iommu_pasid) {
    ffi_guard!(
        "iommu_pasid_exit",
        crate::abort_on_panic("iommu_pasid_exit"),
        {
            if pasid.is_null() {
                return;
            }
            if crate::in_read_section() {
                crate::abort_deadlock("iommu_pasid_exit");
            }
            // SAFETY: a live consumer by the caller's contract.
            unsafe { crate::destroy_set(std::ptr::addr_of_mut!((*pasid).set)) };
            // Not inside a read-side section (checked above): this returns.
            crate::domain().synchronize();
            {
                let mut vendors = vendor_ids();
                if let Some(owed) = vendors.owed.get_mut(&(pasid as usize)) {
                    // Vendor IDs left FREE_PENDING (still referenced) go
                    // back through this consumer at their last put: the
                    // last one hands it back frees it (`handed_back`).
                    owed.exited = true;
                    return;
                }
            }
            // SAFETY: made by iommu_pasid_init as a Box; its IDs are freed,
            // no reader can still see them, and no vendor ID of it is left.
            drop(unsafe { Box::from_raw(pasid) });
        }
    )
}

/// Allocates a PASID in `[min, max]` clamped to the consumer's range, with
/// `private_` as its data, into `*ioasid`: 0 or a negative errno (`-EINVAL`
/// for NULL arguments or a range that misses the consumer's, `-ENOSPC`,
/// `-EIO` for a bad vendor ID, or the vendor's own error).
///
/// # Safety
/// `pasid` is NULL or a live consumer; `ioasid` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn iommu_pasid_alloc(
    pasid: *mut iommu_pasid,
    min: ioasid_t,
    max: ioasid_t,
    private_: *mut c_void,
    ioasid: *mut ioasid_t,
) -> c_int {
    ffi_guard!("iommu_pasid_alloc", -crate::errno::ENOTRECOVERABLE, {
        if pasid.is_null() || ioasid.is_null() {
            return neg(Error::InvalidArgument);
        }
        // SAFETY: a live consumer by the caller's contract.
        let (lo, hi, ops) = unsafe { ((*pasid).min.max(min), (*pasid).max.min(max), (*pasid).ops) };
        if min > max || lo > hi {
            return neg(Error::InvalidArgument);
        }
        // Notifications wait until the guard is gone (callbacks may wait for readers).
        let _scope = crate::notify::scope();
        let pin = crate::domain().pin();
        // SAFETY: the consumer's own set.
        let Some(imp) = (unsafe { load_set(std::ptr::addr_of_mut!((*pasid).set), &pin) }) else {
            return neg(Error::InvalidArgument);
        };
        let vendor_alloc = if ops.is_null() {
            None
        } else {
            // SAFETY: `ops` is the consumer's, valid while it lives (init contract).
            unsafe { (*ops).pasid_alloc }
        };
        if let Some(vendor_alloc) = vendor_alloc {
            let mut id: ioasid_t = ioasid_core::INVALID_IOASID;
            let rc = {
                // We hold a guard: the hook must not wait for readers.
                let _section = crate::ReadSection::enter();
                // SAFETY: the vendor's hook, called as the RFC does.
                unsafe { vendor_alloc(pasid, lo, hi, &mut id) }
            };
            if rc == 0 {
                if !(lo..=hi).contains(&id) {
                    return neg(Error::Io);
                }
                let mut vendors = vendor_ids();
                // Relaxed: see `free_id`; raised before the word is published.
                VENDOR_LIVE.fetch_add(1, Ordering::Relaxed);
                let recorded = imp.set.alloc(id, id, CData::new(private_));
                match recorded {
                    Ok(id) => {
                        vendors.ids.insert(id, pasid as usize);
                        vendors.owed.entry(pasid as usize).or_default().count += 1;
                    }
                    // Relaxed: see `free_id`.
                    Err(_) => drop(VENDOR_LIVE.fetch_sub(1, Ordering::Relaxed)),
                }
                drop(vendors);
                return match recorded {
                    Ok(id) => {
                        // SAFETY: non-null and writable by contract.
                        unsafe { ioasid.write(id) };
                        0
                    }
                    // The vendor gave an ID that is already live.
                    Err(Error::NoSpace) => neg(Error::Io),
                    Err(e) => neg(e),
                };
            }
            if rc != -crate::errno::EAGAIN {
                return rc;
            }
        }
        match imp.set.alloc(lo, hi, CData::new(private_)) {
            Ok(id) => {
                // SAFETY: non-null and writable by contract.
                unsafe { ioasid.write(id) };
                0
            }
            Err(e) => neg(e),
        }
    })
}

/// Frees a PASID of this consumer (a vendor PASID also through
/// `ops->pasid_free`); an ID it does not own is left untouched.
///
/// # Safety
/// `pasid` is NULL or a live consumer.
#[no_mangle]
pub unsafe extern "C" fn iommu_pasid_free(pasid: *mut iommu_pasid, ioasid: ioasid_t) {
    ffi_guard!(
        "iommu_pasid_free",
        crate::abort_on_panic("iommu_pasid_free"),
        {
            if pasid.is_null() {
                return;
            }
            // Notifications wait until the guard is gone (callbacks may wait for readers).
            let _scope = crate::notify::scope();
            let pin = crate::domain().pin();
            // SAFETY: the consumer's own set.
            if let Some(imp) = unsafe { load_set(std::ptr::addr_of_mut!((*pasid).set), &pin) } {
                let _ = crate::free_in_set(imp, ioasid);
            }
        }
    )
}

/// The data of a PASID of this consumer, or NULL when it is not live or not
/// this consumer's (or for a NULL consumer).
///
/// # Safety
/// `pasid` is NULL or a live consumer.
#[no_mangle]
pub unsafe extern "C" fn iommu_pasid_find(
    pasid: *mut iommu_pasid,
    ioasid: ioasid_t,
) -> *mut c_void {
    ffi_guard!("iommu_pasid_find", std::ptr::null_mut(), {
        if pasid.is_null() {
            return std::ptr::null_mut();
        }
        let pin = crate::domain().pin();
        // SAFETY: the consumer's own set.
        let Some(imp) = (unsafe { load_set(std::ptr::addr_of_mut!((*pasid).set), &pin) }) else {
            return std::ptr::null_mut();
        };
        imp.set
            .find(ioasid, &pin)
            .map_or(std::ptr::null_mut(), |data| data.ptr)
    })
}

/// Calls `func(id, private, data)` for each PASID of the consumer in
/// ascending order; a non-zero return stops the walk and is returned, else
/// 0. `-EINVAL` for NULL `pasid` or `func`.
///
/// # Safety
/// `pasid` is NULL or a live consumer; `func` NULL or callable as declared.
#[no_mangle]
pub unsafe extern "C" fn iommu_pasid_for_each(
    pasid: *mut iommu_pasid,
    func: Option<
        unsafe extern "C" fn(ioasid: ioasid_t, private_: *mut c_void, data: *mut c_void) -> c_int,
    >,
    data: *mut c_void,
) -> c_int {
    ffi_guard!("iommu_pasid_for_each", -crate::errno::ENOTRECOVERABLE, {
        if pasid.is_null() {
            return neg(Error::InvalidArgument);
        }
        // SAFETY: the consumer's own set, non-null.
        unsafe { crate::sets::set_for_each(std::ptr::addr_of_mut!((*pasid).set), func, data) }
    })
}
