//! Single-threaded semantics of the Rust API (contract §3, docs/CONTRACT.md), at tiny and
//! default fan-out.

mod common;
use common::{Scripted, Tag};
// The generic space: some tests need a small fan-out.
use ioasid::fanout::Space;
use ioasid::{CustomAlloc, CustomAllocator, CustomHook, Domain, Error, Policy, MAX_IOASID};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

fn make_space<const F: usize>(min: u32, max: u32, policy: Policy) -> Space<u32, F> {
    Space::builder()
        .range(min, max)
        .policy(policy)
        .build()
        .unwrap()
}

#[test]
fn lowest_hands_out_ten_thousand_in_order_then_refills_holes() {
    let space = make_space::<64>(0, MAX_IOASID, Policy::Lowest);
    let set = space.new_set();
    for expected in 0..10_000 {
        assert_eq!(set.alloc(0, MAX_IOASID, expected), Ok(expected));
    }
    set.free(20).unwrap();
    set.free(21).unwrap();
    assert_eq!(set.alloc(0, MAX_IOASID, 0), Ok(20));
    assert_eq!(set.alloc(0, MAX_IOASID, 0), Ok(21));
    assert_eq!(set.alloc(0, MAX_IOASID, 0), Ok(10_000));
}

#[test]
fn tiny_fanout_fills_every_leaf_and_splits() {
    // 4-way nodes over 1000 keys: 5 levels, partial last nodes.
    let space = make_space::<4>(0, 999, Policy::Lowest);
    let set = space.new_set();
    for expected in 0..1000 {
        assert_eq!(set.alloc(0, 999, expected), Ok(expected));
    }
    assert_eq!(set.alloc(0, 999, 0), Err(Error::NoSpace));
    // Free one ID in every leaf, in a scattered order, then get them back lowest-first.
    let mut freed: Vec<u32> = (0..250).map(|leaf| leaf * 4 + (leaf % 4)).collect();
    for &id in freed.iter().rev() {
        set.free(id).unwrap();
    }
    freed.sort();
    for &id in &freed {
        assert_eq!(set.alloc(0, 999, id), Ok(id));
    }
    assert_eq!(set.alloc(0, 999, 0), Err(Error::NoSpace));
    assert_eq!(space.live_count(), 1000);
}

#[test]
fn full_range_enospc_then_exactly_the_freed_one_comes_back() {
    for policy in [Policy::Lowest, Policy::Cyclic, Policy::Any] {
        let space = make_space::<4>(100, 163, policy);
        let set = space.new_set();
        let mut got: Vec<u32> = (0..64).map(|i| set.alloc(100, 163, i).unwrap()).collect();
        got.sort();
        assert_eq!(got, (100..=163).collect::<Vec<_>>(), "{policy:?}");
        assert_eq!(set.alloc(100, 163, 0), Err(Error::NoSpace), "{policy:?}");
        set.free(137).unwrap();
        assert_eq!(set.alloc(0, MAX_IOASID, 0), Ok(137), "{policy:?}");
        assert_eq!(set.alloc(100, 163, 0), Err(Error::NoSpace), "{policy:?}");
    }
}

#[test]
fn edge_ids_are_allocatable_exactly() {
    let edges = [0, 1, 0xFFFFF, 0x100000, MAX_IOASID - 1, MAX_IOASID];
    let full = make_space::<64>(0, MAX_IOASID, Policy::Lowest);
    let set = full.new_set();
    for id in edges {
        assert_eq!(set.alloc(id, id, id), Ok(id));
        assert_eq!(set.alloc(id, id, id), Err(Error::NoSpace), "{id:#x} taken");
        assert_eq!(set.with(id, |d| *d), Ok(id));
    }
    assert_eq!(common::ids_of(&set), edges.to_vec());
    // A 20-bit PASID space: inclusive bounds at both ends.
    let pasids = make_space::<64>(1, 0xFFFFF, Policy::Lowest);
    let set = pasids.new_set();
    assert_eq!(
        set.alloc(0, 0, 0),
        Err(Error::InvalidArgument),
        "0 lies outside"
    );
    assert_eq!(set.alloc(0, 5, 0), Ok(1), "clamped to the space");
    assert_eq!(set.alloc(0xFFFFF, u32::MAX, 0), Ok(0xFFFFF));
    assert_eq!(
        set.alloc(0x100000, u32::MAX, 0),
        Err(Error::InvalidArgument)
    );
}

#[test]
fn reversed_and_missing_ranges_are_invalid_and_change_nothing() {
    let space = make_space::<4>(10, 20, Policy::Lowest);
    let set = space.new_set_with_quota(5);
    assert_eq!(set.alloc(15, 14, 0), Err(Error::InvalidArgument));
    assert_eq!(set.alloc(0, 9, 0), Err(Error::InvalidArgument));
    assert_eq!(set.alloc(21, 30, 0), Err(Error::InvalidArgument));
    assert_eq!(set.len(), 0);
    assert_eq!(space.live_count(), 0);
    assert_eq!(Space::<u32>::new(5, 4).err(), Some(Error::InvalidArgument));
    assert_eq!(
        Space::<u32>::new(0, u32::MAX).err(),
        Some(Error::InvalidArgument)
    );
    let one: Space<u32> = Space::new(MAX_IOASID, MAX_IOASID).unwrap();
    assert_eq!(one.new_set().alloc(0, u32::MAX, 1), Ok(MAX_IOASID));
}

#[test]
fn cyclic_moves_on_and_wraps_to_min() {
    let space = make_space::<4>(5, 12, Policy::Cyclic);
    let set = space.new_set();
    assert_eq!(set.alloc(5, 12, 0), Ok(5));
    assert_eq!(set.alloc(5, 12, 0), Ok(6));
    set.free(5).unwrap();
    // Lowest would give 5 again; cyclic goes on after the last one handed out.
    assert_eq!(set.alloc(5, 12, 0), Ok(7));
    for expected in 8..=12 {
        assert_eq!(set.alloc(5, 12, 0), Ok(expected));
    }
    // Past max: wraps to min, where 5 is free.
    assert_eq!(set.alloc(5, 12, 0), Ok(5));
    set.free(9).unwrap();
    set.free(6).unwrap();
    assert_eq!(set.alloc(5, 12, 0), Ok(6), "lowest free after 5");
    assert_eq!(set.alloc(5, 12, 0), Ok(9));
    assert_eq!(set.alloc(5, 12, 0), Err(Error::NoSpace));
}

#[test]
fn cyclic_wraps_to_min_of_a_narrower_request() {
    let space = make_space::<4>(0, 99, Policy::Cyclic);
    let set = space.new_set();
    assert_eq!(set.alloc(50, 60, 0), Ok(50));
    // The cursor (51) lies past this request's range: wrap to its min, not max.
    assert_eq!(set.alloc(10, 20, 0), Ok(10));
    assert_eq!(set.alloc(10, 20, 0), Ok(11));
}

#[test]
fn any_policy_hands_out_distinct_ids_in_range() {
    let space = make_space::<4>(1000, 1299, Policy::Any);
    let set = space.new_set();
    let mut got: Vec<u32> = (0..300)
        .map(|i| set.alloc(1000, 1299, i).unwrap())
        .collect();
    assert_eq!(set.alloc(1000, 1299, 0), Err(Error::NoSpace));
    got.sort();
    assert_eq!(got, (1000..1300).collect::<Vec<_>>());
    // Narrow ranges are honoured.
    set.free(1100).unwrap();
    set.free(1200).unwrap();
    assert_eq!(set.alloc(1150, 1250, 0), Ok(1200));
}

#[test]
fn quota_counts_live_ids() {
    let space = make_space::<4>(0, 99, Policy::Lowest);
    let set = space.new_set_with_quota(3);
    assert_eq!(set.quota(), Some(3));
    for expected in 0..3 {
        assert_eq!(set.alloc(0, 99, 0), Ok(expected));
    }
    assert_eq!(set.alloc(0, 99, 0), Err(Error::QuotaExceeded));
    assert_eq!(space.live_count(), 3, "EDQUOT changed nothing");
    set.free(1).unwrap();
    assert_eq!(set.alloc(0, 99, 0), Ok(1));
    assert_eq!(set.len(), 3);
    // ENOSPC gives the reservation back.
    let tight = make_space::<4>(0, 0, Policy::Lowest);
    let a = tight.new_set_with_quota(2);
    let b = tight.new_set();
    assert_eq!(b.alloc(0, 0, 0), Ok(0));
    assert_eq!(a.alloc(0, 0, 0), Err(Error::NoSpace));
    assert_eq!(a.len(), 0);
    let zero = space.new_set_with_quota(0);
    assert_eq!(zero.alloc(0, 99, 0), Err(Error::QuotaExceeded));
}

#[test]
fn foreign_sets_are_refused_and_nothing_changes() {
    let space = make_space::<4>(0, 63, Policy::Lowest);
    let a = space.new_set();
    let b = space.new_set();
    let id = a.alloc(0, 63, 7).unwrap();
    let guard = space.pin();
    assert_eq!(b.find(id, &guard), Err(Error::PermissionDenied));
    assert_eq!(b.free(id), Err(Error::PermissionDenied));
    assert_eq!(b.set_data(id, 9), Err(Error::PermissionDenied));
    assert_eq!(
        a.find(id, &guard).as_deref(),
        Ok(&7),
        "still a's, data unchanged"
    );
    assert_eq!(
        space.find(id, &guard).as_deref(),
        Some(&7),
        "any-set lookup"
    );
    assert_eq!(common::ids_of(&b), Vec::<u32>::new());
    assert_eq!(b.find(40, &guard), Err(Error::NotFound));
    assert_eq!(b.free(40), Err(Error::NotFound));
    assert_eq!(b.free(1000), Err(Error::NotFound), "outside the space");
    assert_eq!(a.free(id), Ok(()));
    assert_eq!(a.free(id), Err(Error::NotFound), "double free");
    assert!(!space.free(id), "kernel form: unknown id is a no-op");
}

#[test]
fn set_data_replaces_and_kernel_free_works_for_any_owner() {
    let space = make_space::<64>(0, 10, Policy::Lowest);
    let set = space.new_set();
    let id = set.alloc(0, 10, 1).unwrap();
    set.set_data(id, 2).unwrap();
    assert_eq!(space.with(id, |d| *d), Some(2));
    space.set_data(id, 3).unwrap();
    assert_eq!(set.with(id, |d| *d), Ok(3));
    assert_eq!(space.set_data(5, 0), Err(Error::NotFound));
    assert_eq!(space.set_data(100, 0), Err(Error::NotFound));
    assert!(space.free(id));
    assert!(!set.contains(id));
    assert_eq!(set.set_data(id, 4), Err(Error::NotFound));
}

#[test]
fn unit_data_round_trips() {
    let space: Space<(), 4> = Space::new(0, 7).unwrap();
    let set = space.new_set();
    let id = set.alloc(0, 7, ()).unwrap();
    let guard = space.pin();
    assert_eq!(set.find(id, &guard).as_deref(), Ok(&()));
    assert!(space.find(id + 1, &guard).is_none());
}

#[test]
fn for_each_is_ascending_stops_early_and_tolerates_mutation() {
    let space = make_space::<4>(0, 255, Policy::Lowest);
    let mine = space.new_set();
    let other = space.new_set();
    for id in [200, 3, 64, 17, 255, 0] {
        mine.alloc(id, id, id * 10).unwrap();
    }
    for id in [1, 2, 100] {
        other.alloc(id, id, 0).unwrap();
    }
    let mut seen = Vec::new();
    let r = mine.for_each(|id, data| {
        assert_eq!(*data, id * 10);
        seen.push(id);
        ControlFlow::<()>::Continue(())
    });
    assert!(r.is_continue());
    assert_eq!(seen, vec![0, 3, 17, 64, 200, 255]);
    let stopped = mine.for_each(|id, _| {
        if id == 64 {
            ControlFlow::Break(-5)
        } else {
            ControlFlow::Continue(())
        }
    });
    assert_eq!(stopped, ControlFlow::Break(-5));
    // The callback frees what it visits and allocates new IDs in the same set.
    let mut visited = Vec::new();
    let _ = mine.for_each(|id, _| {
        visited.push(id);
        mine.free(id).unwrap();
        if id == 17 {
            let fresh = mine.alloc(150, 150, 1500).unwrap();
            assert_eq!(fresh, 150);
        }
        ControlFlow::<()>::Continue(())
    });
    for id in [0, 3, 17, 64, 200, 255] {
        assert_eq!(
            visited.iter().filter(|&&v| v == id).count(),
            1,
            "live-throughout {id} once"
        );
    }
    assert!(
        visited.iter().all(|v| ![1, 2, 100].contains(v)),
        "never a foreign ID"
    );
    let left = common::ids_of(&mine);
    assert!(left.is_empty() || left == vec![150], "{left:?}");
    assert_eq!(common::ids_of(&other), vec![1, 2, 100]);
}

#[test]
fn dropping_a_set_frees_its_ids_only() {
    let space = make_space::<4>(0, 31, Policy::Lowest);
    let keep = space.new_set();
    let gone = space.new_set();
    keep.alloc(0, 31, 0).unwrap();
    for _ in 0..10 {
        gone.alloc(0, 31, 0).unwrap();
    }
    assert_eq!(space.live_count(), 11);
    gone.destroy();
    assert_eq!(space.live_count(), 1);
    let again = space.new_set();
    assert_eq!(
        again.alloc(0, 31, 0),
        Ok(1),
        "freed IDs are reusable at once"
    );
}

#[test]
fn a_space_holds_at_most_16383_sets_and_the_last_one_owns_ids() {
    // The entry word packs a 14-bit set index; the highest one must still
    // name its owner exactly (no bleed into the EXT or boxed bits).
    let space = make_space::<64>(0, 63, Policy::Lowest);
    let sets: Vec<_> = (0..16383)
        .map(|_| space.try_new_set(None).unwrap())
        .collect();
    assert_eq!(space.try_new_set(None).err(), Some(Error::NoSpace));
    let last = sets.last().unwrap();
    let id = last.alloc(0, 63, 7).unwrap();
    assert_eq!(last.with(id, |v| *v), Ok(7));
    assert_eq!(sets[0].free(id), Err(Error::PermissionDenied));
    assert_eq!(last.free(id), Ok(()));
}

#[test]
fn every_value_is_dropped_exactly_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    let domain = Domain::new();
    let space: Space<Tag, 4> = Space::builder()
        .range(0, 99)
        .domain(domain.clone())
        .build()
        .unwrap();
    let set = space.new_set();
    let make = |id| Tag {
        id,
        mark: 0,
        drops: drops.clone(),
    };
    for i in 0..50 {
        assert_eq!(set.alloc(0, 99, make(i)).unwrap(), i);
    }
    for i in 0..10 {
        set.free(i).unwrap();
    }
    for i in 10..20 {
        set.set_data(i, make(i + 1000)).unwrap(); // replaced values dropped too
    }
    assert_eq!(set.with(15, |t| t.id), Ok(1015));
    assert_eq!(set.alloc(5, 4, make(0)), Err(Error::InvalidArgument)); // dropped at once
    let created = 50 + 10 + 1;
    drop(set);
    drop(space);
    drop(domain);
    assert_eq!(drops.load(Ordering::SeqCst), created);
}

#[test]
fn synchronize_waits_for_a_reader_that_saw_the_old_value() {
    let domain = Domain::new();
    let space: Space<u32, 4> = Space::builder()
        .range(0, 9)
        .domain(domain.clone())
        .build()
        .unwrap();
    let set = space.new_set();
    let id = set.alloc(0, 9, 1).unwrap();
    let (pinned_tx, pinned_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let released = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        let reader_space = space.clone();
        let released_by_reader = released.clone();
        s.spawn(move || {
            let guard = reader_space.pin();
            let seen = *reader_space.find(id, &guard).unwrap();
            pinned_tx.send(seen).unwrap();
            release_rx.recv().unwrap();
            released_by_reader.store(1, Ordering::SeqCst);
            drop(guard);
        });
        assert_eq!(pinned_rx.recv().unwrap(), 1);
        space.set_data(id, 2).unwrap();
        let syncer = s.spawn(|| {
            space.synchronize();
            released.load(Ordering::SeqCst)
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !syncer.is_finished(),
            "synchronize returned while the reader was pinned"
        );
        release_tx.send(()).unwrap();
        assert_eq!(
            syncer.join().unwrap(),
            1,
            "returned only after the reader unpinned"
        );
    });
    assert_eq!(domain.grace_periods(), 1);
}

#[test]
#[should_panic(expected = "another domain")]
fn a_guard_of_another_domain_is_refused() {
    let space: Space<u32> = Space::builder()
        .range(0, 9)
        .domain(Domain::new())
        .build()
        .unwrap();
    let set = space.new_set();
    let id = set.alloc(0, 9, 1).unwrap();
    let foreign = Domain::new().pin();
    let _ = space.find(id, &foreign);
}

#[test]
fn custom_allocator_answers_are_checked_and_frees_go_back() {
    let space = make_space::<4>(0, 99, Policy::Lowest);
    let set = space.new_set();
    let hook = Arc::new(Scripted {
        answers: Mutex::new(vec![
            CustomAlloc::Id(42),
            CustomAlloc::Id(42),   // already live: EIO
            CustomAlloc::Id(150),  // outside the space: EIO
            CustomAlloc::Id(10),   // outside the requested 20..=30: EIO
            CustomAlloc::Fallback, // software: lowest free
            CustomAlloc::Failed(Error::Custom(19)),
        ]),
        freed: Mutex::new(Vec::new()),
    });
    assert_eq!(
        space.set_allocator(Some(CustomHook::new(hook.clone()))),
        None
    );
    assert_eq!(set.alloc(0, 99, 1), Ok(42));
    assert_eq!(set.alloc(0, 99, 2), Err(Error::Io));
    assert_eq!(set.alloc(0, 99, 3), Err(Error::Io));
    assert_eq!(set.alloc(20, 30, 4), Err(Error::Io));
    assert_eq!(space.live_count(), 1, "refused answers recorded nothing");
    assert_eq!(set.alloc(0, 99, 5), Ok(0));
    assert_eq!(set.alloc(0, 99, 6), Err(Error::Custom(19)));
    assert_eq!(set.with(42, |d| *d), Ok(1), "find works for custom IDs");
    // Unregister: the software policy takes over; custom IDs still go back.
    assert!(space.set_allocator(None).is_some());
    assert_eq!(set.alloc(0, 99, 7), Ok(1));
    set.free(42).unwrap();
    set.free(0).unwrap();
    assert_eq!(
        *hook.freed.lock().unwrap(),
        vec![42, 150, 10, 42],
        "refused answers, then the hook's own ID, went back to it"
    );
    assert_eq!(Error::Io.errno(), 5);
}

/// Data whose drop pins another space and owns a whole space of its own:
/// deferred drops run inside pins, so reclamation must be re-entrant.
struct Nested {
    other: Space<u32>,
    other_id: u32,
    own: Option<(Space<u32>, ioasid::Set<u32>)>,
    seen: Arc<AtomicUsize>,
}

// SAFETY: the provided methods store it boxed.
unsafe impl ioasid::Payload for Nested {}

impl Drop for Nested {
    fn drop(&mut self) {
        let guard = self.other.pin();
        if self.other.find(self.other_id, &guard).is_some() {
            self.seen.fetch_add(1, Ordering::SeqCst);
        }
        drop(guard);
        drop(self.own.take()); // drops a set, a space and their own domain
    }
}

#[test]
fn deferred_drops_may_pin_and_drop_other_domains() {
    let seen = Arc::new(AtomicUsize::new(0));
    let other: Space<u32> = Space::builder()
        .range(0, 9)
        .domain(Domain::new())
        .build()
        .unwrap();
    let other_set = other.new_set();
    let other_id = other_set.alloc(0, 9, 5).unwrap();
    let domain = Domain::new();
    let space: Space<Nested, 4> = Space::builder()
        .range(0, 999)
        .domain(domain.clone())
        .build()
        .unwrap();
    let set = space.new_set();
    for i in 0..300 {
        let own_space: Space<u32> = Space::builder()
            .range(0, 3)
            .domain(Domain::new())
            .build()
            .unwrap();
        let own_set = own_space.new_set();
        own_set.alloc(0, 3, i).unwrap();
        let value = Nested {
            other: other.clone(),
            other_id,
            own: Some((own_space, own_set)),
            seen: seen.clone(),
        };
        let id = set.alloc(0, 999, value).unwrap();
        set.free(id).unwrap(); // deferred: runs inside some later pin
    }
    drop(set);
    drop(space);
    drop(domain);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        300,
        "every deferred drop ran, once, and could pin"
    );
}

#[test]
fn copied_copies_inline_and_boxed_values_and_checks_the_owner() {
    let space = Space::<u64>::new(0, 99).unwrap();
    let (a, b) = (space.new_set(), space.new_set());
    let small = a.alloc(0, 99, 5).unwrap();
    // Above 48 bits: stored boxed, read under a pin of its own.
    let large = a.alloc(0, 99, u64::MAX - 1).unwrap();
    assert_eq!(space.copied(small), Some(5));
    assert_eq!(space.copied(large), Some(u64::MAX - 1));
    assert_eq!(a.copied(large), Ok(u64::MAX - 1));
    assert_eq!(b.copied(large), Err(Error::PermissionDenied));
    a.set_data(large, u64::MAX - 2).unwrap();
    assert_eq!(a.copied(large), Ok(u64::MAX - 2));
    a.free(large).unwrap();
    assert_eq!(space.copied(large), None);
    assert_eq!(a.copied(large), Err(Error::NotFound));
    assert_eq!(space.copied(100), None, "beyond the space");
}

/// Waiting for readers from inside a read-side section of the same domain
/// answers `Error::Deadlock` (and `synchronize` panics saying so), from every
/// place user code runs under a guard; it never hangs. Outside, it waits.
#[test]
fn synchronize_inside_a_guard_is_a_clear_error_not_a_hang() {
    let domain = Domain::new();
    let space: Space<u32> = Space::builder()
        .range(0, 99)
        .domain(domain.clone())
        .build()
        .unwrap();
    let set = space.new_set();
    let id = set.alloc(0, 99, 5).unwrap();

    let guard = space.pin();
    assert_eq!(domain.try_synchronize(), Err(Error::Deadlock));
    assert_eq!(Error::Deadlock.errno(), 35);
    // Another domain's guard is no obstacle.
    assert_eq!(Domain::new().try_synchronize(), Ok(()));
    drop(guard);

    let _ = set.for_each(|_, _| {
        assert_eq!(space.try_synchronize(), Err(Error::Deadlock));
        ControlFlow::<()>::Continue(())
    });
    assert_eq!(
        set.with(id, |_| space.try_synchronize()),
        Ok(Err(Error::Deadlock))
    );
    assert_eq!(
        space.with(id, |_| domain.try_synchronize()),
        Some(Err(Error::Deadlock))
    );

    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = set.for_each(|_, _| {
            space.synchronize();
            ControlFlow::<()>::Continue(())
        });
    }));
    let message = panicked.expect_err("synchronize inside for_each must panic");
    let message = message
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| message.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(
        message.contains("wait for itself"),
        "unclear panic: {message}"
    );

    // No guard held: it waits and returns.
    assert_eq!(space.try_synchronize(), Ok(()));
    space.synchronize();
}

/// A custom allocator hook and a deferred drop run under a guard too.
#[test]
fn synchronize_from_a_hook_or_a_deferred_drop_is_refused() {
    struct Waiter {
        domain: Domain,
        answers: Arc<Mutex<Vec<Result<(), Error>>>>,
    }
    impl CustomAllocator for Waiter {
        fn alloc(&self, _min: u32, _max: u32) -> CustomAlloc {
            self.answers
                .lock()
                .unwrap()
                .push(self.domain.try_synchronize());
            CustomAlloc::Fallback
        }
        fn free(&self, _id: u32) {}
    }
    struct WaitsOnDrop(Waiter);
    // SAFETY: boxed (the provided methods).
    unsafe impl ioasid::Payload for WaitsOnDrop {}
    impl Drop for WaitsOnDrop {
        fn drop(&mut self) {
            let answer = self.0.domain.try_synchronize();
            self.0.answers.lock().unwrap().push(answer);
        }
    }

    let domain = Domain::new();
    let answers = Arc::new(Mutex::new(Vec::new()));
    let waiter = || Waiter {
        domain: domain.clone(),
        answers: answers.clone(),
    };
    let space: Space<WaitsOnDrop> = Space::builder()
        .range(0, 9)
        .domain(domain.clone())
        .build()
        .unwrap();
    space.set_allocator(Some(CustomHook::new(waiter())));
    let set = space.new_set();
    let id = set.alloc(0, 9, WaitsOnDrop(waiter())).unwrap();
    assert_eq!(
        *answers.lock().unwrap(),
        [Err(Error::Deadlock)],
        "from the hook"
    );
    space.set_allocator(None);
    set.free(id).unwrap();
    // The deferred drop runs inside the collector, under a pin.
    domain.synchronize();
    domain.synchronize();
    assert_eq!(
        *answers.lock().unwrap(),
        [Err(Error::Deadlock), Err(Error::Deadlock)],
        "from the deferred drop"
    );
}

/// `Domain::retire` drops a value only after the readers running when it
/// was retired, and it may be called inside a guard.
#[test]
fn retire_waits_for_the_readers_of_its_domain() {
    struct Flag(Arc<AtomicUsize>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let domain = Domain::new();
    let dropped = Arc::new(AtomicUsize::new(0));
    let reader = domain.pin();
    domain.retire(Flag(dropped.clone()));
    for _ in 0..4 {
        drop(domain.pin()); // collection attempts while the reader lives
    }
    assert_eq!(dropped.load(Ordering::SeqCst), 0, "dropped under a reader");
    drop(reader);
    domain.synchronize();
    domain.synchronize();
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------
// The idiomatic forms: iterators under a guard, range and exact allocation,
// `Auto` data.

/// `(id, data)` pairs a set's iterator yields, in order.
fn iter_pairs<const F: usize>(set: &ioasid::fanout::Set<u32, F>) -> Vec<(u32, u32)> {
    let guard = set.space().pin();
    set.iter(&guard).map(|(id, data)| (id, *data)).collect()
}

/// `(id, data)` pairs `for_each` visits, in order.
fn for_each_pairs<const F: usize>(set: &ioasid::fanout::Set<u32, F>) -> Vec<(u32, u32)> {
    let mut seen = Vec::new();
    let _ = set.for_each(|id, data| {
        seen.push((id, *data));
        ControlFlow::<()>::Continue(())
    });
    seen
}

fn iterators_agree_at<const F: usize>() {
    let space = make_space::<F>(0, MAX_IOASID, Policy::Lowest);
    let (a, b) = (space.new_set(), space.new_set());
    let edges = [0, 1, 0xFFFFF, 0xFFFF_FFFE];
    for id in edges {
        assert_eq!(a.alloc_exact(id, id ^ 0x55), Ok(id));
    }
    for id in [2, 0x10_0000, 0xFFFF_FFFD] {
        assert_eq!(b.alloc_exact(id, 7), Ok(id));
    }
    let want: Vec<(u32, u32)> = edges.iter().map(|&id| (id, id ^ 0x55)).collect();
    assert_eq!(iter_pairs(&a), want, "F={F}");
    assert_eq!(for_each_pairs(&a), want, "F={F}");
    let guard = space.pin();
    let all: Vec<u32> = space.iter(&guard).map(|(id, _)| id).collect();
    assert_eq!(
        all,
        [0, 1, 2, 0xFFFFF, 0x10_0000, 0xFFFF_FFFD, 0xFFFF_FFFE],
        "F={F}"
    );
    drop(guard);
    // Freed IDs (stale member bits) are not yielded; re-allocated ones are.
    a.free(1).unwrap();
    a.free(0xFFFF_FFFE).unwrap();
    assert_eq!(
        iter_pairs(&a),
        [(0, 0x55), (0xFFFFF, 0xFFFFF ^ 0x55)],
        "F={F}"
    );
    assert_eq!(a.alloc_exact(0xFFFF_FFFE, 9), Ok(0xFFFF_FFFE));
    assert_eq!(iter_pairs(&a), for_each_pairs(&a), "F={F}");
    assert_eq!(iter_pairs(&a).last(), Some(&(0xFFFF_FFFE, 9)), "F={F}");
    // An empty set and an emptied space yield nothing.
    assert_eq!(iter_pairs(&space.new_set()), []);
    drop((a, b));
    let guard = space.pin();
    assert_eq!(space.iter(&guard).count(), 0, "F={F}");
}

#[test]
fn iterators_yield_what_for_each_visits_at_the_edge_ids() {
    iterators_agree_at::<2>();
    iterators_agree_at::<4>();
    iterators_agree_at::<64>();
}

#[test]
fn iterators_skip_free_pending_ids_and_stop_for_good() {
    let space = make_space::<4>(0, 20, Policy::Lowest);
    let set = space.new_set();
    for id in 0..5 {
        set.alloc_exact(id, id * 10).unwrap();
    }
    set.get(3).unwrap();
    set.free(3).unwrap();
    assert!(space.is_free_pending(3));
    let guard = space.pin();
    let ids: Vec<u32> = set.iter(&guard).map(|(id, _)| id).collect();
    assert_eq!(ids, [0, 1, 2, 4]);
    let ids: Vec<u32> = space.iter(&guard).map(|(id, _)| id).collect();
    assert_eq!(ids, [0, 1, 2, 4]);
    // Fused: once done, always done.
    let mut it = set.iter(&guard);
    assert_eq!(it.by_ref().count(), 4);
    assert!(it.next().is_none() && it.next().is_none());
    drop(guard);
    assert_eq!(space.put(3), Ok(true));
    assert_eq!(set.len(), 4);
}

#[test]
fn iterators_over_a_full_space() {
    let space = make_space::<4>(0, 63, Policy::Lowest);
    let (even, odd) = (space.new_set(), space.new_set());
    for id in 0..64 {
        let set = if id % 2 == 0 { &even } else { &odd };
        assert_eq!(set.alloc_in(id..=id, id), Ok(id));
    }
    assert_eq!(even.alloc_in(.., 0), Err(Error::NoSpace));
    assert_eq!(odd.alloc_exact(63, 0), Err(Error::NoSpace));
    let guard = space.pin();
    let all: Vec<(u32, u32)> = space.iter(&guard).map(|(id, v)| (id, *v)).collect();
    assert_eq!(all, (0..64).map(|id| (id, id)).collect::<Vec<_>>());
    let evens: Vec<u32> = even.iter(&guard).map(|(id, _)| id).collect();
    assert_eq!(evens, (0..64).step_by(2).collect::<Vec<_>>());
    // The loop body may free in the set it walks.
    for (id, _) in odd.iter(&guard) {
        odd.free(id).unwrap();
    }
    drop(guard);
    assert!(odd.is_empty());
    assert_eq!(space.live_count(), 32);
}

#[test]
fn alloc_in_takes_every_range_form_and_refuses_empty_ones() {
    use std::ops::Bound;
    let space = make_space::<4>(0, MAX_IOASID, Policy::Lowest);
    let set = space.new_set();
    assert_eq!(set.alloc_in(0..=0, 0), Ok(0));
    assert_eq!(set.alloc_in(..2, 0), Ok(1));
    assert_eq!(set.alloc_in(0xFFFFF..0x10_0000, 0), Ok(0xFFFFF));
    // An unbounded end is the space's end: INVALID_IOASID is never given.
    assert_eq!(set.alloc_in(0xFFFF_FFFE.., 0), Ok(0xFFFF_FFFE));
    assert_eq!(set.alloc_in(0xFFFF_FFFE.., 0), Err(Error::NoSpace));
    assert_eq!(set.alloc_in(1..=0xFFFFF, 0), Ok(2));
    assert_eq!(set.alloc_in(.., 0), Ok(3));
    for (range, what) in [
        ((Bound::Included(5), Bound::Excluded(5)), "5..5"),
        ((Bound::Included(6), Bound::Included(5)), "6..=5"),
        ((Bound::Unbounded, Bound::Excluded(0)), "..0"),
        ((Bound::Excluded(u32::MAX), Bound::Unbounded), "(MAX, ..)"),
        ((Bound::Excluded(7), Bound::Excluded(8)), "(7, 8)"),
        (
            (Bound::Included(u32::MAX), Bound::Unbounded),
            "INVALID_IOASID..",
        ),
    ] {
        assert_eq!(
            set.alloc_in(range, 0),
            Err(Error::InvalidArgument),
            "{what}"
        );
    }
    let small = make_space::<4>(10, 20, Policy::Lowest);
    let quota = small.new_set_with_quota(1);
    assert_eq!(
        quota.alloc_in(0..10, 0),
        Err(Error::InvalidArgument),
        "misses the space"
    );
    assert_eq!(
        quota.alloc_in(21.., 0),
        Err(Error::InvalidArgument),
        "misses the space"
    );
    assert_eq!(quota.alloc_in(..=10, 0), Ok(10));
    assert_eq!(quota.alloc_in(.., 0), Err(Error::QuotaExceeded));
    assert_eq!(small.live_count(), 1, "refusals change nothing");
    assert_eq!(space.live_count(), 6);
}

#[test]
fn alloc_exact_at_the_edges_and_when_taken() {
    let space = make_space::<4>(0, MAX_IOASID, Policy::Cyclic);
    let (set, other) = (space.new_set(), space.new_set());
    for id in [0, 1, 0xFFFFF, 0xFFFF_FFFE] {
        assert_eq!(set.alloc_exact(id, id), Ok(id));
        assert_eq!(
            set.alloc_exact(id, 0),
            Err(Error::NoSpace),
            "live in this set"
        );
        assert_eq!(
            other.alloc_exact(id, 0),
            Err(Error::NoSpace),
            "live in another"
        );
        assert_eq!(set.copied(id), Ok(id), "the refusals changed nothing");
    }
    assert_eq!(set.alloc_exact(u32::MAX, 0), Err(Error::InvalidArgument));
    // FREE_PENDING: not allocatable until the last put.
    set.get(1).unwrap();
    set.free(1).unwrap();
    assert_eq!(other.alloc_exact(1, 0), Err(Error::NoSpace));
    assert_eq!(space.put(1), Ok(true));
    assert_eq!(other.alloc_exact(1, 11), Ok(1));
    let narrow = make_space::<4>(1, 0xFFFFF, Policy::Lowest);
    let set = narrow.new_set_with_quota(1);
    assert_eq!(set.alloc_exact(0, 0), Err(Error::InvalidArgument));
    assert_eq!(set.alloc_exact(0x10_0000, 0), Err(Error::InvalidArgument));
    assert_eq!(set.alloc_exact(0xFFFFF, 0), Ok(0xFFFFF));
    assert_eq!(set.alloc_exact(1, 0), Err(Error::QuotaExceeded));
}

/// Readers iterate under one guard while writers alloc, free and replace
/// in the same tiny range, in the same set and another one. Stable IDs are
/// yielded exactly once, in ascending order, with data of their own; no
/// other set's ID is yielded; every datum names its ID.
#[test]
fn iterators_race_writers_from_other_threads() {
    const MAX: u32 = 63;
    let space = Arc::new(make_space::<4>(0, MAX, Policy::Lowest));
    let mine = Arc::new(space.new_set());
    let theirs = Arc::new(space.new_set());
    // Data: the ID in the low 6 bits, the owner's tag in bit 7, a round above.
    let stable: Vec<u32> = (0..=MAX).step_by(4).collect();
    for &id in &stable {
        mine.alloc_exact(id, id).unwrap();
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3u32 {
        let (mine, theirs, stop) = (mine.clone(), theirs.clone(), stop.clone());
        writers.push(std::thread::spawn(move || {
            let mut round = 0u32;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                // The other set's data carries bit 7: never seen through `mine`.
                let (set, tag) = if (round + w).is_multiple_of(2) {
                    (&mine, 0)
                } else {
                    (&theirs, 0x80)
                };
                for id in (w + 1..=MAX).step_by(4) {
                    if set.alloc_exact(id, id | tag | (round << 8)).is_ok() {
                        let _ = set.set_data(id, id | tag | ((round + 1) << 8));
                        set.free(id).unwrap();
                    }
                }
                let stable = (round % 16) * 4;
                mine.set_data(stable, stable | (round << 8)).unwrap();
            }
        }));
    }
    for _ in 0..300 {
        let guard = space.pin();
        let seen: Vec<(u32, u32)> = mine.iter(&guard).map(|(id, v)| (id, *v)).collect();
        assert!(
            seen.windows(2).all(|w| w[0].0 < w[1].0),
            "ascending: {seen:?}"
        );
        for &(id, data) in &seen {
            assert_eq!(
                data & 0xFF,
                id,
                "the data of {id} is its own and this set's"
            );
        }
        let stable_seen: Vec<u32> = seen.iter().map(|p| p.0).filter(|id| id % 4 == 0).collect();
        assert_eq!(stable_seen, stable, "each stable ID exactly once");
        let all: Vec<u32> = space
            .iter(&guard)
            .map(|(id, v)| {
                assert_eq!(*v & 0x7F, id);
                id
            })
            .collect();
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        assert!(stable.iter().all(|id| all.contains(id)));
        for (id, v) in theirs.iter(&guard) {
            assert_eq!(*v & 0xFF, id | 0x80, "never another set's");
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(iter_pairs(&mine).len(), stable.len());
    space.check_invariants().unwrap();
}

#[test]
fn auto_data_takes_any_send_sync_type() {
    use ioasid::Auto;
    use std::sync::atomic::AtomicU32;

    struct Context {
        pid: u32,
        name: String,
        log: Arc<Mutex<Vec<u32>>>,
    }
    impl Drop for Context {
        fn drop(&mut self) {
            self.log.lock().unwrap().push(self.pid);
        }
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let domain = Domain::new();
    let space: Space<Auto<Context>> = Space::builder()
        .range(1, 0xFFFFF)
        .domain(domain.clone())
        .build()
        .unwrap();
    let set = space.new_set();
    for pid in [1, 2, 3] {
        let ctx = Context {
            pid,
            name: format!("vm{pid}"),
            log: log.clone(),
        };
        assert_eq!(set.alloc_in(1..=0xFFFFF, Auto(ctx)), Ok(pid));
    }
    let guard = space.pin();
    let names: Vec<String> = set.iter(&guard).map(|(_, c)| c.name.clone()).collect();
    assert_eq!(names, ["vm1", "vm2", "vm3"]);
    drop(guard);
    set.free(2).unwrap();
    drop(set);
    drop(space);
    drop(domain);
    let mut dropped = log.lock().unwrap().clone();
    dropped.sort();
    assert_eq!(dropped, [1, 2, 3], "each context dropped exactly once");

    // Interior mutability: a boxed value is shared, so every reader sees
    // one counter (an inline copy would not).
    let space = Space::<Auto<AtomicU32>>::new(0, 9).unwrap();
    let set = space.new_set();
    let id = set.alloc_exact(9, Auto(AtomicU32::new(0))).unwrap();
    for _ in 0..3 {
        set.with(id, |c| c.fetch_add(1, Ordering::SeqCst)).unwrap();
    }
    assert_eq!(set.with(id, |c| c.load(Ordering::SeqCst)), Ok(3));

    // Known small types stay inline and `Copy`.
    let space = Space::<Auto<u32>>::new(0, 0xFFFF_FFFE).unwrap();
    let set = space.new_set();
    let id = set.alloc_exact(0xFFFF_FFFE, Auto(u32::MAX)).unwrap();
    assert_eq!(space.copied(id), Some(Auto(u32::MAX)));
    assert_eq!(set.copied(0), Err(Error::NotFound));
}
