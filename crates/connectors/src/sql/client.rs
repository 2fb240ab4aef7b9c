//! The database: `SqlConnector`, its pool (PostgreSQL or MariaDB/MySQL), quoting, binding,
//! decoding rows into [`SqlValue`]s, looking up a table's columns, and the error mapping.

use crate::sql::config::{EntitySettings, Ident, Settings, SqlConfig, is_plain_identifier};
use crate::sql::map::{ColumnKind, SqlValue};
use crate::{Capabilities, ConnectorError, ErrorKind};
use erpsync_model::EntityKind;
use sqlx::mysql::{MySql, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow, Postgres};
use sqlx::{AssertSqlSafe, Column, Row, TypeInfo, ValueRef};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A connector to one PostgreSQL or MariaDB/MySQL database. Cheap to clone.
#[derive(Clone)]
pub struct SqlConnector {
    pub(crate) system: String,
    pub(crate) settings: Arc<Settings>,
    pub(crate) db: Db,
    /// Columns of each written table, looked up once.
    tables: Arc<Mutex<HashMap<Ident, Arc<TableColumns>>>>,
}

impl std::fmt::Debug for SqlConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlConnector").field("system", &self.system).field("dialect", &self.db.dialect()).finish()
    }
}

#[derive(Clone)]
pub(crate) enum Db {
    Postgres(PgPool),
    MySql(MySqlPool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    MySql,
}

/// One row as names and values, in the order of the result's columns.
pub(crate) type DbRow = Vec<(String, SqlValue)>;

/// A table's columns as the database describes them.
#[derive(Debug, Clone)]
pub(crate) struct TableColumns {
    pub columns: HashMap<String, TableColumn>,
}

#[derive(Debug, Clone)]
pub(crate) struct TableColumn {
    pub kind: ColumnKind,
    /// The type's name for an explicit cast (PostgreSQL), when it is a plain name.
    pub type_name: Option<String>,
    /// Characters at most (`varchar(40)`), checked before writing so the error names the column.
    pub max_length: Option<i64>,
}

impl SqlConnector {
    /// Checks the configuration, resolves the URL secret and prepares the pool. Connects
    /// lazily: nothing goes over the network before the first read or write.
    pub fn new(system: &str, config: SqlConfig) -> Result<Self, ConnectorError> {
        let context = format!("building sql \"{system}\"");
        let settings = config.settings().map_err(|problems| {
            let text: Vec<String> = problems.iter().map(|(field, message)| format!("{field}: {message}")).collect();
            ConnectorError::new(ErrorKind::InvalidRequest, &context, text.join("; "))
        })?;
        let url = config
            .url
            .resolve()
            .map_err(|error| ConnectorError::new(ErrorKind::InvalidRequest, &context, error.to_string()))?;
        let url = url.expose();
        let scheme = url.split(':').next().unwrap_or("").to_ascii_lowercase();
        let acquire_timeout = Duration::from_secs(10);
        let db = match scheme.as_str() {
            "postgres" | "postgresql" => Db::Postgres(
                PgPoolOptions::new()
                    .max_connections(settings.max_connections)
                    .acquire_timeout(acquire_timeout)
                    .connect_lazy(url)
                    .map_err(|error| invalid_url(&context, &error))?,
            ),
            // The MySQL driver sets the session time zone to UTC on connect, so TIMESTAMP
            // columns are read and written in UTC like DATETIME ones.
            "mysql" | "mariadb" => Db::MySql(
                MySqlPoolOptions::new()
                    .max_connections(settings.max_connections)
                    .acquire_timeout(acquire_timeout)
                    .connect_lazy(&url.replacen("mariadb:", "mysql:", 1))
                    .map_err(|error| invalid_url(&context, &error))?,
            ),
            _ => {
                return Err(ConnectorError::new(
                    ErrorKind::InvalidRequest,
                    context,
                    "the url must start with postgres://, postgresql://, mysql:// or mariadb://",
                ));
            }
        };
        Ok(Self { system: system.to_string(), settings: Arc::new(settings), db, tables: Arc::default() })
    }

    pub(crate) fn entity(&self, entity: EntityKind, context: &str) -> Result<&EntitySettings, ConnectorError> {
        self.settings.entities.get(&entity).ok_or_else(|| {
            ConnectorError::new(
                ErrorKind::InvalidRequest,
                context,
                format!("{entity} is not configured: add [systems.{}.entities.{entity}]", self.system),
            )
        })
    }

    pub(crate) fn capabilities(&self, entity: EntityKind) -> Capabilities {
        let Some(settings) = self.settings.entities.get(&entity) else {
            return Capabilities::default();
        };
        let writable = settings.table().is_some();
        Capabilities {
            read: true,
            incremental_read: settings.change.is_some(),
            write: writable,
            delete: false,
            webhook: false,
            lookup: writable,
        }
    }

    /// The table's columns, looked up in `information_schema` once per connector.
    pub(crate) async fn table_columns(
        &self,
        table: &Ident,
        context: &str,
    ) -> Result<Arc<TableColumns>, ConnectorError> {
        if let Some(found) = self.tables.lock().unwrap_or_else(|poison| poison.into_inner()).get(table) {
            return Ok(found.clone());
        }
        let sql = match self.db.dialect() {
            Dialect::Postgres => {
                "SELECT column_name::text, udt_name::text, character_maximum_length::int8 \
                 FROM information_schema.columns \
                 WHERE table_schema = COALESCE($1, current_schema()) AND table_name = $2 ORDER BY ordinal_position"
            }
            Dialect::MySql => {
                "SELECT CAST(column_name AS CHAR), CAST(data_type AS CHAR), CAST(character_maximum_length AS SIGNED) \
                 FROM information_schema.columns \
                 WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ? ORDER BY ordinal_position"
            }
        };
        let schema = table.schema.clone().map(SqlValue::Text).unwrap_or(SqlValue::Null);
        let rows = self
            .db
            .fetch(sql.to_string(), &[schema, SqlValue::Text(table.name.clone())])
            .await
            .map_err(|error| sql_error(context, error))?;
        if rows.is_empty() {
            return Err(ConnectorError::new(
                ErrorKind::InvalidRequest,
                context,
                format!("table {} does not exist or has no columns this user can see", display_ident(table)),
            ));
        }
        let mut columns = HashMap::new();
        for row in rows {
            let mut values = row.into_iter().map(|(_, value)| value);
            let (Some(SqlValue::Text(name)), Some(type_value), Some(length)) =
                (values.next(), values.next(), values.next())
            else {
                continue;
            };
            let type_name = match type_value {
                SqlValue::Text(text) => text,
                _ => String::new(),
            };
            let max_length = match length {
                SqlValue::Integer(length) => Some(length),
                _ => None,
            };
            let kind = ColumnKind::from_type_name(&type_name);
            let type_name = is_plain_identifier(&type_name).then_some(type_name);
            columns.insert(name, TableColumn { kind, type_name, max_length });
        }
        let found = Arc::new(TableColumns { columns });
        self.tables.lock().unwrap_or_else(|poison| poison.into_inner()).insert(table.clone(), found.clone());
        Ok(found)
    }
}

fn invalid_url(context: &str, error: &sqlx::Error) -> ConnectorError {
    // sqlx's message about a URL never repeats the password, but say only the kind anyway.
    let _ = error;
    ConnectorError::new(ErrorKind::InvalidRequest, context, "the url is not a valid database url")
}

/// `schema.table` for messages.
pub(crate) fn display_ident(ident: &Ident) -> String {
    match &ident.schema {
        Some(schema) => format!("\"{schema}.{}\"", ident.name),
        None => format!("\"{}\"", ident.name),
    }
}

impl Dialect {
    /// Quotes a checked identifier. Identifiers are checked to be `[A-Za-z_][A-Za-z0-9_]*`
    /// when the configuration is parsed, so they contain no quote to escape.
    pub(crate) fn quote(self, name: &str) -> String {
        debug_assert!(is_plain_identifier(name), "identifiers are checked when the configuration is parsed");
        match self {
            Dialect::Postgres => format!("\"{name}\""),
            Dialect::MySql => format!("`{name}`"),
        }
    }

    pub(crate) fn table(self, ident: &Ident) -> String {
        match &ident.schema {
            Some(schema) => format!("{}.{}", self.quote(schema), self.quote(&ident.name)),
            None => self.quote(&ident.name),
        }
    }

    /// The placeholder of the `n`th bound value, counting from 1.
    pub(crate) fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            Dialect::MySql => "?".to_string(),
        }
    }
}

impl Db {
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Db::Postgres(_) => Dialect::Postgres,
            Db::MySql(_) => Dialect::MySql,
        }
    }

    pub(crate) async fn fetch(&self, sql: String, binds: &[SqlValue]) -> Result<Vec<DbRow>, sqlx::Error> {
        match self {
            Db::Postgres(pool) => {
                let rows = bind_pg(sqlx::query(AssertSqlSafe(sql)), binds).fetch_all(pool).await?;
                rows.iter().map(pg_row).collect()
            }
            Db::MySql(pool) => {
                let rows = bind_mysql(sqlx::query(AssertSqlSafe(sql)), binds).fetch_all(pool).await?;
                rows.iter().map(mysql_row).collect()
            }
        }
    }

    pub(crate) async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
            Db::MySql(pool) => Tx::MySql(pool.begin().await?),
        })
    }
}

/// An open transaction on either database.
pub(crate) enum Tx {
    Postgres(sqlx::Transaction<'static, Postgres>),
    MySql(sqlx::Transaction<'static, MySql>),
}

impl Tx {
    pub(crate) async fn fetch(&mut self, sql: String, binds: &[SqlValue]) -> Result<Vec<DbRow>, sqlx::Error> {
        match self {
            Tx::Postgres(tx) => {
                let rows = bind_pg(sqlx::query(AssertSqlSafe(sql)), binds).fetch_all(&mut **tx).await?;
                rows.iter().map(pg_row).collect()
            }
            Tx::MySql(tx) => {
                let rows = bind_mysql(sqlx::query(AssertSqlSafe(sql)), binds).fetch_all(&mut **tx).await?;
                rows.iter().map(mysql_row).collect()
            }
        }
    }

    pub(crate) async fn execute(&mut self, sql: String, binds: &[SqlValue]) -> Result<u64, sqlx::Error> {
        Ok(match self {
            Tx::Postgres(tx) => {
                bind_pg(sqlx::query(AssertSqlSafe(sql)), binds).execute(&mut **tx).await?.rows_affected()
            }
            Tx::MySql(tx) => {
                bind_mysql(sqlx::query(AssertSqlSafe(sql)), binds).execute(&mut **tx).await?.rows_affected()
            }
        })
    }

    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Postgres(tx) => tx.commit().await,
            Tx::MySql(tx) => tx.commit().await,
        }
    }

    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Postgres(tx) => tx.rollback().await,
            Tx::MySql(tx) => tx.rollback().await,
        }
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;
type MySqlQuery<'q> = sqlx::query::Query<'q, MySql, sqlx::mysql::MySqlArguments>;

fn bind_pg<'q>(mut query: PgQuery<'q>, binds: &[SqlValue]) -> PgQuery<'q> {
    for value in binds {
        query = match value {
            SqlValue::Null => query.bind(None::<String>),
            SqlValue::Text(text) => query.bind(text.clone()),
            SqlValue::Integer(number) => query.bind(*number),
            SqlValue::Decimal(number) => query.bind(*number),
            SqlValue::Float(number) => query.bind(*number),
            SqlValue::Bool(flag) => query.bind(*flag),
            SqlValue::TimestampTz(at) => query.bind(*at),
            SqlValue::Timestamp(at) => query.bind(*at),
            SqlValue::Date(date) => query.bind(*date),
            SqlValue::Json(json) => query.bind(json.clone()),
        };
    }
    query
}

fn bind_mysql<'q>(mut query: MySqlQuery<'q>, binds: &[SqlValue]) -> MySqlQuery<'q> {
    for value in binds {
        query = match value {
            SqlValue::Null => query.bind(None::<String>),
            SqlValue::Text(text) => query.bind(text.clone()),
            SqlValue::Integer(number) => query.bind(*number),
            SqlValue::Decimal(number) => query.bind(*number),
            SqlValue::Float(number) => query.bind(*number),
            SqlValue::Bool(flag) => query.bind(*flag),
            // MariaDB has no zone-aware type; the session is in UTC.
            SqlValue::TimestampTz(at) => query.bind(at.naive_utc()),
            SqlValue::Timestamp(at) => query.bind(*at),
            SqlValue::Date(date) => query.bind(*date),
            SqlValue::Json(json) => query.bind(json.to_string()),
        };
    }
    query
}

fn decode_error(column: &str, type_name: &str, error: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Decode(format!("column {column:?} of type {type_name}: {error}").into())
}

fn pg_row(row: &PgRow) -> Result<DbRow, sqlx::Error> {
    let mut values = Vec::with_capacity(row.columns().len());
    for (index, column) in row.columns().iter().enumerate() {
        let name = column.name().to_string();
        let type_name = column.type_info().name().to_string();
        if row.try_get_raw(index)?.is_null() {
            values.push((name, SqlValue::Null));
            continue;
        }
        let value = match type_name.as_str() {
            "INT2" => row.try_get::<i16, _>(index).map(|n| SqlValue::Integer(n.into())),
            "INT4" => row.try_get::<i32, _>(index).map(|n| SqlValue::Integer(n.into())),
            "INT8" => row.try_get::<i64, _>(index).map(SqlValue::Integer),
            "NUMERIC" => row.try_get(index).map(SqlValue::Decimal),
            "FLOAT4" => row.try_get::<f32, _>(index).map(|n| SqlValue::Float(n.into())),
            "FLOAT8" => row.try_get(index).map(SqlValue::Float),
            "BOOL" => row.try_get(index).map(SqlValue::Bool),
            "TIMESTAMPTZ" => row.try_get(index).map(SqlValue::TimestampTz),
            "TIMESTAMP" => row.try_get(index).map(SqlValue::Timestamp),
            "DATE" => row.try_get(index).map(SqlValue::Date),
            "JSON" | "JSONB" => row.try_get(index).map(SqlValue::Json),
            "TEXT" | "VARCHAR" | "CHAR" | "BPCHAR" | "NAME" | "CITEXT" | "UNKNOWN" => {
                row.try_get(index).map(SqlValue::Text)
            }
            other => {
                return Err(decode_error(
                    &name,
                    other,
                    "the sql connector cannot read this type: cast the column to text in `query`",
                ));
            }
        }
        .map_err(|error| decode_error(&name, &type_name, error))?;
        values.push((name, value));
    }
    Ok(values)
}

fn mysql_row(row: &MySqlRow) -> Result<DbRow, sqlx::Error> {
    let mut values = Vec::with_capacity(row.columns().len());
    for (index, column) in row.columns().iter().enumerate() {
        let name = column.name().to_string();
        let type_name = column.type_info().name().to_string();
        if row.try_get_raw(index)?.is_null() {
            values.push((name, SqlValue::Null));
            continue;
        }
        let value = match type_name.as_str() {
            "BOOLEAN" => row.try_get(index).map(SqlValue::Bool),
            "TINYINT" | "SMALLINT" | "INT" | "MEDIUMINT" | "BIGINT" | "YEAR" => {
                row.try_get(index).map(SqlValue::Integer)
            }
            "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "INT UNSIGNED" | "MEDIUMINT UNSIGNED" | "BIGINT UNSIGNED" => {
                row.try_get::<u64, _>(index).and_then(|n| {
                    i64::try_from(n).map(SqlValue::Integer).map_err(|error| sqlx::Error::Decode(error.into()))
                })
            }
            "DECIMAL" => row.try_get(index).map(SqlValue::Decimal),
            "FLOAT" => row.try_get::<f32, _>(index).map(|n| SqlValue::Float(n.into())),
            "DOUBLE" => row.try_get(index).map(SqlValue::Float),
            "DATETIME" => row.try_get(index).map(SqlValue::Timestamp),
            // Sent like DATETIME (the session is in UTC); sqlx only declares the DATETIME type
            // compatible with `NaiveDateTime`.
            "TIMESTAMP" => row.try_get_unchecked(index).map(SqlValue::Timestamp),
            "DATE" => row.try_get(index).map(SqlValue::Date),
            "JSON" => row.try_get::<String, _>(index).map(SqlValue::Text),
            _ => row.try_get::<String, _>(index).map(SqlValue::Text).or_else(|_| {
                row.try_get::<Vec<u8>, _>(index).and_then(|bytes| {
                    String::from_utf8(bytes).map(SqlValue::Text).map_err(|error| sqlx::Error::Decode(error.into()))
                })
            }),
        }
        .map_err(|error| decode_error(&name, &type_name, error))?;
        values.push((name, value));
    }
    Ok(values)
}

/// The SQLSTATE of a database error, if the error came from the database.
pub(crate) fn sqlstate(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db_error) => db_error.code().map(|code| code.into_owned()),
        _ => None,
    }
}

/// A database error caused by the values of one row (SQLSTATE class 22 "data exception" or
/// 23 "integrity constraint violation"): writing the other rows alone can still succeed.
pub(crate) fn is_row_error(error: &sqlx::Error) -> bool {
    sqlstate(error).is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
}

/// The database's message, with the column or constraint it names when the driver says.
pub(crate) fn database_message(error: &sqlx::Error) -> String {
    let sqlx::Error::Database(db_error) = error else {
        return error.to_string();
    };
    let mut message = db_error.message().to_string();
    if let Some(pg) = db_error.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        if let Some(column) = pg.column() {
            message = format!("column \"{column}\": {message}");
        } else if let Some(constraint) = pg.constraint() {
            message = format!("{message} (constraint \"{constraint}\")");
        }
        if let Some(detail) = pg.detail() {
            message = format!("{message}: {detail}");
        }
    }
    message
}

/// Classifies a database error: connection trouble is retryable, a refused value is ours.
pub(crate) fn sql_error(context: &str, error: sqlx::Error) -> ConnectorError {
    let kind = match &error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            ErrorKind::Unavailable
        }
        sqlx::Error::PoolTimedOut => ErrorKind::Timeout,
        sqlx::Error::Configuration(_) => ErrorKind::InvalidRequest,
        sqlx::Error::Database(_) => {
            let code = sqlstate(&error).unwrap_or_default();
            let mysql_number = match &error {
                sqlx::Error::Database(db_error) => {
                    db_error.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>().map(|my| my.number())
                }
                _ => None,
            };
            match (code.get(..2).unwrap_or(""), code.as_str(), mysql_number) {
                (_, _, Some(1045)) | ("28", _, _) => ErrorKind::Auth,
                (_, _, Some(1142 | 1143 | 1044)) | (_, "42501", _) => ErrorKind::Permission,
                (_, _, Some(1205 | 1213)) | ("40", _, _) => ErrorKind::Conflict,
                ("08" | "53" | "57" | "58", _, _) => ErrorKind::Unavailable,
                _ => ErrorKind::InvalidRequest,
            }
        }
        _ => ErrorKind::InvalidResponse,
    };
    let message = database_message(&error);
    let mut connector_error = ConnectorError::new(kind, context, message).with_source(error);
    if kind == ErrorKind::Conflict {
        // Deadlocks and serialization failures succeed when tried again.
        connector_error = connector_error.with_retryable(true);
    }
    connector_error
}
