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
//!
//! ## Provenance
//!
//! A word is an integer in an `AtomicU64` slot, shared with the owner index
//! and with inline integers, so a pointer stored in it cannot keep strict
//! provenance. Pointers therefore go in with *exposed* provenance
//! ([`inline_pointer`]: `expose_provenance`) and come back with
//! `with_exposed_provenance` ([`pointer_from_inline`]); every such pointer
//! was made by `Box::into_raw` / `Arc::into_raw`, so it carries the write
//! permission the final drop needs, never a shared borrow's.
//!
//! ## 48-bit addresses
//!
//! A pointer is stored inline only if its address fits 48 bits. Where it
//! does not (5-level paging with 57-bit user addresses, or top-byte tags
//! such as ARM TBI/MTE), [`inline_pointer`] answers `None`, the payload's
//! `into_inline` gives the value back, and it is stored boxed. If even the
//! box's address does not fit, the operation fails with
//! `Error::InvalidArgument` and nothing changes.

use crate::domain::Guard;
use std::fmt;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
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
/// A payload either has a 48-bit inline encoding ([`Payload::into_inline`]),
/// which keeps lookups at one memory access and costs no allocation, or is
/// stored in a box (the default). Implemented for small integers, `bool`,
/// `char`, `()`, `Box<U>`, `Arc<U>` and their `Option`s, and (boxed) for
/// `String` and `Vec<U>`. For your own type, wrap it in [`Auto`](crate::Auto)
/// (boxed automatically, no `unsafe`), store it as `Box<YourType>` /
/// `Arc<YourType>`, or implement the trait with the defaults (always
/// boxed):
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
/// A type that holds a pointer encodes it with [`inline_pointer`] and
/// rebuilds it with [`pointer_from_inline`], which keep its provenance.
///
/// # Safety
///
/// If `v.into_inline()` returns `Ok(bits)`:
/// - `bits < 2^48`, and `v`'s ownership passed into `bits`;
/// - `from_inline(bits)` gives back a value equal to `v` that owns what `v`
///   owned;
/// - a value made by `from_inline(bits)` and never dropped is a valid shared
///   view of `v`: using it through `&Self` is the same as using `&v` (no
///   inline interior mutability, no self-references);
/// - `write_view(bits, out)` writes such a view to `out`. A type that holds
///   a `Box` must override it to write the box's pointer without rebuilding
///   a `Box` value (a rebuilt `Box` asserts unique access, which concurrent
///   views of one value cannot all have: undefined behaviour under Stacked
///   Borrows); `Box<U>` and `Option<Box<U>>` do.
pub unsafe trait Payload: Sized + Send + Sync + 'static {
    /// The value's 48-bit inline encoding (ownership moves into it), or the
    /// value back to store it boxed.
    fn into_inline(self) -> Result<u64, Self> {
        Err(self)
    }

    /// Rebuilds a value from its inline encoding.
    ///
    /// # Safety
    /// `bits` came from [`Payload::into_inline`]; see the trait's contract.
    unsafe fn from_inline(bits: u64) -> Self {
        let _ = bits;
        unreachable!("into_inline never returned Ok")
    }

    /// Writes a never-dropped shared view of the value encoded by `bits` to
    /// `out`. The default writes `from_inline(bits)`.
    ///
    /// # Safety
    /// `bits` came from [`Payload::into_inline`] and its value is live;
    /// `out` is valid for writes of `Self`.
    unsafe fn write_view(bits: u64, out: *mut Self) {
        // SAFETY: forwarded from the caller.
        unsafe { out.write(Self::from_inline(bits)) }
    }
}

/// The 48-bit inline encoding of a pointer, exposing its provenance so that
/// [`pointer_from_inline`] can give it back; `None` if its address does not
/// fit 48 bits (store the value boxed then).
pub fn inline_pointer<U>(pointer: *mut U) -> Option<u64> {
    let bits = pointer.expose_provenance() as u64;
    (bits <= PAYLOAD_MASK).then_some(bits)
}

/// The pointer whose [`inline_pointer`] encoding is `bits`, with the
/// provenance it had.
pub fn pointer_from_inline<U>(bits: u64) -> *mut U {
    std::ptr::with_exposed_provenance_mut(bits as usize)
}

macro_rules! inline_unsigned {
    ($($t:ty),*) => {$(
        // SAFETY: plain integers of at most 32 bits round-trip through u64.
        unsafe impl Payload for $t {
            fn into_inline(self) -> Result<u64, Self> {
                Ok(u64::from(self))
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
            fn into_inline(self) -> Result<u64, Self> {
                Ok(u64::from(self as $u))
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
            fn into_inline(self) -> Result<u64, Self> {
                let bits = self as u64;
                if bits <= PAYLOAD_MASK { Ok(bits) } else { Err(self) }
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
    fn into_inline(self) -> Result<u64, Self> {
        Ok(0)
    }
    unsafe fn from_inline(_: u64) -> Self {}
}

// SAFETY: 0 and 1 round-trip.
unsafe impl Payload for bool {
    fn into_inline(self) -> Result<u64, Self> {
        Ok(u64::from(self))
    }
    unsafe fn from_inline(bits: u64) -> Self {
        bits != 0
    }
}

// SAFETY: a char's scalar value round-trips through u64.
unsafe impl Payload for char {
    fn into_inline(self) -> Result<u64, Self> {
        Ok(u64::from(u32::from(self)))
    }
    unsafe fn from_inline(bits: u64) -> Self {
        // SAFETY: the bits came from a char (trait contract).
        unsafe { char::from_u32_unchecked(bits as u32) }
    }
}

// SAFETY: a Box is its heap pointer, taken with `into_raw` (write
// provenance) and exposed; `from_raw` restores ownership. A never-dropped
// rebuilt Box is a shared view of the same heap value (views are kept in a
// `ManuallyDrop`; `Ref` rebuilds them once and never moves them as a Box).
unsafe impl<U: Send + Sync + 'static> Payload for Box<U> {
    fn into_inline(self) -> Result<u64, Self> {
        let raw = Box::into_raw(self);
        // SAFETY: `raw` came from `into_raw` just above and was not used.
        inline_pointer(raw).ok_or_else(|| unsafe { Box::from_raw(raw) })
    }
    unsafe fn from_inline(bits: u64) -> Self {
        // SAFETY: the pointer of a Box given up by `into_inline` (contract).
        unsafe { Box::from_raw(pointer_from_inline(bits)) }
    }
    unsafe fn write_view(bits: u64, out: *mut Self) {
        // SAFETY: a `Box<U>` of a sized `U` is represented as a `*mut U`
        // (documented by std); writing the pointer makes a Box value without
        // a retag, so views do not claim the box for themselves.
        unsafe { out.cast::<*mut U>().write(pointer_from_inline(bits)) }
    }
}

// SAFETY: as for Box; the Arc's strong count moves into the bits and back.
unsafe impl<U: Send + Sync + 'static> Payload for std::sync::Arc<U> {
    fn into_inline(self) -> Result<u64, Self> {
        let raw = std::sync::Arc::into_raw(self);
        // SAFETY: `raw` came from `into_raw` just above and was not used.
        inline_pointer(raw.cast_mut()).ok_or_else(|| unsafe { std::sync::Arc::from_raw(raw) })
    }
    unsafe fn from_inline(bits: u64) -> Self {
        // SAFETY: the pointer of an Arc given up by `into_inline` (contract).
        unsafe { std::sync::Arc::from_raw(pointer_from_inline::<U>(bits).cast_const()) }
    }
}

// SAFETY: None is 0, which no Box or Arc address is; Some as above.
unsafe impl<U: Send + Sync + 'static> Payload for Option<Box<U>> {
    fn into_inline(self) -> Result<u64, Self> {
        match self {
            None => Ok(0),
            Some(b) => b.into_inline().map_err(Some),
        }
    }
    unsafe fn from_inline(bits: u64) -> Self {
        // SAFETY: 0 for None, else a Box's encoding (trait contract).
        (bits != 0).then(|| unsafe { Box::from_inline(bits) })
    }
    unsafe fn write_view(bits: u64, out: *mut Self) {
        // SAFETY: `Option<Box<U>>` of a sized `U` is represented as a
        // `*mut U`, null for None (documented by std); as for Box.
        unsafe { out.cast::<*mut U>().write(pointer_from_inline(bits)) }
    }
}

// SAFETY: as for Option<Box<U>>.
unsafe impl<U: Send + Sync + 'static> Payload for Option<std::sync::Arc<U>> {
    fn into_inline(self) -> Result<u64, Self> {
        match self {
            None => Ok(0),
            Some(a) => a.into_inline().map_err(Some),
        }
    }
    unsafe fn from_inline(bits: u64) -> Self {
        // SAFETY: 0 for None, else an Arc's encoding (trait contract).
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
    let value = match value.into_inline() {
        Ok(bits) => {
            debug_assert!(
                bits <= PAYLOAD_MASK,
                "Payload::into_inline broke its contract"
            );
            return Ok(bits & PAYLOAD_MASK);
        }
        Err(value) => value,
    };
    let boxed = Box::into_raw(Box::new(value));
    match inline_pointer(boxed) {
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
        // SAFETY: a boxed payload is the exposed pointer of a leaked `Box<T>`.
        drop(unsafe { Box::from_raw(pointer_from_inline::<T>(bits)) });
    } else {
        // SAFETY: an inline payload that owns its `T` (Payload contract).
        drop(unsafe { T::from_inline(bits) });
    }
}

/// True if dropping the value of `word` does anything (a box to free, or a
/// `T` with drop glue): else the epoch need not be asked.
pub(crate) fn needs_drop<T: Payload>(word: u64) -> bool {
    word & BOXED != 0 || std::mem::needs_drop::<T>()
}

/// True if the word's value lives in a box (read only under a guard).
pub(crate) fn is_boxed(word: u64) -> bool {
    word & BOXED != 0
}

/// A copy of the inline value of a live `word`; no guard needed.
///
/// # Safety
/// `word` was loaded from a slot and is not boxed (`!is_boxed(word)`).
pub(crate) unsafe fn copy_inline<T: Payload + Copy>(word: u64) -> T {
    debug_assert!(!is_boxed(word));
    // SAFETY: an inline payload of a `T` (caller's contract). `T: Copy`
    // has no drop glue, so no value is ever reclaimed: the bits alone are
    // the value, valid even if the word left its slot since it was loaded.
    unsafe { T::from_inline(word & PAYLOAD_MASK) }
}

/// A shared view of an ID's data, valid while the guard it came from lives.
///
/// Dereferences to `T`. Never drops the value: the space owns it.
pub struct Ref<'g, T: Payload> {
    view: View<'g, T>,
}

enum View<'g, T> {
    /// A never-dropped view of an inline value (written by
    /// `Payload::write_view`), bound to the guard's lifetime. Held in a
    /// `MaybeUninit` (always initialised) so that moving the `Ref` never
    /// retags a `Box` inside it.
    Inline(MaybeUninit<T>, PhantomData<&'g Guard>),
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
            View::Boxed(unsafe { &*pointer_from_inline::<T>(bits) })
        } else {
            let mut view = MaybeUninit::<T>::uninit();
            // SAFETY: inline payload of a live `T`; a `MaybeUninit` is never
            // dropped, so this is the never-dropped shared view the
            // contract allows.
            unsafe { T::write_view(bits, view.as_mut_ptr()) };
            View::Inline(view, PhantomData)
        };
        Ref { view }
    }
}

impl<T: Payload> Deref for Ref<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        match &self.view {
            // SAFETY: initialised by `write_view` in `new`.
            View::Inline(value, _) => unsafe { value.assume_init_ref() },
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

    /// Two views of one inline Box at once, then the owner's drop: the
    /// pointer must carry the box's own (write) provenance throughout.
    #[test]
    fn box_views_overlap_and_the_drop_frees_through_the_box() {
        let word = with_owner(encode(Box::new(41u32)).ok().unwrap(), 2);
        assert_eq!(word & BOXED, 0, "a Box is stored inline");
        // SAFETY: test: no reclamation runs while the views live.
        let (first, second) = unsafe { (Ref::<Box<u32>>::new(word), Ref::<Box<u32>>::new(word)) };
        assert_eq!(**first + **second, 82);
        assert_eq!(**first, 41);
        let _ = (first, second);
        // SAFETY: the one drop of the encoded value.
        unsafe { drop_value::<Box<u32>>(word) };
    }

    /// An address above 48 bits (57-bit user space, a tagged pointer) is
    /// never packed: the pointer types then fall back to a box.
    #[test]
    fn wide_addresses_are_not_packed() {
        assert_eq!(
            inline_pointer(std::ptr::without_provenance_mut::<u8>(1 << 48)),
            None
        );
        assert_eq!(
            inline_pointer(std::ptr::without_provenance_mut::<u8>(0xFF << 56)),
            None
        );
        let low = std::ptr::without_provenance_mut::<u8>(PAYLOAD_MASK as usize);
        assert_eq!(inline_pointer(low), Some(PAYLOAD_MASK));
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
