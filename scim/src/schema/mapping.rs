//! `USER_MAPPING` / `GROUP_MAPPING`: attributes the server sets from other attributes on every write,
//! e.g. `{"userName": "urn:mace:surf.nl:sram:scim:extension:User:eduPersonUniqueId"}` makes SRAM's
//! unique id the login name. Both paths use the SCIM attribute-path syntax (RFC 7644 §3.10) and are
//! checked against the schemas at start-up.

use serde_json::{Map, Value};

use super::{AttrPath, Attribute, Location, Mutability, ResourceSchemas, SchemaError};

/// One `target ← source` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    target: Location,
    source: Location,
}

/// The mapping rules of one resource type, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapping {
    rules: Vec<Rule>,
}

impl Mapping {
    /// Parses `{"target": "source", …}`. `setting` names the variable for error messages. Both paths
    /// must resolve; the target must be writable and of the source's type and plurality.
    pub fn parse(s: &ResourceSchemas, setting: &str, json: &str) -> Result<Mapping, SchemaError> {
        let invalid = |reason: String| SchemaError::Invalid {
            path: setting.to_owned(),
            reason,
        };
        let pairs: Map<String, Value> = serde_json::from_str(json).map_err(|e| {
            invalid(format!(
                "must be a JSON object of \"target\": \"source\": {e}"
            ))
        })?;
        let mut rules = Vec::with_capacity(pairs.len());
        for (target, source) in pairs {
            let Value::String(source) = source else {
                return Err(invalid(format!(
                    "the source of {target} must be a string path"
                )));
            };
            let t = declared(s, &target).ok_or_else(|| {
                invalid(format!("{target} is not an attribute of {}", s.rt.name()))
            })?;
            let src = declared(s, &source).ok_or_else(|| {
                invalid(format!("{source} is not an attribute of {}", s.rt.name()))
            })?;
            let (t_leaf, s_leaf) = (t.1, src.1);
            if t_leaf.mutability == Mutability::ReadOnly
                || t.0
                    .attribute
                    .is_some_and(|a| a.mutability == Mutability::ReadOnly)
            {
                return Err(invalid(format!("{target} is readOnly")));
            }
            if t_leaf.kind != s_leaf.kind || t_leaf.multi_valued != s_leaf.multi_valued {
                return Err(invalid(format!(
                    "{target} and {source} differ in type or plurality"
                )));
            }
            let in_multi =
                |p: &AttrPath<'_>| p.sub.is_some() && p.attribute.is_some_and(|a| a.multi_valued);
            if in_multi(&t.0) || in_multi(&src.0) {
                return Err(invalid(format!(
                    "{target} ← {source}: a sub-attribute of a multi-valued attribute is ambiguous"
                )));
            }
            let (Some(target), Some(source)) = (t.0.location(), src.0.location()) else {
                continue; // `declared` paths name an attribute
            };
            rules.push(Rule { target, source });
        }
        Ok(Mapping { rules })
    }

    /// Sets every target whose source has a value; a target whose source is empty is left as sent.
    pub fn apply(&self, attrs: &mut Map<String, Value>) {
        for rule in &self.rules {
            if let Some(v) = rule.source.get(attrs).cloned() {
                rule.target.set(attrs, v);
            }
        }
    }
}

/// `path` resolved, with the attribute it ends at, if it names an attribute the schemas declare:
/// a mapping works on stored attributes, and of the common ones (RFC 7643 §3.1) the server keeps
/// `id`, `meta` and `schemas` itself.
fn declared<'s>(s: &'s ResourceSchemas, path: &str) -> Option<(AttrPath<'s>, &'s Attribute)> {
    let p = s.resolve(path).filter(|p| !p.is_common())?;
    Some((p, p.leaf()?))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{Registry, SchemaMode};
    use super::*;
    use crate::ResourceType;

    const SRAM: &str = "urn:mace:surf.nl:sram:scim:extension:User";

    fn users() -> ResourceSchemas {
        Registry::built_in(SchemaMode::Strict)
            .unwrap()
            .schemas(ResourceType::User)
            .clone()
    }

    #[test]
    fn a_target_is_set_from_its_source() {
        let m = Mapping::parse(
            &users(),
            "USER_MAPPING",
            &json!({"username": format!("{SRAM}:eduPersonUniqueId"), "name.formatted": "displayName"})
                .to_string(),
        )
        .unwrap();
        let mut attrs =
            json!({"userName": "x", SRAM: {"eduPersonUniqueId": "u@sram"}, "displayName": "D"});
        let attrs = attrs.as_object_mut().unwrap();
        m.apply(attrs);
        assert_eq!(attrs["userName"], "u@sram");
        assert_eq!(attrs["name"]["formatted"], "D");
    }

    #[test]
    fn invalid_mappings_are_refused() {
        for bad in [
            "not json".to_owned(),
            json!({"nope": "userName"}).to_string(),
            json!({"userName": "nope"}).to_string(),
            json!({"userName": "active"}).to_string(),
            json!({"groups": "userName"}).to_string(),
            json!({"emails.value": "userName"}).to_string(),
        ] {
            let err = Mapping::parse(&users(), "USER_MAPPING", &bad).unwrap_err();
            assert!(err.to_string().contains("USER_MAPPING"), "{err}");
        }
    }
}
