//! Memory boundedness: millions of alloc/free cycles, with a reader on
//! another thread pinned most of the time (short gaps between its read-side
//! sections), must not grow the heap, the tree, or the deferred garbage.
//!
//! Heap bytes are counted by a counting `#[global_allocator]` (this test
//! binary only). For each policy the test runs millions of alloc/free cycles
//! over a window of live IDs and checks, at a grace period (after
//! `Space::synchronize`, when the writer's deferred garbage is reclaimable):
//! - live heap bytes after all cycles are within 2x of those after 100k;
//! - the tree's node bytes (`Space::node_bytes`) are within 2x too;
//! - without a grace period, deferred garbage stays bounded while the reader
//!   keeps pinning: at least one of the last checkpoints' heap figures is
//!   within 2x of the 100k figure plus a fixed allowance of garbage (a
//!   pinned reader may hold back a few epochs' worth).
//!
//! Cycle counts: 10M per policy in builds without debug assertions
//! (`cargo test --release --test memory_bound`: about 10 s for all three;
//! CI runs this line), 2M per policy where debug assertions are on (plain
//! `cargo test`, and the nextest run under CI's `ci` profile), where 10M
//! would take a minute or more. `IOASID_MEMORY_CYCLES=N` overrides both.

mod common;
use ioasid::{Domain, Payload, Policy, Space};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::sync::Arc;
use std::thread;

/// Counts live heap bytes of the whole process.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees hold; the counter has no effect on
// the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's (valid, non-zero-size) layout.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            // Relaxed: a statistic; the test reads it from the thread that
            // did the work it measures, or after joining the others.
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            // Relaxed: a statistic (see `alloc`).
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (hence `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        // Relaxed: a statistic (see `alloc`).
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`; the caller
        // guarantees `new_size` is valid for its alignment.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            // Relaxed: a statistic (see `alloc`).
            LIVE_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_bytes() -> isize {
    // Relaxed: a statistic (see `Counting::alloc`).
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// Alloc/free cycles per policy (see the module docs).
fn cycles() -> u64 {
    if let Some(n) = std::env::var("IOASID_MEMORY_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return u64::max(n, 2 * EARLY);
    }
    if cfg!(debug_assertions) {
        2_000_000
    } else {
        10_000_000
    }
}

/// The first measurement point.
const EARLY: u64 = 100_000;
/// Checkpoints after `EARLY`.
const CHECKPOINTS: u64 = 20;
/// Live IDs held at any time. Large enough that crossbeam-epoch's own
/// bounded lag (each thread's local bag of up to 64 deferred items, among
/// them the collector's ~2 KiB queue nodes, so up to ~150 KiB a thread,
/// rising and falling as bags seal) is small beside the working set.
const WINDOW: usize = 32768;
/// Garbage a pinned reader may hold back at a checkpoint: a few epochs of
/// the writer's bags (64 records each) and slack for a descheduled reader.
const GARBAGE_ALLOWANCE: isize = 4 << 20;

/// The private data: too big for an inline entry, so each value is boxed
/// and every free or set_data leaves a box for the epoch to reclaim.
struct Pair([u64; 2]);

// SAFETY: the provided methods store the value boxed.
unsafe impl Payload for Pair {}

#[derive(Debug, Clone, Copy)]
struct Figures {
    /// Heap bytes at a grace period.
    heap: isize,
    /// Tree node bytes.
    nodes: usize,
}

/// One policy's run; returns the figures after `EARLY` and after all cycles.
fn run(policy: Policy, max: u32) -> (Figures, Figures) {
    let cycles = cycles();
    let domain = Domain::new();
    let space: Space<Pair> = Space::builder()
        .range(0, max)
        .policy(policy)
        .domain(domain)
        .build()
        .unwrap();
    let set = space.new_set();

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (space, stop) = (space.clone(), stop.clone());
        thread::spawn(move || {
            let mut rng = fastrand::Rng::with_seed(0x9E37_79B9_7F4A_7C15);
            let mut hits = 0u64;
            // Relaxed: a stop request; nothing else is published through it.
            while !stop.load(Ordering::Relaxed) {
                let guard = space.pin();
                for _ in 0..256 {
                    let id = rng.u32(..2 * WINDOW as u32);
                    if let Some(data) = space.find(id, &guard) {
                        assert_eq!(data.0[0], data.0[1], "torn or foreign data");
                        hits += 1;
                    }
                }
                drop(guard);
                if rng.u32(..8) == 0 {
                    thread::yield_now();
                }
            }
            hits
        })
    };

    let mut rng = fastrand::Rng::with_seed(0x2545_F491_4F6C_DD1D);
    let mut window: Vec<u32> = (0..WINDOW)
        .map(|n| set.alloc(0, max, Pair([n as u64; 2])).unwrap())
        .collect();
    let mut cycle = |n: u64| {
        let slot = rng.usize(..WINDOW);
        set.free(window[slot]).unwrap();
        window[slot] = set.alloc(0, max, Pair([n; 2])).unwrap();
        if n.is_multiple_of(8) {
            let other = window[rng.usize(..WINDOW)];
            set.set_data(other, Pair([n + 1; 2])).unwrap();
        }
    };
    let at_grace_period = |space: &Space<Pair>| {
        // A few grace periods: the collector's own queue of sealed bags is
        // itself reclaimed through the epoch, a step behind.
        for _ in 0..4 {
            space.synchronize();
        }
        Figures {
            heap: live_bytes(),
            nodes: space.node_bytes(),
        }
    };

    for n in 0..EARLY {
        cycle(n);
    }
    let early = at_grace_period(&space);
    let step = (cycles - EARLY) / CHECKPOINTS;
    let mut lagging = Vec::new();
    for checkpoint in 0..CHECKPOINTS {
        let start = EARLY + checkpoint * step;
        for n in start..start + step {
            cycle(n);
        }
        // Without a grace period: the garbage the reader holds back.
        lagging.push(live_bytes());
    }
    let late = at_grace_period(&space);

    stop.store(true, Ordering::Relaxed);
    let hits = reader.join().unwrap();
    assert!(hits > 0, "the reader never saw a live ID");
    assert_eq!(space.live_count(), WINDOW);

    let best_recent = *lagging[lagging.len() - 5..].iter().min().unwrap();
    println!(
        "{policy:?} [0, {max:#x}]: {cycles} cycles; heap at grace periods: {} B after {EARLY}, \
         {} B after {cycles}; nodes {} B -> {} B; heap at checkpoints without a grace period: \
         min {} B, max {} B; reader hits {hits}",
        early.heap,
        late.heap,
        early.nodes,
        late.nodes,
        lagging.iter().min().unwrap(),
        lagging.iter().max().unwrap(),
    );
    assert!(
        best_recent <= 2 * early.heap + GARBAGE_ALLOWANCE,
        "{policy:?}: deferred garbage grows: {best_recent} B at the last checkpoints vs {} B",
        early.heap
    );
    (early, late)
}

#[test]
fn ten_million_cycles_stay_bounded() {
    // Lowest reuses the window's IDs; Cyclic and Any walk the whole space, so
    // their spaces are small enough to be wrapped many times within 100k.
    for (policy, max) in [
        (Policy::Lowest, 0xFFFFF),
        (Policy::Cyclic, 0xFFFF),
        (Policy::Any, 0xFFFF),
    ] {
        let baseline = live_bytes();
        let (early, late) = run(policy, max);
        let cycles = cycles();
        println!(
            "{policy:?}: heap above the baseline: {} B after {EARLY} cycles, {} B after {cycles} ({:.2}x)",
            early.heap - baseline,
            late.heap - baseline,
            (late.heap - baseline) as f64 / (early.heap - baseline) as f64
        );
        assert!(
            late.heap - baseline <= 2 * (early.heap - baseline),
            "{policy:?}: heap grew from {} B to {} B (above a baseline of {baseline} B)",
            early.heap - baseline,
            late.heap - baseline
        );
        assert!(
            late.nodes <= 2 * early.nodes,
            "{policy:?}: tree grew from {} B to {} B",
            early.nodes,
            late.nodes
        );
        // The space and its domain are gone: everything they held is freed.
        assert!(
            live_bytes() - baseline < 64 << 10,
            "{policy:?}: {} B still held after the space was dropped",
            live_bytes() - baseline
        );
    }
}
