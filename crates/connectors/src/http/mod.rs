//! The `http` connector: any JSON REST API as a source and a target, configured, not coded.
//!
//! - [`config`]: the TOML table (base URL, authentication, rate limit, per-entity endpoints,
//!   pagination, incremental filter, JSONata conversions) and its pure validation.
//! - [`client`]: requests with authentication (API key, Basic, Bearer, OAuth 2 client
//!   credentials with token refresh, HMAC-signed requests), the rate limiter, and the mapping of
//!   HTTP failures to [`crate::ConnectorError`] kinds with `Retry-After`.
//! - [`map`]: pure conversions between the API's JSON and canonical records (JSONata or as is).
//! - [`source`]: paged, incremental reads (page number, offset/limit, cursor in the body, `Link`).
//! - [`sink`]: creates, updates and upserts, one request per record or batched arrays.
//! - [`webhook`]: verification of HMAC-signed inbound webhooks.
//!
//! The user guide is `docs/connectors/http.md`.

pub mod client;
pub mod config;
pub mod map;
pub mod sink;
pub mod source;
pub mod webhook;

pub use client::HttpConnector;
pub use config::HttpConfig;
