//! The matrix, Tryton × Shopify: a real Tryton 8.2 (`tools/tryton/ensure.py`) and the Shopify
//! simulator, every flow both support, through `erpsync sync` of the real binary on a
//! configuration file: products with variants and prices, a B2B sale price list with a
//! quantity tier, stock, customers, orders placed in the shop (in euros, prices including tax,
//! as the simulator's shop sells), shipments with tracking, posted invoices back to the shop,
//! and a refund made in the shop as a credit note in Tryton. Each step checks the other side's
//! real state, a change made on one side shows on the other, and running every sync again
//! writes and duplicates nothing.

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
price_lists = { "B2B-GOLD" = "Gold B2B" }

[systems.files]
type = "files"
path = "exchange"
format = "jsonl"

"#;

/// Price lists to the shop (whose sink writes no quantity tiers, so they are left out there) and,
/// tiers included, to a JSON Lines file; refunds from the shop to the ERP.
const MORE_FLOWS: &str = r#"
[flows.prices]
entity = "price_list"
source = "erp"
target = "shop"

[flows.prices.mapping.fields]
entries = "[entries[$number(min_quantity) <= 1]]"

[flows.prices_file]
entity = "price_list"
source = "erp"
target = "files"

[flows.refunds]
entity = "refund"
source = "shop"
target = "erp"
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
    // Tryton's warehouse `main` is the shop's one location, named by its id (its name would do
    // as well).
    let location = shop.with_state(|state| *state.locations.keys().next().unwrap());
    let run = unique();
    let wholesale = format!("Wholesale {run}");
    let config = format!(
        "{}price_list_groups = {{ \"{wholesale}\" = \"B2B-GOLD\" }}\n{}{}{MORE_FLOWS}",
        tryton.system("erp"),
        SHOP.replace("{shop}", &shop.base_url()).replace("{location}", &format!("gid://shopify/Location/{location}")),
        erp_shop_flows(true)
    );
    let erpsync = Erpsync::new(&config, &[("shopify-token", shop.access_token())]);
    std::fs::create_dir(erpsync.file("exchange")).unwrap();

    // Products: a template with two variants (one with its own price) and a simple product.
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

    // A B2B price list in Tryton: 10 % off the category's list prices, and 20 % off the
    // medium tee from 10 on. Tryton computes the prices; its name maps to the customer group
    // B2B-GOLD, which the shop maps to its price list "Gold B2B".
    let shop_list = graphql(
        &shop,
        "mutation { priceListCreate(input: {name: \"Gold B2B\", currency: USD, parent: {adjustment: {type: PERCENTAGE_DECREASE, value: 0}}}) { priceList { id } userErrors { message } } }",
    )
    .await["data"]["priceListCreate"]["priceList"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("the shop's price list was not created"))
        .rsplit('/')
        .next()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    let tee_m_id = tryton.product_id(&tee_m).await;
    let price_list = tryton
        .call(
            "product.price_list",
            "create",
            vec![json!([{
                "name": wholesale, "price": "list_price",
                "lines": [["create", [
                    {"product": tee_m_id, "quantity": 10.0, "formula": "unit_price * Decimal('0.8')"},
                    {"category": tryton.id("account_category"), "formula": "unit_price * Decimal('0.9')"},
                ]]],
            }])],
            json!({}),
        )
        .await[0]
        .as_i64()
        .unwrap();
    let counts = erpsync.sync("prices").await;
    assert_eq!(counts.created, 1, "{counts:?}");
    let list_price = |sku: &str| {
        shop.with_state(|state| {
            let variant = state.variants.values().find(|variant| variant.sku.as_deref() == Some(sku))?.id;
            state.price_lists[&shop_list].fixed_prices.get(&variant).map(|(cents, _)| *cents)
        })
    };
    assert_eq!(list_price(&tee_s), Some(1890), "21.00 less 10 %");
    assert_eq!(list_price(&tee_m), Some(1980), "22.00 less 10 %");
    assert_eq!(list_price(&mug), Some(855), "9.50 less 10 %");
    // The tier is read too: the file has it (the shop's sink writes no tiers).
    let counts = erpsync.sync("prices_file").await;
    assert_eq!(counts.created, 1, "{counts:?}");
    let (groups, mut entries) = price_file_entries(&erpsync, &wholesale);
    entries.sort();
    assert_eq!(groups, ["B2B-GOLD"], "the list's customer group, on every row");
    let mut expected: Vec<(String, String, String)> =
        [(&mug, "1", "8.55"), (&tee_m, "1", "19.8"), (&tee_m, "10", "17.6"), (&tee_s, "1", "18.9")]
            .into_iter()
            .map(|(sku, tier, price)| (sku.clone(), tier.to_string(), price.to_string()))
            .collect();
    expected.sort();
    assert_eq!(entries, expected, "one price per variant, and the medium tee's tier from 10 on");

    // A line changed in Tryton shows in the next sync; then a sync writes nothing.
    let category_line = tryton
        .search_read(
            "product.price_list.line",
            json!([["price_list", "=", price_list], ["category", "!=", null]]),
            &["id"],
        )
        .await[0]["id"]
        .as_i64()
        .unwrap();
    tryton
        .call(
            "product.price_list.line",
            "write",
            vec![json!([category_line]), json!({"formula": "unit_price * Decimal('0.5')"})],
            json!({}),
        )
        .await;
    let counts = erpsync.sync("prices").await;
    assert_eq!((counts.updated, counts.created), (1, 0), "{counts:?}");
    assert_eq!(list_price(&tee_s), Some(1050));
    assert_eq!(list_price(&tee_m), Some(1100));
    assert_eq!(list_price(&mug), Some(475));
    let counts = erpsync.sync("prices").await;
    assert_eq!(counts.wrote(), 0, "nothing changed: {counts:?}");

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

    // A refund of one unit of the first line in the shop (through its API): one posted credit
    // note for the sale's customer, crediting that unit at the refunded (tax-inclusive) amount.
    let (line_id, line_sku, line_cents, party) = shop.with_state(|state| {
        let line = &state.orders[&order_id].line_items[0];
        (line.id, line.sku.clone().unwrap(), line.unit_price_cents, sale["party"].clone())
    });
    let refund = graphql(
        &shop,
        &format!(
            "mutation {{ refundCreate(input: {{orderId: \"gid://shopify/Order/{order_id}\", note: \"damaged\", refundLineItems: [{{lineItemId: \"gid://shopify/LineItem/{line_id}\", quantity: 1, restockType: NO_RESTOCK}}], transactions: [{{orderId: \"gid://shopify/Order/{order_id}\", gateway: \"manual\", kind: REFUND, amount: \"{}\"}}]}}) {{ refund {{ id }} userErrors {{ field message }} }} }}",
            rust_decimal::Decimal::new(line_cents, 2)
        ),
    )
    .await;
    let refund_id = refund["data"]["refundCreate"]["refund"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("the refund was not created: {refund}"))
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let counts = erpsync.sync("refunds").await;
    assert_eq!(counts.created, 1, "{counts:?}");
    let reference = format!("{number}-R{refund_id}");
    let credit_notes = tryton.credit_notes(&reference).await;
    assert_eq!(credit_notes.len(), 1, "one credit note for {reference}: {credit_notes:?}");
    let credit_note = &credit_notes[0];
    assert_eq!(credit_note["state"], "posted", "{credit_note}");
    assert_eq!(credit_note["party"], party, "the sale's customer: {credit_note}");
    assert_eq!(credit_note["currency"].as_i64(), Some(tryton.id("currency_eur")), "{credit_note}");
    let refunded = rust_decimal::Decimal::new(line_cents, 2);
    assert_eq!(tryton_decimal(&credit_note["total_amount"]), -refunded, "{credit_note}");
    let lines = credit_note["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["product"].as_i64(), Some(tryton.product_id(&line_sku).await), "{lines:?}");
    assert_eq!(lines[0]["quantity"].as_f64(), Some(-1.0), "{lines:?}");
    assert_eq!(tryton_decimal(&lines[0]["unit_price"]), refunded, "{lines:?}");
    assert!(
        lines[0]["origin"].as_str().is_some_and(|origin| origin.starts_with("account.invoice.line,")),
        "the line credits the sale's invoice line: {lines:?}"
    );
    let counts = erpsync.sync_full("refunds").await;
    assert_eq!(counts.wrote(), 0, "{counts:?}");
    assert_eq!(tryton.credit_notes(&reference).await.len(), 1, "still one credit note");

    // The posted credit note goes back to the shop's order as a document, like the invoice: its
    // lines credit the sale's invoice lines, which tie it to the order.
    let credit_note_number = credit_note["number"].as_str().unwrap().to_string();
    let counts = erpsync.sync("invoices").await;
    assert_eq!(counts.created, 1, "{counts:?}");
    let metafields = shop.with_state(|state| state.orders[&order_id].metafields.clone());
    assert!(
        metafields.iter().any(|field| field.key == "credit_note_number" && field.value == credit_note_number),
        "the credit note {credit_note_number} on the order: {metafields:?}"
    );

    // Everything again: nothing duplicated, and then nothing written.
    erpsync
        .again_twice(&[
            "products",
            "prices",
            "prices_file",
            "stock",
            "customers",
            "orders",
            "shipments",
            "invoices",
            "refunds",
        ])
        .await;
    assert_eq!(tryton.sales(&number).await.len(), 1, "the order is in Tryton once");
    let (n_products, n_fulfillments) =
        shop.with_state(|state| (state.products.len(), state.orders[&order_id].fulfillments.len()));
    assert_eq!(n_products, 2, "no product created twice in the shop");
    assert_eq!(n_fulfillments, 1, "no shipment written twice");
}

/// A GraphQL call to the simulated shop's Admin API, as a merchant's app makes it.
async fn graphql(shop: &erpsync_sim::shopify::RunningSim, query: &str) -> serde_json::Value {
    let answer: serde_json::Value = reqwest::Client::new()
        .post(shop.graphql_url("2026-10"))
        .header("X-Shopify-Access-Token", shop.access_token())
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(answer.get("errors").is_none(), "{query}: {answer}");
    answer
}

/// What the files connector wrote for the price list `code` (one JSON record per line): its
/// customer groups (each once) and its entries as (sku, min_quantity, price), in the files' text.
fn price_file_entries(erpsync: &common::Erpsync, code: &str) -> (Vec<String>, Vec<(String, String, String)>) {
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let mut groups: Vec<String> = Vec::new();
    let mut entries = Vec::new();
    for file in std::fs::read_dir(erpsync.file("exchange")).unwrap() {
        let content = std::fs::read_to_string(file.unwrap().path()).unwrap();
        for line in content.lines() {
            let list: serde_json::Value = serde_json::from_str(line).unwrap();
            if list["code"] != code {
                continue;
            }
            if !groups.contains(&text(&list["customer_group"])) {
                groups.push(text(&list["customer_group"]));
            }
            for entry in list["entries"].as_array().into_iter().flatten() {
                entries.push((text(&entry["sku"]), text(&entry["min_quantity"]), text(&entry["price"])));
            }
        }
    }
    (groups, entries)
}

/// The tax inside a tax-inclusive line, as the simulated shop computes it.
fn line_tax(line: &erpsync_sim::shopify::state::LineItem) -> i64 {
    erpsync_sim::shopify::state::Order::line_tax_cents(line)
}
