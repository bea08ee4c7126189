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
            let t = declared(s, &target, "a mapping target").map_err(&invalid)?;
            let src = declared(s, &source, "a mapping source").map_err(&invalid)?;
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

/// `path` resolved, with the attribute it ends at, if it names an attribute a write can carry:
/// a schema's, or the common `externalId` (readWrite, RFC 7643 §3.1). The other common attributes
/// (`id`, `meta`, `schemas`) are the server's: `role` says what the path was to be in the message.
fn declared<'s>(
    s: &'s ResourceSchemas,
    path: &str,
    role: &str,
) -> Result<(AttrPath<'s>, &'s Attribute), String> {
    let not_declared = || format!("{path} is not an attribute of {}", s.rt.name());
    let p = s.resolve(path).ok_or_else(not_declared)?;
    let leaf = p.leaf().ok_or_else(not_declared)?;
    if p.is_common()
        && p.attribute
            .is_some_and(|a| a.mutability == Mutability::ReadOnly)
    {
        return Err(format!(
            "{path} is assigned by the server (RFC 7643 §3.1), so it cannot be {role}"
        ));
    }
    Ok((p, leaf))
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
    fn external_id_is_a_target_and_a_source() {
        let s = users();
        let m = Mapping::parse(
            &s,
            "USER_MAPPING",
            &json!({"externalId": format!("{SRAM}:eduPersonUniqueId")}).to_string(),
        )
        .unwrap();
        let mut attrs = json!({"userName": "x", SRAM: {"eduPersonUniqueId": "u@sram"}});
        let attrs = attrs.as_object_mut().unwrap();
        m.apply(attrs);
        assert_eq!(attrs["externalId"], "u@sram");
        let back = Mapping::parse(&s, "USER_MAPPING", r#"{"displayName": "externalId"}"#).unwrap();
        back.apply(attrs);
        assert_eq!(attrs["displayName"], "u@sram");
    }

    #[test]
    fn server_assigned_attributes_are_refused_with_the_reason() {
        let err = Mapping::parse(&users(), "USER_MAPPING", r#"{"id": "userName"}"#).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("USER_MAPPING") && text.contains("assigned by the server"),
            "{text}"
        );
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
            json!({"id": "userName"}).to_string(),
            json!({"meta.created": "meta.lastModified"}).to_string(),
            json!({"userName": "id"}).to_string(),
        ] {
            let err = Mapping::parse(&users(), "USER_MAPPING", &bad).unwrap_err();
            assert!(err.to_string().contains("USER_MAPPING"), "{err}");
        }
    }
}
