//! Write-side groups: `alloc_free` (each thread allocates then frees, range
//! 2^20), `alloc_free_small_range` (range 128: every thread on one leaf) and
//! `mixed` (90% find among 64K live IDs, 10% alloc+free). idr-ebr and
//! sharded-slab cannot take a range: they run `alloc_free` and `mixed`
//! without one (and skip the small range), with no order promise.
//! `c-abi` is ioasid through its C functions (global space, Lowest).
//! mutex-btreemap allocates cyclically (lowest-free is quadratic there).

mod common;

use common::{alloc_free, config, mixed, SPAN};
use criterion::{criterion_group, criterion_main, Criterion};
use ioasid_benches::contenders::{
    CAbi, IdrEbr, IoasidSet, MutexBTree, MutexIda, RwLockIda, ShardedSlab,
};
use ioasid_benches::harness::thread_counts;
use ioasid_benches::kernel_model::KernelModel;

type Lowest = IoasidSet<0, false>;
type Cyclic = IoasidSet<1, false>;
type Any = IoasidSet<2, false>;

fn benches(c: &mut Criterion) {
    let threads = thread_counts();
    let t = &threads[..];

    let mut group = c.benchmark_group("alloc_free");
    alloc_free::<Lowest>(&mut group, "ioasid-lowest", SPAN - 1, t);
    alloc_free::<Cyclic>(&mut group, "ioasid-cyclic", SPAN - 1, t);
    alloc_free::<Any>(&mut group, "ioasid-any", SPAN - 1, t);
    alloc_free::<CAbi>(&mut group, "c-abi", SPAN - 1, t);
    alloc_free::<MutexIda>(&mut group, "mutex-ida", SPAN - 1, t);
    alloc_free::<RwLockIda>(&mut group, "rwlock-ida", SPAN - 1, t);
    alloc_free::<MutexBTree>(&mut group, "mutex-btreemap", SPAN - 1, t);
    alloc_free::<KernelModel<u64>>(&mut group, "kernel-model", SPAN - 1, t);
    alloc_free::<IdrEbr>(&mut group, "idr-ebr", SPAN - 1, t);
    alloc_free::<ShardedSlab>(&mut group, "sharded-slab", SPAN - 1, t);
    group.finish();

    let mut group = c.benchmark_group("alloc_free_small_range");
    alloc_free::<Lowest>(&mut group, "ioasid-lowest", 127, t);
    alloc_free::<Cyclic>(&mut group, "ioasid-cyclic", 127, t);
    alloc_free::<Any>(&mut group, "ioasid-any", 127, t);
    alloc_free::<CAbi>(&mut group, "c-abi", 127, t);
    alloc_free::<MutexIda>(&mut group, "mutex-ida", 127, t);
    alloc_free::<RwLockIda>(&mut group, "rwlock-ida", 127, t);
    alloc_free::<MutexBTree>(&mut group, "mutex-btreemap", 127, t);
    alloc_free::<KernelModel<u64>>(&mut group, "kernel-model", 127, t);
    group.finish();

    let mut group = c.benchmark_group("mixed");
    mixed::<Lowest>(&mut group, "ioasid-lowest", t);
    mixed::<Cyclic>(&mut group, "ioasid-cyclic", t);
    mixed::<Any>(&mut group, "ioasid-any", t);
    mixed::<CAbi>(&mut group, "c-abi", t);
    mixed::<MutexIda>(&mut group, "mutex-ida", t);
    mixed::<RwLockIda>(&mut group, "rwlock-ida", t);
    mixed::<MutexBTree>(&mut group, "mutex-btreemap", t);
    mixed::<KernelModel<u64>>(&mut group, "kernel-model", t);
    mixed::<IdrEbr>(&mut group, "idr-ebr", t);
    mixed::<ShardedSlab>(&mut group, "sharded-slab", t);
    group.finish();
}

criterion_group! {
    name = alloc_benches;
    config = config();
    targets = benches
}
criterion_main!(alloc_benches);
