//! Store conformance suite: every behaviour of `Store`, run against SQLite and PostgreSQL.
//!
//! Each test is one function over `Arc<dyn Store>`; the `conformance!` macro runs it twice, on a
//! fresh SQLite file in a temporary directory (`sqlite::<name>`) and on a fresh PostgreSQL
//! database (`postgres::<name>`). PostgreSQL is found at `ERPSYNC_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); when it is unreachable the PostgreSQL tests fail
//! with a message saying so, they are never skipped.

use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use erpsync_model::{Checkpoint, ContentHash, EntityKind};
use erpsync_store::postgres::PostgresStore;
use erpsync_store::sqlite::SqliteStore;
use erpsync_store::*;
use serde_json::json;
use sqlx::Connection;
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

// --- harness -----------------------------------------------------------------------------------

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::on_sqlite(super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::on_postgres(super::$name).await;
                }
            )*
        }
    };
}

conformance! {
    migrations_are_idempotent,
    checkpoints_roundtrip_and_reset,
    schedules_are_stored_and_replaced,
    record_states_are_committed_with_the_page,
    linked_records_are_those_in_step_in_the_target,
    lookup_of_unknown_records_is_empty,
    lookup_by_source_id_after_commit,
    lookup_by_natural_key,
    natural_key_does_not_match_a_record_linked_to_another_source_id,
    lookup_keeps_order_of_a_large_page,
    lookup_in_the_other_direction_sees_what_was_written_to_the_source,
    commit_allocates_one_record_per_source_id,
    commit_is_atomic_when_the_run_is_missing,
    commit_is_atomic_when_a_record_is_unknown,
    unchanged_outcomes_keep_the_snapshot,
    deleted_outcome_clears_the_hash,
    failed_outcomes_leave_the_snapshot_alone,
    target_link_is_replaced_when_the_target_id_changes,
    natural_key_changes_are_stored,
    resync_page_writes_exactly_what_changed,
    record_twice_in_a_page_keeps_its_hash,
    dead_letter_is_updated_then_resolved,
    dead_letter_of_another_target_is_not_resolved,
    dead_letter_status_and_payload_edits_are_in_history,
    jobs_are_deduplicated_while_pending_or_running,
    jobs_are_claimed_when_due_in_order_and_by_kind,
    concurrent_claimers_never_take_the_same_job,
    keyed_jobs_run_one_at_a_time_in_order,
    a_running_job_holds_its_key,
    expired_leases_are_reclaimed_and_count_as_attempts,
    failed_jobs_retry_then_die,
    released_jobs_are_pending_without_an_attempt,
    only_the_lease_owner_may_touch_a_job,
    inbox_deduplicates_deliveries,
    run_counts_accumulate_across_pages,
    runs_are_listed_newest_first_and_interrupted,
    find_records_by_natural_key_or_any_external_id,
    paused_flows_keep_the_first_pause_until_resumed,
    access_tokens_are_unique_by_active_name_and_revocable,
    runs_are_found_by_flow_status_trigger_and_page,
    queue_depths_count_pending_work,
    alerts_are_open_once_per_rule_and_scope_with_their_messages,
    record_history_is_oldest_first,
    audit_log_is_newest_first,
}

async fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let path = dir.path().join("data").join("erpsync.db");
    let store = SqliteStore::open(&path).await.expect("opening a fresh sqlite store");
    test(Arc::new(store)).await;
}

fn postgres_url() -> String {
    std::env::var("ERPSYNC_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// `postgres://host/db?x` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map(|index| index + 3).unwrap_or(0);
    let host_end = base[authority_start..].find('/').map(|index| authority_start + index).unwrap_or(base.len());
    format!("{}/{database}{query}", &base[..host_end])
}

/// Runs `test` on a database of its own, created for it and dropped afterwards (also when the
/// test panics: the test runs in a task, so its panic is caught, the database dropped and the
/// panic resumed).
async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let admin_url = postgres_url();
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap_or_else(|error| {
        panic!(
            "PostgreSQL is not reachable at {admin_url} ({error}). The store conformance \
                 suite runs every test on PostgreSQL too: start it, or point \
                 ERPSYNC_TEST_POSTGRES_URL at a server where the user may create databases."
        )
    });
    let nanos = Utc::now().timestamp_subsec_nanos();
    let database = format!("erpsync_test_{}_{}_{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|error| panic!("creating test database {database}: {error}"));

    let store =
        PostgresStore::open(&with_database(&admin_url, &database)).await.expect("opening a fresh postgres store");
    let store: Arc<dyn Store> = Arc::new(store);
    let outcome = tokio::spawn(test(store)).await;

    let drop_result = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")))
        .execute(&mut admin)
        .await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
    drop_result.unwrap_or_else(|error| panic!("dropping test database {database}: {error}"));
}

#[test]
fn migration_files_have_the_same_versions_on_both_databases() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let versions = |dir: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(root.join(dir))
            .expect("reading the migrations directory")
            .map(|entry| {
                let name = entry.expect("reading a migration").file_name();
                let name = name.to_string_lossy().to_string();
                name.split('_').next().unwrap_or_default().to_string()
            })
            .collect();
        names.sort();
        names
    };
    let sqlite = versions("sqlite");
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, versions("postgres"));
    let highest: i64 = sqlite.last().unwrap().parse().unwrap();
    assert_eq!(highest, latest_schema_version());
}

#[tokio::test]
async fn sqlite_store_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("dir").join("erpsync.db");
    let checkpoint = Checkpoint { watermark: Some(time(1)), cursor: Some("page-2".to_string()) };
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store.put_checkpoint("products", "erp", &checkpoint).await.unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), latest_schema_version());
    assert_eq!(store.checkpoint("products", "erp").await.unwrap(), Some(checkpoint));

    let mut connection = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut connection).await.unwrap();
    assert_eq!(journal_mode, "wal");
}

/// Processes started together on one data directory (a scheduler and a worker) open a new
/// database at the same moment: every one of them opens it, none gets "database is locked".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_stores_opened_at_once_on_a_new_file_all_open() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("erpsync.db");
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let path = path.clone();
                tokio::spawn(async move { SqliteStore::open(&path).await })
            })
            .collect();
        for open in opens {
            let store = open.await.unwrap().expect("every concurrent open succeeds");
            assert_eq!(store.schema_version().await.unwrap(), latest_schema_version());
        }
    }
}

// --- builders ----------------------------------------------------------------------------------

/// A fixed time, `offset_seconds` after 2025-03-01T10:00:00.123456Z (microsecond precision, as
/// stored).
fn time(offset_seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 10, 0, 0).unwrap()
        + ChronoDuration::microseconds(123_456)
        + ChronoDuration::seconds(offset_seconds)
}

fn hash(byte: u8) -> ContentHash {
    ContentHash([byte; 32])
}

fn outcome(source_id: &str, action: RecordAction) -> RecordOutcome {
    RecordOutcome {
        record_uid: None,
        source_id: source_id.to_string(),
        natural_key: None,
        target_id: None,
        action,
        target_hash: None,
        origin: None,
        message: None,
        dead_letter: None,
        log: false,
    }
}

/// A successful create towards the target: target id `shop-<source_id>`, a hash, logged.
fn created(source_id: &str, hash_byte: u8) -> RecordOutcome {
    RecordOutcome {
        target_id: Some(format!("shop-{source_id}")),
        target_hash: Some(hash(hash_byte)),
        log: true,
        ..outcome(source_id, RecordAction::Created)
    }
}

fn failed(source_id: &str, error: &str) -> RecordOutcome {
    RecordOutcome {
        message: Some(error.to_string()),
        dead_letter: Some(NewDeadLetter {
            payload: json!({ "sku": source_id, "error": error }),
            error_kind: "validation".to_string(),
            error: error.to_string(),
        }),
        log: true,
        ..outcome(source_id, RecordAction::Failed)
    }
}

fn page(run_id: RunId, outcomes: Vec<RecordOutcome>) -> PageCommit {
    PageCommit {
        run_id,
        flow: "products".to_string(),
        entity: EntityKind::Product,
        source_system: "erp".to_string(),
        target_system: "shop".to_string(),
        outcomes,
        checkpoint: None,
        states: Vec::new(),
        at: time(0),
    }
}

async fn start_run(store: &dyn Store, flow: &str, started_at: DateTime<Utc>) -> RunId {
    store
        .start_run(&NewRun {
            flow: flow.to_string(),
            trigger: "manual".to_string(),
            full: false,
            dry_run: false,
            started_at,
        })
        .await
        .unwrap()
}

async fn lookup(store: &dyn Store, items: &[(&str, Option<&str>)]) -> Vec<LinkState> {
    lookup_from(store, "erp", items).await
}

async fn lookup_from(store: &dyn Store, source_system: &str, items: &[(&str, Option<&str>)]) -> Vec<LinkState> {
    store
        .lookup_links(&LinkQuery {
            entity: EntityKind::Product,
            source_system,
            target_system: "shop",
            items: items
                .iter()
                .map(|(source_id, natural_key)| LinkQueryItem { source_id, natural_key: *natural_key })
                .collect(),
        })
        .await
        .unwrap()
}

fn new_job(kind: &str, dedupe_key: Option<&str>, run_at: DateTime<Utc>) -> NewJob {
    NewJob {
        kind: kind.to_string(),
        dedupe_key: dedupe_key.map(str::to_string),
        key: None,
        payload: json!({ "kind": kind }),
        run_at,
        max_attempts: 3,
    }
}

const LEASE: Duration = Duration::from_secs(60);

// --- migrations and checkpoints ----------------------------------------------------------------

async fn migrations_are_idempotent(store: Arc<dyn Store>) {
    assert_eq!(store.schema_version().await.unwrap(), latest_schema_version());
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), latest_schema_version());
}

async fn schedules_are_stored_and_replaced(store: Arc<dyn Store>) {
    assert!(store.schedules().await.unwrap().is_empty());
    store.put_schedule("products", "every 300s", time(10)).await.unwrap();
    store.put_schedule("orders#reconcile", "every 3600s", time(20)).await.unwrap();
    store.put_schedule("products", "cron 0 * * * * UTC", time(30)).await.unwrap();
    let stored = store.schedules().await.unwrap();
    assert_eq!(
        stored,
        vec![
            StoredSchedule { name: "orders#reconcile".into(), spec: "every 3600s".into(), next_run_at: time(20) },
            StoredSchedule { name: "products".into(), spec: "cron 0 * * * * UTC".into(), next_run_at: time(30) },
        ]
    );
}

async fn record_states_are_committed_with_the_page(store: Arc<dyn Store>) {
    let run = start_run(&*store, "products", time(0)).await;
    let mut commit = page(run, vec![created("A", 1), created("B", 2)]);
    commit.states = vec![
        StateWrite { outcome: 0, system: "erp".into(), payload: json!({ "sku": "A", "price": "1.00" }) },
        StateWrite { outcome: 0, system: "shop".into(), payload: json!({ "sku": "A", "price": "1.00", "x": 1 }) },
        StateWrite { outcome: 1, system: "erp".into(), payload: json!({ "sku": "B" }) },
    ];
    let uids = store.commit_page(&commit).await.unwrap();
    let erp = store.record_states("erp", &uids).await.unwrap();
    assert_eq!(erp.len(), 2);
    assert_eq!(erp[&uids[0]], json!({ "sku": "A", "price": "1.00" }));
    let shop = store.record_states("shop", &uids).await.unwrap();
    assert_eq!(shop.len(), 1);
    assert_eq!(shop[&uids[0]]["x"], json!(1));

    // A later page replaces the state.
    let mut update =
        page(run, vec![RecordOutcome { record_uid: Some(uids[0]), ..outcome("A", RecordAction::Unchanged) }]);
    update.states =
        vec![StateWrite { outcome: 0, system: "erp".into(), payload: json!({ "sku": "A", "price": "2.00" }) }];
    store.commit_page(&update).await.unwrap();
    let erp = store.record_states("erp", &uids[..1]).await.unwrap();
    assert_eq!(erp[&uids[0]]["price"], json!("2.00"));
    assert!(store.record_states("erp", &[]).await.unwrap().is_empty());
}

async fn linked_records_are_those_in_step_in_the_target(store: Arc<dyn Store>) {
    let run = start_run(&*store, "products", time(0)).await;
    let uids = store.commit_page(&page(run, vec![created("A", 1), created("B", 2), failed("C", "bad")])).await.unwrap();
    let linked = store.linked_records(EntityKind::Product, "erp", "shop").await.unwrap();
    let ids: Vec<(&str, &str)> = linked.iter().map(|l| (l.source_id.as_str(), l.target_id.as_str())).collect();
    assert_eq!(ids, vec![("A", "shop-A"), ("B", "shop-B")]);
    assert!(store.linked_records(EntityKind::Customer, "erp", "shop").await.unwrap().is_empty());
    // Deleted in the target: no longer in step, so a second reconciliation does not delete it again.
    let deleted = RecordOutcome { record_uid: Some(uids[0]), log: true, ..outcome("A", RecordAction::Deleted) };
    store.commit_page(&page(run, vec![deleted])).await.unwrap();
    let linked = store.linked_records(EntityKind::Product, "erp", "shop").await.unwrap();
    assert_eq!(linked.iter().map(|l| l.source_id.as_str()).collect::<Vec<_>>(), vec!["B"]);
}

async fn checkpoints_roundtrip_and_reset(store: Arc<dyn Store>) {
    assert_eq!(store.checkpoint("products", "erp").await.unwrap(), None);
    let first = Checkpoint { watermark: Some(time(10)), cursor: Some("cursor-1".to_string()) };
    store.put_checkpoint("products", "erp", &first).await.unwrap();
    assert_eq!(store.checkpoint("products", "erp").await.unwrap(), Some(first.clone()));

    let second = Checkpoint { watermark: None, cursor: Some("cursor-2".to_string()) };
    store.put_checkpoint("products", "erp", &second).await.unwrap();
    store.put_checkpoint("orders", "shop", &first).await.unwrap();
    assert_eq!(store.checkpoint("products", "erp").await.unwrap(), Some(second));
    assert_eq!(store.checkpoint("products", "pim").await.unwrap(), None);

    store.reset_checkpoint("products", "erp").await.unwrap();
    store.reset_checkpoint("products", "erp").await.unwrap();
    assert_eq!(store.checkpoint("products", "erp").await.unwrap(), None);
    assert_eq!(store.checkpoint("orders", "shop").await.unwrap(), Some(first));
}

// --- links and snapshots -----------------------------------------------------------------------

async fn lookup_of_unknown_records_is_empty(store: Arc<dyn Store>) {
    assert_eq!(lookup(&*store, &[]).await, Vec::new());
    let states = lookup(&*store, &[("e1", None), ("e2", Some("SKU-2"))]).await;
    assert_eq!(states, vec![LinkState::default(), LinkState::default()]);
}

async fn lookup_by_source_id_after_commit(store: Arc<dyn Store>) {
    let run = start_run(&*store, "products", time(0)).await;
    let mut with_origin = created("e1", 1);
    with_origin.natural_key = Some("SKU-1".to_string());
    with_origin.origin = Some("products.csv:row 2".to_string());
    let uids = store.commit_page(&page(run, vec![with_origin, created("e2", 2)])).await.unwrap();
    assert_eq!(uids.len(), 2);
    assert_ne!(uids[0], uids[1]);

    let states = lookup(&*store, &[("e2", None), ("e1", Some("SKU-1")), ("e3", None)]).await;
    assert_eq!(
        states,
        vec![
            LinkState {
                record_uid: Some(uids[1]),
                matched_by_natural_key: false,
                target_id: Some("shop-e2".to_string()),
                target_hash: Some(hash(2)),
                last_origin: None,
                source_hash: None,
            },
            LinkState {
                record_uid: Some(uids[0]),
                matched_by_natural_key: false,
                target_id: Some("shop-e1".to_string()),
                target_hash: Some(hash(1)),
                last_origin: Some("products.csv:row 2".to_string()),
                source_hash: None,
            },
            LinkState::default(),
        ]
    );

    // The same source id from another source system is another record.
    assert_eq!(lookup_from(&*store, "pim", &[("e1", None)]).await, vec![LinkState::default()]);
}

/// Two-way sync: a flow shop → erp reading back what the flow erp → shop wrote finds that
/// write's hash as `source_hash`, which is how the engine recognises the echo.
async fn lookup_in_the_other_direction_sees_what_was_written_to_the_source(store: Arc<dyn Store>) {
    let run = start_run(&*store, "products", time(0)).await;
    let uids = store.commit_page(&page(run, vec![created("e1", 7)])).await.unwrap();
    let back = store
        .lookup_links(&LinkQuery {
            entity: EntityKind::Product,
            source_system: "shop",
            target_system: "erp",
            items: vec![LinkQueryItem { source_id: "shop-e1", natural_key: None }],
        })
        .await
        .unwrap();
    assert_eq!(back[0].record_uid, Some(uids[0]));
    assert_eq!(back[0].target_id.as_deref(), Some("e1"));
    assert_eq!(back[0].source_hash, Some(hash(7)), "the hash last written to the shop");
    assert_eq!(back[0].target_hash, None, "nothing was written to the erp yet");
    // In the forward direction there is no write to the source.
    assert_eq!(lookup(&*store, &[("e1", None)]).await[0].source_hash, None);
}

async fn lookup_by_natural_key(store: Arc<dyn Store>) {
    let run = start_run(&*store, "products", time(0)).await;
    let mut first = created("e1", 1);
    first.natural_key = Some("SKU-1".to_string());
    let uids = store.commit_page(&page(run, vec![first])).await.unwrap();

    // Another source system knows the same product by its SKU.
    let states = lookup_from(&*store, "pim", &[("p1", Some("SKU-1")), ("p2", Some("SKU-2"))]).await;
    assert_eq!(
        states[0],
        LinkState {
            record_uid: Some(uids[0]),
            matched_by_natural_key: true,
            target_id: Some("shop-e1".to_string()),
            target_hash: Some(hash(1)),
            last_origin: None,
            source_hash: None,
        }
    );
    assert_eq!(states[1], LinkState::default());

    // Once linked, the pim id finds the record by link.
    let mut pim_page =
        page(run, vec![RecordOutcome { record_uid: Some(uids[0]), ..outcome("p1", RecordAction::Unchanged) }]);
    pim_page.source_system = "pim".to_string();
    store.commit_page(&pim_page).await.unwrap();
    let states = lookup_from(&*store, "pim", &[("p1", Some("SKU-1"))]).await;
    assert_eq!(states[0].record_uid, Some(uids[0]));
    assert!(!states[0].matched_by_natural_key);
}

async fn natural_key_does_not_match_a_record_linked_to_another_source_id(store: Arc<dyn Store>) {
    let run = start_run(&*store, "products", time(0)).await;
    let mut first = created("e1", 1);
    first.natural_key = Some("SKU-1".to_string());
    store.commit_page(&page(run, vec![first])).await.unwrap();

    // e2 has the same SKU in the same source: it is another record, not e1's.
    let states = lookup(&*store, &[("e2", Some("SKU-1"))]).await;
    assert_eq!(states, vec![LinkState::default()]);
}

async fn lookup_keeps_order_of_a_large_page(store: Arc<dyn Store>) {
    let run = start_run(&*store, "products", time(0)).await;
    let n = 1500;
    let outcomes: Vec<RecordOutcome> = (0..n)
        .map(|i| {
            let source_id = format!("e{i}");
            let mut outcome = created(&source_id, (i % 251) as u8);
            outcome.log = false;
            if i % 3 == 0 {
                // Every third record has no target yet.
                outcome.target_id = None;
                outcome.target_hash = None;
                outcome.action = RecordAction::Skipped;
            }
            outcome
        })
        .collect();
    let uids = store.commit_page(&page(run, outcomes)).await.unwrap();
    assert_eq!(uids.len(), n);
    assert_eq!(uids.iter().collect::<HashSet<_>>().len(), n);

    // Query in a scrambled order, with unknown ids in between.
    let order: Vec<usize> = (0..n).map(|i| (i * 7919) % n).collect();
    let ids: Vec<String> = order.iter().flat_map(|i| [format!("e{i}"), format!("unknown-{i}")]).collect();
    let items: Vec<(&str, Option<&str>)> = ids.iter().map(|id| (id.as_str(), None)).collect();
    let states = lookup(&*store, &items).await;
    assert_eq!(states.len(), 2 * n);
    for (position, i) in order.iter().enumerate() {
        let state = &states[2 * position];
        assert_eq!(state.record_uid, Some(uids[*i]), "record e{i}");
        if i % 3 == 0 {
            assert_eq!(state.target_id, None, "record e{i}");
            assert_eq!(state.target_hash, None, "record e{i}");
        } else {
            assert_eq!(state.target_id, Some(format!("shop-e{i}")), "record e{i}");
            assert_eq!(state.target_hash, Some(hash((i % 251) as u8)), "record e{i}");
        }
        assert_eq!(states[2 * position + 1], LinkState::default());
    }
}

async fn commit_allocates_one_record_per_source_id(store: Arc<dyn Store>) {
    let run = start_run(&*store, "products", time(0)).await;
    // The same source id twice in one page (a duplicate row) gets one record.
    let uids = store.commit_page(&page(run, vec![created("e1", 1), created("e2", 2), created("e1", 3)])).await.unwrap();
    assert_eq!(uids[0], uids[2]);
    assert_ne!(uids[0], uids[1]);
    // The last outcome wins.
    assert_eq!(lookup(&*store, &[("e1", None)]).await[0].target_hash, Some(hash(3)));

    // A later page that does not pass the identity gets the linked one, not a new record.
    let again = store.commit_page(&page(run, vec![outcome("e1", RecordAction::Skipped)])).await.unwrap();
    assert_eq!(again, vec![uids[0]]);
    assert_eq!(store.find_records("e1").await.unwrap().len(), 1);
}

async fn commit_is_atomic_when_the_run_is_missing(store: Arc<dyn Store>) {
    let mut bad = page(
        987_654,
        vec![created("e1", 1), failed("e2", "price missing"), {
            let mut with_key = created("e3", 3);
            with_key.natural_key = Some("SKU-3".to_string());
            with_key
        }],
    );
    bad.checkpoint = Some(Checkpoint { watermark: Some(time(5)), cursor: None });
    let error = store.commit_page(&bad).await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound { what: "run", id: 987_654 }), "{error}");
    assert_nothing_committed(&*store).await;
}

async fn commit_is_atomic_when_a_record_is_unknown(store: Arc<dyn Store>) {
    let run = start_run(&*store, "products", time(0)).await;
    let mut bad = page(
        run,
        vec![created("e1", 1), failed("e2", "price missing"), {
            let mut unknown = created("e3", 3);
            unknown.record_uid = Some(424_242);
            unknown
        }],
    );
    bad.checkpoint = Some(Checkpoint { watermark: Some(time(5)), cursor: None });
    let error = store.commit_page(&bad).await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound { what: "record", id: 424_242 }), "{error}");
    assert_nothing_committed(&*store).await;
    assert_eq!(store.run(run).await.unwrap().unwrap().counts, RunCounts::default());

    // The same page without the bad record commits, and the failed ones are usable again.
    bad.outcomes.pop();
    let uids = store.commit_page(&bad).await.unwrap();
    assert_eq!(uids.len(), 2);
    assert_eq!(store.checkpoint("products", "erp").await.unwrap(), bad.checkpoint);
}

async fn assert_nothing_committed(store: &dyn Store) {
    assert_eq!(
        lookup(store, &[("e1", None), ("e2", None), ("e3", Some("SKU-3"))]).await,
        vec![LinkState::default(); 3]
    );
    assert_eq!(store.checkpoint("products", "erp").await.unwrap(), None);
    let dead_letters = store.list_dead_letters(&DeadLetterFilter::default()).await.unwrap();
    assert!(dead_letters.is_empty(), "{dead_letters:?}");
    assert!(store.find_records("e1").await.unwrap().is_empty());
    assert!(store.find_records("SKU-3").await.unwrap().is_empty());
    assert!(store.count_open_dead_letters().await.unwrap().is_empty());
}

async fn unchanged_outcomes_keep_the_snapshot(store: Arc<dyn Store>) {
    let run = start_run(&*store, "products", time(0)).await;
    let uids = store.commit_page(&page(run, vec![created("e1", 1)])).await.unwrap();

    // The engine passes no hash for an unchanged record; the stored one stays, and the origin
    // of this read is recorded.
    let unchanged = RecordOutcome {
        record_uid: Some(uids[0]),
        target_id: Some("shop-e1".to_string()),
        origin: Some("products.csv:row 9".to_string()),
        ..outcome("e1", RecordAction::Unchanged)
    };
    let again = store.commit_page(&page(run, vec![unchanged])).await.unwrap();
    assert_eq!(again, uids);
    let state = &lookup(&*store, &[("e1", None)]).await[0];
    assert_eq!(state.target_hash, Some(hash(1)));
    assert_eq!(state.target_id.as_deref(), Some("shop-e1"));
    assert_eq!(state.last_origin.as_deref(), Some("products.csv:row 9"));

    // An update replaces the hash.
    let updated =
        RecordOutcome { record_uid: Some(uids[0]), target_hash: Some(hash(2)), ..outcome("e1", RecordAction::Updated) };
    store.commit_page(&page(run, vec![updated])).await.unwrap();
    let state = &lookup(&*store, &[("e1", None)]).await[0];
    assert_eq!(state.target_hash, Some(hash(2)));
    assert_eq!(state.last_origin.as_deref(), Some("products.csv:row 9"));
}

async fn deleted_outcome_clears_the_hash(store: Arc<dyn Store>) {
    let run = start_run(&*store, "products", time(0)).await;
    let uids = store.commit_page(&page(run, vec![created("e1", 1)])).await.unwrap();
    let deleted = RecordOutcome { record_uid: Some(uids[0]), ..outcome("e1", RecordAction::Deleted) };
    store.commit_page(&page(run, vec![deleted])).await.unwrap();
    let state = &lookup(&*store, &[("e1", None)]).await[0];
    assert_eq!(state.record_uid, Some(uids[0]));
    assert_eq!(state.target_hash, None);
    // The link stays, for the trace and in case the record comes back.
    assert_eq!(state.target_id.as_deref(), Some("shop-e1"));
}

async fn failed_outcomes_leave_the_snapshot_alone(store: Arc<dyn Store>) {
    let run = start_run(&*store, "products", time(0)).await;
    let mut first = created("e1", 1);
    first.origin = Some("a.csv:row 1".to_string());
    let uids = store.commit_page(&page(run, vec![first])).await.unwrap();
    let mut failure = failed("e1", "stock negative");
    failure.record_uid = Some(uids[0]);
    failure.origin = Some("b.csv:row 1".to_string());
    failure.target_hash = Some(hash(9));
    store.commit_page(&page(run, vec![failure])).await.unwrap();
    let state = &lookup(&*store, &[("e1", None)]).await[0];
    assert_eq!(state.target_hash, Some(hash(1)));
    assert_eq!(state.last_origin.as_deref(), Some("a.csv:row 1"));
}

async fn target_link_is_replaced_when_the_target_id_changes(store: Arc<dyn Store>) {
    let run = start_run(&*store, "products", time(0)).await;
    let uids = store.commit_page(&page(run, vec![created("e1", 1), created("e2", 2)])).await.unwrap();

    // e1 was re-created in the shop under a new id.
    let recreated = RecordOutcome {
        record_uid: Some(uids[0]),
        target_id: Some("shop-new".to_string()),
        target_hash: Some(hash(3)),
        ..outcome("e1", RecordAction::Created)
    };
    store.commit_page(&page(run, vec![recreated])).await.unwrap();
    assert_eq!(lookup(&*store, &[("e1", None)]).await[0].target_id.as_deref(), Some("shop-new"));
    assert!(store.find_records("shop-e1").await.unwrap().is_empty());

    // e2 is matched to the shop record e1 had: the link moves, the last write wins.
    let moved = RecordOutcome {
        record_uid: Some(uids[1]),
        target_id: Some("shop-new".to_string()),
        ..outcome("e2", RecordAction::Updated)
    };
    store.commit_page(&page(run, vec![moved])).await.unwrap();
    let states = lookup(&*store, &[("e1", None), ("e2", None)]).await;
    assert_eq!(states[0].target_id, None);
    assert_eq!(states[1].target_id.as_deref(), Some("shop-new"));
    let found = store.find_records("shop-new").await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].record_uid, uids[1]);
}

async fn natural_key_changes_are_stored(store: Arc<dyn Store>) {
    let run = start_run(&*store, "products", time(0)).await;
    let mut first = created("e1", 1);
    first.natural_key = Some("OLD-SKU".to_string());
    let uids = store.commit_page(&page(run, vec![first])).await.unwrap();
    let renamed = RecordOutcome {
        record_uid: Some(uids[0]),
        natural_key: Some("NEW-SKU".to_string()),
        ..outcome("e1", RecordAction::Unchanged)
    };
    store.commit_page(&page(run, vec![renamed])).await.unwrap();
    assert!(store.find_records("OLD-SKU").await.unwrap().is_empty());
    let found = store.find_records("NEW-SKU").await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].natural_key.as_deref(), Some("NEW-SKU"));
}

async fn resync_page_writes_exactly_what_changed(store: Arc<dyn Store>) {
    let run = start_run(&*store, "products", time(0)).await;
    let first: Vec<RecordOutcome> = (1..=6)
        .map(|i| {
            let mut outcome = created(&format!("e{i}"), i);
            outcome.natural_key = Some(format!("SKU-{i}"));
            outcome.origin = Some(format!("a.csv:row {i}"));
            outcome
        })
        .collect();
    let uids = store.commit_page(&page(run, first)).await.unwrap();

    // A re-sync: every outcome names its record, as the engine does after `lookup_links`.
    let unchanged = |i: usize| RecordOutcome {
        record_uid: Some(uids[i - 1]),
        natural_key: Some(format!("SKU-{i}")),
        target_id: Some(format!("shop-e{i}")),
        ..outcome(&format!("e{i}"), RecordAction::Unchanged)
    };
    let outcomes = vec![
        unchanged(1),
        RecordOutcome { target_id: Some("shop-e2-new".to_string()), ..unchanged(2) },
        RecordOutcome { natural_key: Some("SKU-3-new".to_string()), ..unchanged(3) },
        RecordOutcome { action: RecordAction::Updated, target_hash: Some(hash(40)), ..unchanged(4) },
        RecordOutcome { action: RecordAction::Deleted, ..unchanged(5) },
        RecordOutcome { origin: Some("b.csv:row 6".to_string()), ..unchanged(6) },
    ];
    let again = store.commit_page(&page(run, outcomes)).await.unwrap();
    assert_eq!(again, uids);

    let ids: Vec<String> = (1..=6).map(|i| format!("e{i}")).collect();
    let items: Vec<(&str, Option<&str>)> = ids.iter().map(|id| (id.as_str(), None)).collect();
    let states = lookup(&*store, &items).await;
    let expected = |i: usize, target_id: &str, hash_byte: Option<u8>, origin: &str| LinkState {
        record_uid: Some(uids[i - 1]),
        matched_by_natural_key: false,
        target_id: Some(target_id.to_string()),
        target_hash: hash_byte.map(hash),
        last_origin: Some(origin.to_string()),
        source_hash: None,
    };
    assert_eq!(
        states,
        vec![
            expected(1, "shop-e1", Some(1), "a.csv:row 1"),
            expected(2, "shop-e2-new", Some(2), "a.csv:row 2"),
            expected(3, "shop-e3", Some(3), "a.csv:row 3"),
            expected(4, "shop-e4", Some(40), "a.csv:row 4"),
            expected(5, "shop-e5", None, "a.csv:row 5"),
            expected(6, "shop-e6", Some(6), "b.csv:row 6"),
        ]
    );
    assert!(store.find_records("shop-e2").await.unwrap().is_empty());
    assert_eq!(store.find_records("SKU-3-new").await.unwrap()[0].record_uid, uids[2]);
    assert_eq!(store.run(run).await.unwrap().unwrap().counts.unchanged, 4);
}

async fn record_twice_in_a_page_keeps_its_hash(store: Arc<dyn Store>) {
    let run = start_run(&*store, "products", time(0)).await;
    let uids = store.commit_page(&page(run, vec![created("e1", 1)])).await.unwrap();
    // The same row twice in a file: the first says nothing new, the second brings an origin.
    let twice = vec![
        RecordOutcome { record_uid: Some(uids[0]), ..outcome("e1", RecordAction::Unchanged) },
        RecordOutcome {
            record_uid: Some(uids[0]),
            origin: Some("a.csv:row 7".to_string()),
            ..outcome("e1", RecordAction::Unchanged)
        },
    ];
    assert_eq!(store.commit_page(&page(run, twice)).await.unwrap(), vec![uids[0], uids[0]]);
    let state = &lookup(&*store, &[("e1", None)]).await[0];
    assert_eq!(state.target_hash, Some(hash(1)));
    assert_eq!(state.target_id.as_deref(), Some("shop-e1"));
    assert_eq!(state.last_origin.as_deref(), Some("a.csv:row 7"));
}

// --- dead letters ------------------------------------------------------------------------------

async fn dead_letter_is_updated_then_resolved(store: Arc<dyn Store>) {
    let run = start_run(&*store, "products", time(0)).await;
    let mut first_failure = failed("e1", "price missing");
    first_failure.natural_key = Some("SKU-1".to_string());
    first_failure.origin = Some("products.csv:row 4".to_string());
    let uids = store.commit_page(&page(run, vec![first_failure, created("e2", 2)])).await.unwrap();

    let open = store
        .list_dead_letters(&DeadLetterFilter {
            flow: Some("products".to_string()),
            status: Some(DeadLetterStatus::Open),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(open.len(), 1);
    let dead_letter = &open[0];
    assert_eq!(dead_letter.source_id, "e1");
    assert_eq!(dead_letter.flow, "products");
    assert_eq!(dead_letter.entity, "product");
    assert_eq!(dead_letter.source_system, "erp");
    assert_eq!(dead_letter.target_system, "shop");
    assert_eq!(dead_letter.record_uid, Some(uids[0]));
    assert_eq!(dead_letter.natural_key.as_deref(), Some("SKU-1"));
    assert_eq!(dead_letter.origin.as_deref(), Some("products.csv:row 4"));
    assert_eq!(dead_letter.status, DeadLetterStatus::Open);
    assert_eq!(dead_letter.error_kind, "validation");
    assert_eq!(dead_letter.error, "price missing");
    assert_eq!(dead_letter.payload, json!({ "sku": "e1", "error": "price missing" }));
    assert_eq!(dead_letter.attempts, 1);
    assert_eq!(dead_letter.history.len(), 1);
    assert_eq!(dead_letter.history[0].event, "failed");
    assert_eq!(dead_letter.history[0].detail, "price missing");
    assert_eq!(dead_letter.history[0].at, time(0));
    assert_eq!(dead_letter.created_at, time(0));
    assert_eq!(store.count_open_dead_letters().await.unwrap(), vec![("products".to_string(), 1)]);

    // The second failure updates the same dead letter.
    let mut second = page(run, vec![failed("e1", "price still missing")]);
    second.outcomes[0].record_uid = Some(uids[0]);
    second.at = time(60);
    store.commit_page(&second).await.unwrap();
    let updated = store.dead_letter(dead_letter.id).await.unwrap().unwrap();
    assert_eq!(updated.attempts, 2);
    assert_eq!(updated.error, "price still missing");
    assert_eq!(updated.payload["error"], "price still missing");
    assert_eq!(updated.history.iter().map(|event| event.event.as_str()).collect::<Vec<_>>(), vec!["failed", "failed"]);
    assert_eq!(updated.updated_at, time(60));
    assert_eq!(store.list_dead_letters(&DeadLetterFilter::default()).await.unwrap().len(), 1);

    // A success resolves it.
    let mut success = page(run, vec![created("e1", 1)]);
    success.outcomes[0].record_uid = Some(uids[0]);
    success.at = time(120);
    store.commit_page(&success).await.unwrap();
    let resolved = store.dead_letter(dead_letter.id).await.unwrap().unwrap();
    assert_eq!(resolved.status, DeadLetterStatus::Resolved);
    assert_eq!(resolved.attempts, 2);
    assert_eq!(resolved.history.len(), 3);
    assert_eq!(resolved.history[2].event, "resolved");
    assert!(store.count_open_dead_letters().await.unwrap().is_empty());

    // A new failure after that opens a new dead letter.
    store.commit_page(&page(run, vec![failed("e1", "broken again")])).await.unwrap();
    let all = store.list_dead_letters(&DeadLetterFilter::default()).await.unwrap();
    assert_eq!(all.len(), 2);
    let reopened = all.iter().find(|dead_letter| dead_letter.status == DeadLetterStatus::Open).unwrap();
    assert_ne!(reopened.id, dead_letter.id);
    assert_eq!(reopened.attempts, 1);
}

async fn dead_letter_of_another_target_is_not_resolved(store: Arc<dyn Store>) {
    let run = start_run(&*store, "products", time(0)).await;
    store.commit_page(&page(run, vec![failed("e1", "tax class unknown")])).await.unwrap();
    // The same flow writes the record to a second target successfully.
    let mut other_target = page(run, vec![created("e1", 1)]);
    other_target.target_system = "marketplace".to_string();
    store.commit_page(&other_target).await.unwrap();
    assert_eq!(store.count_open_dead_letters().await.unwrap(), vec![("products".to_string(), 1)]);
}

async fn dead_letter_status_and_payload_edits_are_in_history(store: Arc<dyn Store>) {
    let run = start_run(&*store, "products", time(0)).await;
    store.commit_page(&page(run, vec![failed("e1", "price missing")])).await.unwrap();
    let id = store.list_dead_letters(&DeadLetterFilter::default()).await.unwrap()[0].id;

    let edited = json!({ "sku": "e1", "price": "9.90" });
    store.update_dead_letter_payload(id, &edited, "price added by anna").await.unwrap();
    store.set_dead_letter_status(id, DeadLetterStatus::Retrying, "retry requested").await.unwrap();
    assert_eq!(store.count_open_dead_letters().await.unwrap(), vec![("products".to_string(), 1)]);
    store.set_dead_letter_status(id, DeadLetterStatus::Discarded, "not sold any more").await.unwrap();

    let dead_letter = store.dead_letter(id).await.unwrap().unwrap();
    assert_eq!(dead_letter.status, DeadLetterStatus::Discarded);
    assert_eq!(dead_letter.payload, edited);
    let events: Vec<(&str, &str)> =
        dead_letter.history.iter().map(|event| (event.event.as_str(), event.detail.as_str())).collect();
    assert_eq!(
        events,
        vec![
            ("failed", "price missing"),
            ("edited", "price added by anna"),
            ("retrying", "retry requested"),
            ("discarded", "not sold any more"),
        ]
    );
    assert!(store.count_open_dead_letters().await.unwrap().is_empty());
    assert!(
        store
            .list_dead_letters(&DeadLetterFilter {
                status: Some(DeadLetterStatus::Open),
                ..DeadLetterFilter::default()
            })
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_dead_letters(&DeadLetterFilter { flow: Some("orders".to_string()), ..DeadLetterFilter::default() })
            .await
            .unwrap()
            .is_empty()
    );

    assert!(matches!(
        store.set_dead_letter_status(99_999, DeadLetterStatus::Open, "").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(store.update_dead_letter_payload(99_999, &edited, "").await, Err(StoreError::NotFound { .. })));
    assert_eq!(store.dead_letter(99_999).await.unwrap(), None);
}

// --- jobs --------------------------------------------------------------------------------------

async fn jobs_are_deduplicated_while_pending_or_running(store: Arc<dyn Store>) {
    let now = Utc::now();
    let first = store
        .enqueue_job(&new_job("pull", Some("pull:products"), now))
        .await
        .unwrap()
        .expect("the first job with a key is enqueued");
    assert_eq!(store.enqueue_job(&new_job("pull", Some("pull:products"), now)).await.unwrap(), None);
    // Jobs without a key are never deduplicated.
    assert!(store.enqueue_job(&new_job("pull", None, now)).await.unwrap().is_some());
    assert!(store.enqueue_job(&new_job("pull", None, now)).await.unwrap().is_some());

    let claimed = store.claim_jobs("w1", &["pull"], LEASE, 1).await.unwrap();
    assert_eq!(claimed[0].id, first);
    assert_eq!(
        store.enqueue_job(&new_job("pull", Some("pull:products"), now)).await.unwrap(),
        None,
        "a running job holds its key"
    );
    store.complete_job(first, "w1").await.unwrap();
    assert!(
        store.enqueue_job(&new_job("pull", Some("pull:products"), now)).await.unwrap().is_some(),
        "a finished job frees its key"
    );
}

async fn jobs_are_claimed_when_due_in_order_and_by_kind(store: Arc<dyn Store>) {
    let now = Utc::now();
    let later = store.enqueue_job(&new_job("push", None, now - ChronoDuration::seconds(10))).await.unwrap().unwrap();
    let earlier = store.enqueue_job(&new_job("push", None, now - ChronoDuration::seconds(20))).await.unwrap().unwrap();
    let future = store.enqueue_job(&new_job("push", None, now + ChronoDuration::hours(1))).await.unwrap().unwrap();
    let other_kind =
        store.enqueue_job(&new_job("reconcile", None, now - ChronoDuration::seconds(30))).await.unwrap().unwrap();

    assert!(store.claim_jobs("w1", &[], LEASE, 10).await.unwrap().is_empty());
    let claimed = store.claim_jobs("w1", &["push"], LEASE, 10).await.unwrap();
    assert_eq!(claimed.iter().map(|job| job.id).collect::<Vec<_>>(), vec![earlier, later]);
    for job in &claimed {
        assert_eq!(job.state, JobState::Running);
        assert_eq!(job.lease_owner.as_deref(), Some("w1"));
        assert_eq!(job.attempts, 0);
        assert_eq!(job.payload, json!({ "kind": "push" }));
        let lease_until = job.lease_until.expect("a claimed job has a lease");
        assert!(lease_until > now + ChronoDuration::seconds(50));
    }
    assert_eq!(store.job(future).await.unwrap().unwrap().state, JobState::Pending);

    let claimed = store.claim_jobs("w2", &["push", "reconcile"], LEASE, 10).await.unwrap();
    assert_eq!(claimed.iter().map(|job| job.id).collect::<Vec<_>>(), vec![other_kind]);
    assert_eq!(store.list_jobs(Some(JobState::Running), 10).await.unwrap().len(), 3);
    assert_eq!(store.list_jobs(None, 10).await.unwrap().len(), 4);
    assert_eq!(store.list_jobs(None, 2).await.unwrap().len(), 2);
}

async fn concurrent_claimers_never_take_the_same_job(store: Arc<dyn Store>) {
    let now = Utc::now() - ChronoDuration::seconds(1);
    let n_jobs = 300;
    for _ in 0..n_jobs {
        store.enqueue_job(&new_job("push", None, now)).await.unwrap();
    }
    let mut claimers = Vec::new();
    for worker in 0..4 {
        let store = Arc::clone(&store);
        claimers.push(tokio::spawn(async move {
            let worker = format!("w{worker}");
            let mut taken = Vec::new();
            loop {
                let jobs = store.claim_jobs(&worker, &["push"], LEASE, 7).await.unwrap();
                if jobs.is_empty() {
                    return taken;
                }
                for job in jobs {
                    assert_eq!(job.lease_owner.as_deref(), Some(worker.as_str()));
                    store.complete_job(job.id, &worker).await.unwrap();
                    taken.push(job.id);
                }
            }
        }));
    }
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }
    let unique: HashSet<JobId> = all.iter().copied().collect();
    assert_eq!(all.len(), n_jobs, "every job claimed exactly once");
    assert_eq!(unique.len(), n_jobs);
    assert_eq!(store.list_jobs(Some(JobState::Done), 1000).await.unwrap().len(), n_jobs);
}

/// Jobs of one key are claimed one at a time, oldest first, by concurrent claimers; other keys
/// and jobs without a key go on beside them.
async fn keyed_jobs_run_one_at_a_time_in_order(store: Arc<dyn Store>) {
    let now = Utc::now() - ChronoDuration::seconds(1);
    let (n_keys, per_key) = (6, 12);
    for index in 0..per_key {
        for key in 0..n_keys {
            let mut job = new_job("push", None, now);
            job.key = Some(format!("order:{key}"));
            job.payload = json!({ "key": key, "index": index });
            store.enqueue_job(&job).await.unwrap();
        }
    }
    let running: Arc<std::sync::Mutex<HashSet<i64>>> = Arc::default();
    let done: Arc<std::sync::Mutex<Vec<(i64, i64)>>> = Arc::default();
    let mut claimers = Vec::new();
    for worker in 0..4 {
        let (store, running, done) = (Arc::clone(&store), Arc::clone(&running), Arc::clone(&done));
        claimers.push(tokio::spawn(async move {
            let worker = format!("w{worker}");
            let mut idle = 0;
            while idle < 20 {
                let jobs = store.claim_jobs(&worker, &["push"], LEASE, 3).await.unwrap();
                if jobs.is_empty() {
                    idle += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                idle = 0;
                let keys: HashSet<i64> = jobs.iter().map(|job| job.payload["key"].as_i64().unwrap()).collect();
                assert_eq!(keys.len(), jobs.len(), "one claim took two jobs of one key");
                for job in jobs {
                    let key = job.payload["key"].as_i64().unwrap();
                    assert!(running.lock().unwrap().insert(key), "two jobs of key {key} claimed at once");
                    tokio::task::yield_now().await;
                    done.lock().unwrap().push((key, job.payload["index"].as_i64().unwrap()));
                    running.lock().unwrap().remove(&key);
                    store.complete_job(job.id, &worker).await.unwrap();
                }
            }
        }));
    }
    for claimer in claimers {
        claimer.await.unwrap();
    }
    let done = done.lock().unwrap().clone();
    assert_eq!(done.len(), n_keys * per_key, "every job ran once");
    for key in 0..n_keys as i64 {
        let order: Vec<i64> = done.iter().filter(|(k, _)| *k == key).map(|(_, index)| *index).collect();
        assert_eq!(order, (0..per_key as i64).collect::<Vec<_>>(), "key {key} ran in order");
    }
}

/// A running job holds its key; a job without a key is never held back.
async fn a_running_job_holds_its_key(store: Arc<dyn Store>) {
    let now = Utc::now() - ChronoDuration::seconds(1);
    let keyed = |key: &str| NewJob { key: Some(key.to_string()), ..new_job("push", None, now) };
    let first = store.enqueue_job(&keyed("a")).await.unwrap().unwrap();
    let second = store.enqueue_job(&keyed("a")).await.unwrap().unwrap();
    let other = store.enqueue_job(&keyed("b")).await.unwrap().unwrap();
    let free = store.enqueue_job(&new_job("push", None, now)).await.unwrap().unwrap();
    let claimed: Vec<JobId> =
        store.claim_jobs("w1", &["push"], LEASE, 10).await.unwrap().iter().map(|j| j.id).collect();
    assert_eq!(claimed, vec![first, other, free]);
    assert!(store.claim_jobs("w2", &["push"], LEASE, 10).await.unwrap().is_empty(), "key a is held");
    // Released (handed back), the oldest job of the key is first again.
    store.release_job(first, "w1").await.unwrap();
    let claimed: Vec<JobId> =
        store.claim_jobs("w2", &["push"], LEASE, 10).await.unwrap().iter().map(|j| j.id).collect();
    assert_eq!(claimed, vec![first]);
    store.complete_job(first, "w2").await.unwrap();
    let claimed: Vec<JobId> =
        store.claim_jobs("w2", &["push"], LEASE, 10).await.unwrap().iter().map(|j| j.id).collect();
    assert_eq!(claimed, vec![second]);
}

async fn expired_leases_are_reclaimed_and_count_as_attempts(store: Arc<dyn Store>) {
    let now = Utc::now() - ChronoDuration::seconds(1);
    let mut job = new_job("push", Some("push:1"), now);
    job.max_attempts = 2;
    let id = store.enqueue_job(&job).await.unwrap().unwrap();

    // A live lease is not reclaimed.
    store.claim_jobs("w1", &["push"], LEASE, 1).await.unwrap();
    assert_eq!(store.reclaim_expired_jobs().await.unwrap(), 0);
    store.release_job(id, "w1").await.unwrap();

    // The worker dies holding a short lease.
    store.claim_jobs("w1", &["push"], Duration::from_millis(1), 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.reclaim_expired_jobs().await.unwrap(), 1);
    let reclaimed = store.job(id).await.unwrap().unwrap();
    assert_eq!(reclaimed.state, JobState::Pending);
    assert_eq!(reclaimed.attempts, 1);
    assert_eq!(reclaimed.last_error.as_deref(), Some("lease expired"));
    assert_eq!(reclaimed.lease_owner, None);
    assert_eq!(reclaimed.lease_until, None);
    // The dead worker's late calls are refused.
    assert!(!store.heartbeat_job(id, "w1", LEASE).await.unwrap());
    assert!(matches!(store.complete_job(id, "w1").await, Err(StoreError::LeaseLost { .. })));

    // The second crash uses up the attempts: the job is dead, not retried forever.
    store.claim_jobs("w2", &["push"], Duration::from_millis(1), 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.reclaim_expired_jobs().await.unwrap(), 1);
    let dead = store.job(id).await.unwrap().unwrap();
    assert_eq!(dead.state, JobState::Dead);
    assert_eq!(dead.attempts, 2);
    assert!(store.claim_jobs("w3", &["push"], LEASE, 1).await.unwrap().is_empty());
    // A dead job frees its dedupe key.
    assert!(store.enqueue_job(&job).await.unwrap().is_some());
}

async fn failed_jobs_retry_then_die(store: Arc<dyn Store>) {
    let now = Utc::now() - ChronoDuration::seconds(1);
    let id = store.enqueue_job(&new_job("push", None, now)).await.unwrap().unwrap();
    for attempt in 1..=3 {
        let claimed = store.claim_jobs("w1", &["push"], LEASE, 1).await.unwrap();
        assert_eq!(claimed.len(), 1, "attempt {attempt}");
        let retry_at = Utc::now() - ChronoDuration::milliseconds(1);
        let state = store.fail_job(id, "w1", &format!("timeout {attempt}"), Some(retry_at)).await.unwrap();
        let job = store.job(id).await.unwrap().unwrap();
        assert_eq!(job.attempts, attempt);
        assert_eq!(job.last_error, Some(format!("timeout {attempt}")));
        assert_eq!(job.lease_owner, None);
        if attempt < 3 {
            assert_eq!(state, JobState::Pending);
            assert_eq!(job.state, JobState::Pending);
        } else {
            assert_eq!(state, JobState::Dead);
            assert_eq!(job.state, JobState::Dead);
        }
    }

    // The retry time is honoured.
    let id = store.enqueue_job(&new_job("push", None, now)).await.unwrap().unwrap();
    store.claim_jobs("w1", &["push"], LEASE, 1).await.unwrap();
    let retry_at = Utc::now() + ChronoDuration::hours(1);
    store.fail_job(id, "w1", "429", Some(retry_at)).await.unwrap();
    assert!(store.claim_jobs("w1", &["push"], LEASE, 1).await.unwrap().is_empty());
    let job = store.job(id).await.unwrap().unwrap();
    assert_eq!(job.run_at.timestamp_micros(), retry_at.timestamp_micros());

    // Without a retry time a failure is final.
    let id = store.enqueue_job(&new_job("pull", None, now)).await.unwrap().unwrap();
    store.claim_jobs("w1", &["pull"], LEASE, 1).await.unwrap();
    assert_eq!(store.fail_job(id, "w1", "bad config", None).await.unwrap(), JobState::Dead);
}

async fn released_jobs_are_pending_without_an_attempt(store: Arc<dyn Store>) {
    let now = Utc::now() - ChronoDuration::seconds(1);
    let id = store.enqueue_job(&new_job("push", None, now)).await.unwrap().unwrap();
    store.claim_jobs("w1", &["push"], LEASE, 1).await.unwrap();
    store.release_job(id, "w1").await.unwrap();
    let job = store.job(id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Pending);
    assert_eq!(job.attempts, 0);
    assert_eq!(job.lease_owner, None);
    assert_eq!(job.lease_until, None);
    let claimed = store.claim_jobs("w2", &["push"], LEASE, 1).await.unwrap();
    assert_eq!(claimed[0].id, id);
}

async fn only_the_lease_owner_may_touch_a_job(store: Arc<dyn Store>) {
    let now = Utc::now() - ChronoDuration::seconds(1);
    let id = store.enqueue_job(&new_job("push", None, now)).await.unwrap().unwrap();
    let claimed = store.claim_jobs("w1", &["push"], Duration::from_secs(5), 1).await.unwrap();
    let first_lease = claimed[0].lease_until.unwrap();

    assert!(!store.heartbeat_job(id, "w2", LEASE).await.unwrap());
    assert!(matches!(store.complete_job(id, "w2").await, Err(StoreError::LeaseLost { .. })));
    assert!(matches!(store.fail_job(id, "w2", "boom", None).await, Err(StoreError::LeaseLost { .. })));
    assert!(matches!(store.release_job(id, "w2").await, Err(StoreError::LeaseLost { .. })));
    let job = store.job(id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.attempts, 0);

    assert!(store.heartbeat_job(id, "w1", LEASE).await.unwrap());
    let extended = store.job(id).await.unwrap().unwrap().lease_until.unwrap();
    assert!(extended > first_lease);
    store.complete_job(id, "w1").await.unwrap();
    assert_eq!(store.job(id).await.unwrap().unwrap().state, JobState::Done);
    assert!(!store.heartbeat_job(id, "w1", LEASE).await.unwrap());
    assert_eq!(store.job(99_999).await.unwrap(), None);
}

// --- inbox -------------------------------------------------------------------------------------

async fn inbox_deduplicates_deliveries(store: Arc<dyn Store>) {
    let delivery = |system: &str, delivery_id: &str, received_at| NewInboxDelivery {
        system: system.to_string(),
        delivery_id: delivery_id.to_string(),
        topic: "orders/create".to_string(),
        headers: json!({ "x-shopify-topic": "orders/create" }),
        body: vec![0, 159, 146, 150, b'{', b'}'],
        received_at,
    };
    let InboxInsert::Inserted(second) = store.insert_inbox(&delivery("shop", "d-2", time(2))).await.unwrap() else {
        panic!("a new delivery is inserted");
    };
    let InboxInsert::Inserted(first) = store.insert_inbox(&delivery("shop", "d-1", time(1))).await.unwrap() else {
        panic!("a new delivery is inserted");
    };
    assert_eq!(store.insert_inbox(&delivery("shop", "d-1", time(3))).await.unwrap(), InboxInsert::Duplicate);
    // Delivery ids are unique per system only.
    assert!(matches!(
        store.insert_inbox(&delivery("other-shop", "d-1", time(4))).await.unwrap(),
        InboxInsert::Inserted(_)
    ));

    let pending = store.pending_inbox(10).await.unwrap();
    assert_eq!(pending.len(), 3);
    assert_eq!(pending[0].id, first);
    assert_eq!(pending[1].id, second);
    assert_eq!(pending[0].body, vec![0, 159, 146, 150, b'{', b'}']);
    assert_eq!(pending[0].headers["x-shopify-topic"], "orders/create");
    assert_eq!(pending[0].received_at, time(1));
    assert_eq!(pending[0].processed_at, None);
    assert_eq!(store.pending_inbox(1).await.unwrap().len(), 1);

    store.mark_inbox_processed(first, None).await.unwrap();
    store.mark_inbox_processed(second, Some("order references unknown product")).await.unwrap();
    let pending = store.pending_inbox(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].system, "other-shop");
    // Processed deliveries still deduplicate.
    assert_eq!(store.insert_inbox(&delivery("shop", "d-1", time(5))).await.unwrap(), InboxInsert::Duplicate);
    assert!(matches!(store.mark_inbox_processed(99_999, None).await, Err(StoreError::NotFound { .. })));
}

// --- runs --------------------------------------------------------------------------------------

async fn run_counts_accumulate_across_pages(store: Arc<dyn Store>) {
    let run = start_run(&*store, "products", time(0)).await;
    let fresh = store.run(run).await.unwrap().unwrap();
    assert_eq!(fresh.status, RunStatus::Running);
    assert_eq!(fresh.counts, RunCounts::default());
    assert_eq!(fresh.started_at, time(0));
    assert_eq!(fresh.finished_at, None);
    assert_eq!(fresh.trigger, "manual");

    store
        .commit_page(&page(
            run,
            vec![created("e1", 1), created("e2", 2), failed("e3", "bad"), outcome("e4", RecordAction::Skipped)],
        ))
        .await
        .unwrap();
    let mut second = page(
        run,
        vec![
            outcome("e5", RecordAction::Unchanged),
            outcome("e6", RecordAction::Updated),
            outcome("e7", RecordAction::Deleted),
        ],
    );
    second.checkpoint = Some(Checkpoint { watermark: Some(time(30)), cursor: Some("next".to_string()) });
    store.commit_page(&second).await.unwrap();
    assert_eq!(store.checkpoint("products", "erp").await.unwrap(), second.checkpoint);

    store.finish_run(run, RunStatus::PartiallyFailed, Some("1 record failed")).await.unwrap();
    let finished = store.run(run).await.unwrap().unwrap();
    assert_eq!(
        finished.counts,
        RunCounts { read: 7, created: 2, updated: 1, unchanged: 1, skipped: 1, failed: 1, deleted: 1 }
    );
    assert_eq!(finished.status, RunStatus::PartiallyFailed);
    assert_eq!(finished.error.as_deref(), Some("1 record failed"));
    assert!(finished.finished_at.is_some());
    assert!(matches!(
        store.finish_run(99_999, RunStatus::Succeeded, None).await,
        Err(StoreError::NotFound { what: "run", .. })
    ));
    assert_eq!(store.run(99_999).await.unwrap(), None);
}

async fn runs_are_listed_newest_first_and_interrupted(store: Arc<dyn Store>) {
    let oldest = start_run(&*store, "products", time(0)).await;
    let middle = start_run(&*store, "orders", time(10)).await;
    let newest = start_run(&*store, "products", time(20)).await;
    store.finish_run(oldest, RunStatus::Succeeded, None).await.unwrap();

    let ids = |runs: Vec<Run>| runs.iter().map(|run| run.id).collect::<Vec<_>>();
    assert_eq!(ids(store.list_runs(None, 10).await.unwrap()), vec![newest, middle, oldest]);
    assert_eq!(ids(store.list_runs(Some("products"), 10).await.unwrap()), vec![newest, oldest]);
    assert_eq!(ids(store.list_runs(None, 1).await.unwrap()), vec![newest]);

    // A restart at time 15 finds the orders run still running: interrupted. The newer one and
    // the finished one are left alone.
    assert_eq!(store.interrupt_running_runs(time(15)).await.unwrap(), 1);
    let interrupted = store.run(middle).await.unwrap().unwrap();
    assert_eq!(interrupted.status, RunStatus::Interrupted);
    assert!(interrupted.error.is_some());
    assert_eq!(store.run(newest).await.unwrap().unwrap().status, RunStatus::Running);
    assert_eq!(store.run(oldest).await.unwrap().unwrap().status, RunStatus::Succeeded);
    assert_eq!(store.interrupt_running_runs(time(15)).await.unwrap(), 0);
}

// --- trace -------------------------------------------------------------------------------------

async fn find_records_by_natural_key_or_any_external_id(store: Arc<dyn Store>) {
    let run = start_run(&*store, "products", time(0)).await;
    let mut first = created("e1", 1);
    first.natural_key = Some("SKU-1".to_string());
    let uids = store.commit_page(&page(run, vec![first, created("e2", 2)])).await.unwrap();

    let expected = RecordIdentity {
        record_uid: uids[0],
        entity: "product".to_string(),
        natural_key: Some("SKU-1".to_string()),
        links: vec![
            SystemLink { system: "erp".to_string(), external_id: "e1".to_string(), updated_at: time(0) },
            SystemLink { system: "shop".to_string(), external_id: "shop-e1".to_string(), updated_at: time(0) },
        ],
    };
    assert_eq!(store.find_records("SKU-1").await.unwrap(), vec![expected.clone()]);
    assert_eq!(store.find_records("e1").await.unwrap(), vec![expected.clone()]);
    assert_eq!(store.find_records("shop-e1").await.unwrap(), vec![expected]);
    assert!(store.find_records("nothing").await.unwrap().is_empty());

    // An id shared by two systems finds both records.
    let mut customers = page(run, vec![outcome("e2", RecordAction::Skipped)]);
    customers.entity = EntityKind::Customer;
    customers.flow = "customers".to_string();
    let customer_uids = store.commit_page(&customers).await.unwrap();
    let found = store.find_records("e2").await.unwrap();
    assert_eq!(found.iter().map(|record| record.record_uid).collect::<Vec<_>>(), vec![uids[1], customer_uids[0]]);
    assert_eq!(found[1].entity, "customer");
}

async fn record_history_is_oldest_first(store: Arc<dyn Store>) {
    let run = start_run(&*store, "products", time(0)).await;
    let mut first = page(run, vec![created("e1", 1)]);
    first.outcomes[0].origin = Some("a.csv:row 1".to_string());
    let uids = store.commit_page(&first).await.unwrap();
    let uid = uids[0];
    for (second, action) in [(10, RecordAction::Unchanged), (20, RecordAction::Updated)] {
        let mut next = page(
            run,
            vec![RecordOutcome {
                record_uid: Some(uid),
                log: action != RecordAction::Unchanged,
                message: Some(format!("at {second}")),
                ..outcome("e1", action)
            }],
        );
        next.at = time(second);
        store.commit_page(&next).await.unwrap();
    }
    let mut failure = page(run, vec![failed("e1", "price missing")]);
    failure.at = time(30);
    store.commit_page(&failure).await.unwrap();

    // The unchanged outcome was not logged.
    let history = store.record_history(uid, 10).await.unwrap();
    assert_eq!(
        history.iter().map(|entry| entry.action).collect::<Vec<_>>(),
        vec![RecordAction::Created, RecordAction::Updated, RecordAction::Failed]
    );
    let created_entry = &history[0];
    assert_eq!(created_entry.run_id, Some(run));
    assert_eq!(created_entry.flow, "products");
    assert_eq!(created_entry.record_uid, Some(uid));
    assert_eq!(created_entry.source_system, "erp");
    assert_eq!(created_entry.source_id, "e1");
    assert_eq!(created_entry.target_system, "shop");
    assert_eq!(created_entry.target_id.as_deref(), Some("shop-e1"));
    assert_eq!(created_entry.origin.as_deref(), Some("a.csv:row 1"));
    assert_eq!(created_entry.at, time(0));
    assert_eq!(history[2].message.as_deref(), Some("price missing"));
    assert_eq!(history[2].at, time(30));

    // A limit keeps the newest entries, still oldest first.
    let newest = store.record_history(uid, 2).await.unwrap();
    assert_eq!(
        newest.iter().map(|entry| entry.action).collect::<Vec<_>>(),
        vec![RecordAction::Updated, RecordAction::Failed]
    );
    assert!(store.record_history(uid + 1000, 10).await.unwrap().is_empty());
}

async fn audit_log_is_newest_first(store: Arc<dyn Store>) {
    for (second, action) in [(0, "dead_letter.retry"), (10, "flow.pause"), (20, "flow.resume")] {
        store
            .audit(&NewAuditEntry {
                actor: "cli:anna".to_string(),
                action: action.to_string(),
                target: "products".to_string(),
                details: json!({ "reason": "maintenance", "at": second }),
                at: time(second),
            })
            .await
            .unwrap();
    }
    let entries = store.list_audit(2).await.unwrap();
    assert_eq!(
        entries.iter().map(|entry| entry.action.as_str()).collect::<Vec<_>>(),
        vec!["flow.resume", "flow.pause"]
    );
    assert_eq!(entries[0].actor, "cli:anna");
    assert_eq!(entries[0].target, "products");
    assert_eq!(entries[0].details, json!({ "reason": "maintenance", "at": 20 }));
    assert_eq!(entries[0].at, time(20));
    assert_eq!(store.list_audit(10).await.unwrap().len(), 3);
}

async fn paused_flows_keep_the_first_pause_until_resumed(store: Arc<dyn Store>) {
    let pause = |flow: &str, by: &str, second: i64| FlowPause {
        flow: flow.to_string(),
        paused_by: by.to_string(),
        reason: format!("maintenance by {by}"),
        paused_at: time(second),
    };
    assert!(store.paused_flows().await.unwrap().is_empty());
    assert!(store.pause_flow(&pause("products", "anna", 0)).await.unwrap());
    assert!(!store.pause_flow(&pause("products", "ben", 10)).await.unwrap(), "already paused");
    assert!(store.pause_flow(&pause("orders", "ben", 20)).await.unwrap());
    let paused = store.paused_flows().await.unwrap();
    assert_eq!(paused, vec![pause("orders", "ben", 20), pause("products", "anna", 0)]);

    assert!(store.resume_flow("products").await.unwrap());
    assert!(!store.resume_flow("products").await.unwrap(), "not paused any more");
    assert_eq!(store.paused_flows().await.unwrap(), vec![pause("orders", "ben", 20)]);
}

async fn access_tokens_are_unique_by_active_name_and_revocable(store: Arc<dyn Store>) {
    let token = |name: &str, role: TokenRole, byte: u8, second: i64| NewApiToken {
        name: name.to_string(),
        role,
        secret_hash: [byte; 32],
        created_by: "cli:anna".to_string(),
        created_at: time(second),
    };
    let ops = store.create_api_token(&token("ops", TokenRole::Operator, 1, 0)).await.unwrap();
    assert_eq!(ops.name, "ops");
    assert_eq!(ops.role, TokenRole::Operator);
    assert_eq!(ops.secret_hash, [1; 32]);
    assert_eq!(ops.created_at, time(0));
    assert!(ops.revoked_at.is_none());
    store.create_api_token(&token("grafana", TokenRole::Viewer, 2, 5)).await.unwrap();

    let taken = store.create_api_token(&token("ops", TokenRole::Admin, 3, 10)).await.unwrap_err();
    assert!(matches!(taken, StoreError::AlreadyExists { ref name, .. } if name == "ops"), "{taken}");

    let active = store.api_tokens(false).await.unwrap();
    assert_eq!(active.iter().map(|token| token.name.as_str()).collect::<Vec<_>>(), vec!["grafana", "ops"]);
    assert_eq!(active[1], ops);

    assert!(store.revoke_api_token("ops", time(20)).await.unwrap());
    assert!(!store.revoke_api_token("ops", time(30)).await.unwrap(), "nothing active left to revoke");
    assert!(!store.revoke_api_token("nobody", time(30)).await.unwrap());
    let active = store.api_tokens(false).await.unwrap();
    assert_eq!(active.iter().map(|token| token.name.as_str()).collect::<Vec<_>>(), vec!["grafana"]);

    // The name is free again once revoked; the revoked token stays listed for the record.
    let again = store.create_api_token(&token("ops", TokenRole::Admin, 4, 40)).await.unwrap();
    assert_eq!(again.role, TokenRole::Admin);
    let all = store.api_tokens(true).await.unwrap();
    let ops_tokens: Vec<&ApiToken> = all.iter().filter(|token| token.name == "ops").collect();
    assert_eq!(ops_tokens.len(), 2);
    assert_eq!(ops_tokens[0].id, again.id, "newest first within a name");
    assert_eq!(ops_tokens[1].revoked_at, Some(time(20)));

    // A secret's hash identifies one token only, whatever its name.
    let reused = store.create_api_token(&token("other", TokenRole::Viewer, 4, 50)).await.unwrap_err();
    assert!(matches!(reused, StoreError::AlreadyExists { .. }), "{reused}");
}

async fn runs_are_found_by_flow_status_trigger_and_page(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for (second, flow, trigger, status) in [
        (0, "products", "schedule", RunStatus::Succeeded),
        (10, "orders", "webhook", RunStatus::Failed),
        (20, "products", "manual", RunStatus::Failed),
        (30, "products", "schedule", RunStatus::Succeeded),
    ] {
        let id = store
            .start_run(&NewRun {
                flow: flow.to_string(),
                trigger: trigger.to_string(),
                full: false,
                dry_run: false,
                started_at: time(second),
            })
            .await
            .unwrap();
        store.finish_run(id, status, None).await.unwrap();
        ids.push(id);
    }
    let found = |filter: RunFilter| {
        let store = store.clone();
        async move { store.find_runs(&filter).await.unwrap().iter().map(|run| run.id).collect::<Vec<_>>() }
    };
    assert_eq!(found(RunFilter::default()).await, vec![ids[3], ids[2], ids[1], ids[0]]);
    assert_eq!(
        found(RunFilter { flow: Some("products".into()), ..Default::default() }).await,
        vec![ids[3], ids[2], ids[0]]
    );
    assert_eq!(found(RunFilter { status: Some(RunStatus::Failed), ..Default::default() }).await, vec![ids[2], ids[1]]);
    assert_eq!(
        found(RunFilter { flow: Some("products".into()), status: Some(RunStatus::Failed), ..Default::default() }).await,
        vec![ids[2]]
    );
    assert_eq!(found(RunFilter { trigger: Some("schedule".into()), ..Default::default() }).await, vec![ids[3], ids[0]]);
    // Pages: the first two, then the ones before the last seen.
    assert_eq!(found(RunFilter { limit: 2, ..Default::default() }).await, vec![ids[3], ids[2]]);
    assert_eq!(found(RunFilter { limit: 2, before: Some(ids[2]), ..Default::default() }).await, vec![ids[1], ids[0]]);
    assert!(found(RunFilter { flow: Some("nothing".into()), ..Default::default() }).await.is_empty());
}

async fn queue_depths_count_pending_work(store: Arc<dyn Store>) {
    assert_eq!(store.queue_depths().await.unwrap(), QueueDepths::default());
    for delivery in ["d-1", "d-2"] {
        store
            .insert_inbox(&NewInboxDelivery {
                system: "shop".into(),
                delivery_id: delivery.into(),
                topic: "products/update".into(),
                headers: json!({}),
                body: b"{}".to_vec(),
                received_at: time(0),
            })
            .await
            .unwrap();
    }
    let first = store.pending_inbox(1).await.unwrap()[0].id;
    store.mark_inbox_processed(first, None).await.unwrap();
    for kind in ["a", "b", "c"] {
        store.enqueue_job(&new_job(kind, None, time(0))).await.unwrap();
    }
    let claimed = store.claim_jobs("worker-1", &["a"], Duration::from_secs(60), 1).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        store.queue_depths().await.unwrap(),
        QueueDepths { inbox_pending: 1, jobs_pending: 2, jobs_running: 1, jobs_dead: 0 }
    );
}

async fn alerts_are_open_once_per_rule_and_scope_with_their_messages(store: Arc<dyn Store>) {
    let alert = |rule: &str, scope: &str, second: i64, notify: bool| NewAlert {
        rule: rule.to_string(),
        kind: "failures".to_string(),
        scope: scope.to_string(),
        summary: format!("{rule} about {scope}"),
        notify,
        opened_at: time(second),
    };
    let first = store.insert_alert(&alert("failing", "orders", 0, true)).await.unwrap();
    let error = store.insert_alert(&alert("failing", "orders", 5, true)).await.unwrap_err();
    assert!(matches!(error, StoreError::AlreadyExists { .. }), "one open incident per rule and scope: {error}");
    let other_scope = store.insert_alert(&alert("failing", "products", 6, false)).await.unwrap();

    let delivery = |event: &str, channel: &str, ok: bool, second: i64| AlertDelivery {
        event: event.to_string(),
        channel: channel.to_string(),
        ok,
        detail: if ok { "250 OK".to_string() } else { "connection refused".to_string() },
        at: time(second),
    };
    store.record_alert_delivery(first, &delivery("firing", "email", true, 1)).await.unwrap();
    store.record_alert_delivery(first, &delivery("firing", "webhook", false, 1)).await.unwrap();
    let missing = store.record_alert_delivery(first + 1000, &delivery("firing", "email", true, 1)).await;
    assert!(matches!(missing, Err(StoreError::NotFound { .. })), "{missing:?}");

    assert!(store.resolve_alert(first, time(60), "0 records failed in 15m").await.unwrap());
    assert!(!store.resolve_alert(first, time(70), "again").await.unwrap(), "resolved already");
    store.record_alert_delivery(first, &delivery("resolved", "email", true, 61)).await.unwrap();
    // A new incident of the same rule and scope may open once the first is resolved.
    let second = store.insert_alert(&alert("failing", "orders", 120, true)).await.unwrap();

    let all = store.list_alerts(&AlertFilter::default()).await.unwrap();
    let ids: Vec<AlertId> = all.iter().map(|alert| alert.id).collect();
    assert_eq!(ids, vec![second, other_scope, first], "newest first");
    let resolved = &all[2];
    assert_eq!(resolved.resolved_at, Some(time(60)));
    assert_eq!(resolved.resolution.as_deref(), Some("0 records failed in 15m"));
    assert_eq!(resolved.opened_at, time(0));
    assert!(resolved.notify);
    assert_eq!(
        resolved.deliveries,
        vec![
            delivery("firing", "email", true, 1),
            delivery("firing", "webhook", false, 1),
            delivery("resolved", "email", true, 61)
        ]
    );
    assert!(!all[1].notify);
    assert!(all[0].deliveries.is_empty() && all[1].deliveries.is_empty());

    let open = store.list_alerts(&AlertFilter { open_only: true, ..Default::default() }).await.unwrap();
    assert_eq!(open.iter().map(|alert| alert.id).collect::<Vec<_>>(), vec![second, other_scope]);
    let of_orders = store
        .list_alerts(&AlertFilter {
            rule: Some("failing".into()),
            scope: Some("orders".into()),
            open_only: false,
            limit: 1,
        })
        .await
        .unwrap();
    assert_eq!(of_orders.len(), 1);
    assert_eq!(of_orders[0].id, second);
}
