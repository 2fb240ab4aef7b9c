//! The matrix, Odoo × WooCommerce: both simulators in process, every flow both support,
//! through `erpsync sync` of the real binary on a configuration file: products with variants
//! and prices, stock, customers, orders placed through the shop's checkout, shipments with
//! tracking back to the shop, refunds made in the shop's admin back to Odoo. Each step checks the other side's state through its own API, a
//! change made on one side shows on the other, and running every sync again writes and
//! duplicates nothing. WooCommerce has no place for invoices (no document flow).

mod common;

use common::{Erpsync, woo_post};
use erpsync_sim::odoo::{self, OdooSim, OdooSimConfig};
use erpsync_sim::woocommerce::{SeedConfig, WooSim, WooSimConfig, server::Checkout};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const CONFIG: &str = r#"
[systems.erp]
type = "odoo"
url = "{odoo}"
database = "odoo"
protocol = "json2"
api_key = { file = "odoo-key" }
shipping_product = "SHIPPING"
currency = "EUR"
confirm_orders = true

[systems.shop]
type = "woocommerce"
url = "{shop}"
consumer_key = { file = "woo-key" }
consumer_secret = { file = "woo-secret" }
currency = "EUR"

[flows.products]
entity = "product"
source = "erp"
target = "shop"

[flows.products.mapping]
# The shipping service is an Odoo product for the order's shipping line, not for sale.
filter = "title != 'Shipping'"

[flows.stock]
entity = "stock_level"
source = "erp"
target = "shop"

[flows.customers]
entity = "customer"
source = "shop"
target = "erp"

[flows.orders]
entity = "order"
source = "shop"
target = "erp"

[flows.shipments]
entity = "shipment"
source = "erp"
target = "shop"

[flows.refunds]
entity = "refund"
source = "shop"
target = "erp"
"#;

/// Odoo's JSON-2 API, as any client of Odoo calls it.
struct OdooApi {
    url: String,
    key: String,
    client: reqwest::Client,
}

impl OdooApi {
    async fn call(&self, model: &str, method: &str, body: Value) -> Value {
        let response = self
            .client
            .post(format!("{}/json/2/{model}/{method}", self.url))
            .bearer_auth(&self.key)
            .header("X-Odoo-Database", "odoo")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let value: Value = response.json().await.unwrap();
        assert!(status.is_success(), "odoo {model}.{method}: {status}: {value}");
        value
    }

    async fn search_read(&self, model: &str, domain: Value, fields: &[&str]) -> Vec<Value> {
        self.call(model, "search_read", json!({"domain": domain, "fields": fields}))
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

fn decimal(value: &Value) -> Decimal {
    value.as_f64().map(|number| Decimal::try_from(number).unwrap().round_dp(4)).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odoo_and_woocommerce_every_flow_end_to_end() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let odoo_config = OdooSimConfig {
        seed: Some(odoo::SeedConfig {
            seed: 9,
            products: 3,
            max_variants: 2,
            min_variants: 2,
            warehouses: 1,
            customers: 0,
            orders: 0,
            ..odoo::SeedConfig::default()
        }),
        ..OdooSimConfig::default()
    };
    let odoo_sim = OdooSim::start(odoo_config.clone()).await.unwrap();
    let odoo = OdooApi { url: odoo_sim.base_url(), key: odoo_config.api_key.clone(), client: reqwest::Client::new() };
    // What the Odoo administrator sets up once: the shipping product and the shop's 20 % tax.
    odoo.call(
        "product.product",
        "create",
        json!({"vals_list": [{"name": "Shipping", "default_code": "SHIPPING", "type": "service"}]}),
    )
    .await;
    odoo.call(
        "account.tax",
        "create",
        json!({"vals_list": [{"name": "VAT 20%", "amount": 20, "amount_type": "percent", "type_tax_use": "sale", "price_include": false}]}),
    )
    .await;
    let shop = WooSim::start(WooSimConfig {
        seed: Some(SeedConfig {
            seed: 3,
            simple_products: 0,
            variable_products: 0,
            variations_per_product: 0,
            customers: 2,
            orders: 0,
        }),
        ..WooSimConfig::default()
    })
    .await
    .unwrap();
    let key = shop.key().clone();
    let config = CONFIG.replace("{odoo}", &odoo_sim.base_url()).replace("{shop}", &shop.base_url());
    let erpsync = Erpsync::new(
        &config,
        &[
            ("odoo-key", odoo_config.api_key.as_str()),
            ("woo-key", key.consumer_key.as_str()),
            ("woo-secret", key.consumer_secret.as_str()),
        ],
    );

    // Products: every Odoo variant is in the shop with its SKU and price, as variations of
    // one variable product per template.
    let variants = odoo
        .search_read(
            "product.product",
            json!([["default_code", "!=", false], ["type", "!=", "service"]]),
            &["default_code", "lst_price", "product_tmpl_id"],
        )
        .await;
    assert_eq!(variants.len(), 6, "{variants:?}");
    let counts = erpsync.sync("products").await;
    assert_eq!((counts.created, counts.skipped), (3, 1), "{counts:?}");
    let in_shop = |sku: &str| {
        let sku = sku.to_string();
        shop.with_store(move |store| {
            store
                .variations
                .values()
                .find(|variation| variation.sku == sku)
                .map(|variation| (variation.regular_price.clone(), variation.stock_quantity, variation.parent_id))
        })
    };
    for variant in &variants {
        let sku = variant["default_code"].as_str().unwrap();
        let (price, _, _) = in_shop(sku).unwrap_or_else(|| panic!("{sku} is not in the shop"));
        assert_eq!(price.parse::<Decimal>().unwrap(), decimal(&variant["lst_price"]), "{sku}");
    }
    let parents: std::collections::BTreeSet<u64> =
        variants.iter().map(|variant| in_shop(variant["default_code"].as_str().unwrap()).unwrap().2).collect();
    assert_eq!(parents.len(), 3, "one variable product per template");

    // A price changed in Odoo reaches the shop.
    let first = &variants[0];
    let template =
        first["product_tmpl_id"].as_array().map(|pair| pair[0].clone()).unwrap_or(first["product_tmpl_id"].clone());
    odoo.call("product.template", "write", json!({"ids": [template], "vals": {"list_price": 77.5}})).await;
    let counts = erpsync.sync("products").await;
    assert!(counts.updated >= 1 && counts.created == 0, "{counts:?}");
    let sku = first["default_code"].as_str().unwrap();
    let now = odoo.search_read("product.product", json!([["default_code", "=", sku]]), &["lst_price"]).await;
    assert_eq!(
        in_shop(sku).unwrap().0.parse::<Decimal>().unwrap(),
        decimal(&now[0]["lst_price"]),
        "the new price of {sku}"
    );

    // Stock: the shop's numbers are Odoo's free quantities.
    let counts = erpsync.sync("stock").await;
    assert!(counts.wrote() >= 1, "{counts:?}");
    let quants = odoo
        .search_read("stock.quant", json!([]), &["product_id", "quantity", "reserved_quantity", "location_id"])
        .await;
    let mut free: BTreeMap<i64, Decimal> = BTreeMap::new();
    for quant in &quants {
        let product =
            quant["product_id"].as_array().and_then(|pair| pair[0].as_i64()).or(quant["product_id"].as_i64()).unwrap();
        *free.entry(product).or_default() += decimal(&quant["quantity"]) - decimal(&quant["reserved_quantity"]);
    }
    let ids: BTreeMap<String, i64> = odoo
        .search_read("product.product", json!([["default_code", "!=", false]]), &["default_code"])
        .await
        .iter()
        .map(|row| (row["default_code"].as_str().unwrap().to_string(), row["id"].as_i64().unwrap()))
        .collect();
    for variant in &variants {
        let sku = variant["default_code"].as_str().unwrap();
        let expected = free.get(&ids[sku]).copied().unwrap_or_default().max(Decimal::ZERO);
        assert_eq!(Decimal::from(in_shop(sku).unwrap().1.unwrap_or(0)), expected, "stock of {sku}");
    }

    // Customers registered in the shop become Odoo partners.
    let counts = erpsync.sync("customers").await;
    assert_eq!(counts.created, 2, "{counts:?}");
    let (email, first_name) = shop.with_store(|store| {
        let customer = store.customers.values().next().unwrap();
        (customer.email.clone(), customer.first_name.clone())
    });
    let partners = odoo.search_read("res.partner", json!([["email", "=", email]]), &["name"]).await;
    assert_eq!(partners.len(), 1, "{partners:?}");
    assert!(partners[0]["name"].as_str().unwrap().contains(&first_name), "{partners:?}");

    // The customer orders two variants at the checkout: a confirmed sale order in Odoo.
    let skus: Vec<String> = variants.iter().take(2).map(|v| v["default_code"].as_str().unwrap().to_string()).collect();
    let order = shop
        .checkout(&Checkout {
            email: email.clone(),
            lines: vec![(skus[0].clone(), 1), (skus[1].clone(), 2)],
            payment_method: "sim_card".into(),
            shipping_cents: 490,
            ..Checkout::default()
        })
        .unwrap();
    let number = order["number"].as_str().unwrap().to_string();
    let counts = erpsync.sync("orders").await;
    assert_eq!(counts.created, 1, "{counts:?}");
    let sales = odoo
        .search_read("sale.order", json!([["client_order_ref", "=", number]]), &["state", "partner_id", "amount_total"])
        .await;
    assert_eq!(sales.len(), 1, "one sale order for {number}: {sales:?}");
    assert_eq!(sales[0]["state"], "sale", "confirmed: {sales:?}");
    let total: Decimal = order["total"].as_str().unwrap().parse().unwrap();
    assert_eq!(decimal(&sales[0]["amount_total"]), total, "Odoo's total equals the shop's, tax and shipping included");

    // The warehouse ships it with a tracking number: the shop's order is completed with it.
    let sale_id = sales[0]["id"].as_i64().unwrap();
    let shipped: Value = reqwest::Client::new()
        .post(format!("{}/_sim/ship", odoo_sim.base_url()))
        .json(&json!({"order_ids": [sale_id]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tracking = shipped[0]["carrier_tracking_ref"].as_str().unwrap_or_else(|| panic!("{shipped}")).to_string();
    let counts = erpsync.sync("shipments").await;
    assert_eq!(counts.wrote(), 1, "{counts:?}");
    let order_id = order["id"].as_u64().unwrap();
    let (status, notes) = shop.with_store(|store| {
        let notes: Vec<String> =
            store.notes.get(&order_id).into_iter().flatten().map(|note| note.note.clone()).collect();
        (store.orders[&order_id].status.clone(), notes)
    });
    assert_eq!(status, "completed");
    assert!(notes.iter().any(|note| note.contains(&tracking)), "{notes:?}");

    // The shop refunds one of the two units of the second line (as its admin does, through the
    // REST API): a draft credit note in Odoo for that order.
    let line_id = shop.with_store(|store| store.orders[&order_id].line_items[1].id);
    let refund = woo_post(
        &shop,
        &format!("/orders/{order_id}/refunds"),
        json!({"amount": "10.00", "reason": "damaged", "line_items": [{"id": line_id, "quantity": 1}], "api_refund": true}),
    )
    .await;
    assert!(refund["id"].as_u64().is_some(), "{refund}");
    let counts = erpsync.sync("refunds").await;
    assert_eq!(counts.created, 1, "{counts:?}");
    let credit_notes = odoo
        .search_read(
            "account.move",
            json!([["move_type", "=", "out_refund"], ["invoice_origin", "!=", false]]),
            &["state", "invoice_origin", "amount_total"],
        )
        .await;
    assert_eq!(credit_notes.len(), 1, "{credit_notes:?}");
    assert_eq!(credit_notes[0]["state"], "draft", "{credit_notes:?}");

    // Everything again: nothing duplicated, and then nothing written.
    erpsync.again_twice(&["products", "stock", "customers", "orders", "shipments", "refunds"]).await;
    let credit_notes = odoo.search_read("account.move", json!([["move_type", "=", "out_refund"]]), &["id"]).await;
    assert_eq!(credit_notes.len(), 1, "the refund is in Odoo once");
    let sales = odoo.search_read("sale.order", json!([["client_order_ref", "=", number]]), &["id"]).await;
    assert_eq!(sales.len(), 1, "the order is in Odoo once");
    let n_products = shop.with_store(|store| store.products.len());
    assert_eq!(n_products, 3, "no product created twice in the shop");
}
