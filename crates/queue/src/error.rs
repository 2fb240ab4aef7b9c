//! Errors of the queues and of leadership.

use erpsync_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{doing}: {source}")]
    Store {
        doing: &'static str,
        #[source]
        source: StoreError,
    },
    #[error("{doing}: {source}")]
    Nats {
        doing: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("{doing}: {source}")]
    Postgres {
        doing: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// The delivery's lease ran out and the job went back to the queue (or to another worker).
    #[error("job {id} is no longer leased to this worker: its lease expired")]
    LeaseLost { id: String },
    #[error("invalid {what} {name:?}: {rule}")]
    InvalidName { what: &'static str, name: String, rule: &'static str },
    #[error("lock file {path}: {source}")]
    Lock {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("delivery {id} belongs to another kind of queue")]
    ForeignDelivery { id: String },
}

impl QueueError {
    pub(crate) fn store(doing: &'static str) -> impl FnOnce(StoreError) -> QueueError {
        move |source| match source {
            StoreError::LeaseLost { id, .. } => QueueError::LeaseLost { id: id.to_string() },
            source => QueueError::Store { doing, source },
        }
    }

    pub(crate) fn nats<E>(doing: impl Into<String>) -> impl FnOnce(E) -> QueueError
    where
        E: Into<async_nats::Error>,
    {
        move |source| QueueError::Nats { doing: doing.into(), source: source.into() }
    }
}
