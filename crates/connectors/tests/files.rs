//! Behaviour of the `files` connector through its public traits: round trips of every entity,
//! encodings and column mappings, paging, the ledger and checkpoints, bad rows, atomic writes.

use erpsync_connectors::files::{EntityFilesConfig, FileFormat, FilesConfig, FilesConnector};
use erpsync_connectors::{
    ErrorKind, ReadRequest, Sink, Source, SourcePage, SourceRecord, WriteBatch, WriteItem, WriteOutcome,
};
use erpsync_model::{Checkpoint, EntityKind, Record};
use serde_json::json;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

fn connector(folder: &Path, tweak: impl FnOnce(&mut FilesConfig)) -> FilesConnector {
    let mut config = FilesConfig::new(folder);
    tweak(&mut config);
    FilesConnector::new("erp", config).expect("valid configuration")
}

async fn read_page(
    connector: &FilesConnector,
    entity: EntityKind,
    checkpoint: &Checkpoint,
    page_size: usize,
) -> SourcePage {
    let request = ReadRequest { entity, checkpoint, page_size };
    Source::read_page(connector, &request).await.expect("page reads")
}

/// Reads pages until done; returns the records, the final checkpoint and the page sizes.
async fn read_all(
    connector: &FilesConnector,
    entity: EntityKind,
    checkpoint: &Checkpoint,
    page_size: usize,
) -> (Vec<SourceRecord>, Checkpoint, Vec<usize>) {
    let mut checkpoint = checkpoint.clone();
    let mut records = Vec::new();
    let mut pages = Vec::new();
    for _ in 0..1000 {
        let page = read_page(connector, entity, &checkpoint, page_size).await;
        pages.push(page.records.len());
        assert!(page.records.len() <= page_size, "a page holds at most page_size records");
        records.extend(page.records);
        checkpoint = page.checkpoint;
        if page.done {
            return (records, checkpoint, pages);
        }
    }
    panic!("the source never said done");
}

async fn write(
    connector: &FilesConnector,
    entity: EntityKind,
    batch_id: &str,
    records: &[Record],
) -> Vec<WriteOutcome> {
    let batch = WriteBatch {
        entity,
        batch_id: batch_id.to_string(),
        items: records
            .iter()
            .map(|record| WriteItem {
                target_id: None,
                natural_key: record.natural_key().unwrap_or_default(),
                record: record.clone(),
            })
            .collect(),
    };
    Sink::write_batch(connector, &batch).await.expect("batch writes")
}

fn records_of(records: &[SourceRecord]) -> Vec<Record> {
    records
        .iter()
        .map(|record| match &record.content {
            Ok(record) => record.clone(),
            Err(problem) => panic!("unexpected problem at {:?}: {problem:?}", record.origin),
        })
        .collect()
}

fn keys_of(records: &[SourceRecord]) -> Vec<String> {
    records.iter().filter(|record| record.content.is_ok()).map(|record| record.source_id.clone()).collect()
}

fn file_names(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(folder).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

fn record(value: serde_json::Value) -> Record {
    serde_json::from_value(value).expect("a valid canonical record")
}

/// One representative record or two per entity, using every field the CSV scheme carries,
/// including the cases that fall back to JSON columns.
fn representative_records() -> Vec<(EntityKind, Vec<Record>)> {
    vec![
        (
            EntityKind::Product,
            vec![
                record(json!({
                    "entity": "product", "code": "P-1", "title": "T-Shirt Größe",
                    "description": "Soft, \"organic\"\ncotton; 100 %", "status": "active", "vendor": "Acme",
                    "product_type": "Shirts", "tags": ["summer", "sale"], "categories": ["Men/Shirts", "Sale"],
                    "options": [{"name": "Size", "values": ["S", "M"]}, {"name": "Color", "values": ["Red"]}],
                    "variants": [
                        {"sku": "P-1-S", "title": "S / Red", "barcode": "4006381333931",
                         "options": [{"option": "Size", "value": "S"}, {"option": "Color", "value": "Red"}],
                         "price": {"amount": "19.90", "currency": "EUR"},
                         "compare_at_price": {"amount": "24.9", "currency": "EUR"},
                         "cost": {"amount": "7.5", "currency": "EUR"}, "price_includes_tax": true,
                         "weight": {"value": "0.2", "unit": "kg"}, "track_inventory": true,
                         "extra": {"pack": "6", "origin": {"country": "PT"}}},
                        {"sku": "P-1-M",
                         "options": [{"option": "Size", "value": "M"}, {"option": "Color", "value": "Red"}],
                         "price": {"amount": "19.9", "currency": "EUR"}, "price_includes_tax": true,
                         "track_inventory": true}
                    ],
                    "images": [{"url": "https://cdn.example/p1.jpg", "position": 0},
                               {"url": "https://cdn.example/p1b.jpg", "position": 1}],
                    "attributes": [{"name": "Material", "value": "Cotton"}, {"name": "Fit", "value": "Slim"}],
                    "tax_class": "standard", "updated_at": "2024-05-01T10:00:00Z",
                    "extra": {"erp_id": "4711", "rank": 3}
                })),
                // Images with alt texts, an unused option value and a repeated attribute name
                // do not fit the flat columns: they go to JSON columns.
                record(json!({
                    "entity": "product", "code": "P-2", "title": "Mug", "status": "draft",
                    "options": [{"name": "Size", "values": ["Small", "Large"]}],
                    "variants": [{"sku": "P-2-S", "options": [{"option": "Size", "value": "Small"}]}],
                    "images": [{"url": "https://cdn.example/mug.jpg", "alt": "A mug", "position": 1,
                                "variant_skus": ["P-2-S"]}],
                    "attributes": [{"name": "Note", "value": "a"}, {"name": "Note", "value": "b"}]
                })),
            ],
        ),
        (
            EntityKind::PriceList,
            vec![record(json!({
                "entity": "price_list", "code": "B2B-EUR", "name": "B2B Gold", "currency": "EUR",
                "customer_group": "gold", "prices_include_tax": false,
                "valid_from": "2024-01-01T00:00:00Z", "valid_to": "2024-12-31T23:59:59Z",
                "entries": [{"sku": "P-1-S", "min_quantity": "1", "price": "15"},
                            {"sku": "P-1-S", "min_quantity": "10", "price": "13.5"}],
                "updated_at": "2024-05-01T10:00:00Z", "extra": {"source": "erp"}
            }))],
        ),
        (
            EntityKind::StockLevel,
            vec![
                record(json!({
                    "entity": "stock_level", "sku": "P-1-S", "location": "WH-1", "available": "12.5",
                    "on_hand": "14", "updated_at": "2024-05-01T10:00:00.123456789Z", "extra": {"bin": "A-03"}
                })),
                record(json!({"entity": "stock_level", "sku": "P-1-M", "location": "WH-1", "available": "0"})),
            ],
        ),
        (
            EntityKind::Customer,
            vec![
                record(json!({
                    "entity": "customer", "number": "C-100", "email": "Anna@Example.com", "first_name": "Anna",
                    "last_name": "Müller", "company": "Müller GmbH", "phone": "+49 30 1234", "group": "gold",
                    "tax_number": "DE123456789", "accepts_marketing": true,
                    "addresses": [
                        {"kind": "billing", "first_name": "Anna", "last_name": "Müller", "line1": "Hauptstr. 1",
                         "line2": "2. OG", "city": "Berlin", "region": "BE", "postal_code": "10115",
                         "country": "DE", "phone": "+49 30 1", "is_default": true},
                        {"kind": "shipping", "line1": "Lager 5", "city": "Potsdam", "country": "DE"}
                    ],
                    "updated_at": "2024-05-01T10:00:00Z", "extra": {"vip": true, "segment": "B2B"}
                })),
                record(json!({"entity": "customer", "email": "bob@example.com"})),
            ],
        ),
        (
            EntityKind::Order,
            vec![record(json!({
                "entity": "order", "number": "1001", "placed_at": "2024-05-02T08:30:00Z",
                "updated_at": "2024-05-02T09:00:00Z", "currency": "EUR", "prices_include_tax": true,
                "rounding": "per_total",
                "customer": {"email": "anna@example.com", "number": "C-100", "first_name": "Anna",
                             "last_name": "Müller", "company": "Müller GmbH", "phone": "+49", "group": "gold"},
                "billing_address": {"kind": "billing", "line1": "Hauptstr. 1", "city": "Berlin",
                                    "postal_code": "10115", "country": "DE"},
                "shipping_address": {"kind": "shipping", "first_name": "Anna", "line1": "Lager 5",
                                     "city": "Potsdam", "country": "DE"},
                "lines": [
                    {"line_id": "L1", "sku": "P-1-S", "title": "T-Shirt S", "quantity": "2", "unit_price": "19.9",
                     "discount": "2", "tax_lines": [{"title": "VAT", "rate": "0.19", "amount": "5.99"}],
                     "total": "37.8", "extra": {"gift": "yes"}},
                    {"sku": "P-2-S", "title": "Mug", "quantity": "1", "unit_price": "9.5", "discount": "0",
                     "tax_lines": [{"title": "VAT", "rate": "0.07", "amount": "0.5"},
                                   {"title": "Eco", "rate": "0.01", "amount": "0.1"}],
                     "total": "9.5"}
                ],
                "discounts": [{"code": "SUMMER", "title": "Summer", "amount": "2"}],
                "shipping_lines": [{"method": "dhl", "title": "DHL Paket", "price": "4.9"}],
                "tax_lines": [{"title": "VAT", "rate": "0.19", "amount": "6.82"}],
                "totals": {"subtotal": "47.3", "discount_total": "2", "shipping_total": "4.9",
                           "tax_total": "6.82", "total": "52.2"},
                "payments": [{"gateway": "paypal", "method": "wallet", "amount": "52.2", "reference": "PP-1"}],
                "financial_status": "paid", "fulfillment_status": "partially_fulfilled",
                "cancellation": {"cancelled_at": "2024-05-03T00:00:00Z", "reason": "customer"},
                "note": "Bitte klingeln", "sales_channel": "web", "extra": {"utm": "mail"}
            }))],
        ),
        (
            EntityKind::OrderStatus,
            vec![record(json!({
                "entity": "order_status", "order_number": "1001", "state": "completed",
                "financial_status": "paid", "fulfillment_status": "fulfilled",
                "changed_at": "2024-05-04T12:00:00Z", "note": "done", "extra": {"by": "erp"}
            }))],
        ),
        (
            EntityKind::Shipment,
            vec![
                record(json!({
                    "entity": "shipment", "number": "S-1", "order_number": "1001",
                    "shipped_at": "2024-05-03T15:00:00Z", "location": "WH-1",
                    "lines": [{"sku": "P-1-S", "quantity": "2"}, {"sku": "P-2-S", "quantity": "1"}],
                    "tracking": [{"carrier": "DHL", "number": "003404", "url": "https://dhl.example/003404"}],
                    "notify_customer": true
                })),
                record(json!({
                    "entity": "shipment", "number": "S-2", "order_number": "1002",
                    "tracking": [{"carrier": "DHL", "number": "1"}, {"carrier": "UPS", "number": "2"}]
                })),
            ],
        ),
        (
            EntityKind::Document,
            vec![
                record(json!({
                    "entity": "document", "kind": "invoice", "number": "INV-1", "order_number": "1001",
                    "issued_at": "2024-05-03T00:00:00Z", "currency": "EUR",
                    "lines": [{"sku": "P-1-S", "title": "T-Shirt", "quantity": "2", "unit_price": "19.9", "total": "39.8"},
                              {"title": "Shipping", "quantity": "1", "unit_price": "4.9", "total": "4.9"}],
                    "totals": {"subtotal": "44.7", "discount_total": "0", "shipping_total": "4.9",
                               "tax_total": "7.14", "total": "44.7"},
                    "pdf": {"base64": {"data": "JVBERi0xLjQKJcOkw7zDtsOfCg==", "file_name": "INV-1.pdf"}}
                })),
                record(json!({
                    "entity": "document", "kind": "credit_note", "number": "CN-1", "currency": "CHF",
                    "pdf": {"url": {"url": "https://erp.example/cn-1.pdf"}}
                })),
            ],
        ),
        (
            EntityKind::Refund,
            vec![record(json!({
                "entity": "refund", "number": "R-1", "order_number": "1001", "refunded_at": "2024-05-05T00:00:00Z",
                "currency": "EUR", "amount": "19.9", "shipping_amount": "0", "reason": "size",
                "lines": [{"sku": "P-1-S", "quantity": "1", "amount": "19.9", "restock": true}]
            }))],
        ),
    ]
}

/// Writes every entity with the sink, reads it back with the source, expects equal records.
async fn check_round_trip(tweak: impl Fn(&mut FilesConfig)) {
    let folder = tempfile::tempdir().unwrap();
    let connector = connector(folder.path(), &tweak);
    for (entity, records) in representative_records() {
        for record in &records {
            record.validate().unwrap_or_else(|errors| panic!("fixture {entity} is invalid: {errors}"));
        }
        let outcomes = write(&connector, entity, "run-1_page-1", &records).await;
        for (outcome, record) in outcomes.iter().zip(&records) {
            match outcome {
                WriteOutcome::Created { target_id } => assert_eq!(Some(target_id), record.natural_key().as_ref()),
                other => panic!("{entity}: expected created, got {other:?}"),
            }
        }
        let (read, _, _) = read_all(&connector, entity, &Checkpoint::default(), 100).await;
        let read_records = records_of(&read);
        assert_eq!(read_records.len(), records.len(), "{entity}");
        for (read_record, written) in read_records.iter().zip(&records) {
            assert_eq!(read_record, written, "{entity} changed on the way through the file");
        }
        for (source_record, written) in read.iter().zip(&records) {
            assert_eq!(Some(&source_record.source_id), written.natural_key().as_ref());
        }
    }
}

#[tokio::test]
async fn every_entity_round_trips_through_csv() {
    check_round_trip(|_| {}).await;
}

#[tokio::test]
async fn every_entity_round_trips_through_csv_with_semicolons_decimal_commas_and_windows_1252() {
    check_round_trip(|config| {
        config.delimiter = ";".into();
        config.decimal_separator = ",".into();
        config.encoding = "windows-1252".into();
    })
    .await;
}

#[tokio::test]
async fn every_entity_round_trips_through_json_lines() {
    check_round_trip(|config| config.format = FileFormat::Jsonl).await;
}

#[tokio::test]
async fn every_entity_round_trips_with_renamed_columns_prefixes_and_patterns() {
    check_round_trip(|config| {
        let product_columns = [("Artikelnummer", "sku"), ("Bezeichnung", "title"), ("Preis", "price")];
        let stock_columns = [("Artikelnummer", "sku"), ("Lager", "location"), ("Bestand", "available")];
        for (entity, columns) in [("product", &product_columns), ("stock_level", &stock_columns)] {
            config.entities.insert(
                entity.into(),
                EntityFilesConfig {
                    columns: columns.iter().map(|(header, column)| (header.to_string(), column.to_string())).collect(),
                    file_prefix: Some("out-".into()),
                    pattern: Some(format!("OUT-{entity}-*.csv")),
                },
            );
        }
    })
    .await;
}

#[tokio::test]
async fn windows_1252_with_semicolons_and_a_column_mapping_reads_right() {
    let folder = tempfile::tempdir().unwrap();
    let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(
        "Artikelnummer;Bezeichnung;Preis;Währung;Lagerort\r\n\
         A-1;Größe Übergröße;12,50;EUR;Köln\r\n\
         A-2;\"Socken; gestreift\";3;EUR;\r\n",
    );
    fs::write(folder.path().join("Artikel_2024.CSV"), &bytes).unwrap();
    let connector = connector(folder.path(), |config| {
        config.delimiter = ";".into();
        config.encoding = "windows-1252".into();
        config.decimal_separator = ",".into();
        config.entities.insert(
            "product".into(),
            EntityFilesConfig {
                pattern: Some("artikel*.csv".into()),
                columns: BTreeMap::from([
                    ("Artikelnummer".to_string(), "sku".to_string()),
                    ("Bezeichnung".to_string(), "title".to_string()),
                    ("Preis".to_string(), "price".to_string()),
                    ("Währung".to_string(), "currency".to_string()),
                ]),
                file_prefix: None,
            },
        );
    });
    let (read, _, _) = read_all(&connector, EntityKind::Product, &Checkpoint::default(), 10).await;
    let expected = [
        record(json!({
            "entity": "product", "code": "A-1", "title": "Größe Übergröße",
            "variants": [{"sku": "A-1", "price": {"amount": "12.5", "currency": "EUR"}}],
            "extra": {"Lagerort": "Köln"}
        })),
        record(json!({
            "entity": "product", "code": "A-2", "title": "Socken; gestreift",
            "variants": [{"sku": "A-2", "price": {"amount": "3", "currency": "EUR"}}]
        })),
    ];
    assert_eq!(records_of(&read), expected);
    assert_eq!(read[0].origin.as_deref(), Some("Artikel_2024.CSV: row 2"));
}

#[tokio::test]
async fn writing_windows_1252_fails_only_the_record_with_characters_it_lacks() {
    let folder = tempfile::tempdir().unwrap();
    let connector = connector(folder.path(), |config| {
        config.delimiter = ";".into();
        config.encoding = "windows-1252".into();
        config.entities.insert(
            "product".into(),
            EntityFilesConfig {
                columns: BTreeMap::from([("Artikelnummer".to_string(), "sku".to_string())]),
                ..EntityFilesConfig::default()
            },
        );
    });
    let records = [
        record(json!({"entity": "product", "code": "A-1", "title": "Größe", "variants": [{"sku": "A-1"}]})),
        record(json!({"entity": "product", "code": "A-2", "title": "Ωmega", "variants": [{"sku": "A-2"}]})),
    ];
    let outcomes = write(&connector, EntityKind::Product, "b1", &records).await;
    assert!(matches!(&outcomes[0], WriteOutcome::Created { target_id } if target_id == "A-1"));
    match &outcomes[1] {
        WriteOutcome::Failed(error) => {
            assert_eq!(error.kind, ErrorKind::InvalidRequest);
            assert!(error.to_string().contains("column \"title\""), "{error}");
            assert!(error.to_string().contains("windows-1252"), "{error}");
            assert!(error.to_string().starts_with("writing product to files \"erp\""), "{error}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    let bytes = fs::read(folder.path().join("product-b1.csv")).unwrap();
    assert!(bytes.starts_with(b"code;Artikelnummer;title;"), "{}", String::from_utf8_lossy(&bytes));
    assert!(bytes.windows(6).any(|window| window == b"Gr\xF6\xDFe;"), "umlauts in windows-1252");
    assert!(!bytes.windows(3).any(|window| window == b"A-2"));
}

/// A products file of 4 products with 3, 2, 1 and 3 rows.
const GROUPED_PRODUCTS: &str = "\
code,sku,title,price,currency
P1,P1-S,Shirt,10,EUR
P1,P1-M,Shirt,10,EUR
P1,P1-L,Shirt,11,EUR
P2,P2-A,Pants,20,EUR
P2,P2-B,Pants,20,EUR
,P3,Cap,5,EUR
P4,P4-1,Sock,1,EUR
P4,P4-2,Sock,1,EUR
P4,P4-3,Sock,1,EUR
";

fn variant_counts(records: &[SourceRecord]) -> Vec<(String, usize)> {
    records_of(records)
        .into_iter()
        .map(|record| match record {
            Record::Product(product) => (product.code, product.variants.len()),
            other => panic!("not a product: {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn paging_never_splits_the_rows_of_one_product() {
    let folder = tempfile::tempdir().unwrap();
    fs::write(folder.path().join("products.csv"), GROUPED_PRODUCTS).unwrap();
    let connector = connector(folder.path(), |_| {});
    let expected = vec![("P1".to_string(), 3), ("P2".to_string(), 2), ("P3".to_string(), 1), ("P4".to_string(), 3)];
    for (page_size, expected_pages) in [(1, vec![1, 1, 1, 1]), (2, vec![2, 2]), (3, vec![3, 1]), (10, vec![4])] {
        let (read, _, pages) = read_all(&connector, EntityKind::Product, &Checkpoint::default(), page_size).await;
        assert_eq!(variant_counts(&read), expected, "page size {page_size}");
        assert_eq!(pages, expected_pages, "page size {page_size}");
        let origins: Vec<&str> = read.iter().map(|record| record.origin.as_deref().unwrap()).collect();
        assert_eq!(
            origins,
            ["products.csv: row 2", "products.csv: row 5", "products.csv: row 7", "products.csv: row 8"]
        );
    }
}

#[tokio::test]
async fn a_new_connector_continues_exactly_where_the_checkpoint_stopped() {
    let folder = tempfile::tempdir().unwrap();
    fs::write(folder.path().join("products-1.csv"), GROUPED_PRODUCTS).unwrap();
    fs::write(folder.path().join("products-2.csv"), "sku,title\nQ1,One\nQ2,Two\n").unwrap();
    let first = connector(folder.path(), |_| {});
    let page = read_page(&first, EntityKind::Product, &Checkpoint::default(), 3).await;
    assert!(!page.done);
    assert_eq!(keys_of(&page.records), ["P1", "P2", "P3"]);
    let cursor: serde_json::Value = serde_json::from_str(page.checkpoint.cursor.as_deref().unwrap()).unwrap();
    assert_eq!(cursor["current"]["file"], "products-1.csv");
    assert_eq!(cursor["current"]["row"], 8);

    let second = connector(folder.path(), |_| {});
    let (rest, _, _) = read_all(&second, EntityKind::Product, &page.checkpoint, 3).await;
    assert_eq!(keys_of(&rest), ["P4", "Q1", "Q2"]);
    assert_eq!(rest[1].origin.as_deref(), Some("products-2.csv: row 2"));
}

#[tokio::test]
async fn the_ledger_skips_read_files_rereads_changed_ones_and_forgets_removed_ones() {
    let folder = tempfile::tempdir().unwrap();
    let connector = connector(folder.path(), |_| {});
    fs::write(folder.path().join("stock-1.csv"), "sku,location,available\nA,WH,1\nB,WH,2\n").unwrap();
    fs::write(folder.path().join("stock_level-1.csv"), "sku,location,available\nA,WH,1\nB,WH,2\n").unwrap();
    let (read, checkpoint, _) = read_all(&connector, EntityKind::StockLevel, &Checkpoint::default(), 100).await;
    assert_eq!(keys_of(&read), ["A@WH", "B@WH"], "only stock_level*.csv files belong to stock levels");

    let (again, checkpoint, _) = read_all(&connector, EntityKind::StockLevel, &checkpoint, 100).await;
    assert!(again.is_empty(), "a read file is not read again");

    fs::write(folder.path().join("stock_level-0.csv"), "sku,location,available\nC,WH,3\n").unwrap();
    let (new, checkpoint, _) = read_all(&connector, EntityKind::StockLevel, &checkpoint, 100).await;
    assert_eq!(keys_of(&new), ["C@WH"], "a new file is read, whatever its name sorts as");

    fs::write(folder.path().join("stock_level-1.csv"), "sku,location,available\nA,WH,7\nB,WH,2\nD,WH,4\n").unwrap();
    let (changed, checkpoint, _) = read_all(&connector, EntityKind::StockLevel, &checkpoint, 100).await;
    assert_eq!(keys_of(&changed), ["A@WH", "B@WH", "D@WH"], "a changed file is read again from the start");
    assert_ne!(changed[0].origin_group, read[0].origin_group, "a new fingerprint is a new origin group");

    fs::remove_file(folder.path().join("stock_level-0.csv")).unwrap();
    let (_, checkpoint, _) = read_all(&connector, EntityKind::StockLevel, &checkpoint, 100).await;
    let cursor = checkpoint.cursor.unwrap();
    assert!(!cursor.contains("stock_level-0.csv"), "{cursor}");
    assert!(cursor.contains("stock_level-1.csv"), "{cursor}");
}

#[tokio::test]
async fn a_file_that_changes_between_pages_is_read_again_from_the_start() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("products.csv");
    fs::write(&path, GROUPED_PRODUCTS).unwrap();
    let connector = connector(folder.path(), |_| {});
    let page = read_page(&connector, EntityKind::Product, &Checkpoint::default(), 2).await;
    assert_eq!(keys_of(&page.records), ["P1", "P2"]);
    fs::write(&path, "sku,title\nX1,New\nX2,Newer\nX3,Newest\n").unwrap();
    let (rest, _, _) = read_all(&connector, EntityKind::Product, &page.checkpoint, 2).await;
    assert_eq!(keys_of(&rest), ["X1", "X2", "X3"]);
}

#[tokio::test]
async fn files_younger_than_min_age_wait_for_a_later_run() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("products.csv");
    fs::write(&path, "sku,title\nA1,Fresh\n").unwrap();
    let connector = connector(folder.path(), |config| config.min_age_seconds = 600);
    let (read, checkpoint, _) = read_all(&connector, EntityKind::Product, &Checkpoint::default(), 10).await;
    assert!(read.is_empty(), "a file written just now may still be uploading");

    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    fs::File::options().write(true).open(&path).unwrap().set_modified(an_hour_ago).unwrap();
    let (read, _, _) = read_all(&connector, EntityKind::Product, &checkpoint, 10).await;
    assert_eq!(keys_of(&read), ["A1"]);
}

/// One bad row among good ones: exactly one problem, at the right row, for the right reason.
struct BadRowCase {
    name: &'static str,
    entity: EntityKind,
    file: &'static str,
    content: &'static [u8],
    good: &'static [&'static str],
    origin: &'static str,
    kind: &'static str,
    message: &'static str,
}

const BAD_ROW_CASES: &[BadRowCase] = &[
    BadRowCase {
        name: "malformed row",
        entity: EntityKind::Product,
        file: "products.csv",
        content: b"sku,title,price,currency\nA1,Shirt,10,EUR\nA2,Pants,12,EUR,oops\nA3,Cap,5,EUR\n",
        good: &["A1", "A3"],
        origin: "products.csv: row 3",
        kind: "parse",
        message: "has 5 fields but the header has 4",
    },
    BadRowCase {
        name: "missing sku",
        entity: EntityKind::Product,
        file: "products.csv",
        content: b"sku,title,price,currency\nA1,Shirt,10,EUR\n,Pants,12,EUR\nA3,Cap,5,EUR\n",
        good: &["A1", "A3"],
        origin: "products.csv: row 3",
        kind: "validation",
        message: "invalid product: variants[0].sku: is required",
    },
    BadRowCase {
        name: "unknown currency",
        entity: EntityKind::Product,
        file: "products.csv",
        content: b"sku,title,price,currency\nA1,Shirt,10,EUR\nA2,Pants,12,EUX\nA3,Cap,5,EUR\n",
        good: &["A1", "A3"],
        origin: "products.csv: row 3",
        kind: "parse",
        message: "column \"currency\": unknown currency \"EUX\"",
    },
    BadRowCase {
        name: "not a number",
        entity: EntityKind::Product,
        file: "products.csv",
        content: b"sku,title,price,currency\nA1,Shirt,10,EUR\nA2,Pants,\"12,5x\",EUR\nA3,Cap,5,EUR\n",
        good: &["A1", "A3"],
        origin: "products.csv: row 3",
        kind: "parse",
        message: "column \"price\": \"12,5x\" is not a decimal number",
    },
    BadRowCase {
        name: "negative stock",
        entity: EntityKind::StockLevel,
        file: "stock_level.csv",
        content: b"sku,location,available\nA1,WH,5\nA2,WH,-3\nA3,WH,1\n",
        good: &["A1@WH", "A3@WH"],
        origin: "stock_level.csv: row 3",
        kind: "validation",
        message: "invalid stock level: available: must not be negative, found -3",
    },
    BadRowCase {
        name: "duplicate sku",
        entity: EntityKind::Product,
        file: "products.csv",
        content: b"sku,title,price,currency\nA1,Shirt,10,EUR\nA2,Pants,12,EUR\nA1,Shirt again,10,EUR\n",
        good: &["A1", "A2"],
        origin: "products.csv: row 4",
        kind: "duplicate",
        message: "duplicate sku \"A1\": already in row 2 of this file",
    },
    BadRowCase {
        name: "a sku in two products",
        entity: EntityKind::Product,
        file: "products.csv",
        content: b"code,sku,title\nP1,S1,One\nP1,S2,One\nP2,S3,Two\nP2,S1,Two\nP3,S4,Three\n",
        good: &["P1", "P3"],
        origin: "products.csv: row 4",
        kind: "duplicate",
        message: "duplicate sku \"S1\": already in row 2 of this file",
    },
    BadRowCase {
        name: "a bad row inside a product",
        entity: EntityKind::Product,
        file: "products.csv",
        content: b"code,sku,price,currency\nP1,S1,1,EUR\nP1,S2,-1,EUR\nP2,S3,2,EUR\n",
        good: &["P2"],
        origin: "products.csv: row 2",
        kind: "validation",
        message: "invalid product: variants[1].price: must not be negative, found -1",
    },
    BadRowCase {
        name: "a bad cell in the second row of a product",
        entity: EntityKind::Product,
        file: "products.csv",
        content: b"code,sku,price,currency\nP1,S1,1,EUR\nP1,S2,abc,EUR\nP2,S3,2,EUR\n",
        good: &["P2"],
        origin: "products.csv: row 2",
        kind: "parse",
        message: "row 3: column \"price\": \"abc\" is not a decimal number",
    },
    BadRowCase {
        name: "invalid utf-8",
        entity: EntityKind::Product,
        file: "products.csv",
        content: b"sku,title\nA1,Shirt\nA2,Gr\xF6\xDFe\nA3,Cap\n",
        good: &["A1", "A3"],
        origin: "products.csv: row 3",
        kind: "encoding",
        message: "column \"title\": not valid utf-8",
    },
    BadRowCase {
        name: "a missing required column",
        entity: EntityKind::StockLevel,
        file: "stock_level.csv",
        content: b"sku,available\nA1,5\n",
        good: &[],
        origin: "stock_level.csv: row 1",
        kind: "parse",
        message: "the header has no column \"location\"",
    },
    BadRowCase {
        name: "a bad json line",
        entity: EntityKind::Product,
        file: "products.jsonl",
        content: b"{\"code\": \"A1\", \"variants\": [{\"sku\": \"A1\"}]}\n\n{\"code\": \"A2\", \n{\"entity\": \"product\", \"code\": \"A3\", \"variants\": [{\"sku\": \"A3\"}]}\n",
        good: &["A1", "A3"],
        origin: "products.jsonl: line 3",
        kind: "parse",
        message: "not valid JSON",
    },
    BadRowCase {
        name: "a json line of another entity",
        entity: EntityKind::Product,
        file: "products.jsonl",
        content: b"{\"code\": \"A1\", \"variants\": [{\"sku\": \"A1\"}]}\n{\"entity\": \"order\", \"number\": \"1\"}\n",
        good: &["A1"],
        origin: "products.jsonl: line 2",
        kind: "parse",
        message: "\"entity\" is \"order\", but this file holds product records",
    },
    BadRowCase {
        name: "an unknown currency in json",
        entity: EntityKind::Product,
        file: "products.jsonl",
        content: b"{\"code\": \"A1\", \"variants\": [{\"sku\": \"A1\", \"price\": {\"amount\": \"1\", \"currency\": \"EUX\"}}]}\n{\"code\": \"A2\", \"variants\": [{\"sku\": \"A2\"}]}\n",
        good: &["A2"],
        origin: "products.jsonl: line 1",
        kind: "parse",
        message: "unknown currency \"EUX\"",
    },
];

#[tokio::test]
async fn each_bad_row_is_one_problem_naming_file_row_and_reason_and_good_rows_still_sync() {
    for case in BAD_ROW_CASES {
        let folder = tempfile::tempdir().unwrap();
        fs::write(folder.path().join(case.file), case.content).unwrap();
        let connector = connector(folder.path(), |config| {
            if case.file.ends_with(".jsonl") {
                config.format = FileFormat::Jsonl;
            }
        });
        // Page size 1: duplicate detection must hold across pages too.
        let (read, _, _) = read_all(&connector, case.entity, &Checkpoint::default(), 1).await;
        assert_eq!(keys_of(&read), case.good, "{}: good records", case.name);
        let problems: Vec<&SourceRecord> = read.iter().filter(|record| record.content.is_err()).collect();
        assert_eq!(problems.len(), 1, "{}: exactly one problem in {read:#?}", case.name);
        let problem = problems[0].content.as_ref().unwrap_err();
        assert_eq!(problems[0].origin.as_deref(), Some(case.origin), "{}", case.name);
        assert_eq!(problem.kind, case.kind, "{}: {problem:?}", case.name);
        assert!(
            problem.message.contains(case.message),
            "{}: {:?} should contain {:?}",
            case.name,
            problem.message,
            case.message
        );
        assert!(!problem.raw.is_null(), "{}: the raw input is kept", case.name);
        assert!(problems[0].origin_group.as_deref().unwrap().starts_with(&format!("{}@", case.file)));
    }
}

#[tokio::test]
async fn a_problem_row_without_a_key_is_named_by_file_and_row_and_keeps_its_cells() {
    let folder = tempfile::tempdir().unwrap();
    fs::write(folder.path().join("products.csv"), "sku,title,price,currency\nA1,Shirt,1,EUR\n,Nameless,2,\n").unwrap();
    let connector = connector(folder.path(), |_| {});
    let (read, _, _) = read_all(&connector, EntityKind::Product, &Checkpoint::default(), 10).await;
    assert_eq!(read[1].source_id, "products.csv:row 3", "no code and no sku: named by file and row");
    let problem = read[1].content.as_ref().unwrap_err();
    assert_eq!(problem.raw, json!({"sku": "", "title": "Nameless", "price": "2", "currency": ""}));
    assert!(problem.message.contains("column \"currency\": is required when price is set"), "{}", problem.message);
}

#[tokio::test]
async fn an_unclosed_quote_costs_its_own_line_only() {
    let folder = tempfile::tempdir().unwrap();
    let content = "sku,title,vendor\nA1,Shirt,x\nA2,\"Pants,y\nA3,Cap,z\nA4,\"Two\nlines\",w\nA5,\"Sock,v\n";
    fs::write(folder.path().join("products.csv"), content).unwrap();
    let connector = connector(folder.path(), |_| {});
    for page_size in [1, 10] {
        let (read, _, _) = read_all(&connector, EntityKind::Product, &Checkpoint::default(), page_size).await;
        assert_eq!(keys_of(&read), ["A1", "A3", "A4"], "a quoted line break is no problem");
        let problems: Vec<(&str, &str)> = read
            .iter()
            .filter_map(|record| {
                let problem = record.content.as_ref().err()?;
                Some((record.origin.as_deref().unwrap(), problem.message.as_str()))
            })
            .collect();
        assert_eq!(
            problems,
            [
                ("products.csv: row 3", "a quote is not closed: the row has 2 fields instead of 3"),
                ("products.csv: row 6", "has 2 fields but the header has 3: is a delimiter or a quote out of place?"),
            ]
        );
        let raw = &read[1].content.as_ref().unwrap_err().raw;
        assert_eq!(raw, &json!({"sku": "A2", "title": "Pants,y"}), "the bad line alone is kept");
        assert_eq!(read[1].source_id, "A2");
    }
}

#[tokio::test]
async fn a_row_longer_than_the_limit_is_a_problem_not_an_allocation() {
    let folder = tempfile::tempdir().unwrap();
    let mut content = b"sku,title\nA1,Shirt\nA2,\"".to_vec();
    content.resize(content.len() + 17 * 1024 * 1024, b'x');
    content.extend_from_slice(b"\"\nA3,Cap\n");
    fs::write(folder.path().join("products.csv"), content).unwrap();
    let connector = connector(folder.path(), |_| {});
    let (read, _, _) = read_all(&connector, EntityKind::Product, &Checkpoint::default(), 10).await;
    assert_eq!(keys_of(&read), ["A1", "A3"]);
    let problem = read[1].content.as_ref().unwrap_err();
    assert!(problem.message.starts_with("longer than 16 MiB"), "{}", problem.message);
    assert_eq!(read[2].origin.as_deref(), Some("products.csv: row 4"));
}

#[tokio::test]
async fn documents_embed_the_pdf_file_they_name() {
    let folder = tempfile::tempdir().unwrap();
    fs::write(folder.path().join("INV-7.pdf"), b"%PDF-1.4\n").unwrap();
    fs::write(
        folder.path().join("documents.csv"),
        "kind,number,currency,pdf_file\ninvoice,INV-7,EUR,INV-7.pdf\ninvoice,INV-8,EUR,missing.pdf\ninvoice,INV-9,EUR,../secret.pdf\n",
    )
    .unwrap();
    let connector = connector(folder.path(), |_| {});
    let (read, _, _) = read_all(&connector, EntityKind::Document, &Checkpoint::default(), 10).await;
    match &read[0].content {
        Ok(Record::Document(document)) => assert_eq!(
            document.pdf,
            Some(erpsync_model::Pdf::Base64 { data: "JVBERi0xLjQK".into(), file_name: Some("INV-7.pdf".into()) })
        ),
        other => panic!("expected a document, got {other:?}"),
    }
    let messages: Vec<String> =
        read[1..].iter().map(|record| record.content.as_ref().unwrap_err().message.clone()).collect();
    assert!(messages[0].contains("column \"pdf_file\": cannot read \"missing.pdf\""), "{}", messages[0]);
    assert!(messages[1].contains("not a plain file name"), "{}", messages[1]);
}

#[tokio::test]
async fn writes_are_atomic_and_a_replayed_batch_replaces_its_own_file() {
    let folder = tempfile::tempdir().unwrap();
    let connector = connector(folder.path(), |config| {
        config.entities.insert(
            "stock_level".into(),
            EntityFilesConfig { file_prefix: Some("to-shop-".into()), ..Default::default() },
        );
    });
    let first = [record(json!({"entity": "stock_level", "sku": "A", "location": "WH", "available": "1"}))];
    let again = [record(json!({"entity": "stock_level", "sku": "A", "location": "WH", "available": "2"}))];
    write(&connector, EntityKind::StockLevel, "flow-1:page-9", &first).await;
    write(&connector, EntityKind::StockLevel, "flow-1:page-9", &again).await;
    let names = file_names(folder.path());
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("to-shop-stock_level-flow-1page-9-") && names[0].ends_with(".csv"), "{names:?}");
    let text = fs::read_to_string(folder.path().join(&names[0])).unwrap();
    assert_eq!(text, "sku,location,available\nA,WH,2\n");

    let update = WriteBatch {
        entity: EntityKind::StockLevel,
        batch_id: "b2".into(),
        items: vec![WriteItem { target_id: Some("A@WH".into()), natural_key: "A@WH".into(), record: again[0].clone() }],
    };
    let outcomes = Sink::write_batch(&connector, &update).await.unwrap();
    assert!(matches!(&outcomes[0], WriteOutcome::Updated { target_id } if target_id == "A@WH"));
    let lookups = Sink::lookup(&connector, EntityKind::StockLevel, &["A@WH".to_string()]).await.unwrap();
    assert_eq!(lookups, vec![None]);
}

#[tokio::test]
async fn a_missing_folder_is_an_io_error_with_context() {
    let folder = tempfile::tempdir().unwrap();
    let connector = connector(&folder.path().join("nope"), |_| {});
    let request = ReadRequest { entity: EntityKind::Order, checkpoint: &Checkpoint::default(), page_size: 10 };
    let error = Source::read_page(&connector, &request).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Io);
    assert!(error.retryable);
    assert!(error.to_string().starts_with("reading order from files \"erp\": listing folder"), "{error}");

    let records = [record(json!({"entity": "stock_level", "sku": "A", "location": "WH", "available": "1"}))];
    let batch = WriteBatch {
        entity: EntityKind::StockLevel,
        batch_id: "b".into(),
        items: vec![WriteItem { target_id: None, natural_key: "A@WH".into(), record: records[0].clone() }],
    };
    let error = Sink::write_batch(&connector, &batch).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Io);
}

#[tokio::test]
async fn a_foreign_cursor_is_refused_not_misread() {
    let folder = tempfile::tempdir().unwrap();
    let connector = connector(folder.path(), |_| {});
    let checkpoint = Checkpoint { watermark: None, cursor: Some("page=7".into()) };
    let request = ReadRequest { entity: EntityKind::Order, checkpoint: &checkpoint, page_size: 10 };
    let error = Source::read_page(&connector, &request).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidRequest);
    assert!(error.to_string().contains("not written by the files connector"), "{error}");
}

#[test]
fn a_bad_configuration_is_refused_with_every_problem() {
    let mut config = FilesConfig::new("/tmp/x");
    config.delimiter = "||".into();
    config.encoding = "ebcdic".into();
    let error = FilesConnector::new("erp", config).unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidRequest);
    let text = error.to_string();
    assert!(text.starts_with("configuring files \"erp\": delimiter:"), "{text}");
    assert!(text.contains("encoding: unknown encoding \"ebcdic\""), "{text}");
}
