//! The HTTP server: `/wp-json/wc/v3/...` with authentication, faults, the resources, batch
//! endpoints, list filters and pagination headers; plus the simulator's own `/_sim/` routes.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use chrono::{DateTime, NaiveDateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value as Json, json};
use tokio::sync::watch;

use super::auth::{self, ApiKey, AuthRequest, KeyPermissions};
use super::seed::{SeedConfig, seed};
use super::state::{
    CouponLine, LineItem, ORDER_STATUSES, Order, Refund, RefundLine, Render, ShippingLine, SimClock, SiteZone, Store,
    WEBHOOK_TOPICS, Webhook, WooError, apply_rate, empty_address, money, parse_money,
};
use super::webhooks::{Delivery, DeliveryRecord, delivery_id, payload_for};

/// How the simulator is set up.
#[derive(Debug, Clone)]
pub struct WooSimConfig {
    /// The REST API keys the shop knows.
    pub keys: Vec<ApiKey>,
    /// The simulator speaks plain HTTP. `true` stands for a deployment behind an HTTPS
    /// terminator (WordPress sees `is_ssl()`): HTTP Basic and the `consumer_key` query
    /// parameters are then accepted, and OAuth signatures are checked against `https://` URLs.
    /// `false` (the default) is a plain-HTTP site: only OAuth 1.0a authenticates.
    pub https_terminated: bool,
    /// The site's time zone as a fixed offset from GMT (dates without `_gmt` are in it).
    pub timezone_offset_minutes: i32,
    pub currency: String,
    /// The one tax rate of the shop, in basis points (2000 = 20 %), prices tax exclusive.
    pub tax_basis_points: i64,
    pub clock_start: DateTime<Utc>,
    /// How fast the clock runs; 0 freezes it (tests move it with `advance_clock`).
    pub clock_scale: f64,
    pub seed: Option<SeedConfig>,
    /// `woocommerce_rest_batch_items_limit`: 100 by default.
    pub batch_limit: usize,
    /// `woocommerce_max_webhook_delivery_failures`: 5 by default.
    pub max_delivery_failures: u32,
    pub webhook_timeout: Duration,
    pub max_body_bytes: usize,
    /// 0 picks a free port.
    pub port: u16,
}

impl Default for WooSimConfig {
    fn default() -> Self {
        Self {
            keys: vec![
                ApiKey {
                    consumer_key: "ck_simulator_read_write".into(),
                    consumer_secret: "cs_simulator_read_write".into(),
                    permissions: KeyPermissions::ReadWrite,
                },
                ApiKey {
                    consumer_key: "ck_simulator_read_only".into(),
                    consumer_secret: "cs_simulator_read_only".into(),
                    permissions: KeyPermissions::Read,
                },
            ],
            https_terminated: false,
            timezone_offset_minutes: 120,
            currency: "EUR".into(),
            tax_basis_points: 2000,
            clock_start: Utc::now(),
            clock_scale: 1.0,
            seed: None,
            batch_limit: 100,
            max_delivery_failures: 5,
            webhook_timeout: Duration::from_secs(5),
            max_body_bytes: 8 * 1024 * 1024,
            port: 0,
        }
    }
}

/// Faults to inject; counts apply to the next N API responses (or batch items, deliveries).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Faults {
    pub latency_ms: u64,
    /// 503 with WordPress's error envelope.
    pub server_errors: u32,
    /// The request hangs until the client gives up.
    pub timeouts: u32,
    /// 200 with half of the JSON body.
    pub truncated_bodies: u32,
    /// The next N batch items fail alone inside a 200, with a 500 status in their error.
    pub batch_item_failures: u32,
    pub webhook_duplicates: u32,
    pub webhook_bad_signatures: u32,
    /// Random delay up to this many ms before each delivery, so they arrive out of order.
    pub webhook_reorder_ms: u64,
}

/// What benchmarks assert on.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Counters {
    pub requests: u64,
    pub reads: u64,
    pub writes: u64,
    pub batch_requests: u64,
    pub batch_items: u64,
    pub errors: u64,
    /// Requests by route, e.g. `POST products/batch`.
    pub routes: BTreeMap<String, u64>,
}

const MAX_DELIVERY_LOG: usize = 10_000;

/// A change that webhooks subscribed to its topic hear about.
#[derive(Debug, Clone)]
pub struct Event {
    pub topic: String,
    pub id: u64,
    pub payload: Json,
}

/// Everything the handlers share. Each mutex is held only for a short computation, never
/// across an `.await`; when two are needed the order is rng, then store.
pub struct Shared {
    pub config: WooSimConfig,
    pub clock: SimClock,
    pub base_url: String,
    store: Mutex<Store>,
    faults: Mutex<Faults>,
    counters: Mutex<Counters>,
    deliveries: Mutex<VecDeque<DeliveryRecord>>,
    rng: Mutex<StdRng>,
    pub shutdown: watch::Sender<bool>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update leaves the data consistent before anything can panic.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub fn lock_store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }
    pub fn lock_faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.faults)
    }
    pub fn lock_rng(&self) -> MutexGuard<'_, StdRng> {
        lock(&self.rng)
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

    pub fn zone(&self) -> SiteZone {
        SiteZone { offset_minutes: self.config.timezone_offset_minutes }
    }

    pub fn api_base(&self) -> String {
        format!("{}/wp-json/wc/v3", self.base_url)
    }

    /// The site URL WordPress uses to sign and to name itself (`X-WC-Webhook-Source`).
    pub fn site_url(&self) -> String {
        if self.config.https_terminated {
            self.base_url.replacen("http://", "https://", 1)
        } else {
            self.base_url.clone()
        }
    }

    /// Sends `events` to every active webhook of their topic, in the background.
    pub fn dispatch(self: &Arc<Self>, events: Vec<Event>) {
        for event in events {
            let hooks: Vec<Webhook> = self
                .lock_store()
                .webhooks
                .values()
                .filter(|w| w.status == "active" && w.topic == event.topic)
                .cloned()
                .collect();
            for hook in hooks {
                let body = event.payload.to_string().into_bytes();
                let (copies, bad_signature, reorder_ms) = {
                    let mut faults = self.lock_faults();
                    let duplicate = faults.webhook_duplicates > 0;
                    faults.webhook_duplicates = faults.webhook_duplicates.saturating_sub(1);
                    let bad = faults.webhook_bad_signatures > 0;
                    faults.webhook_bad_signatures = faults.webhook_bad_signatures.saturating_sub(1);
                    (if duplicate { 2 } else { 1 }, bad, faults.webhook_reorder_ms)
                };
                let id = delivery_id(hook.id, self.clock.now().timestamp());
                for _ in 0..copies {
                    let initial_delay = if reorder_ms > 0 {
                        Duration::from_millis(self.lock_rng().random_range(0..=reorder_ms))
                    } else {
                        Duration::ZERO
                    };
                    let delivery = Delivery {
                        webhook_id: hook.id,
                        topic: event.topic.clone(),
                        url: hook.delivery_url.clone(),
                        secret: hook.secret.clone(),
                        body: body.clone(),
                        delivery_id: id.clone(),
                        source: format!("{}/", self.site_url()),
                        bad_signature,
                        initial_delay,
                    };
                    tokio::spawn(super::webhooks::deliver(self.clone(), delivery));
                }
            }
        }
    }
}

/// A running simulator. Dropping it does not stop the server; call [`RunningWooSim::shutdown`].
pub struct RunningWooSim {
    pub shared: Arc<Shared>,
    address: SocketAddr,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for RunningWooSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningWooSim").field("address", &self.address).finish()
    }
}

impl RunningWooSim {
    /// `http://127.0.0.1:{port}`: the site URL, what the connector's `url` is set to.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// `http://127.0.0.1:{port}/wp-json/wc/v3`.
    pub fn api_url(&self) -> String {
        self.shared.api_base()
    }

    /// The first read-write key.
    pub fn key(&self) -> &ApiKey {
        self.shared
            .config
            .keys
            .iter()
            .find(|k| k.permissions == KeyPermissions::ReadWrite)
            .unwrap_or(&self.shared.config.keys[0])
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.shared.clock.now()
    }

    pub fn advance_clock(&self, by: Duration) {
        self.shared.clock.advance(by);
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

    /// Runs `f` with the store locked, for assertions and direct setup in tests.
    pub fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        f(&mut self.shared.lock_store())
    }

    pub fn seed(&self, config: &SeedConfig) {
        let now = self.shared.clock.now();
        seed(
            &mut self.shared.lock_store(),
            config,
            now,
            self.shared.config.tax_basis_points,
            &self.shared.config.currency,
        );
    }

    /// Places an order as a shopper would at checkout: `lines` are (SKU, quantity). Sends the
    /// `order.created` webhook. Returns the order's REST JSON.
    pub fn checkout(&self, checkout: &Checkout) -> Result<Json, WooError> {
        super::control::place_order(&self.shared, checkout)
    }

    /// Stops the server and every delivery it started.
    pub async fn shutdown(mut self) {
        let _ = self.shared.shutdown.send(true);
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

/// An order placed through the storefront (see [`RunningWooSim::checkout`]).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct Checkout {
    /// A registered customer's e-mail; a guest order when no customer has it.
    pub email: String,
    /// (SKU, quantity).
    pub lines: Vec<(String, i64)>,
    pub coupon: Option<String>,
    /// `bacs` (no automatic refunds) or `sim_card` (pays at once, refunds through the API).
    pub payment_method: String,
    pub shipping_cents: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("binding 127.0.0.1:{port} for the woocommerce simulator")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
}

/// The WooCommerce simulator.
#[derive(Debug)]
pub struct WooSim;

impl WooSim {
    /// Binds 127.0.0.1 and serves until [`RunningWooSim::shutdown`].
    pub async fn start(config: WooSimConfig) -> Result<RunningWooSim, StartError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port))
            .await
            .map_err(|source| StartError::Bind { port: config.port, source })?;
        let address = listener.local_addr().map_err(|source| StartError::Bind { port: config.port, source })?;
        let clock = SimClock::new(config.clock_start, config.clock_scale);
        let mut store = Store::new();
        if let Some(seed_config) = &config.seed {
            seed(&mut store, seed_config, clock.now(), config.tax_basis_points, &config.currency);
        }
        let (shutdown, mut shutdown_rx) = watch::channel(false);
        let seed_value = config.seed.as_ref().map_or(1, |s| s.seed);
        let shared = Arc::new(Shared {
            clock,
            base_url: format!("http://{address}"),
            store: Mutex::new(store),
            faults: Mutex::new(Faults::default()),
            counters: Mutex::new(Counters::default()),
            deliveries: Mutex::new(VecDeque::new()),
            rng: Mutex::new(StdRng::seed_from_u64(seed_value.wrapping_add(0x0c0ffee))),
            shutdown,
            config,
        });
        let body_limit = shared.config.max_body_bytes;
        let router = Router::new()
            .route("/wp-json/wc/v3/{*rest}", any(api).layer(DefaultBodyLimit::max(body_limit)))
            .merge(super::control::routes())
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let stop = async move {
                let _ = shutdown_rx.wait_for(|stop| *stop).await;
            };
            if let Err(error) = axum::serve(listener, router).with_graceful_shutdown(stop).await {
                tracing::error!(%error, "WooCommerce simulator stopped with an error.");
            }
        });
        tracing::info!(%address, "WooCommerce simulator listening.");
        Ok(RunningWooSim { shared, address, server: Some(server) })
    }
}

/// A successful answer.
pub(crate) struct Reply {
    status: StatusCode,
    body: Json,
    headers: Vec<(String, String)>,
    events: Vec<Event>,
}

impl Reply {
    fn ok(body: Json) -> Self {
        Self { status: StatusCode::OK, body, headers: Vec::new(), events: Vec::new() }
    }
    fn created(body: Json) -> Self {
        Self { status: StatusCode::CREATED, body, headers: Vec::new(), events: Vec::new() }
    }
    fn with_events(mut self, events: Vec<Event>) -> Self {
        self.events = events;
        self
    }
}

pub(crate) fn error_response(error: &WooError) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [("content-type", "application/json; charset=UTF-8")], error.to_json().to_string()).into_response()
}

async fn api(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let rest = path.trim_start_matches("/wp-json/wc/v3").trim_matches('/').to_string();
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let route_name = format!(
        "{} {}",
        method,
        segments
            .iter()
            .map(|s| if s.chars().all(|c| c.is_ascii_digit()) { "{id}" } else { s })
            .collect::<Vec<_>>()
            .join("/")
    );
    {
        let mut counters = lock(&shared.counters);
        counters.requests += 1;
        if method == Method::GET {
            counters.reads += 1
        } else {
            counters.writes += 1
        }
        *counters.routes.entry(route_name).or_default() += 1;
    }
    // Faults first: they stand for the network, PHP-FPM and the web server.
    let (latency, fault) = {
        let mut faults = shared.lock_faults();
        let fault = if faults.timeouts > 0 {
            faults.timeouts -= 1;
            Some("timeout")
        } else if faults.server_errors > 0 {
            faults.server_errors -= 1;
            Some("5xx")
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
            let mut shutdown = shared.shutdown.subscribe();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                _ = shutdown.changed() => {}
            }
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        Some("5xx") => {
            lock(&shared.counters).errors += 1;
            return error_response(&WooError::new(
                503,
                "internal_server_error",
                "There has been a critical error on this website (simulated).",
            ));
        }
        _ => {}
    }
    let query = auth::parse_query(uri.query().unwrap_or(""));
    let result = handle(&shared, &method, &path, &segments, &query, &headers, &body);
    let reply = match result {
        Ok(reply) => reply,
        Err(error) => {
            lock(&shared.counters).errors += 1;
            return error_response(&error);
        }
    };
    let events = reply.events;
    shared.dispatch(events);
    let text = reply.body.to_string();
    let text = if fault == Some("truncated") { text[..text.len() / 2].to_string() } else { text };
    let mut response = (reply.status, [("content-type", "application/json; charset=UTF-8")], text).into_response();
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) =
            (axum::http::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value))
        {
            response.headers_mut().append(name, value);
        }
    }
    response
}

fn handle(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    segments: &[&str],
    query: &[(String, String)],
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Reply, WooError> {
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    let key = {
        let mut store = shared.lock_store();
        let request = AuthRequest { method: method.as_str(), path, query, authorization };
        let now = shared.clock.now().timestamp();
        auth::authenticate(
            &shared.config.keys,
            shared.config.https_terminated,
            &shared.site_url(),
            &mut store.nonces,
            now,
            &request,
        )?
        .clone()
    };
    auth::check_permission(&key, method.as_str())?;
    let body = if body.is_empty() || matches!(*method, Method::GET | Method::DELETE) {
        Map::new()
    } else {
        match serde_json::from_slice::<Json>(body) {
            Ok(Json::Object(map)) => map,
            _ => return Err(WooError::new(400, "rest_invalid_json", "Invalid JSON body passed.")),
        }
    };
    let id = |text: &str| text.parse::<u64>().ok();
    let ctx = Ctx { shared, query };
    let m = method.as_str();
    match segments {
        ["products"] if m == "GET" => ctx.list_products(),
        ["products"] if m == "POST" => ctx.create_product(&body),
        ["products", "batch"] if m == "POST" || m == "PUT" || m == "PATCH" => ctx.batch(Kind::Product, 0, &body),
        ["products", "categories"] if m == "GET" => ctx.list_categories(),
        ["products", pid, "variations"] if m == "GET" => ctx.list_variations(id(pid).unwrap_or(0)),
        ["products", pid, "variations"] if m == "POST" => {
            let (json, events) = ctx.create_variation(id(pid).unwrap_or(0), &body)?;
            Ok(Reply::created(json).with_events(events))
        }
        ["products", pid, "variations", "batch"] if m == "POST" || m == "PUT" || m == "PATCH" => {
            ctx.batch(Kind::Variation, id(pid).unwrap_or(0), &body)
        }
        ["products", pid, "variations", vid] => {
            let (parent, vid) = (id(pid).unwrap_or(0), id(vid).unwrap_or(0));
            match m {
                "GET" => ctx.get_variation(parent, vid).map(Reply::ok),
                "PUT" | "PATCH" | "POST" => {
                    let (json, events) = ctx.update_variation(parent, vid, &body)?;
                    Ok(Reply::ok(json).with_events(events))
                }
                "DELETE" => {
                    let (json, events) = ctx.delete_variation(parent, vid)?;
                    Ok(Reply::ok(json).with_events(events))
                }
                _ => Err(no_route()),
            }
        }
        ["products", pid] => {
            let pid = id(pid).unwrap_or(0);
            match m {
                "GET" => ctx.get_product(pid).map(Reply::ok),
                "PUT" | "PATCH" | "POST" => {
                    let (json, events) = ctx.update_product(pid, &body)?;
                    Ok(Reply::ok(json).with_events(events))
                }
                "DELETE" => {
                    let (json, events) = ctx.delete_product(pid, ctx.flag("force"))?;
                    Ok(Reply::ok(json).with_events(events))
                }
                _ => Err(no_route()),
            }
        }
        ["customers"] if m == "GET" => ctx.list_customers(),
        ["customers"] if m == "POST" => {
            let (json, events) = ctx.create_customer(&body)?;
            Ok(Reply::created(json).with_events(events))
        }
        ["customers", "batch"] if m == "POST" || m == "PUT" || m == "PATCH" => ctx.batch(Kind::Customer, 0, &body),
        ["customers", cid] => {
            let cid = id(cid).unwrap_or(0);
            match m {
                "GET" => ctx.get_customer(cid).map(Reply::ok),
                "PUT" | "PATCH" | "POST" => {
                    let (json, events) = ctx.update_customer(cid, &body)?;
                    Ok(Reply::ok(json).with_events(events))
                }
                "DELETE" => {
                    let (json, events) = ctx.delete_customer(cid, ctx.flag("force"))?;
                    Ok(Reply::ok(json).with_events(events))
                }
                _ => Err(no_route()),
            }
        }
        ["orders"] if m == "GET" => ctx.list_orders(),
        ["orders"] if m == "POST" => {
            let (json, events) = ctx.create_order(&body)?;
            Ok(Reply::created(json).with_events(events))
        }
        ["orders", "batch"] if m == "POST" || m == "PUT" || m == "PATCH" => ctx.batch(Kind::Order, 0, &body),
        ["orders", oid, "notes"] if m == "GET" => ctx.list_notes(id(oid).unwrap_or(0)),
        ["orders", oid, "notes"] if m == "POST" => ctx.create_note(id(oid).unwrap_or(0), &body),
        ["orders", oid, "refunds"] if m == "GET" => ctx.list_refunds(id(oid).unwrap_or(0)),
        ["orders", oid, "refunds"] if m == "POST" => ctx.create_refund(id(oid).unwrap_or(0), &body),
        ["orders", oid, "refunds", rid] if m == "GET" => ctx.get_refund(id(oid).unwrap_or(0), id(rid).unwrap_or(0)),
        ["orders", oid] => {
            let oid = id(oid).unwrap_or(0);
            match m {
                "GET" => ctx.get_order(oid).map(Reply::ok),
                "PUT" | "PATCH" | "POST" => {
                    let (json, events) = ctx.update_order(oid, &body)?;
                    Ok(Reply::ok(json).with_events(events))
                }
                "DELETE" => {
                    let (json, events) = ctx.delete_order(oid, ctx.flag("force"))?;
                    Ok(Reply::ok(json).with_events(events))
                }
                _ => Err(no_route()),
            }
        }
        ["webhooks"] if m == "GET" => ctx.list_webhooks(),
        ["webhooks"] if m == "POST" => ctx.create_webhook(&body),
        ["webhooks", wid] => {
            let wid = id(wid).unwrap_or(0);
            match m {
                "GET" => ctx.get_webhook(wid),
                "PUT" | "PATCH" | "POST" => ctx.update_webhook(wid, &body),
                "DELETE" => ctx.delete_webhook(wid),
                _ => Err(no_route()),
            }
        }
        _ => Err(no_route()),
    }
}

fn no_route() -> WooError {
    WooError::new(404, "rest_no_route", "No route was found matching the URL and request method.")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Product,
    Variation,
    Customer,
    Order,
}

impl Kind {
    fn post_type(&self) -> &'static str {
        match self {
            Kind::Product => "product",
            Kind::Variation => "product_variation",
            Kind::Customer => "customer",
            Kind::Order => "shop_order",
        }
    }
}

/// Common list parameters, validated as WordPress validates them.
struct ListParams {
    page: usize,
    per_page: usize,
    offset: Option<usize>,
    descending: bool,
    orderby: String,
    include: Vec<u64>,
    after: Option<DateTime<Utc>>,
    before: Option<DateTime<Utc>>,
    modified_after: Option<DateTime<Utc>>,
    modified_before: Option<DateTime<Utc>>,
}

/// What sorting and filtering need of one listed record.
struct Row {
    id: u64,
    created: DateTime<Utc>,
    modified: DateTime<Utc>,
    title: String,
    slug: String,
    price: i64,
}

struct Ctx<'a> {
    shared: &'a Arc<Shared>,
    query: &'a [(String, String)],
}

fn parse_date(text: &str) -> Option<NaiveDateTime> {
    // RFC 3339 as `rest_parse_date` accepts it; a zone designator is accepted and dropped (the
    // wall time is read in the column `dates_are_gmt` selects).
    let text = text.trim();
    let core = if text.len() >= 19 { &text[..19] } else { text };
    let rest = &text[core.len()..];
    let zone_ok = rest.is_empty()
        || rest == "Z"
        || rest.starts_with('.')
            && rest[1..]
                .trim_end_matches(|c: char| c == 'Z' || c == '+' || c == '-' || c == ':' || c.is_ascii_digit())
                .is_empty()
        || (rest.starts_with('+') || rest.starts_with('-'))
            && rest[1..].chars().all(|c| c.is_ascii_digit() || c == ':');
    if !zone_ok {
        return None;
    }
    NaiveDateTime::parse_from_str(&core.replace(' ', "T"), "%Y-%m-%dT%H:%M:%S").ok()
}

impl Ctx<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("true" | "1"))
    }

    fn now(&self) -> DateTime<Utc> {
        self.shared.clock.now()
    }

    fn render<T>(&self, f: impl FnOnce(&Render<'_>) -> T) -> T {
        let store = self.shared.lock_store();
        let base = self.shared.api_base();
        f(&Render { store: &store, zone: self.shared.zone(), api_base: &base })
    }

    fn list_params(
        &self,
        orderbys: &[&str],
        default_orderby: &str,
        default_order: &str,
    ) -> Result<ListParams, WooError> {
        let mut problems = Vec::new();
        let mut number = |name: &str, default: usize, min: usize, max: usize| -> usize {
            match self.param(name) {
                None => default,
                Some(text) => match text.parse::<usize>() {
                    Ok(value) if value >= min && value <= max => value,
                    Ok(_) if max == usize::MAX => {
                        problems.push((name.to_string(), format!("{name} must be greater than or equal to {min}")));
                        default
                    }
                    Ok(_) => {
                        problems.push((
                            name.to_string(),
                            format!("{name} must be between {min} (inclusive) and {max} (inclusive)"),
                        ));
                        default
                    }
                    Err(_) => {
                        problems.push((name.to_string(), format!("{name} is not of type integer.")));
                        default
                    }
                },
            }
        };
        let page = number("page", 1, 1, usize::MAX);
        let per_page = number("per_page", 10, 1, 100);
        let offset = self.param("offset").map(|_| number("offset", 0, 0, usize::MAX));
        let order = self.param("order").unwrap_or(default_order);
        if order != "asc" && order != "desc" {
            problems.push(("order".into(), "order is not one of asc, desc.".into()));
        }
        let orderby = self.param("orderby").unwrap_or(default_orderby).to_string();
        if !orderbys.contains(&orderby.as_str()) {
            problems.push(("orderby".into(), format!("orderby is not one of {}.", orderbys.join(", "))));
        }
        let gmt = match self.param("dates_are_gmt") {
            None | Some("false" | "0") => false,
            Some("true" | "1") => true,
            Some(_) => {
                problems.push(("dates_are_gmt".into(), "dates_are_gmt is not of type boolean.".into()));
                false
            }
        };
        let zone = self.shared.zone();
        let mut date = |name: &str| -> Option<DateTime<Utc>> {
            let text = self.param(name)?;
            match parse_date(text) {
                Some(at) => Some(if gmt { at.and_utc() } else { zone.from_local(at) }),
                None => {
                    problems.push((name.to_string(), "Invalid date.".into()));
                    None
                }
            }
        };
        let (after, before) = (date("after"), date("before"));
        let (modified_after, modified_before) = (date("modified_after"), date("modified_before"));
        let include = self
            .param("include")
            .map(|text| text.split(',').filter_map(|id| id.trim().parse().ok()).collect())
            .unwrap_or_default();
        if !problems.is_empty() {
            return Err(WooError::invalid_params(problems));
        }
        Ok(ListParams {
            page,
            per_page,
            offset,
            descending: order == "desc",
            orderby,
            include,
            after,
            before,
            modified_after,
            modified_before,
        })
    }

    /// Filters by dates (strictly after / before, as `WP_Date_Query` without `inclusive`),
    /// sorts with the id tie-break, pages, and renders the page with its headers.
    fn page(
        &self,
        route: &str,
        params: &ListParams,
        mut rows: Vec<Row>,
        render: impl Fn(&Render<'_>, u64) -> Json,
    ) -> Reply {
        rows.retain(|row| {
            params.after.is_none_or(|at| row.created > at)
                && params.before.is_none_or(|at| row.created < at)
                && params.modified_after.is_none_or(|at| row.modified > at)
                && params.modified_before.is_none_or(|at| row.modified < at)
                && (params.include.is_empty() || params.include.contains(&row.id))
        });
        let include = &params.include;
        rows.sort_by(|a, b| {
            let ordering = match params.orderby.as_str() {
                "date" | "registered_date" => a.created.cmp(&b.created),
                "modified" => a.modified.cmp(&b.modified),
                "title" | "name" => a.title.cmp(&b.title),
                "slug" => a.slug.cmp(&b.slug),
                "price" => a.price.cmp(&b.price),
                "include" => {
                    let position = |id: u64| include.iter().position(|i| *i == id).unwrap_or(usize::MAX);
                    return position(a.id).cmp(&position(b.id));
                }
                _ => std::cmp::Ordering::Equal,
            }
            .then(a.id.cmp(&b.id));
            if params.descending { ordering.reverse() } else { ordering }
        });
        let total = rows.len();
        let pages = total.div_ceil(params.per_page);
        let start = params.offset.unwrap_or((params.page - 1) * params.per_page);
        let selected: Vec<u64> = rows.iter().skip(start).take(params.per_page).map(|r| r.id).collect();
        let body = self.render(|r| Json::Array(selected.iter().map(|id| render(r, *id)).collect()));
        let mut headers =
            vec![("X-WP-Total".to_string(), total.to_string()), ("X-WP-TotalPages".to_string(), pages.to_string())];
        let link = |page: usize| {
            let mut pairs: Vec<String> = self
                .query
                .iter()
                .filter(|(k, _)| {
                    k != "page" && !k.starts_with("oauth_") && k != "consumer_key" && k != "consumer_secret"
                })
                .map(|(k, v)| format!("{}={}", auth::percent_encode(k), auth::percent_encode(v)))
                .collect();
            pairs.push(format!("page={page}"));
            format!("{}/{route}?{}", self.shared.api_base(), pairs.join("&"))
        };
        let mut links = Vec::new();
        if params.page > 1 {
            links.push(format!("<{}>; rel=\"prev\"", link((params.page - 1).min(pages.max(1)))));
        }
        if pages > params.page {
            links.push(format!("<{}>; rel=\"next\"", link(params.page + 1)));
        }
        if !links.is_empty() {
            headers.push(("Link".to_string(), links.join(", ")));
        }
        Reply { status: StatusCode::OK, body, headers, events: Vec::new() }
    }

    // ---- products -------------------------------------------------------------------------

    fn list_products(&self) -> Result<Reply, WooError> {
        let params = self.list_params(
            &["date", "modified", "id", "include", "title", "slug", "price", "popularity", "rating", "menu_order"],
            "date",
            "desc",
        )?;
        let status = self.param("status").unwrap_or("any").to_string();
        if !["any", "draft", "pending", "private", "publish", "future", "trash"].contains(&status.as_str()) {
            return Err(WooError::invalid_param(
                "status",
                "status is not one of any, future, trash, draft, pending, private, publish.",
            ));
        }
        let kind = self.param("type").map(str::to_string);
        if let Some(kind) = &kind
            && !["simple", "grouped", "external", "variable"].contains(&kind.as_str())
        {
            return Err(WooError::invalid_param("type", "type is not one of simple, grouped, external, variable."));
        }
        let skus: Option<Vec<String>> =
            self.param("sku").map(|s| s.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect());
        let rows = {
            let store = self.shared.lock_store();
            store
                .products
                .values()
                .filter(|p| if status == "any" { p.status != "trash" } else { p.status == status })
                .filter(|p| kind.as_ref().is_none_or(|k| &p.kind == k))
                .filter(|p| skus.as_ref().is_none_or(|skus| skus.contains(&p.sku)))
                .map(|p| Row {
                    id: p.id,
                    created: p.date_created,
                    modified: p.date_modified,
                    title: p.name.clone(),
                    slug: p.slug.clone(),
                    price: super::state::effective_price(&p.regular_price, &p.sale_price),
                })
                .collect()
        };
        Ok(self.page("products", &params, rows, |r, id| {
            r.store.products.get(&id).map(|p| r.product(p)).unwrap_or(Json::Null)
        }))
    }

    fn get_product(&self, id: u64) -> Result<Json, WooError> {
        self.render(|r| match (r.store.products.get(&id), r.store.variations.get(&id)) {
            (Some(p), _) => Ok(r.product(p)),
            (None, Some(v)) => {
                let mut json = r.variation(v);
                json["type"] = json!("variation");
                Ok(json)
            }
            _ => Err(invalid_id(Kind::Product, 404)),
        })
    }

    fn create_product(&self, body: &Map<String, Json>) -> Result<Reply, WooError> {
        let (json, events) = self.create_one(Kind::Product, 0, body)?;
        Ok(Reply::created(json).with_events(events))
    }

    fn create_one(&self, kind: Kind, parent: u64, body: &Map<String, Json>) -> Result<(Json, Vec<Event>), WooError> {
        match kind {
            Kind::Product => {
                let now = self.now();
                let product = {
                    let mut store = self.shared.lock_store();
                    let product = store.new_product(body, now)?;
                    store.products.insert(product.id, product.clone());
                    product
                };
                let json = self.render(|r| r.product(&product));
                Ok((json.clone(), vec![Event { topic: "product.created".into(), id: product.id, payload: json }]))
            }
            Kind::Variation => self.create_variation(parent, body),
            Kind::Customer => self.create_customer(body),
            Kind::Order => self.create_order(body),
        }
    }

    fn update_one(
        &self,
        kind: Kind,
        parent: u64,
        id: u64,
        body: &Map<String, Json>,
    ) -> Result<(Json, Vec<Event>), WooError> {
        match kind {
            Kind::Product => self.update_product(id, body),
            Kind::Variation => self.update_variation(parent, id, body),
            Kind::Customer => self.update_customer(id, body),
            Kind::Order => self.update_order(id, body),
        }
    }

    fn delete_one(&self, kind: Kind, parent: u64, id: u64) -> Result<(Json, Vec<Event>), WooError> {
        match kind {
            Kind::Product => self.delete_product(id, true),
            Kind::Variation => self.delete_variation(parent, id),
            Kind::Customer => self.delete_customer(id, true),
            Kind::Order => self.delete_order(id, true),
        }
    }

    fn update_product(&self, id: u64, body: &Map<String, Json>) -> Result<(Json, Vec<Event>), WooError> {
        let now = self.now();
        let product = {
            let mut store = self.shared.lock_store();
            let Some(mut product) = store.products.get(&id).cloned() else {
                return Err(invalid_id(Kind::Product, 400));
            };
            store.apply_product(&mut product, body)?;
            product.date_modified = now;
            store.products.insert(id, product.clone());
            product
        };
        let json = self.render(|r| r.product(&product));
        Ok((json.clone(), vec![Event { topic: "product.updated".into(), id, payload: json }]))
    }

    fn delete_product(&self, id: u64, force: bool) -> Result<(Json, Vec<Event>), WooError> {
        let now = self.now();
        let json = {
            let mut store = self.shared.lock_store();
            let Some(product) = store.products.get(&id).cloned() else {
                return Err(invalid_id(Kind::Product, 404));
            };
            let base = self.shared.api_base();
            let json = Render { store: &store, zone: self.shared.zone(), api_base: &base }.product(&product);
            if force {
                for variation in &product.variations {
                    store.variations.remove(variation);
                }
                store.products.remove(&id);
            } else {
                if product.status == "trash" {
                    return Err(WooError::new(
                        410,
                        "woocommerce_rest_already_trashed",
                        "The product has already been deleted.",
                    ));
                }
                if let Some(p) = store.products.get_mut(&id) {
                    p.status = "trash".into();
                    p.date_modified = now;
                }
            }
            json
        };
        Ok((
            json,
            vec![Event { topic: "product.deleted".into(), id, payload: payload_for("product.deleted", id, None) }],
        ))
    }

    fn list_categories(&self) -> Result<Reply, WooError> {
        let params =
            self.list_params(&["id", "include", "name", "slug", "term_group", "description", "count"], "name", "asc")?;
        let store = self.shared.lock_store();
        let rows: Vec<Row> = store
            .categories
            .values()
            .map(|c| Row {
                id: c.id,
                created: DateTime::<Utc>::MIN_UTC,
                modified: DateTime::<Utc>::MIN_UTC,
                title: c.name.clone(),
                slug: c.slug.clone(),
                price: 0,
            })
            .collect();
        drop(store);
        Ok(self.page("products/categories", &params, rows, |r, id| {
            r.store.categories.get(&id).map(|c| r.category(c)).unwrap_or(Json::Null)
        }))
    }

    // ---- variations -----------------------------------------------------------------------

    fn parent_check(&self, store: &Store, parent: u64) -> Result<(), WooError> {
        match store.products.get(&parent) {
            Some(_) => Ok(()),
            None => Err(WooError::new(404, "woocommerce_rest_product_invalid_id", "Invalid ID.")),
        }
    }

    fn list_variations(&self, parent: u64) -> Result<Reply, WooError> {
        let params =
            self.list_params(&["date", "modified", "id", "include", "title", "slug", "menu_order"], "date", "desc")?;
        let skus: Option<Vec<String>> = self.param("sku").map(|s| s.split(',').map(|s| s.trim().to_string()).collect());
        let rows = {
            let store = self.shared.lock_store();
            self.parent_check(&store, parent)?;
            store
                .variations
                .values()
                .filter(|v| v.parent_id == parent)
                .filter(|v| skus.as_ref().is_none_or(|skus| skus.contains(&v.sku)))
                .map(|v| Row {
                    id: v.id,
                    created: v.date_created,
                    modified: v.date_modified,
                    title: v.sku.clone(),
                    slug: v.sku.clone(),
                    price: 0,
                })
                .collect()
        };
        let route = format!("products/{parent}/variations");
        Ok(self.page(&route, &params, rows, |r, id| {
            r.store.variations.get(&id).map(|v| r.variation(v)).unwrap_or(Json::Null)
        }))
    }

    fn get_variation(&self, parent: u64, id: u64) -> Result<Json, WooError> {
        self.render(|r| match r.store.variations.get(&id) {
            Some(v) if v.parent_id == parent => Ok(r.variation(v)),
            _ => Err(invalid_id(Kind::Variation, 404)),
        })
    }

    /// Saving a variation syncs its parent, which records the save as the parent's
    /// modification time; webhooks of `product.*` topics carry the variation itself.
    fn touch_parent(store: &mut Store, parent: u64, now: DateTime<Utc>) {
        if let Some(product) = store.products.get_mut(&parent) {
            product.date_modified = now;
        }
    }

    fn create_variation(&self, parent: u64, body: &Map<String, Json>) -> Result<(Json, Vec<Event>), WooError> {
        let now = self.now();
        let variation = {
            let mut store = self.shared.lock_store();
            self.parent_check(&store, parent)?;
            let variation = store.new_variation(parent, body, now)?;
            store.variations.insert(variation.id, variation.clone());
            if let Some(product) = store.products.get_mut(&parent) {
                product.variations.push(variation.id);
            }
            Self::touch_parent(&mut store, parent, now);
            variation
        };
        let json = self.render(|r| r.variation(&variation));
        let mut payload = json.clone();
        payload["type"] = json!("variation");
        Ok((json, vec![Event { topic: "product.created".into(), id: variation.id, payload }]))
    }

    fn update_variation(&self, parent: u64, id: u64, body: &Map<String, Json>) -> Result<(Json, Vec<Event>), WooError> {
        let now = self.now();
        let variation = {
            let mut store = self.shared.lock_store();
            self.parent_check(&store, parent)?;
            let Some(mut variation) = store.variations.get(&id).filter(|v| v.parent_id == parent).cloned() else {
                return Err(invalid_id(Kind::Variation, 400));
            };
            store.apply_variation(&mut variation, body)?;
            variation.date_modified = now;
            store.variations.insert(id, variation.clone());
            Self::touch_parent(&mut store, parent, now);
            variation
        };
        let json = self.render(|r| r.variation(&variation));
        let mut payload = json.clone();
        payload["type"] = json!("variation");
        Ok((json, vec![Event { topic: "product.updated".into(), id, payload }]))
    }

    fn delete_variation(&self, parent: u64, id: u64) -> Result<(Json, Vec<Event>), WooError> {
        let now = self.now();
        let json = {
            let mut store = self.shared.lock_store();
            let Some(variation) = store.variations.get(&id).filter(|v| v.parent_id == parent).cloned() else {
                return Err(invalid_id(Kind::Variation, 404));
            };
            let base = self.shared.api_base();
            let json = Render { store: &store, zone: self.shared.zone(), api_base: &base }.variation(&variation);
            store.variations.remove(&id);
            if let Some(product) = store.products.get_mut(&parent) {
                product.variations.retain(|v| *v != id);
            }
            Self::touch_parent(&mut store, parent, now);
            json
        };
        Ok((
            json,
            vec![Event { topic: "product.deleted".into(), id, payload: payload_for("product.deleted", id, None) }],
        ))
    }

    // ---- batch ----------------------------------------------------------------------------

    /// `{create, update, delete}` answered by arrays in the same order; an item that fails
    /// carries `{id, error: {code, message, data}}` while the response stays 200.
    ///
    /// One known difference: WooCommerce runs batch items through `create_item`/`update_item`
    /// without the schema's type checks, so a price sent as a number is coerced there; the
    /// simulator checks types in batches too (a `rest_invalid_param` item error), which is
    /// stricter than the shop and keeps a connector honest about sending strings.
    fn batch(&self, kind: Kind, parent: u64, body: &Map<String, Json>) -> Result<Reply, WooError> {
        if kind == Kind::Variation {
            let store = self.shared.lock_store();
            self.parent_check(&store, parent)?;
        }
        let list = |name: &str| body.get(name).and_then(Json::as_array).cloned().unwrap_or_default();
        let (creates, updates, deletes) = (list("create"), list("update"), list("delete"));
        let total = creates.len() + updates.len() + deletes.len();
        let limit = self.shared.config.batch_limit;
        if total > limit {
            return Err(WooError::new(
                413,
                "woocommerce_rest_request_entity_too_large",
                format!("Unable to accept more than {limit} items for this request."),
            ));
        }
        {
            let mut counters = lock(&self.shared.counters);
            counters.batch_requests += 1;
            counters.batch_items += total as u64;
        }
        let injected = |id: u64| -> Option<Json> {
            let mut faults = self.shared.lock_faults();
            if faults.batch_item_failures == 0 {
                return None;
            }
            faults.batch_item_failures -= 1;
            let error = WooError::new(
                500,
                &format!("woocommerce_rest_{}_not_saved", kind.post_type()),
                "Simulated database error: the item was not saved (fault injection).",
            );
            Some(json!({"id": id, "error": error.to_json()}))
        };
        let failed = |id: u64, error: WooError| json!({"id": id, "error": error.to_json()});
        let mut response = Map::new();
        let mut events = Vec::new();
        if body.contains_key("create") && !creates.is_empty() {
            let mut results = Vec::new();
            for item in &creates {
                if let Some(error) = injected(0) {
                    results.push(error);
                    continue;
                }
                let Some(object) = item.as_object() else {
                    results.push(failed(0, WooError::new(400, "rest_invalid_param", "Each item must be an object.")));
                    continue;
                };
                match self.create_one(kind, parent, object) {
                    Ok((json, item_events)) => {
                        results.push(json);
                        events.extend(item_events);
                    }
                    Err(error) => results.push(failed(0, error)),
                }
            }
            response.insert("create".into(), Json::Array(results));
        }
        if !updates.is_empty() {
            let mut results = Vec::new();
            for item in &updates {
                let id = item
                    .get("id")
                    .and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
                    .unwrap_or(0);
                if let Some(error) = injected(id) {
                    results.push(error);
                    continue;
                }
                let object = item.as_object().cloned().unwrap_or_default();
                match self.update_one(kind, parent, id, &object) {
                    Ok((json, item_events)) => {
                        results.push(json);
                        events.extend(item_events);
                    }
                    Err(error) => results.push(failed(id, error)),
                }
            }
            response.insert("update".into(), Json::Array(results));
        }
        if !deletes.is_empty() {
            let mut results = Vec::new();
            for item in &deletes {
                let id = item.as_u64().or_else(|| item.as_str().and_then(|s| s.parse().ok())).unwrap_or(0);
                if id == 0 {
                    continue;
                }
                match self.delete_one(kind, parent, id) {
                    Ok((json, item_events)) => {
                        results.push(json);
                        events.extend(item_events);
                    }
                    Err(error) => results.push(failed(id, error)),
                }
            }
            response.insert("delete".into(), Json::Array(results));
        }
        Ok(Reply::ok(Json::Object(response)).with_events(events))
    }

    // ---- customers ------------------------------------------------------------------------

    fn list_customers(&self) -> Result<Reply, WooError> {
        let params = self.list_params(&["id", "include", "name", "registered_date"], "name", "asc")?;
        let email = self.param("email").map(str::to_ascii_lowercase);
        let role = self.param("role").unwrap_or("customer");
        let rows = {
            let store = self.shared.lock_store();
            store
                .customers
                .values()
                .filter(|c| email.as_ref().is_none_or(|e| c.email.to_ascii_lowercase() == *e))
                .filter(|_| role == "customer" || role == "all")
                .map(|c| Row {
                    id: c.id,
                    created: c.date_created,
                    modified: c.date_modified,
                    title: c.username.clone(),
                    slug: c.username.clone(),
                    price: 0,
                })
                .collect()
        };
        Ok(self.page("customers", &params, rows, |r, id| {
            r.store.customers.get(&id).map(|c| r.customer(c)).unwrap_or(Json::Null)
        }))
    }

    fn get_customer(&self, id: u64) -> Result<Json, WooError> {
        self.render(|r| {
            r.store.customers.get(&id).map(|c| r.customer(c)).ok_or_else(|| invalid_id(Kind::Customer, 404))
        })
    }

    fn create_customer(&self, body: &Map<String, Json>) -> Result<(Json, Vec<Event>), WooError> {
        if body.get("id").and_then(Json::as_u64).is_some_and(|id| id > 0) {
            return Err(WooError::new(400, "woocommerce_rest_customer_exists", "Cannot create existing resource."));
        }
        let now = self.now();
        let customer = {
            let mut store = self.shared.lock_store();
            let customer = store.new_customer(body, now)?;
            store.customers.insert(customer.id, customer.clone());
            customer
        };
        let json = self.render(|r| r.customer(&customer));
        Ok((json.clone(), vec![Event { topic: "customer.created".into(), id: customer.id, payload: json }]))
    }

    fn update_customer(&self, id: u64, body: &Map<String, Json>) -> Result<(Json, Vec<Event>), WooError> {
        let now = self.now();
        let customer = {
            let mut store = self.shared.lock_store();
            let Some(mut customer) = store.customers.get(&id).cloned() else {
                return Err(invalid_id(Kind::Customer, 400));
            };
            store.apply_customer(&mut customer, body)?;
            customer.date_modified = now;
            store.customers.insert(id, customer.clone());
            customer
        };
        let json = self.render(|r| r.customer(&customer));
        Ok((json.clone(), vec![Event { topic: "customer.updated".into(), id, payload: json }]))
    }

    fn delete_customer(&self, id: u64, force: bool) -> Result<(Json, Vec<Event>), WooError> {
        if !force {
            return Err(WooError::new(
                501,
                "woocommerce_rest_trash_not_supported",
                "Customers do not support trashing.",
            ));
        }
        let json = self.get_customer(id)?;
        self.shared.lock_store().customers.remove(&id);
        Ok((
            json,
            vec![Event { topic: "customer.deleted".into(), id, payload: payload_for("customer.deleted", id, None) }],
        ))
    }

    // ---- orders ---------------------------------------------------------------------------

    fn list_orders(&self) -> Result<Reply, WooError> {
        let params = self.list_params(&["date", "modified", "id", "include", "title", "slug"], "date", "desc")?;
        let statuses: Vec<String> = self
            .param("status")
            .unwrap_or("any")
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        for status in &statuses {
            if status != "any" && !ORDER_STATUSES.contains(&status.as_str()) {
                return Err(WooError::invalid_param(
                    "status",
                    format!("status[0] is not one of any, {}.", ORDER_STATUSES.join(", ")),
                ));
            }
        }
        let customer: Option<u64> = self.param("customer").and_then(|c| c.parse().ok());
        let rows = {
            let store = self.shared.lock_store();
            store
                .orders
                .values()
                .filter(|o| {
                    if statuses.iter().any(|s| s == "any") { o.status != "trash" } else { statuses.contains(&o.status) }
                })
                .filter(|o| customer.is_none_or(|c| o.customer_id == c))
                .map(|o| Row {
                    id: o.id,
                    created: o.date_created,
                    modified: o.date_modified,
                    title: o.number.clone(),
                    slug: o.number.clone(),
                    price: o.total(),
                })
                .collect()
        };
        Ok(self
            .page("orders", &params, rows, |r, id| r.store.orders.get(&id).map(|o| r.order(o)).unwrap_or(Json::Null)))
    }

    fn get_order(&self, id: u64) -> Result<Json, WooError> {
        self.render(|r| r.store.orders.get(&id).map(|o| r.order(o)).ok_or_else(|| invalid_id(Kind::Order, 404)))
    }

    fn create_order(&self, body: &Map<String, Json>) -> Result<(Json, Vec<Event>), WooError> {
        let now = self.now();
        let mut store = self.shared.lock_store();
        let mut lines = Vec::new();
        for item in body.get("line_items").and_then(Json::as_array).into_iter().flatten() {
            let product_id = item.get("product_id").and_then(Json::as_u64).unwrap_or(0);
            let variation_id = item.get("variation_id").and_then(Json::as_u64).unwrap_or(0);
            let quantity = item.get("quantity").and_then(Json::as_i64).unwrap_or(1);
            if store.sellable(product_id, variation_id).is_none() {
                return Err(WooError::new(
                    400,
                    "woocommerce_rest_invalid_product_id",
                    "Product ID provided is invalid.",
                ));
            }
            lines.push((product_id, variation_id, quantity));
        }
        let coupon = body
            .get("coupon_lines")
            .and_then(Json::as_array)
            .and_then(|c| c.first())
            .and_then(|c| c.get("code"))
            .and_then(Json::as_str)
            .map(str::to_string);
        let shipping = body.get("shipping_lines").and_then(Json::as_array).and_then(|s| s.first()).map(|s| {
            (
                s.get("method_id").and_then(Json::as_str).unwrap_or("flat_rate").to_string(),
                s.get("method_title").and_then(Json::as_str).unwrap_or("Flat rate").to_string(),
                s.get("total").and_then(Json::as_str).and_then(parse_money).unwrap_or(0),
            )
        });
        let spec = OrderSpec {
            customer_id: body.get("customer_id").and_then(Json::as_u64).unwrap_or(0),
            billing: body.get("billing").and_then(Json::as_object).cloned(),
            shipping_address: body.get("shipping").and_then(Json::as_object).cloned(),
            lines,
            coupon,
            shipping,
            payment_method: body.get("payment_method").and_then(Json::as_str).unwrap_or("bacs").to_string(),
            status: body.get("status").and_then(Json::as_str).unwrap_or("pending").to_string(),
            set_paid: body.get("set_paid").and_then(Json::as_bool).unwrap_or(false),
        };
        if !ORDER_STATUSES.contains(&spec.status.as_str()) {
            return Err(WooError::invalid_param(
                "status",
                format!("status is not one of {}.", ORDER_STATUSES.join(", ")),
            ));
        }
        let order =
            build_order(&mut store, spec, now, self.shared.config.tax_basis_points, &self.shared.config.currency)?;
        drop(store);
        let json = self.render(|r| r.order(&order));
        Ok((json.clone(), vec![Event { topic: "order.created".into(), id: order.id, payload: json }]))
    }

    fn update_order(&self, id: u64, body: &Map<String, Json>) -> Result<(Json, Vec<Event>), WooError> {
        let now = self.now();
        let order = {
            let mut store = self.shared.lock_store();
            let Some(mut order) = store.orders.get(&id).cloned() else {
                return Err(invalid_id(Kind::Order, 400));
            };
            if let Some(status) = body.get("status") {
                let Some(status) = status.as_str().filter(|s| ORDER_STATUSES.contains(s)) else {
                    return Err(WooError::invalid_param(
                        "status",
                        format!("status is not one of {}.", ORDER_STATUSES.join(", ")),
                    ));
                };
                if status != order.status {
                    let note = format!(
                        "Order status changed from {} to {}.",
                        status_label(&order.status),
                        status_label(status)
                    );
                    store.add_note(id, &note, false, false, now);
                    order.status = status.to_string();
                    if status == "completed" && order.date_completed.is_none() {
                        order.date_completed = Some(now);
                    }
                }
            }
            if body.get("set_paid").and_then(Json::as_bool) == Some(true) && order.date_paid.is_none() {
                order.date_paid = Some(now);
                for line in order.line_items.clone() {
                    store.reduce_stock(line.product_id, line.variation_id, line.quantity, now);
                }
                if order.status == "pending" {
                    order.status = "processing".into();
                }
            }
            for (name, target) in [("billing", &mut order.billing), ("shipping", &mut order.shipping)] {
                if let Some(address) = body.get(name).and_then(Json::as_object) {
                    for (key, value) in address {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
            if let Some(note) = body.get("customer_note").and_then(Json::as_str) {
                order.customer_note = note.to_string();
            }
            if let Some(value) = body.get("transaction_id").and_then(Json::as_str) {
                order.transaction_id = value.to_string();
            }
            if let Some(entries) = body.get("meta_data").and_then(Json::as_array) {
                for entry in entries {
                    let Some(key) = entry.get("key").and_then(Json::as_str) else { continue };
                    let value = entry.get("value").cloned().unwrap_or(Json::Null);
                    match order.meta_data.iter_mut().find(|m| m.key == key) {
                        Some(existing) => existing.value = value,
                        None => {
                            let meta_id = store.next_other_id();
                            order.meta_data.push(super::state::Meta { id: meta_id, key: key.to_string(), value });
                        }
                    }
                }
            }
            order.date_modified = now;
            store.orders.insert(id, order.clone());
            order
        };
        let json = self.render(|r| r.order(&order));
        Ok((json.clone(), vec![Event { topic: "order.updated".into(), id, payload: json }]))
    }

    fn delete_order(&self, id: u64, force: bool) -> Result<(Json, Vec<Event>), WooError> {
        let json = self.get_order(id)?;
        let mut store = self.shared.lock_store();
        if force {
            store.orders.remove(&id);
        } else if let Some(order) = store.orders.get_mut(&id) {
            order.status = "trash".into();
        }
        Ok((json, vec![Event { topic: "order.deleted".into(), id, payload: payload_for("order.deleted", id, None) }]))
    }

    fn list_notes(&self, order_id: u64) -> Result<Reply, WooError> {
        self.get_order(order_id)?;
        let body = self.render(|r| {
            let mut notes: Vec<Json> = r.store.notes.get(&order_id).into_iter().flatten().map(|n| r.note(n)).collect();
            notes.reverse();
            Json::Array(notes)
        });
        Ok(Reply::ok(body))
    }

    fn create_note(&self, order_id: u64, body: &Map<String, Json>) -> Result<Reply, WooError> {
        self.get_order(order_id)?;
        let Some(text) = body.get("note").and_then(Json::as_str).filter(|n| !n.is_empty()) else {
            return Err(WooError::new(
                400,
                "woocommerce_rest_shop_order_invalid_order_note",
                "Cannot create order note, please provide a note.",
            ));
        };
        let customer_note = body.get("customer_note").and_then(Json::as_bool).unwrap_or(false);
        let by_user = body.get("added_by_user").and_then(Json::as_bool).unwrap_or(false);
        let now = self.now();
        let note = self.shared.lock_store().add_note(order_id, text, customer_note, by_user, now);
        Ok(Reply::created(self.render(|r| r.note(&note))))
    }

    fn list_refunds(&self, order_id: u64) -> Result<Reply, WooError> {
        self.get_order(order_id)?;
        let body = self.render(|r| {
            let order = r.store.orders.get(&order_id);
            let refunds = order.map(|o| {
                o.refunds.iter().rev().filter_map(|id| r.store.refunds.get(id)).map(|x| r.refund(x)).collect()
            });
            Json::Array(refunds.unwrap_or_default())
        });
        Ok(Reply::ok(body))
    }

    fn get_refund(&self, order_id: u64, id: u64) -> Result<Reply, WooError> {
        self.render(|r| match r.store.refunds.get(&id) {
            Some(refund) if refund.order_id == order_id => Ok(Reply::ok(r.refund(refund))),
            _ => Err(WooError::new(404, "woocommerce_rest_shop_order_refund_invalid_id", "Invalid ID.")),
        })
    }

    fn create_refund(&self, order_id: u64, body: &Map<String, Json>) -> Result<Reply, WooError> {
        let now = self.now();
        let refund = {
            let mut store = self.shared.lock_store();
            let Some(order) = store.orders.get(&order_id).cloned() else {
                return Err(WooError::new(404, "woocommerce_rest_shop_order_invalid_id", "Invalid order ID."));
            };
            let amount = match body.get("amount") {
                Some(Json::String(text)) => parse_money(text),
                Some(Json::Number(n)) => n.as_f64().map(|f| (f * 100.0).round() as i64),
                _ => None,
            };
            let Some(amount) = amount.filter(|a| *a > 0) else {
                return Err(WooError::new(
                    400,
                    "woocommerce_rest_invalid_order_refund",
                    "Refund amount must be greater than zero.",
                ));
            };
            let refunded: i64 = order.refunds.iter().filter_map(|id| store.refunds.get(id)).map(|r| r.amount).sum();
            if amount > order.total() - refunded {
                return Err(WooError::new(
                    500,
                    "woocommerce_rest_cannot_create_order_refund",
                    "Invalid refund amount.",
                ));
            }
            let api_refund = body.get("api_refund").and_then(Json::as_bool).unwrap_or(true);
            if api_refund && order.payment_method != "sim_card" {
                return Err(WooError::new(
                    500,
                    "woocommerce_rest_cannot_create_order_refund",
                    "The payment gateway for this order does not support automatic refunds.",
                ));
            }
            let restock = body.get("api_restock").and_then(Json::as_bool).unwrap_or(true);
            let mut lines = Vec::new();
            for item in body.get("line_items").and_then(Json::as_array).into_iter().flatten() {
                let item_id = item
                    .get("id")
                    .and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
                    .unwrap_or(0);
                let Some(line) = order.line_items.iter().find(|l| l.id == item_id) else { continue };
                let quantity = item
                    .get("quantity")
                    .and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
                    .unwrap_or(0);
                let total = item
                    .get("refund_total")
                    .and_then(|v| {
                        v.as_str().and_then(parse_money).or_else(|| v.as_f64().map(|f| (f * 100.0).round() as i64))
                    })
                    .unwrap_or(0);
                let tax = item
                    .get("refund_tax")
                    .and_then(Json::as_array)
                    .map(|taxes| {
                        taxes
                            .iter()
                            .filter_map(|t| {
                                t.get("refund_total").and_then(|v| {
                                    v.as_str()
                                        .and_then(parse_money)
                                        .or_else(|| v.as_f64().map(|f| (f * 100.0).round() as i64))
                                })
                            })
                            .sum()
                    })
                    .unwrap_or(0);
                if restock && quantity > 0 {
                    store.reduce_stock(line.product_id, line.variation_id, -quantity, now);
                }
                let id = store.next_item_id();
                lines.push(RefundLine {
                    id,
                    refunded_item_id: line.id,
                    name: line.name.clone(),
                    product_id: line.product_id,
                    variation_id: line.variation_id,
                    sku: line.sku.clone(),
                    quantity,
                    total,
                    total_tax: tax,
                });
            }
            let refund = Refund {
                id: store.next_post_id(),
                order_id,
                amount,
                reason: body.get("reason").and_then(Json::as_str).unwrap_or("").to_string(),
                refunded_payment: api_refund,
                line_items: lines,
                date_created: now,
            };
            store.refunds.insert(refund.id, refund.clone());
            let fully = refunded + amount >= order.total();
            if let Some(order) = store.orders.get_mut(&order_id) {
                order.refunds.push(refund.id);
                order.date_modified = now;
                if fully {
                    order.status = "refunded".into();
                }
            }
            store.add_note(order_id, &format!("Refunded {}.", money(amount)), false, false, now);
            refund
        };
        let (json, order_json) =
            self.render(|r| (r.refund(&refund), r.store.orders.get(&order_id).map(|o| r.order(o))));
        let events = order_json
            .map(|payload| Event { topic: "order.updated".into(), id: order_id, payload })
            .into_iter()
            .collect();
        Ok(Reply::created(json).with_events(events))
    }

    // ---- webhooks -------------------------------------------------------------------------

    fn list_webhooks(&self) -> Result<Reply, WooError> {
        let params = self.list_params(&["date", "id", "include", "title"], "date", "desc")?;
        let status = self.param("status").unwrap_or("all").to_string();
        let rows = {
            let store = self.shared.lock_store();
            store
                .webhooks
                .values()
                .filter(|w| status == "all" || w.status == status)
                .map(|w| Row {
                    id: w.id,
                    created: w.date_created,
                    modified: w.date_modified,
                    title: w.name.clone(),
                    slug: w.name.clone(),
                    price: 0,
                })
                .collect()
        };
        Ok(self.page("webhooks", &params, rows, |r, id| {
            r.store.webhooks.get(&id).map(|w| r.webhook(w)).unwrap_or(Json::Null)
        }))
    }

    fn get_webhook(&self, id: u64) -> Result<Reply, WooError> {
        self.render(|r| r.store.webhooks.get(&id).map(|w| Reply::ok(r.webhook(w))))
            .ok_or_else(|| WooError::new(404, "woocommerce_rest_webhook_invalid_id", "Invalid ID."))
    }

    fn apply_webhook(webhook: &mut Webhook, body: &Map<String, Json>) -> Result<(), WooError> {
        if let Some(topic) = body.get("topic") {
            let topic = topic.as_str().unwrap_or("").to_ascii_lowercase();
            if !WEBHOOK_TOPICS.contains(&topic.as_str()) && !topic.starts_with("action.") {
                return Err(WooError::new(
                    400,
                    "woocommerce_rest_webhook_invalid_topic",
                    "Webhook topic is required and must be valid.",
                ));
            }
            webhook.topic = topic;
        }
        if let Some(url) = body.get("delivery_url") {
            let url = url.as_str().unwrap_or("");
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(WooError::new(
                    400,
                    "woocommerce_rest_webhook_invalid_delivery_url",
                    "Webhook delivery URL must be a valid URL starting with http:// or https://.",
                ));
            }
            webhook.delivery_url = url.to_string();
        }
        if let Some(name) = body.get("name").and_then(Json::as_str) {
            webhook.name = name.to_string();
        }
        if let Some(status) = body.get("status") {
            let Some(status) = status.as_str().filter(|s| ["active", "paused", "disabled"].contains(s)) else {
                return Err(WooError::invalid_param("status", "status is not one of active, paused, disabled."));
            };
            webhook.status = status.to_string();
        }
        if let Some(secret) = body.get("secret").and_then(Json::as_str) {
            webhook.secret = secret.to_string();
        }
        Ok(())
    }

    fn create_webhook(&self, body: &Map<String, Json>) -> Result<Reply, WooError> {
        if !body.contains_key("topic") {
            return Err(WooError::new(
                400,
                "woocommerce_rest_webhook_invalid_topic",
                "Webhook topic is required and must be valid.",
            ));
        }
        if !body.contains_key("delivery_url") {
            return Err(WooError::new(
                400,
                "woocommerce_rest_webhook_invalid_delivery_url",
                "Webhook delivery URL must be a valid URL starting with http:// or https://.",
            ));
        }
        let now = self.now();
        let zone = self.shared.zone();
        let mut webhook = Webhook {
            id: 0,
            name: format!("Webhook created on {}", zone.local(now)),
            status: "active".into(),
            topic: String::new(),
            delivery_url: String::new(),
            // WooCommerce defaults the secret to one derived from the API user.
            secret: default_secret(&self.shared.config.keys[0].consumer_secret),
            failure_count: 0,
            date_created: now,
            date_modified: now,
        };
        Self::apply_webhook(&mut webhook, body)?;
        webhook.id = self.shared.lock_store().next_other_id();
        self.shared.lock_store().webhooks.insert(webhook.id, webhook.clone());
        if webhook.status == "active" {
            tokio::spawn(super::webhooks::ping(self.shared.clone(), webhook.id, webhook.delivery_url.clone()));
        }
        Ok(Reply::created(self.render(|r| r.webhook(&webhook))))
    }

    fn update_webhook(&self, id: u64, body: &Map<String, Json>) -> Result<Reply, WooError> {
        let now = self.now();
        let webhook = {
            let mut store = self.shared.lock_store();
            let Some(mut webhook) = store.webhooks.get(&id).cloned() else {
                return Err(WooError::new(400, "woocommerce_rest_webhook_invalid_id", "Invalid ID."));
            };
            Self::apply_webhook(&mut webhook, body)?;
            webhook.date_modified = now;
            store.webhooks.insert(id, webhook.clone());
            webhook
        };
        Ok(Reply::ok(self.render(|r| r.webhook(&webhook))))
    }

    fn delete_webhook(&self, id: u64) -> Result<Reply, WooError> {
        if !self.flag("force") {
            return Err(WooError::new(
                501,
                "woocommerce_rest_trash_not_supported",
                "Webhooks do not support trashing.",
            ));
        }
        let reply = self.get_webhook(id)?;
        self.shared.lock_store().webhooks.remove(&id);
        Ok(reply)
    }
}

/// A secret derived from the API user's, as WooCommerce defaults it when none is given.
fn default_secret(consumer_secret: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(format!("webhook-secret|{consumer_secret}").as_bytes())[..16])
}

fn invalid_id(kind: Kind, status: u16) -> WooError {
    WooError::new(status, &format!("woocommerce_rest_{}_invalid_id", kind.post_type()), "Invalid ID.")
}

fn status_label(status: &str) -> &str {
    match status {
        "pending" => "Pending payment",
        "processing" => "Processing",
        "on-hold" => "On hold",
        "completed" => "Completed",
        "cancelled" => "Cancelled",
        "refunded" => "Refunded",
        "failed" => "Failed",
        other => other,
    }
}

/// What an order is made of, before its totals are computed.
pub(crate) struct OrderSpec {
    pub customer_id: u64,
    pub billing: Option<Map<String, Json>>,
    pub shipping_address: Option<Map<String, Json>>,
    /// (product id, variation id, quantity).
    pub lines: Vec<(u64, u64, i64)>,
    pub coupon: Option<String>,
    /// (method id, title, cost in cents).
    pub shipping: Option<(String, String, i64)>,
    pub payment_method: String,
    pub status: String,
    pub set_paid: bool,
}

/// The shop's coupons: code to percentage in basis points.
pub const COUPONS: [(&str, i64); 2] = [("save10", 1000), ("welcome5", 500)];

/// Builds an order with WooCommerce's arithmetic (tax exclusive prices, one tax rate, a
/// percentage coupon spread over the lines, taxed shipping), stores it, and reduces stock when
/// it is paid.
pub(crate) fn build_order(
    store: &mut Store,
    spec: OrderSpec,
    now: DateTime<Utc>,
    tax_basis_points: i64,
    currency: &str,
) -> Result<Order, WooError> {
    let coupon = match &spec.coupon {
        None => None,
        Some(code) => {
            let code = code.to_ascii_lowercase();
            let Some((_, rate)) = COUPONS.iter().find(|(c, _)| *c == code) else {
                return Err(WooError::new(
                    400,
                    "woocommerce_rest_invalid_coupon",
                    format!("Coupon \"{code}\" does not exist!"),
                ));
            };
            Some((code, *rate))
        }
    };
    let mut line_items = Vec::new();
    let mut discount = 0;
    let mut discount_tax = 0;
    for (product_id, variation_id, quantity) in &spec.lines {
        let Some((product_id, variation_id, name, sku, price)) = store.sellable(*product_id, *variation_id) else {
            return Err(WooError::new(400, "woocommerce_rest_invalid_product_id", "Product ID provided is invalid."));
        };
        let subtotal = price * quantity;
        let line_discount = coupon.as_ref().map_or(0, |(_, rate)| apply_rate(subtotal, *rate));
        let total = subtotal - line_discount;
        let subtotal_tax = apply_rate(subtotal, tax_basis_points);
        let total_tax = apply_rate(total, tax_basis_points);
        discount += line_discount;
        discount_tax += subtotal_tax - total_tax;
        line_items.push(LineItem {
            id: store.next_item_id(),
            name,
            product_id,
            variation_id,
            sku,
            quantity: *quantity,
            price,
            subtotal,
            subtotal_tax,
            total,
            total_tax,
        });
    }
    let coupon_lines = match coupon {
        Some((code, _)) => vec![CouponLine { id: store.next_item_id(), code, discount, discount_tax }],
        None => Vec::new(),
    };
    let shipping_lines = match spec.shipping {
        Some((method_id, method_title, cost)) => vec![ShippingLine {
            id: store.next_item_id(),
            method_id,
            method_title,
            total: cost,
            total_tax: apply_rate(cost, tax_basis_points),
        }],
        None => Vec::new(),
    };
    let customer = store.customers.get(&spec.customer_id).cloned();
    let billing = spec
        .billing
        .unwrap_or_else(|| customer.as_ref().map(|c| c.billing.clone()).unwrap_or_else(|| empty_address(true)));
    let shipping = spec
        .shipping_address
        .unwrap_or_else(|| customer.as_ref().map(|c| c.shipping.clone()).unwrap_or_else(|| empty_address(false)));
    let id = store.next_post_id();
    let paid = spec.set_paid || spec.payment_method == "sim_card";
    let mut status = spec.status;
    if paid && status == "pending" {
        status = "processing".into();
    }
    let order = Order {
        id,
        number: id.to_string(),
        order_key: format!("wc_order_{:013x}", id.wrapping_mul(0x9e37_79b9)),
        status,
        currency: currency.to_string(),
        prices_include_tax: false,
        customer_id: customer.as_ref().map_or(0, |c| c.id),
        billing,
        shipping,
        payment_method_title: match spec.payment_method.as_str() {
            "sim_card" => "Credit card (simulated)".into(),
            "bacs" => "Direct bank transfer".into(),
            other => other.to_string(),
        },
        transaction_id: if spec.payment_method == "sim_card" { format!("txn_{id}") } else { String::new() },
        payment_method: spec.payment_method,
        customer_note: String::new(),
        line_items,
        shipping_lines,
        coupon_lines,
        tax_rate_id: 1,
        tax_basis_points,
        meta_data: Vec::new(),
        refunds: Vec::new(),
        date_created: now,
        date_modified: now,
        date_paid: paid.then_some(now),
        date_completed: None,
    };
    if paid {
        for line in &order.line_items {
            store.reduce_stock(line.product_id, line.variation_id, line.quantity, now);
        }
    }
    store.orders.insert(id, order.clone());
    Ok(order)
}

/// The REST JSON of a stored order, for the control API.
pub(crate) fn render_order(shared: &Shared, id: u64) -> Option<Json> {
    let store = shared.lock_store();
    let base = shared.api_base();
    let render = Render { store: &store, zone: shared.zone(), api_base: &base };
    store.orders.get(&id).map(|o| render.order(o))
}
