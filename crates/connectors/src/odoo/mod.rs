//! The `odoo` connector: Odoo's external API (JSON-2 from Odoo 19, JSON-RPC before) as the ERP
//! side of a sync.
//!
//! - [`config`]: the TOML table (URL, database, protocol and credentials, warehouses, price
//!   lists, order options) and its pure validation.
//! - [`client`]: one `call(model, method, args, kwargs)` over JSON-2 or JSON-RPC, with the
//!   errors Odoo returns (also inside HTTP 200) mapped to [`crate::ConnectorError`] kinds, the
//!   cached `uid`, `fields_get` per model and a call counter.
//! - [`map`]: pure conversions between Odoo's values (naive UTC times, many2one pairs, floats,
//!   `false` for empty) and the canonical model.
//! - [`source`]: incremental reads by `write_date` with an id tie-break: products with their
//!   variants, price lists, stock per warehouse, shipments, order status, invoices.
//! - [`sink`]: customers, sales orders (never created twice), refunds as draft credit notes and
//!   cancellations, created in batches with a one-by-one fallback.
//! - [`webhook`]: why inbound webhooks are not offered (Odoo does not sign them).
//!
//! The user guide is `docs/connectors/odoo.md`.

pub mod client;
pub mod config;
pub mod map;
pub mod sink;
pub mod source;
pub mod webhook;

pub use client::{OdooConnector, OdooStats};
pub use config::OdooConfig;
