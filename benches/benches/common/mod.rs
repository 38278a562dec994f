//! Shared by the bench targets: criterion settings and the bench loops,
//! written once over the `Table` / `Allocator` face.

#![allow(dead_code)] // each bench target uses a part

use criterion::measurement::WallTime;
use criterion::{black_box, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use ioasid_benches::contenders::{Allocator, Table, REPIN_EVERY};
use ioasid_benches::harness::{contended, Rng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The 20-bit PASID space every workload allocates in.
pub const SPAN: u64 = 1 << 20;
/// Live IDs for `find` and `find_with_writer`.
pub const DENSE: u64 = 1_000_000;
/// Live IDs for `mixed`.
pub const MIXED_LIVE: u64 = 1 << 16;
/// Live IDs for `find_hot` (the working set stays in cache).
pub const HOT: u64 = 1024;

/// Short runs: the whole suite must fit in about 15 minutes on 2 cores.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10)
        .configure_from_args()
}

/// Runs the garbage that earlier contenders left in the epoch schemes
/// (dropping an ioasid set with 1M IDs defers 1M record drops, which later
/// pins reclaim a few bags at a time), so that no contender pays for
/// another's teardown inside its measurement.
pub fn settle() {
    for _ in 0..3 {
        ioasid::Domain::global().synchronize();
        crossbeam_epoch::pin().flush();
    }
}

/// Random hits among `n` keys (`keys[i]`, or `i` itself when `dense`) by
/// each of `t` threads, for each thread count; `writer`, if given, churns
/// beside the readers.
#[allow(clippy::too_many_arguments)]
pub fn find<T: Table>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    table: &T,
    keys: &[u64],
    dense: bool,
    threads: &[usize],
    writer: Option<&(dyn Fn(&AtomicBool) + Sync)>,
) {
    let n = keys.len() as u64;
    for &t in threads {
        settle();
        group.throughput(Throughput::Elements(t as u64));
        group.bench_with_input(BenchmarkId::new(name, t), &t, |b, &t| {
            b.iter_custom(|iters| {
                contended(
                    t,
                    iters,
                    |index| {
                        let mut reader = table.reader();
                        let mut rng = Rng::new(index);
                        move |iters| {
                            let mut hits = 0u64;
                            for i in 0..iters {
                                if i % REPIN_EVERY == REPIN_EVERY - 1 {
                                    table.repin(&mut reader);
                                }
                                let index = rng.below(n);
                                let key = if dense { index } else { keys[index as usize] };
                                hits += u64::from(black_box(table.find(&reader, key)).is_some());
                            }
                            assert_eq!(hits, iters, "{name}: every find hits");
                        }
                    },
                    writer,
                )
            })
        });
    }
}

/// A writer that allocates and frees in `a..=b` until stopped.
pub fn churn<A: Allocator>(table: &A, a: u64, b: u64) -> impl Fn(&AtomicBool) + Sync + '_ {
    move |stop: &AtomicBool| {
        // Relaxed: a stop flag; the harness joins us afterwards.
        while !stop.load(Ordering::Relaxed) {
            if let Some(key) = table.alloc(a, b, 0) {
                assert!(table.free(key));
            }
        }
    }
}

/// Each thread: alloc in `0..=hi`, free, `iters` times.
pub fn alloc_free<A: Allocator>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    hi: u64,
    threads: &[usize],
) {
    let table = A::with_span(SPAN);
    for &t in threads {
        settle();
        group.throughput(Throughput::Elements(t as u64));
        group.bench_with_input(BenchmarkId::new(name, t), &t, |b, &t| {
            b.iter_custom(|iters| {
                contended(
                    t,
                    iters,
                    |_| {
                        |iters| {
                            for i in 0..iters {
                                let key = table.alloc(0, hi, i).expect("range never fills");
                                assert!(table.free(black_box(key)));
                            }
                        }
                    },
                    None,
                )
            })
        });
    }
}

/// `MIXED_LIVE` prefilled keys; each op is a find of one of them (90%) or
/// an alloc+free pair in the whole span (10%).
pub fn mixed<A: Allocator>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    threads: &[usize],
) {
    let (table, keys) = ioasid_benches::contenders::prefill::<A>(SPAN, MIXED_LIVE);
    let keys = &keys;
    let table = &table;
    for &t in threads {
        settle();
        group.throughput(Throughput::Elements(t as u64));
        group.bench_with_input(BenchmarkId::new(name, t), &t, |b, &t| {
            b.iter_custom(|iters| {
                contended(
                    t,
                    iters,
                    |index| {
                        let mut reader = table.reader();
                        let mut rng = Rng::new(index);
                        move |iters| {
                            let mut finds = 0u64;
                            let mut hits = 0u64;
                            for i in 0..iters {
                                if i % REPIN_EVERY == REPIN_EVERY - 1 {
                                    table.repin(&mut reader);
                                }
                                let dice = rng.next_u64();
                                // Low half: one in ten; high half: which key.
                                if ((dice & 0xFFFF_FFFF) * 10) >> 32 == 0 {
                                    let key =
                                        table.alloc(0, SPAN - 1, i).expect("span never fills");
                                    assert!(table.free(black_box(key)));
                                } else {
                                    finds += 1;
                                    let key = keys[(((dice >> 32) * MIXED_LIVE) >> 32) as usize];
                                    hits +=
                                        u64::from(black_box(table.find(&reader, key)).is_some());
                                }
                            }
                            assert_eq!(hits, finds, "{name}: every find hits");
                        }
                    },
                    None,
                )
            })
        });
    }
}
