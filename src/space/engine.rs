//! The per-ID engine of a space: alloc, the frees, replace, retire, and
//! the plumbing that sends the notes operations leave.
//!
//! INVARIANT: a word is published (Release) only into a slot whose claim
//! bit this call took, and a claim bit is released only after its word left
//! the slot (CAS or swap to 0), so a claim never hands out a live slot.
//! When the removal leaves a FREE to send, the claim bit is released only
//! after that FREE reached every chain ([`AfterSend`]), so no chain hears a
//! FREE after the next ALLOC of the same number. A custom allocator's ID
//! keeps its word (still found) over the send, and its hook runs after it:
//! the kernel's order. Its record says it is being freed meanwhile, and a
//! set's teardown detaches such a word (owner 0) rather than wait for it.
//! Values of words taken out of slots are dropped once, through the epoch.

use super::{Policy, SpaceInner};
use crate::custom::{CustomHook, State};
use crate::domain::Guard;
use crate::entry::{self, Payload, Ref};
use crate::error::Error;
use crate::notify::{AfterSend, Chains, Event, Note};
use crate::owners::SetCore;
use crate::refs::RefDrop;
use crate::sync::{AtomicU64, Ordering};
use crate::tree::Slot;
use crate::Ioasid;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

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

impl<T: Payload, const F: usize> SpaceInner<T, F> {
    pub(crate) fn key_of(&self, id: Ioasid) -> Option<u64> {
        (self.min..=self.max)
            .contains(&id)
            .then(|| u64::from(id - self.min))
    }

    pub(super) fn id_of(&self, key: u64) -> Ioasid {
        self.min + key as Ioasid
    }

    pub(crate) fn span(&self) -> u64 {
        self.tree.span()
    }

    /// A Cyclic space whose tree gives nothing back (`keep_memory`).
    pub(crate) fn keeps_memory(&self) -> bool {
        self.policy == Policy::Cyclic && !self.tree.reclaims()
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
            self.notify_alloc(id, owner, set, word);
        }
        Ok(id)
    }

    #[cold]
    #[inline(never)]
    fn notify_alloc(&self, id: Ioasid, owner: u16, set: &SetCore<F>, word: u64) {
        // The caller holds the set, so its core is valid.
        self.send_to(
            Some(
                self.notify
                    .note(Event::Alloc, id, owner, Some(set), word, false),
            ),
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
            // Held back if this thread opened a NotifyScope: sent (and its
            // number released) once the outermost scope closes. The caller
            // holds the space, so the upgrade succeeds.
            let space = self.this.upgrade().expect("a space that sends is alive");
            crate::notify::hold_back(Box::new(move || space.deliver(note, chains)));
            return;
        }
        self.deliver(note, chains);
    }

    /// Calls `chains` with `note`, then (even if a callback panics) retires
    /// the value the note owns and does what it leaves for after the send.
    /// A panic of a callback, else of a custom hook run after, goes on
    /// once all that is done.
    fn deliver(&self, mut note: Note<T>, chains: Chains) {
        let after = std::mem::replace(&mut note.after, AfterSend::Nothing);
        let id = note.id();
        let sent = catch_unwind(AssertUnwindSafe(|| {
            note.send(
                chains,
                self.notify.hub(),
                || self.pin(),
                |guard| self.load(id, guard),
            )
        }));
        // Pinned only if there is something to reclaim (an inline value
        // with no drop glue is just bits).
        if let Some(word) = note.owned_word().filter(|&w| entry::needs_drop::<T>(w)) {
            self.retire(word, &self.pin());
        }
        let after = self.after_send(after);
        if let Err(panic) = sent.and(after) {
            resume_unwind(panic);
        }
    }

    /// What a FREE left for after its send: release its number, end its
    /// FREE_PENDING send (`refs.rs`), or finish a custom ID's free; `Err`
    /// with the panic of a custom hook (the free was finished all the same).
    fn after_send(&self, after: AfterSend) -> std::thread::Result<()> {
        match after {
            AfterSend::Nothing => {}
            AfterSend::Release(key) => {
                let slot = self.tree.slot(key).expect("a claimed key has its slot");
                // INVARIANT (module): the word left the slot before the note
                // was made; the claim bit goes only now.
                self.tree.release(slot, key);
            }
            AfterSend::EndSending(key) => self.end_sending(key),
            AfterSend::FinishCustom(key, hook) => {
                let id = self.min + key as Ioasid;
                self.custom.begin_hook(id);
                return self.finish_custom(id, key, &hook);
            }
            AfterSend::ReleaseTracked(key) => {
                let id = self.min + key as Ioasid;
                let slot = self.tree.slot(key).expect("a claimed key has its slot");
                return catch_unwind(AssertUnwindSafe(|| {
                    self.release_tracked(id, key, slot, self.refs.tracked(key), false, None)
                }));
            }
        }
        Ok(())
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
                    // A teardown moves the word off its set (that free's
                    // end takes it out), so the set may go first.
                    Some(State::Freeing) if how == RefDrop::Teardown => {
                        self.detach(slot);
                        return Ok(false);
                    }
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
                        let hook = match note {
                            Some(_) => records.start_free_sending(id),
                            None => records.start_free(id),
                        };
                        break (core, Some(hook));
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
            core.unreserve();
            match note {
                // The FREE releases the number once it reached every chain.
                Some(out) => *out = Some(self.free_note(id, word, AfterSend::Release(key))),
                None => {
                    self.tree.release(slot, key);
                    self.retire_taken(word, expect);
                }
            }
            return Ok(true);
        };
        match note {
            Some(out) => {
                // The kernel's order: FREE first, while the ID is still
                // found (and recorded as being freed: not freed or got
                // again); its hook, the word's removal and the number's
                // release follow the send.
                let mut free = self.note(Event::Free, id, entry::owner(word), word, false);
                free.after = AfterSend::FinishCustom(key, hook);
                *out = Some(free);
            }
            None => {
                if let Err(panic) = self.finish_custom(id, key, &hook) {
                    resume_unwind(panic);
                }
            }
        }
        Ok(true)
    }

    /// Finishes the free of custom-allocated `id`, whose record is being
    /// freed: calls its hook while the ID is still recorded and found (SPEC
    /// 6.3); then the word goes, and the number is released with its record
    /// dropped, so a waiting allocation of the same number goes on only
    /// now. A panicking hook still frees: `Err` with its panic.
    fn finish_custom(&self, id: Ioasid, key: u64, hook: &CustomHook) -> std::thread::Result<()> {
        let hook_done = catch_unwind(AssertUnwindSafe(|| hook.allocator().free(id)));
        let slot = self.tree.slot(key).expect("a claimed key has its slot");
        let guard = self.pin();
        // Only this call empties a word whose record is being freed.
        let (word, core) = self.take_word(slot, &guard);
        if let Some(core) = core {
            core.unreserve();
        }
        self.custom.finish_free(id, || self.tree.release(slot, key));
        self.retire(word, &guard);
        hook_done
    }

    /// Takes the word of a live `slot` out (its one remover: the caller),
    /// with the core of the set it names; `None` if a teardown detached it
    /// (and gave the set its quota unit back).
    pub(crate) fn take_word<'g>(
        &self,
        slot: Slot<'_, F>,
        _guard: &'g Guard,
    ) -> (u64, Option<&'g SetCore<F>>) {
        // Acquire: pairs with the Release publish / set_data / detach.
        let mut word = slot.word().load(Ordering::Acquire);
        loop {
            debug_assert_ne!(word, 0, "only its one remover takes the word out");
            let owner = entry::owner(word);
            // Read while the word names its owner, under the guard: the core
            // stays valid until it unpins (owners.rs). Owner 0: detached.
            let core = (owner != 0).then(|| self.sets.get(owner));
            // AcqRel: Release orders our reads before the word leaves;
            // Acquire reads a newer word (set_data, detach) on failure.
            match slot
                .word()
                .compare_exchange(word, 0, Ordering::AcqRel, Ordering::Acquire)
            {
                // SAFETY: read under `_guard` from the word we took
                // (owners.rs).
                Ok(_) => return (word, core.map(|core| unsafe { &*core })),
                Err(now) => word = now,
            }
        }
    }

    /// The FREE of `id`, owning `word` (taken out of its slot), with
    /// `after` for its sender. The caller's guard (kernel form) or set keeps
    /// the word's owner index valid.
    pub(crate) fn free_note(&self, id: Ioasid, word: u64, after: AfterSend) -> Note<T> {
        let mut note = self.note(Event::Free, id, entry::owner(word), word, true);
        note.after = after;
        note
    }

    /// Retires the value of a word a removal took out of its slot (no FREE
    /// is sent: the caller saw no notifier).
    #[inline(always)]
    fn retire_taken(&self, word: u64, expect: Expect<'_, F>) {
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
