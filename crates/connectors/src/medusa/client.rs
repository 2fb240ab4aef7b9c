//! Requests to Medusa's admin API: the secret API key as HTTP Basic, Medusa's error envelope as
//! [`ConnectorError`] kinds, offset-paged lists, and the shop's names (sales channel, stock
//! locations, shipping profile, region) resolved to ids once per connector.
//!
//! Medusa answers errors as `{"type": "invalid_data", "message": "…"}` (sometimes with a
//! `code`). The type says more than the status: `duplicate_error` is a conflict,
//! `not_found` a missing record, `unauthorized` bad credentials; `conflict` means a lock was
//! held by another request and can be retried.

use crate::http::client::status_error;
use crate::medusa::config::{MedusaConfig, Settings};
use crate::secret::Secret;
use crate::{ConnectorError, ErrorKind};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest response body read.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
const ERROR_BODY_CHARS: usize = 400;

pub struct MedusaConnector {
    pub(crate) system: String,
    pub(crate) config: MedusaConfig,
    pub(crate) settings: Settings,
    http: reqwest::Client,
    api_key: Secret,
    pub(crate) webhook_secret: Option<Secret>,
    /// Ids of the configured names, looked up on first use.
    shop: tokio::sync::OnceCell<ShopIds>,
    calls: AtomicU64,
}

/// The configured names as Medusa ids.
#[derive(Debug, Clone)]
pub(crate) struct ShopIds {
    pub sales_channel: String,
    pub shipping_profile: String,
    /// Canonical location name -> Medusa stock location id, and back.
    pub locations: BTreeMap<String, String>,
}

impl ShopIds {
    pub fn canonical_location(&self, location_id: &str) -> Option<&str> {
        self.locations.iter().find(|(_, id)| id.as_str() == location_id).map(|(name, _)| name.as_str())
    }
}

impl MedusaConnector {
    pub fn new(system: &str, config: MedusaConfig) -> Result<Self, ConnectorError> {
        let context = format!("building the medusa connector {system:?}");
        let invalid = |message: String| ConnectorError::new(ErrorKind::InvalidRequest, context.clone(), message);
        let settings = config.settings().map_err(|(field, message)| invalid(format!("{field}: {message}")))?;
        // reqwest is built without a bundled crypto provider; install ring once per process
        // (an error only means one is installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.connect_timeout)
            .gzip(true)
            .user_agent(concat!("erpsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| invalid(format!("http client: {error}")))?;
        let secret = |reference: &crate::secret::SecretRef, field: &str| {
            reference.resolve().map_err(|error| invalid(format!("{field}: {error}")))
        };
        Ok(MedusaConnector {
            system: system.to_string(),
            api_key: secret(&config.api_key, "api_key")?,
            webhook_secret: config.webhook_secret.as_ref().map(|r| secret(r, "webhook_secret")).transpose()?,
            config,
            settings,
            http,
            shop: tokio::sync::OnceCell::new(),
            calls: AtomicU64::new(0),
        })
    }

    /// Requests sent so far (for benchmarks and tests).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// `{url}{path}` with `query`, authenticated with the secret key; the JSON body of a 2xx.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        context: &str,
    ) -> Result<Value, ConnectorError> {
        let mut request = self.authenticated(method, path, query);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request, context).await
    }

    /// `POST {url}{path}` with one file as `multipart/form-data` under the form field `field`
    /// (what `POST /admin/uploads` reads with multer); the JSON body of a 2xx.
    ///
    /// The body is built here rather than with reqwest's `multipart` feature (which would add
    /// crates): one part, with a boundary the bytes do not contain, is all Medusa needs.
    pub async fn upload(
        &self,
        path: &str,
        field: &str,
        file: &UploadFile<'_>,
        context: &str,
    ) -> Result<Value, ConnectorError> {
        let (content_type, body) = multipart_body(field, file);
        let request =
            self.authenticated(Method::POST, path, &[]).header(reqwest::header::CONTENT_TYPE, content_type).body(body);
        self.send(request, context).await
    }

    fn authenticated(&self, method: Method, path: &str, query: &[(&str, String)]) -> reqwest::RequestBuilder {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let url = format!("{}{path}", self.settings.base);
        let mut request = self.http.request(method, url).basic_auth(self.api_key.expose(), Some(""));
        if !query.is_empty() {
            request = request.query(query);
        }
        request
    }

    async fn send(&self, request: reqwest::RequestBuilder, context: &str) -> Result<Value, ConnectorError> {
        let response = request.send().await.map_err(|error| transport_error(context, error))?;
        let status = response.status();
        let headers = response.headers().clone();
        if response.content_length().is_some_and(|length| length as usize > MAX_BODY_BYTES) {
            return Err(ConnectorError::new(
                ErrorKind::InvalidResponse,
                context,
                "the response body is larger than 64 MiB",
            ));
        }
        let bytes = response.bytes().await.map_err(|error| transport_error(context, error))?;
        if !status.is_success() {
            return Err(medusa_error(context, status, &headers, &bytes));
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|error| {
            // A body cut off mid-way: the server or the network failed, trying again can help.
            ConnectorError::new(
                ErrorKind::InvalidResponse,
                context,
                format!("the response is not complete JSON ({} bytes): {error}", bytes.len()),
            )
            .with_retryable(true)
        })
    }

    /// One page of a list: the items under `key` and the total `count`.
    pub(crate) async fn list(
        &self,
        path: &str,
        key: &str,
        query: &[(&str, String)],
        context: &str,
    ) -> Result<(Vec<Value>, u64), ConnectorError> {
        let body = self.request(Method::GET, path, query, None, context).await?;
        let items = match body.get(key) {
            Some(Value::Array(items)) => items.clone(),
            _ => {
                return Err(ConnectorError::new(
                    ErrorKind::InvalidResponse,
                    context,
                    format!("expected {{\"{key}\": [...]}} from GET {path}"),
                ));
            }
        };
        let count = body.get("count").and_then(Value::as_u64).unwrap_or(items.len() as u64);
        Ok((items, count))
    }

    /// Every item of a list, page by page (bounded: at most 1000 pages).
    pub(crate) async fn list_all(
        &self,
        path: &str,
        key: &str,
        query: &[(&str, String)],
        context: &str,
    ) -> Result<Vec<Value>, ConnectorError> {
        let limit = self.settings.page_size;
        let mut all = Vec::new();
        for page in 0..1000usize {
            let mut query = query.to_vec();
            query.push(("limit", limit.to_string()));
            query.push(("offset", (page * limit).to_string()));
            let (items, count) = self.list(path, key, &query, context).await?;
            let n = items.len();
            all.extend(items);
            if n < limit || all.len() as u64 >= count {
                return Ok(all);
            }
        }
        Err(ConnectorError::new(ErrorKind::InvalidResponse, context, "more than 1000 pages in one list"))
    }

    /// The ids of the configured sales channel, shipping profile and stock locations.
    pub(crate) async fn shop(&self) -> Result<&ShopIds, ConnectorError> {
        self.shop.get_or_try_init(|| self.resolve_shop()).await
    }

    async fn resolve_shop(&self) -> Result<ShopIds, ConnectorError> {
        let context = format!("looking up the settings of medusa {:?} in the shop", self.system);
        let not_found = |message: String| ConnectorError::new(ErrorKind::NotFound, &context, message);

        let channels = self.list_all("/admin/sales-channels", "sales_channels", &[], &context).await?;
        let wanted = self.config.sales_channel.trim();
        let sales_channel = find_by_name_or_id(&channels, wanted, "name").ok_or_else(|| {
            not_found(format!(
                "sales_channel {wanted:?} is neither the name nor the id of a sales channel; the shop has {}",
                names(&channels, "name")
            ))
        })?;

        let profiles = self.list_all("/admin/shipping-profiles", "shipping_profiles", &[], &context).await?;
        let shipping_profile = match self.config.shipping_profile.as_deref() {
            Some(wanted) => find_by_name_or_id(&profiles, wanted.trim(), "name").ok_or_else(|| {
                not_found(format!(
                    "shipping_profile {wanted:?} is neither the name nor the id of a shipping profile; the shop has {}",
                    names(&profiles, "name")
                ))
            })?,
            None => profiles
                .iter()
                .find(|profile| profile.get("type").and_then(Value::as_str) == Some("default"))
                .or(profiles.first())
                .and_then(|profile| profile.get("id").and_then(Value::as_str))
                .map(str::to_string)
                .ok_or_else(|| not_found("the shop has no shipping profile".into()))?,
        };

        let stock_locations = self.list_all("/admin/stock-locations", "stock_locations", &[], &context).await?;
        let mut locations = BTreeMap::new();
        if self.config.stock_locations.is_empty() {
            for location in &stock_locations {
                if let (Some(name), Some(id)) =
                    (location.get("name").and_then(Value::as_str), location.get("id").and_then(Value::as_str))
                {
                    locations.insert(name.to_string(), id.to_string());
                }
            }
        } else {
            for (canonical, medusa_name) in &self.config.stock_locations {
                let id = find_by_name_or_id(&stock_locations, medusa_name, "name").ok_or_else(|| {
                    not_found(format!(
                        "stock_locations.{canonical} = {medusa_name:?} is not a stock location; the shop has {}",
                        names(&stock_locations, "name")
                    ))
                })?;
                locations.insert(canonical.clone(), id);
            }
        }

        if let Some(region) = self.config.region.as_deref() {
            let regions = self.list_all("/admin/regions", "regions", &[], &context).await?;
            let found = regions
                .iter()
                .find(|r| {
                    r.get("id").and_then(Value::as_str) == Some(region)
                        || r.get("name").and_then(Value::as_str) == Some(region)
                })
                .ok_or_else(|| {
                    not_found(format!("region {region:?} is not a region; the shop has {}", names(&regions, "name")))
                })?;
            let currency = found.get("currency_code").and_then(Value::as_str).unwrap_or("");
            if !currency.eq_ignore_ascii_case(self.settings.currency.as_str()) {
                return Err(ConnectorError::new(
                    ErrorKind::InvalidRequest,
                    &context,
                    format!(
                        "region {region:?} sells in {currency:?} but currency is {:?}",
                        self.settings.currency.as_str()
                    ),
                ));
            }
        }
        Ok(ShopIds { sales_channel, shipping_profile, locations })
    }

    /// Medusa's currency code for the configured currency (lower case).
    pub(crate) fn currency_code(&self) -> String {
        self.settings.currency.as_str().to_ascii_lowercase()
    }
}

/// One file to upload.
pub struct UploadFile<'a> {
    /// The file name Medusa keeps (prefixed with a timestamp by the local file provider).
    pub file_name: &'a str,
    pub content_type: &'a str,
    pub bytes: &'a [u8],
}

/// A `multipart/form-data` body with the one file, and its content type with the boundary.
fn multipart_body(field: &str, file: &UploadFile<'_>) -> (String, Vec<u8>) {
    // A boundary the content cannot end early on: grown until the bytes do not contain it.
    let mut boundary = String::from("erpsync-boundary-7d1f3a");
    while file.bytes.windows(boundary.len()).any(|window| window == boundary.as_bytes()) {
        boundary.push('x');
    }
    let quoted = |text: &str| text.replace(['"', '\\', '\r', '\n'], "_");
    let mut body = Vec::with_capacity(file.bytes.len() + 256);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: {}\r\n\r\n",
            quoted(field),
            quoted(file.file_name),
            file.content_type
        )
        .as_bytes(),
    );
    body.extend_from_slice(file.bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn find_by_name_or_id(items: &[Value], wanted: &str, name_key: &str) -> Option<String> {
    items
        .iter()
        .find(|item| item.get("id").and_then(Value::as_str) == Some(wanted))
        .or_else(|| items.iter().find(|item| item.get(name_key).and_then(Value::as_str) == Some(wanted)))
        .and_then(|item| item.get("id").and_then(Value::as_str))
        .map(str::to_string)
}

fn names(items: &[Value], key: &str) -> String {
    let names: Vec<String> =
        items.iter().filter_map(|item| item.get(key).and_then(Value::as_str)).map(|name| format!("{name:?}")).collect();
    if names.is_empty() { "none".into() } else { names.join(", ") }
}

fn transport_error(context: &str, error: reqwest::Error) -> ConnectorError {
    let kind = if error.is_timeout() { ErrorKind::Timeout } else { ErrorKind::Unavailable };
    ConnectorError::new(kind, context, error.to_string()).with_source(error)
}

/// Medusa's `{type, message}` envelope as a connector error of the right kind.
pub(crate) fn medusa_error(
    context: &str,
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
) -> ConnectorError {
    let mut error = status_error(context, status, headers, body);
    let envelope: Option<Value> = serde_json::from_slice(body).ok();
    let kind_name = envelope.as_ref().and_then(|e| e.get("type")).and_then(Value::as_str).unwrap_or("");
    let message = envelope.as_ref().and_then(|e| e.get("message")).and_then(Value::as_str);
    match message {
        Some(message) => error.message = format!("{status}: {kind_name}: {message}"),
        None => {
            let text = String::from_utf8_lossy(body);
            let excerpt: String = text.chars().take(ERROR_BODY_CHARS).collect();
            error.message = format!("{status}: {}", excerpt.trim());
        }
    }
    let (kind, retryable) = match kind_name {
        "duplicate_error" => (ErrorKind::Conflict, false),
        "not_found" => (ErrorKind::NotFound, false),
        "unauthorized" => (ErrorKind::Auth, false),
        "not_allowed" => (ErrorKind::Permission, false),
        "invalid_data" | "invalid_argument" | "payment_authorization_error" => (ErrorKind::InvalidRequest, false),
        // A lock held by a concurrent request (Medusa's locking module): try again later.
        "conflict" => (ErrorKind::Conflict, true),
        "db_error" | "unexpected_state" | "unknown_modules" => (ErrorKind::Unavailable, status.is_server_error()),
        _ => (error.kind, error.retryable),
    };
    error.kind = kind;
    error.retryable = retryable;
    error.fault = if kind.is_transient() { crate::Fault::Remote } else { error.fault };
    if matches!(kind, ErrorKind::Auth) {
        error.message.push_str(" (api_key must be a secret API key sk_…, sent as HTTP Basic with an empty password)");
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    #[test]
    fn multipart_bodies_carry_the_file_unchanged() {
        let bytes = b"%PDF-1.4\r\n--erpsync-boundary-7d1f3a\x00\xff";
        let file = UploadFile { file_name: "INV \"1\".pdf", content_type: "application/pdf", bytes };
        let (content_type, body) = multipart_body("files", &file);
        let boundary = content_type.strip_prefix("multipart/form-data; boundary=").unwrap();
        assert_eq!(boundary, "erpsync-boundary-7d1f3ax", "a boundary the bytes do not contain");
        let head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"INV _1_.pdf\"\r\nContent-Type: application/pdf\r\n\r\n"
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        assert!(body.starts_with(head.as_bytes()) && body.ends_with(tail.as_bytes()));
        assert_eq!(&body[head.len()..body.len() - tail.len()], bytes);
    }

    #[test]
    fn envelope_types_become_kinds() {
        let check = |status: u16, body: &str, kind: ErrorKind, retryable: bool| {
            let error =
                medusa_error("writing", StatusCode::from_u16(status).unwrap(), &HeaderMap::new(), body.as_bytes());
            assert_eq!((error.kind, error.retryable), (kind, retryable), "{body}");
            error
        };
        let error = check(
            422,
            r#"{"type":"duplicate_error","message":"Product with handle: erp-widget, already exists."}"#,
            ErrorKind::Conflict,
            false,
        );
        assert!(error.message.contains("already exists"), "{}", error.message);
        check(404, r#"{"type":"not_found","message":"Product with id: x was not found"}"#, ErrorKind::NotFound, false);
        check(400, r#"{"type":"invalid_data","message":"Invalid request"}"#, ErrorKind::InvalidRequest, false);
        check(401, "Unauthorized", ErrorKind::Auth, false);
        check(409, r#"{"type":"conflict","message":"locked"}"#, ErrorKind::Conflict, true);
        check(503, "down", ErrorKind::Unavailable, true);
    }
}
