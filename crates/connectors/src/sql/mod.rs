//! The `sql` connector: PostgreSQL and MariaDB/MySQL tables or views as a source (incremental
//! by an `updated_at` or `version` column) and as a target (upsert by key, in transactions).
//!
//! The project keeps SQL in `store` for erpsync's own state; this connector holds SQL because
//! its job is to speak to someone else's database, and the engine's state never goes through it.
//! The user guide is `docs/connectors/sql.md`; this is the map for whoever changes the code.
//!
//! | room | what it holds |
//! |---|---|
//! | `config.rs` | the TOML table, its pure validation (identifiers, key, change column), the validated `Settings` |
//! | `client.rs` | `SqlConnector`: the pool, quoting, binding, decoding rows, `information_schema`, error kinds |
//! | `map.rs` | pure conversions: database values ⇄ cells, cells ⇄ values to bind, the cursor |
//! | `source.rs` | `Source`: keyset pages, the boundary rule, rows ⇄ records with the files connector's flat scheme |
//! | `sink.rs` | `Sink`: upserts in one transaction per batch, the one-by-one fallback, lookup |
//!
//! There is no `webhook.rs`: a database sends no events here. Tests are in `tests/sql.rs`, run
//! against real PostgreSQL and MariaDB servers.
//!
//! # Rows and records
//!
//! Each entity is a table (or a `query`, read only) with `key` columns. By default a row uses
//! the flat column scheme of the files connector (`crate::files` documents it): a column is a
//! canonical column by its name or by the `columns` mapping; rows sharing a group key (`code`
//! for products) form one record, and the source always reads all rows of a group it touches.
//! With `json_column` a row holds the whole canonical record as JSON. NULL is "absent".
//!
//! # Reading: the boundary rule
//!
//! Pages are ordered by (change column, key) and each starts strictly after the (change, key)
//! of the last row read — so rows sharing a timestamp at a page boundary are all read. When a
//! scan reaches the end, the cursor records the greatest change value seen (the watermark), and
//! the next scan starts at watermark − `overlap`, inclusive: a row whose transaction committed
//! after it was stamped, or that was updated during a long scan, is read again by the next run,
//! and the engine skips the unchanged ones by hash. Rows whose change column is NULL are read
//! once, by the first scan (before the others, by key); give them a value to sync their later
//! changes. Naive timestamps (PostgreSQL `timestamp`, MariaDB `DATETIME`/`TIMESTAMP` with the
//! session in UTC) are UTC. Without a change column every run reads everything, by key.
//!
//! # Writing
//!
//! Each batch is one transaction of upserts; the change column is set to the database's clock
//! (or the version incremented). A row the database refuses makes the records be written again
//! one transaction each, so only the refused ones fail. Target ids are natural keys.

mod client;
mod config;
mod map;
mod sink;
mod source;

pub use client::SqlConnector;
pub use config::{EntitySqlConfig, KeyColumns, SqlConfig};
