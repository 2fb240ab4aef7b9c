//! The `files` connector: CSV and JSON Lines files in a folder, the exchange many ERPs still use.
//!
//! Reads and writes every entity. The user guide is `docs/connectors/files.md`; this is the
//! map for whoever changes the code.
//!
//! | room | what it holds |
//! |---|---|
//! | `config.rs` | the TOML table, its pure validation, the validated `Settings`, the file-name glob |
//! | `client.rs` | the folder: `FilesConnector`, listing and fingerprinting files, atomic writes, bounded reads |
//! | `map.rs` | pure conversions: CSV rows ⇄ records (the column scheme below), JSON lines ⇄ records |
//! | `source.rs` | `Source`: the ledger cursor, streaming rows from a byte offset, problems and duplicates |
//! | `sink.rs` | `Sink`: one atomically written file per batch |
//!
//! There is no `webhook.rs`: a folder sends no events. Tests are in `tests/files.rs`; the read
//! throughput is measured by `examples/files_read_throughput.rs`.
//!
//! # Reading
//!
//! The entity's files (`entities.<entity>.pattern`, default `<entity>*.csv` or `.jsonl`;
//! hidden and `.tmp` files never) are read in name order. The checkpoint cursor keeps a ledger
//! of the files read to their end, each with a fingerprint (size, modification time in
//! nanoseconds, and a hash of its first and last 4 KiB): a file in the ledger with the same
//! fingerprint is skipped, a changed one is read again from the start. The file being read is
//! remembered by byte offset and row number, so a page starts by seeking, not by re-reading.
//! Files modified less than `min_age_seconds` ago are left for a later run. Pages hold whole
//! records: the rows of one product are never split across pages.
//!
//! Every record comes with `origin` (`products.csv: row 12`, the header being row 1;
//! `products.jsonl: line 3`) and `origin_group` (`products.csv@<fingerprint>`). A row that
//! cannot become a valid record becomes a problem of kind `parse`, `encoding`, `validation` or
//! `duplicate`, with a message naming the file, the row, the column and the value, and the raw
//! row (header → cell) for the dead letter; the rows around it still sync.
//!
//! # CSV columns
//!
//! Rows with the same group key that follow each other form one record; the record's own
//! columns are read from its first row (the sink repeats them on every row), each row adds one
//! line. A row whose line columns are all empty adds no line. Empty cells mean "absent"; cells
//! are trimmed. Booleans are `true`/`false` (also `yes`/`no`, `1`/`0`); times RFC 3339 (a time
//! without zone, or a bare date, is UTC); numbers use `decimal_separator`; enum values are the
//! model's snake_case names. Header names are matched ignoring ASCII case, after the column
//! mapping (`entities.<entity>.columns`). Columns the scheme does not name are kept in the
//! record's `extra` under their header.
//!
//! | entity | group key | record columns | line columns (one line per row) |
//! |---|---|---|---|
//! | product | `code` (empty: each row is a simple product, code = sku) | `code title description status vendor product_type tags categories tax_class images options attributes updated_at attribute.<name> extra extra.<key>` | variant: `sku variant_title barcode price compare_at_price cost currency price_includes_tax weight weight_unit track_inventory option<N>_name option<N>_value variant_extra variant_extra.<key>` |
//! | price_list | `code` | `code name currency customer_group prices_include_tax valid_from valid_to updated_at extra extra.<key>` | entry: `sku min_quantity price` (min_quantity defaults to 1) |
//! | stock_level | none: one row each | `sku location available on_hand updated_at extra extra.<key>` | |
//! | customer | `number`, else lower-cased `email` | `number email first_name last_name company phone group tax_number accepts_marketing updated_at extra extra.<key>` | address: `address_kind address_first_name address_last_name address_company address_line1 address_line2 address_city address_region address_postal_code address_country address_phone address_is_default` |
//! | order | `number` | `number placed_at updated_at currency prices_include_tax rounding financial_status fulfillment_status customer_{email,number,first_name,last_name,company,phone,group} billing_<address field> shipping_<address field> subtotal discount_total shipping_total tax_total total shipping_method shipping_title shipping_price shipping_lines discounts tax_lines payments cancelled cancelled_at cancel_reason note sales_channel extra extra.<key>` | `line_id line_sku line_title line_quantity line_unit_price line_discount line_total line_tax_title line_tax_rate line_tax_amount line_tax_lines line_extra line_extra.<key>` |
//! | order_status | none: one row each | `order_number state financial_status fulfillment_status changed_at note extra extra.<key>` | |
//! | shipment | `number` | `number order_number shipped_at location notify_customer carrier tracking_number tracking_url tracking extra extra.<key>` | `line_sku line_quantity` |
//! | document | `kind` + `number` | `kind number order_number issued_at currency subtotal discount_total shipping_total tax_total total pdf_url pdf_file extra extra.<key>` | `line_sku line_title line_quantity line_unit_price line_total` |
//! | refund | `number` | `number order_number refunded_at currency amount shipping_amount reason extra extra.<key>` | `line_sku line_quantity line_amount line_restock` |
//!
//! Lists of plain values (`tags`, `categories`, image URLs in `images`) are `|`-separated.
//! Lists of structures without flat columns (`discounts`, `tax_lines`, `payments`), and values
//! the flat columns cannot carry exactly (several shipping lines or tracking numbers, several
//! tax lines on an order line, images with alt texts, options no variant uses, repeated
//! attribute names, non-string `extra` values), are written as JSON in the column named after
//! the model field (`shipping_lines`, `tracking`, `line_tax_lines`, `images`, `options`,
//! `attributes`, `extra`, …). Writing then reading a record gives the same record. `pdf_file`
//! names a file in the folder, embedded as base64 when read; the sink writes a base64 PDF as
//! such a file next to the CSV. Prices need `currency`; `price_list`, `order`, `document` and
//! `refund` need their `currency` column.
//!
//! # JSON Lines
//!
//! One record per line in the model's JSON form; the `"entity"` key may be left out and must
//! match when present. Blank lines are skipped. Lossless for every field.
//!
//! # Writing
//!
//! Each batch becomes `<file_prefix><entity>-<batch id>.<csv|jsonl>`, written to a hidden
//! temporary file in the same folder, flushed to disk, renamed, and the folder flushed: readers
//! never see half a file, and a batch replayed after a crash replaces its own file. The CSV
//! header is the union of the columns the batch's records use, in the order of the table above.
//! A record the file cannot carry (a character the encoding lacks, `|` inside a tag) fails
//! alone with `invalid_request`. Files cannot be searched: `lookup` finds nothing.

mod client;
mod config;
pub(crate) mod map;
mod sink;
mod source;

pub use client::FilesConnector;
pub use config::{EntityFilesConfig, FileFormat, FilesConfig};
