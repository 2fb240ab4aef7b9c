//! Queue conformance suite: every behaviour of `Queue`, run against StoreQueue on SQLite,
//! StoreQueue on PostgreSQL and NatsQueue on NATS JetStream.
//!
//! The `conformance!` macro runs each test three times: `sqlite::<name>` on a fresh SQLite file,
//! `postgres::<name>` on a fresh PostgreSQL database (`ERPSYNC_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`), and `nats::<name>` on streams of a fresh
//! installation name (`ERPSYNC_TEST_NATS_URL`, default `nats://127.0.0.1:4222`). A server that is
//! unreachable fails its tests with a message saying so; they are never skipped.
//!
//! Every queue is set up alike: 3 deliveries at most, leases of one second.

use chrono::Utc;
use erpsync_queue::*;
use erpsync_store::Store;
use erpsync_store::postgres::PostgresStore;
use erpsync_store::sqlite::SqliteStore;
use serde_json::json;
use sqlx::Connection;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LEASE: Duration = Duration::from_secs(1);
const MAX_DELIVERIES: u32 = 3;

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
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::on_nats(super::$name).await;
                }
            )*
        }
    };
}

conformance! {
    publish_deduplicates_by_id,
    pull_takes_only_the_asked_kinds,
    jobs_are_not_handed_out_before_not_before,
    one_key_is_never_out_twice_and_keeps_its_order_under_concurrent_pullers,
    two_processes_never_have_one_key_out_twice,
    nak_hands_the_job_back_after_its_delay_and_the_key_waits,
    delivery_limit_ends_in_a_dead_job_and_frees_the_key,
    expired_lease_redelivers,
    extend_keeps_the_lease,
    acknowledged_jobs_stay_done_and_unacknowledged_ones_come_back_after_a_restart,
}

/// Opens queue instances over one backing store or stream: a new instance is a restarted
/// consumer (a new process) over the same durable state.
enum Harness {
    Store(Arc<dyn Store>, Reopen),
    Nats(NatsQueueOptions),
}

/// How to open the same store again, on connections of its own: another process.
#[derive(Clone)]
enum Reopen {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Harness {
    async fn open(&self) -> Arc<dyn Queue> {
        match self {
            Harness::Store(store, _) => store_queue(store.clone()),
            Harness::Nats(options) => Arc::new(connect_nats(options).await),
        }
    }

    /// A queue as another process sees it: the store opened again (its own pool), or a NATS
    /// connection of its own.
    async fn open_process(&self) -> Arc<dyn Queue> {
        match self {
            Harness::Store(_, Reopen::Sqlite(path)) => {
                store_queue(Arc::new(SqliteStore::open(path).await.expect("opening the sqlite store again")))
            }
            Harness::Store(_, Reopen::Postgres(url)) => {
                store_queue(Arc::new(PostgresStore::open(url).await.expect("opening the postgres store again")))
            }
            Harness::Nats(options) => Arc::new(connect_nats(options).await),
        }
    }
}

fn store_queue(store: Arc<dyn Store>) -> Arc<dyn Queue> {
    Arc::new(StoreQueue::new(
        store,
        StoreQueueOptions { max_deliveries: MAX_DELIVERIES, reclaim_every: Duration::from_millis(100) },
    ))
}

async fn connect_nats(options: &NatsQueueOptions) -> NatsQueue {
    NatsQueue::connect(options.clone()).await.unwrap_or_else(|error| {
        panic!(
            "NATS JetStream is not usable at {} ({error}). The queue conformance suite runs every \
             test on NATS too: start nats-server with -js (.ci/run does), or point \
             ERPSYNC_TEST_NATS_URL at one.",
            options.url
        )
    })
}

async fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Harness) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let path = dir.path().join("erpsync.db");
    let store = SqliteStore::open(&path).await.expect("opening a fresh sqlite store");
    test(Harness::Store(Arc::new(store), Reopen::Sqlite(path))).await;
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

fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = Utc::now().timestamp_subsec_nanos();
    format!("{prefix}_{}_{}_{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Runs `test` on a database of its own, dropped afterwards (also when the test panics).
async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(Harness) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let admin_url = postgres_url();
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap_or_else(|error| {
        panic!(
            "PostgreSQL is not reachable at {admin_url} ({error}). The queue conformance suite \
             runs every test on PostgreSQL too: start it, or point ERPSYNC_TEST_POSTGRES_URL at a \
             server where the user may create databases."
        )
    });
    let database = unique_name("erpsync_queue_test");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|error| panic!("creating test database {database}: {error}"));
    let url = with_database(&admin_url, &database);
    let store = PostgresStore::open(&url).await.expect("opening a fresh postgres store");
    let outcome = tokio::spawn(test(Harness::Store(Arc::new(store), Reopen::Postgres(url)))).await;
    let dropped = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")))
        .execute(&mut admin)
        .await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
    dropped.unwrap_or_else(|error| panic!("dropping test database {database}: {error}"));
}

fn nats_url() -> String {
    std::env::var("ERPSYNC_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string())
}

/// Runs `test` on streams of an installation of its own, deleted afterwards.
async fn on_nats<F, Fut>(test: F)
where
    F: FnOnce(Harness) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut options = NatsQueueOptions::new(&nats_url(), &unique_name("test"));
    options.partitions = 8;
    options.max_deliveries = MAX_DELIVERIES;
    options.ack_wait = LEASE;
    options.duplicate_window = Duration::from_secs(60);
    let cleanup = connect_nats(&options).await;
    let outcome = tokio::spawn(test(Harness::Nats(options))).await;
    let deleted = cleanup.delete_streams().await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
    deleted.expect("deleting the test streams");
}

fn job(kind: &str, key: &str, payload: serde_json::Value) -> NewQueuedJob {
    NewQueuedJob { kind: kind.to_string(), key: key.to_string(), dedupe_id: None, payload, not_before: None }
}

/// Pulls until `count` deliveries arrived or `within` passed. Ask for no more than are there
/// when `within` is longer than a lease: the lease of the first would expire while waiting.
async fn pull_for(queue: &dyn Queue, kinds: &[&str], count: usize, within: Duration) -> Vec<Delivery> {
    let deadline = Instant::now() + within;
    let mut deliveries = Vec::new();
    while deliveries.len() < count && Instant::now() < deadline {
        let batch = queue.pull("tester", kinds, count - deliveries.len(), LEASE).await.expect("pulling");
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        deliveries.extend(batch);
    }
    deliveries
}

// --- tests -------------------------------------------------------------------------------------

async fn publish_deduplicates_by_id(harness: Harness) {
    let queue = harness.open().await;
    let mut first = job("sync", "order:1", json!({"n": 1}));
    first.dedupe_id = Some("delivery-1".into());
    let mut again = first.clone();
    again.payload = json!({"n": 2});
    assert!(matches!(queue.publish(&first).await.unwrap(), Published::Published { .. }));
    assert_eq!(queue.publish(&again).await.unwrap(), Published::Duplicate);
    let mut other = job("sync", "order:2", json!({"n": 3}));
    other.dedupe_id = Some("delivery-2".into());
    assert!(matches!(queue.publish(&other).await.unwrap(), Published::Published { .. }));

    let deliveries = pull_for(queue.as_ref(), &["sync"], 2, Duration::from_secs(2)).await;
    assert!(queue.pull("tester", &["sync"], 10, LEASE).await.unwrap().is_empty(), "nothing more");
    let payloads: HashSet<_> = deliveries.iter().map(|delivery| delivery.payload["n"].as_i64().unwrap()).collect();
    assert_eq!(payloads, HashSet::from([1, 3]), "the duplicate added nothing");
    for delivery in &deliveries {
        assert_eq!(delivery.attempt, 1);
        assert_eq!(delivery.kind, "sync");
        queue.ack(delivery).await.unwrap();
    }
}

async fn pull_takes_only_the_asked_kinds(harness: Harness) {
    let queue = harness.open().await;
    queue.publish(&job("push", "product:1", json!({}))).await.unwrap();
    assert!(queue.pull("tester", &["pull"], 10, LEASE).await.unwrap().is_empty());
    assert!(queue.pull("tester", &[], 10, LEASE).await.unwrap().is_empty());
    let deliveries = pull_for(queue.as_ref(), &["pull", "push"], 1, Duration::from_secs(2)).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!((deliveries[0].kind.as_str(), deliveries[0].key.as_str()), ("push", "product:1"));
    queue.ack(&deliveries[0]).await.unwrap();
    assert!(queue.publish(&job("no.dots", "k", json!({}))).await.is_err(), "kinds are plain tokens");
}

async fn jobs_are_not_handed_out_before_not_before(harness: Harness) {
    let queue = harness.open().await;
    let mut later = job("sync", "customer:1", json!({}));
    later.not_before = Some(Utc::now() + chrono::Duration::milliseconds(800));
    queue.publish(&later).await.unwrap();
    assert!(queue.pull("tester", &["sync"], 10, LEASE).await.unwrap().is_empty(), "not due yet");
    let started = Instant::now();
    let deliveries = pull_for(queue.as_ref(), &["sync"], 1, Duration::from_secs(5)).await;
    assert_eq!(deliveries.len(), 1, "handed out once due");
    assert!(started.elapsed() >= Duration::from_millis(500), "not before its time: {:?}", started.elapsed());
    queue.ack(&deliveries[0]).await.unwrap();
}

async fn one_key_is_never_out_twice_and_keeps_its_order_under_concurrent_pullers(harness: Harness) {
    let queue = harness.open().await;
    keys_stay_exclusive_and_ordered(vec![queue.clone(), queue]).await;
}

/// Two processes, each with its own queue instance (its own store pool, or NATS connection),
/// pull one queue's jobs at once: still never two jobs of one key out together, and in order.
async fn two_processes_never_have_one_key_out_twice(harness: Harness) {
    let first = harness.open_process().await;
    let second = harness.open_process().await;
    keys_stay_exclusive_and_ordered(vec![first.clone(), first, second.clone(), second]).await;
}

/// Publishes jobs of a few keys through the first queue and pulls them with one puller per
/// given queue, checking that a key is never out twice and each key's jobs come in order.
async fn keys_stay_exclusive_and_ordered(queues: Vec<Arc<dyn Queue>>) {
    const N_KEYS: usize = 4;
    const JOBS_PER_KEY: usize = 15;
    let queue = queues[0].clone();
    for sequence in 0..JOBS_PER_KEY {
        for key in 0..N_KEYS {
            let kind = if sequence % 2 == 0 { "event" } else { "job" };
            queue.publish(&job(kind, &format!("record:{key}"), json!({"seq": sequence}))).await.unwrap();
        }
    }

    let out_now: Arc<Mutex<HashSet<String>>> = Arc::default();
    let seen: Arc<Mutex<HashMap<String, Vec<u64>>>> = Arc::default();
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut pullers = Vec::new();
    for (puller, queue) in queues.into_iter().enumerate() {
        let (out_now, seen, violations) = (out_now.clone(), seen.clone(), violations.clone());
        pullers.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            let worker = format!("worker-{puller}");
            while Instant::now() < deadline {
                let done: usize = seen.lock().unwrap().values().map(Vec::len).sum();
                if done >= N_KEYS * JOBS_PER_KEY {
                    return;
                }
                let deliveries = queue.pull(&worker, &["event", "job"], 2, LEASE).await.expect("pulling");
                if deliveries.is_empty() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                for delivery in &deliveries {
                    if !out_now.lock().unwrap().insert(delivery.key.clone()) {
                        violations.lock().unwrap().push(format!("{} out twice at once", delivery.key));
                    }
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
                for delivery in &deliveries {
                    seen.lock()
                        .unwrap()
                        .entry(delivery.key.clone())
                        .or_default()
                        .push(delivery.payload["seq"].as_u64().unwrap());
                    out_now.lock().unwrap().remove(&delivery.key);
                    queue.ack(delivery).await.expect("acknowledging");
                }
            }
        }));
    }
    for puller in pullers {
        puller.await.unwrap();
    }
    assert_eq!(violations.lock().unwrap().as_slice(), &[] as &[String]);
    let seen = seen.lock().unwrap();
    for key in 0..N_KEYS {
        let order = &seen[&format!("record:{key}")];
        assert_eq!(order, &(0..JOBS_PER_KEY as u64).collect::<Vec<_>>(), "record:{key} in publish order, each once");
    }
}

async fn nak_hands_the_job_back_after_its_delay_and_the_key_waits(harness: Harness) {
    let queue = harness.open().await;
    queue.publish(&job("sync", "order:7", json!({"step": "first"}))).await.unwrap();
    queue.publish(&job("sync", "order:7", json!({"step": "second"}))).await.unwrap();

    // Asks for two within less than a lease: only one may come.
    let first = pull_for(queue.as_ref(), &["sync"], 2, LEASE / 2).await;
    assert_eq!(first.len(), 1, "one job of the key at a time");
    assert_eq!(first[0].payload["step"], "first");
    let naked_at = Instant::now();
    assert_eq!(queue.nak(&first[0], Duration::from_millis(700), "target unavailable").await.unwrap(), Nacked::Retry);

    // The second job of the key waits for the first, through its delay.
    let during_delay = pull_for(queue.as_ref(), &["sync"], 1, Duration::from_millis(400)).await;
    assert!(during_delay.is_empty(), "nothing of the key during the delay: {during_delay:?}");

    let retried = pull_for(queue.as_ref(), &["sync"], 1, Duration::from_secs(5)).await;
    assert_eq!(retried.len(), 1);
    assert!(naked_at.elapsed() >= Duration::from_millis(600), "not before its delay: {:?}", naked_at.elapsed());
    assert_eq!((retried[0].payload["step"].as_str(), retried[0].attempt), (Some("first"), 2));
    queue.ack(&retried[0]).await.unwrap();

    let second = pull_for(queue.as_ref(), &["sync"], 1, Duration::from_secs(2)).await;
    assert_eq!(second.len(), 1);
    assert_eq!((second[0].payload["step"].as_str(), second[0].attempt), (Some("second"), 1));
    queue.ack(&second[0]).await.unwrap();
}

async fn delivery_limit_ends_in_a_dead_job_and_frees_the_key(harness: Harness) {
    let queue = harness.open().await;
    queue.publish(&job("sync", "product:9", json!({"sku": "A-1"}))).await.unwrap();
    queue.publish(&job("sync", "product:9", json!({"sku": "A-2"}))).await.unwrap();
    for attempt in 1..=MAX_DELIVERIES {
        let deliveries = pull_for(queue.as_ref(), &["sync"], 1, Duration::from_secs(3)).await;
        assert_eq!(deliveries.len(), 1, "attempt {attempt}");
        let delivery = &deliveries[0];
        assert_eq!((delivery.payload["sku"].as_str(), delivery.attempt), (Some("A-1"), attempt));
        let expected = if attempt == MAX_DELIVERIES { Nacked::Dead } else { Nacked::Retry };
        let nacked =
            queue.nak(delivery, Duration::from_millis(10), &format!("unknown tax code (attempt {attempt})")).await;
        assert_eq!(nacked.unwrap(), expected);
    }
    let dead = queue.dead(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].kind.as_str(), dead[0].key.as_str()), ("sync", "product:9"));
    assert_eq!(dead[0].payload, json!({"sku": "A-1"}));
    assert_eq!(dead[0].attempts, MAX_DELIVERIES);
    assert_eq!(dead[0].error, "unknown tax code (attempt 3)");

    let next = pull_for(queue.as_ref(), &["sync"], 1, Duration::from_secs(2)).await;
    assert_eq!(next.len(), 1, "the key is free for the next job");
    assert_eq!(next[0].payload["sku"], "A-2");
    queue.ack(&next[0]).await.unwrap();
}

async fn expired_lease_redelivers(harness: Harness) {
    let queue = harness.open().await;
    queue.publish(&job("sync", "stock:3", json!({"qty": 5}))).await.unwrap();
    let taken = pull_for(queue.as_ref(), &["sync"], 1, Duration::from_secs(2)).await;
    assert_eq!(taken.len(), 1);
    assert!(queue.pull("other", &["sync"], 10, LEASE).await.unwrap().is_empty(), "leased");

    // The worker died: nothing acknowledges, the lease runs out.
    let redelivered = pull_for(queue.as_ref(), &["sync"], 1, Duration::from_secs(5)).await;
    assert_eq!(redelivered.len(), 1);
    assert_eq!((redelivered[0].id.as_str(), redelivered[0].attempt), (taken[0].id.as_str(), 2));
    queue.ack(&redelivered[0]).await.unwrap();
    assert!(matches!(queue.ack(&taken[0]).await, Err(QueueError::LeaseLost { .. }) | Ok(())));
}

async fn extend_keeps_the_lease(harness: Harness) {
    let queue = harness.open().await;
    queue.publish(&job("sync", "invoice:4", json!({}))).await.unwrap();
    let taken = pull_for(queue.as_ref(), &["sync"], 1, Duration::from_secs(2)).await;
    assert_eq!(taken.len(), 1);
    for _ in 0..4 {
        tokio::time::sleep(LEASE / 2).await;
        queue.extend(&taken[0], LEASE).await.unwrap();
        assert!(queue.pull("other", &["sync"], 10, LEASE).await.unwrap().is_empty(), "still leased");
    }
    queue.ack(&taken[0]).await.unwrap();
    tokio::time::sleep(LEASE + LEASE / 2).await;
    assert!(queue.pull("other", &["sync"], 10, LEASE).await.unwrap().is_empty(), "done for good");
}

async fn acknowledged_jobs_stay_done_and_unacknowledged_ones_come_back_after_a_restart(harness: Harness) {
    let before = harness.open().await;
    for (key, n) in [("order:1", 1), ("order:2", 2), ("order:3", 3)] {
        before.publish(&job("sync", key, json!({"n": n}))).await.unwrap();
    }
    let taken = pull_for(before.as_ref(), &["sync"], 3, Duration::from_secs(3)).await;
    assert_eq!(taken.len(), 3);
    let (acked, lost): (Vec<_>, Vec<_>) = taken.iter().partition(|delivery| delivery.payload["n"] != 2);
    for delivery in &acked {
        before.ack(delivery).await.unwrap();
    }
    drop(before);

    // A new process: the acknowledged jobs are gone, the one in flight comes back.
    let after = harness.open().await;
    let redelivered = pull_for(after.as_ref(), &["sync"], 1, Duration::from_secs(5)).await;
    assert_eq!(redelivered.len(), 1, "the unacknowledged job: {redelivered:?}");
    assert!(after.pull("tester", &["sync"], 10, LEASE).await.unwrap().is_empty(), "and nothing else");
    assert_eq!((&redelivered[0].payload, redelivered[0].attempt), (&lost[0].payload, 2));
    after.ack(&redelivered[0]).await.unwrap();
    tokio::time::sleep(LEASE + LEASE / 2).await;
    assert!(after.pull("tester", &["sync"], 10, LEASE).await.unwrap().is_empty(), "acknowledged after the restart");
}
