//! The snapshot decoder under fuzzing: one input is one byte buffer handed
//! to `Snapshot::decode` and to the C `ioasid_space_restore`. Both must
//! agree; a buffer either fails with EINVAL (the C side creating nothing)
//! or is exactly the encoding of the snapshot it decodes to (for an older
//! format version: re-encodes to the same state), restores, and saves
//! back to the very same bytes in the current version.
//!
//! Random bytes rarely pass the magic and the checksum, so an input whose
//! first byte is odd has its length field and checksum fixed up after
//! that byte is dropped: the fuzzer then reaches the field checks.

use ioasid::{Error, Snapshot};
use ioasid_ffi::{ioasid_set, ioasid_set_release, ioasid_space_destroy, ioasid_space_restore};
use ioasid_ffi::{ioasid_space, ioasid_space_save};
use std::ffi::c_uint;
use std::ptr;

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The bytes to decode: `input` as it is, or (odd first byte) the rest
/// with a true length field and checksum.
pub fn buffer(input: &[u8]) -> Vec<u8> {
    let Some((&mode, rest)) = input.split_first() else {
        return Vec::new();
    };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 && bytes.len() >= 72 {
        let len = bytes.len() as u64;
        bytes[16..24].copy_from_slice(&len.to_le_bytes());
        let body = bytes.len() - 8;
        let sum = fnv1a(&bytes[..body]);
        bytes[body..].copy_from_slice(&sum.to_le_bytes());
    }
    bytes
}

/// Runs one input (see the module docs); panics on any disagreement.
pub fn snapshot_one(input: &[u8]) {
    let bytes = buffer(input);
    let decoded = Snapshot::decode(&bytes);
    if let Err(e) = &decoded {
        assert_eq!(*e, Error::InvalidArgument);
    }
    // What a save writes for the decoded state: the input itself for a
    // current-version buffer; for an older version, the current encoding
    // of the same state.
    let canonical = decoded.as_ref().map_or_else(|_| bytes.clone(), Snapshot::encode);
    if let Ok(snapshot) = &decoded {
        if bytes[8..12] == canonical[8..12] {
            assert_eq!(canonical, bytes, "decode accepts only its own encoding");
        } else {
            assert_eq!(
                Snapshot::decode(&canonical).as_ref(),
                Ok(snapshot),
                "an older version re-encodes to the same state"
            );
        }
        let restored = ioasid::fanout::Space::<u64, 4>::restore(snapshot.clone());
        if snapshot.ids.iter().any(|id| id.custom) {
            assert_eq!(restored.err(), Some(Error::InvalidArgument));
        } else {
            let (space, sets) = restored.expect("a decoded snapshot restores");
            assert_eq!(sets.len(), snapshot.sets.len());
            assert_eq!(&space.snapshot(), snapshot);
        }
    }
    // The C restore: the same verdict (custom IDs: C spaces have no
    // allocator to give them back to), nothing written on error.
    let c_ok = decoded
        .as_ref()
        .is_ok_and(|s| !s.ids.iter().any(|id| id.custom));
    let mut space: *mut ioasid_space = ptr::null_mut();
    let mut sets: Vec<*mut ioasid_set> = vec![ptr::null_mut(); 16384];
    let mut nr = sets.len() as c_uint;
    // SAFETY: valid buffer, out pointers and room as declared; NULL map.
    let rc = unsafe {
        ioasid_space_restore(
            bytes.as_ptr().cast(),
            bytes.len(),
            None,
            ptr::null_mut(),
            &mut space,
            sets.as_mut_ptr(),
            &mut nr,
        )
    };
    if !c_ok {
        assert_eq!(rc, -22, "EINVAL");
        assert!(space.is_null() && nr as usize == sets.len());
        assert!(sets.iter().all(|s| s.is_null()));
        return;
    }
    assert_eq!(rc, 0);
    let mut saved = vec![0u8; canonical.len()];
    let mut size = saved.len();
    // SAFETY: a live space handle, a buffer of `size` bytes.
    assert_eq!(
        unsafe { ioasid_space_save(space, saved.as_mut_ptr().cast(), &mut size) },
        0
    );
    assert_eq!(
        (size, &saved),
        (canonical.len(), &canonical),
        "restore then save: the same bytes (in the current version)"
    );
    for &set in &sets[..nr as usize] {
        // SAFETY: sets the restore handed out, released once.
        unsafe { ioasid_set_release(set) };
    }
    // SAFETY: the restored handle, destroyed once.
    unsafe { ioasid_space_destroy(space) };
}
