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

/// The option that tells variants apart when a system has none (an ERP whose variants are
/// separate articles, a file without option columns).
pub const VARIANT_OPTION: &str = "Variant";

impl Product {
    /// Several variants and no options at all: see [`Product::name_variants`].
    pub fn needs_variant_option(&self) -> bool {
        self.variants.len() > 1
            && self.options.is_empty()
            && self.variants.iter().all(|variant| variant.options.is_empty())
    }

    /// Gives a product with several variants and no options at all one option,
    /// [`VARIANT_OPTION`], valued by the variants' titles when all are present and distinct,
    /// else by their SKUs: shops need option values to tell variants apart. Returns whether it
    /// changed anything.
    pub fn name_variants(&mut self) -> bool {
        if !self.needs_variant_option() {
            return false;
        }
        let titles: Vec<&str> =
            self.variants.iter().filter_map(|variant| variant.title.as_deref().map(str::trim)).collect();
        let distinct: std::collections::HashSet<&str> = titles.iter().copied().collect();
        let use_titles = titles.len() == self.variants.len()
            && distinct.len() == titles.len()
            && titles.iter().all(|title| !title.is_empty());
        let mut values = Vec::with_capacity(self.variants.len());
        for variant in &mut self.variants {
            let value = match &variant.title {
                Some(title) if use_titles => title.trim().to_string(),
                _ => variant.sku.trim().to_string(),
            };
            variant.options = vec![OptionValue { option: VARIANT_OPTION.into(), value: value.clone() }];
            values.push(value);
        }
        self.options = vec![ProductOption { name: VARIANT_OPTION.into(), values }];
        true
    }
}
