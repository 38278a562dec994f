//! Rust-side tests of the C ABI: conversions (errno, ERR_PTR, policy
//! values, struct layouts), the panic boundary, and read-side sections.
//! The C harnesses under `ffi/tests/` cover the semantics from C.
//!
//! Tests here run in parallel in one process, so they use spaces of their
//! own and never count the global space.

use super::*;
use ioasid_core::{Error, Policy};
use std::ffi::{c_int, c_long, c_void};
use std::mem::{offset_of, size_of};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

const ERR_PTR_BASE: usize = usize::MAX - 4094; // (unsigned long)-4095

#[test]
fn errors_map_to_negative_errno() {
    let cases = [
        (Error::InvalidArgument, 22),
        (Error::NoSpace, 28),
        (Error::QuotaExceeded, 122),
        (Error::NotFound, 2),
        (Error::PermissionDenied, 13),
        (Error::Io, 5),
        (Error::Busy, 16),
        (Error::AlreadyExists, 17),
        (Error::Custom(95), 95),
    ];
    for (error, errno) in cases {
        assert_eq!(neg(error), -errno, "{error:?}");
    }
}

#[test]
fn err_ptr_encodes_errno_in_the_top_page() {
    for errno in [1, errno::ENOENT, errno::EACCES, 4095] {
        let ptr = err_ptr(-errno);
        assert!(ptr as usize >= ERR_PTR_BASE, "IS_ERR for -{errno}");
        assert_eq!(ptr as isize, -(errno as isize), "PTR_ERR for -{errno}");
    }
    assert!((err_ptr(-4096) as usize) < ERR_PTR_BASE);
}

#[test]
fn policy_values_are_checked() {
    for policy in [0u32, 1, 2] {
        let space = ioasid_space_create(0, 10, policy);
        assert!(!space.is_null(), "policy {policy}");
        // SAFETY: a live handle, destroyed once.
        unsafe { ioasid_space_destroy(space) };
    }
    for policy in [3u32, 7, u32::MAX] {
        assert!(
            ioasid_space_create(0, 10, policy).is_null(),
            "policy {policy}"
        );
    }
    assert_eq!(ioasid_policy::IOASID_POLICY_ANY as u32, 2);
    assert_eq!(
        Policy::from_raw(ioasid_policy::IOASID_POLICY_CYCLIC as u32),
        Some(ioasid_core::Policy::Cyclic)
    );
    assert!(ioasid_space_create(5, 4, 0).is_null());
    assert!(ioasid_space_create(0, u32::MAX, 0).is_null());
}

/// `IOASID_SPACE_KEEP_MEMORY` OR'ed into the policy: a Cyclic space that
/// gives nothing back, the choice kept by save and restore; another bit
/// is refused, and the flag changes nothing under the other policies.
#[test]
fn keep_memory_is_a_flag_of_the_policy() {
    let keeps = |space: *mut ioasid_space| ext::lookup(space).map(|s| s.space.keeps_memory());
    let kept = ioasid_space_create(0, 0xFFFFF, 1 | ext::IOASID_SPACE_KEEP_MEMORY);
    let plain = ioasid_space_create(0, 0xFFFFF, 1);
    let lowest = ioasid_space_create(0, 10, ext::IOASID_SPACE_KEEP_MEMORY);
    assert_eq!(
        (keeps(kept), keeps(plain), keeps(lowest)),
        (Some(true), Some(false), Some(false))
    );
    assert!(
        ioasid_space_create(0, 10, 1 | 1 << 9).is_null(),
        "an unknown bit"
    );
    let (mut a, mut b) = (ioasid_set::zeroed(), ioasid_set::zeroed());
    // SAFETY: live handles and sets of this test, each set used by this
    // thread only; restored sets released and spaces destroyed once.
    unsafe {
        assert_eq!(ioasid_set_init(&mut a, kept, 0), 0);
        assert_eq!(ioasid_set_init(&mut b, plain, 0), 0);
        // Four chunks swept: the plain space gives the first ones back.
        for _ in 0..4 * 4096 {
            for set in [&mut a, &mut b] {
                let id = ioasid_alloc(set, 0, 0xFFFFF, std::ptr::null_mut());
                assert_eq!(ioasid_set_free(set, id), 0);
            }
        }
        let reclaimed = |space| ext::lookup(space).unwrap().space.chunks_reclaimed();
        assert_eq!(reclaimed(kept), 0);
        assert!(reclaimed(plain) > 0);
        let mut size = 0;
        assert_eq!(ioasid_space_save(kept, std::ptr::null_mut(), &mut size), 0);
        let mut buf = vec![0u8; size];
        assert_eq!(
            ioasid_space_save(kept, buf.as_mut_ptr().cast(), &mut size),
            0
        );
        let (mut copy, mut sets, mut nr) = (std::ptr::null_mut(), [std::ptr::null_mut(); 1], 1);
        assert_eq!(
            ioasid_space_restore(
                buf.as_ptr().cast(),
                size,
                None,
                std::ptr::null_mut(),
                &mut copy,
                sets.as_mut_ptr(),
                &mut nr
            ),
            0
        );
        assert_eq!(keeps(copy), Some(true), "kept by save and restore");
        ioasid_set_release(sets[0]);
        ioasid_space_destroy(copy);
        ioasid_set_destroy(&mut a);
        ioasid_set_destroy(&mut b);
        for space in [kept, plain, lowest] {
            ioasid_space_destroy(space);
        }
    }
}

#[test]
fn struct_layouts_match_the_header() {
    let word = size_of::<usize>();
    // `struct ioasid_set { void *opaque[4]; }`
    assert_eq!(size_of::<ioasid_set>(), 4 * word);
    // `struct iommu_pasid { ioasid_t max, min; struct ioasid_set set; ops; priv; }`
    assert_eq!(offset_of!(iommu_pasid, max), 0);
    assert_eq!(offset_of!(iommu_pasid, min), 4);
    assert_eq!(offset_of!(iommu_pasid, set), 8);
    assert_eq!(offset_of!(iommu_pasid, ops), 8 + 4 * word);
    assert_eq!(offset_of!(iommu_pasid, priv_), 8 + 5 * word);
    // The kernel's field order: alloc, free, list, pdata.
    assert_eq!(offset_of!(ioasid_allocator_ops, alloc), 0);
    assert_eq!(offset_of!(ioasid_allocator_ops, free), word);
    assert_eq!(offset_of!(ioasid_allocator_ops, list), 2 * word);
    assert_eq!(offset_of!(ioasid_allocator_ops, pdata), 4 * word);
    assert_eq!(offset_of!(bus_type, iommu_ops), word);
    // Optional function pointers are plain nullable pointers.
    assert_eq!(size_of::<ioasid_alloc_fn_t>(), word);
}

#[test]
fn panics_become_error_returns() {
    let int: c_int = ffi_guard!("test_int", -errno::ENOTRECOVERABLE, {
        panic!("injected");
    });
    assert_eq!(int, -errno::ENOTRECOVERABLE);
    let id: ioasid_t = ffi_guard!("test_id", ioasid_core::INVALID_IOASID, {
        panic!("injected");
    });
    assert_eq!(id, ioasid_core::INVALID_IOASID);
    let ptr: *mut c_void = ffi_guard!("test_ptr", std::ptr::null_mut(), {
        panic!("injected");
    });
    assert!(ptr.is_null());
    // No panic: the body's value.
    let fine: c_int = ffi_guard!("test_fine", -1, 7);
    assert_eq!(fine, 7);
}

/// Runs test `name` of this binary again, alone, in a new process that
/// knows it is the child (the test then does what must kill a process).
fn run_as_child(name: &str) -> std::process::ExitStatus {
    Command::new(std::env::current_exe().expect("test binary path"))
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("IOASID_FFI_CHILD", "1")
        .output()
        .expect("child runs")
        .status
}

fn is_child() -> bool {
    std::env::var_os("IOASID_FFI_CHILD").is_some()
}

#[test]
fn void_functions_abort_on_panic() {
    if is_child() {
        let () = ffi_guard!("test_void", abort_on_panic("test_void"), {
            panic!("injected");
        });
        // Not reached: the boundary aborted.
        std::process::exit(0);
    }
    let status = run_as_child("tests::void_functions_abort_on_panic");
    assert_eq!(status.signal(), Some(6), "SIGABRT expected, got {status:?}");
}

extern "C" fn panicking_callback(
    _id: ioasid_t,
    _private: *mut c_void,
    _data: *mut c_void,
) -> c_int {
    panic!("a callback panics");
}

#[test]
fn panicking_callbacks_never_unwind() {
    if is_child() {
        let space = ioasid_space_create(0, 10, 0);
        let mut set = ioasid_set::zeroed();
        // SAFETY: a valid set and live space; the callback has the C signature.
        unsafe {
            assert_eq!(ioasid_set_init(&mut set, space, 0), 0);
            assert_ne!(
                ioasid_alloc(&mut set, 0, 10, std::ptr::null_mut()),
                ioasid_core::INVALID_IOASID
            );
            ioasid_set_for_each(&mut set, Some(panicking_callback), std::ptr::null_mut());
        }
        // Not reached: the panic may not leave the extern "C" callback.
        std::process::exit(0);
    }
    // A panic in a callback with the C ABI stops the process at the
    // callback's own boundary: it never unwinds through the library.
    let status = run_as_child("tests::panicking_callbacks_never_unwind");
    assert_eq!(status.signal(), Some(6), "SIGABRT expected, got {status:?}");
}

#[test]
fn read_sections_nest_per_thread() {
    assert!(!in_read_section());
    ioasid_read_lock();
    ioasid_read_lock();
    assert!(in_read_section());
    assert!(crate::sections::holds_read_guard());
    // Another thread is not inside this thread's section.
    assert!(!std::thread::spawn(in_read_section).join().unwrap());
    ioasid_read_unlock();
    assert!(in_read_section());
    // The inner unlock keeps the outermost lock's pin.
    assert!(crate::sections::holds_read_guard());
    assert_eq!(wait_for_readers(), Err(-errno::EDEADLK));
    ioasid_read_unlock();
    assert!(!in_read_section());
    assert!(!crate::sections::holds_read_guard());
    // An extra unlock is ignored.
    assert!(!read_unlock());
    assert_eq!(wait_for_readers(), Ok(()));
}

extern "C" fn count_until_three(id: ioasid_t, private: *mut c_void, data: *mut c_void) -> c_int {
    // SAFETY: `data` is the test's counter.
    let seen = unsafe { &mut *(data as *mut Vec<(ioasid_t, usize)>) };
    seen.push((id, private as usize));
    if seen.len() == 3 {
        99
    } else {
        0
    }
}

#[test]
fn set_functions_on_a_private_space() {
    let space = ioasid_space_create(100, 199, 0);
    let mut set = ioasid_set::zeroed();
    let mut other = ioasid_set::zeroed();
    // SAFETY: valid sets and a live space handle, used as C would.
    unsafe {
        assert_eq!(ioasid_set_init(&mut set, space, 0), 0);
        assert_eq!(ioasid_set_init(&mut set, space, 0), -errno::EEXIST);
        assert_eq!(ioasid_set_init(&mut other, space, 1), 0);
        for want in 100..105 {
            assert_eq!(ioasid_alloc(&mut set, 0, 1000, want as *mut c_void), want);
        }
        assert_eq!(ioasid_alloc(&mut other, 0, 1000, std::ptr::null_mut()), 105);
        // Quota 1.
        assert_eq!(
            ioasid_alloc(&mut other, 0, 1000, std::ptr::null_mut()),
            ioasid_core::INVALID_IOASID
        );
        assert_eq!(ioasid_space_live_count(space), 6);

        assert_eq!(ioasid_find(&mut set, 102, None) as usize, 102);
        assert_eq!(ioasid_find(&mut set, 105, None), err_ptr(-errno::EACCES));
        assert_eq!(ioasid_find(&mut set, 150, None), err_ptr(-errno::ENOENT));
        assert_eq!(ioasid_set_free(&mut set, 105), -errno::EACCES);
        assert_eq!(ioasid_set_free(&mut set, 150), -errno::ENOENT);
        assert_eq!(ioasid_set_free(std::ptr::null_mut(), 100), -errno::EINVAL);

        let mut seen: Vec<(ioasid_t, usize)> = Vec::new();
        let stop = ioasid_set_for_each(
            &mut set,
            Some(count_until_three),
            &mut seen as *mut _ as *mut c_void,
        );
        assert_eq!(stop, 99);
        assert_eq!(seen, vec![(100, 100), (101, 101), (102, 102)]);
        assert_eq!(
            ioasid_set_for_each(&mut set, None, std::ptr::null_mut()),
            -errno::EINVAL
        );

        ioasid_space_destroy(space);
        assert_eq!(
            ioasid_alloc(&mut set, 0, 1000, std::ptr::null_mut()),
            ioasid_core::INVALID_IOASID
        );
        assert_eq!(ioasid_space_live_count(space), -(errno::EINVAL as c_long));
        assert_eq!(ioasid_set_free(&mut set, 100), 0);
        ioasid_set_destroy(&mut set);
        ioasid_set_destroy(&mut other);
        assert!(set.opaque[0].is_null() && other.opaque[0].is_null());
    }
}

#[test]
fn a_space_holds_at_most_16383_sets() {
    // The core packs a set index of 14 bits into each entry word.
    let space = ioasid_space_create(0, 63, 0);
    let mut sets: Vec<ioasid_set> = (0..16384).map(|_| ioasid_set::zeroed()).collect();
    // SAFETY: valid sets and a live space handle, used as C would.
    unsafe {
        for set in &mut sets[..16383] {
            assert_eq!(ioasid_set_init(set, space, 0), 0);
        }
        assert_eq!(ioasid_set_init(&mut sets[16383], space, 0), -errno::ENOSPC);
        assert!(sets[16383].opaque[0].is_null());
        // A destroyed set's index is reused after a grace period.
        ioasid_set_destroy(&mut sets[0]);
        ioasid_synchronize();
        let mut again = ioasid_set::zeroed();
        let mut tries = 0;
        while ioasid_set_init(&mut again, space, 0) != 0 {
            tries += 1;
            assert!(tries < 100, "the freed set index never came back");
            ioasid_synchronize();
        }
        ioasid_set_destroy(&mut again);
        for set in &mut sets {
            ioasid_set_destroy(set);
        }
        ioasid_space_destroy(space);
    }
}

// ---------------------------------------------------------------------------
// Races between the kernel-form functions and RFC consumers.

/// A vendor whose `pasid_alloc` hands out the number in `priv` and whose
/// `pasid_free` can be made to wait.
mod vendor {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    pub static IN_FREE: AtomicBool = AtomicBool::new(false);
    pub static EXIT_DONE: AtomicBool = AtomicBool::new(false);
    pub static EXIT_DONE_DURING_FREE: AtomicBool = AtomicBool::new(false);
    /// `pasid_free` calls for `SET_DATA_ID`.
    pub static SET_DATA_ID_FREES: AtomicUsize = AtomicUsize::new(0);
    pub const SET_DATA_ID: ioasid_t = 0x6200_0000;
    /// `pasid_free` calls for `PUT_ID`.
    pub static PUT_ID_FREES: AtomicUsize = AtomicUsize::new(0);
    pub const PUT_ID: ioasid_t = 0x6300_0000;
    pub static WAIT_IN_FREE: AtomicBool = AtomicBool::new(false);
    /// `pasid_free` calls for `EXITED_ID`, and the consumer's `priv` the
    /// last one read.
    pub static EXITED_ID_FREES: AtomicUsize = AtomicUsize::new(0);
    pub static EXITED_ID_PRIV: AtomicUsize = AtomicUsize::new(0);
    pub const EXITED_ID: ioasid_t = 0x6400_0000;

    pub unsafe extern "C" fn alloc(
        pasid: *mut iommu_pasid,
        _start: ioasid_t,
        _end: ioasid_t,
        ioasid: *mut ioasid_t,
    ) -> c_int {
        // SAFETY: the library passes its live consumer and a writable out.
        unsafe { *ioasid = (*pasid).priv_ as usize as ioasid_t };
        0
    }

    pub unsafe extern "C" fn free(pasid: *mut iommu_pasid, ioasid: ioasid_t) {
        if ioasid == EXITED_ID {
            // SAFETY: the library passes a consumer that is still allocated.
            let priv_ = unsafe { (*pasid).priv_ } as usize;
            EXITED_ID_PRIV.store(priv_, Ordering::SeqCst);
            EXITED_ID_FREES.fetch_add(1, Ordering::SeqCst);
        }
        if ioasid == SET_DATA_ID {
            SET_DATA_ID_FREES.fetch_add(1, Ordering::SeqCst);
        }
        if ioasid == PUT_ID {
            PUT_ID_FREES.fetch_add(1, Ordering::SeqCst);
        }
        if !WAIT_IN_FREE.load(Ordering::SeqCst) {
            return;
        }
        IN_FREE.store(true, Ordering::SeqCst);
        // Wait (bounded) for the consumer's exit; it must not complete
        // while this hook runs.
        let start = Instant::now();
        while !EXIT_DONE.load(Ordering::SeqCst) && start.elapsed() < Duration::from_millis(300) {
            std::thread::yield_now();
        }
        if EXIT_DONE.load(Ordering::SeqCst) {
            EXIT_DONE_DURING_FREE.store(true, Ordering::SeqCst);
        }
    }

    pub static OPS: iommu_ops = iommu_ops {
        pasid_init: None,
        pasid_alloc: Some(alloc),
        pasid_free: Some(free),
    };
}

/// A consumer with the vendor above, allocating `id`.
fn vendor_consumer(id: ioasid_t) -> *mut iommu_pasid {
    let bus = Box::leak(Box::new(bus_type {
        name: std::ptr::null(),
        iommu_ops: &vendor::OPS,
    }));
    // SAFETY: a valid bus with valid ops that live forever.
    let pasid = unsafe { iommu_pasid_init(bus) };
    assert!(!pasid.is_null());
    // SAFETY: our live consumer; the vendor reads `priv` as the ID to give.
    unsafe { (*pasid).priv_ = id as usize as *mut c_void };
    pasid
}

/// `ioasid_free` of a vendor ID calls `pasid_free` while
/// `iommu_pasid_exit` of the same consumer runs: the exit (which frees the
/// consumer) must wait until the hook has returned.
#[test]
fn ioasid_free_keeps_the_consumer_alive_through_pasid_free() {
    use std::sync::atomic::Ordering;
    const ID: ioasid_t = 0x6100_0000;
    let pasid = vendor_consumer(0x1000);
    // Keep the ID inside the consumer's range.
    // SAFETY: our live consumer.
    unsafe {
        (*pasid).min = 1;
        (*pasid).max = ID;
        (*pasid).priv_ = ID as usize as *mut c_void;
    }
    let mut out = 0;
    // SAFETY: a live consumer and a writable out.
    let rc = unsafe { iommu_pasid_alloc(pasid, 1, ID, std::ptr::null_mut(), &mut out) };
    assert_eq!(rc, 0);
    assert_eq!(out, ID);
    vendor::WAIT_IN_FREE.store(true, Ordering::SeqCst);
    let freer = std::thread::spawn(|| ioasid_free(ID));
    while !vendor::IN_FREE.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    let consumer = pasid as usize;
    let exit = std::thread::spawn(move || {
        // SAFETY: the consumer, exited once.
        unsafe { iommu_pasid_exit(consumer as *mut iommu_pasid) };
        vendor::EXIT_DONE.store(true, Ordering::SeqCst);
    });
    freer.join().unwrap();
    exit.join().unwrap();
    vendor::WAIT_IN_FREE.store(false, Ordering::SeqCst);
    assert!(
        !vendor::EXIT_DONE_DURING_FREE.load(Ordering::SeqCst),
        "iommu_pasid_exit freed the consumer while its pasid_free ran"
    );
}

/// `ioasid_set_data` racing a free and a plain re-allocation of the same
/// number: the new ID must never become a vendor ID (its free must not
/// call the old consumer's `pasid_free`).
#[test]
fn set_data_never_tags_a_new_id_with_an_old_vendor() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const ID: ioasid_t = vendor::SET_DATA_ID;
    let pasid = vendor_consumer(ID);
    // SAFETY: our live consumer.
    unsafe {
        (*pasid).min = ID;
        (*pasid).max = ID;
    }
    static STOP: AtomicBool = AtomicBool::new(false);
    let writer = std::thread::spawn(|| {
        let mut marker = 0u8;
        while !STOP.load(Ordering::SeqCst) {
            let _ = ioasid_set_data(ID, std::ptr::addr_of_mut!(marker).cast());
        }
    });
    let mut wrong = 0;
    for _ in 0..200_000 {
        let mut out = 0;
        // SAFETY: a live consumer and a writable out.
        let rc = unsafe { iommu_pasid_alloc(pasid, ID, ID, std::ptr::null_mut(), &mut out) };
        assert_eq!(rc, 0);
        ioasid_free(ID);
        // SAFETY: NULL set (the anonymous one).
        let plain = unsafe { ioasid_alloc(std::ptr::null_mut(), ID, ID, std::ptr::null_mut()) };
        assert_eq!(plain, ID);
        let before = vendor::SET_DATA_ID_FREES.load(Ordering::SeqCst);
        ioasid_free(ID);
        if vendor::SET_DATA_ID_FREES.load(Ordering::SeqCst) != before {
            wrong += 1;
        }
    }
    STOP.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    // SAFETY: the consumer, exited once.
    unsafe { iommu_pasid_exit(pasid) };
    assert_eq!(wrong, 0, "plain IDs handed to the old vendor's pasid_free");
}

/// A vendor ID with a reference outstanding: `ioasid_free` leaves it
/// FREE_PENDING and must not hand it back to the vendor yet; the last
/// `ioasid_put` releases it and hands it back, exactly once.
#[test]
fn a_vendor_id_goes_back_to_its_driver_at_the_last_put() {
    use std::sync::atomic::Ordering;
    const ID: ioasid_t = vendor::PUT_ID;
    let frees = || vendor::PUT_ID_FREES.load(Ordering::SeqCst);
    let pasid = vendor_consumer(ID);
    // SAFETY: our live consumer.
    unsafe {
        (*pasid).min = ID;
        (*pasid).max = ID;
    }
    for checked in [false, true] {
        let mut out = 0;
        // SAFETY: a live consumer and a writable out.
        let rc = unsafe { iommu_pasid_alloc(pasid, ID, ID, std::ptr::null_mut(), &mut out) };
        assert_eq!((rc, out), (0, ID));
        let before = frees();
        ioasid_get(ID);
        ioasid_free(ID);
        assert_eq!(frees(), before, "handed back while still referenced");
        if checked {
            // SAFETY: a NULL set means any set.
            assert_eq!(unsafe { ioasid_put_checked(std::ptr::null_mut(), ID) }, 1);
        } else {
            assert!(ioasid_put(ID), "the last put releases it");
        }
        assert_eq!(frees(), before + 1, "the last put hands it back once");
        assert!(!ioasid_put(ID));
        assert_eq!(frees(), before + 1);
    }
    // SAFETY: the consumer, exited once.
    unsafe { iommu_pasid_exit(pasid) };
}

/// A consumer exits while one of its vendor IDs is still referenced: the
/// ID stays FREE_PENDING, and its last put hands it back through the
/// exited consumer's `pasid_free`, with the consumer still readable
/// (its ops and `priv`), exactly once; the consumer is freed after.
#[test]
fn a_referenced_vendor_id_outlives_its_consumers_exit() {
    use std::sync::atomic::Ordering;
    const ID: ioasid_t = vendor::EXITED_ID;
    let frees = || vendor::EXITED_ID_FREES.load(Ordering::SeqCst);
    for round in 0..3 {
        let pasid = vendor_consumer(ID);
        // SAFETY: our live consumer.
        unsafe {
            (*pasid).min = ID;
            (*pasid).max = ID;
        }
        let mut out = 0;
        // SAFETY: a live consumer and a writable out.
        let rc = unsafe { iommu_pasid_alloc(pasid, ID, ID, std::ptr::null_mut(), &mut out) };
        assert_eq!((rc, out), (0, ID), "round {round}");
        let before = frees();
        ioasid_get(ID);
        // SAFETY: the consumer, exited once; not used by us again.
        unsafe { iommu_pasid_exit(pasid) };
        assert_eq!(frees(), before, "handed back while still referenced");
        // FREE_PENDING: found, not got, not allocatable.
        // SAFETY: a NULL set means any set.
        let got = unsafe { ioasid_get_checked(std::ptr::null_mut(), ID) };
        assert_eq!(got, -crate::errno::ENOENT);
        // SAFETY: NULL set (the anonymous one).
        let plain = unsafe { ioasid_alloc(std::ptr::null_mut(), ID, ID, std::ptr::null_mut()) };
        assert_eq!(plain, ioasid_core::INVALID_IOASID);
        assert!(ioasid_put(ID), "the last put releases it");
        assert_eq!(frees(), before + 1, "handed back once, at the last put");
        // The hook saw the exited consumer intact.
        assert_eq!(
            vendor::EXITED_ID_PRIV.load(Ordering::SeqCst),
            ID as usize,
            "pasid_free read the consumer's priv"
        );
        assert!(!ioasid_put(ID));
        assert_eq!(frees(), before + 1);
        // The number is free again.
        // SAFETY: NULL set (the anonymous one).
        let plain = unsafe { ioasid_alloc(std::ptr::null_mut(), ID, ID, std::ptr::null_mut()) };
        assert_eq!(plain, ID);
        ioasid_free(ID);
    }
}

/// A thread keeps one standing hold, on the declared set it changed last:
/// taken once for repeated changes of that set, moved to the next declared
/// set the thread changes, dropped by the thread's own destroy of the set
/// (which then reclaims the state at once) and at the thread's exit, so
/// an idle state stays reclaimable.
#[test]
fn a_thread_keeps_one_standing_hold() {
    let mut a = ioasid_set::zeroed();
    let mut b = ioasid_set::zeroed();
    let (a_addr, b_addr) = (
        &mut a as *mut ioasid_set as usize,
        &mut b as *mut ioasid_set as usize,
    );
    let kept = std::thread::spawn(move || {
        let (a, b) = (a_addr as *mut ioasid_set, b_addr as *mut ioasid_set);
        // SAFETY: both sets outlive the thread (joined below), and only this
        // test uses them.
        unsafe {
            // One ID stays live in `a`: an empty idle state could be reclaimed
            // by another test's sweep.
            let kept = ioasid_alloc(a, 1, 0xFFFFF, std::ptr::null_mut());
            assert_ne!(kept, ioasid_core::INVALID_IOASID);
            assert_eq!(sets::holds_of(a), Some(1));
            for _ in 0..3 {
                let id = ioasid_alloc(a, 1, 0xFFFFF, std::ptr::null_mut());
                assert_eq!(ioasid_set_free(a, id), 0);
                assert_eq!(sets::holds_of(a), Some(1), "one hold, taken once");
            }
            let id = ioasid_alloc(b, 1, 0xFFFFF, std::ptr::null_mut());
            assert_ne!(id, ioasid_core::INVALID_IOASID);
            assert_eq!(sets::holds_of(a), Some(0), "the hold moved to b");
            assert_eq!(sets::holds_of(b), Some(1));
            let b_state = sets::state_of(b);
            ioasid_set_destroy(b);
            assert!(
                !sets::state_serves(b_state, b),
                "destroyed by its holder, the state is reclaimed at once"
            );
            assert!(ioasid_find(a, kept, None).is_null(), "a is intact");
            kept
        }
    })
    .join()
    .expect("the thread passes");
    // SAFETY: `a` is a valid set, used by this thread only now.
    unsafe {
        assert_eq!(
            sets::holds_of(&mut a),
            Some(0),
            "the thread's exit released its hold"
        );
        assert_eq!(ioasid_set_free(&mut a, kept), 0);
        ioasid_set_destroy(&mut a);
    }
}

/// MM sets of one token are created while the previous one is still in
/// its teardown (threads racing `ioasid_alloc_set` and the last
/// `ioasid_set_put`): a block registered for the token throughout sees
/// the ALLOC and the FREE of every ID of every one of them.
#[test]
fn mm_blocks_miss_no_event_of_a_set_created_during_a_teardown() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static ALLOCS: AtomicUsize = AtomicUsize::new(0);
    static FREES: AtomicUsize = AtomicUsize::new(0);
    unsafe extern "C" fn count(
        _: *mut notifier_block,
        action: std::ffi::c_ulong,
        _: *mut c_void,
    ) -> c_int {
        // SeqCst: test counters, read after the threads are joined.
        match action {
            1 => ALLOCS.fetch_add(1, Ordering::SeqCst),
            2 => FREES.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
        0
    }
    let token = 0x7e57_70c0_usize as *mut c_void;
    let mut nb = Box::new(notifier_block {
        notifier_call: Some(count),
        next: std::ptr::null_mut(),
        priority: 0,
    });
    let nb_ptr: *mut notifier_block = &mut *nb;
    // SAFETY: a valid block that outlives its registration.
    assert_eq!(unsafe { ioasid_register_notifier_mm(token, nb_ptr) }, 0);
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let token = token as usize;
            std::thread::spawn(move || {
                let mut made = 0;
                for _ in 0..500 {
                    let set = ioasid_alloc_set(token as *mut c_void, 2, 2);
                    if set as usize >= ERR_PTR_BASE {
                        continue; // -EEXIST: the other thread's set is live
                    }
                    for _ in 0..2 {
                        // SAFETY: a live set of ours.
                        let id = unsafe { ioasid_alloc(set, 1, 0xFFFFF, std::ptr::null_mut()) };
                        made += usize::from(id != ioasid_core::INVALID_IOASID);
                    }
                    // SAFETY: our reference, dropped once.
                    unsafe { ioasid_set_put(set) };
                }
                made
            })
        })
        .collect();
    let made: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(made > 0);
    assert_eq!(ALLOCS.load(Ordering::SeqCst), made, "every ALLOC");
    assert_eq!(FREES.load(Ordering::SeqCst), made, "every FREE");
    // SAFETY: registered above.
    unsafe { ioasid_unregister_notifier_mm(token, nb_ptr) };
}
