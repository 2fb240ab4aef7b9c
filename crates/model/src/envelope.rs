//! The versioned serialized form of a record: what the store persists (dead-letter payloads,
//! snapshots) and what files of canonical JSON carry.
//!
//! `{"v": 1, "record": {"entity": "product", ...}}`. Fields are only ever added, with defaults,
//! never renamed; a form written by a newer erpsync is refused with a clear error instead of
//! being misread.

use crate::Record;
use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error(
        "record was written by schema version {found}, newer than this erpsync understands ({SCHEMA_VERSION}): upgrade erpsync"
    )]
    TooNew { found: u32 },
    #[error("record is not valid versioned JSON: {0}")]
    Malformed(#[source] serde_json::Error),
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    v: u32,
    record: &'a Record,
}

#[derive(Deserialize)]
struct Version {
    v: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeIn {
    #[allow(dead_code)]
    v: u32,
    record: Record,
}

pub fn to_vec(record: &Record) -> Vec<u8> {
    // A Record always serializes: see `content_hash`.
    serde_json::to_vec(&EnvelopeOut { v: SCHEMA_VERSION, record }).expect("records always serialize")
}

pub fn to_value(record: &Record) -> serde_json::Value {
    serde_json::to_value(EnvelopeOut { v: SCHEMA_VERSION, record }).expect("records always serialize")
}

pub fn from_slice(bytes: &[u8]) -> Result<Record, EnvelopeError> {
    let version: Version = serde_json::from_slice(bytes).map_err(EnvelopeError::Malformed)?;
    if version.v > SCHEMA_VERSION {
        return Err(EnvelopeError::TooNew { found: version.v });
    }
    let envelope: EnvelopeIn = serde_json::from_slice(bytes).map_err(EnvelopeError::Malformed)?;
    Ok(envelope.record)
}
