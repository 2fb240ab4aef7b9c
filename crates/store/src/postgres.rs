//! PostgreSQL store: shared state for scaled-out workers.
//!
//! Many processes use one database at once: jobs are claimed with `FOR UPDATE SKIP LOCKED` so
//! two workers never take the same job, migrations hold sqlx's advisory lock, and record
//! identities come from a sequence. Batches (a page of link lookups, the rows of a page commit)
//! are bound as arrays and expanded with `unnest`, so one statement handles a whole page.

use crate::codec;
use crate::page::{self, DeadLetterOp, ExistingState, LinkWrite, PagePlan, SnapshotChange, SnapshotWrite};
use crate::{
    Alert, AlertDelivery, AlertFilter, AlertId, ApiToken, AuditEntry, DeadLetter, DeadLetterFilter, DeadLetterId,
    DeadLetterStatus, FlowPause, InboxDelivery, InboxId, InboxInsert, Job, JobId, JobState, LinkQuery, LinkState,
    LinkedRecord, NewAlert, NewApiToken, NewAuditEntry, NewInboxDelivery, NewJob, NewRun, PageCommit, QueueDepths,
    RecordIdentity, RecordLogEntry, RecordOutcome, RecordUid, Result, Run, RunCounts, RunFilter, RunId, RunStatus,
    Store, StoreError, StoredSchedule, SystemLink, migrations,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use erpsync_model::{Checkpoint, EntityKind};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

/// Connections per process unless configured (`[store] pool`). Workers mostly wait on
/// external APIs, not on the database.
pub const DEFAULT_POOL: u32 = 8;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct PostgresStore {
    pool: PgPool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: not printed.
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` with [`DEFAULT_POOL`] connections at most and applies
    /// pending migrations.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with_pool(url, DEFAULT_POOL).await
    }

    /// Connects to the database at `url` with at most `pool` connections and applies pending
    /// migrations.
    pub async fn open_with_pool(url: &str, pool: u32) -> Result<Self> {
        let open_error = |source| StoreError::Open { location: redact_password(url), source };
        // JIT compilation costs tens of milliseconds per query and pays off only for analytics;
        // the store's queries are short lookups over one page.
        let options = PgConnectOptions::from_str(url).map_err(open_error)?.options([("jit", "off")]);
        let pool = PgPoolOptions::new()
            .max_connections(pool.max(1))
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(open_error)?;
        let store = PostgresStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// The connection pool, for tests and tools that need raw access.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(StoreError::query("beginning a transaction"))
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`, for error messages.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// Reads a column, naming what was being read on failure.
fn get<'r, T>(row: &'r PgRow, column: &str, doing: &'static str) -> Result<T>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(column).map_err(StoreError::query(doing))
}

/// Position of a row in its batch: `WITH ORDINALITY` counts from 1.
fn batch_index(ordinality: i64, len: usize, what: &'static str) -> Result<usize> {
    usize::try_from(ordinality - 1)
        .ok()
        .filter(|index| *index < len)
        .ok_or_else(|| StoreError::Corrupt { what, detail: format!("row for item {ordinality} of {len}") })
}

/// Largest parameter payload sent in one statement, in bytes (estimated).
///
/// sqlx 0.9.0 does not set `TCP_NODELAY` (launchbadge/sqlx#4335, fixed upstream after 0.9.0).
/// A message larger than the kernel's initial socket send buffer (16 KiB) is then written in
/// two parts, and the second waits for the server's delayed ACK: 40 ms per statement. Batches
/// are therefore sent in chunks that stay well under that size; a few more round trips cost far
/// less. Remove once sqlx sets `TCP_NODELAY` again.
const MAX_BATCH_BYTES: usize = 8 * 1024;

/// Splits `items` into consecutive chunks whose estimated parameter size (`size` per item, plus
/// the 4-byte length of each array element) stays under [`MAX_BATCH_BYTES`]. An item larger than
/// that goes alone.
fn chunks_by_size<T>(items: &[T], size: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (index, item) in items.iter().enumerate() {
        let item_bytes = size(item) + 16;
        if index > start && bytes + item_bytes > MAX_BATCH_BYTES {
            chunks.push(&items[start..index]);
            start = index;
            bytes = 0;
        }
        bytes += item_bytes;
    }
    if start < items.len() {
        chunks.push(&items[start..]);
    }
    chunks
}

fn text_len(text: Option<&str>) -> usize {
    text.map_or(0, str::len)
}

#[async_trait]
impl Store for PostgresStore {
    async fn migrate(&self) -> Result<()> {
        migrations::postgres().run(&self.pool).await.map_err(StoreError::Migrate)
    }

    async fn schema_version(&self) -> Result<i64> {
        let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::query("reading the schema version"))?;
        Ok(version.unwrap_or(0))
    }

    // --- checkpoints ---------------------------------------------------------------------------

    async fn checkpoint(&self, flow: &str, source_system: &str) -> Result<Option<Checkpoint>> {
        const DOING: &str = "reading a checkpoint";
        let row = sqlx::query("SELECT watermark, cursor FROM checkpoints WHERE flow = $1 AND source_system = $2")
            .bind(flow)
            .bind(source_system)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query(DOING))?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(Checkpoint { watermark: get(&row, "watermark", DOING)?, cursor: get(&row, "cursor", DOING)? }))
    }

    async fn put_checkpoint(&self, flow: &str, source_system: &str, checkpoint: &Checkpoint) -> Result<()> {
        let mut tx = self.begin().await?;
        upsert_checkpoint(&mut tx, flow, source_system, checkpoint, Utc::now()).await?;
        tx.commit().await.map_err(StoreError::query("committing a checkpoint"))
    }

    async fn reset_checkpoint(&self, flow: &str, source_system: &str) -> Result<()> {
        sqlx::query("DELETE FROM checkpoints WHERE flow = $1 AND source_system = $2")
            .bind(flow)
            .bind(source_system)
            .execute(&self.pool)
            .await
            .map_err(StoreError::query("resetting a checkpoint"))?;
        Ok(())
    }

    // --- schedules -----------------------------------------------------------------------------

    async fn schedules(&self) -> Result<Vec<StoredSchedule>> {
        const DOING: &str = "reading schedules";
        let rows = sqlx::query("SELECT name, spec, next_run_at FROM schedules ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(DOING))?;
        rows.iter()
            .map(|row| {
                Ok(StoredSchedule {
                    name: get(row, "name", DOING)?,
                    spec: get(row, "spec", DOING)?,
                    next_run_at: get(row, "next_run_at", DOING)?,
                })
            })
            .collect()
    }

    async fn put_schedule(&self, name: &str, spec: &str, next_run_at: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "INSERT INTO schedules (name, spec, next_run_at, updated_at) VALUES ($1, $2, $3, now()) \
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, next_run_at = excluded.next_run_at, \
             updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(spec)
        .bind(next_run_at)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("storing a schedule"))?;
        Ok(())
    }

    // --- two-way state and reconciliation --------------------------------------------------------

    async fn record_states(
        &self,
        system: &str,
        record_uids: &[RecordUid],
    ) -> Result<std::collections::HashMap<RecordUid, serde_json::Value>> {
        const DOING: &str = "reading record states";
        if record_uids.is_empty() {
            return Ok(std::collections::HashMap::new());
        }
        let rows =
            sqlx::query("SELECT record_uid, payload FROM record_states WHERE system = $1 AND record_uid = ANY($2)")
                .bind(system)
                .bind(record_uids)
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::query(DOING))?;
        let mut states = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            let payload: sqlx::types::Json<serde_json::Value> = get(&row, "payload", DOING)?;
            states.insert(get(&row, "record_uid", DOING)?, payload.0);
        }
        Ok(states)
    }

    async fn linked_records(
        &self,
        entity: EntityKind,
        source_system: &str,
        target_system: &str,
    ) -> Result<Vec<LinkedRecord>> {
        const DOING: &str = "listing linked records";
        let rows = sqlx::query(
            "SELECT s.record_uid, s.external_id AS source_id, t.external_id AS target_id, r.natural_key
             FROM links s
             JOIN links t ON t.record_uid = s.record_uid AND t.system = $3
             JOIN snapshots n ON n.record_uid = s.record_uid AND n.target_system = $3
             JOIN records r ON r.record_uid = s.record_uid
             WHERE s.system = $2 AND s.entity = $1 AND n.target_hash IS NOT NULL
             ORDER BY s.record_uid",
        )
        .bind(entity.as_str())
        .bind(source_system)
        .bind(target_system)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(DOING))?;
        rows.iter()
            .map(|row| {
                Ok(LinkedRecord {
                    record_uid: get(row, "record_uid", DOING)?,
                    source_id: get(row, "source_id", DOING)?,
                    target_id: get(row, "target_id", DOING)?,
                    natural_key: get(row, "natural_key", DOING)?,
                })
            })
            .collect()
    }

    // --- links and snapshots -------------------------------------------------------------------

    /// One query for the whole page; the same rules as the SQLite store: matching by natural
    /// key only considers records without a link in the source system, oldest first.
    ///
    /// Every probe is a `LATERAL` subquery with `LIMIT 1` (which keeps the planner from turning
    /// it back into a join; the keys are unique anyway): the plan is then an index lookup per
    /// item whatever the statistics say. Joined plainly, a table that was never analyzed (the first minutes
    /// of a first sync) looks tiny to the planner, which then scans it once per item.
    async fn lookup_links(&self, query: &LinkQuery<'_>) -> Result<Vec<LinkState>> {
        const DOING: &str = "looking up links";
        if query.items.is_empty() {
            return Ok(Vec::new());
        }
        let mut states = vec![LinkState::default(); query.items.len()];
        let mut offset = 0;
        for chunk in chunks_by_size(&query.items, |item| item.source_id.len() + text_len(item.natural_key)) {
            let source_ids: Vec<&str> = chunk.iter().map(|item| item.source_id).collect();
            let natural_keys: Vec<Option<&str>> = chunk.iter().map(|item| item.natural_key).collect();
            let rows = sqlx::query(
                "WITH m AS MATERIALIZED (
                 SELECT q.idx,
                        sl.record_uid AS linked_uid,
                        CASE WHEN sl.record_uid IS NULL AND q.natural_key IS NOT NULL THEN (
                            SELECT r.record_uid FROM records r
                            WHERE r.natural_key = q.natural_key AND r.entity = $4
                              AND NOT EXISTS (
                                  SELECT 1 FROM links x
                                  WHERE x.record_uid = r.record_uid AND x.system = $3)
                            ORDER BY r.record_uid
                            LIMIT 1)
                        END AS natural_uid
                 FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS q(source_id, natural_key, idx)
                 LEFT JOIN LATERAL (
                     SELECT record_uid FROM links
                     WHERE external_id = q.source_id AND system = $3 AND entity = $4
                     LIMIT 1
                 ) sl ON true
             ),
             u AS (
                 SELECT idx, COALESCE(linked_uid, natural_uid) AS uid, linked_uid IS NULL AS by_natural_key
                 FROM m WHERE linked_uid IS NOT NULL OR natural_uid IS NOT NULL
             )
             SELECT u.idx, u.uid AS record_uid, u.by_natural_key, tl.external_id AS target_id,
                    s.target_hash, s.last_origin, ss.target_hash AS source_hash
             FROM u
             LEFT JOIN LATERAL (
                 SELECT external_id FROM links WHERE record_uid = u.uid AND system = $5 LIMIT 1
             ) tl ON true
             LEFT JOIN LATERAL (
                 SELECT target_hash, last_origin FROM snapshots
                 WHERE record_uid = u.uid AND target_system = $5
                 LIMIT 1
             ) s ON true
             LEFT JOIN LATERAL (
                 SELECT target_hash FROM snapshots
                 WHERE record_uid = u.uid AND target_system = $3
                 LIMIT 1
             ) ss ON true",
            )
            .bind(&source_ids)
            .bind(&natural_keys)
            .bind(query.source_system)
            .bind(query.entity.as_str())
            .bind(query.target_system)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(DOING))?;
            for row in rows {
                let index = batch_index(get(&row, "idx", DOING)?, chunk.len(), "link lookup")?;
                states[offset + index] = LinkState {
                    record_uid: get(&row, "record_uid", DOING)?,
                    matched_by_natural_key: get(&row, "by_natural_key", DOING)?,
                    target_id: get(&row, "target_id", DOING)?,
                    target_hash: codec::content_hash(get(&row, "target_hash", DOING)?)?,
                    source_hash: codec::content_hash(get(&row, "source_hash", DOING)?)?,
                    last_origin: get(&row, "last_origin", DOING)?,
                };
            }
            offset += chunk.len();
        }
        Ok(states)
    }

    async fn commit_page(&self, page: &PageCommit) -> Result<Vec<RecordUid>> {
        let mut tx = self.begin().await?;
        let existing = read_existing(&mut tx, page).await?;
        let n_new = page::count_new_records(page, &existing);
        let new_uids = allocate_record_uids(&mut tx, n_new).await?;
        let plan = page::plan_page(page, &existing, &new_uids)?;
        write_plan(&mut tx, page, &plan).await?;
        write_states(&mut tx, page, &plan.record_uids).await?;
        tx.commit().await.map_err(StoreError::query("committing a page"))?;
        Ok(plan.record_uids)
    }

    async fn find_records(&self, key: &str) -> Result<Vec<RecordIdentity>> {
        const DOING: &str = "finding records";
        let rows = sqlx::query(
            "WITH found AS (
                 SELECT record_uid FROM records WHERE natural_key = $1
                 UNION
                 SELECT record_uid FROM links WHERE external_id = $1
             )
             SELECT r.record_uid, r.entity, r.natural_key, l.system, l.external_id, l.updated_at
             FROM found f
             JOIN records r ON r.record_uid = f.record_uid
             LEFT JOIN links l ON l.record_uid = r.record_uid
             ORDER BY r.record_uid, l.system",
        )
        .bind(key)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(DOING))?;
        let mut identities: Vec<RecordIdentity> = Vec::new();
        for row in rows {
            let record_uid: RecordUid = get(&row, "record_uid", DOING)?;
            if identities.last().map(|identity| identity.record_uid) != Some(record_uid) {
                identities.push(RecordIdentity {
                    record_uid,
                    entity: get(&row, "entity", DOING)?,
                    natural_key: get(&row, "natural_key", DOING)?,
                    links: Vec::new(),
                });
            }
            let system: Option<String> = get(&row, "system", DOING)?;
            if let (Some(system), Some(identity)) = (system, identities.last_mut()) {
                identity.links.push(SystemLink {
                    system,
                    external_id: get(&row, "external_id", DOING)?,
                    updated_at: get(&row, "updated_at", DOING)?,
                });
            }
        }
        Ok(identities)
    }

    /// The newest `limit` entries, returned oldest first.
    async fn record_history(&self, record_uid: RecordUid, limit: u32) -> Result<Vec<RecordLogEntry>> {
        const DOING: &str = "reading a record's history";
        let rows = sqlx::query(
            "SELECT * FROM (
                 SELECT id, run_id, flow, record_uid, source_system, source_id, target_system,
                        target_id, action, message, origin, at
                 FROM record_log WHERE record_uid = $1 ORDER BY id DESC LIMIT $2
             ) newest ORDER BY id",
        )
        .bind(record_uid)
        .bind(codec::sql_limit(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(DOING))?;
        rows.iter()
            .map(|row| {
                Ok(RecordLogEntry {
                    id: get(row, "id", DOING)?,
                    run_id: get(row, "run_id", DOING)?,
                    flow: get(row, "flow", DOING)?,
                    record_uid: get(row, "record_uid", DOING)?,
                    source_system: get(row, "source_system", DOING)?,
                    source_id: get(row, "source_id", DOING)?,
                    target_system: get(row, "target_system", DOING)?,
                    target_id: get(row, "target_id", DOING)?,
                    action: codec::record_action(&get::<String>(row, "action", DOING)?)?,
                    message: get(row, "message", DOING)?,
                    origin: get(row, "origin", DOING)?,
                    at: get(row, "at", DOING)?,
                })
            })
            .collect()
    }

    // --- runs ----------------------------------------------------------------------------------

    async fn start_run(&self, run: &NewRun) -> Result<RunId> {
        sqlx::query_scalar(
            "INSERT INTO runs (flow, triggered_by, full_sync, dry_run, status, started_at)
             VALUES ($1, $2, $3, $4, 'running', $5)
             RETURNING id",
        )
        .bind(&run.flow)
        .bind(&run.trigger)
        .bind(run.full)
        .bind(run.dry_run)
        .bind(run.started_at)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::query("starting a run"))
    }

    async fn finish_run(&self, run_id: RunId, status: RunStatus, error: Option<&str>) -> Result<()> {
        let result = sqlx::query("UPDATE runs SET status = $2, error = $3, finished_at = $4 WHERE id = $1")
            .bind(run_id)
            .bind(status.as_str())
            .bind(error)
            .bind(Utc::now())
            .execute(&self.pool)
            .await
            .map_err(StoreError::query("finishing a run"))?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "run", id: run_id });
        }
        Ok(())
    }

    async fn run(&self, run_id: RunId) -> Result<Option<Run>> {
        let row = sqlx::query(concat!("SELECT ", run_columns!(), " FROM runs WHERE id = $1"))
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query("reading a run"))?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// Newest first.
    async fn list_runs(&self, flow: Option<&str>, limit: u32) -> Result<Vec<Run>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs
             WHERE $1::text IS NULL OR flow = $1
             ORDER BY started_at DESC, id DESC
             LIMIT $2"
        ))
        .bind(flow)
        .bind(codec::sql_limit(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing runs"))?;
        rows.iter().map(run_from_row).collect()
    }

    /// Marks `running` runs started before `older_than` as `interrupted`, with an error saying
    /// so; `finished_at` stays empty, since nobody saw them finish.
    async fn interrupt_running_runs(&self, older_than: DateTime<Utc>) -> Result<u64> {
        let result = sqlx::query(
            "UPDATE runs SET status = 'interrupted', error = COALESCE(error, $2)
             WHERE status = 'running' AND started_at < $1",
        )
        .bind(older_than)
        .bind(codec::INTERRUPTED_ERROR)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("interrupting running runs"))?;
        Ok(result.rows_affected())
    }

    // --- dead letters --------------------------------------------------------------------------

    /// Most recently updated first. A `limit` of 0 means no limit.
    async fn list_dead_letters(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>> {
        let limit = (filter.limit > 0).then(|| codec::sql_limit(filter.limit));
        let rows = sqlx::query(concat!(
            "SELECT ",
            dead_letter_columns!(),
            " FROM dead_letters
             WHERE ($1::text IS NULL OR flow = $1) AND ($2::text IS NULL OR status = $2)
             ORDER BY updated_at DESC, id DESC
             LIMIT $3"
        ))
        .bind(filter.flow.as_deref())
        .bind(filter.status.map(|status| status.as_str()))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing dead letters"))?;
        rows.iter().map(dead_letter_from_row).collect()
    }

    async fn dead_letter(&self, id: DeadLetterId) -> Result<Option<DeadLetter>> {
        let row = sqlx::query(concat!("SELECT ", dead_letter_columns!(), " FROM dead_letters WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query("reading a dead letter"))?;
        row.as_ref().map(dead_letter_from_row).transpose()
    }

    /// Appends a `reopened`, `retrying`, `resolved` or `discarded` event with `note` as its
    /// detail. Reopening one while the same record has another unresolved dead letter fails.
    async fn set_dead_letter_status(&self, id: DeadLetterId, status: DeadLetterStatus, note: &str) -> Result<()> {
        let now = Utc::now();
        let event = codec::history_event(now, codec::status_event(status), note);
        let result = sqlx::query(
            "UPDATE dead_letters SET status = $2, history = history || $3, updated_at = $4
             WHERE id = $1",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(json!([event]))
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("changing a dead letter's status"))?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "dead letter", id });
        }
        Ok(())
    }

    /// Replaces the payload and appends an `edited` event with `note` as its detail.
    async fn update_dead_letter_payload(
        &self,
        id: DeadLetterId,
        payload: &serde_json::Value,
        note: &str,
    ) -> Result<()> {
        let now = Utc::now();
        let event = codec::history_event(now, "edited", note);
        let result = sqlx::query(
            "UPDATE dead_letters SET payload = $2, history = history || $3, updated_at = $4
             WHERE id = $1",
        )
        .bind(id)
        .bind(payload)
        .bind(json!([event]))
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("editing a dead letter's payload"))?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "dead letter", id });
        }
        Ok(())
    }

    /// Unresolved (open or retrying) dead letters per flow, by flow name.
    async fn count_open_dead_letters(&self) -> Result<Vec<(String, i64)>> {
        const DOING: &str = "counting open dead letters";
        let rows = sqlx::query(
            "SELECT flow, COUNT(*) AS n FROM dead_letters
             WHERE status IN ('open', 'retrying')
             GROUP BY flow ORDER BY flow",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(DOING))?;
        rows.iter().map(|row| Ok((get(row, "flow", DOING)?, get(row, "n", DOING)?))).collect()
    }

    // --- jobs ----------------------------------------------------------------------------------

    async fn enqueue_job(&self, job: &NewJob) -> Result<Option<JobId>> {
        sqlx::query_scalar(
            "INSERT INTO jobs (kind, dedupe_key, payload, state, attempts, max_attempts, run_at,
                               created_at, updated_at, key)
             VALUES ($1, $2, $3, 'pending', 0, $4, $5, $6, $6, $7)
             ON CONFLICT DO NOTHING
             RETURNING id",
        )
        .bind(&job.kind)
        .bind(job.dedupe_key.as_deref())
        .bind(&job.payload)
        .bind(job.max_attempts)
        .bind(job.run_at)
        .bind(Utc::now())
        .bind(job.key.as_deref())
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("enqueueing a job"))
    }

    /// `FOR UPDATE SKIP LOCKED`: concurrent claimers take disjoint jobs without waiting for
    /// each other. An empty `kinds` claims nothing. A job with a key is claimable only while no
    /// job of its key is running and none is pending before it: concurrent claimers that both
    /// see the key free both aim at its oldest job, which only one of them locks, and the
    /// younger jobs are not claimable while that one is pending in their snapshot.
    async fn claim_jobs(&self, worker: &str, kinds: &[&str], lease: Duration, limit: u32) -> Result<Vec<Job>> {
        if kinds.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        let rows = sqlx::query(concat!(
            "UPDATE jobs
             SET state = 'running', lease_owner = $1, lease_until = $2, updated_at = $3
             WHERE id IN (
                 SELECT id FROM jobs AS candidate
                 WHERE state = 'pending' AND run_at <= $3 AND kind = ANY($4)
                   AND (key IS NULL OR NOT EXISTS (
                       SELECT 1 FROM jobs AS other
                       WHERE other.key = candidate.key AND other.id <> candidate.id
                         AND (other.state = 'running'
                              OR (other.state = 'pending'
                                  AND (other.run_at, other.id) < (candidate.run_at, candidate.id)))))
                 ORDER BY run_at, id
                 LIMIT $5
                 FOR UPDATE SKIP LOCKED)
             RETURNING ",
            job_columns!()
        ))
        .bind(worker)
        .bind(codec::lease_end(now, lease))
        .bind(now)
        .bind(kinds)
        .bind(codec::sql_limit(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("claiming jobs"))?;
        let mut jobs = rows.iter().map(job_from_row).collect::<Result<Vec<_>>>()?;
        jobs.sort_by_key(|job| (job.run_at, job.id));
        Ok(jobs)
    }

    async fn heartbeat_job(&self, id: JobId, worker: &str, lease: Duration) -> Result<bool> {
        let now = Utc::now();
        let result = sqlx::query(
            "UPDATE jobs SET lease_until = $3, updated_at = $4
             WHERE id = $1 AND state = 'running' AND lease_owner = $2",
        )
        .bind(id)
        .bind(worker)
        .bind(codec::lease_end(now, lease))
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("extending a job lease"))?;
        Ok(result.rows_affected() == 1)
    }

    /// [`StoreError::LeaseLost`] when the job is not running under `worker`'s lease.
    async fn complete_job(&self, id: JobId, worker: &str) -> Result<()> {
        let result = sqlx::query(
            "UPDATE jobs SET state = 'done', lease_owner = NULL, lease_until = NULL,
                             updated_at = $3
             WHERE id = $1 AND state = 'running' AND lease_owner = $2",
        )
        .bind(id)
        .bind(worker)
        .bind(Utc::now())
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("completing a job"))?;
        lease_held(result.rows_affected(), id, worker)
    }

    /// Counts the attempt; pending again at `retry_at` while attempts are left, else dead.
    /// [`StoreError::LeaseLost`] when the job is not running under `worker`'s lease.
    async fn fail_job(
        &self,
        id: JobId,
        worker: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<JobState> {
        let state: Option<String> = sqlx::query_scalar(
            "UPDATE jobs
             SET attempts = attempts + 1,
                 last_error = $3,
                 state = CASE WHEN $4::timestamptz IS NOT NULL AND attempts + 1 < max_attempts
                              THEN 'pending' ELSE 'dead' END,
                 run_at = COALESCE($4, run_at),
                 lease_owner = NULL, lease_until = NULL, updated_at = $5
             WHERE id = $1 AND state = 'running' AND lease_owner = $2
             RETURNING state",
        )
        .bind(id)
        .bind(worker)
        .bind(error)
        .bind(retry_at)
        .bind(Utc::now())
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("failing a job"))?;
        match state {
            Some(state) => codec::job_state(&state),
            None => Err(StoreError::LeaseLost { id, worker: worker.to_string() }),
        }
    }

    /// [`StoreError::LeaseLost`] when the job is not running under `worker`'s lease.
    async fn release_job(&self, id: JobId, worker: &str) -> Result<()> {
        let result = sqlx::query(
            "UPDATE jobs SET state = 'pending', lease_owner = NULL, lease_until = NULL,
                             updated_at = $3
             WHERE id = $1 AND state = 'running' AND lease_owner = $2",
        )
        .bind(id)
        .bind(worker)
        .bind(Utc::now())
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("releasing a job"))?;
        lease_held(result.rows_affected(), id, worker)
    }

    /// An expired lease counts as a failed attempt (`last_error` "lease expired"): a job that
    /// kills its worker every time ends dead after `max_attempts` instead of looping forever.
    async fn reclaim_expired_jobs(&self) -> Result<u64> {
        let result = sqlx::query(
            "UPDATE jobs
             SET attempts = attempts + 1,
                 last_error = $2,
                 state = CASE WHEN attempts + 1 < max_attempts THEN 'pending' ELSE 'dead' END,
                 lease_owner = NULL, lease_until = NULL, updated_at = $1
             WHERE state = 'running' AND lease_until < $1",
        )
        .bind(Utc::now())
        .bind(codec::LEASE_EXPIRED_ERROR)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("reclaiming expired jobs"))?;
        Ok(result.rows_affected())
    }

    async fn job(&self, id: JobId) -> Result<Option<Job>> {
        let row = sqlx::query(concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query("reading a job"))?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Oldest first (by id).
    async fn list_jobs(&self, state: Option<JobState>, limit: u32) -> Result<Vec<Job>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE $1::text IS NULL OR state = $1 ORDER BY id LIMIT $2"
        ))
        .bind(state.map(|state| state.as_str()))
        .bind(codec::sql_limit(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing jobs"))?;
        rows.iter().map(job_from_row).collect()
    }

    // --- inbox ---------------------------------------------------------------------------------

    async fn insert_inbox(&self, delivery: &NewInboxDelivery) -> Result<InboxInsert> {
        let id: Option<InboxId> = sqlx::query_scalar(
            "INSERT INTO inbox (system, delivery_id, topic, headers, body, received_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (system, delivery_id) DO NOTHING
             RETURNING id",
        )
        .bind(&delivery.system)
        .bind(&delivery.delivery_id)
        .bind(&delivery.topic)
        .bind(&delivery.headers)
        .bind(&delivery.body)
        .bind(delivery.received_at)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("storing a webhook delivery"))?;
        Ok(match id {
            Some(id) => InboxInsert::Inserted(id),
            None => InboxInsert::Duplicate,
        })
    }

    /// Unprocessed deliveries, oldest first.
    async fn pending_inbox(&self, limit: u32) -> Result<Vec<InboxDelivery>> {
        const DOING: &str = "reading pending webhook deliveries";
        let rows = sqlx::query(
            "SELECT id, system, delivery_id, topic, headers, body, received_at, processed_at,
                    error
             FROM inbox WHERE processed_at IS NULL
             ORDER BY received_at, id
             LIMIT $1",
        )
        .bind(codec::sql_limit(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(DOING))?;
        rows.iter()
            .map(|row| {
                Ok(InboxDelivery {
                    id: get(row, "id", DOING)?,
                    system: get(row, "system", DOING)?,
                    delivery_id: get(row, "delivery_id", DOING)?,
                    topic: get(row, "topic", DOING)?,
                    headers: get(row, "headers", DOING)?,
                    body: get(row, "body", DOING)?,
                    received_at: get(row, "received_at", DOING)?,
                    processed_at: get(row, "processed_at", DOING)?,
                    error: get(row, "error", DOING)?,
                })
            })
            .collect()
    }

    /// Processed either way; `error` says why handling it failed.
    async fn mark_inbox_processed(&self, id: InboxId, error: Option<&str>) -> Result<()> {
        let result = sqlx::query("UPDATE inbox SET processed_at = $2, error = $3 WHERE id = $1")
            .bind(id)
            .bind(Utc::now())
            .bind(error)
            .execute(&self.pool)
            .await
            .map_err(StoreError::query("marking a webhook delivery processed"))?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "webhook delivery", id });
        }
        Ok(())
    }

    // --- audit ---------------------------------------------------------------------------------

    async fn audit(&self, entry: &NewAuditEntry) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (actor, action, target, details, at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(&entry.details)
        .bind(entry.at)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("writing the audit log"))?;
        Ok(())
    }

    /// Newest first.
    async fn list_audit(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        const DOING: &str = "reading the audit log";
        let rows = sqlx::query(
            "SELECT id, actor, action, target, details, at FROM audit_log
             ORDER BY at DESC, id DESC LIMIT $1",
        )
        .bind(codec::sql_limit(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(DOING))?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: get(row, "id", DOING)?,
                    actor: get(row, "actor", DOING)?,
                    action: get(row, "action", DOING)?,
                    target: get(row, "target", DOING)?,
                    details: get(row, "details", DOING)?,
                    at: get(row, "at", DOING)?,
                })
            })
            .collect()
    }

    // --- operations: paused flows, access tokens, filtered runs, queue depths ----------------

    async fn pause_flow(&self, pause: &FlowPause) -> Result<bool> {
        let result = sqlx::query(
            "INSERT INTO paused_flows (flow, paused_by, reason, paused_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (flow) DO NOTHING",
        )
        .bind(&pause.flow)
        .bind(&pause.paused_by)
        .bind(&pause.reason)
        .bind(pause.paused_at)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("pausing a flow"))?;
        Ok(result.rows_affected() > 0)
    }

    async fn resume_flow(&self, flow: &str) -> Result<bool> {
        let result = sqlx::query("DELETE FROM paused_flows WHERE flow = $1")
            .bind(flow)
            .execute(&self.pool)
            .await
            .map_err(StoreError::query("resuming a flow"))?;
        Ok(result.rows_affected() > 0)
    }

    async fn paused_flows(&self) -> Result<Vec<FlowPause>> {
        const DOING: &str = "reading paused flows";
        let rows = sqlx::query("SELECT flow, paused_by, reason, paused_at FROM paused_flows ORDER BY flow")
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(DOING))?;
        rows.iter()
            .map(|row| {
                Ok(FlowPause {
                    flow: get(row, "flow", DOING)?,
                    paused_by: get(row, "paused_by", DOING)?,
                    reason: get(row, "reason", DOING)?,
                    paused_at: get(row, "paused_at", DOING)?,
                })
            })
            .collect()
    }

    async fn create_api_token(&self, token: &NewApiToken) -> Result<ApiToken> {
        let inserted = sqlx::query(
            "INSERT INTO api_tokens (name, role, secret_hash, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(&token.name)
        .bind(token.role.as_str())
        .bind(token.secret_hash.as_slice())
        .bind(&token.created_by)
        .bind(token.created_at)
        .fetch_one(&self.pool)
        .await;
        let row = match inserted {
            Ok(row) => row,
            Err(error) if codec::is_unique_violation(&error) => {
                return Err(StoreError::AlreadyExists { what: "access token", name: token.name.clone() });
            }
            Err(error) => return Err(StoreError::query("creating an access token")(error)),
        };
        Ok(ApiToken {
            id: get(&row, "id", "creating an access token")?,
            name: token.name.clone(),
            role: token.role,
            secret_hash: token.secret_hash,
            created_by: token.created_by.clone(),
            created_at: codec::truncate_to_micros(token.created_at),
            revoked_at: None,
        })
    }

    async fn api_tokens(&self, include_revoked: bool) -> Result<Vec<ApiToken>> {
        const DOING: &str = "reading access tokens";
        let rows = sqlx::query(
            "SELECT id, name, role, secret_hash, created_by, created_at, revoked_at FROM api_tokens
             WHERE $1::boolean OR revoked_at IS NULL
             ORDER BY name, created_at DESC, id DESC",
        )
        .bind(include_revoked)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(DOING))?;
        rows.iter()
            .map(|row| {
                Ok(ApiToken {
                    id: get(row, "id", DOING)?,
                    name: get(row, "name", DOING)?,
                    role: codec::token_role(&get::<String>(row, "role", DOING)?)?,
                    secret_hash: codec::token_hash(get(row, "secret_hash", DOING)?)?,
                    created_by: get(row, "created_by", DOING)?,
                    created_at: get(row, "created_at", DOING)?,
                    revoked_at: get(row, "revoked_at", DOING)?,
                })
            })
            .collect()
    }

    async fn revoke_api_token(&self, name: &str, at: DateTime<Utc>) -> Result<bool> {
        let result = sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL")
            .bind(name)
            .bind(at)
            .execute(&self.pool)
            .await
            .map_err(StoreError::query("revoking an access token"))?;
        Ok(result.rows_affected() > 0)
    }

    async fn find_runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let limit = (filter.limit > 0).then(|| codec::sql_limit(filter.limit));
        let rows = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs
             WHERE ($1::text IS NULL OR flow = $1) AND ($2::text IS NULL OR status = $2)
               AND ($3::text IS NULL OR triggered_by = $3) AND ($4::bigint IS NULL OR id < $4)
             ORDER BY id DESC
             LIMIT $5"
        ))
        .bind(filter.flow.as_deref())
        .bind(filter.status.map(|status| status.as_str()))
        .bind(filter.trigger.as_deref())
        .bind(filter.before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing runs"))?;
        rows.iter().map(run_from_row).collect()
    }

    async fn queue_depths(&self) -> Result<QueueDepths> {
        const DOING: &str = "counting queued work";
        let row = sqlx::query(
            "SELECT
                (SELECT COUNT(*)::bigint FROM inbox WHERE processed_at IS NULL) AS inbox_pending,
                (SELECT COUNT(*)::bigint FROM jobs WHERE state = 'pending') AS jobs_pending,
                (SELECT COUNT(*)::bigint FROM jobs WHERE state = 'running') AS jobs_running,
                (SELECT COUNT(*)::bigint FROM jobs WHERE state = 'dead') AS jobs_dead",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::query(DOING))?;
        Ok(QueueDepths {
            inbox_pending: get(&row, "inbox_pending", DOING)?,
            jobs_pending: get(&row, "jobs_pending", DOING)?,
            jobs_running: get(&row, "jobs_running", DOING)?,
            jobs_dead: get(&row, "jobs_dead", DOING)?,
        })
    }

    // --- alerts --------------------------------------------------------------------------------

    async fn insert_alert(&self, alert: &NewAlert) -> Result<AlertId> {
        let inserted = sqlx::query(
            "INSERT INTO alerts (rule, kind, scope, summary, notify, opened_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&alert.rule)
        .bind(&alert.kind)
        .bind(&alert.scope)
        .bind(&alert.summary)
        .bind(alert.notify)
        .bind(alert.opened_at)
        .fetch_one(&self.pool)
        .await;
        match inserted {
            Ok(row) => get(&row, "id", "recording an alert"),
            Err(error) if codec::is_unique_violation(&error) => {
                Err(StoreError::AlreadyExists { what: "open alert", name: format!("{} ({})", alert.rule, alert.scope) })
            }
            Err(error) => Err(StoreError::query("recording an alert")(error)),
        }
    }

    async fn resolve_alert(&self, id: AlertId, at: DateTime<Utc>, resolution: &str) -> Result<bool> {
        let result =
            sqlx::query("UPDATE alerts SET resolved_at = $2, resolution = $3 WHERE id = $1 AND resolved_at IS NULL")
                .bind(id)
                .bind(at)
                .bind(resolution)
                .execute(&self.pool)
                .await
                .map_err(StoreError::query("resolving an alert"))?;
        Ok(result.rows_affected() > 0)
    }

    async fn record_alert_delivery(&self, id: AlertId, delivery: &AlertDelivery) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO alert_deliveries (alert_id, event, channel, ok, detail, at)
             SELECT id, $2, $3, $4, $5, $6 FROM alerts WHERE id = $1",
        )
        .bind(id)
        .bind(&delivery.event)
        .bind(&delivery.channel)
        .bind(delivery.ok)
        .bind(&delivery.detail)
        .bind(delivery.at)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("recording an alert message"))?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "alert", id });
        }
        Ok(())
    }

    async fn list_alerts(&self, filter: &AlertFilter) -> Result<Vec<Alert>> {
        const DOING: &str = "listing alerts";
        let limit = (filter.limit > 0).then(|| codec::sql_limit(filter.limit));
        let rows = sqlx::query(
            "SELECT id, rule, kind, scope, summary, notify, opened_at, resolved_at, resolution FROM alerts
             WHERE ($1::text IS NULL OR rule = $1) AND ($2::text IS NULL OR scope = $2) AND (NOT $3 OR resolved_at IS NULL)
             ORDER BY id DESC
             LIMIT $4",
        )
        .bind(filter.rule.as_deref())
        .bind(filter.scope.as_deref())
        .bind(filter.open_only)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(DOING))?;
        let mut alerts = rows
            .iter()
            .map(|row| {
                Ok(Alert {
                    id: get(row, "id", DOING)?,
                    rule: get(row, "rule", DOING)?,
                    kind: get(row, "kind", DOING)?,
                    scope: get(row, "scope", DOING)?,
                    summary: get(row, "summary", DOING)?,
                    notify: get(row, "notify", DOING)?,
                    opened_at: get(row, "opened_at", DOING)?,
                    resolved_at: get(row, "resolved_at", DOING)?,
                    resolution: get(row, "resolution", DOING)?,
                    deliveries: Vec::new(),
                })
            })
            .collect::<Result<Vec<Alert>>>()?;
        let (Some(low), Some(high)) =
            (alerts.iter().map(|alert| alert.id).min(), alerts.iter().map(|alert| alert.id).max())
        else {
            return Ok(alerts);
        };
        // One query for the messages of every listed incident: those in the id range, sorted out
        // below (the range may hold incidents the filter left out).
        let rows = sqlx::query(
            "SELECT alert_id, event, channel, ok, detail, at FROM alert_deliveries
             WHERE alert_id BETWEEN $1 AND $2 ORDER BY alert_id, id",
        )
        .bind(low)
        .bind(high)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(DOING))?;
        let mut by_alert: HashMap<AlertId, Vec<AlertDelivery>> = HashMap::new();
        for row in &rows {
            by_alert.entry(get(row, "alert_id", DOING)?).or_default().push(AlertDelivery {
                event: get(row, "event", DOING)?,
                channel: get(row, "channel", DOING)?,
                ok: get(row, "ok", DOING)?,
                detail: get(row, "detail", DOING)?,
                at: get(row, "at", DOING)?,
            });
        }
        for alert in &mut alerts {
            alert.deliveries = by_alert.remove(&alert.id).unwrap_or_default();
        }
        Ok(alerts)
    }
}

fn lease_held(rows_affected: u64, id: JobId, worker: &str) -> Result<()> {
    if rows_affected == 0 {
        return Err(StoreError::LeaseLost { id, worker: worker.to_string() });
    }
    Ok(())
}

// --- page commit -------------------------------------------------------------------------------

/// Reads, in one query, what the store holds for every outcome of the page (see
/// [`ExistingState`]).
async fn read_existing(tx: &mut Transaction<'static, Postgres>, page: &PageCommit) -> Result<Vec<ExistingState>> {
    const DOING: &str = "reading the links of a page";
    if page.outcomes.is_empty() {
        return Ok(Vec::new());
    }
    let differences_only = page::can_read_differences_only(page);
    let outcome_bytes = |outcome: &RecordOutcome| {
        outcome.source_id.len()
            + text_len(outcome.natural_key.as_deref())
            + text_len(outcome.target_id.as_deref())
            + text_len(outcome.origin.as_deref())
            + 48
    };
    let mut states: Vec<Option<ExistingState>> = vec![None; page.outcomes.len()];
    let mut offset = 0;
    for outcomes in chunks_by_size(&page.outcomes, outcome_bytes) {
        let changes: Vec<SnapshotChange<'_>> = outcomes.iter().map(SnapshotChange::of).collect();
        let source_ids: Vec<&str> = outcomes.iter().map(|outcome| outcome.source_id.as_str()).collect();
        let given_uids: Vec<Option<RecordUid>> = outcomes.iter().map(|outcome| outcome.record_uid).collect();
        let natural_keys: Vec<Option<&str>> = outcomes.iter().map(|outcome| outcome.natural_key.as_deref()).collect();
        let target_ids: Vec<Option<&str>> = outcomes.iter().map(|outcome| outcome.target_id.as_deref()).collect();
        let set_hashes: Vec<bool> = changes.iter().map(|change| change.hash.is_some()).collect();
        let hashes: Vec<Option<&[u8]>> = changes.iter().map(|change| change.hash.flatten()).collect();
        let origins: Vec<Option<&str>> = changes.iter().map(|change| change.origin).collect();
        // With `$6` (differences only), an outcome is returned only when something it says
        // differs from what is stored; see `page::can_read_differences_only`.
        let rows = sqlx::query(
            "WITH e AS MATERIALIZED (
             SELECT q.*, sl.record_uid AS source_link_uid, COALESCE(q.given_uid, sl.record_uid) AS uid
             FROM unnest($1::text[], $2::int8[], $7::text[], $8::text[], $9::bool[], $10::bytea[], $11::text[])
                 WITH ORDINALITY
                 AS q(source_id, given_uid, natural_key, target_id, set_hash, target_hash, origin, idx)
             LEFT JOIN LATERAL (
                 SELECT record_uid FROM links WHERE external_id = q.source_id AND system = $3 AND entity = $4
                 LIMIT 1
             ) sl ON true
         )
         SELECT e.idx, e.source_link_uid, (r.record_uid IS NOT NULL) AS record_found,
                r.natural_key, tl.external_id AS target_id, s.target_hash, s.last_origin
         FROM e
         LEFT JOIN LATERAL (SELECT record_uid, natural_key FROM records WHERE record_uid = e.uid LIMIT 1) r ON true
         LEFT JOIN LATERAL (
             SELECT external_id FROM links WHERE record_uid = e.uid AND system = $5 LIMIT 1
         ) tl ON true
         LEFT JOIN LATERAL (
             SELECT target_hash, last_origin FROM snapshots WHERE record_uid = e.uid AND target_system = $5 LIMIT 1
         ) s ON true
         WHERE NOT $6
            OR e.given_uid IS NULL
            OR e.source_link_uid IS DISTINCT FROM e.given_uid
            OR r.record_uid IS NULL
            OR (e.natural_key IS NOT NULL AND r.natural_key IS DISTINCT FROM e.natural_key)
            OR (e.target_id IS NOT NULL AND tl.external_id IS DISTINCT FROM e.target_id)
            OR (e.set_hash AND s.target_hash IS DISTINCT FROM e.target_hash)
            OR (e.origin IS NOT NULL AND s.last_origin IS DISTINCT FROM e.origin)",
        )
        .bind(&source_ids)
        .bind(&given_uids)
        .bind(&page.source_system)
        .bind(page.entity.as_str())
        .bind(&page.target_system)
        .bind(differences_only)
        .bind(&natural_keys)
        .bind(&target_ids)
        .bind(&set_hashes)
        .bind(&hashes)
        .bind(&origins)
        .fetch_all(&mut **tx)
        .await
        .map_err(StoreError::query(DOING))?;
        for row in rows {
            let index = batch_index(get(&row, "idx", DOING)?, outcomes.len(), "page links")?;
            states[offset + index] = Some(ExistingState {
                source_link_uid: get(&row, "source_link_uid", DOING)?,
                record_found: get(&row, "record_found", DOING)?,
                natural_key: get(&row, "natural_key", DOING)?,
                target_id: get(&row, "target_id", DOING)?,
                target_hash: get(&row, "target_hash", DOING)?,
                last_origin: get(&row, "last_origin", DOING)?,
            });
        }
        offset += outcomes.len();
    }
    Ok(states
        .into_iter()
        .zip(&page.outcomes)
        .map(|(state, outcome)| match state {
            Some(state) => state,
            None if differences_only => page::assumed_state(outcome),
            None => ExistingState::default(),
        })
        .collect())
}

/// New record identities from the sequence, in one round trip.
async fn allocate_record_uids(tx: &mut Transaction<'static, Postgres>, count: usize) -> Result<Vec<RecordUid>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    let mut uids: Vec<RecordUid> = sqlx::query_scalar("SELECT nextval('record_uid_seq') FROM generate_series(1, $1)")
        .bind(count)
        .fetch_all(&mut **tx)
        .await
        .map_err(StoreError::query("allocating record identities"))?;
    uids.sort_unstable();
    Ok(uids)
}

async fn write_states(tx: &mut Transaction<'static, Postgres>, page: &PageCommit, uids: &[RecordUid]) -> Result<()> {
    if page.states.is_empty() {
        return Ok(());
    }
    let mut record_uids = Vec::with_capacity(page.states.len());
    let mut systems = Vec::with_capacity(page.states.len());
    let mut payloads = Vec::with_capacity(page.states.len());
    for state in &page.states {
        if let Some(uid) = uids.get(state.outcome) {
            record_uids.push(*uid);
            systems.push(state.system.as_str());
            payloads.push(sqlx::types::Json(&state.payload));
        }
    }
    sqlx::query(
        "INSERT INTO record_states (record_uid, system, payload, updated_at)
         SELECT u.record_uid, u.system, u.payload, $4::timestamptz
         FROM UNNEST($1::bigint[], $2::text[], $3::jsonb[]) AS u (record_uid, system, payload)
         ON CONFLICT (record_uid, system) DO UPDATE SET payload = excluded.payload, updated_at = excluded.updated_at",
    )
    .bind(&record_uids)
    .bind(&systems)
    .bind(&payloads)
    .bind(page.at)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::query("storing record states"))?;
    Ok(())
}

async fn write_plan(tx: &mut Transaction<'static, Postgres>, page: &PageCommit, plan: &PagePlan) -> Result<()> {
    let entity = page.entity.as_str();

    for chunk in chunks_by_size(&plan.new_records, |(_, natural_key)| 8 + text_len(natural_key.as_deref())) {
        let (uids, natural_keys): (Vec<RecordUid>, Vec<Option<&str>>) =
            chunk.iter().map(|(uid, natural_key)| (*uid, natural_key.as_deref())).unzip();
        sqlx::query(
            "INSERT INTO records (record_uid, entity, natural_key, created_at)
             SELECT u.record_uid, $3, u.natural_key, $4
             FROM unnest($1::int8[], $2::text[]) AS u(record_uid, natural_key)",
        )
        .bind(&uids)
        .bind(&natural_keys)
        .bind(entity)
        .bind(page.at)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("creating records"))?;
    }

    for chunk in chunks_by_size(&plan.natural_key_updates, |(_, natural_key)| 8 + natural_key.len()) {
        let (uids, natural_keys): (Vec<RecordUid>, Vec<&str>) =
            chunk.iter().map(|(uid, natural_key)| (*uid, natural_key.as_str())).unzip();
        sqlx::query(
            "UPDATE records r SET natural_key = u.natural_key
             FROM unnest($1::int8[], $2::text[]) AS u(record_uid, natural_key)
             WHERE r.record_uid = u.record_uid",
        )
        .bind(&uids)
        .bind(&natural_keys)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("updating natural keys"))?;
    }

    // Replace what conflicts: another record's link with the same external id, and this
    // record's link in the same system with another external id, each only for the links that
    // may conflict. The rows are found by index probes in a `LATERAL` subquery and deleted by
    // `ctid` (a TID scan), so the plan stays an index lookup per link even before the tables
    // were first analyzed (see `lookup_links`). All deletes go before all inserts.
    let link_bytes = |link: &LinkWrite| 8 + link.system.len() + link.external_id.len();
    let replacing_external: Vec<LinkWrite> =
        plan.links.iter().filter(|link| link.may_replace_external).cloned().collect();
    for chunk in chunks_by_size(&replacing_external, link_bytes) {
        let (systems, external_ids): (Vec<&str>, Vec<&str>) =
            chunk.iter().map(|link| (link.system.as_str(), link.external_id.as_str())).unzip();
        sqlx::query(
            "DELETE FROM links WHERE ctid = ANY(ARRAY(
                 SELECT l.ctid FROM unnest($1::text[], $2::text[]) AS w(system, external_id)
                 CROSS JOIN LATERAL (
                     SELECT ctid FROM links
                     WHERE external_id = w.external_id AND system = w.system AND entity = $3
                     LIMIT 1
                 ) l))",
        )
        .bind(&systems)
        .bind(&external_ids)
        .bind(entity)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("replacing links"))?;
    }
    let replacing_record: Vec<LinkWrite> = plan.links.iter().filter(|link| link.may_replace_record).cloned().collect();
    for chunk in chunks_by_size(&replacing_record, link_bytes) {
        let (uids, systems): (Vec<RecordUid>, Vec<&str>) =
            chunk.iter().map(|link| (link.record_uid, link.system.as_str())).unzip();
        sqlx::query(
            "DELETE FROM links WHERE ctid = ANY(ARRAY(
                 SELECT l.ctid FROM unnest($1::int8[], $2::text[]) AS w(record_uid, system)
                 CROSS JOIN LATERAL (
                     SELECT ctid FROM links WHERE record_uid = w.record_uid AND system = w.system
                     LIMIT 1
                 ) l))",
        )
        .bind(&uids)
        .bind(&systems)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("replacing links"))?;
    }
    for chunk in chunks_by_size(&plan.links, link_bytes) {
        let uids: Vec<RecordUid> = chunk.iter().map(|link| link.record_uid).collect();
        let systems: Vec<&str> = chunk.iter().map(|link| link.system.as_str()).collect();
        let external_ids: Vec<&str> = chunk.iter().map(|link| link.external_id.as_str()).collect();
        sqlx::query(
            "INSERT INTO links (record_uid, system, entity, external_id, updated_at)
             SELECT w.record_uid, w.system, $4, w.external_id, $5
             FROM unnest($1::int8[], $2::text[], $3::text[]) AS w(record_uid, system, external_id)
             ON CONFLICT DO NOTHING",
        )
        .bind(&uids)
        .bind(&systems)
        .bind(&external_ids)
        .bind(entity)
        .bind(page.at)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("storing links"))?;
    }

    let snapshot_bytes = |snapshot: &SnapshotWrite| 8 + 32 + text_len(snapshot.last_origin.as_deref());
    for chunk in chunks_by_size(&plan.snapshots, snapshot_bytes) {
        let uids: Vec<RecordUid> = chunk.iter().map(|snapshot| snapshot.record_uid).collect();
        let hashes: Vec<Option<&[u8]>> = chunk.iter().map(|snapshot| snapshot.target_hash.as_deref()).collect();
        let origins: Vec<Option<&str>> = chunk.iter().map(|snapshot| snapshot.last_origin.as_deref()).collect();
        sqlx::query(
            "INSERT INTO snapshots (record_uid, target_system, target_hash, last_origin, updated_at)
             SELECT u.record_uid, $4, u.target_hash, u.last_origin, $5
             FROM unnest($1::int8[], $2::bytea[], $3::text[]) AS u(record_uid, target_hash, last_origin)
             ON CONFLICT (record_uid, target_system) DO UPDATE
             SET target_hash = excluded.target_hash,
                 last_origin = excluded.last_origin,
                 updated_at = excluded.updated_at",
        )
        .bind(&uids)
        .bind(&hashes)
        .bind(&origins)
        .bind(&page.target_system)
        .bind(page.at)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("storing snapshots"))?;
    }

    let log_bytes = |index: &usize| {
        let outcome = &page.outcomes[*index];
        8 + outcome.source_id.len()
            + text_len(outcome.target_id.as_deref())
            + 10
            + text_len(outcome.message.as_deref())
            + text_len(outcome.origin.as_deref())
    };
    for chunk in chunks_by_size(&plan.log, log_bytes) {
        let mut uids = Vec::with_capacity(chunk.len());
        let mut source_ids = Vec::with_capacity(chunk.len());
        let mut target_ids = Vec::with_capacity(chunk.len());
        let mut actions = Vec::with_capacity(chunk.len());
        let mut messages = Vec::with_capacity(chunk.len());
        let mut origins = Vec::with_capacity(chunk.len());
        for &index in chunk {
            let outcome = &page.outcomes[index];
            uids.push(plan.record_uids[index]);
            source_ids.push(outcome.source_id.as_str());
            target_ids.push(outcome.target_id.as_deref());
            actions.push(outcome.action.as_str());
            messages.push(outcome.message.as_deref());
            origins.push(outcome.origin.as_deref());
        }
        sqlx::query(
            "INSERT INTO record_log (run_id, flow, record_uid, source_system, source_id,
                                     target_system, target_id, action, message, origin, at)
             SELECT $7, $8, u.record_uid, $9, u.source_id, $10, u.target_id, u.action,
                    u.message, u.origin, $11
             FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                 AS u(record_uid, source_id, target_id, action, message, origin)",
        )
        .bind(&uids)
        .bind(&source_ids)
        .bind(&target_ids)
        .bind(&actions)
        .bind(&messages)
        .bind(&origins)
        .bind(page.run_id)
        .bind(&page.flow)
        .bind(&page.source_system)
        .bind(&page.target_system)
        .bind(page.at)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("writing the record log"))?;
    }

    if !plan.dead_letters.is_empty() {
        write_dead_letters(tx, page, plan).await?;
    }

    if let Some(checkpoint) = &page.checkpoint {
        upsert_checkpoint(tx, &page.flow, &page.source_system, checkpoint, page.at).await?;
    }

    // Last, so that a missing run undoes everything above.
    add_run_counts(tx, page.run_id, &plan.counts).await
}

async fn write_dead_letters(tx: &mut Transaction<'static, Postgres>, page: &PageCommit, plan: &PagePlan) -> Result<()> {
    const DOING: &str = "reading unresolved dead letters";
    if !plan.has_failures() {
        // Successes only: nothing to do unless the flow has unresolved dead letters at all.
        let any_unresolved: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM dead_letters
                            WHERE flow = $1 AND target_system = $2 AND status IN ('open', 'retrying'))",
        )
        .bind(&page.flow)
        .bind(&page.target_system)
        .fetch_one(&mut **tx)
        .await
        .map_err(StoreError::query(DOING))?;
        if !any_unresolved {
            return Ok(());
        }
    }
    let source_ids = plan.dead_letter_source_ids(page);
    let mut unresolved: HashMap<String, DeadLetterId> = HashMap::new();
    for chunk in chunks_by_size(&source_ids, |source_id| source_id.len()) {
        let rows = sqlx::query(
            "SELECT id, source_id FROM dead_letters
             WHERE flow = $1 AND target_system = $2 AND status IN ('open', 'retrying')
               AND source_id = ANY($3)",
        )
        .bind(&page.flow)
        .bind(&page.target_system)
        .bind(chunk)
        .fetch_all(&mut **tx)
        .await
        .map_err(StoreError::query(DOING))?;
        for row in rows {
            unresolved.insert(get(&row, "source_id", DOING)?, get(&row, "id", DOING)?);
        }
    }
    for op in &plan.dead_letters {
        match *op {
            DeadLetterOp::Fail(index) => {
                let outcome = &page.outcomes[index];
                let Some(dead_letter) = &outcome.dead_letter else {
                    continue;
                };
                let event = codec::history_event(page.at, "failed", &dead_letter.error);
                match unresolved.get(&outcome.source_id) {
                    Some(&id) => {
                        sqlx::query(
                            "UPDATE dead_letters
                             SET status = 'open', error_kind = $2, error = $3, payload = $4,
                                 record_uid = $5, natural_key = COALESCE($6, natural_key),
                                 origin = COALESCE($7, origin), attempts = attempts + 1,
                                 history = history || $8, updated_at = $9
                             WHERE id = $1",
                        )
                        .bind(id)
                        .bind(&dead_letter.error_kind)
                        .bind(&dead_letter.error)
                        .bind(&dead_letter.payload)
                        .bind(plan.record_uids[index])
                        .bind(outcome.natural_key.as_deref())
                        .bind(outcome.origin.as_deref())
                        .bind(json!([event]))
                        .bind(page.at)
                        .execute(&mut **tx)
                        .await
                        .map_err(StoreError::query("updating a dead letter"))?;
                    }
                    None => {
                        let id: DeadLetterId = sqlx::query_scalar(
                            "INSERT INTO dead_letters (flow, entity, source_system, source_id,
                                 target_system, record_uid, natural_key, origin, status,
                                 error_kind, error, payload, history, attempts, created_at,
                                 updated_at)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', $9, $10, $11, $12,
                                     1, $13, $13)
                             RETURNING id",
                        )
                        .bind(&page.flow)
                        .bind(page.entity.as_str())
                        .bind(&page.source_system)
                        .bind(&outcome.source_id)
                        .bind(&page.target_system)
                        .bind(plan.record_uids[index])
                        .bind(outcome.natural_key.as_deref())
                        .bind(outcome.origin.as_deref())
                        .bind(&dead_letter.error_kind)
                        .bind(&dead_letter.error)
                        .bind(&dead_letter.payload)
                        .bind(json!([event]))
                        .bind(page.at)
                        .fetch_one(&mut **tx)
                        .await
                        .map_err(StoreError::query("creating a dead letter"))?;
                        unresolved.insert(outcome.source_id.clone(), id);
                    }
                }
            }
            DeadLetterOp::Resolve(index) => {
                let outcome = &page.outcomes[index];
                let Some(id) = unresolved.remove(&outcome.source_id) else {
                    continue;
                };
                let event = codec::history_event(
                    page.at,
                    "resolved",
                    &format!("{} by run {}", outcome.action.as_str(), page.run_id),
                );
                sqlx::query(
                    "UPDATE dead_letters
                     SET status = 'resolved', history = history || $2, updated_at = $3
                     WHERE id = $1",
                )
                .bind(id)
                .bind(json!([event]))
                .bind(page.at)
                .execute(&mut **tx)
                .await
                .map_err(StoreError::query("resolving a dead letter"))?;
            }
        }
    }
    Ok(())
}

async fn upsert_checkpoint(
    tx: &mut Transaction<'static, Postgres>,
    flow: &str,
    source_system: &str,
    checkpoint: &Checkpoint,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO checkpoints (flow, source_system, watermark, cursor, updated_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (flow, source_system) DO UPDATE
         SET watermark = excluded.watermark, cursor = excluded.cursor,
             updated_at = excluded.updated_at",
    )
    .bind(flow)
    .bind(source_system)
    .bind(checkpoint.watermark)
    .bind(checkpoint.cursor.as_deref())
    .bind(at)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::query("storing a checkpoint"))?;
    Ok(())
}

async fn add_run_counts(tx: &mut Transaction<'static, Postgres>, run_id: RunId, counts: &RunCounts) -> Result<()> {
    let result = sqlx::query(
        "UPDATE runs
         SET count_read = count_read + $2, count_created = count_created + $3,
             count_updated = count_updated + $4, count_unchanged = count_unchanged + $5,
             count_skipped = count_skipped + $6, count_failed = count_failed + $7,
             count_deleted = count_deleted + $8
         WHERE id = $1",
    )
    .bind(run_id)
    .bind(counts.read)
    .bind(counts.created)
    .bind(counts.updated)
    .bind(counts.unchanged)
    .bind(counts.skipped)
    .bind(counts.failed)
    .bind(counts.deleted)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::query("adding to a run's counts"))?;
    if result.rows_affected() == 0 {
        return Err(StoreError::NotFound { what: "run", id: run_id });
    }
    Ok(())
}

// --- rows --------------------------------------------------------------------------------------

fn run_from_row(row: &PgRow) -> Result<Run> {
    const DOING: &str = "reading a run";
    Ok(Run {
        id: get(row, "id", DOING)?,
        flow: get(row, "flow", DOING)?,
        trigger: get(row, "triggered_by", DOING)?,
        full: get(row, "full_sync", DOING)?,
        dry_run: get(row, "dry_run", DOING)?,
        status: codec::run_status(&get::<String>(row, "status", DOING)?)?,
        counts: RunCounts {
            read: get(row, "count_read", DOING)?,
            created: get(row, "count_created", DOING)?,
            updated: get(row, "count_updated", DOING)?,
            unchanged: get(row, "count_unchanged", DOING)?,
            skipped: get(row, "count_skipped", DOING)?,
            failed: get(row, "count_failed", DOING)?,
            deleted: get(row, "count_deleted", DOING)?,
        },
        error: get(row, "error", DOING)?,
        started_at: get(row, "started_at", DOING)?,
        finished_at: get(row, "finished_at", DOING)?,
    })
}

fn dead_letter_from_row(row: &PgRow) -> Result<DeadLetter> {
    const DOING: &str = "reading a dead letter";
    Ok(DeadLetter {
        id: get(row, "id", DOING)?,
        flow: get(row, "flow", DOING)?,
        entity: get(row, "entity", DOING)?,
        source_system: get(row, "source_system", DOING)?,
        source_id: get(row, "source_id", DOING)?,
        target_system: get(row, "target_system", DOING)?,
        record_uid: get(row, "record_uid", DOING)?,
        natural_key: get(row, "natural_key", DOING)?,
        origin: get(row, "origin", DOING)?,
        status: codec::dead_letter_status(&get::<String>(row, "status", DOING)?)?,
        error_kind: get(row, "error_kind", DOING)?,
        error: get(row, "error", DOING)?,
        payload: get(row, "payload", DOING)?,
        history: codec::history_from_json(get(row, "history", DOING)?)?,
        attempts: get(row, "attempts", DOING)?,
        created_at: get(row, "created_at", DOING)?,
        updated_at: get(row, "updated_at", DOING)?,
    })
}

fn job_from_row(row: &PgRow) -> Result<Job> {
    const DOING: &str = "reading a job";
    Ok(Job {
        id: get(row, "id", DOING)?,
        kind: get(row, "kind", DOING)?,
        dedupe_key: get(row, "dedupe_key", DOING)?,
        payload: get(row, "payload", DOING)?,
        state: codec::job_state(&get::<String>(row, "state", DOING)?)?,
        attempts: get(row, "attempts", DOING)?,
        max_attempts: get(row, "max_attempts", DOING)?,
        run_at: get(row, "run_at", DOING)?,
        lease_owner: get(row, "lease_owner", DOING)?,
        lease_until: get(row, "lease_until", DOING)?,
        last_error: get(row, "last_error", DOING)?,
        created_at: get(row, "created_at", DOING)?,
        updated_at: get(row, "updated_at", DOING)?,
    })
}

#[cfg(test)]
mod tests {
    use super::{MAX_BATCH_BYTES, chunks_by_size, redact_password};

    #[test]
    fn batches_are_split_by_size() {
        let items: Vec<String> = (0..1000).map(|i| format!("{i:0>40}")).collect();
        let chunks = chunks_by_size(&items, String::len);
        assert!(chunks.len() > 1);
        assert_eq!(chunks.iter().map(|chunk| chunk.len()).sum::<usize>(), 1000);
        assert!(chunks.iter().all(|chunk| chunk.len() * 56 <= MAX_BATCH_BYTES));
        let huge = vec!["x".repeat(MAX_BATCH_BYTES * 2), "y".to_string()];
        assert_eq!(chunks_by_size(&huge, String::len).len(), 2);
        assert!(chunks_by_size(&Vec::<String>::new(), String::len).is_empty());
    }

    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(redact_password("postgres://app:secret@db:5432/erpsync"), "postgres://app:***@db:5432/erpsync");
        assert_eq!(redact_password("postgres://postgres@127.0.0.1/test"), "postgres://postgres@127.0.0.1/test");
    }
}
