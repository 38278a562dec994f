//! Set private IDs (SPEC 6.5): attach, detach, find_by_spid (with and
//! without a reference), every error, edge IDs and SPIDs, detach on free,
//! FREE_PENDING, last put and teardown, and threads racing attaches, finds,
//! gets and frees on a tiny range.

mod common;
use ioasid::{Domain, Error, Ioasid, Policy, Space, INVALID_IOASID, MAX_IOASID};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const EDGES: [Ioasid; 4] = [0, 1, 0xFFFFF, 0xFFFF_FFFE];

fn full_space() -> Space<u32> {
    Space::builder()
        .range(0, MAX_IOASID)
        .domain(Domain::new())
        .build()
        .unwrap()
}

#[test]
fn edge_ids_and_edge_spids() {
    let space = full_space();
    let vm = space.new_set();
    for (i, &id) in EDGES.iter().enumerate() {
        assert_eq!(vm.alloc(id, id, i as u32), Ok(id));
        // Each edge ID with each edge SPID, one at a time.
        for &spid in &EDGES {
            vm.attach_spid(id, spid).unwrap();
            assert_eq!(vm.find_by_spid(spid), Ok(id));
            assert_eq!(space.spid(id), Some(spid));
            assert_eq!(vm.detach_spid(id), Ok(Some(spid)));
            assert_eq!(vm.find_by_spid(spid), Err(Error::NotFound));
        }
    }
    // All at once: edge ID i holds edge SPID 3 - i.
    for (i, &id) in EDGES.iter().enumerate() {
        vm.attach_spid(id, EDGES[3 - i]).unwrap();
    }
    for (i, &id) in EDGES.iter().enumerate() {
        assert_eq!(vm.find_by_spid(EDGES[3 - i]), Ok(id));
        assert_eq!(space.ref_count(id), Some(1), "attach adds no reference");
    }
    for &id in &EDGES {
        assert_eq!(
            space.free_released(id),
            Some(true),
            "one reference: released"
        );
    }
    for &spid in &EDGES {
        assert_eq!(vm.find_by_spid(spid), Err(Error::NotFound));
    }
    assert_eq!(space.live_count(), 0);
}

#[test]
fn every_error_and_nothing_changed() {
    let space = common::space(0, 99, Policy::Lowest);
    let (vm, other) = (space.new_set(), space.new_set());
    let a = vm.alloc(0, 99, 1).unwrap();
    let b = vm.alloc(0, 99, 2).unwrap();
    let c = other.alloc(0, 99, 3).unwrap();
    // INVALID_IOASID first, before any other check.
    assert_eq!(
        vm.attach_spid(INVALID_IOASID, 5),
        Err(Error::InvalidArgument)
    );
    assert_eq!(
        vm.attach_spid(a, INVALID_IOASID),
        Err(Error::InvalidArgument)
    );
    assert_eq!(
        vm.attach_spid(c, INVALID_IOASID),
        Err(Error::InvalidArgument)
    );
    assert_eq!(
        space.attach_spid(INVALID_IOASID, INVALID_IOASID),
        Err(Error::InvalidArgument)
    );
    // Not live: never allocated, out of the space, freed.
    assert_eq!(vm.attach_spid(50, 5), Err(Error::NotFound));
    assert_eq!(space.attach_spid(1000, 5), Err(Error::NotFound));
    assert_eq!(vm.attach_spid(c, 5), Err(Error::PermissionDenied));
    vm.attach_spid(a, 5).unwrap();
    // The SPID is used in the set; the ID has one already.
    assert_eq!(vm.attach_spid(b, 5), Err(Error::AlreadyExists));
    assert_eq!(vm.attach_spid(a, 6), Err(Error::AlreadyExists));
    assert_eq!(space.attach_spid(a, 5), Err(Error::AlreadyExists));
    assert_eq!(
        (vm.find_by_spid(5), vm.find_by_spid(6)),
        (Ok(a), Err(Error::NotFound))
    );
    assert_eq!(space.spid(b), None);
    // Another set may use SPID 5.
    other.attach_spid(c, 5).unwrap();
    assert_eq!((vm.find_by_spid(5), other.find_by_spid(5)), (Ok(a), Ok(c)));
    // Detach: errors, and an ID without a SPID.
    assert_eq!(other.detach_spid(a), Err(Error::PermissionDenied));
    assert_eq!(vm.detach_spid(77), Err(Error::NotFound));
    assert_eq!(vm.detach_spid(b), Ok(None));
    assert_eq!(space.detach_spid(1000), Err(Error::NotFound));
    assert_eq!(vm.find_by_spid(5), Ok(a));
    // FREE_PENDING: not live for attach.
    vm.get(b).unwrap();
    vm.free(b).unwrap();
    assert_eq!(vm.attach_spid(b, 9), Err(Error::NotFound));
    assert_eq!(vm.find_by_spid(9), Err(Error::NotFound));
    assert_eq!(vm.put(b), Ok(true));
    // A set that never attached finds nothing, and pays for no table.
    let idle = space.new_set();
    assert_eq!(idle.find_by_spid(5), Err(Error::NotFound));
    assert_eq!(idle.get_by_spid(0), Err(Error::NotFound));
    assert_eq!(vm.find_by_spid(INVALID_IOASID), Err(Error::NotFound));
}

#[test]
fn freeing_detaches_at_once_in_every_way() {
    let space = common::space(0, 15, Policy::Lowest);
    let vm = space.new_set();
    // Plain free.
    let a = vm.alloc(0, 15, 0).unwrap();
    vm.attach_spid(a, 100).unwrap();
    vm.free(a).unwrap();
    assert_eq!(vm.find_by_spid(100), Err(Error::NotFound));
    // The SPID is free for another ID at once, and the number for reuse.
    let b = vm.alloc(0, 15, 0).unwrap();
    assert_eq!(b, a, "lowest policy: the freed number again");
    assert_eq!(
        space.spid(b),
        None,
        "a new incarnation starts without a SPID"
    );
    vm.attach_spid(b, 100).unwrap();
    assert_eq!(vm.find_by_spid(100), Ok(b));
    // FREE_PENDING: detached at the free, not at the last put.
    vm.get(b).unwrap();
    assert_eq!(space.free_released(b), Some(false));
    assert!(space.is_free_pending(b));
    assert_eq!(
        (vm.find_by_spid(100), space.spid(b)),
        (Err(Error::NotFound), None)
    );
    assert_eq!(vm.get_by_spid(100), Err(Error::NotFound));
    let c = vm.alloc(0, 15, 0).unwrap();
    vm.attach_spid(c, 100).unwrap();
    assert_eq!(space.put(b), Ok(true));
    assert_eq!(
        vm.find_by_spid(100),
        Ok(c),
        "the old ID's release leaves c's mapping"
    );
    // The last put of an ID never freed.
    assert_eq!(space.put(c), Ok(true));
    assert_eq!(vm.find_by_spid(100), Err(Error::NotFound));
    // Teardown: a referenced ID goes FREE_PENDING, detached, SPID gone.
    let d = vm.alloc(0, 15, 0).unwrap();
    vm.attach_spid(d, 7).unwrap();
    vm.get(d).unwrap();
    drop(vm);
    assert!(space.is_free_pending(d));
    assert_eq!(space.spid(d), None);
    assert_eq!(space.put(d), Ok(true));
    assert_eq!(space.live_count(), 0);
}

#[test]
fn get_by_spid_takes_a_reference() {
    let space = common::space(1, 10, Policy::Lowest);
    let vm = space.new_set();
    let id = vm.alloc(1, 10, 0).unwrap();
    vm.get(id).unwrap(); // tracked before the attach
    vm.attach_spid(id, 3).unwrap();
    assert_eq!(space.ref_count(id), Some(2));
    assert_eq!(vm.get_by_spid(3), Ok(id));
    assert_eq!(vm.find_by_spid(3), Ok(id));
    assert_eq!(space.ref_count(id), Some(3), "a plain find takes none");
    assert_eq!(vm.put(id), Ok(false));
    assert_eq!(vm.put(id), Ok(false));
    assert_eq!(vm.find_by_spid(3), Ok(id), "still live: one reference left");
    assert_eq!(vm.put(id), Ok(true));
    assert_eq!(vm.get_by_spid(3), Err(Error::NotFound));
    assert_eq!(space.ref_count(id), None);
}

/// Threads allocate, attach SPIDs from a tiny pool, find, get and free in
/// two sets of a 4-ID space. A reference got by SPID pins an ID that holds
/// (or, freed meanwhile, held) that SPID; at the end each SPID is found
/// exactly for the one live ID of its set that holds it.
#[test]
fn threads_race_attach_find_get_and_free_on_a_tiny_range() {
    let space = common::space(0, 3, Policy::Lowest);
    let sets = Arc::new([space.new_set(), space.new_set()]);
    let attached = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for t in 0..4usize {
        let (space, sets, attached) = (space.clone(), sets.clone(), attached.clone());
        threads.push(std::thread::spawn(move || {
            let mut mine = Vec::new();
            for i in 0..4000usize {
                let set = &sets[(t + i) % 2];
                let spid = ((t * 7 + i) % 3) as Ioasid;
                match i % 5 {
                    0 | 1 => {
                        if let Ok(id) = set.alloc(0, 3, t as u32) {
                            match set.attach_spid(id, spid) {
                                Ok(()) => {
                                    attached.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) => assert!(
                                    e == Error::AlreadyExists || e == Error::NotFound,
                                    "{e:?}"
                                ),
                            }
                            mine.push(id);
                        }
                    }
                    2 => {
                        if let Ok(id) = set.get_by_spid(spid) {
                            // Our reference keeps it from release: it holds
                            // the SPID, or was freed (FREE_PENDING, detached).
                            assert!(
                                space.spid(id) == Some(spid) || space.is_free_pending(id),
                                "{id} lost SPID {spid} while referenced"
                            );
                            assert!(set.put(id).is_ok());
                        }
                    }
                    3 => {
                        if let Ok(id) = set.find_by_spid(spid) {
                            assert!(id <= 3);
                        }
                    }
                    _ => {
                        if let Some(id) = mine.pop() {
                            // Another thread's free may have beaten us to it.
                            let _ = space.free(id);
                        }
                    }
                }
            }
            for id in mine {
                let _ = space.free(id);
            }
        }));
    }
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(attached.load(Ordering::Relaxed) > 0);
    // Quiescent: everything freed; no SPID is found.
    for set in sets.iter() {
        for spid in 0..3 {
            assert_eq!(set.find_by_spid(spid), Err(Error::NotFound), "spid {spid}");
        }
    }
    // Now a settled state: each set attaches each SPID to one ID.
    let ids: Vec<_> = (0..4)
        .map(|i| sets[i % 2].alloc(0, 3, 0).unwrap())
        .collect();
    for (i, &id) in ids.iter().enumerate() {
        sets[i % 2].attach_spid(id, (i / 2) as Ioasid).unwrap();
    }
    for (i, &id) in ids.iter().enumerate() {
        assert_eq!(sets[i % 2].find_by_spid((i / 2) as Ioasid), Ok(id));
    }
}

/// Many threads attach the same SPID to their own IDs of one set at once:
/// exactly one wins per round, and it is the one found.
#[test]
fn one_spid_one_winner() {
    let space = common::space(0, 63, Policy::Any);
    let vm = Arc::new(space.new_set());
    for round in 0..200u32 {
        let ids: Vec<_> = (0..4).map(|_| vm.alloc(0, 63, 0).unwrap()).collect();
        let winners: Vec<_> = ids
            .iter()
            .map(|&id| {
                let vm = vm.clone();
                std::thread::spawn(move || vm.attach_spid(id, round).is_ok().then_some(id))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .filter_map(|t| t.join().unwrap())
            .collect();
        assert_eq!(winners.len(), 1, "round {round}");
        assert_eq!(vm.find_by_spid(round), Ok(winners[0]));
        for id in ids {
            vm.free(id).unwrap();
        }
        assert_eq!(vm.find_by_spid(round), Err(Error::NotFound));
    }
}
