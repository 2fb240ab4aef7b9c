//! `GET /api/v1/alerts`: incidents of the `[alerts]` rules with the messages sent about them.

use super::ApiError;
use super::extract::{Json, Query};
use axum::extract::State;
use chrono::{DateTime, Utc};
use erpsync_engine::Engine;
use erpsync_store::{Alert, AlertDelivery, AlertFilter};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// One incident: a rule began to hold for a flow, and maybe cleared.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertView {
    pub id: i64,
    pub rule: String,
    /// `failures`, `lag`, `no_sync`, `slow_run`, `run_failed`.
    pub kind: String,
    /// The flow it is about.
    pub scope: String,
    /// What was seen when it fired.
    pub summary: String,
    /// `firing` or `resolved`.
    pub state: String,
    /// False when it began within the cool-down of the previous message: no message is sent.
    pub notify: bool,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// What was seen when it cleared.
    pub resolution: Option<String>,
    /// Messages about it, oldest first.
    pub messages: Vec<AlertMessageView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertMessageView {
    /// `firing` or `resolved`.
    pub event: String,
    /// `email` or `webhook`.
    pub channel: String,
    pub ok: bool,
    /// The server's answer, or why it failed.
    pub detail: String,
    pub at: DateTime<Utc>,
}

impl From<AlertDelivery> for AlertMessageView {
    fn from(delivery: AlertDelivery) -> Self {
        Self {
            event: delivery.event,
            channel: delivery.channel,
            ok: delivery.ok,
            detail: delivery.detail,
            at: delivery.at,
        }
    }
}

impl From<Alert> for AlertView {
    fn from(alert: Alert) -> Self {
        Self {
            id: alert.id,
            state: if alert.resolved_at.is_some() { "resolved" } else { "firing" }.to_string(),
            rule: alert.rule,
            kind: alert.kind,
            scope: alert.scope,
            summary: alert.summary,
            notify: alert.notify,
            opened_at: alert.opened_at,
            resolved_at: alert.resolved_at,
            resolution: alert.resolution,
            messages: alert.deliveries.into_iter().map(AlertMessageView::from).collect(),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// Only this rule's incidents.
    pub rule: Option<String>,
    /// Only incidents about this flow.
    pub flow: Option<String>,
    /// `firing` for open incidents only; default every incident.
    pub state: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// Alert incidents, newest first, with the messages sent about each.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertsQuery),
    responses((status = 200, body = Vec<AlertView>), (status = 400, body = super::views::Message)))]
pub async fn list_alerts(
    State(engine): State<Arc<Engine>>,
    Query(query): Query<AlertsQuery>,
) -> Result<Json<Vec<AlertView>>, ApiError> {
    let open_only = match query.state.as_deref() {
        None | Some("all") => false,
        Some("firing") => true,
        Some(other) => {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                format!("unknown state {other:?}: use firing or all"),
            ));
        }
    };
    let filter = AlertFilter {
        rule: query.rule,
        scope: query.flow,
        open_only,
        limit: query.limit.unwrap_or(100).clamp(1, 1000),
    };
    let alerts = engine.store().list_alerts(&filter).await?;
    Ok(Json(alerts.into_iter().map(AlertView::from).collect()))
}
