//! Contention harness, the idr-ebr way: inside criterion's `iter_custom`,
//! spawn the threads, let each set up (pin its guard, seed its generator),
//! release them together with a `Barrier`, and time from the release until
//! the last worker is done. Each worker runs the `iters` operations it was
//! given, so criterion's "time per iteration" is the wall time in which
//! every thread did one operation; throughput is `threads / time`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

/// The environment variable holding the thread counts, e.g. `1,2,4,8,16`.
pub const THREADS_VAR: &str = "IOASID_BENCH_THREADS";

/// Thread counts from [`THREADS_VAR`], else 1, 2, 4, 8 and 16.
pub fn thread_counts() -> Vec<usize> {
    parse_thread_counts(std::env::var(THREADS_VAR).ok().as_deref())
}

/// Parses a comma-separated list of positive counts; `None`, empty or
/// malformed input gives the default list.
pub fn parse_thread_counts(value: Option<&str>) -> Vec<usize> {
    let parsed: Option<Vec<usize>> = value.map(|v| {
        v.split(',')
            .map(|s| s.trim().parse::<usize>().ok().filter(|&n| n > 0))
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default()
    });
    match parsed {
        Some(list) if !list.is_empty() => list,
        _ => vec![1, 2, 4, 8, 16],
    }
}

/// Runs `threads` workers, each made on its own thread by `setup(index)` and
/// then called with `iters`, all released at once; returns the time from
/// their release until the last one finished.
///
/// With `background`, one more thread runs `background(&stop)` from before
/// the release until every worker is done (then `stop` is set); it is not
/// timed and must return soon after `stop` turns true.
pub fn contended<S, W>(
    threads: usize,
    iters: u64,
    setup: S,
    background: Option<&(dyn Fn(&AtomicBool) + Sync)>,
) -> Duration
where
    S: Fn(usize) -> W + Sync,
    W: FnOnce(u64),
{
    let barrier = Barrier::new(threads + 1);
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        if let Some(background) = background {
            let stop = &stop;
            scope.spawn(move || background(stop));
        }
        let workers: Vec<_> = (0..threads)
            .map(|index| {
                let (setup, barrier) = (&setup, &barrier);
                scope.spawn(move || {
                    let work = setup(index);
                    barrier.wait();
                    work(iters);
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for worker in workers {
            worker.join().expect("worker panicked");
        }
        let elapsed = start.elapsed();
        // Relaxed: the background thread only needs to see it eventually;
        // the scope's join orders everything else.
        stop.store(true, Ordering::Relaxed);
        elapsed
    })
}

/// One generator per thread (fastrand's wyrand: a few cycles per number).
#[derive(Debug, Clone)]
pub struct Rng(fastrand::Rng);

impl Rng {
    /// A generator for thread `index`, its own seed per index.
    pub fn new(index: usize) -> Self {
        Rng(fastrand::Rng::with_seed(
            (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.u64(..)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.u64(..n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn thread_counts_parse() {
        assert_eq!(parse_thread_counts(None), vec![1, 2, 4, 8, 16]);
        assert_eq!(parse_thread_counts(Some("3, 5")), vec![3, 5]);
        assert_eq!(parse_thread_counts(Some("2,x")), vec![1, 2, 4, 8, 16]);
        assert_eq!(parse_thread_counts(Some("0")), vec![1, 2, 4, 8, 16]);
    }

    #[test]
    fn every_worker_runs_its_iterations_and_background_stops() {
        let done = AtomicU64::new(0);
        let background_ran = AtomicBool::new(false);
        let background = |stop: &AtomicBool| {
            while !stop.load(Ordering::Relaxed) {
                background_ran.store(true, Ordering::Relaxed);
                std::hint::spin_loop();
            }
        };
        let elapsed = contended(
            4,
            1000,
            |_| {
                |iters| {
                    done.fetch_add(iters, Ordering::Relaxed);
                }
            },
            Some(&background),
        );
        assert_eq!(done.load(Ordering::Relaxed), 4000);
        assert!(elapsed < Duration::from_secs(60));
    }

    #[test]
    fn below_stays_in_range_and_spreads() {
        let mut rng = Rng::new(0);
        let mut seen = [false; 16];
        for _ in 0..10_000 {
            let x = rng.below(16);
            assert!(x < 16);
            seen[x as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
