//! Configuration of the `http` connector and its pure validation.
//!
//! ```toml
//! [systems.erp]
//! type = "http"
//! base_url = "https://erp.example.com/api/v2"
//! auth = { type = "bearer", token = "${ERP_TOKEN}" }
//! rate_limit = { per_second = 10 }
//!
//! [systems.erp.entities.product]
//! read = { path = "/items", records = "data", id = "id", pagination = { style = "page", size = 100 }, incremental = { param = "modified_since", field = "modified" }, to_canonical = "{ 'code': sku, 'title': name, 'variants': [{ 'sku': sku }] }" }
//! write = { create = { path = "/items" }, update = { method = "PUT", path = "/items/{id}" }, from_canonical = "{ 'sku': code, 'name': title }" }
//! ```

use crate::secret::SecretRef;
use erpsync_mapping::Expression;
use erpsync_model::EntityKind;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `https://host/prefix`; endpoint paths are appended to it.
    pub base_url: String,
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// Per request, e.g. `"30s"`.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Extra headers sent with every request (not secrets: use `auth` for those).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub entities: BTreeMap<String, EntityHttpConfig>,
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
}

fn default_timeout() -> String {
    "30s".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// A key in a header: `X-Api-Key: <key>`.
    ApiKey {
        header: String,
        key: SecretRef,
    },
    Basic {
        username: String,
        password: SecretRef,
    },
    Bearer {
        token: SecretRef,
    },
    /// OAuth 2 client credentials: a token from `token_url`, refreshed before it expires and
    /// once on a 401.
    Oauth2 {
        token_url: String,
        client_id: String,
        client_secret: SecretRef,
        #[serde(default)]
        scopes: Vec<String>,
    },
    /// Each request signed: `signature_header` carries hex HMAC-SHA256 of
    /// `METHOD\nPATH?QUERY\nTIMESTAMP\nBODY`, `timestamp_header` the Unix time in seconds.
    Hmac {
        secret: SecretRef,
        #[serde(default = "default_signature_header")]
        signature_header: String,
        #[serde(default = "default_timestamp_header")]
        timestamp_header: String,
        /// Optional key id sent as `X-Key-Id`.
        #[serde(default)]
        key_id: Option<String>,
    },
}

fn default_signature_header() -> String {
    "X-Signature".into()
}

fn default_timestamp_header() -> String {
    "X-Timestamp".into()
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per second, evenly spaced. `Retry-After` on 429 is honoured on top.
    pub per_second: f64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityHttpConfig {
    #[serde(default)]
    pub read: Option<ReadConfig>,
    #[serde(default)]
    pub write: Option<WriteConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadConfig {
    pub path: String,
    /// Dotted path to the array of records in the response body; empty when the body is the
    /// array.
    #[serde(default)]
    pub records: String,
    /// Dotted path of the record's id in the API record.
    #[serde(default = "default_id")]
    pub id: String,
    #[serde(default)]
    pub pagination: Pagination,
    #[serde(default)]
    pub incremental: Option<Incremental>,
    /// Fixed query parameters.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// JSONata from the API record to the canonical record; absent: the API record is taken as
    /// the canonical JSON.
    #[serde(default)]
    pub to_canonical: Option<String>,
    /// Path of one record by id, `{id}` standing for it (`/orders/{id}`): lets webhook events
    /// and two-way merges read a record's current state.
    #[serde(default)]
    pub item_path: Option<String>,
    /// Dotted path to the record in that response; empty when the body is the record.
    #[serde(default)]
    pub item_record: String,
}

fn default_id() -> String {
    "id".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "style", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pagination {
    /// `?page=1&per_page=100`, until a page has fewer records than asked.
    Page {
        #[serde(default = "default_page_param")]
        page_param: String,
        #[serde(default = "default_size_param")]
        size_param: String,
        #[serde(default = "default_size")]
        size: usize,
        #[serde(default = "default_first_page")]
        first: u64,
    },
    /// `?offset=0&limit=100`.
    Offset {
        #[serde(default = "default_offset_param")]
        offset_param: String,
        #[serde(default = "default_limit_param")]
        limit_param: String,
        #[serde(default = "default_size")]
        size: usize,
    },
    /// The next cursor is in the body (`next_cursor` path); sent back as `cursor_param`.
    Cursor {
        #[serde(default = "default_cursor_param")]
        cursor_param: String,
        next_cursor: String,
        #[serde(default)]
        size_param: Option<String>,
        #[serde(default = "default_size")]
        size: usize,
    },
    /// RFC 8288 `Link: <…>; rel="next"` headers.
    Link {
        #[serde(default)]
        size_param: Option<String>,
        #[serde(default = "default_size")]
        size: usize,
    },
    /// One request returns everything.
    None,
}

impl Default for Pagination {
    fn default() -> Self {
        Pagination::Page {
            page_param: default_page_param(),
            size_param: default_size_param(),
            size: default_size(),
            first: default_first_page(),
        }
    }
}

fn default_page_param() -> String {
    "page".into()
}
fn default_size_param() -> String {
    "per_page".into()
}
fn default_size() -> usize {
    100
}
fn default_first_page() -> u64 {
    1
}
fn default_offset_param() -> String {
    "offset".into()
}
fn default_limit_param() -> String {
    "limit".into()
}
fn default_cursor_param() -> String {
    "cursor".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incremental {
    /// Query parameter carrying "changed since".
    pub param: String,
    /// `rfc3339` (default), `unix`, `unix_ms`, or a chrono format such as `%Y-%m-%d %H:%M:%S`
    /// (taken as UTC).
    #[serde(default = "default_time_format")]
    pub format: String,
    /// Dotted path of the record's last-change time in the API record.
    pub field: String,
    /// How far each run reaches back before the watermark: changes committed out of order
    /// and timestamp ties at the boundary are read again (and skipped by hash).
    #[serde(default = "default_overlap")]
    pub overlap: String,
}

fn default_time_format() -> String {
    "rfc3339".into()
}

fn default_overlap() -> String {
    "5s".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteConfig {
    #[serde(default)]
    pub create: Option<Endpoint>,
    /// Path may contain `{id}` (the target id).
    #[serde(default)]
    pub update: Option<Endpoint>,
    /// Path may contain `{key}` (the natural key): one call creates or updates.
    #[serde(default)]
    pub upsert: Option<Endpoint>,
    /// Arrays of records in one request.
    #[serde(default)]
    pub batch: Option<BatchEndpoint>,
    /// Dotted path of the id in a create response (or in each batch result).
    #[serde(default = "default_id")]
    pub response_id: String,
    /// JSONata from the canonical record to the API's body; absent: the canonical JSON.
    #[serde(default)]
    pub from_canonical: Option<String>,
    /// Finding an existing record by natural key before creating: `GET path?param=<key>`.
    #[serde(default)]
    pub lookup: Option<LookupEndpoint>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    #[serde(default = "default_method")]
    pub method: String,
    pub path: String,
}

fn default_method() -> String {
    "POST".into()
}

/// Batches as WooCommerce and many others take them: `{"create": [...], "update": [...]}`
/// answered by arrays in the same order, an item with an `error` object failing alone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchEndpoint {
    #[serde(default = "default_method")]
    pub method: String,
    pub path: String,
    #[serde(default = "default_batch_max")]
    pub max: usize,
    #[serde(default = "default_create_key")]
    pub create_key: String,
    #[serde(default = "default_update_key")]
    pub update_key: String,
    /// Field of a result item that, when present and not null, makes that item a failure.
    #[serde(default = "default_error_field")]
    pub error_field: String,
}

fn default_batch_max() -> usize {
    100
}
fn default_create_key() -> String {
    "create".into()
}
fn default_update_key() -> String {
    "update".into()
}
fn default_error_field() -> String {
    "error".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupEndpoint {
    pub path: String,
    pub param: String,
    #[serde(default)]
    pub records: String,
    #[serde(default = "default_id")]
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub secret: SecretRef,
    #[serde(default = "default_signature_header")]
    pub signature_header: String,
    /// `hex` or `base64`.
    #[serde(default = "default_encoding")]
    pub encoding: String,
    /// A prefix before the signature, e.g. `sha256=`.
    #[serde(default)]
    pub prefix: String,
    #[serde(default = "default_id_header")]
    pub id_header: String,
    #[serde(default)]
    pub topic_header: Option<String>,
    /// When set, the signed content is `TIMESTAMP.BODY` and deliveries older than `tolerance`
    /// are refused.
    #[serde(default)]
    pub timestamp_header: Option<String>,
    /// For senders that sign no time of their own: dotted path of a time inside the (signed)
    /// body, RFC 3339 or Unix seconds; deliveries whose time is further than `tolerance` from
    /// now, or that lack it, are refused.
    #[serde(default)]
    pub timestamp_path: Option<String>,
    #[serde(default = "default_tolerance")]
    pub tolerance: String,
    /// Topic (the `topic_header` value) → entity the delivery is about: `"order.updated" =
    /// "order"`. With topics, a delivery names its record (at `record_id` in the body) and only
    /// that record is fetched and synced; a topic not listed is refused with 400. Without,
    /// every delivery makes the flows reading from this system pull what changed.
    #[serde(default)]
    pub topics: BTreeMap<String, String>,
    /// Dotted path of the record's id in the delivery body.
    #[serde(default = "default_id")]
    pub record_id: String,
}

fn default_encoding() -> String {
    "hex".into()
}
fn default_id_header() -> String {
    "X-Delivery-Id".into()
}
fn default_tolerance() -> String {
    "5m".into()
}

/// Parses `500ms`, `30s`, `15m`, `2h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration such as 500ms, 30s, 5m"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(value),
        "s" | "" => Duration::from_secs(value),
        "m" => Duration::from_secs(value * 60),
        "h" => Duration::from_secs(value * 3600),
        other => return Err(format!("unknown unit {other:?} in {text:?}; use ms, s, m or h")),
    })
}

impl HttpConfig {
    /// Secret files relative to the configuration's folder.
    pub fn resolve_paths(&mut self, base_dir: &std::path::Path) {
        match &mut self.auth {
            Some(AuthConfig::ApiKey { key: secret, .. })
            | Some(AuthConfig::Basic { password: secret, .. })
            | Some(AuthConfig::Bearer { token: secret })
            | Some(AuthConfig::Oauth2 { client_secret: secret, .. })
            | Some(AuthConfig::Hmac { secret, .. }) => secret.resolve_path(base_dir),
            None => {}
        }
        if let Some(webhook) = &mut self.webhook {
            webhook.secret.resolve_path(base_dir);
        }
    }

    /// Every problem, each with its field path. Pure: no network, no secrets.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut push = |field: &str, message: String| problems.push((field.to_string(), message));
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            push("base_url", format!("{:?} must start with http:// or https://", self.base_url));
        }
        if let Err(message) = parse_duration(&self.timeout) {
            push("timeout", message);
        }
        if let Some(limit) = &self.rate_limit
            && !(limit.per_second > 0.0 && limit.per_second <= 10_000.0)
        {
            push("rate_limit.per_second", "must be above 0 and at most 10000".into());
        }
        for name in self.headers.keys() {
            if reqwest::header::HeaderName::from_str(name).is_err() {
                push(&format!("headers.{name}"), "is not a valid header name".into());
            }
        }
        if let Some(AuthConfig::Oauth2 { token_url, .. }) = &self.auth
            && !(token_url.starts_with("http://") || token_url.starts_with("https://"))
        {
            push("auth.token_url", format!("{token_url:?} must be an http(s) URL"));
        }
        for (entity_name, entity) in &self.entities {
            let at = format!("entities.{entity_name}");
            if EntityKind::from_str(entity_name).is_err() {
                push(&at, format!("unknown entity {entity_name:?}"));
            }
            if let Some(read) = &entity.read {
                if !read.path.starts_with('/') {
                    push(&format!("{at}.read.path"), "must start with /".into());
                }
                if let Some(expression) = &read.to_canonical
                    && let Err(error) = Expression::compile(expression)
                {
                    push(&format!("{at}.read.to_canonical"), error.to_string());
                }
                if let Some(incremental) = &read.incremental {
                    if let Err(message) = parse_duration(&incremental.overlap) {
                        push(&format!("{at}.read.incremental.overlap"), message);
                    }
                    if incremental.field.is_empty() {
                        push(&format!("{at}.read.incremental.field"), "is required".into());
                    }
                }
                let size = match &read.pagination {
                    Pagination::Page { size, .. }
                    | Pagination::Offset { size, .. }
                    | Pagination::Cursor { size, .. }
                    | Pagination::Link { size, .. } => *size,
                    Pagination::None => 1,
                };
                if size == 0 || size > 10_000 {
                    push(&format!("{at}.read.pagination.size"), "must be between 1 and 10000".into());
                }
            }
            if let Some(write) = &entity.write {
                if write.create.is_none() && write.upsert.is_none() && write.batch.is_none() {
                    push(&format!("{at}.write"), "needs `create`, `upsert` or `batch`".into());
                }
                for (name, endpoint) in
                    [("create", &write.create), ("update", &write.update), ("upsert", &write.upsert)]
                {
                    if let Some(endpoint) = endpoint {
                        if reqwest::Method::from_str(&endpoint.method.to_ascii_uppercase()).is_err() {
                            push(
                                &format!("{at}.write.{name}.method"),
                                format!("{:?} is not an HTTP method", endpoint.method),
                            );
                        }
                        if !endpoint.path.starts_with('/') {
                            push(&format!("{at}.write.{name}.path"), "must start with /".into());
                        }
                    }
                }
                if let Some(update) = &write.update
                    && !update.path.contains("{id}")
                {
                    push(&format!("{at}.write.update.path"), "must contain {id}".into());
                }
                if let Some(upsert) = &write.upsert
                    && !upsert.path.contains("{key}")
                {
                    push(&format!("{at}.write.upsert.path"), "must contain {key}".into());
                }
                if let Some(batch) = &write.batch
                    && (batch.max == 0 || batch.max > 1000)
                {
                    push(&format!("{at}.write.batch.max"), "must be between 1 and 1000".into());
                }
                if let Some(expression) = &write.from_canonical
                    && let Err(error) = Expression::compile(expression)
                {
                    push(&format!("{at}.write.from_canonical"), error.to_string());
                }
            }
        }
        if let Some(webhook) = &self.webhook {
            if !matches!(webhook.encoding.as_str(), "hex" | "base64") {
                push("webhook.encoding", format!("{:?}: use hex or base64", webhook.encoding));
            }
            for (topic, entity) in &webhook.topics {
                if entity.parse::<erpsync_model::EntityKind>().is_err() {
                    push(&format!("webhook.topics.{topic}"), format!("{entity:?} is not an entity"));
                }
            }
            if !webhook.topics.is_empty() && webhook.topic_header.is_none() {
                push("webhook.topics", "topics need a topic_header to read the topic from".into());
            }
            if let Err(message) = parse_duration(&webhook.tolerance) {
                push("webhook.tolerance", message);
            }
        }
        problems
    }
}
