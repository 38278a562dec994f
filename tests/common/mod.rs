//! Helpers shared by the integration tests.

/// A tiny xorshift generator: deterministic per seed, no dependency.
pub struct Rng(pub u64);

impl Rng {
    /// The next pseudo-random value (the seed must not be 0).
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
