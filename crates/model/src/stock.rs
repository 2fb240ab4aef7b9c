//! Stock levels per SKU and location.

use crate::Extra;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StockLevel {
    pub sku: String,
    /// Warehouse or location code, as named in the source system.
    pub location: String,
    /// Quantity available to sell. Decimal because ERPs stock by weight and length too.
    #[serde(with = "crate::decimal")]
    pub available: Decimal,
    #[serde(with = "crate::decimal::option")]
    pub on_hand: Option<Decimal>,
    pub updated_at: Option<DateTime<Utc>>,
    pub extra: Extra,
}
