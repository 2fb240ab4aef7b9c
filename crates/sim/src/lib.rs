//! Simulators of the external APIs that cannot run here: HTTP servers on 127.0.0.1 that behave
//! like the real APIs in what matters to a sync engine (URLs, auth, pagination, incremental
//! filters, throttling, error shapes, webhooks, faults).
//!
//! This crate depends on no other crate of the project: each simulator is written from the
//! vendor's documentation, so a connector's misreading is not copied into its test double.

pub mod odoo;
pub mod shopify;
pub mod woocommerce;
