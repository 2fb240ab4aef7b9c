//! Writing: upsert by key in one transaction per batch (`INSERT … ON CONFLICT … DO UPDATE` on
//! PostgreSQL, `INSERT … ON DUPLICATE KEY UPDATE` on MariaDB/MySQL), lookup by natural key, and
//! the fallback that makes a refused row fail alone.
//!
//! A record the table cannot take (a field without a column, a value too long for its column,
//! a value of the wrong type) fails before anything is sent. When the database refuses a row
//! of the batch (a check or not-null constraint, SQLSTATE class 22 or 23), the transaction is
//! rolled back and the records are written again one per transaction, so only the refused
//! ones fail, with `invalid_request` and the database's message.

use crate::files::map::{self as flat, CellFormat};
use crate::sql::client::{
    Dialect, SqlConnector, TableColumns, Tx, database_message, display_ident, is_row_error, sql_error,
};
use crate::sql::config::{ChangeColumn, EntitySettings, Ident, Mode};
use crate::sql::map::{ColumnKind, SqlValue, cell_to_value};
use crate::sql::source::group_column;
use crate::{Capabilities, ConnectorError, ErrorKind, Sink, WriteBatch, WriteItem, WriteOutcome};
use async_trait::async_trait;
use erpsync_model::EntityKind;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};

/// Keys per lookup query.
const LOOKUP_CHUNK: usize = 500;

#[async_trait]
impl Sink for SqlConnector {
    fn capabilities(&self, entity: EntityKind) -> Capabilities {
        SqlConnector::capabilities(self, entity)
    }

    fn max_batch_size(&self, entity: EntityKind) -> usize {
        self.settings.entities.get(&entity).map(|settings| settings.batch_size).unwrap_or(1)
    }

    async fn lookup(&self, entity: EntityKind, natural_keys: &[String]) -> Result<Vec<Option<String>>, ConnectorError> {
        let context = format!("looking up {entity} in sql \"{}\"", self.system);
        let settings = self.entity(entity, &context)?;
        let table = writable_table(settings, &context)?;
        let columns = self.table_columns(table, &context).await?;
        let Some(lookup_columns) = lookup_columns(entity, settings, &columns) else {
            return Ok(vec![None; natural_keys.len()]);
        };
        let dialect = self.db.dialect();
        let mut found: HashSet<String> = HashSet::new();
        for chunk in natural_keys.chunks(LOOKUP_CHUNK) {
            let mut binds = Vec::new();
            let mut tuples = Vec::new();
            for natural_key in chunk {
                let Some(parts) = split_key(natural_key, lookup_columns.len()) else { continue };
                let values: Result<Vec<SqlValue>, String> = lookup_columns
                    .iter()
                    .zip(&parts)
                    .map(|(column, part)| cell_to_value(column_kind(&columns, column), part))
                    .collect();
                // A key that cannot be a value of the column (letters for an integer key) is
                // simply not there.
                let Ok(values) = values else { continue };
                let mut placeholders = Vec::new();
                for value in values {
                    binds.push(value);
                    placeholders.push(dialect.placeholder(binds.len()));
                }
                tuples.push(format!("({})", placeholders.join(", ")));
            }
            if tuples.is_empty() {
                continue;
            }
            let quoted: Vec<String> = lookup_columns.iter().map(|column| dialect.quote(column)).collect();
            let sql = format!(
                "SELECT DISTINCT {list} FROM {table} WHERE ({list}) IN ({tuples})",
                list = quoted.join(", "),
                table = dialect.table(table),
                tuples = tuples.join(", ")
            );
            for row in self.db.fetch(sql, &binds).await.map_err(|error| sql_error(&context, error))? {
                let parts: Vec<String> = row.iter().map(|(_, value)| value.to_cell()).collect();
                found.insert(parts.join("@"));
            }
        }
        Ok(natural_keys.iter().map(|key| found.contains(key.trim()).then(|| key.trim().to_string())).collect())
    }

    async fn write_batch(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let entity = batch.entity;
        let context = format!("writing {entity} to sql \"{}\"", self.system);
        let settings = self.entity(entity, &context)?;
        let table = writable_table(settings, &context)?;
        let columns = self.table_columns(table, &context).await?;

        let mut outcomes: Vec<Option<WriteOutcome>> = Vec::with_capacity(batch.items.len());
        let mut ready: Vec<(usize, Prepared)> = Vec::new();
        for (index, item) in batch.items.iter().enumerate() {
            match prepare(entity, settings, table, &columns, item) {
                Ok(prepared) => {
                    outcomes.push(None);
                    ready.push((index, prepared));
                }
                Err(message) => outcomes.push(Some(WriteOutcome::Failed(ConnectorError::new(
                    ErrorKind::InvalidRequest,
                    format!("{context}: {}", item.natural_key),
                    message,
                )))),
            }
        }

        let all: Vec<&Prepared> = ready.iter().map(|(_, prepared)| prepared).collect();
        match self.write_in_transaction(settings, table, &columns, &all).await {
            Ok(created) => {
                for ((index, prepared), created) in ready.iter().zip(created) {
                    outcomes[*index] = Some(outcome(prepared, created));
                }
            }
            Err(error) if is_row_error(&error) => {
                // One refused row rolled back the whole batch: write each record in its own
                // transaction so that only the refused ones fail.
                for (index, prepared) in &ready {
                    outcomes[*index] =
                        Some(match self.write_in_transaction(settings, table, &columns, &[prepared]).await {
                            Ok(created) => outcome(prepared, created.first().copied().unwrap_or(false)),
                            Err(error) if is_row_error(&error) => WriteOutcome::Failed(
                                ConnectorError::new(
                                    ErrorKind::InvalidRequest,
                                    format!("{context}: {}", prepared.target_id),
                                    database_message(&error),
                                )
                                .with_source(error),
                            ),
                            Err(error) => return Err(sql_error(&context, error)),
                        });
                }
            }
            Err(error) => return Err(sql_error(&context, error)),
        }
        Ok(outcomes.into_iter().map(|outcome| outcome.unwrap_or_else(|| unreachable_outcome(&context))).collect())
    }
}

fn unreachable_outcome(context: &str) -> WriteOutcome {
    // Every index is filled above; this keeps a logic slip from panicking in production.
    WriteOutcome::Failed(ConnectorError::new(ErrorKind::InvalidResponse, context, "no outcome was recorded"))
}

fn outcome(prepared: &Prepared, created: bool) -> WriteOutcome {
    let target_id = prepared.target_id.clone();
    if created { WriteOutcome::Created { target_id } } else { WriteOutcome::Updated { target_id } }
}

fn writable_table<'s>(settings: &'s EntitySettings, context: &str) -> Result<&'s Ident, ConnectorError> {
    settings.table().ok_or_else(|| {
        ConnectorError::new(
            ErrorKind::InvalidRequest,
            context,
            "this entity is read from a query, which cannot be written: set table instead",
        )
    })
}

fn column_kind(columns: &TableColumns, column: &str) -> ColumnKind {
    columns.columns.get(column).map(|found| found.kind).unwrap_or(ColumnKind::Text)
}

/// The columns whose values form the natural key, when the table has them: the group column
/// (`code`, `number`, `email`), the single key column, or `sku` and `location` of a stock level.
fn lookup_columns(entity: EntityKind, settings: &EntitySettings, columns: &TableColumns) -> Option<Vec<String>> {
    if let Mode::Json(_) = settings.mode {
        return Some(vec![settings.key.first()?.clone()]);
    }
    let names: Vec<String> = columns.columns.keys().cloned().collect();
    if let Some(group) = group_column(entity, settings, &names) {
        return Some(vec![group]);
    }
    if entity == EntityKind::StockLevel {
        let sku = settings.column_for("sku");
        let location = settings.column_for("location");
        if columns.columns.contains_key(&sku) && columns.columns.contains_key(&location) {
            return Some(vec![sku, location]);
        }
    }
    match settings.key.as_slice() {
        [single] => Some(vec![single.clone()]),
        _ => None,
    }
}

/// Splits a natural key into its parts: `sku@location` has two, split at the last `@`.
fn split_key(key: &str, parts: usize) -> Option<Vec<String>> {
    let key = key.trim();
    match parts {
        1 => Some(vec![key.to_string()]),
        2 => key.rsplit_once('@').map(|(sku, location)| vec![sku.to_string(), location.to_string()]),
        _ => None,
    }
}

/// One record as the rows to upsert.
struct Prepared {
    target_id: String,
    /// Column → value, one map per row; every row has every key column.
    rows: Vec<BTreeMap<String, SqlValue>>,
    /// The group column and value, when other rows of the group not written now are removed
    /// (a variant the product no longer has).
    group: Option<(String, SqlValue)>,
}

/// Families of `<family>.<key>` cells that fold into their JSON column when the table has no
/// column of their own.
const JSON_FAMILIES: &[&str] = &["extra", "variant_extra", "line_extra"];

fn prepare(
    entity: EntityKind,
    settings: &EntitySettings,
    table: &Ident,
    columns: &TableColumns,
    item: &WriteItem,
) -> Result<Prepared, String> {
    let target_id = match item.natural_key.trim() {
        "" => item.record.natural_key().ok_or("the record has no natural key")?,
        key => key.to_string(),
    };
    let change = settings.change.as_ref().map(ChangeColumn::name);
    let mut rows = Vec::new();
    match &settings.mode {
        Mode::Json(json_column) => {
            let key_column = settings.key.first().ok_or("no key column is configured")?;
            let json = serde_json::to_value(&item.record).map_err(|error| error.to_string())?;
            let json = match column_kind(columns, json_column) {
                ColumnKind::Json => SqlValue::Json(json),
                _ => SqlValue::Text(json.to_string()),
            };
            let mut row = BTreeMap::new();
            row.insert(key_column.clone(), typed(columns, key_column, &target_id, "the natural key")?);
            row.insert(json_column.clone(), json);
            rows.push(row);
        }
        Mode::Flat { column_to_canonical } => {
            let flat_record = flat::record_to_rows(&item.record, CellFormat::default())
                .map_err(|problem| format!("{}: {}", problem.field, problem.message))?;
            // The table columns the scheme writes: set on every row, NULL when the record has
            // no value, so a value removed in the source is removed here too.
            let scheme_columns: Vec<&String> = columns
                .columns
                .keys()
                .filter(|column| Some(column.as_str()) != change)
                .filter(|column| {
                    let canonical = column_to_canonical.get(*column).map(String::as_str).unwrap_or(column.as_str());
                    flat::canonical_column(entity, canonical).is_some()
                })
                .collect();
            for cells in flat_record.rows {
                let mut by_column: BTreeMap<String, String> = BTreeMap::new();
                let mut folded: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
                for (key, cell) in cells {
                    let canonical = key.to_string();
                    let column = settings.column_for(&canonical);
                    if Some(column.as_str()) == change {
                        // The sink owns the change column: it is set to the database's clock.
                        continue;
                    }
                    if columns.columns.contains_key(&column) {
                        by_column.insert(column, cell);
                        continue;
                    }
                    let family = canonical.split_once('.');
                    match family {
                        Some((family, name)) if JSON_FAMILIES.contains(&family) => {
                            folded
                                .entry(settings.column_for(family))
                                .or_default()
                                .insert(name.to_string(), Value::String(cell));
                        }
                        _ if is_default_cell(entity, &canonical, &cell) => {
                            // Reading a missing column gives this same value back: nothing is lost
                            // by a table without the column.
                        }
                        _ => {
                            return Err(format!(
                                "field {canonical:?} has no column in table {}: add one, or map a column to it in entities.{entity}.columns",
                                display_ident(table)
                            ));
                        }
                    }
                }
                for (column, mut object) in folded {
                    if !columns.columns.contains_key(&column) {
                        let names: Vec<&String> = object.keys().collect();
                        return Err(format!(
                            "fields {names:?} of {column:?} have no column in table {}: add a JSON column {column:?}",
                            display_ident(table)
                        ));
                    }
                    if let Some(existing) = by_column.get(&column)
                        && let Ok(Value::Object(existing)) = serde_json::from_str::<Value>(existing)
                    {
                        object.extend(existing);
                    }
                    by_column.insert(column, Value::Object(object).to_string());
                }
                let mut row = BTreeMap::new();
                for column in &scheme_columns {
                    let cell = by_column.remove(*column).unwrap_or_default();
                    row.insert((*column).clone(), typed(columns, column, &cell, column)?);
                }
                for (column, cell) in by_column {
                    row.insert(column.clone(), typed(columns, &column, &cell, &column)?);
                }
                for key_column in &settings.key {
                    if matches!(row.get(key_column), None | Some(SqlValue::Null)) {
                        return Err(format!("key column {key_column:?} has no value in this record"));
                    }
                }
                rows.push(row);
            }
        }
    }
    let group = match (&settings.mode, settings.key.len()) {
        (Mode::Flat { .. }, 2..) => {
            let names: Vec<String> = columns.columns.keys().cloned().collect();
            group_column(entity, settings, &names)
                .filter(|group| !settings.key.is_empty() && settings.key.contains(group))
                .and_then(|group| rows.first().and_then(|row| row.get(&group)).cloned().map(|value| (group, value)))
                .filter(|(_, value)| *value != SqlValue::Null)
        }
        _ => None,
    };
    Ok(Prepared { target_id, rows, group })
}

/// Whether a cell holds what the flat scheme reads from an absent column: `false`, or the
/// default choice (`status = active`). Such cells need no column in the table.
fn is_default_cell(entity: EntityKind, canonical: &str, cell: &str) -> bool {
    let default = match canonical {
        "status" if entity == EntityKind::Product => "active",
        "rounding" => "per_line",
        "financial_status" | "fulfillment_status" | "state" if entity == EntityKind::OrderStatus => return false,
        "financial_status" => "pending",
        "fulfillment_status" => "unfulfilled",
        "kind" if entity == EntityKind::Document => "invoice",
        "price_includes_tax" | "track_inventory" | "prices_include_tax" | "accepts_marketing" | "cancelled"
        | "notify_customer" | "line_restock" => "false",
        _ if canonical.ends_with("is_default") => "false",
        _ => return false,
    };
    cell == default
}

/// A cell as the value for its column, checked against the column's type and length.
fn typed(columns: &TableColumns, column: &str, cell: &str, what: &str) -> Result<SqlValue, String> {
    let found = columns.columns.get(column);
    let kind = found.map(|found| found.kind).unwrap_or(ColumnKind::Text);
    let value = cell_to_value(kind, cell).map_err(|message| format!("column {column:?} ({what}): {message}"))?;
    if let (Some(max), SqlValue::Text(text)) = (found.and_then(|found| found.max_length), &value) {
        let length = text.chars().count();
        if i64::try_from(length).unwrap_or(i64::MAX) > max {
            return Err(format!(
                "column {column:?}: the value has {length} characters, the column holds at most {max}"
            ));
        }
    }
    Ok(value)
}

impl SqlConnector {
    /// Upserts the records in one transaction. `Ok` holds, per record, whether it was created
    /// (none of its rows existed before).
    async fn write_in_transaction(
        &self,
        settings: &EntitySettings,
        table: &Ident,
        columns: &TableColumns,
        records: &[&Prepared],
    ) -> Result<Vec<bool>, sqlx::Error> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.db.begin().await?;
        let mut created = Vec::with_capacity(records.len());
        for record in records {
            match self.upsert_record(&mut tx, settings, table, columns, record).await {
                Ok(was_created) => created.push(was_created),
                Err(error) => {
                    // A failed rollback means the connection is gone; the error that caused
                    // it is the one worth reporting.
                    let _ = tx.rollback().await;
                    return Err(error);
                }
            }
        }
        tx.commit().await?;
        Ok(created)
    }

    async fn upsert_record(
        &self,
        tx: &mut Tx,
        settings: &EntitySettings,
        table: &Ident,
        columns: &TableColumns,
        record: &Prepared,
    ) -> Result<bool, sqlx::Error> {
        let dialect = self.db.dialect();
        let mut all_created = true;
        for row in &record.rows {
            let (sql, binds) = upsert_sql(dialect, settings, table, columns, row);
            let created = match dialect {
                Dialect::Postgres => {
                    let returned = tx.fetch(sql, &binds).await?;
                    matches!(returned.first().and_then(|row| row.first()), Some((_, SqlValue::Bool(true))))
                }
                Dialect::MySql => {
                    // The driver counts a matched row as affected (CLIENT_FOUND_ROWS), so 1 does
                    // not tell an insert from an unchanged update: ask first.
                    let (exists_sql, exists_binds) = exists_sql(dialect, settings, table, row);
                    let existed = !tx.fetch(exists_sql, &exists_binds).await?.is_empty();
                    tx.execute(sql, &binds).await?;
                    !existed
                }
            };
            all_created &= created;
        }
        if let Some((group_column, group_value)) = &record.group {
            // Rows of the group that this record no longer has (a removed variant).
            let mut binds = vec![group_value.clone()];
            let group_placeholder = dialect.placeholder(1);
            let mut tuples = Vec::new();
            for row in &record.rows {
                let mut placeholders = Vec::new();
                for key_column in &settings.key {
                    binds.push(row.get(key_column).cloned().unwrap_or(SqlValue::Null));
                    placeholders.push(dialect.placeholder(binds.len()));
                }
                tuples.push(format!("({})", placeholders.join(", ")));
            }
            let keys: Vec<String> = settings.key.iter().map(|column| dialect.quote(column)).collect();
            let sql = format!(
                "DELETE FROM {} WHERE {} = {group_placeholder} AND ({}) NOT IN ({})",
                dialect.table(table),
                dialect.quote(group_column),
                keys.join(", "),
                tuples.join(", ")
            );
            tx.execute(sql, &binds).await?;
        }
        Ok(all_created)
    }
}

fn exists_sql(
    dialect: Dialect,
    settings: &EntitySettings,
    table: &Ident,
    row: &BTreeMap<String, SqlValue>,
) -> (String, Vec<SqlValue>) {
    let mut binds = Vec::new();
    let mut conditions = Vec::new();
    for key_column in &settings.key {
        binds.push(row.get(key_column).cloned().unwrap_or(SqlValue::Null));
        conditions.push(format!("{} = {}", dialect.quote(key_column), dialect.placeholder(binds.len())));
    }
    (format!("SELECT 1 FROM {} WHERE {} LIMIT 1", dialect.table(table), conditions.join(" AND ")), binds)
}

/// The database's clock, in the change column's type (naive columns hold UTC).
fn now_sql(dialect: Dialect, kind: ColumnKind) -> &'static str {
    match (dialect, kind) {
        // `clock_timestamp()`, not `now()`: the time of the write, not of the transaction's
        // start, so a long transaction stamps its rows as late as it can.
        (Dialect::Postgres, ColumnKind::TimestampTz) => "clock_timestamp()",
        (Dialect::Postgres, _) => "(clock_timestamp() AT TIME ZONE 'UTC')",
        (Dialect::MySql, _) => "UTC_TIMESTAMP(6)",
    }
}

fn upsert_sql(
    dialect: Dialect,
    settings: &EntitySettings,
    table: &Ident,
    columns: &TableColumns,
    row: &BTreeMap<String, SqlValue>,
) -> (String, Vec<SqlValue>) {
    let mut names = Vec::new();
    let mut values = Vec::new();
    let mut updates = Vec::new();
    let mut binds = Vec::new();
    let excluded = |column: &str| match dialect {
        Dialect::Postgres => format!("EXCLUDED.{}", dialect.quote(column)),
        Dialect::MySql => format!("VALUES({})", dialect.quote(column)),
    };
    for (column, value) in row {
        binds.push(value.clone());
        let placeholder = dialect.placeholder(binds.len());
        let type_name = columns.columns.get(column).and_then(|found| found.type_name.as_deref());
        values.push(match (dialect, type_name) {
            // PostgreSQL does not convert a bound text or integer to, say, a `uuid`, `int4` or
            // `jsonb` column implicitly; an explicit cast to the column's type does.
            (Dialect::Postgres, Some(type_name)) => format!("CAST({placeholder} AS {})", dialect.quote(type_name)),
            _ => placeholder,
        });
        names.push(dialect.quote(column));
        if !settings.key.contains(column) {
            updates.push(format!("{} = {}", dialect.quote(column), excluded(column)));
        }
    }
    match &settings.change {
        Some(ChangeColumn::UpdatedAt(column)) => {
            let now = now_sql(dialect, column_kind(columns, column));
            names.push(dialect.quote(column));
            values.push(now.to_string());
            updates.push(format!("{} = {now}", dialect.quote(column)));
        }
        Some(ChangeColumn::Version(column)) => {
            let quoted = dialect.quote(column);
            names.push(quoted.clone());
            values.push("1".to_string());
            let current = match dialect {
                Dialect::Postgres => format!("target.{quoted}"),
                Dialect::MySql => quoted.clone(),
            };
            updates.push(format!("{quoted} = COALESCE({current}, 0) + 1"));
        }
        None => {}
    }
    if updates.is_empty()
        && let Some(first_key) = settings.key.first()
    {
        // Nothing but the key: the row exists as it should; a no-op update keeps the statement
        // valid on both databases.
        updates.push(format!("{} = {}", dialect.quote(first_key), excluded(first_key)));
    }
    let sql = match dialect {
        Dialect::Postgres => format!(
            "INSERT INTO {} AS target ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {} RETURNING (xmax = 0) AS inserted",
            dialect.table(table),
            names.join(", "),
            values.join(", "),
            settings.key.iter().map(|column| dialect.quote(column)).collect::<Vec<_>>().join(", "),
            updates.join(", ")
        ),
        Dialect::MySql => format!(
            "INSERT INTO {} ({}) VALUES ({}) ON DUPLICATE KEY UPDATE {}",
            dialect.table(table),
            names.join(", "),
            values.join(", "),
            updates.join(", ")
        ),
    };
    (sql, binds)
}
