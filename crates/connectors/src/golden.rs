//! Golden tests of the default mapping for each connector pair.
//!
//! A flow's default mapping is the canonical model on both sides: the source connector turns its
//! record into the canonical entity, the record is validated, and the target connector turns it
//! into what it sends. Each case in `tests/golden/` holds a record as the source system returns
//! it (`input`, written by hand from the vendor's documented shapes), the canonical record it
//! becomes, and the payload the target connector builds from it. The last two were generated
//! once and read line by line; a change to either fails the test with a diff, so a mapping
//! cannot change by accident.
//!
//! After an intended change, `ERPSYNC_UPDATE_GOLDEN=1 cargo test -p erpsync-connectors golden`
//! rewrites the expected parts, and the diff goes to review with the code.
//!
//! Orders into Tryton are not here: the Tryton sink builds a sale from lookups it makes on the
//! server (party, products, shop), so its pair tests run against the real server instead
//! (`tests/tryton.rs` and the matrix tests of the CLI).

use crate::medusa::map::product_to_medusa;
use crate::odoo::sink::{new_partner_values, order_values};
use crate::odoo::source::product_from;
use crate::shopify::map::{customer as shopify_customer, order as shopify_order, product_set_input};
use crate::tryton::map::product_from_rows;
use crate::woocommerce::map::{ShopSettings, order_from_woo, product_to_woo};
use erpsync_model::{Currency, Customer, Order, Product, Record};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

fn eur() -> Currency {
    "EUR".parse().expect("EUR is a currency")
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Validates the canonical record as the engine does between the two connectors.
fn canonical(record: Record) -> Value {
    if let Err(problems) = record.validate() {
        panic!("the canonical record is not valid: {problems:?}");
    }
    serde_json::to_value(&record).expect("records serialize")
}

/// Reads the case, runs `pipeline` on its input, and compares (or, with
/// `ERPSYNC_UPDATE_GOLDEN=1`, rewrites) the canonical record and the target payload.
fn check(case: &str, pipeline: impl Fn(&Value) -> (Value, Value)) {
    let path = golden_dir().join(format!("{case}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let mut golden: Value =
        serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}: not JSON: {error}", path.display()));
    let (canonical, output) = pipeline(&golden["input"]);
    if std::env::var_os("ERPSYNC_UPDATE_GOLDEN").is_some() {
        golden["canonical"] = canonical;
        golden["output"] = output;
        let mut text = serde_json::to_string_pretty(&golden).expect("JSON serializes");
        text.push('\n');
        std::fs::write(&path, text).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        return;
    }
    for (part, actual) in [("canonical", &canonical), ("output", &output)] {
        let expected = &golden[part];
        if expected != actual {
            panic!(
                "{case}: the {part} differs from {}\n{}\n(after an intended change, rerun with ERPSYNC_UPDATE_GOLDEN=1 and review the diff)",
                path.display(),
                diff(expected, actual)
            );
        }
    }
}

/// The paths where two JSON values differ, with both sides.
fn diff(expected: &Value, actual: &Value) -> String {
    fn walk(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
        match (expected, actual) {
            (Value::Object(left), Value::Object(right)) => {
                let keys: BTreeSet<&String> = left.keys().chain(right.keys()).collect();
                for key in keys {
                    let null = Value::Null;
                    walk(
                        &format!("{path}.{key}"),
                        left.get(key).unwrap_or(&null),
                        right.get(key).unwrap_or(&null),
                        out,
                    );
                }
            }
            (Value::Array(left), Value::Array(right)) if left.len() == right.len() => {
                for (index, (left, right)) in left.iter().zip(right).enumerate() {
                    walk(&format!("{path}[{index}]"), left, right, out);
                }
            }
            (left, right) if left != right => out.push(format!("  {path}: expected {left}, got {right}")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("$", expected, actual, &mut out);
    out.join("\n")
}

// ---- ERP to shop: products ----

/// An Odoo template and its variants as the connector reads them (`input.template`,
/// `input.variants`, `input.attribute_values` as `[id, attribute, value]`).
fn odoo_product(input: &Value) -> Product {
    let variants: Vec<&Value> = input["variants"].as_array().expect("input.variants").iter().collect();
    let values: HashMap<i64, (String, String)> = input["attribute_values"]
        .as_array()
        .expect("input.attribute_values")
        .iter()
        .map(|row| {
            (
                row[0].as_i64().expect("an id"),
                (row[1].as_str().expect("an attribute").into(), row[2].as_str().expect("a value").into()),
            )
        })
        .collect();
    product_from(&input["template"], &variants, Some("product_template_attribute_value_ids"), &values, eur(), &[], &[])
}

fn tryton_product(input: &Value) -> Product {
    let variants: Vec<&Value> = input["variants"].as_array().expect("input.variants").iter().collect();
    product_from_rows(&input["template"], &variants, eur())
}

fn to_shopify(product: Product) -> (Value, Value) {
    let output = product_set_input(&product, &HashMap::new(), true).expect("a productSet input");
    (canonical(Record::Product(product)), output)
}

fn to_woocommerce(product: Product) -> (Value, Value) {
    let shop = ShopSettings { currency: eur(), prices_include_tax: false, weight_unit: "kg".into() };
    let (parent, variations) = product_to_woo(&product, &shop).expect("a WooCommerce product");
    let variations: Vec<Value> = variations.into_iter().map(|(sku, body)| json!({"sku": sku, "body": body})).collect();
    (canonical(Record::Product(product)), json!({"product": parent, "variations": variations}))
}

fn to_medusa(product: Product) -> (Value, Value) {
    let output = product_to_medusa(&product, eur(), "sc_default", "sp_default").expect("a Medusa product");
    (canonical(Record::Product(product)), output)
}

#[test]
fn odoo_to_shopify_product() {
    check("odoo-shopify-product", |input| to_shopify(odoo_product(input)));
}

#[test]
fn odoo_to_woocommerce_product() {
    check("odoo-woocommerce-product", |input| to_woocommerce(odoo_product(input)));
}

#[test]
fn tryton_to_shopify_product() {
    check("tryton-shopify-product", |input| to_shopify(tryton_product(input)));
}

#[test]
fn tryton_to_woocommerce_product() {
    check("tryton-woocommerce-product", |input| to_woocommerce(tryton_product(input)));
}

#[test]
fn tryton_to_medusa_product() {
    check("tryton-medusa-product", |input| to_medusa(tryton_product(input)));
}

// ---- shop to ERP: orders and customers ----

/// A `sale.order` for an order, with the ids the Odoo sink would have looked up: partners 7, 8
/// and 9, products numbered from 101 in SKU order, the shipping product `SHIP`, and sale taxes of
/// 19 % included (id 1) and excluded (id 2) from the price, and of 20 % (ids 3 and 4).
fn to_odoo(order: Order) -> (Value, Value) {
    let mut skus: Vec<String> = order.lines.iter().map(|line| line.sku.trim().to_string()).collect();
    skus.push("SHIP".into());
    skus.sort();
    skus.dedup();
    let products: HashMap<String, i64> = skus.into_iter().zip(101..).collect();
    let taxes = [
        json!({"id": 1, "amount": 19.0, "price_include": true}),
        json!({"id": 2, "amount": 19.0, "price_include": false}),
        json!({"id": 3, "amount": 20.0, "price_include": true}),
        json!({"id": 4, "amount": 20.0, "price_include": false}),
    ];
    let output = order_values(&order, (7, 8, 9), &products, &taxes, "tax_ids", Some("SHIP"), &HashMap::new(), Some(1))
        .expect("sale.order values");
    (canonical(Record::Order(order)), output)
}

/// A new `res.partner` for a customer, with Germany as country 57.
fn customer_to_odoo(customer: Customer) -> (Value, Value) {
    let countries = HashMap::from([("DE".to_string(), 57)]);
    let output = new_partner_values(&customer, &countries);
    (canonical(Record::Customer(customer)), output)
}

#[test]
fn shopify_to_odoo_order() {
    check("shopify-odoo-order", |input| to_odoo(shopify_order(input).expect("a Shopify order")));
}

#[test]
fn woocommerce_to_odoo_order() {
    check("woocommerce-odoo-order", |input| to_odoo(order_from_woo(input).expect("a WooCommerce order")));
}

#[test]
fn shopify_to_odoo_customer() {
    check("shopify-odoo-customer", |input| customer_to_odoo(shopify_customer(input).expect("a Shopify customer")));
}

#[test]
fn a_changed_mapping_fails_with_the_path_that_changed() {
    let expected = json!({"lines": [{"price": "10.00"}], "number": "#1001"});
    let actual = json!({"lines": [{"price": "12.00"}], "number": "#1001"});
    assert_eq!(diff(&expected, &actual), r#"  $.lines[0].price: expected "10.00", got "12.00""#);
}
