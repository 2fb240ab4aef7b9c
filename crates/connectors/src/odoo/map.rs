//! Pure conversions of the `odoo` connector: Odoo's wire values (naive UTC datetimes with
//! second precision, `[id, "name"]` many2one pairs, floats, `false` for empty) and its records
//! to and from the canonical model.

use chrono::{DateTime, NaiveDateTime, Utc};
use erpsync_model::{Address, AddressKind, Currency, Customer, Extra, FinancialStatus, FulfillmentStatus, OrderState};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use std::str::FromStr;

/// Odoo's datetime format on the wire: UTC without a zone, to the second.
pub const DATETIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

pub fn parse_datetime(value: &Value) -> Option<DateTime<Utc>> {
    let text = value.as_str()?;
    NaiveDateTime::parse_from_str(text, DATETIME_FORMAT)
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))
        .ok()
        .map(|naive| naive.and_utc())
}

/// A date field (`2024-05-01`) as midnight UTC.
pub fn parse_date(value: &Value) -> Option<DateTime<Utc>> {
    let text = value.as_str()?;
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|at| at.and_utc())
}

pub fn format_datetime(at: DateTime<Utc>) -> String {
    at.format(DATETIME_FORMAT).to_string()
}

/// A text field: Odoo reads an empty one as `false`.
pub fn text(value: Option<&Value>) -> Option<String> {
    match value {
        Some(Value::String(text)) if !text.trim().is_empty() => Some(text.clone()),
        _ => None,
    }
}

/// The id of a many2one (`[7, "Name"]`, or a bare id).
pub fn many2one_id(value: Option<&Value>) -> Option<i64> {
    match value {
        Some(Value::Array(pair)) => pair.first().and_then(Value::as_i64),
        Some(Value::Number(id)) => id.as_i64(),
        _ => None,
    }
}

/// The display name of a many2one.
pub fn many2one_name(value: Option<&Value>) -> Option<String> {
    match value {
        Some(Value::Array(pair)) => pair.get(1).and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// The ids of an x2many field.
pub fn ids(value: Option<&Value>) -> Vec<i64> {
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_i64).collect(),
        _ => Vec::new(),
    }
}

/// A float or integer as a decimal, through its shortest decimal text so that `19.99` stays
/// `19.99`; `false` and absent are zero.
pub fn decimal(value: Option<&Value>) -> Decimal {
    match value {
        Some(Value::Number(number)) => {
            let text = number.to_string();
            Decimal::from_str(&text).or_else(|_| Decimal::from_scientific(&text)).unwrap_or_default().normalize()
        }
        _ => Decimal::ZERO,
    }
}

/// A decimal as the float Odoo's float fields take.
pub fn float(amount: Decimal) -> Value {
    use rust_decimal::prelude::ToPrimitive;
    json!(amount.to_f64().unwrap_or_default())
}

/// The currency of a record: its `currency_id` (named by its ISO code in Odoo), else `fallback`.
pub fn currency(record: &Value, fallback: Currency) -> Currency {
    many2one_name(record.get("currency_id")).and_then(|code| code.parse().ok()).unwrap_or(fallback)
}

/// Custom `x_` fields of a record, for `extra`.
pub fn custom_fields(record: &Value, names: &[String]) -> Extra {
    let mut extra = Extra::new();
    for name in names {
        if let Some(value) = record.get(name) {
            extra.insert(name.clone(), value.clone());
        }
    }
    extra
}

/// `All / Saleable / Shirts` as the model's `All/Saleable/Shirts`.
pub fn category_path(display_name: &str) -> String {
    display_name.split(" / ").map(str::trim).collect::<Vec<_>>().join("/")
}

/// A sales order's state in the model's terms. `delivered` says whether every line was
/// delivered.
pub fn order_state(state: &str, locked: bool, delivered: bool) -> OrderState {
    match state {
        "cancel" => OrderState::Cancelled,
        "sale" | "done" if delivered || locked || state == "done" => OrderState::Completed,
        "sale" => OrderState::Processing,
        _ => OrderState::Open,
    }
}

/// Fulfilment from the states of an order's transfers (cancelled ones do not count).
pub fn fulfillment(picking_states: &[String]) -> FulfillmentStatus {
    let live: Vec<&str> = picking_states.iter().map(String::as_str).filter(|state| *state != "cancel").collect();
    let done = live.iter().filter(|state| **state == "done").count();
    match (done, live.len()) {
        (0, _) => FulfillmentStatus::Unfulfilled,
        (done, all) if done == all => FulfillmentStatus::Fulfilled,
        _ => FulfillmentStatus::PartiallyFulfilled,
    }
}

/// Odoo's `sale.order.delivery_status` (16+) in the model's terms.
pub fn delivery_status(status: &str) -> FulfillmentStatus {
    match status {
        "full" => FulfillmentStatus::Fulfilled,
        "partial" | "started" => FulfillmentStatus::PartiallyFulfilled,
        _ => FulfillmentStatus::Unfulfilled,
    }
}

/// An invoice's `payment_state` in the model's terms.
pub fn financial_status(payment_state: &str) -> Option<FinancialStatus> {
    match payment_state {
        "paid" | "in_payment" => Some(FinancialStatus::Paid),
        "partial" => Some(FinancialStatus::PartiallyPaid),
        "not_paid" => Some(FinancialStatus::Pending),
        "reversed" => Some(FinancialStatus::Refunded),
        _ => None,
    }
}

/// The partner's name from a customer: person, else company, else e-mail.
pub fn partner_name(first: Option<&str>, last: Option<&str>, company: Option<&str>, email: Option<&str>) -> String {
    let person: Vec<&str> =
        [first, last].into_iter().flatten().map(str::trim).filter(|part| !part.is_empty()).collect();
    if !person.is_empty() {
        return person.join(" ");
    }
    company.or(email).map(str::to_string).unwrap_or_else(|| "Unknown customer".into())
}

/// The values of a `res.partner` for a customer (without addresses).
pub fn partner_values(customer: &Customer) -> Map<String, Value> {
    let mut vals = Map::new();
    vals.insert(
        "name".into(),
        json!(partner_name(
            customer.first_name.as_deref(),
            customer.last_name.as_deref(),
            customer.company.as_deref(),
            customer.email.as_deref()
        )),
    );
    let mut set = |field: &str, value: &Option<String>| {
        if let Some(value) = value.as_deref().filter(|value| !value.trim().is_empty()) {
            vals.insert(field.into(), json!(value.trim()));
        }
    };
    set("email", &customer.email);
    set("phone", &customer.phone);
    set("ref", &customer.number);
    set("vat", &customer.tax_number);
    vals.insert("customer_rank".into(), json!(1));
    vals
}

/// The address fields of a `res.partner`. `country_id` is filled by the caller.
pub fn address_values(address: &Address, partner_type: &str, fallback_name: &str) -> Map<String, Value> {
    let mut vals = Map::new();
    let name =
        partner_name(address.first_name.as_deref(), address.last_name.as_deref(), address.company.as_deref(), None);
    vals.insert("name".into(), json!(if name == "Unknown customer" { fallback_name.to_string() } else { name }));
    vals.insert("type".into(), json!(partner_type));
    vals.insert("street".into(), json!(address.line1));
    if let Some(line2) = address.line2.as_deref().filter(|line| !line.trim().is_empty()) {
        vals.insert("street2".into(), json!(line2));
    }
    vals.insert("city".into(), json!(address.city));
    if let Some(zip) = address.postal_code.as_deref() {
        vals.insert("zip".into(), json!(zip));
    }
    if let Some(phone) = address.phone.as_deref() {
        vals.insert("phone".into(), json!(phone));
    }
    vals
}

/// Whether an existing contact (read from Odoo) is the same place as `address`.
pub fn same_address(contact: &Value, address: &Address) -> bool {
    let field = |name: &str| text(contact.get(name)).unwrap_or_default().trim().to_lowercase();
    field("street") == address.line1.trim().to_lowercase()
        && field("city") == address.city.trim().to_lowercase()
        && field("zip") == address.postal_code.as_deref().unwrap_or_default().trim().to_lowercase()
}

/// The Odoo contact type for an address kind.
pub fn partner_type(kind: AddressKind) -> &'static str {
    match kind {
        AddressKind::Shipping => "delivery",
        AddressKind::Billing => "invoice",
        AddressKind::Both => "other",
    }
}

/// A discount amount on a line as Odoo's discount percentage, to 4 places.
pub fn discount_percent(unit_price: Decimal, quantity: Decimal, discount: Decimal) -> Decimal {
    let gross = unit_price * quantity;
    if gross <= Decimal::ZERO || discount <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    (discount / gross * Decimal::ONE_HUNDRED).round_dp(4).min(Decimal::ONE_HUNDRED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_values() {
        let at = parse_datetime(&json!("2024-01-01 08:00:05")).unwrap();
        assert_eq!(at.to_rfc3339(), "2024-01-01T08:00:05+00:00");
        assert_eq!(format_datetime(at), "2024-01-01 08:00:05");
        assert_eq!(parse_datetime(&json!(false)), None);
        assert_eq!(text(Some(&json!(false))), None);
        assert_eq!(many2one_id(Some(&json!([7, "WH"]))), Some(7));
        assert_eq!(many2one_name(Some(&json!([7, "WH"]))).as_deref(), Some("WH"));
        assert_eq!(decimal(Some(&json!(19.99))).to_string(), "19.99");
        assert_eq!(decimal(Some(&json!(0.1 + 0.2))).round_dp(6).normalize().to_string(), "0.3");
        assert_eq!(category_path("All / Apparel"), "All/Apparel");
    }

    #[test]
    fn discounts_and_states() {
        assert_eq!(discount_percent(Decimal::new(2000, 2), Decimal::from(2), Decimal::from(4)), Decimal::from(10));
        assert_eq!(discount_percent(Decimal::ZERO, Decimal::ONE, Decimal::ONE), Decimal::ZERO);
        assert_eq!(order_state("sale", false, false), OrderState::Processing);
        assert_eq!(order_state("sale", false, true), OrderState::Completed);
        assert_eq!(order_state("cancel", false, false), OrderState::Cancelled);
        assert_eq!(order_state("draft", false, false), OrderState::Open);
        let states = |list: &[&str]| list.iter().map(|state| state.to_string()).collect::<Vec<_>>();
        assert_eq!(fulfillment(&states(&["done", "assigned"])), FulfillmentStatus::PartiallyFulfilled);
        assert_eq!(fulfillment(&states(&["done", "cancel"])), FulfillmentStatus::Fulfilled);
        assert_eq!(fulfillment(&states(&[])), FulfillmentStatus::Unfulfilled);
        assert_eq!(delivery_status("full"), FulfillmentStatus::Fulfilled);
    }
}
