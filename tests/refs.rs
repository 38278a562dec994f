//! Reference counts and FREE_PENDING (SPEC 6.2): single-threaded semantics,
//! set teardown, and threads racing gets against the last put and free.

mod common;
use common::Tag;
use ioasid::{CustomAlloc, CustomAllocator, CustomHook, Domain, Error, Policy, Space};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[test]
fn counts_go_up_and_down_and_the_last_put_releases() {
    let space = common::space(0, 7, Policy::Lowest);
    let set = space.new_set();
    let id = set.alloc(0, 7, 40).unwrap();
    assert_eq!(space.ref_count(id), Some(1), "the allocation's reference");
    set.get(id).unwrap();
    space.get(id).unwrap();
    assert_eq!(space.ref_count(id), Some(3));
    assert_eq!(set.put(id), Ok(false));
    assert_eq!(space.put(id), Ok(false));
    assert_eq!(space.ref_count(id), Some(1));
    assert!(!space.is_free_pending(id));
    assert_eq!(space.put(id), Ok(true), "a put of the last reference frees");
    assert_eq!(space.ref_count(id), None);
    assert_eq!(set.free(id), Err(Error::NotFound));
    assert_eq!(space.put(id), Err(Error::NotFound));
    assert_eq!(space.get(id), Err(Error::NotFound));
    assert_eq!(set.alloc(0, 7, 41), Ok(id), "released: reusable at once");
    assert_eq!(
        space.ref_count(id),
        Some(1),
        "a new incarnation starts untracked"
    );
}

#[test]
fn free_with_references_is_pending_until_the_last_put() {
    let space = common::space(0, 1, Policy::Lowest);
    let set = space.new_set_with_quota(2);
    let id = set.alloc(0, 1, 5).unwrap();
    set.get(id).unwrap();
    set.get(id).unwrap();
    assert_eq!(set.free(id), Ok(()));
    assert!(space.is_free_pending(id));
    assert_eq!(space.ref_count(id), Some(2));
    // Found, not got, not freed twice, not walked, not allocatable.
    assert_eq!(space.with(id, |v| *v), Some(5));
    assert_eq!(set.with(id, |v| *v), Ok(5));
    assert_eq!(set.get(id), Err(Error::NotFound));
    assert_eq!(space.get(id), Err(Error::NotFound));
    assert_eq!(set.free(id), Err(Error::NotFound));
    assert!(!space.free(id));
    assert!(
        common::ids_of(&set).is_empty(),
        "for_each skips FREE_PENDING IDs"
    );
    assert!(!set.is_empty(), "a FREE_PENDING ID counts until released");
    assert_eq!(set.len(), 1);
    assert_eq!(set.alloc(id, id, 6), Err(Error::NoSpace));
    // Still counts against the quota.
    let other = set.alloc(0, 1, 7).unwrap();
    assert_eq!(set.alloc(0, 1, 8), Err(Error::QuotaExceeded));
    set.free(other).unwrap();
    // Data may still change (a holder updating its context).
    space.set_data(id, 9).unwrap();
    assert_eq!(space.with(id, |v| *v), Some(9));
    assert!(space.is_free_pending(id), "set_data keeps the ID tracked");
    assert_eq!(set.put(id), Ok(false));
    assert_eq!(set.put(id), Ok(true));
    assert!(!space.is_free_pending(id));
    assert_eq!(space.with(id, |v| *v), None);
    assert!(set.is_empty());
    assert_eq!(set.alloc(id, id, 10), Ok(id));
}

#[test]
fn checked_forms_refuse_other_sets_ids_and_change_nothing() {
    let space = common::space(0, 9, Policy::Lowest);
    let (a, b) = (space.new_set(), space.new_set());
    let id = a.alloc(0, 9, 1).unwrap();
    assert_eq!(b.get(id), Err(Error::PermissionDenied));
    assert_eq!(b.put(id), Err(Error::PermissionDenied));
    assert_eq!(space.ref_count(id), Some(1));
    a.get(id).unwrap();
    assert_eq!(b.put(id), Err(Error::PermissionDenied));
    assert_eq!(b.free(id), Err(Error::PermissionDenied));
    assert_eq!(space.ref_count(id), Some(2));
    assert_eq!(a.get(9), Err(Error::NotFound));
    assert_eq!(a.get(100), Err(Error::NotFound), "outside the space");
    assert_eq!(space.put(100), Err(Error::NotFound));
}

#[test]
fn teardown_leaves_referenced_ids_pending_and_detached() {
    let space = common::space(0, 15, Policy::Lowest);
    let vm = space.new_set_with_quota(4);
    let held = vm.alloc(0, 15, 1).unwrap();
    let loose = vm.alloc(0, 15, 2).unwrap();
    let freed_held = vm.alloc(0, 15, 3).unwrap();
    vm.get(held).unwrap();
    vm.get(freed_held).unwrap();
    vm.free(freed_held).unwrap();
    drop(vm);
    assert_eq!(
        space.with(loose, |v| *v),
        None,
        "unreferenced: freed at once"
    );
    assert!(space.is_free_pending(held));
    assert!(space.is_free_pending(freed_held));
    assert_eq!(space.ref_count(held), Some(1));
    // A set made after the teardown (maybe with the same index) never sees
    // the detached IDs as its own.
    let next = space.new_set();
    assert_eq!(next.with(held, |v| *v), Err(Error::PermissionDenied));
    assert!(common::ids_of(&next).is_empty());
    assert_eq!(next.free(held), Err(Error::PermissionDenied));
    assert_eq!(space.with(held, |v| *v), Some(1));
    assert_eq!(space.put(held), Ok(true));
    assert_eq!(space.put(freed_held), Ok(true));
    assert_eq!(space.live_count(), 0);
    assert_eq!(next.alloc(0, 15, 4), Ok(0));
}

#[test]
fn teardown_of_a_referenced_id_gives_the_quota_back_once() {
    let space = common::space(0, 15, Policy::Lowest);
    let vm = space.new_set_with_quota(1);
    let id = vm.alloc(0, 15, 1).unwrap();
    vm.get(id).unwrap();
    vm.free(id).unwrap();
    assert_eq!(vm.alloc(0, 15, 2), Err(Error::QuotaExceeded));
    assert_eq!(vm.put(id), Ok(true));
    assert_eq!(vm.len(), 0);
    let again = vm.alloc(0, 15, 2).unwrap();
    assert_eq!(again, id);
    assert_eq!(vm.len(), 1);
}

/// A custom allocator that records the frees it is handed.
struct Recording(Mutex<Vec<u32>>);

impl CustomAllocator for Recording {
    fn alloc(&self, min: u32, _max: u32) -> CustomAlloc {
        CustomAlloc::Id(min)
    }
    fn free(&self, id: u32) {
        self.0.lock().unwrap().push(id);
    }
}

#[test]
fn the_last_put_calls_the_custom_free_hook_once() {
    let space: Space<u32> = Space::builder()
        .range(0, 99)
        .domain(Domain::new())
        .build()
        .unwrap();
    let hook = Arc::new(Recording(Mutex::new(Vec::new())));
    space.set_allocator(Some(CustomHook::new(hook.clone())));
    let set = space.new_set();
    let id = set.alloc(42, 99, 0).unwrap();
    assert_eq!(id, 42);
    space.get(id).unwrap();
    assert!(space.free(id));
    assert!(
        hook.0.lock().unwrap().is_empty(),
        "pending: not given back yet"
    );
    assert_eq!(space.put(id), Ok(true));
    assert_eq!(*hook.0.lock().unwrap(), vec![42]);
}

/// Getters race the free and the last put of one ID, over and over. A
/// holder (whose get succeeded) checks the number still carries its
/// incarnation's data until it puts: an ID is never handed out again while
/// a reference exists. Every value is dropped exactly once.
#[test]
fn gets_racing_free_and_last_put_never_revive_an_id() {
    const ROUNDS: usize = 20_000;
    const GETTERS: usize = 3;
    let drops = Arc::new(AtomicUsize::new(0));
    let domain = Domain::new();
    let space: Space<Tag> = Space::builder()
        .range(0, 0)
        .domain(domain.clone())
        .build()
        .unwrap();
    let set = space.new_set();
    let round = AtomicUsize::new(usize::MAX);
    let stop = AtomicBool::new(false);
    let held_gets = AtomicUsize::new(0);
    // Values made, refused allocations' included (dropped at once).
    let created = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let mut getters = Vec::new();
        for _ in 0..GETTERS {
            getters.push(s.spawn(|| {
                // One try per round, so every incarnation is released at
                // last (getters taking turns could keep an ID live forever).
                let mut tried = usize::MAX - 1;
                while !stop.load(Ordering::SeqCst) {
                    let expected = round.load(Ordering::SeqCst);
                    if expected == tried {
                        std::thread::yield_now();
                        continue;
                    }
                    tried = expected;
                    if space.get(0).is_ok() {
                        held_gets.fetch_add(1, Ordering::Relaxed);
                        // Whatever incarnation we got, it keeps its data
                        // until our put: never replaced by the next round's.
                        let seen = space.with(0, |c| c.mark).expect("held: found");
                        for _ in 0..3 {
                            assert_eq!(space.with(0, |c| c.mark), Some(seen));
                        }
                        // A round that ended with a put (odd) leaves its ID
                        // live while a holder remains, so it may still be got
                        // in the next round; one that ended with a free left
                        // it FREE_PENDING, never got again. Nothing older
                        // exists: each alloc waits for the last release.
                        let put_round_still_live = expected != usize::MAX
                            && expected > 0
                            && seen == expected - 1
                            && seen % 2 == 1;
                        assert!(
                            seen >= expected || expected == usize::MAX || put_round_still_live,
                            "never a released incarnation's data (round {expected}, saw {seen})"
                        );
                        let _ = space.put(0).expect("our reference");
                    }
                }
            }));
        }
        for r in 0..ROUNDS {
            round.store(r, Ordering::SeqCst);
            let id = loop {
                created.fetch_add(1, Ordering::SeqCst);
                match set.alloc(
                    0,
                    0,
                    Tag {
                        id: 0,
                        mark: r,
                        drops: drops.clone(),
                    },
                ) {
                    Ok(id) => break id,
                    Err(Error::NoSpace) => std::thread::yield_now(),
                    Err(e) => panic!("{e:?}"),
                }
            };
            std::thread::yield_now();
            if r % 2 == 0 {
                assert_eq!(set.free(id), Ok(()));
            } else {
                // The allocation's reference dropped by a put.
                assert!(set.put(id).is_ok());
            }
        }
        stop.store(true, Ordering::SeqCst);
        // Joined for real: a thread's exit hands its epoch garbage (values
        // of IDs its last put released) back to the domain.
        for getter in getters {
            getter.join().unwrap();
        }
    });
    // Wait for the last round's ID to be released by its last holder.
    assert_eq!(space.live_count(), 0);
    drop(set);
    drop(space);
    drop(domain);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        created.load(Ordering::SeqCst),
        "each value dropped once"
    );
    assert!(
        held_gets.load(Ordering::Relaxed) > 0,
        "the race was exercised"
    );
}
