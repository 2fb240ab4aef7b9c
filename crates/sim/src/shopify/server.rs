//! The HTTP server: the versioned GraphQL endpoint with token check, cost throttling and
//! fault injection, plus the simulator's own routes (staged uploads, bulk results, control).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value as Json, json};
use tokio::sync::watch;

use super::cost::{self, Bucket, MAX_QUERY_COST, PlanLimits, SimClock};
use super::exec::{Context, Executor, validate};
use super::graphql::{OperationKind, parse, prepare};
use super::mutations::{self, Effect, MutationContext, requires_idempotency_key, topic_from_enum};
use super::state::{SeedConfig, ShopState, seed};
use super::webhooks::{Delivery, DeliveryRecord, RetryPolicy, deliver_with_retries, trim_fields};

/// How the simulator is set up. `Default` is a Standard-plan shop on a real-time clock.
#[derive(Debug, Clone)]
pub struct ShopifyConfig {
    /// The shop's name; its domain is `{shop}.myshopify.com`.
    pub shop: String,
    /// The only accepted `X-Shopify-Access-Token`.
    pub access_token: String,
    /// The app's client secret: the key of webhook signatures.
    pub api_secret: String,
    pub plan: PlanLimits,
    /// Supported API versions, oldest first; `unstable` is always accepted too.
    pub supported_versions: Vec<String>,
    /// Where the simulated clock starts, and how fast it runs (0 freezes it).
    pub clock_start: DateTime<Utc>,
    pub clock_scale: f64,
    /// Multiplies webhook retry delays: 1.0 is Shopify's real schedule.
    pub webhook_time_scale: f64,
    pub webhook_retry_policy: RetryPolicy,
    /// Without `read_all_orders`, only the last 60 days of orders are visible.
    pub read_all_orders: bool,
    /// Seed data generated at start.
    pub seed: Option<SeedConfig>,
    pub max_body_bytes: usize,
    /// Pause between the states of a bulk operation.
    pub bulk_step_delay: Duration,
    /// 0 picks a free port.
    pub port: u16,
}

impl Default for ShopifyConfig {
    fn default() -> Self {
        Self {
            shop: "sim-shop".into(),
            access_token: "shpat_simulator".into(),
            api_secret: "sim-secret".into(),
            plan: PlanLimits::STANDARD,
            supported_versions: ["2025-07", "2025-10", "2026-01", "2026-04", "2026-07", "2026-10"]
                .map(String::from)
                .to_vec(),
            clock_start: Utc::now(),
            clock_scale: 1.0,
            webhook_time_scale: 1.0,
            webhook_retry_policy: RetryPolicy::current(),
            read_all_orders: true,
            seed: None,
            max_body_bytes: 4 * 1024 * 1024,
            bulk_step_delay: Duration::from_millis(20),
            port: 0,
        }
    }
}

impl ShopifyConfig {
    pub fn latest_version(&self) -> String {
        self.supported_versions.last().cloned().unwrap_or_else(|| "unstable".into())
    }

    /// The version served for a requested one: itself when supported, the oldest supported
    /// when it is older (Shopify falls forward), none when it is not a release.
    pub fn served_version(&self, requested: &str) -> Option<String> {
        if requested == "unstable" || self.supported_versions.iter().any(|v| v == requested) {
            return Some(requested.to_string());
        }
        let bytes = requested.as_bytes();
        let quarterly = requested.len() == 7
            && bytes[4] == b'-'
            && requested[..4].chars().all(|c| c.is_ascii_digit())
            && matches!(&requested[5..], "01" | "04" | "07" | "10");
        let oldest = self.supported_versions.first()?;
        (quarterly && requested < oldest.as_str()).then(|| oldest.clone())
    }
}

/// Faults to inject; counts apply to the next N GraphQL responses.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Faults {
    pub latency_ms: u64,
    pub server_errors: u32,
    pub timeouts: u32,
    pub truncated_bodies: u32,
    pub throttled: u32,
    /// Fraction (0..1) of batch items that fail: bulk mutation lines, fixed prices.
    pub partial_failure_rate: f64,
    pub webhook_duplicates: u32,
    pub webhook_bad_signatures: u32,
    /// Random delay up to this many ms before each delivery, so they arrive out of order.
    pub webhook_reorder_ms: u64,
}

/// What benchmarks assert on ("zero write calls").
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Counters {
    pub calls: u64,
    pub queries: u64,
    pub mutations: u64,
    pub throttled: u64,
    pub errors: u64,
    pub cost_requested: u64,
    pub cost_actual: u64,
    /// Calls by root field name (`products`, `productSet`, …).
    pub operations: BTreeMap<String, u64>,
}

const MAX_DELIVERY_LOG: usize = 10_000;

/// Everything the handlers share. Each mutex is held only for a short computation, never
/// across an `.await`; when two are needed the order is rng, then state.
pub struct Shared {
    pub config: ShopifyConfig,
    pub clock: SimClock,
    pub base_url: String,
    state: Mutex<ShopState>,
    bucket: Mutex<Bucket>,
    faults: Mutex<Faults>,
    counters: Mutex<Counters>,
    deliveries: Mutex<VecDeque<DeliveryRecord>>,
    rng: Mutex<StdRng>,
    next_event: AtomicU64,
    pub shutdown: watch::Sender<bool>,
}

/// Locks a mutex, going on with the data if a panicking thread poisoned it: every update
/// here leaves the data consistent before anything can panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub fn lock_state(&self) -> MutexGuard<'_, ShopState> {
        lock(&self.state)
    }

    pub fn lock_faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.faults)
    }

    pub fn lock_rng(&self) -> MutexGuard<'_, StdRng> {
        lock(&self.rng)
    }

    pub fn lock_bucket(&self) -> MutexGuard<'_, Bucket> {
        lock(&self.bucket)
    }

    pub fn counters(&self) -> Counters {
        lock(&self.counters).clone()
    }

    pub fn reset_counters(&self) {
        *lock(&self.counters) = Counters::default();
    }

    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        lock(&self.deliveries).iter().cloned().collect()
    }

    pub fn record_delivery(&self, record: DeliveryRecord) {
        let mut log = lock(&self.deliveries);
        if log.len() >= MAX_DELIVERY_LOG {
            log.pop_front();
        }
        log.push_back(record);
    }

    fn uuid(&self) -> String {
        let mut rng = self.lock_rng();
        let (a, b, c, d, e): (u32, u16, u16, u16, u64) =
            (rng.random(), rng.random(), rng.random(), rng.random(), rng.random());
        format!("{a:08x}-{b:04x}-4{:03x}-{:04x}-{:012x}", c & 0x0fff, (d & 0x3fff) | 0x8000, e & 0xffff_ffff_ffff)
    }

    /// Starts what follows a committed change: webhook deliveries and bulk jobs.
    pub fn dispatch(self: &Arc<Self>, effects: Vec<Effect>, version: Option<&str>) {
        let version = version.map(str::to_string).unwrap_or_else(|| self.config.latest_version());
        for effect in effects {
            match effect {
                Effect::RunBulkQuery(id) => {
                    tokio::spawn(super::bulk::run_query(self.clone(), id));
                }
                Effect::RunBulkMutation(id) => {
                    tokio::spawn(super::bulk::run_mutation(self.clone(), id));
                }
                Effect::Webhook { topic, payload } => {
                    let subscriptions: Vec<_> = self
                        .lock_state()
                        .webhook_subscriptions
                        .values()
                        .filter(|s| topic_from_enum(&s.topic).as_deref() == Some(topic.as_str()))
                        .cloned()
                        .collect();
                    if subscriptions.is_empty() {
                        continue;
                    }
                    let event_id = format!("{}", self.next_event.fetch_add(1, Ordering::Relaxed));
                    let triggered_at = self.clock.now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                    for subscription in subscriptions {
                        let body = trim_fields(&payload, &subscription.include_fields).to_string().into_bytes();
                        let (copies, bad_signature, reorder_ms) = {
                            let mut faults = self.lock_faults();
                            let duplicate = faults.webhook_duplicates > 0;
                            faults.webhook_duplicates = faults.webhook_duplicates.saturating_sub(1);
                            let bad = faults.webhook_bad_signatures > 0;
                            faults.webhook_bad_signatures = faults.webhook_bad_signatures.saturating_sub(1);
                            (if duplicate { 2 } else { 1 }, bad, faults.webhook_reorder_ms)
                        };
                        let webhook_id = self.uuid();
                        for _ in 0..copies {
                            let initial_delay = if reorder_ms > 0 {
                                Duration::from_millis(self.lock_rng().random_range(0..=reorder_ms))
                            } else {
                                Duration::ZERO
                            };
                            let delivery = Delivery {
                                subscription_id: subscription.id,
                                topic: topic.clone(),
                                url: subscription.callback_url.clone(),
                                body: body.clone(),
                                webhook_id: webhook_id.clone(),
                                event_id: event_id.clone(),
                                triggered_at: triggered_at.clone(),
                                api_version: version.clone(),
                                shop_domain: format!("{}.myshopify.com", self.config.shop),
                                initial_delay,
                                bad_signature,
                            };
                            tokio::spawn(deliver_with_retries(self.clone(), delivery));
                        }
                    }
                }
            }
        }
    }
}

/// A running simulator. Dropping it does not stop the server; call [`RunningSim::shutdown`].
pub struct RunningSim {
    pub shared: Arc<Shared>,
    address: SocketAddr,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for RunningSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningSim").field("address", &self.address).finish()
    }
}

impl RunningSim {
    /// `http://127.0.0.1:{port}`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The GraphQL endpoint of an API version.
    pub fn graphql_url(&self, version: &str) -> String {
        format!("{}/admin/api/{version}/graphql.json", self.base_url())
    }

    pub fn access_token(&self) -> &str {
        &self.shared.config.access_token
    }

    /// Moves the simulated clock forward (the bucket restores, timestamps move).
    pub fn advance_clock(&self, by: Duration) {
        self.shared.clock.advance(by);
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.shared.clock.now()
    }

    pub fn seed(&self, config: &SeedConfig) -> Result<(), String> {
        let now = self.shared.clock.now();
        seed(&mut self.shared.lock_state(), config, now)
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.shared.lock_faults() = faults;
    }

    pub fn counters(&self) -> Counters {
        self.shared.counters()
    }

    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        self.shared.deliveries()
    }

    /// Runs `f` with the shop's state locked, for assertions and direct setup in tests.
    pub fn with_state<T>(&self, f: impl FnOnce(&mut ShopState) -> T) -> T {
        f(&mut self.shared.lock_state())
    }

    /// Stops the server and every delivery and bulk job it started.
    pub async fn shutdown(mut self) {
        let _ = self.shared.shutdown.send(true);
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("binding 127.0.0.1:{port} for the shopify simulator")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("seeding the shopify simulator: {0}")]
    Seed(String),
}

/// The Shopify simulator.
#[derive(Debug)]
pub struct ShopifySim;

impl ShopifySim {
    /// Binds 127.0.0.1 and serves until [`RunningSim::shutdown`].
    pub async fn start(config: ShopifyConfig) -> Result<RunningSim, StartError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port))
            .await
            .map_err(|source| StartError::Bind { port: config.port, source })?;
        let address = listener.local_addr().map_err(|source| StartError::Bind { port: config.port, source })?;
        let clock = SimClock::new(config.clock_start, config.clock_scale);
        let mut state = ShopState::new();
        if let Some(seed_config) = &config.seed {
            seed(&mut state, seed_config, clock.now()).map_err(StartError::Seed)?;
        }
        let (shutdown, mut shutdown_rx) = watch::channel(false);
        let seed_value = config.seed.as_ref().map_or(1, |s| s.seed);
        let shared = Arc::new(Shared {
            bucket: Mutex::new(Bucket::new(config.plan, clock.elapsed())),
            clock,
            base_url: format!("http://{address}"),
            state: Mutex::new(state),
            faults: Mutex::new(Faults::default()),
            counters: Mutex::new(Counters::default()),
            deliveries: Mutex::new(VecDeque::new()),
            rng: Mutex::new(StdRng::seed_from_u64(seed_value.wrapping_add(0x5eed))),
            next_event: AtomicU64::new(1),
            shutdown,
            config,
        });
        let router = router(shared.clone());
        let server = tokio::spawn(async move {
            let stop = async move {
                let _ = shutdown_rx.wait_for(|stop| *stop).await;
            };
            if let Err(error) = axum::serve(listener, router).with_graceful_shutdown(stop).await {
                tracing::error!(%error, "Shopify simulator stopped with an error.");
            }
        });
        tracing::info!(%address, "Shopify simulator listening.");
        Ok(RunningSim { shared, address, server: Some(server) })
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let body_limit = shared.config.max_body_bytes;
    Router::new()
        .route("/admin/api/{version}/graphql.json", post(graphql).layer(DefaultBodyLimit::max(body_limit)))
        .route(
            "/_sim/staged-uploads",
            post(super::control::staged_upload)
                .layer(DefaultBodyLimit::max(mutations::MAX_STAGED_UPLOAD_BYTES + 1024 * 1024)),
        )
        .route("/_sim/bulk/{file}", get(super::control::bulk_result))
        .merge(super::control::routes())
        .with_state(shared)
}

fn json_response(status: StatusCode, body: &Json, version: Option<&str>) -> Response {
    let mut response =
        (status, [("content-type", "application/json; charset=utf-8")], body.to_string()).into_response();
    if let Some(version) = version.and_then(|v| HeaderValue::from_str(v).ok()) {
        response.headers_mut().insert("x-shopify-api-version", version);
    }
    response
}

fn throttled_body(bucket: &mut Bucket, requested: u64, now: Duration) -> Json {
    json!({
        "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
        "extensions": {"cost": {
            "requestedQueryCost": requested, "actualQueryCost": Json::Null,
            "throttleStatus": bucket.throttle_status(now),
        }},
    })
}

async fn graphql(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Faults first: they stand for the network and Shopify's edge.
    let (latency, fault) = {
        let mut faults = shared.lock_faults();
        let fault = if faults.timeouts > 0 {
            faults.timeouts -= 1;
            Some("timeout")
        } else if faults.server_errors > 0 {
            faults.server_errors -= 1;
            Some("5xx")
        } else if faults.throttled > 0 {
            faults.throttled -= 1;
            Some("throttled")
        } else if faults.truncated_bodies > 0 {
            faults.truncated_bodies -= 1;
            Some("truncated")
        } else {
            None
        };
        (faults.latency_ms, fault)
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    match fault {
        Some("timeout") => {
            // Hang until the client gives up or the simulator stops.
            let mut shutdown = shared.shutdown.subscribe();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                _ = shutdown.changed() => {}
            }
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        Some("5xx") => {
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"errors": "Service Unavailable (simulated)"}),
                None,
            );
        }
        _ => {}
    }
    let Some(served) = shared.config.served_version(&version) else {
        return json_response(StatusCode::NOT_FOUND, &json!({"errors": "Not Found"}), None);
    };
    let token = headers.get("x-shopify-access-token").and_then(|v| v.to_str().ok());
    if token != Some(shared.config.access_token.as_str()) {
        return json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}),
            Some(&served),
        );
    }
    let response = execute(&shared, &served, &headers, &body, fault == Some("throttled"));
    if fault == Some("truncated") {
        let text = response.to_string();
        let cut = text.len() / 2;
        let mut response =
            (StatusCode::OK, [("content-type", "application/json; charset=utf-8")], text[..cut].to_string())
                .into_response();
        if let Ok(v) = HeaderValue::from_str(&served) {
            response.headers_mut().insert("x-shopify-api-version", v);
        }
        return response;
    }
    json_response(StatusCode::OK, &response, Some(&served))
}

/// Runs one GraphQL request and returns the response body. Webhooks and bulk jobs that
/// follow are dispatched from here, after the state lock is released.
fn execute(shared: &Arc<Shared>, version: &str, headers: &HeaderMap, body: &[u8], force_throttle: bool) -> Json {
    let is_json =
        headers.get("content-type").and_then(|v| v.to_str().ok()).is_none_or(|v| !v.starts_with("application/graphql"));
    let (query, variables, operation_name) = if is_json {
        match serde_json::from_slice::<Json>(body) {
            Ok(Json::Object(request)) => (
                request.get("query").and_then(Json::as_str).unwrap_or("").to_string(),
                request.get("variables").and_then(Json::as_object).cloned().unwrap_or_default(),
                request.get("operationName").and_then(Json::as_str).map(str::to_string),
            ),
            _ => return json!({"errors": [{"message": "Invalid JSON in request body"}]}),
        }
    } else {
        (String::from_utf8_lossy(body).into_owned(), Map::new(), None)
    };
    let counters_update = |f: &dyn Fn(&mut Counters)| f(&mut lock(&shared.counters));
    counters_update(&|c| c.calls += 1);
    let prepared = match parse(&query).and_then(|d| prepare(&d, operation_name.as_deref(), &variables)) {
        Ok(prepared) => prepared,
        Err(error) => {
            counters_update(&|c| c.errors += 1);
            return json!({"errors": [error.to_json()]});
        }
    };
    let mut validation_errors = Vec::new();
    validate(&prepared.fields, &mut Vec::new(), &mut validation_errors);
    if !validation_errors.is_empty() {
        counters_update(&|c| c.errors += 1);
        return json!({"errors": validation_errors});
    }
    let requested = cost::requested_cost(prepared.kind, &prepared.fields);
    let now = shared.clock.elapsed();
    if requested > MAX_QUERY_COST {
        counters_update(&|c| c.errors += 1);
        let mut bucket = shared.lock_bucket();
        return json!({
            "errors": [{
                "message": format!("Query cost is {requested}, which exceeds the single query max cost limit ({MAX_QUERY_COST}).\n\nSee https://shopify.dev/concepts/about-apis/rate-limits for more information on how the\ncost of a query is calculated.\n\nTo query larger amounts of data with fewer limits, bulk operations should be used instead.\nSee https://shopify.dev/tutorials/perform-bulk-operations-with-admin-api for usage details.\n"),
                "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": MAX_QUERY_COST},
            }],
            "extensions": {"cost": {"requestedQueryCost": requested, "actualQueryCost": Json::Null, "throttleStatus": bucket.throttle_status(now)}},
        });
    }
    {
        let mut bucket = shared.lock_bucket();
        if force_throttle || !bucket.try_debit(requested, now) {
            drop(bucket);
            counters_update(&|c| c.throttled += 1);
            let mut bucket = shared.lock_bucket();
            return throttled_body(&mut bucket, requested, now);
        }
    }
    for field in &prepared.fields {
        counters_update(&|c| *c.operations.entry(field.name.clone()).or_default() += 1);
    }
    let (data, errors, effects) = match prepared.kind {
        OperationKind::Mutation => run_mutations(shared, version, &prepared.fields),
        _ => {
            let state = shared.lock_state();
            let context =
                Context { state: &state, base_url: &shared.base_url, shop_name: &shared.config.shop, unbounded: false };
            let mut executor = Executor::new(context);
            let data = if shared.config.read_all_orders {
                executor.run_query(&prepared.fields)
            } else {
                drop(executor);
                drop(state);
                run_with_order_window(shared, &prepared.fields)
            };
            (data, Vec::new(), Vec::new())
        }
    };
    let (data, errors) = match data {
        Json::Null => (Json::Null, errors),
        data => (data, errors),
    };
    let actual = cost::actual_cost(prepared.kind, &prepared.fields, &data);
    let throttle_status = {
        let mut bucket = shared.lock_bucket();
        bucket.refund(requested.saturating_sub(actual), shared.clock.elapsed());
        bucket.throttle_status(shared.clock.elapsed())
    };
    counters_update(&|c| {
        c.cost_requested += requested;
        c.cost_actual += actual;
        match prepared.kind {
            OperationKind::Mutation => c.mutations += 1,
            _ => c.queries += 1,
        }
        if !errors.is_empty() {
            c.errors += 1;
        }
    });
    let mut response = json!({
        "data": data,
        "extensions": {"cost": {"requestedQueryCost": requested, "actualQueryCost": actual, "throttleStatus": throttle_status}},
    });
    if !errors.is_empty() {
        response["errors"] = Json::Array(errors);
    }
    shared.dispatch(effects, Some(version));
    response
}

/// Without `read_all_orders`, orders older than 60 days are invisible: run the query on a
/// copy of the state without them.
fn run_with_order_window(shared: &Arc<Shared>, fields: &[super::graphql::ResolvedField]) -> Json {
    let cutoff = shared.clock.now() - chrono::Duration::days(60);
    let state = shared.lock_state();
    let mut visible = ShopState {
        products: state.products.clone(),
        variants: state.variants.clone(),
        inventory_items: state.inventory_items.clone(),
        inventory_levels: state.inventory_levels.clone(),
        locations: state.locations.clone(),
        customers: state.customers.clone(),
        orders: state.orders.clone(),
        fulfillment_orders: state.fulfillment_orders.clone(),
        price_lists: state.price_lists.clone(),
        webhook_subscriptions: state.webhook_subscriptions.clone(),
        bulk_operations: state.bulk_operations.clone(),
        ..ShopState::new()
    };
    drop(state);
    visible.orders.retain(|_, o| o.created_at >= cutoff);
    let context =
        Context { state: &visible, base_url: &shared.base_url, shop_name: &shared.config.shop, unbounded: false };
    Executor::new(context).run_query(fields)
}

fn run_mutations(
    shared: &Arc<Shared>,
    version: &str,
    fields: &[super::graphql::ResolvedField],
) -> (Json, Vec<Json>, Vec<Effect>) {
    let partial_failure_rate = shared.lock_faults().partial_failure_rate;
    let now = shared.clock.now();
    let mut rng = shared.lock_rng();
    let mut state = shared.lock_state();
    let mut data = Map::new();
    let mut errors = Vec::new();
    let mut effects = Vec::new();
    for field in fields {
        let error_at = |message: String| json!({"message": message, "locations": [{"line": field.position.line, "column": field.position.column}], "path": [field.key]});
        // `@idempotent(key:)`: optional from 2026-01, required on inventory mutations from 2026-04.
        let key = field.directive("idempotent").and_then(|d| d.get("key")).and_then(Json::as_str).map(str::to_string);
        if key.is_none() && requires_idempotency_key(&field.name) && mutations::version_at_least(version, "2026-04") {
            errors.push(json!({
                "message": format!("The @idempotent directive is required for the {} mutation.", field.name),
                "locations": [{"line": field.position.line, "column": field.position.column}],
                "path": [field.key],
                "extensions": {"code": "BAD_REQUEST"},
            }));
            data.insert(field.key.clone(), Json::Null);
            continue;
        }
        let arguments = Json::Object(field.arguments.clone());
        if let Some(key) = &key {
            let stored = state.idempotent_results.get(&(field.name.clone(), key.clone())).cloned();
            if let Some(stored) = stored {
                if stored.get("arguments") != Some(&arguments) {
                    errors.push(error_at(format!(
                        "The idempotency key '{key}' was already used with different arguments."
                    )));
                    data.insert(field.key.clone(), Json::Null);
                } else {
                    // Replay: the first result, and nothing applied again.
                    data.insert(field.key.clone(), stored.get("data").cloned().unwrap_or(Json::Null));
                }
                continue;
            }
        }
        let mut context = MutationContext {
            now,
            version,
            base_url: &shared.base_url,
            partial_failure_rate,
            rng: &mut rng,
            in_bulk: false,
        };
        match mutations::execute(&mut state, &mut context, field) {
            Ok(outcome) => {
                let rendered = {
                    let context = Context {
                        state: &state,
                        base_url: &shared.base_url,
                        shop_name: &shared.config.shop,
                        unbounded: false,
                    };
                    let mut executor = Executor::new(context);
                    let rendered = executor.render(&outcome.payload, field);
                    errors.extend(executor.errors);
                    rendered
                };
                if let Some(key) = key {
                    state
                        .idempotent_results
                        .insert((field.name.clone(), key), json!({"arguments": arguments, "data": rendered}));
                }
                effects.extend(outcome.effects);
                data.insert(field.key.clone(), rendered);
            }
            Err(message) => {
                errors.push(error_at(message));
                data.insert(field.key.clone(), Json::Null);
            }
        }
    }
    (Json::Object(data), errors, effects)
}
