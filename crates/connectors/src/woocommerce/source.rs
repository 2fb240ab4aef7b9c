//! Reading from WooCommerce: products (with their variations), customers, orders, refunds.
//!
//! Products and orders are read incrementally, keyset style: `modified_after` (strictly after,
//! with `dates_are_gmt=true`) set one second before the last `(date_modified_gmt, id)` seen,
//! `orderby=modified&order=asc` (WooCommerce breaks ties by id), and the records at or before
//! that position dropped on our side. Positions are values, not page numbers, so a record
//! changed during a long scan cannot shift another one out of the pages still to read. A run
//! starts `overlap` before the stored watermark, so changes committed late are read again (and
//! skipped by hash). When more records than a page share one second, the query for that
//! second is paged with `page=2, 3, ...` until the second is passed.
//!
//! Customers have no "modified since" filter in the REST API: every run reads them all, by id.
//! Refunds are read through the orders changed since the watermark (a refund updates its
//! order), one `/orders/{id}/refunds` call per order that has refunds.

use crate::woocommerce::WooConnector;
use crate::woocommerce::map::{
    ShopSettings, customer_from_woo, format_gmt, gmt, order_from_woo, product_from_woo, refund_from_woo,
};
use crate::{Capabilities, ConnectorError, ErrorKind, ReadRequest, RecordProblem, Source, SourcePage, SourceRecord};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use erpsync_model::{Checkpoint, EntityKind, Record};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a run is, kept in the checkpoint's cursor between pages.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunCursor {
    v: u32,
    /// The last position read: records at or before `(after, after_id)` are done.
    after: Option<DateTime<Utc>>,
    after_id: u64,
    /// Page within the current position (more than a page of records in one second).
    page: u64,
    started: DateTime<Utc>,
    newest: Option<DateTime<Utc>>,
}

impl WooConnector {
    pub(crate) fn shop(&self) -> ShopSettings {
        ShopSettings {
            currency: self.settings.currency,
            prices_include_tax: self.config.prices_include_tax,
            weight_unit: self.config.weight_unit.clone(),
        }
    }

    fn run_cursor(&self, checkpoint: &Checkpoint, context: &str) -> Result<RunCursor, ConnectorError> {
        match checkpoint.cursor.as_deref() {
            Some(text) => serde_json::from_str(text).map_err(|error| {
                ConnectorError::new(
                    ErrorKind::InvalidRequest,
                    context,
                    format!("the stored cursor is not ours: {error}"),
                )
            }),
            None => Ok(RunCursor {
                v: 1,
                after: checkpoint
                    .watermark
                    .map(|at| at - chrono::Duration::from_std(self.settings.overlap).unwrap_or_default()),
                after_id: 0,
                page: 1,
                started: Utc::now(),
                newest: None,
            }),
        }
    }

    /// One keyset page of `path` (products or orders): the new records and the next checkpoint.
    async fn keyset_page(
        &self,
        path: &str,
        extra_query: &[(&str, String)],
        request: &ReadRequest<'_>,
        context: &str,
    ) -> Result<(Vec<Value>, Checkpoint, bool), ConnectorError> {
        let run = self.run_cursor(request.checkpoint, context)?;
        let per_page = self.settings.per_page.min(request.page_size.max(1));
        let mut query: Vec<(&str, String)> = vec![
            ("orderby", "modified".into()),
            ("order", "asc".into()),
            ("dates_are_gmt", "true".into()),
            ("per_page", per_page.to_string()),
            ("page", run.page.to_string()),
        ];
        if let Some(after) = run.after {
            query.push(("modified_after", format_gmt(after - chrono::Duration::seconds(1))));
        }
        query.extend(extra_query.iter().cloned());
        let (items, _) = self.list(path, &query, context).await?;
        let full = items.len() >= per_page;
        let position =
            |item: &Value| (gmt(item, "date_modified_gmt"), item.get("id").and_then(Value::as_u64).unwrap_or(0));
        let fresh: Vec<Value> = items
            .into_iter()
            .filter(|item| match run.after {
                None => true,
                Some(after) => {
                    let (modified, id) = position(item);
                    modified.is_some_and(|modified| (modified, id) > (after, run.after_id))
                }
            })
            .collect();
        let newest = fresh.iter().filter_map(|item| gmt(item, "date_modified_gmt")).max().max(run.newest);
        let next = match (fresh.last(), full) {
            (_, false) => None,
            (None, true) => Some(RunCursor { page: run.page + 1, newest, ..run.clone() }),
            (Some(last), true) => {
                let (modified, id) = position(last);
                let after = modified.or(run.after);
                // Still in the same second: the query is unchanged, so go on to its next page
                // instead of walking its first pages again.
                let page = if run.after.is_some() && after == run.after { run.page + 1 } else { 1 };
                Some(RunCursor { after, after_id: id, page, newest, ..run.clone() })
            }
        };
        let done = next.is_none();
        let checkpoint = match next {
            Some(cursor) => Checkpoint {
                watermark: request.checkpoint.watermark,
                cursor: Some(serde_json::to_string(&cursor).expect("cursors always serialize")),
            },
            None => Checkpoint {
                // Never past the run's start: what changed during the scan is read next time.
                watermark: newest.map(|newest| newest.min(run.started)).or(request.checkpoint.watermark),
                cursor: None,
            },
        };
        Ok((fresh, checkpoint, done))
    }

    async fn read_products(&self, request: &ReadRequest<'_>, context: &str) -> Result<SourcePage, ConnectorError> {
        let (items, checkpoint, done) = self.keyset_page("/products", &[], request, context).await?;
        let shop = self.shop();
        let mut records = Vec::with_capacity(items.len());
        for item in items {
            let id = item.get("id").and_then(Value::as_u64).unwrap_or(0);
            let variations = if item.get("type").and_then(Value::as_str) == Some("variable") {
                self.list_all(&format!("/products/{id}/variations"), &[], context).await?
            } else {
                Vec::new()
            };
            let content = product_from_woo(&item, &variations, &shop).map(Record::Product);
            records.push(record(id, format!("products/{id}"), content, item));
        }
        Ok(SourcePage { records, checkpoint, done })
    }

    async fn read_orders(&self, request: &ReadRequest<'_>, context: &str) -> Result<SourcePage, ConnectorError> {
        let (items, checkpoint, done) =
            self.keyset_page("/orders", &[("status", "any".into())], request, context).await?;
        let records = items
            .into_iter()
            .map(|item| {
                let id = item.get("id").and_then(Value::as_u64).unwrap_or(0);
                let content = order_from_woo(&item).map(Record::Order);
                record(id, format!("orders/{id}"), content, item)
            })
            .collect();
        Ok(SourcePage { records, checkpoint, done })
    }

    async fn read_refunds(&self, request: &ReadRequest<'_>, context: &str) -> Result<SourcePage, ConnectorError> {
        let (orders, checkpoint, done) =
            self.keyset_page("/orders", &[("status", "any".into())], request, context).await?;
        let mut records = Vec::new();
        for order in orders {
            let has_refunds = order.get("refunds").and_then(Value::as_array).is_some_and(|r| !r.is_empty());
            if !has_refunds {
                continue;
            }
            let order_id = order.get("id").and_then(Value::as_u64).unwrap_or(0);
            let refunds = self.list_all(&format!("/orders/{order_id}/refunds"), &[], context).await?;
            for refund in refunds {
                let id = refund.get("id").and_then(Value::as_u64).unwrap_or(0);
                let content = refund_from_woo(&order, &refund).map(Record::Refund);
                records.push(record(id, format!("orders/{order_id}/refunds/{id}"), content, refund));
            }
        }
        Ok(SourcePage { records, checkpoint, done })
    }

    /// Customers: a full read by id, page by page (the API has no modified filter).
    async fn read_customers(&self, request: &ReadRequest<'_>, context: &str) -> Result<SourcePage, ConnectorError> {
        let page: u64 = match request.checkpoint.cursor.as_deref() {
            None => 1,
            Some(text) => text.strip_prefix("customers-page:").and_then(|p| p.parse().ok()).ok_or_else(|| {
                ConnectorError::new(
                    ErrorKind::InvalidRequest,
                    context,
                    format!("the stored cursor {text:?} is not ours"),
                )
            })?,
        };
        let per_page = self.settings.per_page.min(request.page_size.max(1));
        let query = [
            ("orderby", "id".to_string()),
            ("order", "asc".to_string()),
            ("role", "all".to_string()),
            ("per_page", per_page.to_string()),
            ("page", page.to_string()),
        ];
        let (items, pages) = self.list("/customers", &query, context).await?;
        let done = items.len() < per_page || pages.is_some_and(|pages| page >= pages);
        let records = items
            .into_iter()
            .map(|item| {
                let id = item.get("id").and_then(Value::as_u64).unwrap_or(0);
                let content = Ok(Record::Customer(customer_from_woo(&item)));
                record(id, format!("customers/{id}"), content, item)
            })
            .collect();
        let checkpoint = Checkpoint {
            watermark: request.checkpoint.watermark,
            cursor: (!done).then(|| format!("customers-page:{}", page + 1)),
        };
        Ok(SourcePage { records, checkpoint, done })
    }
}

/// A source record, validated; conversion and validation problems become dead letters.
fn record(id: u64, origin: String, content: Result<Record, String>, raw: Value) -> SourceRecord {
    let content = content
        .map_err(|message| RecordProblem { kind: "parse".into(), message, raw: raw.clone() })
        .and_then(|record| match record.validate() {
            Ok(()) => Ok(record),
            Err(errors) => Err(RecordProblem { kind: "validation".into(), message: errors.to_string(), raw }),
        });
    SourceRecord { source_id: id.to_string(), origin: Some(origin), origin_group: None, content }
}

#[async_trait]
impl Source for WooConnector {
    fn capabilities(&self, entity: EntityKind) -> Capabilities {
        let webhook = self.webhook_secret.is_some();
        match entity {
            EntityKind::Product | EntityKind::Order | EntityKind::Refund => {
                Capabilities { read: true, incremental_read: true, webhook, ..Capabilities::default() }
            }
            EntityKind::Customer => Capabilities { read: true, webhook, ..Capabilities::default() },
            _ => Capabilities::default(),
        }
    }

    async fn read_page(&self, request: &ReadRequest<'_>) -> Result<SourcePage, ConnectorError> {
        let context = format!("reading {} from woocommerce {:?}", request.entity, self.system);
        match request.entity {
            EntityKind::Product => self.read_products(request, &context).await,
            EntityKind::Order => self.read_orders(request, &context).await,
            EntityKind::Refund => self.read_refunds(request, &context).await,
            EntityKind::Customer => self.read_customers(request, &context).await,
            other => Err(ConnectorError::new(
                ErrorKind::InvalidRequest,
                &context,
                format!(
                    "the woocommerce connector does not read {other}: it reads product, customer, order and refund"
                ),
            )),
        }
    }
}
