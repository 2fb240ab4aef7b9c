//! The matrix, Tryton × WooCommerce: a real Tryton 8.2 (`tools/tryton/ensure.py`) and the
//! WooCommerce simulator, every flow both support, through `erpsync sync` of the real binary
//! on a configuration file:
//! products with variants and prices, stock, customers, orders placed through the shop's
//! checkout, shipments with tracking back to the shop, and a refund made in the shop as a
//! credit note in Tryton. Each step checks the other side's real state (Tryton over JSON-RPC,
//! the shop through its store), a change made on one side shows on the other, and running every
//! sync again writes and duplicates nothing.
//! WooCommerce has no place for invoices (no document flow).

mod common;

use common::{Erpsync, Tryton, erp_shop_flows, tryton_decimal, unique, woo_post};
use erpsync_sim::woocommerce::{SeedConfig, WooSim, WooSimConfig, server::Checkout};
use serde_json::json;

const SHOP: &str = r#"
[systems.shop]
type = "woocommerce"
url = "{shop}"
consumer_key = { file = "woo-key" }
consumer_secret = { file = "woo-secret" }
currency = "USD"

"#;

const REFUNDS: &str = r#"
[flows.refunds]
entity = "refund"
source = "shop"
target = "erp"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tryton_and_woocommerce_every_flow_end_to_end() {
    let tryton = Tryton::start().await;
    let shop = WooSim::start(WooSimConfig {
        currency: "USD".into(),
        seed: Some(SeedConfig {
            seed: 7,
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
    let config = format!(
        "{}{}{}{REFUNDS}",
        tryton.system("erp"),
        SHOP.replace("{shop}", &shop.base_url()),
        erp_shop_flows(false)
    );
    let erpsync =
        Erpsync::new(&config, &[("woo-key", key.consumer_key.as_str()), ("woo-secret", key.consumer_secret.as_str())]);

    // Products: a template with two variants (one with its own price) and a simple product.
    let run = unique();
    let code = format!("WT{run}-");
    let mug_code = format!("WM{run}-");
    let (tee_s, tee_m, mug) = (format!("{code}S"), format!("{code}M"), format!("{mug_code}1"));
    let tee = tryton
        .create_product("Matrix Tee", &code, "20.00", &[("S", "Small", None), ("M", "Medium", Some("22.00"))])
        .await;
    tryton.create_product("Matrix Mug", &mug_code, "9.50", &[("1", "Mug", None)]).await;
    let counts = erpsync.sync("products").await;
    assert_eq!(counts.created, 2, "{counts:?}");
    let prices = |sku: &str| {
        let sku = sku.to_string();
        shop.with_store(move |store| {
            if let Some(product) = store.products.values().find(|product| product.sku == sku) {
                return Some((product.regular_price.clone(), product.stock_quantity));
            }
            store
                .variations
                .values()
                .find(|variation| variation.sku == sku)
                .map(|variation| (variation.regular_price.clone(), variation.stock_quantity))
        })
    };
    assert_eq!(prices(&tee_s).map(|p| p.0), Some("20.00".into()), "variant S in the shop with the template's price");
    assert_eq!(prices(&tee_m).map(|p| p.0), Some("22.00".into()), "variant M with its own price");
    assert_eq!(prices(&mug).map(|p| p.0), Some("9.50".into()));
    let variations = shop.with_store(|store| {
        store
            .products
            .values()
            .filter(|product| product.name == "Matrix Tee")
            .map(|p| p.variations.len())
            .sum::<usize>()
    });
    assert_eq!(variations, 2, "the tee is one variable product with two variations");

    // A price changed in Tryton reaches the shop; the unchanged mug is not written again.
    tryton
        .call(
            "product.template",
            "write",
            vec![json!([tee]), json!({"list_price": common::decimal("21.00")})],
            json!({}),
        )
        .await;
    let counts = erpsync.sync("products").await;
    assert_eq!((counts.updated, counts.created), (1, 0), "{counts:?}");
    assert_eq!(prices(&tee_s).map(|p| p.0), Some("21.00".into()));
    assert_eq!(prices(&tee_m).map(|p| p.0), Some("22.00".into()), "M keeps its own price");

    // Stock received in Tryton's warehouse.
    tryton.receive(&[(&tee_s, 10), (&tee_m, 5), (&mug, 7)]).await;
    let counts = erpsync.sync("stock").await;
    assert!(counts.wrote() >= 3, "{counts:?}");
    assert_eq!(prices(&tee_s).and_then(|p| p.1), Some(10));
    assert_eq!(prices(&tee_m).and_then(|p| p.1), Some(5));
    assert_eq!(prices(&mug).and_then(|p| p.1), Some(7));

    // Customers registered in the shop become parties with their e-mail and address.
    let customers = erpsync.sync("customers").await;
    assert_eq!(customers.created, 2, "{customers:?}");
    let (email, first_name) = shop.with_store(|store| {
        let customer = store.customers.values().next().unwrap();
        (customer.email.clone(), customer.first_name.clone())
    });
    let parties = tryton
        .search_read("party.party", json!([["contact_mechanisms.value", "=", email]]), &["name", "addresses"])
        .await;
    assert_eq!(parties.len(), 1, "one party for {email}: {parties:?}");
    assert!(parties[0]["name"].as_str().unwrap().contains(&first_name), "{parties:?}");
    assert!(!parties[0]["addresses"].as_array().unwrap().is_empty(), "with the shop's address: {parties:?}");

    // An order placed at the shop's checkout by that customer becomes a confirmed sale.
    let order = shop
        .checkout(&Checkout {
            email: email.clone(),
            lines: vec![(tee_s.clone(), 2), (mug.clone(), 1)],
            payment_method: "sim_card".into(),
            shipping_cents: 490,
            ..Checkout::default()
        })
        .unwrap();
    let number = order["number"].as_str().unwrap().to_string();
    let counts = erpsync.sync("orders").await;
    assert_eq!(counts.created, 1, "{counts:?}");
    let sales = tryton.sales(&number).await;
    assert_eq!(sales.len(), 1, "one sale for order {number}: {sales:?}");
    let sale = &sales[0];
    assert_eq!(sale["state"], "processing", "the sale is confirmed and processed: {sale}");
    assert_eq!(sale["party"], parties[0]["id"], "the sale is the customer's");
    assert_eq!(sale["lines"].as_array().unwrap().len(), 2);
    assert_eq!(tryton_decimal(&sale["untaxed_amount"]), "51.50".parse().unwrap(), "2 × 21.00 + 9.50, net of tax");

    // The sale reserved the goods: the shop's stock follows Tryton's forecast.
    erpsync.sync("stock").await;
    assert_eq!(prices(&tee_s).and_then(|p| p.1), Some(8), "10 − 2 sold");

    // The warehouse ships with a tracking number: the shop's order gets it and is completed.
    let tracking = format!("TRACK{run}");
    tryton.ship(sale, &tracking).await;
    let counts = erpsync.sync("shipments").await;
    assert_eq!(counts.wrote(), 1, "{counts:?}");
    let order_id = order["id"].as_u64().unwrap();
    let (status, notes) = shop.with_store(|store| {
        let status = store.orders[&order_id].status.clone();
        let notes: Vec<String> =
            store.notes.get(&order_id).into_iter().flatten().map(|note| note.note.clone()).collect();
        (status, notes)
    });
    assert_eq!(status, "completed", "the shipment completes the order");
    assert!(notes.iter().any(|note| note.contains(&tracking)), "a note with the tracking number: {notes:?}");

    // The goods left the warehouse: on hand follows; what may be sold was already down.
    erpsync.sync("stock").await;
    assert_eq!(prices(&tee_s).and_then(|p| p.1), Some(8), "still 8 to sell");

    // The shop refunds one of the two tees with its tax, and the shipping (as its admin does,
    // through the REST API): WooCommerce itemises the tee, not the shipping. One posted credit
    // note for the sale's customer: the tee at its refunded amount, and the rest of the money
    // on a line of its own, so that the credit note's total is what was paid back.
    let tee_line = shop.with_store(|store| {
        let line = store.orders[&order_id].line_items.iter().find(|line| line.sku == tee_s).unwrap();
        (line.id, line.price, line.total_tax / line.quantity)
    });
    let (line_id, price_cents, tax_cents) = tee_line;
    let line_cents = price_cents + tax_cents;
    let money = |cents: i64| rust_decimal::Decimal::new(cents, 2);
    let refund = woo_post(
        &shop,
        &format!("/orders/{order_id}/refunds"),
        json!({
            "amount": money(line_cents + 490).to_string(), "reason": "damaged", "api_refund": true,
            "line_items": [{"id": line_id, "quantity": 1, "refund_total": money(price_cents).to_string(),
                            "refund_tax": [{"id": 1, "refund_total": money(tax_cents).to_string()}]}],
        }),
    )
    .await;
    let reference = refund["id"].as_u64().unwrap_or_else(|| panic!("no refund: {refund}")).to_string();
    let counts = erpsync.sync("refunds").await;
    assert_eq!(counts.created, 1, "{counts:?}");
    let credit_notes = tryton.credit_notes(&reference).await;
    assert_eq!(credit_notes.len(), 1, "one credit note for refund {reference}: {credit_notes:?}");
    let credit_note = &credit_notes[0];
    assert_eq!(credit_note["state"], "posted", "{credit_note}");
    assert_eq!(credit_note["party"], sale["party"], "the sale's customer: {credit_note}");
    assert_eq!(tryton_decimal(&credit_note["total_amount"]), -money(line_cents + 490), "{credit_note}");
    let lines = credit_note["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["product"].as_i64(), Some(tryton.product_id(&tee_s).await), "{lines:?}");
    assert_eq!(lines[0]["quantity"].as_f64(), Some(-1.0), "{lines:?}");
    assert_eq!(tryton_decimal(&lines[0]["amount"]), -money(line_cents), "{lines:?}");
    assert!(lines[1]["product"].is_null(), "{lines:?}");
    assert_eq!(tryton_decimal(&lines[1]["amount"]), -money(490), "the shipping, not itemised: {lines:?}");
    let counts = erpsync.sync_full("refunds").await;
    assert_eq!(counts.wrote(), 0, "{counts:?}");
    assert_eq!(tryton.credit_notes(&reference).await.len(), 1, "still one credit note");

    // Everything again: nothing duplicated, and then nothing written.
    erpsync.again_twice(&["products", "stock", "customers", "orders", "shipments", "refunds"]).await;
    assert_eq!(tryton.sales(&number).await.len(), 1, "the order is in Tryton once");
    let (n_products, n_tracking_notes) = shop.with_store(|store| {
        let products = store.products.values().filter(|p| p.name.starts_with("Matrix")).count();
        let notes = store.notes.get(&order_id).into_iter().flatten();
        (products, notes.filter(|note| note.note.contains(&tracking)).count())
    });
    assert_eq!(n_products, 2, "no product created twice in the shop");
    assert_eq!(n_tracking_notes, 1, "no tracking note added twice");
}
