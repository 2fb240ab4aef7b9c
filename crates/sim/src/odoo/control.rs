//! The simulator's own control API under `/_sim/...`: seeding, fault injection, call counters,
//! the clock, "touching" records to move their `write_date`, shipping and invoicing orders.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Shared;
use super::seed::{SeedConfig, seed};
use super::store::{Context, format_datetime, model_def, parse_datetime};
use super::webhook::{WebhookFaults, WebhookRule};

/// Calls per `model.method`, for assertions such as "no write happened".
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    pub calls: BTreeMap<String, u64>,
    pub total: u64,
    pub writes: u64,
}

impl Counters {
    pub fn record(&mut self, model: &str, method: &str) {
        *self.calls.entry(format!("{model}.{method}")).or_insert(0) += 1;
        self.total += 1;
        if is_write_method(method) {
            self.writes += 1;
        }
    }
    pub fn get(&self, model: &str, method: &str) -> u64 {
        self.calls.get(&format!("{model}.{method}")).copied().unwrap_or(0)
    }
}

/// Methods that change data.
pub fn is_write_method(method: &str) -> bool {
    matches!(method, "create" | "write" | "unlink") || method.starts_with("action_") || method.starts_with("button_")
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with this HTTP status and a short text body, as a proxy in front of Odoo would
    /// (502/503/504, or 429 when Odoo Online throttles).
    Status {
        status: u16,
        #[serde(default)]
        retry_after_seconds: Option<u64>,
    },
    /// Hold the request this long (or until shutdown), then answer 504: the client's timeout.
    Hang {
        #[serde(default = "default_hang_seconds")]
        seconds: u64,
    },
    /// Answer with the first half of the body.
    Truncate,
}

fn default_hang_seconds() -> u64 {
    30
}

/// A fault applied to the next `count` API calls that match the optional model and method.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultRule {
    #[serde(flatten)]
    pub kind: FaultKind,
    #[serde(default = "default_count")]
    pub count: u32,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
}

fn default_count() -> u32 {
    1
}

/// Makes every `every`-th record of a `create` batch fail with a ValidationError. Odoo runs a
/// call in one transaction, so the whole batch is rolled back, as it would be.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartialFailure {
    pub every: usize,
    #[serde(default)]
    pub model: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Faults {
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub rules: Vec<FaultRule>,
    #[serde(default)]
    pub partial_failure: Option<PartialFailure>,
}

impl Faults {
    /// Takes the first matching fault, counting it down.
    pub fn take(&mut self, model: &str, method: &str) -> Option<FaultKind> {
        let position = self.rules.iter().position(|rule| {
            rule.count > 0
                && rule.model.as_deref().is_none_or(|wanted| wanted == model)
                && rule.method.as_deref().is_none_or(|wanted| wanted == method)
        })?;
        let rule = &mut self.rules[position];
        rule.count -= 1;
        let kind = rule.kind.clone();
        if rule.count == 0 {
            self.rules.remove(position);
        }
        Some(kind)
    }

    pub fn partial_failure(&self, model: &str, position: usize) -> Option<String> {
        let failure = self.partial_failure.as_ref()?;
        if failure.every == 0 || failure.model.as_deref().is_some_and(|wanted| wanted != model) {
            return None;
        }
        position.is_multiple_of(failure.every).then(|| {
            format!("Simulated failure of record {position} of the batch on {model} (every {}th fails)", failure.every)
        })
    }
}

fn bad_request(message: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": message.into()}))).into_response()
}

pub async fn get_counters(State(shared): State<Arc<Shared>>) -> Response {
    let counters = shared.lock().counters.clone();
    Json(counters).into_response()
}

pub async fn reset_counters(State(shared): State<Arc<Shared>>) -> Response {
    shared.lock().counters = Counters::default();
    Json(json!({"ok": true})).into_response()
}

pub async fn get_faults(State(shared): State<Arc<Shared>>) -> Response {
    let faults = shared.lock().faults.clone();
    Json(faults).into_response()
}

/// Adds rules, and replaces latency and partial failure when given.
pub async fn set_faults(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(faults) => faults,
        Err(error) => return bad_request(format!("parsing faults: {error}")),
    };
    let mut state = shared.lock();
    state.faults.latency_ms = faults.latency_ms;
    state.faults.partial_failure = faults.partial_failure;
    state.faults.rules.extend(faults.rules);
    Json(state.faults.clone()).into_response()
}

pub async fn clear_faults(State(shared): State<Arc<Shared>>) -> Response {
    shared.lock().faults = Faults::default();
    Json(json!({"ok": true})).into_response()
}

pub async fn post_seed(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let config = match request_or(&body, "seed config", SeedConfig::default) {
        Ok(config) => config,
        Err(message) => return bad_request(message),
    };
    if let Err(message) = config.validate() {
        return bad_request(message);
    }
    let mut state = shared.lock();
    match seed(&mut state, &config) {
        Ok(summary) => Json(summary).into_response(),
        Err(error) => bad_request(error.to_string()),
    }
}

pub async fn post_reset(State(shared): State<Arc<Shared>>) -> Response {
    let mut state = shared.lock();
    match super::reset(&mut state) {
        Ok(()) => Json(json!({"ok": true})).into_response(),
        Err(error) => bad_request(error.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct TouchRequest {
    model: String,
    ids: Vec<i64>,
    #[serde(default)]
    write_date: Option<String>,
}

/// Sets `write_date` of records to one instant (now by default): several records then share
/// the same second, the boundary tie an incremental reader must handle.
pub async fn post_touch(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let request: TouchRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return bad_request(format!("parsing touch request: {error}")),
    };
    let Ok(model) = model_def(&request.model) else { return bad_request(format!("unknown model {}", request.model)) };
    let mut state = shared.lock();
    let write_date = match request.write_date.as_deref().map(parse_datetime) {
        Some(Some(parsed)) => format_datetime(parsed),
        Some(None) => return bad_request("write_date must be YYYY-MM-DD HH:MM:SS"),
        None => state.clock.now_text(),
    };
    let mut touched = Vec::new();
    for id in request.ids {
        if state.exists(model.name, id) {
            state.touch(model.name, id, &write_date);
            touched.push(id);
        }
    }
    Json(json!({"write_date": write_date, "ids": touched})).into_response()
}

#[derive(Debug, Deserialize)]
struct ClockRequest {
    /// Freezes the clock at this instant; `null` lets it run.
    #[serde(default)]
    frozen: Option<Option<String>>,
    #[serde(default)]
    advance_seconds: Option<i64>,
}

pub async fn post_clock(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let request: ClockRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return bad_request(format!("parsing clock request: {error}")),
    };
    let mut state = shared.lock();
    match request.frozen {
        Some(Some(text)) => match parse_datetime(&text) {
            Some(instant) => state.clock.frozen = Some(instant),
            None => return bad_request("frozen must be YYYY-MM-DD HH:MM:SS"),
        },
        Some(None) => state.clock.frozen = None,
        None => {}
    }
    if let Some(seconds) = request.advance_seconds {
        match state.clock.frozen.as_mut() {
            Some(frozen) => *frozen += chrono::Duration::seconds(seconds),
            None => state.clock.offset_seconds += seconds,
        }
    }
    Json(json!({"now": state.clock.now_text()})).into_response()
}

/// Registers an automation rule that posts a webhook; answers the rule with its id.
pub async fn add_webhook(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let rule: WebhookRule = match serde_json::from_slice(&body) {
        Ok(rule) => rule,
        Err(error) => return bad_request(format!("parsing webhook rule: {error}")),
    };
    let Ok(model) = model_def(&rule.model) else { return bad_request(format!("unknown model {}", rule.model)) };
    if let Some(unknown) = rule.fields.iter().find(|field| model.field(field).is_none()) {
        return bad_request(format!("unknown field {unknown} on {}", rule.model));
    }
    if !rule.url.starts_with("http://") {
        return bad_request("url must start with http://");
    }
    let added = shared.lock().webhooks.add_rule(rule);
    Json(added).into_response()
}

/// The rules, the faults left and the results of past deliveries.
pub async fn get_webhooks(State(shared): State<Arc<Shared>>) -> Response {
    let state = shared.lock();
    Json(json!({"rules": state.webhooks.rules, "faults": state.webhooks.faults, "deliveries": state.webhooks.log}))
        .into_response()
}

pub async fn clear_webhooks(State(shared): State<Arc<Shared>>) -> Response {
    shared.lock().webhooks = Default::default();
    Json(json!({"ok": true})).into_response()
}

pub async fn set_webhook_faults(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let faults: WebhookFaults = match serde_json::from_slice(&body) {
        Ok(faults) => faults,
        Err(error) => return bad_request(format!("parsing webhook faults: {error}")),
    };
    shared.lock().webhooks.faults = faults.clone();
    Json(faults).into_response()
}

#[derive(Debug, Deserialize)]
struct ActivityRequest {
    #[serde(default = "default_activity_count")]
    count: usize,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    confirm: bool,
}

fn default_activity_count() -> usize {
    10
}

fn parse_activity(body: &[u8]) -> Result<ActivityRequest, String> {
    request_or(body, "activity request", || ActivityRequest {
        count: default_activity_count(),
        seed: 0,
        confirm: false,
    })
}

/// A control request's JSON body, or `empty()` when there is none.
fn request_or<T: serde::de::DeserializeOwned>(body: &[u8], what: &str, empty: impl FnOnce() -> T) -> Result<T, String> {
    if body.is_empty() {
        return Ok(empty());
    }
    serde_json::from_slice(body).map_err(|error| format!("parsing {what}: {error}"))
}

/// Runs an activity generator as one transaction and sends the webhooks it produced.
fn run_activity(
    shared: &Shared,
    activity: impl FnOnce(&mut super::OdooState) -> Result<Vec<i64>, super::OdooError>,
) -> Response {
    let mut state = shared.lock();
    state.begin();
    match activity(&mut state) {
        Ok(ids) => {
            state.commit();
            super::webhook::flush(shared, &mut state);
            Json(json!({"ids": ids})).into_response()
        }
        Err(error) => {
            state.rollback();
            bad_request(error.to_string())
        }
    }
}

/// New sales orders from existing customers: `{count, seed, confirm}`.
pub async fn post_orders(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let request = match parse_activity(&body) {
        Ok(request) => request,
        Err(message) => return bad_request(message),
    };
    run_activity(&shared, |state| super::seed::generate_orders(state, request.count, request.seed, request.confirm))
}

/// Inventory adjustments on random quants: `{count, seed}`.
pub async fn post_stock(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let request = match parse_activity(&body) {
        Ok(request) => request,
        Err(message) => return bad_request(message),
    };
    run_activity(&shared, |state| super::seed::adjust_stock(state, request.count, request.seed))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InvoiceRequest {
    order_ids: Option<Vec<i64>>,
    delivered: bool,
}

/// Invoices confirmed orders not invoiced yet (all, or `order_ids`; with `delivered`, only
/// those whose transfers are done) and posts the invoices, as accounting would: drives
/// documents back to the shop. `{order_ids, delivered}`; answers the invoices' ids.
pub async fn post_invoice(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let request = match request_or(&body, "invoice request", InvoiceRequest::default) {
        Ok(request) => request,
        Err(message) => return bad_request(message),
    };
    run_activity(&shared, |state| super::seed::invoice_orders(state, request.order_ids.as_deref(), request.delivered))
}

#[derive(Debug, Deserialize)]
struct AccessRequest {
    model: String,
    #[serde(default = "all_operations")]
    operations: Vec<String>,
}

fn all_operations() -> Vec<String> {
    ["read", "write", "create", "unlink"].into_iter().map(str::to_owned).collect()
}

/// Denies operations on a model to the API user: calls then fail with AccessError.
pub async fn deny_access(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let request: AccessRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return bad_request(format!("parsing access request: {error}")),
    };
    if model_def(&request.model).is_err() {
        return bad_request(format!("unknown model {}", request.model));
    }
    let mut state = shared.lock();
    for operation in request.operations {
        if !matches!(operation.as_str(), "read" | "write" | "create" | "unlink") {
            return bad_request(format!("unknown operation {operation}: expected read, write, create or unlink"));
        }
        state.denied.push((request.model.clone(), operation));
    }
    Json(json!({"denied": state.denied})).into_response()
}

pub async fn clear_access(State(shared): State<Arc<Shared>>) -> Response {
    shared.lock().denied.clear();
    Json(json!({"ok": true})).into_response()
}

#[derive(Debug, Deserialize)]
struct ShipRequest {
    #[serde(default)]
    order_ids: Option<Vec<i64>>,
    #[serde(default = "default_carrier")]
    carrier: String,
}

fn default_carrier() -> String {
    "DHL".into()
}

/// Ships confirmed orders: sets a tracking reference on their open transfers and validates
/// them, as a warehouse worker would; drives fulfilment back to the shop.
pub async fn post_ship(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let request =
        match request_or(&body, "ship request", || ShipRequest { order_ids: None, carrier: default_carrier() }) {
            Ok(request) => request,
            Err(message) => return bad_request(message),
        };
    let mut state = shared.lock();
    let ctx = Context::default();
    let pickings: Vec<i64> = state
        .ids("stock.picking")
        .into_iter()
        .filter(|picking| {
            let open = matches!(
                state.raw_text("stock.picking", *picking, "state").as_deref(),
                Some("confirmed" | "assigned" | "waiting")
            );
            let order = state.raw_id("stock.picking", *picking, "sale_id");
            open && request.order_ids.as_ref().is_none_or(|wanted| order.is_some_and(|order| wanted.contains(&order)))
        })
        .collect();
    state.begin();
    let mut shipped = Vec::new();
    for picking in pickings {
        let tracking = format!(
            "{}{:010}",
            request.carrier.to_uppercase().chars().take(3).collect::<String>(),
            1_000_000 + picking * 7919
        );
        let mut vals = serde_json::Map::new();
        vals.insert("carrier_tracking_ref".into(), json!(tracking));
        vals.insert("carrier_name".into(), json!(request.carrier));
        let result = state.write("stock.picking", &[picking], &vals, &ctx).and_then(|()| {
            super::business::call_action(&mut state, model_def("stock.picking")?, "button_validate", &[picking], &ctx)
        });
        if let Err(error) = result {
            state.rollback();
            return bad_request(error.to_string());
        }
        shipped.push(json!({"picking_id": picking, "carrier_tracking_ref": tracking}));
    }
    state.commit();
    super::webhook::flush(&shared, &mut state);
    Json(Value::Array(shipped)).into_response()
}
