//! Shared parts of the cli tests: the real Tryton and Medusa servers of the matrix tests
//! (`matrix_*.rs`) started by `tools/*/ensure.py serve`, small independent clients to read and
//! change their state the way a person or a storefront would, the `erpsync` binary run on a
//! configuration file, the flows the matrix runs, and a raw HTTP client for `serve`.
//!
//! A server that cannot be installed or started fails the test with the script's message
//! (printed above on stderr): these tests are never skipped.

#![allow(dead_code)]

use base64::Engine as _;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Instant;

/// A raw HTTP/1.1 request with `Connection: close`: the whole response (status line, headers
/// and body), or `None` while nothing listens at `address`.
pub fn raw_http(address: &str, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// The flows every Tryton matrix test runs between the ERP system `erp` and the shop system
/// `shop`: catalog and stock to the shop, customers and orders to the ERP, shipments back;
/// `with_invoices` adds posted invoices to the shop as order documents.
pub fn erp_shop_flows(with_invoices: bool) -> String {
    let mut flows = String::new();
    let mut flow = |name: &str, entity: &str, source: &str, target: &str| {
        flows.push_str(&format!(
            "\n[flows.{name}]\nentity = \"{entity}\"\nsource = \"{source}\"\ntarget = \"{target}\"\n"
        ));
    };
    flow("products", "product", "erp", "shop");
    flow("stock", "stock_level", "erp", "shop");
    flow("customers", "customer", "shop", "erp");
    flow("orders", "order", "shop", "erp");
    flow("shipments", "shipment", "erp", "shop");
    if with_invoices {
        flow("invoices", "document", "erp", "shop");
    }
    flows
}

/// A server started by one of the `tools/*/ensure.py serve` scripts. The script stops the
/// server when its standard input closes, which happens when this is dropped or the test
/// process ends for any reason.
pub struct Served {
    pub ready: Value,
    stdin: Option<ChildStdin>,
    child: Child,
}

impl Drop for Served {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

// The child is waited for when the returned `Served` is dropped; clippy cannot see that.
#[allow(clippy::zombie_processes)]
fn serve(tool: &str, env: &[(&str, &str)]) -> Served {
    let started = Instant::now();
    let script = format!("{}/../../tools/{tool}/ensure.py", env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var("ERPSYNC_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut command = Command::new(&python);
    command.arg(&script).arg("serve").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap_or_else(|error| {
        panic!("cannot run {python} {script} serve ({error}): the matrix tests need Python 3 (and for Medusa Node 20 and PostgreSQL)")
    });
    let stdin = child.stdin.take().expect("stdin is piped");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut line = String::new();
    loop {
        line.clear();
        let read = stdout.read_line(&mut line).expect("reading the script's output");
        if read == 0 {
            let status = child.wait().map(|status| status.to_string()).unwrap_or_default();
            panic!(
                "the {tool} test server could not be installed or started: {script} serve ended ({status}) without READY; its messages are above (stderr)"
            );
        }
        if let Some(ready) = line.strip_prefix("READY ") {
            let ready: Value = serde_json::from_str(ready).expect("READY is followed by JSON");
            eprintln!("{tool} test server at {} ready in {:.1} s", ready["url"], started.elapsed().as_secs_f64());
            return Served { ready, stdin: Some(stdin), child };
        }
    }
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().timeout(std::time::Duration::from_secs(120)).build().unwrap()
}

/// A real Tryton 8.2 with the configured test database, and a JSON-RPC client of its own
/// (independent of the connector) logged in as the admin.
pub struct Tryton {
    pub served: Served,
    pub url: String,
    pub database: String,
    pub username: String,
    pub password_file: String,
    pub company: i64,
    client: reqwest::Client,
    auth: String,
}

impl Tryton {
    pub async fn start() -> Tryton {
        let served = tokio::task::spawn_blocking(|| serve("tryton", &[])).await.unwrap();
        let ready = served.ready.clone();
        let url = ready["url"].as_str().unwrap().to_string();
        let database = ready["database"].as_str().unwrap().to_string();
        let username = ready["username"].as_str().unwrap().to_string();
        let password_file = ready["password_file"].as_str().unwrap().to_string();
        let password = std::fs::read_to_string(&password_file).unwrap().trim().to_string();
        let client = http();
        let login: Value = client
            .post(format!("{url}/{database}/rpc/"))
            .json(&json!({"id": 1, "method": "common.db.login", "params": [username, {"password": password}, "en"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let result = &login["result"];
        let token = format!("{username}:{}:{}", result[0], result[1].as_str().unwrap());
        let auth = format!("Session {}", base64::engine::general_purpose::STANDARD.encode(token));
        let company = ready["ids"]["company"].as_i64().unwrap();
        Tryton { served, url, database, username, password_file, company, client, auth }
    }

    pub fn id(&self, name: &str) -> i64 {
        self.served.ready["ids"][name].as_i64().unwrap_or_else(|| panic!("no id {name} in {}", self.served.ready))
    }

    /// `model.<model>.<method>` with `params` and the company's context (plus `context`).
    pub async fn call(&self, model: &str, method: &str, mut params: Vec<Value>, context: Value) -> Value {
        let mut ctx = json!({"company": self.company, "language": "en"});
        if let Value::Object(extra) = context {
            ctx.as_object_mut().unwrap().extend(extra);
        }
        params.push(ctx);
        let answer: Value = self
            .client
            .post(format!("{}/{}/rpc/", self.url, self.database))
            .header("Authorization", &self.auth)
            .json(&json!({"id": 1, "method": format!("model.{model}.{method}"), "params": params}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(error) = answer.get("error").filter(|error| !error.is_null()) {
            panic!("tryton {model}.{method}: {error}");
        }
        answer["result"].clone()
    }

    pub async fn search_read(&self, model: &str, domain: Value, fields: &[&str]) -> Vec<Value> {
        self.call(
            model,
            "search_read",
            vec![domain, json!(0), Value::Null, json!([["id", "ASC"]]), json!(fields)],
            json!({}),
        )
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
    }

    /// A template with its variants as an ERP user enters them: `code` prefix, variants as
    /// (suffix, description, price or `None` for the template's price).
    pub async fn create_product(
        &self,
        name: &str,
        code: &str,
        price: &str,
        variants: &[(&str, &str, Option<&str>)],
    ) -> i64 {
        let variants: Vec<Value> = variants
            .iter()
            .map(|(suffix, description, price)| {
                let mut values = json!({"suffix_code": suffix, "description": description});
                if let Some(price) = price {
                    values["list_price"] = decimal(price);
                }
                values
            })
            .collect();
        let unit = self.id("unit");
        self.call(
            "product.template",
            "create",
            vec![json!([{
                "name": name, "code": code, "type": "goods", "default_uom": unit, "sale_uom": unit, "salable": true,
                "list_price": decimal(price), "account_category": self.id("account_category"),
                "products": [["create", variants]],
            }])],
            json!({}),
        )
        .await[0]
            .as_i64()
            .unwrap()
    }

    /// Goods received into the main warehouse's storage: one done move per (SKU, quantity).
    pub async fn receive(&self, stock: &[(&str, i64)]) {
        let mut moves = Vec::new();
        for (sku, quantity) in stock {
            let product = self.product_id(sku).await;
            moves.push(json!({
                "product": product, "quantity": *quantity as f64, "unit": self.id("unit"),
                "from_location": self.id("supplier_location"), "to_location": self.id("storage"),
                "unit_price": decimal("1"), "currency": self.id("currency"), "company": self.company,
            }));
        }
        let ids = self.call("stock.move", "create", vec![json!(moves)], json!({})).await;
        self.call("stock.move", "do", vec![ids], json!({})).await;
    }

    pub async fn product_id(&self, sku: &str) -> i64 {
        let rows = self.search_read("product.product", json!([["code", "=", sku]]), &["id"]).await;
        rows.first().and_then(|row| row["id"].as_i64()).unwrap_or_else(|| panic!("no variant {sku} in tryton"))
    }

    /// The sales of the test web shop with this web id.
    pub async fn sales(&self, web_id: &str) -> Vec<Value> {
        self.search_read(
            "sale.sale",
            json!([["web_shop", "=", self.id("web_shop")], ["web_id", "=", web_id]]),
            &[
                "number",
                "state",
                "party",
                "currency",
                "lines",
                "shipments",
                "invoices",
                "total_amount",
                "untaxed_amount",
            ],
        )
        .await
    }

    /// Ships a sale's shipments as a warehouse worker does, with `tracking` as the reference.
    pub async fn ship(&self, sale: &Value, tracking: &str) {
        let shipments = sale["shipments"].clone();
        assert!(!shipments.as_array().unwrap().is_empty(), "the sale has no shipment: {sale}");
        self.call("stock.shipment.out", "write", vec![shipments.clone(), json!({"reference": tracking})], json!({}))
            .await;
        for step in ["assign_try", "pick", "pack", "do"] {
            self.call("stock.shipment.out", step, vec![shipments.clone()], json!({})).await;
        }
        let states = self.call("stock.shipment.out", "read", vec![shipments, json!(["state"])], json!({})).await;
        for state in states.as_array().unwrap() {
            assert_eq!(state["state"], "done", "the shipment is done (enough stock?): {states}");
        }
    }

    /// Posts a sale's invoices as the accountant does; returns their numbers.
    pub async fn post_invoices(&self, sale: &Value) -> Vec<String> {
        let invoices = sale["invoices"].clone();
        assert!(!invoices.as_array().unwrap().is_empty(), "the sale has no invoice: {sale}");
        let today = chrono::Utc::now().date_naive();
        use chrono::Datelike;
        self.call(
            "account.invoice",
            "write",
            vec![invoices.clone(), json!({"invoice_date": {"__class__": "date", "year": today.year(), "month": today.month(), "day": today.day()}})],
            json!({}),
        )
        .await;
        self.call("account.invoice", "post", vec![invoices.clone()], json!({})).await;
        let rows = self.call("account.invoice", "read", vec![invoices, json!(["number", "state"])], json!({})).await;
        rows.as_array()
            .unwrap()
            .iter()
            .map(|row| {
                assert_eq!(row["state"], "posted", "{row}");
                row["number"].as_str().unwrap().to_string()
            })
            .collect()
    }

    /// The customer invoices and credit notes with this reference (erpsync writes a refund's
    /// number there), each with its lines read in full under `"lines"`.
    pub async fn credit_notes(&self, reference: &str) -> Vec<Value> {
        let mut invoices = self
            .search_read(
                "account.invoice",
                json!([["type", "=", "out"], ["reference", "=", reference]]),
                &["number", "state", "party", "currency", "total_amount", "lines"],
            )
            .await;
        for invoice in &mut invoices {
            let lines = self
                .call(
                    "account.invoice.line",
                    "read",
                    vec![
                        invoice["lines"].clone(),
                        json!(["product", "quantity", "unit_price", "amount", "description", "origin"]),
                    ],
                    json!({}),
                )
                .await;
            invoice["lines"] = lines;
        }
        invoices
    }

    /// The `[systems.<name>]` table for this server.
    pub fn system(&self, name: &str) -> String {
        format!(
            r#"
[systems.{name}]
type = "tryton"
url = "{}"
database = "{}"
username = "{}"
password = {{ file = "{}" }}
company = "erpsync Test Company"
web_shop = "erpsync"
account_category = "Goods"
warehouses = {{ main = "WH" }}
"#,
            self.url, self.database, self.username, self.password_file
        )
    }
}

pub fn decimal(text: &str) -> Value {
    json!({"__class__": "Decimal", "decimal": text})
}

/// The decimal in a Tryton `Decimal` value (or a plain number).
pub fn tryton_decimal(value: &Value) -> rust_decimal::Decimal {
    let text = value["decimal"].as_str().map(str::to_string).unwrap_or_else(|| value.to_string());
    text.parse().unwrap_or_else(|_| panic!("not a decimal: {value}"))
}

/// A real Medusa 2.21 with the template's store setup, and clients of its own: the admin API
/// with the secret key, the store API with the publishable key.
pub struct Medusa {
    pub served: Served,
    pub url: String,
    pub api_key: String,
    pub publishable_key: String,
    client: reqwest::Client,
}

impl Medusa {
    pub async fn start(webhook: Option<(&str, &str)>) -> Medusa {
        let env: Vec<(String, String)> = match webhook {
            Some((url, secret)) => vec![
                ("ERPSYNC_WEBHOOK_URL".to_string(), url.to_string()),
                ("ERPSYNC_WEBHOOK_SECRET".to_string(), secret.to_string()),
            ],
            None => Vec::new(),
        };
        let served = tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
            serve("medusa", &env)
        })
        .await
        .unwrap();
        let url = served.ready["url"].as_str().unwrap().to_string();
        let api_key = served.ready["api_key"].as_str().unwrap().to_string();
        let publishable_key = served.ready["publishable_api_key"].as_str().unwrap().to_string();
        Medusa { served, url, api_key, publishable_key, client: http() }
    }

    pub fn id(&self, path: &str) -> String {
        let mut value = &self.served.ready["ids"];
        for part in path.split('.') {
            value = &value[part];
        }
        value.as_str().unwrap_or_else(|| panic!("no id {path} in {}", self.served.ready)).to_string()
    }

    async fn request(&self, method: reqwest::Method, path: &str, body: Option<Value>, admin: bool) -> Value {
        let mut request = self.client.request(method.clone(), format!("{}{path}", self.url));
        request = if admin {
            request.basic_auth(&self.api_key, Some(""))
        } else {
            request.header("x-publishable-api-key", &self.publishable_key)
        };
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "medusa {method} {path}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        self.request(reqwest::Method::GET, path, None, true).await
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> Value {
        self.request(reqwest::Method::POST, path, Some(body), true).await
    }

    pub async fn store_get(&self, path: &str) -> Value {
        self.request(reqwest::Method::GET, path, None, false).await
    }

    pub async fn store_post(&self, path: &str, body: Value) -> Value {
        self.request(reqwest::Method::POST, path, Some(body), false).await
    }

    /// A checkout through the store API as a shopper does it: cart in the region, lines by
    /// variant id, addresses, the shipping option, a payment session, complete. Returns the
    /// order.
    pub async fn checkout(&self, region: &str, email: &str, lines: &[(String, i64)], address: Value) -> Value {
        let cart = self
            .store_post(
                "/store/carts",
                json!({"region_id": region, "sales_channel_id": self.id("sales_channel"), "email": email}),
            )
            .await["cart"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        for (variant, quantity) in lines {
            self.store_post(
                &format!("/store/carts/{cart}/line-items"),
                json!({"variant_id": variant, "quantity": quantity}),
            )
            .await;
        }
        self.store_post(
            &format!("/store/carts/{cart}"),
            json!({"shipping_address": address, "billing_address": address}),
        )
        .await;
        let options = self.store_get(&format!("/store/shipping-options?cart_id={cart}")).await;
        let option =
            options["shipping_options"][0]["id"].as_str().unwrap_or_else(|| panic!("no shipping option: {options}"));
        self.store_post(&format!("/store/carts/{cart}/shipping-methods"), json!({"option_id": option})).await;
        let collection =
            self.store_post("/store/payment-collections", json!({"cart_id": cart})).await["payment_collection"]["id"]
                .as_str()
                .unwrap()
                .to_string();
        self.store_post(
            &format!("/store/payment-collections/{collection}/payment-sessions"),
            json!({"provider_id": "pp_system_default"}),
        )
        .await;
        let completed = self.store_post(&format!("/store/carts/{cart}/complete"), json!({})).await;
        assert_eq!(completed["type"], "order", "the cart completes as an order: {completed}");
        completed["order"].clone()
    }
}

/// A folder with `erpsync.toml`, its secret files and the data directory, and the real binary.
pub struct Erpsync {
    pub dir: tempfile::TempDir,
}

impl Erpsync {
    pub fn new(config: &str, secrets: &[(&str, &str)]) -> Erpsync {
        let dir = tempfile::tempdir().unwrap();
        for (name, value) in secrets {
            std::fs::write(dir.path().join(name), value).unwrap();
        }
        std::fs::write(dir.path().join("erpsync.toml"), config).unwrap();
        let erpsync = Erpsync { dir };
        erpsync.run_ok(&["validate"]);
        erpsync
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_erpsync"));
        command.current_dir(self.dir.path()).args(["--config", "erpsync.toml", "--data-dir", "data"]).args(args);
        command
    }

    pub fn run_ok(&self, args: &[&str]) -> String {
        let output = self.command(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(
            output.status.success(),
            "erpsync {args:?} failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// `erpsync sync <flow> --json` in a blocking thread; the run's counts. Fails the test
    /// when the run did not succeed, with the failures' reasons.
    pub async fn sync(&self, flow: &str) -> Counts {
        self.sync_with(flow, &[]).await
    }

    pub async fn sync_full(&self, flow: &str) -> Counts {
        self.sync_with(flow, &["--full"]).await
    }

    /// Every flow again, twice, reading everything (`--full`). The first pass creates nothing
    /// (no duplicate anywhere) but may carry over what the flows did to each other since they
    /// last ran (the shop's order completed by a shipment comes back as a changed order); the
    /// second pass writes nothing at all.
    pub async fn again_twice(&self, flows: &[&str]) {
        for flow in flows {
            let counts = self.sync_full(flow).await;
            assert_eq!(counts.created, 0, "{flow} created again: {counts:?}");
        }
        for flow in flows {
            let counts = self.sync_full(flow).await;
            assert_eq!(counts.wrote(), 0, "{flow} wrote again with nothing changed: {counts:?}");
        }
    }

    async fn sync_with(&self, flow: &str, extra: &[&str]) -> Counts {
        let mut command = self.command(&["sync", flow, "--json", "--no-progress"]);
        command.args(extra);
        let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        let summary: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        if !output.status.success() || summary["status"] != "succeeded" {
            let failures = self.command(&["failures", "list", "--flow", flow]).output().unwrap();
            panic!(
                "erpsync sync {flow} did not succeed ({}):\n{stdout}\n{stderr}\nfailures:\n{}",
                output.status,
                String::from_utf8_lossy(&failures.stdout)
            );
        }
        let counts = &summary["counts"];
        let count = |name: &str| counts[name].as_i64().unwrap_or(0);
        let counts = Counts {
            read: count("read"),
            created: count("created"),
            updated: count("updated"),
            unchanged: count("unchanged"),
            skipped: count("skipped"),
            failed: count("failed"),
        };
        eprintln!("sync {flow}: {counts:?}");
        counts
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub read: i64,
    pub created: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub skipped: i64,
    pub failed: i64,
}

impl Counts {
    pub fn wrote(&self) -> i64 {
        self.created + self.updated
    }
}

/// A POST to the shop's REST API signed with OAuth 1.0a, as any client of a plain-HTTP
/// WooCommerce site signs it.
pub async fn woo_post(shop: &erpsync_sim::woocommerce::RunningWooSim, path: &str, body: Value) -> Value {
    use erpsync_sim::woocommerce::{oauth_base_string, oauth_signature};
    let url = format!("{}{path}", shop.api_url());
    let key = shop.key();
    let mut params = vec![
        ("oauth_consumer_key".to_string(), key.consumer_key.clone()),
        ("oauth_nonce".to_string(), format!("{:032x}", chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default())),
        ("oauth_signature_method".to_string(), "HMAC-SHA256".to_string()),
        ("oauth_timestamp".to_string(), chrono::Utc::now().timestamp().to_string()),
    ];
    let signature =
        oauth_signature("HMAC-SHA256", &key.consumer_secret, &oauth_base_string("POST", &url, &params)).unwrap();
    params.push(("oauth_signature".to_string(), signature));
    let response = reqwest::Client::new().post(&url).query(&params).json(&body).send().await.unwrap();
    let status = response.status();
    let value: Value = response.json().await.unwrap();
    assert!(status.is_success(), "POST {path}: {status}: {value}");
    value
}

/// A suffix unique to this run, so that runs against long-lived servers never collide.
pub fn unique() -> String {
    format!("{}{}", std::process::id() % 10_000, chrono::Utc::now().timestamp_micros() % 1_000_000)
}
