//! Soak test: many threads beat on shared spaces and sets for a while and
//! every step is checked for lost, duplicated or foreign IDs and data.
//!
//! ```text
//! cargo run --release --example soak -- --secs 60 --threads 16
//! cargo run --release --example soak -- --help
//! ```
//!
//! Three spaces (one per policy, each in its own reclamation domain) hold
//! three shared sets each, one of them with a quota. `--threads` threads
//! (default 16, oversubscribed on purpose) pick random operations: alloc,
//! free, find (own and random IDs, through the owning set, another set and
//! the space), set_data, foreign free attempts, and for_each walks.
//!
//! Checked at every step:
//! - no ID is held twice: a per-ID ownership table, claimed by CAS after
//!   each alloc and released before each free;
//! - find never returns data of a freed or foreign ID: data carries its ID,
//!   its set's tag, a unique serial and a canary that its drop poisons;
//!   an owned ID finds exactly the serial its owner last stored;
//! - a quota set never holds more than its quota; errors are only the legal
//!   ones (ENOSPC anywhere, EDQUOT only for the quota set);
//! - for_each walks ascending, sees only its set's IDs, and sees every ID
//!   the walking thread holds in that set.
//!
//! At the end: every ID is accounted for (each space's live count equals
//! the IDs the threads hold, each found with its owner's serial; once they
//! are freed, each space refills whole, so no number leaked), and once
//! sets, spaces and domains are dropped, every data value ever made was
//! dropped exactly once (count, sum and hash of serials match).
//!
//! Prints progress every 5 seconds and a summary; exits with status 1 and a
//! loud message on any violation.

mod common;

use common::{grouped, grouped_f64, Summary};
use ioasid::{Domain, Error, Ioasid, Payload, Policy, Set, Space};
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Violations.

static VIOLATIONS: AtomicU64 = AtomicU64::new(0);

/// Records a violation; the first few are printed in full.
fn violation(message: String) {
    // Relaxed: a counter read after every thread was joined.
    let n = VIOLATIONS.fetch_add(1, Ordering::Relaxed);
    if n < 20 {
        eprintln!("VIOLATION: {message}");
    }
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            violation(format!($($fmt)+));
        }
    };
}

// ---------------------------------------------------------------------------
// Tagged data and its drop accounting.

const PENDING: Ioasid = u32::MAX;
const CANARY: u64 = 0xC0FF_EE00_D15E_A5E5;
const POISON: u64 = 0xDEAD_DEAD_DEAD_DEAD;

/// Made / dropped: counts, and wrapping sums of a hash of each serial, so a
/// value dropped twice and another never cannot cancel out.
static MADE: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static MADE_HASH: AtomicU64 = AtomicU64::new(0);
static DROPPED_HASH: AtomicU64 = AtomicU64::new(0);

fn mix(serial: u64) -> u64 {
    let x = serial.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 29)
}

/// One data value: the ID it belongs to (stamped by the owner right after
/// alloc returns, `PENDING` until then), its set's tag, a unique serial, and
/// a heap canary that drop checks and poisons.
///
/// A `Tag` is a box. Half of the values (by serial) give the space their box
/// address as a 48-bit inline payload, the other half ask to be boxed again,
/// so both entry kinds of the core are soaked side by side.
struct Tag(Box<TagBody>);

struct TagBody {
    id: AtomicU32,
    set: u32,
    serial: u64,
    canary: Box<u64>,
}

impl std::ops::Deref for Tag {
    type Target = TagBody;
    fn deref(&self) -> &TagBody {
        &self.0
    }
}

// SAFETY: `into_inline` is `Ok` only with the inner box's own inline
// encoding, and `from_inline` rebuilds that box; all mutable state is behind
// the box (an atomic), so a view made by `from_inline` is a shared view.
unsafe impl Payload for Tag {
    fn into_inline(self) -> Result<u64, Self> {
        if self.serial.is_multiple_of(2) {
            self.0.into_inline().map_err(Tag)
        } else {
            Err(self)
        }
    }

    unsafe fn from_inline(bits: u64) -> Self {
        // SAFETY: `bits` came from `Box::into_inline` of a Tag's box.
        Tag(unsafe { Box::from_inline(bits) })
    }

    unsafe fn write_view(bits: u64, out: *mut Self) {
        // SAFETY: `Tag` is a one-field tuple struct around its box; the view
        // is the box's own view, written in place.
        unsafe { Box::write_view(bits, std::ptr::addr_of_mut!((*out).0)) }
    }
}

impl Tag {
    fn new(set: u32, serial: u64) -> Tag {
        // Relaxed: the counters are read after every thread was joined.
        MADE.fetch_add(1, Ordering::Relaxed);
        MADE_HASH.fetch_add(mix(serial), Ordering::Relaxed);
        Tag(Box::new(TagBody {
            id: AtomicU32::new(PENDING),
            set,
            serial,
            canary: Box::new(CANARY ^ serial),
        }))
    }

    /// Checks a value found for `id`: intact, and of that ID.
    fn check_found(&self, id: Ioasid, how: &str) {
        ensure!(
            *self.canary == CANARY ^ self.serial,
            "{how}({id}): data #{} is dropped or corrupt (canary {:#x})",
            self.serial,
            *self.canary
        );
        // Acquire: pairs with the owner's Release stamp.
        let stamped = self.id.load(Ordering::Acquire);
        ensure!(
            stamped == id || stamped == PENDING,
            "{how}({id}): returned the data of ID {stamped} (#{})",
            self.serial
        );
    }
}

impl Drop for TagBody {
    fn drop(&mut self) {
        ensure!(
            *self.canary == CANARY ^ self.serial,
            "data #{} dropped twice or corrupt (canary {:#x})",
            self.serial,
            *self.canary
        );
        *self.canary = POISON;
        // Relaxed: read after every thread was joined.
        DROPPED.fetch_add(1, Ordering::Relaxed);
        DROPPED_HASH.fetch_add(mix(self.serial), Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------
// The world the threads share.

struct SharedSet {
    set: Set<Tag>,
    tag: u32,
    quota: Option<usize>,
    /// IDs the threads hold in this set (incremented after alloc, decremented
    /// before free, so never above the set's true live count).
    held: AtomicUsize,
}

struct SharedSpace {
    space: Space<Tag>,
    sets: Vec<SharedSet>,
    /// Per ID: 0 = not held, else the holder's token (thread + 1).
    owners: Vec<AtomicU32>,
}

impl SharedSpace {
    fn new(min: Ioasid, max: Ioasid, policy: Policy, first_tag: u32) -> SharedSpace {
        let space = Space::builder()
            .range(min, max)
            .policy(policy)
            .domain(Domain::new())
            .build()
            .expect("valid space");
        let quotas = [None, None, Some(48)];
        let sets = quotas
            .iter()
            .enumerate()
            .map(|(n, &quota)| SharedSet {
                set: match quota {
                    Some(q) => space.new_set_with_quota(q),
                    None => space.new_set(),
                },
                tag: first_tag + n as u32,
                quota,
                held: AtomicUsize::new(0),
            })
            .collect();
        let owners = (min..=max).map(|_| AtomicU32::new(0)).collect();
        SharedSpace {
            space,
            sets,
            owners,
        }
    }

    fn owner(&self, id: Ioasid) -> &AtomicU32 {
        &self.owners[(id - self.space.min()) as usize]
    }
}

/// An ID a thread holds.
#[derive(Clone, Copy)]
struct Held {
    space: usize,
    set: usize,
    id: Ioasid,
    serial: u64,
}

// ---------------------------------------------------------------------------
// Per-thread work.

#[derive(Default, Clone, Copy)]
struct Counts {
    alloc: u64,
    enospc: u64,
    edquot: u64,
    free: u64,
    find: u64,
    find_hit: u64,
    set_data: u64,
    foreign: u64,
    for_each: u64,
}

impl Counts {
    fn total(&self) -> u64 {
        self.alloc
            + self.enospc
            + self.edquot
            + self.free
            + self.find
            + self.set_data
            + self.foreign
            + self.for_each
    }

    fn add(&mut self, o: &Counts) {
        self.alloc += o.alloc;
        self.enospc += o.enospc;
        self.edquot += o.edquot;
        self.free += o.free;
        self.find += o.find;
        self.find_hit += o.find_hit;
        self.set_data += o.set_data;
        self.foreign += o.foreign;
        self.for_each += o.for_each;
    }
}

/// Most IDs one thread holds at a time.
const MAX_HELD: usize = 64;

struct Worker<'w> {
    world: &'w [SharedSpace],
    token: u32,
    rng: fastrand::Rng,
    next_serial: u64,
    held: Vec<Held>,
    counts: Counts,
}

impl Worker<'_> {
    fn serial(&mut self) -> u64 {
        self.next_serial += 1;
        (u64::from(self.token) << 40) | self.next_serial
    }

    fn step(&mut self) {
        match self.rng.usize(..100) {
            0..=29 => self.alloc(),
            30..=54 => self.free(),
            55..=74 => self.find_random(),
            75..=84 => self.find_own(),
            85..=92 => self.set_data(),
            93..=97 => self.foreign(),
            _ => self.for_each(),
        }
    }

    fn alloc(&mut self) {
        if self.held.len() >= MAX_HELD {
            return self.free();
        }
        let space = self.rng.usize(..self.world.len());
        let set = self.rng.usize(..self.world[space].sets.len());
        let shared = &self.world[space];
        let s = &shared.sets[set];
        let serial = self.serial();
        let (min, max) = (shared.space.min(), shared.space.max());
        // Mostly the whole space, sometimes a window of it.
        let (lo, hi) = if self.rng.usize(..4) == 0 {
            let lo = min + self.rng.usize(..(max - min) as usize + 1) as Ioasid;
            (lo, lo.saturating_add(16).min(max))
        } else {
            (min, max)
        };
        match s.set.alloc(lo, hi, Tag::new(s.tag, serial)) {
            Ok(id) => {
                self.counts.alloc += 1;
                ensure!((lo..=hi).contains(&id), "alloc({lo}, {hi}) gave {id}");
                // Relaxed: the CAS itself is the check; nothing is published.
                let previous = shared.owner(id).compare_exchange(
                    0,
                    self.token,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                ensure!(
                    previous.is_ok(),
                    "ID {id} handed out while held by thread {:?}",
                    previous.err()
                );
                // Relaxed: a count checked against the quota only.
                let held = s.held.fetch_add(1, Ordering::Relaxed) + 1;
                ensure!(
                    s.quota.is_none_or(|q| held <= q),
                    "set {} holds {held} > quota",
                    s.tag
                );
                let stamped = s.set.with(id, |data| {
                    data.check_found(id, "stamp");
                    ensure!(
                        data.serial == serial,
                        "fresh ID {id} has data #{} not #{serial}",
                        data.serial
                    );
                    // Release: readers that see the stamp see a complete tag.
                    data.id.store(id, Ordering::Release);
                });
                ensure!(stamped.is_ok(), "fresh ID {id} not found: {stamped:?}");
                self.held.push(Held {
                    space,
                    set,
                    id,
                    serial,
                });
            }
            Err(Error::NoSpace) => self.counts.enospc += 1,
            Err(Error::QuotaExceeded) if s.quota.is_some() => self.counts.edquot += 1,
            Err(e) => violation(format!("alloc({lo}, {hi}) in set {}: {e}", s.tag)),
        }
    }

    fn free(&mut self) {
        if self.held.is_empty() {
            return self.alloc();
        }
        let held = self.held.swap_remove(self.rng.usize(..self.held.len()));
        let shared = &self.world[held.space];
        let s = &shared.sets[held.set];
        // Release the table entry before the ID can be reused.
        // Relaxed: as in alloc.
        let owner = shared.owner(held.id).swap(0, Ordering::Relaxed);
        ensure!(
            owner == self.token,
            "ID {} held by {owner}, not by us ({})",
            held.id,
            self.token
        );
        // Relaxed: as in alloc.
        s.held.fetch_sub(1, Ordering::Relaxed);
        let result = s.set.free(held.id);
        ensure!(result.is_ok(), "free of held ID {}: {result:?}", held.id);
        self.counts.free += 1;
        // The freed value is never found again (another thread may hold the
        // number by now, with its own data).
        if let Ok(serial) = s.set.with(held.id, |d| {
            d.check_found(held.id, "find after free");
            d.serial
        }) {
            ensure!(
                serial != held.serial,
                "freed data #{serial} of ID {} found",
                held.id
            );
        }
    }

    fn find_random(&mut self) {
        let space = self.rng.usize(..self.world.len());
        let shared = &self.world[space];
        let (min, max) = (shared.space.min(), shared.space.max());
        let id = min.saturating_sub(2) + self.rng.usize(..(max - min) as usize + 5) as Ioasid;
        let set = self.rng.usize(..shared.sets.len());
        let s = &shared.sets[set];
        self.counts.find += 1;
        let guard = shared.space.pin();
        match s.set.find(id, &guard) {
            Ok(data) => {
                self.counts.find_hit += 1;
                data.check_found(id, "set.find");
                ensure!(
                    data.set == s.tag,
                    "set {} found ID {id} of set {}",
                    s.tag,
                    data.set
                );
            }
            Err(Error::NotFound | Error::PermissionDenied) => {}
            Err(e) => violation(format!("set.find({id}): {e}")),
        }
        if let Some(data) = shared.space.find(id, &guard) {
            data.check_found(id, "space.find");
            let first = self.world[space].sets[0].tag;
            ensure!(
                (first..first + 3).contains(&data.set),
                "ID {id} has data of another space's set {}",
                data.set
            );
        }
    }

    fn find_own(&mut self) {
        let Some(&held) = self.held.get(self.rng.usize(..self.held.len().max(1))) else {
            return self.find_random();
        };
        let shared = &self.world[held.space];
        self.counts.find += 1;
        let guard = shared.space.pin();
        for (n, s) in shared.sets.iter().enumerate() {
            match s.set.find(held.id, &guard) {
                Ok(data) if n == held.set => {
                    self.counts.find_hit += 1;
                    data.check_found(held.id, "find own");
                    ensure!(
                        data.serial == held.serial,
                        "own ID {} has data #{} not #{}",
                        held.id,
                        data.serial,
                        held.serial
                    );
                }
                Err(Error::PermissionDenied) if n != held.set => {}
                other => violation(format!(
                    "find of ID {} (set {}) through set {}: {:?}",
                    held.id,
                    shared.sets[held.set].tag,
                    s.tag,
                    other.map(|d| d.serial)
                )),
            }
        }
        match shared.space.find(held.id, &guard) {
            Some(data) => ensure!(
                data.serial == held.serial,
                "space.find of own ID {}: #{}",
                held.id,
                data.serial
            ),
            None => violation(format!("space.find of own ID {}: not found", held.id)),
        }
    }

    fn set_data(&mut self) {
        if self.held.is_empty() {
            return self.alloc();
        }
        let index = self.rng.usize(..self.held.len());
        let held = self.held[index];
        let s = &self.world[held.space].sets[held.set];
        let serial = self.serial();
        let tag = Tag::new(s.tag, serial);
        // Relaxed: published by the set_data's own Release.
        tag.id.store(held.id, Ordering::Relaxed);
        let result = s.set.set_data(held.id, tag);
        ensure!(
            result.is_ok(),
            "set_data of held ID {}: {result:?}",
            held.id
        );
        self.held[index].serial = serial;
        self.counts.set_data += 1;
    }

    /// Frees and set_data of an ID we hold, through another set: EACCES,
    /// nothing changed.
    fn foreign(&mut self) {
        let Some(&held) = self.held.get(self.rng.usize(..self.held.len().max(1))) else {
            return self.alloc();
        };
        let shared = &self.world[held.space];
        let other = (held.set + 1 + self.rng.usize(..shared.sets.len() - 1)) % shared.sets.len();
        let s = &shared.sets[other];
        self.counts.foreign += 1;
        ensure!(
            s.set.free(held.id) == Err(Error::PermissionDenied),
            "foreign free of ID {}",
            held.id
        );
        let tag = Tag::new(s.tag, self.serial());
        ensure!(
            s.set.set_data(held.id, tag) == Err(Error::PermissionDenied),
            "foreign set_data of ID {}",
            held.id
        );
        let serial = shared.sets[held.set].set.with(held.id, |d| d.serial);
        ensure!(
            serial == Ok(held.serial),
            "ID {} changed by a foreign set: {serial:?}",
            held.id
        );
    }

    fn for_each(&mut self) {
        let space = self.rng.usize(..self.world.len());
        let set = self.rng.usize(..self.world[space].sets.len());
        let s = &self.world[space].sets[set];
        let mut mine: Vec<Ioasid> = self
            .held
            .iter()
            .filter(|h| h.space == space && h.set == set)
            .map(|h| h.id)
            .collect();
        mine.sort_unstable();
        let stop_after = if self.rng.usize(..2) == 0 {
            Some(1 + self.rng.usize(..8))
        } else {
            None
        };
        let mut last = None;
        let mut seen_mine = 0;
        let mut visited = 0;
        self.counts.for_each += 1;
        let flow = s.set.for_each(|id, data| {
            ensure!(
                last.is_none_or(|l| l < id),
                "for_each not ascending: {last:?} then {id}"
            );
            last = Some(id);
            data.check_found(id, "for_each");
            ensure!(
                data.set == s.tag,
                "for_each of set {} visited set {}'s ID {id}",
                s.tag,
                data.set
            );
            if mine.binary_search(&id).is_ok() {
                seen_mine += 1;
            }
            visited += 1;
            if stop_after == Some(visited) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        if flow.is_continue() {
            ensure!(
                seen_mine == mine.len(),
                "for_each of set {} missed {} held IDs",
                s.tag,
                mine.len() - seen_mine
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Main.

const USAGE: &str = "\
usage: soak [--secs N] [--threads T]

Many threads beat on 3 shared spaces (Lowest, Cyclic, Any) x 3 sets and
check every step for lost, duplicated or foreign IDs and data; then every
ID and data value is accounted for. Exits 1 on any violation.

  --secs N       run time in seconds (default 60)
  --threads T    worker threads, at least 1 (default 16)
  -h, --help     this text";

/// What the command line asks for; `None` after printing the help.
fn parse_args() -> Result<Option<(u64, usize)>, lexopt::Error> {
    use lexopt::prelude::*;
    let (mut secs, mut threads) = (60, 16);
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("secs") => secs = parser.value()?.parse()?,
            Long("threads") => threads = parser.value()?.parse()?,
            Short('h') | Long("help") => return Ok(None),
            _ => return Err(arg.unexpected()),
        }
    }
    if threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    Ok(Some((secs, threads)))
}

fn main() -> ExitCode {
    let (secs, threads) = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("soak: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    println!("soak: {threads} threads for {secs} s on 3 spaces (Lowest, Cyclic, Any) x 3 sets");
    let world = vec![
        SharedSpace::new(1, 0xFFFFF, Policy::Lowest, 0),
        SharedSpace::new(0, 1023, Policy::Cyclic, 3),
        SharedSpace::new(100, 355, Policy::Any, 6),
    ];
    let stop = AtomicBool::new(false);
    let ops = AtomicU64::new(0);
    let start = Barrier::new(threads + 1);

    let (counts, held, elapsed) = thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|n| {
                let (world, stop, ops, start) = (&world, &stop, &ops, &start);
                scope.spawn(move || {
                    let mut worker = Worker {
                        world,
                        token: n as u32 + 1,
                        rng: fastrand::Rng::with_seed(
                            0x2545_F491_4F6C_DD1D
                                ^ (n as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                        ),
                        next_serial: 0,
                        held: Vec::new(),
                        counts: Counts::default(),
                    };
                    start.wait();
                    // Relaxed: a stop request; results travel through join.
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..256 {
                            worker.step();
                        }
                        // Relaxed: a progress counter.
                        ops.fetch_add(256, Ordering::Relaxed);
                    }
                    (worker.counts, worker.held)
                })
            })
            .collect();

        start.wait();
        let began = Instant::now();
        let mut next_report = 5;
        while began.elapsed() < Duration::from_secs(secs) {
            thread::sleep(Duration::from_millis(100));
            let elapsed = began.elapsed().as_secs();
            if elapsed >= next_report {
                // Relaxed: progress figures.
                let done = ops.load(Ordering::Relaxed);
                let live: usize = world.iter().map(|w| w.space.live_count()).sum();

                println!(
                    "  {elapsed:>4} s: {:>15} ops ({:>11} ops/s), {:>7} live IDs, {} violations",
                    grouped(done),
                    grouped_f64(done as f64 / began.elapsed().as_secs_f64()),
                    grouped(live as u64),
                    VIOLATIONS.load(Ordering::Relaxed)
                );
                next_report += 5;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let elapsed = began.elapsed();

        let mut counts = Counts::default();
        let mut held = Vec::new();
        for worker in workers {
            match worker.join() {
                Ok((c, h)) => {
                    counts.add(&c);
                    held.extend(h);
                }
                Err(_) => violation("a worker thread panicked".into()),
            }
        }
        (counts, held, elapsed)
    });

    // Every ID accounted for.
    for (n, shared) in world.iter().enumerate() {
        let mine: Vec<&Held> = held.iter().filter(|h| h.space == n).collect();
        ensure!(
            shared.space.live_count() == mine.len(),
            "space {n}: {} live IDs, threads hold {}",
            shared.space.live_count(),
            mine.len()
        );
        for h in mine {
            let serial = shared.sets[h.set].set.with(h.id, |d| d.serial);
            ensure!(
                serial == Ok(h.serial),
                "held ID {} at the end: {serial:?}",
                h.id
            );
        }
        let table = shared
            .owners
            .iter()
            .filter(|o| o.load(Ordering::Relaxed) != 0)
            .count();
        ensure!(
            table == shared.space.live_count(),
            "space {n}: ownership table holds {table}"
        );
    }
    let live: usize = world.iter().map(|w| w.space.live_count()).sum();

    // No number leaked: with every held ID freed, each space refills whole.
    for h in &held {
        let result = world[h.space].sets[h.set].set.free(h.id);
        ensure!(result.is_ok(), "final free of ID {}: {result:?}", h.id);
    }
    for (n, shared) in world.iter().enumerate() {
        ensure!(
            shared.space.live_count() == 0,
            "space {n}: IDs live after the final frees"
        );
        let (min, max) = (shared.space.min(), shared.space.max());
        let refill = shared.space.new_set();
        let mut got = 0u64;
        while refill
            .alloc(min, max, Tag::new(u32::MAX, u64::MAX - got))
            .is_ok()
        {
            got += 1;
        }
        let span = u64::from(max - min) + 1;
        ensure!(
            got == span,
            "space {n}: refilled {got} of {span} IDs: numbers leaked"
        );
    }

    // Drop sets, spaces and their domains: every value dropped exactly once.
    drop(world);
    let made = MADE.load(Ordering::Relaxed);
    let dropped = DROPPED.load(Ordering::Relaxed);
    ensure!(
        made == dropped,
        "{made} data values made, {dropped} dropped"
    );
    ensure!(
        MADE_HASH.load(Ordering::Relaxed) == DROPPED_HASH.load(Ordering::Relaxed),
        "the dropped values are not the ones made"
    );

    let violations = VIOLATIONS.load(Ordering::Relaxed);
    let rate = format!(
        "in {:.1} s = {} ops/s",
        elapsed.as_secs_f64(),
        grouped_f64(counts.total() as f64 / elapsed.as_secs_f64())
    );
    let alloc_note = format!(
        "ENOSPC {}, EDQUOT {}",
        grouped(counts.enospc),
        grouped(counts.edquot)
    );
    let find_note = format!("{} hits", grouped(counts.find_hit));
    Summary::new("soak: summary")
        .count("operations", counts.total(), &rate)
        .count("alloc", counts.alloc, &alloc_note)
        .count("free", counts.free, "")
        .count("find", counts.find, &find_note)
        .count("set_data", counts.set_data, "")
        .count("foreign", counts.foreign, "")
        .count("for_each", counts.for_each, "")
        .count("IDs live at the end", live as u64, "")
        .count("data values made", made, "")
        .count("data values dropped", dropped, "")
        .count("violations", violations, "")
        .print();
    if violations > 0 {
        eprintln!("soak: FAILED with {violations} violations (first ones printed above)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
