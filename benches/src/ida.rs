//! The IDA/IDR-shaped baseline: a lowest-free bitmap plus a slot vector,
//! what a user writes before reaching for a lock-free allocator.
//!
//! [`LowestBitmap`] answers "lowest free key in `[a, b]`" with two levels of
//! bits: `taken` (one bit per key) and `full` (one bit per `taken` word that
//! has no free bit). A search skips full words 64 at a time through `full`,
//! so a full 2^20 space answers ENOSPC after reading 256 summary words, as
//! the kernel's IDA answers from its radix tree rather than by a linear scan.
//!
//! INVARIANT: bit `w` of `full` is set iff `taken[w] == u64::MAX`; words past
//! the end of `taken` (and of `full`) are free (and not full). Storage grows
//! on demand to the highest key ever claimed, never beyond the span.
//!
//! [`Ida`] adds one `Option<T>` slot per key (the IDR half). Neither type is
//! thread-safe on its own; the benches wrap them in `Mutex` or `RwLock`.

/// Lowest-free allocation over the keys `0..span`.
#[derive(Debug, Default)]
pub struct LowestBitmap {
    span: u64,
    taken: Vec<u64>,
    full: Vec<u64>,
    live: usize,
}

impl LowestBitmap {
    /// An empty bitmap over the keys `0..span` (`span <= 2^32`).
    pub fn new(span: u64) -> Self {
        assert!((1..=1 << 32).contains(&span), "span out of range");
        LowestBitmap {
            span,
            taken: Vec::new(),
            full: Vec::new(),
            live: 0,
        }
    }

    /// Number of keys.
    pub fn span(&self) -> u64 {
        self.span
    }

    /// Number of claimed keys.
    pub fn live(&self) -> usize {
        self.live
    }

    /// True if `key` is claimed.
    pub fn contains(&self, key: u64) -> bool {
        let word = (key / 64) as usize;
        self.taken
            .get(word)
            .is_some_and(|bits| bits & (1 << (key % 64)) != 0)
    }

    /// The first word at or after `from` that is not full (may be past the end).
    fn next_open_word(&self, from: usize) -> usize {
        let mut summary = from / 64;
        let mut open = match self.full.get(summary) {
            Some(bits) => !bits & (u64::MAX << (from % 64)),
            None => return from,
        };
        while open == 0 {
            summary += 1;
            match self.full.get(summary) {
                Some(bits) => open = !bits,
                None => return summary * 64,
            }
        }
        summary * 64 + open.trailing_zeros() as usize
    }

    /// Claims the lowest free key in `a..=b`, or `None` (ENOSPC).
    pub fn claim_lowest(&mut self, a: u64, b: u64) -> Option<u64> {
        if a > b || b >= self.span {
            return None;
        }
        let (first_word, last_word) = ((a / 64) as usize, (b / 64) as usize);
        let mut word = first_word;
        while word <= last_word {
            let key = match self.taken.get(word) {
                None => (word as u64 * 64).max(a),
                Some(&bits) => {
                    let mut free = !bits;
                    if word == first_word {
                        free &= u64::MAX << (a % 64);
                    }
                    if word == last_word {
                        free &= u64::MAX >> (63 - b % 64);
                    }
                    if free == 0 {
                        word = self.next_open_word(word + 1);
                        continue;
                    }
                    word as u64 * 64 + u64::from(free.trailing_zeros())
                }
            };
            self.set(key);
            return Some(key);
        }
        None
    }

    /// Claims exactly `key`: false if it is taken or out of the span.
    pub fn claim_exact(&mut self, key: u64) -> bool {
        if key >= self.span || self.contains(key) {
            return false;
        }
        self.set(key);
        true
    }

    fn set(&mut self, key: u64) {
        let word = (key / 64) as usize;
        if word >= self.taken.len() {
            self.taken.resize(word + 1, 0);
            self.full.resize(word / 64 + 1, 0);
        }
        self.taken[word] |= 1 << (key % 64);
        // The last word of a span that is not a multiple of 64 never fills;
        // that only costs the search one extra word.
        if self.taken[word] == u64::MAX {
            self.full[word / 64] |= 1 << (word % 64);
        }
        self.live += 1;
    }

    /// Releases `key`: false if it was not claimed.
    pub fn release(&mut self, key: u64) -> bool {
        if !self.contains(key) {
            return false;
        }
        let word = (key / 64) as usize;
        self.taken[word] &= !(1 << (key % 64));
        self.full[word / 64] &= !(1 << (word % 64));
        self.live -= 1;
        true
    }

    /// Bytes of heap this bitmap holds.
    pub fn heap_bytes(&self) -> usize {
        (self.taken.capacity() + self.full.capacity()) * 8
    }
}

/// The kernel IDR shape: a [`LowestBitmap`] plus one slot per key.
#[derive(Debug)]
pub struct Ida<T> {
    bitmap: LowestBitmap,
    slots: Vec<Option<T>>,
}

impl<T> Ida<T> {
    /// An empty allocator over the keys `0..span`.
    pub fn new(span: u64) -> Self {
        Ida {
            bitmap: LowestBitmap::new(span),
            slots: Vec::new(),
        }
    }

    /// Allocates the lowest free key in `a..=b` with `value`.
    pub fn alloc(&mut self, a: u64, b: u64, value: T) -> Option<u64> {
        let key = self.bitmap.claim_lowest(a, b)?;
        self.store(key, value);
        Some(key)
    }

    /// Allocates exactly `key` with `value`: false if taken or out of span.
    pub fn alloc_exact(&mut self, key: u64, value: T) -> bool {
        if !self.bitmap.claim_exact(key) {
            return false;
        }
        self.store(key, value);
        true
    }

    fn store(&mut self, key: u64, value: T) {
        let index = key as usize;
        if index >= self.slots.len() {
            self.slots.resize_with(index + 1, || None);
        }
        self.slots[index] = Some(value);
    }

    /// Frees `key`, returning its value, or `None` if it was not live.
    pub fn free(&mut self, key: u64) -> Option<T> {
        if !self.bitmap.release(key) {
            return None;
        }
        self.slots[key as usize].take()
    }

    /// The value of live `key`.
    pub fn find(&self, key: u64) -> Option<&T> {
        self.slots.get(key as usize)?.as_ref()
    }

    /// Number of live keys.
    pub fn live(&self) -> usize {
        self.bitmap.live()
    }

    /// Calls `f` for every live key in ascending order (a scan of the slots).
    pub fn for_each(&self, mut f: impl FnMut(u64, &T)) {
        for (key, slot) in self.slots.iter().enumerate() {
            if let Some(value) = slot {
                f(key as u64, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_first_and_reuse_of_freed_keys() {
        let mut ida = Ida::new(1000);
        for expect in 0..200 {
            assert_eq!(ida.alloc(0, 999, expect), Some(expect));
        }
        assert_eq!(ida.free(70), Some(70));
        assert_eq!(ida.free(70), None, "double free");
        assert_eq!(ida.free(3), Some(3));
        assert_eq!(ida.alloc(0, 999, 0), Some(3));
        assert_eq!(ida.alloc(0, 999, 0), Some(70));
        assert_eq!(ida.alloc(0, 999, 0), Some(200));
        assert_eq!(ida.alloc(150, 999, 0), Some(201));
        assert_eq!(ida.find(150), Some(&150));
        assert_eq!(ida.find(500), None);
        assert_eq!(ida.live(), 202);
    }

    #[test]
    fn respects_range_bounds_inside_one_word_and_across_words() {
        let mut ida = Ida::new(1 << 20);
        assert_eq!(ida.alloc(5, 6, ()), Some(5));
        assert_eq!(ida.alloc(5, 6, ()), Some(6));
        assert_eq!(ida.alloc(5, 6, ()), None);
        assert_eq!(ida.alloc(60, 70, ()), Some(60));
        assert_eq!(ida.alloc(1 << 19, 1 << 20, ()), None, "b beyond span");
        assert_eq!(ida.alloc(1 << 19, (1 << 20) - 1, ()), Some(1 << 19));
        assert_eq!(ida.alloc(9, 3, ()), None, "reversed range");
    }

    #[test]
    fn full_space_answers_enospc_and_frees_reopen_it() {
        let span = 64 * 64 * 3 + 17; // several summary words, ragged end
        let mut bitmap = LowestBitmap::new(span);
        for expect in 0..span {
            assert_eq!(bitmap.claim_lowest(0, span - 1), Some(expect));
        }
        assert_eq!(bitmap.claim_lowest(0, span - 1), None);
        assert_eq!(bitmap.claim_lowest(100, 200), None);
        assert!(bitmap.release(4097));
        assert!(bitmap.release(span - 1));
        assert_eq!(bitmap.claim_lowest(5000, span - 1), Some(span - 1));
        assert_eq!(bitmap.claim_lowest(0, span - 1), Some(4097));
        assert_eq!(bitmap.live() as u64, span);
    }

    #[test]
    fn exact_claims_and_for_each_order() {
        let mut ida = Ida::new(1 << 24);
        for key in [900_000u64, 16, 32, 5_000_000] {
            assert!(ida.alloc_exact(key, key * 2));
        }
        assert!(!ida.alloc_exact(16, 0));
        assert!(!ida.alloc_exact(1 << 24, 0));
        let mut seen = Vec::new();
        ida.for_each(|k, v| seen.push((k, *v)));
        assert_eq!(
            seen,
            vec![
                (16, 32),
                (32, 64),
                (900_000, 1_800_000),
                (5_000_000, 10_000_000)
            ]
        );
        assert_eq!(ida.alloc(0, 100, 0), Some(0));
    }
}
