//! Shipments of an order, with lines and tracking.

use crate::Extra;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Shipment {
    /// The shipment's (delivery's) number in its source system; the natural key.
    pub number: String,
    pub order_number: String,
    pub shipped_at: Option<DateTime<Utc>>,
    pub location: Option<String>,
    pub lines: Vec<ShipmentLine>,
    pub tracking: Vec<Tracking>,
    pub notify_customer: bool,
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShipmentLine {
    pub sku: String,
    #[serde(with = "crate::decimal")]
    pub quantity: Decimal,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tracking {
    pub carrier: String,
    pub number: String,
    pub url: Option<String>,
}
