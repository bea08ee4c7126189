//! Security events (RFC 8417 SETs in RFC 9967's SCIM profile): one more log subscriber family.
//!
//! `claims` turns an event of the log into the SETs a feed carries, `feed` names feeds and the
//! `jti`s of their SETs, `signing` signs them and publishes the public key, `push` delivers the
//! default feed to an RFC 8935 receiver with its own checkpoint, `asyncresp` makes the SETs of
//! asynchronous requests' outcomes. Everything is derived from the
//! log, so a redelivery or a replay yields the same SETs with the same `jti`s (only `iat`, the
//! signing time, differs).

pub mod asyncresp;
pub mod claims;
pub mod feed;
pub mod push;
pub mod receiver;
pub mod signing;

use std::sync::Arc;

use serde_json::{Value, json};

pub use claims::sets_of;
pub use feed::{FeedId, Jti};
pub use signing::{Signer, SigningError};

use crate::config::{EventMode, SecurityEventConfig};

/// What every SET of this server says besides its event: issuer, audience, payload mode, feeds.
#[derive(Debug, Clone)]
pub struct SetConfig {
    /// `iss`: SET_ISSUER, else PUBLIC_URL.
    pub issuer: String,
    /// `aud`: SET_AUDIENCE's comma-separated values (none: no `aud`).
    pub audience: Vec<String>,
    /// EVENT_MODE: `notice` or `full`.
    pub mode: EventMode,
    /// SET_GROUP_AS_FEED: each Group is also a feed of its members.
    pub group_as_feed: bool,
    /// PUBLIC_URL + BASE_PATH (or empty): the prefix of `meta.location` and `$ref` in `full` data.
    pub base: String,
}

/// Why the security event settings cannot be used (a start-up error).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The signing settings are wrong.
    #[error(transparent)]
    Signing(#[from] SigningError),
    /// SETs are on but nothing names the issuer.
    #[error(
        "security events are on (a SET_SIGNING_* setting is set) but neither SET_ISSUER nor PUBLIC_URL is: a SET's `iss` has no default"
    )]
    NoIssuer,
    /// Push is asked for without any signing setting.
    #[error(
        "SET_PUSH_URL is set but SETs are off: set SET_SIGNING_SECRET, SET_SIGNING_KEY or SET_SIGNING=none"
    )]
    PushWithoutSigning,
    /// The push URL is not one scimd may send to.
    #[error("SET_PUSH_URL {url}: {reason}")]
    PushUrl {
        /// The setting's value.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// The security event core of a serving scimd: what SETs say and how they are signed. Built
/// once at start-up; the push subscriber, the poll endpoints, the JWKS and ServiceProviderConfig
/// share it.
#[derive(Debug)]
pub struct SecurityEvents {
    /// What every SET says.
    pub config: SetConfig,
    /// How SETs are signed.
    pub signer: Signer,
}

impl SecurityEvents {
    /// The core the settings ask for; `None` when SETs are off (no SET_SIGNING_* setting).
    /// `public_url` is PUBLIC_URL (the default issuer), `base` the prefix of `full` data's URLs.
    pub fn from_settings(
        settings: &SecurityEventConfig,
        public_url: Option<String>,
        base: String,
    ) -> Result<Option<Arc<SecurityEvents>>, SetupError> {
        let signer = Signer::from_settings(
            settings.signing_secret.as_deref(),
            settings.signing_key.as_deref(),
            settings.signing.as_deref(),
        )?;
        let Some(signer) = signer else {
            if settings.push_url.as_deref().is_some_and(|u| !u.is_empty()) {
                return Err(SetupError::PushWithoutSigning);
            }
            return Ok(None);
        };
        let issuer = settings
            .issuer
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .or(public_url)
            .ok_or(SetupError::NoIssuer)?;
        let audience = settings
            .audience
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Some(Arc::new(SecurityEvents {
            config: SetConfig {
                issuer,
                audience,
                mode: settings.event_mode,
                group_as_feed: settings.group_as_feed,
                base,
            },
            signer,
        })))
    }

    /// ServiceProviderConfig's `securityEvents` (RFC 9967 §4): how asynchronous requests are
    /// handled (`async_requests`: ASYNC_REQUESTS) and which event URIs this server emits.
    pub fn service_provider_config(&self, async_requests: bool) -> Value {
        let mut uris = claims::event_uris(&self.config);
        if async_requests {
            uris.push(claims::uri::ASYNC_RESPONSE);
        }
        json!({
            "asyncRequest": async_request(async_requests),
            "eventUris": uris,
        })
    }
}

/// `securityEvents.asyncRequest` (RFC 9967 §4): `request` (`Prefer: respond-async` is honoured)
/// when ASYNC_REQUESTS is on, else `none`.
pub fn async_request(async_requests: bool) -> &'static str {
    if async_requests { "request" } else { "none" }
}
