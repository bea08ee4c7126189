//! `scimd health`: asks a running `scimd serve` for `GET /health` and exits 0 when it answers 200,
//! 1 otherwise. It is the container's `HEALTHCHECK` (no curl in the image) and works for any
//! supervisor that runs a command.
//!
//! `/health` always answers at the root, whatever `BASE_PATH` is (see `http::app`), so the URL is
//! `http://LISTEN/health`, or `https://` with TLS_CERT set (the server then trusted by exactly that
//! certificate, see `client`). A wildcard `LISTEN` (`0.0.0.0`, `::`) is reached on the loopback
//! address of the same family.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::client::{scheme, server_client};
use crate::http::reach::connect_addr;

/// Settings of `scimd health`.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthConfig {
    /// The address `scimd serve` listens on; a wildcard address is reached on loopback.
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Check this URL instead of `http(s)://LISTEN/health`.
    #[arg(long)]
    pub url: Option<String>,
    /// The certificate `scimd serve` serves (TLS_CERT): the check then speaks HTTPS and trusts
    /// exactly that certificate.
    #[arg(long, env = "TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Seconds to wait for the answer (connecting included).
    #[arg(long, default_value_t = 3)]
    pub timeout: u64,
}

impl HealthConfig {
    /// The URL to check: `--url`, or `/health` on LISTEN (wildcards replaced by loopback), over
    /// HTTPS when TLS_CERT is set.
    pub fn url(&self) -> String {
        if let Some(url) = &self.url {
            return url.clone();
        }
        format!(
            "{}://{}/health",
            scheme(self.tls_cert.as_deref()),
            connect_addr(self.listen)
        )
    }
}

/// Checks the server once. `Ok` (after printing the answer's body) when it answered 200 within the
/// timeout; an error naming the URL and what went wrong otherwise.
pub async fn check(config: &HealthConfig) -> anyhow::Result<()> {
    let url = config.url();
    let client = server_client(
        config.tls_cert.as_deref(),
        Some(Duration::from_secs(config.timeout.max(1))),
    )?;
    let resp = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("{url}: no answer"))?;
    let status = resp.status();
    // The body is only shown; a broken one does not change the verdict.
    let body = resp.text().await.unwrap_or_default();
    let body = body.trim();
    if status.as_u16() != 200 {
        anyhow::bail!("{url}: {status} {body}");
    }
    println!("{url}: {status} {body}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str) -> HealthConfig {
        HealthConfig {
            listen: listen.parse().expect("a socket address"),
            url: None,
            tls_cert: None,
            timeout: 3,
        }
    }

    #[test]
    fn wildcard_listen_is_reached_on_loopback() {
        assert_eq!(config("0.0.0.0:8000").url(), "http://127.0.0.1:8000/health");
        assert_eq!(config("[::]:8000").url(), "http://[::1]:8000/health");
    }

    #[test]
    fn specific_listen_is_kept() {
        assert_eq!(config("10.1.2.3:9000").url(), "http://10.1.2.3:9000/health");
        assert_eq!(
            config("127.0.0.1:8000").url(),
            "http://127.0.0.1:8000/health"
        );
    }

    #[test]
    fn tls_cert_means_https() {
        let mut c = config("0.0.0.0:8443");
        c.tls_cert = Some("/etc/scimd/cert.pem".into());
        assert_eq!(c.url(), "https://127.0.0.1:8443/health");
    }

    #[test]
    fn url_wins() {
        let mut c = config("0.0.0.0:8000");
        c.url = Some("http://example.test:1/health".into());
        assert_eq!(c.url(), "http://example.test:1/health");
    }
}
