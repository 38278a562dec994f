//! Snapshot and restore of a [`TokenSets`] registry: random histories of
//! token sets (create, drop, alloc, free) under every policy, then a
//! snapshot, a restore, and the same random continuation on both
//! registries, which must answer identically; hand-made snapshots the
//! restore must refuse before it creates anything; snapshots taken while
//! other threads create and drop token sets.

use ioasid::fanout::{Set, TokenSets};
use ioasid::{Capacity, Error, Event, Ioasid, Policy, SetSnapshot, Snapshot, TokenSnapshot};
use proptest::prelude::*;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

type Registry = TokenSets<u8, u32, 4>;

const MIN: Ioasid = 1;
const MAX: Ioasid = 48;
/// Less than the space: quotas run out before numbers do.
const CAPACITY: u32 = 30;

#[derive(Clone, Debug)]
enum Op {
    /// Create the set of token `.0 % 5` with quota `.1 % 9`.
    Create(u8, u8),
    /// Drop our reference to the token's set (its teardown: the last one).
    Drop(u8),
    /// Allocate in the token's set, with this data.
    Alloc(u8, u32),
    /// Free the token's `.1`-th ID.
    Free(u8, u8),
    /// A set without token, with quota `.0 % 5` (or none for 0), and an ID.
    Plain(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (any::<u8>(), any::<u8>()).prop_map(|(t, q)| Op::Create(t, q)),
        1 => any::<u8>().prop_map(Op::Drop),
        6 => (any::<u8>(), any::<u32>()).prop_map(|(t, d)| Op::Alloc(t, d)),
        3 => (any::<u8>(), any::<u8>()).prop_map(|(t, i)| Op::Free(t, i)),
        1 => any::<u8>().prop_map(Op::Plain),
    ]
}

/// A registry and the references a user holds to its sets.
struct World {
    registry: Registry,
    held: HashMap<u8, Arc<Set<u32, 4>>>,
    plain: Vec<Arc<Set<u32, 4>>>,
}

fn ids_of(set: &Set<u32, 4>) -> Vec<Ioasid> {
    set.iter(&set.space().pin()).map(|(id, _)| id).collect()
}

impl World {
    fn run(&mut self, op: &Op) -> String {
        match *op {
            Op::Create(token, quota) => {
                let token = token % 5;
                match self.registry.create(token, usize::from(quota % 9)) {
                    Ok(set) => {
                        let number = set.number();
                        self.held.insert(token, set);
                        format!("created {number}")
                    }
                    Err(e) => format!("{e:?}"),
                }
            }
            Op::Drop(token) => format!("dropped {}", self.held.remove(&(token % 5)).is_some()),
            Op::Alloc(token, data) => match self.held.get(&(token % 5)) {
                Some(set) => format!("{:?}", set.alloc(MIN, MAX, data)),
                None => "no set".into(),
            },
            Op::Free(token, index) => match self.held.get(&(token % 5)) {
                Some(set) => {
                    let ids = ids_of(set);
                    match ids.get(usize::from(index) % ids.len().max(1)) {
                        Some(&id) => format!("{:?}", set.free(id)),
                        None => "empty".into(),
                    }
                }
                None => "no set".into(),
            },
            Op::Plain(quota) => {
                let space = self.registry.space();
                let set = match quota % 5 {
                    0 => space.new_set(),
                    q => space.new_set_with_quota(usize::from(q)),
                };
                let id = set.alloc(MIN, MAX, u32::from(quota));
                self.plain.push(Arc::new(set));
                format!("plain {id:?}")
            }
        }
    }

    /// What a user can see: each token's set (number, quota, IDs and their
    /// data), the capacity left, and the whole space state.
    fn observe(&self) -> String {
        let mut out = String::new();
        for token in 0..5u8 {
            if let Some(set) = self.registry.find(&token) {
                let data: Vec<(Ioasid, u32)> = ids_of(&set)
                    .into_iter()
                    .map(|id| (id, set.copied(id).unwrap()))
                    .collect();
                out += &format!("{token}: {} {:?} {data:?}\n", set.number(), set.quota());
            }
        }
        out += &format!("capacity {}\n", self.registry.capacity().available());
        out += &format!("{:?}", self.registry.space().snapshot());
        out
    }
}

fn restored(snapshot: TokenSnapshot<u8, u32>) -> World {
    let (registry, sets) = Registry::restore(snapshot.clone(), Capacity::new(CAPACITY)).unwrap();
    let numbers: HashMap<u16, u8> = snapshot.tokens.iter().map(|&(n, t)| (n, t)).collect();
    let (mut held, mut plain) = (HashMap::new(), Vec::new());
    for set in sets {
        match numbers.get(&set.number()) {
            Some(&token) => {
                let found = registry.find(&token).expect("adopted under its token");
                assert!(Arc::ptr_eq(&found, &set));
                held.insert(token, set);
            }
            None => plain.push(set),
        }
    }
    World {
        registry,
        held,
        plain,
    }
}

fn round_trip(policy: Policy, before: &[Op], after: &[Op]) -> Result<(), TestCaseError> {
    let space = ioasid::fanout::Space::<u32, 4>::builder()
        .range(MIN, MAX)
        .policy(policy)
        .build()
        .unwrap();
    let mut original = World {
        registry: Registry::new(space, Capacity::new(CAPACITY)),
        held: HashMap::new(),
        plain: Vec::new(),
    };
    for op in before {
        original.run(op);
    }
    // Dropped sets' numbers back in the pool, as in tests/snapshot.rs.
    original.registry.space().synchronize();
    let snapshot = original.registry.snapshot();
    let tokens: Vec<(u16, u8)> = (0..5u8)
        .filter_map(|t| Some((original.registry.find(&t)?.number(), t)))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect();
    prop_assert_eq!(&snapshot.tokens, &tokens, "every live token set, by number");
    let mut copy = restored(snapshot.clone());
    prop_assert_eq!(
        &copy.registry.snapshot(),
        &snapshot,
        "restore then snapshot"
    );
    prop_assert_eq!(original.observe(), copy.observe());
    for (step, op) in after.iter().enumerate() {
        let (a, b) = (original.run(op), copy.run(op));
        prop_assert_eq!(a, b, "step {} {:?}", step, op);
    }
    prop_assert_eq!(original.observe(), copy.observe());
    Ok(())
}

fn history() -> impl Strategy<Value = (Vec<Op>, Vec<Op>)> {
    (
        proptest::collection::vec(op(), 0..80),
        proptest::collection::vec(op(), 1..80),
    )
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn token_sets_round_trip(
        policy in prop_oneof![Just(Policy::Lowest), Just(Policy::Cyclic), Just(Policy::Any)],
        (before, after) in history(),
    ) {
        round_trip(policy, &before, &after)?;
    }
}

/// A snapshot of one token set (number 1, quota 4) and a plain set
/// (number 2, no quota), each with one ID.
fn two_sets() -> TokenSnapshot<u8, u32> {
    let registry = Registry::new(
        ioasid::fanout::Space::new(MIN, MAX).unwrap(),
        Capacity::new(CAPACITY),
    );
    let vm = registry.create(7, 4).unwrap();
    vm.alloc(MIN, MAX, 70).unwrap();
    let plain = registry.space().new_set();
    plain.alloc(MIN, MAX, 20).unwrap();
    let snapshot = registry.snapshot();
    assert_eq!(snapshot.tokens, [(1, 7)]);
    assert_eq!(
        snapshot.space.sets,
        [SetSnapshot::new(1, Some(4)), SetSnapshot::new(2, None)]
    );
    snapshot
}

#[test]
fn bad_token_lists_are_refused_and_create_nothing() {
    let good = two_sets();
    let refuse = |tokens: Vec<(u16, u8)>, capacity: u32, why: Error| {
        let snapshot = TokenSnapshot::new(good.space.clone(), tokens.clone());
        let pool = Capacity::new(capacity);
        let answer = Registry::restore(snapshot, pool.clone()).map(|_| ());
        assert_eq!(answer, Err(why), "tokens {tokens:?}, capacity {capacity}");
        assert_eq!(pool.available(), capacity, "nothing reserved");
    };
    refuse(vec![(3, 7)], CAPACITY, Error::InvalidArgument); // no set 3
    refuse(vec![(2, 7)], CAPACITY, Error::InvalidArgument); // set 2 has no quota
    refuse(vec![(1, 7), (1, 8)], CAPACITY, Error::InvalidArgument); // set 1 twice
    let mut shared = good.space.clone();
    shared.sets[1].quota = Some(3);
    let snapshot = TokenSnapshot::new(shared, vec![(1, 7), (2, 7)]); // token 7 twice
    assert_eq!(
        Registry::restore(snapshot, Capacity::new(CAPACITY)).map(|_| ()),
        Err(Error::InvalidArgument)
    );
    refuse(vec![(1, 7)], 3, Error::NoSpace); // quota 4 from a capacity of 3
    let mut broken = good.space.clone();
    broken.ids[0].set = Some(9);
    let snapshot = TokenSnapshot::new(broken, good.tokens.clone());
    assert_eq!(
        Registry::restore(snapshot, Capacity::new(CAPACITY)).map(|_| ()),
        Err(Error::InvalidArgument)
    );

    // The good one restores: the token set reserves 4, the plain set none.
    let pool = Capacity::new(4);
    let (registry, sets) = Registry::restore(good, pool.clone()).unwrap();
    assert_eq!((sets.len(), pool.available()), (2, 0));
    let vm = registry.find(&7).unwrap();
    assert_eq!((vm.number(), vm.copied(MIN)), (1, Ok(70)));
    assert_eq!(registry.create(7, 1).err(), Some(Error::AlreadyExists));
    assert!(registry.find(&2).is_none(), "the plain set has no token");
    drop((vm, sets));
    assert!(
        registry.find(&7).is_none(),
        "held only by what restore returned"
    );
    assert_eq!(pool.available(), 4, "its quota back on teardown");
}

/// A restored registry is a registry: notifiers registered by token (not
/// saved) join the restored set's chain and see its events.
#[test]
fn notifiers_registered_after_restore_hear_the_restored_sets() {
    let (registry, sets) = Registry::restore(two_sets(), Capacity::new(CAPACITY)).unwrap();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let log = heard.clone();
    let registration = registry.register_notifier(7, 0, move |n| {
        log.lock().unwrap().push((n.event(), n.id()));
        ControlFlow::Continue(())
    });
    assert!(registration.is_attached());
    let vm = registry.find(&7).unwrap();
    let id = vm.alloc(MIN, MAX, 71).unwrap();
    assert_eq!(id, MIN + 2, "after the two restored IDs");
    drop((vm, sets)); // teardown: FREE for both of its IDs
    assert_eq!(
        *heard.lock().unwrap(),
        [(Event::Alloc, id), (Event::Free, MIN), (Event::Free, id)]
    );
    assert!(!registration.is_attached(), "parked again");
}

/// Snapshots taken while other threads create and drop token sets (and
/// allocate in them) always restore: every token names a saved set, and
/// the restored registry holds as many token sets as the snapshot names.
#[test]
fn snapshots_racing_creates_and_drops_restore() {
    let space = ioasid::fanout::Space::<u32, 4>::builder()
        .range(0, 4095)
        .build()
        .unwrap();
    let registry = Arc::new(Registry::new(space, Capacity::new(4096)));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..3u8)
        .map(|w| {
            let (registry, stop) = (registry.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rounds = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || rounds < 50 {
                    let token = w * 10 + (rounds % 4) as u8;
                    if let Ok(set) = registry.create(token, 8) {
                        for data in 0..(rounds % 5) {
                            set.alloc(0, 4095, data).unwrap();
                        }
                    }
                    rounds += 1;
                }
            })
        })
        .collect();
    for _ in 0..200 {
        let snapshot = registry.snapshot();
        let named = snapshot.tokens.len();
        let (copy, sets) = Registry::restore(snapshot, Capacity::new(4096)).unwrap();
        let found = (0..40u8).filter(|t| copy.find(t).is_some()).count();
        assert_eq!(found, named);
        assert!(sets.len() >= named);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
}

#[test]
fn a_snapshot_by_hand_restores() {
    let mut space = Snapshot::<u32>::new(MIN, MAX, Policy::Cyclic);
    space.next_set_number = 1;
    space.sets = vec![SetSnapshot::new(1, Some(2))];
    space.cyclic_next = 10;
    let (registry, sets) =
        Registry::restore(TokenSnapshot::new(space, vec![(1, 3)]), Capacity::new(2)).unwrap();
    assert_eq!(registry.find(&3).map(|s| s.number()), Some(1));
    assert_eq!(sets[0].alloc(MIN, MAX, 0), Ok(10), "Cyclic from the cursor");
}
