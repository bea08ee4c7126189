//! The pool store reads run on. A read is synchronous redb work (for an unindexed filter or a
//! sort, a scan of a whole resource type), so on one of the runtime's few worker threads it would
//! stall every request that thread serves, `/health` included. Reads run on tokio's blocking
//! threads instead, at most READ_THREADS at a time (the others wait their turn without holding a
//! thread), so an expensive query slows only the reads queued behind it.

use std::sync::Arc;

use tokio::sync::Semaphore;

use scim::ScimError;

/// Runs store reads off the async runtime, a bounded number at a time.
pub(super) struct ReadPool {
    permits: Arc<Semaphore>,
}

impl ReadPool {
    /// A pool running at most `threads` reads at once (at least one).
    pub(super) fn new(threads: usize) -> ReadPool {
        ReadPool {
            permits: Arc::new(Semaphore::new(threads.max(1))),
        }
    }

    /// Runs `read` on a blocking thread once a permit is free, and answers its result.
    pub(super) async fn run<T, F>(&self, read: F) -> Result<T, ScimError>
    where
        F: FnOnce() -> Result<T, ScimError> + Send + 'static,
        T: Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ScimError::unavailable("the server is shutting down"))?;
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            read()
        })
        .await;
        joined.unwrap_or_else(|e| {
            tracing::error!(error = %e, "a store read panicked; answering 500");
            Err(ScimError::new(500, "internal error"))
        })
    }
}
