//! Read-side groups: `find` (random hits among 1M dense IDs), `find_hot`
//! (1K IDs, in cache, one thread) and `find_with_writer` (`find` while one
//! more thread churns alloc/free). ioasid's find does not depend on the
//! policy (the same tree walk), so it runs once with a guard held
//! (`ioasid-guard`) and once pinning per call (`ioasid-pin`, the C ABI's
//! shape), and through the C ABI (`c-abi`: `ioasid_find` on a declared
//! set of the global space). Keys of idr-ebr and sharded-slab are opaque: their finds read the
//! key from a table first (one more memory access), as their users must.

mod common;

use common::{churn, config, find, DENSE, HOT, SPAN};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use ioasid_benches::contenders::{
    prefill, Allocator, Array, CAbi, IdrEbr, IoasidSet, MutexBTree, MutexIda, PapayaMap, RwLockIda,
    ShardedSlab,
};
use ioasid_benches::harness::thread_counts;
use ioasid_benches::kernel_model::KernelModel;

type IoasidGuard = IoasidSet<0, false>;
type IoasidPin = IoasidSet<0, true>;

/// Prefills `A` with `n` keys and runs `find` on it, with or without a writer.
fn allocator<A: Allocator>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    n: u64,
    threads: &[usize],
    with_writer: bool,
) {
    let (table, keys) = prefill::<A>(SPAN, n);
    let dense = keys.iter().enumerate().all(|(i, &k)| k == i as u64);
    if with_writer {
        let writer = churn(&table, n, SPAN - 1);
        find(group, name, &table, &keys, dense, threads, Some(&writer));
    } else {
        find(group, name, &table, &keys, dense, threads, None);
    }
}

fn all(group: &mut BenchmarkGroup<'_, WallTime>, n: u64, threads: &[usize], with_writer: bool) {
    if !with_writer {
        let array = Array((0..n).collect());
        let keys: Vec<u64> = (0..n).collect();
        find(group, "array", &array, &keys, true, threads, None);
    }
    allocator::<IoasidGuard>(group, "ioasid-guard", n, threads, with_writer);
    allocator::<IoasidPin>(group, "ioasid-pin", n, threads, with_writer);
    allocator::<CAbi>(group, "c-abi", n, threads, with_writer);
    allocator::<MutexIda>(group, "mutex-ida", n, threads, with_writer);
    allocator::<RwLockIda>(group, "rwlock-ida", n, threads, with_writer);
    allocator::<MutexBTree>(group, "mutex-btreemap", n, threads, with_writer);
    allocator::<KernelModel<u64>>(group, "kernel-model", n, threads, with_writer);
    allocator::<IdrEbr>(group, "idr-ebr", n, threads, with_writer);
    allocator::<ShardedSlab>(group, "sharded-slab", n, threads, with_writer);
    if !with_writer {
        let map = PapayaMap::dense(n);
        let keys: Vec<u64> = (0..n).collect();
        find(group, "papaya", &map, &keys, true, threads, None);
    }
}

fn benches(c: &mut Criterion) {
    let threads = thread_counts();
    let mut group = c.benchmark_group("find");
    all(&mut group, DENSE, &threads, false);
    group.finish();

    let mut group = c.benchmark_group("find_hot");
    all(&mut group, HOT, &[1], false);
    group.finish();

    let mut group = c.benchmark_group("find_with_writer");
    all(&mut group, DENSE, &threads, true);
    group.finish();
}

criterion_group! {
    name = find_benches;
    config = config();
    targets = benches
}
criterion_main!(find_benches);
