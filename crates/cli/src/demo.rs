//! `erpsync demo`: an ERP and a shop (the Odoo and Shopify simulators) started in process with
//! seed data, a configuration for both directions, and `serve` running until Ctrl-C or for
//! `--duration`, with a printout of what moves where. Beside the shop's order stream, a back
//! office in Odoo ships and invoices the orders, so that shipments, order status and invoices
//! flow back to the shop.

use anyhow::{Context, Result};
use erpsync_engine::Engine;
use erpsync_engine::shutdown::{self, Shutdown};
use erpsync_sim::{odoo, shopify};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct DemoOptions<'a> {
    pub dir: &'a Path,
    pub products: usize,
    pub duration: Option<Duration>,
    /// Shop orders placed per minute by the demo's order stream.
    pub orders_per_minute: u32,
}

/// The shop's B2B price lists the demo creates, by the customer group whose Odoo pricelist
/// fills it: (group, Odoo pricelist, Shopify price list).
const PRICE_LISTS: [(&str, &str, &str); 2] = [("vip", "VIP", "B2B VIP"), ("wholesale", "Wholesale", "B2B Wholesale")];

/// The Admin API version the connector speaks by default.
const SHOPIFY_API_VERSION: &str = "2026-10";

/// How often the back office ships and invoices (the flows that carry its work back to the shop
/// poll Odoo every 5 seconds).
const BACK_OFFICE_EVERY: Duration = Duration::from_secs(5);

/// With a duration, orders and the back office stop this long before the end, so that the
/// summary shows where every order, shipment and invoice went: webhooks bring the orders to
/// Odoo within a second, and the flows polling Odoo every 5 seconds each run at least once
/// after the back office's last pass.
const QUIET_BEFORE_END: Duration = Duration::from_secs(10);

/// The configuration the demo writes: both simulators' addresses change from run to run.
fn config(odoo_url: &str, shopify_url: &str, listen: &str) -> String {
    let odoo_lists: Vec<String> = PRICE_LISTS.iter().map(|(group, odoo, _)| format!("{group} = \"{odoo}\"")).collect();
    let shop_lists: Vec<String> = PRICE_LISTS.iter().map(|(group, _, shop)| format!("{group} = \"{shop}\"")).collect();
    let (odoo_lists, shop_lists) = (odoo_lists.join(", "), shop_lists.join(", "));
    format!(
        r#"# erpsync demo: Odoo (the ERP) and Shopify (the shop) are simulators started by
# `erpsync demo`; their addresses change each time it starts, and this file is rewritten.

[server]
listen = "{listen}"
public_url = "http://{listen}"

[systems.odoo]
type = "odoo"
url = "{odoo_url}"
database = "odoo"
protocol = "json2"
api_key = {{ file = "secrets/odoo-api-key" }}
confirm_orders = true
shipping_product = "SHIPPING"
warehouses = {{ "Warehouse" = "WH", "Store 1" = "WH2", "Store 2" = "WH3" }}
# Customer groups and their pricelists (Odoo's third, Retail, has no prices of its own).
price_lists = {{ {odoo_lists} }}

[systems.shopify]
type = "shopify"
url = "{shopify_url}"
access_token = {{ file = "secrets/shopify-token" }}
webhook_secret = {{ file = "secrets/shopify-webhook-secret" }}
# Odoo's deliveries leave from WH/Stock, the shop's location "Warehouse".
locations = {{ "WH/Stock" = "Warehouse" }}
# Customer groups and the shop's B2B price lists.
price_lists = {{ {shop_lists} }}

# ERP -> shop: the catalog, customer-group prices, stock per location, shipments, order status
# and invoices.
[flows.products]
entity = "product"
source = "odoo"
target = "shopify"
interval = "30s"

[flows.products.mapping]
# Odoo's service product for shipping lines is not for sale in the shop.
filter = "variants[0].sku != 'SHIPPING'"

[flows.price_lists]
entity = "price_list"
source = "odoo"
target = "shopify"
interval = "60s"

[flows.price_lists.mapping.fields]
# A Shopify price list holds one fixed price per variant: quantity tiers (Wholesale's from 10
# units) stay in Odoo.
entries = "[entries[$number(min_quantity) <= 1]]"

[flows.stock]
entity = "stock_level"
source = "odoo"
target = "shopify"
interval = "30s"

# Odoo sends no webhook the connector can use, so what the back office does is polled for.
[flows.shipments]
entity = "shipment"
source = "odoo"
target = "shopify"
interval = "5s"

[flows.order_status]
entity = "order_status"
source = "odoo"
target = "shopify"
interval = "5s"

[flows.invoices]
entity = "document"
source = "odoo"
target = "shopify"
interval = "5s"

# shop -> ERP: customers and orders, on webhooks, with a pull every 15s as a safety net.
[flows.customers]
entity = "customer"
source = "shopify"
target = "odoo"
interval = "15s"

[flows.orders]
entity = "order"
source = "shopify"
target = "odoo"
interval = "15s"
"#
    )
}

pub async fn run(options: DemoOptions<'_>) -> Result<ExitCode> {
    let dir = options.dir;
    std::fs::create_dir_all(dir.join("secrets")).with_context(|| format!("creating {}", dir.display()))?;

    println!("Starting the simulators (in this process):");
    let odoo_config = odoo::OdooSimConfig {
        seed: Some(odoo::SeedConfig {
            seed: 7,
            products: options.products,
            max_variants: 3,
            warehouses: 3,
            customers: 20,
            orders: 0,
            // Besides its catalog-wide tiers, Wholesale gets prices of its own for 10 products
            // (VIP has fixed prices for a few in every seed).
            wholesale_products: 10,
            ..odoo::SeedConfig::default()
        }),
        ..odoo::OdooSimConfig::default()
    };
    let api_key = odoo_config.api_key.clone();
    let odoo_sim = odoo::OdooSim::start(odoo_config).await.context("starting the Odoo simulator")?;
    println!(
        "  Odoo     {}  ({} product templates with up to 3 variants, 3 warehouses, pricelists for the customer groups)",
        odoo_sim.base_url(),
        options.products
    );
    let shop_config = shopify::ShopifyConfig {
        seed: Some(shopify::SeedConfig {
            seed: 7,
            products: 0,
            variants_per_product: 1,
            locations: 3,
            customers: 25,
            orders: 0,
        }),
        // B2B price lists are a Shopify Plus feature, and a Plus shop's API allowance (1,000
        // points a second) keeps the order pulls from waiting behind the shipments, order
        // states and invoices written into the shop.
        plan: shopify::PlanLimits::PLUS,
        ..shopify::ShopifyConfig::default()
    };
    let webhook_secret = shop_config.api_secret.clone();
    let shop_sim = shopify::ShopifySim::start(shop_config).await.context("starting the Shopify simulator")?;
    create_price_lists(&shop_sim).await?;
    println!(
        "  Shopify  {}  (an empty catalog, 3 locations, 25 customers, B2B price lists {})",
        shop_sim.base_url(),
        PRICE_LISTS.map(|(_, _, shop)| format!("\"{shop}\"")).join(" and ")
    );

    // What an Odoo set up for this shop has: a service product for shipping lines, and the
    // shop's VAT (20 %, included in its prices).
    let setup = [
        (
            "product.product",
            serde_json::json!({ "name": "Shipping", "default_code": "SHIPPING", "type": "service", "list_price": 0 }),
        ),
        (
            "account.tax",
            serde_json::json!({ "name": "VAT 20% (incl.)", "amount": 20, "amount_type": "percent", "type_tax_use": "sale", "price_include": true }),
        ),
    ];
    for (model, values) in setup {
        let created = reqwest::Client::new()
            .post(format!("{}/json/2/{model}/create", odoo_sim.base_url()))
            .bearer_auth(&api_key)
            .header("X-Odoo-Database", "odoo")
            .json(&serde_json::json!({ "vals_list": [values] }))
            .send()
            .await
            .with_context(|| format!("creating a {model} in the Odoo simulator"))?;
        anyhow::ensure!(created.status().is_success(), "creating a {model} in Odoo: {}", created.status());
    }
    std::fs::write(dir.join("secrets/odoo-api-key"), &api_key)?;
    std::fs::write(dir.join("secrets/shopify-token"), shop_sim.access_token())?;
    std::fs::write(dir.join("secrets/shopify-webhook-secret"), &webhook_secret)?;
    let listen = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
        probe.local_addr()?.to_string()
    };
    let config_path = dir.join("erpsync.toml");
    std::fs::write(&config_path, config(&odoo_sim.base_url(), &shop_sim.base_url(), &listen))?;
    let config = crate::load_config(&config_path)?;
    let store_url = crate::store_url(&config, &dir.join("data"))?;
    let store = erpsync_store::open_with_pool(&store_url, config.store.pool).await.context("opening the store")?;
    let engine = Arc::new(Engine::new(Arc::new(config), store));

    // The catalog first, so that stock and the first orders find their products in the shop.
    let first = Instant::now();
    let first_run = erpsync_engine::RunOptions { full: false, dry_run: false, trigger: "manual".into() };
    let summary = engine.sync("products", &first_run, &Shutdown::never(), &|_| {}).await?;
    println!(
        "  catalog   {} products (with their variants) created in the shop in {:.1}s",
        summary.counts.created,
        first.elapsed().as_secs_f64()
    );
    // Then the customer groups' prices, which name the shop's variants by SKU.
    let summary = engine.sync("price_lists", &first_run, &Shutdown::never(), &|_| {}).await?;
    println!(
        "  prices    {} price lists written in the shop: {}",
        summary.counts.created + summary.counts.updated,
        describe_price_lists(&shop_sim)
    );
    let socket = erpsync_server::listen(&engine).await.with_context(|| format!("listening on {listen}"))?;
    let (trigger, stop) = shutdown::channel();
    let http = tokio::spawn(erpsync_server::serve(socket, engine.clone(), stop.clone()));
    // The shop delivers order and customer webhooks to this server.
    let registered = crate::webhooks::register_all(engine.config()).await?;
    println!("  erpsync  http://{listen}  (webhooks: {registered} subscriptions in the shop)");
    println!();
    println!("Flows (serve):");
    for status in engine.status().await? {
        println!("  {:<12} {:<12} {} → {}", status.name, status.entity, status.source, status.target);
    }
    println!();
    match options.duration {
        Some(duration) => println!(
            "Running for {}s; the shop receives {} orders a minute, Odoo ships and invoices them every {}s.",
            duration.as_secs(),
            options.orders_per_minute,
            BACK_OFFICE_EVERY.as_secs()
        ),
        None => println!(
            "Running until Ctrl-C; the shop receives {} orders a minute, Odoo ships and invoices them every {}s.",
            options.orders_per_minute,
            BACK_OFFICE_EVERY.as_secs()
        ),
    }
    println!();

    let scheduler = {
        let engine = engine.clone();
        let stop = stop.clone();
        tokio::spawn(async move { engine.serve(stop).await })
    };
    // With a duration, orders and the back office stop a little before the end, so that the
    // summary shows where every order went.
    let (orders_trigger, orders_stop) = shutdown::channel();
    let orders = tokio::spawn(order_stream(shop_sim.base_url(), options.orders_per_minute, orders_stop.clone()));
    let back_office = tokio::spawn(back_office(odoo_sim.base_url(), orders_stop));
    let mut ctrl_c = Box::pin(tokio::signal::ctrl_c());
    let started = Instant::now();
    let mut ticker = stop.clone();
    loop {
        let mut wait = Duration::from_secs(5);
        let mut last = false;
        if let Some(duration) = options.duration
            && started.elapsed() + wait >= duration
        {
            wait = duration.saturating_sub(started.elapsed());
            last = true;
        }
        if let Some(duration) = options.duration
            && started.elapsed() + QUIET_BEFORE_END >= duration
        {
            orders_trigger.trigger();
        }
        let interrupted = tokio::select! {
            _ = ticker.sleep(wait) => false,
            _ = &mut ctrl_c => true,
        };
        print_progress(&engine, started, &shop_sim, &odoo_sim).await;
        if last || interrupted {
            break;
        }
    }
    orders_trigger.trigger();
    trigger.trigger();
    let placed = orders.await.unwrap_or(0);
    back_office.await.context("the back office task")?;
    scheduler.await.context("the scheduler task")??;
    http.await.context("the HTTP server task")??;

    println!();
    println!("Summary after {}s:", started.elapsed().as_secs());
    crate::output::print_status(&engine.status().await?, false)?;
    let shop_products = shop_sim.with_state(|state| state.products.len());
    let shop = ShopOrders::of(&shop_sim);
    let odoo = OdooOrders::of(&odoo_sim);
    println!();
    println!("  products in the shop:         {shop_products} (from {} templates in Odoo)", options.products);
    let filled =
        shop_sim.with_state(|state| state.price_lists.values().filter(|list| !list.fixed_prices.is_empty()).count());
    println!("  price lists in the shop:      {filled} with prices ({})", describe_price_lists(&shop_sim));
    println!("  orders placed in the shop:    {} ({placed} by the demo's order stream)", shop.placed);
    println!("  sale orders in Odoo:          {}", odoo.orders);
    println!("  shipped in Odoo:              {} (transfers validated by the back office)", odoo.shipped);
    println!("  invoiced in Odoo:             {} (posted invoices)", odoo.invoiced);
    println!("  fulfilled in the shop:        {} (with tracking, from Odoo's transfers)", shop.fulfilled);
    println!("  closed in the shop:           {} (completed in Odoo)", shop.closed);
    println!("  invoices on the shop orders:  {} (metafields erpsync.invoice_*)", shop.invoiced);
    let cd = dir.display();
    println!();
    println!("Where to look (the simulators stop with the demo; the store stays):");
    println!("  configuration: {}", config_path.display());
    println!("  erpsync --config {cd}/erpsync.toml --data-dir {cd}/data status");
    println!("  erpsync --config {cd}/erpsync.toml --data-dir {cd}/data failures list");
    println!("  erpsync --config {cd}/erpsync.toml --data-dir {cd}/data trace <order number, SKU or price list>");
    shop_sim.shutdown().await;
    odoo_sim.shutdown().await;
    let open_failures: i64 = engine.status().await?.iter().map(|status| status.open_failures).sum();
    Ok(if open_failures > 0 { ExitCode::from(crate::EXIT_RECORDS_FAILED) } else { ExitCode::SUCCESS })
}

/// Places orders in the shop at a steady rate (once the shop has products to order), through
/// the simulator's control API, which also sends the `orders/create` webhooks. Returns how many
/// it placed.
async fn order_stream(shop_url: String, per_minute: u32, stop: Shutdown) -> u64 {
    if per_minute == 0 {
        return 0;
    }
    let client = reqwest::Client::new();
    let every = Duration::from_secs_f64(60.0 / f64::from(per_minute));
    let mut placed = 0;
    let mut sleeper = stop.clone();
    while sleeper.sleep(every).await {
        let response =
            client.post(format!("{shop_url}/_sim/orders")).json(&serde_json::json!({ "create": 1 })).send().await;
        // Until the catalog has reached the shop there is nothing to order.
        if let Ok(response) = response
            && response.status().is_success()
        {
            placed += 1;
        }
    }
    placed
}

async fn print_progress(engine: &Engine, started: Instant, shop: &shopify::RunningSim, odoo: &odoo::RunningOdooSim) {
    let Ok(statuses) = engine.status().await else { return };
    let mut line = format!("[{:>4}s]", started.elapsed().as_secs());
    for status in statuses {
        let counts = status.last_run.as_ref().map(|run| run.counts).unwrap_or_default();
        line.push_str(&format!(
            "  {} +{}/~{}{}",
            status.name,
            counts.created,
            counts.updated,
            if status.open_failures > 0 { format!(" !{}", status.open_failures) } else { String::new() }
        ));
    }
    let shop_products = shop.with_state(|state| state.products.len());
    let shop_orders = ShopOrders::of(shop);
    let odoo_orders = OdooOrders::of(odoo);
    println!(
        "{line}  | shop: {shop_products} products, {} orders, {} fulfilled, {} invoiced | odoo: {} sale orders, {} shipped, {} invoiced",
        shop_orders.placed,
        shop_orders.fulfilled,
        shop_orders.invoiced,
        odoo_orders.orders,
        odoo_orders.shipped,
        odoo_orders.invoiced
    );
}

/// Creates the shop's B2B price lists through the Admin API, as the merchant would before
/// connecting erpsync (the connector writes prices into existing lists, it does not create them).
async fn create_price_lists(shop: &shopify::RunningSim) -> Result<()> {
    let client = reqwest::Client::new();
    let mutation = "mutation PriceList($input: PriceListCreateInput!) { priceListCreate(input: $input) { priceList { id } userErrors { field message } } }";
    for (_, _, name) in PRICE_LISTS {
        // Shopify derives a price list's prices from the shop's (the parent adjustment) unless
        // a variant has a fixed price in it: 0 % off leaves the other variants at shop prices.
        let input = serde_json::json!({
            "name": name,
            "currency": "EUR",
            "parent": { "adjustment": { "type": "PERCENTAGE_DECREASE", "value": 0 } },
        });
        let answer: serde_json::Value = client
            .post(shop.graphql_url(SHOPIFY_API_VERSION))
            .header("X-Shopify-Access-Token", shop.access_token())
            .json(&serde_json::json!({ "query": mutation, "variables": { "input": input } }))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("creating the price list {name:?} in the Shopify simulator"))?
            .json()
            .await
            .with_context(|| format!("reading the answer to creating the price list {name:?}"))?;
        anyhow::ensure!(
            answer["data"]["priceListCreate"]["priceList"]["id"].is_string(),
            "creating the price list {name:?} in the Shopify simulator: {answer}"
        );
    }
    Ok(())
}

/// The shop's price lists with how many fixed prices each holds: `"B2B VIP": 9 prices, …`.
fn describe_price_lists(shop: &shopify::RunningSim) -> String {
    shop.with_state(|state| {
        state
            .price_lists
            .values()
            .map(|list| format!("\"{}\": {} prices", list.name, list.fixed_prices.len()))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// The ERP's back office, every few seconds until stopped: the warehouse ships every confirmed
/// order (a tracking number, the transfer validated) and accounting invoices the delivered ones,
/// through the Odoo simulator's control API. Shipments, order status and invoices then have
/// something to carry back to the shop.
async fn back_office(odoo_url: String, stop: Shutdown) {
    let client = reqwest::Client::new();
    let mut sleeper = stop;
    while sleeper.sleep(BACK_OFFICE_EVERY).await {
        for (route, body) in [("ship", serde_json::json!({})), ("invoice", serde_json::json!({ "delivered": true }))] {
            let answer = client.post(format!("{odoo_url}/_sim/{route}")).json(&body).send().await;
            if let Err(error) = answer.and_then(reqwest::Response::error_for_status) {
                tracing::warn!(route, error = %error, "The demo's back office could not reach the Odoo simulator.");
            }
        }
    }
}

/// What became of the orders in the shop.
struct ShopOrders {
    placed: usize,
    fulfilled: usize,
    closed: usize,
    /// Orders carrying an invoice written by the document flow.
    invoiced: usize,
}

impl ShopOrders {
    fn of(shop: &shopify::RunningSim) -> ShopOrders {
        shop.with_state(|state| ShopOrders {
            placed: state.orders.len(),
            fulfilled: state.orders.values().filter(|order| !order.fulfillments.is_empty()).count(),
            closed: state.orders.values().filter(|order| order.closed_at.is_some()).count(),
            invoiced: state
                .orders
                .values()
                .filter(|order| order.metafields.iter().any(|field| field.key == "invoice_number"))
                .count(),
        })
    }
}

/// What became of the orders in Odoo.
struct OdooOrders {
    orders: usize,
    /// Sale orders whose transfers are all done.
    shipped: usize,
    /// Posted customer invoices.
    invoiced: usize,
}

impl OdooOrders {
    fn of(odoo: &odoo::RunningOdooSim) -> OdooOrders {
        odoo.with_state(|state| {
            let orders = state.ids("sale.order");
            let open_transfer: std::collections::HashSet<i64> = state
                .ids("stock.picking")
                .into_iter()
                .filter(|picking| state.raw_text("stock.picking", *picking, "state").as_deref() != Some("done"))
                .filter_map(|picking| state.raw_id("stock.picking", picking, "sale_id"))
                .collect();
            let with_transfer: std::collections::HashSet<i64> = state
                .ids("stock.picking")
                .into_iter()
                .filter_map(|picking| state.raw_id("stock.picking", picking, "sale_id"))
                .collect();
            let shipped =
                orders.iter().filter(|order| with_transfer.contains(order) && !open_transfer.contains(order)).count();
            let invoiced = state
                .ids("account.move")
                .into_iter()
                .filter(|invoice| {
                    state.raw_text("account.move", *invoice, "move_type").as_deref() == Some("out_invoice")
                        && state.raw_text("account.move", *invoice, "state").as_deref() == Some("posted")
                })
                .count();
            OdooOrders { orders: orders.len(), shipped, invoiced }
        })
    }
}
