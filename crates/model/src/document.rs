//! Documents: invoices, credit notes and delivery notes, with their PDF.

use crate::{Currency, Extra, OrderTotals};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Document {
    pub kind: DocumentKind,
    /// The document number; with `kind`, the natural key.
    pub number: String,
    pub order_number: Option<String>,
    pub issued_at: Option<DateTime<Utc>>,
    pub currency: Currency,
    pub lines: Vec<DocumentLine>,
    pub totals: OrderTotals,
    pub pdf: Option<Pdf>,
    pub extra: Extra,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    #[default]
    Invoice,
    CreditNote,
    DeliveryNote,
}

impl DocumentKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            DocumentKind::Invoice => "invoice",
            DocumentKind::CreditNote => "credit_note",
            DocumentKind::DeliveryNote => "delivery_note",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DocumentLine {
    pub sku: Option<String>,
    pub title: String,
    #[serde(with = "crate::decimal")]
    pub quantity: Decimal,
    #[serde(with = "crate::decimal")]
    pub unit_price: Decimal,
    #[serde(with = "crate::decimal")]
    pub total: Decimal,
}

/// The rendered document: its bytes (base64 in JSON) or where to fetch them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Pdf {
    Base64 { data: String, file_name: Option<String> },
    Url { url: String },
}
