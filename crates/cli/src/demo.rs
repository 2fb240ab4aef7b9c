//! `erpsync demo`: an ERP and a shop (the Odoo and Shopify simulators) started in process with
//! seed data, a configuration for both directions, and `serve` running until Ctrl-C or for
//! `--duration`, with a printout of what moves where.

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

/// The configuration the demo writes: both simulators' addresses change from run to run.
fn config(odoo_url: &str, shopify_url: &str, listen: &str) -> String {
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

[systems.shopify]
type = "shopify"
url = "{shopify_url}"
access_token = {{ file = "secrets/shopify-token" }}
webhook_secret = {{ file = "secrets/shopify-webhook-secret" }}

# ERP -> shop: the catalog, stock per location, shipments.
[flows.products]
entity = "product"
source = "odoo"
target = "shopify"
interval = "30s"

[flows.products.mapping]
# Odoo's service product for shipping lines is not for sale in the shop.
filter = "variants[0].sku != 'SHIPPING'"

[flows.stock]
entity = "stock_level"
source = "odoo"
target = "shopify"
interval = "30s"

[flows.shipments]
entity = "shipment"
source = "odoo"
target = "shopify"
interval = "30s"

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
            ..odoo::SeedConfig::default()
        }),
        ..odoo::OdooSimConfig::default()
    };
    let api_key = odoo_config.api_key.clone();
    let odoo_sim = odoo::OdooSim::start(odoo_config).await.context("starting the Odoo simulator")?;
    println!(
        "  Odoo     {}  ({} product templates with up to 3 variants, 3 warehouses)",
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
        ..shopify::ShopifyConfig::default()
    };
    let webhook_secret = shop_config.api_secret.clone();
    let shop_sim = shopify::ShopifySim::start(shop_config).await.context("starting the Shopify simulator")?;
    println!("  Shopify  {}  (an empty catalog, 3 locations, 25 customers)", shop_sim.base_url());

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
    let socket = erpsync_server::listen(&engine).await.with_context(|| format!("listening on {listen}"))?;
    let (trigger, stop) = shutdown::channel();
    let http = tokio::spawn(erpsync_server::serve(socket, engine.clone(), stop.clone()));
    // The shop delivers order and customer webhooks to this server.
    let registered = crate::webhooks::register_all(engine.config()).await?;
    println!("  erpsync  http://{listen}  (webhooks: {registered} subscriptions in the shop)");
    println!();
    println!("Flows (serve):");
    for status in engine.status().await? {
        println!("  {:<10} {:<12} {} → {}", status.name, status.entity, status.source, status.target);
    }
    println!();
    match options.duration {
        Some(duration) => println!(
            "Running for {}s; the shop receives {} orders a minute.",
            duration.as_secs(),
            options.orders_per_minute
        ),
        None => println!("Running until Ctrl-C; the shop receives {} orders a minute.", options.orders_per_minute),
    }
    println!();

    let scheduler = {
        let engine = engine.clone();
        let stop = stop.clone();
        tokio::spawn(async move { engine.serve(stop).await })
    };
    // With a duration, orders stop coming a little before the end, so that the summary shows
    // where every order went.
    let (orders_trigger, orders_stop) = shutdown::channel();
    let orders = tokio::spawn(order_stream(shop_sim.base_url(), options.orders_per_minute, orders_stop));
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
            && started.elapsed() + Duration::from_secs(8) >= duration
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
    scheduler.await.context("the scheduler task")??;
    http.await.context("the HTTP server task")??;

    println!();
    println!("Summary after {}s:", started.elapsed().as_secs());
    crate::output::print_status(&engine.status().await?, false)?;
    let shop_products = shop_sim.with_state(|state| state.products.len());
    let shop_orders = shop_sim.with_state(|state| state.orders.len());
    let odoo_orders = odoo_sim.with_state(|state| state.ids("sale.order").len());
    println!();
    println!("  products in the shop:        {shop_products} (from {} templates in Odoo)", options.products);
    println!("  orders placed in the shop:   {shop_orders} ({placed} by the demo's order stream)");
    println!("  sale orders in Odoo:         {odoo_orders}");
    let cd = dir.display();
    println!();
    println!("Where to look (the simulators stop with the demo; the store stays):");
    println!("  configuration: {}", config_path.display());
    println!("  erpsync --config {cd}/erpsync.toml --data-dir {cd}/data status");
    println!("  erpsync --config {cd}/erpsync.toml --data-dir {cd}/data failures list");
    println!("  erpsync --config {cd}/erpsync.toml --data-dir {cd}/data trace <order number or SKU>");
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
    let shop_orders = shop.with_state(|state| state.orders.len());
    let odoo_orders = odoo.with_state(|state| state.ids("sale.order").len());
    println!("{line}  | shop: {shop_products} products, {shop_orders} orders | odoo: {odoo_orders} sale orders");
}
