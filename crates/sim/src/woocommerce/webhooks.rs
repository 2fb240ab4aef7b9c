//! Webhook deliveries as WooCommerce sends them: an HTTP POST of the resource's REST JSON with
//! the `X-WC-Webhook-*` headers, signed with base64 HMAC-SHA256 of the raw body keyed by the
//! webhook's secret, never retried. A response from 200 to 302 is a success and resets the
//! failure count; any other outcome is a failure, and a failure when the count is already above
//! 5 disables the webhook (WooCommerce's `failed_delivery`: so the seventh consecutive failure
//! disables it). The delivery id is a hash of the webhook id and the current second, as in
//! WooCommerce: two deliveries of one webhook within the same second share it.
//!
//! On creation with status `active`, a ping is POSTed: a form-encoded `webhook_id=<id>` body
//! without signature headers.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::server::Shared;

/// The value of `X-WC-Webhook-Signature`: base64 of HMAC-SHA256 over the raw body.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// WooCommerce's delivery id: a hash of the webhook id and the Unix second.
pub fn delivery_id(webhook_id: u64, unix_seconds: i64) -> String {
    let digest = Sha256::digest(format!("{webhook_id}{unix_seconds}").as_bytes());
    hex::encode(&digest[..16])
}

/// One delivery attempt, for tests and benchmarks.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryRecord {
    pub webhook_id: u64,
    pub delivery_id: String,
    pub topic: String,
    pub url: String,
    pub ping: bool,
    /// The receiver's status code, when it answered.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub body: String,
}

/// What to send.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub webhook_id: u64,
    pub topic: String,
    pub url: String,
    pub secret: String,
    pub body: Vec<u8>,
    pub delivery_id: String,
    pub source: String,
    pub bad_signature: bool,
    pub initial_delay: Duration,
}

/// Sends one delivery, records it, and counts a failure against the webhook.
pub(crate) async fn deliver(shared: Arc<Shared>, delivery: Delivery) {
    if !delivery.initial_delay.is_zero() {
        tokio::time::sleep(delivery.initial_delay).await;
    }
    let (resource, event) = delivery.topic.split_once('.').unwrap_or((delivery.topic.as_str(), ""));
    let signature = if delivery.bad_signature {
        sign("not-the-secret", &delivery.body)
    } else {
        sign(&delivery.secret, &delivery.body)
    };
    let headers = vec![
        ("Content-Type".to_string(), "application/json".to_string()),
        ("User-Agent".to_string(), "WooCommerce/9.0.0 Hookshot (WordPress/6.5)".to_string()),
        ("X-WC-Webhook-Source".to_string(), delivery.source.clone()),
        ("X-WC-Webhook-Topic".to_string(), delivery.topic.clone()),
        ("X-WC-Webhook-Resource".to_string(), resource.to_string()),
        ("X-WC-Webhook-Event".to_string(), event.to_string()),
        ("X-WC-Webhook-Signature".to_string(), signature),
        ("X-WC-Webhook-ID".to_string(), delivery.webhook_id.to_string()),
        ("X-WC-Webhook-Delivery-ID".to_string(), delivery.delivery_id.clone()),
    ];
    let timeout = shared.config.webhook_timeout;
    let result = post(&delivery.url, &headers, &delivery.body, timeout, &shared).await;
    let (status, error) = match result {
        Ok(status) => (Some(status), None),
        Err(error) => (None, Some(error)),
    };
    let success = status.is_some_and(|s| (200..=302).contains(&s));
    {
        let mut store = shared.lock_store();
        if let Some(webhook) = store.webhooks.get_mut(&delivery.webhook_id) {
            if success {
                webhook.failure_count = 0;
            } else if webhook.failure_count > shared.config.max_delivery_failures {
                webhook.status = "disabled".into();
            } else {
                webhook.failure_count += 1;
            }
        }
    }
    shared.record_delivery(DeliveryRecord {
        webhook_id: delivery.webhook_id,
        delivery_id: delivery.delivery_id,
        topic: delivery.topic,
        url: delivery.url,
        ping: false,
        status,
        error,
        body: String::from_utf8_lossy(&delivery.body).into_owned(),
    });
}

/// The creation ping: `webhook_id=<id>`, form-encoded, unsigned. Its outcome is only logged.
pub(crate) async fn ping(shared: Arc<Shared>, webhook_id: u64, url: String) {
    let body = format!("webhook_id={webhook_id}").into_bytes();
    let headers = vec![
        ("Content-Type".to_string(), "application/x-www-form-urlencoded".to_string()),
        ("User-Agent".to_string(), "WooCommerce/9.0.0 Hookshot (WordPress/6.5)".to_string()),
    ];
    let result = post(&url, &headers, &body, shared.config.webhook_timeout, &shared).await;
    let (status, error) = match result {
        Ok(status) => (Some(status), None),
        Err(error) => (None, Some(error)),
    };
    shared.record_delivery(DeliveryRecord {
        webhook_id,
        delivery_id: String::new(),
        topic: String::new(),
        url,
        ping: true,
        status,
        error,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
}

/// A minimal HTTP/1.1 POST over plain TCP (delivery URLs in tests are `http://127.0.0.1`).
async fn post(
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout: Duration,
    shared: &Shared,
) -> Result<u16, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("only http:// delivery URLs are simulated: {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(index) => (&rest[..index], &rest[index..]),
        None => (rest, "/"),
    };
    let address = if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
    let mut shutdown = shared.shutdown.subscribe();
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(&address).await.map_err(|e| format!("connect: {e}"))?;
        let mut request = format!("POST {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        stream.write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
        stream.write_all(body).await.map_err(|e| format!("write: {e}"))?;
        let mut response = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let read = stream.read(&mut buffer).await.map_err(|e| format!("read: {e}"))?;
            if read == 0 {
                break;
            }
            response.extend_from_slice(&buffer[..read]);
            if response.windows(4).any(|w| w == b"\r\n\r\n") || response.len() > 64 * 1024 {
                break;
            }
        }
        let text = String::from_utf8_lossy(&response);
        let status_line = text.lines().next().unwrap_or("");
        status_line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| format!("no HTTP status line in the response: {status_line:?}"))
    };
    tokio::select! {
        result = tokio::time::timeout(timeout, exchange) => result.unwrap_or_else(|_| Err("timed out".into())),
        _ = shutdown.changed() => Err("simulator stopped".into()),
    }
}

/// The body of a delivery for `topic`: the resource's REST JSON, or `{id}` for deletions.
pub fn payload_for(topic: &str, id: u64, rendered: Option<Json>) -> Json {
    if topic.ends_with(".deleted") {
        return serde_json::json!({"id": id});
    }
    rendered.unwrap_or_else(|| serde_json::json!({"id": id}))
}
