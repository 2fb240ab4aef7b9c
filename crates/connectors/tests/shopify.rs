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
    DeleteItem, DeleteMode, ErrorKind, EventRef, ReadRequest, Sink, Source, SystemConfig, WebhookReceiver,
    WebhookSubscriptions, WriteBatch, WriteItem, WriteOutcome,
};
use erpsync_model::{
    Checkpoint, Currency, Document, DocumentKind, EntityKind, FinancialStatus, Money, OptionValue, OrderState,
    OrderStatusChange, OrderTotals, Pdf, PriceEntry, PriceList, Product, ProductOption, Record, Shipment, StockLevel,
    Tracking, Variant,
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
    assert_eq!(pages, 1, "a page holds 12 orders (83 points each, 4 when lines were read 20 at a time)");
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

/// A webhook endpoint in the test: the URL to register and what it received.
async fn hook_receiver() -> (String, Arc<Mutex<Vec<Delivery>>>, tokio::task::JoinHandle<()>) {
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
    (url, received, server)
}

/// Waits until `received` holds a delivery of `topic` and returns it.
async fn delivery_of(received: &Arc<Mutex<Vec<Delivery>>>, topic: &str) -> Delivery {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = received
            .lock()
            .unwrap()
            .iter()
            .find(|(headers, _)| headers.iter().any(|(name, value)| name == "x-shopify-topic" && value == topic))
            .cloned();
        if let Some(found) = found {
            return found;
        }
        assert!(Instant::now() < deadline, "no {topic} webhook arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn order_gids(sim: &RunningSim, count: usize) -> Vec<String> {
    let data = graphql(sim, &format!("{{ orders(first: {count}) {{ nodes {{ id }} }} }}"), json!({})).await;
    data["orders"]["nodes"].as_array().unwrap().iter().map(|node| node["id"].as_str().unwrap().to_string()).collect()
}

fn status_change(number: &str, state: OrderState, note: Option<&str>) -> Record {
    Record::OrderStatus(OrderStatusChange {
        order_number: number.into(),
        state,
        note: note.map(str::to_string),
        ..OrderStatusChange::default()
    })
}

#[tokio::test]
async fn signed_deliveries_decode_to_the_ids_the_source_gives_and_fetch_reads_them() {
    let sim = seeded(3, 1, 2).await;
    let (connector, _dir) = connector(&sim, "");
    let (url, received, server) = hook_receiver().await;
    for topic in ["ORDERS_CREATE", "ORDERS_CANCELLED", "PRODUCTS_UPDATE", "CUSTOMERS_UPDATE", "REFUNDS_CREATE"] {
        connector.register(topic, &url).await.unwrap();
    }
    let control = |path: &str, body: Value| {
        let request = reqwest::Client::new().post(format!("{}{path}", sim.base_url())).json(&body);
        async move { request.send().await.unwrap() }
    };
    control("/_sim/orders", json!({ "create": 1 })).await;
    let product =
        graphql(&sim, "{ products(first: 1) { nodes { id } } }", json!({})).await["products"]["nodes"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
    let customer = graphql(&sim, "{ customers(first: 1) { nodes { id } } }", json!({})).await["customers"]["nodes"][0]
        ["id"]
        .as_str()
        .unwrap()
        .to_string();
    control("/_sim/touch", json!({ "id": product })).await;
    control("/_sim/touch", json!({ "id": customer })).await;

    // orders/create: the order and its status change, with exactly the ids of a page read.
    let (headers, body) = delivery_of(&received, "orders/create").await;
    let delivery = connector.verify(&headers, &body, sim.now()).unwrap();
    let events = connector.decode(delivery.topic.as_deref().unwrap(), &body).unwrap().unwrap();
    let (order_event, status_event) = match events.as_slice() {
        [order, status] => (order.clone(), status.clone()),
        other => panic!("expected an order and its status, got {other:?}"),
    };
    assert_eq!(order_event.entity, EntityKind::Order);
    assert_eq!(status_event.entity, EntityKind::OrderStatus);
    let page = connector
        .read_page(&ReadRequest { entity: EntityKind::OrderStatus, checkpoint: &Checkpoint::default(), page_size: 50 })
        .await
        .unwrap();
    assert!(
        page.records.iter().any(|record| record.source_id == status_event.id),
        "{} is a status id the source gives",
        status_event.id
    );
    let fetched = connector.fetch(EntityKind::Order, std::slice::from_ref(&order_event.id)).await.unwrap();
    let order = fetched[0].as_ref().expect("the new order is fetched");
    assert_eq!(order.source_id, order_event.id);
    let Ok(Record::Order(order_record)) = &order.content else { panic!("{:?}", order.content) };
    let fetched = connector.fetch(EntityKind::OrderStatus, std::slice::from_ref(&status_event.id)).await.unwrap();
    assert_eq!(fetched[0].as_ref().unwrap().source_id, status_event.id);

    // products/update and customers/update name their GIDs.
    let (_, body) = delivery_of(&received, "products/update").await;
    assert_eq!(
        connector.decode("products/update", &body).unwrap().unwrap(),
        vec![EventRef { entity: EntityKind::Product, id: product.clone() }]
    );
    let (_, body) = delivery_of(&received, "customers/update").await;
    assert_eq!(
        connector.decode("customers/update", &body).unwrap().unwrap(),
        vec![EventRef { entity: EntityKind::Customer, id: customer.clone() }]
    );

    // Cancelling from the ERP sends orders/cancelled about the same order. (Status ids have
    // whole seconds: the clock moves on so that the cancellation is a change of its own.)
    sim.advance_clock(Duration::from_secs(5));
    let outcomes = connector
        .write_batch(&batch(
            EntityKind::OrderStatus,
            "c1",
            vec![(None, status_change(&order_record.number, OrderState::Cancelled, Some("customer")))],
        ))
        .await
        .unwrap();
    assert_eq!(created_id(&outcomes[0]), order_event.id);
    let (_, body) = delivery_of(&received, "orders/cancelled").await;
    let events = connector.decode("orders/cancelled", &body).unwrap().unwrap();
    assert_eq!(events[0], order_event);
    assert_ne!(events[1], status_event, "a new status change has a new id");
    let refetched = connector.fetch(EntityKind::OrderStatus, std::slice::from_ref(&events[1].id)).await.unwrap();
    let status = refetched[0].as_ref().unwrap();
    assert_eq!(status.source_id, events[1].id);
    let Ok(Record::OrderStatus(change)) = &status.content else { panic!() };
    assert_eq!(change.state, OrderState::Cancelled);

    // Deliveries about nothing erpsync reads, stock (pull), unknown topics and bad bodies.
    assert_eq!(
        connector
            .decode(
                "bulk_operations/finish",
                br#"{"admin_graphql_api_id":"gid://shopify/BulkOperation/1","status":"completed"}"#
            )
            .unwrap(),
        Some(vec![])
    );
    assert_eq!(
        connector
            .decode("inventory_levels/update", br#"{"inventory_item_id":1,"location_id":2,"available":3}"#)
            .unwrap(),
        None
    );
    assert_eq!(
        connector.decode("products/delete", br#"{"id":788032119674292922}"#).unwrap().unwrap(),
        vec![EventRef { entity: EntityKind::Product, id: "gid://shopify/Product/788032119674292922".into() }]
    );
    assert_eq!(connector.decode("carts/update", b"{}").unwrap_err().kind, ErrorKind::InvalidRequest);
    assert_eq!(connector.decode("orders/create", b"{\"id\": 1").unwrap_err().kind, ErrorKind::InvalidRequest);
    assert_eq!(connector.decode("orders/create", b"{\"name\": \"#1\"}").unwrap_err().kind, ErrorKind::InvalidRequest);
    server.abort();
    sim.shutdown().await;
}

#[tokio::test]
async fn fetch_by_id_reads_like_a_page_and_gives_none_for_deleted_records() {
    let sim = seeded(4, 2, 3).await;
    let (connector, _dir) = connector(&sim, "");
    for entity in [EntityKind::Product, EntityKind::Customer, EntityKind::Order, EntityKind::OrderStatus] {
        assert!(connector.can_fetch(entity), "{entity}");
    }
    assert!(!connector.can_fetch(EntityKind::StockLevel));
    let page = connector
        .read_page(&ReadRequest { entity: EntityKind::Product, checkpoint: &Checkpoint::default(), page_size: 50 })
        .await
        .unwrap();
    let ids: Vec<String> = page.records.iter().map(|record| record.source_id.clone()).collect();
    // Delete one product in the shop, ask for it among the others and for an id of another type.
    let outcomes = connector
        .delete_batch(
            EntityKind::Product,
            &[DeleteItem { target_id: ids[1].clone(), natural_key: None }],
            DeleteMode::Delete,
        )
        .await
        .unwrap();
    assert!(matches!(outcomes[0], WriteOutcome::Updated { .. }));
    let mut asked = ids.clone();
    asked.push("gid://shopify/Customer/1".into());
    let fetched = connector.fetch(EntityKind::Product, &asked).await.unwrap();
    assert_eq!(fetched.len(), asked.len(), "one entry per id");
    assert!(fetched[1].is_none(), "a deleted product is None");
    assert!(fetched[4].is_none(), "a customer id names no product");
    for (index, record) in page.records.iter().enumerate().filter(|(index, _)| *index != 1) {
        let found = fetched[index].as_ref().unwrap();
        assert_eq!(found.source_id, record.source_id);
        assert_eq!(found.content.as_ref().unwrap(), record.content.as_ref().unwrap(), "same fields, same conversion");
    }
    let (customers, ..) = read_all(&connector, EntityKind::Customer, &Checkpoint::default(), 50).await;
    let customer_ids: Vec<String> = customers
        .iter()
        .map(|record| match record {
            Record::Customer(customer) => customer.extra.get("shopify_id").unwrap().as_str().unwrap().to_string(),
            _ => panic!(),
        })
        .collect();
    let fetched = connector.fetch(EntityKind::Customer, &customer_ids).await.unwrap();
    for (record, found) in customers.iter().zip(&fetched) {
        assert_eq!(found.as_ref().unwrap().content.as_ref().unwrap(), record);
    }
    let (orders, ..) = read_all(&connector, EntityKind::Order, &Checkpoint::default(), 50).await;
    let gids = order_gids(&sim, 3).await;
    let fetched = connector.fetch(EntityKind::Order, &gids).await.unwrap();
    for found in &fetched {
        let Ok(Record::Order(order)) = &found.as_ref().unwrap().content else { panic!() };
        assert!(orders.contains(&Record::Order(order.clone())), "{}", order.number);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn orders_cost_a_third_of_before_per_page_and_per_fetched_chunk() {
    let sim = seeded(5, 2, 30).await;
    let (connector, _dir) = connector(&sim, "");
    // A page of orders: 12 fit under the 1000-point cap (they were 4 with 20 lines each).
    let before = connector.stats();
    let page = connector
        .read_page(&ReadRequest { entity: EntityKind::Order, checkpoint: &Checkpoint::default(), page_size: 250 })
        .await
        .unwrap();
    let after = connector.stats();
    assert_eq!(page.records.len(), 12);
    assert_eq!(after.calls - before.calls, 1, "seeded orders have at most 3 lines: no follow-up query");
    let page_cost = after.requested_cost - before.requested_cost;
    assert!(page_cost <= 1000, "{page_cost}");
    let per_order = (page_cost - 3) / 12;
    println!("requested cost of an order page: {page_cost} points, {per_order} per order (221 before)");
    assert_eq!(per_order, 82);

    // Fetching 30 orders by id: chunks of 12, each under the cap.
    let gids = order_gids(&sim, 30).await;
    let before = connector.stats();
    let fetched = connector.fetch(EntityKind::Order, &gids).await.unwrap();
    let after = connector.stats();
    assert!(fetched.iter().all(Option::is_some));
    assert_eq!(after.calls - before.calls, 3);
    let requested = after.requested_cost - before.requested_cost;
    assert_eq!(requested, 3 + 30 * 82, "1 point for shop per chunk, 82 per order");
    println!(
        "fetching 30 orders: {} calls, {requested} points requested, {} actually charged",
        after.calls - before.calls,
        after.actual_cost - before.actual_cost
    );
    sim.shutdown().await;
}

const ORDER_STATE: &str =
    "query($id: ID!) { order(id: $id) { name cancelledAt cancelReason closed displayFinancialStatus } }";

#[tokio::test]
async fn order_status_cancels_and_closes_once() {
    let sim = seeded(3, 1, 3).await;
    let (connector, _dir) = connector(&sim, "");
    let gids = order_gids(&sim, 3).await;
    let name = |gid: &str| {
        let gid = gid.to_string();
        let sim = &sim;
        async move { graphql(sim, ORDER_STATE, json!({ "id": gid })).await["order"]["name"].as_str().unwrap().to_string() }
    };
    let (first, second, third) = (name(&gids[0]).await, name(&gids[1]).await, name(&gids[2]).await);
    let changes = vec![
        (None, status_change(&first, OrderState::Cancelled, Some("inventory"))),
        (None, status_change(second.trim_start_matches('#'), OrderState::Completed, None)),
        (None, status_change("#999999", OrderState::Cancelled, None)),
        (None, status_change(&third, OrderState::Processing, None)),
    ];
    let outcomes = connector.write_batch(&batch(EntityKind::OrderStatus, "s1", changes)).await.unwrap();
    assert_eq!(created_id(&outcomes[0]), gids[0]);
    assert_eq!(created_id(&outcomes[1]), gids[1], "a bare number finds #number");
    let WriteOutcome::Failed(error) = &outcomes[2] else { panic!("an unknown order cannot be cancelled") };
    assert_eq!(error.kind, ErrorKind::NotFound);
    assert!(error.retryable, "the order may not have reached the shop yet");
    assert_eq!(created_id(&outcomes[3]), gids[2], "processing is what Shopify derives: nothing to send");
    let cancelled = graphql(&sim, ORDER_STATE, json!({ "id": gids[0] })).await;
    assert_eq!(cancelled["order"]["cancelReason"], "INVENTORY");
    assert!(cancelled["order"]["cancelledAt"].is_string());
    assert_eq!(graphql(&sim, ORDER_STATE, json!({ "id": gids[1] })).await["order"]["closed"], true);

    // Again, through the links: nothing is sent twice, and a cancelled order is not reopened.
    let before = sim.counters().mutations;
    let again = vec![
        (Some(gids[0].clone()), status_change(&first, OrderState::Cancelled, Some("inventory"))),
        (Some(format!("{}@2026-01-01T00:00:00Z", gids[1])), status_change(&second, OrderState::Completed, None)),
        (Some(gids[0].clone()), status_change(&first, OrderState::Open, None)),
    ];
    let outcomes = connector.write_batch(&batch(EntityKind::OrderStatus, "s2", again)).await.unwrap();
    assert!(matches!(&outcomes[0], WriteOutcome::Updated { target_id } if *target_id == gids[0]));
    assert!(matches!(&outcomes[1], WriteOutcome::Updated { target_id } if *target_id == gids[1]));
    let WriteOutcome::Failed(error) = &outcomes[2] else { panic!("reopening is refused") };
    assert_eq!(error.kind, ErrorKind::Conflict);
    assert_eq!(sim.counters().mutations, before, "an order already cancelled or closed gets no mutation");
    sim.shutdown().await;
}

#[tokio::test]
async fn documents_become_metafields_of_their_order() {
    let sim = seeded(3, 1, 2).await;
    let (connector, _dir) = connector(&sim, "document_namespace = \"erp_docs\"");
    let gids = order_gids(&sim, 1).await;
    let number =
        graphql(&sim, ORDER_STATE, json!({ "id": gids[0] })).await["order"]["name"].as_str().unwrap().to_string();
    let invoice = Document {
        kind: DocumentKind::Invoice,
        number: "INV-2026-0042".into(),
        order_number: Some(number.clone()),
        issued_at: Some("2026-03-04T10:00:00Z".parse().unwrap()),
        currency: Currency::EUR,
        totals: OrderTotals { total: Decimal::new(2490, 2), ..OrderTotals::default() },
        pdf: Some(Pdf::Url { url: "https://erp.example.com/invoices/INV-2026-0042.pdf".into() }),
        ..Document::default()
    };
    let note = Document {
        kind: DocumentKind::DeliveryNote,
        number: "DN-7".into(),
        order_number: Some(number.clone()),
        pdf: Some(Pdf::Url { url: "not a url".into() }),
        ..Document::default()
    };
    let orphan = Document { number: "INV-X".into(), ..Document::default() };
    let items = vec![
        (None, Record::Document(invoice.clone())),
        (None, Record::Document(note)),
        (None, Record::Document(orphan)),
    ];
    let outcomes = connector.write_batch(&batch(EntityKind::Document, "d1", items)).await.unwrap();
    assert_eq!(created_id(&outcomes[0]), format!("{}#invoice", gids[0]));
    let WriteOutcome::Failed(error) = &outcomes[1] else { panic!("a bad URL is refused by Shopify") };
    assert!(error.message.contains("delivery_note_url"), "{error}");
    let WriteOutcome::Failed(error) = &outcomes[2] else { panic!("a document without an order cannot be attached") };
    assert!(error.message.starts_with("order_number"), "{error}");
    let read = "query($id: ID!) { order(id: $id) { metafields(first: 20, namespace: \"erp_docs\") { nodes { key type value } } } }";
    let metafields = graphql(&sim, read, json!({ "id": gids[0] })).await;
    let by_key: HashMap<String, (String, String)> = metafields["order"]["metafields"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| {
            (
                node["key"].as_str().unwrap().to_string(),
                (node["type"].as_str().unwrap().to_string(), node["value"].as_str().unwrap().to_string()),
            )
        })
        .collect();
    assert_eq!(by_key.len(), 4, "the refused delivery note saved nothing: {by_key:?}");
    assert_eq!(by_key["invoice_number"], ("single_line_text_field".into(), "INV-2026-0042".into()));
    assert_eq!(by_key["invoice_date"], ("date".into(), "2026-03-04".into()));
    let total: Value = serde_json::from_str(&by_key["invoice_total"].1).unwrap();
    assert_eq!(total, json!({ "amount": "24.90", "currency_code": "EUR" }));
    assert_eq!(by_key["invoice_url"].0, "url");

    // A corrected invoice through its link replaces the values.
    let corrected = Document { number: "INV-2026-0042-B".into(), ..invoice };
    let outcomes = connector
        .write_batch(&batch(
            EntityKind::Document,
            "d2",
            vec![(Some(format!("{}#invoice", gids[0])), Record::Document(corrected))],
        ))
        .await
        .unwrap();
    assert!(matches!(outcomes[0], WriteOutcome::Updated { .. }));
    let metafields = graphql(&sim, read, json!({ "id": gids[0] })).await;
    let numbers: Vec<&str> = metafields["order"]["metafields"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|node| node["key"] == "invoice_number")
        .map(|node| node["value"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, ["INV-2026-0042-B"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn deleted_products_are_archived_or_deleted_in_the_shop() {
    let sim = seeded(3, 1, 0).await;
    let (connector, _dir) = connector(&sim, "");
    assert!(Sink::capabilities(&connector, EntityKind::Product).delete);
    let data = graphql(&sim, "{ products(first: 3) { nodes { id } } }", json!({})).await;
    let ids: Vec<String> = data["products"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| node["id"].as_str().unwrap().to_string())
        .collect();
    let item = |id: &str| DeleteItem { target_id: id.to_string(), natural_key: Some(format!("P-{id}")) };
    let archived = connector
        .delete_batch(
            EntityKind::Product,
            &[item(&ids[0]), item("gid://shopify/Product/999999"), item("SKU-1")],
            DeleteMode::Archive,
        )
        .await
        .unwrap();
    assert!(matches!(&archived[0], WriteOutcome::Updated { target_id } if *target_id == ids[0]));
    let WriteOutcome::Failed(error) = &archived[1] else { panic!("an unknown product cannot be archived") };
    assert_eq!(error.kind, ErrorKind::NotFound);
    let WriteOutcome::Failed(error) = &archived[2] else { panic!("not a product id") };
    assert_eq!(error.kind, ErrorKind::InvalidRequest);
    let product = graphql(
        &sim,
        "query($id: ID!) { product(id: $id) { status variants(first: 5) { nodes { id } } } }",
        json!({ "id": ids[0] }),
    )
    .await;
    assert_eq!(product["product"]["status"], "ARCHIVED");
    assert_eq!(product["product"]["variants"]["nodes"].as_array().unwrap().len(), 1, "archiving keeps the variants");

    let deleted =
        connector.delete_batch(EntityKind::Product, &[item(&ids[1]), item(&ids[1])], DeleteMode::Delete).await.unwrap();
    assert!(
        deleted.iter().all(|outcome| matches!(outcome, WriteOutcome::Updated { .. })),
        "a product already gone counts as deleted"
    );
    let node = graphql(&sim, "query($id: ID!) { node(id: $id) { id } }", json!({ "id": ids[1] })).await;
    assert!(node["node"].is_null());
    let ignored = connector.delete_batch(EntityKind::Product, &[item(&ids[2])], DeleteMode::Ignore).await.unwrap();
    assert!(matches!(ignored[0], WriteOutcome::Failed(_)));
    assert_eq!(
        graphql(&sim, "query($id: ID!) { product(id: $id) { status } }", json!({ "id": ids[2] })).await["product"]["status"],
        "ACTIVE"
    );
    sim.shutdown().await;
}

/// Order webhooks carry the REST Order resource; the record made of that body is exactly the
/// record a read of the order gives at that moment (same GID, same content, so the same
/// hash), for new orders with and without discounts and for a cancelled one. Bodies that are
/// not a whole order give none.
#[tokio::test]
async fn an_order_webhook_body_is_the_record_a_read_gives() {
    let sim = seeded(4, 2, 0).await;
    let (connector, _dir) = connector(&sim, "");
    let (url, received, server) = hook_receiver().await;
    for topic in ["ORDERS_CREATE", "ORDERS_CANCELLED"] {
        connector.register(topic, &url).await.unwrap();
    }
    let created = reqwest::Client::new()
        .post(format!("{}/_sim/orders", sim.base_url()))
        .json(&json!({ "create": 12, "seed": 3 }))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let gids: Vec<String> =
        created["created"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_string()).collect();
    assert_eq!(gids.len(), 12);
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.lock().unwrap().len() < 12 {
        assert!(Instant::now() < deadline, "not every orders/create webhook arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bodies: Vec<Delivery> = received.lock().unwrap().drain(..).collect();
    let fetched = connector.fetch(EntityKind::Order, &gids).await.unwrap();
    let (mut discounted, mut paid) = (0, 0);
    for (headers, body) in &bodies {
        let topic = &headers.iter().find(|(name, _)| name == "x-shopify-topic").unwrap().1;
        let from_body =
            connector.body_record(EntityKind::Order, topic, body).expect("an orders/create body is an order");
        let read = fetched
            .iter()
            .flatten()
            .find(|record| record.source_id == from_body.source_id)
            .unwrap_or_else(|| panic!("{} was not read", from_body.source_id));
        let (Ok(Record::Order(body_order)), Ok(Record::Order(read_order))) = (&from_body.content, &read.content) else {
            panic!("{:?} / {:?}", from_body.content, read.content)
        };
        assert_eq!(body_order, read_order, "the body and the read of {} differ", read.source_id);
        assert_eq!(Record::Order(body_order.clone()).content_hash(), Record::Order(read_order.clone()).content_hash());
        assert!(!body_order.lines.is_empty(), "{body_order:?}");
        assert_eq!(body_order.payments.is_empty(), body_order.financial_status == FinancialStatus::Pending);
        discounted += usize::from(!body_order.discounts.is_empty());
        paid += usize::from(!body_order.payments.is_empty());
    }
    assert!(discounted > 0, "some orders have a discount code, so discounts are compared too");
    assert!(paid > 0, "some orders are paid, so payments are compared too");

    // Cancelled in the shop: the orders/cancelled body is the cancelled order as read.
    sim.advance_clock(Duration::from_secs(5));
    let number = match &fetched[0].as_ref().unwrap().content {
        Ok(Record::Order(order)) => order.number.clone(),
        other => panic!("{other:?}"),
    };
    connector
        .write_batch(&batch(
            EntityKind::OrderStatus,
            "c1",
            vec![(None, status_change(&number, OrderState::Cancelled, Some("customer")))],
        ))
        .await
        .unwrap();
    let (_, body) = delivery_of(&received, "orders/cancelled").await;
    let from_body = connector.body_record(EntityKind::Order, "orders/cancelled", &body).unwrap();
    let read = connector.fetch(EntityKind::Order, std::slice::from_ref(&from_body.source_id)).await.unwrap();
    let read = read[0].as_ref().unwrap();
    assert_eq!(from_body.content, read.content);
    let Ok(Record::Order(cancelled)) = &from_body.content else { panic!() };
    assert!(cancelled.cancellation.is_some(), "{cancelled:?}");

    // Not a whole order: no record (the engine fetches instead).
    assert!(connector.body_record(EntityKind::Order, "orders/delete", br#"{"id": 5}"#).is_none());
    assert!(connector.body_record(EntityKind::Order, "orders/create", br#"{"id": 5}"#).is_none());
    assert!(connector.body_record(EntityKind::Order, "orders/create", b"{not json").is_none());
    assert!(connector.body_record(EntityKind::OrderStatus, "orders/create", &body).is_none());
    assert!(connector.body_record(EntityKind::Product, "products/update", br#"{"id": 5}"#).is_none());
    server.abort();
    sim.shutdown().await;
}
