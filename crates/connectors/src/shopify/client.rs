//! The GraphQL plumbing of the `shopify` connector: requests with the access token, the
//! cost-based limiter, and failures turned into [`ConnectorError`] kinds.
//!
//! Shopify meters the Admin GraphQL API with a leaky bucket of cost points per app and shop.
//! Every response carries `extensions.cost` (requested and actual cost, and the bucket's
//! `maximumAvailable`, `currentlyAvailable` and `restoreRate`). The limiter keeps a projection of
//! the bucket from the last response, debits each call's estimated cost before it is sent (so
//! concurrent calls do not all go at once), and sleeps exactly until the projection covers the
//! estimate. A `THROTTLED` answer (HTTP 200 with a top-level error) is waited out for exactly
//! the missing points and retried: throttling never fails a record.

use crate::http::client::status_error;
use crate::http::config::parse_duration;
use crate::secret::Secret;
use crate::shopify::config::ShopifyConfig;
use crate::{ConnectorError, ErrorKind};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Largest response body read; a larger one is an invalid response, not an out-of-memory.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// How many `THROTTLED` answers one call waits out before it gives up as rate-limited.
const MAX_THROTTLE_RETRIES: u32 = 50;
/// Shopify's cap on the requested cost of one query.
pub const MAX_QUERY_COST: f64 = 1000.0;

pub struct ShopifyConnector {
    pub(crate) system: String,
    pub(crate) config: ShopifyConfig,
    pub(crate) endpoint: String,
    pub(crate) http: reqwest::Client,
    token: Secret,
    pub(crate) webhook_secret: Option<Secret>,
    pub(crate) overlap: Duration,
    pub(crate) bulk_timeout: Duration,
    pub(crate) webhook_tolerance: Duration,
    limiter: CostLimiter,
    pub(crate) caches: Mutex<Caches>,
    /// One bulk mutation at a time per shop (the rule before 2026-01, and the safe one after).
    pub(crate) bulk_lock: tokio::sync::Mutex<()>,
}

/// Lookups that are expensive to repeat: SKU to variant, location names, price lists.
#[derive(Default)]
pub(crate) struct Caches {
    /// SKU -> the variant and its inventory item.
    pub variants: HashMap<String, VariantIds>,
    /// Shopify location name -> id; filled once per connector.
    pub locations: Option<HashMap<String, String>>,
    /// Price list name -> (id, currency); filled once per connector.
    pub price_lists: Option<HashMap<String, (String, String)>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VariantIds {
    pub variant_id: String,
    pub inventory_item_id: String,
    pub product_id: String,
}

/// What the limiter did, for benchmarks and the run log.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CostStats {
    /// GraphQL requests sent, throttled ones included.
    pub calls: u64,
    /// Requests answered `THROTTLED` (waited out and retried).
    pub throttled: u64,
    /// Sum of `requestedQueryCost` of the answered requests.
    pub requested_cost: u64,
    /// Sum of `actualQueryCost`: what the bucket was really charged.
    pub actual_cost: u64,
    /// Time spent waiting for the bucket, before calls and after throttled answers.
    pub waited: Duration,
    /// The bucket as last reported.
    pub maximum_available: f64,
    pub restore_rate: f64,
}

struct LimiterState {
    /// Unknown until the first response reports the bucket.
    known: bool,
    maximum: f64,
    restore_rate: f64,
    /// Projected points available at `at`, after the debits of calls in flight.
    available: f64,
    at: Instant,
    /// Last requested cost per operation: the estimate of its next call.
    estimates: HashMap<&'static str, f64>,
    stats: CostStats,
}

struct CostLimiter {
    state: Mutex<LimiterState>,
}

impl CostLimiter {
    fn new() -> Self {
        CostLimiter {
            state: Mutex::new(LimiterState {
                known: false,
                maximum: 0.0,
                restore_rate: 0.0,
                available: 0.0,
                at: Instant::now(),
                estimates: HashMap::new(),
                stats: CostStats::default(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LimiterState> {
        // Every update leaves the numbers consistent before anything can panic.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until the projected bucket covers the operation's estimated cost, then debits it.
    /// Returns the estimate used.
    async fn admit(&self, operation: &'static str, default_estimate: f64) -> f64 {
        loop {
            let wait = {
                let mut state = self.lock();
                let estimate = state.estimates.get(operation).copied().unwrap_or(default_estimate);
                if !state.known || state.restore_rate <= 0.0 {
                    state.stats.calls += 1;
                    return estimate;
                }
                let now = Instant::now();
                let elapsed = now.duration_since(state.at).as_secs_f64();
                state.available = (state.available + elapsed * state.restore_rate).min(state.maximum);
                state.at = now;
                let needed = estimate.min(state.maximum);
                if state.available >= needed {
                    state.available -= needed;
                    state.stats.calls += 1;
                    return estimate;
                }
                let wait = Duration::from_secs_f64((needed - state.available) / state.restore_rate);
                state.stats.waited += wait;
                wait
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes the bucket's state from a response's `extensions.cost`.
    fn observe(&self, operation: &'static str, cost: Option<&Value>, throttled: bool) {
        let Some(cost) = cost else { return };
        let mut state = self.lock();
        if let Some(requested) = cost.get("requestedQueryCost").and_then(Value::as_f64) {
            state.estimates.insert(operation, requested);
            if !throttled {
                state.stats.requested_cost += requested as u64;
            }
        }
        if let Some(actual) = cost.get("actualQueryCost").and_then(Value::as_f64) {
            state.stats.actual_cost += actual as u64;
        }
        let status = cost.get("throttleStatus");
        let number = |name: &str| status.and_then(|status| status.get(name)).and_then(Value::as_f64);
        if let (Some(maximum), Some(current), Some(rate)) =
            (number("maximumAvailable"), number("currentlyAvailable"), number("restoreRate"))
        {
            state.known = true;
            state.maximum = maximum;
            state.restore_rate = rate;
            state.available = current;
            state.at = Instant::now();
            state.stats.maximum_available = maximum;
            state.stats.restore_rate = rate;
        }
    }

    /// How long until the bucket holds `requested` points again, after a `THROTTLED` answer.
    /// The points are reserved for the caller, who sends again after the wait without a
    /// second admission (the retry is counted as a call here).
    fn throttled_wait(&self, requested: f64) -> Duration {
        let mut state = self.lock();
        state.stats.throttled += 1;
        state.stats.calls += 1;
        let wait = if state.known && state.restore_rate > 0.0 {
            let needed = requested.min(state.maximum);
            let missing = (needed - state.available).max(0.0);
            state.available -= needed;
            state.at = Instant::now();
            Duration::from_secs_f64(missing / state.restore_rate)
        } else {
            Duration::from_secs(1)
        };
        state.stats.waited += wait;
        wait
    }

    fn stats(&self) -> CostStats {
        self.lock().stats.clone()
    }
}

impl ShopifyConnector {
    pub fn new(system: &str, config: ShopifyConfig) -> Result<Self, ConnectorError> {
        let context = format!("building the shopify connector {system:?}");
        let invalid = |message: String| ConnectorError::new(ErrorKind::InvalidRequest, context.clone(), message);
        if let Some((field, message)) = config.validate().first() {
            return Err(invalid(format!("{field}: {message}")));
        }
        // reqwest is built without a bundled crypto provider; install ring once per process
        // (an error only means one is installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let timeout = parse_duration(&config.timeout).map_err(invalid)?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .gzip(true)
            .user_agent(concat!("erpsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| invalid(format!("http client: {error}")))?;
        let token = config.access_token.resolve().map_err(|error| invalid(format!("access_token: {error}")))?;
        let webhook_secret = config
            .webhook_secret
            .as_ref()
            .map(|secret| secret.resolve().map_err(|error| invalid(format!("webhook_secret: {error}"))))
            .transpose()?;
        let endpoint =
            format!("{}/admin/api/{}/graphql.json", config.url.trim_end_matches('/'), config.api_version.trim());
        Ok(ShopifyConnector {
            system: system.to_string(),
            endpoint,
            http,
            token,
            webhook_secret,
            overlap: parse_duration(&config.overlap).map_err(invalid)?,
            bulk_timeout: parse_duration(&config.bulk_timeout).map_err(invalid)?,
            webhook_tolerance: parse_duration(&config.webhook_tolerance).map_err(invalid)?,
            limiter: CostLimiter::new(),
            caches: Mutex::new(Caches::default()),
            bulk_lock: tokio::sync::Mutex::new(()),
            config,
        })
    }

    /// The limiter's counters: calls, throttled answers, cost spent, time waited.
    pub fn stats(&self) -> CostStats {
        self.limiter.stats()
    }

    pub(crate) fn caches(&self) -> std::sync::MutexGuard<'_, Caches> {
        // The caches hold only whole entries; a panic elsewhere cannot leave one half-written.
        self.caches.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends one GraphQL operation and returns its `data`. `operation` names it for the cost
    /// estimates; `estimate` is its expected cost until a response tells the real one.
    /// Throttled answers are waited out and retried; every other failure is an error of its
    /// kind, a 200 with top-level `errors` included.
    pub(crate) async fn graphql(
        &self,
        operation: &'static str,
        estimate: f64,
        query: &str,
        variables: Value,
        context: &str,
    ) -> Result<Value, ConnectorError> {
        let body = serde_json::to_vec(&json!({ "query": query, "variables": variables }))
            .expect("JSON values always serialize");
        let mut throttled_answers = 0;
        let mut reserved = false;
        loop {
            // After a throttled answer the points waited for are already this call's.
            let estimate =
                if std::mem::take(&mut reserved) { estimate } else { self.limiter.admit(operation, estimate).await };
            let response = self
                .http
                .post(&self.endpoint)
                .header("X-Shopify-Access-Token", self.token.expose())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::ACCEPT, "application/json")
                .body(body.clone())
                .send()
                .await
                .map_err(|error| transport_error(context, error))?;
            let status = response.status();
            let headers = response.headers().clone();
            let bytes = read_body(response, context).await?;
            if !status.is_success() {
                return Err(shopify_status_error(context, status, &headers, &bytes));
            }
            let value: Value = serde_json::from_slice(&bytes).map_err(|error| {
                // A body cut off on the way: trying again can help.
                ConnectorError::new(ErrorKind::InvalidResponse, context, format!("the response is not JSON: {error}"))
                    .with_retryable(true)
            })?;
            let cost = value.get("extensions").and_then(|extensions| extensions.get("cost"));
            let errors = value.get("errors").and_then(Value::as_array).filter(|errors| !errors.is_empty());
            let is_throttled =
                errors.is_some_and(|errors| errors.iter().any(|error| error_code(error) == Some("THROTTLED")));
            self.limiter.observe(operation, cost, is_throttled);
            if is_throttled {
                throttled_answers += 1;
                let requested =
                    cost.and_then(|cost| cost.get("requestedQueryCost")).and_then(Value::as_f64).unwrap_or(estimate);
                let wait = self.limiter.throttled_wait(requested);
                if throttled_answers > MAX_THROTTLE_RETRIES {
                    return Err(ConnectorError::new(
                        ErrorKind::RateLimited,
                        context,
                        format!("throttled {throttled_answers} times in a row by the cost limit"),
                    )
                    .with_retry_after(wait));
                }
                tokio::time::sleep(wait).await;
                reserved = true;
                continue;
            }
            if let Some(errors) = errors {
                return Err(graphql_error(context, errors));
            }
            return match value.get("data") {
                Some(data) if data.is_object() => Ok(data.clone()),
                _ => Err(ConnectorError::new(ErrorKind::InvalidResponse, context, "the response has no data")),
            };
        }
    }
}

/// `errors[].extensions.code`.
fn error_code(error: &Value) -> Option<&str> {
    error.get("extensions").and_then(|extensions| extensions.get("code")).and_then(Value::as_str)
}

/// Top-level GraphQL `errors` in a 200 as one error of the kind of the first that has a code.
fn graphql_error(context: &str, errors: &[Value]) -> ConnectorError {
    let code = errors.iter().find_map(error_code);
    let kind = match code {
        Some("ACCESS_DENIED") => ErrorKind::Permission,
        Some("SHOP_INACTIVE") => ErrorKind::Permission,
        Some("INTERNAL_SERVER_ERROR") => ErrorKind::Unavailable,
        Some("NOT_FOUND") => ErrorKind::NotFound,
        // MAX_COST_EXCEEDED, BAD_REQUEST, syntax and schema errors: the request must change.
        _ => ErrorKind::InvalidRequest,
    };
    let messages: Vec<String> = errors
        .iter()
        .map(|error| {
            let message = error.get("message").and_then(Value::as_str).unwrap_or("unnamed error").trim();
            let path = error.get("path").and_then(Value::as_array).map(|path| {
                path.iter()
                    .map(|part| part.as_str().map_or(part.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(".")
            });
            match (error_code(error), path) {
                (Some(code), Some(path)) => format!("{code} at {path}: {message}"),
                (Some(code), None) => format!("{code}: {message}"),
                (None, Some(path)) => format!("at {path}: {message}"),
                (None, None) => message.to_string(),
            }
        })
        .collect();
    ConnectorError::new(kind, context, format!("GraphQL errors: {}", messages.join("; ")))
}

/// HTTP failures of the Admin API: 402 (shop frozen), 403 and 423 (shop locked) are
/// permission problems a person must solve; the rest as the http connector maps them.
fn shopify_status_error(
    context: &str,
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
) -> ConnectorError {
    let mut error = status_error(context, status, headers, body);
    if matches!(status.as_u16(), 402 | 403 | 423) {
        error.kind = ErrorKind::Permission;
        error.retryable = false;
    }
    error
}

pub(crate) async fn read_body(response: reqwest::Response, context: &str) -> Result<Vec<u8>, ConnectorError> {
    if response.content_length().is_some_and(|length| length as usize > MAX_BODY_BYTES) {
        return Err(ConnectorError::new(
            ErrorKind::InvalidResponse,
            context,
            "the response body is larger than 64 MiB",
        ));
    }
    let bytes = response.bytes().await.map_err(|error| transport_error(context, error))?;
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ConnectorError::new(
            ErrorKind::InvalidResponse,
            context,
            "the response body is larger than 64 MiB",
        ));
    }
    Ok(bytes.to_vec())
}

pub(crate) fn transport_error(context: &str, error: reqwest::Error) -> ConnectorError {
    let kind = if error.is_timeout() { ErrorKind::Timeout } else { ErrorKind::Unavailable };
    ConnectorError::new(kind, context, error.to_string()).with_source(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_errors_become_kinds() {
        let errors = [json!({"message": "Query cost is 1200", "extensions": {"code": "MAX_COST_EXCEEDED"}})];
        let error = graphql_error("reading", &errors);
        assert_eq!(error.kind, ErrorKind::InvalidRequest);
        assert!(!error.retryable);
        assert!(error.to_string().contains("MAX_COST_EXCEEDED"), "{error}");
        let errors = [json!({"message": "Access denied", "extensions": {"code": "ACCESS_DENIED"}, "path": ["orders"]})];
        let error = graphql_error("reading", &errors);
        assert_eq!(error.kind, ErrorKind::Permission);
        assert!(error.to_string().contains("at orders"), "{error}");
        let errors = [json!({"message": "Internal error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}})];
        assert!(graphql_error("reading", &errors).retryable);
    }

    #[test]
    fn shop_states_are_permission_problems() {
        let headers = reqwest::header::HeaderMap::new();
        for status in [402, 403, 423] {
            let error = shopify_status_error("x", StatusCode::from_u16(status).unwrap(), &headers, b"{}");
            assert_eq!(error.kind, ErrorKind::Permission, "{status}");
            assert!(!error.retryable);
        }
        assert_eq!(shopify_status_error("x", StatusCode::UNAUTHORIZED, &headers, b"").kind, ErrorKind::Auth);
        let error = shopify_status_error("x", StatusCode::SERVICE_UNAVAILABLE, &headers, b"");
        assert!(error.retryable);
    }

    #[tokio::test]
    async fn the_limiter_waits_for_the_missing_points_only() {
        let limiter = CostLimiter::new();
        let status = json!({"requestedQueryCost": 10, "actualQueryCost": 10,
            "throttleStatus": {"maximumAvailable": 100.0, "currentlyAvailable": 25.0, "restoreRate": 50.0}});
        limiter.observe("op", Some(&status), false);
        let started = Instant::now();
        limiter.admit("op", 10.0).await; // 25 -> 15, no wait
        limiter.admit("op", 10.0).await; // 15 -> 5, no wait
        assert!(started.elapsed() < Duration::from_millis(50));
        limiter.admit("op", 10.0).await; // 5 + 50/s: 100 ms for the missing 5
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(95) && waited < Duration::from_millis(300), "{waited:?}");
        assert_eq!(limiter.stats().calls, 3);
    }
}
