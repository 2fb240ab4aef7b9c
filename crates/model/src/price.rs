//! Price lists: per customer group, quantity tiers, validity dates.

use crate::{Currency, Extra};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PriceList {
    /// The natural key of the list (`RETAIL-EUR`, `B2B-GOLD`).
    pub code: String,
    pub name: String,
    pub currency: Currency,
    /// The customer group the list applies to; `None` for the base list.
    pub customer_group: Option<String>,
    pub prices_include_tax: bool,
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_to: Option<DateTime<Utc>>,
    pub entries: Vec<PriceEntry>,
    pub updated_at: Option<DateTime<Utc>>,
    pub extra: Extra,
}

/// One price for one SKU from a minimum quantity on (a tier when `min_quantity > 1`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PriceEntry {
    pub sku: String,
    #[serde(with = "crate::decimal")]
    pub min_quantity: Decimal,
    #[serde(with = "crate::decimal")]
    pub price: Decimal,
}
