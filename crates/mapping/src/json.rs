//! Conversion between `serde_json::Value` (what the rest of erpsync speaks) and jsonata-core's `JValue`.
//!
//! jsonata-core's own `From<&JValue>` turns every number into a float (`5` becomes `5.0`, which an
//! integer field refuses), turns functions and `NaN` into `null` without a word, and recurses without
//! a bound. Mapped output must be exact or fail with a reason, so the conversion out is ours.

use indexmap::IndexMap;
use jsonata_core::value::{JArray, JValue};
use serde_json::{Map, Number, Value};

/// Deeper output than this is almost certainly a runaway expression, and converting it would
/// recurse once per level.
pub(crate) const MAX_OUTPUT_DEPTH: usize = 256;

/// Integers up to 2^53 are exact in a float; beyond that the value is written as a float.
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// Why a JSONata result is not JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotJson {
    Function,
    Regex,
    NotFinite,
    TooDeep,
}

impl NotJson {
    pub(crate) fn describe(self) -> String {
        match self {
            NotJson::Function => "a function, which is not a json value".to_string(),
            NotJson::Regex => "a regular expression, which is not a json value".to_string(),
            NotJson::NotFinite => "a number that is not finite (nan or infinity)".to_string(),
            NotJson::TooDeep => format!("a value nested deeper than {MAX_OUTPUT_DEPTH} levels"),
        }
    }
}

/// The input side: every JSON value has a `JValue`. Numbers become floats, as in JavaScript.
///
/// Converted from the borrowed value, without first cloning the whole tree: this runs once per
/// record on the mapping's hot path.
pub(crate) fn to_jvalue(value: &Value) -> JValue {
    match value {
        Value::Null => JValue::Null,
        Value::Bool(flag) => JValue::Bool(*flag),
        Value::Number(number) => JValue::Number(number.as_f64().unwrap_or(0.0)),
        Value::String(text) => JValue::String(text.as_str().into()),
        Value::Array(items) => {
            let flat = !items.iter().any(Value::is_array);
            JValue::Array(JArray::new_flat(items.iter().map(to_jvalue).collect(), flat))
        }
        Value::Object(map) => {
            JValue::object(map.iter().map(|(key, item)| (key.clone(), to_jvalue(item))).collect::<IndexMap<_, _>>())
        }
    }
}

/// The input side for an expression that reads only some top-level fields: an object keeps the
/// fields `keep` accepts, in their order; any other value converts whole.
pub(crate) fn to_jvalue_fields(value: &Value, keep: impl Fn(&str) -> bool) -> JValue {
    match value {
        Value::Object(map) => JValue::object(
            map.iter()
                .filter(|(key, _)| keep(key))
                .map(|(key, item)| (key.clone(), to_jvalue(item)))
                .collect::<IndexMap<_, _>>(),
        ),
        other => to_jvalue(other),
    }
}

/// The output side. `None` is JSONata's `undefined` (no value at all).
///
/// Inside arrays and objects `undefined` follows `JSON.stringify`, which is how the reference
/// implementation's users see results: dropped from objects, `null` in arrays.
pub(crate) fn from_jvalue(value: &JValue) -> Result<Option<Value>, NotJson> {
    convert(value, 0)
}

fn convert(value: &JValue, depth: usize) -> Result<Option<Value>, NotJson> {
    if depth > MAX_OUTPUT_DEPTH {
        return Err(NotJson::TooDeep);
    }
    let converted = match value {
        JValue::Undefined => return Ok(None),
        JValue::Null => Value::Null,
        JValue::Bool(flag) => Value::Bool(*flag),
        JValue::Number(number) => Value::Number(number_to_json(*number)?),
        JValue::String(text) => Value::String(text.to_string()),
        JValue::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items.iter() {
                out.push(convert(item, depth + 1)?.unwrap_or(Value::Null));
            }
            Value::Array(out)
        }
        JValue::Object(object) => {
            let mut out = Map::new();
            for (key, item) in object.iter() {
                if let Some(item) = convert(item, depth + 1)? {
                    out.insert(key.clone(), item);
                }
            }
            Value::Object(out)
        }
        JValue::Regex { .. } => return Err(NotJson::Regex),
        // Lambdas, built-ins and (in builds with jsonata-core's Python feature) lazy Python objects:
        // none of them is data a record can hold.
        _ => return Err(NotJson::Function),
    };
    Ok(Some(converted))
}

fn number_to_json(number: f64) -> Result<Number, NotJson> {
    if !number.is_finite() {
        return Err(NotJson::NotFinite);
    }
    if number.fract() == 0.0 && number.abs() <= MAX_EXACT_INTEGER {
        // Exact: the float holds an integer that fits in 53 bits, so the cast loses nothing.
        return Ok(Number::from(number as i64));
    }
    Number::from_f64(number).ok_or(NotJson::NotFinite)
}

/// A short name of a value's JSON type, for messages.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The same for a `JValue`, including the kinds JSON does not have.
pub(crate) fn jvalue_type_name(value: &JValue) -> &'static str {
    match value {
        JValue::Undefined => "no value",
        JValue::Null => "null",
        JValue::Bool(_) => "a boolean",
        JValue::Number(_) => "a number",
        JValue::String(_) => "a string",
        JValue::Array(_) => "an array",
        JValue::Object(_) => "an object",
        JValue::Regex { .. } => "a regular expression",
        _ => "a function",
    }
}

/// A value shortened for an error message: long strings and objects are cut.
pub(crate) fn brief(value: &Value) -> String {
    shorten(&value.to_string(), 80)
}

pub(crate) fn shorten(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let cut: String = text.chars().take(max_chars).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(input: Value, expected: Option<Value>) {
        let converted = from_jvalue(&to_jvalue(&input)).unwrap();
        assert_eq!(converted, expected, "round trip of {input}");
    }

    #[test]
    fn integers_stay_integers_and_fractions_stay_fractions() {
        check(json!(5), Some(json!(5)));
        check(json!(-3), Some(json!(-3)));
        check(json!(19.9), Some(json!(19.9)));
        check(json!({"a": [1, 2.5, "x", null, true]}), Some(json!({"a": [1, 2.5, "x", null, true]})));
    }

    #[test]
    fn undefined_is_none_at_the_top_dropped_in_objects_and_null_in_arrays() {
        assert_eq!(from_jvalue(&JValue::Undefined).unwrap(), None);
        let mut object = jsonata_core::value::JValue::from(json!({"a": 1}));
        if let Some(map) = object.as_object_mut() {
            map.insert("b".to_string(), JValue::Undefined);
        }
        assert_eq!(from_jvalue(&object).unwrap(), Some(json!({"a": 1})));
        let array = JValue::array(vec![JValue::from(1i64), JValue::Undefined]);
        assert_eq!(from_jvalue(&array).unwrap(), Some(json!([1, null])));
    }

    #[test]
    fn non_finite_numbers_and_functions_are_refused() {
        assert_eq!(from_jvalue(&JValue::Number(f64::NAN)), Err(NotJson::NotFinite));
        assert_eq!(from_jvalue(&JValue::builtin("sum")), Err(NotJson::Function));
    }
}
