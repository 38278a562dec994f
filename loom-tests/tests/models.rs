//! One loom model per concurrent protocol of the core.
//!
//! Every model builds its space with its own `Domain::new()`, so each loom
//! iteration starts with a fresh epoch collector and ends by dropping it,
//! which runs every deferred drop: the drop counts asserted at the end are
//! exact. Spaces use fan-out 2 or 4 over a handful of IDs so that two or
//! three threads reach leaf and inner-node boundaries.
//!
//! Each model's preemption bound is chosen so the whole run stays well under
//! the budget of `loom-tests/run.sh`; `LOOM_MAX_PREEMPTIONS`, when set,
//! overrides every model's bound (for a deeper run by hand).
//!
//! The models bite: each weakening below of the core, made by hand and not
//! kept, fails the models named.
//! - a Cyclic retire that leaves its chunk's hints as they were (a hint
//!   says full over an empty leaf), an exact scan that does not repeat
//!   while a retire overlapped it (false ENOSPC), or retired leaves put
//!   back by a Relaxed store instead of a Release read-modify-write (an
//!   entry lost): `cyclic_retire_races_alloc_in_the_chunk`;
//! - no SeqCst fence in `propagate_full`, or in `repair_above`, or no undo
//!   of a propagator's clear: both `fill_races_free_*` and
//!   `alloc_races_fill_and_free_no_false_enospc` (false ENOSPC);
//! - no exact rescan when `hint_seq` moved:
//!   `alloc_races_fill_and_free_no_false_enospc`;
//! - a repairer that does not count itself into `hint_seq`:
//!   `alloc_races_repairer_no_false_enospc`;
//! - the entry publish stored Relaxed: `lookup_races_publish` (loom's
//!   causality checker);
//! - a freed or replaced value dropped at once instead of through the
//!   epoch: `lookup_races_free_and_reclaim`, `lookup_races_set_data`;
//! - quota checked by load then store: `allocs_race_at_quota_minus_one`;
//! - a node installed by store instead of CAS:
//!   `allocs_race_to_install_the_same_node`;
//! - a claim by load then store instead of `fetch_or`:
//!   `allocs_race_for_the_last_id_of_a_leaf`, `cyclic_cursor_under_two_allocs`;
//! - a Cyclic claim given back after a lost cursor CAS (to stretch the
//!   reuse delay of a key the cursor had passed):
//!   `cyclic_batch_handoff_races_a_wrap` (false ENOSPC: the given-back key
//!   looked taken to the racing call);
//! - `Set::find` without its owner check: `for_each_races_free_and_alloc`,
//!   `lookup_races_publish`;
//! - an iterator without the owner check of `Set::visible`, or one that
//!   yields a key twice across leaves: `iterators_race_free_and_alloc`;
//! - no SeqCst fence in `Members::insert_published` or in
//!   `Members::clear_stale`, or no owner re-check after the clear:
//!   `for_each_cleaning_races_alloc_of_the_same_key` (a live ID loses its
//!   member bit);
//! - a custom allocator's answer recorded without claiming exactly that
//!   ID: `custom_allocator_answers_race` (both allocs get 5);
//! - a custom ID's number released before its free hook ran, or a re-issued
//!   answer recorded without waiting for a free under way:
//!   `custom_free_races_reissue_of_the_same_id`;
//! - a notifier block entered by a load then a store of its shard's state
//!   word instead of a CAS: `unregister_races_notify` (a call runs after
//!   unregister returned, with the callback it dropped: the model crashes);
//! - a tracked ID's releaser that resets its record to FREE only after
//!   releasing the number (a new incarnation's first get then loses its
//!   record): `get_races_the_last_put` (livelock: loom's branch limit).
#![cfg(ioasid_loom)]

// The generic types: the models need small fan-outs.
use ioasid::fanout::{Set, Space};
use ioasid::{CustomAlloc, CustomAllocator, CustomHook, Domain, Error, Event, Ioasid, Policy};
use loom::sync::atomic::{AtomicBool, Ordering as LoomOrdering};
use loom::thread::{self, JoinHandle};
use loom_tests::{Ledger, Probe};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Runs `body` under loom with at most `preemptions` preemptions per
/// execution, unless `LOOM_MAX_PREEMPTIONS` says otherwise.
fn model(preemptions: usize, body: impl Fn() + Send + Sync + 'static) {
    let mut builder = loom::model::Builder::new();
    // A model's longest execution (spaces of three levels, each thread's
    // first pin registering with the collector, the final drops running
    // every deferred function) takes more than loom's default 1000 steps.
    builder.max_branches = 20_000;
    if std::env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
        builder.preemption_bound = Some(preemptions);
    }
    let executions = Arc::new(AtomicUsize::new(0));
    let counter = executions.clone();
    let started = Instant::now();
    builder.check(move || {
        // Relaxed: loom runs the executions one after another.
        counter.fetch_add(1, Ordering::Relaxed);
        body();
    });
    eprintln!(
        "{}: {} executions, preemption bound {:?}, {:.1?}",
        thread_name(),
        executions.load(Ordering::Relaxed),
        builder.preemption_bound,
        started.elapsed()
    );
}

/// The test's name (libtest names each test's thread after it).
fn thread_name() -> String {
    std::thread::current().name().unwrap_or("model").to_string()
}

/// Spawns a model thread that releases its cached epoch handles when done
/// (see `Domain::release_thread_handles`: loom's `join` does not wait for
/// thread-local destructors).
fn spawn<R: 'static>(body: impl FnOnce() -> R + 'static) -> JoinHandle<R> {
    thread::spawn(move || {
        let result = body();
        Domain::release_thread_handles();
        result
    })
}

/// A space `[min, max]` of fan-out `F` in a domain of its own.
fn new_space<const F: usize>(min: Ioasid, max: Ioasid, policy: Policy) -> Space<Probe, F> {
    Space::builder()
        .range(min, max)
        .policy(policy)
        .domain(Domain::new())
        .build()
        .expect("valid range")
}

/// The token of the probe stored at `id`, if `id` is live.
fn token_at<const F: usize>(space: &Space<Probe, F>, id: Ioasid) -> Option<usize> {
    let guard = space.pin();
    space.find(id, &guard).map(|probe| probe.token())
}

/// Drops the space and everything that keeps its domain alive, then checks
/// that every probe made was dropped exactly once.
fn assert_all_dropped_once(ledger: &Ledger, probes: usize) {
    for token in 0..probes {
        assert_eq!(ledger.drops(token), 1, "probe {token} drop count");
    }
    assert_eq!(ledger.total_drops(), probes, "drops of unknown probes");
}

/// Two allocs race for the last free ID of a leaf (fan-out 4, IDs 0..=7,
/// 0..=2 taken). One asks only inside that leaf, one anywhere: exactly one
/// gets 3; the other gets 4 (the next leaf, which it installs) or ENOSPC.
#[test]
fn allocs_race_for_the_last_id_of_a_leaf() {
    model(4, || {
        let ledger = Ledger::new();
        let space = new_space::<4>(0, 7, Policy::Lowest);
        let set = Arc::new(space.new_set());
        for token in 0..3 {
            assert_eq!(set.alloc(0, 7, ledger.probe(token, 0)), Ok(token as Ioasid));
        }
        let in_leaf = {
            let (set, ledger) = (set.clone(), ledger.clone());
            spawn(move || set.alloc(0, 3, ledger.probe(3, 0)))
        };
        let anywhere = {
            let (set, ledger) = (set.clone(), ledger.clone());
            spawn(move || set.alloc(0, 7, ledger.probe(4, 0)))
        };
        let (in_leaf, anywhere) = (in_leaf.join().unwrap(), anywhere.join().unwrap());
        match (in_leaf, anywhere) {
            (Ok(3), Ok(4)) => {
                assert_eq!(token_at(&space, 3), Some(3));
                assert_eq!(token_at(&space, 4), Some(4));
                assert_eq!(space.live_count(), 5);
            }
            (Err(Error::NoSpace), Ok(3)) => {
                assert_eq!(token_at(&space, 3), Some(4));
                assert_eq!(ledger.drops(3), 1, "a failed alloc drops its data");
                assert_eq!(space.live_count(), 4);
            }
            other => panic!("bad outcome {other:?}"),
        }
        drop(set);
        drop(space);
        assert_all_dropped_once(&ledger, 5);
    });
}

/// The hint protocol: an alloc that fills a leaf clears its parent's hint
/// bit while a free in that same leaf sets it again. Whatever the order,
/// the hints must end up saying "free" for the key left free, so a later
/// alloc finds it (no false ENOSPC), and a full space answers ENOSPC.
///
/// Fan-out 2 over IDs 0..=3: root with two leaves; 0, 1, 2 taken, so the
/// root's hint for leaf 0 is already clear and the alloc of 3 clears the
/// other one, emptying the root hint word.
#[test]
fn fill_races_free_in_the_same_leaf_two_levels() {
    model(5, || fill_races_free::<2>(3));
}

/// As above with three levels (fan-out 2 over IDs 0..=7, all but 7 taken):
/// the filling alloc propagates "full" through an inner node to the root,
/// and the free repairs two levels.
#[test]
fn fill_races_free_in_the_same_leaf_three_levels() {
    model(5, || fill_races_free::<2>(7));
}

/// As above in a tree with a low subtree (fan-out 2 over IDs 0..=31: five
/// levels, keys 0..=15 walked from the node below the root): every ID but
/// 15 taken, the alloc of 15 fills the low subtree while 14 is freed. The
/// claim starts in the low subtree; the propagation and the repair go up
/// to the root.
#[test]
fn fill_races_free_in_the_low_subtree() {
    model(4, || {
        // Plain data: more IDs than the ledger has tokens, and drops are
        // not what this model checks.
        let space: Space<u32, 2> = Space::builder()
            .range(0, 31)
            .domain(Domain::new())
            .build()
            .expect("valid range");
        let set = Arc::new(space.new_set());
        for id in 0..=31 {
            assert_eq!(set.alloc(0, 31, id), Ok(id));
        }
        assert_eq!(set.free(15), Ok(()));
        let filler = {
            let set = set.clone();
            spawn(move || set.alloc(0, 31, 32))
        };
        let freer = {
            let set = set.clone();
            spawn(move || set.free(14))
        };
        let got = filler
            .join()
            .unwrap()
            .expect("a key was free for the whole call");
        assert_eq!(freer.join().unwrap(), Ok(()));
        assert!(got == 14 || got == 15, "alloc got {got}");
        let left = if got == 15 { 14 } else { 15 };
        let again = set.alloc(0, 31, 33);
        assert_eq!(again, Ok(left), "false ENOSPC or wrong key after the race");
        assert_eq!(set.alloc(0, 31, 34), Err(Error::NoSpace));
    });
}

fn fill_races_free<const F: usize>(max: Ioasid) {
    let ledger = Ledger::new();
    let space = new_space::<F>(0, max, Policy::Lowest);
    let set = Arc::new(space.new_set());
    for id in 0..max {
        assert_eq!(set.alloc(0, max, ledger.probe(id as usize, 0)), Ok(id));
    }
    let freed = max - 1; // shares the leaf of `max`, the one free ID
    let filler = {
        let (set, ledger) = (set.clone(), ledger.clone());
        spawn(move || set.alloc(0, max, ledger.probe(max as usize, 0)))
    };
    let freer = {
        let set = set.clone();
        spawn(move || set.free(freed))
    };
    let got = filler
        .join()
        .unwrap()
        .expect("a key was free for the whole call");
    assert_eq!(freer.join().unwrap(), Ok(()));
    assert!(got == freed || got == max, "alloc got {got}");
    let left = if got == max { freed } else { max };
    assert_eq!(space.live_count(), max as usize);
    // One key is free now: the hints must lead to it.
    let again = set.alloc(0, max, ledger.probe(max as usize + 1, 0));
    assert_eq!(again, Ok(left), "false ENOSPC or wrong key after the race");
    assert_eq!(
        set.alloc(0, max, ledger.probe(max as usize + 2, 0)),
        Err(Error::NoSpace),
        "the space is full"
    );
    drop(set);
    drop(space);
    assert_all_dropped_once(&ledger, max as usize + 3);
}

/// Two allocs race to install the same missing inner node and leaf
/// (fan-out 2 over IDs 0..=7, an empty space, both asking for 4..=7): one
/// node survives, both IDs are distinct and live, the tree has exactly the
/// nodes a sequential run builds, and the rest of the range is still free.
#[test]
fn allocs_race_to_install_the_same_node() {
    model(4, || {
        let ledger = Ledger::new();
        let space = new_space::<2>(0, 7, Policy::Lowest);
        let set = Arc::new(space.new_set());
        let spawn_alloc = |token: usize| {
            let (set, ledger) = (set.clone(), ledger.clone());
            spawn(move || set.alloc(4, 7, ledger.probe(token, 0)))
        };
        let (a, b) = (spawn_alloc(0), spawn_alloc(1));
        let (a, b) = (a.join().unwrap().unwrap(), b.join().unwrap().unwrap());
        let mut got = [a, b];
        got.sort_unstable();
        assert_eq!(got, [4, 5], "distinct lowest IDs");
        assert_eq!(token_at(&space, a), Some(0));
        assert_eq!(token_at(&space, b), Some(1));
        assert_eq!(space.live_count(), 2);

        // The same allocations made one after another build the same nodes.
        let reference = new_space::<2>(0, 7, Policy::Lowest);
        let reference_set = reference.new_set();
        for token in 10..12 {
            reference_set.alloc(4, 7, ledger.probe(token, 0)).unwrap();
        }
        assert_eq!(
            space.node_bytes(),
            reference.node_bytes(),
            "one node survives"
        );

        // No ID lost: the rest of the range fills up in order.
        assert_eq!(set.alloc(4, 7, ledger.probe(2, 0)), Ok(6));
        assert_eq!(set.alloc(4, 7, ledger.probe(3, 0)), Ok(7));
        assert_eq!(set.alloc(4, 7, ledger.probe(4, 0)), Err(Error::NoSpace));
        assert_eq!(set.alloc(0, 7, ledger.probe(5, 0)), Ok(0));
        drop((set, space, reference_set, reference));
        for token in (0..6).chain(10..12) {
            assert_eq!(ledger.drops(token), 1, "probe {token} drop count");
        }
    });
}

/// Record publication: a reader polling for an ID that another thread
/// allocates sees it not found, or the whole record (loom's cell checker
/// fails the model if the record's contents are read without a
/// happens-before edge from its writer).
///
/// The model keeps every other edge out of the way, so that the record's
/// own Release publish is the only one: the leaf already exists (another
/// set allocated IDs 0 and 1 and freed 0), the claim does not fill the leaf
/// (fan-out 4: no propagation, no fence), and the writer pins once before
/// it makes its data (a thread's first pin may advance the epoch, an edge
/// that a reader's pin could pick up).
#[test]
fn lookup_races_publish() {
    model(4, || {
        let ledger = Ledger::new();
        let space = new_space::<4>(0, 7, Policy::Lowest);
        let owner = space.new_set();
        let stranger = space.new_set();
        assert_eq!(stranger.alloc(0, 7, ledger.probe(1, 0)), Ok(0));
        assert_eq!(stranger.alloc(0, 7, ledger.probe(2, 0)), Ok(1));
        assert_eq!(stranger.free(0), Ok(()));
        let writer = {
            let ledger = ledger.clone();
            spawn(move || {
                drop(owner.space().pin());
                let id = owner.alloc(0, 7, ledger.probe(0, 42)).unwrap();
                (owner, id)
            })
        };
        {
            // One guard for the whole wait: its pin may come before every
            // step of the writer, so only the publish orders what we read.
            let guard = space.pin();
            loop {
                match stranger.find(0, &guard) {
                    Err(Error::NotFound | Error::PermissionDenied) => {}
                    other => panic!(
                        "another set's data leaked: {:?}",
                        other.map(|probe| probe.token())
                    ),
                }
                match space.find(0, &guard) {
                    Some(probe) => {
                        assert_eq!((probe.token(), probe.value()), (0, 42));
                        break;
                    }
                    None => thread::yield_now(),
                }
            }
        }
        let (owner, id) = writer.join().unwrap();
        assert_eq!(id, 0);
        assert_eq!(owner.with(0, Probe::value), Ok(42));
        assert_eq!(space.live_count(), 2);
        drop((owner, stranger, space));
        assert_all_dropped_once(&ledger, 3);
    });
}

/// Two allocs in different chunks of an empty space (fan-out 2 over IDs
/// 0..=15, chunks of 4 keys) race to install the chunk directory's array:
/// one array survives (the loser frees its own), and it lists both chunks,
/// which the invariant walk checks against the tree; lookups through it
/// find both IDs.
#[test]
fn allocs_race_to_install_the_directory() {
    model(3, || {
        let ledger = Ledger::new();
        let space = new_space::<2>(0, 15, Policy::Lowest);
        let set = Arc::new(space.new_set());
        let spawn_alloc = |token: usize, lo: Ioasid| {
            let (set, ledger) = (set.clone(), ledger.clone());
            spawn(move || set.alloc(lo, lo + 3, ledger.probe(token, 0)))
        };
        let (a, b) = (spawn_alloc(0, 0), spawn_alloc(1, 8));
        let (a, b) = (a.join().unwrap().unwrap(), b.join().unwrap().unwrap());
        assert_eq!((a, b), (0, 8));
        assert_eq!(space.check_invariants(), Ok(()));
        assert_eq!(
            (token_at(&space, 0), token_at(&space, 8)),
            (Some(0), Some(1))
        );
        drop((set, space));
        assert_all_dropped_once(&ledger, 2);
    });
}

/// Chunk directory publication: a reader polling for an ID whose chunk,
/// leaf and directory array the writer's alloc installs (fan-out 2 over IDs
/// 0..=15, 4 levels, an empty space: chunks of 4 keys, ID 4 in the second)
/// sees it not
/// found, or the whole record: the directory entry's Release store is the
/// only path from the chunk's install to the reader that takes it (loom's
/// cell checker fails the model otherwise). Then the tree's invariant walk
/// says every directory entry is its chunk.
#[test]
fn lookup_races_chunk_install() {
    model(3, || {
        let ledger = Ledger::new();
        let space = new_space::<2>(0, 15, Policy::Lowest);
        let owner = space.new_set();
        let writer = {
            let ledger = ledger.clone();
            spawn(move || {
                drop(owner.space().pin());
                let id = owner.alloc(4, 15, ledger.probe(0, 42)).unwrap();
                (owner, id)
            })
        };
        {
            let guard = space.pin();
            loop {
                match space.find(4, &guard) {
                    Some(probe) => {
                        assert_eq!((probe.token(), probe.value()), (0, 42));
                        break;
                    }
                    None => thread::yield_now(),
                }
            }
        }
        let (owner, id) = writer.join().unwrap();
        assert_eq!(id, 4);
        assert_eq!(space.check_invariants(), Ok(()));
        drop((owner, space));
        assert_all_dropped_once(&ledger, 1);
    });
}

/// The kernel-form free that holds no guard (space/engine.rs `free_unpinned`,
/// owners.rs index classes) races its owner's drop and a new set with a
/// quota that allocates the same ID with the same inline data. The new set
/// never takes the dropped quota-less set's index, so the free either
/// takes the old word, or (as any kernel-form free may) frees the new
/// set's ID through the pinned path, which gives its quota unit back:
/// either way the quota set's count matches what it owns. (With the index
/// reused, the words would be equal and a guard-less free could take the
/// quota set's ID and leave its count at one.)
#[test]
fn unpinned_free_races_set_drop_and_index_reuse() {
    model(3, || {
        let space: Space<u32, 2> = Space::builder()
            .range(0, 1)
            .domain(Domain::new())
            .build()
            .expect("valid range");
        let plain = space.new_set();
        assert_eq!(plain.alloc(0, 1, 7), Ok(0));
        let freer = {
            let space = space.clone();
            spawn(move || space.free(0))
        };
        let owner = {
            let space = space.clone();
            spawn(move || {
                drop(plain);
                space.synchronize();
                let quota = space.new_set_with_quota(1);
                let id = quota.alloc(0, 1, 7);
                (quota, id)
            })
        };
        freer.join().unwrap();
        let (quota, id) = owner.join().unwrap();
        // 1 while the free of 0 had taken the word but not yet its claim.
        let id = id.expect("a key is free");
        assert!(id <= 1);
        assert_eq!(space.check_invariants(), Ok(()));
        assert_eq!(quota.len(), usize::from(space.copied(id).is_some()));
    });
}

/// Free vs lookup vs reclamation: a reader that found the data keeps it
/// valid until it unpins, even though the freeing thread waits for a grace
/// period (which collects garbage) meanwhile; after `synchronize` returns
/// the data is dropped, exactly once.
#[test]
fn lookup_races_free_and_reclaim() {
    model(4, || {
        let ledger = Ledger::new();
        let space = new_space::<2>(0, 3, Policy::Lowest);
        let set = space.new_set();
        assert_eq!(set.alloc(0, 3, ledger.probe(0, 7)), Ok(0));
        let freer = {
            let ledger = ledger.clone();
            spawn(move || {
                assert_eq!(set.free(0), Ok(()));
                set.space().synchronize();
                assert_eq!(ledger.drops(0), 1, "freed data outlived a grace period");
                set
            })
        };
        {
            let guard = space.pin();
            if let Some(probe) = space.find(0, &guard) {
                assert_eq!(probe.value(), 7);
                // More shared loads: room for the freer to run meanwhile.
                assert!(space.find(1, &guard).is_none());
                assert_eq!(ledger.drops(0), 0, "data dropped under a reader");
                assert_eq!(probe.value(), 7);
            }
        }
        let set = freer.join().unwrap();
        assert_eq!(space.live_count(), 0);
        assert_eq!(ledger.drops(0), 1);
        drop((set, space));
        assert_all_dropped_once(&ledger, 1);
    });
}

/// set_data vs lookup: a reader of an ID live throughout sees the old data
/// or the new, whole, and never data that was dropped while it was pinned.
#[test]
fn lookup_races_set_data() {
    model(4, || {
        let ledger = Ledger::new();
        let space = new_space::<2>(0, 3, Policy::Lowest);
        let set = space.new_set();
        assert_eq!(set.alloc(0, 3, ledger.probe(0, 10)), Ok(0));
        let writer = {
            let ledger = ledger.clone();
            spawn(move || {
                assert_eq!(set.set_data(0, ledger.probe(1, 11)), Ok(()));
                set.space().synchronize();
                assert_eq!(ledger.drops(0), 1, "replaced data outlived a grace period");
                set
            })
        };
        {
            let guard = space.pin();
            let probe = space.find(0, &guard).expect("live throughout");
            let expected = match probe.token() {
                0 => 10,
                1 => 11,
                other => panic!("foreign probe {other}"),
            };
            assert_eq!(probe.value(), expected);
            assert!(space.find(1, &guard).is_none());
            assert_eq!(
                ledger.drops(probe.token()),
                0,
                "data dropped under a reader"
            );
            assert_eq!(probe.value(), expected);
        }
        let set = writer.join().unwrap();
        assert_eq!(token_at(&space, 0), Some(1));
        assert_eq!(ledger.drops(1), 0, "live data dropped");
        drop((set, space));
        assert_all_dropped_once(&ledger, 2);
    });
}

/// The scenario of the walk models: fan-out 2 over IDs 0..=3, `mine` owns
/// 0 and 1, `theirs` owns 2. `churn` frees 1 from `mine` and allocates
/// again in `mine`; `stranger` allocates in `theirs` (taking 1 or 3) and
/// hands `theirs` back. Probes 0..=4, in that order.
struct Churn {
    ledger: Ledger,
    space: Space<Probe, 2>,
    mine: Arc<Set<Probe, 2>>,
    churn: JoinHandle<Result<Ioasid, Error>>,
    stranger: JoinHandle<(Set<Probe, 2>, Result<Ioasid, Error>)>,
}

fn churn_free_and_alloc() -> Churn {
    let ledger = Ledger::new();
    let space = new_space::<2>(0, 3, Policy::Lowest);
    let mine = Arc::new(space.new_set());
    let theirs = space.new_set();
    assert_eq!(mine.alloc(0, 3, ledger.probe(0, 0)), Ok(0));
    assert_eq!(mine.alloc(0, 3, ledger.probe(1, 0)), Ok(1));
    assert_eq!(theirs.alloc(0, 3, ledger.probe(2, 0)), Ok(2));
    let churn = {
        let (mine, ledger) = (mine.clone(), ledger.clone());
        spawn(move || {
            assert_eq!(mine.free(1), Ok(()));
            mine.alloc(0, 3, ledger.probe(3, 0))
        })
    };
    let stranger = {
        let ledger = ledger.clone();
        spawn(move || {
            let id = theirs.alloc(0, 3, ledger.probe(4, 0));
            (theirs, id)
        })
    };
    Churn {
        ledger,
        space,
        mine,
        churn,
        stranger,
    }
}

/// for_each vs free and alloc in the same set and alloc by another set.
/// Fan-out 2 over IDs 0..=3: `mine` owns 0 and 1, `theirs` owns 2. One
/// thread frees 1 from `mine` and allocates again in `mine`; another
/// allocates in `theirs` (taking 1 or 3). The walk visits 0 (live
/// throughout) exactly once, in ascending order, and only `mine`'s probes.
#[test]
fn for_each_races_free_and_alloc() {
    model(2, || {
        let Churn {
            ledger,
            space,
            mine,
            churn,
            stranger,
        } = churn_free_and_alloc();
        let mut seen: Vec<(Ioasid, usize)> = Vec::new();
        let flow = mine.for_each(|id, probe| {
            seen.push((id, probe.token()));
            ControlFlow::<()>::Continue(())
        });
        assert!(flow.is_continue());
        assert!(
            seen.windows(2).all(|w| w[0].0 < w[1].0),
            "not ascending: {seen:?}"
        );
        assert_eq!(
            seen.iter().filter(|(id, _)| *id == 0).count(),
            1,
            "{seen:?}"
        );
        for &(id, token) in &seen {
            assert!([0, 1, 3].contains(&token), "foreign probe {token} at {id}");
        }
        let mine_again = churn.join().unwrap().expect("a key is free");
        let (theirs, their_id) = stranger.join().unwrap();
        let their_id = their_id.expect("a key is free");
        assert_ne!(mine_again, their_id);
        let mut ids = [mine_again, their_id];
        ids.sort_unstable();
        assert_eq!(ids, [1, 3]);
        assert_eq!(space.live_count(), 4);
        assert_eq!(mine.len(), 2);
        assert_eq!(theirs.len(), 2);
        drop((mine, theirs, space));
        assert_all_dropped_once(&ledger, 5);
    });
}

/// The iterators (iter.rs) vs free and alloc: the scenario of
/// `for_each_races_free_and_alloc`, walked by `Set::iter` and `Space::iter`
/// under one guard. The set's iterator yields 0 (live throughout) exactly
/// once, ascending, only `mine`'s probes; the space's yields 0 and 2 (live
/// throughout) exactly once each, ascending.
#[test]
fn iterators_race_free_and_alloc() {
    model(2, || {
        let Churn {
            ledger,
            space,
            mine,
            churn,
            stranger,
        } = churn_free_and_alloc();
        {
            let guard = space.pin();
            let seen: Vec<(Ioasid, usize)> =
                mine.iter(&guard).map(|(id, p)| (id, p.token())).collect();
            assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "{seen:?}");
            assert_eq!(
                seen.iter().filter(|(id, _)| *id == 0).count(),
                1,
                "{seen:?}"
            );
            for &(id, token) in &seen {
                assert!([0, 1, 3].contains(&token), "foreign probe {token} at {id}");
            }
            let all: Vec<Ioasid> = space.iter(&guard).map(|(id, _)| id).collect();
            assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
            for stable in [0, 2] {
                assert_eq!(all.iter().filter(|&&id| id == stable).count(), 1, "{all:?}");
            }
        }
        let mine_again = churn.join().unwrap().expect("a key is free");
        let (theirs, their_id) = stranger.join().unwrap();
        assert_ne!(Some(mine_again), their_id.ok());
        drop((mine, theirs, space));
        assert_all_dropped_once(&ledger, 5);
    });
}

/// Lazily cleaned membership (members.rs): a walk that cleans a stale bit
/// races an alloc that reuses that key in the same set. Fan-out 2 over IDs
/// 0..=1: `mine` allocated and freed 0, so 0's member bit is stale. One
/// thread allocates 0 again in `mine` (the bit is set, so it may skip
/// writing it); the main thread walks `mine`, meets the stale bit and
/// clears it. Whatever the interleaving, the bit of the live ID survives:
/// a walk after both finish visits 0, and dropping the set frees it.
#[test]
fn for_each_cleaning_races_alloc_of_the_same_key() {
    model(3, || {
        let ledger = Ledger::new();
        let space = new_space::<2>(0, 1, Policy::Lowest);
        let mine = Arc::new(space.new_set());
        assert_eq!(mine.alloc(0, 0, ledger.probe(0, 0)), Ok(0));
        assert_eq!(mine.free(0), Ok(()));
        let again = {
            let (mine, ledger) = (mine.clone(), ledger.clone());
            spawn(move || mine.alloc(0, 0, ledger.probe(1, 0)))
        };
        let _ = mine.for_each(|_, _| ControlFlow::<()>::Continue(()));
        assert_eq!(again.join().unwrap(), Ok(0));
        let mut seen = Vec::new();
        let _ = mine.for_each(|id, probe| {
            seen.push((id, probe.token()));
            ControlFlow::<()>::Continue(())
        });
        assert_eq!(seen, vec![(0, 1)], "the live ID lost its member bit");
        drop(mine);
        assert_eq!(space.live_count(), 0, "the set's drop missed its ID");
        drop(space);
        assert_all_dropped_once(&ledger, 2);
    });
}

/// Quota: a set with quota 2 holding one ID; two allocs race for the last
/// unit of quota. Exactly one succeeds; the other gets EDQUOT.
#[test]
fn allocs_race_at_quota_minus_one() {
    model(4, || {
        let ledger = Ledger::new();
        let space = new_space::<2>(0, 7, Policy::Lowest);
        let set = Arc::new(space.new_set_with_quota(2));
        assert_eq!(set.alloc(0, 7, ledger.probe(0, 0)), Ok(0));
        let spawn_alloc = |token: usize| {
            let (set, ledger) = (set.clone(), ledger.clone());
            spawn(move || set.alloc(0, 7, ledger.probe(token, 0)))
        };
        let (a, b) = (spawn_alloc(1), spawn_alloc(2));
        let results = [a.join().unwrap(), b.join().unwrap()];
        let won: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
        assert_eq!(won, [&Ok(1)], "exactly one winner: {results:?}");
        assert!(results.contains(&Err(Error::QuotaExceeded)), "{results:?}");
        assert_eq!(set.len(), 2);
        assert_eq!(space.live_count(), 2);
        assert_eq!(
            set.alloc(0, 7, ledger.probe(3, 0)),
            Err(Error::QuotaExceeded)
        );
        drop((set, space));
        assert_all_dropped_once(&ledger, 4);
    });
}

/// Cyclic policy: IDs 0..=3 with 0 and 1 handed out and 0 freed again, so
/// the cursor is at 2. Two racing allocs take 2 and 3 (never the freed 0
/// early, never one ID twice); the next alloc wraps around to 0, and then
/// the space is full.
#[test]
fn cyclic_cursor_under_two_allocs() {
    model(4, || {
        let ledger = Ledger::new();
        let space = new_space::<2>(0, 3, Policy::Cyclic);
        let set = Arc::new(space.new_set());
        assert_eq!(set.alloc(0, 3, ledger.probe(0, 0)), Ok(0));
        assert_eq!(set.alloc(0, 3, ledger.probe(1, 0)), Ok(1));
        assert_eq!(set.free(0), Ok(()));
        let spawn_alloc = |token: usize| {
            let (set, ledger) = (set.clone(), ledger.clone());
            spawn(move || set.alloc(0, 3, ledger.probe(token, 0)))
        };
        let (a, b) = (spawn_alloc(2), spawn_alloc(3));
        let mut got = [a.join().unwrap().unwrap(), b.join().unwrap().unwrap()];
        got.sort_unstable();
        assert_eq!(got, [2, 3], "cyclic order kept, no duplicate");
        assert_eq!(
            set.alloc(0, 3, ledger.probe(4, 0)),
            Ok(0),
            "wraps to the start"
        );
        assert_eq!(set.alloc(0, 3, ledger.probe(5, 0)), Err(Error::NoSpace));
        assert_eq!(space.live_count(), 4);
        drop((set, space));
        assert_all_dropped_once(&ledger, 6);
    });
}

/// Cyclic batches across the wrap: IDs 0..=5 (fan-out 2) with 2 and 3
/// live and the cursor at 4, so the free IDs are 4, 5, then 0, 1 round the
/// wrap. Two threads alloc twice each: a lost cursor CAS takes a batch
/// (which may end at the end of the space and put the cursor in the next
/// round) or gives back a key behind the cursor, and a second alloc may
/// claim from its batch while the other thread claims past the wrap. Every
/// alloc finds an ID (four free for four allocs: one stays free for each
/// whole call, so ENOSPC would be false, even when the last free ID lies in
/// the other thread's batch), no ID is handed out twice, and then the
/// space is full.
#[test]
fn cyclic_batch_handoff_races_a_wrap() {
    model(2, || {
        let ledger = Ledger::new();
        let space = new_space::<2>(0, 5, Policy::Cyclic);
        let set = Arc::new(space.new_set());
        for id in 0..4 {
            assert_eq!(set.alloc(0, 5, ledger.probe(id, 0)), Ok(id as Ioasid));
        }
        assert_eq!(set.free(0), Ok(()));
        assert_eq!(set.free(1), Ok(()));
        let spawn_allocs = |token: usize| {
            let (set, ledger) = (set.clone(), ledger.clone());
            spawn(move || {
                let first = set.alloc(0, 5, ledger.probe(token, 0));
                let second = set.alloc(0, 5, ledger.probe(token + 1, 0));
                [first, second]
            })
        };
        let (a, b) = (spawn_allocs(4), spawn_allocs(6));
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        let mut got: Vec<Ioasid> = a
            .into_iter()
            .chain(b)
            .map(|r| r.expect("four free IDs for four allocs: no ENOSPC"))
            .collect();
        got.sort_unstable();
        assert_eq!(got, [0, 1, 4, 5], "each free ID once");
        assert_eq!(set.alloc(0, 5, ledger.probe(8, 0)), Err(Error::NoSpace));
        assert_eq!(space.live_count(), 6);
        space.check_invariants().unwrap();
        drop((set, space));
        assert_all_dropped_once(&ledger, 9);
    });
}

/// Set destroy vs find: one thread drops a set owning ID 0 (freeing it)
/// while the main thread looks the ID up through the space and through
/// another set. Lookups see the data whole or not at all, another set never
/// sees it, and the data is dropped exactly once, never under a reader.
#[test]
fn set_destroy_races_find() {
    model(4, || {
        let ledger = Ledger::new();
        let space = new_space::<2>(0, 3, Policy::Lowest);
        let doomed: Set<Probe, 2> = space.new_set();
        let bystander = space.new_set();
        assert_eq!(doomed.alloc(0, 3, ledger.probe(0, 5)), Ok(0));
        let destroyer = spawn(move || drop(doomed));
        {
            let guard = space.pin();
            let found = space.find(0, &guard);
            if let Some(probe) = &found {
                assert_eq!(probe.value(), 5);
            }
            match bystander.find(0, &guard) {
                Err(Error::NotFound | Error::PermissionDenied) => {}
                other => panic!(
                    "another set's data leaked: {:?}",
                    other.map(|probe| probe.token())
                ),
            }
            if let Some(probe) = &found {
                assert_eq!(ledger.drops(0), 0, "data dropped under a reader");
                assert_eq!(probe.value(), 5);
            }
        }
        destroyer.join().unwrap();
        assert_eq!(space.live_count(), 0);
        assert_eq!(
            bystander.alloc(0, 3, ledger.probe(1, 0)),
            Ok(0),
            "ID 0 reusable"
        );
        drop((bystander, space));
        assert_all_dropped_once(&ledger, 2);
    });
}

/// Spawns a thread that frees `id` of `set`, then raises `flag`: a thread
/// that sees the flag up knows the free returned before it looked.
fn spawn_free_then_flag<const F: usize>(
    set: &Arc<Set<Probe, F>>,
    id: Ioasid,
    flag: &Arc<AtomicBool>,
) -> JoinHandle<()> {
    let (set, flag) = (set.clone(), flag.clone());
    spawn(move || {
        assert_eq!(set.free(id), Ok(()));
        // Release: the free happens before a reader of the flag.
        flag.store(true, LoomOrdering::Release);
    })
}

/// Spawns a thread that reads `flag`, then allocates in `0..=max` a probe
/// with `token`; it returns whether the flag was up, and the alloc's result.
fn spawn_alloc_after_flag<const F: usize>(
    set: &Arc<Set<Probe, F>>,
    ledger: &Ledger,
    token: usize,
    max: Ioasid,
    flag: &Arc<AtomicBool>,
) -> JoinHandle<(bool, Result<Ioasid, Error>)> {
    let (set, ledger, flag) = (set.clone(), ledger.clone(), flag.clone());
    spawn(move || {
        // Acquire: pairs with the Release store of `spawn_free_then_flag`.
        let flag_was_up = flag.load(LoomOrdering::Acquire);
        (flag_was_up, set.alloc(0, max, ledger.probe(token, 0)))
    })
}

/// The `hint_seq` fence: an alloc that runs while another alloc's
/// propagation has a hint bit transiently clear (between its clear and its
/// undo) must not answer ENOSPC for a key that was free for its whole call.
///
/// Fan-out 2 over IDs 0..=3 with 0, 1, 2 taken. One thread allocates
/// (filling leaf 1, clearing the root's last hint bit), one frees 2 and then
/// raises a flag, and a third reads the flag and allocates. If the flag was
/// up, 2 or 3 was free for that alloc's whole call (the filler takes at most
/// one of them), so it must succeed. The main thread is the filler: the
/// telling order (fill claims, free runs, fill clears the hint, alloc runs
/// inside the clear's window) then costs two preemptions.
#[test]
fn alloc_races_fill_and_free_no_false_enospc() {
    model(2, || {
        let ledger = Ledger::new();
        let space = new_space::<2>(0, 3, Policy::Lowest);
        let set = Arc::new(space.new_set());
        for id in 0..3 {
            assert_eq!(set.alloc(0, 3, ledger.probe(id as usize, 0)), Ok(id));
        }
        let freed = Arc::new(AtomicBool::new(false));
        let freer = spawn_free_then_flag(&set, 2, &freed);
        let allocator = spawn_alloc_after_flag(&set, &ledger, 4, 3, &freed);
        let filled = set.alloc(0, 3, ledger.probe(3, 0));
        let (free_before, mine) = allocator.join().unwrap();
        freer.join().unwrap();
        assert!(
            filled.is_ok() || mine.is_ok(),
            "two free keys, two allocs, no ID"
        );
        if free_before {
            assert!(
                mine.is_ok(),
                "false ENOSPC: a key was free for the whole call"
            );
        }
        let ids: Vec<Ioasid> = [filled, mine].iter().filter_map(|r| r.ok()).collect();
        assert!(ids.iter().all(|id| [2, 3].contains(id)), "{ids:?}");
        if ids.len() == 2 {
            assert_ne!(ids[0], ids[1], "one ID handed out twice");
        }
        assert_eq!(space.live_count(), 2 + ids.len());
        drop(set);
        drop(space);
        assert_all_dropped_once(&ledger, 5);
    });
}

/// Repairers and `hint_seq`: in a full leaf under an empty root hint, the
/// first free un-fills the leaf and must repair the root's hint; a second
/// free in the same leaf only clears its claim bit (the leaf was not full).
/// An alloc that starts after the second free returned must find a key even
/// while the first free is still on its way up, because the repairer counts
/// itself into `hint_seq` before its claim clear, and the second free's
/// claim clear carries that count on.
///
/// Fan-out 2 over IDs 0..=3, all taken. The main thread frees 2 (the
/// repairer), a second thread frees 3 and raises a flag, a third reads the
/// flag and allocates.
#[test]
fn alloc_races_repairer_no_false_enospc() {
    model(2, || {
        let ledger = Ledger::new();
        let space = new_space::<2>(0, 3, Policy::Lowest);
        let set = Arc::new(space.new_set());
        for id in 0..4 {
            assert_eq!(set.alloc(0, 3, ledger.probe(id as usize, 0)), Ok(id));
        }
        let freed = Arc::new(AtomicBool::new(false));
        let second_free = spawn_free_then_flag(&set, 3, &freed);
        let allocator = spawn_alloc_after_flag(&set, &ledger, 4, 3, &freed);
        assert_eq!(set.free(2), Ok(()));
        let (free_before, got) = allocator.join().unwrap();
        second_free.join().unwrap();
        if free_before {
            assert!(
                got.is_ok(),
                "false ENOSPC: ID 3 was free for the whole call"
            );
        }
        if let Ok(id) = got {
            assert!(id == 2 || id == 3, "alloc got {id}");
        }
        // Whatever is left free is found, then the space is full.
        let left = if got.is_ok() { 1 } else { 2 };
        for token in 5..5 + left {
            assert!(
                set.alloc(0, 3, ledger.probe(token, 0)).is_ok(),
                "hints lost a key"
            );
        }
        assert_eq!(set.alloc(0, 3, ledger.probe(7, 0)), Err(Error::NoSpace));
        assert_eq!(space.live_count(), 4);
        drop(set);
        drop(space);
        let made = 5 + left + 1;
        for token in (0..5 + left).chain([7]) {
            assert_eq!(ledger.drops(token), 1, "probe {token} drop count");
        }
        assert_eq!(ledger.total_drops(), made, "drops of unknown probes");
    });
}

/// Cyclic reclaim: the free of a chunk's last live ID retires the chunk
/// (claim words to full, then back to empty, hints put back) while another
/// thread allocates in that chunk. Fan-out 2 over IDs 0..=11: three chunks
/// of 4, each with a leaf block. IDs 0..=8 were handed out in order and
/// 1..=7 freed, so the cursor is in chunk 2 and chunk 0 (outside its
/// window) holds only 0. One thread frees 0, which retires chunk 0 unless
/// the alloc's claim comes first; the other allocates in 0..=3, where 1, 2
/// and 3 were free for its whole call: it must get one of them (or 0), the
/// retire must leave no leaf retired and every hint exact, and afterwards
/// exactly the rest of the chunk is claimable.
#[test]
fn cyclic_retire_races_alloc_in_the_chunk() {
    model(3, || {
        let ledger = Ledger::new();
        let space = new_space::<2>(0, 11, Policy::Cyclic);
        let set = Arc::new(space.new_set());
        for id in 0..=8 {
            assert_eq!(set.alloc(0, 11, ledger.probe(id, 0)), Ok(id as Ioasid));
        }
        for id in 1..=7 {
            assert_eq!(set.free(id), Ok(()));
        }
        assert_eq!(space.chunks_reclaimed(), 0, "chunk 0 still holds 0");
        let freer = {
            let set = set.clone();
            spawn(move || set.free(0))
        };
        let allocator = {
            let (set, ledger) = (set.clone(), ledger.clone());
            spawn(move || set.alloc(0, 3, ledger.probe(9, 0)))
        };
        assert_eq!(freer.join().unwrap(), Ok(()));
        let got = allocator.join().unwrap();
        assert!(
            matches!(got, Ok(0..=3)),
            "1, 2 and 3 were free for the whole call: {got:?}"
        );
        // Chunk 0 by the free; chunk 1 too if the alloc, which wraps the
        // cursor into chunk 0, came last (chunk 1 left its window).
        assert!(space.chunks_reclaimed() <= 2);
        space.check_invariants().expect("after the race");
        // The other three IDs of chunk 0 are found, then it is full.
        for token in 10..13 {
            assert!(
                matches!(set.alloc(0, 3, ledger.probe(token, 0)), Ok(0..=3)),
                "a key of the retired chunk was lost"
            );
        }
        assert_eq!(set.alloc(0, 3, ledger.probe(13, 0)), Err(Error::NoSpace));
        space.check_invariants().expect("chunk 0 refilled");
        drop(set);
        drop(space);
        assert_all_dropped_once(&ledger, 14);
    });
}

/// A custom allocator that answers every request with the same ID, as a
/// host handing out one PASID twice would, and counts what comes back.
struct SameId {
    freed: loom::sync::atomic::AtomicUsize,
}

impl CustomAllocator for SameId {
    fn alloc(&self, _min: Ioasid, _max: Ioasid) -> CustomAlloc {
        CustomAlloc::Id(5)
    }

    fn free(&self, id: Ioasid) {
        assert_eq!(id, 5, "only the ID this hook gave comes back to it");
        // SeqCst: a plain counter read after the threads were joined.
        self.freed.fetch_add(1, LoomOrdering::SeqCst);
    }
}

/// Custom allocators: two allocs race on a hook that answers both with ID
/// 5. Exactly one records it; the other fails with EIO, records nothing
/// and hands its answer back to the hook.
/// Freed (kernel form), the ID goes back to the hook exactly once.
#[test]
fn custom_allocator_answers_race() {
    model(3, || {
        let ledger = Ledger::new();
        let space = new_space::<4>(0, 7, Policy::Lowest);
        let hook = Arc::new(SameId {
            freed: loom::sync::atomic::AtomicUsize::new(0),
        });
        assert!(space
            .set_allocator(Some(CustomHook::new(hook.clone())))
            .is_none());
        let set = Arc::new(space.new_set());
        let spawn_alloc = |token: usize| {
            let (set, ledger) = (set.clone(), ledger.clone());
            spawn(move || set.alloc(0, 7, ledger.probe(token, 0)))
        };
        let (a, b) = (spawn_alloc(0), spawn_alloc(1));
        let results = [a.join().unwrap(), b.join().unwrap()];
        assert_eq!(
            results.iter().filter(|r| **r == Ok(5)).count(),
            1,
            "{results:?}"
        );
        assert!(results.contains(&Err(Error::Io)), "{results:?}");
        // The refused answer went back to the hook (SPEC 6.3).
        assert_eq!(hook.freed.load(LoomOrdering::SeqCst), 1);
        assert_eq!(space.live_count(), 1);
        assert!(space.free(5));
        assert!(!space.free(5), "freed once");
        assert_eq!(hook.freed.load(LoomOrdering::SeqCst), 2);
        drop((set, space));
        assert_all_dropped_once(&ledger, 2);
    });
}

/// A custom allocator that answers every request with ID 5 and checks, in
/// its `free`, that 5 is still recorded (SPEC 6.3); it notes while a free
/// runs.
struct ChecksRecorded {
    space: loom::sync::Mutex<Option<Space<Probe, 4>>>,
    in_free: AtomicBool,
    freed: loom::sync::atomic::AtomicUsize,
    seen_recorded: loom::sync::atomic::AtomicUsize,
}

impl CustomAllocator for ChecksRecorded {
    fn alloc(&self, _min: Ioasid, _max: Ioasid) -> CustomAlloc {
        CustomAlloc::Id(5)
    }

    fn free(&self, id: Ioasid) {
        assert_eq!(id, 5);
        // SeqCst (all three): plain flags and counters of the model.
        self.in_free.store(true, LoomOrdering::SeqCst);
        let space = self.space.lock().unwrap().clone();
        if space.is_some_and(|space| token_at(&space, 5).is_some()) {
            self.seen_recorded.fetch_add(1, LoomOrdering::SeqCst);
        }
        self.freed.fetch_add(1, LoomOrdering::SeqCst);
        self.in_free.store(false, LoomOrdering::SeqCst);
    }
}

/// Custom allocators in the kernel's order: a free of custom ID 5 races an
/// allocation that the hook answers with 5 again. Every `free` call sees 5
/// still recorded; the allocation either is refused (5 was live: the answer
/// goes back to the hook) or records 5 only after the free's hook returned.
#[test]
fn custom_free_races_reissue_of_the_same_id() {
    model(2, || {
        let ledger = Ledger::new();
        let space = new_space::<4>(0, 7, Policy::Lowest);
        let hook = Arc::new(ChecksRecorded {
            space: loom::sync::Mutex::new(Some(space.clone())),
            in_free: AtomicBool::new(false),
            freed: loom::sync::atomic::AtomicUsize::new(0),
            seen_recorded: loom::sync::atomic::AtomicUsize::new(0),
        });
        space.set_allocator(Some(CustomHook::new(hook.clone())));
        let set = Arc::new(space.new_set());
        assert_eq!(set.alloc(0, 7, ledger.probe(0, 0)), Ok(5));
        let freer = {
            let space = space.clone();
            spawn(move || space.free(5))
        };
        let allocator = {
            let (set, ledger, hook) = (set.clone(), ledger.clone(), hook.clone());
            spawn(move || {
                let got = set.alloc(0, 7, ledger.probe(1, 0));
                // SeqCst: a plain flag.
                let free_running = hook.in_free.load(LoomOrdering::SeqCst);
                (got, free_running)
            })
        };
        assert!(freer.join().unwrap());
        let (got, free_running) = allocator.join().unwrap();
        // SeqCst: read after the joins.
        let seen = || hook.seen_recorded.load(LoomOrdering::SeqCst);
        match got {
            Ok(id) => {
                assert_eq!(id, 5);
                assert!(!free_running, "5 recorded again while its free ran");
                assert!(space.free(5));
                assert_eq!(seen(), 2, "a free hook ran with 5 no longer recorded");
            }
            // The refused answer's free may run after 5 is gone; the
            // real free saw it.
            Err(e) => {
                assert_eq!(e, Error::Io);
                assert!(seen() >= 1, "the free hook ran with 5 no longer recorded");
            }
        }
        assert_eq!(hook.freed.load(LoomOrdering::SeqCst), 2);
        assert_eq!(space.live_count(), 0);
        *hook.space.lock().unwrap() = None;
        drop((set, space));
        assert_all_dropped_once(&ledger, 2);
    });
}

/// SPEC 6.3 and 6.6, the kernel's order with a notifier: a kernel-form
/// free of custom ID 5 (FREE first, the hook after the send) races the
/// teardown of its set (which detaches a word whose free is under way, or
/// frees 5 itself). FREE is sent once and before the hook, the hook runs
/// once, the set's quota and the number come back, the data is dropped once.
#[test]
fn custom_free_sends_free_first_and_races_set_teardown() {
    model(2, || {
        let ledger = Ledger::new();
        let space = new_space::<4>(0, 7, Policy::Lowest);
        let hook = Arc::new(SameId {
            freed: loom::sync::atomic::AtomicUsize::new(0),
        });
        space.set_allocator(Some(CustomHook::new(hook.clone())));
        let frees = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let _registration = {
            let (hook, frees) = (hook.clone(), frees.clone());
            space.register_notifier(0, move |n| {
                if n.event() == Event::Free {
                    // Each FREE before its own hook call. SeqCst: plain
                    // counters of the model.
                    assert_eq!(
                        hook.freed.load(LoomOrdering::SeqCst),
                        frees.load(LoomOrdering::SeqCst),
                        "FREE after the hook"
                    );
                    frees.fetch_add(1, LoomOrdering::SeqCst);
                }
                ControlFlow::Continue(())
            })
        };
        let set = space.try_new_set(Some(1)).unwrap();
        assert_eq!(set.alloc(0, 7, ledger.probe(0, 0)), Ok(5));
        let freer = {
            let space = space.clone();
            spawn(move || space.free(5))
        };
        let teardown = spawn(move || drop(set));
        let _freed_by_us = freer.join().unwrap();
        teardown.join().unwrap();
        assert_eq!(frees.load(LoomOrdering::SeqCst), 1, "one FREE");
        assert_eq!(hook.freed.load(LoomOrdering::SeqCst), 1, "one hook call");
        assert_eq!(space.live_count(), 0);
        space.check_invariants().unwrap();
        let next = space.try_new_set(Some(1)).unwrap();
        assert_eq!(next.alloc(0, 7, ledger.probe(1, 0)), Ok(5), "number back");
        drop(next);
        space.set_allocator(None);
        drop(space);
        assert_all_dropped_once(&ledger, 2);
    });
}

/// SPEC 6.2: a get races the last put of a tracked ID (count 1, EXT set),
/// while a third thread tries to allocate the same number. The get either
/// wins against the put (then its own put releases the first incarnation),
/// or comes after the release and fails or gets the new incarnation; it
/// never revives a released ID, and the number is never handed out again
/// while the get's reference exists (the holder sees one incarnation's data
/// for its whole hold).
#[test]
fn get_races_the_last_put() {
    model(2, || {
        let ledger = Ledger::new();
        let space = new_space::<4>(0, 3, Policy::Lowest);
        let set = Arc::new(space.new_set());
        assert_eq!(set.alloc(0, 0, ledger.probe(0, 0)), Ok(0));
        space.get(0).unwrap();
        assert_eq!(space.put(0), Ok(false)); // tracked, one reference left
        let last_put = {
            let space = space.clone();
            spawn(move || space.put(0))
        };
        let getter = {
            let space = space.clone();
            spawn(move || match space.get(0) {
                Ok(()) => {
                    let seen = token_at(&space, 0).expect("held: found");
                    thread::yield_now();
                    assert_eq!(token_at(&space, 0), Some(seen), "held: not reused");
                    Some((seen, space.put(0).expect("our reference")))
                }
                Err(e) => {
                    assert_eq!(e, Error::NotFound);
                    None
                }
            })
        };
        let realloc = {
            let (set, ledger) = (set.clone(), ledger.clone());
            spawn(move || set.alloc(0, 0, ledger.probe(1, 0)))
        };
        let last_put = last_put
            .join()
            .unwrap()
            .expect("the allocation's reference");
        let getter = getter.join().unwrap();
        let realloc = realloc.join().unwrap();
        match getter {
            // Got the first incarnation: exactly one of the two puts released it.
            Some((0, released)) => assert!(released != last_put),
            // Got the new one: its allocation reference remains.
            Some((1, released)) => {
                assert!(last_put && !released);
                assert_eq!(realloc, Ok(0));
            }
            Some(other) => panic!("bad token {other:?}"),
            None => assert!(last_put),
        }
        match realloc {
            Ok(0) => assert_eq!(token_at(&space, 0), Some(1)),
            Err(Error::NoSpace) => assert_eq!(token_at(&space, 0), None),
            other => panic!("bad realloc {other:?}"),
        }
        drop(set);
        drop(space);
        assert_all_dropped_once(&ledger, 2);
    });
}

/// SPEC 6.2 and 6.6: the free of a referenced ID (it enters FREE_PENDING
/// and sends FREE) races the last put of that ID and an allocation of the
/// same number by another set. The number is handed out again only after
/// the FREE reached the chain: the later of the free's send and the last
/// put releases it, once; the FREE is sent once.
#[test]
fn free_pending_send_races_the_last_put_and_a_realloc() {
    model(3, || {
        let space: Space<u32, 4> = Space::builder()
            .range(0, 3)
            .domain(Domain::new())
            .build()
            .unwrap();
        let (set, other) = (Arc::new(space.new_set()), Arc::new(space.new_set()));
        let frees = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let _registration = {
            let frees = frees.clone();
            space.register_notifier(0, move |n| {
                if n.event() == Event::Free && n.data().map(|d| *d) == Some(1) {
                    frees.fetch_add(1, LoomOrdering::SeqCst);
                }
                ControlFlow::Continue(())
            })
        };
        assert_eq!(set.alloc(0, 0, 1), Ok(0));
        space.get(0).unwrap(); // two references: the free leaves it FREE_PENDING
        let freer = {
            let set = set.clone();
            spawn(move || set.free(0))
        };
        let putter = {
            let space = space.clone();
            spawn(move || space.put(0))
        };
        let realloc = {
            let (other, frees) = (other.clone(), frees.clone());
            spawn(move || {
                let got = other.alloc(0, 0, 2);
                if got.is_ok() {
                    assert_eq!(
                        frees.load(LoomOrdering::SeqCst),
                        1,
                        "reused before its FREE"
                    );
                }
                got
            })
        };
        assert_eq!(freer.join().unwrap(), Ok(()));
        putter.join().unwrap().expect("our reference");
        let realloc = realloc.join().unwrap();
        assert_eq!(frees.load(LoomOrdering::SeqCst), 1, "one FREE");
        match realloc {
            Ok(0) => {}
            Err(Error::NoSpace) => assert_eq!(other.alloc(0, 0, 2), Ok(0), "released"),
            got => panic!("bad realloc {got:?}"),
        }
        // Released once: the number is taken by the new incarnation only.
        assert_eq!(set.alloc(0, 0, 3), Err(Error::NoSpace));
        assert_eq!(space.ref_count(0), Some(1));
        space.check_invariants().unwrap();
    });
}

/// SPEC 6.2: a first get of an untracked ID races its free. Either the
/// free wins (the get fails: NotFound) or the get's CAS to word|EXT wins
/// and the free leaves the ID FREE_PENDING until the getter's put, which
/// releases it. Exactly one release, the value dropped once.
#[test]
fn first_get_races_free() {
    model(3, || {
        let ledger = Ledger::new();
        let space = new_space::<4>(0, 3, Policy::Lowest);
        let set = Arc::new(space.new_set());
        assert_eq!(set.alloc(0, 0, ledger.probe(0, 0)), Ok(0));
        let freer = {
            let set = set.clone();
            spawn(move || set.free(0))
        };
        let getter = {
            let space = space.clone();
            spawn(move || match space.get(0) {
                Ok(()) => {
                    assert_eq!(token_at(&space, 0), Some(0), "still found while held");
                    Some(space.put(0).expect("our reference"))
                }
                Err(e) => {
                    assert_eq!(e, Error::NotFound);
                    None
                }
            })
        };
        assert_eq!(freer.join().unwrap(), Ok(()));
        // The getter's put released the ID if it came after the free
        // (Some(true)), else the free did; either way it is gone now.
        let _ = getter.join().unwrap();
        assert_eq!(token_at(&space, 0), None);
        assert_eq!(space.ref_count(0), None);
        assert_eq!(
            set.alloc(0, 0, ledger.probe(1, 0)),
            Ok(0),
            "released: reusable"
        );
        drop(set);
        drop(space);
        assert_all_dropped_once(&ledger, 2);
    });
}

/// SPEC 6.5: an attach of a SPID races the free of its ID (untracked at
/// first, so the attach's CAS to word|EXT races the free's CAS to 0, and
/// later its record CAS races the free's). The attach returns `Ok` (the
/// free then detached it) or `NotFound`; either way the SPID ends detached,
/// the set's entry clear or stale-and-ignored, and the number and the SPID
/// are reusable at once.
#[test]
fn attach_spid_races_free() {
    model(2, || {
        let ledger = Ledger::new();
        let space = new_space::<4>(0, 3, Policy::Lowest);
        let set = Arc::new(space.new_set());
        assert_eq!(set.alloc(0, 0, ledger.probe(0, 0)), Ok(0));
        let attach = {
            let set = set.clone();
            spawn(move || set.attach_spid(0, 7))
        };
        let free = {
            let space = space.clone();
            spawn(move || space.free(0))
        };
        let attached = attach.join().unwrap();
        assert!(free.join().unwrap(), "the one free of a live ID");
        assert!(
            matches!(attached, Ok(()) | Err(Error::NotFound)),
            "{attached:?}"
        );
        assert_eq!(set.find_by_spid(7), Err(Error::NotFound));
        assert_eq!(set.get_by_spid(7), Err(Error::NotFound));
        assert_eq!(space.spid(0), None);
        // The number comes back untracked and the SPID is free for it.
        assert_eq!(set.alloc(0, 0, ledger.probe(1, 0)), Ok(0));
        assert_eq!(space.spid(0), None);
        assert_eq!(set.attach_spid(0, 7), Ok(()));
        assert_eq!(set.find_by_spid(7), Ok(0));
        drop(set);
        drop(space);
        assert_all_dropped_once(&ledger, 2);
    });
}

/// SPEC 6.5: `find_by_spid` with get races the last put of the ID (and a
/// re-allocation of its number). The get either wins (the ID stays live
/// with its SPID while the reference is held, and the getter's put is the
/// last) or finds nothing; it never takes a reference on a released ID,
/// and a new incarnation of the number never answers the old SPID.
#[test]
fn get_by_spid_races_the_last_put() {
    model(2, || {
        let ledger = Ledger::new();
        let space = new_space::<4>(0, 3, Policy::Lowest);
        let set = Arc::new(space.new_set());
        assert_eq!(set.alloc(0, 0, ledger.probe(0, 0)), Ok(0));
        set.attach_spid(0, 3).unwrap();
        let getter = {
            let (set, space) = (set.clone(), space.clone());
            spawn(move || match set.get_by_spid(3) {
                Ok(id) => {
                    assert_eq!(id, 0);
                    assert_eq!(token_at(&space, 0), Some(0), "held: the first incarnation");
                    assert_eq!(space.spid(0), Some(3), "held: the SPID stays");
                    Some(space.put(0).expect("our reference"))
                }
                Err(e) => {
                    assert_eq!(e, Error::NotFound);
                    None
                }
            })
        };
        let last_put = {
            let space = space.clone();
            spawn(move || space.put(0))
        };
        let last_put = last_put
            .join()
            .unwrap()
            .expect("the allocation's reference");
        match getter.join().unwrap() {
            Some(released) => assert!(released != last_put, "exactly one put releases"),
            None => assert!(last_put),
        }
        assert_eq!(token_at(&space, 0), None);
        assert_eq!(set.find_by_spid(3), Err(Error::NotFound));
        assert_eq!(set.alloc(0, 0, ledger.probe(1, 0)), Ok(0));
        assert_eq!(
            set.find_by_spid(3),
            Err(Error::NotFound),
            "not the new incarnation"
        );
        drop(set);
        drop(space);
        assert_all_dropped_once(&ledger, 2);
    });
}

/// SPEC 6.6: an unregister races a call of its block (the block runs for an
/// allocation on another thread). Unregister returns only when no call of
/// the block is running, and no call starts after it returned: the calls
/// counted when it returns are all the calls there ever are.
#[test]
fn unregister_races_notify() {
    model(3, || {
        let space: Space<u32, 4> = Space::builder()
            .range(0, 3)
            .domain(Domain::new())
            .build()
            .unwrap();
        let set = Arc::new(space.new_set());
        let inside = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let calls = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let registration = {
            let (inside, calls) = (inside.clone(), calls.clone());
            space.register_notifier(0, move |_| {
                inside.fetch_add(1, LoomOrdering::SeqCst);
                calls.fetch_add(1, LoomOrdering::SeqCst);
                thread::yield_now();
                inside.fetch_sub(1, LoomOrdering::SeqCst);
                ControlFlow::Continue(())
            })
        };
        let allocator = {
            let set = set.clone();
            spawn(move || set.alloc(0, 3, 7).expect("room"))
        };
        let unregisterer = {
            let (inside, calls) = (inside.clone(), calls.clone());
            spawn(move || {
                registration.unregister();
                assert_eq!(inside.load(LoomOrdering::SeqCst), 0, "a call still runs");
                calls.load(LoomOrdering::SeqCst)
            })
        };
        let id = allocator.join().unwrap();
        let calls_at_return = unregisterer.join().unwrap();
        assert!(calls_at_return <= 1);
        assert_eq!(
            calls.load(LoomOrdering::SeqCst),
            calls_at_return,
            "a call began after unregister returned"
        );
        set.free(id).unwrap();
        assert_eq!(calls.load(LoomOrdering::SeqCst), calls_at_return);
    });
}

/// SPEC 6.6: a register races events. An event that begins after the
/// register returned (here: after its flag is seen) reaches the block;
/// each event reaches it at most once.
#[test]
fn register_races_notify() {
    model(3, || {
        let space: Space<u32, 4> = Space::builder()
            .range(0, 3)
            .domain(Domain::new())
            .build()
            .unwrap();
        let set = Arc::new(space.new_set());
        let registered = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let registrar = {
            let (space, registered, seen) = (space.clone(), registered.clone(), seen.clone());
            spawn(move || {
                let registration = space.register_notifier(0, move |n| {
                    if n.event() == ioasid::Event::Alloc {
                        seen.fetch_add(1, LoomOrdering::SeqCst);
                    }
                    ControlFlow::Continue(())
                });
                // Release: the register happens before a reader of the flag.
                registered.store(true, LoomOrdering::Release);
                registration
            })
        };
        let allocator = {
            let (set, registered) = (set.clone(), registered.clone());
            spawn(move || {
                let first = set.alloc(0, 3, 1).expect("room");
                // Acquire: pairs with the Release above.
                let after = registered.load(LoomOrdering::Acquire);
                let second = set.alloc(0, 3, 2).expect("room");
                (first, second, after)
            })
        };
        let registration = registrar.join().unwrap();
        let (first, second, after) = allocator.join().unwrap();
        let seen_now = seen.load(LoomOrdering::SeqCst);
        assert!(seen_now <= 2, "an event reached the block twice");
        if after {
            assert!(seen_now >= 1, "the event after the register was missed");
        }
        set.free(first).unwrap();
        set.free(second).unwrap();
        drop(registration);
    });
}

/// A notifier registered by token races the last drop of the token's set
/// (its teardown and drop hook): the block ends parked, saw the set's FREE
/// at most once, and joins the token's next set before its first event.
#[test]
fn token_register_races_the_last_drop() {
    model(3, || {
        use ioasid::fanout::TokenSets;
        let space: Space<u32, 2> = Space::builder()
            .range(0, 1)
            .domain(Domain::new())
            .build()
            .unwrap();
        let mms: Arc<TokenSets<u8, u32, 2>> =
            Arc::new(TokenSets::new(space, ioasid::Capacity::new(4)));
        let set = mms.create(1, 2).unwrap();
        set.alloc(0, 1, 1).unwrap();
        let events = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let dropper = spawn(move || drop(set));
        let registrar = {
            let (mms, events) = (mms.clone(), events.clone());
            spawn(move || {
                mms.register_notifier(1, 0, move |_| {
                    events.fetch_add(1, LoomOrdering::SeqCst);
                    ControlFlow::Continue(())
                })
            })
        };
        dropper.join().unwrap();
        let registration = registrar.join().unwrap();
        assert!(events.load(LoomOrdering::SeqCst) <= 1, "the FREE twice");
        assert!(!registration.is_attached(), "parked once the set is gone");
        let before = events.load(LoomOrdering::SeqCst);
        let next = mms.create(1, 2).unwrap();
        assert!(registration.is_attached());
        next.alloc(0, 1, 2).unwrap();
        assert_eq!(events.load(LoomOrdering::SeqCst), before + 1, "its ALLOC");
        drop(next);
        assert!(!registration.is_attached());
        drop(registration);
    });
}

/// A create for a token races the teardown of its previous set: a block
/// registered throughout sees the old set's FREE exactly once and every
/// event of the new set, and ends parked.
#[test]
fn token_create_races_teardown() {
    model(3, || {
        use ioasid::fanout::TokenSets;
        let space: Space<u32, 2> = Space::builder()
            .range(0, 1)
            .domain(Domain::new())
            .build()
            .unwrap();
        let mms: Arc<TokenSets<u8, u32, 2>> =
            Arc::new(TokenSets::new(space, ioasid::Capacity::new(4)));
        let (allocs, frees) = (
            Arc::new(loom::sync::atomic::AtomicUsize::new(0)),
            Arc::new(loom::sync::atomic::AtomicUsize::new(0)),
        );
        let registration = {
            let (allocs, frees) = (allocs.clone(), frees.clone());
            mms.register_notifier(1, 0, move |n| {
                match n.event() {
                    ioasid::Event::Alloc => allocs.fetch_add(1, LoomOrdering::SeqCst),
                    ioasid::Event::Free => frees.fetch_add(1, LoomOrdering::SeqCst),
                    _ => 0,
                };
                ControlFlow::Continue(())
            })
        };
        let old = mms.create(1, 2).unwrap();
        old.alloc(0, 1, 1).unwrap();
        let dropper = spawn(move || drop(old));
        let creator = {
            let mms = mms.clone();
            spawn(move || {
                let new = mms.create(1, 2).ok()?;
                new.alloc(0, 1, 2).ok()?;
                Some(new)
            })
        };
        dropper.join().unwrap();
        let new = creator.join().unwrap();
        let made = 1 + usize::from(new.is_some());
        assert_eq!(allocs.load(LoomOrdering::SeqCst), made, "every ALLOC");
        assert_eq!(frees.load(LoomOrdering::SeqCst), 1, "the old set's FREE");
        assert_eq!(registration.is_attached(), new.is_some());
        drop(new);
        assert_eq!(frees.load(LoomOrdering::SeqCst), made, "every FREE");
        assert!(!registration.is_attached());
        drop(registration);
    });
}
