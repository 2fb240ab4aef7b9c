//! `Engine`: runs flows as leased jobs, schedules them, and serves the operator commands
//! (status, trace, dead-letter retry and discard).

use crate::EngineError;
use crate::config::{Config, FlowConfig};
use crate::flow::{self, FlowContext, ProgressFn, RunOptions, RunSummary};
use crate::schedule::{Trigger, first_due};
use crate::shutdown::Shutdown;
use chrono::{DateTime, Utc};
use erpsync_connectors::{EventRef, Sink, Source, SourceRecord, WebhookReceiver};
use erpsync_model::envelope;
use erpsync_store::{
    DeadLetter, DeadLetterFilter, DeadLetterId, DeadLetterStatus, FlowPause, InboxId, Job, JobState, NewAuditEntry,
    NewJob, NewRun, RecordIdentity, RecordLogEntry, Run, RunStatus, Store, StoreError,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;

/// This process's identity as a job holder: `host:pid:nonce`. The pid lets a process on the
/// same host see that a holder has died and reclaim its job at once instead of waiting for
/// the lease to expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerId(pub String);

impl WorkerId {
    pub fn for_this_process() -> Self {
        let nonce: u32 = rand::random();
        WorkerId(format!("{}:{}:{nonce:08x}", host_name(), std::process::id()))
    }

    /// True when the holder ran on this host and its process no longer exists.
    fn is_dead_local(owner: &str) -> bool {
        let mut parts = owner.rsplitn(3, ':');
        let (_nonce, pid, host) = (parts.next(), parts.next(), parts.next());
        match (host, pid.and_then(|pid| pid.parse::<u32>().ok())) {
            (Some(host), Some(pid)) if host == host_name() => {
                pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            }
            _ => false,
        }
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

pub(crate) const RUN_FLOW_KIND: &str = "run_flow:";
/// Run jobs are not poison in the usual sense (a crash mid-run resumes from the checkpoint),
/// so they may be attempted many times; the schedule re-enqueues them anyway.
pub(crate) const RUN_FLOW_MAX_ATTEMPTS: i32 = 1000;

#[derive(Debug, Clone, serde::Serialize)]
pub struct FlowStatus {
    pub name: String,
    pub entity: String,
    pub source: String,
    pub target: String,
    pub trigger: Option<String>,
    pub enabled: bool,
    pub last_run: Option<Run>,
    /// Seconds since the last successful run finished.
    pub lag_seconds: Option<i64>,
    pub open_failures: i64,
    /// When `serve` next runs it on its schedule, and its next reconciliation pass, as stored.
    pub next_run: Option<DateTime<Utc>>,
    pub next_reconcile: Option<DateTime<Utc>>,
    /// Set while an operator has paused the flow: no scheduled or webhook-triggered runs.
    pub paused: Option<FlowPause>,
    /// The circuit of its source or target while one is open or half-open (open: held).
    pub circuit: Option<crate::circuit::Circuit>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TraceReport {
    pub key: String,
    pub records: Vec<TracedRecord>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TracedRecord {
    pub identity: RecordIdentity,
    pub events: Vec<RecordLogEntry>,
    pub dead_letters: Vec<DeadLetter>,
}

pub struct Engine {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    worker: WorkerId,
    sources: Mutex<HashMap<String, Arc<dyn Source>>>,
    sinks: Mutex<HashMap<String, Arc<dyn Sink>>>,
    receivers: Mutex<HashMap<String, Option<Arc<dyn WebhookReceiver>>>>,
    pub(crate) circuits: crate::circuit::Circuits,
}

impl Engine {
    pub fn new(config: Arc<Config>, store: Arc<dyn Store>) -> Self {
        Self {
            config,
            store,
            worker: WorkerId::for_this_process(),
            sources: Mutex::new(HashMap::new()),
            sinks: Mutex::new(HashMap::new()),
            receivers: Mutex::new(HashMap::new()),
            circuits: Default::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn worker(&self) -> &WorkerId {
        &self.worker
    }

    pub(crate) fn flow_config(&self, name: &str) -> Result<&FlowConfig, EngineError> {
        self.config.flows.get(name).ok_or_else(|| EngineError::UnknownFlow {
            name: name.to_string(),
            known: self.config.flows.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    /// Uses `source` for `system` instead of building it from the configuration: for embedding
    /// erpsync with a connector of one's own, and for tests with scripted connectors.
    pub fn use_source(&self, system: &str, source: Arc<dyn Source>) {
        self.sources.lock().expect("connector cache lock is never poisoned").insert(system.to_string(), source);
    }

    /// Uses `sink` for `system` instead of building it from the configuration.
    pub fn use_sink(&self, system: &str, sink: Arc<dyn Sink>) {
        self.sinks.lock().expect("connector cache lock is never poisoned").insert(system.to_string(), sink);
    }

    /// The webhook verifier of `system`: `Ok(None)` when the system is configured but its
    /// connector receives no webhooks; an error when no such system is configured.
    pub fn webhook_receiver(&self, system: &str) -> Result<Option<Arc<dyn WebhookReceiver>>, EngineError> {
        let mut receivers = self.receivers.lock().expect("connector cache lock is never poisoned");
        if let Some(receiver) = receivers.get(system) {
            return Ok(receiver.clone());
        }
        let config = self
            .config
            .systems
            .get(system)
            .ok_or_else(|| EngineError::UnknownSystem { flow: String::new(), system: system.to_string() })?;
        let receiver = config.build_webhook_receiver(system)?;
        receivers.insert(system.to_string(), receiver.clone());
        Ok(receiver)
    }

    /// Builds (once) the connectors a flow needs.
    pub fn flow_context(&self, name: &str) -> Result<FlowContext, EngineError> {
        let flow = self.flow_config(name)?.clone();
        let source = self.source(&flow, &flow.source)?;
        let sink = self.sink(&flow, &flow.target)?;
        let target_reader = if flow.fields.is_some() { Some(self.source(&flow, &flow.target)?) } else { None };
        let (source, sink, target_reader) = self.circuits.watch(&flow, source, sink, target_reader);
        Ok(FlowContext { flow, store: self.store.clone(), source, sink, target_reader })
    }

    pub(crate) fn source(&self, flow: &FlowConfig, system: &str) -> Result<Arc<dyn Source>, EngineError> {
        let mut sources = self.sources.lock().expect("connector cache lock is never poisoned");
        if let Some(source) = sources.get(system) {
            return Ok(source.clone());
        }
        let config = self
            .config
            .systems
            .get(system)
            .ok_or_else(|| EngineError::UnknownSystem { flow: flow.name.clone(), system: system.to_string() })?;
        let source = config.build_source(system)?;
        sources.insert(system.to_string(), source.clone());
        Ok(source)
    }

    pub(crate) fn sink(&self, flow: &FlowConfig, system: &str) -> Result<Arc<dyn Sink>, EngineError> {
        let mut sinks = self.sinks.lock().expect("connector cache lock is never poisoned");
        if let Some(sink) = sinks.get(system) {
            return Ok(sink.clone());
        }
        let config = self
            .config
            .systems
            .get(system)
            .ok_or_else(|| EngineError::UnknownSystem { flow: flow.name.clone(), system: system.to_string() })?;
        let sink = config.build_sink(system)?;
        sinks.insert(system.to_string(), sink.clone());
        Ok(sink)
    }

    /// Returns to the queue the jobs of holders that are gone: expired leases anywhere, and at
    /// once those of dead processes on this host.
    pub async fn reclaim_jobs(&self) -> Result<u64, EngineError> {
        let mut reclaimed = self.store.reclaim_expired_jobs().await?;
        for job in self.store.list_jobs(Some(JobState::Running), 1000).await? {
            let Some(owner) = job.lease_owner.as_deref() else { continue };
            if WorkerId::is_dead_local(owner) {
                tracing::warn!(job_id = job.id, kind = %job.kind, owner, "Reclaiming the job of a worker that died.");
                self.store
                    .fail_job(job.id, owner, &format!("worker {owner} died while holding the job"), Some(Utc::now()))
                    .await?;
                reclaimed += 1;
            }
        }
        Ok(reclaimed)
    }

    /// Runs one flow now, in this process, holding the flow's job so that no other run of it
    /// overlaps. A run left behind by a process that died is taken over and resumes from its
    /// checkpoint.
    pub async fn sync(
        &self,
        flow_name: &str,
        options: &RunOptions,
        shutdown: &Shutdown,
        progress: ProgressFn<'_>,
    ) -> Result<RunSummary, EngineError> {
        let ctx = self.flow_context(flow_name)?;
        self.reclaim_jobs().await?;
        let kind = format!("{RUN_FLOW_KIND}{flow_name}");
        self.store
            .enqueue_job(&NewJob {
                kind: kind.clone(),
                dedupe_key: Some(kind.clone()),
                payload: serde_json::json!({ "flow": flow_name, "trigger": options.trigger, "full": options.full }),
                run_at: Utc::now(),
                max_attempts: RUN_FLOW_MAX_ATTEMPTS,
            })
            .await?;
        let lease = self.config.engine.lease;
        let claimed = self.store.claim_jobs(&self.worker.0, &[kind.as_str()], lease, 1).await?;
        let Some(job) = claimed.into_iter().next() else {
            let holder = self
                .store
                .list_jobs(None, 1000)
                .await?
                .into_iter()
                .find(|job| job.kind == kind && matches!(job.state, JobState::Pending | JobState::Running));
            return Err(match holder {
                Some(job) => EngineError::AlreadyRunning {
                    flow: flow_name.to_string(),
                    job_id: job.id,
                    state: job.state.as_str().to_string(),
                    owner: job.lease_owner.map(|owner| format!(", held by {owner}")).unwrap_or_default(),
                },
                None => {
                    EngineError::Stopped { flow: flow_name.to_string(), reason: "its job could not be claimed".into() }
                }
            });
        };
        self.run_job(&ctx, &job, options, shutdown, progress).await
    }

    async fn run_job(
        &self,
        ctx: &FlowContext,
        job: &Job,
        options: &RunOptions,
        shutdown: &Shutdown,
        progress: ProgressFn<'_>,
    ) -> Result<RunSummary, EngineError> {
        // Keep the lease alive while the run goes on; losing it (another worker reclaimed the
        // job) stops the run after its current page.
        let (stop_trigger, stop) = crate::shutdown::channel();
        let lease = self.config.engine.lease;
        let heartbeat = {
            let store = self.store.clone();
            let worker = self.worker.0.clone();
            let job_id = job.id;
            let mut outer = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(lease / 3) => {}
                        _ = outer.requested() => { stop_trigger.trigger(); return; }
                    }
                    match store.heartbeat_job(job_id, &worker, lease).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::error!(
                                job_id,
                                "Lost the lease of a running flow; stopping after the current page."
                            );
                            stop_trigger.trigger();
                            return;
                        }
                        Err(error) => tracing::warn!(job_id, error = %error, "Could not extend a job lease."),
                    }
                }
            })
        };
        let mut run_options = options.clone();
        if job.attempts > 0 {
            // A previous holder died mid-run: this run continues its work from the checkpoint.
            tracing::info!(flow = %ctx.flow.name, job_id = job.id, attempts = job.attempts, "Resuming a flow whose previous run was interrupted.");
        }
        if run_options.trigger.is_empty() {
            run_options.trigger = "manual".into();
        }
        self.interrupt_stale_runs(&ctx.flow.name).await?;
        // A job about the records of webhook events names them; the others pull.
        let ids: Option<Vec<String>> = job
            .payload
            .get("ids")
            .and_then(|ids| ids.as_array())
            .map(|ids| ids.iter().filter_map(|id| id.as_str().map(str::to_string)).collect());
        // A job taking up dead letters that waited for something (another record, an outage).
        let letters: Option<Vec<DeadLetterId>> = job
            .payload
            .get("dead_letters")
            .and_then(|ids| ids.as_array())
            .map(|ids| ids.iter().filter_map(|id| id.as_i64()).collect());
        let result = match (&ids, &letters) {
            (Some(ids), _) => flow::run_records(ctx, ids, &run_options, &stop).await,
            (None, Some(letters)) => {
                let records = self.take_up_letters(letters).await?;
                flow::run_given(ctx, records, &run_options, &stop).await
            }
            (None, None) => flow::run_flow(ctx, &run_options, &stop, progress).await,
        };
        heartbeat.abort();
        self.circuits.run_ended(self, &ctx.flow, &result).await;
        let worker = &self.worker.0;
        let settled = match &result {
            Ok(summary) if summary.status == RunStatus::Interrupted => self.store.release_job(job.id, worker).await,
            Ok(summary) if summary.status == RunStatus::Failed => {
                let error = summary.error.clone().unwrap_or_default();
                self.store.fail_job(job.id, worker, &error, None).await.map(|_| ())
            }
            Ok(_) => self.store.complete_job(job.id, worker).await,
            Err(error) => self.store.fail_job(job.id, worker, &error.to_string(), None).await.map(|_| ()),
        };
        match settled {
            Ok(()) => {}
            // Another worker reclaimed the job (our lease ran out, e.g. the machine stalled).
            // The run's pages are committed either way; the other holder resumes from the
            // checkpoint, so this is worth a warning, not a failure of this run.
            Err(StoreError::LeaseLost { .. }) => {
                tracing::warn!(flow = %ctx.flow.name, job_id = job.id, "The job was reclaimed by another worker before this run ended.");
            }
            Err(error) => return Err(error.into()),
        }
        result
    }

    /// Marks as interrupted the runs of `flow` still marked running. Called while holding the
    /// flow's job, so none of them can really be running.
    async fn interrupt_stale_runs(&self, flow: &str) -> Result<(), EngineError> {
        for run in self.store.list_runs(Some(flow), 20).await? {
            if run.status == RunStatus::Running {
                self.store.finish_run(run.id, RunStatus::Interrupted, Some("the process running it stopped")).await?;
            }
        }
        Ok(())
    }

    /// Runs flows on their schedules until shutdown: enqueues due runs, claims and runs them
    /// (at most `engine.concurrency` at once), reclaims jobs of dead workers.
    pub async fn serve(self: &Arc<Self>, shutdown: Shutdown) -> Result<(), EngineError> {
        let mut schedule = self.load_schedule().await?;
        tracing::info!(triggers = schedule.len(), worker = %self.worker.0, "Scheduler started.");
        let kinds: Vec<String> = self.config.flows.keys().map(|name| format!("{RUN_FLOW_KIND}{name}")).collect();
        let mut running: JoinSet<()> = JoinSet::new();
        let mut tick = shutdown.clone();
        let mut last_reclaim = Utc::now() - chrono::Duration::seconds(60);
        let mut last_redrive = Utc::now();
        let alerting = crate::alerts::spawn(self, shutdown.clone());
        let probing = crate::circuit::spawn(self, shutdown.clone());
        while !shutdown.is_requested() {
            let now = Utc::now();
            if now - last_reclaim > chrono::Duration::seconds(10) {
                self.reclaim_jobs().await?;
                last_reclaim = now;
            }
            self.process_inbox().await?;
            if now - last_redrive > chrono::Duration::seconds(15) {
                self.redrive_waiting().await?;
                last_redrive = now;
            }
            // Paused flows: their due triggers pass without a run, and their queued jobs wait.
            let mut paused = self.paused_flow_names().await?;
            paused.extend(self.flows_held_by_circuits().await?);
            for due in schedule.iter_mut().filter(|due| due.at <= now) {
                if paused.contains(&due.flow) {
                    due.at = due.trigger.next_after(now);
                    self.store.put_schedule(&due.key, &due.trigger.spec(), due.at).await?;
                    continue;
                }
                let kind = format!("{RUN_FLOW_KIND}{}", due.flow);
                self.store
                    .enqueue_job(&NewJob {
                        kind: kind.clone(),
                        dedupe_key: Some(kind),
                        payload: serde_json::json!({ "flow": due.flow, "trigger": due.label, "full": due.full }),
                        run_at: now,
                        max_attempts: RUN_FLOW_MAX_ATTEMPTS,
                    })
                    .await?;
                due.at = due.trigger.next_after(now);
                self.store.put_schedule(&due.key, &due.trigger.spec(), due.at).await?;
            }
            while running.try_join_next().is_some() {}
            let free = self.config.engine.concurrency.saturating_sub(running.len());
            if free > 0 {
                let kind_refs: Vec<&str> = kinds
                    .iter()
                    .filter(|kind| !paused.contains(kind.trim_start_matches(RUN_FLOW_KIND)))
                    .map(String::as_str)
                    .collect();
                let jobs =
                    self.store.claim_jobs(&self.worker.0, &kind_refs, self.config.engine.lease, free as u32).await?;
                for job in jobs {
                    let engine = self.clone();
                    let shutdown = shutdown.clone();
                    running.spawn(async move {
                        let name = job.kind.trim_start_matches(RUN_FLOW_KIND).to_string();
                        let trigger =
                            job.payload.get("trigger").and_then(|t| t.as_str()).unwrap_or("schedule").to_string();
                        let full = job.payload.get("full").and_then(|f| f.as_bool()).unwrap_or(false);
                        let options = RunOptions { full, dry_run: false, trigger };
                        let ctx = match engine.flow_context(&name) {
                            Ok(ctx) => ctx,
                            Err(error) => {
                                let _ = engine.store.fail_job(job.id, &engine.worker.0, &error.to_string(), None).await;
                                return;
                            }
                        };
                        if let Err(error) = engine.run_job(&ctx, &job, &options, &shutdown, &|_| {}).await {
                            tracing::error!(flow = %name, error = %error, "Flow run failed.");
                        }
                    });
                }
            }
            tick.sleep(Duration::from_millis(500)).await;
        }
        tracing::info!(running = running.len(), "Shutting down: finishing the current pages.");
        while running.join_next().await.is_some() {}
        if let Some(alerting) = alerting {
            let _ = alerting.await;
        }
        let _ = probing.await;
        Ok(())
    }

    /// Every trigger of every enabled flow with when it is next due, from the stored next-run
    /// times (catch-up after downtime: a passed time is due now, once), stored back.
    async fn load_schedule(&self) -> Result<Vec<DueTrigger>, EngineError> {
        let stored: HashMap<String, (String, DateTime<Utc>)> = self
            .store
            .schedules()
            .await?
            .into_iter()
            .map(|schedule| (schedule.name, (schedule.spec, schedule.next_run_at)))
            .collect();
        let now = Utc::now();
        let mut schedule = Vec::new();
        for flow in self.config.flows.values().filter(|flow| flow.enabled) {
            if let Some(trigger) = &flow.trigger {
                let last = self.store.list_runs(Some(&flow.name), 1).await?.into_iter().next();
                let kept = stored.get(&flow.name).map(|(spec, at)| (spec.as_str(), *at));
                let at = first_due(trigger, kept, last.map(|run| run.started_at), now);
                schedule.push(DueTrigger {
                    key: flow.name.clone(),
                    flow: flow.name.clone(),
                    trigger: trigger.clone(),
                    label: "schedule",
                    full: false,
                    at,
                });
            }
            if let Some(every) = flow.reconcile {
                let key = format!("{}#reconcile", flow.name);
                let trigger = Trigger::Interval(every);
                // A first pass one interval after the first start, not at once: the flow's
                // first sync is started by hand or by webhooks.
                let at = match stored.get(&key) {
                    Some((spec, at)) if *spec == trigger.spec() => (*at).max(now),
                    _ => trigger.next_after(now),
                };
                schedule.push(DueTrigger { key, flow: flow.name.clone(), trigger, label: "reconcile", full: true, at });
            }
        }
        for due in &schedule {
            self.store.put_schedule(&due.key, &due.trigger.spec(), due.at).await?;
        }
        Ok(schedule)
    }

    /// Dead letters that failed because something was missing or down (a product not synced
    /// yet, an outage, a conflict) are tried again on their own, with a backoff per letter
    /// (30 s doubling to an hour) and up to `AUTO_RETRY_ATTEMPTS` attempts; each flow's are
    /// taken up by one job of that flow, so they never run beside its other runs. Letters whose
    /// data is wrong wait for a person.
    pub async fn redrive_waiting(&self) -> Result<usize, EngineError> {
        let filter = DeadLetterFilter { flow: None, status: Some(DeadLetterStatus::Open), limit: 2000 };
        let now = Utc::now();
        let paused = self.paused_flow_names().await?;
        let mut by_flow: BTreeMap<String, Vec<DeadLetterId>> = BTreeMap::new();
        for letter in self.store.list_dead_letters(&filter).await? {
            if !WAITING_KINDS.contains(&letter.error_kind.as_str()) || letter.attempts >= AUTO_RETRY_ATTEMPTS {
                continue;
            }
            let exponent = u32::try_from(letter.attempts.clamp(1, 8) - 1).unwrap_or(0);
            let backoff = chrono::Duration::seconds((30i64 << exponent).min(3600));
            if letter.updated_at + backoff > now
                || paused.contains(&letter.flow)
                || !self.config.flows.get(&letter.flow).is_some_and(|f| f.enabled)
            {
                continue;
            }
            by_flow.entry(letter.flow.clone()).or_default().push(letter.id);
        }
        let mut queued = 0;
        for (flow, ids) in by_flow {
            let kind = format!("{RUN_FLOW_KIND}{flow}");
            let enqueued = self
                .store
                .enqueue_job(&NewJob {
                    kind: kind.clone(),
                    dedupe_key: Some(kind),
                    payload: serde_json::json!({ "flow": flow, "trigger": "retry", "dead_letters": ids }),
                    run_at: now,
                    max_attempts: RUN_FLOW_MAX_ATTEMPTS,
                })
                .await?;
            if enqueued.is_some() {
                queued += ids.len();
            }
        }
        Ok(queued)
    }

    /// The records of dead letters, marked as being retried; letters whose payload is not a
    /// record (the raw input that could not be read) are left for a person.
    async fn take_up_letters(&self, ids: &[DeadLetterId]) -> Result<Vec<SourceRecord>, EngineError> {
        let mut records = Vec::with_capacity(ids.len());
        for &id in ids {
            let Some(letter) = self.store.dead_letter(id).await? else { continue };
            if letter.status != DeadLetterStatus::Open {
                continue;
            }
            let Some(record) =
                serde_json::to_vec(&letter.payload).ok().and_then(|bytes| envelope::from_slice(&bytes).ok())
            else {
                continue;
            };
            self.store.set_dead_letter_status(id, DeadLetterStatus::Retrying, "retried automatically").await?;
            records.push(SourceRecord {
                source_id: letter.source_id,
                origin: letter.origin,
                origin_group: None,
                content: Ok(record),
            });
        }
        Ok(records)
    }

    /// Turns stored webhook deliveries into runs of the flows that read from their system.
    ///
    /// Deliveries whose connector tells which records they are about become one run per flow
    /// over just those records, fetched by id in their current state (so an update that
    /// arrived before its create, or twice, syncs the latest state once). While a flow has a
    /// run pending or running its deliveries wait, and accumulate: above
    /// `engine.coalesce_above` records (a mass change), or when the connector cannot tell or
    /// cannot fetch by id, the flow pulls what changed since its checkpoint instead, in pages.
    pub async fn process_inbox(&self) -> Result<u64, EngineError> {
        let deliveries = self.store.pending_inbox(5000).await?;
        if deliveries.is_empty() {
            return Ok(0);
        }
        let mut busy: HashSet<String> = HashSet::new();
        for state in [JobState::Running, JobState::Pending] {
            busy.extend(self.store.list_jobs(Some(state), 1000).await?.into_iter().map(|job| job.kind));
        }
        let paused = self.paused_flow_names().await?;
        let held = self.flows_held_by_circuits().await?;
        let mut by_system: BTreeMap<String, Vec<erpsync_store::InboxDelivery>> = BTreeMap::new();
        for delivery in deliveries {
            by_system.entry(delivery.system.clone()).or_default().push(delivery);
        }
        let mut processed = 0;
        for (system, deliveries) in by_system {
            let flows: Vec<&FlowConfig> =
                self.config.flows.values().filter(|flow| flow.enabled && flow.source == system).collect();
            if flows.is_empty() {
                let reason = format!("no enabled flow reads from system {system:?}");
                for delivery in &deliveries {
                    self.store.mark_inbox_processed(delivery.id, Some(&reason)).await?;
                }
                continue;
            }
            // A paused flow's next run after resuming reads the change from its checkpoint.
            let flows: Vec<&FlowConfig> = flows.into_iter().filter(|flow| !paused.contains(&flow.name)).collect();
            if flows.is_empty() {
                let reason = format!("every flow reading from system {system:?} is paused");
                for delivery in &deliveries {
                    self.store.mark_inbox_processed(delivery.id, Some(&reason)).await?;
                }
                continue;
            }
            // A flow held by an open circuit leaves its system's deliveries in the inbox.
            if flows
                .iter()
                .any(|flow| held.contains(&flow.name) || busy.contains(&format!("{RUN_FLOW_KIND}{}", flow.name)))
            {
                continue;
            }
            let receiver = self.webhook_receiver(&system)?;
            let mut pull = false;
            let mut events: Vec<EventRef> = Vec::new();
            let mut undecodable: Vec<(InboxId, String)> = Vec::new();
            for delivery in &deliveries {
                match receiver.as_ref().map(|receiver| receiver.decode(&delivery.topic, &delivery.body)) {
                    Some(Ok(Some(refs))) => events.extend(refs),
                    Some(Err(error)) => {
                        tracing::warn!(system = %system, delivery = %delivery.delivery_id, error = %error, "A webhook delivery could not be decoded; its flows pull instead.");
                        undecodable.push((delivery.id, error.to_string()));
                        pull = true;
                    }
                    Some(Ok(None)) | None => pull = true,
                }
            }
            for flow in flows {
                let mut ids: Vec<String> = Vec::new();
                let mut seen = HashSet::new();
                for event in events.iter().filter(|event| event.entity == flow.entity) {
                    if seen.insert(event.id.as_str()) {
                        ids.push(event.id.clone());
                    }
                }
                if !pull && ids.is_empty() {
                    continue;
                }
                let can_fetch = self.source(flow, &flow.source)?.can_fetch(flow.entity);
                let payload = if pull || !can_fetch || ids.len() > self.config.engine.coalesce_above {
                    serde_json::json!({ "flow": flow.name, "trigger": "webhook" })
                } else {
                    serde_json::json!({ "flow": flow.name, "trigger": "webhook", "ids": ids })
                };
                let kind = format!("{RUN_FLOW_KIND}{}", flow.name);
                self.store
                    .enqueue_job(&NewJob {
                        kind: kind.clone(),
                        dedupe_key: Some(kind),
                        payload,
                        run_at: Utc::now(),
                        max_attempts: RUN_FLOW_MAX_ATTEMPTS,
                    })
                    .await?;
            }
            for delivery in &deliveries {
                let error = undecodable.iter().find(|(id, _)| *id == delivery.id).map(|(_, error)| error.as_str());
                self.store.mark_inbox_processed(delivery.id, error).await?;
                processed += 1;
            }
        }
        Ok(processed)
    }

    pub async fn status(&self) -> Result<Vec<FlowStatus>, EngineError> {
        let open: HashMap<String, i64> = self.store.count_open_dead_letters().await?.into_iter().collect();
        let schedules: HashMap<String, DateTime<Utc>> =
            self.store.schedules().await?.into_iter().map(|s| (s.name, s.next_run_at)).collect();
        let mut paused: HashMap<String, FlowPause> =
            self.store.paused_flows().await?.into_iter().map(|pause| (pause.flow.clone(), pause)).collect();
        let circuits = self.circuits().await?;
        let mut statuses = Vec::new();
        for flow in self.config.flows.values() {
            let runs = self.store.list_runs(Some(&flow.name), 50).await?;
            let last_success = runs
                .iter()
                .find(|run| matches!(run.status, RunStatus::Succeeded | RunStatus::PartiallyFailed) && !run.dry_run)
                .and_then(|run| run.finished_at);
            statuses.push(FlowStatus {
                name: flow.name.clone(),
                entity: flow.entity.to_string(),
                source: flow.source.clone(),
                target: flow.target.clone(),
                trigger: flow.trigger.as_ref().map(describe_trigger),
                enabled: flow.enabled,
                last_run: runs.into_iter().next(),
                lag_seconds: last_success.map(|at| (Utc::now() - at).num_seconds()),
                open_failures: open.get(&flow.name).copied().unwrap_or(0),
                next_run: flow.trigger.as_ref().and(schedules.get(&flow.name).copied()),
                next_reconcile: flow.reconcile.and(schedules.get(&format!("{}#reconcile", flow.name)).copied()),
                paused: paused.remove(&flow.name),
                circuit: crate::circuit::of_flow(&circuits, flow),
            });
        }
        Ok(statuses)
    }

    /// Every id of the records matching `key` and every sync event about them.
    pub async fn trace(&self, key: &str) -> Result<TraceReport, EngineError> {
        let mut records = Vec::new();
        for identity in self.store.find_records(key).await? {
            let events = self.store.record_history(identity.record_uid, 500).await?;
            let dead_letters = self
                .store
                .list_dead_letters(&DeadLetterFilter { flow: None, status: None, limit: 10_000 })
                .await?
                .into_iter()
                .filter(|letter| {
                    letter.record_uid == Some(identity.record_uid)
                        || (letter.entity == identity.entity
                            && letter.natural_key.is_some()
                            && letter.natural_key == identity.natural_key)
                })
                .collect();
            records.push(TracedRecord { identity, events, dead_letters });
        }
        if records.is_empty() {
            // A record that never synced may still have failed: find its dead letters.
            let letters: Vec<DeadLetter> = self
                .store
                .list_dead_letters(&DeadLetterFilter { flow: None, status: None, limit: 10_000 })
                .await?
                .into_iter()
                .filter(|letter| letter.source_id == key || letter.natural_key.as_deref() == Some(key))
                .collect();
            if !letters.is_empty() {
                records.push(TracedRecord {
                    identity: RecordIdentity {
                        record_uid: 0,
                        entity: letters[0].entity.clone(),
                        natural_key: letters[0].natural_key.clone(),
                        links: Vec::new(),
                    },
                    events: Vec::new(),
                    dead_letters: letters,
                });
            }
        }
        Ok(TraceReport { key: key.to_string(), records })
    }

    /// Re-processes one dead letter's payload through its flow. The outcome resolves it, or
    /// records one more failed attempt in its history.
    pub async fn retry_dead_letter(&self, id: DeadLetterId, actor: &str) -> Result<RunSummary, EngineError> {
        let letter = self.store.dead_letter(id).await?.ok_or(EngineError::DeadLetterNotFound { id })?;
        if matches!(letter.status, DeadLetterStatus::Resolved | DeadLetterStatus::Discarded) {
            return Err(EngineError::NotRetryable { id, reason: format!("it is {}", letter.status.as_str()) });
        }
        let ctx = self.flow_context(&letter.flow)?;
        let record = serde_json::to_vec(&letter.payload)
            .ok()
            .and_then(|bytes| envelope::from_slice(&bytes).ok())
            .ok_or_else(|| EngineError::NotRetryable {
                id,
                reason: "its payload is the raw input that could not be read; fix the source and sync again, or edit the payload into a record".into(),
            })?;
        self.store
            .set_dead_letter_status(id, DeadLetterStatus::Retrying, &format!("retry requested by {actor}"))
            .await?;
        self.store
            .audit(&NewAuditEntry {
                actor: actor.to_string(),
                action: "dead_letter.retry".into(),
                target: format!("dead_letter:{id}"),
                details: serde_json::json!({ "flow": letter.flow, "source_id": letter.source_id }),
                at: Utc::now(),
            })
            .await?;
        let started = std::time::Instant::now();
        let run_id = self
            .store
            .start_run(&NewRun {
                flow: letter.flow.clone(),
                trigger: "retry".into(),
                full: false,
                dry_run: false,
                started_at: Utc::now(),
            })
            .await?;
        let records = vec![SourceRecord {
            source_id: letter.source_id.clone(),
            origin: letter.origin.clone(),
            origin_group: None,
            content: Ok(record),
        }];
        let result = flow::process_page(&ctx, run_id, records, None, false, &Shutdown::never()).await;
        let (status, counts, error) = match result {
            Ok(counts) if counts.failed > 0 => (RunStatus::PartiallyFailed, counts, None),
            Ok(counts) => (RunStatus::Succeeded, counts, None),
            Err(error) => {
                // Nothing was committed: put the letter back to open with the reason.
                self.store
                    .set_dead_letter_status(id, DeadLetterStatus::Open, &format!("retry failed: {error}"))
                    .await?;
                (RunStatus::Failed, Default::default(), Some(error.to_string()))
            }
        };
        self.store.finish_run(run_id, status, error.as_deref()).await?;
        Ok(RunSummary {
            run_id,
            flow: letter.flow,
            status,
            counts,
            pages: 1,
            duration: started.elapsed(),
            error,
            dry_run: false,
        })
    }

    pub async fn discard_dead_letter(&self, id: DeadLetterId, actor: &str, reason: &str) -> Result<(), EngineError> {
        let letter = self.store.dead_letter(id).await?.ok_or(EngineError::DeadLetterNotFound { id })?;
        self.store
            .set_dead_letter_status(id, DeadLetterStatus::Discarded, &format!("discarded by {actor}: {reason}"))
            .await?;
        self.store
            .audit(&NewAuditEntry {
                actor: actor.to_string(),
                action: "dead_letter.discard".into(),
                target: format!("dead_letter:{id}"),
                details: serde_json::json!({ "flow": letter.flow, "source_id": letter.source_id, "reason": reason }),
                at: Utc::now(),
            })
            .await?;
        Ok(())
    }
}

fn describe_trigger(trigger: &Trigger) -> String {
    match trigger {
        Trigger::Interval(every) => format!("every {}", crate::config::format_duration(*every)),
        Trigger::Cron { text, zone, .. } => format!("cron {text} ({zone})"),
    }
}

/// Error kinds of records that wait for something rather than being wrong.
const WAITING_KINDS: &[&str] = &["not_found", "rate_limited", "unavailable", "timeout", "conflict", "io"];

/// Automatic attempts before a waiting dead letter is left for a person (about a day with the
/// backoff).
const AUTO_RETRY_ATTEMPTS: i64 = 30;

/// One trigger of a flow in the scheduler's loop.
struct DueTrigger {
    /// Name in the store's schedules: the flow, or `<flow>#reconcile`.
    key: String,
    flow: String,
    trigger: Trigger,
    /// The run's trigger as recorded: `schedule` or `reconcile`.
    label: &'static str,
    /// A reconciliation pass reads everything, not from the checkpoint.
    full: bool,
    at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_local_worker_detection() {
        let me = WorkerId::for_this_process();
        assert!(!WorkerId::is_dead_local(&me.0));
        let dead = format!("{}:{}:0000", host_name(), u32::MAX - 1);
        assert!(WorkerId::is_dead_local(&dead));
        assert!(!WorkerId::is_dead_local("other-host:1:0000"));
    }
}
