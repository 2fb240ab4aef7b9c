//! The dashboard in a real headless Chromium, driven by playwright-core (`tools/browser`): an
//! operator signs in, finds a failed record in the inbox, fixes its payload, retries it and sees
//! it synced and traced; a viewer sees no actions and a forged POST is refused 403. The test
//! installs what it needs (`tools/browser/ensure.sh`: Debian's chromium, playwright-core from
//! npm) and fails with the reason when it cannot; it is never skipped.

use erpsync_engine::config::Config;
use erpsync_engine::shutdown::Shutdown;
use erpsync_engine::{Engine, RunOptions};
use erpsync_store::{DeadLetterFilter, DeadLetterStatus, Store, TokenRole};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One good row and two with a negative price (dead letters holding the row as read).
const CATALOG: &str = "code,title,sku,price,currency\n\
                       GOOD-1,Good one,GOOD-1,10.00,EUR\n\
                       NEG-1,Negative price,NEG-1,-1.00,EUR\n\
                       NEG-2,Negative too,NEG-2,-2.00,EUR\n";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).expect("crates/server is two levels down").to_path_buf()
}

/// Installs Chromium and playwright-core when missing; panics with the installer's output.
fn ensure_browser() {
    let script = workspace_root().join("tools/browser/ensure.sh");
    let output = std::process::Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|error| panic!("running {}: {error}", script.display()));
    assert!(
        output.status.success(),
        "the browser test needs Chromium and playwright-core; {} failed:\n{}\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&output.stdout).trim());
}

/// The record GOOD-1 as written to the shop, renamed to `new_sku`: a valid record in the
/// versioned form, which is what the operator types into the payload box.
fn record_like(shop: &Path, sku: &str, new_sku: &str) -> Value {
    for entry in std::fs::read_dir(shop).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        if let Some(line) = text.lines().find(|line| line.contains(&format!("\"{sku}\""))) {
            let written: Value = serde_json::from_str(line).unwrap();
            let envelope = if written.get("v").is_some() { written } else { json!({ "v": 1, "record": written }) };
            return serde_json::from_str(&envelope.to_string().replace(sku, new_sku)).unwrap();
        }
    }
    panic!("no record with sku {sku} in {}", shop.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_fixes_and_retries_a_failure_in_the_browser_and_a_viewer_cannot() {
    ensure_browser();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("erp")).unwrap();
    std::fs::create_dir_all(dir.path().join("shop")).unwrap();
    std::fs::write(dir.path().join("erp/products.csv"), CATALOG).unwrap();
    let config = r#"
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
interval = "1h"
"#;
    let config = Config::parse(config, &dir.path().join("erpsync.toml")).unwrap();
    let store: Arc<dyn Store> =
        Arc::new(erpsync_store::sqlite::SqliteStore::open(&dir.path().join("state.db")).await.unwrap());
    let engine = Arc::new(Engine::new(Arc::new(config), store));
    let operator = engine.create_token("anna", TokenRole::Operator, "test").await.unwrap().secret;
    let viewer = engine.create_token("grafana", TokenRole::Viewer, "test").await.unwrap().secret;
    let options = RunOptions { full: false, dry_run: false, trigger: "manual".into() };
    engine.sync("products", &options, &Shutdown::never(), &|_| {}).await.unwrap();
    let letters = engine.store().list_dead_letters(&DeadLetterFilter::default()).await.unwrap();
    let id_of = |sku: &str| letters.iter().find(|letter| letter.source_id == sku).map(|letter| letter.id).unwrap();
    let (letter, other) = (id_of("NEG-1"), id_of("NEG-2"));
    let fixed = record_like(&dir.path().join("shop"), "GOOD-1", "NEG-1");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = erpsync_server::router(engine.clone());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let screenshots = workspace_root().join("target/dashboard-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let browser_dir = workspace_root().join("tools/browser");
    let run = tokio::process::Command::new("node")
        .arg(browser_dir.join("dashboard.mjs"))
        .current_dir(&browser_dir)
        .env("BASE_URL", &base)
        .env("OPERATOR_TOKEN", &operator)
        .env("VIEWER_TOKEN", &viewer)
        .env("LETTER_ID", letter.to_string())
        .env("OTHER_LETTER_ID", other.to_string())
        .env("RECORD_KEY", "NEG-1")
        .env("FIXED_PAYLOAD", serde_json::to_string_pretty(&fixed).unwrap())
        .env("SCREENSHOTS", &screenshots)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(180), run)
        .await
        .expect("the browser script finishes within 3 minutes")
        .expect("node runs (it is installed with npm)");
    server.abort();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}");
    assert!(output.status.success(), "the browser script failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("ok: every step passed"), "{stdout}");

    // What the browser did went through the engine: the record is synced and the letter
    // resolved, the other letter is untouched, and the audit log names the operator only.
    let resolved = engine.store().dead_letter(letter).await.unwrap().unwrap();
    assert_eq!(resolved.status, DeadLetterStatus::Resolved);
    assert_eq!(engine.store().dead_letter(other).await.unwrap().unwrap().status, DeadLetterStatus::Open);
    let trace = engine.trace("NEG-1").await.unwrap();
    let systems: Vec<&str> = trace.records[0].identity.links.iter().map(|link| link.system.as_str()).collect();
    assert!(systems.contains(&"shop"), "{systems:?}");
    let audit = engine.store().list_audit(20).await.unwrap();
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .filter(|entry| !entry.action.starts_with("token."))
        .map(|entry| (entry.actor.as_str(), entry.action.as_str()))
        .collect();
    assert_eq!(actions, vec![("token:anna", "dead_letter.retry"), ("token:anna", "dead_letter.edit")], "{audit:?}");
}
