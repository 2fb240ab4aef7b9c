//! Property tests: the content hash ignores key order and number formatting, and the versioned
//! serialized form round-trips every record.

use erpsync_model::{
    Currency, Extra, Money, OptionValue, Product, ProductStatus, Record, StockLevel, Variant, content_hash, envelope,
};
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::Value;

fn decimal() -> impl Strategy<Value = Decimal> {
    (0i64..10_000_000, 0u32..5).prop_map(|(mantissa, scale)| Decimal::new(mantissa, scale))
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::from),
        "[a-z0-9 ]{0,8}".prop_map(Value::String),
        Just(Value::Null),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,6}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn extra() -> impl Strategy<Value = Extra> {
    prop::collection::btree_map("[a-z_]{1,8}", json_value(), 0..5).prop_map(|map| Extra(map.into_iter().collect()))
}

fn variant() -> impl Strategy<Value = Variant> {
    ("[A-Z0-9-]{1,12}", proptest::option::of(decimal()), "[SML]", extra()).prop_map(|(sku, price, size, extra)| {
        Variant {
            sku,
            price: price.map(|amount| Money::new(amount, Currency::EUR)),
            options: vec![OptionValue { option: "Size".into(), value: size }],
            extra,
            ..Variant::default()
        }
    })
}

fn product() -> impl Strategy<Value = Product> {
    (
        "[A-Z0-9-]{1,12}",
        ".{0,20}",
        prop::collection::vec(variant(), 1..4),
        extra(),
        prop::collection::vec("[a-z]{1,6}", 0..3),
    )
        .prop_map(|(code, title, variants, extra, tags)| Product {
            code,
            title,
            status: ProductStatus::Active,
            variants,
            extra,
            tags,
            ..Product::default()
        })
}

fn record() -> impl Strategy<Value = Record> {
    prop_oneof![
        product().prop_map(Record::Product),
        ("[A-Z0-9]{1,8}", "[A-Z]{1,4}", decimal(), extra()).prop_map(|(sku, location, available, extra)| {
            Record::StockLevel(StockLevel { sku, location, available, extra, ..StockLevel::default() })
        }),
    ]
}

/// Serializes a value as JSON text with every object's keys reversed.
fn reversed_text(value: &Value) -> String {
    match value {
        Value::Object(object) => {
            let mut parts: Vec<String> = object
                .iter()
                .map(|(key, value)| format!("{}:{}", serde_json::to_string(key).unwrap(), reversed_text(value)))
                .collect();
            parts.reverse();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(reversed_text).collect::<Vec<_>>().join(",")),
        other => serde_json::to_string(other).unwrap(),
    }
}

proptest! {
    #[test]
    fn hash_does_not_depend_on_key_order(record in record()) {
        let value = serde_json::to_value(&record).unwrap();
        let text = reversed_text(&value);
        let reparsed: Record = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(content_hash(&reparsed), content_hash(&record));
    }

    #[test]
    fn hash_does_not_depend_on_decimal_formatting(record in product()) {
        // 19.9 and 19.90 are the same price.
        let mut padded = record.clone();
        for variant in &mut padded.variants {
            if let Some(price) = &mut variant.price {
                price.amount.rescale(price.amount.scale() + 2);
            }
        }
        prop_assert_eq!(content_hash(&Record::Product(padded)), content_hash(&Record::Product(record)));
    }

    #[test]
    fn hash_changes_when_content_changes(record in product(), suffix in "[a-z]{1,4}") {
        let mut changed = record.clone();
        changed.title.push_str(&suffix);
        prop_assert_ne!(content_hash(&Record::Product(changed)), content_hash(&Record::Product(record)));
    }

    #[test]
    fn versioned_form_round_trips(record in record()) {
        let bytes = envelope::to_vec(&record);
        let back = envelope::from_slice(&bytes).unwrap();
        prop_assert_eq!(content_hash(&back), content_hash(&record));
        // Equal up to decimal normalization, which the form applies on purpose.
        prop_assert_eq!(envelope::to_vec(&back), bytes);
    }

    #[test]
    fn reading_a_known_kind_equals_reading_the_tagged_record(record in record()) {
        let value = serde_json::to_value(&record).unwrap();
        let direct = Record::from_value_of(record.kind(), value.clone()).unwrap();
        let tagged: Record = serde_json::from_value(value.clone()).unwrap();
        prop_assert_eq!(&direct, &tagged);
        let mut untagged = value;
        untagged.as_object_mut().unwrap().remove("entity");
        prop_assert_eq!(Record::from_value_of(record.kind(), untagged).unwrap(), tagged);
    }
}

#[test]
fn reading_a_known_kind_refuses_another_entity_tag() {
    let value = serde_json::json!({"entity": "stock_level", "sku": "A", "location": "main", "available": "1"});
    let error = Record::from_value_of(erpsync_model::EntityKind::Product, value).unwrap_err();
    assert!(error.to_string().contains("\"stock_level\" where product was expected"), "{error}");
}

#[test]
fn newer_schema_versions_are_refused_with_a_clear_error() {
    let error = envelope::from_slice(br#"{"v": 99, "record": {"entity": "stock_level"}}"#).unwrap_err();
    assert!(error.to_string().contains("newer"), "{error}");
}

#[test]
fn older_forms_without_new_fields_still_read() {
    // A version-1 product written before `tax_class` and `attributes` existed.
    let record = envelope::from_slice(
        br#"{"v": 1, "record": {"entity": "product", "code": "A", "title": "T", "variants": [{"sku": "A"}]}}"#,
    )
    .unwrap();
    assert_eq!(record.natural_key().as_deref(), Some("A"));
}

#[test]
fn unknown_fields_are_errors_not_silently_dropped() {
    let error =
        envelope::from_slice(br#"{"v": 1, "record": {"entity": "product", "code": "A", "titel": "T"}}"#).unwrap_err();
    assert!(error.to_string().contains("titel"), "{error}");
}

#[test]
fn validation_reports_every_problem_with_its_field() {
    let record = Record::StockLevel(StockLevel {
        sku: String::new(),
        location: "WH".into(),
        available: Decimal::new(-3, 0),
        ..StockLevel::default()
    });
    let errors = record.validate().unwrap_err();
    let text = errors.to_string();
    assert!(text.contains("sku: is required"), "{text}");
    assert!(text.contains("available: must not be negative"), "{text}");
}
