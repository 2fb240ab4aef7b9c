//! Developer tasks. `cargo xtask bench`: the files-to-files catalog benchmark.
//!
//! It builds the release binary, generates catalogs of 25,000, 50,000 and 100,000 products with
//! three variants each, and times `erpsync sync` for the first full sync and for a re-sync of
//! the unchanged catalog (`--full`: every record read, hashed and compared), sampling the
//! process's peak resident memory. Figures are printed and appended as JSON lines to
//! `target/bench/results.jsonl`.
//!
//! `cargo xtask bench-http`: REST API to REST batch endpoint; `cargo xtask bench-shop`: Odoo to
//! Shopify on the simulators (see `shop_bench`); `cargo xtask bench-medusa`: Tryton to Medusa,
//! two real servers (see `medusa_bench`).

mod mapping_bench;
mod medusa_bench;
mod rest_api;
mod scale_bench;
mod shop_bench;
mod webhook_bench;

use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// mimalloc instead of the system allocator: erpsync builds and drops many small JSON values
/// per record, and glibc's malloc was a third of the mapping benchmark's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench") => {
            let sizes: Vec<usize> = match args.get(1) {
                Some(list) => {
                    list.split(',').map(|n| n.parse()).collect::<Result<_, _>>().context("sizes: 25000,100000")?
                }
                None => vec![25_000, 50_000, 100_000],
            };
            bench(&sizes)
        }
        Some("bench-http") => {
            let sizes: Vec<usize> = match args.get(1) {
                Some(list) => {
                    list.split(',').map(|n| n.parse()).collect::<Result<_, _>>().context("sizes: 10000,100000")?
                }
                None => vec![10_000, 100_000],
            };
            bench_http(&sizes)
        }
        Some("bench-shop") => {
            let products: usize = match args.get(1) {
                Some(n) => n.parse().context("products: 10000")?,
                None => 10_000,
            };
            shop_bench::bench(products)
        }
        Some("bench-medusa") => {
            let products: usize = match args.get(1) {
                Some(n) => n.parse().context("products: 2000")?,
                None => 2_000,
            };
            let orders: usize = match args.get(2) {
                Some(n) => n.parse().context("orders: 100")?,
                None => 100,
            };
            medusa_bench::bench(products, orders)
        }
        Some("bench-mapping") => {
            let records: usize = match args.get(1) {
                Some(n) => n.parse().context("records: 200000")?,
                None => 200_000,
            };
            mapping_bench::bench(records)
        }
        Some("bench-webhooks") => {
            let steady: u64 = match args.get(1) {
                Some(n) => n.parse().context("steady seconds: 30")?,
                None => 30,
            };
            let burst: usize = match args.get(2) {
                Some(n) => n.parse().context("burst orders: 10000")?,
                None => 10_000,
            };
            webhook_bench::bench(steady, burst)
        }
        Some("bench-scale") => {
            let orders: usize = match args.get(1) {
                Some(n) => n.parse().context("orders: 5000")?,
                None => 5_000,
            };
            scale_bench::bench(orders)
        }
        _ => bail!(
            "usage: cargo xtask bench [SIZES] | bench-http [SIZES] | bench-shop [PRODUCTS] | bench-medusa [PRODUCTS] [ORDERS] | bench-webhooks [SECONDS] [BURST] | bench-mapping [RECORDS] | bench-scale [ORDERS]"
        ),
    }
}

/// Builds the release binary the benchmarks run, in a target folder of its own
/// (`target/bench-build`): `cargo xtask` builds the workspace's dependencies with xtask's
/// features, and a build of the binary alone in the same folder rebuilt a third of them on
/// every benchmark, and xtask's again on the next one.
fn release_binary(root: &Path) -> Result<PathBuf> {
    let target = root.join("target/bench-build");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "erpsync-cli", "--target-dir"])
        .arg(&target)
        .current_dir(root)
        .status()?;
    if !status.success() {
        bail!("building the release binary failed");
    }
    Ok(target.join("release/erpsync"))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

struct Measured {
    seconds: f64,
    peak_rss_kib: u64,
    summary: serde_json::Value,
}

fn bench(sizes: &[usize]) -> Result<()> {
    let root = workspace_root();
    let binary = release_binary(&root)?;
    let commit = git_commit(&root);
    let results_dir = root.join("target/bench");
    std::fs::create_dir_all(&results_dir)?;
    let mut results = std::fs::OpenOptions::new().create(true).append(true).open(results_dir.join("results.jsonl"))?;

    for &products in sizes {
        let work = tempfile_dir(&root, products)?;
        let variants = products * 3;
        write_catalog(&work.join("erp/products.csv"), products)?;
        std::fs::write(work.join("erpsync.toml"), CONFIG)?;

        let full = run(&binary, &work, &["sync", "products", "--json", "--no-progress"])?;
        check(&full, "created", products)?;
        let unchanged = run(&binary, &work, &["sync", "products", "--full", "--json", "--no-progress"])?;
        check(&unchanged, "unchanged", products)?;

        let figures = [
            ("full_sync_variants_per_second", variants as f64 / full.seconds, "variants/s"),
            ("full_sync_seconds", full.seconds, "s"),
            ("full_sync_peak_rss", full.peak_rss_kib as f64 / 1024.0, "MiB"),
            ("unchanged_resync_variants_per_second", variants as f64 / unchanged.seconds, "variants/s"),
            ("unchanged_resync_seconds", unchanged.seconds, "s"),
            ("unchanged_resync_peak_rss", unchanged.peak_rss_kib as f64 / 1024.0, "MiB"),
        ];
        println!("files → files, {products} products × 3 variants ({variants} variants)");
        report(&mut results, &format!("files_to_files_{products}_products"), &commit, &figures)?;
        std::fs::remove_dir_all(&work).ok();
    }
    println!("appended to {}", results_dir.join("results.jsonl").display());
    Ok(())
}

/// A generic REST source (paged, 100 per page) into a WooCommerce-style batch endpoint (100 per
/// request), both served locally with no latency, through JSONata conversions both ways.
fn bench_http(sizes: &[usize]) -> Result<()> {
    let root = workspace_root();
    let binary = release_binary(&root)?;
    let commit = git_commit(&root);
    let results_dir = root.join("target/bench");
    std::fs::create_dir_all(&results_dir)?;
    let mut results = std::fs::OpenOptions::new().create(true).append(true).open(results_dir.join("results.jsonl"))?;
    for &products in sizes {
        let (base, counters) = rest_api::start(products);
        let work = tempfile_dir(&root, products)?;
        std::fs::write(work.join("erpsync.toml"), HTTP_CONFIG.replace("{base}", &base))?;
        let full = run(&binary, &work, &["sync", "products", "--json", "--no-progress"])?;
        check(&full, "created", products)?;
        let written = counters.written.load(std::sync::atomic::Ordering::Relaxed);
        let write_requests = counters.write_requests.load(std::sync::atomic::Ordering::Relaxed);
        let read_requests = counters.read_requests.load(std::sync::atomic::Ordering::Relaxed);
        if written != products as u64 {
            bail!("the API received {written} records, expected {products}");
        }
        let figures = [
            ("elapsed", full.seconds, "s"),
            ("products_per_second", products as f64 / full.seconds, "products/s"),
            ("peak_rss", full.peak_rss_kib as f64 / 1024.0, "MiB"),
            ("read_requests", read_requests as f64, "requests"),
            ("write_requests", write_requests as f64, "requests"),
        ];
        println!("http → http, {products} products × 3 variants (pages of 100, batches of 100)");
        report(&mut results, &format!("http_to_http_{products}_products"), &commit, &figures)?;
        std::fs::remove_dir_all(&work).ok();
    }
    println!("appended to {}", results_dir.join("results.jsonl").display());
    Ok(())
}

const HTTP_CONFIG: &str = r#"
[systems.rest_erp]
type = "http"
base_url = "{base}"

[systems.rest_erp.entities.product.read]
path = "/api/products"
pagination = { style = "page", size = 100 }
to_canonical = """{
  'code': sku, 'title': name, 'vendor': brand,
  'options': [{ 'name': 'Size', 'values': [variants.size] }],
  'variants': [variants.{ 'sku': sku, 'barcode': ean, 'options': [{ 'option': 'Size', 'value': size }],
                          'price': { 'amount': price, 'currency': 'EUR' } }]
}"""

[systems.shop]
type = "http"
base_url = "{base}"

[systems.shop.entities.product.write]
batch = { path = "/shop/products/batch", max = 100 }
from_canonical = """{
  'sku': code, 'name': title, 'type': 'variable',
  'variations': [variants.{ 'sku': sku, 'regular_price': price.amount, 'attributes': [{ 'name': 'Size', 'option': options[0].value }] }]
}"""

[flows.products]
entity = "product"
source = "rest_erp"
target = "shop"
page_size = 100
"#;

const CONFIG: &str = r#"
[systems.erp]
type = "files"
path = "erp"
format = "csv"

[systems.shop]
type = "files"
path = "shop"
format = "jsonl"

[flows.products]
entity = "product"
source = "erp"
target = "shop"
page_size = 1000
"#;

/// Prints each figure and appends it as a JSON line (benchmark, metric, value, unit, commit).
fn report(results: &mut std::fs::File, benchmark: &str, commit: &str, figures: &[(&str, f64, &str)]) -> Result<()> {
    for (metric, value, unit) in figures {
        println!("  {metric:<40} {value:>12.1} {unit}");
        let line = serde_json::json!({
            "benchmark": benchmark,
            "metric": metric,
            "value": value,
            "unit": unit,
            "git_commit": commit,
            "at": chrono::Utc::now().to_rfc3339(),
        });
        writeln!(results, "{line}")?;
    }
    Ok(())
}

fn tempfile_dir(root: &Path, products: usize) -> Result<PathBuf> {
    let dir = root.join(format!("target/bench/work-{products}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(dir.join("erp"))?;
    std::fs::create_dir_all(dir.join("shop"))?;
    Ok(dir)
}

/// Streams the catalog to disk: the generator must not be what uses the memory.
fn write_catalog(path: &Path, products: usize) -> Result<()> {
    let file = std::fs::File::create(path)?;
    let mut out = std::io::BufWriter::new(file);
    writeln!(
        out,
        "code,title,vendor,product_type,sku,barcode,option1_name,option1_value,price,currency,weight,weight_unit"
    )?;
    let mut line = String::new();
    for index in 0..products {
        for (n, size) in ["S", "M", "L"].iter().enumerate() {
            line.clear();
            let _ = writeln!(
                line,
                "P{index:07},Product {index} in cotton,Acme,Shirts,P{index:07}-{size},40{index:09}{n},Size,{size},{}.{:02},EUR,0.{},kg",
                10 + index % 90,
                index % 100,
                2 + n
            );
            out.write_all(line.as_bytes())?;
        }
    }
    out.flush()?;
    Ok(())
}

fn run(binary: &Path, work: &Path, args: &[&str]) -> Result<Measured> {
    let started = Instant::now();
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(work.join("erpsync.toml"))
        .arg("--data-dir")
        .arg(work.join("data"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    // VmHWM is the kernel's own high-water mark of resident memory, so sampling it often
    // enough only has to catch the last value before exit.
    loop {
        let text = std::fs::read_to_string(&status_path).unwrap_or_default();
        if let Some(kib) = text.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)) {
            peak = peak.max(kib.parse().unwrap_or(0));
        }
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let seconds = started.elapsed().as_secs_f64();
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("erpsync {args:?} failed: {}", String::from_utf8_lossy(&output.stdout));
    }
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).context("reading the sync summary")?;
    Ok(Measured { seconds, peak_rss_kib: peak, summary })
}

fn check(measured: &Measured, field: &str, expected: usize) -> Result<()> {
    let got = measured.summary["counts"][field].as_u64().unwrap_or(0);
    if got != expected as u64 {
        bail!("expected {expected} {field}, got {got}: {}", measured.summary);
    }
    Ok(())
}

fn git_commit(root: &Path) -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}
