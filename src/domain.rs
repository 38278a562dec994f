//! Reclamation domains: the RCU of this crate.
//!
//! A [`Domain`] wraps one crossbeam-epoch `Collector`. Every space belongs to
//! one domain; readers pin it (a [`Guard`]) for the span in which data they
//! found may be used, and writers hand freed records to it, which drops them
//! only once every guard that could have seen them is gone.
//!
//! By default all spaces share [`Domain::global`], so a new space costs no
//! collector and one `ioasid_read_lock()` covers every space, as RCU does in
//! the kernel. A space built with its own domain ([`Domain::new`]) releases
//! all of its garbage when the last space and guard of that domain are gone,
//! which is what tests that count drops, and loom models, want.
//!
//! Identity is never an address: each domain has a serial number that no
//! other domain of the process ever gets (a freed domain's block may be
//! reused by a new one, its number is not). A guard records the number of
//! the domain it pinned and keeps that domain's collector alive (a crossbeam
//! guard holds its participant, which holds the collector), so a guard that
//! outlives its domain is refused by every other domain's spaces.
//!
//! Each thread caches one crossbeam `LocalHandle` per domain it has touched.
//! INVARIANT: a cached handle's domain is found by its serial number (the
//! domain itself held weakly); entries whose domain is gone are pruned on
//! the next miss in that thread, and a dropped domain removes its own entry
//! from the dropping thread at once.

use crate::error::Error;
use crate::sync::{thread_local, yield_now, AtomicBool, AtomicU64, Ordering};
use crossbeam_epoch::{Collector, LocalHandle};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::ptr;
use std::sync::Weak;

// The domain's own bookkeeping is not part of any modelled protocol, so it
// uses std's Arc even under loom; the collector inside is loom's.
use std::sync::Arc as StdArc;

/// A reclamation domain (one epoch collector). Cheap to clone.
///
/// ```
/// use ioasid::{Domain, Space};
/// let domain = Domain::new();
/// let space: Space<u64> = Space::builder().range(1, 100).domain(domain.clone()).build().unwrap();
/// let set = space.new_set();
/// let id = set.alloc(1, 100, 7).unwrap();
/// set.free(id).unwrap();
/// domain.synchronize(); // every reader that could see the 7 is gone
/// ```
#[derive(Clone)]
pub struct Domain {
    inner: StdArc<DomainInner>,
}

pub(crate) struct DomainInner {
    /// This domain's serial number: unique in the process, never reused.
    serial: u64,
    collector: Collector,
    grace_periods: AtomicU64,
}

/// This thread's epoch handles, one per domain it has pinned.
struct HandleCache {
    /// The last domain pinned here and its handle: the fast path.
    /// INVARIANT: `(0, null)` (0 is no domain's serial), or a serial and
    /// handle that are an entry of `entries` (it is reset whenever `entries`
    /// loses an entry).
    last: Cell<(u64, *const LocalHandle)>,
    entries: RefCell<Vec<CachedHandle>>,
}

/// One entry of a thread's handle cache.
///
/// INVARIANT: `handle` came from `Box::into_raw` and is freed only by this
/// entry's drop. It is held raw, not as a `Box`, so that moving the entry
/// (the vector grows, `retain` partitions it) never reasserts unique
/// ownership over a handle that a pointer from `last`, or a `pin` running
/// further up this thread's stack, is still using.
///
/// INVARIANT: `_collector` is a clone of the handle's collector, dropped after
/// the handle (field drops follow `Drop::drop`). crossbeam frees a collector
/// from inside the participant's own method when the participant holds its
/// last reference, which Tree Borrows rejects; this clone, and keeping
/// entries whose handle is pinned (a guard still lives) until a later prune,
/// make sure the last reference is always dropped here, outside crossbeam.
struct CachedHandle {
    serial: u64,
    domain: Weak<DomainInner>,
    handle: ptr::NonNull<LocalHandle>,
    _collector: Collector,
}

impl CachedHandle {
    fn handle(&self) -> &LocalHandle {
        // SAFETY: live until this entry drops (type invariant).
        unsafe { self.handle.as_ref() }
    }
}

impl Drop for CachedHandle {
    fn drop(&mut self) {
        // SAFETY: made by `Box::into_raw` in `handle_slow`; this is its one free.
        drop(unsafe { Box::from_raw(self.handle.as_ptr()) });
    }
}

impl HandleCache {
    /// Drops the entries `keep` refuses, resetting the fast path. They are
    /// dropped after the cache is released: dropping a domain's last handle
    /// runs its deferred drops, which may pin on this thread.
    fn retain(&self, keep: impl FnMut(&CachedHandle) -> bool) {
        let removed: Vec<_> = {
            let Ok(mut entries) = self.entries.try_borrow_mut() else {
                return; // borrowed further up this stack: pruned later
            };
            self.last.set((0, ptr::null()));
            let (kept, removed) = entries.drain(..).partition(keep);
            *entries = kept;
            removed
        };
        drop(removed);
    }
}

thread_local! {
    static HANDLES: HandleCache = HandleCache {
        last: Cell::new((0, ptr::null())),
        entries: RefCell::new(Vec::new()),
    };
}

impl Domain {
    /// A new domain with its own collector.
    pub fn new() -> Domain {
        // Relaxed: only uniqueness matters. Starts at 1 (0 marks "none" in
        // the handle cache); a u64 never wraps in practice.
        static NEXT_SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let serial = NEXT_SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Domain {
            inner: StdArc::new(DomainInner {
                serial,
                collector: Collector::new(),
                grace_periods: AtomicU64::new(0),
            }),
        }
    }

    /// Drops `value` once every read-side section of this domain running
    /// now has ended (the kernel's `kfree_rcu`): for data that readers found
    /// through something this domain protects and that is now unreachable.
    /// Never blocks, never fails, and may be called inside a guard.
    ///
    /// ```
    /// let domain = ioasid::Domain::new();
    /// let reader = domain.pin();
    /// domain.retire(String::from("old state"));
    /// drop(reader);
    /// domain.synchronize(); // the string is dropped by now
    /// ```
    pub fn retire<T: Send + 'static>(&self, value: T) {
        self.pin().defer(move || drop(value));
    }

    /// The process-wide domain that spaces use unless given another.
    #[cfg(not(ioasid_loom))]
    pub fn global() -> &'static Domain {
        static GLOBAL: std::sync::OnceLock<Domain> = std::sync::OnceLock::new();
        GLOBAL.get_or_init(Domain::new)
    }

    /// Enters a read-side section: data found while the guard lives stays valid.
    ///
    /// Pinning is re-entrant and never blocks.
    pub fn pin(&self) -> Guard {
        let serial = self.inner.serial;
        let guard = HANDLES
            .try_with(|cache| {
                let (last_serial, last_handle) = cache.last.get();
                let handle = if last_serial == serial {
                    last_handle
                } else {
                    self.handle_slow(cache)
                };
                // SAFETY: `handle` is an entry of this thread's cache (the
                // `last` invariant, or just looked up): heap-allocated and
                // held raw (`CachedHandle`), so it stays valid and usable
                // while the vector changes, and removed only when
                // its domain is gone, while `self` keeps this one alive. No
                // cache borrow is held here: pinning may run deferred drops,
                // which may pin or drop other domains on this thread.
                unsafe { (*handle).pin() }
            })
            // This thread's cache is being destroyed (thread exit): pin with
            // a handle of our own; its participant lives until the guard ends.
            .unwrap_or_else(|_| self.inner.collector.register().pin());
        Guard {
            inner: guard,
            domain: serial,
        }
    }

    /// Finds (or registers) this thread's handle for this domain and makes
    /// it the fast path.
    fn handle_slow(&self, cache: &HandleCache) -> *const LocalHandle {
        let serial = self.inner.serial;
        let found = cache
            .entries
            .borrow()
            .iter()
            .find(|entry| entry.serial == serial)
            .map(|entry| entry.handle.as_ptr().cast_const());
        let handle = found.unwrap_or_else(|| {
            cache.retain(|entry| entry.domain.strong_count() > 0 || entry.handle().is_pinned());
            let handle = Box::into_raw(Box::new(self.inner.collector.register()));
            cache.entries.borrow_mut().push(CachedHandle {
                serial,
                domain: StdArc::downgrade(&self.inner),
                // SAFETY: `Box::into_raw` never returns null.
                handle: unsafe { ptr::NonNull::new_unchecked(handle) },
                _collector: self.inner.collector.clone(),
            });
            handle.cast_const()
        });
        cache.last.set((serial, handle));
        handle
    }

    /// Waits until every read-side section of this domain that began before
    /// the call has ended (the kernel's `synchronize_rcu()`).
    ///
    /// It blocks while another thread holds a guard that predates the call.
    ///
    /// # Panics
    /// If the calling thread holds a guard of this domain (directly, or in a
    /// `for_each` callback, a `with` closure, a custom allocator hook or a
    /// deferred drop): it would wait for itself forever. Use
    /// [`try_synchronize`](Domain::try_synchronize) to get an error instead.
    pub fn synchronize(&self) {
        if self.try_synchronize().is_err() {
            panic!(
                "Domain::synchronize called while this thread holds a guard of the \
                 same domain (a read-side section, for_each/with callback, hook or \
                 deferred drop): it would wait for itself forever"
            );
        }
    }

    /// [`synchronize`](Domain::synchronize), or [`Error::Deadlock`] (nothing
    /// waited) if the calling thread holds a guard of this domain.
    ///
    /// ```
    /// let domain = ioasid::Domain::new();
    /// let guard = domain.pin();
    /// assert_eq!(domain.try_synchronize(), Err(ioasid::Error::Deadlock));
    /// drop(guard);
    /// assert_eq!(domain.try_synchronize(), Ok(()));
    /// ```
    pub fn try_synchronize(&self) -> Result<(), Error> {
        if self.pinned_here() {
            return Err(Error::Deadlock);
        }
        self.wait_for_readers();
        Ok(())
    }

    /// True if this thread holds a guard of this domain: its cached handle
    /// is pinned. (Guards made during thread exit, after the cache is gone,
    /// are not seen; nothing can wait from there.)
    fn pinned_here(&self) -> bool {
        let serial = self.inner.serial;
        HANDLES
            .try_with(|cache| {
                let Ok(entries) = cache.entries.try_borrow() else {
                    return false;
                };
                entries
                    .iter()
                    .any(|entry| entry.serial == serial && entry.handle().is_pinned())
            })
            .unwrap_or(false)
    }

    fn wait_for_readers(&self) {
        let done = StdArc::new(AtomicBool::new(false));
        {
            let guard = self.pin();
            let flag = done.clone();
            // Release pairs with the Acquire load below: the waiter sees the
            // grace period complete only after the collector ran this closure,
            // which it does only after every older guard was dropped.
            guard.defer(move || flag.store(true, Ordering::Release));
            guard.inner.flush();
        }
        while !done.load(Ordering::Acquire) {
            // Each pin+flush lets the global epoch advance past us and
            // collects sealed bags, ours among them once two epochs passed.
            self.pin().inner.flush();
            yield_now();
        }
        // Relaxed: a statistics counter, ordered with nothing.
        self.inner.grace_periods.fetch_add(1, Ordering::Relaxed);
    }

    /// How many [`synchronize`](Domain::synchronize) calls have completed.
    pub fn grace_periods(&self) -> u64 {
        // Relaxed: a statistics counter.
        self.inner.grace_periods.load(Ordering::Relaxed)
    }

    /// Under loom only: drops the calling thread's cached handles now.
    ///
    /// std's `join` returns only after the joined thread's thread-locals are
    /// destroyed; loom's may return before, so a model that checks drop
    /// counts after joining calls this at the end of every thread it spawns
    /// that pinned a domain. Otherwise a late handle can keep its collector,
    /// and the garbage in it, alive past the model's final check.
    #[cfg(ioasid_loom)]
    #[doc(hidden)]
    pub fn release_thread_handles() {
        // `retain` drops the entries after releasing the cache: finalizing a
        // handle may run deferred drops, which may pin on this thread again.
        let _ = HANDLES.try_with(|cache| cache.retain(|_| false));
    }

    /// This domain's serial number (see the module docs).
    pub(crate) fn serial(&self) -> u64 {
        self.inner.serial
    }
}

impl Default for Domain {
    fn default() -> Self {
        Domain::new()
    }
}

impl fmt::Debug for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Domain")
            .field("grace_periods", &self.grace_periods())
            .finish()
    }
}

impl Drop for DomainInner {
    fn drop(&mut self) {
        let me = self.serial;
        // Remove this thread's cached handle so the collector (and all its
        // deferred drops) is released now rather than at thread exit. The
        // cache may be borrowed already (we may run inside a deferred drop
        // started by pin) or gone (thread exit): then pruning does it later.
        // A handle with a live guard stays until a later prune (see
        // `CachedHandle`).
        let _ = HANDLES.try_with(|cache| {
            cache.retain(|entry| entry.serial != me || entry.handle().is_pinned())
        });
    }
}

/// A pinned read-side section of one [`Domain`].
///
/// References returned by `find` live as long as the guard; while any guard
/// that could see a freed value lives, the value is not dropped. A guard
/// belongs to the thread that made it.
///
/// INVARIANT: `domain` is the serial number of the domain whose collector
/// `inner` pinned; `inner` keeps that collector alive (crossbeam's guard
/// holds its participant, which holds the collector) even if the `Domain`
/// handles are all gone, and the number is never given to another domain.
pub struct Guard {
    inner: crossbeam_epoch::Guard,
    domain: u64,
}

impl Guard {
    /// Runs `f` once every guard of this domain alive now has been dropped
    /// (on whichever thread then collects it).
    pub(crate) fn defer(&self, f: impl FnOnce() + Send + 'static) {
        self.inner.defer(f);
    }

    /// [`Guard::defer`] for closures that hold raw pointers.
    ///
    /// # Safety
    /// `f` may run on any thread, at any time after every guard alive now is
    /// gone: what it captures must be valid to send and use then (typically
    /// memory that no new reader can reach any more).
    pub(crate) unsafe fn defer_unchecked(&self, f: impl FnOnce()) {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.defer_unchecked(f) }
    }

    /// Frees a box once every guard alive now has been dropped.
    ///
    /// # Safety
    /// `boxed` came from `Box::into_raw`, no new reader can reach it, and
    /// nothing else frees it; `T`'s drop may run on any thread.
    pub(crate) unsafe fn defer_free<T>(&self, boxed: *mut T) {
        // SAFETY: forwarded from the caller.
        unsafe { self.defer_unchecked(move || drop(Box::from_raw(boxed))) }
    }

    /// True if this guard protects the given domain: it was pinned on that
    /// domain's collector (serial numbers are never reused, so a guard that
    /// outlived its domain protects no other).
    pub(crate) fn protects(&self, domain: &Domain) -> bool {
        self.domain == domain.serial()
    }
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Guard { .. }")
    }
}
