//! `erpsync demo`: a sample ERP export, a configuration and a first sync, in one folder.

use anyhow::{Context, Result};
use erpsync_engine::shutdown::Shutdown;
use erpsync_engine::{Engine, RunOptions};
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

const CONFIG: &str = r#"# erpsync demo: the ERP drops CSV exports into erp-export/, the shop takes JSON Lines
# from shop-import/. Edit erp-export/products.csv and run the sync again: only what changed
# is written.

[systems.erp]
type = "files"
path = "erp-export"
format = "csv"

[systems.shop]
type = "files"
path = "shop-import"
format = "jsonl"

[flows.products]
entity = "product"
source = "erp"
target = "shop"
interval = "1m"
"#;

pub async fn run(dir: &Path, products: usize) -> Result<ExitCode> {
    std::fs::create_dir_all(dir.join("erp-export")).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::create_dir_all(dir.join("shop-import"))?;
    let config_path = dir.join("erpsync.toml");
    if !config_path.exists() {
        std::fs::write(&config_path, CONFIG)?;
    }
    let catalog = dir.join("erp-export").join("products.csv");
    if !catalog.exists() {
        std::fs::write(&catalog, sample_catalog(products))?;
    }
    println!("demo folder: {}", dir.display());
    println!("  configuration: {}", config_path.display());
    println!("  ERP export:    {} ({products} products, 3 variants each, 2 bad rows)", catalog.display());
    println!();

    let config = crate::load_config(&config_path)?;
    let data_dir = dir.join("data");
    let store_url = crate::store_url(&config, &data_dir)?;
    let store = erpsync_store::open(&store_url).await?;
    let engine = Arc::new(Engine::new(Arc::new(config), store));
    let options = RunOptions { full: false, dry_run: false, trigger: "manual".into() };
    crate::sync_flow(&engine, "products", &options, &Shutdown::never(), true, false).await?;
    println!();
    crate::output::print_status(&engine.status().await?, false)?;
    println!();
    let cd = dir.display();
    println!("next steps:");
    println!("  erpsync --config {cd}/erpsync.toml --data-dir {cd}/data failures list");
    println!("  erpsync --config {cd}/erpsync.toml --data-dir {cd}/data trace DEMO-00001");
    println!(
        "  erpsync --config {cd}/erpsync.toml --data-dir {cd}/data sync products --full   # writes nothing: unchanged"
    );
    println!("  erpsync --config {cd}/erpsync.toml --data-dir {cd}/data serve                  # every minute");
    Ok(ExitCode::SUCCESS)
}

/// A catalog with `products` products of three sizes each, and two rows an ERP export really
/// produces now and then: an unknown currency and a negative price.
fn sample_catalog(products: usize) -> String {
    let mut csv = String::from("code,title,vendor,sku,option1_name,option1_value,price,currency\n");
    for index in 1..=products {
        for size in ["S", "M", "L"] {
            let price = 10 + index % 90;
            let _ = writeln!(
                csv,
                "DEMO-{index:05},Demo shirt {index},Acme,DEMO-{index:05}-{size},Size,{size},{price}.90,EUR"
            );
        }
    }
    csv.push_str("BAD-1,Shirt in a made-up currency,Acme,BAD-1-S,Size,S,12.00,EUX\n");
    csv.push_str("BAD-2,Shirt with a negative price,Acme,BAD-2-S,Size,S,-5.00,EUR\n");
    csv
}
