//! Webhook deliveries as Shopify sends them: the REST JSON of the resource, signed with
//! base64 HMAC-SHA256 of the raw body keyed by the app's client secret, with the `X-Shopify-*`
//! headers, retried on failure (8 retries over 4 hours since 2024-09-10, time-scaled in tests).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value as Json, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::exec::gid;
use super::state::{Order, ShopState, TAX_BASIS_POINTS};

fn rest_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, false)
}

pub fn rest_product(state: &ShopState, id: u64) -> Json {
    let Some(p) = state.products.get(&id) else { return json!({"id": id}) };
    let variants: Vec<Json> = p
        .variant_ids
        .iter()
        .filter_map(|v| state.variants.get(v))
        .enumerate()
        .map(|(n, v)| {
            let mut variant = json!({
                "id": v.id, "product_id": p.id, "title": v.title(), "sku": v.sku, "barcode": v.barcode,
                "price": decimal_rest(v.price_cents), "compare_at_price": v.compare_at_price_cents.map(decimal_rest),
                "position": n + 1, "inventory_item_id": v.inventory_item_id, "inventory_policy": v.inventory_policy.to_lowercase(),
                "taxable": v.taxable, "created_at": rest_time(v.created_at), "updated_at": rest_time(v.updated_at),
                "admin_graphql_api_id": gid("ProductVariant", v.id),
            });
            for (index, (_, value)) in v.selected_options.iter().enumerate().take(3) {
                variant[format!("option{}", index + 1)] = json!(value);
            }
            variant
        })
        .collect();
    json!({
        "id": p.id, "title": p.title, "handle": p.handle, "status": p.status.to_lowercase(), "vendor": p.vendor,
        "product_type": p.product_type, "body_html": p.description_html, "tags": p.tags.join(", "),
        "created_at": rest_time(p.created_at), "updated_at": rest_time(p.updated_at),
        "admin_graphql_api_id": gid("Product", p.id), "variants": variants,
        "options": p.options.iter().enumerate().map(|(n, o)| json!({"id": o.id, "product_id": p.id, "name": o.name, "position": n + 1, "values": o.values})).collect::<Vec<_>>(),
        "images": p.images.iter().map(|i| json!({"id": i.id, "product_id": p.id, "src": i.url, "alt": i.alt})).collect::<Vec<_>>(),
    })
}

/// REST prices are strings with two decimals (`"19.99"`, `"10.00"`).
fn decimal_rest(cents: i64) -> String {
    format!("{}{}.{:02}", if cents < 0 { "-" } else { "" }, cents.abs() / 100, cents.abs() % 100)
}

pub fn rest_inventory_level(state: &ShopState, item: u64, location: u64) -> Json {
    let level = state.inventory_levels.get(&(item, location));
    json!({
        "inventory_item_id": item, "location_id": location,
        "available": level.map(|l| l.quantity("available")),
        "updated_at": level.map(|l| rest_time(l.updated_at)),
        "admin_graphql_api_id": level.map(|l| format!("{}?inventory_item_id={item}", gid("InventoryLevel", l.id))),
    })
}

pub fn rest_customer(state: &ShopState, id: u64) -> Json {
    let Some(c) = state.customers.get(&id) else { return json!({"id": id}) };
    json!({
        "id": c.id, "email": c.email, "phone": c.phone, "first_name": c.first_name, "last_name": c.last_name,
        "tags": c.tags.join(", "), "state": c.state.to_lowercase(), "created_at": rest_time(c.created_at),
        "updated_at": rest_time(c.updated_at), "admin_graphql_api_id": gid("Customer", c.id),
        "addresses": c.addresses.iter().map(rest_address).collect::<Vec<_>>(),
        "default_address": c.addresses.first().map(rest_address),
    })
}

/// The REST Order resource, as order webhooks carry it: money as two-decimal strings with
/// `*_set` twins in shop and presentment currency, snake_case addresses, the customer in
/// short form, `payment_gateway_names` and `total_outstanding` (transactions are a resource
/// of their own and not in the body).
pub fn rest_order(state: &ShopState, id: u64) -> Json {
    let Some(o) = state.orders.get(&id) else { return json!({"id": id}) };
    let price_set = |cents: i64| {
        json!({"shop_money": {"amount": decimal_rest(cents), "currency_code": o.currency},
               "presentment_money": {"amount": decimal_rest(cents), "currency_code": o.presentment_currency}})
    };
    let tax_line = |rate_basis_points: i64, cents: i64| json!({"title": "VAT", "rate": rate_basis_points as f64 / 10_000.0, "price": decimal_rest(cents), "price_set": price_set(cents)});
    let customer = o.customer_id.and_then(|c| state.customers.get(&c)).map(|customer| {
        json!({
            "id": customer.id, "admin_graphql_api_id": gid("Customer", customer.id), "email": customer.email,
            "phone": customer.phone, "first_name": customer.first_name, "last_name": customer.last_name,
            "state": customer.state.to_lowercase(),
        })
    });

    let line_items: Vec<Json> = o.line_items.iter().map(|l| json!({
        "id": l.id, "admin_graphql_api_id": gid("LineItem", l.id), "variant_id": l.variant_id, "product_id": l.product_id,
        "title": l.title, "name": l.title, "sku": l.sku, "quantity": l.quantity, "current_quantity": l.quantity - l.refunded_quantity,
        "price": decimal_rest(l.unit_price_cents), "price_set": price_set(l.unit_price_cents),
        "total_discount": decimal_rest(l.discount_cents), "total_discount_set": price_set(l.discount_cents),
        "tax_lines": [tax_line(l.tax_rate_basis_points, Order::line_tax_cents(l))],
        "discount_allocations": if l.discount_cents > 0 {
            json!([{"amount": decimal_rest(l.discount_cents), "amount_set": price_set(l.discount_cents), "discount_application_index": 0}])
        } else {
            json!([])
        },
    })).collect::<Vec<_>>();
    let shipping_lines = json!([{
        "id": o.id, "title": o.shipping_title, "code": o.shipping_title,
        "price": decimal_rest(o.shipping_cents), "price_set": price_set(o.shipping_cents),
        "discounted_price": decimal_rest(o.shipping_cents), "discounted_price_set": price_set(o.shipping_cents),
        "tax_lines": [tax_line(TAX_BASIS_POINTS, o.shipping_tax_cents())],
    }]);
    let mut body = json!({
        "id": o.id, "admin_graphql_api_id": gid("Order", o.id), "name": o.name(), "order_number": o.number,
        "number": o.number.saturating_sub(1000), "email": o.email, "phone": null, "note": o.note,
        "tags": o.tags.join(", "), "source_name": null,
        "created_at": rest_time(o.created_at), "processed_at": rest_time(o.created_at), "updated_at": rest_time(o.updated_at),
        "cancelled_at": o.cancelled_at.map(rest_time),
        "cancel_reason": o.cancel_reason.as_ref().map(|reason| reason.to_lowercase()),
        "closed_at": o.closed_at.map(rest_time), "currency": o.currency, "presentment_currency": o.presentment_currency,
        "taxes_included": o.taxes_included, "financial_status": o.financial_status.to_lowercase(),
        "fulfillment_status": match o.fulfillment_status.as_str() { "FULFILLED" => Json::from("fulfilled"), "PARTIALLY_FULFILLED" => Json::from("partial"), _ => Json::Null },
        "subtotal_price": decimal_rest(o.subtotal_cents()), "subtotal_price_set": price_set(o.subtotal_cents()),
        "total_price": decimal_rest(o.total_cents()), "total_price_set": price_set(o.total_cents()),
        "total_tax": decimal_rest(o.tax_cents()), "total_tax_set": price_set(o.tax_cents()),
        "total_discounts": decimal_rest(o.discount_cents()), "total_discounts_set": price_set(o.discount_cents()),
        "total_shipping_price_set": price_set(o.shipping_cents),
    });
    let rest = json!({
        "total_outstanding": decimal_rest(o.total_cents() - o.received_cents()),
        "payment_gateway_names": o.gateways(),
        "tax_lines": [tax_line(TAX_BASIS_POINTS, o.tax_cents())],
        "customer": customer,
        "line_items": line_items,
        "shipping_lines": shipping_lines,
        "discount_codes": o.discount_code.iter().map(|c| json!({"code": c, "amount": decimal_rest(o.discount_cents()), "type": "percentage"})).collect::<Vec<_>>(),
        "discount_applications": o.discount_code.iter().map(|c| json!({
            "type": "discount_code", "code": c, "value": "10.0", "value_type": "percentage",
            "allocation_method": "across", "target_selection": "explicit", "target_type": "line_item",
        })).collect::<Vec<_>>(),
        "shipping_address": o.shipping_address.as_ref().map(rest_address),
        "billing_address": o.billing_address.as_ref().map(rest_address),
    });
    if let (Some(body), Json::Object(rest)) = (body.as_object_mut(), rest) {
        body.extend(rest);
    }
    body
}

/// An address as the REST resources write it (`first_name`, `province_code`, `country_code`),
/// from the simulator's GraphQL-shaped one.
pub fn rest_address(address: &Json) -> Json {
    let field = |key: &str| address.get(key).cloned().unwrap_or(Json::Null);
    let mut rest = json!({
        "first_name": field("firstName"), "last_name": field("lastName"), "company": field("company"),
        "address1": field("address1"), "address2": field("address2"), "city": field("city"),
        "province_code": field("provinceCode"), "country_code": field("countryCodeV2"), "zip": field("zip"),
        "phone": field("phone"),
    });
    if let Some(id) = address.get("id").filter(|id| !id.is_null()) {
        rest["id"] = id.clone();
    }
    rest
}

/// The value of `X-Shopify-Hmac-Sha256`: base64 of HMAC-SHA256 over the raw body.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// When each retry happens after a failed delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub delays: Vec<Duration>,
}

impl RetryPolicy {
    /// Since 2024-09-10: 8 retries over 4 hours with exponential backoff. Shopify does not
    /// publish the intervals; these double from 1 minute and sum to exactly 4 hours.
    pub fn current() -> Self {
        Self { delays: [60, 120, 240, 480, 960, 1920, 3840, 6780].into_iter().map(Duration::from_secs).collect() }
    }

    /// The older policy, 19 retries over 48 hours, for regression tests.
    pub fn legacy() -> Self {
        let mut delays: Vec<u64> = (0..19).map(|n| (10u64 << n.min(9)).min(14_400)).collect();
        let total: u64 = delays.iter().sum();
        if let Some(last) = delays.last_mut() {
            *last += 48 * 3600 - total.min(48 * 3600);
        }
        Self { delays: delays.into_iter().map(Duration::from_secs).collect() }
    }
}

/// One delivery: the same body and ids are re-sent on every retry.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub subscription_id: u64,
    pub topic: String,
    pub url: String,
    pub body: Vec<u8>,
    pub webhook_id: String,
    pub event_id: String,
    pub triggered_at: String,
    pub api_version: String,
    pub shop_domain: String,
    /// Extra wait before the first attempt, to deliver out of order.
    pub initial_delay: Duration,
    /// Fault injection: send the HMAC of a different body.
    pub bad_signature: bool,
}

/// One attempt, as recorded for tests and the control API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryRecord {
    pub webhook_id: String,
    pub event_id: String,
    pub topic: String,
    pub url: String,
    pub attempt: u32,
    /// HTTP status, or `None` when the connection failed or timed out.
    pub status: Option<u16>,
    pub error: Option<String>,
    /// From sending the request to the end of the response, as the shop sees it.
    pub elapsed_micros: u64,
}

pub fn headers(delivery: &Delivery, secret: &[u8]) -> Vec<(String, String)> {
    let signature =
        if delivery.bad_signature { sign(b"not-the-secret", &delivery.body) } else { sign(secret, &delivery.body) };
    vec![
        ("Content-Type".into(), "application/json".into()),
        ("X-Shopify-Topic".into(), delivery.topic.clone()),
        ("X-Shopify-Hmac-Sha256".into(), signature),
        ("X-Shopify-Shop-Domain".into(), delivery.shop_domain.clone()),
        ("X-Shopify-API-Version".into(), delivery.api_version.clone()),
        ("X-Shopify-Webhook-Id".into(), delivery.webhook_id.clone()),
        ("X-Shopify-Event-Id".into(), delivery.event_id.clone()),
        ("X-Shopify-Triggered-At".into(), delivery.triggered_at.clone()),
    ]
}

/// Keeps only `include_fields` (top-level names) when the subscription lists any.
pub fn trim_fields(payload: &Json, include_fields: &[String]) -> Json {
    if include_fields.is_empty() {
        return payload.clone();
    }
    let Json::Object(map) = payload else { return payload.clone() };
    Json::Object(
        map.iter()
            .filter(|(k, _)| include_fields.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Map<_, _>>(),
    )
}

/// Shopify's delivery timeouts: 1 s to connect, 5 s in total.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const TOTAL_TIMEOUT: Duration = Duration::from_secs(5);

/// A minimal HTTP/1.1 POST over plain TCP: receivers in tests listen on 127.0.0.1 without TLS,
/// and this avoids an HTTP client dependency in the simulator itself.
pub async fn post(url: &str, headers: &[(String, String)], body: &[u8]) -> Result<u16, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("only http:// callback URLs are simulated: {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let address = if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
    let attempt = async {
        let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&address))
            .await
            .map_err(|_| "connect timeout".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: Shopify-Captain-Hook\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
        stream.write_all(body).await.map_err(|e| format!("write: {e}"))?;
        let mut response = Vec::new();
        let mut buffer = [0u8; 1024];
        // The status line is all that matters; stop reading after it.
        while !response.windows(2).any(|w| w == b"\r\n") && response.len() < 8192 {
            let n = stream.read(&mut buffer).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buffer[..n]);
        }
        let line = String::from_utf8_lossy(&response);
        line.split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| "malformed response".to_string())
    };
    tokio::time::timeout(TOTAL_TIMEOUT, attempt).await.map_err(|_| "timeout".to_string())?
}

/// Sends a delivery and retries it on the policy's schedule, scaled by `time_scale`
/// (0.001 turns 4 hours into 14.4 s). After the last failure the subscription is removed, as
/// Shopify does for subscriptions made through the Admin API.
pub async fn deliver_with_retries(shared: Arc<super::server::Shared>, delivery: Delivery) {
    let shutdown_template = shared.shutdown.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    let wait = |duration: Duration| {
        let mut shutdown = shutdown_template.clone();
        async move {
            tokio::select! {
                _ = tokio::time::sleep(duration) => true,
                _ = shutdown.changed() => false,
            }
        }
    };
    if !delivery.initial_delay.is_zero() && !wait(delivery.initial_delay).await {
        return;
    }
    let headers = headers(&delivery, shared.config.api_secret.as_bytes());
    let delays = shared.config.webhook_retry_policy.delays.clone();
    for attempt in 0..=delays.len() {
        let sent = std::time::Instant::now();
        let result = tokio::select! {
            result = post(&delivery.url, &headers, &delivery.body) => result,
            _ = shutdown.changed() => return,
        };
        let elapsed_micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
        let (status, error) = match &result {
            Ok(status) => (Some(*status), None),
            Err(error) => (None, Some(error.clone())),
        };
        shared.record_delivery(DeliveryRecord {
            webhook_id: delivery.webhook_id.clone(),
            event_id: delivery.event_id.clone(),
            topic: delivery.topic.clone(),
            url: delivery.url.clone(),
            attempt: attempt as u32,
            status,
            error,
            elapsed_micros,
        });
        if status.is_some_and(|s| (200..300).contains(&s)) {
            return;
        }
        let Some(delay) = delays.get(attempt) else { break };
        let scaled = delay.mul_f64(shared.config.webhook_time_scale.max(0.0));
        if !wait(scaled).await {
            return;
        }
    }
    tracing::warn!(topic = %delivery.topic, url = %delivery.url, "Webhook deliveries failed on every retry; removing the subscription.");
    shared.lock_state().webhook_subscriptions.remove(&delivery.subscription_id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_base64_hmac_sha256_of_the_raw_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let expected = base64::engine::general_purpose::STANDARD
            .encode(hex::decode("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843").unwrap());
        assert_eq!(sign(b"Jefe", b"what do ya want for nothing?"), expected);
    }

    #[test]
    fn current_policy_is_eight_retries_over_four_hours() {
        let policy = RetryPolicy::current();
        assert_eq!(policy.delays.len(), 8);
        assert_eq!(policy.delays.iter().sum::<Duration>(), Duration::from_secs(4 * 3600));
        let legacy = RetryPolicy::legacy();
        assert_eq!(legacy.delays.len(), 19);
        assert_eq!(legacy.delays.iter().sum::<Duration>(), Duration::from_secs(48 * 3600));
    }
}
