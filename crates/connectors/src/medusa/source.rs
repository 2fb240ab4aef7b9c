//! Reading from Medusa: products with variants, customers, orders, order status, stock levels.
//!
//! Products, customers and orders are read incrementally with
//! `updated_at[$gte]=<position>&order=updated_at&limit=…&offset=0`. Medusa sorts by one field
//! only and breaks no ties, and one batch request gives many records the same `updated_at`;
//! so the cursor keeps the position (the last `updated_at` read) and the ids already read at
//! exactly that instant, and the next page starts at the position again, leaving those ids out
//! (the id tie-break). The query asks for that many more records, so that a run of equal
//! timestamps is walked through whatever order Medusa returns it in. A run starts `overlap`
//! before the stored watermark, so changes committed late are read again (and skipped by
//! hash); its watermark never passes the run's start.
//!
//! A price change bumps the variant's `updated_at`, not the product's: the product read has a
//! second phase over `/admin/product-variants` from the same position, which reads the
//! products of changed variants again.
//!
//! Refunds are read from the orders the same way: a refund in Medusa (`POST
//! /admin/payments/{id}/refund`) adds a credit line to its order, which bumps the order's
//! `updated_at`; each order read gives one record per refund of its payments. A refund's
//! source id is `<refund id>@<order id>`, so that it can be fetched again by id (Medusa has no
//! endpoint of its own for refunds).
//!
//! Stock levels are read whole: every inventory item with its location levels, by offset.

use crate::medusa::MedusaConnector;
use crate::medusa::map::{
    customer_from_medusa, format_time, order_from_medusa, order_status_from_medusa, product_from_medusa,
    refunds_from_medusa, stock_from_medusa, time,
};
use crate::{Capabilities, ConnectorError, ErrorKind, ReadRequest, RecordProblem, Source, SourcePage, SourceRecord};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use erpsync_model::{Checkpoint, EntityKind, Record};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;

/// The most ids kept for one instant; more records than this with one `updated_at` stop the
/// read with a clear error instead of looping.
const MAX_TIED: usize = 2000;

/// The fields asked for, beyond Medusa's defaults.
pub(crate) const PRODUCT_FIELDS: &str =
    "*variants,*variants.prices,*variants.options,*options,*options.values,*images,*tags,*type,*categories";
/// Orders: plain names would replace Medusa's default fields, and `payment_status` and
/// `fulfillment_status` are computed only along with the defaults, so everything is added (`+`,
/// `*`).
pub(crate) const ORDER_FIELDS: &str = "+email,+currency_code,+sales_channel_id,+canceled_at,+item_subtotal,+subtotal,+discount_total,+shipping_total,+tax_total,+total,*items,*items.tax_lines,*items.adjustments,*items.detail,*shipping_methods,*shipping_methods.tax_lines,*shipping_address,*billing_address,*customer,*payment_collections,*payment_collections.payments,*fulfillments,*fulfillments.labels,*fulfillments.items";
const CUSTOMER_FIELDS: &str = "*addresses,*groups";
/// Refunds: the order's number and its payments' refunds with their reasons (`updated_at` for
/// the incremental read).
const REFUND_FIELDS: &str = "id,display_id,currency_code,created_at,updated_at,*payment_collections,*payment_collections.payments,*payment_collections.payments.refunds,*payment_collections.payments.refunds.refund_reason";

/// Where a run is, kept in the checkpoint's cursor between pages.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunCursor {
    v: u32,
    /// 0: the entity's own list; 1: product variants (products only).
    phase: u8,
    /// The position: records updated before it are done.
    after: Option<DateTime<Utc>>,
    /// Ids already read whose `updated_at` equals `after`.
    tied: BTreeSet<String>,
    /// Where the run began (phase 1 starts there again).
    from: Option<DateTime<Utc>>,
    started: DateTime<Utc>,
    newest: Option<DateTime<Utc>>,
}

/// One incremental page: what to keep, and where the next page starts.
struct Window {
    items: Vec<Value>,
    next: Option<RunCursor>,
    run: RunCursor,
}

impl MedusaConnector {
    fn run_cursor(&self, checkpoint: &Checkpoint, context: &str) -> Result<RunCursor, ConnectorError> {
        match checkpoint.cursor.as_deref() {
            Some(text) => serde_json::from_str(text).map_err(|error| {
                ConnectorError::new(
                    ErrorKind::InvalidRequest,
                    context,
                    format!("the stored cursor is not ours: {error}"),
                )
            }),
            None => {
                let from = checkpoint
                    .watermark
                    .map(|at| at - chrono::Duration::from_std(self.settings.overlap).unwrap_or_default());
                Ok(RunCursor {
                    v: 1,
                    phase: 0,
                    after: from,
                    tied: BTreeSet::new(),
                    from,
                    started: Utc::now(),
                    newest: None,
                })
            }
        }
    }

    /// One page of `path` from the cursor's position, ties left out by id.
    async fn window(
        &self,
        path: &str,
        key: &str,
        fields: &str,
        run: RunCursor,
        request: &ReadRequest<'_>,
        context: &str,
    ) -> Result<Window, ConnectorError> {
        let page_size = self.settings.page_size.min(request.page_size.max(1));
        let limit = page_size + run.tied.len();
        let mut query: Vec<(&str, String)> = vec![
            ("order", "updated_at".into()),
            ("limit", limit.to_string()),
            ("offset", "0".into()),
            ("fields", fields.to_string()),
        ];
        if let Some(after) = run.after {
            query.push(("updated_at[$gte]", format_time(after)));
        }
        let (items, _) = self.list(path, key, &query, context).await?;
        let full = items.len() >= limit;
        let id = |item: &Value| item.get("id").and_then(Value::as_str).unwrap_or("").to_string();
        let mut fresh: Vec<Value> = items
            .into_iter()
            .filter(|item| !(time(item, "updated_at") == run.after && run.tied.contains(&id(item))))
            .collect();
        // Medusa sorts by updated_at only: put ties in id order, so that what is kept and what
        // is left for the next page is decided the same way every time.
        fresh.sort_by_key(|item| (time(item, "updated_at"), id(item)));
        fresh.truncate(page_size);
        let newest = fresh.iter().filter_map(|item| time(item, "updated_at")).max().max(run.newest);
        let next = match fresh.last() {
            Some(last) if full => {
                let after = time(last, "updated_at");
                let mut tied: BTreeSet<String> = if after == run.after { run.tied.clone() } else { BTreeSet::new() };
                tied.extend(fresh.iter().filter(|item| time(item, "updated_at") == after).map(id));
                if tied.len() > MAX_TIED {
                    return Err(ConnectorError::new(
                        ErrorKind::InvalidResponse,
                        context,
                        format!("more than {MAX_TIED} records have the same updated_at; read them in a full sync"),
                    ));
                }
                Some(RunCursor { after, tied, newest, ..run.clone() })
            }
            _ => None,
        };
        Ok(Window { items: fresh, next, run: RunCursor { newest, ..run } })
    }

    /// The checkpoint after a window: the next cursor, or the end of the run.
    fn checkpoint_after(request: &ReadRequest<'_>, next: Option<RunCursor>, run: &RunCursor) -> (Checkpoint, bool) {
        match next {
            Some(cursor) => (
                Checkpoint {
                    watermark: request.checkpoint.watermark,
                    cursor: Some(serde_json::to_string(&cursor).expect("cursors always serialize")),
                },
                false,
            ),
            None => (
                Checkpoint {
                    // Never past the run's start: what changed during the scan is read next time.
                    watermark: run.newest.map(|newest| newest.min(run.started)).or(request.checkpoint.watermark),
                    cursor: None,
                },
                true,
            ),
        }
    }

    async fn read_products(&self, request: &ReadRequest<'_>, context: &str) -> Result<SourcePage, ConnectorError> {
        let run = self.run_cursor(request.checkpoint, context)?;
        let currency = self.settings.currency;
        if run.phase == 0 {
            let window = self.window("/admin/products", "products", PRODUCT_FIELDS, run, request, context).await?;
            let records = window
                .items
                .into_iter()
                .map(|item| {
                    let content = product_from_medusa(&item, currency).map(Record::Product);
                    record(&item, "products", content)
                })
                .collect();
            let next = match window.next {
                Some(next) => Some(next),
                // A full read has every product already.
                None if window.run.from.is_none() => None,
                // Products done: the variants changed in the same window come next.
                None => {
                    Some(RunCursor { phase: 1, after: window.run.from, tied: BTreeSet::new(), ..window.run.clone() })
                }
            };
            let (checkpoint, done) = Self::checkpoint_after(request, next, &window.run);
            return Ok(SourcePage { records, checkpoint, done });
        }
        let window = self
            .window("/admin/product-variants", "variants", "id,product_id,updated_at", run, request, context)
            .await?;
        let product_ids: BTreeSet<String> = window
            .items
            .iter()
            .filter_map(|variant| variant.get("product_id").and_then(Value::as_str).map(str::to_string))
            .collect();
        let records = self.fetch_products(&product_ids.into_iter().collect::<Vec<_>>(), context).await?;
        let (checkpoint, done) = Self::checkpoint_after(request, window.next, &window.run);
        Ok(SourcePage { records: records.into_iter().flatten().collect(), checkpoint, done })
    }

    async fn fetch_products(&self, ids: &[String], context: &str) -> Result<Vec<Option<SourceRecord>>, ConnectorError> {
        let items = self.by_ids("/admin/products", "products", PRODUCT_FIELDS, ids, context).await?;
        let currency = self.settings.currency;
        Ok(ids
            .iter()
            .map(|id| {
                items.iter().find(|item| item.get("id").and_then(Value::as_str) == Some(id)).map(|item| {
                    let content = product_from_medusa(item, currency).map(Record::Product);
                    record(item, "products", content)
                })
            })
            .collect())
    }

    /// Records of a list by id, in chunks.
    pub(crate) async fn by_ids(
        &self,
        path: &str,
        key: &str,
        fields: &str,
        ids: &[String],
        context: &str,
    ) -> Result<Vec<Value>, ConnectorError> {
        let mut all = Vec::new();
        for chunk in ids.chunks(100) {
            let mut query: Vec<(&str, String)> = chunk.iter().map(|id| ("id[]", id.clone())).collect();
            query.push(("fields", fields.to_string()));
            query.push(("limit", chunk.len().to_string()));
            let (items, _) = self.list(path, key, &query, context).await?;
            all.extend(items);
        }
        Ok(all)
    }

    async fn read_orders(
        &self,
        request: &ReadRequest<'_>,
        context: &str,
        status_only: bool,
    ) -> Result<SourcePage, ConnectorError> {
        let run = self.run_cursor(request.checkpoint, context)?;
        let window = self.window("/admin/orders", "orders", ORDER_FIELDS, run, request, context).await?;
        let records = window
            .items
            .into_iter()
            .map(|item| {
                let content = if status_only {
                    order_status_from_medusa(&item).map(Record::OrderStatus)
                } else {
                    order_from_medusa(&item).map(Record::Order)
                };
                record(&item, "orders", content)
            })
            .collect();
        let (checkpoint, done) = Self::checkpoint_after(request, window.next, &window.run);
        Ok(SourcePage { records, checkpoint, done })
    }

    async fn read_refunds(&self, request: &ReadRequest<'_>, context: &str) -> Result<SourcePage, ConnectorError> {
        let run = self.run_cursor(request.checkpoint, context)?;
        let window = self.window("/admin/orders", "orders", REFUND_FIELDS, run, request, context).await?;
        let records = window.items.iter().flat_map(refund_records).collect();
        let (checkpoint, done) = Self::checkpoint_after(request, window.next, &window.run);
        Ok(SourcePage { records, checkpoint, done })
    }

    /// Refunds by their source ids (`<refund id>@<order id>`): their orders, read again.
    async fn fetch_refunds(&self, ids: &[String], context: &str) -> Result<Vec<Option<SourceRecord>>, ConnectorError> {
        let mut order_ids: Vec<String> =
            ids.iter().filter_map(|id| id.split_once('@').map(|(_, order)| order.to_string())).collect();
        order_ids.sort();
        order_ids.dedup();
        let orders = self.by_ids("/admin/orders", "orders", REFUND_FIELDS, &order_ids, context).await?;
        let records: Vec<SourceRecord> = orders.iter().flat_map(refund_records).collect();
        Ok(ids.iter().map(|id| records.iter().find(|record| &record.source_id == id).cloned()).collect())
    }

    async fn read_customers(&self, request: &ReadRequest<'_>, context: &str) -> Result<SourcePage, ConnectorError> {
        let run = self.run_cursor(request.checkpoint, context)?;
        let window = self.window("/admin/customers", "customers", CUSTOMER_FIELDS, run, request, context).await?;
        let records = window
            .items
            .into_iter()
            .map(|item| {
                let content = Ok(Record::Customer(customer_from_medusa(&item)));
                record(&item, "customers", content)
            })
            .collect();
        let (checkpoint, done) = Self::checkpoint_after(request, window.next, &window.run);
        Ok(SourcePage { records, checkpoint, done })
    }

    /// Stock levels: inventory items with their location levels, by offset (no incremental
    /// filter reaches the levels).
    async fn read_stock(&self, request: &ReadRequest<'_>, context: &str) -> Result<SourcePage, ConnectorError> {
        let offset: usize = match request.checkpoint.cursor.as_deref() {
            None => 0,
            Some(text) => text.strip_prefix("stock-offset:").and_then(|o| o.parse().ok()).ok_or_else(|| {
                ConnectorError::new(
                    ErrorKind::InvalidRequest,
                    context,
                    format!("the stored cursor {text:?} is not ours"),
                )
            })?,
        };
        let shop = self.shop().await?;
        let limit = self.settings.page_size.min(request.page_size.max(1));
        let query = [
            ("order", "id".to_string()),
            ("limit", limit.to_string()),
            ("offset", offset.to_string()),
            ("fields", "id,sku,*location_levels".to_string()),
        ];
        let (items, count) = self.list("/admin/inventory-items", "inventory_items", &query, context).await?;
        let done = items.len() < limit || (offset + items.len()) as u64 >= count;
        let mut records = Vec::new();
        for item in &items {
            let item_id = item.get("id").and_then(Value::as_str).unwrap_or("");
            match stock_from_medusa(item, |location_id| shop.canonical_location(location_id).map(str::to_string)) {
                Ok(levels) => records.extend(levels.into_iter().map(|level| {
                    let location_id = shop.locations.get(&level.location).cloned().unwrap_or_default();
                    SourceRecord {
                        source_id: format!("{item_id}@{location_id}"),
                        origin: Some(format!("inventory-items/{item_id}")),
                        origin_group: None,
                        content: validated(Record::StockLevel(level), item),
                    }
                })),
                Err(message) => records.push(SourceRecord {
                    source_id: item_id.to_string(),
                    origin: Some(format!("inventory-items/{item_id}")),
                    origin_group: None,
                    content: Err(RecordProblem { kind: "parse".into(), message, raw: item.clone() }),
                }),
            }
        }
        let checkpoint = Checkpoint {
            watermark: request.checkpoint.watermark,
            cursor: (!done).then(|| format!("stock-offset:{}", offset + items.len())),
        };
        Ok(SourcePage { records, checkpoint, done })
    }
}

fn validated(record: Record, raw: &Value) -> Result<Record, RecordProblem> {
    match record.validate() {
        Ok(()) => Ok(record),
        Err(errors) => Err(RecordProblem { kind: "validation".into(), message: errors.to_string(), raw: raw.clone() }),
    }
}

/// The refunds of one order as source records; an order whose refunds cannot be read is one
/// problem.
fn refund_records(order: &Value) -> Vec<SourceRecord> {
    let order_id = order.get("id").and_then(Value::as_str).unwrap_or("");
    let origin = Some(format!("orders/{order_id}"));
    match refunds_from_medusa(order) {
        Ok(refunds) => refunds
            .into_iter()
            .map(|refund| SourceRecord {
                source_id: format!("{}@{order_id}", refund.number),
                origin: origin.clone(),
                origin_group: None,
                content: validated(Record::Refund(refund), order),
            })
            .collect(),
        Err(message) => vec![SourceRecord {
            source_id: order_id.to_string(),
            origin,
            origin_group: None,
            content: Err(RecordProblem { kind: "parse".into(), message, raw: order.clone() }),
        }],
    }
}

/// A source record, validated; conversion and validation problems become dead letters.
fn record(item: &Value, collection: &str, content: Result<Record, String>) -> SourceRecord {
    let id = item.get("id").and_then(Value::as_str).unwrap_or("").to_string();
    let content = content
        .map_err(|message| RecordProblem { kind: "parse".into(), message, raw: item.clone() })
        .and_then(|record| validated(record, item));
    SourceRecord { source_id: id.clone(), origin: Some(format!("{collection}/{id}")), origin_group: None, content }
}

#[async_trait]
impl Source for MedusaConnector {
    fn capabilities(&self, entity: EntityKind) -> Capabilities {
        let webhook = self.webhook_secret.is_some();
        match entity {
            EntityKind::Product | EntityKind::Order | EntityKind::Customer => {
                Capabilities { read: true, incremental_read: true, webhook, ..Capabilities::default() }
            }
            EntityKind::OrderStatus => {
                Capabilities { read: true, incremental_read: true, webhook, ..Capabilities::default() }
            }
            EntityKind::StockLevel => Capabilities { read: true, ..Capabilities::default() },
            // Medusa's `payment.refunded` event names the payment, not the refund or its order.
            EntityKind::Refund => Capabilities { read: true, incremental_read: true, ..Capabilities::default() },
            _ => Capabilities::default(),
        }
    }

    async fn read_page(&self, request: &ReadRequest<'_>) -> Result<SourcePage, ConnectorError> {
        let context = format!("reading {} from medusa {:?}", request.entity, self.system);
        match request.entity {
            EntityKind::Product => self.read_products(request, &context).await,
            EntityKind::Order => self.read_orders(request, &context, false).await,
            EntityKind::OrderStatus => self.read_orders(request, &context, true).await,
            EntityKind::Customer => self.read_customers(request, &context).await,
            EntityKind::StockLevel => self.read_stock(request, &context).await,
            EntityKind::Refund => self.read_refunds(request, &context).await,
            other => Err(ConnectorError::new(
                ErrorKind::InvalidRequest,
                &context,
                format!(
                    "the medusa connector does not read {other}: it reads product, customer, order, order_status, stock_level and refund"
                ),
            )),
        }
    }

    fn can_fetch(&self, entity: EntityKind) -> bool {
        matches!(
            entity,
            EntityKind::Product
                | EntityKind::Order
                | EntityKind::OrderStatus
                | EntityKind::Customer
                | EntityKind::Refund
        )
    }

    async fn fetch(&self, entity: EntityKind, ids: &[String]) -> Result<Vec<Option<SourceRecord>>, ConnectorError> {
        let context = format!("fetching {entity} records from medusa {:?}", self.system);
        let (path, key, fields) = match entity {
            EntityKind::Product => return self.fetch_products(ids, &context).await,
            EntityKind::Refund => return self.fetch_refunds(ids, &context).await,
            EntityKind::Order | EntityKind::OrderStatus => ("/admin/orders", "orders", ORDER_FIELDS),
            EntityKind::Customer => ("/admin/customers", "customers", CUSTOMER_FIELDS),
            other => {
                return Err(ConnectorError::new(
                    ErrorKind::InvalidRequest,
                    &context,
                    format!("the medusa connector cannot read {other} records by id"),
                ));
            }
        };
        let items = self.by_ids(path, key, fields, ids, &context).await?;
        Ok(ids
            .iter()
            .map(|id| {
                items.iter().find(|item| item.get("id").and_then(Value::as_str) == Some(id)).map(|item| {
                    let content = match entity {
                        EntityKind::Order => order_from_medusa(item).map(Record::Order),
                        EntityKind::OrderStatus => order_status_from_medusa(item).map(Record::OrderStatus),
                        _ => Ok(Record::Customer(customer_from_medusa(item))),
                    };
                    record(item, key, content)
                })
            })
            .collect())
    }
}
