//! The REST API the `bench-http` benchmark syncs from and to, served in the xtask process so
//! that its memory is not counted against erpsync: a catalog of products read 100 per page,
//! and a WooCommerce-style batch endpoint taking 100 records per request.

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Counters {
    pub read_requests: AtomicU64,
    pub write_requests: AtomicU64,
    pub written: AtomicU64,
}

struct Api {
    products: usize,
    counters: Arc<Counters>,
}

/// Starts the API on 127.0.0.1 in a background thread; returns its base URL and counters.
pub fn start(products: usize) -> (String, Arc<Counters>) {
    let counters = Arc::new(Counters {
        read_requests: AtomicU64::new(0),
        write_requests: AtomicU64::new(0),
        written: AtomicU64::new(0),
    });
    let api = Arc::new(Api { products, counters: counters.clone() });
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        runtime.block_on(async move {
            let app = Router::new()
                .route("/api/products", get(list))
                .route("/shop/products/batch", post(batch))
                .with_state(api);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            sender.send(listener.local_addr().expect("address")).expect("send");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    let address = receiver.recv().expect("the API thread starts");
    (format!("http://{address}"), counters)
}

/// Products are generated on the fly from their index: the catalog costs no memory here.
async fn list(State(api): State<Arc<Api>>, Query(params): Query<HashMap<String, String>>) -> Response {
    api.counters.read_requests.fetch_add(1, Ordering::Relaxed);
    let page: usize = params.get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
    let size: usize = params.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(100).min(100);
    let start = (page - 1) * size;
    let end = (start + size).min(api.products);
    let items: Vec<Value> = (start..end)
        .map(|index| {
            let variants: Vec<Value> = ["S", "M", "L"]
                .iter()
                .enumerate()
                .map(|(n, size)| {
                    json!({
                        "sku": format!("P{index:07}-{size}"),
                        "ean": format!("40{index:09}{n}"),
                        "size": size,
                        "price": format!("{}.{:02}", 10 + index % 90, index % 100),
                    })
                })
                .collect();
            json!({
                "id": index + 1,
                "sku": format!("P{index:07}"),
                "name": format!("Product {index} in cotton"),
                "brand": "Acme",
                "variants": variants,
                "modified": "2026-11-01T12:00:00Z",
            })
        })
        .collect();
    axum::Json(Value::Array(items)).into_response()
}

async fn batch(State(api): State<Arc<Api>>, axum::Json(body): axum::Json<Value>) -> Response {
    api.counters.write_requests.fetch_add(1, Ordering::Relaxed);
    let mut created = Vec::new();
    for item in body["create"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let id = api.counters.written.fetch_add(1, Ordering::Relaxed) + 1;
        created.push(json!({ "id": id, "sku": item["sku"] }));
    }
    let mut updated = Vec::new();
    for item in body["update"].as_array().map(Vec::as_slice).unwrap_or_default() {
        api.counters.written.fetch_add(1, Ordering::Relaxed);
        updated.push(json!({ "id": item["id"], "sku": item["sku"] }));
    }
    axum::Json(json!({ "create": created, "update": updated })).into_response()
}
