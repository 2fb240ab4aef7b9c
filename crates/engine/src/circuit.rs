//! Circuit breakers, one per system: when runs touching a system keep failing because the
//! system is down or throttling (`unavailable`, `timeout`, `rate_limited` after the flow's
//! retries), `engine.circuit.failures` times in a row, its circuit opens. While it is open the
//! flows that read from or write to the system are held: `serve` starts no scheduled or
//! webhook-triggered run of them and leaves their webhook deliveries in the inbox. After
//! `engine.circuit.cooldown` a probe (the connector's health check: a read of one record, or
//! for a system only written to a lookup by natural key) half-opens the circuit, which lets
//! the flows run again; the next successful run closes it, a run failing the same way opens it
//! again at once.
//!
//! Only the engine knows which system a failure came from, so a flow's connectors are watched
//! ([`Circuits::watch`]): the last transient error of each system during a run is kept with the
//! flow, and read when the run ends ([`Circuits::run_ended`]). The state lives in the store, in
//! the `schedules` table under `circuit:<system>` (its next-run time is the next probe), so that
//! `erpsync status` in another process and every `serve` of a store see the same circuits.

use crate::config::FlowConfig;
use crate::{Engine, EngineError, RunSummary};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use erpsync_connectors::{
    Capabilities, ConnectorError, DeleteItem, DeleteMode, ErrorKind, ReadRequest, Sink, Source, SourcePage,
    SourceRecord, WriteBatch, WriteOutcome,
};
use erpsync_model::{Checkpoint, EntityKind};
use erpsync_store::RunStatus;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Name prefix of a circuit's row in the store's schedules.
const STORE_PREFIX: &str = "circuit:";
/// How long a probe waits for each answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);
/// The error kinds that say a whole system is in trouble, rather than one record or request.
const OUTAGE_KINDS: [ErrorKind; 3] = [ErrorKind::Unavailable, ErrorKind::Timeout, ErrorKind::RateLimited];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Runs go on.
    Closed,
    /// The system is taken to be down: its flows are held until a probe passes.
    Open,
    /// A probe passed: the flows run again, and the next run decides.
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(&self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

/// One system's circuit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Circuit {
    pub system: String,
    pub state: CircuitState,
    /// Runs in a row that failed with an outage of this system.
    pub failures: u32,
    /// When the state last changed (`None`: it never left `closed`).
    pub since: Option<DateTime<Utc>>,
    /// The last outage: its kind (`unavailable`, `timeout`, `rate_limited`) and message, or
    /// why the last probe failed.
    pub error_kind: Option<String>,
    pub error: Option<String>,
    /// The flow whose run failed last.
    pub flow: Option<String>,
    /// When an open circuit is probed next.
    pub probe_at: Option<DateTime<Utc>>,
    /// The enabled flows it holds while not closed: those reading from or writing to the system.
    pub flows: Vec<String>,
}

impl Circuit {
    fn closed(system: &str) -> Self {
        Circuit {
            system: system.to_string(),
            state: CircuitState::Closed,
            failures: 0,
            since: None,
            error_kind: None,
            error: None,
            flow: None,
            probe_at: None,
            flows: Vec::new(),
        }
    }

    pub fn is_open(&self) -> bool {
        self.state != CircuitState::Closed
    }
}

/// What is stored in the schedules row; the next probe is the row's time.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    state: CircuitState,
    failures: u32,
    since: Option<DateTime<Utc>>,
    error_kind: Option<String>,
    error: Option<String>,
    flow: Option<String>,
}

/// The last outage seen by a flow's run: (system, kind, message).
type Outage = (String, ErrorKind, String);

/// A flow's source, sink and (two-way flows) target reader, watched.
type WatchedConnectors = (Arc<dyn Source>, Arc<dyn Sink>, Option<Arc<dyn Source>>);

/// The engine's circuit breakers: the watch on flows' connectors and the updates of the stored
/// state.
#[derive(Default)]
pub(crate) struct Circuits {
    /// The last outage of the current run of each flow, by flow name.
    outages: Arc<Mutex<HashMap<String, Outage>>>,
    /// Updates of the stored state by this process, one at a time.
    update: tokio::sync::Mutex<()>,
}

impl Circuits {
    /// The flow's connectors, watched for outages; forgets what an earlier run of the flow saw.
    pub(crate) fn watch(
        &self,
        flow: &FlowConfig,
        source: Arc<dyn Source>,
        sink: Arc<dyn Sink>,
        target_reader: Option<Arc<dyn Source>>,
    ) -> WatchedConnectors {
        self.outages.lock().expect("the outage map is never poisoned").remove(&flow.name);
        let watch =
            |system: &str| Watch { flow: flow.name.clone(), system: system.to_string(), outages: self.outages.clone() };
        let source: Arc<dyn Source> = Arc::new(WatchedSource { inner: source, watch: watch(&flow.source) });
        let sink: Arc<dyn Sink> = Arc::new(WatchedSink { inner: sink, watch: watch(&flow.target) });
        let target_reader =
            target_reader.map(|inner| Arc::new(WatchedSource { inner, watch: watch(&flow.target) }) as Arc<dyn Source>);
        (source, sink, target_reader)
    }

    /// Counts a finished run of `flow`: a run that got through closes the circuits of its
    /// systems; a run that failed with an outage of a system counts towards opening its
    /// circuit. Other failures (bad credentials, bad data, the store) and interrupted runs
    /// change nothing. Problems updating the state are logged, never the run's failure.
    pub(crate) async fn run_ended(&self, engine: &Engine, flow: &FlowConfig, result: &Result<RunSummary, EngineError>) {
        let outage = self.outages.lock().expect("the outage map is never poisoned").remove(&flow.name);
        if engine.config().engine.circuit.failures == 0 {
            return;
        }
        let event = match result {
            Ok(summary) if summary.dry_run => return,
            Ok(summary) if matches!(summary.status, RunStatus::Succeeded | RunStatus::PartiallyFailed) => None,
            Ok(summary) if summary.status != RunStatus::Failed => return,
            _ => match outage {
                Some(outage) => Some(outage),
                None => return,
            },
        };
        let updated = match event {
            None => self.succeeded(engine, flow).await,
            Some(outage) => self.failed(engine, flow, outage).await,
        };
        if let Err(error) = updated {
            tracing::warn!(flow = %flow.name, error = %error, "Could not update a circuit breaker.");
        }
    }

    async fn succeeded(&self, engine: &Engine, flow: &FlowConfig) -> Result<(), EngineError> {
        let _one_at_a_time = self.update.lock().await;
        let systems: BTreeSet<&str> = [flow.source.as_str(), flow.target.as_str()].into();
        for system in systems {
            let mut circuit = load(engine, system).await?;
            if circuit.state == CircuitState::Closed && circuit.failures == 0 {
                continue;
            }
            if circuit.is_open() {
                tracing::info!(system, flow = %flow.name, "Circuit closed: a run got through.");
                circuit.since = Some(Utc::now());
            }
            circuit.state = CircuitState::Closed;
            circuit.failures = 0;
            circuit.flow = Some(flow.name.clone());
            circuit.probe_at = None;
            save(engine, &circuit).await?;
        }
        Ok(())
    }

    async fn failed(&self, engine: &Engine, flow: &FlowConfig, outage: Outage) -> Result<(), EngineError> {
        let _one_at_a_time = self.update.lock().await;
        let settings = engine.config().engine.circuit;
        let (system, kind, message) = outage;
        let mut circuit = load(engine, &system).await?;
        let now = Utc::now();
        circuit.failures = circuit.failures.saturating_add(1);
        circuit.error_kind = Some(kind.as_str().to_string());
        circuit.error = Some(message);
        circuit.flow = Some(flow.name.clone());
        let opens = match circuit.state {
            CircuitState::Closed => circuit.failures >= settings.failures,
            // The trial after a probe failed the same way: open again at once.
            CircuitState::HalfOpen => true,
            CircuitState::Open => false,
        };
        if opens {
            circuit.state = CircuitState::Open;
            circuit.since = Some(now);
            circuit.probe_at = Some(now + chrono::Duration::from_std(settings.cooldown).unwrap_or_default());
            tracing::error!(
                system = %system,
                flow = %flow.name,
                failures = circuit.failures,
                kind = kind.as_str(),
                error = circuit.error.as_deref().unwrap_or_default(),
                "Circuit opened: the flows using this system are held until a probe passes."
            );
        }
        save(engine, &circuit).await
    }

    /// Probes every open circuit whose cool-down has passed: a probe that passes half-opens
    /// it; one that fails keeps it open for another cool-down.
    pub(crate) async fn probe_due(&self, engine: &Engine) -> Result<(), EngineError> {
        let now = Utc::now();
        let due: Vec<Circuit> = engine
            .circuits()
            .await?
            .into_iter()
            .filter(|circuit| circuit.state == CircuitState::Open && circuit.probe_at.is_none_or(|at| at <= now))
            .collect();
        for circuit in due {
            let result = probe(engine, &circuit.system).await;
            let _one_at_a_time = self.update.lock().await;
            // Another run may have closed it meanwhile.
            let mut circuit = load(engine, &circuit.system).await?;
            if circuit.state != CircuitState::Open {
                continue;
            }
            let now = Utc::now();
            match result {
                Ok(()) => {
                    tracing::info!(system = %circuit.system, "Circuit half-open: the probe passed; the next run decides.");
                    circuit.state = CircuitState::HalfOpen;
                    circuit.since = Some(now);
                    circuit.probe_at = None;
                }
                Err(error) => {
                    tracing::warn!(system = %circuit.system, error = %error, "Circuit stays open: the probe failed.");
                    circuit.error = Some(format!("probe: {error}"));
                    let cooldown = engine.config().engine.circuit.cooldown;
                    circuit.probe_at = Some(now + chrono::Duration::from_std(cooldown).unwrap_or_default());
                }
            }
            save(engine, &circuit).await?;
        }
        Ok(())
    }
}

/// The connector's health check: for each entity a flow reads from the system, a read of one
/// record from the start; for each entity a flow writes to it, a lookup of one natural key
/// (a read, never a write).
async fn probe(engine: &Engine, system: &str) -> Result<(), String> {
    let mut checked = BTreeSet::new();
    for flow in engine.config().flows.values() {
        let reads = flow.source == system;
        if !(reads || flow.target == system) || !checked.insert((reads, flow.entity)) {
            continue;
        }
        let answer = if reads {
            let source = engine.source(flow, system).map_err(|error| error.to_string())?;
            let checkpoint = Checkpoint::default();
            let request = ReadRequest { entity: flow.entity, checkpoint: &checkpoint, page_size: 1 };
            tokio::time::timeout(PROBE_TIMEOUT, source.read_page(&request)).await.map(|result| result.map(|_| ()))
        } else {
            let sink = engine.sink(flow, system).map_err(|error| error.to_string())?;
            let keys = ["erpsync-circuit-probe".to_string()];
            tokio::time::timeout(PROBE_TIMEOUT, sink.lookup(flow.entity, &keys)).await.map(|result| result.map(|_| ()))
        };
        match answer {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(error.to_string()),
            Err(_) => return Err(format!("no answer within {} seconds", PROBE_TIMEOUT.as_secs())),
        }
    }
    Ok(())
}

async fn load(engine: &Engine, system: &str) -> Result<Circuit, EngineError> {
    let name = format!("{STORE_PREFIX}{system}");
    let stored = engine.store().schedules().await?.into_iter().find(|row| row.name == name);
    Ok(match stored {
        Some(row) => from_row(engine, system, &row.spec, row.next_run_at),
        None => Circuit { flows: held_flows(engine, system), ..Circuit::closed(system) },
    })
}

fn from_row(engine: &Engine, system: &str, spec: &str, next_run_at: DateTime<Utc>) -> Circuit {
    let flows = held_flows(engine, system);
    match serde_json::from_str::<Stored>(spec) {
        Ok(stored) => Circuit {
            system: system.to_string(),
            state: stored.state,
            failures: stored.failures,
            since: stored.since,
            error_kind: stored.error_kind,
            error: stored.error,
            flow: stored.flow,
            probe_at: (stored.state == CircuitState::Open).then_some(next_run_at),
            flows,
        },
        // Not ours to read (a newer version wrote it): take it as closed rather than hold flows.
        Err(_) => Circuit { flows, ..Circuit::closed(system) },
    }
}

async fn save(engine: &Engine, circuit: &Circuit) -> Result<(), EngineError> {
    let stored = Stored {
        state: circuit.state,
        failures: circuit.failures,
        since: circuit.since,
        error_kind: circuit.error_kind.clone(),
        error: circuit.error.clone(),
        flow: circuit.flow.clone(),
    };
    let spec = serde_json::to_string(&stored).expect("the circuit state is plain JSON");
    let at = circuit.probe_at.or(circuit.since).unwrap_or_else(Utc::now);
    engine.store().put_schedule(&format!("{STORE_PREFIX}{}", circuit.system), &spec, at).await?;
    Ok(())
}

/// The open or half-open circuit of `flow`'s source or target (the source's first).
pub(crate) fn of_flow(circuits: &[Circuit], flow: &FlowConfig) -> Option<Circuit> {
    [&flow.source, &flow.target]
        .into_iter()
        .find_map(|system| circuits.iter().find(|circuit| &circuit.system == system && circuit.is_open()))
        .cloned()
}

/// The enabled flows that read from or write to `system`.
fn held_flows(engine: &Engine, system: &str) -> Vec<String> {
    engine
        .config()
        .flows
        .values()
        .filter(|flow| flow.enabled && (flow.source == system || flow.target == system))
        .map(|flow| flow.name.clone())
        .collect()
}

impl Engine {
    /// Every configured system's circuit, closed ones too, by system name.
    pub async fn circuits(&self) -> Result<Vec<Circuit>, EngineError> {
        let mut stored: HashMap<String, (String, DateTime<Utc>)> = self
            .store()
            .schedules()
            .await?
            .into_iter()
            .filter_map(|row| {
                let system = row.name.strip_prefix(STORE_PREFIX)?.to_string();
                Some((system, (row.spec, row.next_run_at)))
            })
            .collect();
        Ok(self
            .config()
            .systems
            .keys()
            .map(|system| match stored.remove(system) {
                Some((spec, at)) => from_row(self, system, &spec, at),
                None => Circuit { flows: held_flows(self, system), ..Circuit::closed(system) },
            })
            .collect())
    }

    /// Names of the flows held by an open circuit. A half-open circuit holds none: its flows
    /// run, and the next run decides.
    pub async fn flows_held_by_circuits(&self) -> Result<HashSet<String>, EngineError> {
        Ok(self
            .circuits()
            .await?
            .into_iter()
            .filter(|circuit| circuit.state == CircuitState::Open)
            .flat_map(|circuit| circuit.flows)
            .collect())
    }

    /// Probes the open circuits whose cool-down has passed (what `serve` does every few
    /// seconds).
    pub async fn probe_circuits(&self) -> Result<(), EngineError> {
        self.circuits.probe_due(self).await
    }
}

/// Probes open circuits every few seconds until shutdown; owned and awaited by `serve`.
pub(crate) fn spawn(engine: &Arc<Engine>, shutdown: crate::shutdown::Shutdown) -> tokio::task::JoinHandle<()> {
    let engine = engine.clone();
    tokio::spawn(async move {
        let mut tick = shutdown.clone();
        let every = engine.config().engine.circuit.cooldown.clamp(Duration::from_millis(200), Duration::from_secs(5));
        while !shutdown.is_requested() {
            if let Err(error) = engine.probe_circuits().await {
                tracing::warn!(error = %error, "Could not probe the open circuits.");
            }
            tick.sleep(every).await;
        }
    })
}

// --- the watch on a flow's connectors ----------------------------------------------------------

#[derive(Clone)]
struct Watch {
    flow: String,
    system: String,
    outages: Arc<Mutex<HashMap<String, Outage>>>,
}

impl Watch {
    /// Keeps an outage of this system as the flow's last; an answer of this system (or a
    /// failure that is not an outage) forgets an earlier outage of it.
    fn note<T>(&self, result: &Result<T, ConnectorError>) {
        let mut outages = self.outages.lock().expect("the outage map is never poisoned");
        match result {
            Err(error) if OUTAGE_KINDS.contains(&error.kind) => {
                outages.insert(self.flow.clone(), (self.system.clone(), error.kind, error.to_string()));
            }
            _ => {
                if outages.get(&self.flow).is_some_and(|(system, _, _)| *system == self.system) {
                    outages.remove(&self.flow);
                }
            }
        }
    }
}

struct WatchedSource {
    inner: Arc<dyn Source>,
    watch: Watch,
}

#[async_trait]
impl Source for WatchedSource {
    fn capabilities(&self, entity: EntityKind) -> Capabilities {
        self.inner.capabilities(entity)
    }

    async fn read_page(&self, request: &ReadRequest<'_>) -> Result<SourcePage, ConnectorError> {
        let result = self.inner.read_page(request).await;
        self.watch.note(&result);
        result
    }

    fn can_fetch(&self, entity: EntityKind) -> bool {
        self.inner.can_fetch(entity)
    }

    async fn fetch(&self, entity: EntityKind, ids: &[String]) -> Result<Vec<Option<SourceRecord>>, ConnectorError> {
        let result = self.inner.fetch(entity, ids).await;
        self.watch.note(&result);
        result
    }
}

struct WatchedSink {
    inner: Arc<dyn Sink>,
    watch: Watch,
}

#[async_trait]
impl Sink for WatchedSink {
    fn capabilities(&self, entity: EntityKind) -> Capabilities {
        self.inner.capabilities(entity)
    }

    fn max_batch_size(&self, entity: EntityKind) -> usize {
        self.inner.max_batch_size(entity)
    }

    async fn lookup(&self, entity: EntityKind, natural_keys: &[String]) -> Result<Vec<Option<String>>, ConnectorError> {
        let result = self.inner.lookup(entity, natural_keys).await;
        self.watch.note(&result);
        result
    }

    async fn write_batch(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let result = self.inner.write_batch(batch).await;
        self.watch.note(&result);
        result
    }

    async fn delete_batch(
        &self,
        entity: EntityKind,
        items: &[DeleteItem],
        mode: DeleteMode,
    ) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let result = self.inner.delete_batch(entity, items, mode).await;
        self.watch.note(&result);
        result
    }
}
