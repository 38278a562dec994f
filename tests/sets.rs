//! Sets of the extended IOASID core (SPEC 6.4): quotas reserved from a
//! [`Capacity`], quota adjust on live sets, and threads racing adjusts
//! against allocations.

mod common;
use ioasid::{Capacity, Error, Ioasid, Policy};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[test]
fn quotas_are_reserved_from_the_capacity_and_given_back_on_drop() {
    let capacity = Capacity::new(10);
    let space = common::space(0, 0xFFFFF, Policy::Lowest);
    let a = space.try_new_set_from(&capacity, 4).unwrap();
    let b = space.try_new_set_from(&capacity, 6).unwrap();
    assert_eq!((capacity.reserved(), capacity.available()), (10, 0));
    assert_eq!(
        space.try_new_set_from(&capacity, 1).err(),
        Some(Error::NoSpace)
    );
    assert_eq!(capacity.reserved(), 10, "nothing reserved on error");
    assert!(space.try_new_set_from(&capacity, 0).is_ok(), "quota 0 fits");
    assert_eq!(a.capacity().map(Capacity::total), Some(10));
    assert!(space.new_set().capacity().is_none());
    for _ in 0..4 {
        a.alloc(0, 0xFFFFF, 1).unwrap();
    }
    assert_eq!(a.alloc(0, 0xFFFFF, 1), Err(Error::QuotaExceeded));
    drop(a);
    assert_eq!(capacity.available(), 4);
    drop(b);
    assert_eq!((capacity.reserved(), capacity.available()), (0, 10));
    assert_eq!(space.live_count(), 0);
}

#[test]
fn a_huge_quota_is_the_whole_capacity_at_most() {
    let capacity = Capacity::new(u32::MAX);
    let space = common::space(0, 9, Policy::Lowest);
    let set = space.try_new_set_from(&capacity, usize::MAX).unwrap();
    assert_eq!(set.quota(), Some(u32::MAX as usize));
    assert_eq!(capacity.available(), 0);
    drop(set);
    assert_eq!(capacity.available(), u32::MAX);
}

#[test]
fn adjust_checks_the_live_count_and_the_capacity() {
    let capacity = Capacity::new(8);
    let space = common::space(1, 0xFFFFF, Policy::Lowest);
    let vm = space.try_new_set_from(&capacity, 2).unwrap();
    let ids = [vm.alloc(1, 9, 0).unwrap(), vm.alloc(1, 9, 0).unwrap()];
    assert_eq!(vm.adjust_quota(1), Err(Error::Busy));
    assert_eq!(vm.adjust_quota(9), Err(Error::NoSpace));
    assert_eq!((vm.quota(), capacity.available()), (Some(2), 6));
    vm.adjust_quota(8).unwrap();
    assert_eq!(capacity.available(), 0);
    vm.adjust_quota(2).unwrap();
    assert_eq!(capacity.available(), 6);
    vm.adjust_quota(2).unwrap();
    assert_eq!(capacity.available(), 6, "no change, nothing moved");
    // FREE_PENDING IDs count until released.
    vm.get(ids[0]).unwrap();
    vm.free(ids[0]).unwrap();
    assert_eq!(vm.adjust_quota(1), Err(Error::Busy));
    assert_eq!(vm.put(ids[0]), Ok(true));
    vm.adjust_quota(1).unwrap();
    vm.free(ids[1]).unwrap();
    vm.adjust_quota(0).unwrap();
    assert_eq!(vm.alloc(1, 9, 0), Err(Error::QuotaExceeded));
    assert_eq!(capacity.available(), 8);
    // A set without a capacity adjusts against its live count only.
    let plain = space.new_set_with_quota(1);
    plain.alloc(1, 9, 0).unwrap();
    assert_eq!(plain.adjust_quota(0), Err(Error::Busy));
    plain.adjust_quota(u32::MAX as usize).unwrap();
    plain.alloc(1, 9, 0).unwrap();
    assert_eq!(space.new_set().adjust_quota(3), Err(Error::InvalidArgument));
}

#[test]
fn set_total_is_refused_while_quota_is_reserved() {
    let capacity = Capacity::new(3);
    let space = common::space(0, 9, Policy::Lowest);
    let set = space.try_new_set_from(&capacity, 1).unwrap();
    assert_eq!(capacity.set_total(100), Err(Error::Busy));
    assert_eq!(capacity.total(), 3);
    set.adjust_quota(0).unwrap();
    capacity.set_total(100).unwrap();
    assert_eq!((capacity.total(), capacity.available()), (100, 100));
    capacity.set_total(0).unwrap();
    assert_eq!(set.adjust_quota(1), Err(Error::NoSpace));
    assert!(format!("{capacity:?}").contains("total: 0"));
}

/// Threads race raises and cuts of one set's quota against its own
/// allocations and frees on a tiny range, and against another set that
/// reserves from the same capacity: the live count never exceeds the quota,
/// the capacity never goes below zero, and everything adds up at the end.
#[test]
fn adjusts_race_allocations_and_other_reservations() {
    const TOTAL: u32 = 6;
    let capacity = Capacity::new(TOTAL);
    let space = common::space(0, 7, Policy::Lowest);
    let vm = Arc::new(space.try_new_set_from(&capacity, 2).unwrap());
    let over = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for t in 0..4u32 {
        let (vm, capacity, space, over) =
            (vm.clone(), capacity.clone(), space.clone(), over.clone());
        threads.push(std::thread::spawn(move || {
            for i in 0..3000u32 {
                match (t + i) % 4 {
                    0 => {
                        let _ = vm.adjust_quota(((t + i) % 7) as usize);
                    }
                    1 => {
                        if let Ok(id) = vm.alloc(0, 7, i) {
                            // len() is the live counter of a set with a quota.
                            if vm.len() > vm.quota().unwrap().max(TOTAL as usize) {
                                over.fetch_add(1, Ordering::Relaxed);
                            }
                            vm.free(id).unwrap();
                        }
                    }
                    2 => {
                        if let Ok(other) = space.try_new_set_from(&capacity, 2) {
                            assert!(capacity.reserved() <= TOTAL);
                            drop(other);
                        }
                    }
                    _ => assert!(capacity.available() <= TOTAL),
                }
            }
        }));
    }
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(over.load(Ordering::Relaxed), 0);
    assert_eq!(vm.len(), 0);
    let quota = vm.quota().unwrap() as u32;
    assert_eq!(
        capacity.reserved(),
        quota,
        "only the set's quota is left reserved"
    );
    drop(vm);
    assert_eq!(capacity.available(), TOTAL);
}

/// Racing allocations and a cut of the quota: a cut that succeeds leaves
/// the live count at most the new quota for good (check and store are one
/// step), and a refused one saw more live IDs than the new quota.
#[test]
fn a_cut_races_allocations_at_the_quota() {
    let space = common::space(0, 63, Policy::Lowest);
    for round in 0..300 {
        let set = Arc::new(space.new_set_with_quota(4));
        set.alloc(0, 63, 0).unwrap();
        let racer = {
            let set = set.clone();
            std::thread::spawn(move || {
                let mut got = 0;
                for _ in 0..3 {
                    got += usize::from(set.alloc(0, 63, 1).is_ok());
                }
                got
            })
        };
        let new_quota = 1 + round % 2;
        let cut = set.adjust_quota(new_quota);
        let got = racer.join().unwrap();
        match cut {
            Ok(()) => {
                assert_eq!(set.quota(), Some(new_quota));
                assert!(set.len() <= new_quota, "round {round}: {}", set.len());
            }
            Err(e) => {
                assert_eq!(e, Error::Busy);
                assert_eq!(set.quota(), Some(4), "nothing changed");
                assert!(1 + got > new_quota, "round {round}");
            }
        }
        assert_eq!(set.len(), 1 + got);
        assert_eq!(set.len(), common::ids_of(&*set).len());
    }
}

#[test]
fn token_sets_hold_one_live_set_per_token() {
    use ioasid::TokenSets;
    let capacity = Capacity::new(8);
    let space = common::space(0, 99, Policy::Lowest);
    let mms: TokenSets<usize, Ioasid> = TokenSets::new(space.clone(), capacity.clone());
    let a = mms.create(1, 4).unwrap();
    assert_eq!(mms.create(1, 1).err(), Some(Error::AlreadyExists));
    assert_eq!(mms.create(2, 5).err(), Some(Error::NoSpace));
    let b = mms.create(2, 4).unwrap();
    let id = a.alloc(0, 99, 7).unwrap();
    let found = mms.find(&1).unwrap();
    assert_eq!(found.copied(id), Ok(7));
    drop(a);
    assert!(mms.find(&1).is_some(), "still held by `found`");
    drop(found);
    assert!(mms.find(&1).is_none());
    assert_eq!(space.copied(id), None, "the last reference freed its IDs");
    assert_eq!(capacity.available(), 4, "and gave its quota back");
    assert!(mms.find(&2).is_some());
    drop(b);
    assert_eq!(capacity.available(), 8);
    assert!(format!("{mms:?}").contains("TokenSets"));
}

/// Threads create, find and drop the set of one token at once: at most
/// one set of the token is alive at any time, and a found set is the live
/// one.
#[test]
fn token_sets_race_create_find_and_last_drop() {
    use ioasid::TokenSets;
    let space = common::space(0, 7, Policy::Lowest);
    let mms = Arc::new(TokenSets::<u8, Ioasid>::new(
        space.clone(),
        Capacity::new(64),
    ));
    let alive = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (mms, alive) = (mms.clone(), alive.clone());
            std::thread::spawn(move || {
                for _ in 0..2000 {
                    match mms.create(9, 2) {
                        Ok(set) => {
                            assert_eq!(alive.fetch_add(1, Ordering::SeqCst), 0);
                            let _ = set.alloc(0, 7, 1);
                            assert!(Arc::ptr_eq(&mms.find(&9).unwrap(), &set));
                            assert_eq!(alive.fetch_sub(1, Ordering::SeqCst), 1);
                        }
                        Err(e) => {
                            assert_eq!(e, Error::AlreadyExists);
                            if let Some(set) = mms.find(&9) {
                                let _ = set.alloc(0, 7, 2);
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(mms.find(&9).is_none());
    assert_eq!(mms.capacity().available(), 64);
    assert_eq!(space.live_count(), 0);
}

/// A restored set reserves from no capacity until `reserve_from` gives it
/// one, with the checks of `try_new_set_from`; from then on adjusts and
/// the drop go through that capacity.
#[test]
fn a_restored_set_reserves_from_a_capacity() {
    let source = Capacity::new(16);
    let space = common::space(0, 0xFFFFF, Policy::Lowest);
    let (vm1, vm2) = (
        space.try_new_set_from(&source, 6).unwrap(),
        space.try_new_set_from(&source, 8).unwrap(),
    );
    let plain = space.new_set();
    for _ in 0..3 {
        vm1.alloc(0, 0xFFFFF, 1).unwrap();
    }
    vm2.alloc(0, 0xFFFFF, 2).unwrap();
    plain.alloc(0, 0xFFFFF, 3).unwrap();
    let (_copy, mut sets) = ioasid::Space::<u32>::restore(space.snapshot()).unwrap();
    assert!(sets.iter().all(|s| s.capacity().is_none()));
    let target = Capacity::new(10);
    assert_eq!(
        sets[2].reserve_from(&target),
        Err(Error::InvalidArgument),
        "no quota"
    );
    assert_eq!(sets[0].reserve_from(&target), Ok(()));
    assert_eq!(target.available(), 4);
    assert_eq!(
        sets[1].reserve_from(&target),
        Err(Error::NoSpace),
        "8 > 4 left"
    );
    assert_eq!(target.available(), 4, "nothing taken on error");
    assert!(sets[1].capacity().is_none());
    assert_eq!(sets[0].reserve_from(&target), Err(Error::AlreadyExists));
    assert_eq!(
        sets[0].reserve_from(&Capacity::new(99)),
        Err(Error::AlreadyExists)
    );
    assert_eq!(target.available(), 4);
    // Adjusts go through the capacity now.
    assert_eq!(sets[0].adjust_quota(11), Err(Error::NoSpace));
    sets[0].adjust_quota(10).unwrap();
    assert_eq!(target.available(), 0);
    assert_eq!(sets[0].adjust_quota(2), Err(Error::Busy), "3 live");
    sets[0].adjust_quota(3).unwrap();
    assert_eq!(target.available(), 7);
    assert_eq!(
        sets[1].reserve_from(&target),
        Err(Error::NoSpace),
        "8 > 7 left"
    );
    // A dropped restored set gives its quota back to the capacity.
    drop(sets.remove(0));
    assert_eq!(target.available(), 10);
    sets[0].reserve_from(&target).unwrap();
    assert_eq!((target.reserved(), sets[0].quota()), (8, Some(8)));
    assert_eq!(target.set_total(100), Err(Error::Busy));
    // The source capacity is untouched by the copy.
    assert_eq!(source.reserved(), 14);
    drop(sets);
    assert_eq!(target.available(), 10, "the drop gave the quota back");
}

/// Notifiers registered by token: parked while the token has no live set,
/// on the chain of its set from its creation (before `create` returns) to
/// its teardown (after its FREE events), in priority order, and gone when
/// their registration is dropped.
#[test]
fn token_notifiers_park_and_follow_the_tokens_set() {
    use ioasid::{Event, TokenSets};
    use std::ops::ControlFlow;
    use std::sync::Mutex;
    let space = common::space(0, 99, Policy::Lowest);
    let mms: TokenSets<u32, Ioasid> = TokenSets::new(space.clone(), Capacity::new(99));
    let log = Arc::new(Mutex::new(Vec::new()));
    let block = |name: &'static str| {
        let log = log.clone();
        move |n: &ioasid::Notification<'_, Ioasid>| {
            log.lock().unwrap().push((name, n.event(), n.id()));
            ControlFlow::Continue(())
        }
    };
    let iommu = mms.register_notifier(1, 1, block("iommu"));
    assert!(!iommu.is_attached(), "parked: token 1 has no set");
    let other = mms.create(2, 4).unwrap();
    other.alloc(0, 99, 0).unwrap();
    assert!(!iommu.is_attached(), "another token's set");
    let vm = mms.create(1, 4).unwrap();
    assert!(iommu.is_attached() && vm.has_notifiers());
    let kvm = mms.register_notifier(1, 3, block("kvm"));
    assert!(
        kvm.is_attached(),
        "the token's set exists: attached at once"
    );
    assert!(
        mms.register_notifier(1, 0, block("x")).is_attached(),
        "attached, then dropped at once"
    );
    let a = vm.alloc(0, 99, 1).unwrap();
    vm.free(a).unwrap();
    let b = vm.alloc(0, 99, 2).unwrap();
    drop(vm); // teardown: FREE b to both, then parked
    assert!(!iommu.is_attached() && !kvm.is_attached());
    assert_eq!(
        *log.lock().unwrap(),
        [
            ("kvm", Event::Alloc, a),
            ("iommu", Event::Alloc, a),
            ("kvm", Event::Free, a),
            ("iommu", Event::Free, a),
            ("kvm", Event::Alloc, b),
            ("iommu", Event::Alloc, b),
            ("kvm", Event::Free, b),
            ("iommu", Event::Free, b),
        ]
    );
    log.lock().unwrap().clear();
    kvm.unregister();
    let vm = mms.create(1, 4).unwrap();
    assert!(iommu.is_attached());
    let c = vm.alloc(0, 99, 3).unwrap();
    drop(iommu); // off the chain now
    assert!(!vm.has_notifiers());
    vm.free(c).unwrap();
    assert_eq!(*log.lock().unwrap(), [("iommu", Event::Alloc, c)]);
    drop((vm, other));
    assert!(format!("{:?}", mms.register_notifier(5, 0, block("y"))).contains("TokenRegistration"));
}

/// Creates, last drops and registrations of one token race: a block kept
/// registered throughout sees, for every ID of every set of the token,
/// its ALLOC and its FREE (none lost when a set is created while the
/// last one is still being torn down), and ends parked.
#[test]
fn token_notifiers_race_create_and_teardown() {
    use ioasid::{Event, TokenSets};
    use std::ops::ControlFlow;
    let space = common::space(0, 63, Policy::Lowest);
    let mms = Arc::new(TokenSets::<u8, Ioasid>::new(
        space.clone(),
        Capacity::new(64),
    ));
    let (allocs, frees) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let counting = |allocs: Arc<AtomicUsize>, frees: Arc<AtomicUsize>| {
        move |n: &ioasid::Notification<'_, Ioasid>| {
            match n.event() {
                Event::Alloc => allocs.fetch_add(1, Ordering::SeqCst),
                Event::Free => frees.fetch_add(1, Ordering::SeqCst),
                _ => 0,
            };
            ControlFlow::Continue(())
        }
    };
    let kept = mms.register_notifier(7, 0, counting(allocs.clone(), frees.clone()));
    let mut threads: Vec<_> = (0..2)
        .map(|_| {
            let mms = mms.clone();
            std::thread::spawn(move || {
                let mut made = 0;
                for _ in 0..1000 {
                    if let Ok(set) = mms.create(7, 4) {
                        made += usize::from(set.alloc(0, 63, 1).is_ok());
                        made += usize::from(set.alloc(0, 63, 2).is_ok());
                    }
                }
                made
            })
        })
        .collect();
    threads.extend((0..2).map(|_| {
        let mms = mms.clone();
        std::thread::spawn(move || {
            let (a, f) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            for _ in 0..1000 {
                let r = mms.register_notifier(7, 1, counting(a.clone(), f.clone()));
                std::thread::yield_now();
                drop(r);
            }
            0
        })
    }));
    let made: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(made > 0);
    assert_eq!(allocs.load(Ordering::SeqCst), made, "every ALLOC seen");
    assert_eq!(frees.load(Ordering::SeqCst), made, "every FREE seen");
    assert!(!kept.is_attached());
    assert_eq!(space.live_count(), 0);
    let set = mms.create(7, 1).unwrap();
    assert!(kept.is_attached() && set.has_notifiers());
}

/// `adopt` puts a set made elsewhere (a restored one) under a token, with
/// the checks of `create`, and the token's notifiers join it.
#[test]
fn token_sets_adopt_restored_sets() {
    use ioasid::TokenSets;
    use std::ops::ControlFlow;
    let space = common::space(0, 99, Policy::Lowest);
    let mms: TokenSets<u8, Ioasid> = TokenSets::new(space.clone(), Capacity::new(10));
    let elsewhere = common::space(0, 99, Policy::Lowest);
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let block = mms.register_notifier(1, 0, move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        ControlFlow::Continue(())
    });
    let refused = |set, token| mms.adopt(token, set).err();
    assert_eq!(
        refused(elsewhere.new_set_with_quota(1), 1),
        Some(Error::InvalidArgument),
        "another space"
    );
    assert_eq!(
        refused(space.new_set(), 1),
        Some(Error::InvalidArgument),
        "no quota"
    );
    let other = Capacity::new(5);
    assert_eq!(
        refused(space.try_new_set_from(&other, 1).unwrap(), 1),
        Some(Error::InvalidArgument),
        "another capacity"
    );
    assert_eq!(other.available(), 5, "the refused set was dropped");
    assert_eq!(
        refused(space.new_set_with_quota(11), 1),
        Some(Error::NoSpace)
    );
    assert_eq!(mms.capacity().available(), 10, "nothing reserved on error");
    let own = space.try_new_set_from(mms.capacity(), 2).unwrap();
    let a = mms.adopt(1, own).unwrap();
    assert!(block.is_attached());
    assert_eq!(
        refused(space.new_set_with_quota(1), 1),
        Some(Error::AlreadyExists)
    );
    let b = mms.adopt(2, space.new_set_with_quota(3)).unwrap();
    assert_eq!(mms.capacity().available(), 5);
    a.alloc(0, 99, 1).unwrap();
    b.alloc(0, 99, 2).unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 1, "only token 1's set");
    assert!(Arc::ptr_eq(&mms.find(&2).unwrap(), &b));
    drop((a, b));
    assert!(!block.is_attached());
    assert_eq!(
        (seen.load(Ordering::SeqCst), mms.capacity().available()),
        (2, 10)
    );
}
