//! Configuration of the `sql` connector: the TOML table, its pure validation, and the validated
//! [`Settings`] the connector is built from.
//!
//! "Parse, then build": [`SqlConfig::settings`] checks every name without connecting, and
//! reports every problem at once with the field path it concerns. Table and column names are
//! checked against `[A-Za-z_][A-Za-z0-9_]*` (a table may be `schema.table`) and then always
//! quoted, so no configuration value is ever spliced into SQL unchecked.

use crate::files::map as flat;
use crate::secret::SecretRef;
use erpsync_model::EntityKind;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// The `[systems.<name>]` table of a `type = "sql"` system.
///
/// ```toml
/// [systems.staging]
/// type = "sql"
/// url = "${STAGING_DATABASE_URL}"   # postgres://… or mysql://… (MariaDB too)
///
/// [systems.staging.entities.product]
/// table = "staging.products"
/// key = ["code", "sku"]
/// updated_at = "changed_at"
/// columns = { item_no = "sku", name = "title" }
/// overlap = 5
/// batch_size = 500
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// The connection URL, as a secret reference: it usually holds a password.
    pub url: SecretRef,
    /// Connections the pool opens at most.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Per-entity settings, keyed by entity name (`product`, `stock_level`, …).
    #[serde(default)]
    pub entities: BTreeMap<String, EntitySqlConfig>,
}

/// `[systems.<name>.entities.<entity>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntitySqlConfig {
    /// The table (or view) read and written: `name` or `schema.name`.
    pub table: Option<String>,
    /// Instead of `table`, for reading only: a `SELECT` (or `WITH … SELECT`) whose rows are
    /// read as if it were a view. Written by whoever writes the configuration, run as written.
    pub query: Option<String>,
    /// The column or columns that identify a row (the table's primary or unique key).
    #[serde(default)]
    pub key: KeyColumns,
    /// A timestamp column that changes whenever the row changes: makes reads incremental.
    pub updated_at: Option<String>,
    /// Instead of `updated_at`: an integer column that grows whenever the row changes.
    pub version: Option<String>,
    /// Table column → canonical column of the flat scheme (`item_no = "sku"`). Columns not
    /// named here are matched by their own name.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Instead of the flat columns: one JSON (or JSONB, or text) column holding the whole
    /// canonical record.
    pub json_column: Option<String>,
    /// Seconds (for `updated_at`) or versions (for `version`) that each new run re-reads
    /// before the last watermark. Default 5.
    pub overlap: Option<u64>,
    /// Rows per page and per written transaction. Default 500.
    pub batch_size: Option<usize>,
}

/// `key = "id"` or `key = ["code", "sku"]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(untagged)]
pub enum KeyColumns {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl KeyColumns {
    fn names(&self) -> Vec<String> {
        match self {
            KeyColumns::None => Vec::new(),
            KeyColumns::One(name) => vec![name.clone()],
            KeyColumns::Many(names) => names.clone(),
        }
    }
}

fn default_max_connections() -> u32 {
    4
}

pub(crate) const DEFAULT_OVERLAP: u64 = 5;
pub(crate) const DEFAULT_BATCH_SIZE: usize = 500;
const MAX_BATCH_SIZE: usize = 10_000;

/// A checked identifier, optionally schema-qualified: safe to quote.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Ident {
    pub schema: Option<String>,
    pub name: String,
}

/// Where the rows come from.
#[derive(Debug, Clone)]
pub(crate) enum Relation {
    Table(Ident),
    Query(String),
}

/// What makes reads incremental.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChangeColumn {
    UpdatedAt(String),
    Version(String),
}

impl ChangeColumn {
    pub(crate) fn name(&self) -> &str {
        match self {
            ChangeColumn::UpdatedAt(name) | ChangeColumn::Version(name) => name,
        }
    }
}

/// How a row holds a record.
#[derive(Debug, Clone)]
pub(crate) enum Mode {
    /// The files connector's flat column scheme; table column → canonical column.
    Flat { column_to_canonical: HashMap<String, String> },
    /// One JSON column holding the canonical record.
    Json(String),
}

#[derive(Debug, Clone)]
pub(crate) struct EntitySettings {
    pub relation: Relation,
    pub key: Vec<String>,
    pub change: Option<ChangeColumn>,
    pub mode: Mode,
    pub overlap: u64,
    pub batch_size: usize,
}

impl EntitySettings {
    /// The table, when the entity can be written.
    pub(crate) fn table(&self) -> Option<&Ident> {
        match &self.relation {
            Relation::Table(table) => Some(table),
            Relation::Query(_) => None,
        }
    }

    /// The table column holding a canonical column: the mapped one, else the same name.
    pub(crate) fn column_for(&self, canonical: &str) -> String {
        if let Mode::Flat { column_to_canonical } = &self.mode {
            let mapped = column_to_canonical.iter().find(|(_, to)| to.eq_ignore_ascii_case(canonical));
            if let Some((column, _)) = mapped {
                return column.clone();
            }
        }
        canonical.to_string()
    }

    pub(crate) fn header_to_column(&self) -> HashMap<String, String> {
        match &self.mode {
            Mode::Flat { column_to_canonical } => column_to_canonical.clone(),
            Mode::Json(_) => HashMap::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub max_connections: u32,
    pub entities: HashMap<EntityKind, EntitySettings>,
}

/// `[A-Za-z_][A-Za-z0-9_]*`: a name that needs no escaping once quoted, on any database.
pub(crate) fn is_plain_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    matches!(chars.next(), Some(first) if first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && text.len() <= 63
}

fn check_column(name: &str) -> Result<String, String> {
    if is_plain_identifier(name) {
        Ok(name.to_string())
    } else {
        Err(format!(
            "{name:?} is not a plain column name: expected letters, digits and \"_\", not starting with a digit, at most 63 characters"
        ))
    }
}

fn check_table(name: &str) -> Result<Ident, String> {
    let parts: Vec<&str> = name.split('.').collect();
    match parts.as_slice() {
        [table] if is_plain_identifier(table) => Ok(Ident { schema: None, name: table.to_string() }),
        [schema, table] if is_plain_identifier(schema) && is_plain_identifier(table) => {
            Ok(Ident { schema: Some(schema.to_string()), name: table.to_string() })
        }
        _ => Err(format!(
            "{name:?} is not a plain table name: expected \"table\" or \"schema.table\", each part letters, digits and \"_\", not starting with a digit"
        )),
    }
}

impl SqlConfig {
    /// Every problem of the configuration, each with the field path it concerns
    /// (`entities.product.key`). Pure: nothing is connected to.
    pub fn validate(&self) -> Vec<(String, String)> {
        match self.settings() {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        }
    }

    pub(crate) fn settings(&self) -> Result<Settings, Vec<(String, String)>> {
        let mut problems: Vec<(String, String)> = Vec::new();
        if self.max_connections == 0 {
            problems.push(("max_connections".into(), "must be at least 1".into()));
        }
        let mut entities = HashMap::new();
        for (name, entity_config) in &self.entities {
            let field = format!("entities.{name}");
            let entity: EntityKind = match name.parse() {
                Ok(entity) => entity,
                Err(error) => {
                    problems.push((field, error.to_string()));
                    continue;
                }
            };
            if let Some(settings) = entity_settings(entity, entity_config, &field, &mut problems) {
                entities.insert(entity, settings);
            }
        }
        if problems.is_empty() {
            Ok(Settings { max_connections: self.max_connections, entities })
        } else {
            Err(problems)
        }
    }
}

fn entity_settings(
    entity: EntityKind,
    config: &EntitySqlConfig,
    field: &str,
    problems: &mut Vec<(String, String)>,
) -> Option<EntitySettings> {
    let n_before = problems.len();
    let mut problem = |path: &str, message: String| problems.push((format!("{field}{path}"), message));

    let relation = match (&config.table, &config.query) {
        (Some(table), None) => match check_table(table.trim()) {
            Ok(ident) => Some(Relation::Table(ident)),
            Err(message) => {
                problem(".table", message);
                None
            }
        },
        (None, Some(query)) => {
            let trimmed = query.trim().trim_end_matches(';').trim();
            let first_word = trimmed.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
            if !matches!(first_word.as_str(), "select" | "with") {
                problem(".query", "must be a SELECT (or WITH … SELECT) statement".into());
                None
            } else if trimmed.contains(';') {
                problem(".query", "must be one statement: remove the \";\" inside it".into());
                None
            } else {
                Some(Relation::Query(trimmed.to_string()))
            }
        }
        (Some(_), Some(_)) => {
            problem(".query", "set either table or query, not both".into());
            None
        }
        (None, None) => {
            problem(".table", "is required: the table or view to read and write (or query, for reading only)".into());
            None
        }
    };

    let mut key = Vec::new();
    let names = config.key.names();
    if names.is_empty() {
        problem(
            ".key",
            "is required: the column or columns that identify a row, such as \"id\" or [\"code\", \"sku\"]".into(),
        );
    }
    for name in names {
        match check_column(name.trim()) {
            Ok(column) if key.contains(&column) => problem(".key", format!("{column:?} is listed twice")),
            Ok(column) => key.push(column),
            Err(message) => problem(".key", message),
        }
    }

    let change = match (&config.updated_at, &config.version) {
        (Some(_), Some(_)) => {
            problem(".version", "set either updated_at or version, not both".into());
            None
        }
        (Some(column), None) => match check_column(column.trim()) {
            Ok(column) => Some(ChangeColumn::UpdatedAt(column)),
            Err(message) => {
                problem(".updated_at", message);
                None
            }
        },
        (None, Some(column)) => match check_column(column.trim()) {
            Ok(column) => Some(ChangeColumn::Version(column)),
            Err(message) => {
                problem(".version", message);
                None
            }
        },
        (None, None) => None,
    };
    if let Some(change) = &change
        && key.iter().any(|column| column == change.name())
    {
        problem(".key", format!("{:?} is the change column: it cannot also identify the row", change.name()));
    }

    let mode = match &config.json_column {
        Some(column) => {
            if !config.columns.is_empty() {
                problem(
                    ".columns",
                    "a json_column holds the whole record: remove columns, or remove json_column".into(),
                );
            }
            if key.len() > 1 {
                problem(".key", "with json_column the key is one column, holding the record's natural key".into());
            }
            match check_column(column.trim()) {
                Ok(column) => Mode::Json(column),
                Err(message) => {
                    problem(".json_column", message);
                    Mode::Json(String::new())
                }
            }
        }
        None => {
            let mut column_to_canonical = HashMap::new();
            let mut seen: HashMap<String, String> = HashMap::new();
            for (column, canonical) in &config.columns {
                let path = format!(".columns.{column}");
                if let Err(message) = check_column(column) {
                    problem(&path, message);
                    continue;
                }
                let Some(key) = flat::canonical_column(entity, canonical.trim()) else {
                    problem(
                        &path,
                        format!(
                            "unknown column {canonical:?} for {entity}: expected one of {}",
                            flat::column_names(entity).join(", ")
                        ),
                    );
                    continue;
                };
                let key = key.to_string();
                if let Some(previous) = seen.insert(key.clone(), column.clone()) {
                    problem(&path, format!("columns {previous:?} and {column:?} both map to {key:?}: keep one"));
                    continue;
                }
                column_to_canonical.insert(column.clone(), key);
            }
            Mode::Flat { column_to_canonical }
        }
    };

    let overlap = config.overlap.unwrap_or(DEFAULT_OVERLAP);
    if overlap > 7 * 24 * 3600 {
        problem(".overlap", format!("{overlap} is more than a week: expected a few seconds, such as 5"));
    }
    let batch_size = config.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
    if batch_size == 0 || batch_size > MAX_BATCH_SIZE {
        problem(".batch_size", format!("expected 1 to {MAX_BATCH_SIZE}, found {batch_size}"));
    }

    if problems.len() > n_before {
        return None;
    }
    Some(EntitySettings { relation: relation?, key, change, mode, overlap, batch_size })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(toml_text: &str) -> Vec<(String, String)> {
        let config: SqlConfig = toml::from_str(toml_text).unwrap();
        config.validate()
    }

    #[test]
    fn accepts_a_plain_configuration() {
        let found = problems(
            r#"
            url = "${DB}"
            [entities.product]
            table = "staging.products"
            key = ["code", "sku"]
            updated_at = "changed_at"
            columns = { item_no = "sku" }
            "#,
        );
        assert_eq!(found, Vec::<(String, String)>::new());
    }

    #[test]
    fn refuses_names_that_would_need_escaping() {
        let found = problems(
            r#"
            url = "${DB}"
            [entities.customer]
            table = "customers; drop table x"
            key = "id\""
            updated_at = "1st"
            columns = { "a b" = "email", mail = "nonsense" }
            "#,
        );
        let fields: Vec<&str> = found.iter().map(|(field, _)| field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "entities.customer.table",
                "entities.customer.key",
                "entities.customer.updated_at",
                "entities.customer.columns.a b",
                "entities.customer.columns.mail"
            ],
            "{found:?}"
        );
    }
}
