//! Threads racing on tiny ranges, readers racing writers, drop accounting.
//! Oversubscribed on purpose: more threads than cores.

mod common;
use common::Tag;
// The generic types: these tests run small fan-outs too.
use ioasid::fanout::{Set, Space};
use ioasid::{Domain, Error, Policy};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

const THREADS: usize = 8;

/// Joins threads for real: a thread's exit runs its thread-local destructors,
/// which hand its epoch handle (and the garbage it holds) back to the domain.
/// `scope` alone waits only for the closures, not for those destructors.
fn join_all<T>(handles: Vec<std::thread::ScopedJoinHandle<'_, T>>) {
    for handle in handles {
        handle.join().unwrap();
    }
}

/// Many threads hammer `min..=max`. A per-ID holder table (owned by the
/// test) proves no ID is ever handed to two threads; at the end every ID is
/// accounted for and every value was dropped exactly once.
fn hammer<const F: usize>(min: u32, max: u32, policy: Policy, iterations: usize) {
    let drops = Arc::new(AtomicUsize::new(0));
    let created = AtomicUsize::new(0);
    let domain = Domain::new();
    let space: Space<Tag, F> = Space::builder()
        .range(min, max)
        .policy(policy)
        .domain(domain.clone())
        .build()
        .unwrap();
    let holders: Vec<AtomicU32> = (min..=max).map(|_| AtomicU32::new(u32::MAX)).collect();
    let sets: Vec<Set<Tag, F>> = (0..THREADS).map(|_| space.new_set()).collect();
    let barrier = Barrier::new(THREADS);
    let enospc = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let mut workers = Vec::new();
        for (thread, set) in sets.iter().enumerate() {
            let (holders, barrier, drops, created, enospc) =
                (&holders, &barrier, &drops, &created, &enospc);
            workers.push(s.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(0x9E37_79B9 * (thread as u64 + 1));
                let mut held: Vec<u32> = Vec::new();
                barrier.wait();
                for _ in 0..iterations {
                    if held.is_empty() || rng.bool() {
                        let tag = Tag {
                            id: u32::MAX,
                            mark: thread,
                            drops: drops.clone(),
                        };
                        created.fetch_add(1, Ordering::SeqCst);
                        match set.alloc(min, max, tag) {
                            Ok(id) => {
                                let prev = holders[(id - min) as usize]
                                    .swap(thread as u32, Ordering::SeqCst);
                                assert_eq!(
                                    prev,
                                    u32::MAX,
                                    "ID {id} handed to thread {thread} while {prev} held it"
                                );
                                set.set_data(
                                    id,
                                    Tag {
                                        id,
                                        mark: thread,
                                        drops: drops.clone(),
                                    },
                                )
                                .unwrap();
                                created.fetch_add(1, Ordering::SeqCst);
                                held.push(id);
                            }
                            Err(Error::NoSpace) => {
                                enospc.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => panic!("unexpected {e}"),
                        }
                    } else {
                        let id = held.swap_remove(rng.usize(..held.len()));
                        let seen = set.with(id, |t| (t.id, t.mark)).unwrap();
                        assert_eq!(seen, (id, thread));
                        let prev = holders[(id - min) as usize].swap(u32::MAX, Ordering::SeqCst);
                        assert_eq!(prev, thread as u32);
                        set.free(id).unwrap();
                    }
                }
                for id in held {
                    holders[(id - min) as usize].store(u32::MAX, Ordering::SeqCst);
                    set.free(id).unwrap();
                }
            }));
        }
        join_all(workers);
    });
    assert_eq!(space.live_count(), 0, "no ID lost or left behind");
    // Every number is allocatable again: nothing leaked in the bitmaps or hints.
    let check = space.new_set();
    for expected in min..=max {
        let got = check
            .alloc(
                min,
                max,
                Tag {
                    id: expected,
                    mark: 99,
                    drops: drops.clone(),
                },
            )
            .unwrap();
        created.fetch_add(1, Ordering::SeqCst);
        if policy == Policy::Lowest {
            assert_eq!(got, expected);
        }
    }
    assert!(matches!(
        check.alloc(
            min,
            max,
            Tag {
                id: 0,
                mark: 99,
                drops: drops.clone()
            }
        ),
        Err(Error::NoSpace)
    ));
    created.fetch_add(1, Ordering::SeqCst);
    drop(check);
    drop(sets);
    drop(space);
    drop(domain);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        created.load(Ordering::SeqCst),
        "each value dropped exactly once"
    );
}

#[test]
fn threads_hammer_a_range_of_one() {
    hammer::<4>(7, 7, Policy::Lowest, 20_000);
    hammer::<64>(0, 0, Policy::Cyclic, 20_000);
}

#[test]
fn threads_hammer_a_range_of_128() {
    for policy in [Policy::Lowest, Policy::Cyclic, Policy::Any] {
        hammer::<4>(1000, 1127, policy, 20_000);
        hammer::<64>(0xFFFF_FFFE - 127, 0xFFFF_FFFE, policy, 20_000);
    }
}

#[test]
fn threads_hammer_a_range_that_spans_many_leaves() {
    hammer::<2>(0, 300, Policy::Lowest, 10_000);
    // Cyclic over 75 chunks of 4 keys: chunks the cursor leaves empty are
    // retired while other threads claim, free and find around them.
    hammer::<2>(0, 300, Policy::Cyclic, 10_000);
    hammer::<8>(1, 0xFFFFF, Policy::Any, 10_000);
}

/// ENOSPC is truthful under races: IDs that every thread keeps free (it
/// never holds more than its share) can always be found. Run at fan-out 2
/// (six levels of hints over 64 keys), 4 and 64 (a single leaf).
fn no_false_enospc<const F: usize>(policy: Policy) {
    // 8 threads each hold at most 7 IDs of 64: at least 8 are always free,
    // so every alloc must succeed.
    let space: Space<u32, F> = Space::builder()
        .range(0, 63)
        .policy(policy)
        .build()
        .unwrap();
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (space, barrier) = (&space, &barrier);
            s.spawn(move || {
                let set = space.new_set();
                let mut held = Vec::new();
                barrier.wait();
                for i in 0..30_000u32 {
                    if held.len() < 7 {
                        match set.alloc(0, 63, i) {
                            Ok(id) => held.push(id),
                            Err(e) => panic!(
                                "thread {t}: {e} with free IDs available ({policy:?}, F={F})"
                            ),
                        }
                    } else {
                        set.free(held.remove((i as usize) % held.len())).unwrap();
                    }
                }
            });
        }
    });
    assert_eq!(space.live_count(), 0);
}

#[test]
fn no_false_enospc_when_ids_stay_free() {
    for policy in [Policy::Lowest, Policy::Cyclic, Policy::Any] {
        no_false_enospc::<2>(policy);
        no_false_enospc::<4>(policy);
        no_false_enospc::<64>(policy);
    }
}

/// Readers racing alloc/free/set_data never see data of another ID, and
/// every value is dropped exactly once, after the readers that saw it.
#[test]
fn readers_racing_writers_see_only_their_id() {
    let drops = Arc::new(AtomicUsize::new(0));
    let domain = Domain::new();
    let space: Space<Tag, 4> = Space::builder()
        .range(0, 255)
        .domain(domain.clone())
        .build()
        .unwrap();
    let writers_left = AtomicUsize::new(3);
    let start = Barrier::new(7);
    let hits = AtomicUsize::new(0);
    let created = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let mut threads = Vec::new();
        for w in 0..3 {
            let (space, writers_left, start, drops, created, hits) =
                (&space, &writers_left, &start, &drops, &created, &hits);
            threads.push(s.spawn(move || {
                let set = space.new_set();
                let mut rng = fastrand::Rng::with_seed(77 + w);
                let mut held = Vec::new();
                start.wait();
                // Churn until the readers have had their chance (they may be
                // scheduled late on a busy machine), within a generous bound.
                let mut round = 0;
                while round < 40_000 || (hits.load(Ordering::Relaxed) < 1_000 && round < 50_000_000)
                {
                    round += 1;
                    if held.len() < 40 && rng.u32(..3) != 0 {
                        created.fetch_add(1, Ordering::SeqCst);
                        // Publish the right tag in the first record: allocate
                        // an exact free ID chosen by trial.
                        let want = rng.u32(..256);
                        if let Ok(id) = set.alloc(
                            want,
                            want,
                            Tag {
                                id: want,
                                mark: w as usize,
                                drops: drops.clone(),
                            },
                        ) {
                            held.push(id);
                        }
                    } else if let Some(id) = held.pop() {
                        if rng.bool() {
                            created.fetch_add(1, Ordering::SeqCst);
                            set.set_data(
                                id,
                                Tag {
                                    id,
                                    mark: w as usize,
                                    drops: drops.clone(),
                                },
                            )
                            .unwrap();
                            held.push(id);
                        } else {
                            set.free(id).unwrap();
                        }
                    }
                }
                writers_left.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for r in 0..4u64 {
            let (space, writers_left, start, hits) = (&space, &writers_left, &start, &hits);
            threads.push(s.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(1234 + r);
                start.wait();
                while writers_left.load(Ordering::SeqCst) > 0 {
                    let guard = space.pin();
                    for _ in 0..64 {
                        let id = rng.u32(..256);
                        if let Some(tag) = space.find(id, &guard) {
                            assert_eq!(tag.id, id, "data of another ID");
                            hits.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        join_all(threads);
    });
    assert!(hits.load(Ordering::Relaxed) > 0, "readers saw live IDs");
    drop(space);
    drop(domain);
    assert_eq!(drops.load(Ordering::SeqCst), created.load(Ordering::SeqCst));
}

/// for_each racing alloc/free in the same set (and another set in the same
/// space): IDs live throughout are visited exactly once, foreign never.
#[test]
fn for_each_racing_churn_visits_stable_ids_once() {
    let space: Space<u32, 4> = Space::builder().range(0, 511).build().unwrap();
    let mine = space.new_set();
    let other = space.new_set();
    let stable: Vec<u32> = (0..512)
        .step_by(8)
        .map(|id| mine.alloc(id, id, id).unwrap())
        .collect();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for (n, set) in [&mine, &other].into_iter().enumerate() {
            let stop = &stop;
            s.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(99 + n as u64);
                let mut held = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let id = rng.u32(..512);
                    if !id.is_multiple_of(8) {
                        if let Ok(id) = set.alloc(id, id, id) {
                            held.push(id);
                        }
                    }
                    if held.len() > 100 {
                        set.free(held.swap_remove(0)).unwrap();
                    }
                }
                for id in held {
                    set.free(id).unwrap();
                }
            });
        }
        for _ in 0..300 {
            let mut seen = Vec::new();
            let _ = mine.for_each(|id, data| {
                assert_eq!(*data, id);
                seen.push(id);
                ControlFlow::<()>::Continue(())
            });
            assert!(
                seen.windows(2).all(|w| w[0] < w[1]),
                "ascending, no repeats"
            );
            for id in &stable {
                assert!(seen.binary_search(id).is_ok(), "stable {id} missed");
            }
            let _ = other.for_each(|id, _| {
                assert!(!stable.contains(&id), "foreign ID {id} visited");
                ControlFlow::<()>::Continue(())
            });
        }
        stop.store(true, Ordering::SeqCst);
    });
    assert_eq!(mine.len(), stable.len());
}

/// Quota holds under races: never more than `quota` live at once.
#[test]
fn quota_holds_under_races() {
    let space: Space<u32, 4> = Space::builder().range(0, 1023).build().unwrap();
    let set = space.new_set_with_quota(5);
    let live = AtomicUsize::new(0);
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (set, live, barrier) = (&set, &live, &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..5_000u32 {
                    match set.alloc(0, 1023, i) {
                        Ok(id) => {
                            let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                            assert!(now <= 5, "thread {t}: {now} live with quota 5");
                            live.fetch_sub(1, Ordering::SeqCst);
                            set.free(id).unwrap();
                        }
                        Err(Error::QuotaExceeded) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
    });
    assert_eq!(set.len(), 0);
}
