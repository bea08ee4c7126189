//! The offline and operator commands of the binary: reading the log, rebuilding projections,
//! importing an earlier server's data, checking a running server's health. The log and projection commands work on a stopped store
//! and beside a running `scimd serve`.

pub mod client;
pub mod health;
pub mod import;
pub mod log;
pub mod projection;
