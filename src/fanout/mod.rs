//! Log subscribers: each reads the events after its durable checkpoint, does its work, and only
//! then advances the checkpoint (through the store's writer task). A crash between the work and
//! the checkpoint repeats work; it never skips any. Subscribers never block the SCIM API.

pub mod amqp;
pub mod amqp_groups;
pub mod amqp_refusals;
pub mod backends;
pub mod id_map;
pub mod poll;
pub mod projection;
pub mod set;
pub mod status;
