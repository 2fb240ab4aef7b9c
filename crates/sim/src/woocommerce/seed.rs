//! Deterministic seed data: categories, simple and variable products with variations,
//! customers, and an order stream. The same seed gives the same shop.

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value as Json, json};

use super::server::{OrderSpec, build_order};
use super::state::{Category, Store};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SeedConfig {
    pub seed: u64,
    pub simple_products: usize,
    pub variable_products: usize,
    pub variations_per_product: usize,
    pub customers: usize,
    pub orders: usize,
}

impl Default for SeedConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            simple_products: 10,
            variable_products: 5,
            variations_per_product: 3,
            customers: 10,
            orders: 10,
        }
    }
}

/// Bounds so a control call cannot ask for more than the process can hold.
pub const MAX_SEED_RECORDS: usize = 200_000;

const COLORS: [&str; 6] = ["Red", "Blue", "Green", "Black", "White", "Yellow"];
const SIZES: [&str; 5] = ["S", "M", "L", "XL", "XXL"];
const NOUNS: [&str; 8] = ["Shirt", "Mug", "Cap", "Bag", "Scarf", "Poster", "Sock", "Hoodie"];
const FIRST: [&str; 8] = ["Anna", "Ben", "Chloe", "David", "Emma", "Felix", "Grace", "Hugo"];
const LAST: [&str; 8] = ["Meyer", "Dupont", "Rossi", "Smith", "Novak", "Garcia", "Jansen", "Berg"];
const CITIES: [(&str, &str, &str); 4] =
    [("Berlin", "10115", "DE"), ("Paris", "75001", "FR"), ("Milano", "20121", "IT"), ("Wien", "1010", "AT")];

fn address(rng: &mut StdRng, first: &str, last: &str, email: Option<&str>) -> Map<String, Json> {
    let (city, postcode, country) = CITIES[rng.random_range(0..CITIES.len())];
    let mut address = json!({
        "first_name": first, "last_name": last, "company": "", "address_1": format!("{} Main Street", rng.random_range(1..200)),
        "address_2": "", "city": city, "state": "", "postcode": postcode, "country": country, "phone": "+49 30 1234567",
    });
    if let Some(email) = email {
        address["email"] = json!(email);
    }
    address.as_object().cloned().unwrap_or_default()
}

/// Adds the seed's data to the store. Records are stamped `now` minus a few minutes each so
/// that `modified_after` has something to cut.
pub fn seed(store: &mut Store, config: &SeedConfig, now: DateTime<Utc>, tax_basis_points: i64, currency: &str) {
    let mut rng = StdRng::seed_from_u64(config.seed);
    if store.categories.is_empty() {
        for (id, name) in [(15, "Uncategorized"), (16, "Clothing"), (17, "Accessories"), (18, "Decor")] {
            store.categories.insert(id, Category { id, name: name.into(), slug: name.to_lowercase(), parent: 0 });
        }
    }
    let total = config.simple_products
        + config.variable_products * (1 + config.variations_per_product)
        + config.customers
        + config.orders;
    if total > MAX_SEED_RECORDS {
        return;
    }
    let mut step = 0i64;
    let mut stamp = |rng: &mut StdRng| {
        step += 1;
        now - chrono::Duration::seconds(3600 - step.min(3500) + rng.random_range(0..3))
    };
    let existing = store.products.len();
    for n in 0..config.simple_products {
        let noun = NOUNS[rng.random_range(0..NOUNS.len())];
        let name = format!("{noun} {}", existing + n + 1);
        let price = rng.random_range(500..5000);
        let body = json!({
            "name": name, "type": "simple", "sku": format!("SIM-{}", existing + n + 1),
            "regular_price": format!("{}.{:02}", price / 100, price % 100), "manage_stock": true,
            "stock_quantity": rng.random_range(0..100), "categories": [{"id": 16 + rng.random_range(0..3)}],
            "description": format!("A simulated {noun}."), "weight": "0.5",
        });
        let at = stamp(&mut rng);
        if let Ok(product) = store.new_product(body.as_object().expect("literal object"), at) {
            store.products.insert(product.id, product);
        }
    }
    for n in 0..config.variable_products {
        let noun = NOUNS[rng.random_range(0..NOUNS.len())];
        let index = existing + config.simple_products + n + 1;
        let color = COLORS[rng.random_range(0..COLORS.len())];
        let sizes: Vec<&str> = SIZES.iter().take(config.variations_per_product.min(SIZES.len())).copied().collect();
        let body = json!({
            "name": format!("{color} {noun} {index}"), "type": "variable", "sku": format!("SIMV-{index}"),
            "categories": [{"id": 16}], "attributes": [{"id": 0, "name": "Size", "variation": true, "visible": true, "options": sizes}],
            "images": [{"src": format!("https://images.example.com/{index}.jpg"), "alt": noun}],
        });
        let at = stamp(&mut rng);
        let Ok(mut product) = store.new_product(body.as_object().expect("literal object"), at) else { continue };
        for size in sizes {
            let price = rng.random_range(1000..9000);
            let variation_body = json!({
                "sku": format!("SIMV-{index}-{size}"), "regular_price": format!("{}.{:02}", price / 100, price % 100),
                "manage_stock": true, "stock_quantity": rng.random_range(0..50),
                "attributes": [{"id": 0, "name": "Size", "option": size}],
            });
            if let Ok(variation) =
                store.new_variation(product.id, variation_body.as_object().expect("literal object"), at)
            {
                product.variations.push(variation.id);
                store.variations.insert(variation.id, variation);
            }
        }
        store.products.insert(product.id, product);
    }
    let existing_customers = store.customers.len();
    for n in 0..config.customers {
        let first = FIRST[rng.random_range(0..FIRST.len())];
        let last = LAST[rng.random_range(0..LAST.len())];
        let email =
            format!("{}.{}.{}@example.com", first.to_lowercase(), last.to_lowercase(), existing_customers + n + 1);
        let body = json!({
            "email": email, "first_name": first, "last_name": last,
            "billing": address(&mut rng, first, last, Some(&email)), "shipping": address(&mut rng, first, last, None),
        });
        let at = stamp(&mut rng);
        if let Ok(customer) = store.new_customer(body.as_object().expect("literal object"), at) {
            store.customers.insert(customer.id, customer);
        }
    }
    let sellable: Vec<(u64, u64)> = store
        .products
        .values()
        .flat_map(|p| {
            if p.kind == "variable" {
                p.variations.iter().map(|v| (p.id, *v)).collect::<Vec<_>>()
            } else {
                vec![(p.id, 0)]
            }
        })
        .collect();
    let customers: Vec<u64> = store.customers.keys().copied().collect();
    if sellable.is_empty() {
        return;
    }
    for _ in 0..config.orders {
        let count = rng.random_range(1..=3);
        let lines = (0..count)
            .map(|_| {
                let (product, variation) = sellable[rng.random_range(0..sellable.len())];
                (product, variation, rng.random_range(1..=3))
            })
            .collect();
        let customer_id = if customers.is_empty() || rng.random_bool(0.2) {
            0
        } else {
            customers[rng.random_range(0..customers.len())]
        };
        let paid = rng.random_bool(0.7);
        let spec = OrderSpec {
            customer_id,
            billing: None,
            shipping_address: None,
            lines,
            coupon: rng.random_bool(0.2).then(|| "save10".to_string()),
            shipping: Some(("flat_rate".into(), "Flat rate".into(), 490)),
            payment_method: if paid { "sim_card".into() } else { "bacs".into() },
            status: if paid { ["processing", "completed"][rng.random_range(0..2)].into() } else { "on-hold".into() },
            set_paid: false,
        };
        let at = stamp(&mut rng);
        let _ = build_order(store, spec, at, tax_basis_points, currency);
    }
}
