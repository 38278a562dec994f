//! Sets of the extended IOASID core (SPEC 6.4): quotas reserved from a
//! [`Capacity`], quota adjust on live sets, and threads racing adjusts
//! against allocations.

mod common;
use ioasid::{Capacity, Error, Policy};
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
