//! The odoo connector against the in-process Odoo simulator, over both protocols where the
//! protocol matters: paged product reads with variants, the `write_date` boundary, price list
//! tiers, stock per warehouse, customers, orders that must never be created twice, per-order
//! failures, error mapping (JSON-RPC errors inside HTTP 200, JSON-2 statuses), shipments and
//! invoices.

use erpsync_connectors::odoo::config::Protocol;
use erpsync_connectors::odoo::{OdooConfig, OdooConnector};
use erpsync_connectors::{ErrorKind, ReadRequest, Sink, Source, SourceRecord, WriteBatch, WriteItem, WriteOutcome};
use erpsync_model::{
    Address, AddressKind, Cancellation, Checkpoint, Customer, DocumentKind, EntityKind, Order, OrderLine, OrderParty,
    OrderState, Pdf, Record, ShippingLine, TaxLine,
};
use erpsync_sim::odoo::{Faults, OdooSim, OdooSimConfig, RunningOdooSim, SeedConfig};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

struct Fixture {
    sim: RunningOdooSim,
    connector: OdooConnector,
    _secrets: tempfile::TempDir,
}

async fn start(seed: Option<SeedConfig>, protocol: Protocol, extra_toml: &str) -> Fixture {
    let sim = OdooSim::start(OdooSimConfig { seed, ..OdooSimConfig::default() }).await.expect("simulator starts");
    let connector_and_dir = connector_for(&sim, protocol, extra_toml, None);
    Fixture { sim, connector: connector_and_dir.0, _secrets: connector_and_dir.1 }
}

/// A connector for `sim`; `secret` overrides the key or password (to test refusals).
fn connector_for(
    sim: &RunningOdooSim,
    protocol: Protocol,
    extra_toml: &str,
    secret: Option<&str>,
) -> (OdooConnector, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let defaults = OdooSimConfig::default();
    let credentials = match protocol {
        Protocol::Json2 => {
            let path = dir.path().join("key");
            std::fs::write(&path, secret.unwrap_or(&defaults.api_key)).expect("write key");
            format!("protocol = \"json2\"\napi_key = {{ file = {:?} }}\n", path.display().to_string())
        }
        Protocol::Jsonrpc => {
            let path = dir.path().join("password");
            std::fs::write(&path, secret.unwrap_or(&defaults.password)).expect("write password");
            format!(
                "protocol = \"jsonrpc\"\nlogin = \"admin\"\npassword = {{ file = {:?} }}\n",
                path.display().to_string()
            )
        }
    };
    let text = format!("url = \"{}\"\ndatabase = \"odoo\"\n{credentials}{extra_toml}", sim.base_url());
    let config: OdooConfig = toml::from_str(&text).expect("config parses");
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    (OdooConnector::new("erp", config).expect("connector builds"), dir)
}

fn seed(products: usize, max_variants: usize) -> SeedConfig {
    SeedConfig { products, max_variants, ..SeedConfig::default() }
}

/// Reads pages from `checkpoint` until the source says it is done.
async fn read_all(
    connector: &OdooConnector,
    entity: EntityKind,
    checkpoint: Checkpoint,
    page_size: usize,
) -> (Vec<SourceRecord>, Checkpoint, usize) {
    let mut checkpoint = checkpoint;
    let mut records = Vec::new();
    for pages in 1..=10_000 {
        let page = connector
            .read_page(&ReadRequest { entity, checkpoint: &checkpoint, page_size })
            .await
            .unwrap_or_else(|error| panic!("reading {entity}: {error}"));
        records.extend(page.records);
        checkpoint = page.checkpoint;
        if page.done {
            return (records, checkpoint, pages);
        }
    }
    panic!("the source never said it was done");
}

fn records(read: &[SourceRecord]) -> Vec<Record> {
    read.iter()
        .map(|record| match &record.content {
            Ok(record) => record.clone(),
            Err(problem) => panic!("{:?}: {}", record.origin, problem.message),
        })
        .collect()
}

async fn call(connector: &OdooConnector, model: &str, method: &str, args: Value, kwargs: Value) -> Value {
    let kwargs: Map<String, Value> = serde_json::from_value(kwargs).expect("kwargs object");
    let args = match args {
        Value::Array(items) => items,
        other => vec![other],
    };
    connector.call(model, method, args, kwargs).await.unwrap_or_else(|error| panic!("{model}.{method}: {error}"))
}

async fn control(sim: &RunningOdooSim, path: &str, body: Value) -> Value {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::Client::new()
        .post(format!("{}/_sim/{path}", sim.base_url()))
        .json(&body)
        .send()
        .await
        .expect("control request");
    assert_eq!(response.status(), 200, "control call {path}");
    response.json().await.expect("control json")
}

fn count_in_sim(sim: &RunningOdooSim, model: &str) -> usize {
    sim.with_state(|state| state.ids(model).len())
}

#[tokio::test]
async fn products_with_variants_are_read_across_pages_in_few_calls() {
    for protocol in [Protocol::Json2, Protocol::Jsonrpc] {
        let fixture = start(Some(seed(120, 4)), protocol, "").await;
        let (read, checkpoint, pages) =
            read_all(&fixture.connector, EntityKind::Product, Checkpoint::default(), 50).await;
        let products = records(&read);
        let templates = count_in_sim(&fixture.sim, "product.template");
        let variants = count_in_sim(&fixture.sim, "product.product");
        assert_eq!(products.len(), templates, "{protocol:?}: every template once");
        let keys: BTreeSet<String> = products.iter().filter_map(Record::natural_key).collect();
        assert_eq!(keys.len(), templates, "{protocol:?}: no template twice");
        let mut skus = BTreeSet::new();
        for record in &products {
            let Record::Product(product) = record else { panic!("not a product") };
            for variant in &product.variants {
                assert!(skus.insert(variant.sku.clone()), "variant {} read twice", variant.sku);
                assert!(variant.barcode.as_deref().is_some_and(|code| code.len() == 13), "{variant:?}");
            }
            if product.variants.len() > 1 {
                assert_eq!(product.options.len(), 1, "{product:?}");
                assert!(product.variants.iter().all(|variant| variant.options.len() == 1));
            }
        }
        assert_eq!(skus.len(), variants, "{protocol:?}: every variant with its SKU");
        // The seed gives the XL size a price extra of 2.
        let shirt = products
            .iter()
            .filter_map(|record| match record {
                Record::Product(product) => Some(product),
                _ => None,
            })
            .find(|product| product.variants.iter().any(|variant| variant.sku.ends_with("-XL")))
            .expect("a product with an XL variant");
        let price = |suffix: &str| {
            shirt.variants.iter().find(|variant| variant.sku.ends_with(suffix)).and_then(|v| v.price.clone()).unwrap()
        };
        assert_eq!(price("-XL").amount - price("-S").amount, Decimal::from(2));

        let stats = fixture.connector.stats();
        let expected_pages = templates.div_ceil(50);
        assert!(pages <= expected_pages + 1, "{pages} pages for {templates} templates");
        // Per page: the rest of the boundary second, later seconds, the variants; plus the
        // fields of two models, the attribute values, the variant stream's start and end.
        assert!(stats.calls <= (3 * pages + 8) as u64, "{protocol:?}: {stats:?}");
        println!("{protocol:?}: {templates} templates, {variants} variants, {pages} pages, {} calls", stats.calls);

        // Nothing changed: reading again from the checkpoint gives nothing.
        let (again, _, _) = read_all(&fixture.connector, EntityKind::Product, checkpoint, 50).await;
        assert!(again.is_empty(), "{protocol:?}: {} records read again", again.len());
        fixture.sim.shutdown().await;
    }
}

#[tokio::test]
async fn incremental_reads_keep_records_written_in_the_watermark_second() {
    let fixture = start(Some(seed(40, 1)), Protocol::Json2, "").await;
    let connector = &fixture.connector;
    // Five seeded records share each second; pages of 3 end inside seconds.
    let (read, checkpoint, _) = read_all(connector, EntityKind::Product, Checkpoint::default(), 3).await;
    let ids: Vec<String> = read.iter().map(|record| record.source_id.clone()).collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), 40, "every template, though pages end inside a second");
    assert_eq!(ids.len(), 40, "and none twice");
    let watermark = checkpoint.watermark.expect("a watermark").format("%Y-%m-%d %H:%M:%S").to_string();

    // Another record is written in the very second of the watermark, with a low id (an id
    // tie-break alone would skip it).
    let first_template = read[0].source_id.parse::<i64>().unwrap();
    control(
        &fixture.sim,
        "touch",
        json!({"model": "product.template", "ids": [first_template], "write_date": watermark}),
    )
    .await;
    let (tie, checkpoint, _) = read_all(connector, EntityKind::Product, checkpoint, 3).await;
    assert_eq!(tie.iter().map(|r| r.source_id.clone()).collect::<Vec<_>>(), vec![first_template.to_string()]);
    let (again, checkpoint, _) = read_all(connector, EntityKind::Product, checkpoint, 3).await;
    assert!(again.is_empty(), "the boundary record is not read again: {:?}", again.len());

    // A change of a variant alone brings its template back.
    let variant = fixture.sim.with_state(|state| {
        state.find_ids("product.product", |row| row.get("product_tmpl_id") == Some(&json!(first_template + 1)))
    });
    control(
        &fixture.sim,
        "touch",
        json!({"model": "product.product", "ids": variant, "write_date": "2030-01-01 00:00:00"}),
    )
    .await;
    let (changed, _, _) = read_all(connector, EntityKind::Product, checkpoint, 3).await;
    assert_eq!(changed.iter().map(|r| r.source_id.clone()).collect::<Vec<_>>(), vec![(first_template + 1).to_string()]);
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn price_list_tiers_per_customer_group() {
    let fixture =
        start(Some(seed(6, 2)), Protocol::Jsonrpc, "price_lists = { gold = \"Gold\", wholesale = \"Wholesale\" }\n")
            .await;
    let connector = &fixture.connector;
    let variant = call(
        connector,
        "product.product",
        "search_read",
        json!([[["default_code", "=", "SKU-0001"]]]),
        json!({"fields": ["id", "product_tmpl_id"]}),
    )
    .await;
    let variant_id = variant[0]["id"].clone();
    let gold = call(connector, "product.pricelist", "create", json!([[{"name": "Gold"}]]), json!({})).await[0].clone();
    let items = json!([[
        {"pricelist_id": gold, "applied_on": "0_product_variant", "product_id": variant_id, "compute_price": "fixed", "fixed_price": 9.5, "min_quantity": 1},
        {"pricelist_id": gold, "applied_on": "0_product_variant", "product_id": variant_id, "compute_price": "fixed", "fixed_price": 8.0, "min_quantity": 10},
        {"pricelist_id": gold, "applied_on": "0_product_variant", "product_id": variant_id, "compute_price": "fixed", "fixed_price": 1.0, "min_quantity": 1, "date_start": "2099-01-01 00:00:00"},
    ]]);
    call(connector, "product.pricelist.item", "create", items, json!({})).await;
    let (read, _, _) = read_all(connector, EntityKind::PriceList, Checkpoint::default(), 100).await;
    let lists = records(&read);
    assert_eq!(lists.len(), 2);
    let Some(Record::PriceList(gold)) = lists.iter().find(|list| list.natural_key().as_deref() == Some("Gold")) else {
        panic!("no Gold list")
    };
    assert_eq!(gold.customer_group.as_deref(), Some("gold"));
    let tiers: Vec<(String, Decimal, Decimal)> =
        gold.entries.iter().map(|entry| (entry.sku.clone(), entry.min_quantity, entry.price)).collect();
    assert_eq!(
        tiers,
        vec![
            ("SKU-0001".into(), Decimal::ONE, Decimal::new(95, 1)),
            ("SKU-0001".into(), Decimal::from(10), Decimal::from(8))
        ],
        "tiers by min_quantity; the future price is not in force"
    );
    let rules = gold.extra.get("rules").and_then(Value::as_array).expect("the future item is kept in extra.rules");
    assert_eq!(rules.len(), 1);
    // The seeded wholesale list is percentages on the whole catalog: kept as rules, not entries.
    let Some(Record::PriceList(wholesale)) =
        lists.iter().find(|list| list.natural_key().as_deref() == Some("Wholesale"))
    else {
        panic!("no Wholesale list")
    };
    assert!(wholesale.entries.is_empty());
    assert_eq!(wholesale.extra.get("rules").and_then(Value::as_array).map(Vec::len), Some(3));
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn stock_per_warehouse() {
    let fixture = start(
        Some(SeedConfig { products: 8, max_variants: 2, warehouses: 2, ..SeedConfig::default() }),
        Protocol::Json2,
        "",
    )
    .await;
    let (read, checkpoint, _) = read_all(&fixture.connector, EntityKind::StockLevel, Checkpoint::default(), 100).await;
    let levels: Vec<Record> = records(&read);
    let variants = count_in_sim(&fixture.sim, "product.product");
    assert_eq!(levels.len(), variants * 2, "one level per SKU and warehouse");
    // Compare with the quants the simulator holds for one SKU.
    let expected: BTreeMap<String, f64> = fixture.sim.with_state(|state| {
        let product = state.find_ids("product.product", |row| row.get("default_code") == Some(&json!("SKU-0001")))[0];
        let mut totals = BTreeMap::new();
        for quant in state.find_ids("stock.quant", |row| row.get("product_id") == Some(&json!(product))) {
            let location = state.raw_id("stock.quant", quant, "location_id").unwrap();
            let warehouse = state.raw_id("stock.location", location, "warehouse_id").unwrap();
            let code = state.raw_text("stock.warehouse", warehouse, "code").unwrap();
            *totals.entry(code).or_insert(0.0) += state.raw_f64("stock.quant", quant, "quantity");
        }
        totals
    });
    let got: BTreeMap<String, f64> = levels
        .iter()
        .filter_map(|record| match record {
            Record::StockLevel(level) if level.sku == "SKU-0001" => {
                Some((level.location.clone(), level.on_hand.unwrap().to_string().parse().unwrap()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(got, expected);
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), vec!["WH".to_string(), "WH2".to_string()]);

    // A stock change is read incrementally, for that product only.
    control(&fixture.sim, "clock", json!({"advance_seconds": 3600})).await;
    control(&fixture.sim, "stock", json!({"count": 1, "seed": 7})).await;
    let (changed, _, _) = read_all(&fixture.connector, EntityKind::StockLevel, checkpoint, 100).await;
    assert_eq!(changed.len(), 2, "both warehouses of the one product changed");

    // Mapped names: only the configured warehouse, under its canonical name.
    let (mapped, _dir) = connector_for(&fixture.sim, Protocol::Json2, "warehouses = { main = \"WH2\" }\n", None);
    let (read, _, _) = read_all(&mapped, EntityKind::StockLevel, Checkpoint::default(), 100).await;
    let locations: BTreeSet<String> = records(&read)
        .iter()
        .filter_map(|record| match record {
            Record::StockLevel(level) => Some(level.location.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(locations, BTreeSet::from(["main".to_string()]));
    fixture.sim.shutdown().await;
}

fn address(kind: AddressKind, line1: &str) -> Address {
    Address {
        kind,
        line1: line1.into(),
        city: "Berlin".into(),
        postal_code: Some("10115".into()),
        country: "DE".into(),
        ..Address::default()
    }
}

fn item(record: Record) -> WriteItem {
    WriteItem { target_id: None, natural_key: record.natural_key().unwrap(), record }
}

fn batch(entity: EntityKind, items: Vec<WriteItem>) -> WriteBatch {
    WriteBatch { entity, batch_id: "test".into(), items }
}

fn target(outcome: &WriteOutcome) -> String {
    match outcome {
        WriteOutcome::Created { target_id } | WriteOutcome::Updated { target_id } => target_id.clone(),
        WriteOutcome::Failed(error) => panic!("failed: {error}"),
    }
}

#[tokio::test]
async fn a_customer_written_is_found_by_email() {
    for protocol in [Protocol::Json2, Protocol::Jsonrpc] {
        let fixture = start(None, protocol, "").await;
        let customer = Customer {
            email: Some("Ada.Lovelace@example.com".into()),
            first_name: Some("Ada".into()),
            last_name: Some("Lovelace".into()),
            addresses: vec![
                Address { is_default: true, ..address(AddressKind::Billing, "1 Main Street") },
                address(AddressKind::Shipping, "9 Dock Road"),
            ],
            ..Customer::default()
        };
        let outcomes = fixture
            .connector
            .write_batch(&batch(EntityKind::Customer, vec![item(Record::Customer(customer.clone()))]))
            .await
            .unwrap();
        let id = target(&outcomes[0]);
        let found = fixture
            .connector
            .lookup(EntityKind::Customer, &["ada.lovelace@example.com".into(), "nobody@example.com".into()])
            .await
            .unwrap();
        assert_eq!(found, vec![Some(id.clone()), None], "{protocol:?}");
        // Writing it again (no link yet) updates the same partner and adds no contact twice.
        let again = fixture
            .connector
            .write_batch(&batch(EntityKind::Customer, vec![item(Record::Customer(customer))]))
            .await
            .unwrap();
        assert_eq!(target(&again[0]), id);
        let children = call(
            &fixture.connector,
            "res.partner",
            "search_read",
            json!([[["parent_id", "=", id.parse::<i64>().unwrap()]]]),
            json!({"fields": ["type", "street"]}),
        )
        .await;
        assert_eq!(children.as_array().map(Vec::len), Some(1), "{children}");
        assert_eq!(children[0]["type"], json!("delivery"));
        assert_eq!(children[0]["street"], json!("9 Dock Road"));
        fixture.sim.shutdown().await;
    }
}

fn order(number: &str, sku: &str) -> Order {
    Order {
        number: number.into(),
        customer: OrderParty {
            email: Some(format!("buyer-{number}@example.com")),
            first_name: Some("Bea".into()),
            ..OrderParty::default()
        },
        billing_address: Some(address(AddressKind::Billing, "1 Main Street")),
        shipping_address: Some(address(AddressKind::Shipping, "5 Other Road")),
        lines: vec![OrderLine {
            sku: sku.into(),
            title: "Thing".into(),
            quantity: Decimal::from(2),
            unit_price: Decimal::new(1000, 2),
            discount: Decimal::new(200, 2),
            tax_lines: vec![TaxLine { title: "VAT".into(), rate: Decimal::new(15, 2), amount: Decimal::new(270, 2) }],
            total: Decimal::new(1800, 2),
            ..OrderLine::default()
        }],
        shipping_lines: vec![ShippingLine {
            method: "dhl".into(),
            title: "DHL".into(),
            price: Decimal::new(495, 2),
            ..ShippingLine::default()
        }],
        ..Order::default()
    }
}

fn orders_with_ref(sim: &RunningOdooSim, number: &str) -> Vec<i64> {
    sim.with_state(|state| state.find_ids("sale.order", |row| row.get("client_order_ref") == Some(&json!(number))))
}

async fn order_fixture(protocol: Protocol, extra: &str) -> Fixture {
    let fixture = start(Some(seed(4, 1)), protocol, &format!("shipping_product = \"SHIP\"\n{extra}")).await;
    call(
        &fixture.connector,
        "product.product",
        "create",
        json!([[{"name": "Shipping", "default_code": "SHIP", "type": "service"}]]),
        json!({}),
    )
    .await;
    fixture
}

#[tokio::test]
async fn an_order_written_twice_or_retried_after_a_lost_answer_exists_once() {
    for protocol in [Protocol::Json2, Protocol::Jsonrpc] {
        let fixture = order_fixture(protocol, "confirm_orders = true\n").await;
        let connector = &fixture.connector;
        let first = connector
            .write_batch(&batch(EntityKind::Order, vec![item(Record::Order(order("#5001", "SKU-0001")))]))
            .await
            .unwrap();
        let id = target(&first[0]);
        assert!(matches!(first[0], WriteOutcome::Created { .. }));
        let second = connector
            .write_batch(&batch(EntityKind::Order, vec![item(Record::Order(order("#5001", "SKU-0001")))]))
            .await
            .unwrap();
        assert_eq!(target(&second[0]), id, "{protocol:?}");
        assert_eq!(orders_with_ref(&fixture.sim, "#5001").len(), 1, "{protocol:?}");
        let read = call(
            connector,
            "sale.order",
            "read",
            json!([
                [id.parse::<i64>().unwrap()],
                ["state", "order_line", "partner_shipping_id", "partner_invoice_id", "partner_id"]
            ]),
            json!({}),
        )
        .await;
        assert_eq!(read[0]["state"], json!("sale"), "confirmed");
        assert_eq!(read[0]["order_line"].as_array().map(Vec::len), Some(2), "the product line and the shipping line");
        assert_ne!(read[0]["partner_shipping_id"][0], read[0]["partner_id"][0], "a delivery contact");
        let lines = call(
            connector,
            "sale.order.line",
            "search_read",
            json!([[["order_id", "=", id.parse::<i64>().unwrap()]]]),
            json!({"fields": ["discount", "price_unit"], "order": "id asc"}),
        )
        .await;
        assert_eq!(lines[0]["discount"], json!(10.0), "2.00 off 2 x 10.00 is 10 %");

        // The create is committed but its answer is cut off: the batch fails as a whole, and
        // its retry finds the order instead of creating it again.
        fixture.sim.set_faults(Faults {
            rules: vec![
                serde_json::from_value(json!({"kind": "truncate", "model": "sale.order", "method": "create"})).unwrap(),
            ],
            ..Faults::default()
        });
        let lost = connector
            .write_batch(&batch(EntityKind::Order, vec![item(Record::Order(order("#5002", "SKU-0002")))]))
            .await;
        let error = lost.expect_err("the answer was lost");
        assert!(error.retryable, "{error}");
        assert_eq!(orders_with_ref(&fixture.sim, "#5002").len(), 1, "created once by the lost call");
        let retried = connector
            .write_batch(&batch(EntityKind::Order, vec![item(Record::Order(order("#5002", "SKU-0002")))]))
            .await
            .unwrap();
        assert_eq!(target(&retried[0]), orders_with_ref(&fixture.sim, "#5002")[0].to_string());
        assert_eq!(orders_with_ref(&fixture.sim, "#5002").len(), 1, "{protocol:?}: still once after the retry");
        fixture.sim.shutdown().await;
    }
}

#[tokio::test]
async fn an_unknown_sku_fails_only_its_order() {
    let fixture = order_fixture(Protocol::Json2, "").await;
    let items = vec![
        item(Record::Order(order("#6001", "SKU-0001"))),
        item(Record::Order(order("#6002", "NOT-IN-ODOO"))),
        item(Record::Order(order("#6003", "SKU-0002"))),
    ];
    let outcomes = fixture.connector.write_batch(&batch(EntityKind::Order, items)).await.unwrap();
    assert!(matches!(outcomes[0], WriteOutcome::Created { .. }));
    assert!(matches!(outcomes[2], WriteOutcome::Created { .. }));
    let WriteOutcome::Failed(error) = &outcomes[1] else { panic!("the order with an unknown SKU must fail") };
    assert!(error.retryable, "it waits for the product");
    assert!(error.to_string().contains("waits for product SKU \"NOT-IN-ODOO\""), "{error}");
    assert!(error.to_string().contains("#6002"), "{error}");
    assert!(orders_with_ref(&fixture.sim, "#6002").is_empty());
    // One create call for the two good orders.
    assert_eq!(fixture.connector.stats().by_method.get("sale.order.create"), Some(&1));

    // When Odoo refuses a batch, the orders are created one by one.
    fixture.sim.set_faults(Faults {
        partial_failure: Some(serde_json::from_value(json!({"every": 2, "model": "sale.order"})).unwrap()),
        ..Faults::default()
    });
    let items = vec![item(Record::Order(order("#6004", "SKU-0001"))), item(Record::Order(order("#6005", "SKU-0001")))];
    let outcomes = fixture.connector.write_batch(&batch(EntityKind::Order, items)).await.unwrap();
    assert!(outcomes.iter().all(|outcome| matches!(outcome, WriteOutcome::Created { .. })), "{outcomes:?}");
    assert_eq!(fixture.connector.stats().by_method.get("sale.order.create"), Some(&4), "1 + 1 refused + 2 single");
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn jsonrpc_errors_inside_http_200_become_kinds() {
    let fixture = start(Some(seed(2, 1)), Protocol::Jsonrpc, "").await;
    let connector = &fixture.connector;
    let no_kwargs = Map::new();
    let error = connector
        .call("sale.order", "create", vec![json!([{"client_order_ref": "x"}])], no_kwargs.clone())
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidRequest, "{error}");
    assert!(!error.retryable);
    let error = connector
        .call("res.partner", "write", vec![json!([999_999]), json!({"name": "x"})], no_kwargs.clone())
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");
    control(&fixture.sim, "access", json!({"model": "res.partner", "operations": ["read"]})).await;
    let error = connector.call("res.partner", "search_read", vec![json!([])], no_kwargs.clone()).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permission, "{error}");
    assert!(error.to_string().contains("AccessError"), "{error}");
    let (wrong, _dir) = connector_for(&fixture.sim, Protocol::Jsonrpc, "", Some("not-the-password"));
    let error = wrong.call("res.partner", "search_count", vec![json!([])], no_kwargs).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Auth, "{error}");
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn json2_error_statuses_are_mapped() {
    let fixture = start(Some(seed(2, 1)), Protocol::Json2, "").await;
    let connector = &fixture.connector;
    let error =
        connector.call("sale.order", "create", vec![json!([{"client_order_ref": "x"}])], Map::new()).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidRequest, "{error}");
    let error = connector
        .call("res.partner", "write", vec![json!([999_999]), json!({"name": "x"})], Map::new())
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");
    fixture.sim.set_faults(Faults {
        rules: vec![
            serde_json::from_value(json!({"kind": "status", "status": 503, "retry_after_seconds": 7})).unwrap(),
            serde_json::from_value(json!({"kind": "status", "status": 429, "retry_after_seconds": 2})).unwrap(),
        ],
        ..Faults::default()
    });
    let error = connector.call("res.partner", "search_count", vec![json!([])], Map::new()).await.unwrap_err();
    assert_eq!(
        (error.kind, error.retryable, error.retry_after),
        (ErrorKind::Unavailable, true, Some(std::time::Duration::from_secs(7)))
    );
    let error = connector.call("res.partner", "search_count", vec![json!([])], Map::new()).await.unwrap_err();
    assert_eq!((error.kind, error.retryable), (ErrorKind::RateLimited, true));
    let (wrong, _dir) =
        connector_for(&fixture.sim, Protocol::Json2, "", Some("0000000000000000000000000000000000000000"));
    let error = wrong.call("res.partner", "search_count", vec![json!([])], Map::new()).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Auth, "{error}");
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn shipments_with_tracking_and_order_status_are_read() {
    let fixture = order_fixture(Protocol::Json2, "confirm_orders = true\n").await;
    let connector = &fixture.connector;
    let written = connector
        .write_batch(&batch(EntityKind::Order, vec![item(Record::Order(order("#7001", "SKU-0003")))]))
        .await
        .unwrap();
    let order_id: i64 = target(&written[0]).parse().unwrap();
    control(&fixture.sim, "ship", json!({"order_ids": [order_id], "carrier": "DHL"})).await;
    let (read, _, _) = read_all(connector, EntityKind::Shipment, Checkpoint::default(), 100).await;
    let shipments = records(&read);
    let shipment = shipments
        .iter()
        .find_map(|record| match record {
            Record::Shipment(shipment) if shipment.order_number == "#7001" => Some(shipment),
            _ => None,
        })
        .expect("the shipment of our order");
    assert!(shipment.tracking[0].number.starts_with("DHL"), "{shipment:?}");
    let shipped: Vec<(String, Decimal)> = shipment.lines.iter().map(|line| (line.sku.clone(), line.quantity)).collect();
    assert!(shipped.contains(&("SKU-0003".to_string(), Decimal::from(2))), "{shipped:?}");
    // The seeded shipped orders come with theirs.
    assert!(
        shipments
            .iter()
            .any(|record| matches!(record, Record::Shipment(s) if s.order_number == "#1003" && !s.tracking.is_empty()))
    );

    let (read, checkpoint, _) = read_all(connector, EntityKind::OrderStatus, Checkpoint::default(), 100).await;
    let state_of = |records: &[Record], number: &str| {
        records.iter().rev().find_map(|record| match record {
            Record::OrderStatus(change) if change.order_number == number => Some(change.state),
            _ => None,
        })
    };
    assert_eq!(state_of(&records(&read), "#7001"), Some(OrderState::Completed), "delivered in full");

    // A cancellation from the shop is applied with action_cancel and read back.
    let mut cancelled = order("#7002", "SKU-0001");
    connector.write_batch(&batch(EntityKind::Order, vec![item(Record::Order(cancelled.clone()))])).await.unwrap();
    cancelled.cancellation = Some(Cancellation::default());
    let mut update = item(Record::Order(cancelled));
    update.target_id = Some(orders_with_ref(&fixture.sim, "#7002")[0].to_string());
    let outcome = connector.write_batch(&batch(EntityKind::Order, vec![update])).await.unwrap();
    assert!(matches!(outcome[0], WriteOutcome::Updated { .. }), "{outcome:?}");
    control(&fixture.sim, "clock", json!({"advance_seconds": 5})).await;
    let (read, checkpoint, _) = read_all(connector, EntityKind::OrderStatus, checkpoint, 100).await;
    assert_eq!(state_of(&records(&read), "#7002"), Some(OrderState::Cancelled));

    // An order cancelled in the shop before it reached Odoo is created, and cancelled at once.
    let mut late = order("#7003", "SKU-0001");
    late.cancellation = Some(Cancellation::default());
    let outcome = connector.write_batch(&batch(EntityKind::Order, vec![item(Record::Order(late))])).await.unwrap();
    assert!(matches!(outcome[0], WriteOutcome::Created { .. }), "{outcome:?}");
    assert_eq!(orders_with_ref(&fixture.sim, "#7003").len(), 1);
    control(&fixture.sim, "clock", json!({"advance_seconds": 5})).await;
    let (read, _, _) = read_all(connector, EntityKind::OrderStatus, checkpoint, 100).await;
    assert_eq!(state_of(&records(&read), "#7003"), Some(OrderState::Cancelled), "created and cancelled");
    fixture.sim.shutdown().await;
}

#[tokio::test]
async fn posted_invoices_are_read_with_their_pdf() {
    let fixture = start(Some(SeedConfig::default()), Protocol::Json2, "").await;
    let (read, _, _) = read_all(&fixture.connector, EntityKind::Document, Checkpoint::default(), 100).await;
    let documents = records(&read);
    let posted = fixture.sim.with_state(|state| {
        state.find_ids("account.move", |row| {
            row.get("state") == Some(&json!("posted")) && row.get("move_type") == Some(&json!("out_invoice"))
        })
    });
    assert!(!posted.is_empty());
    assert_eq!(documents.len(), posted.len());
    let Record::Document(invoice) = &documents[0] else { panic!("not a document") };
    assert_eq!(invoice.kind, DocumentKind::Invoice);
    assert!(invoice.order_number.as_deref().is_some_and(|number| number.starts_with('#')), "{invoice:?}");
    assert!(!invoice.lines.is_empty() && invoice.lines.iter().all(|line| line.sku.is_some()));
    let line_total: Decimal = invoice.lines.iter().map(|line| line.total).sum();
    assert_eq!(line_total, invoice.totals.subtotal);
    let Some(Pdf::Url { url }) = &invoice.pdf else { panic!("no pdf reference") };
    let id = invoice.extra.get("odoo_move_id").and_then(Value::as_i64).unwrap();
    assert_eq!(url, &format!("{}/report/pdf/account.report_invoice/{id}", fixture.sim.base_url()));
    let response = reqwest::Client::new().get(url).bearer_auth(OdooSimConfig::default().api_key).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.unwrap().starts_with(b"%PDF"));
    fixture.sim.shutdown().await;
}
