//! `USER_MAPPING` / `GROUP_MAPPING`: attributes the server sets from other attributes on every write,
//! e.g. `{"userName": "urn:mace:surf.nl:sram:scim:extension:User:eduPersonUniqueId"}` makes SRAM's
//! unique id the login name. Both paths use the SCIM attribute-path syntax (RFC 7644 §3.10) and are
//! checked against the schemas at start-up.

use serde_json::{Map, Value};

use super::{AttributePath, Mutability, ResourceSchemas, SchemaError};

/// Where a mapped value lives in a stored resource: `[URN,] attribute [, sub-attribute]`, each in the
/// schema's spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Location {
    ext: Option<String>,
    attribute: String,
    sub: Option<String>,
}

impl Location {
    fn get<'a>(&self, attrs: &'a Map<String, Value>) -> Option<&'a Value> {
        let container = match &self.ext {
            Some(urn) => attrs.get(urn)?.as_object()?,
            None => attrs,
        };
        let v = container.get(&self.attribute)?;
        match &self.sub {
            Some(sub) => v.as_object()?.get(sub),
            None => Some(v),
        }
    }

    fn set(&self, attrs: &mut Map<String, Value>, value: Value) {
        let mut container = attrs;
        if let Some(urn) = &self.ext {
            let slot = container
                .entry(urn.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            let Value::Object(obj) = slot else { return };
            container = obj;
        }
        match &self.sub {
            None => {
                container.insert(self.attribute.clone(), value);
            }
            Some(sub) => {
                let slot = container
                    .entry(self.attribute.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(obj) = slot {
                    obj.insert(sub.clone(), value);
                }
            }
        }
    }
}

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
            let t = s
                .resolve(&target)
                .and_then(|p| leaf(&p).map(|l| (p, l)))
                .ok_or_else(|| {
                    invalid(format!("{target} is not an attribute of {}", s.rt.name()))
                })?;
            let src = s
                .resolve(&source)
                .and_then(|p| leaf(&p).map(|l| (p, l)))
                .ok_or_else(|| {
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
            let in_multi = |p: &AttributePath<'_>| {
                p.sub.is_some() && p.attribute.is_some_and(|a| a.multi_valued)
            };
            if in_multi(&t.0) || in_multi(&src.0) {
                return Err(invalid(format!(
                    "{target} ← {source}: a sub-attribute of a multi-valued attribute is ambiguous"
                )));
            }
            rules.push(Rule {
                target: location(&t.0),
                source: location(&src.0),
            });
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

/// The attribute a path ends at (its sub-attribute, else its attribute).
fn leaf<'a>(p: &AttributePath<'a>) -> Option<&'a super::Attribute> {
    p.sub.or(p.attribute)
}

fn location(p: &AttributePath<'_>) -> Location {
    Location {
        ext: p.extension.map(|e| e.id.clone()),
        attribute: p.attribute.map(|a| a.name.clone()).unwrap_or_default(),
        sub: p.sub.map(|a| a.name.clone()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{Registry, SchemaMode};
    use super::*;
    use crate::ResourceType;

    const SRAM: &str = "urn:mace:surf.nl:sram:scim:extension:User";

    fn users() -> ResourceSchemas {
        Registry::load(None, SchemaMode::Strict)
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
