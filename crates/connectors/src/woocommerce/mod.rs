//! The `woocommerce` connector: a WooCommerce shop through its REST API v3
//! (`{url}/wp-json/wc/v3`).
//!
//! - [`config`]: the TOML table (site URL, consumer key and secret, Basic or OAuth 1.0a, webhook
//!   secret, page size, timeouts, currency, stock location) and its pure validation.
//! - [`client`]: requests with consumer-key authentication (HTTP Basic over HTTPS, OAuth 1.0a
//!   one-legged signatures over plain HTTP), WooCommerce's error envelope turned into
//!   [`crate::ConnectorError`] kinds, and batch results read item by item.
//! - [`map`]: pure conversions between WooCommerce's JSON and canonical records.
//! - [`source`]: products (a variable product and its variations become one product with
//!   variants by SKU), customers, orders and refunds; products and orders incrementally by
//!   `modified_after` with an overlap and an id tie-break.
//! - [`sink`]: products through `/products/batch` and `/products/{id}/variations/batch`, stock
//!   levels by SKU, order status with a note, shipments as completion plus a tracking note, and
//!   customers through `/customers/batch`.
//! - [`webhook`]: verification of `X-WC-Webhook-Signature`, and webhook subscriptions.
//!
//! The user guide is `docs/connectors/woocommerce.md`.

pub mod client;
pub mod config;
pub mod map;
pub mod sink;
pub mod source;
pub mod webhook;

pub use client::WooConnector;
pub use config::WooConfig;
