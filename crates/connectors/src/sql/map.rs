//! Pure conversions: database values ⇄ the text cells of the flat column scheme, cells ⇄ typed
//! values to bind, and the cursor the source keeps in the checkpoint. No I/O.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeDelta, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::str::FromStr;

/// What kind of value a column holds, from its type name on either database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnKind {
    Text,
    Integer,
    Decimal,
    Float,
    Bool,
    /// PostgreSQL `timestamptz`.
    TimestampTz,
    /// PostgreSQL `timestamp`, MariaDB `DATETIME` and `TIMESTAMP`: read and written as UTC.
    Timestamp,
    Date,
    Json,
    Other,
}

impl ColumnKind {
    /// From a type name as PostgreSQL (`int4`, `timestamptz`) or MariaDB (`bigint`,
    /// `datetime`) spells it, in any case.
    pub(crate) fn from_type_name(name: &str) -> ColumnKind {
        let lower = name.to_ascii_lowercase();
        let base = lower.split(['(', ' ']).next().unwrap_or("");
        match base {
            "text" | "varchar" | "bpchar" | "char" | "character" | "name" | "citext" | "tinytext" | "mediumtext"
            | "longtext" | "enum" | "set" => ColumnKind::Text,
            "int2" | "int4" | "int8" | "smallint" | "integer" | "int" | "bigint" | "mediumint" | "tinyint" => {
                ColumnKind::Integer
            }
            "numeric" | "decimal" => ColumnKind::Decimal,
            "float4" | "float8" | "real" | "float" | "double" => ColumnKind::Float,
            "bool" | "boolean" => ColumnKind::Bool,
            "timestamptz" => ColumnKind::TimestampTz,
            "timestamp" | "datetime" => ColumnKind::Timestamp,
            "date" => ColumnKind::Date,
            "json" | "jsonb" => ColumnKind::Json,
            _ => ColumnKind::Other,
        }
    }
}

/// One database value, typed enough to be bound back exactly (a keyset position) or written
/// as text (a flat cell).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub(crate) enum SqlValue {
    Null,
    Text(String),
    Integer(i64),
    Decimal(Decimal),
    Float(f64),
    Bool(bool),
    TimestampTz(DateTime<Utc>),
    Timestamp(NaiveDateTime),
    Date(NaiveDate),
    Json(Value),
}

impl SqlValue {
    /// The value as a cell of the flat scheme: times in RFC 3339 UTC, JSON as compact text,
    /// NULL as the empty (absent) cell.
    pub(crate) fn to_cell(&self) -> String {
        match self {
            SqlValue::Null => String::new(),
            SqlValue::Text(text) => text.clone(),
            SqlValue::Integer(number) => number.to_string(),
            SqlValue::Decimal(number) => number.normalize().to_string(),
            SqlValue::Float(number) => number.to_string(),
            SqlValue::Bool(value) => value.to_string(),
            SqlValue::TimestampTz(at) => at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            SqlValue::Timestamp(at) => at.and_utc().to_rfc3339_opts(SecondsFormat::AutoSi, true),
            SqlValue::Date(date) => date.format("%Y-%m-%d").to_string(),
            SqlValue::Json(Value::String(text)) => text.clone(),
            SqlValue::Json(value) => value.to_string(),
        }
    }

    /// The instant a change-column value stands for (naive times are UTC).
    pub(crate) fn instant(&self) -> Option<DateTime<Utc>> {
        match self {
            SqlValue::TimestampTz(at) => Some(*at),
            SqlValue::Timestamp(at) => Some(at.and_utc()),
            SqlValue::Date(date) => date.and_hms_opt(0, 0, 0).map(|at| at.and_utc()),
            _ => None,
        }
    }

    /// The value moved back by the overlap: seconds for times, units for versions.
    pub(crate) fn minus_overlap(&self, overlap: u64) -> SqlValue {
        let seconds = TimeDelta::seconds(i64::try_from(overlap).unwrap_or(i64::MAX / 1000));
        match self {
            SqlValue::TimestampTz(at) => SqlValue::TimestampTz(*at - seconds),
            SqlValue::Timestamp(at) => SqlValue::Timestamp(*at - seconds),
            SqlValue::Date(date) => SqlValue::Date(*date - TimeDelta::days(1)),
            SqlValue::Integer(version) => {
                SqlValue::Integer(version.saturating_sub(i64::try_from(overlap).unwrap_or(i64::MAX)))
            }
            SqlValue::Decimal(version) => SqlValue::Decimal(*version - Decimal::from(overlap)),
            other => other.clone(),
        }
    }
}

/// Turns a flat cell into the value to bind for a column of the given kind. An empty cell is
/// NULL. Fails with a message naming what was expected.
pub(crate) fn cell_to_value(kind: ColumnKind, cell: &str) -> Result<SqlValue, String> {
    if cell.is_empty() {
        return Ok(SqlValue::Null);
    }
    Ok(match kind {
        ColumnKind::Text | ColumnKind::Other => SqlValue::Text(cell.to_string()),
        ColumnKind::Integer => match cell {
            // MariaDB's BOOLEAN is TINYINT(1).
            "true" => SqlValue::Integer(1),
            "false" => SqlValue::Integer(0),
            _ => SqlValue::Integer(cell.parse().map_err(|_| format!("{cell:?} is not an integer"))?),
        },
        ColumnKind::Decimal => SqlValue::Decimal(
            Decimal::from_str(cell)
                .or_else(|_| Decimal::from_scientific(cell))
                .map_err(|_| format!("{cell:?} is not a decimal number"))?,
        ),
        ColumnKind::Float => SqlValue::Float(cell.parse().map_err(|_| format!("{cell:?} is not a number"))?),
        ColumnKind::Bool => SqlValue::Bool(match cell {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(format!("{cell:?} is not true or false")),
        }),
        ColumnKind::TimestampTz => SqlValue::TimestampTz(parse_time(cell)?),
        ColumnKind::Timestamp => SqlValue::Timestamp(parse_time(cell)?.naive_utc()),
        ColumnKind::Date => SqlValue::Date(
            NaiveDate::parse_from_str(cell, "%Y-%m-%d")
                .or_else(|_| parse_time(cell).map(|at| at.date_naive()))
                .map_err(|_| format!("{cell:?} is not a date (YYYY-MM-DD)"))?,
        ),
        ColumnKind::Json => {
            SqlValue::Json(serde_json::from_str(cell).unwrap_or_else(|_| Value::String(cell.to_string())))
        }
    })
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))
        .map(|at| at.and_utc())
        .map_err(|_| format!("{text:?} is not a time (RFC 3339)"))
}

/// The cursor's format version. A cursor of another version is refused, not guessed at.
pub(crate) const CURSOR_VERSION: u32 = 1;

/// Where a scan stands, kept as JSON in the checkpoint's cursor:
/// `{"v":1,"state":"scan","from":…,"after":{"change":…,"key":[…]}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Cursor {
    pub v: u32,
    #[serde(flatten)]
    pub state: ScanState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum ScanState {
    /// The first scan reads the rows whose change column is NULL first, ordered by key.
    Nulls { after_key: Option<Vec<SqlValue>> },
    /// Rows ordered by (change column, key): from `from` (inclusive, the previous watermark
    /// minus the overlap) and strictly after `after` (the last row read in this scan).
    /// `previous` is the previous scan's watermark, kept in case this scan finds nothing newer.
    Scan { from: Option<SqlValue>, previous: Option<SqlValue>, after: Option<Position> },
    /// The previous scan reached the end; `last` is the greatest change value it saw. The next
    /// read starts a new scan at `last` minus the overlap.
    CaughtUp { last: Option<SqlValue> },
    /// Without a change column every run reads everything, ordered by key.
    Full { after_key: Option<Vec<SqlValue>> },
}

/// The (change column, key) of the last row read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Position {
    pub change: SqlValue,
    pub key: Vec<SqlValue>,
}

impl Cursor {
    pub(crate) fn new(state: ScanState) -> Cursor {
        Cursor { v: CURSOR_VERSION, state }
    }

    pub(crate) fn to_json(&self) -> String {
        // Plain data always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub(crate) fn parse(text: &str) -> Result<Cursor, String> {
        let value: Value = serde_json::from_str(text).map_err(|error| format!("the cursor is not JSON: {error}"))?;
        match value.get("v").and_then(Value::as_u64) {
            Some(v) if v == u64::from(CURSOR_VERSION) => {}
            other => {
                return Err(format!(
                    "the cursor has version {other:?}, this connector writes version {CURSOR_VERSION}: reset the flow's checkpoint"
                ));
            }
        }
        serde_json::from_value(value).map_err(|error| format!("the cursor is not a sql cursor: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_with_its_version() {
        let cursor = Cursor::new(ScanState::Scan {
            from: Some(SqlValue::Timestamp(NaiveDate::from_ymd_opt(2026, 1, 2).unwrap().and_hms_opt(3, 4, 5).unwrap())),
            previous: None,
            after: Some(Position {
                change: SqlValue::Integer(7),
                key: vec![SqlValue::Text("A".into()), SqlValue::Integer(3)],
            }),
        });
        let text = cursor.to_json();
        assert!(text.starts_with(r#"{"v":1,"state":"scan""#), "{text}");
        assert_eq!(Cursor::parse(&text).unwrap(), cursor);
        assert!(Cursor::parse(r#"{"v":2,"state":"full"}"#).unwrap_err().contains("version"));
    }

    #[test]
    fn cells_become_typed_values() {
        assert_eq!(cell_to_value(ColumnKind::Integer, "true").unwrap(), SqlValue::Integer(1));
        assert_eq!(cell_to_value(ColumnKind::Decimal, "12.50").unwrap(), SqlValue::Decimal(Decimal::new(1250, 2)));
        assert_eq!(cell_to_value(ColumnKind::Text, "").unwrap(), SqlValue::Null);
        let at = cell_to_value(ColumnKind::Timestamp, "2026-01-02T03:04:05.25+01:00").unwrap();
        assert_eq!(at.to_cell(), "2026-01-02T02:04:05.250Z");
        assert!(cell_to_value(ColumnKind::Integer, "x").unwrap_err().contains("integer"));
        assert_eq!(ColumnKind::from_type_name("TIMESTAMPTZ"), ColumnKind::TimestampTz);
        assert_eq!(ColumnKind::from_type_name("BIGINT UNSIGNED"), ColumnKind::Integer);
    }
}
