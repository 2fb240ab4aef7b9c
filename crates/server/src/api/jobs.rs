//! `GET /api/v1/jobs/dead`: jobs the queue gave up on (whole runs that failed on every
//! delivery), as `erpsync failures jobs` lists them.

use super::ApiError;
use super::extract::{Json, Query};
use axum::extract::State;
use chrono::{DateTime, Utc};
use erpsync_engine::{Engine, EngineError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// A job that used up its deliveries (`[queue] max_deliveries`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadJobView {
    /// Its id in the queue (a store job id, or a NATS stream sequence).
    pub id: String,
    /// `run_flow`.
    pub kind: String,
    /// `flow:<flow>` for a pull, `records:<system>:<entity>:<partition>` for records by id.
    pub key: String,
    /// The flow it was a run of.
    pub flow: String,
    /// The run it asked for: `flow`, `trigger`, `full`, and `ids` for records from webhooks.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub attempts: u32,
    /// The last reason it failed.
    pub error: String,
    pub died_at: DateTime<Utc>,
}

impl From<erpsync_queue::DeadJob> for DeadJobView {
    fn from(job: erpsync_queue::DeadJob) -> Self {
        DeadJobView {
            flow: job.payload["flow"].as_str().unwrap_or_default().to_string(),
            id: job.id,
            kind: job.kind,
            key: job.key,
            payload: job.payload,
            attempts: job.attempts,
            error: job.error,
            died_at: job.died_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadJobsQuery {
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// Dead jobs, oldest first.
#[utoipa::path(get, path = "/api/v1/jobs/dead", tag = "jobs", params(DeadJobsQuery),
    responses((status = 200, body = Vec<DeadJobView>)))]
pub async fn list_dead_jobs(
    State(engine): State<Arc<Engine>>,
    Query(query): Query<DeadJobsQuery>,
) -> Result<Json<Vec<DeadJobView>>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000) as usize;
    let dead = engine.queue().dead(limit).await.map_err(EngineError::from)?;
    Ok(Json(dead.into_iter().map(DeadJobView::from).collect()))
}
