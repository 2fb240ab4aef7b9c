//! The binary with the `http` connector as a source: a REST API served by this test, which
//! throttles (429 with `Retry-After`) and has one record that cannot be converted. The engine
//! waits and retries, the bad record becomes a dead letter, the rest syncs, and the example
//! configurations in `examples/` are valid.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

async fn products(State(requests): State<Arc<AtomicU64>>, Query(params): Query<HashMap<String, String>>) -> Response {
    let n = requests.fetch_add(1, Ordering::SeqCst);
    if n == 1 {
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "slow down").into_response();
    }
    let page: usize = params.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let items: Vec<Value> = (0..25usize)
        .skip((page - 1) * 10)
        .take(10)
        .map(|i| {
            if i == 13 {
                json!({ "id": i, "name": "no sku" })
            } else {
                json!({ "id": i, "sku": format!("R{i}"), "name": format!("Item {i}") })
            }
        })
        .collect();
    axum::Json(Value::Array(items)).into_response()
}

fn erpsync(config: &Path, data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_erpsync"))
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("ERPSYNC_CONFIG")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_rest_api_syncs_with_retries_and_dead_letters() {
    let requests = Arc::new(AtomicU64::new(0));
    let app = Router::new().route("/products", get(products)).with_state(requests.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("shop")).unwrap();
    let config = dir.path().join("erpsync.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[systems.api]
type = "http"
base_url = "http://{address}"
[systems.api.entities.product.read]
path = "/products"
pagination = {{ style = "page", size = 10 }}
to_canonical = "{{ 'code': sku, 'title': name, 'variants': [{{ 'sku': sku }}] }}"

[systems.shop]
type = "files"
path = "shop"
format = "jsonl"

[flows.products]
entity = "product"
source = "api"
target = "shop"
retry = {{ max_attempts = 3, initial = "100ms", max = "2s" }}
"#
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let started = std::time::Instant::now();
    let output = tokio::task::spawn_blocking({
        let (config, data) = (config.clone(), data.clone());
        move || erpsync(&config, &data, &["sync", "products", "--json"])
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["counts"]["created"], 24, "{summary}");
    assert_eq!(summary["counts"]["failed"], 1, "{summary}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(1), "Retry-After: 1 was not waited for");
    assert_eq!(requests.load(Ordering::SeqCst), 4, "3 pages and one throttled request");

    let failures = erpsync(&config, &data, &["failures", "list", "--json"]);
    let failures: Value = serde_json::from_slice(&failures.stdout).unwrap();
    let error = failures[0]["error"].as_str().unwrap();
    assert!(error.contains("/products item 4") && error.contains("sku"), "{error}");
}

#[test]
fn the_example_configurations_are_valid() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let output =
            Command::new(env!("CARGO_BIN_EXE_erpsync")).arg("--config").arg(&path).arg("validate").output().unwrap();
        assert!(output.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&output.stderr));
        checked += 1;
    }
    assert!(checked >= 2, "expected the example configurations in {}", examples.display());
}
