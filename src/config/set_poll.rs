//! The settings of SET poll delivery (RFC 8936): how long a long poll waits, and when a SET
//! delivered but not acknowledged is delivered again.

use std::time::Duration;

/// SET poll delivery's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct SetPollConfig {
    /// Seconds a poll without `returnImmediately` waits for a SET before it answers with none
    /// (RFC 8936 §2.5's long poll); below REQUEST_TIMEOUT.
    #[arg(long, env = "SET_POLL_WAIT_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub wait_seconds: u64,
    /// Seconds after which a polled SET the receiver has not acknowledged is delivered again
    /// (RFC 8936 §2.4); until then later polls leave it out.
    #[arg(long, env = "SET_POLL_REDELIVER_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub redeliver_seconds: u64,
}

/// Why the poll settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SetPollError {
    /// A long poll would outlast the request it answers.
    #[error(
        "SET_POLL_WAIT_SECONDS ({wait}) must be below REQUEST_TIMEOUT ({request}): a long poll answers before its request times out"
    )]
    WaitTooLong { wait: u64, request: u64 },
}

impl SetPollConfig {
    /// The long poll's bound and the redelivery period, checked against REQUEST_TIMEOUT
    /// (`request_timeout`, seconds).
    pub fn periods(&self, request_timeout: u64) -> Result<(Duration, Duration), SetPollError> {
        if self.wait_seconds >= request_timeout {
            return Err(SetPollError::WaitTooLong {
                wait: self.wait_seconds,
                request: request_timeout,
            });
        }
        Ok((
            Duration::from_secs(self.wait_seconds),
            Duration::from_secs(self.redeliver_seconds),
        ))
    }
}
