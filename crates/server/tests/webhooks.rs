//! The webhook receiver through a real listener: signed deliveries are stored once, duplicates
//! acknowledged, forgeries, unsigned systems and oversized bodies refused, nothing stored for
//! them; health endpoints.

use erpsync_engine::Engine;
use erpsync_engine::config::Config;
use erpsync_store::Store;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::sync::Arc;

struct Server {
    _dir: tempfile::TempDir,
    url: String,
    engine: Arc<Engine>,
}

async fn start() -> Server {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "whsec_test").unwrap();
    let config = format!(
        r#"
[server]
max_body_bytes = 4096

[systems.pim]
type = "http"
base_url = "http://127.0.0.1:9"
webhook = {{ secret = {{ file = "{}" }}, signature_header = "X-Signature", prefix = "sha256=", id_header = "X-Delivery-Id", topic_header = "X-Topic" }}

[systems.typed]
type = "http"
base_url = "http://127.0.0.1:9"
webhook = {{ secret = {{ file = "{}" }}, signature_header = "X-Signature", prefix = "sha256=", id_header = "X-Delivery-Id", topic_header = "X-Topic", topics = {{ "product.updated" = "product" }}, record_id = "data.id" }}

[systems.unsigned]
type = "http"
base_url = "http://127.0.0.1:9"

[systems.folder]
type = "files"
path = "folder"
"#,
        dir.path().join("secret").display(),
        dir.path().join("secret").display()
    );
    let config = Config::parse(&config, &dir.path().join("erpsync.toml")).unwrap();
    let store: Arc<dyn Store> =
        Arc::new(erpsync_store::sqlite::SqliteStore::open(&dir.path().join("state.db")).await.unwrap());
    let engine = Arc::new(Engine::new(Arc::new(config), store));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = erpsync_server::router(engine.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Server { _dir: dir, url, engine }
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec_test").unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post(url: &str, signature: &str, delivery: &str, body: &[u8]) -> (u16, String) {
    post_topic(url, signature, delivery, "product.updated", body).await
}

async fn post_topic(url: &str, signature: &str, delivery: &str, topic: &str, body: &[u8]) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url)
        .header("X-Signature", signature)
        .header("X-Delivery-Id", delivery)
        .header("X-Topic", topic)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn signed_deliveries_are_stored_once_and_forgeries_are_refused() {
    let server = start().await;
    let url = format!("{}/webhooks/pim", server.url);
    let body = br#"{"id": 42, "sku": "A-1"}"#;

    assert_eq!(post(&url, &sign(body), "d-1", body).await.0, 202);
    let (status, text) = post(&url, &sign(body), "d-1", body).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("duplicate"), "{text}");

    let (status, text) = post(&url, &sign(b"something else"), "d-2", body).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("does not match"), "{text}");

    let pending = server.engine.store().pending_inbox(10).await.unwrap();
    assert_eq!(pending.len(), 1, "only the genuine delivery is stored, once");
    assert_eq!(pending[0].delivery_id, "d-1");
    assert_eq!(pending[0].topic, "product.updated");
    assert_eq!(pending[0].body, body.to_vec());
}

#[tokio::test]
async fn systems_without_a_secret_or_without_webhooks_refuse_everything() {
    let server = start().await;
    let body = b"{}";
    let (status, text) = post(&format!("{}/webhooks/unsigned", server.url), &sign(body), "d", body).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("no webhook secret"), "{text}");
    assert_eq!(post(&format!("{}/webhooks/folder", server.url), &sign(body), "d", body).await.0, 404);
    assert_eq!(post(&format!("{}/webhooks/nowhere", server.url), &sign(body), "d", body).await.0, 404);
    assert!(server.engine.store().pending_inbox(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_anything_else() {
    let server = start().await;
    let body = vec![b'x'; 5000];
    let (status, _) = post(&format!("{}/webhooks/pim", server.url), &sign(&body), "big", &body).await;
    assert_eq!(status, 413);
    assert!(server.engine.store().pending_inbox(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn health_and_readiness() {
    let server = start().await;
    let client = reqwest::Client::new();
    assert_eq!(client.get(format!("{}/healthz", server.url)).send().await.unwrap().status().as_u16(), 200);
    let ready = client.get(format!("{}/readyz", server.url)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    assert!(ready.text().await.unwrap().contains("schema version"));
}

#[tokio::test]
async fn signed_deliveries_that_cannot_be_read_are_refused_and_not_stored() {
    let server = start().await;
    let url = format!("{}/webhooks/typed", server.url);
    let cases: [(&str, &[u8], &str); 3] = [
        ("product.updated", b"{not json", "not JSON"),
        ("coupon.updated", br#"{"data": {"id": 1}}"#, "unknown topic \"coupon.updated\""),
        ("product.updated", br#"{"data": {}}"#, "no record id at \"data.id\""),
    ];
    for (n, (topic, body, why)) in cases.into_iter().enumerate() {
        let (status, text) = post_topic(&url, &sign(body), &format!("bad-{n}"), topic, body).await;
        assert_eq!(status, 400, "{topic}: {text}");
        let message: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(message["message"].as_str().unwrap().contains(why), "{text}");
    }
    assert!(server.engine.store().pending_inbox(10).await.unwrap().is_empty(), "nothing stored");
    let body = br#"{"data": {"id": 7}}"#;
    assert_eq!(post_topic(&url, &sign(body), "good", "product.updated", body).await.0, 202);
    assert_eq!(server.engine.store().pending_inbox(10).await.unwrap().len(), 1);
}
