//! [`Auto`]: any `T: Send + Sync + 'static` as per-ID data, with no
//! `unsafe impl` in user code.
//!
//! # Why a wrapper
//!
//! Spaces and sets take their data type through the unsafe trait
//! [`Payload`], which says how a value travels in the 48 payload bits of an
//! entry word (`entry.rs`). Three routes to "any `T`" were weighed:
//!
//! - **A blanket `impl<T: Send + Sync + 'static> Payload for T`.** It
//!   conflicts with every specific impl (`u32`, `Box<U>`, the C layer's
//!   `void *` type, users' own inline encodings): without specialization,
//!   which stable Rust lacks, there can be only the blanket one. Its
//!   methods could then only pick an encoding at run time from what a
//!   generic `T` reveals (`TypeId`, size), which loses `Box<U>`/`Arc<U>`
//!   inline (no `TypeId` matches a generic `U`) and the C layer's inline
//!   pointer, and turns every existing `unsafe impl Payload` into a
//!   compile error.
//! - **Inlining whatever is small enough, by copying its bytes.** Unsound
//!   for a generic `T`: padding bytes are uninitialised and may not be read
//!   as a `u64`; a reader's view of an inline value is a *copy*, so a type
//!   with interior mutability (`AtomicU32` is `Sync` and 4 bytes) would
//!   mutate the copy and never the stored value; a pointer copied as bytes
//!   loses its provenance. None of this can be detected for a generic `T`
//!   on stable Rust (no `Freeze`, no padding query).
//! - **A wrapper** (this module). `Auto<T>` implements [`Payload`] once,
//!   for every `T: Send + Sync + 'static`, with no conflict: it is our
//!   type. It stores a value inline only when `T` is one of the types whose
//!   inline encoding the crate itself defines and knows to be sound (the
//!   plain integers of at most 32 bits, `u64`/`usize` below 2^48, `bool`,
//!   `char`, `()`: no padding, no interior mutability, no pointers); the
//!   check is a `TypeId` comparison that the compiler folds away per `T`
//!   (in a release build, encoding an `Auto<u32>` is one register move).
//!   Any other `T` is boxed, as a `Payload` with the provided methods is.
//!   Existing impls, the C layer's `void *` path and the inline types keep
//!   their encodings and their speed: nothing they run changed.
//!
//! So `Space<Auto<MyContext>>` works for any context type, and generic code
//! over `T: Send + Sync + 'static` can use `Space<Auto<T>>` and still get
//! inline words when `T` is `u32`. A type with an inline encoding of its
//! own (`Box<U>`, `Arc<U>`, a user's `Payload` impl) is better stored as
//! itself: inside `Auto` it would be boxed once more.
//!
//! INVARIANT: `Auto::<T>::into_inline` returns `Ok` exactly when `T` is one
//! of the types listed in `inline_kinds!`, and then with that type's own
//! encoding; `from_inline` decodes with the same list, so the two always
//! agree on the type.

use crate::entry::Payload;
use std::any::Any;
use std::fmt;
use std::ops::{Deref, DerefMut};

/// Any `Send + Sync + 'static` value as per-ID data: stored inline when the
/// crate knows a sound inline encoding for `T` (small integers, `bool`,
/// `char`, `()`), boxed otherwise. Dereferences to `T`.
///
/// Why a wrapper: a blanket `Payload` impl for every `T` would conflict
/// with the specific ones (`u32`, `Box<U>`, the C layer's pointer type)
/// without specialization, and inlining any small `T` by copying its bytes
/// is unsound for a generic `T` (padding bytes, interior mutability seen
/// through a reader's copy, pointer provenance). `Auto` is one type with
/// one impl: it inlines only the types the crate knows, by `TypeId`.
///
/// ```
/// use ioasid::{Auto, Space};
///
/// // No `unsafe impl` anywhere: the context is boxed automatically.
/// #[derive(Debug, PartialEq)]
/// struct Context { pid: u32, name: String }
///
/// let space = Space::<Auto<Context>>::new(1, 0xFFFFF)?;
/// let set = space.new_set();
/// let pasid = set.alloc(1, 0xFFFFF, Auto(Context { pid: 7, name: "qemu".into() }))?;
/// assert_eq!(set.with(pasid, |c| (c.pid, c.name.len()))?, (7, 4));
///
/// // Generic code over any `T` gets inline words for the small types.
/// fn first_id<T: Send + Sync + 'static>(value: T) -> Result<u32, ioasid::Error> {
///     let space = Space::<Auto<T>>::new(0, 9)?;
///     let set = space.new_set();
///     set.alloc(0, 9, Auto(value))
/// }
/// assert_eq!(first_id(5u32)?, 0);
/// assert_eq!(first_id(vec![1, 2, 3])?, 0);
/// # Ok::<(), ioasid::Error>(())
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Auto<T>(pub T);

impl<T> Auto<T> {
    /// The wrapped value.
    ///
    /// ```
    /// assert_eq!(ioasid::Auto(3u8).into_inner(), 3);
    /// ```
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Auto<T> {
    /// Wraps a value.
    ///
    /// ```
    /// let data: ioasid::Auto<String> = "ctx".to_string().into();
    /// assert_eq!(data.len(), 3);
    /// ```
    fn from(value: T) -> Self {
        Auto(value)
    }
}

impl<T> Deref for Auto<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Auto<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: fmt::Debug> fmt::Debug for Auto<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The types `Auto` stores inline, each with its encoding: `$encode` maps
/// a value to `Option<u64>` (below 2^48, or `None` to box it), `$decode`
/// maps the bits back. All are `Copy`, without padding, interior
/// mutability or pointers, so a reader's copy is the value.
macro_rules! inline_kinds {
    ($($t:ty => |$v:ident| $encode:expr, |$b:ident| $decode:expr;)*) => {
        /// `value`'s inline encoding if `T` is one of the listed types.
        fn encode_known<T: 'static>(value: &T) -> Option<u64> {
            let any: &dyn Any = value;
            $(
                if let Some(&$v) = any.downcast_ref::<$t>() {
                    return $encode;
                }
            )*
            None
        }

        /// The value `bits` encodes, if `T` is one of the listed types.
        fn decode_known<T: 'static>(bits: u64) -> Option<T> {
            let mut out: Option<T> = None;
            let any: &mut dyn Any = &mut out;
            $(
                if let Some(slot) = any.downcast_mut::<Option<$t>>() {
                    let $b = bits;
                    *slot = Some($decode);
                    return out;
                }
            )*
            None
        }
    };
}

inline_kinds! {
    u8 => |v| Some(u64::from(v)), |b| b as u8;
    u16 => |v| Some(u64::from(v)), |b| b as u16;
    u32 => |v| Some(u64::from(v)), |b| b as u32;
    i8 => |v| Some(u64::from(v as u8)), |b| b as u8 as i8;
    i16 => |v| Some(u64::from(v as u16)), |b| b as u16 as i16;
    i32 => |v| Some(u64::from(v as u32)), |b| b as u32 as i32;
    u64 => |v| (v < 1 << 48).then_some(v), |b| b;
    usize => |v| ((v as u64) < 1 << 48).then_some(v as u64), |b| b as usize;
    bool => |v| Some(u64::from(v)), |b| b != 0;
    char => |v| Some(u64::from(u32::from(v))), |b| char::from_u32(b as u32).expect("a char's bits");
    () => |v| { let () = v; Some(0) }, |b| { let _ = b; };
}

// SAFETY: `into_inline` answers `Ok` only for the listed types (module
// invariant), whose encodings are below 2^48 and round-trip; they are
// `Copy` with no drop glue, so the bits own nothing and a view rebuilt by
// `from_inline` is a plain copy (no interior mutability, no pointers).
// Every other `T` is stored boxed (the `Err` answer).
unsafe impl<T: Send + Sync + 'static> Payload for Auto<T> {
    fn into_inline(self) -> Result<u64, Self> {
        match encode_known(&self.0) {
            Some(bits) => Ok(bits),
            None => Err(self),
        }
    }

    unsafe fn from_inline(bits: u64) -> Self {
        Auto(decode_known(bits).expect("Auto: inline bits of a type encode_known knows"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inline<T: Send + Sync + 'static + Clone + PartialEq + fmt::Debug>(value: T) -> bool {
        let bits = Auto(value.clone()).into_inline();
        match bits {
            Ok(bits) => {
                assert!(bits < 1 << 48);
                // SAFETY: bits from `into_inline` just above.
                assert_eq!(unsafe { Auto::<T>::from_inline(bits) }.0, value);
                true
            }
            Err(back) => {
                assert_eq!(back.0, value, "the value comes back to be boxed");
                false
            }
        }
    }

    #[test]
    fn known_small_types_inline_the_rest_boxed() {
        assert!(inline(0u8) && inline(u8::MAX) && inline(u16::MAX) && inline(u32::MAX));
        assert!(inline(-1i8) && inline(i16::MIN) && inline(i32::MIN));
        assert!(inline((1u64 << 48) - 1) && !inline(1u64 << 48));
        assert!(inline(7usize) && !inline(usize::MAX));
        assert!(inline(true) && inline('é') && inline(()));
        assert!(!inline("boxed".to_string()));
        assert!(!inline((1u8, 2u8)), "tuples may have padding: boxed");
        assert!(!inline(Some(3u32)), "not in the list: boxed");
        assert!(!inline(std::sync::Arc::new(1u32)));
    }
}
