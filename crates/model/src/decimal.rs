//! Serde helpers for `Decimal` fields: written as normalized strings, read from strings or numbers.
//!
//! Normalizing (`19.90` is written `19.9`) makes equal amounts serialize, and therefore hash,
//! identically whatever precision the source system used. Reading accepts JSON numbers too,
//! because many APIs send prices as numbers; they are parsed from their text, never via `f64`.

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serializer, de};
use std::str::FromStr;

pub fn serialize<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&value.normalize())
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
    let raw = serde_json::Value::deserialize(deserializer)?;
    parse_json(&raw).map_err(de::Error::custom)
}

/// Parses a decimal from a JSON string or number without passing through a float.
pub fn parse_json(raw: &serde_json::Value) -> Result<Decimal, String> {
    match raw {
        serde_json::Value::String(text) => parse_str(text),
        serde_json::Value::Number(number) => parse_str(&number.to_string()),
        other => Err(format!("expected a decimal number, found {other}")),
    }
}

/// Parses a decimal written as plain text (`12.5`, `-3`, `1e3`).
pub fn parse_str(text: &str) -> Result<Decimal, String> {
    let trimmed = text.trim();
    Decimal::from_str(trimmed)
        .or_else(|_| Decimal::from_scientific(trimmed))
        .map_err(|_| format!("{text:?} is not a decimal number"))
}

/// The same for `Option<Decimal>` fields.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Option<Decimal>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => serializer.collect_str(&value.normalize()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Decimal>, D::Error> {
        let raw = Option::<serde_json::Value>::deserialize(deserializer)?;
        match raw {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(raw) => parse_json(&raw).map(Some).map_err(de::Error::custom),
        }
    }
}
