//! The offline and operator commands of the binary: reading the log, rebuilding projections.
//! Each works on a stopped store and beside a running `scimd serve`.

pub mod log;
pub mod projection;
