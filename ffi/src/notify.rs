//! Notifications (SPEC 6.6): the kernel's `struct notifier_block` chains,
//! global and per set, and blocks registered for an MM token's set.
//!
//! A C block is registered as a core notifier ([`ioasid_core::Registration`])
//! whose callback builds a `struct ioasid_nb_args` on the stack and calls
//! `nb->notifier_call(nb, event, &args)`; a return with `NOTIFY_STOP_MASK`
//! stops that chain. The global chain is one [`ioasid_core::Notifiers`] hub
//! shared by every space this layer makes (`hub`), so its blocks see the IDs
//! of every space. `args.set` is the `struct ioasid_set` of the ID (the
//! address the layer stores as its core set's tag), NULL for the anonymous
//! set of `ioasid_alloc(NULL, ...)`.
//!
//! INVARIANTS:
//! - `REGISTRY` holds each registered (chain, block) pair once, with its
//!   core registration; unregister takes it out under the lock and drops
//!   it (waiting for the block's calls in flight) after releasing the lock,
//!   so callbacks may register and unregister other blocks.
//! - `MM` holds each (token, block) pair registered with
//!   `ioasid_register_notifier_mm` once: parked (no registration) until an
//!   MM set with that token exists, then on its chain from its creation
//!   (before `ioasid_alloc_set` returns it) until its teardown sent its
//!   FREE events; a set created while the previous one of the token is
//!   still in teardown holds the block too, so neither misses an event.
//! - The library reads `nb->notifier_call` at each call and
//!   `nb->priority` at registration; it never writes the block (its `next`
//!   field is the caller's).

use crate::{
    domain, ffi_guard, get_or_install_held, global_space, ioasid_set, ioasid_t, neg, CData,
};
use ioasid_core::{
    Chains, Error, Event, Notification, Notifiers, NotifyScope, Registration, INVALID_IOASID,
};
use std::collections::BTreeMap;
use std::ffi::{c_int, c_uint, c_ulong, c_void};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The events of a notifier chain (the kernel's `enum ioasid_notify_val`):
/// the `action` argument of `notifier_call`. Functions take it as a plain
/// `unsigned int`; an unknown value is `-EINVAL`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ioasid_notify_val {
    /// The ID was allocated (sent once lookups find it).
    IOASID_NOTIFY_ALLOC = 1,
    /// The ID was freed: exactly once per ID, at `ioasid_free` or its set's
    /// teardown (even if it only enters FREE_PENDING), or at the last
    /// `ioasid_put` of an ID never freed.
    IOASID_NOTIFY_FREE = 2,
    /// A set private ID was attached to the ID.
    IOASID_NOTIFY_BIND = 3,
    /// The ID's set private ID was detached.
    IOASID_NOTIFY_UNBIND = 4,
}

// `IOASID_NOTIFY_ALL` (1U << 0) and `IOASID_NOTIFY_SET` (1U << 1), and the
// kernel's NOTIFY_* values, are macros of the header's preamble
// (cbindgen.toml), spelled as the kernel spells them; `Chains::from_bits`
// reads the flags.

/// Priorities of the kernel's users, lowest first (a chain calls higher
/// priorities first; any `int` is accepted).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ioasid_notifier_prios {
    /// Runs after everyone else.
    IOASID_PRIO_LAST = 0,
    /// IOMMU drivers.
    IOASID_PRIO_IOMMU = 1,
    /// Device drivers.
    IOASID_PRIO_DEVICE = 2,
    /// CPU-side users (KVM): run first.
    IOASID_PRIO_CPU = 3,
}

/// The `data` argument of `notifier_call`: valid during the call only.
#[repr(C)]
pub struct ioasid_nb_args {
    /// The ID.
    pub id: ioasid_t,
    /// Its set private ID, or `INVALID_IOASID`.
    pub spid: ioasid_t,
    /// Its set; NULL for the anonymous set of `ioasid_alloc(NULL, ...)` or
    /// an ID detached by its set's teardown.
    pub set: *mut ioasid_set,
    /// Its private data.
    pub pdata: *mut c_void,
}

/// The kernel's notifier callback type (opt out as for
/// `struct notifier_block`).
#[cfg(not(ioasid_no_notifier_block))]
pub type notifier_fn_t = Option<
    unsafe extern "C" fn(nb: *mut notifier_block, action: c_ulong, data: *mut c_void) -> c_int,
>;

/// The kernel's `struct notifier_block` (same layout). Code with its own
/// definition (a kernel-compat `notifier.h`) defines
/// `IOASID_NO_NOTIFIER_BLOCK` before including this header.
// The cfg is never set in Rust: it only makes cbindgen wrap the type in
// `#if !defined(IOASID_NO_NOTIFIER_BLOCK)` (cbindgen.toml, [defines]).
#[cfg(not(ioasid_no_notifier_block))]
#[repr(C)]
pub struct notifier_block {
    /// Called with the block, an `enum ioasid_notify_val` and a
    /// `struct ioasid_nb_args *`; returns `NOTIFY_DONE`, `NOTIFY_OK`, or a
    /// value with `NOTIFY_STOP_MASK` to stop the chain.
    pub notifier_call: notifier_fn_t,
    /// The kernel's chain link; the library never touches it.
    pub next: *mut notifier_block,
    /// Higher runs first; read when the block is registered.
    pub priority: c_int,
}

/// Set in a return value: stop the chain (the kernel's value; the macro
/// is in the header's preamble).
const NOTIFY_STOP_MASK: c_int = 0x8000;

/// The global chain of every space of this layer.
pub(crate) fn hub() -> &'static Notifiers<CData> {
    static HUB: OnceLock<Notifiers<CData>> = OnceLock::new();
    HUB.get_or_init(Notifiers::new)
}

/// C registrations now (on any chain, MM ones attached to a set included).
static C_REGISTRATIONS: AtomicUsize = AtomicUsize::new(0);

/// A [`NotifyScope`] while any C block is registered, for a call that
/// holds a guard or a lock over an operation: its events then reach the
/// blocks after the call let go. One load when none is. (An operation
/// racing the very first registration may deliver its event to the block
/// inside the call's read-side section: that block's call must then not
/// wait for readers; the event is not "later" than the registration.)
#[inline]
pub(crate) fn scope() -> Option<NotifyScope> {
    // Relaxed: a hint; see above.
    (C_REGISTRATIONS.load(Ordering::Relaxed) != 0).then(NotifyScope::enter)
}

/// Which chain a registration is on: the global one (0) or a set's
/// (its address).
type Key = (usize, usize);

/// One count in `C_REGISTRATIONS`, given back when dropped (after the
/// registration it goes with: a tuple drops its fields in order).
struct Counted(());

impl Counted {
    fn new() -> Counted {
        // Relaxed: see `scope`.
        C_REGISTRATIONS.fetch_add(1, Ordering::Relaxed);
        Counted(())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        // Relaxed: see `scope`.
        C_REGISTRATIONS.fetch_sub(1, Ordering::Relaxed);
    }
}

type Registered = (Registration<CData>, Counted);

fn registry() -> MutexGuard<'static, BTreeMap<Key, Registered>> {
    static REGISTRY: OnceLock<Mutex<BTreeMap<Key, Registered>>> = OnceLock::new();
    REGISTRY
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A block registered for an MM token: parked (`attached` is empty), or on
/// the chains of that token's MM sets (each set's address, its
/// registration): the mapped one, and an older one whose teardown has not
/// reached `mm_set_gone` yet (for its last FREE events).
struct MmEntry {
    priority: c_int,
    attached: Vec<(usize, Registered)>,
}

/// Attaches the blocks of `token` to the chain of its mapped MM set, those
/// not on it already (at registration, when the set is created, and after
/// a set of the token was torn down, in case a new one exists already). A
/// set created while an older one of the token is still in teardown gets
/// its blocks at once, before any event of it.
pub(crate) fn attach_parked(token: usize) {
    let mut mm = mm_registry();
    for (&(t, nb), entry) in mm.range_mut((token, 0)..=(token, usize::MAX)) {
        debug_assert_eq!(t, token);
        // Under the MM map's lock of `tokens`: the set stays alive.
        let attached = crate::tokens::with_mm_set(token, |set| {
            if entry.attached.iter().any(|a| a.0 == set as usize) {
                return None;
            }
            let pin = domain().pin();
            // SAFETY: a mapped MM set is a live record (tokens' invariant).
            let imp = unsafe { crate::load_set(set, &pin) }?;
            let counted = Counted::new();
            let registration = imp.set.register_notifier(entry.priority, c_callback(nb));
            Some((set as usize, (registration, counted)))
        })
        .flatten();
        entry.attached.extend(attached);
    }
}

/// Parks again the blocks attached to MM set `set` of `token`, which was
/// torn down (after its FREE events).
pub(crate) fn mm_set_gone(token: usize, set: usize) {
    let taken: Vec<_> = {
        let mut mm = mm_registry();
        mm.range_mut((token, 0)..=(token, usize::MAX))
            .filter_map(|(_, e)| {
                let at = e.attached.iter().position(|a| a.0 == set)?;
                Some(e.attached.swap_remove(at))
            })
            .collect()
    };
    // Dropped with the lock released: each waits for calls in flight.
    drop(taken);
    attach_parked(token);
}

fn mm_registry() -> MutexGuard<'static, BTreeMap<Key, MmEntry>> {
    static MM: OnceLock<Mutex<BTreeMap<Key, MmEntry>>> = OnceLock::new();
    MM.get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The core callback of C block `nb`.
fn c_callback(
    nb: usize,
) -> impl Fn(&Notification<'_, CData>) -> ControlFlow<()> + Send + Sync + 'static {
    move |n| {
        let nb = nb as *mut notifier_block;
        // SAFETY: the block stays valid until its unregister returns
        // (caller's contract), which waits for this call.
        let Some(call) = (unsafe { (*nb).notifier_call }) else {
            return ControlFlow::Continue(());
        };
        let mut args = ioasid_nb_args {
            id: n.id(),
            spid: n.spid().unwrap_or(INVALID_IOASID),
            set: n.set_tag() as *mut ioasid_set,
            pdata: n.data().map_or(std::ptr::null_mut(), |d| d.ptr),
        };
        // SAFETY: the caller's callback, called as the kernel's chains do;
        // `args` lives for the call.
        let ret = unsafe {
            call(
                nb,
                c_ulong::from(n.event().as_raw()),
                std::ptr::addr_of_mut!(args).cast(),
            )
        };
        if ret & NOTIFY_STOP_MASK != 0 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

/// `-EINVAL` for a NULL block or a NULL `notifier_call`, else its priority.
///
/// # Safety
/// `nb` is NULL or a valid `struct notifier_block`.
unsafe fn checked_block(nb: *mut notifier_block) -> Result<c_int, c_int> {
    if nb.is_null() {
        return Err(neg(Error::InvalidArgument));
    }
    // SAFETY: non-null, valid by the caller's contract.
    let nb = unsafe { &*nb };
    if nb.notifier_call.is_none() {
        return Err(neg(Error::InvalidArgument));
    }
    Ok(nb.priority)
}

/// Registers `nb` on the chain of `set`, or on the global chain (every ID
/// of every space) for a NULL `set`: 0; `-EINVAL` for a NULL block or
/// NULL `notifier_call`, or a set whose space was destroyed; `-EEXIST` if
/// the block is already on that chain; `-ENOSPC` if a declared set cannot
/// get its state. The block sees every event that begins after this
/// returns. Callbacks run with no library lock held and may call any
/// function of this header (a block may even unregister itself from its
/// own call, see `ioasid_unregister_notifier`).
///
/// # Safety
/// `set` is NULL or a valid `struct ioasid_set`; `nb` is NULL or a valid
/// `struct notifier_block` that stays valid until it is unregistered.
#[no_mangle]
pub unsafe extern "C" fn ioasid_register_notifier(
    set: *mut ioasid_set,
    nb: *mut notifier_block,
) -> c_int {
    ffi_guard!(
        "ioasid_register_notifier",
        -crate::errno::ENOTRECOVERABLE,
        {
            // SAFETY: forwarded from the caller.
            let priority = match unsafe { checked_block(nb) } {
                Ok(priority) => priority,
                Err(e) => return e,
            };
            let key = (set as usize, nb as usize);
            let mut registry = registry();
            if registry.contains_key(&key) {
                return -crate::errno::EEXIST;
            }
            // Raised before the block can see an event (lowered on failure).
            let counted = Counted::new();
            let registration = if set.is_null() {
                hub().register(priority, c_callback(nb as usize))
            } else {
                let pin = domain().pin();
                // SAFETY: non-null, valid by the caller's contract.
                let imp = match unsafe { get_or_install_held(set, &pin) } {
                    Ok(imp) => imp,
                    Err(e) => return neg(e),
                };
                if !imp.usable() {
                    return neg(Error::InvalidArgument);
                }
                imp.set.register_notifier(priority, c_callback(nb as usize))
            };
            registry.insert(key, (registration, counted));
            0
        }
    )
}

/// Takes `nb` off the chain of `set` (NULL: the global chain) and returns
/// once no call of it is in flight on another thread, so the caller may
/// free it. A block that is not on that chain, or NULL, is ignored. A
/// block may unregister itself from its own call (that call is not waited
/// for).
///
/// # Safety
/// `set` and `nb` are any pointers (only compared).
#[no_mangle]
pub unsafe extern "C" fn ioasid_unregister_notifier(set: *mut ioasid_set, nb: *mut notifier_block) {
    ffi_guard!(
        "ioasid_unregister_notifier",
        crate::abort_on_panic("ioasid_unregister_notifier"),
        {
            let taken = registry().remove(&(set as usize, nb as usize));
            // Dropped with the lock released: it waits for calls in flight.
            drop(taken);
        }
    )
}

/// Drops the registrations on the chain of `set` (its teardown).
pub(crate) fn forget_set(set: *mut ioasid_set) {
    let taken: Vec<_> = {
        let mut registry = registry();
        let keys: Vec<Key> = registry
            .keys()
            .filter(|k| k.0 == set as usize && k.0 != 0)
            .copied()
            .collect();
        keys.iter().filter_map(|k| registry.remove(k)).collect()
    };
    drop(taken);
}

/// Registers `nb` for the MM set of `token`: on its chain at once if that
/// set exists, else parked until it is created (earlier events are not
/// replayed); parked again when that set is torn down. 0; `-EINVAL` for a
/// NULL block or NULL `notifier_call`; `-EEXIST` if the block is already
/// registered for `token`.
///
/// # Safety
/// `nb` is NULL or a valid `struct notifier_block` that stays valid until
/// it is unregistered; `token` is any value.
#[no_mangle]
pub unsafe extern "C" fn ioasid_register_notifier_mm(
    token: *mut c_void,
    nb: *mut notifier_block,
) -> c_int {
    ffi_guard!(
        "ioasid_register_notifier_mm",
        -crate::errno::ENOTRECOVERABLE,
        {
            // SAFETY: forwarded from the caller.
            if let Err(e) = unsafe { checked_block(nb) } {
                return e;
            }
            let key = (token as usize, nb as usize);
            let mut mm = mm_registry();
            if mm.contains_key(&key) {
                return -crate::errno::EEXIST;
            }
            // SAFETY: checked above.
            let priority = unsafe { (*nb).priority };
            mm.insert(
                key,
                MmEntry {
                    priority,
                    attached: Vec::new(),
                },
            );
            drop(mm);
            // On the chain of the token's set at once, if it has one.
            attach_parked(token as usize);
            0
        }
    )
}

/// Takes `nb` off the MM set of `token` (or out of the parked blocks) and
/// returns once no call of it is in flight on another thread. A block not
/// registered for `token`, or NULL, is ignored.
///
/// # Safety
/// `token` and `nb` are any values (only compared).
#[no_mangle]
pub unsafe extern "C" fn ioasid_unregister_notifier_mm(
    token: *mut c_void,
    nb: *mut notifier_block,
) {
    ffi_guard!(
        "ioasid_unregister_notifier_mm",
        crate::abort_on_panic("ioasid_unregister_notifier_mm"),
        {
            let taken = mm_registry().remove(&(token as usize, nb as usize));
            // Dropped with the lock released: it waits for calls in flight.
            drop(taken.map(|e| e.attached));
        }
    )
}

/// Sends event `cmd` about live `ioasid` of the global space by hand to
/// the chains of `flags` (`IOASID_NOTIFY_SET`: its set's chain first, then
/// `IOASID_NOTIFY_ALL`: the global chain): 0; `-EINVAL` for an unknown
/// event or flags (0 included); `-ENOENT` if `ioasid` is not live (a
/// FREE_PENDING ID is still found, so it may be notified).
#[no_mangle]
pub extern "C" fn ioasid_notify(ioasid: ioasid_t, cmd: c_uint, flags: c_uint) -> c_int {
    ffi_guard!("ioasid_notify", -crate::errno::ENOTRECOVERABLE, {
        let (Some(event), Some(chains)) = (Event::from_raw(cmd), Chains::from_bits(flags)) else {
            return neg(Error::InvalidArgument);
        };
        global_space()
            .notify(ioasid, event, chains)
            .map_or_else(neg, |()| 0)
    })
}
