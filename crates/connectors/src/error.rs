//! `ConnectorError`: what kind of failure, whose fault, and whether and when to retry.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Auth,
    Permission,
    RateLimited,
    Unavailable,
    Timeout,
    InvalidRequest,
    InvalidResponse,
    NotFound,
    Conflict,
    /// Local I/O of the connector (files on disk).
    Io,
}

impl ErrorKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorKind::Auth => "auth",
            ErrorKind::Permission => "permission",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::InvalidResponse => "invalid_response",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Io => "io",
        }
    }

    /// Whether waiting and trying again can help, by default.
    pub fn is_transient(&self) -> bool {
        matches!(self, ErrorKind::RateLimited | ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Io)
    }
}

/// Who has to act for the failure to go away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The remote system (outage, throttling, bug).
    Remote,
    /// The data or configuration we sent (validation, unknown SKU, credentials).
    Ours,
    /// Neither is known: the network, the disk.
    Environment,
}

#[derive(Debug, thiserror::Error)]
#[error("{context}: {message}")]
pub struct ConnectorError {
    pub kind: ErrorKind,
    pub fault: Fault,
    /// Whether a retry can succeed; `retry_after` is the system's own hint (`Retry-After`).
    pub retryable: bool,
    pub retry_after: Option<Duration>,
    /// What was being done: `reading products from files "erp-export"`.
    pub context: String,
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ConnectorError {
    pub fn new(kind: ErrorKind, context: impl Into<String>, message: impl Into<String>) -> Self {
        let fault = match kind {
            ErrorKind::RateLimited | ErrorKind::Unavailable | ErrorKind::InvalidResponse => Fault::Remote,
            ErrorKind::Timeout | ErrorKind::Io => Fault::Environment,
            _ => Fault::Ours,
        };
        Self {
            kind,
            fault,
            retryable: kind.is_transient(),
            retry_after: None,
            context: context.into(),
            message: message.into(),
            source: None,
        }
    }

    pub fn io(context: impl Into<String>, error: std::io::Error) -> Self {
        let message = error.to_string();
        let mut this = Self::new(ErrorKind::Io, context, message);
        this.source = Some(Box::new(error));
        this
    }

    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
}
