//! The `tryton` connector: a Tryton ERP (8.x) over its JSON-RPC API.
//!
//! - [`config`]: the TOML table (server, database, login, company, warehouses, web shop,
//!   batch size, timeouts) and its pure validation.
//! - [`client`]: the JSON-RPC client: login to a session, the `Session` authorization header,
//!   one new login when the session expired, gzip, the context Tryton wants as the last
//!   positional parameter, and Tryton's errors (inside 2xx responses too) as
//!   [`crate::ConnectorError`] kinds; a call counter for benchmarks.
//! - [`map`]: pure conversions: Tryton's encoded values (`Decimal`, `datetime`, `date`,
//!   `bytes`) both ways, and Tryton records to and from canonical records.
//! - [`source`]: incremental reads of products, sale price lists (with the prices Tryton
//!   computes per quantity tier), stock levels, order status, shipments and posted invoices and
//!   credit notes with their report.
//! - [`sink`]: products (templates with variants), customers (parties), orders (sales, imported
//!   once per web shop and web id, quoted and confirmed), order cancellation, and refunds
//!   (posted credit notes for the sale's customer, written once per refund number).
//! - [`webhook`]: Tryton sends no webhooks; why, and what to use instead.
//!
//! The user guide is `docs/connectors/tryton.md`; the test server is `tools/tryton/ensure.py`.

pub mod client;
pub mod config;
pub mod map;
pub mod sink;
pub mod source;
pub mod webhook;

pub use client::{TrytonClient, TrytonConnector};
pub use config::TrytonConfig;
