//! WooCommerce REST API v3 simulator: an HTTP server on 127.0.0.1 that behaves like
//! `/wp-json/wc/v3` in what matters to a sync engine: consumer-key authentication (HTTP Basic
//! behind an HTTPS terminator, OAuth 1.0a one-legged over plain HTTP with HMAC-SHA1/SHA256,
//! the 15-minute timestamp window and nonce replay protection, read-only keys), products and
//! variations with unique SKUs, customers with unique e-mails, orders with line items, taxes,
//! shipping and coupons, order notes, refunds, batch endpoints with the 100-object cap and
//! per-item errors inside a 200, list filters (`modified_after` strictly after, `dates_are_gmt`,
//! `orderby` with the id tie-break) and pagination headers (`X-WP-Total`, `X-WP-TotalPages`,
//! `Link`), webhooks signed like WooCommerce signs them (and disabled after consecutive
//! failures), a deterministic seed, a control API under `/_sim/` and fault injection.
//!
//! Start it with [`WooSim::start`]; the control API is described in [`control`].
//!
//! Written from WooCommerce's REST API documentation and its REST controllers; where the two
//! disagree the controllers win (the batch cap answers 413, not 400), and each such choice is
//! written down where it is made.

pub mod auth;
pub mod control;
pub mod seed;
pub mod server;
pub mod state;
pub mod webhooks;

pub use auth::{ApiKey, KeyPermissions, oauth_base_string, oauth_signature};
pub use seed::SeedConfig;
pub use server::{Counters, Faults, RunningWooSim, StartError, WooSim, WooSimConfig};
pub use state::{SimClock, Store};
pub use webhooks::{DeliveryRecord, sign};
