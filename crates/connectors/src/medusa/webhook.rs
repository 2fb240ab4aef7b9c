//! Inbound Medusa events, forwarded by a subscriber file.
//!
//! Medusa 2 sends no webhooks: it has an in-process event bus. erpsync ships a subscriber
//! (`tools/medusa/src/subscribers/webhook.js`, to copy into the shop's `src/subscribers/`)
//! that POSTs each event as JSON `{"id", "type", "occurred_at", "data"}` to
//! `$ERPSYNC_WEBHOOK_URL`, signed with the hex HMAC-SHA256 of the raw body keyed by
//! `$ERPSYNC_WEBHOOK_SECRET` in `x-signature-sha256`, with the event name in `x-medusa-topic`
//! and the delivery id in `x-medusa-delivery-id`.
//!
//! Medusa's payloads carry ids only (`{"id": "prod_…"}`, `{"order_id", "fulfillment_id"}`), so
//! [`WebhookReceiver::decode`] names the records and the engine fetches their current state.
//! Events about variants and inventory levels name ids that are not the source ids of any
//! entity read here; they decode to "unknown", and the flows pull what changed instead.
//! The subscriber cannot be registered through the API, so there is no
//! `WebhookSubscriptions`: installing the file is the subscription.

use crate::medusa::MedusaConnector;
use crate::{ConnectorError, ErrorKind, EventRef, VerifiedDelivery, WebhookReceiver};
use chrono::{DateTime, Utc};
use erpsync_model::EntityKind;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How far a delivery's `occurred_at` may lie from now before it is refused as a replay.
const REPLAY_WINDOW_SECONDS: i64 = 24 * 3600;

impl WebhookReceiver for MedusaConnector {
    fn verify(
        &self,
        headers: &[(String, String)],
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<VerifiedDelivery, ConnectorError> {
        let context = format!("verifying a webhook for medusa {:?}", self.system);
        let reject = |message: &str| ConnectorError::new(ErrorKind::Auth, &context, message);
        let Some(secret) = &self.webhook_secret else {
            return Err(reject("no webhook_secret is configured for this system, so every delivery is rejected"));
        };
        let header =
            |name: &str| headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        let signature = header("x-signature-sha256").ok_or_else(|| reject("no x-signature-sha256 header"))?;
        let given = hex::decode(signature.trim()).map_err(|_| reject("x-signature-sha256 is not hex"))?;
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(body);
        // `verify_slice` compares in constant time.
        mac.verify_slice(&given).map_err(|_| reject("the signature does not match the body"))?;

        let envelope: Option<Value> = serde_json::from_slice(body).ok();
        let field = |key: &str| envelope.as_ref().and_then(|e| e.get(key)).and_then(Value::as_str);
        let timestamp =
            field("occurred_at").and_then(|at| DateTime::parse_from_rfc3339(at).ok()).map(|at| at.with_timezone(&Utc));
        if let Some(at) = timestamp
            && (now - at).num_seconds().abs() > REPLAY_WINDOW_SECONDS
        {
            return Err(reject("the delivery's occurred_at is more than a day away from now (a replay?)"));
        }
        // The subscriber's delivery id is unique per event; without one, a digest of the body
        // keeps exact duplicates together.
        let delivery_id = header("x-medusa-delivery-id")
            .or(field("id"))
            .map(str::to_string)
            .unwrap_or_else(|| format!("medusa-{}", hex::encode(&Sha256::digest(body)[..12])));
        Ok(VerifiedDelivery {
            delivery_id,
            topic: header("x-medusa-topic").or(field("type")).map(str::to_string),
            timestamp,
        })
    }

    fn decode(&self, topic: &str, body: &[u8]) -> Result<Option<Vec<EventRef>>, ConnectorError> {
        decode_event(topic, body).map_err(|message| {
            ConnectorError::new(
                ErrorKind::InvalidRequest,
                format!("decoding a {topic} event of medusa {:?}", self.system),
                message,
            )
        })
    }
}

/// The records an event names. `Ok(None)` for events whose ids are not source ids here.
pub fn decode_event(topic: &str, body: &[u8]) -> Result<Option<Vec<EventRef>>, String> {
    let envelope: Value = serde_json::from_slice(body).map_err(|error| format!("the body is not JSON: {error}"))?;
    let topic = if topic.is_empty() { envelope.get("type").and_then(Value::as_str).unwrap_or("") } else { topic };
    let data = envelope.get("data").cloned().unwrap_or(Value::Null);
    let id_of = |key: &str| -> Result<String, String> {
        // Medusa sends some events with an array of payloads; the subscriber forwards them as
        // they are, so both shapes are read.
        data.get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("the {topic} event has no data.{key}"))
    };
    let entity = match topic {
        "product.created" | "product.updated" | "product.deleted" => Some((EntityKind::Product, "id")),
        "customer.created" | "customer.updated" | "customer.deleted" => Some((EntityKind::Customer, "id")),
        "order.placed" | "order.updated" | "order.canceled" | "order.completed" | "order.archived" => {
            Some((EntityKind::Order, "id"))
        }
        "order.fulfillment_created" | "order.fulfillment_canceled" | "order.return_requested" => {
            Some((EntityKind::Order, "order_id"))
        }
        _ => None,
    };
    let Some((entity, key)) = entity else {
        return Ok(None);
    };
    if let Some(items) = data.as_array() {
        let mut refs = Vec::new();
        for item in items {
            let id = item.get(key).and_then(Value::as_str).ok_or_else(|| format!("the {topic} event has no {key}"))?;
            refs.push(EventRef { entity, id: id.to_string() });
        }
        return Ok(Some(refs));
    }
    Ok(Some(vec![EventRef { entity, id: id_of(key)? }]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(topic: &str, body: &str, expected: Option<Vec<(EntityKind, &str)>>) {
        let refs = decode_event(topic, body.as_bytes()).unwrap();
        let expected =
            expected.map(|refs| refs.into_iter().map(|(entity, id)| EventRef { entity, id: id.to_string() }).collect());
        assert_eq!(refs, expected, "{topic}");
    }

    #[test]
    fn events_name_their_records() {
        check("product.updated", r#"{"data":{"id":"prod_1"}}"#, Some(vec![(EntityKind::Product, "prod_1")]));
        check("order.placed", r#"{"data":{"id":"order_1"}}"#, Some(vec![(EntityKind::Order, "order_1")]));
        check(
            "order.fulfillment_created",
            r#"{"data":{"order_id":"order_1","fulfillment_id":"ful_1"}}"#,
            Some(vec![(EntityKind::Order, "order_1")]),
        );
        check(
            "customer.created",
            r#"{"data":[{"id":"cus_1"},{"id":"cus_2"}]}"#,
            Some(vec![(EntityKind::Customer, "cus_1"), (EntityKind::Customer, "cus_2")]),
        );
        check("inventory-level.updated", r#"{"data":{"id":"ilev_1"}}"#, None);
        check("", r#"{"type":"product.created","data":{"id":"prod_2"}}"#, Some(vec![(EntityKind::Product, "prod_2")]));
        assert!(decode_event("order.placed", br#"{"data":{}}"#).is_err());
        assert!(decode_event("order.placed", b"nope").is_err());
    }
}
