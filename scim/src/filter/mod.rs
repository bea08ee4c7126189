//! The SCIM filter language (RFC 7644 §3.4.2.2), pure: [`parse`] turns a filter into an AST,
//! [`Filter::bind`] checks it against a resource type's schemas, and [`Bound::matches`] evaluates it
//! on a resource's JSON representation.
//!
//! - `and` binds tighter than `or`; `not (…)` and parentheses group; value paths
//!   (`emails[type eq "work" and value co "@example.org"]`) test one element at a time.
//! - Attribute paths are case-insensitive and may carry a schema URN, as
//!   `urn:…:enterprise:2.0:User:employeeNumber` or in the dotted form
//!   `urn:mace:surf.nl:sram:scim:extension:User.eduPersonUniqueId`.
//! - An attribute the resource type does not define has no value (RFC 7644 §3.4.2.1).
//! - Comparison follows the attribute's type: strings case-insensitively unless `caseExact`,
//!   dateTime by instant, numbers numerically (exactly, at any length), booleans with `eq`/`ne`
//!   only. `ne` is the negation of `eq`. `eq null` means "has no value", `ne null` "has a value".
//!   An incompatible comparison is an [`FilterError`] (400 `invalidFilter`).
//! - [`Limits`] bound the length, nesting depth and number of terms, so a hostile filter cannot
//!   tie up the server.

mod bind;
mod eval;
mod lexer;
pub mod number;
mod parser;
pub mod plan;
mod sort;
#[cfg(test)]
mod tests;

pub use bind::{Bound, BoundPath, Test};
pub use parser::parse;
pub use sort::SortKey;

use super::ScimError;

/// Where and why a filter was refused; becomes a 400 `invalidFilter`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter at column {column}: {reason}")]
pub struct FilterError {
    /// 1-based character column the problem was found at.
    pub column: usize,
    /// What is wrong there.
    pub reason: String,
}

impl FilterError {
    /// An error at `column` (1-based) for `reason`.
    pub(crate) fn new(column: usize, reason: impl Into<String>) -> FilterError {
        FilterError {
            column,
            reason: reason.into(),
        }
    }
}

impl From<FilterError> for ScimError {
    fn from(e: FilterError) -> ScimError {
        ScimError::invalid_filter(e.to_string())
    }
}

/// Bounds on the filters a client may send (`FILTER_MAX_LENGTH`, `FILTER_MAX_DEPTH`,
/// `FILTER_MAX_TERMS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest filter, in characters.
    pub max_length: usize,
    /// Deepest nesting of parentheses, `not` and value paths.
    pub max_depth: usize,
    /// Most attribute comparisons and `pr` tests.
    pub max_terms: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_length: 4096,
            max_depth: 16,
            max_terms: 64,
        }
    }
}

/// A comparison operator (RFC 7644 §3.4.2.2, Table 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Contains (strings).
    Co,
    /// Starts with (strings).
    Sw,
    /// Ends with (strings).
    Ew,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
}

impl Op {
    fn from_word(word: &str) -> Option<Op> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            _ => return None,
        })
    }

    /// The operator as written in a filter.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Co => "co",
            Op::Sw => "sw",
            Op::Ew => "ew",
            Op::Gt => "gt",
            Op::Ge => "ge",
            Op::Lt => "lt",
            Op::Le => "le",
        }
    }
}

/// A comparison value (RFC 7644 §3.4.2.2 `compValue`).
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A JSON string, escapes decoded.
    String(String),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// A JSON number, kept exact.
    Number(number::Decimal),
}

/// An attribute path as written in a filter, with the column it starts at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathText {
    /// The path text (`name.familyName`, `urn:…:User:employeeNumber`).
    pub text: String,
    /// 1-based column of its first character.
    pub column: usize,
}

/// A parsed filter (RFC 7644 §3.4.2.2 `FILTER`).
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Both hold.
    And(Box<Filter>, Box<Filter>),
    /// Either holds.
    Or(Box<Filter>, Box<Filter>),
    /// The inner filter does not hold.
    Not(Box<Filter>),
    /// `path pr`: the attribute has a non-empty value.
    Present(PathText),
    /// `path op value`.
    Compare {
        /// The attribute.
        path: PathText,
        /// The operator.
        op: Op,
        /// The value, with the column it starts at.
        value: Literal,
        /// 1-based column of the operator.
        column: usize,
    },
    /// `path[filter]`: some element of a (multi-valued) complex attribute matches the inner
    /// filter, whose paths name sub-attributes.
    ValuePath {
        /// The complex attribute.
        path: PathText,
        /// The test on each element.
        filter: Box<Filter>,
    },
}
