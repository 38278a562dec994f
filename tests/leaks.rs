//! Memory the tests could not see: building, filling, churning and dropping
//! spaces and sets (with their own [`Domain`]) must give back every byte.
//!
//! A counting global allocator keeps, per thread, the bytes allocated minus
//! the bytes freed. Everything here runs on the test's own thread (the
//! domain is private, so its collector frees its garbage when the last
//! space, set and guard of it are gone, on this thread), so after a warm-up
//! round (thread-local caches that keep their capacity) the balance of one
//! round must be exactly zero. A leak of a set's membership index, a tree
//! node, a boxed value or a deferred drop that never runs shows as a
//! positive balance.

// The generic space: these tests run small fan-outs too.
use ioasid::fanout::Space;
use ioasid::{Domain, Policy};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    /// Bytes allocated minus bytes freed on this thread.
    static BALANCE: Cell<isize> = const { Cell::new(0) };
}

fn account(delta: isize) {
    // `try_with`: the allocator may run while this thread's locals are gone.
    let _ = BALANCE.try_with(|b| b.set(b.get() + delta));
}

// SAFETY: forwards to the system allocator; the bookkeeping allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            account(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            account(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        account(-(layout.size() as isize));
        // SAFETY: forwarded from the caller.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            account(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn balance() -> isize {
    BALANCE.with(Cell::get)
}

const IDS: u32 = if cfg!(miri) { 40 } else { 3000 };

/// One space of `T` at fan-out `F`: sets filled, churned (free, re-alloc,
/// replace data), found under a guard, then everything dropped.
fn churn<T: ioasid::Payload, const F: usize>(policy: Policy, make: impl Fn(u32) -> T) {
    let domain = Domain::new();
    let space: Space<T, F> = Space::builder()
        .range(1, 4 * IDS)
        .policy(policy)
        .domain(domain.clone())
        .build()
        .unwrap();
    let sets = [space.new_set(), space.new_set_with_quota(IDS as usize)];
    let mut ids = Vec::new();
    for n in 0..IDS {
        let set = &sets[n as usize % 2];
        ids.push((n as usize % 2, set.alloc(1, 4 * IDS, make(n)).unwrap()));
    }
    for (round, &(set, id)) in ids.iter().enumerate() {
        match round % 3 {
            0 => sets[set].free(id).unwrap(),
            1 => sets[set].set_data(id, make(id)).unwrap(),
            _ => assert!(space.find(id, &space.pin()).is_some()),
        }
    }
    for n in 0..IDS / 3 {
        sets[0].alloc(1, 4 * IDS, make(n)).unwrap();
    }
    assert!(space.free(ids[1].1), "kernel-form free of a live ID");
    // Dropped with IDs live: the sets free them, the space its tree.
    drop(sets);
    drop(space);
    drop(domain);
}

fn round() {
    churn::<u32, 64>(Policy::Lowest, |n| n);
    churn::<String, 4>(Policy::Cyclic, |n| n.to_string());
    churn::<Box<u64>, 64>(Policy::Any, |n| Box::new(u64::from(n)));
    churn::<Option<std::sync::Arc<u32>>, 4>(Policy::Lowest, |n| {
        (n % 2 == 0).then(|| std::sync::Arc::new(n))
    });
}

#[test]
fn dropping_spaces_and_sets_of_their_own_domain_returns_every_byte() {
    round(); // warm-up: lazily made thread-locals
    let before = balance();
    round();
    let leaked = balance() - before;
    assert_eq!(
        leaked, 0,
        "{leaked} bytes not returned after dropping everything"
    );
}
