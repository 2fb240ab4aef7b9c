//! `cargo xtask bench-scale [ORDERS]`: the order scenario of issue #8 on the release binary.
//!
//! ORDERS (default 5,000) shop orders are placed at once in the Shopify simulator; their signed
//! `orders/create` webhooks reach erpsync, which creates one sale order each in the Odoo
//! simulator, with the shop's API budget lifted (see below). Measured from the first order
//! placed to the last sale order readable in Odoo, for:
//! - PostgreSQL + NATS JetStream: one receiver, one scheduler and 1, 2 and 4 worker processes;
//! - the embedded default: one `serve` on SQLite.
//!
//! Besides orders/s it reports the CPU seconds each part used while the orders drained: the
//! erpsync processes, PostgreSQL's backends, the NATS server, and this process (which runs both
//! simulators). The part near one core per core of the machine is the bottleneck. Figures are
//! printed and appended as JSON lines to `target/bench/results.jsonl`.

use crate::{git_commit, report, workspace_root};
use anyhow::{Context, Result, bail};
use erpsync_sim::{odoo, shopify};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
{store}
{queue}

[server]
listen = "{listen}"
public_url = "http://{listen}"

[engine]
concurrency = 8
# Every order is a job of its own (no coalescing into a pull): the scenario measures the queue.
coalesce_above = 1000000

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
reconcile = "off"
"#;

/// One deployment to measure.
struct Layout {
    name: String,
    /// `None`: the embedded default (one `serve --role all` on SQLite).
    workers: Option<usize>,
}

pub fn bench(orders: usize) -> Result<()> {
    let root = workspace_root();
    let binary = crate::release_binary(&root)?;
    let commit = git_commit(&root);
    let results_dir = root.join("target/bench");
    std::fs::create_dir_all(&results_dir)?;
    let mut results = std::fs::OpenOptions::new().create(true).append(true).open(results_dir.join("results.jsonl"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let _ = rustls::crypto::ring::default_provider().install_default();

    let layouts = [
        Layout { name: "pg_nats_1_worker".into(), workers: Some(1) },
        Layout { name: "pg_nats_2_workers".into(), workers: Some(2) },
        Layout { name: "pg_nats_4_workers".into(), workers: Some(4) },
        Layout { name: "embedded_sqlite".into(), workers: None },
    ];
    println!("shopify orders → odoo through webhooks, {orders} orders placed at once, release build");
    for layout in &layouts {
        let figures = runtime.block_on(measure(&root, &binary, layout, orders))?;
        println!("{}:", layout.name);
        let figures: Vec<(&str, f64, &str)> =
            figures.iter().map(|(metric, value, unit)| (metric.as_str(), *value, *unit)).collect();
        report(&mut results, &format!("scale_orders_{}", layout.name), &commit, &figures)?;
    }
    println!("appended to {}", results_dir.join("results.jsonl").display());
    Ok(())
}

async fn measure(
    root: &Path,
    binary: &Path,
    layout: &Layout,
    orders: usize,
) -> Result<Vec<(String, f64, &'static str)>> {
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
    let odoo = odoo::OdooSim::start(odoo_config).await?;
    let shop_config = shopify::ShopifyConfig {
        // The shop's API budget lifted far beyond any plan: on Plus (1,000 points a second)
        // reading an order (about 49 points) caps any integration near 20 orders a second,
        // and the figures would measure Shopify's budget, not how erpsync scales out.
        // bench-webhooks keeps the Plus budget.
        plan: shopify::PlanLimits { maximum_available: 1_000_000.0, restore_rate: 100_000.0 },
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
    let shop = shopify::ShopifySim::start(shop_config).await?;
    let client = reqwest::Client::new();
    odoo_setup(&client, &odoo.base_url(), &api_key).await?;

    let work = root.join(format!("target/bench/scale-{}-{}", layout.name, std::process::id()));
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    let stamp = format!("{}_{}", std::process::id(), chrono::Utc::now().timestamp_subsec_nanos());
    let database = layout.workers.map(|_| format!("erpsync_bench_{stamp}"));
    let installation = format!("bench_{stamp}");
    let admin =
        std::env::var("ERPSYNC_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let nats = std::env::var("ERPSYNC_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let (store, queue) = match &database {
        Some(name) => {
            psql(&admin, &format!("CREATE DATABASE {name}"))?;
            let url = format!("{}/{name}", &admin[..admin.rfind('/').context("a PostgreSQL URL with a database")?]);
            (
                format!("[store]\nurl = \"{url}\""),
                format!("[queue]\nurl = \"{nats}\"\ninstallation = \"{installation}\""),
            )
        }
        None => (String::new(), String::new()),
    };
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.to_string();
    std::fs::write(work.join("odoo-key"), &api_key)?;
    std::fs::write(work.join("shopify-token"), shop.access_token())?;
    std::fs::write(work.join("shopify-webhook-secret"), &secret)?;
    std::fs::write(
        work.join("erpsync.toml"),
        CONFIG
            .replace("{store}", &store)
            .replace("{queue}", &queue)
            .replace("{listen}", &listen)
            .replace("{odoo}", &odoo.base_url())
            .replace("{shopify}", &shop.base_url()),
    )?;
    let erpsync = |args: &[&str]| -> Result<()> {
        let output = command(binary, &work).args(args).output()?;
        if !output.status.success() {
            bail!(
                "erpsync {args:?}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    };
    erpsync(&["migrate"])?;
    erpsync(&["sync", "products", "--no-progress"])?;
    erpsync(&["webhooks", "register"])?;

    let mut processes: Vec<Child> = Vec::new();
    let spawn = |role: &str| -> Result<Child> {
        Ok(command(binary, &work)
            .args(["serve", "--role", role])
            .env("ERPSYNC_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?)
    };
    match layout.workers {
        Some(workers) => {
            processes.push(spawn("receiver")?);
            processes.push(spawn("scheduler")?);
            for _ in 0..workers {
                processes.push(spawn("worker")?);
            }
        }
        None => processes.push(spawn("all")?),
    }
    let outcome = async {
        wait_ready(&client, &listen).await?;
        // Workers connect to NATS and PostgreSQL at start: give them a moment.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let pids: Vec<u32> = processes.iter().map(Child::id).collect();
        let before = CpuSample::take(&pids);
        let started = Instant::now();
        let mut left = orders;
        while left > 0 {
            let batch = left.min(500);
            let response = client
                .post(format!("{}/_sim/orders", shop.base_url()))
                .json(&serde_json::json!({ "create": batch }))
                .send()
                .await?;
            if !response.status().is_success() {
                bail!("placing orders: {}", response.status());
            }
            left -= batch;
        }
        let placed = started.elapsed();
        let deadline = Instant::now() + Duration::from_secs(1800);
        let (count, duplicates) = loop {
            let (count, duplicates) = odoo.with_state(|state| {
                let mut numbers = std::collections::HashSet::new();
                let ids = state.ids("sale.order");
                let duplicates = ids
                    .iter()
                    .filter(|id| {
                        !numbers.insert(state.raw_text("sale.order", **id, "client_order_ref").unwrap_or_default())
                    })
                    .count();
                (ids.len(), duplicates)
            });
            if count >= orders || Instant::now() > deadline {
                break (count, duplicates);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let drained = started.elapsed();
        let after = CpuSample::take(&pids);
        if count < orders {
            bail!("{} of {orders} orders reached Odoo within 30 minutes", count);
        }
        let seconds = drained.as_secs_f64();
        Ok(vec![
            ("orders".to_string(), orders as f64, "orders"),
            ("placing_seconds".to_string(), placed.as_secs_f64(), "s"),
            ("drain_seconds".to_string(), seconds, "s"),
            ("orders_per_second".to_string(), orders as f64 / seconds, "orders/s"),
            ("duplicates_in_odoo".to_string(), duplicates as f64, "orders"),
            ("cpu_erpsync".to_string(), (after.erpsync - before.erpsync) / seconds, "cores"),
            ("cpu_postgres".to_string(), (after.postgres - before.postgres) / seconds, "cores"),
            ("cpu_nats".to_string(), (after.nats - before.nats) / seconds, "cores"),
            ("cpu_simulators".to_string(), (after.simulators - before.simulators) / seconds, "cores"),
        ])
    }
    .await;
    for process in &processes {
        let _ = Command::new("kill").arg("-TERM").arg(process.id().to_string()).status();
    }
    for mut process in processes {
        let _ = process.wait();
    }
    if let Some(name) = &database {
        psql(&admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
        let queue =
            erpsync_queue::NatsQueue::connect(erpsync_queue::NatsQueueOptions::new(&nats, &installation)).await?;
        queue.delete_streams().await?;
    }
    shop.shutdown().await;
    odoo.shutdown().await;
    std::fs::remove_dir_all(&work).ok();
    outcome
}

fn command(binary: &Path, work: &Path) -> Command {
    let mut command = Command::new(binary);
    command.arg("--config").arg(work.join("erpsync.toml")).arg("--data-dir").arg(work.join("data"));
    command
}

fn psql(url: &str, sql: &str) -> Result<()> {
    let output = Command::new("psql").arg(url).args(["-v", "ON_ERROR_STOP=1", "-c", sql]).output()?;
    if !output.status.success() {
        bail!("psql {sql}: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

/// CPU seconds used so far, by part.
struct CpuSample {
    erpsync: f64,
    postgres: f64,
    nats: f64,
    simulators: f64,
}

impl CpuSample {
    fn take(erpsync_pids: &[u32]) -> CpuSample {
        let mut sample =
            CpuSample { erpsync: 0.0, postgres: 0.0, nats: 0.0, simulators: cpu_seconds("self").unwrap_or(0.0) };
        for pid in erpsync_pids {
            sample.erpsync += cpu_seconds(&pid.to_string()).unwrap_or(0.0);
        }
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !name.bytes().all(|byte| byte.is_ascii_digit()) {
                continue;
            }
            let comm = std::fs::read_to_string(format!("/proc/{name}/comm")).unwrap_or_default();
            match comm.trim() {
                "postgres" => sample.postgres += cpu_seconds(&name).unwrap_or(0.0),
                "nats-server" => sample.nats += cpu_seconds(&name).unwrap_or(0.0),
                _ => {}
            }
        }
        sample
    }
}

/// User plus system CPU seconds of `/proc/<pid>` (clock ticks of 1/100 s).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are at 11 and 12 after the name.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// A shipping product and the shop's VAT in Odoo, as in the demo.
async fn odoo_setup(client: &reqwest::Client, odoo: &str, api_key: &str) -> Result<()> {
    for (model, values) in [
        ("product.product", serde_json::json!({ "name": "Shipping", "default_code": "SHIPPING", "type": "service" })),
        (
            "account.tax",
            serde_json::json!({ "name": "VAT 20% (incl.)", "amount": 20, "amount_type": "percent", "type_tax_use": "sale", "price_include": true }),
        ),
    ] {
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
    for _ in 0..400 {
        if let Ok(response) = client.get(format!("http://{listen}/readyz")).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("erpsync serve did not become ready on {listen}")
}
