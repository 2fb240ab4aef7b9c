//! The HTTP surface: JSON-RPC at `/jsonrpc`, JSON-2 at `/json/2/<model>/<method>`, the
//! session login, the version probe, the invoice report route and the control API, with the
//! fault injection applied to API calls.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::{any, get, post};
use serde_json::{Map, Value, json};

use super::Shared;
use super::business;
use super::control::{self, FaultKind};
use super::error::{ErrorKind, OdooError, OdooResult};
use super::schema::{FieldKind, ModelDef};
use super::store::{Context, OdooState, model_def};

/// Request bodies above this are refused before parsing.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/jsonrpc", post(jsonrpc))
        .route("/json/2/{model}/{method}", any(json2))
        .route("/xmlrpc/2/{service}", post(xmlrpc))
        .route("/web/version", get(web_version))
        .route("/web/session/authenticate", post(session_authenticate))
        .route("/report/pdf/{report}/{docids}", get(report_pdf))
        .route("/_sim/counters", get(control::get_counters).delete(control::reset_counters))
        .route("/_sim/counters/reset", post(control::reset_counters))
        .route("/_sim/faults", get(control::get_faults).post(control::set_faults).delete(control::clear_faults))
        .route("/_sim/seed", post(control::post_seed))
        .route("/_sim/reset", post(control::post_reset))
        .route("/_sim/touch", post(control::post_touch))
        .route("/_sim/clock", post(control::post_clock))
        .route("/_sim/ship", post(control::post_ship))
        .route("/_sim/invoice", post(control::post_invoice))
        .route("/_sim/orders", post(control::post_orders))
        .route("/_sim/stock", post(control::post_stock))
        .route("/_sim/access", post(control::deny_access).delete(control::clear_access))
        .route("/_sim/webhooks", get(control::get_webhooks).post(control::add_webhook).delete(control::clear_webhooks))
        .route("/_sim/webhooks/faults", post(control::set_webhook_faults))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

fn response(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response {
    let mut built = Response::new(Body::from(body));
    *built.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        built.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    built
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    response(status, "application/json", serde_json::to_vec(value).unwrap_or_default())
}

/// What a fault decided before the call runs: answer now, or run and then cut the body.
enum FaultOutcome {
    Answer(Response),
    Truncate,
    None,
}

/// Counts the call, waits the configured latency and applies a matching fault.
async fn before_call(shared: &Shared, model: &str, method: &str) -> FaultOutcome {
    let (latency, fault) = {
        let mut state = shared.lock();
        state.counters.record(model, method);
        (state.faults.latency_ms, state.faults.take(model, method))
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    match fault {
        None => FaultOutcome::None,
        Some(FaultKind::Truncate) => FaultOutcome::Truncate,
        Some(FaultKind::Status { status, retry_after_seconds }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let reason = status.canonical_reason().unwrap_or("Error");
            let mut answer = response(
                status,
                "text/html",
                format!("<html><body><h1>{} {reason}</h1></body></html>", status.as_u16()).into_bytes(),
            );
            if let Some(seconds) = retry_after_seconds
                && let Ok(value) = header::HeaderValue::from_str(&seconds.to_string())
            {
                answer.headers_mut().insert(header::RETRY_AFTER, value);
            }
            FaultOutcome::Answer(answer)
        }
        Some(FaultKind::Hang { seconds }) => {
            let mut shutdown = shared.shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(seconds)) => {}
                _ = shutdown.changed() => {}
            }
            FaultOutcome::Answer(response(
                StatusCode::GATEWAY_TIMEOUT,
                "text/html",
                b"<html><body><h1>504 Gateway Time-out</h1></body></html>".to_vec(),
            ))
        }
    }
}

fn truncate(mut answer: Response, body: Vec<u8>) -> Response {
    let half = body.len() / 2;
    *answer.body_mut() = Body::from(body[..half].to_vec());
    answer.headers_mut().remove(header::CONTENT_LENGTH);
    answer
}

/// Runs one ORM call in its own transaction, as Odoo does per RPC request.
fn run_call(shared: &Shared, call: &Call) -> OdooResult<Value> {
    let mut state = shared.lock();
    state.begin();
    let result = execute(&mut state, call);
    match result {
        Ok(_) => {
            state.commit();
            super::webhook::flush(shared, &mut state);
        }
        Err(_) => state.rollback(),
    }
    result
}

// ---- JSON-RPC ------------------------------------------------------------------------------

async fn jsonrpc(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            let failure = OdooError::new(ErrorKind::HttpBadRequest, format!("Invalid JSON data: {error}"));
            return json_response(StatusCode::OK, &failure.jsonrpc_envelope(&Value::Null));
        }
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let params = request.get("params").cloned().unwrap_or(Value::Null);
    let service = params.get("service").and_then(Value::as_str).unwrap_or_default().to_owned();
    let method = params.get("method").and_then(Value::as_str).unwrap_or_default().to_owned();
    let args: Vec<Value> = params.get("args").and_then(Value::as_array).cloned().unwrap_or_default();

    let outcome = before_service_call(&shared, &service, &method, &args).await;
    if let FaultOutcome::Answer(answer) = outcome {
        return answer;
    }
    let result = dispatch_service(&shared, &service, &method, &args);
    let envelope = match result {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(error) => error.jsonrpc_envelope(&id),
    };
    let body = serde_json::to_vec(&envelope).unwrap_or_default();
    let answer = response(StatusCode::OK, "application/json", body.clone());
    match outcome {
        FaultOutcome::Truncate => truncate(answer, body),
        _ => answer,
    }
}

/// Counts the call under the model and method it targets and applies faults.
async fn before_service_call(shared: &Shared, service: &str, method: &str, args: &[Value]) -> FaultOutcome {
    match (service, method) {
        ("object", "execute_kw" | "execute") => {
            let model = args.get(3).and_then(Value::as_str).unwrap_or_default();
            let model_method = args.get(4).and_then(Value::as_str).unwrap_or_default();
            before_call(shared, model, model_method).await
        }
        _ => before_call(shared, service, method).await,
    }
}

/// The `common`, `object` and `db` services, shared by JSON-RPC and XML-RPC.
fn dispatch_service(shared: &Shared, service: &str, method: &str, args: &[Value]) -> OdooResult<Value> {
    match (service, method) {
        ("common", "version") => Ok(version_info(&shared.version)),
        ("common", "authenticate" | "login") => {
            let mut state = shared.lock();
            let db = args.first().and_then(Value::as_str).unwrap_or_default();
            let login = args.get(1).and_then(Value::as_str).unwrap_or_default();
            let password = args.get(2).and_then(Value::as_str).unwrap_or_default();
            if db != state.db {
                Err(unknown_database(db))
            } else if state.check_login(db, login, password) {
                Ok(json!(state.uid))
            } else {
                // `exp_authenticate` turns AccessDenied (wrong password, cooldown) into False.
                Ok(Value::Bool(false))
            }
        }
        ("db", "list") => Ok(json!([shared.lock().db.clone()])),
        ("object", "execute_kw" | "execute") => object_call(shared, method, args),
        ("common" | "object" | "db", _) => Err(OdooError::new(
            ErrorKind::AttributeError,
            format!("module 'odoo.service.{service}' has no attribute 'exp_{method}'"),
        )),
        _ => Err(OdooError::new(ErrorKind::KeyError, format!("'{service}'"))),
    }
}

// ---- XML-RPC -------------------------------------------------------------------------------

async fn xmlrpc(State(shared): State<Arc<Shared>>, Path(service): Path<String>, body: Bytes) -> Response {
    let xml = |body: String| response(StatusCode::OK, "text/xml; charset=utf-8", body.into_bytes());
    let text = String::from_utf8_lossy(&body);
    let (method, args) = match super::xmlrpc::parse_method_call(&text) {
        Ok(call) => call,
        Err(error) => {
            return xml(super::xmlrpc::fault(1, &format!("ExpatError: {error}")));
        }
    };
    let outcome = before_service_call(&shared, &service, &method, &args).await;
    if let FaultOutcome::Answer(answer) = outcome {
        return answer;
    }
    let body = match dispatch_service(&shared, &service, &method, &args) {
        Ok(value) => super::xmlrpc::method_response(&value),
        Err(error) => super::xmlrpc::fault_for(&error),
    };
    let bytes = body.clone().into_bytes();
    let answer = xml(body);
    match outcome {
        FaultOutcome::Truncate => truncate(answer, bytes),
        _ => answer,
    }
}

fn unknown_database(db: &str) -> OdooError {
    OdooError::new(
        ErrorKind::OperationalError,
        format!("connection to server failed: FATAL:  database \"{db}\" does not exist\n"),
    )
}

fn version_info(version: &str) -> Value {
    let major: i64 = version.split('.').next().and_then(|text| text.parse().ok()).unwrap_or(17);
    json!({
        "server_version": version,
        "server_version_info": [major, 0, 0, "final", 0, ""],
        "server_serie": format!("{major}.0"),
        "protocol_version": 1,
    })
}

/// `execute_kw(db, uid, password, model, method, args, kwargs)` or
/// `execute(db, uid, password, model, method, *args)`.
fn object_call(shared: &Shared, rpc_method: &str, args: &[Value]) -> OdooResult<Value> {
    if args.len() < 5 {
        return Err(OdooError::type_error(format!(
            "{rpc_method}() missing {} required positional arguments",
            5usize.saturating_sub(args.len())
        )));
    }
    {
        let state = shared.lock();
        let db = args[0].as_str().unwrap_or_default();
        if db != state.db {
            return Err(unknown_database(db));
        }
        let password = args[2].as_str().unwrap_or_default();
        if args[1].as_i64() != Some(state.uid) || (password != state.password && password != state.api_key) {
            return Err(OdooError::access_denied());
        }
    }
    let model = args[3].as_str().unwrap_or_default();
    let method = args[4].as_str().unwrap_or_default();
    let (positional, mut named) = if rpc_method == "execute_kw" {
        let positional = match args.get(5) {
            Some(Value::Array(items)) => items.clone(),
            None | Some(Value::Null) => Vec::new(),
            Some(other) => vec![other.clone()],
        };
        let named = match args.get(6) {
            Some(Value::Object(map)) => map.clone(),
            _ => Map::new(),
        };
        (positional, named)
    } else {
        (args[5..].to_vec(), Map::new())
    };
    let context = named.remove("context");
    let model_definition = resolve_model_and_method(model, method)?;
    let spec = method_spec(model_definition, method);
    let (ids, positional) = if spec.record_method {
        let Some((first, rest)) = positional.split_first() else {
            return Err(OdooError::type_error(format!("{method}() missing 1 required positional argument: 'ids'")));
        };
        (Some(ids_from(first)?), rest.to_vec())
    } else {
        (None, positional)
    };
    let params = bind(&spec, method, positional, named)?;
    run_call(
        shared,
        &Call {
            model: model_definition,
            method: method.to_owned(),
            ids,
            params,
            ctx: Context::from_value(context.as_ref()),
        },
    )
}

fn ids_from(value: &Value) -> OdooResult<Vec<i64>> {
    match value {
        Value::Number(number) => {
            number.as_i64().map(|id| vec![id]).ok_or_else(|| OdooError::type_error("ids must be integers"))
        }
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_i64().ok_or_else(|| OdooError::type_error("ids must be integers")))
            .collect(),
        Value::Bool(false) | Value::Null => Ok(Vec::new()),
        _ => Err(OdooError::type_error("ids must be integers")),
    }
}

// ---- JSON-2 --------------------------------------------------------------------------------

fn json2_error(error: &OdooError) -> Response {
    let status = StatusCode::from_u16(error.kind.json2_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &error.serialize())
}

async fn json2(
    State(shared): State<Arc<Shared>>,
    Path((model, method)): Path<(String, String)>,
    request_method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim().to_owned());
    {
        let state = shared.lock();
        if key.as_deref() != Some(state.api_key.as_str()) {
            return json2_error(&OdooError::new(ErrorKind::HttpUnauthorized, "Invalid apikey"));
        }
        if let Some(database) = headers.get("x-odoo-database").and_then(|value| value.to_str().ok())
            && database != state.db
        {
            return json2_error(&OdooError::new(ErrorKind::HttpNotFound, format!("database {database:?} not found")));
        }
    }
    if request_method != Method::POST {
        return json2_error(&OdooError::new(
            ErrorKind::HttpMethodNotAllowed,
            "The method is not allowed for the requested URL.",
        ));
    }
    let outcome = before_call(&shared, &model, &method).await;
    if let FaultOutcome::Answer(answer) = outcome {
        return answer;
    }
    let (status, value) = match json2_call(&shared, &model, &method, &body) {
        Ok(value) => (StatusCode::OK, value),
        Err(error) => (
            StatusCode::from_u16(error.kind.json2_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            error.serialize(),
        ),
    };
    let bytes = serde_json::to_vec(&value).unwrap_or_default();
    let answer = response(status, "application/json", bytes.clone());
    match outcome {
        FaultOutcome::Truncate => truncate(answer, bytes),
        _ => answer,
    }
}

fn json2_call(shared: &Shared, model: &str, method: &str, body: &[u8]) -> OdooResult<Value> {
    let mut named: Map<String, Value> = if body.is_empty() {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(OdooError::new(
                    ErrorKind::HttpBadRequest,
                    "could not parse the body, expecting a json object",
                ));
            }
            Err(error) => {
                return Err(OdooError::new(
                    ErrorKind::HttpBadRequest,
                    format!("could not parse the body as json: {error}"),
                ));
            }
        }
    };
    let model_definition = registry_model(model)
        .ok_or_else(|| OdooError::new(ErrorKind::HttpNotFound, format!("the model '{model}' does not exist")))?;
    if let Err(error) = resolve_model_and_method(model, method) {
        return Err(match error.kind {
            ErrorKind::AttributeError => OdooError::new(ErrorKind::HttpNotFound, error.message),
            _ => error,
        });
    }
    let context = named.remove("context");
    let ids = named.remove("ids").map(|ids| ids_from(&ids)).transpose()?;
    let spec = method_spec(model_definition, method);
    if !spec.record_method && ids.as_ref().is_some_and(|ids| !ids.is_empty()) {
        return Err(OdooError::new(
            ErrorKind::HttpUnprocessableEntity,
            format!("cannot call {model}.{method} with ids"),
        ));
    }
    let params = bind(&spec, method, Vec::new(), named)
        .map_err(|error| OdooError::new(ErrorKind::HttpUnprocessableEntity, error.message))?;
    let ids = if spec.record_method { Some(ids.unwrap_or_default()) } else { None };
    run_call(
        shared,
        &Call {
            model: model_definition,
            method: method.to_owned(),
            ids,
            params,
            ctx: Context::from_value(context.as_ref()),
        },
    )
}

fn registry_model(name: &str) -> Option<&'static ModelDef> {
    super::schema::registry().model(name)
}

// ---- method binding and dispatch -----------------------------------------------------------

struct MethodSpec {
    record_method: bool,
    params: &'static [&'static str],
    required: usize,
}

fn method_spec(model: &ModelDef, method: &str) -> MethodSpec {
    let (record_method, params, required): (bool, &'static [&'static str], usize) = match method {
        "search" => (false, &["domain", "offset", "limit", "order"], 1),
        "search_count" => (false, &["domain", "limit"], 1),
        "search_read" => (false, &["domain", "fields", "offset", "limit", "order"], 0),
        "read" => (true, &["fields", "load"], 0),
        "create" => (false, &["vals_list"], 1),
        "write" => (true, &["vals"], 1),
        "unlink" => (true, &[], 0),
        "fields_get" => (false, &["allfields", "attributes"], 0),
        "name_search" => (false, &["name", "domain", "operator", "limit"], 0),
        "context_get" => (false, &[], 0),
        _ => (business::is_action(model, method), &[], 0),
    };
    MethodSpec { record_method, params, required }
}

/// `get_public_method`: private methods are refused, unknown ones do not exist.
fn resolve_model_and_method(model: &str, method: &str) -> OdooResult<&'static ModelDef> {
    let definition = model_def(model)?;
    if method.starts_with('_') {
        return Err(OdooError::new(
            ErrorKind::AccessError,
            format!("Private methods (such as '{model}.{method}') cannot be called remotely."),
        ));
    }
    let orm =
        ["search", "search_count", "search_read", "read", "create", "write", "unlink", "fields_get", "name_search"];
    if orm.contains(&method) || business::is_action(definition, method) {
        return Ok(definition);
    }
    Err(OdooError::new(
        ErrorKind::AttributeError,
        format!("The method '{method}' does not exist on the model '{model}'"),
    ))
}

/// Binds positional then named arguments to the method's parameters, with Python's errors.
fn bind(
    spec: &MethodSpec,
    method: &str,
    positional: Vec<Value>,
    named: Map<String, Value>,
) -> OdooResult<Map<String, Value>> {
    if positional.len() > spec.params.len() {
        return Err(OdooError::type_error(format!(
            "{method}() takes from 1 to {} positional arguments but {} were given",
            spec.params.len() + 1,
            positional.len() + 1
        )));
    }
    let mut bound = Map::new();
    for (name, value) in spec.params.iter().zip(positional) {
        bound.insert((*name).into(), value);
    }
    for (name, value) in named {
        if !spec.params.contains(&name.as_str()) {
            return Err(OdooError::type_error(format!("{method}() got an unexpected keyword argument '{name}'")));
        }
        if bound.contains_key(&name) {
            return Err(OdooError::type_error(format!("{method}() got multiple values for argument '{name}'")));
        }
        bound.insert(name, value);
    }
    let missing: Vec<&str> =
        spec.params[..spec.required].iter().filter(|name| !bound.contains_key(**name)).copied().collect();
    if !missing.is_empty() {
        return Err(OdooError::type_error(format!(
            "{method}() missing {} required positional argument{}: {}",
            missing.len(),
            if missing.len() == 1 { "" } else { "s" },
            missing.iter().map(|name| format!("'{name}'")).collect::<Vec<_>>().join(" and ")
        )));
    }
    Ok(bound)
}

pub struct Call {
    pub model: &'static ModelDef,
    pub method: String,
    pub ids: Option<Vec<i64>>,
    pub params: Map<String, Value>,
    pub ctx: Context,
}

fn usize_param(params: &Map<String, Value>, name: &str) -> OdooResult<Option<usize>> {
    match params.get(name) {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(None),
        // Odoo tests `if limit:`, so 0 means no limit (and no offset).
        Some(Value::Number(number)) => Ok(number.as_u64().filter(|value| *value > 0).map(|value| value as usize)),
        Some(other) => Err(OdooError::type_error(format!("'{name}' must be an integer, not {other}"))),
    }
}

fn string_list(params: &Map<String, Value>, name: &str) -> Vec<String> {
    params
        .get(name)
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Runs one method on the state.
pub fn execute(state: &mut OdooState, call: &Call) -> OdooResult<Value> {
    let model = call.model;
    let params = &call.params;
    let ctx = &call.ctx;
    let ids = call.ids.clone().unwrap_or_default();
    let operation = match call.method.as_str() {
        "search" | "search_count" | "search_read" | "read" | "fields_get" | "name_search" | "context_get" => "read",
        "create" => "create",
        "unlink" => "unlink",
        _ => "write",
    };
    state.check_access(model, operation)?;
    let empty = Value::Array(Vec::new());
    let domain = params.get("domain").unwrap_or(&empty);
    let order = params.get("order").and_then(Value::as_str);
    match call.method.as_str() {
        "search" => {
            let found = state.search(
                model.name,
                domain,
                usize_param(params, "offset")?.unwrap_or(0),
                usize_param(params, "limit")?,
                order,
                ctx,
            )?;
            Ok(json!(found))
        }
        "search_count" => Ok(json!(state.search_count(model.name, domain, usize_param(params, "limit")?, ctx)?)),
        "search_read" => {
            let found = state.search(
                model.name,
                domain,
                usize_param(params, "offset")?.unwrap_or(0),
                usize_param(params, "limit")?,
                order,
                ctx,
            )?;
            Ok(Value::Array(state.read(model.name, &found, &string_list(params, "fields"), ctx)?))
        }
        "read" => Ok(Value::Array(state.read(model.name, &ids, &string_list(params, "fields"), ctx)?)),
        "create" => match params.get("vals_list") {
            Some(Value::Array(vals_list)) => Ok(json!(state.create(model.name, vals_list, ctx)?)),
            Some(single @ Value::Object(_)) => {
                let created = state.create(model.name, std::slice::from_ref(single), ctx)?;
                Ok(json!(created.first().copied().unwrap_or_default()))
            }
            Some(other) => Err(OdooError::value(format!("Invalid vals_list: {other}"))),
            None => Err(OdooError::type_error("create() missing 1 required positional argument: 'vals_list'")),
        },
        "write" => match params.get("vals") {
            Some(Value::Object(vals)) => {
                state.write(model.name, &ids, vals, ctx)?;
                Ok(Value::Bool(true))
            }
            _ => Err(OdooError::value("write() expects a dictionary of values")),
        },
        "unlink" => {
            state.unlink(model.name, &ids)?;
            Ok(Value::Bool(true))
        }
        "fields_get" => Ok(fields_get(model, &string_list(params, "allfields"), &string_list(params, "attributes"))),
        "name_search" => {
            let name = params.get("name").and_then(Value::as_str).unwrap_or_default();
            let operator = params.get("operator").and_then(Value::as_str).unwrap_or("ilike");
            let mut search_domain = match params.get("domain") {
                Some(Value::Array(items)) => items.clone(),
                _ => Vec::new(),
            };
            if !name.is_empty() {
                search_domain.push(json!(["display_name", operator, name]));
            }
            let limit = usize_param(params, "limit")?.or(Some(100));
            let found = state.search(model.name, &Value::Array(search_domain), 0, limit, None, ctx)?;
            Ok(Value::Array(found.into_iter().map(|id| json!([id, state.display_name(model.name, id)])).collect()))
        }
        method => business::call_action(state, model, method, &ids, ctx),
    }
}

fn fields_get(model: &ModelDef, only: &[String], attributes: &[String]) -> Value {
    let mut result = Map::new();
    for field in &model.fields {
        if !only.is_empty() && !only.iter().any(|name| name == field.name) {
            continue;
        }
        let mut description = Map::new();
        description.insert("type".into(), json!(field.kind.type_name()));
        description.insert("string".into(), json!(field.label));
        description.insert("required".into(), json!(field.required));
        description.insert(
            "readonly".into(),
            json!(field.computed || matches!(field.name, "id" | "create_date" | "write_date")),
        );
        description
            .insert("store".into(), json!(field.is_stored() || matches!(field.kind, FieldKind::One2many { .. })));
        if let Some(comodel) = field.kind.comodel() {
            description.insert("relation".into(), json!(comodel));
        }
        if let FieldKind::One2many { inverse, .. } = field.kind {
            description.insert("relation_field".into(), json!(inverse));
        }
        if let FieldKind::Selection(values) = field.kind {
            description.insert(
                "selection".into(),
                json!(values.iter().map(|value| json!([value, value])).collect::<Vec<_>>()),
            );
        }
        if !attributes.is_empty() {
            description.retain(|key, _| attributes.iter().any(|attribute| attribute == key));
        }
        result.insert(field.name.into(), Value::Object(description));
    }
    Value::Object(result)
}

// ---- web routes ------------------------------------------------------------------------------

async fn web_version(State(shared): State<Arc<Shared>>) -> Response {
    let info = version_info(&shared.version);
    json_response(StatusCode::OK, &json!({"version_info": info["server_version_info"], "version": shared.version}))
}

/// `/web/session/authenticate`: a JSON-RPC route that opens a session cookie.
async fn session_authenticate(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let params = request.get("params").cloned().unwrap_or(Value::Null);
    let text = |name: &str| params.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    let (db, login, password) = (text("db"), text("login"), text("password"));
    let mut state = shared.lock();
    if !state.check_login(&db, &login, &password) {
        return json_response(StatusCode::OK, &OdooError::access_denied().jsonrpc_envelope(&id));
    }
    let session = format!("{:040x}", rand::random::<u128>());
    state.sessions.insert(session.clone());
    let result = json!({"uid": state.uid, "db": state.db, "username": state.login, "is_system": true});
    let mut answer = json_response(StatusCode::OK, &json!({"jsonrpc": "2.0", "id": id, "result": result}));
    if let Ok(cookie) = header::HeaderValue::from_str(&format!("session_id={session}; HttpOnly; Path=/")) {
        answer.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    answer
}

/// `/report/pdf/account.report_invoice/<ids>`: needs a session (or, here, the API key as a
/// bearer); without one Odoo redirects to the login page.
async fn report_pdf(
    State(shared): State<Arc<Shared>>,
    Path((report, docids)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let state = shared.lock();
    let session_ok = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix("session_id="))
        .any(|session| state.sessions.contains(session));
    let bearer_ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .is_some_and(|(scheme, key)| scheme.eq_ignore_ascii_case("bearer") && key.trim() == state.api_key);
    if !session_ok && !bearer_ok {
        let mut answer = response(StatusCode::SEE_OTHER, "text/html", Vec::new());
        let location = format!("/web/login?redirect=%2Freport%2Fpdf%2F{report}%2F{docids}");
        if let Ok(value) = header::HeaderValue::from_str(&location) {
            answer.headers_mut().insert(header::LOCATION, value);
        }
        return answer;
    }
    if !matches!(report.as_str(), "account.report_invoice" | "account.report_invoice_with_payments") {
        return response(StatusCode::NOT_FOUND, "text/html", b"<html><body>404: Not Found</body></html>".to_vec());
    }
    let ids: Result<Vec<i64>, _> = docids.split(',').map(|part| part.trim().parse::<i64>()).collect();
    let Ok(ids) = ids else {
        return response(StatusCode::NOT_FOUND, "text/html", b"<html><body>404: Not Found</body></html>".to_vec());
    };
    match business::invoice_pdf(&state, &ids) {
        Ok(pdf) => {
            let mut answer = response(StatusCode::OK, "application/pdf", pdf);
            if let Ok(value) = header::HeaderValue::from_str("inline; filename=\"Invoice.pdf\"") {
                answer.headers_mut().insert(header::CONTENT_DISPOSITION, value);
            }
            answer
        }
        Err(error) => json_response(StatusCode::INTERNAL_SERVER_ERROR, &error.serialize()),
    }
}
