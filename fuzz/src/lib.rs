//! The fuzz driver: decodes a byte string into a sequence of C ABI calls
//! (`ioasid_*` kernel functions and our extensions, bad arguments included)
//! and checks each result against the reference model of the contract
//! (docs/CONTRACT.md §3, §5 and the reference counts of §6.2), the
//! `ioasid-model` crate (`../model`) that the Rust model test shares. Any
//! mismatch panics with the step, the call and both answers.
//!
//! The model answers in the contract's terms (errno values, set keys);
//! this file keeps only what is C's own: set structs and their declared
//! state, the anonymous set of `ioasid_alloc(NULL, ...)`, the RFC's
//! consumers and their vendor hooks, read sections. Adding an operation:
//! its method on the model, then an op code in [`run_op`].
//!
//! One input is one self-contained scenario: it creates one extension space
//! (range and policy from the input), uses up to [`SLOTS`] set structs in
//! that space or in the process-global space, and at the end destroys every
//! set, frees its anonymous global IDs and destroys its space, then checks
//! that the global space is empty again, so inputs do not leak state into
//! each other (libFuzzer runs many in one process).
//!
//! Used by the libFuzzer target (`fuzz_targets/c_abi.rs`) and by the
//! libFuzzer-free random driver (`src/bin/random_driver.rs`).

pub mod snapshot;

use ioasid_ffi::*;
use ioasid_model::{Choice, SetKey, SpaceModel};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ffi::{c_int, c_long, c_uint, c_void};
use std::mem::MaybeUninit;
use std::ptr;

/// Set structs per scenario.
pub const SLOTS: usize = 4;
/// RFC consumers per scenario.
pub const PASIDS: usize = 2;

const INVALID: ioasid_t = u32::MAX;
const MAX_ID: ioasid_t = 0xFFFF_FFFE;
const ENOENT: c_int = 2;
const EEXIST: c_int = 17;
const EINVAL: c_int = 22;
const EDEADLK: c_int = 35;
/// Op codes of [`run_op`].
const OPS: u8 = 22;

fn err_ptr(errno: c_int) -> *mut c_void {
    (-(errno as isize)) as *mut c_void
}

// ---------------------------------------------------------------------------
// Input decoding.

/// Reads the input front to back; an exhausted input reads as zeros.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// An ID or range end near a space `[min, max]`: mostly inside it, some
    /// just outside, some at the ends of the ID type.
    fn id_near(&mut self, min: ioasid_t, max: ioasid_t) -> ioasid_t {
        let span = u64::from(max - min) + 1;
        match self.u8() % 8 {
            0..=4 => min + (u64::from(self.u8()) % span) as ioasid_t,
            5 => min.wrapping_add(self.u8() as u32).wrapping_sub(4),
            6 => [0, 1, MAX_ID, INVALID, min, max][self.u8() as usize % 6],
            _ => self.u32(),
        }
    }
}

// ---------------------------------------------------------------------------
// The model.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Where {
    Global,
    Ext,
}

#[derive(Clone, Copy, Debug)]
enum SlotState {
    /// All zero (`DECLARE_IOASID_SET`): installs itself in the global space
    /// on its first `ioasid_alloc`; owns nothing until then.
    Declared,
    /// Installed in a space, as this set of that space's model.
    Installed { space: Where, key: SetKey },
}

/// What a for_each over `members` whose callback stops (returning 7) at
/// the `stop`-th visit should see and return: the visited prefix and 7, or
/// every member and 0 when `stop` is 0 or past the end.
fn expected_walk(members: &[(ioasid_t, u64)], stop: usize) -> (&[(ioasid_t, u64)], i32) {
    if stop >= 1 && stop <= members.len() {
        (&members[..stop], 7)
    } else {
        (members, 0)
    }
}

// ---------------------------------------------------------------------------
// Callbacks.

thread_local! {
    /// The data pointer the last getter was called with.
    static GETTER_SAW: Cell<usize> = const { Cell::new(usize::MAX) };
    /// Visits of the current for_each walk, and where it stops.
    static WALK: RefCell<(Vec<(ioasid_t, u64)>, usize)> = const { RefCell::new((Vec::new(), 0)) };
}

unsafe extern "C" fn getter_true(data: *mut c_void) -> bool {
    GETTER_SAW.with(|s| s.set(data as usize));
    true
}

unsafe extern "C" fn getter_false(data: *mut c_void) -> bool {
    GETTER_SAW.with(|s| s.set(data as usize));
    false
}

/// Stops (returning 7) after the configured number of visits; `arg` must be
/// the cookie 0x1D.
unsafe extern "C" fn walker(id: ioasid_t, private_: *mut c_void, arg: *mut c_void) -> c_int {
    assert_eq!(arg as usize, 0x1D, "for_each passed the wrong argument");
    WALK.with(|w| {
        let mut w = w.borrow_mut();
        w.0.push((id, private_ as u64));
        if w.0.len() == w.1 {
            7
        } else {
            0
        }
    })
}

thread_local! {
    /// What the vendor's `pasid_init` does: its return value, and the range
    /// it writes (if any).
    static INIT_SCRIPT: Cell<(c_int, Option<(ioasid_t, ioasid_t)>)> = const { Cell::new((0, None)) };
    /// What the vendor's `pasid_alloc` does: `Err(errno)` to return it,
    /// `Ok(id)` to hand out `id`.
    static ALLOC_SCRIPT: Cell<Result<ioasid_t, c_int>> = const { Cell::new(Err(11)) };
    /// The arguments the vendor's `pasid_alloc` last got.
    static ALLOC_SAW: Cell<(usize, ioasid_t, ioasid_t)> = const { Cell::new((0, 0, 0)) };
    /// Every `pasid_free` call: (consumer, ID).
    static VENDOR_FREED: RefCell<Vec<(usize, ioasid_t)>> = const { RefCell::new(Vec::new()) };
}

unsafe extern "C" fn vendor_init(pasid: *mut iommu_pasid) -> c_int {
    let (rc, range) = INIT_SCRIPT.with(Cell::get);
    if let Some((min, max)) = range {
        // SAFETY: the library passes the consumer it is making.
        unsafe {
            (*pasid).min = min;
            (*pasid).max = max;
        }
    }
    rc
}

unsafe extern "C" fn vendor_alloc(
    pasid: *mut iommu_pasid,
    start: ioasid_t,
    end: ioasid_t,
    ioasid: *mut ioasid_t,
) -> c_int {
    ALLOC_SAW.with(|s| s.set((pasid as usize, start, end)));
    match ALLOC_SCRIPT.with(Cell::get) {
        Ok(id) => {
            // SAFETY: the library passes a writable ID.
            unsafe { ioasid.write(id) };
            0
        }
        Err(errno) => -errno,
    }
}

unsafe extern "C" fn vendor_free(pasid: *mut iommu_pasid, ioasid: ioasid_t) {
    VENDOR_FREED.with(|f| f.borrow_mut().push((pasid as usize, ioasid)));
}

/// An IOMMU driver without PASID hooks: the library allocates.
static OPS_PLAIN: iommu_ops = iommu_ops {
    pasid_init: None,
    pasid_alloc: None,
    pasid_free: None,
};

/// A vendor driver whose hooks follow the scripts above.
static OPS_VENDOR: iommu_ops = iommu_ops {
    pasid_init: Some(vendor_init),
    pasid_alloc: Some(vendor_alloc),
    pasid_free: Some(vendor_free),
};

const EAGAIN: c_int = 11;
const EBUSY: c_int = 16;
const EIO: c_int = 5;
const PASID_MIN: ioasid_t = 1;
const PASID_MAX: ioasid_t = 0xFFFFF;

// ---------------------------------------------------------------------------
// A scenario.

/// The C objects of one scenario.
struct World {
    /// The set structs; the library keeps pointers into them, so they must
    /// not move: the vector is made once at its final length.
    sets: Vec<MaybeUninit<ioasid_set>>,
    space: *mut ioasid_space,
    space_destroyed: bool,
    read_depth: usize,
    /// RFC consumers (null: none in that slot).
    pasids: [*mut iommu_pasid; PASIDS],
    /// The address an exited consumer had, for the `pasid_free` calls its
    /// exit made.
    freed_pasids: BTreeMap<usize, usize>,
}

impl World {
    fn set(&mut self, slot: usize) -> *mut ioasid_set {
        self.sets[slot].as_mut_ptr()
    }
}

struct Model {
    global: SpaceModel,
    ext: SpaceModel,
    slots: [SlotState; SLOTS],
    /// The anonymous set of the global space (`ioasid_alloc(NULL, ...)`).
    anonymous: SetKey,
    next_data: u64,
    /// RFC consumers, while they live: their range, whether their driver
    /// has vendor hooks, and their set in the global model.
    pasids: [Option<(ioasid_t, ioasid_t, bool, SetKey)>; PASIDS],
    /// Global IDs a vendor `pasid_alloc` chose, with their consumer:
    /// releasing one, by any path, calls the consumer's `pasid_free`.
    vendor_ids: BTreeMap<ioasid_t, usize>,
    /// `pasid_free` calls the model expects, in order, since the last check.
    expected_vendor_frees: Vec<(usize, ioasid_t)>,
}

impl Model {
    fn space(&self, w: Where) -> &SpaceModel {
        match w {
            Where::Global => &self.global,
            Where::Ext => &self.ext,
        }
    }

    fn space_mut(&mut self, w: Where) -> &mut SpaceModel {
        match w {
            Where::Global => &mut self.global,
            Where::Ext => &mut self.ext,
        }
    }

    /// Where a slot's lookups go (a declared set looks in the global
    /// space) and its model set ([`SetKey::NOBODY`] while declared).
    fn home(&self, slot: usize) -> (Where, SetKey) {
        match self.slots[slot] {
            SlotState::Declared => (Where::Global, SetKey::NOBODY),
            SlotState::Installed { space, key } => (space, key),
        }
    }

    fn data(&mut self) -> u64 {
        // Data pointers are opaque to the library: small tagged numbers,
        // NULL now and then.
        self.next_data += 1;
        if self.next_data % 7 == 0 {
            0
        } else {
            self.next_data << 4
        }
    }

    /// Turns the IDs the models released since the last call into the
    /// `pasid_free` calls they imply.
    fn collect_released(&mut self) {
        let _ = self.ext.take_released();
        for id in self.global.take_released() {
            if let Some(k) = self.vendor_ids.remove(&id) {
                self.expected_vendor_frees.push((k, id));
            }
        }
    }
}

thread_local! {
    static OUTCOMES: RefCell<BTreeMap<String, u64>> = const { RefCell::new(BTreeMap::new()) };
}

/// Counts an outcome the model predicted (`outcomes` reports them), so a
/// run can show which paths its inputs reached.
fn note(what: &str, model_answer: impl std::fmt::Debug) {
    OUTCOMES.with(|o| {
        *o.borrow_mut()
            .entry(format!("{what} -> {model_answer:?}"))
            .or_default() += 1
    });
}

/// How often each predicted outcome was checked on this thread so far.
pub fn outcomes() -> BTreeMap<String, u64> {
    OUTCOMES.with(|o| o.borrow().clone())
}

/// Checks one answer; the message names the step and the call.
macro_rules! expect_eq {
    ($step:expr, $call:expr, $real:expr, $model:expr) => {{
        let (real, model) = ($real, $model);
        assert!(
            real == model,
            "step {}: {}: library {:?}, model {:?}",
            $step,
            $call,
            real,
            model
        );
    }};
}

/// Runs one scenario from `input`. Panics on any disagreement.
pub fn run_one(input: &[u8]) {
    let mut bytes = Bytes(input);

    // The extension space: a small range somewhere in the ID type.
    let policy = u32::from(bytes.u8() % 3);
    let base = match bytes.u8() % 4 {
        0 => 0,
        1 => 1,
        2 => MAX_ID - 300,
        _ => bytes.u32() % (MAX_ID - 300),
    };
    let span = 1 + u32::from(bytes.u8()) % 200;
    let (min, max) = (base, base + span - 1);
    let space = ioasid_space_create(min, max, policy);
    assert!(
        !space.is_null(),
        "ioasid_space_create({min}, {max}, {policy})"
    );

    // Bad creations: NULL, nothing made.
    assert!(ioasid_space_create(5, 4, 0).is_null());
    assert!(ioasid_space_create(0, INVALID, 0).is_null());
    assert!(ioasid_space_create(0, 9, 3 + u32::from(bytes.u8())).is_null());

    let mut world = World {
        // All zero: the documented `DECLARE_IOASID_SET` state, which the
        // library accepts through a pointer without any init call.
        sets: (0..SLOTS).map(|_| MaybeUninit::zeroed()).collect(),
        space,
        space_destroyed: false,
        read_depth: 0,
        pasids: [ptr::null_mut(); PASIDS],
        freed_pasids: BTreeMap::new(),
    };
    let model_policy = ioasid_model::Policy::from_raw(policy).expect("a policy the model knows");
    let mut global = SpaceModel::new(0, MAX_ID, ioasid_model::Policy::Lowest);
    let anonymous = global.new_set(None);
    let mut model = Model {
        global,
        ext: SpaceModel::new(min, max, model_policy),
        slots: [SlotState::Declared; SLOTS],
        anonymous,
        next_data: 0,
        pasids: [None; PASIDS],
        vendor_ids: BTreeMap::new(),
        expected_vendor_frees: Vec::new(),
    };

    let mut step = 0usize;
    while !bytes.is_empty() && step < 400 {
        step += 1;
        let op = bytes.u8();
        let slot = (bytes.u8() as usize) % SLOTS;
        // SAFETY: every call below gets a pointer to one of this scenario's
        // zero-initialised (or library-initialised) set structs, NULL, or a
        // space handle (the library checks handles against live ones).
        unsafe { run_op(&mut bytes, &mut world, &mut model, step, op, slot) };
        model.collect_released();
        check_vendor_frees(&world, &mut model, step, "after the step");
    }

    // Tear down: leave no read section, consumer, set or global ID behind.
    for _ in 0..world.read_depth {
        ioasid_read_unlock();
    }
    world.read_depth = 0;
    for k in 0..PASIDS {
        // SAFETY: this scenario's consumers.
        unsafe { exit_pasid(&mut world, &mut model, k) };
    }
    for slot in 0..SLOTS {
        // SAFETY: one of our set structs.
        unsafe { destroy_slot(&mut world, &mut model, slot) };
    }
    // What is left in the global space: anonymous IDs, and referenced IDs
    // whose sets were torn down (FREE_PENDING): free what is not pending,
    // then put every reference left; the last put releases.
    let left: Vec<ioasid_t> = model.global.live().keys().copied().collect();
    for id in left {
        if !model.global.is_pending(id) {
            let owner = model.global.live()[&id].owner;
            assert_eq!(owner, Some(model.anonymous), "teardown: {id} still owned");
            ioasid_free(id);
            let _ = model.global.free(None, id);
        }
        while model.global.is_live(id) {
            let want = model.global.put(None, id) == Ok(true);
            expect_eq!(
                step + 1,
                format!("teardown ioasid_put({id})"),
                ioasid_put(id),
                want
            );
        }
    }
    model.collect_released();
    check_vendor_frees(&world, &mut model, step + 1, "teardown");
    // SAFETY: NULL is the global space.
    let global_left = unsafe { ioasid_space_live_count(ptr::null()) };
    assert_eq!(global_left, 0, "global IDs left after the scenario");
    if !world.space_destroyed {
        // Only referenced IDs of torn-down sets are left (FREE_PENDING,
        // no set to put them through); destroying the space drops them.
        // SAFETY: a live handle from ioasid_space_create.
        let left = unsafe { ioasid_space_live_count(world.space) };
        assert_eq!(
            left,
            model.ext.live_count() as c_long,
            "extension IDs left after every set was destroyed"
        );
        assert!(model
            .ext
            .live()
            .values()
            .all(|e| e.pending && e.owner.is_none()));
        // SAFETY: as above.
        unsafe { ioasid_space_destroy(world.space) };
    }
}

/// One operation.
///
/// # Safety
/// `world` holds this scenario's set structs and space handle.
unsafe fn run_op(
    bytes: &mut Bytes,
    world: &mut World,
    model: &mut Model,
    step: usize,
    op: u8,
    slot: usize,
) {
    let set = world.set(slot);
    match op % OPS {
        // ioasid_set_init(set, space | NULL | bogus, quota)
        0 => {
            let target = bytes.u8() % 4;
            let quota = c_uint::from(bytes.u8() % 5);
            let (space_arg, want_where) = match target {
                0 | 1 => (world.space, Some(Where::Ext)),
                2 => (ptr::null_mut(), Some(Where::Global)),
                // A pointer that is no space handle.
                _ => (0x1000 as *mut ioasid_space, None),
            };
            // SAFETY: forwarded (see the function's contract).
            let got = unsafe { ioasid_set_init(set, space_arg, quota) };
            let want = match (model.slots[slot], want_where) {
                (_, None) => -EINVAL,
                (_, Some(Where::Ext)) if world.space_destroyed => -EINVAL,
                (SlotState::Installed { .. }, Some(_)) => -EEXIST,
                (SlotState::Declared, Some(w)) => {
                    let quota = (quota > 0).then_some(quota as usize);
                    let key = model.space_mut(w).new_set(quota);
                    model.slots[slot] = SlotState::Installed { space: w, key };
                    0
                }
            };
            note("ioasid_set_init", want);
            expect_eq!(
                step,
                format!("ioasid_set_init(slot {slot}, {target}, {quota})"),
                got,
                want
            );
        }
        // ioasid_set_destroy(set)
        1 => {
            // SAFETY: forwarded.
            unsafe { destroy_slot(world, model, slot) };
        }
        // ioasid_alloc(set | NULL, min, max, data)
        2..=5 => {
            let anonymous = op % OPS == 5 && bytes.u8() % 2 == 0;
            if !anonymous && matches!(model.slots[slot], SlotState::Declared) {
                // First use installs a declared set in the global space.
                let key = model.global.new_set(None);
                model.slots[slot] = SlotState::Installed {
                    space: Where::Global,
                    key,
                };
            }
            let (home, key) = if anonymous {
                (Where::Global, model.anonymous)
            } else {
                model.home(slot)
            };
            let (smin, smax) = (model.space(home).min(), model.space(home).max());
            let (lo, hi) = (bytes.id_near(smin, smax), bytes.id_near(smin, smax));
            let (lo, hi) = if bytes.u8() % 8 == 0 {
                (lo, hi)
            } else {
                (lo.min(hi), lo.max(hi))
            };
            let data = model.data();
            let set_arg = if anonymous { ptr::null_mut() } else { set };
            // SAFETY: forwarded.
            let got = unsafe { ioasid_alloc(set_arg, lo, hi, data as *mut c_void) };
            let dead = !anonymous && home == Where::Ext && world.space_destroyed;
            // The C form folds EINVAL, EDQUOT and ENOSPC into INVALID_IOASID.
            let want = if dead {
                None
            } else {
                model.space(home).expect_alloc(key, lo, hi).ok()
            };
            note(
                "ioasid_alloc",
                match want {
                    None => "INVALID",
                    Some(_) => "id",
                },
            );
            let call = format!(
                "ioasid_alloc(slot {slot}{}, {lo}, {hi})",
                if anonymous { " as NULL" } else { "" }
            );
            match want {
                None => expect_eq!(step, call, got, INVALID),
                Some(Choice::Exactly(id)) => expect_eq!(step, call, got, id),
                Some(Choice::AnyFree(lo, hi)) => {
                    let ok = got != INVALID
                        && (lo..=hi).contains(&got)
                        && !model.space(home).is_live(got);
                    assert!(
                        ok,
                        "step {step}: {call}: library {got}, not a free ID in range"
                    );
                }
            }
            if got != INVALID {
                model.space_mut(home).record_alloc(key, got, data);
            }
        }
        // ioasid_set_free(set | NULL, id): the checked form
        6 | 7 => {
            let null = bytes.u8() % 16 == 0;
            let (home, key) = model.home(slot);
            let target = if bytes.u8() % 4 == 0 {
                model.global.min()
            } else {
                model.space(home).min()
            };
            let id = pick_id(bytes, model.space(home), target);
            // SAFETY: forwarded.
            let got = unsafe { ioasid_set_free(if null { ptr::null_mut() } else { set }, id) };
            // 0 also when the ID stays FREE_PENDING for its references.
            let want = if null {
                -EINVAL
            } else {
                model
                    .space_mut(home)
                    .free(Some(key), id)
                    .map_or_else(|e| -e, |_| 0)
            };
            note("ioasid_set_free", want);
            expect_eq!(
                step,
                format!("ioasid_set_free(slot {slot}, {id})"),
                got,
                want
            );
        }
        // ioasid_free(id): the kernel form, global space, silent
        8 => {
            let id = pick_id(bytes, &model.global, 0);
            ioasid_free(id);
            // Silent: a FREE_PENDING or unknown ID is a no-op.
            let _ = model.global.free(None, id);
        }
        // ioasid_find(set | NULL, id, getter)
        9 | 10 => {
            let null = bytes.u8() % 4 == 0;
            let (home, key) = if null {
                (Where::Global, None)
            } else {
                let (home, key) = model.home(slot);
                (home, Some(key))
            };
            let id = pick_id(bytes, model.space(home), model.space(home).min());
            let which = bytes.u8() % 3;
            let getter: Option<unsafe extern "C" fn(*mut c_void) -> bool> = match which {
                0 => None,
                1 => Some(getter_true),
                _ => Some(getter_false),
            };
            GETTER_SAW.with(|s| s.set(usize::MAX));
            // SAFETY: forwarded; the getters are callable with any pointer.
            let got = unsafe { ioasid_find(if null { ptr::null_mut() } else { set }, id, getter) };
            let want = match model.space(home).find(key, id) {
                Err(e) => err_ptr(e),
                Ok(data) => {
                    if which != 0 {
                        let saw = GETTER_SAW.with(Cell::get);
                        assert_eq!(saw as u64, data, "step {step}: getter got the wrong data");
                    }
                    if which == 2 {
                        ptr::null_mut()
                    } else {
                        data as *mut c_void
                    }
                }
            };
            note(
                "ioasid_find",
                match want as isize {
                    0 => "NULL",
                    e if (-4095..0).contains(&e) => ["ENOENT", "EACCES"][usize::from(e == -13)],
                    _ => "data",
                },
            );
            expect_eq!(
                step,
                format!("ioasid_find(slot {slot}, {id}, getter {which})"),
                got,
                want
            );
        }
        // ioasid_set_data(id, data): global space
        11 => {
            let id = pick_id(bytes, &model.global, 0);
            let data = model.data();
            let got = ioasid_set_data(id, data as *mut c_void);
            let want = if world.read_depth > 0 {
                -EDEADLK
            } else {
                model
                    .global
                    .set_data(None, id, data)
                    .map_or_else(|e| -e, |()| 0)
            };
            note("ioasid_set_data", want);
            expect_eq!(step, format!("ioasid_set_data({id})"), got, want);
        }
        // ioasid_set_for_each(set | NULL, func | NULL, arg)
        12 => {
            let stop = bytes.u8() as usize % 6;
            let bad = bytes.u8() % 16;
            WALK.with(|w| *w.borrow_mut() = (Vec::new(), stop));
            let func: Option<unsafe extern "C" fn(ioasid_t, *mut c_void, *mut c_void) -> c_int> =
                if bad == 1 { None } else { Some(walker) };
            let set_arg = if bad == 0 { ptr::null_mut() } else { set };
            // SAFETY: forwarded; `walker` is callable as declared.
            let got = unsafe { ioasid_set_for_each(set_arg, func, 0x1D as *mut c_void) };
            let seen = WALK.with(|w| std::mem::take(&mut w.borrow_mut().0));
            if bad <= 1 {
                note("ioasid_set_for_each", -EINVAL);
                expect_eq!(step, "ioasid_set_for_each(bad args)", got, -EINVAL);
                assert!(seen.is_empty());
            } else {
                let (home, key) = model.home(slot);
                let members = model.space(home).members(key);
                let (want_seen, want) = expected_walk(&members, stop);
                expect_eq!(
                    step,
                    format!("ioasid_set_for_each(slot {slot}) visits"),
                    seen.as_slice(),
                    want_seen
                );
                note("ioasid_set_for_each", want);
                expect_eq!(step, format!("ioasid_set_for_each(slot {slot})"), got, want);
            }
        }
        // ioasid_space_live_count(space | NULL | bogus)
        13 => {
            let which = bytes.u8() % 3;
            let (arg, want) = match which {
                0 => (ptr::null(), model.global.live_count() as c_long),
                1 if !world.space_destroyed => (
                    world.space as *const ioasid_space,
                    model.ext.live_count() as c_long,
                ),
                _ => (0x2000 as *const ioasid_space, -c_long::from(EINVAL)),
            };
            // SAFETY: any pointer is checked against the live handles.
            let got = unsafe { ioasid_space_live_count(arg) };
            expect_eq!(step, format!("ioasid_space_live_count({which})"), got, want);
        }
        // Read sections and synchronize.
        14 => match bytes.u8() % 4 {
            0 | 1 if world.read_depth < 3 => {
                ioasid_read_lock();
                world.read_depth += 1;
            }
            2 if world.read_depth > 0 => {
                ioasid_read_unlock();
                world.read_depth -= 1;
            }
            _ if world.read_depth == 0 => ioasid_synchronize(),
            _ => {}
        },
        // The 2018 RFC API.
        16 => {
            let k = slot % PASIDS;
            if world.pasids[k].is_null() {
                // SAFETY: forwarded.
                unsafe { init_pasid(bytes, world, model, step, k) };
            } else if world.read_depth == 0 && bytes.u8() % 4 == 0 {
                // SAFETY: forwarded.
                unsafe { exit_pasid(world, model, k) };
            }
        }
        // SAFETY (all three): forwarded.
        17 => unsafe { pasid_alloc(bytes, world, model, step, slot % PASIDS) },
        18 => unsafe { pasid_free_find(bytes, world, model, step, slot % PASIDS) },
        19 => unsafe { pasid_for_each(bytes, world, model, step, slot % PASIDS) },
        // Destroy the extension space (rarely), or a bogus handle.
        15 => {
            if bytes.u8() % 8 == 0 {
                // SAFETY: a live handle, or one the library has already
                // forgotten (checked against the live handles).
                unsafe { ioasid_space_destroy(world.space) };
                world.space_destroyed = true;
            } else {
                // SAFETY: checked against the live handles; ignored.
                unsafe { ioasid_space_destroy(0x3000 as *mut ioasid_space) };
            }
        }
        // ioasid_get(id) / ioasid_put(id), or their checked forms on
        // (set | NULL, id).
        20 | 21 => {
            let is_get = op % OPS == 20;
            let checked = bytes.u8() % 2 == 0;
            let null = bytes.u8() % 4 == 0;
            let (home, key) = if null || !checked {
                (Where::Global, None)
            } else {
                let (home, key) = model.home(slot);
                (home, Some(key))
            };
            let id = pick_id(bytes, model.space(home), model.space(home).min());
            let set_arg = if null { ptr::null_mut() } else { set };
            let space = model.space_mut(home);
            let (name, got, want) = match (is_get, checked) {
                // The kernel forms: the global space, any set; get is silent.
                (true, false) => {
                    ioasid_get(id);
                    let _ = space.get(None, id);
                    return;
                }
                (false, false) => {
                    let got = ioasid_put(id);
                    let want = space.put(None, id) == Ok(true);
                    ("ioasid_put", c_int::from(got), c_int::from(want))
                }
                // SAFETY (both): forwarded.
                (true, true) => (
                    "ioasid_get_checked",
                    unsafe { ioasid_get_checked(set_arg, id) },
                    space.get(key, id).map_or_else(|e| -e, |()| 0),
                ),
                (false, true) => (
                    "ioasid_put_checked",
                    unsafe { ioasid_put_checked(set_arg, id) },
                    space.put(key, id).map_or_else(|e| -e, c_int::from),
                ),
            };
            note(name, want);
            expect_eq!(
                step,
                format!("{name}(slot {slot} null {null}, {id})"),
                got,
                want
            );
        }
        _ => unreachable!(),
    }
}

/// An ID operand: usually a live ID of `space`, else one near `base`.
fn pick_id(bytes: &mut Bytes, space: &SpaceModel, base: ioasid_t) -> ioasid_t {
    let n = bytes.u8() as usize;
    match space.nth_live(n) {
        Some(id) if n % 4 != 0 => id,
        _ => bytes.id_near(base, base.saturating_add(255)),
    }
}

/// Destroys set `slot` in the library and the model.
///
/// # Safety
/// `world` holds this scenario's set structs.
unsafe fn destroy_slot(world: &mut World, model: &mut Model, slot: usize) {
    // SAFETY: one of our set structs.
    unsafe { ioasid_set_destroy(world.set(slot)) };
    // Unreferenced IDs go; referenced ones stay FREE_PENDING, detached.
    if let SlotState::Installed { space, key } = model.slots[slot] {
        model.space_mut(space).destroy_set(key);
    }
    model.slots[slot] = SlotState::Declared;
}

/// Compares the `pasid_free` calls made with those the model expects.
fn check_vendor_frees(world: &World, model: &mut Model, step: usize, when: &str) {
    let mut got = VENDOR_FREED.with(|f| std::mem::take(&mut *f.borrow_mut()));
    let mut want: Vec<(usize, ioasid_t)> = std::mem::take(&mut model.expected_vendor_frees)
        .into_iter()
        .map(|(k, id)| {
            (
                world
                    .freed_pasids
                    .get(&k)
                    .copied()
                    .unwrap_or(world.pasids[k] as usize),
                id,
            )
        })
        .collect();
    got.sort_unstable();
    want.sort_unstable();
    if !want.is_empty() {
        note("pasid_free calls", "some");
    }
    assert!(
        got == want,
        "step {step}: {when}: pasid_free calls {got:?}, model {want:?}"
    );
}

/// `iommu_pasid_init` with a NULL bus, a bus without ops, a plain driver or
/// a vendor driver whose `pasid_init` may fail or narrow the range.
///
/// # Safety
/// `world` holds this scenario's consumers.
unsafe fn init_pasid(
    bytes: &mut Bytes,
    world: &mut World,
    model: &mut Model,
    step: usize,
    k: usize,
) {
    let kind = bytes.u8() % 4;
    let rc = if bytes.u8() % 8 == 0 { -EBUSY } else { 0 };
    let range = match bytes.u8() % 4 {
        0 | 1 => None,
        2 => Some((
            bytes.id_near(PASID_MIN, PASID_MAX),
            bytes.id_near(PASID_MIN, PASID_MAX),
        )),
        _ => Some((bytes.u8().into(), INVALID)),
    };
    INIT_SCRIPT.with(|s| s.set((rc, range)));
    let mut bus = bus_type {
        name: ptr::null(),
        iommu_ops: match kind {
            1 => ptr::null(),
            2 => &OPS_PLAIN,
            _ => &OPS_VENDOR,
        },
    };
    let bus_arg: *mut bus_type = if kind == 0 { ptr::null_mut() } else { &mut bus };
    // SAFETY: NULL or a bus whose ops are statics.
    let pasid = unsafe { iommu_pasid_init(bus_arg) };
    let want = match kind {
        0 | 1 => None,
        2 => Some((PASID_MIN, PASID_MAX, false)),
        _ => {
            let (min, max) = range.unwrap_or((PASID_MIN, PASID_MAX));
            (rc == 0 && min <= max && max <= MAX_ID).then_some((min, max, true))
        }
    };
    let call = format!("iommu_pasid_init(kind {kind}, rc {rc}, {range:?})");
    assert_eq!(
        pasid.is_null(),
        want.is_none(),
        "step {step}: {call}: got {pasid:?}, model {want:?}"
    );
    if let Some((min, max, _)) = want {
        // SAFETY: a live consumer.
        let (got_min, got_max) = unsafe { ((*pasid).min, (*pasid).max) };
        expect_eq!(step, call, (got_min, got_max), (min, max));
    }
    note(
        "iommu_pasid_init",
        if want.is_some() { "consumer" } else { "NULL" },
    );
    world.pasids[k] = pasid;
    world.freed_pasids.remove(&k);
    model.pasids[k] = want.map(|(min, max, vendor)| (min, max, vendor, model.global.new_set(None)));
}

/// `iommu_pasid_exit`: frees the consumer's IDs (vendor ones through
/// `pasid_free`) and the consumer. Not inside a read section (it aborts).
///
/// # Safety
/// `world` holds this scenario's consumers.
unsafe fn exit_pasid(world: &mut World, model: &mut Model, k: usize) {
    let pasid = world.pasids[k];
    if pasid.is_null() {
        // NULL is a no-op.
        // SAFETY: NULL.
        unsafe { iommu_pasid_exit(pasid) };
        return;
    }
    // Its set's teardown: unreferenced IDs go, referenced ones stay
    // FREE_PENDING, detached.
    if let Some((_, _, _, key)) = model.pasids[k] {
        model.global.destroy_set(key);
    }
    model.collect_released();
    // Frees report the consumer's address, which is gone after the call.
    world.freed_pasids.insert(k, pasid as usize);
    // SAFETY: a live consumer, not used again.
    unsafe { iommu_pasid_exit(pasid) };
    world.pasids[k] = ptr::null_mut();
    model.pasids[k] = None;
}

/// `iommu_pasid_alloc`, with NULL arguments, bad ranges, and every answer
/// of a vendor `pasid_alloc` (EAGAIN, an ID in range, out of range, live,
/// an error of its own).
///
/// # Safety
/// `world` holds this scenario's consumers.
unsafe fn pasid_alloc(
    bytes: &mut Bytes,
    world: &mut World,
    model: &mut Model,
    step: usize,
    k: usize,
) {
    let Some((cmin, cmax, vendor, key)) = model.pasids[k] else {
        return;
    };
    let pasid = world.pasids[k];
    let bad = bytes.u8() % 16;
    let (lo, hi) = (
        bytes.id_near(cmin, cmax.min(cmin.saturating_add(300))),
        bytes.id_near(cmin, cmax.min(cmin.saturating_add(300))),
    );
    let (min, max) = if bytes.u8() % 8 == 0 {
        (lo, hi)
    } else {
        (lo.min(hi), lo.max(hi))
    };
    let (clo, chi) = (min.max(cmin), max.min(cmax));
    let script = match bytes.u8() % 6 {
        0 | 1 => Err(EAGAIN),
        2 => Ok(clo
            .wrapping_add(u32::from(bytes.u8()) % (chi.wrapping_sub(clo).wrapping_add(1)).max(1))),
        3 => Ok(chi.wrapping_add(1)),
        4 => Ok(pick_id(bytes, &model.global, clo)),
        _ => Err(EBUSY),
    };
    ALLOC_SCRIPT.with(|s| s.set(script));
    ALLOC_SAW.with(|s| s.set((0, 0, 0)));
    let data = model.data();
    let mut out: ioasid_t = 0xABCD;
    let pasid_arg = if bad == 0 { ptr::null_mut() } else { pasid };
    let out_arg: *mut ioasid_t = if bad == 1 { ptr::null_mut() } else { &mut out };
    // SAFETY: NULL or a live consumer; NULL or a writable ID.
    let rc = unsafe { iommu_pasid_alloc(pasid_arg, min, max, data as *mut c_void, out_arg) };
    let call = format!("iommu_pasid_alloc(pasid {k}, {min}, {max}, vendor {vendor} {script:?})");
    // The model's answer: Ok((id, by vendor)) or Err(errno).
    let want: Result<(Option<ioasid_t>, bool), c_int> = if bad <= 1 || min > max || clo > chi {
        Err(EINVAL)
    } else {
        let software = || match model.global.expect_alloc(key, clo, chi) {
            Ok(Choice::Exactly(id)) => Ok((Some(id), false)),
            Ok(Choice::AnyFree(..)) => Ok((None, false)),
            Err(e) => Err(e),
        };
        if vendor {
            let saw = ALLOC_SAW.with(Cell::get);
            expect_eq!(
                step,
                format!("{call}: pasid_alloc arguments"),
                saw,
                (pasid as usize, clo, chi)
            );
            match script {
                Err(EAGAIN) => software(),
                Err(e) => Err(e),
                Ok(id) if (clo..=chi).contains(&id) && !model.global.is_live(id) => {
                    Ok((Some(id), true))
                }
                Ok(_) => Err(EIO),
            }
        } else {
            software()
        }
    };
    match want {
        Err(e) => {
            note("iommu_pasid_alloc", -e);
            expect_eq!(step, call, rc, -e);
            expect_eq!(step, format!("{call}: *ioasid"), out, 0xABCD);
        }
        Ok((id, by_vendor)) => {
            note(
                "iommu_pasid_alloc",
                if by_vendor { "vendor ID" } else { "library ID" },
            );
            expect_eq!(step, call, rc, 0);
            if let Some(id) = id {
                expect_eq!(step, format!("{call}: *ioasid"), out, id);
            }
            model.global.record_alloc(key, out, data);
            if by_vendor {
                model.vendor_ids.insert(out, k);
            }
        }
    }
}

/// `iommu_pasid_free` and `iommu_pasid_find`, NULL consumer included.
///
/// # Safety
/// `world` holds this scenario's consumers.
unsafe fn pasid_free_find(
    bytes: &mut Bytes,
    world: &mut World,
    model: &mut Model,
    step: usize,
    k: usize,
) {
    let null = bytes.u8() % 16 == 0;
    if world.pasids[k].is_null() && !null {
        return;
    }
    let pasid = if null {
        ptr::null_mut()
    } else {
        world.pasids[k]
    };
    let id = pick_id(bytes, &model.global, PASID_MIN);
    // A NULL consumer owns nothing.
    let key = match model.pasids[k] {
        Some((_, _, _, key)) if !null => key,
        _ => SetKey::NOBODY,
    };
    if bytes.u8() % 2 == 0 {
        // SAFETY: NULL or a live consumer.
        let got = unsafe { iommu_pasid_find(pasid, id) };
        let want = match model.global.find(Some(key), id) {
            Ok(data) => data as *mut c_void,
            Err(_) => ptr::null_mut(),
        };
        expect_eq!(
            step,
            format!("iommu_pasid_find(pasid {k}, {id})"),
            got,
            want
        );
    } else {
        // SAFETY: NULL or a live consumer.
        unsafe { iommu_pasid_free(pasid, id) };
        // Another consumer's, unknown or FREE_PENDING: nothing happens.
        let _ = model.global.free(Some(key), id);
        let live = model.global.is_live(id);
        // SAFETY: any ID; NULL getter.
        let found = unsafe { ioasid_find(ptr::null_mut(), id, None) };
        expect_eq!(
            step,
            format!("iommu_pasid_free(pasid {k}, {id}) then ioasid_find"),
            found != err_ptr(ENOENT),
            live
        );
    }
}

/// `iommu_pasid_for_each`, NULL consumer and callback included.
///
/// # Safety
/// `world` holds this scenario's consumers.
unsafe fn pasid_for_each(
    bytes: &mut Bytes,
    world: &mut World,
    model: &mut Model,
    step: usize,
    k: usize,
) {
    let bad = bytes.u8() % 16;
    let stop = bytes.u8() as usize % 6;
    if world.pasids[k].is_null() && bad > 1 {
        return;
    }
    WALK.with(|w| *w.borrow_mut() = (Vec::new(), stop));
    let func: Option<unsafe extern "C" fn(ioasid_t, *mut c_void, *mut c_void) -> c_int> =
        if bad == 1 { None } else { Some(walker) };
    let pasid = if bad == 0 {
        ptr::null_mut()
    } else {
        world.pasids[k]
    };
    // SAFETY: NULL or a live consumer; `walker` is callable as declared.
    let got = unsafe { iommu_pasid_for_each(pasid, func, 0x1D as *mut c_void) };
    let seen = WALK.with(|w| std::mem::take(&mut w.borrow_mut().0));
    if bad <= 1 {
        note("iommu_pasid_for_each", -EINVAL);
        expect_eq!(step, "iommu_pasid_for_each(bad args)", got, -EINVAL);
        assert!(seen.is_empty());
        return;
    }
    let key = model.pasids[k].map_or(SetKey::NOBODY, |p| p.3);
    let members = model.global.members(key);
    let (want_seen, want) = expected_walk(&members, stop);
    expect_eq!(
        step,
        format!("iommu_pasid_for_each(pasid {k}) visits"),
        seen.as_slice(),
        want_seen
    );
    note("iommu_pasid_for_each", want);
    expect_eq!(step, format!("iommu_pasid_for_each(pasid {k})"), got, want);
}
