//! Search requests (RFC 7644 §3.4.3): the parameters of a list request (RFC 7644 §3.4.2), and
//! parsing the SearchRequest body a client POSTs to `/.search`, `/Users/.search` or
//! `/Groups/.search`. Pure code: answering the query is the service's job.

use serde_json::{Map, Value};

use super::ScimError;

/// What a list request asks for besides the view (RFC 7644 §3.4.2): the query parameters of
/// `GET /Users`, or the members of a SearchRequest. As the client sent them: the service checks
/// them when it answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// The filter (RFC 7644 §3.4.2.2).
    pub filter: Option<String>,
    /// The attribute path to sort by (RFC 7644 §3.4.2.3).
    pub sort_by: Option<String>,
    /// `ascending` (default) or `descending`.
    pub sort_order: Option<String>,
    /// 1-based index of the first result.
    pub start_index: Option<i64>,
    /// Most results to return.
    pub count: Option<i64>,
    /// RFC 9865: `""` for the first page by cursor, else the `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// RFC 7644 §3.4.3: the body of a search request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchRequest {
    /// `filter`, `sortBy`, `sortOrder`, `startIndex`, `count` and `cursor` (RFC 9865).
    pub query: ListQuery,
    /// `attributes` (RFC 7644 §3.4.2.5), comma-separated as in the query parameter.
    pub attributes: Option<String>,
    /// `excludedAttributes` (RFC 7644 §3.4.2.5), comma-separated as in the query parameter.
    pub excluded_attributes: Option<String>,
}

impl SearchRequest {
    /// Reads the members this server uses, their names case-insensitive; a `null` member counts as
    /// absent, other members are ignored. `attributes` and `excludedAttributes` are arrays of
    /// attribute paths or comma-separated strings. A body that is not an object, or a member of
    /// the wrong type, is 400 `invalidSyntax`.
    pub fn parse(body: &Value) -> Result<SearchRequest, ScimError> {
        let Value::Object(map) = body else {
            return Err(ScimError::invalid_syntax(
                "a SearchRequest must be a JSON object",
            ));
        };
        Ok(SearchRequest {
            query: ListQuery {
                filter: text(map, "filter")?,
                sort_by: text(map, "sortBy")?,
                sort_order: text(map, "sortOrder")?,
                start_index: number(map, "startIndex")?,
                count: number(map, "count")?,
                cursor: text(map, "cursor")?,
            },
            attributes: paths(map, "attributes")?,
            excluded_attributes: paths(map, "excludedAttributes")?,
        })
    }
}

/// The first member named `name` (case-insensitively) that is not `null`.
fn member<'m>(map: &'m Map<String, Value>, name: &str) -> Option<&'m Value> {
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

/// A string member.
fn text(map: &Map<String, Value>, name: &str) -> Result<Option<String>, ScimError> {
    match member(map, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ScimError::invalid_syntax(format!(
            "{name} must be a string"
        ))),
    }
}

/// An integer member.
fn number(map: &Map<String, Value>, name: &str) -> Result<Option<i64>, ScimError> {
    match member(map, name) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| ScimError::invalid_syntax(format!("{name} must be an integer"))),
    }
}

/// A list of attribute paths: an array of strings, or one comma-separated string. Either way the
/// answer is comma-separated, as the query parameter is.
fn paths(map: &Map<String, Value>, name: &str) -> Result<Option<String>, ScimError> {
    match member(map, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ScimError::invalid_syntax(format!("{name} must hold strings")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| Some(v.join(","))),
        Some(_) => Err(ScimError::invalid_syntax(format!(
            "{name} must be an array of attribute paths"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ScimType;

    fn syntax_error(body: Value) -> String {
        let e = SearchRequest::parse(&body).expect_err("must be rejected");
        assert_eq!(
            (e.status, e.scim_type),
            (400, Some(ScimType::InvalidSyntax))
        );
        e.detail
    }

    #[test]
    fn every_member_is_read_with_its_name_in_any_case() {
        let parsed = SearchRequest::parse(&json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "FILTER": "userName sw \"a\"",
            "sortBy": "userName",
            "sortorder": "descending",
            "startIndex": 3,
            "count": 10,
            "cursor": "",
            "attributes": ["userName", "emails.value"],
            "excludedAttributes": "groups,meta",
        }))
        .unwrap();
        assert_eq!(
            parsed,
            SearchRequest {
                query: ListQuery {
                    filter: Some("userName sw \"a\"".into()),
                    sort_by: Some("userName".into()),
                    sort_order: Some("descending".into()),
                    start_index: Some(3),
                    count: Some(10),
                    cursor: Some(String::new()),
                },
                attributes: Some("userName,emails.value".into()),
                excluded_attributes: Some("groups,meta".into()),
            }
        );
    }

    #[test]
    fn null_and_missing_members_are_absent() {
        let parsed = SearchRequest::parse(&json!({"filter": null, "count": null})).unwrap();
        assert_eq!(parsed, SearchRequest::default());
    }

    #[test]
    fn a_member_of_the_wrong_type_is_invalid_syntax() {
        assert!(syntax_error(json!([])).contains("JSON object"));
        assert!(syntax_error(json!({"filter": 1})).contains("filter must be a string"));
        assert!(syntax_error(json!({"count": "10"})).contains("count must be an integer"));
        assert!(syntax_error(json!({"startIndex": 1.5})).contains("startIndex"));
        assert!(syntax_error(json!({"attributes": [1]})).contains("must hold strings"));
        assert!(
            syntax_error(json!({"excludedAttributes": {"a": 1}}))
                .contains("must be an array of attribute paths")
        );
    }
}
