//! A Cyclic space gives back the memory of chunks its cursor has left
//! empty: after the cursor has swept a 2^20 space twice beside 1000 held
//! IDs, the process's resident memory is within 2x of what it was after
//! the first 100k cycles (the contract's RSS target), where a tree that
//! kept every leaf would have grown by its full size (about 9 MiB).
//!
//! A test binary of its own: RSS is the process's, so no other test may
//! run beside it. Linux only (`/proc/self/statm`).
#![cfg(all(target_os = "linux", not(miri)))]

use ioasid::{Policy, Space};

/// Resident bytes of this process.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("procfs");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("statm's resident field");
    // SAFETY: no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).expect("a page size")
}

#[test]
fn cyclic_churn_returns_the_memory_of_chunks_the_cursor_left() {
    const SPAN: u64 = 1 << 20;
    let space: Space<u64> = Space::builder()
        .range(0, (SPAN - 1) as u32)
        .policy(Policy::Cyclic)
        .build()
        .unwrap();
    let set = space.new_set();
    for i in 0..1000 {
        set.alloc(0, u32::MAX, i).unwrap();
    }
    let cycles = 2 * SPAN + 100_000;
    let mut early = 0;
    for i in 0..cycles {
        let id = set.alloc(0, u32::MAX, i).unwrap();
        // The cursor sweeps 1000..SPAN, and wraps past the held 0..1000.
        assert_eq!(u64::from(id), 1000 + i % (SPAN - 1000), "cyclic order");
        set.free(id).unwrap();
        if i + 1 == 100_000 {
            early = rss_bytes();
        }
    }
    let late = rss_bytes();
    let chunks = SPAN / 4096;
    println!(
        "RSS {early} B after 100000 cycles, {late} B after {cycles}; {} chunks reclaimed",
        space.chunks_reclaimed()
    );
    assert!(
        space.chunks_reclaimed() >= 2 * (chunks - 2) - 4,
        "every chunk but the held one is reclaimed on each sweep: {}",
        space.chunks_reclaimed()
    );
    assert!(
        late <= 2 * early,
        "RSS grew from {early} B to {late} B: chunks the cursor left are not given back"
    );
    assert_eq!(space.live_count(), 1000);
    space.check_invariants().unwrap();
}
