//! Binding a parsed filter to a resource type's schemas (RFC 7644 §3.4.2.2): every attribute path
//! resolved, every comparison type-checked against the attribute's type.

use chrono::{DateTime, Utc};

use super::number::Decimal;
use super::{Filter, FilterError, Literal, Op, PathText};
use crate::schema::{Attribute, AttributeType, Location, ResourceSchemas};

/// An attribute path of a bound filter (or `sortBy`): where the attribute's values live in a
/// resource, and how they compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundPath {
    /// Where the values live.
    pub location: Location,
    /// The type of the values compared.
    pub kind: AttributeType,
    /// Whether strings compare case-sensitively.
    pub case_exact: bool,
}

impl BoundPath {
    /// The values at `location`, compared as `leaf` (the attribute the path ends at) says.
    fn new(location: Location, leaf: &Attribute) -> BoundPath {
        BoundPath {
            location,
            kind: leaf.kind,
            case_exact: leaf.case_exact,
        }
    }

    /// A comparison on a complex attribute applies to its `value` sub-attribute (`attr` is the
    /// path's top-level attribute); `None` when it has none.
    fn complex_value(mut self, attr: &Attribute) -> Option<BoundPath> {
        if self.kind != AttributeType::Complex {
            return Some(self);
        }
        let v = attr.sub_attribute("value")?;
        self.location.sub = Some(v.name.clone());
        self.kind = v.kind;
        self.case_exact = v.case_exact;
        Some(self)
    }
}

/// A value to compare with, checked against the attribute's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// Strings: `lit` lower-cased unless case-exact, `raw` as written.
    Str {
        /// The normalised string.
        lit: String,
        /// The string as the filter wrote it.
        raw: String,
    },
    /// A number, exact.
    Num(Decimal),
    /// An instant.
    Time(DateTime<Utc>),
    /// A boolean.
    Bool(bool),
    /// `eq null` / `ne null`.
    Null,
}

/// A filter bound to one resource type: every path resolved, every comparison type-checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    /// A fixed answer (a test on an attribute the type does not define).
    Const(bool),
    /// Both hold.
    And(Box<Bound>, Box<Bound>),
    /// Either holds.
    Or(Box<Bound>, Box<Bound>),
    /// The inner one does not hold.
    Not(Box<Bound>),
    /// The attribute has a non-empty value.
    Present(BoundPath),
    /// Some value compares as asked (for `ne`: no value is equal).
    Compare {
        /// The attribute.
        target: BoundPath,
        /// The operator.
        op: Op,
        /// The operand.
        test: Test,
    },
    /// Some element of the complex attribute matches the inner filter.
    Any {
        /// The complex attribute.
        target: BoundPath,
        /// The test on each element.
        filter: Box<Bound>,
    },
}

/// The scope an attribute path is resolved in.
#[derive(Clone, Copy)]
enum Scope<'a> {
    /// A resource type's schemas.
    Resource(&'a ResourceSchemas),
    /// The sub-attributes of a complex attribute (inside a value path).
    Element(&'a Attribute),
}

impl Filter {
    /// Resolves and type-checks this filter against `schemas` (RFC 7644 §3.4.2.2). An attribute
    /// the type does not define has no value; an incompatible comparison is an error.
    pub fn bind(&self, schemas: &ResourceSchemas) -> Result<Bound, FilterError> {
        bind(self, Scope::Resource(schemas))
    }

    /// Whether the filter names the top-level attribute `name` (case-insensitively) anywhere.
    pub fn mentions(&self, name: &str) -> bool {
        let head = |p: &PathText| {
            let t = p.text.rsplit(':').next().unwrap_or_default();
            t.split('.')
                .next()
                .unwrap_or_default()
                .eq_ignore_ascii_case(name)
        };
        match self {
            Filter::And(a, b) | Filter::Or(a, b) => a.mentions(name) || b.mentions(name),
            Filter::Not(a) => a.mentions(name),
            Filter::Present(p)
            | Filter::Compare { path: p, .. }
            | Filter::ValuePath { path: p, .. } => head(p),
        }
    }
}

fn bind(filter: &Filter, scope: Scope<'_>) -> Result<Bound, FilterError> {
    Ok(match filter {
        Filter::And(a, b) => Bound::And(Box::new(bind(a, scope)?), Box::new(bind(b, scope)?)),
        Filter::Or(a, b) => Bound::Or(Box::new(bind(a, scope)?), Box::new(bind(b, scope)?)),
        Filter::Not(a) => Bound::Not(Box::new(bind(a, scope)?)),
        Filter::Present(path) => match resolve(scope, path)? {
            Some((target, _)) => Bound::Present(target),
            None => Bound::Const(false),
        },
        Filter::ValuePath { path, filter } => {
            let Some((target, attr)) = resolve(scope, path)? else {
                // No value, so no element can match.
                return Ok(Bound::Const(false));
            };
            if attr.kind != AttributeType::Complex || target.location.sub.is_some() {
                return Err(FilterError::new(
                    path.column,
                    format!(
                        "'{}' is not a complex attribute, so it takes no [filter]",
                        path.text
                    ),
                ));
            }
            Bound::Any {
                target,
                filter: Box::new(bind(filter, Scope::Element(attr))?),
            }
        }
        Filter::Compare {
            path,
            op,
            value,
            column,
        } => {
            let Some((target, attr)) = resolve(scope, path)? else {
                // RFC 7644 §3.4.2.1: no value, so only `eq null` and `ne <value>` hold.
                return Ok(Bound::Const(match value {
                    Literal::Null => *op == Op::Eq,
                    _ => *op == Op::Ne,
                }));
            };
            let Some(target) = target.complex_value(attr) else {
                return Err(FilterError::new(
                    *column,
                    format!(
                        "'{}' is complex; compare one of its sub-attributes",
                        path.text
                    ),
                ));
            };
            let test = check(&target, *op, value, *column, &path.text)?;
            Bound::Compare {
                target,
                op: *op,
                test,
            }
        }
    })
}

/// Type-checks `op value` against the attribute (RFC 7644 §3.4.2.2).
fn check(
    target: &BoundPath,
    op: Op,
    value: &Literal,
    column: usize,
    path: &str,
) -> Result<Test, FilterError> {
    let ordering_or_eq = !matches!(op, Op::Co | Op::Sw | Op::Ew);
    let refuse = |why: String| Err(FilterError::new(column, why));
    match (target.kind, value) {
        (_, Literal::Null) if matches!(op, Op::Eq | Op::Ne) => Ok(Test::Null),
        (_, Literal::Null) => refuse(format!(
            "null can only be compared with eq or ne, not {}",
            op.as_str()
        )),
        (
            AttributeType::String | AttributeType::Reference | AttributeType::Binary,
            Literal::String(s),
        ) => Ok(Test::Str {
            lit: if target.case_exact {
                s.clone()
            } else {
                s.to_lowercase()
            },
            raw: s.clone(),
        }),
        (AttributeType::Boolean, Literal::Bool(b)) if matches!(op, Op::Eq | Op::Ne) => {
            Ok(Test::Bool(*b))
        }
        (AttributeType::Boolean, Literal::Bool(_)) => refuse(format!(
            "'{path}' is boolean: only eq and ne apply, not {}",
            op.as_str()
        )),
        (AttributeType::Integer | AttributeType::Decimal, Literal::Number(n)) if ordering_or_eq => {
            Ok(Test::Num(n.clone()))
        }
        (AttributeType::DateTime, Literal::String(s)) if ordering_or_eq => {
            match DateTime::parse_from_rfc3339(s) {
                Ok(t) => Ok(Test::Time(t.with_timezone(&Utc))),
                Err(_) => refuse(format!(
                    "'{path}' is a dateTime and \"{s}\" is not one (RFC 3339)"
                )),
            }
        }
        (AttributeType::Integer | AttributeType::Decimal | AttributeType::DateTime, _)
            if !ordering_or_eq =>
        {
            refuse(format!(
                "{} applies to strings, and '{path}' is not one",
                op.as_str()
            ))
        }
        (kind, lit) => refuse(format!(
            "'{path}' is of type {} and cannot be compared with {}",
            kind_name(kind),
            literal_name(lit)
        )),
    }
}

fn kind_name(kind: AttributeType) -> &'static str {
    match kind {
        AttributeType::String => "string",
        AttributeType::Boolean => "boolean",
        AttributeType::Decimal => "decimal",
        AttributeType::Integer => "integer",
        AttributeType::DateTime => "dateTime",
        AttributeType::Binary => "binary",
        AttributeType::Reference => "reference",
        AttributeType::Complex => "complex",
    }
}

fn literal_name(lit: &Literal) -> &'static str {
    match lit {
        Literal::String(_) => "a string",
        Literal::Bool(_) => "a boolean",
        Literal::Null => "null",
        Literal::Number(_) => "a number",
    }
}

/// Resolves a path in `scope`: `Ok(None)` when the type does not define it.
fn resolve<'a>(
    scope: Scope<'a>,
    path: &PathText,
) -> Result<Option<(BoundPath, &'a Attribute)>, FilterError> {
    let text = path.text.as_str();
    let s = match scope {
        Scope::Element(parent) => {
            if text.contains(':') || text.contains('.') {
                return Err(FilterError::new(
                    path.column,
                    format!(
                        "inside [ ] name a sub-attribute of '{}', not '{text}'",
                        parent.name
                    ),
                ));
            }
            return Ok(parent.sub_attribute(text).map(|a| {
                let location = Location {
                    extension: None,
                    attribute: a.name.clone(),
                    sub: None,
                };
                (BoundPath::new(location, a), a)
            }));
        }
        Scope::Resource(s) => s,
    };
    let Some(p) = s.resolve(&s.undotted(text)) else {
        return Ok(None);
    };
    let (Some(location), Some(attr), Some(leaf)) = (p.location(), p.attribute, p.leaf()) else {
        return Err(FilterError::new(
            path.column,
            format!("'{}' names a schema, not an attribute", path.text),
        ));
    };
    Ok(Some((BoundPath::new(location, leaf), attr)))
}

impl BoundPath {
    /// Resolves a `sortBy` path; `None` when the type does not define it (every resource then
    /// lacks a value).
    pub fn for_sort(schemas: &ResourceSchemas, path: &str) -> Option<BoundPath> {
        let p = PathText {
            text: path.to_owned(),
            column: 1,
        };
        let (target, attr) = resolve(Scope::Resource(schemas), &p).ok()??;
        target.complex_value(attr)
    }
}
