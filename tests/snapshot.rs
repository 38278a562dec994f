//! Snapshot and restore (SPEC 6.8): random histories under every policy,
//! then a snapshot, a restore, and the same random continuation on the
//! original and on the restored space, which must answer identically; the
//! byte format's round trip and its decoder on truncated, flipped and
//! arbitrary input; hand-made snapshots that must be refused.

// The generic types: the round trips run small fan-outs too.
use ioasid::fanout::{Set, Space};
use ioasid::{
    CustomAlloc, CustomAllocator, CustomHook, Domain, Error, IdSnapshot, Ioasid, Payload, Policy,
    SetSnapshot, Snapshot, MAX_IOASID, PASID_MAX,
};
use proptest::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// One step of a history. Set and ID arguments are indices, resolved
/// against the sets alive and a small window of IDs at run time.
#[derive(Clone, Debug)]
enum Op {
    NewSet(Option<u8>),
    DropSet(u8),
    Alloc(u8, u8, u8, u32),
    Free(u8, u8),
    KernelFree(u8),
    Get(u8),
    SetGet(u8, u8),
    Put(u8),
    SetPut(u8, u8),
    SetData(u8, u32),
    Attach(u8, u8, u8),
    Detach(u8),
    FindBySpid(u8, u8, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => proptest::option::of(0u8..6).prop_map(Op::NewSet),
        1 => any::<u8>().prop_map(Op::DropSet),
        8 => (any::<u8>(), any::<u8>(), any::<u8>(), any::<u32>())
            .prop_map(|(s, a, b, d)| Op::Alloc(s, a, b, d)),
        3 => (any::<u8>(), any::<u8>()).prop_map(|(s, i)| Op::Free(s, i)),
        2 => any::<u8>().prop_map(Op::KernelFree),
        3 => any::<u8>().prop_map(Op::Get),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(s, i)| Op::SetGet(s, i)),
        3 => any::<u8>().prop_map(Op::Put),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(s, i)| Op::SetPut(s, i)),
        1 => (any::<u8>(), any::<u32>()).prop_map(|(i, d)| Op::SetData(i, d)),
        3 => (any::<u8>(), any::<u8>(), 0u8..12).prop_map(|(s, i, p)| Op::Attach(s, i, p)),
        1 => any::<u8>().prop_map(Op::Detach),
        2 => (any::<u8>(), 0u8..12, any::<bool>()).prop_map(|(s, p, g)| Op::FindBySpid(s, p, g)),
    ]
}

/// A space under test, its sets (in the order the history made them) and
/// how data is made from a number.
struct World<T: Payload, const F: usize> {
    space: Space<T, F>,
    sets: Vec<Set<T, F>>,
    make: fn(u32) -> T,
}

impl<T: Payload + Clone + PartialEq + std::fmt::Debug, const F: usize> World<T, F> {
    fn id(&self, index: u8) -> Ioasid {
        let span = u64::from(self.space.max() - self.space.min()) + 1;
        self.space.min() + (u64::from(index) % span) as Ioasid
    }

    /// Runs `op`; the answer, as text, for comparing two worlds. `drops`:
    /// whether sets may be dropped (not in continuations: a dropped set's
    /// number returns to the pool after a grace period, whose timing is
    /// the epoch's).
    fn run(&mut self, op: &Op, drops: bool) -> String {
        let pick = |sets: &[Set<T, F>], s: u8| (!sets.is_empty()).then(|| s as usize % sets.len());
        match *op {
            Op::NewSet(quota) => {
                let set = match quota {
                    Some(q) => self.space.try_new_set(Some(q.into())),
                    None => self.space.try_new_set(None),
                };
                match set {
                    Ok(set) => {
                        let number = set.number();
                        self.sets.push(set);
                        format!("new set {} number {number}", self.sets.len() - 1)
                    }
                    Err(e) => format!("new set: {e:?}"),
                }
            }
            Op::DropSet(s) if drops => match pick(&self.sets, s) {
                Some(i) => {
                    self.sets.remove(i);
                    format!("dropped {i}")
                }
                None => "no set".into(),
            },
            Op::DropSet(_) => "skip".into(),
            Op::Alloc(s, a, b, d) => match pick(&self.sets, s) {
                Some(i) => {
                    let (lo, hi) = (self.id(a), self.id(b));
                    format!("{:?}", self.sets[i].alloc(lo, hi, (self.make)(d)))
                }
                None => "no set".into(),
            },
            Op::Free(s, x) => match pick(&self.sets, s) {
                Some(i) => format!("{:?}", self.sets[i].free_released(self.id(x))),
                None => "no set".into(),
            },
            Op::KernelFree(x) => format!("{}", self.space.free(self.id(x))),
            Op::Get(x) => format!("{:?}", self.space.get(self.id(x))),
            Op::SetGet(s, x) => match pick(&self.sets, s) {
                Some(i) => format!("{:?}", self.sets[i].get(self.id(x))),
                None => "no set".into(),
            },
            Op::Put(x) => format!("{:?}", self.space.put(self.id(x))),
            Op::SetPut(s, x) => match pick(&self.sets, s) {
                Some(i) => format!("{:?}", self.sets[i].put(self.id(x))),
                None => "no set".into(),
            },
            Op::SetData(x, d) => format!("{:?}", self.space.set_data(self.id(x), (self.make)(d))),
            Op::Attach(s, x, spid) => match pick(&self.sets, s) {
                Some(i) => format!("{:?}", self.sets[i].attach_spid(self.id(x), spid.into())),
                None => "no set".into(),
            },
            Op::Detach(x) => format!("{:?}", self.space.detach_spid(self.id(x))),
            Op::FindBySpid(s, spid, get) => match pick(&self.sets, s) {
                Some(i) if get => format!("{:?}", self.sets[i].get_by_spid(spid.into())),
                Some(i) => format!("{:?}", self.sets[i].find_by_spid(spid.into())),
                None => "no set".into(),
            },
        }
    }

    /// Everything a caller can observe, per ID of the space and per set.
    fn observe(&self) -> String {
        let mut out = String::new();
        let guard = self.space.pin();
        let mut id = self.space.min();
        loop {
            let found = self.space.find(id, &guard).map(|v| (*v).clone());
            let owner = self.sets.iter().position(|s| s.contains(id));
            let refs = self.space.ref_count(id);
            if found.is_some() || refs.is_some() {
                out += &format!(
                    "{id}: {found:?} set {owner:?} refs {refs:?} pending {} spid {:?}\n",
                    self.space.is_free_pending(id),
                    self.space.spid(id)
                );
            }
            if id == self.space.max() {
                break;
            }
            id += 1;
        }
        for (i, set) in self.sets.iter().enumerate() {
            out += &format!(
                "set {i}: quota {:?} len {} ids {:?}\n",
                set.quota(),
                set.len(),
                ids_of(set)
            );
        }
        out
    }
}

fn ids_of<T: Payload, const F: usize>(set: &Set<T, F>) -> Vec<Ioasid> {
    let mut ids = Vec::new();
    let _ = set.for_each(|id, _| {
        ids.push(id);
        std::ops::ControlFlow::<()>::Continue(())
    });
    ids
}

/// The history, a snapshot, a restore, then `after` on the original and
/// then on the restored world: identical answers and observations.
fn round_trip<T, const F: usize>(
    min: Ioasid,
    span: u32,
    policy: Policy,
    make: fn(u32) -> T,
    before: &[Op],
    after: &[Op],
) -> Result<(), TestCaseError>
where
    T: Payload + Clone + PartialEq + std::fmt::Debug,
{
    let max = min.saturating_add(span - 1).min(MAX_IOASID);
    let space: Space<T, F> = Space::builder()
        .range(min, max)
        .policy(policy)
        .domain(Domain::new())
        .build()
        .unwrap();
    let mut original = World {
        space,
        sets: vec![],
        make,
    };
    original.run(&Op::NewSet(None), true);
    for op in before {
        original.run(op, true);
    }
    original
        .space
        .check_invariants()
        .map_err(TestCaseError::fail)?;
    // The dropped sets' numbers back in the pool (their grace period
    // over), so new sets of the continuation get the same numbers on both.
    original.space.synchronize();
    let snapshot = original.space.snapshot();
    snapshot
        .validate()
        .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
    let (space, restored_sets) =
        Space::<T, F>::restore_in(snapshot.clone(), &Domain::new(), None).unwrap();
    space.check_invariants().map_err(TestCaseError::fail)?;
    prop_assert_eq!(&space.snapshot(), &snapshot, "restore then snapshot");
    // The restored sets come back in number order; the history's handles
    // are in creation order: line them up.
    let mut by_number: Vec<Option<Set<T, F>>> = restored_sets.into_iter().map(Some).collect();
    let sets = original
        .sets
        .iter()
        .map(|s| {
            let at = by_number
                .iter()
                .position(|r| r.as_ref().is_some_and(|r| r.number() == s.number()))
                .expect("every set restored");
            prop_assert_eq!(by_number[at].as_ref().unwrap().quota(), s.quota());
            Ok(by_number[at].take().unwrap())
        })
        .collect::<Result<Vec<_>, TestCaseError>>()?;
    let mut restored = World { space, sets, make };
    prop_assert_eq!(original.observe(), restored.observe());
    let answers: Vec<String> = after.iter().map(|op| original.run(op, false)).collect();
    for (step, op) in after.iter().enumerate() {
        let answer = restored.run(op, false);
        prop_assert_eq!(&answer, &answers[step], "step {} {:?}", step, op);
    }
    prop_assert_eq!(original.observe(), restored.observe());
    restored
        .space
        .check_invariants()
        .map_err(TestCaseError::fail)?;
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

fn history() -> impl Strategy<Value = (Vec<Op>, Vec<Op>)> {
    (
        proptest::collection::vec(op(), 0..150),
        proptest::collection::vec(op(), 1..150),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn lowest_round_trips((before, after) in history()) {
        round_trip::<u32, 4>(0, 40, Policy::Lowest, |d| d, &before, &after)?;
    }

    #[test]
    fn cyclic_round_trips((before, after) in history()) {
        round_trip::<u32, 4>(1, 40, Policy::Cyclic, |d| d, &before, &after)?;
    }

    #[test]
    fn any_round_trips((before, after) in history()) {
        round_trip::<u32, 4>(0, 40, Policy::Any, |d| d, &before, &after)?;
    }

    #[test]
    fn boxed_data_round_trips_at_the_top_of_the_range(
        policy in prop_oneof![Just(Policy::Lowest), Just(Policy::Cyclic), Just(Policy::Any)],
        (before, after) in history(),
    ) {
        round_trip::<String, 64>(MAX_IOASID - 99, 100, policy, |d| d.to_string(), &before, &after)?;
    }

    #[test]
    fn pasid_edge_round_trips(
        policy in prop_oneof![Just(Policy::Lowest), Just(Policy::Cyclic), Just(Policy::Any)],
        (before, after) in history(),
    ) {
        round_trip::<Box<u32>, 64>(PASID_MAX - 30, 31, policy, Box::new, &before, &after)?;
    }

    /// Bytes from a real snapshot round-trip; the decoder's answer for any
    /// byte string is an error or a snapshot that encodes to those bytes.
    #[test]
    fn bytes_round_trip((before, _) in history(), policy in 0u32..3) {
        let space: Space<u64, 4> = Space::builder()
            .range(7, 7 + 39)
            .policy(Policy::from_raw(policy).unwrap())
            .domain(Domain::new())
            .build()
            .unwrap();
        let mut world = World { space, sets: vec![], make: |d| u64::from(d) << 16 | 0xabc };
        world.run(&Op::NewSet(Some(3)), true);
        for op in &before {
            world.run(op, true);
        }
        let snapshot = world.space.snapshot();
        let bytes = snapshot.encode();
        prop_assert_eq!(bytes.len(), snapshot.encoded_len());
        prop_assert_eq!(Snapshot::decode(&bytes), Ok(snapshot));
    }

    /// The decoder on arbitrary bytes: never a panic, and an `Ok` only for
    /// bytes that are exactly that snapshot's encoding. (The fuzz target
    /// `snapshot_decode` does the same with coverage guidance.)
    #[test]
    fn arbitrary_bytes_decode_or_fail(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(snapshot) = Snapshot::decode(&bytes) {
            prop_assert_eq!(snapshot.encode(), bytes);
        }
    }

    /// Arbitrary bytes behind a valid header and with a valid checksum
    /// (so they reach the field checks): a decoded snapshot always
    /// validates and restores.
    #[test]
    fn checksummed_bytes_decode_to_restorable_snapshots(
        header in proptest::collection::vec(any::<u32>(), 10),
        nfree in 0u32..3, nsets in 0u32..3, nids in 0u64..4,
        records in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut bytes = b"IOASNAP\0".to_vec();
        bytes.extend(2u32.to_le_bytes());
        bytes.extend(0u32.to_le_bytes());
        let len = 64 + 4 * nfree as usize + 24 * nsets as usize + 32 * nids as usize + 8;
        bytes.extend((len as u64).to_le_bytes());
        // min, max, policy, cyclic next, next set number: small values.
        bytes.extend((header[0] % 8).to_le_bytes());
        bytes.extend((8 + header[1] % 8).to_le_bytes());
        bytes.extend((header[2] % 4).to_le_bytes());
        bytes.extend((header[3] % 17).to_le_bytes());
        bytes.extend((header[4] % 5).to_le_bytes());
        bytes.extend(nsets.to_le_bytes());
        bytes.extend(nfree.to_le_bytes());
        bytes.extend(0u32.to_le_bytes());
        bytes.extend(nids.to_le_bytes());
        let mut body: Vec<u8> = records.iter().map(|b| b % 4).collect();
        body.resize(len - 8 - 64, 0);
        bytes.extend(body);
        let sum = fnv1a(&bytes);
        bytes.extend(sum.to_le_bytes());
        if let Ok(snapshot) = Snapshot::decode(&bytes) {
            prop_assert_eq!(snapshot.validate(), Ok(()));
            prop_assert_eq!(&snapshot.encode(), &bytes);
            let (space, sets) = Space::<u64>::restore_in(snapshot.clone(), &Domain::new(), None)
                .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            prop_assert_eq!(sets.len(), snapshot.sets.len());
            prop_assert_eq!(space.snapshot(), snapshot);
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A space with every kind of state: two sets (one with a quota), IDs
/// never got, got twice, FREE_PENDING in a set and detached.
fn rich_space() -> (Space<u64>, Vec<Set<u64>>) {
    let space: Space<u64> = Space::builder()
        .range(0, 0xFFFFF)
        .policy(Policy::Cyclic)
        .domain(Domain::new())
        .build()
        .unwrap();
    let (a, b, c) = (
        space.new_set(),
        space.new_set_with_quota(3),
        space.new_set(),
    );
    for d in 0..4 {
        a.alloc(0, 0xFFFFF, 100 + d).unwrap();
    }
    let held = b.alloc(0, 0xFFFFF, u64::MAX).unwrap();
    space.get(held).unwrap();
    space.get(held).unwrap();
    let pending = b.alloc(0, 0xFFFFF, 0).unwrap();
    space.get(pending).unwrap();
    b.free(pending).unwrap();
    let detached = c.alloc(0, 0xFFFFF, 7).unwrap();
    c.get(detached).unwrap();
    drop(c);
    a.free(1).unwrap();
    (space, vec![a, b])
}

#[test]
fn every_state_survives_a_byte_round_trip() {
    let (space, sets) = rich_space();
    let snapshot = space.snapshot();
    assert_eq!(snapshot.ids.len(), 6);
    let detached = snapshot.ids.iter().find(|i| i.set.is_none()).unwrap();
    assert!(detached.free_pending);
    assert_eq!(detached.data, 7);
    let bytes = snapshot.encode();
    let decoded = Snapshot::decode(&bytes).unwrap();
    assert_eq!(decoded, snapshot);
    let (copy, restored) = Space::<u64>::restore(decoded).unwrap();
    assert_eq!(restored.len(), 2);
    assert_eq!(restored[1].quota(), Some(3));
    assert_eq!(copy.ref_count(4), Some(3));
    assert!(copy.is_free_pending(5));
    assert!(copy.is_free_pending(6));
    assert_eq!(copy.get(6), Err(Error::NotFound));
    // The detached ID is released by its last put, owned by no set.
    assert_eq!(copy.put(6), Ok(true));
    assert_eq!(space.put(6), Ok(true));
    // Cyclic: after 6, on both; the freed 1 is not reused yet.
    assert_eq!(
        restored[0].alloc(0, 0xFFFFF, 1),
        sets[0].alloc(0, 0xFFFFF, 1)
    );
    assert_eq!(sets[0].alloc(0, 0xFFFFF, 1), Ok(8));
    assert_eq!(restored[0].alloc(0, 0xFFFFF, 1), Ok(8));
    // The quota counts the FREE_PENDING ID until its last put.
    assert_eq!(restored[1].alloc(0, 9, 1), Ok(9));
    assert_eq!(restored[1].alloc(0, 9, 1), Err(Error::QuotaExceeded));
    copy.check_invariants().unwrap();
}

#[test]
fn a_truncated_or_flipped_buffer_is_refused() {
    let (space, _sets) = rich_space();
    let bytes = space.snapshot().encode();
    for len in 0..bytes.len() {
        assert_eq!(
            Snapshot::decode(&bytes[..len]),
            Err(Error::InvalidArgument),
            "truncated to {len}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(Snapshot::decode(&longer), Err(Error::InvalidArgument));
    for at in 0..bytes.len() {
        for bit in 0..8 {
            let mut flipped = bytes.clone();
            flipped[at] ^= 1 << bit;
            assert_eq!(
                Snapshot::decode(&flipped),
                Err(Error::InvalidArgument),
                "byte {at} bit {bit}"
            );
        }
    }
}

#[test]
fn hand_made_snapshots_are_validated() {
    let good = || {
        let mut s = Snapshot::new(10, 20, Policy::Lowest);
        s.next_set_number = 3;
        s.free_set_numbers = vec![2];
        s.sets = vec![SetSnapshot::new(1, Some(1)), SetSnapshot::new(3, None)];
        s.ids = vec![
            IdSnapshot::new(10, Some(1), 0u32),
            IdSnapshot::new(20, Some(3), 1),
        ];
        s
    };
    assert_eq!(good().validate(), Ok(()));
    type Spoil = fn(&mut Snapshot<u32>);
    let cases: Vec<(&str, Spoil)> = vec![
        ("reversed range", |s| s.min = 21),
        ("max past the last ID", |s| s.max = u32::MAX),
        ("cursor below min", |s| s.cyclic_next = 9),
        ("cursor above max", |s| s.cyclic_next = 21),
        ("too many set numbers", |s| s.next_set_number = 16384),
        ("set number 0", |s| s.sets[0].number = 0),
        ("set number past next", |s| s.next_set_number = 2),
        ("sets out of order", |s| s.sets.swap(0, 1)),
        ("a free number in use", |s| s.free_set_numbers = vec![1]),
        ("a free number twice", |s| s.free_set_numbers = vec![2, 2]),
        ("free number 0", |s| s.free_set_numbers = vec![0]),
        ("a plain number not free", |s| s.plain_set_numbers = vec![1]),
        ("plain numbers not ascending", |s| {
            s.next_set_number = 5;
            s.free_set_numbers = vec![2, 4, 5];
            s.plain_set_numbers = vec![4, 2];
        }),
        ("a plain number twice", |s| {
            s.plain_set_numbers = vec![2, 2];
        }),
        ("a number neither free nor a set's", |s| {
            s.free_set_numbers.clear()
        }),
        ("a number past next, lost", |s| s.next_set_number = 4),
        ("ID below min", |s| s.ids[0].id = 9),
        ("ID above max", |s| s.ids[1].id = 21),
        ("IDs out of order", |s| s.ids.swap(0, 1)),
        ("an ID twice", |s| s.ids[1].id = 10),
        ("unknown set", |s| s.ids[1].set = Some(2)),
        ("detached, not pending", |s| s.ids[1].set = None),
        ("no reference", |s| s.ids[0].refs = 0),
        ("too many references", |s| s.ids[0].refs = 1 << 30),
        ("a SPID on a detached ID", |s| {
            s.ids[1].set = None;
            s.ids[1].free_pending = true;
            s.ids[1].refs = 2;
            s.ids[1].spid = Some(5);
        }),
        ("a SPID on a FREE_PENDING ID", |s| {
            s.ids[1].free_pending = true;
            s.ids[1].spid = Some(5);
        }),
        ("INVALID_IOASID as a SPID", |s| {
            s.ids[0].spid = Some(u32::MAX)
        }),
        ("one SPID twice in a set", |s| {
            s.sets[0].quota = None;
            s.ids[1].set = Some(1);
            s.ids[0].spid = Some(5);
            s.ids[1].spid = Some(5);
        }),
        ("over quota", |s| s.ids[1].set = Some(1)),
    ];
    for (what, spoil) in cases {
        let mut s = good();
        spoil(&mut s);
        assert_eq!(s.validate(), Err(Error::InvalidArgument), "{what}");
        assert_eq!(
            Space::<u32>::restore(s).err(),
            Some(Error::InvalidArgument),
            "{what}"
        );
    }
    let mut s = good();
    s.ids[0].refs = (1 << 30) - 1;
    s.ids[1].free_pending = true;
    let (space, sets) = Space::<u32>::restore(s).unwrap();
    assert_eq!(space.ref_count(10), Some((1 << 30) - 1));
    assert_eq!(space.get(10), Err(Error::Overflow));
    assert_eq!(sets[0].alloc(10, 20, 0), Err(Error::QuotaExceeded));
    // Number 2 is free, 3 the highest given: the next set takes 2.
    assert_eq!(space.new_set().number(), 2);
    assert_eq!(space.new_set().number(), 4);
}

struct Counting(Arc<AtomicUsize>);

impl CustomAllocator for Counting {
    fn alloc(&self, min: u32, _max: u32) -> CustomAlloc {
        CustomAlloc::Id(min)
    }
    fn free(&self, _id: u32) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn custom_ids_go_back_to_the_allocator_given_to_restore() {
    let space = Space::<u32>::new(0, 99).unwrap();
    space.set_allocator(Some(CustomHook::new(Counting(Arc::default()))));
    let set = space.new_set();
    assert_eq!(set.alloc(5, 99, 1), Ok(5));
    space.set_allocator(None);
    assert_eq!(set.alloc(0, 99, 2), Ok(0));
    let snapshot = space.snapshot();
    assert_eq!(
        snapshot
            .ids
            .iter()
            .map(|i| (i.id, i.custom))
            .collect::<Vec<_>>(),
        vec![(0, false), (5, true)]
    );
    assert_eq!(
        Space::<u32>::restore(snapshot.clone()).err(),
        Some(Error::InvalidArgument)
    );
    let frees = Arc::new(AtomicUsize::new(0));
    let hook = CustomHook::new(Counting(frees.clone()));
    let (copy, sets) = Space::<u32>::restore_in(snapshot, &Domain::new(), Some(hook)).unwrap();
    copy.check_invariants().unwrap();
    sets[0].free(0).unwrap();
    assert_eq!(frees.load(Ordering::SeqCst), 0, "a software ID");
    sets[0].free(5).unwrap();
    assert_eq!(frees.load(Ordering::SeqCst), 1, "the custom ID's hook");
}

#[test]
fn a_full_space_stays_full_and_edge_ids_survive() {
    for (min, max) in [
        (0, 63),
        (MAX_IOASID - 63, MAX_IOASID),
        (PASID_MAX - 63, PASID_MAX),
    ] {
        for policy in [Policy::Lowest, Policy::Cyclic, Policy::Any] {
            let space: Space<u32> = Space::builder()
                .range(min, max)
                .policy(policy)
                .domain(Domain::new())
                .build()
                .unwrap();
            let set = space.new_set();
            while set.alloc(min, max, 3).is_ok() {}
            let (copy, sets) = Space::<u32>::restore(space.snapshot()).unwrap();
            assert_eq!(copy.live_count(), 64);
            assert_eq!(sets[0].alloc(min, max, 1), Err(Error::NoSpace));
            assert_eq!(copy.copied(max), Some(3));
            sets[0].free(max).unwrap();
            assert_eq!(sets[0].alloc(min, max, 1), Ok(max));
        }
    }
}

#[test]
fn a_dropped_sets_number_is_saved_as_free() {
    let space = Space::<u32>::builder()
        .domain(Domain::new())
        .build()
        .unwrap();
    let (a, b, c) = (space.new_set(), space.new_set(), space.new_set());
    let number = b.number();
    drop(b);
    let snapshot = space.snapshot();
    assert_eq!(snapshot.next_set_number, 3);
    assert!(snapshot.free_set_numbers.contains(&number));
    assert_eq!(
        snapshot.sets.iter().map(|s| s.number).collect::<Vec<_>>(),
        vec![a.number(), c.number()]
    );
    let (copy, _sets) = Space::<u32>::restore(snapshot).unwrap();
    assert_eq!(copy.new_set().number(), number);
}

#[cfg(feature = "serde")]
mod serde_round_trips {
    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

        /// Through serde (JSON here): the same snapshot comes back, and
        /// the restored space answers as the original.
        #[test]
        fn json_round_trips(
            policy in prop_oneof![Just(Policy::Lowest), Just(Policy::Cyclic), Just(Policy::Any)],
            (before, after) in history(),
        ) {
            let space: Space<String, 4> = Space::builder()
                .range(3, 50)
                .policy(policy)
                .domain(Domain::new())
                .build()
                .unwrap();
            let mut world = World { space, sets: vec![], make: |d| format!("ctx {d}") };
            world.run(&Op::NewSet(Some(5)), true);
            for op in &before {
                world.run(op, true);
            }
            // Dropped sets' numbers back in the pool (see `round_trip`).
            world.space.synchronize();
            let snapshot = world.space.snapshot();
            let json = serde_json::to_string(&snapshot).unwrap();
            let back: Snapshot<String> = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(&back, &snapshot);
            let (space, sets) = Space::<String, 4>::restore_in(back, &Domain::new(), None).unwrap();
            let mut by_number = sets;
            by_number.sort_by_key(|s| {
                world.sets.iter().position(|o| o.number() == s.number()).unwrap()
            });
            let mut restored = World { space, sets: by_number, make: world.make };
            for op in &after {
                let answer = world.run(op, false);
                prop_assert_eq!(restored.run(op, false), answer);
            }
            prop_assert_eq!(world.observe(), restored.observe());
        }
    }

    /// A token registry through serde: tokens of any serializable type
    /// (strings here) come back, and the restored registry finds each set
    /// under its token with its IDs and data.
    #[test]
    fn token_snapshots_round_trip_through_json() {
        use ioasid::{Capacity, TokenSets, TokenSnapshot};
        let registry: TokenSets<String, String> =
            TokenSets::new(ioasid::Space::new(1, 0xFFFFF).unwrap(), Capacity::new(64));
        let vm = registry.create("vm-a".into(), 16).unwrap();
        let id = vm.alloc(1, 0xFFFFF, "ctx".into()).unwrap();
        let _other = registry.create("vm-b".into(), 8).unwrap();
        let snapshot = registry.snapshot();
        let json = serde_json::to_string(&snapshot).unwrap();
        let back: TokenSnapshot<String, String> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snapshot);
        let (copy, sets) = TokenSets::<String, String>::restore(back, Capacity::new(64)).unwrap();
        assert_eq!((sets.len(), copy.capacity().available()), (2, 40));
        let found = copy.find(&"vm-a".to_string()).unwrap();
        assert_eq!(
            (found.number(), found.with(id, |s| s.clone())),
            (vm.number(), Ok("ctx".into()))
        );
        assert_eq!(copy.find(&"vm-b".to_string()).unwrap().quota(), Some(8));
    }

    #[test]
    fn policy_serializes_by_name() {
        assert_eq!(
            serde_json::to_string(&Policy::Cyclic).unwrap(),
            "\"Cyclic\""
        );
        let any: Policy = serde_json::from_str("\"Any\"").unwrap();
        assert_eq!(any, Policy::Any);
    }
}

#[test]
fn an_unlisted_sets_ids_are_saved_as_its_teardown_leaves_them() {
    let space = Space::<u32>::builder()
        .domain(Domain::new())
        .build()
        .unwrap();
    let set = space.new_set();
    let plain = set.alloc(0, 9, 1).unwrap();
    let held = set.alloc(0, 9, 2).unwrap();
    let pending = set.alloc(0, 9, 3).unwrap();
    set.get(held).unwrap();
    set.get(pending).unwrap();
    set.get(pending).unwrap();
    set.free(pending).unwrap();
    set.unlist();
    set.unlist();
    let snapshot = space.snapshot();
    assert!(snapshot.sets.is_empty());
    let saved: Vec<_> = snapshot
        .ids
        .iter()
        .map(|i| (i.id, i.set, i.refs, i.free_pending))
        .collect();
    assert_eq!(saved, vec![(held, None, 1, true), (pending, None, 2, true)]);
    assert!(!snapshot.ids.iter().any(|i| i.id == plain));
    let (copy, sets) = Space::<u32>::restore(snapshot).unwrap();
    assert!(sets.is_empty());
    assert_eq!(copy.put(held), Ok(true));
    assert_eq!(copy.put(pending), Ok(false));
    assert_eq!(copy.put(pending), Ok(true));
    assert_eq!(copy.live_count(), 0);
}

#[test]
fn spids_survive_bytes_and_restore() {
    let space = Space::<u64>::builder()
        .domain(Domain::new())
        .build()
        .unwrap();
    let (vm1, vm2) = (space.new_set(), space.new_set());
    let a = vm1.alloc(0, 99, 1).unwrap();
    let b = vm2.alloc(0, 99, 2).unwrap();
    let c = vm2.alloc(0, 99, 3).unwrap();
    vm1.attach_spid(a, 101).unwrap();
    vm2.attach_spid(b, 101).unwrap();
    vm2.attach_spid(c, 0).unwrap();
    space.get(c).unwrap();
    vm2.free(c).unwrap(); // FREE_PENDING: its SPID is detached
    let snapshot = space.snapshot();
    let spids: Vec<_> = snapshot.ids.iter().map(|i| (i.id, i.spid)).collect();
    assert_eq!(spids, vec![(a, Some(101)), (b, Some(101)), (c, None)]);
    let decoded = Snapshot::decode(&snapshot.encode()).unwrap();
    assert_eq!(decoded, snapshot);
    let (copy, sets) = Space::<u64>::restore(decoded).unwrap();
    assert_eq!(sets[0].find_by_spid(101), Ok(a));
    assert_eq!(sets[1].find_by_spid(101), Ok(b));
    assert_eq!(sets[1].find_by_spid(0), Err(Error::NotFound));
    assert_eq!(sets[1].attach_spid(b, 7), Err(Error::AlreadyExists));
    assert_eq!(copy.spid(a), Some(101));
    assert_eq!(copy.snapshot(), snapshot);
    copy.check_invariants().unwrap();
}

/// Dropped sets with and without quota leave free numbers of both classes:
/// a restore keeps which is which, so new sets get the numbers they would
/// have had in the original.
#[test]
fn restore_keeps_the_plain_and_quota_free_numbers_apart() {
    let space = Space::<u32>::builder()
        .domain(Domain::new())
        .build()
        .unwrap();
    let sets: Vec<_> = (0..6)
        .map(|i| space.try_new_set((i % 2 == 1).then_some(4)).unwrap())
        .collect();
    let keep = sets[5].number();
    let mut sets = sets.into_iter();
    let dropped: Vec<_> = sets.by_ref().take(5).collect();
    let _kept = sets.next().unwrap();
    drop(dropped);
    space.synchronize();
    let snapshot = space.snapshot();
    assert_eq!(snapshot.plain_set_numbers, vec![1, 3, 5]);
    let bytes = snapshot
        .clone()
        .try_map(|_, _, v| Ok::<u64, ()>(u64::from(v)))
        .unwrap()
        .encode();
    let decoded = Snapshot::decode(&bytes).unwrap();
    assert_eq!(decoded.plain_set_numbers, vec![1, 3, 5]);
    let copies: Vec<_> = [
        snapshot,
        decoded.try_map(|_, _, v| Ok::<u32, ()>(v as u32)).unwrap(),
    ]
    .into_iter()
    .map(|restored| Space::<u32>::restore(restored).unwrap())
    .collect();
    let order = |s: &Space<u32>| {
        let quota: Vec<_> = (0..3).map(|_| s.new_set_with_quota(1)).collect();
        let plain: Vec<_> = (0..3).map(|_| s.new_set()).collect();
        let numbers = quota
            .iter()
            .chain(&plain)
            .map(|s| s.number())
            .collect::<Vec<_>>();
        (numbers, (quota, plain))
    };
    let (want, _held) = order(&space);
    // Quota sets skip the plain numbers 1, 3, 5; plain sets reuse them.
    assert_eq!(want, [4, 2, 7, 5, 3, 1]);
    for (copy, restored_sets) in &copies {
        assert_eq!(restored_sets[0].number(), keep);
        assert_eq!(order(copy).0, want);
    }
}

/// A buffer of format version 1 (no plain flag on free numbers) still
/// decodes and restores: its free numbers serve any set. A flag bit in a
/// version 1 free record is refused.
#[test]
fn format_version_1_still_decodes() {
    let space = Space::<u64>::builder()
        .domain(Domain::new())
        .build()
        .unwrap();
    let (a, b, c) = (
        space.new_set(),
        space.new_set_with_quota(2),
        space.new_set(),
    );
    b.alloc(0, 99, 7).unwrap();
    drop((a, c));
    space.synchronize();
    let v2 = space.snapshot().encode();
    let fnv = |bytes: &[u8]| {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
            (h ^ u64::from(x)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let as_v1 = |mut bytes: Vec<u8>, clear_flags: bool| {
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        if clear_flags {
            for at in (64..64 + 4 * 2).step_by(4) {
                bytes[at + 3] &= 0x7f;
            }
        }
        let body = bytes.len() - 8;
        let sum = fnv(&bytes[..body]);
        bytes[body..].copy_from_slice(&sum.to_le_bytes());
        bytes
    };
    let v1 = as_v1(v2.clone(), true);
    let decoded = Snapshot::decode(&v1).unwrap();
    let mut want = space.snapshot();
    assert_eq!(want.plain_set_numbers, vec![1, 3]);
    want.plain_set_numbers.clear();
    assert_eq!(decoded, want);
    let (copy, sets) = Space::<u64>::restore(decoded).unwrap();
    assert_eq!(sets[0].number(), b.number());
    assert_eq!(copy.copied(0), Some(7));
    // Version 1: every free number serves a quota set too.
    assert_eq!(copy.new_set_with_quota(1).number(), 3);
    assert_eq!(
        Snapshot::decode(&as_v1(v2, false)),
        Err(Error::InvalidArgument),
        "the plain flag is version 2's"
    );
}

/// A Cyclic space that keeps its memory saves the choice (header flag bit
/// 0), its copy keeps it too and answers as the original; the flag is
/// refused under another policy, in a version 1 buffer, and next to an
/// unknown bit.
#[test]
fn keep_memory_survives_a_round_trip_and_is_checked() {
    let space: Space<u64> = Space::builder()
        .range(0, 0xFFFFF)
        .policy(Policy::Cyclic)
        .keep_memory(true)
        .domain(Domain::new())
        .build()
        .unwrap();
    let set = space.new_set();
    for i in 0..3 * 4096 {
        let id = set.alloc(0, 0xFFFFF, i).unwrap();
        set.free(id).unwrap();
    }
    set.alloc(0, 0xFFFFF, 1).unwrap();
    assert_eq!(space.chunks_reclaimed(), 0);
    let snapshot = space.snapshot();
    assert!(snapshot.keep_memory);
    let bytes = snapshot.encode();
    assert_eq!(bytes[12..16], 1u32.to_le_bytes(), "flag bit 0");
    assert_eq!(Snapshot::decode(&bytes).as_ref(), Ok(&snapshot));
    let (copy, sets) = Space::<u64>::restore(snapshot.clone()).unwrap();
    assert!(copy.keeps_memory());
    assert_eq!(sets[0].alloc(0, 0xFFFFF, 2), set.alloc(0, 0xFFFFF, 2));
    // A space that gives memory back saves flag 0.
    let plain: Space<u64> = Space::builder().policy(Policy::Cyclic).build().unwrap();
    assert!(!plain.keeps_memory() && !plain.snapshot().keep_memory);
    // The flag under Lowest, and an unknown bit: refused.
    let mut lowest = Snapshot::<u64>::new(0, 9, Policy::Lowest);
    lowest.keep_memory = true;
    assert_eq!(lowest.validate(), Err(Error::InvalidArgument));
    assert_eq!(
        Space::<u64>::restore(lowest).err(),
        Some(Error::InvalidArgument)
    );
    let resum = |mut bytes: Vec<u8>, at: usize, value: u32| {
        bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
        let body = bytes.len() - 8;
        let sum = fnv1a(&bytes[..body]);
        bytes[body..].copy_from_slice(&sum.to_le_bytes());
        bytes
    };
    let unknown = resum(bytes.clone(), 12, 3);
    assert_eq!(Snapshot::decode(&unknown), Err(Error::InvalidArgument));
    let v1 = resum(bytes.clone(), 8, 1);
    assert_eq!(
        Snapshot::decode(&v1),
        Err(Error::InvalidArgument),
        "version 1 has no flag"
    );
    let v1_plain = resum(v1, 12, 0);
    assert!(!Snapshot::decode(&v1_plain).unwrap().keep_memory);
    let as_lowest = resum(bytes, 32, 0);
    assert_eq!(Snapshot::decode(&as_lowest), Err(Error::InvalidArgument));
}
