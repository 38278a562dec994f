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
//! - Quota adjust (the extended core's `adjust_quota`): EINVAL for a set
//!   without a quota, EBUSY below its live count (FREE_PENDING IDs count).
//!   The model's sets take their quota from no capacity, so it never
//!   answers ENOSPC there.
//! - Set private IDs (§5.6): at most one SPID per ID, one ID per SPID in a
//!   set; attach and detach in checked and any-set forms (EINVAL for
//!   [`INVALID_ID`] first, then ENOENT and EACCES as for the other checked
//!   operations, ENOENT for a FREE_PENDING ID, then EEXIST); find and get
//!   by SPID. A free that leaves an ID FREE_PENDING, a teardown that
//!   detaches it, and a release all drop its SPID at once.
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

/// The ID no call ever hands out (`INVALID_IOASID`): a SPID operation
/// refuses it as either argument with EINVAL.
pub const INVALID_ID: Id = u32::MAX;

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
    /// A quota cut below the set's live count.
    pub const EBUSY: Errno = 16;
    /// A SPID used in the set already, or an ID that has one.
    pub const EEXIST: Errno = 17;
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
    /// The set private ID attached to it; always `None` once FREE_PENDING.
    pub spid: Option<Id>,
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

    /// The quota of `set`, `None` if it has none (or does not exist).
    pub fn quota(&self, set: SetKey) -> Option<usize> {
        self.sets.get(&set).and_then(|s| s.quota)
    }

    /// `adjust_quota`: the new quota of `set`, live IDs kept. EINVAL for a
    /// set without a quota, EBUSY below its live count (FREE_PENDING IDs
    /// it still owns count). A quota above `u32::MAX` is kept as
    /// `u32::MAX` (no space holds more IDs).
    pub fn adjust_quota(&mut self, set: SetKey, quota: usize) -> Result<(), Errno> {
        let state = self.sets.get_mut(&set).expect("a set the model has");
        if state.quota.is_none() {
            return Err(EINVAL);
        }
        if state.count > quota {
            return Err(EBUSY);
        }
        state.quota = Some(quota.min(u32::MAX as usize));
        Ok(())
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
                entry.spid = None;
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
            spid: None,
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
    // Set private IDs (SPIDs).

    /// The SPID of `id`, `None` if it has none or is not live
    /// (`Space::spid`).
    pub fn spid(&self, id: Id) -> Option<Id> {
        self.live.get(&id).and_then(|e| e.spid)
    }

    /// The ID that holds `spid` in `set`, if any.
    fn spid_holder(&self, set: SetKey, spid: Id) -> Option<Id> {
        self.live
            .iter()
            .find(|(_, e)| e.owner == Some(set) && e.spid == Some(spid))
            .map(|(id, _)| *id)
    }

    /// `attach_spid`: gives `id` the SPID `spid` in its set, on behalf of
    /// `set` (`None`: any set). EINVAL if either is [`INVALID_ID`]
    /// (checked first); then ENOENT and EACCES as [`SpaceModel::entry`];
    /// ENOENT if FREE_PENDING; EEXIST if `id` has a SPID or its set uses
    /// `spid` already.
    pub fn attach_spid(&mut self, set: Option<SetKey>, id: Id, spid: Id) -> Result<(), Errno> {
        if id == INVALID_ID || spid == INVALID_ID {
            return Err(EINVAL);
        }
        let entry = self.entry(set, id)?;
        if entry.pending {
            return Err(ENOENT);
        }
        let owner = entry.owner.expect("a detached ID is FREE_PENDING");
        if entry.spid.is_some() || self.spid_holder(owner, spid).is_some() {
            return Err(EEXIST);
        }
        self.live.get_mut(&id).unwrap().spid = Some(spid);
        Ok(())
    }

    /// `detach_spid`: the SPID `id` held (`Ok(None)` if none), on behalf
    /// of `set` (`None`: any set); ENOENT and EACCES as
    /// [`SpaceModel::entry`], ENOENT if FREE_PENDING.
    pub fn detach_spid(&mut self, set: Option<SetKey>, id: Id) -> Result<Option<Id>, Errno> {
        if self.entry(set, id)?.pending {
            return Err(ENOENT);
        }
        Ok(self.live.get_mut(&id).unwrap().spid.take())
    }

    /// `find_by_spid`: the ID holding `spid` in `set`; ENOENT if none.
    pub fn find_by_spid(&self, set: SetKey, spid: Id) -> Result<Id, Errno> {
        self.spid_holder(set, spid).ok_or(ENOENT)
    }

    /// `get_by_spid`: [`SpaceModel::find_by_spid`] that also takes a
    /// reference on the ID it finds (a FREE_PENDING ID holds no SPID, so
    /// it is never found).
    pub fn get_by_spid(&mut self, set: SetKey, spid: Id) -> Result<Id, Errno> {
        let id = self.find_by_spid(set, spid)?;
        self.live.get_mut(&id).unwrap().refs += 1;
        Ok(id)
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
        if free {
            entry.pending = true;
            entry.spid = None; // FREE_PENDING: the SPID goes at once
        }
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

    #[test]
    fn quota_adjust_follows_the_live_count() {
        let mut model = SpaceModel::new(0, 9, Policy::Lowest);
        let (plain, counted) = (model.new_set(None), model.new_set(Some(1)));
        assert_eq!(model.adjust_quota(plain, 5), Err(EINVAL));
        assert_eq!(model.quota(plain), None);
        model.record_alloc(counted, 0, 1);
        model.record_alloc(counted, 1, 2);
        model.get(None, 1).unwrap();
        assert_eq!(model.free(None, 1), Ok(false));
        assert_eq!(
            model.adjust_quota(counted, 1),
            Err(EBUSY),
            "FREE_PENDING counts"
        );
        assert_eq!(model.quota(counted), Some(1), "unchanged on error");
        assert_eq!(model.adjust_quota(counted, 2), Ok(()));
        assert_eq!(model.expect_alloc(counted, 0, 9), Err(EDQUOT));
        assert_eq!(model.adjust_quota(counted, usize::MAX), Ok(()));
        assert_eq!(model.quota(counted), Some(u32::MAX as usize));
        assert_eq!(model.expect_alloc(counted, 0, 9), Ok(Choice::Exactly(2)));
    }

    #[test]
    fn spids_per_set_and_detached_at_free() {
        let mut model = SpaceModel::new(0, 9, Policy::Lowest);
        let (a, b) = (model.new_set(None), model.new_set(None));
        model.record_alloc(a, 0, 1);
        model.record_alloc(a, 1, 2);
        model.record_alloc(b, 2, 3);
        assert_eq!(model.attach_spid(Some(b), 0, INVALID_ID), Err(EINVAL));
        assert_eq!(model.attach_spid(None, INVALID_ID, 5), Err(EINVAL));
        assert_eq!(model.attach_spid(None, 7, 5), Err(ENOENT));
        assert_eq!(model.attach_spid(Some(b), 0, 5), Err(EACCES));
        assert_eq!(model.attach_spid(Some(a), 0, 5), Ok(()));
        assert_eq!(model.attach_spid(None, 0, 6), Err(EEXIST), "one per ID");
        assert_eq!(model.attach_spid(None, 1, 5), Err(EEXIST), "one per SPID");
        assert_eq!(model.attach_spid(None, 2, 5), Ok(()), "another set");
        assert_eq!(model.find_by_spid(a, 5), Ok(0));
        assert_eq!(model.find_by_spid(b, 5), Ok(2));
        assert_eq!(model.get_by_spid(a, 5), Ok(0));
        assert_eq!(model.ref_count(0), Some(2));
        assert_eq!(model.detach_spid(Some(b), 0), Err(EACCES));
        assert_eq!(model.free(Some(a), 0), Ok(false));
        assert_eq!(model.spid(0), None, "FREE_PENDING drops the SPID");
        assert_eq!(model.find_by_spid(a, 5), Err(ENOENT));
        assert_eq!(model.attach_spid(None, 0, 7), Err(ENOENT));
        assert_eq!(model.detach_spid(None, 0), Err(ENOENT));
        assert_eq!(model.attach_spid(Some(a), 1, 5), Ok(()), "reusable");
        assert_eq!(model.detach_spid(None, 1), Ok(Some(5)));
        assert_eq!(model.detach_spid(Some(a), 1), Ok(None));
        assert_eq!(model.detach_spid(None, 8), Err(ENOENT));
        model.get(None, 2).unwrap();
        model.destroy_set(b);
        assert_eq!(model.spid(2), None, "teardown drops the SPID");
        assert_eq!(model.get_by_spid(b, 5), Err(ENOENT));
    }
}
