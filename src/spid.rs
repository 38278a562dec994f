//! Set private IDs (SPEC 6.5): a VM's set maps guest PASIDs (SPIDs) to
//! host IDs; two sets may use the same SPID for different IDs.
//!
//! The truth is the ID's extension record (`refs.rs`): its upper 32 bits
//! hold the SPID (+1; 0 for none), set only on a `LIVE` record, and cleared
//! by the same CAS that frees it (FREE_PENDING included) or puts its last
//! reference. Each set that ever attaches gets a [`SpidTable`], an index
//! SPID -> host ID + 1 that `find_by_spid` reads without a lock and without
//! scanning the set: four 256-way levels keyed by the SPID's bytes, so a
//! lookup is five dependent loads (the table, three inner nodes, the entry)
//! plus the ID's word and record, O(1) in the set's size.
//!
//! Memory: a set that never attaches pays one null pointer in its core. The
//! first attach builds the table (a 2 KiB root and its lock); each SPID
//! region of 256 then costs its leaf (1 KiB: 4 bytes an entry) and the
//! inner nodes above it (2 KiB each, shared by 64 Ki and 16 Mi SPIDs): one
//! SPID costs about 7 KiB, dense SPIDs about 4 bytes each. A record is
//! 8 bytes per tracked ID (`refs.rs`), shared with the reference count.
//!
//! Protocol. Writers of one set's table (attach, detach, and the free or
//! last put of an ID holding a SPID, after its record CAS) hold the table's
//! `writers` lock; readers take no lock and write nothing on a plain find.
//! An entry is trusted only if the ID's current word names the set and its
//! record is `LIVE` with that SPID ("holds"); anything else is stale.
//!
//! INVARIANTS:
//! - A record gains a SPID only under its set's `writers` lock (attach), so
//!   "ID `x` does not hold SPID `s` in set `o`" stays true while the lock is
//!   held; a record loses its SPID by one CAS, with or without the lock.
//! - If an ID holds SPID `s` in set `o`, then `o`'s entry `s` names it once
//!   the attach that set it has returned (the attach stores the entry under
//!   the lock, and an unmap clears an entry only if its ID does not hold
//!   the SPID, checked under the lock).
//! - So at most one ID holds a given SPID in a set: an attach refuses a
//!   SPID whose entry names an ID that holds it, under the lock.

use crate::entry;
use crate::error::Error;
use crate::owners::SetCore;
use crate::refs::{is_free, is_live, spid_of, with_spid, MAX_REFS};
use crate::space::SpaceInner;
use crate::sync::{
    atomic_array, child_or_install, yield_now, AtomicPtr, AtomicU32, Mutex, Ordering,
};
use crate::tree::Slot;
use crate::{Ioasid, INVALID_IOASID};
use std::ptr;

#[cfg(not(ioasid_loom))]
const FAN_BITS: u32 = 8;
// Under loom, 4-way nodes (few atomics per model): the table then covers
// SPIDs 0..=255 only, which is all the models use.
#[cfg(ioasid_loom)]
const FAN_BITS: u32 = 2;
const FAN: usize = 1 << FAN_BITS;

type Leaf = [AtomicU32; FAN];
type Inner<N> = [AtomicPtr<N>; FAN];

/// SPID -> host ID + 1 (0: none), a four-level radix of 256-way nodes keyed
/// by the SPID's bytes, built as SPIDs are attached.
/// The SPID index of one set (see the module doc).
pub(crate) struct SpidTable {
    root: Inner<Inner<Inner<Leaf>>>,
    /// Serialises the writers of one set's table (attach, detach, and the
    /// free of an ID that holds a SPID); readers never take it.
    pub(crate) writers: Mutex<()>,
}

impl SpidTable {
    pub(crate) fn new() -> Self {
        SpidTable {
            root: atomic_array(|_| AtomicPtr::new(ptr::null_mut())),
            writers: Mutex::new(()),
        }
    }

    /// The entry of `spid`, built if `create`; `None` if absent and not built.
    pub(crate) fn entry(&self, spid: u32, create: bool) -> Option<&AtomicU32> {
        #[cfg(ioasid_loom)]
        assert!(spid < 1 << (4 * FAN_BITS), "loom models use small SPIDs");
        let digit = |level: u32| (spid >> (level * FAN_BITS)) as usize & (FAN - 1);
        // SAFETY: nodes are never replaced, and freed only by the table's drop.
        let a = unsafe {
            child_or_install(&self.root[digit(3)], create, || {
                atomic_array(|_| AtomicPtr::new(ptr::null_mut()))
            })
        }?;
        // SAFETY: as above.
        let b = unsafe {
            child_or_install(&a[digit(2)], create, || {
                atomic_array(|_| AtomicPtr::new(ptr::null_mut()))
            })
        }?;
        // SAFETY: as above.
        let leaf = unsafe {
            child_or_install(&b[digit(1)], create, || atomic_array(|_| AtomicU32::new(0)))
        }?;
        Some(&leaf[digit(0)])
    }
}

/// Frees the nodes under `slot` (exclusive access).
fn free<N>(slot: &AtomicPtr<N>, inner: impl FnOnce(&N)) {
    // Relaxed: exclusive access (the table is being dropped).
    let node = slot.load(Ordering::Relaxed);
    if !node.is_null() {
        // SAFETY: our node, installed by `child_or_install` from a Box.
        let node = unsafe { Box::from_raw(node) };
        inner(&node);
    }
}

impl Drop for SpidTable {
    fn drop(&mut self) {
        for a in &self.root {
            free(a, |a| {
                for b in a {
                    free(b, |b| {
                        for leaf in b {
                            free(leaf, |_| {});
                        }
                    })
                }
            });
        }
    }
}

impl<const F: usize> SetCore<F> {
    /// The set's SPID table, built on the first call with `create`.
    fn spid_table(&self, create: bool) -> Option<&SpidTable> {
        // SAFETY: a set's table is never replaced, and freed only by the
        // set core's drop.
        unsafe { child_or_install(&self.spids, create, SpidTable::new) }
    }
}

/// Clears a set's entry for a SPID its ID just lost by a free or last put
/// (made before that CAS, while the word still names the owner).
pub(crate) struct Unmapper<'a, T: crate::entry::Payload, const F: usize> {
    inner: &'a SpaceInner<T, F>,
    /// Keeps the owner's core alive (owners.rs).
    _guard: crate::domain::Guard,
    core: *const SetCore<F>,
    owner: u16,
    spid: u32,
}

impl<T: crate::entry::Payload, const F: usize> Unmapper<'_, T, F> {
    /// Clears the entry of `id` after its record lost the SPID.
    pub(crate) fn run(self, id: Ioasid) {
        if self.core.is_null() {
            return; // detached (owner 0): no set, no table
        }
        // SAFETY: read under `_guard` from a word naming the owner
        // (owners.rs invariant).
        let core = unsafe { &*self.core };
        self.inner.unmap(core, self.owner, self.spid, id);
    }
}

impl<T: crate::entry::Payload, const F: usize> SpaceInner<T, F> {
    /// An [`Unmapper`] for the SPID of the ID in `slot`: call before the
    /// CAS that clears the SPID, run after it succeeded.
    pub(crate) fn spid_unmapper(&self, slot: Slot<'_, F>, spid: u32) -> Unmapper<'_, T, F> {
        let guard = self.pin();
        // Acquire: pairs with the Release publish, under the guard.
        let owner = entry::owner(slot.word().load(Ordering::Acquire));
        let core = if owner == 0 {
            ptr::null()
        } else {
            self.sets.get(owner)
        };
        Unmapper {
            inner: self,
            _guard: guard,
            core,
            owner,
            spid,
        }
    }

    /// True if `id` holds `spid` in the set with owner index `owner`: its
    /// word names the set, its record is LIVE with that SPID.
    fn holds(&self, id: Ioasid, spid: u32, owner: u16) -> bool {
        let Some(key) = self.key_of(id) else {
            return false;
        };
        let Some(slot) = self.tree.slot(key) else {
            return false;
        };
        // Acquire: pairs with the Release publish.
        let word = slot.word().load(Ordering::Acquire);
        if word == 0 || !entry::has_ext(word) || entry::owner(word) != owner {
            return false;
        }
        // Acquire: pairs with the Release CASes on the record.
        let record = self.refs.tracked(key).load(Ordering::Acquire);
        is_live(record) && spid_of(record) == Some(spid)
    }

    /// Clears `core`'s entry for `spid` if it names `id` and `id` no longer
    /// holds `spid` there (module invariants: stable under the lock).
    fn unmap(&self, core: &SetCore<F>, owner: u16, spid: u32, id: Ioasid) {
        let Some(table) = core.spid_table(false) else {
            return;
        };
        let _writers = table.writers.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = table.entry(spid, false) else {
            return;
        };
        // Relaxed: entries change only under the lock, which we hold.
        if entry.load(Ordering::Relaxed) == id.wrapping_add(1) && !self.holds(id, spid, owner) {
            // Release: pairs with readers' Acquire loads (a reader that
            // sees 0 finds nothing, which is right after the free).
            entry.store(0, Ordering::Release);
        }
    }

    /// Attaches `spid` to live `id` (with `expect`, only an ID of that set):
    /// SPEC 6.5's `ioasid_attach_spid`. Errors, nothing changed:
    /// `InvalidArgument` for `INVALID_IOASID` as either argument (checked
    /// first), `NotFound` for an ID not live (FREE_PENDING included),
    /// `PermissionDenied` for another set's, `AlreadyExists` if the SPID is
    /// used in the ID's set or the ID has one. An attach racing a free of
    /// the same ID returns `Ok` (the free then detached it) or `NotFound`.
    pub(crate) fn attach_spid(
        &self,
        id: Ioasid,
        spid: u32,
        expect: Option<u16>,
    ) -> Result<(), Error> {
        if id == INVALID_IOASID || spid == INVALID_IOASID {
            return Err(Error::InvalidArgument);
        }
        let key = self.key_of(id).ok_or(Error::NotFound)?;
        let slot = self.tree.slot(key).ok_or(Error::NotFound)?;
        // Keeps the owner's core alive while we use it (owners.rs).
        let _guard = self.pin();
        let owner = loop {
            // Acquire: pairs with the Release publish, under the guard.
            let word = slot.word().load(Ordering::Acquire);
            if word == 0 {
                return Err(Error::NotFound);
            }
            let owner = entry::owner(word);
            if expect.is_some_and(|o| o != owner) {
                return Err(Error::PermissionDenied);
            }
            if owner == 0 {
                return Err(Error::NotFound); // detached: FREE_PENDING
            }
            if !entry::has_ext(word) {
                // Track it (one reference, the allocation's) so it has a
                // record for the SPID; then look again.
                self.track(id, key, slot, word)?;
                continue;
            }
            // Acquire: pairs with the Release CASes on the record.
            let record = self.refs.tracked(key).load(Ordering::Acquire);
            if is_free(record) {
                yield_now(); // a first get between its two steps
                continue;
            }
            if !is_live(record) {
                return Err(Error::NotFound);
            }
            if spid_of(record).is_some() {
                return Err(Error::AlreadyExists);
            }
            break owner;
        };
        // SAFETY: `owner` was read from a word loaded under `_guard`
        // (owners.rs invariant).
        let core = unsafe { &*self.sets.get(owner) };
        let table = core.spid_table(true).expect("built on the way");
        let _writers = table.writers.lock().unwrap_or_else(|e| e.into_inner());
        let entry = table.entry(spid, true).expect("built on the way");
        // Relaxed: entries change only under the lock, which we hold.
        let mapped = entry.load(Ordering::Relaxed);
        if mapped != 0 && self.holds(mapped - 1, spid, owner) {
            return Err(Error::AlreadyExists);
        }
        let record = self.refs.tracked(key);
        // Acquire: as above.
        let mut current = record.load(Ordering::Acquire);
        loop {
            if !is_live(current) {
                // Freed (or released) since our first look.
                return Err(Error::NotFound);
            }
            if spid_of(current).is_some() {
                return Err(Error::AlreadyExists);
            }
            // AcqRel: Release orders the table build before a reader that
            // sees the SPID; Acquire reads the newer record on failure.
            // Races gets, puts and frees on the count, which keep the SPID
            // field as they find it (or clear it, leaving LIVE).
            match record.compare_exchange(
                current,
                with_spid(current, Some(spid)),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        // Acquire: as above. The record we set belongs to the current
        // incarnation of the number; if that is no longer the set we
        // looked at, a free and a new allocation came between: undo.
        if entry::owner(slot.word().load(Ordering::Acquire)) != owner {
            self.clear_record_spid(record, spid);
            return Err(Error::NotFound);
        }
        // Release: pairs with readers' Acquire loads of the entry. Stored
        // even if a free cleared the record meanwhile: that free waits for
        // the lock and then clears this entry (the ID no longer holds it).
        entry.store(id + 1, Ordering::Release);
        Ok(())
    }

    /// Clears `spid` from `record` if it still holds it.
    fn clear_record_spid(&self, record: &crate::sync::AtomicU64, spid: u32) {
        // Acquire: as in `attach_spid`.
        let mut current = record.load(Ordering::Acquire);
        while is_live(current) && spid_of(current) == Some(spid) {
            // AcqRel: as in `attach_spid`.
            match record.compare_exchange(
                current,
                with_spid(current, None),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(now) => current = now,
            }
        }
    }

    /// Makes untracked `id` tracked with the allocation's one reference (a
    /// first get that adds none). `Ok` also when another thread changed the
    /// word first (the caller looks again); `NotFound` if a custom free is
    /// under way.
    fn track(&self, id: Ioasid, key: u64, slot: Slot<'_, F>, word: u64) -> Result<(), Error> {
        let record = self.refs.record(key, true).expect("built on the way");
        // As a first get (refs.rs): with custom IDs about, hold their
        // records over the CAS so a free that began its hook is seen.
        let records = self.custom.any().then(|| self.custom.lock_for_free());
        if records
            .as_ref()
            .is_some_and(|r| r.state(id) == Some(crate::custom::State::Freeing))
        {
            return Err(Error::NotFound);
        }
        // AcqRel: as the first get's CAS in `get_ref`: Release orders the
        // record's chunk before EXT is seen; it races a free the same way.
        if slot
            .word()
            .compare_exchange(word, word | entry::EXT, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            drop(records);
            // The installer: the record is FREE and ours until this store
            // (refs.rs invariant). Release: pairs with waiters' Acquire.
            record.store(crate::refs::LIVE_ONE, Ordering::Release);
        }
        Ok(())
    }

    /// Detaches the SPID of live `id` (with `expect`, only an ID of that
    /// set): `Ok(Some(spid))`, or `Ok(None)` if it had none. `NotFound`
    /// if not live, `PermissionDenied` if another set's.
    pub(crate) fn detach_spid(
        &self,
        id: Ioasid,
        expect: Option<u16>,
    ) -> Result<Option<u32>, Error> {
        let key = self.key_of(id).ok_or(Error::NotFound)?;
        let slot = self.tree.slot(key).ok_or(Error::NotFound)?;
        loop {
            // Acquire: pairs with the Release publish.
            let word = slot.word().load(Ordering::Acquire);
            if word == 0 {
                return Err(Error::NotFound);
            }
            if expect.is_some_and(|o| o != entry::owner(word)) {
                return Err(Error::PermissionDenied);
            }
            if !entry::has_ext(word) {
                return Ok(None); // untracked IDs hold no SPID
            }
            let record = self.refs.tracked(key);
            // Acquire: pairs with the Release CASes on the record.
            let current = record.load(Ordering::Acquire);
            if is_free(current) {
                yield_now();
                continue;
            }
            let Some(spid) = spid_of(current).filter(|_| is_live(current)) else {
                return if is_live(current) {
                    Ok(None)
                } else {
                    Err(Error::NotFound)
                };
            };
            let unmap = self.spid_unmapper(slot, spid);
            // AcqRel: as in `attach_spid`.
            if record
                .compare_exchange(
                    current,
                    with_spid(current, None),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                unmap.run(id);
                return Ok(Some(spid));
            }
        }
    }

    /// The SPID live `id` holds, if any.
    pub(crate) fn spid(&self, id: Ioasid) -> Option<u32> {
        let key = self.key_of(id)?;
        let slot = self.tree.slot(key)?;
        // Acquire: pairs with the Release publish.
        let word = slot.word().load(Ordering::Acquire);
        if word == 0 || !entry::has_ext(word) {
            return None;
        }
        // Acquire: pairs with the Release CASes on the record.
        let record = self.refs.tracked(key).load(Ordering::Acquire);
        spid_of(record).filter(|_| is_live(record))
    }

    /// The host ID holding `spid` in the set `core` (owner index `owner`),
    /// with a reference taken if `get`. Lock-free; a plain find writes
    /// nothing. `NotFound` if none (or the ID is being freed: a get never
    /// takes a reference on a FREE_PENDING or released ID); `Overflow` if
    /// `get` and its count is at the maximum.
    pub(crate) fn find_by_spid(
        &self,
        core: &SetCore<F>,
        owner: u16,
        spid: u32,
        get: bool,
    ) -> Result<Ioasid, Error> {
        let entry = core
            .spid_table(false)
            .and_then(|table| table.entry(spid, false))
            .ok_or(Error::NotFound)?;
        // Acquire: pairs with the attach's Release store.
        let id = entry
            .load(Ordering::Acquire)
            .checked_sub(1)
            .ok_or(Error::NotFound)?;
        let key = self.key_of(id).ok_or(Error::NotFound)?;
        let slot = self.tree.slot(key).ok_or(Error::NotFound)?;
        // Acquire: pairs with the Release publish.
        let word = slot.word().load(Ordering::Acquire);
        if word == 0 || !entry::has_ext(word) || entry::owner(word) != owner {
            return Err(Error::NotFound);
        }
        let record = self.refs.tracked(key);
        // Acquire: pairs with the Release CASes on the record.
        let mut current = record.load(Ordering::Acquire);
        loop {
            // The SPID leaves the record with the free or last put that
            // takes it out of LIVE: a record still LIVE with it is taken.
            if !is_live(current) || spid_of(current) != Some(spid) {
                return Err(Error::NotFound);
            }
            if !get {
                return Ok(id);
            }
            if current & MAX_REFS >= MAX_REFS {
                return Err(Error::Overflow);
            }
            // AcqRel: as a get's increment (refs.rs).
            match record.compare_exchange(current, current + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        // A LIVE record with our SPID is the current incarnation's; check
        // it is still this set's (as a checked get does), else give back.
        self.recheck_owner(id, slot.word(), Some(owner))
            .map(|()| id)
            .map_err(|_| Error::NotFound)
    }
}
