//! The simulator's own routes under `/_sim/`: seed data, the order stream, touching records,
//! faults, the clock and plan, counters, the webhook delivery log, plus the staged-upload
//! target and the bulk result files that Shopify would serve from cloud storage.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value as Json, json};

use super::cost::PlanLimits;
use super::exec::parse_gid;
use super::mutations::{Effect, MAX_STAGED_UPLOAD_BYTES};
use super::server::{Faults, Shared};
use super::state::{SeedConfig, seed};
use super::webhooks::{rest_customer, rest_order, rest_product};

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/seed", post(seed_shop))
        .route("/_sim/orders", post(order_stream))
        .route("/_sim/touch", post(touch))
        .route("/_sim/faults", get(get_faults).post(set_faults))
        .route("/_sim/clock", get(get_clock).post(set_clock))
        .route("/_sim/plan", post(set_plan))
        .route("/_sim/counters", get(get_counters))
        .route("/_sim/counters/reset", post(reset_counters))
        .route("/_sim/webhooks/deliveries", get(get_deliveries))
}

fn ok(body: Json) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": message.into()}))).into_response()
}

fn parse_body<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T, Box<Response>> {
    if body.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| Box::new(bad_request(format!("invalid control request: {e}"))))
}

/// `POST /_sim/seed {seed, products, variants_per_product, locations, customers, orders}`:
/// adds deterministic data (the same seed gives the same shop).
async fn seed_shop(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let config: SeedConfig = match parse_body(&body) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let now = shared.clock.now();
    let mut state = shared.lock_state();
    match seed(&mut state, &config, now) {
        Ok(()) => ok(json!({
            "products": state.products.len(), "variants": state.variants.len(), "locations": state.locations.len(),
            "customers": state.customers.len(), "orders": state.orders.len(),
        })),
        Err(message) => bad_request(message),
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct OrderStream {
    /// New random orders to create.
    create: usize,
    /// Orders (numeric ids or gids) to touch: `updatedAt` moves to now.
    update: Vec<Json>,
    seed: Option<u64>,
}

/// `POST /_sim/orders {create: n, update: [ids]}`: the order stream, with `orders/create` and
/// `orders/updated` webhooks.
async fn order_stream(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: OrderStream = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    if request.create > 100_000 || request.update.len() > 100_000 {
        return bad_request("at most 100000 orders per call");
    }
    let now = shared.clock.now();
    let mut effects = Vec::new();
    let mut created = Vec::new();
    {
        let mut own_rng;
        let mut shared_rng;
        let rng: &mut StdRng = match request.seed {
            Some(s) => {
                own_rng = StdRng::seed_from_u64(s);
                &mut own_rng
            }
            None => {
                shared_rng = shared.lock_rng();
                &mut shared_rng
            }
        };
        let mut state = shared.lock_state();
        for _ in 0..request.create {
            let Some(id) = state.add_random_order(rng, now) else {
                return bad_request("the shop has no variants to order; seed products first");
            };
            created.push(super::exec::gid("Order", id));
            effects.push(Effect::Webhook { topic: "orders/create".into(), payload: rest_order(&state, id) });
        }
        for id in &request.update {
            let id = id.as_u64().or_else(|| id.as_str().and_then(|s| parse_gid(s, "Order")));
            let Some(order) = id.and_then(|id| state.orders.get_mut(&id)) else { continue };
            order.updated_at = now;
            let id = order.id;
            effects.push(Effect::Webhook { topic: "orders/updated".into(), payload: rest_order(&state, id) });
        }
    }
    shared.dispatch(effects, None);
    ok(json!({"created": created}))
}

/// `POST /_sim/touch {"id": "gid://shopify/Product/1"}`: moves a record's `updatedAt` to now
/// (a change made in the shop's admin), with its update webhook.
async fn touch(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: Json = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let Some(id) = request.get("id").and_then(Json::as_str) else { return bad_request("missing id") };
    let now = shared.clock.now();
    let effect = {
        let mut state = shared.lock_state();
        if let Some(product) = parse_gid(id, "Product").and_then(|p| state.products.get_mut(&p)) {
            product.updated_at = now;
            let id = product.id;
            Effect::Webhook { topic: "products/update".into(), payload: rest_product(&state, id) }
        } else if let Some(variant) = parse_gid(id, "ProductVariant").and_then(|v| state.variants.get_mut(&v)) {
            variant.updated_at = now;
            let product_id = variant.product_id;
            Effect::Webhook { topic: "products/update".into(), payload: rest_product(&state, product_id) }
        } else if let Some(customer) = parse_gid(id, "Customer").and_then(|c| state.customers.get_mut(&c)) {
            customer.updated_at = now;
            let id = customer.id;
            Effect::Webhook { topic: "customers/update".into(), payload: rest_customer(&state, id) }
        } else if let Some(order) = parse_gid(id, "Order").and_then(|o| state.orders.get_mut(&o)) {
            order.updated_at = now;
            let id = order.id;
            Effect::Webhook { topic: "orders/updated".into(), payload: rest_order(&state, id) }
        } else {
            return (StatusCode::NOT_FOUND, axum::Json(json!({"error": "no such record"}))).into_response();
        }
    };
    shared.dispatch(vec![effect], None);
    ok(json!({"updatedAt": super::exec::timestamp(now)}))
}

async fn get_faults(State(shared): State<Arc<Shared>>) -> Response {
    ok(serde_json::to_value(shared.lock_faults().clone()).unwrap_or(Json::Null))
}

/// `POST /_sim/faults {...}`: replaces the fault settings (omitted fields are 0).
async fn set_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let faults: Faults = match parse_body(&body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    if !(0.0..=1.0).contains(&faults.partial_failure_rate) {
        return bad_request("partial_failure_rate must be between 0 and 1");
    }
    *shared.lock_faults() = faults.clone();
    ok(serde_json::to_value(faults).unwrap_or(Json::Null))
}

async fn get_clock(State(shared): State<Arc<Shared>>) -> Response {
    ok(json!({"now": super::exec::timestamp(shared.clock.now())}))
}

/// `POST /_sim/clock {advance_seconds, scale}`.
async fn set_clock(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: Json = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    if let Some(seconds) = request.get("advance_seconds").and_then(Json::as_f64) {
        if !(0.0..=1e9).contains(&seconds) {
            return bad_request("advance_seconds must be between 0 and 1e9");
        }
        shared.clock.advance(Duration::from_secs_f64(seconds));
    }
    if let Some(scale) = request.get("scale").and_then(Json::as_f64) {
        shared.clock.set_scale(scale);
    }
    ok(json!({"now": super::exec::timestamp(shared.clock.now())}))
}

/// `POST /_sim/plan {"plan": "plus"}` or `{"maximum_available": 1000, "restore_rate": 50}`.
async fn set_plan(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: Json = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let limits = match request.get("plan").and_then(Json::as_str) {
        Some(name) => match PlanLimits::by_name(name) {
            Some(limits) => limits,
            None => return bad_request(format!("unknown plan {name:?}: standard, advanced, plus or enterprise")),
        },
        None => match (
            request.get("maximum_available").and_then(Json::as_f64),
            request.get("restore_rate").and_then(Json::as_f64),
        ) {
            (Some(maximum_available), Some(restore_rate)) if maximum_available > 0.0 && restore_rate >= 0.0 => {
                PlanLimits { maximum_available, restore_rate }
            }
            _ => return bad_request("give plan, or maximum_available and restore_rate"),
        },
    };
    let now = shared.clock.elapsed();
    let mut bucket = shared.lock_bucket();
    bucket.set_limits(limits, now);
    if request.get("drain").and_then(Json::as_bool) == Some(true) {
        bucket.drain(now);
    }
    ok(bucket.throttle_status(now))
}

async fn get_counters(State(shared): State<Arc<Shared>>) -> Response {
    ok(serde_json::to_value(shared.counters()).unwrap_or(Json::Null))
}

async fn reset_counters(State(shared): State<Arc<Shared>>) -> Response {
    shared.reset_counters();
    ok(json!({}))
}

async fn get_deliveries(State(shared): State<Arc<Shared>>) -> Response {
    ok(serde_json::to_value(shared.deliveries()).unwrap_or(Json::Null))
}

/// `GET /_sim/bulk/{id}.jsonl`: the result file of a bulk operation.
pub async fn bulk_result(State(shared): State<Arc<Shared>>, Path(file): Path<String>) -> Response {
    let id = file.strip_suffix(".jsonl").and_then(|n| n.parse::<u64>().ok());
    let state = shared.lock_state();
    match id
        .and_then(|id| state.bulk_operations.get(&id))
        .filter(|b| b.status == "COMPLETED")
        .and_then(|b| b.result.clone())
    {
        Some(text) => (StatusCode::OK, [("content-type", "application/jsonl")], text).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>",
        )
            .into_response(),
    }
}

fn s3_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    (status, [("content-type", "application/xml")], body).into_response()
}

/// `POST /_sim/staged-uploads`: the multipart form upload of a staged target. Fields come
/// first (`key`, …), then `file`; files over 20 MB are refused like S3 refuses them.
pub async fn staged_upload(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(boundary) = content_type.split(';').map(str::trim).find_map(|p| p.strip_prefix("boundary=")) else {
        return s3_error(
            StatusCode::BAD_REQUEST,
            "MalformedPOSTRequest",
            "The body of your POST request is not well-formed multipart/form-data.",
        );
    };
    let boundary = boundary.trim_matches('"');
    let parts = match parse_multipart(&body, boundary) {
        Some(parts) => parts,
        None => {
            return s3_error(
                StatusCode::BAD_REQUEST,
                "MalformedPOSTRequest",
                "The body of your POST request is not well-formed multipart/form-data.",
            );
        }
    };
    let key = parts.iter().find(|(name, _)| name == "key").map(|(_, v)| String::from_utf8_lossy(v).into_owned());
    let file = parts.iter().find(|(name, _)| name == "file").map(|(_, v)| v.clone());
    let (Some(key), Some(file)) = (key, file) else {
        return s3_error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "Bucket POST must contain a field named 'key' and a file.",
        );
    };
    if file.len() > MAX_STAGED_UPLOAD_BYTES {
        return s3_error(
            StatusCode::BAD_REQUEST,
            "EntityTooLarge",
            "Your proposed upload exceeds the maximum allowed size",
        );
    }
    shared.lock_state().staged_uploads.insert(key.clone(), file);
    let body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse><Key>{key}</Key></PostResponse>");
    (StatusCode::CREATED, [("content-type", "application/xml")], body).into_response()
}

/// Splits multipart/form-data into (field name, content) pairs.
fn parse_multipart(body: &[u8], boundary: &str) -> Option<Vec<(String, Vec<u8>)>> {
    let delimiter = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let mut positions = Vec::new();
    let mut i = 0;
    while i + delimiter.len() <= body.len() {
        if body[i..].starts_with(&delimiter) {
            positions.push(i);
            i += delimiter.len();
        } else {
            i += 1;
        }
    }
    for window in positions.windows(2) {
        let part = &body[window[0] + delimiter.len()..window[1]];
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let part = part.strip_suffix(b"\r\n").unwrap_or(part);
        let split = part.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&part[..split]);
        let content = part[split + 4..].to_vec();
        let name = head
            .split(';')
            .map(str::trim)
            .find_map(|p| p.strip_prefix("name=").map(|n| n.trim_matches('"').to_string()))
            .or_else(|| {
                head.lines().find_map(|l| {
                    l.split(';')
                        .map(str::trim)
                        .find_map(|p| p.strip_prefix("name=").map(|n| n.trim_matches('"').to_string()))
                })
            })?;
        parts.push((name, content));
    }
    (!parts.is_empty()).then_some(parts)
}
