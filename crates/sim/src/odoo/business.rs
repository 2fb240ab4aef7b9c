//! The business rules of the simulated models: computed fields and display names, defaults
//! that depend on other records (sequences, addresses, pricelist prices), constraints, the
//! workflow methods (`action_confirm`, `button_validate`, `action_post`, ...) and the invoice PDF.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::domain::ids_of;
use super::error::{OdooError, OdooResult};
use super::schema::{FieldDef, ModelDef, registry};
use super::store::{Context, OdooState, model_def, parse_datetime, record_id, record_text};

/// Lookups built once per call (inverse indexes, stock per product), so that reading a page
/// of records does not rescan whole tables for every record.
#[derive(Debug, Default)]
pub struct ComputeCache {
    children: HashMap<(&'static str, &'static str), HashMap<i64, Vec<i64>>>,
    stock: Option<HashMap<i64, (f64, f64)>>,
    outgoing: Option<HashMap<i64, f64>>,
}

impl ComputeCache {
    pub fn children(&mut self, state: &OdooState, comodel: &'static str, inverse: &'static str, id: i64) -> Vec<i64> {
        let index = self.children.entry((comodel, inverse)).or_insert_with(|| {
            let mut index: HashMap<i64, Vec<i64>> = HashMap::new();
            if let Some(table) = state.table(comodel) {
                for (child, record) in &table.rows {
                    if let Some(parent) = record.get(inverse).and_then(Value::as_i64) {
                        index.entry(parent).or_default().push(*child);
                    }
                }
            }
            index
        });
        index.get(&id).cloned().unwrap_or_default()
    }

    /// (on hand, reserved) per product over the internal locations the context selects.
    fn stock(&mut self, state: &OdooState, ctx: &Context) -> &HashMap<i64, (f64, f64)> {
        self.stock.get_or_insert_with(|| {
            let scope = if let Some(location) = ctx.location {
                Some(state.descendants("stock.location", "location_id", &[location]))
            } else {
                ctx.warehouse
                    .and_then(|warehouse| state.raw_id("stock.warehouse", warehouse, "view_location_id"))
                    .map(|view| state.descendants("stock.location", "location_id", &[view]))
            };
            let mut totals: HashMap<i64, (f64, f64)> = HashMap::new();
            if let Some(table) = state.table("stock.quant") {
                for record in table.rows.values() {
                    let (Some(product), Some(location)) = (
                        record.get("product_id").and_then(Value::as_i64),
                        record.get("location_id").and_then(Value::as_i64),
                    ) else {
                        continue;
                    };
                    if state.raw_text("stock.location", location, "usage").as_deref() != Some("internal") {
                        continue;
                    }
                    if scope.as_ref().is_some_and(|scope| !scope.contains(&location)) {
                        continue;
                    }
                    let entry = totals.entry(product).or_default();
                    entry.0 += record.get("quantity").and_then(Value::as_f64).unwrap_or(0.0);
                    entry.1 += record.get("reserved_quantity").and_then(Value::as_f64).unwrap_or(0.0);
                }
            }
            totals
        })
    }

    fn outgoing(&mut self, state: &OdooState) -> &HashMap<i64, f64> {
        self.outgoing.get_or_insert_with(|| {
            let mut totals: HashMap<i64, f64> = HashMap::new();
            if let Some(table) = state.table("stock.move") {
                for record in table.rows.values() {
                    let state_text = record.get("state").and_then(Value::as_str).unwrap_or("draft");
                    if matches!(state_text, "done" | "cancel" | "draft") {
                        continue;
                    }
                    if let Some(product) = record.get("product_id").and_then(Value::as_i64) {
                        *totals.entry(product).or_default() +=
                            record.get("product_uom_qty").and_then(Value::as_f64).unwrap_or(0.0);
                    }
                }
            }
            totals
        })
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Computed, non-stored fields.
pub fn compute(
    state: &OdooState,
    model: &'static ModelDef,
    id: i64,
    field: &'static FieldDef,
    ctx: &Context,
    cache: &mut ComputeCache,
) -> Value {
    match (model.name, field.name) {
        ("product.product", "lst_price") => {
            let template = state.raw_id(model.name, id, "product_tmpl_id").unwrap_or(0);
            json!(
                state.raw_f64("product.template", template, "list_price")
                    + state.raw_f64(model.name, id, "price_extra")
            )
        }
        ("product.product", "qty_available") => json!(cache.stock(state, ctx).get(&id).map_or(0.0, |entry| entry.0)),
        ("product.product", "free_qty") => {
            json!(cache.stock(state, ctx).get(&id).map_or(0.0, |entry| entry.0 - entry.1))
        }
        ("product.product", "virtual_available") => {
            let on_hand = cache.stock(state, ctx).get(&id).map_or(0.0, |entry| entry.0);
            json!(on_hand - cache.outgoing(state).get(&id).copied().unwrap_or(0.0))
        }
        ("product.template", "product_variant_count") => {
            json!(active_variants(state, cache, id).len())
        }
        ("product.template", "qty_available") => {
            let variants = active_variants(state, cache, id);
            let stock = cache.stock(state, ctx);
            json!(variants.iter().map(|variant| stock.get(variant).map_or(0.0, |entry| entry.0)).sum::<f64>())
        }
        ("stock.quant", "inventory_quantity_auto_apply") => json!(state.raw_f64(model.name, id, "quantity")),
        ("stock.quant", "available_quantity") => {
            json!(state.raw_f64(model.name, id, "quantity") - state.raw_f64(model.name, id, "reserved_quantity"))
        }
        ("stock.quant", "inventory_diff_quantity") => {
            if state.raw(model.name, id, "inventory_quantity_set") == Value::Bool(true) {
                json!(state.raw_f64(model.name, id, "inventory_quantity") - state.raw_f64(model.name, id, "quantity"))
            } else {
                json!(0.0)
            }
        }
        ("sale.order", "delivery_count") => json!(cache.children(state, "stock.picking", "sale_id", id).len()),
        (_, "complete_name") => Value::String(display_name(state, model.name, id)),
        _ => field.kind.empty_value(),
    }
}

fn active_variants(state: &OdooState, cache: &mut ComputeCache, template: i64) -> Vec<i64> {
    cache
        .children(state, "product.product", "product_tmpl_id", template)
        .into_iter()
        .filter(|variant| state.raw("product.product", *variant, "active") != Value::Bool(false))
        .collect()
}

pub fn display_name(state: &OdooState, model: &str, id: i64) -> String {
    let name = || state.raw_text(model, id, "name").unwrap_or_default();
    match model {
        "product.product" => {
            let template = state.raw_id(model, id, "product_tmpl_id").unwrap_or(0);
            let mut text = state.raw_text("product.template", template, "name").unwrap_or_default();
            if let Some(code) = state.raw_text(model, id, "default_code").filter(|code| !code.is_empty()) {
                text = format!("[{code}] {text}");
            }
            let values: Vec<String> = ids_of(&state.raw(model, id, "product_template_attribute_value_ids"))
                .into_iter()
                .filter_map(|value| state.raw_text("product.attribute.value", value, "name"))
                .collect();
            if !values.is_empty() {
                text = format!("{text} ({})", values.join(", "));
            }
            text
        }
        "product.template" => match state.raw_text(model, id, "default_code").filter(|code| !code.is_empty()) {
            Some(code) => format!("[{code}] {}", name()),
            None => name(),
        },
        "res.partner" => {
            let own = match state.raw_text(model, id, "name").filter(|text| !text.is_empty()) {
                Some(own) => own,
                None => match state.raw_text(model, id, "type").as_deref() {
                    Some("invoice") => "Invoice Address".into(),
                    Some("delivery") => "Delivery Address".into(),
                    Some("other") => "Other Address".into(),
                    _ => String::new(),
                },
            };
            match state.raw_id(model, id, "parent_id") {
                Some(parent) if state.raw(model, id, "is_company") != Value::Bool(true) => {
                    format!("{}, {own}", display_name(state, model, parent))
                }
                _ => own,
            }
        }
        // Odoo's `complete_name`: a view location starts a new path ("WH", then "WH/Stock").
        "stock.location" => match state.raw_id(model, id, "location_id") {
            Some(parent) if state.raw_text(model, id, "usage").as_deref() != Some("view") => {
                format!("{}/{}", display_name(state, model, parent), name())
            }
            _ => name(),
        },
        "product.category" | "res.partner.category" => match state.raw_id(model, id, "parent_id") {
            Some(parent) => format!("{} / {}", display_name(state, model, parent), name()),
            None => name(),
        },
        "sale.order.line" => {
            let order = state.raw_id(model, id, "order_id").unwrap_or(0);
            let order_name = state.raw_text("sale.order", order, "name").unwrap_or_default();
            let line_name = name();
            format!("{order_name} - {}", line_name.lines().next().unwrap_or_default())
        }
        "account.move" => match name().as_str() {
            "/" | "" => format!("Draft Invoice ({id})"),
            other => other.to_owned(),
        },
        "product.pricelist.item" => match state.raw_text(model, id, "applied_on").as_deref() {
            Some("0_product_variant") => {
                format!(
                    "Variant: {}",
                    display_name(state, "product.product", state.raw_id(model, id, "product_id").unwrap_or(0))
                )
            }
            Some("1_product") => format!(
                "Product: {}",
                display_name(state, "product.template", state.raw_id(model, id, "product_tmpl_id").unwrap_or(0))
            ),
            Some("2_product_category") => format!(
                "Category: {}",
                display_name(state, "product.category", state.raw_id(model, id, "categ_id").unwrap_or(0))
            ),
            _ => "All Products".into(),
        },
        "stock.quant" | "stock.move" | "product.template.attribute.line" => {
            let product = state.raw_id(model, id, "product_id");
            match product {
                Some(product) => display_name(state, "product.product", product),
                None => format!("{model},{id}"),
            }
        }
        _ => match state.raw_text(model, id, "name") {
            Some(text) => text,
            None => format!("{model},{id}"),
        },
    }
}

/// `stock.quant.create` in inventory mode updates the quant of the same product and location
/// instead of adding one, and returns it.
pub fn merge_on_create(
    state: &mut OdooState,
    model: &'static ModelDef,
    vals: &Map<String, Value>,
    ctx: &Context,
) -> OdooResult<Option<i64>> {
    let inventory_keys = ["inventory_quantity", "inventory_quantity_auto_apply"];
    if model.name != "stock.quant" || !ctx.inventory_mode || !inventory_keys.iter().any(|key| vals.contains_key(*key)) {
        return Ok(None);
    }
    let (Some(product), Some(location)) =
        (vals.get("product_id").and_then(Value::as_i64), vals.get("location_id").and_then(Value::as_i64))
    else {
        return Ok(None);
    };
    let existing = state
        .lookup("stock.quant", "product_id", &json!(product))
        .into_iter()
        .find(|quant| state.raw_id("stock.quant", *quant, "location_id") == Some(location));
    let Some(existing) = existing else { return Ok(None) };
    let mut update = Map::new();
    for key in inventory_keys {
        if let Some(value) = vals.get(key) {
            update.insert(key.into(), value.clone());
        }
    }
    state.write("stock.quant", &[existing], &update, ctx)?;
    Ok(Some(existing))
}

/// Rewrites written values the way Odoo's inverses do: a counted quantity marks the quant as
/// counted, and `inventory_quantity_auto_apply` sets the quantity at once (inventory mode only).
pub fn prepare_write(model: &'static ModelDef, vals: &Map<String, Value>, ctx: &Context) -> Map<String, Value> {
    let mut prepared = vals.clone();
    if model.name == "stock.quant" {
        if let Some(value) = prepared.remove("inventory_quantity_auto_apply")
            && ctx.inventory_mode
        {
            prepared.insert("quantity".into(), value);
        }
        if prepared.contains_key("inventory_quantity") && !prepared.contains_key("inventory_quantity_set") {
            prepared.insert("inventory_quantity_set".into(), Value::Bool(true));
        }
    }
    prepared
}

/// Fills what Odoo computes before inserting: sequences, addresses, prices, descriptions.
pub fn prepare_create(
    state: &mut OdooState,
    model: &'static ModelDef,
    vals: &mut Map<String, Value>,
    _ctx: &Context,
) -> OdooResult<()> {
    match model.name {
        "res.partner" => {
            let kind = vals.get("type").and_then(Value::as_str).unwrap_or("contact");
            let has_name = vals.get("name").and_then(Value::as_str).is_some_and(|name| !name.is_empty());
            if kind == "contact" && !has_name {
                return Err(OdooError::validation("Contacts require a name"));
            }
        }
        "product.product" if vals.get("product_tmpl_id").and_then(Value::as_i64).is_none() => {
            // Variants `_inherits` their template: a variant created alone brings its own.
            let mut template_vals = Map::new();
            for key in [
                "name",
                "list_price",
                "type",
                "detailed_type",
                "categ_id",
                "sale_ok",
                "description_sale",
                "taxes_id",
                "priority",
            ] {
                if let Some(value) = vals.remove(key) {
                    template_vals.insert(key.into(), value);
                }
            }
            state.skip_default_variant = true;
            let template = state.create_one(model_def("product.template")?, template_vals, _ctx);
            state.skip_default_variant = false;
            vals.insert("product_tmpl_id".into(), json!(template?));
        }
        "sale.order" => {
            if vals.get("name").and_then(Value::as_str).is_none_or(|name| name == "New" || name == "/") {
                let number = state.next_sequence("sale.order");
                vals.insert("name".into(), json!(format!("S{number:05}")));
            }
            if let Some(partner) = vals.get("partner_id").and_then(Value::as_i64) {
                if !state.exists("res.partner", partner) {
                    return Err(OdooError::missing("res.partner", &[partner]));
                }
                for (field, kind) in [("partner_invoice_id", "invoice"), ("partner_shipping_id", "delivery")] {
                    if vals.get(field).is_none_or(|value| !value.is_i64()) {
                        vals.insert(field.into(), json!(address_of(state, partner, kind)));
                    }
                }
                if vals.get("pricelist_id").is_none() {
                    let pricelist = state
                        .raw_id("res.partner", partner, "property_product_pricelist")
                        .or_else(|| state.ids("product.pricelist").first().copied());
                    if let Some(pricelist) = pricelist {
                        vals.insert("pricelist_id".into(), json!(pricelist));
                    }
                }
            }
        }
        "sale.order.line" => {
            let product = vals.get("product_id").and_then(Value::as_i64);
            if let Some(product) = product {
                if !state.exists("product.product", product) {
                    return Err(OdooError::missing("product.product", &[product]));
                }
                if vals.get("name").and_then(Value::as_str).is_none() {
                    vals.insert("name".into(), json!(display_name(state, "product.product", product)));
                }
                if !vals.contains_key("price_unit") {
                    let order = vals.get("order_id").and_then(Value::as_i64).unwrap_or(0);
                    let pricelist = state.raw_id("sale.order", order, "pricelist_id");
                    let quantity = vals.get("product_uom_qty").and_then(Value::as_f64).unwrap_or(1.0);
                    vals.insert("price_unit".into(), json!(price_for(state, pricelist, product, quantity)));
                }
                if !vals.contains_key("tax_id") {
                    let template = state.raw_id("product.product", product, "product_tmpl_id").unwrap_or(0);
                    vals.insert("tax_id".into(), json!(ids_of(&state.raw("product.template", template, "taxes_id"))));
                }
            }
            if vals.get("name").and_then(Value::as_str).is_none() {
                return Err(OdooError::validation(
                    "The operation cannot be completed:\n- Create/update: a mandatory field is not set.\n- Delete: another model requires the record being deleted. If possible, archive it instead.\n\nModel: Sales Order Line (sale.order.line)\nField: Description (name)\n",
                ));
            }
        }
        "account.move.line" => {
            if let Some(product) = vals.get("product_id").and_then(Value::as_i64)
                && vals.get("name").and_then(Value::as_str).is_none()
                && state.exists("product.product", product)
            {
                vals.insert("name".into(), json!(display_name(state, "product.product", product)));
            }
        }
        "stock.quant" => {
            let prepared = prepare_write(model, vals, _ctx);
            *vals = prepared;
        }
        "stock.picking" if vals.get("name").and_then(Value::as_str).is_none_or(|name| name == "/") => {
            let number = state.next_sequence("stock.picking.out");
            vals.insert("name".into(), json!(format!("WH/OUT/{number:05}")));
        }
        _ => {}
    }
    Ok(())
}

/// The child address of a type (`invoice`, `delivery`) or the partner itself.
fn address_of(state: &OdooState, partner: i64, kind: &str) -> i64 {
    state
        .lookup("res.partner", "parent_id", &json!(partner))
        .into_iter()
        .find(|child| {
            state.row("res.partner", *child).is_some_and(|record| {
                record_text(record, "type") == Some(kind) && record.get("active") != Some(&Value::Bool(false))
            })
        })
        .unwrap_or(partner)
}

/// The unit price of a product for a quantity under a pricelist: the first applicable rule in
/// the rules' order (variant, product, category, global; larger minimum quantity first).
pub fn price_for(state: &OdooState, pricelist: Option<i64>, product: i64, quantity: f64) -> f64 {
    let template = state.raw_id("product.product", product, "product_tmpl_id").unwrap_or(0);
    let base = state.raw_f64("product.template", template, "list_price")
        + state.raw_f64("product.product", product, "price_extra");
    let Some(pricelist) = pricelist else { return base };
    let category = state.raw_id("product.template", template, "categ_id");
    let categories =
        category.map(|category| state.ancestors("product.category", "parent_id", &[category])).unwrap_or_default();
    let now = state.clock.now();
    let mut rules: Vec<i64> = state
        .find_ids("product.pricelist.item", |item| {
            record_id(item, "pricelist_id") == Some(pricelist) && item.get("active") != Some(&Value::Bool(false))
        })
        .into_iter()
        .filter(|item| {
            let applies = match state.raw_text("product.pricelist.item", *item, "applied_on").as_deref() {
                Some("0_product_variant") => {
                    state.raw_id("product.pricelist.item", *item, "product_id") == Some(product)
                }
                Some("1_product") => state.raw_id("product.pricelist.item", *item, "product_tmpl_id") == Some(template),
                Some("2_product_category") => state
                    .raw_id("product.pricelist.item", *item, "categ_id")
                    .is_some_and(|categ| categories.contains(&categ)),
                _ => true,
            };
            let in_dates = state
                .raw_text("product.pricelist.item", *item, "date_start")
                .and_then(|text| parse_datetime(&text))
                .is_none_or(|start| start <= now)
                && state
                    .raw_text("product.pricelist.item", *item, "date_end")
                    .and_then(|text| parse_datetime(&text))
                    .is_none_or(|end| end >= now);
            applies && in_dates && state.raw_f64("product.pricelist.item", *item, "min_quantity") <= quantity
        })
        .collect();
    rules.sort_by(|left, right| {
        let key = |item: &i64| {
            (
                state.raw_text("product.pricelist.item", *item, "applied_on").unwrap_or_default(),
                -state.raw_f64("product.pricelist.item", *item, "min_quantity"),
                -item,
            )
        };
        key(left).partial_cmp(&key(right)).unwrap_or(std::cmp::Ordering::Equal)
    });
    let Some(rule) = rules.first() else { return base };
    match state.raw_text("product.pricelist.item", *rule, "compute_price").as_deref() {
        Some("fixed") => state.raw_f64("product.pricelist.item", *rule, "fixed_price"),
        Some("percentage") => {
            round2(base * (1.0 - state.raw_f64("product.pricelist.item", *rule, "percent_price") / 100.0))
        }
        _ => base,
    }
}

pub fn after_create(
    state: &mut OdooState,
    model: &'static ModelDef,
    id: i64,
    vals: &Map<String, Value>,
    ctx: &Context,
) -> OdooResult<()> {
    match model.name {
        "stock.warehouse" => {
            let code = state.raw_text(model.name, id, "code").unwrap_or_default();
            let physical = state.ids("stock.location").into_iter().find(|location| {
                state.raw_text("stock.location", *location, "name").as_deref() == Some("Physical Locations")
            });
            let locations = model_def("stock.location")?;
            let mut view_vals = Map::new();
            view_vals.insert("name".into(), json!(code));
            view_vals.insert("usage".into(), json!("view"));
            view_vals.insert("location_id".into(), physical.map_or(Value::Bool(false), Value::from));
            view_vals.insert("warehouse_id".into(), json!(id));
            let view = state.create_one(locations, view_vals, ctx)?;
            let mut stock_vals = Map::new();
            stock_vals.insert("name".into(), json!("Stock"));
            stock_vals.insert("usage".into(), json!("internal"));
            stock_vals.insert("location_id".into(), json!(view));
            stock_vals.insert("warehouse_id".into(), json!(id));
            let stock = state.create_one(locations, stock_vals, ctx)?;
            state.set_raw(model.name, id, &[("view_location_id", json!(view)), ("lot_stock_id", json!(stock))]);
        }
        "product.template" if !state.skip_default_variant => create_variants(state, id, vals, ctx)?,
        "product.product" => check_barcode(state, id)?,
        "product.pricelist.item" => check_pricelist_item(state, id)?,
        "sale.order.line" | "account.move.line" => recompute(state, model.name, id),
        "sale.order" | "account.move" => recompute(state, model.name, id),
        _ => {}
    }
    Ok(())
}

/// Odoo creates a template's variants from the cartesian product of its attribute lines, or a
/// single variant when it has none.
fn create_variants(state: &mut OdooState, template: i64, vals: &Map<String, Value>, ctx: &Context) -> OdooResult<()> {
    let lines =
        state.find_ids("product.template.attribute.line", |line| record_id(line, "product_tmpl_id") == Some(template));
    let mut combinations: Vec<Vec<i64>> = vec![Vec::new()];
    for line in lines {
        let values = ids_of(&state.raw("product.template.attribute.line", line, "value_ids"));
        if values.is_empty() {
            continue;
        }
        combinations = combinations
            .into_iter()
            .flat_map(|combination| {
                values.iter().map(move |value| {
                    let mut next = combination.clone();
                    next.push(*value);
                    next
                })
            })
            .collect();
    }
    let single = combinations.len() == 1;
    let variants = model_def("product.product")?;
    for combination in combinations {
        let mut variant_vals = Map::new();
        variant_vals.insert("product_tmpl_id".into(), json!(template));
        variant_vals.insert("product_template_attribute_value_ids".into(), json!(combination));
        if single {
            for key in ["default_code", "barcode"] {
                if let Some(value) = vals.get(key) {
                    variant_vals.insert(key.into(), value.clone());
                }
            }
        }
        state.create_one(variants, variant_vals, ctx)?;
    }
    Ok(())
}

/// Odoo refuses a barcode already used by another product.
fn check_barcode(state: &OdooState, id: i64) -> OdooResult<()> {
    let Some(barcode) = state.raw_text("product.product", id, "barcode").filter(|barcode| !barcode.is_empty()) else {
        return Ok(());
    };
    let others: Vec<String> = state
        .lookup("product.product", "barcode", &Value::String(barcode.clone()))
        .into_iter()
        .filter(|other| *other != id)
        .map(|other| display_name(state, "product.product", other))
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    Err(OdooError::validation(format!(
        "Barcode(s) already assigned:\n\n- Barcode \"{barcode}\" already assigned to product(s): {}",
        others.join(", ")
    )))
}

fn check_pricelist_item(state: &OdooState, id: i64) -> OdooResult<()> {
    let item = "product.pricelist.item";
    let (field, message) = match state.raw_text(item, id, "applied_on").as_deref() {
        Some("2_product_category") => ("categ_id", "Please specify the category for which this rule should be applied"),
        Some("1_product") => ("product_tmpl_id", "Please specify the product for which this rule should be applied"),
        Some("0_product_variant") => {
            ("product_id", "Please specify the product variant for which this rule should be applied")
        }
        _ => return Ok(()),
    };
    if state.raw_id(item, id, field).is_none() {
        return Err(OdooError::validation(message));
    }
    Ok(())
}

pub fn check_write(
    state: &OdooState,
    model: &'static ModelDef,
    ids: &[i64],
    vals: &Map<String, Value>,
    ctx: &Context,
) -> OdooResult<()> {
    match model.name {
        "stock.quant" if !ctx.inventory_mode => {
            let allowed = ["inventory_quantity", "inventory_quantity_set", "inventory_date"];
            if vals.keys().any(|key| !allowed.contains(&key.as_str())) {
                return Err(OdooError::user("Quant's editing is restricted, you can't do this operation."));
            }
        }
        "account.move" => {
            let posted = ids.iter().any(|id| state.raw_text(model.name, *id, "state").as_deref() == Some("posted"));
            if posted && vals.contains_key("invoice_line_ids") {
                return Err(OdooError::user("You cannot modify a posted entry of this journal."));
            }
        }
        "res.partner" => {
            for id in ids {
                let kind = vals
                    .get("type")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| state.raw_text(model.name, *id, "type"));
                let name = match vals.get("name") {
                    Some(value) => value.as_str().map(str::to_owned),
                    None => state.raw_text(model.name, *id, "name"),
                };
                if kind.as_deref().unwrap_or("contact") == "contact" && name.is_none_or(|name| name.is_empty()) {
                    return Err(OdooError::validation("Contacts require a name"));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

pub fn after_write(
    state: &mut OdooState,
    model: &'static ModelDef,
    ids: &[i64],
    vals: &Map<String, Value>,
    ctx: &Context,
) -> OdooResult<()> {
    match model.name {
        "product.template" => {
            // `default_code` and `barcode` of a single-variant template live on its variant.
            let keys: Vec<&str> =
                ["default_code", "barcode"].into_iter().filter(|key| vals.contains_key(*key)).collect();
            if !keys.is_empty() {
                for template in ids {
                    let variants =
                        ComputeCache::default().children(state, "product.product", "product_tmpl_id", *template);
                    if variants.len() == 1 {
                        let mut variant_vals = Map::new();
                        for key in &keys {
                            variant_vals.insert((*key).into(), state.raw("product.template", *template, key));
                        }
                        state.write("product.product", &variants, &variant_vals, ctx)?;
                    }
                }
            }
        }
        "product.product" => {
            for id in ids {
                check_barcode(state, *id)?;
            }
        }
        "product.pricelist.item" => {
            for id in ids {
                check_pricelist_item(state, *id)?;
            }
        }
        "sale.order.line" | "account.move.line" => {
            let amount_fields =
                ["product_uom_qty", "quantity", "price_unit", "discount", "tax_id", "tax_ids", "product_id"];
            if vals.keys().any(|key| amount_fields.contains(&key.as_str())) {
                for id in ids {
                    recompute(state, model.name, *id);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Refuses deletions Odoo refuses; returns the records whose totals must be recomputed after.
pub fn before_unlink(state: &OdooState, model: &'static ModelDef, ids: &[i64]) -> OdooResult<Vec<(&'static str, i64)>> {
    let mut recompute_after = Vec::new();
    for id in ids {
        match model.name {
            "sale.order"
                if !matches!(state.raw_text(model.name, *id, "state").as_deref(), Some("draft" | "cancel")) =>
            {
                return Err(OdooError::user(
                    "You can not delete a sent quotation or a confirmed sales order. You must first cancel it.",
                ));
            }
            "sale.order.line" => {
                let order = state.raw_id(model.name, *id, "order_id").unwrap_or(0);
                if state.raw_text("sale.order", order, "state").as_deref() == Some("sale")
                    && state.raw_id(model.name, *id, "product_id").is_some()
                {
                    return Err(OdooError::user(
                        "Once a sales order is confirmed, you can't remove one of its lines (we need to track if something gets invoiced or delivered).\nSet the quantity to 0 instead.",
                    ));
                }
                recompute_after.push(("sale.order", order));
            }
            "account.move" if state.raw_text(model.name, *id, "state").as_deref() == Some("posted") => {
                return Err(OdooError::user("You cannot delete an entry which has been posted once."));
            }
            "account.move.line" => {
                recompute_after.push(("account.move", state.raw_id(model.name, *id, "move_id").unwrap_or(0)))
            }
            "stock.picking" if state.raw_text(model.name, *id, "state").as_deref() == Some("done") => {
                return Err(OdooError::user("You cannot delete a done transfer."));
            }
            _ => {}
        }
    }
    Ok(recompute_after)
}

/// Recomputes stored totals: a line's amounts, then its document's sums. A recompute is a
/// write in Odoo, so the document's `write_date` moves too.
pub fn recompute(state: &mut OdooState, model: &'static str, id: i64) {
    let now = state.clock.now_text();
    match model {
        "sale.order.line" | "account.move.line" => {
            let (quantity_field, taxes_field, parent_field, parent_model) = if model == "sale.order.line" {
                ("product_uom_qty", "tax_id", "order_id", "sale.order")
            } else {
                ("quantity", "tax_ids", "move_id", "account.move")
            };
            let quantity = state.raw_f64(model, id, quantity_field);
            let price = state.raw_f64(model, id, "price_unit");
            let discount = state.raw_f64(model, id, "discount");
            let subtotal = round2(quantity * price * (1.0 - discount / 100.0));
            let tax: f64 = ids_of(&state.raw(model, id, taxes_field))
                .into_iter()
                .map(|tax| match state.raw_text("account.tax", tax, "amount_type").as_deref() {
                    Some("fixed") => state.raw_f64("account.tax", tax, "amount") * quantity,
                    _ => subtotal * state.raw_f64("account.tax", tax, "amount") / 100.0,
                })
                .sum();
            let tax = round2(tax);
            let mut values = vec![("price_subtotal", json!(subtotal)), ("price_total", json!(round2(subtotal + tax)))];
            if model == "sale.order.line" {
                values.push(("price_tax", json!(tax)));
            }
            state.set_raw(model, id, &values);
            if let Some(parent) = state.raw_id(model, id, parent_field) {
                recompute(state, parent_model, parent);
            }
        }
        "sale.order" | "account.move" => {
            let (line_model, parent_field) =
                if model == "sale.order" { ("sale.order.line", "order_id") } else { ("account.move.line", "move_id") };
            let lines = state.lookup(line_model, parent_field, &json!(id));
            let untaxed: f64 = lines.iter().map(|line| state.raw_f64(line_model, *line, "price_subtotal")).sum();
            let total: f64 = lines.iter().map(|line| state.raw_f64(line_model, *line, "price_total")).sum();
            let (untaxed, total) = (round2(untaxed), round2(total));
            let mut values = vec![
                ("amount_untaxed", json!(untaxed)),
                ("amount_tax", json!(round2(total - untaxed))),
                ("amount_total", json!(total)),
                ("write_date", json!(now)),
            ];
            if model == "account.move" {
                let residual =
                    if state.raw_text(model, id, "payment_state").as_deref() == Some("paid") { 0.0 } else { total };
                values.push(("amount_residual", json!(residual)));
            }
            state.set_raw(model, id, &values);
        }
        _ => {}
    }
}

/// The public methods beyond the ORM's, per model.
pub fn is_action(model: &ModelDef, method: &str) -> bool {
    match (model.name, method) {
        ("sale.order", "action_confirm" | "action_cancel" | "action_draft" | "action_quotation_sent") => true,
        ("stock.picking", "button_validate" | "action_cancel" | "action_assign") => true,
        ("account.move", "action_post" | "button_draft" | "button_cancel") => true,
        ("stock.quant", "action_apply_inventory") => true,
        ("res.users", "context_get") => true,
        (_, "action_archive" | "action_unarchive") => model.has_active(),
        _ => false,
    }
}

fn write_one(state: &mut OdooState, model: &str, ids: &[i64], values: Value, ctx: &Context) -> OdooResult<()> {
    let Value::Object(map) = values else { return Ok(()) };
    state.write(model, ids, &map, ctx)
}

pub fn call_action(
    state: &mut OdooState,
    model: &'static ModelDef,
    method: &str,
    ids: &[i64],
    ctx: &Context,
) -> OdooResult<Value> {
    if method == "context_get" {
        return Ok(json!({"lang": "en_US", "tz": "UTC", "uid": state.uid}));
    }
    let missing: Vec<i64> = ids.iter().copied().filter(|id| !state.exists(model.name, *id)).collect();
    if !missing.is_empty() {
        return Err(OdooError::missing(model.name, &missing));
    }
    match (model.name, method) {
        (_, "action_archive") => write_one(state, model.name, ids, json!({"active": false}), ctx)?,
        (_, "action_unarchive") => write_one(state, model.name, ids, json!({"active": true}), ctx)?,
        ("sale.order", "action_confirm") => {
            for id in ids {
                confirm_order(state, *id, ctx)?;
            }
        }
        ("sale.order", "action_quotation_sent") => {
            for id in ids {
                if state.raw_text("sale.order", *id, "state").as_deref() == Some("draft") {
                    write_one(state, "sale.order", &[*id], json!({"state": "sent"}), ctx)?;
                }
            }
        }
        ("sale.order", "action_cancel") => {
            for id in ids {
                let pickings = ComputeCache::default().children(state, "stock.picking", "sale_id", *id);
                for picking in pickings {
                    if state.raw_text("stock.picking", picking, "state").as_deref() != Some("done") {
                        cancel_picking(state, picking, ctx)?;
                    }
                }
                write_one(state, "sale.order", &[*id], json!({"state": "cancel", "invoice_status": "no"}), ctx)?;
            }
        }
        ("sale.order", "action_draft") => {
            for id in ids {
                if state.raw_text("sale.order", *id, "state").as_deref() == Some("cancel") {
                    write_one(state, "sale.order", &[*id], json!({"state": "draft"}), ctx)?;
                }
            }
        }
        ("stock.picking", "button_validate") => {
            for id in ids {
                validate_picking(state, *id, ctx)?;
            }
        }
        ("stock.picking", "action_cancel") => {
            for id in ids {
                cancel_picking(state, *id, ctx)?;
            }
        }
        ("stock.picking", "action_assign") => {
            for id in ids {
                reserve_picking(state, *id, ctx)?;
            }
        }
        ("account.move", "action_post") => {
            for id in ids {
                post_move(state, *id, ctx)?;
            }
        }
        ("account.move", "button_draft") => write_one(state, "account.move", ids, json!({"state": "draft"}), ctx)?,
        ("account.move", "button_cancel") => write_one(state, "account.move", ids, json!({"state": "cancel"}), ctx)?,
        ("stock.quant", "action_apply_inventory") => {
            let inventory = Context { inventory_mode: true, ..ctx.clone() };
            for id in ids {
                let counted = state.raw_f64("stock.quant", *id, "inventory_quantity");
                write_one(
                    state,
                    "stock.quant",
                    &[*id],
                    json!({"quantity": counted, "inventory_quantity": 0.0, "inventory_quantity_set": false}),
                    &inventory,
                )?;
            }
        }
        _ => {
            return Err(OdooError::new(
                super::error::ErrorKind::AttributeError,
                format!("The method '{method}' does not exist on the model '{}'", model.name),
            ));
        }
    }
    Ok(Value::Bool(true))
}

fn confirm_order(state: &mut OdooState, order: i64, ctx: &Context) -> OdooResult<()> {
    if !matches!(state.raw_text("sale.order", order, "state").as_deref(), Some("draft" | "sent")) {
        return Err(OdooError::user("Some orders are not in a state requiring confirmation."));
    }
    let lines = ComputeCache::default().children(state, "sale.order.line", "order_id", order);
    if lines.iter().any(|line| state.raw_id("sale.order.line", *line, "product_id").is_none()) {
        return Err(OdooError::user("A line on these orders missing a product, you cannot confirm it."));
    }
    let now = state.clock.now_text();
    write_one(
        state,
        "sale.order",
        &[order],
        json!({"state": "sale", "date_order": now, "invoice_status": "to invoice"}),
        ctx,
    )?;
    let stocked: Vec<i64> = lines
        .into_iter()
        .filter(|line| {
            let product = state.raw_id("sale.order.line", *line, "product_id").unwrap_or(0);
            let template = state.raw_id("product.product", product, "product_tmpl_id").unwrap_or(0);
            matches!(state.raw_text("product.template", template, "type").as_deref(), Some("consu" | "product"))
        })
        .collect();
    if stocked.is_empty() {
        return Ok(());
    }
    let warehouse = state
        .ids("stock.warehouse")
        .into_iter()
        .find(|warehouse| state.raw("stock.warehouse", *warehouse, "active") != Value::Bool(false));
    let source = warehouse.and_then(|warehouse| state.raw_id("stock.warehouse", warehouse, "lot_stock_id"));
    let customers = state
        .ids("stock.location")
        .into_iter()
        .find(|location| state.raw_text("stock.location", *location, "usage").as_deref() == Some("customer"));
    let name = state.raw_text("sale.order", order, "name").unwrap_or_default();
    let shipping = state.raw_id("sale.order", order, "partner_shipping_id");
    let moves: Vec<Value> = stocked
        .iter()
        .map(|line| {
            json!([0, 0, {
                "name": state.raw_text("sale.order.line", *line, "name").unwrap_or_default(),
                "product_id": state.raw_id("sale.order.line", *line, "product_id"),
                "product_uom_qty": state.raw_f64("sale.order.line", *line, "product_uom_qty"),
                "sale_line_id": line,
                "location_id": source,
                "location_dest_id": customers,
                "state": "confirmed",
            }])
        })
        .collect();
    let picking_vals = json!({
        "origin": name,
        "sale_id": order,
        "partner_id": shipping,
        "state": "confirmed",
        "location_id": source,
        "location_dest_id": customers,
        "move_ids": moves,
    });
    let Value::Object(picking_vals) = picking_vals else { return Ok(()) };
    let picking = state.create_one(model_def("stock.picking")?, picking_vals, ctx)?;
    reserve_picking(state, picking, ctx)
}

/// Reserves what the source location holds; the transfer is `assigned` when everything is.
fn reserve_picking(state: &mut OdooState, picking: i64, ctx: &Context) -> OdooResult<()> {
    if matches!(state.raw_text("stock.picking", picking, "state").as_deref(), Some("done" | "cancel")) {
        return Ok(());
    }
    let moves = ComputeCache::default().children(state, "stock.move", "picking_id", picking);
    let mut complete = true;
    for movement in moves {
        let demand = state.raw_f64("stock.move", movement, "product_uom_qty");
        let mut reserved = state.raw_f64("stock.move", movement, "quantity");
        let product = state.raw_id("stock.move", movement, "product_id").unwrap_or(0);
        let source = state.raw_id("stock.move", movement, "location_id").unwrap_or(0);
        let locations = state.descendants("stock.location", "location_id", &[source]);
        let quants: Vec<i64> = state
            .lookup("stock.quant", "product_id", &json!(product))
            .into_iter()
            .filter(|quant| {
                state.raw_id("stock.quant", *quant, "location_id").is_some_and(|location| locations.contains(&location))
            })
            .collect();
        for quant in quants {
            if reserved >= demand {
                break;
            }
            let free = state.raw_f64("stock.quant", quant, "quantity")
                - state.raw_f64("stock.quant", quant, "reserved_quantity");
            let take = free.min(demand - reserved);
            if take > 0.0 {
                let now_reserved = state.raw_f64("stock.quant", quant, "reserved_quantity") + take;
                state.set_raw(
                    "stock.quant",
                    quant,
                    &[("reserved_quantity", json!(now_reserved)), ("write_date", json!(state.clock.now_text()))],
                );
                reserved += take;
            }
        }
        let move_state = if reserved >= demand {
            "assigned"
        } else if reserved > 0.0 {
            "partially_available"
        } else {
            "confirmed"
        };
        complete &= reserved >= demand;
        state.set_raw("stock.move", movement, &[("quantity", json!(reserved)), ("state", json!(move_state))]);
    }
    let picking_state = if complete { "assigned" } else { "confirmed" };
    write_one(state, "stock.picking", &[picking], json!({"state": picking_state}), ctx)
}

/// `button_validate` as an immediate transfer: every demanded quantity leaves the source.
fn validate_picking(state: &mut OdooState, picking: i64, ctx: &Context) -> OdooResult<()> {
    if matches!(state.raw_text("stock.picking", picking, "state").as_deref(), Some("done" | "cancel")) {
        return Err(OdooError::user("You cannot validate a transfer if no quantities are reserved nor done."));
    }
    let moves = ComputeCache::default().children(state, "stock.move", "picking_id", picking);
    let now = state.clock.now_text();
    for movement in moves {
        let demand = state.raw_f64("stock.move", movement, "product_uom_qty");
        let reserved = state.raw_f64("stock.move", movement, "quantity");
        let product = state.raw_id("stock.move", movement, "product_id").unwrap_or(0);
        let source = state.raw_id("stock.move", movement, "location_id").unwrap_or(0);
        let locations = state.descendants("stock.location", "location_id", &[source]);
        let mut to_take = demand;
        let mut to_unreserve = reserved;
        let quants: Vec<i64> = state
            .lookup("stock.quant", "product_id", &json!(product))
            .into_iter()
            .filter(|quant| {
                state.raw_id("stock.quant", *quant, "location_id").is_some_and(|location| locations.contains(&location))
            })
            .collect();
        for quant in &quants {
            let on_hand = state.raw_f64("stock.quant", *quant, "quantity");
            let held = state.raw_f64("stock.quant", *quant, "reserved_quantity");
            let unreserve = held.min(to_unreserve);
            let take = on_hand.max(0.0).min(to_take);
            to_unreserve -= unreserve;
            to_take -= take;
            state.set_raw(
                "stock.quant",
                *quant,
                &[
                    ("quantity", json!(on_hand - take)),
                    ("reserved_quantity", json!(held - unreserve)),
                    ("write_date", json!(now)),
                ],
            );
        }
        if to_take > 0.0 && source != 0 {
            // Odoo lets stock go negative rather than refuse the delivery.
            match quants.first() {
                Some(quant) => {
                    let on_hand = state.raw_f64("stock.quant", *quant, "quantity");
                    state.set_raw("stock.quant", *quant, &[("quantity", json!(on_hand - to_take))]);
                }
                None => {
                    let quant_vals = json!({"product_id": product, "location_id": source, "quantity": -to_take});
                    if let Value::Object(quant_vals) = quant_vals {
                        state.create_one(model_def("stock.quant")?, quant_vals, ctx)?;
                    }
                }
            }
        }
        state.set_raw("stock.move", movement, &[("quantity", json!(demand)), ("state", json!("done"))]);
        if let Some(line) = state.raw_id("stock.move", movement, "sale_line_id") {
            let delivered = state.raw_f64("sale.order.line", line, "qty_delivered") + demand;
            write_one(state, "sale.order.line", &[line], json!({"qty_delivered": delivered}), ctx)?;
        }
    }
    write_one(state, "stock.picking", &[picking], json!({"state": "done", "date_done": now}), ctx)
}

fn cancel_picking(state: &mut OdooState, picking: i64, ctx: &Context) -> OdooResult<()> {
    if state.raw_text("stock.picking", picking, "state").as_deref() == Some("done") {
        return Err(OdooError::user("You cannot cancel a transfer that is done."));
    }
    let moves = ComputeCache::default().children(state, "stock.move", "picking_id", picking);
    for movement in moves {
        let reserved = state.raw_f64("stock.move", movement, "quantity");
        let product = state.raw_id("stock.move", movement, "product_id").unwrap_or(0);
        let source = state.raw_id("stock.move", movement, "location_id").unwrap_or(0);
        let mut to_release = reserved;
        for quant in state.ids("stock.quant") {
            if to_release <= 0.0 {
                break;
            }
            if state.raw_id("stock.quant", quant, "product_id") != Some(product)
                || state.raw_id("stock.quant", quant, "location_id") != Some(source)
            {
                continue;
            }
            let held = state.raw_f64("stock.quant", quant, "reserved_quantity");
            let release = held.min(to_release);
            to_release -= release;
            state.set_raw("stock.quant", quant, &[("reserved_quantity", json!(held - release))]);
        }
        state.set_raw("stock.move", movement, &[("quantity", json!(0.0)), ("state", json!("cancel"))]);
    }
    write_one(state, "stock.picking", &[picking], json!({"state": "cancel"}), ctx)
}

fn post_move(state: &mut OdooState, id: i64, ctx: &Context) -> OdooResult<()> {
    let name = state.raw_text("account.move", id, "name").unwrap_or_default();
    if state.raw_text("account.move", id, "state").as_deref() == Some("posted") {
        return Err(OdooError::user(format!("The entry {name} (id {id}) is already posted.")));
    }
    let lines = ComputeCache::default().children(state, "account.move.line", "move_id", id);
    if lines.is_empty() {
        return Err(OdooError::user("You need to add a line before posting."));
    }
    let today = state.clock.now().date();
    let invoice_date =
        state.raw_text("account.move", id, "invoice_date").unwrap_or_else(|| today.format("%Y-%m-%d").to_string());
    let year = invoice_date.get(..4).unwrap_or("2024").to_owned();
    let name = if name == "/" || name.is_empty() {
        let prefix = match state.raw_text("account.move", id, "move_type").as_deref() {
            Some("out_refund") => "RINV",
            Some("in_invoice") => "BILL",
            Some("in_refund") => "RBILL",
            Some("out_invoice") => "INV",
            _ => "MISC",
        };
        let number = state.next_sequence(&format!("account.move.{prefix}.{year}"));
        format!("{prefix}/{year}/{number:05}")
    } else {
        name
    };
    let total = state.raw_f64("account.move", id, "amount_total");
    write_one(
        state,
        "account.move",
        &[id],
        json!({"state": "posted", "name": name, "invoice_date": invoice_date, "invoice_date_due": invoice_date, "amount_residual": total}),
        ctx,
    )
}

/// A small valid PDF listing the invoices: one page, Helvetica, correct xref offsets.
pub fn invoice_pdf(state: &OdooState, ids: &[i64]) -> OdooResult<Vec<u8>> {
    let missing: Vec<i64> = ids.iter().copied().filter(|id| !state.exists("account.move", *id)).collect();
    if !missing.is_empty() {
        return Err(OdooError::missing("account.move", &missing));
    }
    let mut lines: Vec<String> = Vec::new();
    for id in ids {
        let partner = state
            .raw_id("account.move", *id, "partner_id")
            .map(|partner| display_name(state, "res.partner", partner))
            .unwrap_or_default();
        lines.push(format!("Invoice {}", display_name(state, "account.move", *id)));
        lines.push(format!("Customer: {partner}"));
        lines.push(format!("Origin: {}", state.raw_text("account.move", *id, "invoice_origin").unwrap_or_default()));
        lines.push(format!(
            "Untaxed: {:.2}  Tax: {:.2}  Total: {:.2} {}",
            state.raw_f64("account.move", *id, "amount_untaxed"),
            state.raw_f64("account.move", *id, "amount_tax"),
            state.raw_f64("account.move", *id, "amount_total"),
            state.raw_text("account.move", *id, "currency_code").unwrap_or_default()
        ));
        lines.push(String::new());
    }
    let mut content = String::from("BT /F1 12 Tf 50 780 Td 16 TL\n");
    for line in lines.iter().take(45) {
        let escaped: String = line
            .chars()
            .filter(|symbol| symbol.is_ascii() && !symbol.is_ascii_control())
            .flat_map(|symbol| match symbol {
                '(' | ')' | '\\' => vec!['\\', symbol],
                other => vec![other],
            })
            .collect();
        content.push_str(&format!("({escaped}) Tj T*\n"));
    }
    content.push_str("ET\n");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>".to_owned(),
        format!("<< /Length {} >>\nstream\n{content}endstream", content.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut pdf = String::from("%PDF-1.4\n");
    let mut offsets = Vec::new();
    for (position, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.push_str(&format!("{} 0 obj\n{object}\nendobj\n", position + 1));
    }
    let xref = pdf.len();
    pdf.push_str(&format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1));
    for offset in offsets {
        pdf.push_str(&format!("{offset:010} 00000 n \n"));
    }
    pdf.push_str(&format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1));
    Ok(pdf.into_bytes())
}

/// Creates the records every fresh Odoo database has: the admin user, the "All" category,
/// a few countries, the default sales tax, the standard locations, warehouse `WH`, the
/// public pricelist and the company partner.
pub fn install_base_data(state: &mut OdooState, login: &str) -> OdooResult<()> {
    let ctx = Context::default();
    let create = |state: &mut OdooState, model: &str, vals: Value| -> OdooResult<i64> {
        let Value::Object(vals) = vals else { return Ok(0) };
        state.create_one(model_def(model)?, vals, &ctx)
    };
    create(state, "res.users", json!({"name": "OdooBot", "login": "__system__", "active": false}))?;
    create(state, "res.users", json!({"name": "Mitchell Admin", "login": login}))?;
    create(state, "product.category", json!({"name": "All"}))?;
    for (name, code) in [
        ("United States", "US"),
        ("Germany", "DE"),
        ("France", "FR"),
        ("United Kingdom", "GB"),
        ("Netherlands", "NL"),
        ("Belgium", "BE"),
        ("Switzerland", "CH"),
        ("Spain", "ES"),
        ("Italy", "IT"),
    ] {
        create(state, "res.country", json!({"name": name, "code": code}))?;
    }
    create(state, "res.partner", json!({"name": "My Company", "is_company": true, "country_id": 6}))?;
    create(
        state,
        "account.tax",
        json!({"name": "15%", "amount": 15.0, "amount_type": "percent", "type_tax_use": "sale"}),
    )?;
    let physical = create(state, "stock.location", json!({"name": "Physical Locations", "usage": "view"}))?;
    let partners = create(state, "stock.location", json!({"name": "Partners", "usage": "view"}))?;
    create(state, "stock.location", json!({"name": "Vendors", "usage": "supplier", "location_id": partners}))?;
    create(state, "stock.location", json!({"name": "Customers", "usage": "customer", "location_id": partners}))?;
    let virtual_locations = create(state, "stock.location", json!({"name": "Virtual Locations", "usage": "view"}))?;
    create(
        state,
        "stock.location",
        json!({"name": "Inventory adjustment", "usage": "inventory", "location_id": virtual_locations}),
    )?;
    let _ = physical;
    create(state, "stock.warehouse", json!({"name": "My Company", "code": "WH", "partner_id": 1}))?;
    create(state, "product.pricelist", json!({"name": "Public Pricelist", "sequence": 1}))?;
    let _ = registry();
    Ok(())
}
