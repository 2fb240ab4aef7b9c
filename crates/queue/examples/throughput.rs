//! Throughput of the queues: jobs published per second (one publisher, each publish awaited), and
//! jobs pulled and acknowledged per second by 1 and by 4 concurrent pullers.
//!
//! `cargo run -p erpsync-queue --example throughput -- [sqlite|postgres|nats ...] [--jobs N]`
//! (all three by default; PostgreSQL at `ERPSYNC_TEST_POSTGRES_URL`, NATS at
//! `ERPSYNC_TEST_NATS_URL`, the tests' defaults). Each job has a key of its own out of 256, so
//! per-key order allows some parallelism; the work itself is nothing.

use erpsync_queue::*;
use erpsync_store::Store;
use serde_json::json;
use sqlx::Connection;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const LEASE: Duration = Duration::from_secs(30);
const N_KEYS: usize = 256;

#[tokio::main]
async fn main() {
    let mut backends = Vec::new();
    let mut n_jobs = 2000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--jobs" => n_jobs = args.next().and_then(|value| value.parse().ok()).expect("--jobs takes a number"),
            "sqlite" | "postgres" | "nats" => backends.push(arg),
            other => panic!("unknown argument {other:?}: expected sqlite, postgres, nats or --jobs N"),
        }
    }
    if backends.is_empty() {
        backends = vec!["sqlite".into(), "postgres".into(), "nats".into()];
    }
    println!(
        "{:<10} {:>8} {:>14} {:>22} {:>22}",
        "queue", "jobs", "published/s", "processed/s 1 puller", "processed/s 4 pullers"
    );
    for backend in backends {
        let (published, one, four) = match backend.as_str() {
            "sqlite" => {
                let dir = tempfile::tempdir().expect("creating a temporary directory");
                let store = erpsync_store::sqlite::SqliteStore::open(&dir.path().join("erpsync.db")).await.unwrap();
                measure(&store_queue(Arc::new(store)), n_jobs).await
            }
            "postgres" => {
                let (store, database) = fresh_postgres().await;
                let figures = measure(&store_queue(store), n_jobs).await;
                drop_postgres(&database).await;
                figures
            }
            _ => {
                let url = std::env::var("ERPSYNC_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
                let mut options = NatsQueueOptions::new(&url, &format!("bench_{}", std::process::id()));
                options.ack_wait = LEASE;
                let queue = NatsQueue::connect(options).await.expect("connecting to NATS");
                let queue = Arc::new(queue);
                let figures = measure(&(queue.clone() as Arc<dyn Queue>), n_jobs).await;
                queue.delete_streams().await.unwrap();
                figures
            }
        };
        println!("{backend:<10} {n_jobs:>8} {published:>14.0} {one:>22.0} {four:>22.0}");
    }
}

fn store_queue(store: Arc<dyn Store>) -> Arc<dyn Queue> {
    Arc::new(StoreQueue::new(store, StoreQueueOptions::default()))
}

/// Publishes and drains `n_jobs` twice: once with one puller, once with four.
async fn measure(queue: &Arc<dyn Queue>, n_jobs: usize) -> (f64, f64, f64) {
    let published = publish(queue, n_jobs).await;
    let one = drain(queue, n_jobs, 1).await;
    publish(queue, n_jobs).await;
    let four = drain(queue, n_jobs, 4).await;
    (published, one, four)
}

async fn publish(queue: &Arc<dyn Queue>, n_jobs: usize) -> f64 {
    let started = Instant::now();
    for index in 0..n_jobs {
        let job = NewQueuedJob {
            kind: "bench".into(),
            key: format!("record:{}", index % N_KEYS),
            dedupe_id: None,
            payload: json!({"index": index}),
            not_before: None,
        };
        queue.publish(&job).await.expect("publishing");
    }
    n_jobs as f64 / started.elapsed().as_secs_f64()
}

async fn drain(queue: &Arc<dyn Queue>, n_jobs: usize, n_pullers: usize) -> f64 {
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut pullers = Vec::new();
    for puller in 0..n_pullers {
        let (queue, done) = (queue.clone(), done.clone());
        pullers.push(tokio::spawn(async move {
            let worker = format!("bench-{puller}");
            let deadline = Instant::now() + Duration::from_secs(300);
            while done.load(Ordering::Relaxed) < n_jobs && Instant::now() < deadline {
                let deliveries = queue.pull(&worker, &["bench"], 16, LEASE).await.expect("pulling");
                if deliveries.is_empty() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                for delivery in &deliveries {
                    queue.ack(delivery).await.expect("acknowledging");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for puller in pullers {
        puller.await.unwrap();
    }
    assert_eq!(done.load(Ordering::Relaxed), n_jobs, "every job processed within the time limit");
    n_jobs as f64 / started.elapsed().as_secs_f64()
}

fn postgres_url() -> String {
    std::env::var("ERPSYNC_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

async fn fresh_postgres() -> (Arc<dyn Store>, String) {
    let database = format!("erpsync_queue_bench_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&postgres_url()).await.expect("connecting to PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}"))).execute(&mut admin).await.unwrap();
    let url = match postgres_url().rsplit_once('/') {
        Some((base, _)) => format!("{base}/{database}"),
        None => panic!("ERPSYNC_TEST_POSTGRES_URL has no database part"),
    };
    let store = erpsync_store::postgres::PostgresStore::open(&url).await.expect("opening the PostgreSQL store");
    (Arc::new(store), database)
}

async fn drop_postgres(database: &str) {
    let mut admin = sqlx::PgConnection::connect(&postgres_url()).await.expect("connecting to PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")))
        .execute(&mut admin)
        .await
        .unwrap();
}
