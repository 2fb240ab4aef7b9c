//! The `shopify` connector against the in-process Shopify simulator (erpsync-sim): paged and
//! incremental reads, productSet semantics, lookup by SKU, per-item userErrors, stock, price
//! lists, fulfillments, the cost limiter under a small bucket, the bulk path, webhooks and
//! their subscriptions, and transient failures.

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use erpsync_connectors::shopify::{ShopifyConfig, ShopifyConnector};
use erpsync_connectors::{
    ErrorKind, ReadRequest, Sink, Source, SystemConfig, WebhookReceiver, WebhookSubscriptions, WriteBatch, WriteItem,
    WriteOutcome,
};
use erpsync_model::{
    Checkpoint, Currency, EntityKind, Money, OptionValue, PriceEntry, PriceList, Product, ProductOption, Record,
    Shipment, StockLevel, Tracking, Variant,
};
use erpsync_sim::shopify::{Faults, PlanLimits, RunningSim, SeedConfig, ShopifySim};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const VERSION: &str = "2026-10";

/// A webhook as received: its headers (lower-case names) and raw body.
type Delivery = (Vec<(String, String)>, Vec<u8>);

async fn start(seed: Option<SeedConfig>, plan: PlanLimits, clock_start: chrono::DateTime<chrono::Utc>) -> RunningSim {
    start_with(erpsync_sim::shopify::ShopifyConfig { seed, plan, clock_start, ..Default::default() }).await
}

async fn start_with(config: erpsync_sim::shopify::ShopifyConfig) -> RunningSim {
    ShopifySim::start(config).await.expect("the shopify simulator starts")
}

async fn seeded(products: usize, variants: usize, orders: usize) -> RunningSim {
    let seed = SeedConfig { seed: 7, products, variants_per_product: variants, locations: 2, customers: 5, orders };
    start(Some(seed), PlanLimits::STANDARD, chrono::Utc::now() - chrono::Duration::hours(2)).await
}

/// A connector for the simulator; `extra` is more TOML for the system's table.
fn connector(sim: &RunningSim, extra: &str) -> (ShopifyConnector, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), sim.access_token()).unwrap();
    std::fs::write(dir.path().join("secret"), "sim-secret").unwrap();
    let text = format!(
        "url = \"{}\"\napi_version = \"{VERSION}\"\naccess_token = {{ file = \"{}\" }}\nwebhook_secret = {{ file = \"{}\" }}\n{extra}",
        sim.base_url(),
        dir.path().join("token").display(),
        dir.path().join("secret").display(),
    );
    let config: ShopifyConfig = toml::from_str(&text).unwrap();
    (ShopifyConnector::new("test-shop", config).unwrap(), dir)
}

/// Reads pages until the run is done; returns the records and the checkpoint after the run.
async fn read_all(
    connector: &ShopifyConnector,
    entity: EntityKind,
    from: &Checkpoint,
    page_size: usize,
) -> (Vec<Record>, Checkpoint, usize) {
    let mut checkpoint = from.clone();
    let mut records = Vec::new();
    let mut pages = 0;
    loop {
        let page = connector.read_page(&ReadRequest { entity, checkpoint: &checkpoint, page_size }).await.unwrap();
        pages += 1;
        for record in page.records {
            records.push(record.content.unwrap_or_else(|problem| panic!("a record could not be read: {problem:?}")));
        }
        checkpoint = page.checkpoint;
        if page.done {
            return (records, checkpoint, pages);
        }
        assert!(pages < 1000, "the read does not end");
    }
}

/// Sends GraphQL to the simulator directly (to set up and inspect the shop).
async fn graphql(sim: &RunningSim, query: &str, variables: Value) -> Value {
    let response = reqwest::Client::new()
        .post(sim.graphql_url(VERSION))
        .header("X-Shopify-Access-Token", sim.access_token())
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert!(body.get("errors").is_none(), "{body}");
    body["data"].clone()
}

fn products(records: &[Record]) -> Vec<&Product> {
    records
        .iter()
        .map(|record| match record {
            Record::Product(product) => product,
            other => panic!("expected products, got {other:?}"),
        })
        .collect()
}

fn eur(amount: i64, scale: u32) -> Option<Money> {
    Some(Money::new(Decimal::new(amount, scale), Currency::EUR))
}

fn shirt(code: &str, sizes: &[&str]) -> Product {
    Product {
        code: code.into(),
        title: format!("Shirt {code}"),
        options: vec![ProductOption {
            name: "Size".into(),
            values: sizes.iter().map(|size| size.to_string()).collect(),
        }],
        variants: sizes
            .iter()
            .map(|size| Variant {
                sku: format!("{code}-{size}"),
                options: vec![OptionValue { option: "Size".into(), value: size.to_string() }],
                price: eur(1990, 2),
                track_inventory: true,
                ..Variant::default()
            })
            .collect(),
        ..Product::default()
    }
}

fn batch(entity: EntityKind, id: &str, items: Vec<(Option<String>, Record)>) -> WriteBatch {
    WriteBatch {
        entity,
        batch_id: id.into(),
        items: items
            .into_iter()
            .map(|(target_id, record)| WriteItem { target_id, natural_key: record.natural_key().unwrap(), record })
            .collect(),
    }
}

fn created_id(outcome: &WriteOutcome) -> String {
    match outcome {
        WriteOutcome::Created { target_id } | WriteOutcome::Updated { target_id } => target_id.clone(),
        WriteOutcome::Failed(error) => panic!("expected a write, got {error}"),
    }
}

#[tokio::test]
async fn reads_all_products_across_page_boundaries() {
    let sim = seeded(30, 3, 0).await;
    let (connector, _dir) = connector(&sim, "");
    let (records, checkpoint, pages) = read_all(&connector, EntityKind::Product, &Checkpoint::default(), 7).await;
    let products = products(&records);
    assert_eq!(products.len(), 30);
    assert!(pages >= 5, "7 per page gives at least 5 pages, got {pages}");
    let ids: BTreeSet<&str> = products.iter().map(|p| p.extra.get("shopify_id").unwrap().as_str().unwrap()).collect();
    assert_eq!(ids.len(), 30, "no product twice, none missing");
    for product in &products {
        assert_eq!(product.variants.len(), 3, "{product:?}");
        assert!(product.variants.iter().all(|variant| !variant.sku.is_empty() && variant.price.is_some()));
        assert!(!product.options.is_empty());
    }
    assert!(checkpoint.cursor.is_none() && checkpoint.watermark.is_some());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_product_with_more_variants_than_a_page_holds_is_read_whole() {
    let sim = seeded(2, 40, 0).await;
    let (connector, _dir) = connector(&sim, "");
    let (records, ..) = read_all(&connector, EntityKind::Product, &Checkpoint::default(), 8).await;
    for product in products(&records) {
        assert_eq!(product.variants.len(), 40);
        let skus: BTreeSet<&str> = product.variants.iter().map(|variant| variant.sku.as_str()).collect();
        assert_eq!(skus.len(), 40);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn an_incremental_read_picks_up_exactly_the_changed_products() {
    // A frozen clock on a whole second: the seeded products share one timestamp, exactly the
    // watermark, so the boundary rule (`>`) is what keeps them out of the second read.
    let clock_start = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp() - 7200, 0).unwrap();
    let seed = SeedConfig { seed: 7, products: 20, variants_per_product: 1, locations: 1, customers: 0, orders: 0 };
    let sim = start_with(erpsync_sim::shopify::ShopifyConfig {
        seed: Some(seed),
        clock_start,
        clock_scale: 0.0,
        ..Default::default()
    })
    .await;
    // No overlap: the strict `>` boundary alone decides (the default overlap re-reads the
    // records at the boundary on purpose, which the engine then skips by hash).
    let (connector, _dir) = connector(&sim, "overlap = \"0s\"");
    let (first, checkpoint, _) = read_all(&connector, EntityKind::Product, &Checkpoint::default(), 8).await;
    assert_eq!(first.len(), 20);
    let ids: Vec<String> = products(&first)
        .iter()
        .map(|product| product.extra.get("shopify_id").unwrap().as_str().unwrap().to_string())
        .collect();
    sim.advance_clock(Duration::from_secs(60));
    let client = reqwest::Client::new();
    for id in [&ids[3], &ids[11]] {
        let response =
            client.post(format!("{}/_sim/touch", sim.base_url())).json(&json!({ "id": id })).send().await.unwrap();
        assert!(response.status().is_success());
    }
    let (changed, after, _) = read_all(&connector, EntityKind::Product, &checkpoint, 8).await;
    let changed_ids: BTreeSet<String> = products(&changed)
        .iter()
        .map(|product| product.extra.get("shopify_id").unwrap().as_str().unwrap().to_string())
        .collect();
    assert_eq!(changed_ids, BTreeSet::from([ids[3].clone(), ids[11].clone()]));
    assert!(after.watermark > checkpoint.watermark);
    let (nothing, ..) = read_all(&connector, EntityKind::Product, &after, 8).await;
    assert!(nothing.is_empty(), "an unchanged shop gives nothing new: {nothing:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn product_set_creates_then_replaces_the_variant_list() {
    let sim = seeded(0, 1, 0).await;
    let (connector, _dir) = connector(&sim, "");
    let created = connector
        .write_batch(&batch(EntityKind::Product, "b1", vec![(None, Record::Product(shirt("TEE", &["S", "M"])))]))
        .await
        .unwrap();
    let WriteOutcome::Created { target_id } = &created[0] else { panic!("{created:?}") };
    let (records, ..) = read_all(&connector, EntityKind::Product, &Checkpoint::default(), 8).await;
    let before = products(&records)[0].clone();
    let m_id = before.variants.iter().find(|v| v.sku == "TEE-M").unwrap().extra.get("shopify_id").cloned();

    let mut update = shirt("TEE", &["M", "L"]);
    update.variants[0].price = eur(2490, 2);
    let updated = connector
        .write_batch(&batch(EntityKind::Product, "b2", vec![(Some(target_id.clone()), Record::Product(update))]))
        .await
        .unwrap();
    assert!(matches!(&updated[0], WriteOutcome::Updated { target_id: id } if id == target_id), "{updated:?}");
    let (records, ..) = read_all(&connector, EntityKind::Product, &Checkpoint::default(), 8).await;
    let after = products(&records);
    assert_eq!(after.len(), 1, "updated in place, not created again");
    let skus: Vec<&str> = after[0].variants.iter().map(|v| v.sku.as_str()).collect();
    assert_eq!(skus, ["TEE-M", "TEE-L"], "the variant list is replaced, not appended to");
    let m = after[0].variants.iter().find(|v| v.sku == "TEE-M").unwrap();
    assert_eq!(m.price, eur(2490, 2));
    assert_eq!(m.extra.get("shopify_id").cloned(), m_id, "the kept variant is updated in place (same id)");
    sim.shutdown().await;
}

#[tokio::test]
async fn lookup_by_sku_links_existing_products() {
    let sim = seeded(5, 2, 0).await;
    let (connector, _dir) = connector(&sim, "");
    let (records, ..) = read_all(&connector, EntityKind::Product, &Checkpoint::default(), 8).await;
    let product = products(&records)[2].clone();
    let sku = product.variants[1].sku.clone();
    let found = connector.lookup(EntityKind::Product, &[sku.clone(), "NO-SUCH-SKU-42".into()]).await.unwrap();
    assert_eq!(found[0].as_deref(), product.extra.get("shopify_id").and_then(Value::as_str));
    assert_eq!(found[1], None);
    sim.shutdown().await;
}

#[tokio::test]
async fn user_errors_fail_only_their_record() {
    let sim = seeded(0, 1, 0).await;
    let (connector, _dir) = connector(&sim, "");
    let mut bad = shirt("BAD", &["S"]);
    bad.title = String::new();
    let outcomes = connector
        .write_batch(&batch(
            EntityKind::Product,
            "b-errors",
            vec![
                (None, Record::Product(shirt("OK1", &["S"]))),
                (None, Record::Product(bad)),
                (None, Record::Product(shirt("OK2", &["S", "M"]))),
            ],
        ))
        .await
        .unwrap();
    assert!(matches!(outcomes[0], WriteOutcome::Created { .. }), "{outcomes:?}");
    let WriteOutcome::Failed(error) = &outcomes[1] else { panic!("{outcomes:?}") };
    assert_eq!(error.kind, ErrorKind::InvalidRequest);
    assert!(!error.retryable);
    assert!(error.to_string().contains("title"), "the error names the field: {error}");
    assert!(error.to_string().contains("BAD"), "the error names the record: {error}");
    assert!(matches!(outcomes[2], WriteOutcome::Created { .. }), "{outcomes:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn stock_is_set_and_read_back() {
    let sim = seeded(3, 2, 0).await;
    let (connector, _dir) = connector(&sim, "");
    let (levels, ..) = read_all(&connector, EntityKind::StockLevel, &Checkpoint::default(), 25).await;
    let Record::StockLevel(level) = &levels[0] else { panic!() };
    let (sku, location) = (level.sku.clone(), level.location.clone());
    let stock = |sku: &str, location: &str, available: i64| {
        (
            None,
            Record::StockLevel(StockLevel {
                sku: sku.into(),
                location: location.into(),
                available: Decimal::new(available, 0),
                ..StockLevel::default()
            }),
        )
    };
    let outcomes = connector
        .write_batch(&batch(
            EntityKind::StockLevel,
            "stock-1",
            vec![stock(&sku, &location, 17), stock(&sku, "Nowhere", 3), stock("NO-SUCH-SKU", &location, 1)],
        ))
        .await
        .unwrap();
    assert!(matches!(outcomes[0], WriteOutcome::Updated { .. }), "{outcomes:?}");
    let WriteOutcome::Failed(error) = &outcomes[1] else { panic!("{outcomes:?}") };
    assert!(error.to_string().contains("Nowhere"), "{error}");
    let WriteOutcome::Failed(error) = &outcomes[2] else { panic!("{outcomes:?}") };
    assert_eq!(error.kind, ErrorKind::NotFound);
    let (levels, ..) = read_all(&connector, EntityKind::StockLevel, &Checkpoint::default(), 25).await;
    let read_back = levels
        .iter()
        .find_map(|record| match record {
            Record::StockLevel(level) if level.sku == sku && level.location == location => Some(level.available),
            _ => None,
        })
        .unwrap();
    assert_eq!(read_back, Decimal::new(17, 0));
    sim.shutdown().await;
}

#[tokio::test]
async fn customer_group_prices_go_to_the_mapped_price_list() {
    let sim = seeded(3, 1, 0).await;
    let data = graphql(
        &sim,
        "mutation { priceListCreate(input: { name: \"B2B Gold\", currency: EUR, parent: { adjustment: { type: PERCENTAGE_DECREASE, value: 0 } } }) { priceList { id } userErrors { field message } } }",
        json!({}),
    )
    .await;
    let list_id = data["priceListCreate"]["priceList"]["id"].as_str().unwrap().to_string();
    let (connector, _dir) = connector(&sim, "price_lists = { gold = \"B2B Gold\" }");
    let (records, ..) = read_all(&connector, EntityKind::Product, &Checkpoint::default(), 8).await;
    let sku = products(&records)[0].variants[0].sku.clone();
    let list = |entries: Vec<PriceEntry>| PriceList {
        code: "GOLD-EUR".into(),
        name: "Gold".into(),
        currency: Currency::EUR,
        customer_group: Some("gold".into()),
        entries,
        ..PriceList::default()
    };
    let entry = |sku: &str, price: i64| PriceEntry {
        sku: sku.into(),
        min_quantity: Decimal::ONE,
        price: Decimal::new(price, 2),
    };
    let outcomes = connector
        .write_batch(&batch(
            EntityKind::PriceList,
            "prices-1",
            vec![(None, Record::PriceList(list(vec![entry(&sku, 950)])))],
        ))
        .await
        .unwrap();
    assert_eq!(created_id(&outcomes[0]), list_id);
    let data = graphql(
        &sim,
        "query($id: ID!) { priceList(id: $id) { prices(first: 10) { nodes { price { amount } variant { sku } } } } }",
        json!({ "id": list_id }),
    )
    .await;
    let prices = data["priceList"]["prices"]["nodes"].as_array().unwrap();
    let price =
        prices.iter().find(|node| node["variant"]["sku"] == json!(sku)).expect("the fixed price is in the list");
    assert_eq!(erpsync_model::decimal::parse_json(&price["price"]["amount"]).unwrap(), Decimal::new(95, 1));
    let outcomes = connector
        .write_batch(&batch(
            EntityKind::PriceList,
            "prices-2",
            vec![(None, Record::PriceList(list(vec![entry("NO-SUCH-SKU", 100)])))],
        ))
        .await
        .unwrap();
    let WriteOutcome::Failed(error) = &outcomes[0] else { panic!("{outcomes:?}") };
    assert!(error.to_string().contains("entries[0].sku"), "{error}");
    sim.shutdown().await;
}

#[tokio::test]
async fn orders_are_read_with_lines_taxes_and_totals() {
    let sim = seeded(5, 2, 12).await;
    let (connector, _dir) = connector(&sim, "");
    let (records, _, pages) = read_all(&connector, EntityKind::Order, &Checkpoint::default(), 50).await;
    assert_eq!(records.len(), 12);
    assert!(pages >= 3, "orders are heavy: a page holds at most 4, got {pages} pages");
    let data = graphql(&sim, "{ orders(first: 12) { nodes { name totalPriceSet { shopMoney { amount } } lineItems(first: 20) { nodes { sku } } } } }", json!({})).await;
    let expected: HashMap<String, (Value, usize)> = data["orders"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| {
            let lines = node["lineItems"]["nodes"].as_array().unwrap().len();
            (node["name"].as_str().unwrap().to_string(), (node["totalPriceSet"]["shopMoney"]["amount"].clone(), lines))
        })
        .collect();
    for record in &records {
        let Record::Order(order) = record else { panic!() };
        let (total, lines) = &expected[&order.number];
        assert_eq!(order.totals.total, erpsync_model::decimal::parse_json(total).unwrap(), "{}", order.number);
        assert_eq!(order.lines.len(), *lines);
        assert!(order.lines.iter().all(|line| !line.sku.is_empty() && line.quantity > Decimal::ZERO));
        assert!(!order.tax_lines.is_empty(), "{order:?}");
        assert!(order.customer.email.is_some());
        let line_sum: Decimal = order.lines.iter().map(|line| line.total).sum();
        assert_eq!(line_sum, order.totals.subtotal, "{}: lines add up to the subtotal", order.number);
        // Shopify's subtotal is after discounts, before shipping and taxes.
        let expected_total = if order.prices_include_tax {
            order.totals.subtotal + order.totals.shipping_total
        } else {
            order.totals.subtotal + order.totals.shipping_total + order.totals.tax_total
        };
        assert_eq!(order.totals.total, expected_total, "{}: {:?}", order.number, order.totals);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_shipment_becomes_a_fulfillment_with_tracking_once() {
    let sim = seeded(5, 2, 3).await;
    let (connector, _dir) = connector(&sim, "");
    let (records, ..) = read_all(&connector, EntityKind::Order, &Checkpoint::default(), 4).await;
    let order = records
        .iter()
        .find_map(|record| match record {
            Record::Order(order) if order.fulfillment_status == erpsync_model::FulfillmentStatus::Unfulfilled => {
                Some(order.clone())
            }
            _ => None,
        })
        .expect("a seeded order is unfulfilled");
    let shipment = Shipment {
        number: "DN-1".into(),
        order_number: order.number.clone(),
        tracking: vec![Tracking { carrier: "DHL".into(), number: "00340434".into(), url: None }],
        ..Shipment::default()
    };
    let outcomes = connector
        .write_batch(&batch(EntityKind::Shipment, "ship-1", vec![(None, Record::Shipment(shipment.clone()))]))
        .await
        .unwrap();
    let fulfillment_id = created_id(&outcomes[0]);
    let again = connector
        .write_batch(&batch(EntityKind::Shipment, "ship-1", vec![(None, Record::Shipment(shipment))]))
        .await
        .unwrap();
    assert_eq!(created_id(&again[0]), fulfillment_id, "a replayed shipment finds its fulfillment");
    let data = graphql(
        &sim,
        "query($q: String!) { orders(first: 1, query: $q) { nodes { displayFulfillmentStatus fulfillments(first: 10) { id trackingInfo { company number } } } } }",
        json!({ "q": format!("name:'{}'", order.number) }),
    )
    .await;
    let node = &data["orders"]["nodes"][0];
    assert_eq!(node["displayFulfillmentStatus"], "FULFILLED");
    let fulfillments = node["fulfillments"].as_array().unwrap();
    assert_eq!(fulfillments.len(), 1, "one fulfillment, not two");
    assert_eq!(fulfillments[0]["trackingInfo"][0]["number"], "00340434");
    assert_eq!(fulfillments[0]["trackingInfo"][0]["company"], "DHL");
    let missing = Shipment { number: "DN-2".into(), order_number: "#999999".into(), ..Shipment::default() };
    let outcomes = connector
        .write_batch(&batch(EntityKind::Shipment, "ship-2", vec![(None, Record::Shipment(missing))]))
        .await
        .unwrap();
    let WriteOutcome::Failed(error) = &outcomes[0] else { panic!("{outcomes:?}") };
    assert_eq!(error.kind, ErrorKind::NotFound);
    assert!(error.retryable, "the order may arrive later");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_burst_under_a_small_bucket_completes_without_failures_near_the_minimum_time() {
    let plan = PlanLimits { maximum_available: 100.0, restore_rate: 50.0 };
    let sim = start(None, plan, chrono::Utc::now()).await;
    let (connector, _dir) = connector(&sim, "bulk_threshold = 1000");
    // The limiter knows nothing of the bucket before the first answer: the burst starts from a
    // full bucket it learns on the way.
    let items: Vec<(Option<String>, Record)> =
        (0..40).map(|n| (None, Record::Product(shirt(&format!("BURST{n}"), &["S"])))).collect();
    let started = Instant::now();
    let outcomes = connector.write_batch(&batch(EntityKind::Product, "burst", items)).await.unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            WriteOutcome::Failed(error) => Some(error.to_string()),
            _ => None,
        })
        .collect();
    assert!(failures.is_empty(), "throttling failed records: {failures:?}");
    let stats = connector.stats();
    let counters = sim.counters();
    // The bucket starts full (100) and restores 50/s: spending `actual` points takes at least
    // (actual - 100) / 50 seconds.
    let spent = counters.cost_actual as f64;
    let minimum = ((spent - plan.maximum_available) / plan.restore_rate).max(0.0);
    let used = spent / (plan.maximum_available + plan.restore_rate * elapsed);
    println!(
        "burst: {} calls, {} throttled, {spent} points in {elapsed:.2}s (minimum {minimum:.2}s), bucket use {:.0}%, waited {:?}",
        stats.calls,
        stats.throttled,
        used * 100.0,
        stats.waited
    );
    assert!(minimum > 3.0, "the burst must be larger than the bucket to prove anything ({spent} points)");
    assert!(elapsed >= minimum * 0.95, "faster than the bucket allows? {elapsed} < {minimum}");
    assert!(
        elapsed <= minimum * 1.2 + 0.5,
        "the limiter waited too long: {elapsed:.2}s for a minimum of {minimum:.2}s"
    );
    assert!(used >= 0.9, "bucket use {used:.2} is below 90%");
    sim.shutdown().await;
}

#[tokio::test]
async fn throttled_answers_are_waited_out_and_never_fail_a_record() {
    let sim = seeded(0, 1, 0).await;
    let (connector, _dir) = connector(&sim, "");
    sim.set_faults(Faults { throttled: 3, ..Faults::default() });
    let outcomes = connector
        .write_batch(&batch(
            EntityKind::Product,
            "throttled",
            vec![(None, Record::Product(shirt("T1", &["S"]))), (None, Record::Product(shirt("T2", &["S"])))],
        ))
        .await
        .unwrap();
    assert!(outcomes.iter().all(|outcome| matches!(outcome, WriteOutcome::Created { .. })), "{outcomes:?}");
    assert_eq!(connector.stats().throttled, 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_large_catalog_goes_through_a_bulk_operation_with_per_line_outcomes() {
    let sim = seeded(0, 1, 0).await;
    let (connector, _dir) = connector(&sim, "bulk_threshold = 5");
    let mut items: Vec<(Option<String>, Record)> =
        (0..8).map(|n| (None, Record::Product(shirt(&format!("BULK{n}"), &["S", "M"])))).collect();
    let Record::Product(bad) = &mut items[4].1 else { unreachable!() };
    bad.title = String::new();
    let outcomes = connector.write_batch(&batch(EntityKind::Product, "bulk-1", items)).await.unwrap();
    let counters = sim.counters();
    assert_eq!(counters.operations.get("bulkOperationRunMutation"), Some(&1), "{:?}", counters.operations);
    assert_eq!(counters.operations.get("productSet"), None, "no product was written one by one");
    for (index, outcome) in outcomes.iter().enumerate() {
        match (index, outcome) {
            (4, WriteOutcome::Failed(error)) => assert!(error.to_string().contains("title"), "{error}"),
            (4, other) => panic!("the product without a title must fail: {other:?}"),
            (_, WriteOutcome::Created { target_id }) => assert!(target_id.starts_with("gid://shopify/Product/")),
            (_, other) => panic!("line {index}: {other:?}"),
        }
    }
    let (records, ..) = read_all(&connector, EntityKind::Product, &Checkpoint::default(), 8).await;
    assert_eq!(records.len(), 7);
    sim.shutdown().await;
}

#[tokio::test]
async fn webhooks_from_the_shop_verify_and_tampered_ones_do_not() {
    let sim = seeded(3, 1, 0).await;
    let received: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let sink = received.clone();
    let app = Router::new().route(
        "/hooks",
        post(move |headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                let headers = headers
                    .iter()
                    .map(|(name, value)| (name.as_str().to_string(), value.to_str().unwrap_or("").to_string()))
                    .collect();
                sink.lock().unwrap().push((headers, body.to_vec()));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (connector, _dir) = connector(&sim, "");
    assert_eq!(connector.topics(EntityKind::Order), ["ORDERS_CREATE", "ORDERS_UPDATED"]);
    let subscription = connector.register("ORDERS_CREATE", &url).await.unwrap();
    let again = connector.register("orders/create", &url).await.unwrap();
    assert_eq!(again, subscription, "registering twice returns the existing subscription");
    assert_eq!(connector.list().await.unwrap(), vec![subscription.clone()]);

    reqwest::Client::new()
        .post(format!("{}/_sim/orders", sim.base_url()))
        .json(&json!({ "create": 1 }))
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no webhook arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (headers, body) = received.lock().unwrap()[0].clone();
    let delivery = connector.verify(&headers, &body, sim.now()).unwrap();
    assert_eq!(delivery.topic.as_deref(), Some("orders/create"));
    assert!(!delivery.delivery_id.is_empty());
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    assert_eq!(connector.verify(&headers, &tampered, sim.now()).unwrap_err().kind, ErrorKind::Auth);

    connector.remove(&subscription.id).await.unwrap();
    assert!(connector.list().await.unwrap().is_empty());
    let (no_secret, _dir2) = {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), sim.access_token()).unwrap();
        let text = format!(
            "url = \"{}\"\naccess_token = {{ file = \"{}\" }}",
            sim.base_url(),
            dir.path().join("token").display()
        );
        (ShopifyConnector::new("plain", toml::from_str(&text).unwrap()).unwrap(), dir)
    };
    assert!(no_secret.verify(&headers, &body, sim.now()).is_err(), "no secret: every delivery is rejected");
    server.abort();
    sim.shutdown().await;
}

#[tokio::test]
async fn an_injected_server_error_is_retryable_and_a_bad_token_is_not() {
    let sim = seeded(3, 1, 0).await;
    let (connector, _dir) = connector(&sim, "");
    sim.set_faults(Faults { server_errors: 1, ..Faults::default() });
    let request = ReadRequest { entity: EntityKind::Product, checkpoint: &Checkpoint::default(), page_size: 8 };
    let error = connector.read_page(&request).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Unavailable);
    assert!(error.retryable);
    assert!(connector.read_page(&request).await.is_ok(), "the next try succeeds");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "shpat_wrong").unwrap();
    let text =
        format!("url = \"{}\"\naccess_token = {{ file = \"{}\" }}", sim.base_url(), dir.path().join("token").display());
    let wrong = ShopifyConnector::new("wrong", toml::from_str(&text).unwrap()).unwrap();
    let error = wrong.read_page(&request).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Auth);
    assert!(!error.retryable);
    sim.shutdown().await;
}

#[tokio::test]
async fn customers_refunds_and_status_changes_are_read() {
    let sim = seeded(5, 2, 6).await;
    let (connector, _dir) = connector(&sim, "");
    let (customers, ..) = read_all(&connector, EntityKind::Customer, &Checkpoint::default(), 50).await;
    assert_eq!(customers.len(), 5);
    for record in &customers {
        let Record::Customer(customer) = record else { panic!() };
        assert!(customer.email.as_deref().is_some_and(|email| email.contains('@')));
    }
    let (statuses, ..) = read_all(&connector, EntityKind::OrderStatus, &Checkpoint::default(), 50).await;
    assert_eq!(statuses.len(), 6);
    // A refund made in the shop is read as a refund of its order.
    let data =
        graphql(&sim, "{ orders(first: 1) { nodes { id name lineItems(first: 1) { nodes { id sku } } } } }", json!({}))
            .await;
    let order = &data["orders"]["nodes"][0];
    let line = &order["lineItems"]["nodes"][0];
    let refund = graphql(
        &sim,
        "mutation($input: RefundInput!) { refundCreate(input: $input) { refund { id } userErrors { field message } } }",
        json!({ "input": { "orderId": order["id"], "note": "damaged", "refundLineItems": [{ "lineItemId": line["id"], "quantity": 1, "restockType": "NO_RESTOCK" }] } }),
    )
    .await;
    assert!(refund["refundCreate"]["userErrors"].as_array().unwrap().is_empty(), "{refund}");
    let (refunds, ..) = read_all(&connector, EntityKind::Refund, &Checkpoint::default(), 50).await;
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    let Record::Refund(refund) = &refunds[0] else { panic!() };
    assert_eq!(refund.order_number, order["name"].as_str().unwrap());
    assert_eq!(refund.lines[0].sku, line["sku"].as_str().unwrap());
    assert_eq!(refund.reason.as_deref(), Some("damaged"));
    sim.shutdown().await;
}

#[test]
fn the_registry_builds_a_shopify_system() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "shpat_x").unwrap();
    let text = format!(
        "type = \"shopify\"\nurl = \"https://eu-store.myshopify.com\"\naccess_token = {{ file = \"{}\" }}",
        dir.path().join("token").display()
    );
    let config: SystemConfig = toml::from_str(&text).unwrap();
    assert_eq!(config.type_name(), "shopify");
    assert!(config.validate().is_empty());
    assert!(config.build_source("eu").is_ok());
    assert!(config.build_subscriptions("eu").unwrap().is_some());
    assert!(erpsync_connectors::catalog().iter().any(|info| info.name == "shopify"));
}
