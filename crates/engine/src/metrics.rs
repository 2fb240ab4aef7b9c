//! The names, labels and meaning of every metric erpsync exports, in one place, and the
//! helpers the engine calls where things happen.
//!
//! Counters and histograms are recorded through the `metrics` facade: without an installed
//! recorder (a one-off `erpsync sync`) they cost nothing. `erpsync serve` installs the
//! Prometheus recorder (crate `server`), which also sets the gauges below from the store on
//! every scrape. Labels are bounded: flow, entity, system and outcome names come from the
//! configuration or from closed lists, never from record data.

use erpsync_connectors::ConnectorError;
use erpsync_store::{RunCounts, RunStatus};
use std::time::Duration;

/// Records processed, by `flow`, `entity` and `outcome` (created, updated, unchanged, skipped,
/// failed, deleted). Counted when a page is committed; dry runs are not counted.
pub const RECORDS_TOTAL: &str = "erpsync_records_total";
/// Runs finished, by `flow` and `status` (succeeded, partially_failed, failed, interrupted).
pub const RUNS_TOTAL: &str = "erpsync_runs_total";
/// Duration of finished runs, by `flow` and `status`.
pub const RUN_DURATION_SECONDS: &str = "erpsync_run_duration_seconds";
/// Calls to external systems made by flows, by `system`, `operation` (read, write) and
/// `result` (`ok` or the connector's error kind).
pub const CONNECTOR_CALLS_TOTAL: &str = "erpsync_connector_calls_total";
/// Webhook deliveries received, by `system` (`unknown` for systems that are not configured)
/// and `result` (stored, duplicate, rejected, not_found, unavailable).
pub const WEBHOOK_DELIVERIES_TOTAL: &str = "erpsync_webhook_deliveries_total";
/// Requests to the admin API, by `status` (the HTTP status code).
pub const API_REQUESTS_TOTAL: &str = "erpsync_api_requests_total";
/// Seconds since the flow's last successful run finished, by `flow` (set on scrape; absent
/// for a flow that never succeeded).
pub const FLOW_LAG_SECONDS: &str = "erpsync_flow_lag_seconds";
/// 1 when the flow is paused, else 0, by `flow` (set on scrape).
pub const FLOW_PAUSED: &str = "erpsync_flow_paused";
/// 1 while the system's circuit is open or half-open, else 0, by `system` (set on scrape).
pub const CIRCUIT_OPEN: &str = "erpsync_circuit_open";
/// Unresolved dead letters, by `flow` (set on scrape).
pub const DEAD_LETTERS_OPEN: &str = "erpsync_dead_letters_open";
/// Webhook deliveries not yet turned into runs (set on scrape).
pub const INBOX_PENDING: &str = "erpsync_inbox_pending";
/// Jobs by `state` (pending, running, dead) (set on scrape).
pub const JOBS: &str = "erpsync_jobs";

/// Every metric with its kind and help text, for the exporter's descriptions and the docs.
pub const ALL: &[(&str, MetricKind, &str)] = &[
    (RECORDS_TOTAL, MetricKind::Counter, "Records processed, by flow, entity and outcome."),
    (RUNS_TOTAL, MetricKind::Counter, "Runs finished, by flow and status."),
    (RUN_DURATION_SECONDS, MetricKind::Histogram, "Duration of finished runs in seconds, by flow and status."),
    (CONNECTOR_CALLS_TOTAL, MetricKind::Counter, "Calls to external systems, by system, operation and result."),
    (WEBHOOK_DELIVERIES_TOTAL, MetricKind::Counter, "Webhook deliveries received, by system and result."),
    (API_REQUESTS_TOTAL, MetricKind::Counter, "Requests to the admin API, by HTTP status."),
    (FLOW_LAG_SECONDS, MetricKind::Gauge, "Seconds since the flow's last successful run finished."),
    (FLOW_PAUSED, MetricKind::Gauge, "1 when the flow is paused by an operator."),
    (CIRCUIT_OPEN, MetricKind::Gauge, "1 while the system's circuit breaker is open or half-open."),
    (DEAD_LETTERS_OPEN, MetricKind::Gauge, "Unresolved dead letters, by flow."),
    (INBOX_PENDING, MetricKind::Gauge, "Webhook deliveries waiting to be turned into runs."),
    (JOBS, MetricKind::Gauge, "Jobs by state."),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// Registers the help text of every metric with the installed recorder.
pub fn describe() {
    for (name, kind, help) in ALL {
        match kind {
            MetricKind::Counter => metrics::describe_counter!(*name, *help),
            MetricKind::Gauge => metrics::describe_gauge!(*name, *help),
            MetricKind::Histogram => {
                metrics::describe_histogram!(*name, metrics::Unit::Seconds, *help)
            }
        }
    }
}

/// A committed page of `flow`.
pub(crate) fn page_committed(flow: &str, entity: &str, counts: &RunCounts) {
    for (outcome, n_records) in [
        ("created", counts.created),
        ("updated", counts.updated),
        ("unchanged", counts.unchanged),
        ("skipped", counts.skipped),
        ("failed", counts.failed),
        ("deleted", counts.deleted),
    ] {
        if n_records > 0 {
            metrics::counter!(RECORDS_TOTAL, "flow" => flow.to_string(), "entity" => entity.to_string(), "outcome" => outcome)
                .increment(n_records.unsigned_abs());
        }
    }
}

/// A run of `flow` that ended (not dry runs).
pub(crate) fn run_finished(flow: &str, status: RunStatus, duration: Duration) {
    let status = status.as_str();
    metrics::counter!(RUNS_TOTAL, "flow" => flow.to_string(), "status" => status).increment(1);
    metrics::histogram!(RUN_DURATION_SECONDS, "flow" => flow.to_string(), "status" => status)
        .record(duration.as_secs_f64());
}

/// A call to an external system by a flow; `operation` is `read` or `write`.
pub(crate) fn connector_call(system: &str, operation: &'static str, result: Result<(), &ConnectorError>) {
    let result = match result {
        Ok(()) => "ok",
        Err(error) => error.kind.as_str(),
    };
    metrics::counter!(CONNECTOR_CALLS_TOTAL, "system" => system.to_string(), "operation" => operation, "result" => result)
        .increment(1);
}
