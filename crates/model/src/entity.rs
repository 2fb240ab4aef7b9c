//! The kinds of business object erpsync moves.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Product,
    PriceList,
    StockLevel,
    Customer,
    Order,
    OrderStatus,
    Shipment,
    Document,
    Refund,
}

impl EntityKind {
    pub const ALL: [EntityKind; 9] = [
        EntityKind::Product,
        EntityKind::PriceList,
        EntityKind::StockLevel,
        EntityKind::Customer,
        EntityKind::Order,
        EntityKind::OrderStatus,
        EntityKind::Shipment,
        EntityKind::Document,
        EntityKind::Refund,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            EntityKind::Product => "product",
            EntityKind::PriceList => "price_list",
            EntityKind::StockLevel => "stock_level",
            EntityKind::Customer => "customer",
            EntityKind::Order => "order",
            EntityKind::OrderStatus => "order_status",
            EntityKind::Shipment => "shipment",
            EntityKind::Document => "document",
            EntityKind::Refund => "refund",
        }
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown entity {0:?}: expected one of product, price_list, stock_level, customer, order, order_status, shipment, document, refund"
)]
pub struct UnknownEntity(pub String);

impl FromStr for EntityKind {
    type Err = UnknownEntity;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        EntityKind::ALL.into_iter().find(|kind| kind.as_str() == text).ok_or_else(|| UnknownEntity(text.to_string()))
    }
}
