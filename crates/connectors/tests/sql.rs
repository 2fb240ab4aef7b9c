//! The `sql` connector against the real PostgreSQL and MariaDB servers: paging, the incremental
//! boundary rules, upserts, lookup, per-row failures and identifier checks.
//!
//! PostgreSQL: `postgres://postgres@127.0.0.1:5432/test` (`ERPSYNC_TEST_POSTGRES_URL`
//! overrides). MariaDB: `mysql://root@127.0.0.1:3306/test` (`ERPSYNC_TEST_MYSQL_URL`
//! overrides). A server that cannot be reached fails the test: it is never skipped. Every test
//! creates its own uniquely named tables and drops them at the end.

use erpsync_connectors::sql::{SqlConfig, SqlConnector};
use erpsync_connectors::{ErrorKind, ReadRequest, Sink, Source, SourceRecord, WriteBatch, WriteItem, WriteOutcome};
use erpsync_model::{Checkpoint, EntityKind, Record};
use serde_json::json;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Postgres,
    MariaDb,
}

struct TestDb {
    kind: Kind,
    pg: Option<PgPool>,
    my: Option<MySqlPool>,
    /// Holds the URL as a secret file, the way a deployment would.
    dir: tempfile::TempDir,
    tables: std::sync::Mutex<Vec<String>>,
}

static NEXT_TABLE: AtomicU32 = AtomicU32::new(0);

impl TestDb {
    async fn new(kind: Kind) -> TestDb {
        let (variable, default) = match kind {
            Kind::Postgres => ("ERPSYNC_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test"),
            Kind::MariaDb => ("ERPSYNC_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
        };
        let url = std::env::var(variable).unwrap_or_else(|_| default.to_string());
        let unreachable = |error: sqlx::Error| -> ! {
            panic!(
                "{kind:?} is not reachable at {url} ({error}): start the server (`.ci/run` does) or point {variable} at one; these tests are never skipped"
            )
        };
        let timeout = Duration::from_secs(10);
        let (pg, my) = match kind {
            Kind::Postgres => {
                let pool = PgPoolOptions::new().max_connections(2).acquire_timeout(timeout).connect(&url).await;
                (Some(pool.unwrap_or_else(|error| unreachable(error))), None)
            }
            Kind::MariaDb => {
                let pool = MySqlPoolOptions::new().max_connections(2).acquire_timeout(timeout).connect(&url).await;
                (None, Some(pool.unwrap_or_else(|error| unreachable(error))))
            }
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("url"), format!("{url}\n")).unwrap();
        TestDb { kind, pg, my, dir, tables: Default::default() }
    }

    async fn exec(&self, sql: &str) {
        let result = match (&self.pg, &self.my) {
            (Some(pool), _) => sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(pool).await.map(|_| ()),
            (_, Some(pool)) => sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(pool).await.map(|_| ()),
            _ => unreachable!("one pool is always set"),
        };
        result.unwrap_or_else(|error| panic!("{sql}: {error}"));
    }

    /// The first column of every row, as text.
    async fn column(&self, sql: &str) -> Vec<String> {
        match (&self.pg, &self.my) {
            (Some(pool), _) => sqlx::query(AssertSqlSafe(sql.to_string()))
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<String, _>(0))
                .collect(),
            (_, Some(pool)) => sqlx::query(AssertSqlSafe(sql.to_string()))
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<String, _>(0))
                .collect(),
            _ => unreachable!("one pool is always set"),
        }
    }

    /// A new table name, dropped by [`TestDb::drop_tables`].
    fn table(&self, stem: &str) -> String {
        let n = NEXT_TABLE.fetch_add(1, Ordering::Relaxed);
        let name = format!("erpsync_test_{stem}_{}_{n}", std::process::id());
        self.tables.lock().unwrap().push(name.clone());
        name
    }

    async fn drop_tables(&self) {
        let tables = std::mem::take(&mut *self.tables.lock().unwrap());
        for table in tables {
            self.exec(&format!("DROP TABLE IF EXISTS {table}")).await;
        }
    }

    /// The zone-aware timestamp type where there is one.
    fn timestamp_type(&self) -> &'static str {
        match self.kind {
            Kind::Postgres => "timestamptz",
            Kind::MariaDb => "DATETIME(6)",
        }
    }

    /// A literal for 2026-01-01 00:00:00 UTC plus `seconds`.
    fn at(&self, seconds: f64) -> String {
        let at = base() + chrono::TimeDelta::microseconds((seconds * 1e6) as i64);
        match self.kind {
            Kind::Postgres => format!("'{}'::timestamptz", at.format("%Y-%m-%dT%H:%M:%S%.6fZ")),
            Kind::MariaDb => format!("'{}'", at.format("%Y-%m-%d %H:%M:%S%.6f")),
        }
    }

    fn connector(&self, entities: &str) -> SqlConnector {
        let text = format!("url = {{ file = {:?} }}\n{entities}", self.dir.path().join("url"));
        let config: SqlConfig = toml::from_str(&text).unwrap_or_else(|error| panic!("{text}: {error}"));
        SqlConnector::new("staging", config).unwrap()
    }

    /// A stock table `(sku, location, available, updated_at)` with the given rows.
    async fn stock_table(&self, rows: &[(&str, &str, Option<f64>)]) -> String {
        let table = self.table("stock");
        self.exec(&format!(
            "CREATE TABLE {table} (sku varchar(60) NOT NULL, location varchar(40) NOT NULL, available numeric(12,3) NOT NULL, updated_at {} NULL, PRIMARY KEY (sku, location))",
            self.timestamp_type()
        ))
        .await;
        for (sku, available, at) in rows {
            let at = at.map(|at| self.at(at)).unwrap_or_else(|| "NULL".into());
            self.exec(&format!("INSERT INTO {table} VALUES ('{sku}', 'main', {available}, {at})")).await;
        }
        table
    }

    fn stock_connector(&self, table: &str) -> SqlConnector {
        self.connector(&format!(
            "[entities.stock_level]\ntable = {table:?}\nkey = [\"sku\", \"location\"]\nupdated_at = \"updated_at\"\n"
        ))
    }
}

fn base() -> chrono::DateTime<chrono::Utc> {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

async fn read_page(
    source: &SqlConnector,
    entity: EntityKind,
    checkpoint: &Checkpoint,
    page_size: usize,
) -> (Vec<SourceRecord>, Checkpoint, bool) {
    let page = source.read_page(&ReadRequest { entity, checkpoint, page_size }).await.unwrap();
    (page.records, page.checkpoint, page.done)
}

/// Reads pages until done: the records, the checkpoint after the last page, the page sizes.
async fn read_run(
    source: &SqlConnector,
    entity: EntityKind,
    checkpoint: &Checkpoint,
    page_size: usize,
) -> (Vec<SourceRecord>, Checkpoint, Vec<usize>) {
    let mut checkpoint = checkpoint.clone();
    let mut records = Vec::new();
    let mut sizes = Vec::new();
    for _ in 0..100 {
        let (page, next, done) = read_page(source, entity, &checkpoint, page_size).await;
        sizes.push(page.len());
        records.extend(page);
        checkpoint = next;
        if done {
            return (records, checkpoint, sizes);
        }
    }
    panic!("the read never finished");
}

fn ids(records: &[SourceRecord]) -> Vec<String> {
    records.iter().map(|record| record.source_id.clone()).collect()
}

fn available(records: &[SourceRecord], id: &str) -> Vec<String> {
    records
        .iter()
        .filter(|record| record.source_id == id)
        .map(|record| match record.content.as_ref().unwrap() {
            Record::StockLevel(stock) => stock.available.normalize().to_string(),
            other => panic!("not a stock level: {other:?}"),
        })
        .collect()
}

fn record(value: serde_json::Value) -> Record {
    serde_json::from_value(value).unwrap()
}

fn batch(entity: EntityKind, records: Vec<Record>) -> WriteBatch {
    let items = records
        .into_iter()
        .map(|record| WriteItem { target_id: None, natural_key: record.natural_key().unwrap(), record })
        .collect();
    WriteBatch { entity, batch_id: "test".into(), items }
}

// ---------------------------------------------------------------------------------------------
// Scenarios, each run on both databases.

async fn full_read_in_pages(db: TestDb) {
    let rows: Vec<(String, String, Option<f64>)> =
        (1..=7).map(|i| (format!("S{i}"), format!("{i}"), Some(i as f64))).collect();
    let mut rows: Vec<(&str, &str, Option<f64>)> = rows.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), *c)).collect();
    rows.push(("N1", "3", None));
    let table = db.stock_table(&rows).await;
    let source = db.stock_connector(&table);

    let (records, checkpoint, sizes) = read_run(&source, EntityKind::StockLevel, &Checkpoint::default(), 3).await;
    // The row without a timestamp comes first (the first scan only), then by (updated_at, key).
    assert_eq!(ids(&records), ["N1@main", "S1@main", "S2@main", "S3@main", "S4@main", "S5@main", "S6@main", "S7@main"]);
    assert_eq!(sizes, [1, 3, 3, 1]);
    assert!(records.iter().all(|record| record.content.is_ok()), "{records:?}");
    assert_eq!(checkpoint.watermark, Some(base() + chrono::TimeDelta::seconds(7)));
    assert!(checkpoint.cursor.as_deref().unwrap().starts_with(r#"{"v":1,"state":"caught_up""#), "{checkpoint:?}");
    assert!(records[1].origin.as_deref().unwrap().contains("sku=S1, location=main"), "{:?}", records[1].origin);

    // The next run re-reads only the overlap (5 s before the watermark), never the NULL row.
    let (again, _, _) = read_run(&source, EntityKind::StockLevel, &checkpoint, 3).await;
    assert_eq!(ids(&again), ["S2@main", "S3@main", "S4@main", "S5@main", "S6@main", "S7@main"]);
    db.drop_tables().await;
}

async fn incremental_after_updates(db: TestDb) {
    let table = db.stock_table(&[("S1", "1", Some(60.0)), ("S2", "2", Some(120.0)), ("S3", "3", Some(180.0))]).await;
    let source = db.stock_connector(&table);
    let (first, checkpoint, _) = read_run(&source, EntityKind::StockLevel, &Checkpoint::default(), 10).await;
    assert_eq!(ids(&first), ["S1@main", "S2@main", "S3@main"]);

    let (unchanged, checkpoint, _) = read_run(&source, EntityKind::StockLevel, &checkpoint, 10).await;
    assert_eq!(ids(&unchanged), ["S3@main"], "only the overlap is read again");

    db.exec(&format!("UPDATE {table} SET available = 99, updated_at = {} WHERE sku = 'S1'", db.at(240.0))).await;
    db.exec(&format!("INSERT INTO {table} VALUES ('S4', 'main', 4, {})", db.at(300.0))).await;
    let (changed, checkpoint, _) = read_run(&source, EntityKind::StockLevel, &checkpoint, 10).await;
    assert_eq!(ids(&changed), ["S3@main", "S1@main", "S4@main"]);
    assert_eq!(available(&changed, "S1@main"), ["99"]);
    assert_eq!(checkpoint.watermark, Some(base() + chrono::TimeDelta::seconds(300)));
    db.drop_tables().await;
}

async fn same_timestamp_at_a_page_boundary(db: TestDb) {
    let table = db
        .stock_table(&[
            ("S1", "1", Some(1.0)),
            ("S2", "2", Some(2.0)),
            ("S3", "3", Some(2.0)),
            ("S4", "4", Some(3.0)),
            ("S5", "5", Some(3.0)),
        ])
        .await;
    let source = db.stock_connector(&table);
    // Pages of 2: S2|S3 share a timestamp across the first boundary, S4|S5 across the second.
    let (records, _, sizes) = read_run(&source, EntityKind::StockLevel, &Checkpoint::default(), 2).await;
    assert_eq!(ids(&records), ["S1@main", "S2@main", "S3@main", "S4@main", "S5@main"]);
    assert_eq!(sizes, [2, 2, 1]);
    db.drop_tables().await;
}

async fn row_updated_during_a_scan(db: TestDb) {
    let rows: Vec<(String, String, Option<f64>)> =
        (1..=6).map(|i| (format!("S{i}"), format!("{i}"), Some(i as f64))).collect();
    let rows: Vec<(&str, &str, Option<f64>)> = rows.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), *c)).collect();
    let table = db.stock_table(&rows).await;
    let source = db.stock_connector(&table);

    let mut checkpoint = Checkpoint::default();
    let mut first_run = Vec::new();
    for _ in 0..2 {
        let (page, next, done) = read_page(&source, EntityKind::StockLevel, &checkpoint, 2).await;
        assert!(!done);
        first_run.extend(page);
        checkpoint = next;
    }
    assert_eq!(ids(&first_run), ["S1@main", "S2@main", "S3@main", "S4@main"]);
    // S1 changes after its page was read, stamped after the scan's position: this scan reads it
    // again. S2 changes too, but its transaction was stamped before the scan's position (a
    // late commit): the next run's overlap must find it.
    db.exec(&format!("UPDATE {table} SET available = 11, updated_at = {} WHERE sku = 'S1'", db.at(7.0))).await;
    db.exec(&format!("UPDATE {table} SET available = 22, updated_at = {} WHERE sku = 'S2'", db.at(3.5))).await;
    let (rest, checkpoint, _) = read_run(&source, EntityKind::StockLevel, &checkpoint, 2).await;
    first_run.extend(rest);
    assert_eq!(ids(&first_run), ["S1@main", "S2@main", "S3@main", "S4@main", "S5@main", "S6@main", "S1@main"]);
    assert_eq!(available(&first_run, "S1@main"), ["1", "11"]);
    assert_eq!(available(&first_run, "S2@main"), ["2"]);

    let (next_run, _, _) = read_run(&source, EntityKind::StockLevel, &checkpoint, 2).await;
    assert_eq!(
        available(&next_run, "S2@main"),
        ["22"],
        "the late change is read by the next run: {:?}",
        ids(&next_run)
    );
    db.drop_tables().await;
}

fn product(code: &str, title: &str, variants: &[(&str, &str)]) -> Record {
    let variants: Vec<serde_json::Value> = variants
        .iter()
        .map(|(sku, price)| json!({"sku": sku, "price": {"amount": price, "currency": "EUR"}}))
        .collect();
    record(json!({"entity": "product", "code": code, "title": title, "variants": variants}))
}

async fn upsert_creates_then_updates_and_lookup_finds(db: TestDb) {
    let table = db.table("products");
    // PostgreSQL: a naive `timestamp` here (UTC), the zone-aware one in the stock tests.
    let timestamp = if db.kind == Kind::Postgres { "timestamp" } else { "DATETIME(6)" };
    db.exec(&format!(
        "CREATE TABLE {table} (code varchar(40) NOT NULL, item_no varchar(40) NOT NULL, name varchar(200), price numeric(12,2), currency char(3), changed_at {timestamp} NULL, PRIMARY KEY (code, item_no))"
    ))
    .await;
    let connector = db.connector(&format!(
        "[entities.product]\ntable = {table:?}\nkey = [\"code\", \"item_no\"]\nupdated_at = \"changed_at\"\ncolumns = {{ item_no = \"sku\", name = \"title\", changed_at = \"updated_at\" }}\n"
    ));

    let first = product("P1", "Chair", &[("P1-A", "10.00"), ("P1-B", "12.50")]);
    let outcomes = connector.write_batch(&batch(EntityKind::Product, vec![first.clone()])).await.unwrap();
    assert!(matches!(&outcomes[..], [WriteOutcome::Created { target_id }] if target_id == "P1"), "{outcomes:?}");

    let (read, _, _) = read_run(&connector, EntityKind::Product, &Checkpoint::default(), 10).await;
    assert_eq!(ids(&read), ["P1"]);
    let Ok(Record::Product(read_product)) = &read[0].content else { panic!("{read:?}") };
    let Record::Product(written) = &first else { unreachable!() };
    assert_eq!(read_product.variants, written.variants);
    assert_eq!(read_product.title, "Chair");
    assert!(read_product.updated_at.is_some(), "the sink stamps the change column");

    // The second write changes the title and drops a variant: its row goes too.
    let second = product("P1", "Armchair", &[("P1-A", "11.00")]);
    let outcomes = connector.write_batch(&batch(EntityKind::Product, vec![second])).await.unwrap();
    assert!(matches!(&outcomes[..], [WriteOutcome::Updated { target_id }] if target_id == "P1"), "{outcomes:?}");
    assert_eq!(
        db.column(&format!("SELECT CONCAT(item_no, ' ', name, ' ', price) FROM {table}")).await,
        ["P1-A Armchair 11.00"]
    );

    let found = connector.lookup(EntityKind::Product, &["P1".into(), "P2".into()]).await.unwrap();
    assert_eq!(found, [Some("P1".to_string()), None]);
    db.drop_tables().await;
}

async fn a_bad_row_fails_alone(db: TestDb) {
    let table = db.table("customers");
    db.exec(&format!(
        "CREATE TABLE {table} (number varchar(20) NOT NULL PRIMARY KEY, email varchar(100) CHECK (email LIKE '%@%'), first_name varchar(10), updated_at {} NULL)",
        db.timestamp_type()
    ))
    .await;
    let connector = db
        .connector(&format!("[entities.customer]\ntable = {table:?}\nkey = \"number\"\nupdated_at = \"updated_at\"\n"));
    let customer = |number: &str, email: &str, first_name: &str| {
        record(json!({"entity": "customer", "number": number, "email": email, "first_name": first_name}))
    };
    let records = vec![
        customer("C1", "one@example.com", "Ann"),
        customer("C2", "not-an-address", "Bob"),
        customer("C3", "three@example.com", "Bartholomew-Maximilian"),
        customer("C4", "four@example.com", "Dee"),
    ];
    let outcomes = connector.write_batch(&batch(EntityKind::Customer, records)).await.unwrap();
    assert!(matches!(&outcomes[0], WriteOutcome::Created { target_id } if target_id == "C1"), "{outcomes:?}");
    assert!(matches!(&outcomes[3], WriteOutcome::Created { target_id } if target_id == "C4"), "{outcomes:?}");
    let WriteOutcome::Failed(refused) = &outcomes[1] else { panic!("{outcomes:?}") };
    assert_eq!(refused.kind, ErrorKind::InvalidRequest);
    assert!(!refused.retryable);
    assert!(refused.to_string().contains("email"), "the column is named: {refused}");
    let WriteOutcome::Failed(too_long) = &outcomes[2] else { panic!("{outcomes:?}") };
    assert_eq!(too_long.kind, ErrorKind::InvalidRequest);
    assert!(too_long.to_string().contains("first_name"), "the column is named: {too_long}");
    assert_eq!(db.column(&format!("SELECT number FROM {table} ORDER BY number")).await, ["C1", "C4"]);
    db.drop_tables().await;
}

async fn identifiers_are_checked_and_values_bound(db: TestDb) {
    let text = format!(
        "url = {{ file = {:?} }}\n[entities.stock_level]\ntable = \"stock\\\"; DROP TABLE x; --\"\nkey = [\"sku\", \"location`\"]\nupdated_at = \"updated_at\"\n",
        db.dir.path().join("url")
    );
    let config: SqlConfig = toml::from_str(&text).unwrap();
    let fields: Vec<String> = config.validate().into_iter().map(|(field, _)| field).collect();
    assert_eq!(fields, ["entities.stock_level.table", "entities.stock_level.key"]);
    let error = SqlConnector::new("staging", config).unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidRequest);

    // Values are bound, never spliced: a quote in the data is data.
    let table = db.stock_table(&[]).await;
    let connector = db.stock_connector(&table);
    let sku = "x'); DROP TABLE students; --";
    let stock = record(json!({"entity": "stock_level", "sku": sku, "location": "main", "available": "3"}));
    let outcomes = connector.write_batch(&batch(EntityKind::StockLevel, vec![stock])).await.unwrap();
    assert!(matches!(&outcomes[..], [WriteOutcome::Created { .. }]), "{outcomes:?}");
    let (records, _, _) = read_run(&connector, EntityKind::StockLevel, &Checkpoint::default(), 10).await;
    assert_eq!(ids(&records), [format!("{sku}@main")]);
    let found = connector.lookup(EntityKind::StockLevel, &[format!("{sku}@main"), "y@main".into()]).await.unwrap();
    assert_eq!(found, [Some(format!("{sku}@main")), None]);
    db.drop_tables().await;
}

async fn json_column_with_a_version(db: TestDb) {
    let table = db.table("documents");
    let json_type = if db.kind == Kind::Postgres { "jsonb" } else { "JSON" };
    db.exec(&format!(
        "CREATE TABLE {table} (natural_key varchar(100) NOT NULL PRIMARY KEY, doc {json_type} NOT NULL, version bigint NULL)"
    ))
    .await;
    let connector = db.connector(&format!(
        "[entities.customer]\ntable = {table:?}\nkey = \"natural_key\"\njson_column = \"doc\"\nversion = \"version\"\n"
    ));
    let ann = record(json!({"entity": "customer", "number": "C1", "email": "ann@example.com", "extra": {"score": 3}}));
    let bob = record(json!({"entity": "customer", "email": "Bob@Example.com", "first_name": "Bob"}));
    let outcomes = connector.write_batch(&batch(EntityKind::Customer, vec![ann.clone(), bob.clone()])).await.unwrap();
    assert!(
        matches!(&outcomes[..], [WriteOutcome::Created { .. }, WriteOutcome::Created { target_id }] if target_id == "bob@example.com"),
        "{outcomes:?}"
    );
    let (records, checkpoint, _) = read_run(&connector, EntityKind::Customer, &Checkpoint::default(), 10).await;
    let mut read: Vec<Record> = records.iter().map(|record| record.content.clone().unwrap()).collect();
    // Rows of the same version come in key order, which depends on the database's collation.
    read.sort_by_key(|record| record.natural_key());
    assert_eq!(read, [ann.clone(), bob]);

    let ann_again = record(json!({"entity": "customer", "number": "C1", "email": "ann@example.org"}));
    let outcomes = connector.write_batch(&batch(EntityKind::Customer, vec![ann_again.clone()])).await.unwrap();
    assert!(matches!(&outcomes[..], [WriteOutcome::Updated { .. }]), "{outcomes:?}");
    let version = if db.kind == Kind::Postgres { "version::text" } else { "CAST(version AS CHAR)" };
    assert_eq!(db.column(&format!("SELECT {version} FROM {table} WHERE natural_key = 'C1'")).await, ["2"]);
    // Versions count as the overlap: the next run re-reads the last 5 versions, so both rows.
    let (records, _, _) = read_run(&connector, EntityKind::Customer, &checkpoint, 10).await;
    assert_eq!(records.last().unwrap().content.as_ref().unwrap(), &ann_again);
    db.drop_tables().await;
}

async fn naive_timestamps_are_utc(db: TestDb) {
    let table = db.table("naive");
    // PostgreSQL `timestamp` and MariaDB `TIMESTAMP` carry no zone: erpsync takes them as UTC.
    let naive = if db.kind == Kind::Postgres { "timestamp(6)" } else { "TIMESTAMP(6)" };
    db.exec(&format!(
        "CREATE TABLE {table} (sku varchar(20) NOT NULL, location varchar(20) NOT NULL, available int NOT NULL, updated_at {naive} NULL, PRIMARY KEY (sku, location))"
    ))
    .await;
    db.exec(&format!("INSERT INTO {table} VALUES ('S1', 'main', 1, '2026-01-01 00:00:05.250000')")).await;
    let source = db.stock_connector(&table);
    let (records, checkpoint, _) = read_run(&source, EntityKind::StockLevel, &Checkpoint::default(), 10).await;
    let expected = base() + chrono::TimeDelta::milliseconds(5250);
    assert_eq!(records[0].content.as_ref().unwrap().updated_at(), Some(expected));
    assert_eq!(checkpoint.watermark, Some(expected));

    // Written back, the sink stamps the change column from the database's UTC clock.
    let stock = record(json!({"entity": "stock_level", "sku": "S2", "location": "main", "available": "2"}));
    let before = chrono::Utc::now() - chrono::TimeDelta::seconds(60);
    source.write_batch(&batch(EntityKind::StockLevel, vec![stock])).await.unwrap();
    let (records, _, _) = read_run(&source, EntityKind::StockLevel, &checkpoint, 10).await;
    let stamped = records.last().unwrap().content.as_ref().unwrap().updated_at().unwrap();
    assert!(stamped > before && stamped < chrono::Utc::now() + chrono::TimeDelta::seconds(60), "{stamped}");
    db.drop_tables().await;
}

macro_rules! on_both_databases {
    ($($scenario:ident,)*) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::TestDb::new(super::Kind::Postgres).await).await;
                }
            )*
        }
        mod mariadb {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::TestDb::new(super::Kind::MariaDb).await).await;
                }
            )*
        }
    };
}

on_both_databases! {
    full_read_in_pages,
    incremental_after_updates,
    same_timestamp_at_a_page_boundary,
    row_updated_during_a_scan,
    upsert_creates_then_updates_and_lookup_finds,
    a_bad_row_fails_alone,
    identifiers_are_checked_and_values_bound,
    json_column_with_a_version,
    naive_timestamps_are_utc,
}

#[test]
fn the_example_configuration_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/sql-staging.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let file: toml::Table = toml::from_str(&text).unwrap();
    let systems = file["systems"].as_table().unwrap();
    assert!(systems.contains_key("staging"));
    for (name, system) in systems {
        let config: erpsync_connectors::SystemConfig =
            system.clone().try_into().unwrap_or_else(|error| panic!("systems.{name}: {error}"));
        assert_eq!(config.validate(), Vec::<(String, String)>::new(), "systems.{name}");
    }
}
