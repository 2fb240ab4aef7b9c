//! Plain data types exchanged with the store.

use chrono::{DateTime, Utc};
use erpsync_model::{Checkpoint, ContentHash, EntityKind};
use serde::{Deserialize, Serialize};

/// Internal identity of one business record across all systems (the link's hub).
pub type RecordUid = i64;
pub type RunId = i64;
pub type JobId = i64;
pub type DeadLetterId = i64;
pub type InboxId = i64;

// --- links -------------------------------------------------------------------------------------

/// A page's worth of link lookups from one source system towards one target system.
#[derive(Debug, Clone)]
pub struct LinkQuery<'a> {
    pub entity: EntityKind,
    pub source_system: &'a str,
    pub target_system: &'a str,
    pub items: Vec<LinkQueryItem<'a>>,
}

#[derive(Debug, Clone)]
pub struct LinkQueryItem<'a> {
    pub source_id: &'a str,
    pub natural_key: Option<&'a str>,
}

/// What the store knows about one source record towards one target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkState {
    /// Found by the source link or, failing that, by natural key.
    pub record_uid: Option<RecordUid>,
    /// True when `record_uid` came from the natural key, not from a link of this source id.
    pub matched_by_natural_key: bool,
    pub target_id: Option<String>,
    /// Hash of the last payload written to the target for this record.
    pub target_hash: Option<ContentHash>,
    /// Hash of the last payload erpsync wrote for this record to the *source* system (by a
    /// flow in the other direction). A source record with this hash is an echo of that write.
    pub source_hash: Option<ContentHash>,
    /// Where the source record was last read from (`products.csv@...:row 12`), used to spot a
    /// record that appears twice in one source file.
    pub last_origin: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordAction {
    Created,
    Updated,
    Unchanged,
    Skipped,
    Failed,
    Deleted,
}

impl RecordAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            RecordAction::Created => "created",
            RecordAction::Updated => "updated",
            RecordAction::Unchanged => "unchanged",
            RecordAction::Skipped => "skipped",
            RecordAction::Failed => "failed",
            RecordAction::Deleted => "deleted",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "created" => RecordAction::Created,
            "updated" => RecordAction::Updated,
            "unchanged" => RecordAction::Unchanged,
            "skipped" => RecordAction::Skipped,
            "failed" => RecordAction::Failed,
            "deleted" => RecordAction::Deleted,
            _ => return None,
        })
    }
}

/// One page's results, committed in one transaction by [`crate::Store::commit_page`].
#[derive(Debug, Clone)]
pub struct PageCommit {
    pub run_id: RunId,
    pub flow: String,
    pub entity: EntityKind,
    pub source_system: String,
    pub target_system: String,
    pub outcomes: Vec<RecordOutcome>,
    /// The flow's checkpoint after this page; `None` leaves it as it is (dry runs, retries).
    pub checkpoint: Option<Checkpoint>,
    /// Record states to store (two-way flows): the state of an outcome's record in a system.
    pub states: Vec<StateWrite>,
    pub at: DateTime<Utc>,
}

/// The state of the record of `outcomes[outcome]` in `system`, as of this page.
#[derive(Debug, Clone)]
pub struct StateWrite {
    pub outcome: usize,
    pub system: String,
    pub payload: serde_json::Value,
}

/// A record linked in both systems of a flow and in step in the target (a write snapshot with
/// a hash): what a full reconciliation checks against the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedRecord {
    pub record_uid: RecordUid,
    pub source_id: String,
    pub target_id: String,
    pub natural_key: Option<String>,
}

/// What happened to one record of a page.
///
/// A commit writes only what differs from what is stored, so the common re-sync page (every
/// record unchanged, passed with the `record_uid` and `target_id` that `lookup_links` returned
/// and no hash) writes no row per record at all.
#[derive(Debug, Clone)]
pub struct RecordOutcome {
    /// Known identity (as `lookup_links` returned it), or `None` for a record seen for the
    /// first time: it then gets the record its source id is linked to if there is one (for
    /// example from an earlier page), else a new one. The same source id twice in one page
    /// gets one record. A `Some` that does not exist fails the commit.
    pub record_uid: Option<RecordUid>,
    pub source_id: String,
    /// Stored on the record when `Some` (a changed SKU is updated); `None` leaves it.
    pub natural_key: Option<String>,
    /// Set when the target has (now) an id for this record: stores the target link (replacing
    /// the record's previous id there). `None` leaves the link as it is.
    pub target_id: Option<String>,
    pub action: RecordAction,
    /// New snapshot of the payload written to the target (only after a successful write):
    /// - created, updated: the hash written;
    /// - unchanged: pass `None`, and the stored hash stays (the engine knows it is equal);
    /// - deleted: `None` clears the stored hash, so the record is written again if it comes back;
    /// - skipped, failed: ignored.
    pub target_hash: Option<ContentHash>,
    /// Stored as the snapshot's `last_origin` for created, updated, unchanged and deleted
    /// outcomes (ignored for skipped and failed), and written only when it differs. An origin
    /// that changes on every read of an unchanged source (a file's modification time, say)
    /// makes every unchanged record a write: pass `None` when it is not needed.
    pub origin: Option<String>,
    /// Why it failed or was skipped, for the record log.
    pub message: Option<String>,
    /// A failure a person must look at: stored as an open dead letter (or added to the record's
    /// unresolved one). Without it, a created, updated, unchanged or deleted outcome resolves
    /// the record's unresolved dead letter, and a skipped or failed one leaves it.
    pub dead_letter: Option<NewDeadLetter>,
    /// Whether this outcome is logged in the record log. Unchanged records are counted in the
    /// run but not logged one by one.
    pub log: bool,
}

// --- records and trace -------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordIdentity {
    pub record_uid: RecordUid,
    pub entity: String,
    pub natural_key: Option<String>,
    /// `(system, external id)` pairs.
    pub links: Vec<SystemLink>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SystemLink {
    pub system: String,
    pub external_id: String,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordLogEntry {
    pub id: i64,
    pub run_id: Option<RunId>,
    pub flow: String,
    pub record_uid: Option<RecordUid>,
    pub source_system: String,
    pub source_id: String,
    pub target_system: String,
    pub target_id: Option<String>,
    pub action: RecordAction,
    pub message: Option<String>,
    pub origin: Option<String>,
    pub at: DateTime<Utc>,
}

// --- runs --------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct NewRun {
    pub flow: String,
    /// `schedule`, `manual`, `webhook`, `reconcile`, `retry`.
    pub trigger: String,
    pub full: bool,
    pub dry_run: bool,
    pub started_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    /// Finished, but some records failed (they are dead letters).
    PartiallyFailed,
    Failed,
    Interrupted,
}

impl RunStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::PartiallyFailed => "partially_failed",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "partially_failed" => RunStatus::PartiallyFailed,
            "failed" => RunStatus::Failed,
            "interrupted" => RunStatus::Interrupted,
            _ => return None,
        })
    }
}

/// Counts of one run, accumulated by every committed page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    pub read: i64,
    pub created: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub skipped: i64,
    pub failed: i64,
    pub deleted: i64,
}

impl RunCounts {
    pub fn add(&mut self, action: RecordAction) {
        self.read += 1;
        match action {
            RecordAction::Created => self.created += 1,
            RecordAction::Updated => self.updated += 1,
            RecordAction::Unchanged => self.unchanged += 1,
            RecordAction::Skipped => self.skipped += 1,
            RecordAction::Failed => self.failed += 1,
            RecordAction::Deleted => self.deleted += 1,
        }
    }

    pub fn written(&self) -> i64 {
        self.created + self.updated + self.deleted
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    pub id: RunId,
    pub flow: String,
    pub trigger: String,
    pub full: bool,
    pub dry_run: bool,
    pub status: RunStatus,
    pub counts: RunCounts,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

// --- dead letters ------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub struct NewDeadLetter {
    /// The source record as read (versioned canonical form, or the raw row when it could not be
    /// parsed), so it can be edited and retried.
    pub payload: serde_json::Value,
    /// Connector error kind or `validation`, `mapping`, `duplicate`, `parse`.
    pub error_kind: String,
    pub error: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterStatus {
    Open,
    Retrying,
    Resolved,
    Discarded,
}

impl DeadLetterStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            DeadLetterStatus::Open => "open",
            DeadLetterStatus::Retrying => "retrying",
            DeadLetterStatus::Resolved => "resolved",
            DeadLetterStatus::Discarded => "discarded",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "open" => DeadLetterStatus::Open,
            "retrying" => DeadLetterStatus::Retrying,
            "resolved" => DeadLetterStatus::Resolved,
            "discarded" => DeadLetterStatus::Discarded,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    pub id: DeadLetterId,
    pub flow: String,
    pub entity: String,
    pub source_system: String,
    pub source_id: String,
    pub target_system: String,
    pub record_uid: Option<RecordUid>,
    pub natural_key: Option<String>,
    pub origin: Option<String>,
    pub status: DeadLetterStatus,
    pub error_kind: String,
    pub error: String,
    pub payload: serde_json::Value,
    /// Failed attempts, edits and status changes, oldest first.
    pub history: Vec<DeadLetterEvent>,
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterEvent {
    pub at: DateTime<Utc>,
    /// `failed`, `retrying`, `resolved`, `discarded`, `edited`, `reopened`.
    pub event: String,
    pub detail: String,
}

#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    pub flow: Option<String>,
    pub status: Option<DeadLetterStatus>,
    pub limit: u32,
}

// --- jobs --------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub dedupe_key: Option<String>,
    /// The record or flow the job is about: jobs with the same key are claimed one at a time,
    /// oldest first (by `run_at`, then id), across every process on the store. `None`: no order.
    pub key: Option<String>,
    pub payload: serde_json::Value,
    pub run_at: DateTime<Utc>,
    pub max_attempts: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    Running,
    Done,
    Dead,
}

impl JobState {
    pub fn as_str(&self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => JobState::Pending,
            "running" => JobState::Running,
            "done" => JobState::Done,
            "dead" => JobState::Dead,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    pub id: JobId,
    pub kind: String,
    pub dedupe_key: Option<String>,
    pub payload: serde_json::Value,
    pub state: JobState,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

// --- inbox -------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct NewInboxDelivery {
    pub system: String,
    pub delivery_id: String,
    pub topic: String,
    pub headers: serde_json::Value,
    pub body: Vec<u8>,
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxInsert {
    Inserted(InboxId),
    Duplicate,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboxDelivery {
    pub id: InboxId,
    pub system: String,
    pub delivery_id: String,
    pub topic: String,
    pub headers: serde_json::Value,
    pub body: Vec<u8>,
    pub received_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

// --- audit -------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct NewAuditEntry {
    /// Who: a token name, `cli:<os user>`, `system`.
    pub actor: String,
    /// What: `dead_letter.retry`, `flow.pause`, ...
    pub action: String,
    pub target: String,
    pub details: serde_json::Value,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: serde_json::Value,
    pub at: DateTime<Utc>,
}

/// When a scheduled trigger is next due, as the scheduler stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSchedule {
    pub name: String,
    /// The trigger as configured when this was stored.
    pub spec: String,
    pub next_run_at: DateTime<Utc>,
}

// --- operations: paused flows, access tokens, queues -------------------------------------------

/// A flow an operator paused: the scheduler and webhooks start no run of it until resumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowPause {
    pub flow: String,
    /// Who paused it: a token name or `cli:<os user>`.
    pub paused_by: String,
    pub reason: String,
    pub paused_at: DateTime<Utc>,
}

/// What an access token of the admin API may do. Each role may do what the roles before it
/// may: a viewer reads, an operator also acts on flows and dead letters, an admin also manages
/// tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRole {
    Viewer,
    Operator,
    Admin,
}

impl TokenRole {
    pub fn as_str(&self) -> &'static str {
        match self {
            TokenRole::Viewer => "viewer",
            TokenRole::Operator => "operator",
            TokenRole::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "viewer" => TokenRole::Viewer,
            "operator" => TokenRole::Operator,
            "admin" => TokenRole::Admin,
            _ => return None,
        })
    }
}

/// A token to store. Only the SHA-256 digest of the secret is stored, never the secret.
#[derive(Debug, Clone)]
pub struct NewApiToken {
    pub name: String,
    pub role: TokenRole,
    pub secret_hash: [u8; 32],
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub role: TokenRole,
    /// SHA-256 of the secret. Not serialized: it has no use outside authentication.
    #[serde(skip)]
    pub secret_hash: [u8; 32],
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Which runs to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub flow: Option<String>,
    pub status: Option<RunStatus>,
    /// `schedule`, `manual`, `webhook`, `reconcile`, `retry`, `api`.
    pub trigger: Option<String>,
    /// Only runs with a smaller id: the next page after the last run of the previous one.
    pub before: Option<RunId>,
    /// 0 means no limit.
    pub limit: u32,
}

/// How much work waits: webhook deliveries not yet turned into runs, and jobs by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueDepths {
    pub inbox_pending: i64,
    pub jobs_pending: i64,
    pub jobs_running: i64,
    pub jobs_dead: i64,
}

// --- alerts ------------------------------------------------------------------------------------

pub type AlertId = i64;

/// An incident to record: rule `rule` began to hold for `scope` (a flow or a system).
#[derive(Debug, Clone)]
pub struct NewAlert {
    pub rule: String,
    /// `failures`, `lag`, `no_sync`, `slow_run`, `run_failed`.
    pub kind: String,
    pub scope: String,
    /// What was seen: `3 records failed in 15m (more than 0)`.
    pub summary: String,
    /// False when the incident began within the cool-down of the previous message of its rule
    /// and scope: recorded, but no message is sent about it.
    pub notify: bool,
    pub opened_at: DateTime<Utc>,
}

/// One incident of an alert rule, with the messages sent about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub id: AlertId,
    pub rule: String,
    pub kind: String,
    pub scope: String,
    pub summary: String,
    pub notify: bool,
    pub opened_at: DateTime<Utc>,
    /// Set once the condition no longer holds.
    pub resolved_at: Option<DateTime<Utc>>,
    /// What was seen when it cleared.
    pub resolution: Option<String>,
    /// Messages about it, oldest first.
    pub deliveries: Vec<AlertDelivery>,
}

/// One message about an incident on one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertDelivery {
    /// `firing` or `resolved`.
    pub event: String,
    /// `email` or `webhook`.
    pub channel: String,
    pub ok: bool,
    /// The error when it failed, else what the channel answered.
    pub detail: String,
    pub at: DateTime<Utc>,
}

/// Which incidents to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub rule: Option<String>,
    pub scope: Option<String>,
    /// Only incidents not resolved yet.
    pub open_only: bool,
    /// 0 means no limit.
    pub limit: u32,
}
