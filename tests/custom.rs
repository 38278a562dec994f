//! Custom allocators in the kernel's order (SPEC 6.3): every freed ID goes
//! back to the hook that gave it, the `free` hook runs while the ID is still
//! recorded, the ID is not recorded again until that free has returned,
//! refused answers go back to the hook, a panicking hook leaks nothing, and
//! with notifier blocks the FREE goes out before the hook (a set torn down
//! from that FREE's callback included).

mod common;
use common::Scripted;
use ioasid::{CustomAlloc, CustomAllocator, CustomHook, Error, Ioasid, Space};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

fn space<T: ioasid::Payload>(min: Ioasid, max: Ioasid) -> Space<T> {
    common::space_of(min, max, ioasid::Policy::Lowest)
}

/// A host that always hands out `id` and counts the frees it is sent.
struct Fixed {
    id: Ioasid,
    freed: AtomicUsize,
}

impl Fixed {
    fn new(id: Ioasid) -> Arc<Fixed> {
        Arc::new(Fixed {
            id,
            freed: AtomicUsize::new(0),
        })
    }
}

impl CustomAllocator for Fixed {
    fn alloc(&self, _min: Ioasid, _max: Ioasid) -> CustomAlloc {
        CustomAlloc::Id(self.id)
    }
    fn free(&self, id: Ioasid) {
        assert_eq!(id, self.id, "only the hook's own ID comes back to it");
        // SeqCst: plain counters, read after the threads joined.
        self.freed.fetch_add(1, Ordering::SeqCst);
    }
}

/// A free of an ID of hook A races the installation of hook B, which hands
/// out the same number as soon as it can: A's ID must go back to A, and
/// B's, still live, must not be sent to B as freed.
#[test]
fn a_freed_id_goes_back_to_its_own_hook_when_the_hook_is_replaced() {
    const ID: Ioasid = 7;
    let space = space::<u32>(0, 63);
    let set = Arc::new(space.new_set());
    for round in 0..3000 {
        let a = Fixed::new(ID);
        space.set_allocator(Some(CustomHook::new(a.clone())));
        assert_eq!(set.alloc(0, 63, 1), Ok(ID));
        let freer = {
            let set = set.clone();
            thread::spawn(move || set.free(ID))
        };
        // Wait until the free has taken the ID out of find, then let B
        // answer the same number until it is recorded.
        let mut spins = 0u32;
        while space.with(ID, |_| ()).is_some() {
            spins += 1;
            if spins.is_multiple_of(64) {
                thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        let b = Fixed::new(ID);
        space.set_allocator(Some(CustomHook::new(b.clone())));
        loop {
            match set.alloc(0, 63, 2) {
                Ok(id) => {
                    assert_eq!(id, ID);
                    break;
                }
                Err(Error::Io) => continue,
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        freer.join().unwrap().unwrap();
        assert_eq!(
            a.freed.load(Ordering::SeqCst),
            1,
            "round {round}: A got its ID back"
        );
        assert_eq!(
            b.freed.load(Ordering::SeqCst),
            0,
            "round {round}: B was told its live ID is free"
        );
        set.free(ID).unwrap();
        assert_eq!(b.freed.load(Ordering::SeqCst), 1, "round {round}");
    }
}

/// A vcmd-style hook (Intel's `intel_vcmd_ioasid_free`): its `free` looks
/// the ID up in the space and frees it on the host only if found.
struct Vcmd {
    space: OnceLock<Space<u32>>,
    host: Mutex<Vec<Ioasid>>,
    next: AtomicUsize,
    seen_in_free: AtomicUsize,
}

impl CustomAllocator for Vcmd {
    fn alloc(&self, min: Ioasid, _max: Ioasid) -> CustomAlloc {
        let id = min + self.next.fetch_add(1, Ordering::SeqCst) as Ioasid;
        self.host.lock().unwrap().push(id);
        CustomAlloc::Id(id)
    }
    fn free(&self, id: Ioasid) {
        let space = self.space.get().unwrap();
        if space.with(id, |_| ()).is_some() {
            self.seen_in_free.fetch_add(1, Ordering::SeqCst);
            self.host.lock().unwrap().retain(|&h| h != id);
        }
    }
}

#[test]
fn the_free_hook_runs_while_the_id_is_still_recorded() {
    let space = space::<u32>(0, 999);
    let hook = Arc::new(Vcmd {
        space: OnceLock::new(),
        host: Mutex::new(Vec::new()),
        next: AtomicUsize::new(0),
        seen_in_free: AtomicUsize::new(0),
    });
    hook.space.set(space.clone()).ok().unwrap();
    space.set_allocator(Some(CustomHook::new(hook.clone())));
    let set = space.new_set();
    let ids: Vec<Ioasid> = (0..10).map(|i| set.alloc(100, 999, i).unwrap()).collect();
    assert_eq!(ids, (100..110).collect::<Vec<_>>());
    set.free(103).unwrap();
    assert!(space.free(105), "kernel-form free");
    assert_eq!(hook.seen_in_free.load(Ordering::SeqCst), 2);
    drop(set); // frees the rest through the hook
    assert_eq!(hook.seen_in_free.load(Ordering::SeqCst), 10);
    assert!(
        hook.host.lock().unwrap().is_empty(),
        "the host leaked PASIDs"
    );
    // Break the hook -> space cycle.
    space.set_allocator(None);
}

/// A hook whose `free` blocks until told to go on, and which hands out one
/// number.
struct Slow {
    id: Ioasid,
    in_free: AtomicBool,
    go_on: AtomicBool,
    free_done: AtomicBool,
    answered: AtomicUsize,
}

impl CustomAllocator for Slow {
    fn alloc(&self, _min: Ioasid, _max: Ioasid) -> CustomAlloc {
        self.answered.fetch_add(1, Ordering::SeqCst);
        CustomAlloc::Id(self.id)
    }
    fn free(&self, _id: Ioasid) {
        self.in_free.store(true, Ordering::SeqCst);
        while !self.go_on.load(Ordering::SeqCst) {
            thread::yield_now();
        }
        self.free_done.store(true, Ordering::SeqCst);
    }
}

#[test]
fn an_id_is_not_recorded_again_before_its_free_hook_returned() {
    let space = space::<u32>(0, 63);
    let hook = Arc::new(Slow {
        id: 9,
        in_free: AtomicBool::new(false),
        go_on: AtomicBool::new(false),
        free_done: AtomicBool::new(false),
        answered: AtomicUsize::new(0),
    });
    space.set_allocator(Some(CustomHook::new(hook.clone())));
    let set = Arc::new(space.new_set());
    assert_eq!(set.alloc(0, 63, 1), Ok(9));
    let freer = {
        let set = set.clone();
        thread::spawn(move || set.free(9))
    };
    while !hook.in_free.load(Ordering::SeqCst) {
        thread::yield_now();
    }
    assert_eq!(set.with(9, |d| *d), Ok(1), "still recorded during the hook");
    let allocator = {
        let (set, hook) = (set.clone(), hook.clone());
        thread::spawn(move || {
            let got = set.alloc(0, 63, 2);
            (got, hook.free_done.load(Ordering::SeqCst))
        })
    };
    while hook.answered.load(Ordering::SeqCst) < 2 {
        thread::yield_now();
    }
    // Give the allocation the chance to finish early (it must not).
    thread::sleep(Duration::from_millis(20));
    hook.go_on.store(true, Ordering::SeqCst);
    freer.join().unwrap().unwrap();
    let (got, free_done_first) = allocator.join().unwrap();
    assert_eq!(got, Ok(9), "the re-issued ID is recorded once free");
    assert!(free_done_first, "recorded while its free hook was running");
    assert_eq!(set.with(9, |d| *d), Ok(2));
}

#[test]
fn refused_answers_go_back_to_the_hook_and_fail_with_eio() {
    let space = space::<u32>(0, 99);
    let set = space.new_set();
    let software = set.alloc(0, 99, 0).unwrap(); // 0, before the hook
    let hook = Arc::new(Scripted {
        answers: Mutex::new(vec![
            CustomAlloc::Id(42),
            CustomAlloc::Id(42),       // live (a custom ID): refused
            CustomAlloc::Id(software), // live (a software ID): refused
            CustomAlloc::Id(150),      // outside the space: refused
            CustomAlloc::Id(10),       // outside the requested 20..=30
        ]),
        freed: Mutex::new(Vec::new()),
    });
    space.set_allocator(Some(CustomHook::new(hook.clone())));
    assert_eq!(set.alloc(0, 99, 1), Ok(42));
    assert_eq!(set.alloc(0, 99, 2), Err(Error::Io));
    assert_eq!(set.alloc(0, 99, 3), Err(Error::Io));
    assert_eq!(set.alloc(0, 99, 4), Err(Error::Io));
    assert_eq!(set.alloc(20, 30, 5), Err(Error::Io));
    assert_eq!(Error::Io.errno(), 5);
    assert_eq!(*hook.freed.lock().unwrap(), vec![42, software, 150, 10]);
    assert_eq!(space.live_count(), 2, "refused answers recorded nothing");
    assert_eq!(set.with(42, |d| *d), Ok(1), "the live ID kept its data");
    set.free(42).unwrap();
    assert_eq!(hook.freed.lock().unwrap().last(), Some(&42));
}

/// Panics in `alloc` (or in `free`) when told to; otherwise hands out 3.
struct Panicky {
    panic_alloc: AtomicBool,
    panic_free: AtomicBool,
}

impl CustomAllocator for Panicky {
    fn alloc(&self, _min: Ioasid, _max: Ioasid) -> CustomAlloc {
        if self.panic_alloc.swap(false, Ordering::SeqCst) {
            panic!("hook alloc");
        }
        CustomAlloc::Id(3)
    }
    fn free(&self, _id: Ioasid) {
        if self.panic_free.swap(false, Ordering::SeqCst) {
            panic!("hook free");
        }
    }
}

#[test]
fn a_panicking_hook_leaks_neither_quota_nor_data() {
    let space = space::<Arc<()>>(0, 63);
    let set = space.try_new_set(Some(1)).unwrap();
    let hook = Arc::new(Panicky {
        panic_alloc: AtomicBool::new(true),
        panic_free: AtomicBool::new(false),
    });
    space.set_allocator(Some(CustomHook::new(hook.clone())));
    let data = Arc::new(());
    let panicked = catch_unwind(AssertUnwindSafe(|| set.alloc(0, 63, data.clone())));
    assert!(panicked.is_err());
    assert_eq!(Arc::strong_count(&data), 1, "the data was dropped");
    assert_eq!(
        set.alloc(0, 63, data.clone()),
        Ok(3),
        "the quota unit came back"
    );

    hook.panic_free.store(true, Ordering::SeqCst);
    let panicked = catch_unwind(AssertUnwindSafe(|| set.free(3)));
    assert!(panicked.is_err());
    assert_eq!(
        set.with(3, |_| ()),
        Err(Error::NotFound),
        "freed all the same"
    );
    drop(space.pin()); // let the epoch move on
    assert_eq!(
        set.alloc(0, 63, data.clone()),
        Ok(3),
        "quota and number back"
    );
    set.free(3).unwrap();
    space.domain().synchronize();
    assert_eq!(Arc::strong_count(&data), 1);
}

/// A host that hands out the lowest number it does not hold, so it
/// reissues a number as soon as it is told of its free.
#[derive(Default)]
struct Host {
    held: Mutex<std::collections::BTreeSet<Ioasid>>,
}

impl Host {
    fn holds(&self, id: Ioasid) -> bool {
        self.held.lock().unwrap().contains(&id)
    }
}

impl CustomAllocator for Host {
    fn alloc(&self, min: Ioasid, max: Ioasid) -> CustomAlloc {
        let mut held = self.held.lock().unwrap();
        match (min..=max).find(|id| !held.contains(id)) {
            Some(id) => {
                held.insert(id);
                CustomAlloc::Id(id)
            }
            None => CustomAlloc::Failed(Error::NoSpace),
        }
    }
    fn free(&self, id: Ioasid) {
        assert!(
            self.held.lock().unwrap().remove(&id),
            "a free of {id} the host never gave"
        );
    }
}

/// What a FREE callback saw of its custom ID: the host still holding it,
/// the ID found through the space and through its set, a second free and
/// a get refused, and an allocation from the host (which still holds the
/// number, so it answers another one).
#[derive(Debug, PartialEq)]
struct AtFree {
    host_holds: bool,
    found: bool,
    found_by_set: bool,
    free_again: bool,
    get: Result<(), Error>,
    realloc: Result<Ioasid, Error>,
}

#[test]
fn a_custom_id_sends_free_before_its_hook_as_the_kernel_does() {
    let space = space::<u32>(0, 99);
    let host = Arc::new(Host::default());
    space.set_allocator(Some(CustomHook::new(host.clone())));
    let set = Arc::new(space.new_set());
    let seen: Arc<Mutex<Vec<AtFree>>> = Arc::default();
    let _r = {
        let (space_in, set_in, host, seen) = (
            space.clone(),
            Arc::downgrade(&set),
            host.clone(),
            seen.clone(),
        );
        space.register_notifier(0, move |n| {
            if n.event() != ioasid::Event::Free || *n.data().unwrap() == 0 {
                return std::ops::ControlFlow::Continue(());
            }
            let (id, set) = (n.id(), set_in.upgrade().unwrap());
            let realloc = set.alloc(0, 99, 0);
            if let Ok(other) = realloc {
                set.free(other).unwrap(); // data 0: not probed again
            }
            seen.lock().unwrap().push(AtFree {
                host_holds: host.holds(id),
                found: space_in.copied(id).is_some(),
                found_by_set: set.with(id, |_| ()).is_ok(),
                free_again: space_in.free(id),
                get: space_in.get(id),
                realloc,
            });
            std::ops::ControlFlow::Continue(())
        })
    };
    let at_free = |realloc| AtFree {
        host_holds: true,
        found: true,
        found_by_set: true,
        free_again: false,
        get: Err(Error::NotFound),
        realloc,
    };
    // Untracked, set and kernel forms; tracked with one reference left; the
    // last put of a never-freed ID.
    assert_eq!(set.alloc(0, 99, 1), Ok(0));
    set.free(0).unwrap();
    assert_eq!(
        set.alloc(0, 99, 1),
        Ok(0),
        "the host reissues it, once freed"
    );
    assert!(space.free(0));
    assert_eq!(set.alloc(0, 99, 1), Ok(0));
    space.get(0).unwrap();
    space.put(0).unwrap();
    set.free(0).unwrap();
    assert_eq!(set.alloc(0, 99, 1), Ok(0));
    set.get(0).unwrap();
    assert_eq!(set.put(0), Ok(false));
    assert_eq!(set.put(0), Ok(true));
    assert_eq!(
        *seen.lock().unwrap(),
        (0..4).map(|_| at_free(Ok(1))).collect::<Vec<_>>()
    );
    assert!(!host.holds(0), "its hook ran after the FREE");
    assert_eq!(space.copied(0), None);
    // FREE_PENDING: FREE at the free, the hook at the last put.
    seen.lock().unwrap().clear();
    assert_eq!(set.alloc(0, 99, 1), Ok(0));
    space.get(0).unwrap();
    set.free(0).unwrap();
    let pending = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(pending.len(), 1);
    assert!(pending[0].host_holds && pending[0].found);
    assert!(host.holds(0), "referenced: the host keeps it");
    assert_eq!(space.put(0), Ok(true));
    assert!(!host.holds(0));
    assert!(seen.lock().unwrap().is_empty(), "no second FREE");
    space.check_invariants().unwrap();
    drop(set);
    space.set_allocator(None);
}

#[test]
fn a_set_torn_down_from_a_free_callback_leaves_the_custom_free_to_finish() {
    let space = space::<u32>(0, 99);
    let host = Arc::new(Host::default());
    space.set_allocator(Some(CustomHook::new(host.clone())));
    let set = space.try_new_set(Some(4)).unwrap();
    let (a, b) = (set.alloc(0, 99, 1).unwrap(), set.alloc(0, 99, 2).unwrap());
    let held = Arc::new(Mutex::new(Some(set)));
    let successor = Arc::new(Mutex::new(None));
    let frees = Arc::new(AtomicUsize::new(0));
    let _r = {
        let (held, successor) = (held.clone(), successor.clone());
        let (frees, space_in) = (frees.clone(), space.clone());
        space.register_notifier(0, move |n| {
            if n.event() == ioasid::Event::Free {
                frees.fetch_add(1, Ordering::SeqCst);
                // The set goes while the ID's free waits for this send.
                let Some(set) = held.lock().unwrap().take() else {
                    return std::ops::ControlFlow::Continue(());
                };
                drop(set); // its teardown's FREE comes here too
                           // Its index may serve a new set at once: a's free must not
                           // give that set a's quota unit.
                space_in.synchronize();
                let next = space_in.try_new_set(Some(1)).unwrap();
                assert_eq!(next.alloc(50, 99, 3).map(|_| ()), Ok(()));
                *successor.lock().unwrap() = Some(next);
            }
            std::ops::ControlFlow::Continue(())
        })
    };
    assert!(
        space.free(a),
        "kernel form: nothing but a guard held the set"
    );
    assert_eq!(frees.load(Ordering::SeqCst), 2, "a's FREE, then b's");
    assert!(
        !host.holds(a) && !host.holds(b),
        "both went back to the host"
    );
    let next = successor.lock().unwrap().take().unwrap();
    assert_eq!(space.live_count(), 1);
    space.check_invariants().unwrap();
    assert_eq!(
        next.alloc(0, 99, 4),
        Err(Error::QuotaExceeded),
        "its quota is full"
    );
    drop(next);
    assert_eq!(space.live_count(), 0);
    space.set_allocator(None);
}

#[test]
fn a_hook_that_panics_after_the_free_was_sent_still_frees() {
    let space = space::<Arc<()>>(0, 63);
    let set = space.try_new_set(Some(1)).unwrap();
    let hook = Arc::new(Panicky {
        panic_alloc: AtomicBool::new(false),
        panic_free: AtomicBool::new(true),
    });
    space.set_allocator(Some(CustomHook::new(hook.clone())));
    let frees = Arc::new(AtomicUsize::new(0));
    let _r = {
        let frees = frees.clone();
        space.register_notifier(0, move |n| {
            if n.event() == ioasid::Event::Free {
                frees.fetch_add(1, Ordering::SeqCst);
            }
            std::ops::ControlFlow::Continue(())
        })
    };
    let data = Arc::new(());
    assert_eq!(set.alloc(0, 63, data.clone()), Ok(3));
    let panicked = catch_unwind(AssertUnwindSafe(|| set.free(3)));
    assert!(panicked.is_err(), "the hook's panic reaches the caller");
    assert_eq!(frees.load(Ordering::SeqCst), 1, "sent before the hook");
    assert_eq!(
        set.with(3, |_| ()),
        Err(Error::NotFound),
        "freed all the same"
    );
    assert_eq!(
        set.alloc(0, 63, data.clone()),
        Ok(3),
        "quota and number back"
    );
    set.free(3).unwrap();
    space.domain().synchronize();
    assert_eq!(Arc::strong_count(&data), 1);
    space.set_allocator(None);
}

#[test]
fn threads_racing_on_a_host_of_four_numbers_hear_alloc_and_free_in_turn() {
    const THREADS: usize = 6;
    let space = space::<u32>(0, 3);
    let host = Arc::new(Host::default());
    space.set_allocator(Some(CustomHook::new(host.clone())));
    // Per number: live as the chains last heard it; wrong turns counted.
    let heard: Arc<Vec<AtomicBool>> = Arc::new((0..4).map(|_| AtomicBool::new(false)).collect());
    let wrong = Arc::new(AtomicUsize::new(0));
    let _r = {
        let (heard, wrong, host) = (heard.clone(), wrong.clone(), host.clone());
        space.register_notifier(0, move |n| {
            let alloc = n.event() == ioasid::Event::Alloc;
            let was_live = heard[n.id() as usize].swap(alloc, Ordering::SeqCst);
            // At its FREE the host still holds the number: the hook is next.
            if was_live == alloc || !host.holds(n.id()) {
                wrong.fetch_add(1, Ordering::SeqCst);
            }
            std::ops::ControlFlow::Continue(())
        })
    };
    // Each thread frees only what it allocated (its ALLOC went out first):
    // by the set form, the kernel form, a get and two puts, or its set's
    // teardown.
    thread::scope(|s| {
        for t in 0..THREADS {
            let space = space.clone();
            s.spawn(move || {
                for round in 0..3000 {
                    let set = space.new_set();
                    for i in 0..4 {
                        let Ok(id) = set.alloc(0, 3, 1) else { continue };
                        match (round + i + t) % 4 {
                            0 => set.free(id).unwrap(),
                            1 => assert!(space.free(id)),
                            2 => {
                                space.get(id).unwrap();
                                assert_eq!(space.put(id), Ok(false));
                                assert_eq!(set.put(id), Ok(true));
                            }
                            _ => {} // left to the teardown
                        }
                    }
                }
            });
        }
    });
    assert_eq!(
        wrong.load(Ordering::SeqCst),
        0,
        "a FREE crossed an ALLOC or its hook"
    );
    assert!(heard.iter().all(|l| !l.load(Ordering::SeqCst)));
    assert!(
        host.held.lock().unwrap().is_empty(),
        "every number went back once"
    );
    assert_eq!(space.live_count(), 0);
    space.check_invariants().unwrap();
    space.set_allocator(None);
}
