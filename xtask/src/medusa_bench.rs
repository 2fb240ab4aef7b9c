//! `cargo xtask bench-medusa [PRODUCTS] [ORDERS]`: Tryton to Medusa, two real servers
//! (`tools/tryton/ensure.py` and `tools/medusa/ensure.py`), through the release binary.
//!
//! 1. PRODUCTS templates (one variant each, default 2,000) are created in Tryton directly.
//! 2. Baseline: the same reads and writes done directly, without erpsync: the templates and
//!    their variants read from Tryton in pages of 500, the products created in Medusa in
//!    batches of 50 (under other SKUs, so the erpsync run still creates). Its elapsed time is
//!    what the two servers alone need.
//! 3. `erpsync sync products`: elapsed time, API calls to each server (counted by a small
//!    proxy in front of each, the baseline goes through the same proxies), and the ratio of
//!    erpsync's time to the baseline's (near 1: erpsync adds nothing); then the unchanged
//!    re-sync (`--full`) with its write calls (the target is zero).
//! 4. ORDERS orders (default 100) placed through Medusa's store API checkout, then
//!    `erpsync sync orders` into Tryton: orders per second, each a sale quoted and confirmed.
//!
//! Figures are printed and appended to `target/bench/results.jsonl`.

use crate::{Measured, git_commit, report, run, workspace_root};
use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const CONFIG: &str = r#"
[systems.erp]
type = "tryton"
url = "{tryton}"
database = "{database}"
username = "{username}"
password = { file = "{password_file}" }
company = "erpsync Test Company"
web_shop = "erpsync"
account_category = "Goods"
warehouses = { main = "WH" }

[systems.shop]
type = "medusa"
url = "{medusa}"
api_key = { file = "medusa-key" }
sales_channel = "Default Sales Channel"
currency = "USD"
region = "Americas"
stock_locations = { main = "Main WH" }

[flows.products]
entity = "product"
source = "erp"
target = "shop"
page_size = 500

[flows.orders]
entity = "order"
source = "shop"
target = "erp"
page_size = 100
"#;

/// Templates per create call in Tryton (SQLite refuses much more, tryton.md G12).
const TRYTON_BATCH: usize = 50;
/// Products per `POST /admin/products/batch`, as the connector sends them.
const MEDUSA_BATCH: usize = 50;

pub fn bench(products: usize, orders: usize) -> Result<()> {
    let root = workspace_root();
    let binary = crate::release_binary(&root)?;
    let commit = git_commit(&root);
    let results_dir = root.join("target/bench");
    std::fs::create_dir_all(&results_dir)?;
    let mut results = std::fs::OpenOptions::new().create(true).append(true).open(results_dir.join("results.jsonl"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let _ = rustls::crypto::ring::default_provider().install_default();

    println!("starting Tryton and Medusa (tools/*/ensure.py serve)");
    let tryton_server = Served::start(&root, "tryton")?;
    let medusa_server = Served::start(&root, "medusa")?;
    let tryton_proxy = runtime.block_on(CountingProxy::start(tryton_server.url()))?;
    let medusa_proxy = runtime.block_on(CountingProxy::start(medusa_server.url()))?;
    let tryton = runtime.block_on(Tryton::login(&tryton_server, &tryton_proxy.url))?;
    let medusa = Medusa::new(&medusa_server, &medusa_proxy.url);

    // 1. The catalog in Tryton.
    let started = Instant::now();
    runtime.block_on(tryton.create_catalog(products))?;
    println!("  {products} templates created in Tryton in {:.1} s", started.elapsed().as_secs_f64());

    // 2. Baseline: the same reads and writes, directly.
    let (tryton_before, medusa_before) = (tryton_proxy.calls(), medusa_proxy.calls());
    let started = Instant::now();
    let read = runtime.block_on(tryton.read_catalog())?;
    if read.len() != products {
        bail!("the baseline read {} products from Tryton, expected {products}", read.len());
    }
    runtime.block_on(medusa.create_products(&read, "B-"))?;
    let baseline_seconds = started.elapsed().as_secs_f64();
    let baseline_calls = (tryton_proxy.calls() - tryton_before) + (medusa_proxy.calls() - medusa_before);

    // 3. erpsync, through the same proxies.
    let work = root.join(format!("target/bench/medusa-{}", std::process::id()));
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    std::fs::write(work.join("medusa-key"), &medusa.api_key)?;
    let config = CONFIG
        .replace("{tryton}", &tryton_proxy.url)
        .replace("{database}", &tryton_server.text("database")?)
        .replace("{username}", &tryton_server.text("username")?)
        .replace("{password_file}", &tryton_server.text("password_file")?)
        .replace("{medusa}", &medusa_proxy.url);
    std::fs::write(work.join("erpsync.toml"), config)?;
    let (tryton_before, medusa_before) = (tryton_proxy.calls(), medusa_proxy.calls());
    let full = run(&binary, &work, &["sync", "products", "--json", "--no-progress"])?;
    check_count(&full, "created", products)?;
    let tryton_calls = tryton_proxy.calls() - tryton_before;
    let medusa_calls = medusa_proxy.calls() - medusa_before;
    let in_shop = runtime.block_on(medusa.count_products())?;
    if in_shop != 2 * products as u64 {
        bail!("Medusa has {in_shop} products, expected {} (baseline and erpsync)", 2 * products);
    }
    let medusa_writes_before = medusa_proxy.writes();
    let (tryton_before, medusa_before) = (tryton_proxy.calls(), medusa_proxy.calls());
    let unchanged = run(&binary, &work, &["sync", "products", "--full", "--json", "--no-progress"])?;
    check_count(&unchanged, "unchanged", products)?;
    let unchanged_calls = (tryton_proxy.calls() - tryton_before) + (medusa_proxy.calls() - medusa_before);
    let unchanged_writes = medusa_proxy.writes() - medusa_writes_before;

    println!("Tryton → Medusa, {products} products (one variant each), release binary, loopback, 2 cores");
    report(
        &mut results,
        &format!("tryton_to_medusa_{products}_products"),
        &commit,
        &[
            ("erpsync_seconds", full.seconds, "s"),
            ("erpsync_products_per_second", products as f64 / full.seconds, "products/s"),
            ("erpsync_tryton_calls", tryton_calls as f64, "calls"),
            ("erpsync_medusa_calls", medusa_calls as f64, "calls"),
            ("erpsync_peak_rss", full.peak_rss_kib as f64 / 1024.0, "MiB"),
            ("direct_seconds", baseline_seconds, "s"),
            ("direct_calls", baseline_calls as f64, "calls"),
            ("erpsync_to_direct_time_ratio", full.seconds / baseline_seconds, "ratio"),
            ("unchanged_resync_seconds", unchanged.seconds, "s"),
            ("unchanged_resync_calls", unchanged_calls as f64, "calls"),
            ("unchanged_resync_medusa_write_calls", unchanged_writes as f64, "calls"),
        ],
    )?;

    // 4. Orders placed at the shop's checkout, into Tryton.
    let skus: Vec<String> = read.iter().take(10).map(|product| product.sku.clone()).collect();
    let started = Instant::now();
    runtime.block_on(medusa.stock_and_place_orders(&skus, orders))?;
    println!("  {orders} orders placed through the store API in {:.1} s", started.elapsed().as_secs_f64());
    let (tryton_before, medusa_before) = (tryton_proxy.calls(), medusa_proxy.calls());
    let synced = run(&binary, &work, &["sync", "orders", "--json", "--no-progress"])?;
    check_count(&synced, "created", orders)?;
    let sales = runtime.block_on(tryton.count_sales())?;
    if sales != orders as u64 {
        bail!("Tryton has {sales} sales of the web shop, expected {orders}");
    }
    println!("Medusa orders → Tryton sales (quoted and confirmed), {orders} orders");
    report(
        &mut results,
        &format!("medusa_orders_to_tryton_{orders}"),
        &commit,
        &[
            ("orders_per_second", orders as f64 / synced.seconds, "orders/s"),
            ("seconds", synced.seconds, "s"),
            ("tryton_calls", (tryton_proxy.calls() - tryton_before) as f64, "calls"),
            ("medusa_calls", (medusa_proxy.calls() - medusa_before) as f64, "calls"),
        ],
    )?;
    std::fs::remove_dir_all(&work).ok();
    drop(tryton_server);
    drop(medusa_server);
    println!("appended to {}", results_dir.join("results.jsonl").display());
    Ok(())
}

fn check_count(measured: &Measured, field: &str, expected: usize) -> Result<()> {
    let counts = &measured.summary["counts"];
    let got = counts[field].as_u64().unwrap_or(0);
    if got != expected as u64 || counts["failed"].as_u64().unwrap_or(0) != 0 {
        bail!("expected {expected} {field} and no failure: {}", measured.summary);
    }
    Ok(())
}

/// A server started by `tools/<tool>/ensure.py serve`; stopped when this is dropped (the
/// script's standard input closes).
struct Served {
    ready: Value,
    stdin: Option<ChildStdin>,
    child: Child,
}

impl Served {
    fn start(root: &Path, tool: &str) -> Result<Served> {
        let script = root.join(format!("tools/{tool}/ensure.py"));
        let python = std::env::var("ERPSYNC_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(&python)
            .arg(&script)
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("running {python} {}", script.display()))?;
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().context("stdout is piped")?);
        let mut line = String::new();
        loop {
            line.clear();
            if stdout.read_line(&mut line)? == 0 {
                let status = child.wait()?;
                bail!("{} serve ended ({status}) without READY; its messages are above", script.display());
            }
            if let Some(ready) = line.strip_prefix("READY ") {
                return Ok(Served { ready: serde_json::from_str(ready)?, stdin, child });
            }
        }
    }

    fn url(&self) -> String {
        self.ready["url"].as_str().unwrap_or_default().to_string()
    }

    fn text(&self, key: &str) -> Result<String> {
        self.ready[key].as_str().map(str::to_string).with_context(|| format!("no {key} in {}", self.ready))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Forwards HTTP requests to one server and counts them (and the ones that change data).
/// Bodies pass through untouched, compressed or not.
struct CountingProxy {
    url: String,
    calls: Arc<AtomicU64>,
    writes: Arc<AtomicU64>,
}

impl CountingProxy {
    async fn start(upstream: String) -> Result<CountingProxy> {
        let calls = Arc::new(AtomicU64::new(0));
        let writes = Arc::new(AtomicU64::new(0));
        let client = reqwest::Client::builder().no_gzip().pool_max_idle_per_host(16).build()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = (client, upstream, calls.clone(), writes.clone());
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let (client, upstream, calls, writes) = state.clone();
            async move { forward(client, upstream, calls, writes, request).await }
        });
        // The runtime outlives every use of the proxy: it is dropped at the end of the bench.
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(CountingProxy { url, calls, writes })
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}

async fn forward(
    client: reqwest::Client,
    upstream: String,
    calls: Arc<AtomicU64>,
    writes: Arc<AtomicU64>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    calls.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
    let body = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(body) => body,
        Err(error) => return (axum::http::StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    };
    // Medusa changes data on POST and DELETE (its reads are GETs); Tryton's calls are all
    // POSTs, so its writes are not told apart here.
    if parts.method != axum::http::Method::GET && !path.contains("/rpc/") {
        writes.fetch_add(1, Ordering::Relaxed);
    }
    let mut outgoing = client.request(parts.method.clone(), format!("{upstream}{path}")).body(body);
    for (name, value) in &parts.headers {
        if name != axum::http::header::HOST && name != axum::http::header::CONTENT_LENGTH {
            outgoing = outgoing.header(name, value);
        }
    }
    match outgoing.send().await {
        Ok(response) => {
            let status = response.status();
            let headers = response.headers().clone();
            let bytes = response.bytes().await.unwrap_or_default();
            let mut answer = axum::response::Response::new(axum::body::Body::from(bytes));
            *answer.status_mut() = status;
            for (name, value) in &headers {
                if name != axum::http::header::TRANSFER_ENCODING
                    && name != axum::http::header::CONNECTION
                    && name != axum::http::header::CONTENT_LENGTH
                {
                    answer.headers_mut().append(name, value.clone());
                }
            }
            answer
        }
        Err(error) => (axum::http::StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    }
}

/// One variant read from Tryton.
struct CatalogProduct {
    code: String,
    sku: String,
    title: String,
    price: String,
}

struct Tryton {
    url: String,
    client: reqwest::Client,
    auth: String,
    context: Value,
    ids: Value,
}

impl Tryton {
    async fn login(server: &Served, url: &str) -> Result<Tryton> {
        let url = format!("{url}/{}/rpc/", server.text("database")?);
        let username = server.text("username")?;
        let password = std::fs::read_to_string(server.text("password_file")?)?.trim().to_string();
        let client = reqwest::Client::new();
        let answer: Value = client
            .post(&url)
            .json(&json!({"id": 1, "method": "common.db.login", "params": [username, {"password": password}, "en"]}))
            .send()
            .await?
            .json()
            .await?;
        let result = &answer["result"];
        let session = result[1].as_str().with_context(|| format!("tryton login: {answer}"))?;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{}:{session}", result[0]));
        let ids = server.ready["ids"].clone();
        Ok(Tryton {
            url,
            client,
            auth: format!("Session {token}"),
            context: json!({"company": ids["company"], "language": "en"}),
            ids,
        })
    }

    async fn call(&self, method: &str, mut params: Vec<Value>) -> Result<Value> {
        params.push(self.context.clone());
        let answer: Value = self
            .client
            .post(&self.url)
            .header("Authorization", &self.auth)
            .json(&json!({"id": 1, "method": method, "params": params}))
            .send()
            .await?
            .json()
            .await?;
        if let Some(error) = answer.get("error").filter(|error| !error.is_null()) {
            bail!("tryton {method}: {error}");
        }
        Ok(answer["result"].clone())
    }

    async fn create_catalog(&self, products: usize) -> Result<()> {
        let unit = self.ids["unit"].clone();
        let category = self.ids["account_category"].clone();
        let mut index = 0;
        while index < products {
            let batch: Vec<Value> = (index..(index + TRYTON_BATCH).min(products))
                .map(|n| {
                    json!({
                        "name": format!("Bench product {n}"), "code": format!("BP{n:05}-"), "type": "goods",
                        "default_uom": unit, "sale_uom": unit, "salable": true, "account_category": category,
                        "list_price": {"__class__": "Decimal", "decimal": format!("{}.{:02}", 10 + n % 90, n % 100)},
                        "products": [["create", [{"suffix_code": "1", "description": "One size"}]]],
                    })
                })
                .collect();
            index += batch.len();
            self.call("model.product.template.create", vec![json!(batch)]).await?;
        }
        Ok(())
    }

    /// Templates in pages of 500 by id, and the variants of each page: the reads the
    /// connector makes.
    async fn read_catalog(&self) -> Result<Vec<CatalogProduct>> {
        let mut catalog = Vec::new();
        let mut after = 0;
        loop {
            let templates = self
                .call(
                    "model.product.template.search_read",
                    vec![
                        json!([["id", ">", after], ["active", "in", [true, false]]]),
                        json!(0),
                        json!(500),
                        json!([["id", "ASC"]]),
                        json!(["name", "code", "type", "active", "list_price", "create_date", "write_date"]),
                    ],
                )
                .await?;
            let templates = templates.as_array().cloned().unwrap_or_default();
            let Some(last) = templates.last().and_then(|row| row["id"].as_i64()) else { break };
            after = last;
            let ids: Vec<i64> = templates.iter().filter_map(|row| row["id"].as_i64()).collect();
            let variants = self
                .call(
                    "model.product.product.search_read",
                    vec![
                        json!([["template", "in", ids], ["active", "in", [true, false]]]),
                        json!(0),
                        Value::Null,
                        json!([["id", "ASC"]]),
                        json!([
                            "template",
                            "code",
                            "description",
                            "list_price_used",
                            "active",
                            "create_date",
                            "write_date"
                        ]),
                    ],
                )
                .await?;
            for variant in variants.as_array().into_iter().flatten() {
                let template = templates.iter().find(|row| row["id"] == variant["template"]);
                catalog.push(CatalogProduct {
                    code: template.and_then(|row| row["code"].as_str()).unwrap_or_default().to_string(),
                    sku: variant["code"].as_str().unwrap_or_default().to_string(),
                    title: template.and_then(|row| row["name"].as_str()).unwrap_or_default().to_string(),
                    price: variant["list_price_used"]["decimal"].as_str().unwrap_or("0").to_string(),
                });
            }
            if templates.len() < 500 {
                break;
            }
        }
        Ok(catalog)
    }

    async fn count_sales(&self) -> Result<u64> {
        let count =
            self.call("model.sale.sale.search_count", vec![json!([["web_shop", "=", self.ids["web_shop"]]])]).await?;
        count.as_u64().context("search_count returned no number")
    }
}

struct Medusa {
    url: String,
    api_key: String,
    publishable_key: String,
    ids: Value,
    client: reqwest::Client,
}

impl Medusa {
    fn new(server: &Served, url: &str) -> Medusa {
        Medusa {
            url: url.to_string(),
            api_key: server.ready["api_key"].as_str().unwrap_or_default().to_string(),
            publishable_key: server.ready["publishable_api_key"].as_str().unwrap_or_default().to_string(),
            ids: server.ready["ids"].clone(),
            client: reqwest::Client::new(),
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>, admin: bool) -> Result<Value> {
        let mut request = self.client.request(method.clone(), format!("{}{path}", self.url));
        request = if admin {
            request.basic_auth(&self.api_key, Some(""))
        } else {
            request.header("x-publishable-api-key", &self.publishable_key)
        };
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("medusa {method} {path}: {status}: {}", text.chars().take(500).collect::<String>());
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The products as the connector creates them, in batches of 50, SKUs prefixed.
    async fn create_products(&self, catalog: &[CatalogProduct], prefix: &str) -> Result<()> {
        let channel = self.ids["sales_channel"].clone();
        let profile = self.ids["shipping_profile"].clone();
        for chunk in catalog.chunks(MEDUSA_BATCH) {
            let create: Vec<Value> = chunk
                .iter()
                .map(|product| {
                    let sku = format!("{prefix}{}", product.sku);
                    json!({
                        "title": product.title, "handle": format!("{}{}", prefix.to_lowercase(), product.code.to_lowercase().trim_end_matches('-')),
                        "external_id": format!("{prefix}{}", product.code), "status": "published",
                        "shipping_profile_id": profile, "sales_channels": [{"id": channel}],
                        "options": [{"title": "Variant", "values": [sku]}],
                        "variants": [{"title": sku, "sku": sku, "manage_inventory": true, "options": {"Variant": sku},
                            "prices": [{"currency_code": "usd", "amount": product.price.parse::<f64>().unwrap_or(0.0)}]}],
                    })
                })
                .collect();
            self.send(reqwest::Method::POST, "/admin/products/batch", Some(json!({"create": create})), true).await?;
        }
        Ok(())
    }

    async fn count_products(&self) -> Result<u64> {
        let page = self.send(reqwest::Method::GET, "/admin/products?limit=1&fields=id", None, true).await?;
        page["count"].as_u64().context("no count")
    }

    /// Stock for the SKUs at the main location, then `orders` checkouts of one or two of them
    /// by guests with US addresses.
    async fn stock_and_place_orders(&self, skus: &[String], orders: usize) -> Result<()> {
        let location = self.ids["stock_locations"]["Main WH"].clone();
        let mut variants = Vec::new();
        for sku in skus {
            let found = self
                .send(reqwest::Method::GET, &format!("/admin/product-variants?sku={sku}&fields=id"), None, true)
                .await?;
            variants.push(found["variants"][0]["id"].as_str().context("variant not found")?.to_string());
            let items = self
                .send(reqwest::Method::GET, &format!("/admin/inventory-items?sku={sku}&fields=id"), None, true)
                .await?;
            let item = items["inventory_items"][0]["id"].as_str().context("inventory item not found")?.to_string();
            self.send(
                reqwest::Method::POST,
                &format!("/admin/inventory-items/{item}/location-levels"),
                Some(json!({"location_id": location, "stocked_quantity": 100_000})),
                true,
            )
            .await?;
        }
        let region = self.ids["region_usd"].clone();
        let channel = self.ids["sales_channel"].clone();
        for n in 0..orders {
            let email = format!("bench{n}@example.com");
            let cart = self
                .send(
                    reqwest::Method::POST,
                    "/store/carts",
                    Some(json!({"region_id": region, "sales_channel_id": channel, "email": email})),
                    false,
                )
                .await?;
            let cart = cart["cart"]["id"].as_str().context("no cart id")?.to_string();
            for (line, variant) in variants.iter().cycle().skip(n % variants.len()).take(1 + n % 2).enumerate() {
                self.send(
                    reqwest::Method::POST,
                    &format!("/store/carts/{cart}/line-items"),
                    Some(json!({"variant_id": variant, "quantity": 1 + line})),
                    false,
                )
                .await?;
            }
            let address = json!({"first_name": "Bench", "last_name": format!("Buyer {n}"), "address_1": "1 Main Street",
                "city": "Springfield", "postal_code": "62701", "country_code": "us"});
            self.send(
                reqwest::Method::POST,
                &format!("/store/carts/{cart}"),
                Some(json!({"shipping_address": address, "billing_address": address})),
                false,
            )
            .await?;
            let options = self
                .send(reqwest::Method::GET, &format!("/store/shipping-options?cart_id={cart}"), None, false)
                .await?;
            let option = options["shipping_options"][0]["id"].as_str().context("no shipping option")?.to_string();
            self.send(
                reqwest::Method::POST,
                &format!("/store/carts/{cart}/shipping-methods"),
                Some(json!({"option_id": option})),
                false,
            )
            .await?;
            let collection = self
                .send(reqwest::Method::POST, "/store/payment-collections", Some(json!({"cart_id": cart})), false)
                .await?;
            let collection =
                collection["payment_collection"]["id"].as_str().context("no payment collection")?.to_string();
            self.send(
                reqwest::Method::POST,
                &format!("/store/payment-collections/{collection}/payment-sessions"),
                Some(json!({"provider_id": "pp_system_default"})),
                false,
            )
            .await?;
            let completed = self
                .send(reqwest::Method::POST, &format!("/store/carts/{cart}/complete"), Some(json!({})), false)
                .await?;
            if completed["type"] != "order" {
                bail!("checkout {n} did not complete: {completed}");
            }
        }
        Ok(())
    }
}
