//! Orders (what the customer paid and the order's states), order status changes and refunds.

use crate::{Address, Currency, Extra};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// An order as the shop took it. The shop's order number is the natural key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Order {
    pub number: String,
    pub placed_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub currency: Currency,
    /// Whether line and shipping prices include tax. Explicit, never guessed.
    pub prices_include_tax: bool,
    /// Whether totals were rounded per line or once on the total.
    pub rounding: Rounding,
    pub customer: OrderParty,
    pub billing_address: Option<Address>,
    pub shipping_address: Option<Address>,
    pub lines: Vec<OrderLine>,
    pub discounts: Vec<Discount>,
    pub shipping_lines: Vec<ShippingLine>,
    pub tax_lines: Vec<TaxLine>,
    pub totals: OrderTotals,
    pub payments: Vec<Payment>,
    pub financial_status: FinancialStatus,
    pub fulfillment_status: FulfillmentStatus,
    pub cancellation: Option<Cancellation>,
    pub note: Option<String>,
    pub sales_channel: Option<String>,
    pub extra: Extra,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    #[default]
    PerLine,
    PerTotal,
}

/// Who ordered: enough to find or create the customer in the target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrderParty {
    pub email: Option<String>,
    pub number: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
    pub phone: Option<String>,
    pub group: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrderLine {
    /// The shop's own line id, when it has one.
    pub line_id: Option<String>,
    pub sku: String,
    pub title: String,
    #[serde(with = "crate::decimal")]
    pub quantity: Decimal,
    #[serde(with = "crate::decimal")]
    pub unit_price: Decimal,
    /// Discount allocated to this line, as a positive amount.
    #[serde(with = "crate::decimal")]
    pub discount: Decimal,
    pub tax_lines: Vec<TaxLine>,
    /// Line total after discount, in the order's tax convention.
    #[serde(with = "crate::decimal")]
    pub total: Decimal,
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaxLine {
    pub title: String,
    /// Rate as a fraction: 0.19 for 19 %.
    #[serde(with = "crate::decimal")]
    pub rate: Decimal,
    #[serde(with = "crate::decimal")]
    pub amount: Decimal,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Discount {
    pub code: Option<String>,
    pub title: String,
    #[serde(with = "crate::decimal")]
    pub amount: Decimal,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShippingLine {
    /// The shop's method code; mapped to the ERP's carrier or delivery method.
    pub method: String,
    pub title: String,
    #[serde(with = "crate::decimal")]
    pub price: Decimal,
    pub tax_lines: Vec<TaxLine>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrderTotals {
    #[serde(with = "crate::decimal")]
    pub subtotal: Decimal,
    #[serde(with = "crate::decimal")]
    pub discount_total: Decimal,
    #[serde(with = "crate::decimal")]
    pub shipping_total: Decimal,
    #[serde(with = "crate::decimal")]
    pub tax_total: Decimal,
    #[serde(with = "crate::decimal")]
    pub total: Decimal,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Payment {
    pub gateway: String,
    pub method: Option<String>,
    #[serde(with = "crate::decimal")]
    pub amount: Decimal,
    pub reference: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinancialStatus {
    #[default]
    Pending,
    Authorized,
    PartiallyPaid,
    Paid,
    PartiallyRefunded,
    Refunded,
    Voided,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FulfillmentStatus {
    #[default]
    Unfulfilled,
    PartiallyFulfilled,
    Fulfilled,
    Returned,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cancellation {
    pub cancelled_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
}

/// A change of an order's state, flowing back from the ERP to the shop (or the other way).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrderStatusChange {
    pub order_number: String,
    pub state: OrderState,
    pub financial_status: Option<FinancialStatus>,
    pub fulfillment_status: Option<FulfillmentStatus>,
    pub changed_at: Option<DateTime<Utc>>,
    pub note: Option<String>,
    pub extra: Extra,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    #[default]
    Open,
    Processing,
    OnHold,
    Completed,
    Cancelled,
}

/// Money returned to the customer for an order, with the lines and quantities it covers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Refund {
    /// The refund's own reference in its source system.
    pub number: String,
    pub order_number: String,
    pub refunded_at: Option<DateTime<Utc>>,
    pub currency: Currency,
    #[serde(with = "crate::decimal")]
    pub amount: Decimal,
    #[serde(with = "crate::decimal")]
    pub shipping_amount: Decimal,
    pub reason: Option<String>,
    pub lines: Vec<RefundLine>,
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RefundLine {
    pub sku: String,
    #[serde(with = "crate::decimal")]
    pub quantity: Decimal,
    #[serde(with = "crate::decimal")]
    pub amount: Decimal,
    /// Whether the returned goods go back into stock.
    pub restock: bool,
}
