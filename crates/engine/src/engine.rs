//! `Engine`: runs flows as leased jobs, schedules them, and serves the operator commands
//! (status, trace, dead-letter retry and discard).

use crate::EngineError;
use crate::config::{Config, FlowConfig};
use crate::flow::{self, FlowContext, ProgressFn, RunOptions, RunSummary};
use crate::schedule::{Trigger, first_due};
use crate::shutdown::Shutdown;
use crate::work::{RunRequest, flow_key, record_partition, records_key};
use chrono::{DateTime, Utc};
use erpsync_connectors::{EventRef, Sink, Source, SourceRecord, WebhookReceiver};
use erpsync_model::envelope;
use erpsync_queue::{
    EmbeddedLeader, FileLocks, Leader, LocalLocks, LockMode, Locks, NatsQueue, NatsQueueOptions, PostgresLeader,
    PostgresLocks, Queue, StoreQueue, StoreQueueOptions,
};
use erpsync_store::{
    DeadLetter, DeadLetterFilter, DeadLetterId, DeadLetterStatus, FlowPause, InboxId, JobState, NewAuditEntry, NewRun,
    RecordIdentity, RecordLogEntry, Run, RunStatus, Store, StoreUrl,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// Where run jobs go: the store's jobs, or NATS JetStream (`[queue] url`).
    queue: Arc<dyn Queue>,
    /// Flow locks: PostgreSQL advisory locks on a PostgreSQL store, else in this process (or in
    /// lock files, see [`Engine::use_lock_folder`]).
    locks: Arc<dyn Locks>,
    /// The store's URL when it is PostgreSQL (locks and leadership are taken there).
    postgres_url: Option<String>,
    worker: WorkerId,
    sources: Mutex<HashMap<String, Arc<dyn Source>>>,
    sinks: Mutex<HashMap<String, Arc<dyn Sink>>>,
    receivers: Mutex<HashMap<String, Option<Arc<dyn WebhookReceiver>>>>,
    pub(crate) circuits: crate::circuit::Circuits,
}

impl Engine {
    /// An engine whose jobs go through the store's jobs table ([`StoreQueue`]), whatever the
    /// configuration's `[queue]` says; [`Engine::connect`] follows it.
    pub fn new(config: Arc<Config>, store: Arc<dyn Store>) -> Self {
        let postgres_url = match config.store.url.as_deref().map(StoreUrl::parse) {
            Some(Ok(StoreUrl::Postgres(url))) => Some(url),
            _ => None,
        };
        let queue = Arc::new(StoreQueue::new(
            store.clone(),
            StoreQueueOptions { max_deliveries: config.queue.max_deliveries, reclaim_every: Duration::from_secs(1) },
        ));
        // Each lock held holds a connection: the worker's runs, plus `sync` and a spare.
        let max_held = u32::try_from(config.engine.concurrency).unwrap_or(64).saturating_add(2);
        let locks: Arc<dyn Locks> = match postgres_url.as_deref().map(|url| PostgresLocks::new(url, max_held)) {
            Some(Ok(locks)) => Arc::new(locks),
            Some(Err(error)) => {
                // Not reachable in practice: the store opened with the same URL.
                tracing::error!(%error, "PostgreSQL advisory locks unavailable; flow locks hold in this process only.");
                Arc::new(LocalLocks::default())
            }
            None => Arc::new(LocalLocks::default()),
        };
        Self {
            config,
            store,
            queue,
            locks,
            postgres_url,
            worker: WorkerId::for_this_process(),
            sources: Mutex::new(HashMap::new()),
            sinks: Mutex::new(HashMap::new()),
            receivers: Mutex::new(HashMap::new()),
            circuits: Default::default(),
        }
    }

    /// An engine as the configuration says: jobs through NATS JetStream with `[queue] url`, else
    /// through the store.
    pub async fn connect(config: Arc<Config>, store: Arc<dyn Store>) -> Result<Self, EngineError> {
        let mut engine = Engine::new(config, store);
        if let Some(url) = engine.config.queue.url.clone() {
            let settings = &engine.config.queue;
            let mut options = NatsQueueOptions::new(&url, &settings.installation);
            options.partitions = settings.partitions;
            options.max_deliveries = settings.max_deliveries;
            options.ack_wait = engine.config.engine.lease;
            engine.queue = Arc::new(NatsQueue::connect(options).await?);
        }
        Ok(engine)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// On the embedded store: flow locks as lock files in `folder` (the store's folder), so that
    /// an `erpsync sync` in another process keeps apart from `serve`. Ignored on PostgreSQL,
    /// whose advisory locks span every process already.
    pub fn use_lock_folder(&mut self, folder: &std::path::Path) {
        if self.postgres_url.is_none() {
            self.locks = Arc::new(FileLocks::new(folder));
        }
    }

    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.queue
    }

    pub(crate) fn locks(&self) -> &Arc<dyn Locks> {
        &self.locks
    }

    /// A contender for the scheduler's lead: a PostgreSQL advisory lock on a PostgreSQL store;
    /// on the embedded store this process leads.
    pub fn leader(&self) -> Arc<dyn Leader> {
        match &self.postgres_url {
            Some(url) => Arc::new(PostgresLeader::new(url, PostgresLeader::SCHEDULER_LOCK_ID)),
            None => Arc::new(EmbeddedLeader),
        }
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

    /// Runs one flow now, in this process, holding the flow's lock exclusively so that no other
    /// run of it overlaps (nor a job about one of its records). A run left behind by a process
    /// that died is taken over and resumes from its checkpoint.
    pub async fn sync(
        &self,
        flow_name: &str,
        options: &RunOptions,
        shutdown: &Shutdown,
        progress: ProgressFn<'_>,
    ) -> Result<RunSummary, EngineError> {
        let ctx = self.flow_context(flow_name)?;
        self.reclaim_jobs().await?;
        let Some(lock) = self.try_lock_flow(flow_name, LockMode::Exclusive).await? else {
            return Err(EngineError::AlreadyRunning {
                flow: flow_name.to_string(),
                job_id: 0,
                state: "running".into(),
                owner: ", in this or another process".into(),
            });
        };
        let request = RunRequest::pull(flow_name, &options.trigger, options.full);
        let result = self.run_job(&ctx, &request, options, shutdown, progress).await;
        lock.release().await;
        result
    }

    /// Runs what a job asks for (a pull, records by id, or waiting dead letters), holding the
    /// flow's lock in the mode the request needs (the caller took it).
    pub(crate) async fn run_job(
        &self,
        ctx: &FlowContext,
        request: &RunRequest,
        options: &RunOptions,
        stop: &Shutdown,
        progress: ProgressFn<'_>,
    ) -> Result<RunSummary, EngineError> {
        let mut run_options = options.clone();
        if run_options.trigger.is_empty() {
            run_options.trigger = "manual".into();
        }
        if request.ids.is_none() {
            // Exclusive: no other run of the flow is going, so one marked running is stale.
            self.interrupt_stale_runs(&ctx.flow.name).await?;
        }
        let result = match (&request.ids, &request.dead_letters) {
            (Some(ids), _) => {
                let bodies = request.bodies.as_ref().map(decode_bodies).unwrap_or_default();
                flow::run_records(ctx, ids, bodies, &run_options, stop).await
            }
            (None, Some(letters)) => {
                let records = self.take_up_letters(letters).await?;
                flow::run_given(ctx, records, &run_options, stop).await
            }
            (None, None) => flow::run_flow(ctx, &run_options, stop, progress).await,
        };
        self.circuits.run_ended(self, &ctx.flow, &result).await;
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

    /// Runs flows on their schedules until shutdown, in this process: the scheduler (leading
    /// on its own on the embedded store) and the worker. See [`Engine::serve_role`].
    pub async fn serve(self: &Arc<Self>, shutdown: Shutdown) -> Result<(), EngineError> {
        self.serve_role(crate::work::Role::All, shutdown).await
    }

    /// Every trigger of every enabled flow with when it is next due, from the stored next-run
    /// times (catch-up after downtime: a passed time is due now, once), stored back.
    pub(crate) async fn load_schedule(&self) -> Result<Vec<DueTrigger>, EngineError> {
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
        let mut by_flow: BTreeMap<String, Vec<(DeadLetterId, i64)>> = BTreeMap::new();
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
            by_flow.entry(letter.flow.clone()).or_default().push((letter.id, letter.attempts));
        }
        let mut queued = 0;
        for (flow, letters) in by_flow {
            // The same letters at the same attempt are one job, however often this runs.
            let dedupe = format!(
                "redrive:{flow}:{}",
                letters.iter().map(|(id, attempts)| format!("{id}.{attempts}")).collect::<Vec<_>>().join(",")
            );
            let dedupe = if dedupe.len() > 200 { format!("redrive:{flow}:{}", digest(&dedupe)) } else { dedupe };
            let ids: Vec<DeadLetterId> = letters.iter().map(|(id, _)| *id).collect();
            let request = RunRequest { dead_letters: Some(ids), ..RunRequest::pull(&flow, "retry", false) };
            if let erpsync_queue::Published::Published { .. } =
                self.publish_run(flow_key(&flow), &request, dedupe).await?
            {
                queued += letters.len();
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

    /// Turns stored webhook deliveries into jobs of the flows that read from their system.
    ///
    /// Deliveries whose connector tells which records they are about become jobs of the flows
    /// that fetch those records by id: one job per flow and partition of records (see
    /// [`record_partition`]), keyed `records:<system>:<entity>:<partition>`, with the ids in
    /// delivery order. A record is fetched by id in its current state, so an update that
    /// arrived before its create, or twice, syncs the latest state. Above `engine.coalesce_above` records of one
    /// flow in one pass (a mass change), or when the connector cannot tell or cannot fetch by
    /// id, the flow pulls what changed since its checkpoint instead, in pages. The scheduler's
    /// leader alone calls this, so jobs are published in delivery order.
    pub async fn process_inbox(&self) -> Result<u64, EngineError> {
        let deliveries = self.store.pending_inbox(5000).await?;
        if deliveries.is_empty() {
            return Ok(0);
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
            if flows.iter().any(|flow| held.contains(&flow.name)) {
                continue;
            }
            let receiver = self.webhook_receiver(&system)?;
            let mut pull = false;
            // (the delivery that named it, the event), in delivery order.
            let mut events: Vec<(InboxId, EventRef)> = Vec::new();
            let mut undecodable: Vec<(InboxId, String)> = Vec::new();
            for delivery in &deliveries {
                match receiver.as_ref().map(|receiver| receiver.decode(&delivery.topic, &delivery.body)) {
                    Some(Ok(Some(refs))) => events.extend(refs.into_iter().map(|event| (delivery.id, event))),
                    Some(Err(error)) => {
                        tracing::warn!(system = %system, delivery = %delivery.delivery_id, error = %error, "A webhook delivery could not be decoded; its flows pull instead.");
                        undecodable.push((delivery.id, error.to_string()));
                        pull = true;
                    }
                    Some(Ok(None)) | None => pull = true,
                }
            }
            let last_delivery = deliveries.iter().map(|delivery| delivery.id).max().unwrap_or_default();
            let by_id: HashMap<InboxId, &erpsync_store::InboxDelivery> =
                deliveries.iter().map(|delivery| (delivery.id, delivery)).collect();
            for flow in flows {
                let mut records: Vec<(InboxId, &str)> = Vec::new();
                // How many deliveries of this batch name each record: a record named once can
                // be taken from its body; of several bodies none is known to be the newest.
                let mut named: HashMap<&str, usize> = HashMap::new();
                for (inbox_id, event) in events.iter().filter(|(_, event)| event.entity == flow.entity) {
                    let count = named.entry(event.id.as_str()).or_default();
                    if *count == 0 {
                        records.push((*inbox_id, event.id.as_str()));
                    }
                    *count += 1;
                }
                if !pull && records.is_empty() {
                    continue;
                }
                let can_fetch = self.source(flow, &flow.source)?.can_fetch(flow.entity);
                if pull || !can_fetch || records.len() > self.config.engine.coalesce_above {
                    let request = RunRequest::pull(&flow.name, "webhook", false);
                    let dedupe = format!("inbox:{}:{last_delivery}", flow.name);
                    self.publish_run(flow_key(&flow.name), &request, dedupe).await?;
                    continue;
                }
                // One job per partition of records, with its ids in delivery order and the
                // records whose bodies carry them whole.
                let mut partitions: BTreeMap<u32, Partition> = BTreeMap::new();
                for (inbox_id, id) in records {
                    let partition = partitions.entry(record_partition(id)).or_default();
                    partition.ids.push(id.to_string());
                    partition.last = partition.last.max(inbox_id);
                    let delivery = by_id[&inbox_id];
                    if named[id] == 1
                        && let Some(receiver) = &receiver
                        && let Some(record) = receiver.body_record(flow.entity, &delivery.topic, &delivery.body)
                        && record.source_id == id
                        && let Ok(content) = &record.content
                    {
                        let value = envelope::to_value(content);
                        let size = value.to_string().len();
                        // A body that would take the job over its budget is left out: fetched.
                        if partition.body_bytes + size <= MAX_BODY_BYTES_PER_JOB {
                            partition.body_bytes += size;
                            partition.bodies.insert(id.to_string(), value);
                        }
                    }
                }
                let entity = flow.entity.to_string();
                for (partition, Partition { ids, last, bodies, .. }) in partitions {
                    let bodies = (!bodies.is_empty()).then_some(bodies);
                    let request =
                        RunRequest { ids: Some(ids), bodies, ..RunRequest::pull(&flow.name, "webhook", false) };
                    let dedupe = format!("inbox:{}:{last}:p{partition}", flow.name);
                    self.publish_run(records_key(&system, &entity, partition), &request, dedupe).await?;
                }
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
pub(crate) struct DueTrigger {
    /// Name in the store's schedules: the flow, or `<flow>#reconcile`.
    pub(crate) key: String,
    pub(crate) flow: String,
    pub(crate) trigger: Trigger,
    /// The run's trigger as recorded: `schedule` or `reconcile`.
    pub(crate) label: &'static str,
    /// A reconciliation pass reads everything, not from the checkpoint.
    pub(crate) full: bool,
    pub(crate) at: DateTime<Utc>,
}

/// A short stable digest of `text` (for dedupe ids built from long lists).
fn digest(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(text.as_bytes())[..12])
}

/// The records of one partition of an inbox batch, for one job.
#[derive(Default)]
struct Partition {
    ids: Vec<String>,
    /// The newest delivery that named one of them.
    last: InboxId,
    bodies: BTreeMap<String, serde_json::Value>,
    body_bytes: usize,
}

/// Records taken from webhook bodies per job, at most (serialized): the rest are fetched. Keeps
/// a job well under the queue's message size (1 MiB by default on NATS).
const MAX_BODY_BYTES_PER_JOB: usize = 256 * 1024;

/// The records of a job's `bodies`; one that does not decode (written by a newer version) is
/// left out, and so fetched.
fn decode_bodies(bodies: &BTreeMap<String, serde_json::Value>) -> HashMap<String, erpsync_model::Record> {
    bodies
        .iter()
        .filter_map(|(id, value)| {
            let bytes = serde_json::to_vec(value).ok()?;
            match envelope::from_slice(&bytes) {
                Ok(record) => Some((id.clone(), record)),
                Err(error) => {
                    tracing::warn!(id = %id, error = %error, "A record from a webhook body does not decode; it is fetched.");
                    None
                }
            }
        })
        .collect()
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
