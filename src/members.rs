//! A set's membership index: a bitmap radix tree of the keys the set owns.
//!
//! Same geometry as the ID tree (fan-out `F`, the space's levels) but no
//! data and no hints: inner nodes hold `F` child pointers, leaves one word.
//! It lets a set walk its own IDs in ascending order at a cost that grows
//! with the set, not with the space.
//!
//! INVARIANT: a key's bit is set while the set owns the key, and only then,
//! except in two windows that the walk tolerates by re-checking the owner in
//! the ID tree: between an alloc setting the bit and publishing the record,
//! and between a free taking the record and clearing the bit. Nodes are
//! created on demand by CAS and live as long as the index.

use crate::sync::{atomic_array, install, AtomicPtr, AtomicU64, Ordering};
use crate::tree::levels_for;
use std::ops::ControlFlow;
use std::ptr;

struct BitInner<const F: usize> {
    children: [AtomicPtr<()>; F],
}

pub(crate) struct Members<const F: usize> {
    /// A `BitInner`, or the single leaf word when `levels == 1`.
    root: *mut (),
    levels: u32,
}

// SAFETY: the index owns its nodes; shared mutation is through atomics only.
unsafe impl<const F: usize> Send for Members<F> {}
// SAFETY: as above.
unsafe impl<const F: usize> Sync for Members<F> {}

impl<const F: usize> Members<F> {
    const BITS: u32 = F.trailing_zeros();
    const INDEX_MASK: u64 = F as u64 - 1;

    pub(crate) fn new(span: u64) -> Self {
        let levels = levels_for::<F>(span);
        Members {
            root: Self::new_node(levels == 1),
            levels,
        }
    }

    fn new_node(leaf: bool) -> *mut () {
        if leaf {
            Box::into_raw(Box::new(AtomicU64::new(0))).cast()
        } else {
            let inner: BitInner<F> = BitInner {
                children: atomic_array(|_| AtomicPtr::new(ptr::null_mut())),
            };
            Box::into_raw(Box::new(inner)).cast()
        }
    }

    fn shift(&self, level: u32) -> u32 {
        Self::BITS * (self.levels - 1 - level)
    }

    /// The leaf word holding `key`, created on the way if `create`.
    fn word(&self, key: u64, create: bool) -> Option<&AtomicU64> {
        let mut node = self.root;
        for level in 0..self.levels - 1 {
            // SAFETY: nodes above the leaf level are `BitInner`s owned by self.
            let inner = unsafe { &*node.cast::<BitInner<F>>() };
            let slot = &inner.children[((key >> self.shift(level)) & Self::INDEX_MASK) as usize];
            // Acquire: pairs with the Release of `install`.
            let mut child = slot.load(Ordering::Acquire);
            if child.is_null() {
                if !create {
                    return None;
                }
                let leaf = level + 1 == self.levels - 1;
                child = install(slot, Self::new_node(leaf), |lost| {
                    // SAFETY: our unpublished node.
                    unsafe { Self::free_node(lost, leaf) }
                });
            }
            node = child;
        }
        // SAFETY: the node at the leaf level is a leaf word owned by self.
        Some(unsafe { &*node.cast::<AtomicU64>() })
    }

    /// # Safety
    /// `node` is unreachable by any other thread; its children too.
    unsafe fn free_node(node: *mut (), leaf: bool) {
        if leaf {
            // SAFETY: leaf words are boxed `AtomicU64`s (caller's contract).
            drop(unsafe { Box::from_raw(node.cast::<AtomicU64>()) });
        } else {
            // SAFETY: inner nodes are boxed `BitInner`s (caller's contract).
            drop(unsafe { Box::from_raw(node.cast::<BitInner<F>>()) });
        }
    }

    pub(crate) fn insert(&self, key: u64) {
        let word = self.word(key, true).expect("created on the way");
        // Release: pairs with the walk's Acquire load.
        word.fetch_or(1 << (key & Self::INDEX_MASK), Ordering::Release);
    }

    pub(crate) fn remove(&self, key: u64) {
        if let Some(word) = self.word(key, false) {
            // Release: pairs with the walk's Acquire load.
            word.fetch_and(!(1 << (key & Self::INDEX_MASK)), Ordering::Release);
        }
    }

    /// Calls `visit` for every key whose bit is set, ascending, each word read
    /// once; stops at the first `Break`.
    pub(crate) fn walk<B>(&self, mut visit: impl FnMut(u64) -> ControlFlow<B>) -> ControlFlow<B> {
        self.walk_in(self.root, 0, 0, &mut visit)
    }

    fn walk_in<B>(
        &self,
        node: *mut (),
        level: u32,
        base: u64,
        visit: &mut impl FnMut(u64) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        if level == self.levels - 1 {
            // SAFETY: the node at the leaf level is a leaf word owned by self.
            let word = unsafe { &*node.cast::<AtomicU64>() };
            // Acquire: pairs with the Release in `insert`.
            let mut bits = word.load(Ordering::Acquire);
            while bits != 0 {
                let index = bits.trailing_zeros() as u64;
                bits &= bits - 1;
                visit(base + index)?;
            }
            return ControlFlow::Continue(());
        }
        // SAFETY: nodes above the leaf level are `BitInner`s owned by self.
        let inner = unsafe { &*node.cast::<BitInner<F>>() };
        let shift = self.shift(level);
        for (i, child) in inner.children.iter().enumerate() {
            // Acquire: pairs with the Release of `install`.
            let child = child.load(Ordering::Acquire);
            if !child.is_null() {
                self.walk_in(child, level + 1, base + ((i as u64) << shift), visit)?;
            }
        }
        ControlFlow::Continue(())
    }

    fn free_all(&mut self, node: *mut (), level: u32) {
        if level + 1 < self.levels {
            // SAFETY: `&mut self`: nobody else reaches the nodes.
            let inner = unsafe { &*node.cast::<BitInner<F>>() };
            let children: Vec<*mut ()> = inner
                .children
                .iter()
                // Relaxed: exclusive access.
                .map(|c| c.load(Ordering::Relaxed))
                .filter(|c| !c.is_null())
                .collect();
            for child in children {
                self.free_all(child, level + 1);
            }
        }
        // SAFETY: exclusive access; `level` tells the node's type.
        unsafe { Self::free_node(node, level + 1 == self.levels) };
    }
}

impl<const F: usize> Drop for Members<F> {
    fn drop(&mut self) {
        self.free_all(self.root, 0);
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
            m.insert(k);
        }
        assert_eq!(keys(&m), vec![0, 4, 5, 63, 64, 999]);
        m.remove(5);
        m.remove(500); // never inserted: no node, no effect
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

    #[test]
    fn single_level_index() {
        let m: Members<64> = Members::new(10);
        m.insert(9);
        m.insert(0);
        assert_eq!(keys(&m), vec![0, 9]);
    }
}
