//! Pure conversions of the `http` connector: paths into JSON, API records to and from
//! canonical records, and timestamps in the API's format.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use erpsync_mapping::{Bindings, Expression};
use erpsync_model::{EntityKind, Record};
use serde_json::Value;

/// The value at a dotted path (`data.items`, `meta.next`); the empty path is the value itself.
pub fn get_path<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(value);
    }
    path.split('.').try_fold(value, |current, part| match current {
        Value::Object(object) => object.get(part),
        Value::Array(items) => part.parse::<usize>().ok().and_then(|index| items.get(index)),
        _ => None,
    })
}

/// An id as text: strings as they are, numbers in their JSON form.
pub fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// The API record as a canonical record: through the JSONata expression when there is one,
/// else taken as the canonical JSON. The `entity` tag is added.
pub fn to_canonical(entity: EntityKind, expression: Option<&Expression>, api_record: &Value) -> Result<Record, String> {
    let mut value = match expression {
        Some(expression) => expression
            .evaluate(Some(api_record), &Bindings::default())
            .map_err(|error| format!("to_canonical: {error}"))?
            .ok_or_else(|| "to_canonical produced no value".to_string())?,
        None => api_record.clone(),
    };
    let Value::Object(object) = &mut value else {
        return Err(format!("expected an object for a {entity}, got {}", kind_of(&value)));
    };
    object.insert("entity".into(), Value::String(entity.as_str().into()));
    serde_json::from_value(value).map_err(|error| format!("does not fit a {entity}: {error}"))
}

/// The canonical record as the API's body.
pub fn from_canonical(expression: Option<&Expression>, record: &Record) -> Result<Value, String> {
    // A Record always serializes: see `erpsync_model::content_hash`.
    let mut value = serde_json::to_value(record).expect("records always serialize");
    if let Value::Object(object) = &mut value {
        object.remove("entity");
    }
    match expression {
        None => Ok(value),
        Some(expression) => expression
            .evaluate(Some(&value), &Bindings::default())
            .map_err(|error| format!("from_canonical: {error}"))?
            .ok_or_else(|| "from_canonical produced no value".to_string()),
    }
}

/// Formats a time for a query parameter.
pub fn format_time(at: DateTime<Utc>, format: &str) -> String {
    match format {
        "rfc3339" => at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "unix" => at.timestamp().to_string(),
        "unix_ms" => at.timestamp_millis().to_string(),
        pattern => at.format(pattern).to_string(),
    }
}

/// Reads a time from an API record: RFC 3339, Unix seconds or milliseconds as numbers, or the
/// configured pattern (zone-less times are UTC).
pub fn parse_time(value: &Value, format: &str) -> Option<DateTime<Utc>> {
    match value {
        Value::Number(number) => {
            let raw = number.as_i64()?;
            if format == "unix_ms" {
                Utc.timestamp_millis_opt(raw).single()
            } else {
                Utc.timestamp_opt(raw, 0).single()
            }
        }
        Value::String(text) => DateTime::parse_from_rfc3339(text)
            .map(|at| at.with_timezone(&Utc))
            .ok()
            .or_else(|| NaiveDateTime::parse_from_str(text, format).ok().map(|naive| naive.and_utc()))
            .or_else(|| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|naive| naive.and_utc()))
            .or_else(|| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").ok().map(|naive| naive.and_utc())),
        _ => None,
    }
}

pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        let value = json!({ "data": { "items": [1, 2] }, "meta": { "next": null } });
        assert_eq!(get_path(&value, "data.items.1"), Some(&json!(2)));
        assert_eq!(get_path(&value, "meta.next"), Some(&Value::Null));
        assert_eq!(get_path(&value, "nope.x"), None);
        assert_eq!(get_path(&value, ""), Some(&value));
    }

    #[test]
    fn records_through_jsonata_both_ways() {
        let to = Expression::compile("{ 'code': sku, 'title': name, 'variants': [{ 'sku': sku }] }").unwrap();
        let record = to_canonical(EntityKind::Product, Some(&to), &json!({ "sku": "A-1", "name": "Shirt" })).unwrap();
        assert_eq!(record.natural_key().as_deref(), Some("A-1"));
        let from = Expression::compile("{ 'sku': code, 'name': title }").unwrap();
        assert_eq!(from_canonical(Some(&from), &record).unwrap(), json!({ "sku": "A-1", "name": "Shirt" }));
        let error = to_canonical(EntityKind::Product, None, &json!({ "sku": "A-1" })).unwrap_err();
        assert!(error.contains("sku"), "{error}");
    }

    #[test]
    fn times() {
        let at = Utc.with_ymd_and_hms(2026, 11, 26, 10, 0, 5).unwrap();
        assert_eq!(format_time(at, "rfc3339"), "2026-11-26T10:00:05Z");
        assert_eq!(format_time(at, "%Y-%m-%d %H:%M:%S"), "2026-11-26 10:00:05");
        assert_eq!(parse_time(&json!("2026-11-26 10:00:05"), "%Y-%m-%d %H:%M:%S"), Some(at));
        assert_eq!(parse_time(&json!(at.timestamp()), "unix"), Some(at));
        assert_eq!(parse_time(&json!("2026-11-26T11:00:05+01:00"), "rfc3339"), Some(at));
    }
}
