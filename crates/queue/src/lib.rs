//! The job queue of erpsync behind one trait, [`Queue`], and scheduler leadership, [`Leader`].
//!
//! Two queues implement it: [`StoreQueue`] over the store's `jobs` table (embedded: SQLite, or
//! PostgreSQL with `FOR UPDATE SKIP LOCKED`) and [`NatsQueue`] on NATS JetStream (scale-out).
//! Both are at-least-once: a delivery that is not acknowledged within its lease comes back.
//! Both keep order per key: two deliveries with the same [`NewQueuedJob::key`] are never out at
//! the same time, and a later job for a key waits until the earlier one is acknowledged or dead
//! (see each implementation for the exact guarantee). `tests/conformance.rs` runs one suite
//! against all of them.
//!
//! [`Locks`] are named read/write locks across processes ([`PostgresLocks`]) or in one
//! ([`LocalLocks`]): the engine holds a flow's lock exclusively for a pull and shared for a job
//! about one record, so a pull never overlaps another pull or a record job of its flow.

mod error;
mod leader;
mod locks;
mod nats;
mod store_queue;

pub use error::QueueError;
pub use leader::{EmbeddedLeader, Leader, PostgresLeader};
pub use locks::{FileLocks, LocalLocks, LockGuard, LockMode, Locks, PostgresLocks};
pub use nats::{NatsQueue, NatsQueueOptions};
pub use store_queue::{StoreQueue, StoreQueueOptions};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;

pub type Result<T, E = QueueError> = std::result::Result<T, E>;

/// A job to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct NewQueuedJob {
    /// What to do (`run_flow`, `inbox`, …): a plain token of letters, digits, `_` and `-`.
    pub kind: String,
    /// The record or flow the job is about. Jobs with the same key are handed out one at a time,
    /// in publish order.
    pub key: String,
    /// Publishing twice with the same id makes one job (see each queue for how long ids are
    /// remembered).
    pub dedupe_id: Option<String>,
    pub payload: serde_json::Value,
    /// Not handed out before this time.
    pub not_before: Option<DateTime<Utc>>,
}

/// What [`Queue::publish`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// Added as the job `id` (a store job id, a stream sequence).
    Published { id: String },
    /// A job with the same dedupe id is known already: nothing was added.
    Duplicate,
}

/// What [`Queue::nak`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nacked {
    /// It will be handed out again after the delay.
    Retry,
    /// It was delivered `max_deliveries` times: it is dead, listed by [`Queue::dead`].
    Dead,
}

/// One job handed to a worker. Acknowledge it with [`Queue::ack`] once its work is durable, or
/// hand it back with [`Queue::nak`]; until then, keep it alive with [`Queue::extend`].
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The job's id in its queue (a store job id, a stream sequence).
    pub id: String,
    pub kind: String,
    pub key: String,
    pub payload: serde_json::Value,
    /// 1 for the first delivery, counting deliveries whose lease expired and naks.
    pub attempt: u32,
    pub(crate) receipt: Receipt,
}

/// What a queue needs to settle a delivery.
#[derive(Debug, Clone)]
pub(crate) enum Receipt {
    Store { job_id: i64, worker: String },
    Nats(Arc<async_nats::jetstream::Message>),
}

/// A job that used up its deliveries.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadJob {
    pub id: String,
    pub kind: String,
    pub key: String,
    pub payload: serde_json::Value,
    pub attempts: u32,
    /// The last reason given by [`Queue::nak`], or why the queue gave up.
    pub error: String,
    pub died_at: DateTime<Utc>,
}

/// A durable job queue with per-key order. Every method is safe to call from many tasks at once.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Adds a job, or reports a duplicate of a known dedupe id.
    async fn publish(&self, job: &NewQueuedJob) -> Result<Published>;
    /// Hands out up to `max` due jobs of the given kinds to `worker`, each leased for `lease`.
    /// Never two jobs with the same key at once. An empty result means nothing is ready now.
    async fn pull(&self, worker: &str, kinds: &[&str], max: usize, lease: Duration) -> Result<Vec<Delivery>>;
    /// The job is done: it will not be handed out again. Call it only once its work is durable.
    async fn ack(&self, delivery: &Delivery) -> Result<()>;
    /// The job failed: it comes back after `delay`, or dies when it used up its deliveries.
    /// `reason` is kept as the dead job's error.
    async fn nak(&self, delivery: &Delivery, delay: Duration, reason: &str) -> Result<Nacked>;
    /// Heartbeat: the worker is still on it; its lease starts again.
    async fn extend(&self, delivery: &Delivery, lease: Duration) -> Result<()>;
    /// Dead jobs, oldest first, at most `limit`.
    async fn dead(&self, limit: usize) -> Result<Vec<DeadJob>>;
}

/// Which of `n_partitions` a key belongs to: FNV-1a, stable across processes, versions and
/// platforms (unlike `std`'s hasher), so every publisher puts a key in the same partition.
pub fn partition_of(key: &str, n_partitions: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(n_partitions.max(1))) as u32
}

/// `kind` is a plain token: it becomes one NATS subject token and one store job kind.
pub(crate) fn check_kind(kind: &str) -> Result<()> {
    let plain =
        !kind.is_empty() && kind.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if plain {
        return Ok(());
    }
    Err(QueueError::InvalidName { what: "job kind", name: kind.to_string(), rule: "letters, digits, '_' and '-' only" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_in_range() {
        // Fixed values: a change of the hash would move keys between partitions of a running
        // installation and break per-key order while old and new processes overlap.
        assert_eq!(partition_of("", 16), (0xcbf2_9ce4_8422_2325_u64 % 16) as u32);
        assert_eq!(partition_of("order:1001", 16), partition_of("order:1001", 16));
        for index in 0..1000 {
            assert!(partition_of(&format!("product:{index}"), 7) < 7);
        }
        assert_eq!(partition_of("anything", 0), 0);
    }

    #[test]
    fn kinds_are_plain_tokens() {
        assert!(check_kind("run_flow").is_ok());
        assert!(check_kind("inbox-event").is_ok());
        assert!(check_kind("a.b").is_err());
        assert!(check_kind("a*").is_err());
        assert!(check_kind("").is_err());
    }
}
