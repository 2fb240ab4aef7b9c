//! SQLite store: the embedded default, one file in the data directory.
//!
//! Durability: WAL mode with `synchronous = FULL`, so a committed page survives `kill -9` and a
//! power cut. Concurrency: SQLite allows one writer at a time, so all writes go through a pool of
//! exactly one connection and every write transaction starts with `BEGIN IMMEDIATE` (it takes the
//! write lock up front instead of failing to upgrade later when another process wrote); reads use
//! a small separate pool and never wait for writers. Timestamps are INTEGER microseconds (UTC).
//!
//! Batches: the two reads of the hot path (`lookup_links` and the read of `commit_page`) bind
//! the page as a `VALUES` list of parameters (see [`BatchSql`]) and return their result as one
//! JSON array, because sqlx's cost per bound JSON field and per returned row is several times
//! SQLite's own work. The rarer writes of a commit pass their rows as one JSON array expanded
//! with `json_each`, which keeps one constant statement whatever the page size.

use crate::codec::{self, from_micros, from_micros_opt, micros};
use crate::page::{self, DeadLetterOp, ExistingState, PagePlan, SnapshotChange};
use crate::{
    Alert, AlertDelivery, AlertFilter, AlertId, ApiToken, AuditEntry, DeadLetter, DeadLetterFilter, DeadLetterId,
    DeadLetterStatus, FlowPause, InboxDelivery, InboxId, InboxInsert, Job, JobId, JobState, LinkQuery, LinkState,
    LinkedRecord, NewAlert, NewApiToken, NewAuditEntry, NewInboxDelivery, NewJob, NewRun, PageCommit, QueueDepths,
    RecordIdentity, RecordLogEntry, RecordUid, Result, Run, RunCounts, RunFilter, RunId, RunStatus, Store, StoreError,
    StoredSchedule, SystemLink, migrations,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use erpsync_model::{Checkpoint, EntityKind};
use serde_json::json;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// Connections of the read pool. Reads in WAL mode run in parallel with the writer; a flow
/// runs one lookup at a time, so two are enough, and each costs its page cache in memory.
const READ_CONNECTIONS: u32 = 2;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Page cache per connection, in KiB (negative: a size, not a page count). SQLite's default of
/// 2 MiB makes every link lookup of a large catalog a system call; 16 MiB keeps the hot part of
/// the link indexes in memory while bounding the store's share of resident memory (three
/// connections: 48 MiB at most) whatever the catalog size.
const CACHE_SIZE: &str = "-16384";

pub struct SqliteStore {
    /// Exactly one connection: SQLite has one writer at a time.
    writer: SqlitePool,
    reader: SqlitePool,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish()
    }
}

impl SqliteStore {
    /// Opens the database at `path`, creating its directory and file when missing, and applies
    /// pending migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let location = path.display().to_string();
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|error| StoreError::Open { location: location.clone(), source: sqlx::Error::Io(error) })?;
        }
        // Processes started together (a scheduler and a worker on one data directory) would
        // race to switch a new file to WAL and to apply the same migrations: SQLite answers the
        // loser "database is locked" without waiting. An exclusive lock on a file beside the
        // database makes opening and migrating one process at a time; it is released when
        // `_opening` is dropped at the end of this function.
        let _opening = lock_for_opening(path)
            .await
            .map_err(|error| StoreError::Open { location: location.clone(), source: sqlx::Error::Io(error) })?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .pragma("cache_size", CACHE_SIZE);
        let open_error = |source| StoreError::Open { location: location.clone(), source };
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(open_error)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(open_error)?;
        let store = SqliteStore { writer, reader, path: path.to_path_buf() };
        store.migrate().await?;
        Ok(store)
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Begins a write transaction holding SQLite's write lock from the start.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(StoreError::query("beginning a write transaction"))
    }
}

/// Reads a column, naming what was being read on failure.
fn get<'r, T>(row: &'r SqliteRow, column: &str, doing: &'static str) -> Result<T>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(column).map_err(StoreError::query(doing))
}

fn bool_column(row: &SqliteRow, column: &str, doing: &'static str) -> Result<bool> {
    Ok(get::<i64>(row, column, doing)? != 0)
}

/// Serializes a batch for `json_each`. Serializing plain tuples and strings cannot fail.
fn json_batch(value: &serde_json::Value) -> String {
    value.to_string()
}

/// Most items bound in one statement: 1024 rows of at most 8 values stay well under SQLite's
/// limit of 32766 parameters. Larger pages are read in several statements.
const MAX_BATCH_ROWS: usize = 1024;

/// A query over a page of items, bound as a `VALUES` list of parameters: cheaper than passing
/// the page as JSON and taking every field apart with `json_extract` (about a microsecond per
/// item and field). The list is padded with rows of NULLs (whose `idx` is NULL) to the next
/// power of two, so each query has at most 11 shapes, each one cached prepared statement.
///
/// All parameters are anonymous `?`, bound in the order they appear in the text: the query's
/// fixed parameters first (in a leading CTE `p`), then the items. Numbered parameters would be
/// quadratic here, since looking up the name of parameter `i` scans all names in SQLite.
struct BatchSql {
    /// The query, with `{items}` where the `VALUES` list goes.
    template: &'static str,
    /// Values per item.
    columns: usize,
    shapes: OnceLock<Vec<String>>,
}

impl BatchSql {
    const fn new(template: &'static str, columns: usize) -> Self {
        BatchSql { template, columns, shapes: OnceLock::new() }
    }

    /// The statement for `n_items` items (at most [`MAX_BATCH_ROWS`]) and the number of rows to
    /// bind, padding included.
    fn sql(&'static self, n_items: usize) -> (&'static str, usize) {
        let shapes = self.shapes.get_or_init(|| {
            let mut shapes = Vec::new();
            let mut rows = 1;
            while rows <= MAX_BATCH_ROWS {
                shapes.push(self.template.replace("{items}", &values_list(self.columns, rows)));
                rows *= 2;
            }
            shapes
        });
        let rows = n_items.clamp(1, MAX_BATCH_ROWS).next_power_of_two();
        (shapes[rows.trailing_zeros() as usize].as_str(), rows)
    }
}

/// `VALUES (?, ?), (?, ?)` for 2 rows of 2 columns.
fn values_list(columns: usize, rows: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    format!("VALUES {}", vec![row; rows].join(", "))
}

/// `lookup_links`: fixed source system, entity, target system; items `(idx, source_id,
/// natural_key)`.
///
/// `m` is materialized so that the natural-key subquery runs once per item, not once per
/// reference to `natural_uid`. The result is one JSON array of the found items, since sqlx's
/// cost per returned row is higher than SQLite's for the whole lookup.
static LOOKUP_LINKS: BatchSql = BatchSql::new(
    "WITH p(source_system, entity, target_system) AS (SELECT ?, ?, ?),
     q(idx, source_id, natural_key) AS ({items}),
     m AS MATERIALIZED (
         SELECT q.idx,
                sl.record_uid AS linked_uid,
                CASE WHEN sl.record_uid IS NULL AND q.natural_key IS NOT NULL THEN (
                    SELECT r.record_uid FROM records r
                    WHERE r.natural_key = q.natural_key AND r.entity = p.entity
                      AND NOT EXISTS (
                          SELECT 1 FROM links x
                          WHERE x.record_uid = r.record_uid AND x.system = p.source_system)
                    ORDER BY r.record_uid
                    LIMIT 1)
                END AS natural_uid
         FROM p
         CROSS JOIN q
         LEFT JOIN links sl
           ON sl.external_id = q.source_id AND sl.system = p.source_system AND sl.entity = p.entity
         WHERE q.idx IS NOT NULL
     ),
     u AS (
         SELECT idx, COALESCE(linked_uid, natural_uid) AS uid, linked_uid IS NULL AS by_natural_key
         FROM m WHERE linked_uid IS NOT NULL OR natural_uid IS NOT NULL
     )
     SELECT json_group_array(json_array(
         u.idx, u.uid, u.by_natural_key, tl.external_id, nullif(hex(s.target_hash), ''), s.last_origin,
         nullif(hex(ss.target_hash), '')))
     FROM p
     CROSS JOIN u
     LEFT JOIN links tl ON tl.record_uid = u.uid AND tl.system = p.target_system
     LEFT JOIN snapshots s ON s.record_uid = u.uid AND s.target_system = p.target_system
     LEFT JOIN snapshots ss ON ss.record_uid = u.uid AND ss.target_system = p.source_system",
    3,
);

/// The read of `commit_page`: fixed source system, entity, target system, differences only;
/// items `(idx, source_id, given_uid, natural_key, target_id, set_hash, target_hash, origin)` as
/// [`SnapshotChange`] describes them.
///
/// With differences only, an outcome is returned only when something it says differs from
/// what is stored (see `page::can_read_differences_only`), so an unchanged page returns `[]`.
static READ_EXISTING: BatchSql = BatchSql::new(
    "WITH p(source_system, entity, target_system, differences_only) AS (SELECT ?, ?, ?, ?),
     q(idx, source_id, given_uid, natural_key, target_id, set_hash, target_hash, origin) AS ({items}),
     e AS MATERIALIZED (
         SELECT q.*, sl.record_uid AS source_link_uid, COALESCE(q.given_uid, sl.record_uid) AS uid
         FROM p
         CROSS JOIN q
         LEFT JOIN links sl
           ON sl.external_id = q.source_id AND sl.system = p.source_system AND sl.entity = p.entity
         WHERE q.idx IS NOT NULL
     )
     SELECT json_group_array(json_array(
         e.idx, e.source_link_uid, r.record_uid IS NOT NULL, r.natural_key, tl.external_id,
         nullif(hex(s.target_hash), ''), s.last_origin))
     FROM p
     CROSS JOIN e
     LEFT JOIN records r ON r.record_uid = e.uid
     LEFT JOIN links tl ON tl.record_uid = e.uid AND tl.system = p.target_system
     LEFT JOIN snapshots s ON s.record_uid = e.uid AND s.target_system = p.target_system
     WHERE NOT p.differences_only
        OR e.given_uid IS NULL
        OR e.source_link_uid IS NOT e.given_uid
        OR r.record_uid IS NULL
        OR (e.natural_key IS NOT NULL AND r.natural_key IS NOT e.natural_key)
        OR (e.target_id IS NOT NULL AND tl.external_id IS NOT e.target_id)
        OR (e.set_hash AND s.target_hash IS NOT e.target_hash)
        OR (e.origin IS NOT NULL AND s.last_origin IS NOT e.origin)",
    8,
);

/// Takes an exclusive lock on `<database>-open.lock`, waiting for another process that holds
/// it; the lock lasts as long as the returned file is open.
async fn lock_for_opening(database: &Path) -> std::io::Result<std::fs::File> {
    let mut name = database.as_os_str().to_owned();
    name.push("-open.lock");
    let path = std::path::PathBuf::from(name);
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                tracing::info!(lock = %path.display(), "Waiting for another process that is opening the store.");
                file.lock()?;
            }
            // A file system without locks (some network mounts): opened without taking turns.
            Err(std::fs::TryLockError::Error(error)) if error.kind() == std::io::ErrorKind::Unsupported => {
                tracing::warn!(lock = %path.display(), "The file system cannot lock files; processes opening the store at once may fail.");
            }
            Err(std::fs::TryLockError::Error(error)) => return Err(error),
        }
        Ok(file)
    })
    .await
    .map_err(std::io::Error::other)?
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        migrations::sqlite().run(&self.writer).await.map_err(StoreError::Migrate)
    }

    async fn schema_version(&self) -> Result<i64> {
        let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.reader)
            .await
            .map_err(StoreError::query("reading the schema version"))?;
        Ok(version.unwrap_or(0))
    }

    // --- checkpoints ---------------------------------------------------------------------------

    async fn checkpoint(&self, flow: &str, source_system: &str) -> Result<Option<Checkpoint>> {
        const DOING: &str = "reading a checkpoint";
        let row = sqlx::query("SELECT watermark, cursor FROM checkpoints WHERE flow = ?1 AND source_system = ?2")
            .bind(flow)
            .bind(source_system)
            .fetch_optional(&self.reader)
            .await
            .map_err(StoreError::query(DOING))?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(Checkpoint {
            watermark: from_micros_opt("checkpoint watermark", get(&row, "watermark", DOING)?)?,
            cursor: get(&row, "cursor", DOING)?,
        }))
    }

    async fn put_checkpoint(&self, flow: &str, source_system: &str, checkpoint: &Checkpoint) -> Result<()> {
        let mut tx = self.begin_write().await?;
        upsert_checkpoint(&mut tx, flow, source_system, checkpoint, Utc::now()).await?;
        tx.commit().await.map_err(StoreError::query("committing a checkpoint"))
    }

    async fn reset_checkpoint(&self, flow: &str, source_system: &str) -> Result<()> {
        sqlx::query("DELETE FROM checkpoints WHERE flow = ?1 AND source_system = ?2")
            .bind(flow)
            .bind(source_system)
            .execute(&self.writer)
            .await
            .map_err(StoreError::query("resetting a checkpoint"))?;
        Ok(())
    }

    // --- schedules -----------------------------------------------------------------------------

    async fn schedules(&self) -> Result<Vec<StoredSchedule>> {
        const DOING: &str = "reading schedules";
        let rows = sqlx::query("SELECT name, spec, next_run_at FROM schedules ORDER BY name")
            .fetch_all(&self.reader)
            .await
            .map_err(StoreError::query(DOING))?;
        rows.iter()
            .map(|row| {
                Ok(StoredSchedule {
                    name: get(row, "name", DOING)?,
                    spec: get(row, "spec", DOING)?,
                    next_run_at: from_micros("schedule next run", get(row, "next_run_at", DOING)?)?,
                })
            })
            .collect()
    }

    async fn put_schedule(&self, name: &str, spec: &str, next_run_at: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "INSERT INTO schedules (name, spec, next_run_at, updated_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, next_run_at = excluded.next_run_at, \
             updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(spec)
        .bind(next_run_at.timestamp_micros())
        .bind(Utc::now().timestamp_micros())
        .execute(&self.writer)
        .await
        .map_err(StoreError::query("storing a schedule"))?;
        Ok(())
    }

    // --- two-way state and reconciliation --------------------------------------------------------

    async fn record_states(
        &self,
        system: &str,
        record_uids: &[RecordUid],
    ) -> Result<HashMap<RecordUid, serde_json::Value>> {
        const DOING: &str = "reading record states";
        if record_uids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = sqlx::query(
            "SELECT record_uid, payload FROM record_states
             WHERE system = ?1 AND record_uid IN (SELECT value FROM json_each(?2))",
        )
        .bind(system)
        .bind(json_batch(&json!(record_uids)))
        .fetch_all(&self.reader)
        .await
        .map_err(StoreError::query(DOING))?;
        let mut states = HashMap::with_capacity(rows.len());
        for row in rows {
            let payload: String = get(&row, "payload", DOING)?;
            let value = serde_json::from_str(&payload)
                .map_err(|error| StoreError::Corrupt { what: "record state", detail: format!("not JSON: {error}") })?;
            states.insert(get(&row, "record_uid", DOING)?, value);
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
             JOIN links t ON t.record_uid = s.record_uid AND t.system = ?3
             JOIN snapshots n ON n.record_uid = s.record_uid AND n.target_system = ?3
             JOIN records r ON r.record_uid = s.record_uid
             WHERE s.system = ?2 AND s.entity = ?1 AND n.target_hash IS NOT NULL
             ORDER BY s.record_uid",
        )
        .bind(entity.as_str())
        .bind(source_system)
        .bind(target_system)
        .fetch_all(&self.reader)
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

    /// One query for the whole page. Matching by natural key only considers records that have
    /// no link in the source system yet: a record already linked to another source id is that
    /// other record's (two source records with the same SKU stay two records), and taking it
    /// would steal its link. Among several candidates the oldest record wins.
    async fn lookup_links(&self, query: &LinkQuery<'_>) -> Result<Vec<LinkState>> {
        const DOING: &str = "looking up links";
        if query.items.is_empty() {
            return Ok(Vec::new());
        }
        let mut states = vec![LinkState::default(); query.items.len()];
        for (chunk_index, chunk) in query.items.chunks(MAX_BATCH_ROWS).enumerate() {
            let offset = chunk_index * MAX_BATCH_ROWS;
            let (sql, rows) = LOOKUP_LINKS.sql(chunk.len());
            let mut statement = sqlx::query_scalar::<_, String>(sql)
                .bind(query.source_system)
                .bind(query.entity.as_str())
                .bind(query.target_system);
            for (index, item) in chunk.iter().enumerate() {
                statement = statement.bind(index as i64).bind(item.source_id).bind(item.natural_key);
            }
            for _ in chunk.len()..rows {
                statement = statement.bind(None::<i64>).bind(None::<&str>).bind(None::<&str>);
            }
            let found = statement.fetch_one(&self.reader).await.map_err(StoreError::query(DOING))?;
            type Found = (i64, RecordUid, i64, Option<String>, Option<String>, Option<String>, Option<String>);
            let found: Vec<Found> = parse_batch("link lookup", &found)?;
            for (index, record_uid, by_natural_key, target_id, target_hash, last_origin, source_hash) in found {
                let state = batch_slot(&mut states[offset..], index, "link lookup")?;
                *state = LinkState {
                    record_uid: Some(record_uid),
                    matched_by_natural_key: by_natural_key != 0,
                    target_id,
                    target_hash: target_hash.as_deref().map(codec::hash_from_hex).transpose()?,
                    last_origin,
                    source_hash: source_hash.as_deref().map(codec::hash_from_hex).transpose()?,
                };
            }
        }
        Ok(states)
    }

    async fn commit_page(&self, page: &PageCommit) -> Result<Vec<RecordUid>> {
        let mut tx = self.begin_write().await?;
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
                 SELECT record_uid FROM records WHERE natural_key = ?1
                 UNION
                 SELECT record_uid FROM links WHERE external_id = ?1
             )
             SELECT r.record_uid, r.entity, r.natural_key, l.system, l.external_id, l.updated_at
             FROM found f
             JOIN records r ON r.record_uid = f.record_uid
             LEFT JOIN links l ON l.record_uid = r.record_uid
             ORDER BY r.record_uid, l.system",
        )
        .bind(key)
        .fetch_all(&self.reader)
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
                    updated_at: from_micros("link time", get(&row, "updated_at", DOING)?)?,
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
                 FROM record_log WHERE record_uid = ?1 ORDER BY id DESC LIMIT ?2
             ) ORDER BY id",
        )
        .bind(record_uid)
        .bind(codec::sql_limit(limit))
        .fetch_all(&self.reader)
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
                    at: from_micros("record log time", get(row, "at", DOING)?)?,
                })
            })
            .collect()
    }

    // --- runs ----------------------------------------------------------------------------------

    async fn start_run(&self, run: &NewRun) -> Result<RunId> {
        sqlx::query_scalar(
            "INSERT INTO runs (flow, triggered_by, full_sync, dry_run, status, started_at)
             VALUES (?1, ?2, ?3, ?4, 'running', ?5)
             RETURNING id",
        )
        .bind(&run.flow)
        .bind(&run.trigger)
        .bind(run.full)
        .bind(run.dry_run)
        .bind(micros(run.started_at))
        .fetch_one(&self.writer)
        .await
        .map_err(StoreError::query("starting a run"))
    }

    async fn finish_run(&self, run_id: RunId, status: RunStatus, error: Option<&str>) -> Result<()> {
        let result = sqlx::query("UPDATE runs SET status = ?2, error = ?3, finished_at = ?4 WHERE id = ?1")
            .bind(run_id)
            .bind(status.as_str())
            .bind(error)
            .bind(micros(Utc::now()))
            .execute(&self.writer)
            .await
            .map_err(StoreError::query("finishing a run"))?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "run", id: run_id });
        }
        Ok(())
    }

    async fn run(&self, run_id: RunId) -> Result<Option<Run>> {
        let row = sqlx::query(concat!("SELECT ", run_columns!(), " FROM runs WHERE id = ?1"))
            .bind(run_id)
            .fetch_optional(&self.reader)
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
             WHERE ?1 IS NULL OR flow = ?1
             ORDER BY started_at DESC, id DESC
             LIMIT ?2"
        ))
        .bind(flow)
        .bind(codec::sql_limit(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(StoreError::query("listing runs"))?;
        rows.iter().map(run_from_row).collect()
    }

    /// Marks `running` runs started before `older_than` as `interrupted`, with an error saying
    /// so; `finished_at` stays empty, since nobody saw them finish.
    async fn interrupt_running_runs(&self, older_than: DateTime<Utc>) -> Result<u64> {
        let result = sqlx::query(
            "UPDATE runs SET status = 'interrupted', error = COALESCE(error, ?2)
             WHERE status = 'running' AND started_at < ?1",
        )
        .bind(micros(older_than))
        .bind(codec::INTERRUPTED_ERROR)
        .execute(&self.writer)
        .await
        .map_err(StoreError::query("interrupting running runs"))?;
        Ok(result.rows_affected())
    }

    // --- dead letters --------------------------------------------------------------------------

    /// Most recently updated first. A `limit` of 0 means no limit.
    async fn list_dead_letters(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>> {
        let limit = if filter.limit == 0 { -1 } else { codec::sql_limit(filter.limit) };
        let rows = sqlx::query(concat!(
            "SELECT ",
            dead_letter_columns!(),
            " FROM dead_letters
             WHERE (?1 IS NULL OR flow = ?1) AND (?2 IS NULL OR status = ?2)
             ORDER BY updated_at DESC, id DESC
             LIMIT ?3"
        ))
        .bind(filter.flow.as_deref())
        .bind(filter.status.map(|status| status.as_str()))
        .bind(limit)
        .fetch_all(&self.reader)
        .await
        .map_err(StoreError::query("listing dead letters"))?;
        rows.iter().map(dead_letter_from_row).collect()
    }

    async fn dead_letter(&self, id: DeadLetterId) -> Result<Option<DeadLetter>> {
        let row = sqlx::query(concat!("SELECT ", dead_letter_columns!(), " FROM dead_letters WHERE id = ?1"))
            .bind(id)
            .fetch_optional(&self.reader)
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
            "UPDATE dead_letters
             SET status = ?2, history = json_insert(history, '$[#]', json(?3)), updated_at = ?4
             WHERE id = ?1",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(event.to_string())
        .bind(micros(now))
        .execute(&self.writer)
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
            "UPDATE dead_letters
             SET payload = ?2, history = json_insert(history, '$[#]', json(?3)), updated_at = ?4
             WHERE id = ?1",
        )
        .bind(id)
        .bind(payload.to_string())
        .bind(event.to_string())
        .bind(micros(now))
        .execute(&self.writer)
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
        .fetch_all(&self.reader)
        .await
        .map_err(StoreError::query(DOING))?;
        rows.iter().map(|row| Ok((get(row, "flow", DOING)?, get(row, "n", DOING)?))).collect()
    }

    // --- jobs ----------------------------------------------------------------------------------

    async fn enqueue_job(&self, job: &NewJob) -> Result<Option<JobId>> {
        let now = micros(Utc::now());
        sqlx::query_scalar(
            "INSERT INTO jobs (kind, dedupe_key, payload, state, attempts, max_attempts, run_at,
                               created_at, updated_at, key)
             VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?5, ?6, ?6, ?7)
             ON CONFLICT DO NOTHING
             RETURNING id",
        )
        .bind(&job.kind)
        .bind(job.dedupe_key.as_deref())
        .bind(job.payload.to_string())
        .bind(job.max_attempts)
        .bind(micros(job.run_at))
        .bind(now)
        .bind(job.key.as_deref())
        .fetch_optional(&self.writer)
        .await
        .map_err(StoreError::query("enqueueing a job"))
    }

    /// Exclusive because all writes are serialized through the one writer connection (and
    /// SQLite's write lock across processes). An empty `kinds` claims nothing. A job with a key
    /// is claimable only while no job of its key is running and none is pending before it.
    async fn claim_jobs(&self, worker: &str, kinds: &[&str], lease: Duration, limit: u32) -> Result<Vec<Job>> {
        if kinds.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        let rows = sqlx::query(concat!(
            "UPDATE jobs
             SET state = 'running', lease_owner = ?1, lease_until = ?2, updated_at = ?3
             WHERE id IN (
                 SELECT id FROM jobs AS candidate
                 WHERE state = 'pending' AND run_at <= ?3
                   AND kind IN (SELECT value FROM json_each(?4))
                   AND (key IS NULL OR NOT EXISTS (
                       SELECT 1 FROM jobs AS other
                       WHERE other.key = candidate.key AND other.id <> candidate.id
                         AND (other.state = 'running'
                              OR (other.state = 'pending'
                                  AND (other.run_at, other.id) < (candidate.run_at, candidate.id)))))
                 ORDER BY run_at, id
                 LIMIT ?5)
             RETURNING ",
            job_columns!()
        ))
        .bind(worker)
        .bind(micros(codec::lease_end(now, lease)))
        .bind(micros(now))
        .bind(json_batch(&json!(kinds)))
        .bind(codec::sql_limit(limit))
        .fetch_all(&self.writer)
        .await
        .map_err(StoreError::query("claiming jobs"))?;
        let mut jobs = rows.iter().map(job_from_row).collect::<Result<Vec<_>>>()?;
        jobs.sort_by_key(|job| (job.run_at, job.id));
        Ok(jobs)
    }

    async fn heartbeat_job(&self, id: JobId, worker: &str, lease: Duration) -> Result<bool> {
        let now = Utc::now();
        let result = sqlx::query(
            "UPDATE jobs SET lease_until = ?3, updated_at = ?4
             WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
        )
        .bind(id)
        .bind(worker)
        .bind(micros(codec::lease_end(now, lease)))
        .bind(micros(now))
        .execute(&self.writer)
        .await
        .map_err(StoreError::query("extending a job lease"))?;
        Ok(result.rows_affected() == 1)
    }

    /// [`StoreError::LeaseLost`] when the job is not running under `worker`'s lease.
    async fn complete_job(&self, id: JobId, worker: &str) -> Result<()> {
        let result = sqlx::query(
            "UPDATE jobs SET state = 'done', lease_owner = NULL, lease_until = NULL,
                             updated_at = ?3
             WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
        )
        .bind(id)
        .bind(worker)
        .bind(micros(Utc::now()))
        .execute(&self.writer)
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
                 last_error = ?3,
                 state = CASE WHEN ?4 IS NOT NULL AND attempts + 1 < max_attempts
                              THEN 'pending' ELSE 'dead' END,
                 run_at = COALESCE(?4, run_at),
                 lease_owner = NULL, lease_until = NULL, updated_at = ?5
             WHERE id = ?1 AND state = 'running' AND lease_owner = ?2
             RETURNING state",
        )
        .bind(id)
        .bind(worker)
        .bind(error)
        .bind(retry_at.map(micros))
        .bind(micros(Utc::now()))
        .fetch_optional(&self.writer)
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
                             updated_at = ?3
             WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
        )
        .bind(id)
        .bind(worker)
        .bind(micros(Utc::now()))
        .execute(&self.writer)
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
                 last_error = ?2,
                 state = CASE WHEN attempts + 1 < max_attempts THEN 'pending' ELSE 'dead' END,
                 lease_owner = NULL, lease_until = NULL, updated_at = ?1
             WHERE state = 'running' AND lease_until < ?1",
        )
        .bind(micros(Utc::now()))
        .bind(codec::LEASE_EXPIRED_ERROR)
        .execute(&self.writer)
        .await
        .map_err(StoreError::query("reclaiming expired jobs"))?;
        Ok(result.rows_affected())
    }

    async fn job(&self, id: JobId) -> Result<Option<Job>> {
        let row = sqlx::query(concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = ?1"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(StoreError::query("reading a job"))?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Oldest first (by id).
    async fn list_jobs(&self, state: Option<JobState>, limit: u32) -> Result<Vec<Job>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE ?1 IS NULL OR state = ?1 ORDER BY id LIMIT ?2"
        ))
        .bind(state.map(|state| state.as_str()))
        .bind(codec::sql_limit(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(StoreError::query("listing jobs"))?;
        rows.iter().map(job_from_row).collect()
    }

    // --- inbox ---------------------------------------------------------------------------------

    async fn insert_inbox(&self, delivery: &NewInboxDelivery) -> Result<InboxInsert> {
        let id: Option<InboxId> = sqlx::query_scalar(
            "INSERT INTO inbox (system, delivery_id, topic, headers, body, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (system, delivery_id) DO NOTHING
             RETURNING id",
        )
        .bind(&delivery.system)
        .bind(&delivery.delivery_id)
        .bind(&delivery.topic)
        .bind(delivery.headers.to_string())
        .bind(&delivery.body)
        .bind(micros(delivery.received_at))
        .fetch_optional(&self.writer)
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
             LIMIT ?1",
        )
        .bind(codec::sql_limit(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(StoreError::query(DOING))?;
        rows.iter()
            .map(|row| {
                Ok(InboxDelivery {
                    id: get(row, "id", DOING)?,
                    system: get(row, "system", DOING)?,
                    delivery_id: get(row, "delivery_id", DOING)?,
                    topic: get(row, "topic", DOING)?,
                    headers: codec::json_text("webhook headers", &get::<String>(row, "headers", DOING)?)?,
                    body: get(row, "body", DOING)?,
                    received_at: from_micros("webhook time", get(row, "received_at", DOING)?)?,
                    processed_at: from_micros_opt("webhook time", get(row, "processed_at", DOING)?)?,
                    error: get(row, "error", DOING)?,
                })
            })
            .collect()
    }

    /// Processed either way; `error` says why handling it failed.
    async fn mark_inbox_processed(&self, id: InboxId, error: Option<&str>) -> Result<()> {
        let result = sqlx::query("UPDATE inbox SET processed_at = ?2, error = ?3 WHERE id = ?1")
            .bind(id)
            .bind(micros(Utc::now()))
            .bind(error)
            .execute(&self.writer)
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
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(entry.details.to_string())
        .bind(micros(entry.at))
        .execute(&self.writer)
        .await
        .map_err(StoreError::query("writing the audit log"))?;
        Ok(())
    }

    /// Newest first.
    async fn list_audit(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        const DOING: &str = "reading the audit log";
        let rows = sqlx::query(
            "SELECT id, actor, action, target, details, at FROM audit_log
             ORDER BY at DESC, id DESC LIMIT ?1",
        )
        .bind(codec::sql_limit(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(StoreError::query(DOING))?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: get(row, "id", DOING)?,
                    actor: get(row, "actor", DOING)?,
                    action: get(row, "action", DOING)?,
                    target: get(row, "target", DOING)?,
                    details: codec::json_text("audit details", &get::<String>(row, "details", DOING)?)?,
                    at: from_micros("audit time", get(row, "at", DOING)?)?,
                })
            })
            .collect()
    }

    // --- operations: paused flows, access tokens, filtered runs, queue depths ----------------

    async fn pause_flow(&self, pause: &FlowPause) -> Result<bool> {
        let result = sqlx::query(
            "INSERT INTO paused_flows (flow, paused_by, reason, paused_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (flow) DO NOTHING",
        )
        .bind(&pause.flow)
        .bind(&pause.paused_by)
        .bind(&pause.reason)
        .bind(micros(pause.paused_at))
        .execute(&self.writer)
        .await
        .map_err(StoreError::query("pausing a flow"))?;
        Ok(result.rows_affected() > 0)
    }

    async fn resume_flow(&self, flow: &str) -> Result<bool> {
        let result = sqlx::query("DELETE FROM paused_flows WHERE flow = ?1")
            .bind(flow)
            .execute(&self.writer)
            .await
            .map_err(StoreError::query("resuming a flow"))?;
        Ok(result.rows_affected() > 0)
    }

    async fn paused_flows(&self) -> Result<Vec<FlowPause>> {
        const DOING: &str = "reading paused flows";
        let rows = sqlx::query("SELECT flow, paused_by, reason, paused_at FROM paused_flows ORDER BY flow")
            .fetch_all(&self.reader)
            .await
            .map_err(StoreError::query(DOING))?;
        rows.iter()
            .map(|row| {
                Ok(FlowPause {
                    flow: get(row, "flow", DOING)?,
                    paused_by: get(row, "paused_by", DOING)?,
                    reason: get(row, "reason", DOING)?,
                    paused_at: from_micros("pause time", get(row, "paused_at", DOING)?)?,
                })
            })
            .collect()
    }

    async fn create_api_token(&self, token: &NewApiToken) -> Result<ApiToken> {
        let inserted = sqlx::query(
            "INSERT INTO api_tokens (name, role, secret_hash, created_by, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
        )
        .bind(&token.name)
        .bind(token.role.as_str())
        .bind(token.secret_hash.as_slice())
        .bind(&token.created_by)
        .bind(micros(token.created_at))
        .fetch_one(&self.writer)
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
             WHERE ?1 OR revoked_at IS NULL
             ORDER BY name, created_at DESC, id DESC",
        )
        .bind(include_revoked)
        .fetch_all(&self.reader)
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
                    created_at: from_micros("token time", get(row, "created_at", DOING)?)?,
                    revoked_at: from_micros_opt("token time", get(row, "revoked_at", DOING)?)?,
                })
            })
            .collect()
    }

    async fn revoke_api_token(&self, name: &str, at: DateTime<Utc>) -> Result<bool> {
        let result = sqlx::query("UPDATE api_tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL")
            .bind(name)
            .bind(micros(at))
            .execute(&self.writer)
            .await
            .map_err(StoreError::query("revoking an access token"))?;
        Ok(result.rows_affected() > 0)
    }

    async fn find_runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let limit = if filter.limit == 0 { -1 } else { codec::sql_limit(filter.limit) };
        let rows = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs
             WHERE (?1 IS NULL OR flow = ?1) AND (?2 IS NULL OR status = ?2)
               AND (?3 IS NULL OR triggered_by = ?3) AND (?4 IS NULL OR id < ?4)
             ORDER BY id DESC
             LIMIT ?5"
        ))
        .bind(filter.flow.as_deref())
        .bind(filter.status.map(|status| status.as_str()))
        .bind(filter.trigger.as_deref())
        .bind(filter.before)
        .bind(limit)
        .fetch_all(&self.reader)
        .await
        .map_err(StoreError::query("listing runs"))?;
        rows.iter().map(run_from_row).collect()
    }

    async fn queue_depths(&self) -> Result<QueueDepths> {
        const DOING: &str = "counting queued work";
        let row = sqlx::query(
            "SELECT
                (SELECT COUNT(*) FROM inbox WHERE processed_at IS NULL) AS inbox_pending,
                (SELECT COUNT(*) FROM jobs WHERE state = 'pending') AS jobs_pending,
                (SELECT COUNT(*) FROM jobs WHERE state = 'running') AS jobs_running,
                (SELECT COUNT(*) FROM jobs WHERE state = 'dead') AS jobs_dead",
        )
        .fetch_one(&self.reader)
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
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
        )
        .bind(&alert.rule)
        .bind(&alert.kind)
        .bind(&alert.scope)
        .bind(&alert.summary)
        .bind(alert.notify)
        .bind(micros(alert.opened_at))
        .fetch_one(&self.writer)
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
            sqlx::query("UPDATE alerts SET resolved_at = ?2, resolution = ?3 WHERE id = ?1 AND resolved_at IS NULL")
                .bind(id)
                .bind(micros(at))
                .bind(resolution)
                .execute(&self.writer)
                .await
                .map_err(StoreError::query("resolving an alert"))?;
        Ok(result.rows_affected() > 0)
    }

    async fn record_alert_delivery(&self, id: AlertId, delivery: &AlertDelivery) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO alert_deliveries (alert_id, event, channel, ok, detail, at)
             SELECT id, ?2, ?3, ?4, ?5, ?6 FROM alerts WHERE id = ?1",
        )
        .bind(id)
        .bind(&delivery.event)
        .bind(&delivery.channel)
        .bind(delivery.ok)
        .bind(&delivery.detail)
        .bind(micros(delivery.at))
        .execute(&self.writer)
        .await
        .map_err(StoreError::query("recording an alert message"))?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "alert", id });
        }
        Ok(())
    }

    async fn list_alerts(&self, filter: &AlertFilter) -> Result<Vec<Alert>> {
        const DOING: &str = "listing alerts";
        let limit = if filter.limit == 0 { -1 } else { codec::sql_limit(filter.limit) };
        let rows = sqlx::query(
            "SELECT id, rule, kind, scope, summary, notify, opened_at, resolved_at, resolution FROM alerts
             WHERE (?1 IS NULL OR rule = ?1) AND (?2 IS NULL OR scope = ?2) AND (NOT ?3 OR resolved_at IS NULL)
             ORDER BY id DESC
             LIMIT ?4",
        )
        .bind(filter.rule.as_deref())
        .bind(filter.scope.as_deref())
        .bind(filter.open_only)
        .bind(limit)
        .fetch_all(&self.reader)
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
                    opened_at: from_micros("alert time", get(row, "opened_at", DOING)?)?,
                    resolved_at: from_micros_opt("alert time", get(row, "resolved_at", DOING)?)?,
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
             WHERE alert_id BETWEEN ?1 AND ?2 ORDER BY alert_id, id",
        )
        .bind(low)
        .bind(high)
        .fetch_all(&self.reader)
        .await
        .map_err(StoreError::query(DOING))?;
        let mut by_alert: HashMap<AlertId, Vec<AlertDelivery>> = HashMap::new();
        for row in &rows {
            by_alert.entry(get(row, "alert_id", DOING)?).or_default().push(AlertDelivery {
                event: get(row, "event", DOING)?,
                channel: get(row, "channel", DOING)?,
                ok: get(row, "ok", DOING)?,
                detail: get(row, "detail", DOING)?,
                at: from_micros("alert message time", get(row, "at", DOING)?)?,
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
async fn read_existing(tx: &mut Transaction<'static, Sqlite>, page: &PageCommit) -> Result<Vec<ExistingState>> {
    const DOING: &str = "reading the links of a page";
    if page.outcomes.is_empty() {
        return Ok(Vec::new());
    }
    let differences_only = page::can_read_differences_only(page);
    let mut states: Vec<Option<ExistingState>> = vec![None; page.outcomes.len()];
    for (chunk_index, chunk) in page.outcomes.chunks(MAX_BATCH_ROWS).enumerate() {
        let offset = chunk_index * MAX_BATCH_ROWS;
        let (sql, rows) = READ_EXISTING.sql(chunk.len());
        let mut statement = sqlx::query_scalar::<_, String>(sql)
            .bind(&page.source_system)
            .bind(page.entity.as_str())
            .bind(&page.target_system)
            .bind(differences_only);
        for (index, outcome) in chunk.iter().enumerate() {
            let change = SnapshotChange::of(outcome);
            statement = statement
                .bind(index as i64)
                .bind(outcome.source_id.as_str())
                .bind(outcome.record_uid)
                .bind(outcome.natural_key.as_deref())
                .bind(outcome.target_id.as_deref())
                .bind(change.hash.is_some())
                .bind(change.hash.flatten())
                .bind(change.origin);
        }
        for _ in chunk.len()..rows {
            statement = statement
                .bind(None::<i64>)
                .bind(None::<&str>)
                .bind(None::<i64>)
                .bind(None::<&str>)
                .bind(None::<&str>)
                .bind(None::<bool>)
                .bind(None::<&[u8]>)
                .bind(None::<&str>);
        }
        let found = statement.fetch_one(&mut **tx).await.map_err(StoreError::query(DOING))?;
        type Found = (i64, Option<RecordUid>, i64, Option<String>, Option<String>, Option<String>, Option<String>);
        let found: Vec<Found> = parse_batch("page links", &found)?;
        for (index, source_link_uid, record_found, natural_key, target_id, target_hash, last_origin) in found {
            let state = batch_slot(&mut states[offset..], index, "page links")?;
            *state = Some(ExistingState {
                source_link_uid,
                record_found: record_found != 0,
                natural_key,
                target_id,
                target_hash: target_hash.as_deref().map(codec::hash_from_hex).transpose()?.map(|hash| hash.0.to_vec()),
                last_origin,
            });
        }
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

/// Parses a batch result built with `json_group_array`.
fn parse_batch<T: serde::de::DeserializeOwned>(what: &'static str, text: &str) -> Result<Vec<T>> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt { what, detail: error.to_string() })
}

/// The slot of batch item `index`, checked.
fn batch_slot<'s, T>(slots: &'s mut [T], index: i64, what: &'static str) -> Result<&'s mut T> {
    let len = slots.len();
    usize::try_from(index)
        .ok()
        .and_then(|index| slots.get_mut(index))
        .ok_or_else(|| StoreError::Corrupt { what, detail: format!("result for item {index} of {len}") })
}

/// New record identities: the next `count` integers after the highest one. Safe because the
/// transaction holds SQLite's write lock (`BEGIN IMMEDIATE`) and records are never deleted.
async fn allocate_record_uids(tx: &mut Transaction<'static, Sqlite>, count: usize) -> Result<Vec<RecordUid>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let highest: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(record_uid), 0) FROM records")
        .fetch_one(&mut **tx)
        .await
        .map_err(StoreError::query("allocating record identities"))?;
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    Ok((1..=count).map(|offset| highest + offset).collect())
}

async fn write_states(tx: &mut Transaction<'static, Sqlite>, page: &PageCommit, uids: &[RecordUid]) -> Result<()> {
    if page.states.is_empty() {
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = page
        .states
        .iter()
        .filter_map(|state| uids.get(state.outcome).map(|uid| json!([uid, state.system, state.payload.to_string()])))
        .collect();
    sqlx::query(
        "INSERT INTO record_states (record_uid, system, payload, updated_at)
         SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), ?2
         FROM json_each(?1) WHERE true
         ON CONFLICT (record_uid, system) DO UPDATE SET payload = excluded.payload, updated_at = excluded.updated_at",
    )
    .bind(json_batch(&serde_json::Value::Array(rows)))
    .bind(micros(page.at))
    .execute(&mut **tx)
    .await
    .map_err(StoreError::query("storing record states"))?;
    Ok(())
}

async fn write_plan(tx: &mut Transaction<'static, Sqlite>, page: &PageCommit, plan: &PagePlan) -> Result<()> {
    let at = micros(page.at);
    let entity = page.entity.as_str();

    if !plan.new_records.is_empty() {
        let rows: Vec<serde_json::Value> =
            plan.new_records.iter().map(|(uid, natural_key)| json!([uid, natural_key])).collect();
        sqlx::query(
            "INSERT INTO records (record_uid, entity, natural_key, created_at)
             SELECT json_extract(value, '$[0]'), ?2, json_extract(value, '$[1]'), ?3
             FROM json_each(?1)",
        )
        .bind(json_batch(&serde_json::Value::Array(rows)))
        .bind(entity)
        .bind(at)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("creating records"))?;
    }

    if !plan.natural_key_updates.is_empty() {
        let rows: Vec<serde_json::Value> =
            plan.natural_key_updates.iter().map(|(uid, natural_key)| json!([uid, natural_key])).collect();
        sqlx::query(
            "UPDATE records SET natural_key = j.natural_key
             FROM (SELECT json_extract(value, '$[0]') AS record_uid,
                          json_extract(value, '$[1]') AS natural_key
                   FROM json_each(?1)) AS j
             WHERE records.record_uid = j.record_uid",
        )
        .bind(json_batch(&serde_json::Value::Array(rows)))
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("updating natural keys"))?;
    }

    if !plan.links.is_empty() {
        let rows: Vec<serde_json::Value> =
            plan.links.iter().map(|link| json!([link.record_uid, link.system, link.external_id])).collect();
        let rows = json_batch(&serde_json::Value::Array(rows));
        // Replace what conflicts: another record's link with the same external id, and this
        // record's link in the same system with another external id. Every planned link
        // differs from what is stored, so deleting all rows with either key and inserting the
        // planned ones has that effect; the two plain `IN` lists each probe their own index.
        let by_external: Vec<serde_json::Value> = plan
            .links
            .iter()
            .filter(|link| link.may_replace_external)
            .map(|link| json!([link.system, link.external_id]))
            .collect();
        if !by_external.is_empty() {
            sqlx::query(
                "DELETE FROM links WHERE (external_id, system, entity) IN (
                     SELECT json_extract(value, '$[1]'), json_extract(value, '$[0]'), ?2 FROM json_each(?1))",
            )
            .bind(json_batch(&serde_json::Value::Array(by_external)))
            .bind(entity)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::query("replacing links"))?;
        }
        let by_record: Vec<serde_json::Value> = plan
            .links
            .iter()
            .filter(|link| link.may_replace_record)
            .map(|link| json!([link.record_uid, link.system]))
            .collect();
        if !by_record.is_empty() {
            sqlx::query(
                "DELETE FROM links WHERE (record_uid, system) IN (
                     SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?1))",
            )
            .bind(json_batch(&serde_json::Value::Array(by_record)))
            .execute(&mut **tx)
            .await
            .map_err(StoreError::query("replacing links"))?;
        }
        sqlx::query(
            "INSERT INTO links (record_uid, system, entity, external_id, updated_at)
             SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), ?2,
                    json_extract(value, '$[2]'), ?3
             FROM json_each(?1) WHERE true
             ON CONFLICT DO NOTHING",
        )
        .bind(&rows)
        .bind(entity)
        .bind(at)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("storing links"))?;
    }

    if !plan.snapshots.is_empty() {
        let rows: Vec<serde_json::Value> = plan
            .snapshots
            .iter()
            .map(|snapshot| {
                let hash = snapshot.target_hash.as_deref().map(hex_encode);
                json!([snapshot.record_uid, hash, snapshot.last_origin])
            })
            .collect();
        sqlx::query(
            "INSERT INTO snapshots (record_uid, target_system, target_hash, last_origin,
                                    updated_at)
             SELECT json_extract(value, '$[0]'), ?2, unhex(json_extract(value, '$[1]')),
                    json_extract(value, '$[2]'), ?3
             FROM json_each(?1) WHERE true
             ON CONFLICT (record_uid, target_system) DO UPDATE
             SET target_hash = excluded.target_hash,
                 last_origin = excluded.last_origin,
                 updated_at = excluded.updated_at",
        )
        .bind(json_batch(&serde_json::Value::Array(rows)))
        .bind(&page.target_system)
        .bind(at)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("storing snapshots"))?;
    }

    if !plan.log.is_empty() {
        let rows: Vec<serde_json::Value> = plan
            .log
            .iter()
            .map(|&index| {
                let outcome = &page.outcomes[index];
                json!([
                    plan.record_uids[index],
                    outcome.source_id,
                    outcome.target_id,
                    outcome.action.as_str(),
                    outcome.message,
                    outcome.origin,
                ])
            })
            .collect();
        sqlx::query(
            "INSERT INTO record_log (run_id, flow, record_uid, source_system, source_id,
                                     target_system, target_id, action, message, origin, at)
             SELECT ?2, ?3, json_extract(value, '$[0]'), ?4, json_extract(value, '$[1]'),
                    ?5, json_extract(value, '$[2]'), json_extract(value, '$[3]'),
                    json_extract(value, '$[4]'), json_extract(value, '$[5]'), ?6
             FROM json_each(?1)",
        )
        .bind(json_batch(&serde_json::Value::Array(rows)))
        .bind(page.run_id)
        .bind(&page.flow)
        .bind(&page.source_system)
        .bind(&page.target_system)
        .bind(at)
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

async fn write_dead_letters(tx: &mut Transaction<'static, Sqlite>, page: &PageCommit, plan: &PagePlan) -> Result<()> {
    const DOING: &str = "reading unresolved dead letters";
    if !plan.has_failures() {
        // Successes only: nothing to do unless the flow has unresolved dead letters at all,
        // which one probe of the partial index tells (the usual answer is no).
        let any_unresolved: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM dead_letters
                            WHERE flow = ?1 AND target_system = ?2 AND status IN ('open', 'retrying'))",
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
    let rows = sqlx::query(
        "SELECT id, source_id FROM dead_letters
         WHERE flow = ?1 AND target_system = ?2 AND status IN ('open', 'retrying')
           AND source_id IN (SELECT value FROM json_each(?3))",
    )
    .bind(&page.flow)
    .bind(&page.target_system)
    .bind(json_batch(&json!(source_ids)))
    .fetch_all(&mut **tx)
    .await
    .map_err(StoreError::query(DOING))?;
    let mut unresolved: HashMap<String, DeadLetterId> = HashMap::new();
    for row in rows {
        unresolved.insert(get(&row, "source_id", DOING)?, get(&row, "id", DOING)?);
    }
    let at = micros(page.at);
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
                             SET status = 'open', error_kind = ?2, error = ?3, payload = ?4,
                                 record_uid = ?5, natural_key = COALESCE(?6, natural_key),
                                 origin = COALESCE(?7, origin), attempts = attempts + 1,
                                 history = json_insert(history, '$[#]', json(?8)),
                                 updated_at = ?9
                             WHERE id = ?1",
                        )
                        .bind(id)
                        .bind(&dead_letter.error_kind)
                        .bind(&dead_letter.error)
                        .bind(dead_letter.payload.to_string())
                        .bind(plan.record_uids[index])
                        .bind(outcome.natural_key.as_deref())
                        .bind(outcome.origin.as_deref())
                        .bind(event.to_string())
                        .bind(at)
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
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'open', ?9, ?10, ?11,
                                     json_array(json(?12)), 1, ?13, ?13)
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
                        .bind(dead_letter.payload.to_string())
                        .bind(event.to_string())
                        .bind(at)
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
                     SET status = 'resolved',
                         history = json_insert(history, '$[#]', json(?2)), updated_at = ?3
                     WHERE id = ?1",
                )
                .bind(id)
                .bind(event.to_string())
                .bind(at)
                .execute(&mut **tx)
                .await
                .map_err(StoreError::query("resolving a dead letter"))?;
            }
        }
    }
    Ok(())
}

async fn upsert_checkpoint(
    tx: &mut Transaction<'static, Sqlite>,
    flow: &str,
    source_system: &str,
    checkpoint: &Checkpoint,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO checkpoints (flow, source_system, watermark, cursor, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (flow, source_system) DO UPDATE
         SET watermark = excluded.watermark, cursor = excluded.cursor,
             updated_at = excluded.updated_at",
    )
    .bind(flow)
    .bind(source_system)
    .bind(checkpoint.watermark.map(micros))
    .bind(checkpoint.cursor.as_deref())
    .bind(micros(at))
    .execute(&mut **tx)
    .await
    .map_err(StoreError::query("storing a checkpoint"))?;
    Ok(())
}

async fn add_run_counts(tx: &mut Transaction<'static, Sqlite>, run_id: RunId, counts: &RunCounts) -> Result<()> {
    let result = sqlx::query(
        "UPDATE runs
         SET count_read = count_read + ?2, count_created = count_created + ?3,
             count_updated = count_updated + ?4, count_unchanged = count_unchanged + ?5,
             count_skipped = count_skipped + ?6, count_failed = count_failed + ?7,
             count_deleted = count_deleted + ?8
         WHERE id = ?1",
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

fn hex_encode(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(text, "{byte:02x}");
    }
    text
}

// --- rows --------------------------------------------------------------------------------------

fn run_from_row(row: &SqliteRow) -> Result<Run> {
    const DOING: &str = "reading a run";
    Ok(Run {
        id: get(row, "id", DOING)?,
        flow: get(row, "flow", DOING)?,
        trigger: get(row, "triggered_by", DOING)?,
        full: bool_column(row, "full_sync", DOING)?,
        dry_run: bool_column(row, "dry_run", DOING)?,
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
        started_at: from_micros("run time", get(row, "started_at", DOING)?)?,
        finished_at: from_micros_opt("run time", get(row, "finished_at", DOING)?)?,
    })
}

fn dead_letter_from_row(row: &SqliteRow) -> Result<DeadLetter> {
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
        payload: codec::json_text("dead letter payload", &get::<String>(row, "payload", DOING)?)?,
        history: codec::history_from_text(&get::<String>(row, "history", DOING)?)?,
        attempts: get(row, "attempts", DOING)?,
        created_at: from_micros("dead letter time", get(row, "created_at", DOING)?)?,
        updated_at: from_micros("dead letter time", get(row, "updated_at", DOING)?)?,
    })
}

fn job_from_row(row: &SqliteRow) -> Result<Job> {
    const DOING: &str = "reading a job";
    Ok(Job {
        id: get(row, "id", DOING)?,
        kind: get(row, "kind", DOING)?,
        dedupe_key: get(row, "dedupe_key", DOING)?,
        payload: codec::json_text("job payload", &get::<String>(row, "payload", DOING)?)?,
        state: codec::job_state(&get::<String>(row, "state", DOING)?)?,
        attempts: get(row, "attempts", DOING)?,
        max_attempts: get(row, "max_attempts", DOING)?,
        run_at: from_micros("job time", get(row, "run_at", DOING)?)?,
        lease_owner: get(row, "lease_owner", DOING)?,
        lease_until: from_micros_opt("job time", get(row, "lease_until", DOING)?)?,
        last_error: get(row, "last_error", DOING)?,
        created_at: from_micros("job time", get(row, "created_at", DOING)?)?,
        updated_at: from_micros("job time", get(row, "updated_at", DOING)?)?,
    })
}
