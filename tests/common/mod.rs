//! Helpers shared by the integration tests. Each test binary uses part of
//! this module, hence the `dead_code` allowances.

use ioasid::{CustomAlloc, CustomAllocator, Domain, Ioasid, Policy, Space};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A space `[min, max]` with `policy`, in a domain of its own (so dropping
/// it runs every deferred drop).
#[allow(dead_code)]
pub fn space(min: Ioasid, max: Ioasid, policy: Policy) -> Space<Ioasid> {
    space_of(min, max, policy)
}

/// [`space`] with data `T` and fan-out `F`.
#[allow(dead_code)]
pub fn space_of<T: ioasid::Payload, const F: usize>(
    min: Ioasid,
    max: Ioasid,
    policy: Policy,
) -> ioasid::fanout::Space<T, F> {
    ioasid::fanout::Space::builder()
        .range(min, max)
        .policy(policy)
        .domain(Domain::new())
        .build()
        .unwrap()
}

/// The IDs `set` visits with `for_each`, in order.
#[allow(dead_code)]
pub fn ids_of<T: ioasid::Payload, const F: usize>(set: &ioasid::fanout::Set<T, F>) -> Vec<Ioasid> {
    let mut ids = Vec::new();
    let _ = set.for_each(|id, _| {
        ids.push(id);
        std::ops::ControlFlow::<()>::Continue(())
    });
    ids
}

/// A custom allocator that answers from a script (one answer per alloc,
/// in order) and logs the IDs it is asked to free.
#[allow(dead_code)]
pub struct Scripted {
    pub answers: Mutex<Vec<CustomAlloc>>,
    pub freed: Mutex<Vec<Ioasid>>,
}

impl CustomAllocator for Scripted {
    fn alloc(&self, _min: Ioasid, _max: Ioasid) -> CustomAlloc {
        self.answers.lock().unwrap().remove(0)
    }
    fn free(&self, id: Ioasid) {
        self.freed.lock().unwrap().push(id);
    }
}

/// Data that counts its drops in `drops`; `id` and `mark` say what it was
/// made for (an ID, and a thread or a round), for readers to check.
#[allow(dead_code)]
#[derive(Debug)]
pub struct Tag {
    pub id: u32,
    pub mark: usize,
    pub drops: Arc<AtomicUsize>,
}

// SAFETY: the provided methods store it boxed.
unsafe impl ioasid::Payload for Tag {}

impl Drop for Tag {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}
