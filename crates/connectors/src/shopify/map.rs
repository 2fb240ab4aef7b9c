//! Pure conversions of the `shopify` connector: Shopify's GraphQL objects to canonical records
//! and canonical products to `ProductSetInput`. No I/O.
//!
//! Amounts are read from the `shopMoney` half of Shopify's money bags (the shop's currency);
//! the presentment currency the customer saw is kept in `extra`.

use chrono::{DateTime, Utc};
use erpsync_model::{
    Address, AddressKind, Cancellation, Currency, Customer, Discount, Extra, FinancialStatus, FulfillmentStatus, Image,
    Money, OptionValue, Order, OrderLine, OrderParty, OrderState, OrderStatusChange, OrderTotals, Payment, Product,
    ProductOption, ProductStatus, Refund, RefundLine, ShippingLine, StockLevel, TaxLine, Variant,
};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// `value[key]` when `value` is an object. Shopify's objects have a few dozen fields at most, and
/// finding the key among them is several times cheaper than hashing it (serde_json's maps keep
/// their order and hash with SipHash): an order's conversion made about a hundred lookups, and
/// hashing was a third of the mapping benchmark.
fn field<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    match value {
        Value::Object(map) if map.len() <= 32 => {
            map.iter().find(|(name, _)| name.as_str() == key).map(|(_, item)| item)
        }
        Value::Object(map) => map.get(key),
        _ => None,
    }
}

/// The text at `key`, when it is a non-empty string.
pub fn text(value: &Value, key: &str) -> Option<String> {
    field(value, key).and_then(Value::as_str).filter(|text| !text.is_empty()).map(str::to_string)
}

/// The value at a dotted path.
pub fn at<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |current, part| field(current, part)).filter(|value| !value.is_null())
}

/// The nodes of a connection (`nodes` or `edges[].node`), or the items of a plain list.
pub fn nodes(value: Option<&Value>) -> Vec<&Value> {
    match value {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(connection) => {
            if let Some(Value::Array(nodes)) = field(connection, "nodes") {
                return nodes.iter().collect();
            }
            match field(connection, "edges") {
                Some(Value::Array(edges)) => edges.iter().filter_map(|edge| field(edge, "node")).collect(),
                _ => Vec::new(),
            }
        }
        None => Vec::new(),
    }
}

/// A decimal from a `Money`/`Decimal` scalar (a string) or a JSON number.
fn decimal(value: Option<&Value>) -> Option<Decimal> {
    value.filter(|value| !value.is_null()).and_then(|value| erpsync_model::decimal::parse_json(value).ok())
}

/// `xSet.shopMoney.amount`.
fn shop_amount(value: &Value, set: &str) -> Decimal {
    decimal(field(value, set).and_then(|bag| field(bag, "shopMoney")).and_then(|money| field(money, "amount")))
        .unwrap_or_default()
}

fn time(value: &Value, key: &str) -> Option<DateTime<Utc>> {
    field(value, key)
        .and_then(Value::as_str)
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|at| at.with_timezone(&Utc))
}

/// The numeric tail of a global id: `gid://shopify/Order/12` -> `12`.
pub fn legacy_id(gid: &str) -> &str {
    let tail = gid.rsplit('/').next().unwrap_or(gid);
    tail.split('?').next().unwrap_or(tail)
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        Some(Value::String(text)) => {
            text.split(',').map(str::trim).filter(|part| !part.is_empty()).map(str::to_string).collect()
        }
        _ => Vec::new(),
    }
}

/// A product node (see `source::PRODUCT_FIELDS`) as a canonical product. `code_key` is the
/// metafield (`namespace.key`) that holds the product code, when the ERP wrote one.
pub fn product(node: &Value, currency: Currency, code_key: &str) -> Result<Product, String> {
    let id = text(node, "id").ok_or("the product has no id")?;
    let mut metafields = Map::new();
    for metafield in nodes(field(node, "metafields")) {
        if let (Some(namespace), Some(key)) = (text(metafield, "namespace"), text(metafield, "key")) {
            metafields.insert(format!("{namespace}.{key}"), field(metafield, "value").cloned().unwrap_or(Value::Null));
        }
    }
    let code = metafields
        .get(code_key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| text(node, "handle"))
        .unwrap_or_default();
    let options = match field(node, "options") {
        Some(Value::Array(options)) => options
            .iter()
            .map(|option| ProductOption {
                name: text(option, "name").unwrap_or_default(),
                values: match field(option, "optionValues") {
                    Some(Value::Array(values)) => values.iter().filter_map(|value| text(value, "name")).collect(),
                    _ => strings(field(option, "values")),
                },
            })
            .collect(),
        _ => Vec::new(),
    };
    let variants = nodes(field(node, "variants"))
        .into_iter()
        .map(|variant| {
            let mut extra = Extra::new();
            if let Some(id) = text(variant, "id") {
                extra.insert("shopify_id", Value::String(id));
            }
            if let Some(item) = at(variant, "inventoryItem.id").and_then(Value::as_str) {
                extra.insert("shopify_inventory_item_id", Value::String(item.to_string()));
            }
            Variant {
                sku: text(variant, "sku").unwrap_or_default(),
                title: text(variant, "title"),
                barcode: text(variant, "barcode"),
                options: nodes(field(variant, "selectedOptions"))
                    .into_iter()
                    .map(|selected| OptionValue {
                        option: text(selected, "name").unwrap_or_default(),
                        value: text(selected, "value").unwrap_or_default(),
                    })
                    .collect(),
                price: decimal(field(variant, "price")).map(|amount| Money::new(amount, currency)),
                compare_at_price: decimal(field(variant, "compareAtPrice")).map(|amount| Money::new(amount, currency)),
                cost: None,
                price_includes_tax: false,
                weight: None,
                track_inventory: at(variant, "inventoryItem.tracked").and_then(Value::as_bool).unwrap_or(false),
                extra,
            }
        })
        .collect();
    let images = nodes(field(node, "images"))
        .into_iter()
        .enumerate()
        .filter_map(|(index, image)| {
            Some(Image {
                url: text(image, "url")?,
                alt: text(image, "altText"),
                position: index as u32 + 1,
                variant_skus: Vec::new(),
            })
        })
        .collect();
    let mut extra = Extra::new();
    extra.insert("shopify_id", Value::String(id));
    if let Some(handle) = text(node, "handle") {
        extra.insert("handle", Value::String(handle));
    }
    if !metafields.is_empty() {
        extra.insert("metafields", Value::Object(metafields));
    }
    Ok(Product {
        code,
        title: text(node, "title").unwrap_or_default(),
        description: text(node, "descriptionHtml"),
        status: match field(node, "status").and_then(Value::as_str) {
            Some("DRAFT") => ProductStatus::Draft,
            Some("ARCHIVED") => ProductStatus::Archived,
            _ => ProductStatus::Active,
        },
        vendor: text(node, "vendor"),
        product_type: text(node, "productType"),
        tags: strings(field(node, "tags")),
        categories: Vec::new(),
        options,
        variants,
        images,
        attributes: Vec::new(),
        tax_class: None,
        updated_at: time(node, "updatedAt"),
        extra,
    })
}

/// A URL handle from a product code: lower case, letters and digits, single dashes.
pub fn handle(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    for character in code.trim().chars().flat_map(char::to_lowercase) {
        if character.is_alphanumeric() {
            out.push(character);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// The option name and value Shopify gives a product without options.
const DEFAULT_OPTION: (&str, &str) = ("Title", "Default Title");

/// A canonical product as `ProductSetInput`: the full variant list (productSet replaces list
/// fields, so a variant left out would be deleted), options, prices and SKUs. `variant_ids`
/// are the ids of existing variants by SKU: they keep variants (and their stock) when a
/// product is updated. `create` adds the handle derived from the code.
pub fn product_set_input(
    product: &Product,
    variant_ids: &HashMap<String, String>,
    create: bool,
) -> Result<Value, String> {
    if product.variants.is_empty() {
        return Err("variants: a product needs at least one variant".into());
    }
    // Several variants without options get one (`Product::name_variants`), on a copy.
    let named;
    let product = if product.needs_variant_option() {
        let mut with_option = product.clone();
        with_option.name_variants();
        named = with_option;
        &named
    } else {
        product
    };
    let mut options: Vec<ProductOption> = product.options.clone();
    if options.is_empty() {
        for variant in &product.variants {
            for selected in &variant.options {
                match options.iter_mut().find(|option| option.name == selected.option) {
                    Some(option) if !option.values.contains(&selected.value) => {
                        option.values.push(selected.value.clone())
                    }
                    Some(_) => {}
                    None => options
                        .push(ProductOption { name: selected.option.clone(), values: vec![selected.value.clone()] }),
                }
            }
        }
    }
    // Only a single variant can be left without options here (see `Product::name_variants`).
    let default_option = options.is_empty();
    if options.len() > 3 {
        return Err(format!("options: Shopify allows 3 options per product, this one has {}", options.len()));
    }
    let product_options: Vec<Value> = if default_option {
        vec![json!({ "name": DEFAULT_OPTION.0, "values": [{ "name": DEFAULT_OPTION.1 }] })]
    } else {
        options
            .iter()
            .map(|option| {
                json!({
                    "name": option.name,
                    "values": option.values.iter().map(|value| json!({ "name": value })).collect::<Vec<_>>(),
                })
            })
            .collect()
    };
    let mut variants = Vec::with_capacity(product.variants.len());
    for (index, variant) in product.variants.iter().enumerate() {
        let option_values: Vec<Value> = if default_option {
            vec![json!({ "optionName": DEFAULT_OPTION.0, "name": DEFAULT_OPTION.1 })]
        } else {
            if variant.options.len() != options.len() {
                return Err(format!(
                    "variants[{index}].options: the product has {} options, variant {:?} sets {}",
                    options.len(),
                    variant.sku,
                    variant.options.len()
                ));
            }
            variant
                .options
                .iter()
                .map(|selected| json!({ "optionName": selected.option, "name": selected.value }))
                .collect()
        };
        let mut input = Map::new();
        if let Some(id) = variant_ids.get(&variant.sku) {
            input.insert("id".into(), json!(id));
        }
        input.insert("sku".into(), json!(variant.sku));
        input.insert("optionValues".into(), Value::Array(option_values));
        if let Some(price) = &variant.price {
            input.insert("price".into(), json!(price.amount.normalize().to_string()));
        }
        if let Some(price) = &variant.compare_at_price {
            input.insert("compareAtPrice".into(), json!(price.amount.normalize().to_string()));
        }
        if let Some(barcode) = &variant.barcode {
            input.insert("barcode".into(), json!(barcode));
        }
        let mut item = Map::new();
        item.insert("tracked".into(), json!(variant.track_inventory));
        if let Some(cost) = &variant.cost {
            item.insert("cost".into(), json!(cost.amount.normalize().to_string()));
        }
        if let Some(weight) = &variant.weight {
            let unit = match weight.unit.as_str() {
                "g" => "GRAMS",
                "kg" => "KILOGRAMS",
                "lb" => "POUNDS",
                "oz" => "OUNCES",
                other => return Err(format!("variants[{index}].weight.unit: {other:?} is not g, kg, lb or oz")),
            };
            item.insert(
                "measurement".into(),
                json!({ "weight": { "value": weight.value.normalize().to_string(), "unit": unit } }),
            );
        }
        input.insert("inventoryItem".into(), Value::Object(item));
        variants.push(Value::Object(input));
    }
    let mut input = Map::new();
    input.insert("title".into(), json!(product.title));
    if create && !product.code.trim().is_empty() {
        input.insert("handle".into(), json!(handle(&product.code)));
    }
    if let Some(description) = &product.description {
        input.insert("descriptionHtml".into(), json!(description));
    }
    if let Some(vendor) = &product.vendor {
        input.insert("vendor".into(), json!(vendor));
    }
    if let Some(product_type) = &product.product_type {
        input.insert("productType".into(), json!(product_type));
    }
    input.insert(
        "status".into(),
        json!(match product.status {
            ProductStatus::Active => "ACTIVE",
            ProductStatus::Draft => "DRAFT",
            ProductStatus::Archived => "ARCHIVED",
        }),
    );
    input.insert("tags".into(), json!(product.tags));
    input.insert("productOptions".into(), Value::Array(product_options));
    input.insert("variants".into(), Value::Array(variants));
    if !product.images.is_empty() {
        let mut images = product.images.clone();
        images.sort_by_key(|image| image.position);
        input.insert(
            "files".into(),
            Value::Array(
                images
                    .iter()
                    .map(|image| json!({ "originalSource": image.url, "alt": image.alt, "contentType": "IMAGE" }))
                    .collect(),
            ),
        );
    }
    Ok(Value::Object(input))
}

fn address(value: Option<&Value>, kind: AddressKind) -> Option<Address> {
    let value = value.filter(|value| value.is_object())?;
    Some(Address {
        kind,
        first_name: text(value, "firstName"),
        last_name: text(value, "lastName"),
        company: text(value, "company"),
        line1: text(value, "address1").unwrap_or_default(),
        line2: text(value, "address2"),
        city: text(value, "city").unwrap_or_default(),
        region: text(value, "provinceCode").or_else(|| text(value, "province")),
        postal_code: text(value, "zip"),
        country: text(value, "countryCodeV2").or_else(|| text(value, "countryCode")).unwrap_or_default(),
        phone: text(value, "phone"),
        is_default: false,
    })
}

/// A customer node as a canonical customer.
pub fn customer(node: &Value) -> Result<Customer, String> {
    let id = text(node, "id").ok_or("the customer has no id")?;
    let default_id = at(node, "defaultAddress.id").and_then(Value::as_str).map(str::to_string);
    let addresses = nodes(field(node, "addresses"))
        .into_iter()
        .filter_map(|value| {
            let mut address = address(Some(value), AddressKind::Both)?;
            address.is_default = default_id.is_some() && text(value, "id") == default_id;
            Some(address)
        })
        .collect();
    let mut extra = Extra::new();
    extra.insert("shopify_id", Value::String(id));
    if let Some(state) = text(node, "state") {
        extra.insert("state", Value::String(state));
    }
    Ok(Customer {
        number: None,
        email: text(node, "email"),
        first_name: text(node, "firstName"),
        last_name: text(node, "lastName"),
        company: at(node, "defaultAddress.company").and_then(Value::as_str).map(str::to_string),
        phone: text(node, "phone"),
        group: None,
        tax_number: None,
        accepts_marketing: matches!(
            at(node, "emailMarketingConsent.marketingState").and_then(Value::as_str),
            Some("SUBSCRIBED")
        ),
        addresses,
        updated_at: time(node, "updatedAt"),
        extra: {
            let mut extra = extra;
            let tags = strings(field(node, "tags"));
            if !tags.is_empty() {
                extra.insert("tags", json!(tags));
            }
            extra
        },
    })
}

fn tax_lines(value: Option<&Value>) -> Vec<TaxLine> {
    nodes(value)
        .into_iter()
        .map(|line| TaxLine {
            title: text(line, "title").unwrap_or_default(),
            rate: decimal(field(line, "rate")).unwrap_or_default(),
            amount: shop_amount(line, "priceSet"),
        })
        .collect()
}

fn financial_status(value: Option<&str>) -> FinancialStatus {
    match value {
        Some("AUTHORIZED") => FinancialStatus::Authorized,
        Some("PARTIALLY_PAID") => FinancialStatus::PartiallyPaid,
        Some("PAID") => FinancialStatus::Paid,
        Some("PARTIALLY_REFUNDED") => FinancialStatus::PartiallyRefunded,
        Some("REFUNDED") => FinancialStatus::Refunded,
        Some("VOIDED") | Some("EXPIRED") => FinancialStatus::Voided,
        _ => FinancialStatus::Pending,
    }
}

fn fulfillment_status(value: Option<&str>) -> FulfillmentStatus {
    match value {
        Some("FULFILLED") => FulfillmentStatus::Fulfilled,
        Some("PARTIALLY_FULFILLED") => FulfillmentStatus::PartiallyFulfilled,
        Some("RESTOCKED") => FulfillmentStatus::Returned,
        _ => FulfillmentStatus::Unfulfilled,
    }
}

/// An order node (see `source::ORDER_FIELDS`) as a canonical order.
pub fn order(node: &Value) -> Result<Order, String> {
    let id = text(node, "id").ok_or("the order has no id")?;
    let number = text(node, "name").ok_or("the order has no name (order number)")?;
    let currency_code = text(node, "currencyCode").ok_or("the order has no currencyCode")?;
    let currency: Currency = currency_code.parse().map_err(|error| format!("currencyCode: {error}"))?;
    let mut discount_by_index: HashMap<i64, Decimal> = HashMap::new();
    let lines = nodes(field(node, "lineItems"))
        .into_iter()
        .map(|line| {
            for allocation in nodes(field(line, "discountAllocations")) {
                if let Some(index) = at(allocation, "discountApplication.index").and_then(Value::as_i64) {
                    *discount_by_index.entry(index).or_default() += shop_amount(allocation, "allocatedAmountSet");
                }
            }
            let quantity = decimal(field(line, "quantity")).unwrap_or_default();
            let unit_price = shop_amount(line, "originalUnitPriceSet");
            let discount = shop_amount(line, "totalDiscountSet");
            let mut extra = Extra::new();
            if let Some(id) = text(line, "id") {
                extra.insert("shopify_id", Value::String(id.clone()));
            }
            if let Some(current) = field(line, "currentQuantity").filter(|value| !value.is_null()) {
                extra.insert("current_quantity", current.clone());
            }
            OrderLine {
                line_id: text(line, "id"),
                sku: text(line, "sku").unwrap_or_default(),
                title: text(line, "title").or_else(|| text(line, "name")).unwrap_or_default(),
                quantity,
                unit_price,
                discount,
                tax_lines: tax_lines(field(line, "taxLines")),
                total: unit_price * quantity - discount,
                extra,
            }
        })
        .collect::<Vec<_>>();
    let applications = nodes(field(node, "discountApplications"));
    let discount_total = shop_amount(node, "totalDiscountsSet");
    let discounts = applications
        .iter()
        .enumerate()
        .map(|(position, application)| {
            let index = field(application, "index").and_then(Value::as_i64).unwrap_or(position as i64);
            let code = text(application, "code");
            let amount = match discount_by_index.get(&index) {
                Some(amount) => *amount,
                // One application and no allocations asked for: it is the whole discount.
                None if applications.len() == 1 => discount_total,
                None => Decimal::ZERO,
            };
            Discount { title: text(application, "title").or_else(|| code.clone()).unwrap_or_default(), code, amount }
        })
        .collect();
    let shipping_lines = nodes(field(node, "shippingLines"))
        .into_iter()
        .map(|line| ShippingLine {
            method: text(line, "code").or_else(|| text(line, "title")).unwrap_or_default(),
            title: text(line, "title").unwrap_or_default(),
            price: shop_amount(line, "originalPriceSet"),
            tax_lines: tax_lines(field(line, "taxLines")),
        })
        .collect();
    // What was paid, and through which gateways: the same from a read and from a webhook
    // body (which carries no transactions), so a record taken from a body and the same record
    // read later hash alike.
    let gateways = strings(field(node, "paymentGatewayNames"));
    let received = shop_amount(node, "totalPriceSet") - shop_amount(node, "totalOutstandingSet");
    let payments = if gateways.is_empty() || received <= Decimal::ZERO {
        Vec::new()
    } else {
        vec![Payment { gateway: gateways.join(", "), method: None, amount: received, reference: None }]
    };
    let customer = field(node, "customer").filter(|customer| customer.is_object());
    let party = OrderParty {
        email: text(node, "email").or_else(|| customer.and_then(|customer| text(customer, "email"))),
        number: None,
        first_name: customer.and_then(|customer| text(customer, "firstName")),
        last_name: customer.and_then(|customer| text(customer, "lastName")),
        company: at(node, "billingAddress.company").and_then(Value::as_str).map(str::to_string),
        phone: text(node, "phone").or_else(|| customer.and_then(|customer| text(customer, "phone"))),
        group: None,
    };
    let cancellation = field(node, "cancelledAt").and_then(Value::as_str).map(|_| Cancellation {
        cancelled_at: time(node, "cancelledAt"),
        reason: text(node, "cancelReason").map(|reason| reason.to_lowercase()),
    });
    let mut extra = Extra::new();
    extra.insert("shopify_id", Value::String(id));
    if let Some(customer_id) = customer.and_then(|customer| text(customer, "id")) {
        extra.insert("shopify_customer_id", Value::String(customer_id));
    }
    if let Some(presentment) = text(node, "presentmentCurrencyCode").filter(|code| *code != currency_code) {
        extra.insert("presentment_currency", Value::String(presentment));
    }
    if let Some(closed) = field(node, "closed").and_then(Value::as_bool) {
        extra.insert("closed", Value::Bool(closed));
    }
    let tags = strings(field(node, "tags"));
    if !tags.is_empty() {
        extra.insert("tags", json!(tags));
    }
    Ok(Order {
        number,
        placed_at: time(node, "processedAt").or_else(|| time(node, "createdAt")),
        updated_at: time(node, "updatedAt"),
        currency,
        prices_include_tax: field(node, "taxesIncluded").and_then(Value::as_bool).unwrap_or(false),
        rounding: Default::default(),
        customer: party,
        billing_address: address(field(node, "billingAddress"), AddressKind::Billing),
        shipping_address: address(field(node, "shippingAddress"), AddressKind::Shipping),
        lines,
        discounts,
        shipping_lines,
        tax_lines: tax_lines(field(node, "taxLines")),
        totals: OrderTotals {
            subtotal: shop_amount(node, "subtotalPriceSet"),
            discount_total,
            shipping_total: shop_amount(node, "totalShippingPriceSet"),
            tax_total: shop_amount(node, "totalTaxSet"),
            total: shop_amount(node, "totalPriceSet"),
        },
        payments,
        financial_status: financial_status(field(node, "displayFinancialStatus").and_then(Value::as_str)),
        fulfillment_status: fulfillment_status(field(node, "displayFulfillmentStatus").and_then(Value::as_str)),
        cancellation,
        note: text(node, "note"),
        sales_channel: text(node, "sourceName"),
        extra,
    })
}

/// An order as REST-shaped webhook bodies carry it (`orders/create`, `orders/updated`, …) as a
/// canonical order: the same record [`order`] makes of the GraphQL read of that order.
pub fn order_from_rest(body: &Value) -> Result<Order, String> {
    order(&rest_order_node(body)?)
}

/// A REST order body in the shape of the GraphQL order node `source::ORDER_FIELDS` reads, so
/// one conversion serves both.
fn rest_order_node(body: &Value) -> Result<Value, String> {
    let gid = |value: &Value, kind: &str| -> Option<String> {
        text(value, "admin_graphql_api_id")
            .or_else(|| field(value, "id").and_then(Value::as_u64).map(|id| format!("gid://shopify/{kind}/{id}")))
    };
    let id = gid(body, "Order").ok_or("the order has neither admin_graphql_api_id nor a numeric id")?;
    let money = |value: &Value, set: &str, plain: &str| -> Value {
        let amount = at(value, &format!("{set}.shop_money.amount")).or_else(|| field(value, plain)).cloned();
        json!({ "shopMoney": { "amount": amount.unwrap_or(Value::Null) } })
    };
    let taxes = |value: &Value| -> Value {
        Value::Array(
            nodes(field(value, "tax_lines"))
                .into_iter()
                .map(|line| {
                    json!({
                        "title": field(line, "title"),
                        "rate": field(line, "rate"),
                        "priceSet": money(line, "price_set", "price"),
                    })
                })
                .collect(),
        )
    };
    let address = |value: Option<&Value>| -> Value {
        match value.filter(|value| value.is_object()) {
            Some(address) => json!({
                "firstName": field(address, "first_name"),
                "lastName": field(address, "last_name"),
                "company": field(address, "company"),
                "address1": field(address, "address1"),
                "address2": field(address, "address2"),
                "city": field(address, "city"),
                "provinceCode": field(address, "province_code"),
                "countryCodeV2": field(address, "country_code"),
                "zip": field(address, "zip"),
                "phone": field(address, "phone"),
            }),
            None => Value::Null,
        }
    };
    let lines: Vec<Value> = nodes(field(body, "line_items"))
        .into_iter()
        .map(|line| {
            json!({
                "id": gid(line, "LineItem"),
                "sku": field(line, "sku"),
                "title": field(line, "title").filter(|title| !title.is_null()).or_else(|| field(line, "name")),
                "quantity": field(line, "quantity"),
                "currentQuantity": field(line, "current_quantity"),
                "originalUnitPriceSet": money(line, "price_set", "price"),
                "totalDiscountSet": money(line, "total_discount_set", "total_discount"),
                "taxLines": taxes(line),
            })
        })
        .collect();
    // Per-line allocations are left out, as the read leaves them out: one application takes
    // the order's whole discount either way.
    let applications: Vec<Value> = nodes(field(body, "discount_applications"))
        .into_iter()
        // The read asks for the first 5 (`discountApplications(first: 5)`).
        .take(5)
        .enumerate()
        .map(|(index, application)| {
            let code = (field(application, "type").and_then(Value::as_str) == Some("discount_code"))
                .then(|| field(application, "code").cloned())
                .flatten();
            json!({ "index": index, "code": code, "title": field(application, "title") })
        })
        .collect();
    let shipping_lines: Vec<Value> = nodes(field(body, "shipping_lines"))
        .into_iter()
        .map(|line| {
            json!({
                "title": field(line, "title"),
                "code": field(line, "code"),
                "originalPriceSet": money(line, "price_set", "price"),
                "taxLines": taxes(line),
            })
        })
        .collect();
    let customer = field(body, "customer").filter(|customer| customer.is_object()).map(|customer| {
        json!({
            "id": gid(customer, "Customer"),
            "email": field(customer, "email"),
            "firstName": field(customer, "first_name"),
            "lastName": field(customer, "last_name"),
            "phone": field(customer, "phone"),
        })
    });
    let upper = |key: &str| field(body, key).and_then(Value::as_str).map(str::to_uppercase);
    let fulfillment = match field(body, "fulfillment_status").and_then(Value::as_str) {
        Some("fulfilled") => Some("FULFILLED"),
        Some("partial") => Some("PARTIALLY_FULFILLED"),
        Some("restocked") => Some("RESTOCKED"),
        _ => None,
    };
    Ok(json!({
        "id": id,
        "name": field(body, "name"),
        "email": field(body, "email"),
        "phone": field(body, "phone"),
        "note": field(body, "note"),
        "tags": field(body, "tags"),
        "createdAt": field(body, "created_at"),
        "processedAt": field(body, "processed_at"),
        "updatedAt": field(body, "updated_at"),
        "cancelledAt": field(body, "cancelled_at"),
        "cancelReason": upper("cancel_reason"),
        "closed": field(body, "closed_at").map(|closed| !closed.is_null()),
        "currencyCode": field(body, "currency"),
        "presentmentCurrencyCode": field(body, "presentment_currency"),
        "taxesIncluded": field(body, "taxes_included"),
        "displayFinancialStatus": upper("financial_status"),
        "displayFulfillmentStatus": fulfillment,
        "sourceName": field(body, "source_name"),
        "subtotalPriceSet": money(body, "subtotal_price_set", "subtotal_price"),
        "totalPriceSet": money(body, "total_price_set", "total_price"),
        "totalTaxSet": money(body, "total_tax_set", "total_tax"),
        "totalShippingPriceSet": money(body, "total_shipping_price_set", "total_shipping_price"),
        "totalDiscountsSet": money(body, "total_discounts_set", "total_discounts"),
        "totalOutstandingSet": { "shopMoney": { "amount": field(body, "total_outstanding") } },
        "paymentGatewayNames": field(body, "payment_gateway_names"),
        "taxLines": taxes(body),
        "discountApplications": applications,
        "billingAddress": address(field(body, "billing_address")),
        "shippingAddress": address(field(body, "shipping_address")),
        "customer": customer,
        "lineItems": lines,
        "shippingLines": shipping_lines,
    }))
}

/// The order's state as a status change at its `updatedAt`.
pub fn order_status(node: &Value) -> Result<OrderStatusChange, String> {
    let order = order(node)?;
    let state = if order.cancellation.is_some() {
        OrderState::Cancelled
    } else if field(node, "closed").and_then(Value::as_bool) == Some(true) {
        OrderState::Completed
    } else if order.fulfillment_status == FulfillmentStatus::PartiallyFulfilled {
        OrderState::Processing
    } else {
        OrderState::Open
    };
    let mut extra = Extra::new();
    if let Some(id) = order.extra.get("shopify_id") {
        extra.insert("shopify_id", id.clone());
    }
    Ok(OrderStatusChange {
        order_number: order.number,
        state,
        financial_status: Some(order.financial_status),
        fulfillment_status: Some(order.fulfillment_status),
        changed_at: order.updated_at,
        note: order.cancellation.and_then(|cancellation| cancellation.reason),
        extra,
    })
}

/// The refunds of an order node, each as a canonical refund. Refund lines name their SKU
/// through the order's line items.
pub fn refunds(node: &Value) -> Result<Vec<(String, Refund)>, String> {
    let number = text(node, "name").ok_or("the order has no name (order number)")?;
    let currency: Currency = text(node, "currencyCode")
        .ok_or("the order has no currencyCode")?
        .parse()
        .map_err(|error| format!("currencyCode: {error}"))?;
    let skus: HashMap<String, String> = nodes(field(node, "lineItems"))
        .into_iter()
        .filter_map(|line| Some((text(line, "id")?, text(line, "sku")?)))
        .collect();
    let mut out = Vec::new();
    for refund in nodes(field(node, "refunds")) {
        let id = text(refund, "id").ok_or("a refund has no id")?;
        let lines = nodes(field(refund, "refundLineItems"))
            .into_iter()
            .map(|line| {
                let line_id = at(line, "lineItem.id").and_then(Value::as_str).unwrap_or_default();
                RefundLine {
                    sku: at(line, "lineItem.sku")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .or_else(|| skus.get(line_id).cloned())
                        .unwrap_or_default(),
                    quantity: decimal(field(line, "quantity")).unwrap_or_default(),
                    amount: shop_amount(line, "subtotalSet"),
                    restock: matches!(
                        field(line, "restockType").and_then(Value::as_str),
                        Some("RETURN" | "CANCEL" | "LEGACY_RESTOCK")
                    ),
                }
            })
            .collect();
        let mut extra = Extra::new();
        extra.insert("shopify_id", Value::String(id.clone()));
        let refund_record = Refund {
            number: format!("{number}-R{}", legacy_id(&id)),
            order_number: number.clone(),
            refunded_at: time(refund, "createdAt"),
            currency,
            amount: shop_amount(refund, "totalRefundedSet"),
            shipping_amount: Decimal::ZERO,
            reason: text(refund, "note"),
            lines,
            extra,
        };
        out.push((id, refund_record));
    }
    Ok(out)
}

/// A variant's inventory levels as stock levels, one per location.
pub fn stock_levels(variant: &Value) -> Vec<StockLevel> {
    let sku = text(variant, "sku").unwrap_or_default();
    let Some(item) = field(variant, "inventoryItem") else { return Vec::new() };
    nodes(field(item, "inventoryLevels"))
        .into_iter()
        .map(|level| {
            let quantity = |name: &str| {
                nodes(field(level, "quantities"))
                    .into_iter()
                    .find(|quantity| field(quantity, "name").and_then(Value::as_str) == Some(name))
                    .and_then(|quantity| decimal(field(quantity, "quantity")))
            };
            let mut extra = Extra::new();
            if let Some(id) = at(level, "location.id").and_then(Value::as_str) {
                extra.insert("shopify_location_id", Value::String(id.to_string()));
            }
            StockLevel {
                sku: sku.clone(),
                location: at(level, "location.name").and_then(Value::as_str).unwrap_or_default().to_string(),
                available: quantity("available").unwrap_or_default(),
                on_hand: quantity("on_hand"),
                updated_at: time(level, "updatedAt"),
                extra,
            }
        })
        .collect()
}

/// `userErrors` as one message per error: `field.path: message`.
pub fn user_error_messages(errors: &[Value]) -> Vec<(Vec<String>, String)> {
    errors
        .iter()
        .map(|error| {
            let path: Vec<String> = match field(error, "field") {
                Some(Value::Array(parts)) => {
                    parts.iter().map(|part| part.as_str().map_or(part.to_string(), str::to_string)).collect()
                }
                _ => Vec::new(),
            };
            let message = text(error, "message").unwrap_or_else(|| "unnamed error".into());
            let code = text(error, "code");
            let message = match code {
                Some(code) => format!("{message} ({code})"),
                None => message,
            };
            (path, message)
        })
        .collect()
}

/// `userErrors` joined into one sentence naming the fields.
pub fn describe_user_errors(errors: &[Value]) -> String {
    user_error_messages(errors)
        .into_iter()
        .map(|(field, message)| if field.is_empty() { message } else { format!("{}: {message}", field.join(".")) })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_from_codes() {
        assert_eq!(handle("P-100 Blue/Shirt"), "p-100-blue-shirt");
        assert_eq!(handle("  --A__B--  "), "a-b");
    }

    #[test]
    fn a_simple_product_gets_the_default_option() {
        let product = Product {
            code: "MUG".into(),
            title: "Mug".into(),
            variants: vec![Variant {
                sku: "MUG-1".into(),
                price: Some(Money::new(Decimal::new(1250, 2), Currency::EUR)),
                ..Variant::default()
            }],
            ..Product::default()
        };
        let input = product_set_input(&product, &HashMap::new(), true).unwrap();
        assert_eq!(input["handle"], "mug");
        assert_eq!(input["productOptions"][0]["name"], "Title");
        assert_eq!(input["variants"][0]["optionValues"][0]["name"], "Default Title");
        assert_eq!(input["variants"][0]["price"], "12.5");
        let ids = HashMap::from([("MUG-1".to_string(), "gid://shopify/ProductVariant/9".to_string())]);
        let input = product_set_input(&product, &ids, false).unwrap();
        assert_eq!(input["variants"][0]["id"], "gid://shopify/ProductVariant/9");
        assert!(input.get("handle").is_none());
    }

    #[test]
    fn several_variants_without_options_are_told_apart_by_a_variant_option() {
        let variant = |sku: &str, title: Option<&str>| Variant {
            sku: sku.into(),
            title: title.map(str::to_string),
            ..Variant::default()
        };
        let product = Product {
            title: "Shirt".into(),
            variants: vec![variant("A", Some("Blue")), variant("B", Some("Red"))],
            ..Product::default()
        };
        let input = product_set_input(&product, &HashMap::new(), true).unwrap();
        assert_eq!(
            input["productOptions"],
            json!([{"name": "Variant", "values": [{"name": "Blue"}, {"name": "Red"}]}])
        );
        assert_eq!(input["variants"][1]["optionValues"], json!([{"optionName": "Variant", "name": "Red"}]));
        // Titles that repeat (or are missing) cannot tell variants apart: the SKUs do.
        let product = Product {
            variants: vec![variant("A", Some("Shirt")), variant("B", Some("Shirt")), variant("C", None)],
            ..product
        };
        let input = product_set_input(&product, &HashMap::new(), true).unwrap();
        let values: Vec<&Value> = input["productOptions"][0]["values"].as_array().unwrap().iter().collect();
        assert_eq!(values, [&json!({"name": "A"}), &json!({"name": "B"}), &json!({"name": "C"})]);
    }

    #[test]
    fn order_amounts_come_from_shop_money() {
        let bag = |amount: &str| json!({"shopMoney": {"amount": amount, "currencyCode": "EUR"}});
        let node = json!({
            "id": "gid://shopify/Order/1", "name": "#1001", "currencyCode": "EUR", "taxesIncluded": true,
            "displayFinancialStatus": "PARTIALLY_REFUNDED", "displayFulfillmentStatus": "FULFILLED",
            "cancelledAt": null, "email": "a@example.com",
            "subtotalPriceSet": bag("20.00"), "totalPriceSet": bag("24.90"), "totalTaxSet": bag("3.98"),
            "totalShippingPriceSet": bag("4.90"), "totalDiscountsSet": bag("0.00"),
            "taxLines": [{"title": "VAT", "rate": 0.19, "priceSet": bag("3.98")}],
            "lineItems": {"nodes": [{"id": "gid://shopify/LineItem/5", "sku": "A", "title": "Shirt", "quantity": 2,
                "originalUnitPriceSet": bag("10.00"), "totalDiscountSet": bag("0.00"), "taxLines": []}]},
            "shippingLines": {"nodes": [{"title": "DHL", "code": "dhl", "originalPriceSet": bag("4.90")}]},
        });
        let order = order(&node).unwrap();
        assert_eq!(order.number, "#1001");
        assert_eq!(order.totals.total, Decimal::new(2490, 2));
        assert_eq!(order.lines[0].total, Decimal::new(2000, 2));
        assert_eq!(order.financial_status, FinancialStatus::PartiallyRefunded);
        assert_eq!(order.tax_lines[0].rate, Decimal::new(19, 2));
        assert!(erpsync_model::Record::Order(order).validate().is_ok());
    }
}
