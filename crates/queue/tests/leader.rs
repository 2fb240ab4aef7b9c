//! Scheduler leadership: one leader at a time, and a quick take-over when it dies.
//!
//! Runs against PostgreSQL at `ERPSYNC_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); fails with a message saying so when it is
//! unreachable, never skipped. Each test uses a lock id of its own, so tests running at once do
//! not contend with each other.

use erpsync_queue::{EmbeddedLeader, Leader, PostgresLeader};
use sqlx::Connection;
use std::time::{Duration, Instant};

fn postgres_url() -> String {
    std::env::var("ERPSYNC_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A lock id of this test run and test, away from the scheduler's.
fn lock_id(test: i64) -> i64 {
    (i64::from(std::process::id()) << 8) | test
}

async fn check(leader: &PostgresLeader) -> bool {
    leader.check().await.unwrap_or_else(|error| {
        panic!(
            "checking leadership on PostgreSQL at {} failed ({error}). Leadership tests need \
             PostgreSQL: start it, or point ERPSYNC_TEST_POSTGRES_URL at one.",
            postgres_url()
        )
    })
}

/// Checks every 200 ms, the way a contender's loop does, until it leads or `within` passed.
async fn leads_within(leader: &PostgresLeader, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if check(leader).await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

#[tokio::test]
async fn one_of_two_contenders_leads_and_the_other_takes_over_when_its_connection_is_killed() {
    let url = postgres_url();
    let first = PostgresLeader::new(&url, lock_id(1));
    let second = PostgresLeader::new(&url, lock_id(1));
    assert!(check(&first).await, "the first contender takes the free lead");
    assert!(!check(&second).await, "the second does not, while the first leads");
    assert!(check(&first).await, "the first still leads");
    assert!(!check(&second).await);

    // The leader's process dies: its backend is terminated from outside, as when its machine
    // or network goes away and PostgreSQL ends the session.
    let pid = first.backend_pid().await.unwrap().expect("the leader has a session");
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let terminated: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(pid).fetch_one(&mut admin).await.unwrap();
    assert!(terminated);

    let took_over = leads_within(&second, Duration::from_secs(5)).await;
    assert!(took_over.is_some(), "the second contender leads within seconds of the leader's death");
    assert!(!check(&first).await, "the old leader learns at its next check that it no longer leads");
    assert!(!check(&first).await, "and does not take the lead back while the second holds it");
    assert!(check(&second).await);
}

#[tokio::test]
async fn a_dropped_leader_frees_the_lead() {
    let url = postgres_url();
    let first = PostgresLeader::new(&url, lock_id(2));
    let second = PostgresLeader::new(&url, lock_id(2));
    assert!(check(&first).await);
    assert!(!check(&second).await);
    // The process exits without resigning: its connection is dropped.
    drop(first);
    assert!(leads_within(&second, Duration::from_secs(5)).await.is_some(), "taken over within seconds");
}

#[tokio::test]
async fn a_leader_that_resigns_hands_over_at_once() {
    let url = postgres_url();
    let first = PostgresLeader::new(&url, lock_id(3));
    let second = PostgresLeader::new(&url, lock_id(3));
    assert!(check(&first).await);
    first.resign().await.unwrap();
    assert!(check(&second).await, "the lead is free right after the resignation");
    assert!(!check(&first).await);
}

#[tokio::test]
async fn the_embedded_leader_always_leads() {
    let leader = EmbeddedLeader;
    assert!(leader.check().await.unwrap());
    leader.resign().await.unwrap();
    assert!(leader.check().await.unwrap());
}
