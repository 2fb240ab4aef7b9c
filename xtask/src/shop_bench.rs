//! `cargo xtask bench-shop [PRODUCTS]`: Odoo to Shopify through the release binary, both
//! simulators in this process.
//!
//! Three runs of the products flow over the same catalog (PRODUCTS templates with exactly 3
//! variants each):
//! 1. a full sync to a shop with an unlimited cost bucket: variants/s, API calls, peak RSS;
//! 2. the same on a fresh shop with the Standard plan's bucket (2000 points, 100/s): elapsed
//!    time against the least the bucket allows for the cost the shop charged, as a ratio;
//! 3. the unchanged re-sync on that shop: write calls (the target is zero).

use crate::{Measured, git_commit, report, run, workspace_root};
use anyhow::{Context, Result, bail};
use erpsync_sim::{odoo, shopify};
use std::path::Path;

const CONFIG: &str = r#"
[systems.odoo]
type = "odoo"
url = "{odoo}"
database = "odoo"
protocol = "json2"
api_key = { file = "odoo-key" }
warehouses = { "Warehouse" = "WH" }

[systems.shopify]
type = "shopify"
url = "{shopify}"
access_token = { file = "shopify-token" }

[flows.products]
entity = "product"
source = "odoo"
target = "shopify"
page_size = {page_size}
"#;

pub fn bench(products: usize) -> Result<()> {
    let root = workspace_root();
    let binary = crate::release_binary(&root)?;
    let commit = git_commit(&root);
    let results_dir = root.join("target/bench");
    std::fs::create_dir_all(&results_dir)?;
    let mut results = std::fs::OpenOptions::new().create(true).append(true).open(results_dir.join("results.jsonl"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let variants = products * 3;

    let odoo = runtime.block_on(odoo::OdooSim::start(odoo::OdooSimConfig {
        seed: Some(odoo::SeedConfig {
            seed: 11,
            products,
            max_variants: 3,
            min_variants: 3,
            warehouses: 1,
            customers: 0,
            orders: 0,
            ..odoo::SeedConfig::default()
        }),
        ..odoo::OdooSimConfig::default()
    }))?;
    let api_key = odoo::OdooSimConfig::default().api_key;

    // 1. No throttling to speak of.
    let unlimited = shopify::PlanLimits { maximum_available: 1.0e12, restore_rate: 1.0e12 };
    let shop = runtime.block_on(shopify::ShopifySim::start(shop_config(unlimited)))?;
    let work = work_dir(&root, "unlimited")?;
    write_config(&work, &odoo.base_url(), &shop, &api_key, 1000)?;
    let full = run(&binary, &work, &["sync", "products", "--json", "--no-progress"])?;
    check_created(&full, products)?;
    let counters = shop.counters();
    let shop_variants = shop.with_state(|state| state.variants.len());
    if shop_variants != variants {
        bail!("the shop has {shop_variants} variants, expected {variants}");
    }
    let odoo_calls = odoo.counters().total;
    println!("odoo → shopify, {products} products × 3 variants, unlimited cost bucket");
    report(
        &mut results,
        &format!("odoo_to_shopify_{products}_unlimited"),
        &commit,
        &[
            ("elapsed", full.seconds, "s"),
            ("variants_per_second", variants as f64 / full.seconds, "variants/s"),
            ("peak_rss", full.peak_rss_kib as f64 / 1024.0, "MiB"),
            ("shopify_calls", counters.calls as f64, "calls"),
            ("shopify_mutations", counters.mutations as f64, "calls"),
            ("odoo_calls", odoo_calls as f64, "calls"),
        ],
    )?;
    runtime.block_on(shop.shutdown());

    // 2. The Standard plan's bucket.
    let plan = shopify::PlanLimits::STANDARD;
    let shop = runtime.block_on(shopify::ShopifySim::start(shop_config(plan)))?;
    let work = work_dir(&root, "standard")?;
    write_config(&work, &odoo.base_url(), &shop, &api_key, 1000)?;
    let throttled = run(&binary, &work, &["sync", "products", "--json", "--no-progress"])?;
    check_created(&throttled, products)?;
    let counters = shop.counters();
    // The bucket starts full: the least time is what the points beyond one bucket take to
    // restore. Cost is charged as requested up front, refunded to actual after.
    let cost = counters.cost_actual as f64;
    let minimum = ((cost - plan.maximum_available) / plan.restore_rate).max(0.0);
    println!("odoo → shopify, {products} products × 3 variants, Standard plan bucket (2000, 100/s)");
    report(
        &mut results,
        &format!("odoo_to_shopify_{products}_standard_plan"),
        &commit,
        &[
            ("elapsed", throttled.seconds, "s"),
            ("bucket_minimum", minimum, "s"),
            ("elapsed_over_minimum", if minimum > 0.0 { throttled.seconds / minimum } else { 0.0 }, "ratio"),
            ("cost_actual", cost, "points"),
            ("cost_requested", counters.cost_requested as f64, "points"),
            ("throttled_responses", counters.throttled as f64, "responses"),
            ("failed", throttled.summary["counts"]["failed"].as_f64().unwrap_or(-1.0), "records"),
            ("peak_rss", throttled.peak_rss_kib as f64 / 1024.0, "MiB"),
        ],
    )?;

    // 3. Unchanged re-sync on the same shop: reads only.
    let before = shop.counters();
    let again = run(&binary, &work, &["sync", "products", "--full", "--json", "--no-progress"])?;
    let after = shop.counters();
    let unchanged = again.summary["counts"]["unchanged"].as_u64().unwrap_or(0);
    if unchanged != products as u64 {
        bail!("expected {products} unchanged, got {unchanged}: {}", again.summary);
    }
    println!("odoo → shopify, unchanged re-sync (--full) of the same catalog");
    report(
        &mut results,
        &format!("odoo_to_shopify_{products}_unchanged"),
        &commit,
        &[
            ("elapsed", again.seconds, "s"),
            ("shopify_write_calls", (after.mutations - before.mutations) as f64, "calls"),
            ("shopify_calls", (after.calls - before.calls) as f64, "calls"),
            ("unchanged", unchanged as f64, "records"),
        ],
    )?;
    runtime.block_on(shop.shutdown());
    runtime.block_on(odoo.shutdown());
    println!("appended to {}", results_dir.join("results.jsonl").display());
    Ok(())
}

fn shop_config(plan: shopify::PlanLimits) -> shopify::ShopifyConfig {
    shopify::ShopifyConfig {
        plan,
        seed: Some(shopify::SeedConfig {
            seed: 11,
            products: 0,
            variants_per_product: 1,
            locations: 1,
            customers: 0,
            orders: 0,
        }),
        ..shopify::ShopifyConfig::default()
    }
}

fn work_dir(root: &Path, name: &str) -> Result<std::path::PathBuf> {
    let dir = root.join(format!("target/bench/shop-{name}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn write_config(work: &Path, odoo: &str, shop: &shopify::RunningSim, api_key: &str, page_size: usize) -> Result<()> {
    std::fs::write(work.join("odoo-key"), api_key)?;
    std::fs::write(work.join("shopify-token"), shop.access_token())?;
    let text = CONFIG
        .replace("{odoo}", odoo)
        .replace("{shopify}", &shop.base_url())
        .replace("{page_size}", &page_size.to_string());
    std::fs::write(work.join("erpsync.toml"), text).context("writing the configuration")
}

fn check_created(measured: &Measured, products: usize) -> Result<()> {
    let created = measured.summary["counts"]["created"].as_u64().unwrap_or(0);
    if created != products as u64 {
        bail!("expected {products} created, got {created}: {}", measured.summary);
    }
    Ok(())
}
