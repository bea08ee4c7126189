//! PATCH (RFC 7644 §3.5.2), pure: [`parse()`] reads a PatchOp message, [`apply()`] applies its
//! operations to a resource's stored attributes and returns the new attributes (validated exactly as
//! a replace would be) and, for Groups, the membership changes as [`MemberOp`]s, so that the store
//! can apply them without reading the whole member list.
//!
//! The RFC's rules: `add` to a single-valued attribute replaces it, to a multi-valued one appends
//! (values equal to an existing one are not duplicated); `replace` on a value path matching nothing
//! is `noTarget`; `remove` needs a path (`noTarget`); required, readOnly and immutable attributes
//! cannot be removed or changed (`invalidValue`, `mutability`); a value with `primary: true` clears
//! the others' primary. Bad paths are `invalidPath`, bad values `invalidValue`.
//!
//! Client habits accepted, each named in a unit test:
//! - `op` in any case (`"Add"`, `"Replace"`);
//! - booleans as strings (`"False"`), as in create and replace;
//! - Entra's `{"op":"remove","path":"members","value":[{"value":"id"}]}` removes only those members;
//! - path-less `add`/`replace` whose value's keys are paths (`{"name.givenName":"x"}`,
//!   `{"urn:…:enterprise:2.0:User:employeeNumber":"1"}`, `{"active":false}`);
//! - the enterprise `manager` (any complex attribute with a `value`) given as a bare string id;
//! - `add` on a value path that matches nothing creates the element from the filter's equalities
//!   (Entra's `emails[type eq "work"].value`);
//! - `replace` of `members` with an empty array empties the group.
//!
//! [`parse()`] (in `parse.rs`) reads the message; the engine (`apply.rs`) resolves each
//! operation's path and decides what it means; `edit.rs` makes the edits on the values.

mod apply;
mod edit;
mod parse;

use serde_json::{Map, Value};

use super::filter::Bound;
use super::resource::MemberInput;
use super::{ScimError, ScimType};

pub use apply::{apply, apply_within};
pub use parse::{named_attributes, parse, passwords};

/// URN of the PatchOp message (RFC 7644 §3.5.2).
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The most operations one PATCH request may carry.
pub const MAX_OPERATIONS: usize = 10_000;

/// What an operation does (RFC 7644 §3.5.2.1–3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// §3.5.2.1.
    Add,
    /// §3.5.2.2.
    Remove,
    /// §3.5.2.3.
    Replace,
}

/// One element of `Operations`.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// `op`, matched case-insensitively.
    pub op: OpKind,
    /// `path`, if given and not empty.
    pub path: Option<String>,
    /// `value`, if given.
    pub value: Option<Value>,
}

/// A change to a Group's membership, in request order.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberOp {
    /// Make these resources members (those already members stay as they are).
    Add(Vec<MemberInput>),
    /// Remove these ids (those not members are ignored).
    Remove(Vec<String>),
    /// Remove every member whose representation (`value`, `type`, `display`) matches.
    RemoveWhere(Bound),
    /// Make exactly these resources the members.
    Replace(Vec<MemberInput>),
}

/// The outcome of [`apply()`].
#[derive(Debug, Clone, PartialEq)]
pub struct Patched {
    /// The attributes to store, normalised as for a replace.
    pub attributes: Map<String, Value>,
    /// Membership changes (Groups only), in request order.
    pub members: Vec<MemberOp>,
}

fn invalid_path(detail: impl Into<String>) -> ScimError {
    ScimError::typed(400, ScimType::InvalidPath, detail)
}

#[cfg(test)]
mod tests;
