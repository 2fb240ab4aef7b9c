//! Validation of canonical records: what a target may rely on before a write is attempted.

use crate::{Record, Variant};
use rust_decimal::Decimal;
use std::collections::HashSet;
use std::fmt;

/// One problem with a record, with the field path it concerns (`variants[2].sku`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in one record, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&texts.join("; "))
    }
}

#[derive(Default)]
struct Collector(Vec<ValidationError>);

/// A field path, spelt out only when a check fails: valid records, nearly all of them, pay
/// for no formatting (building `variants[2].sku` for every check was a tenth of a catalog
/// re-sync).
trait FieldPath {
    fn spell(self) -> String;
}

impl FieldPath for &str {
    fn spell(self) -> String {
        self.to_string()
    }
}

impl<F: FnOnce() -> String> FieldPath for F {
    fn spell(self) -> String {
        self()
    }
}

impl Collector {
    fn push(&mut self, field: impl FieldPath, message: impl Into<String>) {
        self.0.push(ValidationError { field: field.spell(), message: message.into() });
    }

    fn required(&mut self, field: impl FieldPath, value: &str) {
        if value.trim().is_empty() {
            self.push(field, "is required");
        }
    }

    fn not_negative(&mut self, field: impl FieldPath, value: Decimal) {
        if value.is_sign_negative() && !value.is_zero() {
            self.push(field, format!("must not be negative, found {value}"));
        }
    }

    fn positive(&mut self, field: impl FieldPath, value: Decimal) {
        if value <= Decimal::ZERO {
            self.push(field, format!("must be greater than zero, found {value}"));
        }
    }
}

impl Record {
    /// Checks what every target relies on: natural keys present, no negative quantities or
    /// prices, unique SKUs within a product, one currency per price.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = Collector::default();
        match self {
            Record::Product(product) => {
                if product.code.trim().is_empty() && product.variants.is_empty() {
                    errors.push("code", "is required (or at least one variant with a sku)");
                }
                if product.variants.is_empty() {
                    errors.push("variants", "a product needs at least one variant");
                }
                // Most products have a few variants: comparing with the earlier ones is cheaper
                // than a set, which only pays off for large products.
                let mut seen = (product.variants.len() > 16).then(HashSet::new);
                for (index, variant) in product.variants.iter().enumerate() {
                    validate_variant(&mut errors, index, variant);
                    let sku = variant.sku.trim();
                    let repeated = !sku.is_empty()
                        && match seen.as_mut() {
                            Some(seen) => !seen.insert(sku),
                            None => product.variants[..index].iter().any(|earlier| earlier.sku.trim() == sku),
                        };
                    if repeated {
                        errors.push(
                            || format!("variants[{index}].sku"),
                            format!("duplicate sku {:?} in one product", variant.sku),
                        );
                    }
                }
            }
            Record::PriceList(list) => {
                errors.required("code", &list.code);
                for (index, entry) in list.entries.iter().enumerate() {
                    errors.required(|| format!("entries[{index}].sku"), &entry.sku);
                    errors.not_negative(|| format!("entries[{index}].price"), entry.price);
                    errors.not_negative(|| format!("entries[{index}].min_quantity"), entry.min_quantity);
                }
                if let (Some(from), Some(to)) = (list.valid_from, list.valid_to)
                    && to < from
                {
                    errors.push("valid_to", "is before valid_from");
                }
            }
            Record::StockLevel(stock) => {
                errors.required("sku", &stock.sku);
                errors.required("location", &stock.location);
                errors.not_negative("available", stock.available);
            }
            Record::Customer(customer) => {
                let has_number = customer.number.as_deref().is_some_and(|n| !n.trim().is_empty());
                let has_email = customer.email.as_deref().is_some_and(|e| !e.trim().is_empty());
                if !has_number && !has_email {
                    errors.push("email", "a customer needs an e-mail or a customer number");
                }
                if let Some(email) = customer.email.as_deref().filter(|e| !e.trim().is_empty())
                    && !email.contains('@')
                {
                    errors.push("email", format!("{email:?} is not an e-mail address"));
                }
                for (index, address) in customer.addresses.iter().enumerate() {
                    if address.country.trim().len() != 2 {
                        errors.push(
                            || format!("addresses[{index}].country"),
                            format!("expected an ISO 3166 two-letter code, found {:?}", address.country),
                        );
                    }
                }
            }
            Record::Order(order) => {
                errors.required("number", &order.number);
                if order.lines.is_empty() {
                    errors.push("lines", "an order needs at least one line");
                }
                for (index, line) in order.lines.iter().enumerate() {
                    errors.required(|| format!("lines[{index}].sku"), &line.sku);
                    errors.positive(|| format!("lines[{index}].quantity"), line.quantity);
                    errors.not_negative(|| format!("lines[{index}].unit_price"), line.unit_price);
                }
                errors.not_negative("totals.total", order.totals.total);
            }
            Record::OrderStatus(change) => errors.required("order_number", &change.order_number),
            Record::Shipment(shipment) => {
                errors.required("number", &shipment.number);
                errors.required("order_number", &shipment.order_number);
                for (index, line) in shipment.lines.iter().enumerate() {
                    errors.required(|| format!("lines[{index}].sku"), &line.sku);
                    errors.positive(|| format!("lines[{index}].quantity"), line.quantity);
                }
            }
            Record::Document(document) => {
                errors.required("number", &document.number);
                for (index, line) in document.lines.iter().enumerate() {
                    errors.not_negative(|| format!("lines[{index}].quantity"), line.quantity);
                }
            }
            Record::Refund(refund) => {
                errors.required("number", &refund.number);
                errors.required("order_number", &refund.order_number);
                errors.not_negative("amount", refund.amount);
                for (index, line) in refund.lines.iter().enumerate() {
                    errors.positive(|| format!("lines[{index}].quantity"), line.quantity);
                }
            }
        }
        if errors.0.is_empty() { Ok(()) } else { Err(ValidationErrors(errors.0)) }
    }
}

fn validate_variant(errors: &mut Collector, index: usize, variant: &Variant) {
    errors.required(|| format!("variants[{index}].sku"), &variant.sku);
    for (field, price) in
        [("price", &variant.price), ("compare_at_price", &variant.compare_at_price), ("cost", &variant.cost)]
    {
        if let Some(price) = price {
            errors.not_negative(|| format!("variants[{index}].{field}"), price.amount);
        }
    }
    if let Some(weight) = &variant.weight {
        errors.not_negative(|| format!("variants[{index}].weight.value"), weight.value);
        if !matches!(weight.unit.as_str(), "g" | "kg" | "lb" | "oz") {
            errors.push(
                || format!("variants[{index}].weight.unit"),
                format!("expected g, kg, lb or oz, found {:?}", weight.unit),
            );
        }
    }
}
