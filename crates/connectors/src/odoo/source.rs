//! Reading from Odoo: products with variants, price lists, stock per warehouse, shipments,
//! order status and invoices, incremental by `write_date`.
//!
//! The boundary rule. `write_date` reaches the API as naive UTC to the second, so many records
//! can share the second a page ends in. A stream keeps, in the checkpoint's cursor, the second
//! it stopped in (`watermark`) and the ids already read in that second (`seen`). Each read first
//! takes the rest of that second by id (`write_date` in the second, `id not in seen`), then
//! moves on to later seconds ordered by `write_date, id`. A record written in the watermark's
//! second after it was read is therefore found, and a record already read is not read again on
//! every run. When one second holds more records than `seen` can keep, that second is scanned
//! by id instead (`id > after_id`).

use crate::odoo::OdooConnector;
use crate::odoo::client::SearchOptions;
use crate::odoo::map::{
    self, category_path, currency, custom_fields, decimal, format_datetime, ids, many2one_id, many2one_name,
    parse_date, parse_datetime, text,
};
use crate::{Capabilities, ConnectorError, ErrorKind, ReadRequest, RecordProblem, Source, SourcePage, SourceRecord};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use erpsync_model::{
    Checkpoint, Document, DocumentKind, DocumentLine, EntityKind, Money, OptionValue, OrderStatusChange, OrderTotals,
    PriceEntry, PriceList, Product, ProductOption, ProductStatus, Record, Shipment, ShipmentLine, StockLevel, Tracking,
    Variant, Weight,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Most rows one stream reads per page, whatever the flow's page size.
const MAX_ROWS_PER_PAGE: usize = 1000;
/// Most ids kept for the watermark's second; beyond it that second is scanned by id.
const MAX_SEEN: usize = 2000;

/// Where each stream of a read stopped; the checkpoint's cursor.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SourceCursor {
    v: u32,
    streams: BTreeMap<String, StreamCursor>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamCursor {
    /// The second (`YYYY-MM-DD HH:MM:SS`) the stream stopped in; `None` before the first record.
    #[serde(default)]
    pub watermark: Option<String>,
    /// Ids read with `write_date` in the watermark's second.
    #[serde(default)]
    pub seen: Vec<i64>,
    /// Set when `seen` overflowed: the watermark's second is read by id after this one.
    #[serde(default)]
    pub after_id: Option<i64>,
}

/// One stream read: rows in order, the cursor after them, and whether nothing is left.
pub struct StreamRead {
    pub rows: Vec<Value>,
    pub cursor: StreamCursor,
    pub exhausted: bool,
}

impl OdooConnector {
    /// Reads up to `limit` rows of `model` changed since `cursor` (see the module's boundary
    /// rule). `fields` must not include `write_date` or `id`: they are added.
    pub async fn read_changes(
        &self,
        model: &str,
        base_domain: &[Value],
        fields: &[String],
        cursor: &StreamCursor,
        limit: usize,
        include_archived: bool,
    ) -> Result<StreamRead, ConnectorError> {
        let limit = limit.clamp(1, MAX_ROWS_PER_PAGE);
        let mut fields = fields.to_vec();
        fields.push("write_date".into());
        let mut cursor = cursor.clone();
        let mut rows = Vec::new();
        let mut next_domain: Vec<Value> = base_domain.to_vec();
        if let Some(watermark) = cursor.watermark.clone() {
            let second = parse_datetime(&json!(watermark)).ok_or_else(|| {
                ConnectorError::new(
                    ErrorKind::InvalidRequest,
                    format!("reading {model} from odoo {:?}", self.system),
                    format!("the stored watermark {watermark:?} is not an Odoo datetime"),
                )
            })?;
            let next_second = format_datetime(second + chrono::Duration::seconds(1));
            let mut domain = base_domain.to_vec();
            domain.push(json!(["write_date", ">=", watermark]));
            domain.push(json!(["write_date", "<", next_second]));
            if !cursor.seen.is_empty() {
                domain.push(json!(["id", "not in", cursor.seen]));
            }
            if let Some(after_id) = cursor.after_id {
                domain.push(json!(["id", ">", after_id]));
            }
            let options =
                SearchOptions { limit: Some(limit), order: Some("id asc"), include_archived, ..Default::default() };
            let tie = self.search_read(model, Value::Array(domain), &fields, options).await?;
            let full = tie.len() >= limit;
            for row in &tie {
                let id = row.get("id").and_then(Value::as_i64).unwrap_or_default();
                if cursor.after_id.is_some() || cursor.seen.len() >= MAX_SEEN {
                    cursor.after_id = Some(id);
                } else {
                    cursor.seen.push(id);
                }
            }
            rows.extend(tie);
            if full {
                return Ok(StreamRead { rows, cursor, exhausted: false });
            }
            next_domain.push(json!(["write_date", ">=", next_second]));
        }
        let remaining = limit - rows.len();
        let options = SearchOptions {
            limit: Some(remaining),
            order: Some("write_date asc, id asc"),
            include_archived,
            ..Default::default()
        };
        let later = self.search_read(model, Value::Array(next_domain), &fields, options).await?;
        let exhausted = later.len() < remaining;
        if let Some(last) = later.last().and_then(|row| row.get("write_date")).and_then(Value::as_str) {
            let last = last.get(..19).unwrap_or(last).to_string();
            let seen: Vec<i64> = later
                .iter()
                .filter(|row| row.get("write_date").and_then(Value::as_str).is_some_and(|at| at.starts_with(&last)))
                .filter_map(|row| row.get("id").and_then(Value::as_i64))
                .collect();
            cursor = StreamCursor { watermark: Some(last), seen, after_id: None };
        }
        rows.extend(later);
        Ok(StreamRead { rows, cursor, exhausted })
    }

    fn stream_cursor(&self, cursor: &SourceCursor, name: &str) -> StreamCursor {
        cursor.streams.get(name).cloned().unwrap_or_default()
    }

    /// Attribute value id -> (attribute, value), read once per value.
    async fn attribute_values(
        &self,
        relation: &str,
        wanted: &BTreeSet<i64>,
    ) -> Result<HashMap<i64, (String, String)>, ConnectorError> {
        let missing: Vec<i64> = {
            let cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            wanted.iter().copied().filter(|id| !cache.attribute_values.contains_key(id)).collect()
        };
        if !missing.is_empty() {
            let rows = self
                .search_read(
                    relation,
                    json!([["id", "in", missing]]),
                    &["name".into(), "attribute_id".into()],
                    SearchOptions { include_archived: true, ..Default::default() },
                )
                .await?;
            let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for row in rows {
                let Some(id) = row.get("id").and_then(Value::as_i64) else { continue };
                let attribute = many2one_name(row.get("attribute_id")).unwrap_or_default();
                let value = text(row.get("name")).unwrap_or_default();
                cache.attribute_values.insert(id, (attribute, value));
            }
        }
        let cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(wanted.iter().filter_map(|id| cache.attribute_values.get(id).map(|pair| (*id, pair.clone()))).collect())
    }

    /// `product.product` id -> `default_code` (false when it has none).
    async fn skus(&self, product_ids: &BTreeSet<i64>) -> Result<HashMap<i64, Option<String>>, ConnectorError> {
        if product_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = self
            .search_read(
                "product.product",
                json!([["id", "in", product_ids.iter().collect::<Vec<_>>()]]),
                &["default_code".into()],
                SearchOptions { include_archived: true, ..Default::default() },
            )
            .await?;
        Ok(rows.iter().filter_map(|row| Some((row.get("id")?.as_i64()?, text(row.get("default_code"))))).collect())
    }

    /// Sales order id -> the shop's order number (`client_order_ref`), else the order's name.
    async fn order_numbers(&self, domain: Value) -> Result<Vec<(i64, String, String)>, ConnectorError> {
        let rows = self
            .search_read("sale.order", domain, &["name".into(), "client_order_ref".into()], SearchOptions::default())
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let id = row.get("id")?.as_i64()?;
                let name = text(row.get("name")).unwrap_or_default();
                let number = text(row.get("client_order_ref")).unwrap_or_else(|| name.clone());
                Some((id, name, number))
            })
            .collect())
    }

    /// The configured locations: internal location id -> canonical location name.
    pub async fn locations(&self) -> Result<(Arc<BTreeMap<i64, String>>, Vec<String>), ConnectorError> {
        {
            let cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(locations) = &cache.locations {
                return Ok((locations.clone(), cache.location_names.clone()));
            }
        }
        let context = format!("resolving the warehouses of odoo {:?}", self.system);
        let warehouses = self
            .search_read(
                "stock.warehouse",
                json!([]),
                &["code".into(), "name".into(), "lot_stock_id".into()],
                SearchOptions { order: Some("id asc"), ..Default::default() },
            )
            .await?;
        let mut roots: Vec<(String, i64)> = Vec::new();
        if self.config.warehouses.is_empty() {
            for warehouse in &warehouses {
                if let (Some(code), Some(stock)) =
                    (text(warehouse.get("code")), many2one_id(warehouse.get("lot_stock_id")))
                {
                    roots.push((code, stock));
                }
            }
        } else {
            for (name, target) in &self.config.warehouses {
                let by_code = warehouses
                    .iter()
                    .find(|warehouse| text(warehouse.get("code")).as_deref() == Some(target.as_str()))
                    .and_then(|warehouse| many2one_id(warehouse.get("lot_stock_id")));
                let root = match by_code {
                    Some(root) => root,
                    None => {
                        let found = self
                            .search_read(
                                "stock.location",
                                json!(["|", ["name", "=", target], ["complete_name", "=", target]]),
                                &["id".into()],
                                SearchOptions { limit: Some(2), ..Default::default() },
                            )
                            .await?;
                        match found.as_slice() {
                            [one] => one.get("id").and_then(Value::as_i64).unwrap_or_default(),
                            [] => {
                                return Err(ConnectorError::new(
                                    ErrorKind::InvalidRequest,
                                    context,
                                    format!(
                                        "warehouses.{name}: no warehouse with code {target:?} and no location named {target:?}"
                                    ),
                                ));
                            }
                            _ => {
                                return Err(ConnectorError::new(
                                    ErrorKind::InvalidRequest,
                                    context,
                                    format!(
                                        "warehouses.{name}: several locations are named {target:?}; give the full name (\"WH/Stock/Shelf 1\")"
                                    ),
                                ));
                            }
                        }
                    }
                };
                roots.push((name.clone(), root));
            }
        }
        let mut locations = BTreeMap::new();
        for (name, root) in &roots {
            let children = self
                .search_read(
                    "stock.location",
                    json!([["id", "child_of", root], ["usage", "=", "internal"]]),
                    &["id".into()],
                    SearchOptions::default(),
                )
                .await?;
            for child in children {
                if let Some(id) = child.get("id").and_then(Value::as_i64) {
                    locations.entry(id).or_insert_with(|| name.clone());
                }
            }
        }
        let names: Vec<String> = roots.into_iter().map(|(name, _)| name).collect();
        let locations = Arc::new(locations);
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.locations = Some(locations.clone());
        cache.location_names = names.clone();
        Ok((locations, names))
    }
}

#[async_trait]
impl Source for OdooConnector {
    fn capabilities(&self, entity: EntityKind) -> Capabilities {
        let read = matches!(
            entity,
            EntityKind::Product
                | EntityKind::PriceList
                | EntityKind::StockLevel
                | EntityKind::Shipment
                | EntityKind::OrderStatus
                | EntityKind::Document
        );
        Capabilities { read, incremental_read: read && entity != EntityKind::PriceList, ..Capabilities::default() }
    }

    async fn read_page(&self, request: &ReadRequest<'_>) -> Result<SourcePage, ConnectorError> {
        let context = format!("reading {} from odoo {:?}", request.entity, self.system);
        let cursor = match request.checkpoint.cursor.as_deref() {
            None => SourceCursor { v: 1, ..Default::default() },
            Some(text) => serde_json::from_str::<SourceCursor>(text).map_err(|error| {
                ConnectorError::new(
                    ErrorKind::InvalidRequest,
                    &context,
                    format!("the stored cursor is not ours: {error}"),
                )
            })?,
        };
        let limit = request.page_size.clamp(1, MAX_ROWS_PER_PAGE);
        let (records, cursor, done) = match request.entity {
            EntityKind::Product => self.read_products(cursor, limit).await?,
            EntityKind::PriceList => (self.read_price_lists().await?, cursor, true),
            EntityKind::StockLevel => self.read_stock(cursor, limit).await?,
            EntityKind::Shipment => self.read_shipments(cursor, limit).await?,
            EntityKind::OrderStatus => self.read_order_status(cursor, limit).await?,
            EntityKind::Document => self.read_documents(cursor, limit).await?,
            other => {
                return Err(ConnectorError::new(
                    ErrorKind::InvalidRequest,
                    context,
                    format!(
                        "the odoo connector does not read {other}; it reads product, price_list, stock_level, shipment, order_status and document"
                    ),
                ));
            }
        };
        let watermark = cursor
            .streams
            .values()
            .filter_map(|stream| stream.watermark.as_ref())
            .filter_map(|at| parse_datetime(&json!(at)))
            .max()
            .or(request.checkpoint.watermark);
        let cursor_text = serde_json::to_string(&cursor).expect("cursors always serialize");
        Ok(SourcePage { records, checkpoint: Checkpoint { watermark, cursor: Some(cursor_text) }, done })
    }
}

type PageResult = (Vec<SourceRecord>, SourceCursor, bool);

/// On hand, reserved and newest change of one product in one location.
type QuantTotals = (Decimal, Decimal, Option<DateTime<Utc>>);

fn record(model: &str, id: i64, origin_name: Option<String>, content: Result<Record, RecordProblem>) -> SourceRecord {
    let content = content.and_then(|record| match record.validate() {
        Ok(()) => Ok(record),
        Err(errors) => Err(RecordProblem {
            kind: "validation".into(),
            message: errors.to_string(),
            raw: serde_json::to_value(&record).unwrap_or_default(),
        }),
    });
    SourceRecord {
        source_id: id.to_string(),
        origin: Some(match origin_name {
            Some(name) => format!("{model} {id} ({name})"),
            None => format!("{model} {id}"),
        }),
        origin_group: None,
        content,
    }
}

fn row_id(row: &Value) -> i64 {
    row.get("id").and_then(Value::as_i64).unwrap_or_default()
}

impl OdooConnector {
    async fn read_products(&self, mut cursor: SourceCursor, limit: usize) -> Result<PageResult, ConnectorError> {
        let template_fields = self.fields("product.template").await?;
        let variant_fields = self.fields("product.product").await?;
        let custom_template = template_fields.custom();
        let custom_variant = variant_fields.custom();
        let mut fields: Vec<String> = ["name", "default_code", "list_price", "active", "categ_id", "description_sale"]
            .iter()
            .map(|name| name.to_string())
            .collect();
        for optional in ["weight", "barcode"] {
            if template_fields.has(optional) {
                fields.push(optional.into());
            }
        }
        fields.extend(custom_template.iter().cloned());

        // On the first read, variants changed before now are read with their templates: the
        // variant stream starts at the newest variant's second.
        if !cursor.streams.contains_key("templates") && !cursor.streams.contains_key("variants") {
            let newest = self
                .search_read(
                    "product.product",
                    json!([]),
                    &["write_date".into()],
                    SearchOptions {
                        limit: Some(1),
                        order: Some("write_date desc, id desc"),
                        include_archived: true,
                        offset: 0,
                    },
                )
                .await?;
            let watermark = newest.first().and_then(|row| text(row.get("write_date")));
            let mut seen = Vec::new();
            if let Some(second) = watermark.as_deref().and_then(|at| parse_datetime(&json!(at))) {
                let rows = self
                    .search_read(
                        "product.product",
                        json!([
                            ["write_date", ">=", format_datetime(second)],
                            ["write_date", "<", format_datetime(second + chrono::Duration::seconds(1))]
                        ]),
                        &["id".into()],
                        SearchOptions {
                            limit: Some(MAX_SEEN),
                            order: Some("id asc"),
                            include_archived: true,
                            ..Default::default()
                        },
                    )
                    .await?;
                seen = rows.iter().map(row_id).collect();
            }
            let after_id = (seen.len() >= MAX_SEEN).then(|| seen.iter().copied().max().unwrap_or_default());
            if after_id.is_some() {
                seen.clear();
            }
            cursor.streams.insert("variants".into(), StreamCursor { watermark, seen, after_id });
        }

        let templates_cursor = self.stream_cursor(&cursor, "templates");
        let read = self.read_changes("product.template", &[], &fields, &templates_cursor, limit, true).await?;
        cursor.streams.insert("templates".into(), read.cursor);
        let mut templates = read.rows;
        let mut done = false;
        if read.exhausted && templates.len() < limit {
            let variants_cursor = self.stream_cursor(&cursor, "variants");
            let changed = self
                .read_changes(
                    "product.product",
                    &[],
                    &["product_tmpl_id".into()],
                    &variants_cursor,
                    limit - templates.len(),
                    true,
                )
                .await?;
            cursor.streams.insert("variants".into(), changed.cursor);
            done = changed.exhausted;
            let known: BTreeSet<i64> = templates.iter().map(row_id).collect();
            let wanted: BTreeSet<i64> = changed
                .rows
                .iter()
                .filter_map(|row| many2one_id(row.get("product_tmpl_id")))
                .filter(|id| !known.contains(id))
                .collect();
            if !wanted.is_empty() {
                let more = self
                    .search_read(
                        "product.template",
                        json!([["id", "in", wanted.iter().collect::<Vec<_>>()]]),
                        &fields.iter().cloned().chain(["write_date".to_string()]).collect::<Vec<_>>(),
                        SearchOptions { include_archived: true, order: Some("id asc"), ..Default::default() },
                    )
                    .await?;
                templates.extend(more);
            }
        }
        if templates.is_empty() {
            return Ok((Vec::new(), cursor, done));
        }

        // The variants of the whole page in one call.
        let template_ids: Vec<i64> = templates.iter().map(row_id).collect();
        let attribute_field = variant_fields
            .first_of(&["product_template_attribute_value_ids", "product_template_variant_value_ids"])
            .map(str::to_string);
        let mut variant_read: Vec<String> =
            ["product_tmpl_id", "default_code", "barcode", "price_extra", "standard_price", "active"]
                .iter()
                .map(|name| name.to_string())
                .collect();
        if let Some(field) = &attribute_field {
            variant_read.push(field.clone());
        }
        if variant_fields.has("weight") {
            variant_read.push("weight".into());
        }
        variant_read.extend(custom_variant.iter().cloned());
        let variants = self
            .search_read(
                "product.product",
                json!([["product_tmpl_id", "in", template_ids]]),
                &variant_read,
                SearchOptions { include_archived: true, order: Some("id asc"), ..Default::default() },
            )
            .await?;
        let mut by_template: HashMap<i64, Vec<&Value>> = HashMap::new();
        for variant in &variants {
            if let Some(template) = many2one_id(variant.get("product_tmpl_id")) {
                by_template.entry(template).or_default().push(variant);
            }
        }
        let value_ids: BTreeSet<i64> = match &attribute_field {
            Some(field) => variants.iter().flat_map(|variant| ids(variant.get(field))).collect(),
            None => BTreeSet::new(),
        };
        let relation = attribute_field
            .as_deref()
            .and_then(|field| variant_fields.fields.get(field))
            .and_then(|info| info.relation.clone())
            .unwrap_or_else(|| "product.template.attribute.value".into());
        let values =
            if value_ids.is_empty() { HashMap::new() } else { self.attribute_values(&relation, &value_ids).await? };

        let mut records = Vec::with_capacity(templates.len());
        for template in &templates {
            let id = row_id(template);
            let variants = by_template.get(&id).map(Vec::as_slice).unwrap_or_default();
            let product = product_from(
                template,
                variants,
                attribute_field.as_deref(),
                &values,
                self.currency,
                &custom_template,
                &custom_variant,
            );
            records.push(record("product.template", id, text(template.get("name")), Ok(Record::Product(product))));
        }
        Ok((records, cursor, done))
    }

    async fn read_price_lists(&self) -> Result<Vec<SourceRecord>, ConnectorError> {
        let list_fields = self.fields("product.pricelist").await?;
        let mut read = vec!["name".to_string()];
        if list_fields.has("currency_id") {
            read.push("currency_id".into());
        }
        let domain = if self.config.price_lists.is_empty() {
            json!([])
        } else {
            json!([["name", "in", self.config.price_lists.values().collect::<Vec<_>>()]])
        };
        let lists = self
            .search_read(
                "product.pricelist",
                domain,
                &read,
                SearchOptions { order: Some("id asc"), ..Default::default() },
            )
            .await?;
        for (group, name) in &self.config.price_lists {
            if !lists.iter().any(|list| text(list.get("name")).as_deref() == Some(name.as_str())) {
                return Err(ConnectorError::new(
                    ErrorKind::InvalidRequest,
                    format!("reading price lists from odoo {:?}", self.system),
                    format!("price_lists.{group}: no product.pricelist named {name:?}"),
                ));
            }
        }
        let list_ids: Vec<i64> = lists.iter().map(row_id).collect();
        let items = self
            .search_read(
                "product.pricelist.item",
                json!([["pricelist_id", "in", list_ids]]),
                &[
                    "pricelist_id",
                    "applied_on",
                    "product_tmpl_id",
                    "product_id",
                    "categ_id",
                    "min_quantity",
                    "compute_price",
                    "fixed_price",
                    "percent_price",
                    "date_start",
                    "date_end",
                ]
                .iter()
                .map(|name| name.to_string())
                .collect::<Vec<_>>(),
                SearchOptions { order: Some("id asc"), ..Default::default() },
            )
            .await?;
        // Prices of the products the items name: SKU and list price of each variant.
        let template_ids: BTreeSet<i64> =
            items.iter().filter_map(|item| many2one_id(item.get("product_tmpl_id"))).collect();
        let variant_ids: BTreeSet<i64> = items.iter().filter_map(|item| many2one_id(item.get("product_id"))).collect();
        let mut variants: Vec<Value> = Vec::new();
        if !template_ids.is_empty() || !variant_ids.is_empty() {
            variants = self
                .search_read(
                    "product.product",
                    json!([
                        "|",
                        ["product_tmpl_id", "in", template_ids.iter().collect::<Vec<_>>()],
                        ["id", "in", variant_ids.iter().collect::<Vec<_>>()]
                    ]),
                    &["product_tmpl_id".into(), "default_code".into(), "lst_price".into()],
                    SearchOptions { order: Some("id asc"), ..Default::default() },
                )
                .await?;
        }
        let now = Utc::now();
        let mut records = Vec::new();
        for list in &lists {
            let id = row_id(list);
            let name = text(list.get("name")).unwrap_or_default();
            let group = self
                .config
                .price_lists
                .iter()
                .find(|(_, list_name)| **list_name == name)
                .map(|(group, _)| group.clone());
            let list_items: Vec<&Value> =
                items.iter().filter(|item| many2one_id(item.get("pricelist_id")) == Some(id)).collect();
            let price_list = price_list_from(&name, group, &list_items, &variants, currency(list, self.currency), now);
            records.push(record("product.pricelist", id, Some(name), Ok(Record::PriceList(price_list))));
        }
        Ok(records)
    }

    async fn read_stock(&self, mut cursor: SourceCursor, limit: usize) -> Result<PageResult, ConnectorError> {
        let (locations, names) = self.locations().await?;
        let location_ids: Vec<i64> = locations.keys().copied().collect();
        let per_product = names.len().max(1);
        let quant_limit = (limit / per_product).max(1);
        let stream = self.stream_cursor(&cursor, "quants");
        let read = self
            .read_changes(
                "stock.quant",
                &[json!(["location_id", "in", location_ids])],
                &["product_id".into()],
                &stream,
                quant_limit,
                false,
            )
            .await?;
        cursor.streams.insert("quants".into(), read.cursor);
        let products: BTreeSet<i64> = read.rows.iter().filter_map(|row| many2one_id(row.get("product_id"))).collect();
        if products.is_empty() {
            return Ok((Vec::new(), cursor, read.exhausted));
        }
        let quants = self
            .search_read(
                "stock.quant",
                json!([["product_id", "in", products.iter().collect::<Vec<_>>()], ["location_id", "in", location_ids]]),
                &[
                    "product_id".into(),
                    "location_id".into(),
                    "quantity".into(),
                    "reserved_quantity".into(),
                    "write_date".into(),
                ],
                SearchOptions::default(),
            )
            .await?;
        let skus = self.skus(&products).await?;
        // (product, location name) -> (on hand, reserved, newest change)
        let mut totals: BTreeMap<(i64, &str), QuantTotals> = BTreeMap::new();
        for product in &products {
            for name in &names {
                totals.insert((*product, name.as_str()), (Decimal::ZERO, Decimal::ZERO, None));
            }
        }
        for quant in &quants {
            let (Some(product), Some(location)) =
                (many2one_id(quant.get("product_id")), many2one_id(quant.get("location_id")))
            else {
                continue;
            };
            let Some(name) = locations.get(&location) else { continue };
            let entry = totals.entry((product, name.as_str())).or_insert((Decimal::ZERO, Decimal::ZERO, None));
            entry.0 += decimal(quant.get("quantity"));
            entry.1 += decimal(quant.get("reserved_quantity"));
            entry.2 = entry.2.max(quant.get("write_date").and_then(parse_datetime));
        }
        let mut records = Vec::with_capacity(totals.len());
        for ((product, location), (on_hand, reserved, updated_at)) in totals {
            let source_id = format!("{product}@{location}");
            let origin = Some(format!("product.product {product} at {location}"));
            let content = match skus.get(&product).cloned().flatten() {
                Some(sku) => {
                    let mut extra = erpsync_model::Extra::new();
                    extra.insert("odoo_product_id", json!(product));
                    extra.insert("reserved", json!(reserved.normalize().to_string()));
                    let level = StockLevel {
                        sku,
                        location: location.to_string(),
                        available: (on_hand - reserved).max(Decimal::ZERO).normalize(),
                        on_hand: Some(on_hand.normalize()),
                        updated_at,
                        extra,
                    };
                    Ok(Record::StockLevel(level))
                }
                None => Err(RecordProblem {
                    kind: "validation".into(),
                    message: format!(
                        "product.product {product} has no internal reference (default_code), the SKU stock is keyed by"
                    ),
                    raw: json!({"product_id": product, "location": location, "on_hand": on_hand.to_string()}),
                }),
            };
            records.push(SourceRecord { source_id, origin, origin_group: None, content });
        }
        Ok((records, cursor, read.exhausted))
    }

    async fn read_shipments(&self, mut cursor: SourceCursor, limit: usize) -> Result<PageResult, ConnectorError> {
        let picking_fields = self.fields("stock.picking").await?;
        let move_fields = self.fields("stock.move").await?;
        let mut read: Vec<String> = ["name", "origin", "sale_id", "date_done", "carrier_tracking_ref", "location_id"]
            .iter()
            .map(|n| n.to_string())
            .collect();
        let carrier_field = picking_fields.first_of(&["carrier_id"]);
        if let Some(field) = carrier_field {
            read.push(field.into());
        }
        let stream = self.stream_cursor(&cursor, "pickings");
        let domain = [json!(["picking_type_code", "=", "outgoing"]), json!(["state", "=", "done"])];
        let changed = self.read_changes("stock.picking", &domain, &read, &stream, limit, false).await?;
        cursor.streams.insert("pickings".into(), changed.cursor);
        if changed.rows.is_empty() {
            return Ok((Vec::new(), cursor, changed.exhausted));
        }
        let picking_ids: Vec<i64> = changed.rows.iter().map(row_id).collect();
        let done_field = move_fields.first_of(&["quantity", "quantity_done"]).unwrap_or("quantity");
        let moves = self
            .search_read(
                "stock.move",
                json!([["picking_id", "in", picking_ids]]),
                &["picking_id".into(), "product_id".into(), done_field.into(), "state".into()],
                SearchOptions { order: Some("id asc"), ..Default::default() },
            )
            .await?;
        let products: BTreeSet<i64> = moves.iter().filter_map(|row| many2one_id(row.get("product_id"))).collect();
        let skus = self.skus(&products).await?;
        let order_ids: BTreeSet<i64> = changed.rows.iter().filter_map(|row| many2one_id(row.get("sale_id"))).collect();
        let orders: HashMap<i64, (String, String)> = if order_ids.is_empty() {
            HashMap::new()
        } else {
            self.order_numbers(json!([["id", "in", order_ids.iter().collect::<Vec<_>>()]]))
                .await?
                .into_iter()
                .map(|(id, name, number)| (id, (name, number)))
                .collect()
        };
        let mut records = Vec::new();
        for picking in &changed.rows {
            let id = row_id(picking);
            let name = text(picking.get("name")).unwrap_or_default();
            let mut lines = Vec::new();
            let mut problem = None;
            for line in moves.iter().filter(|line| many2one_id(line.get("picking_id")) == Some(id)) {
                let quantity = decimal(line.get(done_field));
                if quantity <= Decimal::ZERO || text(line.get("state")).as_deref() == Some("cancel") {
                    continue;
                }
                let product = many2one_id(line.get("product_id")).unwrap_or_default();
                match skus.get(&product).cloned().flatten() {
                    Some(sku) => lines.push(ShipmentLine { sku, quantity }),
                    None => {
                        problem = Some(format!(
                            "product.product {product} shipped in {name} has no internal reference (default_code)"
                        ))
                    }
                }
            }
            let order = many2one_id(picking.get("sale_id")).and_then(|order| orders.get(&order));
            let mut extra = erpsync_model::Extra::new();
            extra.insert("odoo_picking_id", json!(id));
            if let Some((order_name, _)) = order {
                extra.insert("odoo_order", json!(order_name));
            }
            let tracking = text(picking.get("carrier_tracking_ref"))
                .map(|number| Tracking {
                    carrier: carrier_field.and_then(|field| many2one_name(picking.get(field))).unwrap_or_default(),
                    number,
                    url: None,
                })
                .into_iter()
                .collect();
            let shipment = Shipment {
                number: name.clone(),
                order_number: order
                    .map(|(_, number)| number.clone())
                    .or_else(|| text(picking.get("origin")))
                    .unwrap_or_default(),
                shipped_at: picking.get("date_done").and_then(parse_datetime),
                location: many2one_name(picking.get("location_id")),
                lines,
                tracking,
                notify_customer: true,
                extra,
            };
            let content = match problem {
                Some(message) => Err(RecordProblem { kind: "validation".into(), message, raw: picking.clone() }),
                None => Ok(Record::Shipment(shipment)),
            };
            records.push(record("stock.picking", id, Some(name), content));
        }
        Ok((records, cursor, changed.exhausted))
    }

    async fn read_order_status(&self, mut cursor: SourceCursor, limit: usize) -> Result<PageResult, ConnectorError> {
        let order_fields = self.fields("sale.order").await?;
        let mut read: Vec<String> =
            ["name", "client_order_ref", "state", "invoice_status"].iter().map(|n| n.to_string()).collect();
        for optional in ["locked", "delivery_status"] {
            if order_fields.has(optional) {
                read.push(optional.into());
            }
        }
        let stream = self.stream_cursor(&cursor, "orders");
        let domain = [json!(["client_order_ref", "!=", false])];
        let changed = self.read_changes("sale.order", &domain, &read, &stream, limit, false).await?;
        cursor.streams.insert("orders".into(), changed.cursor);
        if changed.rows.is_empty() {
            return Ok((Vec::new(), cursor, changed.exhausted));
        }
        // Fulfilment: Odoo 16+ says it in `delivery_status`; before, the order's transfers do.
        let pickings = if order_fields.has("delivery_status") || !order_fields.has("picking_ids") {
            Vec::new()
        } else {
            let order_ids: Vec<i64> = changed.rows.iter().map(row_id).collect();
            self.search_read(
                "stock.picking",
                json!([["sale_id", "in", order_ids]]),
                &["sale_id".into(), "state".into()],
                SearchOptions::default(),
            )
            .await?
        };
        let mut records = Vec::new();
        for order in &changed.rows {
            let id = row_id(order);
            let fulfillment = match text(order.get("delivery_status")) {
                Some(status) => map::delivery_status(&status),
                None => {
                    let states: Vec<String> = pickings
                        .iter()
                        .filter(|picking| many2one_id(picking.get("sale_id")) == Some(id))
                        .filter_map(|picking| text(picking.get("state")))
                        .collect();
                    map::fulfillment(&states)
                }
            };
            let state = text(order.get("state")).unwrap_or_default();
            let locked = order.get("locked").and_then(Value::as_bool).unwrap_or(false);
            let mut extra = erpsync_model::Extra::new();
            extra.insert("odoo_order", json!(text(order.get("name"))));
            extra.insert("odoo_state", json!(state));
            extra.insert("invoice_status", json!(text(order.get("invoice_status"))));
            let change = OrderStatusChange {
                order_number: text(order.get("client_order_ref")).unwrap_or_default(),
                state: map::order_state(&state, locked, fulfillment == erpsync_model::FulfillmentStatus::Fulfilled),
                financial_status: None,
                fulfillment_status: Some(fulfillment),
                changed_at: order.get("write_date").and_then(parse_datetime),
                note: None,
                extra,
            };
            records.push(record("sale.order", id, text(order.get("name")), Ok(Record::OrderStatus(change))));
        }
        Ok((records, cursor, changed.exhausted))
    }

    async fn read_documents(&self, mut cursor: SourceCursor, limit: usize) -> Result<PageResult, ConnectorError> {
        let move_fields = self.fields("account.move").await?;
        let line_fields = self.fields("account.move.line").await?;
        let mut read: Vec<String> = [
            "name",
            "move_type",
            "invoice_date",
            "invoice_origin",
            "ref",
            "amount_untaxed",
            "amount_tax",
            "amount_total",
            "payment_state",
        ]
        .iter()
        .map(|n| n.to_string())
        .collect();
        if move_fields.has("currency_id") {
            read.push("currency_id".into());
        }
        let stream = self.stream_cursor(&cursor, "invoices");
        let domain = [json!(["move_type", "in", ["out_invoice", "out_refund"]]), json!(["state", "=", "posted"])];
        let changed = self.read_changes("account.move", &domain, &read, &stream, limit, false).await?;
        cursor.streams.insert("invoices".into(), changed.cursor);
        if changed.rows.is_empty() {
            return Ok((Vec::new(), cursor, changed.exhausted));
        }
        let move_ids: Vec<i64> = changed.rows.iter().map(row_id).collect();
        let mut line_domain = vec![json!(["move_id", "in", move_ids])];
        if line_fields.has("display_type") {
            // Journal items also hold the tax and payment term lines; the invoice's lines are
            // the product ones.
            line_domain.push(json!(["display_type", "=", "product"]));
        }
        let lines = self
            .search_read(
                "account.move.line",
                Value::Array(line_domain),
                &["move_id", "product_id", "name", "quantity", "price_unit", "price_subtotal"]
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>(),
                SearchOptions { order: Some("id asc"), ..Default::default() },
            )
            .await?;
        let products: BTreeSet<i64> = lines.iter().filter_map(|row| many2one_id(row.get("product_id"))).collect();
        let skus = self.skus(&products).await?;
        let origins: BTreeSet<String> = changed.rows.iter().filter_map(|row| text(row.get("invoice_origin"))).collect();
        let orders: HashMap<String, String> = if origins.is_empty() {
            HashMap::new()
        } else {
            self.order_numbers(json!([["name", "in", origins.iter().collect::<Vec<_>>()]]))
                .await?
                .into_iter()
                .map(|(_, name, number)| (name, number))
                .collect()
        };
        let mut records = Vec::new();
        for invoice in &changed.rows {
            let id = row_id(invoice);
            let name = text(invoice.get("name")).unwrap_or_default();
            let kind = match text(invoice.get("move_type")).as_deref() {
                Some("out_refund") => DocumentKind::CreditNote,
                _ => DocumentKind::Invoice,
            };
            let document_lines: Vec<DocumentLine> = lines
                .iter()
                .filter(|line| many2one_id(line.get("move_id")) == Some(id))
                .map(|line| DocumentLine {
                    sku: many2one_id(line.get("product_id")).and_then(|product| skus.get(&product).cloned().flatten()),
                    title: text(line.get("name")).unwrap_or_default(),
                    quantity: decimal(line.get("quantity")),
                    unit_price: decimal(line.get("price_unit")),
                    total: decimal(line.get("price_subtotal")),
                })
                .collect();
            let mut extra = erpsync_model::Extra::new();
            extra.insert("odoo_move_id", json!(id));
            extra.insert("payment_state", json!(text(invoice.get("payment_state"))));
            if let Some(origin) = text(invoice.get("invoice_origin")) {
                extra.insert("odoo_order", json!(origin));
            }
            let order_number =
                text(invoice.get("invoice_origin")).map(|origin| orders.get(&origin).cloned().unwrap_or(origin));
            let subtotal = decimal(invoice.get("amount_untaxed"));
            let document = Document {
                kind,
                number: name.clone(),
                order_number,
                issued_at: invoice.get("invoice_date").and_then(parse_date),
                currency: currency(invoice, self.currency),
                lines: document_lines,
                totals: OrderTotals {
                    subtotal,
                    discount_total: Decimal::ZERO,
                    shipping_total: Decimal::ZERO,
                    tax_total: decimal(invoice.get("amount_tax")),
                    total: decimal(invoice.get("amount_total")),
                },
                pdf: Some(erpsync_model::Pdf::Url {
                    url: format!("{}/report/pdf/account.report_invoice/{id}", self.base_url()),
                }),
                extra,
            };
            records.push(record("account.move", id, Some(name), Ok(Record::Document(document))));
        }
        Ok((records, cursor, changed.exhausted))
    }
}

/// A template and its variants as a canonical product. Archived variants are left out.
pub fn product_from(
    template: &Value,
    variants: &[&Value],
    attribute_field: Option<&str>,
    values: &HashMap<i64, (String, String)>,
    currency: erpsync_model::Currency,
    custom_template: &[String],
    custom_variant: &[String],
) -> Product {
    let list_price = decimal(template.get("list_price"));
    let active_variants: Vec<&&Value> =
        variants.iter().filter(|variant| variant.get("active").and_then(Value::as_bool).unwrap_or(true)).collect();
    let mut options: Vec<ProductOption> = Vec::new();
    let mut canonical_variants = Vec::with_capacity(active_variants.len());
    for variant in &active_variants {
        let mut option_values = Vec::new();
        if let Some(field) = attribute_field {
            for value_id in ids(variant.get(field)) {
                let Some((attribute, value)) = values.get(&value_id) else { continue };
                option_values.push(OptionValue { option: attribute.clone(), value: value.clone() });
                match options.iter_mut().find(|option| &option.name == attribute) {
                    Some(option) if !option.values.contains(value) => option.values.push(value.clone()),
                    Some(_) => {}
                    None => options.push(ProductOption { name: attribute.clone(), values: vec![value.clone()] }),
                }
            }
        }
        let weight = decimal(variant.get("weight").or_else(|| template.get("weight")));
        let mut extra = custom_fields(variant, custom_variant);
        extra.insert("odoo_product_id", json!(row_id(variant)));
        let cost = decimal(variant.get("standard_price"));
        canonical_variants.push(Variant {
            sku: text(variant.get("default_code")).unwrap_or_default(),
            title: (!option_values.is_empty())
                .then(|| option_values.iter().map(|value| value.value.clone()).collect::<Vec<_>>().join(" / ")),
            barcode: text(variant.get("barcode")),
            options: option_values,
            price: Some(Money::new((list_price + decimal(variant.get("price_extra"))).normalize(), currency)),
            compare_at_price: None,
            cost: (cost > Decimal::ZERO).then(|| Money::new(cost, currency)),
            price_includes_tax: false,
            weight: (weight > Decimal::ZERO).then(|| Weight { value: weight, unit: "kg".into() }),
            track_inventory: true,
            extra,
        });
    }
    let template_id = row_id(template);
    let code = text(template.get("default_code"))
        .or_else(|| match canonical_variants.as_slice() {
            [only] if !only.sku.is_empty() => Some(only.sku.clone()),
            _ => None,
        })
        .unwrap_or_else(|| format!("odoo-template-{template_id}"));
    let mut extra = custom_fields(template, custom_template);
    extra.insert("odoo_template_id", json!(template_id));
    Product {
        code,
        title: text(template.get("name")).unwrap_or_default(),
        description: text(template.get("description_sale")),
        status: if template.get("active").and_then(Value::as_bool).unwrap_or(true) {
            ProductStatus::Active
        } else {
            ProductStatus::Archived
        },
        categories: many2one_name(template.get("categ_id")).map(|name| category_path(&name)).into_iter().collect(),
        options,
        variants: canonical_variants,
        updated_at: template.get("write_date").and_then(parse_datetime),
        extra,
        ..Product::default()
    }
}

/// A pricelist's items as a canonical price list. Fixed prices of a variant or a product become
/// entries (one per variant, from `min_quantity` on); percentage discounts of a product are
/// computed from the variants' list prices. Items valid now are taken; rules on categories or
/// the whole catalog, formulas and items not valid now are listed in `extra.rules`.
pub fn price_list_from(
    name: &str,
    group: Option<String>,
    items: &[&Value],
    variants: &[Value],
    currency: erpsync_model::Currency,
    now: DateTime<Utc>,
) -> PriceList {
    let mut entries = Vec::new();
    let mut rules = Vec::new();
    let mut valid_from: Option<DateTime<Utc>> = None;
    let mut valid_to: Option<DateTime<Utc>> = None;
    let mut updated_at = None;
    for item in items {
        updated_at = updated_at.max(item.get("write_date").and_then(parse_datetime));
        let start =
            item.get("date_start").and_then(parse_datetime).or_else(|| item.get("date_start").and_then(parse_date));
        let end = item.get("date_end").and_then(parse_datetime).or_else(|| item.get("date_end").and_then(parse_date));
        let valid_now = start.is_none_or(|start| start <= now) && end.is_none_or(|end| end >= now);
        let applied_on = text(item.get("applied_on")).unwrap_or_default();
        let compute = text(item.get("compute_price")).unwrap_or_default();
        let targets: Vec<&Value> = match applied_on.as_str() {
            "0_product_variant" => {
                let wanted = many2one_id(item.get("product_id"));
                variants.iter().filter(|variant| Some(row_id(variant)) == wanted).collect()
            }
            "1_product" => {
                let wanted = many2one_id(item.get("product_tmpl_id"));
                variants.iter().filter(|variant| many2one_id(variant.get("product_tmpl_id")) == wanted).collect()
            }
            _ => Vec::new(),
        };
        let supported = valid_now && !targets.is_empty() && matches!(compute.as_str(), "fixed" | "percentage");
        if !supported {
            let mut rule = (*item).clone();
            if let Value::Object(object) = &mut rule {
                object.remove("write_date");
            }
            rules.push(rule);
            continue;
        }
        if let Some(start) = start {
            valid_from = Some(valid_from.map_or(start, |current| current.max(start)));
        }
        if let Some(end) = end {
            valid_to = Some(valid_to.map_or(end, |current| current.min(end)));
        }
        let min_quantity = decimal(item.get("min_quantity")).max(Decimal::ONE);
        for variant in targets {
            let Some(sku) = text(variant.get("default_code")) else { continue };
            let price = match compute.as_str() {
                "fixed" => decimal(item.get("fixed_price")),
                _ => {
                    let percent = decimal(item.get("percent_price"));
                    (decimal(variant.get("lst_price")) * (Decimal::ONE_HUNDRED - percent) / Decimal::ONE_HUNDRED)
                        .round_dp(currency.minor_units())
                }
            };
            entries.push(PriceEntry { sku, min_quantity: min_quantity.normalize(), price: price.normalize() });
        }
    }
    entries.sort_by(|a, b| a.sku.cmp(&b.sku).then(a.min_quantity.cmp(&b.min_quantity)));
    let mut extra = erpsync_model::Extra::new();
    if !rules.is_empty() {
        extra.insert("rules", Value::Array(rules));
    }
    PriceList {
        code: name.to_string(),
        name: name.to_string(),
        currency,
        customer_group: group,
        prices_include_tax: false,
        valid_from,
        valid_to,
        entries,
        updated_at,
        extra,
    }
}
