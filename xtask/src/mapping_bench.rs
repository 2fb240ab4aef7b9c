//! `cargo xtask bench-mapping [RECORDS]`: the Shopify order → ERP order path on one thread, as a
//! flow runs it for each record: the connector's conversion of the Admin GraphQL order into the
//! canonical order, the flow's mapping (the default, plus one user override that goes through a
//! lookup table), validation, and the content hash that decides whether anything is written.
//!
//! `cargo xtask` runs in release mode (the alias in `.cargo/config.toml`); the figure printed
//! says which profile measured it.

use crate::{git_commit, report, workspace_root};
use anyhow::{Context, Result, bail};
use erpsync_engine::config::Config;
use erpsync_mapping::Applied;
use erpsync_model::Record;
use serde_json::{Value, json};
use std::time::Instant;

const CONFIG: &str = r#"
[systems.shop]
type = "files"
path = "unused-shop"

[systems.erp]
type = "files"
path = "unused-erp"

[lookups.payment_methods]
values = { "shopify_payments" = "CARD", "paypal" = "PAYPAL", "manual" = "INVOICE" }
default = "OTHER"

[flows.orders]
entity = "order"
source = "shop"
target = "erp"

[flows.orders.mapping.fields]
"extra.erp_payment_method" = "$lookup_payment_methods(payments[0].gateway)"
"#;

/// An Admin GraphQL order as the orders query returns it: `lines` line items, taxes, shipping,
/// a discount and a payment.
fn order_node(number: usize, lines: usize) -> Value {
    let bag = |amount: String| json!({"shopMoney": {"amount": amount, "currencyCode": "EUR"}});
    let items: Vec<Value> = (0..lines)
        .map(|line| {
            json!({
                "id": format!("gid://shopify/LineItem/{}", number * 10 + line),
                "sku": format!("SKU-{:04}-M", line + 1),
                "title": format!("Shirt {line}"),
                "quantity": 1 + line % 3,
                "originalUnitPriceSet": bag(format!("{}.90", 10 + line)),
                "totalDiscountSet": bag("0.00".into()),
                "taxLines": [{"title": "VAT", "rate": 0.2, "priceSet": bag("1.98".into())}],
            })
        })
        .collect();
    json!({
        "id": format!("gid://shopify/Order/{number}"),
        "name": format!("#{}", 1000 + number),
        "createdAt": "2026-11-26T10:00:00Z",
        "updatedAt": "2026-11-26T10:05:00Z",
        "currencyCode": "EUR",
        "taxesIncluded": true,
        "displayFinancialStatus": "PAID",
        "displayFulfillmentStatus": "UNFULFILLED",
        "cancelledAt": null,
        "email": format!("customer{}@example.com", number % 500),
        "subtotalPriceSet": bag("59.70".into()),
        "totalPriceSet": bag("64.60".into()),
        "totalTaxSet": bag("10.77".into()),
        "totalShippingPriceSet": bag("4.90".into()),
        "totalDiscountsSet": bag("0.00".into()),
        "taxLines": [{"title": "VAT", "rate": 0.2, "priceSet": bag("10.77".into())}],
        "lineItems": {"nodes": items},
        "shippingLines": {"nodes": [{"title": "DHL", "code": "dhl", "originalPriceSet": bag("4.90".into())}]},
        "paymentGatewayNames": ["shopify_payments"],
        "totalOutstandingSet": bag("0.00".into()),
    })
}

pub fn bench(records: usize) -> Result<()> {
    let root = workspace_root();
    let commit = git_commit(&root);
    let results_dir = root.join("target/bench");
    std::fs::create_dir_all(&results_dir)?;
    let mut results = std::fs::OpenOptions::new().create(true).append(true).open(results_dir.join("results.jsonl"))?;
    let config = Config::parse(CONFIG, &root.join("target/bench/mapping.toml")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mapping = config.flow("orders").context("the orders flow")?.mapping.clone();
    // Distinct orders, as a stream would bring them (three line items each).
    let nodes: Vec<Value> = (0..1000).map(|n| order_node(n, 3)).collect();

    // Warm up (the per-thread expression cache, the allocator), and check the override took.
    for node in nodes.iter().take(200) {
        run_one(&mapping, node)?;
    }
    let sample = erpsync_connectors::shopify::map::order(&nodes[0]).map_err(|e| anyhow::anyhow!("converting: {e}"))?;
    let method = match mapping.apply(&Record::Order(sample)).map_err(|e| anyhow::anyhow!("mapping: {e}"))? {
        Applied::Mapped(mapped) => mapped_extra(&mapped),
        Applied::Skipped { reason } => bail!("skipped: {reason}"),
    };
    if method.is_empty() {
        bail!("the override wrote no extra.erp_payment_method");
    }
    let started = Instant::now();
    let cpu_started = thread_cpu_seconds();
    let mut hashes = 0u64;
    for index in 0..records {
        hashes ^= run_one(&mapping, &nodes[index % nodes.len()])?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = thread_cpu_seconds()? - cpu_started?;
    std::hint::black_box(hashes);
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    println!(
        "shopify order → canonical order → mapping (default + 1 lookup override: {method}) → validate → hash, one thread, {profile} build"
    );
    report(
        &mut results,
        "mapping_shopify_order_to_erp",
        &commit,
        &[
            ("records", records as f64, "records"),
            ("elapsed", seconds, "s"),
            ("records_per_second_one_core", records as f64 / seconds, "records/s"),
            // On a busy machine the thread waits for a core part of the time; its own CPU time
            // says what one core does.
            ("cpu", cpu_seconds, "s"),
            ("records_per_cpu_second", records as f64 / cpu_seconds, "records/s"),
        ],
    )?;
    Ok(())
}

fn run_one(mapping: &erpsync_mapping::Mapping, node: &Value) -> Result<u64> {
    let order = erpsync_connectors::shopify::map::order(node).map_err(|e| anyhow::anyhow!("converting: {e}"))?;
    let record = Record::Order(order);
    match mapping.apply(&record).map_err(|e| anyhow::anyhow!("mapping: {e}"))? {
        Applied::Mapped(mapped) => {
            let hash = mapped.content_hash();
            Ok(u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("a hash has 32 bytes")))
        }
        Applied::Skipped { reason } => bail!("skipped: {reason}"),
    }
}

fn mapped_extra(record: &Record) -> String {
    serde_json::to_value(record)
        .ok()
        .and_then(|v| v["extra"]["erp_payment_method"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The CPU time this thread has used, from the kernel's scheduler statistics (nanoseconds).
fn thread_cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").context("reading /proc/thread-self/schedstat")?;
    let nanos: f64 = stat
        .split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .context("/proc/thread-self/schedstat has no CPU time")?;
    Ok(nanos / 1e9)
}
