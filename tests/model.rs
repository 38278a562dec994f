//! Model-based property tests: random operation sequences run against a real
//! [`Space`] and, step by step, against a plain reference model (a `BTreeMap`
//! plus the rules of contract §3, docs/CONTRACT.md). Every result, every error code, every
//! ID chosen (exactly for Lowest and single-threaded Cyclic, "free and in
//! range" for Any), every `for_each` walk and every drop of private data is
//! compared, and the core's invariant walk (`Space::check_invariants`)
//! runs after every step. Private data takes both entry kinds of the core: `Tagged`
//! (boxed by the space) and `Box<Tagged>` (a pointer stored inline).
//!
//! The case count is `PROPTEST_CASES` (default 256, CI-sized); run more by
//! hand with e.g. `PROPTEST_CASES=20000 cargo test --release --test model`.
//! A failure shrinks to a short, readable `Vec<Op>`; `Target::Live(n)` means
//! "the n-th live ID (modulo their number)", and the failure message names
//! the ID it resolved to.

use ioasid::{Domain, Error, Ioasid, Payload, Policy, Space, INVALID_IOASID, MAX_IOASID};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

/// How many set slots a case juggles.
const SLOTS: usize = 4;

// ---------------------------------------------------------------------------
// Private data that records its own drops.

/// Drop counts, indexed by the serial number of each data value ever made.
#[derive(Default)]
struct DropLog {
    counts: Mutex<Vec<u32>>,
}

impl DropLog {
    fn make(self: &Arc<Self>) -> Tagged {
        let mut counts = self.counts.lock().unwrap();
        counts.push(0);
        Tagged {
            serial: counts.len() as u64 - 1,
            log: self.clone(),
        }
    }

    fn drops(&self, serial: u64) -> u32 {
        self.counts.lock().unwrap()[serial as usize]
    }

    fn made(&self) -> usize {
        self.counts.lock().unwrap().len()
    }
}

/// One private data value: a unique serial, dropped exactly once.
struct Tagged {
    serial: u64,
    log: Arc<DropLog>,
}

// SAFETY: the provided methods store the value boxed (the flagged-box path).
unsafe impl Payload for Tagged {}

/// Private data as the model test stores it: `Tagged` itself takes the
/// boxed-entry path, `Box<Tagged>` the inline-pointer path.
trait Data: Payload {
    fn wrap(tagged: Tagged) -> Self;
    fn serial(&self) -> u64;
}

impl Data for Tagged {
    fn wrap(tagged: Tagged) -> Self {
        tagged
    }
    fn serial(&self) -> u64 {
        self.serial
    }
}

impl Data for Box<Tagged> {
    fn wrap(tagged: Tagged) -> Self {
        Box::new(tagged)
    }
    fn serial(&self) -> u64 {
        self.serial
    }
}

impl Drop for Tagged {
    fn drop(&mut self) {
        self.log.counts.lock().unwrap()[self.serial as usize] += 1;
    }
}

// ---------------------------------------------------------------------------
// Operations.

/// An ID operand: a raw number (possibly outside the space), or the n-th
/// live ID of the model (modulo their count; the raw space minimum if none).
#[derive(Debug, Clone, Copy)]
enum Target {
    Raw(Ioasid),
    Live(usize),
}

/// One step of a case. `slot` names one of [`SLOTS`] set slots; an op on an
/// empty slot does nothing.
#[derive(Debug, Clone)]
enum Op {
    /// Creates a set in `slot` (destroying the one there, if any).
    NewSet { slot: usize, quota: Option<usize> },
    /// Destroys the set in `slot` (frees all its IDs).
    DropSet { slot: usize },
    /// `set.alloc(min, max, data)`.
    Alloc {
        slot: usize,
        min: Ioasid,
        max: Ioasid,
    },
    /// `set.free(id)`: ENOENT / EACCES checked.
    Free { slot: usize, id: Target },
    /// `space.free(id)`: the kernel's silent form.
    KernelFree { id: Target },
    /// `set.find(id)`.
    Find { slot: usize, id: Target },
    /// `space.find(id)`.
    SpaceFind { id: Target },
    /// `set.set_data(id, data)`.
    SetData { slot: usize, id: Target },
    /// `space.set_data(id, data)`.
    SpaceSetData { id: Target },
    /// `set.for_each`, breaking at the `stop_after`-th ID when given.
    ForEach {
        slot: usize,
        stop_after: Option<usize>,
    },
    /// `set.len()`, `set.is_empty()`, `space.live_count()`.
    Count { slot: usize },
    /// `space.synchronize()`: then every retired value must be dropped.
    Synchronize,
    /// `set.get(id)` (checked) or, without a slot, `space.get(id)`.
    Get { slot: Option<usize>, id: Target },
    /// `set.put(id)` (checked) or, without a slot, `space.put(id)`.
    Put { slot: Option<usize>, id: Target },
    /// SPEC 6.4 quota adjust and 6.5 SPIDs (see `step_sets_and_spids`).
    Ext(ExtOp),
}

// ---------------------------------------------------------------------------
// The reference model.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SetIdent(u64);

struct ModelSet {
    ident: SetIdent,
    quota: Option<usize>,
    count: usize,
}

/// Contract §3, single-threaded.
struct Model {
    min: Ioasid,
    max: Ioasid,
    policy: Policy,
    /// Live IDs: owner set and the serial of their data.
    live: BTreeMap<Ioasid, (SetIdent, u64)>,
    /// Cyclic: the key (ID - min) after the last ID handed out.
    cursor: u64,
    slots: [Option<ModelSet>; SLOTS],
    next_ident: u64,
    /// Serials no longer reachable (freed, replaced, refused): each must be
    /// dropped after a grace period, and exactly once overall.
    retired: Vec<u64>,
    /// SPEC 6.2: live IDs whose count is not the allocation's lone
    /// reference, or that are FREE_PENDING: (references, pending).
    refs: BTreeMap<Ioasid, (u32, bool)>,
    /// SPEC 6.5: the SPID of each live, not FREE_PENDING ID that has one.
    spids: BTreeMap<Ioasid, Ioasid>,
}

/// The owner of a FREE_PENDING ID whose set was torn down.
const DETACHED: SetIdent = SetIdent(u64::MAX);

/// What the model expects of an alloc.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    /// Exactly this ID.
    Id(Ioasid),
    /// Any free ID in `lo..=hi` (policy Any).
    AnyFree(Ioasid, Ioasid),
    Err(Error),
}

impl Model {
    fn new(min: Ioasid, max: Ioasid, policy: Policy) -> Self {
        Model {
            min,
            max,
            policy,
            live: BTreeMap::new(),
            cursor: 0,
            slots: Default::default(),
            next_ident: 0,
            retired: Vec::new(),
            refs: BTreeMap::new(),
            spids: BTreeMap::new(),
        }
    }

    fn resolve(&self, target: Target) -> Ioasid {
        match target {
            Target::Raw(id) => id,
            Target::Live(n) if self.live.is_empty() => self.min.wrapping_add(n as Ioasid),
            Target::Live(n) => *self.live.keys().nth(n % self.live.len()).unwrap(),
        }
    }

    fn lowest_free(&self, lo: Ioasid, hi: Ioasid) -> Option<Ioasid> {
        (lo..=hi).find(|id| !self.live.contains_key(id))
    }

    /// The contract's alloc, without the side effects.
    fn expect_alloc(&self, slot: usize, min: Ioasid, max: Ioasid) -> Expect {
        let set = self.slots[slot].as_ref().unwrap();
        if min > max {
            return Expect::Err(Error::InvalidArgument);
        }
        let (lo, hi) = (min.max(self.min), max.min(self.max));
        if lo > hi {
            return Expect::Err(Error::InvalidArgument);
        }
        if set.quota.is_some_and(|quota| set.count >= quota) {
            return Expect::Err(Error::QuotaExceeded);
        }
        let choice = match self.policy {
            Policy::Lowest => self.lowest_free(lo, hi),
            // xa_alloc_cyclic: the lowest free ID at or after the cursor,
            // then wrap to the range's minimum.
            Policy::Cyclic => {
                let start = u64::from(lo).max(u64::from(self.min) + self.cursor);
                let after = if start <= u64::from(hi) {
                    self.lowest_free(start as Ioasid, hi)
                } else {
                    None
                };
                after.or_else(|| self.lowest_free(lo, hi))
            }
            Policy::Any => {
                return match self.lowest_free(lo, hi) {
                    Some(_) => Expect::AnyFree(lo, hi),
                    None => Expect::Err(Error::NoSpace),
                }
            }
            other => unreachable!("the model knows no policy {other:?}"),
        };
        match choice {
            Some(id) => Expect::Id(id),
            None => Expect::Err(Error::NoSpace),
        }
    }

    fn record_alloc(&mut self, slot: usize, id: Ioasid, serial: u64) {
        let set = self.slots[slot].as_mut().unwrap();
        set.count += 1;
        self.live.insert(id, (set.ident, serial));
        let key = u64::from(id - self.min) + 1;
        let span = u64::from(self.max - self.min) + 1;
        self.cursor = if key >= span { 0 } else { key };
    }

    fn slot_of(&self, ident: SetIdent) -> usize {
        self.slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.ident == ident))
            .expect("a live ID's owner is a live set")
    }

    /// Checked lookup on behalf of `slot`.
    fn owned(&self, slot: usize, id: Ioasid) -> Result<u64, Error> {
        let ident = self.slots[slot].as_ref().unwrap().ident;
        match self.live.get(&id) {
            None => Err(Error::NotFound),
            Some((owner, _)) if *owner != ident => Err(Error::PermissionDenied),
            Some((_, serial)) => Ok(*serial),
        }
    }

    fn remove(&mut self, id: Ioasid) {
        let (owner, serial) = self.live.remove(&id).unwrap();
        self.refs.remove(&id);
        self.spids.remove(&id);
        if owner != DETACHED {
            let slot = self.slot_of(owner);
            self.slots[slot].as_mut().unwrap().count -= 1;
        }
        self.retired.push(serial);
    }

    fn pending(&self, id: Ioasid) -> bool {
        self.refs.get(&id).is_some_and(|r| r.1)
    }

    fn ref_count(&self, id: Ioasid) -> u32 {
        self.refs.get(&id).map_or(1, |r| r.0)
    }

    /// Drops one reference: `pend` for a free (FREE_PENDING if others
    /// remain). True if the ID was released.
    fn drop_ref(&mut self, id: Ioasid, pend: bool) -> bool {
        let (count, pending) = self.refs.get(&id).copied().unwrap_or((1, false));
        if count == 1 {
            self.remove(id);
            return true;
        }
        self.refs.insert(id, (count - 1, pending || pend));
        if pend {
            self.spids.remove(&id); // FREE_PENDING: the SPID goes at once
        }
        false
    }

    /// The checked (with `slot`) or any-set get/put's error, if any.
    fn ref_target(&self, slot: Option<usize>, id: Ioasid) -> Result<(), Error> {
        match slot {
            Some(slot) => self.owned(slot, id).map(|_| ()),
            None if self.live.contains_key(&id) => Ok(()),
            None => Err(Error::NotFound),
        }
    }

    fn members(&self, slot: usize) -> Vec<(Ioasid, u64)> {
        let ident = self.slots[slot].as_ref().unwrap().ident;
        self.live
            .iter()
            .filter(|(id, (owner, _))| *owner == ident && !self.pending(**id))
            .map(|(id, (_, serial))| (*id, *serial))
            .collect()
    }

    /// A set's teardown: unreferenced IDs go, referenced ones stay
    /// FREE_PENDING, detached.
    fn destroy(&mut self, slot: usize) {
        let ident = self.slots[slot].as_ref().unwrap().ident;
        let owned: Vec<Ioasid> = self
            .live
            .iter()
            .filter(|(_, (owner, _))| *owner == ident)
            .map(|(id, _)| *id)
            .collect();
        for id in owned {
            let released = !self.pending(id) && self.drop_ref(id, true);
            if !released {
                self.live.get_mut(&id).unwrap().0 = DETACHED;
                self.slots[slot].as_mut().unwrap().count -= 1;
            }
        }
        self.slots[slot] = None;
    }
}

// ---------------------------------------------------------------------------
// Running a case.

type Outcome = Result<(), String>;

/// Labels of the outcomes a run reached ("alloc ENOSPC", "free Ok", ...), so
/// a test can check that the generators reach every error code.
type Coverage = std::collections::BTreeSet<String>;

fn label<V>(what: &str, result: &Result<V, Error>) -> String {
    match result {
        Ok(_) => format!("{what} Ok"),
        Err(e) => format!("{what} E{}", e.errno()),
    }
}

macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

macro_rules! check_eq {
    ($real:expr, $model:expr, $($fmt:tt)+) => {{
        let (real, model) = (&$real, &$model);
        if real != model {
            return Err(format!("{}: real {:?} != model {:?}", format!($($fmt)+), real, model));
        }
    }};
}

/// Runs `ops` on a fresh space `[min, max]` of fan-out `F` and on the model.
fn run_case<D: Data, const F: usize>(
    min: Ioasid,
    max: Ioasid,
    policy: Policy,
    ops: &[Op],
) -> Outcome {
    run_case_covered::<D, F>(min, max, policy, ops, &mut Coverage::new())
}

fn run_case_covered<D: Data, const F: usize>(
    min: Ioasid,
    max: Ioasid,
    policy: Policy,
    ops: &[Op],
    coverage: &mut Coverage,
) -> Outcome {
    let log = Arc::new(DropLog::default());
    let domain = Domain::new();
    let space: Space<D, F> = Space::builder()
        .range(min, max)
        .policy(policy)
        .domain(domain.clone())
        .build()
        .map_err(|e| format!("build: {e}"))?;
    let mut sets: [Option<ioasid::Set<D, F>>; SLOTS] = Default::default();
    let mut model = Model::new(min, max, policy);

    for (step, op) in ops.iter().enumerate() {
        step_case(&space, &mut sets, &mut model, &log, op, coverage)
            .map_err(|e| format!("step {step} ({op:?}): {e}"))?;
        // The core's invariant walk (hints exact, claims match entries,
        // counters match): a stale hint fails here, not only in a benchmark.
        space
            .check_invariants()
            .map_err(|e| format!("step {step} ({op:?}): invariant: {e}"))?;
        // After every step: no value of a live ID has been dropped.
        for (id, (_, serial)) in &model.live {
            check!(
                log.drops(*serial) == 0,
                "step {step} ({op:?}): data of live ID {id} was dropped"
            );
        }
    }

    // Tear down: sets, then the space, then the domain; every value ever made
    // is then dropped exactly once.
    for set in &mut sets {
        drop(set.take());
    }
    for slot in 0..SLOTS {
        if model.slots[slot].is_some() {
            model.destroy(slot);
        }
    }
    // Referenced IDs outlive their sets (FREE_PENDING, detached) until
    // their last put.
    for (&id, &(count, _)) in &model.refs {
        for n in 1..=count {
            check_eq!(space.put(id), Ok(n == count), "final put {n} of {id}");
        }
    }
    check_eq!(
        space.live_count(),
        0,
        "live IDs after every set was dropped"
    );
    drop(space);
    drop(domain);
    for serial in 0..log.made() as u64 {
        check_eq!(
            log.drops(serial),
            1,
            "drops of data value #{serial} at the end"
        );
    }
    Ok(())
}

fn step_case<D: Data, const F: usize>(
    space: &Space<D, F>,
    sets: &mut [Option<ioasid::Set<D, F>>; SLOTS],
    model: &mut Model,
    log: &Arc<DropLog>,
    op: &Op,
    coverage: &mut Coverage,
) -> Outcome {
    let slot_of = |slot: usize| slot % SLOTS;
    match *op {
        Op::NewSet { slot, quota } => {
            let slot = slot_of(slot);
            if sets[slot].is_some() {
                model.destroy(slot);
            }
            sets[slot] = Some(match quota {
                Some(q) => space.new_set_with_quota(q),
                None => space.new_set(),
            });
            check_eq!(
                sets[slot].as_ref().unwrap().quota(),
                quota,
                "quota of a new set"
            );
            model.slots[slot] = Some(ModelSet {
                ident: SetIdent(model.next_ident),
                quota,
                count: 0,
            });
            model.next_ident += 1;
        }
        Op::DropSet { slot } => {
            let slot = slot_of(slot);
            if let Some(set) = sets[slot].take() {
                set.destroy();
                model.destroy(slot);
            }
        }
        Op::Alloc { slot, min, max } => {
            let slot = slot_of(slot);
            let Some(set) = &sets[slot] else {
                return Ok(());
            };
            let data = D::wrap(log.make());
            let serial = data.serial();
            let expect = model.expect_alloc(slot, min, max);
            let real = set.alloc(min, max, data);
            coverage.insert(label("alloc", &real));
            match (real, expect) {
                (Ok(id), Expect::Id(want)) => {
                    check_eq!(id, want, "alloc({min}, {max}) chose");
                    model.record_alloc(slot, id, serial);
                }
                (Ok(id), Expect::AnyFree(lo, hi)) => {
                    check!(
                        (lo..=hi).contains(&id) && !model.live.contains_key(&id),
                        "alloc({min}, {max}) gave {id}, not a free ID of {lo}..={hi}"
                    );
                    model.record_alloc(slot, id, serial);
                }
                (Err(e), Expect::Err(want)) => {
                    check_eq!(e, want, "alloc({min}, {max}) error");
                    check_eq!(log.drops(serial), 1, "refused data dropped at once");
                    model.retired.push(serial);
                }
                (real, expect) => {
                    return Err(format!(
                        "alloc({min}, {max}): real {real:?}, model {expect:?}"
                    ))
                }
            }
        }
        Op::Free { slot, id } => {
            let slot = slot_of(slot);
            let Some(set) = &sets[slot] else {
                return Ok(());
            };
            let id = model.resolve(id);
            let want = model.owned(slot, id).map(|_| ()).and_then(|()| {
                if model.pending(id) {
                    Err(Error::NotFound)
                } else {
                    Ok(())
                }
            });
            let real = set.free(id);
            coverage.insert(label("free", &real));
            check_eq!(real, want, "free({id})");
            if want.is_ok() && !model.drop_ref(id, true) {
                coverage.insert("free FREE_PENDING".to_string());
            }
        }
        Op::KernelFree { id } => {
            let id = model.resolve(id);
            let want = model.live.contains_key(&id) && !model.pending(id);
            check_eq!(space.free(id), want, "space.free({id})");
            if want {
                model.drop_ref(id, true);
            }
        }
        Op::Find { slot, id } => {
            let slot = slot_of(slot);
            let Some(set) = &sets[slot] else {
                return Ok(());
            };
            let id = model.resolve(id);
            let guard = space.pin();
            let real = set.find(id, &guard).map(|data| data.serial());
            coverage.insert(label("find", &real));
            check_eq!(real, model.owned(slot, id), "find({id})");
            check_eq!(set.contains(id), real.is_ok(), "contains({id})");
        }
        Op::SpaceFind { id } => {
            let id = model.resolve(id);
            let guard = space.pin();
            let real = space.find(id, &guard).map(|data| data.serial());
            let want = model.live.get(&id).map(|(_, serial)| *serial);
            check_eq!(real, want, "space.find({id})");
            check_eq!(space.with(id, |d| d.serial()), want, "space.with({id})");
        }
        Op::SetData { slot, id } => {
            let slot = slot_of(slot);
            let Some(set) = &sets[slot] else {
                return Ok(());
            };
            let id = model.resolve(id);
            let data = D::wrap(log.make());
            let serial = data.serial();
            let want = model.owned(slot, id);
            let real = set.set_data(id, data);
            coverage.insert(label("set_data", &real));
            check_eq!(real, want.map(|_| ()), "set_data({id})");
            match want {
                Ok(old) => {
                    model.live.get_mut(&id).unwrap().1 = serial;
                    model.retired.push(old);
                }
                Err(_) => {
                    check_eq!(
                        log.drops(serial),
                        1,
                        "refused set_data value dropped at once"
                    );
                    model.retired.push(serial);
                }
            }
        }
        Op::SpaceSetData { id } => {
            let id = model.resolve(id);
            let data = D::wrap(log.make());
            let serial = data.serial();
            let old = model.live.get(&id).map(|(_, serial)| *serial);
            let want = old.map(|_| ()).ok_or(Error::NotFound);
            check_eq!(space.set_data(id, data), want, "space.set_data({id})");
            match old {
                Some(old) => {
                    model.live.get_mut(&id).unwrap().1 = serial;
                    model.retired.push(old);
                }
                None => {
                    check_eq!(
                        log.drops(serial),
                        1,
                        "refused set_data value dropped at once"
                    );
                    model.retired.push(serial);
                }
            }
        }
        Op::ForEach { slot, stop_after } => {
            let slot = slot_of(slot);
            let Some(set) = &sets[slot] else {
                return Ok(());
            };
            let members = model.members(slot);
            let mut seen = Vec::new();
            let flow = set.for_each(|id, data| {
                seen.push((id, data.serial()));
                if stop_after == Some(seen.len()) {
                    ControlFlow::Break(id)
                } else {
                    ControlFlow::Continue(())
                }
            });
            let (want_seen, want_flow) = match stop_after {
                Some(k) if k <= members.len() => {
                    (&members[..k], ControlFlow::Break(members[k - 1].0))
                }
                _ => (&members[..], ControlFlow::Continue(())),
            };
            check_eq!(seen.as_slice(), want_seen, "for_each visits");
            check_eq!(flow, want_flow, "for_each result");
            coverage.insert(format!(
                "for_each {}",
                if flow.is_break() { "Break" } else { "Continue" }
            ));
        }
        Op::Count { slot } => {
            check_eq!(space.live_count(), model.live.len(), "space.live_count()");
            let slot = slot_of(slot);
            let Some(set) = &sets[slot] else {
                return Ok(());
            };
            let count = model.slots[slot].as_ref().unwrap().count;
            check_eq!(set.len(), count, "set.len()");
            check_eq!(set.is_empty(), count == 0, "set.is_empty()");
        }
        Op::Get { slot, id } => {
            let slot = slot.map(slot_of);
            if slot.is_some_and(|slot| sets[slot].is_none()) {
                return Ok(());
            }
            let id = model.resolve(id);
            let want = model.ref_target(slot, id).and_then(|()| {
                if model.pending(id) {
                    Err(Error::NotFound)
                } else {
                    Ok(())
                }
            });
            let real = match slot {
                Some(slot) => sets[slot].as_ref().unwrap().get(id),
                None => space.get(id),
            };
            coverage.insert(label("get", &real));
            check_eq!(real, want, "get({id})");
            if want.is_ok() {
                let count = model.ref_count(id);
                model.refs.insert(id, (count + 1, false));
            }
            let want_count = model
                .live
                .contains_key(&id)
                .then(|| model.ref_count(id) as usize);
            check_eq!(space.ref_count(id), want_count, "ref_count({id})");
            check_eq!(
                space.is_free_pending(id),
                model.pending(id),
                "is_free_pending({id})"
            );
        }
        Op::Ext(ref ext) => return step_sets_and_spids(space, sets, model, ext, coverage),
        Op::Put { slot, id } => {
            let slot = slot.map(slot_of);
            if slot.is_some_and(|slot| sets[slot].is_none()) {
                return Ok(());
            }
            let id = model.resolve(id);
            let want = model.ref_target(slot, id);
            let real = match slot {
                Some(slot) => sets[slot].as_ref().unwrap().put(id),
                None => space.put(id),
            };
            coverage.insert(label("put", &real));
            match want {
                Ok(()) => {
                    let released = model.drop_ref(id, false);
                    check_eq!(real, Ok(released), "put({id})");
                }
                Err(e) => check_eq!(real, Err(e), "put({id})"),
            }
        }
        Op::Synchronize => {
            space.synchronize();
            for serial in &model.retired {
                check_eq!(
                    log.drops(*serial),
                    1,
                    "drops of retired value #{serial} after synchronize"
                );
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Strategies.

/// An ID operand around a space `[min, max]`: mostly live IDs and IDs of the
/// space, sometimes just outside it or at the ends of the ID type.
fn target(min: Ioasid, max: Ioasid) -> impl Strategy<Value = Target> {
    prop_oneof![
        6 => (0usize..64).prop_map(Target::Live),
        4 => (min..=max).prop_map(Target::Raw),
        1 => (min.saturating_sub(3)..=max.saturating_add(3)).prop_map(Target::Raw),
        1 => prop_oneof![Just(0), Just(MAX_IOASID), Just(u32::MAX)].prop_map(Target::Raw),
    ]
}

/// An alloc range: mostly short windows of the space (so ENOSPC comes
/// often), sometimes the whole space or wider, reversed, or outside it.
fn range(min: Ioasid, max: Ioasid) -> impl Strategy<Value = (Ioasid, Ioasid)> {
    let inside = min..=max;
    prop_oneof![
        6 => (inside.clone(), 0u32..6).prop_map(move |(lo, len)| (lo, lo.saturating_add(len).min(max))),
        2 => Just((min, max)),
        1 => Just((0, u32::MAX)),
        1 => (inside.clone(), inside.clone()).prop_map(|(a, b)| (a.max(b), a.min(b))),
        1 => (inside.clone(), 1u32..4).prop_map(move |(lo, d)| (lo.saturating_add(d), lo)),
        1 => (1u32..5).prop_map(move |d| (max.saturating_add(d), max.saturating_add(d + 3))),
        1 => (1u32..5).prop_map(move |d| (0, min.saturating_sub(d))),
        1 => (inside.clone(), inside).prop_map(|(a, b)| (a.min(b), a.max(b))),
    ]
}

fn op(min: Ioasid, max: Ioasid) -> impl Strategy<Value = Op> {
    let slot = 0..SLOTS;
    prop_oneof![
        2 => (slot.clone(), prop::option::weighted(0.4, 1usize..6))
            .prop_map(|(slot, quota)| Op::NewSet { slot, quota }),
        1 => slot.clone().prop_map(|slot| Op::DropSet { slot }),
        12 => (slot.clone(), range(min, max)).prop_map(|(slot, (min, max))| Op::Alloc { slot, min, max }),
        5 => (slot.clone(), target(min, max)).prop_map(|(slot, id)| Op::Free { slot, id }),
        2 => target(min, max).prop_map(|id| Op::KernelFree { id }),
        3 => (slot.clone(), target(min, max)).prop_map(|(slot, id)| Op::Find { slot, id }),
        2 => target(min, max).prop_map(|id| Op::SpaceFind { id }),
        2 => (slot.clone(), target(min, max)).prop_map(|(slot, id)| Op::SetData { slot, id }),
        1 => target(min, max).prop_map(|id| Op::SpaceSetData { id }),
        2 => (slot.clone(), prop::option::of(1usize..8))
            .prop_map(|(slot, stop_after)| Op::ForEach { slot, stop_after }),
        1 => slot.clone().prop_map(|slot| Op::Count { slot }),
        1 => Just(Op::Synchronize),
        3 => (prop::option::of(slot.clone()), target(min, max)).prop_map(|(slot, id)| Op::Get { slot, id }),
        3 => (prop::option::of(slot.clone()), target(min, max)).prop_map(|(slot, id)| Op::Put { slot, id }),
        4 => ext_op(min, max).prop_map(Op::Ext),
    ]
}

/// A case: sets in the first slots, then random operations.
fn ops(min: Ioasid, max: Ioasid, len: usize) -> impl Strategy<Value = Vec<Op>> {
    let setup = vec![
        Op::NewSet {
            slot: 0,
            quota: None,
        },
        Op::NewSet {
            slot: 1,
            quota: None,
        },
        Op::NewSet {
            slot: 2,
            quota: Some(3),
        },
    ];
    prop::collection::vec(op(min, max), 1..len).prop_map(move |body| {
        let mut all = setup.clone();
        all.extend(body);
        all
    })
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn lowest_fanout4_0_200(ops in ops(0, 200, 300)) {
        run_case::<Tagged, 4>(0, 200, Policy::Lowest, &ops).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn lowest_fanout4_offset_range(ops in ops(37, 101, 300)) {
        run_case::<Box<Tagged>, 4>(37, 101, Policy::Lowest, &ops).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn lowest_fanout64_0_200(ops in ops(0, 200, 300)) {
        run_case::<Tagged, 64>(0, 200, Policy::Lowest, &ops).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn lowest_fanout2_top_of_id_type(ops in ops(MAX_IOASID - 40, MAX_IOASID, 200)) {
        run_case::<Box<Tagged>, 2>(MAX_IOASID - 40, MAX_IOASID, Policy::Lowest, &ops).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn cyclic_fanout4_0_200(ops in ops(0, 200, 300)) {
        run_case::<Tagged, 4>(0, 200, Policy::Cyclic, &ops).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn cyclic_fanout4_small(ops in ops(5, 20, 200)) {
        run_case::<Box<Tagged>, 4>(5, 20, Policy::Cyclic, &ops).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn cyclic_fanout64_0_200(ops in ops(0, 200, 300)) {
        run_case::<Box<Tagged>, 64>(0, 200, Policy::Cyclic, &ops).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn any_fanout4_0_200(ops in ops(0, 200, 300)) {
        run_case::<Tagged, 4>(0, 200, Policy::Any, &ops).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn any_fanout64_small(ops in ops(3, 40, 200)) {
        run_case::<Box<Tagged>, 64>(3, 40, Policy::Any, &ops).map_err(TestCaseError::fail)?;
    }
}

/// The model's own edge cases, so a wrong model cannot pass silently.
#[test]
fn model_follows_spec_examples() {
    let mut model = Model::new(0, 9, Policy::Cyclic);
    model.slots[0] = Some(ModelSet {
        ident: SetIdent(0),
        quota: Some(2),
        count: 0,
    });
    assert_eq!(
        model.expect_alloc(0, 5, 4),
        Expect::Err(Error::InvalidArgument)
    );
    assert_eq!(
        model.expect_alloc(0, 10, 20),
        Expect::Err(Error::InvalidArgument)
    );
    assert_eq!(model.expect_alloc(0, 8, 20), Expect::Id(8));
    model.record_alloc(0, 8, 0);
    // Cyclic: after 8 comes 9, even though 0 is lower.
    assert_eq!(model.expect_alloc(0, 0, 9), Expect::Id(9));
    model.record_alloc(0, 9, 1);
    assert_eq!(model.cursor, 0, "wraps after the space's last ID");
    assert_eq!(
        model.expect_alloc(0, 0, 9),
        Expect::Err(Error::QuotaExceeded)
    );
    model.remove(8);
    assert_eq!(model.expect_alloc(0, 0, 9), Expect::Id(0));
}

/// The generators reach every outcome the model distinguishes: each error
/// code of alloc, free, find and set_data, and both ends of for_each. Without
/// this, a generator change could quietly stop testing an error path.
#[test]
fn generators_reach_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let mut coverage = Coverage::new();
    for _ in 0..64 {
        let case = ops(0, 200, 300).new_tree(&mut runner).unwrap().current();
        run_case_covered::<Tagged, 4>(0, 200, Policy::Lowest, &case, &mut coverage).unwrap();
        let case = ops(37, 101, 300).new_tree(&mut runner).unwrap().current();
        run_case_covered::<Box<Tagged>, 4>(37, 101, Policy::Cyclic, &case, &mut coverage).unwrap();
    }
    let wanted = [
        "alloc Ok",
        "alloc E22",
        "alloc E28",
        "alloc E122",
        "free Ok",
        "free E2",
        "free E13",
        "find Ok",
        "find E2",
        "find E13",
        "set_data Ok",
        "set_data E2",
        "set_data E13",
        "for_each Break",
        "for_each Continue",
        "get Ok",
        "get E2",
        "get E13",
        "put Ok",
        "put E2",
        "put E13",
        "free FREE_PENDING",
    ];
    for outcome in wanted {
        assert!(
            coverage.contains(outcome),
            "never reached {outcome}; reached {coverage:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// SPEC 6.4 quota adjust and 6.5 set private IDs: operations, model rules,
// steps and strategies, kept apart from the rest of the model.

/// An operation of the extended core.
#[derive(Debug, Clone)]
enum ExtOp {
    /// `set.adjust_quota(quota)`.
    AdjustQuota { slot: usize, quota: usize },
    /// `set.attach_spid(id, spid)`, or `space.attach_spid` without a slot.
    AttachSpid {
        slot: Option<usize>,
        id: Target,
        spid: Ioasid,
    },
    /// `set.detach_spid(id)`, or `space.detach_spid` without a slot.
    DetachSpid { slot: Option<usize>, id: Target },
    /// `set.find_by_spid(spid)`, or `set.get_by_spid(spid)` with `get`.
    FindBySpid {
        slot: usize,
        spid: Ioasid,
        get: bool,
    },
}

impl Model {
    /// `adjust_quota`'s answer; applies it on success.
    fn adjust_quota(&mut self, slot: usize, quota: usize) -> Result<(), Error> {
        let set = self.slots[slot].as_mut().unwrap();
        match set.quota {
            None => Err(Error::InvalidArgument),
            Some(_) if set.count > quota => Err(Error::Busy),
            Some(_) => {
                set.quota = Some(quota);
                Ok(())
            }
        }
    }

    /// The ID holding `spid` among the IDs owned by `owner`.
    fn spid_holder(&self, owner: SetIdent, spid: Ioasid) -> Option<Ioasid> {
        self.spids
            .iter()
            .find(|(id, s)| **s == spid && self.live[id].0 == owner)
            .map(|(id, _)| *id)
    }

    /// `attach_spid`'s answer; applies it on success.
    fn attach_spid(&mut self, slot: Option<usize>, id: Ioasid, spid: Ioasid) -> Result<(), Error> {
        if id == INVALID_IOASID || spid == INVALID_IOASID {
            return Err(Error::InvalidArgument);
        }
        let (owner, _) = *self.live.get(&id).ok_or(Error::NotFound)?;
        if let Some(slot) = slot {
            if self.slots[slot].as_ref().unwrap().ident != owner {
                return Err(Error::PermissionDenied);
            }
        }
        if self.pending(id) {
            return Err(Error::NotFound);
        }
        if self.spids.contains_key(&id) || self.spid_holder(owner, spid).is_some() {
            return Err(Error::AlreadyExists);
        }
        self.spids.insert(id, spid);
        Ok(())
    }

    /// `detach_spid`'s answer; applies it on success.
    fn detach_spid(&mut self, slot: Option<usize>, id: Ioasid) -> Result<Option<Ioasid>, Error> {
        let (owner, _) = *self.live.get(&id).ok_or(Error::NotFound)?;
        if let Some(slot) = slot {
            if self.slots[slot].as_ref().unwrap().ident != owner {
                return Err(Error::PermissionDenied);
            }
        }
        if self.pending(id) {
            // A FREE_PENDING ID that was ever tracked: not live for detach.
            return Err(Error::NotFound);
        }
        Ok(self.spids.remove(&id))
    }
}

fn step_sets_and_spids<D: Data, const F: usize>(
    space: &Space<D, F>,
    sets: &[Option<ioasid::Set<D, F>>; SLOTS],
    model: &mut Model,
    op: &ExtOp,
    coverage: &mut Coverage,
) -> Outcome {
    let slot_of = |slot: usize| slot % SLOTS;
    match *op {
        ExtOp::AdjustQuota { slot, quota } => {
            let slot = slot_of(slot);
            let Some(set) = &sets[slot] else {
                return Ok(());
            };
            let real = set.adjust_quota(quota);
            coverage.insert(label("adjust_quota", &real));
            check_eq!(
                real,
                model.adjust_quota(slot, quota),
                "adjust_quota({quota})"
            );
            check_eq!(
                set.quota(),
                model.slots[slot].as_ref().unwrap().quota,
                "quota"
            );
        }
        ExtOp::AttachSpid { slot, id, spid } => {
            let slot = slot.map(slot_of);
            let id = model.resolve(id);
            let real = match slot {
                Some(s) => match &sets[s] {
                    Some(set) => set.attach_spid(id, spid),
                    None => return Ok(()),
                },
                None => space.attach_spid(id, spid),
            };
            coverage.insert(label("attach_spid", &real));
            check_eq!(
                real,
                model.attach_spid(slot, id, spid),
                "attach_spid({id}, {spid})"
            );
            check_eq!(space.spid(id), model.spids.get(&id).copied(), "spid({id})");
        }
        ExtOp::DetachSpid { slot, id } => {
            let slot = slot.map(slot_of);
            let id = model.resolve(id);
            let real = match slot {
                Some(s) => match &sets[s] {
                    Some(set) => set.detach_spid(id),
                    None => return Ok(()),
                },
                None => space.detach_spid(id),
            };
            coverage.insert(label("detach_spid", &real));
            check_eq!(real, model.detach_spid(slot, id), "detach_spid({id})");
            check_eq!(space.spid(id), model.spids.get(&id).copied(), "spid({id})");
        }
        ExtOp::FindBySpid { slot, spid, get } => {
            let slot = slot_of(slot);
            let Some(set) = &sets[slot] else {
                return Ok(());
            };
            let ident = model.slots[slot].as_ref().unwrap().ident;
            let want = model.spid_holder(ident, spid).ok_or(Error::NotFound);
            let real = if get {
                set.get_by_spid(spid)
            } else {
                set.find_by_spid(spid)
            };
            coverage.insert(label(
                if get { "get_by_spid" } else { "find_by_spid" },
                &real,
            ));
            check_eq!(real, want, "find_by_spid({spid}, get {get})");
            if let (true, Ok(id)) = (get, want) {
                let count = model.ref_count(id);
                model.refs.insert(id, (count + 1, false));
                check_eq!(
                    space.ref_count(id),
                    Some(count as usize + 1),
                    "ref_count({id})"
                );
            }
        }
    }
    Ok(())
}

/// A SPID operand: a small pool (so SPIDs collide), the edges, and
/// `INVALID_IOASID`.
fn spid() -> impl Strategy<Value = Ioasid> {
    prop_oneof![
        8 => 0u32..4,
        1 => prop_oneof![Just(1), Just(0xFFFFF), Just(MAX_IOASID), Just(INVALID_IOASID)],
    ]
}

fn ext_op(min: Ioasid, max: Ioasid) -> impl Strategy<Value = ExtOp> {
    let slot = 0..SLOTS;
    prop_oneof![
        1 => (slot.clone(), 0usize..6).prop_map(|(slot, quota)| ExtOp::AdjustQuota { slot, quota }),
        3 => (prop::option::of(slot.clone()), target(min, max), spid())
            .prop_map(|(slot, id, spid)| ExtOp::AttachSpid { slot, id, spid }),
        1 => (prop::option::of(slot.clone()), target(min, max))
            .prop_map(|(slot, id)| ExtOp::DetachSpid { slot, id }),
        3 => (slot, spid(), any::<bool>())
            .prop_map(|(slot, spid, get)| ExtOp::FindBySpid { slot, spid, get }),
    ]
}

/// The generators reach every outcome of the quota adjust and SPID ops.
#[test]
fn generators_reach_every_set_and_spid_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let mut coverage = Coverage::new();
    for _ in 0..64 {
        let case = ops(0, 200, 300).new_tree(&mut runner).unwrap().current();
        run_case_covered::<Tagged, 4>(0, 200, Policy::Lowest, &case, &mut coverage).unwrap();
    }
    let wanted = [
        "adjust_quota Ok",
        "adjust_quota E16",
        "adjust_quota E22",
        "attach_spid Ok",
        "attach_spid E2",
        "attach_spid E13",
        "attach_spid E17",
        "attach_spid E22",
        "detach_spid Ok",
        "detach_spid E2",
        "detach_spid E13",
        "find_by_spid Ok",
        "find_by_spid E2",
        "get_by_spid Ok",
        "get_by_spid E2",
    ];
    for outcome in wanted {
        assert!(
            coverage.contains(outcome),
            "never reached {outcome}; reached {coverage:?}"
        );
    }
}
