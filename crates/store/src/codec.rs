//! Conversions between stored columns and the store's types, shared by both backends.

use crate::{DeadLetterEvent, DeadLetterStatus, JobState, RecordAction, Result, RunStatus, StoreError};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use erpsync_model::ContentHash;
use std::time::Duration;

/// Microseconds since the Unix epoch: how SQLite stores time, and the precision of both
/// backends (PostgreSQL's timestamptz has microseconds too).
pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub(crate) fn from_micros(what: &'static str, value: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(value)
        .ok_or_else(|| StoreError::Corrupt { what, detail: format!("timestamp {value} is out of range") })
}

pub(crate) fn from_micros_opt(what: &'static str, value: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    value.map(|value| from_micros(what, value)).transpose()
}

/// `at` cut to microseconds, so a time stored and read back compares equal on both backends.
pub(crate) fn truncate_to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    // Cannot fail: the value came from a valid DateTime and only loses precision.
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// `now + lease`, saturating far in the future rather than failing on absurd leases.
pub(crate) fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    let lease = ChronoDuration::from_std(lease).unwrap_or(ChronoDuration::MAX);
    now.checked_add_signed(lease).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

pub(crate) fn content_hash(bytes: Option<Vec<u8>>) -> Result<Option<ContentHash>> {
    bytes
        .map(|bytes| {
            ContentHash::from_slice(&bytes).ok_or_else(|| StoreError::Corrupt {
                what: "snapshot hash",
                detail: format!("expected 32 bytes, found {}", bytes.len()),
            })
        })
        .transpose()
}

/// A hash as hex (either case), as SQLite's `hex()` returns it.
pub(crate) fn hash_from_hex(text: &str) -> Result<ContentHash> {
    ContentHash::from_hex(text).ok_or_else(|| StoreError::Corrupt {
        what: "snapshot hash",
        detail: format!("expected 64 hex digits, found {text:?}"),
    })
}

pub(crate) fn record_action(text: &str) -> Result<RecordAction> {
    RecordAction::parse(text).ok_or_else(|| corrupt_enum("record log action", text))
}

pub(crate) fn run_status(text: &str) -> Result<RunStatus> {
    RunStatus::parse(text).ok_or_else(|| corrupt_enum("run status", text))
}

pub(crate) fn dead_letter_status(text: &str) -> Result<DeadLetterStatus> {
    DeadLetterStatus::parse(text).ok_or_else(|| corrupt_enum("dead letter status", text))
}

pub(crate) fn job_state(text: &str) -> Result<JobState> {
    JobState::parse(text).ok_or_else(|| corrupt_enum("job state", text))
}

pub(crate) fn token_role(text: &str) -> Result<crate::TokenRole> {
    crate::TokenRole::parse(text).ok_or_else(|| corrupt_enum("token role", text))
}

pub(crate) fn token_hash(bytes: Vec<u8>) -> Result<[u8; 32]> {
    let length = bytes.len();
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt { what: "token hash", detail: format!("expected 32 bytes, found {length}") })
}

/// True when a write failed on a unique index.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.is_unique_violation())
}

fn corrupt_enum(what: &'static str, text: &str) -> StoreError {
    StoreError::Corrupt { what, detail: format!("unknown value {text:?}") }
}

pub(crate) fn json_text(what: &'static str, text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt { what, detail: error.to_string() })
}

pub(crate) fn history_from_text(text: &str) -> Result<Vec<DeadLetterEvent>> {
    serde_json::from_str(text)
        .map_err(|error| StoreError::Corrupt { what: "dead letter history", detail: error.to_string() })
}

pub(crate) fn history_from_json(value: serde_json::Value) -> Result<Vec<DeadLetterEvent>> {
    serde_json::from_value(value)
        .map_err(|error| StoreError::Corrupt { what: "dead letter history", detail: error.to_string() })
}

/// One history event, as the JSON value appended to a dead letter's history.
pub(crate) fn history_event(at: DateTime<Utc>, event: &str, detail: &str) -> serde_json::Value {
    serde_json::json!({
        "at": truncate_to_micros(at),
        "event": event,
        "detail": detail,
    })
}

/// The history event a manual status change appends.
pub(crate) fn status_event(status: DeadLetterStatus) -> &'static str {
    match status {
        DeadLetterStatus::Open => "reopened",
        DeadLetterStatus::Retrying => "retrying",
        DeadLetterStatus::Resolved => "resolved",
        DeadLetterStatus::Discarded => "discarded",
    }
}

/// Rows to return for a `limit` given by a caller: SQL wants a signed integer.
pub(crate) fn sql_limit(limit: u32) -> i64 {
    i64::from(limit)
}

/// Error text of a run found still running by [`crate::Store::interrupt_running_runs`].
pub(crate) const INTERRUPTED_ERROR: &str = "the process running it stopped before it finished";

/// Error text of a job whose lease ran out (its worker died or hung).
pub(crate) const LEASE_EXPIRED_ERROR: &str = "lease expired";
