//! Measures how fast the `files` source reads a large product export: 100,000 products with
//! 3 variants each (300,000 CSV rows), in pages of 1,000 records, as the engine would.
//!
//! `cargo run --release -p erpsync-connectors --example files_read_throughput [products]`
//! prints rows per second and the process's peak resident memory.

use erpsync_connectors::files::{FilesConfig, FilesConnector};
use erpsync_connectors::{ReadRequest, Source};
use erpsync_model::{Checkpoint, EntityKind, Record};
use std::io::{BufWriter, Write};
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n_products: usize = std::env::args().nth(1).map(|text| text.parse()).transpose()?.unwrap_or(100_000);
    let folder = tempfile::tempdir()?;
    let path = folder.path().join("products.csv");
    let mut file = BufWriter::new(std::fs::File::create(&path)?);
    writeln!(
        file,
        "code,sku,title,description,vendor,tags,barcode,price,currency,weight,weight_unit,option1_name,option1_value,updated_at"
    )?;
    for product in 0..n_products {
        for (variant, size) in ["S", "M", "L"].iter().enumerate() {
            writeln!(
                file,
                "P{product:06},P{product:06}-{size},Product {product},\"A fine product, number {product}\",Acme,new|sale,400{product:06}{variant},{}.{:02},EUR,0.{},kg,Size,{size},2024-05-01T10:00:00Z",
                10 + product % 90,
                product % 100,
                variant + 1
            )?;
        }
    }
    file.flush()?;
    drop(file);
    let size = std::fs::metadata(&path)?.len();

    let connector = FilesConnector::new("bench", FilesConfig::new(folder.path()))?;
    let started = Instant::now();
    let mut checkpoint = Checkpoint::default();
    let (mut n_records, mut n_variants, mut n_problems) = (0usize, 0usize, 0usize);
    loop {
        let request = ReadRequest { entity: EntityKind::Product, checkpoint: &checkpoint, page_size: 1000 };
        let page = connector.read_page(&request).await?;
        for record in &page.records {
            match &record.content {
                Ok(Record::Product(product)) => {
                    n_records += 1;
                    n_variants += product.variants.len();
                }
                _ => n_problems += 1,
            }
        }
        checkpoint = page.checkpoint;
        if page.done {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| status.lines().find(|line| line.starts_with("VmHWM:")).map(str::to_string))
        .unwrap_or_else(|| "VmHWM: unknown".into());
    println!(
        "read {n_records} products, {n_variants} variant rows, {n_problems} problems from {:.1} MB in {seconds:.2} s: {:.0} rows/s, {:.0} products/s; peak memory {}",
        size as f64 / 1e6,
        n_variants as f64 / seconds,
        n_records as f64 / seconds,
        peak.trim_start_matches("VmHWM:").trim()
    );
    Ok(())
}
