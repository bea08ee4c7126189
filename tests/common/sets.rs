//! Security event tokens in tests: an RFC 8935 push receiver of our own (a poem server on
//! 127.0.0.1 that can be told to be down or to refuse given SETs), signature verification with
//! the shared secret or the served JWKS, and the RFC 8417 / RFC 9967 rules every SET must keep.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Body, EndpointExt, Request, Response, handler};
use serde_json::{Value, json};

/// The event URIs RFC 9967 §7.4 registers.
pub const REGISTERED: &[&str] = &[
    "urn:ietf:params:scim:event:feed:add",
    "urn:ietf:params:scim:event:feed:remove",
    "urn:ietf:params:scim:event:prov:create:full",
    "urn:ietf:params:scim:event:prov:create:notice",
    "urn:ietf:params:scim:event:prov:patch:full",
    "urn:ietf:params:scim:event:prov:patch:notice",
    "urn:ietf:params:scim:event:prov:put:full",
    "urn:ietf:params:scim:event:prov:put:notice",
    "urn:ietf:params:scim:event:prov:delete",
    "urn:ietf:params:scim:event:prov:activate",
    "urn:ietf:params:scim:event:prov:deactivate",
    "urn:ietf:params:scim:event:misc:asyncresp",
];

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 202 to every SET (but those it refuses).
    Accept,
    /// 503 with `Retry-After: 1` to every SET.
    Down,
}

/// One SET as the receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The compact SET.
    pub token: String,
    /// Its `jti` (read without verifying; the test verifies later).
    pub jti: String,
    /// Content-Type, Accept and Authorization of the POST.
    pub content_type: String,
    pub accept: String,
    pub authorization: String,
}

#[derive(Default)]
struct State {
    mode: Option<Mode>,
    refuse: HashSet<String>,
    received: Vec<Received>,
    refused: Vec<String>,
}

/// A push receiver on 127.0.0.1.
#[derive(Clone)]
pub struct Receiver {
    state: Arc<Mutex<State>>,
    /// `http://127.0.0.1:PORT/events`.
    pub url: String,
}

impl Receiver {
    /// Starts a receiver that accepts everything.
    pub async fn start() -> Receiver {
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .expect("bind the receiver");
        let port = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().map(|s| s.port()))
            .expect("the receiver's port");
        let state = Arc::new(Mutex::new(State {
            mode: Some(Mode::Accept),
            ..State::default()
        }));
        let app = poem::Route::new()
            .at("/events", poem::post(receive))
            .data(state.clone());
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
        Receiver {
            state,
            url: format!("http://127.0.0.1:{port}/events"),
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = Some(mode);
    }

    /// Answer `invalid_request` to the SET with this `jti` (until [`Self::accept_all`]).
    pub fn refuse(&self, jti: &str) {
        self.state.lock().unwrap().refuse.insert(jti.to_owned());
    }

    pub fn accept_all(&self) {
        self.state.lock().unwrap().refuse.clear();
    }

    /// Every SET accepted so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// The `jti`s of the SETs refused so far.
    pub fn refused(&self) -> Vec<String> {
        self.state.lock().unwrap().refused.clone()
    }

    pub fn clear(&self) {
        self.state.lock().unwrap().received.clear();
    }

    /// Waits until `n` SETs have been accepted (panics after `within`).
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver got {} SETs of {n} within {within:?}: {:?}",
                got.len(),
                got.iter().map(|r| &r.jti).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[handler]
async fn receive(
    req: &Request,
    body: Body,
    state: poem::web::Data<&Arc<Mutex<State>>>,
) -> Response {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let token = body.into_string().await.unwrap_or_default();
    let jti = unverified_claims(&token)["jti"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut state = state.lock().unwrap();
    if state.mode == Some(Mode::Down) {
        return Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header("Retry-After", "1")
            .finish();
    }
    if state.refuse.contains(&jti) {
        state.refused.push(jti);
        // RFC 8935 §2.3.
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .content_type("application/json")
            .header("Content-Language", "en")
            .body(
                json!({"err": "invalid_request", "description": "refused by the test"}).to_string(),
            );
    }
    state.received.push(Received {
        token,
        jti,
        content_type: header("content-type"),
        accept: header("accept"),
        authorization: header("authorization"),
    });
    Response::builder().status(StatusCode::ACCEPTED).finish()
}

/// The claims of a compact JWS, not verified.
pub fn unverified_claims(token: &str) -> Value {
    use base64::Engine;
    token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// How a test verifies SETs.
pub enum Key {
    /// HS256 with this secret.
    Secret(Vec<u8>),
    /// The JWKS scimd serves; the header's `kid` picks the key.
    Jwks(JwkSet),
}

/// Verifies `token`'s signature with `key`, then checks every RFC 8417 / RFC 9967 rule a SET
/// must keep; returns its claims.
#[track_caller]
pub fn verify(token: &str, key: &Key, iss: &str, aud: Option<&str>) -> Value {
    let header = jsonwebtoken::decode_header(token).expect("a JOSE header");
    assert_eq!(
        header.typ.as_deref(),
        Some("secevent+jwt"),
        "RFC 8417 §2.3 typ"
    );
    let (decoding, alg) = match key {
        Key::Secret(secret) => (
            DecodingKey::from_secret(secret).expect("key"),
            Algorithm::HS256,
        ),
        Key::Jwks(set) => {
            let kid = header
                .kid
                .as_deref()
                .expect("an asymmetric SET names its kid");
            let jwk = set.find(kid).expect("the kid is in the served JWKS");
            (DecodingKey::from_jwk(jwk).expect("key"), header.alg)
        }
    };
    assert_eq!(header.alg, alg);
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Value>(token, &decoding, &validation)
        .expect("the signature verifies")
        .claims;
    assert_set_rules(&claims, iss, aud);
    claims
}

/// RFC 8417 §2.2 and RFC 9967 §2 for one SET's claims.
#[track_caller]
pub fn assert_set_rules(claims: &Value, iss: &str, aud: Option<&str>) {
    assert_eq!(claims["iss"], iss, "{claims}");
    assert!(claims["iat"].is_i64(), "iat: {claims}");
    assert!(claims["toe"].is_i64(), "toe: {claims}");
    assert!(
        claims["jti"].as_str().is_some_and(|j| !j.is_empty()),
        "jti: {claims}"
    );
    assert!(
        claims["txn"].as_str().is_some_and(|t| !t.is_empty()),
        "txn: {claims}"
    );
    match aud {
        Some(aud) => assert_eq!(claims["aud"], aud, "{claims}"),
        None => assert!(claims.get("aud").is_none(), "{claims}"),
    }
    assert!(
        claims.get("sub").is_none(),
        "RFC 9967 §2.1 forbids sub: {claims}"
    );
    assert!(claims.get("exp").is_none(), "no exp: {claims}");
    // One subject: a single sub_id of format scim, with a uri relative to the base URI.
    let sub = &claims["sub_id"];
    assert_eq!(sub["format"], "scim", "{claims}");
    let uri = sub["uri"].as_str().expect("sub_id.uri");
    let id = sub["id"].as_str().expect("sub_id.id");
    assert!(
        uri == format!("/Users/{id}") || uri == format!("/Groups/{id}"),
        "sub_id.uri {uri} names sub_id.id {id}"
    );
    let events = claims["events"].as_object().expect("events is an object");
    assert!(!events.is_empty(), "at least one event: {claims}");
    let mut changes = 0;
    for (name, payload) in events {
        assert!(
            REGISTERED.contains(&name.as_str()),
            "unregistered event URI {name}"
        );
        assert!(payload.is_object(), "{name}'s payload is an object");
        if name.ends_with(":full") || name.ends_with(":notice") {
            changes += 1;
            let full = name.ends_with(":full");
            assert_eq!(payload.get("data").is_some(), full, "{name}: data iff full");
            assert_eq!(
                payload.get("attributes").is_some(),
                !full,
                "{name}: attributes iff notice"
            );
            assert!(
                payload["version"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("W/\""))
            );
        }
        if name.ends_with(":prov:delete") {
            assert_eq!(payload, &json!({}), "delete has no payload");
            assert_eq!(events.len(), 1, "nothing beside a delete: {claims}");
        }
    }
    assert!(changes <= 1, "one change per SET: {claims}");
}
