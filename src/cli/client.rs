//! The HTTP client the operator commands (`scimd health`, `scimd replay` and `scimd projection
//! retry` while `serve` runs) reach the server with. With TLS_CERT set the server answers HTTPS
//! only, on an address the commands reach through loopback, which its certificate (often
//! self-signed, or issued for the public name) does not name. So the client trusts exactly the
//! certificate in TLS_CERT: the server must present that leaf and prove it holds its key; neither
//! the system's roots nor the name matter. Without TLS_CERT it speaks plain HTTP.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The client for a server that serves `tls_cert` (None: plain HTTP), giving up after `timeout`.
/// Redirects are not followed: the commands talk to one server only.
pub fn server_client(
    tls_cert: Option<&Path>,
    timeout: Option<Duration>,
) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    if let Some(path) = tls_cert {
        builder = builder.tls_backend_preconfigured(pinned_tls(path)?);
    }
    builder.build().context("cannot build the HTTP client")
}

/// The scheme the server at `tls_cert` answers in.
pub fn scheme(tls_cert: Option<&Path>) -> &'static str {
    if tls_cert.is_some() { "https" } else { "http" }
}

/// A rustls client configuration that accepts only the leaf certificate of the PEM file `path`.
fn pinned_tls(path: &Path) -> anyhow::Result<rustls::ClientConfig> {
    let pem =
        std::fs::read(path).with_context(|| format!("cannot read TLS_CERT {}", path.display()))?;
    let leaf = CertificateDer::pem_slice_iter(&pem)
        .next()
        .with_context(|| format!("TLS_CERT {} holds no certificate", path.display()))?
        .with_context(|| format!("TLS_CERT {} is not a PEM certificate", path.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("the TLS provider supports no protocol version")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedLeaf { leaf, provider }))
        .with_no_client_auth();
    Ok(config)
}

/// Accepts a server whose leaf certificate is byte for byte `leaf`; the handshake signatures are
/// checked as usual, so the server must also hold the certificate's key.
#[derive(Debug)]
struct PinnedLeaf {
    leaf: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedLeaf {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.leaf.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server presented a certificate other than TLS_CERT's".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
