//! Inbound WooCommerce webhooks and subscriptions.
//!
//! A delivery is signed in `X-WC-Webhook-Signature`: base64 of HMAC-SHA256 over the raw body,
//! keyed by the webhook's secret. `X-WC-Webhook-Topic` names the topic (`order.updated`).
//! WooCommerce's `X-WC-Webhook-Delivery-ID` is a hash of the webhook id and the current second,
//! so two different deliveries of one webhook within one second share it: the delivery id
//! given to the engine is that id plus a digest of the body, which keeps exact duplicates
//! together and different events apart.
//!
//! When a webhook is created WooCommerce POSTs a ping, `webhook_id=<id>` form-encoded and
//! unsigned. It carries no data; it is accepted (so that the shop records a working URL) only
//! when a webhook secret is configured and the body is exactly that form, as the delivery
//! `woocommerce-ping-<id>`.

use crate::woocommerce::WooConnector;
use crate::{ConnectorError, ErrorKind, Subscription, VerifiedDelivery, WebhookReceiver, WebhookSubscriptions};
use async_trait::async_trait;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use erpsync_model::EntityKind;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

impl WebhookReceiver for WooConnector {
    fn verify(
        &self,
        headers: &[(String, String)],
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<VerifiedDelivery, ConnectorError> {
        let context = format!("verifying a webhook for woocommerce {:?}", self.system);
        let reject = |message: &str| ConnectorError::new(ErrorKind::Auth, &context, message);
        let Some(secret) = &self.webhook_secret else {
            return Err(reject("no webhook_secret is configured for this system, so every delivery is rejected"));
        };
        let header =
            |name: &str| headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        let Some(signature) = header("x-wc-webhook-signature") else {
            if let Some(id) = ping_webhook_id(body) {
                return Ok(VerifiedDelivery {
                    delivery_id: format!("woocommerce-ping-{id}"),
                    topic: Some("ping".into()),
                    timestamp: None,
                });
            }
            return Err(reject("no X-WC-Webhook-Signature header"));
        };
        let given = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| reject("X-WC-Webhook-Signature is not base64"))?;
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(body);
        // `verify_slice` compares in constant time.
        mac.verify_slice(&given).map_err(|_| reject("the signature does not match the body"))?;
        let delivery =
            header("x-wc-webhook-delivery-id").ok_or_else(|| reject("no X-WC-Webhook-Delivery-ID header"))?;
        // WooCommerce signs no time of its own; the record's modification time in the signed
        // body bounds replays. A body without one (a deletion names only the id) has no window.
        let modified = modified_at(body);
        if let Some(at) = modified {
            let age = (now - at).abs().to_std().unwrap_or(std::time::Duration::MAX);
            let tolerance = self.settings.webhook_tolerance;
            if age > tolerance {
                return Err(reject(&format!(
                    "the record in the delivery was modified at {} ({}s from now), beyond the webhook_tolerance of {}s: refused as a replay",
                    at.format("%Y-%m-%dT%H:%M:%SZ"),
                    age.as_secs(),
                    tolerance.as_secs()
                )));
            }
        }
        let digest = hex::encode(&Sha256::digest(body)[..8]);
        Ok(VerifiedDelivery {
            delivery_id: format!("{delivery}:{digest}"),
            topic: header("x-wc-webhook-topic").map(str::to_string),
            timestamp: modified,
        })
    }
}

/// The `date_modified_gmt` of the record in a delivery body (WooCommerce's format,
/// `2026-11-26T10:00:00`, UTC without an offset), when it has one.
fn modified_at(body: &[u8]) -> Option<DateTime<Utc>> {
    #[derive(serde::Deserialize)]
    struct Modified {
        date_modified_gmt: Option<String>,
    }
    let text = serde_json::from_slice::<Modified>(body).ok()?.date_modified_gmt?;
    let naive = chrono::NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%dT%H:%M:%S").ok()?;
    Some(naive.and_utc())
}

/// `Some(id)` when the body is exactly WooCommerce's creation ping.
fn ping_webhook_id(body: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(body).ok()?;
    text.trim().strip_prefix("webhook_id=")?.parse().ok()
}

#[async_trait]
impl WebhookSubscriptions for WooConnector {
    fn topics(&self, entity: EntityKind) -> Vec<String> {
        let topics: &[&str] = match entity {
            EntityKind::Product => &["product.created", "product.updated", "product.deleted"],
            EntityKind::Customer => &["customer.created", "customer.updated", "customer.deleted"],
            EntityKind::Order => &["order.created", "order.updated", "order.deleted"],
            // Refunds and status changes update their order.
            EntityKind::Refund | EntityKind::OrderStatus => &["order.updated"],
            _ => &[],
        };
        topics.iter().map(|t| t.to_string()).collect()
    }

    async fn list(&self) -> Result<Vec<Subscription>, ConnectorError> {
        let context = format!("listing webhooks of woocommerce {:?}", self.system);
        let hooks = self.list_all("/webhooks", &[], &context).await?;
        Ok(hooks.iter().map(subscription).collect())
    }

    async fn register(&self, topic: &str, url: &str) -> Result<Subscription, ConnectorError> {
        let context = format!("registering webhook {topic} of woocommerce {:?}", self.system);
        let Some(secret) = &self.webhook_secret else {
            return Err(ConnectorError::new(
                ErrorKind::InvalidRequest,
                &context,
                "set webhook_secret first: WooCommerce signs deliveries with it and erpsync verifies them with it",
            ));
        };
        let hooks = self.list_all("/webhooks", &[], &context).await?;
        let same = |h: &&Value| {
            h.get("topic").and_then(Value::as_str) == Some(topic)
                && h.get("delivery_url").and_then(Value::as_str) == Some(url)
        };
        if let Some(existing) = hooks.iter().find(same) {
            let id = existing.get("id").and_then(Value::as_u64).unwrap_or(0);
            if existing.get("status").and_then(Value::as_str) != Some("active") {
                // Disabled after failed deliveries, or paused: turn it back on, with our secret.
                let body = json!({"status": "active", "secret": secret.expose()});
                self.request(Method::PUT, &format!("/webhooks/{id}"), &[], Some(&body), &context).await?;
            }
            return Ok(subscription(existing));
        }
        let body = json!({
            "name": format!("erpsync {topic}"),
            "topic": topic,
            "delivery_url": url,
            "secret": secret.expose(),
            "status": "active",
        });
        let created = self.request(Method::POST, "/webhooks", &[], Some(&body), &context).await?;
        Ok(subscription(&created.body))
    }

    async fn remove(&self, id: &str) -> Result<(), ConnectorError> {
        let context = format!("removing webhook {id} of woocommerce {:?}", self.system);
        let id: u64 = id.parse().map_err(|_| {
            ConnectorError::new(ErrorKind::InvalidRequest, &context, "a WooCommerce webhook id is a number")
        })?;
        self.request(Method::DELETE, &format!("/webhooks/{id}"), &[("force", "true".into())], None, &context).await?;
        Ok(())
    }
}

fn subscription(hook: &Value) -> Subscription {
    Subscription {
        id: hook.get("id").and_then(Value::as_u64).unwrap_or(0).to_string(),
        topic: hook.get("topic").and_then(Value::as_str).unwrap_or("").to_string(),
        url: hook.get("delivery_url").and_then(Value::as_str).unwrap_or("").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_ping_form_is_a_ping() {
        assert_eq!(ping_webhook_id(b"webhook_id=12"), Some(12));
        assert_eq!(ping_webhook_id(b"webhook_id=12&x=1"), None);
        assert_eq!(ping_webhook_id(b"{\"id\":12}"), None);
    }
}
