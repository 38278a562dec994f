//! The panic boundary: no Rust panic crosses the ABI. Every `extern "C"`
//! body runs inside [`ffi_guard!`](crate::ffi_guard), which returns the
//! function's error value on a panic, or aborts with a message for functions
//! that return nothing.

/// Runs the body of an `extern "C"` function, catching any panic: the
/// function then returns `$on_panic` (its error value). For functions that
/// return nothing, pass [`abort_on_panic`] as `$on_panic`.
#[macro_export]
#[doc(hidden)]
macro_rules! ffi_guard {
    ($name:literal, $on_panic:expr, $body:expr) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| $body)) {
            Ok(value) => value,
            Err(_) => {
                $crate::report_panic($name);
                $on_panic
            }
        }
    };
}

/// Prints that a panic was caught at the boundary (the panic hook already
/// printed the panic's own message).
#[doc(hidden)]
pub fn report_panic(function: &str) {
    eprintln!("ioasid: a Rust panic was caught in {function}(); it returns an error");
}

/// For functions that cannot return an error: the process cannot go on in a
/// known state, so abort with a message (unwinding into C is never allowed).
#[doc(hidden)]
pub fn abort_on_panic(function: &str) -> ! {
    eprintln!("ioasid: a Rust panic in {function}(), which cannot report errors: aborting");
    std::process::abort()
}
