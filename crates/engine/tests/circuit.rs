//! Circuit breakers against connectors that fail on command: runs failing because a system is
//! down open its circuit after `engine.circuit.failures` in a row (other failures do not
//! count), an open circuit holds the flows using the system (status says so, `serve` starts no
//! scheduled or webhook run of them and their deliveries stay in the inbox), a probe half-opens
//! it after the cool-down only when the system answers, and a successful run closes it while a
//! failing one opens it again at once.

use async_trait::async_trait;
use chrono::Utc;
use erpsync_connectors::{
    Capabilities, ConnectorError, ErrorKind, ReadRequest, Sink, Source, SourcePage, SourceRecord, WriteBatch,
    WriteOutcome,
};
use erpsync_engine::circuit::CircuitState;
use erpsync_engine::config::Config;
use erpsync_engine::shutdown::{self, Shutdown};
use erpsync_engine::{Engine, RunOptions};
use erpsync_model::{Checkpoint, Currency, EntityKind, Money, Product, Record, Variant};
use erpsync_store::{NewInboxDelivery, RunStatus, Store};
use rust_decimal::Decimal;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn product(code: &str) -> Record {
    Record::Product(Product {
        code: code.into(),
        title: format!("Product {code}"),
        variants: vec![Variant {
            sku: code.into(),
            price: Some(Money::new(Decimal::new(1000, 2), Currency::EUR)),
            ..Variant::default()
        }],
        ..Product::default()
    })
}

/// How a scripted system answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Up,
    Down(ErrorKind),
}

/// A system whose every call fails with the commanded kind while it is down.
struct System {
    answer: Mutex<Answer>,
    calls: AtomicU32,
}

impl System {
    fn new() -> Arc<Self> {
        Arc::new(System { answer: Mutex::new(Answer::Up), calls: AtomicU32::new(0) })
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn check(&self, doing: &str) -> Result<(), ConnectorError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match *self.answer.lock().unwrap() {
            Answer::Up => Ok(()),
            Answer::Down(kind) => Err(ConnectorError::new(kind, doing, format!("scripted {}", kind.as_str()))),
        }
    }
}

#[async_trait]
impl Source for System {
    fn capabilities(&self, _entity: EntityKind) -> Capabilities {
        Capabilities { read: true, incremental_read: true, ..Capabilities::default() }
    }

    async fn read_page(&self, _request: &ReadRequest<'_>) -> Result<SourcePage, ConnectorError> {
        self.check("reading products from \"erp\"")?;
        let records = ["P1", "P2"]
            .into_iter()
            .map(|code| SourceRecord {
                source_id: code.into(),
                origin: None,
                origin_group: None,
                content: Ok(product(code)),
            })
            .collect();
        Ok(SourcePage { records, checkpoint: Checkpoint::default(), done: true })
    }
}

#[async_trait]
impl Sink for System {
    fn capabilities(&self, _entity: EntityKind) -> Capabilities {
        Capabilities { write: true, lookup: true, ..Capabilities::default() }
    }

    fn max_batch_size(&self, _entity: EntityKind) -> usize {
        10
    }

    async fn lookup(&self, _entity: EntityKind, keys: &[String]) -> Result<Vec<Option<String>>, ConnectorError> {
        self.check("looking up products in \"shop\"")?;
        Ok(keys.iter().map(|_| None).collect())
    }

    async fn write_batch(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        self.check("writing products to \"shop\"")?;
        Ok(batch
            .items
            .iter()
            .map(|item| WriteOutcome::Created { target_id: format!("T-{}", item.natural_key) })
            .collect())
    }
}

fn config(interval: &str) -> String {
    format!(
        r#"
[engine.circuit]
failures = 2
cooldown = "1s"

[systems.erp]
type = "files"
path = "unused-erp"

[systems.shop]
type = "files"
path = "unused-shop"

[systems.archive]
type = "files"
path = "unused-archive"

[flows.products]
entity = "product"
source = "erp"
target = "shop"
retry = {{ max_attempts = 2, initial = "10ms", max = "20ms" }}
{interval}

[flows.backup]
entity = "product"
source = "erp"
target = "archive"
retry = {{ max_attempts = 1 }}
"#
    )
}

struct Harness {
    _dir: tempfile::TempDir,
    engine: Arc<Engine>,
    erp: Arc<System>,
    shop: Arc<System>,
}

async fn harness(interval: &str) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(&config(interval), &dir.path().join("erpsync.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.engine.circuit.failures, 2);
    let store: Arc<dyn Store> =
        Arc::new(erpsync_store::sqlite::SqliteStore::open(&dir.path().join("state.db")).await.unwrap());
    let engine = Arc::new(Engine::new(Arc::new(config), store));
    let (erp, shop, archive) = (System::new(), System::new(), System::new());
    engine.use_source("erp", erp.clone());
    engine.use_sink("shop", shop.clone());
    engine.use_sink("archive", archive);
    Harness { _dir: dir, engine, erp, shop }
}

impl Harness {
    async fn sync(&self, flow: &str) -> RunStatus {
        let options = RunOptions { full: true, dry_run: false, trigger: "manual".into() };
        self.engine.sync(flow, &options, &Shutdown::never(), &|_| {}).await.unwrap().status
    }

    async fn circuit(&self, system: &str) -> erpsync_engine::circuit::Circuit {
        self.engine.circuits().await.unwrap().into_iter().find(|circuit| circuit.system == system).unwrap()
    }

    async fn held(&self) -> Vec<String> {
        let mut held: Vec<String> = self.engine.flows_held_by_circuits().await.unwrap().into_iter().collect();
        held.sort();
        held
    }
}

#[tokio::test]
async fn outages_in_a_row_open_the_circuit_a_probe_half_opens_it_and_a_run_closes_it() {
    let harness = harness("").await;
    harness.shop.set(Answer::Down(ErrorKind::Unavailable));
    assert_eq!(harness.sync("products").await, RunStatus::Failed);
    let circuit = harness.circuit("shop").await;
    assert_eq!((circuit.state, circuit.failures), (CircuitState::Closed, 1), "{circuit:?}");
    assert!(harness.held().await.is_empty());

    // A failure that is not an outage (bad credentials) neither counts nor resets.
    harness.shop.set(Answer::Down(ErrorKind::Auth));
    assert_eq!(harness.sync("products").await, RunStatus::Failed);
    assert_eq!(harness.circuit("shop").await.failures, 1);

    harness.shop.set(Answer::Down(ErrorKind::Timeout));
    assert_eq!(harness.sync("products").await, RunStatus::Failed);
    let circuit = harness.circuit("shop").await;
    assert_eq!(circuit.state, CircuitState::Open, "{circuit:?}");
    assert_eq!(circuit.failures, 2);
    assert_eq!(circuit.error_kind.as_deref(), Some("timeout"));
    assert!(circuit.error.as_deref().unwrap().contains("scripted timeout"), "{circuit:?}");
    assert_eq!(circuit.flow.as_deref(), Some("products"));
    assert_eq!(circuit.flows, vec!["products".to_string()], "only the flows using the shop");
    let probe_at = circuit.probe_at.expect("an open circuit has a next probe");
    assert!(probe_at > Utc::now() && probe_at <= Utc::now() + chrono::Duration::seconds(1), "{probe_at}");
    // The source's circuit is not the one that failed.
    assert_eq!(harness.circuit("erp").await.state, CircuitState::Closed);
    assert_eq!(harness.held().await, vec!["products"]);
    let statuses = harness.engine.status().await.unwrap();
    let products = statuses.iter().find(|status| status.name == "products").unwrap();
    assert_eq!(products.circuit.as_ref().map(|circuit| circuit.system.as_str()), Some("shop"));
    let backup = statuses.iter().find(|status| status.name == "backup").unwrap();
    assert!(backup.circuit.is_none(), "backup does not use the shop");

    // Before the cool-down no probe is made.
    let calls = harness.shop.calls.load(Ordering::SeqCst);
    harness.engine.probe_circuits().await.unwrap();
    assert_eq!(harness.shop.calls.load(Ordering::SeqCst), calls, "probed before the cool-down");
    // After it, a probe of a system still down keeps the circuit open for another cool-down.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    harness.engine.probe_circuits().await.unwrap();
    assert_eq!(harness.shop.calls.load(Ordering::SeqCst), calls + 1, "one probe: a lookup");
    let circuit = harness.circuit("shop").await;
    assert_eq!(circuit.state, CircuitState::Open);
    assert!(circuit.probe_at.unwrap() > probe_at, "{circuit:?}");
    assert!(circuit.error.as_deref().unwrap().starts_with("probe: "), "{circuit:?}");

    // The system is back: the probe half-opens it and the flows are no longer held…
    harness.shop.set(Answer::Up);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    harness.engine.probe_circuits().await.unwrap();
    assert_eq!(harness.circuit("shop").await.state, CircuitState::HalfOpen);
    assert!(harness.held().await.is_empty());
    // …and a run that gets through closes it.
    assert_eq!(harness.sync("products").await, RunStatus::Succeeded);
    let circuit = harness.circuit("shop").await;
    assert_eq!((circuit.state, circuit.failures), (CircuitState::Closed, 0), "{circuit:?}");
    assert!(harness.engine.status().await.unwrap().iter().all(|status| status.circuit.is_none()));
}

#[tokio::test]
async fn a_failing_trial_opens_the_circuit_again_at_once_and_a_manual_run_can_close_it() {
    let harness = harness("").await;
    harness.erp.set(Answer::Down(ErrorKind::RateLimited));
    for _ in 0..2 {
        assert_eq!(harness.sync("products").await, RunStatus::Failed);
    }
    assert_eq!(harness.circuit("erp").await.state, CircuitState::Open);
    // Every flow reading from the ERP is held, whichever target it writes to.
    assert_eq!(harness.held().await, vec!["backup", "products"]);
    assert_eq!(harness.circuit("shop").await.state, CircuitState::Closed, "the shop did not fail");

    harness.erp.set(Answer::Up);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    harness.engine.probe_circuits().await.unwrap();
    assert_eq!(harness.circuit("erp").await.state, CircuitState::HalfOpen);
    harness.erp.set(Answer::Down(ErrorKind::Unavailable));
    assert_eq!(harness.sync("backup").await, RunStatus::Failed);
    let circuit = harness.circuit("erp").await;
    assert_eq!(circuit.state, CircuitState::Open, "one failed trial is enough: {circuit:?}");
    assert_eq!(circuit.flow.as_deref(), Some("backup"));

    // An operator's own run (`erpsync sync`) is not held; when it gets through, it closes the
    // circuit without waiting for the probe.
    harness.erp.set(Answer::Up);
    assert_eq!(harness.sync("backup").await, RunStatus::Succeeded);
    assert_eq!(harness.circuit("erp").await.state, CircuitState::Closed);
    assert!(harness.held().await.is_empty());
}

#[tokio::test]
async fn circuits_can_be_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let text = config("").replace("failures = 2", "failures = 0");
    let config = Config::parse(&text, &dir.path().join("erpsync.toml")).unwrap();
    let store: Arc<dyn Store> =
        Arc::new(erpsync_store::sqlite::SqliteStore::open(&dir.path().join("state.db")).await.unwrap());
    let engine = Arc::new(Engine::new(Arc::new(config), store));
    let shop = System::new();
    engine.use_source("erp", System::new());
    engine.use_sink("shop", shop.clone());
    shop.set(Answer::Down(ErrorKind::Unavailable));
    let options = RunOptions { full: true, dry_run: false, trigger: "manual".into() };
    for _ in 0..4 {
        let summary = engine.sync("products", &options, &Shutdown::never(), &|_| {}).await.unwrap();
        assert_eq!(summary.status, RunStatus::Failed);
    }
    assert!(engine.circuits().await.unwrap().iter().all(|circuit| circuit.state == CircuitState::Closed));
}

#[tokio::test]
async fn circuit_settings_are_validated() {
    let errors = Config::parse(
        &config("").replace("cooldown = \"1s\"", "cooldown = \"soon\"\nthreshold = 3"),
        std::path::Path::new("erpsync.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(errors.contains("engine"), "{errors}");
    assert!(errors.contains("threshold") || errors.contains("soon"), "{errors}");
}

async fn runs(engine: &Engine, flow: &str) -> usize {
    engine.store().list_runs(Some(flow), 1000).await.unwrap().len()
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_holds_the_flows_of_an_open_circuit_and_keeps_their_deliveries_in_the_inbox() {
    let harness = harness("interval = \"1s\"").await;
    harness.shop.set(Answer::Down(ErrorKind::Unavailable));
    let (trigger, listener) = shutdown::channel();
    let serving = tokio::spawn({
        let engine = harness.engine.clone();
        async move { engine.serve(listener).await }
    });
    // The schedule runs the flow every second; two failures open the circuit.
    let engine = harness.engine.clone();
    wait_for("the shop's circuit to open", Duration::from_secs(30), async || {
        engine.circuits().await.unwrap().iter().any(|circuit| circuit.system == "shop" && circuit.is_open())
    })
    .await;
    // A webhook delivery from the ERP arrives while the circuit is open.
    harness
        .engine
        .store()
        .insert_inbox(&NewInboxDelivery {
            system: "erp".into(),
            delivery_id: "d-1".into(),
            topic: "products/update".into(),
            headers: serde_json::json!({}),
            body: b"{}".to_vec(),
            received_at: Utc::now(),
        })
        .await
        .unwrap();
    // Keep the probe failing for a while: no run starts, the delivery stays in the inbox.
    let held_runs = runs(&harness.engine, "products").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(runs(&harness.engine, "products").await, held_runs, "a held flow ran");
    assert_eq!(harness.engine.store().pending_inbox(10).await.unwrap().len(), 1, "the delivery left the inbox");
    assert_eq!(harness.circuit("shop").await.state, CircuitState::Open);

    // The shop comes back: the probe half-opens the circuit, the next scheduled run closes it,
    // and the waiting delivery is taken up.
    harness.shop.set(Answer::Up);
    let engine = harness.engine.clone();
    wait_for("the shop's circuit to close", Duration::from_secs(30), async || {
        engine.circuits().await.unwrap().iter().all(|circuit| circuit.state == CircuitState::Closed)
    })
    .await;
    let engine = harness.engine.clone();
    wait_for("the delivery to be processed", Duration::from_secs(30), async || {
        engine.store().pending_inbox(10).await.unwrap().is_empty()
    })
    .await;
    let last = harness.engine.store().list_runs(Some("products"), 1).await.unwrap().remove(0);
    assert_ne!(last.status, RunStatus::Failed, "{last:?}");
    trigger.trigger();
    serving.await.unwrap().unwrap();
}
