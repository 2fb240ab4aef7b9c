//! The admin API against its own OpenAPI document, checked by schemathesis (from PyPI,
//! installed by the test into a venv under target/): every operation is called with generated
//! valid and invalid input, on a served erpsync with an admin token and some data (runs, a dead
//! letter, a paused flow), and every answer must be no server error, have a status code the
//! document lists for that operation, the content type it gives, and a body that matches the
//! schema. Requests without the token must be refused (`ignored_auth`). Nothing is skipped: a
//! missing Python or an unreachable PyPI fails the test with the reason.

use erpsync_engine::config::Config;
use erpsync_engine::shutdown::Shutdown;
use erpsync_engine::{Engine, RunOptions};
use erpsync_store::{Store, TokenRole};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// Two good rows and one with a negative price (a dead letter holding a readable record).
const CATALOG: &str = "code,title,sku,price,currency\n\
                       GOOD-1,Good one,GOOD-1,10.00,EUR\n\
                       NEG-1,Negative price,NEG-1,-1.00,EUR\n\
                       GOOD-2,Good two,GOOD-2,11.00,EUR\n";

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

[flows.prices]
entity = "product"
source = "erp"
target = "shop"
interval = "1h"

[alerts]
[[alerts.rules]]
name = "any-failure"
kind = "failures"
window = "1h"
"#;

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

/// A venv under target/ with schemathesis from PyPI; its `schemathesis` command.
fn schemathesis() -> PathBuf {
    let venv = workspace_root().join("target/schemathesis-venv");
    let command = venv.join("bin/schemathesis");
    let ready = Command::new(&command).arg("--version").output().is_ok_and(|out| out.status.success());
    if !ready {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv), "python3 -m venv (Python 3 is needed)");
        run(
            Command::new(venv.join("bin/python")).args(["-m", "pip", "install", "--quiet", "schemathesis"]),
            "pip install schemathesis (PyPI must be reachable)",
        );
    }
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_as_its_openapi_document_says() {
    let schemathesis = tokio::task::spawn_blocking(schemathesis).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("erp")).unwrap();
    std::fs::create_dir_all(dir.path().join("shop")).unwrap();
    std::fs::write(dir.path().join("erp/products.csv"), CATALOG).unwrap();
    let config = Config::parse(CONFIG, &dir.path().join("erpsync.toml")).unwrap();
    let store: Arc<dyn Store> =
        Arc::new(erpsync_store::sqlite::SqliteStore::open(&dir.path().join("state.db")).await.unwrap());
    let engine = Arc::new(Engine::new(Arc::new(config), store));
    let admin = engine.create_token("schemathesis-admin", TokenRole::Admin, "test").await.unwrap().secret;
    engine.create_token("grafana", TokenRole::Viewer, "test").await.unwrap();

    // Data for the operations to find: runs with counts, an open dead letter, a paused flow, an
    // alert incident.
    let options = RunOptions { full: false, dry_run: false, trigger: "manual".into() };
    let summary = engine.sync("products", &options, &Shutdown::never(), &|_| {}).await.unwrap();
    assert_eq!(summary.counts.failed, 1, "{summary:?}");
    engine.sync("prices", &options, &Shutdown::never(), &|_| {}).await.unwrap();
    engine.pause_flow("prices", "test", "seeded for schemathesis").await.unwrap();
    erpsync_engine::alerts::Alerter::new(engine.clone()).evaluate(chrono::Utc::now()).await.unwrap();

    let router = erpsync_server::router(engine.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    // Real names and ids, mixed with generated ones, so that the operations reach their logic
    // instead of answering 404 to every random name.
    let filter = erpsync_store::DeadLetterFilter { flow: None, status: None, limit: 10 };
    let letter = engine.store().list_dead_letters(&filter).await.unwrap();
    let letter_id = letter.first().map(|letter| letter.id).expect("the seeded dead letter");
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[dictionaries.flows]
values = ["products", "prices"]
[dictionaries.systems]
values = ["erp", "shop"]
[dictionaries.ids]
values = [{letter_id}, 1, 2]
[dictionaries.keys]
values = ["GOOD-1", "NEG-1", "GOOD-2"]
[dictionaries.tokens]
values = ["grafana"]

[parameters]
"path.flow" = {{ dictionary = "flows", probability = 0.7 }}
"path.system" = {{ dictionary = "systems", probability = 0.7 }}
"path.id" = {{ dictionary = "ids", probability = 0.7 }}
"query.key" = {{ dictionary = "keys", probability = 0.7 }}
"query.flow" = {{ dictionary = "flows", probability = 0.5 }}
"path.name" = {{ dictionary = "tokens", probability = 0.3 }}
"#
        ),
    )
    .unwrap();
    // The report of the last run stays for whoever has to read a failure.
    let report = workspace_root().join("target/schemathesis-report");
    let _ = std::fs::remove_dir_all(&report);
    let output = tokio::task::spawn_blocking({
        let base = base.clone();
        let report = report.clone();
        let work = dir.path().to_path_buf();
        move || {
            Command::new(schemathesis)
                .arg("--no-color")
                .arg("--config-file")
                .arg(&config)
                .arg("run")
                .arg(format!("{base}/api/v1/openapi.json"))
                .args(["--url", &base])
                .args(["--header", &format!("Authorization: Bearer {admin}")])
                .args([
                    "--checks",
                    "not_a_server_error,status_code_conformance,content_type_conformance,\
                     response_schema_conformance,ignored_auth",
                ])
                .args(["--phases", "examples,coverage,fuzzing"])
                .args(["--max-examples", "40", "--seed", "7", "--workers", "1", "--request-timeout", "30"])
                .args(["--output-truncate", "false", "--report", "har"])
                .arg("--report-dir")
                .arg(&report)
                // Its cache (`.schemathesis/`) goes to the temporary folder, not the source tree.
                .current_dir(&work)
                .env("NO_PROXY", "127.0.0.1")
                .env_remove("HTTP_PROXY")
                .env_remove("http_proxy")
                .env("SCHEMATHESIS_HOOKS", "")
                .output()
                .expect("running schemathesis")
        }
    })
    .await
    .unwrap();
    server.abort();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}");
    assert!(
        output.status.success(),
        "schemathesis found problems (requests and answers in {}):\n{stdout}\n{stderr}",
        report.display()
    );
    // It really called every operation of the document.
    let document: serde_json::Value =
        serde_json::to_value(erpsync_server::router_with_openapi(engine.clone()).1).unwrap();
    let operations: usize = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().keys().filter(|key| key.as_str() != "parameters").count())
        .sum();
    assert!(operations >= 20, "{operations} operations in the document");
    assert!(
        stdout.contains(&format!("{operations} selected")) || stdout.contains(&format!("{operations} total")),
        "schemathesis did not test all {operations} operations:\n{stdout}"
    );
}
