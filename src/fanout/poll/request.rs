//! The poll request (RFC 8936 §2.2) read from its JSON body, and why one is not valid.

use std::collections::BTreeMap;

use serde_json::Value;

/// The most SETs one poll answers with, whatever `maxEvents` asks (RFC 8936 §2.2 lets the
/// transmitter return fewer); `moreAvailable` says when more wait.
pub const MAX_EVENTS: usize = 1000;

/// The most `jti`s one poll may acknowledge or refuse: a bound on the work one request makes.
pub const MAX_ACKS: usize = 10_000;

/// What a receiver asks of one poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollRequest {
    /// How many SETs at most (0: acknowledge only); [`MAX_EVENTS`] when not given or larger.
    pub max_events: usize,
    /// Answer at once, even with no SET (`returnImmediately`); else wait for one (long poll).
    pub return_immediately: bool,
    /// SETs received and kept (`ack`).
    pub ack: Vec<String>,
    /// SETs received and refused for good (`setErrs`): `jti` → (err, description).
    pub set_errs: BTreeMap<String, (String, String)>,
}

/// Why a poll request is not valid (RFC 8936 §2.5.1: answered 400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct InvalidPoll(pub String);

impl PollRequest {
    /// Reads a poll request. Members RFC 8936 does not define are ignored; those it defines
    /// must have the type it gives them.
    pub fn parse(body: &Value) -> Result<PollRequest, InvalidPoll> {
        let bad = |what: String| Err(InvalidPoll(what));
        let Some(body) = body.as_object() else {
            return bad("a poll request is a JSON object (RFC 8936 §2.2)".into());
        };
        let max_events = match body.get("maxEvents") {
            None => MAX_EVENTS,
            Some(v) => match v.as_u64() {
                Some(n) => usize::try_from(n).unwrap_or(MAX_EVENTS).min(MAX_EVENTS),
                None => return bad(format!("maxEvents must be a non-negative integer, not {v}")),
            },
        };
        let return_immediately = match body.get("returnImmediately") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => return bad(format!("returnImmediately must be true or false, not {v}")),
        };
        let ack = match body.get("ack") {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item.as_str() {
                        Some(jti) => out.push(jti.to_owned()),
                        None => return bad(format!("ack holds jti strings, not {item}")),
                    }
                }
                out
            }
            Some(v) => return bad(format!("ack must be an array of jti strings, not {v}")),
        };
        let set_errs = match body.get("setErrs") {
            None => BTreeMap::new(),
            Some(Value::Object(errs)) => {
                let mut out = BTreeMap::new();
                for (jti, e) in errs {
                    // A member of the wrong type is not valid, as elsewhere in the poll; only
                    // an absent `description` is taken as empty (a receiver's error is kept).
                    let text = |name: &str| match e.get(name) {
                        None => Some(None),
                        Some(Value::String(s)) => Some(Some(s.as_str())),
                        Some(_) => None,
                    };
                    match (text("err"), text("description")) {
                        (Some(Some(err)), Some(description)) if !err.is_empty() => {
                            out.insert(
                                jti.clone(),
                                (err.to_owned(), description.unwrap_or_default().to_owned()),
                            );
                        }
                        _ => {
                            return bad(format!(
                                "setErrs[{jti:?}] must be an object with an \"err\" code and a \"description\" (RFC 8936 §2.6)"
                            ));
                        }
                    }
                }
                out
            }
            Some(v) => return bad(format!("setErrs must be an object of jti → error, not {v}")),
        };
        if ack.len() + set_errs.len() > MAX_ACKS {
            return bad(format!(
                "one poll may acknowledge at most {MAX_ACKS} SETs (ack and setErrs together)"
            ));
        }
        Ok(PollRequest {
            max_events,
            return_immediately,
            ack,
            set_errs,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_empty_object_is_the_default_poll() {
        let p = PollRequest::parse(&json!({})).unwrap();
        assert_eq!(p.max_events, MAX_EVENTS);
        assert!(!p.return_immediately && p.ack.is_empty() && p.set_errs.is_empty());
    }

    #[test]
    fn every_member_is_read_and_max_events_is_capped() {
        let p = PollRequest::parse(&json!({
            "maxEvents": 5_000_000, "returnImmediately": true, "ack": ["a", "b"],
            "setErrs": {"c": {"err": "invalid_key", "description": "no such key"}},
            "someExtension": 1
        }))
        .unwrap();
        assert_eq!(p.max_events, MAX_EVENTS);
        assert!(p.return_immediately);
        assert_eq!(p.ack, ["a", "b"]);
        assert_eq!(
            p.set_errs["c"],
            ("invalid_key".into(), "no such key".into())
        );
        assert_eq!(
            PollRequest::parse(&json!({"maxEvents": 0}))
                .unwrap()
                .max_events,
            0
        );
    }

    #[test]
    fn members_of_the_wrong_type_make_an_invalid_poll() {
        for body in [
            json!([]),
            json!({"maxEvents": -1}),
            json!({"maxEvents": 1.5}),
            json!({"maxEvents": "10"}),
            json!({"returnImmediately": "yes"}),
            json!({"ack": "a"}),
            json!({"ack": [1]}),
            json!({"setErrs": []}),
            json!({"setErrs": {"a": "bad"}}),
            json!({"setErrs": {"a": {"description": "no code"}}}),
            json!({"setErrs": {"a": {"err": "invalid_key", "description": 5}}}),
            json!({"setErrs": {"a": {"err": 1, "description": "d"}}}),
        ] {
            assert!(PollRequest::parse(&body).is_err(), "{body}");
        }
    }
}
