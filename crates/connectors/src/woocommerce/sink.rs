//! Writing to WooCommerce: products, stock levels, order status, shipments and customers.
//!
//! - Products go through `POST /products/batch` (at most 100 objects per request); the
//!   variations of a variable product through `POST /products/{id}/variations/batch`, which
//!   creates, updates and deletes them so that the shop holds exactly the canonical variants
//!   (by SKU). A first sync finds existing products by SKU (`GET /products?sku=a,b,c`).
//! - Stock levels set `stock_quantity` (and `manage_stock`) on the product or variation that
//!   has the SKU, batched per parent. WooCommerce has one stock number per SKU: see
//!   `stock_location` in the configuration.
//! - Order status: `POST /orders/batch` with the status, then the change's note as an order
//!   note (once: a note already on the order is not added again).
//! - Shipments: the order becomes `completed` (unless configured otherwise) and gets a note
//!   with the tracking, sent to the customer when the shipment says so.
//! - Customers: `POST /customers/batch`; a first sync finds them by e-mail.
//!
//! An item that fails inside a 200 batch response fails alone, with WooCommerce's code and
//! message; a failure of the whole request fails the whole batch (the engine retries it).

use crate::woocommerce::WooConnector;
use crate::woocommerce::client::batch_item_error;
use crate::woocommerce::map::{customer_to_woo, is_simple, product_to_woo, woo_status};
use crate::{Capabilities, ConnectorError, ErrorKind, Sink, WriteBatch, WriteItem, WriteOutcome};
use async_trait::async_trait;
use erpsync_model::{EntityKind, Record};
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// WooCommerce's default `woocommerce_rest_batch_items_limit`.
pub const BATCH_LIMIT: usize = 100;

/// Where a SKU lives: a simple product, or a variation of a parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stockable {
    Product(u64),
    Variation { parent: u64, id: u64 },
}

impl Stockable {
    fn target_id(&self) -> String {
        match self {
            Stockable::Product(id) => format!("product:{id}"),
            Stockable::Variation { parent, id } => format!("variation:{parent}:{id}"),
        }
    }

    fn parse(text: &str) -> Option<Stockable> {
        let mut parts = text.split(':');
        match (parts.next()?, parts.next(), parts.next()) {
            ("product", Some(id), None) => id.parse().ok().map(Stockable::Product),
            ("variation", Some(parent), Some(id)) => {
                Some(Stockable::Variation { parent: parent.parse().ok()?, id: id.parse().ok()? })
            }
            _ => None,
        }
    }
}

/// One change to a variable product's variations.
enum VariationOp {
    Create(Value),
    Update(Value),
    Delete(u64),
}

fn failed(kind: ErrorKind, context: &str, message: impl Into<String>) -> WriteOutcome {
    WriteOutcome::Failed(ConnectorError::new(kind, context, message))
}

impl WooConnector {
    fn write_context(&self, entity: EntityKind) -> String {
        format!("writing {entity} to woocommerce {:?}", self.system)
    }

    /// `POST {path}` with `{create, update}`, answered item by item in order. `Err` when the
    /// request as a whole failed or the answer does not have one result per item.
    async fn batch(
        &self,
        path: &str,
        creates: Vec<Value>,
        updates: Vec<Value>,
        deletes: Vec<u64>,
        context: &str,
    ) -> Result<(Vec<Value>, Vec<Value>, Vec<Value>), ConnectorError> {
        let mut body = serde_json::Map::new();
        let (n_create, n_update, n_delete) = (creates.len(), updates.len(), deletes.len());
        if n_create > 0 {
            body.insert("create".into(), Value::Array(creates));
        }
        if n_update > 0 {
            body.insert("update".into(), Value::Array(updates));
        }
        if n_delete > 0 {
            body.insert("delete".into(), json!(deletes));
        }
        let response = self.request(Method::POST, path, &[], Some(&Value::Object(body)), context).await?;
        let part = |key: &str, expected: usize| -> Result<Vec<Value>, ConnectorError> {
            if expected == 0 {
                return Ok(Vec::new());
            }
            match response.body.get(key).and_then(Value::as_array) {
                Some(items) if items.len() == expected => Ok(items.clone()),
                _ => Err(ConnectorError::new(
                    ErrorKind::InvalidResponse,
                    context,
                    format!("the batch response has no {key:?} array with one result per item ({expected} sent)"),
                )),
            }
        };
        Ok((part("create", n_create)?, part("update", n_update)?, part("delete", n_delete)?))
    }

    // ---- products -------------------------------------------------------------------------

    async fn write_products(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let context = self.write_context(EntityKind::Product);
        let shop = self.shop();
        let mut outcomes: Vec<Option<WriteOutcome>> = batch.items.iter().map(|_| None).collect();
        for (chunk_index, chunk) in batch.items.chunks(BATCH_LIMIT).enumerate() {
            let offset = chunk_index * BATCH_LIMIT;
            let mut creates = Vec::new();
            let mut updates = Vec::new();
            let mut variations_of: HashMap<usize, Vec<(String, Value)>> = HashMap::new();
            for (n, item) in chunk.iter().enumerate() {
                let index = offset + n;
                let item_context = format!("{context}: product {}", item.natural_key);
                let Record::Product(product) = &item.record else {
                    outcomes[index] = Some(failed(ErrorKind::InvalidRequest, &item_context, "not a product record"));
                    continue;
                };
                let (mut body, variations) = match product_to_woo(product, &shop) {
                    Ok(converted) => converted,
                    Err(message) => {
                        outcomes[index] = Some(failed(ErrorKind::InvalidRequest, &item_context, message));
                        continue;
                    }
                };
                if !is_simple(product) {
                    variations_of.insert(index, variations);
                }
                match item.target_id.as_deref().map(str::parse::<u64>) {
                    Some(Ok(id)) => {
                        body["id"] = json!(id);
                        // WooCommerce downloads every image given by `src` into the media
                        // library again: images are written when the product is created only.
                        if let Some(object) = body.as_object_mut() {
                            object.remove("images");
                        }
                        updates.push((index, body));
                    }
                    Some(Err(_)) => {
                        let message =
                            format!("the link's target id {:?} is not a WooCommerce product id", item.target_id);
                        outcomes[index] = Some(failed(ErrorKind::InvalidRequest, &item_context, message));
                    }
                    None => creates.push((index, body)),
                }
            }
            if creates.is_empty() && updates.is_empty() {
                continue;
            }
            let (created, updated, _) = self
                .batch(
                    "/products/batch",
                    creates.iter().map(|(_, b)| b.clone()).collect(),
                    updates.iter().map(|(_, b)| b.clone()).collect(),
                    Vec::new(),
                    &context,
                )
                .await?;
            for ((sent, results), is_create) in [((&creates, &created), true), ((&updates, &updated), false)] {
                for ((index, _), result) in sent.iter().zip(results) {
                    let item = &batch.items[*index];
                    let item_context = format!("{context}: product {}", item.natural_key);
                    if let Some(error) = batch_item_error(&item_context, result) {
                        outcomes[*index] = Some(WriteOutcome::Failed(error));
                        continue;
                    }
                    let Some(id) = result.get("id").and_then(Value::as_u64) else {
                        outcomes[*index] =
                            Some(failed(ErrorKind::InvalidResponse, &item_context, "the batch result has no id"));
                        continue;
                    };
                    if let Some(variations) = variations_of.remove(index)
                        && let Err(error) = self.sync_variations(id, is_create, variations, &item_context).await
                    {
                        outcomes[*index] = Some(WriteOutcome::Failed(error));
                        continue;
                    }
                    let target_id = id.to_string();
                    outcomes[*index] = Some(if is_create {
                        WriteOutcome::Created { target_id }
                    } else {
                        WriteOutcome::Updated { target_id }
                    });
                }
            }
        }
        Ok(outcomes.into_iter().map(|o| o.expect("every item got an outcome")).collect())
    }

    /// Makes the product's variations exactly `wanted` (by SKU): creates, updates, deletes.
    async fn sync_variations(
        &self,
        product_id: u64,
        new_product: bool,
        wanted: Vec<(String, Value)>,
        context: &str,
    ) -> Result<(), ConnectorError> {
        let path = format!("/products/{product_id}/variations");
        let existing: HashMap<String, u64> = if new_product {
            HashMap::new()
        } else {
            self.list_all(&path, &[], context)
                .await?
                .iter()
                .map(|v| {
                    (
                        v.get("sku").and_then(Value::as_str).unwrap_or("").to_string(),
                        v.get("id").and_then(Value::as_u64).unwrap_or(0),
                    )
                })
                .collect()
        };
        let wanted_skus: std::collections::HashSet<String> = wanted.iter().map(|(sku, _)| sku.clone()).collect();
        let mut operations: Vec<(String, VariationOp)> = Vec::new();
        for (sku, mut body) in wanted {
            match existing.get(&sku) {
                Some(id) => {
                    body["id"] = json!(id);
                    if let Some(object) = body.as_object_mut() {
                        object.remove("image");
                    }
                    operations.push((sku, VariationOp::Update(body)));
                }
                None => operations.push((sku, VariationOp::Create(body))),
            }
        }
        for (sku, id) in &existing {
            if !wanted_skus.contains(sku) {
                operations.push((sku.clone(), VariationOp::Delete(*id)));
            }
        }
        let mut errors: Vec<ConnectorError> = Vec::new();
        for chunk in operations.chunks(BATCH_LIMIT) {
            let mut skus: [Vec<&str>; 3] = Default::default();
            let (mut creates, mut updates, mut deletes) = (Vec::new(), Vec::new(), Vec::new());
            for (sku, operation) in chunk {
                match operation {
                    VariationOp::Create(body) => {
                        skus[0].push(sku);
                        creates.push(body.clone());
                    }
                    VariationOp::Update(body) => {
                        skus[1].push(sku);
                        updates.push(body.clone());
                    }
                    VariationOp::Delete(id) => {
                        skus[2].push(sku);
                        deletes.push(*id);
                    }
                }
            }
            let (created, updated, deleted) =
                self.batch(&format!("{path}/batch"), creates, updates, deletes, context).await?;
            let all_skus = skus.iter().flatten();
            for (sku, result) in all_skus.zip(created.iter().chain(&updated).chain(&deleted)) {
                if let Some(error) = batch_item_error(&format!("{context}: variation {sku}"), result) {
                    errors.push(error);
                }
            }
        }
        if errors.is_empty() {
            return Ok(());
        }
        let retryable = errors.iter().all(|e| e.retryable);
        let kind = errors[0].kind;
        let message = errors.iter().map(|e| format!("{}: {}", e.context, e.message)).collect::<Vec<_>>().join("; ");
        Err(ConnectorError::new(kind, context, format!("{} of the variations failed: {message}", errors.len()))
            .with_retryable(retryable))
    }

    async fn lookup_products(&self, keys: &[String]) -> Result<Vec<Option<String>>, ConnectorError> {
        let context = format!("looking up products by SKU in woocommerce {:?}", self.system);
        let mut found: HashMap<String, u64> = HashMap::new();
        for chunk in keys.chunks(50) {
            let query = [("sku", chunk.join(",")), ("per_page", "100".to_string()), ("status", "any".to_string())];
            let (items, _) = self.list("/products", &query, &context).await?;
            for item in items {
                if let (Some(sku), Some(id)) =
                    (item.get("sku").and_then(Value::as_str), item.get("id").and_then(Value::as_u64))
                {
                    found.insert(sku.to_string(), id);
                }
            }
        }
        Ok(keys.iter().map(|key| found.get(key).map(u64::to_string)).collect())
    }

    // ---- stock ----------------------------------------------------------------------------

    /// Where each SKU lives, from the cached index, rebuilt once when a SKU is missing.
    async fn resolve_skus(&self, skus: &[String], context: &str) -> Result<HashMap<String, Stockable>, ConnectorError> {
        let mut index = self.sku_index.lock().await;
        let missing = index.as_ref().is_none_or(|index| skus.iter().any(|sku| !index.contains_key(sku)));
        if missing {
            let mut fresh = HashMap::new();
            for product in self.list_all("/products", &[("status", "any".into())], context).await? {
                let id = product.get("id").and_then(Value::as_u64).unwrap_or(0);
                if let Some(sku) = product.get("sku").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                    fresh.insert(sku.to_string(), (id, 0));
                }
                if product.get("type").and_then(Value::as_str) == Some("variable") {
                    for variation in self.list_all(&format!("/products/{id}/variations"), &[], context).await? {
                        if let Some(sku) = variation.get("sku").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                            fresh.insert(
                                sku.to_string(),
                                (id, variation.get("id").and_then(Value::as_u64).unwrap_or(0)),
                            );
                        }
                    }
                }
            }
            *index = Some(fresh);
        }
        let index = index.as_ref().expect("filled above");
        Ok(skus
            .iter()
            .filter_map(|sku| {
                index.get(sku).map(|(parent, variation)| {
                    let at = if *variation == 0 {
                        Stockable::Product(*parent)
                    } else {
                        Stockable::Variation { parent: *parent, id: *variation }
                    };
                    (sku.clone(), at)
                })
            })
            .collect())
    }

    async fn write_stock(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let context = self.write_context(EntityKind::StockLevel);
        let mut outcomes: Vec<Option<WriteOutcome>> = batch.items.iter().map(|_| None).collect();
        let mut wanted: Vec<(usize, String, i64)> = Vec::new();
        for (index, item) in batch.items.iter().enumerate() {
            let item_context = format!("{context}: {}", item.natural_key);
            let Record::StockLevel(level) = &item.record else {
                outcomes[index] = Some(failed(ErrorKind::InvalidRequest, &item_context, "not a stock level record"));
                continue;
            };
            if let Some(location) = &self.config.stock_location
                && level.location.trim() != location
            {
                outcomes[index] = Some(failed(
                    ErrorKind::InvalidRequest,
                    &item_context,
                    format!(
                        "WooCommerce keeps one stock number per SKU; this level is for location {:?} and stock_location is {location:?} (filter the flow to that location, or sum the locations upstream)",
                        level.location
                    ),
                ));
                continue;
            }
            if level.available.fract() != Decimal::ZERO {
                outcomes[index] = Some(failed(
                    ErrorKind::InvalidRequest,
                    &item_context,
                    format!("WooCommerce stock quantities are whole numbers; got {}", level.available),
                ));
                continue;
            }
            let Some(quantity) = rust_decimal::prelude::ToPrimitive::to_i64(&level.available) else {
                outcomes[index] =
                    Some(failed(ErrorKind::InvalidRequest, &item_context, "the quantity is out of range"));
                continue;
            };
            wanted.push((index, level.sku.clone(), quantity));
        }
        let mut located: HashMap<usize, Stockable> = HashMap::new();
        let mut unresolved = Vec::new();
        for (index, sku, _) in &wanted {
            match batch.items[*index].target_id.as_deref().and_then(Stockable::parse) {
                Some(at) => {
                    located.insert(*index, at);
                }
                None => unresolved.push(sku.clone()),
            }
        }
        if !unresolved.is_empty() {
            let found = self.resolve_skus(&unresolved, &context).await?;
            for (index, sku, _) in &wanted {
                if !located.contains_key(index)
                    && let Some(at) = found.get(sku)
                {
                    located.insert(*index, *at);
                }
            }
        }
        // One request per parent for variations, and batches of products.
        let mut by_path: BTreeMap<String, Vec<(usize, u64, i64, Stockable)>> = BTreeMap::new();
        for (index, sku, quantity) in &wanted {
            match located.get(index) {
                None => {
                    let error = ConnectorError::new(
                        ErrorKind::NotFound,
                        format!("{context}: {}", batch.items[*index].natural_key),
                        format!("no product or variation has SKU {sku:?} in WooCommerce (yet)"),
                    )
                    .with_retryable(true);
                    outcomes[*index] = Some(WriteOutcome::Failed(error));
                }
                Some(at @ Stockable::Product(id)) => {
                    by_path.entry("/products/batch".into()).or_default().push((*index, *id, *quantity, *at))
                }
                Some(at @ Stockable::Variation { parent, id }) => by_path
                    .entry(format!("/products/{parent}/variations/batch"))
                    .or_default()
                    .push((*index, *id, *quantity, *at)),
            }
        }
        for (path, entries) in by_path {
            for chunk in entries.chunks(BATCH_LIMIT) {
                let updates = chunk
                    .iter()
                    .map(|(_, id, quantity, _)| json!({"id": id, "manage_stock": true, "stock_quantity": quantity}))
                    .collect();
                let (_, results, _) = self.batch(&path, Vec::new(), updates, Vec::new(), &context).await?;
                for ((index, _, _, at), result) in chunk.iter().zip(&results) {
                    let item_context = format!("{context}: {}", batch.items[*index].natural_key);
                    outcomes[*index] = Some(match batch_item_error(&item_context, result) {
                        Some(error) => {
                            // A stale link or index: forget the index so the next try rebuilds it.
                            if error.kind == ErrorKind::NotFound {
                                *self.sku_index.lock().await = None;
                            }
                            WriteOutcome::Failed(error)
                        }
                        None => WriteOutcome::Updated { target_id: at.target_id() },
                    });
                }
            }
        }
        Ok(outcomes.into_iter().map(|o| o.expect("every item got an outcome")).collect())
    }

    // ---- orders: status and shipments -----------------------------------------------------

    /// The order's id from its number (by default WooCommerce's order number is its id;
    /// plugins that change numbers are found through `search`).
    async fn find_order(&self, number: &str, context: &str) -> Result<Option<u64>, ConnectorError> {
        if let Ok(id) = number.parse::<u64>() {
            match self.request(Method::GET, &format!("/orders/{id}"), &[], None, context).await {
                Ok(response) if response.body.get("number").and_then(Value::as_str) == Some(number) => {
                    return Ok(Some(id));
                }
                Ok(_) => {}
                Err(error) if error.kind == ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        let query = [("search", number.to_string()), ("status", "any".to_string()), ("per_page", "20".to_string())];
        let (items, _) = self.list("/orders", &query, context).await?;
        Ok(items
            .iter()
            .find(|o| o.get("number").and_then(Value::as_str) == Some(number))
            .and_then(|o| o.get("id").and_then(Value::as_u64)))
    }

    /// Adds `note` to the order unless it is there already; the note's id and whether it was added.
    async fn add_note_once(
        &self,
        order_id: u64,
        note: &str,
        customer_note: bool,
        context: &str,
    ) -> Result<(u64, bool), ConnectorError> {
        let path = format!("/orders/{order_id}/notes");
        let existing = self.request(Method::GET, &path, &[], None, context).await?;
        if let Some(found) =
            existing.body.as_array().into_iter().flatten().find(|n| n.get("note").and_then(Value::as_str) == Some(note))
        {
            return Ok((found.get("id").and_then(Value::as_u64).unwrap_or(0), false));
        }
        let body = json!({"note": note, "customer_note": customer_note});
        let created = self.request(Method::POST, &path, &[], Some(&body), context).await?;
        Ok((created.body.get("id").and_then(Value::as_u64).unwrap_or(0), true))
    }

    /// Order ids for the items (`Err` outcome for those not found).
    async fn order_ids(
        &self,
        batch: &WriteBatch,
        number_of: impl Fn(&WriteItem) -> Option<String>,
        context: &str,
        outcomes: &mut [Option<WriteOutcome>],
    ) -> Result<Vec<Option<u64>>, ConnectorError> {
        let mut ids = Vec::with_capacity(batch.items.len());
        for (index, item) in batch.items.iter().enumerate() {
            let item_context = format!("{context}: {}", item.natural_key);
            let Some(number) = number_of(item) else {
                outcomes[index] = Some(failed(ErrorKind::InvalidRequest, &item_context, "not a record of this entity"));
                ids.push(None);
                continue;
            };
            match self.find_order(&number, &item_context).await? {
                Some(id) => ids.push(Some(id)),
                None => {
                    outcomes[index] = Some(failed(
                        ErrorKind::NotFound,
                        &item_context,
                        format!("no WooCommerce order has number {number:?}"),
                    ));
                    ids.push(None);
                }
            }
        }
        Ok(ids)
    }

    /// `POST /orders/batch` with `{id, status}` for each `(index, order id, status)`.
    async fn set_statuses(
        &self,
        changes: &[(usize, u64, &str)],
        batch: &WriteBatch,
        context: &str,
        outcomes: &mut [Option<WriteOutcome>],
    ) -> Result<(), ConnectorError> {
        for chunk in changes.chunks(BATCH_LIMIT) {
            let updates = chunk.iter().map(|(_, id, status)| json!({"id": id, "status": status})).collect();
            let (_, results, _) = self.batch("/orders/batch", Vec::new(), updates, Vec::new(), context).await?;
            for ((index, _, _), result) in chunk.iter().zip(&results) {
                let item_context = format!("{context}: {}", batch.items[*index].natural_key);
                if let Some(error) = batch_item_error(&item_context, result) {
                    outcomes[*index] = Some(WriteOutcome::Failed(error));
                }
            }
        }
        Ok(())
    }

    async fn write_order_status(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let context = self.write_context(EntityKind::OrderStatus);
        let mut outcomes: Vec<Option<WriteOutcome>> = batch.items.iter().map(|_| None).collect();
        let number_of = |item: &WriteItem| match &item.record {
            Record::OrderStatus(change) => Some(change.order_number.clone()),
            _ => None,
        };
        let ids = self.order_ids(batch, number_of, &context, &mut outcomes).await?;
        let mut changes = Vec::new();
        for (index, (item, id)) in batch.items.iter().zip(&ids).enumerate() {
            if let (Record::OrderStatus(change), Some(id)) = (&item.record, id) {
                changes.push((index, *id, woo_status(change.state, change.financial_status)));
            }
        }
        self.set_statuses(&changes, batch, &context, &mut outcomes).await?;
        for (index, id, _) in changes {
            if outcomes[index].is_some() {
                continue;
            }
            let item = &batch.items[index];
            if let Record::OrderStatus(change) = &item.record
                && let Some(note) = change.note.as_deref().filter(|n| !n.trim().is_empty())
            {
                let item_context = format!("{context}: {}", item.natural_key);
                if let Err(error) = self.add_note_once(id, note, false, &item_context).await {
                    outcomes[index] = Some(WriteOutcome::Failed(error));
                    continue;
                }
            }
            outcomes[index] = Some(WriteOutcome::Updated { target_id: id.to_string() });
        }
        Ok(outcomes.into_iter().map(|o| o.expect("every item got an outcome")).collect())
    }

    async fn write_shipments(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let context = self.write_context(EntityKind::Shipment);
        let mut outcomes: Vec<Option<WriteOutcome>> = batch.items.iter().map(|_| None).collect();
        let number_of = |item: &WriteItem| match &item.record {
            Record::Shipment(shipment) => Some(shipment.order_number.clone()),
            _ => None,
        };
        let ids = self.order_ids(batch, number_of, &context, &mut outcomes).await?;
        let pending: Vec<(usize, u64)> =
            ids.iter().enumerate().filter_map(|(index, id)| id.map(|id| (index, id))).collect();
        if self.config.shipment_completes_order {
            let changes: Vec<(usize, u64, &str)> =
                pending.iter().map(|(index, id)| (*index, *id, "completed")).collect();
            self.set_statuses(&changes, batch, &context, &mut outcomes).await?;
        }
        for (index, order_id) in pending {
            if outcomes[index].is_some() {
                continue;
            }
            let item = &batch.items[index];
            let Record::Shipment(shipment) = &item.record else { continue };
            let item_context = format!("{context}: {}", item.natural_key);
            let tracking: Vec<String> = shipment
                .tracking
                .iter()
                .map(|t| match &t.url {
                    Some(url) => format!("{} {} ({url})", t.carrier, t.number),
                    None => format!("{} {}", t.carrier, t.number),
                })
                .collect();
            let note = if tracking.is_empty() {
                format!("Shipment {} has been sent.", shipment.number)
            } else {
                format!("Shipment {} has been sent: {}.", shipment.number, tracking.join(", "))
            };
            outcomes[index] =
                Some(match self.add_note_once(order_id, &note, shipment.notify_customer, &item_context).await {
                    Ok((note_id, true)) => WriteOutcome::Created { target_id: format!("{order_id}/notes/{note_id}") },
                    Ok((note_id, false)) => WriteOutcome::Updated { target_id: format!("{order_id}/notes/{note_id}") },
                    Err(error) => WriteOutcome::Failed(error),
                });
        }
        Ok(outcomes.into_iter().map(|o| o.expect("every item got an outcome")).collect())
    }

    // ---- customers ------------------------------------------------------------------------

    async fn write_customers(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let context = self.write_context(EntityKind::Customer);
        let mut outcomes: Vec<Option<WriteOutcome>> = batch.items.iter().map(|_| None).collect();
        for (chunk_index, chunk) in batch.items.chunks(BATCH_LIMIT).enumerate() {
            let offset = chunk_index * BATCH_LIMIT;
            let mut creates = Vec::new();
            let mut updates = Vec::new();
            for (n, item) in chunk.iter().enumerate() {
                let index = offset + n;
                let item_context = format!("{context}: {}", item.natural_key);
                let body = match &item.record {
                    Record::Customer(customer) => customer_to_woo(customer),
                    _ => Err("not a customer record".into()),
                };
                let mut body = match body {
                    Ok(body) => body,
                    Err(message) => {
                        outcomes[index] = Some(failed(ErrorKind::InvalidRequest, &item_context, message));
                        continue;
                    }
                };
                match item.target_id.as_deref().map(str::parse::<u64>) {
                    Some(Ok(id)) => {
                        body["id"] = json!(id);
                        updates.push((index, body));
                    }
                    Some(Err(_)) => {
                        outcomes[index] = Some(failed(
                            ErrorKind::InvalidRequest,
                            &item_context,
                            "the link's target id is not a customer id",
                        ))
                    }
                    None => creates.push((index, body)),
                }
            }
            if creates.is_empty() && updates.is_empty() {
                continue;
            }
            let (created, updated, _) = self
                .batch(
                    "/customers/batch",
                    creates.iter().map(|(_, b)| b.clone()).collect(),
                    updates.iter().map(|(_, b)| b.clone()).collect(),
                    Vec::new(),
                    &context,
                )
                .await?;
            for ((sent, results), is_create) in [((&creates, &created), true), ((&updates, &updated), false)] {
                for ((index, _), result) in sent.iter().zip(results) {
                    let item_context = format!("{context}: {}", batch.items[*index].natural_key);
                    outcomes[*index] = Some(
                        match (batch_item_error(&item_context, result), result.get("id").and_then(Value::as_u64)) {
                            (Some(error), _) => WriteOutcome::Failed(error),
                            (None, Some(id)) if is_create => WriteOutcome::Created { target_id: id.to_string() },
                            (None, Some(id)) => WriteOutcome::Updated { target_id: id.to_string() },
                            (None, None) => {
                                failed(ErrorKind::InvalidResponse, &item_context, "the batch result has no id")
                            }
                        },
                    );
                }
            }
        }
        Ok(outcomes.into_iter().map(|o| o.expect("every item got an outcome")).collect())
    }

    async fn lookup_customers(&self, keys: &[String]) -> Result<Vec<Option<String>>, ConnectorError> {
        let context = format!("looking up customers by e-mail in woocommerce {:?}", self.system);
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            if !key.contains('@') {
                // A customer number: WooCommerce cannot search customers by meta data.
                found.push(None);
                continue;
            }
            let query = [("email", key.clone()), ("role", "all".to_string())];
            let (items, _) = self.list("/customers", &query, &context).await?;
            found.push(items.first().and_then(|c| c.get("id").and_then(Value::as_u64)).map(|id| id.to_string()));
        }
        Ok(found)
    }
}

#[async_trait]
impl Sink for WooConnector {
    fn capabilities(&self, entity: EntityKind) -> Capabilities {
        match entity {
            EntityKind::Product | EntityKind::Customer | EntityKind::StockLevel => {
                Capabilities { write: true, lookup: true, ..Capabilities::default() }
            }
            EntityKind::OrderStatus | EntityKind::Shipment => Capabilities { write: true, ..Capabilities::default() },
            _ => Capabilities::default(),
        }
    }

    fn max_batch_size(&self, entity: EntityKind) -> usize {
        match entity {
            // Each shipment and status change costs a few calls (order lookup, notes).
            EntityKind::OrderStatus | EntityKind::Shipment => 50,
            _ => BATCH_LIMIT,
        }
    }

    async fn lookup(&self, entity: EntityKind, natural_keys: &[String]) -> Result<Vec<Option<String>>, ConnectorError> {
        match entity {
            EntityKind::Product => self.lookup_products(natural_keys).await,
            EntityKind::Customer => self.lookup_customers(natural_keys).await,
            EntityKind::StockLevel => {
                let context = format!("looking up SKUs in woocommerce {:?}", self.system);
                let skus: Vec<String> = natural_keys
                    .iter()
                    .map(|key| key.rsplit_once('@').map_or(key.as_str(), |(sku, _)| sku).to_string())
                    .collect();
                let found = self.resolve_skus(&skus, &context).await?;
                Ok(skus.iter().map(|sku| found.get(sku).map(Stockable::target_id)).collect())
            }
            _ => Ok(natural_keys.iter().map(|_| None).collect()),
        }
    }

    async fn write_batch(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        match batch.entity {
            EntityKind::Product => self.write_products(batch).await,
            EntityKind::StockLevel => self.write_stock(batch).await,
            EntityKind::OrderStatus => self.write_order_status(batch).await,
            EntityKind::Shipment => self.write_shipments(batch).await,
            EntityKind::Customer => self.write_customers(batch).await,
            other => Err(ConnectorError::new(
                ErrorKind::InvalidRequest,
                self.write_context(other),
                format!(
                    "the woocommerce connector does not write {other}: it writes product, stock_level, order_status, shipment and customer"
                ),
            )),
        }
    }
}
