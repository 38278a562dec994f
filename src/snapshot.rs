//! Snapshot and restore (live migration of a vIOMMU, SPEC 6.8).
//!
//! A [`Snapshot`] is a space's whole state as plain data: range, policy,
//! the Cyclic cursor, the set-number pool, the sets (number, quota) and
//! every live ID (owner, data, reference count, FREE_PENDING, SPID, whether
//! a custom allocator gave it). A set's capacity (`Capacity`) is not part
//! of it: restored sets reserve from none until [`Set::reserve_from`]
//! gives them one. [`Space::restore`] builds a space from it
//! that answers every following call as the original would.
//!
//! What decides the next ID, per policy (and so what a snapshot carries):
//! - Lowest: the free IDs alone.
//! - Cyclic: the free IDs and the cursor (the key after the last ID
//!   handed out), saved as [`Snapshot::cyclic_next`].
//! - Any: the free IDs, the range asked for, and the calling thread's seed
//!   (the n-th thread of a process to allocate under `Any` has the n-th
//!   seed); no per-space history. So a restored space gives a thread the
//!   answer the original would have given a thread of the same rank.
//! - Set numbers: the pool's next fresh number and its free list (numbers
//!   of dropped sets still waiting for their grace period are saved as
//!   free: they would be reusable by then), with the free numbers that
//!   served a set without quota marked ([`Snapshot::plain_set_numbers`]):
//!   only such sets reuse them.
//!
//! With the `serde` feature the snapshot types implement `Serialize` and
//! `Deserialize`. [`Snapshot::encode`] and [`Snapshot::decode`] are the
//! versioned byte format of the C functions (`docs/SNAPSHOT.md`), with data
//! as opaque 64-bit values; [`Snapshot::try_map`] converts the data.
//!
//! INVARIANT: a snapshot taken while no other thread changes the space is
//! valid ([`Snapshot::validate`]); one taken under concurrent changes is
//! still memory-safe (every value is cloned under a guard) but may mix
//! instants, and restore refuses it if it is inconsistent. A restore
//! validates the whole snapshot before it builds anything, and builds the
//! space before any other thread can see it (plain stores, no races).

use crate::custom::CustomHook;
use crate::domain::Domain;
use crate::entry::{self, Payload, Ref, MAX_SETS};
use crate::error::Error;
use crate::owners::SetCore;
use crate::refs::{RefState, MAX_REFS};
use crate::set::Set;
use crate::space::{Policy, Space};
use crate::sync::Ordering;
use crate::{Ioasid, MAX_IOASID};
use std::collections::{BTreeMap, BTreeSet};

/// A space's state, as [`Space::snapshot`] takes it and [`Space::restore`]
/// rebuilds it. Fields are public so a VMM can inspect or migrate it;
/// [`Snapshot::validate`] says whether a hand-made one can be restored.
///
/// ```
/// use ioasid::{Policy, Space};
/// let space: Space<u32> = Space::builder().range(1, 100).policy(Policy::Cyclic).build()?;
/// let vm = space.new_set_with_quota(8);
/// let a = vm.alloc(1, 100, 7)?;
/// vm.alloc(1, 100, 8)?;
/// vm.free(a)?;
/// let snapshot = space.snapshot();
/// assert_eq!((snapshot.cyclic_next, snapshot.ids.len()), (3, 1));
///
/// let (copy, sets) = Space::<u32>::restore(snapshot)?;
/// assert_eq!(sets[0].quota(), Some(8));
/// // Cyclic goes on after 2, on both.
/// assert_eq!(vm.alloc(1, 100, 9)?, 3);
/// assert_eq!(sets[0].alloc(1, 100, 9)?, 3);
/// assert_eq!(copy.copied(2), Some(8));
/// # Ok::<(), ioasid::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Snapshot<T> {
    /// Lowest ID of the space.
    pub min: Ioasid,
    /// Highest ID of the space.
    pub max: Ioasid,
    /// The allocation policy.
    pub policy: Policy,
    /// Where a Cyclic allocation starts looking (the ID after the last one
    /// handed out, or `min` after a wrap); kept under every policy.
    pub cyclic_next: Ioasid,
    /// The set-number pool: the next fresh number (the highest ever given).
    pub next_set_number: u16,
    /// The set-number pool: the numbers in `1..=next_set_number` that no
    /// set has, in the order they are reused last to first (a stack per
    /// class, see `plain_set_numbers`).
    pub free_set_numbers: Vec<u16>,
    /// The free numbers (among `free_set_numbers`, ascending) that once
    /// served a set without quota: only a set without quota reuses them,
    /// before any other free number; a set with a quota takes one of the
    /// others or a fresh number. (Empty in a snapshot of format version 1,
    /// which did not keep the split.)
    #[cfg_attr(feature = "serde", serde(default))]
    pub plain_set_numbers: Vec<u16>,
    /// The sets, in ascending number order.
    pub sets: Vec<SetSnapshot>,
    /// The live IDs (FREE_PENDING ones included), in ascending order.
    pub ids: Vec<IdSnapshot<T>>,
    /// A Cyclic space that keeps the memory of the IDs its cursor left
    /// ([`SpaceBuilder::keep_memory`](crate::SpaceBuilder::keep_memory));
    /// `false` under the other policies. It changes no answer, only what
    /// memory the restored space gives back.
    #[cfg_attr(feature = "serde", serde(default))]
    pub keep_memory: bool,
}

/// One set of a [`Snapshot`].
///
/// ```
/// let set = ioasid::SetSnapshot::new(3, Some(10));
/// assert_eq!((set.number, set.quota), (3, Some(10)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct SetSnapshot {
    /// The set's stable number ([`Set::number`]).
    pub number: u16,
    /// Its quota, if it has one.
    pub quota: Option<usize>,
}

impl SetSnapshot {
    /// A set with this number and quota.
    pub fn new(number: u16, quota: Option<usize>) -> Self {
        SetSnapshot { number, quota }
    }
}

/// One live ID of a [`Snapshot`].
///
/// ```
/// let id = ioasid::IdSnapshot::new(42, Some(1), "data");
/// assert_eq!((id.refs, id.free_pending, id.spid, id.custom), (1, false, None, false));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct IdSnapshot<T> {
    /// The ID.
    pub id: Ioasid,
    /// The number of its set; `None` for a FREE_PENDING ID whose set was
    /// torn down (detached).
    pub set: Option<u16>,
    /// Its private data.
    pub data: T,
    /// Its reference count (1 for an ID never got).
    pub refs: u32,
    /// Freed while references remained: still found, never got, not
    /// allocatable until the last put.
    pub free_pending: bool,
    /// Its set private ID (SPEC 6.5), if it has one: only a live ID of a
    /// set, not FREE_PENDING, can.
    pub spid: Option<Ioasid>,
    /// A custom allocator gave it: its free goes to the allocator's hook
    /// (restore needs one, see [`Space::restore_in`]).
    pub custom: bool,
}

impl<T> IdSnapshot<T> {
    /// A live ID of set `set` with `data`, one reference, not custom.
    pub fn new(id: Ioasid, set: Option<u16>, data: T) -> Self {
        IdSnapshot {
            id,
            set,
            data,
            refs: 1,
            free_pending: false,
            spid: None,
            custom: false,
        }
    }
}

impl<T> Snapshot<T> {
    /// The snapshot of an empty space `[min, max]` with `policy` and no
    /// sets (Cyclic starts at `min`).
    ///
    /// ```
    /// use ioasid::{Policy, SetSnapshot, Snapshot, Space};
    /// let mut snapshot = Snapshot::<u32>::new(0, 9, Policy::Lowest);
    /// snapshot.next_set_number = 1;
    /// snapshot.sets.push(SetSnapshot::new(1, None));
    /// let (_space, sets) = Space::<u32>::restore(snapshot)?;
    /// assert_eq!((sets[0].number(), sets[0].alloc(0, 9, 5)?), (1, 0));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn new(min: Ioasid, max: Ioasid, policy: Policy) -> Self {
        Snapshot {
            min,
            max,
            policy,
            cyclic_next: min,
            next_set_number: 0,
            free_set_numbers: Vec::new(),
            plain_set_numbers: Vec::new(),
            sets: Vec::new(),
            ids: Vec::new(),
            keep_memory: false,
        }
    }

    /// The same snapshot with each ID's data converted by
    /// `f(id, set, data)`; the first error stops and is returned.
    ///
    /// ```
    /// let space = ioasid::Space::<u32>::new(0, 9)?;
    /// let set = space.new_set();
    /// set.alloc(0, 9, 40)?;
    /// let wide = space.snapshot().try_map(|_, _, v| Ok::<u64, ()>(u64::from(v) + 2)).unwrap();
    /// assert_eq!(wide.ids[0].data, 42);
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn try_map<U, E>(
        self,
        mut f: impl FnMut(Ioasid, Option<u16>, T) -> Result<U, E>,
    ) -> Result<Snapshot<U>, E> {
        let mut ids = Vec::with_capacity(self.ids.len());
        for id in self.ids {
            ids.push(IdSnapshot {
                data: f(id.id, id.set, id.data)?,
                id: id.id,
                set: id.set,
                refs: id.refs,
                free_pending: id.free_pending,
                spid: id.spid,
                custom: id.custom,
            });
        }
        Ok(Snapshot {
            min: self.min,
            max: self.max,
            policy: self.policy,
            cyclic_next: self.cyclic_next,
            next_set_number: self.next_set_number,
            free_set_numbers: self.free_set_numbers,
            plain_set_numbers: self.plain_set_numbers,
            sets: self.sets,
            ids,
            keep_memory: self.keep_memory,
        })
    }

    /// Checks that the snapshot describes a state a space can be in:
    /// `Ok`, or [`Error::InvalidArgument`]. [`Space::restore`] checks this
    /// first; a snapshot taken of a quiescent space always passes.
    ///
    /// - `min <= max <= 0xFFFF_FFFE`, `cyclic_next` in `[min, max]`;
    /// - `next_set_number <= 16383`; set numbers strictly ascending and in
    ///   `1..=next_set_number`; free numbers distinct, in that range, and
    ///   no set's; every number in that range a set's or free; plain
    ///   numbers strictly ascending and free;
    /// - IDs strictly ascending, in `[min, max]`, each of a listed set or
    ///   detached (then FREE_PENDING), with `1..=2^30 - 1` references; a
    ///   SPID only on an ID of a set, not FREE_PENDING, never
    ///   `INVALID_IOASID`, and no SPID twice in one set;
    /// - no set owns more IDs than its quota.
    ///
    /// ```
    /// use ioasid::{IdSnapshot, Policy, Snapshot};
    /// let mut snapshot = Snapshot::new(0, 9, Policy::Lowest);
    /// snapshot.ids.push(IdSnapshot::new(3, None, ()));
    /// // Detached but not FREE_PENDING: no set could own it.
    /// assert_eq!(snapshot.validate(), Err(ioasid::Error::InvalidArgument));
    /// snapshot.ids[0].free_pending = true;
    /// snapshot.ids[0].refs = 2;
    /// assert_eq!(snapshot.validate(), Ok(()));
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        let bad = Err(Error::InvalidArgument);
        if self.min > self.max || self.max > MAX_IOASID {
            return bad;
        }
        if !(self.min..=self.max).contains(&self.cyclic_next) {
            return bad;
        }
        if self.keep_memory && self.policy != Policy::Cyclic {
            return bad;
        }
        let next = self.next_set_number;
        if next > MAX_SETS {
            return bad;
        }
        let numbers = 1..=next;
        let mut quotas: BTreeMap<u16, (usize, usize)> = BTreeMap::new();
        let mut last = 0;
        for set in &self.sets {
            if set.number <= last || !numbers.contains(&set.number) {
                return bad;
            }
            last = set.number;
            quotas.insert(set.number, (set.quota.unwrap_or(usize::MAX), 0));
        }
        let mut free = BTreeSet::new();
        for &number in &self.free_set_numbers {
            if !numbers.contains(&number) || quotas.contains_key(&number) || !free.insert(number) {
                return bad;
            }
        }
        // Every number given so far is a set's or free: nothing is lost.
        if free.len() + quotas.len() != usize::from(next) {
            return bad;
        }
        let mut last = 0;
        for &number in &self.plain_set_numbers {
            if number <= last || !free.contains(&number) {
                return bad;
            }
            last = number;
        }
        let mut last: Option<Ioasid> = None;
        let mut spids = BTreeSet::new();
        for id in &self.ids {
            if let Some(spid) = id.spid {
                let owner = id
                    .set
                    .filter(|_| !id.free_pending)
                    .ok_or(Error::InvalidArgument)?;
                if spid == crate::INVALID_IOASID || !spids.insert((owner, spid)) {
                    return bad;
                }
            }
            if last.is_some_and(|last| id.id <= last) || !(self.min..=self.max).contains(&id.id) {
                return bad;
            }
            last = Some(id.id);
            if id.refs == 0 || u64::from(id.refs) > MAX_REFS {
                return bad;
            }
            match id.set {
                None if !id.free_pending => return bad,
                None => {}
                Some(number) => match quotas.get_mut(&number) {
                    Some((quota, owned)) if *owned < *quota => *owned += 1,
                    _ => return bad,
                },
            }
        }
        Ok(())
    }
}

impl<T: Payload, const F: usize> Space<T, F> {
    /// The space's state, to restore with [`Space::restore`] (here or in
    /// another process). Take it while no other thread changes the space
    /// (a VMM pauses its vIOMMU first): see the module invariant.
    ///
    /// The installed custom allocator is not part of it (code is not
    /// data): the IDs it gave are marked [`IdSnapshot::custom`].
    ///
    /// ```
    /// let space = ioasid::Space::<u32>::new(0, 9)?;
    /// let set = space.new_set();
    /// let id = set.alloc(0, 9, 5)?;
    /// space.get(id)?;
    /// set.free(id)?; // FREE_PENDING: one reference left
    /// let snapshot = space.snapshot();
    /// let saved = &snapshot.ids[0];
    /// assert_eq!((saved.id, saved.set, saved.data), (id, Some(set.number()), 5));
    /// assert_eq!((saved.refs, saved.free_pending), (1, true));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn snapshot(&self) -> Snapshot<T>
    where
        T: Clone,
    {
        let inner = &*self.inner;
        // Pinned before any word is loaded: every boxed value the walk
        // reads stays alive until it is cloned.
        let guard = self.pin();
        let mut sets = Vec::new();
        let pool = inner
            .sets
            .live_sets(|number, core| sets.push(SetSnapshot::new(number, core.quota())));
        let next = pool.next;
        let live: BTreeSet<u16> = sets.iter().map(|s| s.number).collect();
        let stacked: BTreeSet<u16> = pool.free.iter().chain(&pool.free_plain).copied().collect();
        // Numbers of dropped sets still in their grace period: free by the
        // time a restored space could ask (bottom of their class's stack:
        // reused last).
        let grace = (1..=next).filter(|n| !live.contains(n) && !stacked.contains(n));
        let (grace_plain, grace_any): (Vec<u16>, Vec<u16>) =
            grace.partition(|n| pool.plain.binary_search(n).is_ok());
        let mut free = grace_any;
        free.extend(&pool.free);
        free.extend(grace_plain);
        free.extend(&pool.free_plain);
        let min = self.min();
        let mut ids = Vec::new();
        inner.tree.for_each_live(&mut |key, word| {
            let id = min + key as Ioasid;
            let owner = entry::owner(word);
            let listed = owner == 0 || live.contains(&owner);
            let state = if entry::has_ext(word) {
                inner.ref_state(id)
            } else {
                Some(RefState::Live(1))
            };
            let (set, refs, free_pending) = match state {
                Some(RefState::Live(n)) if listed => (Some(owner), n, false),
                Some(RefState::Pending(n)) if listed => (Some(owner), n, true),
                // A set whose teardown is under way (or unlisted): saved
                // as that teardown leaves it, the allocation's reference
                // dropped and the ID detached.
                Some(RefState::Live(n)) if n > 1 => (None, n - 1, true),
                Some(RefState::Pending(n)) => (None, n, true),
                // Released meanwhile, or released by that teardown.
                _ => return,
            };
            let set = set.filter(|&n| n != 0);
            if set.is_none() && !free_pending {
                return; // a concurrent change mixed two instants
            }
            // SAFETY: `word` was loaded from its slot after `guard` was
            // pinned, in this space's domain.
            let data = unsafe { Ref::<T>::new(word) }.clone();
            let mut saved = IdSnapshot::new(id, set, data);
            saved.refs = refs as u32;
            saved.free_pending = free_pending;
            saved.custom = inner.custom.any() && inner.custom.is_recorded(id);
            // Only a LIVE ID of a set holds a SPID (a free detaches it).
            saved.spid = set.filter(|_| !free_pending).and_then(|_| inner.spid(id));
            ids.push(saved);
        });
        drop(guard);
        // Relaxed: a hint word (see `claim_by_policy`); quiescent here.
        let cursor = inner.cursor.load(Ordering::Relaxed);
        let mut snapshot = Snapshot::new(min, self.max(), self.policy());
        snapshot.cyclic_next = min + cursor.min(u64::from(self.max() - min)) as Ioasid;
        snapshot.next_set_number = next;
        snapshot.free_set_numbers = free;
        snapshot.plain_set_numbers = pool.plain;
        snapshot.sets = sets;
        snapshot.ids = ids;
        snapshot.keep_memory = inner.keeps_memory();
        snapshot
    }

    /// A space rebuilt from `snapshot` in the global domain, and its sets
    /// in the snapshot's order (ascending number): every following call
    /// answers as it would have on the original (same next ID under every
    /// policy, owners, quotas, references, FREE_PENDING states, set
    /// numbers). [`Error::InvalidArgument`] for a snapshot that fails
    /// [`Snapshot::validate`], that holds custom IDs (use
    /// [`Space::restore_in`] with an allocator), or whose data cannot be
    /// stored; nothing is created then.
    ///
    /// ```
    /// use ioasid::{Policy, Space};
    /// let space: Space<String> = Space::builder().range(0, 99).policy(Policy::Lowest).build()?;
    /// let (a, b) = (space.new_set(), space.new_set_with_quota(2));
    /// a.alloc(0, 99, "first".into())?;
    /// b.alloc(0, 99, "second".into())?;
    /// let id = b.alloc(0, 99, "third".into())?;
    /// space.get(id)?;
    ///
    /// let (copy, sets) = Space::<String>::restore(space.snapshot())?;
    /// assert_eq!(sets.len(), 2);
    /// assert_eq!((sets[0].number(), sets[1].number()), (a.number(), b.number()));
    /// assert_eq!(sets[1].alloc(0, 99, "x".into()), Err(ioasid::Error::QuotaExceeded));
    /// assert_eq!(copy.ref_count(id), Some(2));
    /// assert_eq!(sets[1].with(id, |s| s.clone())?, "third");
    /// assert_eq!(sets[0].alloc(0, 99, "next".into())?, 3);
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn restore(snapshot: Snapshot<T>) -> Result<(Space<T, F>, Vec<Set<T, F>>), Error> {
        #[cfg(not(ioasid_loom))]
        let domain = Domain::global().clone();
        #[cfg(ioasid_loom)]
        let domain = Domain::new();
        Self::restore_in(snapshot, &domain, None)
    }

    /// [`Space::restore`] into `domain`, with `allocator` installed as the
    /// space's custom allocator (before any ID is restored): the IDs marked
    /// [`IdSnapshot::custom`] go back to its `free` hook when freed. Errors
    /// as [`Space::restore`]; custom IDs with no allocator are refused.
    ///
    /// ```
    /// use ioasid::{CustomAlloc, CustomAllocator, CustomHook, Domain, Space};
    /// struct Host;
    /// impl CustomAllocator for Host {
    ///     fn alloc(&self, _min: u32, max: u32) -> CustomAlloc { CustomAlloc::Id(max) }
    ///     fn free(&self, _id: u32) {}
    /// }
    /// let space = Space::<()>::new(0, 99)?;
    /// space.set_allocator(Some(CustomHook::new(Host)));
    /// let set = space.new_set();
    /// set.alloc(0, 99, ())?;
    /// let snapshot = space.snapshot();
    /// assert!(snapshot.ids[0].custom);
    /// assert_eq!(Space::<()>::restore(snapshot.clone()).err(), Some(ioasid::Error::InvalidArgument));
    /// let (copy, sets) = Space::<()>::restore_in(snapshot, &Domain::new(), Some(CustomHook::new(Host)))?;
    /// assert!(copy.allocator().is_some());
    /// assert_eq!(sets[0].free(99), Ok(()));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn restore_in(
        snapshot: Snapshot<T>,
        domain: &Domain,
        allocator: Option<CustomHook>,
    ) -> Result<(Space<T, F>, Vec<Set<T, F>>), Error> {
        snapshot.validate()?;
        if allocator.is_none() && snapshot.ids.iter().any(|id| id.custom) {
            return Err(Error::InvalidArgument);
        }
        let min = snapshot.min;
        let space: Space<T, F> = Space::builder()
            .range(min, snapshot.max)
            .policy(snapshot.policy)
            .domain(domain.clone())
            .keep_memory(snapshot.keep_memory)
            .build()?;
        let inner = &*space.inner;
        // Relaxed: the space is not shared yet.
        inner
            .cursor
            .store(u64::from(snapshot.cyclic_next - min), Ordering::Relaxed);
        inner
            .tree
            .cursor_placed(u64::from(snapshot.cyclic_next - min));
        if let Some(hook) = &allocator {
            space.set_allocator(Some(hook.clone()));
        }
        let span = inner.span();
        let cores: Vec<(u16, *const SetCore<F>)> = snapshot
            .sets
            .iter()
            .map(|set| {
                let quota = set.quota.unwrap_or(usize::MAX);
                let core = Box::into_raw(Box::new(SetCore::<F>::new(quota, span)));
                (set.number, core.cast_const())
            })
            .collect();
        inner.sets.restore(
            snapshot.next_set_number,
            &snapshot.free_set_numbers,
            &snapshot.plain_set_numbers,
            &cores,
        );
        // From here on the sets own their cores: an early return drops
        // them and the space, which frees every ID restored so far.
        let sets: Vec<Set<T, F>> = cores
            .iter()
            .map(|&(number, core)| Set::from_parts(space.clone(), core, number))
            .collect();
        let by_number: BTreeMap<u16, *const SetCore<F>> = cores.into_iter().collect();
        let spids: Vec<(Ioasid, Ioasid)> = snapshot
            .ids
            .iter()
            .filter_map(|saved| Some((saved.id, saved.spid?)))
            .collect();
        for saved in snapshot.ids {
            let key = u64::from(saved.id - min);
            let payload = entry::encode(saved.data).map_err(|_| Error::InvalidArgument)?;
            let claim = || inner.tree.claim(key, key);
            let claimed = match (&allocator, saved.custom) {
                (Some(hook), true) => inner.custom.record(saved.id, hook, claim),
                _ => claim(),
            };
            let Some((_, slot)) = claimed else {
                // Validated distinct in a fresh space: cannot happen.
                // SAFETY: never published; this is its one drop.
                unsafe { entry::drop_value::<T>(payload) };
                return Err(Error::InvalidArgument);
            };
            let mut word = match saved.set {
                Some(number) => entry::with_owner(payload, number),
                None => entry::detached(entry::with_owner(payload, 1)),
            };
            if saved.refs > 1 || saved.free_pending {
                inner
                    .refs
                    .restore(key, u64::from(saved.refs), saved.free_pending);
                word |= entry::EXT;
            }
            // Release: publishes a boxed value's contents (and the record).
            slot.store(word, Ordering::Release);
            if let Some(number) = saved.set {
                // SAFETY: the core of a set in `sets`, alive while it is.
                let core = unsafe { &*by_number[&number] };
                // Validated: no set owns more than its quota.
                let reserved = core.reserve();
                debug_assert!(reserved.is_ok());
                core.members.insert_published(key);
            }
        }
        for (id, spid) in spids {
            space.attach_spid(id, spid)?;
        }
        Ok((space, sets))
    }
}

/// The byte format's magic (docs/SNAPSHOT.md).
const MAGIC: [u8; 8] = *b"IOASNAP\0";
/// The byte format's version this build writes (it reads 1 too).
pub(crate) const FORMAT_VERSION: u32 = 2;
/// Version 2's free-number record flag: the number served a set without
/// quota (`Snapshot::plain_set_numbers`).
const FREE_PLAIN: u32 = 1 << 31;
/// The header's flag: the space keeps its memory (`Snapshot::keep_memory`).
const FLAG_KEEP_MEMORY: u32 = 1 << 0;
const HEADER: usize = 64;
const FREE_RECORD: usize = 4;
const SET_RECORD: usize = 24;
const ID_RECORD: usize = 32;
const TRAILER: usize = 8;
const ID_FREE_PENDING: u32 = 1 << 0;
const ID_SPID: u32 = 1 << 1;
const ID_CUSTOM: u32 = 1 << 2;
const NO_QUOTA: u64 = u64::MAX;

/// FNV-1a, 64 bits: each step is a bijection of the state for a given
/// byte, so any one changed byte changes the sum.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Reads little-endian fields off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(Error::InvalidArgument)?;
        self.0 = rest;
        Ok(*head)
    }
    fn u32(&mut self) -> Result<u32, Error> {
        self.take::<4>().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, Error> {
        self.take::<8>().map(u64::from_le_bytes)
    }
}

impl Snapshot<u64> {
    /// The number of bytes [`Snapshot::encode`] writes.
    ///
    /// ```
    /// let space = ioasid::Space::<u64>::new(0, 9)?;
    /// let set = space.new_set();
    /// set.alloc(0, 9, 0xdead)?;
    /// let snapshot = space.snapshot();
    /// assert_eq!(snapshot.encoded_len(), snapshot.encode().len());
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn encoded_len(&self) -> usize {
        HEADER
            + FREE_RECORD * self.free_set_numbers.len()
            + SET_RECORD * self.sets.len()
            + ID_RECORD * self.ids.len()
            + TRAILER
    }

    /// The snapshot in the versioned byte format of `docs/SNAPSHOT.md`
    /// (the C functions' format), data as opaque 64-bit values.
    ///
    /// ```
    /// use ioasid::{Snapshot, Space};
    /// let space = ioasid::Space::<u64>::new(1, 0xFFFFF)?;
    /// let set = space.new_set();
    /// set.alloc(1, 0xFFFFF, 0x7f00_0000_1000)?;
    /// let bytes = space.snapshot().encode();
    /// assert_eq!(&bytes[..8], b"IOASNAP\0");
    /// assert_eq!(Snapshot::decode(&bytes)?, space.snapshot());
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let len = self.encoded_len();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&MAGIC);
        put32(&mut out, FORMAT_VERSION);
        put32(
            &mut out,
            if self.keep_memory {
                FLAG_KEEP_MEMORY
            } else {
                0
            },
        );
        put64(&mut out, len as u64);
        put32(&mut out, self.min);
        put32(&mut out, self.max);
        put32(&mut out, policy_raw(self.policy));
        put32(&mut out, self.cyclic_next);
        put32(&mut out, u32::from(self.next_set_number));
        put32(&mut out, self.sets.len() as u32);
        put32(&mut out, self.free_set_numbers.len() as u32);
        put32(&mut out, 0); // reserved
        put64(&mut out, self.ids.len() as u64);
        for &number in &self.free_set_numbers {
            let plain = self.plain_set_numbers.binary_search(&number).is_ok();
            put32(
                &mut out,
                u32::from(number) | if plain { FREE_PLAIN } else { 0 },
            );
        }
        for set in &self.sets {
            put32(&mut out, u32::from(set.number));
            put32(&mut out, 0); // set type: plain (no token)
            put64(&mut out, set.quota.map_or(NO_QUOTA, |q| q as u64));
            put64(&mut out, 0); // token
        }
        for id in &self.ids {
            let mut flags = 0;
            if id.free_pending {
                flags |= ID_FREE_PENDING;
            }
            if id.spid.is_some() {
                flags |= ID_SPID;
            }
            if id.custom {
                flags |= ID_CUSTOM;
            }
            put32(&mut out, id.id);
            put32(&mut out, id.set.map_or(0, u32::from));
            put32(&mut out, id.refs);
            put32(&mut out, flags);
            put32(&mut out, id.spid.unwrap_or(crate::INVALID_IOASID));
            put32(&mut out, 0); // reserved
            put64(&mut out, id.data);
        }
        let sum = fnv1a(&out);
        put64(&mut out, sum);
        debug_assert_eq!(out.len(), len);
        out
    }

    /// A snapshot read from the byte format, checked whole: the exact
    /// length, magic, version, checksum, every reserved field zero, and
    /// [`Snapshot::validate`]. [`Error::InvalidArgument`] for anything
    /// else (truncated, corrupt, a later version, a set token: spaces that
    /// can be saved have no token sets).
    ///
    /// ```
    /// use ioasid::Snapshot;
    /// let space = ioasid::Space::<u64>::new(0, 9)?;
    /// space.new_set().alloc(0, 9, 1)?;
    /// let mut bytes = space.snapshot().encode();
    /// assert!(Snapshot::decode(&bytes[..bytes.len() - 1]).is_err());
    /// bytes[70] ^= 1;
    /// assert_eq!(Snapshot::decode(&bytes), Err(ioasid::Error::InvalidArgument));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<Snapshot<u64>, Error> {
        let bad = Error::InvalidArgument;
        let body_len = bytes.len().checked_sub(TRAILER).ok_or(bad)?;
        let (body, trailer) = bytes.split_at(body_len);
        let mut r = Reader(body);
        if r.take::<8>()? != MAGIC {
            return Err(bad);
        }
        let version = r.u32()?;
        let flags = r.u32()?;
        // Version 1 has no flag.
        let known = if version == 1 { 0 } else { FLAG_KEEP_MEMORY };
        if !(1..=FORMAT_VERSION).contains(&version) || flags & !known != 0 {
            return Err(bad);
        }
        if r.u64()? != bytes.len() as u64 {
            return Err(bad);
        }
        let sum = u64::from_le_bytes(trailer.try_into().map_err(|_| bad)?);
        if sum != fnv1a(body) {
            return Err(bad);
        }
        let (min, max) = (r.u32()?, r.u32()?);
        let policy = Policy::from_raw(r.u32()?).ok_or(bad)?;
        let cyclic_next = r.u32()?;
        let next = u16::try_from(r.u32()?).map_err(|_| bad)?;
        let (nsets, nfree) = (r.u32()? as usize, r.u32()? as usize);
        if r.u32()? != 0 {
            return Err(bad);
        }
        let nids = usize::try_from(r.u64()?).map_err(|_| bad)?;
        let expected = nfree
            .checked_mul(FREE_RECORD)
            .and_then(|f| nsets.checked_mul(SET_RECORD)?.checked_add(f))
            .and_then(|n| nids.checked_mul(ID_RECORD)?.checked_add(n))
            .ok_or(bad)?;
        if expected != r.0.len() {
            return Err(bad);
        }
        let mut snapshot = Snapshot::new(min, max, policy);
        snapshot.cyclic_next = cyclic_next;
        snapshot.next_set_number = next;
        snapshot.keep_memory = flags & FLAG_KEEP_MEMORY != 0;
        for _ in 0..nfree {
            let raw = r.u32()?;
            // Version 1 has no flag: its free numbers come back as free
            // for any set.
            let plain = version >= 2 && raw & FREE_PLAIN != 0;
            let number =
                u16::try_from(raw & !(if plain { FREE_PLAIN } else { 0 })).map_err(|_| bad)?;
            if plain {
                snapshot.plain_set_numbers.push(number);
            }
            snapshot.free_set_numbers.push(number);
        }
        // Ascending, as `validate` wants (the records are in stack order).
        snapshot.plain_set_numbers.sort_unstable();
        for _ in 0..nsets {
            let number = u16::try_from(r.u32()?).map_err(|_| bad)?;
            let (kind, quota, token) = (r.u32()?, r.u64()?, r.u64()?);
            // Token sets (SPEC 6.4) live only in the global space, which
            // cannot be saved: a token here is refused.
            if kind != 0 || token != 0 {
                return Err(bad);
            }
            let quota = match quota {
                NO_QUOTA => None,
                q => Some(usize::try_from(q).map_err(|_| bad)?),
            };
            snapshot.sets.push(SetSnapshot::new(number, quota));
        }
        for _ in 0..nids {
            let (id, set, refs, flags) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
            let (spid, reserved, data) = (r.u32()?, r.u32()?, r.u64()?);
            // The SPID field is INVALID_IOASID exactly when the flag is clear.
            let has_spid = flags & ID_SPID != 0;
            if flags & !(ID_FREE_PENDING | ID_SPID | ID_CUSTOM) != 0
                || has_spid == (spid == crate::INVALID_IOASID)
                || reserved != 0
            {
                return Err(bad);
            }
            let set = match set {
                0 => None,
                n => Some(u16::try_from(n).map_err(|_| bad)?),
            };
            let mut saved = IdSnapshot::new(id, set, data);
            saved.refs = refs;
            saved.free_pending = flags & ID_FREE_PENDING != 0;
            saved.custom = flags & ID_CUSTOM != 0;
            saved.spid = has_spid.then_some(spid);
            snapshot.ids.push(saved);
        }
        snapshot.validate()?;
        Ok(snapshot)
    }
}

fn policy_raw(policy: Policy) -> u32 {
    match policy {
        Policy::Lowest => 0,
        Policy::Cyclic => 1,
        Policy::Any => 2,
    }
}
