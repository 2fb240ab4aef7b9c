//! The `shopify` connector: a Shopify store through the Admin GraphQL API.
//!
//! - [`config`]: the TOML table (shop URL, API version, token, webhook secret, bulk threshold,
//!   location and price-list lookups, timeouts) and its pure validation.
//! - [`client`]: GraphQL requests with the access token, the cost-based limiter that follows
//!   `extensions.cost`, and failures (HTTP statuses, top-level `errors`) as
//!   [`crate::ConnectorError`] kinds.
//! - [`map`]: pure conversions between Shopify's GraphQL objects and canonical records.
//! - [`source`]: paged, incremental reads of products, customers, orders, refunds and order
//!   status changes (Relay cursors, `updated_at` search sorted by `UPDATED_AT`), and reads by id
//!   with `nodes(ids:)`.
//! - [`sink`]: products (`productSet`; archive and delete), price lists, stock levels,
//!   shipments, order status (`orderCancel`, `orderClose`) and documents (order metafields),
//!   with per-record outcomes from `userErrors`.
//! - [`bulk`]: full catalog writes through a staged upload and `bulkOperationRunMutation`.
//! - [`webhook`]: verification of `X-Shopify-Hmac-Sha256`, decoding deliveries into the records
//!   they are about, and subscription management.
//!
//! The user guide is `docs/connectors/shopify.md`.

pub mod bulk;
pub mod client;
pub mod config;
pub mod map;
pub mod sink;
pub mod source;
pub mod webhook;

pub use client::{CostStats, ShopifyConnector};
pub use config::ShopifyConfig;
