//! The offline and operator commands of the binary: reading the log, rebuilding projections,
//! checking a running server's health. The log and projection commands work on a stopped store
//! and beside a running `scimd serve`.

pub mod client;
pub mod health;
pub mod log;
pub mod projection;
