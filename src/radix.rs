//! The radix geometry shared by the ID tree (`tree.rs`) and the membership
//! index (`members.rs`), and the typed node references both walk with.
//!
//! # Geometry
//!
//! A radix tree of fan-out `F` (a power of two in `2..=64`) over the keys
//! `0..span` has [`levels_for`] levels of `log2(F)` key bits each. A node's
//! [`Level`] is the shift of its child index in a key: the leaf level has
//! shift 0, the level above it (a *chunk*, `F^2` keys) shift `log2(F)`, the
//! root `log2(F) * (levels - 1)`. Walks count the shift down.
//!
//! # Typed node references
//!
//! Inner nodes (an [`InnerNode`]: `F` [`Link`]s and whatever the tree adds)
//! and leaves are different types, and a child pointer does not say which
//! it points to: its level does. A walk therefore never holds a bare
//! pointer: it holds a [`Pos`] (a node with its level), and
//! [`Pos::node`] is the one place that turns a pointer into a typed
//! [`Node`], from the level. Nothing outside this module casts a node
//! pointer.
//!
//! INVARIANT (typing): a `Pos` at level `lv` points at a live `N` when
//! `lv` is not the leaf level and at a live `N::Leaf` when it is; a
//! non-null `Link` of an inner node at level `lv` points at a node of level
//! `lv.child()`. Both are established here only: a [`Root`] is made with a
//! node of its level, a child is installed only after checking that the
//! fresh node's kind is the one its level wants ([`InnerAt::child_or_install`])
//! or is linked by its parent at the parent's making ([`Link::with_leaf`]),
//! and a `Pos` of a child is made only from its parent's level. Nodes are
//! freed only by [`Root`]'s drop (exclusive access), or, never published,
//! by the loser of an install race; so a `Pos` borrowed from a root stays
//! valid for that borrow.
//!
//! INVARIANT (ownership): an inner node either owns its children (each a
//! box of its own, freed by [`Root`]'s drop) or, when
//! [`InnerNode::owns_leaves`] says not, has leaves for children that live in
//! storage of its own, freed with it (the ID tree's leaf blocks).

use crate::sync::{install, AtomicPtr, Ordering};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

/// The most levels a tree can have: fan-out 2 over 32-bit keys.
pub(crate) const MAX_LEVELS: usize = 32;

/// Bits `first..=last` of a word.
#[inline]
pub(crate) fn bit_range(first: usize, last: usize) -> u64 {
    debug_assert!(first <= last && last < 64);
    (u64::MAX >> (63 - last)) & (u64::MAX << first)
}

/// Bits `0..n` of a word (`n <= 64`).
#[inline]
pub(crate) const fn low_bits(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// The number of levels a radix tree of fan-out `F` needs for `span` keys.
pub(crate) fn levels_for<const F: usize>(span: u64) -> u32 {
    let bits = F.trailing_zeros();
    let key_bits = 64 - (span.max(2) - 1).leading_zeros();
    key_bits.div_ceil(bits).max(1)
}

/// Checks, at compile time, that `F` is a fan-out the trees support.
pub(crate) const fn assert_fanout<const F: usize>() {
    assert!(
        F.is_power_of_two() && F >= 2 && F <= 64,
        "fan-out must be a power of two in 2..=64"
    );
}

/// A node's level, as the shift of its child index in a key (0: a leaf).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Level<const F: usize> {
    shift: u32,
}

impl<const F: usize> Level<F> {
    /// Key bits per level.
    pub(crate) const BITS: u32 = F.trailing_zeros();
    /// Mask of one level's index.
    pub(crate) const INDEX_MASK: u64 = F as u64 - 1;
    /// The leaf level.
    pub(crate) const LEAF: Self = Level { shift: 0 };
    /// The last inner level: a node there (a *chunk*) covers `F^2` keys.
    pub(crate) const CHUNK: Self = Level { shift: Self::BITS };

    /// True at the leaf level.
    #[inline]
    pub(crate) fn is_leaf(self) -> bool {
        self.shift == 0
    }

    /// The shift of this level's child index in a key.
    #[inline]
    pub(crate) fn shift(self) -> u32 {
        self.shift
    }

    /// The level of this (inner) level's children.
    #[inline]
    pub(crate) fn child(self) -> Self {
        debug_assert!(!self.is_leaf());
        Level {
            shift: self.shift - Self::BITS,
        }
    }

    /// The index of `key`'s child (or, at a leaf, of its slot) at this level.
    #[inline]
    pub(crate) fn index(self, key: u64) -> usize {
        ((key >> self.shift) & Self::INDEX_MASK) as usize
    }

    /// Keys below one child (or slot) of a node at this level.
    #[inline]
    pub(crate) fn child_keys(self) -> u64 {
        1 << self.shift
    }
}

/// The shape of a radix tree of fan-out `F` over keys `0..span`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry<const F: usize> {
    levels: u32,
    span: u64,
}

impl<const F: usize> Geometry<F> {
    /// Key bits per level.
    pub(crate) const BITS: u32 = F.trailing_zeros();
    /// Keys per chunk (a node of the last inner level): `F^2`.
    pub(crate) const CHUNK_BITS: u32 = 2 * Self::BITS;
    pub(crate) const CHUNK: u64 = 1 << Self::CHUNK_BITS;

    /// The geometry for `span` keys (`span >= 1`).
    pub(crate) fn new(span: u64) -> Self {
        const { assert_fanout::<F>() };
        Geometry {
            levels: levels_for::<F>(span),
            span,
        }
    }

    /// Number of levels.
    pub(crate) fn levels(&self) -> u32 {
        self.levels
    }

    /// Number of keys.
    pub(crate) fn span(&self) -> u64 {
        self.span
    }

    /// The level of the node at `depth` (0: the root).
    #[inline]
    pub(crate) fn at_depth(&self, depth: u32) -> Level<F> {
        debug_assert!(depth < self.levels);
        Level {
            shift: Self::BITS * (self.levels - 1 - depth),
        }
    }

    /// The root's level.
    #[inline]
    pub(crate) fn root(&self) -> Level<F> {
        self.at_depth(0)
    }

    /// The valid children (or, at a leaf, keys) of the node at `level` over
    /// keys from `base`: those below the span.
    #[inline]
    pub(crate) fn valid_mask(&self, level: Level<F>, base: u64) -> u64 {
        let remaining = (self.span - base).div_ceil(level.child_keys());
        low_bits(remaining.min(F as u64) as usize)
    }
}

/// An inner node type: `F` child links, and whatever else the tree keeps
/// beside them (the ID tree's free hint).
pub(crate) trait InnerNode<const F: usize>: Sized {
    /// The leaf type of the same tree.
    type Leaf;
    /// The child links.
    fn links(&self) -> &[Link<Self, F>; F];
    /// False when the node's children are leaves in storage of its own
    /// (made with [`Link::with_leaf`], freed with the node): [`Root`]'s drop
    /// then leaves them to the node.
    fn owns_leaves(&self) -> bool {
        true
    }
}

/// A child pointer of an inner node of type `N`: null, an `N` or an
/// `N::Leaf`, which one told by the level (module docs, typing invariant).
pub(crate) struct Link<N, const F: usize> {
    ptr: AtomicPtr<()>,
    _node: PhantomData<fn() -> N>,
}

impl<N: InnerNode<F>, const F: usize> Link<N, F> {
    /// An empty link.
    pub(crate) fn empty() -> Self {
        Link {
            ptr: AtomicPtr::new(ptr::null_mut()),
            _node: PhantomData,
        }
    }

    /// A link holding `leaf`, for a node that keeps its leaves itself.
    ///
    /// # Safety
    /// The link belongs to a node at [`Level::CHUNK`] (its children are
    /// leaves) whose [`InnerNode::owns_leaves`] is false, and `leaf` lives
    /// as long as that node.
    pub(crate) unsafe fn with_leaf(leaf: NonNull<N::Leaf>) -> Self {
        Link {
            ptr: AtomicPtr::new(leaf.as_ptr().cast()),
            _node: PhantomData,
        }
    }

    /// The node this link holds, read as a node of `level`.
    ///
    /// # Safety
    /// A non-null pointer in this link is a node of `level` that stays
    /// alive for `'t`.
    #[inline]
    pub(crate) unsafe fn load_at<'t>(
        &'t self,
        level: Level<F>,
        order: Ordering,
    ) -> Option<Pos<'t, N, F>> {
        NonNull::new(self.ptr.load(order)).map(|ptr| Pos {
            ptr,
            level,
            _tree: PhantomData,
        })
    }

    /// The raw pointer (tests that corrupt an index on purpose).
    #[cfg(test)]
    pub(crate) fn raw(&self) -> *mut () {
        self.ptr.load(Ordering::Relaxed)
    }

    /// Replaces the raw pointer (tests that corrupt an index on purpose).
    ///
    /// # Safety
    /// `ptr` is null or a node of the level this link's readers load it at.
    #[cfg(test)]
    pub(crate) unsafe fn swap_raw(&self, ptr: *mut ()) -> *mut () {
        self.ptr.swap(ptr, Ordering::Relaxed)
    }

    /// Publishes `node` in this link, which must be empty (a link outside
    /// the tree, such as a directory entry: its reader's `load_at` contract
    /// is the writer's to keep). Release: publishes the node's contents.
    pub(crate) fn publish(&self, node: Pos<'_, N, F>) {
        self.ptr.store(node.ptr.as_ptr(), Ordering::Release);
    }
}

/// A freshly made node, not yet published.
pub(crate) enum Fresh<N: InnerNode<F>, const F: usize> {
    Inner(Box<N>),
    Leaf(Box<N::Leaf>),
}

impl<N: InnerNode<F>, const F: usize> Fresh<N, F> {
    /// The node as a raw pointer, checked against the level it is for (an
    /// assert, not a debug one: the typing invariant rests on it).
    fn into_raw(self, level: Level<F>) -> *mut () {
        match self {
            Fresh::Inner(node) => {
                assert!(!level.is_leaf(), "an inner node made for the leaf level");
                Box::into_raw(node).cast()
            }
            Fresh::Leaf(leaf) => {
                assert!(level.is_leaf(), "a leaf made for an inner level");
                Box::into_raw(leaf).cast()
            }
        }
    }
}

/// A node of a tree borrowed for `'t`, with its level.
pub(crate) struct Pos<'t, N, const F: usize> {
    ptr: NonNull<()>,
    level: Level<F>,
    _tree: PhantomData<&'t N>,
}

impl<N, const F: usize> Clone for Pos<'_, N, F> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<N, const F: usize> Copy for Pos<'_, N, F> {}

/// A node, typed: an inner node with its level, or a leaf.
pub(crate) enum Node<'t, N: InnerNode<F>, const F: usize> {
    Inner(InnerAt<'t, N, F>),
    Leaf(&'t N::Leaf),
}

impl<'t, N: InnerNode<F>, const F: usize> Pos<'t, N, F> {
    /// The node, typed by its level.
    #[inline]
    pub(crate) fn node(self) -> Node<'t, N, F> {
        if self.level.is_leaf() {
            // SAFETY: a `Pos` at the leaf level points at a leaf alive for
            // `'t` (typing invariant).
            Node::Leaf(unsafe { self.ptr.cast::<N::Leaf>().as_ref() })
        } else {
            Node::Inner(InnerAt {
                // SAFETY: a `Pos` above the leaf level points at an inner
                // node alive for `'t` (typing invariant).
                node: unsafe { self.ptr.cast::<N>().as_ref() },
                level: self.level,
            })
        }
    }

    /// The node's level.
    #[inline]
    pub(crate) fn level(self) -> Level<F> {
        self.level
    }

    /// The node's address, for identity checks and messages.
    pub(crate) fn addr(self) -> *const () {
        self.ptr.as_ptr()
    }

    /// The node as an inner node; `None` for a leaf.
    #[inline]
    pub(crate) fn inner(self) -> Option<InnerAt<'t, N, F>> {
        match self.node() {
            Node::Inner(inner) => Some(inner),
            Node::Leaf(_) => None,
        }
    }

    /// The node as a leaf; `None` for an inner node.
    #[inline]
    pub(crate) fn leaf(self) -> Option<&'t N::Leaf> {
        match self.node() {
            Node::Leaf(leaf) => Some(leaf),
            Node::Inner(_) => None,
        }
    }
}

/// An inner node with its level.
pub(crate) struct InnerAt<'t, N, const F: usize> {
    node: &'t N,
    level: Level<F>,
}

impl<N, const F: usize> Clone for InnerAt<'_, N, F> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<N, const F: usize> Copy for InnerAt<'_, N, F> {}

impl<N, const F: usize> std::ops::Deref for InnerAt<'_, N, F> {
    type Target = N;
    fn deref(&self) -> &N {
        self.node
    }
}

impl<'t, N: InnerNode<F>, const F: usize> InnerAt<'t, N, F> {
    /// The node itself, for the tree's lifetime.
    #[inline]
    pub(crate) fn get(self) -> &'t N {
        self.node
    }

    /// The node's level.
    #[inline]
    pub(crate) fn level(self) -> Level<F> {
        self.level
    }

    /// Child `i`, or `None` if it is not installed. `order`: the load's
    /// ordering (Acquire pairs with the Release of the install, so the
    /// child's initialised contents are visible).
    #[inline]
    pub(crate) fn child(self, i: usize, order: Ordering) -> Option<Pos<'t, N, F>> {
        // SAFETY: a link of a node at `level` holds nodes of
        // `level.child()`, alive as long as the node (typing invariant).
        unsafe { self.node.links()[i].load_at(self.level.child(), order) }
    }

    /// Child `i`, installed first if missing with a node from `make` (given
    /// the child's level); the loser of an install race drops its node.
    /// `installed` is called with the child after an install (ours or the
    /// winner's), before the child is returned: for indexes beside the tree
    /// (the ID tree's chunk directory).
    #[inline]
    pub(crate) fn child_or_install(
        self,
        i: usize,
        make: impl FnOnce(Level<F>) -> Fresh<N, F>,
        installed: impl FnOnce(Pos<'t, N, F>),
    ) -> Pos<'t, N, F> {
        // Acquire: pairs with the Release of `install`.
        let ptr = match self.child(i, Ordering::Acquire) {
            Some(child) => child.ptr,
            None => self.install_child(i, make, installed),
        };
        // The level from the parent's, not from the out-of-line install:
        // callers that know the level statically fold the typing branch.
        Pos {
            ptr,
            level: self.level.child(),
            _tree: PhantomData,
        }
    }

    /// The out-of-line half of [`InnerAt::child_or_install`]: rare.
    #[cold]
    #[inline(never)]
    fn install_child(
        self,
        i: usize,
        make: impl FnOnce(Level<F>) -> Fresh<N, F>,
        installed: impl FnOnce(Pos<'t, N, F>),
    ) -> NonNull<()> {
        let level = self.level.child();
        let fresh = make(level).into_raw(level);
        let ptr = install(&self.node.links()[i].ptr, fresh, |lost| {
            // SAFETY: our unpublished node of `level` (checked by
            // `into_raw`); it has no children, nobody else saw it.
            unsafe { drop_one::<N, F>(lost, level) }
        });
        // `install` returns the slot's node, ours or the winner's: not null.
        let ptr = NonNull::new(ptr).expect("installed");
        installed(Pos {
            ptr,
            level,
            _tree: PhantomData,
        });
        ptr
    }
}

/// Frees one node (not its children).
///
/// # Safety
/// `ptr` is a node of `level` made by `Fresh::into_raw`, that nobody else
/// can reach.
unsafe fn drop_one<N: InnerNode<F>, const F: usize>(ptr: *mut (), level: Level<F>) {
    if level.is_leaf() {
        // SAFETY: the caller's contract: a boxed leaf.
        drop(unsafe { Box::from_raw(ptr.cast::<N::Leaf>()) });
    } else {
        // SAFETY: the caller's contract: a boxed inner node.
        drop(unsafe { Box::from_raw(ptr.cast::<N>()) });
    }
}

/// The owner of a tree's nodes: its root, never null. Dropping it frees
/// every node (after the owner has done with what the leaves hold).
pub(crate) struct Root<N: InnerNode<F>, const F: usize> {
    ptr: NonNull<()>,
    level: Level<F>,
    _owns: PhantomData<(Box<N>, Box<N::Leaf>)>,
}

impl<N: InnerNode<F>, const F: usize> Root<N, F> {
    /// A root at `level` made of `node`.
    pub(crate) fn new(level: Level<F>, node: Fresh<N, F>) -> Self {
        let ptr = node.into_raw(level);
        Root {
            ptr: NonNull::new(ptr).expect("a box is never null"),
            level,
            _owns: PhantomData,
        }
    }

    /// The root as a position to walk from.
    #[inline]
    pub(crate) fn pos(&self) -> Pos<'_, N, F> {
        Pos {
            ptr: self.ptr,
            level: self.level,
            _tree: PhantomData,
        }
    }

    /// A position of this tree kept without a borrow (such as a subtree
    /// a walk starts at), to be resumed by [`Root::resume`].
    pub(crate) fn anchor(pos: Pos<'_, N, F>) -> Anchor<N, F> {
        Anchor {
            ptr: pos.ptr,
            level: pos.level,
            _node: PhantomData,
        }
    }

    /// The position `anchor` names, borrowed from this root.
    ///
    /// # Safety
    /// `anchor` was made from a position of this root's tree.
    #[inline]
    pub(crate) unsafe fn resume(&self, anchor: Anchor<N, F>) -> Pos<'_, N, F> {
        Pos {
            ptr: anchor.ptr,
            level: anchor.level,
            _tree: PhantomData,
        }
    }
}

impl<N: InnerNode<F>, const F: usize> Drop for Root<N, F> {
    fn drop(&mut self) {
        /// Frees `pos` and everything below it.
        ///
        /// # Safety
        /// Nobody else can reach `pos` or anything below it.
        unsafe fn free<N: InnerNode<F>, const F: usize>(pos: Pos<'_, N, F>) {
            // A node that keeps its leaves itself frees them in its own drop
            // (ownership invariant).
            if let Some(inner) = pos.inner().filter(|inner| inner.owns_leaves()) {
                for i in 0..F {
                    // Relaxed: exclusive access.
                    if let Some(child) = inner.child(i, Ordering::Relaxed) {
                        // SAFETY: children of an unreachable node are unreachable.
                        unsafe { free(child) };
                    }
                }
            }
            // SAFETY: the caller's contract; the node's level is its own
            // (typing invariant), and its children are freed above or go
            // with it.
            unsafe { drop_one::<N, F>(pos.ptr.as_ptr(), pos.level) };
        }
        // SAFETY: `&mut self`: no borrow of the tree is left, so nobody
        // else reaches any node.
        unsafe { free(self.pos()) };
    }
}

/// A position without a borrow (see [`Root::anchor`]).
pub(crate) struct Anchor<N, const F: usize> {
    ptr: NonNull<()>,
    level: Level<F>,
    _node: PhantomData<fn() -> N>,
}

impl<N, const F: usize> Clone for Anchor<N, F> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<N, const F: usize> Copy for Anchor<N, F> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_cover_the_span() {
        assert_eq!(levels_for::<64>(64), 1);
        assert_eq!(levels_for::<64>(65), 2);
        assert_eq!(levels_for::<64>(1 << 20), 4);
        assert_eq!(levels_for::<64>((1 << 32) - 1), 6);
        assert_eq!(levels_for::<4>(4), 1);
        assert_eq!(levels_for::<4>(5), 2);
        assert_eq!(levels_for::<2>((1 << 32) - 1), 32);
        assert_eq!(levels_for::<2>(1), 1);
    }

    #[test]
    fn bit_helpers() {
        assert_eq!(bit_range(0, 63), u64::MAX);
        assert_eq!(bit_range(3, 3), 8);
        assert_eq!(bit_range(1, 2), 6);
        assert_eq!(low_bits(0), 0);
        assert_eq!(low_bits(64), u64::MAX);
        assert_eq!(low_bits(3), 7);
    }

    #[test]
    fn levels_shifts_and_masks() {
        // Fan-out 4 over 1000 keys: 5 levels (4^5 = 1024).
        let geo = Geometry::<4>::new(1000);
        assert_eq!(geo.levels(), 5);
        assert_eq!(geo.root().shift(), 8);
        assert_eq!(geo.at_depth(3), Level::CHUNK);
        assert_eq!(geo.at_depth(4), Level::LEAF);
        assert_eq!(geo.root().child().child(), geo.at_depth(2));
        assert_eq!(geo.root().index(999), 3);
        assert_eq!(Level::<4>::CHUNK.index(999), 3 & (999 >> 2));
        // The root's children cover 256 keys each: 4 valid (1000 > 768).
        assert_eq!(geo.valid_mask(geo.root(), 0), 0b1111);
        // The last leaf, keys 996..1000: all valid; one over 992..996 too.
        assert_eq!(geo.valid_mask(Level::LEAF, 996), 0b1111);
        // The chunk over 992..1008: leaves 992, 996 valid, 1000, 1004 not.
        assert_eq!(geo.valid_mask(Level::CHUNK, 992), 0b11);
        let small = Geometry::<64>::new(10);
        assert_eq!(small.levels(), 1);
        assert_eq!(small.valid_mask(small.root(), 0), low_bits(10));
    }

    struct TestInner {
        links: [Link<TestInner, 2>; 2],
    }

    impl InnerNode<2> for TestInner {
        type Leaf = u64;
        fn links(&self) -> &[Link<Self, 2>; 2] {
            &self.links
        }
    }

    fn fresh(level: Level<2>) -> Fresh<TestInner, 2> {
        if level.is_leaf() {
            Fresh::Leaf(Box::new(7))
        } else {
            Fresh::Inner(Box::new(TestInner {
                links: [Link::empty(), Link::empty()],
            }))
        }
    }

    #[test]
    fn typed_walk_installs_and_frees() {
        let geo = Geometry::<2>::new(8);
        let root = Root::new(geo.root(), fresh(geo.root()));
        let mut pos = root.pos();
        let mut depth = 0;
        while let Some(inner) = pos.inner() {
            assert!(inner.child(1, Ordering::Acquire).is_none());
            pos = inner.child_or_install(1, fresh, |_| ());
            // A second install finds the first.
            assert_eq!(inner.child_or_install(1, fresh, |_| ()).addr(), pos.addr());
            depth += 1;
        }
        assert_eq!(depth, 2);
        assert_eq!(pos.level(), Level::LEAF);
        assert_eq!(pos.leaf().copied(), Some(7));
        // Freed by the root's drop (Miri and the leak checkers see it).
        drop(root);
    }

    #[test]
    #[should_panic(expected = "a leaf made for an inner level")]
    fn a_node_of_the_wrong_kind_is_refused() {
        let geo = Geometry::<2>::new(8);
        let _ = Root::<TestInner, 2>::new(geo.root(), Fresh::Leaf(Box::new(0)));
    }
}
