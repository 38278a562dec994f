//! The "kernel model" baseline: the Linux ioasid allocator's locking shape,
//! a spinlock for writers and RCU for readers.
//!
//! Writers take a `Mutex` around a [`LowestBitmap`] (number choice) and
//! publish a boxed value into a two-level slot table; readers pin a
//! crossbeam-epoch guard and load at most two pointers, never locking.
//! Freed values are reclaimed through the epoch, as `kfree_rcu` does.
//!
//! INVARIANT: a slot is written only by the thread holding the writer lock;
//! chunks of the slot table are installed once (under the lock) and live as
//! long as the table, so a reader needs the epoch only for values.

use crate::ida::LowestBitmap;
use crossbeam_epoch::{self as epoch, Atomic, Guard, Owned};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Mutex;

/// Slots per chunk of the table.
const CHUNK: usize = 4096;

type Chunk<T> = [Atomic<T>; CHUNK];

/// Mutex-for-writers, epoch-for-readers ID allocator over keys `0..span`.
pub struct KernelModel<T> {
    writer: Mutex<LowestBitmap>,
    chunks: Box<[AtomicPtr<Chunk<T>>]>,
}

// SAFETY: values cross threads (published by one, read and dropped by
// others) and readers share `&T`; everything shared is an atomic or a Mutex.
unsafe impl<T: Send + Sync> Send for KernelModel<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for KernelModel<T> {}

impl<T: Send + Sync + 'static> KernelModel<T> {
    /// An empty allocator over the keys `0..span`.
    pub fn new(span: u64) -> Self {
        let chunks = (span as usize).div_ceil(CHUNK);
        KernelModel {
            writer: Mutex::new(LowestBitmap::new(span)),
            chunks: (0..chunks)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
        }
    }

    fn slot_or_install(&self, key: u64) -> &Atomic<T> {
        let chunk = &self.chunks[key as usize / CHUNK];
        // Relaxed: only the lock holder (us) installs chunks.
        let mut ptr = chunk.load(Ordering::Relaxed);
        if ptr.is_null() {
            let fresh: Box<Chunk<T>> = Box::new(std::array::from_fn(|_| Atomic::null()));
            ptr = Box::into_raw(fresh);
            // Release: pairs with the readers' Acquire load, so they see
            // the chunk's initialised (null) slots.
            chunk.store(ptr, Ordering::Release);
        }
        // SAFETY: installed chunks live as long as `self`.
        unsafe { &(*ptr)[key as usize % CHUNK] }
    }

    fn publish(&self, key: u64, value: T) {
        let slot = self.slot_or_install(key);
        // Release: publishes the value's contents to Acquire loads in `find`.
        slot.store(Owned::new(value), Ordering::Release);
    }

    /// Allocates the lowest free key in `a..=b` with `value`.
    pub fn alloc(&self, a: u64, b: u64, value: T) -> Option<u64> {
        let mut bitmap = self.writer.lock().unwrap();
        let key = bitmap.claim_lowest(a, b)?;
        self.publish(key, value);
        Some(key)
    }

    /// Allocates exactly `key`: false if taken or out of span.
    pub fn alloc_exact(&self, key: u64, value: T) -> bool {
        let mut bitmap = self.writer.lock().unwrap();
        if !bitmap.claim_exact(key) {
            return false;
        }
        self.publish(key, value);
        true
    }

    /// Frees `key`: false if it was not live. The value is dropped once no
    /// reader can see it.
    pub fn free(&self, key: u64) -> bool {
        let mut bitmap = self.writer.lock().unwrap();
        if !bitmap.release(key) {
            return false;
        }
        let guard = epoch::pin();
        let slot = self.slot_or_install(key);
        // Relaxed: the lock orders us after the publishing writer.
        let old = slot.swap(epoch::Shared::null(), Ordering::Relaxed, &guard);
        // SAFETY: the value is unreachable now; readers that loaded it are
        // pinned, and the epoch drops it after them.
        unsafe { guard.defer_destroy(old) };
        true
    }

    /// The value of live `key`, valid while `guard` lives. Takes no lock.
    pub fn find<'g>(&self, key: u64, guard: &'g Guard) -> Option<&'g T> {
        let chunk = self.chunks.get(key as usize / CHUNK)?;
        // Acquire: pairs with the Release install.
        let ptr = chunk.load(Ordering::Acquire);
        if ptr.is_null() {
            return None;
        }
        // SAFETY: installed chunks live as long as `self`.
        let slot = unsafe { &(*ptr)[key as usize % CHUNK] };
        // Acquire: pairs with the Release publish.
        let value = slot.load(Ordering::Acquire, guard);
        // SAFETY: a published value is dropped only through the epoch,
        // after `guard`.
        unsafe { value.as_ref() }
    }

    /// Calls `f` for every live key in ascending order (a scan of the table).
    pub fn for_each(&self, mut f: impl FnMut(u64, &T)) {
        let guard = epoch::pin();
        for (c, chunk) in self.chunks.iter().enumerate() {
            // Acquire: pairs with the Release install.
            let ptr = chunk.load(Ordering::Acquire);
            if ptr.is_null() {
                continue;
            }
            // SAFETY: installed chunks live as long as `self`.
            for (i, slot) in unsafe { &*ptr }.iter().enumerate() {
                // Acquire: pairs with the Release publish.
                // SAFETY: as in `find`.
                if let Some(value) = unsafe { slot.load(Ordering::Acquire, &guard).as_ref() } {
                    f((c * CHUNK + i) as u64, value);
                }
            }
        }
    }
}

impl<T> Drop for KernelModel<T> {
    fn drop(&mut self) {
        for chunk in self.chunks.iter() {
            // Relaxed: `&mut self`, exclusive access.
            let ptr = chunk.load(Ordering::Relaxed);
            if ptr.is_null() {
                continue;
            }
            // SAFETY: chunks are boxes made in `slot_or_install`; nobody
            // else can reach them now.
            let chunk = unsafe { Box::from_raw(ptr) };
            for slot in chunk.iter() {
                // SAFETY: exclusive access; values still in slots are owned.
                let value = unsafe { slot.load(Ordering::Relaxed, epoch::unprotected()) };
                if !value.is_null() {
                    // SAFETY: as above, the value is ours alone.
                    drop(unsafe { value.into_owned() });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[test]
    fn allocates_lowest_and_finds_without_lock() {
        let model = KernelModel::new(10_000);
        for expect in 0..5000 {
            assert_eq!(model.alloc(0, 9999, expect * 3), Some(expect));
        }
        assert!(model.free(17));
        assert!(!model.free(17));
        assert_eq!(model.alloc(0, 9999, 1), Some(17));
        assert!(model.alloc_exact(9999, 5));
        assert!(!model.alloc_exact(9999, 5));
        let guard = epoch::pin();
        assert_eq!(model.find(4096, &guard), Some(&(4096 * 3)));
        assert_eq!(model.find(17, &guard), Some(&1));
        assert_eq!(model.find(6000, &guard), None);
        assert_eq!(model.find(20_000, &guard), None);
        let mut count = 0;
        model.for_each(|_, _| count += 1);
        assert_eq!(count, 5001);
    }

    struct CountsDrops(Arc<AtomicUsize>);
    impl Drop for CountsDrops {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn values_are_dropped_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let model = KernelModel::new(100);
        for _ in 0..10 {
            model.alloc(0, 99, CountsDrops(drops.clone())).unwrap();
        }
        assert!(model.free(3));
        drop(model);
        // The freed one goes through the epoch; flush until it is collected.
        for _ in 0..1000 {
            if drops.load(Ordering::Relaxed) == 10 {
                break;
            }
            epoch::pin().flush();
        }
        assert_eq!(drops.load(Ordering::Relaxed), 10);
    }
}
