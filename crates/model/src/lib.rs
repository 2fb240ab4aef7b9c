//! Canonical business entities of erpsync: the typed model every connector translates to and from.
//!
//! This crate is pure: no I/O, no async. Money is [`Money`] (a `Decimal` and an ISO 4217
//! [`Currency`]), time is UTC, and every entity carries an [`Extra`] object for fields the model
//! does not name. [`content_hash`] gives a hash that depends only on content, and
//! [`envelope`] is the versioned serialized form that the store persists.

pub mod checkpoint;
pub mod customer;
pub mod decimal;
pub mod document;
pub mod entity;
pub mod envelope;
pub mod extra;
pub mod hash;
pub mod money;
pub mod order;
pub mod price;
pub mod product;
pub mod record;
pub mod shipment;
pub mod stock;
pub mod validate;

pub use checkpoint::Checkpoint;
pub use customer::{Address, AddressKind, Customer};
pub use document::{Document, DocumentKind, DocumentLine, Pdf};
pub use entity::EntityKind;
pub use envelope::{EnvelopeError, SCHEMA_VERSION};
pub use extra::Extra;
pub use hash::{ContentHash, content_hash};
pub use money::{Currency, CurrencyError, Money};
pub use order::{
    Cancellation, Discount, FinancialStatus, FulfillmentStatus, Order, OrderLine, OrderParty, OrderState,
    OrderStatusChange, OrderTotals, Payment, Refund, RefundLine, Rounding, ShippingLine, TaxLine,
};
pub use price::{PriceEntry, PriceList};
pub use product::{
    Image, OptionValue, Product, ProductAttribute, ProductOption, ProductStatus, VARIANT_OPTION, Variant, Weight,
};
pub use record::Record;
pub use shipment::{Shipment, ShipmentLine, Tracking};
pub use stock::StockLevel;
pub use validate::{ValidationError, ValidationErrors};
