//! Engine errors.

use erpsync_connectors::ConnectorError;
use erpsync_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    /// The job queue (NATS JetStream, the store's jobs) or the flow locks.
    #[error("job queue: {0}")]
    Queue(#[from] erpsync_queue::QueueError),
    #[error("unknown flow {name:?}; configured flows: {known}")]
    UnknownFlow { name: String, known: String },
    #[error("flow {flow:?} refers to system {system:?}, which is not configured")]
    UnknownSystem { flow: String, system: String },
    #[error(
        "flow {flow:?} is already queued or running (job {job_id}, {state}{owner}); try again when it has finished"
    )]
    AlreadyRunning { flow: String, job_id: i64, state: String, owner: String },
    #[error("dead letter {id} not found")]
    DeadLetterNotFound { id: i64 },
    #[error("dead letter {id} cannot be retried: {reason}")]
    NotRetryable { id: i64, reason: String },
    /// An operator action that the current state does not allow (a run of a paused flow, a
    /// payload that is not a record).
    #[error("cannot {action}: {reason}")]
    Refused { action: String, reason: String },
    #[error("run of flow {flow:?} stopped: {reason}")]
    Stopped { flow: String, reason: String },
}
