//! The `medusa` connector: a Medusa 2 shop through its admin REST API (`{url}/admin/...`).
//!
//! - [`config`]: the TOML table (server URL, secret API key, sales channel, currency and
//!   region, stock location mapping, shipping profile, webhook secret, page size, timeouts)
//!   and its pure validation.
//! - [`client`]: requests authenticated with the secret API key as HTTP Basic (key as user,
//!   empty password), Medusa's `{type, message}` errors as [`crate::ConnectorError`] kinds,
//!   offset-paged lists, file uploads (`POST /admin/uploads`, multipart), and the configured
//!   names resolved to ids once.
//! - [`map`]: pure conversions between Medusa's JSON and canonical records (amounts are
//!   decimals in major units; the product code lives in `external_id`).
//! - [`source`]: products with variants, customers, orders, order status and refunds (from the
//!   orders' payments) incrementally by `updated_at` (overlap, ties broken by id), variants'
//!   price changes included; stock levels per location; records by id for webhook events.
//! - [`sink`]: products (batch creation, update by id with variants by SKU, lookup by code or
//!   SKU), base prices, customer-group price lists (Medusa price lists with a
//!   `customer.groups.id` rule, found again by the code in their metadata), stock levels per
//!   location, shipments (fulfillment, shipment with tracking, optionally delivered), order
//!   status (cancel, complete) and documents (the file uploaded, its URL and the header in the
//!   order's metadata).
//! - [`webhook`]: verification and decoding of the events that erpsync's subscriber file
//!   forwards (Medusa ships no webhooks).
//!
//! The user guide is `docs/connectors/medusa.md`; the test server is `tools/medusa/ensure.py`.

pub mod client;
pub mod config;
pub mod map;
pub mod sink;
pub mod source;
pub mod webhook;

pub use client::MedusaConnector;
pub use config::MedusaConfig;
