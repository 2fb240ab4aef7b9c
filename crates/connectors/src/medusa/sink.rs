//! Writing to Medusa: products, prices, stock levels, shipments and order status.
//!
//! - Products are created in one `POST /admin/products/batch {"create": [...]}` per batch
//!   (published in the configured sales channel, with the configured shipping profile; the
//!   code goes to `external_id`, the handle is derived from it). Medusa runs the batch as one
//!   workflow, all or nothing: when it refuses the batch for the data (a taken handle or SKU),
//!   the products are created one by one so that each gets its own outcome. An update writes
//!   the product's fields (`POST /admin/products/{id}`), adds missing option values
//!   (`/options/batch`), then creates, updates and deletes variants by SKU in one
//!   `/variants/batch`, keeping the prices of other currencies and tiers. A first sync finds
//!   products by `external_id`, then by handle, then by the SKU of a variant.
//! - Price lists: the base list (no customer group) in the shop's currency sets each SKU's base
//!   price, batched per product; tier prices (`min_quantity > 1`) are written as Medusa
//!   quantity prices. A customer-group list becomes a Medusa price list of type `override`
//!   with the rule `customer.groups.id` (the group found by name, or created), its prices per
//!   variant with `min_quantity` for tiers, and the list's code in its `metadata.erpsync_code`,
//!   by which a later write finds it and updates only the prices that changed.
//! - Stock levels set `stocked_quantity` of the SKU's inventory item at the mapped stock
//!   location, all in one `/admin/inventory-items/location-levels/batch` (create where the
//!   item has no level there yet). The canonical `available` is what may be sold: Medusa's
//!   reservations are added back, so that `available_quantity` comes out as sent; `on_hand`
//!   wins when it is given.
//! - Shipments become a fulfillment (`POST /admin/orders/{id}/fulfillments`, with the shipment
//!   number in its metadata so that a replay finds it instead of shipping twice), then a
//!   shipment with the tracking labels, then optionally "delivered".
//! - Order status: `cancelled` cancels the order, `completed` completes it; Medusa has no other
//!   order states to set, so other states are accepted without a call.
//! - Documents (invoices, credit notes, delivery notes) go to their order's `metadata` under
//!   `erpsync_<kind>_*` keys (number, date, total, currency, and the file's URL), merged with
//!   the metadata the order has: Medusa has no document store of its own for orders, and its
//!   admin API takes metadata on `POST /admin/orders/{id}`. A document that carries its bytes
//!   is uploaded through `POST /admin/uploads` first (multipart, field `files`), and the URL
//!   Medusa serves it at is kept with the file name and the bytes' SHA-256; the same document
//!   written again finds its digest in the metadata and is neither uploaded nor written again.

use crate::medusa::MedusaConnector;
use crate::medusa::client::UploadFile;
use crate::medusa::map::{
    base_price, handle_for, number, options_for, order_number, product_to_medusa, product_update_to_medusa,
    variant_to_medusa,
};
use crate::medusa::source::PRODUCT_FIELDS;
use crate::{Capabilities, ConnectorError, ErrorKind, Sink, WriteBatch, WriteItem, WriteOutcome};
use async_trait::async_trait;
use base64::Engine as _;
use erpsync_model::{Document, EntityKind, OrderState, Pdf, Product, Record, Shipment};
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

/// Products per batch request: Medusa's own admin imports in chunks of this size.
pub const PRODUCT_BATCH: usize = 50;
const STOCK_BATCH: usize = 200;

/// One SKU's prices from a price list: the base price and the (minimum quantity, price) tiers.
type SkuPrices = (Option<Decimal>, Vec<(Decimal, Decimal)>);

fn failed(kind: ErrorKind, context: &str, message: impl Into<String>) -> WriteOutcome {
    WriteOutcome::Failed(ConnectorError::new(kind, context, message))
}

fn id_of(value: &Value) -> Option<String> {
    value.get("id").and_then(Value::as_str).map(str::to_string)
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Whether a failure of a whole batch was caused by the data of some record in it.
fn is_data_error(error: &ConnectorError) -> bool {
    matches!(error.kind, ErrorKind::InvalidRequest | ErrorKind::Conflict | ErrorKind::NotFound) && !error.retryable
}

impl MedusaConnector {
    fn write_context(&self, entity: EntityKind) -> String {
        format!("writing {entity} to medusa {:?}", self.system)
    }

    // ---- products -------------------------------------------------------------------------

    async fn write_products(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let context = self.write_context(EntityKind::Product);
        let shop = self.shop().await?;
        let currency = self.settings.currency;
        let mut outcomes: Vec<Option<WriteOutcome>> = batch.items.iter().map(|_| None).collect();
        let mut creates: Vec<(usize, Value)> = Vec::new();
        for (index, item) in batch.items.iter().enumerate() {
            let item_context = format!("{context}: product {}", item.natural_key);
            let Record::Product(product) = &item.record else {
                outcomes[index] = Some(failed(ErrorKind::InvalidRequest, &item_context, "not a product record"));
                continue;
            };
            match &item.target_id {
                Some(id) => {
                    outcomes[index] = Some(match self.update_product(id, product, &item_context).await {
                        Ok(()) => WriteOutcome::Updated { target_id: id.clone() },
                        Err(error) if is_data_error(&error) => WriteOutcome::Failed(error),
                        Err(error) => return Err(error),
                    });
                }
                None => match product_to_medusa(product, currency, &shop.sales_channel, &shop.shipping_profile) {
                    Ok(body) => creates.push((index, body)),
                    Err(message) => {
                        outcomes[index] = Some(failed(ErrorKind::InvalidRequest, &item_context, message));
                    }
                },
            }
        }
        for chunk in creates.chunks(PRODUCT_BATCH) {
            let bodies: Vec<Value> = chunk.iter().map(|(_, body)| body.clone()).collect();
            let result = self
                .request(Method::POST, "/admin/products/batch", &[], Some(&json!({"create": bodies})), &context)
                .await;
            match result {
                Ok(response) => {
                    let created: Vec<Value> =
                        response.get("created").and_then(Value::as_array).cloned().unwrap_or_default();
                    for (index, body) in chunk {
                        let handle = str_of(body, "handle");
                        let found = created.iter().find(|product| str_of(product, "handle") == handle);
                        let item_context = format!("{context}: product {}", batch.items[*index].natural_key);
                        if let (Some(found), Record::Product(product)) = (found, &batch.items[*index].record)
                            && let Err(error) = self.sync_option_ranks(found, product, &item_context).await
                        {
                            outcomes[*index] = Some(WriteOutcome::Failed(error));
                            continue;
                        }
                        outcomes[*index] = Some(match found.and_then(id_of) {
                            Some(target_id) => WriteOutcome::Created { target_id },
                            None => failed(
                                ErrorKind::InvalidResponse,
                                &item_context,
                                format!("the batch response has no created product with handle {handle:?}"),
                            ),
                        });
                    }
                }
                // One bad product fails Medusa's whole batch: create them one by one, so that
                // only the bad ones fail, each with its own reason.
                Err(error) if is_data_error(&error) && chunk.len() > 1 => {
                    for (index, body) in chunk {
                        let item_context = format!("{context}: product {}", batch.items[*index].natural_key);
                        outcomes[*index] = Some(
                            match self.request(Method::POST, "/admin/products", &[], Some(body), &item_context).await {
                                Ok(response) => match response.get("product").and_then(id_of) {
                                    Some(target_id) => {
                                        let ranked = match &batch.items[*index].record {
                                            Record::Product(product) => {
                                                self.sync_option_ranks(&response["product"], product, &item_context)
                                                    .await
                                            }
                                            _ => Ok(()),
                                        };
                                        match ranked {
                                            Ok(()) => WriteOutcome::Created { target_id },
                                            Err(error) => WriteOutcome::Failed(error),
                                        }
                                    }
                                    None => failed(
                                        ErrorKind::InvalidResponse,
                                        &item_context,
                                        "the response has no product id",
                                    ),
                                },
                                Err(error) if is_data_error(&error) => WriteOutcome::Failed(error),
                                Err(error) => return Err(error),
                            },
                        );
                    }
                }
                Err(error) if is_data_error(&error) => {
                    outcomes[chunk[0].0] = Some(WriteOutcome::Failed(error));
                }
                Err(error) => return Err(error),
            }
        }
        Ok(outcomes.into_iter().map(|o| o.expect("every item got an outcome")).collect())
    }

    async fn get_product(&self, id: &str, context: &str) -> Result<Value, ConnectorError> {
        let response = self
            .request(Method::GET, &format!("/admin/products/{id}"), &[("fields", PRODUCT_FIELDS.into())], None, context)
            .await?;
        response
            .get("product")
            .cloned()
            .ok_or_else(|| ConnectorError::new(ErrorKind::InvalidResponse, context, "the response has no \"product\""))
    }

    /// Puts option values in the canonical order: Medusa ignores `ranks` when a product is
    /// created or its options are extended, and returns values in no particular order
    /// otherwise. One call per option whose ranks differ.
    async fn sync_option_ranks(&self, medusa: &Value, product: &Product, context: &str) -> Result<(), ConnectorError> {
        for option in &product.options {
            let Some(existing) = medusa
                .get("options")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|existing| str_of(existing, "title") == option.name)
            else {
                continue;
            };
            let wanted: Map<String, Value> =
                option.values.iter().enumerate().map(|(rank, value)| (value.clone(), json!(rank))).collect();
            let in_order = existing
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .all(|value| wanted.get(str_of(value, "value")).is_none_or(|rank| value.get("rank") == Some(rank)));
            if !in_order {
                self.request(
                    Method::POST,
                    &format!("/admin/product-options/{}", str_of(existing, "id")),
                    &[("fields", "id".into())],
                    Some(&json!({"ranks": wanted})),
                    context,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Writes the product's fields, its option values and its variants (by SKU).
    async fn update_product(&self, id: &str, product: &Product, context: &str) -> Result<(), ConnectorError> {
        let invalid = |message: String| ConnectorError::new(ErrorKind::InvalidRequest, context, message);
        if product.variants.is_empty() {
            return Err(invalid("a product needs at least one variant".into()));
        }
        let current = self.get_product(id, context).await?;
        self.request(
            Method::POST,
            &format!("/admin/products/{id}"),
            &[("fields", "id".into())],
            Some(&product_update_to_medusa(product)),
            context,
        )
        .await?;

        // Option values the variants need and the product lacks.
        let (options, values) = options_for(product);
        let mut option_add = Vec::new();
        let mut option_update = Vec::new();
        for option in &options {
            let title = str_of(option, "title");
            let wanted: Vec<&str> = option
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let existing = current
                .get("options")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|existing| str_of(existing, "title") == title);
            match existing {
                None => option_add.push(option.clone()),
                Some(existing) => {
                    let have: Vec<&str> = existing
                        .get("values")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(|value| str_of(value, "value"))
                        .collect();
                    let missing: Vec<Value> = wanted
                        .iter()
                        .filter(|value| !have.contains(value))
                        .map(|value| json!({"value": value}))
                        .collect();
                    if !missing.is_empty() {
                        option_update.push(json!({"product_option_id": str_of(existing, "id"), "add": missing}));
                    }
                }
            }
        }
        let options_changed = !option_add.is_empty() || !option_update.is_empty();
        if options_changed {
            let mut body = Map::new();
            if !option_add.is_empty() {
                body.insert("add".into(), Value::Array(option_add));
            }
            if !option_update.is_empty() {
                body.insert("update".into(), Value::Array(option_update));
            }
            self.request(
                Method::POST,
                &format!("/admin/products/{id}/options/batch"),
                &[("fields", "id".into())],
                Some(&Value::Object(body)),
                context,
            )
            .await?;
        }
        let ranked = if options_changed { self.get_product(id, context).await? } else { current.clone() };
        self.sync_option_ranks(&ranked, product, context).await?;

        // Variants by SKU.
        let existing: HashMap<String, &Value> = current
            .get("variants")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|variant| (str_of(variant, "sku").to_string(), variant))
            .collect();
        let mut create = Vec::new();
        let mut update = Vec::new();
        for (variant, option_values) in product.variants.iter().zip(&values) {
            let mut body = variant_to_medusa(variant, option_values, self.settings.currency).map_err(invalid)?;
            match existing.get(&variant.sku) {
                None => {
                    if body.get("prices").is_none() {
                        body["prices"] = json!([]);
                    }
                    create.push(body);
                }
                Some(current_variant) => {
                    body["id"] = json!(str_of(current_variant, "id"));
                    body["prices"] = self.merged_prices(current_variant, variant.price.as_ref().map(|p| p.amount), &[]);
                    update.push(body);
                }
            }
        }
        let delete: Vec<String> = existing
            .iter()
            .filter(|(sku, _)| !product.variants.iter().any(|variant| &variant.sku == *sku))
            .filter_map(|(_, variant)| id_of(variant))
            .collect();
        let mut body = Map::new();
        for (key, list) in [("create", create), ("update", update)] {
            if !list.is_empty() {
                body.insert(key.into(), Value::Array(list));
            }
        }
        if !delete.is_empty() {
            body.insert("delete".into(), json!(delete));
        }
        if !body.is_empty() {
            self.request(
                Method::POST,
                &format!("/admin/products/{id}/variants/batch"),
                &[],
                Some(&Value::Object(body)),
                context,
            )
            .await?;
        }
        Ok(())
    }

    /// A variant's full price set with our currency's base price (and tiers) replaced: Medusa
    /// replaces the whole set on update, so the other prices are sent back with their ids.
    fn merged_prices(&self, variant: &Value, base: Option<Decimal>, tiers: &[(Decimal, Decimal)]) -> Value {
        let ours = self.currency_code();
        let mut prices = Vec::new();
        let mut base_id = None;
        for price in variant.get("prices").and_then(Value::as_array).into_iter().flatten() {
            let same_currency = str_of(price, "currency_code").eq_ignore_ascii_case(&ours);
            let tier = price.get("min_quantity").and_then(Value::as_f64).is_some_and(|q| q > 1.0);
            let ruled = price.get("rules").and_then(Value::as_object).is_some_and(|rules| !rules.is_empty());
            if same_currency && !ruled && !tier && base_id.is_none() {
                base_id = id_of(price);
                continue;
            }
            if same_currency && !ruled && tier && !tiers.is_empty() {
                // Replaced by the tiers given.
                continue;
            }
            let mut kept = json!({"id": str_of(price, "id")});
            for key in ["currency_code", "amount", "min_quantity", "max_quantity"] {
                if let Some(value) = price.get(key).filter(|v| !v.is_null()) {
                    kept[key] = value.clone();
                }
            }
            prices.push(kept);
        }
        match base {
            Some(amount) => {
                let mut price = json!({"currency_code": ours, "amount": number(amount)});
                if let Some(id) = base_id {
                    price["id"] = json!(id);
                }
                prices.push(price);
            }
            None => {
                if let Some(id) = base_id
                    && let Some(price) = variant
                        .get("prices")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .find(|price| str_of(price, "id") == id)
                {
                    prices.push(json!({"id": id, "currency_code": ours, "amount": price.get("amount").cloned().unwrap_or(Value::Null)}));
                }
            }
        }
        for (min_quantity, amount) in tiers {
            prices
                .push(json!({"currency_code": ours, "amount": number(*amount), "min_quantity": number(*min_quantity)}));
        }
        Value::Array(prices)
    }

    // ---- prices ---------------------------------------------------------------------------

    async fn write_prices(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let context = self.write_context(EntityKind::PriceList);
        let mut outcomes = Vec::with_capacity(batch.items.len());
        for item in &batch.items {
            let item_context = format!("{context}: price list {}", item.natural_key);
            let Record::PriceList(list) = &item.record else {
                outcomes.push(failed(ErrorKind::InvalidRequest, &item_context, "not a price list record"));
                continue;
            };
            if list.currency != self.settings.currency {
                outcomes.push(failed(
                    ErrorKind::InvalidRequest,
                    &item_context,
                    format!(
                        "the list is in {} but the shop's currency is {}",
                        list.currency.as_str(),
                        self.settings.currency.as_str()
                    ),
                ));
                continue;
            }
            if list.prices_include_tax {
                outcomes.push(failed(
                    ErrorKind::InvalidRequest,
                    &item_context,
                    "prices_include_tax: Medusa's prices here are without tax; send the list's prices without tax",
                ));
                continue;
            }
            if let Some(group) = list.customer_group.as_deref().map(str::trim).filter(|group| !group.is_empty()) {
                outcomes.push(
                    match self.write_group_price_list(list, group, item.target_id.as_deref(), &item_context).await {
                        Ok((outcome, missing)) if missing.is_empty() => outcome,
                        Ok((_, missing)) => failed(
                            ErrorKind::NotFound,
                            &item_context,
                            format!("no variant has the SKU {}: the others were written", missing.join(", ")),
                        ),
                        Err(error) if is_data_error(&error) => WriteOutcome::Failed(error),
                        Err(error) => return Err(error),
                    },
                );
                continue;
            }
            outcomes.push(match self.write_price_list(list, &item_context).await {
                Ok(missing) if missing.is_empty() => WriteOutcome::Updated { target_id: list.code.clone() },
                Ok(missing) => failed(
                    ErrorKind::NotFound,
                    &item_context,
                    format!("no variant has the SKU {}: the others were written", missing.join(", ")),
                ),
                Err(error) if is_data_error(&error) => WriteOutcome::Failed(error),
                Err(error) => return Err(error),
            });
        }
        Ok(outcomes)
    }

    /// A customer-group list as a Medusa price list of type `override` limited to the group
    /// (rule `customer.groups.id`, the group found by name or created), with the list's code in
    /// its `metadata.erpsync_code`. An existing list (by `target_id`, else by code) gets its
    /// fields and only the prices that differ; prices of other currencies are kept. Returns the
    /// outcome and the SKUs no variant has (the other prices are written).
    async fn write_group_price_list(
        &self,
        list: &erpsync_model::PriceList,
        group: &str,
        target_id: Option<&str>,
        context: &str,
    ) -> Result<(WriteOutcome, Vec<String>), ConnectorError> {
        let group_id = self.customer_group_id(group, context).await?;
        let skus: Vec<String> = list.entries.iter().map(|entry| entry.sku.clone()).collect();
        let variants = self.variants_by_sku(&skus, context).await?;
        let ours = self.currency_code();
        let mut missing = Vec::new();
        // (variant id, minimum quantity or none) -> amount.
        let mut wanted: BTreeMap<(String, Option<Decimal>), Decimal> = BTreeMap::new();
        for entry in &list.entries {
            let Some(variant) = variants.get(&entry.sku) else {
                if !missing.contains(&entry.sku) {
                    missing.push(entry.sku.clone());
                }
                continue;
            };
            let min_quantity = (entry.min_quantity > Decimal::ONE).then(|| entry.min_quantity.normalize());
            wanted.insert((str_of(variant, "id").to_string(), min_quantity), entry.price);
        }
        let price_body = |(variant_id, min_quantity): &(String, Option<Decimal>), amount: &Decimal| {
            let mut price = json!({"currency_code": ours, "amount": number(*amount), "variant_id": variant_id});
            if let Some(min_quantity) = min_quantity {
                price["min_quantity"] = number(*min_quantity);
            }
            price
        };
        let mut body = json!({
            "title": if list.name.trim().is_empty() { list.code.clone() } else { list.name.clone() },
            "description": format!("erpsync price list {} for the customer group {group}", list.code),
            "type": "override",
            "status": "active",
            "rules": {"customer.groups.id": [group_id]},
            "starts_at": list.valid_from.map(crate::medusa::map::format_time),
            "ends_at": list.valid_to.map(crate::medusa::map::format_time),
        });
        let existing = self.find_price_list(&list.code, target_id, context).await?;
        let Some(existing) = existing else {
            body["metadata"] = json!({"erpsync_code": list.code});
            body["prices"] = wanted.iter().map(|(key, amount)| price_body(key, amount)).collect();
            let response = self
                .request(Method::POST, "/admin/price-lists", &[("fields", "id".into())], Some(&body), context)
                .await?;
            let id = response.get("price_list").and_then(id_of).ok_or_else(|| {
                ConnectorError::new(ErrorKind::InvalidResponse, context, "the response has no price_list.id")
            })?;
            return Ok((WriteOutcome::Created { target_id: id }, missing));
        };
        let id = str_of(&existing, "id").to_string();
        let mut metadata = existing.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
        metadata.insert("erpsync_code".into(), json!(list.code));
        body["metadata"] = Value::Object(metadata);
        self.request(
            Method::POST,
            &format!("/admin/price-lists/{id}"),
            &[("fields", "id".into())],
            Some(&body),
            context,
        )
        .await?;
        let mut create = Vec::new();
        let mut update = Vec::new();
        let mut delete = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for price in existing.get("prices").and_then(Value::as_array).into_iter().flatten() {
            if !str_of(price, "currency_code").eq_ignore_ascii_case(&ours) {
                continue;
            }
            let min_quantity = crate::medusa::map::decimal(price, "min_quantity")
                .ok()
                .flatten()
                .filter(|quantity| *quantity > Decimal::ONE)
                .map(|quantity| quantity.normalize());
            let key = (str_of(price, "variant_id").to_string(), min_quantity);
            match wanted.get(&key) {
                // A second price for the same variant and quantity is one too many.
                Some(amount) if seen.insert(key.clone()) => {
                    let current = crate::medusa::map::decimal(price, "amount").ok().flatten();
                    if current != Some(amount.normalize()) {
                        let mut body = price_body(&key, amount);
                        body["id"] = json!(str_of(price, "id"));
                        update.push(body);
                    }
                }
                _ => delete.push(json!(str_of(price, "id"))),
            }
        }
        for (key, amount) in &wanted {
            if !seen.contains(key) {
                create.push(price_body(key, amount));
            }
        }
        if !(create.is_empty() && update.is_empty() && delete.is_empty()) {
            self.request(
                Method::POST,
                &format!("/admin/price-lists/{id}/prices/batch"),
                &[],
                Some(&json!({"create": create, "update": update, "delete": delete})),
                context,
            )
            .await?;
        }
        Ok((WriteOutcome::Updated { target_id: id }, missing))
    }

    /// The price list erpsync wrote for `code`: by its id when linked, else by the code in its
    /// metadata (Medusa cannot filter by metadata: the lists are read, a shop has few).
    async fn find_price_list(
        &self,
        code: &str,
        target_id: Option<&str>,
        context: &str,
    ) -> Result<Option<Value>, ConnectorError> {
        // `variant_id` of a price is made from `price_set.variant.id`, which must be asked for.
        const FIELDS: &str = "id,title,metadata,*prices,prices.price_set.variant.id";
        if let Some(id) = target_id.filter(|id| id.starts_with("plist_")) {
            match self
                .request(Method::GET, &format!("/admin/price-lists/{id}"), &[("fields", FIELDS.into())], None, context)
                .await
            {
                Ok(response) => return Ok(response.get("price_list").cloned()),
                // Deleted in the shop: found by code, or made again.
                Err(error) if matches!(error.kind, ErrorKind::NotFound) => {}
                Err(error) => return Err(error),
            }
        }
        let Some(id) = self.price_list_id_by_code(code, context).await? else {
            return Ok(None);
        };
        let response = self
            .request(Method::GET, &format!("/admin/price-lists/{id}"), &[("fields", FIELDS.into())], None, context)
            .await?;
        Ok(response.get("price_list").cloned())
    }

    async fn price_list_id_by_code(&self, code: &str, context: &str) -> Result<Option<String>, ConnectorError> {
        let lists =
            self.list_all("/admin/price-lists", "price_lists", &[("fields", "id,metadata".into())], context).await?;
        Ok(lists
            .iter()
            .find(|list| list.pointer("/metadata/erpsync_code").and_then(Value::as_str) == Some(code))
            .and_then(id_of))
    }

    /// The id of the customer group named `name`, created when the shop has none.
    async fn customer_group_id(&self, name: &str, context: &str) -> Result<String, ConnectorError> {
        let query = [("name", name.to_string()), ("fields", "id,name".to_string())];
        let (groups, _) = self.list("/admin/customer-groups", "customer_groups", &query, context).await?;
        if let Some(id) = groups.iter().find(|group| str_of(group, "name") == name).and_then(id_of) {
            return Ok(id);
        }
        let response = self
            .request(
                Method::POST,
                "/admin/customer-groups",
                &[("fields", "id".into())],
                Some(&json!({"name": name})),
                context,
            )
            .await?;
        response.get("customer_group").and_then(id_of).ok_or_else(|| {
            ConnectorError::new(ErrorKind::InvalidResponse, context, "the response has no customer_group.id")
        })
    }

    /// Sets the prices of one list; returns the SKUs no variant has.
    async fn write_price_list(
        &self,
        list: &erpsync_model::PriceList,
        context: &str,
    ) -> Result<Vec<String>, ConnectorError> {
        let mut by_sku: BTreeMap<&str, SkuPrices> = BTreeMap::new();
        for entry in &list.entries {
            let slot = by_sku.entry(entry.sku.as_str()).or_default();
            if entry.min_quantity > Decimal::ONE {
                slot.1.push((entry.min_quantity, entry.price));
            } else {
                slot.0 = Some(entry.price);
            }
        }
        let skus: Vec<String> = by_sku.keys().map(|sku| sku.to_string()).collect();
        let variants = self.variants_by_sku(&skus, context).await?;
        let mut per_product: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let mut missing = Vec::new();
        for (sku, (base, tiers)) in &by_sku {
            let Some(variant) = variants.get(*sku) else {
                missing.push(sku.to_string());
                continue;
            };
            let base = base.or_else(|| base_price(variant, self.settings.currency).ok().flatten());
            per_product
                .entry(str_of(variant, "product_id").to_string())
                .or_default()
                .push(json!({"id": str_of(variant, "id"), "prices": self.merged_prices(variant, base, tiers)}));
        }
        for (product_id, updates) in per_product {
            self.request(
                Method::POST,
                &format!("/admin/products/{product_id}/variants/batch"),
                &[],
                Some(&json!({"update": updates})),
                context,
            )
            .await?;
        }
        Ok(missing)
    }

    /// Variants (with prices and product id) by SKU.
    async fn variants_by_sku(&self, skus: &[String], context: &str) -> Result<HashMap<String, Value>, ConnectorError> {
        let mut found = HashMap::new();
        for chunk in skus.chunks(100) {
            let mut query: Vec<(&str, String)> = chunk.iter().map(|sku| ("sku[]", sku.clone())).collect();
            query.push(("fields", "id,sku,product_id,*prices".into()));
            query.push(("limit", (chunk.len() * 2).to_string()));
            let (variants, _) = self.list("/admin/product-variants", "variants", &query, context).await?;
            for variant in variants {
                found.insert(str_of(&variant, "sku").to_string(), variant);
            }
        }
        Ok(found)
    }

    // ---- stock ----------------------------------------------------------------------------

    async fn write_stock(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let context = self.write_context(EntityKind::StockLevel);
        let shop = self.shop().await?;
        let mut outcomes: Vec<Option<WriteOutcome>> = batch.items.iter().map(|_| None).collect();
        let mut wanted: Vec<(usize, String, String, Decimal, bool)> = Vec::new();
        for (index, item) in batch.items.iter().enumerate() {
            let item_context = format!("{context}: {}", item.natural_key);
            let Record::StockLevel(level) = &item.record else {
                outcomes[index] = Some(failed(ErrorKind::InvalidRequest, &item_context, "not a stock level record"));
                continue;
            };
            let Some(location_id) = shop.locations.get(level.location.trim()) else {
                outcomes[index] = Some(failed(
                    ErrorKind::InvalidRequest,
                    &item_context,
                    format!(
                        "location {:?} is not mapped to a Medusa stock location (stock_locations has {})",
                        level.location,
                        shop.locations.keys().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", ")
                    ),
                ));
                continue;
            };
            let (quantity, absolute) = match level.on_hand {
                Some(on_hand) => (on_hand, true),
                None => (level.available, false),
            };
            if quantity.fract() != Decimal::ZERO || quantity < Decimal::ZERO {
                outcomes[index] = Some(failed(
                    ErrorKind::InvalidRequest,
                    &item_context,
                    format!("Medusa stocks whole, non-negative quantities; got {quantity}"),
                ));
                continue;
            }
            wanted.push((index, level.sku.clone(), location_id.clone(), quantity, absolute));
        }
        let skus: Vec<String> = wanted.iter().map(|(_, sku, ..)| sku.clone()).collect();
        let items = self.inventory_items_by_sku(&skus, &context).await?;
        let mut creates = Vec::new();
        let mut updates = Vec::new();
        let mut sent: Vec<(usize, String)> = Vec::new();
        for (index, sku, location_id, quantity, absolute) in wanted {
            let item_context = format!("{context}: {}", batch.items[index].natural_key);
            let Some(item) = items.get(&sku) else {
                outcomes[index] = Some(failed(
                    ErrorKind::NotFound,
                    &item_context,
                    format!("no inventory item has the SKU {sku:?} (is the product synced, with track_inventory?)"),
                ));
                continue;
            };
            let item_id = str_of(item, "id").to_string();
            let level = item
                .get("location_levels")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|level| str_of(level, "location_id") == location_id);
            let reserved = level
                .and_then(|level| crate::medusa::map::decimal(level, "reserved_quantity").ok().flatten())
                .unwrap_or_default();
            let stocked = if absolute { quantity } else { quantity + reserved };
            let body =
                json!({"inventory_item_id": item_id, "location_id": location_id, "stocked_quantity": number(stocked)});
            if level.is_some() {
                updates.push(body)
            } else {
                creates.push(body)
            }
            sent.push((index, format!("{item_id}@{location_id}")));
        }
        for (creates, updates) in chunk_pairs(creates, updates, STOCK_BATCH) {
            let mut body = Map::new();
            if !creates.is_empty() {
                body.insert("create".into(), Value::Array(creates));
            }
            if !updates.is_empty() {
                body.insert("update".into(), Value::Array(updates));
            }
            self.request(
                Method::POST,
                "/admin/inventory-items/location-levels/batch",
                &[],
                Some(&Value::Object(body)),
                &context,
            )
            .await?;
        }
        for (index, target_id) in sent {
            outcomes[index] = Some(WriteOutcome::Updated { target_id });
        }
        Ok(outcomes.into_iter().map(|o| o.expect("every item got an outcome")).collect())
    }

    async fn inventory_items_by_sku(
        &self,
        skus: &[String],
        context: &str,
    ) -> Result<HashMap<String, Value>, ConnectorError> {
        let mut found = HashMap::new();
        let mut unique: Vec<String> = skus.to_vec();
        unique.sort();
        unique.dedup();
        for chunk in unique.chunks(100) {
            let mut query: Vec<(&str, String)> = chunk.iter().map(|sku| ("sku[]", sku.clone())).collect();
            query.push(("fields", "id,sku,*location_levels".into()));
            query.push(("limit", (chunk.len() * 2).to_string()));
            let (items, _) = self.list("/admin/inventory-items", "inventory_items", &query, context).await?;
            for item in items {
                found.insert(str_of(&item, "sku").to_string(), item);
            }
        }
        Ok(found)
    }

    // ---- orders ---------------------------------------------------------------------------

    /// Orders by their number (`display_id`), with the fields `fields`.
    ///
    /// The admin API has no `display_id` filter (an unknown filter is dropped without an
    /// error, so `display_id=3` lists every order): the number goes through the search `q`,
    /// which matches it as text (`3` also finds 13 and e-mails with a 3), and the exact
    /// `display_id` is picked on our side, page by page (bounded).
    pub(crate) async fn orders_by_number(
        &self,
        numbers: &[String],
        fields: &str,
        context: &str,
    ) -> Result<HashMap<String, Value>, ConnectorError> {
        const PAGE: usize = 100;
        const MAX_PAGES: usize = 50;
        let mut found = HashMap::new();
        let mut wanted: Vec<u64> = numbers.iter().filter_map(|number| number.trim().parse::<u64>().ok()).collect();
        wanted.sort_unstable();
        wanted.dedup();
        for display_id in wanted {
            let key = display_id.to_string();
            if found.contains_key(&key) {
                continue;
            }
            for page in 0..MAX_PAGES {
                let query: Vec<(&str, String)> = vec![
                    ("q", key.clone()),
                    ("fields", format!("{fields},display_id")),
                    ("order", "-created_at".into()),
                    ("limit", PAGE.to_string()),
                    ("offset", (page * PAGE).to_string()),
                ];
                let (orders, _) = self.list("/admin/orders", "orders", &query, context).await?;
                let n = orders.len();
                for order in orders {
                    if let Some(number) = order_number(&order) {
                        found.entry(number).or_insert(order);
                    }
                }
                if found.contains_key(&key) || n < PAGE {
                    break;
                }
            }
        }
        Ok(found)
    }

    async fn write_order_status(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let context = self.write_context(EntityKind::OrderStatus);
        let numbers: Vec<String> = batch
            .items
            .iter()
            .filter_map(|item| match &item.record {
                Record::OrderStatus(change) => Some(change.order_number.clone()),
                _ => None,
            })
            .collect();
        let orders = self.orders_by_number(&numbers, "+status", &context).await?;
        let mut outcomes = Vec::with_capacity(batch.items.len());
        for item in &batch.items {
            let item_context = format!("{context}: {}", item.natural_key);
            let Record::OrderStatus(change) = &item.record else {
                outcomes.push(failed(ErrorKind::InvalidRequest, &item_context, "not an order status record"));
                continue;
            };
            let Some(order) = orders.get(change.order_number.trim()) else {
                outcomes.push(failed(
                    ErrorKind::NotFound,
                    &item_context,
                    format!("no order has the number {:?}", change.order_number),
                ));
                continue;
            };
            let order_id = str_of(order, "id").to_string();
            let status = str_of(order, "status");
            let action = match change.state {
                OrderState::Cancelled if status != "canceled" => Some("cancel"),
                OrderState::Completed if status != "completed" && status != "canceled" => Some("complete"),
                _ => None,
            };
            if let Some(action) = action {
                let result = self
                    .request(
                        Method::POST,
                        &format!("/admin/orders/{order_id}/{action}"),
                        &[("fields", "id,status".into())],
                        Some(&json!({})),
                        &item_context,
                    )
                    .await;
                match result {
                    Ok(_) => {}
                    Err(error) if is_data_error(&error) => {
                        outcomes.push(WriteOutcome::Failed(error));
                        continue;
                    }
                    Err(error) => return Err(error),
                }
            }
            outcomes.push(WriteOutcome::Updated { target_id: order_id });
        }
        Ok(outcomes)
    }

    // ---- documents ------------------------------------------------------------------------

    async fn write_documents(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let context = self.write_context(EntityKind::Document);
        let numbers: Vec<String> = batch
            .items
            .iter()
            .filter_map(|item| match &item.record {
                Record::Document(document) => document.order_number.clone(),
                _ => None,
            })
            .collect();
        let orders = self.orders_by_number(&numbers, "id,metadata", &context).await?;
        let mut written: HashMap<String, Map<String, Value>> = HashMap::new();
        let mut outcomes = Vec::with_capacity(batch.items.len());
        for item in &batch.items {
            let item_context = format!("{context}: {}", item.natural_key);
            let Record::Document(document) = &item.record else {
                outcomes.push(failed(ErrorKind::InvalidRequest, &item_context, "not a document record"));
                continue;
            };
            let Some(order_number) = document.order_number.as_deref().map(str::trim).filter(|n| !n.is_empty()) else {
                outcomes.push(failed(
                    ErrorKind::InvalidRequest,
                    &item_context,
                    "order_number: medusa keeps documents on their order, and this one names no order",
                ));
                continue;
            };
            let Some(order) = orders.get(order_number) else {
                // The order may not be in the shop yet: worth waiting for.
                outcomes.push(WriteOutcome::Failed(
                    ConnectorError::new(
                        ErrorKind::NotFound,
                        &item_context,
                        format!("order_number: no order {order_number} in the shop"),
                    )
                    .with_retryable(true),
                ));
                continue;
            };
            let order_id = str_of(order, "id").to_string();
            // Several documents of one order in a batch: each starts from what the one
            // before it wrote.
            let current = written
                .get(&order_id)
                .cloned()
                .unwrap_or_else(|| order.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default());
            let upload = match self.upload_document(document, &current, &item_context).await {
                Ok(upload) => upload,
                Err(error) if is_data_error(&error) => {
                    outcomes.push(WriteOutcome::Failed(error));
                    continue;
                }
                Err(error) => return Err(error),
            };
            let mut metadata = current.clone();
            metadata.extend(document_metadata(document, upload.as_ref()));
            if metadata == current {
                // Written before (a replay, or the same document again): nothing to send.
                outcomes.push(WriteOutcome::Updated { target_id: order_id });
                continue;
            }
            let result = self
                .request(
                    Method::POST,
                    &format!("/admin/orders/{order_id}"),
                    &[("fields", "id".into())],
                    Some(&json!({ "metadata": metadata })),
                    &item_context,
                )
                .await;
            match result {
                Ok(_) => {
                    written.insert(order_id.clone(), metadata);
                    outcomes.push(WriteOutcome::Updated { target_id: order_id });
                }
                Err(error) if is_data_error(&error) => outcomes.push(WriteOutcome::Failed(error)),
                Err(error) => return Err(error),
            }
        }
        Ok(outcomes)
    }

    /// Uploads the document's embedded file through `POST /admin/uploads`, unless the order's
    /// metadata shows the same bytes uploaded already for this document (same number and
    /// digest, with a URL): then that upload is reused and nothing is sent.
    async fn upload_document(
        &self,
        document: &Document,
        metadata: &Map<String, Value>,
        context: &str,
    ) -> Result<Option<Uploaded>, ConnectorError> {
        let file = document_file(document)
            .map_err(|message| ConnectorError::new(ErrorKind::InvalidRequest, context, message))?;
        let Some(DocumentFile { bytes, file_name, upload_name, content_type }) = file else {
            return Ok(None);
        };
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let prefix = format!("erpsync_{}", document.kind.as_str());
        let kept = |key: &str| metadata.get(&format!("{prefix}_{key}")).and_then(Value::as_str);
        if kept("number") == Some(document.number.as_str())
            && kept("sha256") == Some(sha256.as_str())
            && let Some(url) = kept("url").filter(|url| !url.is_empty())
        {
            return Ok(Some(Uploaded { file_name, url: url.to_string(), sha256 }));
        }
        let response = self
            .upload(
                "/admin/uploads",
                "files",
                &UploadFile { file_name: &upload_name, content_type, bytes: &bytes },
                context,
            )
            .await?;
        let url = response.pointer("/files/0/url").and_then(Value::as_str).filter(|url| !url.is_empty()).ok_or_else(
            || ConnectorError::new(ErrorKind::InvalidResponse, context, "the upload answered no files[0].url"),
        )?;
        Ok(Some(Uploaded { file_name, url: url.to_string(), sha256 }))
    }

    // ---- shipments ------------------------------------------------------------------------

    async fn write_shipments(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let context = self.write_context(EntityKind::Shipment);
        let numbers: Vec<String> = batch
            .items
            .iter()
            .filter_map(|item| match &item.record {
                Record::Shipment(shipment) => Some(shipment.order_number.clone()),
                _ => None,
            })
            .collect();
        let fields = "+status,*items,*items.detail,*fulfillments,*fulfillments.labels,*fulfillments.items";
        let orders = self.orders_by_number(&numbers, fields, &context).await?;
        let mut outcomes = Vec::with_capacity(batch.items.len());
        for item in &batch.items {
            let item_context = format!("{context}: shipment {}", item.natural_key);
            let Record::Shipment(shipment) = &item.record else {
                outcomes.push(failed(ErrorKind::InvalidRequest, &item_context, "not a shipment record"));
                continue;
            };
            let Some(order) = orders.get(shipment.order_number.trim()) else {
                // The order may not have reached the shop yet: a retry with a reason.
                outcomes.push(failed(
                    ErrorKind::NotFound,
                    &item_context,
                    format!("no order has the number {:?}", shipment.order_number),
                ));
                continue;
            };
            outcomes.push(match self.write_shipment(item, shipment, order, &item_context).await {
                Ok(outcome) => outcome,
                Err(error) if is_data_error(&error) => WriteOutcome::Failed(error),
                Err(error) => return Err(error),
            });
        }
        Ok(outcomes)
    }

    async fn write_shipment(
        &self,
        item: &WriteItem,
        shipment: &Shipment,
        order: &Value,
        context: &str,
    ) -> Result<WriteOutcome, ConnectorError> {
        let invalid = |message: String| ConnectorError::new(ErrorKind::InvalidRequest, context, message);
        let order_id = str_of(order, "id");
        let fulfillments: Vec<&Value> =
            order.get("fulfillments").and_then(Value::as_array).into_iter().flatten().collect();
        // A replay finds the fulfillment it made before by the shipment number in its metadata.
        let existing = fulfillments
            .iter()
            .find(|f| f.pointer("/metadata/erpsync_shipment").and_then(Value::as_str) == Some(shipment.number.as_str()))
            .copied()
            .or_else(|| {
                item.target_id.as_deref().and_then(|id| fulfillments.iter().find(|f| str_of(f, "id") == id).copied())
            });
        let items: Vec<&Value> = order.get("items").and_then(Value::as_array).into_iter().flatten().collect();
        let lines: Vec<Value> = if shipment.lines.is_empty() {
            // No lines: everything not shipped yet.
            items
                .iter()
                .filter_map(|line| {
                    let ordered = crate::medusa::map::decimal(line, "quantity").ok().flatten().unwrap_or_default();
                    let done = line
                        .get("detail")
                        .and_then(|d| crate::medusa::map::decimal(d, "fulfilled_quantity").ok().flatten())
                        .unwrap_or_default();
                    (ordered > done).then(|| json!({"id": str_of(line, "id"), "quantity": number(ordered - done)}))
                })
                .collect()
        } else {
            let mut lines = Vec::new();
            for wanted in &shipment.lines {
                let line = items.iter().find(|line| str_of(line, "variant_sku") == wanted.sku).ok_or_else(|| {
                    invalid(format!("order {} has no line with SKU {:?}", shipment.order_number, wanted.sku))
                })?;
                lines.push(json!({"id": str_of(line, "id"), "quantity": number(wanted.quantity)}));
            }
            lines
        };
        let (fulfillment_id, created) = match existing {
            Some(fulfillment) => (str_of(fulfillment, "id").to_string(), false),
            None => {
                if lines.is_empty() {
                    return Err(invalid(format!("order {} has nothing left to ship", shipment.order_number)));
                }
                let shop = self.shop().await?;
                let mut body = json!({
                    "items": lines,
                    "no_notification": !shipment.notify_customer,
                    "metadata": {"erpsync_shipment": shipment.number},
                });
                if let Some(location) = shipment.location.as_deref() {
                    let location_id = shop.locations.get(location.trim()).ok_or_else(|| {
                        invalid(format!("location {location:?} is not mapped to a Medusa stock location"))
                    })?;
                    body["location_id"] = json!(location_id);
                }
                let response = self
                    .request(
                        Method::POST,
                        &format!("/admin/orders/{order_id}/fulfillments"),
                        &[("fields", "id,*fulfillments,*fulfillments.labels".into())],
                        Some(&body),
                        context,
                    )
                    .await?;
                let fulfillment = response
                    .pointer("/order/fulfillments")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|f| {
                        f.pointer("/metadata/erpsync_shipment").and_then(Value::as_str)
                            == Some(shipment.number.as_str())
                    })
                    .and_then(id_of)
                    .ok_or_else(|| {
                        ConnectorError::new(
                            ErrorKind::InvalidResponse,
                            context,
                            "the order has no fulfillment with our shipment number",
                        )
                    })?;
                (fulfillment, true)
            }
        };
        let shipped = existing.is_some_and(|f| f.get("shipped_at").is_some_and(|at| !at.is_null()));
        if !shipped {
            let labels: Vec<Value> = shipment
                .tracking
                .iter()
                .map(|tracking| {
                    let url = tracking.url.clone().unwrap_or_default();
                    json!({"tracking_number": tracking.number, "tracking_url": url, "label_url": url})
                })
                .collect();
            let shipped_items: Vec<Value> = match existing {
                Some(fulfillment) => fulfillment
                    .get("items")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|i| json!({"id": str_of(i, "line_item_id"), "quantity": i.get("quantity").cloned().unwrap_or(json!(0))}))
                    .collect(),
                None => lines,
            };
            self.request(
                Method::POST,
                &format!("/admin/orders/{order_id}/fulfillments/{fulfillment_id}/shipments"),
                &[("fields", "id".into())],
                Some(&json!({"items": shipped_items, "labels": labels, "no_notification": !shipment.notify_customer})),
                context,
            )
            .await?;
        }
        let delivered = existing.is_some_and(|f| f.get("delivered_at").is_some_and(|at| !at.is_null()));
        if self.config.mark_delivered && !delivered {
            self.request(
                Method::POST,
                &format!("/admin/orders/{order_id}/fulfillments/{fulfillment_id}/mark-as-delivered"),
                &[("fields", "id".into())],
                Some(&json!({})),
                context,
            )
            .await?;
        }
        Ok(if created {
            WriteOutcome::Created { target_id: fulfillment_id }
        } else {
            WriteOutcome::Updated { target_id: fulfillment_id }
        })
    }

    // ---- lookups --------------------------------------------------------------------------

    async fn lookup_products(&self, codes: &[String], context: &str) -> Result<Vec<Option<String>>, ConnectorError> {
        let mut found: HashMap<String, String> = HashMap::new();
        for (param, key_of) in [("external_id[]", "external_id"), ("handle[]", "handle")] {
            let missing: Vec<&String> = codes.iter().filter(|code| !found.contains_key(*code)).collect();
            for chunk in missing.chunks(100) {
                let mut query: Vec<(&str, String)> = chunk
                    .iter()
                    .map(|code| (param, if key_of == "handle" { handle_for(code) } else { code.to_string() }))
                    .collect();
                query.push(("fields", "id,external_id,handle".into()));
                query.push(("limit", (chunk.len() * 2).to_string()));
                let (products, _) = self.list("/admin/products", "products", &query, context).await?;
                for code in chunk {
                    let wanted = if key_of == "handle" { handle_for(code) } else { code.to_string() };
                    if let Some(id) = products.iter().find(|p| str_of(p, key_of) == wanted).and_then(id_of) {
                        found.insert(code.to_string(), id);
                    }
                }
            }
        }
        let missing: Vec<String> = codes.iter().filter(|code| !found.contains_key(*code)).cloned().collect();
        let variants = self.variants_by_sku(&missing, context).await?;
        for code in missing {
            if let Some(variant) = variants.get(&code) {
                found.insert(code, str_of(variant, "product_id").to_string());
            }
        }
        Ok(codes.iter().map(|code| found.get(code).cloned()).collect())
    }
}

/// A document's keys in its order's metadata: `erpsync_<kind>_number`, `_date`, `_total`,
/// `_currency`, and for a document with a file: `_url` (the document's own URL, or where Medusa
/// serves the uploaded bytes), and for uploaded bytes also `_file` (the file name) and
/// `_sha256` (the digest of the bytes, which tells a later write that they are uploaded
/// already). A later document of the same kind replaces the values.
pub fn document_metadata(document: &Document, upload: Option<&Uploaded>) -> Map<String, Value> {
    let prefix = format!("erpsync_{}", document.kind.as_str());
    let mut metadata = Map::new();
    metadata.insert(format!("{prefix}_number"), json!(document.number));
    metadata.insert(format!("{prefix}_date"), json!(document.issued_at.map(|at| at.date_naive().to_string())));
    metadata.insert(format!("{prefix}_total"), json!(format!("{:.2}", document.totals.total.round_dp(2))));
    metadata.insert(format!("{prefix}_currency"), json!(document.currency.as_str()));
    match (&document.pdf, upload) {
        (Some(Pdf::Url { url }), _) => {
            metadata.insert(format!("{prefix}_url"), json!(url));
        }
        (Some(Pdf::Base64 { .. }), Some(upload)) => {
            metadata.insert(format!("{prefix}_file"), json!(upload.file_name));
            metadata.insert(format!("{prefix}_url"), json!(upload.url));
            metadata.insert(format!("{prefix}_sha256"), json!(upload.sha256));
        }
        _ => {}
    }
    metadata
}

/// A document's file as uploaded to Medusa.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub file_name: String,
    pub url: String,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
}

/// A document's embedded file, ready to upload.
struct DocumentFile {
    bytes: Vec<u8>,
    /// The document's own file name (or `<kind>-<number>.pdf`), kept in the metadata.
    file_name: String,
    /// The name uploaded: one plain name, no folders.
    upload_name: String,
    content_type: &'static str,
}

/// The embedded file of a document (none when it has no bytes).
fn document_file(document: &Document) -> Result<Option<DocumentFile>, String> {
    let Some(Pdf::Base64 { data, file_name }) = &document.pdf else {
        return Ok(None);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|error| format!("pdf.data is not base64: {error}"))?;
    let name = file_name.clone().unwrap_or_else(|| format!("{}-{}.pdf", document.kind.as_str(), document.number));
    // Medusa's local file provider makes folders of `/` in a name: keep it one plain name.
    let safe: String = name
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
        .collect();
    let safe = if safe.trim_matches(['.', '_']).is_empty() { format!("{}.pdf", document.kind.as_str()) } else { safe };
    let content_type = match safe.rsplit_once('.').map(|(_, extension)| extension.to_ascii_lowercase()) {
        Some(extension) if extension == "pdf" => "application/pdf",
        Some(extension) if extension == "odt" => "application/vnd.oasis.opendocument.text",
        Some(extension) if extension == "html" || extension == "htm" => "text/html",
        _ => "application/octet-stream",
    };
    Ok(Some(DocumentFile { bytes, file_name: name, upload_name: safe, content_type }))
}

/// Creates and updates cut into requests of at most `size` entries together.
fn chunk_pairs(creates: Vec<Value>, updates: Vec<Value>, size: usize) -> Vec<(Vec<Value>, Vec<Value>)> {
    let mut all: Vec<(bool, Value)> = creates.into_iter().map(|v| (true, v)).collect();
    all.extend(updates.into_iter().map(|v| (false, v)));
    all.chunks(size)
        .map(|chunk| {
            let creates = chunk.iter().filter(|(c, _)| *c).map(|(_, v)| v.clone()).collect();
            let updates = chunk.iter().filter(|(c, _)| !*c).map(|(_, v)| v.clone()).collect();
            (creates, updates)
        })
        .collect()
}

#[async_trait]
impl Sink for MedusaConnector {
    fn capabilities(&self, entity: EntityKind) -> Capabilities {
        match entity {
            EntityKind::Product | EntityKind::StockLevel | EntityKind::OrderStatus | EntityKind::PriceList => {
                Capabilities { write: true, lookup: true, ..Capabilities::default() }
            }
            EntityKind::Shipment | EntityKind::Document => Capabilities { write: true, ..Capabilities::default() },
            _ => Capabilities::default(),
        }
    }

    fn max_batch_size(&self, entity: EntityKind) -> usize {
        match entity {
            EntityKind::Product => PRODUCT_BATCH,
            EntityKind::StockLevel => STOCK_BATCH,
            _ => 50,
        }
    }

    async fn lookup(&self, entity: EntityKind, natural_keys: &[String]) -> Result<Vec<Option<String>>, ConnectorError> {
        let context = format!("looking up {entity} in medusa {:?}", self.system);
        match entity {
            EntityKind::Product => self.lookup_products(natural_keys, &context).await,
            // Customer-group lists are Medusa price lists with the code in their metadata; a
            // base list has no record of its own (None: it is written, which sets prices).
            EntityKind::PriceList => {
                let lists = self
                    .list_all("/admin/price-lists", "price_lists", &[("fields", "id,metadata".into())], &context)
                    .await?;
                Ok(natural_keys
                    .iter()
                    .map(|code| {
                        lists
                            .iter()
                            .find(|list| list.pointer("/metadata/erpsync_code").and_then(Value::as_str) == Some(code))
                            .and_then(id_of)
                    })
                    .collect())
            }
            EntityKind::OrderStatus => {
                // The key is `<number>#<time>`: the order's number is before the `#`.
                let numbers: Vec<String> =
                    natural_keys.iter().map(|key| key.split('#').next().unwrap_or("").to_string()).collect();
                let orders = self.orders_by_number(&numbers, "id,display_id", &context).await?;
                Ok(numbers.iter().map(|number| orders.get(number).and_then(id_of)).collect())
            }
            EntityKind::StockLevel => {
                let shop = self.shop().await?;
                let pairs: Vec<(String, String)> = natural_keys
                    .iter()
                    .map(|key| match key.rsplit_once('@') {
                        Some((sku, location)) => (sku.to_string(), location.to_string()),
                        None => (key.clone(), String::new()),
                    })
                    .collect();
                let skus: Vec<String> = pairs.iter().map(|(sku, _)| sku.clone()).collect();
                let items = self.inventory_items_by_sku(&skus, &context).await?;
                Ok(pairs
                    .iter()
                    .map(|(sku, location)| {
                        let item = items.get(sku)?;
                        let location_id = shop.locations.get(location)?;
                        Some(format!("{}@{location_id}", str_of(item, "id")))
                    })
                    .collect())
            }
            _ => Ok(natural_keys.iter().map(|_| None).collect()),
        }
    }

    async fn write_batch(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        match batch.entity {
            EntityKind::Product => self.write_products(batch).await,
            EntityKind::PriceList => self.write_prices(batch).await,
            EntityKind::StockLevel => self.write_stock(batch).await,
            EntityKind::OrderStatus => self.write_order_status(batch).await,
            EntityKind::Shipment => self.write_shipments(batch).await,
            EntityKind::Document => self.write_documents(batch).await,
            other => {
                let context = self.write_context(other);
                Ok(batch
                    .items
                    .iter()
                    .map(|_| {
                        failed(
                            ErrorKind::InvalidRequest,
                            &context,
                            format!(
                                "the medusa connector does not write {other}: it writes product, price_list, stock_level, order_status, shipment and document"
                            ),
                        )
                    })
                    .collect())
            }
        }
    }
}
