//! Reading pages from Shopify: products, customers, orders, refunds, order status changes and
//! stock levels, through Relay connections (`first` at most 250, `after` the last
//! `endCursor`).
//!
//! Incremental reads ask for `updated_at:>'<watermark - overlap>'` sorted by `UPDATED_AT`. The
//! checkpoint's cursor holds where a run is (the search's lower bound, the newest change seen,
//! the Relay cursor); when the run ends, the watermark becomes the newest change seen, but
//! never later than the moment the run started, so a record changed during the scan is asked
//! for again by the next run. Records read twice are skipped by the engine's hash.
//!
//! Nested lists that a page cuts short (more than 25 variants, more than 20 order lines) are
//! completed with follow-up queries for that record, so a record is never read half.

use crate::shopify::ShopifyConnector;
use crate::shopify::map::{self, nodes, text};
use crate::{Capabilities, ConnectorError, ErrorKind, ReadRequest, RecordProblem, Source, SourcePage, SourceRecord};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use erpsync_model::{Checkpoint, Currency, EntityKind, Record};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Where a run is: kept in the checkpoint's cursor between pages.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunCursor {
    v: u32,
    since: Option<DateTime<Utc>>,
    started: DateTime<Utc>,
    newest: Option<DateTime<Utc>>,
    after: Option<String>,
}

const VARIANT_FIELDS: &str =
    "id sku title barcode price compareAtPrice selectedOptions { name value } inventoryItem { id tracked }";
const PRODUCT_FIELDS_HEAD: &str =
    "id handle title descriptionHtml status vendor productType tags updatedAt options { name optionValues { name } }";
/// Variants on a product page; more are fetched for that product alone.
const VARIANTS_PER_PRODUCT: usize = 25;
const ORDER_LINE_FIELDS: &str = "id sku title quantity currentQuantity originalUnitPriceSet { shopMoney { amount currencyCode } } totalDiscountSet { shopMoney { amount } } taxLines { title rate priceSet { shopMoney { amount } } }";
/// Order lines on an order page: 5 keep an order at 82 points (20 cost 221, and a page held 4
/// orders); an order with more lines is completed with follow-up queries.
const LINES_PER_ORDER: usize = 5;
/// Shipping lines on an order page; more are fetched for that order alone.
const SHIPPING_LINES_PER_ORDER: usize = 2;
const SHIPPING_LINE_FIELDS: &str =
    "title code originalPriceSet { shopMoney { amount } } taxLines { title rate priceSet { shopMoney { amount } } }";
const ORDER_FIELDS: &str = "id name email phone note tags createdAt processedAt updatedAt cancelledAt cancelReason closed \
    currencyCode presentmentCurrencyCode taxesIncluded displayFinancialStatus displayFulfillmentStatus sourceName \
    subtotalPriceSet { shopMoney { amount } } totalPriceSet { shopMoney { amount } } totalTaxSet { shopMoney { amount } } \
    totalShippingPriceSet { shopMoney { amount } } totalDiscountsSet { shopMoney { amount } } \
    taxLines { title rate priceSet { shopMoney { amount } } } \
    discountApplications(first: 5) { nodes { index ... on DiscountCodeApplication { code } ... on ManualDiscountApplication { title } ... on AutomaticDiscountApplication { title } } } \
    billingAddress { firstName lastName company address1 address2 city provinceCode countryCodeV2 zip phone } \
    shippingAddress { firstName lastName company address1 address2 city provinceCode countryCodeV2 zip phone } \
    customer { id email firstName lastName phone } \
    paymentGatewayNames totalOutstandingSet { shopMoney { amount } }";
const STATUS_FIELDS: &str =
    "id name currencyCode updatedAt cancelledAt cancelReason closed displayFinancialStatus displayFulfillmentStatus";
const REFUND_FIELDS: &str = "id name currencyCode updatedAt lineItems(first: 50) { nodes { id sku } } \
    refunds(first: 10) { id note createdAt totalRefundedSet { shopMoney { amount } } \
    refundLineItems(first: 50) { nodes { quantity restockType subtotalSet { shopMoney { amount } } lineItem { id sku } } } }";
const CUSTOMER_FIELDS: &str = "id email phone firstName lastName state tags updatedAt \
    defaultAddress { id company } \
    addresses { id firstName lastName company address1 address2 city provinceCode countryCodeV2 zip phone }";
const STOCK_FIELDS: &str = "id sku inventoryItem { id inventoryLevels(first: 10) { nodes { updatedAt location { id name } quantities(names: [\"available\", \"on_hand\"]) { name quantity } } } }";

/// How one entity is read: its connection, fields, the largest page its cost allows, and an
/// estimate of the cost of one record.
struct ReadPlan {
    connection: &'static str,
    fields: String,
    max_page: usize,
    cost_per_record: f64,
    incremental: bool,
}

fn plan(entity: EntityKind) -> Option<ReadPlan> {
    Some(match entity {
        EntityKind::Product => ReadPlan {
            connection: "products",
            fields: format!(
                "{PRODUCT_FIELDS_HEAD} variants(first: {VARIANTS_PER_PRODUCT}) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {VARIANT_FIELDS} }} }} \
                 images(first: 10) {{ nodes {{ url altText }} }} metafields(first: 10) {{ nodes {{ namespace key value }} }}"
            ),
            max_page: 8,
            cost_per_record: 110.0,
            incremental: true,
        },
        EntityKind::Customer => ReadPlan {
            connection: "customers",
            fields: CUSTOMER_FIELDS.into(),
            max_page: 100,
            cost_per_record: 6.0,
            incremental: true,
        },
        EntityKind::Order => ReadPlan {
            connection: "orders",
            fields: format!(
                "{ORDER_FIELDS} shippingLines(first: {SHIPPING_LINES_PER_ORDER}) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {SHIPPING_LINE_FIELDS} }} }} \
                 lineItems(first: {LINES_PER_ORDER}) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {ORDER_LINE_FIELDS} }} }}"
            ),
            max_page: 12,
            cost_per_record: 82.0,
            incremental: true,
        },
        EntityKind::OrderStatus => ReadPlan {
            connection: "orders",
            fields: STATUS_FIELDS.into(),
            max_page: 250,
            cost_per_record: 1.0,
            incremental: true,
        },
        EntityKind::Refund => ReadPlan {
            connection: "orders",
            fields: REFUND_FIELDS.into(),
            max_page: 2,
            cost_per_record: 400.0,
            incremental: true,
        },
        EntityKind::StockLevel => ReadPlan {
            connection: "productVariants",
            fields: STOCK_FIELDS.into(),
            max_page: 25,
            cost_per_record: 35.0,
            incremental: false,
        },
        EntityKind::PriceList | EntityKind::Shipment | EntityKind::Document => return None,
    })
}

fn operation_name(entity: EntityKind) -> &'static str {
    match entity {
        EntityKind::Product => "read_products",
        EntityKind::Customer => "read_customers",
        EntityKind::Order => "read_orders",
        EntityKind::OrderStatus => "read_order_status",
        EntityKind::Refund => "read_refunds",
        EntityKind::StockLevel => "read_stock",
        _ => "read_other",
    }
}

/// The search filter of an incremental read: Shopify's search syntax, date quoted.
pub fn updated_since(since: DateTime<Utc>) -> String {
    format!("updated_at:>'{}'", since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

#[async_trait]
impl Source for ShopifyConnector {
    fn capabilities(&self, entity: EntityKind) -> Capabilities {
        let plan = plan(entity);
        Capabilities {
            read: plan.is_some(),
            incremental_read: plan.as_ref().is_some_and(|plan| plan.incremental),
            webhook: self.webhook_secret.is_some() && !crate::shopify::webhook::topics_for(entity).is_empty(),
            ..Capabilities::default()
        }
    }

    fn can_fetch(&self, entity: EntityKind) -> bool {
        fetch_fields(entity).is_some()
    }

    /// Orders, customers, products and order status by GID with `nodes(ids:)`, with the same
    /// fields and conversion as the pages; a record that no longer exists is `None`. Order
    /// status ids (`<order gid>@<updatedAt>`) give the order's current status.
    async fn fetch(&self, entity: EntityKind, ids: &[String]) -> Result<Vec<Option<SourceRecord>>, ConnectorError> {
        self.fetch_records(entity, ids).await
    }

    async fn read_page(&self, request: &ReadRequest<'_>) -> Result<SourcePage, ConnectorError> {
        let context = format!("reading {} from shopify {:?}", request.entity, self.system);
        let plan = plan(request.entity).ok_or_else(|| {
            ConnectorError::new(ErrorKind::InvalidRequest, &context, format!("shopify cannot read {}", request.entity))
        })?;
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
                    .filter(|_| plan.incremental)
                    .map(|at| at - chrono::Duration::from_std(self.overlap).unwrap_or_default()),
                started: Utc::now(),
                newest: None,
                after: None,
            },
        };
        let first = request.page_size.clamp(1, plan.max_page.min(250));
        let sort = if plan.incremental { ", sortKey: UPDATED_AT" } else { "" };
        let query = format!(
            "query Page($first: Int!, $after: String, $query: String) {{ shop {{ currencyCode }} \
             {connection}(first: $first, after: $after, query: $query{sort}) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {fields} }} }} }}",
            connection = plan.connection,
            fields = plan.fields,
        );
        let variables = json!({
            "first": first,
            "after": run.after,
            "query": run.since.map(updated_since),
        });
        let estimate = 3.0 + first as f64 * plan.cost_per_record;
        let data = self.graphql(operation_name(request.entity), estimate, &query, variables, &context).await?;
        let currency: Currency = data
            .get("shop")
            .and_then(|shop| text(shop, "currencyCode"))
            .and_then(|code| code.parse().ok())
            .unwrap_or_default();
        let connection = data.get(plan.connection).ok_or_else(|| {
            ConnectorError::new(
                ErrorKind::InvalidResponse,
                &context,
                format!("the response has no {}", plan.connection),
            )
        })?;
        let mut items: Vec<Value> = nodes(Some(connection)).into_iter().cloned().collect();
        for item in &mut items {
            self.complete_record(request.entity, item, &context).await?;
        }

        let mut newest = run.newest;
        let mut records = Vec::with_capacity(items.len());
        for item in &items {
            if let Some(at) =
                item.get("updatedAt").and_then(Value::as_str).and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            {
                newest = newest.max(Some(at.with_timezone(&Utc)));
            }
            records.extend(self.convert(request.entity, plan.connection, item, currency));
        }

        let page_info = connection.get("pageInfo");
        let has_next = page_info.and_then(|info| info.get("hasNextPage")).and_then(Value::as_bool).unwrap_or(false);
        let end_cursor = page_info.and_then(|info| text(info, "endCursor"));
        let next = end_cursor.filter(|_| has_next && !items.is_empty());
        let done = next.is_none();
        let checkpoint = match next {
            Some(after) => Checkpoint {
                watermark: request.checkpoint.watermark,
                cursor: Some(
                    serde_json::to_string(&RunCursor { newest, after: Some(after), ..run })
                        .expect("cursors always serialize"),
                ),
            },
            None => Checkpoint {
                watermark: match (plan.incremental, newest) {
                    (true, Some(newest)) => Some(newest.min(run.started)).max(request.checkpoint.watermark),
                    _ => request.checkpoint.watermark,
                },
                cursor: None,
            },
        };
        Ok(SourcePage { records, checkpoint, done })
    }
}

/// The ids `fetch` asks Shopify for: the GID of the record (for order status, the order's GID
/// before the `@<updatedAt>` of the change).
fn fetch_gid(entity: EntityKind, id: &str) -> Option<&str> {
    let (kind, gid) = match entity {
        EntityKind::Product => ("Product", id),
        EntityKind::Customer => ("Customer", id),
        EntityKind::Order => ("Order", id),
        EntityKind::OrderStatus => ("Order", id.split('@').next().unwrap_or(id)),
        _ => return None,
    };
    let number = gid.strip_prefix("gid://shopify/")?.strip_prefix(kind)?.strip_prefix('/')?;
    (!number.is_empty() && number.chars().all(|c| c.is_ascii_digit())).then_some(gid)
}

/// The fields of one record as `fetch` reads it: the same as a page's nodes.
fn fetch_fields(entity: EntityKind) -> Option<(&'static str, String, f64)> {
    let plan = plan(entity)?;
    let kind = match entity {
        EntityKind::Product => "Product",
        EntityKind::Customer => "Customer",
        EntityKind::Order | EntityKind::OrderStatus => "Order",
        _ => return None,
    };
    Some((kind, plan.fields, plan.cost_per_record))
}

/// How many ids one `nodes(ids:)` query asks for: Shopify charges every id the cost of one
/// record, and one query may not request more than 1000 points (1 for `shop`).
pub fn fetch_chunk_size(entity: EntityKind) -> usize {
    match fetch_fields(entity) {
        Some((_, _, cost)) => (((crate::shopify::client::MAX_QUERY_COST - 1.0) / cost) as usize).clamp(1, 250),
        None => 0,
    }
}

impl ShopifyConnector {
    /// Completes the nested lists of one record that its query cut short.
    async fn complete_record(&self, entity: EntityKind, item: &mut Value, context: &str) -> Result<(), ConnectorError> {
        match entity {
            EntityKind::Product => self.complete(item, "variants", "product", VARIANT_FIELDS, context).await,
            EntityKind::Order => {
                self.complete(item, "lineItems", "order", ORDER_LINE_FIELDS, context).await?;
                self.complete(item, "shippingLines", "order", SHIPPING_LINE_FIELDS, context).await
            }
            _ => Ok(()),
        }
    }

    /// One node as source records (a refund node gives several, a stock node one per location).
    fn convert(&self, entity: EntityKind, connection: &str, item: &Value, currency: Currency) -> Vec<SourceRecord> {
        let code_key = format!("{}.code", self.config.document_namespace);
        let id = text(item, "id").unwrap_or_default();
        let origin = Some(format!("{connection} {id}"));
        let problem = |message: String| RecordProblem { kind: "parse".into(), message, raw: item.clone() };
        let converted: Vec<(String, Result<Record, RecordProblem>)> = match entity {
            EntityKind::Product => {
                vec![(id.clone(), map::product(item, currency, &code_key).map(Record::Product).map_err(problem))]
            }
            EntityKind::Customer => vec![(id.clone(), map::customer(item).map(Record::Customer).map_err(problem))],
            EntityKind::Order => vec![(id.clone(), map::order(item).map(Record::Order).map_err(problem))],
            EntityKind::OrderStatus => {
                let at = text(item, "updatedAt").unwrap_or_default();
                vec![(format!("{id}@{at}"), map::order_status(item).map(Record::OrderStatus).map_err(problem))]
            }
            EntityKind::Refund => match map::refunds(item) {
                Ok(refunds) => refunds.into_iter().map(|(id, refund)| (id, Ok(Record::Refund(refund)))).collect(),
                Err(message) => vec![(id.clone(), Err(problem(message)))],
            },
            EntityKind::StockLevel => map::stock_levels(item)
                .into_iter()
                .map(|level| {
                    let location_id = level.extra.get("shopify_location_id").and_then(Value::as_str).unwrap_or("");
                    (format!("{id}@{location_id}"), Ok(Record::StockLevel(level)))
                })
                .collect(),
            _ => Vec::new(),
        };
        converted
            .into_iter()
            .map(|(source_id, content)| {
                let content = content.and_then(|record| match record.validate() {
                    Ok(()) => Ok(record),
                    Err(errors) => {
                        Err(RecordProblem { kind: "validation".into(), message: errors.to_string(), raw: item.clone() })
                    }
                });
                SourceRecord { source_id, origin: origin.clone(), origin_group: None, content }
            })
            .collect()
    }

    /// Records by id with `nodes(ids:)`, in chunks whose requested cost stays under 1000.
    async fn fetch_records(
        &self,
        entity: EntityKind,
        ids: &[String],
    ) -> Result<Vec<Option<SourceRecord>>, ConnectorError> {
        let context = format!("reading {entity} by id from shopify {:?}", self.system);
        let Some((kind, fields, cost)) = fetch_fields(entity) else {
            return Err(ConnectorError::new(
                ErrorKind::InvalidRequest,
                &context,
                format!("shopify cannot read {entity} by id"),
            ));
        };
        let query = format!(
            "query Fetch($ids: [ID!]!) {{ shop {{ currencyCode }} nodes(ids: $ids) {{ ... on {kind} {{ {fields} }} }} }}"
        );
        // An id that is not a GID of this entity names no record of it: it is not sent (Shopify
        // refuses malformed ids for the whole query).
        let wanted: Vec<(usize, &str)> =
            ids.iter().enumerate().filter_map(|(index, id)| Some((index, fetch_gid(entity, id)?))).collect();
        let mut found: Vec<Option<SourceRecord>> = vec![None; ids.len()];
        for chunk in wanted.chunks(fetch_chunk_size(entity)) {
            let gids: Vec<&str> = chunk.iter().map(|(_, gid)| *gid).collect();
            let estimate = 1.0 + gids.len() as f64 * cost;
            let data = self.graphql("fetch_by_id", estimate, &query, json!({ "ids": gids }), &context).await?;
            let currency: Currency = data
                .get("shop")
                .and_then(|shop| text(shop, "currencyCode"))
                .and_then(|code| code.parse().ok())
                .unwrap_or_default();
            let nodes = data.get("nodes").and_then(Value::as_array).cloned().unwrap_or_default();
            if nodes.len() != chunk.len() {
                return Err(ConnectorError::new(
                    ErrorKind::InvalidResponse,
                    &context,
                    format!("asked for {} ids, got {} nodes", chunk.len(), nodes.len()),
                ));
            }
            for ((index, gid), mut node) in chunk.iter().zip(nodes) {
                // A deleted record is `null`; a node of another type has none of the fields.
                if text(&node, "id").as_deref() != Some(*gid) {
                    continue;
                }
                self.complete_record(entity, &mut node, &context).await?;
                found[*index] = self.convert(entity, "nodes", &node, currency).into_iter().next();
            }
        }
        Ok(found)
    }

    /// Fetches the rest of a nested connection that the page cut short, appending its nodes,
    /// so that a record is never converted with half its variants or lines.
    async fn complete(
        &self,
        item: &mut Value,
        field: &'static str,
        root: &'static str,
        node_fields: &str,
        context: &str,
    ) -> Result<(), ConnectorError> {
        let Some(id) = text(item, "id") else { return Ok(()) };
        let mut after = {
            let info = item.get(field).and_then(|connection| connection.get("pageInfo"));
            let has_next = info.and_then(|info| info.get("hasNextPage")).and_then(Value::as_bool).unwrap_or(false);
            match info.and_then(|info| text(info, "endCursor")) {
                Some(cursor) if has_next => cursor,
                _ => return Ok(()),
            }
        };
        let query = format!(
            "query Rest($id: ID!, $after: String) {{ {root}(id: $id) {{ {field}(first: 100, after: $after) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {node_fields} }} }} }} }}"
        );
        // At most 2048 variants per product: 25 pages of 100 is a generous bound.
        for _ in 0..25 {
            let data = self.graphql("read_rest", 350.0, &query, json!({ "id": id, "after": after }), context).await?;
            let connection = data.get(root).and_then(|record| record.get(field)).cloned().unwrap_or(Value::Null);
            let more: Vec<Value> = nodes(Some(&connection)).into_iter().cloned().collect();
            if let Some(Value::Array(existing)) = item.get_mut(field).and_then(|connection| connection.get_mut("nodes"))
            {
                existing.extend(more);
            }
            let info = connection.get("pageInfo");
            let has_next = info.and_then(|info| info.get("hasNextPage")).and_then(Value::as_bool).unwrap_or(false);
            match info.and_then(|info| text(info, "endCursor")) {
                Some(cursor) if has_next => after = cursor,
                _ => return Ok(()),
            }
        }
        Err(ConnectorError::new(
            ErrorKind::InvalidResponse,
            context,
            format!("{root} {id} has more {field} than erpsync reads (2500)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_incremental_filter_quotes_the_date() {
        let at = Utc.with_ymd_and_hms(2026, 11, 26, 10, 0, 5).unwrap();
        assert_eq!(updated_since(at), "updated_at:>'2026-11-26T10:00:05Z'");
    }
}
