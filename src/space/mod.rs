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
//!
//! Where each part lives:
//! - `mod.rs` (here): the [`Space`] handle, [`SpaceBuilder`], and the
//!   space's state (`SpaceInner`), shared by the handle and its sets.
//! - `engine.rs`: the per-ID engine: alloc (claim, publish, member bit),
//!   the frees (`free_unpinned`, `drop_ref`), replace, retire, and the
//!   plumbing that sends the notes operations leave.
//! - `policy.rs`: [`Policy`] and the software claim by policy (the Cyclic
//!   cursor, Any's per-thread region).
//! - `hook.rs`: the custom allocator slot: install and replace
//!   (`set_allocator`), the guarded load (`hook`), the claim through it.
//!
//! A claim asks the hook first when one is installed (SPEC 6.3), else the
//! policy; either way the number is a claim bit taken in the tree before
//! the entry word is published, and a free releases the claim bit only
//! after the word left its slot.

mod engine;
mod hook;
mod policy;

pub(crate) use engine::{Expect, NoteOut};
use policy::Cursor;
pub use policy::Policy;

use crate::capacity::Capacity;
use crate::custom::{CustomHook, CustomIds};
use crate::domain::{Domain, Guard};
use crate::entry::{self, Payload, Ref};
use crate::error::Error;
use crate::notify::{Chains, Event, Notification, Notifiers, Registration, SpaceNotify};
use crate::owners::SetTable;
use crate::refs::{RefDrop, RefState, RefTable};
use crate::set::Set;
use crate::sync::{AtomicPtr, CachePadded};
use crate::tree::Tree;
use crate::{Ioasid, MAX_IOASID};
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ops::ControlFlow;
use std::ptr;
use std::sync::{Arc, Weak};

pub(crate) struct SpaceInner<T: Payload, const F: usize> {
    pub(crate) tree: ManuallyDrop<Tree<F>>,
    /// Per-ID extension records (reference counts), made on first use.
    pub(crate) refs: RefTable,
    pub(crate) sets: SetTable<F>,
    min: Ioasid,
    max: Ioasid,
    policy: Policy,
    /// Cyclic: the key after the last one handed out, and its round
    /// (`policy.rs`). Written by Cyclic allocs: padded away from
    /// `min`/`max`/`tree`, which finds read.
    pub(crate) cursor: CachePadded<Cursor>,
    /// The installed custom allocator (a boxed hook), or null.
    hook: AtomicPtr<CustomHook>,
    /// IDs a custom allocator chose, with the hook to give each back to.
    pub(crate) custom: CustomIds,
    pub(crate) domain: Domain,
    /// Notifier chains: the one load of the hot paths, the hub, set chains.
    pub(crate) notify: SpaceNotify<T>,
    /// The space's own handle, for a FREE held back by a [`NotifyScope`]:
    /// its number is released by the held-back send, after the scope closes
    /// (`engine.rs`). A std `Arc` under loom too: the space's lifetime is
    /// not a protocol the models check.
    ///
    /// [`NotifyScope`]: crate::NotifyScope
    pub(crate) this: Weak<SpaceInner<T, F>>,
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
    keep_memory: bool,
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
            .field("keep_memory", &self.keep_memory)
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

    /// Whether a Cyclic space keeps the memory of the IDs its cursor has
    /// left (default `false`: it gives back each chunk of 4096 IDs, at the
    /// default fan-out, that the cursor left empty; see
    /// [`Space::chunks_reclaimed`]). Kept, the space grows to the size of
    /// the whole range once the cursor has swept it (about 9 MiB for 2^20
    /// IDs; a 2^32 range could grow to 32 GiB) and allocates faster under
    /// contention, with no page given back and faulted in again. Other
    /// policies never sweep the range and give nothing back either way. A
    /// snapshot keeps the choice.
    ///
    /// ```
    /// use ioasid::{Policy, Space};
    /// let space: Space<u32> = Space::builder()
    ///     .range(0, 0xFFFFF)
    ///     .policy(Policy::Cyclic)
    ///     .keep_memory(true)
    ///     .build()?;
    /// let set = space.new_set();
    /// for i in 0..20_000 {
    ///     let id = set.alloc(0, 0xFFFFF, i)?;
    ///     set.free(id)?;
    /// }
    /// assert!(space.keeps_memory());
    /// assert_eq!(space.chunks_reclaimed(), 0);
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn keep_memory(mut self, keep: bool) -> Self {
        self.keep_memory = keep;
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
            inner: Arc::new_cyclic(|this| SpaceInner {
                tree: ManuallyDrop::new(if self.policy == Policy::Cyclic && !self.keep_memory {
                    Tree::new_reclaiming(span)
                } else {
                    Tree::new(span)
                }),
                refs: RefTable::new(span),
                sets: SetTable::new(),
                min: self.min,
                max: self.max,
                policy: self.policy,
                cursor: CachePadded(Cursor::new()),
                hook: AtomicPtr::new(ptr::null_mut()),
                custom: CustomIds::new(),
                domain,
                notify: SpaceNotify::new(self.notifiers.unwrap_or_default()),
                this: this.clone(),
                _data: PhantomData,
            }),
        };
        space.inner.notify.attach();
        Ok(space)
    }
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
            keep_memory: false,
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
            let mut note = self.inner.note(event, id, entry::owner(word), word, false);
            note.spid = self.inner.spid(id);
            note
        };
        self.inner.send_to(Some(note), chains);
        Ok(())
    }

    /// Number of live IDs, counted by a walk of the tree (exact when no
    /// operation runs concurrently).
    pub fn live_count(&self) -> usize {
        self.inner.tree.count_live()
    }

    /// Bytes of tree nodes the space holds (entry words included, boxed
    /// values and sets' indexes excluded). In a Cyclic space this counts
    /// the leaf blocks of reclaimed chunks too: their address space stays
    /// reserved, their pages are given back (see
    /// [`chunks_reclaimed`](Self::chunks_reclaimed)).
    pub fn node_bytes(&self) -> usize {
        self.inner.tree.node_bytes()
    }

    /// True for a Cyclic space that keeps the memory of the IDs its cursor
    /// has left ([`SpaceBuilder::keep_memory`]).
    pub fn keeps_memory(&self) -> bool {
        self.inner.keeps_memory()
    }

    /// How many times this space gave back the memory of a chunk of IDs
    /// (4096 at the default fan-out) that its cursor had left empty: only
    /// a Cyclic space does, whose cursor sweeps the whole range; 0 for the
    /// others.
    pub fn chunks_reclaimed(&self) -> u64 {
        self.inner.tree.chunks_retired()
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
