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
//!
//! Index classes, for the free that holds no guard: an index that has
//! served a set without quota (*plain*) serves only such sets from then
//! on, and its table entry says so (tag bit 0). A set with a quota takes a
//! fresh index or one that only ever served sets with quotas. So once a
//! free reads "plain" for the index a word names, every set that index
//! will ever name is quota-less: taking that word out of its slot owes no
//! set a quota unit, whoever owns it by then, and needs no set core at all
//! ([`SetTable::is_plain`]). The price: a set with a quota cannot reuse a
//! plain index, so it may get `NoSpace` while fewer than 16383 sets live,
//! if all the free indices are plain.

use crate::capacity::Capacity;
use crate::entry::MAX_SETS;
use crate::error::Error;
use crate::members::Members;
use crate::spid::SpidTable;
use crate::sync::{
    atomic_array, install, AtomicPtr, AtomicU64, AtomicUsize, CachePadded, Ordering,
};
use std::any::Any;
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
    /// The word every notification of the set's IDs carries
    /// ([`crate::Set::set_tag`]).
    tag: AtomicUsize,
    /// The set's notifier chain (a `notify::Chain<T>` behind an `Arc`,
    /// typed by `notify.rs`): empty until the set's first registration.
    /// Kept on the core, so an event of the set's ID reaches its chain and
    /// tag with the loads that reach the core (the module invariant says
    /// when), and a reused index starts with neither.
    chain: AtomicPtr<ErasedChain>,
}

/// A set's chain as the core keeps it: `notify.rs` knows its type.
pub(crate) type ErasedChain = Box<dyn Any + Send + Sync>;

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
            tag: AtomicUsize::new(0),
            chain: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// The set's tag ([`crate::Set::set_tag`]).
    pub(crate) fn tag(&self) -> usize {
        // Relaxed: a word stored for the user, ordering nothing else; a
        // store before an event on the same thread is seen by coherence.
        self.tag.load(Ordering::Relaxed)
    }

    pub(crate) fn set_tag(&self, tag: usize) {
        // Relaxed: as in `tag`.
        self.tag.store(tag, Ordering::Relaxed);
    }

    /// The set's notifier chain, if one was made.
    pub(crate) fn chain(&self) -> Option<&(dyn Any + Send + Sync)> {
        // Acquire: pairs with the Release of `install`: the chain's contents.
        let chain = self.chain.load(Ordering::Acquire);
        // SAFETY: installed from a Box by `chain_or_make`, never replaced,
        // freed only by the core's drop.
        (!chain.is_null()).then(|| unsafe { &**chain })
    }

    /// The set's notifier chain, made by `make` if there is none yet.
    pub(crate) fn chain_or_make(
        &self,
        make: impl FnOnce() -> ErasedChain,
    ) -> &(dyn Any + Send + Sync) {
        if let Some(chain) = self.chain() {
            return chain;
        }
        let fresh = Box::into_raw(Box::new(make()));
        let chain = install(&self.chain, fresh, |lost| {
            // SAFETY: ours, never published.
            drop(unsafe { Box::from_raw(lost) })
        });
        // SAFETY: as in `chain`.
        unsafe { &**chain }
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
        // Relaxed: `&mut self`, exclusive access.
        let chain = self.chain.load(Ordering::Relaxed);
        if !chain.is_null() {
            // SAFETY: installed from a Box by `chain_or_make`, never replaced.
            drop(unsafe { Box::from_raw(chain) });
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
    /// Free indices that never served a set without quota.
    free: Vec<u16>,
    /// Free plain indices (see the module docs): for quota-less sets only.
    free_plain: Vec<u16>,
    /// Bit `i`: index `i` is plain (it never becomes unplain again).
    plain: Vec<u64>,
    /// Indices of sets not yet dropped (a snapshot's list of sets): an
    /// index is here from its registration until its set's drop begins, so
    /// while the lock is held the core of every index here is alive.
    live: BTreeSet<u16>,
}

impl IndexPool {
    /// An index for a set with (`plain == false`) or without a quota.
    fn take(&mut self, plain: bool) -> Option<u16> {
        let index = if plain {
            self.free_plain.pop().or_else(|| self.free.pop())
        } else {
            self.free.pop()
        };
        let index = index.or_else(|| {
            (self.next < MAX_SETS).then(|| {
                self.next += 1;
                self.next
            })
        })?;
        if plain {
            self.mark_plain(index);
        }
        Some(index)
    }

    fn mark_plain(&mut self, index: u16) {
        let word = index as usize / 64;
        if self.plain.len() <= word {
            self.plain.resize(word + 1, 0);
        }
        self.plain[word] |= 1 << (index % 64);
    }

    fn is_plain(&self, index: u16) -> bool {
        self.plain
            .get(index as usize / 64)
            .is_some_and(|word| word & (1 << (index % 64)) != 0)
    }
}

/// The index pool as [`SetTable::live_sets`] saw it.
pub(crate) struct PoolView {
    /// The next fresh index (the highest given).
    pub(crate) next: u16,
    /// Free indices for any set, reused last to first.
    pub(crate) free: Vec<u16>,
    /// Free plain indices (quota-less sets only), reused last to first.
    pub(crate) free_plain: Vec<u16>,
    /// The plain indices of no live set, ascending: those in `free_plain`
    /// and those of dropped sets still in their grace period.
    pub(crate) plain: Vec<u16>,
}

/// Tag bit 0 of a table entry: the index is plain (module docs). A
/// `SetCore` is aligned to 128 (its padded counter), so bit 0 is free.
const PLAIN: usize = 1;

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
    /// `MAX_SETS` indices are in use (for a set with a quota: all but the
    /// plain ones, see the module docs). `core` is valid and not yet shared.
    pub(crate) fn register(&self, core: *const SetCore<F>) -> Result<u16, Error> {
        // SAFETY: the caller's contract: a valid core.
        let plain = !unsafe { &*core }.has_quota();
        let mut pool = self.lock_pool();
        let index = pool.take(plain).ok_or(Error::NoSpace)?;
        pool.live.insert(index);
        drop(pool);
        self.publish(index, core, plain);
        Ok(index)
    }

    fn lock_pool(&self) -> std::sync::MutexGuard<'_, IndexPool> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `core` under `index`, tagged plain for a quota-less set.
    fn publish(&self, index: u16, core: *const SetCore<F>, plain: bool) {
        let slot = self.slot(index, true).expect("created on the way");
        let tagged = core
            .cast_mut()
            .map_addr(|a| a | if plain { PLAIN } else { 0 });
        // Release: a thread that loads a word naming this index (published
        // after this store) sees the core's initialised contents, and the
        // tag of this registration or a later one.
        slot.store(tagged, Ordering::Release);
    }

    /// Takes `index` out of the live sets: its set's drop has begun.
    pub(crate) fn unregister(&self, index: u16) {
        self.lock_pool().live.remove(&index);
    }

    /// Restore (a fresh table, not yet shared): the pool's state as saved,
    /// then `cores` registered under their saved indices. The caller has
    /// validated the indices (distinct, in `1..=next`, none in `free`, the
    /// `plain` ones among `free`). The saved free list comes back split as
    /// the original held it: the indices in `plain` (served a quota-less
    /// set) free for quota-less sets only, the others for any set, each
    /// class in the saved order. The live quota-less sets' indices are
    /// plain.
    pub(crate) fn restore(
        &self,
        next: u16,
        free: &[u16],
        plain: &[u16],
        cores: &[(u16, *const SetCore<F>)],
    ) {
        let mut pool = self.lock_pool();
        pool.next = next;
        for &index in free {
            // Validated ascending.
            if plain.binary_search(&index).is_ok() {
                pool.mark_plain(index);
                pool.free_plain.push(index);
            } else {
                pool.free.push(index);
            }
        }
        for &(index, core) in cores {
            // SAFETY: the caller's contract: valid cores, not yet shared.
            let plain = !unsafe { &*core }.has_quota();
            if plain {
                pool.mark_plain(index);
            }
            pool.live.insert(index);
            self.publish(index, core, plain);
        }
    }

    /// The pool's state, and `visit(index, core)` for each live set in
    /// ascending index order, all under the pool lock (so each core is
    /// alive during its call).
    pub(crate) fn live_sets(&self, mut visit: impl FnMut(u16, &SetCore<F>)) -> PoolView {
        let pool = self.lock_pool();
        for &index in &pool.live {
            let core = self.get(index);
            // SAFETY: a live index's set has not begun its drop (the lock is
            // held), so its core, registered under it, is alive.
            visit(index, unsafe { &*core });
        }
        PoolView {
            next: pool.next,
            free: pool.free.clone(),
            free_plain: pool.free_plain.clone(),
            plain: (1..=pool.next)
                .filter(|&i| pool.is_plain(i) && !pool.live.contains(&i))
                .collect(),
        }
    }

    /// The core of owner `index`. See the module invariant for when the
    /// result may be dereferenced.
    pub(crate) fn get(&self, index: u16) -> *const SetCore<F> {
        // Acquire: pairs with the Release store in `register`.
        self.slot(index, false).map_or(ptr::null(), |slot| {
            slot.load(Ordering::Acquire)
                .map_addr(|a| a & !PLAIN)
                .cast_const()
        })
    }

    /// True if `index` is plain: every set it names, now or later, has no
    /// quota (module docs). Dereferences nothing, so it needs no guard; the
    /// caller loaded a word naming `index` (Acquire) before asking.
    pub(crate) fn is_plain(&self, index: u16) -> bool {
        // Acquire: pairs with the Release store in `register` (through the
        // caller's Acquire load of a word naming the index).
        self.slot(index, false)
            .is_some_and(|slot| slot.load(Ordering::Acquire).addr() & PLAIN != 0)
    }

    /// The pool, for returning an index through the epoch.
    pub(crate) fn pool(&self) -> StdArc<Mutex<IndexPool>> {
        self.pool.clone()
    }
}

/// Returns `index` to its pool (called from the epoch, after a grace period).
pub(crate) fn return_index(pool: &Mutex<IndexPool>, index: u16) {
    let mut pool = pool.lock().unwrap_or_else(|e| e.into_inner());
    if pool.is_plain(index) {
        pool.free_plain.push(index);
    } else {
        pool.free.push(index);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_indices_serve_only_quota_less_sets() {
        let mut pool = IndexPool::default();
        let (a, b) = (pool.take(true).unwrap(), pool.take(false).unwrap());
        assert_eq!((a, b), (1, 2));
        assert!(pool.is_plain(a) && !pool.is_plain(b));
        let table: Mutex<IndexPool> = Mutex::new(pool);
        return_index(&table, a);
        return_index(&table, b);
        let mut pool = table.into_inner().unwrap();
        // A quota set skips the plain index; a plain one takes either, and
        // turns a quota-class index plain for good.
        assert_eq!(pool.take(false), Some(b));
        assert_eq!(pool.take(false), Some(3), "fresh, not the plain 1");
        assert_eq!(pool.take(true), Some(a));
        pool.free.push(b);
        assert_eq!(pool.take(true), Some(b));
        assert!(pool.is_plain(b));
        // Out of fresh indices: only plain ones are free, so a quota set
        // gets none while a quota-less set still does.
        pool.next = MAX_SETS;
        pool.free_plain.push(a);
        assert_eq!(pool.take(false), None);
        assert_eq!(pool.take(true), Some(a));
        assert_eq!(pool.take(true), None);
    }
}
