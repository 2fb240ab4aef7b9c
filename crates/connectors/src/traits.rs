//! The capability traits: `Source` (pull a page from a checkpoint) and `Sink` (push a batch,
//! one outcome per record).

use crate::ConnectorError;
use async_trait::async_trait;
use erpsync_model::{Checkpoint, EntityKind, Record};

/// What a connector can do with one entity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    pub read: bool,
    pub incremental_read: bool,
    pub write: bool,
    pub delete: bool,
    pub webhook: bool,
    /// The sink can find an existing record by natural key ([`Sink::lookup`]).
    pub lookup: bool,
}

#[derive(Debug, Clone)]
pub struct ReadRequest<'a> {
    pub entity: EntityKind,
    /// Where the previous page stopped; the default checkpoint means "from the beginning".
    pub checkpoint: &'a Checkpoint,
    /// Upper bound on records per page. A source may return fewer, and may exceed it only to
    /// keep one record whole (all rows of one product).
    pub page_size: usize,
}

/// One page read from a source.
#[derive(Debug, Clone)]
pub struct SourcePage {
    pub records: Vec<SourceRecord>,
    /// The checkpoint after this page, to be stored once every record of it is durable.
    pub checkpoint: Checkpoint,
    /// No more records after this page (for now).
    pub done: bool,
}

/// One record as read: either a canonical record or a problem that makes it a dead letter.
#[derive(Debug, Clone)]
pub struct SourceRecord {
    /// The record's id in the source system. For files: the natural key.
    pub source_id: String,
    /// Where it came from, for people: `products.csv: row 12` (rows count from 1, the header
    /// is row 1).
    pub origin: Option<String>,
    /// Identity of the batch it came from (`products.csv` plus its fingerprint): two records with
    /// the same source id and the same group are a duplicate within one file.
    pub origin_group: Option<String>,
    pub content: Result<Record, RecordProblem>,
}

/// Why a source record cannot be used, with the raw input kept for the dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordProblem {
    /// `parse`, `validation`, `duplicate`, `encoding`.
    pub kind: String,
    pub message: String,
    /// The raw input: the row as header → value, or the line as text.
    pub raw: serde_json::Value,
}

#[async_trait]
pub trait Source: Send + Sync {
    fn capabilities(&self, entity: EntityKind) -> Capabilities;
    async fn read_page(&self, request: &ReadRequest<'_>) -> Result<SourcePage, ConnectorError>;

    /// Whether [`Source::fetch`] works for `entity`.
    fn can_fetch(&self, _entity: EntityKind) -> bool {
        false
    }

    /// The current state of records by their ids in this system: for webhook events that only
    /// name an id, and for two-way merges that must see the target as it is now. One entry per
    /// id, in order; `None` when the system has no such record (it was deleted).
    async fn fetch(&self, entity: EntityKind, _ids: &[String]) -> Result<Vec<Option<SourceRecord>>, ConnectorError> {
        Err(ConnectorError::new(
            crate::ErrorKind::InvalidRequest,
            format!("reading {entity} records by id"),
            "this connector cannot read records by id",
        ))
    }
}

/// One record to write.
#[derive(Debug, Clone)]
pub struct WriteItem {
    /// The record's id in the target when a link exists (update), else `None` (create).
    pub target_id: Option<String>,
    pub natural_key: String,
    pub record: Record,
}

#[derive(Debug, Clone)]
pub struct WriteBatch {
    pub entity: EntityKind,
    /// Deterministic for the same page of the same flow: sinks use it as an idempotency key
    /// so that a batch replayed after a crash does not write twice.
    pub batch_id: String,
    pub items: Vec<WriteItem>,
}

#[derive(Debug)]
pub enum WriteOutcome {
    Created { target_id: String },
    Updated { target_id: String },
    Failed(ConnectorError),
}

#[async_trait]
pub trait Sink: Send + Sync {
    fn capabilities(&self, entity: EntityKind) -> Capabilities;
    /// Largest batch the target accepts in one call.
    fn max_batch_size(&self, entity: EntityKind) -> usize;
    /// Finds existing records by natural key (first sync matches before it creates). One entry
    /// per key, in order. Sinks without lookup return all `None`.
    async fn lookup(&self, entity: EntityKind, natural_keys: &[String]) -> Result<Vec<Option<String>>, ConnectorError>;
    /// Writes a batch. `Err` means nothing of the batch is known to be written (retry it
    /// whole); `Ok` has one outcome per item, in order.
    async fn write_batch(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError>;

    /// Archives or deletes records that were deleted at the source (see
    /// [`Capabilities::delete`]). `Ok` has one outcome per item, in order: `Updated` when the
    /// record was archived or deleted (the engine records the delete), `Failed` otherwise.
    async fn delete_batch(
        &self,
        entity: EntityKind,
        items: &[DeleteItem],
        _mode: DeleteMode,
    ) -> Result<Vec<WriteOutcome>, ConnectorError> {
        Ok(items
            .iter()
            .map(|_| {
                WriteOutcome::Failed(ConnectorError::new(
                    crate::ErrorKind::InvalidRequest,
                    format!("deleting {entity} records"),
                    "this connector cannot delete or archive records",
                ))
            })
            .collect())
    }
}

/// One record to archive or delete in a target.
#[derive(Debug, Clone)]
pub struct DeleteItem {
    pub target_id: String,
    pub natural_key: Option<String>,
}

/// What a flow does in the target with a record deleted at the source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteMode {
    /// Nothing: the target keeps it.
    #[default]
    Ignore,
    /// Keep it but take it out of sale (archived, draft, inactive).
    Archive,
    Delete,
}

/// A webhook delivery whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDelivery {
    /// The sender's id of this delivery: deliveries are deduplicated by it.
    pub delivery_id: String,
    pub topic: Option<String>,
    /// When the sender says it sent it, if it signs a time.
    pub timestamp: Option<chrono::DateTime<chrono::Utc>>,
}

/// What a verified webhook delivery is about: one record of one entity, by its id in the
/// sending system (the same id its [`Source`] gives as `source_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRef {
    pub entity: EntityKind,
    pub id: String,
}

/// Verifies inbound webhooks of one system over the raw body, in constant time. A system with
/// no secret configured must reject every delivery.
pub trait WebhookReceiver: Send + Sync {
    /// `headers` are `(lower-case name, value)` pairs.
    fn verify(
        &self,
        headers: &[(String, String)],
        body: &[u8],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<VerifiedDelivery, ConnectorError>;

    /// The records a verified delivery is about, so that only they are fetched and synced.
    /// `Ok(None)` when the connector cannot tell (the flows reading from the system then pull
    /// what changed since their checkpoint); `Ok(Some(empty))` for a delivery about nothing to
    /// sync (a ping). Called on stored deliveries, never before the signature was verified.
    fn decode(&self, _topic: &str, _body: &[u8]) -> Result<Option<Vec<EventRef>>, ConnectorError> {
        Ok(None)
    }

    /// The record of `entity` that a verified delivery's body carries whole: the same source
    /// id and the same content a read of the source would give at that moment. The engine
    /// takes it instead of fetching a record that it has not synced yet, which costs the
    /// source nothing. `None` when the body is not a complete record of `entity` (an id-only
    /// event, a delete, another topic, a body that does not convert).
    fn body_record(&self, _entity: EntityKind, _topic: &str, _body: &[u8]) -> Option<SourceRecord> {
        None
    }
}

/// One webhook subscription registered in a system.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Subscription {
    /// The system's id of the subscription (for `remove`).
    pub id: String,
    /// The system's topic name (`orders/updated`, `order.updated`).
    pub topic: String,
    /// Where the system delivers.
    pub url: String,
}

/// Creates, lists and removes a system's webhook subscriptions through its API, for
/// `erpsync webhooks register|list|remove`.
#[async_trait]
pub trait WebhookSubscriptions: Send + Sync {
    /// The system's topics that signal a change of `entity` (empty when it has none).
    fn topics(&self, entity: EntityKind) -> Vec<String>;
    async fn list(&self) -> Result<Vec<Subscription>, ConnectorError>;
    /// Registers `topic` for delivery to `url`; registering an existing (topic, url) pair
    /// returns the existing subscription instead of a second one.
    async fn register(&self, topic: &str, url: &str) -> Result<Subscription, ConnectorError>;
    async fn remove(&self, id: &str) -> Result<(), ConnectorError>;
}
