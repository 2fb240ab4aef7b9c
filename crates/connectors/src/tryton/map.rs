//! Pure conversions of the `tryton` connector: Tryton's encoded JSON values both ways, and
//! Tryton rows to and from canonical records. No I/O here.
//!
//! Tryton encodes what JSON lacks as objects tagged by `__class__`: `Decimal` (`"decimal"` as
//! text), `datetime` and `date` (naive, in UTC, as numeric parts), `bytes` (base64). Floats
//! (quantities) are plain numbers; booleans may come back as 1 and 0 from SQLite.

use base64::Engine;
use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};
use erpsync_model::{
    Currency, Document, DocumentKind, DocumentLine, FinancialStatus, FulfillmentStatus, Money, OrderLine, OrderState,
    OrderStatusChange, OrderTotals, Pdf, PriceEntry, PriceList, Product, ProductStatus, Refund, Shipment, ShipmentLine,
    Tracking, Variant,
};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

pub fn encode_decimal(value: Decimal) -> Value {
    json!({ "__class__": "Decimal", "decimal": value.to_string() })
}

pub fn encode_datetime(at: DateTime<Utc>) -> Value {
    json!({
        "__class__": "datetime",
        "year": at.year(), "month": at.month(), "day": at.day(),
        "hour": at.hour(), "minute": at.minute(), "second": at.second(),
        "microsecond": at.timestamp_subsec_micros(),
    })
}

pub fn encode_date(day: NaiveDate) -> Value {
    json!({ "__class__": "date", "year": day.year(), "month": day.month(), "day": day.day() })
}

fn class_of(value: &Value) -> Option<&str> {
    value.get("__class__").and_then(Value::as_str)
}

/// A `Decimal` object, or a number or string (parsed from its text, never through a float).
pub fn decode_decimal(value: &Value) -> Option<Decimal> {
    match value {
        Value::Object(_) if class_of(value) == Some("Decimal") => {
            value.get("decimal").and_then(Value::as_str).and_then(|text| Decimal::from_str(text.trim()).ok())
        }
        Value::Number(number) => {
            let text = number.to_string();
            Decimal::from_str(&text).or_else(|_| Decimal::from_scientific(&text)).ok()
        }
        Value::String(text) => Decimal::from_str(text.trim()).ok(),
        _ => None,
    }
}

/// A `datetime` object (naive UTC).
pub fn decode_datetime(value: &Value) -> Option<DateTime<Utc>> {
    if class_of(value) != Some("datetime") {
        return None;
    }
    let part = |name: &str| value.get(name).and_then(Value::as_u64).unwrap_or(0) as u32;
    let day = NaiveDate::from_ymd_opt(part("year") as i32, part("month"), part("day"))?;
    let time = NaiveTime::from_hms_micro_opt(part("hour"), part("minute"), part("second"), part("microsecond"))?;
    Some(Utc.from_utc_datetime(&day.and_time(time)))
}

/// A `date` object.
pub fn decode_date(value: &Value) -> Option<NaiveDate> {
    if class_of(value) != Some("date") {
        return None;
    }
    let part = |name: &str| value.get(name).and_then(Value::as_u64).unwrap_or(0) as u32;
    NaiveDate::from_ymd_opt(part("year") as i32, part("month"), part("day"))
}

/// A `bytes` object, or a plain string (Tryton renders some reports as text). Tryton's base64
/// is broken into lines of 76 characters, which are joined first.
pub fn decode_bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Object(_) if class_of(value) == Some("bytes") => {
            value.get("base64").and_then(Value::as_str).and_then(|text| {
                let joined: String = text.chars().filter(|character| !character.is_ascii_whitespace()).collect();
                base64::engine::general_purpose::STANDARD.decode(joined).ok()
            })
        }
        Value::String(text) => Some(text.as_bytes().to_vec()),
        _ => None,
    }
}

pub fn text(row: &Value, field: &str) -> Option<String> {
    row.get(field).and_then(Value::as_str).map(str::trim).filter(|text| !text.is_empty()).map(str::to_string)
}

pub fn id(row: &Value, field: &str) -> Option<i64> {
    row.get(field).and_then(Value::as_i64)
}

pub fn ids(row: &Value, field: &str) -> Vec<i64> {
    row.get(field)
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default()
}

/// Booleans as Tryton sends them: `true`/`false`, or 1/0 from SQLite.
pub fn truthy(row: &Value, field: &str) -> bool {
    match row.get(field) {
        Some(Value::Bool(flag)) => *flag,
        Some(Value::Number(number)) => number.as_i64().is_some_and(|n| n != 0),
        _ => false,
    }
}

/// The latest of the row's `create_date` and `write_date`.
pub fn changed_at(row: &Value) -> Option<DateTime<Utc>> {
    let created = row.get("create_date").and_then(decode_datetime);
    let written = row.get("write_date").and_then(decode_datetime);
    created.max(written)
}

/// A date as a time (midnight UTC) for the model's UTC timestamps.
pub fn date_as_time(day: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_time(NaiveTime::MIN))
}

/// How a canonical product becomes a template with variants.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplatePlan {
    /// The template `code`: Tryton builds each variant's code as this prefix plus the variant's
    /// `suffix_code`. Set to the product code when every SKU starts with it, so that the code
    /// comes back on reading; else empty and each suffix is the whole SKU.
    pub prefix: Option<String>,
    pub name: String,
    pub list_price: Decimal,
    pub active: bool,
    pub variants: Vec<VariantPlan>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VariantPlan {
    pub sku: String,
    pub suffix: Option<String>,
    pub description: Option<String>,
    /// The variant's own price, when it differs from the template's list price.
    pub list_price: Option<Decimal>,
}

/// Plans the template for `product` in a company working in `currency`. `prefix` is the code
/// of the existing template on an update (it cannot change without changing every SKU).
pub fn plan_template(
    product: &Product,
    currency: Currency,
    prefix: Option<Option<&str>>,
) -> Result<TemplatePlan, String> {
    for (index, variant) in product.variants.iter().enumerate() {
        for (field, price) in [("price", &variant.price), ("cost", &variant.cost)] {
            if let Some(price) = price
                && price.currency != currency
            {
                return Err(format!(
                    "variants[{index}].{field} is in {}, the company works in {currency}; convert it in the mapping",
                    price.currency
                ));
            }
        }
        if variant.price.as_ref().is_some_and(|price| price.amount.is_sign_negative()) {
            return Err(format!("variants[{index}].price must not be negative"));
        }
    }
    let code = product.code.trim();
    let prefix: Option<String> = match prefix {
        Some(existing) => existing.map(str::to_string),
        None if !code.is_empty() && product.variants.iter().all(|variant| variant.sku.trim().starts_with(code)) => {
            Some(code.to_string())
        }
        None => None,
    };
    let list_price = product
        .variants
        .iter()
        .find_map(|variant| variant.price.as_ref().map(|price| price.amount))
        .unwrap_or(Decimal::ZERO);
    let mut variants = Vec::with_capacity(product.variants.len());
    for variant in &product.variants {
        let sku = variant.sku.trim();
        let suffix = match &prefix {
            Some(prefix) => match sku.strip_prefix(prefix.as_str()) {
                Some(rest) => (!rest.is_empty()).then(|| rest.to_string()),
                None => {
                    return Err(format!(
                        "sku {sku:?} does not start with the template code {prefix:?}; Tryton builds variant codes as template code + suffix"
                    ));
                }
            },
            None => Some(sku.to_string()),
        };
        let own_price = variant.price.as_ref().map(|price| price.amount).filter(|amount| *amount != list_price);
        variants.push(VariantPlan {
            sku: sku.to_string(),
            suffix,
            description: variant.title.clone().filter(|title| !title.trim().is_empty()),
            list_price: own_price,
        });
    }
    Ok(TemplatePlan {
        prefix,
        name: if product.title.trim().is_empty() { code.to_string() } else { product.title.clone() },
        list_price,
        active: product.status != ProductStatus::Archived,
        variants,
    })
}

/// The `product.product` values of a planned variant (create or write).
pub fn variant_values(plan: &VariantPlan, template_price: Decimal) -> Value {
    json!({
        "suffix_code": plan.suffix,
        "description": plan.description,
        "list_price": encode_decimal(plan.list_price.unwrap_or(template_price)),
        "active": true,
    })
}

/// A canonical product from a `product.template` row and its `product.product` rows.
pub fn product_from_rows(template: &Value, variants: &[&Value], currency: Currency) -> Product {
    let mut product = Product {
        code: text(template, "code")
            .or_else(|| variants.first().and_then(|variant| text(variant, "code")))
            .unwrap_or_default(),
        title: text(template, "name").unwrap_or_default(),
        status: if truthy(template, "active") { ProductStatus::Active } else { ProductStatus::Archived },
        updated_at: variants.iter().filter_map(|variant| changed_at(variant)).chain(changed_at(template)).max(),
        ..Product::default()
    };
    if let Some(kind) = text(template, "type") {
        product.product_type = Some(kind);
    }
    product.extra.insert("tryton_template_id", json!(id(template, "id")));
    for row in variants {
        let mut variant = Variant {
            sku: text(row, "code").unwrap_or_default(),
            title: text(row, "description"),
            price: row.get("list_price_used").and_then(decode_decimal).map(|amount| Money::new(amount, currency)),
            track_inventory: text(template, "type").as_deref() == Some("goods"),
            ..Variant::default()
        };
        variant.extra.insert("tryton_product_id", json!(id(row, "id")));
        if !truthy(row, "active") {
            variant.extra.insert("active", json!(false));
        }
        product.variants.push(variant);
    }
    // Tryton without its attribute modules has no options, yet shops need one.
    product.name_variants();
    product
}

/// The canonical state of a `sale.sale` row.
pub fn order_status_from_row(sale: &Value, order_number: String) -> OrderStatusChange {
    let state = match text(sale, "state").as_deref() {
        Some("confirmed" | "processing") => OrderState::Processing,
        Some("done") => OrderState::Completed,
        Some("cancelled") => OrderState::Cancelled,
        _ => OrderState::Open,
    };
    let financial_status = match text(sale, "invoice_state").as_deref() {
        Some("paid") => Some(FinancialStatus::Paid),
        Some("partially paid") => Some(FinancialStatus::PartiallyPaid),
        Some("none" | "pending" | "awaiting payment") => Some(FinancialStatus::Pending),
        _ => None,
    };
    let fulfillment_status = match text(sale, "shipment_state").as_deref() {
        Some("sent") => Some(FulfillmentStatus::Fulfilled),
        Some("partially shipped") => Some(FulfillmentStatus::PartiallyFulfilled),
        Some("none" | "waiting") => Some(FulfillmentStatus::Unfulfilled),
        _ => None,
    };
    let mut change = OrderStatusChange {
        order_number,
        state,
        financial_status,
        fulfillment_status,
        changed_at: changed_at(sale),
        ..OrderStatusChange::default()
    };
    for field in ["state", "invoice_state", "shipment_state", "number"] {
        if let Some(value) = text(sale, field) {
            change.extra.insert(format!("tryton_{field}"), json!(value));
        }
    }
    change.extra.insert("tryton_sale_id", json!(id(sale, "id")));
    change
}

/// The shop's order number of a sale: its `web_id`, else its `reference`, else its number.
pub fn order_number_of(sale: &Value) -> Option<String> {
    text(sale, "web_id").or_else(|| text(sale, "reference")).or_else(|| text(sale, "number"))
}

/// A canonical shipment from a `stock.shipment.out` row and its outgoing moves as
/// `(sku, quantity)`.
pub fn shipment_from_row(
    row: &Value,
    order_number: String,
    location: Option<String>,
    lines: Vec<(String, Decimal)>,
) -> Shipment {
    let state = text(row, "state").unwrap_or_default();
    let shipped = matches!(state.as_str(), "shipped" | "done");
    let mut shipment = Shipment {
        number: text(row, "number").unwrap_or_else(|| format!("shipment-{}", id(row, "id").unwrap_or_default())),
        order_number,
        shipped_at: if shipped { row.get("effective_date").and_then(decode_date).map(date_as_time) } else { None },
        location,
        lines: lines.into_iter().map(|(sku, quantity)| ShipmentLine { sku, quantity }).collect(),
        tracking: text(row, "reference")
            .map(|number| vec![Tracking { carrier: String::new(), number, url: None }])
            .unwrap_or_default(),
        ..Shipment::default()
    };
    shipment.extra.insert("tryton_state", json!(state));
    shipment.extra.insert("tryton_shipment_id", json!(id(row, "id")));
    shipment
}

/// A canonical document from an `account.invoice` row, its lines as
/// `(sku, description, quantity, unit price, amount)` and its rendered report. An invoice with
/// a negative total is a credit note, read with its quantities and amounts negated.
pub fn document_from_row(
    row: &Value,
    currency: Currency,
    order_number: Option<String>,
    lines: Vec<(Option<String>, String, Decimal, Decimal, Decimal)>,
    report: Option<(Vec<u8>, String)>,
) -> Document {
    let total = row.get("total_amount").and_then(decode_decimal).unwrap_or_default();
    let credit_note = total.is_sign_negative() && !total.is_zero();
    // Tryton's credit notes carry negative quantities and amounts; a canonical credit note
    // states what it credits, in positive figures (as Odoo's do).
    let sign = if credit_note { Decimal::NEGATIVE_ONE } else { Decimal::ONE };
    let amount = |field: &str| sign * row.get(field).and_then(decode_decimal).unwrap_or_default();
    let total = amount("total_amount");
    let number = text(row, "number").unwrap_or_default();
    let mut document = Document {
        kind: if credit_note { DocumentKind::CreditNote } else { DocumentKind::Invoice },
        number: number.clone(),
        order_number,
        issued_at: row.get("invoice_date").and_then(decode_date).map(date_as_time),
        currency,
        lines: lines
            .into_iter()
            .map(|(sku, title, quantity, unit_price, total)| DocumentLine {
                sku,
                title,
                quantity: sign * quantity,
                unit_price,
                total: sign * total,
            })
            .collect(),
        totals: OrderTotals {
            subtotal: amount("untaxed_amount"),
            tax_total: amount("tax_amount"),
            total,
            ..OrderTotals::default()
        },
        pdf: None,
        ..Document::default()
    };
    if let Some((bytes, format)) = report {
        let file_name = format!("{}.{format}", number.replace('/', "-"));
        document.pdf = Some(Pdf::Base64 {
            data: base64::engine::general_purpose::STANDARD.encode(bytes),
            file_name: Some(file_name),
        });
        document.extra.insert("report_format", json!(format));
    }
    document.extra.insert("tryton_invoice_id", json!(id(row, "id")));
    if let Some(state) = text(row, "state") {
        document.extra.insert("tryton_state", json!(state));
    }
    document
}

/// The quantity tiers of a price list's lines (`product.price_list.line` rows): 1, then every
/// line's minimum `quantity` above 1, ascending and without repeats. Tryton applies a line
/// when the sold quantity is at least the line's quantity, so prices can only change at these
/// quantities.
pub fn price_tiers(lines: &[Value]) -> Vec<Decimal> {
    let mut tiers = vec![Decimal::ONE];
    for line in lines {
        if let Some(quantity) = line.get("quantity").and_then(decode_decimal).map(|quantity| quantity.normalize())
            && quantity > Decimal::ONE
            && !tiers.contains(&quantity)
        {
            tiers.push(quantity);
        }
    }
    tiers.sort();
    tiers
}

/// The customer group of a Tryton price list named `name`: the group `groups` maps the name to
/// (the connector's `price_list_groups`); else none for the company's default sale price list
/// (the base list); else the list's name.
pub fn customer_group_of(name: &str, is_default: bool, groups: &BTreeMap<String, String>) -> Option<String> {
    match groups.get(name.trim()) {
        Some(group) => Some(group.clone()),
        None if is_default => None,
        None => Some(name.trim().to_string()),
    }
}

/// The prices Tryton computed with one list for one variant: its SKU, and per quantity tier
/// (ascending) the price, `None` where the list gives none.
pub type TierPrices = (String, Vec<(Decimal, Option<Decimal>)>);

/// A canonical price list from a `product.price_list` row, its lines, and the prices Tryton
/// computed with the list for each variant (`sku`) at each quantity tier (`None`: no line of the
/// list applies, or its formula gives no price). A variant gets an entry at its first priced
/// tier and at every later tier where its price changes; a variant the list never prices has
/// none.
pub fn price_list_from_rows(
    list: &Value,
    lines: &[&Value],
    currency: Currency,
    customer_group: Option<String>,
    prices: &[TierPrices],
) -> PriceList {
    let name = text(list, "name").unwrap_or_default();
    let mut entries = Vec::new();
    for (sku, tiers) in prices {
        let mut last: Option<Decimal> = None;
        for (min_quantity, price) in tiers {
            let Some(price) = price.map(|price| price.normalize()) else { continue };
            if last == Some(price) {
                continue;
            }
            last = Some(price);
            entries.push(PriceEntry { sku: sku.clone(), min_quantity: *min_quantity, price });
        }
    }
    let mut price_list = PriceList {
        code: name.clone(),
        name,
        currency,
        customer_group,
        prices_include_tax: truthy(list, "tax_included"),
        entries,
        updated_at: lines.iter().filter_map(|line| changed_at(line)).chain(changed_at(list)).max(),
        ..PriceList::default()
    };
    price_list.extra.insert("tryton_price_list_id", json!(id(list, "id")));
    price_list
}

/// One line of a credit note: `quantity` units credited at `unit_price` each (both positive;
/// Tryton's credit note lines carry the quantity negated). `sku: None` is a line without
/// product (shipping, an amount not itemised).
#[derive(Debug, Clone, PartialEq)]
pub struct CreditLine {
    pub sku: Option<String>,
    pub description: String,
    pub quantity: Decimal,
    pub unit_price: Decimal,
}

/// The lines of the credit note for `refund`, whose amounts add up to the refund's amount:
///
/// - one line per refunded line at its SKU, quantity and refunded amount (its unit price is the
///   amount divided by the quantity, to 4 places like Tryton's unit prices);
/// - when the refund's lines carry no amounts at all (all zero) but money was refunded, the
///   amount less shipping is spread over them in proportion to their value on the sale
///   (`sale_prices`: SKU → the sale's unit price);
/// - the refunded shipping as a line of its own when it is not zero;
/// - a refund without lines credits its amount (less shipping) as one line;
/// - whatever the lines and shipping do not account for (rounding, amounts the shop did not
///   itemise, a fee kept back) as a last line, so the credit note's total is the refund's.
///
/// A refund that paid nothing back (amount zero) has nothing to credit and is refused.
/// Amounts are rounded to the currency's `minor_units` like Tryton rounds line amounts. Errors
/// name the refund's field.
pub fn plan_credit_note(
    refund: &Refund,
    sale_prices: &HashMap<String, Decimal>,
    minor_units: u32,
) -> Result<Vec<CreditLine>, String> {
    let round = |amount: Decimal| amount.round_dp(minor_units);
    if refund.amount.is_sign_negative() && !refund.amount.is_zero() {
        return Err(format!("amount: {} is negative", refund.amount));
    }
    if refund.shipping_amount.is_sign_negative() && !refund.shipping_amount.is_zero() {
        return Err(format!("shipping_amount: {} is negative", refund.shipping_amount));
    }
    if refund.shipping_amount > refund.amount {
        return Err(format!("shipping_amount: {} is more than the amount {}", refund.shipping_amount, refund.amount));
    }
    for (index, line) in refund.lines.iter().enumerate() {
        if line.sku.trim().is_empty() {
            return Err(format!("lines[{index}].sku: a refunded line needs the sku of the sold product"));
        }
        if !sale_prices.contains_key(line.sku.trim()) {
            return Err(format!(
                "lines[{index}].sku: {:?} is not on the sale of order {:?} in tryton",
                line.sku, refund.order_number
            ));
        }
        if line.quantity <= Decimal::ZERO {
            return Err(format!("lines[{index}].quantity: {} is not positive", line.quantity));
        }
        if line.amount.is_sign_negative() && !line.amount.is_zero() {
            return Err(format!("lines[{index}].amount: {} is negative", line.amount));
        }
    }
    if refund.amount.is_zero() {
        return Err("amount: the refund paid nothing back, so there is nothing to credit".into());
    }
    let goods = refund.amount - refund.shipping_amount;
    let mut amounts: Vec<Decimal> = refund.lines.iter().map(|line| round(line.amount)).collect();
    if !refund.lines.is_empty() && amounts.iter().all(Decimal::is_zero) && goods > Decimal::ZERO {
        let weights: Vec<Decimal> =
            refund.lines.iter().map(|line| sale_prices[line.sku.trim()] * line.quantity).collect();
        let total_weight: Decimal = weights.iter().sum();
        let mut left = goods;
        for (index, weight) in weights.iter().enumerate() {
            let share = if index + 1 == weights.len() {
                left
            } else if total_weight.is_zero() {
                round(goods / Decimal::from(weights.len()))
            } else {
                round(goods * weight / total_weight)
            };
            amounts[index] = share;
            left -= share;
        }
    }
    let mut lines = Vec::with_capacity(refund.lines.len() + 2);
    let mut credited = Decimal::ZERO;
    for (line, amount) in refund.lines.iter().zip(amounts) {
        let unit_price = (amount / line.quantity).round_dp(4);
        credited += round(unit_price * line.quantity);
        lines.push(CreditLine {
            sku: Some(line.sku.trim().to_string()),
            description: format!("Refund {}: {}", refund.number, line.sku.trim()),
            quantity: line.quantity,
            unit_price,
        });
    }
    if refund.lines.is_empty() && !goods.is_zero() {
        credited += goods;
        lines.push(CreditLine {
            sku: None,
            description: format!("Refund {} of order {}", refund.number, refund.order_number),
            quantity: Decimal::ONE,
            unit_price: goods,
        });
    }
    if !refund.shipping_amount.is_zero() {
        credited += refund.shipping_amount;
        lines.push(CreditLine {
            sku: None,
            description: format!("Refund {}: shipping", refund.number),
            quantity: Decimal::ONE,
            unit_price: refund.shipping_amount,
        });
    }
    let rest = refund.amount - credited;
    if !rest.is_zero() {
        lines.push(CreditLine {
            sku: None,
            description: format!("Refund {}: amount not itemised by the lines", refund.number),
            quantity: Decimal::ONE,
            unit_price: rest,
        });
    }
    Ok(lines)
}

/// Escapes `\`, `%` and `_` for an exact, case-insensitive match with Tryton's `ilike`.
/// The net unit price of an order line for a Tryton sale line: Tryton's sale prices exclude
/// tax and carry no line discount, so the discount is spread over the quantity and, when the
/// order's prices include tax, the line's tax amounts are taken out. A tax-inclusive line with
/// tax but no tax amounts cannot be converted and is refused.
pub fn net_unit_price(line: &OrderLine, prices_include_tax: bool, order_tax_total: Decimal) -> Result<Decimal, String> {
    if line.quantity.is_zero() {
        return Ok(line.unit_price);
    }
    let mut net_total = line.unit_price * line.quantity - line.discount;
    if prices_include_tax {
        let line_tax: Decimal = line.tax_lines.iter().map(|tax| tax.amount).sum();
        if line.tax_lines.is_empty() && !order_tax_total.is_zero() {
            return Err(format!(
                "line {:?}: the order's prices include tax but the line gives no tax amount to take out (Tryton's sale prices exclude tax)",
                line.sku
            ));
        }
        net_total -= line_tax;
    }
    Ok((net_total / line.quantity).round_dp(4))
}

pub fn like_exact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        if matches!(character, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(character);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use erpsync_model::Record;

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    #[test]
    fn values_round_trip() {
        let at = Utc.with_ymd_and_hms(2026, 11, 26, 14, 6, 29).unwrap() + chrono::Duration::microseconds(901_971);
        assert_eq!(decode_datetime(&encode_datetime(at)), Some(at));
        let raw = json!({"__class__":"datetime","year":2026,"month":11,"day":26,"hour":14,"minute":6,"second":29,"microsecond":901971});
        assert_eq!(decode_datetime(&raw), Some(at));
        assert_eq!(encode_decimal(dec("20.00")), json!({"__class__":"Decimal","decimal":"20.00"}));
        assert_eq!(decode_decimal(&json!({"__class__":"Decimal","decimal":"9.50"})), Some(dec("9.50")));
        assert_eq!(decode_decimal(&json!(0.1)), Some(dec("0.1")), "floats are read from their text");
        let day = NaiveDate::from_ymd_opt(2026, 2, 28).unwrap();
        assert_eq!(decode_date(&encode_date(day)), Some(day));
        assert_eq!(decode_bytes(&json!({"__class__":"bytes","base64":"JVBE\nRi0=\n"})), Some(b"%PDF-".to_vec()));
        assert!(truthy(&json!({"active": 1}), "active") && !truthy(&json!({"active": 0}), "active"));
        assert_eq!(like_exact("a_b%c\\d"), "a\\_b\\%c\\\\d");
    }

    #[test]
    fn variants_are_named_by_description_or_else_by_sku() {
        let template = json!({"id": 1, "name": "Tee", "code": "T-", "type": "goods", "active": true});
        let row = |id: i64, code: &str, description: Option<&str>| json!({"id": id, "code": code, "description": description, "active": true});
        let values = |rows: &[Value]| {
            let refs: Vec<&Value> = rows.iter().collect();
            let product = product_from_rows(&template, &refs, Currency::USD);
            let options: Vec<String> = product.variants.iter().map(|v| v.options[0].value.clone()).collect();
            assert_eq!(product.options[0].values, options);
            options
        };
        assert_eq!(values(&[row(1, "T-S", Some("Small")), row(2, "T-M", Some("Medium"))]), ["Small", "Medium"]);
        // Repeated or missing descriptions cannot tell variants apart: SKUs do.
        assert_eq!(values(&[row(1, "T-S", Some("Tee")), row(2, "T-M", Some("Tee"))]), ["T-S", "T-M"]);
        assert_eq!(values(&[row(1, "T-S", Some("Small")), row(2, "T-M", None)]), ["T-S", "T-M"]);
        // One variant needs no option.
        let single = [row(1, "T-S", Some("Small"))];
        let refs: Vec<&Value> = single.iter().collect();
        assert!(product_from_rows(&template, &refs, Currency::USD).options.is_empty());
    }

    #[test]
    fn net_unit_prices_take_out_discounts_and_included_tax() {
        let line = |price: &str, quantity: &str, discount: &str, taxes: &[&str]| OrderLine {
            sku: "A".into(),
            unit_price: dec(price),
            quantity: dec(quantity),
            discount: dec(discount),
            tax_lines: taxes
                .iter()
                .map(|amount| erpsync_model::TaxLine { title: "VAT".into(), rate: dec("0.2"), amount: dec(amount) })
                .collect(),
            ..OrderLine::default()
        };
        // Tax exclusive: only the discount is spread.
        assert_eq!(net_unit_price(&line("10", "3", "3", &[]), false, dec("5.4")), Ok(dec("9")));
        // Tax inclusive: 2 × 12.00 gross with 4.00 VAT is 10.00 net each.
        assert_eq!(net_unit_price(&line("12", "2", "0", &["4"]), true, dec("4")), Ok(dec("10")));
        // With a discount: (2 × 12.00 − 2.40) gross, 3.60 VAT → 9.00 net each.
        assert_eq!(net_unit_price(&line("12", "2", "2.4", &["3.6"]), true, dec("3.6")), Ok(dec("9")));
        // Tax inclusive, tax on the order, none on the line: cannot be converted.
        let refused = net_unit_price(&line("12", "2", "0", &[]), true, dec("4")).unwrap_err();
        assert!(refused.contains("include tax"), "{refused}");
        // Tax inclusive but no tax at all: the price is already net.
        assert_eq!(net_unit_price(&line("12", "2", "0", &[]), true, Decimal::ZERO), Ok(dec("12")));
    }

    fn product(code: &str, skus: &[(&str, Option<&str>)]) -> Product {
        Product {
            code: code.into(),
            title: "Shirt".into(),
            variants: skus
                .iter()
                .map(|(sku, price)| Variant {
                    sku: sku.to_string(),
                    price: price.map(|price| Money::new(Decimal::from_str(price).unwrap(), Currency::USD)),
                    ..Variant::default()
                })
                .collect(),
            ..Product::default()
        }
    }

    #[test]
    fn plans_template_codes_and_prices() {
        let plan =
            plan_template(&product("TS", &[("TS-S", Some("20")), ("TS-M", Some("22"))]), Currency::USD, None).unwrap();
        assert_eq!(plan.prefix.as_deref(), Some("TS"));
        assert_eq!(plan.list_price, dec("20"));
        assert_eq!(plan.variants[0].suffix.as_deref(), Some("-S"));
        assert_eq!((plan.variants[0].list_price, plan.variants[1].list_price), (None, Some(dec("22"))));
        let simple = plan_template(&product("MUG", &[("MUG", Some("9.5"))]), Currency::USD, None).unwrap();
        assert_eq!((simple.prefix.as_deref(), simple.variants[0].suffix.as_deref()), (Some("MUG"), None));
        let loose = plan_template(&product("X", &[("A-1", None), ("B-1", None)]), Currency::USD, None).unwrap();
        assert_eq!((loose.prefix, loose.variants[1].suffix.as_deref()), (None, Some("B-1")));
        let euros = plan_template(&product("TS", &[("TS-S", Some("20"))]), Currency::EUR, None).unwrap_err();
        assert!(euros.contains("USD") && euros.contains("EUR"), "{euros}");
        let renamed = plan_template(&product("TS", &[("XX-S", None)]), Currency::USD, Some(Some("TS"))).unwrap_err();
        assert!(renamed.contains("does not start with"), "{renamed}");
    }

    #[test]
    fn sale_states_map_to_the_model() {
        let sale = json!({"id": 3, "state": "processing", "invoice_state": "pending", "shipment_state": "sent", "web_id": "1001"});
        let change = order_status_from_row(&sale, order_number_of(&sale).unwrap());
        assert_eq!(change.order_number, "1001");
        assert_eq!(change.state, OrderState::Processing);
        assert_eq!(change.fulfillment_status, Some(FulfillmentStatus::Fulfilled));
        assert_eq!(change.financial_status, Some(FinancialStatus::Pending));
    }

    #[test]
    fn price_lists_get_tiers_groups_and_entries_from_tryton_prices() {
        let lines = [
            json!({"id": 1, "quantity": 10.0, "formula": "unit_price * 0.8"}),
            json!({"id": 2, "quantity": null, "formula": "unit_price * 0.9"}),
            json!({"id": 3, "quantity": 0.5, "formula": "unit_price"}),
            json!({"id": 4, "quantity": 10, "formula": "unit_price * 0.7"}),
            json!({"id": 5, "quantity": 5.0, "formula": "unit_price * 0.85"}),
        ];
        assert_eq!(price_tiers(&lines), [dec("1"), dec("5"), dec("10")]);
        assert_eq!(price_tiers(&[]), [dec("1")]);

        let groups = BTreeMap::from([("Wholesale".to_string(), "B2B-GOLD".to_string())]);
        assert_eq!(customer_group_of("Wholesale", false, &groups).as_deref(), Some("B2B-GOLD"));
        assert_eq!(customer_group_of("Wholesale", true, &groups).as_deref(), Some("B2B-GOLD"), "the mapping wins");
        assert_eq!(customer_group_of("Retail", true, &groups), None, "the base list has no group");
        assert_eq!(customer_group_of(" VIP ", false, &groups).as_deref(), Some("VIP"));

        let list = json!({
            "id": 7, "name": "Wholesale", "tax_included": 0,
            "create_date": {"__class__": "datetime", "year": 2026, "month": 11, "day": 1, "hour": 0, "minute": 0, "second": 0, "microsecond": 0},
        });
        let changed_line = json!({"id": 1, "write_date": {"__class__": "datetime", "year": 2026, "month": 11, "day": 2, "hour": 0, "minute": 0, "second": 0, "microsecond": 0}});
        let price = |text: &str| Some(dec(text));
        let prices = vec![
            // 18 from 1 on, 16 from 10 on: two entries.
            (
                "T-S".to_string(),
                vec![(dec("1"), price("18.0000")), (dec("5"), price("18.0000")), (dec("10"), price("16.0000"))],
            ),
            // Not priced by the list at all: no entry.
            ("MUG".to_string(), vec![(dec("1"), None), (dec("5"), None), (dec("10"), None)]),
            // Priced only from 5 on.
            ("CAP".to_string(), vec![(dec("1"), None), (dec("5"), price("7.5")), (dec("10"), price("7.50"))]),
        ];
        let converted = price_list_from_rows(&list, &[&changed_line], Currency::USD, Some("B2B-GOLD".into()), &prices);
        assert_eq!((converted.code.as_str(), converted.name.as_str()), ("Wholesale", "Wholesale"));
        assert_eq!(converted.customer_group.as_deref(), Some("B2B-GOLD"));
        assert!(!converted.prices_include_tax);
        let entries: Vec<(&str, Decimal, Decimal)> =
            converted.entries.iter().map(|entry| (entry.sku.as_str(), entry.min_quantity, entry.price)).collect();
        assert_eq!(
            entries,
            [("T-S", dec("1"), dec("18")), ("T-S", dec("10"), dec("16")), ("CAP", dec("5"), dec("7.5"))]
        );
        assert_eq!(converted.updated_at, changed_at(&changed_line), "a changed line dates the list");
        assert_eq!(converted.extra.get("tryton_price_list_id"), Some(&json!(7)));
        assert!(Record::PriceList(converted).validate().is_ok());
    }

    fn refund(amount: &str, shipping: &str, lines: &[(&str, &str, &str)]) -> Refund {
        Refund {
            number: "#1001-R5".into(),
            order_number: "#1001".into(),
            currency: Currency::EUR,
            amount: dec(amount),
            shipping_amount: dec(shipping),
            lines: lines
                .iter()
                .map(|(sku, quantity, amount)| erpsync_model::RefundLine {
                    sku: sku.to_string(),
                    quantity: dec(quantity),
                    amount: dec(amount),
                    restock: false,
                })
                .collect(),
            ..Refund::default()
        }
    }

    fn credit_total(lines: &[CreditLine]) -> Decimal {
        lines.iter().map(|line| (line.quantity * line.unit_price).round_dp(2)).sum()
    }

    #[test]
    fn credit_notes_credit_lines_shipping_and_exactly_the_refunded_amount() {
        let sale = HashMap::from([("T-S".to_string(), dec("20")), ("MUG".to_string(), dec("10"))]);
        let shape = |lines: &[CreditLine]| -> Vec<(Option<String>, Decimal, Decimal)> {
            lines.iter().map(|line| (line.sku.clone(), line.quantity, line.unit_price)).collect()
        };
        // Itemised lines and shipping.
        let lines =
            plan_credit_note(&refund("49.90", "4.90", &[("T-S", "2", "40"), ("MUG", "1", "5")]), &sale, 2).unwrap();
        assert_eq!(
            shape(&lines),
            [
                (Some("T-S".into()), dec("2"), dec("20")),
                (Some("MUG".into()), dec("1"), dec("5")),
                (None, dec("1"), dec("4.90")),
            ]
        );
        assert!(lines[2].description.contains("shipping"), "{lines:?}");
        assert_eq!(credit_total(&lines), dec("49.90"));
        // 10.00 for 3: unit prices to 4 places, the rounding cent on a line of its own.
        let lines = plan_credit_note(&refund("10", "0", &[("MUG", "3", "10")]), &sale, 2).unwrap();
        assert_eq!(lines[0].unit_price, dec("3.3333"));
        assert_eq!(credit_total(&lines), dec("10"), "{lines:?}");
        // No lines: the amount as one line, shipping apart.
        let lines = plan_credit_note(&refund("30", "5", &[]), &sale, 2).unwrap();
        assert_eq!(shape(&lines), [(None, dec("1"), dec("25")), (None, dec("1"), dec("5"))]);
        assert!(lines[0].description.contains("#1001-R5") && lines[0].description.contains("#1001"));
        // Lines without amounts (the shop did not itemise them): the money spread by sale value.
        let lines = plan_credit_note(&refund("24", "0", &[("T-S", "1", "0"), ("MUG", "1", "0")]), &sale, 2).unwrap();
        assert_eq!(
            shape(&lines),
            [(Some("T-S".into()), dec("1"), dec("16")), (Some("MUG".into()), dec("1"), dec("8"))]
        );
        // More refunded than the lines say: the rest on its own line.
        let lines = plan_credit_note(&refund("45", "0", &[("T-S", "2", "40")]), &sale, 2).unwrap();
        assert_eq!(shape(&lines)[1], (None, dec("1"), dec("5")));
        assert_eq!(credit_total(&lines), dec("45"));
    }

    #[test]
    fn credit_notes_refuse_bad_refunds_naming_the_field() {
        let sale = HashMap::from([("T-S".to_string(), dec("20"))]);
        let refused = |refund: Refund| plan_credit_note(&refund, &sale, 2).unwrap_err();
        assert!(
            refused(refund("10", "0", &[("OTHER", "1", "10")]))
                .starts_with("lines[0].sku: \"OTHER\" is not on the sale")
        );
        assert!(refused(refund("10", "0", &[(" ", "1", "10")])).starts_with("lines[0].sku"));
        assert!(refused(refund("10", "0", &[("T-S", "0", "10")])).starts_with("lines[0].quantity"));
        assert!(refused(refund("10", "0", &[("T-S", "1", "-10")])).starts_with("lines[0].amount"));
        assert!(refused(refund("10", "12", &[])).starts_with("shipping_amount"));
        assert!(refused(refund("0", "0", &[("T-S", "1", "0")])).starts_with("amount"));
        assert!(refused(refund("-1", "0", &[])).starts_with("amount"));
    }

    #[test]
    fn credit_notes_are_read_in_positive_figures() {
        let row = json!({
            "id": 4, "number": "INV/2026/2", "state": "posted",
            "untaxed_amount": {"__class__": "Decimal", "decimal": "-24.00"},
            "tax_amount": {"__class__": "Decimal", "decimal": "0"},
            "total_amount": {"__class__": "Decimal", "decimal": "-24.00"},
        });
        let lines = vec![
            (Some("T-S".to_string()), "Refund R1: T-S".to_string(), dec("-1"), dec("29"), dec("-29")),
            (None, "Refund R1: amount not itemised by the lines".to_string(), dec("-1"), dec("-5"), dec("5")),
        ];
        let document = document_from_row(&row, Currency::EUR, Some("#1001".into()), lines, None);
        assert_eq!(document.kind, DocumentKind::CreditNote);
        assert_eq!((document.totals.subtotal, document.totals.total), (dec("24"), dec("24")));
        assert_eq!((document.lines[0].quantity, document.lines[0].total), (dec("1"), dec("29")));
        assert_eq!((document.lines[1].quantity, document.lines[1].total), (dec("1"), dec("-5")), "a fee kept back");
        assert!(Record::Document(document).validate().is_ok());
    }
}
