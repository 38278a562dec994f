//! The ID tree: a radix tree of fan-out `F` over the keys `0..span` of one
//! space (a key is an ID minus the space's minimum).
//!
//! # Shape
//!
//! `levels` levels of `log2(F)` key bits each; only the levels the span needs
//! exist. Inner nodes hold `F` child links and a *free hint* word; leaves
//! hold a *claim* word and `F` record slots. The geometry (levels, a level's
//! shift and index, valid masks) and the typed node references (a walk
//! holds a node with its level, and the level says inner node or leaf)
//! are `radix.rs`'s, shared with the membership index. Nodes are created on demand by
//! compare-and-swap (the loser frees its unpublished node) and are never
//! removed while the tree lives, so a reader needs no protection for nodes,
//! only for what an entry word points to (which the caller reclaims through
//! the epoch). (A Cyclic tree gives back the *pages* of empty chunks'
//! leaves, never the nodes: see "Reclaimed chunks".)
//!
//! The *low subtree*: in a tree of more than 4 levels, the nodes on the path
//! of key 0 down to the one covering keys `0..F^4` are created with the
//! tree, and lookups and claims of keys below `F^4` start at that node (the
//! kernel's PASIDs are small numbers in a 2^32 space: 4 levels instead of
//! 6). Propagations and repairs still go up to the root (their paths are
//! looked up from it), so the hints above the low subtree stay exact.
//!
//! The *chunk directory*: a node of the last inner level covers `F^2` keys
//! (4096 at fan-out 64), a *chunk*. In a tree of 4 levels or more, the
//! chunks over the lowest keys (up to 256 of them: 2^20 keys at fan-out 64,
//! a 2 KiB array made on the first chunk's install) are also listed in
//! `dir`, so a lookup is `dir[key / F^2]`, the chunk's child pointer and the
//! slot, whatever the height, and a claim whose `lo` lies there starts at
//! lo's chunk. An entry is null until its chunk is installed, then that
//! chunk for the tree's life: the installer (or a loser of the install race,
//! which stores the same pointer) stores it after the install, before it
//! uses the chunk. A null entry only sends the caller down the tree.
//!
//! INVARIANT (geometry): a leaf's claim word has every bit set that is not a
//! valid key (beyond `F`, or beyond the span), so "leaf full" is
//! `claimed == u64::MAX`; an inner node's hint word never has an invalid
//! child's bit set, so "node full" is `free_hint == 0`.
//!
//! # Claims and entries
//!
//! A key is *claimed* while its claim bit is set; it is *live* while its slot
//! holds a non-zero entry word (its meaning belongs to the caller: see
//! `entry.rs`). alloc claims the bit (`fetch_or`), then the caller publishes
//! the entry (Release). free takes the entry out of the slot (CAS to zero),
//! then calls [`Tree::release`], which clears the claim bit (Release) so the
//! key is reusable at once.
//!
//! # Free hints, and why ENOSPC is truthful
//!
//! Hint bit `i` of an inner node clear means "child `i` was seen full". A
//! claim that fills a leaf *propagates*: it clears the parent's bit, issues a
//! SeqCst fence, re-checks the child, and if the child is no longer full sets
//! the bit again (and repairs upward); if the parent became empty it goes on
//! one level up.
//!
//! A release that turns a *full* leaf into a non-full one is a *repairer*:
//! after its clear it issues a SeqCst fence and sets the parent's bit if it
//! is clear, and goes on up while the node it marked had been empty (the
//! same "full to not full" step one level higher). Any other release only
//! clears its claim bit: its leaf was not full, so whoever made it not full
//! is a repairer that has marked, or is marking, the ancestors.
//!
//! The fences form Dekker's pattern per level: either the propagator's
//! re-check sees the repairer's write (and undoes its clear), or the repairer
//! sees the clear (and sets the bit again). So ancestors of a free key are
//! marked free except transiently: between a propagator's clear and its
//! undo, or while a repairer is on its way up. Those windows are fenced by
//! `hint_seq`: propagators and repairers count themselves in (started count
//! and active count, one word) before their first write and out after their
//! last. A repairer counts itself in before its claim clear, whose Release
//! (continued by the leaf word's chain of read-modify-writes) makes the count
//! visible to anyone ordered after a later release of that leaf. A walk that
//! follows the hints and finds nothing trusts that answer only if nobody was
//! active at its start and nobody started during it; otherwise it repeats as
//! an exact scan that ignores hints. Hence: a key free for the whole call is
//! never missed, and a full space answers ENOSPC from the root's hint word.
//!
//! # Reclaimed chunks (Cyclic trees)
//!
//! A Cyclic cursor sweeps the whole span, so a tree that never gave memory
//! back would grow to the span's full size however few IDs are live. A
//! *reclaiming* tree (made for Cyclic spaces) gives back the leaves of
//! chunks the cursor has left empty, without taking nodes away from
//! unprotected readers (finds and frees take no pin):
//!
//! - A chunk wholly inside the span is made with its `F` leaves in one
//!   *leaf block* it owns, page-aligned when a block is a page or more,
//!   its links set at its making. Its leaves are never unlinked.
//! - *Retiring* a chunk whose leaves are all empty: count in (in
//!   `hint_seq` and `reclaim.seq`), CAS each leaf's claim word from empty
//!   (0 at fan-out 64: no key claimed) to `u64::MAX` in turn, so no key of
//!   the chunk can be claimed; if one CAS fails (a claim came first) put
//!   the taken ones back to empty, newest first. Once all are taken,
//!   *discard* the block's pages (`MADV_DONTNEED`: the kernel drops them,
//!   and the next read of any word there is 0, the value every word of an
//!   empty leaf has at fan-out 64); where the pages cannot be discarded, or
//!   do not read back as empty, each claim word is put back to empty by a
//!   Release swap instead. Then a SeqCst fence, every hint bit of the chunk set again,
//!   and a repair upward if the chunk's hint had been empty (a claim that
//!   met a retired leaf took it for full and propagated), and count out.
//! - Why nothing is lost: while any claim bit of a leaf is set, its
//!   retiring CAS fails; while a leaf is retired no key of it is claimed,
//!   so no slot is written and every slot is already 0 (an entry is
//!   published after its claim and taken out before its release). A
//!   reader (a find, a free of a key there, an iterator) reads 0 before,
//!   during and after: the keys were free throughout.
//! - Why ENOSPC stays truthful: a walk overlapping a retire sees it in
//!   `hint_seq` and scans exactly; an exact scan that finds nothing while a
//!   retire was active, or started during it, scans again (retires are
//!   short and rare: one per chunk per sweep of the cursor).
//! - One retire at a time per tree (`Reclaim::busy`; another gives up):
//!   whether the discard dropped the pages is read from a word of the
//!   block no claim writes (`LeafBlock::canary`), since claims may set
//!   bits in the claim words as soon as the pages are gone.
//! - When: the cursor's chunk and the one before it are protected (a
//!   thread's batch, or a call in flight, claims there). When the cursor
//!   enters another chunk, the chunks that fall out of that window are
//!   examined; a release that empties a leaf outside the window examines
//!   that leaf's chunk. A chunk with a live key is left as it is.

use crate::radix::{
    bit_range, low_bits, Anchor, Fresh, Geometry, InnerAt, InnerNode, Level, Link, Node, Pos, Root,
    MAX_LEVELS,
};
use crate::sync::{
    atomic_array, fence, install, yield_now, AtomicBool, AtomicPtr, AtomicU64, CachePadded,
    Ordering,
};
use std::alloc::Layout;
use std::mem::MaybeUninit;
use std::ptr::{self, NonNull};

/// Levels of the low subtree (see `Tree::low`): keys below `F^4` (2^24 at
/// fan-out 64, 256 at fan-out 4) are walked from there, so a tree over
/// 2^32 keys walks 4 levels for them, not 6.
const LOW_LEVELS: u32 = 4;

/// The most chunk directory entries (see `Tree::dir`).
const DIR_MAX: u64 = 256;

/// `hint_seq`: the low half counts active propagations, the high half
/// counts started ones.
const SEQ_ACTIVE_MASK: u64 = 0xFFFF_FFFF;
const SEQ_STARTED_ONE: u64 = 1 << 32;

struct Inner<const F: usize> {
    /// Bit i set: child i may have a free key.
    free_hint: AtomicU64,
    /// Child i: an `Inner` or, at the last level, a `Leaf`; null = all free.
    children: [Link<Inner<F>, F>; F],
    /// A chunk of a reclaiming tree: the block its leaves live in (module
    /// docs), set at its making. INVARIANT: `children[i]` is
    /// `block.leaves[i]`, for every `i`.
    block: Option<NonNull<LeafBlock<F>>>,
}

impl<const F: usize> InnerNode<F> for Inner<F> {
    type Leaf = Leaf<F>;
    fn links(&self) -> &[Link<Self, F>; F] {
        &self.children
    }
    fn owns_leaves(&self) -> bool {
        self.block.is_none()
    }
}

impl<const F: usize> Inner<F> {
    /// The leaf block of a chunk of a reclaiming tree.
    fn block(&self) -> Option<&LeafBlock<F>> {
        // SAFETY: the block lives as long as its chunk (freed in its drop).
        self.block.map(|block| unsafe { block.as_ref() })
    }
}

impl<const F: usize> Drop for Inner<F> {
    fn drop(&mut self) {
        if let Some(block) = self.block {
            // SAFETY: the chunk's own block, made by `LeafBlock::new`; its
            // leaves go with the chunk (nobody reaches them any more).
            unsafe { LeafBlock::free(block) };
        }
    }
}

struct Leaf<const F: usize> {
    /// Bit i set: key `base + i` is claimed (or is not a valid key).
    claimed: AtomicU64,
    /// Slot i: the entry word of key `base + i`, or 0.
    slots: [AtomicU64; F],
}

/// The `F` leaves of one chunk of a reclaiming tree, in one allocation
/// (module docs, "Reclaimed chunks").
struct LeafBlock<const F: usize> {
    leaves: [Leaf<F>; F],
    /// Written only by the one retirer (`Reclaim::busy`): 1 before a
    /// discard, read back after it to tell whether the pages were dropped
    /// (a word no claimer ever writes, unlike the leaves' claim words).
    canary: AtomicU64,
}

/// The alignment of a leaf block of a page or more: whole pages, so that
/// they can be discarded without touching anything else.
const BLOCK_ALIGN: usize = 4096;

impl<const F: usize> LeafBlock<F> {
    fn layout() -> Layout {
        let size = std::mem::size_of::<Self>();
        let align = if size >= BLOCK_ALIGN {
            BLOCK_ALIGN
        } else {
            std::mem::align_of::<Self>()
        };
        Layout::from_size_align(size.next_multiple_of(align), align).expect("a small layout")
    }

    /// The claim word of an empty leaf wholly inside the span: the bits
    /// beyond `F` set (0 at fan-out 64).
    const EMPTY: u64 = !low_bits(F);

    /// A block of empty leaves (the block's chunk lies wholly inside the
    /// span: no invalid key but those beyond `F`).
    fn new() -> NonNull<Self> {
        let layout = Self::layout();
        // SAFETY: the layout's size is not zero.
        let Some(block) = NonNull::new(unsafe { std::alloc::alloc(layout) }.cast::<Self>()) else {
            std::alloc::handle_alloc_error(layout)
        };
        for i in 0..F {
            let leaf = Leaf {
                claimed: AtomicU64::new(Self::EMPTY),
                slots: atomic_array(|_| AtomicU64::new(0)),
            };
            // SAFETY: `i < F`: inside the allocation, which is aligned for
            // `Self` and so for its leaves; nothing is there yet to drop.
            unsafe { ptr::addr_of_mut!((*block.as_ptr()).leaves[i]).write(leaf) };
        }
        // SAFETY: as above, the block's last field.
        unsafe { ptr::addr_of_mut!((*block.as_ptr()).canary).write(AtomicU64::new(0)) };
        block
    }

    /// Frees a block made by [`LeafBlock::new`].
    ///
    /// # Safety
    /// Nobody uses `block` any more.
    unsafe fn free(block: NonNull<Self>) {
        // SAFETY: every leaf was written by `new` (the caller's contract:
        // nobody else sees them); then the allocation is `new`'s, with its
        // layout.
        unsafe {
            ptr::drop_in_place(block.as_ptr());
            std::alloc::dealloc(block.as_ptr().cast(), Self::layout());
        }
    }

    /// Puts every leaf of the block, all retired (claim word `u64::MAX`,
    /// every slot 0), back to empty: its pages discarded where they can
    /// be, else every claim word put back ([`Leaf::put_back`]).
    fn empty_retired(&self) {
        debug_assert!(
            self.leaves
                .iter()
                .all(|leaf| leaf.slots.iter().all(|s| s.load(Ordering::Relaxed) == 0)),
            "a retired leaf holds an entry"
        );
        #[cfg(all(target_os = "linux", not(miri), not(ioasid_loom)))]
        if self.discard_pages() {
            return;
        }
        for leaf in &self.leaves {
            leaf.put_back();
        }
    }

    /// The block's allocation, as `madvise` takes it.
    #[cfg(all(target_os = "linux", not(miri), not(ioasid_loom)))]
    fn range(&self) -> (*mut libc::c_void, usize) {
        (ptr::from_ref(self).cast_mut().cast(), Self::layout().size())
    }

    /// Asks the kernel to map the block's pages writable (see
    /// [`Tree::prefault_chunk`]); nothing where it cannot.
    fn prefault(&self) {
        #[cfg(all(target_os = "linux", not(miri), not(ioasid_loom)))]
        {
            let (addr, len) = self.range();
            // SAFETY: the range is this block's allocation; populating
            // pages changes no byte of it (a page still mapped is left as
            // it is, a discarded one comes back as zeros, as any first
            // access would bring it). Older kernels refuse the advice
            // (EINVAL), which is harmless: claims fault the pages in.
            let _ = unsafe { libc::madvise(addr, len, libc::MADV_POPULATE_WRITE) };
        }
    }

    /// Asks the kernel to drop the block's pages (whole pages only); true
    /// if every word of the block now reads as an empty leaf's.
    #[cfg(all(target_os = "linux", not(miri), not(ioasid_loom)))]
    fn discard_pages(&self) -> bool {
        let (addr, len) = self.range();
        // SAFETY: no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let Ok(page) = usize::try_from(page) else {
            return false;
        };
        if Self::EMPTY != 0
            || page == 0
            || !addr.addr().is_multiple_of(page)
            || !len.is_multiple_of(page)
        {
            return false;
        }
        // Relaxed: only the one retirer (`Reclaim::busy`) reads or writes it.
        self.canary.store(1, Ordering::Relaxed);
        // SAFETY: `addr..addr + len` is exactly this block's allocation, in
        // whole pages (checked above), so nothing else is touched. Every
        // word there is an atomic of a retired leaf, which no thread writes
        // (no key of it can be claimed, and every slot is already 0) and
        // readers only load, or the canary, which only we use. On private
        // anonymous memory (what an allocator hands out) the discard makes
        // each word read 0, an empty leaf's value for every word at fan-out
        // 64 (checked above). The call, which returns only once every CPU
        // has dropped the old mappings, orders the leaves' last releases
        // before any later access to the fresh pages, as the Release swaps
        // of the other path do.
        if unsafe { libc::madvise(addr, len, libc::MADV_DONTNEED) } != 0 {
            return false;
        }
        // Any other mapping keeps its contents: the canary tells (the block
        // is one allocation, so one mapping). Not a claim word: once the
        // pages are dropped, claims may already be setting bits there.
        // Relaxed: as the store.
        self.canary.load(Ordering::Relaxed) == 0
    }
}

impl<const F: usize> Leaf<F> {
    /// A retired leaf of a block back to empty (claim word from
    /// `u64::MAX` to [`LeafBlock::EMPTY`]).
    fn put_back(&self) {
        // Release, and a read-modify-write (not a store): the write stays
        // in the release sequence of the leaf's last release, so the next
        // claim of a key here (its Acquire fetch_or reads this write) is
        // ordered after that release and its owner's null store to the
        // slot. (A plain Relaxed store loses an entry in the loom model
        // `cyclic_retire_races_alloc_in_the_chunk`.)
        let was = self.claimed.swap(LeafBlock::<F>::EMPTY, Ordering::Release);
        debug_assert_eq!(was, u64::MAX, "a leaf put back was not retired");
    }
}

/// A reclaiming tree's state (module docs, "Reclaimed chunks").
struct Reclaim {
    /// The chunk number of the key the cursor handed out last (as told by
    /// [`Tree::cursor_at`]): it and the chunk before it are not retired.
    cursor_chunk: AtomicU64,
    /// Started/active retires, as `hint_seq`.
    seq: AtomicU64,
    /// Chunks retired so far (for tests and benchmarks).
    retired: AtomicU64,
    /// Set while a retire runs: one at a time per tree (another that finds
    /// it set gives up; the chunk is examined again later). So a discard's
    /// fallback never meets another retirer's leaves.
    busy: AtomicBool,
}

/// A position in the tree (a node with its level).
type TreePos<'t, const F: usize> = Pos<'t, Inner<F>, F>;
/// An inner node of the tree with its level.
type TreeInner<'t, const F: usize> = InnerAt<'t, Inner<F>, F>;

/// A node whose fullness a propagation re-checks.
#[derive(Clone, Copy)]
enum NodeRef<'a, const F: usize> {
    Inner(&'a Inner<F>),
    Leaf(&'a Leaf<F>),
}

impl<const F: usize> NodeRef<'_, F> {
    fn is_full(&self) -> bool {
        // Relaxed: callers issue a SeqCst fence first (see module docs).
        match *self {
            NodeRef::Inner(inner) => inner.free_hint.load(Ordering::Relaxed) == 0,
            NodeRef::Leaf(leaf) => leaf.claimed.load(Ordering::Relaxed) == u64::MAX,
        }
    }
}

/// The inner nodes on the way from the root to the current node, each with
/// the index of the child taken.
///
/// INVARIANT: entries below `len` are initialised. (The rest is left
/// uninitialised: zeroing 32 levels on every claim showed up in profiles.)
struct Path<const F: usize> {
    steps: [MaybeUninit<(*const Inner<F>, usize)>; MAX_LEVELS],
    len: usize,
}

impl<const F: usize> Path<F> {
    fn new() -> Self {
        Path {
            steps: [const { MaybeUninit::uninit() }; MAX_LEVELS],
            len: 0,
        }
    }

    fn push(&mut self, node: &Inner<F>, index: usize) {
        self.steps[self.len].write((node, index));
        self.len += 1;
    }

    fn pop(&mut self) {
        self.len -= 1;
    }

    fn get(&self, level: usize) -> (&Inner<F>, usize) {
        assert!(level < self.len);
        // SAFETY: entries below `len` are initialised (struct invariant).
        let (node, index) = unsafe { self.steps[level].assume_init() };
        // SAFETY: path entries point at inner nodes of the tree, which live
        // as long as the tree, and the path never outlives a borrow of it.
        (unsafe { &*node }, index)
    }
}

/// One key's place in its leaf: its entry word and claim bit.
#[derive(Clone, Copy)]
pub(crate) struct Slot<'t, const F: usize> {
    leaf: &'t Leaf<F>,
    index: usize,
}

impl<'t, const F: usize> Slot<'t, F> {
    /// The entry word.
    pub(crate) fn word(self) -> &'t AtomicU64 {
        &self.leaf.slots[self.index]
    }
}

/// The radix tree of one space.
pub(crate) struct Tree<const F: usize> {
    /// The root: an `Inner`, or a `Leaf` when there is one level. Owns
    /// every node.
    root: Root<Inner<F>, F>,
    geo: Geometry<F>,
    /// The low subtree: the node at depth `levels - 4` on the path of key 0
    /// (the root in a tree of 4 levels or fewer), created with the tree, so walks
    /// for keys below `low_span` start there instead of at the root.
    /// INVARIANT: `low` is that node of this tree, made from `root`.
    low: Anchor<Inner<F>, F>,
    /// Keys below this are in the low subtree (`span` when it is the root).
    low_span: u64,
    /// The chunk directory (module docs): null until the first chunk is
    /// installed, then an array of `dir_len` links, each null or the
    /// chunk over keys `i * F^2..`. INVARIANT: a non-null entry is that
    /// chunk (a node at `Level::CHUNK`), which lives as long as the tree;
    /// so is the array.
    dir: AtomicPtr<Link<Inner<F>, F>>,
    dir_len: usize,
    /// Keys below this have a directory entry (0: no directory).
    dir_span: u64,
    /// Started/active propagations (see module docs). Written whenever a
    /// leaf fills or empties: padded away from `root`, which finds read.
    hint_seq: CachePadded<AtomicU64>,
    /// A reclaiming tree's state (module docs); `None` for the others.
    reclaim: Option<Box<CachePadded<Reclaim>>>,
}

// SAFETY: the tree owns its nodes; all shared mutation goes through atomics.
// Entry words are plain integers to the tree.
unsafe impl<const F: usize> Send for Tree<F> {}
// SAFETY: as above.
unsafe impl<const F: usize> Sync for Tree<F> {}

impl<const F: usize> Tree<F> {
    const BITS: u32 = F.trailing_zeros();
    const INDEX_MASK: u64 = F as u64 - 1;
    /// Keys per chunk (a node of the last inner level): `F^2`.
    const CHUNK_BITS: u32 = Geometry::<F>::CHUNK_BITS;
    const CHUNK: u64 = Geometry::<F>::CHUNK;

    /// A tree for keys `0..span` (`2 <= span <= 2^32`) with only its root.
    pub(crate) fn new(span: u64) -> Self {
        Self::with_reclaim(span, false)
    }

    /// A tree for keys `0..span` that gives back the leaves of chunks its
    /// cursor has left empty (module docs, "Reclaimed chunks"): for Cyclic
    /// spaces, whose cursor tells it where it is with [`Tree::cursor_at`].
    pub(crate) fn new_reclaiming(span: u64) -> Self {
        Self::with_reclaim(span, true)
    }

    fn with_reclaim(span: u64, reclaiming: bool) -> Self {
        assert!((1..=1 << 32).contains(&span));
        let geo = Geometry::<F>::new(span);
        let levels = geo.levels();
        let low_depth = levels.saturating_sub(LOW_LEVELS);
        // In a tree of 3 levels the chunks are the root's children: the
        // root, always in cache, is all a directory would skip.
        let dir_len = if levels >= 4 {
            span.div_ceil(Self::CHUNK).min(DIR_MAX)
        } else {
            0
        };
        let root = Root::new(geo.root(), Self::new_node(&geo, geo.root(), 0, reclaiming));
        // Install the path of key 0 down to the low subtree's root (all
        // above the chunks: nothing for the directory).
        let mut node = root.pos();
        for _ in 0..low_depth {
            let inner = node.inner().expect("levels above the leaf are inner");
            node = inner.child_or_install(
                0,
                |level| Self::new_node(&geo, level, 0, reclaiming),
                |_| (),
            );
        }
        let low = Root::anchor(node);
        let low_span = if low_depth > 0 {
            1u64 << (Self::BITS * (levels - low_depth))
        } else {
            span
        };
        Tree {
            root,
            geo,
            low,
            low_span,
            dir: AtomicPtr::new(ptr::null_mut()),
            dir_len: dir_len as usize,
            dir_span: span.min(dir_len * Self::CHUNK),
            hint_seq: CachePadded(AtomicU64::new(0)),
            reclaim: reclaiming.then(|| {
                Box::new(CachePadded(Reclaim {
                    cursor_chunk: AtomicU64::new(0),
                    seq: AtomicU64::new(0),
                    retired: AtomicU64::new(0),
                    busy: AtomicBool::new(false),
                }))
            }),
        }
    }

    /// The low subtree's root.
    #[inline]
    fn low(&self) -> TreePos<'_, F> {
        // SAFETY: `low` was made from this tree's root (field invariant).
        unsafe { self.root.resume(self.low) }
    }

    /// Where a walk for `key` starts: the low subtree's root, or the root.
    #[inline]
    fn start_for(&self, key: u64) -> TreePos<'_, F> {
        if key < self.low_span {
            self.low()
        } else {
            self.root.pos()
        }
    }

    /// Number of keys.
    pub(crate) fn span(&self) -> u64 {
        self.geo.span()
    }

    /// A fresh node for `level` over keys from `base`: its invalid keys
    /// claimed (a leaf) or its invalid children marked full (an inner node).
    /// A chunk of a reclaiming tree wholly inside the span comes with its
    /// leaf block, linked.
    fn new_node(
        geo: &Geometry<F>,
        level: Level<F>,
        base: u64,
        reclaiming: bool,
    ) -> Fresh<Inner<F>, F> {
        let valid = geo.valid_mask(level, base);
        if level.is_leaf() {
            return Fresh::Leaf(Box::new(Leaf {
                claimed: AtomicU64::new(!valid),
                slots: atomic_array(|_| AtomicU64::new(0)),
            }));
        }
        if reclaiming && level == Level::CHUNK && base + Self::CHUNK <= geo.span() {
            let block = LeafBlock::<F>::new();
            // INVARIANT (`Inner::block`): child i is the block's leaf i.
            let children = atomic_array(|i| {
                // SAFETY: `i < F`, a leaf of the block just made.
                let leaf = unsafe { ptr::addr_of_mut!((*block.as_ptr()).leaves[i]) };
                // SAFETY: the link is a chunk's (its children are leaves)
                // whose `owns_leaves` is false (it has a block), and the
                // leaf lives in that block, freed with the chunk.
                unsafe { Link::with_leaf(NonNull::new(leaf).expect("inside a block")) }
            });
            return Fresh::Inner(Box::new(Inner {
                free_hint: AtomicU64::new(valid),
                children,
                block: Some(block),
            }));
        }
        Fresh::Inner(Box::new(Inner {
            free_hint: AtomicU64::new(valid),
            children: atomic_array(|_| Link::empty()),
            block: None,
        }))
    }

    /// The chunk of `key` from the directory, if it lists one.
    #[inline]
    fn chunk_of(&self, key: u64) -> Option<TreeInner<'_, F>> {
        if key >= self.dir_span {
            return None;
        }
        // Acquire: pairs with the Release of the array's `install`.
        let dir = self.dir.load(Ordering::Acquire);
        if dir.is_null() {
            return None;
        }
        // SAFETY: `key < dir_span`, so the index is below `dir_len`, the
        // array's length; the array lives as long as the tree.
        let entry = unsafe { &*dir.add((key >> Self::CHUNK_BITS) as usize) };
        // Acquire: pairs with the Release store of `dir_store`, so the
        // chunk's initialised contents are visible.
        // SAFETY: a non-null entry is a chunk (a node at `Level::CHUNK`),
        // alive while the tree is (field invariant).
        unsafe { entry.load_at(Level::CHUNK, Ordering::Acquire) }?.inner()
    }

    /// Lists `chunk`, just installed (or found installed) over keys from
    /// `base`, in the directory.
    fn dir_store(&self, base: u64, chunk: TreePos<'_, F>) {
        // The directory's typing rests on this (see `chunk_of`).
        assert_eq!(chunk.level(), Level::CHUNK, "the directory lists chunks");
        // Acquire: as in `chunk_of`.
        let mut dir = self.dir.load(Ordering::Acquire);
        if dir.is_null() {
            let fresh: Box<[Link<Inner<F>, F>]> =
                (0..self.dir_len).map(|_| Link::empty()).collect();
            let fresh = Box::into_raw(fresh).cast::<Link<Inner<F>, F>>();
            dir = install(&self.dir, fresh, |lost| {
                // SAFETY: our unpublished array of `dir_len` entries.
                drop(unsafe { Self::dir_box(lost, self.dir_len) })
            });
        }
        // SAFETY: `base < dir_span` (the caller checks), so the index is in
        // the array, which lives as long as the tree.
        let entry = unsafe { &*dir.add((base >> Self::CHUNK_BITS) as usize) };
        // Release (in `publish`): publishes the chunk's contents (ours, or
        // the winner's, read by our Acquire in `install`) to `chunk_of`'s
        // Acquire.
        entry.publish(chunk);
    }

    /// The directory array at `dir` as the box it was made as.
    ///
    /// # Safety
    /// `dir` came from `dir_store`'s `Box::into_raw` with `len` entries, and
    /// nobody else uses it any more.
    unsafe fn dir_box(dir: *mut Link<Inner<F>, F>, len: usize) -> Box<[Link<Inner<F>, F>]> {
        // SAFETY: the caller's contract.
        unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(dir, len)) }
    }

    #[inline]
    fn leaf_of(&self, key: u64) -> Option<&Leaf<F>> {
        debug_assert!(key < self.geo.span());
        if let Some(chunk) = self.chunk_of(key) {
            // Acquire: pairs with the Release of `install`.
            let leaf = chunk.child(Level::<F>::CHUNK.index(key), Ordering::Acquire)?;
            return leaf.leaf();
        }
        // The lookup hot path: the level's shift counts down.
        let mut node = self.start_for(key);
        loop {
            match node.node() {
                Node::Leaf(leaf) => return Some(leaf),
                Node::Inner(inner) => {
                    // Acquire: pairs with the Release of `install`, so the
                    // node's initialised contents are visible.
                    node = inner.child(inner.level().index(key), Ordering::Acquire)?;
                }
            }
        }
    }

    /// The slot of `key`, if its leaf exists.
    #[inline]
    pub(crate) fn slot(&self, key: u64) -> Option<Slot<'_, F>> {
        self.leaf_of(key).map(|leaf| Slot {
            leaf,
            index: (key & Self::INDEX_MASK) as usize,
        })
    }

    /// Claims the lowest free key in `lo..=hi`, or `None` if no key there was
    /// free for the whole call. Returns the key and its (empty) slot.
    #[inline]
    pub(crate) fn claim(&self, lo: u64, hi: u64) -> Option<(u64, &AtomicU64)> {
        debug_assert!(lo <= hi && hi < self.geo.span());
        if let Some(found) = self.claim_in_chunk(lo, hi) {
            return Some(found);
        }
        self.claim_walk(lo, hi)
    }

    /// [`Tree::claim`] down from the root (or the low subtree's root): out
    /// of line, so the chunk fast path stays small.
    #[inline(never)]
    fn claim_walk(&self, lo: u64, hi: u64) -> Option<(u64, &AtomicU64)> {
        // Acquire: pairs with the Release decrement of a propagation that
        // finished, so its undo is visible to the walk's hint loads.
        let before = self.hint_seq.load(Ordering::Acquire);
        // Every key of the low subtree is below every other key, so a key
        // found there is the lowest of the range too.
        let (start, first_hi) = if lo < self.low_span {
            (self.low(), hi.min(self.low_span - 1))
        } else {
            (self.root.pos(), hi)
        };
        if let Some(found) = self.claim_first(start, lo, first_hi) {
            return Some(found);
        }
        let root = self.root.pos();
        if let Some(found) = self.claim_in(root, 0, lo, hi, false, &mut Path::new()) {
            return Some(found);
        }
        // Acquire loads of the walk keep this load after them.
        let after = self.hint_seq.load(Ordering::Acquire);
        if before & SEQ_ACTIVE_MASK == 0 && before == after {
            return None;
        }
        self.claim_exact(lo, hi)
    }

    /// The exact scan of `lo..=hi`, hints ignored. In a reclaiming tree it
    /// is repeated while a retire overlapped it: a retired leaf looks full
    /// (module docs, "Reclaimed chunks").
    fn claim_exact(&self, lo: u64, hi: u64) -> Option<(u64, &AtomicU64)> {
        let root = self.root.pos();
        let Some(reclaim) = &self.reclaim else {
            return self.claim_in(root, 0, lo, hi, true, &mut Path::new());
        };
        loop {
            // Acquire: pairs with a retirer's Release count-out, so its
            // leaves and hints, put back, are what the scan reads.
            let before = reclaim.seq.load(Ordering::Acquire);
            if let Some(found) = self.claim_in(root, 0, lo, hi, true, &mut Path::new()) {
                return Some(found);
            }
            // Acquire: a retired claim word the scan read (Relaxed) was
            // written by a retirer's Release CAS after its count-in; this
            // fence makes that count-in visible to the load below.
            fence(Ordering::Acquire);
            let after = reclaim.seq.load(Ordering::Relaxed);
            if before & SEQ_ACTIVE_MASK == 0 && before == after {
                return None;
            }
            yield_now();
        }
    }

    /// The shortest claim: in lo's chunk, found through the directory,
    /// following its hint word to the first leaf with a free key at or
    /// above `lo`. Every key of that chunk in range is below every key of
    /// the range beyond it, so a key found here is the one the walk from
    /// the root would find. `None` (nothing free there, or no entry) sends
    /// the caller down the tree. Keeps no path, as `claim_first`.
    #[inline]
    fn claim_in_chunk(&self, lo: u64, hi: u64) -> Option<(u64, &AtomicU64)> {
        let chunk = self.chunk_of(lo)?;
        let base = lo & !(Self::CHUNK - 1);
        let hi = hi.min(base + Self::CHUNK - 1);
        let (first, last) = (
            ((lo - base) >> Self::BITS) as usize,
            ((hi - base) >> Self::BITS) as usize,
        );
        // Acquire: as in `claim_in`.
        let window = chunk.free_hint.load(Ordering::Acquire) & bit_range(first, last);
        if window == 0 {
            return None;
        }
        let i = window.trailing_zeros() as usize;
        let leaf_base = base + ((i as u64) << Self::BITS);
        let leaf = self.child_or_install(chunk, i, leaf_base).leaf()?;
        let (lo, hi) = (lo.max(leaf_base), hi.min(leaf_base + F as u64 - 1));
        self.claim_in_leaf(leaf, leaf_base, lo, hi, None)
    }

    /// The common case of a hinted walk, without recursion: take the first
    /// hinted child at each level and claim in the leaf reached. `None` if
    /// that leaf has nothing free in range; the caller then walks properly.
    /// Keeps no path: the rare propagation (a leaf filled, or found full)
    /// walks down again for it.
    ///
    /// `node` is a node on the path of key 0 (the root, or the low
    /// subtree's root), and `lo..=hi` lies below it.
    fn claim_first<'t>(
        &'t self,
        node: TreePos<'t, F>,
        lo: u64,
        hi: u64,
    ) -> Option<(u64, &'t AtomicU64)> {
        let (mut node, mut base, mut lo, mut hi) = (node, 0u64, lo, hi);
        loop {
            let inner = match node.node() {
                Node::Leaf(leaf) => return self.claim_in_leaf(leaf, base, lo, hi, None),
                Node::Inner(inner) => inner,
            };
            let shift = inner.level().shift();
            let (first, last) = (
                ((lo - base) >> shift) as usize,
                ((hi - base) >> shift) as usize,
            );
            // Acquire: as in `claim_in`.
            let window = inner.free_hint.load(Ordering::Acquire) & bit_range(first, last);
            if window == 0 {
                return None;
            }
            let i = window.trailing_zeros() as usize;
            let child_base = base + ((i as u64) << shift);
            node = self.child_or_install(inner, i, child_base);
            lo = lo.max(child_base);
            hi = hi.min(child_base + (1u64 << shift) - 1);
            base = child_base;
        }
    }

    fn claim_in<'t>(
        &'t self,
        node: TreePos<'t, F>,
        base: u64,
        lo: u64,
        hi: u64,
        exact: bool,
        path: &mut Path<F>,
    ) -> Option<(u64, &'t AtomicU64)> {
        let inner = match node.node() {
            Node::Leaf(leaf) => return self.claim_in_leaf(leaf, base, lo, hi, Some(path)),
            Node::Inner(inner) => inner,
        };
        let shift = inner.level().shift();
        let first = ((lo - base) >> shift) as usize;
        let last = ((hi - base) >> shift) as usize;
        let mut i = first;
        while i <= last {
            if !exact {
                // Acquire: orders the walk's later loads (and the final
                // `hint_seq` load) after this one.
                let hint = inner.free_hint.load(Ordering::Acquire);
                if hint == 0 && path.len > 0 {
                    // Our parent said "free" but we are full: repair the hint.
                    self.propagate_full(path, NodeRef::Inner(inner.get()));
                }
                let window = hint & bit_range(i, last);
                if window == 0 {
                    return None;
                }
                i = window.trailing_zeros() as usize;
            }
            let child_base = base + ((i as u64) << shift);
            let child = self.child_or_install(inner, i, child_base);
            let child_lo = lo.max(child_base);
            let child_hi = hi.min(child_base + (1u64 << shift) - 1);
            path.push(inner.get(), i);
            if let Some(found) = self.claim_in(child, child_base, child_lo, child_hi, exact, path) {
                return Some(found);
            }
            path.pop();
            i += 1;
        }
        None
    }

    /// Claims the lowest free key of `leaf` in `lo..=hi`. `path`: the inner
    /// nodes above the leaf, or `None` to look them up if a propagation
    /// needs them.
    #[inline]
    fn claim_in_leaf<'t>(
        &'t self,
        leaf: &'t Leaf<F>,
        base: u64,
        lo: u64,
        hi: u64,
        path: Option<&Path<F>>,
    ) -> Option<(u64, &'t AtomicU64)> {
        let wanted = bit_range((lo - base) as usize, (hi - base) as usize);
        // Relaxed: only a guess at which bit to try; the fetch_or decides.
        let mut word = leaf.claimed.load(Ordering::Relaxed);
        loop {
            let free = !word & wanted;
            if free == 0 {
                if word == u64::MAX {
                    // Reached through a stale "free" hint: repair it.
                    self.propagate_leaf_full(leaf, base, path);
                }
                return None;
            }
            let bit = free & free.wrapping_neg();
            // Acquire: pairs with the Release clear in `release`, so the
            // previous owner's null store to the slot happens before the
            // caller publishes the new record there.
            let prev = leaf.claimed.fetch_or(bit, Ordering::Acquire);
            if prev & bit == 0 {
                if prev | bit == u64::MAX {
                    self.propagate_leaf_full(leaf, base, path);
                }
                let index = bit.trailing_zeros() as usize;
                return Some((base + index as u64, &leaf.slots[index]));
            }
            word = prev | bit;
        }
    }

    /// `leaf` (keys from `base`) was seen full: propagate, with `path` or
    /// the path looked up again.
    fn propagate_leaf_full(&self, leaf: &Leaf<F>, base: u64, path: Option<&Path<F>>) {
        if self.geo.levels() == 1 {
            return; // the root: no hint above it
        }
        match path {
            Some(path) => self.propagate_full(path, NodeRef::Leaf(leaf)),
            None => self.propagate_full(&self.path_to(base), NodeRef::Leaf(leaf)),
        }
    }

    /// Child `i` (over keys from `child_base`) of `inner`, installed if
    /// missing; a chunk installed below the directory's span is listed
    /// there before anyone uses it.
    #[inline]
    fn child_or_install<'t>(
        &'t self,
        inner: TreeInner<'t, F>,
        i: usize,
        child_base: u64,
    ) -> TreePos<'t, F> {
        inner.child_or_install(
            i,
            |level| Self::new_node(&self.geo, level, child_base, self.reclaim.is_some()),
            |child| {
                if child.level() == Level::CHUNK && child_base < self.dir_span {
                    self.dir_store(child_base, child);
                }
            },
        )
    }

    /// `child` (the node below the end of `path`) was seen full: clear its
    /// hint bit, re-check, and go up while nodes become empty.
    fn propagate_full(&self, path: &Path<F>, child: NodeRef<'_, F>) {
        // Relaxed: the Release clear below publishes this increment to any
        // walk that observes the clear.
        self.hint_seq
            .fetch_add(SEQ_STARTED_ONE | 1, Ordering::Relaxed);
        let mut child = child;
        for level in (0..path.len).rev() {
            let (inner, index) = path.get(level);
            let bit = 1u64 << index;
            // Release: publishes the `hint_seq` increment (see module docs).
            let prev = inner.free_hint.fetch_and(!bit, Ordering::Release);
            // SeqCst: our half of the Dekker pattern with `release`.
            fence(Ordering::SeqCst);
            if !child.is_full() {
                // A key was released meanwhile: undo; if that made the parent
                // non-empty again, mark it free in the ancestors too.
                // Release: pairs with the walkers' Acquire hint loads.
                if inner.free_hint.fetch_or(bit, Ordering::Release) == 0 {
                    self.repair_above(path, level);
                }
                break;
            }
            if prev & !bit != 0 {
                break; // the parent still has free children
            }
            child = NodeRef::Inner(inner);
        }
        self.exit_hint_update();
    }

    /// Counts a propagator or repairer in (see module docs).
    fn enter_hint_update(&self) {
        // Relaxed: the caller's next write is a Release RMW (a hint clear,
        // or a claim clear), which publishes this increment to anyone who
        // observes that write.
        self.hint_seq
            .fetch_add(SEQ_STARTED_ONE | 1, Ordering::Relaxed);
    }

    /// Counts a propagator or repairer out.
    fn exit_hint_update(&self) {
        // Release: a walk that reads the decrement sees all our hint writes.
        self.hint_seq.fetch_sub(1, Ordering::Release);
    }

    /// The node below `path[level - 1]` went from full to not full (the
    /// caller just wrote it): mark it free in its parent, and go on up while
    /// the parent had been empty. A SeqCst fence precedes each read.
    fn repair_above(&self, path: &Path<F>, level: usize) {
        for up in (0..level).rev() {
            // SeqCst: our half of the Dekker pattern with `propagate_full`.
            fence(Ordering::SeqCst);
            let (inner, index) = path.get(up);
            let bit = 1u64 << index;
            // Relaxed: after the fence. Set means the parent was not empty:
            // whoever made it so is the repairer for the levels above.
            if inner.free_hint.load(Ordering::Relaxed) & bit != 0 {
                return;
            }
            // Release: pairs with the walkers' Acquire hint loads.
            if inner.free_hint.fetch_or(bit, Ordering::Release) != 0 {
                return;
            }
        }
    }

    /// Makes a claimed key free again. The caller has already taken its
    /// record out of the slot.
    ///
    /// `slot` is the slot of `key`.
    pub(crate) fn release(&self, slot: Slot<'_, F>, key: u64) {
        debug_assert_eq!(slot.index, (key & Self::INDEX_MASK) as usize);
        let leaf = slot.leaf;
        let bit = 1u64 << slot.index;
        // Relaxed: a guess at the word; the CAS below decides.
        let mut word = leaf.claimed.load(Ordering::Relaxed);
        let mut counted = false;
        loop {
            debug_assert!(word & bit != 0, "release of a free key");
            if word == u64::MAX && !counted {
                // We may be the repairer: count in before the clear.
                self.enter_hint_update();
                counted = true;
            }
            // AcqRel: Release orders the caller's null store to the slot (and
            // our count-in) before the next claim or release of this leaf;
            // Acquire continues the chain from earlier repairers' clears.
            match leaf.claimed.compare_exchange_weak(
                word,
                word & !bit,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => word = now,
            }
        }
        if counted {
            if word == u64::MAX {
                let path = self.path_to(key);
                self.repair_above(&path, path.len);
            }
            self.exit_hint_update();
        }
        // Our bit was the leaf's last (a leaf with invalid keys below `F`
        // never empties so: its chunk has no block).
        if word & !bit == LeafBlock::<F>::EMPTY {
            self.leaf_emptied(key);
        }
    }

    /// The leaf of `key` was just emptied: in a reclaiming tree its chunk
    /// is examined if it lies outside the cursor's window.
    #[inline]
    fn leaf_emptied(&self, key: u64) {
        let Some(reclaim) = &self.reclaim else {
            return;
        };
        let chunk = key >> Self::CHUNK_BITS;
        // Relaxed: a heuristic; the retiring CASes decide.
        if !self.in_cursor_window(reclaim.cursor_chunk.load(Ordering::Relaxed), chunk) {
            self.reclaim_chunk(chunk);
        }
    }

    /// The inner nodes above the (existing) leaf of `key`.
    fn path_to(&self, key: u64) -> Path<F> {
        let mut path = Path::<F>::new();
        let mut node = self.root.pos();
        while let Some(inner) = node.inner() {
            let index = inner.level().index(key);
            path.push(inner.get(), index);
            // Acquire: pairs with the Release of `install`.
            node = inner
                .child(index, Ordering::Acquire)
                .expect("the leaf of a claimed key exists");
        }
        path
    }

    /// Number of slots holding a record (a walk over all nodes).
    pub(crate) fn count_live(&self) -> usize {
        let mut live = 0;
        self.slots_in(self.root.pos(), 0, &mut |_, slot| {
            // Relaxed: a snapshot count, exact only when quiescent.
            live += usize::from(slot.load(Ordering::Relaxed) != 0);
        });
        live
    }

    /// The first existing leaf with a claimed valid key `>= from`: its
    /// first key, the claim bits of those keys (invalid keys and keys below
    /// `from` masked off) and its slots. A claim bit is only a candidate:
    /// the caller loads the slot (a claim whose word is not published yet
    /// reads 0). For iterators over live IDs; they resume with `from` set
    /// to the next leaf's first key.
    pub(crate) fn next_claimed(&self, from: u64) -> Option<(u64, u64, &[AtomicU64; F])> {
        if from >= self.geo.span() {
            return None;
        }
        self.next_claimed_in(self.root.pos(), 0, from)
    }

    fn next_claimed_in<'t>(
        &'t self,
        node: TreePos<'t, F>,
        base: u64,
        from: u64,
    ) -> Option<(u64, u64, &'t [AtomicU64; F])> {
        let inner = match node.node() {
            Node::Leaf(leaf) => {
                // Acquire: a candidate only; the caller's Acquire load of the
                // slot is what orders the entry.
                let mut bits =
                    leaf.claimed.load(Ordering::Acquire) & self.geo.valid_mask(Level::LEAF, base);
                // Past this leaf only when it is the root (one level).
                if from - base >= F as u64 {
                    return None;
                }
                bits &= u64::MAX << (from - base);
                return (bits != 0).then_some((base, bits, &leaf.slots));
            }
            Node::Inner(inner) => inner,
        };
        let shift = inner.level().shift();
        let first = (from.saturating_sub(base) >> shift).min(F as u64) as usize;
        for i in first..F {
            // Acquire: pairs with the Release of `install`.
            if let Some(child) = inner.child(i, Ordering::Acquire) {
                let child_base = base + ((i as u64) << shift);
                let found = self.next_claimed_in(child, child_base, from.max(child_base));
                if found.is_some() {
                    return found;
                }
            }
        }
        None
    }

    /// Calls `visit(key, word)` for every live entry in ascending key
    /// order (a snapshot of each word, loaded with Acquire: a boxed value
    /// it names may be read under a guard pinned before the walk).
    pub(crate) fn for_each_live(&self, visit: &mut impl FnMut(u64, u64)) {
        self.slots_in(self.root.pos(), 0, &mut |key, slot| {
            // Acquire: pairs with the Release publish of the word, so a
            // boxed value's contents are visible.
            let word = slot.load(Ordering::Acquire);
            if word != 0 {
                visit(key, word);
            }
        });
    }

    /// Calls `drop_entry(key, word)` for every live entry and zeroes it.
    pub(crate) fn drain_live(&mut self, drop_entry: &mut impl FnMut(u64, u64)) {
        self.slots_in(self.root.pos(), 0, &mut |key, slot| {
            // Relaxed: `drain_live` takes `&mut self`, exclusive access.
            let word = slot.swap(0, Ordering::Relaxed);
            if word != 0 {
                drop_entry(key, word);
            }
        });
    }

    /// Calls `visit(key, slot)` for every slot of every existing leaf under
    /// `node` (over keys from `base`), in ascending key order.
    fn slots_in(&self, node: TreePos<'_, F>, base: u64, visit: &mut impl FnMut(u64, &AtomicU64)) {
        let inner = match node.node() {
            Node::Leaf(leaf) => {
                for (i, slot) in leaf.slots.iter().enumerate() {
                    visit(base + i as u64, slot);
                }
                return;
            }
            Node::Inner(inner) => inner,
        };
        let shift = inner.level().shift();
        for i in 0..F {
            // Acquire: pairs with the Release of `install` (for the drain,
            // under exclusive access, more than it needs).
            if let Some(child) = inner.child(i, Ordering::Acquire) {
                self.slots_in(child, base + ((i as u64) << shift), visit);
            }
        }
    }

    /// Bytes of node memory the tree holds.
    pub(crate) fn node_bytes(&self) -> usize {
        // Acquire: as in `chunk_of`.
        let dir = if self.dir.load(Ordering::Acquire).is_null() {
            0
        } else {
            self.dir_len * std::mem::size_of::<Link<Inner<F>, F>>()
        };
        dir + Self::bytes_in(self.root.pos())
    }

    fn bytes_in(node: TreePos<'_, F>) -> usize {
        let Some(inner) = node.inner() else {
            return std::mem::size_of::<Leaf<F>>();
        };
        if inner.block.is_some() {
            return std::mem::size_of::<Inner<F>>() + LeafBlock::<F>::layout().size();
        }
        let below: usize = (0..F)
            // Acquire: pairs with the Release of `install`.
            .filter_map(|i| inner.child(i, Ordering::Acquire))
            .map(Self::bytes_in)
            .sum();
        std::mem::size_of::<Inner<F>>() + below
    }
}

/// Reclaiming trees: the cursor's window and retiring (module docs,
/// "Reclaimed chunks").
impl<const F: usize> Tree<F> {
    /// Tells a reclaiming tree that its cursor handed out `key`, the key
    /// it handed out before being `last`: when the two lie in different
    /// chunks, the chunks that left the cursor's window are examined. A
    /// shift and a compare when they do not.
    #[inline]
    pub(crate) fn cursor_at(&self, last: u64, key: u64) {
        if (last ^ key) >> Self::CHUNK_BITS != 0 && self.reclaim.is_some() {
            self.cursor_entered(key);
        }
    }

    /// The cursor's chunk is now `key`'s: the old window's chunks that are
    /// not in the new one are examined.
    #[cold]
    #[inline(never)]
    fn cursor_entered(&self, key: u64) {
        let Some(reclaim) = &self.reclaim else {
            return;
        };
        let now = key >> Self::CHUNK_BITS;
        // Relaxed: a heuristic; the retiring CASes decide.
        let was = reclaim.cursor_chunk.swap(now, Ordering::Relaxed);
        if was == now {
            return;
        }
        let before_was = was.checked_sub(1).unwrap_or(self.chunk_count() - 1);
        for chunk in [was, before_was] {
            if !self.in_cursor_window(now, chunk) {
                self.reclaim_chunk(chunk);
            }
        }
        let next = if now + 1 == self.chunk_count() {
            0
        } else {
            now + 1
        };
        self.prefault_chunk(next);
    }

    /// Has the kernel map the pages of chunk number `chunk`'s leaf block
    /// writable, if it has one: the chunk the cursor enters next, whose
    /// pages were discarded when it was retired. One call instead of a
    /// read fault and a write fault per page as claims reach them; the
    /// contents are not changed (pages still mapped stay as they are, and
    /// discarded ones come back as zeros, as a first access would bring
    /// them), so it is safe beside any reader or writer of the block.
    fn prefault_chunk(&self, chunk: u64) {
        self.with_block(chunk, |_, block| block.prefault());
    }

    /// Calls `f` with the path down to chunk number `chunk` (that chunk
    /// last) and its leaf block, if the chunk exists and has one (a
    /// partial chunk never has).
    fn with_block(&self, chunk: u64, f: impl FnOnce(&Path<F>, &LeafBlock<F>)) {
        let base = chunk << Self::CHUNK_BITS;
        if base + Self::CHUNK > self.geo.span() {
            return;
        }
        let Some(path) = self.path_to_chunk(base) else {
            return; // never made
        };
        if let Some(block) = path.get(path.len - 1).0.block() {
            f(&path, block);
        }
    }

    /// Whether `key` lies in the window of a reclaiming tree's cursor whose
    /// next key is `cursor` (always, in other trees): the cursor's chunk
    /// and the one before it.
    pub(crate) fn near_cursor(&self, cursor: u64, key: u64) -> bool {
        self.reclaim.is_none()
            || self.in_cursor_window(cursor >> Self::CHUNK_BITS, key >> Self::CHUNK_BITS)
    }

    /// Tells a reclaiming tree where its cursor was put (a restore, before
    /// the tree is shared): `key` is the next key it hands out.
    pub(crate) fn cursor_placed(&self, key: u64) {
        if let Some(reclaim) = &self.reclaim {
            // Relaxed: before the tree is shared.
            reclaim.cursor_chunk.store(
                key.min(self.geo.span() - 1) >> Self::CHUNK_BITS,
                Ordering::Relaxed,
            );
        }
    }

    /// Number of chunks (the last may be partial).
    fn chunk_count(&self) -> u64 {
        self.geo.span().div_ceil(Self::CHUNK)
    }

    /// Whether `chunk` is the cursor's chunk `now` or the one before it
    /// (wrapping).
    #[inline]
    fn in_cursor_window(&self, now: u64, chunk: u64) -> bool {
        chunk == now || chunk + 1 == now || (now == 0 && chunk + 1 == self.chunk_count())
    }

    /// Whether this tree gives back the leaves of chunks its cursor left.
    pub(crate) fn reclaims(&self) -> bool {
        self.reclaim.is_some()
    }

    /// Chunks retired since the tree was made (0 unless reclaiming).
    pub(crate) fn chunks_retired(&self) -> u64 {
        // Relaxed: a statistic.
        self.reclaim
            .as_ref()
            .map_or(0, |r| r.retired.load(Ordering::Relaxed))
    }

    /// Retires chunk number `chunk` if it has a leaf block and every leaf
    /// is empty (module docs).
    #[cold]
    #[inline(never)]
    fn reclaim_chunk(&self, chunk: u64) {
        let Some(reclaim) = &self.reclaim else {
            return;
        };
        self.with_block(chunk, |path, block| {
            // Relaxed: a guess (the CASes in `retire` decide). The highest
            // leaf first: the last one the cursor filled, the likeliest to
            // be live.
            let empty = block
                .leaves
                .iter()
                .rev()
                .all(|leaf| leaf.claimed.load(Ordering::Relaxed) == LeafBlock::<F>::EMPTY);
            if empty {
                self.retire(reclaim, path, block);
            }
        });
    }

    /// Retires the chunk at the end of `path`, whose leaf block is `block`,
    /// unless a claim comes first (module docs).
    fn retire(&self, reclaim: &Reclaim, path: &Path<F>, block: &LeafBlock<F>) {
        // Acquire: after the previous retirer's writes (its Release below).
        if reclaim
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let (node, _) = path.get(path.len - 1);
        self.enter_hint_update();
        // Relaxed: as `enter_hint_update` (our next write is a Release RMW).
        reclaim
            .seq
            .fetch_add(SEQ_STARTED_ONE | 1, Ordering::Relaxed);
        let mut taken = 0;
        for leaf in &block.leaves {
            // AcqRel: Release publishes our count-ins to a claim that reads
            // the retired word; Acquire orders us after the leaf's last
            // release (and so after its slots' null stores).
            if leaf
                .claimed
                .compare_exchange(
                    LeafBlock::<F>::EMPTY,
                    u64::MAX,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                break;
            }
            taken += 1;
        }
        if taken == F {
            block.empty_retired();
            // Relaxed: a statistic.
            reclaim.retired.fetch_add(1, Ordering::Relaxed);
        } else {
            // A claim came first: put the taken leaves back, newest first
            // (so a racing retirer, which takes them oldest first, never
            // holds one of ours).
            for leaf in block.leaves[..taken].iter().rev() {
                leaf.put_back();
            }
        }
        // SeqCst: our half of the Dekker pattern with a propagation that
        // took a retired leaf for full (as a repairer's).
        fence(Ordering::SeqCst);
        // Every child is valid: the chunk lies wholly inside the span.
        // Release: pairs with the walkers' Acquire hint loads.
        if node.free_hint.fetch_or(low_bits(F), Ordering::Release) == 0 {
            self.repair_above(path, path.len - 1);
        }
        self.exit_hint_update();
        // Release: a scan that reads the decrement sees the leaves and
        // hints put back.
        reclaim.seq.fetch_sub(1, Ordering::Release);
        // Release: pairs with the next retirer's Acquire.
        reclaim.busy.store(false, Ordering::Release);
    }

    /// The inner nodes from the root down to the chunk over `base`, that
    /// chunk last; `None` if it does not exist.
    fn path_to_chunk(&self, base: u64) -> Option<Path<F>> {
        let mut path = Path::<F>::new();
        let mut node = self.root.pos();
        loop {
            let inner = node.inner()?;
            let index = inner.level().index(base);
            path.push(inner.get(), index);
            if inner.level() == Level::CHUNK {
                return Some(path);
            }
            // Acquire: pairs with the Release of `install`.
            node = inner.child(index, Ordering::Acquire)?;
        }
    }
}

/// The invariant walk (see [`Tree::check_quiescent`]).
impl<const F: usize> Tree<F> {
    /// Checks the tree's invariants in a quiescent state after single-threaded
    /// steps, and calls `visit(key, word)` for every live entry. A test aid:
    /// costs a walk of every node.
    ///
    /// - geometry: invalid keys' claim bits set, invalid children's hint bits
    ///   clear;
    /// - claims: a valid key's claim bit is set exactly when its slot holds
    ///   an entry (no claim left without an entry, no entry unclaimed);
    /// - hints, exact: hint bit `i` is clear exactly when child `i` exists
    ///   and is full. A clear bit over a free key would be a false ENOSPC
    ///   (or a skipped lower key for Lowest); a set bit over a full child is
    ///   a propagation that did not happen. Both directions hold after any
    ///   single-threaded history (concurrent ones may leave set bits over
    ///   full children, which walks repair);
    /// - `hint_seq`: no propagation or repair active;
    /// - directory: entry `i` is exactly the chunk over keys `i * F^2..`
    ///   (null when that chunk does not exist), and there is no array
    ///   while no chunk exists.
    pub(crate) fn check_quiescent(&self, visit: &mut impl FnMut(u64, u64)) -> Result<(), String> {
        // Relaxed: quiescent; the caller ordered itself after every writer.
        let seq = self.hint_seq.load(Ordering::Relaxed);
        if seq & SEQ_ACTIVE_MASK != 0 {
            return Err(format!("hint_seq {seq:#x}: a hint update is active"));
        }
        if let Some(reclaim) = &self.reclaim {
            // Relaxed: quiescent.
            let seq = reclaim.seq.load(Ordering::Relaxed);
            if seq & SEQ_ACTIVE_MASK != 0 {
                return Err(format!("reclaim seq {seq:#x}: a retire is active"));
            }
        }
        self.check_dir()?;
        self.check_node(self.root.pos(), 0, visit).map(drop)
    }

    fn check_dir(&self) -> Result<(), String> {
        // Relaxed: quiescent.
        let dir = self.dir.load(Ordering::Relaxed);
        for i in 0..self.dir_len {
            let base = i as u64 * Self::CHUNK;
            // The chunk over `base`, looked up from the root.
            let mut node = Some(self.root.pos());
            while let Some(inner) = node.and_then(|n| n.inner()) {
                if inner.level() == Level::CHUNK {
                    break;
                }
                // Relaxed: quiescent.
                node = inner.child(inner.level().index(base), Ordering::Relaxed);
            }
            let found = node.map_or(ptr::null(), |n| n.addr());
            let listed = if dir.is_null() {
                ptr::null()
            } else {
                // SAFETY: `i < dir_len`, inside the array.
                let entry = unsafe { &*dir.add(i) };
                // SAFETY: a directory entry is a chunk or null (field
                // invariant); only its address is used.
                // Relaxed: quiescent.
                unsafe { entry.load_at(Level::CHUNK, Ordering::Relaxed) }
                    .map_or(ptr::null(), |n| n.addr())
            };
            if listed != found {
                return Err(format!(
                    "directory entry {i}: {listed:p}, but the chunk over key {base} is {found:p}"
                ));
            }
        }
        Ok(())
    }

    /// Checks `node` (over keys from `base`); true if it is full.
    fn check_node(
        &self,
        node: TreePos<'_, F>,
        base: u64,
        visit: &mut impl FnMut(u64, u64),
    ) -> Result<bool, String> {
        let level = node.level();
        let valid = self.geo.valid_mask(level, base);
        let inner = match node.node() {
            Node::Leaf(leaf) => {
                // Relaxed: quiescent (see `check_quiescent`).
                let claimed = leaf.claimed.load(Ordering::Relaxed);
                if claimed & !valid != !valid {
                    return Err(format!(
                        "leaf {base}: invalid keys not claimed ({claimed:#x})"
                    ));
                }
                for (i, slot) in leaf.slots.iter().enumerate() {
                    // Relaxed: quiescent.
                    let word = slot.load(Ordering::Relaxed);
                    let key = base + i as u64;
                    let is_claimed = claimed & (1 << i) != 0;
                    if valid & (1 << i) == 0 {
                        if word != 0 {
                            return Err(format!("key {key}: entry beyond the span"));
                        }
                    } else if is_claimed != (word != 0) {
                        return Err(format!(
                            "key {key}: claim bit {is_claimed} but entry word {word:#x}"
                        ));
                    }
                    if word != 0 {
                        visit(key, word);
                    }
                }
                return Ok(claimed == u64::MAX);
            }
            Node::Inner(inner) => inner,
        };
        // Relaxed: quiescent.
        let hint = inner.free_hint.load(Ordering::Relaxed);
        let depth = self.geo.levels() - 1 - level.shift() / Self::BITS;
        if let Some(block) = inner.block() {
            for (i, leaf) in block.leaves.iter().enumerate() {
                // Relaxed: quiescent.
                let linked = inner.child(i, Ordering::Relaxed).map(|c| c.addr());
                if linked != Some(ptr::from_ref(leaf).cast()) {
                    return Err(format!(
                        "chunk {base}: child {i} is not its block's leaf {i}"
                    ));
                }
            }
        }
        if hint & !valid != 0 {
            return Err(format!(
                "level {depth} node {base}: hint {hint:#x} marks invalid children"
            ));
        }
        let shift = level.shift();
        for i in 0..F {
            if valid & (1 << i) == 0 {
                continue;
            }
            let child_base = base + ((i as u64) << shift);
            // Relaxed: quiescent.
            let full = match inner.child(i, Ordering::Relaxed) {
                Some(child) => self.check_node(child, child_base, visit)?,
                None => false,
            };
            let marked_free = hint & (1 << i) != 0;
            if marked_free == full {
                return Err(format!(
                    "level {depth} node {base}: hint bit {i} says {} but child {child_base} is {}",
                    if marked_free { "free" } else { "full" },
                    if full { "full" } else { "not full" },
                ));
            }
        }
        Ok(hint == 0)
    }
}

impl<const F: usize> Drop for Tree<F> {
    fn drop(&mut self) {
        // The nodes go with `root` (its drop); the directory goes here.
        // Relaxed: exclusive access.
        let dir = self.dir.load(Ordering::Relaxed);
        if !dir.is_null() {
            // SAFETY: the array `dir_store` installed, no longer reachable.
            drop(unsafe { Self::dir_box(dir, self.dir_len) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim_all<const F: usize>(tree: &Tree<F>, lo: u64, hi: u64) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some((key, _)) = tree.claim(lo, hi) {
            out.push(key);
        }
        out
    }

    #[test]
    fn fills_in_order_and_reports_full_from_the_root() {
        let tree: Tree<4> = Tree::new(37);
        let keys = claim_all(&tree, 0, 36);
        assert_eq!(keys, (0..37).collect::<Vec<_>>());
        // 37 keys at fan-out 4 need 3 levels, so the root is an inner node.
        let root = tree.root.pos().inner().unwrap();
        assert_eq!(
            root.free_hint.load(Ordering::Relaxed),
            0,
            "full tree: root hint empty"
        );
        tree.release(tree.slot(17).unwrap(), 17);
        assert_eq!(tree.claim(0, 36).map(|c| c.0), Some(17));
        assert_eq!(tree.claim(0, 36).map(|c| c.0), None);
    }

    #[test]
    fn low_subtree_claims_cross_its_edge() {
        // Fan-out 2 over 64 keys: 6 levels, the low subtree covers 0..16.
        let tree: Tree<2> = Tree::new(64);
        assert_eq!(
            (tree.low().level(), tree.low_span),
            (tree.geo.at_depth(2), 16)
        );
        let mut keys = Vec::new();
        while let Some((key, slot)) = tree.claim(0, 63) {
            slot.store(1, Ordering::Relaxed);
            keys.push(key);
        }
        assert_eq!(keys, (0..64).collect::<Vec<_>>());
        for key in [20, 3] {
            let slot = tree.slot(key).unwrap();
            slot.word().store(0, Ordering::Relaxed);
            tree.release(slot, key);
        }
        assert_eq!(tree.check_quiescent(&mut |_, _| ()), Ok(()));
        // The lowest is found in the low subtree, then above it.
        for want in [3, 20] {
            let (key, slot) = tree.claim(0, 63).unwrap();
            assert_eq!(key, want);
            slot.store(1, Ordering::Relaxed);
        }
        assert!(tree.claim(0, 63).is_none());
        assert!(tree.claim(10, 20).is_none());
        assert_eq!(tree.check_quiescent(&mut |_, _| ()), Ok(()));
    }

    #[test]
    fn directory_lists_chunks_and_claims_start_there() {
        // Fan-out 4 over 1000 keys: 5 levels, chunks of 16 keys, 63 entries.
        let tree: Tree<4> = Tree::new(1000);
        assert_eq!((tree.dir_len, tree.dir_span), (63, 1000));
        assert!(tree.dir.load(Ordering::Relaxed).is_null(), "no chunk yet");
        assert!(tree.slot(500).is_none());
        // Lowest from inside a chunk, across its leaves and out of it.
        let mut keys = Vec::new();
        while let Some((key, slot)) = tree.claim(13, 40) {
            slot.store(1, Ordering::Relaxed);
            keys.push(key);
        }
        assert_eq!(keys, (13..=40).collect::<Vec<_>>());
        assert_eq!(tree.check_quiescent(&mut |_, _| ()), Ok(()));
        assert!(tree.chunk_of(13).is_some() && tree.chunk_of(48).is_none());
        // A released key below others in its chunk is found first again.
        let slot = tree.slot(20).unwrap();
        slot.word().store(0, Ordering::Relaxed);
        tree.release(slot, 20);
        assert_eq!(tree.claim(13, 999).map(|c| c.0), Some(20));
        // A full chunk sends the claim on to the next one.
        assert_eq!(tree.claim(16, 999).map(|c| c.0), Some(41));
        assert_eq!(tree.slot(999).map(|s| s.index), None);
        assert_eq!(
            tree.check_quiescent(&mut |_, _| ()),
            Err("key 20: claim bit true but entry word 0x0".to_string())
        );
        // Beyond the directory (2^20 keys at fan-out 64): walked from the root.
        let big: Tree<64> = Tree::new(1 << 32);
        assert_eq!((big.dir_len, big.dir_span), (256, 1 << 20));
        assert_eq!(
            big.claim(1 << 20, u32::MAX as u64).map(|c| c.0),
            Some(1 << 20)
        );
        assert!(big.chunk_of(1 << 20).is_none() && big.slot(1 << 20).is_some());
        assert_eq!(big.claim(5, 5).map(|c| c.0), Some(5));
        assert!(big.chunk_of(5).is_some());
        assert_eq!(big.node_bytes() % 8, 0);
    }

    #[test]
    fn invariant_walk_catches_a_wrong_directory_entry() {
        let tree: Tree<4> = Tree::new(1000);
        for lo in [0, 16] {
            let (_, slot) = tree.claim(lo, 999).unwrap();
            slot.store(1, Ordering::Relaxed);
        }
        assert_eq!(tree.check_quiescent(&mut |_, _| ()), Ok(()));
        let dir = tree.dir.load(Ordering::Relaxed);
        // SAFETY: the array has 63 entries; this test is its only user.
        let (first, second) = unsafe { (&*dir, &*dir.add(1)) };
        // SAFETY: every pointer stored below is null or a chunk of this
        // tree, so the directory's typing holds throughout.
        let chunk = unsafe { second.swap_raw(ptr::null_mut()) };
        let err = tree.check_quiescent(&mut |_, _| ()).unwrap_err();
        assert!(err.starts_with("directory entry 1"), "{err}");
        // SAFETY: as above.
        unsafe { second.swap_raw(first.raw()) };
        assert!(tree.check_quiescent(&mut |_, _| ()).is_err());
        // SAFETY: as above.
        unsafe { second.swap_raw(chunk) };
        assert_eq!(tree.check_quiescent(&mut |_, _| ()), Ok(()));
    }

    /// A reclaiming tree driven as a Cyclic cursor drives it: claim the
    /// next key, tell the tree, release it.
    fn sweep<const F: usize>(tree: &Tree<F>, keys: std::ops::Range<u64>) {
        for key in keys {
            let (got, slot) = tree.claim(key, key).expect("free");
            assert_eq!(got, key);
            tree.cursor_at(key.wrapping_sub(1), key);
            slot.store(1, Ordering::Relaxed);
            slot.store(0, Ordering::Relaxed);
            tree.release(tree.slot(key).unwrap(), key);
            assert_eq!(tree.check_quiescent(&mut |_, _| ()), Ok(()), "after {key}");
        }
    }

    #[test]
    fn a_chunk_the_cursor_left_empty_is_retired_and_claimable_again() {
        // Fan-out 4 over 64 keys: four chunks of 16 keys, each with a block.
        let tree: Tree<4> = Tree::new_reclaiming(64);
        sweep(&tree, 0..32);
        assert_eq!(tree.chunks_retired(), 0, "chunks 0 and 1: the window");
        sweep(&tree, 32..33);
        assert_eq!(tree.chunks_retired(), 1, "entering chunk 2 retires 0");
        sweep(&tree, 33..64);
        assert_eq!(tree.chunks_retired(), 2, "entering chunk 3 retires 1");
        // Round again: chunk 0 is claimable in full, and entering it
        // retires chunk 2 (now outside the window of chunks 0 and 3).
        sweep(&tree, 0..16);
        assert_eq!(tree.chunks_retired(), 3);
        assert_eq!(claim_all(&tree, 0, 63).len(), 64, "every key free again");
    }

    #[test]
    fn a_chunk_with_a_live_key_is_kept_until_its_last_release() {
        let tree: Tree<4> = Tree::new_reclaiming(64);
        let (held, _) = tree.claim(5, 5).unwrap();
        tree.cursor_at(u64::MAX, held);
        tree.slot(held).unwrap().word().store(7, Ordering::Relaxed);
        sweep(&tree, 6..48);
        assert_eq!(tree.chunks_retired(), 0, "the cursor is in chunk 2");
        sweep(&tree, 48..49);
        assert_eq!(tree.chunks_retired(), 1, "chunk 1 only: 0 holds key 5");
        assert_eq!(tree.slot(held).unwrap().word().load(Ordering::Relaxed), 7);
        // The last release in chunk 0, outside the window, retires it.
        let slot = tree.slot(held).unwrap();
        slot.word().store(0, Ordering::Relaxed);
        tree.release(slot, held);
        assert_eq!(tree.chunks_retired(), 2);
        assert_eq!(tree.check_quiescent(&mut |_, _| ()), Ok(()));
        // A release inside the window retires nothing.
        sweep(&tree, 49..51);
        assert_eq!(tree.chunks_retired(), 2);
    }

    #[test]
    fn a_retire_that_meets_a_claim_puts_its_leaves_back() {
        let tree: Tree<4> = Tree::new_reclaiming(64);
        sweep(&tree, 0..16);
        // A claim in leaf 2 of chunk 0 (keys 8..12), then the retire itself
        // (past the examination, which would have seen the claim): it takes
        // leaves 0 and 1, fails on leaf 2, and puts 0 and 1 back.
        let (key, slot) = tree.claim(9, 9).unwrap();
        slot.store(3, Ordering::Relaxed);
        let path = tree.path_to_chunk(0).unwrap();
        let block = path.get(path.len - 1).0.block().unwrap();
        tree.retire(tree.reclaim.as_ref().unwrap(), &path, block);
        assert_eq!(tree.chunks_retired(), 0);
        assert_eq!(tree.check_quiescent(&mut |_, _| ()), Ok(()));
        assert_eq!(tree.slot(key).unwrap().word().load(Ordering::Relaxed), 3);
        let mut keys = claim_all(&tree, 0, 15);
        keys.sort_unstable();
        let expected: Vec<u64> = (0..16).filter(|&k| k != 9).collect();
        assert_eq!(keys, expected, "every other key of chunk 0 is claimable");
    }

    #[test]
    fn only_full_chunks_of_reclaiming_trees_have_blocks() {
        // 40 keys at fan-out 4: chunks 0 and 1 full, chunk 2 partial.
        let tree: Tree<4> = Tree::new_reclaiming(40);
        assert_eq!(claim_all(&tree, 0, 39).len(), 40);
        let has_block = |base| {
            tree.path_to_chunk(base)
                .map(|p| p.get(p.len - 1).0.block.is_some())
        };
        assert_eq!(has_block(0), Some(true));
        assert_eq!(has_block(16), Some(true));
        assert_eq!(has_block(32), Some(false), "the partial chunk");
        let plain: Tree<4> = Tree::new(40);
        assert_eq!(claim_all(&plain, 0, 39).len(), 40);
        assert_eq!(
            plain
                .path_to_chunk(0)
                .map(|p| p.get(p.len - 1).0.block.is_some()),
            Some(false)
        );
        assert_eq!(plain.chunks_retired(), 0);
    }

    /// At fan-out 64 a block is whole pages: a retired chunk's pages leave
    /// the process (`mincore` says none is resident), and its keys are
    /// claimed again as if new.
    #[cfg(all(target_os = "linux", not(miri)))]
    #[test]
    fn a_retired_block_of_pages_is_given_back_to_the_kernel() {
        let tree: Tree<64> = Tree::new_reclaiming(1 << 20);
        let chunk = Tree::<64>::CHUNK;
        // Fill chunk 0 (every page of its block written), then empty it.
        for key in 0..chunk {
            let (got, slot) = tree.claim(0, chunk - 1).unwrap();
            assert_eq!(got, key);
            slot.store(key + 1, Ordering::Relaxed);
        }
        tree.cursor_at(u64::MAX, 0);
        for key in 0..chunk {
            let slot = tree.slot(key).unwrap();
            slot.word().store(0, Ordering::Relaxed);
            tree.release(slot, key);
        }
        let path = tree.path_to_chunk(0).unwrap();
        let block = path.get(path.len - 1).0.block.unwrap();
        let len = LeafBlock::<64>::layout().size();
        // SAFETY: no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let resident = || {
            let mut pages = vec![0u8; len.div_ceil(page)];
            // SAFETY: the block's allocation, whole pages (4096-aligned, on
            // a 4096-byte page system), and a vector of one byte per page.
            let rc = unsafe { libc::mincore(block.as_ptr().cast(), len, pages.as_mut_ptr()) };
            assert_eq!(rc, 0);
            pages.iter().filter(|&&p| p & 1 != 0).count()
        };
        if page != BLOCK_ALIGN {
            return; // larger pages: the claim words are stored back instead
        }
        assert_eq!(resident(), len / page, "a used block is resident");
        // The cursor moves on two chunks: chunk 0 leaves its window.
        tree.cursor_at(chunk - 1, chunk);
        tree.cursor_at(2 * chunk - 1, 2 * chunk);
        assert_eq!(tree.chunks_retired(), 1);
        // At most the page of the canary, which the retire read back
        // (mapped to the kernel's shared zero page, not memory of ours).
        assert!(resident() <= 1, "the retired block's pages are gone");
        assert_eq!(tree.check_quiescent(&mut |_, _| ()), Ok(()));
        assert_eq!(tree.slot(77).unwrap().word().load(Ordering::Relaxed), 0);
        assert_eq!(tree.claim(0, chunk - 1).map(|c| c.0), Some(0));
    }

    #[test]
    fn partial_ranges_inside_one_leaf_and_across_leaves() {
        let tree: Tree<4> = Tree::new(64);
        assert_eq!(claim_all(&tree, 5, 6), vec![5, 6]);
        assert_eq!(claim_all(&tree, 3, 9), vec![3, 4, 7, 8, 9]);
        assert_eq!(claim_all(&tree, 63, 63), vec![63]);
        tree.release(tree.slot(4).unwrap(), 4);
        assert_eq!(claim_all(&tree, 0, 63).first(), Some(&0));
        assert_eq!(tree.count_live(), 0, "claims without entries are not live");
    }
}
