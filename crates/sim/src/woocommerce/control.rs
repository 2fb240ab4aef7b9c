//! The simulator's own routes under `/_sim/`:
//!
//! - `POST /_sim/seed` with a [`SeedConfig`]: adds deterministic data.
//! - `POST /_sim/checkout` with a [`Checkout`]: an order placed as a shopper would (stock
//!   reduced when paid, `order.created` webhook).
//! - `POST /_sim/orders {"create": n, "seed": s}`: a stream of random orders.
//! - `POST /_sim/touch {"resource": "product"|"order"|"customer", "id": n}`: a change made in
//!   the admin; `date_modified` moves to now and the `*.updated` webhook fires.
//! - `GET|POST /_sim/faults` with [`Faults`]; `GET|POST /_sim/clock` with
//!   `{"advance_seconds": n}` or `{"set": "2026-01-01T00:00:00Z"}`.
//! - `GET /_sim/counters`, `POST /_sim/counters/reset`, `GET /_sim/webhooks/deliveries`,
//!   `GET /_sim/state` (record counts and webhook statuses).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value as Json, json};

use super::seed::{SeedConfig, seed};
use super::server::{Checkout, Event, Faults, OrderSpec, Shared, build_order, error_response, render_order};
use super::state::{Render, WooError};

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/seed", post(seed_shop))
        .route("/_sim/checkout", post(checkout))
        .route("/_sim/orders", post(order_stream))
        .route("/_sim/touch", post(touch))
        .route("/_sim/faults", get(get_faults).post(set_faults))
        .route("/_sim/clock", get(get_clock).post(set_clock))
        .route("/_sim/counters", get(get_counters))
        .route("/_sim/counters/reset", post(reset_counters))
        .route("/_sim/webhooks/deliveries", get(get_deliveries))
        .route("/_sim/state", get(get_state))
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

async fn seed_shop(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let config: SeedConfig = match parse_body(&body) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let now = shared.clock.now();
    let mut store = shared.lock_store();
    seed(&mut store, &config, now, shared.config.tax_basis_points, &shared.config.currency);
    ok(json!({
        "products": store.products.len(), "variations": store.variations.len(),
        "customers": store.customers.len(), "orders": store.orders.len(),
    }))
}

/// Places an order from SKUs, as the storefront would, and announces it.
pub(crate) fn place_order(shared: &Arc<Shared>, checkout: &Checkout) -> Result<Json, WooError> {
    let now = shared.clock.now();
    let id = {
        let mut store = shared.lock_store();
        let mut lines = Vec::new();
        for (sku, quantity) in &checkout.lines {
            let Some(owner) = store.sku_owner(sku) else {
                return Err(WooError::new(
                    400,
                    "woocommerce_rest_invalid_product_id",
                    format!("No product has SKU {sku}."),
                ));
            };
            match store.variations.get(&owner) {
                Some(variation) => lines.push((variation.parent_id, owner, *quantity)),
                None => lines.push((owner, 0, *quantity)),
            }
        }
        let customer_id =
            store.customers.values().find(|c| c.email.eq_ignore_ascii_case(&checkout.email)).map_or(0, |c| c.id);
        let billing = (customer_id == 0 && !checkout.email.is_empty()).then(|| {
            let mut address = super::state::empty_address(true);
            address.insert("email".into(), json!(checkout.email));
            address
        });
        let payment_method =
            if checkout.payment_method.is_empty() { "sim_card".into() } else { checkout.payment_method.clone() };
        let spec = OrderSpec {
            customer_id,
            billing,
            shipping_address: None,
            lines,
            coupon: checkout.coupon.clone(),
            shipping: Some(("flat_rate".into(), "Flat rate".into(), checkout.shipping_cents)),
            status: if payment_method == "sim_card" { "processing".into() } else { "on-hold".into() },
            payment_method,
            set_paid: false,
        };
        build_order(&mut store, spec, now, shared.config.tax_basis_points, &shared.config.currency)?.id
    };
    let payload = render_order(shared, id).unwrap_or(Json::Null);
    shared.dispatch(vec![Event { topic: "order.created".into(), id, payload: payload.clone() }]);
    Ok(payload)
}

async fn checkout(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: Checkout = match parse_body(&body) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    match place_order(&shared, &request) {
        Ok(order) => (StatusCode::CREATED, axum::Json(order)).into_response(),
        Err(error) => error_response(&error),
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct OrderStream {
    create: usize,
    seed: Option<u64>,
}

async fn order_stream(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: OrderStream = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    if request.create > 100_000 {
        return bad_request("at most 100000 orders per call");
    }
    let skus: Vec<String> = {
        let store = shared.lock_store();
        let mut skus: Vec<String> = store
            .products
            .values()
            .filter(|p| p.kind == "simple" && !p.sku.is_empty())
            .map(|p| p.sku.clone())
            .chain(store.variations.values().filter(|v| !v.sku.is_empty()).map(|v| v.sku.clone()))
            .collect();
        skus.sort();
        skus
    };
    if skus.is_empty() {
        return bad_request("the shop has nothing to order; seed products first");
    }
    let mut rng = StdRng::seed_from_u64(request.seed.unwrap_or_else(|| shared.lock_rng().random()));
    let mut created = Vec::new();
    for _ in 0..request.create {
        let lines = (0..rng.random_range(1..=3))
            .map(|_| (skus[rng.random_range(0..skus.len())].clone(), rng.random_range(1..=2)))
            .collect();
        let checkout = Checkout {
            email: format!("guest{}@example.com", rng.random_range(1..1000)),
            lines,
            coupon: None,
            payment_method: "sim_card".into(),
            shipping_cents: 490,
        };
        match place_order(&shared, &checkout) {
            Ok(order) => created.push(order["id"].clone()),
            Err(error) => return error_response(&error),
        }
    }
    ok(json!({"created": created}))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct Touch {
    resource: String,
    id: u64,
}

async fn touch(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: Touch = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let now = shared.clock.now();
    let event = {
        let mut store = shared.lock_store();
        let touched = match request.resource.as_str() {
            "product" => store.products.get_mut(&request.id).map(|p| p.date_modified = now).is_some(),
            "order" => store.orders.get_mut(&request.id).map(|o| o.date_modified = now).is_some(),
            "customer" => store.customers.get_mut(&request.id).map(|c| c.date_modified = now).is_some(),
            _ => return bad_request("resource must be product, order or customer"),
        };
        if !touched {
            return (StatusCode::NOT_FOUND, axum::Json(json!({"error": "no such record"}))).into_response();
        }
        let base = shared.api_base();
        let render = Render { store: &store, zone: shared.zone(), api_base: &base };
        let payload = match request.resource.as_str() {
            "product" => store.products.get(&request.id).map(|p| render.product(p)),
            "order" => store.orders.get(&request.id).map(|o| render.order(o)),
            _ => store.customers.get(&request.id).map(|c| render.customer(c)),
        };
        Event { topic: format!("{}.updated", request.resource), id: request.id, payload: payload.unwrap_or(Json::Null) }
    };
    shared.dispatch(vec![event]);
    ok(json!({"date_modified_gmt": shared.zone().gmt(now)}))
}

async fn get_faults(State(shared): State<Arc<Shared>>) -> Response {
    ok(serde_json::to_value(shared.lock_faults().clone()).unwrap_or(Json::Null))
}

async fn set_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let faults: Faults = match parse_body(&body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    *shared.lock_faults() = faults.clone();
    ok(serde_json::to_value(faults).unwrap_or(Json::Null))
}

async fn get_clock(State(shared): State<Arc<Shared>>) -> Response {
    ok(json!({"now": shared.clock.now().to_rfc3339()}))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ClockRequest {
    advance_seconds: u64,
    set: Option<chrono::DateTime<chrono::Utc>>,
}

async fn set_clock(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: ClockRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    if let Some(at) = request.set {
        shared.clock.set(at);
    }
    shared.clock.advance(Duration::from_secs(request.advance_seconds));
    ok(json!({"now": shared.clock.now().to_rfc3339()}))
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

async fn get_state(State(shared): State<Arc<Shared>>) -> Response {
    let store = shared.lock_store();
    ok(json!({
        "products": store.products.len(), "variations": store.variations.len(), "customers": store.customers.len(),
        "orders": store.orders.len(), "refunds": store.refunds.len(),
        "webhooks": store.webhooks.values().map(|w| json!({"id": w.id, "topic": w.topic, "status": w.status, "failure_count": w.failure_count})).collect::<Vec<_>>(),
    }))
}
