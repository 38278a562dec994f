//! A single-thread driver for instruction counts (run it under
//! `valgrind --tool=callgrind`): `opcount WORKLOAD N` runs N operations of
//! one workload after a warm-up, so two runs with different N give the
//! instructions per operation by difference.
//!
//! Workloads: `lowest`, `cyclic`, `any` (alloc+free pairs on a set of a
//! 2^20 space), `c-lowest` (`ioasid_alloc`/`ioasid_free`, global space),
//! `c-set` (`ioasid_alloc`/`ioasid_set_free`), `c-find` (`ioasid_find` of
//! one of 1024 live IDs), `find` (Rust find under a held guard),
//! `mutex-ida` (the baseline).

use ioasid_benches::contenders::{Allocator, CAbi, IoasidSet, MutexIda};
use std::hint::black_box;

fn pairs<A: Allocator>(a: A, n: u64) {
    for i in 0..n {
        let id = a.alloc(1, (1 << 20) - 1, i).expect("space left");
        black_box(a.free(id));
    }
    // Leaked: a teardown whose cost grows with N would count as per-op.
    std::mem::forget(a);
}

fn finds<A: Allocator>(a: A, n: u64) {
    let ids: Vec<u64> = (0..1024)
        .map(|i| a.alloc(1, (1 << 20) - 1, i).unwrap())
        .collect();
    let reader = a.reader();
    for i in 0..n {
        black_box(a.find(&reader, ids[(i & 1023) as usize]));
    }
    drop(reader);
    std::mem::forget(a);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let workload = args.next().expect("workload");
    let n: u64 = args.next().and_then(|s| s.parse().ok()).expect("count");
    match workload.as_str() {
        "lowest" => pairs(IoasidSet::<0, false>::with_span(1 << 20), n),
        "cyclic" => pairs(IoasidSet::<1, false>::with_span(1 << 20), n),
        "any" => pairs(IoasidSet::<2, false>::with_span(1 << 20), n),
        "c-set" => pairs(CAbi::with_span(1 << 20), n),
        "c-lowest" => {
            for i in 0..n {
                // SAFETY: NULL set; the data is an opaque pointer value.
                let id = unsafe {
                    ioasid_c::ioasid_alloc(
                        std::ptr::null_mut(),
                        1,
                        (1 << 20) - 1,
                        i as usize as *mut _,
                    )
                };
                ioasid_c::ioasid_free(black_box(id));
            }
        }
        "c-find" => finds(CAbi::with_span(1 << 20), n),
        "find" => finds(IoasidSet::<0, false>::with_span(1 << 20), n),
        "mutex-ida" => pairs(MutexIda::with_span(1 << 20), n),
        other => panic!("unknown workload {other}"),
    }
}
