//! Notifier chains (SPEC 6.6): who is told when an ID is allocated, freed,
//! bound or unbound.
//!
//! Every space has a *global chain* (held by a [`Notifiers`] hub, which
//! several spaces may share: the C layer gives one hub to every space it
//! makes) and each set may have its own *set chain*. An event of an ID goes
//! first to its set's chain, then to the global chain; each chain calls its
//! blocks in descending priority (equal priorities in registration order)
//! until one returns [`ControlFlow::Break`] (the kernel's
//! `NOTIFY_STOP_MASK`), which stops that chain only.
//!
//! ## The protocol
//!
//! - A chain is a copy-on-write snapshot of its blocks behind a mutex,
//!   with a version bumped at each change. A call loads the version and
//!   uses the snapshot its thread cached for that chain and version
//!   (module `snapshots`), taking the mutex only when the version moved:
//!   an event of an unchanged chain takes no lock and writes no shared
//!   word. The blocks run with no lock held, so a block may call back into
//!   the library, register or unregister blocks (itself excepted, see
//!   below) and wait for readers.
//! - Each block counts its calls in flight in per-thread shards, each a
//!   state word of bit `DEAD` and a count. A call enters on its thread's
//!   shard with a CAS that fails once `DEAD` is set there; unregister
//!   removes the block from the chain, sets `DEAD` in every shard, then
//!   waits until the counts add up to the calls of the block on its own
//!   thread's stack (a block that unregisters itself does not wait for
//!   itself), and drops the callback: at once, or when the outermost of
//!   those own calls ends.
//!   A snapshot cached by another thread may still hold the block; it
//!   holds nothing the callback captured.
//! - A set's chain and tag live on its core (`owners.rs`): an event finds
//!   them through the owner index of the ID's word, with no lock.
//! - Each space keeps `active`: the number of registrations (global or of
//!   one of its sets) that can see its events. The paths that emit events
//!   load it once; zero means nothing more is done, so spaces without
//!   notifiers pay one load per alloc or free.
//!
//! INVARIANTS:
//! - A block is in a chain's current snapshot only while its shards have no
//!   `DEAD`; a call runs the block's callback only between a successful
//!   enter and its exit, so once unregister has seen the counts add up to
//!   its own calls after setting `DEAD`, the callback runs again only in
//!   those.
//! - A cached snapshot is of the version its entry names, so a call that
//!   loads a newer version (every call that begins after a register or
//!   unregister returned) misses and reads the current snapshot.
//! - A space's `active` is at least the number of registrations in its
//!   global chain plus those in its sets' chains whenever a block is in
//!   an array (it is raised before the block goes in and lowered after it
//!   is taken out), so an event that loads zero has no block to call.
//! - The hub's list of space counters holds a space's counter exactly while
//!   the space lives (added once it sits in its `Arc`, removed by its drop,
//!   both under the hub's lock), so a counter is only written while valid.

use crate::custom::CustomHook;
use crate::domain::Guard;
use crate::entry::{self, Payload, Ref};
use crate::owners::SetCore;
use crate::sync::{
    atomic_array, thread_local, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, CachePadded, Mutex,
    MutexGuard, Ordering,
};
use crate::Ioasid;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;
use std::ops::ControlFlow;
use std::ptr;
use std::sync::Arc as StdArc;

/// What happened to an ID (the kernel's `enum ioasid_notify_val`).
///
/// ```
/// use ioasid::Event;
/// assert_eq!(Event::from_raw(2), Some(Event::Free));
/// assert_eq!(Event::Unbind.as_raw(), 4);
/// assert_eq!(Event::from_raw(0), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// The ID was allocated and published (lookups find it).
    Alloc = 1,
    /// The ID was freed (exactly once per ID: at its free or its set's
    /// teardown, even if it only entered FREE_PENDING, or at the last put
    /// of an ID never freed).
    Free = 2,
    /// A set private ID (guest PASID) was attached to the ID.
    Bind = 3,
    /// The ID's set private ID was detached.
    Unbind = 4,
}

impl Event {
    /// The event of a C `enum ioasid_notify_val` value, or `None`.
    pub fn from_raw(value: u32) -> Option<Event> {
        match value {
            1 => Some(Event::Alloc),
            2 => Some(Event::Free),
            3 => Some(Event::Bind),
            4 => Some(Event::Unbind),
            _ => None,
        }
    }

    /// The C `enum ioasid_notify_val` value.
    pub fn as_raw(self) -> u32 {
        self as u32
    }
}

/// Which chains an event sent by hand ([`crate::Space::notify`]) goes to:
/// the C flags `IOASID_NOTIFY_ALL` (the global chain) and
/// `IOASID_NOTIFY_SET` (the chain of the ID's set).
///
/// ```
/// use ioasid::Chains;
/// assert_eq!(Chains::from_bits(3), Some(Chains::BOTH));
/// assert_eq!(Chains::from_bits(0), None, "no chain at all is an error");
/// assert_eq!(Chains::from_bits(4), None);
/// assert!(Chains::BOTH.contains(Chains::SET));
/// assert!(!Chains::GLOBAL.contains(Chains::SET));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Chains(u8);

impl Chains {
    /// The global chain (`IOASID_NOTIFY_ALL`).
    pub const GLOBAL: Chains = Chains(1);
    /// The chain of the ID's set (`IOASID_NOTIFY_SET`).
    pub const SET: Chains = Chains(2);
    /// Both, the set's first (what the library's own events use).
    pub const BOTH: Chains = Chains(3);

    /// The chains of C flags; `None` for 0 or an unknown bit.
    pub fn from_bits(bits: u32) -> Option<Chains> {
        (bits != 0 && bits & !3 == 0).then_some(Chains(bits as u8))
    }

    /// The C flags.
    pub fn bits(self) -> u32 {
        u32::from(self.0)
    }

    /// True if every chain of `other` is in `self`.
    pub fn contains(self, other: Chains) -> bool {
        self.0 & other.0 == other.0
    }
}

/// Names a set in a [`Notification`]; equal to [`crate::Set::id`] of the
/// ID's set. A dropped set's `SetId` may be reused by a later set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SetId(pub(crate) u16);

/// One event as a notifier sees it (the C `struct ioasid_nb_args`).
pub struct Notification<'a, T: Payload> {
    pub(crate) event: Event,
    pub(crate) id: Ioasid,
    pub(crate) spid: Option<Ioasid>,
    pub(crate) set: Option<SetId>,
    pub(crate) set_tag: usize,
    pub(crate) data: Option<Ref<'a, T>>,
}

impl<T: Payload> Notification<'_, T> {
    /// What happened.
    pub fn event(&self) -> Event {
        self.event
    }

    /// The ID.
    pub fn id(&self) -> Ioasid {
        self.id
    }

    /// Its set private ID (guest PASID), if it has one.
    pub fn spid(&self) -> Option<Ioasid> {
        self.spid
    }

    /// Its set; `None` for an ID its set's teardown detached.
    pub fn set(&self) -> Option<SetId> {
        self.set
    }

    /// The tag of its set ([`crate::Set::set_tag`]; 0 if none was given).
    pub fn set_tag(&self) -> usize {
        self.set_tag
    }

    /// Its private data: at an ALLOC the value allocated, at a FREE the
    /// value it was freed with, else its current value. `None` only if the
    /// ID was released while the event was on its way.
    pub fn data(&self) -> Option<&T> {
        self.data.as_deref()
    }
}

impl<T: Payload> fmt::Debug for Notification<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notification")
            .field("event", &self.event)
            .field("id", &self.id)
            .field("spid", &self.spid)
            .field("set", &self.set)
            .field("set_tag", &self.set_tag)
            .finish_non_exhaustive()
    }
}

type Callback<T> = dyn Fn(&Notification<'_, T>) -> ControlFlow<()> + Send + Sync;

/// Shards of a block's in-flight count: a thread counts its calls on its
/// own shard, so calls on different threads write different cache lines.
#[cfg(not(ioasid_loom))]
const SHARDS: usize = 16;
#[cfg(ioasid_loom)]
const SHARDS: usize = 2;

/// One registered block.
struct Block<T: Payload> {
    priority: i32,
    /// Per shard: bit `DEAD` (set in every shard when unregister begins)
    /// and the calls in flight of the threads that use the shard.
    in_flight: [CachePadded<AtomicUsize>; SHARDS],
    /// Set by a retire that found calls of the block on its own thread's
    /// stack: the outermost of them drops the callback when it ends.
    orphaned: AtomicBool,
    /// The callback (a leaked box); null once dropped, which happens when
    /// the block is retired and no call of it runs, so that a snapshot
    /// still cached by some thread keeps no captured state alive.
    callback: AtomicPtr<Box<Callback<T>>>,
}

/// A call running on this thread: a link of the list `RUNNING` heads,
/// living in the call's stack frame.
struct Running {
    /// The block's key.
    key: usize,
    /// The call it runs inside, or null.
    outer: *const Running,
}

// Plain cells with no destructor where the build allows (see `SCOPES`).
#[cfg(not(ioasid_loom))]
std::thread_local! {
    /// This thread's shard of every block's in-flight count (`usize::MAX`
    /// until its first call).
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    /// The innermost call running on this thread, or null. INVARIANT: each
    /// link lives on the stack of a call still running, outer links in
    /// outer frames (a call links itself before its callback runs and
    /// unlinks itself when it ends, unwinding included).
    static RUNNING: Cell<*const Running> = const { Cell::new(ptr::null()) };
}
#[cfg(ioasid_loom)]
thread_local! {
    static RUNNING: Cell<*const Running> = Cell::new(ptr::null());
}

/// How many calls of the block with `key` run on this thread.
fn running_here(key: usize) -> usize {
    let mut count = 0;
    let mut link = RUNNING.with(Cell::get);
    while !link.is_null() {
        // SAFETY: a link of this thread's list lives while its call runs,
        // and the calls of the outer links run around ours (invariant).
        let running = unsafe { &*link };
        count += usize::from(running.key == key);
        link = running.outer;
    }
    count
}

/// This thread's shard, assigned round-robin at its first call.
#[cfg(not(ioasid_loom))]
fn shard_index() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    SHARD.with(|shard| {
        let mut index = shard.get();
        if index == usize::MAX {
            // Relaxed: only spreads threads over shards; any shard is correct.
            index = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % SHARDS;
            shard.set(index);
        }
        index
    })
}

/// This thread's shard, from its number in the loom execution (what its
/// `ThreadId` prints): each execution of a model must take the same steps,
/// and a counter kept across executions would move threads between shards
/// from one execution to the next.
#[cfg(ioasid_loom)]
fn shard_index() -> usize {
    let id = format!("{:?}", loom::thread::current().id());
    let number: String = id.chars().filter(char::is_ascii_digit).collect();
    number.parse::<usize>().unwrap_or(0) % SHARDS
}

const DEAD: usize = 1 << (usize::BITS - 1);

impl<T: Payload> Block<T> {
    fn key(&self) -> usize {
        self as *const Self as *const () as usize
    }

    /// Enters a call on `shard`: false once unregister has begun.
    fn enter(&self, shard: &AtomicUsize) -> bool {
        // Relaxed: a first guess; the CAS decides.
        let mut state = shard.load(Ordering::Relaxed);
        loop {
            if state & DEAD != 0 {
                return false;
            }
            // Acquire: orders the callback's run after the count is up (a
            // retire's `DEAD` comes after it in the shard's modification
            // order, so the retire counts it); Relaxed on failure (retried).
            match shard.compare_exchange(state, state + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => state = now,
            }
        }
    }

    /// Runs the callback for `n` if unregister has not begun.
    fn call(&self, n: &Notification<'_, T>) -> ControlFlow<()> {
        let shard = &self.in_flight[shard_index()].0;
        if !self.enter(shard) {
            return ControlFlow::Continue(());
        }
        struct Exit<'b, T: Payload> {
            block: &'b Block<T>,
            shard: &'b AtomicUsize,
            link: &'b Running,
        }
        impl<T: Payload> Drop for Exit<'_, T> {
            fn drop(&mut self) {
                // INVARIANT: unlinked as the call ends.
                RUNNING.with(|r| r.set(self.link.outer));
                // Relaxed, and before the decrement: a retire stores the
                // flag only after it read this thread's decrement (Acquire,
                // pairing with the Release below), so a thread whose call
                // ended before the retire looked never sees it: only the
                // retiring thread's own calls do.
                let orphaned = self.block.orphaned.load(Ordering::Relaxed);
                // Release: the callback's accesses happen before a retire
                // that reads the lower count (its Acquire), so its caller
                // may free what the callback used.
                self.shard.fetch_sub(1, Ordering::Release);
                if orphaned && running_here(self.block.key()) == 0 {
                    self.block.drop_callback();
                }
            }
        }
        let link = Running {
            key: self.key(),
            outer: RUNNING.with(Cell::get),
        };
        // INVARIANT: linked before the callback runs; `_exit` unlinks it.
        RUNNING.with(|r| r.set(&link));
        let _exit = Exit {
            block: self,
            shard,
            link: &link,
        };
        // Relaxed: the pointer was stored before the block was shared.
        let callback = self.callback.load(Ordering::Relaxed);
        if callback.is_null() {
            return ControlFlow::Continue(());
        }
        // SAFETY: this call entered (its count is up and `dead` was clear
        // after it went up), so the callback is dropped only after it ends:
        // by a retire that waits for every other thread's calls, or by the
        // outermost own call of a retiring thread, after this one.
        unsafe { (**callback)(n) }
    }

    /// Marks the block dead, waits until no call of it is in flight except
    /// calls on this thread's own stack, and drops its callback (now, or
    /// when the outermost of those own calls ends).
    fn retire(&self) {
        let own = running_here(self.key());
        for shard in &self.in_flight {
            // AcqRel: Acquire reads the count of every enter before it in
            // the shard's order; an enter after it sees `DEAD` and fails.
            shard.0.fetch_or(DEAD, Ordering::AcqRel);
        }
        let mut spins = 0u32;
        // Acquire: pairs with the Release of each exit.
        while self
            .in_flight
            .iter()
            .map(|shard| shard.0.load(Ordering::Acquire) & !DEAD)
            .sum::<usize>()
            > own
        {
            spins += 1;
            wait_a_little(spins);
        }
        if own == 0 {
            self.drop_callback();
        } else {
            // INVARIANT: only this thread's own calls remain (no other call
            // runs, none can enter), so the flag is seen only by them.
            // Relaxed: read on this thread, or by exits that cannot see it
            // (see `Exit`).
            self.orphaned.store(true, Ordering::Relaxed);
        }
    }

    /// Drops the callback, once.
    fn drop_callback(&self) {
        // Acquire: the box's contents, made by the registering thread;
        // Release: nothing to publish (the pointer is null from now on).
        let callback = self.callback.swap(ptr::null_mut(), Ordering::AcqRel);
        if !callback.is_null() {
            // SAFETY: leaked by `new_block`; taken out by this swap only,
            // and no call of it runs (the callers of `drop_callback`).
            drop(unsafe { Box::from_raw(callback) });
        }
    }
}

impl<T: Payload> Drop for Block<T> {
    fn drop(&mut self) {
        // A block never retired (its registration leaked).
        self.drop_callback();
    }
}

#[cfg(not(ioasid_loom))]
fn wait_a_little(spins: u32) {
    if spins < 64 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(std::time::Duration::from_micros(50));
    }
}

#[cfg(ioasid_loom)]
fn wait_a_little(_spins: u32) {
    crate::sync::yield_now();
}

/// A chain's blocks in call order, as the calls of one version see them.
struct Snapshot<T: Payload> {
    blocks: Vec<StdArc<Block<T>>>,
}

/// One chain: its blocks in call order.
pub(crate) struct Chain<T: Payload> {
    /// The current snapshot, replaced whole (copy on write) under the lock.
    blocks: Mutex<StdArc<Snapshot<T>>>,
    /// Unique among chains: the key of its snapshots in thread caches.
    serial: u64,
    /// Bumped under the lock after each replacement of `blocks`.
    version: AtomicU64,
}

impl<T: Payload> Chain<T> {
    fn new() -> Self {
        // Relaxed: only uniqueness matters.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Chain {
            blocks: Mutex::new(StdArc::new(Snapshot { blocks: Vec::new() })),
            serial: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            version: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, StdArc<Snapshot<T>>> {
        self.blocks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the snapshot (under the lock) by `blocks`.
    fn publish(&self, current: &mut StdArc<Snapshot<T>>, blocks: Vec<StdArc<Block<T>>>) {
        *current = StdArc::new(Snapshot { blocks });
        // Release: a call that loads the new version (Acquire) and misses
        // its cache takes the lock and finds the new snapshot; one that
        // registered before an event on another thread is ordered by that.
        // Relaxed read: under the lock, the only writer.
        let version = self.version.load(Ordering::Relaxed);
        self.version.store(version + 1, Ordering::Release);
    }

    fn insert(&self, block: StdArc<Block<T>>) {
        let mut current = self.lock();
        let at = current
            .blocks
            .iter()
            .position(|b| b.priority < block.priority)
            .unwrap_or(current.blocks.len());
        let mut next = current.blocks.clone();
        next.insert(at, block);
        self.publish(&mut current, next);
    }

    fn remove(&self, block: &StdArc<Block<T>>) {
        let mut current = self.lock();
        let next = current
            .blocks
            .iter()
            .filter(|b| !StdArc::ptr_eq(b, block))
            .cloned()
            .collect();
        self.publish(&mut current, next);
    }

    fn is_empty(&self) -> bool {
        self.lock().blocks.is_empty()
    }

    /// Calls the blocks in order until one stops the chain.
    fn call(&self, n: &Notification<'_, T>) {
        // Acquire: pairs with the Release of `publish`: a version seen here
        // is matched only by a cached snapshot at least that new.
        let version = self.version.load(Ordering::Acquire);
        let lease = snapshots::lease(self.serial, version, || {
            let current = self.lock();
            // Relaxed: under the lock, which orders it with the snapshot.
            let version = self.version.load(Ordering::Relaxed);
            let snapshot = StdArc::into_raw(current.clone()).cast::<()>();
            (version, snapshot, release_snapshot::<T>)
        });
        // SAFETY: the lease holds a strong count of this chain's snapshot
        // (the cache is keyed by the chain's serial, so the pointer was made
        // above, by a call of this chain, from a `StdArc<Snapshot<T>>`).
        let snapshot = unsafe { &*lease.snapshot().cast::<Snapshot<T>>() };
        for block in &snapshot.blocks {
            if block.call(n).is_break() {
                return;
            }
        }
    }
}

/// Gives back a strong count of a snapshot made by [`Chain::call`].
///
/// # Safety
/// `snapshot` is from `StdArc::into_raw` of a `StdArc<Snapshot<T>>`, and
/// this gives its count back once.
unsafe fn release_snapshot<T: Payload>(snapshot: *const ()) {
    // SAFETY: the caller's contract.
    drop(unsafe { StdArc::from_raw(snapshot.cast::<Snapshot<T>>()) });
}

/// Each thread's cache of the chain snapshots its calls used last, so that
/// a call of an unchanged chain takes no lock and writes no shared word.
///
/// An entry holds one strong count of its snapshot (an `Arc` turned into a
/// raw pointer, with the function that gives the count back): plain cells,
/// so a lookup is a few loads on the thread's own block; the cache's drop
/// at thread exit gives the counts back (a call made after that, from
/// another thread-local's destructor, is not cached).
///
/// INVARIANT: an entry is replaced only while no call on its thread uses
/// it (`in_use` zero), so a lease's pointer stays valid until the lease
/// ends; an entry's `version` is its chain's version when its snapshot
/// was current; `serial` 0 marks an empty entry (chain serials start at 1).
mod snapshots {
    use std::cell::Cell;
    use std::ptr;

    const ENTRIES: usize = 4;

    /// Gives back the strong count an entry holds of a snapshot.
    pub(super) type Release = unsafe fn(*const ());

    pub(super) struct Entry {
        serial: Cell<u64>,
        version: Cell<u64>,
        snapshot: Cell<*const ()>,
        release: Cell<Option<Release>>,
        /// Calls on this thread using this entry now.
        in_use: Cell<usize>,
    }

    impl Entry {
        const fn empty() -> Entry {
            Entry {
                serial: Cell::new(0),
                version: Cell::new(0),
                snapshot: Cell::new(ptr::null()),
                release: Cell::new(None),
                in_use: Cell::new(0),
            }
        }

        /// Empties the entry, giving its count back.
        fn clear(&self) {
            self.serial.set(0);
            if let Some(release) = self.release.take() {
                // SAFETY: the entry's one strong count, given back once (the
                // entry is empty from now on).
                unsafe { release(self.snapshot.replace(ptr::null())) };
            }
        }
    }

    struct Cache([Entry; ENTRIES]);

    impl std::ops::Deref for Cache {
        type Target = [Entry; ENTRIES];
        fn deref(&self) -> &[Entry; ENTRIES] {
            &self.0
        }
    }

    impl Drop for Cache {
        /// Gives the counts back when the thread exits.
        fn drop(&mut self) {
            self.0.iter().for_each(Entry::clear);
        }
    }

    #[cfg(not(ioasid_loom))]
    std::thread_local! {
        static CACHE: Cache = const { Cache([const { Entry::empty() }; ENTRIES]) };
    }
    #[cfg(ioasid_loom)]
    crate::sync::thread_local! {
        static CACHE: Cache = Cache([const { Entry::empty() }; ENTRIES]);
    }

    /// A snapshot held for one call of a chain.
    pub(super) struct Lease {
        snapshot: *const (),
        /// The cache entry whose `in_use` counts this lease, or, for a
        /// snapshot not cached, the count this lease holds.
        hold: Hold,
    }

    enum Hold {
        Cached(usize),
        Owned(Release),
    }

    impl Lease {
        /// The snapshot, as the pointer its chain made it from.
        pub(super) fn snapshot(&self) -> *const () {
            self.snapshot
        }
    }

    impl Drop for Lease {
        fn drop(&mut self) {
            match self.hold {
                Hold::Cached(slot) => {
                    let _ = CACHE
                        .try_with(|cache| cache[slot].in_use.set(cache[slot].in_use.get() - 1));
                }
                // SAFETY: the count this lease holds, given back once.
                Hold::Owned(release) => unsafe { release(self.snapshot) },
            }
        }
    }

    /// The snapshot of chain `serial` for a call that loaded `version`:
    /// the cached one if it is of that version, else `fetch()`'s (the
    /// current version, and a strong count of the current snapshot with
    /// the function that gives it back, read under the chain's lock),
    /// cached if an entry is free for it.
    #[inline]
    pub(super) fn lease(
        serial: u64,
        version: u64,
        fetch: impl FnOnce() -> (u64, *const (), Release),
    ) -> Lease {
        let hit = CACHE.try_with(|cache| {
            let slot = cache
                .iter()
                .position(|e| e.serial.get() == serial && e.version.get() == version)?;
            let entry = &cache[slot];
            entry.in_use.set(entry.in_use.get() + 1);
            Some(Lease {
                snapshot: entry.snapshot.get(),
                hold: Hold::Cached(slot),
            })
        });
        match hit {
            Ok(Some(lease)) => lease,
            _ => lease_slow(serial, fetch),
        }
    }

    #[cold]
    #[inline(never)]
    fn lease_slow(serial: u64, fetch: impl FnOnce() -> (u64, *const (), Release)) -> Lease {
        let (version, snapshot, release) = fetch();
        let owned = Lease {
            snapshot,
            hold: Hold::Owned(release),
        };
        let Ok(Some((slot, old))) = CACHE.try_with(|cache| {
            let slot = cache
                .iter()
                .position(|e| e.serial.get() == serial)
                .or_else(|| cache.iter().position(|e| e.serial.get() == 0))
                .or_else(|| cache.iter().position(|e| e.in_use.get() == 0))
                .filter(|&slot| cache[slot].in_use.get() == 0)?;
            let entry = &cache[slot];
            let old = (entry.snapshot.get(), entry.release.take());
            // INVARIANT: no call uses `slot` (checked just above). The
            // lease's count moves to the entry.
            entry.serial.set(serial);
            entry.version.set(version);
            entry.snapshot.set(snapshot);
            entry.release.set(Some(release));
            entry.in_use.set(1);
            Some((slot, old))
        }) else {
            return owned;
        };
        std::mem::forget(owned);
        // Given back outside any cache access: dropping an old snapshot
        // may drop blocks, which may run user code that sends events.
        if let (old, Some(release)) = old {
            // SAFETY: the old entry's one strong count, given back once.
            unsafe { release(old) };
        }
        Lease {
            snapshot,
            hold: Hold::Cached(slot),
        }
    }
}

/// The space counters a hub raises for its global registrations.
struct Counters {
    /// Registrations in the global chain now.
    global: usize,
    /// (space serial, its `active` counter): live spaces only (invariant).
    spaces: Vec<(u64, *const AtomicUsize)>,
}

// SAFETY: the pointers are only dereferenced under the hub's lock while
// their spaces live (module invariant); the counters are atomics.
unsafe impl Send for Counters {}

struct Hub<T: Payload> {
    global: StdArc<Chain<T>>,
    counters: Mutex<Counters>,
}

/// A global notifier chain: a space's, or one shared by several spaces
/// (give it to each with [`crate::SpaceBuilder::notifiers`]); blocks
/// registered on it see the events of the IDs of every such space.
///
/// ```
/// use std::ops::ControlFlow;
/// use std::sync::{Arc, Mutex};
/// use ioasid::{Event, Notifiers, Space};
///
/// let hub = Notifiers::<u32>::new();
/// let a: Space<u32> = Space::builder().range(0, 9).notifiers(hub.clone()).build()?;
/// let b: Space<u32> = Space::builder().range(0, 9).notifiers(hub.clone()).build()?;
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = seen.clone();
/// let registration = hub.register(0, move |n| {
///     log.lock().unwrap().push((n.event(), n.id(), n.data().copied()));
///     ControlFlow::Continue(())
/// });
/// let (sa, sb) = (a.new_set(), b.new_set());
/// sa.alloc(0, 9, 10)?;
/// sb.alloc(5, 9, 20)?;
/// registration.unregister();
/// sa.alloc(0, 9, 30)?; // after unregister: not seen
/// assert_eq!(*seen.lock().unwrap(),
///            vec![(Event::Alloc, 0, Some(10)), (Event::Alloc, 5, Some(20))]);
/// # Ok::<(), ioasid::Error>(())
/// ```
pub struct Notifiers<T: Payload> {
    hub: StdArc<Hub<T>>,
}

impl<T: Payload> Clone for Notifiers<T> {
    fn clone(&self) -> Self {
        Notifiers {
            hub: self.hub.clone(),
        }
    }
}

impl<T: Payload> Default for Notifiers<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Payload> fmt::Debug for Notifiers<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifiers").finish_non_exhaustive()
    }
}

impl<T: Payload> Hub<T> {
    /// The counters, locked (each change keeps them consistent, so a
    /// poisoned lock still guards consistent counters).
    fn counters(&self) -> MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: Payload> Notifiers<T> {
    /// A new, empty global chain.
    pub fn new() -> Self {
        Notifiers {
            hub: StdArc::new(Hub {
                global: StdArc::new(Chain::new()),
                counters: Mutex::new(Counters {
                    global: 0,
                    spaces: Vec::new(),
                }),
            }),
        }
    }

    /// Registers `callback` on this global chain with `priority` (higher
    /// runs first; equal priorities in registration order). It sees every
    /// event that begins after this returns, until its [`Registration`]
    /// is unregistered or dropped. See [`crate::Space::register_notifier`]
    /// for what a callback may do.
    pub fn register(
        &self,
        priority: i32,
        callback: impl Fn(&Notification<'_, T>) -> ControlFlow<()> + Send + Sync + 'static,
    ) -> Registration<T> {
        let block = new_block(priority, callback);
        {
            let mut counters = self.hub.counters();
            counters.global += 1;
            for &(_, counter) in &counters.spaces {
                // SAFETY: a live space's counter (module invariant; we hold
                // the lock its drop takes).
                // Relaxed: the chain's mutex orders the block's insertion;
                // `active` only says "look" (module docs).
                unsafe { &*counter }.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.hub.global.insert(block.clone());
        Registration {
            block: Some(block),
            chain: self.hub.global.clone(),
            hub: self.hub.clone(),
            space: None,
        }
    }

    /// True if `self` and `other` are the same chain.
    ///
    /// ```
    /// let hub = ioasid::Notifiers::<()>::new();
    /// assert!(hub.same(&hub.clone()));
    /// assert!(!hub.same(&ioasid::Notifiers::new()));
    /// ```
    pub fn same(&self, other: &Notifiers<T>) -> bool {
        StdArc::ptr_eq(&self.hub, &other.hub)
    }

    /// Lowers the counters of the global registration being removed.
    fn lower_global(&self) {
        let mut counters = self.hub.counters();
        counters.global -= 1;
        for &(_, counter) in &counters.spaces {
            // SAFETY: as in `register`. Relaxed: as there.
            unsafe { &*counter }.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn new_block<T: Payload>(
    priority: i32,
    callback: impl Fn(&Notification<'_, T>) -> ControlFlow<()> + Send + Sync + 'static,
) -> StdArc<Block<T>> {
    let callback: Box<Callback<T>> = Box::new(callback);
    StdArc::new(Block {
        priority,
        in_flight: atomic_array(|_| CachePadded(AtomicUsize::new(0))),
        orphaned: AtomicBool::new(false),
        callback: AtomicPtr::new(Box::into_raw(Box::new(callback))),
    })
}

/// A registered notifier. Dropping it (or [`Registration::unregister`])
/// takes the block off its chain and returns only once no call of it is in
/// flight on another thread, so what the callback uses may be freed then.
///
/// A callback must not drop its own registration while it runs on another
/// thread's event (that would wait for itself there); dropping it from
/// within its own call does not wait for that call.
#[must_use = "dropping a registration unregisters it"]
pub struct Registration<T: Payload> {
    block: Option<StdArc<Block<T>>>,
    chain: StdArc<Chain<T>>,
    hub: StdArc<Hub<T>>,
    /// The space serial of a set registration; `None` for a global one.
    space: Option<u64>,
}

impl<T: Payload> Registration<T> {
    /// The priority it was registered with.
    ///
    /// ```
    /// let space = ioasid::Space::<()>::new(0, 9)?;
    /// let r = space.register_notifier(7, |_| std::ops::ControlFlow::Continue(()));
    /// assert_eq!(r.priority(), 7);
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn priority(&self) -> i32 {
        self.block.as_ref().map_or(0, |b| b.priority)
    }

    /// Unregisters now (as dropping does): returns once no call of the
    /// block is in flight on another thread.
    pub fn unregister(mut self) {
        self.take_off();
    }

    fn take_off(&mut self) {
        let Some(block) = self.block.take() else {
            return;
        };
        self.chain.remove(&block);
        match self.space {
            None => Notifiers {
                hub: self.hub.clone(),
            }
            .lower_global(),
            Some(serial) => {
                let counters = self.hub.counters();
                if let Some(&(_, counter)) = counters.spaces.iter().find(|(s, _)| *s == serial) {
                    // SAFETY: a live space's counter (module invariant).
                    // Relaxed: as in `Notifiers::register`.
                    unsafe { &*counter }.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        block.retire();
    }
}

impl<T: Payload> Drop for Registration<T> {
    fn drop(&mut self) {
        self.take_off();
    }
}

impl<T: Payload> fmt::Debug for Registration<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("priority", &self.priority())
            .field("global", &self.space.is_none())
            .finish()
    }
}

/// A space's notification state.
pub(crate) struct SpaceNotify<T: Payload> {
    /// Registrations that see this space's events (module docs).
    active: AtomicUsize,
    serial: u64,
    hub: Notifiers<T>,
}

/// The chain of the set whose core is `core`, if one was made.
fn set_chain<T: Payload, const F: usize>(core: &SetCore<F>) -> Option<&StdArc<Chain<T>>> {
    core.chain().map(typed_chain)
}

/// A set's chain as the core keeps it, typed again.
fn typed_chain<T: Payload>(chain: &(dyn std::any::Any + Send + Sync)) -> &StdArc<Chain<T>> {
    chain
        .downcast_ref::<StdArc<Chain<T>>>()
        .expect("a set's chain has its space's payload type")
}

impl<T: Payload> SpaceNotify<T> {
    pub(crate) fn new(hub: Notifiers<T>) -> Self {
        // Relaxed: only uniqueness matters.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        SpaceNotify {
            active: AtomicUsize::new(0),
            serial: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            hub,
        }
    }

    /// Adds this space's counter to its hub; called once the space sits in
    /// its `Arc` (its address is final).
    pub(crate) fn attach(&self) {
        let mut counters = self.hub.hub.counters();
        // Relaxed: under the hub's lock, before any event of the space.
        self.active.fetch_add(counters.global, Ordering::Relaxed);
        counters.spaces.push((self.serial, &self.active));
    }

    /// The one load of the hot paths: true if some block may see an event.
    #[inline]
    pub(crate) fn active(&self) -> bool {
        // Relaxed: a registration's block goes into its chain under the
        // chain's mutex, which a sender takes before calling; a register
        // that happens before the event is seen by coherence (module docs).
        self.active.load(Ordering::Relaxed) != 0
    }

    pub(crate) fn hub(&self) -> &Notifiers<T> {
        &self.hub
    }

    /// Registers on the chain of the set whose core is `core`.
    pub(crate) fn register_set<const F: usize>(
        &self,
        core: &SetCore<F>,
        priority: i32,
        callback: impl Fn(&Notification<'_, T>) -> ControlFlow<()> + Send + Sync + 'static,
    ) -> Registration<T> {
        let block = new_block(priority, callback);
        let chain =
            typed_chain::<T>(core.chain_or_make(|| Box::new(StdArc::new(Chain::<T>::new()))))
                .clone();
        // Relaxed: as in `Notifiers::register`; raised before the insert.
        self.active.fetch_add(1, Ordering::Relaxed);
        chain.insert(block.clone());
        Registration {
            block: Some(block),
            chain,
            hub: self.hub.hub.clone(),
            space: Some(self.serial),
        }
    }

    /// True if the set whose core is `core` has registered blocks.
    pub(crate) fn set_has_blocks<const F: usize>(&self, core: &SetCore<F>) -> bool {
        set_chain::<T, F>(core).is_some_and(|c| !c.is_empty())
    }

    /// An event of `id`, captured while the caller may follow `owner` and
    /// `core`, its set's core (it holds the set, or a guard under which it
    /// loaded a word naming it), to be sent once the caller holds no
    /// guard. `word` is the ID's word; `owned`: the caller took it out of
    /// its slot and hands its value to the note (dropped through the epoch
    /// once sent).
    pub(crate) fn note<const F: usize>(
        &self,
        event: Event,
        id: Ioasid,
        owner: u16,
        core: Option<&SetCore<F>>,
        word: u64,
        owned: bool,
    ) -> Note<T> {
        Note {
            event,
            id,
            set: (owner != 0).then_some(SetId(owner)),
            chain: core.and_then(set_chain::<T, F>).cloned(),
            tag: core.map_or(0, SetCore::tag),
            word,
            owned,
            spid: None,
            after: AfterSend::Nothing,
        }
    }
}

impl<T: Payload> Drop for SpaceNotify<T> {
    fn drop(&mut self) {
        let mut counters = self.hub.hub.counters();
        let me = self.serial;
        counters.spaces.retain(|(s, _)| *s != me);
    }
}

// Plain cells with no destructor: opening and closing a scope with nothing
// held is a few instructions on this thread's block (the C layer opens one
// on every call that holds a guard over an operation).
#[cfg(not(ioasid_loom))]
std::thread_local! {
    /// Open [`NotifyScope`]s on this thread.
    static SCOPES: Cell<usize> = const { Cell::new(0) };
    /// True while `HELD` may hold sends.
    static ANY_HELD: Cell<bool> = const { Cell::new(false) };
}
#[cfg(ioasid_loom)]
thread_local! {
    static SCOPES: Cell<usize> = Cell::new(0);
    static ANY_HELD: Cell<bool> = Cell::new(false);
}
thread_local! {
    /// Sends held back by the scopes, in order.
    static HELD: RefCell<Vec<Box<dyn FnOnce()>>> = RefCell::new(Vec::new());
}

/// Holds back the notifications this thread's operations send until the
/// outermost scope is dropped, then sends them in order: for code that
/// holds a guard or a lock of its own over library calls (the C layer
/// does) and wants callbacks to run after it let go.
///
/// An event whose data needs a guard to be read (a boxed payload or one
/// with drop glue, not owned by the event) is sent at once, as always
/// inside a read-side section.
///
/// ```
/// use std::ops::ControlFlow;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
///
/// let space = ioasid::Space::<u32>::new(0, 9)?;
/// let set = space.new_set();
/// let seen = Arc::new(AtomicUsize::new(0));
/// let count = seen.clone();
/// let _r = space.register_notifier(0, move |_| {
///     count.fetch_add(1, Ordering::SeqCst);
///     ControlFlow::Continue(())
/// });
/// let scope = ioasid::NotifyScope::enter();
/// let guard = space.pin(); // e.g. a guard kept over the call
/// set.alloc(0, 9, 1)?;
/// assert_eq!(seen.load(Ordering::SeqCst), 0, "held back");
/// drop(guard);
/// drop(scope);
/// assert_eq!(seen.load(Ordering::SeqCst), 1);
/// # Ok::<(), ioasid::Error>(())
/// ```
#[must_use = "the scope holds notifications back until it is dropped"]
pub struct NotifyScope {
    _thread: PhantomData<*const ()>,
}

impl NotifyScope {
    /// Opens a scope on this thread (scopes nest).
    pub fn enter() -> NotifyScope {
        SCOPES.with(|s| s.set(s.get() + 1));
        NotifyScope {
            _thread: PhantomData,
        }
    }
}

impl Drop for NotifyScope {
    fn drop(&mut self) {
        let left = SCOPES.with(|s| {
            s.set(s.get() - 1);
            s.get()
        });
        if left != 0 || !ANY_HELD.with(|h| h.replace(false)) {
            return;
        }
        // Sends may send more (a callback that frees): they go out at once
        // now, or into a scope the callback opened.
        loop {
            let batch = HELD.with(|h| std::mem::take(&mut *h.borrow_mut()));
            if batch.is_empty() {
                return;
            }
            for send in batch {
                send();
            }
        }
    }
}

impl fmt::Debug for NotifyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NotifyScope")
    }
}

/// True if a scope is open on this thread (sends are held back).
pub(crate) fn holding() -> bool {
    SCOPES.with(Cell::get) != 0
}

/// Holds `send` back until the outermost scope of this thread closes
/// (call only while [`holding`]).
pub(crate) fn hold_back(send: Box<dyn FnOnce()>) {
    HELD.with(|h| h.borrow_mut().push(send));
    ANY_HELD.with(|h| h.set(true));
}

/// What sending a note does once the note reached its chains: a FREE keeps
/// its number claimed until then, so the number is allocatable again only
/// after every chain heard it was freed (no FREE of an old incarnation
/// reaches a chain after an ALLOC of the new one).
pub(crate) enum AfterSend {
    /// Nothing more (every event but a FREE that holds its number).
    Nothing,
    /// Release the number of this key: the ID is gone, and its number was
    /// kept claimed for the send (`space/engine.rs`).
    Release(u64),
    /// End the send of this FREE_PENDING ID's FREE (`refs.rs`, `SENDING`):
    /// the number of this key is released by the later of this and the
    /// ID's last put.
    EndSending(u64),
    /// Finish the free of this key's custom-allocated ID: its hook, then
    /// the word's removal and the number's release (the kernel's order:
    /// FREE first, while the ID is still found; `space/engine.rs`).
    FinishCustom(u64, CustomHook),
    /// Release this key's tracked custom-allocated ID, whose last reference
    /// is gone (its record is DEAD): as `FinishCustom`, for `refs.rs`.
    ReleaseTracked(u64),
}

/// An event on its way (see [`SpaceNotify::note`]).
pub(crate) struct Note<T: Payload> {
    event: Event,
    id: Ioasid,
    set: Option<SetId>,
    chain: Option<StdArc<Chain<T>>>,
    tag: usize,
    word: u64,
    owned: bool,
    pub(crate) spid: Option<Ioasid>,
    /// Done by the sender once the note reached its chains.
    pub(crate) after: AfterSend,
}

impl<T: Payload> Drop for Note<T> {
    fn drop(&mut self) {
        debug_assert!(
            matches!(self.after, AfterSend::Nothing) || std::thread::panicking(),
            "a FREE dropped unsent would keep its number claimed"
        );
    }
}

impl<T: Payload> Note<T> {
    pub(crate) fn id(&self) -> Ioasid {
        self.id
    }

    /// The word whose value the note owns, if it owns one (to retire it
    /// when the note is sent or dropped).
    pub(crate) fn owned_word(&self) -> Option<u64> {
        self.owned.then_some(self.word)
    }

    /// True if sending reads the data under a guard (not owned, and boxed
    /// or with drop glue).
    pub(crate) fn reads_under_guard(&self) -> bool {
        !self.owned && entry::needs_drop::<T>(self.word)
    }

    /// Sends the note to `chains`. `current` gives, under a guard, the ID's
    /// current word (for data the note does not own, when reading it needs
    /// a guard); `global` is the space's hub.
    pub(crate) fn send(
        &self,
        chains: Chains,
        global: &Notifiers<T>,
        pin: impl FnOnce() -> Guard,
        current: impl FnOnce(&Guard) -> Option<u64>,
    ) {
        // The data: owned (valid until we retire it), or inline with no
        // drop glue (the bits are the value), or else read again under a
        // guard that lives for the calls.
        let guard;
        let word = if self.owned || !entry::needs_drop::<T>(self.word) {
            Some(self.word)
        } else {
            guard = pin();
            current(&guard)
        };
        let data = word.map(|word| {
            // SAFETY: `word` is owned by this note, or its value has no
            // drop glue and lives inline (never reclaimed), or it was
            // loaded under `guard`, which lives until the calls end.
            unsafe { Ref::new(word) }
        });
        let n = Notification {
            event: self.event,
            id: self.id,
            spid: self.spid,
            set: self.set,
            set_tag: self.tag,
            data,
        };
        if chains.contains(Chains::SET) {
            if let Some(chain) = &self.chain {
                chain.call(&n);
            }
        }
        if chains.contains(Chains::GLOBAL) {
            global.hub.global.call(&n);
        }
    }
}

impl<T: Payload, const F: usize> crate::space::SpaceInner<T, F> {
    /// [`SpaceNotify::note`] for an ID whose word names `owner`: the caller
    /// holds the set, or a guard under which it loaded a word naming it.
    pub(crate) fn note(
        &self,
        event: Event,
        id: Ioasid,
        owner: u16,
        word: u64,
        owned: bool,
    ) -> Note<T> {
        let core = if owner == 0 {
            None
        } else {
            // SAFETY: the owners invariant (owners.rs): the caller holds the
            // set, or a guard that loaded a word naming `owner`, so the
            // table entry points at the set's live core.
            unsafe { self.sets.get(owner).as_ref() }
        };
        self.notify.note(event, id, owner, core, word, owned)
    }

    /// Sends BIND or UNBIND of `id` with `spid` once the attach or detach
    /// took effect (a free's detach sends none: its FREE says it all). An
    /// ID freed meanwhile gets none either.
    pub(crate) fn notify_spid(&self, event: Event, id: Ioasid, spid: Ioasid) {
        if !self.notify.active() {
            return;
        }
        let note = {
            let guard = self.pin();
            let Some(word) = self.load(id, &guard) else {
                return;
            };
            // Under `guard`, the word's owner index names its set.
            let mut note = self.note(event, id, entry::owner(word), word, false);
            note.spid = Some(spid);
            note
        };
        self.send_to(Some(note), Chains::BOTH);
    }
}
