//! A libFuzzer-free driver for the same scenarios: random inputs from a
//! seeded generator, fastrand's (so any failure is reproducible from its seed
//! and index), for a given time; or replays the files given.
//!
//! ```text
//! cargo run --release --bin random_driver -- --secs 1800 [--seed N]
//! cargo run --release --bin random_driver -- --replay FILE...
//! ```
//!
//! A failing input is written to `artifacts/crash-<seed>-<index>` before the
//! panic is passed on.

use std::panic;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--replay") {
        for file in &args[1..] {
            let input = std::fs::read(file).unwrap_or_else(|e| panic!("{file}: {e}"));
            ioasid_fuzz::run_one(&input);
            println!("replayed {file}: ok");
        }
        return;
    }
    let mut secs = 60u64;
    let mut seed = 0x5EED_F00Du64;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--secs" => secs = value.parse().expect("--secs N"),
            "--seed" => seed = value.parse().expect("--seed N"),
            _ => panic!("usage: random_driver [--secs N] [--seed N] | --replay FILE..."),
        }
    }

    let mut rng = fastrand::Rng::with_seed(seed);
    let start = Instant::now();
    let mut last_report = Instant::now();
    let mut execs = 0u64;
    let mut bytes = 0u64;
    let mut input = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        // Lengths up to 2 KiB; biased bytes so ops hit live IDs and edges.
        let len = rng.usize(..2048);
        input.clear();
        input.extend((0..len).map(|_| rng.u8(..)));
        let result = panic::catch_unwind(|| ioasid_fuzz::run_one(&input));
        if let Err(panic) = result {
            let _ = std::fs::create_dir_all("artifacts");
            let path = format!("artifacts/crash-{seed}-{execs}");
            let _ = std::fs::write(&path, &input);
            eprintln!("random_driver: failing input saved to {path}");
            panic::resume_unwind(panic);
        }
        execs += 1;
        bytes += len as u64;
        if last_report.elapsed() >= Duration::from_secs(30) {
            println!(
                "random_driver: {execs} execs in {:.0} s ({:.0}/s)",
                start.elapsed().as_secs_f64(),
                execs as f64 / start.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    for (outcome, n) in ioasid_fuzz::outcomes() {
        println!("  {n:>10}  {outcome}");
    }
    println!(
        "random_driver: done: {execs} execs, {bytes} input bytes, {:.0} s, seed {seed}, no failure",
        start.elapsed().as_secs_f64()
    );
}
