//! Model-based property tests: random operation sequences run against a real
//! [`Space`] and, step by step, against the reference model of the contract
//! (`ioasid-model`, `model/`, shared with the C ABI fuzzer). Every result,
//! every error code, every ID chosen (exactly for Lowest and single-threaded
//! Cyclic, "free and in range" for Any), every `for_each` walk and iterator,
//! every reference count and FREE_PENDING state, every quota and set
//! private ID (SPID), and every drop of private data is compared, and the core's invariant walk
//! (`Space::check_invariants`) runs after every step. Private data takes
//! both entry kinds of the core: `Tagged` (boxed by the space) and
//! `Box<Tagged>` (a pointer stored inline).
//!
//! Adding an operation: a method on the shared model (see its docs), a
//! variant of [`Op`], its arm in `step_case` and a line in `op()`.
//!
//! The case count is `PROPTEST_CASES` (default 256, CI-sized); run more by
//! hand with e.g. `PROPTEST_CASES=20000 cargo test --release --test model`.
//! A failure shrinks to a short, readable `Vec<Op>`; `Target::Live(n)` means
//! "the n-th live ID (modulo their number)", and the failure message names
//! the ID it resolved to.

// The generic types: the model runs small fan-outs too.
use ioasid::fanout::{Set, Space};
use ioasid::{Domain, Error, Ioasid, Payload, Policy, INVALID_IOASID, MAX_IOASID};
use ioasid_model::{self as model, SetKey, SpaceModel};
use proptest::prelude::*;
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
    /// `set.alloc(min, max, data)`, `alloc_in(min..=max, data)` or
    /// `alloc_exact(min, data)`.
    Alloc {
        slot: usize,
        min: Ioasid,
        max: Ioasid,
        form: AllocForm,
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
    /// `space.iter()` and `set.iter()` under one guard.
    Iter { slot: usize },
    /// `set.len()`, `set.is_empty()`, `space.live_count()`.
    Count { slot: usize },
    /// `space.synchronize()`: then every retired value must be dropped.
    Synchronize,
    /// `set.get(id)` (checked) or, without a slot, `space.get(id)`.
    Get { slot: Option<usize>, id: Target },
    /// `set.put(id)` (checked) or, without a slot, `space.put(id)`.
    Put { slot: Option<usize>, id: Target },
    /// `set.adjust_quota(quota)`, then `set.quota()`.
    AdjustQuota { slot: usize, quota: usize },
    /// `set.attach_spid(id, spid)` (checked) or, without a slot,
    /// `space.attach_spid(id, spid)`; then `space.spid(id)`.
    AttachSpid {
        slot: Option<usize>,
        id: Target,
        spid: Ioasid,
    },
    /// `set.detach_spid(id)` (checked) or, without a slot,
    /// `space.detach_spid(id)`; then `space.spid(id)`.
    DetachSpid { slot: Option<usize>, id: Target },
    /// `set.find_by_spid(spid)`, or `set.get_by_spid(spid)` with `get`
    /// (then the found ID's reference count).
    BySpid {
        slot: usize,
        spid: Ioasid,
        get: bool,
    },
}

/// Which form of alloc an [`Op::Alloc`] calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AllocForm {
    MinMax,
    Range,
    Exact,
}

// ---------------------------------------------------------------------------
// The reference model: the shared one (`model/`), plus the slots' sets.

/// The shared model of one space, and which model set each slot holds.
struct Model {
    space: SpaceModel,
    slots: [Option<SetKey>; SLOTS],
}

impl Model {
    fn new(min: Ioasid, max: Ioasid, policy: Policy) -> Self {
        let policy = match policy {
            Policy::Lowest => model::Policy::Lowest,
            Policy::Cyclic => model::Policy::Cyclic,
            Policy::Any => model::Policy::Any,
            other => unreachable!("the model knows no policy {other:?}"),
        };
        Model {
            space: SpaceModel::new(min, max, policy),
            slots: [None; SLOTS],
        }
    }

    fn resolve(&self, target: Target) -> Ioasid {
        match target {
            Target::Raw(id) => id,
            Target::Live(n) => self
                .space
                .nth_live(n)
                .unwrap_or_else(|| self.space.min().wrapping_add(n as Ioasid)),
        }
    }

    fn key(&self, slot: usize) -> SetKey {
        self.slots[slot].expect("an op on a slot with a set")
    }

    fn destroy(&mut self, slot: usize) {
        if let Some(key) = self.slots[slot].take() {
            self.space.destroy_set(key);
        }
    }
}

/// A library result in the model's terms (errno values).
fn errno<V>(result: Result<V, Error>) -> Result<V, i32> {
    result.map_err(Error::errno)
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
    let mut sets: [Option<Set<D, F>>; SLOTS] = Default::default();
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
        for (id, entry) in model.space.live() {
            check!(
                log.drops(entry.data) == 0,
                "step {step} ({op:?}): data of live ID {id} was dropped"
            );
        }
    }

    // Tear down: sets, then the space, then the domain; every value ever made
    // is then dropped exactly once.
    for (slot, set) in sets.iter_mut().enumerate() {
        drop(set.take());
        model.destroy(slot);
    }
    // Referenced IDs outlive their sets (FREE_PENDING, detached) until
    // their last put.
    let left: Vec<(Ioasid, u32)> = model
        .space
        .live()
        .iter()
        .map(|(id, entry)| (*id, entry.refs))
        .collect();
    for (id, count) in left {
        check!(
            model.space.is_pending(id),
            "{id} left live but not FREE_PENDING"
        );
        for n in 1..=count {
            let want = model.space.put(None, id);
            check_eq!(errno(space.put(id)), want, "final put {n} of {id}");
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

/// Checks that a value the library refused was dropped at once.
fn refused_dropped(log: &DropLog, serial: u64, what: &str) -> Outcome {
    check_eq!(log.drops(serial), 1, "refused {what} value dropped at once");
    Ok(())
}

fn step_case<D: Data, const F: usize>(
    space: &Space<D, F>,
    sets: &mut [Option<Set<D, F>>; SLOTS],
    model: &mut Model,
    log: &Arc<DropLog>,
    op: &Op,
    coverage: &mut Coverage,
) -> Outcome {
    let slot_of = |slot: usize| slot % SLOTS;
    // The slot's set and model key, or (for an empty slot) no step at all.
    macro_rules! set_in {
        ($slot:expr) => {{
            let slot = slot_of($slot);
            match &sets[slot] {
                Some(set) => (set, model.key(slot)),
                None => return Ok(()),
            }
        }};
    }
    match *op {
        Op::NewSet { slot, quota } => {
            let slot = slot_of(slot);
            model.destroy(slot);
            sets[slot] = Some(match quota {
                Some(q) => space.new_set_with_quota(q),
                None => space.new_set(),
            });
            check_eq!(
                sets[slot].as_ref().unwrap().quota(),
                quota,
                "quota of a new set"
            );
            model.slots[slot] = Some(model.space.new_set(quota));
        }
        Op::DropSet { slot } => {
            let slot = slot_of(slot);
            if let Some(set) = sets[slot].take() {
                set.destroy();
                model.destroy(slot);
            }
        }
        Op::Alloc {
            slot,
            min,
            max,
            form,
        } => {
            let (set, key) = set_in!(slot);
            let data = D::wrap(log.make());
            let serial = data.serial();
            let real = match form {
                AllocForm::MinMax => set.alloc(min, max, data),
                AllocForm::Range => set.alloc_in(min..=max, data),
                AllocForm::Exact => set.alloc_exact(min, data),
            };
            coverage.insert(label("alloc", &real));
            coverage.insert(label(&format!("alloc {form:?}"), &real));
            if real.is_err() {
                refused_dropped(log, serial, "alloc")?;
            }
            let max = if form == AllocForm::Exact { min } else { max };
            model.space.alloc(key, min, max, serial, errno(real))?;
        }
        Op::Free { slot, id } => {
            let (set, key) = set_in!(slot);
            let id = model.resolve(id);
            let want = model.space.free(Some(key), id);
            let real = set.free_released(id);
            coverage.insert(label("free", &real));
            check_eq!(errno(real), want, "free({id})");
            check_eq!(space.spid(id), model.space.spid(id), "spid({id})");
            if want == Ok(false) {
                coverage.insert("free FREE_PENDING".to_string());
            }
        }
        Op::KernelFree { id } => {
            let id = model.resolve(id);
            let want = model.space.free(None, id).is_ok();
            check_eq!(space.free(id), want, "space.free({id})");
        }
        Op::Find { slot, id } => {
            let (set, key) = set_in!(slot);
            let id = model.resolve(id);
            let guard = space.pin();
            let real = set.find(id, &guard).map(|data| data.serial());
            coverage.insert(label("find", &real));
            check_eq!(errno(real), model.space.find(Some(key), id), "find({id})");
            check_eq!(set.contains(id), real.is_ok(), "contains({id})");
        }
        Op::SpaceFind { id } => {
            let id = model.resolve(id);
            let guard = space.pin();
            let real = space.find(id, &guard).map(|data| data.serial());
            let want = model.space.find(None, id).ok();
            check_eq!(real, want, "space.find({id})");
            check_eq!(space.with(id, |d| d.serial()), want, "space.with({id})");
        }
        Op::SetData { slot, id } => {
            let (set, key) = set_in!(slot);
            let id = model.resolve(id);
            let data = D::wrap(log.make());
            let serial = data.serial();
            let real = set.set_data(id, data);
            coverage.insert(label("set_data", &real));
            if real.is_err() {
                refused_dropped(log, serial, "set_data")?;
            }
            let want = model.space.set_data(Some(key), id, serial);
            check_eq!(errno(real), want, "set_data({id})");
        }
        Op::SpaceSetData { id } => {
            let id = model.resolve(id);
            let data = D::wrap(log.make());
            let serial = data.serial();
            let real = space.set_data(id, data);
            if real.is_err() {
                refused_dropped(log, serial, "set_data")?;
            }
            let want = model.space.set_data(None, id, serial);
            check_eq!(errno(real), want, "space.set_data({id})");
        }
        Op::ForEach { slot, stop_after } => {
            let (set, key) = set_in!(slot);
            let members = model.space.members(key);
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
        Op::Iter { slot } => {
            let guard = space.pin();
            let all: Vec<(Ioasid, u64)> = space
                .iter(&guard)
                .map(|(id, data)| (id, data.serial()))
                .collect();
            check_eq!(all, model.space.visible(), "space.iter()");
            let (set, key) = set_in!(slot);
            let seen: Vec<(Ioasid, u64)> = set
                .iter(&guard)
                .map(|(id, data)| (id, data.serial()))
                .collect();
            check_eq!(seen, model.space.members(key), "set.iter()");
        }
        Op::Count { slot } => {
            check_eq!(
                space.live_count(),
                model.space.live_count(),
                "space.live_count()"
            );
            let (set, key) = set_in!(slot);
            let count = model.space.set_len(key);
            check_eq!(set.len(), count, "set.len()");
            check_eq!(set.is_empty(), count == 0, "set.is_empty()");
        }
        Op::Get { slot, id } => {
            let id = model.resolve(id);
            let (real, want) = match slot {
                Some(slot) => {
                    let (set, key) = set_in!(slot);
                    (set.get(id), model.space.get(Some(key), id))
                }
                None => (space.get(id), model.space.get(None, id)),
            };
            coverage.insert(label("get", &real));
            check_eq!(errno(real), want, "get({id})");
            let want_count = model.space.ref_count(id).map(|n| n as usize);
            check_eq!(space.ref_count(id), want_count, "ref_count({id})");
            check_eq!(
                space.is_free_pending(id),
                model.space.is_pending(id),
                "is_free_pending({id})"
            );
        }
        Op::Put { slot, id } => {
            let id = model.resolve(id);
            let (real, want) = match slot {
                Some(slot) => {
                    let (set, key) = set_in!(slot);
                    (set.put(id), model.space.put(Some(key), id))
                }
                None => (space.put(id), model.space.put(None, id)),
            };
            coverage.insert(label("put", &real));
            check_eq!(errno(real), want, "put({id})");
        }
        Op::AdjustQuota { slot, quota } => {
            let (set, key) = set_in!(slot);
            let real = set.adjust_quota(quota);
            coverage.insert(label("adjust_quota", &real));
            check_eq!(
                errno(real),
                model.space.adjust_quota(key, quota),
                "adjust_quota({quota})"
            );
            check_eq!(set.quota(), model.space.quota(key), "quota()");
        }
        Op::AttachSpid { slot, id, spid } => {
            let id = model.resolve(id);
            let (real, want) = match slot {
                Some(slot) => {
                    let (set, key) = set_in!(slot);
                    (
                        set.attach_spid(id, spid),
                        model.space.attach_spid(Some(key), id, spid),
                    )
                }
                None => (
                    space.attach_spid(id, spid),
                    model.space.attach_spid(None, id, spid),
                ),
            };
            coverage.insert(label("attach_spid", &real));
            check_eq!(errno(real), want, "attach_spid({id}, {spid})");
            check_eq!(space.spid(id), model.space.spid(id), "spid({id})");
        }
        Op::DetachSpid { slot, id } => {
            let id = model.resolve(id);
            let (real, want) = match slot {
                Some(slot) => {
                    let (set, key) = set_in!(slot);
                    (set.detach_spid(id), model.space.detach_spid(Some(key), id))
                }
                None => (space.detach_spid(id), model.space.detach_spid(None, id)),
            };
            coverage.insert(label("detach_spid", &real));
            if want == Ok(None) {
                coverage.insert("detach_spid none".to_string());
            }
            check_eq!(errno(real), want, "detach_spid({id})");
            check_eq!(space.spid(id), model.space.spid(id), "spid({id})");
        }
        Op::BySpid { slot, spid, get } => {
            let (set, key) = set_in!(slot);
            let (real, want) = if get {
                (set.get_by_spid(spid), model.space.get_by_spid(key, spid))
            } else {
                (set.find_by_spid(spid), model.space.find_by_spid(key, spid))
            };
            let what = if get { "get_by_spid" } else { "find_by_spid" };
            coverage.insert(label(what, &real));
            check_eq!(errno(real), want, "{what}({spid})");
            if let Ok(id) = want {
                let want_count = model.space.ref_count(id).map(|n| n as usize);
                check_eq!(space.ref_count(id), want_count, "ref_count({id})");
                check_eq!(space.spid(id), Some(spid), "spid({id})");
            }
        }
        Op::Synchronize => {
            space.synchronize();
            for serial in model.space.retired() {
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

/// A SPID operand: mostly a small pool (so SPIDs collide within a set and
/// across sets), sometimes the edges and `INVALID_IOASID`.
fn spid() -> impl Strategy<Value = Ioasid> {
    prop_oneof![
        8 => 0u32..4,
        1 => prop_oneof![Just(1), Just(0xFFFFF), Just(MAX_IOASID), Just(INVALID_IOASID)],
    ]
}

/// Mostly the kernel-shaped form; the range and exact forms now and then.
fn alloc_form() -> impl Strategy<Value = AllocForm> {
    prop_oneof![
        6 => Just(AllocForm::MinMax),
        2 => Just(AllocForm::Range),
        2 => Just(AllocForm::Exact),
    ]
}

fn op(min: Ioasid, max: Ioasid) -> impl Strategy<Value = Op> {
    let slot = 0..SLOTS;
    prop_oneof![
        2 => (slot.clone(), prop::option::weighted(0.4, 1usize..6))
            .prop_map(|(slot, quota)| Op::NewSet { slot, quota }),
        1 => slot.clone().prop_map(|slot| Op::DropSet { slot }),
        12 => (slot.clone(), range(min, max), alloc_form())
            .prop_map(|(slot, (min, max), form)| Op::Alloc { slot, min, max, form }),
        1 => slot.clone().prop_map(|slot| Op::Iter { slot }),
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
        1 => (slot.clone(), 0usize..6).prop_map(|(slot, quota)| Op::AdjustQuota { slot, quota }),
        3 => (prop::option::of(slot.clone()), target(min, max), spid())
            .prop_map(|(slot, id, spid)| Op::AttachSpid { slot, id, spid }),
        1 => (prop::option::of(slot.clone()), target(min, max))
            .prop_map(|(slot, id)| Op::DetachSpid { slot, id }),
        3 => (slot.clone(), spid(), any::<bool>())
            .prop_map(|(slot, spid, get)| Op::BySpid { slot, spid, get }),
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

/// The generators reach every outcome the model distinguishes: each error
/// code of alloc, free, find, set_data, get, put, adjust_quota and the SPID
/// operations, and both ends of for_each. Without
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
        "alloc Range Ok",
        "alloc Range E22",
        "alloc Exact Ok",
        "alloc Exact E28",
        "alloc Exact E22",
        "adjust_quota Ok",
        "adjust_quota E16",
        "adjust_quota E22",
        "attach_spid Ok",
        "attach_spid E2",
        "attach_spid E13",
        "attach_spid E17",
        "attach_spid E22",
        "detach_spid Ok",
        "detach_spid none",
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
