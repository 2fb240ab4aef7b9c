//! The simulated shop's data: products, variants, inventory, locations, customers, orders,
//! webhook subscriptions and bulk operations, plus the deterministic seed generator.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value as Json, json};

#[derive(Debug, Clone)]
pub struct ProductOption {
    pub id: u64,
    pub name: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Metafield {
    pub id: u64,
    pub namespace: String,
    pub key: String,
    pub value: String,
    pub kind: String,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Image {
    pub id: u64,
    pub url: String,
    pub alt: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Product {
    pub id: u64,
    pub title: String,
    pub handle: String,
    pub status: String,
    pub vendor: String,
    pub product_type: String,
    pub description_html: String,
    pub tags: Vec<String>,
    pub options: Vec<ProductOption>,
    pub variant_ids: Vec<u64>,
    pub images: Vec<Image>,
    pub metafields: Vec<Metafield>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Variant {
    pub id: u64,
    pub product_id: u64,
    pub sku: Option<String>,
    pub barcode: Option<String>,
    /// Prices in cents, kept exact.
    pub price_cents: i64,
    pub compare_at_price_cents: Option<i64>,
    pub selected_options: Vec<(String, String)>,
    pub inventory_item_id: u64,
    pub taxable: bool,
    pub inventory_policy: String,
    pub metafields: Vec<Metafield>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Variant {
    pub fn title(&self) -> String {
        if self.selected_options.is_empty() || self.selected_options.iter().all(|(_, v)| v == "Default Title") {
            return "Default Title".into();
        }
        self.selected_options.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>().join(" / ")
    }
}

#[derive(Debug, Clone)]
pub struct InventoryItem {
    pub id: u64,
    pub variant_id: u64,
    pub tracked: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct InventoryLevel {
    pub id: u64,
    pub quantities: BTreeMap<String, i64>,
    pub updated_at: DateTime<Utc>,
}

/// The quantity names Shopify reports on an inventory level.
pub const QUANTITY_NAMES: [&str; 7] =
    ["available", "on_hand", "committed", "incoming", "reserved", "damaged", "safety_stock"];

impl InventoryLevel {
    pub fn new(id: u64, available: i64, now: DateTime<Utc>) -> Self {
        let mut quantities: BTreeMap<String, i64> = QUANTITY_NAMES.iter().map(|n| (n.to_string(), 0)).collect();
        quantities.insert("available".into(), available);
        quantities.insert("on_hand".into(), available);
        Self { id, quantities, updated_at: now }
    }

    pub fn quantity(&self, name: &str) -> i64 {
        self.quantities.get(name).copied().unwrap_or(0)
    }

    /// Sets `available` or `on_hand`; the other moves by the same delta, as in Shopify where
    /// `on_hand = available + committed + reserved + …`.
    pub fn set(&mut self, name: &str, quantity: i64, now: DateTime<Utc>) -> i64 {
        let delta = quantity - self.quantity(name);
        for affected in ["available", "on_hand"] {
            *self.quantities.entry(affected.into()).or_default() += delta;
        }
        self.updated_at = now;
        delta
    }
}

#[derive(Debug, Clone)]
pub struct Location {
    pub id: u64,
    pub name: String,
    pub is_active: bool,
    pub address: Json,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Customer {
    pub id: u64,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub tags: Vec<String>,
    pub addresses: Vec<Json>,
    pub state: String,
    pub metafields: Vec<Metafield>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct LineItem {
    pub id: u64,
    pub variant_id: Option<u64>,
    pub product_id: Option<u64>,
    pub title: String,
    pub sku: Option<String>,
    pub quantity: i64,
    pub refunded_quantity: i64,
    pub unit_price_cents: i64,
    pub discount_cents: i64,
    pub tax_rate_basis_points: i64,
}

#[derive(Debug, Clone)]
pub struct Fulfillment {
    pub id: u64,
    pub status: String,
    pub tracking: Vec<Json>,
    pub line_items: Vec<(u64, i64)>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct FulfillmentOrderLine {
    pub id: u64,
    pub line_item_id: u64,
    pub total_quantity: i64,
    pub remaining_quantity: i64,
}

#[derive(Debug, Clone)]
pub struct FulfillmentOrder {
    pub id: u64,
    pub order_id: u64,
    pub location_id: u64,
    pub status: String,
    pub lines: Vec<FulfillmentOrderLine>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Refund {
    pub id: u64,
    pub note: Option<String>,
    pub line_items: Vec<(u64, i64, String)>,
    pub amount_cents: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Order {
    pub id: u64,
    pub number: u64,
    pub email: Option<String>,
    pub customer_id: Option<u64>,
    pub currency: String,
    pub presentment_currency: String,
    pub taxes_included: bool,
    pub financial_status: String,
    pub fulfillment_status: String,
    pub line_items: Vec<LineItem>,
    pub shipping_title: String,
    pub shipping_cents: i64,
    pub discount_code: Option<String>,
    pub shipping_address: Option<Json>,
    pub billing_address: Option<Json>,
    pub transactions: Vec<Json>,
    pub refunds: Vec<Refund>,
    pub fulfillments: Vec<Fulfillment>,
    pub fulfillment_order_ids: Vec<u64>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// `OrderCancelReason` of a cancelled order (`CUSTOMER`, `FRAUD`, …).
    pub cancel_reason: Option<String>,
    /// Set by `orderClose`: the order is archived.
    pub closed_at: Option<DateTime<Utc>>,
    pub metafields: Vec<Metafield>,
    pub note: Option<String>,
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub const TAX_BASIS_POINTS: i64 = 2000;

impl Order {
    pub fn name(&self) -> String {
        format!("#{}", self.number)
    }

    pub fn subtotal_cents(&self) -> i64 {
        self.line_items.iter().map(|l| l.unit_price_cents * l.quantity - l.discount_cents).sum()
    }

    pub fn discount_cents(&self) -> i64 {
        self.line_items.iter().map(|l| l.discount_cents).sum()
    }

    /// Taxes are included in prices (EU style): tax = gross × rate / (1 + rate).
    pub fn line_tax_cents(line: &LineItem) -> i64 {
        let gross = line.unit_price_cents * line.quantity - line.discount_cents;
        gross * line.tax_rate_basis_points / (10_000 + line.tax_rate_basis_points)
    }

    pub fn shipping_tax_cents(&self) -> i64 {
        self.shipping_cents * TAX_BASIS_POINTS / (10_000 + TAX_BASIS_POINTS)
    }

    pub fn tax_cents(&self) -> i64 {
        self.line_items.iter().map(Self::line_tax_cents).sum::<i64>() + self.shipping_tax_cents()
    }

    pub fn total_cents(&self) -> i64 {
        self.subtotal_cents() + self.shipping_cents
    }

    pub fn refunded_cents(&self) -> i64 {
        self.refunds.iter().map(|r| r.amount_cents).sum()
    }

    /// What the customer paid, before returns: nothing while payment is pending.
    pub fn received_cents(&self) -> i64 {
        if self.financial_status == "PENDING" { 0 } else { self.total_cents() }
    }

    /// The gateways of the order's successful sales, captures and authorizations, each once, in
    /// the order they were used (`paymentGatewayNames`, `payment_gateway_names`).
    pub fn gateways(&self) -> Vec<String> {
        let mut gateways: Vec<String> = Vec::new();
        for transaction in &self.transactions {
            let kind = transaction.get("kind").and_then(Json::as_str).unwrap_or_default();
            let succeeded = transaction.get("status").and_then(Json::as_str) == Some("SUCCESS");
            if succeeded
                && matches!(kind, "SALE" | "CAPTURE" | "AUTHORIZATION")
                && let Some(gateway) = transaction.get("gateway").and_then(Json::as_str)
                && !gateways.iter().any(|known| known == gateway)
            {
                gateways.push(gateway.to_string());
            }
        }
        gateways
    }
}

#[derive(Debug, Clone)]
pub struct PriceList {
    pub id: u64,
    pub name: String,
    pub currency: String,
    /// Fixed prices by variant id: (price, compare-at) in cents.
    pub fixed_prices: BTreeMap<u64, (i64, Option<i64>)>,
}

#[derive(Debug, Clone)]
pub struct WebhookSubscription {
    pub id: u64,
    /// GraphQL enum form, e.g. `ORDERS_CREATE`.
    pub topic: String,
    pub callback_url: String,
    pub format: String,
    pub include_fields: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct BulkOperation {
    pub id: u64,
    /// `QUERY` or `MUTATION`.
    pub kind: String,
    pub status: String,
    pub error_code: Option<String>,
    pub query: String,
    pub object_count: u64,
    pub root_object_count: u64,
    pub file_size: Option<u64>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub result: Option<String>,
}

/// The whole shop. One mutex guards it; handlers hold it only while computing a response.
#[derive(Debug, Default)]
pub struct ShopState {
    pub next_id: u64,
    pub next_order_number: u64,
    pub products: BTreeMap<u64, Product>,
    pub variants: BTreeMap<u64, Variant>,
    pub inventory_items: BTreeMap<u64, InventoryItem>,
    /// Levels by (inventory item, location).
    pub inventory_levels: BTreeMap<(u64, u64), InventoryLevel>,
    pub locations: BTreeMap<u64, Location>,
    pub customers: BTreeMap<u64, Customer>,
    pub orders: BTreeMap<u64, Order>,
    pub fulfillment_orders: BTreeMap<u64, FulfillmentOrder>,
    pub price_lists: BTreeMap<u64, PriceList>,
    pub webhook_subscriptions: BTreeMap<u64, WebhookSubscription>,
    pub bulk_operations: BTreeMap<u64, BulkOperation>,
    /// Staged uploads by key (the `stagedUploadPath`).
    pub staged_uploads: HashMap<String, Vec<u8>>,
    /// Results of `@idempotent` mutations by (mutation name, key), replayed on a repeat.
    pub idempotent_results: HashMap<(String, String), Json>,
}

impl ShopState {
    pub fn new() -> Self {
        Self { next_id: 1_000_001, next_order_number: 1001, ..Default::default() }
    }

    /// The metafields of an owner (`Product`, `ProductVariant`, `Customer`, `Order`); empty for
    /// an unknown owner.
    pub fn metafields_of(&self, owner: &str, id: u64) -> &[Metafield] {
        match owner {
            "Product" => self.products.get(&id).map(|p| p.metafields.as_slice()),
            "ProductVariant" => self.variants.get(&id).map(|v| v.metafields.as_slice()),
            "Customer" => self.customers.get(&id).map(|c| c.metafields.as_slice()),
            "Order" => self.orders.get(&id).map(|o| o.metafields.as_slice()),
            _ => None,
        }
        .unwrap_or(&[])
    }

    /// The metafields of an owner to change. Callers check that the owner exists first.
    pub fn metafields_of_mut(&mut self, owner: &str, id: u64) -> &mut Vec<Metafield> {
        let list = match owner {
            "Product" => self.products.get_mut(&id).map(|p| &mut p.metafields),
            "ProductVariant" => self.variants.get_mut(&id).map(|v| &mut v.metafields),
            "Customer" => self.customers.get_mut(&id).map(|c| &mut c.metafields),
            _ => self.orders.get_mut(&id).map(|o| &mut o.metafields),
        };
        list.expect("metafields_of_mut is called for owners that exist")
    }

    pub fn allocate_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub fn variant_by_sku(&self, sku: &str) -> Option<&Variant> {
        self.variants.values().find(|v| v.sku.as_deref() == Some(sku))
    }

    pub fn add_location(&mut self, name: &str, now: DateTime<Utc>) -> u64 {
        let id = self.allocate_id();
        let address =
            json!({"address1": format!("{} Street 1", name), "city": "Berlin", "countryCode": "DE", "zip": "10115"});
        self.locations
            .insert(id, Location { id, name: name.into(), is_active: true, address, created_at: now, updated_at: now });
        // A new location gets a level for every tracked item, as when "stocked at" all.
        let items: Vec<u64> = self.inventory_items.keys().copied().collect();
        for item in items {
            let level_id = self.allocate_id();
            self.inventory_levels.insert((item, id), InventoryLevel::new(level_id, 0, now));
        }
        id
    }

    /// Creates the inventory item of a new variant, stocked at every location with 0.
    pub fn add_inventory_item(&mut self, variant_id: u64, now: DateTime<Utc>) -> u64 {
        let id = self.allocate_id();
        self.inventory_items
            .insert(id, InventoryItem { id, variant_id, tracked: true, created_at: now, updated_at: now });
        let locations: Vec<u64> = self.locations.keys().copied().collect();
        for location in locations {
            let level_id = self.allocate_id();
            self.inventory_levels.insert((id, location), InventoryLevel::new(level_id, 0, now));
        }
        id
    }

    pub fn delete_variant(&mut self, variant_id: u64) {
        if let Some(variant) = self.variants.remove(&variant_id) {
            self.inventory_items.remove(&variant.inventory_item_id);
            self.inventory_levels.retain(|(item, _), _| *item != variant.inventory_item_id);
        }
    }

    /// Adds one order for a random customer and variants; the order stream of the seed data.
    pub fn add_random_order(&mut self, rng: &mut StdRng, now: DateTime<Utc>) -> Option<u64> {
        let variant_ids: Vec<u64> = self.variants.keys().copied().collect();
        if variant_ids.is_empty() {
            return None;
        }
        let customer_ids: Vec<u64> = self.customers.keys().copied().collect();
        let customer_id =
            if customer_ids.is_empty() { None } else { Some(customer_ids[rng.random_range(0..customer_ids.len())]) };
        let n_lines = rng.random_range(1..=3usize);
        let mut line_items = Vec::new();
        for _ in 0..n_lines {
            let variant = &self.variants[&variant_ids[rng.random_range(0..variant_ids.len())]];
            let title = self.products.get(&variant.product_id).map(|p| p.title.clone()).unwrap_or_default();
            let (variant_id, product_id, sku, price) =
                (variant.id, variant.product_id, variant.sku.clone(), variant.price_cents);
            line_items.push(LineItem {
                id: 0,
                variant_id: Some(variant_id),
                product_id: Some(product_id),
                title,
                sku,
                quantity: rng.random_range(1..=4),
                refunded_quantity: 0,
                unit_price_cents: price,
                discount_cents: 0,
                tax_rate_basis_points: TAX_BASIS_POINTS,
            });
        }
        let discounted = rng.random_range(0..4) == 0;
        if discounted && let Some(first) = line_items.first_mut() {
            first.discount_cents = first.unit_price_cents * first.quantity / 10;
        }
        for line in &mut line_items {
            line.id = self.allocate_id();
        }
        let (email, address) = match customer_id.and_then(|c| self.customers.get(&c)) {
            Some(customer) => (customer.email.clone(), customer.addresses.first().cloned()),
            None => (None, None),
        };
        let order_id = self.allocate_id();
        let number = self.next_order_number;
        self.next_order_number += 1;
        let paid = rng.random_range(0..5) != 0;
        let mut order = Order {
            id: order_id,
            number,
            email,
            customer_id,
            currency: "EUR".into(),
            presentment_currency: "EUR".into(),
            taxes_included: true,
            financial_status: if paid { "PAID".into() } else { "PENDING".into() },
            fulfillment_status: "UNFULFILLED".into(),
            line_items,
            shipping_title: "Standard".into(),
            shipping_cents: 490,
            discount_code: discounted.then(|| "TEN".to_string()),
            shipping_address: address.clone(),
            billing_address: address,
            transactions: vec![],
            refunds: vec![],
            fulfillments: vec![],
            fulfillment_order_ids: vec![],
            cancelled_at: None,
            cancel_reason: None,
            closed_at: None,
            metafields: vec![],
            note: None,
            tags: vec![],
            created_at: now,
            updated_at: now,
        };
        if paid {
            let transaction_id = self.allocate_id();
            order.transactions.push(json!({
                "id": transaction_id, "kind": "SALE", "status": "SUCCESS", "gateway": "manual",
                "amount_cents": order.total_cents(), "created_at": now.to_rfc3339(),
            }));
        }
        let location_id = self.locations.keys().next().copied().unwrap_or(0);
        let fulfillment_order_id = self.allocate_id();
        let mut lines = Vec::new();
        for line in &order.line_items {
            lines.push(FulfillmentOrderLine {
                id: self.allocate_id(),
                line_item_id: line.id,
                total_quantity: line.quantity,
                remaining_quantity: line.quantity,
            });
        }
        self.fulfillment_orders.insert(
            fulfillment_order_id,
            FulfillmentOrder {
                id: fulfillment_order_id,
                order_id,
                location_id,
                status: "OPEN".into(),
                lines,
                created_at: now,
                updated_at: now,
            },
        );
        order.fulfillment_order_ids.push(fulfillment_order_id);
        self.orders.insert(order_id, order);
        Some(order_id)
    }
}

/// What to generate; the same seed always gives the same shop.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct SeedConfig {
    pub seed: u64,
    pub products: usize,
    pub variants_per_product: usize,
    pub locations: usize,
    pub customers: usize,
    pub orders: usize,
}

impl Default for SeedConfig {
    fn default() -> Self {
        Self { seed: 1, products: 10, variants_per_product: 3, locations: 2, customers: 10, orders: 10 }
    }
}

/// Bounds so a control call cannot ask for more than the process can hold.
pub const MAX_SEED_RECORDS: usize = 500_000;

const COLORS: [&str; 6] = ["Red", "Blue", "Green", "Black", "White", "Yellow"];
const SIZES: [&str; 5] = ["S", "M", "L", "XL", "XXL"];
const NOUNS: [&str; 8] = ["Shirt", "Mug", "Cap", "Bag", "Scarf", "Poster", "Sock", "Hoodie"];
const FIRST_NAMES: [&str; 8] = ["Anna", "Ben", "Clara", "David", "Eva", "Felix", "Greta", "Hugo"];
const LAST_NAMES: [&str; 6] = ["Schmidt", "Meyer", "Weber", "Fischer", "Wagner", "Becker"];

pub fn seed(state: &mut ShopState, config: &SeedConfig, now: DateTime<Utc>) -> Result<(), String> {
    let total = config.products.saturating_mul(config.variants_per_product.max(1)) + config.customers + config.orders;
    if total > MAX_SEED_RECORDS || config.locations > 1000 || config.variants_per_product > 2048 {
        return Err(format!(
            "seed too large: at most {MAX_SEED_RECORDS} records, 1000 locations, 2048 variants per product"
        ));
    }
    let mut rng = StdRng::seed_from_u64(config.seed);
    for n in 0..config.locations {
        let name = if n == 0 { "Warehouse".to_string() } else { format!("Store {n}") };
        state.add_location(&name, now);
    }
    for n in 0..config.products {
        let product_id = state.allocate_id();
        let noun = NOUNS[n % NOUNS.len()];
        let title = format!("{} {} {}", COLORS[rng.random_range(0..COLORS.len())], noun, n + 1);
        let handle = title.to_lowercase().replace(' ', "-");
        let n_variants = config.variants_per_product.max(1);
        let mut options = vec![ProductOption { id: state.allocate_id(), name: "Size".into(), values: vec![] }];
        let mut variant_ids = Vec::new();
        for v in 0..n_variants {
            let variant_id = state.allocate_id();
            let size = SIZES.get(v).map_or_else(|| format!("Size {}", v + 1), |s| s.to_string());
            options[0].values.push(size.clone());
            let inventory_item_id = state.add_inventory_item(variant_id, now);
            let locations: Vec<u64> = state.locations.keys().copied().collect();
            for location in locations {
                let available = rng.random_range(0..100);
                if let Some(level) = state.inventory_levels.get_mut(&(inventory_item_id, location)) {
                    level.set("available", available, now);
                }
            }
            state.variants.insert(
                variant_id,
                Variant {
                    id: variant_id,
                    product_id,
                    sku: Some(format!("SKU-{:05}-{}", n + 1, v + 1)),
                    barcode: Some(format!("40{:011}", (n + 1) * 100 + v)),
                    price_cents: rng.random_range(5..200) * 100 + 99,
                    compare_at_price_cents: None,
                    selected_options: vec![("Size".into(), size)],
                    inventory_item_id,
                    taxable: true,
                    inventory_policy: "DENY".into(),
                    metafields: vec![],
                    created_at: now,
                    updated_at: now,
                },
            );
            variant_ids.push(variant_id);
        }
        let image_id = state.allocate_id();
        let metafield_id = state.allocate_id();
        state.products.insert(
            product_id,
            Product {
                id: product_id,
                title,
                handle,
                status: "ACTIVE".into(),
                vendor: "Simulated Vendor".into(),
                product_type: noun.into(),
                description_html: format!("<p>{noun} number {}</p>", n + 1),
                tags: vec![noun.to_lowercase()],
                options: std::mem::take(&mut options),
                variant_ids,
                images: vec![Image {
                    id: image_id,
                    url: format!("https://cdn.shopify.com/s/files/1/sim/{image_id}.jpg"),
                    alt: None,
                }],
                metafields: vec![Metafield {
                    id: metafield_id,
                    namespace: "erp".into(),
                    key: "item_no".into(),
                    value: format!("ITEM-{}", n + 1),
                    kind: "single_line_text_field".into(),
                    updated_at: now,
                }],
                created_at: now,
                updated_at: now,
            },
        );
    }
    for n in 0..config.customers {
        let id = state.allocate_id();
        let first = FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())];
        let last = LAST_NAMES[rng.random_range(0..LAST_NAMES.len())];
        let address_id = state.allocate_id();
        state.customers.insert(
            id,
            Customer {
                id,
                email: Some(format!("{}.{}.{}@example.com", first.to_lowercase(), last.to_lowercase(), n + 1)),
                phone: None,
                first_name: Some(first.into()),
                last_name: Some(last.into()),
                tags: vec![],
                addresses: vec![json!({
                    "id": address_id, "firstName": first, "lastName": last, "address1": format!("Hauptstrasse {}", n + 1),
                    "address2": null, "city": "Berlin", "provinceCode": null, "countryCodeV2": "DE", "zip": "10115",
                    "company": null, "phone": null,
                })],
                state: "ENABLED".into(),
                metafields: vec![],
                created_at: now,
                updated_at: now,
            },
        );
    }
    for _ in 0..config.orders {
        state.add_random_order(&mut rng, now);
    }
    Ok(())
}
