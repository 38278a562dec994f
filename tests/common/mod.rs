//! Helpers shared by the integration tests. Each test binary uses part of
//! this module, hence the `dead_code` allowances.

use ioasid::{Domain, Ioasid, Policy, Space};

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

/// The IDs `set` visits with `for_each`, in order.
#[allow(dead_code)]
pub fn ids_of<T: ioasid::Payload, const F: usize>(set: &ioasid::Set<T, F>) -> Vec<Ioasid> {
    let mut ids = Vec::new();
    let _ = set.for_each(|id, _| {
        ids.push(id);
        std::ops::ControlFlow::<()>::Continue(())
    });
    ids
}
