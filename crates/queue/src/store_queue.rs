//! [`StoreQueue`]: the embedded queue, over the store's jobs (SQLite, or PostgreSQL).
//!
//! A job is one row of the store's `jobs` table: its kind is the job's kind, its dedupe key the
//! job's dedupe id, its key column the job's key, and its payload an envelope
//! `{"queue_v": 1, "key": …, "payload": …}` (the key is in the envelope too, for
//! [`Queue::dead`]).
//!
//! Per-key order is kept by the store's claim: a job with a key is claimable only while no job
//! of its key is running and none is pending before it (by due time, then id). That holds across
//! every process on one database (PostgreSQL: `FOR UPDATE SKIP LOCKED` plus that condition;
//! SQLite: one writer at a time), and across restarts, because the holds are the jobs' states.
//! A job handed back with [`Queue::nak`] stays running (leased) through its delay, so it keeps
//! holding its key and a later job of the key waits; when its lease runs out, the store counts
//! the attempt ("lease expired") and the job is due at once with its first due time, so it is the
//! oldest of its key again. The reason given to the last nak, the one that kills the job, is the
//! dead job's error.

use crate::{DeadJob, Delivery, Nacked, NewQueuedJob, Published, Queue, QueueError, Receipt, Result, check_kind};
use async_trait::async_trait;
use chrono::Utc;
use erpsync_store::{Job, JobId, JobState, NewJob, Store};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Version of the payload envelope; a job without it (enqueued by other code) is its own key.
const ENVELOPE_VERSION: i64 = 1;

#[derive(Debug, Clone)]
pub struct StoreQueueOptions {
    /// Deliveries before a job is dead (the store's `max_attempts`).
    pub max_deliveries: u32,
    /// How often a pull also returns jobs whose lease expired to the queue.
    pub reclaim_every: Duration,
}

impl Default for StoreQueueOptions {
    fn default() -> Self {
        StoreQueueOptions { max_deliveries: 5, reclaim_every: Duration::from_secs(1) }
    }
}

pub struct StoreQueue {
    store: Arc<dyn Store>,
    options: StoreQueueOptions,
    last_reclaim: Mutex<Option<Instant>>,
}

impl StoreQueue {
    pub fn new(store: Arc<dyn Store>, options: StoreQueueOptions) -> Self {
        StoreQueue { store, options, last_reclaim: Mutex::new(None) }
    }

    /// The store under this queue.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    async fn reclaim_if_due(&self) -> Result<()> {
        let due = {
            let mut last = self.last_reclaim.lock().expect("reclaim lock poisoned: a panic while holding it");
            let due = last.is_none_or(|at| at.elapsed() >= self.options.reclaim_every);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due {
            self.store.reclaim_expired_jobs().await.map_err(QueueError::store("reclaiming expired jobs"))?;
        }
        Ok(())
    }
}

fn receipt(delivery: &Delivery) -> Result<(JobId, &str)> {
    match &delivery.receipt {
        Receipt::Store { job_id, worker } => Ok((*job_id, worker)),
        Receipt::Nats(_) => Err(QueueError::ForeignDelivery { id: delivery.id.clone() }),
    }
}

/// The key and the payload of a stored job.
fn open_envelope(job: &Job) -> (String, serde_json::Value) {
    let envelope = job.payload.as_object().filter(|object| object.get("queue_v") == Some(&json!(ENVELOPE_VERSION)));
    match envelope.and_then(|object| Some((object.get("key")?.as_str()?, object.get("payload")?))) {
        Some((key, payload)) => (key.to_string(), payload.clone()),
        None => (format!("job:{}", job.id), job.payload.clone()),
    }
}

#[async_trait]
impl Queue for StoreQueue {
    async fn publish(&self, job: &NewQueuedJob) -> Result<Published> {
        check_kind(&job.kind)?;
        let new_job = NewJob {
            kind: job.kind.clone(),
            dedupe_key: job.dedupe_id.clone(),
            key: Some(job.key.clone()),
            payload: json!({"queue_v": ENVELOPE_VERSION, "key": job.key, "payload": job.payload}),
            run_at: job.not_before.unwrap_or_else(Utc::now),
            max_attempts: i32::try_from(self.options.max_deliveries).unwrap_or(i32::MAX),
        };
        let id = self.store.enqueue_job(&new_job).await.map_err(QueueError::store("publishing a job"))?;
        Ok(match id {
            Some(id) => Published::Published { id: id.to_string() },
            None => Published::Duplicate,
        })
    }

    async fn pull(&self, worker: &str, kinds: &[&str], max: usize, lease: Duration) -> Result<Vec<Delivery>> {
        if kinds.is_empty() || max == 0 {
            return Ok(Vec::new());
        }
        self.reclaim_if_due().await?;
        // The store's claim skips keys that are held (see the module docs).
        let jobs = self
            .store
            .claim_jobs(worker, kinds, lease, u32::try_from(max).unwrap_or(u32::MAX))
            .await
            .map_err(QueueError::store("claiming jobs"))?;
        Ok(jobs
            .into_iter()
            .map(|job| {
                let (key, payload) = open_envelope(&job);
                Delivery {
                    id: job.id.to_string(),
                    kind: job.kind.clone(),
                    key,
                    payload,
                    attempt: u32::try_from(job.attempts).unwrap_or(0).saturating_add(1),
                    receipt: Receipt::Store { job_id: job.id, worker: worker.to_string() },
                }
            })
            .collect())
    }

    async fn ack(&self, delivery: &Delivery) -> Result<()> {
        let (job_id, worker) = receipt(delivery)?;
        self.store.complete_job(job_id, worker).await.map_err(QueueError::store("acknowledging a job"))?;
        Ok(())
    }

    /// A retry keeps the job running under its lease, stretched to the delay: when the lease
    /// runs out, the reclaim counts the attempt and the job is due at once with its first
    /// `run_at`, so it stays ahead of the younger jobs of its key in the claim order. (Failing it
    /// with a later `run_at` would put those younger jobs first, and they would fill every claim
    /// while it waits for its key.) The last delivery fails the job with `reason`: it is dead.
    async fn nak(&self, delivery: &Delivery, delay: Duration, reason: &str) -> Result<Nacked> {
        let (job_id, worker) = receipt(delivery)?;
        if delivery.attempt >= self.options.max_deliveries {
            let state =
                self.store.fail_job(job_id, worker, reason, None).await.map_err(QueueError::store("failing a job"))?;
            if state == JobState::Dead {
                return Ok(Nacked::Dead);
            }
            return Ok(Nacked::Retry);
        }
        let held = self
            .store
            .heartbeat_job(job_id, worker, delay.max(Duration::from_millis(1)))
            .await
            .map_err(QueueError::store("handing back a failed job"))?;
        match held {
            true => Ok(Nacked::Retry),
            false => Err(QueueError::LeaseLost { id: delivery.id.clone() }),
        }
    }

    async fn extend(&self, delivery: &Delivery, lease: Duration) -> Result<()> {
        let (job_id, worker) = receipt(delivery)?;
        let held =
            self.store.heartbeat_job(job_id, worker, lease).await.map_err(QueueError::store("extending a lease"))?;
        match held {
            true => Ok(()),
            false => Err(QueueError::LeaseLost { id: delivery.id.clone() }),
        }
    }

    async fn dead(&self, limit: usize) -> Result<Vec<DeadJob>> {
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let jobs =
            self.store.list_jobs(Some(JobState::Dead), limit).await.map_err(QueueError::store("listing dead jobs"))?;
        Ok(jobs
            .iter()
            .map(|job| {
                let (key, payload) = open_envelope(job);
                DeadJob {
                    id: job.id.to_string(),
                    kind: job.kind.clone(),
                    key,
                    payload,
                    attempts: u32::try_from(job.attempts).unwrap_or(0),
                    error: job.last_error.clone().unwrap_or_default(),
                    died_at: job.updated_at,
                }
            })
            .collect())
    }
}
