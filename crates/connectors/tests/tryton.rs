//! The `tryton` connector against a real Tryton 8.2 server.
//!
//! `tools/tryton/ensure.py serve` installs Tryton from PyPI into a cached venv the first time
//! (about a minute), copies the configured database snapshot and starts trytond on a free port;
//! one server serves this whole test binary. The script stops the server when this process
//! exits for any reason (its standard input closes). If Python, the install or the server
//! fails, every test fails with the script's message: these tests are never skipped.
//! `ERPSYNC_PYTHON` names another Python 3 interpreter.
//!
//! Each test works on its own SKUs, e-mails and order numbers, so tests share the server.

use chrono::Utc;
use erpsync_connectors::tryton::{TrytonConfig, TrytonConnector};
use erpsync_connectors::{ErrorKind, ReadRequest, Sink, Source, WriteBatch, WriteItem, WriteOutcome};
use erpsync_model::{
    Address, Checkpoint, Currency, Customer, DocumentKind, EntityKind, Money, Order, OrderLine, OrderParty, OrderState,
    OrderStatusChange, OrderTotals, Pdf, Product, Record, Refund, RefundLine, Variant,
};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Instant;

struct Server {
    url: String,
    database: String,
    username: String,
    password_file: String,
    ids: Value,
    // Kept open for the life of the process: when it closes, the script stops trytond.
    _stdin: ChildStdin,
    _child: Child,
}

static SERVER: OnceLock<Server> = OnceLock::new();

/// Tests take turns: Tryton on SQLite hands the same sequence number (party code) to two
/// transactions that run at once, so concurrent creates of parties fail with "The code on
/// party must be unique". That is the test database's limit, not the connector's: production
/// Tryton runs on PostgreSQL.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// The child lives as long as the test process; it is never waited for on purpose: the script
// notices the process ending through its standard input.
#[allow(clippy::zombie_processes)]
fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        let started = Instant::now();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tools/tryton/ensure.py");
        let python = std::env::var("ERPSYNC_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(&python)
            .arg(script)
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot run {python} {script} serve ({error}): the Tryton tests need Python 3 with the venv module")
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
                    "the Tryton test server could not be installed or started: {script} serve ended ({status}) without READY; its messages are above (stderr)"
                );
            }
            if let Some(ready) = line.strip_prefix("READY ") {
                let ready: Value = serde_json::from_str(ready).expect("READY is followed by JSON");
                eprintln!(
                    "tryton test server at {} ready in {:.1} s (cached install: {}, trytond startup {} s)",
                    ready["url"], started.elapsed().as_secs_f64(), ready["cached"], ready["startup_seconds"]
                );
                return Server {
                    url: ready["url"].as_str().unwrap().to_string(),
                    database: ready["database"].as_str().unwrap().to_string(),
                    username: ready["username"].as_str().unwrap().to_string(),
                    password_file: ready["password_file"].as_str().unwrap().to_string(),
                    ids: ready["ids"].clone(),
                    _stdin: stdin,
                    _child: child,
                };
            }
        }
    })
}

fn connector_with(extra: &str) -> TrytonConnector {
    let server = server();
    let text = format!(
        r#"
        url = "{}"
        database = "{}"
        username = "{}"
        password = {{ file = "{}" }}
        company = "erpsync Test Company"
        web_shop = "erpsync"
        account_category = "Goods"
        warehouses = {{ main = "WH", outlet = "WH2" }}
        {extra}
        "#,
        server.url, server.database, server.username, server.password_file
    );
    let config: TrytonConfig = toml::from_str(&text).unwrap();
    assert_eq!(config.validate(), Vec::<(String, String)>::new());
    TrytonConnector::new("test-erp", config).unwrap()
}

fn connector() -> TrytonConnector {
    connector_with("")
}

/// A prefix unique to this test and process, so that tests sharing the server never collide.
fn unique(name: &str) -> String {
    format!("{name}-{}-{}", std::process::id(), Utc::now().timestamp_micros() % 1_000_000_000)
}

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn usd(text: &str) -> Option<Money> {
    Some(Money::new(dec(text), Currency::USD))
}

fn product(code: &str, variants: &[(&str, &str, &str)]) -> Product {
    Product {
        code: code.into(),
        title: format!("Shirt {code}"),
        variants: variants
            .iter()
            .map(|(sku, title, price)| Variant {
                sku: sku.to_string(),
                title: Some(title.to_string()),
                price: usd(price),
                track_inventory: true,
                ..Variant::default()
            })
            .collect(),
        ..Product::default()
    }
}

async fn write(connector: &TrytonConnector, records: Vec<(Option<String>, Record)>) -> Vec<WriteOutcome> {
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

/// Every page of `entity` from `checkpoint`: the records and the checkpoint after the last page.
async fn read_all(
    connector: &TrytonConnector,
    entity: EntityKind,
    checkpoint: Checkpoint,
) -> (Vec<Record>, Checkpoint) {
    let mut checkpoint = checkpoint;
    let mut records = Vec::new();
    for _ in 0..1000 {
        let page = connector.read_page(&ReadRequest { entity, checkpoint: &checkpoint, page_size: 200 }).await.unwrap();
        for record in page.records {
            match record.content {
                Ok(record) => records.push(record),
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

async fn call(connector: &TrytonConnector, model: &str, method: &str, args: Vec<Value>) -> Value {
    connector.execute(model, method, args, None, "test setup").await.unwrap()
}

fn find_product<'a>(records: &'a [Record], code: &str) -> Option<&'a Product> {
    records.iter().find_map(|record| match record {
        Record::Product(product) if product.code == code => Some(product),
        _ => None,
    })
}

async fn create_product(connector: &TrytonConnector, code: &str) -> String {
    let outcomes = write(connector, vec![(None, Record::Product(product(code, &[(code, "Only", "20")])))]).await;
    target(&outcomes[0])
}

/// Receives `quantity` of the variant `sku` into a warehouse's storage zone.
async fn receive(connector: &TrytonConnector, sku: &str, storage: &Value, quantity: f64) {
    let ids = &server().ids;
    let found = call(
        connector,
        "product.product",
        "search",
        vec![json!([["code", "=", sku]]), json!(0), json!(1), Value::Null],
    )
    .await;
    let moves = call(
        connector,
        "stock.move",
        "create",
        vec![json!([{
            "product": found[0], "quantity": quantity, "unit": ids["unit"],
            "from_location": ids["supplier_location"], "to_location": storage,
            "unit_price": {"__class__": "Decimal", "decimal": "8"}, "currency": ids["currency"], "company": ids["company"],
        }])],
    )
    .await;
    call(connector, "stock.move", "do", vec![moves]).await;
}

fn order(number: &str, email: &str, sku: &str, quantity: &str) -> Order {
    let quantity = dec(quantity);
    let total = quantity * dec("20");
    Order {
        number: number.into(),
        currency: Currency::USD,
        placed_at: Some(Utc::now()),
        customer: OrderParty {
            email: Some(email.into()),
            first_name: Some("Ada".into()),
            last_name: Some("Buyer".into()),
            ..OrderParty::default()
        },
        shipping_address: Some(Address {
            first_name: Some("Ada".into()),
            last_name: Some("Buyer".into()),
            line1: "1 Test Road".into(),
            city: "Springfield".into(),
            postal_code: Some("12345".into()),
            country: "US".into(),
            ..Address::default()
        }),
        lines: vec![OrderLine {
            sku: sku.into(),
            title: "Test item".into(),
            quantity,
            unit_price: dec("20"),
            total,
            ..OrderLine::default()
        }],
        totals: OrderTotals { subtotal: total, total, ..OrderTotals::default() },
        ..Order::default()
    }
}

async fn sale_of(connector: &TrytonConnector, number: &str) -> Vec<Value> {
    let shop = &server().ids["web_shop"];
    let found = call(
        connector,
        "sale.sale",
        "search_read",
        vec![
            json!([["web_shop", "=", shop], ["web_id", "=", number]]),
            json!(0),
            Value::Null,
            Value::Null,
            json!(["state", "invoice_state", "shipment_state", "invoices", "shipments", "party", "lines"]),
        ],
    )
    .await;
    found.as_array().unwrap().clone()
}

#[tokio::test]
async fn products_with_variants_are_written_then_read_back() {
    let _turn = TURN.lock().await;
    let connector = connector();
    let code = unique("TS");
    let shirt = product(&code, &[(&format!("{code}-S"), "Small", "20.00"), (&format!("{code}-M"), "Medium", "22.50")]);
    let calls_before = connector.client().calls();
    let outcomes = write(&connector, vec![(None, Record::Product(shirt.clone()))]).await;
    let template = match &outcomes[0] {
        WriteOutcome::Created { target_id } => target_id.clone(),
        other => panic!("expected a creation, got {other:?}"),
    };

    let (records, _) = read_all(&connector, EntityKind::Product, Checkpoint::default()).await;
    let read = find_product(&records, &code).expect("the written product is read back by its code");
    assert_eq!(read.title, shirt.title);
    let variants: Vec<(&str, Option<&str>, Option<Decimal>)> = read
        .variants
        .iter()
        .map(|variant| {
            (variant.sku.as_str(), variant.title.as_deref(), variant.price.as_ref().map(|price| price.amount))
        })
        .collect();
    assert_eq!(
        variants,
        vec![
            (format!("{code}-S").as_str(), Some("Small"), Some(dec("20"))),
            (format!("{code}-M").as_str(), Some("Medium"), Some(dec("22.5"))),
        ]
    );
    assert_eq!(read.extra.get("tryton_template_id"), Some(&json!(template.parse::<i64>().unwrap())));
    // Shops need an option to tell variants apart: the variants' descriptions.
    assert_eq!(
        read.options,
        vec![erpsync_model::ProductOption { name: "Variant".into(), values: vec!["Small".into(), "Medium".into()] }]
    );
    assert_eq!(
        read.variants[1].options,
        vec![erpsync_model::OptionValue { option: "Variant".into(), value: "Medium".into() }]
    );

    // Found again by product code and by a variant's SKU; unknown keys find nothing.
    let keys = vec![code.clone(), format!("{code}-M"), format!("{code}-XL")];
    let found = connector.lookup(EntityKind::Product, &keys).await.unwrap();
    assert_eq!(found, vec![Some(template.clone()), Some(template.clone()), None]);

    // An update by id changes a price, adds a variant and archives the one gone from the source.
    let mut changed =
        product(&code, &[(&format!("{code}-S"), "Small", "19.00"), (&format!("{code}-L"), "Large", "24.00")]);
    changed.title = "Shirt renamed".into();
    let outcomes = write(&connector, vec![(Some(template.clone()), Record::Product(changed))]).await;
    assert!(matches!(&outcomes[0], WriteOutcome::Updated { target_id } if *target_id == template), "{outcomes:?}");
    let (records, _) = read_all(&connector, EntityKind::Product, Checkpoint::default()).await;
    let read = find_product(&records, &code).unwrap();
    assert_eq!(read.title, "Shirt renamed");
    let active: Vec<(String, Option<Decimal>)> = read
        .variants
        .iter()
        .filter(|variant| variant.extra.get("active").is_none())
        .map(|variant| (variant.sku.clone(), variant.price.as_ref().map(|price| price.amount)))
        .collect();
    assert_eq!(active, vec![(format!("{code}-S"), Some(dec("19"))), (format!("{code}-L"), Some(dec("24")))]);
    assert!(read.variants.iter().any(|v| v.sku == format!("{code}-M") && v.extra.get("active") == Some(&json!(false))));
    eprintln!("products test: {} JSON-RPC calls", connector.client().calls() - calls_before);
}

#[tokio::test]
async fn a_batch_with_a_duplicate_sku_fails_only_that_product() {
    let _turn = TURN.lock().await;
    let connector = connector();
    let taken = unique("DUP");
    create_product(&connector, &taken).await;
    let fresh = unique("NEW");
    let duplicate = product(&format!("{taken}X"), &[(&taken, "Clash", "5")]);
    let outcomes = write(
        &connector,
        vec![(None, Record::Product(product(&fresh, &[(&fresh, "Fine", "5")]))), (None, Record::Product(duplicate))],
    )
    .await;
    assert!(matches!(outcomes[0], WriteOutcome::Created { .. }), "{outcomes:?}");
    match &outcomes[1] {
        WriteOutcome::Failed(error) => {
            assert_eq!(error.kind, ErrorKind::InvalidRequest, "{error}");
            assert!(!error.retryable, "bad data is not retried: {error}");
            assert!(error.to_string().contains("tryton refused it"), "{error}");
            assert!(error.to_string().contains(&taken), "the message names the record: {error}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    // A price in another currency than the company's is refused before any call.
    let euros = Product {
        variants: vec![Variant {
            sku: unique("EUR"),
            price: Some(Money::new(dec("1"), Currency::EUR)),
            ..Variant::default()
        }],
        ..Product::default()
    };
    let outcomes = write(&connector, vec![(None, Record::Product(euros))]).await;
    assert!(matches!(&outcomes[0], WriteOutcome::Failed(error) if error.message.contains("EUR")), "{outcomes:?}");
}

#[tokio::test]
async fn incremental_read_picks_up_a_change() {
    let _turn = TURN.lock().await;
    let connector = connector_with(r#"overlap = "0s""#);
    let old = unique("OLD");
    let changed = unique("CHG");
    create_product(&connector, &old).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let changed_template = create_product(&connector, &changed).await;
    let (records, checkpoint) = read_all(&connector, EntityKind::Product, Checkpoint::default()).await;
    assert!(find_product(&records, &old).is_some() && find_product(&records, &changed).is_some());
    assert!(checkpoint.watermark.is_some() && checkpoint.cursor.is_none());

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // A template-only write: Tryton does not touch the variants' write_date for it.
    call(
        &connector,
        "product.template",
        "write",
        vec![json!([changed_template.parse::<i64>().unwrap()]), json!({"name": "Changed name"})],
    )
    .await;
    let (records, after) = read_all(&connector, EntityKind::Product, checkpoint.clone()).await;
    let read = find_product(&records, &changed).expect("the changed product is read again");
    assert_eq!(read.title, "Changed name");
    assert!(find_product(&records, &old).is_none(), "an unchanged product before the watermark is not read again");
    assert!(after.watermark >= checkpoint.watermark);
}

#[tokio::test]
async fn a_customer_is_found_by_email_and_completed() {
    let _turn = TURN.lock().await;
    let connector = connector();
    let email = format!("{}@Example.com", unique("Jane.Doe"));
    let customer = Customer {
        email: Some(email.clone()),
        first_name: Some("Jane".into()),
        last_name: Some("Doe".into()),
        addresses: vec![Address {
            line1: "42 Elm Street".into(),
            city: "Beverly Hills".into(),
            postal_code: Some("90210".into()),
            country: "US".into(),
            ..Address::default()
        }],
        ..Customer::default()
    };
    let outcomes = write(&connector, vec![(None, Record::Customer(customer.clone()))]).await;
    let party = match &outcomes[0] {
        WriteOutcome::Created { target_id } => target_id.clone(),
        other => panic!("expected a creation, got {other:?}"),
    };
    let found = connector
        .lookup(EntityKind::Customer, &[email.to_lowercase(), "nobody_here@example.com".into()])
        .await
        .unwrap();
    assert_eq!(found, vec![Some(party.clone()), None], "found by e-mail whatever its case; `_` is no wildcard");

    let mut again = customer.clone();
    again.phone = Some("+1 555 0100".into());
    let outcomes = write(&connector, vec![(Some(party.clone()), Record::Customer(again))]).await;
    assert!(matches!(&outcomes[0], WriteOutcome::Updated { target_id } if *target_id == party), "{outcomes:?}");
    let party_id = party.parse::<i64>().unwrap();
    let mechanisms = call(
        &connector,
        "party.contact_mechanism",
        "search_read",
        vec![
            json!([["party", "=", party_id]]),
            json!(0),
            Value::Null,
            json!([["id", "ASC"]]),
            json!(["type", "value"]),
        ],
    )
    .await;
    let kinds: Vec<(&str, &str)> = mechanisms
        .as_array()
        .unwrap()
        .iter()
        .map(|row| (row["type"].as_str().unwrap(), row["value"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, vec![("email", email.as_str()), ("phone", "+1 555 0100")]);
    let addresses = call(&connector, "party.address", "search_count", vec![json!([["party", "=", party_id]])]).await;
    assert_eq!(addresses, json!(1), "the same address is not added twice");
}

#[tokio::test]
async fn an_order_imported_twice_exists_once_confirmed() {
    let _turn = TURN.lock().await;
    let connector = connector();
    let sku = unique("ORD");
    create_product(&connector, &sku).await;
    let number = unique("W");
    let email = format!("{}@example.com", unique("buyer"));
    let record = Record::Order(order(&number, &email, &sku, "2"));
    let outcomes = write(&connector, vec![(None, record.clone())]).await;
    let sale = match &outcomes[0] {
        WriteOutcome::Created { target_id } => target_id.clone(),
        other => panic!("expected a creation, got {other:?}"),
    };
    // The same batch replayed (the link was never stored): found by web shop + web id.
    let outcomes = write(&connector, vec![(None, record)]).await;
    assert!(matches!(&outcomes[0], WriteOutcome::Updated { target_id } if *target_id == sale), "{outcomes:?}");
    let sales = sale_of(&connector, &number).await;
    assert_eq!(sales.len(), 1, "the order exists once");
    assert_eq!(sales[0]["state"], json!("processing"), "quoted, confirmed and processed: {:?}", sales[0]);
    assert_eq!(sales[0]["shipment_state"], json!("waiting"));
    assert_eq!(
        connector.lookup(EntityKind::Order, std::slice::from_ref(&number)).await.unwrap(),
        vec![Some(sale.clone())]
    );

    let (records, _) = read_all(&connector, EntityKind::OrderStatus, Checkpoint::default()).await;
    let status = records
        .iter()
        .find_map(|record| match record {
            Record::OrderStatus(change) if change.order_number == number => Some(change.clone()),
            _ => None,
        })
        .expect("the sale's status is read by its order number");
    assert_eq!(status.state, OrderState::Processing);

    // An unknown SKU waits (retryable), it is not a dead letter at once.
    let outcomes =
        write(&connector, vec![(None, Record::Order(order(&unique("W"), &email, "NO-SUCH-SKU", "1")))]).await;
    assert!(
        matches!(&outcomes[0], WriteOutcome::Failed(error) if error.kind == ErrorKind::NotFound && error.retryable),
        "{outcomes:?}"
    );
}

/// An order the shop cancelled before it reached Tryton is imported (kept for the record) and
/// cancelled, never confirmed; written again, it stays one cancelled sale.
#[tokio::test]
async fn an_order_cancelled_before_import_becomes_a_cancelled_sale_once() {
    let _turn = TURN.lock().await;
    let connector = connector();
    let sku = unique("CXL");
    create_product(&connector, &sku).await;
    let number = unique("W");
    let mut cancelled = order(&number, &format!("{}@example.com", unique("buyer")), &sku, "1");
    cancelled.cancellation = Some(erpsync_model::Cancellation::default());
    let record = Record::Order(cancelled);
    let outcomes = write(&connector, vec![(None, record.clone())]).await;
    assert!(matches!(&outcomes[0], WriteOutcome::Created { .. }), "{outcomes:?}");
    let outcomes = write(&connector, vec![(None, record)]).await;
    assert!(matches!(&outcomes[0], WriteOutcome::Updated { .. }), "{outcomes:?}");
    let sales = sale_of(&connector, &number).await;
    assert_eq!(sales.len(), 1, "{sales:?}");
    assert_eq!(sales[0]["state"], json!("cancelled"), "{:?}", sales[0]);
}

#[tokio::test]
async fn an_order_in_euros_with_tax_included_prices_becomes_a_net_euro_sale() {
    let _turn = TURN.lock().await;
    let connector = connector();
    let sku = unique("VAT");
    create_product(&connector, &sku).await;
    let number = unique("W");
    let email = format!("{}@example.com", unique("buyer"));
    // Two at 24.00 gross with 20 % VAT (8.00 in all), a 4.80 gross discount (0.80 of VAT).
    let mut gross = order(&number, &email, &sku, "2");
    gross.currency = Currency::EUR;
    gross.prices_include_tax = true;
    gross.lines[0].unit_price = dec("24");
    gross.lines[0].discount = dec("4.80");
    gross.lines[0].total = dec("43.20");
    gross.lines[0].tax_lines =
        vec![erpsync_model::TaxLine { title: "VAT 20%".into(), rate: dec("0.2"), amount: dec("7.20") }];
    gross.totals =
        OrderTotals { subtotal: dec("43.20"), tax_total: dec("7.20"), total: dec("43.20"), ..OrderTotals::default() };
    let outcomes = write(&connector, vec![(None, Record::Order(gross))]).await;
    target(&outcomes[0]);
    let sale = &sale_of(&connector, &number).await[0];
    let rows = call(
        &connector,
        "sale.sale",
        "read",
        vec![json!([sale["id"]]), json!(["currency.code", "untaxed_amount", "lines"])],
    )
    .await;
    assert_eq!(rows[0]["currency."]["code"], "EUR", "{rows}");
    let line = call(&connector, "sale.line", "read", vec![rows[0]["lines"].clone(), json!(["unit_price"])]).await;
    let unit_price = dec(line[0]["unit_price"]["decimal"].as_str().unwrap_or_default());
    assert_eq!(unit_price, dec("18"), "(48.00 − 4.80 − 7.20) / 2: {line}");

    // Tax-inclusive prices whose tax the shop did not itemise cannot be made net: refused.
    let mut unknown = order(&unique("W"), &email, &sku, "1");
    unknown.prices_include_tax = true;
    unknown.totals.tax_total = dec("3.33");
    let outcomes = write(&connector, vec![(None, Record::Order(unknown))]).await;
    assert!(
        matches!(&outcomes[0], WriteOutcome::Failed(error) if error.kind == ErrorKind::InvalidRequest && error.message.contains("include tax")),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn quotations_are_confirmed_or_cancelled_by_status() {
    let _turn = TURN.lock().await;
    let connector = connector_with("confirm_orders = false");
    let sku = unique("Q");
    create_product(&connector, &sku).await;
    let email = format!("{}@example.com", unique("q"));
    let (first, second) = (unique("WQ1"), unique("WQ2"));
    let outcomes = write(
        &connector,
        vec![
            (None, Record::Order(order(&first, &email, &sku, "1"))),
            (None, Record::Order(order(&second, &email, &sku, "1"))),
        ],
    )
    .await;
    assert!(outcomes.iter().all(|outcome| matches!(outcome, WriteOutcome::Created { .. })), "{outcomes:?}");
    assert_eq!(sale_of(&connector, &first).await[0]["state"], json!("quotation"));
    // The customer was created once and found by e-mail for the second order.
    assert_eq!(sale_of(&connector, &first).await[0]["party"], sale_of(&connector, &second).await[0]["party"]);

    let status = |number: &str, state: OrderState| {
        Record::OrderStatus(OrderStatusChange {
            order_number: number.into(),
            state,
            changed_at: Some(Utc::now()),
            ..OrderStatusChange::default()
        })
    };
    let outcomes = write(
        &connector,
        vec![(None, status(&first, OrderState::Processing)), (None, status(&second, OrderState::Cancelled))],
    )
    .await;
    assert!(outcomes.iter().all(|outcome| matches!(outcome, WriteOutcome::Updated { .. })), "{outcomes:?}");
    assert_eq!(sale_of(&connector, &first).await[0]["state"], json!("processing"));
    assert_eq!(sale_of(&connector, &second).await[0]["state"], json!("cancelled"));

    let outcomes = write(&connector, vec![(None, status(&first, OrderState::Cancelled))]).await;
    match &outcomes[0] {
        WriteOutcome::Failed(error) => {
            assert!(!error.retryable, "{error}");
            assert!(error.message.contains("cancels only draft and quotation"), "{error}");
        }
        other => panic!("a processing sale cannot be cancelled: {other:?}"),
    }
}

#[tokio::test]
async fn stock_is_read_per_warehouse() {
    let _turn = TURN.lock().await;
    let connector = connector();
    let sku = unique("STK");
    create_product(&connector, &sku).await;
    let ids = &server().ids;
    receive(&connector, &sku, &ids["storage"], 10.0).await;
    receive(&connector, &sku, &ids["storage2"], 3.0).await;
    let (records, checkpoint) = read_all(&connector, EntityKind::StockLevel, Checkpoint::default()).await;
    let mut levels: Vec<(String, Decimal, Option<Decimal>)> = records
        .iter()
        .filter_map(|record| match record {
            Record::StockLevel(stock) if stock.sku == sku => {
                Some((stock.location.clone(), stock.available, stock.on_hand))
            }
            _ => None,
        })
        .collect();
    levels.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(levels, vec![("main".into(), dec("10"), Some(dec("10"))), ("outlet".into(), dec("3"), Some(dec("3")))]);
    assert_eq!(checkpoint, Checkpoint::default(), "stock is read in full each run");
}

/// Imports an order for a fresh product with stock, and returns (sku, order number, sale row).
async fn confirmed_order(connector: &TrytonConnector, name: &str) -> (String, String, Value) {
    let sku = unique(name);
    create_product(connector, &sku).await;
    receive(connector, &sku, &server().ids["storage"], 5.0).await;
    let number = unique(&format!("{name}-W"));
    let email = format!("{}@example.com", unique("ship"));
    let outcomes = write(connector, vec![(None, Record::Order(order(&number, &email, &sku, "2")))]).await;
    target(&outcomes[0]);
    let sale = sale_of(connector, &number).await.remove(0);
    (sku, number, sale)
}

#[tokio::test]
async fn a_shipment_state_is_read_back() {
    let _turn = TURN.lock().await;
    let connector = connector();
    let (sku, number, sale) = confirmed_order(&connector, "SHP").await;
    let shipments = sale["shipments"].clone();
    assert_eq!(shipments.as_array().unwrap().len(), 1, "{sale}");
    call(&connector, "stock.shipment.out", "write", vec![shipments.clone(), json!({"reference": "TRACK-123"})]).await;
    for step in ["assign_try", "pick", "pack", "do"] {
        call(&connector, "stock.shipment.out", step, vec![shipments.clone()]).await;
    }
    let (records, _) = read_all(&connector, EntityKind::Shipment, Checkpoint::default()).await;
    let shipment = records
        .iter()
        .find_map(|record| match record {
            Record::Shipment(shipment) if shipment.order_number == number => Some(shipment.clone()),
            _ => None,
        })
        .expect("the shipment is read with its sale's order number");
    assert_eq!(shipment.extra.get("tryton_state"), Some(&json!("done")));
    assert_eq!(shipment.shipped_at.map(|at| at.date_naive()), Some(Utc::now().date_naive()));
    assert_eq!(shipment.location.as_deref(), Some("main"));
    assert_eq!(shipment.lines.len(), 1);
    assert_eq!((shipment.lines[0].sku.as_str(), shipment.lines[0].quantity), (sku.as_str(), dec("2")));
    assert_eq!(shipment.tracking.first().map(|tracking| tracking.number.as_str()), Some("TRACK-123"));
}

#[tokio::test]
async fn a_posted_invoice_is_read_with_its_report() {
    let _turn = TURN.lock().await;
    let connector = connector();
    let (sku, number, sale) = confirmed_order(&connector, "INV").await;
    let invoices = sale["invoices"].clone();
    assert_eq!(invoices.as_array().unwrap().len(), 1, "{sale}");
    call(&connector, "account.invoice", "post", vec![invoices.clone()]).await;
    let (records, _) = read_all(&connector, EntityKind::Document, Checkpoint::default()).await;
    let document = records
        .iter()
        .find_map(|record| match record {
            Record::Document(document) if document.order_number.as_deref() == Some(number.as_str()) => {
                Some(document.clone())
            }
            _ => None,
        })
        .expect("the posted invoice is read with its order number");
    assert_eq!(document.kind, DocumentKind::Invoice);
    assert!(document.number.starts_with("INV/"), "{}", document.number);
    assert_eq!(document.totals.total, dec("40"));
    assert_eq!(document.lines.len(), 1);
    assert_eq!(document.lines[0].sku.as_deref(), Some(sku.as_str()));
    assert_eq!((document.lines[0].quantity, document.lines[0].unit_price), (dec("2"), dec("20")));
    let Some(Pdf::Base64 { data, file_name }) = &document.pdf else { panic!("no report: {:?}", document.pdf) };
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data).unwrap();
    let format = document.extra.get("report_format").and_then(Value::as_str).unwrap().to_string();
    // Without LibreOffice on the server Tryton keeps the template's format (flat ODT).
    match format.as_str() {
        "pdf" => assert!(bytes.starts_with(b"%PDF"), "a PDF starts with %PDF"),
        "fodt" | "odt" => {
            let text = String::from_utf8_lossy(&bytes);
            assert!(text.contains("office:document") || bytes.starts_with(b"PK"), "not an OpenDocument");
            assert!(text.contains(&document.number) || bytes.starts_with(b"PK"), "the report shows the invoice number");
        }
        other => panic!("unexpected report format {other:?}"),
    }
    assert_eq!(file_name.as_deref(), Some(format!("{}.{format}", document.number.replace('/', "-")).as_str()));
}

#[tokio::test]
async fn an_expired_session_is_renewed_once() {
    let _turn = TURN.lock().await;
    let connector = connector();
    call(&connector, "res.user", "search", vec![json!([]), json!(0), json!(1), Value::Null]).await;
    // End the session on the server behind the client's back.
    connector.client().call("common.db.logout", vec![], "test").await.unwrap();
    let before = connector.client().calls();
    call(&connector, "res.user", "search", vec![json!([]), json!(0), json!(1), Value::Null]).await;
    assert_eq!(connector.client().calls() - before, 3, "refused call, login, repeated call");

    // A wrong password is an auth error that is not retried.
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "wrong\n").unwrap();
    let server = server();
    let config: TrytonConfig = toml::from_str(&format!(
        "url = \"{}\"\ndatabase = \"{}\"\nusername = \"admin\"\npassword = {{ file = \"{}\" }}\ncompany = 1\n",
        server.url,
        server.database,
        password.display()
    ))
    .unwrap();
    let wrong = TrytonConnector::new("wrong", config).unwrap();
    let error = wrong.lookup(EntityKind::Product, &["X".into()]).await.unwrap_err();
    assert_eq!((error.kind, error.retryable), (ErrorKind::Auth, false), "{error}");
}

#[tokio::test]
async fn price_lists_carry_the_prices_tryton_computes_and_a_failing_formula_fails_only_its_list() {
    let _turn = TURN.lock().await;
    let (retail, vip, broken) = (unique("Retail"), unique("VIP"), unique("Broken"));
    let connector = connector_with(&format!(r#"price_list_groups = {{ "{vip}" = "gold" }}"#));
    let sku = unique("PL");
    create_product(&connector, &sku).await;
    let variant = call(
        &connector,
        "product.product",
        "search",
        vec![json!([["code", "=", sku]]), json!(0), json!(1), Value::Null],
    )
    .await[0]
        .clone();
    let list = |name: &str, lines: Value| json!({"name": name, "price": "list_price", "lines": [["create", lines]]});
    let created = call(
        &connector,
        "product.price_list",
        "create",
        vec![json!([
            list(&retail, json!([{"product": variant, "formula": "unit_price"}])),
            list(
                &vip,
                json!([
                    {"product": variant, "quantity": 5.0, "formula": "Decimal('12.50')"},
                    {"product": variant, "formula": "unit_price * Decimal('0.75')"},
                ])
            ),
            // Tryton checks formulas without a product when they are saved: this one passes the
            // check and divides by zero only when a price is computed.
            list(&broken, json!([{"product": variant, "formula": "list_price / (list_price - list_price)"}])),
        ])],
    )
    .await;
    let retail_id = created[0].as_i64().unwrap();
    // The company's default sale price list is the base list.
    call(&connector, "sale.configuration", "write", vec![json!([1]), json!({"sale_price_list": retail_id})]).await;

    let mut lists = Vec::new();
    let mut problems = Vec::new();
    let mut checkpoint = Checkpoint::default();
    loop {
        let page = connector
            .read_page(&ReadRequest { entity: EntityKind::PriceList, checkpoint: &checkpoint, page_size: 200 })
            .await
            .unwrap();
        for record in page.records {
            match record.content {
                Ok(Record::PriceList(list)) => lists.push(list),
                Ok(other) => panic!("not a price list: {other:?}"),
                Err(problem) => problems.push(problem.message),
            }
        }
        checkpoint = page.checkpoint;
        if page.done {
            break;
        }
    }
    call(&connector, "sale.configuration", "write", vec![json!([1]), json!({"sale_price_list": null})]).await;
    let entries = |name: &str| {
        let list = lists.iter().find(|list| list.code == *name).unwrap_or_else(|| panic!("no list {name}: {lists:?}"));
        let entries: Vec<(String, Decimal, Decimal)> =
            list.entries.iter().map(|entry| (entry.sku.clone(), entry.min_quantity, entry.price)).collect();
        (list.customer_group.clone(), entries)
    };
    assert_eq!(entries(&retail), (None, vec![(sku.clone(), dec("1"), dec("20"))]), "the base list");
    assert_eq!(
        entries(&vip),
        (Some("gold".to_string()), vec![(sku.clone(), dec("1"), dec("15")), (sku.clone(), dec("5"), dec("12.5"))]),
        "a quarter off, a fixed price from 5 on"
    );
    assert!(lists.iter().all(|list| list.code != broken), "{lists:?}");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains(&broken) && problems[0].contains("list_price / (list_price - list_price)"),
        "the problem names the list and the formula: {}",
        problems[0]
    );
}

#[tokio::test]
async fn a_refund_is_credited_once_and_waits_for_its_order() {
    let _turn = TURN.lock().await;
    let connector = connector();
    let (sku, number, sale) = confirmed_order(&connector, "RF").await;
    let refund = |number: &str, refund_number: &str, sku: &str| Refund {
        number: refund_number.into(),
        order_number: number.into(),
        refunded_at: Some(Utc::now()),
        currency: Currency::USD,
        amount: dec("25"),
        shipping_amount: dec("5"),
        lines: vec![RefundLine { sku: sku.into(), quantity: dec("1"), amount: dec("20"), restock: false }],
        ..Refund::default()
    };
    let refund_number = format!("{number}-R1");
    let write_one = |record: Refund| {
        let connector = &connector;
        async move { write(connector, vec![(None, Record::Refund(record))]).await.remove(0) }
    };

    // No sale for the order yet: worth waiting for.
    match write_one(refund(&unique("NOPE"), "R-0", &sku)).await {
        WriteOutcome::Failed(error) => {
            assert_eq!((error.kind, error.retryable), (ErrorKind::NotFound, true), "{error}")
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    // A SKU that is not on the sale: the record's fault, named.
    match write_one(refund(&number, "R-X", "NOT-SOLD")).await {
        WriteOutcome::Failed(error) => {
            assert_eq!((error.kind, error.retryable), (ErrorKind::InvalidRequest, false), "{error}");
            assert!(error.message.contains("lines[0].sku"), "{error}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }

    let first = write_one(refund(&number, &refund_number, &sku)).await;
    let credit_note = match &first {
        WriteOutcome::Created { target_id } => target_id.parse::<i64>().unwrap(),
        other => panic!("expected a creation, got {other:?}"),
    };
    // Written again (a retried batch, a second installation): found, not created.
    let again = write_one(refund(&number, &refund_number, &sku)).await;
    assert!(
        matches!(&again, WriteOutcome::Updated { target_id } if *target_id == credit_note.to_string()),
        "{again:?}"
    );
    let found = call(
        &connector,
        "account.invoice",
        "search_read",
        vec![
            json!([["type", "=", "out"], ["reference", "=", refund_number]]),
            json!(0),
            Value::Null,
            Value::Null,
            json!(["state", "party", "total_amount", "lines"]),
        ],
    )
    .await;
    let found = found.as_array().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["state"], "posted");
    assert_eq!(found[0]["party"], sale["party"]);
    assert_eq!(found[0]["total_amount"], json!({"__class__": "Decimal", "decimal": "-25.00"}));
    assert_eq!(found[0]["lines"].as_array().unwrap().len(), 2, "the tee and the shipping");
}
