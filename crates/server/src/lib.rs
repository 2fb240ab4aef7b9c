//! The HTTP side of erpsync: `POST /webhooks/{system}` (verify, store in the inbox, then 2xx),
//! `GET /healthz` and `GET /readyz`, the admin API under `/api/v1` ([`api`]), Prometheus
//! `GET /metrics` ([`metrics`]) and the web dashboard at `/` ([`dashboard`]). The only crate
//! with HTTP request and response types of erpsync's own API. TLS is served directly when configured ([`tls`]).
//!
//! A delivery is answered 2xx only after it is durable in the inbox, so a sender that sees
//! success can forget it; anything else makes the sender retry. Deliveries are deduplicated by
//! the sender's delivery id.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use erpsync_connectors::ErrorKind;
use erpsync_engine::Engine;
use erpsync_engine::shutdown::Shutdown;
use erpsync_store::{InboxInsert, NewInboxDelivery};
use serde_json::json;
use std::sync::Arc;

pub mod api;
pub mod dashboard;
pub mod metrics;
pub mod tls;

/// The router, for `serve` and for tests in process.
pub fn router(engine: Arc<Engine>) -> Router {
    router_with_openapi(engine).0
}

/// The router and the OpenAPI document of its admin API (served at [`api::OPENAPI_PATH`]).
pub fn router_with_openapi(engine: Arc<Engine>) -> (Router, utoipa::openapi::OpenApi) {
    metrics::install();
    let max_body = engine.config().server.max_body_bytes;
    let (api, document) = api::router(engine.clone());
    let openapi = Arc::new(document.clone());
    let router = Router::new()
        .route("/webhooks/{system}", post(receive_webhook))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics::render))
        .route(api::OPENAPI_PATH, get(move || async move { axum::Json(openapi.as_ref().clone()) }))
        .merge(api)
        .merge(dashboard::router(engine.clone()))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(engine);
    (router, document)
}

/// Health and metrics alone (`/healthz`, `/readyz`, `/metrics`), for the processes that serve
/// no HTTP otherwise: `serve --role worker|scheduler --metrics-listen ADDR`.
pub fn ops_router(engine: Arc<Engine>) -> Router {
    metrics::install();
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics::render))
        .with_state(engine)
}

/// Serves [`ops_router`] over plain HTTP on `listener` until shutdown is requested.
pub async fn serve_ops(
    listener: tokio::net::TcpListener,
    engine: Arc<Engine>,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    tracing::info!(address = %listener.local_addr()?, "Health and metrics listening.");
    let stop = async move { shutdown.requested().await };
    axum::serve(listener, ops_router(engine)).with_graceful_shutdown(stop).await
}

/// Connections the kernel queues for `serve` before it accepts them. A shop's burst opens
/// thousands of webhook connections at once, and Shopify gives up on one that is not accepted
/// within a second and retries only a minute later: with tokio's default of 1024, a third of a
/// 5,000-order burst in `cargo xtask bench-scale` arrived only with that retry. (The kernel caps
/// the backlog at `net.core.somaxconn`.)
const LISTEN_BACKLOG: u32 = 8192;

/// Binds `[server] listen`, so that a taken port fails `serve` at start, not later.
pub async fn listen(engine: &Engine) -> std::io::Result<tokio::net::TcpListener> {
    let address = engine.config().server.listen;
    let socket = if address.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    // As std's bind does on Unix: a restarted serve can bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    let listener = socket.listen(LISTEN_BACKLOG)?;
    tracing::info!(address = %listener.local_addr()?, "HTTP server listening.");
    Ok(listener)
}

/// Serves on `listener` until shutdown is requested: HTTPS when `[server] tls_cert` and
/// `tls_key` are set, else plain HTTP.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Arc<Engine>,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    let settings = &engine.config().server;
    let tls = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key).map_err(std::io::Error::other)?),
        _ => None,
    };
    let stop = async move { shutdown.requested().await };
    match tls {
        Some(acceptor) => {
            let listener = tls::TlsListener::new(listener, acceptor)?;
            axum::serve(listener, router(engine)).with_graceful_shutdown(stop).await
        }
        None => axum::serve(listener, router(engine)).with_graceful_shutdown(stop).await,
    }
}

fn answer(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "status": status.as_u16(), "message": message.into() }))).into_response()
}

async fn receive_webhook(
    State(engine): State<Arc<Engine>>,
    Path(system): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let receiver = match engine.webhook_receiver(&system) {
        Ok(Some(receiver)) => receiver,
        Ok(None) => {
            count_delivery(&system, "not_found");
            return answer(StatusCode::NOT_FOUND, format!("system {system:?} does not receive webhooks"));
        }
        Err(erpsync_engine::EngineError::UnknownSystem { .. }) => {
            // Not the name as sent: labels stay bounded whatever strangers post.
            count_delivery("unknown", "not_found");
            return answer(StatusCode::NOT_FOUND, format!("no system {system:?} is configured"));
        }
        Err(error) => {
            tracing::error!(system = %system, error = %error, "Could not build the webhook receiver.");
            count_delivery(&system, "unavailable");
            return answer(StatusCode::SERVICE_UNAVAILABLE, "the receiver is not available");
        }
    };
    let pairs: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(name, value)| {
            value.to_str().ok().map(|value| (name.as_str().to_ascii_lowercase(), value.to_string()))
        })
        .collect();
    let now = Utc::now();
    let delivery = match receiver.verify(&pairs, &body, now) {
        Ok(delivery) => delivery,
        Err(error) => {
            // Say why to the sender's operator, but never echo the expected signature.
            tracing::warn!(system = %system, error = %error, "Webhook rejected.");
            count_delivery(&system, "rejected");
            let status = if error.kind == ErrorKind::Auth { StatusCode::UNAUTHORIZED } else { StatusCode::BAD_REQUEST };
            return answer(status, error.message);
        }
    };
    // A signed delivery that cannot be read (not JSON, a topic this system is not set up for,
    // no record id) is refused now, while the sender can still see why, and never stored.
    if let Err(error) = receiver.decode(delivery.topic.as_deref().unwrap_or_default(), &body) {
        tracing::warn!(system = %system, delivery = %delivery.delivery_id, error = %error, "Webhook refused.");
        count_delivery(&system, "rejected");
        return answer(StatusCode::BAD_REQUEST, error.message);
    }
    let stored = engine
        .store()
        .insert_inbox(&NewInboxDelivery {
            system: system.clone(),
            delivery_id: delivery.delivery_id.clone(),
            topic: delivery.topic.clone().unwrap_or_default(),
            headers: json!(pairs.iter().cloned().collect::<std::collections::BTreeMap<String, String>>()),
            body: body.to_vec(),
            received_at: now,
        })
        .await;
    match stored {
        Ok(InboxInsert::Inserted(id)) => {
            tracing::debug!(system = %system, inbox_id = id, "Webhook stored.");
            count_delivery(&system, "stored");
            answer(StatusCode::ACCEPTED, "stored")
        }
        Ok(InboxInsert::Duplicate) => {
            count_delivery(&system, "duplicate");
            answer(StatusCode::OK, "duplicate delivery, already stored")
        }
        Err(error) => {
            // Not durable: the sender must try again.
            tracing::error!(system = %system, error = %error, "Could not store a webhook.");
            count_delivery(&system, "unavailable");
            answer(StatusCode::SERVICE_UNAVAILABLE, "could not store the delivery; try again")
        }
    }
}

fn count_delivery(system: &str, result: &'static str) {
    ::metrics::counter!(erpsync_engine::metrics::WEBHOOK_DELIVERIES_TOTAL, "system" => system.to_string(), "result" => result)
        .increment(1);
}

async fn ready(State(engine): State<Arc<Engine>>) -> Response {
    match engine.store().schema_version().await {
        Ok(version) => answer(StatusCode::OK, format!("store ready at schema version {version}")),
        Err(error) => answer(StatusCode::SERVICE_UNAVAILABLE, format!("store not reachable: {error}")),
    }
}
