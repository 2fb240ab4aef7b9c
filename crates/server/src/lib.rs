//! The HTTP side of erpsync: `POST /webhooks/{system}` (verify, store in the inbox, then 2xx),
//! `GET /healthz` and `GET /readyz`. The only crate with HTTP request and response types of
//! erpsync's own API.
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

/// The router, for `serve` and for tests in process.
pub fn router(engine: Arc<Engine>) -> Router {
    let max_body = engine.config().server.max_body_bytes;
    Router::new()
        .route("/webhooks/{system}", post(receive_webhook))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(engine)
}

/// Binds `[server] listen`, so that a taken port fails `serve` at start, not later.
pub async fn listen(engine: &Engine) -> std::io::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(engine.config().server.listen).await?;
    tracing::info!(address = %listener.local_addr()?, "HTTP server listening.");
    Ok(listener)
}

/// Serves on `listener` until shutdown is requested.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Arc<Engine>,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    axum::serve(listener, router(engine)).with_graceful_shutdown(async move { shutdown.requested().await }).await
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
        Ok(None) => return answer(StatusCode::NOT_FOUND, format!("system {system:?} does not receive webhooks")),
        Err(erpsync_engine::EngineError::UnknownSystem { .. }) => {
            return answer(StatusCode::NOT_FOUND, format!("no system {system:?} is configured"));
        }
        Err(error) => {
            tracing::error!(system = %system, error = %error, "Could not build the webhook receiver.");
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
            let status = if error.kind == ErrorKind::Auth { StatusCode::UNAUTHORIZED } else { StatusCode::BAD_REQUEST };
            return answer(status, error.message);
        }
    };
    // A signed delivery that cannot be read (not JSON, a topic this system is not set up for,
    // no record id) is refused now, while the sender can still see why, and never stored.
    if let Err(error) = receiver.decode(delivery.topic.as_deref().unwrap_or_default(), &body) {
        tracing::warn!(system = %system, delivery = %delivery.delivery_id, error = %error, "Webhook refused.");
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
            answer(StatusCode::ACCEPTED, "stored")
        }
        Ok(InboxInsert::Duplicate) => answer(StatusCode::OK, "duplicate delivery, already stored"),
        Err(error) => {
            // Not durable: the sender must try again.
            tracing::error!(system = %system, error = %error, "Could not store a webhook.");
            answer(StatusCode::SERVICE_UNAVAILABLE, "could not store the delivery; try again")
        }
    }
}

async fn ready(State(engine): State<Arc<Engine>>) -> Response {
    match engine.store().schema_version().await {
        Ok(version) => answer(StatusCode::OK, format!("store ready at schema version {version}")),
        Err(error) => answer(StatusCode::SERVICE_UNAVAILABLE, format!("store not reachable: {error}")),
    }
}
