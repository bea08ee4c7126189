//! The `misc:asyncresp` SETs (RFC 9967 §2.5.1.3) of a finished asynchronous request: one per
//! operation (a Bulk's: `txn` = Set-Txn + `:` + the operation's index, §2.5.1.2), the event's
//! payload the operation's bulk-response entry (RFC 7644 §3.7.3), without `bulkId`.
//!
//! Read at the request's `Location` (`http/api/async_outcomes.rs`) and carried by the default
//! feed (push and poll), which reads the store's second durable sequence, the `async_outcomes`
//! table (completion order), beside the log. On a feed their `jti` is `{feed}:{txn}`, which
//! [`Jti::parse`] does not read (a UUID is not a position): that tells the two kinds apart.

use serde_json::{Map, Value, json};

use super::SetConfig;
use super::claims::{audience, uri};
use super::feed::{FeedId, Jti};
use crate::store::{AsyncOperation, AsyncRequest};
use scim::ResourceType;

/// The claims (all but `iat`, which signing adds) of each SET of the finished request `set_txn`,
/// with its `txn`, in operation order; none while it is pending. `cfg` gives `iss` and `aud`
/// (without it, SETs are off, and the claims carry neither). `jti` is deterministic: the
/// operation's `txn` at the Location (`feed` `None`), `{feed}:{txn}` on a feed; it never parses as
/// a log event's `{feed}:{position}:{index}` (a UUID is not a position). `toe` is when the
/// outcome was decided. `sub_id` names the resource the operation addressed when there is one
/// (a failed POST made none).
pub fn claims_of(
    set_txn: &str,
    request: &AsyncRequest,
    feed: Option<&FeedId>,
    cfg: Option<&SetConfig>,
) -> Vec<(String, Map<String, Value>)> {
    let Some(outcome) = &request.outcome else {
        return Vec::new();
    };
    outcome
        .operations
        .iter()
        .map(|op| {
            let txn = op.txn(set_txn);
            let mut claims = Map::new();
            if let Some(cfg) = cfg {
                claims.insert("iss".into(), json!(cfg.issuer));
                if let Some(aud) = audience(&cfg.audience) {
                    claims.insert("aud".into(), aud);
                }
            }
            let jti = match feed {
                Some(feed) => format!("{}:{txn}", feed.as_str()),
                None => txn.clone(),
            };
            claims.insert("jti".into(), json!(jti));
            claims.insert("txn".into(), json!(txn));
            claims.insert("toe".into(), json!(outcome.completed.timestamp()));
            if let Some(sub_id) = subject(&request.base, op) {
                claims.insert("sub_id".into(), sub_id);
            }
            let mut events = Map::new();
            events.insert(uri::ASYNC_RESPONSE.into(), op.response.clone());
            claims.insert("events".into(), Value::Object(events));
            (txn, claims)
        })
        .collect()
}

/// The `sub_id` (format `scim`, RFC 9967 §2.1) of the resource at the operation's `location`.
fn subject(base: &str, op: &AsyncOperation) -> Option<Value> {
    let location = op.response.get("location")?.as_str()?;
    let path = location.strip_prefix(base)?;
    let id = path.rsplit('/').next()?;
    Some(json!({"format": "scim", "uri": path, "id": id}))
}

/// The operation `txn` an asyncresp SET's `jti` on `feed` names (`{feed}:{txn}`); `None` for a
/// log event's `jti` and for another feed's.
pub fn op_txn_of<'a>(feed: &FeedId, jti: &'a str) -> Option<&'a str> {
    if Jti::parse(jti).is_some() {
        return None;
    }
    jti.strip_prefix(feed.as_str())?
        .strip_prefix(':')
        .filter(|txn| !txn.is_empty())
}

/// The request's Set-Txn of an operation `txn` (a Bulk operation's is `{Set-Txn}:{index}`; a
/// Set-Txn is a UUID, without `:`).
pub fn set_txn_of(op_txn: &str) -> &str {
    op_txn.split(':').next().unwrap_or(op_txn)
}

/// The resource type an operation of `request` addressed, to label a parked SET: the request's,
/// else (a Bulk's) the one its `location` names; a Bulk operation that named none is labelled
/// User, the label being all the type is used for.
pub fn resource_type_of(request: &AsyncRequest, op: &AsyncOperation) -> ResourceType {
    if let Some(rt) = request.resource_type {
        return rt;
    }
    let path = op
        .response
        .get("location")
        .and_then(Value::as_str)
        .and_then(|l| l.strip_prefix(request.base.as_str()));
    match path {
        Some(p)
            if p.trim_start_matches('/')
                .starts_with(ResourceType::Group.endpoint()) =>
        {
            ResourceType::Group
        }
        _ => ResourceType::User,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_asyncresp_jti_names_its_operation_and_a_log_jti_does_not() {
        let feed = FeedId::default_feed();
        let txn = "5e0c6a1e-8b1f-4a0e-9c7d-2b1d0f3a4c5e";
        assert_eq!(op_txn_of(&feed, &format!("default:{txn}")), Some(txn));
        let bulk = format!("{txn}:3");
        assert_eq!(
            op_txn_of(&feed, &format!("default:{bulk}")),
            Some(bulk.as_str())
        );
        assert_eq!(set_txn_of(&bulk), txn);
        assert_eq!(set_txn_of(txn), txn);
        assert_eq!(op_txn_of(&feed, "default:7:0"), None);
        assert_eq!(op_txn_of(&feed, &format!("group:default:{txn}")), None);
        assert_eq!(op_txn_of(&feed, "default:"), None);
    }
}
