//! Pure conversions between Medusa's admin JSON and canonical records.
//!
//! Medusa 2 sends amounts as decimal numbers in major units (`19.99` is €19.99), timestamps in
//! UTC with milliseconds (`2026-11-26T14:16:32.811Z`), and currency codes in lower case. A
//! product has no reference of its own: the canonical `code` is written to `external_id` and
//! read back from it (falling back to the SKU of a single variant, then the handle). Medusa
//! requires every variant to have a value for each product option; a canonical product without
//! options gets one option `Default` (one variant) or `Variant` (several, valued by SKU), and
//! those synthetic options are dropped again when reading.

use chrono::{DateTime, Utc};
use erpsync_model::{
    Address, AddressKind, Cancellation, Currency, Customer, Extra, FinancialStatus, FulfillmentStatus, Image, Money,
    OptionValue, Order, OrderLine, OrderParty, OrderState, OrderStatusChange, OrderTotals, Payment, Product,
    ProductOption, ProductStatus, Refund, Rounding, ShippingLine, StockLevel, TaxLine, Variant,
};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use std::str::FromStr;

/// The option Medusa needs on a product that has none in the canonical model.
pub const DEFAULT_OPTION: &str = "Default";
/// The option that tells apart several variants of a product without canonical options (the
/// model's name for it; Medusa's values are the SKUs).
pub use erpsync_model::VARIANT_OPTION;

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

fn non_empty(value: &Value, key: &str) -> Option<String> {
    let text = text(value, key).trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// A Medusa amount (number, or a string for big numbers) as a decimal; absent is `None`.
pub fn decimal(value: &Value, key: &str) -> Result<Option<Decimal>, String> {
    match value.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let text = n.to_string();
            Decimal::from_str(&text)
                .or_else(|_| Decimal::from_scientific(&text))
                .map(|d| Some(d.normalize()))
                .map_err(|_| format!("{key} {n} is not a number"))
        }
        Some(Value::String(s)) => {
            Decimal::from_str(s.trim()).map(|d| Some(d.normalize())).map_err(|_| format!("{key} {s:?} is not a number"))
        }
        // Medusa's BigNumber sometimes travels as {"value": "19.99", "precision": 20}.
        Some(Value::Object(object)) if object.contains_key("value") => decimal(&Value::Object(object.clone()), "value"),
        Some(other) => Err(format!("{key} is {other}, not a number")),
    }
}

fn amount(value: &Value, key: &str) -> Result<Decimal, String> {
    Ok(decimal(value, key)?.unwrap_or_default())
}

/// A Medusa timestamp.
pub fn time(value: &Value, key: &str) -> Option<DateTime<Utc>> {
    let text = value.get(key)?.as_str()?;
    DateTime::parse_from_rfc3339(text).ok().map(|at| at.with_timezone(&Utc))
}

/// A timestamp as Medusa's filters take it (`updated_at[$gte]=…`), to the millisecond.
pub fn format_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn array<'a>(value: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    value.get(key).and_then(Value::as_array).into_iter().flatten()
}

/// The base price of a variant in `currency`: no quantity tier, no price-list rule.
pub fn base_price(variant: &Value, currency: Currency) -> Result<Option<Decimal>, String> {
    for price in array(variant, "prices") {
        if !text(price, "currency_code").eq_ignore_ascii_case(currency.as_str()) {
            continue;
        }
        let tier = price.get("min_quantity").and_then(Value::as_f64).is_some_and(|q| q > 1.0);
        let ruled = price.get("rules").and_then(Value::as_object).is_some_and(|rules| !rules.is_empty())
            || price.get("rules_count").and_then(Value::as_u64).is_some_and(|n| n > 0)
            || price.get("price_list_id").is_some_and(|id| !id.is_null());
        if tier || ruled {
            continue;
        }
        return decimal(price, "amount");
    }
    Ok(None)
}

fn status_of(product: &Value) -> ProductStatus {
    match text(product, "status") {
        "published" => ProductStatus::Active,
        "rejected" => ProductStatus::Archived,
        _ => ProductStatus::Draft,
    }
}

/// The option titles of a product that are only there because Medusa needs one.
fn synthetic_options(product: &Value) -> bool {
    let options: Vec<&Value> = array(product, "options").collect();
    options.len() == 1 && matches!(text(options[0], "title"), DEFAULT_OPTION | VARIANT_OPTION)
}

/// A Medusa product with its variants as one canonical product.
pub fn product_from_medusa(product: &Value, currency: Currency) -> Result<Product, String> {
    let product_id = text(product, "id");
    let synthetic = synthetic_options(product);
    let options: Vec<ProductOption> = if synthetic {
        Vec::new()
    } else {
        array(product, "options")
            .map(|option| {
                // Medusa returns values in no particular order; their rank is the order written.
                let mut values: Vec<(Option<u64>, usize, String)> = array(option, "values")
                    .enumerate()
                    .map(|(index, v)| (v.get("rank").and_then(Value::as_u64), index, text(v, "value").to_string()))
                    .collect();
                values.sort_by_key(|(rank, index, _)| (rank.is_none(), *rank, *index));
                ProductOption {
                    name: text(option, "title").to_string(),
                    values: values.into_iter().map(|(_, _, value)| value).collect(),
                }
            })
            .collect()
    };
    let option_titles: Map<String, Value> = array(product, "options")
        .map(|option| (text(option, "id").to_string(), Value::String(text(option, "title").to_string())))
        .collect();
    let mut variants = Vec::new();
    for variant in array(product, "variants") {
        let sku = text(variant, "sku").trim().to_string();
        if sku.is_empty() {
            return Err(format!("variant {} of product {product_id} has no SKU", text(variant, "id")));
        }
        let options: Vec<OptionValue> = if synthetic {
            Vec::new()
        } else {
            array(variant, "options")
                .map(|value| {
                    let option = value
                        .pointer("/option/title")
                        .and_then(Value::as_str)
                        .or_else(|| option_titles.get(text(value, "option_id")).and_then(Value::as_str))
                        .unwrap_or("")
                        .to_string();
                    OptionValue { option, value: text(value, "value").to_string() }
                })
                .collect()
        };
        let mut extra = Extra::new();
        extra.insert("medusa_id", json!(text(variant, "id")));
        variants.push(Variant {
            sku,
            title: non_empty(variant, "title"),
            barcode: non_empty(variant, "barcode").or_else(|| non_empty(variant, "ean")),
            options,
            price: base_price(variant, currency)?.map(|price| Money::new(price, currency)),
            compare_at_price: None,
            cost: None,
            price_includes_tax: false,
            weight: None,
            track_inventory: variant.get("manage_inventory").and_then(Value::as_bool) == Some(true),
            extra,
        });
    }
    if variants.is_empty() {
        return Err(format!("product {product_id} ({:?}) has no variants", text(product, "title")));
    }
    variants.sort_by(|a, b| a.sku.cmp(&b.sku));
    let code = non_empty(product, "external_id")
        .or_else(|| (variants.len() == 1).then(|| variants[0].sku.clone()))
        .or_else(|| non_empty(product, "handle"))
        .unwrap_or_else(|| product_id.to_string());
    let mut images: Vec<Image> = array(product, "images")
        .map(|image| Image {
            url: text(image, "url").to_string(),
            alt: None,
            position: image.get("rank").and_then(Value::as_u64).unwrap_or(0) as u32,
            variant_skus: Vec::new(),
        })
        .collect();
    images.sort_by_key(|image| image.position);
    let mut extra = Extra::new();
    extra.insert("medusa_id", json!(product_id));
    extra.insert("handle", json!(text(product, "handle")));
    if let Some(metadata) = product.get("metadata").filter(|m| m.as_object().is_some_and(|m| !m.is_empty())) {
        extra.insert("metadata", metadata.clone());
    }
    Ok(Product {
        code,
        title: text(product, "title").to_string(),
        description: non_empty(product, "description"),
        status: status_of(product),
        vendor: None,
        product_type: product.pointer("/type/value").and_then(Value::as_str).map(str::to_string),
        tags: array(product, "tags").map(|tag| text(tag, "value").to_string()).collect(),
        categories: array(product, "categories").map(|c| text(c, "name").to_string()).collect(),
        options,
        variants,
        images,
        attributes: Vec::new(),
        tax_class: None,
        updated_at: time(product, "updated_at"),
        extra,
    })
}

/// A URL-safe handle from a product code: lower case, `-` for anything else.
pub fn handle_for(code: &str) -> String {
    let mut handle = String::with_capacity(code.len());
    for c in code.trim().chars() {
        if c.is_ascii_alphanumeric() {
            handle.push(c.to_ascii_lowercase());
        } else if !handle.ends_with('-') {
            handle.push('-');
        }
    }
    let handle = handle.trim_matches('-').to_string();
    if handle.is_empty() { "product".into() } else { handle }
}

fn medusa_status(status: ProductStatus) -> &'static str {
    match status {
        ProductStatus::Active => "published",
        ProductStatus::Draft => "draft",
        ProductStatus::Archived => "rejected",
    }
}

/// The options Medusa needs for `product`, and each variant's values by option title.
pub fn options_for(product: &Product) -> (Vec<Value>, Vec<Map<String, Value>>) {
    if !product.options.is_empty() {
        let options = product
            .options
            .iter()
            .map(|o| {
                let ranks: Map<String, Value> =
                    o.values.iter().enumerate().map(|(rank, value)| (value.clone(), json!(rank))).collect();
                json!({"title": o.name, "values": o.values, "ranks": ranks})
            })
            .collect();
        let values = product
            .variants
            .iter()
            .map(|variant| variant.options.iter().map(|v| (v.option.clone(), Value::String(v.value.clone()))).collect())
            .collect();
        return (options, values);
    }
    if product.variants.len() == 1 {
        let mut values = Map::new();
        values.insert(DEFAULT_OPTION.into(), json!(DEFAULT_OPTION));
        return (vec![json!({"title": DEFAULT_OPTION, "values": [DEFAULT_OPTION]})], vec![values]);
    }
    let skus: Vec<&str> = product.variants.iter().map(|v| v.sku.as_str()).collect();
    let values = skus
        .iter()
        .map(|sku| {
            let mut values = Map::new();
            values.insert(VARIANT_OPTION.into(), json!(sku));
            values
        })
        .collect();
    (vec![json!({"title": VARIANT_OPTION, "values": skus})], values)
}

/// A variant's body for create or update (`prices` in our currency; other currencies' prices
/// are added by the sink, which knows them).
pub fn variant_to_medusa(
    variant: &Variant,
    option_values: &Map<String, Value>,
    currency: Currency,
) -> Result<Value, String> {
    let mut body = json!({
        "title": variant.title.clone().unwrap_or_else(|| variant.sku.clone()),
        "sku": variant.sku,
        "manage_inventory": variant.track_inventory,
        "options": option_values,
    });
    if let Some(barcode) = &variant.barcode {
        body["barcode"] = json!(barcode);
    }
    if let Some(price) = &variant.price {
        if price.currency != currency {
            return Err(format!(
                "variant {}: the price is in {} but the shop's currency is {}",
                variant.sku,
                price.currency.as_str(),
                currency.as_str()
            ));
        }
        if variant.price_includes_tax {
            return Err(format!(
                "variant {}: the price includes tax, but Medusa's prices here are without tax",
                variant.sku
            ));
        }
        body["prices"] =
            json!([{"currency_code": currency.as_str().to_ascii_lowercase(), "amount": number(price.amount)}]);
    }
    Ok(body)
}

/// A decimal as a JSON number (Medusa rejects amounts sent as strings).
pub fn number(value: Decimal) -> Value {
    serde_json::from_str(&value.normalize().to_string()).unwrap_or(Value::Null)
}

/// The body of `POST /admin/products` (create) for a canonical product.
pub fn product_to_medusa(
    product: &Product,
    currency: Currency,
    sales_channel: &str,
    shipping_profile: &str,
) -> Result<Value, String> {
    if product.variants.is_empty() {
        return Err("a product needs at least one variant".into());
    }
    let (options, values) = options_for(product);
    let variants = product
        .variants
        .iter()
        .zip(&values)
        .map(|(variant, values)| variant_to_medusa(variant, values, currency))
        .collect::<Result<Vec<_>, _>>()?;
    let mut body = json!({
        "title": product.title,
        "handle": handle_for(&product.code),
        "external_id": product.code,
        "status": medusa_status(product.status),
        "shipping_profile_id": shipping_profile,
        "sales_channels": [{"id": sales_channel}],
        "options": options,
        "variants": variants,
    });
    if let Some(description) = &product.description {
        body["description"] = json!(description);
    }
    if !product.images.is_empty() {
        let mut images = product.images.clone();
        images.sort_by_key(|image| image.position);
        body["images"] = images.iter().map(|image| json!({"url": image.url})).collect();
        body["thumbnail"] = json!(images[0].url);
    }
    Ok(body)
}

/// The product-level fields of `POST /admin/products/{id}` (update): variants go separately.
pub fn product_update_to_medusa(product: &Product) -> Value {
    let mut body = json!({
        "title": product.title,
        "external_id": product.code,
        "status": medusa_status(product.status),
    });
    if let Some(description) = &product.description {
        body["description"] = json!(description);
    }
    body
}

fn address(value: &Value, kind: AddressKind) -> Option<Address> {
    if value.is_null() || !value.is_object() {
        return None;
    }
    Some(Address {
        kind,
        first_name: non_empty(value, "first_name"),
        last_name: non_empty(value, "last_name"),
        company: non_empty(value, "company"),
        line1: text(value, "address_1").to_string(),
        line2: non_empty(value, "address_2"),
        city: text(value, "city").to_string(),
        region: non_empty(value, "province"),
        postal_code: non_empty(value, "postal_code"),
        country: text(value, "country_code").to_ascii_uppercase(),
        phone: non_empty(value, "phone"),
        is_default: false,
    })
}

fn tax_lines(value: &Value) -> Result<Vec<TaxLine>, String> {
    array(value, "tax_lines")
        .map(|line| {
            Ok(TaxLine {
                title: non_empty(line, "description").or_else(|| non_empty(line, "code")).unwrap_or_default(),
                // Medusa keeps the rate in percent.
                rate: amount(line, "rate")? / Decimal::ONE_HUNDRED,
                amount: amount(line, "total").or_else(|_| amount(line, "subtotal"))?,
            })
        })
        .collect()
}

/// Medusa's payment status as the canonical financial status.
pub fn financial_status(status: &str) -> FinancialStatus {
    match status {
        "authorized" => FinancialStatus::Authorized,
        "partially_authorized" | "partially_captured" => FinancialStatus::PartiallyPaid,
        "captured" => FinancialStatus::Paid,
        "partially_refunded" => FinancialStatus::PartiallyRefunded,
        "refunded" => FinancialStatus::Refunded,
        "canceled" => FinancialStatus::Voided,
        _ => FinancialStatus::Pending,
    }
}

/// Medusa's fulfillment status as the canonical one.
pub fn fulfillment_status(status: &str) -> FulfillmentStatus {
    match status {
        "fulfilled" | "shipped" | "delivered" => FulfillmentStatus::Fulfilled,
        "partially_fulfilled" | "partially_shipped" | "partially_delivered" => FulfillmentStatus::PartiallyFulfilled,
        "returned" | "partially_returned" => FulfillmentStatus::Returned,
        _ => FulfillmentStatus::Unfulfilled,
    }
}

/// Medusa's order status as the canonical state.
pub fn order_state(order: &Value) -> OrderState {
    match text(order, "status") {
        "canceled" => OrderState::Cancelled,
        "completed" | "archived" => OrderState::Completed,
        "requires_action" => OrderState::OnHold,
        _ => match text(order, "fulfillment_status") {
            "fulfilled" | "shipped" | "delivered" | "partially_fulfilled" | "partially_shipped" => {
                OrderState::Processing
            }
            _ => OrderState::Open,
        },
    }
}

/// The order number a person sees: Medusa's `display_id`.
pub fn order_number(order: &Value) -> Option<String> {
    match order.get("display_id") {
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

/// A Medusa order as a canonical order.
pub fn order_from_medusa(order: &Value) -> Result<Order, String> {
    let id = text(order, "id");
    let number = order_number(order).ok_or_else(|| format!("order {id} has no display_id"))?;
    let currency: Currency = text(order, "currency_code")
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| format!("order {id}: currency {:?} is not ISO 4217", text(order, "currency_code")))?;
    let mut prices_include_tax = false;
    let mut lines = Vec::new();
    for item in array(order, "items") {
        let sku = non_empty(item, "variant_sku").unwrap_or_default();
        if sku.is_empty() {
            return Err(format!("order {number}: line {} ({:?}) has no SKU", text(item, "id"), text(item, "title")));
        }
        let inclusive = item.get("is_tax_inclusive").and_then(Value::as_bool) == Some(true);
        prices_include_tax |= inclusive;
        let discount = amount(item, "discount_total")?;
        let subtotal = amount(item, "subtotal")?;
        let total = if inclusive { amount(item, "total")? } else { subtotal - discount };
        let title = match (non_empty(item, "product_title"), non_empty(item, "variant_title")) {
            (Some(product), Some(variant)) if variant != product && variant != sku => format!("{product} - {variant}"),
            (Some(product), _) => product,
            _ => text(item, "title").to_string(),
        };
        let mut extra = Extra::new();
        for key in ["variant_id", "product_id"] {
            if let Some(value) = non_empty(item, key) {
                extra.insert(format!("medusa_{key}"), json!(value));
            }
        }
        lines.push(OrderLine {
            line_id: non_empty(item, "id"),
            sku,
            title,
            quantity: amount(item, "quantity")?,
            unit_price: amount(item, "unit_price")?,
            discount,
            tax_lines: tax_lines(item)?,
            total,
            extra,
        });
    }
    let shipping_lines = array(order, "shipping_methods")
        .map(|method| {
            Ok(ShippingLine {
                method: non_empty(method, "shipping_option_id").unwrap_or_else(|| text(method, "name").to_string()),
                title: text(method, "name").to_string(),
                price: amount(method, "amount")?,
                tax_lines: tax_lines(method)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut payments = Vec::new();
    for collection in array(order, "payment_collections") {
        for payment in array(collection, "payments") {
            payments.push(Payment {
                gateway: text(payment, "provider_id").to_string(),
                method: None,
                amount: amount(payment, "amount")?,
                reference: non_empty(payment, "id"),
            });
        }
    }
    let shipping = order.get("shipping_address").and_then(|a| address(a, AddressKind::Shipping));
    let billing = order.get("billing_address").and_then(|a| address(a, AddressKind::Billing));
    let customer = order.get("customer").filter(|c| c.is_object());
    let party_source = customer.or(order.get("billing_address")).or(order.get("shipping_address"));
    let party = |key: &str| party_source.and_then(|p| non_empty(p, key));
    let cancellation = (text(order, "status") == "canceled")
        .then(|| Cancellation { cancelled_at: time(order, "canceled_at").or(time(order, "updated_at")), reason: None });
    let mut extra = Extra::new();
    extra.insert("medusa_id", json!(id));
    for (key, name) in [
        ("status", "medusa_status"),
        ("payment_status", "medusa_payment_status"),
        ("fulfillment_status", "medusa_fulfillment_status"),
    ] {
        if let Some(value) = non_empty(order, key) {
            extra.insert(name, json!(value));
        }
    }
    Ok(Order {
        number,
        placed_at: time(order, "created_at"),
        updated_at: time(order, "updated_at"),
        currency,
        prices_include_tax,
        rounding: Rounding::PerLine,
        customer: OrderParty {
            email: non_empty(order, "email").or_else(|| customer.and_then(|c| non_empty(c, "email"))),
            number: customer.and_then(|c| non_empty(c, "id")),
            first_name: party("first_name"),
            last_name: party("last_name"),
            company: party("company_name").or_else(|| party("company")),
            phone: party("phone"),
            group: None,
        },
        billing_address: billing,
        shipping_address: shipping,
        lines,
        discounts: Vec::new(),
        shipping_lines,
        tax_lines: Vec::new(),
        totals: OrderTotals {
            subtotal: decimal(order, "item_subtotal")?.map_or_else(|| amount(order, "subtotal"), Ok)?,
            discount_total: amount(order, "discount_total")?,
            shipping_total: amount(order, "shipping_total")?,
            tax_total: amount(order, "tax_total")?,
            total: amount(order, "total")?,
        },
        payments,
        financial_status: financial_status(text(order, "payment_status")),
        fulfillment_status: fulfillment_status(text(order, "fulfillment_status")),
        cancellation,
        note: None,
        sales_channel: non_empty(order, "sales_channel_id"),
        extra,
    })
}

/// A Medusa order's state as a canonical status change.
pub fn order_status_from_medusa(order: &Value) -> Result<OrderStatusChange, String> {
    let number = order_number(order).ok_or_else(|| format!("order {} has no display_id", text(order, "id")))?;
    let mut extra = Extra::new();
    extra.insert("medusa_id", json!(text(order, "id")));
    Ok(OrderStatusChange {
        order_number: number,
        state: order_state(order),
        financial_status: Some(financial_status(text(order, "payment_status"))),
        fulfillment_status: Some(fulfillment_status(text(order, "fulfillment_status"))),
        changed_at: time(order, "updated_at"),
        note: None,
        extra,
    })
}

/// The refunds of a Medusa order (read with `*payment_collections.payments.refunds` and their
/// `refund_reason`), one canonical refund per Medusa refund, oldest first.
///
/// Medusa refunds a payment, not items: a refund has an amount, a reason and a note, and no
/// link to a return or a claim (their `refund_amount` is a suggestion with no refund id). So
/// the refunds have no lines and no separate shipping amount.
pub fn refunds_from_medusa(order: &Value) -> Result<Vec<Refund>, String> {
    let order_id = text(order, "id");
    let number = order_number(order).ok_or_else(|| format!("order {order_id} has no display_id"))?;
    let mut refunds = Vec::new();
    for collection in array(order, "payment_collections") {
        for payment in array(collection, "payments") {
            let currency_code = non_empty(payment, "currency_code")
                .or_else(|| non_empty(collection, "currency_code"))
                .or_else(|| non_empty(order, "currency_code"))
                .unwrap_or_default();
            let currency: Currency = currency_code.to_ascii_uppercase().parse().map_err(|_| {
                format!("order {number}: payment {} has currency {currency_code:?}, not ISO 4217", text(payment, "id"))
            })?;
            for refund in array(payment, "refunds") {
                let id = text(refund, "id");
                if id.is_empty() {
                    return Err(format!("order {number}: a refund of payment {} has no id", text(payment, "id")));
                }
                let amount = decimal(refund, "amount")?
                    .or(decimal(refund, "raw_amount")?)
                    .ok_or_else(|| format!("order {number}: refund {id} has no amount"))?;
                let reason_label = refund.get("refund_reason").and_then(|reason| non_empty(reason, "label"));
                let note = non_empty(refund, "note");
                let mut extra = Extra::new();
                extra.insert("medusa_id", json!(id));
                extra.insert("medusa_order_id", json!(order_id));
                extra.insert("medusa_payment_id", json!(text(payment, "id")));
                if let Some(code) = refund.get("refund_reason").and_then(|reason| non_empty(reason, "code")) {
                    extra.insert("medusa_refund_reason_code", json!(code));
                }
                if let (Some(_), Some(note)) = (&reason_label, &note) {
                    extra.insert("note", json!(note));
                }
                refunds.push(Refund {
                    number: id.to_string(),
                    order_number: number.clone(),
                    refunded_at: time(refund, "created_at"),
                    currency,
                    amount,
                    shipping_amount: Decimal::ZERO,
                    reason: reason_label.or(note),
                    lines: Vec::new(),
                    extra,
                });
            }
        }
    }
    refunds.sort_by(|a, b| (a.refunded_at, &a.number).cmp(&(b.refunded_at, &b.number)));
    Ok(refunds)
}

/// A Medusa customer with its addresses.
pub fn customer_from_medusa(customer: &Value) -> Customer {
    let addresses = array(customer, "addresses")
        .filter_map(|value| {
            let mut address = address(value, AddressKind::Both)?;
            address.is_default = value.get("is_default_shipping").and_then(Value::as_bool) == Some(true)
                || value.get("is_default_billing").and_then(Value::as_bool) == Some(true);
            Some(address)
        })
        .collect();
    let mut extra = Extra::new();
    extra.insert("medusa_id", json!(text(customer, "id")));
    extra.insert("has_account", json!(customer.get("has_account").and_then(Value::as_bool).unwrap_or(false)));
    Customer {
        number: None,
        email: non_empty(customer, "email").map(|email| email.to_lowercase()),
        first_name: non_empty(customer, "first_name"),
        last_name: non_empty(customer, "last_name"),
        company: non_empty(customer, "company_name"),
        phone: non_empty(customer, "phone"),
        group: array(customer, "groups").next().and_then(|group| non_empty(group, "name")),
        tax_number: None,
        accepts_marketing: false,
        addresses,
        updated_at: time(customer, "updated_at"),
        extra,
    }
}

/// The stock levels of one inventory item, one per location level, named by the canonical
/// location (levels of unmapped locations are left out).
pub fn stock_from_medusa(
    item: &Value,
    location_name: impl Fn(&str) -> Option<String>,
) -> Result<Vec<StockLevel>, String> {
    let sku = text(item, "sku").trim().to_string();
    if sku.is_empty() {
        return Err(format!("inventory item {} has no SKU", text(item, "id")));
    }
    let mut levels = Vec::new();
    for level in array(item, "location_levels") {
        let Some(location) = location_name(text(level, "location_id")) else {
            continue;
        };
        let stocked = amount(level, "stocked_quantity")?;
        let reserved = amount(level, "reserved_quantity")?;
        let available = decimal(level, "available_quantity")?.unwrap_or(stocked - reserved);
        let mut extra = Extra::new();
        extra.insert("medusa_inventory_item_id", json!(text(item, "id")));
        levels.push(StockLevel {
            sku: sku.clone(),
            location,
            available,
            on_hand: Some(stocked),
            updated_at: time(level, "updated_at"),
            extra,
        });
    }
    Ok(levels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_url_safe() {
        assert_eq!(handle_for("ERP Widget/Blue 001"), "erp-widget-blue-001");
        assert_eq!(handle_for("--"), "product");
    }

    #[test]
    fn synthetic_options_round_trip() {
        let product = Product {
            code: "W".into(),
            title: "W".into(),
            variants: vec![
                Variant { sku: "W-1".into(), ..Variant::default() },
                Variant { sku: "W-2".into(), ..Variant::default() },
            ],
            ..Product::default()
        };
        let (options, values) = options_for(&product);
        assert_eq!(options, vec![json!({"title": "Variant", "values": ["W-1", "W-2"]})]);
        assert_eq!(values[1].get("Variant"), Some(&json!("W-2")));
        let medusa = json!({
            "id": "prod_1", "title": "W", "status": "published", "external_id": "W", "handle": "w",
            "options": [{"id": "opt_1", "title": "Variant", "values": [{"value": "W-1"}, {"value": "W-2"}]}],
            "variants": [
                {"id": "variant_2", "sku": "W-2", "title": "W-2", "manage_inventory": true,
                 "options": [{"value": "W-2", "option_id": "opt_1"}],
                 "prices": [{"currency_code": "eur", "amount": 19.9}, {"currency_code": "eur", "amount": 15, "min_quantity": 10}]},
                {"id": "variant_1", "sku": "W-1", "title": "W-1", "options": [], "prices": []}
            ],
            "updated_at": "2026-11-26T14:16:32.811Z"
        });
        let read = product_from_medusa(&medusa, Currency::EUR).unwrap();
        assert!(read.options.is_empty());
        assert_eq!(read.variants[0].sku, "W-1");
        assert!(read.variants[1].options.is_empty());
        assert_eq!(read.variants[1].price, Some(Money::new(Decimal::from_str("19.9").unwrap(), Currency::EUR)));
        assert_eq!(read.status, ProductStatus::Active);
        assert_eq!(format_time(read.updated_at.unwrap()), "2026-11-26T14:16:32.811Z");
    }

    #[test]
    fn refunds_are_read_from_the_payments() {
        let order = json!({
            "id": "order_1", "display_id": 7, "currency_code": "usd",
            "payment_collections": [{"id": "pay_col_1", "currency_code": "usd", "payments": [
                {"id": "pay_1", "currency_code": "usd", "refunds": [
                    {"id": "ref_2", "amount": 2.5, "note": "late", "created_at": "2026-11-27T02:10:00.000Z",
                     "refund_reason": {"label": "Damaged", "code": "damaged"}},
                    {"id": "ref_1", "raw_amount": {"value": "5", "precision": 20}, "note": "scratched",
                     "refund_reason": null, "created_at": "2026-11-27T02:09:34.258Z"}
                ]},
                {"id": "pay_2", "currency_code": "usd", "refunds": []}
            ]}]
        });
        let refunds = refunds_from_medusa(&order).unwrap();
        assert_eq!(refunds.len(), 2);
        let (first, second) = (&refunds[0], &refunds[1]);
        assert_eq!((first.number.as_str(), first.order_number.as_str()), ("ref_1", "7"));
        assert_eq!(first.amount, Decimal::from(5));
        assert_eq!(first.currency, Currency::USD);
        assert_eq!(first.reason.as_deref(), Some("scratched"));
        assert!(first.lines.is_empty());
        assert_eq!(second.amount, Decimal::from_str("2.5").unwrap());
        assert_eq!(second.reason.as_deref(), Some("Damaged"));
        assert_eq!(second.extra.get("note"), Some(&json!("late")));
        assert_eq!(second.extra.get("medusa_payment_id"), Some(&json!("pay_1")));
        assert!(refunds_from_medusa(&json!({"id": "order_2"})).is_err(), "no display_id");
        assert!(refunds_from_medusa(&json!({"id": "order_3", "display_id": 3})).unwrap().is_empty());
    }

    #[test]
    fn amounts_are_exact_decimals() {
        assert_eq!(number(Decimal::from_str("24.990").unwrap()), json!(24.99));
        assert_eq!(decimal(&json!({"a": 0.1}), "a").unwrap(), Some(Decimal::from_str("0.1").unwrap()));
        assert_eq!(decimal(&json!({"a": "12.50"}), "a").unwrap(), Some(Decimal::from_str("12.5").unwrap()));
    }
}
