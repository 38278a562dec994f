//! Regression tests for bugs and requests seen in peer allocators, and for
//! bugs these tests found in this crate.
//!
//! - rust-vmm's vm-allocator `IdAllocator` could hand out an ID twice through
//!   an off-by-one in `free_id` (fixed there in 2026): freeing at the edges of
//!   the range, or freeing what was never handed out, must never make an ID
//!   come back while it is live.
//! - Its users asked for allocating one exact ID; here that is `min == max`,
//!   which must work at every edge (0, the space's min and max, 0xFFFF_FFFE)
//!   and answer ENOSPC once the ID is taken.
//! - The Cyclic policy must wrap to the range's minimum when the last ID
//!   handed out lies beyond the requested range (found by tests/model.rs).
//! - A guard that outlived its domain was accepted by a space of a new
//!   domain built at the old one's address (identity was an address): the new
//!   domain's collector never waited for it, so values were freed under it.

mod common;
use common::space;
use ioasid::{Error, Ioasid, Policy, MAX_IOASID};
use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};

const POLICIES: [Policy; 3] = [Policy::Lowest, Policy::Cyclic, Policy::Any];

/// Allocates until ENOSPC; every ID must be new and in range.
fn fill(set: &ioasid::Set<Ioasid>, min: Ioasid, max: Ioasid) -> BTreeSet<Ioasid> {
    let mut got = BTreeSet::new();
    loop {
        match set.alloc(min, max, 0) {
            Ok(id) => {
                assert!((min..=max).contains(&id), "{id} outside {min}..={max}");
                assert!(got.insert(id), "ID {id} handed out twice");
                set.set_data(id, id).unwrap();
            }
            Err(Error::NoSpace) => return got,
            Err(e) => panic!("unexpected {e}"),
        }
    }
}

/// vm-allocator: free at the range's edges, then allocate again: each freed
/// ID comes back exactly once, and nothing live comes back.
#[test]
fn free_at_range_edges_never_duplicates() {
    for policy in POLICIES {
        for (min, max) in [(0, 7), (1, 16), (100, 163), (MAX_IOASID - 9, MAX_IOASID)] {
            let space = space(min, max, policy);
            let set = space.new_set();
            let all = fill(&set, min, max);
            assert_eq!(all.len() as u64, u64::from(max - min) + 1, "{policy:?}");

            for edge in [min, max] {
                set.free(edge).unwrap();
                assert_eq!(
                    set.free(edge),
                    Err(Error::NotFound),
                    "double free of {edge}"
                );
                assert_eq!(
                    set.alloc(min, max, edge),
                    Ok(edge),
                    "{policy:?} refill {edge}"
                );
                assert_eq!(
                    set.alloc(min, max, 0),
                    Err(Error::NoSpace),
                    "{policy:?} after {edge}"
                );
            }
            // Both edges at once, then both back, then nothing more.
            set.free(min).unwrap();
            set.free(max).unwrap();
            let back: BTreeSet<_> = [
                set.alloc(min, max, 0).unwrap(),
                set.alloc(min, max, 0).unwrap(),
            ]
            .into();
            assert_eq!(back, BTreeSet::from([min, max]), "{policy:?}");
            assert_eq!(set.alloc(min, max, 0), Err(Error::NoSpace));
            assert_eq!(space.live_count() as u64, u64::from(max - min) + 1);
        }
    }
}

/// vm-allocator: freeing IDs that were never handed out (the next one to be
/// handed out, one past the end, one below the start) must change nothing,
/// so a later fill hands out each ID exactly once.
#[test]
fn free_of_never_allocated_ids_changes_nothing() {
    for policy in POLICIES {
        let (min, max) = (10, 41);
        let space = space(min, max, policy);
        let set = space.new_set();
        let first = set.alloc(min, max, 0).unwrap();
        for id in [min, min + 1, max, max + 1, min - 1, 0, MAX_IOASID, u32::MAX] {
            if id == first {
                continue;
            }
            assert_eq!(set.free(id), Err(Error::NotFound), "{policy:?} free({id})");
            assert!(!space.free(id), "{policy:?} space.free({id})");
        }
        let mut all = fill(&set, min, max);
        assert!(all.insert(first), "{first} handed out twice");
        assert_eq!(all, (min..=max).collect(), "{policy:?}");
    }
}

/// A freed ID is live in exactly one set afterwards: another set's checked
/// free of it is EACCES and changes nothing.
#[test]
fn edge_id_moves_between_sets_without_duplicate() {
    for policy in POLICIES {
        let (min, max) = (0, 3);
        let space = space(min, max, policy);
        let (a, b) = (space.new_set(), space.new_set());
        fill(&a, min, max);
        a.free(max).unwrap();
        assert_eq!(b.alloc(max, max, 2), Ok(max));
        assert_eq!(a.free(max), Err(Error::PermissionDenied));
        assert_eq!(a.alloc(min, max, 0), Err(Error::NoSpace));
        assert_eq!(b.len(), 1);
        assert_eq!(a.len(), 4 - 1);
        assert_eq!(space.live_count(), 4);
    }
}

/// One exact ID (`min == max`) at every edge, in spaces that end there.
#[test]
fn exact_id_allocation_at_every_edge() {
    let spaces = [
        (0, 0),
        (0, 1),
        (1, 1),
        (0, 0xFFFFF),
        (1, 0xFFFFF),
        (0xFFFFF, 0xFFFFF),
        (MAX_IOASID, MAX_IOASID),
        (MAX_IOASID - 1, MAX_IOASID),
        (0, MAX_IOASID),
    ];
    for policy in POLICIES {
        for (min, max) in spaces {
            let space = space(min, max, policy);
            let (a, b) = (space.new_set(), space.new_set());
            let mut edges = vec![0, 1, 0xFFFFF, MAX_IOASID, min, max];
            edges.sort_unstable();
            edges.dedup();
            for id in edges {
                let inside = (min..=max).contains(&id);
                if !inside {
                    assert_eq!(
                        a.alloc(id, id, id),
                        Err(Error::InvalidArgument),
                        "{policy:?} [{min:#x}, {max:#x}] exact {id:#x} outside"
                    );
                    continue;
                }
                assert_eq!(
                    a.alloc(id, id, id),
                    Ok(id),
                    "{policy:?} [{min:#x}, {max:#x}] exact {id:#x}"
                );
                assert_eq!(a.alloc(id, id, 0), Err(Error::NoSpace), "taken {id:#x}");
                assert_eq!(
                    b.alloc(id, id, 0),
                    Err(Error::NoSpace),
                    "taken by another set {id:#x}"
                );
                assert_eq!(space.with(id, |d| *d), Some(id));
                a.free(id).unwrap();
                assert_eq!(b.alloc(id, id, id), Ok(id), "reuse {id:#x}");
                b.free(id).unwrap();
                assert_eq!(space.live_count(), 0);
            }
            // INVALID_IOASID is never an ID.
            assert_eq!(a.alloc(u32::MAX, u32::MAX, 0), Err(Error::InvalidArgument));
        }
    }
}

/// Found by tests/model.rs: with the cursor beyond the requested range,
/// Cyclic must wrap to the range's minimum (`xa_alloc_cyclic` retries from
/// `min`), not take the range's top first.
#[test]
fn cyclic_wraps_to_min_when_cursor_is_beyond_the_range() {
    let space = space(0, 200, Policy::Cyclic);
    let set = space.new_set();
    assert_eq!(set.alloc(34, 34, 0), Ok(34));
    // Nothing free after 34 within [0, 1]: wrap to 0.
    assert_eq!(set.alloc(0, 1, 0), Ok(0));
    assert_eq!(set.alloc(0, 1, 0), Ok(1));
    // The cursor is now 2: [5, 9] starts at 5.
    assert_eq!(set.alloc(5, 9, 0), Ok(5));
    assert_eq!(set.alloc(150, 150, 0), Ok(150));
    assert_eq!(set.alloc(5, 9, 0), Ok(6));
}

/// A guard of a dropped domain A must be refused by the spaces of a domain B
/// built afterwards (the allocator hands B the block A had), never accepted:
/// B's collector does not wait for it.
#[test]
fn guard_of_a_dropped_domain_is_refused_by_its_successor() {
    let old_guard = {
        let a = ioasid::Domain::new();
        a.pin()
    };
    for _ in 0..16 {
        let b = ioasid::Domain::new();
        let space: ioasid::Space<Box<u64>> = ioasid::Space::builder()
            .range(0, 9)
            .domain(b.clone())
            .build()
            .unwrap();
        let set = space.new_set();
        let id = set.alloc(0, 9, Box::new(7)).unwrap();
        let accepted = catch_unwind(AssertUnwindSafe(|| space.find(id, &old_guard).is_some()));
        assert!(
            accepted.is_err(),
            "a guard of a dropped domain was accepted by a new domain's space"
        );
    }
}
