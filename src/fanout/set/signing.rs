//! Signing SETs (RFC 8417 §2.3, RFC 7515 compact JWS) and the JWKS of the public key.
//!
//! The key is read and a probe SET signed at start-up, so a SET that cannot be signed stops
//! scimd from starting instead of failing a delivery later. JOSE work is `jsonwebtoken`'s
//! (aws-lc-rs, the crypto rustls already uses); only `alg: none`, which it does not make, is
//! assembled here: header and claims in base64url with an empty signature (RFC 7519 §6.1).

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

use super::claims::{SetClaims, SubjectId};

/// The media type of a SET (RFC 8417 §2.3) without its `application/` prefix: the JOSE `typ`.
pub const TYP: &str = "secevent+jwt";

/// The shortest HS256 secret accepted: the hash's size (RFC 7518 §3.2).
const MIN_SECRET_BYTES: usize = 32;

/// Why SETs cannot be signed as configured.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// More than one of SET_SIGNING_SECRET, SET_SIGNING_KEY, SET_SIGNING=none.
    #[error("set one of SET_SIGNING_SECRET, SET_SIGNING_KEY and SET_SIGNING=none, not several")]
    Conflict,
    /// SET_SIGNING holds something else than `none`.
    #[error(
        "SET_SIGNING is `{0}`: its only value is `none` (unsigned SETs); to sign, set SET_SIGNING_SECRET or SET_SIGNING_KEY instead"
    )]
    Setting(String),
    /// The HS256 secret is too short to be safe.
    #[error("SET_SIGNING_SECRET is {0} bytes: HS256 needs at least {MIN_SECRET_BYTES}")]
    ShortSecret(usize),
    /// The key file cannot be read.
    #[error("SET_SIGNING_KEY {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
    /// The key file holds no RSA or P-256 EC private key.
    #[error(
        "SET_SIGNING_KEY {0}: not a PEM RSA private key (PKCS#1 or PKCS#8) nor an EC P-256 private key (PKCS#8)"
    )]
    Key(PathBuf),
    /// The key was read but signing with it failed.
    #[error("signing a SET failed: {0}")]
    Jose(#[from] jsonwebtoken::errors::Error),
    /// The claims do not serialise (they are plain JSON, so only a bug could cause it).
    #[error("a SET's claims do not serialise: {0}")]
    Encode(#[from] serde_json::Error),
}

/// How SETs are signed: the key, and the JOSE header every SET carries.
pub struct Signer {
    /// `None` for unsigned SETs.
    key: Option<EncodingKey>,
    header: Header,
    /// The public key as a JWK (asymmetric keys only).
    public: Option<Jwk>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Signer").field("alg", &self.alg()).finish()
    }
}

impl Signer {
    /// The signer SET_SIGNING_SECRET, SET_SIGNING_KEY or SET_SIGNING=none ask for; `None` when
    /// none is set (SETs are off). The key is checked by signing a probe SET.
    pub fn from_settings(
        secret: Option<&str>,
        key_file: Option<&Path>,
        signing: Option<&str>,
    ) -> Result<Option<Signer>, SigningError> {
        let unsigned = match signing.map(str::trim).filter(|s| !s.is_empty()) {
            None => false,
            Some(s) if s.eq_ignore_ascii_case("none") => true,
            Some(other) => return Err(SigningError::Setting(other.to_owned())),
        };
        let secret = secret.filter(|s| !s.is_empty());
        let signer = match (secret, key_file, unsigned) {
            (None, None, false) => return Ok(None),
            (Some(secret), None, false) => Signer::hs256(secret.as_bytes())?,
            (None, Some(path), false) => Signer::from_pem_file(path)?,
            (None, None, true) => Signer::unsigned(),
            _ => return Err(SigningError::Conflict),
        };
        signer.sign(&probe())?;
        Ok(Some(signer))
    }

    /// HS256 with `secret`.
    pub fn hs256(secret: &[u8]) -> Result<Signer, SigningError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(SigningError::ShortSecret(secret.len()));
        }
        Ok(Signer {
            key: Some(EncodingKey::from_secret(secret)?),
            header: header(Algorithm::HS256),
            public: None,
        })
    }

    /// Unsigned SETs (`alg: none`).
    pub fn unsigned() -> Signer {
        Signer {
            key: None,
            header: header(Algorithm::HS256),
            public: None,
        }
    }

    /// RS256 or ES256, from the type of the PEM private key in `path`.
    pub fn from_pem_file(path: &Path) -> Result<Signer, SigningError> {
        let pem = std::fs::read(path).map_err(|source| SigningError::Read {
            path: path.to_owned(),
            source,
        })?;
        Signer::from_pem(&pem).ok_or_else(|| SigningError::Key(path.to_owned()))
    }

    /// RS256 or ES256 from a PEM private key; `None` if it is neither.
    pub fn from_pem(pem: &[u8]) -> Option<Signer> {
        let (key, alg) = match EncodingKey::from_ec_pem(pem) {
            Ok(key) => (key, Algorithm::ES256),
            Err(_) => (EncodingKey::from_rsa_pem(pem).ok()?, Algorithm::RS256),
        };
        let mut jwk = Jwk::from_encoding_key(&key, alg).ok()?;
        // RFC 7638 thumbprint: a `kid` that changes exactly when the key does.
        let kid = jwk.thumbprint(ThumbprintHash::SHA256).ok()?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        let mut header = header(alg);
        header.kid = Some(kid);
        Some(Signer {
            key: Some(key),
            header,
            public: Some(jwk),
        })
    }

    /// The JOSE `alg`: `HS256`, `RS256`, `ES256` or `none`.
    pub fn alg(&self) -> &'static str {
        match (&self.key, self.header.alg) {
            (None, _) => "none",
            (Some(_), Algorithm::RS256) => "RS256",
            (Some(_), Algorithm::ES256) => "ES256",
            (Some(_), _) => "HS256",
        }
    }

    /// The SET as a compact JWS, with `iat` = now. The key was proven at start-up; an error here
    /// means a bug, and the caller retries rather than send something unsigned.
    pub fn sign(&self, claims: &SetClaims) -> Result<String, SigningError> {
        let body = match serde_json::to_value(claims)? {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        self.sign_claims(body)
    }

    /// Claims made elsewhere as a compact JWS, with `iat` = now: a `misc:asyncresp` SET
    /// (`asyncresp.rs`), whose subject is not always a resource.
    pub fn sign_claims(&self, mut body: Map<String, Value>) -> Result<String, SigningError> {
        body.insert("iat".into(), json!(chrono::Utc::now().timestamp()));
        match &self.key {
            Some(key) => Ok(jsonwebtoken::encode(&self.header, &body, key)?),
            None => {
                let header = serde_json::to_vec(&json!({"typ": TYP, "alg": "none"}))?;
                let body = serde_json::to_vec(&body)?;
                Ok(format!(
                    "{}.{}.",
                    URL_SAFE_NO_PAD.encode(header),
                    URL_SAFE_NO_PAD.encode(body)
                ))
            }
        }
    }

    /// The JWKS (RFC 7517 §5) of the public key: `{"keys": []}` for HS256 and unsigned SETs,
    /// which have none to publish.
    pub fn jwks(&self) -> Value {
        json!({"keys": self.public.iter().collect::<Vec<_>>()})
    }
}

fn header(alg: Algorithm) -> Header {
    let mut header = Header::new(alg);
    header.typ = Some(TYP.to_owned());
    header
}

/// A SET that names nothing real, signed once at start-up to prove the key.
fn probe() -> SetClaims {
    SetClaims {
        iss: "https://scimd.invalid".into(),
        aud: None,
        jti: "probe:0:0".into(),
        txn: "probe".into(),
        toe: 0,
        sub_id: SubjectId {
            format: "scim",
            uri: "/Users/probe".into(),
            id: "probe".into(),
            external_id: None,
        },
        events: Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use base64::engine::general_purpose::STANDARD;
    use jsonwebtoken::{DecodingKey, Validation};

    fn pem(der: &[u8]) -> String {
        let body = STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64 is ascii"))
            .collect();
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        )
    }

    fn ec_pem() -> String {
        let key = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        )
        .expect("ec key");
        pem(key.to_pkcs8v1().expect("pkcs8").as_ref())
    }

    fn rsa_pem() -> String {
        let key =
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa key");
        let der: aws_lc_rs::encoding::Pkcs8V1Der<'_> = key.as_der().expect("der");
        pem(der.as_ref())
    }

    /// Verifies `token` with `key` as a receiver would and answers its header and claims.
    fn verify(token: &str, key: &DecodingKey, alg: Algorithm) -> (Header, Value) {
        let mut validation = Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Value>(token, key, &validation).expect("verifies");
        (data.header, data.claims)
    }

    fn assert_set_header_and_claims(header: &Header, claims: &Value) {
        assert_eq!(header.typ.as_deref(), Some(TYP));
        assert!(claims["iat"].is_i64(), "iat is added at signing: {claims}");
        assert_eq!(claims["jti"], "probe:0:0");
        assert!(claims.get("sub").is_none() && claims.get("exp").is_none());
    }

    #[test]
    fn hs256_round_trips_and_publishes_no_key() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let signer = Signer::hs256(secret).expect("signer");
        assert_eq!(signer.alg(), "HS256");
        let token = signer.sign(&probe()).expect("signs");
        let (header, claims) = verify(
            &token,
            &DecodingKey::from_secret(secret).expect("key"),
            Algorithm::HS256,
        );
        assert_set_header_and_claims(&header, &claims);
        assert_eq!(header.kid, None);
        assert_eq!(signer.jwks(), json!({"keys": []}));
    }

    #[test]
    fn es256_and_rs256_round_trip_through_their_jwks() {
        for (pem, alg) in [(ec_pem(), Algorithm::ES256), (rsa_pem(), Algorithm::RS256)] {
            let signer = Signer::from_pem(pem.as_bytes()).expect("signer");
            let token = signer.sign(&probe()).expect("signs");
            let jwks: jsonwebtoken::jwk::JwkSet =
                serde_json::from_value(signer.jwks()).expect("a JWK set");
            let jwk = jwks.keys.first().expect("one key");
            assert!(
                !signer.jwks().to_string().contains("\"d\""),
                "no private part"
            );
            let (header, claims) = verify(&token, &DecodingKey::from_jwk(jwk).expect("key"), alg);
            assert_set_header_and_claims(&header, &claims);
            assert_eq!(header.alg, alg);
            assert_eq!(header.kid, jwk.common.key_id);
        }
    }

    #[test]
    fn unsigned_sets_say_alg_none_and_carry_no_signature() {
        let token = Signer::unsigned().sign(&probe()).expect("makes");
        let (head, rest) = token.split_once('.').expect("three parts");
        assert!(rest.ends_with('.'));
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(head).expect("b64")).expect("json");
        assert_eq!(header, json!({"typ": TYP, "alg": "none"}));
    }

    #[test]
    fn settings_that_cannot_sign_are_refused() {
        assert!(matches!(
            Signer::from_settings(Some("short"), None, None),
            Err(SigningError::ShortSecret(5))
        ));
        assert!(matches!(
            Signer::from_settings(Some("0123456789abcdef0123456789abcdef"), None, Some("none")),
            Err(SigningError::Conflict)
        ));
        assert!(matches!(
            Signer::from_settings(None, None, Some("hs256")),
            Err(SigningError::Setting(_))
        ));
        let dir = tempfile::tempdir().expect("tempdir");
        let garbage = dir.path().join("key.pem");
        std::fs::write(&garbage, "not a key").expect("write");
        assert!(matches!(
            Signer::from_settings(None, Some(&garbage), None),
            Err(SigningError::Key(_))
        ));
        assert!(matches!(
            Signer::from_settings(None, Some(&dir.path().join("missing.pem")), None),
            Err(SigningError::Read { .. })
        ));
        assert!(
            Signer::from_settings(None, None, None)
                .expect("off")
                .is_none()
        );
    }
}
