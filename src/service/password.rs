//! Password hashing: a clear-text `password` never enters an event or the read model. It is hashed
//! with argon2 here, before the write reaches the store, because the log is append-only (a secret
//! written to it once could never be taken back), and here rather than in the store so that the
//! CPU work stays off the writer thread (docs/ARCHITECTURE.md, "The flow of one write").

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;

use crate::metrics::METRICS;
use scim::ScimError;

/// One unit of a gauge for as long as it lives (so a request dropped while it waits, e.g. by a
/// client that went away, still leaves the gauge right).
struct Gauged<'a>(&'a prometheus::IntGauge);

impl<'a> Gauged<'a> {
    fn inc(gauge: &'a prometheus::IntGauge) -> Gauged<'a> {
        gauge.inc();
        Gauged(gauge)
    }
}

impl Drop for Gauged<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// At most this many hashes run at once (one per core): each takes tens of ms of CPU and memory,
/// so a burst of password writes queues here instead of starving every other request.
static HASHING: LazyLock<Semaphore> = LazyLock::new(|| {
    Semaphore::new(std::thread::available_parallelism().map_or(2, std::num::NonZero::get))
});

/// Hashes a password with Argon2id (PHC string), off the async runtime, with bounded concurrency.
pub async fn hash(password: String) -> Result<String, ScimError> {
    let waiting = Gauged::inc(&METRICS.argon2_queue);
    let permit = HASHING.acquire().await;
    drop(waiting);
    let _permit = permit
        .map_err(|_| ScimError::unavailable("password hashing is shut down; retry the request"))?;
    let _running = Gauged::inc(&METRICS.argon2_running);
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| ScimError::invalid_value(format!("password cannot be hashed: {e}")))
    })
    .await
    .map_err(|_| ScimError::unavailable("password hashing was interrupted; retry the request"))?
}

/// Whether `password` is the one `hash` (a PHC string made by [`hash`]) was made from; checked off
/// the async runtime. A hash that does not parse matches nothing.
pub async fn verify(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false)
}
