//! `ScimError`: the one error type the SCIM API returns (RFC 7644 §3.12).

use serde_json::{Value, json};

/// URN of the SCIM error message schema (RFC 7644 §3.12).
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The `scimType` keywords of RFC 7644 §3.12, Table 9.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimType {
    /// The filter syntax is invalid or the filter names an unsupported comparison.
    InvalidFilter,
    /// The filter yields more results than the server will answer.
    TooMany,
    /// RFC 9865 §2.2: the cursor is malformed, altered or unknown.
    InvalidCursor,
    /// RFC 9865 §2.2: the cursor has expired.
    ExpiredCursor,
    /// A value would break a uniqueness rule (`userName`, a group's `displayName`).
    Uniqueness,
    /// The request tries to change an attribute that is immutable or read-only.
    Mutability,
    /// The request body is not a valid SCIM message.
    InvalidSyntax,
    /// A PATCH `path` is malformed or names nothing the schemas know.
    InvalidPath,
    /// A PATCH `path` with a value filter matched no value.
    NoTarget,
    /// A value is missing, of the wrong type or otherwise not acceptable.
    InvalidValue,
    /// The request asks for a protocol version the server does not support.
    InvalidVers,
    /// The request carries sensitive information in its URL (a filter on a password, say).
    Sensitive,
}

impl ScimType {
    /// The keyword as it appears in the `scimType` member of an error body.
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::InvalidCursor => "invalidCursor",
            ScimType::ExpiredCursor => "expiredCursor",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidVers => "invalidVers",
            ScimType::Sensitive => "sensitive",
        }
    }
}

/// A failure a client can observe: an HTTP status, an optional `scimType` and a detail a person
/// understands. Every error the API returns, including those the HTTP framework raises, is one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {detail}")]
pub struct ScimError {
    /// HTTP status code.
    pub status: u16,
    /// RFC 7644 §3.12 error keyword, where one applies.
    pub scim_type: Option<ScimType>,
    /// Human-readable explanation; never contains secrets.
    pub detail: String,
}

impl ScimError {
    /// An error with a status and detail but no `scimType`.
    pub fn new(status: u16, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type: None,
            detail: detail.into(),
        }
    }

    /// An error with a `scimType`.
    pub fn typed(status: u16, scim_type: ScimType, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }

    /// 400 `invalidValue`: a required attribute is missing or a value has the wrong type.
    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::typed(400, ScimType::InvalidValue, detail)
    }

    /// 400 `invalidFilter`: the filter is malformed, too large, or compares incompatible types
    /// (RFC 7644 §3.4.2.2).
    pub fn invalid_filter(detail: impl Into<String>) -> Self {
        Self::typed(400, ScimType::InvalidFilter, detail)
    }

    /// 400 `invalidSyntax`: the request body could not be parsed.
    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::typed(400, ScimType::InvalidSyntax, detail)
    }

    /// 409 `uniqueness`: a unique attribute's value is already taken.
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self::typed(409, ScimType::Uniqueness, detail)
    }

    /// 404: the resource does not exist (or no longer does).
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, detail)
    }

    /// 412: `If-Match` named a version other than the current one (RFC 7644 §3.14).
    pub fn precondition_failed(current: u64) -> Self {
        Self::new(
            412,
            format!(
                "If-Match does not match the current version {}",
                crate::etag::format(current)
            ),
        )
    }

    /// 503: the store could not confirm the write; its outcome is unknown and the client should retry.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(503, detail)
    }

    /// The JSON error body of RFC 7644 §3.12 (`status` is a string there).
    pub fn to_body(&self) -> Value {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t.as_str());
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_string_status_and_scim_type() {
        let body = ScimError::uniqueness("userName taken").to_body();
        assert_eq!(body["status"], "409");
        assert_eq!(body["scimType"], "uniqueness");
        assert_eq!(body["schemas"][0], ERROR_SCHEMA);
    }

    #[test]
    fn body_without_scim_type_omits_the_member() {
        let body = ScimError::not_found("no such user").to_body();
        assert!(body.get("scimType").is_none());
    }
}
