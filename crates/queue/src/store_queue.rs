//! [`StoreQueue`]: the embedded queue, over the store's jobs (SQLite, or PostgreSQL).
//!
//! A job is one row of the store's `jobs` table: its kind is the job's kind, its dedupe key the
//! job's dedupe id, and its payload an envelope `{"queue_v": 1, "key": …, "payload": …}` that
//! carries the ordering key (the `Store` trait has no key column).
//!
//! Per-key order is kept in the process, because the `Store` trait cannot claim "the oldest job
//! of a key that has no job running": each key is held by one job, from its first delivery until
//! it is acknowledged or dead, and the pulls of one `StoreQueue` take turns (claim and decide as
//! one step), so the oldest due job of a key is always the one that takes it. A claimed job whose
//! key is held by another job is handed back at once, without counting an attempt. A job handed
//! back with [`Queue::nak`] keeps holding its key through its delay, so a later job for the same
//! key waits; when its lease expires it still holds the key and gets it back at its next claim.
//! A nak keeps the job leased until its delay is over (see [`StoreQueue::nak`]); the store then
//! records "lease expired" as that attempt's error, and the reason given to the last nak, the one
//! that kills the job, is the dead job's error.
//!
//! What holds therefore: per-key exclusivity and order among all workers that pull from one
//! `StoreQueue` (one process: the embedded deployment). Several processes each with their own
//! `StoreQueue` on one PostgreSQL database share the jobs safely (a job is never out twice) but
//! not the key holds: use [`crate::NatsQueue`] to scale out, or add a key column to the store.

use crate::{DeadJob, Delivery, Nacked, NewQueuedJob, Published, Queue, QueueError, Receipt, Result, check_kind};
use async_trait::async_trait;
use chrono::Utc;
use erpsync_store::{Job, JobId, JobState, NewJob, Store};
use serde_json::json;
use std::collections::{HashMap, HashSet};
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
    /// Pulls take turns: the claim and the key decisions are one step (see the module docs).
    pulling: tokio::sync::Mutex<()>,
    /// Key → the job that holds it.
    holders: Mutex<HashMap<String, JobId>>,
    last_reclaim: Mutex<Option<Instant>>,
}

impl StoreQueue {
    pub fn new(store: Arc<dyn Store>, options: StoreQueueOptions) -> Self {
        StoreQueue {
            store,
            options,
            pulling: tokio::sync::Mutex::new(()),
            holders: Mutex::new(HashMap::new()),
            last_reclaim: Mutex::new(None),
        }
    }

    fn holder_of(&self, key: &str) -> Option<JobId> {
        self.holders.lock().expect("holders lock poisoned: a panic while holding it").get(key).copied()
    }

    fn hold(&self, key: &str, job_id: JobId) {
        self.holders.lock().expect("holders lock poisoned: a panic while holding it").insert(key.to_string(), job_id);
    }

    fn let_go(&self, key: &str, job_id: JobId) {
        let mut holders = self.holders.lock().expect("holders lock poisoned: a panic while holding it");
        if holders.get(key) == Some(&job_id) {
            holders.remove(key);
        }
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

    /// A holder that is done or dead (a lease that expired for the last time, an operator's
    /// action) holds nothing any more.
    async fn holder_is_finished(&self, job_id: JobId) -> Result<bool> {
        let job = self.store.job(job_id).await.map_err(QueueError::store("reading the job that holds a key"))?;
        Ok(match job {
            None => true,
            Some(job) => matches!(job.state, JobState::Done | JobState::Dead),
        })
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
            payload: json!({"queue_v": ENVELOPE_VERSION, "key": job.key, "payload": job.payload}),
            run_at: job.not_before.unwrap_or_else(Utc::now),
            max_attempts: i32::try_from(self.options.max_deliveries).unwrap_or(i32::MAX),
        };
        let id = self.store.enqueue_job(&new_job).await.map_err(QueueError::store("publishing a job"))?;
        Ok(match id {
            Some(_) => Published::Published,
            None => Published::Duplicate,
        })
    }

    async fn pull(&self, worker: &str, kinds: &[&str], max: usize, lease: Duration) -> Result<Vec<Delivery>> {
        if kinds.is_empty() || max == 0 {
            return Ok(Vec::new());
        }
        // Held across the awaits below on purpose: this async mutex makes claim-and-decide one
        // step among this queue's pullers, which is what keeps the oldest job of a key first.
        let _turn = self.pulling.lock().await;
        self.reclaim_if_due().await?;
        // Exactly as many as asked: a job whose key is held goes back, and the pull hands out
        // fewer. Claiming more to make up for it cost more in hand-backs than it won.
        let jobs = self
            .store
            .claim_jobs(worker, kinds, lease, u32::try_from(max).unwrap_or(u32::MAX))
            .await
            .map_err(QueueError::store("claiming jobs"))?;

        let mut deliveries = Vec::with_capacity(max.min(jobs.len()));
        let mut taken_now = HashSet::new();
        // Keys with a job handed back in this pull: a younger job of the key must not pass it,
        // even when the key's holder is acknowledged meanwhile.
        let mut waiting_keys = HashSet::new();
        let mut handed_back = Vec::new();
        for job in jobs {
            let (key, payload) = open_envelope(&job);
            let holder = self.holder_of(&key);
            if deliveries.len() >= max || (waiting_keys.contains(&key) && holder != Some(job.id)) {
                waiting_keys.insert(key);
                handed_back.push(job.id);
                continue;
            }
            let free = match holder {
                None => true,
                Some(holder) if holder == job.id => true,
                Some(holder) if taken_now.contains(&holder) => false,
                Some(holder) => self.holder_is_finished(holder).await?,
            };
            if !free {
                waiting_keys.insert(key);
                handed_back.push(job.id);
                continue;
            }
            self.hold(&key, job.id);
            taken_now.insert(job.id);
            deliveries.push(Delivery {
                id: job.id.to_string(),
                kind: job.kind.clone(),
                key,
                payload,
                attempt: u32::try_from(job.attempts).unwrap_or(0).saturating_add(1),
                receipt: Receipt::Store { job_id: job.id, worker: worker.to_string() },
            });
        }
        for job_id in handed_back {
            self.store.release_job(job_id, worker).await.map_err(QueueError::store("handing back a job"))?;
        }
        Ok(deliveries)
    }

    async fn ack(&self, delivery: &Delivery) -> Result<()> {
        let (job_id, worker) = receipt(delivery)?;
        self.store.complete_job(job_id, worker).await.map_err(QueueError::store("acknowledging a job"))?;
        self.let_go(&delivery.key, job_id);
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
                self.let_go(&delivery.key, job_id);
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
