//! Set handles: the state behind a `struct ioasid_set` (`SetImpl`), the
//! process-global space, and installing, loading, walking and destroying
//! sets.
//!
//! INVARIANT: word 0 of a `struct ioasid_set` is null or a leaked
//! `Box<SetImpl>`, installed by one compare-and-swap (a set declared with
//! `DECLARE_IOASID_SET` needs no init, from any thread). A `SetImpl` leaves
//! its `ioasid_set` by a swap to null and is then dropped through the global
//! domain's epoch (`bury`); every function that loads one holds a guard of
//! that domain while it uses it.
//!
//! Every space this layer makes uses the core's global reclamation domain
//! ([`ioasid_core::Domain::global`]), so one `ioasid_read_lock()` covers them
//! all and `ioasid_synchronize()` waits for readers of every space.

use crate::errno::neg;
use crate::types::{ioasid_set, ioasid_t, CData};
use crate::{ext, rfc, ReadSection};
use ioasid_core::{Domain, Error, Ioasid, Set, Space};
use std::ffi::{c_int, c_void};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, OnceLock};

/// The state behind an initialised `struct ioasid_set`.
pub(crate) struct SetImpl {
    pub(crate) set: Set<CData>,
    /// The space handle for a set made by `ioasid_set_init` with a space;
    /// `None` for the global space.
    pub(crate) space: Option<Arc<ext::SpaceShared>>,
}

impl SetImpl {
    /// A set of the global space, or `Error::NoSpace` when the space has its
    /// 32767 live sets already.
    pub(crate) fn global() -> Result<SetImpl, Error> {
        Ok(SetImpl {
            set: global_space().try_new_set(None)?,
            space: None,
        })
    }

    /// False once the set's space was destroyed: it allocates no more.
    pub(crate) fn usable(&self) -> bool {
        self.space
            .as_ref()
            .is_none_or(|s| !s.destroyed.load(Ordering::Acquire))
    }
}

/// The process-global space `[0, 0xFFFFFFFE]` of the kernel-form functions.
pub(crate) fn global_space() -> &'static Space<CData> {
    static GLOBAL: OnceLock<Space<CData>> = OnceLock::new();
    GLOBAL.get_or_init(|| {
        Space::builder()
            .range(0, ioasid_core::MAX_IOASID)
            .build()
            .expect("the global range is valid")
    })
}

/// The set of `ioasid_alloc(NULL, ...)`: the kernel allows a NULL set.
pub(crate) fn null_set() -> &'static SetImpl {
    static NULL_SET: OnceLock<SetImpl> = OnceLock::new();
    // The first set of the global space: there is room for it.
    NULL_SET.get_or_init(|| SetImpl::global().expect("the first set fits"))
}

/// The reclamation domain every space of this layer uses.
pub(crate) fn domain() -> &'static Domain {
    Domain::global()
}

/// The atomic view of a set's implementation pointer.
///
/// # Safety
/// `set` is non-null, aligned, and valid for the returned lifetime.
pub(crate) unsafe fn set_slot<'a>(set: *mut ioasid_set) -> &'a AtomicPtr<SetImpl> {
    // SAFETY: the caller guarantees `set` is valid; word 0 of `opaque` is a
    // pointer, so it is aligned for `AtomicPtr`, and all accesses to it from
    // this library are atomic (C code does not touch it).
    unsafe { AtomicPtr::from_ptr(std::ptr::addr_of_mut!((*set).opaque).cast()) }
}

/// The set's implementation, or `None` for a set never used (or destroyed).
///
/// # Safety
/// `set` is non-null and valid while `pin`, a guard of the global domain,
/// lives.
pub(crate) unsafe fn load_set(set: *mut ioasid_set, _pin: &ioasid_core::Guard) -> Option<&SetImpl> {
    // SAFETY: forwarded from the caller.
    let slot = unsafe { set_slot(set) };
    // Acquire: pairs with the Release of the installing CAS, so the SetImpl's
    // contents are visible.
    let ptr = slot.load(Ordering::Acquire);
    // SAFETY: a non-null pointer in the slot is a leaked Box<SetImpl>; it is
    // freed only through the epoch after leaving the slot, and `_pin` keeps
    // it alive (module invariant).
    (!ptr.is_null()).then(|| unsafe { &*ptr })
}

/// Installs `fresh` in an empty set; on a lost race (or a set already in
/// use) returns the current one and hands `fresh` back.
///
/// # Safety
/// `set` is non-null and valid while `pin`, a guard of the global domain,
/// lives.
pub(crate) unsafe fn install_set(
    set: *mut ioasid_set,
    fresh: Box<SetImpl>,
    _pin: &ioasid_core::Guard,
) -> Result<&SetImpl, (&SetImpl, Box<SetImpl>)> {
    // SAFETY: forwarded from the caller.
    let slot = unsafe { set_slot(set) };
    let raw = Box::into_raw(fresh);
    // AcqRel: Release publishes the new SetImpl's contents; Acquire (also on
    // failure) reads the contents of the one another thread installed.
    match slot.compare_exchange(
        std::ptr::null_mut(),
        raw,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        // SAFETY: just installed; freed only through the epoch (invariant).
        Ok(_) => Ok(unsafe { &*raw }),
        Err(current) => {
            // SAFETY: `raw` was never shared; take it back. `current` is
            // installed and protected by `_pin` (module invariant).
            Err(unsafe { (&*current, Box::from_raw(raw)) })
        }
    }
}

/// The set's implementation, installing a global-space one on first use
/// (`Error::NoSpace` if the global space has no room for another set).
///
/// # Safety
/// `set` is non-null and valid while `pin`, a guard of the global domain,
/// lives.
pub(crate) unsafe fn get_or_install_set(
    set: *mut ioasid_set,
    pin: &ioasid_core::Guard,
) -> Result<&SetImpl, Error> {
    // SAFETY: forwarded from the caller.
    if let Some(existing) = unsafe { load_set(set, pin) } {
        return Ok(existing);
    }
    let fresh = Box::new(SetImpl::global()?);
    // SAFETY: forwarded from the caller.
    match unsafe { install_set(set, fresh, pin) } {
        Ok(installed) => Ok(installed),
        // Another thread installed first: use its set, drop ours (empty).
        Err((current, _ours)) => Ok(current),
    }
}

/// Removes the set's implementation: frees every ID it owns (vendor IDs
/// through their `pasid_free`) and drops it through the epoch. The
/// `ioasid_set` is then all zero again.
///
/// # Safety
/// `set` is non-null and valid for the call.
pub(crate) unsafe fn destroy_set(set: *mut ioasid_set) {
    // SAFETY: forwarded from the caller.
    let slot = unsafe { set_slot(set) };
    // AcqRel: Acquire reads the SetImpl's contents; Release orders our
    // earlier use before the pointer leaves the slot.
    let raw = slot.swap(std::ptr::null_mut(), Ordering::AcqRel);
    if raw.is_null() {
        return;
    }
    // SAFETY: `raw` was installed, so it is a leaked box, and the swap made
    // this call its only owner. Other threads may still read it under their
    // guards; `bury` drops it only after them.
    let imp = unsafe { Box::from_raw(raw) };
    for id in set_ids(&imp.set) {
        let _ = free_in_set(&imp, id);
    }
    bury(imp);
}

/// Drops a `SetImpl` once no thread can still use it: every function that
/// loads one holds a guard of the global domain while it uses it, and the
/// core drops freed data only after every such guard that could have seen
/// it. So the set becomes the data ([`Grave`]) of a fresh ID of a private
/// "graveyard" space in that domain, and the ID is freed at once.
fn bury(set: Box<SetImpl>) {
    static GRAVEYARD: OnceLock<Set<Grave>> = OnceLock::new();
    let graves = GRAVEYARD.get_or_init(|| {
        let space: Space<Grave> = Space::builder()
            .build()
            .expect("the default range is valid");
        space.new_set()
    });
    let grave = Grave::new(set);
    // Cannot fail: one grave per concurrent caller is live at a time, in a
    // space of 2^32 - 1 IDs. (On an error the core would drop the grave at
    // once, which a concurrent reader might still use.)
    let id = graves
        .alloc(0, ioasid_core::MAX_IOASID, grave)
        .expect("the graveyard has room");
    let _ = graves.free(id);
}

/// A buried `SetImpl`, freed when the grave is dropped.
///
/// The core packs a value's bits with its owner into one word, which leak
/// checkers (valgrind, LeakSanitizer) cannot read as a pointer. So the
/// address of every buried set is also kept in `BURIED` until the set is
/// freed: sets awaiting their grace period at exit are reachable, not leaks.
/// INVARIANT: a grave's address is in `BURIED` from `Grave::new` to its drop.
struct Grave(*mut SetImpl);

static BURIED: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

fn buried() -> std::sync::MutexGuard<'static, Vec<usize>> {
    // Every change is one Vec operation: a poisoned list is still consistent.
    BURIED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Grave {
    fn new(set: Box<SetImpl>) -> Grave {
        let raw = Box::into_raw(set);
        buried().push(raw as usize);
        Grave(raw)
    }
}

impl Drop for Grave {
    fn drop(&mut self) {
        let mut list = buried();
        if let Some(index) = list.iter().position(|&a| a == self.0 as usize) {
            list.swap_remove(index);
        }
        drop(list);
        // SAFETY: made from a Box in `Grave::new`; the core drops a value
        // exactly once (its Payload contract), so this is the one free.
        drop(unsafe { Box::from_raw(self.0) });
    }
}

// SAFETY: a grave owns its SetImpl, which is Send and Sync.
unsafe impl Send for Grave {}
// SAFETY: as above; a shared grave is never used.
unsafe impl Sync for Grave {}

// SAFETY: stored inline as the set's address when it fits 48 bits and
// rebuilt from it; a rebuilt grave that is never dropped (a view) frees
// nothing. Otherwise boxed (provided methods).
unsafe impl ioasid_core::Payload for Grave {
    fn to_inline(&self) -> Option<u64> {
        let bits = self.0 as usize as u64;
        (bits < 1 << 48).then_some(bits)
    }

    unsafe fn from_inline(bits: u64) -> Self {
        Grave(bits as usize as *mut SetImpl)
    }
}

/// The IDs a set owns, in ascending order (a snapshot).
pub(crate) fn set_ids(set: &Set<CData>) -> Vec<Ioasid> {
    let mut ids = Vec::new();
    let _ = set.for_each(|id, _| {
        ids.push(id);
        std::ops::ControlFlow::<()>::Continue(())
    });
    ids
}

/// Checked free of `id` from a set; hands a vendor ID back to its driver.
pub(crate) fn free_in_set(imp: &SetImpl, id: Ioasid) -> Result<(), Error> {
    let data: CData = {
        let guard = imp.set.space().pin();
        *imp.set.find(id, &guard)?
    };
    imp.set.free(id)?;
    // SAFETY: `vendor` is null or the consumer that owned the ID; consumers
    // outlive their IDs (CData's invariant).
    unsafe { rfc::vendor_free(data.vendor, id) };
    Ok(())
}

/// The callback type of `ioasid_set_for_each` and `iommu_pasid_for_each`.
type ForEachFn = Option<
    unsafe extern "C" fn(ioasid: ioasid_t, private_: *mut c_void, data: *mut c_void) -> c_int,
>;

/// Walks a set (the shared body of both for_each functions).
///
/// # Safety
/// `set` is non-null and valid; `func` NULL or callable as declared.
pub(crate) unsafe fn set_for_each(
    set: *mut ioasid_set,
    func: ForEachFn,
    data: *mut c_void,
) -> c_int {
    let Some(func) = func else {
        return neg(Error::InvalidArgument);
    };
    let pin = domain().pin();
    // SAFETY: forwarded from the caller.
    let Some(imp) = (unsafe { load_set(set, &pin) }) else {
        return 0;
    };
    let _section = ReadSection::enter();
    let walk = imp.set.for_each(|id, item| {
        // SAFETY: the caller's callback, called as its contract says.
        match unsafe { func(id, item.ptr, data) } {
            0 => ControlFlow::Continue(()),
            stop => ControlFlow::Break(stop),
        }
    });
    match walk {
        ControlFlow::Break(stop) => stop,
        ControlFlow::Continue(()) => 0,
    }
}
