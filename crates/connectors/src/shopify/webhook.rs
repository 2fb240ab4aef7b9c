//! Shopify webhooks: verification of deliveries and management of subscriptions.
//!
//! A delivery carries `X-Shopify-Hmac-Sha256`, the base64 HMAC-SHA256 of the raw body keyed
//! with the app's client secret; `X-Shopify-Webhook-Id` identifies the delivery (duplicates
//! share it), `X-Shopify-Topic` names the event and `X-Shopify-Triggered-At` says when it was
//! triggered. Subscriptions are managed with `webhookSubscriptionCreate`,
//! `webhookSubscriptions` and `webhookSubscriptionDelete`.

use crate::shopify::ShopifyConnector;
use crate::shopify::map::{describe_user_errors, nodes, text};
use crate::{
    ConnectorError, ErrorKind, EventRef, SourceRecord, Subscription, VerifiedDelivery, WebhookReceiver,
    WebhookSubscriptions,
};
use async_trait::async_trait;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use erpsync_model::{EntityKind, Record};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::time::Duration;

/// The `WebhookSubscriptionTopic` values that signal a change of `entity`.
pub fn topics_for(entity: EntityKind) -> &'static [&'static str] {
    match entity {
        EntityKind::Product => &["PRODUCTS_CREATE", "PRODUCTS_UPDATE", "PRODUCTS_DELETE"],
        EntityKind::StockLevel => &["INVENTORY_LEVELS_UPDATE"],
        EntityKind::Customer => &["CUSTOMERS_CREATE", "CUSTOMERS_UPDATE"],
        EntityKind::Order => &["ORDERS_CREATE", "ORDERS_UPDATED"],
        EntityKind::OrderStatus => &["ORDERS_CANCELLED", "ORDERS_PAID", "ORDERS_FULFILLED", "ORDERS_UPDATED"],
        EntityKind::Refund => &["REFUNDS_CREATE"],
        EntityKind::Shipment => &["FULFILLMENTS_CREATE", "FULFILLMENTS_UPDATE"],
        EntityKind::PriceList | EntityKind::Document => &[],
    }
}

/// Checks one delivery against `secret`. Pure, for tests and the receiver.
pub fn verify_delivery(
    secret: &[u8],
    headers: &[(String, String)],
    body: &[u8],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<VerifiedDelivery, ConnectorError> {
    let context = "verifying a shopify webhook";
    let reject = |message: String| ConnectorError::new(ErrorKind::Auth, context, message);
    let header =
        |name: &str| headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.trim());
    let signature = header("x-shopify-hmac-sha256").ok_or_else(|| reject("no X-Shopify-Hmac-Sha256 header".into()))?;
    let given = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .map_err(|_| reject("X-Shopify-Hmac-Sha256 is not base64".into()))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&given).map_err(|_| reject("the signature does not match the body".into()))?;
    let delivery_id = header("x-shopify-webhook-id")
        .or_else(|| header("x-shopify-event-id"))
        .filter(|id| !id.is_empty())
        .ok_or_else(|| reject("no X-Shopify-Webhook-Id header".into()))?;
    let timestamp = match header("x-shopify-triggered-at") {
        Some(text) => Some(
            DateTime::parse_from_rfc3339(text)
                .map_err(|_| reject(format!("X-Shopify-Triggered-At {text:?} is not an RFC 3339 time")))?
                .with_timezone(&Utc),
        ),
        None => None,
    };
    if let Some(at) = timestamp {
        // Shopify retries for hours; the tolerance bounds replays of old deliveries.
        let age = (now - at).to_std().unwrap_or_default();
        if age > tolerance {
            return Err(reject(format!(
                "the delivery was triggered {}s ago, more than the tolerance of {}s",
                age.as_secs(),
                tolerance.as_secs()
            )));
        }
    }
    Ok(VerifiedDelivery {
        delivery_id: delivery_id.to_string(),
        topic: header("x-shopify-topic").map(str::to_string),
        timestamp,
    })
}

/// What a delivery of a topic is about, by the topic's resource.
enum TopicKind {
    /// The body is an order: the order and its status changed.
    Order,
    /// `orders/edited`: the order's id is `order_edit.order_id`.
    OrderEdit,
    Product,
    Customer,
    /// The body is a refund (`order_id` names its order).
    Refund,
    /// Stock: the body names an inventory item and a location, not the variant that erpsync's
    /// stock ids are made of, so the flows pull.
    Stock,
    /// Nothing erpsync reads changed (fulfillments are written by erpsync, not read; bulk
    /// operations, app and shop events).
    Nothing,
}

fn topic_kind(topic: &str) -> Option<TopicKind> {
    Some(match topic {
        "orders/create"
        | "orders/updated"
        | "orders/paid"
        | "orders/cancelled"
        | "orders/fulfilled"
        | "orders/partially_fulfilled"
        | "orders/delete" => TopicKind::Order,
        "orders/edited" => TopicKind::OrderEdit,
        "products/create" | "products/update" | "products/delete" => TopicKind::Product,
        "customers/create" | "customers/update" | "customers/delete" | "customers/enable" | "customers/disable" => {
            TopicKind::Customer
        }
        "refunds/create" => TopicKind::Refund,
        "inventory_levels/update"
        | "inventory_levels/connect"
        | "inventory_levels/disconnect"
        | "inventory_items/create"
        | "inventory_items/update"
        | "inventory_items/delete" => TopicKind::Stock,
        "fulfillments/create"
        | "fulfillments/update"
        | "bulk_operations/finish"
        | "app/uninstalled"
        | "app/scopes_update"
        | "shop/update" => TopicKind::Nothing,
        _ => return None,
    })
}

/// The GID of the record a REST-shaped body is about: `admin_graphql_api_id` when it is a GID
/// of `kind`, else built from the numeric `id` (deletes carry only `{"id": …}`).
fn body_gid(body: &Value, kind: &str, id_field: &str, gid_field: Option<&str>) -> Option<String> {
    let prefix = format!("gid://shopify/{kind}/");
    if let Some(gid) = gid_field.and_then(|field| body.get(field)).and_then(Value::as_str)
        && let Some(number) = gid.strip_prefix(&prefix)
        && !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit())
    {
        return Some(gid.to_string());
    }
    let number = match body.get(id_field)? {
        Value::Number(number) => number.as_u64()?.to_string(),
        Value::String(text) if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) => text.clone(),
        _ => return None,
    };
    Some(format!("{prefix}{number}"))
}

/// The records a delivery of `topic` with `body` is about, as the source ids the Shopify
/// source gives them. Pure, for tests and the receiver.
pub fn decode_delivery(topic: &str, body: &[u8]) -> Result<Option<Vec<EventRef>>, ConnectorError> {
    let context = format!("reading a shopify webhook of topic {topic:?}");
    let invalid = |message: String| ConnectorError::new(ErrorKind::InvalidRequest, &context, message);
    let topic = topic.trim().to_ascii_lowercase();
    let kind = topic_kind(&topic).ok_or_else(|| invalid(format!("erpsync does not know the topic {topic:?}")))?;
    let value: Value =
        serde_json::from_slice(body).map_err(|error| invalid(format!("the body is not JSON: {error}")))?;
    if !value.is_object() {
        return Err(invalid("the body is not a JSON object".into()));
    }
    let no_id = || invalid("the body names no record (no admin_graphql_api_id, no id)".into());
    let event = |entity: EntityKind, id: String| EventRef { entity, id };
    Ok(Some(match kind {
        TopicKind::Order => {
            let gid = body_gid(&value, "Order", "id", Some("admin_graphql_api_id")).ok_or_else(no_id)?;
            let mut events = vec![event(EntityKind::Order, gid.clone())];
            // The status change's id is the order's GID at its `updatedAt`, in UTC as the
            // GraphQL API prints it.
            if let Some(at) =
                value.get("updated_at").and_then(Value::as_str).and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            {
                let at = at.with_timezone(&Utc).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                events.push(event(EntityKind::OrderStatus, format!("{gid}@{at}")));
            }
            events
        }
        TopicKind::OrderEdit => {
            let edit = value.get("order_edit").ok_or_else(no_id)?;
            let gid = body_gid(edit, "Order", "order_id", None).ok_or_else(no_id)?;
            vec![event(EntityKind::Order, gid)]
        }
        TopicKind::Product => {
            vec![event(
                EntityKind::Product,
                body_gid(&value, "Product", "id", Some("admin_graphql_api_id")).ok_or_else(no_id)?,
            )]
        }
        TopicKind::Customer => {
            vec![event(
                EntityKind::Customer,
                body_gid(&value, "Customer", "id", Some("admin_graphql_api_id")).ok_or_else(no_id)?,
            )]
        }
        TopicKind::Refund => {
            vec![event(
                EntityKind::Refund,
                body_gid(&value, "Refund", "id", Some("admin_graphql_api_id")).ok_or_else(no_id)?,
            )]
        }
        TopicKind::Stock => return Ok(None),
        TopicKind::Nothing => Vec::new(),
    }))
}

/// The order an order topic's body carries (the REST Order resource), as the source reads
/// it: same GID, same canonical order. `None` for other entities and topics, and for bodies
/// that are not a whole order (`orders/delete` carries only the id). Pure.
pub fn body_record(entity: EntityKind, topic: &str, body: &[u8]) -> Option<SourceRecord> {
    let topic = topic.trim().to_ascii_lowercase();
    if entity != EntityKind::Order || !matches!(topic_kind(&topic), Some(TopicKind::Order)) || topic == "orders/delete"
    {
        return None;
    }
    let value: Value = serde_json::from_slice(body).ok()?;
    let gid = body_gid(&value, "Order", "id", Some("admin_graphql_api_id"))?;
    let order = crate::shopify::map::order_from_rest(&value).ok()?;
    Some(SourceRecord {
        source_id: gid.clone(),
        origin: Some(format!("webhook {topic} {gid}")),
        origin_group: None,
        content: Ok(Record::Order(order)),
    })
}

impl WebhookReceiver for ShopifyConnector {
    fn body_record(&self, entity: EntityKind, topic: &str, body: &[u8]) -> Option<SourceRecord> {
        body_record(entity, topic, body)
    }

    /// Orders (and their status), products, customers and refunds by GID; stock deliveries
    /// make the flows pull; fulfillment, bulk operation, app and shop events are about nothing
    /// erpsync reads. A topic erpsync does not know, or a body that is not a JSON object with
    /// the record's id, is an invalid request.
    fn decode(&self, topic: &str, body: &[u8]) -> Result<Option<Vec<EventRef>>, ConnectorError> {
        decode_delivery(topic, body)
    }

    /// Verifies an inbound webhook over its raw body. Without `webhook_secret` every delivery
    /// is rejected.
    fn verify(
        &self,
        headers: &[(String, String)],
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<VerifiedDelivery, ConnectorError> {
        match &self.webhook_secret {
            Some(secret) => verify_delivery(secret.expose().as_bytes(), headers, body, now, self.webhook_tolerance),
            None => Err(ConnectorError::new(
                ErrorKind::Auth,
                format!("verifying a webhook for shopify {:?}", self.system),
                "no webhook_secret is configured for this system, so every delivery is rejected",
            )),
        }
    }
}

const SUBSCRIPTION_FIELDS: &str = "id topic uri";

fn subscription(node: &Value) -> Option<Subscription> {
    Some(Subscription {
        id: text(node, "id")?,
        topic: text(node, "topic")?,
        url: text(node, "uri").or_else(|| text(node, "callbackUrl"))?,
    })
}

#[async_trait]
impl WebhookSubscriptions for ShopifyConnector {
    fn topics(&self, entity: EntityKind) -> Vec<String> {
        topics_for(entity).iter().map(|topic| topic.to_string()).collect()
    }

    async fn list(&self) -> Result<Vec<Subscription>, ConnectorError> {
        let context = format!("listing webhook subscriptions of shopify {:?}", self.system);
        let query = format!(
            "query Subscriptions($after: String) {{ webhookSubscriptions(first: 100, after: $after) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {SUBSCRIPTION_FIELDS} }} }} }}"
        );
        let mut subscriptions = Vec::new();
        let mut after: Option<String> = None;
        // A shop has at most a few hundred subscriptions: 50 pages of 100 bound the loop.
        for _ in 0..50 {
            let data = self.graphql("webhook_list", 102.0, &query, json!({ "after": after }), &context).await?;
            let connection = data.get("webhookSubscriptions").cloned().unwrap_or(Value::Null);
            subscriptions.extend(nodes(Some(&connection)).into_iter().filter_map(subscription));
            let info = connection.get("pageInfo");
            match (
                info.and_then(|info| info.get("hasNextPage")).and_then(Value::as_bool),
                info.and_then(|info| text(info, "endCursor")),
            ) {
                (Some(true), Some(cursor)) => after = Some(cursor),
                _ => return Ok(subscriptions),
            }
        }
        Ok(subscriptions)
    }

    async fn register(&self, topic: &str, url: &str) -> Result<Subscription, ConnectorError> {
        let context = format!("registering the shopify webhook {topic} for {url} in {:?}", self.system);
        let topic = topic.trim().to_ascii_uppercase().replace(['/', '.'], "_");
        if let Some(existing) =
            self.list().await?.into_iter().find(|existing| existing.topic == topic && existing.url == url)
        {
            return Ok(existing);
        }
        let query = format!(
            "mutation Register($topic: WebhookSubscriptionTopic!, $input: WebhookSubscriptionInput!) {{ \
             webhookSubscriptionCreate(topic: $topic, webhookSubscription: $input) {{ webhookSubscription {{ {SUBSCRIPTION_FIELDS} }} userErrors {{ field message }} }} }}"
        );
        let variables = json!({ "topic": topic, "input": { "uri": url, "format": "JSON" } });
        let data = self.graphql("webhook_register", 10.0, &query, variables, &context).await?;
        let payload = data.get("webhookSubscriptionCreate").cloned().unwrap_or(Value::Null);
        if let Some(errors) = payload.get("userErrors").and_then(Value::as_array).filter(|errors| !errors.is_empty()) {
            return Err(ConnectorError::new(ErrorKind::InvalidRequest, &context, describe_user_errors(errors)));
        }
        payload.get("webhookSubscription").and_then(subscription).ok_or_else(|| {
            ConnectorError::new(ErrorKind::InvalidResponse, &context, "the answer has no webhookSubscription")
        })
    }

    async fn remove(&self, id: &str) -> Result<(), ConnectorError> {
        let context = format!("removing the shopify webhook subscription {id} in {:?}", self.system);
        let query = "mutation Remove($id: ID!) { webhookSubscriptionDelete(id: $id) { deletedWebhookSubscriptionId userErrors { field message } } }";
        let data = self.graphql("webhook_remove", 10.0, query, json!({ "id": id }), &context).await?;
        let payload = data.get("webhookSubscriptionDelete").cloned().unwrap_or(Value::Null);
        if let Some(errors) = payload.get("userErrors").and_then(Value::as_array).filter(|errors| !errors.is_empty()) {
            let message = describe_user_errors(errors);
            let kind = if message.to_lowercase().contains("not exist") || message.to_lowercase().contains("not found") {
                ErrorKind::NotFound
            } else {
                ErrorKind::InvalidRequest
            };
            return Err(ConnectorError::new(kind, &context, message));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())).collect()
    }

    #[test]
    fn stale_deliveries_are_refused() {
        let body = b"{}";
        let now = Utc::now();
        let old = (now - chrono::Duration::hours(3)).to_rfc3339();
        let signature = sign(b"k", body);
        let delivery = headers(&[
            ("X-Shopify-Hmac-Sha256", &signature),
            ("X-Shopify-Webhook-Id", "w"),
            ("X-Shopify-Triggered-At", &old),
        ]);
        let error = verify_delivery(b"k", &delivery, body, now, Duration::from_secs(3600)).unwrap_err();
        assert!(error.to_string().contains("tolerance"), "{error}");
        let fresh = now.to_rfc3339();
        let delivery = headers(&[
            ("X-Shopify-Hmac-Sha256", &signature),
            ("X-Shopify-Webhook-Id", "w"),
            ("X-Shopify-Triggered-At", &fresh),
        ]);
        assert!(verify_delivery(b"k", &delivery, body, now, Duration::from_secs(3600)).is_ok());
    }
}
