//! Alerts end to end: a real SMTP server (aiosmtpd from PyPI, installed by the test into a venv
//! under target/, speaking STARTTLS with a certificate made by the test) and a Slack-style
//! webhook receiver served by the test. One incident sends one message per channel with the
//! right subject and body, then one resolve message; a new incident within the cool-down is
//! recorded without a message; `/api/v1/alerts` lists the incidents; `serve` evaluates the rules
//! on its own. Nothing is skipped: a missing Python or openssl fails the test with the reason.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use erpsync_engine::alerts::Alerter;
use erpsync_engine::config::Config;
use erpsync_engine::shutdown::{self, Shutdown};
use erpsync_engine::{Engine, RunOptions};
use erpsync_store::{AlertFilter, Store, TokenRole};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tower::ServiceExt;

const CATALOG: &str = "code,title,sku,price,currency\n\
                       GOOD-1,Good one,GOOD-1,10.00,EUR\n\
                       NEG-1,Negative price,NEG-1,-1.00,EUR\n";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).expect("crates/server is two levels down").to_path_buf()
}

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|error| panic!("{what}: {error}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A venv under target/ with aiosmtpd from PyPI; its python. Made once: the tests of this file
/// run at once and would each start making it on a clean checkout, so they take turns (a lock
/// in the process, and a lock file against other test processes).
fn aiosmtpd_python() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let target = workspace_root().join("target");
            std::fs::create_dir_all(&target).expect("target/ can be created");
            let lock = std::fs::File::create(target.join("aiosmtpd-venv.lock")).expect("the venv's lock file");
            lock.lock().expect("locking the venv's lock file");
            let venv = target.join("aiosmtpd-venv");
            let python = venv.join("bin/python");
            let ready =
                Command::new(&python).args(["-c", "import aiosmtpd"]).output().is_ok_and(|out| out.status.success());
            if !ready {
                // What a run stopped half-way left behind is made again.
                let _ = std::fs::remove_dir_all(&venv);
                run(Command::new("python3").args(["-m", "venv"]).arg(&venv), "python3 -m venv (Python 3 is needed)");
                run(
                    Command::new(&python).args(["-m", "pip", "install", "--quiet", "aiosmtpd"]),
                    "pip install aiosmtpd (PyPI must be reachable)",
                );
            }
            python
        })
        .clone()
}

/// A certificate authority and a certificate for 127.0.0.1 signed by it, in `dir`.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str], what: &str| run(Command::new("openssl").args(args).current_dir(dir), what);
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=erpsync test CA",
        ],
        "openssl: making a test certificate authority",
    );
    openssl(
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "smtp.key",
            "-out",
            "smtp.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        "openssl: making the SMTP server's key",
    );
    std::fs::write(
        dir.join("smtp.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "smtp.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "smtp.pem",
            "-days",
            "1",
            "-extfile",
            "smtp.ext",
        ],
        "openssl: signing the SMTP server's certificate",
    );
}

/// aiosmtpd on 127.0.0.1, requiring STARTTLS, printing every message it receives.
struct SmtpServer {
    child: Child,
    port: u16,
    output: Arc<Mutex<String>>,
}

impl SmtpServer {
    fn start(dir: &Path) -> Self {
        let python = aiosmtpd_python();
        make_certificates(dir);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new(python)
            .args(["-u", "-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["--tlscert", "smtp.pem", "--tlskey", "smtp.key"])
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting aiosmtpd");
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut output = output.lock().unwrap();
                    output.push_str(&line);
                    output.push('\n');
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("aiosmtpd exited with {status}:\n{}", output.lock().unwrap());
            }
            assert!(Instant::now() < deadline, "aiosmtpd did not listen within 20s:\n{}", output.lock().unwrap());
            std::thread::sleep(Duration::from_millis(100));
        }
        SmtpServer { child, port, output }
    }

    /// The messages received so far, as printed by aiosmtpd's debugging handler.
    fn messages(&self) -> Vec<String> {
        let output = self.output.lock().unwrap();
        output
            .split("---------- MESSAGE FOLLOWS ----------")
            .skip(1)
            .filter_map(|rest| rest.split("------------ END MESSAGE ------------").next())
            .map(str::to_string)
            .collect()
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.lines().find_map(|line| line.strip_prefix(&format!("{name}: ")))
}

/// A Slack-compatible incoming webhook: keeps every JSON body posted to it.
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let app = Router::new()
        .route(
            "/services/hook",
            post(|State(received): State<Arc<Mutex<Vec<Value>>>>, axum::Json(body): axum::Json<Value>| async move {
                received.lock().unwrap().push(body);
                "ok"
            }),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/services/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

async fn engine_with(dir: &Path, alerts: &str) -> Arc<Engine> {
    std::fs::create_dir_all(dir.join("erp")).unwrap();
    std::fs::create_dir_all(dir.join("shop")).unwrap();
    std::fs::write(dir.join("erp/products.csv"), CATALOG).unwrap();
    let config = format!(
        r#"
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

{alerts}
"#
    );
    let config = Config::parse(&config, &dir.join("erpsync.toml")).unwrap_or_else(|errors| panic!("{errors}"));
    let store: Arc<dyn Store> =
        Arc::new(erpsync_store::sqlite::SqliteStore::open(&dir.join("state.db")).await.unwrap());
    Arc::new(Engine::new(Arc::new(config), store))
}

async fn sync(engine: &Engine) {
    let options = RunOptions { full: true, dry_run: false, trigger: "manual".into() };
    engine.sync("products", &options, &Shutdown::never(), &|_| {}).await.unwrap();
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "waited 20s for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_per_incident_by_email_and_webhook_then_a_resolve_message() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(dir.path());
    let (hook_url, hooks) = webhook_receiver().await;
    // The URL is a secret: a file, as a real configuration would have it (or `${VAR}`).
    std::fs::write(dir.path().join("hook-url"), &hook_url).unwrap();
    let alerts = format!(
        r#"
[alerts]
interval = "1s"
cooldown = "1h"

[alerts.email]
smtp_host = "127.0.0.1"
smtp_port = {port}
tls = "starttls"
ca_file = "ca.pem"
from = "erpsync <erpsync@example.com>"
to = ["ops@example.com", "Anna <anna@example.com>"]

[alerts.webhook]
url = {{ file = "hook-url" }}

[alerts.templates]
resolved_subject = "All clear: {{{{ rule }}}} on {{{{ flow }}}}"

[[alerts.rules]]
name = "products-failing"
kind = "failures"
flow = "products"
threshold = 0
window = "4s"
"#,
        port = smtp.port
    );
    let engine = engine_with(dir.path(), &alerts).await;
    let alerter = Alerter::new(engine.clone());

    // Nothing failed yet: nothing fires.
    let changes = alerter.evaluate(chrono::Utc::now()).await.unwrap();
    assert!(changes.opened.is_empty() && changes.resolved.is_empty(), "{changes:?}");

    sync(&engine).await;
    let changes = alerter.evaluate(chrono::Utc::now()).await.unwrap();
    assert_eq!(changes.opened.len(), 1, "{changes:?}");
    let opened = &changes.opened[0];
    let sent: Vec<(&str, &str, bool)> =
        opened.deliveries.iter().map(|d| (d.event.as_str(), d.channel.as_str(), d.ok)).collect();
    assert_eq!(sent, vec![("firing", "email", true), ("firing", "webhook", true)], "{:?}", opened.deliveries);
    assert!(opened.deliveries[0].detail.starts_with("250"), "the SMTP server's answer: {:?}", opened.deliveries[0]);

    // Still failing: the same incident, no second message.
    for _ in 0..3 {
        let changes = alerter.evaluate(chrono::Utc::now()).await.unwrap();
        assert!(changes.opened.is_empty() && changes.resolved.is_empty(), "{changes:?}");
    }
    wait_for("the firing e-mail", || smtp.messages().len() == 1).await;
    assert_eq!(hooks.lock().unwrap().len(), 1);

    let messages = smtp.messages();
    let firing = &messages[0];
    assert_eq!(header(firing, "Subject"), Some("[erpsync] products-failing: products"), "{firing}");
    assert_eq!(header(firing, "From"), Some("erpsync <erpsync@example.com>"), "{firing}");
    let to = header(firing, "To").unwrap_or_default();
    assert!(to.contains("ops@example.com") && to.contains("anna@example.com"), "{firing}");
    assert!(
        firing.contains("1 record(s) of flow products failed in the last 4s (alert above 0)"),
        "the body says what was seen: {firing}"
    );
    assert!(firing.contains("Rule: products-failing (failures)"), "{firing}");
    let hook = hooks.lock().unwrap()[0].clone();
    let text = hook["text"].as_str().unwrap();
    assert!(text.starts_with("*[erpsync] products-failing: products*\n1 record(s) of flow products failed"), "{hook}");

    // The window passes without new failures: resolved, one resolve message per channel.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let changes = alerter.evaluate(chrono::Utc::now()).await.unwrap();
    assert_eq!(changes.resolved.len(), 1, "{changes:?}");
    assert!(changes.opened.is_empty());
    wait_for("the resolve e-mail", || smtp.messages().len() == 2).await;
    let messages = smtp.messages();
    let resolved = &messages[1];
    assert_eq!(header(resolved, "Subject"), Some("All clear: products-failing on products"), "{resolved}");
    assert!(resolved.contains("0 record(s) of flow products failed in the last 4s"), "{resolved}");
    assert_eq!(hooks.lock().unwrap().len(), 2);
    assert!(
        hooks.lock().unwrap()[1]["text"].as_str().unwrap().starts_with("*All clear: products-failing on products*")
    );
    let changes = alerter.evaluate(chrono::Utc::now()).await.unwrap();
    assert!(changes.opened.is_empty() && changes.resolved.is_empty(), "{changes:?}");

    // It fails again within the cool-down: a new incident, recorded without a message.
    sync(&engine).await;
    let changes = alerter.evaluate(chrono::Utc::now()).await.unwrap();
    assert_eq!(changes.opened.len(), 1, "{changes:?}");
    assert!(!changes.opened[0].notify && changes.opened[0].deliveries.is_empty(), "{changes:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.messages().len(), 2, "no message within the cool-down:\n{}", smtp.output());
    assert_eq!(hooks.lock().unwrap().len(), 2);

    // The API lists both incidents, newest first, with their messages.
    let viewer = engine.create_token("grafana", TokenRole::Viewer, "test").await.unwrap().secret;
    let router = erpsync_server::router(engine.clone());
    let request =
        Request::get("/api/v1/alerts").header("authorization", format!("Bearer {viewer}")).body(Body::empty());
    let response = router.clone().oneshot(request.unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let listed: Value = serde_json::from_slice(&body).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["state"], "firing");
    assert_eq!(listed[0]["notify"], false);
    assert_eq!(listed[1]["state"], "resolved");
    assert_eq!(listed[1]["rule"], "products-failing");
    assert_eq!(listed[1]["scope"], "products");
    let events: Vec<(&str, &str)> = listed[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["event"].as_str().unwrap(), m["channel"].as_str().unwrap()))
        .collect();
    assert_eq!(
        events,
        vec![("firing", "email"), ("firing", "webhook"), ("resolved", "email"), ("resolved", "webhook")]
    );
    let request = Request::get("/api/v1/alerts?state=firing").header("authorization", format!("Bearer {viewer}"));
    let response = router.oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap().as_array().unwrap().len(), 1);
    // The SMTP server required STARTTLS: it would have refused the mail otherwise.
    assert!(!smtp.output().contains("Must issue a STARTTLS command first"), "{}", smtp.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_evaluates_the_rules_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (hook_url, hooks) = webhook_receiver().await;
    std::fs::write(dir.path().join("hook-url"), &hook_url).unwrap();
    let alerts = r#"
[alerts]
interval = "1s"

[alerts.webhook]
url = { file = "hook-url" }

[[alerts.rules]]
name = "any-failure"
kind = "failures"
window = "1h"

[[alerts.rules]]
name = "products-down"
kind = "run_failed"
flow = "products"
"#;
    let engine = engine_with(dir.path(), alerts).await;
    sync(&engine).await;
    let (trigger, listener) = shutdown::channel();
    let serving = tokio::spawn({
        let engine = engine.clone();
        async move { engine.serve(listener).await }
    });
    wait_for("the webhook message sent by serve", || !hooks.lock().unwrap().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    trigger.trigger();
    serving.await.unwrap().unwrap();
    let received = hooks.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "one message for the one incident, however many rounds: {received:?}");
    assert!(received[0]["text"].as_str().unwrap().contains("any-failure"), "{received:?}");
    let open = engine.store().list_alerts(&AlertFilter { open_only: true, ..Default::default() }).await.unwrap();
    assert_eq!(open.len(), 1, "the last run went through, so run_failed did not fire: {open:?}");
}

/// A shop that answers 503 to every write while `down` is set.
struct FlakyShop {
    down: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl erpsync_connectors::Sink for FlakyShop {
    fn capabilities(&self, _entity: erpsync_model::EntityKind) -> erpsync_connectors::Capabilities {
        erpsync_connectors::Capabilities { write: true, lookup: true, ..Default::default() }
    }

    fn max_batch_size(&self, _entity: erpsync_model::EntityKind) -> usize {
        10
    }

    async fn lookup(
        &self,
        _entity: erpsync_model::EntityKind,
        keys: &[String],
    ) -> Result<Vec<Option<String>>, erpsync_connectors::ConnectorError> {
        self.answer("looking up products in \"shop\"")?;
        Ok(keys.iter().map(|_| None).collect())
    }

    async fn write_batch(
        &self,
        batch: &erpsync_connectors::WriteBatch,
    ) -> Result<Vec<erpsync_connectors::WriteOutcome>, erpsync_connectors::ConnectorError> {
        self.answer("writing products to \"shop\"")?;
        Ok(batch
            .items
            .iter()
            .map(|item| erpsync_connectors::WriteOutcome::Created { target_id: format!("T-{}", item.natural_key) })
            .collect())
    }
}

impl FlakyShop {
    fn answer(&self, doing: &str) -> Result<(), erpsync_connectors::ConnectorError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(erpsync_connectors::ConnectorError::new(
                erpsync_connectors::ErrorKind::Unavailable,
                doing,
                "503 service unavailable",
            ));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_sends_one_message_and_its_closing_a_resolve_message() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(dir.path());
    let (hook_url, hooks) = webhook_receiver().await;
    std::fs::write(dir.path().join("hook-url"), &hook_url).unwrap();
    let alerts = format!(
        r#"
[flows.products.retry]
max_attempts = 1

[engine.circuit]
failures = 2
cooldown = "1s"

[alerts]
interval = "1s"

[alerts.email]
smtp_host = "127.0.0.1"
smtp_port = {port}
ca_file = "ca.pem"
from = "erpsync <erpsync@example.com>"
to = ["ops@example.com"]

[alerts.webhook]
url = {{ file = "hook-url" }}

[[alerts.rules]]
name = "shop-down"
kind = "circuit_open"
system = "shop"
"#,
        port = smtp.port
    );
    let engine = engine_with(dir.path(), &alerts).await;
    let shop = Arc::new(FlakyShop { down: true.into() });
    engine.use_sink("shop", shop.clone());
    let alerter = Alerter::new(engine.clone());

    // One failed run: the circuit is still closed, nothing fires.
    sync(&engine).await;
    let changes = alerter.evaluate(chrono::Utc::now()).await.unwrap();
    assert!(changes.opened.is_empty(), "{changes:?}");
    // The second opens it: one incident about the system, one message per channel.
    sync(&engine).await;
    let changes = alerter.evaluate(chrono::Utc::now()).await.unwrap();
    assert_eq!(changes.opened.len(), 1, "{changes:?}");
    let opened = &changes.opened[0];
    assert_eq!((opened.kind.as_str(), opened.scope.as_str()), ("circuit_open", "shop"));
    let sent: Vec<(&str, bool)> = opened.deliveries.iter().map(|d| (d.channel.as_str(), d.ok)).collect();
    assert_eq!(sent, vec![("email", true), ("webhook", true)], "{:?}", opened.deliveries);
    for _ in 0..2 {
        let changes = alerter.evaluate(chrono::Utc::now()).await.unwrap();
        assert!(changes.opened.is_empty() && changes.resolved.is_empty(), "still the same incident: {changes:?}");
    }
    wait_for("the firing e-mail", || smtp.messages().len() == 1).await;
    let firing = &smtp.messages()[0];
    assert_eq!(header(firing, "Subject"), Some("[erpsync] shop-down: shop"), "{firing}");
    // The body is quoted-printable: join its soft line breaks.
    let body = firing.replace("=\n", "");
    assert!(
        body.contains(
            "the circuit of system shop is open after 2 failed run(s) in a row (unavailable: looking up products \
             in \"shop\": 503 service unavailable); flows held: products"
        ),
        "{firing}"
    );
    assert!(body.contains("Rule: shop-down (circuit_open)") && body.contains("System: shop"), "{firing}");
    let text = hooks.lock().unwrap()[0]["text"].as_str().unwrap().to_string();
    assert!(text.starts_with("*[erpsync] shop-down: shop*\nthe circuit of system shop is open"), "{text}");
    // The metric says so too.
    let router = erpsync_server::router(engine.clone());
    let scrape = || async {
        let response = router.clone().oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    };
    let metrics = scrape().await;
    assert!(metrics.contains("erpsync_circuit_open{system=\"shop\"} 1\n"), "{metrics}");
    assert!(metrics.contains("erpsync_circuit_open{system=\"erp\"} 0\n"), "{metrics}");

    // The shop comes back: the probe half-opens the circuit (still firing: the flow is on trial),
    // and a run that gets through closes it, which resolves the incident with one message each.
    shop.down.store(false, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    engine.probe_circuits().await.unwrap();
    let changes = alerter.evaluate(chrono::Utc::now()).await.unwrap();
    assert!(changes.resolved.is_empty(), "half-open is not resolved yet: {changes:?}");
    sync(&engine).await;
    let changes = alerter.evaluate(chrono::Utc::now()).await.unwrap();
    assert_eq!(changes.resolved.len(), 1, "{changes:?}");
    wait_for("the resolve e-mail", || smtp.messages().len() == 2).await;
    let resolved = &smtp.messages()[1];
    assert_eq!(header(resolved, "Subject"), Some("[erpsync] resolved: shop-down: shop"), "{resolved}");
    assert!(resolved.replace("=\n", "").contains("the circuit of system shop is closed; its flows run"), "{resolved}");
    assert_eq!(hooks.lock().unwrap().len(), 2);
    let metrics = scrape().await;
    assert!(metrics.contains("erpsync_circuit_open{system=\"shop\"} 0\n"), "{metrics}");
}
