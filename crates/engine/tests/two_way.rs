//! Two-way sync and deletes against two in-memory systems that are both sources and sinks:
//! customers edited on both sides between syncs converge (with the conflict in the record log),
//! erpsync's own writes coming back are not written again, a product deleted in the ERP is
//! archived in the shop by a full reconciliation, and a run with failures deletes nothing.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use erpsync_connectors::{
    Capabilities, ConnectorError, DeleteItem, DeleteMode, ErrorKind, ReadRequest, Sink, Source, SourcePage,
    SourceRecord, WriteBatch, WriteOutcome,
};
use erpsync_engine::Engine;
use erpsync_engine::config::Config;
use erpsync_engine::flow::{RunOptions, run_flow};
use erpsync_engine::shutdown::Shutdown;
use erpsync_model::{Checkpoint, Currency, Customer, EntityKind, Money, Product, Record, Variant};
use erpsync_store::{RecordAction, RunStatus};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// One system's records by id; reads return all of them, writes upsert, deletes archive or
/// remove.
struct Memory {
    name: &'static str,
    records: Mutex<BTreeMap<String, Record>>,
    archived: Mutex<BTreeSet<String>>,
    writes: Mutex<u32>,
    /// Natural keys whose writes fail (not retryable).
    failing: Mutex<BTreeSet<String>>,
}

impl Memory {
    fn new(name: &'static str) -> Arc<Self> {
        Arc::new(Self {
            name,
            records: Mutex::new(BTreeMap::new()),
            archived: Mutex::new(BTreeSet::new()),
            writes: Mutex::new(0),
            failing: Mutex::new(BTreeSet::new()),
        })
    }

    fn put(&self, id: &str, record: Record) {
        self.records.lock().unwrap().insert(id.to_string(), record);
    }

    fn by_key(&self, key: &str) -> Option<(String, Record)> {
        self.records
            .lock()
            .unwrap()
            .iter()
            .find(|(_, record)| record.natural_key().as_deref() == Some(key))
            .map(|(id, record)| (id.clone(), record.clone()))
    }

    fn writes(&self) -> u32 {
        *self.writes.lock().unwrap()
    }

    fn source_record(id: &str, record: &Record) -> SourceRecord {
        SourceRecord { source_id: id.to_string(), origin: None, origin_group: None, content: Ok(record.clone()) }
    }
}

#[async_trait]
impl Source for Memory {
    fn capabilities(&self, _entity: EntityKind) -> Capabilities {
        Capabilities { read: true, ..Capabilities::default() }
    }

    async fn read_page(&self, _request: &ReadRequest<'_>) -> Result<SourcePage, ConnectorError> {
        let records = self.records.lock().unwrap();
        Ok(SourcePage {
            records: records.iter().map(|(id, record)| Self::source_record(id, record)).collect(),
            checkpoint: Checkpoint::default(),
            done: true,
        })
    }

    fn can_fetch(&self, _entity: EntityKind) -> bool {
        true
    }

    async fn fetch(&self, _entity: EntityKind, ids: &[String]) -> Result<Vec<Option<SourceRecord>>, ConnectorError> {
        let records = self.records.lock().unwrap();
        Ok(ids.iter().map(|id| records.get(id).map(|record| Self::source_record(id, record))).collect())
    }
}

#[async_trait]
impl Sink for Memory {
    fn capabilities(&self, _entity: EntityKind) -> Capabilities {
        Capabilities { write: true, lookup: true, delete: true, ..Capabilities::default() }
    }

    fn max_batch_size(&self, _entity: EntityKind) -> usize {
        50
    }

    async fn lookup(&self, _entity: EntityKind, keys: &[String]) -> Result<Vec<Option<String>>, ConnectorError> {
        Ok(keys.iter().map(|key| self.by_key(key).map(|(id, _)| id)).collect())
    }

    async fn write_batch(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let mut outcomes = Vec::new();
        for item in &batch.items {
            if self.failing.lock().unwrap().contains(&item.natural_key) {
                outcomes.push(WriteOutcome::Failed(
                    ConnectorError::new(ErrorKind::InvalidRequest, "writing", "rejected by the test")
                        .with_retryable(false),
                ));
                continue;
            }
            *self.writes.lock().unwrap() += 1;
            let mut records = self.records.lock().unwrap();
            match &item.target_id {
                Some(id) => {
                    records.insert(id.clone(), item.record.clone());
                    outcomes.push(WriteOutcome::Updated { target_id: id.clone() });
                }
                None => {
                    let id = format!("{}-{}", self.name, records.len() + 1);
                    records.insert(id.clone(), item.record.clone());
                    outcomes.push(WriteOutcome::Created { target_id: id });
                }
            }
        }
        Ok(outcomes)
    }

    async fn delete_batch(
        &self,
        _entity: EntityKind,
        items: &[DeleteItem],
        mode: DeleteMode,
    ) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let mut outcomes = Vec::new();
        for item in items {
            match mode {
                DeleteMode::Archive => {
                    self.archived.lock().unwrap().insert(item.target_id.clone());
                }
                DeleteMode::Delete => {
                    self.records.lock().unwrap().remove(&item.target_id);
                }
                DeleteMode::Ignore => unreachable!("the engine does not call delete for ignore"),
            }
            outcomes.push(WriteOutcome::Updated { target_id: item.target_id.clone() });
        }
        Ok(outcomes)
    }
}

fn at(text: &str) -> Option<DateTime<Utc>> {
    Some(DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc))
}

fn customer(email: &str, phone: &str, updated_at: &str) -> Record {
    Record::Customer(Customer {
        number: Some("C1".into()),
        email: Some(email.into()),
        phone: Some(phone.into()),
        first_name: Some("Ada".into()),
        updated_at: at(updated_at),
        ..Customer::default()
    })
}

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

struct Setup {
    _dir: tempfile::TempDir,
    engine: Arc<Engine>,
    erp: Arc<Memory>,
    shop: Arc<Memory>,
}

async fn setup(flows: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[store]\nurl = \"sqlite://{}/store.db\"\n\n[systems.erp]\ntype = \"files\"\npath = \"erp\"\n\n\
         [systems.shop]\ntype = \"files\"\npath = \"shop\"\n\n{flows}",
        dir.path().display()
    );
    let config = Config::parse(&text, &dir.path().join("erpsync.toml")).unwrap_or_else(|errors| panic!("{errors}"));
    let store_url = erpsync_store::StoreUrl::parse(config.store.url.as_deref().unwrap()).unwrap();
    let store = erpsync_store::open(&store_url).await.unwrap();
    let engine = Arc::new(Engine::new(Arc::new(config), store));
    let erp = Memory::new("erp");
    let shop = Memory::new("shop");
    for (name, memory) in [("erp", &erp), ("shop", &shop)] {
        engine.use_source(name, memory.clone());
        engine.use_sink(name, memory.clone());
    }
    Setup { _dir: dir, engine, erp, shop }
}

impl Setup {
    async fn run(&self, flow: &str, full: bool) -> erpsync_engine::RunSummary {
        let options = RunOptions { full, dry_run: false, trigger: "test".into() };
        let ctx = self.engine.flow_context(flow).unwrap();
        run_flow(&ctx, &options, &Shutdown::never(), &|_| {}).await.unwrap()
    }
}

const CUSTOMER_FLOWS: &str = r#"
[flows.customers_out]
entity = "customer"
source = "erp"
target = "shop"

[flows.customers_in]
entity = "customer"
source = "shop"
target = "erp"
"#;

fn field(record: &Record, name: &str) -> serde_json::Value {
    serde_json::to_value(record).unwrap()[name].clone()
}

#[tokio::test]
async fn customers_edited_on_both_sides_converge_and_the_conflict_is_logged() {
    let s = setup(CUSTOMER_FLOWS).await;
    s.erp.put("E1", customer("a@example.com", "111", "2026-11-01T10:00:00Z"));

    let first = s.run("customers_out", false).await;
    assert_eq!(first.counts.created, 1);
    // The shop now has erpsync's write; reading it back is an echo, not a change.
    let back = s.run("customers_in", false).await;
    assert_eq!((back.counts.unchanged, s.erp.writes()), (1, 0), "{back:?}");

    // The ERP changes the phone, the shop the e-mail, before either is synced.
    s.erp.put("E1", customer("a@example.com", "222", "2026-11-02T10:00:00Z"));
    let (shop_id, _) = s.shop.by_key("C1").unwrap();
    s.shop.put(&shop_id, customer("b@example.com", "111", "2026-11-02T11:00:00Z"));

    let out = s.run("customers_out", false).await;
    assert_eq!(out.counts.updated, 1, "{out:?}");
    let shop_now = s.shop.by_key("C1").unwrap().1;
    assert_eq!((field(&shop_now, "email"), field(&shop_now, "phone")), ("b@example.com".into(), "222".into()));
    let back = s.run("customers_in", false).await;
    assert_eq!(back.counts.updated, 1, "the ERP receives the shop's e-mail: {back:?}");
    let erp_now = s.erp.by_key("C1").unwrap().1;
    assert_eq!(erp_now, shop_now, "both systems hold the same customer");

    // In step: nothing to write either way.
    let (erp_writes, shop_writes) = (s.erp.writes(), s.shop.writes());
    s.run("customers_out", false).await;
    s.run("customers_in", false).await;
    assert_eq!((s.erp.writes(), s.shop.writes()), (erp_writes, shop_writes), "no ping-pong");

    // Both change the phone: the newest change wins and the record log has both values.
    s.erp.put("E1", customer("b@example.com", "333", "2026-11-03T10:00:00Z"));
    s.shop.put(&shop_id, customer("b@example.com", "444", "2026-11-03T12:00:00Z"));
    s.run("customers_out", false).await;
    s.run("customers_in", false).await;
    let (erp_now, shop_now) = (s.erp.by_key("C1").unwrap().1, s.shop.by_key("C1").unwrap().1);
    assert_eq!(field(&erp_now, "phone"), "444");
    assert_eq!(erp_now, shop_now);
    let trace = s.engine.trace("C1").await.unwrap();
    let log = serde_json::to_string(&trace).unwrap();
    assert!(log.contains(r#"conflict on phone: erp has \"333\", shop has \"444\"; shop kept (newest)"#), "{log}");
}

#[tokio::test]
async fn an_owner_rule_keeps_the_owner_value_in_a_conflict() {
    let flows = format!("{CUSTOMER_FLOWS}\n[flows.customers_out.fields]\n\"*\" = \"newest\"\nphone = \"erp\"\n");
    let s = setup(&flows).await;
    s.erp.put("E1", customer("a@example.com", "111", "2026-11-01T10:00:00Z"));
    s.run("customers_out", false).await;
    s.run("customers_in", false).await;
    let (shop_id, _) = s.shop.by_key("C1").unwrap();
    s.erp.put("E1", customer("a@example.com", "222", "2026-11-02T10:00:00Z"));
    s.shop.put(&shop_id, customer("a@example.com", "999", "2026-11-02T12:00:00Z"));
    s.run("customers_out", false).await;
    assert_eq!(field(&s.shop.by_key("C1").unwrap().1, "phone"), "222", "the ERP owns the phone");
}

const PRODUCT_FLOW: &str = r#"
[flows.products]
entity = "product"
source = "erp"
target = "shop"
on_delete = "archive"
"#;

#[tokio::test]
async fn a_product_deleted_in_the_erp_is_archived_in_the_shop_but_never_after_a_failed_run() {
    let s = setup(PRODUCT_FLOW).await;
    for n in 1..=12 {
        s.erp.put(&format!("P{n:02}"), product(&format!("P{n:02}")));
    }
    assert_eq!(s.run("products", true).await.counts.created, 12);

    // P05 is deleted in the ERP while P06 changes and cannot be written: the run has a failure,
    // so it deletes nothing.
    s.erp.records.lock().unwrap().remove("P05");
    let mut changed = product("P06");
    if let Record::Product(p) = &mut changed {
        p.title = "Changed".into();
    }
    s.erp.put("P06", changed);
    s.shop.failing.lock().unwrap().insert("P06".into());
    let failed = s.run("products", true).await;
    assert_eq!((failed.status, failed.counts.failed, failed.counts.deleted), (RunStatus::PartiallyFailed, 1, 0));
    assert!(s.shop.archived.lock().unwrap().is_empty());

    // An incremental run never deletes either.
    s.shop.failing.lock().unwrap().clear();
    let incremental = s.run("products", false).await;
    assert_eq!(incremental.counts.deleted, 0);

    let full = s.run("products", true).await;
    assert_eq!((full.status, full.counts.deleted), (RunStatus::Succeeded, 1), "{full:?}");
    let (p05_id, _) = s.shop.by_key("P05").unwrap();
    assert_eq!(s.shop.archived.lock().unwrap().iter().cloned().collect::<Vec<_>>(), vec![p05_id.clone()]);
    let trace = s.engine.trace("P05").await.unwrap();
    let log = serde_json::to_string(&trace).unwrap();
    assert!(log.contains(&format!("no longer in erp: archived in shop ({p05_id})")), "{log}");
    assert!(log.contains(RecordAction::Deleted.as_str()), "{log}");

    // Once archived it is not archived again.
    assert_eq!(s.run("products", true).await.counts.deleted, 0);
}

#[tokio::test]
async fn a_source_that_lost_most_records_deletes_nothing() {
    let s = setup(PRODUCT_FLOW).await;
    for n in 1..=10 {
        s.erp.put(&format!("P{n:02}"), product(&format!("P{n:02}")));
    }
    s.run("products", true).await;
    for n in 1..=6 {
        s.erp.records.lock().unwrap().remove(&format!("P{n:02}"));
    }
    let run = s.run("products", true).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert!(run.error.as_deref().unwrap().contains("no longer has 6 of the 10 records"), "{:?}", run.error);
    assert!(s.shop.archived.lock().unwrap().is_empty());
}
