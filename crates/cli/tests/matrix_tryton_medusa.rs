//! The matrix, Tryton × Medusa: two real servers, Tryton 8.2 (`tools/tryton/ensure.py`) and
//! Medusa 2.21 (`tools/medusa/ensure.py`), every flow both support, through `erpsync sync` of
//! the real binary on a configuration file: products with variants and prices, stock per
//! location, customers, orders placed through Medusa's store API checkout as a shopper does,
//! shipments with tracking, posted invoices back to the shop, a customer-group price list
//! computed by Tryton into a Medusa price list, and a refund made in Medusa's admin as a posted
//! credit note in Tryton. Each step checks the other side over its own API, a change made on
//! one side shows on the other, and running every sync again writes and duplicates nothing.
//!
//! Tryton's test company keeps its books in US dollars, so the shop sells in its "Americas"
//! region (USD) here.
//!
//! A second test puts Medusa against a `files` system (JSON Lines): refunds made in Medusa's
//! admin out to a file, an invoice with its PDF bytes uploaded into Medusa, and a customer-group
//! price list into a Medusa price list.

mod common;

use base64::Engine as _;
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

/// Flows beyond the common ones: Tryton's price lists to the shop, the shop's refunds to Tryton.
const MORE_FLOWS: &str = r#"
[flows.prices]
entity = "price_list"
source = "erp"
target = "shop"

[flows.refunds]
entity = "refund"
source = "shop"
target = "erp"
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
    let run = unique();
    // Tryton's price list `Wholesale <run>` is for the shop's customer group `B2B <run>`.
    let (wholesale, b2b) = (format!("Wholesale {run}"), format!("B2B {run}"));
    let config = format!(
        "{}price_list_groups = {{ \"{wholesale}\" = \"{b2b}\" }}\n{}{}{MORE_FLOWS}",
        tryton.system("erp"),
        SHOP.replace("{shop}", &medusa.url),
        erp_shop_flows(true)
    );
    let erpsync = Erpsync::new(&config, &[("medusa-key", medusa.api_key.as_str())]);

    // Products: a template with two variants (one with its own price) and a simple product.
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

    // The posted invoice: its number, total and report's file name on Medusa's order, and the
    // report uploaded to the shop (Tryton renders its report as OpenDocument without
    // LibreOffice, and the name says so).
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
    let report = metadata["erpsync_invoice_url"].as_str().unwrap_or_default();
    assert!(report.starts_with(&medusa.url) && report.ends_with(".odt"), "the report uploaded to the shop: {metadata}");

    // The goods left the warehouse: on hand follows; what may be sold was already down.
    erpsync.sync("stock").await;

    // A B2B price list in Tryton, 10 % off the category's list prices: a Medusa override list
    // limited to the customer group, with the prices Tryton computes.
    tryton
        .call(
            "product.price_list",
            "create",
            vec![json!([{
                "name": wholesale, "price": "list_price",
                "lines": [["create", [{"category": tryton.id("account_category"), "formula": "unit_price * Decimal('0.9')"}]]],
            }])],
            json!({}),
        )
        .await;
    let counts = erpsync.sync("prices").await;
    assert_eq!(counts.created, 1, "{counts:?}");
    let groups =
        medusa.admin_get(&format!("/admin/customer-groups?name={}&fields=id,name", b2b.replace(' ', "%20"))).await;
    assert_eq!(groups["customer_groups"].as_array().unwrap().len(), 1, "the group exists: {groups}");
    let group_id = groups["customer_groups"][0]["id"].as_str().unwrap().to_string();
    let lists = price_lists(&medusa, &wholesale).await;
    assert_eq!(lists.len(), 1, "{lists:?}");
    assert_eq!(lists[0]["type"], "override", "{}", lists[0]);
    assert_eq!(lists[0]["rules"], json!({"customer.groups.id": [group_id]}), "limited to the group: {}", lists[0]);
    for (sku, expected) in [(&tee_s, "18.90"), (&mug, "8.55")] {
        let id = variant(&medusa, sku).await["id"].as_str().unwrap().to_string();
        let found: Vec<_> = list_prices(&lists[0]).into_iter().filter(|(variant, _, _)| *variant == id).collect();
        assert_eq!(found.len(), 1, "one price for {sku}: {found:?}");
        let price: rust_decimal::Decimal = found[0].2.parse().unwrap();
        assert_eq!(price, expected.parse().unwrap(), "{sku}: its list price less 10 %");
    }

    // The merchant takes the payment and refunds 10.50 in Medusa's admin: one posted credit note
    // in Tryton for the sale's customer, over the refunded amount.
    let order_id = order["id"].as_str().unwrap();
    let payments = medusa.admin_get(&format!("/admin/orders/{order_id}?fields=id,*payment_collections.payments")).await;
    let payment = payments["order"]["payment_collections"][0]["payments"][0]["id"].as_str().unwrap().to_string();
    medusa.admin_post(&format!("/admin/payments/{payment}/capture"), json!({})).await;
    let refunded = medusa
        .admin_post(
            &format!("/admin/payments/{payment}/refund?fields=id,*refunds"),
            json!({"amount": 10.5, "note": "half a tee back"}),
        )
        .await;
    let refund_id = refunded["payment"]["refunds"][0]["id"].as_str().unwrap().to_string();
    let counts = erpsync.sync("refunds").await;
    assert_eq!(counts.created, 1, "{counts:?}");
    let credit_notes = tryton.credit_notes(&refund_id).await;
    assert_eq!(credit_notes.len(), 1, "one credit note for {refund_id}: {credit_notes:?}");
    assert_eq!(credit_notes[0]["state"], "posted", "{}", credit_notes[0]);
    assert_eq!(credit_notes[0]["party"], parties[0]["id"], "the sale's customer: {}", credit_notes[0]);
    assert_eq!(tryton_decimal(&credit_notes[0]["total_amount"]), "-10.50".parse().unwrap(), "{}", credit_notes[0]);

    // The posted credit note goes back to Medusa's order as a document, beside the invoice.
    let counts = erpsync.sync("invoices").await;
    assert_eq!(counts.created, 1, "{counts:?}");
    let metadata = medusa.admin_get(&format!("/admin/orders/{order_id}?fields=id,metadata")).await;
    let metadata = &metadata["order"]["metadata"];
    assert_eq!(metadata["erpsync_credit_note_number"], credit_notes[0]["number"], "{metadata}");
    assert_eq!(metadata["erpsync_credit_note_total"], "10.50", "{metadata}");
    assert_eq!(metadata["erpsync_invoice_number"], invoice_numbers[0].as_str(), "the invoice stays: {metadata}");

    // Everything again: nothing duplicated, and then nothing written.
    erpsync
        .again_twice(&["products", "stock", "customers", "orders", "shipments", "invoices", "prices", "refunds"])
        .await;
    assert_eq!(tryton.credit_notes(&refund_id).await.len(), 1, "the refund is credited once");
    assert_eq!(price_lists(&medusa, &wholesale).await.len(), 1, "the price list is in the shop once");
    assert_eq!(tryton.sales(&number).await.len(), 1, "the order is in Tryton once");
    let products = medusa.admin_get("/admin/products?q=Matrix&fields=id,title&limit=50").await;
    assert_eq!(products["count"], 2, "no product created twice in the shop: {products}");
    assert_eq!(self::fulfillments(&medusa, order["id"].as_str().unwrap()).await.len(), 1, "no shipment written twice");
}

async fn fulfillments(medusa: &Medusa, order: &str) -> Vec<Value> {
    let order = medusa.admin_get(&format!("/admin/orders/{order}?fields=id,*fulfillments,*fulfillments.labels")).await;
    order["order"]["fulfillments"].as_array().cloned().unwrap_or_default()
}

const FILES_FLOWS: &str = r#"
[systems.erp]
type = "files"
path = "exchange"
format = "jsonl"

[flows.refunds]
entity = "refund"
source = "shop"
target = "erp"

[flows.invoices]
entity = "document"
source = "erp"
target = "shop"

[flows.group_prices]
entity = "price_list"
source = "erp"
target = "shop"
"#;

/// The lines of the JSON Lines files in `folder` whose names start with `prefix`.
fn jsonl_records(folder: &std::path::Path, prefix: &str) -> Vec<Value> {
    let mut records = Vec::new();
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with(prefix) && name.ends_with(".jsonl") {
            for line in std::fs::read_to_string(&path).unwrap().lines().filter(|line| !line.trim().is_empty()) {
                records.push(serde_json::from_str(line).unwrap());
            }
        }
    }
    records
}

/// Medusa's price lists that erpsync wrote for `code`, with their prices and rules.
async fn price_lists(medusa: &Medusa, code: &str) -> Vec<Value> {
    let lists = medusa.admin_get("/admin/price-lists?fields=id,metadata&limit=1000").await;
    let mut found = Vec::new();
    for list in lists["price_lists"].as_array().unwrap() {
        if list["metadata"]["erpsync_code"] == code {
            let id = list["id"].as_str().unwrap();
            let full = medusa.admin_get(&format!("/admin/price-lists/{id}?fields=id,title,type,status,metadata,*prices,prices.price_set.variant.id,price_list_rules.attribute,price_list_rules.value")).await;
            found.push(full["price_list"].clone());
        }
    }
    found
}

/// (variant id, min quantity, amount) of a price list's prices, sorted.
fn list_prices(list: &Value) -> Vec<(String, Option<i64>, String)> {
    let mut prices: Vec<(String, Option<i64>, String)> = list["prices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|price| {
            assert_eq!(price["currency_code"], "usd", "{price}");
            (
                price["variant_id"].as_str().unwrap().to_string(),
                price["min_quantity"].as_i64(),
                price["amount"].to_string(),
            )
        })
        .collect();
    prices.sort();
    prices
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn medusa_refunds_invoice_files_and_group_prices_with_files() {
    let medusa = Medusa::start(None).await;
    let config = format!("{}{FILES_FLOWS}", SHOP.replace("{shop}", &medusa.url));
    let erpsync = Erpsync::new(&config, &[("medusa-key", medusa.api_key.as_str())]);
    let exchange = erpsync.file("exchange");
    std::fs::create_dir_all(&exchange).unwrap();

    // A product sold in dollars, without managed inventory (no stock needed to sell it).
    let run = unique();
    let sku = format!("RF{run}");
    let product = medusa
        .admin_post(
            "/admin/products",
            json!({"title": format!("Refund Mug {run}"), "handle": format!("refund-mug-{run}"), "status": "published",
                "shipping_profile_id": medusa.id("shipping_profile"), "sales_channels": [{"id": medusa.id("sales_channel")}],
                "options": [{"title": "Default", "values": ["Default"]}],
                "variants": [{"title": "Mug", "sku": sku, "manage_inventory": false, "options": {"Default": "Default"},
                    "prices": [{"currency_code": "usd", "amount": 12.5}]}]}),
        )
        .await;
    let variant_id = product["product"]["variants"][0]["id"].as_str().unwrap().to_string();

    // A shopper buys two; the merchant captures the payment and refunds 7.50 in the admin.
    let address = json!({"first_name": "Jo", "last_name": "Roe", "address_1": "1 Main Street", "city": "Springfield",
        "postal_code": "62701", "country_code": "us"});
    let order = medusa
        .checkout(&medusa.id("region_usd"), &format!("refund{run}@example.com"), &[(variant_id.clone(), 2)], address)
        .await;
    let (order_id, number) = (order["id"].as_str().unwrap().to_string(), order["display_id"].to_string());
    let payments = medusa.admin_get(&format!("/admin/orders/{order_id}?fields=id,*payment_collections.payments")).await;
    let payment = payments["order"]["payment_collections"][0]["payments"][0]["id"].as_str().unwrap().to_string();
    medusa.admin_post(&format!("/admin/payments/{payment}/capture"), json!({})).await;
    let reason = medusa
        .admin_post("/admin/refund-reasons", json!({"label": "Damaged in transit", "code": format!("damaged{run}")}))
        .await;
    let refunded = medusa
        .admin_post(
            &format!("/admin/payments/{payment}/refund?fields=id,*refunds"),
            json!({"amount": 7.5, "note": "one mug broken", "refund_reason_id": reason["refund_reason"]["id"]}),
        )
        .await;
    let refund_id = refunded["payment"]["refunds"][0]["id"].as_str().unwrap().to_string();

    // The refund arrives as a canonical refund in the files system.
    let counts = erpsync.sync("refunds").await;
    assert_eq!(counts.created, 1, "{counts:?}");
    let refunds = jsonl_records(&exchange, "refund-");
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    let refund = &refunds[0];
    assert_eq!(refund["number"], refund_id.as_str(), "{refund}");
    assert_eq!(refund["order_number"], number.as_str(), "{refund}");
    assert_eq!((refund["amount"].as_str(), refund["currency"].as_str()), (Some("7.5"), Some("USD")), "{refund}");
    assert_eq!(refund["reason"], "Damaged in transit", "{refund}");
    assert_eq!(refund["extra"]["note"], "one mug broken", "{refund}");
    assert!(refund["refunded_at"].is_string(), "{refund}");
    let counts = erpsync.sync("refunds").await;
    assert_eq!(counts.wrote(), 0, "the refund read again (overlap) is not written twice: {counts:?}");

    // The ERP's invoice with its PDF: uploaded to Medusa, its URL on the order answers the bytes.
    let pdf = format!("%PDF-1.4\n% invoice {run}\n\u{0}\u{ff}binary\n%%EOF\n").into_bytes();
    let invoice_number = format!("INV{run}");
    let document = json!({"kind": "invoice", "number": invoice_number, "order_number": number,
        "issued_at": "2026-11-27T00:00:00Z", "currency": "USD",
        "totals": {"subtotal": "25", "total": "30"},
        "pdf": {"base64": {"data": base64::engine::general_purpose::STANDARD.encode(&pdf), "file_name": format!("{invoice_number}.pdf")}}});
    std::fs::write(exchange.join("document-1.jsonl"), format!("{document}\n")).unwrap();
    let counts = erpsync.sync("invoices").await;
    assert_eq!(counts.wrote(), 1, "{counts:?}");
    let metadata =
        medusa.admin_get(&format!("/admin/orders/{order_id}?fields=id,metadata")).await["order"]["metadata"].clone();
    assert_eq!(metadata["erpsync_invoice_number"], invoice_number.as_str(), "{metadata}");
    assert_eq!(metadata["erpsync_invoice_total"], "30.00", "{metadata}");
    assert_eq!(metadata["erpsync_invoice_file"], format!("{invoice_number}.pdf").as_str(), "{metadata}");
    let url = metadata["erpsync_invoice_url"].as_str().unwrap_or_else(|| panic!("no URL: {metadata}")).to_string();
    assert!(url.starts_with(&medusa.url), "served by the shop: {url}");
    let served = reqwest::get(&url).await.unwrap();
    assert!(served.status().is_success(), "{url}: {}", served.status());
    assert_eq!(served.bytes().await.unwrap().as_ref(), pdf.as_slice(), "the uploaded bytes");
    assert_eq!(erpsync.sync("invoices").await.wrote(), 0, "unchanged: not written again");

    // A customer-group price list with a quantity tier becomes a Medusa price list for the group.
    let code = format!("B2B{run}");
    let group = format!("Wholesale {run}");
    let list = |price: &str| {
        json!({"code": code, "name": format!("Wholesale prices {run}"), "currency": "USD", "customer_group": group,
            "entries": [{"sku": sku, "min_quantity": "1", "price": price}, {"sku": sku, "min_quantity": "10", "price": "9"}]})
    };
    std::fs::write(exchange.join("price_list-1.jsonl"), format!("{}\n", list("11"))).unwrap();
    let counts = erpsync.sync("group_prices").await;
    assert_eq!(counts.created, 1, "{counts:?}");
    let groups =
        medusa.admin_get(&format!("/admin/customer-groups?name={}&fields=id,name", group.replace(' ', "%20"))).await;
    assert_eq!(groups["customer_groups"].as_array().unwrap().len(), 1, "the group was created: {groups}");
    let group_id = groups["customer_groups"][0]["id"].as_str().unwrap().to_string();
    let lists = price_lists(&medusa, &code).await;
    assert_eq!(lists.len(), 1, "{lists:?}");
    assert_eq!(
        (lists[0]["type"].as_str(), lists[0]["status"].as_str()),
        (Some("override"), Some("active")),
        "{}",
        lists[0]
    );
    assert_eq!(lists[0]["rules"], json!({"customer.groups.id": [group_id]}), "limited to the group: {}", lists[0]);
    assert_eq!(
        list_prices(&lists[0]),
        vec![(variant_id.clone(), None, "11".into()), (variant_id.clone(), Some(10), "9".into())],
        "{}",
        lists[0]
    );
    assert_eq!(usd_price(&variant(&medusa, &sku).await).as_deref(), Some("12.5"), "the base price is untouched");

    // The ERP changes a price (the file is written anew): the same list gets it, no second one.
    std::fs::write(exchange.join("price_list-1.jsonl"), format!("{}\n", list("10.5"))).unwrap();
    let counts = erpsync.sync("group_prices").await;
    assert_eq!((counts.created, counts.updated), (0, 1), "{counts:?}");
    let lists = price_lists(&medusa, &code).await;
    assert_eq!(lists.len(), 1, "no second list: {lists:?}");
    assert_eq!(
        list_prices(&lists[0]),
        vec![(variant_id.clone(), None, "10.5".into()), (variant_id.clone(), Some(10), "9".into())]
    );
    erpsync.again_twice(&["refunds", "invoices", "group_prices"]).await;

    // A second erpsync with no memory of the first (a new data folder, the same files): the
    // list is found by its code and the invoice by its digest; nothing is created or uploaded.
    let fresh = Erpsync::new(&config, &[("medusa-key", medusa.api_key.as_str())]);
    std::fs::create_dir_all(fresh.file("exchange")).unwrap();
    std::fs::write(fresh.file("exchange").join("document-1.jsonl"), format!("{document}\n")).unwrap();
    std::fs::write(fresh.file("exchange").join("price_list-1.jsonl"), format!("{}\n", list("10.5"))).unwrap();
    let counts = fresh.sync("group_prices").await;
    assert_eq!(counts.created, 0, "{counts:?}");
    assert_eq!(price_lists(&medusa, &code).await.len(), 1, "still one list");
    fresh.sync("invoices").await;
    let again =
        medusa.admin_get(&format!("/admin/orders/{order_id}?fields=id,metadata")).await["order"]["metadata"].clone();
    assert_eq!(again["erpsync_invoice_url"], url.as_str(), "the same upload, not a second one: {again}");
}
