//! A worker's run slots (`engine.concurrency`) go to runs, not to jobs waiting for their flow's
//! lock: with a long pull of one flow running and another job of that flow queued behind it,
//! the other flows still run.

use async_trait::async_trait;
use erpsync_connectors::{Capabilities, ConnectorError, ReadRequest, Source, SourcePage, SourceRecord};
use erpsync_engine::config::Config;
use erpsync_engine::shutdown;
use erpsync_engine::{Engine, Role};
use erpsync_model::{Checkpoint, EntityKind, Product, Record, Variant};
use erpsync_queue::NewQueuedJob;
use erpsync_store::{RunStatus, Store};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

const CONFIG: &str = r#"
[engine]
concurrency = 2

[systems.slow]
type = "files"
path = "slow"
format = "jsonl"

[systems.fast]
type = "files"
path = "fast"
format = "jsonl"

[systems.shop]
type = "files"
path = "shop"
format = "jsonl"

[flows.a]
entity = "product"
source = "slow"
target = "shop"

[flows.b]
entity = "product"
source = "fast"
target = "shop"
"#;

/// One page of one product, served once the gate is open; counts the reads that began.
struct GateSource {
    code: &'static str,
    open: watch::Receiver<bool>,
    reads: AtomicUsize,
}

#[async_trait]
impl Source for GateSource {
    fn capabilities(&self, _entity: EntityKind) -> Capabilities {
        Capabilities { read: true, incremental_read: true, ..Capabilities::default() }
    }

    async fn read_page(&self, _request: &ReadRequest<'_>) -> Result<SourcePage, ConnectorError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.clone();
        open.wait_for(|open| *open).await.expect("the test keeps the gate");
        let record = Record::Product(Product {
            code: self.code.into(),
            title: format!("Product {}", self.code),
            variants: vec![Variant { sku: self.code.into(), ..Variant::default() }],
            ..Product::default()
        });
        Ok(SourcePage {
            records: vec![SourceRecord {
                source_id: self.code.into(),
                origin: None,
                origin_group: None,
                content: Ok(record),
            }],
            checkpoint: Checkpoint { watermark: None, cursor: Some("1".into()) },
            done: true,
        })
    }
}

fn gate(code: &'static str, open: bool) -> (watch::Sender<bool>, Arc<GateSource>) {
    let (sender, receiver) = watch::channel(open);
    (sender, Arc::new(GateSource { code, open: receiver, reads: AtomicUsize::new(0) }))
}

async fn publish(engine: &Engine, key: &str, flow: &str) {
    engine
        .queue()
        .publish(&NewQueuedJob {
            kind: "run_flow".into(),
            key: key.into(),
            dedupe_id: Some(key.into()),
            payload: json!({ "flow": flow, "trigger": "manual", "full": false }),
            not_before: None,
        })
        .await
        .unwrap();
}

/// The runs of `flow` that succeeded.
async fn succeeded(store: &dyn Store, flow: &str) -> usize {
    let runs = store.list_runs(Some(flow), 10).await.unwrap();
    runs.iter().filter(|run| run.status == RunStatus::Succeeded).count()
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(20), "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_waiting_for_its_flows_lock_leaves_its_slot_to_other_flows() {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["slow", "fast", "shop"] {
        std::fs::create_dir_all(dir.path().join(folder)).unwrap();
    }
    let config = Config::parse(CONFIG, &dir.path().join("erpsync.toml")).unwrap();
    let store: Arc<dyn Store> =
        Arc::new(erpsync_store::sqlite::SqliteStore::open(&dir.path().join("state.db")).await.unwrap());
    let engine = Arc::new(Engine::new(Arc::new(config), store.clone()));
    let (open_a, slow) = gate("A", false);
    let (_open_b, fast) = gate("B", true);
    engine.use_source("slow", slow.clone());
    engine.use_source("fast", fast.clone());

    // Two jobs of flow a under different keys, so the queue hands both out: the first pull
    // holds the flow's lock in the slow read, the second waits for it.
    publish(&engine, "flow:a", "a").await;
    publish(&engine, "flow:a:again", "a").await;
    let (stop, shutdown) = shutdown::channel();
    let worker = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.serve_role(Role::Worker, shutdown).await })
    };
    wait_until("a pull of flow a reads", async || slow.reads.load(Ordering::SeqCst) == 1).await;

    // Both slots were taken by flow a's jobs; the waiting one gave its slot back.
    publish(&engine, "flow:b", "b").await;
    wait_until("flow b ran", async || succeeded(store.as_ref(), "b").await == 1).await;
    assert_eq!(slow.reads.load(Ordering::SeqCst), 1, "the second job of flow a must still wait for the lock");
    assert_eq!(succeeded(store.as_ref(), "a").await, 0);

    // Once the slow read ends, the waiting job of flow a runs too.
    open_a.send(true).unwrap();
    wait_until("both jobs of flow a ran", async || succeeded(store.as_ref(), "a").await == 2).await;
    assert_eq!(slow.reads.load(Ordering::SeqCst), 2);

    stop.trigger();
    worker.await.unwrap().unwrap();
}
