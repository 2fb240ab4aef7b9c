//! The admin API's handlers. Each checks the caller's role first, then asks the engine.

use super::extract::{Json, Path, Query};
use super::views::*;
use super::{ApiError, Caller};
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use erpsync_engine::Engine;
use erpsync_store::{DeadLetterFilter, DeadLetterStatus, RunFilter, RunStatus, TokenRole};
use std::sync::Arc;

type ApiResult<T> = Result<Json<T>, ApiError>;

/// Largest page of a list.
const MAX_LIMIT: u32 = 1000;

fn limit(requested: Option<u32>, default: u32) -> u32 {
    requested.unwrap_or(default).clamp(1, MAX_LIMIT)
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

// --- systems -----------------------------------------------------------------------------------

/// Every configured system, the flows that use it, and its circuit breaker.
#[utoipa::path(get, path = "/api/v1/systems", tag = "systems",
    responses((status = 200, body = Vec<SystemView>), (status = 401, body = Message)))]
pub async fn list_systems(State(engine): State<Arc<Engine>>) -> ApiResult<Vec<SystemView>> {
    let mut circuits = engine.circuits().await?;
    let systems = engine
        .systems()
        .into_iter()
        .map(|system| {
            let at = circuits.iter().position(|circuit| circuit.system == system.name);
            let circuit = at.map(|at| circuits.swap_remove(at));
            let circuit = circuit.expect("engine.circuits() has one circuit per configured system");
            SystemView::new(system, circuit)
        })
        .collect();
    Ok(Json(systems))
}

/// Checks a system: reads one record of each entity flows read from it; builds the connector
/// of a system that is only written to. Never writes.
#[utoipa::path(get, path = "/api/v1/systems/{system}/health", tag = "systems",
    params(("system" = String, Path, description = "System name")),
    responses((status = 200, description = "All checks passed", body = SystemHealthView),
              (status = 503, description = "A check failed", body = SystemHealthView),
              (status = 404, body = Message)))]
pub async fn system_health(
    State(engine): State<Arc<Engine>>,
    Path(system): Path<String>,
) -> Result<(StatusCode, Json<SystemHealthView>), ApiError> {
    let health = engine.check_system(&system).await?;
    let status = if health.healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    Ok((status, Json(health.into())))
}

// --- flows -------------------------------------------------------------------------------------

/// Every flow with its last run, lag, open failures, next run and pause.
#[utoipa::path(get, path = "/api/v1/flows", tag = "flows",
    responses((status = 200, body = Vec<FlowView>), (status = 401, body = Message)))]
pub async fn list_flows(State(engine): State<Arc<Engine>>) -> ApiResult<Vec<FlowView>> {
    Ok(Json(engine.status().await?.into_iter().map(FlowView::from).collect()))
}

/// One flow's status.
#[utoipa::path(get, path = "/api/v1/flows/{flow}", tag = "flows",
    params(("flow" = String, Path, description = "Flow name")),
    responses((status = 200, body = FlowView), (status = 404, body = Message)))]
pub async fn show_flow(State(engine): State<Arc<Engine>>, Path(flow): Path<String>) -> ApiResult<FlowView> {
    find_flow(&engine, &flow).await.map(Json)
}

async fn find_flow(engine: &Engine, flow: &str) -> Result<FlowView, ApiError> {
    engine
        .status()
        .await?
        .into_iter()
        .find(|status| status.name == flow)
        .map(FlowView::from)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no flow {flow:?} is configured")))
}

/// Pauses a flow: no scheduled or webhook-triggered runs until resumed; a run going on
/// finishes. Operator.
#[utoipa::path(post, path = "/api/v1/flows/{flow}/pause", tag = "flows",
    params(("flow" = String, Path, description = "Flow name")),
    request_body(content = PauseRequest, description = "Optional reason"),
    responses((status = 200, description = "The flow, paused", body = FlowView),
              (status = 403, body = Message), (status = 404, body = Message)))]
pub async fn pause_flow(
    State(engine): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(flow): Path<String>,
    body: Option<Json<PauseRequest>>,
) -> ApiResult<FlowView> {
    caller.require(TokenRole::Operator)?;
    let reason = body.and_then(|Json(body)| body.reason).unwrap_or_else(|| "paused through the API".to_string());
    engine.pause_flow(&flow, &caller.actor(), &reason).await?;
    find_flow(&engine, &flow).await.map(Json)
}

/// Resumes a paused flow. Operator.
#[utoipa::path(post, path = "/api/v1/flows/{flow}/resume", tag = "flows",
    params(("flow" = String, Path, description = "Flow name")),
    responses((status = 200, description = "The flow, resumed", body = FlowView),
              (status = 403, body = Message), (status = 404, body = Message)))]
pub async fn resume_flow(
    State(engine): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(flow): Path<String>,
) -> ApiResult<FlowView> {
    caller.require(TokenRole::Operator)?;
    engine.resume_flow(&flow, &caller.actor()).await?;
    find_flow(&engine, &flow).await.map(Json)
}

/// Queues an incremental run (from the checkpoint) for `erpsync serve` to start. Operator.
#[utoipa::path(post, path = "/api/v1/flows/{flow}/run", tag = "flows",
    params(("flow" = String, Path, description = "Flow name")),
    responses((status = 202, body = RunQueued), (status = 403, body = Message), (status = 404, body = Message),
              (status = 409, description = "Paused, disabled, or a run is queued or going", body = Message)))]
pub async fn run_flow(
    State(engine): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(flow): Path<String>,
) -> Result<(StatusCode, Json<RunQueued>), ApiError> {
    queue_run(&engine, &caller, flow, false).await
}

/// Queues a full resync: reads everything, writes what differs, and with `on_delete`
/// archives or deletes what the source no longer has. Operator.
#[utoipa::path(post, path = "/api/v1/flows/{flow}/resync", tag = "flows",
    params(("flow" = String, Path, description = "Flow name")),
    responses((status = 202, body = RunQueued), (status = 403, body = Message), (status = 404, body = Message),
              (status = 409, description = "Paused, disabled, or a run is queued or going", body = Message)))]
pub async fn resync_flow(
    State(engine): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(flow): Path<String>,
) -> Result<(StatusCode, Json<RunQueued>), ApiError> {
    queue_run(&engine, &caller, flow, true).await
}

async fn queue_run(
    engine: &Engine,
    caller: &Caller,
    flow: String,
    full: bool,
) -> Result<(StatusCode, Json<RunQueued>), ApiError> {
    caller.require(TokenRole::Operator)?;
    let job_id = engine.enqueue_run(&flow, full, &caller.actor()).await?;
    let message = format!("queued as job {job_id}; erpsync serve starts it within a second when a worker is free");
    Ok((StatusCode::ACCEPTED, Json(RunQueued { flow, job_id, full, message })))
}

// --- runs and records --------------------------------------------------------------------------

/// Runs, newest first, filtered by flow, status and trigger; page with `before`.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", params(RunsQuery),
    responses((status = 200, body = Vec<RunView>), (status = 400, body = Message)))]
pub async fn list_runs(State(engine): State<Arc<Engine>>, Query(query): Query<RunsQuery>) -> ApiResult<Vec<RunView>> {
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(RunStatus::parse(text).ok_or_else(|| {
            bad_request(format!(
                "unknown run status {text:?}: use running, succeeded, partially_failed, failed or interrupted"
            ))
        })?),
    };
    let filter = RunFilter {
        flow: query.flow,
        status,
        trigger: query.trigger,
        before: query.before,
        limit: limit(query.limit, 50),
    };
    Ok(Json(engine.store().find_runs(&filter).await?.into_iter().map(RunView::from).collect()))
}

/// One run with its counts.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs",
    params(("id" = i64, Path, description = "Run id")),
    responses((status = 200, body = RunView), (status = 404, body = Message)))]
pub async fn show_run(State(engine): State<Arc<Engine>>, Path(id): Path<i64>) -> ApiResult<RunView> {
    match engine.store().run(id).await? {
        Some(run) => Ok(Json(run.into())),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("run {id} not found"))),
    }
}

/// Finds a record by any id in any system or by natural key: its ids everywhere, its sync
/// events and its dead letters.
#[utoipa::path(get, path = "/api/v1/records", tag = "records", params(RecordsQuery),
    responses((status = 200, body = TraceView), (status = 404, description = "Nothing known by that key", body = Message)))]
pub async fn find_records(
    State(engine): State<Arc<Engine>>,
    Query(query): Query<RecordsQuery>,
) -> ApiResult<TraceView> {
    let key = query.key.trim();
    if key.is_empty() {
        return Err(bad_request("give a key: an id in any system or a natural key"));
    }
    let report = engine.trace(key).await?;
    if report.records.is_empty() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no record or dead letter is known by {key:?}")));
    }
    Ok(Json(report.into()))
}

// --- dead letters ------------------------------------------------------------------------------

/// Dead letters, most recently updated first.
#[utoipa::path(get, path = "/api/v1/dead-letters", tag = "dead letters", params(DeadLettersQuery),
    responses((status = 200, body = Vec<DeadLetterView>), (status = 400, body = Message)))]
pub async fn list_dead_letters(
    State(engine): State<Arc<Engine>>,
    Query(query): Query<DeadLettersQuery>,
) -> ApiResult<Vec<DeadLetterView>> {
    let status = match query.status.as_deref().unwrap_or("open") {
        "all" => None,
        text => Some(DeadLetterStatus::parse(text).ok_or_else(|| {
            bad_request(format!("unknown status {text:?}: use open, retrying, resolved, discarded or all"))
        })?),
    };
    let filter = DeadLetterFilter { flow: query.flow, status, limit: limit(query.limit, 100) };
    let letters = engine.store().list_dead_letters(&filter).await?;
    Ok(Json(letters.into_iter().map(DeadLetterView::from).collect()))
}

/// One dead letter with its payload and history.
#[utoipa::path(get, path = "/api/v1/dead-letters/{id}", tag = "dead letters",
    params(("id" = i64, Path, description = "Dead letter id")),
    responses((status = 200, body = DeadLetterDetail), (status = 404, body = Message)))]
pub async fn show_dead_letter(State(engine): State<Arc<Engine>>, Path(id): Path<i64>) -> ApiResult<DeadLetterDetail> {
    match engine.store().dead_letter(id).await? {
        Some(letter) => Ok(Json(letter.into())),
        None => Err(erpsync_engine::EngineError::DeadLetterNotFound { id }.into()),
    }
}

/// Replaces the payload a retry will use. Operator.
#[utoipa::path(put, path = "/api/v1/dead-letters/{id}/payload", tag = "dead letters",
    params(("id" = i64, Path, description = "Dead letter id")),
    request_body = EditPayload,
    responses((status = 200, body = DeadLetterDetail), (status = 403, body = Message), (status = 404, body = Message),
              (status = 422, description = "Not a record in the versioned form, or the letter is closed", body = Message)))]
pub async fn edit_dead_letter_payload(
    State(engine): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
    Json(body): Json<EditPayload>,
) -> ApiResult<DeadLetterDetail> {
    caller.require(TokenRole::Operator)?;
    match engine.edit_dead_letter_payload(id, &body.payload, &caller.actor()).await {
        Ok(letter) => Ok(Json(letter.into())),
        Err(error @ erpsync_engine::EngineError::Refused { .. }) => {
            Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, error.to_string()))
        }
        Err(error) => Err(error.into()),
    }
}

/// Processes the dead letter's payload through its flow again. Operator.
#[utoipa::path(post, path = "/api/v1/dead-letters/{id}/retry", tag = "dead letters",
    params(("id" = i64, Path, description = "Dead letter id")),
    responses((status = 200, body = RetryResultView), (status = 403, body = Message), (status = 404, body = Message),
              (status = 409, description = "Resolved, discarded, or its payload is not a record", body = Message)))]
pub async fn retry_dead_letter(
    State(engine): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> ApiResult<RetryResultView> {
    caller.require(TokenRole::Operator)?;
    let summary = engine.retry_dead_letter(id, &caller.actor()).await?;
    if summary.counts.failed == 0 && summary.error.is_none() {
        return Ok(Json(RetryResultView { id, resolved: true, error: None }));
    }
    let error = match engine.store().dead_letter(id).await? {
        Some(letter) => letter.error,
        None => summary.error.unwrap_or_default(),
    };
    Ok(Json(RetryResultView { id, resolved: false, error: Some(error) }))
}

/// Closes a dead letter without syncing it. Operator; a reason is required.
#[utoipa::path(post, path = "/api/v1/dead-letters/{id}/discard", tag = "dead letters",
    params(("id" = i64, Path, description = "Dead letter id")),
    request_body = DiscardRequest,
    responses((status = 200, body = DeadLetterDetail), (status = 400, body = Message), (status = 403, body = Message),
              (status = 404, body = Message)))]
pub async fn discard_dead_letter(
    State(engine): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
    Json(body): Json<DiscardRequest>,
) -> ApiResult<DeadLetterDetail> {
    caller.require(TokenRole::Operator)?;
    if body.reason.trim().is_empty() {
        return Err(bad_request("say why it is discarded: {\"reason\": \"...\"}"));
    }
    engine.discard_dead_letter(id, &caller.actor(), body.reason.trim()).await?;
    show_dead_letter(State(engine), Path(id)).await
}

/// Retries many dead letters: the given ids, or every open one (of a flow), at most 1000.
/// Operator.
#[utoipa::path(post, path = "/api/v1/dead-letters/retry", tag = "dead letters",
    request_body = BulkRetryRequest,
    responses((status = 200, body = Vec<RetryResultView>), (status = 403, body = Message), (status = 404, body = Message)))]
pub async fn retry_dead_letters(
    State(engine): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    body: Option<Json<BulkRetryRequest>>,
) -> ApiResult<Vec<RetryResultView>> {
    caller.require(TokenRole::Operator)?;
    let body = body.map(|Json(body)| body).unwrap_or_default();
    let results = engine.retry_dead_letters(&body.ids, body.flow.as_deref(), &caller.actor()).await?;
    Ok(Json(
        results
            .into_iter()
            .map(|result| RetryResultView { id: result.id, resolved: result.resolved, error: result.error })
            .collect(),
    ))
}

// --- audit and tokens --------------------------------------------------------------------------

/// The audit log, newest first: who did what through the API or the CLI.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(LimitQuery),
    responses((status = 200, body = Vec<AuditView>)))]
pub async fn list_audit(
    State(engine): State<Arc<Engine>>,
    Query(query): Query<LimitQuery>,
) -> ApiResult<Vec<AuditView>> {
    let entries = engine.store().list_audit(limit(query.limit, 100)).await?;
    Ok(Json(entries.into_iter().map(AuditView::from).collect()))
}

/// Every access token, revoked ones too (never their secrets). Admin.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = Vec<TokenView>), (status = 403, body = Message)))]
pub async fn list_tokens(
    State(engine): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Vec<TokenView>> {
    caller.require(TokenRole::Admin)?;
    let tokens = engine.store().api_tokens(true).await?;
    Ok(Json(tokens.into_iter().map(TokenView::from).collect()))
}

/// Creates a token; its secret is in this answer only. Admin.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens",
    request_body = CreateTokenRequest,
    responses((status = 201, body = IssuedTokenView), (status = 400, body = Message), (status = 403, body = Message),
              (status = 409, description = "An active token has this name", body = Message)))]
pub async fn create_token(
    State(engine): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<CreateTokenRequest>,
) -> Result<(StatusCode, Json<IssuedTokenView>), ApiError> {
    caller.require(TokenRole::Admin)?;
    let role = TokenRole::parse(&body.role)
        .ok_or_else(|| bad_request(format!("unknown role {:?}: use viewer, operator or admin", body.role)))?;
    let issued = match engine.create_token(&body.name, role, &caller.actor()).await {
        Ok(issued) => issued,
        Err(error @ erpsync_engine::EngineError::Refused { .. }) => return Err(bad_request(error.to_string())),
        Err(error) => return Err(error.into()),
    };
    Ok((StatusCode::CREATED, Json(IssuedTokenView { token: issued.token.into(), secret: issued.secret })))
}

/// Revokes the active token with this name; it stops working at once. Admin.
#[utoipa::path(delete, path = "/api/v1/tokens/{name}", tag = "tokens",
    params(("name" = String, Path, description = "Token name")),
    responses((status = 200, body = Message), (status = 403, body = Message), (status = 404, body = Message)))]
pub async fn revoke_token(
    State(engine): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Message> {
    caller.require(TokenRole::Admin)?;
    if engine.revoke_token(&name, &caller.actor()).await? {
        Ok(Json(Message { status: 200, message: format!("token {name:?} revoked") }))
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, format!("no active token is called {name:?}")))
    }
}
