//! One face for every contender, so each bench is written once.
//!
//! [`Table`] is the read side (find by key, with a per-thread reader that
//! holds whatever the structure needs: an epoch guard, or nothing), and
//! [`Allocator`] the write side (alloc in a range, free). Values are `u64`
//! (an 8-byte private pointer, as in the kernel's `void *private`); keys are
//! `u64` so that allocators with opaque keys (idr-ebr, sharded-slab) fit.
//!
//! Contenders that cannot honour a range (`RANGES == false`) ignore `a..=b`:
//! they are marked as such in the benches and left out of the range groups.

use crate::btree::BTreeAlloc;
use crate::ida::Ida;
use crate::kernel_model::KernelModel;
use ioasid::{Policy, Space};
use std::sync::{Mutex, RwLock};

/// The read side of a contender.
pub trait Table: Send + Sync {
    /// Per-thread read state (a pinned guard, or nothing).
    type Reader<'a>
    where
        Self: 'a;
    /// A reader for the calling thread.
    fn reader(&self) -> Self::Reader<'_>;
    /// Called every [`REPIN_EVERY`] finds: epoch readers unpin and repin so
    /// that writers' garbage can be reclaimed, as a fault handler would.
    fn repin<'a>(&'a self, _reader: &mut Self::Reader<'a>) {}
    /// The value of live `key`.
    fn find<'a>(&'a self, reader: &Self::Reader<'a>, key: u64) -> Option<u64>;
}

/// Finds between two repins of a held guard.
pub const REPIN_EVERY: u64 = 1024;

/// The write side of a contender.
pub trait Allocator: Table + Sized {
    /// True if `alloc` honours its range (false: keys are opaque handles).
    const RANGES: bool;
    /// An empty allocator over the keys `0..span`.
    fn with_span(span: u64) -> Self;
    /// Allocates a key in `a..=b` (or anywhere, without `RANGES`).
    fn alloc(&self, a: u64, b: u64, value: u64) -> Option<u64>;
    /// Frees `key`: false if it was not live.
    fn free(&self, key: u64) -> bool;
}

/// An allocator over `0..span` holding `n` keys; the `i`-th key allocated
/// (in `0..span`) has value `i`. Returns it and the keys in allocation order.
pub fn prefill<A: Allocator>(span: u64, n: u64) -> (A, Vec<u64>) {
    let table = A::with_span(span);
    let keys = (0..n)
        .map(|i| table.alloc(0, span - 1, i).expect("prefill fits the span"))
        .collect();
    (table, keys)
}

// ---------------------------------------------------------------- ioasid

/// ioasid under policy `P` (0 Lowest, 1 Cyclic, 2 Any); with `PIN_PER_CALL`
/// every find pins its own guard (the C ABI's shape), else the thread holds
/// one guard and repins every [`REPIN_EVERY`] finds.
pub struct IoasidSet<const P: u8, const PIN_PER_CALL: bool> {
    set: ioasid::Set<u64>,
}

impl<const P: u8, const PIN_PER_CALL: bool> IoasidSet<P, PIN_PER_CALL> {
    /// The set's space.
    pub fn space(&self) -> &Space<u64> {
        self.set.space()
    }

    /// The set.
    pub fn set(&self) -> &ioasid::Set<u64> {
        &self.set
    }
}

/// The policy of a const parameter.
pub const fn policy(p: u8) -> Policy {
    match p {
        0 => Policy::Lowest,
        1 => Policy::Cyclic,
        _ => Policy::Any,
    }
}

impl<const P: u8, const PIN_PER_CALL: bool> Table for IoasidSet<P, PIN_PER_CALL> {
    type Reader<'a> = Option<ioasid::Guard>;

    fn reader(&self) -> Self::Reader<'_> {
        (!PIN_PER_CALL).then(|| self.set.space().pin())
    }

    fn repin(&self, reader: &mut Self::Reader<'_>) {
        if reader.is_some() {
            // Unpin before pinning again, so the epoch may advance.
            *reader = None;
            *reader = Some(self.set.space().pin());
        }
    }

    fn find(&self, reader: &Self::Reader<'_>, key: u64) -> Option<u64> {
        match reader {
            Some(guard) => self.set.find(key as u32, guard).ok().map(|value| *value),
            None => self.set.with(key as u32, |v| *v).ok(),
        }
    }
}

impl<const P: u8, const PIN_PER_CALL: bool> Allocator for IoasidSet<P, PIN_PER_CALL> {
    const RANGES: bool = true;

    fn with_span(span: u64) -> Self {
        let space = Space::builder()
            .range(0, (span - 1) as u32)
            .policy(policy(P))
            .build()
            .expect("valid span");
        IoasidSet {
            set: space.new_set(),
        }
    }

    fn alloc(&self, a: u64, b: u64, value: u64) -> Option<u64> {
        self.set
            .alloc(a as u32, b as u32, value)
            .ok()
            .map(u64::from)
    }

    fn free(&self, key: u64) -> bool {
        self.set.free(key as u32).is_ok()
    }
}

// ---------------------------------------------------------------- C ABI

/// ioasid through its C ABI: `ioasid_alloc` / `ioasid_set_free` /
/// `ioasid_find` on a `DECLARE_IOASID_SET` set in the process-global space
/// (so IDs are the keys themselves, in the global range). Every find pins
/// inside the call, as C callers do; the data is a `void *`.
pub struct CAbi {
    /// Boxed: the library keeps its state pointer inside the struct, so it
    /// must not move.
    set: Box<std::cell::UnsafeCell<ioasid_c::ioasid_set>>,
}

// SAFETY: a C `struct ioasid_set` is shared by threads by contract; the
// library synchronises every access to it through atomics.
unsafe impl Send for CAbi {}
// SAFETY: as above.
unsafe impl Sync for CAbi {}

impl CAbi {
    fn ptr(&self) -> *mut ioasid_c::ioasid_set {
        self.set.get()
    }
}

impl Table for CAbi {
    type Reader<'a> = ();
    fn reader(&self) {}
    fn find(&self, _: &(), key: u64) -> Option<u64> {
        // SAFETY: the set is valid (owned by self); no getter.
        let data = unsafe { ioasid_c::ioasid_find(self.ptr(), key as u32, None) };
        // IS_ERR: the top 4095 addresses are negative errno values.
        let is_err = (data as usize) >= (-4095isize) as usize;
        (!is_err).then_some(data as u64)
    }
}

impl Allocator for CAbi {
    const RANGES: bool = true;
    fn with_span(_span: u64) -> Self {
        // SAFETY: all-zero is `DECLARE_IOASID_SET` (null pointers).
        let set = unsafe { std::mem::zeroed::<ioasid_c::ioasid_set>() };
        CAbi {
            set: Box::new(std::cell::UnsafeCell::new(set)),
        }
    }
    fn alloc(&self, a: u64, b: u64, value: u64) -> Option<u64> {
        // SAFETY: the set is valid; the data is an opaque pointer value.
        let id = unsafe {
            ioasid_c::ioasid_alloc(
                self.ptr(),
                a as u32,
                b as u32,
                value as usize as *mut std::ffi::c_void,
            )
        };
        (id != ioasid::INVALID_IOASID).then_some(u64::from(id))
    }
    fn free(&self, key: u64) -> bool {
        // SAFETY: the set is valid.
        unsafe { ioasid_c::ioasid_set_free(self.ptr(), key as u32) == 0 }
    }
}

impl Drop for CAbi {
    fn drop(&mut self) {
        // SAFETY: the set is valid; this frees its IDs and its state.
        unsafe { ioasid_c::ioasid_set_destroy(self.ptr()) };
    }
}

// ---------------------------------------------------------- Mutex / RwLock IDA

/// `Mutex<Ida>`: the lock-everything baseline.
pub struct MutexIda(pub Mutex<Ida<u64>>);

impl Table for MutexIda {
    type Reader<'a> = ();
    fn reader(&self) {}
    fn find(&self, _: &(), key: u64) -> Option<u64> {
        self.0.lock().unwrap().find(key).copied()
    }
}

impl Allocator for MutexIda {
    const RANGES: bool = true;
    fn with_span(span: u64) -> Self {
        MutexIda(Mutex::new(Ida::new(span)))
    }
    fn alloc(&self, a: u64, b: u64, value: u64) -> Option<u64> {
        self.0.lock().unwrap().alloc(a, b, value)
    }
    fn free(&self, key: u64) -> bool {
        self.0.lock().unwrap().free(key).is_some()
    }
}

/// `RwLock<Ida>`: shared lock for finds.
pub struct RwLockIda(pub RwLock<Ida<u64>>);

impl Table for RwLockIda {
    type Reader<'a> = ();
    fn reader(&self) {}
    fn find(&self, _: &(), key: u64) -> Option<u64> {
        self.0.read().unwrap().find(key).copied()
    }
}

impl Allocator for RwLockIda {
    const RANGES: bool = true;
    fn with_span(span: u64) -> Self {
        RwLockIda(RwLock::new(Ida::new(span)))
    }
    fn alloc(&self, a: u64, b: u64, value: u64) -> Option<u64> {
        self.0.write().unwrap().alloc(a, b, value)
    }
    fn free(&self, key: u64) -> bool {
        self.0.write().unwrap().free(key).is_some()
    }
}

// ---------------------------------------------------------- Mutex<BTreeMap>

/// `Mutex<BTreeMap>` with cyclic number choice.
pub struct MutexBTree(pub Mutex<BTreeAlloc<u64>>);

impl Table for MutexBTree {
    type Reader<'a> = ();
    fn reader(&self) {}
    fn find(&self, _: &(), key: u64) -> Option<u64> {
        self.0.lock().unwrap().find(key).copied()
    }
}

impl Allocator for MutexBTree {
    const RANGES: bool = true;
    fn with_span(span: u64) -> Self {
        MutexBTree(Mutex::new(BTreeAlloc::new(span)))
    }
    fn alloc(&self, a: u64, b: u64, value: u64) -> Option<u64> {
        self.0.lock().unwrap().alloc(a, b, value)
    }
    fn free(&self, key: u64) -> bool {
        self.0.lock().unwrap().free(key).is_some()
    }
}

// ---------------------------------------------------------- kernel model

impl Table for KernelModel<u64> {
    type Reader<'a> = crossbeam_epoch::Guard;
    fn reader(&self) -> crossbeam_epoch::Guard {
        crossbeam_epoch::pin()
    }
    fn repin(&self, reader: &mut crossbeam_epoch::Guard) {
        reader.repin();
    }
    fn find(&self, guard: &crossbeam_epoch::Guard, key: u64) -> Option<u64> {
        KernelModel::find(self, key, guard).copied()
    }
}

impl Allocator for KernelModel<u64> {
    const RANGES: bool = true;
    fn with_span(span: u64) -> Self {
        KernelModel::new(span)
    }
    fn alloc(&self, a: u64, b: u64, value: u64) -> Option<u64> {
        KernelModel::alloc(self, a, b, value)
    }
    fn free(&self, key: u64) -> bool {
        KernelModel::free(self, key)
    }
}

// ---------------------------------------------------------- idr-ebr

/// idr-ebr's `Idr`: lock-free, opaque 64-bit keys, no ranges, no order.
pub struct IdrEbr(pub idr_ebr::Idr<u64>);

impl Table for IdrEbr {
    type Reader<'a> = idr_ebr::EbrGuard;
    fn reader(&self) -> idr_ebr::EbrGuard {
        idr_ebr::EbrGuard::new()
    }
    fn repin(&self, reader: &mut idr_ebr::EbrGuard) {
        *reader = idr_ebr::EbrGuard::new();
    }
    fn find(&self, guard: &idr_ebr::EbrGuard, key: u64) -> Option<u64> {
        let key = idr_ebr::Key::try_from(key).ok()?;
        self.0.get(key, guard).map(|entry| *entry)
    }
}

impl Allocator for IdrEbr {
    const RANGES: bool = false;
    fn with_span(_span: u64) -> Self {
        IdrEbr(idr_ebr::Idr::new())
    }
    fn alloc(&self, _a: u64, _b: u64, value: u64) -> Option<u64> {
        self.0.insert(value).map(u64::from)
    }
    fn free(&self, key: u64) -> bool {
        idr_ebr::Key::try_from(key).is_ok_and(|key| self.0.remove(key))
    }
}

// ---------------------------------------------------------- sharded-slab

/// sharded-slab's `Slab`: per-thread shards, opaque keys, no ranges, no
/// order; a find takes a reference count on the slot (a shared write).
pub struct ShardedSlab(pub sharded_slab::Slab<u64>);

impl Table for ShardedSlab {
    type Reader<'a> = ();
    fn reader(&self) {}
    fn find(&self, _: &(), key: u64) -> Option<u64> {
        self.0.get(key as usize).map(|entry| *entry)
    }
}

impl Allocator for ShardedSlab {
    const RANGES: bool = false;
    fn with_span(_span: u64) -> Self {
        ShardedSlab(sharded_slab::Slab::new())
    }
    fn alloc(&self, _a: u64, _b: u64, value: u64) -> Option<u64> {
        self.0.insert(value).map(|key| key as u64)
    }
    fn free(&self, key: u64) -> bool {
        self.0.remove(key as usize)
    }
}

// ---------------------------------------------------------- find-only tables

/// papaya's lock-free `HashMap` keyed by ID: a find-only contender (it does
/// not choose numbers).
pub struct PapayaMap(pub papaya::HashMap<u64, u64>);

impl PapayaMap {
    /// A map holding the keys `0..n` with value `key`.
    pub fn dense(n: u64) -> Self {
        let map = papaya::HashMap::with_capacity(n as usize);
        {
            let pinned = map.pin();
            for key in 0..n {
                pinned.insert(key, key);
            }
        }
        PapayaMap(map)
    }
}

impl Table for PapayaMap {
    type Reader<'a> = papaya::LocalGuard<'a>;
    fn reader(&self) -> papaya::LocalGuard<'_> {
        self.0.guard()
    }
    fn repin<'a>(&'a self, reader: &mut papaya::LocalGuard<'a>) {
        *reader = self.0.guard();
    }
    fn find<'a>(&'a self, guard: &papaya::LocalGuard<'a>, key: u64) -> Option<u64> {
        self.0.get(&key, guard).copied()
    }
}

/// A plain array of values indexed by ID: the memory-latency reference for
/// random finds (contract §6, docs/CONTRACT.md), not an allocator.
pub struct Array(pub Vec<u64>);

impl Table for Array {
    type Reader<'a> = ();
    fn reader(&self) {}
    fn find(&self, _: &(), key: u64) -> Option<u64> {
        self.0.get(key as usize).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Alloc, find, free and reuse through the common face.
    fn behaves<A: Allocator>(lowest: bool) {
        let table = A::with_span(1 << 20);
        let keys: Vec<u64> = (0..300)
            .map(|i| table.alloc(0, (1 << 20) - 1, i * 7).unwrap())
            .collect();
        if lowest {
            assert_eq!(keys, (0..300).collect::<Vec<_>>());
        }
        let mut reader = table.reader();
        for (i, &key) in keys.iter().enumerate() {
            assert_eq!(table.find(&reader, key), Some(i as u64 * 7));
        }
        table.repin(&mut reader);
        assert!(table.free(keys[10]));
        assert!(!table.free(keys[10]), "double free");
        assert_eq!(table.find(&reader, keys[10]), None);
        if A::RANGES {
            assert_eq!(table.alloc(500, 501, 1), Some(500));
            assert_eq!(table.alloc(500, 501, 2), Some(501));
            assert_eq!(table.alloc(500, 501, 3), None);
        }
        if lowest {
            assert_eq!(table.alloc(0, (1 << 20) - 1, 9), Some(10));
        }
    }

    #[test]
    fn every_allocator_behaves() {
        behaves::<IoasidSet<0, false>>(true);
        behaves::<IoasidSet<0, true>>(true);
        behaves::<IoasidSet<1, false>>(false);
        behaves::<IoasidSet<2, false>>(false);
        behaves::<MutexIda>(true);
        behaves::<RwLockIda>(true);
        behaves::<MutexBTree>(false);
        behaves::<KernelModel<u64>>(true);
        behaves::<IdrEbr>(false);
        behaves::<ShardedSlab>(false);
        behaves::<CAbi>(true);
    }

    #[test]
    fn find_only_tables() {
        let map = PapayaMap::dense(1000);
        let guard = map.reader();
        assert_eq!(map.find(&guard, 999), Some(999));
        assert_eq!(map.find(&guard, 1000), None);
        let array = Array((0..10).collect());
        assert_eq!(array.find(&(), 3), Some(3));
        assert_eq!(array.find(&(), 10), None);
    }

    #[test]
    fn prefill_gives_dense_keys_for_lowest_allocators() {
        let (table, keys) = prefill::<MutexIda>(1 << 12, 1000);
        assert_eq!(keys, (0..1000).collect::<Vec<_>>());
        assert_eq!(table.find(&(), 999), Some(999));
        let (table, keys) = prefill::<IdrEbr>(1 << 12, 1000);
        let guard = table.reader();
        assert_eq!(table.find(&guard, keys[777]), Some(777));
        let mut unique = keys.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 1000, "opaque keys are distinct");
    }
}
