//! Writing: one file per batch, `<file_prefix><entity>-<batch id>.<csv|jsonl>`, written
//! atomically, so a batch replayed after a crash replaces its own file instead of adding one.
//!
//! A record the file cannot carry (a character the encoding lacks, a tag containing the `|`
//! separator, prices of one variant in two currencies) fails alone with an `invalid_request`
//! error naming the field; the rest of the batch is written.

use crate::files::client::{self, FilesConnector};
use crate::files::config::FileFormat;
use crate::files::map::{self, Attachment, Key};
use crate::{Capabilities, ConnectorError, ErrorKind, Sink, WriteBatch, WriteItem, WriteOutcome};
use async_trait::async_trait;
use encoding_rs::Encoding;
use erpsync_model::EntityKind;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, Write};

/// Records per written file.
const MAX_BATCH_SIZE: usize = 1000;

#[async_trait]
impl Sink for FilesConnector {
    fn capabilities(&self, _entity: EntityKind) -> Capabilities {
        client::capabilities()
    }

    fn max_batch_size(&self, _entity: EntityKind) -> usize {
        MAX_BATCH_SIZE
    }

    /// Files cannot be searched: every key is reported as not found.
    async fn lookup(
        &self,
        _entity: EntityKind,
        natural_keys: &[String],
    ) -> Result<Vec<Option<String>>, ConnectorError> {
        Ok(vec![None; natural_keys.len()])
    }

    async fn write_batch(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let connector = self.clone();
        let batch = batch.clone();
        let context = self.write_context(batch.entity);
        tokio::task::spawn_blocking(move || connector.write_batch_blocking(&batch))
            .await
            .map_err(|error| ConnectorError::new(ErrorKind::Io, context, format!("the writing task failed: {error}")))?
    }
}

/// One item ready to be written, or why it cannot be.
struct Prepared {
    target_id: String,
    /// Encoded cells per row (CSV) or one encoded line (JSON Lines).
    rows: Vec<Vec<(Key, Vec<u8>)>>,
    line: Vec<u8>,
    attachments: Vec<Attachment>,
}

impl FilesConnector {
    fn write_batch_blocking(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let settings = &self.inner.settings;
        let entity = batch.entity;
        let context = self.write_context(entity);
        let entity_settings = settings.entity(entity);
        let file_name = format!(
            "{}{}-{}.{}",
            entity_settings.file_prefix,
            entity.as_str(),
            batch_file_id(&batch.batch_id),
            settings.format.extension()
        );

        let mut prepared: Vec<Result<Prepared, String>> = Vec::with_capacity(batch.items.len());
        let mut attachment_owner: HashMap<String, usize> = HashMap::new();
        for (index, item) in batch.items.iter().enumerate() {
            let mut result = self.prepare(entity, item, &entity_settings.column_to_header);
            if let Ok(ready) = &result {
                // Two documents of one batch naming the same PDF file would overwrite each other.
                for attachment in &ready.attachments {
                    if let Some(owner) = attachment_owner.get(&attachment.file_name) {
                        let same = prepared[*owner]
                            .as_ref()
                            .is_ok_and(|other| other.attachments.iter().any(|a| a == attachment));
                        if !same {
                            result = Err(format!(
                                "{}: pdf file {:?} is also used by item {owner} of this batch with other content",
                                ready.target_id, attachment.file_name
                            ));
                            break;
                        }
                    }
                }
            }
            if let Ok(ready) = &result {
                for attachment in &ready.attachments {
                    attachment_owner.entry(attachment.file_name.clone()).or_insert(index);
                }
            }
            prepared.push(result);
        }

        let ready: Vec<&Prepared> = prepared.iter().filter_map(|item| item.as_ref().ok()).collect();
        if !ready.is_empty() {
            let mut targets = vec![file_name.as_str()];
            targets.extend(ready.iter().flat_map(|item| item.attachments.iter().map(|a| a.file_name.as_str())));
            client::remove_stale_temporaries(&settings.folder, &targets);
            let io_error = |what: String, error: io::Error| {
                ConnectorError::new(ErrorKind::Io, context.clone(), format!("{what}: {}", client::lowercase_io(&error)))
                    .with_source(error)
            };
            // PDFs first: a CSV file never names a PDF that is not there yet.
            for item in &ready {
                for attachment in &item.attachments {
                    client::write_atomically(&settings.folder, &attachment.file_name, |file| {
                        file.write_all(&attachment.bytes)
                    })
                    .map_err(|error| {
                        io_error(format!("writing {} in {}", attachment.file_name, settings.folder.display()), error)
                    })?;
                }
            }
            let write = |file: &mut std::fs::File| match settings.format {
                FileFormat::Csv => self.write_csv(entity, &ready, &entity_settings.column_to_header, file),
                FileFormat::Jsonl => {
                    let mut writer = io::BufWriter::new(file);
                    for item in &ready {
                        writer.write_all(&item.line)?;
                        writer.write_all(b"\n")?;
                    }
                    writer.flush()
                }
            };
            client::write_atomically(&settings.folder, &file_name, write)
                .map_err(|error| io_error(format!("writing {file_name} in {}", settings.folder.display()), error))?;
        }

        Ok(prepared
            .into_iter()
            .zip(&batch.items)
            .map(|(result, item)| match result {
                Ok(ready) if item.target_id.is_none() => WriteOutcome::Created { target_id: ready.target_id },
                Ok(ready) => WriteOutcome::Updated { target_id: ready.target_id },
                Err(message) => {
                    WriteOutcome::Failed(ConnectorError::new(ErrorKind::InvalidRequest, context.clone(), message))
                }
            })
            .collect())
    }

    /// Flattens and encodes one item, or says why it cannot be written.
    fn prepare(
        &self,
        entity: EntityKind,
        item: &WriteItem,
        column_to_header: &HashMap<String, String>,
    ) -> Result<Prepared, String> {
        let settings = &self.inner.settings;
        if item.record.kind() != entity {
            return Err(format!("a {} record in a batch of {entity}", item.record.kind()));
        }
        let target_id = item
            .record
            .natural_key()
            .or_else(|| Some(item.natural_key.trim().to_string()).filter(|key| !key.is_empty()))
            .ok_or_else(|| "the record has no natural key to name it by".to_string())?;
        let encoding = settings.encoding;
        match settings.format {
            FileFormat::Jsonl => {
                let line = map::record_to_json(&item.record);
                let line = encode(encoding, &line)
                    .ok_or_else(|| format!("{target_id}: {}", unencodable(encoding, &line)))?
                    .into_owned();
                Ok(Prepared { target_id, rows: Vec::new(), line, attachments: Vec::new() })
            }
            FileFormat::Csv => {
                let flat = map::record_to_rows(&item.record, settings.cells)
                    .map_err(|problem| format!("{target_id}: {problem}"))?;
                let mut rows = Vec::with_capacity(flat.rows.len());
                for row in flat.rows {
                    let mut cells = Vec::with_capacity(row.len());
                    for (key, value) in row {
                        let header = header_name(&key, column_to_header);
                        if encode(encoding, &header).is_none() {
                            return Err(format!(
                                "{target_id}: column name {header:?}: {}",
                                unencodable(encoding, &header)
                            ));
                        }
                        let bytes = encode(encoding, &value)
                            .ok_or_else(|| {
                                format!("{target_id}: column {header:?}: {}", unencodable(encoding, &value))
                            })?
                            .into_owned();
                        cells.push((key, bytes));
                    }
                    rows.push(cells);
                }
                Ok(Prepared { target_id, rows, line: Vec::new(), attachments: flat.attachments })
            }
        }
    }

    fn write_csv(
        &self,
        entity: EntityKind,
        items: &[&Prepared],
        column_to_header: &HashMap<String, String>,
        file: &mut std::fs::File,
    ) -> io::Result<()> {
        let settings = &self.inner.settings;
        // The header is every column any record of the batch uses, in the entity's order.
        let mut keys: Vec<Key> = Vec::new();
        let mut known: HashMap<Key, ()> = HashMap::new();
        for item in items {
            for row in &item.rows {
                for (key, _) in row {
                    if known.insert(key.clone(), ()).is_none() {
                        keys.push(key.clone());
                    }
                }
            }
        }
        keys.sort_by_key(|key| map::column_rank(entity, key));
        let index: HashMap<&Key, usize> = keys.iter().enumerate().map(|(index, key)| (key, index)).collect();
        let mut writer = csv::WriterBuilder::new().delimiter(settings.delimiter).from_writer(io::BufWriter::new(file));
        let header: Vec<Vec<u8>> = keys
            .iter()
            .map(|key| {
                let name = header_name(key, column_to_header);
                // Checked encodable in `prepare`.
                encode(settings.encoding, &name).map(Cow::into_owned).unwrap_or_default()
            })
            .collect();
        writer.write_record(&header).map_err(csv_io)?;
        let mut cells: Vec<&[u8]> = vec![b""; keys.len()];
        for item in items {
            for row in &item.rows {
                cells.fill(b"");
                for (key, bytes) in row {
                    cells[index[key]] = bytes;
                }
                writer.write_record(&cells).map_err(csv_io)?;
            }
        }
        writer.flush()?;
        Ok(())
    }
}

fn header_name(key: &Key, column_to_header: &HashMap<String, String>) -> String {
    let canonical = key.to_string();
    column_to_header.get(&canonical).cloned().unwrap_or(canonical)
}

fn csv_io(error: csv::Error) -> io::Error {
    match error.into_kind() {
        csv::ErrorKind::Io(error) => error,
        other => io::Error::other(format!("{other:?}")),
    }
}

/// The text in the configured encoding, or `None` if it has characters the encoding lacks.
fn encode<'t>(encoding: &'static Encoding, text: &'t str) -> Option<Cow<'t, [u8]>> {
    if encoding == encoding_rs::UTF_8 {
        return Some(Cow::Borrowed(text.as_bytes()));
    }
    let (bytes, _, unmappable) = encoding.encode(text);
    (!unmappable).then_some(bytes)
}

fn unencodable(encoding: &'static Encoding, text: &str) -> String {
    let missing: String = text
        .chars()
        .filter(|c| {
            let mut buffer = [0u8; 4];
            encode(encoding, c.encode_utf8(&mut buffer)).is_none()
        })
        .take(5)
        .collect();
    let shown: String = text.chars().take(60).collect();
    format!("{shown:?} has characters that {} cannot write ({missing:?})", encoding.name().to_lowercase())
}

/// The batch id as part of a file name: kept as is when it is plain, otherwise cleaned and
/// suffixed with a hash so that two different ids never share a file.
fn batch_file_id(batch_id: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_');
    if !batch_id.is_empty() && batch_id.len() <= 80 && batch_id.chars().all(plain) {
        return batch_id.to_string();
    }
    let cleaned: String = batch_id.chars().filter(|c| plain(*c)).take(60).collect();
    let digest = Sha256::digest(batch_id.as_bytes());
    let hash = hex::encode(&digest[..8]);
    if cleaned.is_empty() { hash } else { format!("{cleaned}-{hash}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_ids_become_distinct_plain_file_name_parts() {
        assert_eq!(batch_file_id("flow-7_page-3"), "flow-7_page-3");
        let slashed = batch_file_id("flow/7");
        let underscored = batch_file_id("flow_7");
        assert_ne!(slashed, underscored);
        assert!(slashed.starts_with("flow7-"), "{slashed}");
        assert!(batch_file_id(&"x".repeat(500)).len() < 100);
        assert!(!batch_file_id("../..").contains('.'));
    }

    #[test]
    fn encoding_reports_the_characters_it_lacks() {
        let windows = encoding_rs::WINDOWS_1252;
        assert_eq!(encode(windows, "Größe €").unwrap().as_ref(), b"Gr\xF6\xDFe \x80");
        assert!(encode(windows, "Ωmega").is_none());
        assert!(unencodable(windows, "Ωmega").contains("windows-1252 cannot write (\"Ω\")"));
    }
}
