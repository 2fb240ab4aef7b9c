//! The closed list of connectors: one `SystemConfig` variant per connector, and `catalog()`.

use crate::{ConnectorError, Sink, Source, WebhookReceiver, WebhookSubscriptions, files, http, sql, woocommerce};
use erpsync_model::EntityKind;
use serde::Deserialize;
use std::sync::Arc;

/// A system's connector settings, tagged by `type` in the configuration file.
// Loaded once per process and never moved in a hot path: boxing the larger variants would buy
// nothing but noise in every match.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SystemConfig {
    Files(files::FilesConfig),
    Http(http::HttpConfig),
    Sql(sql::SqlConfig),
    Woocommerce(woocommerce::WooConfig),
}

impl SystemConfig {
    pub fn type_name(&self) -> &'static str {
        match self {
            SystemConfig::Files(_) => "files",
            SystemConfig::Sql(_) => "sql",
            SystemConfig::Http(_) => "http",
            SystemConfig::Woocommerce(_) => "woocommerce",
        }
    }

    /// Pure checks of the settings (no network, no file system): every problem, each with the
    /// field path it concerns relative to the system's table.
    pub fn validate(&self) -> Vec<(String, String)> {
        match self {
            SystemConfig::Files(config) => config.validate(),
            SystemConfig::Sql(config) => config.validate(),
            SystemConfig::Http(config) => config.validate(),
            SystemConfig::Woocommerce(config) => config.validate(),
        }
    }

    /// Makes the connector's relative paths relative to `base_dir`, the folder of the
    /// configuration file, as the configuration guide promises. Call once after loading.
    pub fn resolve_paths(&mut self, base_dir: &std::path::Path) {
        match self {
            SystemConfig::Files(config) => config.resolve_paths(base_dir),
            SystemConfig::Sql(config) => config.resolve_paths(base_dir),
            SystemConfig::Http(_) | SystemConfig::Woocommerce(_) => {}
        }
    }

    pub fn build_source(&self, system: &str) -> Result<Arc<dyn Source>, ConnectorError> {
        match self {
            SystemConfig::Files(config) => Ok(Arc::new(files::FilesConnector::new(system, config.clone())?)),
            SystemConfig::Sql(config) => Ok(Arc::new(sql::SqlConnector::new(system, config.clone())?)),
            SystemConfig::Http(config) => Ok(Arc::new(http::HttpConnector::new(system, config.clone())?)),
            SystemConfig::Woocommerce(config) => Ok(Arc::new(woocommerce::WooConnector::new(system, config.clone())?)),
        }
    }

    /// The system's webhook verifier, when its connector receives webhooks.
    pub fn build_webhook_receiver(&self, system: &str) -> Result<Option<Arc<dyn WebhookReceiver>>, ConnectorError> {
        match self {
            SystemConfig::Http(config) => Ok(Some(Arc::new(http::HttpConnector::new(system, config.clone())?))),
            SystemConfig::Woocommerce(config) => {
                Ok(Some(Arc::new(woocommerce::WooConnector::new(system, config.clone())?)))
            }
            SystemConfig::Files(_) | SystemConfig::Sql(_) => Ok(None),
        }
    }

    /// The system's subscription management, when its API has one.
    pub fn build_subscriptions(&self, system: &str) -> Result<Option<Arc<dyn WebhookSubscriptions>>, ConnectorError> {
        match self {
            SystemConfig::Woocommerce(config) => {
                Ok(Some(Arc::new(woocommerce::WooConnector::new(system, config.clone())?)))
            }
            SystemConfig::Files(_) | SystemConfig::Sql(_) | SystemConfig::Http(_) => Ok(None),
        }
    }

    pub fn build_sink(&self, system: &str) -> Result<Arc<dyn Sink>, ConnectorError> {
        match self {
            SystemConfig::Files(config) => Ok(Arc::new(files::FilesConnector::new(system, config.clone())?)),
            SystemConfig::Sql(config) => Ok(Arc::new(sql::SqlConnector::new(system, config.clone())?)),
            SystemConfig::Http(config) => Ok(Arc::new(http::HttpConnector::new(system, config.clone())?)),
            SystemConfig::Woocommerce(config) => Ok(Arc::new(woocommerce::WooConnector::new(system, config.clone())?)),
        }
    }
}

/// What `erpsync connectors` prints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectorInfo {
    pub name: &'static str,
    pub description: &'static str,
    pub entities: Vec<EntityKind>,
    pub read: bool,
    pub write: bool,
    pub webhooks: bool,
}

pub fn catalog() -> Vec<ConnectorInfo> {
    vec![
        ConnectorInfo {
            name: "files",
            description: "CSV and JSON Lines files in a folder (the exchange many ERPs still use)",
            entities: EntityKind::ALL.to_vec(),
            read: true,
            write: true,
            webhooks: false,
        },
        ConnectorInfo {
            name: "sql",
            description: "PostgreSQL and MariaDB/MySQL tables or views (staging tables, ERP databases)",
            entities: EntityKind::ALL.to_vec(),
            read: true,
            write: true,
            webhooks: false,
        },
        ConnectorInfo {
            name: "http",
            description: "any JSON REST API, configured: auth, pagination, incremental filter, batches, JSONata conversions",
            entities: EntityKind::ALL.to_vec(),
            read: true,
            write: true,
            webhooks: true,
        },
        ConnectorInfo {
            name: "woocommerce",
            description: "WooCommerce REST API v3: products with variations, stock, customers, orders, refunds, order status and shipments, batches, signed webhooks",
            entities: vec![
                EntityKind::Product,
                EntityKind::StockLevel,
                EntityKind::Customer,
                EntityKind::Order,
                EntityKind::OrderStatus,
                EntityKind::Shipment,
                EntityKind::Refund,
            ],
            read: true,
            write: true,
            webhooks: true,
        },
    ]
}
