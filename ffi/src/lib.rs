//! # C ABI of ioasid (`include/ioasid.h`, `libioasid.a`, `libioasid.so`)
//!
//! A thin layer over the Rust API of the `ioasid` crate: it checks the
//! arguments C hands it, converts them, calls a [`ioasid_core::Space`] or
//! [`ioasid_core::Set`] whose data is the caller's `void *`, and maps errors to
//! negative errno values (or `INVALID_IOASID` / `ERR_PTR` where the kernel's
//! prototypes return those). The functions and their semantics are the
//! kernel's v5.5 `ioasid_*`, the 2018 RFC's `iommu_pasid_*`, and our
//! extensions; see the project's SPEC section 4.
//!
//! ## Invariants
//!
//! - No Rust panic crosses the ABI: every `extern "C"` body runs inside
//!   [`ffi_guard!`], which returns the function's error value on a panic, or
//!   aborts with a message for functions that return nothing.
//! - Every space this layer makes uses the core's global reclamation domain
//!   ([`ioasid_core::Domain::global`]), so one `ioasid_read_lock()` covers them
//!   all and `ioasid_synchronize()` waits for readers of every space.
//! - `struct ioasid_set` is C memory of a fixed size. Its first word is an
//!   atomic pointer to a `SetImpl` (a core set plus its space), null until
//!   the set's first allocation or `ioasid_set_init`, installed by one
//!   compare-and-swap (a set declared with `DECLARE_IOASID_SET` needs no init,
//!   from any thread). INVARIANT: a `SetImpl` leaves its `ioasid_set` by a
//!   swap to null and is then dropped through the global domain's epoch
//!   (`bury`); every function that loads one holds a guard of that domain
//!   while it uses it.
//! - A thread that is inside a read-side section (its `ioasid_read_lock`, a
//!   `for_each` or `getter` callback, a custom allocator hook) must not wait
//!   for readers: it would wait for itself. Waiting functions detect it
//!   (`in_read_section`) and return `-EDEADLK`, or abort with a message
//!   where they return nothing.

#![allow(non_camel_case_types)]
#![deny(missing_docs)]

use ioasid_core::{Domain, Error, Ioasid, Set, Space};
use std::cell::{Cell, RefCell};
use std::ffi::{c_int, c_long, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, OnceLock};

mod ext;
mod kernel;
mod rfc;

pub use ext::*;
pub use kernel::*;
pub use rfc::*;

/// An I/O address space ID (`typedef unsigned int ioasid_t`).
pub type ioasid_t = std::ffi::c_uint;

/// errno values this layer returns (Linux numbering, as in `<errno.h>`).
pub mod errno {
    pub use ioasid_core::errno::*;
    /// Waiting for readers from inside a read-side section.
    pub const EDEADLK: i32 = 35;
    /// A Rust panic was caught at the ABI boundary.
    pub const ENOTRECOVERABLE: i32 = 131;
}

/// The allocation policy of a space created with `ioasid_space_create`.
/// Functions take it as a plain `unsigned int`: an unknown value is refused,
/// never undefined behaviour.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ioasid_policy {
    /// The lowest free ID at or above `min` (the kernel IDA contract).
    IOASID_POLICY_LOWEST = 0,
    /// The lowest free ID after the last one handed out, wrapping to `min`.
    IOASID_POLICY_CYCLIC = 1,
    /// Any free ID in range (best scaling, no ordering promise).
    IOASID_POLICY_ANY = 2,
}

/// A consumer of IDs (`DECLARE_IOASID_SET(name)` = all zero: ready to use).
///
/// Fixed size so C can embed it by value (the RFC's `struct iommu_pasid`
/// does). C must not touch its fields.
///
/// One array member, so that `{ 0 }` initialises it without warnings in C
/// and C++ alike.
#[repr(C)]
pub struct ioasid_set {
    /// Word 0: atomic pointer to the library's set state, null until first
    /// use. Words 1..3: reserved, zero.
    opaque: [*mut c_void; 4],
}

impl ioasid_set {
    /// The all-zero set of `DECLARE_IOASID_SET`.
    pub(crate) const fn zeroed() -> ioasid_set {
        ioasid_set {
            opaque: [std::ptr::null_mut(); 4],
        }
    }
}

/// The private data the library stores per ID.
#[derive(Clone, Copy)]
pub(crate) struct CData {
    /// The caller's pointer (NULL allowed).
    pub(crate) ptr: *mut c_void,
    /// For an ID a vendor driver gave through the RFC's `pasid_alloc`, the
    /// consumer whose `ops->pasid_free` must get it back; null otherwise.
    pub(crate) vendor: *mut rfc::iommu_pasid,
}

// SAFETY: the pointers are opaque to the library, which never dereferences
// `ptr`; `vendor` is dereferenced only to call the consumer's `pasid_free`,
// and the consumer outlives its IDs (iommu_pasid_exit frees them first).
unsafe impl Send for CData {}
// SAFETY: as above; shared references only copy the pointers.
unsafe impl Sync for CData {}

// SAFETY: a CData without vendor whose pointer fits 48 bits is stored
// inline as the pointer's bits and rebuilt from them with a null vendor: a
// plain copy, no ownership, no drop glue, no interior mutability. Any other
// CData is stored boxed (the provided methods).
unsafe impl ioasid_core::Payload for CData {
    fn to_inline(&self) -> Option<u64> {
        let bits = self.ptr as usize as u64;
        (self.vendor.is_null() && bits < 1 << 48).then_some(bits)
    }

    unsafe fn from_inline(bits: u64) -> Self {
        CData::new(bits as usize as *mut c_void)
    }
}

impl CData {
    pub(crate) fn new(ptr: *mut c_void) -> Self {
        CData {
            ptr,
            vendor: std::ptr::null_mut(),
        }
    }
}

/// The state behind an initialised `struct ioasid_set`.
pub(crate) struct SetImpl {
    pub(crate) set: Set<CData>,
    /// The space handle for a set made by `ioasid_set_init` with a space;
    /// `None` for the global space.
    pub(crate) space: Option<Arc<ext::SpaceShared>>,
}

impl SetImpl {
    /// A set of the global space, or `Error::NoSpace` when the space has its
    /// 16383 live sets already.
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
            .map_or(true, |s| !s.destroyed.load(Ordering::Acquire))
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

/// Maps a core error to the negative errno of an `int` return.
pub(crate) fn neg(error: Error) -> c_int {
    -error.errno()
}

/// The kernel's `ERR_PTR`: a negative errno encoded in the top 4095 bytes.
pub(crate) fn err_ptr(negative_errno: c_int) -> *mut c_void {
    c_long::from(negative_errno) as isize as *mut c_void
}

// ---------------------------------------------------------------------------
// Read-side sections.

thread_local! {
    /// Guards of this thread's `ioasid_read_lock()` calls, innermost last.
    static READ_GUARDS: RefCell<Vec<ioasid_core::Guard>> = const { RefCell::new(Vec::new()) };
    /// How many read-side sections this thread is in: its read locks plus the
    /// library's own pins around C callbacks.
    static READ_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// True if this thread is inside a read-side section, where waiting for
/// readers would wait for itself.
pub(crate) fn in_read_section() -> bool {
    READ_DEPTH.with(Cell::get) > 0
}

/// Marks a read-side section of the library (around a C callback).
pub(crate) struct ReadSection(());

impl ReadSection {
    pub(crate) fn enter() -> ReadSection {
        READ_DEPTH.with(|d| d.set(d.get() + 1));
        ReadSection(())
    }
}

impl Drop for ReadSection {
    fn drop(&mut self) {
        READ_DEPTH.with(|d| d.set(d.get() - 1));
    }
}

pub(crate) fn read_lock() {
    let guard = domain().pin();
    READ_GUARDS.with(|g| g.borrow_mut().push(guard));
    READ_DEPTH.with(|d| d.set(d.get() + 1));
}

/// Ends the innermost read lock; false if this thread held none.
pub(crate) fn read_unlock() -> bool {
    let guard = READ_GUARDS.with(|g| g.borrow_mut().pop());
    match guard {
        Some(guard) => {
            READ_DEPTH.with(|d| d.set(d.get() - 1));
            drop(guard);
            true
        }
        None => false,
    }
}

/// Waits for every reader of every space, or reports that this thread would
/// wait for itself.
pub(crate) fn wait_for_readers() -> Result<(), c_int> {
    if in_read_section() {
        return Err(-errno::EDEADLK);
    }
    domain().synchronize();
    Ok(())
}

// ---------------------------------------------------------------------------
// The panic boundary.

/// Runs the body of an `extern "C"` function, catching any panic: the
/// function then returns `$on_panic` (its error value). For functions that
/// return nothing, pass [`abort_on_panic`] as `$on_panic`.
#[macro_export]
#[doc(hidden)]
macro_rules! ffi_guard {
    ($name:literal, $on_panic:expr, $body:expr) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| $body)) {
            Ok(value) => value,
            Err(_) => {
                $crate::report_panic($name);
                $on_panic
            }
        }
    };
}

/// Prints that a panic was caught at the boundary (the panic hook already
/// printed the panic's own message).
#[doc(hidden)]
pub fn report_panic(function: &str) {
    eprintln!("ioasid: a Rust panic was caught in {function}(); it returns an error");
}

/// For functions that cannot return an error: the process cannot go on in a
/// known state, so abort with a message (unwinding into C is never allowed).
#[doc(hidden)]
pub fn abort_on_panic(function: &str) -> ! {
    eprintln!("ioasid: a Rust panic in {function}(), which cannot report errors: aborting");
    std::process::abort()
}

/// Aborts for a void function called where it would wait for itself.
pub(crate) fn abort_deadlock(function: &str) -> ! {
    eprintln!(
        "ioasid: {function}() called inside a read-side section \
         (ioasid_read_lock or a callback) would wait for itself: aborting"
    );
    std::process::abort()
}

#[cfg(test)]
mod tests;
