//! TLS_CERT / TLS_KEY: HTTPS with a self-signed certificate made here, the certificate replaced
//! while scimd runs (picked up on SIGHUP and, without a signal, when the files change), a broken
//! renewal keeping the certificate in use, and a broken one at start-up stopping scimd.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use common::{BIN, DEFAULT_KEY, free_port};

/// Accepts any certificate (the test compares the one served with the one it expects) but checks
/// the handshake signatures, so the server must hold the certificate's key.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A new self-signed certificate for localhost: (certificate PEM, key PEM, certificate DER).
fn self_signed() -> (String, String, Vec<u8>) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("generate a certificate");
    (
        c.cert.pem(),
        c.signing_key.serialize_pem(),
        c.cert.der().to_vec(),
    )
}

/// Writes the files as a renewal tool would: to a temporary name, then renamed over the old one.
fn install(dir: &Path, cert: &str, key: &str) {
    for (name, body) in [("cert.pem", cert), ("key.pem", key)] {
        let tmp = dir.join(format!("{name}.new"));
        std::fs::write(&tmp, body).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

/// Installs a new certificate the file watch cannot tell from the old one (same lengths, same
/// modification times), so only SIGHUP can make scimd read it. Its DER.
fn install_unseen(dir: &Path) -> Vec<u8> {
    let meta = |name: &str| std::fs::metadata(dir.join(name)).unwrap();
    let (cert_meta, key_meta) = (meta("cert.pem"), meta("key.pem"));
    for _ in 0..200 {
        let (cert, key, der) = self_signed();
        if cert.len() as u64 != cert_meta.len() || key.len() as u64 != key_meta.len() {
            continue;
        }
        for (name, body, old) in [
            ("cert.pem", &cert, &cert_meta),
            ("key.pem", &key, &key_meta),
        ] {
            let tmp = dir.join(format!("{name}.new"));
            std::fs::write(&tmp, body).unwrap();
            let f = std::fs::File::options().write(true).open(&tmp).unwrap();
            f.set_modified(old.modified().unwrap()).unwrap();
            drop(f);
            std::fs::rename(&tmp, dir.join(name)).unwrap();
        }
        return der;
    }
    panic!("no certificate of the same length in 200 tries");
}

/// `GET path` over TLS: (the certificate the server presented, the status line).
async fn get(port: u16, path: &str) -> std::io::Result<(Vec<u8>, String)> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {DEFAULT_KEY}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    Ok((served, text.lines().next().unwrap_or("").to_owned()))
}

/// Waits until the server presents `der` (it re-reads the files on its own schedule).
async fn wait_for_cert(port: u16, der: &[u8], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((served, status)) = get(port, "/health").await
            && served == der
        {
            assert_eq!(status, "HTTP/1.1 200 OK");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn scimd(dir: &Path, port: u16) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_PATH", dir.join("data"))
        .env("LISTEN", format!("127.0.0.1:{port}"))
        .env("API_KEY", DEFAULT_KEY)
        .env("PROJECTIONS", "none")
        .env("TLS_CERT", dir.join("cert.pem"))
        .env("TLS_KEY", dir.join("key.pem"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("scimd.log")).unwrap())
        .kill_on_drop(true);
    cmd
}

fn signal(child: &Child, sig: i32) {
    let pid = child.id().expect("running") as i32;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

#[tokio::test]
async fn https_with_a_certificate_reloaded_on_sighup_and_on_change() {
    let dir = tempfile::tempdir().unwrap();
    let (cert1, key1, der1) = self_signed();
    install(dir.path(), &cert1, &key1);
    let port = free_port();
    let mut child = scimd(dir.path(), port).spawn().unwrap();
    wait_for_cert(port, &der1, "start-up").await;
    let (_, status) = get(port, "/metrics").await.unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK", "the API answers over TLS");

    // SIGHUP: a renewal the file watch cannot notice is served after the signal.
    let der2 = install_unseen(dir.path());
    signal(&child, libc::SIGHUP);
    wait_for_cert(port, &der2, "SIGHUP").await;
    let log = dir.path().join("scimd.log");
    let reloads = std::fs::read_to_string(&log).unwrap();
    assert!(
        reloads.contains("TLS certificate reloaded") && reloads.contains("SIGHUP"),
        "{reloads}"
    );

    // No signal: a change of the files is enough.
    let (cert3, key3, der3) = self_signed();
    install(dir.path(), &cert3, &key3);
    wait_for_cert(port, &der3, "file change").await;

    // A broken renewal (a key of another certificate) is refused; the certificate in use stays.
    let (_, other_key, _) = self_signed();
    install(dir.path(), &cert1, &other_key);
    signal(&child, libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("TLS certificate not reloaded")
    {
        assert!(
            Instant::now() < deadline,
            "the broken renewal was not reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (served, status) = get(port, "/health").await.unwrap();
    assert_eq!(served, der3);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP does not stop scimd"
    );

    signal(&child, libc::SIGTERM);
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn a_bad_certificate_or_a_lone_setting_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("key.pem"), "not a key").unwrap();
    let out = scimd(dir.path(), free_port())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TLS_CERT"), "{err}");

    let out = scimd(dir.path(), free_port())
        .env_remove("TLS_KEY")
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("TLS_CERT and TLS_KEY go together"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `scimd args` as an operator would beside the TLS server of `dir` on `port`, with
/// TLS_CERT naming `cert`: (success, output).
async fn operator(dir: &Path, port: u16, cert: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_PATH", dir.join("data"))
        .env("LISTEN", format!("127.0.0.1:{port}"))
        .env("API_KEY", DEFAULT_KEY)
        .env("PROJECTIONS", "file")
        .env("TLS_CERT", cert)
        .env("TLS_KEY", dir.join("key.pem"))
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn the_operator_commands_reach_a_tls_server_and_trust_only_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    // Issued for a name the commands do not connect to (they reach loopback by address): the
    // certificate itself is what they trust, not a name.
    let c = rcgen::generate_simple_self_signed(vec!["scim.example.test".into()]).unwrap();
    install(dir.path(), &c.cert.pem(), &c.signing_key.serialize_pem());
    let der = c.cert.der().to_vec();
    let port = free_port();
    let mut child = scimd(dir.path(), port)
        .env("PROJECTIONS", "file")
        .spawn()
        .unwrap();
    wait_for_cert(port, &der, "start-up").await;
    let cert = dir.path().join("cert.pem");

    // The container's HEALTHCHECK: `scimd health` with the serve settings.
    let (ok, out) = operator(dir.path(), port, &cert, &["health"]).await;
    assert!(ok, "scimd health over TLS: {out}");
    assert!(out.contains("https://127.0.0.1:"), "{out}");

    // The commands that act through the running server.
    let (ok, out) = operator(dir.path(), port, &cert, &["projection", "retry", "file"]).await;
    assert!(ok, "projection retry over TLS: {out}");
    let (ok, out) = operator(dir.path(), port, &cert, &["replay", "--projection", "file"]).await;
    assert!(ok, "replay over TLS: {out}");

    // Another certificate in TLS_CERT: the server is not trusted, and nothing is asked of it.
    let other =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let other_path = dir.path().join("other.pem");
    std::fs::write(&other_path, other.cert.pem()).unwrap();
    let (ok, out) = operator(dir.path(), port, &other_path, &["health"]).await;
    assert!(
        !ok,
        "a server presenting another certificate was trusted: {out}"
    );
    let (ok, out) = operator(
        dir.path(),
        port,
        &other_path,
        &["projection", "retry", "file"],
    )
    .await;
    assert!(
        !ok,
        "a server presenting another certificate was trusted: {out}"
    );

    signal(&child, libc::SIGTERM);
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}
