//! Connector traits, the error every connector speaks, and one module per external system.
//!
//! A connector translates between one system's API and the canonical model. It implements the
//! capability traits it supports ([`Source`], [`Sink`]) and never touches the store: the engine
//! owns checkpoints, links and retries.

pub mod error;
pub mod files;
pub mod http;
pub mod medusa;
pub mod odoo;
pub mod registry;
pub mod secret;
pub mod shopify;
pub mod sql;
pub mod traits;
pub mod tryton;
pub mod woocommerce;

#[cfg(test)]
mod golden;

pub use error::{ConnectorError, ErrorKind, Fault};
pub use registry::{ConnectorInfo, SystemConfig, catalog};
pub use traits::*;
