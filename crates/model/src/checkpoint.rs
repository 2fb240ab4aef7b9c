//! Checkpoints: where a flow's incremental read stopped in its source.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A watermark (the newest change time seen) plus the connector's opaque cursor.
///
/// The engine stores it; only the connector that wrote the cursor interprets it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Checkpoint {
    pub watermark: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
}

impl Checkpoint {
    pub fn is_start(&self) -> bool {
        self.watermark.is_none() && self.cursor.is_none()
    }
}
