//! Set private IDs (SPEC 6.5): per-set tables SPID -> host ID.
//!
//! (The attach/detach/find protocol is added below the table.)

use crate::sync::{atomic_array, install, AtomicPtr, AtomicU32, Mutex, Ordering};
use std::ptr;

const FAN_BITS: u32 = 8;
const FAN: usize = 1 << FAN_BITS;

type Leaf = [AtomicU32; FAN];
type Inner<N> = [AtomicPtr<N>; FAN];

/// SPID -> host ID + 1 (0: none), a four-level radix of 256-way nodes keyed
/// by the SPID's bytes, built as SPIDs are attached.
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
        let byte = |shift: u32| (spid >> shift) as usize & (FAN - 1);
        let a = child(&self.root[byte(24)], create, || {
            atomic_array(|_| AtomicPtr::new(ptr::null_mut()))
        })?;
        let b = child(&a[byte(16)], create, || {
            atomic_array(|_| AtomicPtr::new(ptr::null_mut()))
        })?;
        let leaf = child(&b[byte(8)], create, || atomic_array(|_| AtomicU32::new(0)))?;
        Some(&leaf[byte(0)])
    }
}

fn child<N>(slot: &AtomicPtr<N>, create: bool, make: impl FnOnce() -> N) -> Option<&N> {
    // Acquire: pairs with the Release of `install`, so the node's
    // initialised contents are visible.
    let mut node = slot.load(Ordering::Acquire);
    if node.is_null() {
        if !create {
            return None;
        }
        node = install(slot, Box::into_raw(Box::new(make())), |lost| {
            // SAFETY: our unpublished node.
            drop(unsafe { Box::from_raw(lost) })
        });
    }
    // SAFETY: installed nodes live as long as the table (never replaced).
    Some(unsafe { &*node })
}

/// Frees the nodes under `slot` (exclusive access).
fn free<N>(slot: &AtomicPtr<N>, inner: impl FnOnce(&N)) {
    // Relaxed: exclusive access (the table is being dropped).
    let node = slot.load(Ordering::Relaxed);
    if !node.is_null() {
        // SAFETY: our node, installed by `child` from a Box.
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
