//! Reading: pages ordered by (change column, key) with a keyset condition, the cursor in the
//! checkpoint, and rows turned into records (the flat scheme or one JSON column).
//!
//! The boundary rule (see `mod.rs`): within a scan, each page starts strictly after the
//! (change, key) of the last row read, so rows sharing a timestamp across a page boundary are
//! all read; a new scan (the next run) starts at the last watermark minus `overlap`,
//! inclusive, so a row committed late with a timestamp at or just before the watermark is read
//! again. Re-read rows cost nothing: the engine skips unchanged records by hash.

use crate::files::map::{self as flat, CellFormat, FileRow, Layout};
use crate::sql::client::{DbRow, Dialect, SqlConnector, display_ident, sql_error};
use crate::sql::config::{ChangeColumn, EntitySettings, Mode, Relation};
use crate::sql::map::{Cursor, Position, ScanState, SqlValue};
use crate::{Capabilities, ConnectorError, ErrorKind, ReadRequest, RecordProblem, Source, SourcePage, SourceRecord};
use async_trait::async_trait;
use erpsync_model::{Checkpoint, EntityKind, Record};
use serde_json::{Map, Value};

#[async_trait]
impl Source for SqlConnector {
    fn capabilities(&self, entity: EntityKind) -> Capabilities {
        SqlConnector::capabilities(self, entity)
    }

    async fn read_page(&self, request: &ReadRequest<'_>) -> Result<SourcePage, ConnectorError> {
        let entity = request.entity;
        let context = format!("reading {entity} from sql \"{}\"", self.system);
        let settings = self.entity(entity, &context)?;
        let page_size = request.page_size.clamp(1, settings.batch_size);
        let mut state = initial_state(settings, request.checkpoint)
            .map_err(|message| ConnectorError::new(ErrorKind::InvalidRequest, &context, message))?;
        let dialect = self.db.dialect();
        let (rows, next, done) = loop {
            let (sql, binds) = page_query(dialect, settings, &state, page_size);
            let rows = self.db.fetch(sql, &binds).await.map_err(|error| sql_error(&context, error))?;
            let exhausted = rows.len() < page_size;
            let last = rows
                .last()
                .map(|row| position(settings, row))
                .transpose()
                .map_err(|message| ConnectorError::new(ErrorKind::InvalidResponse, &context, message))?;
            let was_nulls = matches!(state, ScanState::Nulls { .. });
            let (next, done) = next_state(settings, state, last.as_ref(), exhausted);
            if was_nulls && rows.is_empty() {
                // No (more) rows without a change value: go on with the ordered scan in the
                // same call rather than return an empty page.
                state = next;
                continue;
            }
            break (rows, next, done);
        };
        let watermark = match &next {
            ScanState::CaughtUp { last: Some(last) } => last.instant().or(request.checkpoint.watermark),
            _ => request.checkpoint.watermark,
        };
        let records = self.records(entity, settings, rows, &context).await?;
        Ok(SourcePage {
            records,
            checkpoint: Checkpoint { watermark, cursor: Some(Cursor::new(next).to_json()) },
            done,
        })
    }
}

/// Where this read starts, from the stored checkpoint.
fn initial_state(settings: &EntitySettings, checkpoint: &Checkpoint) -> Result<ScanState, String> {
    let state = match (&checkpoint.cursor, &settings.change, checkpoint.watermark) {
        (Some(text), _, _) => Cursor::parse(text)?.state,
        (None, None, _) => ScanState::Full { after_key: None },
        (None, Some(_), None) => ScanState::Nulls { after_key: None },
        // A watermark without a cursor (set by hand, or by another connector): start there.
        (None, Some(_), Some(at)) => ScanState::CaughtUp { last: Some(SqlValue::TimestampTz(at)) },
    };
    Ok(match (state, &settings.change) {
        // The previous scan finished: this run starts a new one, a little before its end.
        (ScanState::CaughtUp { last }, Some(_)) => ScanState::Scan {
            from: last.as_ref().map(|last| last.minus_overlap(settings.overlap)),
            previous: last,
            after: None,
        },
        (ScanState::CaughtUp { .. } | ScanState::Scan { .. } | ScanState::Nulls { .. }, None) => {
            return Err(
                "the cursor was written for a change column, but none is configured now: reset the flow's checkpoint"
                    .into(),
            );
        }
        (ScanState::Full { .. }, Some(_)) => ScanState::Nulls { after_key: None },
        (state, _) => state,
    })
}

fn key_list(dialect: Dialect, settings: &EntitySettings) -> String {
    settings.key.iter().map(|column| dialect.quote(column)).collect::<Vec<_>>().join(", ")
}

fn relation_sql(dialect: Dialect, settings: &EntitySettings) -> String {
    match &settings.relation {
        Relation::Table(table) => dialect.table(table),
        Relation::Query(query) => format!("({query}) AS erpsync_source"),
    }
}

/// `(a, b) > (?, ?)`, with placeholders numbered after `binds`.
fn after_condition(dialect: Dialect, columns: &[String], values: &[SqlValue], binds: &mut Vec<SqlValue>) -> String {
    let mut placeholders = Vec::new();
    for value in values {
        binds.push(value.clone());
        placeholders.push(dialect.placeholder(binds.len()));
    }
    let quoted: Vec<String> = columns.iter().map(|column| dialect.quote(column)).collect();
    format!("({}) > ({})", quoted.join(", "), placeholders.join(", "))
}

fn page_query(
    dialect: Dialect,
    settings: &EntitySettings,
    state: &ScanState,
    page_size: usize,
) -> (String, Vec<SqlValue>) {
    let relation = relation_sql(dialect, settings);
    let keys = key_list(dialect, settings);
    let mut binds = Vec::new();
    let mut conditions = Vec::new();
    let order = match (state, &settings.change) {
        (ScanState::Nulls { after_key }, Some(change)) => {
            conditions.push(format!("{} IS NULL", dialect.quote(change.name())));
            if let Some(after_key) = after_key {
                conditions.push(after_condition(dialect, &settings.key, after_key, &mut binds));
            }
            keys
        }
        (ScanState::Scan { from, after, .. }, Some(change)) => {
            let change_column = dialect.quote(change.name());
            conditions.push(format!("{change_column} IS NOT NULL"));
            if let Some(from) = from {
                binds.push(from.clone());
                conditions.push(format!("{change_column} >= {}", dialect.placeholder(binds.len())));
            }
            if let Some(after) = after {
                let mut columns = vec![change.name().to_string()];
                columns.extend(settings.key.iter().cloned());
                let mut values = vec![after.change.clone()];
                values.extend(after.key.iter().cloned());
                conditions.push(after_condition(dialect, &columns, &values, &mut binds));
            }
            format!("{change_column}, {keys}")
        }
        (ScanState::Full { after_key }, _) | (ScanState::Nulls { after_key }, None) => {
            if let Some(after_key) = after_key {
                conditions.push(after_condition(dialect, &settings.key, after_key, &mut binds));
            }
            keys
        }
        // `initial_state` never leaves these.
        (ScanState::CaughtUp { .. }, _) | (ScanState::Scan { .. }, None) => keys,
    };
    let filter = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
    (format!("SELECT * FROM {relation}{filter} ORDER BY {order} LIMIT {page_size}"), binds)
}

fn value_of<'r>(row: &'r DbRow, column: &str) -> Option<&'r SqlValue> {
    row.iter().find(|(name, _)| name == column).map(|(_, value)| value)
}

/// The row's (change, key), for the keyset condition of the next page.
fn position(settings: &EntitySettings, row: &DbRow) -> Result<Position, String> {
    let missing = |column: &str| format!("the rows have no column {column:?} (configured as key or change column)");
    let key = settings
        .key
        .iter()
        .map(|column| value_of(row, column).cloned().ok_or_else(|| missing(column)))
        .collect::<Result<Vec<_>, _>>()?;
    let change = match &settings.change {
        Some(change) => value_of(row, change.name()).cloned().ok_or_else(|| missing(change.name()))?,
        None => SqlValue::Null,
    };
    if let (Some(ChangeColumn::UpdatedAt(name)), SqlValue::Integer(_) | SqlValue::Text(_)) = (&settings.change, &change)
    {
        return Err(format!("updated_at column {name:?} holds no timestamp: use version for an integer column"));
    }
    Ok(Position { change, key })
}

/// The state after this page, and whether the read is done for this run.
fn next_state(
    settings: &EntitySettings,
    state: ScanState,
    last: Option<&Position>,
    exhausted: bool,
) -> (ScanState, bool) {
    match state {
        ScanState::Nulls { after_key } => match (exhausted, last) {
            (true, _) => (ScanState::Scan { from: None, previous: None, after: None }, false),
            (false, Some(last)) => (ScanState::Nulls { after_key: Some(last.key.clone()) }, false),
            (false, None) => (ScanState::Nulls { after_key }, false),
        },
        ScanState::Scan { from, previous, after } => {
            let after = last.cloned().or(after);
            if exhausted {
                let newest = after.map(|after| after.change);
                (ScanState::CaughtUp { last: later(previous, newest) }, true)
            } else {
                (ScanState::Scan { from, previous, after }, false)
            }
        }
        ScanState::Full { after_key } => {
            if exhausted || settings.change.is_some() {
                (ScanState::Full { after_key: None }, true)
            } else {
                (ScanState::Full { after_key: last.map(|last| last.key.clone()).or(after_key) }, false)
            }
        }
        ScanState::CaughtUp { last } => (ScanState::CaughtUp { last }, true),
    }
}

/// The later of two change values: the watermark never moves back.
fn later(previous: Option<SqlValue>, newest: Option<SqlValue>) -> Option<SqlValue> {
    match (previous, newest) {
        (Some(previous), Some(newest)) => {
            let newer = match (&previous, &newest) {
                (SqlValue::Integer(a), SqlValue::Integer(b)) => b >= a,
                (SqlValue::Decimal(a), SqlValue::Decimal(b)) => b >= a,
                _ => newest.instant() >= previous.instant(),
            };
            Some(if newer { newest } else { previous })
        }
        (previous, newest) => newest.or(previous),
    }
}

/// The column holding an entity's group key in the flat scheme (rows of one product share
/// `code`), when the entity groups rows at all.
pub(crate) fn group_column(entity: EntityKind, settings: &EntitySettings, headers: &[String]) -> Option<String> {
    let candidates: &[&str] = match entity {
        EntityKind::Product | EntityKind::PriceList => &["code"],
        EntityKind::Customer => &["number", "email"],
        EntityKind::Order | EntityKind::Shipment | EntityKind::Refund | EntityKind::Document => &["number"],
        EntityKind::StockLevel | EntityKind::OrderStatus => &[],
    };
    candidates.iter().map(|canonical| settings.column_for(canonical)).find(|column| headers.contains(column))
}

impl SqlConnector {
    async fn records(
        &self,
        entity: EntityKind,
        settings: &EntitySettings,
        rows: Vec<DbRow>,
        context: &str,
    ) -> Result<Vec<SourceRecord>, ConnectorError> {
        match &settings.mode {
            Mode::Json(column) => Ok(rows.iter().map(|row| json_record(entity, settings, column, row)).collect()),
            Mode::Flat { .. } => self.flat_records(entity, settings, rows, context).await,
        }
    }

    /// Rows → records with the flat scheme. A grouped entity's rows are fetched whole: a page
    /// that saw one changed variant row reads every row of that product, so a record is never
    /// built from part of its rows.
    async fn flat_records(
        &self,
        entity: EntityKind,
        settings: &EntitySettings,
        rows: Vec<DbRow>,
        context: &str,
    ) -> Result<Vec<SourceRecord>, ConnectorError> {
        let Some(first) = rows.first() else { return Ok(Vec::new()) };
        let headers: Vec<String> = first.iter().map(|(name, _)| name.clone()).collect();
        let layout = Layout::new(entity, headers.clone(), &settings.header_to_column())
            .map_err(|message| ConnectorError::new(ErrorKind::InvalidRequest, context, message))?;

        let mut groups: Vec<Vec<DbRow>> = Vec::new();
        match group_column(entity, settings, &headers) {
            None => groups.extend(rows.into_iter().map(|row| vec![row])),
            Some(column) => {
                let mut order: Vec<String> = Vec::new();
                let mut wanted: Vec<SqlValue> = Vec::new();
                let mut alone: Vec<(String, DbRow)> = Vec::new();
                for row in rows {
                    let value = value_of(&row, &column).cloned().unwrap_or(SqlValue::Null);
                    let cell = value.to_cell();
                    if cell.trim().is_empty() {
                        // No group key: the row is a record of its own (a simple product).
                        let id = format!("\u{0}{}", alone.len());
                        order.push(id.clone());
                        alone.push((id, row));
                    } else if !order.contains(&cell) {
                        order.push(cell);
                        wanted.push(value);
                    }
                }
                let mut by_group: Vec<(String, Vec<DbRow>)> = Vec::new();
                if !wanted.is_empty() {
                    let dialect = self.db.dialect();
                    let placeholders: Vec<String> = (1..=wanted.len()).map(|n| dialect.placeholder(n)).collect();
                    let sql = format!(
                        "SELECT * FROM {} WHERE {} IN ({}) ORDER BY {}, {}",
                        relation_sql(dialect, settings),
                        dialect.quote(&column),
                        placeholders.join(", "),
                        dialect.quote(&column),
                        key_list(dialect, settings)
                    );
                    let group_rows = self.db.fetch(sql, &wanted).await.map_err(|error| sql_error(context, error))?;
                    for row in group_rows {
                        let cell = value_of(&row, &column).map(SqlValue::to_cell).unwrap_or_default();
                        match by_group.last_mut() {
                            Some((last, rows)) if *last == cell => rows.push(row),
                            _ => by_group.push((cell, vec![row])),
                        }
                    }
                }
                for id in order {
                    if let Some(position) = alone.iter().position(|(alone_id, _)| *alone_id == id) {
                        groups.push(vec![alone.swap_remove(position).1]);
                    } else if let Some(position) = by_group.iter().position(|(cell, _)| *cell == id) {
                        groups.push(by_group.swap_remove(position).1);
                    }
                    // A group whose rows vanished between the two queries was deleted
                    // meanwhile: there is nothing left to read.
                }
            }
        }
        Ok(groups.iter().map(|group| flat_record(&layout, settings, group)).collect())
    }
}

fn origin(settings: &EntitySettings, row: &DbRow) -> String {
    let relation = match &settings.relation {
        Relation::Table(table) => display_ident(table),
        Relation::Query(_) => "query".to_string(),
    };
    let keys: Vec<String> = settings
        .key
        .iter()
        .map(|column| format!("{column}={}", value_of(row, column).map(SqlValue::to_cell).unwrap_or_default()))
        .collect();
    format!("{relation}: {}", keys.join(", "))
}

fn key_text(settings: &EntitySettings, row: &DbRow) -> String {
    let values: Vec<String> =
        settings.key.iter().map(|column| value_of(row, column).map(SqlValue::to_cell).unwrap_or_default()).collect();
    values.join("/")
}

fn raw_row(row: &DbRow) -> Value {
    let object: Map<String, Value> = row
        .iter()
        .map(|(name, value)| {
            let json = match value {
                SqlValue::Null => Value::Null,
                SqlValue::Json(json) => json.clone(),
                other => Value::String(other.to_cell()),
            };
            (name.clone(), json)
        })
        .collect();
    Value::Object(object)
}

fn finish(source_id: String, origin: String, raw: Value, record: Result<Record, (String, String)>) -> SourceRecord {
    let (source_id, content) = match record {
        Ok(record) => match record.validate() {
            Ok(()) => (record.natural_key().unwrap_or(source_id), Ok(record)),
            Err(errors) => (
                record.natural_key().unwrap_or(source_id),
                Err(RecordProblem { kind: "validation".into(), message: errors.to_string(), raw }),
            ),
        },
        Err((kind, message)) => (source_id, Err(RecordProblem { kind, message, raw })),
    };
    SourceRecord { source_id, origin: Some(origin), origin_group: None, content }
}

fn flat_record(layout: &Layout, settings: &EntitySettings, group: &[DbRow]) -> SourceRecord {
    let file_rows: Vec<FileRow> = group
        .iter()
        .enumerate()
        .map(|(index, row)| FileRow {
            number: index as u64 + 1,
            cells: row.iter().map(|(_, value)| value.to_cell()).collect::<Vec<String>>().into(),
        })
        .collect();
    let first = &group[0];
    let source_id = layout.row_key(&file_rows[0].cells).unwrap_or_else(|| key_text(settings, first));
    let raw = match group {
        [single] => raw_row(single),
        _ => Value::Array(group.iter().map(raw_row).collect()),
    };
    let mut no_pdf_files = |_: &str| -> Result<Vec<u8>, String> {
        Err("pdf_file names a file, which a database row cannot: use pdf_url".into())
    };
    let record = flat::record_from_rows(layout, CellFormat::default(), &file_rows, &mut no_pdf_files)
        .map_err(|error| ("parse".to_string(), error.message));
    finish(source_id, origin(settings, first), raw, record)
}

fn json_record(entity: EntityKind, settings: &EntitySettings, column: &str, row: &DbRow) -> SourceRecord {
    let record = match value_of(row, column) {
        Some(SqlValue::Json(json)) => flat::record_from_json(entity, json.clone()),
        Some(SqlValue::Text(text)) => serde_json::from_str(text)
            .map_err(|error| format!("column {column:?} is not JSON: {error}"))
            .and_then(|json| flat::record_from_json(entity, json)),
        Some(SqlValue::Null) => Err(format!("column {column:?} is NULL")),
        Some(_) => Err(format!("column {column:?} holds no JSON")),
        None => Err(format!("the rows have no column {column:?} (json_column)")),
    }
    .map_err(|message| ("parse".to_string(), message));
    finish(key_text(settings, row), origin(settings, row), raw_row(row), record)
}
