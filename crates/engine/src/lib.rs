//! The sync engine: flows, jobs, workers, the scheduler, retries, and the configuration.
//!
//! [`Engine`] ties a validated [`config::Config`] to a [`erpsync_store::Store`] and the
//! connectors. A flow run ([`flow::run_flow`]) reads pages from the checkpoint, writes what
//! changed and commits each page atomically; runs are jobs on a queue (`work`), so two runs of
//! one flow never overlap and a run whose process died is picked up again.

pub mod alerts;
pub mod circuit;
pub mod config;
mod engine;
mod error;
pub mod flow;
pub mod merge;
pub mod metrics;
mod operate;
mod retry;
pub mod schedule;
pub mod shutdown;
pub mod work;

pub use engine::{Engine, FlowStatus, TraceReport, WorkerId};
pub use error::EngineError;
pub use flow::{RunOptions, RunSummary};
pub use operate::{IssuedToken, RetryResult, SystemCheck, SystemHealth, SystemSummary};
pub use work::Role;
