//! Owners: the shared state of each set, and the table that maps the small
//! owner index stored in entry words back to it.
//!
//! INVARIANT: table entry `i` points at the `SetCore` of the set with index
//! `i` for as long as any entry word names `i`, and for as long as any guard
//! that loaded such a word lives: a set removes all its words before it
//! hands its core and its index to the epoch, which frees the core and
//! returns the index to the pool only after every such guard is gone. So an
//! index is never reused while a reader could still pair it with an old
//! word, and a kernel-form free may follow a word's owner index to its set.

use crate::capacity::Capacity;
use crate::entry::MAX_SETS;
use crate::error::Error;
use crate::members::Members;
use crate::spid::SpidTable;
use crate::sync::{atomic_array, install, AtomicPtr, AtomicU64, CachePadded, Ordering};
use std::collections::BTreeSet;
use std::ptr;
use std::sync::{Arc as StdArc, Mutex};

/// The shared state of one set.
pub(crate) struct SetCore<const F: usize> {
    /// Whether the set has a quota (fixed at creation): only then are its
    /// live IDs counted (the count is a shared cache line that quota-less
    /// sets need not fight over).
    counted: bool,
    /// `[quota:32 | live:32]` in one word, so that a reserve (check against
    /// the quota and count) and a quota change (check against the count and
    /// store) are each one atomic step. Padded away from `members`, which
    /// every alloc of the set reads.
    budget: CachePadded<AtomicU64>,
    pub(crate) members: Members<F>,
    /// Set private IDs (SPEC 6.5): null until the set's first attach, so a
    /// set that never attaches pays one null pointer.
    pub(crate) spids: AtomicPtr<SpidTable>,
}

const LIVE_MASK: u64 = u32::MAX as u64;

/// A quota as stored: no space holds more than `u32::MAX` IDs, so a larger
/// quota is the same as `u32::MAX`.
fn stored_quota(quota: usize) -> u64 {
    (quota as u64).min(LIVE_MASK)
}

impl<const F: usize> SetCore<F> {
    pub(crate) fn new(quota: usize, span: u64) -> Self {
        let counted = quota != usize::MAX;
        SetCore {
            counted,
            budget: CachePadded(AtomicU64::new(if counted {
                stored_quota(quota) << 32
            } else {
                LIVE_MASK << 32
            })),
            members: Members::new(span),
            spids: AtomicPtr::new(ptr::null_mut()),
        }
    }

    pub(crate) fn has_quota(&self) -> bool {
        self.counted
    }

    /// The quota (`None` without one).
    pub(crate) fn quota(&self) -> Option<usize> {
        // Relaxed: a snapshot of one word.
        self.counted
            .then(|| (self.budget.load(Ordering::Relaxed) >> 32) as usize)
    }

    /// Live IDs, counted only with a quota (0 without one).
    pub(crate) fn live(&self) -> usize {
        // Relaxed: a snapshot of one word.
        (self.budget.load(Ordering::Relaxed) & LIVE_MASK) as usize
    }

    /// Takes one unit of quota: [`Error::QuotaExceeded`] if none is left.
    pub(crate) fn reserve(&self) -> Result<(), Error> {
        if !self.counted {
            return Ok(());
        }
        // Relaxed: the word guards nothing but itself; the CAS makes the
        // check against the quota and the increment one atomic step.
        let mut budget = self.budget.load(Ordering::Relaxed);
        loop {
            if budget & LIVE_MASK >= budget >> 32 {
                return Err(Error::QuotaExceeded);
            }
            match self.budget.compare_exchange_weak(
                budget,
                budget + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => budget = now,
            }
        }
    }

    /// Gives one unit of quota back.
    pub(crate) fn unreserve(&self) {
        if self.counted {
            // Relaxed: see `reserve`. The live count is at least 1 here (a
            // reserve preceded), so the borrow never reaches the quota.
            self.budget.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Sets the quota to `quota` if the set has one and holds at most
    /// `quota` live IDs, taking a raise from `capacity` (and giving a cut
    /// back to it). [`Error::InvalidArgument`] without a quota,
    /// [`Error::Busy`] below the live count, [`Error::NoSpace`] when the
    /// capacity has less left than the raise.
    pub(crate) fn adjust(&self, quota: usize, capacity: Option<&Capacity>) -> Result<(), Error> {
        if !self.counted {
            return Err(Error::InvalidArgument);
        }
        let quota = stored_quota(quota);
        // Relaxed: as in `reserve`; the CAS checks and stores in one step.
        let mut budget = self.budget.load(Ordering::Relaxed);
        loop {
            if budget & LIVE_MASK > quota {
                return Err(Error::Busy);
            }
            let old = budget >> 32;
            // A raise is taken from the capacity before the quota grows, so
            // the sum of quotas never exceeds the capacity's total.
            if let Some(capacity) = capacity.filter(|_| quota > old) {
                capacity.take(quota - old)?;
            }
            match self.budget.compare_exchange_weak(
                budget,
                quota << 32 | (budget & LIVE_MASK),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if let Some(capacity) = capacity.filter(|_| quota < old) {
                        capacity.give(old - quota);
                    }
                    return Ok(());
                }
                Err(now) => {
                    if let Some(capacity) = capacity.filter(|_| quota > old) {
                        capacity.give(quota - old);
                    }
                    budget = now;
                }
            }
        }
    }
}

impl<const F: usize> Drop for SetCore<F> {
    fn drop(&mut self) {
        // Relaxed: `&mut self`, exclusive access.
        let spids = self.spids.load(Ordering::Relaxed);
        if !spids.is_null() {
            // SAFETY: installed from a Box by `spid_table`, never replaced.
            drop(unsafe { Box::from_raw(spids) });
        }
    }
}

const CHUNK: usize = 256;
const CHUNKS: usize = (MAX_SETS as usize + 1) / CHUNK;

type Chunk<const F: usize> = [AtomicPtr<SetCore<F>>; CHUNK];

/// Owner index -> set core, two levels so an empty space costs one small
/// array; chunks of 256 entries appear as sets are created.
pub(crate) struct SetTable<const F: usize> {
    chunks: [AtomicPtr<Chunk<F>>; CHUNKS],
    pool: StdArc<Mutex<IndexPool>>,
}

/// Free owner indices. Creating and destroying sets is not a hot path; a
/// mutex keeps it simple. Indices come back only through the epoch. (std's
/// mutex even under loom: no atomic operation runs while it is held, so no
/// model can switch threads inside it.)
#[derive(Default)]
pub(crate) struct IndexPool {
    next: u16,
    free: Vec<u16>,
    /// Indices of sets not yet dropped (a snapshot's list of sets): an
    /// index is here from its registration until its set's drop begins, so
    /// while the lock is held the core of every index here is alive.
    live: BTreeSet<u16>,
}

impl IndexPool {
    fn take(&mut self) -> Option<u16> {
        if let Some(index) = self.free.pop() {
            return Some(index);
        }
        if self.next < MAX_SETS {
            self.next += 1;
            return Some(self.next);
        }
        None
    }
}

impl<const F: usize> SetTable<F> {
    pub(crate) fn new() -> Self {
        SetTable {
            chunks: atomic_array(|_| AtomicPtr::new(ptr::null_mut())),
            pool: StdArc::new(Mutex::new(IndexPool::default())),
        }
    }

    fn slot(&self, index: u16, create: bool) -> Option<&AtomicPtr<SetCore<F>>> {
        let (chunk, within) = (index as usize / CHUNK, index as usize % CHUNK);
        // Acquire: pairs with the Release of `install`.
        let mut current = self.chunks[chunk].load(Ordering::Acquire);
        if current.is_null() {
            if !create {
                return None;
            }
            let fresh: Box<Chunk<F>> = Box::new(atomic_array(|_| AtomicPtr::new(ptr::null_mut())));
            current = install(&self.chunks[chunk], Box::into_raw(fresh), |lost| {
                // SAFETY: our unpublished chunk.
                drop(unsafe { Box::from_raw(lost) })
            });
        }
        // SAFETY: chunks live as long as the table.
        Some(unsafe { &(*current)[within] })
    }

    /// Registers a new set core under a fresh index: `Err(NoSpace)` when all
    /// `MAX_SETS` indices are in use.
    pub(crate) fn register(&self, core: *const SetCore<F>) -> Result<u16, Error> {
        let mut pool = self.lock_pool();
        let index = pool.take().ok_or(Error::NoSpace)?;
        pool.live.insert(index);
        drop(pool);
        self.publish(index, core);
        Ok(index)
    }

    fn lock_pool(&self) -> std::sync::MutexGuard<'_, IndexPool> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, index: u16, core: *const SetCore<F>) {
        let slot = self.slot(index, true).expect("created on the way");
        // Release: a thread that loads a word naming this index (published
        // after this store) sees the core's initialised contents.
        slot.store(core.cast_mut(), Ordering::Release);
    }

    /// Takes `index` out of the live sets: its set's drop has begun.
    pub(crate) fn unregister(&self, index: u16) {
        self.lock_pool().live.remove(&index);
    }

    /// Restore (a fresh table, not yet shared): the pool's state as saved,
    /// then `cores` registered under their saved indices. The caller has
    /// validated the indices (distinct, in `1..=next`, none in `free`).
    pub(crate) fn restore(&self, next: u16, free: &[u16], cores: &[(u16, *const SetCore<F>)]) {
        let mut pool = self.lock_pool();
        pool.next = next;
        pool.free = free.to_vec();
        for &(index, core) in cores {
            pool.live.insert(index);
            self.publish(index, core);
        }
    }

    /// The pool's next fresh index and free list, and `visit(index, core)`
    /// for each live set in ascending index order, all under the pool lock
    /// (so each core is alive during its call).
    pub(crate) fn live_sets(&self, mut visit: impl FnMut(u16, &SetCore<F>)) -> (u16, Vec<u16>) {
        let pool = self.lock_pool();
        for &index in &pool.live {
            let core = self.get(index);
            // SAFETY: a live index's set has not begun its drop (the lock is
            // held), so its core, registered under it, is alive.
            visit(index, unsafe { &*core });
        }
        (pool.next, pool.free.clone())
    }

    /// The core of owner `index`. See the module invariant for when the
    /// result may be dereferenced.
    pub(crate) fn get(&self, index: u16) -> *const SetCore<F> {
        // Acquire: pairs with the Release store in `register`.
        self.slot(index, false)
            .map_or(ptr::null(), |slot| slot.load(Ordering::Acquire))
    }

    /// The pool, for returning an index through the epoch.
    pub(crate) fn pool(&self) -> StdArc<Mutex<IndexPool>> {
        self.pool.clone()
    }
}

/// Returns `index` to its pool (called from the epoch, after a grace period).
pub(crate) fn return_index(pool: &Mutex<IndexPool>, index: u16) {
    pool.lock()
        .unwrap_or_else(|e| e.into_inner())
        .free
        .push(index);
}

impl<const F: usize> Drop for SetTable<F> {
    fn drop(&mut self) {
        for chunk in &self.chunks {
            // Relaxed: `&mut self`, exclusive access.
            let chunk = chunk.load(Ordering::Relaxed);
            if !chunk.is_null() {
                // SAFETY: our chunk; the cores it points to are owned by
                // their sets, not by the table.
                drop(unsafe { Box::from_raw(chunk) });
            }
        }
    }
}
