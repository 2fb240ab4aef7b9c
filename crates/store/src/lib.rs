//! Durable state of erpsync: checkpoints, links (the identity map), snapshot hashes, jobs,
//! the webhook inbox, runs, the record log, dead letters, the audit log and alert incidents.
//!
//! [`Store`] is the one interface; [`sqlite::SqliteStore`] (the embedded default) and
//! [`postgres::PostgresStore`] (scale-out) implement it, and one conformance suite
//! (`tests/conformance.rs`) runs every behaviour against both. This is the only crate that
//! holds SQL.

#[macro_use]
mod columns;
mod codec;
mod error;
mod migrations;
mod page;
pub mod postgres;
pub mod sqlite;
mod types;

pub use error::StoreError;
pub use types::*;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use erpsync_model::{Checkpoint, EntityKind};
use std::sync::Arc;
use std::time::Duration;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything the engine persists. All methods are safe to call from many tasks at once.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies pending migrations. Idempotent; also run on open.
    async fn migrate(&self) -> Result<()>;
    /// Highest applied migration version.
    async fn schema_version(&self) -> Result<i64>;

    // --- checkpoints -------------------------------------------------------------------------
    async fn checkpoint(&self, flow: &str, source_system: &str) -> Result<Option<Checkpoint>>;
    async fn put_checkpoint(&self, flow: &str, source_system: &str, checkpoint: &Checkpoint) -> Result<()>;
    async fn reset_checkpoint(&self, flow: &str, source_system: &str) -> Result<()>;

    // --- schedules -----------------------------------------------------------------------------
    /// Every stored schedule: `(name, spec, next run)`.
    async fn schedules(&self) -> Result<Vec<StoredSchedule>>;
    /// Stores when the trigger `name` (configured as `spec`) is next due.
    async fn put_schedule(&self, name: &str, spec: &str, next_run_at: DateTime<Utc>) -> Result<()>;

    // --- two-way state and reconciliation ------------------------------------------------------
    /// The stored states of records in `system` (see [`StateWrite`]), for those that have one.
    async fn record_states(
        &self,
        system: &str,
        record_uids: &[RecordUid],
    ) -> Result<std::collections::HashMap<RecordUid, serde_json::Value>>;
    /// Records of `entity` linked in `source_system` and in `target_system` whose target
    /// snapshot has a hash (written and not deleted since), by record.
    async fn linked_records(
        &self,
        entity: EntityKind,
        source_system: &str,
        target_system: &str,
    ) -> Result<Vec<LinkedRecord>>;

    // --- links and snapshots -----------------------------------------------------------------
    /// For each source record of a page: its record identity (by link from the source id, else
    /// by natural key), its id in the target, and the snapshot of the last write to the target.
    /// The result has one entry per query item, in the same order.
    ///
    /// Matching by natural key only considers records that have no link in the source system
    /// yet (two source records with the same SKU stay two records); among several, the oldest.
    /// One or a few queries per page, whatever its size.
    async fn lookup_links(&self, query: &LinkQuery<'_>) -> Result<Vec<LinkState>>;

    /// Commits one page atomically: new record identities, links, snapshot hashes, the record
    /// log, dead letters (and resolution of superseded ones), the run's counts and the
    /// checkpoint. Either all of it is durable or none of it is.
    ///
    /// Dead letters are keyed by `(flow, source_id, target_system)`: a new failure of a record
    /// that already has an open (or retrying) dead letter updates it (payload, error, one more
    /// attempt, a `failed` event in its history) instead of adding a second; a created, updated,
    /// unchanged or deleted outcome resolves it (a `resolved` event). Returns the record
    /// identity of every outcome, in order.
    ///
    /// Links are last-write-wins: storing `(entity, system, id) -> record` removes a link of
    /// another record with that id and this record's link with another id in that system.
    /// Fails with [`StoreError::NotFound`] for a missing run or an unknown `record_uid`, and
    /// then nothing of the page is stored. See [`RecordOutcome`] for what each field does.
    async fn commit_page(&self, page: &PageCommit) -> Result<Vec<RecordUid>>;

    /// Every id of one record in every system, found by any system id or natural key.
    async fn find_records(&self, key: &str) -> Result<Vec<RecordIdentity>>;
    /// Record log entries for one record, oldest first: the newest `limit` of them.
    async fn record_history(&self, record_uid: RecordUid, limit: u32) -> Result<Vec<RecordLogEntry>>;

    // --- runs --------------------------------------------------------------------------------
    async fn start_run(&self, run: &NewRun) -> Result<RunId>;
    async fn finish_run(&self, run_id: RunId, status: RunStatus, error: Option<&str>) -> Result<()>;
    async fn run(&self, run_id: RunId) -> Result<Option<Run>>;
    /// Newest first.
    async fn list_runs(&self, flow: Option<&str>, limit: u32) -> Result<Vec<Run>>;
    /// Runs left `running` by a process that died (started before `older_than`): marked
    /// `interrupted` with an error saying so; `finished_at` stays empty.
    async fn interrupt_running_runs(&self, older_than: DateTime<Utc>) -> Result<u64>;

    // --- dead letters ------------------------------------------------------------------------
    /// Most recently updated first; a `limit` of 0 means no limit.
    async fn list_dead_letters(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>>;
    async fn dead_letter(&self, id: DeadLetterId) -> Result<Option<DeadLetter>>;
    /// Changes status (retrying, resolved, discarded, open) and appends to its history (events
    /// `retrying`, `resolved`, `discarded`, `reopened`, with `note` as detail).
    async fn set_dead_letter_status(&self, id: DeadLetterId, status: DeadLetterStatus, note: &str) -> Result<()>;
    async fn update_dead_letter_payload(&self, id: DeadLetterId, payload: &serde_json::Value, note: &str)
    -> Result<()>;
    /// Unresolved (open or retrying) dead letters per flow, ordered by flow.
    async fn count_open_dead_letters(&self) -> Result<Vec<(String, i64)>>;

    // --- jobs --------------------------------------------------------------------------------
    /// Enqueues a job. With a dedupe key, returns `None` when a pending or running job with the
    /// same key exists already.
    async fn enqueue_job(&self, job: &NewJob) -> Result<Option<JobId>>;
    /// Claims up to `limit` due jobs of the given kinds for `worker`, leased for `lease`, oldest
    /// `run_at` first. Two workers never get the same job. Attempts are counted by `fail_job`
    /// and by lease expiry, not here.
    async fn claim_jobs(&self, worker: &str, kinds: &[&str], lease: Duration, limit: u32) -> Result<Vec<Job>>;
    /// Extends a lease; `false` when the job is no longer held by this worker.
    async fn heartbeat_job(&self, id: JobId, worker: &str, lease: Duration) -> Result<bool>;
    /// [`StoreError::LeaseLost`] when the job is not running under this worker's lease (as for
    /// `fail_job` and `release_job`): nothing is changed then.
    async fn complete_job(&self, id: JobId, worker: &str) -> Result<()>;
    /// Records a failed attempt. With `retry_at` and attempts left, the job becomes pending
    /// again at that time; otherwise it is dead.
    async fn fail_job(&self, id: JobId, worker: &str, error: &str, retry_at: Option<DateTime<Utc>>)
    -> Result<JobState>;
    /// Hands a job back without counting an attempt (graceful shutdown).
    async fn release_job(&self, id: JobId, worker: &str) -> Result<()>;
    /// Returns running jobs whose lease expired to pending. Returns how many. An expired lease
    /// counts as a failed attempt (`last_error` "lease expired"), so a job that kills its
    /// worker every time ends `dead` after `max_attempts`.
    async fn reclaim_expired_jobs(&self) -> Result<u64>;
    async fn job(&self, id: JobId) -> Result<Option<Job>>;
    /// Oldest first.
    async fn list_jobs(&self, state: Option<JobState>, limit: u32) -> Result<Vec<Job>>;

    // --- inbox -------------------------------------------------------------------------------
    /// Stores a webhook delivery durably; `Duplicate` when its delivery id was seen before.
    async fn insert_inbox(&self, delivery: &NewInboxDelivery) -> Result<InboxInsert>;
    /// Unprocessed deliveries, oldest received first.
    async fn pending_inbox(&self, limit: u32) -> Result<Vec<InboxDelivery>>;
    /// Processed either way; `error` says why handling it failed.
    async fn mark_inbox_processed(&self, id: InboxId, error: Option<&str>) -> Result<()>;

    // --- audit -------------------------------------------------------------------------------
    async fn audit(&self, entry: &NewAuditEntry) -> Result<()>;
    /// Newest first.
    async fn list_audit(&self, limit: u32) -> Result<Vec<AuditEntry>>;

    // --- operations: paused flows, access tokens, filtered runs, queue depths -----------------
    /// Pauses a flow. `false` when it was paused already: the first pause (who, why) is kept.
    async fn pause_flow(&self, pause: &FlowPause) -> Result<bool>;
    /// `false` when the flow was not paused.
    async fn resume_flow(&self, flow: &str) -> Result<bool>;
    /// Every paused flow, by name.
    async fn paused_flows(&self) -> Result<Vec<FlowPause>>;
    /// Stores a new token; [`StoreError::AlreadyExists`] when an active token has its name.
    async fn create_api_token(&self, token: &NewApiToken) -> Result<ApiToken>;
    /// Tokens by name, then newest first; revoked ones only with `include_revoked`.
    async fn api_tokens(&self, include_revoked: bool) -> Result<Vec<ApiToken>>;
    /// Revokes the active token called `name`; `false` when there is none.
    async fn revoke_api_token(&self, name: &str, at: DateTime<Utc>) -> Result<bool>;
    /// Runs matching `filter`, newest first (by id, which follows start order).
    async fn find_runs(&self, filter: &RunFilter) -> Result<Vec<Run>>;
    /// Pending webhook deliveries and jobs per state.
    async fn queue_depths(&self) -> Result<QueueDepths>;

    // --- alerts --------------------------------------------------------------------------------
    /// Records a new incident; [`StoreError::AlreadyExists`] when one of the same rule and scope
    /// is open already.
    async fn insert_alert(&self, alert: &NewAlert) -> Result<AlertId>;
    /// Marks an open incident resolved; `false` when it is not open.
    async fn resolve_alert(&self, id: AlertId, at: DateTime<Utc>, resolution: &str) -> Result<bool>;
    /// Records one message about an incident; [`StoreError::NotFound`] for an unknown incident.
    async fn record_alert_delivery(&self, id: AlertId, delivery: &AlertDelivery) -> Result<()>;
    /// Incidents matching `filter`, newest first, each with its messages.
    async fn list_alerts(&self, filter: &AlertFilter) -> Result<Vec<Alert>>;
}

/// Which store to open, parsed from a URL: `sqlite:///path/to/erpsync.db` or
/// `postgres://user@host/db`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl StoreUrl {
    pub fn parse(url: &str) -> Result<Self> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            return Ok(StoreUrl::Sqlite(path.into()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(url.to_string()));
        }
        Err(StoreError::InvalidUrl(url.to_string()))
    }
}

/// Opens (creating if needed) and migrates the store at `url`.
pub async fn open(url: &StoreUrl) -> Result<Arc<dyn Store>> {
    open_with_pool(url, postgres::DEFAULT_POOL).await
}

/// [`open`] with at most `pool` connections to PostgreSQL (SQLite keeps its own fixed pools).
pub async fn open_with_pool(url: &StoreUrl, pool: u32) -> Result<Arc<dyn Store>> {
    match url {
        StoreUrl::Sqlite(path) => Ok(Arc::new(sqlite::SqliteStore::open(path).await?)),
        StoreUrl::Postgres(url) => Ok(Arc::new(postgres::PostgresStore::open_with_pool(url, pool).await?)),
    }
}

/// Highest migration version shipped in this build, the same for SQLite and PostgreSQL: a store
/// whose [`Store::schema_version`] is lower needs [`Store::migrate`].
pub fn latest_schema_version() -> i64 {
    migrations::latest_version()
}

/// Entity names as stored.
pub fn entity_name(entity: EntityKind) -> &'static str {
    entity.as_str()
}
