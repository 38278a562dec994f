//! Set handles: the state behind a `struct ioasid_set` (`SetImpl`), the
//! process-global space, and installing, loading, walking and destroying
//! sets.
//!
//! INVARIANT: word 0 of a `struct ioasid_set` is null or a leaked
//! `Box<SetImpl>`, installed by one compare-and-swap (a set declared with
//! `DECLARE_IOASID_SET` needs no init, from any thread). A `SetImpl` of a
//! set with an explicit life leaves its `ioasid_set` by a swap to null and
//! is then dropped through the global domain's epoch (`bury`, one `Domain::retire`); every
//! function that loads one holds a guard of that domain while it uses it.
//! A declared set's state is never freed: it is reclaimed while idle and
//! empty, and reused (see "Declared sets need no teardown" below), so a
//! stale word is always safe to read and is recognised by `serves`.
//! A declared set's state is installed tagged (bit 0 of the word,
//! `DECLARED`): a word with the tag may be followed with no guard.
//!
//! Every space this layer makes uses the core's global reclamation domain
//! ([`ioasid_core::Domain::global`]), so one `ioasid_read_lock()` covers them
//! all and `ioasid_synchronize()` waits for readers of every space.

use crate::errno::neg;
use crate::types::{ioasid_set, ioasid_t, CData};
use crate::{ext, rfc, ReadSection};
use ioasid_core::{Domain, Error, Ioasid, Set, Space};
use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// The state behind an initialised `struct ioasid_set`.
pub(crate) struct SetImpl {
    pub(crate) set: Set<CData>,
    /// The space handle for a set made by `ioasid_set_init` with a space;
    /// `None` for the global space.
    pub(crate) space: Option<Arc<ext::SpaceShared>>,
    /// For a set installed on first use (a declared set of the global
    /// space): the reclaim state; `None` for sets with an explicit life
    /// (`ioasid_set_init`, RFC consumers, the NULL set).
    pub(crate) auto: Option<AutoState>,
}

impl SetImpl {
    /// A set of the global space, or `Error::NoSpace` when the space has its
    /// 16383 live sets already.
    pub(crate) fn global() -> Result<SetImpl, Error> {
        Ok(SetImpl {
            set: global_space().try_new_set(None)?,
            space: None,
            auto: None,
        })
    }

    /// False for a reclaimed declared set's state seen through a stale
    /// `ioasid_set` (the state now serves another set, or none).
    pub(crate) fn serves(&self, set: *mut ioasid_set) -> bool {
        // Acquire: pairs with the Release store of `bind`.
        self.auto
            .as_ref()
            .is_none_or(|a| a.bound.load(Ordering::Acquire) == set as usize)
    }

    /// Holds the state for a change of `set` (alloc, checked free, walk),
    /// so it is not reclaimed meanwhile; `None` if it no longer serves
    /// `set`. A declared set's hold stays with the calling thread after
    /// the change (see "A thread's standing hold" below), so a thread that
    /// keeps using one declared set takes its hold once, not per call.
    #[inline]
    pub(crate) fn hold(&self, set: *mut ioasid_set) -> Option<Hold<'_>> {
        // With the thread's standing hold on this state, it was not
        // reclaimed since that hold was taken: it still serves the set it
        // served then, and the caller's `serves(set)` (checked when it
        // loaded the state) is still true.
        if self.auto.is_none() || standing_hold_is(self) {
            return Some(Hold::borrowed(self));
        }
        self.take_hold(set)
    }

    /// [`SetImpl::hold`] of a declared set's state the thread holds no
    /// standing hold on: takes one.
    #[cold]
    #[inline(never)]
    fn take_hold(&self, set: *mut ioasid_set) -> Option<Hold<'_>> {
        let auto = self.auto.as_ref()?;
        // Acquire (load and CAS): reads the `bound` of the bind that
        // cleared DEAD; Release: orders nothing before it (a counter).
        let mut holds = auto.holds.load(Ordering::Acquire);
        loop {
            if holds & DEAD != 0 {
                if !self.serves(set) {
                    return None;
                }
                // A sweep is looking at this state (under the pool lock,
                // without waiting for anything): it either reclaims it
                // (then it serves no set) or clears the mark at once.
                std::thread::yield_now();
                // Acquire: as above.
                holds = auto.holds.load(Ordering::Acquire);
                continue;
            }
            match auto.holds.compare_exchange_weak(
                holds,
                holds + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => holds = now,
            }
        }
        // Checked after the hold is taken: a reclaim needs zero holds, so
        // the binding seen here stays until the hold goes.
        if !self.serves(set) {
            release_hold(auto);
            return None;
        }
        Some(match make_standing(self) {
            true => Hold::borrowed(self),
            // The thread is exiting: this hold goes with the call.
            false => Hold::owned(self),
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
            .notifiers(crate::notify::hub().clone())
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

/// Bit 0 of a set word: the state is a declared set's, never freed. (A
/// `SetImpl` is aligned to 8, so bit 0 of its address is free.)
const DECLARED: usize = 1;

/// A declared set's state as stored in a set word (tagged).
fn tag_declared(raw: *mut SetImpl) -> *mut SetImpl {
    raw.map_addr(|a| a | DECLARED)
}

/// The state a set word points at (tag cleared).
fn untag(word: *mut SetImpl) -> *mut SetImpl {
    word.map_addr(|a| a & !DECLARED)
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
    let ptr = untag(slot.load(Ordering::Acquire));
    // SAFETY: a non-null pointer in the slot is a leaked Box<SetImpl>; it is
    // freed only through the epoch after leaving the slot, and `_pin` keeps
    // it alive (module invariant).
    let imp = (!ptr.is_null()).then(|| unsafe { &*ptr })?;
    imp.serves(set).then_some(imp)
}

/// The set's implementation if it is a declared set's state serving `set`,
/// loaded with no guard; `None` otherwise (never used, reclaimed, or a set
/// with an explicit life: load that one under a guard with [`load_set`]).
///
/// # Safety
/// `set` is non-null and valid for the call.
pub(crate) unsafe fn load_declared<'a>(set: *mut ioasid_set) -> Option<&'a SetImpl> {
    // SAFETY: forwarded from the caller.
    let slot = unsafe { set_slot(set) };
    // Acquire: as in `load_set`.
    let word = slot.load(Ordering::Acquire);
    if word.addr() & DECLARED == 0 {
        return None;
    }
    // SAFETY: a tagged word is a declared set's state, never freed (module
    // invariant): no guard is needed to follow it.
    let imp = unsafe { &*untag(word) };
    imp.serves(set).then_some(imp)
}

/// [`load_declared`], held for a change of the set (see
/// [`SetImpl::hold`]): a declared set in use, changed with no guard (its
/// state is never freed). `None` for a NULL set, one never used or
/// reclaimed, or one with an explicit life.
///
/// # Safety
/// `set` is NULL or valid for the call.
#[inline]
pub(crate) unsafe fn load_declared_held<'a>(set: *mut ioasid_set) -> Option<Hold<'a>> {
    if set.is_null() {
        return None;
    }
    // SAFETY: non-null, valid by the caller's contract.
    unsafe { load_declared(set) }?.hold(set)
}

/// [`load_set`], held for a change of the set (see [`SetImpl::hold`]).
///
/// # Safety
/// As for [`load_set`].
pub(crate) unsafe fn load_held(set: *mut ioasid_set, pin: &ioasid_core::Guard) -> Option<Hold<'_>> {
    // SAFETY: forwarded from the caller.
    unsafe { load_set(set, pin) }?.hold(set)
}

/// Replaces an unused slot value (null, or a reclaimed state that no longer
/// serves `set`) by `raw`; `Err` when the set is in use.
///
/// # Safety
/// `set` is non-null and valid while `_pin`, a guard of the global domain,
/// lives; `raw` is a valid `SetImpl` not yet shared.
unsafe fn replace_unused(
    set: *mut ioasid_set,
    raw: *mut SetImpl,
    _pin: &ioasid_core::Guard,
) -> Result<(), ()> {
    // SAFETY: forwarded from the caller.
    let slot = unsafe { set_slot(set) };
    // Acquire: as in `load_set`.
    let mut current = slot.load(Ordering::Acquire);
    loop {
        if current == raw {
            // A declared set's state reclaimed and taken again for the
            // same set: it is in place already.
            return Ok(());
        }
        // SAFETY: a non-null slot value is alive under `_pin` (module
        // invariant); a declared set's state is never freed at all.
        if !current.is_null() && unsafe { (*untag(current)).serves(set) } {
            return Err(());
        }
        // AcqRel: Release publishes the new SetImpl's contents; Acquire
        // (also on failure) reads the contents of another thread's.
        match slot.compare_exchange(current, raw, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(()),
            Err(now) => current = now,
        }
    }
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
    let raw = Box::into_raw(fresh);
    // SAFETY: forwarded from the caller; `raw` is ours, not shared.
    match unsafe { replace_unused(set, raw, _pin) } {
        Ok(()) => {
            // SAFETY: just installed; freed only through the epoch (invariant).
            let imp = unsafe { &*raw };
            // Notifications name the set by its address (`notify`).
            imp.set.set_tag(set as usize);
            Ok(imp)
        }
        Err(()) => {
            // SAFETY: forwarded from the caller.
            let slot = unsafe { set_slot(set) };
            // Acquire: as in `load_set`. The set is in use: its value stays
            // (only destroy removes it, and the caller owns that race).
            let current = slot.load(Ordering::Acquire);
            // SAFETY: `raw` was never shared; take it back. `current` is
            // installed and protected by `_pin` (module invariant).
            Err(unsafe { (&*untag(current), Box::from_raw(raw)) })
        }
    }
}

/// The set's implementation, held (see [`SetImpl::hold`]), installing a
/// declared set's state on first use or after it was reclaimed
/// (`Error::NoSpace` if the global space has no room for another set).
///
/// # Safety
/// `set` is non-null and valid while `pin`, a guard of the global domain,
/// lives.
pub(crate) unsafe fn get_or_install_held(
    set: *mut ioasid_set,
    pin: &ioasid_core::Guard,
) -> Result<Hold<'_>, Error> {
    loop {
        // SAFETY: forwarded from the caller.
        if let Some(held) = unsafe { load_held(set, pin) } {
            return Ok(held);
        }
        let fresh = auto_take(set)?;
        // SAFETY: forwarded from the caller; `fresh` is bound to `set` and
        // not installed anywhere. Tagged: a declared set's state.
        if unsafe { replace_unused(set, tag_declared(fresh), pin) }.is_err() {
            // Another thread installed first: use its state.
            auto_give_back(fresh);
        }
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
    let raw = untag(slot.swap(std::ptr::null_mut(), Ordering::AcqRel));
    if raw.is_null() {
        return;
    }
    // SAFETY: installed, so alive (declared sets' states are never freed).
    let shared = unsafe { &*raw };
    if let Some(auto) = &shared.auto {
        if !shared.serves(set) {
            return; // a stale value: the set was reclaimed already
        }
        for id in set_ids(&shared.set) {
            let _ = free_in_set(shared, id);
        }
        // Referenced IDs stay FREE_PENDING, detached: the state's next user
        // must not own them.
        shared.set.clear();
        // The set's notifier registrations end with it (after its FREEs).
        crate::notify::forget_set(set);
        // This thread's standing hold would keep the state from the pool;
        // another thread's keeps it there until that thread moves on.
        drop_standing_if(raw);
        let mut pool = auto_pool();
        reclaim_if_idle(&mut pool, raw, auto);
        return;
    }
    // SAFETY: `raw` was installed, so it is a leaked box, and the swap made
    // this call its only owner. Other threads may still read it under their
    // guards; `bury` drops it only after them.
    let imp = unsafe { Box::from_raw(raw) };
    for id in set_ids(&imp.set) {
        let _ = free_in_set(&imp, id);
    }
    // Referenced IDs stay FREE_PENDING, detached now (SPEC 6.2), and the
    // set is no longer one of its space's sets in a save.
    imp.set.clear();
    imp.set.unlist();
    // The set's notifier registrations end with it (after its FREEs).
    crate::notify::forget_set(set);
    bury(imp);
}

/// Drops a `SetImpl` once no thread can still use it: every function that
/// loads one holds a guard of the global domain while it uses it, and
/// `Domain::retire` drops it only after every guard alive now. It cannot
/// fail, so nothing is ever dropped early; the pending drop holds the box's
/// real pointer, so leak checkers see it as reachable until then.
fn bury(set: Box<SetImpl>) {
    domain().retire(set);
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
    rfc::free_id(id, || imp.set.free_released(id)).map(drop)
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
    let Some(imp) = (unsafe { load_held(set, &pin) }) else {
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

// ---------------------------------------------------------------------------
// Declared sets need no teardown.
//
// A set declared with `DECLARE_IOASID_SET` gets its state on first use and
// may go out of scope at any time with no call: the library cannot touch
// its memory afterwards. So a declared set's state is never freed; it is
// reclaimed while its set is empty and idle, and reused. A sweep (when the
// pool has grown to twice the states in use at the last sweep, plus some)
// marks each idle state DEAD, and one whose set is empty is unbound and
// pooled, its (empty) core set kept for the next declared set. A set whose
// state was reclaimed while still in scope holds a stale pointer: the state
// no longer serves it (`bound`), so it reads as never used and gets a state
// again on its next allocation. Memory and core sets stay bounded by about
// twice the declared sets in use at once.
//
// INVARIANT: every declared set's state is in `AutoPool::all` for the life
// of the process; a pooled state has `holds == DEAD` and `bound == 0`; a
// state is bound (to one set) only with DEAD clear, and is reclaimed only
// from zero holds, under the pool lock.

/// The reclaim state of a declared set's `SetImpl`.
pub(crate) struct AutoState {
    /// The address of the `ioasid_set` this state serves; 0 while pooled.
    bound: AtomicUsize,
    /// Calls changing the set through this state (`SetImpl::hold`), with
    /// DEAD set while pooled or being reclaimed.
    holds: AtomicUsize,
}

const DEAD: usize = 1 << (usize::BITS - 1);

/// A hold on a set's state (a declared set's state is not reclaimed while
/// a hold lives): the thread's standing hold, or one of this call only.
pub(crate) struct Hold<'a> {
    imp: &'a SetImpl,
    /// Released on drop (a hold of this call only).
    owned: bool,
}

impl<'a> Hold<'a> {
    fn borrowed(imp: &'a SetImpl) -> Self {
        Hold { imp, owned: false }
    }

    fn owned(imp: &'a SetImpl) -> Self {
        Hold { imp, owned: true }
    }
}

impl std::ops::Deref for Hold<'_> {
    type Target = SetImpl;
    fn deref(&self) -> &SetImpl {
        self.imp
    }
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        if let (true, Some(auto)) = (self.owned, &self.imp.auto) {
            release_hold(auto);
        }
    }
}

fn release_hold(auto: &AutoState) {
    // Release: the change made under the hold happens before a reclaim's
    // Acquire CAS from zero.
    auto.holds.fetch_sub(1, Ordering::Release);
}

// A thread's standing hold.
//
// A call that changes a declared set holds its state (one increment of
// `holds`), and the hold stays with the thread afterwards, in
// `STANDING_HOLD`: the thread's next change of the same set finds its hold
// there and writes nothing shared. The hold moves (one decrement, one
// increment) when the thread changes another declared set, and goes when
// the thread exits or destroys that set. So each thread keeps at most one
// idle state from being reclaimed, and a thread that allocates and frees
// in one declared set pays no read-modify-write for holding it.
//
// INVARIANT: `STANDING_HOLD` is null or a declared set's state on which
// this thread holds one unit of `holds` (taken in `SetImpl::hold`).

thread_local! {
    /// The thread's standing hold (const, with no destructor: the fast
    /// path's check is one thread-local load).
    static STANDING_HOLD: Cell<*const SetImpl> = const { Cell::new(std::ptr::null()) };
    /// Releases the standing hold when the thread exits; registered by the
    /// first standing hold the thread takes.
    static STANDING_EXIT: StandingExit = const { StandingExit };
}

struct StandingExit;

impl Drop for StandingExit {
    fn drop(&mut self) {
        // After this, `make_standing` finds `STANDING_EXIT` gone and keeps
        // no hold past its call, so none is left behind.
        STANDING_HOLD.with(release_standing);
    }
}

fn release_standing(standing: &Cell<*const SetImpl>) {
    let held = standing.replace(std::ptr::null());
    if !held.is_null() {
        // SAFETY: a declared set's state, never freed (module invariant).
        let auto = unsafe { (*held).auto.as_ref() }.expect("a declared set's state");
        release_hold(auto);
    }
}

/// Whether the thread's standing hold is on `imp`.
#[inline]
fn standing_hold_is(imp: &SetImpl) -> bool {
    STANDING_HOLD.with(|standing| std::ptr::eq(standing.get(), imp))
}

/// Makes the hold just taken on `imp` the thread's standing hold,
/// releasing the one it replaces; false if the thread is exiting (its
/// exit hook is gone), when the caller keeps the hold for its call only.
fn make_standing(imp: &SetImpl) -> bool {
    if STANDING_EXIT.try_with(|_| ()).is_err() {
        return false;
    }
    STANDING_HOLD.with(|standing| {
        release_standing(standing);
        standing.set(imp);
    });
    true
}

/// Lets go of the thread's standing hold if it is on `imp` (before a
/// reclaim of `imp` by this thread).
fn drop_standing_if(imp: *const SetImpl) {
    STANDING_HOLD.with(|standing| {
        if std::ptr::eq(standing.get(), imp) {
            release_standing(standing);
        }
    });
}

struct AutoPool {
    /// Every declared set's state ever made (addresses of leaked boxes).
    all: Vec<usize>,
    /// The pooled ones.
    free: Vec<usize>,
    /// States in use after the last sweep.
    in_use_after_sweep: usize,
}

static AUTO_POOL: Mutex<AutoPool> = Mutex::new(AutoPool {
    all: Vec::new(),
    free: Vec::new(),
    in_use_after_sweep: 0,
});

fn auto_pool() -> MutexGuard<'static, AutoPool> {
    // Every change keeps the lists consistent step by step.
    AUTO_POOL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reclaims `raw` (a declared set's state) if it has no holds and its set
/// is empty.
fn reclaim_if_idle(pool: &mut AutoPool, raw: *mut SetImpl, auto: &AutoState) {
    // AcqRel: Acquire sees the changes of released holds; Release orders
    // nothing (the DEAD mark only refuses new holds).
    if auto
        .holds
        .compare_exchange(0, DEAD, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    // SAFETY: a declared set's state, never freed (invariant).
    let imp = unsafe { &*raw };
    // A set with notifiers on its chain stays bound to its `ioasid_set`.
    if imp.set.is_empty() && !imp.set.has_notifiers() {
        // Release: pairs with `serves`' Acquire.
        auto.bound.store(0, Ordering::Release);
        pool.free.push(raw as usize);
    } else {
        // Release: as the DEAD mark.
        auto.holds.store(0, Ordering::Release);
    }
}

fn sweep(pool: &mut AutoPool) {
    for index in 0..pool.all.len() {
        let raw = pool.all[index] as *mut SetImpl;
        // SAFETY: a declared set's state, never freed (invariant).
        let auto = unsafe { (*raw).auto.as_ref() }.expect("a declared set's state");
        reclaim_if_idle(pool, raw, auto);
    }
    pool.in_use_after_sweep = pool.all.len() - pool.free.len();
}

/// A declared set's state bound to `set`, from the pool or new.
fn auto_take(set: *mut ioasid_set) -> Result<*mut SetImpl, Error> {
    let mut pool = auto_pool();
    if pool.free.is_empty() && pool.all.len() >= 2 * pool.in_use_after_sweep + 16 {
        sweep(&mut pool);
    }
    let raw = match pool.free.pop() {
        Some(raw) => raw as *mut SetImpl,
        None => match global_space().try_new_set(None) {
            Ok(core) => {
                let raw = Box::into_raw(Box::new(SetImpl {
                    set: core,
                    space: None,
                    auto: Some(AutoState {
                        bound: AtomicUsize::new(0),
                        holds: AtomicUsize::new(DEAD),
                    }),
                }));
                pool.all.push(raw as usize);
                raw
            }
            // Out of sets: reclaim what can be, or give up.
            Err(e) => {
                sweep(&mut pool);
                pool.free.pop().ok_or(e)? as *mut SetImpl
            }
        },
    };
    bind(raw, set);
    Ok(raw)
}

fn bind(raw: *mut SetImpl, set: *mut ioasid_set) {
    // SAFETY: a declared set's state, never freed (invariant).
    let auto = unsafe { (*raw).auto.as_ref() }.expect("a declared set's state");
    // SAFETY: as above. Notifications name the set by its address.
    unsafe { (*raw).set.set_tag(set as usize) };
    // Release (both): `bound` before DEAD clears, so a hold that reads the
    // clear reads the binding (see `SetImpl::hold`).
    auto.bound.store(set as usize, Ordering::Release);
    auto.holds.store(0, Ordering::Release);
}

/// Pools a state that `auto_take` bound but that was never installed.
fn auto_give_back(raw: *mut SetImpl) {
    let mut pool = auto_pool();
    // SAFETY: a declared set's state, never freed (invariant).
    let auto = unsafe { (*raw).auto.as_ref() }.expect("a declared set's state");
    // Release: as in `reclaim_if_idle`.
    auto.holds.store(DEAD, Ordering::Release);
    auto.bound.store(0, Ordering::Release);
    pool.free.push(raw as usize);
}

/// The holds on the declared set state serving `set`, DEAD bit included
/// (`None` if no declared state serves it).
///
/// # Safety
/// `set` is non-null and valid for the call.
#[cfg(test)]
pub(crate) unsafe fn holds_of(set: *mut ioasid_set) -> Option<usize> {
    // SAFETY: forwarded from the caller.
    let imp = unsafe { load_declared(set) }?;
    // Relaxed: a test's look at a counter its own threads changed (joined
    // or on this thread).
    Some(imp.auto.as_ref()?.holds.load(Ordering::Relaxed))
}

/// The declared set state in `set`'s word (tag cleared), serving or not.
///
/// # Safety
/// `set` is non-null and valid for the call.
#[cfg(test)]
pub(crate) unsafe fn state_of(set: *mut ioasid_set) -> *const SetImpl {
    // SAFETY: forwarded from the caller.
    let slot = unsafe { set_slot(set) };
    // Acquire: as in `load_set`.
    untag(slot.load(Ordering::Acquire))
}

/// Whether the declared set state `raw` serves `set`.
#[cfg(test)]
pub(crate) fn state_serves(raw: *const SetImpl, set: *mut ioasid_set) -> bool {
    // SAFETY: a declared set's state, never freed (module invariant).
    unsafe { &*raw }.serves(set)
}
