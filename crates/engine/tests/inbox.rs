//! Webhook deliveries become jobs: the records they name are batched per partition, so a burst
//! costs a few runs instead of one per record, while every job about one record has the same
//! key (the queue hands those out one at a time, in publish order).

use erpsync_engine::config::Config;
use erpsync_engine::work::{RECORD_PARTITIONS, record_partition, records_key};
use erpsync_engine::{Engine, EngineError};
use erpsync_queue::Delivery;
use erpsync_store::{NewInboxDelivery, Store};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const CONFIG: &str = r#"
[systems.api]
type = "http"
base_url = "http://127.0.0.1:9"
webhook = { secret = { file = "hook-secret" }, signature_header = "X-Signature", id_header = "X-Delivery-Id", topic_header = "X-Topic", topics = { "product.updated" = "product" } }
[systems.api.entities.product.read]
path = "/products"
item_path = "/products/{id}"
pagination = { style = "none" }
to_canonical = "{ 'code': sku, 'title': name, 'variants': [{ 'sku': sku }] }"

[systems.shop]
type = "files"
path = "shop"
format = "jsonl"

[flows.products]
entity = "product"
source = "api"
target = "shop"
"#;

async fn engine(dir: &std::path::Path, coalesce_above: usize) -> Arc<Engine> {
    std::fs::create_dir_all(dir.join("shop")).unwrap();
    std::fs::write(dir.join("hook-secret"), "hook-secret").unwrap();
    let text = format!("[engine]\ncoalesce_above = {coalesce_above}\n{CONFIG}");
    let config = Config::parse(&text, &dir.join("erpsync.toml")).unwrap();
    let store: Arc<dyn Store> =
        Arc::new(erpsync_store::sqlite::SqliteStore::open(&dir.join("state.db")).await.unwrap());
    Arc::new(Engine::new(Arc::new(config), store))
}

async fn deliver(engine: &Engine, delivery: usize, id: u64) {
    engine
        .store()
        .insert_inbox(&NewInboxDelivery {
            system: "api".into(),
            delivery_id: format!("d-{delivery}"),
            topic: "product.updated".into(),
            headers: json!({}),
            body: format!(r#"{{"id": {id}}}"#).into_bytes(),
            received_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
}

/// Every queued run job, acknowledged as it is taken (one per key at a time, so it pulls until
/// the queue is empty).
async fn drain(engine: &Engine) -> Result<Vec<Delivery>, EngineError> {
    let mut jobs = Vec::new();
    loop {
        let pulled = engine.queue().pull("test", &["run_flow"], 100, Duration::from_secs(60)).await?;
        if pulled.is_empty() {
            return Ok(jobs);
        }
        for delivery in pulled {
            engine.queue().ack(&delivery).await?;
            jobs.push(delivery);
        }
    }
}

fn ids_of(job: &Delivery) -> Vec<String> {
    job.payload["ids"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn a_burst_of_record_events_makes_one_job_per_partition_with_ids_in_delivery_order() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 1000).await;
    // 150 records, then 20 of them again (out of id order): 170 deliveries.
    let mut order: Vec<u64> = (0..150).collect();
    order.extend((0..20).rev().map(|i| i * 7));
    for (delivery, id) in order.iter().enumerate() {
        deliver(&engine, delivery, *id).await;
    }
    assert_eq!(engine.process_inbox().await.unwrap(), 170);
    let jobs = drain(&engine).await.unwrap();

    assert!(jobs.len() <= RECORD_PARTITIONS as usize, "{} jobs for 150 records", jobs.len());
    assert!(jobs.len() > 1, "the records spread over partitions");
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for job in &jobs {
        assert_eq!(job.payload["flow"], "products");
        assert_eq!(job.payload["trigger"], "webhook");
        let ids = ids_of(job);
        let partition = record_partition(&ids[0]);
        assert_eq!(job.key, records_key("api", "product", partition), "{ids:?}");
        assert!(ids.iter().all(|id| record_partition(id) == partition), "one partition per job: {ids:?}");
        // In the order of their first delivery, which is the order of the ids here.
        let numbers: Vec<u64> = ids.iter().map(|id| id.parse().unwrap()).collect();
        assert!(numbers.windows(2).all(|pair| pair[0] < pair[1]), "delivery order: {numbers:?}");
        for id in ids {
            *seen.entry(id).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 150, "every record named once");
    assert!(seen.values().all(|count| *count == 1), "no record twice: {seen:?}");

    // A later delivery about a record goes to the same key as its earlier job.
    deliver(&engine, 170, 42).await;
    assert_eq!(engine.process_inbox().await.unwrap(), 1);
    let later = drain(&engine).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(ids_of(&later[0]), ["42"]);
    let earlier = jobs.iter().find(|job| ids_of(job).contains(&"42".to_string())).unwrap();
    assert_eq!(later[0].key, earlier.key);
}

#[tokio::test]
async fn above_the_coalescing_threshold_the_flow_pulls_once() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 10).await;
    for id in 0..11 {
        deliver(&engine, id as usize, id).await;
    }
    assert_eq!(engine.process_inbox().await.unwrap(), 11);
    let jobs = drain(&engine).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].key, "flow:products");
    assert!(jobs[0].payload.get("ids").is_none(), "a pull, not a fetch by id: {}", jobs[0].payload);
}
