//! The mutations: validate the input, apply it to the shop or report `userErrors` (HTTP 200,
//! never 422), and say which webhooks and background jobs follow.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Map, Value as Json, json};

use super::exec::{Obj, Resolved, gid, parse_cents, parse_gid};
use super::graphql::{OperationKind, ResolvedField};
use super::state::{
    BulkOperation, Customer, Fulfillment, Image, InventoryLevel, Metafield, PriceList, Product, ProductOption, Refund,
    ShopState, Variant, WebhookSubscription,
};
use super::webhooks::{rest_customer, rest_inventory_level, rest_order, rest_product};

/// Shopify's cap on input arrays.
pub const MAX_INPUT_ITEMS: usize = 250;
/// Default per-product variant limit (was 100).
pub const MAX_VARIANTS: usize = 2048;
/// Staged bulk mutation files are capped at 20 MB.
pub const MAX_STAGED_UPLOAD_BYTES: usize = 20 * 1024 * 1024;

/// What happens after a mutation commits.
#[derive(Debug, Clone)]
pub enum Effect {
    Webhook { topic: String, payload: Json },
    RunBulkQuery(u64),
    RunBulkMutation(u64),
}

pub struct MutationContext<'a> {
    pub now: DateTime<Utc>,
    pub version: &'a str,
    pub base_url: &'a str,
    /// Fraction of batch items that fail by fault injection.
    pub partial_failure_rate: f64,
    pub rng: &'a mut StdRng,
    /// Bulk mutation lines run without `@idempotent` checks of the interactive API.
    pub in_bulk: bool,
}

pub struct MutationOutcome {
    pub payload: Resolved,
    pub effects: Vec<Effect>,
}

/// `unstable` is newer than every dated version.
pub fn version_at_least(version: &str, minimum: &str) -> bool {
    version == "unstable" || version >= minimum
}

fn user_error(field: &[&str], message: impl Into<String>, code: Option<&str>) -> Json {
    let mut error = json!({"field": field, "message": message.into()});
    if let Some(code) = code {
        error["code"] = json!(code);
    }
    error
}

fn payload(fields: Vec<(&str, Resolved)>) -> Resolved {
    Resolved::Object(Obj::Fields(fields.into_iter().map(|(n, r)| (n.to_string(), r)).collect()))
}

fn errors(user_errors: Vec<Json>) -> Resolved {
    Resolved::Value(Json::Array(user_errors))
}

fn text(value: &Json, name: &str) -> Option<String> {
    value.get(name).and_then(Json::as_str).map(str::to_string)
}

fn strings(value: &Json, name: &str) -> Option<Vec<String>> {
    match value.get(name)? {
        Json::Array(items) => Some(items.iter().filter_map(Json::as_str).map(str::to_string).collect()),
        Json::String(s) => Some(s.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect()),
        _ => None,
    }
}

fn outcome(payload: Resolved, effects: Vec<Effect>) -> Result<MutationOutcome, String> {
    Ok(MutationOutcome { payload, effects })
}

pub fn execute(
    state: &mut ShopState,
    ctx: &mut MutationContext,
    field: &ResolvedField,
) -> Result<MutationOutcome, String> {
    match field.name.as_str() {
        "productSet" => product_set(state, ctx, field),
        "productDelete" => product_delete(state, field),
        "productUpdate" => product_update(state, ctx, field),
        "orderCancel" => order_cancel(state, ctx, field),
        "orderClose" => order_close(state, ctx, field),
        "metafieldsSet" => metafields_set(state, ctx, field),
        "inventorySetQuantities" => inventory_set_quantities(state, ctx, field),
        "inventoryAdjustQuantities" => inventory_adjust_quantities(state, ctx, field),
        "customerCreate" | "customerUpdate" => customer_upsert(state, ctx, field),
        "fulfillmentCreate" => fulfillment_create(state, ctx, field),
        "refundCreate" => refund_create(state, ctx, field),
        "priceListCreate" => price_list_create(state, field),
        "priceListFixedPricesAdd" => price_list_fixed_prices_add(state, ctx, field),
        "webhookSubscriptionCreate" => webhook_subscription_create(state, ctx, field),
        "webhookSubscriptionDelete" => webhook_subscription_delete(state, field),
        "stagedUploadsCreate" => staged_uploads_create(state, ctx, field),
        "bulkOperationRunQuery" => bulk_operation_run_query(state, ctx, field),
        "bulkOperationRunMutation" => bulk_operation_run_mutation(state, ctx, field),
        "bulkOperationCancel" => bulk_operation_cancel(state, ctx, field),
        other => Err(format!("Field '{other}' doesn't exist on type 'Mutation'")),
    }
}

/// Mutations that need `@idempotent(key:)` from 2026-04 on.
pub fn requires_idempotency_key(name: &str) -> bool {
    matches!(name, "inventorySetQuantities" | "inventoryAdjustQuantities" | "inventorySetOnHandQuantities")
}

fn product_delete(state: &mut ShopState, field: &ResolvedField) -> Result<MutationOutcome, String> {
    let input = field.argument("input").cloned().unwrap_or(Json::Null);
    let id = text(&input, "id").and_then(|s| parse_gid(&s, "Product"));
    let Some(product) = id.and_then(|id| state.products.remove(&id)) else {
        return outcome(
            payload(vec![
                ("deletedProductId", Resolved::Null),
                ("userErrors", errors(vec![user_error(&["id"], "Product does not exist", None)])),
            ]),
            vec![],
        );
    };
    for variant in &product.variant_ids {
        state.delete_variant(*variant);
    }
    outcome(
        payload(vec![
            ("deletedProductId", Resolved::Value(json!(gid("Product", product.id)))),
            ("userErrors", errors(vec![])),
        ]),
        vec![Effect::Webhook { topic: "products/delete".into(), payload: json!({"id": product.id}) }],
    )
}

/// A variant of the input after validation.
struct VariantInput {
    existing: Option<u64>,
    sku: Option<Option<String>>,
    barcode: Option<Option<String>>,
    price_cents: Option<i64>,
    compare_at_price_cents: Option<Option<i64>>,
    options: Vec<(String, String)>,
    taxable: Option<bool>,
    inventory_policy: Option<String>,
    tracked: Option<bool>,
    quantities: Vec<(u64, String, i64)>,
    metafields: Option<Vec<Json>>,
}

/// `productSet`: a declarative upsert. Lists given in the input replace the product's lists;
/// scalar fields left out stay as they are.
fn product_set(
    state: &mut ShopState,
    ctx: &mut MutationContext,
    field: &ResolvedField,
) -> Result<MutationOutcome, String> {
    let input = field.argument("input").cloned().unwrap_or(Json::Null);
    if !input.is_object() {
        return Err(
            "Argument 'input' on Field 'productSet' has an invalid value. Expected type 'ProductSetInput!'.".into()
        );
    }
    let synchronous = field.argument("synchronous").and_then(Json::as_bool).unwrap_or(true);
    let fail = |user_errors: Vec<Json>| {
        outcome(
            payload(vec![
                ("product", Resolved::Null),
                ("productSetOperation", Resolved::Null),
                ("userErrors", errors(user_errors)),
            ]),
            vec![],
        )
    };
    // Which product: `identifier` (id or handle), else `input.id`, else a new one.
    let identifier = field.argument("identifier").cloned().unwrap_or(Json::Null);
    let identifier_id = text(&identifier, "id").or_else(|| text(&input, "id"));
    let identifier_handle = text(&identifier, "handle");
    let existing = if let Some(id) = identifier_id {
        match parse_gid(&id, "Product").filter(|id| state.products.contains_key(id)) {
            Some(id) => Some(id),
            None => {
                return fail(vec![user_error(
                    &["input", "id"],
                    "Product does not exist",
                    Some("PRODUCT_DOES_NOT_EXIST"),
                )]);
            }
        }
    } else if let Some(handle) = &identifier_handle {
        state.products.values().find(|p| &p.handle == handle).map(|p| p.id)
    } else {
        None
    };

    let mut user_errors = Vec::new();
    if existing.is_none() && text(&input, "title").is_none_or(|t| t.trim().is_empty()) {
        user_errors.push(user_error(&["input", "title"], "Title can't be blank", Some("BLANK")));
    }
    // Options: the input's list, or the product's current options.
    let options: Option<Vec<(String, Vec<String>)>> =
        input.get("productOptions").and_then(Json::as_array).map(|list| {
            list.iter()
                .map(|o| {
                    let values = o
                        .get("values")
                        .and_then(Json::as_array)
                        .map(|vs| {
                            vs.iter().filter_map(|v| v.get("name").and_then(Json::as_str).map(str::to_string)).collect()
                        })
                        .unwrap_or_default();
                    (text(o, "name").unwrap_or_default(), values)
                })
                .collect()
        });
    if let Some(options) = &options {
        if options.len() > 3 {
            user_errors.push(user_error(
                &["input", "productOptions"],
                "Can only specify a maximum of 3 options",
                Some("OPTIONS_OVER_LIMIT"),
            ));
        }
        let mut seen = HashSet::new();
        for (n, (name, _)) in options.iter().enumerate() {
            if !seen.insert(name.to_lowercase()) {
                let index = n.to_string();
                user_errors.push(user_error(
                    &["input", "productOptions", &index, "name"],
                    format!("Duplicated option name '{name}'"),
                    Some("DUPLICATED_OPTION_NAME"),
                ));
            }
        }
    }
    let current_options: Vec<String> = match (&options, existing) {
        (Some(options), _) => options.iter().map(|(n, _)| n.clone()).collect(),
        (None, Some(id)) => state.products[&id].options.iter().map(|o| o.name.clone()).collect(),
        (None, None) => vec![],
    };

    let mut variant_inputs: Option<Vec<VariantInput>> = None;
    if let Some(variants) = input.get("variants").and_then(Json::as_array) {
        if variants.len() > MAX_VARIANTS {
            user_errors.push(user_error(
                &["input", "variants"],
                format!("Exceeded the maximum of {MAX_VARIANTS} variants per product"),
                Some("VARIANTS_OVER_LIMIT"),
            ));
        }
        if !variants.is_empty() && current_options.is_empty() {
            let has_option_values =
                variants.iter().any(|v| v.get("optionValues").and_then(Json::as_array).is_some_and(|a| !a.is_empty()));
            if has_option_values {
                user_errors.push(user_error(
                    &["input", "productOptions"],
                    "Product options input is required when updating variants",
                    Some("PRODUCT_OPTIONS_INPUT_MISSING"),
                ));
            }
        }
        let mut parsed = Vec::new();
        let mut skus = HashSet::new();
        let mut combinations = HashSet::new();
        for (n, variant) in variants.iter().enumerate() {
            let index = n.to_string();
            let path = |leaf: &'static str| vec!["input", "variants", index.as_str(), leaf];
            let existing_variant = match text(variant, "id") {
                Some(id) => match parse_gid(&id, "ProductVariant")
                    .filter(|v| existing.is_some_and(|p| state.variants.get(v).is_some_and(|v| v.product_id == p)))
                {
                    Some(v) => Some(v),
                    None => {
                        user_errors.push(user_error(
                            &path("id"),
                            "Product variant does not exist",
                            Some("PRODUCT_VARIANT_DOES_NOT_EXIST"),
                        ));
                        None
                    }
                },
                None => None,
            };
            let price_cents = match variant.get("price").filter(|p| !p.is_null()) {
                None => None,
                Some(price) => match parse_cents(price) {
                    Some(cents) if cents < 0 => {
                        user_errors.push(user_error(
                            &path("price"),
                            "Price must be greater than or equal to 0",
                            Some("INVALID_INPUT"),
                        ));
                        None
                    }
                    Some(cents) => Some(cents),
                    None => {
                        user_errors.push(user_error(&path("price"), "Price is invalid", Some("INVALID_INPUT")));
                        None
                    }
                },
            };
            let compare_at_price_cents = match variant.get("compareAtPrice") {
                None => None,
                Some(Json::Null) => Some(None),
                Some(value) => match parse_cents(value) {
                    Some(cents) if cents >= 0 => Some(Some(cents)),
                    _ => {
                        user_errors.push(user_error(
                            &path("compareAtPrice"),
                            "Compare at price is invalid",
                            Some("INVALID_INPUT"),
                        ));
                        None
                    }
                },
            };
            let sku = variant
                .get("sku")
                .or_else(|| variant.get("inventoryItem").and_then(|i| i.get("sku")))
                .map(|s| s.as_str().map(str::to_string));
            if let Some(Some(sku)) = &sku
                && !sku.is_empty()
                && !skus.insert(sku.clone())
            {
                user_errors.push(user_error(
                    &path("sku"),
                    format!("SKU '{sku}' is used by more than one variant of this product"),
                    Some("INVALID_VARIANT"),
                ));
            }
            let mut selected = Vec::new();
            for value in variant.get("optionValues").and_then(Json::as_array).into_iter().flatten() {
                let option_name = text(value, "optionName").unwrap_or_default();
                let value_name = text(value, "name").unwrap_or_default();
                if !current_options.iter().any(|o| o == &option_name) {
                    user_errors.push(user_error(
                        &path("optionValues"),
                        format!("Option '{option_name}' does not exist"),
                        Some("OPTION_DOES_NOT_EXIST"),
                    ));
                }
                selected.push((option_name, value_name));
            }
            if !current_options.is_empty() {
                let missing: Vec<&String> =
                    current_options.iter().filter(|o| !selected.iter().any(|(n, _)| n == *o)).collect();
                if !missing.is_empty() {
                    user_errors.push(user_error(
                        &path("optionValues"),
                        format!(
                            "Variant is missing values for options: {}",
                            missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                        Some("NEED_TO_ADD_OPTION_VALUES"),
                    ));
                }
                selected.sort_by_key(|(name, _)| current_options.iter().position(|o| o == name).unwrap_or(usize::MAX));
                let combination: Vec<String> = selected.iter().map(|(_, v)| v.to_lowercase()).collect();
                if !combinations.insert(combination) {
                    user_errors.push(user_error(
                        &path("optionValues"),
                        "The variant already exists with the same option values",
                        Some("VARIANT_ALREADY_EXISTS"),
                    ));
                }
            }
            let mut quantities = Vec::new();
            for quantity in variant.get("inventoryQuantities").and_then(Json::as_array).into_iter().flatten() {
                let location = text(quantity, "locationId")
                    .and_then(|l| parse_gid(&l, "Location"))
                    .filter(|l| state.locations.contains_key(l));
                let Some(location) = location else {
                    user_errors.push(user_error(
                        &path("inventoryQuantities"),
                        "Location does not exist",
                        Some("INVALID_INPUT"),
                    ));
                    continue;
                };
                let name = text(quantity, "name").unwrap_or_else(|| "available".into());
                quantities.push((location, name, quantity.get("quantity").and_then(Json::as_i64).unwrap_or(0)));
            }
            parsed.push(VariantInput {
                existing: existing_variant,
                sku,
                barcode: variant.get("barcode").map(|b| b.as_str().map(str::to_string)),
                price_cents,
                compare_at_price_cents,
                options: selected,
                taxable: variant.get("taxable").and_then(Json::as_bool),
                inventory_policy: text(variant, "inventoryPolicy"),
                tracked: variant.get("inventoryItem").and_then(|i| i.get("tracked")).and_then(Json::as_bool),
                quantities,
                metafields: variant.get("metafields").and_then(Json::as_array).cloned(),
            });
        }
        variant_inputs = Some(parsed);
    }
    if let Some(handle) = text(&input, "handle")
        && state.products.values().any(|p| p.handle == handle && Some(p.id) != existing)
    {
        user_errors.push(user_error(
            &["input", "handle"],
            format!("Handle '{handle}' already in use. Please provide a new handle."),
            Some("INVALID_INPUT"),
        ));
    }
    if !user_errors.is_empty() {
        return fail(user_errors);
    }

    // Apply.
    let now = ctx.now;
    let created = existing.is_none();
    let product_id = match existing {
        Some(id) => id,
        None => {
            let id = state.allocate_id();
            let title = text(&input, "title").unwrap_or_default();
            let handle = identifier_handle.clone().unwrap_or_else(|| slug(&title));
            state.products.insert(
                id,
                Product {
                    id,
                    title,
                    handle,
                    status: "ACTIVE".into(),
                    vendor: String::new(),
                    product_type: String::new(),
                    description_html: String::new(),
                    tags: vec![],
                    options: vec![],
                    variant_ids: vec![],
                    images: vec![],
                    metafields: vec![],
                    created_at: now,
                    updated_at: now,
                },
            );
            id
        }
    };
    let new_option_ids: Vec<u64> = options.iter().flatten().map(|_| state.allocate_id()).collect();
    let new_metafields =
        input.get("metafields").and_then(Json::as_array).map(|list| build_metafields(state, list, now));
    let new_images = input.get("files").or_else(|| input.get("media")).and_then(Json::as_array).map(|files| {
        files
            .iter()
            .map(|f| Image {
                id: state.allocate_id(),
                url: text(f, "originalSource").unwrap_or_default(),
                alt: text(f, "alt"),
            })
            .collect::<Vec<_>>()
    });
    {
        let Some(product) = state.products.get_mut(&product_id) else {
            return Err("internal error: product vanished".into());
        };
        if let Some(title) = text(&input, "title") {
            product.title = title;
        }
        if let Some(handle) = text(&input, "handle") {
            product.handle = handle;
        }
        if let Some(status) = text(&input, "status") {
            product.status = status;
        }
        if let Some(vendor) = text(&input, "vendor") {
            product.vendor = vendor;
        }
        if let Some(product_type) = text(&input, "productType") {
            product.product_type = product_type;
        }
        if let Some(description) = text(&input, "descriptionHtml") {
            product.description_html = description;
        }
        if let Some(tags) = strings(&input, "tags") {
            product.tags = tags;
        }
        if let Some(options) = &options {
            // Keep option ids stable when the name is unchanged.
            let old = std::mem::take(&mut product.options);
            product.options = options
                .iter()
                .zip(new_option_ids)
                .map(|((name, values), new_id)| ProductOption {
                    id: old.iter().find(|o| &o.name == name).map_or(new_id, |o| o.id),
                    name: name.clone(),
                    values: values.clone(),
                })
                .collect();
        }
        if let Some(metafields) = new_metafields {
            product.metafields = merge_metafields(&product.metafields, metafields);
        }
        if let Some(images) = new_images {
            product.images = images;
        }
        product.updated_at = now;
    }

    let mut effects = Vec::new();
    let variant_inputs = match variant_inputs {
        Some(inputs) => Some(inputs),
        None if created => Some(vec![VariantInput {
            existing: None,
            sku: None,
            barcode: None,
            price_cents: Some(0),
            compare_at_price_cents: None,
            options: vec![],
            taxable: None,
            inventory_policy: None,
            tracked: None,
            quantities: vec![],
            metafields: None,
        }]),
        None => None,
    };
    if let Some(inputs) = variant_inputs {
        if created && options.is_none() && inputs.iter().all(|v| v.options.is_empty()) {
            let id = state.allocate_id();
            if let Some(product) = state.products.get_mut(&product_id) {
                product.options =
                    vec![ProductOption { id, name: "Title".into(), values: vec!["Default Title".into()] }];
            }
        }
        let old_variant_ids = state.products[&product_id].variant_ids.clone();
        let mut kept = Vec::new();
        for input in inputs {
            // Match by id, else by the same option values: Shopify keeps such a variant.
            let matched = input.existing.or_else(|| {
                (!input.options.is_empty()).then_some(()).and_then(|_| {
                    old_variant_ids.iter().copied().find(|v| {
                        !kept.contains(v)
                            && state.variants.get(v).is_some_and(|v| {
                                v.selected_options.len() == input.options.len()
                                    && v.selected_options
                                        .iter()
                                        .zip(&input.options)
                                        .all(|(a, b)| a.0 == b.0 && a.1.eq_ignore_ascii_case(&b.1))
                            })
                    })
                })
            });
            let variant_id = match matched {
                Some(id) => id,
                None => {
                    let id = state.allocate_id();
                    let inventory_item_id = state.add_inventory_item(id, now);
                    state.variants.insert(
                        id,
                        Variant {
                            id,
                            product_id,
                            sku: None,
                            barcode: None,
                            price_cents: 0,
                            compare_at_price_cents: None,
                            selected_options: vec![],
                            inventory_item_id,
                            taxable: true,
                            inventory_policy: "DENY".into(),
                            metafields: vec![],
                            created_at: now,
                            updated_at: now,
                        },
                    );
                    id
                }
            };
            let metafields = input.metafields.as_ref().map(|list| build_metafields(state, list, now));
            let Some(variant) = state.variants.get_mut(&variant_id) else { continue };
            let before = (
                variant.sku.clone(),
                variant.barcode.clone(),
                variant.price_cents,
                variant.compare_at_price_cents,
                variant.selected_options.clone(),
                variant.taxable,
                variant.inventory_policy.clone(),
            );
            if let Some(sku) = input.sku {
                variant.sku = sku.filter(|s| !s.is_empty());
            }
            if let Some(barcode) = input.barcode {
                variant.barcode = barcode;
            }
            if let Some(price) = input.price_cents {
                variant.price_cents = price;
            }
            if let Some(compare) = input.compare_at_price_cents {
                variant.compare_at_price_cents = compare;
            }
            if !input.options.is_empty() {
                variant.selected_options = input.options.clone();
            } else if variant.selected_options.is_empty() {
                variant.selected_options = vec![("Title".into(), "Default Title".into())];
            }
            if let Some(taxable) = input.taxable {
                variant.taxable = taxable;
            }
            if let Some(policy) = input.inventory_policy {
                variant.inventory_policy = policy;
            }
            let mut changed = matched.is_none()
                || before
                    != (
                        variant.sku.clone(),
                        variant.barcode.clone(),
                        variant.price_cents,
                        variant.compare_at_price_cents,
                        variant.selected_options.clone(),
                        variant.taxable,
                        variant.inventory_policy.clone(),
                    );
            if let Some(metafields) = metafields {
                variant.metafields = merge_metafields(&variant.metafields, metafields);
                changed = true;
            }
            if changed {
                variant.updated_at = now;
            }
            let inventory_item_id = variant.inventory_item_id;
            if let Some(tracked) = input.tracked
                && let Some(item) = state.inventory_items.get_mut(&inventory_item_id)
            {
                item.tracked = tracked;
                item.updated_at = now;
            }
            for (location, name, quantity) in input.quantities {
                let level_id = state.allocate_id();
                let level = state
                    .inventory_levels
                    .entry((inventory_item_id, location))
                    .or_insert_with(|| InventoryLevel::new(level_id, 0, now));
                level.set(&name, quantity, now);
                effects.push(Effect::Webhook {
                    topic: "inventory_levels/update".into(),
                    payload: rest_inventory_level(state, inventory_item_id, location),
                });
            }
            kept.push(variant_id);
        }
        // List replacement: variants left out of the input are deleted.
        for old in &old_variant_ids {
            if !kept.contains(old) {
                state.delete_variant(*old);
            }
        }
        if let Some(product) = state.products.get_mut(&product_id) {
            product.variant_ids = kept;
            if options.is_none() && !created {
                // Option values follow the remaining variants.
                let variants: Vec<&Variant> =
                    product.variant_ids.iter().filter_map(|v| state.variants.get(v)).collect();
                for option in &mut product.options {
                    option.values.retain(|value| {
                        variants
                            .iter()
                            .any(|v| v.selected_options.iter().any(|(n, val)| n == &option.name && val == value))
                    });
                }
            }
        }
    }
    let topic = if created { "products/create" } else { "products/update" };
    effects.insert(0, Effect::Webhook { topic: topic.into(), payload: rest_product(state, product_id) });
    let product = Resolved::Object(Obj::Product(product_id));
    let operation = if synchronous {
        Resolved::Null
    } else {
        let operation_id = state.allocate_id();
        Resolved::Object(Obj::Fields(vec![
            ("id".into(), Resolved::Value(json!(gid("ProductSetOperation", operation_id)))),
            ("status".into(), Resolved::Value(json!("COMPLETE"))),
            ("product".into(), product.clone()),
            ("userErrors".into(), Resolved::Value(json!([]))),
        ]))
    };
    outcome(
        payload(vec![
            ("product", if synchronous { product } else { Resolved::Null }),
            ("productSetOperation", operation),
            ("userErrors", errors(vec![])),
        ]),
        effects,
    )
}

fn slug(title: &str) -> String {
    let mut out = String::new();
    for c in title.to_lowercase().chars() {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

fn build_metafields(state: &mut ShopState, list: &[Json], now: DateTime<Utc>) -> Vec<Metafield> {
    list.iter()
        .map(|m| Metafield {
            id: state.allocate_id(),
            namespace: text(m, "namespace").unwrap_or_else(|| "custom".into()),
            key: text(m, "key").unwrap_or_default(),
            value: text(m, "value").unwrap_or_default(),
            kind: text(m, "type").unwrap_or_else(|| "single_line_text_field".into()),
            updated_at: now,
        })
        .collect()
}

/// The input list replaces the old one; a metafield with the same namespace and key keeps
/// its id.
fn merge_metafields(old: &[Metafield], new: Vec<Metafield>) -> Vec<Metafield> {
    new.into_iter()
        .map(|mut m| {
            if let Some(previous) = old.iter().find(|o| o.namespace == m.namespace && o.key == m.key) {
                m.id = previous.id;
                if previous.value == m.value && previous.kind == m.kind {
                    m.updated_at = previous.updated_at;
                }
            }
            m
        })
        .collect()
}

const INVENTORY_REASONS: [&str; 14] = [
    "correction",
    "cycle_count_available",
    "damaged",
    "movement_created",
    "movement_updated",
    "movement_received",
    "movement_canceled",
    "other",
    "promotion",
    "quality_control",
    "received",
    "reservation_created",
    "restock",
    "safety_stock",
];

fn inventory_payload(
    changes: Vec<Json>,
    ctx: &MutationContext,
    reason: &str,
    reference: Option<String>,
    id: u64,
    user_errors: Vec<Json>,
) -> Resolved {
    let group = if user_errors.is_empty() {
        Resolved::Value(json!({
            "id": gid("InventoryAdjustmentGroup", id),
            "createdAt": super::exec::timestamp(ctx.now),
            "reason": reason,
            "referenceDocumentUri": reference,
            "changes": changes,
        }))
    } else {
        Resolved::Null
    };
    payload(vec![("inventoryAdjustmentGroup", group), ("userErrors", errors(user_errors))])
}

/// `inventorySetQuantities`: absolute quantities with compare-and-swap. From 2026-04 each row
/// carries `changeFromQuantity` (explicit `null` opts out); before, `compareQuantity` plus
/// `ignoreCompareQuantity`. All rows apply or none.
fn inventory_set_quantities(
    state: &mut ShopState,
    ctx: &mut MutationContext,
    field: &ResolvedField,
) -> Result<MutationOutcome, String> {
    let input = field.argument("input").cloned().unwrap_or(Json::Null);
    let new_api = version_at_least(ctx.version, "2026-04");
    let name = text(&input, "name").unwrap_or_default();
    let reason = text(&input, "reason").unwrap_or_default();
    let reference = text(&input, "referenceDocumentUri");
    let ignore_compare = input.get("ignoreCompareQuantity").and_then(Json::as_bool).unwrap_or(false);
    let quantities = input.get("quantities").and_then(Json::as_array).cloned().unwrap_or_default();
    if quantities.len() > MAX_INPUT_ITEMS {
        return Err(format!(
            "The input array size of {} is greater than the maximum allowed of {MAX_INPUT_ITEMS}.",
            quantities.len()
        ));
    }
    if new_api && let Some(n) = quantities.iter().position(|q| q.get("changeFromQuantity").is_none()) {
        return Err(format!(
            "Variable input.quantities.{n}.changeFromQuantity is required: pass the quantity you expect to change from, or null to skip the check"
        ));
    }
    let mut user_errors = Vec::new();
    if name != "available" && name != "on_hand" {
        user_errors.push(user_error(
            &["input", "name"],
            "The quantity name must be either 'available' or 'on_hand'.",
            Some("INVALID_NAME"),
        ));
    }
    if !INVENTORY_REASONS.contains(&reason.as_str()) {
        user_errors.push(user_error(&["input", "reason"], "The specified reason is invalid.", Some("INVALID_REASON")));
    }
    let mut rows = Vec::new();
    let mut seen = HashSet::new();
    for (n, quantity) in quantities.iter().enumerate() {
        let index = n.to_string();
        let path = |leaf: &'static str| vec!["input", "quantities", index.as_str(), leaf];
        let item = text(quantity, "inventoryItemId")
            .and_then(|s| parse_gid(&s, "InventoryItem"))
            .filter(|i| state.inventory_items.contains_key(i));
        let location = text(quantity, "locationId")
            .and_then(|s| parse_gid(&s, "Location"))
            .filter(|l| state.locations.contains_key(l));
        let (Some(item), Some(location)) = (item, location) else {
            if item.is_none() {
                user_errors.push(user_error(
                    &path("inventoryItemId"),
                    "The specified inventory item could not be found.",
                    Some("INVALID_INVENTORY_ITEM"),
                ));
            }
            if location.is_none() {
                user_errors.push(user_error(
                    &path("locationId"),
                    "The specified location could not be found.",
                    Some("INVALID_LOCATION"),
                ));
            }
            continue;
        };
        if !seen.insert((item, location)) {
            user_errors.push(user_error(
                &path("inventoryItemId"),
                "The combination of inventoryItemId and locationId must be unique.",
                Some("NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR"),
            ));
        }
        let Some(level) = state.inventory_levels.get(&(item, location)) else {
            user_errors.push(user_error(
                &path("locationId"),
                "The specified inventory item is not stocked at the location.",
                Some("ITEM_NOT_STOCKED_AT_LOCATION"),
            ));
            continue;
        };
        let Some(target) = quantity.get("quantity").and_then(Json::as_i64) else {
            user_errors.push(user_error(&path("quantity"), "Quantity is required", Some("INVALID_QUANTITY_TOO_LOW")));
            continue;
        };
        let current = level.quantity(&name);
        if new_api {
            if let Some(expected) = quantity.get("changeFromQuantity").filter(|v| !v.is_null())
                && expected.as_i64() != Some(current)
            {
                user_errors.push(user_error(
                    &path("changeFromQuantity"),
                    "The specified compare quantity is stale.".to_string(),
                    Some("CHANGE_FROM_QUANTITY_STALE"),
                ));
            }
        } else if !ignore_compare {
            let expected = quantity.get("compareQuantity").and_then(Json::as_i64);
            if expected != Some(current) {
                user_errors.push(user_error(
                    &path("compareQuantity"),
                    "The specified compare quantity does not match the current quantity.",
                    Some("COMPARE_QUANTITY_STALE"),
                ));
            }
        }
        rows.push((item, location, target));
    }
    let group_id = state.allocate_id();
    if !user_errors.is_empty() {
        return outcome(inventory_payload(vec![], ctx, &reason, reference, group_id, user_errors), vec![]);
    }
    let mut changes = Vec::new();
    let mut effects = Vec::new();
    for (item, location, target) in rows {
        let Some(level) = state.inventory_levels.get_mut(&(item, location)) else { continue };
        let delta = level.set(&name, target, ctx.now);
        for changed in [name.as_str(), if name == "available" { "on_hand" } else { "available" }] {
            changes.push(json!({
                "name": changed, "delta": delta, "quantityAfterChange": level.quantity(changed),
                "item": {"id": gid("InventoryItem", item)}, "location": {"id": gid("Location", location)},
            }));
        }
        effects.push(Effect::Webhook {
            topic: "inventory_levels/update".into(),
            payload: rest_inventory_level(state, item, location),
        });
    }
    outcome(inventory_payload(changes, ctx, &reason, reference, group_id, vec![]), effects)
}

fn inventory_adjust_quantities(
    state: &mut ShopState,
    ctx: &mut MutationContext,
    field: &ResolvedField,
) -> Result<MutationOutcome, String> {
    let input = field.argument("input").cloned().unwrap_or(Json::Null);
    let name = text(&input, "name").unwrap_or_default();
    let reason = text(&input, "reason").unwrap_or_default();
    let reference = text(&input, "referenceDocumentUri");
    let changes_in = input.get("changes").and_then(Json::as_array).cloned().unwrap_or_default();
    if changes_in.len() > MAX_INPUT_ITEMS {
        return Err(format!(
            "The input array size of {} is greater than the maximum allowed of {MAX_INPUT_ITEMS}.",
            changes_in.len()
        ));
    }
    let mut user_errors = Vec::new();
    if !INVENTORY_REASONS.contains(&reason.as_str()) {
        user_errors.push(user_error(&["input", "reason"], "The specified reason is invalid.", Some("INVALID_REASON")));
    }
    let mut rows = Vec::new();
    for (n, change) in changes_in.iter().enumerate() {
        let index = n.to_string();
        let item = text(change, "inventoryItemId").and_then(|s| parse_gid(&s, "InventoryItem"));
        let location = text(change, "locationId").and_then(|s| parse_gid(&s, "Location"));
        match (item, location) {
            (Some(i), Some(l)) if state.inventory_levels.contains_key(&(i, l)) => {
                rows.push((i, l, change.get("delta").and_then(Json::as_i64).unwrap_or(0)))
            }
            _ => user_errors.push(user_error(
                &["input", "changes", &index, "inventoryItemId"],
                "The specified inventory item is not stocked at the location.",
                Some("ITEM_NOT_STOCKED_AT_LOCATION"),
            )),
        }
    }
    let group_id = state.allocate_id();
    if !user_errors.is_empty() {
        return outcome(inventory_payload(vec![], ctx, &reason, reference, group_id, user_errors), vec![]);
    }
    let mut changes = Vec::new();
    let mut effects = Vec::new();
    for (item, location, delta) in rows {
        let Some(level) = state.inventory_levels.get_mut(&(item, location)) else { continue };
        let target = level.quantity(&name) + delta;
        level.set(&name, target, ctx.now);
        changes.push(json!({
            "name": name, "delta": delta, "quantityAfterChange": level.quantity(&name),
            "item": {"id": gid("InventoryItem", item)}, "location": {"id": gid("Location", location)},
        }));
        effects.push(Effect::Webhook {
            topic: "inventory_levels/update".into(),
            payload: rest_inventory_level(state, item, location),
        });
    }
    outcome(inventory_payload(changes, ctx, &reason, reference, group_id, vec![]), effects)
}

fn customer_upsert(
    state: &mut ShopState,
    ctx: &mut MutationContext,
    field: &ResolvedField,
) -> Result<MutationOutcome, String> {
    let input = field.argument("input").cloned().unwrap_or(Json::Null);
    let update = field.name == "customerUpdate";
    let id = text(&input, "id").and_then(|s| parse_gid(&s, "Customer"));
    let fail = |user_errors: Vec<Json>| {
        outcome(payload(vec![("customer", Resolved::Null), ("userErrors", errors(user_errors))]), vec![])
    };
    if update && id.is_none_or(|id| !state.customers.contains_key(&id)) {
        return fail(vec![user_error(&["id"], "Customer does not exist", None)]);
    }
    let email = text(&input, "email");
    if let Some(email) = &email {
        if !email.contains('@') {
            return fail(vec![user_error(&["email"], "Email is invalid", None)]);
        }
        if state.customers.values().any(|c| c.email.as_deref() == Some(email) && Some(c.id) != id) {
            return fail(vec![user_error(&["email"], "Email has already been taken", None)]);
        }
    }
    if !update
        && email.is_none()
        && text(&input, "phone").is_none()
        && text(&input, "lastName").is_none()
        && text(&input, "firstName").is_none()
    {
        return fail(vec![user_error(&["customer"], "A name, phone number, or email address must be present", None)]);
    }
    let now = ctx.now;
    let customer_id = match id.filter(|_| update) {
        Some(id) => id,
        None => {
            let id = state.allocate_id();
            state.customers.insert(
                id,
                Customer {
                    id,
                    email: None,
                    phone: None,
                    first_name: None,
                    last_name: None,
                    tags: vec![],
                    addresses: vec![],
                    state: "DISABLED".into(),
                    metafields: vec![],
                    created_at: now,
                    updated_at: now,
                },
            );
            id
        }
    };
    let address_ids: Vec<u64> = input
        .get("addresses")
        .and_then(Json::as_array)
        .map(|a| a.iter().map(|_| state.allocate_id()).collect())
        .unwrap_or_default();
    if let Some(customer) = state.customers.get_mut(&customer_id) {
        if email.is_some() {
            customer.email = email;
        }
        if let Some(phone) = text(&input, "phone") {
            customer.phone = Some(phone);
        }
        if let Some(first) = text(&input, "firstName") {
            customer.first_name = Some(first);
        }
        if let Some(last) = text(&input, "lastName") {
            customer.last_name = Some(last);
        }
        if let Some(tags) = strings(&input, "tags") {
            customer.tags = tags;
        }
        if let Some(addresses) = input.get("addresses").and_then(Json::as_array) {
            customer.addresses = addresses
                .iter()
                .zip(address_ids)
                .map(|(a, id)| {
                    let mut address = a.clone();
                    address["id"] = json!(id);
                    if let Some(code) = a.get("countryCode") {
                        address["countryCodeV2"] = code.clone();
                    }
                    address
                })
                .collect();
        }
        customer.updated_at = now;
    }
    let topic = if update { "customers/update" } else { "customers/create" };
    outcome(
        payload(vec![("customer", Resolved::Object(Obj::Customer(customer_id))), ("userErrors", errors(vec![]))]),
        vec![Effect::Webhook { topic: topic.into(), payload: rest_customer(state, customer_id) }],
    )
}

fn fulfillment_create(
    state: &mut ShopState,
    ctx: &mut MutationContext,
    field: &ResolvedField,
) -> Result<MutationOutcome, String> {
    let input = field.argument("fulfillment").cloned().unwrap_or(Json::Null);
    let fail = |message: String, path: &[&str]| {
        outcome(
            payload(vec![
                ("fulfillment", Resolved::Null),
                ("userErrors", errors(vec![user_error(path, message, None)])),
            ]),
            vec![],
        )
    };
    let groups = input.get("lineItemsByFulfillmentOrder").and_then(Json::as_array).cloned().unwrap_or_default();
    if groups.is_empty() {
        return fail(
            "Line items by fulfillment order must not be empty".into(),
            &["fulfillment", "lineItemsByFulfillmentOrder"],
        );
    }
    let mut order_id = None;
    let mut location_id = None;
    // (fulfillment order, line index, quantity)
    let mut picks: Vec<(u64, usize, i64)> = Vec::new();
    for group in &groups {
        let fo_id = text(group, "fulfillmentOrderId").and_then(|s| parse_gid(&s, "FulfillmentOrder"));
        let Some(fo) = fo_id.and_then(|id| state.fulfillment_orders.get(&id)) else {
            return fail("Fulfillment order does not exist.".into(), &["fulfillment"]);
        };
        if !matches!(fo.status.as_str(), "OPEN" | "IN_PROGRESS") {
            return fail(
                format!("Fulfillment order {} has an unfulfillable status= {}.", fo.id, fo.status.to_lowercase()),
                &["fulfillment"],
            );
        }
        if order_id.is_some_and(|o| o != fo.order_id) || location_id.is_some_and(|l| l != fo.location_id) {
            return fail(
                "All fulfillment orders must belong to the same order and be assigned to the same location.".into(),
                &["fulfillment"],
            );
        }
        order_id = Some(fo.order_id);
        location_id = Some(fo.location_id);
        let lines = group.get("fulfillmentOrderLineItems").and_then(Json::as_array).cloned().unwrap_or_default();
        if lines.is_empty() {
            // An empty list fulfils everything that remains on the fulfillment order.
            picks.extend(
                fo.lines
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.remaining_quantity > 0)
                    .map(|(n, l)| (fo.id, n, l.remaining_quantity)),
            );
            continue;
        }
        for line in lines {
            let line_id = text(&line, "id").and_then(|s| parse_gid(&s, "FulfillmentOrderLineItem"));
            let quantity = line.get("quantity").and_then(Json::as_i64).unwrap_or(0);
            let Some(index) = line_id.and_then(|id| fo.lines.iter().position(|l| l.id == id)) else {
                return fail("Fulfillment order line item does not exist.".into(), &["fulfillment"]);
            };
            if quantity <= 0 || quantity > fo.lines[index].remaining_quantity {
                return fail(
                    format!(
                        "Invalid fulfillment order line item quantity requested: {quantity} (remaining {}).",
                        fo.lines[index].remaining_quantity
                    ),
                    &["fulfillment"],
                );
            }
            picks.push((fo.id, index, quantity));
        }
    }
    let Some(order_id) = order_id else { return fail("Fulfillment order does not exist.".into(), &["fulfillment"]) };
    let now = ctx.now;
    let mut fulfilled_lines = Vec::new();
    for (fo_id, index, quantity) in &picks {
        if let Some(fo) = state.fulfillment_orders.get_mut(fo_id) {
            fo.lines[*index].remaining_quantity -= quantity;
            fulfilled_lines.push((fo.lines[*index].line_item_id, *quantity));
            fo.status =
                if fo.lines.iter().all(|l| l.remaining_quantity == 0) { "CLOSED".into() } else { "IN_PROGRESS".into() };
            fo.updated_at = now;
        }
    }
    let tracking = input.get("trackingInfo").cloned().unwrap_or(Json::Null);
    let mut numbers: Vec<String> = strings(&tracking, "numbers").unwrap_or_default();
    if let Some(number) = text(&tracking, "number") {
        numbers.insert(0, number);
    }
    let mut urls: Vec<String> = strings(&tracking, "urls").unwrap_or_default();
    if let Some(url) = text(&tracking, "url") {
        urls.insert(0, url);
    }
    let company = text(&tracking, "company");
    let tracking_info: Vec<Json> = numbers
        .iter()
        .enumerate()
        .map(|(n, number)| json!({"company": company, "number": number, "url": urls.get(n)}))
        .collect();
    let fulfillment_id = state.allocate_id();
    let remaining: i64 = {
        let order = &state.orders[&order_id];
        order
            .fulfillment_order_ids
            .iter()
            .filter_map(|f| state.fulfillment_orders.get(f))
            .flat_map(|f| f.lines.iter())
            .map(|l| l.remaining_quantity)
            .sum()
    };
    let Some(order) = state.orders.get_mut(&order_id) else { return Err("internal error: order vanished".into()) };
    order.fulfillments.push(Fulfillment {
        id: fulfillment_id,
        status: "SUCCESS".into(),
        tracking: tracking_info,
        line_items: fulfilled_lines,
        created_at: now,
    });
    order.fulfillment_status = if remaining == 0 { "FULFILLED".into() } else { "PARTIALLY_FULFILLED".into() };
    order.updated_at = now;
    let index = order.fulfillments.len() - 1;
    let order_payload = rest_order(state, order_id);
    let fulfillment_payload = json!({"id": fulfillment_id, "order_id": order_id, "status": "success", "admin_graphql_api_id": gid("Fulfillment", fulfillment_id)});
    outcome(
        payload(vec![
            ("fulfillment", Resolved::Object(Obj::Fulfillment(order_id, index))),
            ("userErrors", errors(vec![])),
        ]),
        vec![
            Effect::Webhook { topic: "fulfillments/create".into(), payload: fulfillment_payload },
            Effect::Webhook { topic: "orders/updated".into(), payload: order_payload },
        ],
    )
}

fn refund_create(
    state: &mut ShopState,
    ctx: &mut MutationContext,
    field: &ResolvedField,
) -> Result<MutationOutcome, String> {
    let input = field.argument("input").cloned().unwrap_or(Json::Null);
    let fail = |message: &str, path: &[&str]| {
        outcome(
            payload(vec![
                ("refund", Resolved::Null),
                ("order", Resolved::Null),
                ("userErrors", errors(vec![user_error(path, message, None)])),
            ]),
            vec![],
        )
    };
    let Some(order_id) =
        text(&input, "orderId").and_then(|s| parse_gid(&s, "Order")).filter(|o| state.orders.contains_key(o))
    else {
        return fail("Order does not exist", &["orderId"]);
    };
    let order = &state.orders[&order_id];
    let mut lines = Vec::new();
    for (n, line) in input.get("refundLineItems").and_then(Json::as_array).into_iter().flatten().enumerate() {
        let line_id = text(line, "lineItemId").and_then(|s| parse_gid(&s, "LineItem"));
        let quantity = line.get("quantity").and_then(Json::as_i64).unwrap_or(0);
        let Some(index) = line_id.and_then(|id| order.line_items.iter().position(|l| l.id == id)) else {
            return fail("Line item does not exist", &["refundLineItems", &n.to_string(), "lineItemId"]);
        };
        let item = &order.line_items[index];
        if quantity <= 0 || quantity > item.quantity - item.refunded_quantity {
            return fail(
                "Quantity cannot refund more items than were purchased",
                &["refundLineItems", &n.to_string(), "quantity"],
            );
        }
        let restock = text(line, "restockType").unwrap_or_else(|| "NO_RESTOCK".into());
        let location = text(line, "locationId").and_then(|s| parse_gid(&s, "Location"));
        lines.push((index, item.id, quantity, restock, location, item.variant_id));
    }
    let mut amount = 0i64;
    for (n, transaction) in input.get("transactions").and_then(Json::as_array).into_iter().flatten().enumerate() {
        match transaction.get("amount").and_then(parse_cents) {
            Some(cents) if cents >= 0 => amount += cents,
            _ => return fail("Amount is invalid", &["transactions", &n.to_string(), "amount"]),
        }
    }
    if amount > order.total_cents() - order.refunded_cents() {
        return fail("Refund amount exceeds the refundable amount", &["transactions"]);
    }
    let now = ctx.now;
    let mut effects = Vec::new();
    for (_, _, quantity, restock, location, variant) in &lines {
        if matches!(restock.as_str(), "RETURN" | "CANCEL")
            && let (Some(location), Some(variant)) = (location, variant.and_then(|v| state.variants.get(&v)))
        {
            let item = variant.inventory_item_id;
            if let Some(level) = state.inventory_levels.get_mut(&(item, *location)) {
                let target = level.quantity("available") + quantity;
                level.set("available", target, now);
                effects.push(Effect::Webhook {
                    topic: "inventory_levels/update".into(),
                    payload: rest_inventory_level(state, item, *location),
                });
            }
        }
    }
    let refund_id = state.allocate_id();
    let transaction_id = state.allocate_id();
    let Some(order) = state.orders.get_mut(&order_id) else { return Err("internal error: order vanished".into()) };
    for (index, _, quantity, ..) in &lines {
        order.line_items[*index].refunded_quantity += quantity;
    }
    order.refunds.push(Refund {
        id: refund_id,
        note: text(&input, "note"),
        line_items: lines.iter().map(|(_, id, quantity, restock, ..)| (*id, *quantity, restock.clone())).collect(),
        amount_cents: amount,
        created_at: now,
    });
    if amount > 0 {
        order.transactions.push(json!({"id": transaction_id, "kind": "REFUND", "status": "SUCCESS", "gateway": "manual", "amount_cents": amount, "created_at": super::exec::timestamp(now)}));
        order.financial_status =
            if order.refunded_cents() >= order.total_cents() { "REFUNDED".into() } else { "PARTIALLY_REFUNDED".into() };
    }
    order.updated_at = now;
    let index = order.refunds.len() - 1;
    effects.insert(
        0,
        Effect::Webhook {
            topic: "refunds/create".into(),
            payload: json!({"id": refund_id, "order_id": order_id, "admin_graphql_api_id": gid("Refund", refund_id)}),
        },
    );
    effects.push(Effect::Webhook { topic: "orders/updated".into(), payload: rest_order(state, order_id) });
    outcome(
        payload(vec![
            ("refund", Resolved::Object(Obj::Refund(order_id, index))),
            ("order", Resolved::Object(Obj::Order(order_id))),
            ("userErrors", errors(vec![])),
        ]),
        effects,
    )
}

fn price_list_create(state: &mut ShopState, field: &ResolvedField) -> Result<MutationOutcome, String> {
    let input = field.argument("input").cloned().unwrap_or(Json::Null);
    let Some(name) = text(&input, "name") else {
        return outcome(
            payload(vec![
                ("priceList", Resolved::Null),
                ("userErrors", errors(vec![user_error(&["input", "name"], "Name can't be blank", Some("BLANK"))])),
            ]),
            vec![],
        );
    };
    let id = state.allocate_id();
    state.price_lists.insert(
        id,
        PriceList {
            id,
            name,
            currency: text(&input, "currency").unwrap_or_else(|| "EUR".into()),
            fixed_prices: BTreeMap::new(),
        },
    );
    outcome(payload(vec![("priceList", Resolved::Object(Obj::PriceList(id))), ("userErrors", errors(vec![]))]), vec![])
}

/// `priceListFixedPricesAdd`: B2B fixed prices per variant.
fn price_list_fixed_prices_add(
    state: &mut ShopState,
    ctx: &mut MutationContext,
    field: &ResolvedField,
) -> Result<MutationOutcome, String> {
    let list_id = field.argument("priceListId").and_then(Json::as_str).and_then(|s| parse_gid(s, "PriceList"));
    let prices = field.argument("prices").and_then(Json::as_array).cloned().unwrap_or_default();
    if prices.len() > MAX_INPUT_ITEMS {
        return Err(format!(
            "The input array size of {} is greater than the maximum allowed of {MAX_INPUT_ITEMS}.",
            prices.len()
        ));
    }
    let Some(list) = list_id.and_then(|id| state.price_lists.get(&id)) else {
        return outcome(
            payload(vec![
                ("prices", Resolved::Null),
                (
                    "userErrors",
                    errors(vec![user_error(
                        &["priceListId"],
                        "The specified price list doesn't exist.",
                        Some("PRICE_LIST_NOT_FOUND"),
                    )]),
                ),
            ]),
            vec![],
        );
    };
    let currency = list.currency.clone();
    let list_id = list.id;
    let mut user_errors = Vec::new();
    let mut accepted = Vec::new();
    for (n, price) in prices.iter().enumerate() {
        let index = n.to_string();
        let variant = text(price, "variantId")
            .and_then(|s| parse_gid(&s, "ProductVariant"))
            .filter(|v| state.variants.contains_key(v));
        let amount = price.get("price").and_then(|p| p.get("amount")).and_then(parse_cents);
        let price_currency = price.get("price").and_then(|p| text(p, "currencyCode"));
        let compare = price.get("compareAtPrice").and_then(|p| p.get("amount")).and_then(parse_cents);
        if ctx.partial_failure_rate > 0.0 && ctx.rng.random_bool(ctx.partial_failure_rate.min(1.0)) {
            user_errors.push(user_error(
                &["prices", &index, "variantId"],
                "Simulated failure for this item",
                Some("INTERNAL_ERROR"),
            ));
            continue;
        }
        match (variant, amount) {
            (None, _) => user_errors.push(user_error(
                &["prices", &index, "variantId"],
                "Variant not found.",
                Some("VARIANT_NOT_FOUND"),
            )),
            (_, None) => user_errors.push(user_error(
                &["prices", &index, "price", "amount"],
                "Price is invalid.",
                Some("INVALID_INPUT"),
            )),
            (Some(_), Some(_)) if price_currency.as_deref().is_some_and(|c| c != currency) => {
                user_errors.push(user_error(
                    &["prices", &index, "price", "currencyCode"],
                    "The specified currency doesn't match the price list's currency.",
                    Some("PRICES_TO_ADD_CURRENCY_MISMATCH"),
                ))
            }
            (Some(v), Some(a)) => accepted.push((v, a, compare)),
        }
    }
    if let Some(list) = state.price_lists.get_mut(&list_id) {
        for (variant, price, compare) in &accepted {
            list.fixed_prices.insert(*variant, (*price, *compare));
        }
    }
    let rendered = accepted
        .iter()
        .map(|(variant, price, compare)| {
            Resolved::Object(Obj::Fields(vec![
                ("price".into(), Resolved::Value(super::exec::money(*price, &currency))),
                (
                    "compareAtPrice".into(),
                    Resolved::Value(compare.map_or(Json::Null, |c| super::exec::money(c, &currency))),
                ),
                ("variant".into(), Resolved::Object(Obj::Variant(*variant))),
            ]))
        })
        .collect();
    outcome(payload(vec![("prices", Resolved::List(rendered)), ("userErrors", errors(user_errors))]), vec![])
}

/// The REST topic (`orders/create`) of a GraphQL enum (`ORDERS_CREATE`).
pub fn topic_from_enum(topic: &str) -> Option<String> {
    let lower = topic.to_ascii_lowercase();
    for resource in [
        "bulk_operations",
        "inventory_levels",
        "inventory_items",
        "fulfillment_orders",
        "fulfillments",
        "products",
        "orders",
        "customers",
        "refunds",
        "app",
    ] {
        if let Some(rest) = lower.strip_prefix(resource).and_then(|r| r.strip_prefix('_')) {
            return Some(format!("{resource}/{rest}"));
        }
    }
    None
}

fn webhook_subscription_create(
    state: &mut ShopState,
    ctx: &mut MutationContext,
    field: &ResolvedField,
) -> Result<MutationOutcome, String> {
    let topic = field.argument("topic").and_then(Json::as_str).unwrap_or("").to_string();
    let input = field.argument("webhookSubscription").cloned().unwrap_or(Json::Null);
    let url = text(&input, "callbackUrl").or_else(|| text(&input, "uri")).unwrap_or_default();
    let fail = |path: &[&str], message: &str| {
        outcome(
            payload(vec![
                ("webhookSubscription", Resolved::Null),
                ("userErrors", errors(vec![user_error(path, message, None)])),
            ]),
            vec![],
        )
    };
    if topic_from_enum(&topic).is_none() {
        return Err(format!(
            "Argument 'topic' on Field 'webhookSubscriptionCreate' has an invalid value ({topic}). Expected type 'WebhookSubscriptionTopic!'."
        ));
    }
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return fail(&["webhookSubscription", "callbackUrl"], "Address is invalid");
    }
    if state.webhook_subscriptions.values().any(|s| s.topic == topic && s.callback_url == url) {
        return fail(&["webhookSubscription", "callbackUrl"], "Address for this topic has already been taken");
    }
    let id = state.allocate_id();
    state.webhook_subscriptions.insert(
        id,
        WebhookSubscription {
            id,
            topic,
            callback_url: url,
            format: text(&input, "format").unwrap_or_else(|| "JSON".into()),
            include_fields: strings(&input, "includeFields").unwrap_or_default(),
            created_at: ctx.now,
            updated_at: ctx.now,
        },
    );
    outcome(
        payload(vec![
            ("webhookSubscription", Resolved::Object(Obj::WebhookSubscription(id))),
            ("userErrors", errors(vec![])),
        ]),
        vec![],
    )
}

fn webhook_subscription_delete(state: &mut ShopState, field: &ResolvedField) -> Result<MutationOutcome, String> {
    let id = field.argument("id").and_then(Json::as_str).and_then(|s| parse_gid(s, "WebhookSubscription"));
    match id.and_then(|id| state.webhook_subscriptions.remove(&id)) {
        Some(s) => outcome(
            payload(vec![
                ("deletedWebhookSubscriptionId", Resolved::Value(json!(gid("WebhookSubscription", s.id)))),
                ("userErrors", errors(vec![])),
            ]),
            vec![],
        ),
        None => outcome(
            payload(vec![
                ("deletedWebhookSubscriptionId", Resolved::Null),
                ("userErrors", errors(vec![user_error(&["id"], "Webhook subscription does not exist", None)])),
            ]),
            vec![],
        ),
    }
}

fn staged_uploads_create(
    state: &mut ShopState,
    ctx: &mut MutationContext,
    field: &ResolvedField,
) -> Result<MutationOutcome, String> {
    let inputs = field.argument("input").and_then(Json::as_array).cloned().unwrap_or_default();
    let mut targets = Vec::new();
    let mut user_errors = Vec::new();
    for (n, input) in inputs.iter().enumerate() {
        let resource = text(input, "resource").unwrap_or_default();
        let filename = text(input, "filename").unwrap_or_else(|| "upload".into());
        if resource != "BULK_MUTATION_VARIABLES" {
            user_errors.push(user_error(
                &["input", &n.to_string(), "resource"],
                "Only BULK_MUTATION_VARIABLES uploads are simulated",
                None,
            ));
            continue;
        }
        let key = format!("tmp/sim/bulk/{}/{}", state.allocate_id(), filename);
        targets.push(json!({
            "url": format!("{}/_sim/staged-uploads", ctx.base_url),
            "resourceUrl": Json::Null,
            "parameters": [
                {"name": "key", "value": key},
                {"name": "Content-Type", "value": text(input, "mimeType").unwrap_or_else(|| "text/jsonl".into())},
                {"name": "success_action_status", "value": "201"},
                {"name": "acl", "value": "private"},
            ],
        }));
    }
    outcome(
        payload(vec![("stagedTargets", Resolved::Value(Json::Array(targets))), ("userErrors", errors(user_errors))]),
        vec![],
    )
}

fn bulk_fail(code: &str, message: &str, path: &[&str]) -> Result<MutationOutcome, String> {
    outcome(
        payload(vec![
            ("bulkOperation", Resolved::Null),
            ("userErrors", errors(vec![user_error(path, message, Some(code))])),
        ]),
        vec![],
    )
}

fn running(state: &ShopState, kind: &str) -> Vec<u64> {
    state
        .bulk_operations
        .values()
        .filter(|b| b.kind == kind && matches!(b.status.as_str(), "CREATED" | "RUNNING"))
        .map(|b| b.id)
        .collect()
}

fn bulk_operation_run_query(
    state: &mut ShopState,
    ctx: &mut MutationContext,
    field: &ResolvedField,
) -> Result<MutationOutcome, String> {
    let query = field.argument("query").and_then(Json::as_str).unwrap_or("").to_string();
    if let Some(id) = running(state, "QUERY").first() {
        return bulk_fail(
            "OPERATION_IN_PROGRESS",
            &format!(
                "A bulk query operation for this app and shop is already in progress: {}.",
                gid("BulkOperation", *id)
            ),
            &["query"],
        );
    }
    match super::graphql::parse(&query).and_then(|d| super::graphql::prepare(&d, None, &Map::new())) {
        Ok(prepared) if prepared.kind == OperationKind::Query => {}
        Ok(_) => return bulk_fail("INVALID", "Bulk queries must be queries", &["query"]),
        Err(error) => return bulk_fail("INVALID", &format!("Invalid bulk query: {}", error.message), &["query"]),
    }
    let id = new_bulk(state, ctx, "QUERY", query);
    outcome(
        payload(vec![("bulkOperation", Resolved::Object(Obj::BulkOperation(id))), ("userErrors", errors(vec![]))]),
        vec![Effect::RunBulkQuery(id)],
    )
}

fn new_bulk(state: &mut ShopState, ctx: &MutationContext, kind: &str, query: String) -> u64 {
    let id = state.allocate_id();
    state.bulk_operations.insert(
        id,
        BulkOperation {
            id,
            kind: kind.into(),
            status: "CREATED".into(),
            error_code: None,
            query,
            object_count: 0,
            root_object_count: 0,
            file_size: None,
            created_at: ctx.now,
            completed_at: None,
            result: None,
        },
    );
    id
}

fn bulk_operation_run_mutation(
    state: &mut ShopState,
    ctx: &mut MutationContext,
    field: &ResolvedField,
) -> Result<MutationOutcome, String> {
    let mutation = field.argument("mutation").and_then(Json::as_str).unwrap_or("").to_string();
    let path = field.argument("stagedUploadPath").and_then(Json::as_str).unwrap_or("").to_string();
    let in_progress = running(state, "MUTATION");
    // Before 2026-01 one bulk mutation at a time per shop; from 2026-01 up to five.
    let limit = if version_at_least(ctx.version, "2026-01") { 5 } else { 1 };
    if in_progress.len() >= limit {
        let code = if limit > 1 { "LIMIT_REACHED" } else { "OPERATION_IN_PROGRESS" };
        return bulk_fail(
            code,
            &format!(
                "A bulk mutation operation for this app and shop is already in progress: {}.",
                gid("BulkOperation", in_progress[0])
            ),
            &["mutation"],
        );
    }
    match super::graphql::parse(&mutation) {
        Ok(document)
            if document.operations.len() == 1
                && document.operations[0].kind == OperationKind::Mutation
                && document.operations[0].selection_set.len() == 1 => {}
        _ => {
            return bulk_fail(
                "INVALID_MUTATION",
                "Invalid mutation: a bulk mutation must contain exactly one mutation field",
                &["mutation"],
            );
        }
    }
    let Some(upload) = state.staged_uploads.get(&path) else {
        return bulk_fail(
            "NO_SUCH_FILE",
            &format!(
                "The JSONL file could not be found at {path}. Try uploading the file again, and check that you've entered the URL correctly for the stagedUploadPath mutation argument."
            ),
            &["stagedUploadPath"],
        );
    };
    if upload.len() > MAX_STAGED_UPLOAD_BYTES || std::str::from_utf8(upload).is_err() {
        return bulk_fail("INVALID_STAGED_UPLOAD_FILE", "The staged upload file is invalid", &["stagedUploadPath"]);
    }
    let id = new_bulk(state, ctx, "MUTATION", mutation);
    if let Some(operation) = state.bulk_operations.get_mut(&id) {
        // Until the job runs, `result` holds the staged upload path it reads.
        operation.result = Some(path);
    }
    outcome(
        payload(vec![("bulkOperation", Resolved::Object(Obj::BulkOperation(id))), ("userErrors", errors(vec![]))]),
        vec![Effect::RunBulkMutation(id)],
    )
}

fn bulk_operation_cancel(
    state: &mut ShopState,
    ctx: &mut MutationContext,
    field: &ResolvedField,
) -> Result<MutationOutcome, String> {
    let id = field.argument("id").and_then(Json::as_str).and_then(|s| parse_gid(s, "BulkOperation"));
    let Some(operation) = id.and_then(|id| state.bulk_operations.get_mut(&id)) else {
        return bulk_fail("INVALID", "Bulk operation does not exist", &["id"]);
    };
    if !matches!(operation.status.as_str(), "CREATED" | "RUNNING") {
        let message = format!("A bulk operation cannot be canceled when it is {}", operation.status.to_lowercase());
        return bulk_fail("INVALID", &message, &["id"]);
    }
    operation.status = "CANCELED".into();
    operation.completed_at = Some(ctx.now);
    let id = operation.id;
    outcome(
        payload(vec![("bulkOperation", Resolved::Object(Obj::BulkOperation(id))), ("userErrors", errors(vec![]))]),
        vec![],
    )
}

/// `OrderCancelReason` values.
const CANCEL_REASONS: [&str; 6] = ["CUSTOMER", "DECLINED", "FRAUD", "INVENTORY", "OTHER", "STAFF"];

/// `productUpdate(product: ProductUpdateInput!)` (`input: ProductInput!` before 2024-10): the
/// scalar fields given are set, the others stay. The product's variants are untouched.
fn product_update(
    state: &mut ShopState,
    ctx: &mut MutationContext,
    field: &ResolvedField,
) -> Result<MutationOutcome, String> {
    let input = field
        .argument("product")
        .or_else(|| field.argument("input"))
        .cloned()
        .ok_or_else(|| "Field 'productUpdate' is missing required arguments: product".to_string())?;
    let fail = |path: &[&str], message: &str| {
        outcome(
            payload(vec![("product", Resolved::Null), ("userErrors", errors(vec![user_error(path, message, None)]))]),
            vec![],
        )
    };
    let status = text(&input, "status");
    if let Some(status) = &status
        && !matches!(status.as_str(), "ACTIVE" | "ARCHIVED" | "DRAFT")
    {
        return Err(format!(
            "Argument 'status' on InputObject 'ProductUpdateInput' has an invalid value ({status}). Expected type 'ProductStatus'."
        ));
    }
    let Some(id) =
        text(&input, "id").and_then(|s| parse_gid(&s, "Product")).filter(|id| state.products.contains_key(id))
    else {
        return fail(&["id"], "Product does not exist");
    };
    if let Some(title) = text(&input, "title")
        && title.trim().is_empty()
    {
        return fail(&["title"], "Title can't be blank");
    }
    let Some(product) = state.products.get_mut(&id) else { return Err("internal error: product vanished".into()) };
    if let Some(status) = status {
        product.status = status;
    }
    if let Some(title) = text(&input, "title") {
        product.title = title;
    }
    if let Some(vendor) = text(&input, "vendor") {
        product.vendor = vendor;
    }
    if let Some(product_type) = text(&input, "productType") {
        product.product_type = product_type;
    }
    if let Some(description) = text(&input, "descriptionHtml") {
        product.description_html = description;
    }
    if let Some(tags) = strings(&input, "tags") {
        product.tags = tags;
    }
    product.updated_at = ctx.now;
    outcome(
        payload(vec![("product", Resolved::Object(Obj::Product(id))), ("userErrors", errors(vec![]))]),
        vec![Effect::Webhook { topic: "products/update".into(), payload: rest_product(state, id) }],
    )
}

/// `orderCancel(orderId, reason, refundMethod | refund, restock, notifyCustomer, staffNote)`:
/// Shopify answers with a job that cancels asynchronously; the simulator applies the
/// cancellation at once and answers with the job not yet `done`. Refused (in
/// `orderCancelUserErrors`) for an unknown order and an order already cancelled.
fn order_cancel(
    state: &mut ShopState,
    ctx: &mut MutationContext,
    field: &ResolvedField,
) -> Result<MutationOutcome, String> {
    let missing: Vec<&str> = [
        ("orderId", field.argument("orderId").is_none()),
        ("reason", field.argument("reason").is_none()),
        ("restock", field.argument("restock").is_none()),
        ("refundMethod", field.argument("refundMethod").is_none() && field.argument("refund").is_none()),
    ]
    .into_iter()
    .filter_map(|(name, absent)| absent.then_some(name))
    .collect();
    if !missing.is_empty() {
        return Err(format!("Field 'orderCancel' is missing required arguments: {}", missing.join(", ")));
    }
    let reason = field.argument("reason").and_then(Json::as_str).unwrap_or("");
    if !CANCEL_REASONS.contains(&reason) {
        return Err(format!(
            "Argument 'reason' on Field 'orderCancel' has an invalid value ({reason}). Expected type 'OrderCancelReason!'."
        ));
    }
    let fail = |path: &[&str], message: &str, code: &str| {
        let error = user_error(path, message, Some(code));
        outcome(
            payload(vec![
                ("job", Resolved::Null),
                ("orderCancelUserErrors", errors(vec![error.clone()])),
                ("userErrors", errors(vec![json!({"field": error["field"], "message": error["message"]})])),
            ]),
            vec![],
        )
    };
    let order_id = field.argument("orderId").and_then(Json::as_str).and_then(|s| parse_gid(s, "Order"));
    let Some(order) = order_id.and_then(|id| state.orders.get_mut(&id)) else {
        return fail(&["orderId"], "Order does not exist", "NOT_FOUND");
    };
    if order.cancelled_at.is_some() {
        return fail(&["orderId"], "Order has already been cancelled", "INVALID");
    }
    let refund = field.argument("refund").and_then(Json::as_bool).unwrap_or(false)
        || field
            .argument("refundMethod")
            .and_then(|method| method.get("originalPaymentMethodsRefund"))
            .and_then(Json::as_bool)
            .unwrap_or(false);
    let now = ctx.now;
    order.cancelled_at = Some(now);
    order.cancel_reason = Some(reason.to_string());
    order.financial_status = match order.financial_status.as_str() {
        "PENDING" | "AUTHORIZED" => "VOIDED".into(),
        "PAID" | "PARTIALLY_PAID" | "PARTIALLY_REFUNDED" if refund => "REFUNDED".into(),
        other => other.to_string(),
    };
    if let Some(note) = field.argument("staffNote").and_then(Json::as_str) {
        order.note = Some(note.to_string());
    }
    order.updated_at = now;
    let id = order.id;
    let fulfillment_orders = order.fulfillment_order_ids.clone();
    for fo_id in fulfillment_orders {
        if let Some(fo) = state.fulfillment_orders.get_mut(&fo_id)
            && matches!(fo.status.as_str(), "OPEN" | "IN_PROGRESS" | "SCHEDULED" | "ON_HOLD")
        {
            fo.status = "CLOSED".into();
            fo.updated_at = now;
        }
    }
    let job_id = state.allocate_id();
    let order_payload = rest_order(state, id);
    outcome(
        payload(vec![
            ("job", Resolved::Value(json!({"id": gid("Job", job_id), "done": false}))),
            ("orderCancelUserErrors", errors(vec![])),
            ("userErrors", errors(vec![])),
        ]),
        vec![
            Effect::Webhook { topic: "orders/cancelled".into(), payload: order_payload.clone() },
            Effect::Webhook { topic: "orders/updated".into(), payload: order_payload },
        ],
    )
}

/// `orderClose(input: {id})`: marks the order as closed (archived). Closing a closed order
/// changes nothing.
fn order_close(
    state: &mut ShopState,
    ctx: &mut MutationContext,
    field: &ResolvedField,
) -> Result<MutationOutcome, String> {
    let input = field
        .argument("input")
        .cloned()
        .ok_or_else(|| "Field 'orderClose' is missing required arguments: input".to_string())?;
    let order_id = text(&input, "id").and_then(|s| parse_gid(&s, "Order"));
    let Some(order) = order_id.and_then(|id| state.orders.get_mut(&id)) else {
        return outcome(
            payload(vec![
                ("order", Resolved::Null),
                ("userErrors", errors(vec![user_error(&["id"], "Order does not exist", None)])),
            ]),
            vec![],
        );
    };
    let id = order.id;
    let mut effects = Vec::new();
    if order.closed_at.is_none() {
        order.closed_at = Some(ctx.now);
        order.updated_at = ctx.now;
        effects.push(Effect::Webhook { topic: "orders/updated".into(), payload: rest_order(state, id) });
    }
    outcome(payload(vec![("order", Resolved::Object(Obj::Order(id))), ("userErrors", errors(vec![]))]), effects)
}

/// At most this many metafields per `metafieldsSet` call.
pub const MAX_METAFIELDS_SET: usize = 25;

/// Metafield types the simulator checks values of; other valid type names are stored as given.
const METAFIELD_TYPES: [&str; 12] = [
    "single_line_text_field",
    "multi_line_text_field",
    "number_integer",
    "number_decimal",
    "boolean",
    "date",
    "date_time",
    "url",
    "json",
    "money",
    "rich_text_field",
    "color",
];

/// Why `value` is not a valid value of metafield `type`, if it is not.
fn metafield_value_problem(kind: &str, value: &str) -> Option<String> {
    let ok = match kind {
        "single_line_text_field" => !value.contains('\n'),
        "number_integer" => value.trim().parse::<i64>().is_ok(),
        "number_decimal" => {
            parse_cents(&json!(value)).is_some() || value.trim().parse::<f64>().is_ok_and(f64::is_finite)
        }
        "boolean" => matches!(value, "true" | "false"),
        "date" => chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok(),
        "date_time" => {
            DateTime::parse_from_rfc3339(value).is_ok()
                || chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S").is_ok()
        }
        "url" => {
            (value.starts_with("https://") || value.starts_with("http://"))
                && value.len() > "https://".len()
                && !value.contains(char::is_whitespace)
        }
        "json" | "rich_text_field" => serde_json::from_str::<Json>(value).is_ok(),
        "money" => serde_json::from_str::<Json>(value).ok().is_some_and(|money| {
            money.get("amount").is_some_and(|amount| parse_cents(amount).is_some())
                && money.get("currency_code").and_then(Json::as_str).is_some_and(|code| code.len() == 3)
        }),
        _ => true,
    };
    (!ok).then(|| format!("Value is invalid for the metafield type {kind}."))
}

/// `metafieldsSet(metafields: [MetafieldsSetInput!]!)`: creates or updates up to 25
/// metafields on their owners (products, variants, customers, orders). Atomic: one invalid
/// input and nothing is saved; each error names its element (`elementIndex`).
fn metafields_set(
    state: &mut ShopState,
    ctx: &mut MutationContext,
    field: &ResolvedField,
) -> Result<MutationOutcome, String> {
    let inputs = field
        .argument("metafields")
        .and_then(Json::as_array)
        .cloned()
        .ok_or_else(|| "Field 'metafieldsSet' is missing required arguments: metafields".to_string())?;
    let refuse = |user_errors: Vec<Json>| {
        outcome(payload(vec![("metafields", Resolved::Null), ("userErrors", errors(user_errors))]), vec![])
    };
    if inputs.len() > MAX_METAFIELDS_SET {
        let mut error = user_error(
            &["metafields"],
            format!("Exceeded the maximum metafields input limit of {MAX_METAFIELDS_SET}."),
            Some("LESS_THAN_OR_EQUAL_TO"),
        );
        error["elementIndex"] = Json::Null;
        return refuse(vec![error]);
    }
    let mut user_errors = Vec::new();
    // (owner type, owner id, namespace, key, type, value)
    let mut accepted: Vec<(&'static str, u64, String, String, String, String)> = Vec::new();
    for (index, input) in inputs.iter().enumerate() {
        let position = index.to_string();
        let mut fail = |name: &str, message: String, code: &str| {
            let mut error = user_error(&["metafields", &position, name], message, Some(code));
            error["elementIndex"] = json!(index);
            user_errors.push(error);
        };
        let owner_gid = text(input, "ownerId").unwrap_or_default();
        let owner = [
            ("Product", "Product"),
            ("ProductVariant", "ProductVariant"),
            ("Customer", "Customer"),
            ("Order", "Order"),
        ]
        .into_iter()
        .find_map(|(kind, name)| parse_gid(&owner_gid, kind).map(|id| (name, id)))
        .filter(|(kind, id)| match *kind {
            "Product" => state.products.contains_key(id),
            "ProductVariant" => state.variants.contains_key(id),
            "Customer" => state.customers.contains_key(id),
            _ => state.orders.contains_key(id),
        });
        let namespace = text(input, "namespace").unwrap_or_default();
        let key = text(input, "key").unwrap_or_default();
        let value = text(input, "value");
        let existing = owner.and_then(|(kind, id)| {
            state
                .metafields_of(kind, id)
                .iter()
                .find(|m| m.namespace == namespace && m.key == key)
                .map(|m| m.kind.clone())
        });
        let kind = text(input, "type").or(existing);
        let Some((owner_kind, owner_id)) = owner else {
            fail("ownerId", "Owner does not exist.".into(), "INVALID");
            continue;
        };
        let mut valid = true;
        if namespace.chars().count() < 3 {
            fail("namespace", "Namespace is too short (minimum is 3 characters)".into(), "TOO_SHORT");
            valid = false;
        } else if namespace.chars().count() > 255 {
            fail("namespace", "Namespace is too long (maximum is 255 characters)".into(), "TOO_LONG");
            valid = false;
        }
        if key.chars().count() < 2 {
            fail("key", "Key is too short (minimum is 2 characters)".into(), "TOO_SHORT");
            valid = false;
        } else if key.chars().count() > 64 {
            fail("key", "Key is too long (maximum is 64 characters)".into(), "TOO_LONG");
            valid = false;
        } else if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            fail("key", "Key contains one or more invalid characters.".into(), "INVALID");
            valid = false;
        }
        let Some(kind) = kind else {
            fail("type", "Type can't be blank".into(), "BLANK");
            continue;
        };
        if !METAFIELD_TYPES.contains(&kind.as_str()) && !kind.starts_with("list.") {
            fail("type", format!("Type '{kind}' is not a valid metafield type."), "INVALID_TYPE");
            continue;
        }
        let Some(value) = value.filter(|value| !value.trim().is_empty()) else {
            fail("value", "Value can't be blank.".into(), "BLANK");
            continue;
        };
        if let Some(problem) = metafield_value_problem(&kind, &value) {
            fail("value", problem, "INVALID_VALUE");
            continue;
        }
        if valid {
            accepted.push((owner_kind, owner_id, namespace, key, kind, value));
        }
    }
    if !user_errors.is_empty() {
        return refuse(user_errors);
    }
    let mut written = Vec::new();
    for (owner_kind, owner_id, namespace, key, kind, value) in accepted {
        let new_id = state.allocate_id();
        let list = state.metafields_of_mut(owner_kind, owner_id);
        let metafield = match list.iter_mut().find(|m| m.namespace == namespace && m.key == key) {
            Some(existing) => {
                if existing.value != value || existing.kind != kind {
                    existing.value = value;
                    existing.kind = kind;
                    existing.updated_at = ctx.now;
                }
                existing.clone()
            }
            None => {
                let metafield = Metafield { id: new_id, namespace, key, value, kind, updated_at: ctx.now };
                list.push(metafield.clone());
                metafield
            }
        };
        written.push(Resolved::Object(Obj::Metafield(Box::new(metafield), owner_kind, owner_id)));
    }
    outcome(payload(vec![("metafields", Resolved::List(written)), ("userErrors", errors(vec![]))]), vec![])
}
