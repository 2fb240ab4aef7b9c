//! `erpsync serve` end to end with webhooks: a signed delivery to `/webhooks/<system>` is stored,
//! and triggers a run of the flows reading from that system, which fetches what changed.

mod common;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn signature(body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"hook-secret").unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn shop_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default().lines().filter(|l| !l.is_empty()).count()
        })
        .sum()
}

fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_triggers_a_run_that_fetches_the_change() {
    let products: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(
        (0..3).map(|i| json!({ "id": i, "sku": format!("W{i}"), "name": format!("Item {i}") })).collect(),
    ));
    let app = Router::new()
        .route(
            "/products",
            get(|State(items): State<Arc<Mutex<Vec<Value>>>>| async move {
                axum::Json(Value::Array(items.lock().unwrap().clone()))
            }),
        )
        .with_state(products.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("shop")).unwrap();
    std::fs::write(dir.path().join("hook-secret"), "hook-secret").unwrap();
    std::fs::write(
        dir.path().join("erpsync.toml"),
        format!(
            r#"
[server]
listen = "{address}"

[systems.api]
type = "http"
base_url = "http://{api}"
webhook = {{ secret = {{ file = "hook-secret" }}, signature_header = "X-Signature", id_header = "X-Delivery-Id" }}
[systems.api.entities.product.read]
path = "/products"
pagination = {{ style = "none" }}
to_canonical = "{{ 'code': sku, 'title': name, 'variants': [{{ 'sku': sku }}] }}"

[systems.shop]
type = "files"
path = "shop"
format = "jsonl"

[flows.products]
entity = "product"
source = "api"
target = "shop"
"#
        ),
    )
    .unwrap();
    let serve = Serve(
        Command::new(env!("CARGO_BIN_EXE_erpsync"))
            .current_dir(dir.path())
            .args(["--config", "erpsync.toml", "--data-dir", "data", "serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let shop = dir.path().join("shop");
    tokio::task::spawn_blocking(move || {
        wait_for("the server", || {
            common::raw_http(&address, "GET", "/healthz", &[], b"").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        });
        // Nothing is scheduled: without a webhook nothing syncs.
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(shop_count(&shop), 0);

        let body = br#"{"event": "product.updated", "id": 1}"#;
        let post = |delivery: &str| {
            common::raw_http(
                &address,
                "POST",
                "/webhooks/api",
                &[("X-Signature", signature(body)), ("X-Delivery-Id", delivery.to_string())],
                body,
            )
            .unwrap()
        };
        let forged = common::raw_http(
            &address,
            "POST",
            "/webhooks/api",
            &[("X-Signature", "00".repeat(32)), ("X-Delivery-Id", "f".into())],
            body,
        )
        .unwrap();
        assert!(forged.starts_with("HTTP/1.1 401"), "{forged}");
        let response = post("d-1");
        assert!(response.starts_with("HTTP/1.1 202"), "{response}");
        wait_for("the first webhook-triggered run", || shop_count(&shop) == 3);

        products.lock().unwrap().push(json!({ "id": 9, "sku": "W9", "name": "New item" }));
        assert!(post("d-2").starts_with("HTTP/1.1 202"));
        wait_for("the second webhook-triggered run", || shop_count(&shop) == 4);
        drop(serve);
    })
    .await
    .unwrap();
}

/// With topics configured, a delivery names its record: the run fetches just that record by id
/// (no list read), and a burst of deliveries about the same record syncs its latest state once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_naming_a_record_fetches_only_that_record() {
    #[derive(Default)]
    struct Api {
        items: Vec<Value>,
        list_calls: u32,
        item_calls: u32,
    }
    let api_state = Arc::new(Mutex::new(Api {
        items: (0..5).map(|i| json!({ "id": i, "sku": format!("R{i}"), "name": format!("Item {i}") })).collect(),
        ..Api::default()
    }));
    let app = Router::new()
        .route(
            "/products",
            get(|State(api): State<Arc<Mutex<Api>>>| async move {
                let mut api = api.lock().unwrap();
                api.list_calls += 1;
                axum::Json(Value::Array(api.items.clone()))
            }),
        )
        .route(
            "/products/{id}",
            get(|State(api): State<Arc<Mutex<Api>>>, axum::extract::Path(id): axum::extract::Path<u64>| async move {
                let mut api = api.lock().unwrap();
                api.item_calls += 1;
                match api.items.iter().find(|item| item["id"] == id) {
                    Some(item) => Ok(axum::Json(item.clone())),
                    None => Err(axum::http::StatusCode::NOT_FOUND),
                }
            }),
        )
        .with_state(api_state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("shop")).unwrap();
    std::fs::write(dir.path().join("hook-secret"), "hook-secret").unwrap();
    std::fs::write(
        dir.path().join("erpsync.toml"),
        format!(
            r#"
[server]
listen = "{address}"

[systems.api]
type = "http"
base_url = "http://{api}"
webhook = {{ secret = {{ file = "hook-secret" }}, signature_header = "X-Signature", id_header = "X-Delivery-Id", topic_header = "X-Topic", topics = {{ "product.updated" = "product" }} }}
[systems.api.entities.product.read]
path = "/products"
item_path = "/products/{{id}}"
pagination = {{ style = "none" }}
to_canonical = "{{ 'code': sku, 'title': name, 'variants': [{{ 'sku': sku }}] }}"

[systems.shop]
type = "files"
path = "shop"
format = "jsonl"

[flows.products]
entity = "product"
source = "api"
target = "shop"
"#
        ),
    )
    .unwrap();
    let serve = Serve(
        Command::new(env!("CARGO_BIN_EXE_erpsync"))
            .current_dir(dir.path())
            .args(["--config", "erpsync.toml", "--data-dir", "data", "serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let shop = dir.path().join("shop");
    tokio::task::spawn_blocking(move || {
        wait_for("the server", || {
            common::raw_http(&address, "GET", "/healthz", &[], b"").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        });
        let post = |delivery: &str, id: u64| {
            let body = format!(r#"{{"id": {id}}}"#).into_bytes();
            common::raw_http(
                &address,
                "POST",
                "/webhooks/api",
                &[
                    ("X-Signature", signature(&body)),
                    ("X-Delivery-Id", delivery.to_string()),
                    ("X-Topic", "product.updated".to_string()),
                ],
                &body,
            )
            .unwrap()
        };
        // Three deliveries about record 3 (one duplicate), one about record 1.
        for (delivery, id) in [("e-1", 3), ("e-2", 3), ("e-2", 3), ("e-3", 1)] {
            let response = post(delivery, id);
            assert!(response.starts_with("HTTP/1.1 202") || response.starts_with("HTTP/1.1 200"), "{response}");
        }
        wait_for("the records named by the events", || shop_count(&shop) == 2);
        std::thread::sleep(Duration::from_millis(800));
        let state = api_state.lock().unwrap();
        assert_eq!(state.list_calls, 0, "no list read: only the named records were fetched");
        assert!((2..=3).contains(&state.item_calls), "records 1 and 3 fetched (3 maybe twice): {}", state.item_calls);
        drop(state);
        assert_eq!(shop_count(&shop), 2, "each record written once");
        drop(serve);
    })
    .await
    .unwrap();
}
