//! The flow runner against scripted connectors: transient failures retried with backoff and
//! `Retry-After`, per-record failures dead-lettered while the rest of the batch goes on, a page
//! that cannot be written never moving the checkpoint, matching before creating, and dead
//! letters retried once the target accepts them.

use async_trait::async_trait;
use erpsync_connectors::{
    Capabilities, ConnectorError, ErrorKind, ReadRequest, Sink, Source, SourcePage, SourceRecord, WriteBatch,
    WriteOutcome,
};
use erpsync_engine::Engine;
use erpsync_engine::config::Config;
use erpsync_engine::flow::{FlowContext, RunOptions, run_flow};
use erpsync_engine::shutdown::Shutdown;
use erpsync_model::{Checkpoint, Currency, EntityKind, Money, Product, Record, Variant};
use erpsync_store::{DeadLetterFilter, DeadLetterStatus, RunStatus, Store};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn product(code: &str, price: i64) -> Record {
    Record::Product(Product {
        code: code.into(),
        title: format!("Product {code}"),
        variants: vec![Variant {
            sku: code.into(),
            price: Some(Money::new(Decimal::new(price, 2), Currency::EUR)),
            ..Variant::default()
        }],
        ..Product::default()
    })
}

/// Serves a fixed list of records in pages; the cursor is the offset.
struct ListSource {
    records: Mutex<Vec<Record>>,
    /// Transient read failures to return before succeeding.
    read_failures: Mutex<u32>,
}

#[async_trait]
impl Source for ListSource {
    fn capabilities(&self, _entity: EntityKind) -> Capabilities {
        Capabilities { read: true, incremental_read: true, ..Capabilities::default() }
    }

    async fn read_page(&self, request: &ReadRequest<'_>) -> Result<SourcePage, ConnectorError> {
        {
            let mut failures = self.read_failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(ConnectorError::new(ErrorKind::Unavailable, "reading", "503 service unavailable"));
            }
        }
        let records = self.records.lock().unwrap();
        let start: usize = request.checkpoint.cursor.as_deref().map(|c| c.parse().unwrap()).unwrap_or(0);
        let end = (start + request.page_size).min(records.len());
        let page = records[start..end]
            .iter()
            .enumerate()
            .map(|(offset, record)| SourceRecord {
                source_id: record.natural_key().unwrap(),
                origin: Some(format!("list: item {}", start + offset + 1)),
                origin_group: None,
                content: Ok(record.clone()),
            })
            .collect();
        Ok(SourcePage {
            records: page,
            checkpoint: Checkpoint { watermark: None, cursor: Some(end.to_string()) },
            done: end == records.len(),
        })
    }
}

/// What the scripted sink does with the next batch.
enum BatchScript {
    Fail(ConnectorError),
}

/// Records what it is asked to write; fails as scripted.
#[derive(Default)]
struct ScriptedSink {
    written: Mutex<BTreeMap<String, Record>>,
    write_calls: Mutex<u32>,
    batch_scripts: Mutex<VecDeque<BatchScript>>,
    /// Per natural key: failures to return for that record, in order, before accepting it.
    record_failures: Mutex<BTreeMap<String, VecDeque<ConnectorError>>>,
    /// Natural keys the target already has, with their ids (matched before creating).
    existing: Mutex<BTreeMap<String, String>>,
    call_times: Mutex<Vec<Instant>>,
}

#[async_trait]
impl Sink for ScriptedSink {
    fn capabilities(&self, _entity: EntityKind) -> Capabilities {
        Capabilities { write: true, lookup: true, ..Capabilities::default() }
    }

    fn max_batch_size(&self, _entity: EntityKind) -> usize {
        4
    }

    async fn lookup(&self, _entity: EntityKind, keys: &[String]) -> Result<Vec<Option<String>>, ConnectorError> {
        let existing = self.existing.lock().unwrap();
        Ok(keys.iter().map(|key| existing.get(key).cloned()).collect())
    }

    async fn write_batch(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        *self.write_calls.lock().unwrap() += 1;
        self.call_times.lock().unwrap().push(Instant::now());
        if let Some(BatchScript::Fail(error)) = self.batch_scripts.lock().unwrap().pop_front() {
            return Err(error);
        }
        let mut outcomes = Vec::new();
        for item in &batch.items {
            let failure = self.record_failures.lock().unwrap().get_mut(&item.natural_key).and_then(VecDeque::pop_front);
            match failure {
                Some(error) => outcomes.push(WriteOutcome::Failed(error)),
                None => {
                    self.written.lock().unwrap().insert(item.natural_key.clone(), item.record.clone());
                    let target_id = item.target_id.clone().unwrap_or_else(|| format!("T-{}", item.natural_key));
                    outcomes.push(match item.target_id {
                        Some(_) => WriteOutcome::Updated { target_id },
                        None => WriteOutcome::Created { target_id },
                    });
                }
            }
        }
        Ok(outcomes)
    }
}

const CONFIG: &str = r#"
[systems.erp]
type = "files"
path = "unused-erp"

[systems.shop]
type = "files"
path = "unused-shop"

[flows.products]
entity = "product"
source = "erp"
target = "shop"
page_size = 10
retry = { max_attempts = 4, initial = "10ms", max = "200ms" }
"#;

struct Harness {
    _dir: tempfile::TempDir,
    engine: Engine,
    source: Arc<ListSource>,
    sink: Arc<ScriptedSink>,
}

async fn harness(records: Vec<Record>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(CONFIG, &dir.path().join("erpsync.toml")).unwrap();
    let store: Arc<dyn Store> =
        Arc::new(erpsync_store::sqlite::SqliteStore::open(&dir.path().join("state.db")).await.unwrap());
    let engine = Engine::new(Arc::new(config), store);
    let source = Arc::new(ListSource { records: Mutex::new(records), read_failures: Mutex::new(0) });
    let sink = Arc::new(ScriptedSink::default());
    engine.use_source("erp", source.clone());
    engine.use_sink("shop", sink.clone());
    Harness { _dir: dir, engine, source, sink }
}

impl Harness {
    fn context(&self) -> FlowContext {
        self.engine.flow_context("products").unwrap()
    }

    async fn run(&self) -> erpsync_engine::RunSummary {
        let options = RunOptions { full: false, dry_run: false, trigger: "test".into() };
        run_flow(&self.context(), &options, &Shutdown::never(), &|_| {}).await.unwrap()
    }

    async fn open_failures(&self) -> Vec<erpsync_store::DeadLetter> {
        let filter = DeadLetterFilter { flow: None, status: Some(DeadLetterStatus::Open), limit: 100 };
        self.engine.store().list_dead_letters(&filter).await.unwrap()
    }
}

fn catalog(n: usize) -> Vec<Record> {
    (0..n).map(|i| product(&format!("P{i:03}"), 1000 + i as i64)).collect()
}

#[tokio::test]
async fn transient_batch_failures_are_retried_and_each_record_is_written_once() {
    let harness = harness(catalog(6)).await;
    {
        let mut scripts = harness.sink.batch_scripts.lock().unwrap();
        scripts.push_back(BatchScript::Fail(ConnectorError::new(ErrorKind::Unavailable, "writing", "502 bad gateway")));
        scripts.push_back(BatchScript::Fail(
            ConnectorError::new(ErrorKind::RateLimited, "writing", "429").with_retry_after(Duration::from_millis(150)),
        ));
    }
    *harness.source.read_failures.lock().unwrap() = 1;
    let summary = harness.run().await;
    assert_eq!(summary.status, RunStatus::Succeeded, "{summary:?}");
    assert_eq!(summary.counts.created, 6);
    assert_eq!(harness.sink.written.lock().unwrap().len(), 6);
    // Batches of 4: two failed attempts, then 2 successful batches.
    assert_eq!(*harness.sink.write_calls.lock().unwrap(), 4);
    let times = harness.sink.call_times.lock().unwrap().clone();
    assert!(
        times[2] - times[1] >= Duration::from_millis(150),
        "Retry-After was not honoured: {:?}",
        times[2] - times[1]
    );
    assert!(harness.open_failures().await.is_empty());
}

#[tokio::test]
async fn record_failures_become_dead_letters_while_the_rest_of_the_batch_goes_on() {
    let harness = harness(catalog(5)).await;
    {
        let mut failures = harness.sink.record_failures.lock().unwrap();
        // P001 is rejected for good; P002 fails once transiently and then goes through.
        failures.insert(
            "P001".into(),
            VecDeque::from([ConnectorError::new(ErrorKind::InvalidRequest, "writing", "unknown tax class")]),
        );
        failures
            .insert("P002".into(), VecDeque::from([ConnectorError::new(ErrorKind::Timeout, "writing", "timed out")]));
    }
    let summary = harness.run().await;
    assert_eq!(summary.status, RunStatus::PartiallyFailed);
    assert_eq!((summary.counts.created, summary.counts.failed), (4, 1), "{summary:?}");
    let written: Vec<String> = harness.sink.written.lock().unwrap().keys().cloned().collect();
    assert_eq!(written, ["P000", "P002", "P003", "P004"]);
    let failures = harness.open_failures().await;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].source_id, "P001");
    assert_eq!(failures[0].error_kind, "invalid_request");
    assert!(
        failures[0].error.contains("unknown tax class") && failures[0].error.contains("list: item 2"),
        "{}",
        failures[0].error
    );

    // The target accepts it now: a retry resolves the dead letter and writes the record once.
    let summary = harness.engine.retry_dead_letter(failures[0].id, "test").await.unwrap();
    assert_eq!(summary.counts.created, 1, "{summary:?}");
    assert!(harness.open_failures().await.is_empty());
    let letter = harness.engine.store().dead_letter(failures[0].id).await.unwrap().unwrap();
    assert_eq!(letter.status, DeadLetterStatus::Resolved);
    assert!(harness.sink.written.lock().unwrap().contains_key("P001"));
}

#[tokio::test]
async fn a_page_that_cannot_be_written_does_not_move_the_checkpoint() {
    let all = catalog(25);
    let harness = harness(all[..10].to_vec()).await;
    let first = harness.run().await;
    assert_eq!(first.counts.created, 10);

    // Fifteen new records arrive while the target is down for longer than the retry budget
    // of the flow (4 attempts).
    *harness.source.records.lock().unwrap() = all;
    for _ in 0..4 {
        let outage = ConnectorError::new(ErrorKind::Unavailable, "writing", "503 service unavailable");
        harness.sink.batch_scripts.lock().unwrap().push_back(BatchScript::Fail(outage));
    }
    let summary = harness.run().await;
    assert_eq!(summary.status, RunStatus::Failed, "{summary:?}");
    assert!(summary.error.as_deref().unwrap_or("").contains("503"), "{summary:?}");
    let checkpoint = harness.engine.store().checkpoint("products", "erp").await.unwrap().unwrap();
    assert_eq!(checkpoint.cursor.as_deref(), Some("10"), "the checkpoint stays at the last durable page");
    assert!(harness.open_failures().await.is_empty(), "an outage is not the records' fault");

    // The target is back: the next run writes exactly the 15 records that were not written.
    let summary = harness.run().await;
    assert_eq!(summary.status, RunStatus::Succeeded, "{summary:?}");
    assert_eq!(summary.counts.created, 15, "{summary:?}");
    assert_eq!(harness.sink.written.lock().unwrap().len(), 25);
}

#[tokio::test]
async fn first_sync_matches_existing_target_records_before_creating() {
    let harness = harness(catalog(3)).await;
    harness.sink.existing.lock().unwrap().insert("P001".into(), "SHOP-77".into());
    let summary = harness.run().await;
    assert_eq!((summary.counts.created, summary.counts.updated), (2, 1), "{summary:?}");
    let identities = harness.engine.store().find_records("P001").await.unwrap();
    let shop_id = identities[0].links.iter().find(|link| link.system == "shop").map(|link| link.external_id.clone());
    assert_eq!(shop_id.as_deref(), Some("SHOP-77"));

    // A second run over the same unchanged records writes nothing.
    *harness.sink.write_calls.lock().unwrap() = 0;
    let options = RunOptions { full: true, dry_run: false, trigger: "test".into() };
    let summary = run_flow(&harness.context(), &options, &Shutdown::never(), &|_| {}).await.unwrap();
    assert_eq!(summary.counts.unchanged, 3, "{summary:?}");
    assert_eq!(*harness.sink.write_calls.lock().unwrap(), 0);
}

#[tokio::test]
async fn dry_run_writes_nothing_and_stores_nothing() {
    let harness = harness(catalog(4)).await;
    let options = RunOptions { full: false, dry_run: true, trigger: "test".into() };
    let summary = run_flow(&harness.context(), &options, &Shutdown::never(), &|_| {}).await.unwrap();
    assert_eq!(summary.counts.created, 4, "{summary:?}");
    assert_eq!(*harness.sink.write_calls.lock().unwrap(), 0);
    assert!(harness.engine.store().checkpoint("products", "erp").await.unwrap().is_none());
    assert!(harness.engine.store().find_records("P000").await.unwrap().is_empty());
}
