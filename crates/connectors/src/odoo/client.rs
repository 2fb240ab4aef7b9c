//! The Odoo client: one `call(model, method, args, kwargs)` over JSON-2 or JSON-RPC, Odoo's
//! errors as connector errors, `fields_get` per model (cached), and a call counter.
//!
//! `args` and `kwargs` are those of `execute_kw`: for a record method (`write`, `read`,
//! `action_confirm`) the first positional argument is the list of ids. JSON-2 takes named
//! parameters only, so positional arguments after the ids are named from the ORM's signatures.

use crate::http::client::status_error;
use crate::http::config::parse_duration;
use crate::odoo::config::{OdooConfig, Protocol};
use crate::secret::Secret;
use crate::{ConnectorError, ErrorKind};
use erpsync_model::Currency;
use reqwest::StatusCode;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest response body read, so that a runaway answer cannot exhaust memory.
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;
/// How much of an unexpected body an error message quotes.
const ERROR_BODY_CHARS: usize = 300;

/// The Odoo connector: source and sink of one configured Odoo database.
pub struct OdooConnector {
    pub(crate) system: String,
    pub(crate) config: OdooConfig,
    pub(crate) currency: Currency,
    base_url: String,
    http: reqwest::Client,
    auth: Auth,
    request_id: AtomicU64,
    stats: Mutex<OdooStats>,
    fields: Mutex<HashMap<String, Arc<ModelFields>>>,
    /// Values that do not change during a run and cost a call each: attribute value names,
    /// countries, taxes, locations.
    pub(crate) cache: Mutex<Cache>,
}

enum Auth {
    Json2 { api_key: Secret },
    Jsonrpc { login: String, password: Secret, uid: tokio::sync::Mutex<Option<i64>> },
}

/// Calls made, in total and per `model.method`: what a benchmark reports as API calls spent.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OdooStats {
    pub calls: u64,
    pub by_method: BTreeMap<String, u64>,
}

/// What `fields_get` says about a model: field name -> (type, relation).
#[derive(Debug, Clone, Default)]
pub struct ModelFields {
    pub fields: HashMap<String, FieldInfo>,
}

#[derive(Debug, Clone, Default)]
pub struct FieldInfo {
    pub kind: String,
    pub relation: Option<String>,
}

impl ModelFields {
    pub fn has(&self, name: &str) -> bool {
        self.fields.contains_key(name)
    }

    /// The first of `names` the model has (field names differ between Odoo versions).
    pub fn first_of<'a>(&self, names: &[&'a str]) -> Option<&'a str> {
        names.iter().copied().find(|name| self.has(name))
    }

    /// Custom fields (`x_...`), sorted, for `extra`.
    pub fn custom(&self) -> Vec<String> {
        let mut names: Vec<String> = self.fields.keys().filter(|name| name.starts_with("x_")).cloned().collect();
        names.sort();
        names
    }
}

#[derive(Debug, Default)]
pub(crate) struct Cache {
    /// Attribute value id -> (attribute name, value name).
    pub attribute_values: HashMap<i64, (String, String)>,
    /// ISO country code (upper case) -> res.country id.
    pub countries: HashMap<String, i64>,
    /// Internal location id -> canonical location name; `None` until resolved.
    pub locations: Option<Arc<BTreeMap<i64, String>>>,
    /// Canonical location names in configuration order.
    pub location_names: Vec<String>,
}

/// `@api.model` methods: no ids in front of their arguments.
const MODEL_METHODS: &[&str] =
    &["search", "search_read", "search_count", "create", "fields_get", "name_search", "default_get", "context_get"];

/// Names of positional arguments after the ids (record methods) or from the start (model methods).
fn positional_names(method: &str) -> &'static [&'static str] {
    match method {
        "search_read" => &["domain", "fields", "offset", "limit", "order"],
        "search" => &["domain", "offset", "limit", "order"],
        "search_count" => &["domain", "limit"],
        "create" => &["vals_list"],
        "read" => &["fields"],
        "write" => &["vals"],
        "fields_get" => &["allfields", "attributes"],
        "name_search" => &["name", "domain", "operator", "limit"],
        _ => &[],
    }
}

impl OdooConnector {
    pub fn new(system: &str, config: OdooConfig) -> Result<Self, ConnectorError> {
        let context = format!("building odoo system {system:?}");
        let invalid = |message: String| ConnectorError::new(ErrorKind::InvalidRequest, context.clone(), message);
        let problems = config.validate();
        if let Some((field, message)) = problems.first() {
            return Err(invalid(format!("{field}: {message}")));
        }
        // reqwest is built without a bundled crypto provider; install ring once per process
        // (a second install is refused, which is fine).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let timeout = parse_duration(&config.timeout).map_err(invalid)?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .gzip(true)
            .user_agent(concat!("erpsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| invalid(format!("http client: {error}")))?;
        let secret =
            |reference: &crate::secret::SecretRef| reference.resolve().map_err(|error| invalid(error.to_string()));
        let auth = match config.protocol {
            Protocol::Json2 => {
                let key = config.api_key.as_ref().ok_or_else(|| invalid("api_key is required".into()))?;
                Auth::Json2 { api_key: secret(key)? }
            }
            Protocol::Jsonrpc => {
                let password = config
                    .password
                    .as_ref()
                    .or(config.api_key.as_ref())
                    .ok_or_else(|| invalid("password is required".into()))?;
                Auth::Jsonrpc {
                    login: config.login.clone().unwrap_or_default(),
                    password: secret(password)?,
                    uid: tokio::sync::Mutex::new(None),
                }
            }
        };
        let currency =
            config.currency.parse().map_err(|error: erpsync_model::CurrencyError| invalid(error.to_string()))?;
        Ok(OdooConnector {
            system: system.to_string(),
            base_url: config.url.trim_end_matches('/').to_string(),
            currency,
            config,
            http,
            auth,
            request_id: AtomicU64::new(1),
            stats: Mutex::new(OdooStats::default()),
            fields: Mutex::new(HashMap::new()),
            cache: Mutex::new(Cache::default()),
        })
    }

    pub fn system(&self) -> &str {
        &self.system
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Calls made so far by this connector.
    pub fn stats(&self) -> OdooStats {
        self.stats.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn count(&self, model: &str, method: &str) {
        let mut stats = self.stats.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        stats.calls += 1;
        *stats.by_method.entry(format!("{model}.{method}")).or_insert(0) += 1;
    }

    /// The context every call carries: the company, when configured.
    fn base_context(&self) -> Map<String, Value> {
        let mut context = Map::new();
        if let Some(company) = self.config.company_id {
            context.insert("allowed_company_ids".into(), json!([company]));
        }
        context
    }

    /// Calls `model.method` with `execute_kw`'s `args` and `kwargs`. A `context` in `kwargs` is
    /// merged over the connector's own.
    pub async fn call(
        &self,
        model: &str,
        method: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    ) -> Result<Value, ConnectorError> {
        let context = format!("calling {model}.{method} on odoo {:?}", self.system);
        let mut kwargs = kwargs;
        let mut call_context = self.base_context();
        if let Some(Value::Object(extra)) = kwargs.remove("context") {
            call_context.extend(extra);
        }
        match &self.auth {
            Auth::Json2 { api_key } => {
                self.call_json2(api_key, model, method, args, kwargs, call_context, &context).await
            }
            Auth::Jsonrpc { login, password, uid } => {
                let mut renewed = false;
                loop {
                    let current = {
                        let mut cached = uid.lock().await;
                        match *cached {
                            Some(uid) => uid,
                            None => {
                                let fresh = self.authenticate(login, password, &context).await?;
                                *cached = Some(fresh);
                                fresh
                            }
                        }
                    };
                    let mut kwargs = kwargs.clone();
                    if !call_context.is_empty() {
                        kwargs.insert("context".into(), Value::Object(call_context.clone()));
                    }
                    let params = json!({
                        "service": "object",
                        "method": "execute_kw",
                        "args": [self.config.database, current, password.expose(), model, method, args.clone(), kwargs],
                    });
                    self.count(model, method);
                    match self.jsonrpc(params, &context).await {
                        // A password changed or a session cleaned up: authenticate again, once.
                        Err(error) if error.kind == ErrorKind::Auth && !renewed => {
                            renewed = true;
                            *uid.lock().await = None;
                        }
                        other => return other,
                    }
                }
            }
        }
    }

    /// `common.authenticate`: the uid, or an auth error when Odoo answers `false`.
    async fn authenticate(&self, login: &str, password: &Secret, context: &str) -> Result<i64, ConnectorError> {
        let context = format!("{context}: authenticating {login:?} on database {:?}", self.config.database);
        let params = json!({
            "service": "common",
            "method": "authenticate",
            "args": [self.config.database, login, password.expose(), {}],
        });
        self.count("common", "authenticate");
        let result = self.jsonrpc(params, &context).await?;
        match result.as_i64() {
            Some(uid) if uid > 0 => Ok(uid),
            _ => Err(ConnectorError::new(
                ErrorKind::Auth,
                context,
                "odoo refused the login and password (or API key); check them and that the user is active",
            )),
        }
    }

    async fn jsonrpc(&self, params: Value, context: &str) -> Result<Value, ConnectorError> {
        let id = self.request_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "method": "call", "params": params, "id": id});
        let response = self
            .http
            .post(format!("{}/jsonrpc", self.base_url))
            .json(&body)
            .send()
            .await
            .map_err(|error| transport_error(context, error))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = read_body(response, context).await?;
        if !status.is_success() {
            return Err(status_error(context, status, &headers, &bytes));
        }
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|error| unreadable(context, status, &bytes, error))?;
        if let Some(error) = value.get("error") {
            // JSON-RPC reports failures inside an HTTP 200: `data` is Odoo's serialized exception.
            let data = error.get("data").unwrap_or(&Value::Null);
            let name = data.get("name").and_then(Value::as_str).unwrap_or_default();
            let message = data
                .get("message")
                .and_then(Value::as_str)
                .or_else(|| error.get("message").and_then(Value::as_str))
                .unwrap_or("no message");
            return Err(odoo_error(context, name, message, None));
        }
        match value.get("result") {
            Some(result) => Ok(result.clone()),
            None => Err(ConnectorError::new(
                ErrorKind::InvalidResponse,
                context,
                "the JSON-RPC answer has neither result nor error",
            )),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn call_json2(
        &self,
        api_key: &Secret,
        model: &str,
        method: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
        call_context: Map<String, Value>,
        context: &str,
    ) -> Result<Value, ConnectorError> {
        let mut body = Map::new();
        let mut positional = args.into_iter();
        if !MODEL_METHODS.contains(&method) {
            match positional.next() {
                Some(ids @ Value::Array(_)) => {
                    body.insert("ids".into(), ids);
                }
                Some(other) => {
                    return Err(ConnectorError::new(
                        ErrorKind::InvalidRequest,
                        context,
                        format!("the first argument of a record method must be a list of ids, not {other}"),
                    ));
                }
                None => {}
            }
        }
        let names = positional_names(method);
        for (index, value) in positional.enumerate() {
            let Some(name) = names.get(index) else {
                return Err(ConnectorError::new(
                    ErrorKind::InvalidRequest,
                    context,
                    format!(
                        "JSON-2 takes named parameters only and the name of argument {} of {method} is not known: pass it in kwargs",
                        index + 1
                    ),
                ));
            };
            body.insert((*name).to_string(), value);
        }
        body.extend(kwargs);
        if !call_context.is_empty() {
            body.insert("context".into(), Value::Object(call_context));
        }
        self.count(model, method);
        let response = self
            .http
            .post(format!("{}/json/2/{model}/{method}", self.base_url))
            .bearer_auth(api_key.expose())
            .header("X-Odoo-Database", &self.config.database)
            .json(&Value::Object(body))
            .send()
            .await
            .map_err(|error| transport_error(context, error))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = read_body(response, context).await?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|error| unreadable(context, status, &bytes, error));
        }
        // Odoo's own errors are a JSON object with the exception's name; a proxy in front of it
        // answers HTML, which the status alone classifies.
        let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
        match parsed.as_ref().and_then(|value| value.get("name").and_then(Value::as_str).map(|name| (name, value))) {
            Some((name, value)) => {
                let message = value.get("message").and_then(Value::as_str).unwrap_or("no message");
                let mut error = odoo_error(context, name, message, Some(status));
                if let Some(delay) = status_error(context, status, &headers, b"").retry_after {
                    error = error.with_retry_after(delay);
                }
                Err(error)
            }
            None => Err(status_error(context, status, &headers, &bytes)),
        }
    }

    /// `fields_get` of a model, once per connector.
    pub async fn fields(&self, model: &str) -> Result<Arc<ModelFields>, ConnectorError> {
        if let Some(known) = self.fields.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(model) {
            return Ok(known.clone());
        }
        let mut kwargs = Map::new();
        kwargs.insert("attributes".into(), json!(["type", "relation"]));
        let value = self.call(model, "fields_get", vec![], kwargs).await?;
        let Value::Object(described) = value else {
            return Err(ConnectorError::new(
                ErrorKind::InvalidResponse,
                format!("reading the fields of {model} from odoo {:?}", self.system),
                "fields_get did not answer an object",
            ));
        };
        let fields = described
            .into_iter()
            .map(|(name, info)| {
                let kind = info.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
                let relation = info.get("relation").and_then(Value::as_str).map(str::to_string);
                (name, FieldInfo { kind, relation })
            })
            .collect();
        let fields = Arc::new(ModelFields { fields });
        self.fields.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(model.to_string(), fields.clone());
        Ok(fields)
    }

    /// `search_read(domain, fields, offset, limit, order)` with an optional extra context.
    pub async fn search_read(
        &self,
        model: &str,
        domain: Value,
        fields: &[String],
        options: SearchOptions<'_>,
    ) -> Result<Vec<Value>, ConnectorError> {
        let mut kwargs = Map::new();
        kwargs.insert("fields".into(), json!(fields));
        if let Some(limit) = options.limit {
            kwargs.insert("limit".into(), json!(limit));
        }
        if options.offset > 0 {
            kwargs.insert("offset".into(), json!(options.offset));
        }
        if let Some(order) = options.order {
            kwargs.insert("order".into(), json!(order));
        }
        if options.include_archived {
            kwargs.insert("context".into(), json!({"active_test": false}));
        }
        let value = self.call(model, "search_read", vec![domain], kwargs).await?;
        match value {
            Value::Array(rows) => Ok(rows),
            other => Err(ConnectorError::new(
                ErrorKind::InvalidResponse,
                format!("reading {model} from odoo {:?}", self.system),
                format!("search_read answered {} instead of a list", crate::http::map::kind_of(&other)),
            )),
        }
    }

    /// `create` with a list of value dicts: the new ids, in order.
    pub async fn create(&self, model: &str, vals_list: Vec<Value>) -> Result<Vec<i64>, ConnectorError> {
        let count = vals_list.len();
        let value = self.call(model, "create", vec![Value::Array(vals_list)], Map::new()).await?;
        let ids: Option<Vec<i64>> = match &value {
            Value::Array(ids) => ids.iter().map(Value::as_i64).collect(),
            Value::Number(id) => id.as_i64().map(|id| vec![id]),
            _ => None,
        };
        match ids {
            Some(ids) if ids.len() == count => Ok(ids),
            _ => Err(ConnectorError::new(
                ErrorKind::InvalidResponse,
                format!("creating {model} in odoo {:?}", self.system),
                format!("create answered {value} for {count} records"),
            )),
        }
    }

    /// `write(ids, vals)`.
    pub async fn write(&self, model: &str, ids: &[i64], vals: Value) -> Result<(), ConnectorError> {
        self.call(model, "write", vec![json!(ids), vals], Map::new()).await.map(|_| ())
    }

    /// A record method without arguments (`action_confirm`, `action_cancel`).
    pub async fn action(&self, model: &str, method: &str, ids: &[i64]) -> Result<Value, ConnectorError> {
        self.call(model, method, vec![json!(ids)], Map::new()).await
    }
}

/// Options of [`OdooConnector::search_read`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SearchOptions<'a> {
    pub offset: usize,
    pub limit: Option<usize>,
    pub order: Option<&'a str>,
    /// Reads archived records too (`active_test = False`).
    pub include_archived: bool,
}

/// An Odoo exception (by its qualified name) as a connector error.
pub(crate) fn odoo_error(context: &str, name: &str, message: &str, status: Option<StatusCode>) -> ConnectorError {
    let short = name.rsplit('.').next().unwrap_or(name);
    let kind = match short {
        "AccessDenied" | "Unauthorized" | "SessionExpiredException" => ErrorKind::Auth,
        "AccessError" | "Forbidden" => ErrorKind::Permission,
        "MissingError" | "NotFound" => ErrorKind::NotFound,
        "ValidationError"
        | "UserError"
        | "RedirectWarning"
        | "ValueError"
        | "TypeError"
        | "KeyError"
        | "AttributeError"
        | "BadRequest"
        | "UnprocessableEntity" => ErrorKind::InvalidRequest,
        "ConcurrencyError" | "SerializationFailure" | "LockNotAvailable" | "TooManyRequests" => {
            if short == "TooManyRequests" { ErrorKind::RateLimited } else { ErrorKind::Unavailable }
        }
        _ => match status.map(|status| status.as_u16()) {
            Some(429) => ErrorKind::RateLimited,
            Some(401) => ErrorKind::Auth,
            Some(403) => ErrorKind::Permission,
            Some(404) => ErrorKind::NotFound,
            Some(500..=599) => ErrorKind::Unavailable,
            Some(_) => ErrorKind::InvalidRequest,
            None => ErrorKind::InvalidResponse,
        },
    };
    let text: String = message.chars().take(ERROR_BODY_CHARS * 2).collect();
    let status_text = status.map(|status| format!("{status}: ")).unwrap_or_default();
    ConnectorError::new(kind, context, format!("{status_text}{name}: {}", text.trim()))
}

fn unreadable(context: &str, status: StatusCode, bytes: &[u8], error: serde_json::Error) -> ConnectorError {
    let text = String::from_utf8_lossy(bytes);
    let excerpt: String = text.chars().take(ERROR_BODY_CHARS).collect();
    // A body cut off mid-way is a failure of the server or the network: trying again can help.
    ConnectorError::new(
        ErrorKind::Unavailable,
        context,
        format!("{status} with a body that is not JSON ({error}): {}", excerpt.trim()),
    )
    .with_source(error)
}

async fn read_body(response: reqwest::Response, context: &str) -> Result<Vec<u8>, ConnectorError> {
    if response.content_length().is_some_and(|length| length as usize > MAX_BODY_BYTES) {
        return Err(ConnectorError::new(
            ErrorKind::InvalidResponse,
            context,
            "the response body is larger than 256 MiB",
        ));
    }
    let bytes = response.bytes().await.map_err(|error| transport_error(context, error))?;
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ConnectorError::new(
            ErrorKind::InvalidResponse,
            context,
            "the response body is larger than 256 MiB",
        ));
    }
    Ok(bytes.to_vec())
}

fn transport_error(context: &str, error: reqwest::Error) -> ConnectorError {
    let kind = if error.is_timeout() { ErrorKind::Timeout } else { ErrorKind::Unavailable };
    ConnectorError::new(kind, context, error.to_string()).with_source(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exceptions_become_kinds() {
        let check = |name: &str, status: Option<u16>, kind: ErrorKind, retryable: bool| {
            let error = odoo_error("x", name, "m", status.map(|code| StatusCode::from_u16(code).unwrap()));
            assert_eq!((error.kind, error.retryable), (kind, retryable), "{name}");
        };
        check("odoo.exceptions.AccessDenied", None, ErrorKind::Auth, false);
        check("odoo.exceptions.AccessError", Some(403), ErrorKind::Permission, false);
        check("odoo.exceptions.ValidationError", Some(422), ErrorKind::InvalidRequest, false);
        check("odoo.exceptions.UserError", None, ErrorKind::InvalidRequest, false);
        check("odoo.exceptions.MissingError", Some(404), ErrorKind::NotFound, false);
        check("werkzeug.exceptions.Unauthorized", Some(401), ErrorKind::Auth, false);
        check("psycopg2.errors.SerializationFailure", None, ErrorKind::Unavailable, true);
        check("builtins.RuntimeError", Some(500), ErrorKind::Unavailable, true);
        check("builtins.RuntimeError", None, ErrorKind::InvalidResponse, false);
    }
}
