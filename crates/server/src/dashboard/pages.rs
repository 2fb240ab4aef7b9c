//! The dashboard's pages and actions: each handler reads through the engine and the store, or
//! acts through the same `Engine` methods as the admin API, and renders an askama template.
//! Values are formatted here, so the templates only place text.

use super::{Dashboard, Session, chart};
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use erpsync_engine::{EngineError, FlowStatus};
use erpsync_store::{Alert, AlertFilter, DeadLetter, DeadLetterFilter, DeadLetterStatus, Run, RunFilter, RunStatus};
use serde::Deserialize;

// --- shared layout -------------------------------------------------------------------------------

/// What the layout shows around every page.
pub(crate) struct Layout {
    pub title: String,
    /// The navigation entry to highlight.
    pub active: &'static str,
    pub user: Option<UserView>,
    pub notice: Option<String>,
    pub error: Option<String>,
}

pub(crate) struct UserView {
    pub name: String,
    pub role: &'static str,
    pub csrf: String,
    pub can_act: bool,
}

impl Layout {
    fn new(title: impl Into<String>, active: &'static str, session: Option<&Session>) -> Self {
        Self {
            title: title.into(),
            active,
            user: session.map(|session| UserView {
                name: session.name.clone(),
                role: session.role.as_str(),
                csrf: session.csrf.clone(),
                can_act: session.can_act(),
            }),
            notice: None,
            error: None,
        }
    }

    fn with_notice(mut self, notice: Option<String>) -> Self {
        self.notice = notice.filter(|text| !text.is_empty());
        self
    }

    /// The CSRF token for forms; empty for a visitor (who sees no forms but sign-in).
    pub fn csrf(&self) -> &str {
        self.user.as_ref().map(|user| user.csrf.as_str()).unwrap_or_default()
    }

    pub fn can_act(&self) -> bool {
        self.user.as_ref().is_some_and(|user| user.can_act)
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    status: u16,
}

/// An error page with its status (htmx is told to show 4xx and 5xx answers too).
pub(crate) fn error_page(status: StatusCode, session: Option<&Session>, message: &str) -> Response {
    let mut layout =
        Layout::new(format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("")), "", session);
    layout.error = Some(message.to_string());
    (status, ErrorPage { layout, status: status.as_u16() }).into_response()
}

fn engine_error(session: &Session, error: EngineError) -> Response {
    let status = match &error {
        EngineError::UnknownFlow { .. }
        | EngineError::UnknownSystem { .. }
        | EngineError::DeadLetterNotFound { .. } => StatusCode::NOT_FOUND,
        EngineError::AlreadyRunning { .. } | EngineError::Refused { .. } | EngineError::NotRetryable { .. } => {
            StatusCode::CONFLICT
        }
        _ => {
            tracing::error!(error = %error, "Dashboard request failed.");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    error_page(status, Some(session), &error.to_string())
}

fn store_error(session: &Session, error: erpsync_store::StoreError) -> Response {
    engine_error(session, error.into())
}

/// Where to go after an action, with a notice for the page.
fn back_to(path: &str, notice: &str) -> Response {
    let separator = if path.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{path}{separator}notice={}", encode_query(notice))).into_response()
}

fn encode_query(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => encoded.push(byte as char),
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

pub(crate) fn time_text(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `42s`, `5m`, `3h 20m`, `2d 4h`.
pub(crate) fn span_text(seconds: i64) -> String {
    let seconds = seconds.max(0);
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn ago(now: DateTime<Utc>, at: DateTime<Utc>) -> String {
    let seconds = (now - at).num_seconds();
    if seconds < 0 { format!("in {}", span_text(-seconds)) } else { format!("{} ago", span_text(seconds)) }
}

/// One `<option>` of a filter.
pub(crate) struct SelectOption {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

fn options<'a>(values: impl IntoIterator<Item = &'a str>, empty: Option<&str>, chosen: &str) -> Vec<SelectOption> {
    let mut list = Vec::new();
    if let Some(label) = empty {
        list.push(SelectOption { value: String::new(), label: label.to_string(), selected: chosen.is_empty() });
    }
    for value in values {
        list.push(SelectOption { value: value.to_string(), label: value.to_string(), selected: value == chosen });
    }
    list
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct NoticeQuery {
    notice: Option<String>,
}

// --- sign-in -------------------------------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
}

pub(crate) async fn login_form(Query(query): Query<NoticeQuery>) -> Response {
    LoginPage { layout: Layout::new("Sign in", "", None).with_notice(query.notice) }.into_response()
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    token: String,
}

pub(crate) async fn login(State(dashboard): State<Dashboard>, Form(form): Form<LoginForm>) -> Response {
    let secret = form.token.trim();
    let found = match dashboard.engine.authenticate(secret).await {
        Ok(found) => found,
        Err(error) => {
            return error_page(StatusCode::INTERNAL_SERVER_ERROR, None, &format!("internal error: {error}"));
        }
    };
    let Some(token) = found else {
        let mut layout = Layout::new("Sign in", "", None);
        // Never say which part was wrong, and never echo the token.
        layout.error = Some("the access token is unknown or revoked".into());
        return (StatusCode::UNAUTHORIZED, LoginPage { layout }).into_response();
    };
    tracing::info!(token = %token.name, "Signed in to the dashboard.");
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().insert(header::SET_COOKIE, dashboard.session_cookie(secret));
    response
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn logout(
    State(dashboard): State<Dashboard>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    // Signing out needs the form's token too, so another site cannot sign anyone out.
    if let Ok(Some(session)) = dashboard.session(&headers).await
        && session.csrf != form.csrf
    {
        return error_page(StatusCode::FORBIDDEN, Some(&session), "the form was not sent by this dashboard");
    }
    let mut response = back_to("/login", "signed out");
    response.headers_mut().insert(header::SET_COOKIE, dashboard.cleared_cookie());
    response
}

// --- overview ------------------------------------------------------------------------------------

pub(crate) struct FlowRow {
    pub name: String,
    pub route: String,
    pub entity: String,
    /// `healthy`, `attention`, `failing`, `paused`, `held` (a circuit is open), `disabled`, `new`.
    pub health: &'static str,
    pub health_detail: String,
    pub lag: String,
    pub last_run: String,
    pub last_run_id: Option<i64>,
    pub next_run: String,
    pub trigger: String,
    pub open_failures: i64,
    pub paused: bool,
    pub enabled: bool,
}

fn flow_row(status: FlowStatus, now: DateTime<Utc>) -> FlowRow {
    let (health, health_detail) = match (&status.paused, &status.last_run) {
        _ if !status.enabled => ("disabled", "disabled in the configuration".to_string()),
        (Some(pause), _) => {
            ("paused", format!("paused by {} {}: {}", pause.paused_by, ago(now, pause.paused_at), pause.reason))
        }
        _ if status.circuit.is_some() => circuit_health(status.circuit.as_ref(), now),
        (None, Some(run)) if run.status == RunStatus::Failed => {
            ("failing", format!("last run failed: {}", run.error.as_deref().unwrap_or("no reason recorded")))
        }
        (None, _) if status.open_failures > 0 => {
            ("attention", format!("{} record(s) wait in the failure inbox", status.open_failures))
        }
        (None, None) => ("new", "no run yet".to_string()),
        (None, Some(_)) => ("healthy", "last run went through".to_string()),
    };
    FlowRow {
        route: format!("{} → {}", status.source, status.target),
        entity: status.entity,
        health,
        health_detail,
        lag: status.lag_seconds.map(span_text).unwrap_or_else(|| "–".into()),
        last_run: status
            .last_run
            .as_ref()
            .map(|run| format!("{} {}", run.status.as_str(), ago(now, run.finished_at.unwrap_or(run.started_at))))
            .unwrap_or_else(|| "never".into()),
        last_run_id: status.last_run.as_ref().map(|run| run.id),
        next_run: status
            .next_run
            .or(status.next_reconcile)
            .map(|at| ago(now, at))
            .unwrap_or_else(|| "on webhooks or by hand".into()),
        trigger: status.trigger.unwrap_or_else(|| "webhooks".into()),
        open_failures: status.open_failures,
        paused: status.paused.is_some(),
        enabled: status.enabled,
        name: status.name,
    }
}

/// A flow whose source or target has an open circuit is `held`; a half-open one is on trial.
fn circuit_health(circuit: Option<&erpsync_engine::circuit::Circuit>, now: DateTime<Utc>) -> (&'static str, String) {
    let Some(circuit) = circuit else { return ("healthy", String::new()) };
    let error = format!(
        "{}: {}",
        circuit.error_kind.as_deref().unwrap_or("unknown"),
        circuit.error.as_deref().unwrap_or("no message")
    );
    match circuit.state {
        erpsync_engine::circuit::CircuitState::HalfOpen => (
            "attention",
            format!(
                "circuit of {} half-open: a probe passed, the next run decides (last failure {error})",
                circuit.system
            ),
        ),
        _ => (
            "held",
            format!(
                "circuit of {} open {} after {} failed run(s) ({error}); next probe {}",
                circuit.system,
                circuit.since.map(|at| ago(now, at)).unwrap_or_default(),
                circuit.failures,
                circuit.probe_at.map(|at| ago(now, at)).unwrap_or_else(|| "soon".into())
            ),
        ),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "overview.html")]
struct OverviewPage {
    layout: Layout,
    flows: Vec<FlowRow>,
    open_alerts: Vec<AlertRow>,
    chart_svg: String,
    chart_note: String,
}

pub(crate) async fn overview(
    State(dashboard): State<Dashboard>,
    headers: HeaderMap,
    Query(query): Query<NoticeQuery>,
) -> Response {
    let session = match dashboard.viewer(&headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let now = Utc::now();
    let statuses = match dashboard.engine.status().await {
        Ok(statuses) => statuses,
        Err(error) => return engine_error(&session, error),
    };
    let open = match dashboard
        .engine
        .store()
        .list_alerts(&AlertFilter { open_only: true, limit: 50, ..Default::default() })
        .await
    {
        Ok(open) => open,
        Err(error) => return store_error(&session, error),
    };
    let since = now - chrono::Duration::hours(24);
    let runs = match runs_since(&dashboard, since).await {
        Ok(runs) => runs,
        Err(error) => return store_error(&session, error),
    };
    let series = chart::Series::from_runs(&runs, since, now, 24);
    OverviewPage {
        layout: Layout::new("Flows", "flows", Some(&session)).with_notice(query.notice),
        flows: statuses.into_iter().map(|status| flow_row(status, now)).collect(),
        open_alerts: open.into_iter().map(|alert| alert_row(alert, now)).collect(),
        chart_svg: chart::render(&series),
        chart_note: format!(
            "Last 24 hours in hours (UTC): {} record(s) written, {} failed, in {} run(s)",
            series.written.iter().sum::<i64>(),
            series.failed.iter().sum::<i64>(),
            runs.len()
        ),
    }
    .into_response()
}

/// Every run started since `since`, newest first, at most 20000.
async fn runs_since(dashboard: &Dashboard, since: DateTime<Utc>) -> Result<Vec<Run>, erpsync_store::StoreError> {
    let mut runs = Vec::new();
    let mut before = None;
    loop {
        let filter = RunFilter { flow: None, status: None, trigger: None, before, limit: 1000 };
        let page = dashboard.engine.store().find_runs(&filter).await?;
        let done = page.len() < 1000;
        before = page.last().map(|run| run.id);
        for run in page {
            if run.started_at < since {
                return Ok(runs);
            }
            runs.push(run);
        }
        if done || runs.len() >= 20_000 {
            return Ok(runs);
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct FlowActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /flows/{flow}/run|resync|pause|resume`.
pub(crate) async fn flow_action(
    State(dashboard): State<Dashboard>,
    headers: HeaderMap,
    Path((flow, action)): Path<(String, String)>,
    Form(form): Form<FlowActionForm>,
) -> Response {
    let session = match dashboard.operator(&headers, &form.csrf).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let engine = &dashboard.engine;
    let actor = session.actor();
    let notice = match action.as_str() {
        "run" | "resync" => match engine.enqueue_run(&flow, action == "resync", &actor).await {
            Ok(job_id) => format!("{action} of {flow} queued as job {job_id}"),
            Err(error) => return engine_error(&session, error),
        },
        "pause" => {
            let reason = form.reason.filter(|reason| !reason.trim().is_empty());
            let reason = reason.unwrap_or_else(|| "paused from the dashboard".into());
            match engine.pause_flow(&flow, &actor, reason.trim()).await {
                Ok(true) => format!("{flow} paused"),
                Ok(false) => format!("{flow} was paused already"),
                Err(error) => return engine_error(&session, error),
            }
        }
        "resume" => match engine.resume_flow(&flow, &actor).await {
            Ok(true) => format!("{flow} resumed"),
            Ok(false) => format!("{flow} was not paused"),
            Err(error) => return engine_error(&session, error),
        },
        other => return error_page(StatusCode::NOT_FOUND, Some(&session), &format!("no flow action {other:?}")),
    };
    back_to("/", &notice)
}

// --- runs ----------------------------------------------------------------------------------------

pub(crate) struct RunRow {
    pub id: i64,
    pub flow: String,
    pub trigger: String,
    pub status: &'static str,
    pub started: String,
    pub duration: String,
    pub read: i64,
    pub written: i64,
    pub unchanged: i64,
    pub skipped: i64,
    pub failed: i64,
    pub error: String,
}

fn run_row(run: Run, now: DateTime<Utc>) -> RunRow {
    let duration = (run.finished_at.unwrap_or(now) - run.started_at).num_milliseconds();
    RunRow {
        id: run.id,
        trigger: if run.full { format!("{} (full)", run.trigger) } else { run.trigger },
        status: run.status.as_str(),
        started: time_text(run.started_at),
        duration: if duration < 10_000 {
            format!("{:.1}s", duration as f64 / 1000.0)
        } else {
            span_text(duration / 1000)
        },
        read: run.counts.read,
        written: run.counts.created + run.counts.updated + run.counts.deleted,
        unchanged: run.counts.unchanged,
        skipped: run.counts.skipped,
        failed: run.counts.failed,
        error: run.error.unwrap_or_default(),
        flow: run.flow,
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "runs.html")]
struct RunsPage {
    layout: Layout,
    flow_options: Vec<SelectOption>,
    status_options: Vec<SelectOption>,
    runs: Vec<RunRow>,
    next_page: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RunsQuery {
    flow: Option<String>,
    status: Option<String>,
    before: Option<i64>,
}

pub(crate) async fn runs(
    State(dashboard): State<Dashboard>,
    headers: HeaderMap,
    Query(query): Query<RunsQuery>,
) -> Response {
    let session = match dashboard.viewer(&headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let flow = query.flow.filter(|flow| !flow.is_empty());
    let status = query.status.as_deref().and_then(RunStatus::parse);
    const PAGE: u32 = 50;
    let filter = RunFilter { flow: flow.clone(), status, trigger: None, before: query.before, limit: PAGE };
    let runs = match dashboard.engine.store().find_runs(&filter).await {
        Ok(runs) => runs,
        Err(error) => return store_error(&session, error),
    };
    let now = Utc::now();
    let flow_text = flow.unwrap_or_default();
    let status_text = status.map(|status| status.as_str().to_string()).unwrap_or_default();
    let next_page = (runs.len() == PAGE as usize).then(|| {
        let last = runs.last().map(|run| run.id).unwrap_or_default();
        format!("/runs?flow={}&status={}&before={last}", encode_query(&flow_text), encode_query(&status_text))
    });
    RunsPage {
        layout: Layout::new("Runs", "runs", Some(&session)),
        flow_options: options(
            dashboard.engine.config().flows.keys().map(String::as_str),
            Some("every flow"),
            &flow_text,
        ),
        status_options: options(
            ["running", "succeeded", "partially_failed", "failed", "interrupted"],
            Some("any"),
            &status_text,
        ),
        runs: runs.into_iter().map(|run| run_row(run, now)).collect(),
        next_page,
    }
    .into_response()
}

// --- records -------------------------------------------------------------------------------------

pub(crate) struct TracedRecordView {
    pub title: String,
    pub links: Vec<(String, String, String)>,
    pub events: Vec<EventRow>,
    pub letters: Vec<LetterRow>,
}

pub(crate) struct EventRow {
    pub at: String,
    pub flow: String,
    pub from: String,
    pub to: String,
    pub action: String,
    pub message: String,
    pub run_id: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "records.html")]
struct RecordsPage {
    layout: Layout,
    key: String,
    searched: bool,
    records: Vec<TracedRecordView>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RecordsQuery {
    key: Option<String>,
}

pub(crate) async fn records(
    State(dashboard): State<Dashboard>,
    headers: HeaderMap,
    Query(query): Query<RecordsQuery>,
) -> Response {
    let session = match dashboard.viewer(&headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let key = query.key.unwrap_or_default().trim().to_string();
    let mut records = Vec::new();
    if !key.is_empty() {
        let report = match dashboard.engine.trace(&key).await {
            Ok(report) => report,
            Err(error) => return engine_error(&session, error),
        };
        let now = Utc::now();
        for record in report.records {
            let identity = record.identity;
            let title = match (&identity.natural_key, identity.record_uid) {
                (_, 0) => format!("{} never synced", identity.entity),
                (Some(key), uid) => format!("{} {key} (record {uid})", identity.entity),
                (None, uid) => format!("{} (record {uid})", identity.entity),
            };
            records.push(TracedRecordView {
                title,
                links: identity
                    .links
                    .into_iter()
                    .map(|link| (link.system, link.external_id, time_text(link.updated_at)))
                    .collect(),
                events: record
                    .events
                    .into_iter()
                    .map(|event| EventRow {
                        at: time_text(event.at),
                        flow: event.flow,
                        from: format!("{} {}", event.source_system, event.source_id),
                        to: format!("{} {}", event.target_system, event.target_id.unwrap_or_default()),
                        action: event.action.as_str().to_string(),
                        message: event.message.unwrap_or_default(),
                        run_id: event.run_id.map(|id| id.to_string()).unwrap_or_default(),
                    })
                    .collect(),
                letters: record.dead_letters.into_iter().map(|letter| letter_row(letter, now)).collect(),
            });
        }
    }
    RecordsPage { layout: Layout::new("Records", "records", Some(&session)), searched: !key.is_empty(), key, records }
        .into_response()
}

// --- failure inbox -------------------------------------------------------------------------------

pub(crate) struct LetterRow {
    pub id: i64,
    pub flow: String,
    pub record: String,
    pub status: &'static str,
    pub kind: String,
    pub error: String,
    pub attempts: i64,
    pub updated: String,
}

fn letter_row(letter: DeadLetter, now: DateTime<Utc>) -> LetterRow {
    let record = match &letter.natural_key {
        Some(key) if key != &letter.source_id => format!("{} {} ({key})", letter.source_system, letter.source_id),
        _ => format!("{} {}", letter.source_system, letter.source_id),
    };
    LetterRow {
        id: letter.id,
        flow: letter.flow,
        record,
        status: letter.status.as_str(),
        kind: letter.error_kind,
        error: letter.error,
        attempts: letter.attempts,
        updated: ago(now, letter.updated_at),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "failures.html")]
struct FailuresPage {
    layout: Layout,
    flow_options: Vec<SelectOption>,
    status_options: Vec<SelectOption>,
    letters: Vec<LetterRow>,
    dead_jobs: Vec<DeadJobRow>,
    /// Why the dead jobs could not be listed (the queue is down), instead of the list.
    dead_jobs_error: Option<String>,
}

/// A run the queue gave up on, as the failures page lists it.
pub(crate) struct DeadJobRow {
    pub flow: String,
    /// `a pull`, `a full resync`, `3 records from webhooks`, `waiting failures`.
    pub what: String,
    pub attempts: u32,
    pub error: String,
    pub died: String,
}

fn dead_job_row(job: erpsync_queue::DeadJob, now: DateTime<Utc>) -> DeadJobRow {
    let payload = &job.payload;
    let count = |key: &str| payload.get(key).and_then(serde_json::Value::as_array).map(Vec::len);
    let what = if let Some(ids) = count("ids") {
        format!("{ids} record(s) from webhooks")
    } else if let Some(letters) = count("dead_letters") {
        format!("{letters} waiting failure(s) taken up again")
    } else if payload.get("full").and_then(serde_json::Value::as_bool) == Some(true) {
        "a full resync".to_string()
    } else {
        "a pull".to_string()
    };
    DeadJobRow {
        flow: payload.get("flow").and_then(serde_json::Value::as_str).unwrap_or_default().to_string(),
        what,
        attempts: job.attempts,
        error: job.error,
        died: ago(now, job.died_at),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct FailuresQuery {
    flow: Option<String>,
    status: Option<String>,
    notice: Option<String>,
}

pub(crate) async fn failures(
    State(dashboard): State<Dashboard>,
    headers: HeaderMap,
    Query(query): Query<FailuresQuery>,
) -> Response {
    let session = match dashboard.viewer(&headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let flow = query.flow.filter(|flow| !flow.is_empty());
    let status_text = query.status.filter(|status| !status.is_empty()).unwrap_or_else(|| "open".into());
    let status = match status_text.as_str() {
        "all" => None,
        text => DeadLetterStatus::parse(text),
    };
    let filter = DeadLetterFilter { flow: flow.clone(), status, limit: 200 };
    let letters = match dashboard.engine.store().list_dead_letters(&filter).await {
        Ok(letters) => letters,
        Err(error) => return store_error(&session, error),
    };
    let now = Utc::now();
    let (dead_jobs, dead_jobs_error) = match dashboard.engine.queue().dead(200).await {
        Ok(jobs) => (
            jobs.into_iter()
                .map(|job| dead_job_row(job, now))
                .filter(|row| flow.as_ref().is_none_or(|flow| *flow == row.flow))
                .collect(),
            None,
        ),
        Err(error) => (Vec::new(), Some(format!("the queue could not list its dead jobs: {error}"))),
    };
    FailuresPage {
        dead_jobs,
        dead_jobs_error,
        layout: Layout::new("Failures", "failures", Some(&session)).with_notice(query.notice),
        flow_options: options(
            dashboard.engine.config().flows.keys().map(String::as_str),
            Some("every flow"),
            flow.as_deref().unwrap_or_default(),
        ),
        status_options: options(["open", "retrying", "resolved", "discarded", "all"], None, &status_text),
        letters: letters.into_iter().map(|letter| letter_row(letter, now)).collect(),
    }
    .into_response()
}

#[derive(Template, WebTemplate)]
#[template(path = "failure.html")]
struct FailurePage {
    layout: Layout,
    letter: LetterRow,
    target: String,
    origin: String,
    created: String,
    /// Open or retrying: it may be edited, retried and discarded.
    actionable: bool,
    payload: String,
    history: Vec<(String, String, String)>,
    trace_key: String,
}

pub(crate) async fn failure(
    State(dashboard): State<Dashboard>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(query): Query<NoticeQuery>,
) -> Response {
    let session = match dashboard.viewer(&headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    render_failure(&dashboard, &session, id, query.notice, None, None).await
}

/// The failure page; `edited` keeps a payload that was refused in the text area, with why.
async fn render_failure(
    dashboard: &Dashboard,
    session: &Session,
    id: i64,
    notice: Option<String>,
    edited: Option<String>,
    error: Option<String>,
) -> Response {
    let letter = match dashboard.engine.store().dead_letter(id).await {
        Ok(Some(letter)) => letter,
        Ok(None) => return engine_error(session, EngineError::DeadLetterNotFound { id }),
        Err(error) => return store_error(session, error),
    };
    let now = Utc::now();
    let payload = edited.unwrap_or_else(|| {
        serde_json::to_string_pretty(&letter.payload).unwrap_or_else(|_| letter.payload.to_string())
    });
    let history =
        letter.history.iter().map(|event| (time_text(event.at), event.event.clone(), event.detail.clone())).collect();
    let actionable = matches!(letter.status, DeadLetterStatus::Open | DeadLetterStatus::Retrying);
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let mut layout = Layout::new(format!("Failure {id}"), "failures", Some(session)).with_notice(notice);
    layout.error = error;
    let page = FailurePage {
        layout,
        target: letter.target_system.clone(),
        origin: letter.origin.clone().unwrap_or_default(),
        created: time_text(letter.created_at),
        actionable,
        payload,
        history,
        trace_key: letter.natural_key.clone().unwrap_or_else(|| letter.source_id.clone()),
        letter: letter_row(letter, now),
    };
    (status, page).into_response()
}

#[derive(Deserialize)]
pub(crate) struct PayloadForm {
    #[serde(default)]
    csrf: String,
    payload: String,
}

pub(crate) async fn edit_payload(
    State(dashboard): State<Dashboard>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<PayloadForm>,
) -> Response {
    let session = match dashboard.operator(&headers, &form.csrf).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let payload: serde_json::Value = match serde_json::from_str(&form.payload) {
        Ok(payload) => payload,
        Err(error) => {
            let message = format!("the payload is not JSON: {error}");
            return render_failure(&dashboard, &session, id, None, Some(form.payload), Some(message)).await;
        }
    };
    match dashboard.engine.edit_dead_letter_payload(id, &payload, &session.actor()).await {
        Ok(_) => back_to(&format!("/failures/{id}"), "payload saved; retry to sync it"),
        Err(error @ EngineError::Refused { .. }) => {
            render_failure(&dashboard, &session, id, None, Some(form.payload), Some(error.to_string())).await
        }
        Err(error) => engine_error(&session, error),
    }
}

pub(crate) async fn retry(
    State(dashboard): State<Dashboard>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let session = match dashboard.operator(&headers, &form.csrf).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let summary = match dashboard.engine.retry_dead_letter(id, &session.actor()).await {
        Ok(summary) => summary,
        Err(error) => return engine_error(&session, error),
    };
    if summary.counts.failed == 0 && summary.error.is_none() {
        return back_to(&format!("/failures/{id}"), "retried: the record went through and the failure is resolved");
    }
    let reason = match dashboard.engine.store().dead_letter(id).await {
        Ok(Some(letter)) => letter.error,
        _ => summary.error.unwrap_or_default(),
    };
    back_to(&format!("/failures/{id}"), &format!("retried, but it failed again: {reason}"))
}

#[derive(Deserialize)]
pub(crate) struct DiscardForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

pub(crate) async fn discard(
    State(dashboard): State<Dashboard>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<DiscardForm>,
) -> Response {
    let session = match dashboard.operator(&headers, &form.csrf).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let reason = form.reason.trim();
    if reason.is_empty() {
        let message = "say why it is discarded: the reason goes into the audit log".to_string();
        return render_failure(&dashboard, &session, id, None, None, Some(message)).await;
    }
    match dashboard.engine.discard_dead_letter(id, &session.actor(), reason).await {
        Ok(()) => back_to(&format!("/failures/{id}"), "discarded"),
        Err(error) => engine_error(&session, error),
    }
}

// --- alerts --------------------------------------------------------------------------------------

pub(crate) struct AlertRow {
    pub id: i64,
    pub rule: String,
    pub kind: String,
    pub scope: String,
    pub summary: String,
    pub state: &'static str,
    pub opened: String,
    pub resolved: String,
    pub messages: String,
}

fn alert_row(alert: Alert, now: DateTime<Utc>) -> AlertRow {
    let messages = if !alert.notify {
        "none: within the cool-down of the previous message".to_string()
    } else if alert.deliveries.is_empty() {
        "none yet".to_string()
    } else {
        alert
            .deliveries
            .iter()
            .map(|delivery| {
                let outcome = if delivery.ok { "sent".to_string() } else { format!("failed: {}", delivery.detail) };
                format!("{} by {} {outcome}", delivery.event, delivery.channel)
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    AlertRow {
        id: alert.id,
        state: if alert.resolved_at.is_some() { "resolved" } else { "firing" },
        opened: format!("{} ({})", time_text(alert.opened_at), ago(now, alert.opened_at)),
        resolved: alert
            .resolved_at
            .map(|at| format!("{} — {}", time_text(at), alert.resolution.clone().unwrap_or_default()))
            .unwrap_or_default(),
        rule: alert.rule,
        kind: alert.kind,
        scope: alert.scope,
        summary: alert.summary,
        messages,
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "alerts.html")]
struct AlertsPage {
    layout: Layout,
    configured: bool,
    rules: Vec<(String, String, String)>,
    alerts: Vec<AlertRow>,
}

pub(crate) async fn alerts(State(dashboard): State<Dashboard>, headers: HeaderMap) -> Response {
    let session = match dashboard.viewer(&headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let alerts = match dashboard.engine.store().list_alerts(&AlertFilter { limit: 200, ..Default::default() }).await {
        Ok(alerts) => alerts,
        Err(error) => return store_error(&session, error),
    };
    let settings = dashboard.engine.config().alerts.as_ref();
    let rules = settings
        .map(|settings| {
            settings
                .rules
                .iter()
                .map(|rule| {
                    let channels: Vec<&str> = rule.channels.iter().map(|channel| channel.as_str()).collect();
                    (
                        rule.name.clone(),
                        match &rule.condition {
                            erpsync_engine::alerts::Condition::CircuitOpen => format!(
                                "{} on {}",
                                rule.condition.kind(),
                                rule.system.as_deref().unwrap_or("every system")
                            ),
                            _ => {
                                format!("{} on {}", rule.condition.kind(), rule.flow.as_deref().unwrap_or("every flow"))
                            }
                        },
                        if channels.is_empty() { "no channel".to_string() } else { channels.join(", ") },
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let now = Utc::now();
    AlertsPage {
        layout: Layout::new("Alerts", "alerts", Some(&session)),
        configured: settings.is_some(),
        rules,
        alerts: alerts.into_iter().map(|alert| alert_row(alert, now)).collect(),
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_queries() {
        assert_eq!(span_text(42), "42s");
        assert_eq!(span_text(3 * 3600 + 20 * 60), "3h 20m");
        assert_eq!(span_text(2 * 86_400 + 4 * 3600), "2d 4h");
        assert_eq!(encode_query("job 4 & more"), "job%204%20%26%20more");
    }

    fn status(circuit: Option<erpsync_engine::circuit::Circuit>) -> FlowStatus {
        FlowStatus {
            name: "orders".into(),
            entity: "order".into(),
            source: "shop".into(),
            target: "erp".into(),
            trigger: None,
            enabled: true,
            last_run: None,
            lag_seconds: None,
            open_failures: 2,
            next_run: None,
            next_reconcile: None,
            paused: None,
            circuit,
        }
    }

    fn circuit(state: erpsync_engine::circuit::CircuitState, now: DateTime<Utc>) -> erpsync_engine::circuit::Circuit {
        erpsync_engine::circuit::Circuit {
            system: "erp".into(),
            state,
            failures: 3,
            since: Some(now - chrono::Duration::minutes(4)),
            error_kind: Some("unavailable".into()),
            error: Some("connection refused".into()),
            flow: Some("orders".into()),
            probe_at: Some(now + chrono::Duration::seconds(20)),
            flows: vec!["orders".into()],
        }
    }

    /// The overview's badge: an open circuit holds the flow (it wins over waiting failures) and
    /// says which system, since when, why and when it is probed; half-open is on trial.
    #[test]
    fn an_open_circuit_shows_the_flow_as_held_with_its_reason() {
        use erpsync_engine::circuit::CircuitState;
        let now = Utc::now();
        let row = flow_row(status(Some(circuit(CircuitState::Open, now))), now);
        assert_eq!(row.health, "held");
        for part in
            ["circuit of erp open", "4m", "after 3 failed run(s)", "unavailable: connection refused", "next probe"]
        {
            assert!(row.health_detail.contains(part), "{part:?} in {:?}", row.health_detail);
        }
        let row = flow_row(status(Some(circuit(CircuitState::HalfOpen, now))), now);
        assert_eq!(row.health, "attention");
        assert!(row.health_detail.starts_with("circuit of erp half-open"), "{}", row.health_detail);
        let row = flow_row(status(None), now);
        assert_eq!(row.health, "attention", "without a circuit the waiting failures show");
    }
}
