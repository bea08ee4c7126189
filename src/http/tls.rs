//! TLS for deployments without a proxy: TLS_CERT and TLS_KEY (PEM) served with rustls (poem's
//! listener), read again on SIGHUP and when either file changes (checked every second), so a
//! renewed certificate (certbot, cert-manager) is picked up without a restart. A renewal that does
//! not load (a half-written file, a key that does not match) is logged and the certificate in use
//! stays; at start-up it stops scimd instead.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures::Stream;
use poem::listener::{RustlsCertificate, RustlsConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::mpsc;

/// How often the files are checked for a change.
const POLL: Duration = Duration::from_secs(1);

/// The certificate chain and key files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// What the files looked like when last read: modification time and length of each.
type Stamp = [(Option<SystemTime>, u64); 2];

fn stamp(files: &TlsFiles) -> Stamp {
    let of = |p: &Path| std::fs::metadata(p).map_or((None, 0), |m| (m.modified().ok(), m.len()));
    [of(&files.cert), of(&files.key)]
}

/// Reads and checks both files: the chain and key parse, and the key fits the certificate.
fn load(files: &TlsFiles) -> anyhow::Result<RustlsConfig> {
    use anyhow::Context;
    let cert = std::fs::read(&files.cert)
        .with_context(|| format!("cannot read TLS_CERT {}", files.cert.display()))?;
    let key = std::fs::read(&files.key)
        .with_context(|| format!("cannot read TLS_KEY {}", files.key.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| {
            format!(
                "TLS_CERT {} is not a PEM certificate chain",
                files.cert.display()
            )
        })?;
    anyhow::ensure!(
        !chain.is_empty(),
        "TLS_CERT {} holds no certificate",
        files.cert.display()
    );
    let private = PrivateKeyDer::from_pem_slice(&key)
        .with_context(|| format!("TLS_KEY {} is not a PEM private key", files.key.display()))?;
    rustls::ServerConfig::builder_with_provider(
        rustls::crypto::aws_lc_rs::default_provider().into(),
    )
    .with_safe_default_protocol_versions()
    .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private))
    .with_context(|| {
        format!(
            "TLS_CERT {} and TLS_KEY {} do not make a usable certificate",
            files.cert.display(),
            files.key.display()
        )
    })?;
    Ok(RustlsConfig::new().fallback(RustlsCertificate::new().cert(cert).key(key)))
}

/// The TLS configurations to serve with: the files as they are now (an error stops start-up),
/// then the files again after each SIGHUP or change.
pub fn configs(
    files: TlsFiles,
) -> anyhow::Result<impl Stream<Item = RustlsConfig> + Send + 'static> {
    let first = load(&files)?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut seen = stamp(&files);
        loop {
            let reason = tokio::select! {
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => "SIGHUP",
                () = tokio::time::sleep(POLL) => {
                    let now = stamp(&files);
                    if now == seen { continue; }
                    "the files changed"
                }
            };
            seen = stamp(&files);
            match load(&files) {
                Ok(config) => {
                    tracing::info!(reason, cert = %files.cert.display(), "TLS certificate reloaded");
                    if tx.send(config).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(
                        reason,
                        error = format!("{e:#}"),
                        "TLS certificate not reloaded; the one in use stays"
                    )
                }
            }
        }
    });
    let rest =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    Ok(futures::StreamExt::chain(
        futures::stream::once(async { first }),
        rest,
    ))
}
