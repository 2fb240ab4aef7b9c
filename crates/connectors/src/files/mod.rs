//! The `files` connector: CSV and JSON Lines files in a folder.
//!
//! Placeholder module: the configuration type is fixed here so the engine can be written
//! against it; the implementation lands in `config.rs`, `source.rs`, `sink.rs`, `map.rs`.

use crate::{Capabilities, ConnectorError, ReadRequest, Sink, Source, SourcePage, WriteBatch, WriteOutcome};
use async_trait::async_trait;
use erpsync_model::EntityKind;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    pub path: std::path::PathBuf,
}

impl FilesConfig {
    pub fn validate(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

pub struct FilesConnector;

impl FilesConnector {
    pub fn new(_system: &str, _config: FilesConfig) -> Result<Self, ConnectorError> {
        Ok(Self)
    }
}

#[async_trait]
impl Source for FilesConnector {
    fn capabilities(&self, _entity: EntityKind) -> Capabilities {
        Capabilities::default()
    }
    async fn read_page(&self, _request: &ReadRequest<'_>) -> Result<SourcePage, ConnectorError> {
        unimplemented!()
    }
}

#[async_trait]
impl Sink for FilesConnector {
    fn capabilities(&self, _entity: EntityKind) -> Capabilities {
        Capabilities::default()
    }
    fn max_batch_size(&self, _entity: EntityKind) -> usize {
        1000
    }
    async fn lookup(&self, _entity: EntityKind, keys: &[String]) -> Result<Vec<Option<String>>, ConnectorError> {
        Ok(vec![None; keys.len()])
    }
    async fn write_batch(&self, _batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        unimplemented!()
    }
}
