//! Memory report: bytes per live ID for ioasid and each baseline, the cost
//! of an empty space, and ioasid's RSS after many alloc/free cycles.
//!
//! A counting global allocator tracks the bytes live on the heap, both as
//! requested and as the C allocator really reserved them
//! (`malloc_usable_size`). Each row builds one structure, reads the counter
//! while it is alive, and drops it. Values are `u64` (8 bytes, counted in
//! the totals): the baselines keep them in a slot or node of their own,
//! ioasid inline in its 8-byte entry word (values below 2^48).
//!
//! Usage: `memory [--small]` (`--small`: tiny sizes, a smoke test for CI;
//! `--help`). Prints Markdown tables.

use ioasid::{Policy, Space};
use ioasid_benches::btree::BTreeAlloc;
use ioasid_benches::ida::Ida;
use ioasid_benches::kernel_model::KernelModel;
use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_void;
use std::sync::atomic::{AtomicIsize, Ordering};

extern "C" {
    // glibc (and musl): the bytes really reserved for a malloc'd block.
    fn malloc_usable_size(ptr: *mut c_void) -> usize;
}

/// Bytes live on the heap: as requested, and as reserved.
static REQUESTED: AtomicIsize = AtomicIsize::new(0);
static RESERVED: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            // Relaxed: statistics counters, read after the work is done.
            REQUESTED.fetch_add(layout.size() as isize, Ordering::Relaxed);
            // SAFETY: `ptr` is a live block of the system allocator (malloc).
            let real = unsafe { malloc_usable_size(ptr.cast()) };
            RESERVED.fetch_add(real as isize, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` is live until the call below frees it.
        let real = unsafe { malloc_usable_size(ptr.cast()) };
        // Relaxed: as above.
        REQUESTED.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        RESERVED.fetch_sub(real as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap bytes live now: (requested, reserved).
fn heap() -> (isize, isize) {
    // Relaxed: single-threaded reads of statistics.
    (
        REQUESTED.load(Ordering::Relaxed),
        RESERVED.load(Ordering::Relaxed),
    )
}

/// Runs every deferred drop of the epoch schemes this thread used, so that
/// garbage of an earlier row is not freed while a later one is measured.
fn settle() {
    let mut last = heap();
    for _ in 0..1000 {
        ioasid::Domain::global().synchronize();
        crossbeam_epoch::pin().flush();
        let now = heap();
        if now == last {
            return;
        }
        last = now;
    }
    eprintln!("warning: the heap did not settle");
}

/// Heap bytes (requested, reserved) that `build` leaves live, measured while
/// its result is alive.
fn cost<S>(build: impl FnOnce() -> S) -> (f64, f64) {
    settle();
    let before = heap();
    let kept = build();
    let after = heap();
    drop(kept);
    ((after.0 - before.0) as f64, (after.1 - before.1) as f64)
}

/// Resident set size in bytes, from /proc/self/statm.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The keys of a layout: `n` dense from 0, or `n` with a stride.
fn keys(n: u64, stride: u64) -> impl Iterator<Item = u64> {
    (0..n).map(move |i| i * stride)
}

/// Builds `n` IDs at `stride` in a structure of each kind; `None` where the
/// kind cannot place IDs (opaque keys with a stride).
type Builder = fn(u64, u64, u64) -> Option<(f64, f64)>;

fn ioasid_row(span: u64, n: u64, stride: u64) -> Option<(f64, f64)> {
    Some(cost(|| {
        let space: Space<u64> = Space::new(0, (span - 1) as u32).unwrap();
        let set = space.new_set();
        for key in keys(n, stride) {
            set.alloc(key as u32, key as u32, key).unwrap();
        }
        set
    }))
}

/// As `ioasid_row`, with every ID got once: each carries a reference-count
/// record (SPEC 6.2).
fn ioasid_refs_row(span: u64, n: u64, stride: u64) -> Option<(f64, f64)> {
    Some(cost(|| {
        let space: Space<u64> = Space::new(0, (span - 1) as u32).unwrap();
        let set = space.new_set();
        for key in keys(n, stride) {
            let id = set.alloc(key as u32, key as u32, key).unwrap();
            set.get(id).unwrap();
        }
        set
    }))
}

fn ida_row(span: u64, n: u64, stride: u64) -> Option<(f64, f64)> {
    Some(cost(|| {
        let mut ida = Ida::new(span);
        for key in keys(n, stride) {
            assert!(ida.alloc_exact(key, key));
        }
        std::sync::Mutex::new(ida)
    }))
}

fn btree_row(span: u64, n: u64, stride: u64) -> Option<(f64, f64)> {
    Some(cost(|| {
        let mut map = BTreeAlloc::new(span);
        for key in keys(n, stride) {
            assert!(map.alloc_exact(key, key));
        }
        std::sync::Mutex::new(map)
    }))
}

fn kernel_row(span: u64, n: u64, stride: u64) -> Option<(f64, f64)> {
    Some(cost(|| {
        let model = KernelModel::new(span);
        for key in keys(n, stride) {
            assert!(model.alloc_exact(key, key));
        }
        model
    }))
}

fn idr_row(_span: u64, n: u64, stride: u64) -> Option<(f64, f64)> {
    (stride == 1).then(|| {
        cost(|| {
            let idr = idr_ebr::Idr::<u64>::new();
            for i in 0..n {
                idr.insert(i).unwrap();
            }
            idr
        })
    })
}

fn slab_row(_span: u64, n: u64, stride: u64) -> Option<(f64, f64)> {
    (stride == 1).then(|| {
        cost(|| {
            let slab = sharded_slab::Slab::<u64>::new();
            for i in 0..n {
                slab.insert(i).unwrap();
            }
            slab
        })
    })
}

fn papaya_row(_span: u64, n: u64, stride: u64) -> Option<(f64, f64)> {
    Some(cost(|| {
        let map = papaya::HashMap::<u64, u64>::new();
        {
            let pinned = map.pin();
            for key in keys(n, stride) {
                pinned.insert(key, key);
            }
        }
        map
    }))
}

const ROWS: [(&str, Builder); 8] = [
    ("ioasid", ioasid_row),
    ("ioasid, each ID got once (ref counts)", ioasid_refs_row),
    ("mutex-ida (Ida<u64>)", ida_row),
    ("mutex-btreemap", btree_row),
    ("kernel-model", kernel_row),
    ("idr-ebr (dense only)", idr_row),
    ("sharded-slab (dense only)", slab_row),
    ("papaya (map, no allocator)", papaya_row),
];

/// Measures one empty structure: (requested, reserved) heap bytes.
type Measure = Box<dyn Fn() -> (f64, f64)>;

/// Churns `cycles` alloc/free pairs beside `live` held IDs; returns RSS and
/// heap bytes after `first` cycles and after all of them.
fn churn(policy: Policy, live: u32, first: u64, cycles: u64) -> [(u64, isize); 2] {
    let space: Space<u64> = Space::builder()
        .range(0, 0xFFFFF)
        .policy(policy)
        .build()
        .unwrap();
    let set = space.new_set();
    for i in 0..live {
        set.alloc(0, 0xFFFFF, u64::from(i)).unwrap();
    }
    let mut marks = [(0, 0); 2];
    for i in 0..cycles {
        let id = set.alloc(0, 0xFFFFF, i).unwrap();
        set.free(id).unwrap();
        if i + 1 == first {
            marks[0] = (rss_bytes(), heap().1);
        }
    }
    marks[1] = (rss_bytes(), heap().1);
    marks
}

fn per_id(bytes: f64, n: u64) -> String {
    format!("{:.1}", bytes / n as f64)
}

const USAGE: &str = "\
usage: memory [--small]

Prints the memory tables of BENCHMARKS.md: bytes per live ID for ioasid
and each baseline, the cost of an empty space, RSS under alloc/free churn.

  --small        tiny sizes (a smoke test)
  -h, --help     this text";

/// The command line: `--small`, and the policy when this process is a
/// churn child (`--rss-child POLICY`, given by the parent).
struct Args {
    small: bool,
    rss_child: Option<Policy>,
}

fn parse_args() -> Result<Option<Args>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut args = Args {
        small: false,
        rss_child: None,
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("small") => args.small = true,
            Long("rss-child") => {
                args.rss_child = Some(match parser.value()?.string()?.as_str() {
                    "Lowest" => Policy::Lowest,
                    "Cyclic" => Policy::Cyclic,
                    "Any" => Policy::Any,
                    other => return Err(format!("unknown policy {other}").into()),
                })
            }
            Short('h') | Long("help") => return Ok(None),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Some(args))
}

fn main() {
    let Args { small, rss_child } = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("memory: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let (big, few, first, cycles) = if small {
        (1 << 14, 1 << 10, 10_000, 100_000)
    } else {
        (1 << 20, 1 << 10, 100_000, 10_000_000)
    };
    const SPAN: u64 = 1 << 24;

    if let Some(policy) = rss_child {
        let [(rss0, heap0), (rss1, heap1)] = churn(policy, 1000, first, cycles);
        println!(
            "| {policy:?} | {:.1} MiB | {:.1} MiB | {:.2} | {:.1} KiB | {:.1} KiB |",
            rss0 as f64 / 1048576.0,
            rss1 as f64 / 1048576.0,
            rss1 as f64 / rss0 as f64,
            heap0 as f64 / 1024.0,
            heap1 as f64 / 1024.0
        );
        return;
    }

    // Warm every epoch scheme's per-thread state so rows do not pay it.
    for (_, row) in ROWS {
        let _ = row(SPAN, 16, 1);
    }

    // RSS: each policy in a fresh process of its own (RSS is process-wide
    // and the C allocator keeps freed pages).
    println!("### RSS under alloc/free churn (ioasid, 2^20 space, 1000 IDs held)\n");
    println!("Each policy runs in a fresh child process.\n");
    println!("| policy | RSS after {first} cycles | after {cycles} | ratio | heap after {first} | heap after {cycles} |");
    println!("|---|---|---|---|---|---|");
    for policy in ["Lowest", "Cyclic", "Any"] {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        child.arg("--rss-child").arg(policy);
        if small {
            child.arg("--small");
        }
        let out = child.output().expect("child runs");
        assert!(out.status.success(), "child failed: {out:?}");
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }

    println!("\n### Bytes per live ID (heap, span 2^24, 8-byte values included)\n");
    println!(
        "Each cell: requested / reserved by malloc. Sparse: every 16th ID. \
         n/a: opaque keys cannot be placed.\n"
    );
    println!("| contender | {few} dense | {big} dense | {big} sparse |");
    println!("|---|---|---|---|");
    for (name, row) in ROWS {
        let cell = |n: u64, stride: u64| match row(SPAN, n, stride) {
            Some((req, res)) => format!("{} / {}", per_id(req, n), per_id(res, n)),
            None => "n/a".to_string(),
        };
        println!(
            "| {name} | {} | {} | {} |",
            cell(few, 1),
            cell(big, 1),
            cell(big, 16)
        );
    }

    println!("\n### Empty structures (heap bytes, requested / reserved)\n");
    println!("| structure | bytes |");
    println!("|---|---|");
    let empty: [(&str, Measure); 7] = [
        (
            "ioasid space 2^20",
            Box::new(|| cost(|| Space::<u64>::new(0, 0xFFFFF).unwrap())),
        ),
        (
            "ioasid space 2^32 - 1 (whole u32)",
            Box::new(|| cost(|| Space::<u64>::new(0, ioasid::MAX_IOASID).unwrap())),
        ),
        (
            "ioasid space 2^20 + one set",
            Box::new(|| {
                cost(|| {
                    let space = Space::<u64>::new(0, 0xFFFFF).unwrap();
                    space.new_set()
                })
            }),
        ),
        (
            "ioasid space 2^20 + one set + one ID",
            Box::new(|| {
                cost(|| {
                    let space = Space::<u64>::new(0, 0xFFFFF).unwrap();
                    let set = space.new_set();
                    set.alloc(0, 0xFFFFF, 1).unwrap();
                    set
                })
            }),
        ),
        (
            "mutex-ida 2^20",
            Box::new(|| cost(|| std::sync::Mutex::new(Ida::<u64>::new(1 << 20)))),
        ),
        (
            "kernel-model 2^20",
            Box::new(|| cost(|| KernelModel::<u64>::new(1 << 20))),
        ),
        ("idr-ebr", Box::new(|| cost(idr_ebr::Idr::<u64>::new))),
    ];
    for (name, measure) in empty {
        let (req, res) = measure();
        println!("| {name} | {req} / {res} |");
    }
}
