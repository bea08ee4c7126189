//! A create/replace body split into what the server stores, and the representation the API returns.
//!
//! What a body may contain comes from the schema registry ([`super::schema`]); this module splits a
//! validated body into what the server stores, hashes (`password`) and resolves (`members`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::etag;
use super::schema::Registry;
use super::schema::validate::{self, wrong_type};
use super::{ResourceType, ScimError};

/// A member reference as a client sent it in a Group's `members`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInput {
    /// The member's `id`.
    pub value: String,
    /// The member's type, when the client stated it.
    pub member_type: Option<ResourceType>,
}

/// A validated create/replace body, split into the parts the server treats differently.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceInput {
    /// Every attribute to store, without `id`, `meta`, `members`, `password` and `groups`.
    pub attributes: Map<String, Value>,
    /// Group membership, for Groups (`None` for Users). Duplicates removed, order kept.
    pub members: Option<Vec<MemberInput>>,
    /// A clear-text password to hash before it is stored (Users only).
    pub password: Option<String>,
}

/// A group a User belongs to, as `User.groups` shows it (RFC 7643 §4.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// The group's id.
    pub value: String,
    /// The group's displayName.
    pub display: Option<String>,
    /// A direct membership, or one through nested groups.
    pub direct: bool,
}

/// `User.groups` (readOnly, computed from membership): `value`, `$ref`, `display` and `type`
/// (`direct` or `indirect`).
pub fn groups_value(groups: &[GroupView], base: &str) -> Value {
    Value::Array(
        groups
            .iter()
            .map(|g| {
                let mut v = json!({
                    "value": g.value,
                    "$ref": location(base, ResourceType::Group, &g.value),
                    "type": if g.direct { "direct" } else { "indirect" },
                });
                if let Some(d) = &g.display {
                    v["display"] = json!(d);
                }
                v
            })
            .collect(),
    )
}

/// Server-maintained metadata of a stored resource (RFC 7643 §3.1), minus `location`,
/// which depends on how the resource is addressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// When the resource was created.
    pub created: DateTime<Utc>,
    /// When the resource last changed.
    pub last_modified: DateTime<Utc>,
    /// 1 on create, +1 on every write.
    pub version: u64,
}

/// A Group member as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// The member's id.
    pub value: String,
    /// Whether the member is a User or a Group.
    pub member_type: ResourceType,
    /// The member's displayName (or a User's userName).
    pub display: Option<String>,
}

/// Validates and normalises a create or replace body against the schemas (RFC 7644 §3.3, §3.5.1;
/// see [`validate`]) and splits off the parts the server treats differently.
pub fn parse_input(
    registry: &Registry,
    rt: ResourceType,
    body: Value,
) -> Result<ResourceInput, ScimError> {
    let has = |name: &str| {
        body.as_object()
            .is_some_and(|o| o.keys().any(|k| k.eq_ignore_ascii_case(name)))
    };
    // Checked before the schemas, so that SCHEMA_MODE=lenient cannot store either verbatim
    // (a Group `password` would be kept in clear text).
    if rt == ResourceType::User && has("members") {
        return Err(ScimError::invalid_value(
            "Users have no members attribute; add the User to a Group instead",
        ));
    }
    if rt == ResourceType::Group && has("password") {
        return Err(ScimError::invalid_value(
            "Groups have no password attribute",
        ));
    }
    let mut attributes = validate::normalise(registry, rt, body)?;
    // The schema declares `password` a string; it is hashed before it is stored.
    let password = match attributes.remove("password") {
        Some(Value::String(p)) => Some(p),
        _ => None,
    };
    let members = match rt {
        ResourceType::Group => Some(parse_members(attributes.remove("members"))?),
        ResourceType::User => None,
    };
    Ok(ResourceInput {
        attributes,
        members,
        password,
    })
}

/// The sub-attributes of a Group member (RFC 7643 §4.2).
const MEMBER_KEYS: [&str; 4] = ["value", "type", "$ref", "display"];

/// A Group's `members` as a client sent them: each an object with the member's id in `value` and
/// an optional `type`. Duplicates are dropped, order kept.
pub(crate) fn parse_members(members: Option<Value>) -> Result<Vec<MemberInput>, ScimError> {
    let list = match members {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(other) => return Err(wrong_type("members", "an array", &other)),
    };
    let mut out: Vec<MemberInput> = Vec::with_capacity(list.len());
    let mut seen = std::collections::HashSet::with_capacity(list.len());
    for item in list {
        let Value::Object(item) = item else {
            return Err(ScimError::invalid_value(
                "each element of members must be an object with a value",
            ));
        };
        // The store keeps a member's id and type; `$ref` and `display` are the server's to fill.
        // Anything else cannot be kept, so it is refused (even leniently), never dropped.
        if let Some(other) = item
            .keys()
            .find(|k| !MEMBER_KEYS.iter().any(|m| k.eq_ignore_ascii_case(m)))
        {
            return Err(ScimError::invalid_value(format!(
                "members.{other} is not a sub-attribute of members (value, type, $ref, display)"
            )));
        }
        let value = match item.get("value") {
            Some(Value::String(v)) if !v.is_empty() => v.clone(),
            _ => {
                return Err(ScimError::invalid_value(
                    "each element of members must have a value holding the member's id",
                ));
            }
        };
        let member_type = match item.get("type") {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) => Some(ResourceType::from_name(t).ok_or_else(|| {
                ScimError::invalid_value(format!(
                    "member type \"{t}\" is not one of \"User\", \"Group\""
                ))
            })?),
            Some(other) => return Err(wrong_type("members.type", "a string", other)),
        };
        if seen.insert(value.clone()) {
            out.push(MemberInput { value, member_type });
        }
    }
    Ok(out)
}

/// The name a Group shows for a member: displayName, else (for Users) userName.
pub fn display_name(attributes: &Map<String, Value>) -> Option<String> {
    attributes
        .get("displayName")
        .or_else(|| attributes.get("userName"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The URL of a resource: `base` is an absolute URL prefix such as `https://idm.example.org/scim/v2`,
/// or empty for a relative location.
pub fn location(base: &str, rt: ResourceType, id: &str) -> String {
    format!("{base}/{}/{id}", rt.endpoint())
}

/// Formats a timestamp as RFC 3339 in UTC with millisecond precision.
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The full representation of a resource as the API returns it (RFC 7643 §3): stored attributes,
/// `id`, `meta`, and for Groups the `members` with `type`, `$ref` and `display` filled in.
/// `password` is `returned: never` and is never in the output.
pub fn render(
    rt: ResourceType,
    id: &str,
    attributes: Map<String, Value>,
    meta: &Meta,
    members: Option<&[MemberView]>,
    base: &str,
) -> Value {
    let mut doc = attributes;
    doc.remove("password");
    doc.insert("id".into(), json!(id));
    doc.insert(
        "meta".into(),
        json!({
            "resourceType": rt.name(),
            "created": format_time(&meta.created),
            "lastModified": format_time(&meta.last_modified),
            "version": etag::format(meta.version),
            "location": location(base, rt, id),
        }),
    );
    if let Some(members) = members {
        let list: Vec<Value> = members
            .iter()
            .map(|m| {
                let mut v = json!({
                    "value": m.value,
                    "type": m.member_type.name(),
                    "$ref": location(base, m.member_type, &m.value),
                });
                if let Some(d) = &m.display {
                    v["display"] = json!(d);
                }
                v
            })
            .collect();
        doc.insert("members".into(), Value::Array(list));
    }
    Value::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::SchemaMode;

    fn reg() -> Registry {
        Registry::built_in(SchemaMode::Strict).unwrap()
    }

    #[test]
    fn client_sent_id_and_meta_are_dropped() {
        let input = parse_input(
            &reg(),
            ResourceType::User,
            json!({"id": "mine", "meta": {}, "userName": "bjensen"}),
        )
        .unwrap();
        assert!(!input.attributes.contains_key("id"));
        assert!(!input.attributes.contains_key("meta"));
        assert_eq!(
            input.attributes["schemas"],
            json!([ResourceType::User.core_schema()])
        );
    }

    #[test]
    fn user_name_is_required_and_must_be_a_string() {
        let missing = parse_input(&reg(), ResourceType::User, json!({})).unwrap_err();
        assert_eq!(missing.status, 400);
        let number = parse_input(&reg(), ResourceType::User, json!({"userName": 5})).unwrap_err();
        assert!(number.detail.contains("userName must be a string"));
    }

    #[test]
    fn password_is_split_from_the_attributes() {
        let input = parse_input(
            &reg(),
            ResourceType::User,
            json!({"userName": "a", "password": "s3cret"}),
        )
        .unwrap();
        assert_eq!(input.password.as_deref(), Some("s3cret"));
        assert!(!input.attributes.contains_key("password"));
    }

    #[test]
    fn a_group_password_is_refused_even_when_lenient() {
        let lenient = Registry::built_in(SchemaMode::Lenient).unwrap();
        let err = parse_input(
            &lenient,
            ResourceType::Group,
            json!({"displayName": "g", "Password": "x"}),
        )
        .unwrap_err();
        assert!(err.detail.contains("password"), "{}", err.detail);
    }

    #[test]
    fn duplicate_members_are_collapsed() {
        let input = parse_input(
            &reg(),
            ResourceType::Group,
            json!({"displayName": "g", "members": [{"value": "a"}, {"value": "a"}, {"value": "b", "type": "Group"}]}),
        )
        .unwrap();
        let members = input.members.unwrap();
        assert_eq!(members.len(), 2);
        assert_eq!(members[1].member_type, Some(ResourceType::Group));
    }

    #[test]
    fn schemas_without_the_core_schema_are_rejected() {
        let err = parse_input(
            &reg(),
            ResourceType::Group,
            json!({"schemas": ["urn:x"], "displayName": "g"}),
        )
        .unwrap_err();
        assert!(err.detail.contains("core:2.0:Group"));
    }

    #[test]
    fn user_name_uniqueness_is_case_insensitive() {
        let a = parse_input(&reg(), ResourceType::User, json!({"userName": "BJensen"})).unwrap();
        let b = parse_input(&reg(), ResourceType::User, json!({"userName": "bjensen"})).unwrap();
        assert_eq!(
            reg().unique_keys(ResourceType::User, &a.attributes),
            reg().unique_keys(ResourceType::User, &b.attributes)
        );
    }

    #[test]
    fn render_never_shows_the_password_and_fills_members() {
        let mut attrs = Map::new();
        attrs.insert("displayName".into(), json!("g"));
        attrs.insert("password".into(), json!("hash"));
        let now = Utc::now();
        let meta = Meta {
            created: now,
            last_modified: now,
            version: 2,
        };
        let members = [MemberView {
            value: "u1".into(),
            member_type: ResourceType::User,
            display: Some("Babs".into()),
        }];
        let doc = render(
            ResourceType::Group,
            "g1",
            attrs,
            &meta,
            Some(&members),
            "https://x/scim",
        );
        assert!(doc.get("password").is_none());
        assert_eq!(doc["meta"]["version"], "W/\"2\"");
        assert_eq!(doc["meta"]["location"], "https://x/scim/Groups/g1");
        assert_eq!(doc["members"][0]["$ref"], "https://x/scim/Users/u1");
        assert_eq!(doc["members"][0]["display"], "Babs");
    }
}
