//! What the admin API sends and accepts: plain types with OpenAPI schemas, built from the
//! engine's and the store's types, so that the document describes exactly what is sent.

use chrono::{DateTime, Utc};
use erpsync_engine::circuit::Circuit;
use erpsync_engine::{FlowStatus, SystemHealth, SystemSummary, TraceReport};
use erpsync_store::{ApiToken, AuditEntry, DeadLetter, DeadLetterEvent, FlowPause, RecordLogEntry, Run, RunCounts};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// An answer without data, and every error: the HTTP status again and what happened.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub status: u16,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SystemView {
    pub name: String,
    /// Connector type: `files`, `http`, `sql`, ...
    pub connector: String,
    pub source_of: Vec<String>,
    pub target_of: Vec<String>,
    pub receives_webhooks: bool,
    /// The system's circuit breaker.
    pub circuit: CircuitView,
}

impl SystemView {
    pub fn new(system: SystemSummary, circuit: Circuit) -> Self {
        Self {
            name: system.name,
            connector: system.connector,
            source_of: system.source_of,
            target_of: system.target_of,
            receives_webhooks: system.receives_webhooks,
            circuit: circuit.into(),
        }
    }
}

/// A system's circuit breaker: `open` holds the flows using the system (no scheduled or
/// webhook-triggered runs) until a probe passes; `half_open` lets them run, and the next run
/// closes it or opens it again.
#[derive(Debug, Serialize, ToSchema)]
pub struct CircuitView {
    pub system: String,
    /// `closed`, `open` or `half_open`.
    pub state: String,
    /// Runs in a row that failed because the system was down or throttling.
    pub failures: u32,
    /// When the state last changed.
    pub since: Option<DateTime<Utc>>,
    /// The last outage's kind: `unavailable`, `timeout` or `rate_limited`.
    pub error_kind: Option<String>,
    /// The last outage's message, or why the last probe failed.
    pub error: Option<String>,
    /// The flow whose run counted last.
    pub flow: Option<String>,
    /// When an open circuit is probed next.
    pub probe_at: Option<DateTime<Utc>>,
    /// The enabled flows it holds while open.
    pub flows: Vec<String>,
}

impl From<Circuit> for CircuitView {
    fn from(circuit: Circuit) -> Self {
        Self {
            system: circuit.system,
            state: circuit.state.as_str().to_string(),
            failures: circuit.failures,
            since: circuit.since,
            error_kind: circuit.error_kind,
            error: circuit.error,
            flow: circuit.flow,
            probe_at: circuit.probe_at,
            flows: circuit.flows,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SystemHealthView {
    pub system: String,
    /// True when every check passed.
    pub healthy: bool,
    pub checks: Vec<SystemCheckView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SystemCheckView {
    pub check: String,
    pub ok: bool,
    pub detail: String,
    pub milliseconds: u64,
}

impl From<SystemHealth> for SystemHealthView {
    fn from(health: SystemHealth) -> Self {
        Self {
            system: health.system,
            healthy: health.healthy,
            checks: health
                .checks
                .into_iter()
                .map(|check| SystemCheckView {
                    check: check.check,
                    ok: check.ok,
                    detail: check.detail,
                    milliseconds: check.milliseconds,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FlowView {
    pub name: String,
    pub entity: String,
    pub source: String,
    pub target: String,
    /// `every 15m`, `cron 0 * * * * (Europe/Berlin)`; none for webhook-only flows.
    pub trigger: Option<String>,
    pub enabled: bool,
    /// Set while an operator has paused the flow.
    pub paused: Option<PauseView>,
    pub last_run: Option<RunView>,
    /// Seconds since the last successful run finished.
    pub lag_seconds: Option<i64>,
    pub open_failures: i64,
    pub next_run: Option<DateTime<Utc>>,
    pub next_reconcile: Option<DateTime<Utc>>,
    /// The circuit of its source or target while one is open (the flow is held) or half-open.
    pub circuit: Option<CircuitView>,
}

impl From<FlowStatus> for FlowView {
    fn from(status: FlowStatus) -> Self {
        Self {
            name: status.name,
            entity: status.entity,
            source: status.source,
            target: status.target,
            trigger: status.trigger,
            enabled: status.enabled,
            paused: status.paused.map(PauseView::from),
            last_run: status.last_run.map(RunView::from),
            lag_seconds: status.lag_seconds,
            open_failures: status.open_failures,
            next_run: status.next_run,
            next_reconcile: status.next_reconcile,
            circuit: status.circuit.map(CircuitView::from),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PauseView {
    pub paused_by: String,
    pub reason: String,
    pub paused_at: DateTime<Utc>,
}

impl From<FlowPause> for PauseView {
    fn from(pause: FlowPause) -> Self {
        Self { paused_by: pause.paused_by, reason: pause.reason, paused_at: pause.paused_at }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct PauseRequest {
    /// Why, for the audit log and the flow's status.
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunQueued {
    pub flow: String,
    pub job_id: i64,
    /// True for a full resync (reads everything), false for an incremental run.
    pub full: bool,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    pub id: i64,
    pub flow: String,
    /// `schedule`, `manual`, `webhook`, `reconcile`, `retry`.
    pub trigger: String,
    pub full: bool,
    pub dry_run: bool,
    /// `running`, `succeeded`, `partially_failed`, `failed`, `interrupted`.
    pub status: String,
    pub counts: CountsView,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CountsView {
    pub read: i64,
    pub created: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub skipped: i64,
    pub failed: i64,
    pub deleted: i64,
}

impl From<RunCounts> for CountsView {
    fn from(counts: RunCounts) -> Self {
        Self {
            read: counts.read,
            created: counts.created,
            updated: counts.updated,
            unchanged: counts.unchanged,
            skipped: counts.skipped,
            failed: counts.failed,
            deleted: counts.deleted,
        }
    }
}

impl From<Run> for RunView {
    fn from(run: Run) -> Self {
        let duration_seconds =
            run.finished_at.map(|finished| (finished - run.started_at).num_milliseconds() as f64 / 1000.0);
        Self {
            id: run.id,
            flow: run.flow,
            trigger: run.trigger,
            full: run.full,
            dry_run: run.dry_run,
            status: run.status.as_str().to_string(),
            counts: run.counts.into(),
            error: run.error,
            started_at: run.started_at,
            finished_at: run.finished_at,
            duration_seconds,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    pub flow: Option<String>,
    /// `running`, `succeeded`, `partially_failed`, `failed` or `interrupted`.
    pub status: Option<String>,
    /// `schedule`, `manual`, `webhook`, `reconcile` or `retry`.
    pub trigger: Option<String>,
    /// Only runs with a smaller id: pass the last id of the previous page.
    pub before: Option<i64>,
    /// At most this many (default 50, at most 1000).
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordsQuery {
    /// Any id in any system, or a natural key (SKU, order number, e-mail); not blank.
    #[param(min_length = 1, pattern = r"\S")]
    pub key: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TraceView {
    pub key: String,
    pub records: Vec<TracedRecordView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TracedRecordView {
    /// 0 for a record that never synced (known only from its dead letters).
    pub record_uid: i64,
    pub entity: String,
    pub natural_key: Option<String>,
    pub links: Vec<LinkView>,
    /// Sync events about it, oldest first.
    pub events: Vec<RecordEventView>,
    pub dead_letters: Vec<DeadLetterView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkView {
    pub system: String,
    pub external_id: String,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecordEventView {
    pub run_id: Option<i64>,
    pub flow: String,
    pub source_system: String,
    pub source_id: String,
    pub target_system: String,
    pub target_id: Option<String>,
    /// `created`, `updated`, `unchanged`, `skipped`, `failed`, `deleted`.
    pub action: String,
    pub message: Option<String>,
    pub at: DateTime<Utc>,
}

impl From<RecordLogEntry> for RecordEventView {
    fn from(entry: RecordLogEntry) -> Self {
        Self {
            run_id: entry.run_id,
            flow: entry.flow,
            source_system: entry.source_system,
            source_id: entry.source_id,
            target_system: entry.target_system,
            target_id: entry.target_id,
            action: entry.action.as_str().to_string(),
            message: entry.message,
            at: entry.at,
        }
    }
}

impl From<TraceReport> for TraceView {
    fn from(report: TraceReport) -> Self {
        Self {
            key: report.key,
            records: report
                .records
                .into_iter()
                .map(|record| TracedRecordView {
                    record_uid: record.identity.record_uid,
                    entity: record.identity.entity,
                    natural_key: record.identity.natural_key,
                    links: record
                        .identity
                        .links
                        .into_iter()
                        .map(|link| LinkView {
                            system: link.system,
                            external_id: link.external_id,
                            updated_at: link.updated_at,
                        })
                        .collect(),
                    events: record.events.into_iter().map(RecordEventView::from).collect(),
                    dead_letters: record.dead_letters.into_iter().map(DeadLetterView::from).collect(),
                })
                .collect(),
        }
    }
}

/// A dead letter without its payload and history (see the detail for those).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterView {
    pub id: i64,
    pub flow: String,
    pub entity: String,
    pub source_system: String,
    pub source_id: String,
    pub target_system: String,
    pub record_uid: Option<i64>,
    pub natural_key: Option<String>,
    /// Where the record was read from (`products.csv:row 12`).
    pub origin: Option<String>,
    /// `open`, `retrying`, `resolved`, `discarded`.
    pub status: String,
    /// `validation`, `mapping`, `duplicate`, `parse` or the connector's error kind.
    pub error_kind: String,
    pub error: String,
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<DeadLetter> for DeadLetterView {
    fn from(letter: DeadLetter) -> Self {
        Self {
            id: letter.id,
            flow: letter.flow,
            entity: letter.entity,
            source_system: letter.source_system,
            source_id: letter.source_id,
            target_system: letter.target_system,
            record_uid: letter.record_uid,
            natural_key: letter.natural_key,
            origin: letter.origin,
            status: letter.status.as_str().to_string(),
            error_kind: letter.error_kind,
            error: letter.error,
            attempts: letter.attempts,
            created_at: letter.created_at,
            updated_at: letter.updated_at,
        }
    }
}

/// A dead letter with the record it keeps and everything that happened to it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterDetail {
    #[serde(flatten)]
    pub letter: DeadLetterView,
    /// The source record as read: `{"v":1,"record":{...}}`, or the raw input that could not
    /// be read.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Failed attempts, edits and status changes, oldest first.
    pub history: Vec<DeadLetterEventView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterEventView {
    pub at: DateTime<Utc>,
    /// `failed`, `retrying`, `resolved`, `discarded`, `edited`, `reopened`.
    pub event: String,
    pub detail: String,
}

impl From<DeadLetterEvent> for DeadLetterEventView {
    fn from(event: DeadLetterEvent) -> Self {
        Self { at: event.at, event: event.event, detail: event.detail }
    }
}

impl From<DeadLetter> for DeadLetterDetail {
    fn from(mut letter: DeadLetter) -> Self {
        let payload = std::mem::take(&mut letter.payload);
        let history = std::mem::take(&mut letter.history).into_iter().map(DeadLetterEventView::from).collect();
        Self { letter: letter.into(), payload, history }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLettersQuery {
    pub flow: Option<String>,
    /// `open` (default), `retrying`, `resolved`, `discarded` or `all`.
    pub status: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct EditPayload {
    /// The record to retry with, in the versioned form `{"v":1,"record":{...}}`.
    #[schema(value_type = VersionedRecord)]
    pub payload: serde_json::Value,
}

/// A record in erpsync's versioned form, as dead letters keep it: `v` is the format's version
/// (1), `record` the canonical record with its `kind` (`product`, `order`, ...).
#[derive(Debug, Deserialize, ToSchema)]
pub struct VersionedRecord {
    #[schema(minimum = 1, example = 1)]
    pub v: u32,
    #[schema(value_type = Object)]
    pub record: serde_json::Value,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct DiscardRequest {
    /// Why it is closed without syncing; required (not blank), for the audit log.
    #[schema(min_length = 1, pattern = r"\S")]
    pub reason: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct BulkRetryRequest {
    /// These dead letters; when empty, every open one (of `flow` if given), at most 1000.
    #[serde(default)]
    pub ids: Vec<i64>,
    pub flow: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RetryResultView {
    pub id: i64,
    /// True when the record went through; false when it failed again (see `error`).
    pub resolved: bool,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    pub id: i64,
    /// Who: `token:<name>`, `cli:<os user>`.
    pub actor: String,
    /// What: `flow.pause`, `dead_letter.retry`, `token.create`, ...
    pub action: String,
    pub target: String,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub at: DateTime<Utc>,
}

impl From<AuditEntry> for AuditView {
    fn from(entry: AuditEntry) -> Self {
        Self {
            id: entry.id,
            actor: entry.actor,
            action: entry.action,
            target: entry.target,
            details: entry.details,
            at: entry.at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub id: i64,
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiToken> for TokenView {
    fn from(token: ApiToken) -> Self {
        Self {
            id: token.id,
            name: token.name,
            role: token.role.as_str().to_string(),
            created_by: token.created_by,
            created_at: token.created_at,
            revoked_at: token.revoked_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateTokenRequest {
    /// 1 to 64 letters, digits, `-`, `_`, `.` or `@`.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._@-]+$")]
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    #[schema(pattern = r"^(viewer|operator|admin)$")]
    pub role: String,
}

/// A new token. The secret is shown this once and stored nowhere.
#[derive(Serialize, ToSchema)]
pub struct IssuedTokenView {
    pub token: TokenView,
    /// Send as `Authorization: Bearer <secret>`.
    pub secret: String,
}
