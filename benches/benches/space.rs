//! Whole-space groups, one thread: `fill` (allocate every ID of a 2^20
//! space, get ENOSPC, free all: one iteration is the whole cycle), `enospc`
//! (one failing alloc on a full 2^20 space) and `for_each_small_set` (walk
//! the 16 IDs of one set while another set holds 1M). Only contenders that
//! honour ranges take part in `fill` and `enospc`; idr-ebr and sharded-slab
//! have no bounded space to fill.

mod common;

use common::{config, settle, SPAN};
use criterion::measurement::WallTime;
use criterion::{
    black_box, criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode,
};
use ioasid::Space;
use ioasid_benches::btree::BTreeAlloc;
use ioasid_benches::contenders::{Allocator, IoasidSet, MutexBTree, MutexIda};
use ioasid_benches::ida::Ida;
use ioasid_benches::kernel_model::KernelModel;
use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::Mutex;
use std::time::Instant;

type Lowest = IoasidSet<0, false>;
type Cyclic = IoasidSet<1, false>;
type Any = IoasidSet<2, false>;

fn fill<A: Allocator>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str) {
    let table = A::with_span(SPAN);
    let mut keys = Vec::with_capacity(SPAN as usize);
    settle();
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                for i in 0..SPAN {
                    keys.push(table.alloc(0, SPAN - 1, i).expect("not full yet"));
                }
                assert_eq!(table.alloc(0, SPAN - 1, 0), None, "{name}: ENOSPC");
                for key in keys.drain(..) {
                    assert!(table.free(key));
                }
            }
            start.elapsed()
        })
    });
}

fn enospc<A: Allocator>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str) {
    let table = A::with_span(SPAN);
    for i in 0..SPAN {
        table.alloc(0, SPAN - 1, i).expect("not full yet");
    }
    settle();
    group.bench_function(name, |b| {
        b.iter(|| assert_eq!(black_box(table.alloc(0, SPAN - 1, 0)), None))
    });
}

/// The 16 IDs of the small set: one every 65536, all in range.
fn small_set_ids() -> impl Iterator<Item = u64> {
    (0..16u64).map(|k| k * 65_536 + 7)
}

/// Live IDs of the big set.
const BIG: u64 = 1_000_000;

fn for_each_small_set(group: &mut BenchmarkGroup<'_, WallTime>) {
    // ioasid: two sets of one space; the walk follows the set's own index.
    {
        let space: Space<u64> = Space::new(0, (SPAN - 1) as u32).unwrap();
        let (small, big) = (space.new_set(), space.new_set());
        for id in small_set_ids() {
            small.alloc(id as u32, id as u32, id).unwrap();
        }
        for i in 0..BIG {
            big.alloc(0, (SPAN - 1) as u32, i).unwrap();
        }
        settle();
        group.bench_function("ioasid", |b| {
            b.iter(|| {
                let mut count = 0;
                let _ = small.for_each(|id, value| {
                    count += 1;
                    black_box((id, value));
                    ControlFlow::<()>::Continue(())
                });
                assert_eq!(count, 16);
            })
        });
    }
    // Mutex<Ida> with one BTreeSet of IDs per set, what a careful user keeps.
    {
        let mut ida = Ida::new(SPAN);
        let mut sets = [BTreeSet::new(), BTreeSet::new()];
        for id in small_set_ids() {
            assert!(ida.alloc_exact(id, id));
            sets[0].insert(id);
        }
        for i in 0..BIG {
            sets[1].insert(ida.alloc(0, SPAN - 1, i).unwrap());
        }
        let locked = Mutex::new((ida, sets));
        settle();
        group.bench_function("mutex-ida-set-index", |b| {
            b.iter(|| {
                let guard = locked.lock().unwrap();
                let (ida, sets) = &*guard;
                let mut count = 0;
                for &id in &sets[0] {
                    count += 1;
                    black_box((id, ida.find(id)));
                }
                assert_eq!(count, 16);
            })
        });
    }
    // Naive walks over the whole population, filtering by owner.
    {
        let mut ida = Ida::new(SPAN);
        let mut map = BTreeAlloc::new(SPAN);
        let model = KernelModel::new(SPAN);
        for id in small_set_ids() {
            assert!(ida.alloc_exact(id, (0u8, id)));
            assert!(map.alloc_exact(id, (0u8, id)));
            assert!(model.alloc_exact(id, (0u8, id)));
        }
        for i in 0..BIG {
            ida.alloc(0, SPAN - 1, (1, i)).unwrap();
            model.alloc(0, SPAN - 1, (1, i)).unwrap();
            map.alloc(0, SPAN - 1, (1, i)).unwrap();
        }
        let ida = Mutex::new(ida);
        let map = Mutex::new(map);
        settle();
        group.bench_function("mutex-ida-scan", |b| {
            b.iter(|| {
                let mut count = 0;
                ida.lock().unwrap().for_each(|id, &(owner, value)| {
                    if owner == 0 {
                        count += 1;
                        black_box((id, value));
                    }
                });
                assert_eq!(count, 16);
            })
        });
        group.bench_function("mutex-btreemap-scan", |b| {
            b.iter(|| {
                let mut count = 0;
                map.lock().unwrap().for_each(|id, &(owner, value)| {
                    if owner == 0 {
                        count += 1;
                        black_box((id, value));
                    }
                });
                assert_eq!(count, 16);
            })
        });
        group.bench_function("kernel-model-scan", |b| {
            b.iter(|| {
                let mut count = 0;
                model.for_each(|id, &(owner, value)| {
                    if owner == 0 {
                        count += 1;
                        black_box((id, value));
                    }
                });
                assert_eq!(count, 16);
            })
        });
    }
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("fill");
    group.sampling_mode(SamplingMode::Flat);
    fill::<Lowest>(&mut group, "ioasid-lowest");
    fill::<Cyclic>(&mut group, "ioasid-cyclic");
    fill::<Any>(&mut group, "ioasid-any");
    fill::<MutexIda>(&mut group, "mutex-ida");
    fill::<MutexBTree>(&mut group, "mutex-btreemap");
    fill::<KernelModel<u64>>(&mut group, "kernel-model");
    group.finish();

    let mut group = c.benchmark_group("enospc");
    enospc::<Lowest>(&mut group, "ioasid-lowest");
    enospc::<Cyclic>(&mut group, "ioasid-cyclic");
    enospc::<Any>(&mut group, "ioasid-any");
    enospc::<MutexIda>(&mut group, "mutex-ida");
    enospc::<MutexBTree>(&mut group, "mutex-btreemap");
    enospc::<KernelModel<u64>>(&mut group, "kernel-model");
    group.finish();

    let mut group = c.benchmark_group("for_each_small_set");
    for_each_small_set(&mut group);
    group.finish();
}

criterion_group! {
    name = space_benches;
    config = config();
    targets = benches
}
criterion_main!(space_benches);
