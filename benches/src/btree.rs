//! The `BTreeMap` baseline: an ordered map from ID to value, with cyclic
//! number choice (what a user writes with a map and a "next" counter).
//!
//! Lowest-free order would cost a walk over every live key below the first
//! gap (quadratic to fill a space), so this allocator starts at the key after
//! the last one it handed out and walks forward to the first gap, wrapping
//! once. A space that is full over the whole span answers ENOSPC from the
//! map's length; a full sub-range is found by the walk (linear).

use std::collections::BTreeMap;

/// A cyclic ID allocator over the keys `0..span`.
#[derive(Debug)]
pub struct BTreeAlloc<T> {
    span: u64,
    next: u64,
    map: BTreeMap<u64, T>,
}

impl<T> BTreeAlloc<T> {
    /// An empty allocator over the keys `0..span`.
    pub fn new(span: u64) -> Self {
        BTreeAlloc {
            span,
            next: 0,
            map: BTreeMap::new(),
        }
    }

    /// The first free key in `from..=to`.
    fn first_gap(&self, from: u64, to: u64) -> Option<u64> {
        let mut candidate = from;
        for &key in self.map.range(from..=to).map(|(k, _)| k) {
            if key != candidate {
                break;
            }
            candidate += 1;
        }
        (candidate <= to).then_some(candidate)
    }

    /// Allocates a free key in `a..=b`, the first one at or after the key
    /// following the last allocation (wrapping to `a`).
    pub fn alloc(&mut self, a: u64, b: u64, value: T) -> Option<u64> {
        if a > b || b >= self.span {
            return None;
        }
        if a == 0 && b == self.span - 1 && self.map.len() as u64 == self.span {
            return None;
        }
        let start = self.next.clamp(a, b);
        let key = self
            .first_gap(start, b)
            .or_else(|| (start > a).then(|| self.first_gap(a, start - 1)).flatten())?;
        self.map.insert(key, value);
        self.next = if key + 1 >= self.span { 0 } else { key + 1 };
        Some(key)
    }

    /// Allocates exactly `key`: false if taken or out of span.
    pub fn alloc_exact(&mut self, key: u64, value: T) -> bool {
        if key >= self.span || self.map.contains_key(&key) {
            return false;
        }
        self.map.insert(key, value);
        true
    }

    /// Frees `key`, returning its value.
    pub fn free(&mut self, key: u64) -> Option<T> {
        self.map.remove(&key)
    }

    /// The value of live `key`.
    pub fn find(&self, key: u64) -> Option<&T> {
        self.map.get(&key)
    }

    /// Number of live keys.
    pub fn live(&self) -> usize {
        self.map.len()
    }

    /// Calls `f` for every live key in ascending order.
    pub fn for_each(&self, mut f: impl FnMut(u64, &T)) {
        for (&key, value) in &self.map {
            f(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cyclic_order_delays_reuse_and_wraps() {
        let mut alloc = BTreeAlloc::new(8);
        assert_eq!(alloc.alloc(0, 7, 'a'), Some(0));
        assert_eq!(alloc.alloc(0, 7, 'b'), Some(1));
        assert_eq!(alloc.free(0), Some('a'));
        assert_eq!(alloc.alloc(0, 7, 'c'), Some(2), "0 is not reused yet");
        for expect in 3..8 {
            assert_eq!(alloc.alloc(0, 7, 'x'), Some(expect));
        }
        assert_eq!(alloc.alloc(0, 7, 'd'), Some(0), "wraps to the gap");
        assert_eq!(alloc.alloc(0, 7, 'e'), None, "full");
        assert_eq!(alloc.find(0), Some(&'d'));
        assert_eq!(alloc.live(), 8);
    }

    #[test]
    fn sub_ranges_and_exact_keys() {
        let mut alloc = BTreeAlloc::new(1000);
        assert!(alloc.alloc_exact(10, ()));
        assert!(!alloc.alloc_exact(10, ()));
        assert_eq!(alloc.alloc(10, 11, ()), Some(11));
        assert_eq!(alloc.alloc(10, 11, ()), None, "full sub-range");
        assert_eq!(alloc.alloc(5, 1000, ()), None, "beyond span");
        assert_eq!(alloc.alloc(900, 999, ()), Some(900));
        let mut keys = Vec::new();
        alloc.for_each(|k, _| keys.push(k));
        assert_eq!(keys, vec![10, 11, 900]);
    }
}
