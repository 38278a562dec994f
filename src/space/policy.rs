//! Allocation policies: which free ID a software claim takes.
//!
//! Lowest claims the lowest free key in range; Cyclic starts at the cursor
//! (the key after the last one handed out) and wraps; Any starts at the
//! calling thread's region. Every policy claims through `Tree::claim`,
//! whose free hints keep ENOSPC truthful: a key free in range for the whole
//! call is found.
//!
//! ## Cyclic: one cursor, batches only under contention
//!
//! The cursor word packs the key after the last one handed out (low 32
//! bits) and how many times the cursor went round (high 32 bits): its
//! position `round * span + key` only grows. An allocation loads it, claims
//! the lowest free key from there (wrapping), and CASes the cursor from the
//! word it loaded to the position after the key it claimed. Alone, that CAS
//! always succeeds: every call answers exactly as `xa_alloc_cyclic`, and the
//! cursor is the whole state a snapshot needs.
//!
//! A failed CAS means another thread moved the cursor meanwhile. The loser
//! takes a batch: it moves the cursor past the next `F + 1..=2F` keys (to a
//! leaf boundary, or the end of the space) and keeps them in a thread-local
//! record. It keeps the key it claimed (giving it back would make it look
//! taken to racing calls for a while: a false ENOSPC, which the loom model
//! `cyclic_batch_handoff_races_a_wrap` finds); if that key lies in the
//! batch, the batch goes on after it. Its next allocations claim the
//! lowest free key at or after its own position in the batch without
//! touching the shared cursor, so contending threads claim in leaves of
//! their own. A batch ends when it is used up, when it has no free key
//! left in the range asked for, or once the cursor has come round to it
//! again (the round in the record says which); then the thread goes back
//! to the shared cursor, except that a batch used up while other threads
//! moved the cursor (the word is no longer the one its take left) is
//! followed at once by the next batch: contention went on. A lost CAS is
//! a rare sign of contention (two threads on the shared cursor mostly
//! take turns, each one's load and CAS landing between the other's, and
//! the word's cache line moves between their cores at every allocation),
//! so without this rule a thread back from its batch would share the
//! cursor for hundreds of allocations before losing again; with it, a
//! contended thread stays on batches and touches the cursor once per
//! batch. A thread that uses up a batch with nobody else allocating is
//! back on the shared cursor, which answers exactly again.
//!
//! INVARIANT: the cursor position only grows (every store is a CAS from the
//! word loaded to a later position; restore writes a new space's cursor
//! before it is shared), and batches are disjoint ranges of positions the
//! cursor skipped. So a freed ID is handed out again before the cursor has
//! come round to it only from a batch that a thread held when the ID was
//! freed, or by a call that loaded the cursor before the cursor passed the
//! ID (a call in flight): with `T` threads allocating, at most `T` batches
//! of at most `2F` keys and `T` calls. Every claim that finds no key falls
//! back to the shared path's whole-range claim, and no claim is given back,
//! so ENOSPC stays truthful.

use super::SpaceInner;
use crate::entry::Payload;
use crate::error::Error;
use crate::sync::{thread_local, AtomicU64, Ordering};
use crate::tree::Tree;
use crate::Ioasid;
use std::cell::Cell;

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
    /// Exactly so while allocations do not overlap. Threads that race on the
    /// cursor take batches of at most twice the fan-out (128 IDs by
    /// default) and allocate in them (taking the next batch while other
    /// threads allocate beside them): a freed ID is handed out before the
    /// cursor has come round to it only from a batch a thread held when it
    /// was freed, or by a call that loaded the cursor before it passed the
    /// ID; with `T` threads, at most `T` x 129 IDs can be reused early.
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

/// The cursor word's key bits (the round is above them).
const KEY_BITS: u32 = 32;
const KEY_MASK: u64 = (1 << KEY_BITS) - 1;

/// Cyclic's cursor: the key after the last one handed out and its round,
/// packed in one word (module docs), and the serial that tells this space's
/// batches from other spaces' in a thread's record.
pub(crate) struct Cursor {
    word: AtomicU64,
    serial: u64,
}

impl Cursor {
    pub(crate) fn new() -> Self {
        static NEXT_SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Cursor {
            word: AtomicU64::new(0),
            // Relaxed: only uniqueness matters.
            serial: NEXT_SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// The key a Cyclic allocation starts from (what a snapshot keeps).
    pub(crate) fn load(&self, order: Ordering) -> u64 {
        self.word.load(order) & KEY_MASK
    }

    /// Sets the key a Cyclic allocation starts from (a restore, before the
    /// space is shared): round 0.
    pub(crate) fn store(&self, key: u64, order: Ordering) {
        debug_assert!(key <= KEY_MASK);
        self.word.store(key, order)
    }
}

/// The cursor word after `word` once `key` was handed out from it: the
/// position after `key`, a round later if the claim wrapped below the
/// cursor's key or `key` is the last of the space.
#[inline]
fn word_after(word: u64, key: u64, span: u64) -> u64 {
    let round = word >> KEY_BITS;
    let round = if key < word & KEY_MASK {
        round + 1
    } else {
        round
    };
    if key + 1 >= span {
        ((round + 1) & KEY_MASK) << KEY_BITS
    } else {
        ((round & KEY_MASK) << KEY_BITS) | (key + 1)
    }
}

/// A thread's Cyclic batch: keys `next..end` of round `round` of the space
/// whose cursor has `serial` (0: none). `next == end`: used up, kept until
/// the thread's next allocation decides whether to take another.
#[derive(Clone, Copy)]
struct Batch {
    serial: u64,
    round: u64,
    next: u64,
    end: u64,
    /// The cursor word the take left: still there when the batch is used
    /// up means no other thread allocated meanwhile.
    taken: u64,
}

const NO_BATCH: Batch = Batch {
    serial: 0,
    round: 0,
    next: 0,
    end: 0,
    taken: 0,
};

/// What a claim from the thread's batch came to.
enum FromBatch<'t> {
    /// A key of the batch, claimed.
    Claimed((u64, &'t AtomicU64)),
    /// The batch is used up and other threads moved the cursor meanwhile:
    /// they still allocate beside this one, so it takes the next batch.
    UsedUpContended,
    /// No batch (any more): claim from the shared cursor.
    Shared,
}

thread_local! {
    /// Policy `Cyclic`: this thread's batch, taken when its cursor CAS lost
    /// (or its last batch was used up while others allocated).
    static CYCLIC_BATCH: Cell<Batch> = Cell::new(NO_BATCH);
}

/// Cyclic claims, on the tree and the cursor alone.
impl Cursor {
    /// The claim of a Cyclic allocation in keys `lo..=hi`: from this
    /// thread's batch if it holds a live one with a free key in range, else
    /// from the shared cursor (module docs). The path of a thread with no
    /// batch whose cursor CAS succeeds is the one inlined here.
    #[inline]
    fn claim<'t, const F: usize>(
        &self,
        tree: &'t Tree<F>,
        lo: u64,
        hi: u64,
    ) -> Option<(u64, &'t AtomicU64)> {
        if CYCLIC_BATCH.with(Cell::get).serial == self.serial {
            return self.claim_contended(tree, lo, hi, None);
        }
        // Relaxed: the cursor is a starting hint (claims decide, by the
        // tree's CAS on claim words); its CAS below orders nothing else.
        let seen = self.word.load(Ordering::Relaxed);
        let found = self.claim_at(tree, seen, lo, hi)?;
        let after = word_after(seen, found.0, tree.span());
        // Relaxed: as the load. Alone, this always succeeds.
        match self
            .word
            .compare_exchange(seen, after, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => {
                tree.cursor_at((seen & KEY_MASK).wrapping_sub(1), found.0);
                Some(found)
            }
            Err(_) => self.claim_contended(tree, lo, hi, Some(found)),
        }
    }

    /// The claim from the cursor word `seen`: the lowest free key after it,
    /// wrapping to `lo`.
    #[inline]
    fn claim_at<'t, const F: usize>(
        &self,
        tree: &'t Tree<F>,
        seen: u64,
        lo: u64,
        hi: u64,
    ) -> Option<(u64, &'t AtomicU64)> {
        let cursor = seen & KEY_MASK;
        // Past the requested range, "after the last one" wraps to lo.
        let start = if cursor > hi { lo } else { cursor.max(lo) };
        claim_from(tree, start, lo, hi)
    }

    /// [`Cursor::claim`] for a thread that holds a batch (`lost` `None`),
    /// or whose cursor CAS just failed (`lost`: the claim it made).
    #[cold]
    #[inline(never)]
    fn claim_contended<'t, const F: usize>(
        &self,
        tree: &'t Tree<F>,
        lo: u64,
        hi: u64,
        mut lost: Option<(u64, &'t AtomicU64)>,
    ) -> Option<(u64, &'t AtomicU64)> {
        loop {
            if let Some(found) = lost.take() {
                // The claim is kept (module docs); the next call of this
                // thread starts in its batch.
                self.take_batch(tree, Some(found.0));
                return Some(found);
            }
            // Relaxed: as in `claim`.
            let seen = self.word.load(Ordering::Relaxed);
            match self.claim_in_batch(tree, seen, lo, hi) {
                FromBatch::Claimed(found) => return Some(found),
                FromBatch::UsedUpContended if self.take_batch(tree, None) => continue,
                FromBatch::UsedUpContended | FromBatch::Shared => {}
            }
            let found = self.claim_at(tree, seen, lo, hi)?;
            let after = word_after(seen, found.0, tree.span());
            // Relaxed: as in `claim`.
            match self
                .word
                .compare_exchange(seen, after, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    tree.cursor_at((seen & KEY_MASK).wrapping_sub(1), found.0);
                    return Some(found);
                }
                Err(_) => lost = Some(found),
            }
        }
    }

    /// A claim from this thread's batch of this space (`seen`: the cursor
    /// word). The batch ends (and the claim goes to the shared cursor) when
    /// the thread holds none, when the cursor has come round to the batch
    /// or left it outside its window, when the batch has no free key in
    /// `lo..=hi` at or after its position, or when it is used up with the
    /// cursor word where the take left it (used up with the word moved: the
    /// caller takes the next batch); a range that misses the batch keeps
    /// it.
    #[inline]
    fn claim_in_batch<'t, const F: usize>(
        &self,
        tree: &'t Tree<F>,
        seen: u64,
        lo: u64,
        hi: u64,
    ) -> FromBatch<'t> {
        let batch = CYCLIC_BATCH.with(Cell::get);
        if batch.serial != self.serial {
            return FromBatch::Shared;
        }
        self.claim_in_held(tree, batch, seen, lo, hi)
    }

    #[cold]
    #[inline(never)]
    fn claim_in_held<'t, const F: usize>(
        &self,
        tree: &'t Tree<F>,
        mut batch: Batch,
        seen: u64,
        lo: u64,
        hi: u64,
    ) -> FromBatch<'t> {
        if batch.next >= batch.end {
            CYCLIC_BATCH.with(|b| b.set(NO_BATCH));
            return if seen == batch.taken {
                FromBatch::Shared
            } else {
                FromBatch::UsedUpContended
            };
        }
        let behind = (seen >> KEY_BITS).wrapping_sub(batch.round) & KEY_MASK;
        // Live while the cursor is in the batch's round, or in the next one
        // but not yet at the batch's position.
        let live = behind == 0 || (behind == 1 && seen & KEY_MASK < batch.next);
        // A reclaiming tree retires chunks that fall out of the cursor's
        // window: a batch left that far behind ends.
        let near = tree.near_cursor(seen & KEY_MASK, batch.next);
        if !live || !near {
            CYCLIC_BATCH.with(|b| b.set(NO_BATCH));
            return FromBatch::Shared;
        }
        let (first, last) = (batch.next.max(lo), (batch.end - 1).min(hi));
        if first > last {
            return FromBatch::Shared; // the range misses the batch: keep it
        }
        let Some(found) = tree.claim(first, last) else {
            CYCLIC_BATCH.with(|b| b.set(NO_BATCH));
            return FromBatch::Shared;
        };
        batch.next = found.0 + 1;
        CYCLIC_BATCH.with(|b| b.set(batch));
        FromBatch::Claimed(found)
    }

    /// After a lost cursor CAS, or a batch used up while others allocated:
    /// moves the cursor past a batch of `F + 1..=2F` keys from where it is
    /// now (ending at a leaf boundary or the end of the space) and records
    /// the batch for this thread; `claimed` (the key a lost CAS keeps) is
    /// behind the batch's position if inside it. False if no batch was
    /// taken (the cursor moved under each of a few tries).
    #[cold]
    #[inline(never)]
    fn take_batch<const F: usize>(&self, tree: &Tree<F>, claimed: Option<u64>) -> bool {
        let (span, f) = (tree.span(), F as u64);
        // Relaxed: as in `claim`.
        let mut word = self.word.load(Ordering::Relaxed);
        // A few tries: each failure means other threads moved the cursor;
        // with no batch, the next call starts from the shared cursor again.
        for _ in 0..4 {
            let (round, start) = (word >> KEY_BITS, word & KEY_MASK);
            let end = (start - start % f + 2 * f).min(span);
            let after = if end >= span {
                ((round + 1) & KEY_MASK) << KEY_BITS
            } else {
                (round << KEY_BITS) | end
            };
            // Relaxed: as in `claim`; the batch is this thread's alone
            // because the CAS moved the cursor past it.
            match self
                .word
                .compare_exchange(word, after, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    let next = match claimed {
                        Some(key) if (start..end).contains(&key) => key + 1,
                        _ => start,
                    };
                    CYCLIC_BATCH.with(|b| {
                        b.set(Batch {
                            serial: self.serial,
                            round,
                            next,
                            end,
                            taken: after,
                        })
                    });
                    // The cursor's last position is now the batch's end.
                    tree.cursor_at(u64::MAX, end - 1);
                    return true;
                }
                Err(now) => word = now,
            }
        }
        false
    }
}

/// Claims in `start..=hi`, then in `lo..start`.
fn claim_from<const F: usize>(
    tree: &Tree<F>,
    start: u64,
    lo: u64,
    hi: u64,
) -> Option<(u64, &AtomicU64)> {
    tree.claim(start, hi).or_else(|| {
        if start > lo {
            tree.claim(lo, start - 1)
        } else {
            None
        }
    })
}

impl<T: Payload, const F: usize> SpaceInner<T, F> {
    pub(super) fn claim_by_policy(
        &self,
        lo: Ioasid,
        hi: Ioasid,
    ) -> Result<(Ioasid, &AtomicU64), Error> {
        let (lo, hi) = (u64::from(lo - self.min), u64::from(hi - self.min));
        let (key, slot) = match self.policy {
            Policy::Lowest => self.tree.claim(lo, hi),
            Policy::Cyclic => self.cursor.claim(&self.tree, lo, hi),
            Policy::Any => {
                // The thread's own region (a leaf-aligned start from its
                // seed): a function of the range and the thread alone, no
                // history, so a restored space answers as the original
                // (snapshot.rs). A thread that frees and allocates again
                // finds the same key (hot in cache); the free hints skip
                // full leaves past the start.
                let region = (thread_seed() >> 16) % (hi - lo + 1);
                claim_from(&self.tree, lo + region - region % F as u64, lo, hi)
            }
        }
        .ok_or(Error::NoSpace)?;
        Ok((self.id_of(key), slot))
    }
}

#[cfg(all(test, not(ioasid_loom)))]
mod tests {
    use crate::fanout::{Set, Space};
    use crate::{Domain, Policy};
    use std::sync::atomic::Ordering;

    fn cyclic() -> Space<u32, 4> {
        Space::builder()
            .range(0, 63)
            .policy(Policy::Cyclic)
            .domain(Domain::new())
            .build()
            .unwrap()
    }

    /// On a fresh [`cyclic`] space: 0 allocated, then a lost race's batch
    /// (keys 1..8, the cursor at 8) and 1 allocated from it.
    fn batch_after_0(space: &Space<u32, 4>, set: &Set<u32, 4>) {
        assert_eq!(set.alloc(0, 63, 0), Ok(0));
        let cursor = &space.inner.cursor;
        cursor.take_batch(&space.inner.tree, Some(0));
        assert_eq!(cursor.load(Ordering::Relaxed), 8, "the batch is 1..8");
        assert_eq!(set.alloc(0, 63, 0), Ok(1));
    }

    /// A lost cursor CAS, step by step on one thread: the batch is the
    /// keys up to the second leaf boundary, the cursor skips them, the
    /// thread allocates in it in order without reusing what it freed, a
    /// thread with no batch follows the cursor; used up after another
    /// thread allocated, the next batch follows at once, and used up with
    /// nobody else allocating, the thread is back on the shared cursor.
    #[test]
    fn a_batch_is_taken_used_in_order_and_ended() {
        let space = cyclic();
        let set = space.new_set();
        for id in 0..3 {
            assert_eq!(set.alloc(0, 63, 0), Ok(id));
        }
        let cursor = &space.inner.cursor;
        cursor.take_batch(&space.inner.tree, None);
        assert_eq!(cursor.load(Ordering::Relaxed), 8, "the batch is 3..8");
        assert_eq!(set.alloc(0, 63, 0), Ok(3));
        assert_eq!(set.alloc(0, 63, 0), Ok(4));
        set.free(3).unwrap();
        assert_eq!(set.alloc(0, 63, 0), Ok(5), "not 3: the batch goes on");
        let other = std::thread::scope(|s| s.spawn(|| set.alloc(0, 63, 0)).join().unwrap());
        assert_eq!(other, Ok(8), "a thread with no batch follows the cursor");
        assert_eq!(set.alloc(0, 63, 0), Ok(6));
        assert_eq!(set.alloc(0, 63, 0), Ok(7));
        // Used up after another thread allocated (8): contention went on,
        // so the next batch at once.
        assert_eq!(set.alloc(0, 63, 0), Ok(9), "the next batch, 9..16");
        assert_eq!(cursor.load(Ordering::Relaxed), 16);
        for id in 10..16 {
            assert_eq!(set.alloc(0, 63, 0), Ok(id));
        }
        assert_eq!(
            set.alloc(0, 63, 0),
            Ok(16),
            "used up with nobody else allocating: the shared cursor"
        );
        assert_eq!(cursor.load(Ordering::Relaxed), 17);
        assert_eq!(set.alloc(0, 63, 0), Ok(17), "and the cursor it stays");
        // A range that misses the batch leaves it for later.
        cursor.take_batch(&space.inner.tree, Some(17));
        assert_eq!(cursor.load(Ordering::Relaxed), 24, "the batch is 18..24");
        assert_eq!(set.alloc(30, 40, 0), Ok(30));
        assert_eq!(cursor.load(Ordering::Relaxed), 31);
        assert_eq!(
            set.alloc(0, 63, 0),
            Ok(18),
            "past 17, which the lost call kept"
        );
        space.check_invariants().unwrap();
    }

    /// A batch ends once the cursor has come round to it: the thread then
    /// answers from the cursor again (its batch's keys were passed).
    #[test]
    fn a_batch_ends_when_the_cursor_comes_round() {
        let space = cyclic();
        let set = space.new_set();
        batch_after_0(&space, &set);
        let cursor = &space.inner.cursor;
        set.free(1).unwrap();
        // Another thread takes the cursor round, past the batch's position.
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut last = 0;
                while !(2..8).contains(&last) {
                    last = set.alloc(0, 63, 0).unwrap();
                    set.free(last).unwrap();
                }
                assert_eq!(last, 2, "round again: 1 was free, then 2");
            });
        });
        // The cursor is at 3 in the next round: the batch (next 2) is over.
        assert_eq!(set.alloc(0, 63, 0), Ok(3));
        // And a batch that reaches the end of the space wraps the cursor.
        for _ in 0..56 {
            let id = set.alloc(0, 63, 0).unwrap();
            set.free(id).unwrap();
        }
        assert_eq!(cursor.load(Ordering::Relaxed), 60);
        cursor.take_batch(&space.inner.tree, None);
        assert_eq!(cursor.load(Ordering::Relaxed), 0, "60..64, then round");
        assert_eq!(set.alloc(0, 63, 0), Ok(60));
        space.check_invariants().unwrap();
    }

    /// A batch ends once the shared cursor is two chunks past it (a Cyclic
    /// tree retires chunks that leave the cursor's window): the thread
    /// follows the cursor again instead of claiming behind it.
    #[test]
    fn a_batch_two_chunks_behind_the_cursor_ends() {
        // Fan-out 4: chunks of 16 keys.
        let space = cyclic();
        let set = space.new_set();
        batch_after_0(&space, &set);
        // Another thread takes the cursor into chunk 1: the batch is one
        // chunk behind, still in the window.
        let follow = |to: u32| {
            std::thread::scope(|s| {
                s.spawn(|| loop {
                    let id = set.alloc(0, 63, 0).unwrap();
                    set.free(id).unwrap();
                    if id == to {
                        break;
                    }
                });
            })
        };
        follow(20);
        assert_eq!(set.alloc(0, 63, 0), Ok(2), "one chunk behind: the batch");
        // Into chunk 2: the batch (chunk 0) is out of the window.
        follow(33);
        assert_eq!(set.alloc(0, 63, 0), Ok(34), "two chunks behind: the cursor");
        assert_eq!(space.chunks_reclaimed(), 0, "chunk 0 holds 0, 1 and 2");
        space.check_invariants().unwrap();
    }

    /// A lost race keeps its key, behind the cursor or ahead of it; the
    /// batch goes on after the key when the key lies in it.
    #[test]
    fn a_lost_race_keeps_its_key() {
        let space = cyclic();
        let set = space.new_set();
        for id in 0..5 {
            assert_eq!(set.alloc(0, 63, 0), Ok(id));
        }
        let cursor = &space.inner.cursor;
        // As if a call had claimed 9 from a stale cursor while others moved
        // the cursor to 5: 9 lies in the batch, which goes on after it.
        cursor.take_batch(&space.inner.tree, Some(9));
        assert_eq!(cursor.load(Ordering::Relaxed), 12, "batch 5..12");
        assert_eq!(set.alloc(0, 63, 0), Ok(10), "past the kept 9");
        // A key claimed behind the batch: the batch starts at its start.
        cursor.take_batch(&space.inner.tree, Some(1));
        assert_eq!(cursor.load(Ordering::Relaxed), 20, "batch 12..20");
        assert_eq!(set.alloc(0, 63, 0), Ok(12));
        space.check_invariants().unwrap();
    }
}
