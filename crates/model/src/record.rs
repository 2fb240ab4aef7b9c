//! `Record`: one canonical entity of any kind, and its natural key.

use crate::{
    Customer, Document, EntityKind, Order, OrderStatusChange, PriceList, Product, Refund, Shipment, StockLevel,
};
use serde::{Deserialize, Serialize};

/// Any canonical entity. Serialized with an `entity` tag: `{"entity": "product", ...}`.
// Orders are much larger than stock levels; records live in pages of a few hundred and are
// matched on everywhere, so plain variants are worth more than the memory boxing would save.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "entity", rename_all = "snake_case")]
pub enum Record {
    Product(Product),
    PriceList(PriceList),
    StockLevel(StockLevel),
    Customer(Customer),
    Order(Order),
    OrderStatus(OrderStatusChange),
    Shipment(Shipment),
    Document(Document),
    Refund(Refund),
}

impl Record {
    /// The record of a known kind from its serialized form, with or without its `entity` tag.
    ///
    /// Much faster than deserializing a `Record` from a `Value`: serde buffers an internally
    /// tagged enum's whole content before choosing the variant, and this goes straight to the
    /// variant's type. A tag naming another kind is an error.
    pub fn from_value_of(kind: EntityKind, mut value: serde_json::Value) -> Result<Record, serde_json::Error> {
        use serde::de::Error as _;
        if let Some(map) = value.as_object_mut()
            && let Some(tag) = map.remove("entity")
            && tag.as_str() != Some(kind.as_str())
        {
            return Err(serde_json::Error::custom(format!("entity {tag} where {} was expected", kind.as_str())));
        }
        Ok(match kind {
            EntityKind::Product => Record::Product(serde_json::from_value(value)?),
            EntityKind::PriceList => Record::PriceList(serde_json::from_value(value)?),
            EntityKind::StockLevel => Record::StockLevel(serde_json::from_value(value)?),
            EntityKind::Customer => Record::Customer(serde_json::from_value(value)?),
            EntityKind::Order => Record::Order(serde_json::from_value(value)?),
            EntityKind::OrderStatus => Record::OrderStatus(serde_json::from_value(value)?),
            EntityKind::Shipment => Record::Shipment(serde_json::from_value(value)?),
            EntityKind::Document => Record::Document(serde_json::from_value(value)?),
            EntityKind::Refund => Record::Refund(serde_json::from_value(value)?),
        })
    }

    /// The record's own custom fields (`extra` at its top level).
    pub fn extra_mut(&mut self) -> &mut crate::Extra {
        match self {
            Record::Product(product) => &mut product.extra,
            Record::PriceList(list) => &mut list.extra,
            Record::StockLevel(stock) => &mut stock.extra,
            Record::Customer(customer) => &mut customer.extra,
            Record::Order(order) => &mut order.extra,
            Record::OrderStatus(change) => &mut change.extra,
            Record::Shipment(shipment) => &mut shipment.extra,
            Record::Document(document) => &mut document.extra,
            Record::Refund(refund) => &mut refund.extra,
        }
    }

    pub fn kind(&self) -> EntityKind {
        match self {
            Record::Product(_) => EntityKind::Product,
            Record::PriceList(_) => EntityKind::PriceList,
            Record::StockLevel(_) => EntityKind::StockLevel,
            Record::Customer(_) => EntityKind::Customer,
            Record::Order(_) => EntityKind::Order,
            Record::OrderStatus(_) => EntityKind::OrderStatus,
            Record::Shipment(_) => EntityKind::Shipment,
            Record::Document(_) => EntityKind::Document,
            Record::Refund(_) => EntityKind::Refund,
        }
    }

    /// The key by which the same record is recognised in any system when no link exists yet:
    /// product code (SKU of a simple product), price list code, SKU at location, customer number
    /// or lower-cased e-mail, order number, shipment number, document kind and number, refund
    /// number. `None` when the record has none, which validation reports.
    pub fn natural_key(&self) -> Option<String> {
        fn non_empty(text: &str) -> Option<String> {
            let trimmed = text.trim();
            (!trimmed.is_empty()).then(|| trimmed.to_string())
        }
        match self {
            Record::Product(product) => non_empty(&product.code)
                .or_else(|| product.variants.first().and_then(|variant| non_empty(&variant.sku))),
            Record::PriceList(list) => non_empty(&list.code),
            Record::StockLevel(stock) => {
                let sku = non_empty(&stock.sku)?;
                Some(format!("{sku}@{}", stock.location.trim()))
            }
            Record::Customer(customer) => customer
                .number
                .as_deref()
                .and_then(non_empty)
                .or_else(|| customer.email.as_deref().and_then(non_empty).map(|email| email.to_lowercase())),
            Record::Order(order) => non_empty(&order.number),
            Record::OrderStatus(change) => {
                let number = non_empty(&change.order_number)?;
                let at = change.changed_at.map(|at| at.to_rfc3339()).unwrap_or_default();
                Some(format!("{number}#{at}"))
            }
            Record::Shipment(shipment) => non_empty(&shipment.number),
            Record::Document(document) => {
                non_empty(&document.number).map(|number| format!("{}:{number}", document.kind.as_str()))
            }
            Record::Refund(refund) => non_empty(&refund.number),
        }
    }

    /// When the record last changed in its source, if the source says.
    pub fn updated_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        match self {
            Record::Product(product) => product.updated_at,
            Record::PriceList(list) => list.updated_at,
            Record::StockLevel(stock) => stock.updated_at,
            Record::Customer(customer) => customer.updated_at,
            Record::Order(order) => order.updated_at,
            Record::OrderStatus(change) => change.changed_at,
            Record::Shipment(shipment) => shipment.shipped_at,
            Record::Document(document) => document.issued_at,
            Record::Refund(refund) => refund.refunded_at,
        }
    }

    /// The record's hash for change detection: see [`crate::content_hash`].
    pub fn content_hash(&self) -> crate::ContentHash {
        crate::content_hash(self)
    }
}
