//! Flow locks on PostgreSQL: two `PostgresLocks` (two processes) on one database exclude each
//! other as shared/exclusive locks do, and a holder that goes away frees its lock. PostgreSQL
//! at `ERPSYNC_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`); when it
//! is unreachable the tests fail saying so.

use erpsync_queue::{LockMode, Locks, PostgresLocks};
use sqlx::Connection;

fn postgres_url() -> String {
    std::env::var("ERPSYNC_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

async fn reachable() {
    let url = postgres_url();
    if let Err(error) = sqlx::PgConnection::connect(&url).await {
        panic!("PostgreSQL is not reachable at {url} ({error}): start it, or set ERPSYNC_TEST_POSTGRES_URL");
    }
}

/// A name no other test run uses (advisory locks are per server database, not per test).
fn unique(name: &str) -> String {
    format!("flow:{name}:{}:{}", std::process::id(), chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_or_exclude_a_lock() {
    reachable().await;
    let first = PostgresLocks::new(&postgres_url(), 4).unwrap();
    let second = PostgresLocks::new(&postgres_url(), 4).unwrap();
    let name = unique("orders");

    let shared = first.try_lock(&name, LockMode::Shared).await.unwrap().expect("a free lock");
    let also_shared = second.try_lock(&name, LockMode::Shared).await.unwrap().expect("shared beside shared");
    assert!(second.try_lock(&name, LockMode::Exclusive).await.unwrap().is_none(), "no pull beside record jobs");
    assert!(second.try_lock(&unique("products"), LockMode::Exclusive).await.unwrap().is_some(), "other flows apart");
    shared.release().await;
    assert!(first.try_lock(&name, LockMode::Exclusive).await.unwrap().is_none(), "one shared holder is left");
    also_shared.release().await;

    let exclusive = first.try_lock(&name, LockMode::Exclusive).await.unwrap().expect("free again");
    assert!(second.try_lock(&name, LockMode::Shared).await.unwrap().is_none(), "no record job beside a pull");
    assert!(second.try_lock(&name, LockMode::Exclusive).await.unwrap().is_none(), "no pull beside a pull");
    // The same process may not take it twice either (each lock is its own session).
    assert!(first.try_lock(&name, LockMode::Exclusive).await.unwrap().is_none());
    drop(exclusive);
    // Dropped without release: its session is closed, which frees the lock.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if second.try_lock(&name, LockMode::Exclusive).await.unwrap().is_some() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "a dropped holder's lock was not freed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
