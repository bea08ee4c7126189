//! Fault points for fault-injection tests, driven by libfiu (Debian's `fiu-utils`).
//!
//! Under `fiu-run`, libfiu is loaded into the process and `fiu-ctrl -c 'enable name=…' PID` turns a
//! point on at run time; otherwise `fiu_fail` is not found and every point stays off. Nothing here
//! is reachable through the API or a setting: an operator has to start scimd under `fiu-run` on
//! purpose. The points let the tests make the writer panic or stall where no system call would
//! (tests/store_faults.rs), or hold the asynchronous-request executor (tests/async_requests.rs).

use std::ffi::CStr;
use std::sync::OnceLock;

/// The writer panics inside its write transaction, after applying its batch.
pub(crate) const BATCH_PANIC: &CStr = c"scimd/store/batch/panic";
/// The writer holds its batch (waits, taking no more commands) while the point is on.
pub(crate) const BATCH_STALL: &CStr = c"scimd/store/batch/stall";

/// The asynchronous-request executor holds (runs nothing) while the point is on, so a test can
/// kill scimd with requests accepted and not yet run.
pub(crate) const ASYNC_HOLD: &CStr = c"scimd/async/hold";

/// The asynchronous-request executor panics before it runs a request, so a test can check that
/// it is restarted.
pub(crate) const ASYNC_PANIC: &CStr = c"scimd/async/panic";

type FiuFail = unsafe extern "C" fn(*const libc::c_char) -> libc::c_int;

/// libfiu's `fiu_fail`, when the process runs under `fiu-run`.
fn fiu_fail() -> Option<FiuFail> {
    static FIU_FAIL: OnceLock<Option<FiuFail>> = OnceLock::new();
    *FIU_FAIL.get_or_init(|| {
        // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches the loaded objects.
        let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"fiu_fail".as_ptr()) };
        if symbol.is_null() {
            None
        } else {
            // SAFETY: libfiu declares `int fiu_fail(const char *name)`.
            Some(unsafe { std::mem::transmute::<*mut libc::c_void, FiuFail>(symbol) })
        }
    })
}

/// Whether the fault point `name` is on.
pub(crate) fn fails(name: &CStr) -> bool {
    match fiu_fail() {
        // SAFETY: `name` is NUL-terminated and outlives the call; libfiu only reads it.
        Some(fail) => unsafe { fail(name.as_ptr()) != 0 },
        None => false,
    }
}
