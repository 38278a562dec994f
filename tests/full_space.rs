//! Full-space tests: a whole 20-bit PASID space filled, answered with ENOSPC,
//! punched with 1000 random holes and refilled exactly, for each policy;
//! quotas meeting a full space; the edges of the ID type; spaces of one ID.
//!
//! Each test fills 2^20 IDs; in a debug build that takes a few seconds. Run
//! `cargo test --release --test full_space` for speed.

mod common;
use common::space;
use ioasid::{Error, Ioasid, Policy, MAX_IOASID, PASID_MAX};
use std::collections::BTreeSet;

/// 2^20 IDs: `[0, 0xFFFFF]`.
const SPAN: u32 = PASID_MAX + 1;
const HOLES: usize = 1000;

/// `n` distinct IDs of `[min, max]`, from a generator seeded with `seed`.
fn distinct(seed: u64, n: usize, min: Ioasid, max: Ioasid) -> BTreeSet<Ioasid> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut ids = BTreeSet::new();
    while ids.len() < n {
        ids.insert(rng.u32(min..=max));
    }
    ids
}

/// Fills the 20-bit space through `set`; Lowest and Cyclic must hand out
/// 0, 1, 2, ... in order (a fresh Cyclic space's cursor is at its minimum).
fn fill_20_bits(set: &ioasid::Set<Ioasid>, policy: Policy) {
    let mut seen = vec![false; SPAN as usize];
    for n in 0..SPAN {
        let id = set.alloc(0, PASID_MAX, n).unwrap();
        if policy != Policy::Any {
            assert_eq!(id, n, "{policy:?} fill order");
        }
        assert!(id <= PASID_MAX);
        assert!(
            !std::mem::replace(&mut seen[id as usize], true),
            "{id} twice"
        );
    }
    assert_eq!(set.alloc(0, PASID_MAX, 0), Err(Error::NoSpace));
    assert_eq!(set.alloc(0, u32::MAX, 0), Err(Error::NoSpace));
    assert_eq!(set.alloc(PASID_MAX, PASID_MAX, 0), Err(Error::NoSpace));
    assert_eq!(set.space().live_count(), SPAN as usize);
}

fn free_all(set: &ioasid::Set<Ioasid>, ids: &BTreeSet<Ioasid>) {
    for &id in ids {
        set.free(id).unwrap();
    }
    assert_eq!(set.space().live_count(), SPAN as usize - ids.len());
}

#[test]
fn lowest_fill_enospc_and_refill_exactly_the_holes_in_order() {
    let space = space(0, PASID_MAX, Policy::Lowest);
    let set = space.new_set();
    fill_20_bits(&set, Policy::Lowest);

    let holes = distinct(0x5EED_0001, HOLES, 0, PASID_MAX);
    free_all(&set, &holes);
    for &want in &holes {
        assert_eq!(set.alloc(0, PASID_MAX, want), Ok(want));
    }
    assert_eq!(set.alloc(0, PASID_MAX, 0), Err(Error::NoSpace));
    // Every ID carries the data of its last alloc.
    for id in (0..SPAN).step_by(997).chain(holes.iter().copied()) {
        assert_eq!(set.with(id, |d| *d), Ok(id));
    }

    // Holes in a narrowed range: only those inside it come back.
    let holes = distinct(0x5EED_0002, HOLES, 0, PASID_MAX);
    free_all(&set, &holes);
    let (lo, hi) = (0x40000, 0x7FFFF);
    for &want in holes.range(lo..=hi) {
        assert_eq!(set.alloc(lo, hi, want), Ok(want));
    }
    assert_eq!(set.alloc(lo, hi, 0), Err(Error::NoSpace));
    assert_eq!(
        set.len(),
        SPAN as usize - holes.len() + holes.range(lo..=hi).count()
    );
}

#[test]
fn cyclic_fill_enospc_and_refill_the_holes_in_cyclic_order() {
    let space = space(0, PASID_MAX, Policy::Cyclic);
    let set = space.new_set();
    fill_20_bits(&set, Policy::Cyclic);
    // The last ID handed out was PASID_MAX: the cursor wrapped to 0.

    let holes: Vec<Ioasid> = distinct(0x5EED_0003, HOLES, 0, PASID_MAX)
        .into_iter()
        .collect();
    free_all(&set, &holes.iter().copied().collect());
    let (first_half, second_half) = holes.split_at(HOLES / 2);
    for &want in first_half {
        assert_eq!(set.alloc(0, PASID_MAX, want), Ok(want));
    }
    // A just-refilled (lower) ID freed now is not reused before the cursor
    // wraps: the rest of the holes come first, in ascending order.
    let again = first_half[0];
    set.free(again).unwrap();
    for &want in second_half {
        assert_eq!(set.alloc(0, PASID_MAX, want), Ok(want));
    }
    assert_eq!(set.alloc(0, PASID_MAX, again), Ok(again), "after the wrap");
    assert_eq!(set.alloc(0, PASID_MAX, 0), Err(Error::NoSpace));
    assert_eq!(space.live_count(), SPAN as usize);
}

#[test]
fn any_fill_enospc_and_refill_exactly_the_holes() {
    let space = space(0, PASID_MAX, Policy::Any);
    let set = space.new_set();
    fill_20_bits(&set, Policy::Any);

    let holes = distinct(0x5EED_0004, HOLES, 0, PASID_MAX);
    free_all(&set, &holes);
    let mut refilled = BTreeSet::new();
    for _ in 0..HOLES {
        let id = set.alloc(0, PASID_MAX, 0).unwrap();
        assert!(refilled.insert(id), "{id} twice");
    }
    assert_eq!(refilled, holes);
    assert_eq!(set.alloc(0, PASID_MAX, 0), Err(Error::NoSpace));
}

/// A set whose quota meets the space's last free IDs: EDQUOT is answered
/// first and changes nothing; the space's other sets still get what is left.
#[test]
fn quota_at_the_edge_of_a_full_space() {
    for policy in [Policy::Lowest, Policy::Cyclic, Policy::Any] {
        let space = space(0, PASID_MAX, policy);
        let bulk = space.new_set();
        fill_20_bits(&bulk, policy);
        let holes = distinct(0x5EED_0005, HOLES, 0, PASID_MAX);
        free_all(&bulk, &holes);

        // Quota = holes - 1: the set gets all but one hole, then EDQUOT.
        let capped = space.new_set_with_quota(HOLES - 1);
        let mut got = BTreeSet::new();
        for _ in 0..HOLES - 1 {
            let id = capped.alloc(0, PASID_MAX, 1).unwrap();
            assert!(holes.contains(&id) && got.insert(id), "{policy:?} {id}");
        }
        assert_eq!(capped.alloc(0, PASID_MAX, 1), Err(Error::QuotaExceeded));
        assert_eq!(capped.len(), HOLES - 1);
        let last: Vec<_> = holes.difference(&got).copied().collect();
        assert_eq!(last.len(), 1);
        // The last hole is still free for another set, exactly once.
        assert_eq!(bulk.alloc(last[0], last[0], 2), Ok(last[0]));
        assert_eq!(bulk.alloc(0, PASID_MAX, 2), Err(Error::NoSpace));

        // Full space and full quota: EDQUOT (quota is checked first).
        assert_eq!(capped.alloc(0, PASID_MAX, 1), Err(Error::QuotaExceeded));
        // Another set frees: the capped set is still at its quota.
        bulk.free(last[0]).unwrap();
        assert_eq!(capped.alloc(0, PASID_MAX, 1), Err(Error::QuotaExceeded));
        // The capped set frees one: it may allocate one again.
        let mine = *got.iter().next().unwrap();
        capped.free(mine).unwrap();
        let id = capped.alloc(0, PASID_MAX, 1).unwrap();
        assert!(id == mine || id == last[0], "{policy:?} {id}");
        assert_eq!(capped.alloc(0, PASID_MAX, 1), Err(Error::QuotaExceeded));
        assert_eq!(space.live_count(), SPAN as usize - 1);

        // Quota exactly the free count: space and quota run out together.
        drop(capped);
        let exact = space.new_set_with_quota(HOLES);
        for _ in 0..HOLES {
            exact.alloc(0, PASID_MAX, 3).unwrap();
        }
        assert_eq!(exact.alloc(0, PASID_MAX, 3), Err(Error::QuotaExceeded));
        assert_eq!(bulk.alloc(0, PASID_MAX, 3), Err(Error::NoSpace));
        assert_eq!(space.live_count(), SPAN as usize);
    }
}

/// A space ending at the largest ID: fills to exactly 0xFFFF_FFFE.
#[test]
fn space_ending_at_the_largest_id() {
    for policy in [Policy::Lowest, Policy::Cyclic, Policy::Any] {
        let (min, max) = (MAX_IOASID - 4095, MAX_IOASID);
        let space = space(min, max, policy);
        let set = space.new_set();
        let mut got = BTreeSet::new();
        for n in 0..4096 {
            let id = set.alloc(min, u32::MAX, n).unwrap();
            if policy != Policy::Any {
                assert_eq!(id, min + n, "{policy:?}");
            }
            assert!(got.insert(id));
        }
        assert_eq!(got.last(), Some(&MAX_IOASID));
        assert_eq!(set.alloc(0, u32::MAX, 0), Err(Error::NoSpace));
        set.free(MAX_IOASID).unwrap();
        assert_eq!(set.alloc(0, u32::MAX, 0), Ok(MAX_IOASID), "{policy:?}");
        assert_eq!(set.alloc(MAX_IOASID, MAX_IOASID, 0), Err(Error::NoSpace));
    }

    // The whole ID type: its last ID by an exact allocation, and by range.
    let space = space(0, MAX_IOASID, Policy::Lowest);
    let set = space.new_set();
    assert_eq!(set.alloc(MAX_IOASID, MAX_IOASID, 1), Ok(MAX_IOASID));
    assert_eq!(set.alloc(MAX_IOASID, u32::MAX, 1), Err(Error::NoSpace));
    assert_eq!(set.alloc(MAX_IOASID - 1, u32::MAX, 1), Ok(MAX_IOASID - 1));
    assert_eq!(
        set.alloc(u32::MAX, u32::MAX, 1),
        Err(Error::InvalidArgument)
    );
    assert_eq!(set.alloc(0, u32::MAX, 1), Ok(0));
    assert_eq!(set.len(), 3);
}

/// Exact single-ID allocations of 0, 1, 0xFFFFF and 0xFFFF_FFFE in spaces
/// that end (or start) there.
#[test]
fn exact_edge_ids_in_spaces_that_end_there() {
    let cases = [
        (0, 0xFFFFF, 0),
        (0, 0xFFFFF, 0xFFFFF),
        (1, 0xFFFFF, 1),
        (1, 0xFFFFF, 0xFFFFF),
        (0, 1, 1),
        (0xFFFFF, MAX_IOASID, 0xFFFFF),
        (0xFFFFF, MAX_IOASID, MAX_IOASID),
        (0, MAX_IOASID, 0),
        (0, MAX_IOASID, MAX_IOASID),
    ];
    for policy in [Policy::Lowest, Policy::Cyclic, Policy::Any] {
        for (min, max, id) in cases {
            let space = space(min, max, policy);
            let set = space.new_set();
            assert_eq!(
                set.alloc(id, id, id),
                Ok(id),
                "{policy:?} [{min:#x}, {max:#x}] {id:#x}"
            );
            assert_eq!(set.alloc(id, id, id), Err(Error::NoSpace));
            // One below the space or one above it is outside: EINVAL.
            if min > 0 {
                assert_eq!(set.alloc(min - 1, min - 1, 0), Err(Error::InvalidArgument));
            }
            assert_eq!(set.alloc(max + 1, max + 1, 0), Err(Error::InvalidArgument));
            let guard = space.pin();
            assert_eq!(set.find(id, &guard).map(|d| *d), Ok(id));
            drop(guard);
            set.free(id).unwrap();
            assert_eq!(set.alloc(id, id, id), Ok(id));
        }
    }
}

/// Spaces of a single ID, for every policy and at both ends of the ID type.
#[test]
fn spaces_of_size_one() {
    for policy in [Policy::Lowest, Policy::Cyclic, Policy::Any] {
        for id in [0, 1, 5, 0xFFFFF, MAX_IOASID] {
            let space = space(id, id, policy);
            let (a, b) = (space.new_set(), space.new_set_with_quota(1));
            for round in 0..3 {
                assert_eq!(a.alloc(0, u32::MAX, round), Ok(id), "{policy:?} {id:#x}");
                assert_eq!(a.alloc(0, u32::MAX, round), Err(Error::NoSpace));
                assert_eq!(b.alloc(id, id, round), Err(Error::NoSpace));
                assert_eq!(b.free(id), Err(Error::PermissionDenied));
                assert_eq!(space.live_count(), 1);
                a.free(id).unwrap();
                assert_eq!(b.alloc(id, id, round), Ok(id));
                assert_eq!(b.alloc(id, id, round), Err(Error::QuotaExceeded));
                assert!(space.free(id));
                assert!(!space.free(id));
                assert_eq!(b.len(), 0);
            }
            if id > 0 {
                assert_eq!(a.alloc(0, id - 1, 0), Err(Error::InvalidArgument));
            }
            assert_eq!(a.alloc(id + 1, u32::MAX, 0), Err(Error::InvalidArgument));
        }
    }
}
