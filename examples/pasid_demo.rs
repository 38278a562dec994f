//! A simulated IOMMU: device drivers bind and unbind processes (allocating
//! and freeing PASIDs in their own sets) while fault-handler threads look
//! PASIDs up on the hot path, as the kernel's I/O page-fault handler does.
//!
//! ```text
//! cargo run --release --example pasid_demo -- [--secs N] [--drivers D] [--handlers H]
//! cargo run --release --example pasid_demo -- --help
//! ```
//!
//! Every lookup checks that the context it found belongs to the PASID it
//! asked for; every unbind checks that the driver still owns its PASID. The
//! summary counts operations, throughput, live PASIDs, grace periods and
//! errors, which must be zero (the exit status says so too).

mod common;

use common::{grouped, Summary};
use indicatif::{ProgressBar, ProgressStyle};
use ioasid::{Error, Policy, Space, PASID_MAX, PASID_MIN};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a driver attaches to a PASID: the bound process's context, shared
/// (an `Arc` is stored inline in the entry word: no allocation by the space).
struct ProcessContext {
    pasid: u32,
    pid: u32,
    driver: usize,
}

#[derive(Default)]
struct Stats {
    binds: AtomicU64,
    unbinds: AtomicU64,
    rebinds: AtomicU64,
    faults: AtomicU64,
    fault_hits: AtomicU64,
    quota_refusals: AtomicU64,
    errors: AtomicU64,
}

impl Stats {
    fn total(&self) -> u64 {
        [&self.binds, &self.unbinds, &self.rebinds, &self.faults]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    fn error(&self, what: &str) {
        eprintln!("error: {what}");
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

struct Options {
    secs: u64,
    drivers: usize,
    handlers: usize,
}

const USAGE: &str = "\
usage: pasid_demo [--secs N] [--drivers D] [--handlers H]

A simulated IOMMU: D device drivers bind and unbind processes (PASID
alloc/free in their own sets) while H fault handlers look PASIDs up.
Prints progress, then a summary; exits 1 if any check failed.

  --secs N       run time in seconds (default 5, at least 1)
  --drivers D    driver threads, 1 to 64 (default 4)
  --handlers H   fault-handler threads, 1 to 64 (default 4)
  -h, --help     this text";

fn parse_options() -> Result<Options, lexopt::Error> {
    use lexopt::prelude::*;
    let mut options = Options {
        secs: 5,
        drivers: 4,
        handlers: 4,
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("secs") => options.secs = parser.value()?.parse::<u64>()?.max(1),
            Long("drivers") => options.drivers = parser.value()?.parse::<usize>()?.clamp(1, 64),
            Long("handlers") => options.handlers = parser.value()?.parse::<usize>()?.clamp(1, 64),
            Short('h') | Long("help") => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(options)
}

fn main() {
    let options = parse_options().unwrap_or_else(|e| {
        eprintln!("pasid_demo: {e}\n\n{USAGE}");
        std::process::exit(2);
    });
    // One system-wide 20-bit PASID space; PASID 0 means "no PASID".
    let space: Space<Arc<ProcessContext>> = Space::builder()
        .range(PASID_MIN, PASID_MAX)
        .policy(Policy::Lowest)
        .build()
        .expect("valid range");
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    println!(
        "ioasid demo: {} drivers binding processes, {} fault handlers, {} s, PASIDs {PASID_MIN:#x}..={PASID_MAX:#x}",
        options.drivers, options.handlers, options.secs
    );

    let bar = ProgressBar::new(options.secs * 10);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );

    let started = Instant::now();
    std::thread::scope(|s| {
        for driver in 0..options.drivers {
            let (space, stats, stop) = (&space, &stats, &stop);
            s.spawn(move || run_driver(driver, space, stats, stop));
        }
        for handler in 0..options.handlers {
            let (space, stats, stop) = (&space, &stats, &stop);
            s.spawn(move || run_fault_handler(handler, space, stats, stop));
        }
        let deadline = started + Duration::from_secs(options.secs);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            bar.inc(1);
            let progress = format!(
                "{:>13} ops  {:>7} PASIDs live  {} errors",
                grouped(stats.total()),
                grouped(space.live_count() as u64),
                stats.errors.load(Ordering::Relaxed)
            );
            if bar.is_hidden() {
                // Not a terminal (a log, CI): one plain line a second.
                if bar.position().is_multiple_of(10) {
                    println!("  [{:>3} s] {progress}", bar.position() / 10);
                }
            } else {
                bar.set_message(progress);
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();

    let live_after = space.live_count();
    if live_after != 0 {
        stats.error(&format!(
            "{live_after} PASIDs still live after every driver unbound"
        ));
    }
    let errors = stats.errors.load(Ordering::Relaxed);
    let total = stats.total();
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let rate = format!(
        "{:.2} M ops/s over {elapsed:.1} s",
        total as f64 / elapsed / 1e6
    );
    let hits = format!("{} hit a live PASID", grouped(load(&stats.fault_hits)));
    Summary::new("summary")
        .count("operations", total, &rate)
        .count("binds (alloc)", load(&stats.binds), "")
        .count("unbinds (free)", load(&stats.unbinds), "")
        .count("rebinds (set_data)", load(&stats.rebinds), "")
        .count("faults (find)", load(&stats.faults), &hits)
        .count("quota refusals", load(&stats.quota_refusals), "")
        .count("grace periods", space.domain().grace_periods(), "")
        .count("PASIDs live", live_after as u64, "")
        .count("errors", errors, "")
        .print();
    if errors != 0 {
        std::process::exit(1);
    }
}

/// A device driver: a set with a quota (its hardware's PASID table), binding
/// and unbinding processes, checking ownership on each unbind.
fn run_driver(driver: usize, space: &Space<Arc<ProcessContext>>, stats: &Stats, stop: &AtomicBool) {
    let set = space.new_set_with_quota(4096);
    let mut rng = fastrand::Rng::with_seed(0x2545_F491_4F6C_DD1D ^ (driver as u64 + 1) << 20);
    let mut bound: Vec<(u32, u32)> = Vec::new();
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let pid = 1000 + rng.u64(..1 << 20) as u32;
        let context = Arc::new(ProcessContext {
            pasid: 0,
            pid,
            driver,
        });
        match set.alloc(PASID_MIN, PASID_MAX, context) {
            Ok(pasid) => {
                // Record the PASID in the context, as a driver does once the
                // hardware table entry is written.
                if set
                    .set_data(pasid, Arc::new(ProcessContext { pasid, pid, driver }))
                    .is_err()
                {
                    stats.error("set_data on a freshly bound PASID failed");
                }
                stats.binds.fetch_add(1, Ordering::Relaxed);
                stats.rebinds.fetch_add(1, Ordering::Relaxed);
                bound.push((pasid, pid));
            }
            Err(Error::QuotaExceeded) => {
                stats.quota_refusals.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => stats.error(&format!("driver {driver}: bind failed: {e}")),
        }
        if bound.len() > 2000 || (!bound.is_empty() && rng.u64(..2) == 0) {
            let (pasid, pid) = bound.swap_remove(rng.usize(..bound.len()));
            match set.with(pasid, |c| (c.pasid, c.pid, c.driver)) {
                Ok(found) if found == (pasid, pid, driver) => {}
                other => stats.error(&format!("driver {driver}: PASID {pasid} holds {other:?}")),
            }
            if let Err(e) = set.free(pasid) {
                stats.error(&format!("driver {driver}: unbind of {pasid} failed: {e}"));
            }
            stats.unbinds.fetch_add(1, Ordering::Relaxed);
        }
        if round.is_multiple_of(50_000) {
            // A driver tearing down a batch waits for the fault handlers, as
            // the kernel does with synchronize_rcu() before freeing a context.
            space.synchronize();
        }
    }
    for (pasid, _) in bound {
        if set.free(pasid).is_err() {
            stats.error("final unbind failed");
        }
        stats.unbinds.fetch_add(1, Ordering::Relaxed);
    }
}

/// A fault handler: looks PASIDs up lock-free and checks what it finds.
fn run_fault_handler(
    handler: usize,
    space: &Space<Arc<ProcessContext>>,
    stats: &Stats,
    stop: &AtomicBool,
) {
    let mut rng = fastrand::Rng::with_seed(0x9E37_79B9_7F4A_7C15 ^ (handler as u64 + 7) << 32);
    // Faults cluster on low PASIDs (the lowest-free policy packs them there).
    let hot = 4096 * 8;
    while !stop.load(Ordering::Relaxed) {
        let guard = space.pin();
        let mut hits = 0;
        for _ in 0..256 {
            let pasid = PASID_MIN + rng.u64(..hot) as u32;
            if let Some(context) = space.find(pasid, &guard) {
                // A context is either the one being bound (pasid still 0)
                // or the one recorded for exactly this PASID.
                if context.pasid != pasid && context.pasid != 0 {
                    stats.error(&format!(
                        "fault on {pasid} found the context of {}",
                        context.pasid
                    ));
                }
                hits += 1;
            }
        }
        drop(guard);
        stats.faults.fetch_add(256, Ordering::Relaxed);
        stats.fault_hits.fetch_add(hits, Ordering::Relaxed);
    }
}
