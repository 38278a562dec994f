//! Spaces: independent ID namespaces, each one ID tree plus its policy, its
//! sets' owner table, its custom allocator slot and its reclamation domain.
//!
//! A live ID is one entry word in its leaf slot (owner set index and data,
//! see `entry.rs`), published with Release and replaced whole by CAS:
//! `set_data` swaps in a word with the same owner and the new data, free
//! swaps in 0. A reader gets owner and data from one load, so a racing free
//! plus re-alloc by another set can never hand one set another set's data.
//! Values taken out of slots are dropped through the epoch.
//!
//! INVARIANT: see `owners.rs`: an owner index in a word a guard loaded maps
//! to that word's set for as long as the guard lives.

use crate::capacity::Capacity;
use crate::custom::{CustomAlloc, CustomHook, CustomIds, State};
use crate::domain::{Domain, Guard};
use crate::entry::{self, Payload, Ref};
use crate::error::Error;
use crate::notify::{Chains, Event, Note, Notification, Notifiers, Registration, SpaceNotify};
use crate::owners::{SetCore, SetTable};
use crate::refs::{RefDrop, RefState, RefTable};
use crate::set::Set;
use crate::sync::{thread_local, Arc, AtomicPtr, AtomicU64, CachePadded, Ordering};
use crate::tree::Tree;
use crate::{Ioasid, MAX_IOASID};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ops::ControlFlow;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::ptr;

/// How a space chooses among free IDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Policy {
    /// The lowest free ID at or above `min` (the kernel IDA contract).
    #[default]
    Lowest,
    /// The lowest free ID after the last one this space handed out, wrapping
    /// to `min` (the `xa_alloc_cyclic` contract): delays reuse of a freed ID.
    Cyclic,
    /// Any free ID in range; each thread starts from its own region, so
    /// contended allocation spreads over leaves. No ordering promise; the
    /// choice depends only on the free IDs, the range asked for and the
    /// calling thread (the n-th thread of the process to allocate under
    /// `Any` starts where every process's n-th thread does).
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

/// Whose ID a removal may take.
#[derive(Clone, Copy)]
pub(crate) enum Expect<'a, const F: usize> {
    /// Any set's (kernel form); the guard keeps the owner's core alive.
    Any(&'a Guard),
    /// Only the set with this owner index and core.
    Set(u16, &'a SetCore<F>),
}

/// Where an operation leaves its event: `None` when the caller saw no
/// notifier (then no event is made).
pub(crate) type NoteOut<'a, T> = Option<&'a mut Option<Note<T>>>;

pub(crate) struct SpaceInner<T: Payload, const F: usize> {
    pub(crate) tree: ManuallyDrop<Tree<F>>,
    /// Per-ID extension records (reference counts), made on first use.
    pub(crate) refs: RefTable,
    pub(crate) sets: SetTable<F>,
    min: Ioasid,
    max: Ioasid,
    policy: Policy,
    /// Cyclic: the key after the last one handed out. Written by every
    /// Cyclic alloc: padded away from `min`/`max`/`tree`, which finds read.
    pub(crate) cursor: CachePadded<AtomicU64>,
    /// The installed custom allocator (a boxed hook), or null.
    hook: AtomicPtr<CustomHook>,
    /// IDs a custom allocator chose, with the hook to give each back to.
    pub(crate) custom: CustomIds,
    pub(crate) domain: Domain,
    /// Notifier chains: the one load of the hot paths, the hub, set chains.
    pub(crate) notify: SpaceNotify<T>,
    _data: PhantomData<T>,
}

/// An independent ID namespace `[min, max]` with its own policy.
///
/// Cheap to clone (a shared handle). `T` is the per-ID private data (see
/// [`Payload`]); `F` the tree's node fan-out (64 by default; tests use tiny
/// nodes such as 4 to reach every edge of the tree).
///
/// ```
/// use ioasid::{Policy, Space};
/// let space: Space<u32> = Space::builder().range(1, 0xFFFFF).policy(Policy::Lowest).build()?;
/// let driver = space.new_set();
/// let pasid = driver.alloc(1, 0xFFFFF, 42)?;
/// assert_eq!(pasid, 1);
/// let guard = space.pin();
/// assert_eq!(space.find(pasid, &guard).map(|v| *v), Some(42));
/// # Ok::<(), ioasid::Error>(())
/// ```
pub struct Space<T: Payload, const F: usize = 64> {
    pub(crate) inner: Arc<SpaceInner<T, F>>,
}

impl<T: Payload, const F: usize> Clone for Space<T, F> {
    fn clone(&self) -> Self {
        Space {
            inner: self.inner.clone(),
        }
    }
}

/// Builds a [`Space`]: range, policy, domain.
pub struct SpaceBuilder<T: Payload, const F: usize = 64> {
    min: Ioasid,
    max: Ioasid,
    policy: Policy,
    domain: Option<Domain>,
    notifiers: Option<Notifiers<T>>,
    _data: PhantomData<fn() -> T>,
}

impl<T: Payload, const F: usize> Default for SpaceBuilder<T, F> {
    /// The builder of [`Space::builder`]: `0..=0xFFFF_FFFE`, Lowest, global domain.
    ///
    /// ```
    /// let space: ioasid::Space<u32> = ioasid::SpaceBuilder::default().build()?;
    /// assert_eq!(space.new_set().alloc(0, 9, 7)?, 0);
    /// assert!(format!("{:?}", ioasid::SpaceBuilder::<u32>::default()).contains("Lowest"));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    fn default() -> Self {
        Space::builder()
    }
}

impl<T: Payload, const F: usize> fmt::Debug for SpaceBuilder<T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpaceBuilder")
            .field("min", &self.min)
            .field("max", &self.max)
            .field("policy", &self.policy)
            .field("domain", &self.domain)
            .field("shared_notifiers", &self.notifiers.is_some())
            .finish()
    }
}

impl<T: Payload, const F: usize> SpaceBuilder<T, F> {
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

    /// The global notifier chain, shared with the other spaces given it
    /// (see [`Notifiers`]). Default: a chain of the space's own.
    pub fn notifiers(mut self, notifiers: Notifiers<T>) -> Self {
        self.notifiers = Some(notifiers);
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
        let space = Space {
            inner: Arc::new(SpaceInner {
                tree: ManuallyDrop::new(Tree::new(span)),
                refs: RefTable::new(span),
                sets: SetTable::new(),
                min: self.min,
                max: self.max,
                policy: self.policy,
                cursor: CachePadded(AtomicU64::new(0)),
                hook: AtomicPtr::new(ptr::null_mut()),
                custom: CustomIds::new(),
                domain,
                notify: SpaceNotify::new(self.notifiers.unwrap_or_default()),
                _data: PhantomData,
            }),
        };
        space.inner.notify.attach();
        Ok(space)
    }
}

thread_local! {
    /// Policy `Any`: this thread's seed for its region.
    static ANY_SEED: Cell<u64> = Cell::new(0);
}

/// A per-thread seed, spread by a Fibonacci hash of a thread counter: the
/// n-th thread of the process to allocate under `Any` gets the n-th seed.
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

impl<T: Payload, const F: usize> Space<T, F> {
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
            notifiers: None,
            _data: PhantomData,
        }
    }

    /// A new set (consumer) in this space, without quota.
    ///
    /// # Panics
    /// If the space already has 16383 sets (see [`Space::try_new_set`]).
    pub fn new_set(&self) -> Set<T, F> {
        self.try_new_set(None)
            .expect("a space holds at most 16383 sets")
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
    ///
    /// # Panics
    /// If the space already has 16383 sets (see [`Space::try_new_set`]).
    pub fn new_set_with_quota(&self, quota: usize) -> Set<T, F> {
        self.try_new_set(Some(quota))
            .expect("a space holds at most 16383 sets")
    }

    /// A new set with an optional quota, or [`Error::NoSpace`] when the
    /// space already has 16383 live sets (an owner index is 14 bits of the
    /// entry word; indices of dropped sets are reused after a grace period).
    /// An index that served a set without a quota is reused only by such
    /// sets (so a kernel-form free of their IDs needs no guard): a set with
    /// a quota may get `NoSpace` sooner, once all free indices are such.
    pub fn try_new_set(&self, quota: Option<usize>) -> Result<Set<T, F>, Error> {
        Set::new(self.clone(), quota.unwrap_or(usize::MAX), None)
    }

    /// A new set whose quota is reserved from `capacity` (the extended
    /// core's `ioasid_alloc_set`); dropping the set gives it back, and
    /// [`Set::adjust_quota`] takes a raise from it. [`Error::NoSpace`] when
    /// the capacity has less than `quota` left, or the space already has
    /// 16383 live sets; nothing is reserved on error. Quotas above
    /// `u32::MAX` are `u32::MAX`.
    ///
    /// ```
    /// let capacity = ioasid::Capacity::new(4);
    /// let space = ioasid::Space::<()>::new(1, 0xFFFFF)?;
    /// let vm = space.try_new_set_from(&capacity, 4)?;
    /// assert_eq!((vm.quota(), capacity.available()), (Some(4), 0));
    /// assert_eq!(space.try_new_set_from(&capacity, 1).err(), Some(ioasid::Error::NoSpace));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn try_new_set_from(&self, capacity: &Capacity, quota: usize) -> Result<Set<T, F>, Error> {
        let quota = quota.min(u32::MAX as usize);
        capacity.take(quota as u64)?;
        Set::new(self.clone(), quota, Some(capacity.clone())).inspect_err(|_| {
            capacity.give(quota as u64);
        })
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
    ///
    /// # Panics
    /// If this thread holds a guard of the space's domain (see
    /// [`Domain::synchronize`]; [`Space::try_synchronize`] returns an error).
    pub fn synchronize(&self) {
        self.inner.domain.synchronize()
    }

    /// [`Space::synchronize`], or [`Error::Deadlock`] if this thread holds a
    /// guard of the space's domain.
    pub fn try_synchronize(&self) -> Result<(), Error> {
        self.inner.domain.try_synchronize()
    }

    /// The data of live ID `id`, whichever set owns it (kernel `ioasid_find`
    /// with a NULL set). Lock-free; writes nothing shared.
    ///
    /// # Panics
    /// If `guard` belongs to another domain.
    pub fn find<'g>(&'g self, id: Ioasid, guard: &'g Guard) -> Option<Ref<'g, T>> {
        let word = self.inner.load(id, guard)?;
        // SAFETY: loaded under `guard`, which protects this space's domain.
        Some(unsafe { Ref::new(word) })
    }

    /// A copy of the data of live ID `id`, whichever set owns it, without a
    /// guard from the caller: it pins only to read a value stored boxed
    /// (an inline value of a `Copy` type is whole in its entry word, and
    /// nothing of it is ever reclaimed). Lock-free; writes nothing shared
    /// for an inline value.
    ///
    /// ```
    /// let space = ioasid::Space::<u32>::new(0, 10)?;
    /// let set = space.new_set();
    /// let id = set.alloc(0, 10, 7)?;
    /// assert_eq!((space.copied(id), space.copied(9)), (Some(7), None));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn copied(&self, id: Ioasid) -> Option<T>
    where
        T: Copy,
    {
        self.inner.copied(id, None).ok()
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
        self.find(id, &guard).map(|value| f(&value))
    }

    /// Frees `id` whichever set owns it (kernel `ioasid_free`): true if it
    /// was live. The data is dropped once no reader can see it.
    pub fn free(&self, id: Ioasid) -> bool {
        self.free_released(id).is_some()
    }

    /// Attaches set private ID `spid` to live `id`, whichever set owns it
    /// (the kernel-form `ioasid_attach_spid`; see [`Set::attach_spid`]
    /// for the semantics and errors, less `PermissionDenied`).
    ///
    /// ```
    /// let space = ioasid::Space::<()>::new(0, 9)?;
    /// let vm = space.new_set();
    /// let id = vm.alloc(0, 9, ())?;
    /// space.attach_spid(id, 0xFFFFF)?;
    /// assert_eq!(space.spid(id), Some(0xFFFFF));
    /// assert_eq!(vm.find_by_spid(0xFFFFF), Ok(id));
    /// assert_eq!(space.detach_spid(id), Ok(Some(0xFFFFF)));
    /// assert_eq!(space.spid(id), None);
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn attach_spid(&self, id: Ioasid, spid: Ioasid) -> Result<(), Error> {
        self.inner.attach_spid(id, spid, None)?;
        self.inner.notify_spid(Event::Bind, id, spid);
        Ok(())
    }

    /// Detaches the SPID of live `id`, whichever set owns it (see
    /// [`Set::detach_spid`]).
    ///
    /// ```
    /// let space = ioasid::Space::<()>::new(0, 9)?;
    /// let vm = space.new_set();
    /// let id = vm.alloc(0, 9, ())?;
    /// assert_eq!(space.detach_spid(id), Ok(None));
    /// space.attach_spid(id, 1)?;
    /// assert_eq!(space.detach_spid(id), Ok(Some(1)));
    /// assert_eq!(space.detach_spid(8), Err(ioasid::Error::NotFound));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn detach_spid(&self, id: Ioasid) -> Result<Option<Ioasid>, Error> {
        let spid = self.inner.detach_spid(id, None)?;
        if let Some(spid) = spid {
            self.inner.notify_spid(Event::Unbind, id, spid);
        }
        Ok(spid)
    }

    /// The SPID that live `id` holds, if any (`None` also for an ID that is
    /// not live or FREE_PENDING).
    ///
    /// ```
    /// let space = ioasid::Space::<()>::new(0, 9)?;
    /// let vm = space.new_set();
    /// let id = vm.alloc(0, 9, ())?;
    /// vm.attach_spid(id, 42)?;
    /// vm.get(id)?;
    /// assert_eq!(space.spid(id), Some(42));
    /// vm.free(id)?; // FREE_PENDING: detached
    /// assert_eq!(space.spid(id), None);
    /// # vm.put(id)?;
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn spid(&self, id: Ioasid) -> Option<Ioasid> {
        self.inner.spid(id)
    }

    /// Frees `id` as [`Space::free`] does and says what happened:
    /// `Some(true)` if this released it, `Some(false)` if references remain
    /// and it entered FREE_PENDING, `None` if it was not live (or already
    /// FREE_PENDING). For callers that hand a released ID on (a vendor's
    /// free hook) only once it is really gone.
    ///
    /// ```
    /// let space = ioasid::Space::<()>::new(0, 9)?;
    /// let set = space.new_set(); // a dropped set frees its IDs: keep it
    /// let (a, b) = (set.alloc(0, 9, ())?, set.alloc(0, 9, ())?);
    /// space.get(b)?;
    /// assert_eq!(space.free_released(a), Some(true));
    /// assert_eq!(space.free_released(b), Some(false));
    /// assert_eq!(space.free_released(b), None);
    /// assert_eq!(space.put(b), Ok(true));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn free_released(&self, id: Ioasid) -> Option<bool> {
        // The one load: with no notifier about, an untracked ID of a plain
        // owner frees without a guard.
        if !self.inner.notify.active() {
            if let Some(freed) = self.inner.free_unpinned(id, None) {
                return freed.ok();
            }
        }
        self.inner.drop_ref_any(id, RefDrop::Free).ok()
    }

    /// Takes a reference on live `id`, whichever set owns it (kernel
    /// `ioasid_get`, v5.11). [`Error::NotFound`] if it is not live or is
    /// FREE_PENDING; [`Error::Overflow`] if it already holds the most
    /// references a count can hold (nothing changed). An ID starts with one
    /// reference, the allocation's; IDs never got pay nothing for counts.
    /// [`Space::free`] of an ID with references outstanding leaves it
    /// FREE_PENDING: still found, never got again, not allocatable until
    /// its last [`Space::put`].
    ///
    /// ```
    /// let space = ioasid::Space::<u32>::new(1, 100)?;
    /// let set = space.new_set();
    /// let pasid = set.alloc(1, 100, 7)?;
    /// space.get(pasid)?; // a second user (an IOMMU bind)
    /// assert!(space.free(pasid)); // the driver frees: FREE_PENDING
    /// assert!(space.is_free_pending(pasid));
    /// assert_eq!(space.with(pasid, |v| *v), Some(7), "still found while DMA drains");
    /// assert_eq!(space.get(pasid), Err(ioasid::Error::NotFound));
    /// assert_eq!(set.alloc(1, 1, 8), Err(ioasid::Error::NoSpace), "not reusable yet");
    /// assert_eq!(space.put(pasid), Ok(true)); // the last put releases it
    /// assert_eq!(set.alloc(1, 1, 8), Ok(1));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn get(&self, id: Ioasid) -> Result<(), Error> {
        self.inner.get_ref(id, None)
    }

    /// Drops one reference of live `id` (kernel `ioasid_put`): `Ok(true)` if
    /// it was the last one and released the ID as [`Space::free`] would,
    /// `Ok(false)` if references remain, [`Error::NotFound`] if not live. A
    /// put of a never-got ID drops its allocation reference: it frees it.
    ///
    /// ```
    /// let space = ioasid::Space::<()>::new(0, 9)?;
    /// let set = space.new_set();
    /// let id = set.alloc(0, 9, ())?;
    /// space.get(id)?;
    /// assert_eq!(space.put(id), Ok(false));
    /// assert_eq!(space.ref_count(id), Some(1));
    /// assert_eq!(space.put(id), Ok(true));
    /// assert_eq!(space.put(id), Err(ioasid::Error::NotFound));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn put(&self, id: Ioasid) -> Result<bool, Error> {
        self.inner.drop_ref_any(id, RefDrop::Put)
    }

    /// The reference count of `id` (FREE_PENDING included), `None` if it is
    /// not live. A snapshot.
    pub fn ref_count(&self, id: Ioasid) -> Option<usize> {
        self.inner.ref_state(id).map(|state| match state {
            RefState::Live(n) | RefState::Pending(n) => n as usize,
        })
    }

    /// True if `id` was freed while references remained and waits for its
    /// last put (FREE_PENDING). A snapshot.
    pub fn is_free_pending(&self, id: Ioasid) -> bool {
        matches!(self.inner.ref_state(id), Some(RefState::Pending(_)))
    }

    /// Replaces the data of live ID `id` (any set): `Ok`, or
    /// [`Error::NotFound`]. The old data is dropped once no reader can see it.
    pub fn set_data(&self, id: Ioasid, data: T) -> Result<(), Error> {
        self.inner.replace(id, None, data)
    }

    /// Registers `callback` on the space's global notifier chain with
    /// `priority` (higher first; equal priorities in registration order):
    /// it sees every event of every set's IDs that begins after this
    /// returns, after the ID's set chain, until its [`Registration`] is
    /// unregistered or dropped. [`ControlFlow::Break`] stops the chain (the
    /// kernel's `NOTIFY_STOP_MASK`).
    ///
    /// The library sends [`Event::Alloc`] once an allocation is published
    /// and [`Event::Free`] exactly once per ID: at its free or its set's
    /// teardown (even when it only enters FREE_PENDING), or at the last
    /// put of an ID never freed.
    ///
    /// Callbacks run on the thread of the operation, with no library lock
    /// held, after the operation took effect: they may call any function
    /// of the library, register and unregister other blocks, and drop their
    /// own registration (which then does not wait for this call). They run
    /// outside any read-side section, except for a payload stored boxed or
    /// with drop glue when the event does not own it (an ALLOC, a free that
    /// leaves the ID FREE_PENDING, an event sent by hand): then a guard
    /// keeps the value alive for the call, and the callback must not wait
    /// for readers ([`Space::try_synchronize`] says `Deadlock`).
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use std::sync::{Arc, Mutex};
    /// use ioasid::{Event, Space};
    ///
    /// let space = Space::<u32>::new(1, 100)?;
    /// let set = space.new_set();
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// let (iommu, kvm) = (log.clone(), log.clone());
    /// let _a = space.register_notifier(1, move |n| {
    ///     iommu.lock().unwrap().push(("iommu", n.event(), n.id()));
    ///     ControlFlow::Continue(())
    /// });
    /// let _b = space.register_notifier(3, move |n| {
    ///     kvm.lock().unwrap().push(("kvm", n.event(), n.id()));
    ///     ControlFlow::Continue(())
    /// });
    /// let id = set.alloc(1, 100, 7)?;
    /// space.get(id)?;
    /// assert!(space.free(id)); // FREE_PENDING: FREE is sent now
    /// assert_eq!(space.put(id), Ok(true)); // released: no second FREE
    /// assert_eq!(*log.lock().unwrap(), vec![
    ///     ("kvm", Event::Alloc, 1), ("iommu", Event::Alloc, 1),
    ///     ("kvm", Event::Free, 1), ("iommu", Event::Free, 1),
    /// ]);
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn register_notifier(
        &self,
        priority: i32,
        callback: impl Fn(&Notification<'_, T>) -> ControlFlow<()> + Send + Sync + 'static,
    ) -> Registration<T> {
        self.inner.notify.hub().register(priority, callback)
    }

    /// The space's global notifier chain (shared with the spaces given the
    /// same [`Notifiers`]).
    ///
    /// ```
    /// let space = ioasid::Space::<()>::new(0, 9)?;
    /// assert!(space.notifiers().same(&space.clone().notifiers()));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn notifiers(&self) -> Notifiers<T> {
        self.inner.notify.hub().clone()
    }

    /// Sends `event` about live `id` by hand (the kernel's
    /// `ioasid_notify`) to `chains`: its set's chain, then the global one.
    /// [`Error::NotFound`] if `id` is not live (a FREE_PENDING ID is still
    /// found, so it may be notified).
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use ioasid::{Chains, Event};
    ///
    /// let space = ioasid::Space::<()>::new(0, 9)?;
    /// let set = space.new_set();
    /// let id = set.alloc(0, 9, ())?;
    /// let binds = Arc::new(AtomicUsize::new(0));
    /// let seen = binds.clone();
    /// let _r = set.register_notifier(0, move |n| {
    ///     if n.event() == Event::Bind { seen.fetch_add(1, Ordering::SeqCst); }
    ///     ControlFlow::Continue(())
    /// });
    /// space.notify(id, Event::Bind, Chains::SET)?;
    /// space.notify(id, Event::Bind, Chains::GLOBAL)?; // not the set's chain
    /// assert_eq!(binds.load(Ordering::SeqCst), 1);
    /// assert_eq!(space.notify(5, Event::Bind, Chains::BOTH), Err(ioasid::Error::NotFound));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn notify(&self, id: Ioasid, event: Event, chains: Chains) -> Result<(), Error> {
        let note = {
            let guard = self.pin();
            let word = self.inner.load(id, &guard).ok_or(Error::NotFound)?;
            // Under `guard`, the word's owner index names its set.
            let mut note = self
                .inner
                .notify
                .note(event, id, entry::owner(word), word, false);
            note.spid = self.inner.spid(id);
            note
        };
        self.inner.send_to(Some(note), chains);
        Ok(())
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
        unsafe { guard.defer_free(old) };
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

    /// Bytes of tree nodes the space holds (entry words included, boxed
    /// values and sets' indexes excluded).
    pub fn node_bytes(&self) -> usize {
        self.inner.tree.node_bytes()
    }
}

impl<T: Payload, const F: usize> Space<T, F> {
    /// The invariant walk, for tests: call it only when no other thread
    /// uses the space, after single-threaded steps. Checks the tree (claim
    /// bits match live entries; a clear hint bit means exactly a full child;
    /// geometry; no hint update active), that every live word names a
    /// registered set whose member bit for the key is set, that each set
    /// with a quota counts exactly its live IDs, and that the custom-ID
    /// counter matches its map. `Err` names the first broken invariant.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let inner = &*self.inner;
        let mut owned: BTreeMap<u16, usize> = BTreeMap::new();
        let mut error = None;
        inner.tree.check_quiescent(&mut |key, word| {
            let owner = entry::owner(word);
            if owner == 0 {
                // Detached by its set's teardown, referenced, FREE_PENDING:
                // no set counts it.
                if !inner.is_pending_word(key, word) {
                    error.get_or_insert(format!("key {key}: detached but not FREE_PENDING"));
                }
                return;
            }
            *owned.entry(owner).or_default() += 1;
            let core = inner.sets.get(owner);
            if core.is_null() {
                error.get_or_insert(format!("key {key}: owner {owner} is not registered"));
                return;
            }
            // SAFETY: a registered core lives while its set owns words
            // (owners.rs); the caller keeps the space quiescent.
            if !unsafe { &*core }.members.contains(key) {
                error.get_or_insert(format!("key {key}: owner {owner} lacks its member bit"));
            }
        })?;
        if let Some(error) = error {
            return Err(error);
        }
        for (&owner, &count) in &owned {
            // SAFETY: as above; non-null, checked in the walk.
            let core = unsafe { &*inner.sets.get(owner) };
            let live = core.live();
            if core.has_quota() && live != count {
                return Err(format!("set {owner}: live count {live}, owns {count}"));
            }
        }
        inner.custom.check_quiescent()
    }
}

impl<T: Payload, const F: usize> fmt::Debug for Space<T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Space")
            .field("min", &self.inner.min)
            .field("max", &self.inner.max)
            .field("policy", &self.inner.policy)
            .field("fanout", &F)
            .finish()
    }
}

impl<T: Payload, const F: usize> SpaceInner<T, F> {
    pub(crate) fn key_of(&self, id: Ioasid) -> Option<u64> {
        (self.min..=self.max)
            .contains(&id)
            .then(|| u64::from(id - self.min))
    }

    fn id_of(&self, key: u64) -> Ioasid {
        self.min + key as Ioasid
    }

    pub(crate) fn span(&self) -> u64 {
        self.tree.span()
    }

    pub(crate) fn pin(&self) -> Guard {
        self.domain.pin()
    }

    /// The live word of `id`, or `None`. Its value stays valid while `guard`
    /// lives.
    pub(crate) fn load(&self, id: Ioasid, guard: &Guard) -> Option<u64> {
        assert!(
            guard.protects(&self.domain),
            "guard belongs to another domain"
        );
        let slot = self.tree.slot(self.key_of(id)?)?;
        // Acquire: pairs with the Release publish (alloc, set_data), so a
        // boxed value's contents are visible.
        let word = slot.word().load(Ordering::Acquire);
        (word != 0).then_some(word)
    }

    /// The live word of `id`, or `None`, loaded with no guard: only its
    /// inline part may be used unless a guard was pinned before the load.
    #[inline]
    fn load_unpinned(&self, id: Ioasid) -> Option<u64> {
        // Tree nodes live as long as the tree, so the slot needs no guard.
        let slot = self.tree.slot(self.key_of(id)?)?;
        // Acquire: pairs with the Release publish (alloc, set_data).
        let word = slot.word().load(Ordering::Acquire);
        (word != 0).then_some(word)
    }

    /// A copy of the value of live `id` (with `owner`, only if that set owns
    /// it): pins only when the word is boxed.
    #[inline]
    pub(crate) fn copied(&self, id: Ioasid, owner: Option<u16>) -> Result<T, Error>
    where
        T: Copy,
    {
        let word = self.load_unpinned(id).ok_or(Error::NotFound)?;
        if owner.is_some_and(|owner| entry::owner(word) != owner) {
            return Err(Error::PermissionDenied);
        }
        if !entry::is_boxed(word) {
            // SAFETY: loaded from its slot, not boxed.
            return Ok(unsafe { entry::copy_inline(word) });
        }
        self.copied_boxed(id, owner)
    }

    /// [`SpaceInner::copied`] of a value stored boxed: out of line.
    #[cold]
    #[inline(never)]
    fn copied_boxed(&self, id: Ioasid, owner: Option<u16>) -> Result<T, Error>
    where
        T: Copy,
    {
        let owned = |word: u64| match owner {
            Some(owner) if entry::owner(word) != owner => Err(Error::PermissionDenied),
            _ => Ok(word),
        };
        // A box may be freed once its word leaves the slot: load it again
        // under a guard, which keeps the box until it goes.
        let guard = self.pin();
        let word = owned(self.load(id, &guard).ok_or(Error::NotFound)?)?;
        // SAFETY: loaded under `guard`, which protects this space's domain.
        let value = unsafe { Ref::<T>::new(word) };
        Ok(*value)
    }

    fn hook<'g>(&self, _guard: &'g Guard) -> Option<&'g CustomHook> {
        // Acquire: pairs with the Release swap in `set_allocator`.
        let hook = self.hook.load(Ordering::Acquire);
        // SAFETY: a replaced hook box is freed through the epoch, after
        // `_guard`, which protects this domain.
        (!hook.is_null()).then(|| unsafe { &*hook })
    }

    /// Allocates an ID in `min..=max` for the set with owner index `owner`.
    pub(crate) fn alloc(
        &self,
        set: &SetCore<F>,
        owner: u16,
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
        let payload = entry::encode(data).map_err(|_| Error::InvalidArgument)?;
        let word = entry::with_owner(payload, owner);
        let result = set.reserve().and_then(|()| {
            // A panicking custom hook: give the quota unit back, drop the
            // value (never published), then go on unwinding.
            let on_panic = || {
                set.unreserve();
                // SAFETY: never published; this is its one drop.
                unsafe { entry::drop_value::<T>(word) };
            };
            self.claim(lo, hi, on_panic)
                .inspect_err(|_| set.unreserve())
        });
        let (id, slot) = match result {
            Ok(claimed) => claimed,
            Err(e) => {
                // SAFETY: never published; this is its one drop.
                unsafe { entry::drop_value::<T>(word) };
                return Err(e);
            }
        };
        // Release: publishes a boxed value's contents to Acquire loads.
        slot.store(word, Ordering::Release);
        // After the publish (members.rs: the word, a fence, then the bit).
        set.members.insert_published(u64::from(id - self.min));
        if self.notify.active() {
            self.notify_alloc(id, owner, word);
        }
        Ok(id)
    }

    #[cold]
    #[inline(never)]
    fn notify_alloc(&self, id: Ioasid, owner: u16, word: u64) {
        // The caller holds the set, so its owner index is valid.
        self.send_to(
            Some(self.notify.note(Event::Alloc, id, owner, word, false)),
            Chains::BOTH,
        );
    }

    /// Sends a note captured by an operation (with no guard held now) to
    /// both chains; a value the note owns is retired afterwards, even if a
    /// callback panics. No note: one test.
    #[inline]
    pub(crate) fn send(&self, note: &mut Option<Note<T>>) {
        if note.is_some() {
            self.send_taken(note);
        }
    }

    #[cold]
    #[inline(never)]
    fn send_taken(&self, note: &mut Option<Note<T>>) {
        self.send_to(note.take(), Chains::BOTH)
    }

    pub(crate) fn send_to(&self, note: Option<Note<T>>, chains: Chains) {
        let Some(note) = note else { return };
        if !note.reads_under_guard() && crate::notify::holding() {
            // Held back if this thread opened a NotifyScope: then sent with
            // the hub and domain only (nothing is read from the tree).
            let hub = self.notify.hub().clone();
            let domain = self.domain.clone();
            let send = Box::new(move || {
                struct RetireAfter<T: Payload>(Domain, Option<u64>, PhantomData<T>);
                impl<T: Payload> Drop for RetireAfter<T> {
                    fn drop(&mut self) {
                        if let Some(word) = self.1.filter(|&w| entry::needs_drop::<T>(w)) {
                            // SAFETY: the note owned the word's value, which
                            // left its slot; this is its one drop, deferred
                            // past every guard that could have loaded it.
                            self.0
                                .pin()
                                .defer(move || unsafe { entry::drop_value::<T>(word) });
                        }
                    }
                }
                let _retire = RetireAfter::<T>(domain.clone(), note.owned_word(), PhantomData);
                note.send(chains, &hub, || domain.pin(), |_| None);
            });
            crate::notify::hold_back(send);
            return;
        }
        struct RetireAfter<'s, T: Payload, const F: usize>(&'s SpaceInner<T, F>, Option<u64>);
        impl<T: Payload, const F: usize> Drop for RetireAfter<'_, T, F> {
            fn drop(&mut self) {
                if let Some(word) = self.1 {
                    self.0.retire(word, &self.0.pin());
                }
            }
        }
        let _retire = RetireAfter(self, note.owned_word());
        let id = note.id();
        note.send(
            chains,
            self.notify.hub(),
            || self.pin(),
            |guard| self.load(id, guard),
        );
    }

    /// [`SpaceInner::drop_ref`] of any set's ID (kernel forms), sending
    /// its event once the guard is gone.
    /// With no notifier about (the one load), no notes are taken at all.
    #[inline]
    pub(crate) fn drop_ref_any(&self, id: Ioasid, how: RefDrop) -> Result<bool, Error> {
        if !self.notify.active() {
            let guard = self.pin();
            return self.drop_ref(id, Expect::Any(&guard), how, None);
        }
        self.drop_ref_any_noting(id, how)
    }

    #[cold]
    #[inline(never)]
    fn drop_ref_any_noting(&self, id: Ioasid, how: RefDrop) -> Result<bool, Error> {
        let mut note = None;
        let result = {
            let guard = self.pin();
            self.drop_ref(id, Expect::Any(&guard), how, Some(&mut note))
        };
        self.send(&mut note);
        result
    }

    /// Claims a number: through the custom allocator if one is installed,
    /// else by policy.
    ///
    /// No guard is needed on the software path: tree nodes live as long as
    /// the tree, and nothing epoch-managed is read. If the custom hook
    /// panics, `on_panic` runs and the panic goes on.
    fn claim(
        &self,
        lo: Ioasid,
        hi: Ioasid,
        on_panic: impl FnOnce(),
    ) -> Result<(Ioasid, &AtomicU64), Error> {
        // Relaxed: only "is there a hook at all"; `hook()` below loads it
        // again with Acquire under a guard before using it.
        if !self.hook.load(Ordering::Relaxed).is_null() {
            let guard = self.pin();
            let custom = catch_unwind(AssertUnwindSafe(|| self.claim_custom(lo, hi, &guard)));
            match custom {
                Ok(Some(claimed)) => return claimed,
                Ok(None) => {}
                Err(panic) => {
                    on_panic();
                    resume_unwind(panic)
                }
            }
        }
        self.claim_by_policy(lo, hi)
    }

    /// Asks the installed hook; `None` when there is none or it says
    /// "fall back to software". An answer out of range or live is refused:
    /// it goes back to the hook's `free` and the allocation fails with
    /// `Error::Io` (SPEC 6.3).
    fn claim_custom(
        &self,
        lo: Ioasid,
        hi: Ioasid,
        guard: &Guard,
    ) -> Option<Result<(Ioasid, &AtomicU64), Error>> {
        let hook = self.hook(guard)?;
        let id = match hook.allocator().alloc(lo, hi) {
            CustomAlloc::Id(id) => id,
            CustomAlloc::Failed(e) => return Some(Err(e)),
            CustomAlloc::Fallback => return None,
        };
        if (lo..=hi).contains(&id) {
            let key = u64::from(id - self.min);
            // Recorded before the word is published: a racing free of this
            // ID finds the record. Waits while a free of the number is
            // under way.
            let claimed = self.custom.record(id, hook, || self.tree.claim(key, key));
            if let Some((_, slot)) = claimed {
                return Some(Ok((id, slot)));
            }
        }
        hook.allocator().free(id);
        Some(Err(Error::Io))
    }

    fn claim_by_policy(&self, lo: Ioasid, hi: Ioasid) -> Result<(Ioasid, &AtomicU64), Error> {
        let (lo, hi) = (u64::from(lo - self.min), u64::from(hi - self.min));
        let (key, slot) = match self.policy {
            Policy::Lowest => self.tree.claim(lo, hi),
            Policy::Cyclic => {
                // Relaxed: the cursor is a starting hint; claims decide.
                let cursor = self.cursor.load(Ordering::Relaxed);
                // Past the requested range, "after the last one" wraps to lo.
                let start = if cursor > hi { lo } else { cursor.max(lo) };
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
                // The thread's own region (a leaf-aligned start from its
                // seed): a function of the range and the thread alone, no
                // history, so a restored space answers as the original
                // (snapshot.rs). A thread that frees and allocates again
                // finds the same key (hot in cache); the free hints skip
                // full leaves past the start.
                let region = (thread_seed() >> 16) % (hi - lo + 1);
                self.claim_from(lo + region - region % F as u64, lo, hi)
            }
        }
        .ok_or(Error::NoSpace)?;
        Ok((self.id_of(key), slot))
    }

    /// Claims in `start..=hi`, then in `lo..start`.
    fn claim_from(&self, start: u64, lo: u64, hi: u64) -> Option<(u64, &AtomicU64)> {
        self.tree.claim(start, hi).or_else(|| {
            if start > lo {
                self.tree.claim(lo, start - 1)
            } else {
                None
            }
        })
    }

    /// The free without a guard, for its common case: an untracked word
    /// (no ext bit) with an inline value (nothing to reclaim), no custom
    /// IDs about, and either (kernel form, `set` `None`) a plain owner index
    /// (owners.rs: every set it names has no quota, so no set core is
    /// touched) or (set form) the word of `set` (its index and its core,
    /// which the caller's set keeps alive). Answers `Ok(true)` (released)
    /// or `Err(NotFound)` (not live) as [`SpaceInner::drop_ref`] would;
    /// `None` when the case is another one (another owner, or the word
    /// changed under us): the caller takes `drop_ref`, pinned for the
    /// kernel form. Tree nodes live as long as the tree, so nothing here
    /// needs a guard. A feature that must see every free (a hook, a per-ID
    /// record) sends its case to `drop_ref` here.
    #[inline]
    pub(crate) fn free_unpinned(
        &self,
        id: Ioasid,
        set: Option<(u16, &SetCore<F>)>,
    ) -> Option<Result<bool, Error>> {
        let Some(slot) = self.key_of(id).and_then(|key| self.tree.slot(key)) else {
            return Some(Err(Error::NotFound));
        };
        // Acquire: pairs with the Release publish (and, through it, with the
        // owner index's registration, which `is_plain` reads).
        let word = slot.word().load(Ordering::Acquire);
        if word == 0 {
            return Some(Err(Error::NotFound));
        }
        let owned = match set {
            Some((index, _)) => entry::owner(word) == index,
            None => self.sets.is_plain(entry::owner(word)),
        };
        if !owned || entry::has_ext(word) || entry::needs_drop::<T>(word) || self.custom.any() {
            return None;
        }
        // AcqRel: as the CAS in `drop_ref`. On failure the word changed:
        // `drop_ref` decides from the new one.
        slot.word()
            .compare_exchange(word, 0, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        // The set's member bit stays (members.rs: cleaned lazily); a plain
        // owner keeps no count.
        let key = u64::from(id - self.min);
        self.tree.release(slot, key);
        if let Some((_, core)) = set {
            core.unreserve();
        }
        Some(Ok(true))
    }

    /// Drops one reference of `id` as `how` says; `Ok(true)` if this
    /// released the ID. An untracked ID (no ext bit) has exactly one
    /// reference, so every form releases it here, as v5.5's free did; a
    /// tracked one goes to `refs.rs`. With `note` (the caller saw a
    /// notifier about), the FREE event, if any, is left there for the caller
    /// to send once it holds no guard; without, no event is made.
    pub(crate) fn drop_ref(
        &self,
        id: Ioasid,
        expect: Expect<'_, F>,
        how: RefDrop,
        mut note: NoteOut<'_, T>,
    ) -> Result<bool, Error> {
        let key = self.key_of(id).ok_or(Error::NotFound)?;
        let slot = self.tree.slot(key).ok_or(Error::NotFound)?;
        // Acquire: pairs with the Release publish.
        let mut word = slot.word().load(Ordering::Acquire);
        let (core, custom_hook) = loop {
            if word == 0 {
                return Err(Error::NotFound);
            }
            let owner = entry::owner(word);
            let core = match expect {
                Expect::Set(index, _) if index != owner => return Err(Error::PermissionDenied),
                Expect::Set(_, core) => core as *const SetCore<F>,
                // Read before the CAS, while the word still names its owner:
                // the index cannot be reused while we are pinned (owners.rs).
                Expect::Any(_) => self.sets.get(owner),
            };
            if entry::has_ext(word) {
                match self.drop_tracked(id, key, slot, how, note.as_deref_mut()) {
                    Some(result) => return result,
                    None => {
                        // Acquire: as above.
                        word = slot.word().load(Ordering::Acquire);
                        continue;
                    }
                }
            }
            // With custom IDs about, the records stay locked over the check
            // and the CAS: the number cannot gain a record in between.
            let mut records = self.custom.any().then(|| self.custom.lock_for_free());
            if let Some(records) = records.as_mut() {
                match records.state(id) {
                    // Another free is under way: the ID is as good as gone.
                    Some(State::Freeing) => return Err(Error::NotFound),
                    Some(State::Live) => {
                        // Acquire: as above. Under the lock, the word of a
                        // recorded ID changes only by set_data (or from 0 by
                        // its publish).
                        let now = slot.word().load(Ordering::Acquire);
                        if now != word {
                            word = now;
                            continue;
                        }
                        break (core, Some(records.start_free(id)));
                    }
                    None => {}
                }
            }
            // AcqRel: Release orders our reads before the word leaves the
            // slot; Acquire reads a newer word on failure (we re-check it).
            // This CAS also decides a race with a first get, which CASes the
            // same word to word|EXT (refs.rs).
            match slot
                .word()
                .compare_exchange(word, 0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break (core, None),
                Err(now) => word = now,
            }
        };
        // SAFETY: `core` is the owner of the word we took (or, for a custom
        // ID, are freeing: nobody else takes it): the caller's own set, or
        // (kernel form) one kept alive by the caller's guard (owners.rs
        // invariant).
        let core = unsafe { &*core };
        let Some(hook) = custom_hook else {
            // The set's member bit stays (members.rs: cleaned lazily).
            self.tree.release(slot, key);
            core.unreserve();
            self.retire_taken(id, word, expect, note);
            return Ok(true);
        };
        // The kernel's order: the hook runs while the ID is still recorded
        // (a hook may find it); then the word goes, and the number is
        // released with its record dropped, so a waiting allocation of the
        // same number goes on only now. A panicking hook still frees.
        let hook_done = catch_unwind(AssertUnwindSafe(|| hook.allocator().free(id)));
        // AcqRel: as the CAS above. Only this call empties a word whose
        // record is freeing, so the swap takes the latest data.
        let word = slot.word().swap(0, Ordering::AcqRel);
        core.unreserve();
        self.custom.finish_free(id, || self.tree.release(slot, key));
        self.retire_taken(id, word, expect, note);
        if let Err(panic) = hook_done {
            resume_unwind(panic);
        }
        Ok(true)
    }

    /// Retires the value of a word a removal took out of its slot, or hands
    /// it to the FREE note when the caller takes notes.
    #[inline(always)]
    fn retire_taken(&self, id: Ioasid, word: u64, expect: Expect<'_, F>, note: NoteOut<'_, T>) {
        if let Some(out) = note {
            // The owner is followed while the caller's guard (Any) or set
            // (Set) keeps its index valid.
            *out = Some(
                self.notify
                    .note(Event::Free, id, entry::owner(word), word, true),
            );
            return;
        }
        match expect {
            Expect::Any(guard) => self.retire(word, guard),
            Expect::Set(..) if entry::needs_drop::<T>(word) => self.retire(word, &self.pin()),
            Expect::Set(..) => {}
        }
    }

    /// Drops the value of a word taken out of its slot, after every reader
    /// that could have loaded it.
    pub(crate) fn retire(&self, word: u64, guard: &Guard) {
        if entry::needs_drop::<T>(word) {
            // SAFETY: the word left its slot; this is its value's one drop,
            // deferred past every guard that could have loaded it.
            guard.defer(move || unsafe { entry::drop_value::<T>(word) });
        }
    }

    /// Replaces the data of `id`; with `expect`, only if that set owns it.
    pub(crate) fn replace(&self, id: Ioasid, expect: Option<u16>, data: T) -> Result<(), Error> {
        let payload = entry::encode(data).map_err(|_| Error::InvalidArgument)?;
        let result = self.replace_payload(id, expect, payload);
        if result.is_err() {
            // SAFETY: never published; this is its one drop.
            unsafe { entry::drop_value::<T>(payload) };
        }
        result
    }

    fn replace_payload(&self, id: Ioasid, expect: Option<u16>, payload: u64) -> Result<(), Error> {
        let guard = self.pin();
        let key = self.key_of(id).ok_or(Error::NotFound)?;
        let slot = self.tree.slot(key).ok_or(Error::NotFound)?.word();
        // Acquire: pairs with the Release publish.
        let mut word = slot.load(Ordering::Acquire);
        loop {
            if word == 0 {
                return Err(Error::NotFound);
            }
            let owner = entry::owner(word);
            if expect.is_some_and(|set| set != owner) {
                return Err(Error::PermissionDenied);
            }
            // AcqRel: Release publishes the new value; Acquire reads a newer
            // word on failure.
            match slot.compare_exchange(
                word,
                // Owner and ext bits kept: a tracked ID stays tracked.
                entry::with_payload_of(payload, word),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.retire(word, &guard);
                    return Ok(());
                }
                Err(now) => word = now,
            }
        }
    }
}

impl<T: Payload, const F: usize> Drop for SpaceInner<T, F> {
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
        // SAFETY: sets hold the space alive, so none is left and none left a
        // word behind; any word still there (none, by that reasoning) has its
        // value dropped once, here. A C reader may still be inside a lookup
        // of this space (a use-after-destroy we make harmless), so nodes and
        // values go through the epoch. `T: 'static` (Payload) outlives it.
        unsafe {
            guard.defer_unchecked(move || {
                let mut tree = Box::from_raw(tree_ptr);
                tree.drain_live(&mut |_, word| entry::drop_value::<T>(word));
            });
        }
    }
}
