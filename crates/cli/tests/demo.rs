//! `erpsync demo --duration`: both simulators, every default flow under `serve`, end to end.
//! The catalog reaches the shop, the customer groups' Odoo pricelists reach the shop's B2B price
//! lists with Odoo's prices, every order placed in the shop reaches Odoo exactly once, what
//! Odoo's back office ships and invoices comes back to the shop as fulfilments, closed orders
//! and invoices, nothing fails, and an order can be traced across both systems afterwards.

use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

fn figure(output: &str, label: &str) -> usize {
    let line = output.lines().find(|line| line.trim_start().starts_with(label)).unwrap_or_else(|| {
        panic!("no {label:?} line in the demo's output:\n{output}");
    });
    line[line.find(':').unwrap() + 1..].split_whitespace().next().unwrap().parse().unwrap()
}

/// The address the demo printed for a simulator: `  Odoo     http://127.0.0.1:…  (…)`.
fn address(output: &str, simulator: &str) -> String {
    output
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix(simulator))
        .find_map(|rest| rest.split_whitespace().next().filter(|word| word.starts_with("http://")))
        .unwrap_or_else(|| panic!("no address of the {simulator} simulator in the demo's output:\n{output}"))
        .to_string()
}

fn secret(demo: &Path, name: &str) -> String {
    std::fs::read_to_string(demo.join("secrets").join(name)).unwrap().trim().to_string()
}

fn money(value: &Value) -> Decimal {
    match value {
        Value::String(text) => text.parse().unwrap_or_else(|e| panic!("{e}: {value}")),
        other => other.to_string().parse().unwrap_or_else(|e| panic!("{e}: {value}")),
    }
}

/// The shop's price lists, read through the Admin API: name -> SKU -> fixed price.
async fn shop_price_lists(shop: &str, token: &str) -> BTreeMap<String, BTreeMap<String, Decimal>> {
    let client = reqwest::Client::new();
    let graphql = |query: String| {
        let request = client
            .post(format!("{shop}/admin/api/2026-10/graphql.json"))
            .header("X-Shopify-Access-Token", token)
            .json(&json!({ "query": query }));
        async move {
            let answer: Value = request.send().await.unwrap().json().await.unwrap();
            assert!(answer.get("errors").is_none(), "{answer}");
            answer["data"].clone()
        }
    };
    let lists = graphql("{ priceLists(first: 10) { nodes { id name currency } } }".into()).await;
    let mut found = BTreeMap::new();
    for list in lists["priceLists"]["nodes"].as_array().unwrap() {
        assert_eq!(list["currency"], "EUR", "{list}");
        let query = format!(
            "{{ priceList(id: \"{}\") {{ prices(first: 250) {{ nodes {{ price {{ amount currencyCode }} variant {{ sku }} }} }} }} }}",
            list["id"].as_str().unwrap()
        );
        let prices = graphql(query).await;
        let by_sku: BTreeMap<String, Decimal> = prices["priceList"]["prices"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|price| {
                (price["variant"]["sku"].as_str().unwrap().to_string(), money(&price["price"]["amount"]).normalize())
            })
            .collect();
        found.insert(list["name"].as_str().unwrap().to_string(), by_sku);
    }
    found
}

/// What the shop should hold for an Odoo pricelist, read through Odoo's JSON-2 API: SKU ->
/// price, from the rules on one product or one variant that apply from one unit (a fixed
/// price, or a percentage off the variant's sales price). Catalog-wide rules are not prices
/// per SKU, and the demo's mapping leaves quantity tiers out of the shop.
async fn odoo_group_prices(odoo: &str, api_key: &str, pricelist: &str) -> (BTreeMap<String, Decimal>, usize) {
    let client = reqwest::Client::new();
    let search_read = |model: &str, domain: Value, fields: &[&str]| {
        let request = client
            .post(format!("{odoo}/json/2/{model}/search_read"))
            .bearer_auth(api_key)
            .header("X-Odoo-Database", "odoo")
            .json(&json!({ "domain": domain, "fields": fields }));
        async move {
            let answer: Value = request.send().await.unwrap().json().await.unwrap();
            answer.as_array().unwrap_or_else(|| panic!("{answer}")).clone()
        }
    };
    let list = search_read("product.pricelist", json!([["name", "=", pricelist]]), &["id"]).await;
    let list_id = list[0]["id"].as_i64().unwrap_or_else(|| panic!("no pricelist {pricelist:?} in Odoo"));
    let items = search_read(
        "product.pricelist.item",
        json!([["pricelist_id", "=", list_id]]),
        &[
            "applied_on",
            "product_tmpl_id",
            "product_id",
            "min_quantity",
            "compute_price",
            "fixed_price",
            "percent_price",
        ],
    )
    .await;
    let tiers = items.iter().filter(|item| item["min_quantity"].as_f64().unwrap_or(0.0) > 1.0).count();
    let mut expected = BTreeMap::new();
    for item in items.iter().filter(|item| item["min_quantity"].as_f64().unwrap_or(0.0) <= 1.0) {
        let domain = match item["applied_on"].as_str() {
            Some("1_product") => json!([["product_tmpl_id", "=", item["product_tmpl_id"][0]]]),
            Some("0_product_variant") => json!([["id", "=", item["product_id"][0]]]),
            _ => continue,
        };
        for variant in search_read("product.product", domain, &["default_code", "lst_price"]).await {
            let price = match item["compute_price"].as_str() {
                Some("fixed") => money(&item["fixed_price"]),
                Some("percentage") => (money(&variant["lst_price"])
                    * (Decimal::ONE_HUNDRED - money(&item["percent_price"]))
                    / Decimal::ONE_HUNDRED)
                    .round_dp(2),
                other => panic!("a rule the demo's seed does not make: {other:?}"),
            };
            let sku = variant["default_code"].as_str().unwrap().to_string();
            if let Some(earlier) = expected.insert(sku.clone(), price.normalize()) {
                assert_eq!(earlier, price.normalize(), "two rules of {pricelist} price {sku} differently");
            }
        }
    }
    (expected, tiers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_syncs_the_catalog_prices_and_every_order_once() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_erpsync"))
        .args(["demo", "--dir"])
        .arg(&demo)
        .args(["--products", "40", "--duration", "25s", "--orders-per-minute", "120"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut text = String::new();

    // The catalog and the price lists are written before the flows start under serve: while
    // the demo runs, the simulators answer, and the shop's lists are compared with Odoo's.
    let started = tokio::time::timeout(Duration::from_secs(300), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            text.push_str(&line);
            text.push('\n');
            if line.starts_with("Flows (serve):") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(started, "the demo did not reach serve:\n{text}");
    let shop = shop_price_lists(&address(&text, "Shopify"), &secret(&demo, "shopify-token")).await;
    let odoo = address(&text, "Odoo");
    let api_key = secret(&demo, "odoo-api-key");
    assert_eq!(shop.keys().collect::<Vec<_>>(), ["B2B VIP", "B2B Wholesale"], "{shop:?}");
    for (odoo_list, shop_list) in [("VIP", "B2B VIP"), ("Wholesale", "B2B Wholesale")] {
        let (expected, tiers) = odoo_group_prices(&odoo, &api_key, odoo_list).await;
        assert!(!expected.is_empty(), "the seed gives {odoo_list} prices of its own");
        assert_eq!(shop[shop_list], expected, "the shop's {shop_list:?} holds Odoo's {odoo_list} prices");
        if odoo_list == "Wholesale" {
            assert!(tiers > 0, "Wholesale has quantity tiers in Odoo, which the shop's list does not take");
        }
    }

    let finished = tokio::time::timeout(Duration::from_secs(300), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            text.push_str(&line);
            text.push('\n');
        }
        child.wait().await.unwrap()
    })
    .await
    .expect("the demo ends after its duration");
    let errors = errors.await.unwrap();
    assert!(finished.success(), "the demo exits 0 when nothing failed:\n{text}\n{errors}");

    assert_eq!(figure(&text, "products in the shop:"), 40, "{text}");
    assert_eq!(figure(&text, "price lists in the shop:"), 2, "{text}");
    let placed = figure(&text, "orders placed in the shop:");
    let in_odoo = figure(&text, "sale orders in Odoo:");
    assert!(placed >= 10, "the order stream placed orders: {text}");
    assert_eq!(in_odoo, placed, "every shop order is in Odoo, once: {text}");
    // The back office ships and invoices; each shipment, completed order and invoice is
    // carried back to the shop before the end.
    let shipped = figure(&text, "shipped in Odoo:");
    let invoiced = figure(&text, "invoiced in Odoo:");
    assert!(shipped >= 5, "the back office shipped orders: {text}");
    assert_eq!(invoiced, shipped, "every shipped order is invoiced: {text}");
    assert_eq!(figure(&text, "fulfilled in the shop:"), shipped, "every shipment is a fulfilment: {text}");
    assert_eq!(figure(&text, "closed in the shop:"), shipped, "every completed order is closed: {text}");
    assert_eq!(figure(&text, "invoices on the shop orders:"), invoiced, "every invoice is on its order: {text}");

    // The first order, traced by its number: linked in both systems.
    let config = demo.join("erpsync.toml");
    let trace = std::process::Command::new(env!("CARGO_BIN_EXE_erpsync"))
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(demo.join("data"))
        .args(["trace", "#1001", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&trace.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&trace.stdout)));
    let systems: Vec<&str> = report["records"][0]["identity"]["links"]
        .as_array()
        .unwrap_or_else(|| panic!("{report}"))
        .iter()
        .filter_map(|link| link["system"].as_str())
        .collect();
    assert!(systems.contains(&"shopify") && systems.contains(&"odoo"), "{report}");
}
