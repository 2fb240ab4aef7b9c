//! The `medusa` connector against a real Medusa 2.21.2 server.
//!
//! `tools/medusa/ensure.py serve` installs Medusa from npm into a cached project the first time
//! (a few minutes), sets up a template database once on the machine's PostgreSQL
//! (127.0.0.1:5432, user postgres, trust auth; `ERPSYNC_MEDUSA_PG` overrides), copies it for this
//! process and starts `medusa start` on a free port; one server serves this whole test binary.
//! The script stops the server and drops the copy when this process exits for any reason (its
//! standard input closes). If Node, PostgreSQL, the install or the server fails, every test
//! fails with the script's message: these tests are never skipped. `ERPSYNC_PYTHON` names
//! another Python 3 interpreter.
//!
//! The server's webhook subscriber posts its signed events to a small receiver in this process.
//! Each test works on its own SKUs and customers, so tests share the server.

use chrono::Utc;
use erpsync_connectors::medusa::{MedusaConfig, MedusaConnector};
use erpsync_connectors::{
    ErrorKind, EventRef, ReadRequest, Sink, Source, WebhookReceiver, WriteBatch, WriteItem, WriteOutcome,
};
use erpsync_model::{
    Checkpoint, Currency, EntityKind, FinancialStatus, Money, OrderState, OrderStatusChange, PriceEntry, PriceList,
    Product, ProductOption, Record, Shipment, ShipmentLine, StockLevel, Tracking, Variant,
};
use erpsync_model::{Document, DocumentKind, FulfillmentStatus, OptionValue, OrderTotals, Pdf};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const WEBHOOK_SECRET: &str = "erpsync-medusa-test-webhook-secret";

struct Server {
    url: String,
    publishable_key: String,
    api_key_file: String,
    webhook_secret_file: String,
    ids: Value,
    // Kept open for the life of the process: when it closes, the script stops Medusa.
    _stdin: ChildStdin,
    _child: Child,
}

static SERVER: OnceLock<Server> = OnceLock::new();

/// Deliveries received from the subscriber: (lower-case headers, body).
type Delivery = (Vec<(String, String)>, Vec<u8>);
static DELIVERIES: Mutex<Vec<Delivery>> = Mutex::new(Vec::new());

/// A minimal HTTP receiver on a thread of its own, for the whole process: it answers 200 to
/// every POST and keeps the headers and body.
fn start_receiver() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding the webhook receiver");
    let url = format!("http://{}/medusa", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.trim_end().split_once(':') {
                    headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
                }
            }
            let length: usize = headers
                .iter()
                .find(|(name, _)| name == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; length.min(1 << 20)];
            if reader.read_exact(&mut body).is_ok() {
                DELIVERIES.lock().unwrap().push((headers, body));
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    url
}

// The child lives as long as the test process; it is never waited for on purpose: the script
// notices the process ending through its standard input.
#[allow(clippy::zombie_processes)]
fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        let started = Instant::now();
        let webhook_url = start_receiver();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tools/medusa/ensure.py");
        let python = std::env::var("ERPSYNC_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(&python)
            .arg(script)
            .arg("serve")
            .env("ERPSYNC_WEBHOOK_URL", &webhook_url)
            .env("ERPSYNC_WEBHOOK_SECRET", WEBHOOK_SECRET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot run {python} {script} serve ({error}): the Medusa tests need Python 3, Node 20 and PostgreSQL")
            });
        let stdin = child.stdin.take().expect("stdin is piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut line = String::new();
        loop {
            line.clear();
            let read = stdout.read_line(&mut line).expect("reading the script's output");
            if read == 0 {
                let status = child.wait().map(|status| status.to_string()).unwrap_or_default();
                panic!(
                    "the Medusa test server could not be installed or started: {script} serve ended ({status}) without READY; its messages are above (stderr)"
                );
            }
            if let Some(ready) = line.strip_prefix("READY ") {
                let ready: Value = serde_json::from_str(ready).expect("READY is followed by JSON");
                eprintln!(
                    "medusa test server at {} ready in {:.1} s (cached install: {}, database copy {} s, medusa start {} s)",
                    ready["url"],
                    started.elapsed().as_secs_f64(),
                    ready["cached"],
                    ready["database_copy_seconds"],
                    ready["startup_seconds"]
                );
                let dir = std::env::temp_dir().join(format!("erpsync-medusa-test-{}", std::process::id()));
                std::fs::create_dir_all(&dir).unwrap();
                let api_key_file = dir.join("api_key");
                std::fs::write(&api_key_file, ready["api_key"].as_str().unwrap()).unwrap();
                let webhook_secret_file = dir.join("webhook_secret");
                std::fs::write(&webhook_secret_file, WEBHOOK_SECRET).unwrap();
                return Server {
                    url: ready["url"].as_str().unwrap().to_string(),
                    publishable_key: ready["publishable_api_key"].as_str().unwrap().to_string(),
                    api_key_file: api_key_file.display().to_string(),
                    webhook_secret_file: webhook_secret_file.display().to_string(),
                    ids: ready["ids"].clone(),
                    _stdin: stdin,
                    _child: child,
                };
            }
        }
    })
}

fn connector_with(extra: &str) -> MedusaConnector {
    let server = server();
    let text = format!(
        r#"
        url = "{}"
        api_key = {{ file = "{}" }}
        webhook_secret = {{ file = "{}" }}
        sales_channel = "Default Sales Channel"
        currency = "EUR"
        region = "Europe"
        stock_locations = {{ main = "Main WH", outlet = "Second WH" }}
        {extra}
        "#,
        server.url, server.api_key_file, server.webhook_secret_file
    );
    let config: MedusaConfig = toml::from_str(&text).unwrap();
    assert_eq!(config.validate(), Vec::<(String, String)>::new());
    MedusaConnector::new("test-shop", config).unwrap()
}

fn connector() -> MedusaConnector {
    connector_with("")
}

/// A code unique to this test and process, so that tests sharing the server never collide.
fn unique(name: &str) -> String {
    format!("{name}-{}-{}", std::process::id(), Utc::now().timestamp_micros() % 1_000_000_000)
}

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn eur(text: &str) -> Option<Money> {
    Some(Money::new(dec(text), Currency::EUR))
}

/// A product with a `Size` option, one variant per (size, price).
fn shirt(code: &str, sizes: &[(&str, &str)]) -> Product {
    Product {
        code: code.into(),
        title: format!("Shirt {code}"),
        description: Some("Cotton".into()),
        options: vec![ProductOption {
            name: "Size".into(),
            values: sizes.iter().map(|(s, _)| s.to_string()).collect(),
        }],
        variants: sizes
            .iter()
            .map(|(size, price)| Variant {
                sku: format!("{code}-{size}"),
                title: Some(size.to_string()),
                options: vec![OptionValue { option: "Size".into(), value: size.to_string() }],
                price: eur(price),
                track_inventory: true,
                ..Variant::default()
            })
            .collect(),
        ..Product::default()
    }
}

fn simple(code: &str, price: &str) -> Product {
    Product {
        code: code.into(),
        title: format!("Mug {code}"),
        variants: vec![Variant { sku: code.into(), price: eur(price), track_inventory: true, ..Variant::default() }],
        ..Product::default()
    }
}

async fn write(connector: &MedusaConnector, records: Vec<(Option<String>, Record)>) -> Vec<WriteOutcome> {
    let entity = records[0].1.kind();
    let items = records
        .into_iter()
        .map(|(target_id, record)| WriteItem { target_id, natural_key: record.natural_key().unwrap(), record })
        .collect();
    connector.write_batch(&WriteBatch { entity, batch_id: "test".into(), items }).await.unwrap()
}

fn target(outcome: &WriteOutcome) -> String {
    match outcome {
        WriteOutcome::Created { target_id } | WriteOutcome::Updated { target_id } => target_id.clone(),
        WriteOutcome::Failed(error) => panic!("write failed: {error}"),
    }
}

/// Every page of `entity` from `checkpoint`: the records with their source ids, and the
/// checkpoint after the last page.
async fn read_all(
    connector: &MedusaConnector,
    entity: EntityKind,
    checkpoint: Checkpoint,
    page_size: usize,
) -> (Vec<(String, Record)>, Checkpoint) {
    let mut checkpoint = checkpoint;
    let mut records = Vec::new();
    for _ in 0..1000 {
        let page = connector.read_page(&ReadRequest { entity, checkpoint: &checkpoint, page_size }).await.unwrap();
        for record in page.records {
            match record.content {
                Ok(content) => records.push((record.source_id, content)),
                Err(problem) => panic!("{:?}: {} ({})", record.origin, problem.message, problem.raw),
            }
        }
        checkpoint = page.checkpoint;
        if page.done {
            return (records, checkpoint);
        }
    }
    panic!("more than 1000 pages");
}

async fn fetch_product(connector: &MedusaConnector, id: &str) -> Product {
    let fetched = connector.fetch(EntityKind::Product, &[id.to_string()]).await.unwrap();
    match fetched.into_iter().next().flatten().map(|record| record.content) {
        Some(Ok(Record::Product(product))) => product,
        other => panic!("product {id}: {other:?}"),
    }
}

/// The admin API directly, for checks the connector does not make.
async fn admin(path: &str) -> Value {
    let server = server();
    let key = std::fs::read_to_string(&server.api_key_file).unwrap();
    let response =
        reqwest::Client::new().get(format!("{}{path}", server.url)).basic_auth(key, Some("")).send().await.unwrap();
    assert!(response.status().is_success(), "GET {path}: {}", response.status());
    response.json().await.unwrap()
}

/// The store API, as a storefront calls it.
async fn store(method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let server = server();
    let mut request = reqwest::Client::new()
        .request(method.clone(), format!("{}{path}", server.url))
        .header("x-publishable-api-key", &server.publishable_key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {path}: {status} {body}");
    body
}

/// Places an order through the store API as a customer would (shops.md §4): cart, line items,
/// addresses, shipping method, payment session, complete. Returns the order.
async fn checkout(email: &str, lines: &[(&str, u32)]) -> Value {
    let ids = &server().ids;
    let cart = store(
        reqwest::Method::POST,
        "/store/carts",
        Some(json!({"region_id": ids["region"], "sales_channel_id": ids["sales_channel"], "email": email})),
    )
    .await;
    let cart_id = cart["cart"]["id"].as_str().unwrap().to_string();
    for (sku, quantity) in lines {
        let variants = admin(&format!("/admin/product-variants?sku={sku}&fields=id")).await;
        let variant_id = variants["variants"][0]["id"].as_str().unwrap_or_else(|| panic!("no variant {sku}"));
        store(
            reqwest::Method::POST,
            &format!("/store/carts/{cart_id}/line-items"),
            Some(json!({"variant_id": variant_id, "quantity": quantity})),
        )
        .await;
    }
    let address = json!({"first_name": "Erika", "last_name": "Mustermann", "address_1": "Hauptstr. 1",
                         "city": "Berlin", "postal_code": "10115", "country_code": "de", "phone": "+49301234"});
    store(
        reqwest::Method::POST,
        &format!("/store/carts/{cart_id}"),
        Some(json!({"shipping_address": address, "billing_address": address})),
    )
    .await;
    let options = store(reqwest::Method::GET, &format!("/store/shipping-options?cart_id={cart_id}"), None).await;
    let option_id = options["shipping_options"][0]["id"].as_str().expect("a shipping option for the cart").to_string();
    store(
        reqwest::Method::POST,
        &format!("/store/carts/{cart_id}/shipping-methods"),
        Some(json!({"option_id": option_id})),
    )
    .await;
    let collection =
        store(reqwest::Method::POST, "/store/payment-collections", Some(json!({"cart_id": cart_id}))).await;
    let collection_id = collection["payment_collection"]["id"].as_str().unwrap().to_string();
    store(
        reqwest::Method::POST,
        &format!("/store/payment-collections/{collection_id}/payment-sessions"),
        Some(json!({"provider_id": "pp_system_default"})),
    )
    .await;
    let completed = store(reqwest::Method::POST, &format!("/store/carts/{cart_id}/complete"), Some(json!({}))).await;
    assert_eq!(completed["type"], "order", "{completed}");
    completed["order"].clone()
}

fn stock(sku: &str, location: &str, available: &str) -> Record {
    Record::StockLevel(StockLevel {
        sku: sku.into(),
        location: location.into(),
        available: dec(available),
        ..StockLevel::default()
    })
}

#[tokio::test]
async fn products_are_written_read_back_found_by_sku_and_updated_not_duplicated() {
    let connector = connector();
    let shirt_code = unique("SHIRT");
    let mug_code = unique("MUG");
    let outcomes = write(
        &connector,
        vec![
            (None, Record::Product(shirt(&shirt_code, &[("S", "19.99"), ("M", "21.50")]))),
            (None, Record::Product(simple(&mug_code, "7.25"))),
        ],
    )
    .await;
    assert!(matches!(outcomes[0], WriteOutcome::Created { .. }), "{outcomes:?}");
    eprintln!("medusa requests to create 2 products (with the first-use lookups): {}", connector.calls());
    let shirt_id = target(&outcomes[0]);
    let mug_id = target(&outcomes[1]);

    // Found by code (external_id) and, for the simple product, by its SKU alone.
    let found =
        connector.lookup(EntityKind::Product, &[shirt_code.clone(), mug_code.clone(), unique("NONE")]).await.unwrap();
    assert_eq!(found, vec![Some(shirt_id.clone()), Some(mug_id.clone()), None]);
    let variants = admin(&format!("/admin/product-variants?sku={shirt_code}-M&fields=id,product_id")).await;
    assert_eq!(variants["variants"][0]["product_id"], json!(shirt_id));

    let read = fetch_product(&connector, &shirt_id).await;
    assert_eq!(read.code, shirt_code);
    assert_eq!(read.title, format!("Shirt {shirt_code}"));
    assert_eq!(read.options, vec![ProductOption { name: "Size".into(), values: vec!["S".into(), "M".into()] }]);
    let skus: Vec<(String, Option<Money>)> = read.variants.iter().map(|v| (v.sku.clone(), v.price.clone())).collect();
    assert_eq!(skus, vec![(format!("{shirt_code}-M"), eur("21.5")), (format!("{shirt_code}-S"), eur("19.99"))]);
    assert!(read.variants.iter().all(|v| v.track_inventory));
    let mug = fetch_product(&connector, &mug_id).await;
    assert!(mug.options.is_empty(), "the synthetic Default option is not read back: {:?}", mug.options);
    assert_eq!(mug.variants[0].price, eur("7.25"));

    // A second write with the link: a new title, a new price, a new size, one size gone.
    let mut changed = shirt(&shirt_code, &[("M", "24.99"), ("XL", "26")]);
    changed.title = "Shirt, renamed".into();
    let calls = connector.calls();
    let outcomes = write(&connector, vec![(Some(shirt_id.clone()), Record::Product(changed))]).await;
    eprintln!("medusa requests to update a product (new size, one gone, new price): {}", connector.calls() - calls);
    assert!(matches!(&outcomes[0], WriteOutcome::Updated { target_id } if *target_id == shirt_id), "{outcomes:?}");
    let read = fetch_product(&connector, &shirt_id).await;
    assert_eq!(read.title, "Shirt, renamed");
    let skus: Vec<(String, Option<Money>)> = read.variants.iter().map(|v| (v.sku.clone(), v.price.clone())).collect();
    assert_eq!(skus, vec![(format!("{shirt_code}-M"), eur("24.99")), (format!("{shirt_code}-XL"), eur("26"))]);
    let same_code = admin(&format!("/admin/products?external_id={shirt_code}&fields=id")).await;
    assert_eq!(same_code["count"], json!(1), "updated, not duplicated: {same_code}");

    // A price list sets base prices (and a quantity tier) by SKU.
    let list = PriceList {
        code: "RETAIL-EUR".into(),
        name: "Retail".into(),
        currency: Currency::EUR,
        entries: vec![
            PriceEntry { sku: mug_code.clone(), min_quantity: Decimal::ONE, price: dec("6.5") },
            PriceEntry { sku: mug_code.clone(), min_quantity: dec("10"), price: dec("5") },
        ],
        ..PriceList::default()
    };
    let outcomes = write(&connector, vec![(None, Record::PriceList(list))]).await;
    target(&outcomes[0]);
    let mug = fetch_product(&connector, &mug_id).await;
    assert_eq!(mug.variants[0].price, eur("6.5"));
    let prices = admin(&format!("/admin/product-variants?sku={mug_code}&fields=*prices")).await;
    assert_eq!(prices["variants"][0]["prices"].as_array().unwrap().len(), 2, "{prices}");

    // A product Medusa refuses (a taken SKU) fails alone, with Medusa's reason.
    let outcomes = write(
        &connector,
        vec![
            (None, Record::Product(simple(&unique("NEW"), "1"))),
            (None, Record::Product(Product { code: unique("DUP"), ..simple(&mug_code, "1") })),
        ],
    )
    .await;
    assert!(matches!(outcomes[0], WriteOutcome::Created { .. }), "{outcomes:?}");
    match &outcomes[1] {
        WriteOutcome::Failed(error) => {
            assert!(matches!(error.kind, ErrorKind::InvalidRequest | ErrorKind::Conflict), "{error}");
            assert!(!error.retryable, "{error}");
        }
        other => panic!("a duplicate SKU must fail: {other:?}"),
    }
}

#[tokio::test]
async fn stock_is_set_and_read_per_location() {
    let connector = connector();
    let code = unique("STOCK");
    target(&write(&connector, vec![(None, Record::Product(simple(&code, "3")))]).await[0]);
    let outcomes =
        write(&connector, vec![(None, stock(&code, "main", "7")), (None, stock(&code, "outlet", "3"))]).await;
    let main_id = target(&outcomes[0]);
    target(&outcomes[1]);
    let found = connector.lookup(EntityKind::StockLevel, &[format!("{code}@main")]).await.unwrap();
    assert_eq!(found, vec![Some(main_id)]);
    let outcomes =
        write(&connector, vec![(None, stock(&code, "main", "5")), (None, stock(&code, "nowhere", "1"))]).await;
    target(&outcomes[0]);
    assert!(matches!(&outcomes[1], WriteOutcome::Failed(error) if error.kind == ErrorKind::InvalidRequest));
    let outcomes = write(&connector, vec![(None, stock(&unique("NO-SUCH-SKU"), "main", "1"))]).await;
    assert!(matches!(&outcomes[0], WriteOutcome::Failed(error) if error.kind == ErrorKind::NotFound), "{outcomes:?}");

    let (records, _) = read_all(&connector, EntityKind::StockLevel, Checkpoint::default(), 200).await;
    let mut levels: Vec<(String, Decimal, Option<Decimal>)> = records
        .into_iter()
        .filter_map(|(_, record)| match record {
            Record::StockLevel(level) if level.sku == code => Some((level.location, level.available, level.on_hand)),
            _ => None,
        })
        .collect();
    levels.sort();
    assert_eq!(levels, vec![("main".into(), dec("5"), Some(dec("5"))), ("outlet".into(), dec("3"), Some(dec("3")))]);
}

#[tokio::test]
async fn an_order_placed_at_checkout_is_read_then_shipped_with_tracking() {
    let connector = connector();
    let code = unique("ORDER");
    let product = shirt(&code, &[("S", "19.99"), ("M", "21.50")]);
    target(&write(&connector, vec![(None, Record::Product(product))]).await[0]);
    let outcomes = write(
        &connector,
        vec![(None, stock(&format!("{code}-S"), "main", "10")), (None, stock(&format!("{code}-M"), "main", "10"))],
    )
    .await;
    outcomes.iter().for_each(|outcome| drop(target(outcome)));
    let before = Checkpoint { watermark: Some(Utc::now() - chrono::Duration::seconds(5)), cursor: None };

    let email = format!("{}@example.com", unique("erika").to_lowercase());
    let placed = checkout(&email, &[(&format!("{code}-S"), 2), (&format!("{code}-M"), 1)]).await;
    let number = placed["display_id"].to_string();

    let (records, _) = read_all(&connector, EntityKind::Order, before.clone(), 50).await;
    let order = records
        .into_iter()
        .find_map(|(_, record)| match record {
            Record::Order(order) if order.number == number => Some(order),
            _ => None,
        })
        .unwrap_or_else(|| panic!("order {number} not read"));
    assert_eq!(order.currency, Currency::EUR);
    assert_eq!(order.customer.email.as_deref(), Some(email.as_str()));
    let mut lines: Vec<(String, Decimal, Decimal, Decimal)> =
        order.lines.iter().map(|l| (l.sku.clone(), l.quantity, l.unit_price, l.total)).collect();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            (format!("{code}-M"), dec("1"), dec("21.5"), dec("21.5")),
            (format!("{code}-S"), dec("2"), dec("19.99"), dec("39.98")),
        ]
    );
    assert_eq!(order.shipping_lines.len(), 1);
    assert_eq!(order.shipping_lines[0].price, dec("5"));
    assert_eq!(order.totals.subtotal, dec("61.48"));
    assert_eq!(order.totals.shipping_total, dec("5"));
    assert_eq!(order.totals.total, dec("66.48"));
    assert_eq!(order.financial_status, FinancialStatus::Authorized);
    assert_eq!(order.fulfillment_status, FulfillmentStatus::Unfulfilled);
    assert_eq!(order.shipping_address.as_ref().map(|a| a.country.as_str()), Some("DE"));
    assert_eq!(order.payments.len(), 1);

    // The customer the checkout made is read too.
    let (customers, _) = read_all(&connector, EntityKind::Customer, before.clone(), 50).await;
    let customer = customers
        .iter()
        .find_map(|(_, record)| match record {
            Record::Customer(customer) if customer.email.as_deref() == Some(email.as_str()) => Some(customer),
            _ => None,
        })
        .unwrap_or_else(|| panic!("customer {email} not read"));
    assert_eq!(customer.extra.get("has_account"), Some(&json!(false)));

    // The subscriber announced the order; the event names it.
    let order_id = placed["id"].as_str().unwrap().to_string();
    let (headers, body) = wait_for_event("order.placed", &order_id).await;
    let delivery = connector.verify(&headers, &body, Utc::now()).unwrap();
    let refs = connector.decode(delivery.topic.as_deref().unwrap(), &body).unwrap();
    assert_eq!(refs, Some(vec![EventRef { entity: EntityKind::Order, id: order_id.clone() }]));

    // Stock written while the order holds a reservation: `available` is what may still be
    // sold, so the 2 reserved S shirts are added to what Medusa stocks.
    let outcomes = write(&connector, vec![(None, stock(&format!("{code}-S"), "main", "10"))]).await;
    target(&outcomes[0]);
    let levels = admin(&format!("/admin/inventory-items?sku={code}-S&fields=id,*location_levels")).await;
    let level = &levels["inventory_items"][0]["location_levels"][0];
    assert_eq!(
        (&level["stocked_quantity"], &level["reserved_quantity"], &level["available_quantity"]),
        (&json!(12), &json!(2), &json!(10)),
        "{levels}"
    );

    // The ERP ships the S shirts with tracking: a fulfillment, then a shipment with the label.
    let shipment = Shipment {
        number: unique("WH-OUT"),
        order_number: number.clone(),
        location: Some("main".into()),
        lines: vec![ShipmentLine { sku: format!("{code}-S"), quantity: dec("2") }],
        tracking: vec![Tracking {
            carrier: "DHL".into(),
            number: "JJD000390007777".into(),
            url: Some("https://track.example/JJD000390007777".into()),
        }],
        ..Shipment::default()
    };
    let outcomes = write(&connector, vec![(None, Record::Shipment(shipment.clone()))]).await;
    assert!(matches!(outcomes[0], WriteOutcome::Created { .. }), "{outcomes:?}");
    let fulfillment_id = target(&outcomes[0]);
    // A replay (a crash before the link was stored) finds the same fulfillment.
    let outcomes = write(&connector, vec![(None, Record::Shipment(shipment))]).await;
    assert!(
        matches!(&outcomes[0], WriteOutcome::Updated { target_id } if *target_id == fulfillment_id),
        "{outcomes:?}"
    );
    let written = admin(&format!("/admin/orders/{order_id}?fields=id,*fulfillments,*fulfillments.labels")).await;
    let fulfillments = written["order"]["fulfillments"].as_array().unwrap();
    assert_eq!(fulfillments.len(), 1, "{written}");
    assert!(!fulfillments[0]["shipped_at"].is_null(), "{written}");
    assert_eq!(fulfillments[0]["labels"][0]["tracking_number"], "JJD000390007777");

    let (records, _) = read_all(&connector, EntityKind::Order, before.clone(), 50).await;
    let order = records
        .into_iter()
        .find_map(|(_, record)| match record {
            Record::Order(order) if order.number == number => Some(order),
            _ => None,
        })
        .unwrap();
    assert_eq!(order.fulfillment_status, FulfillmentStatus::PartiallyFulfilled);

    // The order is finished in the ERP: cancelling is refused once shipped, completing works.
    let status = |state| {
        Record::OrderStatus(OrderStatusChange {
            order_number: number.clone(),
            state,
            changed_at: Some(Utc::now()),
            ..OrderStatusChange::default()
        })
    };
    let outcomes = write(&connector, vec![(None, status(OrderState::Completed))]).await;
    assert_eq!(target(&outcomes[0]), order_id);
    let read = admin(&format!("/admin/orders/{order_id}?fields=id,status")).await;
    assert_eq!(read["order"]["status"], "completed", "{read}");
    let (changes, _) = read_all(&connector, EntityKind::OrderStatus, before, 50).await;
    let change = changes
        .iter()
        .find_map(|(_, record)| match record {
            Record::OrderStatus(change) if change.order_number == number => Some(change),
            _ => None,
        })
        .unwrap();
    assert_eq!(change.state, OrderState::Completed);
    eprintln!("medusa requests for checkout read, stock, shipment and status: {}", connector.calls());
}

/// The first delivery of `topic` about `id` (in `data.id` or `data.order_id`), waiting for it.
async fn wait_for_event(topic: &str, id: &str) -> Delivery {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = DELIVERIES
            .lock()
            .unwrap()
            .iter()
            .find(|(_, body)| {
                serde_json::from_slice::<Value>(body).is_ok_and(|event| {
                    event["type"] == topic
                        && (event["data"]["id"] == json!(id) || event["data"]["order_id"] == json!(id))
                })
            })
            .cloned();
        if let Some(found) = found {
            return found;
        }
        assert!(Instant::now() < deadline, "no {topic} event for {id} within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_incremental_read_picks_up_only_what_changed() {
    // No overlap, so that "only what changed" is exact (the overlap re-reads, skipped by hash).
    let connector = connector_with("overlap = \"0s\"");
    let price_code = unique("INC-PRICE");
    let title_code = unique("INC-TITLE");
    let quiet_code = unique("INC-QUIET");
    let outcomes = write(
        &connector,
        vec![
            (None, Record::Product(simple(&price_code, "10"))),
            (None, Record::Product(simple(&title_code, "10"))),
            (None, Record::Product(simple(&quiet_code, "10"))),
        ],
    )
    .await;
    let ids: Vec<String> = outcomes.iter().map(target).collect();
    let start = Checkpoint { watermark: Some(Utc::now() - chrono::Duration::seconds(30)), cursor: None };
    // Small pages, so that the three products (created in one batch, so possibly at one
    // instant) are read over several pages with the id tie-break.
    let (records, checkpoint) = read_all(&connector, EntityKind::Product, start, 1).await;
    let quiet_updated_at = records
        .iter()
        .find_map(|(id, record)| match record {
            Record::Product(product) if *id == ids[2] => product.updated_at,
            _ => None,
        })
        .expect("the quiet product has an updated_at");
    for id in &ids {
        assert!(records.iter().any(|(source_id, _)| source_id == id), "{id} not read at first");
    }
    let mut seen: Vec<&String> = records.iter().map(|(id, _)| id).filter(|id| ids.contains(id)).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3);
    tokio::time::sleep(Duration::from_millis(50)).await;

    // A price change touches only the variant; a title change only the product.
    let outcomes = write(
        &connector,
        vec![
            (Some(ids[0].clone()), Record::Product(simple(&price_code, "12.5"))),
            (Some(ids[1].clone()), Record::Product(Product { title: "Renamed".into(), ..simple(&title_code, "10") })),
        ],
    )
    .await;
    outcomes.iter().for_each(|outcome| drop(target(outcome)));
    let checkpoint_watermark = checkpoint.watermark;
    let (records, _) = read_all(&connector, EntityKind::Product, checkpoint, 50).await;
    let changed: Vec<&String> = records.iter().map(|(id, _)| id).collect();
    assert!(changed.contains(&&ids[0]), "the price change was missed");
    assert!(changed.contains(&&ids[1]), "the title change was missed");
    // The next run starts at the watermark itself (`$gte`): only a record updated at exactly
    // that instant is read again.
    let quiet = admin(&format!("/admin/product-variants?sku={quiet_code}&fields=id,updated_at")).await;
    let quiet_variant_updated_at = quiet["variants"][0]["updated_at"].as_str().unwrap().to_string();
    let at_watermark = checkpoint_watermark.is_some_and(|watermark| {
        quiet_updated_at == watermark
            || chrono::DateTime::parse_from_rfc3339(&quiet_variant_updated_at).is_ok_and(|at| at == watermark)
    });
    assert!(
        !changed.contains(&&ids[2]) || at_watermark,
        "an unchanged product was read again: product updated {quiet_updated_at}, variant {quiet_variant_updated_at}, watermark {checkpoint_watermark:?}"
    );
    let repriced = records.iter().find(|(id, _)| *id == ids[0]).unwrap();
    match &repriced.1 {
        Record::Product(product) => assert_eq!(product.variants[0].price, eur("12.5")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_subscribers_signed_events_are_verified_and_decoded() {
    let connector = connector();
    let code = unique("EVENT");
    let product_id = target(&write(&connector, vec![(None, Record::Product(simple(&code, "4")))]).await[0]);
    let (headers, body) = wait_for_event("product.created", &product_id).await;
    let delivery = connector.verify(&headers, &body, Utc::now()).unwrap();
    assert_eq!(delivery.topic.as_deref(), Some("product.created"));
    assert!(!delivery.delivery_id.is_empty());
    let refs = connector.decode("product.created", &body).unwrap();
    assert_eq!(refs, Some(vec![EventRef { entity: EntityKind::Product, id: product_id.clone() }]));
    let fetched = connector.fetch(EntityKind::Product, &[product_id]).await.unwrap();
    assert!(matches!(&fetched[0], Some(record) if matches!(&record.content, Ok(Record::Product(p)) if p.code == code)));

    // A changed body or a wrong secret is refused.
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let error = connector.verify(&headers, &tampered, Utc::now()).unwrap_err();
    assert_eq!(error.kind, ErrorKind::Auth);
    let unsigned: Vec<(String, String)> =
        headers.iter().filter(|(name, _)| name != "x-signature-sha256").cloned().collect();
    assert_eq!(connector.verify(&unsigned, &body, Utc::now()).unwrap_err().kind, ErrorKind::Auth);
}

#[tokio::test]
async fn a_wrong_api_key_is_an_auth_error_with_a_clear_message() {
    let server = server();
    let dir = std::env::temp_dir().join(format!("erpsync-medusa-test-{}", std::process::id()));
    let wrong = dir.join("wrong_key");
    std::fs::write(&wrong, "sk_wrong").unwrap();
    let text = format!(
        "url = \"{}\"\napi_key = {{ file = \"{}\" }}\nsales_channel = \"Default Sales Channel\"\ncurrency = \"EUR\"\n",
        server.url,
        wrong.display()
    );
    let connector = MedusaConnector::new("test-shop", toml::from_str(&text).unwrap()).unwrap();
    let error = connector
        .read_page(&ReadRequest { entity: EntityKind::Product, checkpoint: &Checkpoint::default(), page_size: 10 })
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Auth, "{error}");
    assert!(error.to_string().contains("secret API key"), "{error}");
}

#[tokio::test]
async fn fifty_new_products_are_one_batch_request() {
    let connector = connector();
    // Resolve the shop's names first, so that only the writes are counted.
    connector.lookup(EntityKind::StockLevel, &["none@main".to_string()]).await.unwrap();
    let prefix = unique("BULK");
    let records: Vec<(Option<String>, Record)> =
        (0..50).map(|n| (None, Record::Product(simple(&format!("{prefix}-{n:02}"), "9.99")))).collect();
    let calls = connector.calls();
    let started = Instant::now();
    let outcomes = write(&connector, records).await;
    let elapsed = started.elapsed();
    assert!(outcomes.iter().all(|outcome| matches!(outcome, WriteOutcome::Created { .. })), "{outcomes:?}");
    assert_eq!(connector.calls() - calls, 1, "one POST /admin/products/batch for 50 products");
    let mut ids: Vec<String> = outcomes.iter().map(target).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50);
    eprintln!("medusa: 50 products created in one batch request in {:.2} s", elapsed.as_secs_f64());
}

#[tokio::test]
async fn a_shipment_can_be_marked_delivered_and_an_order_cancelled() {
    let connector = connector_with("mark_delivered = true");
    let code = unique("DELIVER");
    target(&write(&connector, vec![(None, Record::Product(simple(&code, "12")))]).await[0]);
    target(&write(&connector, vec![(None, stock(&code, "main", "10"))]).await[0]);
    let before = Checkpoint { watermark: Some(Utc::now() - chrono::Duration::seconds(5)), cursor: None };
    let email = format!("{}@example.com", unique("max").to_lowercase());
    let shipped = checkout(&email, &[(&code, 1)]).await;
    let cancelled = checkout(&email, &[(&code, 2)]).await;

    // A shipment without lines ships everything left, and is marked delivered.
    let shipment = Shipment {
        number: unique("WH-OUT"),
        order_number: shipped["display_id"].to_string(),
        tracking: vec![Tracking { carrier: "UPS".into(), number: "1Z999".into(), url: None }],
        ..Shipment::default()
    };
    target(&write(&connector, vec![(None, Record::Shipment(shipment))]).await[0]);
    let id = shipped["id"].as_str().unwrap();
    let written = admin(&format!("/admin/orders/{id}?fields=id,*fulfillments")).await;
    assert!(!written["order"]["fulfillments"][0]["delivered_at"].is_null(), "{written}");

    let change = OrderStatusChange {
        order_number: cancelled["display_id"].to_string(),
        state: OrderState::Cancelled,
        changed_at: Some(Utc::now()),
        ..OrderStatusChange::default()
    };
    target(&write(&connector, vec![(None, Record::OrderStatus(change))]).await[0]);

    let (records, _) = read_all(&connector, EntityKind::Order, before, 50).await;
    let order = |number: String| {
        records
            .iter()
            .find_map(|(_, record)| match record {
                Record::Order(order) if order.number == number => Some(order.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("order {number} not read"))
    };
    assert_eq!(order(shipped["display_id"].to_string()).fulfillment_status, FulfillmentStatus::Fulfilled);
    let gone = order(cancelled["display_id"].to_string());
    assert!(gone.cancellation.is_some(), "{gone:?}");
    // Orders are found by their exact number (the admin API has no display_id filter and
    // drops unknown filters silently: a lookup once returned the first orders of the shop).
    let numbers = [cancelled["display_id"].to_string(), shipped["display_id"].to_string()];
    let keys: Vec<String> = numbers.iter().map(|number| format!("{number}#")).collect();
    let found = connector.lookup(EntityKind::OrderStatus, &keys).await.unwrap();
    assert_eq!(found, vec![cancelled["id"].as_str().map(str::to_string), shipped["id"].as_str().map(str::to_string)]);
    // An unknown order number is a "not found" the engine retries, not a crash.
    let unknown =
        OrderStatusChange { order_number: "999999".into(), state: OrderState::Cancelled, ..Default::default() };
    let outcomes = write(&connector, vec![(None, Record::OrderStatus(unknown))]).await;
    assert!(matches!(&outcomes[0], WriteOutcome::Failed(error) if error.kind == ErrorKind::NotFound), "{outcomes:?}");
}

#[tokio::test]
async fn an_invoice_is_kept_in_its_orders_metadata_beside_what_was_there() {
    let connector = connector();
    let code = unique("INVOICE");
    target(&write(&connector, vec![(None, Record::Product(simple(&code, "12")))]).await[0]);
    target(&write(&connector, vec![(None, stock(&code, "main", "10"))]).await[0]);
    let email = format!("{}@example.com", unique("inv").to_lowercase());
    let placed = checkout(&email, &[(&code, 1)]).await;
    let number = placed["display_id"].to_string();
    let id = placed["id"].as_str().unwrap();
    let invoice = |invoice_number: &str, total: &str| Document {
        kind: DocumentKind::Invoice,
        number: invoice_number.into(),
        order_number: Some(number.clone()),
        issued_at: Some(Utc::now()),
        currency: Currency::EUR,
        totals: OrderTotals { total: dec(total), ..OrderTotals::default() },
        pdf: Some(Pdf::Base64 { data: "UEsDBA==".into(), file_name: Some(format!("{invoice_number}.odt")) }),
        ..Document::default()
    };
    let outcomes = write(&connector, vec![(None, Record::Document(invoice("INV/1", "17.00")))]).await;
    assert_eq!(target(&outcomes[0]), id, "the document's target is its order");
    let metadata = &admin(&format!("/admin/orders/{id}?fields=id,metadata")).await["order"]["metadata"];
    assert_eq!(metadata["erpsync_invoice_number"], "INV/1", "{metadata}");
    assert_eq!(metadata["erpsync_invoice_total"], "17.00");
    assert_eq!(metadata["erpsync_invoice_currency"], "EUR");
    assert_eq!(metadata["erpsync_invoice_file"], "INV/1.odt");
    // The file was uploaded (under a name without folders); its URL answers the bytes.
    let url = metadata["erpsync_invoice_url"].as_str().unwrap_or_else(|| panic!("no URL: {metadata}")).to_string();
    assert!(url.ends_with("INV_1.odt"), "{url}");
    let served = reqwest::get(&url).await.unwrap();
    assert!(served.status().is_success(), "{url}: {}", served.status());
    assert_eq!(served.bytes().await.unwrap().as_ref(), b"PK\x03\x04", "the uploaded bytes");

    // The same invoice again: found in the metadata, not uploaded nor written again (one
    // request: the order by its number).
    let calls = connector.calls();
    let outcomes = write(&connector, vec![(None, Record::Document(invoice("INV/1", "17.00")))]).await;
    assert_eq!(target(&outcomes[0]), id);
    assert_eq!(connector.calls() - calls, 1, "only the order was read");
    let again = &admin(&format!("/admin/orders/{id}?fields=id,metadata")).await["order"]["metadata"];
    assert_eq!(again["erpsync_invoice_url"], url.as_str(), "{again}");

    // A credit note later keeps the invoice's keys; a corrected invoice replaces them.
    let credit = Document { kind: DocumentKind::CreditNote, ..invoice("CN/1", "-17.00") };
    target(
        &write(&connector, vec![(None, Record::Document(credit)), (None, Record::Document(invoice("INV/2", "12.00")))])
            .await[0],
    );
    let metadata = &admin(&format!("/admin/orders/{id}?fields=id,metadata")).await["order"]["metadata"];
    assert_eq!(metadata["erpsync_credit_note_number"], "CN/1", "{metadata}");
    assert_eq!(metadata["erpsync_invoice_number"], "INV/2", "{metadata}");

    // A document of an order the shop does not have waits (retryable not found).
    let orphan = Document { order_number: Some("999999".into()), ..invoice("INV/3", "1") };
    let outcomes = write(&connector, vec![(None, Record::Document(orphan))]).await;
    assert!(
        matches!(&outcomes[0], WriteOutcome::Failed(error) if error.kind == ErrorKind::NotFound && error.retryable),
        "{outcomes:?}"
    );
}
