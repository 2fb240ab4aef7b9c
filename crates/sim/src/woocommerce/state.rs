//! The shop's data (products, variations, customers, orders, notes, refunds, webhooks), the
//! simulated clock, validation of written fields, and the REST representation of each resource.
//!
//! Dates are kept in UTC with second precision, as WordPress stores them; the REST form shows
//! each date twice, in the site's time zone without an offset (`date_modified`) and in GMT
//! (`date_modified_gmt`). Money is kept in cents and shown as strings with two decimals.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use serde_json::{Map, Value as Json, json};

/// A clock that starts at a chosen instant and runs at a chosen speed (0 freezes it), and that
/// tests can move forward.
#[derive(Debug)]
pub struct SimClock {
    inner: Mutex<(DateTime<Utc>, Instant, f64)>,
}

impl SimClock {
    pub fn new(start: DateTime<Utc>, scale: f64) -> Self {
        Self { inner: Mutex::new((start, Instant::now(), scale)) }
    }

    /// Now, truncated to the second as WordPress stores dates.
    pub fn now(&self) -> DateTime<Utc> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = inner.1.elapsed().as_secs_f64() * inner.2;
        (inner.0 + chrono::Duration::milliseconds((elapsed * 1000.0) as i64)).trunc_subsecs(0)
    }

    pub fn advance(&self, by: Duration) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.0 += chrono::Duration::from_std(by).unwrap_or_default();
    }

    pub fn set(&self, at: DateTime<Utc>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.0 = at;
        inner.1 = Instant::now();
    }
}

/// An error in WooCommerce's envelope: `{code, message, data: {status}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct WooError {
    pub status: u16,
    pub code: String,
    pub message: String,
    /// `data.params` of `rest_invalid_param`: parameter name to what is wrong.
    pub params: Option<Box<Map<String, Json>>>,
}

impl WooError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self { status, code: code.into(), message: message.into(), params: None }
    }

    /// WordPress's `rest_invalid_param`: 400 with one message per bad parameter.
    pub fn invalid_params(params: Vec<(String, String)>) -> Self {
        let names: Vec<&str> = params.iter().map(|(name, _)| name.as_str()).collect();
        let message = format!("Invalid parameter(s): {}", names.join(", "));
        let params = params.into_iter().map(|(name, text)| (name, Json::String(text))).collect();
        Self { status: 400, code: "rest_invalid_param".into(), message, params: Some(Box::new(params)) }
    }

    pub fn invalid_param(name: &str, message: impl Into<String>) -> Self {
        Self::invalid_params(vec![(name.to_string(), message.into())])
    }

    pub fn to_json(&self) -> Json {
        let mut data = json!({"status": self.status});
        if let Some(params) = &self.params {
            data["params"] = Json::Object((**params).clone());
        }
        json!({"code": self.code, "message": self.message, "data": data})
    }
}

/// `"19.99"` from cents.
pub fn money(cents: i64) -> String {
    format!("{}{}.{:02}", if cents < 0 { "-" } else { "" }, cents.abs() / 100, cents.abs() % 100)
}

/// Cents from a decimal string with at most two decimals; `None` when it is not one.
pub fn parse_money(text: &str) -> Option<i64> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !fraction.chars().all(|c| c.is_ascii_digit())
        || fraction.len() > 2
    {
        return None;
    }
    let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let fraction: i64 = format!("{fraction:0<2}").parse().ok()?;
    let cents = whole.checked_mul(100)?.checked_add(fraction)?;
    Some(if negative { -cents } else { cents })
}

/// Rounds `value * basis_points / 10000` half away from zero.
pub fn apply_rate(cents: i64, basis_points: i64) -> i64 {
    let product = cents * basis_points;
    let (quotient, remainder) = (product / 10_000, product % 10_000);
    if remainder.abs() * 2 >= 10_000 { quotient + product.signum() } else { quotient }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub id: u64,
    pub key: String,
    pub value: Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub id: u64,
    pub src: String,
    pub name: String,
    pub alt: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    pub id: u64,
    pub name: String,
    pub slug: String,
    /// `simple` or `variable` (the simulator does not model grouped and external products).
    pub kind: String,
    pub status: String,
    pub description: String,
    pub short_description: String,
    pub sku: String,
    pub regular_price: String,
    pub sale_price: String,
    pub tax_status: String,
    pub tax_class: String,
    pub manage_stock: bool,
    pub stock_quantity: Option<i64>,
    pub stock_status: String,
    pub weight: String,
    pub categories: Vec<u64>,
    pub tags: Vec<String>,
    pub images: Vec<Image>,
    /// `[{id, name, position, visible, variation, options}]` as written.
    pub attributes: Vec<Json>,
    pub meta_data: Vec<Meta>,
    pub variations: Vec<u64>,
    pub date_created: DateTime<Utc>,
    pub date_modified: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Variation {
    pub id: u64,
    pub parent_id: u64,
    pub status: String,
    pub description: String,
    pub sku: String,
    pub regular_price: String,
    pub sale_price: String,
    pub tax_class: String,
    pub manage_stock: bool,
    pub stock_quantity: Option<i64>,
    pub stock_status: String,
    pub weight: String,
    pub image: Option<Image>,
    /// `[{id, name, option}]`.
    pub attributes: Vec<Json>,
    pub meta_data: Vec<Meta>,
    pub date_created: DateTime<Utc>,
    pub date_modified: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: u64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub username: String,
    pub billing: Map<String, Json>,
    pub shipping: Map<String, Json>,
    pub meta_data: Vec<Meta>,
    pub date_created: DateTime<Utc>,
    pub date_modified: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LineItem {
    pub id: u64,
    pub name: String,
    pub product_id: u64,
    pub variation_id: u64,
    pub sku: String,
    pub quantity: i64,
    /// Unit price before discounts, tax exclusive.
    pub price: i64,
    pub subtotal: i64,
    pub subtotal_tax: i64,
    pub total: i64,
    pub total_tax: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ShippingLine {
    pub id: u64,
    pub method_id: String,
    pub method_title: String,
    pub total: i64,
    pub total_tax: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CouponLine {
    pub id: u64,
    pub code: String,
    pub discount: i64,
    pub discount_tax: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: u64,
    pub number: String,
    pub order_key: String,
    pub status: String,
    pub currency: String,
    pub prices_include_tax: bool,
    pub customer_id: u64,
    pub billing: Map<String, Json>,
    pub shipping: Map<String, Json>,
    pub payment_method: String,
    pub payment_method_title: String,
    pub transaction_id: String,
    pub customer_note: String,
    pub line_items: Vec<LineItem>,
    pub shipping_lines: Vec<ShippingLine>,
    pub coupon_lines: Vec<CouponLine>,
    /// The one tax rate the simulated shop charges.
    pub tax_rate_id: u64,
    pub tax_basis_points: i64,
    pub meta_data: Vec<Meta>,
    pub refunds: Vec<u64>,
    pub date_created: DateTime<Utc>,
    pub date_modified: DateTime<Utc>,
    pub date_paid: Option<DateTime<Utc>>,
    pub date_completed: Option<DateTime<Utc>>,
}

impl Order {
    pub fn cart_tax(&self) -> i64 {
        self.line_items.iter().map(|l| l.total_tax).sum()
    }
    pub fn shipping_total(&self) -> i64 {
        self.shipping_lines.iter().map(|s| s.total).sum()
    }
    pub fn shipping_tax(&self) -> i64 {
        self.shipping_lines.iter().map(|s| s.total_tax).sum()
    }
    pub fn discount_total(&self) -> i64 {
        self.coupon_lines.iter().map(|c| c.discount).sum()
    }
    pub fn discount_tax(&self) -> i64 {
        self.coupon_lines.iter().map(|c| c.discount_tax).sum()
    }
    pub fn total_tax(&self) -> i64 {
        self.cart_tax() + self.shipping_tax()
    }
    pub fn total(&self) -> i64 {
        self.line_items.iter().map(|l| l.total).sum::<i64>() + self.shipping_total() + self.total_tax()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RefundLine {
    pub id: u64,
    /// The order's line item this refunds.
    pub refunded_item_id: u64,
    pub name: String,
    pub product_id: u64,
    pub variation_id: u64,
    pub sku: String,
    pub quantity: i64,
    pub total: i64,
    pub total_tax: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Refund {
    pub id: u64,
    pub order_id: u64,
    pub amount: i64,
    pub reason: String,
    pub refunded_payment: bool,
    pub line_items: Vec<RefundLine>,
    pub date_created: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub id: u64,
    pub author: String,
    pub note: String,
    pub customer_note: bool,
    pub added_by_user: bool,
    pub date_created: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: u64,
    pub name: String,
    pub status: String,
    pub topic: String,
    pub delivery_url: String,
    pub secret: String,
    pub failure_count: u32,
    pub date_created: DateTime<Utc>,
    pub date_modified: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Category {
    pub id: u64,
    pub name: String,
    pub slug: String,
    pub parent: u64,
}

/// Everything the shop holds. Posts (products, variations, orders, refunds) share one id
/// sequence as WordPress posts do; users have their own.
#[derive(Debug, Clone)]
pub struct Store {
    next_post_id: u64,
    next_user_id: u64,
    next_item_id: u64,
    next_meta_id: u64,
    next_other_id: u64,
    pub products: BTreeMap<u64, Product>,
    pub variations: BTreeMap<u64, Variation>,
    pub customers: BTreeMap<u64, Customer>,
    pub orders: BTreeMap<u64, Order>,
    pub refunds: BTreeMap<u64, Refund>,
    pub notes: BTreeMap<u64, Vec<Note>>,
    pub webhooks: BTreeMap<u64, Webhook>,
    pub categories: BTreeMap<u64, Category>,
    /// Used OAuth nonces per consumer key, with their timestamps.
    pub nonces: HashMap<String, HashMap<String, i64>>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

/// The site's time zone, as a fixed offset from GMT.
#[derive(Debug, Clone, Copy)]
pub struct SiteZone {
    pub offset_minutes: i32,
}

impl SiteZone {
    pub fn local(&self, at: DateTime<Utc>) -> String {
        (at.naive_utc() + chrono::Duration::minutes(self.offset_minutes as i64)).format("%Y-%m-%dT%H:%M:%S").to_string()
    }

    pub fn gmt(&self, at: DateTime<Utc>) -> String {
        at.naive_utc().format("%Y-%m-%dT%H:%M:%S").to_string()
    }

    /// A wall time in the site's zone as UTC.
    pub fn from_local(&self, at: NaiveDateTime) -> DateTime<Utc> {
        (at - chrono::Duration::minutes(self.offset_minutes as i64)).and_utc()
    }
}

pub const ORDER_STATUSES: [&str; 8] =
    ["pending", "processing", "on-hold", "completed", "cancelled", "refunded", "failed", "trash"];
pub const PRODUCT_STATUSES: [&str; 4] = ["draft", "pending", "private", "publish"];
pub const STOCK_STATUSES: [&str; 3] = ["instock", "outofstock", "onbackorder"];
pub const WEBHOOK_TOPICS: [&str; 15] = [
    "order.created",
    "order.updated",
    "order.deleted",
    "order.restored",
    "product.created",
    "product.updated",
    "product.deleted",
    "product.restored",
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "coupon.created",
    "coupon.updated",
    "coupon.deleted",
    "coupon.restored",
];

fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').to_string()
}

fn string_field(body: &Map<String, Json>, name: &str) -> Result<Option<String>, WooError> {
    match body.get(name) {
        None => Ok(None),
        Some(Json::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(WooError::invalid_param(name, format!("{name} is not of type string."))),
    }
}

fn bool_field(body: &Map<String, Json>, name: &str) -> Result<Option<bool>, WooError> {
    match body.get(name) {
        None => Ok(None),
        Some(Json::Bool(value)) => Ok(Some(*value)),
        Some(_) => Err(WooError::invalid_param(name, format!("{name} is not of type boolean."))),
    }
}

fn enum_field(body: &Map<String, Json>, name: &str, allowed: &[&str]) -> Result<Option<String>, WooError> {
    match string_field(body, name)? {
        None => Ok(None),
        Some(value) if allowed.contains(&value.as_str()) => Ok(Some(value)),
        Some(_) => Err(WooError::invalid_param(name, format!("{name} is not one of {}.", allowed.join(", ")))),
    }
}

fn price_field(body: &Map<String, Json>, name: &str) -> Result<Option<String>, WooError> {
    match string_field(body, name)? {
        None => Ok(None),
        Some(text) if text.is_empty() => Ok(Some(text)),
        Some(text) => match parse_money(&text) {
            Some(cents) if cents >= 0 => Ok(Some(text)),
            _ => Err(WooError::invalid_param(name, format!("{name} is not a valid price."))),
        },
    }
}

fn stock_quantity_field(body: &Map<String, Json>) -> Result<Option<Option<i64>>, WooError> {
    match body.get("stock_quantity") {
        None => Ok(None),
        Some(Json::Null) => Ok(Some(None)),
        Some(value) => match value.as_i64() {
            Some(quantity) => Ok(Some(Some(quantity))),
            None => Err(WooError::invalid_param("stock_quantity", "stock_quantity is not of type integer.")),
        },
    }
}

fn id_of(value: &Json) -> Option<u64> {
    match value {
        Json::Number(n) => n.as_u64(),
        Json::String(s) => s.parse().ok(),
        _ => None,
    }
}

impl Store {
    pub fn new() -> Self {
        Self {
            next_post_id: 10,
            next_user_id: 2,
            next_item_id: 1,
            next_meta_id: 1,
            next_other_id: 1,
            products: BTreeMap::new(),
            variations: BTreeMap::new(),
            customers: BTreeMap::new(),
            orders: BTreeMap::new(),
            refunds: BTreeMap::new(),
            notes: BTreeMap::new(),
            webhooks: BTreeMap::new(),
            categories: BTreeMap::new(),
            nonces: HashMap::new(),
        }
    }

    pub fn next_post_id(&mut self) -> u64 {
        let id = self.next_post_id;
        self.next_post_id += 1;
        id
    }

    pub fn next_user_id(&mut self) -> u64 {
        let id = self.next_user_id;
        self.next_user_id += 1;
        id
    }

    pub fn next_item_id(&mut self) -> u64 {
        let id = self.next_item_id;
        self.next_item_id += 1;
        id
    }

    pub fn next_other_id(&mut self) -> u64 {
        let id = self.next_other_id;
        self.next_other_id += 1;
        id
    }

    /// Which product or variation holds `sku`, if any (SKUs are unique across both).
    pub fn sku_owner(&self, sku: &str) -> Option<u64> {
        if sku.is_empty() {
            return None;
        }
        self.products
            .values()
            .find(|p| p.sku == sku)
            .map(|p| p.id)
            .or_else(|| self.variations.values().find(|v| v.sku == sku).map(|v| v.id))
    }

    fn check_sku(&self, sku: &str, own_id: Option<u64>) -> Result<(), WooError> {
        match self.sku_owner(sku) {
            Some(owner) if Some(owner) != own_id => {
                Err(WooError::new(400, "product_invalid_sku", "Invalid or duplicated SKU."))
            }
            _ => Ok(()),
        }
    }

    fn apply_meta(&mut self, meta: &mut Vec<Meta>, body: &Map<String, Json>) -> Result<(), WooError> {
        let Some(value) = body.get("meta_data") else { return Ok(()) };
        let Some(entries) = value.as_array() else {
            return Err(WooError::invalid_param("meta_data", "meta_data is not of type array."));
        };
        for entry in entries {
            let Some(key) = entry.get("key").and_then(Json::as_str) else {
                return Err(WooError::invalid_param("meta_data", "meta_data[0][key] is not of type string."));
            };
            let value = entry.get("value").cloned().unwrap_or(Json::Null);
            match meta.iter_mut().find(|m| m.key == key) {
                Some(existing) => existing.value = value,
                None => {
                    let id = self.next_meta_id;
                    self.next_meta_id += 1;
                    meta.push(Meta { id, key: key.to_string(), value });
                }
            }
        }
        Ok(())
    }

    fn image_from(&mut self, value: &Json) -> Result<Image, WooError> {
        let src = value.get("src").and_then(Json::as_str).unwrap_or("");
        if let Some(id) = value.get("id").and_then(id_of).filter(|id| *id > 0) {
            // Re-using an image already in the media library by id.
            return Ok(Image { id, src: src.to_string(), name: String::new(), alt: String::new() });
        }
        if !(src.starts_with("http://") || src.starts_with("https://")) {
            return Err(WooError::new(
                400,
                "woocommerce_product_image_upload_error",
                format!("Error getting remote image {src}."),
            ));
        }
        let name = src.rsplit('/').next().unwrap_or("").to_string();
        Ok(Image {
            id: self.next_other_id(),
            src: src.to_string(),
            name,
            alt: value.get("alt").and_then(Json::as_str).unwrap_or("").to_string(),
        })
    }

    /// Applies a create or update body to a product, validating as WooCommerce does.
    pub fn apply_product(&mut self, product: &mut Product, body: &Map<String, Json>) -> Result<(), WooError> {
        if let Some(name) = string_field(body, "name")? {
            if product.slug.is_empty() {
                product.slug = slugify(&name);
            }
            product.name = name;
        }
        if let Some(kind) = enum_field(body, "type", &["simple", "variable", "grouped", "external"])? {
            if !matches!(kind.as_str(), "simple" | "variable") {
                return Err(WooError::new(
                    400,
                    "woocommerce_rest_invalid_product_type",
                    "The simulator models simple and variable products only.",
                ));
            }
            product.kind = kind;
        }
        if let Some(status) = enum_field(body, "status", &PRODUCT_STATUSES)? {
            product.status = status;
        }
        if let Some(slug) = string_field(body, "slug")? {
            product.slug = slug;
        }
        if let Some(text) = string_field(body, "description")? {
            product.description = text;
        }
        if let Some(text) = string_field(body, "short_description")? {
            product.short_description = text;
        }
        if let Some(sku) = string_field(body, "sku")? {
            self.check_sku(&sku, Some(product.id))?;
            product.sku = sku;
        }
        if let Some(price) = price_field(body, "regular_price")? {
            product.regular_price = price;
        }
        if let Some(price) = price_field(body, "sale_price")? {
            product.sale_price = price;
        }
        if let Some(value) = enum_field(body, "tax_status", &["taxable", "shipping", "none"])? {
            product.tax_status = value;
        }
        if let Some(value) = string_field(body, "tax_class")? {
            product.tax_class = value;
        }
        if let Some(value) = string_field(body, "weight")? {
            product.weight = value;
        }
        if let Some(manage) = bool_field(body, "manage_stock")? {
            product.manage_stock = manage;
        }
        if let Some(quantity) = stock_quantity_field(body)? {
            product.stock_quantity = quantity;
        }
        if let Some(status) = enum_field(body, "stock_status", &STOCK_STATUSES)? {
            product.stock_status = status;
        }
        if let Some(categories) = body.get("categories") {
            let Some(list) = categories.as_array() else {
                return Err(WooError::invalid_param("categories", "categories is not of type array."));
            };
            // Unknown term ids are dropped, as wp_set_object_terms drops them.
            product.categories = list
                .iter()
                .filter_map(|c| c.get("id").and_then(id_of))
                .filter(|id| self.categories.contains_key(id))
                .collect();
        }
        // Tags are terms referenced by id; the simulator has no tag terms, and entries without
        // an id are ignored as WooCommerce ignores them. Seeded tags stay as they are.
        if let Some(images) = body.get("images") {
            let Some(list) = images.as_array() else {
                return Err(WooError::invalid_param("images", "images is not of type array."));
            };
            let mut new_images = Vec::new();
            for image in list {
                new_images.push(self.image_from(image)?);
            }
            product.images = new_images;
        }
        if let Some(attributes) = body.get("attributes") {
            let Some(list) = attributes.as_array() else {
                return Err(WooError::invalid_param("attributes", "attributes is not of type array."));
            };
            product.attributes = list
                .iter()
                .enumerate()
                .map(|(position, a)| {
                    json!({
                        "id": a.get("id").and_then(id_of).unwrap_or(0),
                        "name": a.get("name").and_then(Json::as_str).unwrap_or(""),
                        "position": position,
                        "visible": a.get("visible").and_then(Json::as_bool).unwrap_or(true),
                        "variation": a.get("variation").and_then(Json::as_bool).unwrap_or(false),
                        "options": a.get("options").cloned().unwrap_or_else(|| json!([])),
                    })
                })
                .collect();
        }
        let mut meta = std::mem::take(&mut product.meta_data);
        let result = self.apply_meta(&mut meta, body);
        product.meta_data = meta;
        result?;
        normalise_stock_status(product.manage_stock, product.stock_quantity, &mut product.stock_status);
        Ok(())
    }

    pub fn new_product(&mut self, body: &Map<String, Json>, now: DateTime<Utc>) -> Result<Product, WooError> {
        if body.get("id").and_then(id_of).is_some_and(|id| id > 0) {
            return Err(WooError::new(400, "woocommerce_rest_product_exists", "Cannot create existing product."));
        }
        let mut product = Product {
            id: 0,
            name: "Product".into(),
            slug: String::new(),
            kind: "simple".into(),
            status: "publish".into(),
            description: String::new(),
            short_description: String::new(),
            sku: String::new(),
            regular_price: String::new(),
            sale_price: String::new(),
            tax_status: "taxable".into(),
            tax_class: String::new(),
            manage_stock: false,
            stock_quantity: None,
            stock_status: "instock".into(),
            weight: String::new(),
            categories: Vec::new(),
            tags: Vec::new(),
            images: Vec::new(),
            attributes: Vec::new(),
            meta_data: Vec::new(),
            variations: Vec::new(),
            date_created: now,
            date_modified: now,
        };
        self.apply_product(&mut product, body)?;
        if product.slug.is_empty() {
            product.slug = slugify(&product.name);
        }
        product.id = self.next_post_id();
        Ok(product)
    }

    pub fn apply_variation(&mut self, variation: &mut Variation, body: &Map<String, Json>) -> Result<(), WooError> {
        if let Some(sku) = string_field(body, "sku")? {
            self.check_sku(&sku, Some(variation.id))?;
            variation.sku = sku;
        }
        if let Some(price) = price_field(body, "regular_price")? {
            variation.regular_price = price;
        }
        if let Some(price) = price_field(body, "sale_price")? {
            variation.sale_price = price;
        }
        if let Some(status) = enum_field(body, "status", &PRODUCT_STATUSES)? {
            variation.status = status;
        }
        if let Some(text) = string_field(body, "description")? {
            variation.description = text;
        }
        if let Some(value) = string_field(body, "tax_class")? {
            variation.tax_class = value;
        }
        if let Some(value) = string_field(body, "weight")? {
            variation.weight = value;
        }
        match body.get("manage_stock") {
            None => {}
            Some(Json::Bool(manage)) => variation.manage_stock = *manage,
            Some(_) => return Err(WooError::invalid_param("manage_stock", "manage_stock is not of type boolean.")),
        }
        if let Some(quantity) = stock_quantity_field(body)? {
            variation.stock_quantity = quantity;
        }
        if let Some(status) = enum_field(body, "stock_status", &STOCK_STATUSES)? {
            variation.stock_status = status;
        }
        if let Some(image) = body.get("image") {
            variation.image = if image.is_null() { None } else { Some(self.image_from(image)?) };
        }
        if let Some(attributes) = body.get("attributes") {
            let Some(list) = attributes.as_array() else {
                return Err(WooError::invalid_param("attributes", "attributes is not of type array."));
            };
            variation.attributes = list
                .iter()
                .map(|a| {
                    json!({
                        "id": a.get("id").and_then(id_of).unwrap_or(0),
                        "name": a.get("name").and_then(Json::as_str).unwrap_or(""),
                        "option": a.get("option").and_then(Json::as_str).unwrap_or(""),
                    })
                })
                .collect();
        }
        let mut meta = std::mem::take(&mut variation.meta_data);
        let result = self.apply_meta(&mut meta, body);
        variation.meta_data = meta;
        result?;
        normalise_stock_status(variation.manage_stock, variation.stock_quantity, &mut variation.stock_status);
        Ok(())
    }

    pub fn new_variation(
        &mut self,
        parent_id: u64,
        body: &Map<String, Json>,
        now: DateTime<Utc>,
    ) -> Result<Variation, WooError> {
        let mut variation = Variation {
            id: 0,
            parent_id,
            status: "publish".into(),
            description: String::new(),
            sku: String::new(),
            regular_price: String::new(),
            sale_price: String::new(),
            tax_class: String::new(),
            manage_stock: false,
            stock_quantity: None,
            stock_status: "instock".into(),
            weight: String::new(),
            image: None,
            attributes: Vec::new(),
            meta_data: Vec::new(),
            date_created: now,
            date_modified: now,
        };
        self.apply_variation(&mut variation, body)?;
        variation.id = self.next_post_id();
        Ok(variation)
    }

    pub fn apply_customer(&mut self, customer: &mut Customer, body: &Map<String, Json>) -> Result<(), WooError> {
        if let Some(email) = string_field(body, "email")? {
            let email = email.trim().to_string();
            if !email.contains('@') || email.starts_with('@') || email.ends_with('@') {
                return Err(WooError::invalid_param("email", "Invalid email address."));
            }
            let taken = self.customers.values().any(|c| c.id != customer.id && c.email.eq_ignore_ascii_case(&email));
            if taken {
                return Err(WooError::new(
                    400,
                    "registration-error-email-exists",
                    "An account is already registered with your email address. Please log in.",
                ));
            }
            customer.email = email;
        }
        if let Some(value) = string_field(body, "first_name")? {
            customer.first_name = value;
        }
        if let Some(value) = string_field(body, "last_name")? {
            customer.last_name = value;
        }
        if let Some(value) = string_field(body, "username")? {
            customer.username = value;
        }
        for (name, target) in [("billing", &mut customer.billing), ("shipping", &mut customer.shipping)] {
            match body.get(name) {
                None => {}
                Some(Json::Object(address)) => {
                    for (key, value) in address {
                        target.insert(key.clone(), value.clone());
                    }
                }
                Some(_) => return Err(WooError::invalid_param(name, format!("{name} is not of type object."))),
            }
        }
        let mut meta = std::mem::take(&mut customer.meta_data);
        let result = self.apply_meta(&mut meta, body);
        customer.meta_data = meta;
        result
    }

    pub fn new_customer(&mut self, body: &Map<String, Json>, now: DateTime<Utc>) -> Result<Customer, WooError> {
        if !body.get("email").is_some_and(Json::is_string) {
            return Err(WooError {
                status: 400,
                code: "rest_missing_callback_param".into(),
                message: "Missing parameter(s): email".into(),
                params: Some(Box::new([("email".to_string(), Json::String("email".into()))].into_iter().collect())),
            });
        }
        let mut customer = Customer {
            id: 0,
            email: String::new(),
            first_name: String::new(),
            last_name: String::new(),
            username: String::new(),
            billing: empty_address(true),
            shipping: empty_address(false),
            meta_data: Vec::new(),
            date_created: now,
            date_modified: now,
        };
        self.apply_customer(&mut customer, body)?;
        if customer.username.is_empty() {
            customer.username = customer.email.split('@').next().unwrap_or("customer").to_string();
        }
        customer.id = self.next_user_id();
        Ok(customer)
    }

    /// The product or variation a line refers to, with its display name and unit price.
    pub fn sellable(&self, product_id: u64, variation_id: u64) -> Option<(u64, u64, String, String, i64)> {
        if variation_id > 0 {
            let variation = self.variations.get(&variation_id)?;
            let parent = self.products.get(&variation.parent_id)?;
            let options: Vec<&str> =
                variation.attributes.iter().filter_map(|a| a.get("option").and_then(Json::as_str)).collect();
            let name = if options.is_empty() {
                parent.name.clone()
            } else {
                format!("{} - {}", parent.name, options.join(", "))
            };
            let price = effective_price(&variation.regular_price, &variation.sale_price);
            return Some((parent.id, variation.id, name, variation.sku.clone(), price));
        }
        let product = self.products.get(&product_id)?;
        let price = effective_price(&product.regular_price, &product.sale_price);
        Some((product.id, 0, product.name.clone(), product.sku.clone(), price))
    }

    /// Reduces stock of a managed product or variation, as paying for an order does.
    pub fn reduce_stock(&mut self, product_id: u64, variation_id: u64, quantity: i64, now: DateTime<Utc>) {
        if let Some(variation) = self.variations.get_mut(&variation_id) {
            if variation.manage_stock {
                variation.stock_quantity = Some(variation.stock_quantity.unwrap_or(0) - quantity);
                normalise_stock_status(true, variation.stock_quantity, &mut variation.stock_status);
                variation.date_modified = now;
            }
            return;
        }
        if let Some(product) = self.products.get_mut(&product_id)
            && product.manage_stock
        {
            product.stock_quantity = Some(product.stock_quantity.unwrap_or(0) - quantity);
            normalise_stock_status(true, product.stock_quantity, &mut product.stock_status);
            product.date_modified = now;
        }
    }

    pub fn add_note(
        &mut self,
        order_id: u64,
        note: &str,
        customer_note: bool,
        by_user: bool,
        now: DateTime<Utc>,
    ) -> Note {
        let note = Note {
            id: self.next_other_id(),
            author: if by_user { "shop-manager".into() } else { "WooCommerce".into() },
            note: note.to_string(),
            customer_note,
            added_by_user: by_user,
            date_created: now,
        };
        self.notes.entry(order_id).or_default().push(note.clone());
        note
    }
}

/// Stock status follows the quantity when stock is managed (no backorders in the simulator).
fn normalise_stock_status(manage_stock: bool, quantity: Option<i64>, status: &mut String) {
    if manage_stock {
        *status = if quantity.unwrap_or(0) > 0 { "instock".into() } else { "outofstock".into() };
    }
}

pub fn effective_price(regular: &str, sale: &str) -> i64 {
    parse_money(sale).or_else(|| parse_money(regular)).unwrap_or(0)
}

pub fn empty_address(billing: bool) -> Map<String, Json> {
    let mut keys =
        vec!["first_name", "last_name", "company", "address_1", "address_2", "city", "state", "postcode", "country"];
    if billing {
        keys.extend(["email", "phone"]);
    } else {
        keys.push("phone");
    }
    keys.into_iter().map(|k| (k.to_string(), Json::String(String::new()))).collect()
}

fn meta_json(meta: &[Meta]) -> Json {
    Json::Array(meta.iter().map(|m| json!({"id": m.id, "key": m.key, "value": m.value})).collect())
}

fn image_json(image: &Image, zone: SiteZone, at: DateTime<Utc>) -> Json {
    json!({
        "id": image.id, "src": image.src, "name": image.name, "alt": image.alt,
        "date_created": zone.local(at), "date_created_gmt": zone.gmt(at),
        "date_modified": zone.local(at), "date_modified_gmt": zone.gmt(at),
    })
}

/// The REST form of resources (`context=view`, which is what lists and webhooks send).
pub struct Render<'a> {
    pub store: &'a Store,
    pub zone: SiteZone,
    pub api_base: &'a str,
}

impl Render<'_> {
    fn dates(&self, object: &mut Json, name: &str, at: Option<DateTime<Utc>>) {
        object[name] = at.map(|at| Json::String(self.zone.local(at))).unwrap_or(Json::Null);
        object[format!("{name}_gmt")] = at.map(|at| Json::String(self.zone.gmt(at))).unwrap_or(Json::Null);
    }

    pub fn product(&self, p: &Product) -> Json {
        let price = effective_price(&p.regular_price, &p.sale_price);
        let price_text =
            if p.regular_price.is_empty() && p.sale_price.is_empty() { String::new() } else { money(price) };
        let mut object = json!({
            "id": p.id, "name": p.name, "slug": p.slug, "permalink": format!("{}/product/{}/", self.site(), p.slug),
            "type": p.kind, "status": p.status, "featured": false, "catalog_visibility": "visible",
            "description": p.description, "short_description": p.short_description, "sku": p.sku,
            "price": price_text, "regular_price": p.regular_price, "sale_price": p.sale_price,
            "on_sale": !p.sale_price.is_empty(), "purchasable": !price_text.is_empty(),
            "tax_status": p.tax_status, "tax_class": p.tax_class, "manage_stock": p.manage_stock,
            "stock_quantity": p.stock_quantity, "stock_status": p.stock_status, "backorders": "no",
            "weight": p.weight, "dimensions": {"length": "", "width": "", "height": ""},
            "categories": p.categories.iter().filter_map(|id| self.store.categories.get(id)).map(|c| json!({"id": c.id, "name": c.name, "slug": c.slug})).collect::<Vec<_>>(),
            "tags": p.tags.iter().enumerate().map(|(n, t)| json!({"id": n + 1, "name": t, "slug": slugify(t)})).collect::<Vec<_>>(),
            "images": p.images.iter().map(|i| image_json(i, self.zone, p.date_created)).collect::<Vec<_>>(),
            "attributes": p.attributes, "default_attributes": [], "variations": p.variations,
            "meta_data": meta_json(&p.meta_data),
            "_links": {"self": [{"href": format!("{}/products/{}", self.api_base, p.id)}], "collection": [{"href": format!("{}/products", self.api_base)}]},
        });
        self.dates(&mut object, "date_created", Some(p.date_created));
        self.dates(&mut object, "date_modified", Some(p.date_modified));
        object
    }

    pub fn variation(&self, v: &Variation) -> Json {
        let price = effective_price(&v.regular_price, &v.sale_price);
        let price_text =
            if v.regular_price.is_empty() && v.sale_price.is_empty() { String::new() } else { money(price) };
        let mut object = json!({
            "id": v.id, "parent_id": v.parent_id, "status": v.status, "description": v.description, "sku": v.sku,
            "price": price_text, "regular_price": v.regular_price, "sale_price": v.sale_price,
            "on_sale": !v.sale_price.is_empty(), "purchasable": !price_text.is_empty(),
            "tax_status": "taxable", "tax_class": v.tax_class, "manage_stock": v.manage_stock,
            "stock_quantity": v.stock_quantity, "stock_status": v.stock_status, "backorders": "no",
            "weight": v.weight, "dimensions": {"length": "", "width": "", "height": ""},
            "image": v.image.as_ref().map(|i| image_json(i, self.zone, v.date_created)),
            "attributes": v.attributes, "meta_data": meta_json(&v.meta_data),
            "_links": {"self": [{"href": format!("{}/products/{}/variations/{}", self.api_base, v.parent_id, v.id)}], "up": [{"href": format!("{}/products/{}", self.api_base, v.parent_id)}]},
        });
        self.dates(&mut object, "date_created", Some(v.date_created));
        self.dates(&mut object, "date_modified", Some(v.date_modified));
        object
    }

    pub fn customer(&self, c: &Customer) -> Json {
        let paying = self.store.orders.values().any(|o| o.customer_id == c.id && o.date_paid.is_some());
        let mut object = json!({
            "id": c.id, "email": c.email, "first_name": c.first_name, "last_name": c.last_name,
            "role": "customer", "username": c.username, "billing": c.billing, "shipping": c.shipping,
            "is_paying_customer": paying, "avatar_url": "", "meta_data": meta_json(&c.meta_data),
            "_links": {"self": [{"href": format!("{}/customers/{}", self.api_base, c.id)}]},
        });
        self.dates(&mut object, "date_created", Some(c.date_created));
        self.dates(&mut object, "date_modified", Some(c.date_modified));
        object
    }

    pub fn order(&self, o: &Order) -> Json {
        let taxes = |total: i64, subtotal: i64| json!([{"id": o.tax_rate_id, "total": money(total), "subtotal": money(subtotal)}]);
        let line_items: Vec<Json> = o
            .line_items
            .iter()
            .map(|l| {
                json!({
                    "id": l.id, "name": l.name, "product_id": l.product_id, "variation_id": l.variation_id,
                    "quantity": l.quantity, "tax_class": "", "subtotal": money(l.subtotal), "subtotal_tax": money(l.subtotal_tax),
                    "total": money(l.total), "total_tax": money(l.total_tax), "taxes": taxes(l.total_tax, l.subtotal_tax),
                    "meta_data": [], "sku": l.sku, "price": l.price as f64 / 100.0,
                })
            })
            .collect();
        let tax_lines = if o.line_items.is_empty() && o.shipping_lines.is_empty() {
            json!([])
        } else {
            json!([{
                "id": o.tax_rate_id + 1000, "rate_code": "SIM-VAT-1", "rate_id": o.tax_rate_id, "label": "VAT",
                "compound": false, "tax_total": money(o.cart_tax()), "shipping_tax_total": money(o.shipping_tax()),
                "rate_percent": o.tax_basis_points as f64 / 100.0, "meta_data": [],
            }])
        };
        let shipping_lines: Vec<Json> = o
            .shipping_lines
            .iter()
            .map(|s| {
                json!({
                    "id": s.id, "method_title": s.method_title, "method_id": s.method_id, "instance_id": "1",
                    "total": money(s.total), "total_tax": money(s.total_tax), "taxes": taxes(s.total_tax, s.total_tax), "meta_data": [],
                })
            })
            .collect();
        let coupon_lines: Vec<Json> = o
            .coupon_lines
            .iter()
            .map(|c| json!({"id": c.id, "code": c.code, "discount": money(c.discount), "discount_tax": money(c.discount_tax), "meta_data": []}))
            .collect();
        let refunds: Vec<Json> = o
            .refunds
            .iter()
            .filter_map(|id| self.store.refunds.get(id))
            .map(|r| json!({"id": r.id, "reason": r.reason, "total": money(-r.amount)}))
            .collect();
        let links = json!({"self": [{"href": format!("{}/orders/{}", self.api_base, o.id)}], "collection": [{"href": format!("{}/orders", self.api_base)}]});
        let mut object = json!({
            "id": o.id, "parent_id": 0, "number": o.number, "order_key": o.order_key, "created_via": "checkout",
            "version": "9.0.0", "status": o.status, "currency": o.currency, "currency_symbol": "",
            "prices_include_tax": o.prices_include_tax,
            "discount_total": money(o.discount_total()), "discount_tax": money(o.discount_tax()),
            "shipping_total": money(o.shipping_total()), "shipping_tax": money(o.shipping_tax()),
            "cart_tax": money(o.cart_tax()), "total": money(o.total()), "total_tax": money(o.total_tax()),
        });
        let rest = json!({
            "customer_id": o.customer_id, "customer_ip_address": "", "customer_user_agent": "", "customer_note": o.customer_note,
            "billing": o.billing, "shipping": o.shipping,
            "payment_method": o.payment_method, "payment_method_title": o.payment_method_title, "transaction_id": o.transaction_id,
            "cart_hash": "", "meta_data": meta_json(&o.meta_data), "line_items": line_items, "tax_lines": tax_lines,
            "shipping_lines": shipping_lines, "fee_lines": [], "coupon_lines": coupon_lines, "refunds": refunds,
            "set_paid": false, "_links": links,
        });
        if let (Some(target), Json::Object(rest)) = (object.as_object_mut(), rest) {
            target.extend(rest);
        }
        self.dates(&mut object, "date_created", Some(o.date_created));
        self.dates(&mut object, "date_modified", Some(o.date_modified));
        self.dates(&mut object, "date_paid", o.date_paid);
        self.dates(&mut object, "date_completed", o.date_completed);
        object
    }

    pub fn refund(&self, r: &Refund) -> Json {
        let mut object = json!({
            "id": r.id, "amount": money(r.amount), "reason": r.reason, "refunded_by": 1,
            "refunded_payment": r.refunded_payment, "meta_data": [],
            "line_items": r.line_items.iter().map(|l| json!({
                "id": l.id, "name": l.name, "product_id": l.product_id, "variation_id": l.variation_id,
                "quantity": -l.quantity, "tax_class": "", "subtotal": money(-l.total), "subtotal_tax": money(-l.total_tax),
                "total": money(-l.total), "total_tax": money(-l.total_tax), "sku": l.sku,
                "price": if l.quantity == 0 { 0.0 } else { -(l.total as f64) / 100.0 / l.quantity as f64 },
                "meta_data": [{"id": 0, "key": "_refunded_item_id", "value": l.refunded_item_id.to_string()}],
            })).collect::<Vec<_>>(),
            "_links": {"self": [{"href": format!("{}/orders/{}/refunds/{}", self.api_base, r.order_id, r.id)}], "up": [{"href": format!("{}/orders/{}", self.api_base, r.order_id)}]},
        });
        self.dates(&mut object, "date_created", Some(r.date_created));
        object
    }

    pub fn note(&self, n: &Note) -> Json {
        let mut object = json!({
            "id": n.id, "author": n.author, "note": n.note, "customer_note": n.customer_note, "added_by_user": n.added_by_user,
        });
        self.dates(&mut object, "date_created", Some(n.date_created));
        object
    }

    pub fn webhook(&self, w: &Webhook) -> Json {
        let (resource, event) = w.topic.split_once('.').unwrap_or((&w.topic, ""));
        let mut object = json!({
            "id": w.id, "name": w.name, "status": w.status, "topic": w.topic, "resource": resource, "event": event,
            "hooks": [], "delivery_url": w.delivery_url,
            "_links": {"self": [{"href": format!("{}/webhooks/{}", self.api_base, w.id)}]},
        });
        self.dates(&mut object, "date_created", Some(w.date_created));
        self.dates(&mut object, "date_modified", Some(w.date_modified));
        object
    }

    pub fn category(&self, c: &Category) -> Json {
        let count = self.store.products.values().filter(|p| p.categories.contains(&c.id)).count();
        json!({"id": c.id, "name": c.name, "slug": c.slug, "parent": c.parent, "description": "", "display": "default", "image": null, "menu_order": 0, "count": count})
    }

    fn site(&self) -> &str {
        self.api_base.strip_suffix("/wp-json/wc/v3").unwrap_or(self.api_base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_round_trips_and_refuses_non_decimals() {
        assert_eq!(parse_money("19.99"), Some(1999));
        assert_eq!(parse_money("19.9"), Some(1990));
        assert_eq!(parse_money("7"), Some(700));
        assert_eq!(parse_money("-5.00"), Some(-500));
        assert_eq!(parse_money("1.999"), None);
        assert_eq!(parse_money("abc"), None);
        assert_eq!(parse_money(""), None);
        assert_eq!(money(-1), "-0.01");
        assert_eq!(apply_rate(1999, 2000), 400);
        assert_eq!(apply_rate(25, 2000), 5);
    }
}
