//! The matrix, Tryton × Shopify: a real Tryton 8.2 (`tools/tryton/ensure.py`) and the Shopify
//! simulator, every flow both support, through `erpsync sync` of the real binary on a
//! configuration file: products with variants and prices, stock, customers, orders placed in
//! the shop (in euros, prices including tax, as the simulator's shop sells), shipments with
//! tracking and posted invoices back to the shop. Each step checks the other side's real state,
//! a change made on one side shows on the other, and running every sync again writes and
//! duplicates nothing.

mod common;

use common::{Erpsync, Tryton, erp_shop_flows, tryton_decimal, unique};
use erpsync_sim::shopify::{PlanLimits, SeedConfig, ShopifyConfig, ShopifySim};
use serde_json::json;

const SHOP: &str = r#"
[systems.shop]
type = "shopify"
url = "{shop}"
access_token = { file = "shopify-token" }
locations = { main = "{location}" }

"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tryton_and_shopify_every_flow_end_to_end() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tryton = Tryton::start().await;
    let shop = ShopifySim::start(ShopifyConfig {
        plan: PlanLimits::PLUS,
        seed: Some(SeedConfig { seed: 5, products: 0, variants_per_product: 1, locations: 1, customers: 1, orders: 0 }),
        ..ShopifyConfig::default()
    })
    .await
    .unwrap();
    // Tryton's warehouse `main` is the shop's one location, named by its id. (By name it works
    // for stock but not for shipments: the simulator answers `assignedLocation.location`
    // without the location's name, which real Shopify gives.)
    let location = shop.with_state(|state| *state.locations.keys().next().unwrap());
    let config = format!(
        "{}{}{}",
        tryton.system("erp"),
        SHOP.replace("{shop}", &shop.base_url()).replace("{location}", &format!("gid://shopify/Location/{location}")),
        erp_shop_flows(true)
    );
    let erpsync = Erpsync::new(&config, &[("shopify-token", shop.access_token())]);

    // Products: a template with two variants (one with its own price) and a simple product.
    let run = unique();
    let code = format!("ST{run}-");
    let mug_code = format!("SM{run}-");
    let (tee_s, tee_m, mug) = (format!("{code}S"), format!("{code}M"), format!("{mug_code}1"));
    let tee = tryton
        .create_product("Matrix Tee", &code, "20.00", &[("S", "Small", None), ("M", "Medium", Some("22.00"))])
        .await;
    tryton.create_product("Matrix Mug", &mug_code, "9.50", &[("1", "Mug", None)]).await;
    let counts = erpsync.sync("products").await;
    assert_eq!(counts.created, 2, "{counts:?}");
    let price = |sku: &str| shop.with_state(|state| state.variant_by_sku(sku).map(|variant| variant.price_cents));
    assert_eq!(price(&tee_s), Some(2000));
    assert_eq!(price(&tee_m), Some(2200), "variant M keeps its own price");
    assert_eq!(price(&mug), Some(950));
    let variants_of_tee = shop.with_state(|state| {
        let product = state.variant_by_sku(&tee_s).unwrap().product_id;
        state.variants.values().filter(|variant| variant.product_id == product).count()
    });
    assert_eq!(variants_of_tee, 2, "the tee is one product with two variants");

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
    assert_eq!(price(&tee_s), Some(2100));
    assert_eq!(price(&tee_m), Some(2200));

    // Stock received in Tryton's warehouse shows as available at the shop's location.
    tryton.receive(&[(&tee_s, 50), (&tee_m, 50), (&mug, 50)]).await;
    let counts = erpsync.sync("stock").await;
    assert!(counts.wrote() >= 3, "{counts:?}");
    let available = |sku: &str| {
        shop.with_state(|state| {
            let item = state.variant_by_sku(sku)?.inventory_item_id;
            state.inventory_levels.get(&(item, location)).and_then(|level| level.quantities.get("available").copied())
        })
    };
    assert_eq!(available(&tee_s), Some(50));
    assert_eq!(available(&mug), Some(50));

    // The shop's customer becomes a party.
    let counts = erpsync.sync("customers").await;
    assert_eq!(counts.created, 1, "{counts:?}");
    let email = shop.with_state(|state| state.customers.values().next().unwrap().email.clone().unwrap());
    let parties = tryton.search_read("party.party", json!([["contact_mechanisms.value", "=", email]]), &["name"]).await;
    assert_eq!(parties.len(), 1, "one party for {email}: {parties:?}");

    // An order placed in the shop (euros, prices including 20 % tax) becomes a confirmed sale
    // in euros with net prices.
    let placed: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/_sim/orders", shop.base_url()))
        .json(&json!({"create": 1, "seed": 11}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let order_id: u64 = placed["created"][0].as_str().unwrap().rsplit('/').next().unwrap().parse().unwrap();
    let (number, gross_cents, tax_cents) = shop.with_state(|state| {
        let order = &state.orders[&order_id];
        (order.name(), order.subtotal_cents(), order.line_items.iter().map(line_tax).sum::<i64>())
    });
    let counts = erpsync.sync("orders").await;
    assert_eq!(counts.created, 1, "{counts:?}");
    let sales = tryton.sales(&number).await;
    assert_eq!(sales.len(), 1, "one sale for {number}: {sales:?}");
    let sale = sales[0].clone();
    assert_eq!(sale["state"], "processing", "{sale}");
    assert_eq!(sale["currency"].as_i64(), Some(tryton.id("currency_eur")), "the sale is in euros");
    let untaxed = tryton_decimal(&sale["untaxed_amount"]);
    let expected = rust_decimal::Decimal::new(gross_cents - tax_cents, 2);
    assert!((untaxed - expected).abs() <= rust_decimal::Decimal::new(2, 2), "net {untaxed}, expected about {expected}");

    // Shipped from Tryton with a tracking number: the shop's order is fulfilled with it.
    let tracking = format!("TRACK{run}");
    tryton.ship(&sale, &tracking).await;
    let counts = erpsync.sync("shipments").await;
    assert_eq!(counts.wrote(), 1, "{counts:?}");
    let fulfillments = shop.with_state(|state| state.orders[&order_id].fulfillments.clone());
    assert_eq!(fulfillments.len(), 1, "{fulfillments:?}");
    assert!(fulfillments[0].tracking.iter().any(|t| t.to_string().contains(&tracking)), "{fulfillments:?}");

    // The posted invoice: its number and total on the order.
    let invoice_numbers = tryton.post_invoices(&sale).await;
    let counts = erpsync.sync("invoices").await;
    assert_eq!(counts.wrote(), 1, "{counts:?}");
    let metafields = shop.with_state(|state| state.orders[&order_id].metafields.clone());
    assert!(
        metafields.iter().any(|field| field.key == "invoice_number" && field.value == invoice_numbers[0]),
        "the invoice number {} on the order: {metafields:?}",
        invoice_numbers[0]
    );

    // The goods left the warehouse: on hand follows; what may be sold was already down.
    erpsync.sync("stock").await;

    // Everything again: nothing duplicated, and then nothing written.
    erpsync.again_twice(&["products", "stock", "customers", "orders", "shipments", "invoices"]).await;
    assert_eq!(tryton.sales(&number).await.len(), 1, "the order is in Tryton once");
    let (n_products, n_fulfillments) =
        shop.with_state(|state| (state.products.len(), state.orders[&order_id].fulfillments.len()));
    assert_eq!(n_products, 2, "no product created twice in the shop");
    assert_eq!(n_fulfillments, 1, "no shipment written twice");
}

/// The tax inside a tax-inclusive line, as the simulated shop computes it.
fn line_tax(line: &erpsync_sim::shopify::state::LineItem) -> i64 {
    erpsync_sim::shopify::state::Order::line_tax_cents(line)
}
