//! Writing to Shopify: products with `productSet` (or a bulk operation above
//! `bulk_threshold`), customer-group prices with `priceListFixedPricesAdd`, stock with
//! `inventorySetQuantities`, shipments with `fulfillmentCreate`. Each record gets its own
//! outcome: `userErrors` fail that record alone, naming the field.
//!
//! A failure of the whole request (outage, timeout, authentication) before anything of the
//! batch was written is the batch's `Err`; after something was written, the records not yet
//! written fail one by one with the same (retryable) reason, so no outcome is lost.

use crate::shopify::ShopifyConnector;
use crate::shopify::client::VariantIds;
use crate::shopify::map::{self, describe_user_errors, nodes, text, user_error_messages};
use crate::{
    Capabilities, ConnectorError, DeleteItem, DeleteMode, ErrorKind, Sink, WriteBatch, WriteItem, WriteOutcome,
};
use async_trait::async_trait;
use erpsync_model::{
    Document, EntityKind, OrderState, OrderStatusChange, Pdf, PriceList, Record, Shipment, StockLevel,
};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// Shopify's cap on input arrays.
const MAX_INPUT_ITEMS: usize = 250;

pub(crate) const PRODUCT_SET_MUTATION: &str = "mutation ProductSet($input: ProductSetInput!, $identifier: ProductSetIdentifiers) { \
    productSet(input: $input, identifier: $identifier, synchronous: true) { \
    product { id variants(first: 250) { nodes { id sku inventoryItem { id } } } } \
    userErrors { field message code } } }";

/// A failure of one record.
pub(crate) fn failed(kind: ErrorKind, context: &str, message: impl Into<String>) -> WriteOutcome {
    WriteOutcome::Failed(ConnectorError::new(kind, context, message))
}

/// The same failure for another record (errors are not `Clone`: they may hold a source).
pub(crate) fn copy_error(error: &ConnectorError, context: &str) -> ConnectorError {
    let mut copy = ConnectorError::new(error.kind, context, error.message.clone()).with_retryable(error.retryable);
    copy.fault = error.fault;
    copy.retry_after = error.retry_after;
    copy
}

#[async_trait]
impl Sink for ShopifyConnector {
    fn capabilities(&self, entity: EntityKind) -> Capabilities {
        match entity {
            EntityKind::Product => Capabilities { write: true, lookup: true, delete: true, ..Capabilities::default() },
            EntityKind::PriceList
            | EntityKind::StockLevel
            | EntityKind::Shipment
            | EntityKind::OrderStatus
            | EntityKind::Document => Capabilities { write: true, ..Capabilities::default() },
            _ => Capabilities::default(),
        }
    }

    fn max_batch_size(&self, entity: EntityKind) -> usize {
        match entity {
            // A full catalog goes in one bulk operation; the engine's pages decide the rest.
            EntityKind::Product => 10_000,
            EntityKind::StockLevel => MAX_INPUT_ITEMS,
            _ => 50,
        }
    }

    async fn lookup(&self, entity: EntityKind, natural_keys: &[String]) -> Result<Vec<Option<String>>, ConnectorError> {
        if entity != EntityKind::Product {
            return Ok(vec![None; natural_keys.len()]);
        }
        let context = format!("looking up products by sku in shopify {:?}", self.system);
        let found = self.variants_by_sku(natural_keys, &context).await?;
        let mut out = Vec::with_capacity(natural_keys.len());
        for key in natural_keys {
            match found.get(key) {
                Some(ids) => out.push(Some(ids.product_id.clone())),
                None => out.push(self.product_by_handle(&map::handle(key), &context).await?),
            }
        }
        Ok(out)
    }

    async fn write_batch(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let context = format!("writing {} to shopify {:?}", batch.entity, self.system);
        match batch.entity {
            EntityKind::Product if batch.items.len() > self.config.bulk_threshold => {
                self.write_products_in_bulk(batch, &context).await
            }
            EntityKind::Product => self.write_products(batch, &context).await,
            EntityKind::StockLevel => self.write_stock(batch, &context).await,
            EntityKind::PriceList => self.write_price_lists(batch, &context).await,
            EntityKind::Shipment => self.write_shipments(batch, &context).await,
            EntityKind::OrderStatus | EntityKind::Document => self.write_order_changes(batch, &context).await,
            other => {
                Err(ConnectorError::new(ErrorKind::InvalidRequest, &context, format!("shopify cannot write {other}")))
            }
        }
    }

    /// Products: `Archive` sets the status `ARCHIVED` with `productUpdate` (the product, its
    /// variants and its history stay), `Delete` removes it with `productDelete`. A product
    /// already gone counts as deleted.
    async fn delete_batch(
        &self,
        entity: EntityKind,
        items: &[DeleteItem],
        mode: DeleteMode,
    ) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let context = format!("deleting {entity} in shopify {:?}", self.system);
        if entity != EntityKind::Product || mode == DeleteMode::Ignore {
            let message = match mode {
                DeleteMode::Ignore => "the flow ignores deletes".to_string(),
                _ => format!("shopify cannot delete or archive {entity}"),
            };
            return Ok(items.iter().map(|_| failed(ErrorKind::InvalidRequest, &context, message.clone())).collect());
        }
        let archive_query = if self.config.api_version.as_str() >= "2024-10" {
            "mutation Archive($id: ID!) { productUpdate(product: { id: $id, status: ARCHIVED }) { product { id status } userErrors { field message } } }"
        } else {
            "mutation Archive($id: ID!) { productUpdate(input: { id: $id, status: ARCHIVED }) { product { id status } userErrors { field message } } }"
        };
        let delete_query = "mutation Delete($id: ID!) { productDelete(input: { id: $id }) { deletedProductId userErrors { field message } } }";
        let mut outcomes: Vec<WriteOutcome> = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let item_context = format!("{context}: {}", item.natural_key.as_deref().unwrap_or(&item.target_id));
            if !item.target_id.starts_with("gid://shopify/Product/") {
                outcomes.push(failed(
                    ErrorKind::InvalidRequest,
                    &item_context,
                    format!("{:?} is not a Shopify product id", item.target_id),
                ));
                continue;
            }
            let (operation, query, root) = match mode {
                DeleteMode::Archive => ("product_archive", archive_query, "productUpdate"),
                _ => ("product_delete", delete_query, "productDelete"),
            };
            let data = match self.graphql(operation, 10.0, query, json!({ "id": item.target_id }), &item_context).await
            {
                Ok(data) => data,
                Err(error) if error_is_per_item(&error) => {
                    outcomes.push(WriteOutcome::Failed(error));
                    continue;
                }
                Err(error) if index == 0 => return Err(error),
                Err(error) => {
                    for rest in &items[index..] {
                        let rest_context =
                            format!("{context}: {}", rest.natural_key.as_deref().unwrap_or(&rest.target_id));
                        outcomes.push(WriteOutcome::Failed(copy_error(&error, &rest_context)));
                    }
                    return Ok(outcomes);
                }
            };
            let payload = data.get(root).cloned().unwrap_or(Value::Null);
            let errors = payload.get("userErrors").and_then(Value::as_array).cloned().unwrap_or_default();
            let gone = errors.iter().any(|error| {
                text(error, "message").is_some_and(|message| message.to_lowercase().contains("does not exist"))
            });
            outcomes.push(match (errors.is_empty(), gone, mode) {
                (true, _, _) | (false, true, DeleteMode::Delete) => {
                    WriteOutcome::Updated { target_id: item.target_id.clone() }
                }
                (false, true, _) => failed(ErrorKind::NotFound, &item_context, describe_user_errors(&errors)),
                (false, false, _) => failed(ErrorKind::InvalidRequest, &item_context, describe_user_errors(&errors)),
            });
        }
        Ok(outcomes)
    }
}

impl ShopifyConnector {
    /// SKU -> variant, inventory item and product, from the cache or `productVariants`
    /// searches of up to 50 SKUs each. SKUs not found are absent.
    pub(crate) async fn variants_by_sku(
        &self,
        skus: &[String],
        context: &str,
    ) -> Result<HashMap<String, VariantIds>, ConnectorError> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        {
            let caches = self.caches();
            for sku in skus {
                match caches.variants.get(sku) {
                    Some(ids) => {
                        found.insert(sku.clone(), ids.clone());
                    }
                    None if !sku.trim().is_empty() && !missing.contains(sku) => missing.push(sku.clone()),
                    None => {}
                }
            }
        }
        let query = "query Variants($first: Int!, $query: String!) { productVariants(first: $first, query: $query) { nodes { id sku product { id } inventoryItem { id } } } }";
        for chunk in missing.chunks(50) {
            let search = chunk
                .iter()
                .map(|sku| format!("sku:'{}'", sku.replace('\\', "\\\\").replace('\'', "\\'")))
                .collect::<Vec<_>>()
                .join(" OR ");
            // A SKU may exist twice in a shop; ask for a few more than the SKUs searched.
            let first = (chunk.len() * 2).min(250);
            let data = self
                .graphql(
                    "variants_by_sku",
                    2.0 + first as f64 * 3.0,
                    query,
                    json!({ "first": first, "query": search }),
                    context,
                )
                .await?;
            let mut caches = self.caches();
            for node in nodes(data.get("productVariants")) {
                let (Some(sku), Some(variant_id)) = (text(node, "sku"), text(node, "id")) else { continue };
                if !chunk.contains(&sku) || found.contains_key(&sku) {
                    continue;
                }
                let ids = VariantIds {
                    variant_id,
                    inventory_item_id: map::at(node, "inventoryItem.id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    product_id: map::at(node, "product.id").and_then(Value::as_str).unwrap_or_default().to_string(),
                };
                caches.variants.insert(sku.clone(), ids.clone());
                found.insert(sku, ids);
            }
        }
        Ok(found)
    }

    async fn product_by_handle(&self, handle: &str, context: &str) -> Result<Option<String>, ConnectorError> {
        if handle.is_empty() {
            return Ok(None);
        }
        let query = "query ByHandle($query: String!) { products(first: 1, query: $query) { nodes { id handle } } }";
        let data = self
            .graphql("product_by_handle", 3.0, query, json!({ "query": format!("handle:'{handle}'") }), context)
            .await?;
        Ok(nodes(data.get("products"))
            .into_iter()
            .find(|node| text(node, "handle").as_deref() == Some(handle))
            .and_then(|node| text(node, "id")))
    }

    /// The variants (SKU -> id) of existing products, so that `productSet` updates them in
    /// place instead of replacing them with new ones.
    pub(crate) async fn existing_variants(
        &self,
        product_ids: &[String],
        context: &str,
    ) -> Result<HashMap<String, HashMap<String, String>>, ConnectorError> {
        let mut out = HashMap::new();
        let query = "query Existing($ids: [ID!]!) { nodes(ids: $ids) { ... on Product { id variants(first: 100) { nodes { id sku } } } } }";
        // About 103 points per product: 9 products stay under the 1000-point cap.
        for chunk in product_ids.chunks(9) {
            let data = self
                .graphql("existing_variants", 3.0 + chunk.len() as f64 * 103.0, query, json!({ "ids": chunk }), context)
                .await?;
            for node in nodes(data.get("nodes")) {
                let Some(id) = text(node, "id") else { continue };
                let variants: HashMap<String, String> = nodes(node.get("variants"))
                    .into_iter()
                    .filter_map(|variant| Some((text(variant, "sku")?, text(variant, "id")?)))
                    .collect();
                out.insert(id, variants);
            }
        }
        Ok(out)
    }

    /// Remembers the variants a write returned (SKU -> ids) for stock and price writes.
    pub(crate) fn remember_variants(&self, product: &Value) {
        let Some(product_id) = text(product, "id") else { return };
        let mut caches = self.caches();
        for variant in nodes(product.get("variants")) {
            let (Some(sku), Some(variant_id)) = (text(variant, "sku"), text(variant, "id")) else { continue };
            let inventory_item_id =
                map::at(variant, "inventoryItem.id").and_then(Value::as_str).unwrap_or_default().to_string();
            caches.variants.insert(sku, VariantIds { variant_id, inventory_item_id, product_id: product_id.clone() });
        }
    }

    /// The `productSet` input of each product item (or why it cannot be sent), with the
    /// existing variant ids of the products being updated.
    pub(crate) async fn product_inputs(
        &self,
        batch: &WriteBatch,
        context: &str,
    ) -> Result<Vec<Result<Value, String>>, ConnectorError> {
        let update_ids: Vec<String> = batch.items.iter().filter_map(|item| item.target_id.clone()).collect();
        let existing = self.existing_variants(&update_ids, context).await?;
        let empty = HashMap::new();
        Ok(batch
            .items
            .iter()
            .map(|item| {
                let Record::Product(product) = &item.record else {
                    return Err(format!("expected a product, got a {}", item.record.kind()));
                };
                let ids = item.target_id.as_ref().and_then(|id| existing.get(id)).unwrap_or(&empty);
                map::product_set_input(product, ids, item.target_id.is_none())
            })
            .collect())
    }

    async fn write_products(&self, batch: &WriteBatch, context: &str) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let inputs = self.product_inputs(batch, context).await?;
        let mut outcomes: Vec<WriteOutcome> = Vec::with_capacity(batch.items.len());
        for (item, input) in batch.items.iter().zip(inputs) {
            let item_context = format!("{context}: {}", item.natural_key);
            let input = match input {
                Ok(input) => input,
                Err(message) => {
                    outcomes.push(failed(ErrorKind::InvalidRequest, &item_context, message));
                    continue;
                }
            };
            let identifier = item.target_id.as_ref().map(|id| json!({ "id": id }));
            let variables = json!({ "input": input, "identifier": identifier });
            let data = match self.graphql("product_set", 10.0, PRODUCT_SET_MUTATION, variables, &item_context).await {
                Ok(data) => data,
                Err(error) if error_is_per_item(&error) => {
                    outcomes.push(WriteOutcome::Failed(error));
                    continue;
                }
                Err(error) if outcomes.iter().all(|outcome| matches!(outcome, WriteOutcome::Failed(_))) => {
                    return Err(error);
                }
                Err(error) => {
                    fail_rest(&mut outcomes, &batch.items, &error, context);
                    return Ok(outcomes);
                }
            };
            outcomes.push(self.product_outcome(item, data.get("productSet"), &item_context));
        }
        Ok(outcomes)
    }

    /// The outcome of one `productSet` payload.
    pub(crate) fn product_outcome(&self, item: &WriteItem, payload: Option<&Value>, context: &str) -> WriteOutcome {
        let Some(payload) = payload.filter(|payload| payload.is_object()) else {
            return failed(ErrorKind::InvalidResponse, context, "the answer has no productSet payload");
        };
        if let Some(errors) = payload.get("userErrors").and_then(Value::as_array).filter(|errors| !errors.is_empty()) {
            return failed(ErrorKind::InvalidRequest, context, describe_user_errors(errors));
        }
        let Some(product) = payload.get("product").filter(|product| product.is_object()) else {
            return failed(ErrorKind::InvalidResponse, context, "productSet returned no product and no userErrors");
        };
        self.remember_variants(product);
        let target_id = text(product, "id").unwrap_or_else(|| item.natural_key.clone());
        match item.target_id {
            Some(_) => WriteOutcome::Updated { target_id },
            None => WriteOutcome::Created { target_id },
        }
    }

    /// Shopify location name -> id, fetched once.
    async fn locations(&self, context: &str) -> Result<HashMap<String, String>, ConnectorError> {
        if let Some(locations) = self.caches().locations.clone() {
            return Ok(locations);
        }
        let query = "query Locations { locations(first: 250) { nodes { id name } } }";
        let data = self.graphql("locations", 252.0, query, json!({}), context).await?;
        let locations: HashMap<String, String> = nodes(data.get("locations"))
            .into_iter()
            .filter_map(|node| Some((text(node, "name")?, text(node, "id")?)))
            .collect();
        self.caches().locations = Some(locations.clone());
        Ok(locations)
    }

    /// The Shopify location id of a canonical location name: through `locations` in the
    /// configuration, else by equal name.
    fn location_id(&self, locations: &HashMap<String, String>, name: &str) -> Result<String, String> {
        let target = self.config.locations.get(name).map(String::as_str).unwrap_or(name);
        if target.starts_with("gid://shopify/Location/") {
            return Ok(target.to_string());
        }
        locations.get(target).cloned().ok_or_else(|| {
            let mut known: Vec<&str> = locations.keys().map(String::as_str).collect();
            known.sort();
            format!("location: no Shopify location named {target:?} (the shop has {})", known.join(", "))
        })
    }

    async fn write_stock(&self, batch: &WriteBatch, context: &str) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let mut outcomes: Vec<Option<WriteOutcome>> = batch.items.iter().map(|_| None).collect();
        let skus: Vec<String> = batch
            .items
            .iter()
            .filter_map(|item| match &item.record {
                Record::StockLevel(level) => Some(level.sku.clone()),
                _ => None,
            })
            .collect();
        let variants = self.variants_by_sku(&skus, context).await?;
        let locations = self.locations(context).await?;
        // (item index, inventory item, location, quantity)
        let mut rows: Vec<(usize, String, String, i64)> = Vec::new();
        for (index, item) in batch.items.iter().enumerate() {
            let item_context = format!("{context}: {}", item.natural_key);
            let Record::StockLevel(StockLevel { sku, location, available, .. }) = &item.record else {
                outcomes[index] = Some(failed(ErrorKind::InvalidRequest, &item_context, "expected a stock level"));
                continue;
            };
            let Some(ids) = variants.get(sku) else {
                outcomes[index] = Some(failed(
                    ErrorKind::NotFound,
                    &item_context,
                    format!("sku: no variant with sku {sku:?} in the shop"),
                ));
                continue;
            };
            let location_id = match self.location_id(&locations, location) {
                Ok(id) => id,
                Err(message) => {
                    outcomes[index] = Some(failed(ErrorKind::InvalidRequest, &item_context, message));
                    continue;
                }
            };
            let quantity = match whole(*available) {
                Some(quantity) => quantity,
                None => {
                    outcomes[index] = Some(failed(
                        ErrorKind::InvalidRequest,
                        &item_context,
                        format!("available: Shopify stocks whole units, got {available}"),
                    ));
                    continue;
                }
            };
            rows.push((index, ids.inventory_item_id.clone(), location_id, quantity));
        }
        let newer = self.config.api_version.as_str() >= "2026-01";
        let query = if newer {
            "mutation SetStock($input: InventorySetQuantitiesInput!, $key: String!) { inventorySetQuantities(input: $input) @idempotent(key: $key) { inventoryAdjustmentGroup { id } userErrors { field message code } } }"
        } else {
            "mutation SetStock($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input) { inventoryAdjustmentGroup { id } userErrors { field message code } } }"
        };
        let mut written_any = false;
        for (chunk_index, chunk) in rows.chunks(MAX_INPUT_ITEMS).enumerate() {
            let quantities: Vec<Value> = chunk
                .iter()
                .map(|(_, item_id, location_id, quantity)| {
                    if newer {
                        // `null` opts out of the compare-and-swap: the ERP is the source of truth.
                        json!({ "inventoryItemId": item_id, "locationId": location_id, "quantity": quantity, "changeFromQuantity": null })
                    } else {
                        json!({ "inventoryItemId": item_id, "locationId": location_id, "quantity": quantity })
                    }
                })
                .collect();
            let mut input = json!({
                "name": "available",
                "reason": "correction",
                "referenceDocumentUri": format!("erpsync://batch/{}", batch.batch_id),
                "quantities": quantities,
            });
            if !newer {
                input["ignoreCompareQuantity"] = json!(true);
            }
            // The same batch sends the same chunks: a replay after a crash is recognised by
            // Shopify and not applied twice.
            let key = format!("erpsync-{}-{chunk_index}", batch.batch_id);
            let data = match self
                .graphql("inventory_set", 10.0, query, json!({ "input": input, "key": key }), context)
                .await
            {
                Ok(data) => data,
                Err(error) if !written_any && !error_is_per_item(&error) => return Err(error),
                Err(error) => {
                    for (index, ..) in chunk {
                        let item_context = format!("{context}: {}", batch.items[*index].natural_key);
                        outcomes[*index] = Some(WriteOutcome::Failed(copy_error(&error, &item_context)));
                    }
                    continue;
                }
            };
            written_any = true;
            let payload = data.get("inventorySetQuantities").cloned().unwrap_or(Value::Null);
            let errors = payload.get("userErrors").and_then(Value::as_array).cloned().unwrap_or_default();
            // Errors name their row (`input.quantities.3.locationId`); one without a row fails
            // the whole chunk, which Shopify then rejected as a whole.
            let mut row_errors: BTreeMap<usize, Vec<String>> = BTreeMap::new();
            let mut chunk_errors = Vec::new();
            for (field, message) in user_error_messages(&errors) {
                let row = field
                    .iter()
                    .position(|part| part == "quantities")
                    .and_then(|at| field.get(at + 1))
                    .and_then(|n| n.parse::<usize>().ok());
                let described = if field.is_empty() { message } else { format!("{}: {message}", field.join(".")) };
                match row {
                    Some(row) if row < chunk.len() => row_errors.entry(row).or_default().push(described),
                    _ => chunk_errors.push(described),
                }
            }
            for (row, (index, item_id, location_id, _)) in chunk.iter().enumerate() {
                let item_context = format!("{context}: {}", batch.items[*index].natural_key);
                outcomes[*index] = Some(match (row_errors.get(&row), chunk_errors.is_empty()) {
                    (Some(messages), _) => failed(ErrorKind::InvalidRequest, &item_context, messages.join("; ")),
                    (None, false) => failed(
                        ErrorKind::InvalidRequest,
                        &item_context,
                        format!("the request was refused: {}", chunk_errors.join("; ")),
                    ),
                    (None, true) => WriteOutcome::Updated { target_id: format!("{item_id}|{location_id}") },
                });
            }
        }
        Ok(outcomes.into_iter().map(|outcome| outcome.expect("every stock item got an outcome")).collect())
    }

    /// Price list name or id -> (id, currency), fetched once.
    async fn price_lists(&self, context: &str) -> Result<HashMap<String, (String, String)>, ConnectorError> {
        if let Some(lists) = self.caches().price_lists.clone() {
            return Ok(lists);
        }
        let query = "query PriceLists { priceLists(first: 250) { nodes { id name currency } } }";
        let data = self.graphql("price_lists", 252.0, query, json!({}), context).await?;
        let mut lists = HashMap::new();
        for node in nodes(data.get("priceLists")) {
            let (Some(id), Some(currency)) = (text(node, "id"), text(node, "currency")) else { continue };
            if let Some(name) = text(node, "name") {
                lists.insert(name, (id.clone(), currency.clone()));
            }
            lists.insert(id.clone(), (id, currency));
        }
        self.caches().price_lists = Some(lists.clone());
        Ok(lists)
    }

    async fn write_price_lists(&self, batch: &WriteBatch, context: &str) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let lists = self.price_lists(context).await?;
        let skus: Vec<String> = batch
            .items
            .iter()
            .flat_map(|item| match &item.record {
                Record::PriceList(list) => list.entries.iter().map(|entry| entry.sku.clone()).collect(),
                _ => Vec::new(),
            })
            .collect();
        let variants = self.variants_by_sku(&skus, context).await?;
        let query = "mutation AddPrices($priceListId: ID!, $prices: [PriceListPriceInput!]!) { priceListFixedPricesAdd(priceListId: $priceListId, prices: $prices) { prices { variant { id } } userErrors { field message code } } }";
        let mut outcomes = Vec::with_capacity(batch.items.len());
        for item in &batch.items {
            let item_context = format!("{context}: {}", item.natural_key);
            let Record::PriceList(list) = &item.record else {
                outcomes.push(failed(ErrorKind::InvalidRequest, &item_context, "expected a price list"));
                continue;
            };
            let (list_id, currency) = match self.resolve_price_list(list, &lists) {
                Ok(found) => found,
                Err(message) => {
                    outcomes.push(failed(ErrorKind::InvalidRequest, &item_context, message));
                    continue;
                }
            };
            if list.currency.as_str() != currency {
                outcomes.push(failed(
                    ErrorKind::InvalidRequest,
                    &item_context,
                    format!("currency: the Shopify price list is in {currency}, the record in {}", list.currency),
                ));
                continue;
            }
            let mut problems = Vec::new();
            let mut prices = Vec::new();
            for (index, entry) in list.entries.iter().enumerate() {
                if entry.min_quantity > Decimal::ONE {
                    problems.push(format!(
                        "entries[{index}].min_quantity: quantity tiers ({} from {}) are not written by this connector",
                        entry.sku, entry.min_quantity
                    ));
                    continue;
                }
                match variants.get(&entry.sku) {
                    Some(ids) => prices.push(json!({
                        "variantId": ids.variant_id,
                        "price": { "amount": entry.price.normalize().to_string(), "currencyCode": currency },
                    })),
                    None => {
                        problems.push(format!("entries[{index}].sku: no variant with sku {:?} in the shop", entry.sku))
                    }
                }
            }
            if !problems.is_empty() {
                outcomes.push(failed(ErrorKind::InvalidRequest, &item_context, problems.join("; ")));
                continue;
            }
            let mut item_errors = Vec::new();
            let mut transport = None;
            for chunk in prices.chunks(MAX_INPUT_ITEMS) {
                let variables = json!({ "priceListId": list_id, "prices": chunk });
                match self.graphql("price_list_add", 10.0, query, variables, &item_context).await {
                    Ok(data) => {
                        let errors = map::at(&data, "priceListFixedPricesAdd.userErrors")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        if !errors.is_empty() {
                            item_errors.push(describe_user_errors(&errors));
                        }
                    }
                    Err(error) => {
                        transport = Some(error);
                        break;
                    }
                }
            }
            outcomes.push(match (transport, item_errors.is_empty()) {
                (Some(error), _) => WriteOutcome::Failed(error),
                (None, false) => failed(ErrorKind::InvalidRequest, &item_context, item_errors.join("; ")),
                (None, true) => match item.target_id {
                    Some(_) => WriteOutcome::Updated { target_id: list_id },
                    None => WriteOutcome::Created { target_id: list_id },
                },
            });
        }
        Ok(outcomes)
    }

    /// The Shopify price list of a canonical one: `price_lists` by customer group, then by
    /// code; else a Shopify list named like the code.
    fn resolve_price_list(
        &self,
        list: &PriceList,
        lists: &HashMap<String, (String, String)>,
    ) -> Result<(String, String), String> {
        let configured = list
            .customer_group
            .as_ref()
            .and_then(|group| self.config.price_lists.get(group))
            .or_else(|| self.config.price_lists.get(&list.code));
        let wanted = configured.map(String::as_str).unwrap_or(&list.code);
        lists.get(wanted).cloned().ok_or_else(|| {
            format!(
                "customer_group: no Shopify price list {wanted:?} (set [systems.{}.price_lists] to map the group {:?} to a price list name or id)",
                self.system,
                list.customer_group.as_deref().unwrap_or(&list.code)
            )
        })
    }

    async fn write_shipments(&self, batch: &WriteBatch, context: &str) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let mut outcomes = Vec::with_capacity(batch.items.len());
        for item in &batch.items {
            let item_context = format!("{context}: {}", item.natural_key);
            let Record::Shipment(shipment) = &item.record else {
                outcomes.push(failed(ErrorKind::InvalidRequest, &item_context, "expected a shipment"));
                continue;
            };
            match self.write_shipment(item, shipment, &item_context).await {
                Ok(outcome) => outcomes.push(outcome),
                Err(error) if error_is_per_item(&error) => outcomes.push(WriteOutcome::Failed(error)),
                Err(error) if outcomes.iter().all(|outcome| matches!(outcome, WriteOutcome::Failed(_))) => {
                    return Err(error);
                }
                Err(error) => {
                    fail_rest(&mut outcomes, &batch.items, &error, context);
                    return Ok(outcomes);
                }
            }
        }
        Ok(outcomes)
    }

    async fn write_shipment(
        &self,
        item: &WriteItem,
        shipment: &Shipment,
        context: &str,
    ) -> Result<WriteOutcome, ConnectorError> {
        let name = if shipment.order_number.starts_with('#') || shipment.order_number.parse::<u64>().is_err() {
            shipment.order_number.clone()
        } else {
            format!("#{}", shipment.order_number)
        };
        // Kept under the 1000-point cap: 5 fulfillment orders of up to 30 lines each.
        let query = "query OrderForShipment($query: String!) { orders(first: 1, query: $query) { nodes { id name \
            fulfillments(first: 20) { id trackingInfo { number } } \
            fulfillmentOrders(first: 5) { nodes { id status assignedLocation { location { id name } } \
            lineItems(first: 30) { nodes { id remainingQuantity lineItem { sku } } } } } } } }";
        let data = self
            .graphql("order_for_shipment", 400.0, query, json!({ "query": format!("name:'{name}'") }), context)
            .await?;
        let Some(order) =
            nodes(data.get("orders")).into_iter().find(|order| text(order, "name").as_deref() == Some(name.as_str()))
        else {
            // The order may not have reached the shop yet: waiting can help.
            return Ok(WriteOutcome::Failed(
                ConnectorError::new(ErrorKind::NotFound, context, format!("order_number: no order {name} in the shop"))
                    .with_retryable(true),
            ));
        };
        // Idempotent: a shipment whose tracking number the order already has is done.
        let tracking_numbers: Vec<&str> = shipment.tracking.iter().map(|tracking| tracking.number.as_str()).collect();
        if let Some(existing) = nodes(order.get("fulfillments")).into_iter().find(|fulfillment| {
            nodes(fulfillment.get("trackingInfo")).into_iter().any(|info| {
                info.get("number").and_then(Value::as_str).is_some_and(|number| tracking_numbers.contains(&number))
            })
        }) {
            let target_id = text(existing, "id").unwrap_or_default();
            return Ok(match item.target_id {
                Some(_) => WriteOutcome::Updated { target_id },
                None => WriteOutcome::Created { target_id },
            });
        }
        let location_filter = shipment
            .location
            .as_ref()
            .map(|location| self.config.locations.get(location).cloned().unwrap_or_else(|| location.clone()));
        let open: Vec<&Value> = nodes(order.get("fulfillmentOrders"))
            .into_iter()
            .filter(|fulfillment_order| {
                matches!(fulfillment_order.get("status").and_then(Value::as_str), Some("OPEN" | "IN_PROGRESS"))
            })
            .filter(|fulfillment_order| match &location_filter {
                Some(wanted) => {
                    let location = map::at(fulfillment_order, "assignedLocation.location");
                    location.and_then(|location| text(location, "name")).as_deref() == Some(wanted.as_str())
                        || location.and_then(|location| text(location, "id")).as_deref() == Some(wanted.as_str())
                }
                None => true,
            })
            .collect();
        if open.is_empty() {
            return Ok(failed(
                ErrorKind::Conflict,
                context,
                format!(
                    "order {name} has no open fulfillment order{}",
                    match &location_filter {
                        Some(location) => format!(" at {location}"),
                        None => String::new(),
                    }
                ),
            ));
        }
        // Lines by fulfillment order: SKU quantities taken from open lines in order.
        let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
        if shipment.lines.is_empty() {
            groups = open.iter().filter_map(|fo| text(fo, "id")).map(|id| (id, Vec::new())).collect();
        } else {
            let mut remaining: Vec<(String, String, String, i64)> = Vec::new(); // fo id, line id, sku, qty
            for fulfillment_order in &open {
                let Some(fo_id) = text(fulfillment_order, "id") else { continue };
                for line in nodes(fulfillment_order.get("lineItems")) {
                    let quantity = line.get("remainingQuantity").and_then(Value::as_i64).unwrap_or(0);
                    if let (Some(line_id), Some(sku)) =
                        (text(line, "id"), map::at(line, "lineItem.sku").and_then(Value::as_str))
                        && quantity > 0
                    {
                        remaining.push((fo_id.clone(), line_id, sku.to_string(), quantity));
                    }
                }
            }
            for (index, line) in shipment.lines.iter().enumerate() {
                let Some(mut wanted) = whole(line.quantity) else {
                    return Ok(failed(
                        ErrorKind::InvalidRequest,
                        context,
                        format!("lines[{index}].quantity: whole units only"),
                    ));
                };
                for (fo_id, line_id, sku, available) in remaining.iter_mut() {
                    if *sku != line.sku || *available == 0 || wanted == 0 {
                        continue;
                    }
                    let take = wanted.min(*available);
                    *available -= take;
                    wanted -= take;
                    let entry = json!({ "id": line_id, "quantity": take });
                    match groups.iter_mut().find(|(id, _)| id == fo_id) {
                        Some((_, lines)) => lines.push(entry),
                        None => groups.push((fo_id.clone(), vec![entry])),
                    }
                }
                if wanted > 0 {
                    return Ok(failed(
                        ErrorKind::Conflict,
                        context,
                        format!(
                            "lines[{index}]: {} more of sku {:?} than order {name} has left to fulfil",
                            wanted, line.sku
                        ),
                    ));
                }
            }
        }
        let tracking = match shipment.tracking.as_slice() {
            [] => Value::Null,
            [only] => json!({ "company": only.carrier, "number": only.number, "url": only.url }),
            many => json!({
                "company": many[0].carrier,
                "numbers": many.iter().map(|tracking| tracking.number.clone()).collect::<Vec<_>>(),
                "urls": many.iter().filter_map(|tracking| tracking.url.clone()).collect::<Vec<_>>(),
            }),
        };
        let mutation = "mutation Fulfil($fulfillment: FulfillmentInput!) { fulfillmentCreate(fulfillment: $fulfillment) { fulfillment { id status } userErrors { field message } } }";
        let fulfillment = json!({
            "lineItemsByFulfillmentOrder": groups.iter().map(|(id, lines)| {
                if lines.is_empty() { json!({ "fulfillmentOrderId": id }) } else { json!({ "fulfillmentOrderId": id, "fulfillmentOrderLineItems": lines }) }
            }).collect::<Vec<_>>(),
            "notifyCustomer": shipment.notify_customer,
            "trackingInfo": tracking,
        });
        let data =
            self.graphql("fulfillment_create", 10.0, mutation, json!({ "fulfillment": fulfillment }), context).await?;
        let payload = data.get("fulfillmentCreate").cloned().unwrap_or(Value::Null);
        if let Some(errors) = payload.get("userErrors").and_then(Value::as_array).filter(|errors| !errors.is_empty()) {
            return Ok(failed(ErrorKind::InvalidRequest, context, describe_user_errors(errors)));
        }
        let target_id =
            map::at(&payload, "fulfillment.id").and_then(Value::as_str).map(str::to_string).ok_or_else(|| {
                ConnectorError::new(ErrorKind::InvalidResponse, context, "fulfillmentCreate returned no fulfillment")
            })?;
        Ok(match item.target_id {
            Some(_) => WriteOutcome::Updated { target_id },
            None => WriteOutcome::Created { target_id },
        })
    }
}

/// An order as the status and document writes need it.
struct OrderInShop {
    id: String,
    name: String,
    cancelled: bool,
    closed: bool,
}

/// An order name from an order number: a leading `#` is added to a bare number.
fn order_name(number: &str) -> String {
    if number.starts_with('#') || number.parse::<u64>().is_err() { number.to_string() } else { format!("#{number}") }
}

/// `OrderCancelReason` from a status change's note: the reason's name when the note is one,
/// else `OTHER`.
fn cancel_reason(note: Option<&str>) -> &'static str {
    match note.map(|note| note.trim().to_ascii_uppercase()).as_deref() {
        Some("CUSTOMER") => "CUSTOMER",
        Some("DECLINED") => "DECLINED",
        Some("FRAUD") => "FRAUD",
        Some("INVENTORY") => "INVENTORY",
        Some("STAFF") => "STAFF",
        _ => "OTHER",
    }
}

impl ShopifyConnector {
    /// The order a status change or document is about: by the link's GID when there is one
    /// (`gid://shopify/Order/<id>`, with any `@…` or `#…` suffix), else by name.
    async fn order_state(
        &self,
        target_id: Option<&str>,
        number: &str,
        context: &str,
    ) -> Result<Option<OrderInShop>, ConnectorError> {
        const FIELDS: &str = "id name cancelledAt closed";
        let linked = target_id
            .map(|id| id.split(['@', '#']).next().unwrap_or(id))
            .filter(|id| id.starts_with("gid://shopify/Order/"));
        let node = match linked {
            Some(id) => {
                let query = format!("query OrderState($id: ID!) {{ order(id: $id) {{ {FIELDS} }} }}");
                let data = self.graphql("order_state", 1.0, &query, json!({ "id": id }), context).await?;
                data.get("order").filter(|order| order.is_object()).cloned()
            }
            None => {
                let name = order_name(number);
                let query = format!(
                    "query OrderByName($query: String!) {{ orders(first: 1, query: $query) {{ nodes {{ {FIELDS} }} }} }}"
                );
                let data = self
                    .graphql("order_by_name", 3.0, &query, json!({ "query": format!("name:'{name}'") }), context)
                    .await?;
                nodes(data.get("orders"))
                    .into_iter()
                    .find(|order| text(order, "name").as_deref() == Some(name.as_str()))
                    .cloned()
            }
        };
        Ok(node.and_then(|node| {
            Some(OrderInShop {
                id: text(&node, "id")?,
                name: text(&node, "name").unwrap_or_default(),
                cancelled: node.get("cancelledAt").is_some_and(|at| !at.is_null()),
                closed: node.get("closed").and_then(Value::as_bool).unwrap_or(false),
            })
        }))
    }

    /// Order status changes and documents: one outcome per record, a failure of the system
    /// before anything was written failing the batch.
    async fn write_order_changes(
        &self,
        batch: &WriteBatch,
        context: &str,
    ) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let mut outcomes = Vec::with_capacity(batch.items.len());
        for item in &batch.items {
            let item_context = format!("{context}: {}", item.natural_key);
            let result = match &item.record {
                Record::OrderStatus(change) => self.write_order_status(item, change, &item_context).await,
                Record::Document(document) => self.write_document(item, document, &item_context).await,
                other => Ok(failed(
                    ErrorKind::InvalidRequest,
                    &item_context,
                    format!("expected an order status or a document, got a {}", other.kind()),
                )),
            };
            match result {
                Ok(outcome) => outcomes.push(outcome),
                Err(error) if error_is_per_item(&error) => outcomes.push(WriteOutcome::Failed(error)),
                Err(error) if outcomes.iter().all(|outcome| matches!(outcome, WriteOutcome::Failed(_))) => {
                    return Err(error);
                }
                Err(error) => {
                    fail_rest(&mut outcomes, &batch.items, &error, context);
                    return Ok(outcomes);
                }
            }
        }
        Ok(outcomes)
    }

    /// `cancelled` -> `orderCancel` (reason from the note, refund and restock as configured),
    /// `completed` -> `orderClose`; both only when the order is not in that state yet. The
    /// other states are what Shopify derives from payments and fulfilments: nothing is sent,
    /// except that a closed order cannot be set back to open here.
    async fn write_order_status(
        &self,
        item: &WriteItem,
        change: &OrderStatusChange,
        context: &str,
    ) -> Result<WriteOutcome, ConnectorError> {
        let Some(order) = self.order_state(item.target_id.as_deref(), &change.order_number, context).await? else {
            return Ok(WriteOutcome::Failed(
                ConnectorError::new(
                    ErrorKind::NotFound,
                    context,
                    format!("order_number: no order {} in the shop", order_name(&change.order_number)),
                )
                .with_retryable(true),
            ));
        };
        let done = |order: &OrderInShop| match item.target_id {
            Some(_) => WriteOutcome::Updated { target_id: order.id.clone() },
            None => WriteOutcome::Created { target_id: order.id.clone() },
        };
        match change.state {
            OrderState::Cancelled if !order.cancelled => {
                let query = "mutation Cancel($orderId: ID!, $reason: OrderCancelReason!, $refund: Boolean!, $restock: Boolean!, $staffNote: String) { \
                    orderCancel(orderId: $orderId, reason: $reason, refundMethod: { originalPaymentMethodsRefund: $refund }, restock: $restock, notifyCustomer: false, staffNote: $staffNote) { \
                    job { id done } orderCancelUserErrors { field message code } } }";
                let variables = json!({
                    "orderId": order.id,
                    "reason": cancel_reason(change.note.as_deref()),
                    "refund": self.config.cancel_refund,
                    "restock": self.config.cancel_restock,
                    "staffNote": change.note,
                });
                let data = self.graphql("order_cancel", 10.0, query, variables, context).await?;
                let errors = map::at(&data, "orderCancel.orderCancelUserErrors")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if !errors.is_empty() {
                    let kind = match errors.iter().find_map(|error| text(error, "code")).as_deref() {
                        Some("NOT_FOUND") => ErrorKind::NotFound,
                        Some("NO_REFUND_PERMISSION") => ErrorKind::Permission,
                        _ => ErrorKind::InvalidRequest,
                    };
                    return Ok(failed(kind, context, describe_user_errors(&errors)));
                }
                Ok(done(&order))
            }
            OrderState::Completed if !order.closed => {
                let query = "mutation Close($id: ID!) { orderClose(input: { id: $id }) { order { id closed } userErrors { field message } } }";
                let data = self.graphql("order_close", 10.0, query, json!({ "id": order.id }), context).await?;
                let errors =
                    map::at(&data, "orderClose.userErrors").and_then(Value::as_array).cloned().unwrap_or_default();
                if !errors.is_empty() {
                    return Ok(failed(ErrorKind::InvalidRequest, context, describe_user_errors(&errors)));
                }
                Ok(done(&order))
            }
            OrderState::Open | OrderState::Processing | OrderState::OnHold if order.closed || order.cancelled => {
                Ok(failed(
                    ErrorKind::Conflict,
                    context,
                    format!(
                        "state: order {} is {} in the shop; erpsync does not reopen orders",
                        order.name,
                        if order.cancelled { "cancelled" } else { "closed" }
                    ),
                ))
            }
            _ => Ok(done(&order)),
        }
    }

    /// A document as metafields of its order in `document_namespace`: `<kind>_number`,
    /// `<kind>_date`, `<kind>_total` (money) and `<kind>_url` (when the PDF is a URL), one
    /// atomic `metafieldsSet`. A later document of the same kind replaces the values.
    async fn write_document(
        &self,
        item: &WriteItem,
        document: &Document,
        context: &str,
    ) -> Result<WriteOutcome, ConnectorError> {
        let Some(order_number) = document.order_number.as_deref().filter(|number| !number.trim().is_empty()) else {
            return Ok(failed(
                ErrorKind::InvalidRequest,
                context,
                "order_number: shopify keeps documents on their order, and this one names no order",
            ));
        };
        let Some(order) = self.order_state(item.target_id.as_deref(), order_number, context).await? else {
            return Ok(WriteOutcome::Failed(
                ConnectorError::new(
                    ErrorKind::NotFound,
                    context,
                    format!("order_number: no order {} in the shop", order_name(order_number)),
                )
                .with_retryable(true),
            ));
        };
        let prefix = document.kind.as_str();
        let namespace = &self.config.document_namespace;
        let metafield = |key: &str, kind: &str, value: String| json!({ "ownerId": order.id, "namespace": namespace, "key": format!("{prefix}_{key}"), "type": kind, "value": value });
        let mut metafields = vec![metafield("number", "single_line_text_field", document.number.clone())];
        if let Some(issued_at) = document.issued_at {
            metafields.push(metafield("date", "date", issued_at.date_naive().to_string()));
        }
        let total = json!({ "amount": document.totals.total.round_dp(2).to_string(), "currency_code": document.currency.as_str() });
        metafields.push(metafield("total", "money", total.to_string()));
        if let Some(Pdf::Url { url }) = &document.pdf {
            metafields.push(metafield("url", "url", url.clone()));
        }
        let query = "mutation Documents($metafields: [MetafieldsSetInput!]!) { metafieldsSet(metafields: $metafields) { metafields { id key } userErrors { field message code elementIndex } } }";
        let data = self.graphql("metafields_set", 10.0, query, json!({ "metafields": metafields }), context).await?;
        let errors = map::at(&data, "metafieldsSet.userErrors").and_then(Value::as_array).cloned().unwrap_or_default();
        if !errors.is_empty() {
            // Name the metafield of each error (`invoice_url: …`) rather than its index.
            let messages: Vec<String> = errors
                .iter()
                .map(|error| {
                    let message = describe_user_errors(std::slice::from_ref(error));
                    let key = error
                        .get("elementIndex")
                        .and_then(Value::as_u64)
                        .and_then(|index| metafields.get(index as usize))
                        .and_then(|metafield| text(metafield, "key"));
                    match key {
                        Some(key) => format!("{key}: {message}"),
                        None => message,
                    }
                })
                .collect();
            return Ok(failed(ErrorKind::InvalidRequest, context, messages.join("; ")));
        }
        let target_id = format!("{}#{prefix}", order.id);
        Ok(match item.target_id {
            Some(_) => WriteOutcome::Updated { target_id },
            None => WriteOutcome::Created { target_id },
        })
    }
}

/// A whole number of units, when the decimal is one.
fn whole(quantity: Decimal) -> Option<i64> {
    (quantity.fract().is_zero()).then(|| quantity.to_i64()).flatten()
}

/// Whether an error concerns the request of one record (its data) rather than the system.
fn error_is_per_item(error: &ConnectorError) -> bool {
    matches!(error.kind, ErrorKind::InvalidRequest | ErrorKind::NotFound | ErrorKind::Conflict)
}

/// After a failure of the system mid-batch: the item that met it and all after it fail with
/// the same reason (retryable when it is), so the engine retries exactly those.
fn fail_rest(outcomes: &mut Vec<WriteOutcome>, items: &[WriteItem], error: &ConnectorError, context: &str) {
    for item in &items[outcomes.len()..] {
        outcomes.push(WriteOutcome::Failed(copy_error(error, &format!("{context}: {}", item.natural_key))));
    }
}
