//! Reading: the entity's files in name order, a ledger of the files already read, and rows
//! streamed from the byte offset the cursor stopped at.
//!
//! # The cursor
//!
//! The checkpoint's cursor is JSON:
//!
//! ```json
//! {"v": 1,
//!  "files": {"products-1.csv": "18234-1718000000123456789-9f2c4e1a0b7d3c55"},
//!  "current": {"file": "products-2.csv", "fingerprint": "…", "offset": 40960, "row": 512, "line": 512}}
//! ```
//!
//! `files` is the ledger: every file read to its end, with the fingerprint it had then
//! (see [`FileEntry::fingerprint`]). A file whose fingerprint changed is read again from the
//! start; the engine skips its unchanged records by hash, so that costs little. Entries of files
//! that are gone are dropped, so the cursor stays as small as the folder. `current` is the file
//! being read: the byte offset and number of the next row (CSV: the header is row 1) or line
//! (JSON Lines), and the fingerprint the file had when reading began; if the file changed since,
//! it is read again from the start.
//!
//! # Streaming
//!
//! A page reads whole records (all rows of one product) until it holds `page_size` of them, then
//! remembers where the next record starts. A file is never loaded whole: rows are read one by
//! one from a buffered reader, and a single row may not exceed [`MAX_ROW_BYTES`].

use crate::files::client::{self, BoundedReader, FileEntry, FilesConnector};
use crate::files::config::FileFormat;
use crate::files::map::{self, FileRow, Layout};
use crate::{Capabilities, ConnectorError, ErrorKind, ReadRequest, RecordProblem, Source, SourcePage, SourceRecord};
use async_trait::async_trait;
use csv::{ByteRecord, StringRecord};
use encoding_rs::Encoding;
use erpsync_model::{Checkpoint, EntityKind, Record};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::time::SystemTime;

const CURSOR_VERSION: u32 = 1;

/// Longest row (CSV) or line (JSON Lines) read. Longer ones are a problem, not an allocation.
pub(crate) const MAX_ROW_BYTES: u64 = 16 * 1024 * 1024;

/// Most rows one record may span; a longer run of one key is reported, not buffered.
const MAX_GROUP_ROWS: usize = 10_000;

/// Most keys remembered per file for duplicate detection: past this, the engine's own check by
/// source id and origin group still applies. Memory decides the number. The map holds 16 bytes
/// per key plus a control byte per slot and doubles as it grows, so at 400,000 keys (100,000
/// products with three variants: the code and three SKUs each) it takes 9 MiB, and 13 MiB while
/// it grows. A cap of 1,000,000 meant 34 MiB, and 51 MiB while growing, and a sync of 400,000
/// products × 3 peaked at 165 MiB. A record's keys are remembered only when all of them fit, so
/// the map never reaches its next doubling (458,752 keys).
const MAX_SEEN_KEYS: usize = 400_000;
const _: () = assert!(MAX_SEEN_KEYS < 458_752);

/// Files being streamed whose seen keys are kept between pages.
const MAX_SEEN_STATES: usize = 4;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cursor {
    v: u32,
    /// The ledger: file name → fingerprint when it was read to its end.
    #[serde(default)]
    files: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    current: Option<FilePosition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePosition {
    file: String,
    fingerprint: String,
    /// Byte offset of the next row; 0 when the file has not been started.
    offset: u64,
    /// Number of the next row (the header is row 1) or JSON line (from 1).
    row: u64,
    /// The CSV parser's line count at `offset` (rows may span lines).
    #[serde(default)]
    line: u64,
}

impl FilePosition {
    fn start(file: &str, fingerprint: String) -> Self {
        Self { file: file.to_string(), fingerprint, offset: 0, row: 0, line: 0 }
    }
}

/// Keys seen so far in one file, for duplicate detection.
///
/// Only hashes are kept (64-bit; a false duplicate needs a collision among the keys of one
/// file, about one in 10^8 for a million keys) with the row they were first seen in. The state
/// lives in the connector, not the cursor: it continues a read only when the next page starts
/// exactly where the previous one stopped in the same unchanged file. Otherwise (a restart, a
/// retried page) it starts empty, and duplicates across that boundary are left to the engine,
/// which also refuses two records with the same source id from the same origin group.
pub(crate) struct SeenKeys {
    entity: EntityKind,
    file: String,
    fingerprint: String,
    offset: u64,
    keys: HashMap<u64, u32>,
    /// `MAX_SEEN_KEYS` was reached and said so.
    capped: bool,
}

enum FileRead {
    /// The file was read to its end.
    Finished,
    /// The page is full; the file continues here.
    Stopped(FilePosition),
}

#[async_trait]
impl Source for FilesConnector {
    fn capabilities(&self, _entity: EntityKind) -> Capabilities {
        client::capabilities()
    }

    async fn read_page(&self, request: &ReadRequest<'_>) -> Result<SourcePage, ConnectorError> {
        let connector = self.clone();
        let entity = request.entity;
        let checkpoint = request.checkpoint.clone();
        let page_size = request.page_size.max(1);
        let context = self.read_context(entity);
        tokio::task::spawn_blocking(move || connector.read_page_blocking(entity, &checkpoint, page_size))
            .await
            .map_err(|error| ConnectorError::new(ErrorKind::Io, context, format!("the reading task failed: {error}")))?
    }
}

impl FilesConnector {
    fn read_page_blocking(
        &self,
        entity: EntityKind,
        checkpoint: &Checkpoint,
        page_size: usize,
    ) -> Result<SourcePage, ConnectorError> {
        let context = self.read_context(entity);
        let settings = &self.inner.settings;
        let mut cursor = match &checkpoint.cursor {
            None => Cursor { v: CURSOR_VERSION, ..Cursor::default() },
            Some(text) => parse_cursor(text)
                .map_err(|message| ConnectorError::new(ErrorKind::InvalidRequest, context.clone(), message))?,
        };
        let io_error = |what: String, error: io::Error| {
            ConnectorError::new(ErrorKind::Io, context.clone(), format!("{what}: {}", client::lowercase_io(&error)))
                .with_source(error)
        };

        let files = client::list_files(settings, entity)
            .map_err(|error| io_error(format!("listing folder {}", settings.folder.display()), error))?;
        let by_name: HashMap<&str, &FileEntry> = files.iter().map(|entry| (entry.name.as_str(), entry)).collect();
        cursor.files.retain(|name, _| by_name.contains_key(name.as_str()));
        let now = SystemTime::now();

        let mut current = match cursor.current.take() {
            None => None,
            Some(position) => match by_name.get(position.file.as_str()) {
                // Gone, or changed so recently that it may still be being written.
                None => None,
                Some(entry) if entry.is_younger_than(settings.min_age, now) => None,
                Some(entry) => match entry.fingerprint() {
                    Ok(fingerprint) if fingerprint == position.fingerprint => Some(position),
                    Ok(fingerprint) => Some(FilePosition::start(&entry.name, fingerprint)),
                    Err(error) if error.kind() == io::ErrorKind::NotFound => None,
                    Err(error) => return Err(io_error(format!("reading {}", entry.name), error)),
                },
            },
        };

        let mut records = Vec::new();
        let done = loop {
            if current.is_none() {
                current = next_pending(&files, &cursor.files, settings.min_age, now)
                    .map_err(|(name, error)| io_error(format!("reading {name}"), error))?;
            }
            let Some(position) = current.take() else { break true };
            if records.len() >= page_size {
                current = Some(position);
                break false;
            }
            let Some(entry) = by_name.get(position.file.as_str()) else { continue };
            let budget = page_size - records.len();
            let file_name = position.file.clone();
            let fingerprint = position.fingerprint.clone();
            let read = match settings.format {
                FileFormat::Csv => self.read_csv_file(entity, entry, position, budget, &mut records),
                FileFormat::Jsonl => self.read_jsonl_file(entity, entry, position, budget, &mut records),
            }
            .map_err(|error| io_error(format!("reading {}", entry.name), error))?;
            match read {
                FileRead::Finished => {
                    cursor.files.insert(file_name, fingerprint);
                }
                FileRead::Stopped(next) => {
                    current = Some(next);
                    break false;
                }
            }
        };
        cursor.current = current;
        // A cursor is plain data: serializing it cannot fail.
        let cursor_text = serde_json::to_string(&cursor).unwrap_or_default();
        Ok(SourcePage {
            records,
            checkpoint: Checkpoint { watermark: checkpoint.watermark, cursor: Some(cursor_text) },
            done,
        })
    }

    fn take_seen(&self, entity: EntityKind, position: &FilePosition) -> SeenKeys {
        let mut states = self.inner.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let found = states.iter().position(|state| {
            state.entity == entity
                && state.file == position.file
                && state.fingerprint == position.fingerprint
                && state.offset == position.offset
        });
        match found {
            Some(index) if position.offset > 0 => states.swap_remove(index),
            _ => SeenKeys {
                entity,
                file: position.file.clone(),
                fingerprint: position.fingerprint.clone(),
                offset: 0,
                keys: HashMap::new(),
                capped: false,
            },
        }
    }

    fn keep_seen(&self, mut seen: SeenKeys, offset: u64) {
        seen.offset = offset;
        let mut states = self.inner.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if states.len() >= MAX_SEEN_STATES {
            states.remove(0);
        }
        states.push(seen);
    }

    fn read_csv_file(
        &self,
        entity: EntityKind,
        entry: &FileEntry,
        position: FilePosition,
        budget: usize,
        out: &mut Vec<SourceRecord>,
    ) -> io::Result<FileRead> {
        let settings = &self.inner.settings;
        let file = match File::open(&entry.path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(FileRead::Finished),
            Err(error) => return Err(error),
        };
        let file_size = file.metadata()?.len();
        let mut scan = Scan::new(entity, entry, &position, self.take_seen(entity, &position), "row");
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(settings.delimiter)
            .has_headers(true)
            .flexible(true)
            .from_reader(BoundedReader::new(file));
        reader.get_mut().set_limit(0, MAX_ROW_BYTES);
        let header = reader.byte_headers().cloned();
        let header = match header {
            Ok(header) => header,
            Err(_) if reader.get_ref().tripped => {
                out.push(scan.problem(
                    1,
                    None,
                    "parse",
                    "the header row is too long: is a quote not closed?",
                    Value::Null,
                ));
                return Ok(FileRead::Finished);
            }
            Err(error) => return Err(into_io(error)),
        };
        if header.is_empty() {
            return Ok(FileRead::Finished);
        }
        let (encoding, headers) = match decode_header(&header, settings.encoding) {
            Ok(decoded) => decoded,
            Err(message) => {
                let raw = Value::String(String::from_utf8_lossy(header.as_slice()).into_owned());
                out.push(scan.problem(1, None, "encoding", &message, raw));
                return Ok(FileRead::Finished);
            }
        };
        let layout = match Layout::new(entity, headers, &settings.entity(entity).header_to_column) {
            Ok(layout) => layout,
            Err(message) => {
                let raw = Value::Array(header_strings(&header));
                out.push(scan.problem(1, None, "parse", &message, raw));
                return Ok(FileRead::Finished);
            }
        };
        if position.offset > 0 {
            let mut resume = csv::Position::new();
            resume.set_byte(position.offset).set_line(position.line.max(1)).set_record(position.row.saturating_sub(1));
            reader.seek(resume).map_err(into_io)?;
        }
        let mut rows = CsvRows {
            reader,
            path: entry.path.clone(),
            file_size,
            delimiter: settings.delimiter,
            layout,
            encoding,
            pending: None,
            finished: false,
            last_row: (0, 0),
        };
        let mut emitted = 0;
        let result = loop {
            if emitted >= budget {
                break match rows.peek()? {
                    None => FileRead::Finished,
                    Some(next) => FileRead::Stopped(FilePosition {
                        offset: next.byte(),
                        row: next.record() + 1,
                        line: next.line(),
                        ..position
                    }),
                };
            }
            match rows.next_group()? {
                None => break FileRead::Finished,
                Some(group) => {
                    out.push(scan.csv_record(&rows.layout, settings.cells, &settings.folder, group));
                    emitted += 1;
                }
            }
        };
        if let FileRead::Stopped(next) = &result {
            self.keep_seen(scan.seen, next.offset);
        }
        Ok(result)
    }

    fn read_jsonl_file(
        &self,
        entity: EntityKind,
        entry: &FileEntry,
        position: FilePosition,
        budget: usize,
        out: &mut Vec<SourceRecord>,
    ) -> io::Result<FileRead> {
        let settings = &self.inner.settings;
        let file = match File::open(&entry.path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(FileRead::Finished),
            Err(error) => return Err(error),
        };
        let mut scan = Scan::new(entity, entry, &position, self.take_seen(entity, &position), "line");
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        let mut offset = position.offset;
        if offset > 0 {
            reader.seek(SeekFrom::Start(offset))?;
        }
        let mut line_number = position.row.max(1);
        let mut utf8 = settings.encoding == encoding_rs::UTF_8;
        let mut buffer = Vec::new();
        let mut emitted = 0;
        let result = loop {
            if emitted >= budget {
                break if offset < entry.size {
                    FileRead::Stopped(FilePosition { offset, row: line_number, line: line_number, ..position })
                } else {
                    FileRead::Finished
                };
            }
            let Some((consumed, too_long)) = read_line(&mut reader, &mut buffer, MAX_ROW_BYTES as usize)? else {
                break FileRead::Finished;
            };
            let number = line_number;
            line_number += 1;
            offset += consumed as u64;
            let mut bytes = buffer.as_slice();
            if number == 1
                && let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF")
            {
                // A byte order mark says UTF-8, whatever the configuration says.
                bytes = rest;
                utf8 = true;
            }
            if too_long {
                let message = format!("longer than {} MiB", MAX_ROW_BYTES / 1024 / 1024);
                out.push(scan.problem(number, None, "parse", &message, Value::Null));
                emitted += 1;
                continue;
            }
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let text = match decode_bytes(bytes, utf8, settings.encoding) {
                Ok(text) => text,
                Err(message) => {
                    let raw = Value::String(String::from_utf8_lossy(bytes).into_owned());
                    out.push(scan.problem(number, None, "encoding", &message, raw));
                    emitted += 1;
                    continue;
                }
            };
            let value: Value = match serde_json::from_str(&text) {
                Ok(value) => value,
                Err(error) => {
                    let message = format!("not valid JSON: {error}");
                    out.push(scan.problem(number, None, "parse", &message, Value::String(text.into_owned())));
                    emitted += 1;
                    continue;
                }
            };
            let record = match map::record_from_json(entity, value.clone()) {
                Ok(record) => record,
                Err(message) => {
                    out.push(scan.problem(number, json_key(entity, &value), "parse", &message, value));
                    emitted += 1;
                    continue;
                }
            };
            out.push(scan.accept(record, number, None, || value));
            emitted += 1;
        };
        if let FileRead::Stopped(next) = &result {
            self.keep_seen(scan.seen, next.offset);
        }
        Ok(result)
    }
}

fn parse_cursor(text: &str) -> Result<Cursor, String> {
    let cursor: Cursor = serde_json::from_str(text)
        .map_err(|error| format!("the checkpoint cursor was not written by the files connector: {error}"))?;
    if cursor.v != CURSOR_VERSION {
        return Err(format!(
            "the checkpoint cursor has version {}, this erpsync reads version {CURSOR_VERSION}: reset the flow's checkpoint",
            cursor.v
        ));
    }
    Ok(cursor)
}

/// The first file, in name order, that is old enough and not in the ledger with its current
/// fingerprint.
fn next_pending(
    files: &[FileEntry],
    ledger: &BTreeMap<String, String>,
    min_age: std::time::Duration,
    now: SystemTime,
) -> Result<Option<FilePosition>, (String, io::Error)> {
    for entry in files {
        if entry.is_younger_than(min_age, now) {
            continue;
        }
        let fingerprint = match entry.fingerprint() {
            Ok(fingerprint) => fingerprint,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err((entry.name.clone(), error)),
        };
        if ledger.get(&entry.name) == Some(&fingerprint) {
            continue;
        }
        return Ok(Some(FilePosition::start(&entry.name, fingerprint)));
    }
    Ok(None)
}

fn into_io(error: csv::Error) -> io::Error {
    match error.into_kind() {
        csv::ErrorKind::Io(error) => error,
        other => io::Error::other(format!("{other:?}")),
    }
}

fn header_strings(header: &ByteRecord) -> Vec<Value> {
    header.iter().map(|field| Value::String(String::from_utf8_lossy(field).into_owned())).collect()
}

/// Decodes the header row; a UTF-8 byte order mark makes the file UTF-8 whatever the setting
/// (Excel writes one), and is not part of the first column's name.
fn decode_header(
    header: &ByteRecord,
    configured: &'static Encoding,
) -> Result<(&'static Encoding, Vec<String>), String> {
    let mut encoding = configured;
    let mut names = Vec::with_capacity(header.len());
    for (index, field) in header.iter().enumerate() {
        let mut bytes = field;
        if index == 0
            && let Some(rest) = field.strip_prefix(b"\xEF\xBB\xBF")
        {
            bytes = rest;
            encoding = encoding_rs::UTF_8;
        }
        let text = decode_bytes(bytes, encoding == encoding_rs::UTF_8, encoding)
            .map_err(|message| format!("header column {}: {message}", index + 1))?;
        names.push(text.trim().to_string());
    }
    Ok((encoding, names))
}

fn decode_bytes<'b>(
    bytes: &'b [u8],
    utf8: bool,
    encoding: &'static Encoding,
) -> Result<std::borrow::Cow<'b, str>, String> {
    if utf8 {
        return std::str::from_utf8(bytes).map(std::borrow::Cow::Borrowed).map_err(|error| {
            format!(
                "not valid utf-8 at byte {}: is the file in another encoding, such as windows-1252? set `encoding`",
                error.valid_up_to()
            )
        });
    }
    let (text, had_errors) = encoding.decode_without_bom_handling(bytes);
    if had_errors {
        return Err(format!("not valid {}", encoding.name().to_lowercase()));
    }
    Ok(text)
}

/// Reads one line into `line` (without keeping more than `max` bytes of it). Returns the bytes
/// consumed and whether the line was too long, or `None` at the end of the file.
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>, max: usize) -> io::Result<Option<(usize, bool)>> {
    line.clear();
    let mut consumed = 0;
    let mut too_long = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if available.is_empty() {
            return Ok((consumed > 0).then_some((consumed, too_long)));
        }
        let (length, found) = match available.iter().position(|byte| *byte == b'\n') {
            Some(index) => (index + 1, true),
            None => (available.len(), false),
        };
        if !too_long {
            if line.len() + length > max {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(&available[..length]);
            }
        }
        reader.consume(length);
        consumed += length;
        if found {
            return Ok(Some((consumed, too_long)));
        }
    }
}

/// The natural key of a JSON line that did not parse as a record, if it has an obvious one.
fn json_key(entity: EntityKind, value: &Value) -> Option<String> {
    let field = match entity {
        EntityKind::Product | EntityKind::PriceList => "code",
        EntityKind::StockLevel => "sku",
        EntityKind::Customer => "number",
        EntityKind::OrderStatus => "order_number",
        EntityKind::Order | EntityKind::Shipment | EntityKind::Document | EntityKind::Refund => "number",
    };
    value.get(field).and_then(Value::as_str).map(str::trim).filter(|key| !key.is_empty()).map(str::to_string)
}

/// How much of a bad line is kept for its dead letter.
const MAX_KEPT_LINE_BYTES: usize = 64 * 1024;

/// One line of a file as bytes, for recovering from a row that swallowed the lines after it.
struct PhysicalLine {
    bytes: Vec<u8>,
    next_offset: u64,
}

fn parse_issue(message: String) -> RowIssue {
    RowIssue { kind: "parse", message }
}

/// A problem with one row, found while decoding it.
struct RowIssue {
    kind: &'static str,
    message: String,
}

struct RawRow {
    row: FileRow,
    position: csv::Position,
    issue: Option<RowIssue>,
}

/// The rows of one record.
struct Group {
    key: Option<String>,
    rows: Vec<FileRow>,
    /// The first row problem in the group, by row number.
    issue: Option<(u64, RowIssue)>,
    /// Rows past [`MAX_GROUP_ROWS`], counted and dropped.
    dropped: u64,
}

/// Streams the data rows of one CSV file and groups adjacent rows with the same key.
struct CsvRows {
    reader: csv::Reader<BoundedReader>,
    path: std::path::PathBuf,
    file_size: u64,
    delimiter: u8,
    layout: Layout,
    encoding: &'static Encoding,
    pending: Option<RawRow>,
    finished: bool,
    /// The size of the last row read: the next row's buffers start that big instead of
    /// growing from nothing, field by field.
    last_row: (usize, usize),
}

impl CsvRows {
    fn read_row(&mut self) -> io::Result<Option<RawRow>> {
        loop {
            if self.finished {
                return Ok(None);
            }
            let start = self.reader.position().clone();
            self.reader.get_mut().set_limit(start.byte(), MAX_ROW_BYTES);
            let mut record = ByteRecord::with_capacity(self.last_row.0 + 16, self.last_row.1.max(self.layout.width()));
            match self.reader.read_byte_record(&mut record) {
                Ok(false) => return Ok(None),
                Ok(true) => {}
                Err(_) if self.reader.get_ref().tripped => {
                    let number = start.record() + 1;
                    let message = format!("longer than {} MiB: is a quote not closed?", MAX_ROW_BYTES / 1024 / 1024);
                    return self.recover(&start, number, message).map(Some);
                }
                Err(error) => return Err(into_io(error)),
            }
            self.last_row = (record.as_slice().len(), record.len());
            let position = record.position().cloned().unwrap_or(start);
            let number = position.record() + 1;
            if record.iter().all(|field| field.iter().all(u8::is_ascii_whitespace)) {
                // Blank rows (`;;;;` from spreadsheets) carry nothing.
                continue;
            }
            let width = record.len();
            if width != self.layout.width() {
                // A row that runs over several lines with the wrong number of fields has a quote
                // that is never closed: it swallowed the lines after it. Only its own line is the
                // bad row; reading goes on with the next line.
                let end = self.reader.position().byte();
                if self.first_line(&position)?.is_some_and(|line| line.next_offset < end) {
                    let message =
                        format!("a quote is not closed: the row has {width} fields instead of {}", self.layout.width());
                    return self.recover(&position, number, message).map(Some);
                }
                let (cells, _) = self.decode(record);
                let message = format!(
                    "has {width} fields but the header has {}: is a delimiter or a quote out of place?",
                    self.layout.width()
                );
                return Ok(Some(RawRow {
                    row: FileRow { number, cells },
                    position,
                    issue: Some(parse_issue(message)),
                }));
            }
            let (cells, issue) = self.decode(record);
            return Ok(Some(RawRow { row: FileRow { number, cells }, position, issue }));
        }
    }

    /// Reports the physical line at `start` as a bad row and resumes reading after it. Without a
    /// line after it, the rest of the file is not read.
    fn recover(&mut self, start: &csv::Position, number: u64, message: String) -> io::Result<RawRow> {
        let line = self.first_line(start)?;
        let cells = match &line {
            Some(line) => self.parse_line(&line.bytes),
            None => StringRecord::new(),
        };
        match line.filter(|line| line.next_offset < self.file_size) {
            Some(line) => {
                let mut resume = csv::Position::new();
                resume.set_byte(line.next_offset).set_line(start.line() + 1).set_record(start.record() + 1);
                self.reader.get_mut().tripped = false;
                self.reader.get_mut().set_limit(line.next_offset, MAX_ROW_BYTES);
                self.reader.seek(resume).map_err(into_io)?;
            }
            None => self.finished = true,
        }
        let row = FileRow { number, cells };
        Ok(RawRow { row, position: start.clone(), issue: Some(parse_issue(message)) })
    }

    /// The first non-empty physical line at or after `start`: at most [`MAX_KEPT_LINE_BYTES`] of
    /// it, and the offset just after its line break.
    fn first_line(&self, start: &csv::Position) -> io::Result<Option<PhysicalLine>> {
        let mut reader = BufReader::with_capacity(64 * 1024, File::open(&self.path)?);
        reader.seek(SeekFrom::Start(start.byte()))?;
        let mut offset = start.byte();
        let mut bytes = Vec::new();
        let mut started = false;
        loop {
            let available = reader.fill_buf()?;
            if available.is_empty() {
                return Ok(started.then_some(PhysicalLine { bytes, next_offset: offset }));
            }
            let mut consumed = 0;
            for &byte in available {
                consumed += 1;
                match byte {
                    b'\r' | b'\n' if !started => {}
                    b'\n' => {
                        reader.consume(consumed);
                        if bytes.last() == Some(&b'\r') {
                            bytes.pop();
                        }
                        return Ok(Some(PhysicalLine { bytes, next_offset: offset + consumed as u64 }));
                    }
                    _ => {
                        started = true;
                        if bytes.len() < MAX_KEPT_LINE_BYTES {
                            bytes.push(byte);
                        }
                    }
                }
            }
            reader.consume(consumed);
            offset += consumed as u64;
        }
    }

    /// Splits one line into cells as far as it goes (an unclosed quote runs to its end).
    fn parse_line(&self, bytes: &[u8]) -> StringRecord {
        let mut reader =
            csv::ReaderBuilder::new().delimiter(self.delimiter).has_headers(false).flexible(true).from_reader(bytes);
        let mut record = ByteRecord::new();
        match reader.read_byte_record(&mut record) {
            Ok(true) => self.decode(record).0,
            _ => StringRecord::new(),
        }
    }

    fn decode(&self, record: ByteRecord) -> (StringRecord, Option<RowIssue>) {
        if self.encoding == encoding_rs::UTF_8 {
            // The fast path: validates in place, no copy.
            return match StringRecord::from_byte_record(record) {
                Ok(cells) => (cells, None),
                Err(error) => {
                    let field = error.utf8_error().field();
                    let record = error.into_byte_record();
                    let mut cells = StringRecord::with_capacity(record.as_slice().len(), record.len());
                    for bytes in record.iter() {
                        cells.push_field(&String::from_utf8_lossy(bytes));
                    }
                    let message = format!(
                        "{}: not valid utf-8: is the file in another encoding, such as windows-1252? set `encoding`",
                        self.layout.describe_column(field)
                    );
                    (cells, Some(RowIssue { kind: "encoding", message }))
                }
            };
        }
        let mut cells = StringRecord::with_capacity(record.as_slice().len() + 16, record.len());
        let mut issue = None;
        for (index, bytes) in record.iter().enumerate() {
            let (text, had_errors) = self.encoding.decode_without_bom_handling(bytes);
            if had_errors && issue.is_none() {
                let message = format!(
                    "{}: not valid {}",
                    self.layout.describe_column(index),
                    self.encoding.name().to_lowercase()
                );
                issue = Some(RowIssue { kind: "encoding", message });
            }
            cells.push_field(&text);
        }
        (cells, issue)
    }

    fn next_group(&mut self) -> io::Result<Option<Group>> {
        let first = match self.pending.take() {
            Some(row) => row,
            None => match self.read_row()? {
                Some(row) => row,
                None => return Ok(None),
            },
        };
        let key = self.layout.group_key(&first.row.cells);
        let mut group = Group { key, rows: Vec::new(), issue: None, dropped: 0 };
        add_row(&mut group, first);
        if let Some(key) = group.key.clone() {
            while let Some(row) = self.read_row()? {
                if self.layout.group_key(&row.row.cells).as_deref() != Some(key.as_str()) {
                    self.pending = Some(row);
                    break;
                }
                if group.rows.len() >= MAX_GROUP_ROWS {
                    group.dropped += 1;
                } else {
                    add_row(&mut group, row);
                }
            }
        }
        Ok(Some(group))
    }

    /// Where the next group starts, or `None` at the end of the file.
    fn peek(&mut self) -> io::Result<Option<csv::Position>> {
        if self.pending.is_none() {
            self.pending = self.read_row()?;
        }
        Ok(self.pending.as_ref().map(|row| row.position.clone()))
    }
}

fn add_row(group: &mut Group, row: RawRow) {
    if group.issue.is_none()
        && let Some(issue) = row.issue
    {
        group.issue = Some((row.row.number, issue));
    }
    group.rows.push(row.row);
}

/// Turns what one file yields into source records: problems, duplicates, validation.
struct Scan {
    entity: EntityKind,
    file: String,
    origin_group: String,
    seen: SeenKeys,
    /// `row` for CSV, `line` for JSON Lines.
    unit: &'static str,
}

impl Scan {
    fn new(entity: EntityKind, entry: &FileEntry, position: &FilePosition, seen: SeenKeys, unit: &'static str) -> Self {
        Self {
            entity,
            file: entry.name.clone(),
            origin_group: format!("{}@{}", entry.name, position.fingerprint),
            seen,
            unit,
        }
    }

    fn problem(&self, number: u64, key: Option<String>, kind: &str, message: &str, raw: Value) -> SourceRecord {
        self.problem_at(number, number, key, kind, message, raw)
    }

    /// A problem of the record starting at `origin`, found in row (or line) `at`. The message
    /// names the row only when it is not the origin: whoever shows a problem shows its origin
    /// (`products.csv: row 12`) with it, and saying it twice helps nobody.
    fn problem_at(
        &self,
        origin: u64,
        at: u64,
        key: Option<String>,
        kind: &str,
        message: &str,
        raw: Value,
    ) -> SourceRecord {
        SourceRecord {
            source_id: key.unwrap_or_else(|| format!("{}:{} {origin}", self.file, self.unit)),
            origin: Some(format!("{}: {} {origin}", self.file, self.unit)),
            origin_group: Some(self.origin_group.clone()),
            content: Err(RecordProblem {
                kind: kind.to_string(),
                message: if at == origin { message.to_string() } else { format!("{} {at}: {message}", self.unit) },
                raw,
            }),
        }
    }

    fn csv_record(
        &mut self,
        layout: &Layout,
        cells: map::CellFormat,
        folder: &std::path::Path,
        group: Group,
    ) -> SourceRecord {
        let first = group.rows.first().map(|row| row.number).unwrap_or(0);
        let key = group.key.clone().or_else(|| group.rows.first().and_then(|row| layout.row_key(&row.cells)));
        if let Some((number, issue)) = &group.issue {
            let raw = layout.raw_rows(&group.rows);
            return self.problem_at(first, *number, key, issue.kind, &issue.message, raw);
        }
        if group.dropped > 0 {
            let message = format!(
                "more than {MAX_GROUP_ROWS} rows in a row with the same key {:?}: the record is too large to read",
                group.key.as_deref().unwrap_or_default()
            );
            let raw = layout.raw_rows(&group.rows[..group.rows.len().min(3)]);
            return self.problem(first, key, "parse", &message, raw);
        }
        let mut load_pdf = |name: &str| client::read_attachment(folder, name);
        match map::record_from_rows(layout, cells, &group.rows, &mut load_pdf) {
            Err(error) => {
                let raw = layout.raw_rows(&group.rows);
                self.problem_at(first, error.row, key, "parse", &error.message, raw)
            }
            Ok(record) => self.accept(record, first, key, || layout.raw_rows(&group.rows)),
        }
    }

    /// A parsed record: checked for keys seen earlier in the file, then validated.
    fn accept(
        &mut self,
        record: Record,
        number: u64,
        group_key: Option<String>,
        raw: impl FnOnce() -> Value,
    ) -> SourceRecord {
        let key = record.natural_key().or(group_key);
        let keys = duplicate_keys(&record);
        let mut hashes = Vec::with_capacity(keys.len());
        for (label, value) in &keys {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (label, value).hash(&mut hasher);
            let hash = hasher.finish();
            if let Some(earlier) = self.seen.keys.get(&hash) {
                let message = format!("duplicate {label} {value:?}: already in {} {earlier} of this file", self.unit);
                return self.problem(number, key, "duplicate", &message, raw());
            }
            hashes.push(hash);
        }
        if self.seen.keys.len() + hashes.len() <= MAX_SEEN_KEYS {
            let row = u32::try_from(number).unwrap_or(u32::MAX);
            for hash in hashes {
                self.seen.keys.insert(hash, row);
            }
        } else if !self.seen.capped {
            self.seen.capped = true;
            tracing::warn!(
                file = %self.file,
                row = number,
                keys = MAX_SEEN_KEYS,
                "codes and SKUs from {} {number} on are no longer remembered: a later {} that repeats one \
                 is not reported (the file has more keys than are remembered per file)",
                self.unit,
                self.unit
            );
        }
        if let Err(errors) = record.validate() {
            let message = format!("invalid {}: {errors}", self.entity.as_str().replace('_', " "));
            return self.problem(number, key, "validation", &message, raw());
        }
        SourceRecord {
            source_id: key.unwrap_or_else(|| format!("{}:{} {number}", self.file, self.unit)),
            origin: Some(format!("{}: {} {number}", self.file, self.unit)),
            origin_group: Some(self.origin_group.clone()),
            content: Ok(record),
        }
    }
}

/// The keys that must be unique within one file: the natural key, and for products every
/// variant's SKU too (one SKU in two products of a file is as wrong as one product twice).
fn duplicate_keys(record: &Record) -> Vec<(&'static str, String)> {
    let mut keys = Vec::new();
    let label = match record {
        Record::Product(_) => "product",
        Record::PriceList(_) => "price list",
        Record::StockLevel(_) => "stock level",
        Record::Customer(_) => "customer",
        Record::Order(_) => "order",
        Record::OrderStatus(_) => "order status",
        Record::Shipment(_) => "shipment",
        Record::Document(_) => "document",
        Record::Refund(_) => "refund",
    };
    if let Record::Product(product) = record {
        // A simple product's code is its SKU: reported as a duplicate SKU, the clearer word.
        let code = product.code.trim();
        if !code.is_empty() && product.variants.iter().all(|variant| variant.sku.trim() != code) {
            keys.push((label, code.to_string()));
        }
        let mut skus = HashSet::new();
        for variant in &product.variants {
            let sku = variant.sku.trim();
            // Repeats inside one product are reported by validation, with their index.
            if !sku.is_empty() && skus.insert(sku) {
                keys.push(("sku", sku.to_string()));
            }
        }
        return keys;
    }
    if let Some(key) = record.natural_key() {
        keys.push((label, key));
    }
    keys
}
