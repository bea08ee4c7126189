//! The `jumpcloud` projection: Users and Groups as JumpCloud system users and user groups.

pub mod client;
pub mod translate;
