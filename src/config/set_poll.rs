//! The settings of SET poll delivery (RFC 8936): how long a long poll waits, and when a SET
//! delivered but not acknowledged is delivered again.

use std::time::Duration;

/// SET poll delivery's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct SetPollConfig {
    /// Seconds a poll without `returnImmediately` waits for a SET before it answers with none
    /// (RFC 8936 §2.5's long poll); below REQUEST_TIMEOUT. Unset: 30, or half of REQUEST_TIMEOUT
    /// when that is shorter.
    #[arg(long, env = "SET_POLL_WAIT_SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub wait_seconds: Option<u64>,
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

/// The long poll's bound when SET_POLL_WAIT_SECONDS is not set (and REQUEST_TIMEOUT allows it).
const DEFAULT_WAIT: Duration = Duration::from_secs(30);

impl SetPollConfig {
    /// The long poll's bound and the redelivery period. Only a SET_POLL_WAIT_SECONDS the operator
    /// set is held against REQUEST_TIMEOUT (`request_timeout`, seconds), and only when SETs are on
    /// (`sets_on`): a deployment that lowers REQUEST_TIMEOUT gets a shorter default wait, never a
    /// start-up error about a feature it does not use.
    pub fn periods(
        &self,
        request_timeout: u64,
        sets_on: bool,
    ) -> Result<(Duration, Duration), SetPollError> {
        let wait = match self.wait_seconds {
            Some(wait) if sets_on && wait >= request_timeout => {
                return Err(SetPollError::WaitTooLong {
                    wait,
                    request: request_timeout,
                });
            }
            Some(wait) => Duration::from_secs(wait),
            None => DEFAULT_WAIT.min(Duration::from_millis(request_timeout.saturating_mul(500))),
        };
        Ok((wait, Duration::from_secs(self.redeliver_seconds)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(wait_seconds: Option<u64>) -> SetPollConfig {
        SetPollConfig {
            wait_seconds,
            redeliver_seconds: 60,
        }
    }

    #[test]
    fn an_unset_wait_fits_under_any_request_timeout() {
        assert_eq!(config(None).periods(60, true).unwrap().0, DEFAULT_WAIT);
        assert_eq!(
            config(None).periods(30, true).unwrap().0,
            Duration::from_secs(15)
        );
        assert_eq!(
            config(None).periods(1, true).unwrap().0,
            Duration::from_millis(500)
        );
    }

    #[test]
    fn a_set_wait_is_held_against_the_request_timeout_only_with_sets_on() {
        assert!(matches!(
            config(Some(30)).periods(30, true),
            Err(SetPollError::WaitTooLong {
                wait: 30,
                request: 30
            })
        ));
        assert!(config(Some(30)).periods(30, false).is_ok());
        assert_eq!(
            config(Some(10)).periods(30, true).unwrap().0,
            Duration::from_secs(10)
        );
    }
}
