//! Helpers shared by the integration tests. Each test binary uses part of
//! this module, hence the `dead_code` allowances.

use ioasid::{Domain, Ioasid, Policy, Space};

/// A tiny xorshift generator: deterministic per seed, no dependency.
#[allow(dead_code)]
pub struct Rng(pub u64);

#[allow(dead_code)]
impl Rng {
    /// The next pseudo-random value (the seed must not be 0).
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A space `[min, max]` with `policy`, in a domain of its own (so dropping
/// it runs every deferred drop).
#[allow(dead_code)]
pub fn space(min: Ioasid, max: Ioasid, policy: Policy) -> Space<Ioasid> {
    Space::builder()
        .range(min, max)
        .policy(policy)
        .domain(Domain::new())
        .build()
        .unwrap()
}
