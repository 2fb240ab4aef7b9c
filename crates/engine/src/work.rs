//! Jobs through the queue: what a run job says, publishing it, the worker loop that runs them,
//! the scheduler loop that leads, and the flow locks that keep runs of one flow apart.
//!
//! Every run is a job of kind [`RUN_FLOW`]. A pull of a flow (scheduled, manual, a coalesced
//! mass change, a re-drive of waiting dead letters) has the key `flow:<name>`; a job about one
//! record named by a webhook has the record's key, `record:<system>:<entity>:<id>`. The queue
//! hands out the jobs of one key one at a time, in publish order. Beyond that, a worker holds
//! the flow's lock (`flow:<name>`) while it runs the job: exclusively for a pull, shared for a
//! record job. So a pull never overlaps another pull or a record job of its flow, record jobs of
//! one flow run side by side, and two jobs of one record never run at once.

use crate::EngineError;
use crate::engine::Engine;
use crate::flow::{RunOptions, RunSummary};
use crate::schedule::Trigger;
use crate::shutdown::Shutdown;
use chrono::{DateTime, Utc};
use erpsync_queue::{Delivery, LockGuard, LockMode, NewQueuedJob, Published, QueueError};
use erpsync_store::RunStatus;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// Jobs a worker holds beyond `engine.concurrency` while they wait for their flow's lock. The
/// queue hands out one job per key at a time, so a flow has at most its pull and one job per
/// record partition waiting; this bounds them all the same.
const MAX_WAITING_JOBS: usize = 64;

/// A job's claim on one of the worker's `engine.concurrency` run slots.
struct Slot {
    slots: Arc<Semaphore>,
    /// Taken when the job was pulled, if one was free then.
    permit: Option<OwnedSemaphorePermit>,
}

/// The kind of every run job.
pub const RUN_FLOW: &str = "run_flow";

/// How often a scheduler checks (or contends for) the lead.
const LEADER_CHECK: Duration = Duration::from_secs(2);

/// What `erpsync serve` runs in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Receiver, scheduler and worker: the embedded deployment.
    All,
    /// Pulls jobs and runs flows.
    Worker,
    /// Contends for the lead; the leader turns due triggers, webhook deliveries and waiting
    /// dead letters into jobs, and evaluates alerts.
    Scheduler,
    /// Only the HTTP server: webhooks into the inbox, the admin API, the dashboard.
    Receiver,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "all" => Some(Role::All),
            "worker" => Some(Role::Worker),
            "scheduler" => Some(Role::Scheduler),
            "receiver" => Some(Role::Receiver),
            _ => None,
        }
    }

    pub fn runs_http(self) -> bool {
        matches!(self, Role::All | Role::Receiver)
    }

    pub fn runs_scheduler(self) -> bool {
        matches!(self, Role::All | Role::Scheduler)
    }

    pub fn runs_worker(self) -> bool {
        matches!(self, Role::All | Role::Worker)
    }
}

/// The key of a pull of `flow` (and the name of its lock).
pub fn flow_key(flow: &str) -> String {
    format!("flow:{flow}")
}

/// How many partitions the records of one system and entity are spread over: webhook records
/// of one partition are synced by one job at a time, in delivery order, and the partitions run
/// in parallel.
pub const RECORD_PARTITIONS: u32 = 32;

/// The partition of the record `id` among [`RECORD_PARTITIONS`].
pub fn record_partition(id: &str) -> u32 {
    erpsync_queue::partition_of(id, RECORD_PARTITIONS)
}

/// The key of a job about records of `entity` read from `system` in `partition` (see
/// [`record_partition`]): every job about one record has the same key, so the queue hands them
/// out one at a time, in publish order.
pub fn records_key(system: &str, entity: &str, partition: u32) -> String {
    format!("records:{system}:{entity}:{partition}")
}

/// A run job's payload.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct RunRequest {
    pub flow: String,
    pub trigger: String,
    #[serde(default)]
    pub full: bool,
    /// The records of webhook events: fetched by id. Such a job holds its flow's lock shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
    /// Records of `ids` that the webhook bodies carried whole, by id, in the versioned
    /// serialized form: taken instead of a fetch while the record was never synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bodies: Option<BTreeMap<String, serde_json::Value>>,
    /// Waiting dead letters taken up again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letters: Option<Vec<i64>>,
    /// When the job was published (for the logs and the dead jobs' list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at: Option<DateTime<Utc>>,
}

impl RunRequest {
    pub(crate) fn pull(flow: &str, trigger: &str, full: bool) -> Self {
        RunRequest { flow: flow.to_string(), trigger: trigger.to_string(), full, ..Default::default() }
    }

    fn lock_mode(&self) -> LockMode {
        match self.ids {
            Some(_) => LockMode::Shared,
            None => LockMode::Exclusive,
        }
    }
}

impl Engine {
    /// Publishes a run job. `dedupe_id` makes a second publish of the same request a duplicate.
    pub(crate) async fn publish_run(
        &self,
        key: String,
        request: &RunRequest,
        dedupe_id: String,
    ) -> Result<Published, EngineError> {
        let mut request = request.clone();
        request.published_at = Some(Utc::now());
        let job = NewQueuedJob {
            kind: RUN_FLOW.to_string(),
            key,
            dedupe_id: Some(dedupe_id),
            payload: serde_json::to_value(&request).expect("a run request is plain JSON"),
            not_before: None,
        };
        Ok(self.queue().publish(&job).await?)
    }

    /// Takes the lock of `flow` in `mode` when it is free; `None` when another run holds it.
    pub(crate) async fn try_lock_flow(&self, flow: &str, mode: LockMode) -> Result<Option<LockGuard>, EngineError> {
        Ok(self.locks().try_lock(&flow_key(flow), mode).await?)
    }

    /// Runs the scheduler and/or the worker of `serve` until shutdown. A worker drains on
    /// shutdown: it pulls nothing more, lets its running jobs finish their current page, and
    /// hands the unfinished ones back to the queue.
    pub async fn serve_role(self: &std::sync::Arc<Self>, role: Role, shutdown: Shutdown) -> Result<(), EngineError> {
        let scheduler = role.runs_scheduler().then(|| {
            let engine = self.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move { engine.lead_scheduler(shutdown).await })
        });
        let worked = if role.runs_worker() { self.work(shutdown.clone()).await } else { Ok(()) };
        let scheduled = match scheduler {
            Some(handle) => match handle.await {
                Ok(result) => result,
                Err(error) => {
                    Err(EngineError::Stopped { flow: String::new(), reason: format!("scheduler task: {error}") })
                }
            },
            None => Ok(()),
        };
        if !role.runs_worker() && !role.runs_scheduler() {
            let mut wait = shutdown;
            wait.requested().await;
        }
        worked.and(scheduled)
    }

    /// The scheduler role: contends for the lead every 2 seconds; while leading, enqueues due
    /// triggers, turns webhook deliveries into jobs and re-drives waiting dead letters.
    async fn lead_scheduler(self: std::sync::Arc<Self>, shutdown: Shutdown) -> Result<(), EngineError> {
        let leader = self.leader();
        // Alerts are evaluated by the leader only: started with each term, stopped when it ends.
        let mut alerting: Option<(crate::shutdown::ShutdownTrigger, Option<tokio::task::JoinHandle<()>>)> = None;
        // So are the probes of open circuits.
        let mut probing: Option<(crate::shutdown::ShutdownTrigger, Option<tokio::task::JoinHandle<()>>)> = None;
        let mut tick = shutdown.clone();
        let mut leading = false;
        let mut last_check: Option<std::time::Instant> = None;
        let mut schedule = Vec::new();
        let mut last_redrive = Utc::now();
        while !shutdown.is_requested() {
            if last_check.is_none_or(|at| at.elapsed() >= LEADER_CHECK) {
                last_check = Some(std::time::Instant::now());
                let now_leading = match leader.check().await {
                    Ok(leading) => leading,
                    Err(error) => {
                        tracing::warn!(%error, "Could not check the scheduler's lead; not scheduling meanwhile.");
                        false
                    }
                };
                if now_leading && !leading {
                    match self.load_schedule().await {
                        Ok(loaded) => {
                            tracing::info!(worker = %self.worker().0, "Leading the scheduler.");
                            schedule = loaded;
                            let (trigger, listener) = crate::shutdown::channel();
                            alerting = Some((trigger, crate::alerts::spawn(&self, listener)));
                            let (trigger, listener) = crate::shutdown::channel();
                            probing = Some((trigger, Some(crate::circuit::spawn(&self, listener))));
                            leading = true;
                        }
                        // Still holding the lead: the next check tries again.
                        Err(error) => tracing::error!(%error, "Could not load the schedule; trying again."),
                    }
                } else if leading && !now_leading {
                    tracing::warn!(worker = %self.worker().0, "Lost the scheduler's lead.");
                    stop_alerting(alerting.take()).await;
                    stop_alerting(probing.take()).await;
                    leading = false;
                }
            }
            if leading {
                let now = Utc::now();
                let step = async {
                    self.process_inbox().await?;
                    if now - last_redrive > chrono::Duration::seconds(15) {
                        self.redrive_waiting().await?;
                        last_redrive = now;
                    }
                    self.enqueue_due(&mut schedule, now).await
                };
                if let Err(error) = step.await {
                    // A store or queue outage: the next round tries again.
                    tracing::error!(%error, "Scheduling failed; trying again.");
                }
            }
            tick.sleep(Duration::from_millis(500)).await;
        }
        if leading && let Err(error) = leader.resign().await {
            tracing::warn!(%error, "Could not resign the scheduler's lead; it is freed when the connection closes.");
        }
        stop_alerting(alerting.take()).await;
        stop_alerting(probing.take()).await;
        Ok(())
    }

    /// Publishes the run of every due trigger (a paused flow's trigger passes without a run)
    /// and stores each trigger's next time.
    async fn enqueue_due(
        &self,
        schedule: &mut [crate::engine::DueTrigger],
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        if !schedule.iter().any(|due| due.at <= now) {
            return Ok(());
        }
        // A flow held by an open circuit lets its triggers pass too; the circuit's probe and the
        // first run after it closes catch up from the checkpoint.
        let mut paused = self.paused_flow_names().await?;
        paused.extend(self.flows_held_by_circuits().await?);
        for due in schedule.iter_mut().filter(|due| due.at <= now) {
            if !paused.contains(&due.flow) {
                let request = RunRequest::pull(&due.flow, due.label, due.full);
                let dedupe = format!("schedule:{}:{}", due.key, due.at.timestamp_millis());
                self.publish_run(flow_key(&due.flow), &request, dedupe).await?;
            }
            due.at = next_time(&due.trigger, now);
            self.store().put_schedule(&due.key, &due.trigger.spec(), due.at).await?;
        }
        Ok(())
    }

    /// The worker role: pulls run jobs while slots are free (`engine.concurrency`) and runs
    /// them; on shutdown stops pulling and waits for the running ones.
    ///
    /// A job waiting for its flow's lock (a long pull of the flow runs, here or on another
    /// worker) gives its slot back while it waits: webhook jobs queued behind a pull must not
    /// stop every other flow. It takes a slot each time it tries the lock again, so no more
    /// than `engine.concurrency` runs ever run, and locks are held, at once.
    async fn work(self: &std::sync::Arc<Self>, shutdown: Shutdown) -> Result<(), EngineError> {
        let concurrency = self.config().engine.concurrency;
        tracing::info!(worker = %self.worker().0, concurrency, "Worker started.");
        let slots = Arc::new(Semaphore::new(concurrency));
        let mut running: JoinSet<()> = JoinSet::new();
        let mut tick = shutdown.clone();
        let mut last_reclaim: Option<std::time::Instant> = None;
        let lease = self.config().engine.lease;
        while !shutdown.is_requested() {
            if last_reclaim.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                last_reclaim = Some(std::time::Instant::now());
                if let Err(error) = self.reclaim_jobs().await {
                    tracing::warn!(%error, "Could not reclaim the jobs of dead workers.");
                }
            }
            while running.try_join_next().is_some() {}
            let room = (concurrency + MAX_WAITING_JOBS).saturating_sub(running.len());
            let free = slots.available_permits().min(room);
            if free == 0 {
                // Every slot busy: wait for one to free (or a little, to reclaim and check).
                tokio::select! {
                    _ = running.join_next() => {}
                    _ = tick.sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
            match self.queue().pull(&self.worker().0, &[RUN_FLOW], free, lease).await {
                Ok(deliveries) if deliveries.is_empty() => {
                    tick.sleep(Duration::from_millis(200)).await;
                }
                Ok(deliveries) => {
                    for delivery in deliveries {
                        let engine = self.clone();
                        let shutdown = shutdown.clone();
                        // A job that finds every slot taken (one given back a moment ago was
                        // taken again) waits for one in its task.
                        let slot = Slot { slots: slots.clone(), permit: slots.clone().try_acquire_owned().ok() };
                        running.spawn(async move { engine.handle(delivery, slot, shutdown).await });
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "Could not pull jobs; trying again.");
                    tick.sleep(Duration::from_secs(1)).await;
                }
            }
        }
        tracing::info!(running = running.len(), "Draining: finishing the current pages, handing back the rest.");
        while running.join_next().await.is_some() {}
        tracing::info!("Drained.");
        Ok(())
    }

    /// Runs one delivered job and settles it: acknowledged once its pages are committed, handed
    /// back (with a backoff when it failed), or acknowledged without a run when it is moot.
    async fn handle(self: std::sync::Arc<Self>, delivery: Delivery, slot: Slot, shutdown: Shutdown) {
        let request: RunRequest = match serde_json::from_value(delivery.payload.clone()) {
            Ok(request) => request,
            Err(error) => {
                tracing::error!(job = %delivery.id, %error, "A run job that is not a run request: dropped.");
                self.settle(&delivery, Settle::Ack).await;
                return;
            }
        };
        let outcome = self.handle_request(&delivery, &request, slot, shutdown).await;
        let settle = match outcome {
            Ok(Handled::Done) => Settle::Ack,
            Ok(Handled::Interrupted) => Settle::Retry(Duration::ZERO, "interrupted: the worker stopped".into()),
            Ok(Handled::Failed(error)) | Err(error) => {
                tracing::error!(flow = %request.flow, job = %delivery.id, attempt = delivery.attempt, %error, "Flow run failed.");
                let exponent = delivery.attempt.clamp(1, 7) - 1;
                Settle::Retry(Duration::from_secs(5 << exponent), error.to_string())
            }
        };
        self.settle(&delivery, settle).await;
    }

    async fn settle(&self, delivery: &Delivery, settle: Settle) {
        let result = match &settle {
            Settle::Ack => self.queue().ack(delivery).await,
            Settle::Retry(delay, reason) => self.queue().nak(delivery, *delay, reason).await.map(|_| ()),
        };
        match result {
            Ok(()) => {}
            Err(QueueError::LeaseLost { .. }) => {
                tracing::warn!(job = %delivery.id, "The job's lease ran out before it was settled; it runs again elsewhere.");
            }
            Err(error) => {
                tracing::error!(job = %delivery.id, %error, "Could not settle a job; it comes back after its lease.")
            }
        }
    }

    async fn handle_request(
        &self,
        delivery: &Delivery,
        request: &RunRequest,
        slot: Slot,
        shutdown: Shutdown,
    ) -> Result<Handled, EngineError> {
        let Some(flow) = self.config().flows.get(&request.flow) else {
            tracing::error!(flow = %request.flow, job = %delivery.id, "A job of a flow that is not configured: dropped.");
            return Ok(Handled::Done);
        };
        if !flow.enabled || self.paused_flow_names().await?.contains(&request.flow) {
            // Its next run after resuming reads the change from its checkpoint.
            tracing::info!(flow = %request.flow, job = %delivery.id, "A job of a disabled or paused flow: dropped.");
            return Ok(Handled::Done);
        }
        let scheduled_pull = request.ids.is_none()
            && request.dead_letters.is_none()
            && !matches!(request.trigger.as_str(), "manual" | "retry");
        if scheduled_pull && self.flows_held_by_circuits().await?.contains(&request.flow) {
            // Queued before its circuit opened; the first run after it closes reads the same
            // changes from the checkpoint. Manual runs, record jobs and retries still run: one
            // that gets through closes the circuit.
            tracing::info!(flow = %request.flow, job = %delivery.id, "A scheduled pull of a flow held by an open circuit: dropped.");
            return Ok(Handled::Done);
        }
        let ctx = self.flow_context(&request.flow)?;

        // Keep the lease while waiting for the lock and while running; losing it (the job went
        // to another worker) stops the run after its current page.
        let (stop_trigger, stop) = crate::shutdown::channel();
        let lease = self.config().engine.lease;
        let keepalive = {
            let queue = self.queue().clone();
            let delivery = delivery.clone();
            let mut outer = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(lease / 3) => {}
                        _ = outer.requested() => { stop_trigger.trigger(); return; }
                    }
                    match queue.extend(&delivery, lease).await {
                        Ok(()) => {}
                        Err(QueueError::LeaseLost { .. }) => {
                            tracing::error!(job = %delivery.id, "Lost the lease of a running job; stopping after the current page.");
                            stop_trigger.trigger();
                            return;
                        }
                        Err(error) => tracing::warn!(job = %delivery.id, %error, "Could not extend a job's lease."),
                    }
                }
            })
        };
        let result = self.run_locked(&ctx, request, slot, &stop).await;
        keepalive.abort();
        match result? {
            None => Ok(Handled::Interrupted),
            Some(summary) => Ok(match summary.status {
                RunStatus::Interrupted => Handled::Interrupted,
                RunStatus::Failed => Handled::Failed(EngineError::Stopped {
                    flow: request.flow.clone(),
                    reason: summary.error.unwrap_or_else(|| "the run failed".into()),
                }),
                _ => Handled::Done,
            }),
        }
    }

    /// Takes a slot and the flow's lock (while `stop` is not triggered), runs the request,
    /// releases both. The slot is given back while the lock is waited for. `None` when stopped
    /// before the run could start.
    async fn run_locked(
        &self,
        ctx: &crate::flow::FlowContext,
        request: &RunRequest,
        slot: Slot,
        stop: &Shutdown,
    ) -> Result<Option<RunSummary>, EngineError> {
        let mode = request.lock_mode();
        let mut waiting = stop.clone();
        // A lock is only ever held with a slot, so a process holds at most `concurrency` flow
        // locks (each a connection on PostgreSQL).
        let Slot { slots, mut permit } = slot;
        let mut waited = false;
        let (lock, _permit) = loop {
            let held = match permit.take() {
                Some(permit) => permit,
                None => tokio::select! {
                    permit = slots.clone().acquire_owned() => permit.expect("the worker's slots are never closed"),
                    _ = waiting.requested() => return Ok(None),
                },
            };
            if let Some(lock) = self.try_lock_flow(&request.flow, mode).await? {
                break (lock, held);
            }
            drop(held);
            if !waited {
                waited = true;
                tracing::debug!(flow = %request.flow, "Waiting for the flow's lock, without a slot.");
            }
            if !waiting.sleep(Duration::from_millis(250)).await {
                return Ok(None);
            }
        };
        match &request.ids {
            None => {
                tracing::info!(flow = %request.flow, trigger = %request.trigger, worker = %self.worker().0, "Running a pull.")
            }
            Some(ids) => tracing::debug!(flow = %request.flow, ?ids, "Running a record job."),
        }
        let options = RunOptions { full: request.full, dry_run: false, trigger: request.trigger.clone() };
        let result = self.run_job(ctx, request, &options, stop, &|_| {}).await;
        lock.release().await;
        result.map(Some)
    }
}

async fn stop_alerting(alerting: Option<(crate::shutdown::ShutdownTrigger, Option<tokio::task::JoinHandle<()>>)>) {
    if let Some((trigger, handle)) = alerting {
        trigger.trigger();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }
}

fn next_time(trigger: &Trigger, now: DateTime<Utc>) -> DateTime<Utc> {
    trigger.next_after(now)
}

enum Handled {
    Done,
    Interrupted,
    Failed(EngineError),
}

enum Settle {
    Ack,
    Retry(Duration, String),
}
