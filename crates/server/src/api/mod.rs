//! The admin API under `/api/v1`: systems, flows, runs, records, dead letters, the audit log
//! and access tokens, described by an OpenAPI document generated from the handlers and served
//! at `/api/v1/openapi.json`.
//!
//! Every request but the document's needs `Authorization: Bearer <token>`. A token has a role:
//! a viewer reads, an operator also acts (pause, run, retry, edit, discard), an admin also
//! manages tokens. Missing or unknown tokens get 401, too low a role 403. Actions are audited
//! as `token:<name>`.

pub mod alerts;
mod extract;
mod handlers;
pub mod jobs;
pub mod views;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use erpsync_engine::{Engine, EngineError};
use erpsync_store::TokenRole;
use std::sync::Arc;
use utoipa::openapi::OpenApi as OpenApiDocument;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use views::Message;

/// Where the OpenAPI document is served, without authentication.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(title = "erpsync admin API", description = "Operate erpsync: flows, runs, records, dead letters, audit log, access tokens."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "systems", description = "Configured systems and their health"),
        (name = "flows", description = "Flows: status, pause, resume, runs on demand"),
        (name = "runs", description = "Runs and their counts"),
        (name = "records", description = "Where a record is, in every system"),
        (name = "dead letters", description = "Records that failed and wait for a person"),
        (name = "audit", description = "Who did what"),
        (name = "tokens", description = "Access tokens (admin)"),
        (name = "alerts", description = "Incidents of the alert rules and the messages sent"),
        (name = "jobs", description = "Jobs the queue gave up on"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApiDocument) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The admin API's routes (authenticated) and the OpenAPI document describing them.
pub fn router(engine: Arc<Engine>) -> (Router<Arc<Engine>>, OpenApiDocument) {
    let (routes, document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(handlers::list_systems))
        .routes(routes!(handlers::system_health))
        .routes(routes!(handlers::list_flows))
        .routes(routes!(handlers::show_flow))
        .routes(routes!(handlers::pause_flow))
        .routes(routes!(handlers::resume_flow))
        .routes(routes!(handlers::run_flow))
        .routes(routes!(handlers::resync_flow))
        .routes(routes!(handlers::list_runs))
        .routes(routes!(handlers::show_run))
        .routes(routes!(handlers::find_records))
        .routes(routes!(handlers::list_dead_letters))
        .routes(routes!(handlers::show_dead_letter))
        .routes(routes!(handlers::edit_dead_letter_payload))
        .routes(routes!(handlers::retry_dead_letter))
        .routes(routes!(handlers::discard_dead_letter))
        .routes(routes!(handlers::retry_dead_letters))
        .routes(routes!(handlers::list_audit))
        .routes(routes!(handlers::list_tokens, handlers::create_token))
        .routes(routes!(handlers::revoke_token))
        .routes(routes!(alerts::list_alerts))
        .routes(routes!(jobs::list_dead_jobs))
        .split_for_parts();
    let mut document = document;
    document_common_answers(&mut document);
    let routes = routes
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint; see /api/v1/openapi.json") })
        .layer(axum::middleware::from_fn_with_state(engine, authenticate));
    (routes, document)
}

/// Adds to every operation the answers that its handler does not write itself: 401 (every
/// operation needs a token), 400 when a path or query parameter does not parse, and 400, 415
/// and 422 when a request body is not JSON of the right shape (see [`extract`]). Done on the
/// generated document so that a new operation cannot leave them out.
fn document_common_answers(document: &mut OpenApiDocument) {
    use utoipa::openapi::{ContentBuilder, PathItem, Ref, RefOr, ResponseBuilder};
    let message = |description: &str| -> RefOr<utoipa::openapi::Response> {
        ResponseBuilder::new()
            .description(description)
            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("Message"))).build())
            .into()
    };
    for item in document.paths.paths.values_mut() {
        let PathItem { get, put, post, delete, patch, .. } = item;
        for operation in [get, put, post, delete, patch].into_iter().flatten() {
            let mut answers = vec![(401, "No token, or an unknown or revoked one")];
            if operation.parameters.as_ref().is_some_and(|parameters| !parameters.is_empty()) {
                answers.push((400, "A path or query parameter is not valid"));
            }
            if operation.request_body.is_some() {
                answers.push((400, "The body is not valid JSON"));
                answers.push((415, "The body is not sent as application/json"));
                answers.push((422, "The body is JSON of the wrong shape"));
            }
            for (status, description) in answers {
                operation.responses.responses.entry(status.to_string()).or_insert_with(|| message(description));
            }
        }
    }
}

/// Who is calling: the token's name and role, put into the request by [`authenticate`].
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: TokenRole,
}

impl Caller {
    /// The audit log's actor for this caller.
    pub fn actor(&self) -> String {
        format!("token:{}", self.name)
    }

    /// 403 unless the caller's role is at least `role`.
    pub fn require(&self, role: TokenRole) -> Result<(), ApiError> {
        if self.role >= role {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("this needs the {} role; token {:?} is {}", role.as_str(), self.name, self.role.as_str()),
        ))
    }
}

async fn authenticate(State(engine): State<Arc<Engine>>, mut request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .map(str::to_string);
    let response = match presented {
        None => unauthorized("send an access token: Authorization: Bearer <token> (erpsync token create)"),
        Some(secret) => match engine.authenticate(&secret).await {
            Ok(Some(token)) => {
                request.extensions_mut().insert(Caller { name: token.name, role: token.role });
                next.run(request).await
            }
            // Never say which part was wrong, and never echo the token.
            Ok(None) => unauthorized("the access token is unknown or revoked"),
            Err(error) => ApiError::from(error).into_response(),
        },
    };
    metrics::counter!(erpsync_engine::metrics::API_REQUESTS_TOTAL, "status" => response.status().as_u16().to_string())
        .increment(1);
    response
}

fn unauthorized(message: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}

/// An error answer: its status and a message for the operator, as [`Message`] JSON.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        let status = match &error {
            EngineError::UnknownFlow { .. }
            | EngineError::UnknownSystem { .. }
            | EngineError::DeadLetterNotFound { .. } => StatusCode::NOT_FOUND,
            EngineError::AlreadyRunning { .. } | EngineError::Refused { .. } | EngineError::NotRetryable { .. } => {
                StatusCode::CONFLICT
            }
            EngineError::Store(erpsync_store::StoreError::AlreadyExists { .. }) => StatusCode::CONFLICT,
            EngineError::Store(_) | EngineError::Connector(_) | EngineError::Queue(_) | EngineError::Stopped { .. } => {
                // The server's fault, not the caller's: logged as well.
                tracing::error!(error = %error, "Admin API request failed.");
                return Self::new(StatusCode::INTERNAL_SERVER_ERROR, format!("internal error: {error}"));
            }
        };
        Self::new(status, error.to_string())
    }
}

impl From<erpsync_store::StoreError> for ApiError {
    fn from(error: erpsync_store::StoreError) -> Self {
        EngineError::from(error).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(Message { status: self.status.as_u16(), message: self.message })).into_response()
    }
}
