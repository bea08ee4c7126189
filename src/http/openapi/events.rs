//! The security event messages as OpenAPI 3.0 schemas: a feed as discovery shows it, and the
//! RFC 8936 poll request and response.

use serde_json::{Value, json};

/// One feed of `GET /Events/Feeds`.
pub fn feed() -> Value {
    json!({
        "type": "object",
        "required": ["id", "poll"],
        "properties": {
            "id": {"type": "string", "description": "`default`, or `group:` and the Group's id for a group's feed (a Group's id may be `default`)."},
            "poll": {"type": "string", "description": "The URL to POST RFC 8936 polls to."},
            "description": {"type": "string"},
            "displayName": {"type": "string", "description": "A group feed's Group's displayName."},
            "subjects": {"type": "integer", "minimum": 0,
                         "description": "A group feed's subjects: the Group's direct members."},
        },
    })
}

/// RFC 8936 §2.2: a poll request.
pub fn poll_request() -> Value {
    json!({
        "type": "object",
        "description": "RFC 8936 §2.2. `{}` is a long poll for up to 1,000 SETs.",
        "properties": {
            "maxEvents": {"type": "integer", "minimum": 0,
                          "description": "The most SETs to answer with (at most 1,000); 0 acknowledges only."},
            "returnImmediately": {"type": "boolean", "default": false,
                                  "description": "Answer at once, even with no SET; else wait up to SET_POLL_WAIT_SECONDS for one."},
            "ack": {"type": "array", "items": {"type": "string"},
                    "description": "The jti of each SET received and kept."},
            "setErrs": {
                "type": "object",
                "description": "jti → why the receiver refuses that SET for good (RFC 8936 §2.6); it counts as acknowledged.",
                "additionalProperties": {
                    "type": "object",
                    "required": ["err", "description"],
                    "properties": {
                        "err": {"type": "string", "minLength": 1,
                                "description": "An RFC 8935 §2.4 code: invalid_request, invalid_key, invalid_issuer, invalid_audience, authentication_failed, access_denied."},
                        "description": {"type": "string"},
                    },
                },
            },
        },
        "example": {"maxEvents": 100, "returnImmediately": true, "ack": ["default:41:0"]},
    })
}

/// RFC 8936 §2.3: a poll's answer.
pub fn poll_response() -> Value {
    json!({
        "type": "object",
        "required": ["sets"],
        "properties": {
            "sets": {"type": "object", "additionalProperties": {"type": "string"},
                     "description": "jti → the SET in compact JWS serialisation (RFC 8417)."},
            "moreAvailable": {"type": "boolean",
                              "description": "More SETs wait than this answer holds."},
        },
    })
}
