//! Spaces: independent ID namespaces, each one ID tree plus its policy, its
//! custom allocator slot and its reclamation domain.
//!
//! An ID's *record* (owner set, origin, data) is boxed, immutable once
//! published, and replaced whole: `set_data` swaps in a new record by CAS and
//! free swaps in null. So a reader gets owner and data from one load, and a
//! racing free plus re-alloc by another set can never hand one set another
//! set's data. Replaced and freed records are dropped through the epoch.
//!
//! INVARIANT: a record's `owner` points at a live `SetCore` for as long as
//! any guard that loaded the record lives: a set removes all its records
//! before it hands its core to the epoch.

use crate::domain::{Domain, Guard};
use crate::error::Error;
use crate::members::Members;
use crate::set::Set;
use crate::sync::{thread_local, Arc, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use crate::tree::Tree;
use crate::{Ioasid, MAX_IOASID};
use crossbeam_epoch::Shared;
use std::cell::Cell;
use std::fmt;
use std::mem::ManuallyDrop;
use std::ptr;

/// How a space chooses among free IDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Policy {
    /// The lowest free ID at or above `min` (the kernel IDA contract).
    #[default]
    Lowest,
    /// The lowest free ID after the last one this space handed out, wrapping
    /// to `min` (the `xa_alloc_cyclic` contract): delays reuse of a freed ID.
    Cyclic,
    /// Any free ID in range; each thread starts from its own region, so
    /// contended allocation spreads over leaves. No ordering promise.
    Any,
}

impl Policy {
    /// The policy for a C `enum ioasid_policy` value, or `None` if unknown.
    ///
    /// ```
    /// use ioasid::Policy;
    /// assert_eq!(Policy::from_raw(1), Some(Policy::Cyclic));
    /// assert_eq!(Policy::from_raw(7), None);
    /// ```
    pub fn from_raw(value: u32) -> Option<Policy> {
        match value {
            0 => Some(Policy::Lowest),
            1 => Some(Policy::Cyclic),
            2 => Some(Policy::Any),
            _ => None,
        }
    }
}

/// What a custom allocator answers to an allocation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomAlloc {
    /// Use this ID. It must lie in the requested range and not be live,
    /// else the allocation fails with [`Error::BadCustomId`].
    Id(Ioasid),
    /// Let the space's own policy choose (the RFC's `-EAGAIN`).
    Fallback,
    /// Fail the allocation with this error.
    Failed(Error),
}

/// A hook that takes number choice over from a space (a paravirtual PASID
/// allocator asking the host, or a vendor driver with its own table).
///
/// The space still records owner and data, so find and for_each work
/// unchanged; IDs the hook gave are handed back to the same hook on free.
pub trait CustomAllocator: Send + Sync {
    /// Choose an ID in `min..=max`.
    fn alloc(&self, min: Ioasid, max: Ioasid) -> CustomAlloc;
    /// An ID this hook gave has been freed.
    fn free(&self, id: Ioasid);
}

/// A shared allocator is an allocator: keep an `Arc` to inspect its state.
impl<A: CustomAllocator + ?Sized> CustomAllocator for std::sync::Arc<A> {
    fn alloc(&self, min: Ioasid, max: Ioasid) -> CustomAlloc {
        (**self).alloc(min, max)
    }
    fn free(&self, id: Ioasid) {
        (**self).free(id)
    }
}

/// A registered custom allocator, as installed in a space. Cheap to clone;
/// two handles are equal when they share one registration.
#[derive(Clone)]
pub struct CustomHook(std::sync::Arc<Box<dyn CustomAllocator>>);

impl CustomHook {
    /// Wraps an allocator for installation with [`Space::set_allocator`].
    pub fn new(allocator: impl CustomAllocator + 'static) -> Self {
        CustomHook(std::sync::Arc::new(Box::new(allocator)))
    }

    fn allocator(&self) -> &dyn CustomAllocator {
        &**self.0
    }
}

impl PartialEq for CustomHook {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for CustomHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CustomHook { .. }")
    }
}

/// The shared state of one set (see `set.rs` for the handle).
pub(crate) struct SetCore<const F: usize> {
    /// Most live IDs, or `usize::MAX` for none.
    pub(crate) quota: usize,
    /// Live IDs, counted only when there is a quota (the count is a shared
    /// cache line that quota-less sets need not fight over).
    pub(crate) live: AtomicUsize,
    pub(crate) members: Members<F>,
}

impl<const F: usize> SetCore<F> {
    pub(crate) fn has_quota(&self) -> bool {
        self.quota != usize::MAX
    }

    fn reserve(&self) -> Result<(), Error> {
        if !self.has_quota() {
            return Ok(());
        }
        // Relaxed: the count guards nothing but itself; the CAS makes the
        // check against the quota and the increment one atomic step.
        let mut live = self.live.load(Ordering::Relaxed);
        loop {
            if live >= self.quota {
                return Err(Error::QuotaExceeded);
            }
            match self.live.compare_exchange_weak(
                live,
                live + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => live = now,
            }
        }
    }

    fn unreserve(&self) {
        if self.has_quota() {
            // Relaxed: see `reserve`.
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// One live ID's record. Immutable once published.
pub(crate) struct Record<T, const F: usize> {
    pub(crate) owner: *const SetCore<F>,
    origin: Option<CustomHook>,
    pub(crate) data: T,
}

// SAFETY: `owner` is only compared, and dereferenced under the epoch rule of
// the module docs; the rest is `T` and a thread-safe hook.
unsafe impl<T: Send, const F: usize> Send for Record<T, F> {}
// SAFETY: as above; readers share `&T`.
unsafe impl<T: Sync, const F: usize> Sync for Record<T, F> {}

/// A claimed ID, its empty slot, and the hook that chose it (if any).
type Claimed<'t, T, const F: usize> = (Ioasid, &'t AtomicPtr<Record<T, F>>, Option<CustomHook>);

pub(crate) struct SpaceInner<T, const F: usize> {
    tree: ManuallyDrop<Tree<Record<T, F>, F>>,
    min: Ioasid,
    max: Ioasid,
    policy: Policy,
    /// Cyclic: the key after the last one handed out.
    cursor: AtomicU64,
    /// The installed custom allocator (a boxed hook), or null.
    hook: AtomicPtr<CustomHook>,
    domain: Domain,
}

/// An independent ID namespace `[min, max]` with its own policy.
///
/// Cheap to clone (a shared handle). `T` is the per-ID private data; `F` the
/// tree's node fan-out (64 by default; tests use tiny nodes such as 4).
///
/// ```
/// use ioasid::{Policy, Space};
/// let space: Space<&'static str> = Space::builder().range(1, 0xFFFFF).policy(Policy::Lowest).build()?;
/// let driver = space.new_set();
/// let pasid = driver.alloc(1, 0xFFFFF, "process 42")?;
/// assert_eq!(pasid, 1);
/// let guard = space.pin();
/// assert_eq!(space.find(pasid, &guard), Some(&"process 42"));
/// # Ok::<(), ioasid::Error>(())
/// ```
pub struct Space<T, const F: usize = 64> {
    pub(crate) inner: Arc<SpaceInner<T, F>>,
}

impl<T, const F: usize> Clone for Space<T, F> {
    fn clone(&self) -> Self {
        Space {
            inner: self.inner.clone(),
        }
    }
}

/// Builds a [`Space`]: range, policy, domain.
pub struct SpaceBuilder<T, const F: usize = 64> {
    min: Ioasid,
    max: Ioasid,
    policy: Policy,
    domain: Option<Domain>,
    _data: std::marker::PhantomData<fn() -> T>,
}

impl<T: Send + Sync + 'static, const F: usize> SpaceBuilder<T, F> {
    /// The ID range, inclusive at both ends. Default `0..=0xFFFF_FFFE`.
    pub fn range(mut self, min: Ioasid, max: Ioasid) -> Self {
        self.min = min;
        self.max = max;
        self
    }

    /// The allocation policy. Default [`Policy::Lowest`].
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The reclamation domain. Default: [`Domain::global`].
    pub fn domain(mut self, domain: Domain) -> Self {
        self.domain = Some(domain);
        self
    }

    /// The space, or [`Error::InvalidArgument`] for `min > max` or
    /// `max > 0xFFFF_FFFE` (`INVALID_IOASID` is never an ID).
    pub fn build(self) -> Result<Space<T, F>, Error> {
        if self.min > self.max || self.max > MAX_IOASID {
            return Err(Error::InvalidArgument);
        }
        let span = u64::from(self.max - self.min) + 1;
        let domain = match self.domain {
            Some(domain) => domain,
            #[cfg(not(ioasid_loom))]
            None => Domain::global().clone(),
            #[cfg(ioasid_loom)]
            None => Domain::new(),
        };
        Ok(Space {
            inner: Arc::new(SpaceInner {
                tree: ManuallyDrop::new(Tree::new(span)),
                min: self.min,
                max: self.max,
                policy: self.policy,
                cursor: AtomicU64::new(0),
                hook: AtomicPtr::new(ptr::null_mut()),
                domain,
            }),
        })
    }
}

thread_local! {
    /// Policy `Any`: where this thread looks first (a key, or `u64::MAX`).
    static ANY_NEXT: Cell<u64> = Cell::new(u64::MAX);
    /// Policy `Any`: this thread's seed for its first region.
    static ANY_SEED: Cell<u64> = Cell::new(0);
}

/// A per-thread seed, spread by a Fibonacci hash of a thread counter.
fn thread_seed() -> u64 {
    static NEXT_THREAD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    ANY_SEED.with(|seed| {
        if seed.get() == 0 {
            // Relaxed: only uniqueness matters.
            let n = NEXT_THREAD.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            seed.set(n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        }
        seed.get()
    })
}

impl<T: Send + Sync + 'static, const F: usize> Space<T, F> {
    /// A space `[min, max]` with the Lowest policy in the global domain.
    ///
    /// ```
    /// let space = ioasid::Space::<u32>::new(0, 9)?;
    /// assert_eq!((space.min(), space.max()), (0, 9));
    /// assert_eq!(ioasid::Space::<u32>::new(5, 4).err(), Some(ioasid::Error::InvalidArgument));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn new(min: Ioasid, max: Ioasid) -> Result<Self, Error> {
        Self::builder().range(min, max).build()
    }

    /// A builder; see [`SpaceBuilder`].
    pub fn builder() -> SpaceBuilder<T, F> {
        SpaceBuilder {
            min: 0,
            max: MAX_IOASID,
            policy: Policy::Lowest,
            domain: None,
            _data: std::marker::PhantomData,
        }
    }

    /// A new set (consumer) in this space, without quota.
    pub fn new_set(&self) -> Set<T, F> {
        Set::new(self.clone(), usize::MAX)
    }

    /// A new set that may hold at most `quota` live IDs.
    ///
    /// ```
    /// let space = ioasid::Space::<()>::new(0, 100)?;
    /// let set = space.new_set_with_quota(1);
    /// set.alloc(0, 100, ())?;
    /// assert_eq!(set.alloc(0, 100, ()), Err(ioasid::Error::QuotaExceeded));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn new_set_with_quota(&self, quota: usize) -> Set<T, F> {
        Set::new(self.clone(), quota)
    }

    /// Lowest ID of the space.
    pub fn min(&self) -> Ioasid {
        self.inner.min
    }

    /// Highest ID of the space.
    pub fn max(&self) -> Ioasid {
        self.inner.max
    }

    /// The allocation policy.
    pub fn policy(&self) -> Policy {
        self.inner.policy
    }

    /// The reclamation domain.
    pub fn domain(&self) -> &Domain {
        &self.inner.domain
    }

    /// Enters a read-side section of this space's domain.
    pub fn pin(&self) -> Guard {
        self.inner.domain.pin()
    }

    /// Waits for every read-side section that began before the call.
    pub fn synchronize(&self) {
        self.inner.domain.synchronize()
    }

    /// The data of live ID `id`, whichever set owns it (kernel `ioasid_find`
    /// with a NULL set). Lock-free; writes nothing shared.
    ///
    /// # Panics
    /// If `guard` belongs to another domain.
    pub fn find<'g>(&'g self, id: Ioasid, guard: &'g Guard) -> Option<&'g T> {
        self.inner.record(id, guard).map(|record| &record.data)
    }

    /// Calls `f` with the data of live ID `id`, pinning for the call.
    ///
    /// ```
    /// let space = ioasid::Space::<String>::new(0, 10)?;
    /// let set = space.new_set();
    /// let id = set.alloc(0, 10, "ctx".to_string())?;
    /// assert_eq!(space.with(id, |s| s.len()), Some(3));
    /// assert_eq!(space.with(9, |s| s.len()), None);
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn with<R>(&self, id: Ioasid, f: impl FnOnce(&T) -> R) -> Option<R> {
        let guard = self.pin();
        self.find(id, &guard).map(f)
    }

    /// Frees `id` whichever set owns it (kernel `ioasid_free`): true if it
    /// was live. The data is dropped once no reader can see it.
    pub fn free(&self, id: Ioasid) -> bool {
        let guard = self.pin();
        self.inner.remove(id, None, &guard).is_ok()
    }

    /// Replaces the data of live ID `id` (any set): `Ok`, or
    /// [`Error::NotFound`]. The old data is dropped once no reader can see it.
    pub fn set_data(&self, id: Ioasid, data: T) -> Result<(), Error> {
        self.inner.replace(id, None, data)
    }

    /// Installs (or, with `None`, removes) the custom allocator; returns the
    /// previous one. IDs already given keep going back to their own hook.
    ///
    /// ```
    /// use ioasid::{CustomAlloc, CustomAllocator, CustomHook, Space};
    /// struct Host;
    /// impl CustomAllocator for Host {
    ///     fn alloc(&self, _min: u32, max: u32) -> CustomAlloc { CustomAlloc::Id(max) }
    ///     fn free(&self, _id: u32) {}
    /// }
    /// let space = Space::<()>::new(0, 99)?;
    /// space.set_allocator(Some(CustomHook::new(Host)));
    /// assert_eq!(space.new_set().alloc(0, 99, ())?, 99);
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn set_allocator(&self, hook: Option<CustomHook>) -> Option<CustomHook> {
        let fresh = hook.map_or(ptr::null_mut(), |h| Box::into_raw(Box::new(h)));
        // AcqRel: Release publishes the new box; Acquire takes the old one's
        // contents before we clone it out.
        let old = self.inner.hook.swap(fresh, Ordering::AcqRel);
        if old.is_null() {
            return None;
        }
        // SAFETY: non-null hook pointers are boxes made above; allocations
        // may still read the old one, so it goes through the epoch.
        let previous = unsafe { (*old).clone() };
        let guard = self.pin();
        // SAFETY: `old` is unreachable from the slot now; readers that loaded
        // it are pinned, and the epoch frees it after them.
        unsafe {
            guard
                .inner
                .defer_destroy(Shared::from(old as *const CustomHook))
        };
        Some(previous)
    }

    /// The installed custom allocator, if any.
    pub fn allocator(&self) -> Option<CustomHook> {
        let guard = self.pin();
        self.inner.hook(&guard).cloned()
    }

    /// Number of live IDs, counted by a walk of the tree (exact when no
    /// operation runs concurrently).
    pub fn live_count(&self) -> usize {
        self.inner.tree.count_live()
    }

    /// Bytes of tree nodes the space holds, excluding records and data.
    pub fn node_bytes(&self) -> usize {
        self.inner.tree.node_bytes()
    }
}

impl<T, const F: usize> fmt::Debug for Space<T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Space")
            .field("min", &self.inner.min)
            .field("max", &self.inner.max)
            .field("policy", &self.inner.policy)
            .field("fanout", &F)
            .finish()
    }
}

impl<T: Send + Sync + 'static, const F: usize> SpaceInner<T, F> {
    fn key_of(&self, id: Ioasid) -> Option<u64> {
        (self.min..=self.max)
            .contains(&id)
            .then(|| u64::from(id - self.min))
    }

    fn id_of(&self, key: u64) -> Ioasid {
        self.min + key as Ioasid
    }

    pub(crate) fn pin(&self) -> Guard {
        self.domain.pin()
    }

    /// The live record of `id`, valid while `guard` lives.
    pub(crate) fn record<'g>(&'g self, id: Ioasid, guard: &'g Guard) -> Option<&'g Record<T, F>> {
        assert!(
            guard.protects(&self.domain),
            "guard belongs to another domain"
        );
        let slot = self.tree.slot(self.key_of(id)?)?;
        // Acquire: pairs with the Release publish (alloc, set_data), so the
        // record's contents are visible.
        let record = slot.load(Ordering::Acquire);
        // SAFETY: a non-null slot value is a published record; it is dropped
        // only through the epoch, after `guard` (which protects this domain).
        (!record.is_null()).then(|| unsafe { &*record })
    }

    fn hook<'g>(&self, _guard: &'g Guard) -> Option<&'g CustomHook> {
        // Acquire: pairs with the Release swap in `set_allocator`.
        let hook = self.hook.load(Ordering::Acquire);
        // SAFETY: a replaced hook box is freed through the epoch, after
        // `_guard`, which protects this domain.
        (!hook.is_null()).then(|| unsafe { &*hook })
    }

    /// Allocates an ID in `min..=max` for `set`.
    pub(crate) fn alloc(
        &self,
        set: &SetCore<F>,
        min: Ioasid,
        max: Ioasid,
        data: T,
    ) -> Result<Ioasid, Error> {
        if min > max {
            return Err(Error::InvalidArgument);
        }
        let (lo, hi) = (min.max(self.min), max.min(self.max));
        if lo > hi {
            return Err(Error::InvalidArgument);
        }
        set.reserve()?;
        let guard = self.pin();
        let (id, slot, origin) = match self.claim(lo, hi, &guard) {
            Ok(claimed) => claimed,
            Err(e) => {
                set.unreserve();
                return Err(e);
            }
        };
        // Member bit before the record: a racing kernel-form free of this
        // number sees no record yet and leaves everything alone.
        set.members.insert(u64::from(id - self.min));
        let record = Box::into_raw(Box::new(Record {
            owner: set,
            origin,
            data,
        }));
        // Release: publishes the record's contents to Acquire loads in find.
        slot.store(record, Ordering::Release);
        Ok(id)
    }

    /// Claims a number: through the custom allocator if one is installed,
    /// else by policy.
    fn claim<'t>(
        &'t self,
        lo: Ioasid,
        hi: Ioasid,
        guard: &Guard,
    ) -> Result<Claimed<'t, T, F>, Error> {
        if let Some(hook) = self.hook(guard) {
            match hook.allocator().alloc(lo, hi) {
                CustomAlloc::Id(id) if (lo..=hi).contains(&id) => {
                    let key = u64::from(id - self.min);
                    let (_, slot) = self.tree.claim(key, key).ok_or(Error::BadCustomId)?;
                    return Ok((id, slot, Some(hook.clone())));
                }
                CustomAlloc::Id(_) => return Err(Error::BadCustomId),
                CustomAlloc::Failed(e) => return Err(e),
                CustomAlloc::Fallback => {}
            }
        }
        let (lo, hi) = (u64::from(lo - self.min), u64::from(hi - self.min));
        let (key, slot) = match self.policy {
            Policy::Lowest => self.tree.claim(lo, hi),
            Policy::Cyclic => {
                // Relaxed: the cursor is a starting hint; claims decide.
                let start = self.cursor.load(Ordering::Relaxed).clamp(lo, hi);
                let found = self.claim_from(start, lo, hi);
                if let Some((key, _)) = found {
                    let next = if key + 1 >= self.tree.span() {
                        0
                    } else {
                        key + 1
                    };
                    // Relaxed: as above.
                    self.cursor.store(next, Ordering::Relaxed);
                }
                found
            }
            Policy::Any => {
                let next = ANY_NEXT.with(Cell::get);
                let start = if (lo..=hi).contains(&next) {
                    next
                } else {
                    let region = (thread_seed() >> 16) % (hi - lo + 1);
                    lo + region - region % F as u64
                };
                let found = self.claim_from(start.max(lo), lo, hi);
                if let Some((key, _)) = found {
                    ANY_NEXT.with(|n| n.set(key + 1));
                }
                found
            }
        }
        .ok_or(Error::NoSpace)?;
        Ok((self.id_of(key), slot, None))
    }

    /// Claims in `start..=hi`, then in `lo..start`.
    fn claim_from(&self, start: u64, lo: u64, hi: u64) -> Option<(u64, &AtomicPtr<Record<T, F>>)> {
        self.tree.claim(start, hi).or_else(|| {
            if start > lo {
                self.tree.claim(lo, start - 1)
            } else {
                None
            }
        })
    }

    /// Frees `id`; with `expect`, only if that set owns it.
    pub(crate) fn remove(
        &self,
        id: Ioasid,
        expect: Option<*const SetCore<F>>,
        guard: &Guard,
    ) -> Result<(), Error> {
        let key = self.key_of(id).ok_or(Error::NotFound)?;
        let slot = self.tree.slot(key).ok_or(Error::NotFound)?;
        // Acquire: pairs with the Release publish, so we can read the owner.
        let mut current = slot.load(Ordering::Acquire);
        let record = loop {
            if current.is_null() {
                return Err(Error::NotFound);
            }
            // SAFETY: published record, protected by `guard` (module docs).
            let record = unsafe { &*current };
            if expect.is_some_and(|set| set != record.owner) {
                return Err(Error::PermissionDenied);
            }
            // AcqRel: Acquire reads a newer record's contents on failure (we
            // re-check its owner); Release orders our earlier reads before
            // the record leaves the slot.
            match slot.compare_exchange(
                current,
                ptr::null_mut(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break record,
                Err(now) => current = now,
            }
        };
        // SAFETY: the owner outlives every guard that saw its record live.
        let owner = unsafe { &*record.owner };
        owner.members.remove(key);
        self.tree.release(key);
        owner.unreserve();
        if let Some(hook) = &record.origin {
            hook.allocator().free(id);
        }
        // SAFETY: the record is unreachable from the slot; readers that loaded
        // it are pinned in this domain, and the epoch drops it after them.
        unsafe {
            guard
                .inner
                .defer_destroy(Shared::from(current as *const Record<T, F>))
        };
        Ok(())
    }

    /// Replaces the data of `id`; with `expect`, only if that set owns it.
    pub(crate) fn replace(
        &self,
        id: Ioasid,
        expect: Option<*const SetCore<F>>,
        data: T,
    ) -> Result<(), Error> {
        let guard = self.pin();
        let key = self.key_of(id).ok_or(Error::NotFound)?;
        let slot = self.tree.slot(key).ok_or(Error::NotFound)?;
        let mut fresh = Box::new(Record {
            owner: ptr::null(),
            origin: None,
            data,
        });
        // Acquire: pairs with the Release publish.
        let mut current = slot.load(Ordering::Acquire);
        loop {
            if current.is_null() {
                return Err(Error::NotFound);
            }
            // SAFETY: published record, protected by `guard`.
            let record = unsafe { &*current };
            if expect.is_some_and(|set| set != record.owner) {
                return Err(Error::PermissionDenied);
            }
            fresh.owner = record.owner;
            fresh.origin.clone_from(&record.origin);
            let candidate = Box::into_raw(fresh);
            // AcqRel: Release publishes the new record; Acquire reads a
            // newer one on failure.
            match slot.compare_exchange(current, candidate, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    // SAFETY: the old record is unreachable now; the epoch
                    // drops it after every reader that loaded it.
                    unsafe {
                        guard
                            .inner
                            .defer_destroy(Shared::from(current as *const Record<T, F>))
                    };
                    return Ok(());
                }
                Err(now) => {
                    // SAFETY: `candidate` was not published; take it back.
                    fresh = unsafe { Box::from_raw(candidate) };
                    current = now;
                }
            }
        }
    }
}

impl<T, const F: usize> Drop for SpaceInner<T, F> {
    fn drop(&mut self) {
        // Relaxed: `&mut self`, exclusive access.
        let hook = self.hook.load(Ordering::Relaxed);
        if !hook.is_null() {
            // SAFETY: our box; allocations that read it have all finished
            // (they held the space alive).
            drop(unsafe { Box::from_raw(hook) });
        }
        // SAFETY: taken once; `tree` is not used again.
        let tree = unsafe { ManuallyDrop::take(&mut self.tree) };
        let guard = self.domain.pin();
        let tree_ptr = Box::into_raw(Box::new(tree));
        // SAFETY: a C reader may still be inside a lookup of this space (a
        // use-after-destroy we make harmless): the nodes go through the epoch.
        // The tree holds only records of `T: 'static` data by construction
        // (every constructor requires it).
        unsafe {
            guard
                .inner
                .defer_unchecked(move || drop(Box::from_raw(tree_ptr)));
        }
    }
}
