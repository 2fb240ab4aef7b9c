//! Shopify Admin GraphQL simulator: an HTTP server on 127.0.0.1 that behaves like the Admin
//! API in what matters to a sync engine (versioned URL, access token, cost-based throttling,
//! Relay pagination and search, productSet and inventory semantics, userErrors, bulk
//! operations, signed webhooks with retries) with seed data, a control API and faults.
//!
//! Start it with [`ShopifySim::start`]; the control API is described in [`control`].

pub mod bulk;
pub mod control;
pub mod cost;
pub mod exec;
pub mod graphql;
pub mod mutations;
pub mod search;
pub mod server;
pub mod state;
pub mod webhooks;

pub use cost::PlanLimits;
pub use server::{Counters, Faults, RunningSim, ShopifyConfig, ShopifySim, StartError};
pub use state::SeedConfig;
pub use webhooks::{DeliveryRecord, RetryPolicy, sign};
