//! Pure conversions between WooCommerce's REST JSON and canonical records.
//!
//! WooCommerce sends money as strings (`"19.99"`), dates twice (site time without a zone, and
//! `*_gmt` in UTC without a zone: the `_gmt` twins are the ones read here), and keeps a "regular"
//! price plus an optional "sale" price: the canonical `price` is what the customer pays now (the
//! sale price when there is one) and `compare_at_price` the regular price above it.

use chrono::{DateTime, NaiveDateTime, Utc};
use erpsync_model::{
    Address, AddressKind, Cancellation, Currency, Customer, Discount, Extra, FinancialStatus, FulfillmentStatus, Image,
    Money, OptionValue, Order, OrderLine, OrderParty, OrderState, OrderTotals, Payment, Product, ProductAttribute,
    ProductOption, ProductStatus, Refund, RefundLine, Rounding, ShippingLine, TaxLine, Variant, Weight,
};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use std::str::FromStr;

/// What conversions need to know about the shop.
#[derive(Debug, Clone)]
pub struct ShopSettings {
    pub currency: Currency,
    pub prices_include_tax: bool,
    pub weight_unit: String,
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

fn non_empty(value: &Value, key: &str) -> Option<String> {
    let text = text(value, key).trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// A WooCommerce money string (or number) as a decimal; empty is `None`.
pub fn decimal(value: &Value, key: &str) -> Result<Option<Decimal>, String> {
    match value.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => {
            Decimal::from_str(s.trim()).map(Some).map_err(|_| format!("{key} {s:?} is not a number"))
        }
        Some(Value::Number(n)) => {
            Decimal::from_str(&n.to_string()).map(Some).map_err(|_| format!("{key} {n} is not a number"))
        }
        Some(other) => Err(format!("{key} is {other}, not a number")),
    }
}

fn amount(value: &Value, key: &str) -> Result<Decimal, String> {
    Ok(decimal(value, key)?.unwrap_or_default())
}

/// A `*_gmt` date (`2026-03-01T12:00:00`, UTC without a zone).
pub fn gmt(value: &Value, key: &str) -> Option<DateTime<Utc>> {
    let text = value.get(key)?.as_str()?;
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S").ok().map(|at| at.and_utc())
}

/// `modified_after` as sent with `dates_are_gmt=true`.
pub fn format_gmt(at: DateTime<Utc>) -> String {
    at.naive_utc().format("%Y-%m-%dT%H:%M:%S").to_string()
}

fn id(value: &Value) -> u64 {
    value.get("id").and_then(Value::as_u64).unwrap_or(0)
}

/// `meta_data` as one object `{key: value}` (ids dropped: they are WooCommerce's row ids).
fn meta_object(value: &Value) -> Value {
    let mut object = Map::new();
    for entry in value.get("meta_data").and_then(Value::as_array).into_iter().flatten() {
        if let Some(key) = entry.get("key").and_then(Value::as_str) {
            object.insert(key.to_string(), entry.get("value").cloned().unwrap_or(Value::Null));
        }
    }
    Value::Object(object)
}

fn prices(value: &Value, currency: Currency) -> Result<(Option<Money>, Option<Money>), String> {
    let regular = decimal(value, "regular_price")?;
    let sale = decimal(value, "sale_price")?;
    Ok(match (regular, sale) {
        (regular, Some(sale)) => (Some(Money::new(sale, currency)), regular.map(|r| Money::new(r, currency))),
        (Some(regular), None) => (Some(Money::new(regular, currency)), None),
        (None, None) => (None, None),
    })
}

fn weight(value: &Value, unit: &str) -> Result<Option<Weight>, String> {
    Ok(decimal(value, "weight")?.map(|value| Weight { value, unit: unit.to_string() }))
}

fn status_of(value: &Value) -> ProductStatus {
    match text(value, "status") {
        "publish" => ProductStatus::Active,
        "private" | "trash" => ProductStatus::Archived,
        _ => ProductStatus::Draft,
    }
}

/// A product with its variations (empty for a simple product) as one canonical product.
pub fn product_from_woo(product: &Value, variations: &[Value], shop: &ShopSettings) -> Result<Product, String> {
    let product_id = id(product);
    let kind = text(product, "type");
    let mut images: Vec<Image> = product
        .get("images")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(position, image)| Image {
            url: text(image, "src").to_string(),
            alt: non_empty(image, "alt"),
            position: position as u32,
            variant_skus: Vec::new(),
        })
        .collect();
    let mut options = Vec::new();
    let mut attributes = Vec::new();
    for attribute in product.get("attributes").and_then(Value::as_array).into_iter().flatten() {
        let name = text(attribute, "name").to_string();
        let values: Vec<String> = attribute
            .get("options")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        if attribute.get("variation").and_then(Value::as_bool) == Some(true) && kind == "variable" {
            options.push(ProductOption { name, values });
        } else {
            attributes.push(ProductAttribute { name, value: values.join(", ") });
        }
    }
    let variants = if kind == "variable" {
        let mut variants = Vec::new();
        for variation in variations {
            let sku = text(variation, "sku").trim().to_string();
            if sku.is_empty() {
                return Err(format!("variation {} of product {product_id} has no SKU", id(variation)));
            }
            let (price, compare_at_price) = prices(variation, shop.currency)?;
            let options: Vec<OptionValue> = variation
                .get("attributes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|a| OptionValue { option: text(a, "name").to_string(), value: text(a, "option").to_string() })
                .collect();
            if let Some(image) = variation.get("image").filter(|i| !i.is_null()) {
                let url = text(image, "src").to_string();
                match images.iter_mut().find(|i| i.url == url) {
                    Some(existing) => existing.variant_skus.push(sku.clone()),
                    None if !url.is_empty() => images.push(Image {
                        url,
                        alt: non_empty(image, "alt"),
                        position: images.len() as u32,
                        variant_skus: vec![sku.clone()],
                    }),
                    None => {}
                }
            }
            let title = options.iter().map(|o| o.value.as_str()).collect::<Vec<_>>().join(" / ");
            let mut extra = Extra::new();
            extra.insert("woocommerce_id", json!(id(variation)));
            variants.push(Variant {
                sku,
                title: (!title.is_empty()).then_some(title),
                barcode: None,
                options,
                price,
                compare_at_price,
                cost: None,
                price_includes_tax: shop.prices_include_tax,
                weight: weight(variation, &shop.weight_unit)?,
                track_inventory: variation.get("manage_stock").and_then(Value::as_bool) == Some(true),
                extra,
            });
        }
        variants.sort_by(|a, b| a.sku.cmp(&b.sku));
        variants
    } else {
        let sku = text(product, "sku").trim().to_string();
        if sku.is_empty() {
            return Err(format!("product {product_id} ({:?}) has no SKU", text(product, "name")));
        }
        let (price, compare_at_price) = prices(product, shop.currency)?;
        vec![Variant {
            sku,
            price,
            compare_at_price,
            price_includes_tax: shop.prices_include_tax,
            weight: weight(product, &shop.weight_unit)?,
            track_inventory: product.get("manage_stock").and_then(Value::as_bool) == Some(true),
            ..Variant::default()
        }]
    };
    let code = match non_empty(product, "sku") {
        Some(sku) => sku,
        None => format!("woo:{product_id}"),
    };
    let mut extra = Extra::new();
    extra.insert("woocommerce_id", json!(product_id));
    extra.insert("woocommerce_type", json!(kind));
    let meta = meta_object(product);
    if meta.as_object().is_some_and(|m| !m.is_empty()) {
        extra.insert("meta_data", meta);
    }
    let names = |key: &str| -> Vec<String> {
        product
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
            .collect()
    };
    Ok(Product {
        code,
        title: text(product, "name").to_string(),
        description: non_empty(product, "description"),
        status: status_of(product),
        vendor: None,
        product_type: None,
        tags: names("tags"),
        categories: names("categories"),
        options,
        variants,
        images,
        attributes,
        tax_class: non_empty(product, "tax_class"),
        updated_at: gmt(product, "date_modified_gmt"),
        extra,
    })
}

fn money_text(value: &Money, shop: &ShopSettings) -> Result<String, String> {
    if value.currency != shop.currency {
        return Err(format!("a price is in {} but the shop sells in {}", value.currency, shop.currency));
    }
    Ok(value.rounded().amount.to_string())
}

/// `regular_price` and `sale_price` from the price the customer pays and the one above it.
fn woo_prices(
    price: Option<&Money>,
    compare_at: Option<&Money>,
    shop: &ShopSettings,
) -> Result<(String, String), String> {
    Ok(match (price, compare_at) {
        (Some(price), Some(compare_at)) if compare_at.amount > price.amount => {
            (money_text(compare_at, shop)?, money_text(price, shop)?)
        }
        (Some(price), _) => (money_text(price, shop)?, String::new()),
        (None, _) => (String::new(), String::new()),
    })
}

fn woo_weight(weight: Option<&Weight>, shop: &ShopSettings) -> Result<Option<String>, String> {
    match weight {
        None => Ok(None),
        Some(weight) if weight.unit == shop.weight_unit => Ok(Some(weight.value.normalize().to_string())),
        Some(weight) => Err(format!("a weight is in {} but the shop weighs in {}", weight.unit, shop.weight_unit)),
    }
}

/// Whether the canonical product is a simple product in WooCommerce.
pub fn is_simple(product: &Product) -> bool {
    product.variants.len() == 1 && product.options.is_empty() && product.variants[0].options.is_empty()
}

/// The product's body for `/products` (without `id`), and for a variable product the
/// variations' bodies by SKU (without `id`). Stock quantities are not written here, nor tags
/// and categories (WooCommerce takes them by term id only and ignores names).
pub fn product_to_woo(product: &Product, shop: &ShopSettings) -> Result<(Value, Vec<(String, Value)>), String> {
    let status = match product.status {
        ProductStatus::Active => "publish",
        ProductStatus::Draft => "draft",
        ProductStatus::Archived => "private",
    };
    let mut attributes: Vec<Value> = product
        .options
        .iter()
        .map(|o| json!({"name": o.name, "options": o.values, "variation": true, "visible": true}))
        .collect();
    attributes.extend(
        product
            .attributes
            .iter()
            .map(|a| json!({"name": a.name, "options": [a.value], "variation": false, "visible": true})),
    );
    let images: Vec<Value> = product
        .images
        .iter()
        .filter(|i| i.variant_skus.is_empty() || is_simple(product))
        .map(|i| json!({"src": i.url, "alt": i.alt.clone().unwrap_or_default()}))
        .collect();
    let mut body = json!({
        "name": product.title,
        "status": status,
        "description": product.description.clone().unwrap_or_default(),
        "attributes": attributes,
        "images": images,
        "tax_class": product.tax_class.clone().unwrap_or_default(),
    });
    if let Some(meta) = product.extra.get("meta_data").and_then(Value::as_object) {
        body["meta_data"] = Value::Array(meta.iter().map(|(k, v)| json!({"key": k, "value": v})).collect());
    }
    if is_simple(product) {
        let variant = &product.variants[0];
        let (regular, sale) = woo_prices(variant.price.as_ref(), variant.compare_at_price.as_ref(), shop)?;
        body["type"] = json!("simple");
        body["sku"] = json!(variant.sku);
        body["regular_price"] = json!(regular);
        body["sale_price"] = json!(sale);
        body["manage_stock"] = json!(variant.track_inventory);
        if let Some(weight) = woo_weight(variant.weight.as_ref(), shop)? {
            body["weight"] = json!(weight);
        }
        return Ok((body, Vec::new()));
    }
    body["type"] = json!("variable");
    body["sku"] = json!(product.code);
    let mut variations = Vec::new();
    for variant in &product.variants {
        let (regular, sale) = woo_prices(variant.price.as_ref(), variant.compare_at_price.as_ref(), shop)?;
        let mut variation = json!({
            "sku": variant.sku,
            "regular_price": regular,
            "sale_price": sale,
            "manage_stock": variant.track_inventory,
            "attributes": variant.options.iter().map(|o| json!({"name": o.option, "option": o.value})).collect::<Vec<_>>(),
        });
        if let Some(weight) = woo_weight(variant.weight.as_ref(), shop)? {
            variation["weight"] = json!(weight);
        }
        if let Some(image) = product.images.iter().find(|i| i.variant_skus.contains(&variant.sku)) {
            variation["image"] = json!({"src": image.url});
        }
        variations.push((variant.sku.clone(), variation));
    }
    Ok((body, variations))
}

fn address_from(value: Option<&Value>, kind: AddressKind) -> Option<Address> {
    let value = value?;
    let line1 = text(value, "address_1").to_string();
    let city = text(value, "city").to_string();
    let country = text(value, "country").to_string();
    if line1.is_empty() && city.is_empty() && country.is_empty() {
        return None;
    }
    Some(Address {
        kind,
        first_name: non_empty(value, "first_name"),
        last_name: non_empty(value, "last_name"),
        company: non_empty(value, "company"),
        line1,
        line2: non_empty(value, "address_2"),
        city,
        region: non_empty(value, "state"),
        postal_code: non_empty(value, "postcode"),
        country,
        phone: non_empty(value, "phone"),
        is_default: true,
    })
}

fn address_to(address: &Address) -> Value {
    json!({
        "first_name": address.first_name.clone().unwrap_or_default(),
        "last_name": address.last_name.clone().unwrap_or_default(),
        "company": address.company.clone().unwrap_or_default(),
        "address_1": address.line1,
        "address_2": address.line2.clone().unwrap_or_default(),
        "city": address.city,
        "state": address.region.clone().unwrap_or_default(),
        "postcode": address.postal_code.clone().unwrap_or_default(),
        "country": address.country,
        "phone": address.phone.clone().unwrap_or_default(),
    })
}

pub fn customer_from_woo(customer: &Value) -> Customer {
    let billing = customer.get("billing");
    let mut addresses = Vec::new();
    addresses.extend(address_from(billing, AddressKind::Billing));
    addresses.extend(address_from(customer.get("shipping"), AddressKind::Shipping));
    let mut extra = Extra::new();
    extra.insert("woocommerce_id", json!(id(customer)));
    let meta = meta_object(customer);
    if meta.as_object().is_some_and(|m| !m.is_empty()) {
        extra.insert("meta_data", meta);
    }
    Customer {
        number: None,
        email: non_empty(customer, "email").map(|e| e.to_lowercase()),
        first_name: non_empty(customer, "first_name"),
        last_name: non_empty(customer, "last_name"),
        company: billing.and_then(|b| non_empty(b, "company")),
        phone: billing.and_then(|b| non_empty(b, "phone")),
        group: None,
        tax_number: None,
        accepts_marketing: false,
        addresses,
        updated_at: gmt(customer, "date_modified_gmt"),
        extra,
    }
}

pub fn customer_to_woo(customer: &Customer) -> Result<Value, String> {
    let Some(email) = customer.email.as_deref().filter(|e| !e.is_empty()) else {
        return Err("WooCommerce customers need an e-mail address".into());
    };
    let mut body = json!({
        "email": email,
        "first_name": customer.first_name.clone().unwrap_or_default(),
        "last_name": customer.last_name.clone().unwrap_or_default(),
    });
    let pick = |kind: AddressKind| {
        customer.addresses.iter().filter(|a| a.kind == kind || a.kind == AddressKind::Both).max_by_key(|a| a.is_default)
    };
    if let Some(address) = pick(AddressKind::Billing) {
        body["billing"] = address_to(address);
        body["billing"]["email"] = json!(email);
        if let Some(company) = &customer.company {
            body["billing"]["company"] = json!(company);
        }
    }
    if let Some(address) = pick(AddressKind::Shipping) {
        body["shipping"] = address_to(address);
    }
    let mut meta = Vec::new();
    if let Some(number) = &customer.number {
        meta.push(json!({"key": "erpsync_customer_number", "value": number}));
    }
    if let Some(object) = customer.extra.get("meta_data").and_then(Value::as_object) {
        meta.extend(object.iter().map(|(k, v)| json!({"key": k, "value": v})));
    }
    if !meta.is_empty() {
        body["meta_data"] = Value::Array(meta);
    }
    Ok(body)
}

fn tax_lines(taxes: Option<&Value>, rates: &[(u64, String, Decimal)]) -> Result<Vec<TaxLine>, String> {
    let mut lines = Vec::new();
    for tax in taxes.and_then(Value::as_array).into_iter().flatten() {
        let rate_id = id(tax);
        let (title, rate) =
            rates.iter().find(|(id, _, _)| *id == rate_id).map(|(_, t, r)| (t.clone(), *r)).unwrap_or_default();
        lines.push(TaxLine { title, rate, amount: amount(tax, "total")? });
    }
    Ok(lines)
}

/// An order with its refunds summed for the financial status.
pub fn order_from_woo(order: &Value) -> Result<Order, String> {
    let currency: Currency = text(order, "currency").parse().map_err(|e| format!("currency: {e}"))?;
    let prices_include_tax = order.get("prices_include_tax").and_then(Value::as_bool).unwrap_or(false);
    let mut rates: Vec<(u64, String, Decimal)> = Vec::new();
    let mut order_taxes = Vec::new();
    for tax in order.get("tax_lines").and_then(Value::as_array).into_iter().flatten() {
        let percent = decimal(tax, "rate_percent")?.unwrap_or_default();
        let rate = percent / Decimal::from(100);
        let label = text(tax, "label").to_string();
        rates.push((tax.get("rate_id").and_then(Value::as_u64).unwrap_or(0), label.clone(), rate));
        order_taxes.push(TaxLine {
            title: label,
            rate,
            amount: amount(tax, "tax_total")? + amount(tax, "shipping_tax_total")?,
        });
    }
    let mut lines = Vec::new();
    let mut subtotal = Decimal::ZERO;
    for item in order.get("line_items").and_then(Value::as_array).into_iter().flatten() {
        let quantity = amount(item, "quantity")?;
        let line_subtotal = amount(item, "subtotal")?;
        let line_total = amount(item, "total")?;
        let line_tax = amount(item, "total_tax")?;
        let subtotal_tax = amount(item, "subtotal_tax")?;
        // WooCommerce's line amounts exclude tax; the canonical line follows the order's convention.
        let (unit_base, total, discount) = if prices_include_tax {
            (
                line_subtotal + subtotal_tax,
                line_total + line_tax,
                (line_subtotal + subtotal_tax) - (line_total + line_tax),
            )
        } else {
            (line_subtotal, line_total, line_subtotal - line_total)
        };
        subtotal += unit_base;
        let unit_price = if quantity.is_zero() { Decimal::ZERO } else { (unit_base / quantity).normalize() };
        let mut extra = Extra::new();
        extra.insert("product_id", item.get("product_id").cloned().unwrap_or(Value::Null));
        extra.insert("variation_id", item.get("variation_id").cloned().unwrap_or(Value::Null));
        lines.push(OrderLine {
            line_id: Some(id(item).to_string()),
            sku: text(item, "sku").to_string(),
            title: text(item, "name").to_string(),
            quantity,
            unit_price,
            discount,
            tax_lines: tax_lines(item.get("taxes"), &rates)?,
            total,
            extra,
        });
    }
    let mut shipping_lines = Vec::new();
    for line in order.get("shipping_lines").and_then(Value::as_array).into_iter().flatten() {
        let price =
            amount(line, "total")? + if prices_include_tax { amount(line, "total_tax")? } else { Decimal::ZERO };
        shipping_lines.push(ShippingLine {
            method: text(line, "method_id").to_string(),
            title: text(line, "method_title").to_string(),
            price,
            tax_lines: tax_lines(line.get("taxes"), &rates)?,
        });
    }
    let discounts = order
        .get("coupon_lines")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            Ok(Discount {
                code: non_empty(c, "code"),
                title: text(c, "code").to_string(),
                amount: amount(c, "discount")?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let total = amount(order, "total")?;
    let refunded: Decimal = order
        .get("refunds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|r| amount(r, "total").map(|t| t.abs()))
        .sum::<Result<Decimal, String>>()?;
    let status = text(order, "status");
    let paid = order.get("date_paid_gmt").is_some_and(|d| !d.is_null());
    let financial_status = if status == "refunded" || (!refunded.is_zero() && refunded >= total) {
        FinancialStatus::Refunded
    } else if !refunded.is_zero() {
        FinancialStatus::PartiallyRefunded
    } else if paid || matches!(status, "processing" | "completed") {
        FinancialStatus::Paid
    } else if matches!(status, "cancelled" | "failed") {
        FinancialStatus::Voided
    } else {
        FinancialStatus::Pending
    };
    let billing = order.get("billing");
    let payments = if paid {
        vec![Payment {
            gateway: text(order, "payment_method").to_string(),
            method: non_empty(order, "payment_method_title"),
            amount: total,
            reference: non_empty(order, "transaction_id"),
        }]
    } else {
        Vec::new()
    };
    let mut extra = Extra::new();
    extra.insert("woocommerce_id", json!(id(order)));
    extra.insert("woocommerce_status", json!(status));
    extra.insert("customer_id", order.get("customer_id").cloned().unwrap_or(Value::Null));
    let meta = meta_object(order);
    if meta.as_object().is_some_and(|m| !m.is_empty()) {
        extra.insert("meta_data", meta);
    }
    Ok(Order {
        number: text(order, "number").to_string(),
        placed_at: gmt(order, "date_created_gmt"),
        updated_at: gmt(order, "date_modified_gmt"),
        currency,
        prices_include_tax,
        rounding: Rounding::PerLine,
        customer: OrderParty {
            email: billing.and_then(|b| non_empty(b, "email")).map(|e| e.to_lowercase()),
            number: None,
            first_name: billing.and_then(|b| non_empty(b, "first_name")),
            last_name: billing.and_then(|b| non_empty(b, "last_name")),
            company: billing.and_then(|b| non_empty(b, "company")),
            phone: billing.and_then(|b| non_empty(b, "phone")),
            group: None,
        },
        billing_address: address_from(billing, AddressKind::Billing),
        shipping_address: address_from(order.get("shipping"), AddressKind::Shipping),
        lines,
        discounts,
        shipping_lines,
        tax_lines: order_taxes,
        totals: OrderTotals {
            subtotal,
            discount_total: amount(order, "discount_total")?,
            shipping_total: amount(order, "shipping_total")?,
            tax_total: amount(order, "total_tax")?,
            total,
        },
        payments,
        financial_status,
        fulfillment_status: if status == "completed" {
            FulfillmentStatus::Fulfilled
        } else {
            FulfillmentStatus::Unfulfilled
        },
        cancellation: (status == "cancelled")
            .then(|| Cancellation { cancelled_at: gmt(order, "date_modified_gmt"), reason: None }),
        note: non_empty(order, "customer_note"),
        sales_channel: Some("woocommerce".into()),
        extra,
    })
}

/// A refund of `order` (amounts in WooCommerce's refunds are negative; canonical ones positive).
pub fn refund_from_woo(order: &Value, refund: &Value) -> Result<Refund, String> {
    let currency: Currency = text(order, "currency").parse().map_err(|e| format!("currency: {e}"))?;
    let mut lines = Vec::new();
    for item in refund.get("line_items").and_then(Value::as_array).into_iter().flatten() {
        lines.push(RefundLine {
            sku: text(item, "sku").to_string(),
            quantity: amount(item, "quantity")?.abs(),
            amount: (amount(item, "total")? + amount(item, "total_tax")?).abs(),
            restock: false,
        });
    }
    let mut extra = Extra::new();
    extra.insert("woocommerce_id", json!(id(refund)));
    extra.insert("refunded_payment", refund.get("refunded_payment").cloned().unwrap_or(Value::Null));
    Ok(Refund {
        number: id(refund).to_string(),
        order_number: text(order, "number").to_string(),
        refunded_at: gmt(refund, "date_created_gmt"),
        currency,
        amount: amount(refund, "amount")?.abs(),
        shipping_amount: Decimal::ZERO,
        reason: non_empty(refund, "reason"),
        lines,
        extra,
    })
}

/// WooCommerce's order status for a canonical state (a refund outranks the state).
pub fn woo_status(state: OrderState, financial: Option<FinancialStatus>) -> &'static str {
    if financial == Some(FinancialStatus::Refunded) {
        return "refunded";
    }
    match state {
        OrderState::Open => "pending",
        OrderState::Processing => "processing",
        OrderState::OnHold => "on-hold",
        OrderState::Completed => "completed",
        OrderState::Cancelled => "cancelled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop() -> ShopSettings {
        ShopSettings { currency: Currency::EUR, prices_include_tax: false, weight_unit: "kg".into() }
    }

    #[test]
    fn sale_price_is_the_price_and_regular_the_compare_at() {
        let simple = json!({"id": 5, "type": "simple", "sku": "A-1", "name": "A", "status": "publish",
            "regular_price": "20.00", "sale_price": "15.50", "manage_stock": true, "weight": "0.5",
            "date_modified_gmt": "2026-03-01T12:00:00"});
        let product = product_from_woo(&simple, &[], &shop()).unwrap();
        let variant = &product.variants[0];
        assert_eq!(variant.price.as_ref().unwrap().amount, Decimal::new(1550, 2));
        assert_eq!(variant.compare_at_price.as_ref().unwrap().amount, Decimal::new(2000, 2));
        assert_eq!(product.updated_at.unwrap().to_rfc3339(), "2026-03-01T12:00:00+00:00");
        let (body, variations) = product_to_woo(&product, &shop()).unwrap();
        assert_eq!((body["regular_price"].as_str(), body["sale_price"].as_str()), (Some("20.00"), Some("15.50")));
        assert!(variations.is_empty());
        let mut usd = product.clone();
        usd.variants[0].price = Some(Money::new(Decimal::ONE, "USD".parse().unwrap()));
        assert!(product_to_woo(&usd, &shop()).unwrap_err().contains("USD"));
    }

    #[test]
    fn a_product_without_sku_is_refused_with_its_id() {
        let error = product_from_woo(&json!({"id": 9, "type": "simple", "name": "X"}), &[], &shop()).unwrap_err();
        assert!(error.contains("product 9"), "{error}");
    }
}
