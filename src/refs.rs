//! Reference counts and FREE_PENDING (SPEC 6.2): per-ID extension records.
//!
//! An ID whose entry word has no `EXT` bit is *untracked*: it holds exactly
//! the allocation's one reference, and v5.5 alloc/free never touch this
//! module (free pays one bit test). The first `get` makes it *tracked*: the
//! word gains `EXT` and the ID's record in the space's [`RefTable`] (a
//! lazily built, directly indexed table of `AtomicU64`, keyed like the tree)
//! holds its state and count:
//!
//! ```text
//!  63 ............ 32   31 30   29 ............ 0
//! [SPID + 1, 0: none]  [state] [reference count]    LIVE
//! [S  0 ...........0]  [state] [reference count]    FREE, PENDING, DEAD
//! ```
//!
//! The SPID field (SPEC 6.5, `spid.rs`) is set only on a `LIVE` record and
//! cleared by the same CAS that moves a record to `PENDING` or `DEAD`: a
//! free (FREE_PENDING included) or the last put detaches the SPID at once.
//! Off `LIVE`, bit 63 is `SENDING` (S): a free that left the ID
//! FREE_PENDING is still sending its FREE, and the number must stay
//! claimed until that send ends (a FREE never reaches a chain after the
//! number's next ALLOC). The later of the send's end and the last put
//! releases the number: the sender clears S (`PENDING`/`DEAD`: the
//! releaser, now or to come, releases it) or finds `FREE | S`, left by a
//! releaser that reset the record while S was set, and releases it itself.
//!
//! States: `FREE` (the record is unused: the ID is untracked, or a first get
//! is between its two steps), `LIVE`, `PENDING` (freed while references
//! remain: still found, never got, not allocatable) and `DEAD` (the last
//! reference is gone; its one releaser is taking the entry out).
//!
//! INVARIANTS:
//! - A record is `LIVE` or `PENDING` only while its ID's current word has
//!   `EXT`. So a CAS that succeeds on a `LIVE`/`PENDING` record acts on a live,
//!   tracked ID, whichever incarnation of the number a stale thread saw.
//! - Only the installer (whose CAS `W -> W|EXT` succeeded) writes a `FREE`
//!   record of a word with `EXT`; until it has, every other operation on the
//!   ID waits (a few instructions: the installer's next step is one store).
//! - An `EXT` word leaves its slot only by its one releaser, the thread whose
//!   CAS moved the record to `DEAD`; it resets the record to `FREE` (or
//!   `FREE | SENDING`, then the sender resets it) before the number becomes
//!   claimable again, so a new incarnation starts untracked.
//! - `SENDING` is set only by a free's CAS from `LIVE` to `PENDING`, of an ID
//!   no custom allocator chose (its hook takes the number back at once), and
//!   cleared only by that free's sender (`end_sending`).

use crate::custom::State;
use crate::entry::{self, Payload};
use crate::error::Error;
use crate::notify::{AfterSend, Event};
use crate::space::{NoteOut, SpaceInner};
use crate::sync::{atomic_array, child_or_install, yield_now, AtomicPtr, AtomicU64, Ordering};
use crate::tree::Slot;
use crate::Ioasid;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::ptr;

/// How a reference is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefDrop {
    /// `free`: drops the allocation's reference (once: a PENDING ID is not
    /// found by free).
    Free,
    /// `put`: drops one reference taken by `get`, or the allocation's.
    Put,
    /// A set's teardown: as `Free`, and a referenced ID is detached from the
    /// set (its word gets owner 0) so the set may go.
    Teardown,
}

const COUNT_BITS: u32 = 30;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const STATE_MASK: u64 = 3 << COUNT_BITS;
const FREE: u64 = 0;
const LIVE: u64 = 1 << COUNT_BITS;
const PENDING: u64 = 2 << COUNT_BITS;
const DEAD: u64 = 3 << COUNT_BITS;
/// The most references one ID may hold; a get beyond is refused.
pub(crate) const MAX_REFS: u64 = COUNT_MASK;
/// A record just tracked with the allocation's one reference.
pub(crate) const LIVE_ONE: u64 = LIVE | 1;
/// Off `LIVE`: a FREE of this ID is being sent (module docs).
const SENDING: u64 = 1 << 63;

const SPID_SHIFT: u32 = 32;
const SPID_MASK: u64 = u64::MAX << SPID_SHIFT;

/// The SPID a record holds, if any (only a `LIVE` one holds one).
pub(crate) fn spid_of(record: u64) -> Option<u32> {
    if !is_live(record) {
        return None;
    }
    let field = (record >> SPID_SHIFT) as u32;
    field.checked_sub(1)
}

/// `record` holding `spid` (`None`: none). `spid` is never `u32::MAX`.
pub(crate) fn with_spid(record: u64, spid: Option<u32>) -> u64 {
    let field = spid.map_or(0, |s| u64::from(s) + 1);
    (record & !SPID_MASK) | (field << SPID_SHIFT)
}

/// True if `record` is `LIVE`.
pub(crate) fn is_live(record: u64) -> bool {
    state(record) == LIVE
}

/// True if `record` is `FREE` (unused, or a first get between its steps).
pub(crate) fn is_free(record: u64) -> bool {
    state(record) == FREE
}

/// True if a FREE_PENDING send of this record's ID is under way.
fn sending(record: u64) -> bool {
    !is_live(record) && record & SENDING != 0
}

fn count(record: u64) -> u64 {
    record & COUNT_MASK
}

fn state(record: u64) -> u64 {
    record & STATE_MASK
}

/// `record` with its count replaced and its state set to `to`.
fn with(record: u64, to: u64, refs: u64) -> u64 {
    (record & !(STATE_MASK | COUNT_MASK)) | to | refs
}

// Small chunks under loom, so a model's first get builds few atomics.
#[cfg(not(ioasid_loom))]
const CHUNK_BITS: u32 = 10;
#[cfg(ioasid_loom)]
const CHUNK_BITS: u32 = 2;
#[cfg(not(ioasid_loom))]
const MID_BITS: u32 = 11;
#[cfg(ioasid_loom)]
const MID_BITS: u32 = 2;
const CHUNK: usize = 1 << CHUNK_BITS;
const MID: usize = 1 << MID_BITS;

type Chunk = [AtomicU64; CHUNK];
type Mid = [AtomicPtr<Chunk>; MID];

/// Key -> extension record, three levels: a top array sized for the span
/// (one pointer per `MID * CHUNK` keys: one for a 20-bit space, 2048 for a
/// 32-bit one), middle arrays and chunks of `CHUNK` records appear on a
/// first get in their range. A space that never counts references holds the
/// top array only; dense tracked IDs cost 8 bytes each plus 1/128 of that.
///
/// INVARIANT: installed middle arrays and chunks are never replaced or
/// freed before the table drops, so a `&AtomicU64` record lives as long as
/// the table.
pub(crate) struct RefTable {
    top: Box<[AtomicPtr<Mid>]>,
}

impl RefTable {
    pub(crate) fn new(span: u64) -> Self {
        let per_top = (CHUNK * MID) as u64;
        let len = span.div_ceil(per_top).max(1) as usize;
        RefTable {
            top: (0..len).map(|_| AtomicPtr::new(ptr::null_mut())).collect(),
        }
    }

    /// The record of `key`, built if `create`; `None` if absent and not built.
    pub(crate) fn record(&self, key: u64, create: bool) -> Option<&AtomicU64> {
        let key = key as usize;
        let (top, mid, low) = (
            key >> (CHUNK_BITS + MID_BITS),
            (key >> CHUNK_BITS) & (MID - 1),
            key & (CHUNK - 1),
        );
        // SAFETY: middle arrays and chunks are never replaced or freed
        // before the table drops (the invariant above).
        let mids = unsafe {
            child_or_install(&self.top[top], create, || {
                atomic_array(|_| AtomicPtr::new(ptr::null_mut()))
            })
        }?;
        // SAFETY: as above.
        let chunk = unsafe {
            child_or_install(&mids[mid], create, || {
                atomic_array(|_| AtomicU64::new(FREE))
            })
        }?;
        Some(&chunk[low])
    }

    /// The record of a tracked `key`: its chunk exists (built by the get
    /// that set `EXT`).
    pub(crate) fn tracked(&self, key: u64) -> &AtomicU64 {
        self.record(key, false)
            .expect("an ID with the ext bit has a record")
    }
}

impl Drop for RefTable {
    fn drop(&mut self) {
        for top in self.top.iter() {
            // Relaxed: `&mut self`, exclusive access.
            let mids = top.load(Ordering::Relaxed);
            if mids.is_null() {
                continue;
            }
            // SAFETY: our node, installed by `child` from a Box.
            let mids = unsafe { Box::from_raw(mids) };
            for chunk in mids.iter() {
                // Relaxed: exclusive access, as above.
                let chunk = chunk.load(Ordering::Relaxed);
                if !chunk.is_null() {
                    // SAFETY: our chunk, installed by `child` from a Box.
                    drop(unsafe { Box::from_raw(chunk) });
                }
            }
        }
    }
}

impl RefTable {
    /// Restore (a space not yet shared): `key` is tracked with `refs`
    /// references, FREE_PENDING if `pending`. Its word gets `EXT` after
    /// this store (Release: as the installer's first store).
    pub(crate) fn restore(&self, key: u64, refs: u64, pending: bool) {
        debug_assert!((1..=MAX_REFS).contains(&refs));
        let record = self.record(key, true).expect("built on the way");
        let state = if pending { PENDING } else { LIVE };
        record.store(state | refs, Ordering::Release);
    }
}

/// What a reader sees of an ID's reference state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefState {
    /// Live with this many references.
    Live(u64),
    /// Freed, waiting for this many references to be put.
    Pending(u64),
}

impl<T: Payload, const F: usize> SpaceInner<T, F> {
    /// Takes a reference on live `id` (not FREE_PENDING); with `owner`, only
    /// if that set owns it. `Err(Overflow)` at [`MAX_REFS`].
    pub(crate) fn get_ref(&self, id: Ioasid, owner: Option<u16>) -> Result<(), Error> {
        let key = self.key_of(id).ok_or(Error::NotFound)?;
        let slot = self.tree.slot(key).ok_or(Error::NotFound)?.word();
        loop {
            // Acquire: pairs with the Release publish of the word (and of a
            // record's first store, via the installer's CAS below).
            let word = slot.load(Ordering::Acquire);
            if word == 0 {
                return Err(Error::NotFound);
            }
            if owner.is_some_and(|o| o != entry::owner(word)) {
                return Err(Error::PermissionDenied);
            }
            if !entry::has_ext(word) {
                // The first get. Build the record before the word names it,
                // so a thread that sees EXT finds the chunk.
                let record = self.refs.record(key, true).expect("built on the way");
                // With custom IDs about, hold their records over the CAS: a
                // free that found the ID live and began its hook (without
                // a CAS of the word) is then seen here, and the get fails.
                let records = self.custom.any().then(|| self.custom.lock_for_free());
                if records
                    .as_ref()
                    .is_some_and(|r| r.state(id) == Some(State::Freeing))
                {
                    return Err(Error::NotFound);
                }
                // AcqRel: Release orders the chunk's build before EXT is
                // seen; Acquire reads a newer word on failure. This CAS is
                // the first get's linearization point: it races a free or
                // last put, which CAS the same word to 0 (space/engine.rs).
                if slot
                    .compare_exchange(word, word | entry::EXT, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    continue;
                }
                drop(records);
                // We are the installer: the record is FREE and no one else
                // writes it until this store (module invariant). Two
                // references: the allocation's and ours. Release: pairs with
                // the Acquire loads of waiters.
                record.store(LIVE | 2, Ordering::Release);
                return Ok(());
            }
            let record = self.refs.tracked(key);
            // Acquire: pairs with the Release of the installer's store and
            // of earlier CASes.
            let mut current = record.load(Ordering::Acquire);
            loop {
                match state(current) {
                    // A first get is between its CAS and its store.
                    FREE => {
                        yield_now();
                        break;
                    }
                    LIVE if count(current) >= MAX_REFS => return Err(Error::Overflow),
                    LIVE => {}
                    // Freed (waiting for puts) or being released: no new
                    // references; a get never revives an ID.
                    _ => return Err(Error::NotFound),
                }
                // AcqRel: Release orders this count before a later put's
                // Acquire; Acquire reads the newer record on failure.
                match record.compare_exchange(
                    current,
                    current + 1,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return self.recheck_owner(id, slot, owner),
                    Err(now) => current = now,
                }
            }
        }
    }

    /// After a successful increment by a checked get: the record is LIVE
    /// only while the current word has EXT (module invariant), so the count
    /// went to a live ID, but a stale thread may have counted a later
    /// incarnation of the number owned by another set. Then the reference
    /// is given back and the get fails as if it came after that free.
    pub(crate) fn recheck_owner(
        &self,
        id: Ioasid,
        slot: &AtomicU64,
        owner: Option<u16>,
    ) -> Result<(), Error> {
        let Some(owner) = owner else { return Ok(()) };
        // Acquire: as in `get_ref`.
        if entry::owner(slot.load(Ordering::Acquire)) == owner {
            return Ok(());
        }
        // A put that may release it (and send its FREE, if never freed).
        let _ = self.drop_ref_any(id, RefDrop::Put);
        Err(Error::PermissionDenied)
    }

    /// Drops a reference of a tracked ID (its word had `EXT`); `Ok(true)` if
    /// this released it, `None` if the caller must load the word again (the
    /// record was FREE: a first get between its steps, or the ID was
    /// released since the caller's load). A FREE event (the first free of
    /// the ID, or the last put of one never freed) is left in `note`.
    pub(crate) fn drop_tracked(
        &self,
        id: Ioasid,
        key: u64,
        slot: Slot<'_, F>,
        how: RefDrop,
        mut note: NoteOut<'_, T>,
    ) -> Option<Result<bool, Error>> {
        let record = self.refs.tracked(key);
        // Acquire: as in `get_ref`.
        let mut current = record.load(Ordering::Acquire);
        loop {
            let refs = count(current);
            let next = match (state(current), how) {
                (FREE, _) => {
                    // A first get between its CAS and its store, or a
                    // release since our load of the word: load it again.
                    yield_now();
                    return None;
                }
                // Being released: a teardown moves the word off its set
                // (the releaser, which may be waiting for a FREE's send,
                // takes it out), so the set may go first.
                (DEAD, RefDrop::Teardown) => {
                    self.detach(slot);
                    return Some(Ok(false));
                }
                (DEAD, _) => return Some(Err(Error::NotFound)),
                // Free drops the allocation's reference once.
                (PENDING, RefDrop::Free) => return Some(Err(Error::NotFound)),
                (PENDING, RefDrop::Teardown) => {
                    self.detach(slot);
                    return Some(Ok(false));
                }
                (_, _) if refs == 1 => with(current, DEAD, 0),
                (LIVE, RefDrop::Put) => with(current, LIVE, refs - 1),
                (_, _) => with(current, PENDING, refs - 1),
            };
            // A free that leaves the ID FREE_PENDING sends FREE with the word
            // read before the CAS: after it, a last put may take the word
            // out at once. (A teardown detaches the word after the CAS, so
            // this one still names the set.)
            let pending_word = (is_live(current) && state(next) == PENDING && note.is_some())
                // Acquire: as above.
                .then(|| slot.word().load(Ordering::Acquire));
            // Its number stays claimed until that FREE is sent (SENDING),
            // unless a custom allocator chose it.
            let hold_number =
                pending_word.is_some() && !(self.custom.any() && self.custom.is_recorded(id));
            // Leaving LIVE detaches the SPID in the same step (spid.rs);
            // its set's table entry goes after the CAS. Off LIVE, the high
            // half is SENDING only, kept as found.
            let next = if is_live(next) || !is_live(current) {
                next
            } else if hold_number {
                with_spid(next, None) | SENDING
            } else {
                with_spid(next, None)
            };
            let spid = spid_of(current).filter(|_| !is_live(next));
            let unmap = spid.map(|spid| self.spid_unmapper(slot, spid));
            // AcqRel: Release orders our reads of the ID before a releaser's
            // reclamation; Acquire makes the releaser see every earlier
            // holder's accesses (the chain of CASes on this record).
            match record.compare_exchange(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) if state(next) == DEAD => {
                    if let Some(unmap) = unmap {
                        unmap.run(id);
                    }
                    // FREE once: here unless a free already sent it.
                    let free_event = state(current) == LIVE;
                    self.release_tracked(id, key, slot, record, free_event, note.as_deref_mut());
                    // The FREE carries the SPID the ID had.
                    if let Some(Some(n)) = note.as_deref_mut() {
                        n.spid = spid;
                    }
                    return Some(Ok(true));
                }
                Ok(_) => {
                    if let Some(unmap) = unmap {
                        unmap.run(id);
                    }
                    if let (Some(word), Some(out)) = (pending_word, note.as_deref_mut()) {
                        let owner = entry::owner(word);
                        let mut free = self.note(Event::Free, id, owner, word, false);
                        free.spid = spid;
                        if hold_number {
                            free.after = AfterSend::EndSending(key);
                        }
                        *out = Some(free);
                    }
                    if how == RefDrop::Teardown {
                        self.detach(slot);
                    }
                    return Some(Ok(false));
                }
                Err(now) => current = now,
            }
        }
    }

    /// The one releaser of a tracked ID (its record is DEAD): takes the word
    /// out, resets the record, then releases the number. With `free_event`,
    /// leaves the FREE event (owning the taken value) in `note`, and the
    /// number to its sender; a custom allocator's ID leaves its FREE with
    /// the whole release (hook first) to follow the send. While a
    /// FREE_PENDING send is under way (`SENDING`), that sender releases the
    /// number.
    pub(crate) fn release_tracked(
        &self,
        id: Ioasid,
        key: u64,
        slot: Slot<'_, F>,
        record: &AtomicU64,
        free_event: bool,
        note: NoteOut<'_, T>,
    ) {
        let mut note = note.filter(|_| free_event);
        if let Some(out) = note.as_deref_mut() {
            if self.custom.any() && self.custom.is_recorded(id) {
                // A custom allocator's ID: the kernel's order, FREE first
                // while the ID is still found; this release (its hook
                // first) follows the send. The caller's guard or set keeps
                // the word's owner valid.
                // Acquire: pairs with the Release publish / set_data.
                let word = slot.word().load(Ordering::Acquire);
                let mut free = self.note(Event::Free, id, entry::owner(word), word, false);
                free.after = AfterSend::ReleaseTracked(key);
                *out = Some(free);
                return;
            }
        }
        self.take_out_tracked(id, key, slot, record, note);
    }

    /// [`SpaceInner::release_tracked`] at once: with `note`, the FREE.
    fn take_out_tracked(
        &self,
        id: Ioasid,
        key: u64,
        slot: Slot<'_, F>,
        record: &AtomicU64,
        note: NoteOut<'_, T>,
    ) {
        let guard = self.pin();
        // A custom allocator's ID: its hook runs first, while the ID is
        // still recorded and found (SPEC 6.3, FREE_PENDING included). We
        // are the one releaser, so its record is live, not freeing.
        let custom_hook = self.custom.any().then(|| {
            let mut records = self.custom.lock_for_free();
            (records.state(id) == Some(State::Live)).then(|| records.start_free(id))
        });
        let custom_hook = custom_hook.flatten();
        let hook_done = custom_hook
            .as_ref()
            .map(|hook| catch_unwind(AssertUnwindSafe(|| hook.allocator().free(id))));
        let (word, core) = self.take_word(slot, &guard);
        debug_assert!(entry::has_ext(word), "a tracked word");
        // Release: a later first get of a new incarnation (which can only
        // start after the claim bit clears) sees FREE. AcqRel: Acquire pairs
        // with a sender's clearing of SENDING, which then left us the number.
        // INVARIANT: `FREE | SENDING` hands the number to the sender.
        let left = record.fetch_and(SENDING, Ordering::AcqRel);
        let sender_releases = left & SENDING != 0;
        if let Some(core) = core {
            // The set's member bit stays (members.rs: cleaned lazily).
            core.unreserve();
        }
        // Who releases the number: the custom allocator's record (its hook
        // took the number back), a FREE_PENDING send under way, this FREE's
        // sender, or this call now.
        let after = if custom_hook.is_some() {
            self.custom.finish_free(id, || self.tree.release(slot, key));
            AfterSend::Nothing
        } else if sender_releases {
            AfterSend::Nothing
        } else if note.is_some() {
            AfterSend::Release(key)
        } else {
            self.tree.release(slot, key);
            AfterSend::Nothing
        };
        match note {
            Some(out) => *out = Some(self.free_note(id, word, after)),
            None => self.retire(word, &guard),
        }
        if let Some(Err(panic)) = hook_done {
            resume_unwind(panic);
        }
    }

    /// Ends the send of a FREE_PENDING ID's FREE (its record has
    /// `SENDING`): clears the bit, leaving the number to the ID's releaser
    /// (now or to come), or releases the number itself if that releaser
    /// came first and left `FREE | SENDING`.
    pub(crate) fn end_sending(&self, key: u64) {
        let record = self.refs.tracked(key);
        // Acquire: pairs with the releaser's AcqRel reset.
        let mut current = record.load(Ordering::Acquire);
        loop {
            debug_assert!(sending(current), "only the FREE's sender clears SENDING");
            if is_free(current) {
                // Nothing else writes a FREE | SENDING record (its word is
                // gone and its number claimed). Release: as the releaser's
                // reset, before the number becomes claimable.
                record.store(FREE, Ordering::Release);
                let slot = self.tree.slot(key).expect("a claimed key has its slot");
                self.tree.release(slot, key);
                return;
            }
            // AcqRel: Release orders the send (every callback returned)
            // before the releaser's Acquire reset and so before the number's
            // release; Acquire reads the newer record on failure.
            match record.compare_exchange(
                current,
                current & !SENDING,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(now) => current = now,
            }
        }
    }

    /// Detaches a referenced ID from its set (teardown): owner 0, member bit
    /// and quota given back, by whoever moves the word away from its owner
    /// (this, or a releaser that took it out first).
    pub(crate) fn detach(&self, slot: Slot<'_, F>) {
        let guard = self.pin();
        // Acquire: as above.
        let mut word = slot.word().load(Ordering::Acquire);
        loop {
            let owner = entry::owner(word);
            if word == 0 || owner == 0 {
                return; // released meanwhile, or already detached
            }
            let core = self.sets.get(owner);
            // AcqRel: as in `release_tracked`.
            match slot.word().compare_exchange(
                word,
                entry::detached(word),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // SAFETY: read under `guard` from the word we replaced.
                    let core = unsafe { &*core };
                    // The member bit stays: cleaned lazily (members.rs).
                    core.unreserve();
                    drop(guard);
                    return;
                }
                Err(now) => word = now,
            }
        }
    }

    /// The reference state of live `id`, `None` if not live.
    pub(crate) fn ref_state(&self, id: Ioasid) -> Option<RefState> {
        let key = self.key_of(id)?;
        let slot = self.tree.slot(key)?.word();
        loop {
            // Acquire: as in `get_ref`.
            let word = slot.load(Ordering::Acquire);
            if word == 0 {
                return None;
            }
            if !entry::has_ext(word) {
                return Some(RefState::Live(1));
            }
            // Acquire: as above.
            let record = self.refs.tracked(key).load(Ordering::Acquire);
            match state(record) {
                FREE => yield_now(),
                LIVE => return Some(RefState::Live(count(record))),
                PENDING => return Some(RefState::Pending(count(record))),
                _ => return None,
            }
        }
    }

    /// True if `word` (the current word of `key`) is FREE_PENDING: one bit
    /// test for untracked IDs.
    pub(crate) fn is_pending_word(&self, key: u64, word: u64) -> bool {
        entry::has_ext(word)
            // Acquire: as above.
            && state(self.refs.tracked(key).load(Ordering::Acquire)) == PENDING
    }
}

#[cfg(all(test, not(ioasid_loom)))]
mod tests {
    use super::*;
    use crate::{Domain, Space};

    #[test]
    fn a_get_past_the_maximum_is_refused_and_changes_nothing() {
        let space: Space<()> = Space::builder()
            .range(0, 3)
            .domain(Domain::new())
            .build()
            .unwrap();
        let set = space.new_set();
        let id = set.alloc(0, 3, ()).unwrap();
        set.get(id).unwrap();
        // Reaching 2^30 - 1 by gets takes a billion calls: set the count
        // just below the maximum instead.
        let record = space.inner.refs.tracked(0);
        record.store(LIVE | (MAX_REFS - 1), Ordering::SeqCst);
        assert_eq!(space.get(id), Ok(()));
        assert_eq!(space.ref_count(id), Some(MAX_REFS as usize));
        assert_eq!(space.get(id), Err(Error::Overflow));
        assert_eq!(set.get(id), Err(Error::Overflow));
        assert_eq!(
            space.ref_count(id),
            Some(MAX_REFS as usize),
            "nothing changed"
        );
        assert_eq!(space.put(id), Ok(false));
        assert_eq!(space.get(id), Ok(()), "below the maximum again");
    }

    #[test]
    fn records_are_built_lazily_and_laid_out_for_the_span() {
        assert_eq!(RefTable::new(0xFFFFF).top.len(), 1);
        assert_eq!(
            RefTable::new(1 << 32).top.len(),
            1 << (32 - CHUNK_BITS - MID_BITS)
        );
        let table = RefTable::new(1 << 32);
        assert!(table.record(u64::from(u32::MAX), false).is_none());
        let last = table.record(u64::from(u32::MAX), true).unwrap() as *const AtomicU64;
        assert_eq!(
            table.record(u64::from(u32::MAX), false).unwrap() as *const _,
            last
        );
        assert!(
            table.record(0, false).is_none(),
            "other chunks stay unbuilt"
        );
    }
}
