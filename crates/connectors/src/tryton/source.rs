//! Reading from Tryton: products (templates with their variants), sale price lists, stock
//! levels per warehouse, order status (sales), shipments (customer shipments) and posted
//! invoices with their report.
//!
//! Incremental reads ask for rows created or written since `watermark - overlap`, ordered by
//! id and paged by id (`id > last id`), so a page boundary never splits or repeats a row
//! within one run. When a run ends, the new watermark is the newest change time it saw, but
//! never later than the moment the run started: a row changed while the scan ran (perhaps
//! behind the id already passed) is asked for again by the next run. Rows read twice cost
//! nothing, the engine skips them by hash.
//!
//! Tryton's own dates decide what changed (tryton.md §6.2): a template edit does not touch its
//! variants' `write_date`, so products are selected on both; stock moves do not touch products
//! at all, so stock levels are read in full every run. A price list is selected when it or
//! one of its lines was created or written.
//!
//! Price lists' prices are computed by Tryton, not here: Tryton's lines hold Python formulas
//! (`unit_price * 0.9`) that only Tryton evaluates faithfully. For each quantity tier of a list
//! (1 and every line's minimum quantity), the variants' `sale_price_uom` is read with the list
//! and the quantity in the context: the price a sale line of that quantity gets with that list.

use crate::tryton::TrytonConnector;
use crate::tryton::map::{
    TierPrices, changed_at, customer_group_of, decode_bytes, decode_decimal, document_from_row, encode_datetime, id,
    ids, order_number_of, order_status_from_row, price_list_from_rows, price_tiers, product_from_rows,
    shipment_from_row, text,
};
use crate::{Capabilities, ConnectorError, ErrorKind, ReadRequest, RecordProblem, Source, SourcePage, SourceRecord};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use erpsync_model::{Checkpoint, Currency, EntityKind, Record, StockLevel};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};

/// Most rows asked for in one call, whatever the engine's page size.
const MAX_PAGE: usize = 500;

/// Most price lists per page: each one costs a price read per quantity tier and per
/// `MAX_PAGE` variants.
const MAX_PRICE_LISTS_PER_PAGE: usize = 10;

/// Where a run is: kept in the checkpoint's cursor between pages.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunCursor {
    v: u32,
    since: Option<DateTime<Utc>>,
    started: DateTime<Utc>,
    newest: Option<DateTime<Utc>>,
    after_id: i64,
}

#[async_trait]
impl Source for TrytonConnector {
    fn capabilities(&self, entity: EntityKind) -> Capabilities {
        let (read, incremental_read) = match entity {
            EntityKind::Product
            | EntityKind::PriceList
            | EntityKind::OrderStatus
            | EntityKind::Shipment
            | EntityKind::Document => (true, true),
            EntityKind::StockLevel => (true, false),
            _ => (false, false),
        };
        Capabilities { read, incremental_read, ..Capabilities::default() }
    }

    async fn read_page(&self, request: &ReadRequest<'_>) -> Result<SourcePage, ConnectorError> {
        let context = format!("reading {} from tryton {:?}", request.entity, self.system);
        let run = match request.checkpoint.cursor.as_deref() {
            Some(text) => serde_json::from_str::<RunCursor>(text).map_err(|error| {
                ConnectorError::new(
                    ErrorKind::InvalidRequest,
                    &context,
                    format!("the stored cursor is not ours: {error}"),
                )
            })?,
            None => RunCursor {
                v: 1,
                since: request
                    .checkpoint
                    .watermark
                    .map(|at| at - chrono::Duration::from_std(self.overlap).unwrap_or_default()),
                started: Utc::now(),
                newest: None,
                after_id: 0,
            },
        };
        let limit = request.page_size.clamp(1, MAX_PAGE);
        let (records, last_id, newest, full) = match request.entity {
            EntityKind::Product => self.read_products(&run, limit, &context).await?,
            EntityKind::PriceList => self.read_price_lists(&run, limit, &context).await?,
            EntityKind::StockLevel => self.read_stock(&run, limit, &context).await?,
            EntityKind::OrderStatus => self.read_order_status(&run, limit, &context).await?,
            EntityKind::Shipment => self.read_shipments(&run, limit, &context).await?,
            EntityKind::Document => self.read_documents(&run, limit, &context).await?,
            other => {
                return Err(ConnectorError::new(
                    ErrorKind::InvalidRequest,
                    &context,
                    format!("the tryton connector does not read {other}"),
                ));
            }
        };
        let newest = run.newest.max(newest);
        let checkpoint = if full {
            let cursor = RunCursor { newest, after_id: last_id, ..run };
            Checkpoint {
                watermark: request.checkpoint.watermark,
                cursor: Some(serde_json::to_string(&cursor).expect("cursors always serialize")),
            }
        } else {
            Checkpoint {
                watermark: match newest {
                    Some(newest) => Some(newest.min(run.started)),
                    None => request.checkpoint.watermark,
                },
                cursor: None,
            }
        };
        Ok(SourcePage { records, checkpoint, done: !full })
    }
}

/// What a scan reads: `fields` of the `model` rows matching `domain`, changed on any of
/// `date_fields` since the run's start point.
struct Scan<'a> {
    model: &'a str,
    domain: Vec<Value>,
    date_fields: &'a [&'a str],
    fields: &'a [&'a str],
}

/// One page of rows: the rows, the last id, and whether the page was full (more may follow).
struct Rows {
    rows: Vec<Value>,
    last_id: i64,
    full: bool,
}

type PageResult = (Vec<SourceRecord>, i64, Option<DateTime<Utc>>, bool);

fn record(source_id: String, origin: String, record: Record, raw: &Value) -> SourceRecord {
    let content = match record.validate() {
        Ok(()) => Ok(record),
        Err(errors) => Err(RecordProblem { kind: "validation".into(), message: errors.to_string(), raw: raw.clone() }),
    };
    SourceRecord { source_id, origin: Some(origin), origin_group: None, content }
}

fn problem(source_id: String, origin: String, message: String, raw: &Value) -> SourceRecord {
    SourceRecord {
        source_id,
        origin: Some(origin),
        origin_group: None,
        content: Err(RecordProblem { kind: "parse".into(), message, raw: raw.clone() }),
    }
}

impl TrytonConnector {
    /// Rows of `model` after the run's last id, changed since the run's `since` on any of
    /// `date_fields` (all rows on a full read).
    async fn scan(
        &self,
        query: Scan<'_>,
        run: &RunCursor,
        limit: usize,
        context: &str,
    ) -> Result<Rows, ConnectorError> {
        let Scan { model, mut domain, date_fields, fields } = query;
        domain.push(json!(["id", ">", run.after_id]));
        if let Some(since) = run.since {
            let mut any: Vec<Value> = vec![json!("OR")];
            any.extend(date_fields.iter().map(|field| json!([field, ">=", encode_datetime(since)])));
            domain.push(Value::Array(any));
        }
        let result = self
            .execute(
                model,
                "search_read",
                vec![Value::Array(domain), json!(0), json!(limit), json!([["id", "ASC"]]), json!(fields)],
                None,
                context,
            )
            .await?;
        let rows = result.as_array().cloned().ok_or_else(|| {
            ConnectorError::new(
                ErrorKind::InvalidResponse,
                context,
                format!("{model}.search_read did not return a list"),
            )
        })?;
        let last_id = rows.iter().filter_map(|row| id(row, "id")).max().unwrap_or(run.after_id);
        Ok(Rows { full: rows.len() >= limit, rows, last_id })
    }

    async fn read_rows(
        &self,
        model: &str,
        ids: &[i64],
        fields: &[&str],
        context: &str,
    ) -> Result<Vec<Value>, ConnectorError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let result = self.execute(model, "read", vec![json!(ids), json!(fields)], None, context).await?;
        result.as_array().cloned().ok_or_else(|| {
            ConnectorError::new(ErrorKind::InvalidResponse, context, format!("{model}.read did not return a list"))
        })
    }

    async fn read_products(&self, run: &RunCursor, limit: usize, context: &str) -> Result<PageResult, ConnectorError> {
        let setup = self.setup(context).await?;
        let page = self
            .scan(
                Scan {
                    model: "product.template",
                    domain: vec![json!(["active", "in", [true, false]])],
                    date_fields: &["create_date", "write_date", "products.create_date", "products.write_date"],
                    fields: &["name", "code", "type", "active", "list_price", "create_date", "write_date"],
                },
                run,
                limit,
                context,
            )
            .await?;
        let template_ids: Vec<i64> = page.rows.iter().filter_map(|row| id(row, "id")).collect();
        let mut variants: HashMap<i64, Vec<Value>> = HashMap::new();
        if !template_ids.is_empty() {
            let rows = self
                .execute(
                    "product.product",
                    "search_read",
                    vec![
                        json!([["template", "in", template_ids], ["active", "in", [true, false]]]),
                        json!(0),
                        Value::Null,
                        json!([["id", "ASC"]]),
                        json!([
                            "template",
                            "code",
                            "description",
                            "list_price_used",
                            "active",
                            "create_date",
                            "write_date"
                        ]),
                    ],
                    None,
                    context,
                )
                .await?;
            for row in rows.as_array().into_iter().flatten() {
                if let Some(template) = id(row, "template") {
                    variants.entry(template).or_default().push(row.clone());
                }
            }
        }
        let mut newest = None;
        let mut records = Vec::with_capacity(page.rows.len());
        for template in &page.rows {
            let template_id = id(template, "id").unwrap_or_default();
            let rows: Vec<&Value> = variants.get(&template_id).map(|rows| rows.iter().collect()).unwrap_or_default();
            let product = product_from_rows(template, &rows, setup.currency);
            newest = newest.max(product.updated_at);
            let raw = json!({ "template": template, "variants": rows });
            records.push(record(
                template_id.to_string(),
                format!("product.template {template_id}"),
                Record::Product(product),
                &raw,
            ));
        }
        Ok((records, page.last_id, newest, page.full))
    }

    async fn read_price_lists(
        &self,
        run: &RunCursor,
        limit: usize,
        context: &str,
    ) -> Result<PageResult, ConnectorError> {
        let setup = self.setup(context).await?;
        let page = self
            .scan(
                Scan {
                    model: "product.price_list",
                    domain: vec![json!(["company", "=", setup.company])],
                    date_fields: &["create_date", "write_date", "lines.create_date", "lines.write_date"],
                    fields: &["name", "tax_included", "lines", "create_date", "write_date"],
                },
                run,
                limit.min(MAX_PRICE_LISTS_PER_PAGE),
                context,
            )
            .await?;
        if page.rows.is_empty() {
            return Ok((Vec::new(), page.last_id, None, page.full));
        }
        // The company's default sale price list is the base list: it has no customer group.
        let configuration = self.read_rows("sale.configuration", &[1], &["sale_price_list"], context).await?;
        let default_list = configuration.first().and_then(|row| id(row, "sale_price_list"));
        let line_ids: Vec<i64> = page.rows.iter().flat_map(|row| ids(row, "lines")).collect();
        let lines = self
            .read_rows(
                "product.price_list.line",
                &line_ids,
                &["price_list", "quantity", "formula", "create_date", "write_date"],
                context,
            )
            .await?;
        let lines_by_id: HashMap<i64, &Value> = lines.iter().filter_map(|row| Some((id(row, "id")?, row))).collect();
        // Every salable variant with a SKU may be priced by a list; Tryton says which are.
        let variants = self
            .execute(
                "product.product",
                "search_read",
                vec![
                    json!([["template.salable", "=", true]]),
                    json!(0),
                    Value::Null,
                    json!([["id", "ASC"]]),
                    json!(["code"]),
                ],
                None,
                context,
            )
            .await?;
        let variants: Vec<(i64, String)> = variants
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|row| Some((id(row, "id")?, text(row, "code")?)))
            .collect();
        let mut newest = None;
        let mut records = Vec::with_capacity(page.rows.len());
        for row in &page.rows {
            let list_id = id(row, "id").unwrap_or_default();
            let origin = format!("product.price_list {list_id}");
            let name = text(row, "name").unwrap_or_default();
            let list_lines: Vec<&Value> =
                ids(row, "lines").iter().filter_map(|line| lines_by_id.get(line).copied()).collect();
            let owned_lines: Vec<Value> = list_lines.iter().map(|line| (*line).clone()).collect();
            let raw = json!({ "price_list": row, "lines": owned_lines });
            newest = newest.max(list_lines.iter().filter_map(|line| changed_at(line)).chain(changed_at(row)).max());
            let tiers = price_tiers(&owned_lines);
            let mut prices: Vec<TierPrices> =
                variants.iter().map(|(_, sku)| (sku.clone(), Vec::with_capacity(tiers.len()))).collect();
            let mut failure = None;
            'tiers: for tier in &tiers {
                for (chunk_index, chunk) in variants.chunks(MAX_PAGE).enumerate() {
                    let variant_ids: Vec<i64> = chunk.iter().map(|(variant, _)| *variant).collect();
                    let mut extra = Map::new();
                    extra.insert("price_list".into(), json!(list_id));
                    extra.insert("quantity".into(), json!(tier.to_f64().unwrap_or(1.0)));
                    let read = self
                        .execute(
                            "product.product",
                            "read",
                            vec![json!(variant_ids), json!(["sale_price_uom"])],
                            Some(extra),
                            context,
                        )
                        .await;
                    let rows = match read {
                        Ok(rows) => rows,
                        // A formula that fails for a product (Tryton checks formulas only
                        // without a product when they are saved) fails this list, not the run.
                        Err(error) if error.kind == ErrorKind::InvalidRequest => {
                            failure = Some(format!(
                                "price list {name:?} (product.price_list {list_id}): tryton could not compute its prices at quantity {tier}: {}",
                                error.message
                            ));
                            break 'tiers;
                        }
                        Err(error) => return Err(error),
                    };
                    let by_id: HashMap<i64, Option<Decimal>> = rows
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|row| Some((id(row, "id")?, row.get("sale_price_uom").and_then(decode_decimal))))
                        .collect();
                    for (offset, (variant, _)) in chunk.iter().enumerate() {
                        let price = by_id.get(variant).copied().flatten();
                        prices[chunk_index * MAX_PAGE + offset].1.push((*tier, price));
                    }
                }
            }
            if let Some(message) = failure {
                records.push(problem(list_id.to_string(), origin, message, &raw));
                continue;
            }
            let group = customer_group_of(&name, default_list == Some(list_id), &self.config.price_list_groups);
            let price_list = price_list_from_rows(row, &list_lines, setup.currency, group, &prices);
            records.push(record(list_id.to_string(), origin, Record::PriceList(price_list), &raw));
        }
        Ok((records, page.last_id, newest, page.full))
    }

    async fn read_stock(&self, run: &RunCursor, limit: usize, context: &str) -> Result<PageResult, ConnectorError> {
        let setup = self.setup(context).await?;
        let n_warehouses = setup.warehouses.len().max(1);
        let products_per_page = (limit / n_warehouses).max(1);
        let page = self
            .scan(
                Scan {
                    model: "product.product",
                    domain: vec![json!(["type", "=", "goods"])],
                    date_fields: &[],
                    fields: &["code"],
                },
                &RunCursor { since: None, ..run.clone() },
                products_per_page,
                context,
            )
            .await?;
        let product_ids: Vec<i64> = page.rows.iter().filter_map(|row| id(row, "id")).collect();
        let mut records = Vec::new();
        if product_ids.is_empty() {
            return Ok((records, page.last_id, None, false));
        }
        for (name, warehouse, _) in &setup.warehouses {
            let mut extra = Map::new();
            extra.insert("locations".into(), json!([warehouse]));
            let rows = self
                .execute(
                    "product.product",
                    "read",
                    vec![json!(product_ids), json!(["code", "quantity", "forecast_quantity"])],
                    Some(extra),
                    context,
                )
                .await?;
            for row in rows.as_array().into_iter().flatten() {
                let product_id = id(row, "id").unwrap_or_default();
                let source_id = format!("{product_id}@{warehouse}");
                let origin = format!("product.product {product_id} in warehouse {name}");
                let Some(sku) = text(row, "code") else {
                    records.push(problem(source_id, origin, "the variant has no code (SKU)".into(), row));
                    continue;
                };
                let on_hand = row.get("quantity").and_then(decode_decimal);
                let forecast = row.get("forecast_quantity").and_then(decode_decimal).unwrap_or_default();
                let mut stock = StockLevel {
                    sku,
                    location: name.clone(),
                    // Sold but not yet shipped is not available: the forecast counts planned
                    // moves. Below zero (oversold) means nothing left to sell.
                    available: forecast.max(Decimal::ZERO),
                    on_hand,
                    ..StockLevel::default()
                };
                stock.extra.insert("forecast_quantity", json!(forecast.to_string()));
                records.push(record(source_id, origin, Record::StockLevel(stock), row));
            }
        }
        Ok((records, page.last_id, None, page.full))
    }

    async fn read_order_status(
        &self,
        run: &RunCursor,
        limit: usize,
        context: &str,
    ) -> Result<PageResult, ConnectorError> {
        let setup = self.setup(context).await?;
        let domain = match setup.web_shop {
            Some(shop) => vec![json!(["web_shop", "=", shop])],
            None => Vec::new(),
        };
        let page = self
            .scan(
                Scan {
                    model: "sale.sale",
                    domain,
                    date_fields: &["create_date", "write_date"],
                    fields: &[
                        "number",
                        "reference",
                        "web_id",
                        "state",
                        "invoice_state",
                        "shipment_state",
                        "create_date",
                        "write_date",
                    ],
                },
                run,
                limit,
                context,
            )
            .await?;
        let mut newest = None;
        let mut records = Vec::with_capacity(page.rows.len());
        for row in &page.rows {
            let sale_id = id(row, "id").unwrap_or_default();
            let origin = format!("sale.sale {sale_id}");
            newest = newest.max(changed_at(row));
            match order_number_of(row) {
                Some(number) => {
                    let change = order_status_from_row(row, number);
                    records.push(record(sale_id.to_string(), origin, Record::OrderStatus(change), row));
                }
                None => records.push(problem(
                    sale_id.to_string(),
                    origin,
                    "the sale has no web id, reference or number".into(),
                    row,
                )),
            }
        }
        Ok((records, page.last_id, newest, page.full))
    }

    /// The shop's order numbers of the sales behind `origins` (`"sale.line,<id>"` references,
    /// or `"account.invoice.line,<id>"` ones of credit note lines that credit a sale's invoice
    /// line), by origin.
    async fn order_numbers_of_lines(
        &self,
        origins: &[String],
        context: &str,
    ) -> Result<HashMap<String, String>, ConnectorError> {
        let credited_ids: Vec<i64> = origins
            .iter()
            .filter_map(|origin| origin.strip_prefix("account.invoice.line,").and_then(|id| id.parse().ok()))
            .collect();
        let credited = self.read_rows("account.invoice.line", &credited_ids, &["origin"], context).await?;
        let credited: HashMap<String, String> = credited
            .iter()
            .filter_map(|row| Some((format!("account.invoice.line,{}", id(row, "id")?), text(row, "origin")?)))
            .collect();
        let all: Vec<String> = origins.iter().chain(credited.values()).cloned().collect();
        let mut numbers = self.sale_numbers_of_lines(&all, context).await?;
        for (credit_origin, sale_origin) in &credited {
            if let Some(number) = numbers.get(sale_origin).cloned() {
                numbers.insert(credit_origin.clone(), number);
            }
        }
        Ok(numbers)
    }

    /// The shop's order numbers of the sales behind `"sale.line,<id>"` origins, by origin.
    async fn sale_numbers_of_lines(
        &self,
        origins: &[String],
        context: &str,
    ) -> Result<HashMap<String, String>, ConnectorError> {
        let line_ids: Vec<i64> = origins
            .iter()
            .filter_map(|origin| origin.strip_prefix("sale.line,").and_then(|id| id.parse().ok()))
            .collect();
        let lines = self.read_rows("sale.line", &line_ids, &["sale"], context).await?;
        let mut sale_ids: Vec<i64> = lines.iter().filter_map(|line| id(line, "sale")).collect();
        sale_ids.sort_unstable();
        sale_ids.dedup();
        let sales = self.read_rows("sale.sale", &sale_ids, &["number", "reference", "web_id"], context).await?;
        let numbers: HashMap<i64, String> =
            sales.iter().filter_map(|sale| Some((id(sale, "id")?, order_number_of(sale)?))).collect();
        Ok(lines
            .iter()
            .filter_map(|line| {
                let number = numbers.get(&id(line, "sale")?)?;
                Some((format!("sale.line,{}", id(line, "id")?), number.clone()))
            })
            .collect())
    }

    async fn read_shipments(&self, run: &RunCursor, limit: usize, context: &str) -> Result<PageResult, ConnectorError> {
        let setup = self.setup(context).await?;
        let page = self
            .scan(
                Scan {
                    model: "stock.shipment.out",
                    domain: Vec::new(),
                    date_fields: &["create_date", "write_date"],
                    fields: &[
                        "number",
                        "state",
                        "reference",
                        "effective_date",
                        "warehouse",
                        "outgoing_moves",
                        "create_date",
                        "write_date",
                    ],
                },
                run,
                limit,
                context,
            )
            .await?;
        let move_ids: Vec<i64> = page.rows.iter().flat_map(|row| ids(row, "outgoing_moves")).collect();
        let moves =
            self.read_rows("stock.move", &move_ids, &["product", "quantity", "origin", "state"], context).await?;
        let mut product_ids: Vec<i64> = moves.iter().filter_map(|row| id(row, "product")).collect();
        product_ids.sort_unstable();
        product_ids.dedup();
        let products = self.read_rows("product.product", &product_ids, &["code"], context).await?;
        let skus: HashMap<i64, String> =
            products.iter().filter_map(|row| Some((id(row, "id")?, text(row, "code")?))).collect();
        let origins: Vec<String> = moves.iter().filter_map(|row| text(row, "origin")).collect();
        let numbers = self.order_numbers_of_lines(&origins, context).await?;
        let moves_by_id: HashMap<i64, &Value> = moves.iter().filter_map(|row| Some((id(row, "id")?, row))).collect();
        let mut newest = None;
        let mut records = Vec::with_capacity(page.rows.len());
        for row in &page.rows {
            let shipment_id = id(row, "id").unwrap_or_default();
            let origin = format!("stock.shipment.out {shipment_id}");
            newest = newest.max(changed_at(row));
            let mut lines = Vec::new();
            let mut order_number = None;
            let mut missing_sku = false;
            for move_id in ids(row, "outgoing_moves") {
                let Some(movement) = moves_by_id.get(&move_id) else { continue };
                if text(movement, "state").as_deref() == Some("cancelled") {
                    continue;
                }
                if order_number.is_none() {
                    order_number = text(movement, "origin").and_then(|origin| numbers.get(&origin).cloned());
                }
                let quantity = movement.get("quantity").and_then(decode_decimal).unwrap_or_default();
                match id(movement, "product").and_then(|product| skus.get(&product)) {
                    Some(sku) => lines.push((sku.clone(), quantity)),
                    None => missing_sku = true,
                }
            }
            let raw = json!({ "shipment": row, "moves": ids(row, "outgoing_moves") });
            let Some(order_number) = order_number else {
                records.push(problem(
                    shipment_id.to_string(),
                    origin,
                    "the shipment's moves come from no sale, so it has no order number".into(),
                    &raw,
                ));
                continue;
            };
            if missing_sku {
                records.push(problem(
                    shipment_id.to_string(),
                    origin,
                    "a shipped product has no code (SKU)".into(),
                    &raw,
                ));
                continue;
            }
            let location = id(row, "warehouse").and_then(|warehouse| {
                setup.warehouses.iter().find(|(_, id, _)| *id == warehouse).map(|(name, _, _)| name.clone())
            });
            let shipment = shipment_from_row(row, order_number, location, lines);
            records.push(record(shipment_id.to_string(), origin, Record::Shipment(shipment), &raw));
        }
        Ok((records, page.last_id, newest, page.full))
    }

    async fn read_documents(&self, run: &RunCursor, limit: usize, context: &str) -> Result<PageResult, ConnectorError> {
        let page = self
            .scan(
                Scan {
                    model: "account.invoice",
                    domain: vec![json!(["type", "=", "out"]), json!(["state", "in", ["posted", "paid"]])],
                    date_fields: &["create_date", "write_date"],
                    fields: &[
                        "number",
                        "state",
                        "invoice_date",
                        "currency",
                        "untaxed_amount",
                        "tax_amount",
                        "total_amount",
                        "lines",
                        "invoice_report_cache",
                        "invoice_report_format",
                        "create_date",
                        "write_date",
                    ],
                },
                run,
                limit,
                context,
            )
            .await?;
        let mut currency_ids: Vec<i64> = page.rows.iter().filter_map(|row| id(row, "currency")).collect();
        currency_ids.sort_unstable();
        currency_ids.dedup();
        let currencies: HashMap<i64, String> = self
            .read_rows("currency.currency", &currency_ids, &["code"], context)
            .await?
            .iter()
            .filter_map(|row| Some((id(row, "id")?, text(row, "code")?)))
            .collect();
        let line_ids: Vec<i64> = page.rows.iter().flat_map(|row| ids(row, "lines")).collect();
        let lines = self
            .read_rows(
                "account.invoice.line",
                &line_ids,
                &["type", "product", "description", "quantity", "unit_price", "amount", "origin"],
                context,
            )
            .await?;
        let mut product_ids: Vec<i64> = lines.iter().filter_map(|row| id(row, "product")).collect();
        product_ids.sort_unstable();
        product_ids.dedup();
        let skus: HashMap<i64, String> = self
            .read_rows("product.product", &product_ids, &["code"], context)
            .await?
            .iter()
            .filter_map(|row| Some((id(row, "id")?, text(row, "code")?)))
            .collect();
        let origins: Vec<String> = lines.iter().filter_map(|row| text(row, "origin")).collect();
        let numbers = self.order_numbers_of_lines(&origins, context).await?;
        let lines_by_id: BTreeMap<i64, &Value> = lines.iter().filter_map(|row| Some((id(row, "id")?, row))).collect();
        let mut newest = None;
        let mut records = Vec::with_capacity(page.rows.len());
        for row in &page.rows {
            let invoice_id = id(row, "id").unwrap_or_default();
            let origin = format!("account.invoice {invoice_id}");
            newest = newest.max(changed_at(row));
            let mut raw = row.clone();
            if let Some(object) = raw.as_object_mut() {
                // The report is kept in the record's PDF, not twice in a dead letter.
                object.remove("invoice_report_cache");
            }
            let Some(currency) = id(row, "currency")
                .and_then(|currency| currencies.get(&currency))
                .and_then(|code| code.parse::<Currency>().ok())
            else {
                records.push(problem(
                    invoice_id.to_string(),
                    origin,
                    "the invoice's currency is not an ISO 4217 code".into(),
                    &raw,
                ));
                continue;
            };
            let mut order_number = None;
            let mut document_lines = Vec::new();
            for line_id in ids(row, "lines") {
                let Some(line) = lines_by_id.get(&line_id) else { continue };
                if text(line, "type").is_some_and(|kind| kind != "line") {
                    continue;
                }
                if order_number.is_none() {
                    order_number = text(line, "origin").and_then(|origin| numbers.get(&origin).cloned());
                }
                document_lines.push((
                    id(line, "product").and_then(|product| skus.get(&product).cloned()),
                    text(line, "description").unwrap_or_default(),
                    line.get("quantity").and_then(decode_decimal).unwrap_or_default(),
                    line.get("unit_price").and_then(decode_decimal).unwrap_or_default(),
                    line.get("amount").and_then(decode_decimal).unwrap_or_default(),
                ));
            }
            let mut report = row
                .get("invoice_report_cache")
                .and_then(decode_bytes)
                .filter(|bytes| !bytes.is_empty())
                .map(|bytes| (bytes, text(row, "invoice_report_format").unwrap_or_else(|| "bin".into())));
            if report.is_none() {
                report = Some(self.render_invoice(invoice_id, context).await?);
            }
            let document = document_from_row(row, currency, order_number, document_lines, report);
            records.push(record(invoice_id.to_string(), origin, Record::Document(document), &raw));
        }
        Ok((records, page.last_id, newest, page.full))
    }

    /// Renders the invoice report (`report.account.invoice.execute`): its bytes and format.
    async fn render_invoice(&self, invoice_id: i64, context: &str) -> Result<(Vec<u8>, String), ConnectorError> {
        let setup = self.setup(context).await?;
        let ctx = json!({ "company": setup.company, "language": self.config.language });
        let result = self
            .client
            .call("report.account.invoice.execute", vec![json!([invoice_id]), json!({}), ctx], context)
            .await?;
        let (format, content) = match result.as_array().map(Vec::as_slice) {
            Some([Value::String(format), content, ..]) => (format.clone(), content),
            _ => {
                return Err(ConnectorError::new(
                    ErrorKind::InvalidResponse,
                    context,
                    format!("the invoice report of invoice {invoice_id} is not [format, content, ...]"),
                ));
            }
        };
        let bytes = decode_bytes(content).ok_or_else(|| {
            ConnectorError::new(
                ErrorKind::InvalidResponse,
                context,
                format!(
                    "the report of invoice {invoice_id} has no content: {}",
                    content.to_string().chars().take(200).collect::<String>()
                ),
            )
        })?;
        Ok((bytes, format))
    }
}
