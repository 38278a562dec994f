//! Sets: the consumers of a space (a driver, a VM, an `iommu_pasid`).
//!
//! A [`Set`] owns its IDs: it allocates them, frees them with ownership
//! checks, finds only its own, walks them in ascending order through its
//! membership index, and frees them all when dropped.
//!
//! INVARIANT: a set's core and owner index are handed to the epoch only
//! after the set removed every word naming it (see `owners.rs`).

use crate::capacity::Capacity;
use crate::domain::Guard;
use crate::entry::{Payload, Ref};
use crate::error::Error;
use crate::notify::{Notification, Registration, SetId};
use crate::owners::{return_index, SetCore};
use crate::refs::RefDrop;
use crate::space::{Expect, Space};
use crate::Ioasid;
use std::fmt;
use std::ops::{Bound, ControlFlow, RangeBounds};

/// A consumer of a [`Space`]: owns IDs and one private value per ID.
///
/// Dropping a set frees all of its IDs. A set is `Send + Sync` and all of
/// its methods take `&self`, so threads share it by reference or `Arc`.
///
/// ```
/// use std::ops::ControlFlow;
/// let space = ioasid::Space::<u32>::new(0, 1000)?;
/// let gpu = space.new_set();
/// let nic = space.new_set();
/// let a = gpu.alloc(10, 20, 1)?;
/// let b = nic.alloc(10, 20, 2)?;
/// assert_eq!((a, b), (10, 11));
/// assert_eq!(gpu.free(b), Err(ioasid::Error::PermissionDenied));
/// let mut seen = vec![];
/// let _ = gpu.for_each(|id, data| { seen.push((id, *data)); ControlFlow::<()>::Continue(()) });
/// assert_eq!(seen, vec![(10, 1)]);
/// # Ok::<(), ioasid::Error>(())
/// ```
pub struct Set<T: Payload, const F: usize = 64> {
    /// Boxed and leaked in `new`; handed to the epoch in `drop`.
    core: *const SetCore<F>,
    /// This set's owner index in its space's entry words.
    index: u16,
    space: Space<T, F>,
    /// The capacity its quota is reserved from, if any (given back on drop).
    capacity: Option<Capacity>,
    /// Run by the drop once the set's FREE events are sent (a
    /// [`TokenSets`](crate::TokenSets) parks its token's notifiers again).
    /// Set before the set is shared; touched only through `&mut self`.
    drop_hook: Option<Box<dyn FnOnce() + Send>>,
}

// SAFETY: the core is shared state made of atomics; data crosses threads as
// `T: Send + Sync` (Payload).
unsafe impl<T: Payload, const F: usize> Send for Set<T, F> {}
// SAFETY: as above; every method takes `&self` and synchronises through
// atomics (`drop_hook`, not `Sync`, is only touched through `&mut self`).
unsafe impl<T: Payload, const F: usize> Sync for Set<T, F> {}

impl<T: Payload, const F: usize> Set<T, F> {
    pub(crate) fn new(
        space: Space<T, F>,
        quota: usize,
        capacity: Option<Capacity>,
    ) -> Result<Self, Error> {
        let core = Box::into_raw(Box::new(SetCore::new(quota, space.inner.span())));
        match space.inner.sets.register(core) {
            Ok(index) => Ok(Set {
                core,
                index,
                space,
                capacity,
                drop_hook: None,
            }),
            Err(e) => {
                // SAFETY: never registered or shared.
                drop(unsafe { Box::from_raw(core) });
                Err(e)
            }
        }
    }

    /// A set made by a restore: `core` (leaked box) already registered
    /// under `index` in `space`'s table.
    pub(crate) fn from_parts(space: Space<T, F>, core: *const SetCore<F>, index: u16) -> Self {
        Set {
            core,
            index,
            space,
            capacity: None,
            drop_hook: None,
        }
    }

    /// Installs the hook the drop runs after the set's FREE events.
    pub(crate) fn set_drop_hook(&mut self, hook: Box<dyn FnOnce() + Send>) {
        self.drop_hook = Some(hook);
    }

    pub(crate) fn core(&self) -> &SetCore<F> {
        // SAFETY: the core lives until `drop` hands it to the epoch.
        unsafe { &*self.core }
    }

    /// The space this set allocates in.
    pub fn space(&self) -> &Space<T, F> {
        &self.space
    }

    /// The set's number in its space: stable for the set's life, kept by
    /// [`Space::snapshot`] and [`Space::restore`], in `1..=16383`. A dropped
    /// set's number is reused for a later set (after a grace period).
    ///
    /// ```
    /// let space = ioasid::Space::<u32>::new(0, 9)?;
    /// let (a, b) = (space.new_set(), space.new_set());
    /// assert_ne!(a.number(), b.number());
    /// assert!(a.number() >= 1);
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn number(&self) -> u16 {
        self.index
    }

    /// Takes the set out of its space's later snapshots now, as its drop
    /// does (for a set whose handle outlives its use: the C layer's
    /// destroyed sets wait for readers before they drop). IDs it owns from
    /// then on are not saved. Idempotent.
    #[doc(hidden)]
    pub fn unlist(&self) {
        self.space.inner.sets.unregister(self.index);
    }

    /// The quota, if the set has one (a quota above `u32::MAX` reads as
    /// `u32::MAX`: no space holds more IDs).
    pub fn quota(&self) -> Option<usize> {
        self.core().quota()
    }

    /// Changes the quota of a set that has one (the extended core's
    /// `ioasid_adjust_set`); live IDs are kept. A raise is reserved from
    /// the set's [`Capacity`], if it was made from one, and a cut given
    /// back to it. Errors, nothing changed: [`Error::Busy`] below the
    /// set's live count (FREE_PENDING IDs still count),
    /// [`Error::NoSpace`] when the capacity has less left than the raise,
    /// [`Error::InvalidArgument`] for a set made without a quota (it does
    /// not count its IDs, so it pays nothing for quotas on alloc and free).
    ///
    /// ```
    /// use ioasid::Error;
    /// let space = ioasid::Space::<()>::new(0, 99)?;
    /// let set = space.new_set_with_quota(2);
    /// set.alloc(0, 99, ())?;
    /// set.alloc(0, 99, ())?;
    /// assert_eq!(set.alloc(0, 99, ()), Err(Error::QuotaExceeded));
    /// set.adjust_quota(3)?;
    /// set.alloc(0, 99, ())?;
    /// assert_eq!(set.adjust_quota(2), Err(Error::Busy));
    /// assert_eq!(set.quota(), Some(3));
    /// assert_eq!(space.new_set().adjust_quota(5), Err(Error::InvalidArgument));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn adjust_quota(&self, quota: usize) -> Result<(), Error> {
        self.core().adjust(quota, self.capacity.as_ref())
    }

    /// The capacity this set's quota is reserved from, if any.
    ///
    /// ```
    /// let capacity = ioasid::Capacity::new(5);
    /// let space = ioasid::Space::<()>::new(0, 9)?;
    /// let set = space.try_new_set_from(&capacity, 2)?;
    /// assert_eq!(set.capacity().map(|c| c.available()), Some(3));
    /// assert!(space.new_set_with_quota(2).capacity().is_none());
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn capacity(&self) -> Option<&Capacity> {
        self.capacity.as_ref()
    }

    /// Reserves this set's quota from `capacity` from now on, as if the
    /// set had been made by [`Space::try_new_set_from`] with it: the quota
    /// is taken now, raises and cuts of [`Set::adjust_quota`] go through
    /// it, and the drop gives the quota back. For a set made without one,
    /// typically a restored set ([`Space::restore`] hands out sets that
    /// reserve from none: a capacity is the caller's object, shared beyond
    /// the space).
    ///
    /// [`Error::InvalidArgument`] for a set without quota;
    /// [`Error::AlreadyExists`] if the set reserves from a capacity
    /// already; [`Error::NoSpace`] when `capacity` has less than the quota
    /// left. Nothing changes on error.
    ///
    /// ```
    /// use ioasid::{Capacity, Error, Space};
    /// let space = Space::<u32>::new(1, 0xFFFFF)?;
    /// let capacity = Capacity::new(10);
    /// let vm = space.try_new_set_from(&capacity, 6)?;
    /// vm.alloc(1, 0xFFFFF, 7)?;
    ///
    /// // The migration target: its own capacity, the sets restored.
    /// let target = Capacity::new(10);
    /// let (_copy, mut sets) = Space::<u32>::restore(space.snapshot())?;
    /// assert!(sets[0].capacity().is_none());
    /// sets[0].reserve_from(&target)?;
    /// assert_eq!(target.available(), 4);
    /// assert_eq!(sets[0].reserve_from(&target), Err(Error::AlreadyExists));
    /// assert_eq!(sets[0].adjust_quota(11), Err(Error::NoSpace));
    /// drop(sets);
    /// assert_eq!(target.available(), 10);
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn reserve_from(&mut self, capacity: &Capacity) -> Result<(), Error> {
        if self.capacity.is_some() {
            return Err(Error::AlreadyExists);
        }
        // `&mut self`: no quota change of this handle runs meanwhile (the
        // quota changes only through `adjust_quota`, which takes `&self`).
        let quota = self.quota().ok_or(Error::InvalidArgument)?;
        capacity.take(quota as u64)?;
        self.capacity = Some(capacity.clone());
        Ok(())
    }

    /// Allocates an ID in `min..=max` (clamped to the space) with `data`.
    ///
    /// Errors: [`Error::InvalidArgument`] for `min > max` or a range that
    /// misses the space; [`Error::QuotaExceeded`]; [`Error::NoSpace`] when no
    /// ID of the range was free for the whole call; for a custom allocator,
    /// [`Error::Io`] or its own error. On error `data` is dropped
    /// and nothing changed.
    ///
    /// ```
    /// let space = ioasid::Space::<()>::new(0, 3)?;
    /// let set = space.new_set();
    /// assert_eq!(set.alloc(2, 1, ()), Err(ioasid::Error::InvalidArgument));
    /// assert_eq!(set.alloc(3, 3, ())?, 3);
    /// assert_eq!(set.alloc(3, 3, ()), Err(ioasid::Error::NoSpace));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn alloc(&self, min: Ioasid, max: Ioasid, data: T) -> Result<Ioasid, Error> {
        self.space
            .inner
            .alloc(self.core(), self.index, min, max, data)
    }

    /// Allocates an ID in `range` (clamped to the space) with `data`: the
    /// range form of [`Set::alloc`], so `1..=0xFFFFF`, `1..0x100000`,
    /// `..=7` and `..` all work. Errors as [`Set::alloc`]; an empty or
    /// reversed range (`5..5`, `6..=5`, `0..0`) or one that misses the
    /// space is [`Error::InvalidArgument`].
    ///
    /// ```
    /// let space = ioasid::Space::<u32>::new(0, 0xFFFFF)?;
    /// let set = space.new_set();
    /// assert_eq!(set.alloc_in(1..=0xFFFFF, 10)?, 1);
    /// assert_eq!(set.alloc_in(..3, 20)?, 0);
    /// assert_eq!(set.alloc_in(0xFFFFF.., 30)?, 0xFFFFF);
    /// assert_eq!(set.alloc_in(.., 40)?, 2);
    /// assert_eq!(set.alloc_in(5..5, 0), Err(ioasid::Error::InvalidArgument));
    /// assert_eq!(set.alloc_in(0x100000.., 0), Err(ioasid::Error::InvalidArgument));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn alloc_in(&self, range: impl RangeBounds<Ioasid>, data: T) -> Result<Ioasid, Error> {
        let (min, max) = inclusive_bounds(&range).ok_or(Error::InvalidArgument)?;
        self.alloc(min, max, data)
    }

    /// Allocates exactly `id` with `data` (the allocation the RFC's vendor
    /// path and a restore make): [`Error::NoSpace`] if `id` is live (in
    /// any set, FREE_PENDING included), [`Error::InvalidArgument`] if it is
    /// outside the space; otherwise errors as [`Set::alloc`]. Same as
    /// `alloc(id, id, data)`.
    ///
    /// ```
    /// let space = ioasid::Space::<()>::new(0, 0xFFFF_FFFE)?;
    /// let (set, other) = (space.new_set(), space.new_set());
    /// assert_eq!(set.alloc_exact(0xFFFF_FFFE, ())?, 0xFFFF_FFFE);
    /// assert_eq!(other.alloc_exact(0xFFFF_FFFE, ()), Err(ioasid::Error::NoSpace));
    /// assert_eq!(set.alloc_exact(u32::MAX, ()), Err(ioasid::Error::InvalidArgument));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn alloc_exact(&self, id: Ioasid, data: T) -> Result<Ioasid, Error> {
        self.alloc(id, id, data)
    }

    /// Frees an ID of this set: [`Error::NotFound`] if it is not live (or
    /// already FREE_PENDING), [`Error::PermissionDenied`] if another set
    /// owns it (nothing changed). With references outstanding it enters
    /// FREE_PENDING (see [`Space::get`]).
    pub fn free(&self, id: Ioasid) -> Result<(), Error> {
        self.free_released(id).map(drop)
    }

    /// Drops a reference as `how` says and sends the FREE event, if any.
    #[inline]
    fn drop_ref(&self, id: Ioasid, how: RefDrop) -> Result<bool, Error> {
        let inner = &self.space.inner;
        let expect = Expect::Set(self.index, self.core());
        // The one load: no notifier about, no notes.
        if !inner.notify.active() {
            return inner.drop_ref(id, expect, how, None);
        }
        let mut note = None;
        let result = inner.drop_ref(id, expect, how, Some(&mut note));
        inner.send(&mut note);
        result
    }

    /// Frees an ID of this set as [`Set::free`] does and says whether this
    /// released it (`Ok(true)`) or left it FREE_PENDING (`Ok(false)`);
    /// errors as [`Set::free`].
    pub fn free_released(&self, id: Ioasid) -> Result<bool, Error> {
        let inner = &self.space.inner;
        // The one load: with no notifier about, the set's own untracked ID
        // frees without a guard.
        if !inner.notify.active() {
            if let Some(freed) = inner.free_unpinned(id, Some((self.index, self.core()))) {
                return freed;
            }
        }
        self.drop_ref(id, RefDrop::Free)
    }

    /// Takes a reference on an ID of this set (the checked `ioasid_get`):
    /// [`Error::NotFound`] if not live or FREE_PENDING,
    /// [`Error::PermissionDenied`] if another set's, [`Error::Overflow`] at
    /// the count's maximum. Nothing changes on error.
    ///
    /// ```
    /// let space = ioasid::Space::<()>::new(0, 9)?;
    /// let (vm, other) = (space.new_set(), space.new_set());
    /// let id = vm.alloc(0, 9, ())?;
    /// assert_eq!(other.get(id), Err(ioasid::Error::PermissionDenied));
    /// vm.get(id)?;
    /// drop(vm); // teardown: the referenced ID stays, FREE_PENDING, detached
    /// assert!(space.is_free_pending(id));
    /// assert_eq!(space.put(id), Ok(true));
    /// assert_eq!(space.ref_count(id), None);
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn get(&self, id: Ioasid) -> Result<(), Error> {
        self.space.inner.get_ref(id, Some(self.index))
    }

    /// Drops one reference of an ID of this set (the checked `ioasid_put`):
    /// `Ok(true)` if it released the ID; errors as [`Set::free`].
    pub fn put(&self, id: Ioasid) -> Result<bool, Error> {
        self.drop_ref(id, RefDrop::Put)
    }

    /// Attaches set private ID `spid` (a guest PASID) to `id`, an ID of
    /// this set (the extended core's `ioasid_attach_spid`): the set then
    /// finds `id` by `spid` ([`Set::find_by_spid`]). Another set may use the
    /// same SPID for another ID. Freeing `id` (FREE_PENDING included) or its
    /// last put detaches the SPID at once.
    ///
    /// Errors, nothing changed: [`Error::InvalidArgument`] if `id` or `spid`
    /// is `INVALID_IOASID` (checked first); [`Error::NotFound`] if `id` is
    /// not live or FREE_PENDING; [`Error::PermissionDenied`] if another set
    /// owns it; [`Error::AlreadyExists`] if this set uses `spid` already or
    /// `id` has a SPID. (An attach racing a free of `id` returns `Ok`, the
    /// free detaching it, or `NotFound`.)
    ///
    /// ```
    /// use ioasid::Error;
    /// let space = ioasid::Space::<()>::new(1, 0xFFFFF)?;
    /// let (vm1, vm2) = (space.new_set(), space.new_set());
    /// let (a, b) = (vm1.alloc(1, 0xFFFFF, ())?, vm2.alloc(1, 0xFFFFF, ())?);
    /// vm1.attach_spid(a, 101)?;
    /// vm2.attach_spid(b, 101)?; // the same guest PASID in another VM
    /// assert_eq!((vm1.find_by_spid(101), vm2.find_by_spid(101)), (Ok(a), Ok(b)));
    /// assert_eq!(vm1.attach_spid(a, 102), Err(Error::AlreadyExists));
    /// assert_eq!(vm1.attach_spid(b, 7), Err(Error::PermissionDenied));
    /// vm1.free(a)?;
    /// assert_eq!(vm1.find_by_spid(101), Err(Error::NotFound));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn attach_spid(&self, id: Ioasid, spid: Ioasid) -> Result<(), Error> {
        let inner = &self.space.inner;
        inner.attach_spid(id, spid, Some(self.index))?;
        inner.notify_spid(crate::Event::Bind, id, spid);
        Ok(())
    }

    /// Detaches the SPID of `id`, an ID of this set (`ioasid_detach_spid`):
    /// `Ok(Some(spid))` with the SPID it held, `Ok(None)` if it had none;
    /// [`Error::NotFound`] if `id` is not live, [`Error::PermissionDenied`]
    /// if another set owns it.
    ///
    /// ```
    /// let space = ioasid::Space::<()>::new(0, 9)?;
    /// let vm = space.new_set();
    /// let id = vm.alloc(0, 9, ())?;
    /// vm.attach_spid(id, 0)?;
    /// assert_eq!(vm.detach_spid(id), Ok(Some(0)));
    /// assert_eq!(vm.detach_spid(id), Ok(None));
    /// assert_eq!(vm.find_by_spid(0), Err(ioasid::Error::NotFound));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn detach_spid(&self, id: Ioasid) -> Result<Option<Ioasid>, Error> {
        let inner = &self.space.inner;
        let spid = inner.detach_spid(id, Some(self.index))?;
        if let Some(spid) = spid {
            inner.notify_spid(crate::Event::Unbind, id, spid);
        }
        Ok(spid)
    }

    /// The host ID that holds `spid` in this set (`ioasid_find_by_spid`
    /// without `get`): [`Error::NotFound`] if none. Lock-free, writes
    /// nothing, and does not scan the set: a few dependent loads, whatever
    /// the set's size (see the `spid` module). Weakly consistent like
    /// [`Set::find`]: an ID whose free is under way may still be answered.
    ///
    /// ```
    /// let space = ioasid::Space::<()>::new(0, 9)?;
    /// let vm = space.new_set();
    /// let id = vm.alloc(0, 9, ())?;
    /// vm.attach_spid(id, 0xFFFF_FFFE)?;
    /// assert_eq!(vm.find_by_spid(0xFFFF_FFFE), Ok(id));
    /// assert_eq!(space.ref_count(id), Some(1), "no reference taken");
    /// assert_eq!(vm.find_by_spid(1), Err(ioasid::Error::NotFound));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn find_by_spid(&self, spid: Ioasid) -> Result<Ioasid, Error> {
        self.space
            .inner
            .find_by_spid(self.core(), self.index, spid, false)
    }

    /// [`Set::find_by_spid`] that also takes a reference on the ID
    /// (`ioasid_find_by_spid` with `get`; drop it with [`Set::put`]). Never
    /// takes one on an ID that is FREE_PENDING or being released: it then
    /// answers [`Error::NotFound`]. [`Error::Overflow`] at the count's
    /// maximum.
    ///
    /// ```
    /// let space = ioasid::Space::<()>::new(0, 9)?;
    /// let vm = space.new_set();
    /// let id = vm.alloc(0, 9, ())?;
    /// vm.attach_spid(id, 5)?;
    /// assert_eq!(vm.get_by_spid(5), Ok(id));
    /// assert_eq!(space.ref_count(id), Some(2));
    /// vm.free(id)?; // FREE_PENDING: the SPID is detached at once
    /// assert_eq!(vm.get_by_spid(5), Err(ioasid::Error::NotFound));
    /// assert_eq!(vm.put(id), Ok(true));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn get_by_spid(&self, spid: Ioasid) -> Result<Ioasid, Error> {
        self.space
            .inner
            .find_by_spid(self.core(), self.index, spid, true)
    }

    /// The data of `id` if this set owns it: [`Error::NotFound`] or
    /// [`Error::PermissionDenied`] otherwise. Lock-free, writes nothing.
    ///
    /// # Panics
    /// If `guard` belongs to another domain.
    pub fn find<'g>(&'g self, id: Ioasid, guard: &'g Guard) -> Result<Ref<'g, T>, Error> {
        let word = self.space.inner.load(id, guard).ok_or(Error::NotFound)?;
        if crate::entry::owner(word) != self.index {
            return Err(Error::PermissionDenied);
        }
        // SAFETY: loaded under `guard`, which protects this space's domain.
        Ok(unsafe { Ref::new(word) })
    }

    /// A copy of the data of `id` if this set owns it, as [`Set::find`],
    /// without a guard from the caller (see [`Space::copied`]).
    ///
    /// ```
    /// let space = ioasid::Space::<u32>::new(0, 10)?;
    /// let (a, b) = (space.new_set(), space.new_set());
    /// let id = a.alloc(0, 10, 7)?;
    /// assert_eq!(a.copied(id), Ok(7));
    /// assert_eq!(b.copied(id), Err(ioasid::Error::PermissionDenied));
    /// assert_eq!(a.copied(9), Err(ioasid::Error::NotFound));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn copied(&self, id: Ioasid) -> Result<T, Error>
    where
        T: Copy,
    {
        self.space.inner.copied(id, Some(self.index))
    }

    /// Calls `f` with the data of `id` if this set owns it, pinning for the call.
    pub fn with<R>(&self, id: Ioasid, f: impl FnOnce(&T) -> R) -> Result<R, Error> {
        let guard = self.space.pin();
        self.find(id, &guard).map(|value| f(&value))
    }

    /// True if this set owns live ID `id`.
    pub fn contains(&self, id: Ioasid) -> bool {
        self.with(id, |_| ()).is_ok()
    }

    /// Replaces the data of an ID of this set. The old data is dropped once
    /// no reader can see it.
    pub fn set_data(&self, id: Ioasid, data: T) -> Result<(), Error> {
        self.space.inner.replace(id, Some(self.index), data)
    }

    /// Calls `f(id, data)` for each ID of this set in ascending order, until
    /// `f` breaks; returns the break value, or `Continue` after the last ID.
    ///
    /// Weakly consistent: an ID live for the whole walk is visited exactly
    /// once, one allocated or freed meanwhile may or may not be, an ID of
    /// another set or a FREE_PENDING one never is. `f` may alloc, free and
    /// find in this set. The cost grows with the set's size, not the space's
    /// population: IDs the set freed since its last walk are visited once
    /// more and forgotten (at worst, a set that freed every ID of the space
    /// walks it once).
    pub fn for_each<B>(&self, mut f: impl FnMut(Ioasid, &T) -> ControlFlow<B>) -> ControlFlow<B> {
        let guard = self.space.pin();
        let min = self.space.min();
        self.core()
            .members
            .walk(|key| match self.visible(key, &guard) {
                Some(word) => {
                    // SAFETY: loaded under `guard`, which protects this space's
                    // domain.
                    let value = unsafe { Ref::<T>::new(word) };
                    f(min + key as Ioasid, &value)
                }
                None => ControlFlow::Continue(()),
            })
    }

    /// The word of member key `key` if a walk shows it: this set owns it
    /// and it is not FREE_PENDING. A stale member bit met here is cleared
    /// (members.rs), unless the set owns the key again by then; a
    /// FREE_PENDING key is still owned, so its bit stays. Shared by
    /// [`Set::for_each`] and [`Set::iter`].
    pub(crate) fn visible(&self, key: u64, guard: &Guard) -> Option<u64> {
        let id = self.space.min() + key as Ioasid;
        let inner = &self.space.inner;
        // The word of `id` if this set owns it (FREE_PENDING included).
        let owned = || {
            inner
                .load(id, guard)
                .filter(|&word| crate::entry::owner(word) == self.index)
        };
        match owned() {
            Some(word) if inner.is_pending_word(key, word) => None,
            Some(word) => Some(word),
            None => {
                self.core().members.clear_stale(key, || owned().is_some());
                None
            }
        }
    }

    /// Number of live IDs of this set, FREE_PENDING ones included (they
    /// count until released): a counter with a quota, else a walk.
    pub fn len(&self) -> usize {
        if self.core().has_quota() {
            return self.core().live();
        }
        let mut n = 0;
        let _ = self.walk_owned(|| {
            n += 1;
            ControlFlow::<()>::Continue(())
        });
        n
    }

    /// True if the set holds no live ID (FREE_PENDING ones included).
    pub fn is_empty(&self) -> bool {
        self.walk_owned(|| ControlFlow::Break(())).is_continue()
    }

    /// Calls `f` once per ID this set owns, FREE_PENDING ones included.
    fn walk_owned(&self, mut f: impl FnMut() -> ControlFlow<()>) -> ControlFlow<()> {
        let guard = self.space.pin();
        let min = self.space.min();
        let inner = &self.space.inner;
        self.core()
            .members
            .walk(|key| match inner.load(min + key as Ioasid, &guard) {
                Some(word) if crate::entry::owner(word) == self.index => f(),
                _ => ControlFlow::Continue(()),
            })
    }

    /// Frees every ID of the set as dropping it would, but keeps the set:
    /// unreferenced IDs are released, referenced ones (see [`Set::get`])
    /// stay FREE_PENDING and are detached from the set, which then owns
    /// nothing (for handles that reuse a set, like C's declared sets).
    ///
    /// ```
    /// let space = ioasid::Space::<()>::new(0, 9)?;
    /// let set = space.new_set();
    /// let (a, b) = (set.alloc(0, 9, ())?, set.alloc(0, 9, ())?);
    /// set.get(b)?;
    /// set.clear();
    /// assert!(set.is_empty());
    /// assert_eq!(space.with(a, |_| ()), None);
    /// assert!(space.is_free_pending(b));
    /// assert_eq!(set.put(b), Err(ioasid::Error::PermissionDenied), "detached");
    /// assert_eq!(space.put(b), Ok(true));
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn clear(&self) {
        let min = self.space.min();
        let _ = self.core().members.walk(|key| {
            // NotFound: a kernel-form free elsewhere beat us to it. A
            // referenced ID stays FREE_PENDING, detached from this set.
            let _ = self.drop_ref(min + key as Ioasid, RefDrop::Teardown);
            ControlFlow::<()>::Continue(())
        });
    }

    /// Frees every ID of the set and the set itself (same as dropping it).
    pub fn destroy(self) {}

    /// This set's name in [`Notification::set`].
    ///
    /// ```
    /// let space = ioasid::Space::<()>::new(0, 9)?;
    /// let (a, b) = (space.new_set(), space.new_set());
    /// assert_ne!(a.id(), b.id());
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn id(&self) -> SetId {
        SetId(self.index)
    }

    /// Stores a word with the set that every [`Notification`] of its IDs
    /// carries ([`Notification::set_tag`]); 0 until set. The C layer
    /// stores the address of the `struct ioasid_set` there.
    ///
    /// ```
    /// let space = ioasid::Space::<()>::new(0, 9)?;
    /// let set = space.new_set();
    /// assert_eq!(set.tag(), 0);
    /// set.set_tag(0xC0FFEE);
    /// assert_eq!(set.tag(), 0xC0FFEE);
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn set_tag(&self, tag: usize) {
        self.core().set_tag(tag)
    }

    /// The word stored by [`Set::set_tag`].
    pub fn tag(&self) -> usize {
        self.core().tag()
    }

    /// Registers `callback` on this set's notifier chain with `priority`
    /// (higher first; equal priorities in registration order). It sees
    /// the events of this set's IDs that begin after this returns, before
    /// the space's global chain does, until its [`Registration`] is
    /// unregistered or dropped (it outlives the set harmlessly). See
    /// [`crate::Space::register_notifier`] for what a callback may do.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use ioasid::Event;
    ///
    /// let space = ioasid::Space::<()>::new(0, 9)?;
    /// let (vm, other) = (space.new_set(), space.new_set());
    /// let freed = Arc::new(AtomicU32::new(0));
    /// let count = freed.clone();
    /// let _registration = vm.register_notifier(0, move |n| {
    ///     if n.event() == Event::Free {
    ///         count.fetch_add(1, Ordering::SeqCst);
    ///     }
    ///     ControlFlow::Continue(())
    /// });
    /// let id = vm.alloc(0, 9, ())?;
    /// let theirs = other.alloc(0, 9, ())?;
    /// vm.free(id)?;
    /// other.free(theirs)?; // another set's ID: not on this chain
    /// assert_eq!(freed.load(Ordering::SeqCst), 1);
    /// # Ok::<(), ioasid::Error>(())
    /// ```
    pub fn register_notifier(
        &self,
        priority: i32,
        callback: impl Fn(&Notification<'_, T>) -> ControlFlow<()> + Send + Sync + 'static,
    ) -> Registration<T> {
        self.space
            .inner
            .notify
            .register_set(self.core(), priority, callback)
    }

    /// True if this set's chain has registered notifiers.
    pub fn has_notifiers(&self) -> bool {
        self.space.inner.notify.set_has_blocks(self.core())
    }
}

impl<T: Payload, const F: usize> Drop for Set<T, F> {
    fn drop(&mut self) {
        let inner = &self.space.inner;
        // Out of the snapshot's list of sets before its IDs go.
        inner.sets.unregister(self.index);
        // Not pinned yet: the teardown's FREE events run callbacks, which
        // may wait for readers.
        self.clear();
        if let Some(hook) = self.drop_hook.take() {
            hook();
        }
        if let (Some(capacity), Some(quota)) = (&self.capacity, self.core().quota()) {
            capacity.give(quota as u64);
        }
        let guard = self.space.pin();
        let core = self.core;
        let index = self.index;
        let pool = inner.sets.pool();
        // SAFETY: no word names this set any more; readers that loaded one
        // are pinned, and the epoch runs this after them: only then may the
        // core go and the index be reused (owners.rs invariant).
        unsafe {
            guard.defer_unchecked(move || {
                drop(Box::from_raw(core.cast_mut()));
                return_index(&pool, index);
            });
        }
    }
}

impl<T: Payload, const F: usize> fmt::Debug for Set<T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Set")
            .field("index", &self.index)
            .field("quota", &self.quota())
            .field("space", &self.space)
            .finish()
    }
}

/// `range` as `(min, max)`, inclusive at both ends, or `None` if it is
/// empty (`5..5`, `..0`, an exclusive start at `u32::MAX`) or reversed.
/// Unbounded ends are the ends of the ID type; `alloc` clamps to the space.
fn inclusive_bounds(range: &impl RangeBounds<Ioasid>) -> Option<(Ioasid, Ioasid)> {
    let min = match range.start_bound() {
        Bound::Included(&min) => min,
        Bound::Excluded(&min) => min.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let max = match range.end_bound() {
        Bound::Included(&max) => max,
        Bound::Excluded(&max) => max.checked_sub(1)?,
        Bound::Unbounded => Ioasid::MAX,
    };
    (min <= max).then_some((min, max))
}

#[cfg(test)]
mod tests {
    use super::inclusive_bounds;
    use std::ops::Bound;

    #[test]
    fn range_bounds_become_inclusive_or_empty() {
        assert_eq!(inclusive_bounds(&(1..=0xFFFFF)), Some((1, 0xFFFFF)));
        assert_eq!(inclusive_bounds(&(1..0x100000)), Some((1, 0xFFFFF)));
        assert_eq!(inclusive_bounds(&(..)), Some((0, u32::MAX)));
        assert_eq!(inclusive_bounds(&(..1)), Some((0, 0)));
        assert_eq!(inclusive_bounds(&(..0)), None);
        assert_eq!(inclusive_bounds(&(5..5)), None);
        assert_eq!(
            inclusive_bounds(&(Bound::Included(6), Bound::Included(5))),
            None
        );
        let excluded = (Bound::Excluded(u32::MAX), Bound::Unbounded);
        assert_eq!(inclusive_bounds(&excluded), None);
        let excluded = (Bound::Excluded(0), Bound::Included(1));
        assert_eq!(inclusive_bounds(&excluded), Some((1, 1)));
    }
}
