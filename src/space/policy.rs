//! Allocation policies: which free ID a software claim takes.
//!
//! Lowest claims the lowest free key in range; Cyclic starts at the cursor
//! (the key after the last one handed out) and wraps; Any starts at the
//! calling thread's region. Every policy claims through `Tree::claim`,
//! whose free hints keep ENOSPC truthful: a key free in range for the whole
//! call is found.

use super::SpaceInner;
use crate::entry::Payload;
use crate::error::Error;
use crate::sync::{thread_local, AtomicU64, Ordering};
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

impl<T: Payload, const F: usize> SpaceInner<T, F> {
    pub(super) fn claim_by_policy(
        &self,
        lo: Ioasid,
        hi: Ioasid,
    ) -> Result<(Ioasid, &AtomicU64), Error> {
        let (lo, hi) = (u64::from(lo - self.min), u64::from(hi - self.min));
        let (key, slot) = match self.policy {
            Policy::Lowest => self.tree.claim(lo, hi),
            Policy::Cyclic => {
                // Relaxed: the cursor is a starting hint; claims decide.
                let cursor = self.cursor.load(Ordering::Relaxed);
                // Past the requested range, "after the last one" wraps to lo.
                let start = if cursor > hi { lo } else { cursor.max(lo) };
                let found = self.claim_from(start, lo, hi);
                if let Some((key, _)) = found {
                    let next = if key + 1 >= self.tree.span() {
                        0
                    } else {
                        key + 1
                    };
                    // Relaxed: as above.
                    self.cursor.store(next, Ordering::Relaxed);
                }
                found
            }
            Policy::Any => {
                // The thread's own region (a leaf-aligned start from its
                // seed): a function of the range and the thread alone, no
                // history, so a restored space answers as the original
                // (snapshot.rs). A thread that frees and allocates again
                // finds the same key (hot in cache); the free hints skip
                // full leaves past the start.
                let region = (thread_seed() >> 16) % (hi - lo + 1);
                self.claim_from(lo + region - region % F as u64, lo, hi)
            }
        }
        .ok_or(Error::NoSpace)?;
        Ok((self.id_of(key), slot))
    }

    /// Claims in `start..=hi`, then in `lo..start`.
    fn claim_from(&self, start: u64, lo: u64, hi: u64) -> Option<(u64, &AtomicU64)> {
        self.tree.claim(start, hi).or_else(|| {
            if start > lo {
                self.tree.claim(lo, start - 1)
            } else {
                None
            }
        })
    }
}
