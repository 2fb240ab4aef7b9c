//! The `woocommerce` connector against the WooCommerce simulator (plain HTTP, so OAuth 1.0a
//! signs every request): each entity in the directions it supports, incremental reads at their
//! boundary, batches with per-item failures, stock by SKU, order status and shipments with their
//! notes, faults, and webhooks from subscription to verification.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use erpsync_connectors::woocommerce::{WooConfig, WooConnector};
use erpsync_connectors::{
    ErrorKind, ReadRequest, Sink, Source, WebhookReceiver, WebhookSubscriptions, WriteBatch, WriteItem, WriteOutcome,
};
use erpsync_model::{
    Address, AddressKind, Checkpoint, Currency, Customer, EntityKind, Money, OptionValue, OrderState,
    OrderStatusChange, Product, ProductOption, Record, Shipment, StockLevel, Tracking, Variant,
};
use erpsync_sim::woocommerce::server::Checkout;
use erpsync_sim::woocommerce::{
    Faults, RunningWooSim, SeedConfig, WooSim, WooSimConfig, oauth_base_string, oauth_signature,
};
use rust_decimal::Decimal;
use serde_json::{Value, json};

struct Harness {
    sim: RunningWooSim,
    connector: WooConnector,
    _secrets: tempfile::TempDir,
}

fn sim_config(seed: Option<SeedConfig>) -> WooSimConfig {
    // The simulated clock stands still ten minutes in the past: OAuth timestamps (from the real
    // clock) stay inside WooCommerce's 15-minute window while tests move it forward a few
    // minutes, and every record time stays before the connector's own "now".
    WooSimConfig {
        clock_start: chrono::Utc::now() - chrono::Duration::minutes(10),
        clock_scale: 0.0,
        seed,
        ..WooSimConfig::default()
    }
}

async fn harness_with(config: WooSimConfig, extra_toml: &str) -> Harness {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = WooSim::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = sim.key().clone();
    for (name, value) in
        [("key", key.consumer_key.as_str()), ("secret", key.consumer_secret.as_str()), ("hook", "whsec-test")]
    {
        std::fs::write(dir.path().join(name), value).unwrap();
    }
    let path = |name: &str| dir.path().join(name).display().to_string();
    let text = format!(
        "url = \"{}\"\nconsumer_key = {{ file = \"{}\" }}\nconsumer_secret = {{ file = \"{}\" }}\nwebhook_secret = {{ file = \"{}\" }}\ncurrency = \"EUR\"\n{extra_toml}",
        sim.base_url(),
        path("key"),
        path("secret"),
        path("hook"),
    );
    let config: WooConfig = toml::from_str(&text).unwrap();
    let connector = WooConnector::new("shop", config).unwrap();
    Harness { sim, connector, _secrets: dir }
}

async fn harness(seed: Option<SeedConfig>) -> Harness {
    harness_with(sim_config(seed), "").await
}

/// Reads every page of `entity` from `checkpoint`; the records and the final checkpoint.
async fn read_all(
    connector: &WooConnector,
    entity: EntityKind,
    checkpoint: Checkpoint,
    page_size: usize,
) -> (Vec<Record>, Checkpoint) {
    let mut checkpoint = checkpoint;
    let mut records = Vec::new();
    for _ in 0..1000 {
        let page = connector.read_page(&ReadRequest { entity, checkpoint: &checkpoint, page_size }).await.unwrap();
        for record in page.records {
            records.push(record.content.unwrap_or_else(|problem| panic!("{}: {}", problem.message, problem.raw)));
        }
        checkpoint = page.checkpoint;
        if page.done {
            return (records, checkpoint);
        }
    }
    panic!("no end after 1000 pages");
}

/// A request to the simulator outside the connector (test setup), signed with OAuth 1.0a.
async fn sim_call(sim: &RunningWooSim, method: &str, path: &str, body: Option<Value>) -> Value {
    let key = sim.key().clone();
    let url = format!("{}{path}", sim.api_url());
    let nonce = format!("setup-{}", rand_suffix());
    let params = vec![
        ("oauth_consumer_key".to_string(), key.consumer_key.clone()),
        ("oauth_nonce".to_string(), nonce),
        ("oauth_signature_method".to_string(), "HMAC-SHA1".to_string()),
        ("oauth_timestamp".to_string(), chrono::Utc::now().timestamp().to_string()),
    ];
    let signature =
        oauth_signature("HMAC-SHA1", &key.consumer_secret, &oauth_base_string(method, &url, &params)).unwrap();
    let mut target = reqwest::Url::parse(&url).unwrap();
    target.query_pairs_mut().extend_pairs(params.iter()).append_pair("oauth_signature", &signature);
    let mut request = reqwest::Client::new().request(method.parse().unwrap(), target);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let value: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status} {value}");
    value
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) + std::process::id() as u64 * 1_000_000
}

fn eur(cents: i64) -> Money {
    Money::new(Decimal::new(cents, 2), Currency::EUR)
}

fn simple(sku: &str, title: &str, cents: i64) -> Product {
    Product {
        code: sku.into(),
        title: title.into(),
        variants: vec![Variant {
            sku: sku.into(),
            price: Some(eur(cents)),
            track_inventory: true,
            ..Variant::default()
        }],
        ..Product::default()
    }
}

fn variable(code: &str, sizes: &[&str]) -> Product {
    Product {
        code: code.into(),
        title: format!("Shirt {code}"),
        options: vec![ProductOption { name: "Size".into(), values: sizes.iter().map(|s| s.to_string()).collect() }],
        variants: sizes
            .iter()
            .map(|size| Variant {
                sku: format!("{code}-{size}"),
                options: vec![OptionValue { option: "Size".into(), value: size.to_string() }],
                price: Some(eur(2500)),
                compare_at_price: Some(eur(3000)),
                track_inventory: true,
                ..Variant::default()
            })
            .collect(),
        ..Product::default()
    }
}

fn batch(entity: EntityKind, records: Vec<(Option<String>, Record)>) -> WriteBatch {
    WriteBatch {
        entity,
        batch_id: format!("test-{}", rand_suffix()),
        items: records
            .into_iter()
            .map(|(target_id, record)| WriteItem { target_id, natural_key: record.natural_key().unwrap(), record })
            .collect(),
    }
}

fn target(outcome: &WriteOutcome) -> String {
    match outcome {
        WriteOutcome::Created { target_id } | WriteOutcome::Updated { target_id } => target_id.clone(),
        WriteOutcome::Failed(error) => panic!("failed: {error}"),
    }
}

#[tokio::test]
async fn reads_variable_products_as_one_product_with_variants_by_sku() {
    let seed = SeedConfig {
        simple_products: 5,
        variable_products: 3,
        variations_per_product: 3,
        customers: 0,
        orders: 0,
        seed: 7,
    };
    let h = harness(Some(seed)).await;
    let (records, checkpoint) = read_all(&h.connector, EntityKind::Product, Checkpoint::default(), 3).await;
    assert_eq!(records.len(), 8);
    assert!(checkpoint.watermark.is_some() && checkpoint.cursor.is_none());
    let products: Vec<&Product> = records
        .iter()
        .map(|r| match r {
            Record::Product(p) => p,
            _ => unreachable!(),
        })
        .collect();
    let variable: Vec<&&Product> = products.iter().filter(|p| p.variants.len() > 1).collect();
    assert_eq!(variable.len(), 3);
    let shirt = variable[0];
    assert_eq!(shirt.options[0].name, "Size");
    assert_eq!(shirt.variants.len(), 3);
    for variant in &shirt.variants {
        assert!(variant.sku.starts_with(&format!("{}-", shirt.code)), "{} / {}", shirt.code, variant.sku);
        assert_eq!(variant.options[0].option, "Size");
        assert_eq!(variant.price.as_ref().unwrap().currency, Currency::EUR);
        assert!(variant.track_inventory);
    }
    // What the simulator holds, variation by variation.
    let expected: Vec<(String, String)> = h.sim.with_store(|store| {
        let parent = store.products.values().find(|p| p.sku == shirt.code).unwrap();
        let mut v: Vec<(String, String)> = parent
            .variations
            .iter()
            .map(|id| (store.variations[id].sku.clone(), store.variations[id].regular_price.clone()))
            .collect();
        v.sort();
        v
    });
    let got: Vec<(String, String)> =
        shirt.variants.iter().map(|v| (v.sku.clone(), v.price.as_ref().unwrap().amount.to_string())).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn incremental_reads_take_only_changes_and_keep_records_sharing_a_second() {
    let h = harness_with(sim_config(None), "overlap = \"10s\"\n").await;
    // Seven products modified in the same second, read two per page: each exactly once.
    let products: Vec<Record> =
        (1..=7).map(|n| Record::Product(simple(&format!("S-{n}"), "Same second", 100 * n))).collect();
    let outcomes = h
        .connector
        .write_batch(&batch(EntityKind::Product, products.into_iter().map(|r| (None, r)).collect()))
        .await
        .unwrap();
    let (records, first) = read_all(&h.connector, EntityKind::Product, Checkpoint::default(), 2).await;
    let codes: Vec<String> = records.iter().map(|r| r.natural_key().unwrap()).collect();
    assert_eq!(codes, ["S-1", "S-2", "S-3", "S-4", "S-5", "S-6", "S-7"], "ordered by (modified, id), none twice");
    assert_eq!(first.watermark, Some(h.sim.now()));
    let touch = |n: usize| {
        let id: u64 = target(&outcomes[n - 1]).parse().unwrap();
        let now = h.sim.now();
        h.sim.with_store(|store| store.products.get_mut(&id).unwrap().date_modified = now);
    };
    // Two minutes later S-4 changes: the run reads it (and, within the overlap, the boundary).
    h.sim.advance_clock(Duration::from_secs(120));
    touch(4);
    let (records, second) = read_all(&h.connector, EntityKind::Product, first, 2).await;
    assert_eq!(records.last().unwrap().natural_key().unwrap(), "S-4");
    assert_eq!(second.watermark, Some(h.sim.now()));
    // Two minutes later S-5 changes: only what changed since the watermark minus the overlap.
    h.sim.advance_clock(Duration::from_secs(120));
    touch(5);
    let (records, third) = read_all(&h.connector, EntityKind::Product, second, 2).await;
    let codes: Vec<String> = records.iter().map(|r| r.natural_key().unwrap()).collect();
    assert_eq!(codes, ["S-4", "S-5"]);
    // Nothing changed: only the boundary record is read again.
    let (records, _) = read_all(&h.connector, EntityKind::Product, third, 2).await;
    assert_eq!(records.iter().map(|r| r.natural_key().unwrap()).collect::<Vec<_>>(), ["S-5"]);
}

#[tokio::test]
async fn writes_products_in_batches_links_by_sku_and_syncs_variations() {
    let h = harness(None).await;
    let first = vec![
        (None, Record::Product(simple("MUG-1", "Mug", 1250))),
        (None, Record::Product(variable("TEE", &["S", "M", "L"]))),
    ];
    let outcomes = h.connector.write_batch(&batch(EntityKind::Product, first)).await.unwrap();
    assert!(matches!(outcomes[0], WriteOutcome::Created { .. }) && matches!(outcomes[1], WriteOutcome::Created { .. }));
    let tee_id: u64 = target(&outcomes[1]).parse().unwrap();
    let (skus, regular, sale) = h.sim.with_store(|s| {
        let tee = &s.products[&tee_id];
        let v = &s.variations[&tee.variations[0]];
        (
            tee.variations.iter().map(|id| s.variations[id].sku.clone()).collect::<Vec<_>>(),
            v.regular_price.clone(),
            v.sale_price.clone(),
        )
    });
    assert_eq!(skus, ["TEE-S", "TEE-M", "TEE-L"]);
    assert_eq!(
        (regular.as_str(), sale.as_str()),
        ("30.00", "25.00"),
        "compare-at is the regular price, price the sale"
    );
    // A first sync elsewhere finds both by SKU.
    let found = h.connector.lookup(EntityKind::Product, &["MUG-1".into(), "TEE".into(), "NOPE".into()]).await.unwrap();
    assert_eq!(found, [Some(target(&outcomes[0])), Some(tee_id.to_string()), None]);
    // An update drops L and adds XL; the product keeps its id.
    let update = vec![(Some(tee_id.to_string()), Record::Product(variable("TEE", &["S", "M", "XL"])))];
    let outcomes = h.connector.write_batch(&batch(EntityKind::Product, update)).await.unwrap();
    assert!(matches!(&outcomes[0], WriteOutcome::Updated { target_id } if *target_id == tee_id.to_string()));
    let mut skus = h.sim.with_store(|s| {
        s.products[&tee_id].variations.iter().map(|id| s.variations[id].sku.clone()).collect::<Vec<_>>()
    });
    skus.sort();
    assert_eq!(skus, ["TEE-M", "TEE-S", "TEE-XL"]);
    // Images go with the creation only: an update does not make WooCommerce download them again.
    let mut pictured = simple("PIC-1", "Pictured", 700);
    pictured.images =
        vec![erpsync_model::Image { url: "https://images.example.com/pic.jpg".into(), ..Default::default() }];
    let outcomes = h
        .connector
        .write_batch(&batch(EntityKind::Product, vec![(None, Record::Product(pictured.clone()))]))
        .await
        .unwrap();
    let pic_id: u64 = target(&outcomes[0]).parse().unwrap();
    let image_id = || h.sim.with_store(|s| s.products[&pic_id].images.iter().map(|i| i.id).collect::<Vec<_>>());
    let before = image_id();
    assert_eq!(before.len(), 1);
    pictured.title = "Pictured, renamed".into();
    h.connector
        .write_batch(&batch(EntityKind::Product, vec![(Some(pic_id.to_string()), Record::Product(pictured))]))
        .await
        .unwrap();
    assert_eq!(image_id(), before);
    assert_eq!(h.sim.with_store(|s| s.products[&pic_id].name.clone()), "Pictured, renamed");
    // 150 simple products: two batch requests of at most 100.
    let counters_before = h.sim.counters().batch_requests;
    let many: Vec<(Option<String>, Record)> =
        (0..150).map(|n| (None, Record::Product(simple(&format!("BULK-{n:03}"), "Bulk", 500 + n)))).collect();
    let outcomes = h.connector.write_batch(&batch(EntityKind::Product, many)).await.unwrap();
    assert_eq!(outcomes.iter().filter(|o| matches!(o, WriteOutcome::Created { .. })).count(), 150);
    assert_eq!(h.sim.counters().batch_requests - counters_before, 2);
    // And reading them back gives the same products.
    let (records, _) = read_all(&h.connector, EntityKind::Product, Checkpoint::default(), 100).await;
    let tee = records
        .iter()
        .find_map(|r| match r {
            Record::Product(p) if p.code == "TEE" => Some(p),
            _ => None,
        })
        .unwrap();
    assert_eq!(tee.variants.iter().map(|v| v.sku.as_str()).collect::<Vec<_>>(), ["TEE-M", "TEE-S", "TEE-XL"]);
    assert_eq!(tee.variants[0].compare_at_price, Some(eur(3000)));
}

#[tokio::test]
async fn per_item_batch_failures_are_isolated_and_typed() {
    let h = harness(None).await;
    h.connector
        .write_batch(&batch(EntityKind::Product, vec![(None, Record::Product(simple("TAKEN", "Taken", 100)))]))
        .await
        .unwrap();
    let items = vec![
        (None, Record::Product(simple("OK-1", "Fine", 100))),
        (None, Record::Product(simple("TAKEN", "Duplicate SKU", 100))),
        (
            None,
            Record::Product(Product {
                variants: vec![Variant {
                    sku: "USD-1".into(),
                    price: Some(Money::new(Decimal::ONE, "USD".parse().unwrap())),
                    ..Variant::default()
                }],
                code: "USD-1".into(),
                title: "Dollars".into(),
                ..Product::default()
            }),
        ),
        (None, Record::Product(simple("OK-2", "Fine", 200))),
    ];
    let outcomes = h.connector.write_batch(&batch(EntityKind::Product, items)).await.unwrap();
    assert!(matches!(outcomes[0], WriteOutcome::Created { .. }));
    match &outcomes[1] {
        WriteOutcome::Failed(error) => {
            assert_eq!(error.kind, ErrorKind::Conflict);
            assert!(!error.retryable);
            assert!(
                error.to_string().contains("product_invalid_sku") && error.to_string().contains("TAKEN"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    match &outcomes[2] {
        WriteOutcome::Failed(error) => assert!(error.message.contains("USD") && !error.retryable, "{error}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(outcomes[3], WriteOutcome::Created { .. }));
    // A transient failure of one item is retryable, the others are written.
    h.sim.set_faults(Faults { batch_item_failures: 1, ..Faults::default() });
    let items =
        vec![(None, Record::Product(simple("T-1", "T", 100))), (None, Record::Product(simple("T-2", "T", 100)))];
    let outcomes = h.connector.write_batch(&batch(EntityKind::Product, items)).await.unwrap();
    match &outcomes[0] {
        WriteOutcome::Failed(error) => assert!(error.retryable && error.kind == ErrorKind::Unavailable, "{error}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(outcomes[1], WriteOutcome::Created { .. }));
}

#[tokio::test]
async fn stock_levels_are_written_by_sku_on_products_and_variations() {
    let h = harness_with(sim_config(None), "stock_location = \"MAIN\"\n").await;
    let outcomes = h
        .connector
        .write_batch(&batch(
            EntityKind::Product,
            vec![
                (None, Record::Product(simple("CAP", "Cap", 900))),
                (None, Record::Product(variable("HOOD", &["S", "M"]))),
            ],
        ))
        .await
        .unwrap();
    let (cap_id, hood_id): (u64, u64) = (target(&outcomes[0]).parse().unwrap(), target(&outcomes[1]).parse().unwrap());
    let level = |sku: &str, location: &str, quantity: i64| {
        Record::StockLevel(StockLevel {
            sku: sku.into(),
            location: location.into(),
            available: Decimal::from(quantity),
            ..StockLevel::default()
        })
    };
    let keys = ["CAP@MAIN".to_string(), "HOOD-M@MAIN".to_string()];
    let found = h.connector.lookup(EntityKind::StockLevel, &keys).await.unwrap();
    assert_eq!(found[0].as_deref(), Some(format!("product:{cap_id}").as_str()));
    assert!(found[1].as_deref().unwrap().starts_with(&format!("variation:{hood_id}:")));
    let items = vec![
        (None, level("CAP", "MAIN", 12)),
        (found[1].clone(), level("HOOD-M", "MAIN", 4)),
        (None, level("HOOD-S", "MAIN", 0)),
        (None, level("CAP", "OUTLET", 99)),
        (None, level("GHOST", "MAIN", 1)),
    ];
    let outcomes = h.connector.write_batch(&batch(EntityKind::StockLevel, items)).await.unwrap();
    assert_eq!(target(&outcomes[0]), format!("product:{cap_id}"));
    assert!(target(&outcomes[1]).starts_with("variation:"));
    assert!(target(&outcomes[2]).starts_with("variation:"));
    match &outcomes[3] {
        WriteOutcome::Failed(error) => assert!(error.message.contains("stock_location") && !error.retryable, "{error}"),
        other => panic!("{other:?}"),
    }
    match &outcomes[4] {
        WriteOutcome::Failed(error) => assert_eq!(error.kind, ErrorKind::NotFound),
        other => panic!("{other:?}"),
    }
    let (cap, m, s) = h.sim.with_store(|store| {
        let find = |sku: &str| {
            store.variations.values().find(|v| v.sku == sku).map(|v| (v.stock_quantity, v.stock_status.clone()))
        };
        (store.products[&cap_id].stock_quantity, find("HOOD-M").unwrap(), find("HOOD-S").unwrap())
    });
    assert_eq!(cap, Some(12));
    assert_eq!(m, (Some(4), "instock".into()));
    assert_eq!(s, (Some(0), "outofstock".into()));
}

#[tokio::test]
async fn customers_both_ways_matching_by_email() {
    let seed =
        SeedConfig { simple_products: 0, variable_products: 0, customers: 3, orders: 0, ..SeedConfig::default() };
    let h = harness(Some(seed)).await;
    let (records, _) = read_all(&h.connector, EntityKind::Customer, Checkpoint::default(), 2).await;
    assert_eq!(records.len(), 3);
    let Record::Customer(existing) = &records[0] else { unreachable!() };
    let email = existing.email.clone().unwrap();
    assert!(existing.addresses.iter().any(|a| a.kind == AddressKind::Billing));
    let new = Customer {
        email: Some("new.buyer@example.com".into()),
        first_name: Some("New".into()),
        last_name: Some("Buyer".into()),
        number: Some("C-1001".into()),
        addresses: vec![Address {
            kind: AddressKind::Both,
            line1: "1 Road".into(),
            city: "Graz".into(),
            country: "AT".into(),
            ..Address::default()
        }],
        ..Customer::default()
    };
    let found = h
        .connector
        .lookup(EntityKind::Customer, &[email.clone(), "new.buyer@example.com".into(), "C-77".into()])
        .await
        .unwrap();
    assert!(found[0].is_some() && found[1].is_none() && found[2].is_none());
    let mut renamed = existing.clone();
    renamed.first_name = Some("Renamed".into());
    let outcomes = h
        .connector
        .write_batch(&batch(
            EntityKind::Customer,
            vec![(None, Record::Customer(new.clone())), (found[0].clone(), Record::Customer(renamed))],
        ))
        .await
        .unwrap();
    assert!(matches!(outcomes[0], WriteOutcome::Created { .. }));
    assert!(matches!(outcomes[1], WriteOutcome::Updated { .. }));
    // Creating the same e-mail again fails alone, as a conflict.
    let outcomes =
        h.connector.write_batch(&batch(EntityKind::Customer, vec![(None, Record::Customer(new))])).await.unwrap();
    match &outcomes[0] {
        WriteOutcome::Failed(error) => assert_eq!((error.kind, error.retryable), (ErrorKind::Conflict, false)),
        other => panic!("{other:?}"),
    }
    let (records, _) = read_all(&h.connector, EntityKind::Customer, Checkpoint::default(), 100).await;
    let created = records
        .iter()
        .find_map(|r| match r {
            Record::Customer(c) if c.email.as_deref() == Some("new.buyer@example.com") => Some(c),
            _ => None,
        })
        .unwrap();
    assert_eq!(created.addresses.len(), 2, "both billing and shipping come from the one address");
    assert!(records.iter().any(|r| matches!(r, Record::Customer(c) if c.first_name.as_deref() == Some("Renamed"))));
}

#[tokio::test]
async fn orders_and_refunds_are_read_with_totals_and_states() {
    let seed =
        SeedConfig { simple_products: 3, variable_products: 1, customers: 1, orders: 0, ..SeedConfig::default() };
    let h = harness(Some(seed)).await;
    let email = h.sim.with_store(|s| s.customers.values().next().unwrap().email.clone());
    let order = h
        .sim
        .checkout(&Checkout {
            email: email.clone(),
            lines: vec![("SIM-1".into(), 2), ("SIM-2".into(), 1)],
            coupon: Some("save10".into()),
            payment_method: "sim_card".into(),
            shipping_cents: 490,
        })
        .unwrap();
    let (records, checkpoint) = read_all(&h.connector, EntityKind::Order, Checkpoint::default(), 10).await;
    assert_eq!(records.len(), 1);
    let Record::Order(read) = &records[0] else { unreachable!() };
    assert_eq!(read.number, order["number"].as_str().unwrap());
    assert_eq!(read.customer.email.as_deref(), Some(email.as_str()));
    assert_eq!(read.lines.len(), 2);
    assert_eq!(read.totals.total.to_string(), order["total"].as_str().unwrap());
    let lines_total: Decimal = read.lines.iter().map(|l| l.total).sum();
    assert_eq!(lines_total + read.totals.shipping_total + read.totals.tax_total, read.totals.total);
    assert_eq!(read.discounts[0].code.as_deref(), Some("save10"));
    assert_eq!(read.financial_status, erpsync_model::FinancialStatus::Paid);
    // A refund updates the order; both the order and the refund come with the next run.
    h.sim.advance_clock(Duration::from_secs(120));
    let id = order["id"].as_u64().unwrap();
    let item = order["line_items"][0]["id"].as_u64().unwrap();
    sim_call(&h.sim, "POST", &format!("/orders/{id}/refunds"), Some(json!({"amount": "3.00", "reason": "scratch", "line_items": [{"id": item, "quantity": 1, "refund_total": "3.00"}]}))).await;
    let (records, _) = read_all(&h.connector, EntityKind::Order, checkpoint.clone(), 10).await;
    let Record::Order(read) = &records[0] else { unreachable!() };
    assert_eq!(read.financial_status, erpsync_model::FinancialStatus::PartiallyRefunded);
    let (refunds, _) = read_all(&h.connector, EntityKind::Refund, checkpoint, 10).await;
    assert_eq!(refunds.len(), 1);
    let Record::Refund(refund) = &refunds[0] else { unreachable!() };
    assert_eq!(refund.order_number, read.number);
    assert_eq!(refund.amount, Decimal::new(300, 2));
    assert_eq!(refund.reason.as_deref(), Some("scratch"));
    assert_eq!(refund.lines[0].sku, "SIM-1");
    assert_eq!(refund.lines[0].quantity, Decimal::ONE);
}

#[tokio::test]
async fn order_status_and_shipments_write_status_and_one_note_each() {
    let seed =
        SeedConfig { simple_products: 2, variable_products: 0, customers: 0, orders: 0, ..SeedConfig::default() };
    let h = harness(Some(seed)).await;
    let order = h
        .sim
        .checkout(&Checkout {
            email: "g@example.com".into(),
            lines: vec![("SIM-1".into(), 1)],
            payment_method: "bacs".into(),
            ..Checkout::default()
        })
        .unwrap();
    let number = order["number"].as_str().unwrap().to_string();
    let id = order["id"].as_u64().unwrap();
    let change = OrderStatusChange {
        order_number: number.clone(),
        state: OrderState::Processing,
        changed_at: Some(chrono::Utc::now()),
        note: Some("Payment received in the ERP.".into()),
        ..OrderStatusChange::default()
    };
    let missing = OrderStatusChange {
        order_number: "999999".into(),
        changed_at: Some(chrono::Utc::now()),
        ..OrderStatusChange::default()
    };
    let outcomes = h
        .connector
        .write_batch(&batch(
            EntityKind::OrderStatus,
            vec![(None, Record::OrderStatus(change.clone())), (None, Record::OrderStatus(missing))],
        ))
        .await
        .unwrap();
    assert_eq!(target(&outcomes[0]), id.to_string());
    assert!(matches!(&outcomes[1], WriteOutcome::Failed(e) if e.kind == ErrorKind::NotFound));
    // The same change again (a replay) does not add its note twice.
    h.connector.write_batch(&batch(EntityKind::OrderStatus, vec![(None, Record::OrderStatus(change))])).await.unwrap();
    let shipment = Shipment {
        number: "WH-OUT-7".into(),
        order_number: number.clone(),
        tracking: vec![Tracking {
            carrier: "DHL".into(),
            number: "00340434".into(),
            url: Some("https://track.example/00340434".into()),
        }],
        notify_customer: true,
        ..Shipment::default()
    };
    let outcomes = h
        .connector
        .write_batch(&batch(EntityKind::Shipment, vec![(None, Record::Shipment(shipment.clone()))]))
        .await
        .unwrap();
    assert!(matches!(outcomes[0], WriteOutcome::Created { .. }));
    let outcomes =
        h.connector.write_batch(&batch(EntityKind::Shipment, vec![(None, Record::Shipment(shipment))])).await.unwrap();
    assert!(matches!(outcomes[0], WriteOutcome::Updated { .. }), "a replayed shipment finds its note");
    let (status, notes) = h.sim.with_store(|s| (s.orders[&id].status.clone(), s.notes[&id].clone()));
    assert_eq!(status, "completed");
    assert_eq!(notes.iter().filter(|n| n.note == "Payment received in the ERP.").count(), 1);
    let tracking: Vec<_> = notes.iter().filter(|n| n.note.contains("00340434")).collect();
    assert_eq!(tracking.len(), 1);
    assert!(tracking[0].customer_note && tracking[0].note.contains("DHL") && tracking[0].note.contains("WH-OUT-7"));
}

#[tokio::test]
async fn outages_and_cut_bodies_are_retryable_and_bad_keys_are_not() {
    let h = harness(Some(SeedConfig::default())).await;
    let request = |checkpoint| ReadRequest { entity: EntityKind::Product, checkpoint, page_size: 10 };
    let start = Checkpoint::default();
    h.sim.set_faults(Faults { server_errors: 1, ..Faults::default() });
    let error = h.connector.read_page(&request(&start)).await.unwrap_err();
    assert_eq!((error.kind, error.retryable), (ErrorKind::Unavailable, true), "{error}");
    h.sim.set_faults(Faults { truncated_bodies: 1, ..Faults::default() });
    let error = h.connector.read_page(&request(&start)).await.unwrap_err();
    assert!(error.retryable, "{error}");
    assert!(h.connector.read_page(&request(&start)).await.is_ok());
    h.sim.set_faults(Faults { server_errors: 1, ..Faults::default() });
    let error = h
        .connector
        .write_batch(&batch(EntityKind::Product, vec![(None, Record::Product(simple("X-1", "X", 100)))]))
        .await
        .unwrap_err();
    assert!(error.retryable, "a failed batch request fails the whole batch, to be retried: {error}");
    // Wrong credentials: an auth error, never retried.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k"), h.sim.key().consumer_key.as_str()).unwrap();
    std::fs::write(dir.path().join("s"), "cs_wrong").unwrap();
    let text = format!(
        "url = \"{}\"\nconsumer_key = {{ file = \"{}\" }}\nconsumer_secret = {{ file = \"{}\" }}\ncurrency = \"EUR\"\n",
        h.sim.base_url(),
        dir.path().join("k").display(),
        dir.path().join("s").display()
    );
    let wrong = WooConnector::new("shop", toml::from_str(&text).unwrap()).unwrap();
    let error = wrong.read_page(&request(&start)).await.unwrap_err();
    assert_eq!((error.kind, error.retryable), (ErrorKind::Auth, false));
    assert!(error.message.contains("woocommerce_rest_authentication_error"), "{error}");
    // Basic over plain HTTP is refused before any request.
    let basic: WooConfig = toml::from_str(&format!("{text}auth = \"basic\"\n")).unwrap();
    assert!(basic.validate().iter().any(|(field, _)| field == "auth"));
}

#[tokio::test]
async fn a_request_that_hangs_is_a_retryable_timeout() {
    let h = harness_with(sim_config(None), "timeout = \"1s\"\n").await;
    h.sim.set_faults(Faults { timeouts: 1, ..Faults::default() });
    let checkpoint = Checkpoint::default();
    let request = ReadRequest { entity: EntityKind::Order, checkpoint: &checkpoint, page_size: 10 };
    let error = h.connector.read_page(&request).await.unwrap_err();
    assert_eq!((error.kind, error.retryable), (ErrorKind::Timeout, true), "{error}");
    assert!(h.connector.read_page(&request).await.is_ok());
}

type Recorded = Arc<Mutex<Vec<(Vec<(String, String)>, Vec<u8>)>>>;

async fn receiver() -> (String, Recorded) {
    async fn handle(
        axum::extract::State(log): axum::extract::State<Recorded>,
        headers: axum::http::HeaderMap,
        body: axum::body::Bytes,
    ) -> &'static str {
        let pairs =
            headers.iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
        log.lock().unwrap().push((pairs, body.to_vec()));
        "ok"
    }
    let log: Recorded = Arc::default();
    let router = axum::Router::new().route("/hook", axum::routing::post(handle)).with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, log)
}

async fn wait_for(mut check: impl FnMut() -> bool) {
    for _ in 0..300 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met within 3 s");
}

#[tokio::test]
async fn webhooks_are_subscribed_and_verified() {
    let h = harness(None).await;
    let (url, log) = receiver().await;
    assert_eq!(h.connector.topics(EntityKind::Product), ["product.created", "product.updated", "product.deleted"]);
    let subscription = h.connector.register("product.created", &url).await.unwrap();
    let again = h.connector.register("product.created", &url).await.unwrap();
    assert_eq!(subscription, again, "registering the same topic and URL twice keeps one subscription");
    assert_eq!(h.connector.list().await.unwrap(), std::slice::from_ref(&subscription));
    // The creation ping is accepted as a ping.
    wait_for(|| log.lock().unwrap().len() == 1).await;
    let (headers, body) = log.lock().unwrap()[0].clone();
    let ping = h.connector.verify(&headers, &body, chrono::Utc::now()).unwrap();
    assert_eq!(ping.topic.as_deref(), Some("ping"));
    // Two products written at once: two deliveries in the same second, told apart.
    h.sim.set_faults(Faults { webhook_duplicates: 1, ..Faults::default() });
    let items = vec![
        (None, Record::Product(simple("W-1", "Hooked", 100))),
        (None, Record::Product(simple("W-2", "Hooked", 100))),
    ];
    h.connector.write_batch(&batch(EntityKind::Product, items)).await.unwrap();
    wait_for(|| log.lock().unwrap().len() == 4).await;
    let deliveries: Vec<_> = log.lock().unwrap()[1..].to_vec();
    let mut ids = Vec::new();
    for (headers, body) in &deliveries {
        let verified = h.connector.verify(headers, body, chrono::Utc::now()).unwrap();
        assert_eq!(verified.topic.as_deref(), Some("product.created"));
        ids.push(verified.delivery_id);
    }
    // WooCommerce derives its delivery id from the webhook id and the second: the two products'
    // deliveries carry the same header, yet stay two deliveries for erpsync.
    let header = |n: usize| deliveries[n].0.iter().find(|(k, _)| k == "x-wc-webhook-delivery-id").unwrap().1.clone();
    assert!((0..3).all(|n| header(n) == header(0)), "one webhook, one second, one WooCommerce delivery id");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2, "the duplicate shares its id, the other product does not");
    // A body changed in transit, or a missing signature, is refused.
    let (headers, body) = &deliveries[0];
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    assert_eq!(h.connector.verify(headers, &tampered, chrono::Utc::now()).unwrap_err().kind, ErrorKind::Auth);
    let unsigned: Vec<(String, String)> =
        headers.iter().filter(|(k, _)| k != "x-wc-webhook-signature").cloned().collect();
    assert!(h.connector.verify(&unsigned, body, chrono::Utc::now()).is_err());
    // The same delivery sent again a day later is a replay: the product's date_modified_gmt in
    // the signed body is beyond webhook_tolerance (24 hours by default).
    let modified = h.connector.verify(headers, body, chrono::Utc::now()).unwrap().timestamp.expect("date_modified_gmt");
    // (The harness starts the shop's clock ten minutes back.)
    assert!((chrono::Utc::now() - modified).num_minutes().abs() <= 11, "{modified}");
    assert!(h.connector.verify(headers, body, modified + chrono::Duration::hours(23)).is_ok());
    let replay = h.connector.verify(headers, body, modified + chrono::Duration::hours(25)).unwrap_err();
    assert_eq!(replay.kind, ErrorKind::Auth);
    assert!(replay.message.contains("webhook_tolerance"), "{replay}");
    h.connector.remove(&subscription.id).await.unwrap();
    assert!(h.connector.list().await.unwrap().is_empty());
}
