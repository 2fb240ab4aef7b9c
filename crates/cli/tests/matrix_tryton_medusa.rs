//! The matrix, Tryton × Medusa: two real servers, Tryton 8.2 (`tools/tryton/ensure.py`) and
//! Medusa 2.21 (`tools/medusa/ensure.py`), every flow both support, through `erpsync sync` of
//! the real binary on a configuration file: products with variants and prices, stock per
//! location, customers, orders placed through Medusa's store API checkout as a shopper does,
//! shipments with tracking and posted invoices back to the shop. Each step checks the other side over its own API,
//! a change made on one side shows on the other, and running every sync again writes and
//! duplicates nothing.
//!
//! Tryton's test company keeps its books in US dollars, so the shop sells in its "Americas"
//! region (USD) here.

mod common;

use common::{Erpsync, Medusa, Tryton, erp_shop_flows, tryton_decimal, unique};
use serde_json::{Value, json};

const SHOP: &str = r#"
[systems.shop]
type = "medusa"
url = "{shop}"
api_key = { file = "medusa-key" }
sales_channel = "Default Sales Channel"
currency = "USD"
region = "Americas"
stock_locations = { main = "Main WH" }

"#;

async fn variant(medusa: &Medusa, sku: &str) -> Value {
    let found = medusa.admin_get(&format!("/admin/product-variants?sku={sku}&fields=id,sku,product_id,*prices")).await;
    found["variants"][0].clone()
}

fn usd_price(variant: &Value) -> Option<String> {
    variant["prices"]
        .as_array()?
        .iter()
        .find(|price| price["currency_code"] == "usd" && price["min_quantity"].is_null())
        .map(|price| price["amount"].to_string())
}

async fn stocked(medusa: &Medusa, sku: &str) -> Option<i64> {
    let location = medusa.id("stock_locations.Main WH");
    let items = medusa.admin_get(&format!("/admin/inventory-items?sku={sku}&fields=id,sku,*location_levels")).await;
    items["inventory_items"][0]["location_levels"]
        .as_array()?
        .iter()
        .find(|level| level["location_id"] == location.as_str())
        .and_then(|level| level["stocked_quantity"].as_i64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tryton_and_medusa_every_flow_end_to_end() {
    let (tryton, medusa) = tokio::join!(Tryton::start(), Medusa::start(None));
    let config = format!("{}{}{}", tryton.system("erp"), SHOP.replace("{shop}", &medusa.url), erp_shop_flows(true));
    let erpsync = Erpsync::new(&config, &[("medusa-key", medusa.api_key.as_str())]);

    // Products: a template with two variants (one with its own price) and a simple product.
    let run = unique();
    let code = format!("MT{run}-");
    let mug_code = format!("MM{run}-");
    let (tee_s, tee_m, mug) = (format!("{code}S"), format!("{code}M"), format!("{mug_code}1"));
    let tee = tryton
        .create_product("Matrix Tee", &code, "20.00", &[("S", "Small", None), ("M", "Medium", Some("22.00"))])
        .await;
    tryton.create_product("Matrix Mug", &mug_code, "9.50", &[("1", "Mug", None)]).await;
    let counts = erpsync.sync("products").await;
    assert_eq!(counts.created, 2, "{counts:?}");
    let small = variant(&medusa, &tee_s).await;
    assert_eq!(usd_price(&small).as_deref(), Some("20"), "{small}");
    assert_eq!(usd_price(&variant(&medusa, &tee_m).await).as_deref(), Some("22"));
    assert_eq!(usd_price(&variant(&medusa, &mug).await).as_deref(), Some("9.5"));
    let product = medusa
        .admin_get(&format!("/admin/products/{}?fields=id,title,variants.sku", small["product_id"].as_str().unwrap()))
        .await;
    assert_eq!(product["product"]["variants"].as_array().unwrap().len(), 2, "one product, two variants: {product}");

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
    assert_eq!(usd_price(&variant(&medusa, &tee_s).await).as_deref(), Some("21"));
    assert_eq!(usd_price(&variant(&medusa, &tee_m).await).as_deref(), Some("22"), "M keeps its own price");

    // Stock received in Tryton's warehouse is stocked at Medusa's "Main WH".
    tryton.receive(&[(&tee_s, 10), (&tee_m, 5), (&mug, 7)]).await;
    let counts = erpsync.sync("stock").await;
    assert!(counts.wrote() >= 3, "{counts:?}");
    assert_eq!(stocked(&medusa, &tee_s).await, Some(10));
    assert_eq!(stocked(&medusa, &tee_m).await, Some(5));
    assert_eq!(stocked(&medusa, &mug).await, Some(7));

    // A shopper checks out through the store API (a guest with an e-mail, a US address).
    let email = format!("shopper{run}@example.com");
    let address = json!({"first_name": "Jane", "last_name": "Doe", "address_1": "42 Elm Street", "city": "Springfield",
        "postal_code": "62701", "country_code": "us", "phone": "+1 555 0100"});
    let mug_variant = variant(&medusa, &mug).await;
    let lines = [(small["id"].as_str().unwrap().to_string(), 2), (mug_variant["id"].as_str().unwrap().to_string(), 1)];
    let order = medusa.checkout(&medusa.id("region_usd"), &email, &lines, address).await;
    let number = order["display_id"].to_string();

    // The shopper is a customer of the shop: a party in Tryton.
    let counts = erpsync.sync("customers").await;
    assert!(counts.created >= 1, "{counts:?}");
    let parties = tryton
        .search_read("party.party", json!([["contact_mechanisms.value", "=", email]]), &["name", "addresses"])
        .await;
    assert_eq!(parties.len(), 1, "one party for {email}: {parties:?}");

    // The order becomes a confirmed sale of that party, in dollars.
    let counts = erpsync.sync("orders").await;
    assert_eq!(counts.created, 1, "{counts:?}");
    let sales = tryton.sales(&number).await;
    assert_eq!(sales.len(), 1, "one sale for order {number}: {sales:?}");
    let sale = sales[0].clone();
    assert_eq!(sale["state"], "processing", "{sale}");
    assert_eq!(sale["party"], parties[0]["id"], "the sale is the shopper's");
    assert_eq!(tryton_decimal(&sale["untaxed_amount"]), "51.50".parse().unwrap(), "2 × 21.00 + 9.50");

    // Shipped from Tryton with a tracking number: Medusa's order has a shipped fulfillment
    // with the tracking label.
    let tracking = format!("TRACK{run}");
    tryton.ship(&sale, &tracking).await;
    let counts = erpsync.sync("shipments").await;
    assert_eq!(counts.wrote(), 1, "{counts:?}");
    let fulfillments = fulfillments(&medusa, order["id"].as_str().unwrap()).await;
    assert_eq!(fulfillments.len(), 1, "{fulfillments:?}");
    assert!(!fulfillments[0]["shipped_at"].is_null(), "shipped: {fulfillments:?}");
    assert!(fulfillments[0]["labels"].to_string().contains(&tracking), "the tracking number: {fulfillments:?}");

    // The posted invoice: its number, total and report's file name on Medusa's order (Tryton
    // renders its report as OpenDocument without LibreOffice, and the name says so).
    let invoice_numbers = tryton.post_invoices(&sale).await;
    let counts = erpsync.sync("invoices").await;
    assert_eq!(counts.wrote(), 1, "{counts:?}");
    let metadata =
        medusa.admin_get(&format!("/admin/orders/{}?fields=id,metadata", order["id"].as_str().unwrap())).await;
    let metadata = &metadata["order"]["metadata"];
    assert_eq!(metadata["erpsync_invoice_number"], invoice_numbers[0].as_str(), "{metadata}");
    assert_eq!(metadata["erpsync_invoice_total"], "51.50", "{metadata}");
    assert_eq!(metadata["erpsync_invoice_currency"], "USD", "{metadata}");
    assert!(metadata["erpsync_invoice_file"].as_str().unwrap_or_default().ends_with(".odt"), "{metadata}");

    // The goods left the warehouse: on hand follows; what may be sold was already down.
    erpsync.sync("stock").await;

    // Everything again: nothing duplicated, and then nothing written.
    erpsync.again_twice(&["products", "stock", "customers", "orders", "shipments", "invoices"]).await;
    assert_eq!(tryton.sales(&number).await.len(), 1, "the order is in Tryton once");
    let products = medusa.admin_get("/admin/products?q=Matrix&fields=id,title&limit=50").await;
    assert_eq!(products["count"], 2, "no product created twice in the shop: {products}");
    assert_eq!(self::fulfillments(&medusa, order["id"].as_str().unwrap()).await.len(), 1, "no shipment written twice");
}

async fn fulfillments(medusa: &Medusa, order: &str) -> Vec<Value> {
    let order = medusa.admin_get(&format!("/admin/orders/{order}?fields=id,*fulfillments,*fulfillments.labels")).await;
    order["order"]["fulfillments"].as_array().cloned().unwrap_or_default()
}
