//! The HTTP plumbing of the `http` connector: authentication, the rate limiter, requests, and
//! HTTP failures turned into [`ConnectorError`] kinds with their retry hints.

use crate::http::config::{AuthConfig, HttpConfig, Pagination, parse_duration};
use crate::secret::Secret;
use crate::{ConnectorError, ErrorKind};
use erpsync_mapping::Expression;
use erpsync_model::EntityKind;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Largest response body read; a larger one is an invalid response, not an out-of-memory.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// How much of an error body goes into an error message.
const ERROR_BODY_CHARS: usize = 300;

pub struct HttpConnector {
    pub(crate) system: String,
    pub(crate) base_url: String,
    http: reqwest::Client,
    auth: Option<Auth>,
    limiter: Option<Limiter>,
    headers: HeaderMap,
    pub(crate) entities: BTreeMap<EntityKind, EntitySettings>,
    pub(crate) webhook: Option<crate::http::webhook::WebhookSettings>,
}

/// One entity's validated settings, expressions compiled.
pub(crate) struct EntitySettings {
    pub read: Option<ReadSettings>,
    pub write: Option<WriteSettings>,
}

pub(crate) struct ReadSettings {
    pub config: crate::http::config::ReadConfig,
    pub to_canonical: Option<Expression>,
    pub overlap: Duration,
}

pub(crate) struct WriteSettings {
    pub config: crate::http::config::WriteConfig,
    pub from_canonical: Option<Expression>,
}

enum Auth {
    ApiKey {
        header: HeaderName,
        key: Secret,
    },
    Basic {
        username: String,
        password: Secret,
    },
    Bearer {
        token: Secret,
    },
    Oauth2 {
        token_url: String,
        client_id: String,
        client_secret: Secret,
        scopes: Vec<String>,
        token: tokio::sync::Mutex<Option<(Secret, Instant)>>,
    },
    Hmac {
        secret: Secret,
        signature_header: HeaderName,
        timestamp_header: HeaderName,
        key_id: Option<String>,
    },
}

/// Spaces requests evenly at the configured rate. `Retry-After` is handled by the engine's
/// retry, which waits at least as long as the system asks.
struct Limiter {
    interval: Duration,
    next: std::sync::Mutex<Instant>,
}

impl Limiter {
    async fn wait(&self) {
        let delay = {
            let mut next = self.next.lock().expect("limiter lock is never poisoned");
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot - now
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

/// A response read whole (bounded).
pub(crate) struct Response {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl HttpConnector {
    pub fn new(system: &str, config: HttpConfig) -> Result<Self, ConnectorError> {
        let context = format!("building the http connector {system:?}");
        let invalid = |message: String| ConnectorError::new(ErrorKind::InvalidRequest, context.clone(), message);
        let problems = config.validate();
        if let Some((field, message)) = problems.first() {
            return Err(invalid(format!("{field}: {message}")));
        }
        // reqwest is built without a bundled crypto provider; install ring once per process
        // (an error only means one is installed already).
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
        let auth = match &config.auth {
            None => None,
            Some(AuthConfig::ApiKey { header, key }) => Some(Auth::ApiKey {
                header: HeaderName::from_str(header)
                    .map_err(|_| invalid(format!("auth.header {header:?} is not a header name")))?,
                key: secret(key)?,
            }),
            Some(AuthConfig::Basic { username, password }) => {
                Some(Auth::Basic { username: username.clone(), password: secret(password)? })
            }
            Some(AuthConfig::Bearer { token }) => Some(Auth::Bearer { token: secret(token)? }),
            Some(AuthConfig::Oauth2 { token_url, client_id, client_secret, scopes }) => Some(Auth::Oauth2 {
                token_url: token_url.clone(),
                client_id: client_id.clone(),
                client_secret: secret(client_secret)?,
                scopes: scopes.clone(),
                token: tokio::sync::Mutex::new(None),
            }),
            Some(AuthConfig::Hmac { secret: key, signature_header, timestamp_header, key_id }) => Some(Auth::Hmac {
                secret: secret(key)?,
                signature_header: HeaderName::from_str(signature_header)
                    .map_err(|_| invalid("auth.signature_header".into()))?,
                timestamp_header: HeaderName::from_str(timestamp_header)
                    .map_err(|_| invalid("auth.timestamp_header".into()))?,
                key_id: key_id.clone(),
            }),
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_str(name).map_err(|_| invalid(format!("headers.{name}")))?;
            let value =
                HeaderValue::from_str(value).map_err(|_| invalid(format!("headers.{name}: not a header value")))?;
            headers.insert(name, value);
        }
        let limiter = config.rate_limit.map(|limit| Limiter {
            interval: Duration::from_secs_f64(1.0 / limit.per_second),
            next: std::sync::Mutex::new(Instant::now()),
        });
        let mut entities = BTreeMap::new();
        for (name, entity) in &config.entities {
            let kind = EntityKind::from_str(name).map_err(|error| invalid(error.to_string()))?;
            let compile = |text: &Option<String>, field: &str| -> Result<Option<Expression>, ConnectorError> {
                text.as_deref()
                    .map(|text| {
                        Expression::compile(text).map_err(|error| invalid(format!("entities.{name}.{field}: {error}")))
                    })
                    .transpose()
            };
            let read = match &entity.read {
                None => None,
                Some(read) => Some(ReadSettings {
                    to_canonical: compile(&read.to_canonical, "read.to_canonical")?,
                    overlap: read
                        .incremental
                        .as_ref()
                        .map(|i| parse_duration(&i.overlap))
                        .transpose()
                        .map_err(invalid)?
                        .unwrap_or_default(),
                    config: read.clone(),
                }),
            };
            let write = match &entity.write {
                None => None,
                Some(write) => Some(WriteSettings {
                    from_canonical: compile(&write.from_canonical, "write.from_canonical")?,
                    config: write.clone(),
                }),
            };
            entities.insert(kind, EntitySettings { read, write });
        }
        let webhook = match &config.webhook {
            None => None,
            Some(webhook) => Some(crate::http::webhook::WebhookSettings::new(webhook).map_err(invalid)?),
        };
        Ok(HttpConnector {
            system: system.to_string(),
            base_url: config.base_url.trim_end_matches('/').to_string(),
            http,
            auth,
            limiter,
            headers,
            entities,
            webhook,
        })
    }

    pub(crate) fn entity(&self, entity: EntityKind, context: &str) -> Result<&EntitySettings, ConnectorError> {
        self.entities.get(&entity).ok_or_else(|| {
            ConnectorError::new(
                ErrorKind::InvalidRequest,
                context,
                format!("system {:?} has no [systems.{}.entities.{entity}] settings", self.system, self.system),
            )
        })
    }

    pub(crate) fn page_size(pagination: &Pagination) -> usize {
        match pagination {
            Pagination::Page { size, .. }
            | Pagination::Offset { size, .. }
            | Pagination::Cursor { size, .. }
            | Pagination::Link { size, .. } => *size,
            Pagination::None => usize::MAX,
        }
    }

    /// Sends one request: rate limit, authentication, and errors by kind. `url` is absolute.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        context: &str,
    ) -> Result<Response, ConnectorError> {
        let mut refreshed = false;
        loop {
            if let Some(limiter) = &self.limiter {
                limiter.wait().await;
            }
            let mut request = self.http.request(method.clone(), url).headers(self.headers.clone());
            if let Some(body) = &body {
                request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone());
            }
            request = self.authenticate(request, &method, url, body.as_deref(), context).await?;
            let response = request.send().await.map_err(|error| transport_error(context, error))?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED
                && !refreshed
                && let Some(Auth::Oauth2 { token, .. }) = &self.auth
            {
                // The token may have been revoked or expired early: fetch a new one once.
                *token.lock().await = None;
                refreshed = true;
                continue;
            }
            let headers = response.headers().clone();
            let body = read_body(response, context).await?;
            if status.is_success() {
                return Ok(Response { headers, body });
            }
            return Err(status_error(context, status, &headers, &body));
        }
    }

    async fn authenticate(
        &self,
        request: reqwest::RequestBuilder,
        method: &Method,
        url: &str,
        body: Option<&[u8]>,
        context: &str,
    ) -> Result<reqwest::RequestBuilder, ConnectorError> {
        Ok(match &self.auth {
            None => request,
            Some(Auth::ApiKey { header, key }) => request.header(header.clone(), key.expose()),
            Some(Auth::Basic { username, password }) => request.basic_auth(username, Some(password.expose())),
            Some(Auth::Bearer { token }) => request.bearer_auth(token.expose()),
            Some(Auth::Oauth2 { token_url, client_id, client_secret, scopes, token }) => {
                let mut cached = token.lock().await;
                let valid = cached.as_ref().filter(|(_, expires)| *expires > Instant::now() + Duration::from_secs(30));
                let access = match valid {
                    Some((access, _)) => access.expose().to_string(),
                    None => {
                        let (access, lifetime) =
                            self.fetch_token(token_url, client_id, client_secret, scopes, context).await?;
                        let text = access.clone();
                        *cached = Some((Secret::from_string(access), Instant::now() + lifetime));
                        text
                    }
                };
                request.bearer_auth(access)
            }
            Some(Auth::Hmac { secret, signature_header, timestamp_header, key_id }) => {
                let timestamp = chrono::Utc::now().timestamp().to_string();
                let path_and_query =
                    url.split_once("://").and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..])).unwrap_or("/");
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes keys of any length");
                mac.update(method.as_str().as_bytes());
                mac.update(b"\n");
                mac.update(path_and_query.as_bytes());
                mac.update(b"\n");
                mac.update(timestamp.as_bytes());
                mac.update(b"\n");
                mac.update(body.unwrap_or_default());
                let signature = hex::encode(mac.finalize().into_bytes());
                let mut request =
                    request.header(signature_header.clone(), signature).header(timestamp_header.clone(), timestamp);
                if let Some(key_id) = key_id {
                    request = request.header("X-Key-Id", key_id);
                }
                request
            }
        })
    }

    async fn fetch_token(
        &self,
        token_url: &str,
        client_id: &str,
        client_secret: &Secret,
        scopes: &[String],
        context: &str,
    ) -> Result<(String, Duration), ConnectorError> {
        let context = format!("{context}: fetching an OAuth 2 token from {token_url}");
        let mut form = vec![("grant_type", "client_credentials".to_string())];
        if !scopes.is_empty() {
            form.push(("scope", scopes.join(" ")));
        }
        let response = self
            .http
            .post(token_url)
            .basic_auth(client_id, Some(client_secret.expose()))
            .form(&form)
            .send()
            .await
            .map_err(|error| transport_error(&context, error))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_body(response, &context).await?;
        if !status.is_success() {
            let mut error = status_error(&context, status, &headers, &body);
            if matches!(status, StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED) {
                error.kind = ErrorKind::Auth;
                error.retryable = false;
            }
            return Err(error);
        }
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|error| ConnectorError::new(ErrorKind::InvalidResponse, &context, format!("not JSON: {error}")))?;
        let access = value.get("access_token").and_then(|token| token.as_str()).ok_or_else(|| {
            ConnectorError::new(ErrorKind::InvalidResponse, &context, "the response has no access_token")
        })?;
        let lifetime = value.get("expires_in").and_then(|seconds| seconds.as_u64()).unwrap_or(3600);
        Ok((access.to_string(), Duration::from_secs(lifetime)))
    }
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
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ConnectorError::new(
            ErrorKind::InvalidResponse,
            context,
            "the response body is larger than 64 MiB",
        ));
    }
    Ok(bytes.to_vec())
}

fn transport_error(context: &str, error: reqwest::Error) -> ConnectorError {
    let kind = if error.is_timeout() {
        ErrorKind::Timeout
    } else if error.is_decode() || error.is_body() {
        // A body cut off mid-way: the server or the network failed, trying again can help.
        ErrorKind::Unavailable
    } else {
        ErrorKind::Unavailable
    };
    ConnectorError::new(kind, context, error.to_string()).with_source(error)
}

/// An HTTP error status as a connector error: what kind, whether to retry, and the system's
/// `Retry-After` (seconds or an HTTP date).
pub(crate) fn status_error(context: &str, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ConnectorError {
    let kind = match status.as_u16() {
        401 => ErrorKind::Auth,
        403 => ErrorKind::Permission,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        408 | 504 => ErrorKind::Timeout,
        429 => ErrorKind::RateLimited,
        500..=599 => ErrorKind::Unavailable,
        _ => ErrorKind::InvalidRequest,
    };
    let text = String::from_utf8_lossy(body);
    let excerpt: String = text.chars().take(ERROR_BODY_CHARS).collect();
    let mut error = ConnectorError::new(kind, context, format!("{status}: {}", excerpt.trim()));
    if let Some(delay) = retry_after(headers) {
        error = error.with_retry_after(delay);
    }
    error
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds >= 0.0 && seconds.is_finite()).then(|| Duration::from_secs_f64(seconds.min(86_400.0)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delay = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delay.to_std().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_become_kinds_with_retry_hints() {
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static("2.5"));
        let error = status_error("reading", StatusCode::TOO_MANY_REQUESTS, &headers, b"slow down");
        assert_eq!(error.kind, ErrorKind::RateLimited);
        assert!(error.retryable);
        assert_eq!(error.retry_after, Some(Duration::from_millis(2500)));
        let error =
            status_error("writing", StatusCode::UNPROCESSABLE_ENTITY, &HeaderMap::new(), br#"{"message":"sku taken"}"#);
        assert_eq!(error.kind, ErrorKind::InvalidRequest);
        assert!(!error.retryable);
        assert!(error.to_string().contains("sku taken"));
        assert_eq!(status_error("x", StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"").kind, ErrorKind::Unavailable);
    }
}
