//! Entry words: a live ID's owner and data in one `AtomicU64` leaf slot.
//!
//! ```text
//!  63      62    61 ........ 48   47 .................................. 0
//! [boxed] [ext] [owner set index] [payload: inline value, or Box address]
//! ```
//!
//! A word of 0 is an empty slot; a live word has an owner index in
//! `1..=MAX_SETS` (14 bits), so it is never 0. The `ext` bit says the ID has
//! an extension record (reference count, state) in a side table owned by the
//! space; an ID without it has exactly the allocation's one reference, so
//! paths that use no extension pay one bit test. Owner and data travel in one load, so a
//! reader can never pair one set's ownership with another set's data, and a
//! lookup costs one memory access below the tree's inner nodes, like an
//! array. Values that fit 48 bits (small integers, `Box`/`Arc` pointers,
//! `()`) are stored inline; anything else is boxed and flagged.
//!
//! INVARIANT: a published word owns its value: the value is dropped exactly
//! once, by whoever takes the word out of its slot (through the epoch, so
//! readers that loaded it keep a valid view until they unpin), or by the
//! space's drop.

use crate::domain::Guard;
use std::fmt;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ops::Deref;

/// Bits of the payload field.
pub(crate) const PAYLOAD_BITS: u32 = 48;
const PAYLOAD_MASK: u64 = (1 << PAYLOAD_BITS) - 1;
const BOXED: u64 = 1 << 63;
/// The ID has an extension record in the space's side table.
pub(crate) const EXT: u64 = 1 << 62;
/// Bits of the owner field.
const OWNER_BITS: u32 = 14;
const OWNER_MASK: u64 = (1 << OWNER_BITS) - 1;
/// The largest owner (set) index; 0 is never an owner.
pub(crate) const MAX_SETS: u16 = OWNER_MASK as u16;

/// A value that can be stored as per-ID private data.
///
/// A payload either has a 48-bit inline encoding ([`Payload::to_inline`]),
/// which keeps lookups at one memory access and costs no allocation, or is
/// stored in a box (the default). Implemented for small integers, `bool`,
/// `char`, `()`, `Box<U>`, `Arc<U>` and their `Option`s, and (boxed) for
/// `String` and `Vec<U>`. For your own type, either store it as
/// `Box<YourType>` / `Arc<YourType>`, or implement the trait with the
/// defaults (always boxed):
///
/// ```
/// struct ProcessContext { pid: u32, name: String }
/// // SAFETY: the provided methods store the value boxed.
/// unsafe impl ioasid::Payload for ProcessContext {}
///
/// let space = ioasid::Space::<ProcessContext>::new(1, 0xFFFFF)?;
/// let set = space.new_set();
/// let pasid = set.alloc(1, 0xFFFFF, ProcessContext { pid: 7, name: "qemu".into() })?;
/// assert_eq!(set.with(pasid, |c| (c.pid, c.name.len()))?, (7, 4));
/// # Ok::<(), ioasid::Error>(())
/// ```
///
/// # Safety
///
/// If `to_inline(&v)` returns `Some(bits)`:
/// - `bits < 2^48`;
/// - after `std::mem::forget(v)`, `from_inline(bits)` gives back a value
///   equal to `v` that owns what `v` owned;
/// - a value made by `from_inline(bits)` and never dropped is a valid shared
///   view of `v`: using it through `&Self` is the same as using `&v` (no
///   inline interior mutability, no self-references).
pub unsafe trait Payload: Sized + Send + Sync + 'static {
    /// The value's 48-bit inline encoding, or `None` to store it boxed.
    fn to_inline(&self) -> Option<u64> {
        None
    }

    /// Rebuilds a value from its inline encoding.
    ///
    /// # Safety
    /// `bits` came from [`Payload::to_inline`] of a value that was then
    /// forgotten; see the trait's contract.
    unsafe fn from_inline(bits: u64) -> Self {
        let _ = bits;
        unreachable!("to_inline never returned Some")
    }
}

macro_rules! inline_unsigned {
    ($($t:ty),*) => {$(
        // SAFETY: plain integers of at most 32 bits round-trip through u64.
        unsafe impl Payload for $t {
            fn to_inline(&self) -> Option<u64> {
                Some(u64::from(*self))
            }
            unsafe fn from_inline(bits: u64) -> Self {
                bits as $t
            }
        }
    )*};
}
inline_unsigned!(u8, u16, u32);

macro_rules! inline_signed {
    ($($t:ty => $u:ty),*) => {$(
        // SAFETY: the bits of a signed integer of at most 32 bits, read as
        // unsigned, round-trip through u64.
        unsafe impl Payload for $t {
            fn to_inline(&self) -> Option<u64> {
                Some(u64::from(*self as $u))
            }
            unsafe fn from_inline(bits: u64) -> Self {
                bits as $u as $t
            }
        }
    )*};
}
inline_signed!(i8 => u8, i16 => u16, i32 => u32);

macro_rules! inline_if_small {
    ($($t:ty),*) => {$(
        // SAFETY: values below 2^48 round-trip; larger ones are boxed.
        unsafe impl Payload for $t {
            fn to_inline(&self) -> Option<u64> {
                let bits = *self as u64;
                (bits <= PAYLOAD_MASK).then_some(bits)
            }
            unsafe fn from_inline(bits: u64) -> Self {
                bits as $t
            }
        }
    )*};
}
inline_if_small!(u64, usize);

// SAFETY: `()` carries nothing.
unsafe impl Payload for () {
    fn to_inline(&self) -> Option<u64> {
        Some(0)
    }
    unsafe fn from_inline(_: u64) -> Self {}
}

// SAFETY: 0 and 1 round-trip.
unsafe impl Payload for bool {
    fn to_inline(&self) -> Option<u64> {
        Some(u64::from(*self))
    }
    unsafe fn from_inline(bits: u64) -> Self {
        bits != 0
    }
}

// SAFETY: a char's scalar value round-trips through u64.
unsafe impl Payload for char {
    fn to_inline(&self) -> Option<u64> {
        Some(u64::from(u32::from(*self)))
    }
    unsafe fn from_inline(bits: u64) -> Self {
        // SAFETY: the bits came from a char (trait contract).
        unsafe { char::from_u32_unchecked(bits as u32) }
    }
}

/// The address of a heap pointer if it fits the payload field.
fn fits(address: usize) -> Option<u64> {
    let bits = address as u64;
    (bits <= PAYLOAD_MASK).then_some(bits)
}

// SAFETY: a Box is its heap address; `from_raw` after `forget` restores
// ownership, and a never-dropped copy is a shared view of the same heap value.
unsafe impl<U: Send + Sync + 'static> Payload for Box<U> {
    fn to_inline(&self) -> Option<u64> {
        fits(&**self as *const U as usize)
    }
    unsafe fn from_inline(bits: u64) -> Self {
        // SAFETY: the address of a forgotten Box (trait contract).
        unsafe { Box::from_raw(bits as usize as *mut U) }
    }
}

// SAFETY: as for Box; the forgotten Arc's strong count is handed back.
unsafe impl<U: Send + Sync + 'static> Payload for std::sync::Arc<U> {
    fn to_inline(&self) -> Option<u64> {
        fits(std::sync::Arc::as_ptr(self) as usize)
    }
    unsafe fn from_inline(bits: u64) -> Self {
        // SAFETY: the pointer of a forgotten Arc (trait contract).
        unsafe { std::sync::Arc::from_raw(bits as usize as *const U) }
    }
}

// SAFETY: None is 0, which no Box or Arc address is; Some as above.
unsafe impl<U: Send + Sync + 'static> Payload for Option<Box<U>> {
    fn to_inline(&self) -> Option<u64> {
        self.as_ref().map_or(Some(0), |b| b.to_inline())
    }
    unsafe fn from_inline(bits: u64) -> Self {
        // SAFETY: 0 for None, else a forgotten Box (trait contract).
        (bits != 0).then(|| unsafe { Box::from_inline(bits) })
    }
}

// SAFETY: as for Option<Box<U>>.
unsafe impl<U: Send + Sync + 'static> Payload for Option<std::sync::Arc<U>> {
    fn to_inline(&self) -> Option<u64> {
        self.as_ref().map_or(Some(0), |a| a.to_inline())
    }
    unsafe fn from_inline(bits: u64) -> Self {
        // SAFETY: 0 for None, else a forgotten Arc (trait contract).
        (bits != 0).then(|| unsafe { std::sync::Arc::from_inline(bits) })
    }
}

// SAFETY: boxed (the provided methods).
unsafe impl Payload for String {}
// SAFETY: boxed (the provided methods).
unsafe impl<U: Send + Sync + 'static> Payload for Vec<U> {}

/// Turns a value into the payload part of an entry word (owner bits 0), or
/// gives it back if even its box's address does not fit 48 bits.
pub(crate) fn encode<T: Payload>(value: T) -> Result<u64, T> {
    if let Some(bits) = value.to_inline() {
        debug_assert!(
            bits <= PAYLOAD_MASK,
            "Payload::to_inline broke its contract"
        );
        std::mem::forget(value);
        return Ok(bits & PAYLOAD_MASK);
    }
    let boxed = Box::into_raw(Box::new(value));
    match fits(boxed as usize) {
        Some(bits) => Ok(BOXED | bits),
        // SAFETY: just leaked above, never published.
        None => Err(*unsafe { Box::from_raw(boxed) }),
    }
}

/// An entry word: a payload (from [`encode`]) owned by set `owner`.
pub(crate) fn with_owner(payload: u64, owner: u16) -> u64 {
    debug_assert!((1..=MAX_SETS).contains(&owner));
    payload | (u64::from(owner) << PAYLOAD_BITS)
}

/// The owner index of a live word.
pub(crate) fn owner(word: u64) -> u16 {
    ((word >> PAYLOAD_BITS) & OWNER_MASK) as u16
}

/// True if the ID of a live word has an extension record.
pub(crate) fn has_ext(word: u64) -> bool {
    word & EXT != 0
}

/// `old` with its payload replaced by `payload` (from [`encode`]); owner and
/// ext bits kept.
pub(crate) fn with_payload_of(payload: u64, old: u64) -> u64 {
    payload | (old & (EXT | (OWNER_MASK << PAYLOAD_BITS)))
}

/// A word detached from its set: owner 0, ext set (never 0, so the slot
/// stays occupied). Only IDs with an extension record are ever detached.
pub(crate) fn detached(word: u64) -> u64 {
    (word & !(OWNER_MASK << PAYLOAD_BITS)) | EXT
}

#[cfg(test)]
/// The payload part of a word (owner and ext bits cleared, boxed flag kept).
pub(crate) fn payload(word: u64) -> u64 {
    word & (BOXED | PAYLOAD_MASK)
}

/// Drops the value a word owns.
///
/// # Safety
/// `word` (or its payload) came from [`encode::<T>`] and this is the one
/// drop of its value (module invariant).
pub(crate) unsafe fn drop_value<T: Payload>(word: u64) {
    let bits = word & PAYLOAD_MASK;
    if word & BOXED != 0 {
        // SAFETY: a boxed payload is the address of a leaked `Box<T>`.
        drop(unsafe { Box::from_raw(bits as usize as *mut T) });
    } else {
        // SAFETY: an inline payload of a forgotten `T`.
        drop(unsafe { T::from_inline(bits) });
    }
}

/// True if dropping the value of `word` does anything (a box to free, or a
/// `T` with drop glue): else the epoch need not be asked.
pub(crate) fn needs_drop<T: Payload>(word: u64) -> bool {
    word & BOXED != 0 || std::mem::needs_drop::<T>()
}

/// A shared view of an ID's data, valid while the guard it came from lives.
///
/// Dereferences to `T`. Never drops the value: the space owns it.
pub struct Ref<'g, T: Payload> {
    view: View<'g, T>,
}

enum View<'g, T> {
    /// A never-dropped rebuild of an inline value (a valid shared view by the
    /// `Payload` contract), bound to the guard's lifetime.
    Inline(ManuallyDrop<T>, PhantomData<&'g Guard>),
    /// The boxed value itself.
    Boxed(&'g T),
}

impl<'g, T: Payload> Ref<'g, T> {
    /// A view of the value of a live `word`.
    ///
    /// # Safety
    /// `word` was loaded from a slot while `'g`'s guard was pinned in the
    /// domain that reclaims the slot's values.
    pub(crate) unsafe fn new(word: u64) -> Self {
        let bits = word & PAYLOAD_MASK;
        let view = if word & BOXED != 0 {
            // SAFETY: a boxed payload is a leaked `Box<T>`, freed only through
            // the epoch after the guard (caller's contract).
            View::Boxed(unsafe { &*(bits as usize as *const T) })
        } else {
            // SAFETY: inline payload of a live `T`; kept in ManuallyDrop, so
            // this is the never-dropped shared view the contract allows.
            View::Inline(
                ManuallyDrop::new(unsafe { T::from_inline(bits) }),
                PhantomData,
            )
        };
        Ref { view }
    }
}

impl<T: Payload> Deref for Ref<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        match &self.view {
            View::Inline(value, _) => value,
            View::Boxed(value) => value,
        }
    }
}

impl<T: Payload + fmt::Debug> fmt::Debug for Ref<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl<T: Payload + PartialEq> PartialEq for Ref<'_, T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Payload + PartialEq> PartialEq<T> for Ref<'_, T> {
    fn eq(&self, other: &T) -> bool {
        **self == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn round_trip<T: Payload + PartialEq + fmt::Debug + Clone>(value: T, inline: bool) {
        let word = with_owner(encode(value.clone()).ok().unwrap(), 3);
        assert_eq!(owner(word), 3);
        assert_eq!(word & BOXED == 0, inline, "{value:?}");
        // SAFETY: test: no reclamation runs while the view lives.
        let view = unsafe { Ref::<T>::new(word) };
        assert_eq!(*view, value);
        let _ = view;
        // SAFETY: the one drop of the encoded value.
        unsafe { drop_value::<T>(payload(word)) };
    }

    #[test]
    fn values_round_trip_inline_or_boxed() {
        round_trip(0u32, true);
        round_trip(u32::MAX, true);
        round_trip(-5i32, true);
        round_trip(i8::MIN, true);
        round_trip((), true);
        round_trip(true, true);
        round_trip('é', true);
        round_trip((1u64 << 48) - 1, true);
        round_trip(1u64 << 48, false);
        round_trip(usize::MAX, false);
        round_trip(Box::new(17u8), true);
        round_trip(Arc::new("shared".to_string()), true);
        round_trip(Option::<Box<u8>>::None, true);
        round_trip(Some(Box::new(9u16)), true);
        round_trip("boxed".to_string(), false);
        round_trip(vec![1, 2, 3], false);
    }

    #[test]
    fn owner_and_ext_bits_are_independent() {
        let payload_bits = encode("boxed".to_string()).ok().unwrap();
        for owner_index in [1, 2, 0x2000, MAX_SETS] {
            let word = with_owner(payload_bits, owner_index);
            assert_eq!(owner(word), owner_index);
            assert!(!has_ext(word));
            let extended = word | EXT;
            assert_eq!(owner(extended), owner_index, "ext never leaks into owner");
            assert!(has_ext(extended));
            assert_eq!(payload(extended), payload_bits);
            assert_ne!(extended & BOXED, 0, "boxed flag kept");
        }
        assert_eq!(MAX_SETS, 0x3FFF);
        // SAFETY: the one drop of the encoded value.
        unsafe { drop_value::<String>(payload_bits) };
    }

    #[test]
    fn arc_counts_are_kept() {
        let shared = Arc::new(5u32);
        let word = with_owner(encode(shared.clone()).ok().unwrap(), 1);
        assert_eq!(Arc::strong_count(&shared), 2);
        // SAFETY: test: no reclamation runs while the view lives.
        let view = unsafe { Ref::<Arc<u32>>::new(word) };
        assert_eq!(**view, 5);
        let _ = view;
        assert_eq!(Arc::strong_count(&shared), 2, "a view never drops");
        // SAFETY: the one drop of the encoded value.
        unsafe { drop_value::<Arc<u32>>(word) };
        assert_eq!(Arc::strong_count(&shared), 1);
    }
}
