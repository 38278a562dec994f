//! Policies under contention on tiny spaces with fan-out 4: Cyclic's
//! batches (no ID handed out twice, no false ENOSPC, the reuse delay, the
//! cursor exact again for a thread alone, snapshot and restore after a
//! contended phase).

mod common;
use ioasid::fanout::{Set, Space};
use ioasid::{Error, Ioasid, Policy};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;

fn space<const F: usize>(min: Ioasid, max: Ioasid, policy: Policy) -> Space<u64, F> {
    common::space_of(min, max, policy)
}

/// Threads racing alloc+free on a range of 16 IDs (four leaves of 4),
/// each holding at most two IDs: every alloc succeeds (at most 16 held),
/// no ID is handed to two holders at once, and the space ends empty and
/// consistent.
#[test]
fn cyclic_threads_race_on_a_tiny_range() {
    const THREADS: usize = 8;
    let space = space::<4>(0, 15, Policy::Cyclic);
    let set = space.new_set();
    let held: Vec<AtomicBool> = (0..16).map(|_| AtomicBool::new(false)).collect();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (set, held) = (&set, &held);
            s.spawn(move || {
                for i in 0..3000u64 {
                    let a = set.alloc(0, 15, i).expect("at most 16 IDs held");
                    assert!(!held[a as usize].swap(true, Ordering::SeqCst), "{a} twice");
                    let b = (t % 2 == 0).then(|| {
                        let b = set.alloc(0, 15, i).expect("at most 16 IDs held");
                        assert!(!held[b as usize].swap(true, Ordering::SeqCst), "{b} twice");
                        b
                    });
                    for id in [Some(a), b].into_iter().flatten() {
                        held[id as usize].store(false, Ordering::SeqCst);
                        set.free(id).unwrap();
                    }
                }
            });
        }
    });
    assert_eq!(space.live_count(), 0);
    space.check_invariants().unwrap();
}

/// Four threads each alloc+free 4000 times on a range of 4096 IDs. A freed
/// ID is handed out again before the cursor came round to it only from a
/// batch a thread held when it was freed (at most 4 x 8 IDs here), so
/// almost every reuse waits for most of a round of other allocations. (How
/// often the threads really overlap depends on the scheduler; the batch
/// steps themselves are checked one by one in `space/policy.rs`'s unit
/// tests and in the loom model `cyclic_batch_handoff_races_a_wrap`.)
#[test]
fn cyclic_reuse_waits_for_the_cursor_under_contention() {
    const THREADS: usize = 4;
    const SPAN: u64 = 4096;
    const ROUNDS: usize = 4000;
    let space = space::<4>(0, SPAN as Ioasid - 1, Policy::Cyclic);
    let set = space.new_set();
    let ticket = AtomicU64::new(0);
    let logs: Vec<Vec<(u64, Ioasid)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (set, ticket) = (&set, &ticket);
                s.spawn(move || {
                    let mut log = Vec::with_capacity(ROUNDS);
                    for i in 0..ROUNDS as u64 {
                        let id = set.alloc(0, SPAN as Ioasid - 1, i).unwrap();
                        log.push((ticket.fetch_add(1, Ordering::SeqCst), id));
                        set.free(id).unwrap();
                    }
                    log
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<(u64, Ioasid)> = logs.into_iter().flatten().collect();
    all.sort_unstable();
    let mut last = vec![None; SPAN as usize];
    let (mut reuses, mut early) = (0usize, 0usize);
    for &(at, id) in &all {
        if let Some(before) = last[id as usize].replace(at) {
            reuses += 1;
            if at - before < SPAN / 2 {
                early += 1;
            }
        }
    }
    assert!(reuses > 1000, "{reuses} reuses: the run went round");
    assert!(
        early * 20 <= reuses,
        "{early} of {reuses} reuses came before half a round"
    );
    space.check_invariants().unwrap();
}

/// After a contended phase (whatever batches the racing threads took), a
/// thread alone gets the xa_alloc_cyclic answer again: each ID the lowest
/// free one after the one before, wrapping to min.
#[test]
fn cyclic_alone_after_contention_follows_the_cursor() {
    let space = space::<4>(0, 63, Policy::Cyclic);
    let set = space.new_set();
    let keep: Vec<Ioasid> = (0..8).map(|i| set.alloc(0, 63, i).unwrap()).collect();
    race_alloc_free(&set, 0, 63, 4, 2000);
    for &id in keep.iter().step_by(2) {
        set.free(id).unwrap();
    }
    let mut prev = set.alloc(0, 63, 0).unwrap();
    for i in 0..200u64 {
        let next = set.alloc(0, 63, i).unwrap();
        // Lowest free after `prev`, cyclically: every ID strictly between
        // them (going round) is live.
        let mut id = (prev + 1) % 64;
        while id != next {
            assert!(
                space.copied(id).is_some(),
                "{id} free, skipped by {prev} -> {next}"
            );
            id = (id + 1) % 64;
        }
        // Free the one before, so the space never fills.
        set.free(prev).unwrap();
        prev = next;
    }
    space.check_invariants().unwrap();
}

/// A snapshot taken after a contended phase restores the cursor: the
/// original and the copy answer the same sequence to a thread alone.
#[test]
fn cyclic_snapshot_after_contention_answers_as_the_original() {
    let space = space::<4>(0, 99, Policy::Cyclic);
    let set = space.new_set();
    for i in 0..10 {
        set.alloc(0, 99, i).unwrap();
    }
    race_alloc_free(&set, 0, 99, 4, 1500);
    for id in [3, 50, 97] {
        if space.copied(id).is_some() {
            set.free(id).unwrap();
        }
    }
    let (copy, sets) = Space::<u64, 4>::restore(space.snapshot()).unwrap();
    let copy_set = &sets[0];
    for i in 0..150u64 {
        let (a, b) = (set.alloc(0, 99, i), copy_set.alloc(0, 99, i));
        assert_eq!(a, b, "alloc {i}");
        if i % 3 == 0 {
            if let Ok(id) = a {
                set.free(id).unwrap();
                copy_set.free(id).unwrap();
            }
        }
    }
    assert_eq!(space.live_count(), copy.live_count());
    space.check_invariants().unwrap();
    copy.check_invariants().unwrap();
}

/// ENOSPC stays true while other threads hold batches: with racing
/// threads parked (their batches in their thread records), this thread
/// fills the whole space, then gets ENOSPC; the parked threads get ENOSPC
/// too; a freed ID is then found by exactly one of them.
#[test]
fn cyclic_no_false_enospc_with_batches_held() {
    const THREADS: usize = 4;
    let space = space::<4>(0, 31, Policy::Cyclic);
    let set = space.new_set();
    let (raced, filled, answered, freed) = (
        Barrier::new(THREADS + 1),
        Barrier::new(THREADS + 1),
        Barrier::new(THREADS + 1),
        Barrier::new(THREADS + 1),
    );
    let got = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            let (set, got) = (&set, &got);
            let (raced, filled, answered, freed) = (&raced, &filled, &answered, &freed);
            s.spawn(move || {
                for i in 0..2000 {
                    let id = set.alloc(0, 31, i).unwrap();
                    set.free(id).unwrap();
                }
                raced.wait();
                filled.wait();
                assert_eq!(
                    set.alloc(0, 31, 0),
                    Err(Error::NoSpace),
                    "the space is full"
                );
                answered.wait();
                freed.wait();
                if let Ok(id) = set.alloc(0, 31, 1) {
                    assert_eq!(id, 17);
                    got.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        raced.wait();
        for i in 0..32 {
            set.alloc(0, 31, i).expect("every ID is free");
        }
        assert_eq!(set.alloc(0, 31, 0), Err(Error::NoSpace));
        filled.wait();
        answered.wait();
        set.free(17).unwrap();
        freed.wait();
    });
    assert_eq!(got.load(Ordering::SeqCst), 1, "one thread got the freed ID");
    assert_eq!(space.live_count(), 32);
    space.check_invariants().unwrap();
}

/// `threads` threads alloc+free `rounds` times each in `min..=max`.
fn race_alloc_free<const F: usize>(
    set: &Set<u64, F>,
    min: Ioasid,
    max: Ioasid,
    threads: usize,
    rounds: u64,
) {
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(move || {
                for i in 0..rounds {
                    let id = set.alloc(min, max, i).unwrap();
                    set.free(id).unwrap();
                }
            });
        }
    });
}
