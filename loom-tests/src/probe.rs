//! Drop-counting, causality-checked data for the models.
//!
//! A [`Probe`] carries a token (which allocation it is) and a value held in
//! a loom `UnsafeCell`. loom counts the cell's creation as a write, so a
//! thread that reads [`Probe::value`] without a happens-before edge from the
//! thread that built the probe (a record published too weakly) fails the
//! model with a causality violation. Dropping a probe bumps its token's
//! counter in the [`Ledger`], which outlives every probe, so a model can
//! assert "not dropped yet" while it still holds a reference and "dropped
//! exactly once" at the end.
//!
//! The ledger's counters are loom atomics on purpose: a drop and a
//! reader's "not dropped yet" check then touch the same loom object, so
//! loom explores the interleavings where the drop comes between a reader's
//! lookup and its check (with std atomics loom would not see the conflict
//! and would never schedule that order). Counts are incremented with
//! Release and read with Acquire, so a count a thread sees also carries the
//! drop's happens-before edge.

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// How many probes a model may make.
const MAX_TOKENS: usize = 16;

/// Drop counts, one per token.
#[derive(Clone)]
pub struct Ledger {
    drops: Arc<[AtomicUsize; MAX_TOKENS]>,
}

impl Default for Ledger {
    fn default() -> Self {
        Self::new()
    }
}

impl Ledger {
    /// A ledger with every count at zero. Make it inside the model: its
    /// counters are loom objects of one execution.
    pub fn new() -> Self {
        Ledger {
            drops: Arc::new(std::array::from_fn(|_| AtomicUsize::new(0))),
        }
    }

    /// A probe with this token and value, counted by this ledger.
    pub fn probe(&self, token: usize, value: u64) -> Probe {
        assert!(token < MAX_TOKENS, "token {token} out of range");
        Probe {
            token,
            value: UnsafeCell::new(value),
            ledger: self.clone(),
        }
    }

    /// How many times the probe with `token` was dropped.
    pub fn drops(&self, token: usize) -> usize {
        // Acquire: pairs with the Release increment in `Probe::drop`.
        self.drops[token].load(Ordering::Acquire)
    }

    /// Total drops over all tokens.
    pub fn total_drops(&self) -> usize {
        (0..MAX_TOKENS).map(|t| self.drops(t)).sum()
    }
}

/// A value whose reads loom checks for causality and whose drop is counted.
pub struct Probe {
    token: usize,
    value: UnsafeCell<u64>,
    ledger: Ledger,
}

// SAFETY: the cell is written only when the probe is made (and freed when
// it is dropped); afterwards it is only read, so shared references may cross
// threads. loom checks that every read happens after the write.
unsafe impl Sync for Probe {}

// SAFETY: the provided methods store the value boxed, so a lookup hands out
// a reference to the published probe itself.
unsafe impl ioasid::Payload for Probe {}

impl Probe {
    /// Which allocation this probe is.
    pub fn token(&self) -> usize {
        self.token
    }

    /// The value, read through loom's causality checker. Panics if the
    /// probe was already dropped (a use after free that the epoch should
    /// have prevented).
    pub fn value(&self) -> u64 {
        assert_eq!(
            self.ledger.drops(self.token),
            0,
            "probe {} read after it was dropped",
            self.token
        );
        // SAFETY: the cell is never written after construction, so no
        // mutable reference exists; loom checks the read is ordered after
        // the construction's write.
        self.value.with(|value| unsafe { *value })
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        // Release: pairs with the Acquire load in `Ledger::drops`.
        self.ledger.drops[self.token].fetch_add(1, Ordering::Release);
    }
}
