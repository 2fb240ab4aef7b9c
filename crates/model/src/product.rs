//! Products with variants, options, images, attributes and categories.

use crate::{Extra, Money};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A product. A simple product is a product with one variant; variants are keyed by SKU.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Product {
    /// The product's own reference (style number, parent SKU); the natural key. For a simple
    /// product it usually equals the variant's SKU.
    pub code: String,
    pub title: String,
    pub description: Option<String>,
    pub status: ProductStatus,
    pub vendor: Option<String>,
    pub product_type: Option<String>,
    pub tags: Vec<String>,
    /// Category paths, levels separated by `/` (`Men/Shoes/Sneakers`).
    pub categories: Vec<String>,
    pub options: Vec<ProductOption>,
    pub variants: Vec<Variant>,
    pub images: Vec<Image>,
    /// Specifications: material, size chart, any name and value the catalog carries.
    pub attributes: Vec<ProductAttribute>,
    pub tax_class: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
    pub extra: Extra,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProductStatus {
    #[default]
    Active,
    Draft,
    Archived,
}

/// An option axis of a product (`Size` with values `S`, `M`, `L`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProductOption {
    pub name: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Variant {
    pub sku: String,
    pub title: Option<String>,
    /// GTIN / EAN / UPC.
    pub barcode: Option<String>,
    pub options: Vec<OptionValue>,
    pub price: Option<Money>,
    pub compare_at_price: Option<Money>,
    pub cost: Option<Money>,
    /// Whether `price` includes tax. Explicit, never guessed.
    pub price_includes_tax: bool,
    pub weight: Option<Weight>,
    pub track_inventory: bool,
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptionValue {
    pub option: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Weight {
    #[serde(with = "crate::decimal")]
    pub value: Decimal,
    /// `g`, `kg`, `lb` or `oz`.
    pub unit: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Image {
    pub url: String,
    pub alt: Option<String>,
    pub position: u32,
    /// SKUs of the variants this image shows; empty for the whole product.
    pub variant_skus: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProductAttribute {
    pub name: String,
    pub value: String,
}
