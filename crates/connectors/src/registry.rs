//! The closed list of connectors: one `SystemConfig` variant per connector, and `catalog()`.
//!
//! Every match has one arm per connector, on its own line, so that adding a connector touches
//! each match in one place.

use crate::{
    ConnectorError, Sink, Source, WebhookReceiver, WebhookSubscriptions, files, http, medusa, odoo, shopify, sql,
    tryton, woocommerce,
};
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
    Shopify(shopify::ShopifyConfig),
    Tryton(tryton::TrytonConfig),
    Odoo(odoo::OdooConfig),
    Woocommerce(woocommerce::WooConfig),
    Medusa(medusa::MedusaConfig),
}

impl SystemConfig {
    pub fn type_name(&self) -> &'static str {
        match self {
            SystemConfig::Files(_) => "files",
            SystemConfig::Sql(_) => "sql",
            SystemConfig::Http(_) => "http",
            SystemConfig::Shopify(_) => "shopify",
            SystemConfig::Tryton(_) => "tryton",
            SystemConfig::Odoo(_) => "odoo",
            SystemConfig::Woocommerce(_) => "woocommerce",
            SystemConfig::Medusa(_) => "medusa",
        }
    }

    /// Pure checks of the settings (no network, no file system): every problem, each with the
    /// field path it concerns relative to the system's table.
    pub fn validate(&self) -> Vec<(String, String)> {
        match self {
            SystemConfig::Files(config) => config.validate(),
            SystemConfig::Sql(config) => config.validate(),
            SystemConfig::Http(config) => config.validate(),
            SystemConfig::Shopify(config) => config.validate(),
            SystemConfig::Tryton(config) => config.validate(),
            SystemConfig::Odoo(config) => config.validate(),
            SystemConfig::Woocommerce(config) => config.validate(),
            SystemConfig::Medusa(config) => config.validate(),
        }
    }

    /// Makes the connector's relative paths relative to `base_dir`, the folder of the
    /// configuration file, as the configuration guide promises. Call once after loading.
    pub fn resolve_paths(&mut self, base_dir: &std::path::Path) {
        match self {
            SystemConfig::Files(config) => config.resolve_paths(base_dir),
            SystemConfig::Sql(config) => config.url.resolve_path(base_dir),
            SystemConfig::Http(config) => config.resolve_paths(base_dir),
            SystemConfig::Shopify(config) => {
                config.access_token.resolve_path(base_dir);
                if let Some(secret) = &mut config.webhook_secret {
                    secret.resolve_path(base_dir);
                }
            }
            SystemConfig::Tryton(config) => config.password.resolve_path(base_dir),
            SystemConfig::Odoo(config) => {
                for secret in [&mut config.api_key, &mut config.password].into_iter().flatten() {
                    secret.resolve_path(base_dir);
                }
            }
            SystemConfig::Woocommerce(config) => {
                config.consumer_key.resolve_path(base_dir);
                config.consumer_secret.resolve_path(base_dir);
                if let Some(secret) = &mut config.webhook_secret {
                    secret.resolve_path(base_dir);
                }
            }
            SystemConfig::Medusa(config) => {
                config.api_key.resolve_path(base_dir);
                if let Some(secret) = &mut config.webhook_secret {
                    secret.resolve_path(base_dir);
                }
            }
        }
    }

    pub fn build_source(&self, system: &str) -> Result<Arc<dyn Source>, ConnectorError> {
        match self {
            SystemConfig::Files(config) => Ok(Arc::new(files::FilesConnector::new(system, config.clone())?)),
            SystemConfig::Sql(config) => Ok(Arc::new(sql::SqlConnector::new(system, config.clone())?)),
            SystemConfig::Http(config) => Ok(Arc::new(http::HttpConnector::new(system, config.clone())?)),
            SystemConfig::Shopify(config) => Ok(Arc::new(shopify::ShopifyConnector::new(system, config.clone())?)),
            SystemConfig::Tryton(config) => Ok(Arc::new(tryton::TrytonConnector::new(system, config.clone())?)),
            SystemConfig::Odoo(config) => Ok(Arc::new(odoo::OdooConnector::new(system, config.clone())?)),
            SystemConfig::Woocommerce(config) => Ok(Arc::new(woocommerce::WooConnector::new(system, config.clone())?)),
            SystemConfig::Medusa(config) => Ok(Arc::new(medusa::MedusaConnector::new(system, config.clone())?)),
        }
    }

    /// The system's webhook verifier, when its connector receives webhooks.
    pub fn build_webhook_receiver(&self, system: &str) -> Result<Option<Arc<dyn WebhookReceiver>>, ConnectorError> {
        match self {
            SystemConfig::Http(config) => Ok(Some(Arc::new(http::HttpConnector::new(system, config.clone())?))),
            SystemConfig::Shopify(config) => {
                Ok(Some(Arc::new(shopify::ShopifyConnector::new(system, config.clone())?)))
            }
            SystemConfig::Files(_) => Ok(None),
            SystemConfig::Sql(_) => Ok(None),
            SystemConfig::Tryton(_) => Ok(None),
            SystemConfig::Odoo(_) => Ok(None),
            SystemConfig::Woocommerce(config) => {
                Ok(Some(Arc::new(woocommerce::WooConnector::new(system, config.clone())?)))
            }
            SystemConfig::Medusa(config) => Ok(Some(Arc::new(medusa::MedusaConnector::new(system, config.clone())?))),
        }
    }

    /// The system's subscription management, when its API has one.
    pub fn build_subscriptions(&self, system: &str) -> Result<Option<Arc<dyn WebhookSubscriptions>>, ConnectorError> {
        match self {
            SystemConfig::Shopify(config) => {
                Ok(Some(Arc::new(shopify::ShopifyConnector::new(system, config.clone())?)))
            }
            SystemConfig::Files(_) => Ok(None),
            SystemConfig::Sql(_) => Ok(None),
            SystemConfig::Http(_) => Ok(None),
            SystemConfig::Tryton(_) => Ok(None),
            SystemConfig::Odoo(_) => Ok(None),
            SystemConfig::Woocommerce(config) => {
                Ok(Some(Arc::new(woocommerce::WooConnector::new(system, config.clone())?)))
            }
            // Medusa's events reach erpsync through a subscriber file: nothing to register.
            SystemConfig::Medusa(_) => Ok(None),
        }
    }

    pub fn build_sink(&self, system: &str) -> Result<Arc<dyn Sink>, ConnectorError> {
        match self {
            SystemConfig::Files(config) => Ok(Arc::new(files::FilesConnector::new(system, config.clone())?)),
            SystemConfig::Sql(config) => Ok(Arc::new(sql::SqlConnector::new(system, config.clone())?)),
            SystemConfig::Http(config) => Ok(Arc::new(http::HttpConnector::new(system, config.clone())?)),
            SystemConfig::Shopify(config) => Ok(Arc::new(shopify::ShopifyConnector::new(system, config.clone())?)),
            SystemConfig::Tryton(config) => Ok(Arc::new(tryton::TrytonConnector::new(system, config.clone())?)),
            SystemConfig::Odoo(config) => Ok(Arc::new(odoo::OdooConnector::new(system, config.clone())?)),
            SystemConfig::Woocommerce(config) => Ok(Arc::new(woocommerce::WooConnector::new(system, config.clone())?)),
            SystemConfig::Medusa(config) => Ok(Arc::new(medusa::MedusaConnector::new(system, config.clone())?)),
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
            name: "shopify",
            description: "Shopify Admin GraphQL API: products (bulk operations for full catalogs), prices, stock, customers, orders, refunds, shipments, webhooks",
            entities: vec![
                EntityKind::Product,
                EntityKind::PriceList,
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
        ConnectorInfo {
            name: "tryton",
            description: "Tryton ERP over JSON-RPC: products, stock, order status, shipments and invoices out; products, customers, orders and cancellations in",
            entities: vec![
                EntityKind::Product,
                EntityKind::StockLevel,
                EntityKind::Customer,
                EntityKind::Order,
                EntityKind::OrderStatus,
                EntityKind::Shipment,
                EntityKind::Document,
            ],
            read: true,
            write: true,
            webhooks: false,
        },
        ConnectorInfo {
            name: "odoo",
            description: "Odoo ERP over JSON-2 (Odoo 19+) or JSON-RPC: reads products, prices, stock, shipments, order status, invoices; writes customers, orders, refunds, cancellations",
            entities: vec![
                EntityKind::Product,
                EntityKind::PriceList,
                EntityKind::StockLevel,
                EntityKind::Customer,
                EntityKind::Order,
                EntityKind::OrderStatus,
                EntityKind::Shipment,
                EntityKind::Document,
                EntityKind::Refund,
            ],
            read: true,
            write: true,
            webhooks: false,
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
        ConnectorInfo {
            name: "medusa",
            description: "Medusa 2 admin REST API with a secret API key: products with variants, prices, stock per location, order status and shipments in; products, customers, orders and order status out; signed events from a subscriber file",
            entities: vec![
                EntityKind::Product,
                EntityKind::PriceList,
                EntityKind::StockLevel,
                EntityKind::Customer,
                EntityKind::Order,
                EntityKind::OrderStatus,
                EntityKind::Shipment,
            ],
            read: true,
            write: true,
            webhooks: true,
        },
    ]
}
