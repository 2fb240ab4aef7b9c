//! The JSON-RPC client of the `tryton` connector, and the connector itself with the ids it
//! resolves once (company, currency, unit, web shop, warehouses).
//!
//! Tryton's protocol: `POST <url>/<database>/rpc/` with `{"id", "method", "params"}`; the answer
//! is `{"id", "result"}` or `{"id", "error": [kind, details]}` with HTTP 200. A session comes
//! from `common.db.login` (`[user id, token, ...]`) and is sent as
//! `Authorization: Session base64(login:user_id:token)`. An expired or revoked session is
//! answered 401 with an HTML body; the client then logs in once more and repeats the call.
//! Model methods take the context as their last positional parameter, and it must name the
//! company or record rules refuse sales and company-dependent fields read as null.

use crate::http::client::status_error;
use crate::http::config::parse_duration;
use crate::secret::Secret;
use crate::tryton::config::{IdOrName, TrytonConfig};
use crate::{ConnectorError, ErrorKind, Fault};
use base64::Engine;
use erpsync_model::Currency;
use reqwest::StatusCode;
use serde_json::{Map, Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Largest response body read; a larger one is an invalid response, not an out-of-memory.
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;

/// Speaks JSON-RPC to one Tryton database with one session.
pub struct TrytonClient {
    system: String,
    http: reqwest::Client,
    rpc_url: String,
    username: String,
    password: Secret,
    language: String,
    /// The `Authorization` header value of the current session.
    session: tokio::sync::Mutex<Option<String>>,
    calls: AtomicU64,
    next_id: AtomicU64,
}

impl TrytonClient {
    pub fn new(system: &str, config: &TrytonConfig) -> Result<TrytonClient, ConnectorError> {
        let context = format!("building tryton {system:?}");
        let invalid = |message: String| ConnectorError::new(ErrorKind::InvalidRequest, &context, message);
        // reqwest is built without a TLS provider: install ring once (a no-op when done).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let timeout = parse_duration(&config.timeout).map_err(invalid)?;
        let connect_timeout = parse_duration(&config.connect_timeout).map_err(invalid)?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(connect_timeout)
            // Tryton marks every response over 1400 bytes `Content-Encoding: gzip` but only
            // compresses it when asked: asking always keeps the header honest.
            .gzip(true)
            .user_agent(concat!("erpsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| invalid(format!("http client: {error}")))?;
        let password = config.password.resolve().map_err(|error| invalid(format!("password: {error}")))?;
        Ok(TrytonClient {
            system: system.to_string(),
            http,
            rpc_url: format!("{}/{}/rpc/", config.url.trim_end_matches('/'), config.database),
            username: config.username.clone(),
            password,
            language: config.language.clone(),
            session: tokio::sync::Mutex::new(None),
            calls: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
        })
    }

    /// JSON-RPC calls sent so far, logins included.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Calls `method` with `params` (the caller adds the context where the method takes one).
    /// `context` says what was being done, for error messages.
    pub async fn call(&self, method: &str, params: Vec<Value>, context: &str) -> Result<Value, ConnectorError> {
        let mut logged_in_again = false;
        loop {
            let authorization = self.authorization(context).await?;
            let (status, body) = self.post(method, &params, Some(&authorization), context).await?;
            if status == StatusCode::UNAUTHORIZED && !logged_in_again {
                // The session expired or was revoked: forget it (unless another call already
                // replaced it), log in once more and repeat the call.
                let mut session = self.session.lock().await;
                if session.as_deref() == Some(authorization.as_str()) {
                    *session = None;
                }
                logged_in_again = true;
                continue;
            }
            return decode(status, &body, method, context);
        }
    }

    /// Ends the session on the server.
    pub async fn logout(&self) -> Result<(), ConnectorError> {
        let authorization = self.session.lock().await.take();
        if let Some(authorization) = authorization {
            let context = format!("logging out of tryton {:?}", self.system);
            let (status, body) = self.post("common.db.logout", &[], Some(&authorization), &context).await?;
            decode(status, &body, "common.db.logout", &context)?;
        }
        Ok(())
    }

    async fn authorization(&self, context: &str) -> Result<String, ConnectorError> {
        let mut session = self.session.lock().await;
        if let Some(authorization) = session.as_ref() {
            return Ok(authorization.clone());
        }
        let context = format!("{context}: logging in to tryton {:?} as {:?}", self.system, self.username);
        let params = [json!(self.username), json!({ "password": self.password.expose() }), json!(self.language)];
        let (status, body) = self.post("common.db.login", &params, None, &context).await?;
        let result = match decode(status, &body, "common.db.login", &context) {
            Ok(result) => result,
            Err(mut error) => {
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    error.kind = ErrorKind::Auth;
                    error.message = format!("the login or password was refused ({status})");
                    error.retryable = false;
                }
                return Err(error);
            }
        };
        let (user_id, token) = match result.as_array().map(Vec::as_slice) {
            Some([user_id, token, ..]) if user_id.is_i64() && token.is_string() => {
                (user_id.as_i64().unwrap_or_default(), token.as_str().unwrap_or_default().to_string())
            }
            _ => {
                return Err(ConnectorError::new(
                    ErrorKind::Auth,
                    &context,
                    format!("the login was refused: expected [user id, session, ...], got {}", excerpt(&result)),
                ));
            }
        };
        let credentials = format!("{}:{user_id}:{token}", self.username);
        let authorization = format!("Session {}", base64::engine::general_purpose::STANDARD.encode(credentials));
        *session = Some(authorization.clone());
        Ok(authorization)
    }

    async fn post(
        &self,
        method: &str,
        params: &[Value],
        authorization: Option<&str>,
        context: &str,
    ) -> Result<(StatusCode, Vec<u8>), ConnectorError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::to_vec(&json!({ "id": id, "method": method, "params": params }))
            .expect("JSON values always serialize");
        let mut request = self
            .http
            .post(&self.rpc_url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT_ENCODING, "gzip")
            .body(body);
        if let Some(authorization) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let response = request.send().await.map_err(|error| transport_error(context, method, error))?;
        let status = response.status();
        if response.content_length().is_some_and(|length| length as usize > MAX_BODY_BYTES) {
            return Err(ConnectorError::new(
                ErrorKind::InvalidResponse,
                context,
                "the response is larger than 256 MiB",
            ));
        }
        let bytes = response.bytes().await.map_err(|error| transport_error(context, method, error))?;
        Ok((status, bytes.to_vec()))
    }
}

fn transport_error(context: &str, method: &str, error: reqwest::Error) -> ConnectorError {
    let kind = if error.is_timeout() { ErrorKind::Timeout } else { ErrorKind::Unavailable };
    ConnectorError::new(kind, context, format!("calling {method}: {error}")).with_source(error)
}

fn excerpt(value: &Value) -> String {
    let text = value.to_string();
    text.chars().take(300).collect()
}

/// The answer to one call: its result, or the error it carries (HTTP status or JSON-RPC error).
pub(crate) fn decode(status: StatusCode, body: &[u8], method: &str, context: &str) -> Result<Value, ConnectorError> {
    if !status.is_success() {
        let mut error = status_error(context, status, &reqwest::header::HeaderMap::new(), body);
        error.message = format!("{method}: {}", error.message);
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            // Tryton's 422 means a malformed call (a missing context): our bug, not the data's.
            error.fault = Fault::Ours;
        }
        return Err(error);
    }
    let answer: Value = serde_json::from_slice(body).map_err(|error| {
        let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
        ConnectorError::new(
            ErrorKind::InvalidResponse,
            context,
            format!("{method}: the answer is not JSON ({error}): {text}"),
        )
    })?;
    match answer.get("error") {
        Some(error) if !error.is_null() => Err(rpc_error(context, method, error)),
        _ => match answer.get("result") {
            Some(result) => Ok(result.clone()),
            None => Err(ConnectorError::new(
                ErrorKind::InvalidResponse,
                context,
                format!("{method}: the answer has neither result nor error: {}", excerpt(&answer)),
            )),
        },
    }
}

/// A JSON-RPC error of Tryton (`[kind, details]`) as a connector error.
pub(crate) fn rpc_error(context: &str, method: &str, error: &Value) -> ConnectorError {
    let (kind_name, details) = match error.as_array().map(Vec::as_slice) {
        Some([Value::String(kind), details, ..]) => (kind.as_str(), details.clone()),
        Some([Value::String(kind)]) => (kind.as_str(), Value::Null),
        _ => ("", error.clone()),
    };
    let texts: Vec<String> = match &details {
        Value::Array(items) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        Value::String(text) => vec![text.clone()],
        _ => Vec::new(),
    };
    let joined = |skip: usize| -> String {
        let parts: Vec<&str> =
            texts.iter().skip(skip).map(|text| text.trim()).filter(|text| !text.is_empty()).collect();
        parts.join(": ")
    };
    let (kind, message, retryable) = match kind_name {
        "UserError" => (ErrorKind::InvalidRequest, format!("tryton refused it: {}", joined(0)), false),
        // Details are [warning name, message, description]; the warning needs a person's
        // confirmation in Tryton, which erpsync does not give on its own.
        "UserWarning" => (ErrorKind::InvalidRequest, format!("tryton asks to confirm a warning: {}", joined(1)), false),
        "AccessError" => (ErrorKind::Permission, format!("access denied: {}", joined(0)), false),
        "ConcurrencyException" => {
            (ErrorKind::Conflict, format!("the record was changed by someone else meanwhile: {}", joined(0)), true)
        }
        "LoginException" => (ErrorKind::Auth, format!("tryton wants a login: {}", joined(1)), false),
        "RateLimitException" => (ErrorKind::RateLimited, "too many login attempts".to_string(), true),
        _ => {
            // Anything else is a Python exception inside the server: its name (or message)
            // first, then the traceback, which is usually empty over RPC.
            let name = if kind_name.is_empty() { excerpt(&details) } else { kind_name.to_string() };
            let trace: String = joined(0).chars().take(300).collect();
            let message = if trace.is_empty() {
                format!("the server raised an error: {name}")
            } else {
                format!("the server raised an error: {name}: {trace}")
            };
            (ErrorKind::InvalidResponse, message, false)
        }
    };
    let mut connector_error =
        ConnectorError::new(kind, context, format!("{method}: {message}")).with_retryable(retryable);
    if kind == ErrorKind::InvalidRequest {
        connector_error.fault = Fault::Ours;
    }
    connector_error
}

/// The connector: a client plus the configuration and the ids resolved on first use.
pub struct TrytonConnector {
    pub(crate) system: String,
    pub(crate) client: TrytonClient,
    pub(crate) config: TrytonConfig,
    pub(crate) overlap: Duration,
    setup: tokio::sync::OnceCell<Setup>,
}

/// Ids looked up once per connector.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    pub company: i64,
    pub currency: Currency,
    pub unit: i64,
    pub account_category: Option<i64>,
    pub web_shop: Option<i64>,
    /// The web shop's first warehouse: where imported sales ship from.
    pub shop_warehouse: Option<i64>,
    /// Canonical name, location id, code.
    pub warehouses: Vec<(String, i64, String)>,
}

impl TrytonConnector {
    pub fn new(system: &str, config: TrytonConfig) -> Result<TrytonConnector, ConnectorError> {
        let problems = config.validate();
        if let Some((field, problem)) = problems.first() {
            return Err(ConnectorError::new(
                ErrorKind::InvalidRequest,
                format!("building tryton {system:?}"),
                format!("{field}: {problem}"),
            ));
        }
        let overlap = parse_duration(&config.overlap).unwrap_or_default();
        Ok(TrytonConnector {
            system: system.to_string(),
            client: TrytonClient::new(system, &config)?,
            config,
            overlap,
            setup: tokio::sync::OnceCell::new(),
        })
    }

    /// The JSON-RPC client, for calls the connector does not make itself (and its call count).
    pub fn client(&self) -> &TrytonClient {
        &self.client
    }

    /// Calls `model.<model>.<method>` with `args` and the context (company, language, `extra`)
    /// as the last positional parameter.
    pub async fn execute(
        &self,
        model: &str,
        method: &str,
        args: Vec<Value>,
        extra: Option<Map<String, Value>>,
        context: &str,
    ) -> Result<Value, ConnectorError> {
        let setup = self.setup(context).await?;
        let mut ctx = Map::new();
        ctx.insert("company".into(), json!(setup.company));
        ctx.insert("language".into(), json!(self.config.language));
        if let Some(extra) = extra {
            ctx.extend(extra);
        }
        let mut params = args;
        params.push(Value::Object(ctx));
        self.client.call(&format!("model.{model}.{method}"), params, context).await
    }

    /// The ids the connector works with, looked up on first use.
    pub(crate) async fn setup(&self, context: &str) -> Result<&Setup, ConnectorError> {
        self.setup.get_or_try_init(|| self.resolve(context)).await
    }

    async fn resolve(&self, context: &str) -> Result<Setup, ConnectorError> {
        let context = format!("{context}: looking up the configured company, unit, web shop and warehouses");
        let bare = json!({ "language": self.config.language });
        let company = match &self.config.company {
            IdOrName::Id(id) => *id,
            IdOrName::Name(name) => {
                let found = self
                    .client
                    .call(
                        "model.company.company.search",
                        vec![json!([["party.name", "=", name]]), json!(0), json!(2), Value::Null, bare.clone()],
                        &context,
                    )
                    .await?;
                single_id(&found, &format!("company named {name:?}"), &context)?
            }
        };
        let ctx = json!({ "company": company, "language": self.config.language });
        let companies = self
            .client
            .call("model.company.company.read", vec![json!([company]), json!(["currency"]), ctx.clone()], &context)
            .await
            .map_err(|mut error| {
                error.message = format!("company {company}: {}", error.message);
                error
            })?;
        let currency_id =
            companies.get(0).and_then(|row| row.get("currency")).and_then(Value::as_i64).ok_or_else(|| {
                ConnectorError::new(ErrorKind::NotFound, &context, format!("company {company} does not exist"))
            })?;
        let currencies = self
            .client
            .call("model.currency.currency.read", vec![json!([currency_id]), json!(["code"]), ctx.clone()], &context)
            .await?;
        let code = currencies.get(0).and_then(|row| row.get("code")).and_then(Value::as_str).unwrap_or_default();
        let currency: Currency = code.parse().map_err(|error: erpsync_model::CurrencyError| {
            ConnectorError::new(ErrorKind::InvalidResponse, &context, format!("the company's currency: {error}"))
        })?;
        let search = |model: &str, domain: Value| {
            let method = format!("model.{model}.search");
            let params = vec![domain, json!(0), json!(2), Value::Null, ctx.clone()];
            let context = context.clone();
            async move { self.client.call(&method, params, &context).await }
        };
        let unit = single_id(
            &search("product.uom", json!([["name", "=", self.config.unit]])).await?,
            &format!("unit of measure {:?} (setting `unit`)", self.config.unit),
            &context,
        )?;
        let account_category = match &self.config.account_category {
            None => None,
            Some(IdOrName::Id(id)) => Some(*id),
            Some(IdOrName::Name(name)) => Some(single_id(
                &search("product.category", json!([["name", "=", name]])).await?,
                &format!("product category {name:?} (setting `account_category`)"),
                &context,
            )?),
        };
        let web_shop = match &self.config.web_shop {
            None => None,
            Some(IdOrName::Id(id)) => Some(*id),
            Some(IdOrName::Name(name)) => Some(single_id(
                &search("web.shop", json!([["name", "=", name]])).await?,
                &format!("web shop {name:?} (setting `web_shop`)"),
                &context,
            )?),
        };
        let shop_warehouse = match web_shop {
            None => None,
            Some(shop) => {
                let rows = self
                    .client
                    .call("model.web.shop.read", vec![json!([shop]), json!(["warehouses"]), ctx.clone()], &context)
                    .await?;
                rows.get(0)
                    .and_then(|row| row.get("warehouses"))
                    .and_then(Value::as_array)
                    .and_then(|ids| ids.first())
                    .and_then(Value::as_i64)
            }
        };
        let all = self
            .client
            .call(
                "model.stock.location.search_read",
                vec![
                    json!([["type", "=", "warehouse"]]),
                    json!(0),
                    Value::Null,
                    json!([["id", "ASC"]]),
                    json!(["code", "name"]),
                    ctx.clone(),
                ],
                &context,
            )
            .await?;
        let all: Vec<(i64, String)> = all
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter_map(|row| {
                        let id = row.get("id")?.as_i64()?;
                        let code = row.get("code").and_then(Value::as_str).unwrap_or_default().to_string();
                        Some((id, code))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let warehouses = if self.config.warehouses.is_empty() {
            all.iter().map(|(id, code)| (code.clone(), *id, code.clone())).collect()
        } else {
            let mut chosen = Vec::new();
            for (name, code) in &self.config.warehouses {
                let Some((id, _)) = all.iter().find(|(_, found)| found == code) else {
                    let known: Vec<&str> = all.iter().map(|(_, code)| code.as_str()).collect();
                    return Err(ConnectorError::new(
                        ErrorKind::NotFound,
                        &context,
                        format!("warehouses.{name}: no warehouse has the code {code:?} (known codes: {known:?})"),
                    ));
                };
                chosen.push((name.clone(), *id, code.clone()));
            }
            chosen
        };
        Ok(Setup { company, currency, unit, account_category, web_shop, shop_warehouse, warehouses })
    }
}

fn single_id(found: &Value, what: &str, context: &str) -> Result<i64, ConnectorError> {
    let ids: Vec<i64> = found.as_array().map(|ids| ids.iter().filter_map(Value::as_i64).collect()).unwrap_or_default();
    match ids.as_slice() {
        [id] => Ok(*id),
        [] => Err(ConnectorError::new(ErrorKind::NotFound, context, format!("no {what} in tryton"))),
        _ => Err(ConnectorError::new(
            ErrorKind::InvalidRequest,
            context,
            format!("more than one {what} in tryton: name it by id instead"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_inside_2xx_answers_become_kinds() {
        let user_error =
            json!({"id": 7, "error": ["UserError", ["The web ID on the sale must be unique per shop.", "", null]]});
        let error =
            decode(StatusCode::OK, user_error.to_string().as_bytes(), "model.sale.sale.create", "writing").unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidRequest);
        assert!(!error.retryable);
        assert!(error.to_string().contains("must be unique per shop"), "{error}");
        let warning = json!({"error": ["UserWarning", ["sale_warn", "Stock is low.", "Confirm?"]]});
        let error = decode(StatusCode::OK, warning.to_string().as_bytes(), "m", "c").unwrap_err();
        assert!(error.message.contains("Stock is low.: Confirm?"), "{error}");
        let concurrency = json!({"error": ["ConcurrencyException", ["Records were modified in the meanwhile"]]});
        let error = decode(StatusCode::OK, concurrency.to_string().as_bytes(), "m", "c").unwrap_err();
        assert_eq!((error.kind, error.retryable), (ErrorKind::Conflict, true));
        let access = json!({"error": ["AccessError", ["You are not allowed to read \"Sale\".", ""]]});
        assert_eq!(
            decode(StatusCode::OK, access.to_string().as_bytes(), "m", "c").unwrap_err().kind,
            ErrorKind::Permission
        );
        let python = json!({"error": ["'account_receivable_used'", ""]});
        let error = decode(StatusCode::OK, python.to_string().as_bytes(), "m", "c").unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidResponse);
        assert!(error.message.contains("account_receivable_used"), "{error}");
        let ok = decode(StatusCode::OK, br#"{"id":1,"result":[1,2]}"#, "m", "c").unwrap();
        assert_eq!(ok, json!([1, 2]));
    }

    #[test]
    fn http_statuses_become_kinds() {
        let locked = decode(StatusCode::SERVICE_UNAVAILABLE, b"<html>database is locked</html>", "m", "c").unwrap_err();
        assert_eq!((locked.kind, locked.retryable), (ErrorKind::Unavailable, true));
        let missing_context =
            decode(StatusCode::UNPROCESSABLE_ENTITY, b"Missing context argument", "m", "c").unwrap_err();
        assert_eq!((missing_context.kind, missing_context.fault), (ErrorKind::InvalidRequest, Fault::Ours));
        assert_eq!(decode(StatusCode::UNAUTHORIZED, b"", "m", "c").unwrap_err().kind, ErrorKind::Auth);
        assert_eq!(decode(StatusCode::OK, b"<html>", "m", "c").unwrap_err().kind, ErrorKind::InvalidResponse);
    }
}
