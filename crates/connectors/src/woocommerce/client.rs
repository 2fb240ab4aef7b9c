//! Requests to WooCommerce: consumer-key authentication, WooCommerce's error envelope as
//! [`ConnectorError`] kinds, list pages with their totals, and batch results item by item.
//!
//! Authentication, as WooCommerce documents it: over HTTPS, HTTP Basic with the consumer key
//! as user and the secret as password; over plain HTTP, OAuth 1.0a "one-legged": every query
//! parameter plus `oauth_consumer_key`, `oauth_nonce`, `oauth_signature_method`,
//! `oauth_timestamp` is signed with HMAC-SHA256 over
//! `METHOD&pct(URL without query)&pct(sorted pct(key)=pct(value) joined by &)`, keyed by
//! `consumer_secret&`. The JSON body is not signed.

use crate::http::client::status_error;
use crate::secret::Secret;
use crate::woocommerce::config::{AuthMode, Settings, WooConfig};
use crate::{ConnectorError, ErrorKind};
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sha2::Sha256;

/// Largest response body read.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
const ERROR_BODY_CHARS: usize = 300;

pub struct WooConnector {
    pub(crate) system: String,
    pub(crate) config: WooConfig,
    pub(crate) settings: Settings,
    http: reqwest::Client,
    consumer_key: Secret,
    consumer_secret: Secret,
    pub(crate) webhook_secret: Option<Secret>,
    /// SKU to (parent product id, variation id or 0), filled on demand by the stock sink.
    pub(crate) sku_index: tokio::sync::Mutex<Option<std::collections::HashMap<String, (u64, u64)>>>,
}

/// A response read whole.
pub(crate) struct Response {
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl WooConnector {
    pub fn new(system: &str, config: WooConfig) -> Result<Self, ConnectorError> {
        let context = format!("building the woocommerce connector {system:?}");
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
        Ok(WooConnector {
            system: system.to_string(),
            consumer_key: secret(&config.consumer_key, "consumer_key")?,
            consumer_secret: secret(&config.consumer_secret, "consumer_secret")?,
            webhook_secret: config.webhook_secret.as_ref().map(|r| secret(r, "webhook_secret")).transpose()?,
            config,
            settings,
            http,
            sku_index: tokio::sync::Mutex::new(None),
        })
    }

    /// `{api_base}{path}` with `query`, authenticated.
    pub(crate) async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        context: &str,
    ) -> Result<Response, ConnectorError> {
        let url = format!("{}{path}", self.settings.api_base);
        let mut pairs: Vec<(String, String)> = query.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        if self.settings.auth == AuthMode::Oauth1 {
            pairs.extend(self.oauth_params(method.as_str(), &url, &pairs));
        }
        let full_url = if pairs.is_empty() {
            url
        } else {
            let encoded: Vec<String> =
                pairs.iter().map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v))).collect();
            format!("{url}?{}", encoded.join("&"))
        };
        let mut request = self.http.request(method, full_url);
        if self.settings.auth == AuthMode::Basic {
            request = request.basic_auth(self.consumer_key.expose(), Some(self.consumer_secret.expose()));
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|error| transport_error(context, error))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = read_body(response, context).await?;
        if !status.is_success() {
            return Err(woo_error(context, status, &headers, &bytes));
        }
        let body = serde_json::from_slice(&bytes).map_err(|error| {
            // A body cut off mid-way: the server or the network failed, trying again can help.
            ConnectorError::new(
                ErrorKind::InvalidResponse,
                context,
                format!("the response is not complete JSON ({} bytes): {error}", bytes.len()),
            )
            .with_retryable(true)
        })?;
        Ok(Response { headers, body })
    }

    /// The OAuth 1.0a parameters for one request, signature included.
    fn oauth_params(&self, method: &str, url: &str, query: &[(String, String)]) -> Vec<(String, String)> {
        let nonce: u128 = rand_nonce();
        let mut params: Vec<(String, String)> = query.to_vec();
        let oauth = vec![
            ("oauth_consumer_key".to_string(), self.consumer_key.expose().to_string()),
            ("oauth_nonce".to_string(), format!("{nonce:032x}")),
            ("oauth_signature_method".to_string(), "HMAC-SHA256".to_string()),
            ("oauth_timestamp".to_string(), chrono::Utc::now().timestamp().to_string()),
        ];
        params.extend(oauth.iter().cloned());
        let base = signature_base_string(method, url, &params);
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(format!("{}&", self.consumer_secret.expose()).as_bytes())
                .expect("HMAC takes keys of any length");
        mac.update(base.as_bytes());
        let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let mut out = oauth;
        out.push(("oauth_signature".to_string(), signature));
        out
    }

    /// One page of a list: the records and `X-WP-TotalPages`.
    pub(crate) async fn list(
        &self,
        path: &str,
        query: &[(&str, String)],
        context: &str,
    ) -> Result<(Vec<Value>, Option<u64>), ConnectorError> {
        let response = self.request(Method::GET, path, query, None, context).await?;
        let pages = response.headers.get("x-wp-totalpages").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        match response.body {
            Value::Array(items) => Ok((items, pages)),
            other => Err(ConnectorError::new(
                ErrorKind::InvalidResponse,
                context,
                format!("expected a JSON array, got {}", kind_of(&other)),
            )),
        }
    }

    /// Every record of a list, page by page (bounded: at most 1000 pages).
    pub(crate) async fn list_all(
        &self,
        path: &str,
        query: &[(&str, String)],
        context: &str,
    ) -> Result<Vec<Value>, ConnectorError> {
        let mut all = Vec::new();
        for page in 1..=1000u64 {
            let mut query = query.to_vec();
            query.push(("per_page", "100".into()));
            query.push(("page", page.to_string()));
            let (items, pages) = self.list(path, &query, context).await?;
            let n = items.len();
            all.extend(items);
            if n < 100 || pages.is_some_and(|pages| page >= pages) {
                return Ok(all);
            }
        }
        Err(ConnectorError::new(ErrorKind::InvalidResponse, context, "more than 1000 pages in one list"))
    }
}

fn rand_nonce() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // Unique per process and request: time, process id and a counter, hashed.
    let seed = format!(
        "{}-{}-{}",
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let digest = <Sha256 as sha2::Digest>::digest(seed.as_bytes());
    u128::from_be_bytes(digest[..16].try_into().expect("a SHA-256 digest has 32 bytes"))
}

/// RFC 3986 percent-encoding: all but `A-Z a-z 0-9 - _ . ~`.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The OAuth 1.0a signature base string (RFC 5849 section 3.4.1, no token).
pub fn signature_base_string(method: &str, url: &str, params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> =
        params.iter().map(|(k, v)| (percent_encode(k), percent_encode(v))).collect();
    encoded.sort();
    let normalized: Vec<String> = encoded.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{}&{}&{}", method.to_ascii_uppercase(), percent_encode(url), percent_encode(&normalized.join("&")))
}

async fn read_body(response: reqwest::Response, context: &str) -> Result<Vec<u8>, ConnectorError> {
    if response.content_length().is_some_and(|length| length as usize > MAX_BODY_BYTES) {
        return Err(ConnectorError::new(
            ErrorKind::InvalidResponse,
            context,
            "the response body is larger than 64 MiB",
        ));
    }
    let bytes = response.bytes().await.map_err(|error| transport_error(context, error))?;
    Ok(bytes.to_vec())
}

fn transport_error(context: &str, error: reqwest::Error) -> ConnectorError {
    let kind = if error.is_timeout() { ErrorKind::Timeout } else { ErrorKind::Unavailable };
    ConnectorError::new(kind, context, error.to_string()).with_source(error)
}

/// WooCommerce's `{code, message, data: {status}}` as a connector error of the status's kind.
pub(crate) fn woo_error(
    context: &str,
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
) -> ConnectorError {
    let mut error = status_error(context, status, headers, body);
    if let Ok(envelope) = serde_json::from_slice::<Value>(body)
        && let (Some(code), Some(message)) =
            (envelope.get("code").and_then(Value::as_str), envelope.get("message").and_then(Value::as_str))
    {
        let params = envelope.pointer("/data/params").map(|p| format!(" {p}")).unwrap_or_default();
        error.message = format!("{status}: {code}: {message}{params}");
    } else {
        let text = String::from_utf8_lossy(body);
        let excerpt: String = text.chars().take(ERROR_BODY_CHARS).collect();
        error.message = format!("{status}: {}", excerpt.trim());
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        // The batch cap: the request is ours to fix, never retried as is.
        error.kind = ErrorKind::InvalidRequest;
        error.retryable = false;
    }
    error
}

/// One item of a batch response: its id, or the error WooCommerce put in its place.
pub(crate) fn batch_item_error(context: &str, item: &Value) -> Option<ConnectorError> {
    let error = item.get("error").filter(|e| !e.is_null())?;
    let code = error.get("code").and_then(Value::as_str).unwrap_or("error");
    let message = error.get("message").and_then(Value::as_str).unwrap_or("no message");
    let status = error.pointer("/data/status").and_then(Value::as_u64).unwrap_or(400);
    let kind = match (status, code) {
        (500..=599, _) => ErrorKind::Unavailable,
        (_, "product_invalid_sku" | "registration-error-email-exists") => ErrorKind::Conflict,
        (404, _) => ErrorKind::NotFound,
        (401, _) => ErrorKind::Auth,
        (403, _) => ErrorKind::Permission,
        (409, _) => ErrorKind::Conflict,
        _ => ErrorKind::InvalidRequest,
    };
    Some(
        ConnectorError::new(kind, context, format!("{code}: {message} (status {status} inside a 200 batch response)"))
            .with_retryable(status >= 500),
    )
}

pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_string_follows_rfc_5849() {
        let params = vec![("b".to_string(), "x y".to_string()), ("a".to_string(), "1&2".to_string())];
        assert_eq!(
            signature_base_string("get", "http://h/p", &params),
            "GET&http%3A%2F%2Fh%2Fp&a%3D1%25262%26b%3Dx%2520y"
        );
    }

    #[test]
    fn batch_item_errors_are_kinds_with_retry() {
        let item = serde_json::json!({"id": 0, "error": {"code": "product_invalid_sku", "message": "Invalid or duplicated SKU.", "data": {"status": 400}}});
        let error = batch_item_error("writing", &item).unwrap();
        assert_eq!(error.kind, ErrorKind::Conflict);
        assert!(!error.retryable);
        let item = serde_json::json!({"id": 3, "error": {"code": "x", "message": "db", "data": {"status": 500}}});
        assert!(batch_item_error("writing", &item).unwrap().retryable);
        assert!(batch_item_error("writing", &serde_json::json!({"id": 3})).is_none());
    }
}
