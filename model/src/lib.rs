//! The reference model of the ioasid contract (docs/CONTRACT.md §3 and the
//! reference counts of §6.2): one space, single-threaded, written as plainly
//! as possible (a `BTreeMap` of live IDs and the contract's rules), so that
//! the library can be checked against it step by step.
//!
//! Two drivers share it: the proptest model test of the Rust API
//! (`tests/model.rs`) and the C ABI fuzzer (`fuzz/`). Each keeps its own
//! operations and generators; both ask this model what each call must
//! answer, and feed it what happened. The model knows nothing of the
//! library: it speaks IDs, set keys, opaque data tokens and errno values,
//! the contract's own terms, so the Rust and the C forms of one operation
//! check against one rule.
//!
//! ## What it models
//!
//! - Allocation under each policy: Lowest and Cyclic exactly (the ID they
//!   must choose), Any as "a free ID of the clamped range" ([`Choice`]);
//!   EINVAL before EDQUOT before ENOSPC.
//! - Sets with optional quotas and their live counts; teardown.
//! - Checked (`Some(set)`) and any-set (`None`) forms of free, find,
//!   set_data, get and put, with ENOENT and EACCES.
//! - Reference counts (§6.2): alloc gives one reference, get adds one
//!   (refused with ENOENT once FREE_PENDING), put drops one; a free with
//!   references outstanding drops the allocation's and leaves the ID
//!   FREE_PENDING (found, never got, skipped by walks, not allocatable,
//!   still counted by its set); a set torn down while some of its IDs are
//!   referenced leaves them FREE_PENDING and detached (owned by no set);
//!   the last put releases.
//! - Data lifetime: every data token that stops being reachable (freed,
//!   replaced, refused) is listed in [`SpaceModel::retired`] (a Rust driver
//!   checks each is dropped exactly once); every released ID is listed in
//!   [`SpaceModel::take_released`] (a C driver checks hooks that fire on
//!   release, such as a vendor's `pasid_free`).
//!
//! ## Adding an operation
//!
//! An operation is one method here, next to its kin below: it checks its
//! arguments in the contract's order, returns the answer (`Result<_,
//! Errno>`) and applies its effect on success, nothing on error. State it
//! needs (a SPID map, a notifier list, ...) is a field of [`SpaceModel`]
//! or [`Entry`], initialised in [`SpaceModel::new`] / at alloc, and
//! cleaned in `SpaceModel::release`, the one place an ID leaves the
//! model. Then each driver adds its own variant and arm; nothing else
//! moves.

use std::collections::BTreeMap;

/// An ID (`ioasid_t`).
pub type Id = u32;

/// An opaque token for one data value (a serial number, a `void *`).
pub type Data = u64;

/// A positive errno value, as the contract names them.
pub type Errno = i32;

/// The errno values the model answers with (Linux numbering).
pub mod errno {
    use super::Errno;
    /// Not live (or FREE_PENDING, for get and free).
    pub const ENOENT: Errno = 2;
    /// Live, but another set's.
    pub const EACCES: Errno = 13;
    /// A reversed range or one that misses the space.
    pub const EINVAL: Errno = 22;
    /// No free ID in the range.
    pub const ENOSPC: Errno = 28;
    /// The set's quota is reached.
    pub const EDQUOT: Errno = 122;
}
use errno::*;

/// How the space chooses among free IDs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// The lowest free ID of the range.
    Lowest,
    /// The lowest free ID at or after the cursor, wrapping to the range's
    /// minimum (`xa_alloc_cyclic`).
    Cyclic,
    /// Any free ID of the range.
    Any,
}

impl Policy {
    /// The policy of a C `enum ioasid_policy` value (0, 1, 2).
    pub fn from_raw(raw: u32) -> Option<Policy> {
        [Policy::Lowest, Policy::Cyclic, Policy::Any]
            .get(raw as usize)
            .copied()
    }
}

/// A set of the model, as [`SpaceModel::new_set`] handed it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SetKey(u64);

impl SetKey {
    /// A set that owns nothing and never will (a C set that was declared
    /// but never allocated): checked operations on it answer EACCES for a
    /// live ID and ENOENT otherwise. Never pass it to alloc.
    pub const NOBODY: SetKey = SetKey(u64::MAX);
}

/// What the model holds per live ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The owning set; `None` once detached by its set's teardown
    /// (FREE_PENDING then).
    pub owner: Option<SetKey>,
    /// The data token.
    pub data: Data,
    /// References: 1 from the allocation, plus one per get, minus puts.
    pub refs: u32,
    /// Freed (or torn down) while referenced, waiting for its last put.
    pub pending: bool,
}

/// What an alloc must answer when it succeeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Exactly this ID (Lowest, Cyclic).
    Exactly(Id),
    /// Any free ID of `lo..=hi` (Any).
    AnyFree(Id, Id),
}

#[derive(Clone, Debug)]
struct SetModel {
    quota: Option<usize>,
    /// Live IDs the set owns, FREE_PENDING ones included.
    count: usize,
}

/// One space of the contract, single-threaded.
#[derive(Clone, Debug)]
pub struct SpaceModel {
    min: Id,
    max: Id,
    policy: Policy,
    /// Cyclic: the key (ID - min) after the last ID handed out.
    cursor: u64,
    live: BTreeMap<Id, Entry>,
    sets: BTreeMap<SetKey, SetModel>,
    next_set: u64,
    retired: Vec<Data>,
    released: Vec<Id>,
}

impl SpaceModel {
    /// A space `[min, max]` with `policy`, no sets, no IDs.
    pub fn new(min: Id, max: Id, policy: Policy) -> Self {
        assert!(min <= max, "the model's space needs min <= max");
        SpaceModel {
            min,
            max,
            policy,
            cursor: 0,
            live: BTreeMap::new(),
            sets: BTreeMap::new(),
            next_set: 0,
            retired: Vec::new(),
            released: Vec::new(),
        }
    }

    /// Lowest ID of the space.
    pub fn min(&self) -> Id {
        self.min
    }

    /// Highest ID of the space.
    pub fn max(&self) -> Id {
        self.max
    }

    /// The Cyclic cursor: the key (ID - min) after the last ID handed out.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The live IDs (FREE_PENDING ones included), ascending.
    pub fn live(&self) -> &BTreeMap<Id, Entry> {
        &self.live
    }

    /// True if `id` is live (FREE_PENDING included).
    pub fn is_live(&self, id: Id) -> bool {
        self.live.contains_key(&id)
    }

    /// Number of live IDs (FREE_PENDING included).
    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// The `n`-th live ID (modulo their number), or `None` if none is live.
    pub fn nth_live(&self, n: usize) -> Option<Id> {
        (!self.live.is_empty()).then(|| *self.live.keys().nth(n % self.live.len()).unwrap())
    }

    /// Data tokens no longer reachable (freed, replaced, refused), in the
    /// order they became so, since the model was made.
    pub fn retired(&self) -> &[Data] {
        &self.retired
    }

    /// IDs released since the last call (by free, put or teardown), in order.
    pub fn take_released(&mut self) -> Vec<Id> {
        std::mem::take(&mut self.released)
    }

    // -----------------------------------------------------------------
    // Sets.

    /// A new set, with an optional quota.
    pub fn new_set(&mut self, quota: Option<usize>) -> SetKey {
        let key = SetKey(self.next_set);
        self.next_set += 1;
        self.sets.insert(key, SetModel { quota, count: 0 });
        key
    }

    /// True while `set` exists (made and not torn down).
    pub fn has_set(&self, set: SetKey) -> bool {
        self.sets.contains_key(&set)
    }

    /// The live IDs `set` counts (FREE_PENDING ones it still owns
    /// included): its `len`.
    pub fn set_len(&self, set: SetKey) -> usize {
        self.sets.get(&set).map_or(0, |s| s.count)
    }

    /// The IDs a walk of `set` visits (`for_each`, iterators), ascending,
    /// with their data: owned and not FREE_PENDING.
    pub fn members(&self, set: SetKey) -> Vec<(Id, Data)> {
        self.live
            .iter()
            .filter(|(_, e)| e.owner == Some(set) && !e.pending)
            .map(|(id, e)| (*id, e.data))
            .collect()
    }

    /// The IDs a walk of the whole space visits, ascending: live and not
    /// FREE_PENDING.
    pub fn visible(&self) -> Vec<(Id, Data)> {
        self.live
            .iter()
            .filter(|(_, e)| !e.pending)
            .map(|(id, e)| (*id, e.data))
            .collect()
    }

    /// Tears `set` down (drop, destroy): its unreferenced IDs are released,
    /// referenced ones stay FREE_PENDING, detached. A set that does not
    /// exist is a no-op.
    pub fn destroy_set(&mut self, set: SetKey) {
        if !self.sets.contains_key(&set) {
            return;
        }
        let owned: Vec<Id> = self
            .live
            .iter()
            .filter(|(_, e)| e.owner == Some(set))
            .map(|(id, _)| *id)
            .collect();
        for id in owned {
            let entry = &self.live[&id];
            if !entry.pending && entry.refs == 1 {
                self.release(id);
            } else {
                let entry = self.live.get_mut(&id).unwrap();
                entry.refs -= u32::from(!entry.pending);
                entry.pending = true;
                entry.owner = None;
            }
        }
        self.sets.remove(&set);
    }

    // -----------------------------------------------------------------
    // Allocation.

    fn lowest_free(&self, lo: Id, hi: Id) -> Option<Id> {
        // Step over the live keys of the range, not over every ID.
        let mut candidate = lo;
        for &id in self.live.range(lo..=hi).map(|(id, _)| id) {
            if id != candidate {
                return Some(candidate);
            }
            if id == hi {
                return None;
            }
            candidate = id + 1;
        }
        Some(candidate)
    }

    /// What `alloc(set, min, max)` must answer, without its effect: EINVAL
    /// for a reversed range or one that misses the space, then EDQUOT,
    /// then ENOSPC; else the policy's [`Choice`].
    pub fn expect_alloc(&self, set: SetKey, min: Id, max: Id) -> Result<Choice, Errno> {
        if min > max {
            return Err(EINVAL);
        }
        let (lo, hi) = (min.max(self.min), max.min(self.max));
        if lo > hi {
            return Err(EINVAL);
        }
        let state = self.sets.get(&set).expect("alloc in a set the model has");
        if state.quota.is_some_and(|quota| state.count >= quota) {
            return Err(EDQUOT);
        }
        let choice = match self.policy {
            Policy::Lowest => self.lowest_free(lo, hi).map(Choice::Exactly),
            Policy::Cyclic => {
                let start = u64::from(lo).max(u64::from(self.min) + self.cursor);
                let after = if start <= u64::from(hi) {
                    self.lowest_free(start as Id, hi)
                } else {
                    None
                };
                after
                    .or_else(|| self.lowest_free(lo, hi))
                    .map(Choice::Exactly)
            }
            Policy::Any => self.lowest_free(lo, hi).map(|_| Choice::AnyFree(lo, hi)),
        };
        choice.ok_or(ENOSPC)
    }

    /// Records a successful alloc of `id` in `set` with `data` (the ID the
    /// library chose, already checked against [`SpaceModel::expect_alloc`]).
    pub fn record_alloc(&mut self, set: SetKey, id: Id, data: Data) {
        assert!(!self.live.contains_key(&id), "model: {id} is live already");
        self.sets.get_mut(&set).expect("a set the model has").count += 1;
        let entry = Entry {
            owner: Some(set),
            data,
            refs: 1,
            pending: false,
        };
        self.live.insert(id, entry);
        let key = u64::from(id - self.min) + 1;
        let span = u64::from(self.max - self.min) + 1;
        self.cursor = if key >= span { 0 } else { key };
    }

    /// Checks the library's answer `real` to `alloc(set, min, max, data)`
    /// and records it: `Err` describes a disagreement. A refused `data` is
    /// retired.
    pub fn alloc(
        &mut self,
        set: SetKey,
        min: Id,
        max: Id,
        data: Data,
        real: Result<Id, Errno>,
    ) -> Result<(), String> {
        let want = self.expect_alloc(set, min, max);
        match (real, want) {
            (Ok(id), Ok(Choice::Exactly(want))) if id == want => {}
            (Ok(id), Ok(Choice::AnyFree(lo, hi)))
                if (lo..=hi).contains(&id) && !self.live.contains_key(&id) => {}
            (Err(e), Err(want)) if e == want => {
                self.retired.push(data);
                return Ok(());
            }
            (real, want) => {
                return Err(format!(
                    "alloc({min}, {max}): library {real:?}, model {want:?}"
                ))
            }
        }
        self.record_alloc(set, real.unwrap(), data);
        Ok(())
    }

    // -----------------------------------------------------------------
    // Lookups and updates.

    /// The entry of `id` on behalf of `set` (`None`: any set): ENOENT if
    /// not live, EACCES if `set` does not own it (a detached ID is owned
    /// by no set).
    pub fn entry(&self, set: Option<SetKey>, id: Id) -> Result<&Entry, Errno> {
        let entry = self.live.get(&id).ok_or(ENOENT)?;
        match set {
            Some(set) if entry.owner != Some(set) => Err(EACCES),
            _ => Ok(entry),
        }
    }

    /// `find`: the data of `id` (FREE_PENDING ones are still found).
    pub fn find(&self, set: Option<SetKey>, id: Id) -> Result<Data, Errno> {
        self.entry(set, id).map(|e| e.data)
    }

    /// `set_data`: replaces the data of `id` (FREE_PENDING ones too); the
    /// old token, or a refused `data`, is retired.
    pub fn set_data(&mut self, set: Option<SetKey>, id: Id, data: Data) -> Result<(), Errno> {
        if let Err(e) = self.entry(set, id) {
            self.retired.push(data);
            return Err(e);
        }
        let old = std::mem::replace(&mut self.live.get_mut(&id).unwrap().data, data);
        self.retired.push(old);
        Ok(())
    }

    // -----------------------------------------------------------------
    // Free and reference counts.

    /// `free`: drops the allocation's reference. `Ok(true)` if that
    /// released the ID, `Ok(false)` if references remain (FREE_PENDING
    /// now); ENOENT if not live or already FREE_PENDING, EACCES as
    /// [`SpaceModel::entry`].
    pub fn free(&mut self, set: Option<SetKey>, id: Id) -> Result<bool, Errno> {
        if self.entry(set, id)?.pending {
            return Err(ENOENT);
        }
        Ok(self.drop_ref(id, true))
    }

    /// `get`: one more reference; ENOENT if not live or FREE_PENDING,
    /// EACCES as [`SpaceModel::entry`].
    pub fn get(&mut self, set: Option<SetKey>, id: Id) -> Result<(), Errno> {
        if self.entry(set, id)?.pending {
            return Err(ENOENT);
        }
        self.live.get_mut(&id).unwrap().refs += 1;
        Ok(())
    }

    /// `put`: one reference less; `Ok(true)` if it was the last (the ID is
    /// released). Errors as [`SpaceModel::entry`] (a FREE_PENDING ID may be
    /// put).
    pub fn put(&mut self, set: Option<SetKey>, id: Id) -> Result<bool, Errno> {
        self.entry(set, id)?;
        Ok(self.drop_ref(id, false))
    }

    /// The reference count of `id`, `None` if not live.
    pub fn ref_count(&self, id: Id) -> Option<u32> {
        self.live.get(&id).map(|e| e.refs)
    }

    /// True if `id` is FREE_PENDING.
    pub fn is_pending(&self, id: Id) -> bool {
        self.live.get(&id).is_some_and(|e| e.pending)
    }

    fn drop_ref(&mut self, id: Id, free: bool) -> bool {
        let entry = self.live.get_mut(&id).unwrap();
        if entry.refs == 1 {
            self.release(id);
            return true;
        }
        entry.refs -= 1;
        entry.pending |= free;
        false
    }

    /// The one place an ID leaves the model: its set's count drops, its
    /// data is retired, the ID is listed as released.
    fn release(&mut self, id: Id) {
        let entry = self.live.remove(&id).unwrap();
        if let Some(set) = entry.owner {
            self.sets
                .get_mut(&set)
                .expect("an owner the model has")
                .count -= 1;
        }
        self.retired.push(entry.data);
        self.released.push(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model's own edge cases, so a wrong model cannot pass silently.
    #[test]
    fn cyclic_quota_and_ranges_follow_the_contract() {
        let mut model = SpaceModel::new(0, 9, Policy::Cyclic);
        let set = model.new_set(Some(2));
        assert_eq!(model.expect_alloc(set, 5, 4), Err(EINVAL));
        assert_eq!(model.expect_alloc(set, 10, 20), Err(EINVAL));
        assert_eq!(model.expect_alloc(set, 8, 20), Ok(Choice::Exactly(8)));
        model.record_alloc(set, 8, 100);
        // Cyclic: after 8 comes 9, even though 0 is lower.
        assert_eq!(model.expect_alloc(set, 0, 9), Ok(Choice::Exactly(9)));
        model.record_alloc(set, 9, 101);
        assert_eq!(model.cursor(), 0, "wraps after the space's last ID");
        assert_eq!(model.expect_alloc(set, 0, 9), Err(EDQUOT));
        assert_eq!(model.free(Some(set), 8), Ok(true));
        assert_eq!(model.expect_alloc(set, 0, 9), Ok(Choice::Exactly(0)));
        assert_eq!(model.take_released(), [8]);
        assert_eq!(model.retired(), [100]);
    }

    #[test]
    fn references_free_pending_and_teardown() {
        let mut model = SpaceModel::new(0, 9, Policy::Lowest);
        let (a, b) = (model.new_set(None), model.new_set(None));
        model.record_alloc(a, 0, 1);
        model.record_alloc(a, 1, 2);
        assert_eq!(model.get(Some(b), 0), Err(EACCES));
        assert_eq!(model.get(None, 0), Ok(()));
        assert_eq!(
            model.free(Some(a), 0),
            Ok(false),
            "referenced: FREE_PENDING"
        );
        assert!(model.is_pending(0));
        assert_eq!(model.get(None, 0), Err(ENOENT));
        assert_eq!(model.free(None, 0), Err(ENOENT));
        assert_eq!(model.find(Some(a), 0), Ok(1), "still found");
        assert_eq!(model.members(a), [(1, 2)], "walks skip it");
        assert_eq!(model.set_len(a), 2, "still counted");
        assert_eq!(model.expect_alloc(b, 0, 0), Err(ENOSPC));
        assert_eq!(model.put(None, 0), Ok(true));
        assert_eq!(model.take_released(), [0]);
        // Teardown with a referenced ID: detached, FREE_PENDING.
        model.get(Some(a), 1).unwrap();
        model.destroy_set(a);
        assert!(!model.has_set(a));
        assert_eq!(model.live()[&1].owner, None);
        assert_eq!(model.ref_count(1), Some(1));
        assert!(model.is_pending(1));
        assert_eq!(model.put(Some(b), 1), Err(EACCES), "detached");
        assert_eq!(model.put(None, 1), Ok(true));
        assert_eq!(model.live_count(), 0);
        assert_eq!(model.find(Some(SetKey::NOBODY), 1), Err(ENOENT));
    }
}
