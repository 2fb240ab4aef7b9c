//! `cargo xtask bench-webhooks [STEADY_SECONDS] [BURST_ORDERS]`: shop orders placed in the
//! Shopify simulator flow into the Odoo simulator through `erpsync serve` (the release binary),
//! driven by the shop's signed `orders/create` webhooks.
//!
//! - Steady: 50 orders a second for STEADY_SECONDS (default 30): webhook acknowledgement latency
//!   as the shop measures it (p50, p99) and end-to-end latency from the order placed to the sale
//!   order readable in Odoo (p50, p99; polled every 20 ms).
//! - Burst: BURST_ORDERS (default 10,000) placed evenly over one minute: time to drain, peak RSS
//!   of erpsync, and the counts that prove nothing was lost or duplicated.
//!
//! The shop is on the Shopify Plus cost bucket (20,000 points restoring 1,000/s): a shop taking
//! 50 orders a second is a Plus shop, and the Standard bucket (100 points/s) could not even read
//! that many orders.

use crate::{git_commit, report, workspace_root};
use anyhow::{Context, Result, bail};
use erpsync_sim::{odoo, shopify};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[server]
listen = "{listen}"
public_url = "http://{listen}"

[systems.odoo]
type = "odoo"
url = "{odoo}"
database = "odoo"
protocol = "json2"
api_key = { file = "odoo-key" }
shipping_product = "SHIPPING"

[systems.shopify]
type = "shopify"
url = "{shopify}"
access_token = { file = "shopify-token" }
webhook_secret = { file = "shopify-webhook-secret" }

[flows.products]
entity = "product"
source = "odoo"
target = "shopify"
enabled = false

[flows.orders]
entity = "order"
source = "shopify"
target = "odoo"
"#;

pub fn bench(steady_seconds: u64, burst: usize) -> Result<()> {
    let root = workspace_root();
    let binary = crate::release_binary(&root)?;
    let commit = git_commit(&root);
    let results_dir = root.join("target/bench");
    std::fs::create_dir_all(&results_dir)?;
    let mut results = std::fs::OpenOptions::new().create(true).append(true).open(results_dir.join("results.jsonl"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let _ = rustls::crypto::ring::default_provider().install_default();

    let odoo_config = odoo::OdooSimConfig {
        seed: Some(odoo::SeedConfig {
            seed: 5,
            products: 50,
            max_variants: 1,
            min_variants: 1,
            warehouses: 1,
            customers: 0,
            orders: 0,
            ..odoo::SeedConfig::default()
        }),
        ..odoo::OdooSimConfig::default()
    };
    let api_key = odoo_config.api_key.clone();
    let odoo = runtime.block_on(odoo::OdooSim::start(odoo_config))?;
    let shop_config = shopify::ShopifyConfig {
        plan: shopify::PlanLimits::PLUS,
        seed: Some(shopify::SeedConfig {
            seed: 5,
            products: 0,
            variants_per_product: 1,
            locations: 1,
            customers: 20,
            orders: 0,
        }),
        ..shopify::ShopifyConfig::default()
    };
    let secret = shop_config.api_secret.clone();
    let shop = runtime.block_on(shopify::ShopifySim::start(shop_config))?;
    let client = reqwest::Client::new();
    runtime.block_on(odoo_setup(&client, &odoo.base_url(), &api_key))?;

    let work = root.join(format!("target/bench/webhooks-{}", std::process::id()));
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.to_string();
    std::fs::write(work.join("odoo-key"), &api_key)?;
    std::fs::write(work.join("shopify-token"), shop.access_token())?;
    std::fs::write(work.join("shopify-webhook-secret"), &secret)?;
    std::fs::write(
        work.join("erpsync.toml"),
        CONFIG.replace("{listen}", &listen).replace("{odoo}", &odoo.base_url()).replace("{shopify}", &shop.base_url()),
    )?;
    let erpsync = |args: &[&str]| -> Result<()> {
        let output = Command::new(&binary)
            .arg("--config")
            .arg(work.join("erpsync.toml"))
            .arg("--data-dir")
            .arg(work.join("data"))
            .args(args)
            .output()?;
        if !output.status.success() {
            bail!(
                "erpsync {args:?}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    };
    // The catalog in the shop first, so that orders can be placed; then the subscriptions.
    erpsync(&["sync", "products", "--no-progress"])?;
    erpsync(&["webhooks", "register"])?;
    let mut serve = Command::new(&binary)
        .arg("--config")
        .arg(work.join("erpsync.toml"))
        .arg("--data-dir")
        .arg(work.join("data"))
        .arg("serve")
        // ERPSYNC_LOG passes through, to see where the time goes.
        .env("ERPSYNC_LOG", std::env::var("ERPSYNC_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let pid = serve.id();
    let outcome = runtime.block_on(async {
        wait_ready(&client, &listen).await?;
        measure(&client, &shop, &odoo, &api_key, pid, steady_seconds, burst).await
    });
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    let _ = serve.wait();
    let figures = outcome?;

    println!("shopify orders → odoo through webhooks: {} orders/s for {steady_seconds}s, then {burst} in a minute", 50);
    report(&mut results, "webhooks_shopify_orders_to_odoo", &commit, &figures)?;
    runtime.block_on(shop.shutdown());
    runtime.block_on(odoo.shutdown());
    std::fs::remove_dir_all(&work).ok();
    println!("appended to {}", results_dir.join("results.jsonl").display());
    Ok(())
}

/// A shipping product and the shop's VAT in Odoo, as in the demo.
async fn odoo_setup(client: &reqwest::Client, odoo: &str, api_key: &str) -> Result<()> {
    let setup = [
        ("product.product", serde_json::json!({ "name": "Shipping", "default_code": "SHIPPING", "type": "service" })),
        (
            "account.tax",
            serde_json::json!({ "name": "VAT 20% (incl.)", "amount": 20, "amount_type": "percent", "type_tax_use": "sale", "price_include": true }),
        ),
    ];
    for (model, values) in setup {
        let response = client
            .post(format!("{odoo}/json/2/{model}/create"))
            .bearer_auth(api_key)
            .header("X-Odoo-Database", "odoo")
            .json(&serde_json::json!({ "vals_list": [values] }))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("creating a {model} in the Odoo simulator: {}", response.status());
        }
    }
    Ok(())
}

async fn wait_ready(client: &reqwest::Client, listen: &str) -> Result<()> {
    for _ in 0..200 {
        if let Ok(response) = client.get(format!("http://{listen}/readyz")).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("erpsync serve did not become ready on {listen}")
}

/// Sale orders seen in Odoo, by shop order number, with when they were first seen.
#[derive(Default)]
struct Arrivals {
    arrived: BTreeMap<String, Instant>,
    ids: HashSet<i64>,
    duplicates: usize,
    last_id: i64,
}

impl Arrivals {
    async fn poll(&mut self, client: &reqwest::Client, odoo: &str, api_key: &str) -> Result<()> {
        let rows = sale_orders_after(client, odoo, api_key, self.last_id).await?;
        let now = Instant::now();
        for (id, number) in rows {
            self.last_id = self.last_id.max(id);
            if !self.ids.insert(id) {
                continue;
            }
            if self.arrived.insert(number, now).is_some() {
                self.duplicates += 1;
            }
        }
        Ok(())
    }
}

/// Orders placed, by shop order number, with when.
struct Placed {
    at: HashMap<String, Instant>,
}

async fn place(client: &reqwest::Client, shop: &shopify::RunningSim, count: usize, placed: &mut Placed) -> Result<()> {
    let response: serde_json::Value = client
        .post(format!("{}/_sim/orders", shop.base_url()))
        .json(&serde_json::json!({ "create": count }))
        .send()
        .await?
        .json()
        .await?;
    let now = Instant::now();
    let ids: Vec<u64> = response["created"]
        .as_array()
        .context("the order stream answered without ids")?
        .iter()
        .filter_map(|gid| gid.as_str()?.rsplit('/').next()?.parse().ok())
        .collect();
    let numbers: Vec<String> = shop.with_state(|state| {
        ids.iter().filter_map(|id| state.orders.get(id).map(|order| format!("#{}", order.number))).collect()
    });
    for number in numbers {
        placed.at.insert(number, now);
    }
    Ok(())
}

/// The shop order numbers of Odoo's sale orders with an id above `after`, with their ids.
async fn sale_orders_after(
    client: &reqwest::Client,
    odoo: &str,
    api_key: &str,
    after: i64,
) -> Result<Vec<(i64, String)>> {
    let rows: serde_json::Value = client
        .post(format!("{odoo}/json/2/sale.order/search_read"))
        .bearer_auth(api_key)
        .header("X-Odoo-Database", "odoo")
        .json(&serde_json::json!({
            "domain": [["id", ">", after]],
            "fields": ["client_order_ref"],
            "order": "id",
        }))
        .send()
        .await?
        .json()
        .await?;
    Ok(rows
        .as_array()
        .context("search_read answered without a list")?
        .iter()
        .filter_map(|row| Some((row["id"].as_i64()?, row["client_order_ref"].as_str()?.to_string())))
        .collect())
}

fn peak_rss_mib(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|line| line.starts_with("VmHWM:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (values.len() - 1) as f64).round() as usize;
    values[rank.min(values.len() - 1)]
}

async fn measure(
    client: &reqwest::Client,
    shop: &shopify::RunningSim,
    odoo: &odoo::RunningOdooSim,
    api_key: &str,
    pid: u32,
    steady_seconds: u64,
    burst: usize,
) -> Result<Vec<(&'static str, f64, &'static str)>> {
    let odoo_url = odoo.base_url();
    let mut placed = Placed { at: HashMap::new() };
    let mut seen = Arrivals::default();
    // Steady: 50 orders a second, one every 20 ms.
    let deliveries_before = shop.deliveries().len();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    while started.elapsed() < Duration::from_secs(steady_seconds) {
        tick.tick().await;
        place(client, shop, 1, &mut placed).await?;
        seen.poll(client, &odoo_url, api_key).await?;
    }
    let steady_count = placed.at.len();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.arrived.len() < steady_count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        seen.poll(client, &odoo_url, api_key).await?;
    }
    let mut end_to_end: Vec<f64> = placed
        .at
        .iter()
        .filter_map(|(number, at)| seen.arrived.get(number).map(|seen| seen.duration_since(*at).as_secs_f64() * 1000.0))
        .collect();
    let steady_arrived = end_to_end.len();
    let deliveries = shop.deliveries();
    let mut acks: Vec<f64> = deliveries[deliveries_before.min(deliveries.len())..]
        .iter()
        .filter(|delivery| delivery.topic == "orders/create" && delivery.status.is_some_and(|s| s < 300))
        .map(|delivery| delivery.elapsed_micros as f64 / 1000.0)
        .collect();
    let failed_deliveries =
        deliveries.iter().filter(|delivery| delivery.status.is_none_or(|status| status >= 300)).count();

    // Burst: `burst` orders evenly over one minute.
    let burst_started = Instant::now();
    let per_second = burst.div_ceil(60);
    let mut burst_placed = 0;
    let mut second = tokio::time::interval(Duration::from_secs(1));
    while burst_placed < burst {
        second.tick().await;
        let count = per_second.min(burst - burst_placed);
        place(client, shop, count, &mut placed).await?;
        burst_placed += count;
        seen.poll(client, &odoo_url, api_key).await?;
    }
    let total = placed.at.len();
    let deadline = Instant::now() + Duration::from_secs(900);
    while seen.arrived.len() < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        seen.poll(client, &odoo_url, api_key).await?;
    }
    let drained = burst_started.elapsed().as_secs_f64();
    let lost = placed.at.keys().filter(|number| !seen.arrived.contains_key(*number)).count();
    let in_odoo = odoo.with_state(|state| state.ids("sale.order").len());
    // The shop's API budget (Plus: 1,000 points a second) bounds how fast orders can be read.
    let counters = shop.counters();
    Ok(vec![
        ("steady_orders_placed", steady_count as f64, "orders"),
        ("steady_orders_arrived", steady_arrived as f64, "orders"),
        ("webhook_ack_p50", percentile(&mut acks, 50.0), "ms"),
        ("webhook_ack_p99", percentile(&mut acks, 99.0), "ms"),
        ("end_to_end_p50", percentile(&mut end_to_end, 50.0), "ms"),
        ("end_to_end_p99", percentile(&mut end_to_end, 99.0), "ms"),
        ("burst_orders", burst as f64, "orders"),
        ("burst_drained_after", drained, "s"),
        ("orders_placed_total", total as f64, "orders"),
        ("sale_orders_in_odoo", in_odoo as f64, "orders"),
        ("lost", lost as f64, "orders"),
        ("duplicated", seen.duplicates as f64, "orders"),
        ("failed_webhook_deliveries", failed_deliveries as f64, "deliveries"),
        ("peak_rss", peak_rss_mib(pid), "MiB"),
        ("shopify_calls", counters.calls as f64, "calls"),
        ("shopify_actual_cost_per_order", counters.cost_actual as f64 / total.max(1) as f64, "points"),
        ("shopify_throttled", counters.throttled as f64, "responses"),
    ])
}
