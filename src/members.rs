//! A set's membership index: a bitmap radix tree of the keys the set owns,
//! cleaned lazily.
//!
//! Same geometry as the ID tree (fan-out `F`, the space's levels: both
//! take it from `radix.rs`, with its typed node references) but no data
//! and no hints: inner nodes hold `F` child links, leaves one word.
//! It lets a set walk its own IDs in ascending order at a cost that grows
//! with the set, not with the space.
//!
//! INVARIANT (superset): once an alloc of the set has returned, the key's
//! bit is set for as long as the set owns the key. A bit may also be set
//! for a key the set no longer owns (*stale*): a free leaves the bit alone,
//! so an alloc+free pair costs no read-modify-write here in the steady
//! state (an alloc sets the bit only if it is clear). The walk re-checks
//! every key's owner in the ID tree, and clears the stale bits it meets:
//!
//! - an alloc publishes its entry word, issues a SeqCst fence, then reads
//!   the bit and sets it if clear ([`Members::insert_published`]);
//! - a cleaner clears the bit, issues a SeqCst fence, then re-reads the
//!   owner and sets the bit again if the set owns the key after all
//!   ([`Members::clear_stale`]).
//!
//! Dekker's pattern: either the alloc sees the clear (and sets the bit), or
//! the cleaner sees the published word (and sets it back). So no owned key
//! loses its bit.
//!
//! Cost of a walk: O(keys the set owns + stale bits), and every stale bit a
//! walk meets is cleared, so stale bits are bounded by the keys the set
//! freed since its last walk. Worst case: a set that allocated and freed
//! every key of the space and never walked walks the whole space once.
//! Nodes are created on demand by CAS and live as long as the index.
//!
//! A thread remembers the leaf word of its last insert (`RECENT`: the
//! index's serial, the key's group of `F` keys, the word), so an alloc
//! next to its thread's last one finds its word without a walk. Serials are
//! never reused, so a remembered word whose serial matches belongs to the
//! index the caller holds, and lives as long as it does; nothing shared is
//! written for it.

use crate::radix::{Fresh, Geometry, InnerNode, Level, Link, Node, Pos, Root};
use crate::sync::{atomic_array, fence, thread_local, AtomicU64, Ordering};
use std::cell::Cell;
use std::ops::ControlFlow;
use std::ptr;

/// This thread's last inserted leaf word: (index serial, key group, word);
/// serial 0 is no index's.
type Recent = (u64, u64, *const AtomicU64);

thread_local! {
    static RECENT: Cell<Recent> = Cell::new((0, 0, ptr::null()));
}

/// A serial never used before (from 1).
fn next_serial() -> u64 {
    // Not a loom atomic: a unique number, ordered with nothing.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    // Relaxed: only uniqueness matters.
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

struct BitInner<const F: usize> {
    children: [Link<BitInner<F>, F>; F],
}

impl<const F: usize> InnerNode<F> for BitInner<F> {
    /// A leaf is one word: bit `i` for key `base + i`.
    type Leaf = AtomicU64;
    fn links(&self) -> &[Link<Self, F>; F] {
        &self.children
    }
}

/// A position in the index (a node with its level).
type BitPos<'t, const F: usize> = Pos<'t, BitInner<F>, F>;

pub(crate) struct Members<const F: usize> {
    /// A `BitInner`, or the single leaf word when there is one level. Owns
    /// every node.
    root: Root<BitInner<F>, F>,
    /// Names this index in threads' `RECENT` (never reused).
    serial: u64,
}

// SAFETY: the index owns its nodes; shared mutation is through atomics only.
unsafe impl<const F: usize> Send for Members<F> {}
// SAFETY: as above.
unsafe impl<const F: usize> Sync for Members<F> {}

impl<const F: usize> Members<F> {
    const BITS: u32 = F.trailing_zeros();
    const INDEX_MASK: u64 = F as u64 - 1;

    pub(crate) fn new(span: u64) -> Self {
        let geo = Geometry::<F>::new(span);
        Members {
            root: Root::new(geo.root(), Self::new_node(geo.root())),
            serial: next_serial(),
        }
    }

    fn new_node(level: Level<F>) -> Fresh<BitInner<F>, F> {
        if level.is_leaf() {
            Fresh::Leaf(Box::new(AtomicU64::new(0)))
        } else {
            Fresh::Inner(Box::new(BitInner {
                children: atomic_array(|_| Link::empty()),
            }))
        }
    }

    /// The leaf word holding `key`, created on the way if `create`.
    fn word(&self, key: u64, create: bool) -> Option<&AtomicU64> {
        let mut node = self.root.pos();
        loop {
            match node.node() {
                Node::Leaf(word) => return Some(word),
                Node::Inner(inner) => {
                    let i = inner.level().index(key);
                    node = if create {
                        inner.child_or_install(i, Self::new_node, |_| ())
                    } else {
                        // Acquire: pairs with the Release of `install`.
                        inner.child(i, Ordering::Acquire)?
                    };
                }
            }
        }
    }

    /// Marks `key` as the set's. The caller has just published the key's
    /// entry word naming the set (see the module docs).
    #[inline]
    pub(crate) fn insert_published(&self, key: u64) {
        let group = key >> Self::BITS;
        let (serial, recent_group, recent) = RECENT.with(Cell::get);
        let word = if serial == self.serial && recent_group == group {
            // SAFETY: the serial is this index's (serials are never reused),
            // so the word is its leaf word for `group`, alive while `self` is.
            unsafe { &*recent }
        } else {
            let word = self.word(key, true).expect("created on the way");
            RECENT.with(|r| r.set((self.serial, group, word)));
            word
        };
        let bit = 1 << (key & Self::INDEX_MASK);
        // SeqCst: the alloc's half of the Dekker pattern with `clear_stale`:
        // orders the caller's publish before the bit load below.
        fence(Ordering::SeqCst);
        // Relaxed: after the fence; a set bit needs no write (steady state).
        if word.load(Ordering::Relaxed) & bit == 0 {
            // Relaxed: the walk re-checks the owner in the ID tree, which
            // orders the entry itself (Acquire there).
            word.fetch_or(bit, Ordering::Relaxed);
        }
    }

    /// Clears the bit of a key the walk found not owned by the set, unless
    /// `owned()`, asked after a SeqCst fence, says the set owns it now.
    pub(crate) fn clear_stale(&self, key: u64, owned: impl FnOnce() -> bool) {
        let Some(word) = self.word(key, false) else {
            return;
        };
        let bit = 1 << (key & Self::INDEX_MASK);
        // Relaxed: the fence below orders it before the owner re-check.
        word.fetch_and(!bit, Ordering::Relaxed);
        // SeqCst: the cleaner's half of the Dekker pattern with
        // `insert_published`.
        fence(Ordering::SeqCst);
        if owned() {
            // Relaxed: as in `insert_published`.
            word.fetch_or(bit, Ordering::Relaxed);
        }
    }

    /// True if `key`'s bit is set (for the invariant walk).
    pub(crate) fn contains(&self, key: u64) -> bool {
        // Relaxed: the invariant walk runs quiescent.
        self.word(key, false)
            .is_some_and(|word| word.load(Ordering::Relaxed) & (1 << (key & Self::INDEX_MASK)) != 0)
    }

    /// Calls `visit` for every key whose bit is set, ascending, each word read
    /// once; stops at the first `Break`.
    pub(crate) fn walk<B>(&self, mut visit: impl FnMut(u64) -> ControlFlow<B>) -> ControlFlow<B> {
        self.walk_in(self.root.pos(), 0, &mut visit)
    }

    fn walk_in<B>(
        &self,
        node: BitPos<'_, F>,
        base: u64,
        visit: &mut impl FnMut(u64) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        let inner = match node.node() {
            Node::Leaf(word) => {
                // Acquire: a bit is only a candidate; the caller re-checks
                // the owner with an Acquire load of the entry word.
                let mut bits = word.load(Ordering::Acquire);
                while bits != 0 {
                    let index = bits.trailing_zeros() as u64;
                    bits &= bits - 1;
                    visit(base + index)?;
                }
                return ControlFlow::Continue(());
            }
            Node::Inner(inner) => inner,
        };
        let shift = inner.level().shift();
        for i in 0..F {
            // Acquire: pairs with the Release of `install`.
            if let Some(child) = inner.child(i, Ordering::Acquire) {
                self.walk_in(child, base + ((i as u64) << shift), visit)?;
            }
        }
        ControlFlow::Continue(())
    }

    /// The first leaf word with a bit set for a key `>= from`: the leaf's
    /// first key and its bits, those below `from` masked off. Each call
    /// reads each word it passes once, as [`Members::walk`] does; iterators
    /// resume with `from` set to the next leaf's first key.
    pub(crate) fn next_bits(&self, from: u64) -> Option<(u64, u64)> {
        self.next_in(self.root.pos(), 0, from)
    }

    fn next_in(&self, node: BitPos<'_, F>, base: u64, from: u64) -> Option<(u64, u64)> {
        let inner = match node.node() {
            Node::Leaf(word) => {
                // Acquire: as in `walk_in` (a bit is only a candidate; the
                // caller re-checks the owner with an Acquire load).
                let mut bits = word.load(Ordering::Acquire);
                // Past this leaf only when it is the root (one level).
                if from - base >= F as u64 {
                    return None;
                }
                bits &= u64::MAX << (from - base);
                return (bits != 0).then_some((base, bits));
            }
            Node::Inner(inner) => inner,
        };
        let shift = inner.level().shift();
        let first = (from.saturating_sub(base) >> shift).min(F as u64) as usize;
        for i in first..F {
            // Acquire: pairs with the Release of `install`.
            if let Some(child) = inner.child(i, Ordering::Acquire) {
                let child_base = base + ((i as u64) << shift);
                let found = self.next_in(child, child_base, from.max(child_base));
                if found.is_some() {
                    return found;
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys<const F: usize>(m: &Members<F>) -> Vec<u64> {
        let mut out = Vec::new();
        let _ = m.walk(|k| {
            out.push(k);
            ControlFlow::<()>::Continue(())
        });
        out
    }

    #[test]
    fn walks_ascending_and_stops_early() {
        let m: Members<4> = Members::new(1000);
        for k in [999, 0, 5, 64, 63, 4] {
            m.insert_published(k);
        }
        assert_eq!(keys(&m), vec![0, 4, 5, 63, 64, 999]);
        m.clear_stale(5, || false);
        m.clear_stale(500, || false); // never inserted: no node, no effect
        m.clear_stale(63, || true); // owned again: the bit stays
        assert_eq!(keys(&m), vec![0, 4, 63, 64, 999]);
        let mut seen = Vec::new();
        let stop = m.walk(|k| {
            seen.push(k);
            if k == 63 {
                ControlFlow::Break(k)
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(stop, ControlFlow::Break(63));
        assert_eq!(seen, vec![0, 4, 63]);
    }

    /// `next_bits` finds the same keys as `walk`, from any starting key.
    #[test]
    fn next_bits_resumes_where_asked() {
        let m: Members<4> = Members::new(1000);
        let keys_in = [0u64, 3, 4, 5, 63, 64, 250, 999];
        for k in keys_in {
            m.insert_published(k);
        }
        let collect_from = |mut from: u64| {
            let mut out = Vec::new();
            while let Some((base, mut bits)) = m.next_bits(from) {
                while bits != 0 {
                    out.push(base + bits.trailing_zeros() as u64);
                    bits &= bits - 1;
                }
                from = base + 4;
            }
            out
        };
        assert_eq!(collect_from(0), keys_in.to_vec());
        assert_eq!(collect_from(5), vec![5, 63, 64, 250, 999]);
        assert_eq!(collect_from(6), vec![63, 64, 250, 999]);
        assert_eq!(collect_from(251), vec![999]);
        assert_eq!(collect_from(1000), Vec::<u64>::new());
        assert_eq!(collect_from(u64::from(u32::MAX)), Vec::<u64>::new());
    }

    #[test]
    fn single_level_index() {
        let m: Members<64> = Members::new(10);
        m.insert_published(9);
        m.insert_published(0);
        assert_eq!(keys(&m), vec![0, 9]);
        assert_eq!(m.next_bits(1), Some((0, 1 << 9)));
        assert_eq!(m.next_bits(64), None, "past the only leaf");
    }
}
