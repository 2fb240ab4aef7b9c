//! Executes a prepared GraphQL operation's query fields against the shop: resolves each field
//! of each object and renders only what was selected, in Shopify's shapes (gids, money bags,
//! Relay connections).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value as Json, json};

use super::cost::is_connection;
use super::graphql::{GraphqlError, ResolvedField};
use super::search::{Candidate, PageRequest, SearchQuery, SearchValue, paginate, parse_id, parse_search};
use super::state::{Metafield, Order, ShopState};

/// The page size limit of every connection.
pub const MAX_PAGE_SIZE: u64 = 250;

pub fn gid(kind: &str, id: u64) -> String {
    format!("gid://shopify/{kind}/{id}")
}

/// Reads the numeric id of a gid of the expected type (`gid://shopify/Product/1`).
pub fn parse_gid(value: &str, kind: &str) -> Option<u64> {
    let rest = value.strip_prefix("gid://shopify/")?;
    let (found_kind, id) = rest.split_once('/')?;
    if found_kind != kind {
        return None;
    }
    id.split('?').next()?.parse().ok()
}

pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Shopify's `Decimal`/`Money` strings: `29.99`, `10.0`, `12.5`.
pub fn decimal(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.abs();
    let (units, rest) = (cents / 100, cents % 100);
    match rest {
        0 => format!("{sign}{units}.0"),
        r if r % 10 == 0 => format!("{sign}{units}.{}", r / 10),
        r => format!("{sign}{units}.{r:02}"),
    }
}

/// Parses a decimal amount into cents; `None` when it is not a number with at most 2 decimals.
pub fn parse_cents(value: &Json) -> Option<i64> {
    let text = match value {
        Json::String(s) => s.trim().to_string(),
        Json::Number(n) => n.to_string(),
        _ => return None,
    };
    let negative = text.starts_with('-');
    let digits = text.trim_start_matches(['-', '+']);
    let (units, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if units.is_empty() && fraction.is_empty() || fraction.len() > 2 && fraction[2..].chars().any(|c| c != '0') {
        return None;
    }
    let units: i64 = if units.is_empty() { 0 } else { units.parse().ok()? };
    let fraction = format!("{:0<2}", &fraction[..fraction.len().min(2)]);
    let cents = units.checked_mul(100)?.checked_add(fraction.parse::<i64>().ok()?)?;
    Some(if negative { -cents } else { cents })
}

pub fn money(cents: i64, currency: &str) -> Json {
    json!({"amount": decimal(cents), "currencyCode": currency})
}

pub fn money_bag(cents: i64, shop_currency: &str, presentment_currency: &str) -> Json {
    json!({"shopMoney": money(cents, shop_currency), "presentmentMoney": money(cents, presentment_currency)})
}

/// An object the executor can select fields from.
#[derive(Debug, Clone)]
pub enum Obj {
    Shop,
    Product(u64),
    Variant(u64),
    InventoryItem(u64),
    InventoryLevel(u64, u64),
    Location(u64),
    Customer(u64),
    Order(u64),
    LineItem(u64, usize),
    FulfillmentOrder(u64),
    FulfillmentOrderLine(u64, usize),
    Fulfillment(u64, usize),
    Refund(u64, usize),
    PriceList(u64),
    WebhookSubscription(u64),
    BulkOperation(u64),
    Metafield(Box<Metafield>, &'static str, u64),
    /// Plain data: fields are looked up by name.
    Json(Json),
    /// A mutation payload or other composite: named, already resolved fields.
    Fields(Vec<(String, Resolved)>),
}

#[derive(Debug, Clone)]
pub enum Resolved {
    Null,
    Value(Json),
    Object(Obj),
    List(Vec<Resolved>),
    Connection(super::search::Page<Obj>),
}

/// What execution needs besides the state.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub state: &'a ShopState,
    pub base_url: &'a str,
    pub shop_name: &'a str,
    /// Bulk operations read whole connections, without page sizes.
    pub unbounded: bool,
}

pub struct Executor<'a> {
    pub context: Context<'a>,
    pub errors: Vec<Json>,
}

fn typename(obj: &Obj) -> &'static str {
    match obj {
        Obj::Shop => "Shop",
        Obj::Product(_) => "Product",
        Obj::Variant(_) => "ProductVariant",
        Obj::InventoryItem(_) => "InventoryItem",
        Obj::InventoryLevel(..) => "InventoryLevel",
        Obj::Location(_) => "Location",
        Obj::Customer(_) => "Customer",
        Obj::Order(_) => "Order",
        Obj::LineItem(..) => "LineItem",
        Obj::FulfillmentOrder(_) => "FulfillmentOrder",
        Obj::FulfillmentOrderLine(..) => "FulfillmentOrderLineItem",
        Obj::Fulfillment(..) => "Fulfillment",
        Obj::Refund(..) => "Refund",
        Obj::PriceList(_) => "PriceList",
        Obj::WebhookSubscription(_) => "WebhookSubscription",
        Obj::BulkOperation(_) => "BulkOperation",
        Obj::Metafield(..) => "Metafield",
        Obj::Json(_) | Obj::Fields(_) => "",
    }
}

/// Pre-execution checks Shopify makes on the document: page sizes of connections.
pub fn validate(fields: &[ResolvedField], path: &mut Vec<String>, errors: &mut Vec<Json>) {
    for field in fields {
        path.push(field.key.clone());
        if field.name == "nodes"
            && let Some(ids) = field.argument("ids").and_then(Json::as_array)
            && ids.len() > MAX_PAGE_SIZE as usize
        {
            errors.push(json!({
                "message": format!("The ids argument of nodes accepts at most {MAX_PAGE_SIZE} ids, got {}", ids.len()),
                "locations": [{"line": field.position.line, "column": field.position.column}],
                "path": path,
                "extensions": {"code": "BAD_REQUEST"},
            }));
        }
        if is_connection(field) {
            let first = field.argument("first");
            let last = field.argument("last");
            if first.is_none() && last.is_none() {
                errors.push(json!({
                    "message": "you must provide one of first or last",
                    "locations": [{"line": field.position.line, "column": field.position.column}],
                    "path": path,
                }));
            }
            for (name, value) in [("first", first), ("last", last)] {
                let Some(value) = value else { continue };
                let n = value.as_i64().unwrap_or(-1);
                if !(0..=MAX_PAGE_SIZE as i64).contains(&n) {
                    errors.push(json!({
                        "message": format!("The requested page size for `{}` exceeds the maximum of {MAX_PAGE_SIZE} (argument `{name}`: {value})", field.name),
                        "locations": [{"line": field.position.line, "column": field.position.column}],
                        "path": path,
                        "extensions": {"code": "BAD_REQUEST"},
                    }));
                }
            }
        }
        validate(&field.selections, path, errors);
        path.pop();
    }
}

impl<'a> Executor<'a> {
    pub fn new(context: Context<'a>) -> Self {
        Self { context, errors: Vec::new() }
    }

    fn state(&self) -> &'a ShopState {
        self.context.state
    }

    /// Renders the selection of the root query fields.
    pub fn run_query(&mut self, fields: &[ResolvedField]) -> Json {
        let mut data = Map::new();
        for field in fields {
            let value = match self.root_field(field) {
                Ok(resolved) => self.render(&resolved, field),
                Err(message) => {
                    self.field_error(field, message);
                    Json::Null
                }
            };
            data.insert(field.key.clone(), value);
        }
        Json::Object(data)
    }

    pub fn field_error(&mut self, field: &ResolvedField, message: String) {
        self.errors.push(json!({
            "message": message,
            "locations": [{"line": field.position.line, "column": field.position.column}],
            "path": [field.key],
        }));
    }

    pub fn render(&mut self, resolved: &Resolved, field: &ResolvedField) -> Json {
        match resolved {
            Resolved::Null => Json::Null,
            Resolved::Value(value) => match value {
                Json::Object(_) if !field.selections.is_empty() => {
                    self.project(&Obj::Json(value.clone()), &field.selections)
                }
                Json::Array(items) if !field.selections.is_empty() => {
                    Json::Array(items.iter().map(|i| self.render(&Resolved::Value(i.clone()), field)).collect())
                }
                other => other.clone(),
            },
            Resolved::Object(obj) => self.project(obj, &field.selections),
            Resolved::List(items) => Json::Array(items.iter().map(|i| self.render(i, field)).collect()),
            Resolved::Connection(page) => {
                let mut out = Map::new();
                for selection in &field.selections {
                    let value = match selection.name.as_str() {
                        "edges" => Json::Array(
                            page.items
                                .iter()
                                .map(|(cursor, node)| {
                                    let mut edge = Map::new();
                                    for edge_field in &selection.selections {
                                        let value = match edge_field.name.as_str() {
                                            "cursor" => Json::String(cursor.clone()),
                                            "node" => self.project(node, &edge_field.selections),
                                            "__typename" => json!("Edge"),
                                            _ => Json::Null,
                                        };
                                        edge.insert(edge_field.key.clone(), value);
                                    }
                                    Json::Object(edge)
                                })
                                .collect(),
                        ),
                        "nodes" => Json::Array(
                            page.items.iter().map(|(_, node)| self.project(node, &selection.selections)).collect(),
                        ),
                        "pageInfo" => {
                            let info = json!({
                                "hasNextPage": page.has_next_page,
                                "hasPreviousPage": page.has_previous_page,
                                "startCursor": page.items.first().map(|i| i.0.clone()),
                                "endCursor": page.items.last().map(|i| i.0.clone()),
                            });
                            self.project(&Obj::Json(info), &selection.selections)
                        }
                        _ => Json::Null,
                    };
                    out.insert(selection.key.clone(), value);
                }
                Json::Object(out)
            }
        }
    }

    pub fn project(&mut self, obj: &Obj, selections: &[ResolvedField]) -> Json {
        let mut out = Map::new();
        let kind = typename(obj);
        for field in selections {
            if let Some(condition) = &field.type_condition
                && !kind.is_empty()
                && condition != kind
                && !matches!(condition.as_str(), "Node" | "HasMetafields")
            {
                continue;
            }
            if field.name == "__typename" {
                out.insert(field.key.clone(), json!(kind));
                continue;
            }
            let value = match self.field(obj, field) {
                Ok(resolved) => self.render(&resolved, field),
                Err(message) => {
                    self.field_error(field, message);
                    Json::Null
                }
            };
            out.insert(field.key.clone(), value);
        }
        Json::Object(out)
    }

    fn page_request(&self, field: &ResolvedField) -> PageRequest {
        let number = |name: &str| field.argument(name).and_then(Json::as_u64);
        let text = |name: &str| field.argument(name).and_then(Json::as_str).map(str::to_string);
        PageRequest {
            first: if self.context.unbounded { None } else { number("first") },
            last: if self.context.unbounded { None } else { number("last") },
            after: text("after"),
            before: text("before"),
            reverse: field.argument("reverse").and_then(Json::as_bool).unwrap_or(false),
        }
    }

    /// Builds a connection over `objects`: filters by `query:`, sorts by `sortKey`, paginates.
    fn connection(&self, field: &ResolvedField, objects: Vec<Obj>) -> Result<Resolved, String> {
        let search = field.argument("query").and_then(Json::as_str).map(parse_search).unwrap_or_default();
        let sort_key = field.argument("sortKey").and_then(Json::as_str).unwrap_or("ID").to_string();
        let candidates = objects
            .into_iter()
            .enumerate()
            .filter(|(_, obj)| self.search_matches(&search, obj))
            .map(|(position, obj)| {
                let id = self.object_id(&obj).unwrap_or(position as u64);
                let sort_value = match sort_key.as_str() {
                    "ID" | "RELEVANCE" => json!(id),
                    "POSITION" => json!(position),
                    key => self.sort_value(&obj, key),
                };
                Candidate { id, sort_value, node: obj }
            })
            .collect();
        paginate(candidates, &self.page_request(field)).map(Resolved::Connection)
    }

    /// A list in its natural order (variants by position, lines by index) as a connection.
    fn ordered_connection(&self, field: &ResolvedField, objects: Vec<Obj>) -> Result<Resolved, String> {
        let candidates = objects
            .into_iter()
            .enumerate()
            .map(|(position, obj)| Candidate {
                id: self.object_id(&obj).unwrap_or(position as u64),
                sort_value: json!(position),
                node: obj,
            })
            .collect();
        paginate(candidates, &self.page_request(field)).map(Resolved::Connection)
    }

    fn object_id(&self, obj: &Obj) -> Option<u64> {
        let state = self.state();
        Some(match obj {
            Obj::Product(id)
            | Obj::Variant(id)
            | Obj::InventoryItem(id)
            | Obj::Location(id)
            | Obj::Customer(id)
            | Obj::Order(id)
            | Obj::FulfillmentOrder(id)
            | Obj::PriceList(id)
            | Obj::WebhookSubscription(id)
            | Obj::BulkOperation(id) => *id,
            Obj::InventoryLevel(item, location) => state.inventory_levels.get(&(*item, *location))?.id,
            Obj::LineItem(order, index) => state.orders.get(order)?.line_items.get(*index)?.id,
            Obj::FulfillmentOrderLine(fo, index) => state.fulfillment_orders.get(fo)?.lines.get(*index)?.id,
            Obj::Fulfillment(order, index) => state.orders.get(order)?.fulfillments.get(*index)?.id,
            Obj::Refund(order, index) => state.orders.get(order)?.refunds.get(*index)?.id,
            Obj::Metafield(m, ..) => m.id,
            Obj::Json(_) | Obj::Fields(_) | Obj::Shop => return None,
        })
    }

    fn sort_value(&self, obj: &Obj, key: &str) -> Json {
        let state = self.state();
        let time = |t: DateTime<Utc>| json!(timestamp(t));
        match (obj, key) {
            (Obj::Product(id), _) => state.products.get(id).map_or(Json::Null, |p| match key {
                "UPDATED_AT" => time(p.updated_at),
                "CREATED_AT" => time(p.created_at),
                "TITLE" => json!(p.title),
                "VENDOR" => json!(p.vendor),
                "PRODUCT_TYPE" => json!(p.product_type),
                _ => json!(p.id),
            }),
            (Obj::Variant(id), _) => state.variants.get(id).map_or(Json::Null, |v| match key {
                "UPDATED_AT" => time(v.updated_at),
                "CREATED_AT" => time(v.created_at),
                "SKU" => json!(v.sku),
                _ => json!(v.id),
            }),
            (Obj::Customer(id), _) => state.customers.get(id).map_or(Json::Null, |c| match key {
                "UPDATED_AT" => time(c.updated_at),
                "CREATED_AT" => time(c.created_at),
                "NAME" => {
                    json!(format!("{} {}", c.first_name.as_deref().unwrap_or(""), c.last_name.as_deref().unwrap_or("")))
                }
                _ => json!(c.id),
            }),
            (Obj::Order(id), _) => state.orders.get(id).map_or(Json::Null, |o| match key {
                "UPDATED_AT" => time(o.updated_at),
                "CREATED_AT" | "PROCESSED_AT" => time(o.created_at),
                "ORDER_NUMBER" => json!(o.number),
                "TOTAL_PRICE" => json!(o.total_cents()),
                _ => json!(o.id),
            }),
            (Obj::FulfillmentOrder(id), _) => state.fulfillment_orders.get(id).map_or(Json::Null, |f| match key {
                "UPDATED_AT" => time(f.updated_at),
                "CREATED_AT" => time(f.created_at),
                _ => json!(f.id),
            }),
            (Obj::InventoryItem(id), _) => state.inventory_items.get(id).map_or(Json::Null, |i| match key {
                "UPDATED_AT" => time(i.updated_at),
                "CREATED_AT" => time(i.created_at),
                _ => json!(i.id),
            }),
            (Obj::Location(id), "NAME") => state.locations.get(id).map_or(Json::Null, |l| json!(l.name)),
            _ => self.object_id(obj).map_or(Json::Null, |id| json!(id)),
        }
    }

    fn search_matches(&self, search: &SearchQuery, obj: &Obj) -> bool {
        if search.is_empty() {
            return true;
        }
        let state = self.state();
        let lookup = |field: Option<&str>| -> Vec<SearchValue> {
            let text = |s: &str| SearchValue::Text(s.to_string());
            let id = self.object_id(obj).map(|id| SearchValue::Number(id as i64));
            match (obj, field) {
                (_, Some("id")) => id.into_iter().collect(),
                (Obj::Product(pid), _) => {
                    let Some(p) = state.products.get(pid) else { return vec![] };
                    let variants = p.variant_ids.iter().filter_map(|v| state.variants.get(v));
                    match field {
                        None | Some("title") => vec![text(&p.title)],
                        Some("handle") => vec![text(&p.handle)],
                        Some("status") => vec![text(&p.status)],
                        Some("vendor") => vec![text(&p.vendor)],
                        Some("product_type") => vec![text(&p.product_type)],
                        Some("tag") => p.tags.iter().map(|t| text(t)).collect(),
                        Some("sku") => variants.filter_map(|v| v.sku.as_deref().map(text)).collect(),
                        Some("barcode") => variants.filter_map(|v| v.barcode.as_deref().map(text)).collect(),
                        Some("updated_at") => vec![SearchValue::Time(p.updated_at)],
                        Some("created_at") => vec![SearchValue::Time(p.created_at)],
                        _ => vec![],
                    }
                }
                (Obj::Variant(vid), _) => {
                    let Some(v) = state.variants.get(vid) else { return vec![] };
                    match field {
                        Some("sku") | None => v.sku.as_deref().map(text).into_iter().collect(),
                        Some("barcode") => v.barcode.as_deref().map(text).into_iter().collect(),
                        Some("product_id") => vec![SearchValue::Number(v.product_id as i64)],
                        Some("updated_at") => vec![SearchValue::Time(v.updated_at)],
                        Some("created_at") => vec![SearchValue::Time(v.created_at)],
                        _ => vec![],
                    }
                }
                (Obj::InventoryItem(iid), _) => {
                    let Some(item) = state.inventory_items.get(iid) else { return vec![] };
                    let variant = state.variants.get(&item.variant_id);
                    match field {
                        Some("sku") | None => variant.and_then(|v| v.sku.as_deref()).map(text).into_iter().collect(),
                        Some("updated_at") => vec![SearchValue::Time(item.updated_at)],
                        Some("created_at") => vec![SearchValue::Time(item.created_at)],
                        _ => vec![],
                    }
                }
                (Obj::Customer(cid), _) => {
                    let Some(c) = state.customers.get(cid) else { return vec![] };
                    match field {
                        Some("email") => c.email.as_deref().map(text).into_iter().collect(),
                        Some("phone") => c.phone.as_deref().map(text).into_iter().collect(),
                        Some("tag") => c.tags.iter().map(|t| text(t)).collect(),
                        Some("updated_at") => vec![SearchValue::Time(c.updated_at)],
                        Some("created_at") => vec![SearchValue::Time(c.created_at)],
                        None => [c.email.as_deref(), c.first_name.as_deref(), c.last_name.as_deref()]
                            .into_iter()
                            .flatten()
                            .map(text)
                            .collect(),
                        _ => vec![],
                    }
                }
                (Obj::Order(oid), _) => {
                    let Some(o) = state.orders.get(oid) else { return vec![] };
                    match field {
                        Some("name") | None => vec![text(&o.name()), text(&o.number.to_string())],
                        Some("email") => o.email.as_deref().map(text).into_iter().collect(),
                        Some("financial_status") => vec![text(&o.financial_status)],
                        Some("fulfillment_status") => vec![text(&o.fulfillment_status)],
                        Some("status") => vec![text(match (o.cancelled_at, o.closed_at) {
                            (Some(_), _) => "cancelled",
                            (None, Some(_)) => "closed",
                            (None, None) => "open",
                        })],
                        Some("customer_id") => {
                            o.customer_id.map(|c| SearchValue::Number(c as i64)).into_iter().collect()
                        }
                        Some("sku") => o.line_items.iter().filter_map(|l| l.sku.as_deref().map(text)).collect(),
                        Some("tag") => o.tags.iter().map(|t| text(t)).collect(),
                        Some("updated_at") => vec![SearchValue::Time(o.updated_at)],
                        Some("created_at") | Some("processed_at") => vec![SearchValue::Time(o.created_at)],
                        _ => vec![],
                    }
                }
                (Obj::FulfillmentOrder(fid), _) => {
                    let Some(f) = state.fulfillment_orders.get(fid) else { return vec![] };
                    match field {
                        Some("status") => vec![text(&f.status)],
                        Some("updated_at") => vec![SearchValue::Time(f.updated_at)],
                        Some("created_at") => vec![SearchValue::Time(f.created_at)],
                        _ => vec![],
                    }
                }
                (Obj::Location(lid), None | Some("name")) => {
                    state.locations.get(lid).map(|l| text(&l.name)).into_iter().collect()
                }
                _ => vec![],
            }
        };
        search.matches(&lookup)
    }

    fn argument_id(&self, field: &ResolvedField, kind: &str) -> Option<u64> {
        field.argument("id").and_then(Json::as_str).and_then(|s| parse_gid(s, kind))
    }

    fn root_field(&mut self, field: &ResolvedField) -> Result<Resolved, String> {
        let state = self.state();
        let object = |exists: bool, obj: Obj| if exists { Resolved::Object(obj) } else { Resolved::Null };
        Ok(match field.name.as_str() {
            "shop" => Resolved::Object(Obj::Shop),
            "products" => self.connection(field, state.products.keys().map(|id| Obj::Product(*id)).collect())?,
            "product" => {
                let id = self.argument_id(field, "Product").unwrap_or(0);
                object(state.products.contains_key(&id), Obj::Product(id))
            }
            "productByHandle" => {
                let handle = field.argument("handle").and_then(Json::as_str).unwrap_or("");
                state
                    .products
                    .values()
                    .find(|p| p.handle == handle)
                    .map_or(Resolved::Null, |p| Resolved::Object(Obj::Product(p.id)))
            }
            "productByIdentifier" => {
                let identifier = field.argument("identifier").cloned().unwrap_or(Json::Null);
                let by_id = identifier.get("id").and_then(Json::as_str).and_then(|s| parse_gid(s, "Product"));
                let by_handle = identifier.get("handle").and_then(Json::as_str);
                state
                    .products
                    .values()
                    .find(|p| Some(p.id) == by_id || Some(p.handle.as_str()) == by_handle)
                    .map_or(Resolved::Null, |p| Resolved::Object(Obj::Product(p.id)))
            }
            "productVariants" => self.connection(field, state.variants.keys().map(|id| Obj::Variant(*id)).collect())?,
            "productVariant" => {
                let id = self.argument_id(field, "ProductVariant").unwrap_or(0);
                object(state.variants.contains_key(&id), Obj::Variant(id))
            }
            "locations" => self.connection(field, state.locations.keys().map(|id| Obj::Location(*id)).collect())?,
            "location" => match field.argument("id") {
                None => state.locations.keys().next().map_or(Resolved::Null, |id| Resolved::Object(Obj::Location(*id))),
                Some(_) => {
                    let id = self.argument_id(field, "Location").unwrap_or(0);
                    object(state.locations.contains_key(&id), Obj::Location(id))
                }
            },
            "inventoryItems" => {
                self.connection(field, state.inventory_items.keys().map(|id| Obj::InventoryItem(*id)).collect())?
            }
            "inventoryItem" => {
                let id = self.argument_id(field, "InventoryItem").unwrap_or(0);
                object(state.inventory_items.contains_key(&id), Obj::InventoryItem(id))
            }
            "inventoryLevel" => {
                let id = self.argument_id(field, "InventoryLevel").unwrap_or(0);
                state
                    .inventory_levels
                    .iter()
                    .find(|(_, level)| level.id == id)
                    .map_or(Resolved::Null, |((item, location), _)| {
                        Resolved::Object(Obj::InventoryLevel(*item, *location))
                    })
            }
            "customers" => self.connection(field, state.customers.keys().map(|id| Obj::Customer(*id)).collect())?,
            "customer" => {
                let id = self.argument_id(field, "Customer").unwrap_or(0);
                object(state.customers.contains_key(&id), Obj::Customer(id))
            }
            "orders" => self.connection(field, state.orders.keys().map(|id| Obj::Order(*id)).collect())?,
            "order" => {
                let id = self.argument_id(field, "Order").unwrap_or(0);
                object(state.orders.contains_key(&id), Obj::Order(id))
            }
            "fulfillmentOrders" => {
                self.connection(field, state.fulfillment_orders.keys().map(|id| Obj::FulfillmentOrder(*id)).collect())?
            }
            "fulfillmentOrder" => {
                let id = self.argument_id(field, "FulfillmentOrder").unwrap_or(0);
                object(state.fulfillment_orders.contains_key(&id), Obj::FulfillmentOrder(id))
            }
            "priceLists" => self.connection(field, state.price_lists.keys().map(|id| Obj::PriceList(*id)).collect())?,
            "priceList" => {
                let id = self.argument_id(field, "PriceList").unwrap_or(0);
                object(state.price_lists.contains_key(&id), Obj::PriceList(id))
            }
            "webhookSubscriptions" => {
                let topics: Vec<String> = field
                    .argument("topics")
                    .and_then(Json::as_array)
                    .map(|t| t.iter().filter_map(Json::as_str).map(str::to_string).collect())
                    .unwrap_or_default();
                let subscriptions = state
                    .webhook_subscriptions
                    .values()
                    .filter(|s| topics.is_empty() || topics.contains(&s.topic))
                    .map(|s| Obj::WebhookSubscription(s.id))
                    .collect();
                self.connection(field, subscriptions)?
            }
            "webhookSubscription" => {
                let id = self.argument_id(field, "WebhookSubscription").unwrap_or(0);
                object(state.webhook_subscriptions.contains_key(&id), Obj::WebhookSubscription(id))
            }
            "currentBulkOperation" => {
                let kind = field.argument("type").and_then(Json::as_str).unwrap_or("QUERY");
                state
                    .bulk_operations
                    .values()
                    .rev()
                    .find(|b| b.kind == kind)
                    .map_or(Resolved::Null, |b| Resolved::Object(Obj::BulkOperation(b.id)))
            }
            "bulkOperation" => {
                let id = self.argument_id(field, "BulkOperation").unwrap_or(0);
                object(state.bulk_operations.contains_key(&id), Obj::BulkOperation(id))
            }
            "node" => field.argument("id").and_then(Json::as_str).map_or(Resolved::Null, |id| self.node(id)),
            "nodes" => Resolved::List(
                field
                    .argument("ids")
                    .and_then(Json::as_array)
                    .map(|ids| ids.iter().filter_map(Json::as_str).map(|id| self.node(id)).collect())
                    .unwrap_or_default(),
            ),
            other => return Err(format!("Field '{other}' doesn't exist on type 'QueryRoot'")),
        })
    }

    /// Any object by its gid, for `node`/`nodes`.
    fn node(&self, id: &str) -> Resolved {
        let state = self.state();
        let Some(rest) = id.strip_prefix("gid://shopify/") else { return Resolved::Null };
        let Some((kind, number)) = rest.split_once('/') else { return Resolved::Null };
        let Some(number) = parse_id(number).map(|n| n as u64) else { return Resolved::Null };
        let found = match kind {
            "Product" => state.products.contains_key(&number).then_some(Obj::Product(number)),
            "ProductVariant" => state.variants.contains_key(&number).then_some(Obj::Variant(number)),
            "InventoryItem" => state.inventory_items.contains_key(&number).then_some(Obj::InventoryItem(number)),
            "Location" => state.locations.contains_key(&number).then_some(Obj::Location(number)),
            "Customer" => state.customers.contains_key(&number).then_some(Obj::Customer(number)),
            "Order" => state.orders.contains_key(&number).then_some(Obj::Order(number)),
            "FulfillmentOrder" => {
                state.fulfillment_orders.contains_key(&number).then_some(Obj::FulfillmentOrder(number))
            }
            "BulkOperation" => state.bulk_operations.contains_key(&number).then_some(Obj::BulkOperation(number)),
            _ => None,
        };
        found.map_or(Resolved::Null, Resolved::Object)
    }

    fn metafields(
        &self,
        field: &ResolvedField,
        owner: &'static str,
        owner_id: u64,
        metafields: &[Metafield],
    ) -> Result<Resolved, String> {
        let namespace = field.argument("namespace").and_then(Json::as_str);
        let objects = metafields
            .iter()
            .filter(|m| namespace.is_none_or(|n| n == m.namespace))
            .map(|m| Obj::Metafield(Box::new(m.clone()), owner, owner_id))
            .collect();
        self.ordered_connection(field, objects)
    }

    fn metafield(field: &ResolvedField, owner: &'static str, owner_id: u64, metafields: &[Metafield]) -> Resolved {
        let namespace = field.argument("namespace").and_then(Json::as_str).unwrap_or("");
        let key = field.argument("key").and_then(Json::as_str).unwrap_or("");
        // `key` may also be given as "namespace.key".
        let (namespace, key) = match key.split_once('.') {
            Some((n, k)) if namespace.is_empty() => (n, k),
            _ => (namespace, key),
        };
        metafields
            .iter()
            .find(|m| m.namespace == namespace && m.key == key)
            .map_or(Resolved::Null, |m| Resolved::Object(Obj::Metafield(Box::new(m.clone()), owner, owner_id)))
    }

    /// Resolves one field of one object.
    pub fn field(&self, obj: &Obj, field: &ResolvedField) -> Result<Resolved, String> {
        let state = self.state();
        let name = field.name.as_str();
        let value = |v: Json| Resolved::Value(v);
        let missing = || Ok(Resolved::Null);
        match obj {
            Obj::Json(data) => Ok(data.get(name).cloned().map_or(Resolved::Null, Resolved::Value)),
            Obj::Fields(fields) => {
                Ok(fields.iter().find(|(n, _)| n == name).map_or(Resolved::Null, |(_, resolved)| resolved.clone()))
            }
            Obj::Shop => Ok(value(match name {
                "id" => json!(gid("Shop", 1)),
                "name" => json!(self.context.shop_name),
                "myshopifyDomain" => json!(format!("{}.myshopify.com", self.context.shop_name)),
                "currencyCode" => json!("EUR"),
                "ianaTimezone" => json!("UTC"),
                "plan" => json!({"displayName": "Basic", "shopifyPlus": false}),
                _ => Json::Null,
            })),
            Obj::Metafield(m, owner, owner_id) => Ok(value(match name {
                "id" => json!(gid("Metafield", m.id)),
                "namespace" => json!(m.namespace),
                "key" => json!(m.key),
                "value" => json!(m.value),
                "type" => json!(m.kind),
                "ownerType" => json!(match *owner {
                    "ProductVariant" => "PRODUCTVARIANT",
                    "Customer" => "CUSTOMER",
                    "Order" => "ORDER",
                    _ => "PRODUCT",
                }),
                "owner" => json!({"id": gid(owner, *owner_id)}),
                "updatedAt" => json!(timestamp(m.updated_at)),
                _ => Json::Null,
            })),
            Obj::Product(id) => {
                let Some(p) = state.products.get(id) else { return missing() };
                Ok(match name {
                    "id" => value(json!(gid("Product", p.id))),
                    "legacyResourceId" => value(json!(p.id.to_string())),
                    "title" => value(json!(p.title)),
                    "handle" => value(json!(p.handle)),
                    "status" => value(json!(p.status)),
                    "vendor" => value(json!(p.vendor)),
                    "productType" => value(json!(p.product_type)),
                    "descriptionHtml" => value(json!(p.description_html)),
                    "tags" => value(json!(p.tags)),
                    "createdAt" => value(json!(timestamp(p.created_at))),
                    "updatedAt" => value(json!(timestamp(p.updated_at))),
                    "totalInventory" => value(json!(
                        p.variant_ids
                            .iter()
                            .filter_map(|v| state.variants.get(v))
                            .flat_map(|v| state.inventory_levels.iter().filter(move |((item, _), _)| *item == v.inventory_item_id))
                            .map(|(_, level)| level.quantity("available"))
                            .sum::<i64>()
                    )),
                    "variantsCount" => value(json!({"count": p.variant_ids.len(), "precision": "EXACT"})),
                    "hasOnlyDefaultVariant" => value(json!(p.options.len() == 1 && p.options[0].values == ["Default Title"])),
                    "options" => value(Json::Array(
                        p.options
                            .iter()
                            .enumerate()
                            .map(|(n, o)| {
                                json!({
                                    "id": gid("ProductOption", o.id), "name": o.name, "position": n + 1, "values": o.values,
                                    "optionValues": o.values.iter().map(|v| json!({"name": v, "hasVariants": true})).collect::<Vec<_>>(),
                                })
                            })
                            .collect(),
                    )),
                    "variants" => self.ordered_connection(field, p.variant_ids.iter().map(|v| Obj::Variant(*v)).collect())?,
                    "images" | "media" => {
                        let images = p
                            .images
                            .iter()
                            .map(|i| {
                                let image = json!({"id": gid("ProductImage", i.id), "url": i.url, "src": i.url, "altText": i.alt});
                                Obj::Json(json!({
                                    "id": gid("MediaImage", i.id), "alt": i.alt, "altText": i.alt, "url": i.url, "src": i.url,
                                    "mediaContentType": "IMAGE", "status": "READY", "image": image, "preview": {"image": image},
                                }))
                            })
                            .collect();
                        self.ordered_connection(field, images)?
                    }
                    "featuredImage" => p.images.first().map_or(Resolved::Null, |i| {
                        value(json!({"id": gid("ProductImage", i.id), "url": i.url, "altText": i.alt}))
                    }),
                    "metafields" => self.metafields(field, "Product", p.id, &p.metafields)?,
                    "metafield" => Self::metafield(field, "Product", p.id, &p.metafields),
                    _ => Resolved::Null,
                })
            }
            Obj::Variant(id) => {
                let Some(v) = state.variants.get(id) else { return missing() };
                Ok(match name {
                    "id" => value(json!(gid("ProductVariant", v.id))),
                    "legacyResourceId" => value(json!(v.id.to_string())),
                    "title" => value(json!(v.title())),
                    "displayName" => value(json!(format!(
                        "{} - {}",
                        state.products.get(&v.product_id).map(|p| p.title.as_str()).unwrap_or(""),
                        v.title()
                    ))),
                    "sku" => value(json!(v.sku)),
                    "barcode" => value(json!(v.barcode)),
                    "price" => value(json!(decimal(v.price_cents))),
                    "compareAtPrice" => value(json!(v.compare_at_price_cents.map(decimal))),
                    "taxable" => value(json!(v.taxable)),
                    "inventoryPolicy" => value(json!(v.inventory_policy)),
                    "position" => value(json!(
                        state
                            .products
                            .get(&v.product_id)
                            .and_then(|p| p.variant_ids.iter().position(|x| *x == v.id))
                            .map(|n| n + 1)
                    )),
                    "selectedOptions" => value(Json::Array(
                        v.selected_options.iter().map(|(n, val)| json!({"name": n, "value": val})).collect(),
                    )),
                    "inventoryQuantity" => value(json!(
                        state
                            .inventory_levels
                            .iter()
                            .filter(|((item, _), _)| *item == v.inventory_item_id)
                            .map(|(_, level)| level.quantity("available"))
                            .sum::<i64>()
                    )),
                    "createdAt" => value(json!(timestamp(v.created_at))),
                    "updatedAt" => value(json!(timestamp(v.updated_at))),
                    "product" => Resolved::Object(Obj::Product(v.product_id)),
                    "inventoryItem" => Resolved::Object(Obj::InventoryItem(v.inventory_item_id)),
                    "metafields" => self.metafields(field, "ProductVariant", v.id, &v.metafields)?,
                    "metafield" => Self::metafield(field, "ProductVariant", v.id, &v.metafields),
                    _ => Resolved::Null,
                })
            }
            Obj::InventoryItem(id) => {
                let Some(item) = state.inventory_items.get(id) else { return missing() };
                Ok(match name {
                    "id" => value(json!(gid("InventoryItem", item.id))),
                    "legacyResourceId" => value(json!(item.id.to_string())),
                    "sku" => value(json!(state.variants.get(&item.variant_id).and_then(|v| v.sku.clone()))),
                    "tracked" => value(json!(item.tracked)),
                    "requiresShipping" => value(json!(true)),
                    "createdAt" => value(json!(timestamp(item.created_at))),
                    "updatedAt" => value(json!(timestamp(item.updated_at))),
                    "variant" => Resolved::Object(Obj::Variant(item.variant_id)),
                    "inventoryLevels" => self.ordered_connection(
                        field,
                        state
                            .inventory_levels
                            .keys()
                            .filter(|(i, _)| *i == item.id)
                            .map(|(i, l)| Obj::InventoryLevel(*i, *l))
                            .collect(),
                    )?,
                    "inventoryLevel" => {
                        let location =
                            field.argument("locationId").and_then(Json::as_str).and_then(|s| parse_gid(s, "Location"));
                        match location {
                            Some(l) if state.inventory_levels.contains_key(&(item.id, l)) => {
                                Resolved::Object(Obj::InventoryLevel(item.id, l))
                            }
                            _ => Resolved::Null,
                        }
                    }
                    _ => Resolved::Null,
                })
            }
            Obj::InventoryLevel(item, location) => {
                let Some(level) = state.inventory_levels.get(&(*item, *location)) else { return missing() };
                Ok(match name {
                    "id" => value(json!(format!("{}?inventory_item_id={item}", gid("InventoryLevel", level.id)))),
                    "updatedAt" => value(json!(timestamp(level.updated_at))),
                    "createdAt" => value(json!(timestamp(level.updated_at))),
                    "location" => Resolved::Object(Obj::Location(*location)),
                    "item" => Resolved::Object(Obj::InventoryItem(*item)),
                    "quantities" => {
                        let names: Vec<String> = field
                            .argument("names")
                            .and_then(Json::as_array)
                            .map(|n| n.iter().filter_map(Json::as_str).map(str::to_string).collect())
                            .unwrap_or_default();
                        if names.is_empty() {
                            return Err("Field 'quantities' is missing required arguments: names".into());
                        }
                        value(Json::Array(
                            names
                                .iter()
                                .map(|n| json!({"name": n, "quantity": level.quantity(n), "updatedAt": timestamp(level.updated_at)}))
                                .collect(),
                        ))
                    }
                    _ => Resolved::Null,
                })
            }
            Obj::Location(id) => {
                let Some(l) = state.locations.get(id) else { return missing() };
                Ok(match name {
                    "id" => value(json!(gid("Location", l.id))),
                    "legacyResourceId" => value(json!(l.id.to_string())),
                    "name" => value(json!(l.name)),
                    "isActive" => value(json!(l.is_active)),
                    "fulfillsOnlineOrders" => value(json!(true)),
                    "address" => value(l.address.clone()),
                    "createdAt" => value(json!(timestamp(l.created_at))),
                    "updatedAt" => value(json!(timestamp(l.updated_at))),
                    "inventoryLevels" => self.ordered_connection(
                        field,
                        state
                            .inventory_levels
                            .keys()
                            .filter(|(_, loc)| loc == id)
                            .map(|(i, loc)| Obj::InventoryLevel(*i, *loc))
                            .collect(),
                    )?,
                    _ => Resolved::Null,
                })
            }
            Obj::Customer(id) => {
                let Some(c) = state.customers.get(id) else { return missing() };
                Ok(match name {
                    "id" => value(json!(gid("Customer", c.id))),
                    "legacyResourceId" => value(json!(c.id.to_string())),
                    "email" => value(json!(c.email)),
                    "phone" => value(json!(c.phone)),
                    "firstName" => value(json!(c.first_name)),
                    "lastName" => value(json!(c.last_name)),
                    "displayName" => value(json!(
                        [c.first_name.as_deref(), c.last_name.as_deref()]
                            .into_iter()
                            .flatten()
                            .collect::<Vec<_>>()
                            .join(" ")
                    )),
                    "tags" => value(json!(c.tags)),
                    "state" => value(json!(c.state)),
                    "createdAt" => value(json!(timestamp(c.created_at))),
                    "updatedAt" => value(json!(timestamp(c.updated_at))),
                    "defaultAddress" => {
                        value(c.addresses.first().map(|a| with_gid(a, "MailingAddress")).unwrap_or(Json::Null))
                    }
                    "addresses" => {
                        value(Json::Array(c.addresses.iter().map(|a| with_gid(a, "MailingAddress")).collect()))
                    }
                    "addressesV2" => self.ordered_connection(
                        field,
                        c.addresses.iter().map(|a| Obj::Json(with_gid(a, "MailingAddress"))).collect(),
                    )?,
                    "metafields" => self.metafields(field, "Customer", c.id, &c.metafields)?,
                    "metafield" => Self::metafield(field, "Customer", c.id, &c.metafields),
                    "numberOfOrders" => {
                        value(json!(state.orders.values().filter(|o| o.customer_id == Some(c.id)).count().to_string()))
                    }
                    "orders" => self.connection(
                        field,
                        state
                            .orders
                            .values()
                            .filter(|o| o.customer_id == Some(c.id))
                            .map(|o| Obj::Order(o.id))
                            .collect(),
                    )?,
                    _ => Resolved::Null,
                })
            }
            Obj::Order(id) => {
                let Some(o) = state.orders.get(id) else { return missing() };
                self.order_field(o, field)
            }
            Obj::LineItem(order_id, index) => {
                let Some(o) = state.orders.get(order_id) else { return missing() };
                let Some(line) = o.line_items.get(*index) else { return missing() };
                let bag = |cents: i64| value(money_bag(cents, &o.currency, &o.presentment_currency));
                let tax = Order::line_tax_cents(line);
                Ok(match name {
                    "id" => value(json!(gid("LineItem", line.id))),
                    "title" | "name" => value(json!(line.title)),
                    "sku" => value(json!(line.sku)),
                    "quantity" => value(json!(line.quantity)),
                    "currentQuantity" => value(json!(line.quantity - line.refunded_quantity)),
                    "refundableQuantity" => value(json!(line.quantity - line.refunded_quantity)),
                    "unfulfilledQuantity" => value(json!(
                        o.fulfillment_order_ids
                            .iter()
                            .filter_map(|f| state.fulfillment_orders.get(f))
                            .flat_map(|f| f.lines.iter())
                            .filter(|l| l.line_item_id == line.id)
                            .map(|l| l.remaining_quantity)
                            .sum::<i64>()
                    )),
                    "requiresShipping" | "taxable" => value(json!(true)),
                    "originalUnitPriceSet" => bag(line.unit_price_cents),
                    "discountedUnitPriceSet" => bag(line.unit_price_cents - line.discount_cents / line.quantity.max(1)),
                    "originalTotalSet" => bag(line.unit_price_cents * line.quantity),
                    "discountedTotalSet" => bag(line.unit_price_cents * line.quantity - line.discount_cents),
                    "totalDiscountSet" => bag(line.discount_cents),
                    "taxLines" => value(json!([{
                        "title": "VAT", "rate": line.tax_rate_basis_points as f64 / 10_000.0,
                        "ratePercentage": line.tax_rate_basis_points as f64 / 100.0,
                        "priceSet": money_bag(tax, &o.currency, &o.presentment_currency),
                    }])),
                    "discountAllocations" => value(if line.discount_cents > 0 {
                        json!([{
                            "allocatedAmountSet": money_bag(line.discount_cents, &o.currency, &o.presentment_currency),
                            "discountApplication": {"index": 0},
                        }])
                    } else {
                        json!([])
                    }),
                    "variant" => line
                        .variant_id
                        .filter(|v| state.variants.contains_key(v))
                        .map_or(Resolved::Null, |v| Resolved::Object(Obj::Variant(v))),
                    "product" => line
                        .product_id
                        .filter(|p| state.products.contains_key(p))
                        .map_or(Resolved::Null, |p| Resolved::Object(Obj::Product(p))),
                    _ => Resolved::Null,
                })
            }
            Obj::FulfillmentOrder(id) => {
                let Some(f) = state.fulfillment_orders.get(id) else { return missing() };
                Ok(match name {
                    "id" => value(json!(gid("FulfillmentOrder", f.id))),
                    "status" => value(json!(f.status)),
                    "requestStatus" => value(json!("UNSUBMITTED")),
                    "createdAt" => value(json!(timestamp(f.created_at))),
                    "updatedAt" => value(json!(timestamp(f.updated_at))),
                    "order" => Resolved::Object(Obj::Order(f.order_id)),
                    "orderId" => value(json!(gid("Order", f.order_id))),
                    "assignedLocation" => {
                        let name = state.locations.get(&f.location_id).map(|l| l.name.clone());
                        value(json!({
                            "name": name,
                            "location": {"id": gid("Location", f.location_id), "name": name},
                        }))
                    }
                    "lineItems" => self.ordered_connection(
                        field,
                        (0..f.lines.len()).map(|n| Obj::FulfillmentOrderLine(f.id, n)).collect(),
                    )?,
                    _ => Resolved::Null,
                })
            }
            Obj::FulfillmentOrderLine(fo, index) => {
                let Some(f) = state.fulfillment_orders.get(fo) else { return missing() };
                let Some(line) = f.lines.get(*index) else { return missing() };
                Ok(match name {
                    "id" => value(json!(gid("FulfillmentOrderLineItem", line.id))),
                    "totalQuantity" => value(json!(line.total_quantity)),
                    "remainingQuantity" => value(json!(line.remaining_quantity)),
                    "lineItem" => state
                        .orders
                        .get(&f.order_id)
                        .and_then(|o| o.line_items.iter().position(|l| l.id == line.line_item_id))
                        .map_or(Resolved::Null, |n| Resolved::Object(Obj::LineItem(f.order_id, n))),
                    "sku" => value(json!(
                        state
                            .orders
                            .get(&f.order_id)
                            .and_then(|o| o.line_items.iter().find(|l| l.id == line.line_item_id))
                            .and_then(|l| l.sku.clone())
                    )),
                    _ => Resolved::Null,
                })
            }
            Obj::Fulfillment(order_id, index) => {
                let Some(o) = state.orders.get(order_id) else { return missing() };
                let Some(fulfillment) = o.fulfillments.get(*index) else { return missing() };
                Ok(match name {
                    "id" => value(json!(gid("Fulfillment", fulfillment.id))),
                    "status" => value(json!(fulfillment.status)),
                    "createdAt" | "updatedAt" => value(json!(timestamp(fulfillment.created_at))),
                    "trackingInfo" => value(Json::Array(fulfillment.tracking.clone())),
                    "order" => Resolved::Object(Obj::Order(o.id)),
                    "fulfillmentLineItems" => self.ordered_connection(
                        field,
                        fulfillment
                            .line_items
                            .iter()
                            .map(|(line_id, quantity)| {
                                Obj::Json(json!({"id": gid("FulfillmentLineItem", *line_id), "quantity": quantity, "lineItem": {"id": gid("LineItem", *line_id)}}))
                            })
                            .collect(),
                    )?,
                    _ => Resolved::Null,
                })
            }
            Obj::Refund(order_id, index) => {
                let Some(o) = state.orders.get(order_id) else { return missing() };
                let Some(refund) = o.refunds.get(*index) else { return missing() };
                Ok(match name {
                    "id" => value(json!(gid("Refund", refund.id))),
                    "note" => value(json!(refund.note)),
                    "createdAt" => value(json!(timestamp(refund.created_at))),
                    "totalRefundedSet" => value(money_bag(refund.amount_cents, &o.currency, &o.presentment_currency)),
                    "order" => Resolved::Object(Obj::Order(o.id)),
                    "refundLineItems" => self.ordered_connection(
                        field,
                        refund
                            .line_items
                            .iter()
                            .map(|(line_id, quantity, restock)| {
                                // What the refunded units were sold for: their share of the
                                // line after its discount, tax included as in the line price.
                                let line = o.line_items.iter().find(|line| line.id == *line_id);
                                let subtotal = line.map_or(0, |line| {
                                    (line.unit_price_cents * line.quantity - line.discount_cents) * quantity
                                        / line.quantity.max(1)
                                });
                                let unit = line.map_or(0, |line| line.unit_price_cents);
                                Obj::Json(json!({
                                    "quantity": quantity, "restockType": restock,
                                    "priceSet": money_bag(unit, &o.currency, &o.presentment_currency),
                                    "subtotalSet": money_bag(subtotal, &o.currency, &o.presentment_currency),
                                    "lineItem": {"id": gid("LineItem", *line_id), "sku": line.and_then(|line| line.sku.clone())},
                                }))
                            })
                            .collect(),
                    )?,
                    _ => Resolved::Null,
                })
            }
            Obj::PriceList(id) => {
                let Some(list) = state.price_lists.get(id) else { return missing() };
                Ok(match name {
                    "id" => value(json!(gid("PriceList", list.id))),
                    "name" => value(json!(list.name)),
                    "currency" => value(json!(list.currency)),
                    "fixedPricesCount" => value(json!(list.fixed_prices.len())),
                    "prices" => self.ordered_connection(
                        field,
                        list.fixed_prices
                            .iter()
                            .map(|(variant, (price, compare))| {
                                Obj::Fields(vec![
                                    ("price".into(), value(money(*price, &list.currency))),
                                    (
                                        "compareAtPrice".into(),
                                        value(compare.map_or(Json::Null, |c| money(c, &list.currency))),
                                    ),
                                    ("originType".into(), value(json!("FIXED"))),
                                    ("variant".into(), Resolved::Object(Obj::Variant(*variant))),
                                ])
                            })
                            .collect(),
                    )?,
                    _ => Resolved::Null,
                })
            }
            Obj::WebhookSubscription(id) => {
                let Some(s) = state.webhook_subscriptions.get(id) else { return missing() };
                Ok(value(match name {
                    "id" => json!(gid("WebhookSubscription", s.id)),
                    "topic" => json!(s.topic),
                    "format" => json!(s.format),
                    "includeFields" => json!(s.include_fields),
                    "callbackUrl" | "uri" => json!(s.callback_url),
                    "endpoint" => json!({"__typename": "WebhookHttpEndpoint", "callbackUrl": s.callback_url}),
                    "createdAt" => json!(timestamp(s.created_at)),
                    "updatedAt" => json!(timestamp(s.updated_at)),
                    _ => Json::Null,
                }))
            }
            Obj::BulkOperation(id) => {
                let Some(b) = state.bulk_operations.get(id) else { return missing() };
                let url = (b.status == "COMPLETED" && b.result.is_some())
                    .then(|| format!("{}/_sim/bulk/{}.jsonl", self.context.base_url, b.id));
                Ok(value(match name {
                    "id" => json!(gid("BulkOperation", b.id)),
                    "status" => json!(b.status),
                    "type" => json!(b.kind),
                    "errorCode" => json!(b.error_code),
                    "query" => json!(b.query),
                    "objectCount" => json!(b.object_count.to_string()),
                    "rootObjectCount" => json!(b.root_object_count.to_string()),
                    "fileSize" => json!(b.file_size.map(|s| s.to_string())),
                    "url" => json!(url),
                    "partialDataUrl" => Json::Null,
                    "createdAt" => json!(timestamp(b.created_at)),
                    "completedAt" => json!(b.completed_at.map(timestamp)),
                    _ => Json::Null,
                }))
            }
        }
    }

    fn order_field(&self, o: &Order, field: &ResolvedField) -> Result<Resolved, String> {
        let state = self.state();
        let value = |v: Json| Resolved::Value(v);
        let bag = |cents: i64| value(money_bag(cents, &o.currency, &o.presentment_currency));
        Ok(match field.name.as_str() {
            "id" => value(json!(gid("Order", o.id))),
            "legacyResourceId" => value(json!(o.id.to_string())),
            "name" => value(json!(o.name())),
            "email" => value(json!(o.email)),
            "note" => value(json!(o.note)),
            "tags" => value(json!(o.tags)),
            "createdAt" | "processedAt" => value(json!(timestamp(o.created_at))),
            "updatedAt" => value(json!(timestamp(o.updated_at))),
            "cancelledAt" => value(json!(o.cancelled_at.map(timestamp))),
            "cancelReason" => value(json!(o.cancel_reason)),
            "closed" => value(json!(o.closed_at.is_some())),
            "closedAt" => value(json!(o.closed_at.map(timestamp))),
            "metafields" => self.metafields(field, "Order", o.id, &o.metafields)?,
            "metafield" => Self::metafield(field, "Order", o.id, &o.metafields),
            "currencyCode" => value(json!(o.currency)),
            "presentmentCurrencyCode" => value(json!(o.presentment_currency)),
            "taxesIncluded" => value(json!(o.taxes_included)),
            "displayFinancialStatus" => value(json!(o.financial_status)),
            "displayFulfillmentStatus" => value(json!(o.fulfillment_status)),
            "subtotalPriceSet" | "currentSubtotalPriceSet" => bag(o.subtotal_cents()),
            "totalPriceSet" | "currentTotalPriceSet" => bag(o.total_cents()),
            "totalTaxSet" | "currentTotalTaxSet" => bag(o.tax_cents()),
            "totalShippingPriceSet" => bag(o.shipping_cents),
            "totalDiscountsSet" | "currentTotalDiscountsSet" => bag(o.discount_cents()),
            "totalRefundedSet" => bag(o.refunded_cents()),
            "totalReceivedSet" => bag(o.received_cents()),
            "totalOutstandingSet" => bag(o.total_cents() - o.received_cents()),
            "paymentGatewayNames" => value(json!(o.gateways())),
            "taxLines" => value(json!([{
                "title": "VAT", "rate": 0.2, "ratePercentage": 20.0,
                "priceSet": money_bag(o.tax_cents(), &o.currency, &o.presentment_currency),
            }])),
            "shippingLines" => self.ordered_connection(
                field,
                vec![Obj::Json(json!({
                    "id": gid("ShippingLine", o.id), "title": o.shipping_title, "code": o.shipping_title,
                    "originalPriceSet": money_bag(o.shipping_cents, &o.currency, &o.presentment_currency),
                    "discountedPriceSet": money_bag(o.shipping_cents, &o.currency, &o.presentment_currency),
                    "taxLines": [{"title": "VAT", "rate": 0.2, "priceSet": money_bag(o.shipping_tax_cents(), &o.currency, &o.presentment_currency)}],
                }))],
            )?,
            "shippingLine" => value(json!({
                "title": o.shipping_title, "code": o.shipping_title,
                "originalPriceSet": money_bag(o.shipping_cents, &o.currency, &o.presentment_currency),
            })),
            "discountCodes" => value(json!(o.discount_code.iter().collect::<Vec<_>>())),
            "discountCode" => value(json!(o.discount_code)),
            "discountApplications" => self.ordered_connection(
                field,
                o.discount_code
                    .iter()
                    .map(|code| {
                        Obj::Json(json!({
                            "__typename": "DiscountCodeApplication", "code": code, "index": 0, "allocationMethod": "ACROSS",
                            "targetSelection": "EXPLICIT", "targetType": "LINE_ITEM",
                            "value": {"__typename": "PricingPercentageValue", "percentage": 10.0},
                        }))
                    })
                    .collect(),
            )?,
            "billingAddress" => value(o.billing_address.as_ref().map(|a| with_gid(a, "MailingAddress")).unwrap_or(Json::Null)),
            "shippingAddress" => value(o.shipping_address.as_ref().map(|a| with_gid(a, "MailingAddress")).unwrap_or(Json::Null)),
            "customer" => o.customer_id.filter(|c| state.customers.contains_key(c)).map_or(Resolved::Null, |c| Resolved::Object(Obj::Customer(c))),
            "lineItems" => self.ordered_connection(field, (0..o.line_items.len()).map(|n| Obj::LineItem(o.id, n)).collect())?,
            "transactions" => value(Json::Array(
                o.transactions
                    .iter()
                    .map(|t| {
                        let cents = t.get("amount_cents").and_then(Json::as_i64).unwrap_or(0);
                        json!({
                            "id": gid("OrderTransaction", t.get("id").and_then(Json::as_u64).unwrap_or(0)),
                            "kind": t.get("kind"), "status": t.get("status"), "gateway": t.get("gateway"),
                            "createdAt": t.get("created_at"),
                            "amountSet": money_bag(cents, &o.currency, &o.presentment_currency),
                        })
                    })
                    .collect(),
            )),
            "refunds" => Resolved::List((0..o.refunds.len()).map(|n| Resolved::Object(Obj::Refund(o.id, n))).collect()),
            "fulfillments" => Resolved::List((0..o.fulfillments.len()).map(|n| Resolved::Object(Obj::Fulfillment(o.id, n))).collect()),
            "fulfillmentOrders" => {
                self.connection(field, o.fulfillment_order_ids.iter().map(|f| Obj::FulfillmentOrder(*f)).collect())?
            }
            _ => Resolved::Null,
        })
    }
}

fn with_gid(address: &Json, kind: &str) -> Json {
    let mut address = address.clone();
    if let Some(id) = address.get("id").and_then(Json::as_u64) {
        address["id"] = json!(format!("{}?model_name=CustomerAddress", gid(kind, id)));
    }
    address
}

/// Counts nodes per connection path in rendered data; bulk operations use it for objectCount.
pub fn count_objects(data: &Json) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    if let Json::Object(map) = data {
        for (key, value) in map {
            if let Some(edges) = value.get("edges").and_then(Json::as_array) {
                *counts.entry(key.clone()).or_default() += edges.len() as u64;
            }
        }
    }
    counts
}

pub fn graphql_error_response(error: &GraphqlError) -> Json {
    json!({"errors": [error.to_json()]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_print_like_shopify() {
        assert_eq!(decimal(2999), "29.99");
        assert_eq!(decimal(1000), "10.0");
        assert_eq!(decimal(1250), "12.5");
        assert_eq!(parse_cents(&json!("12.5")), Some(1250));
        assert_eq!(parse_cents(&json!("-1.05")), Some(-105));
        assert_eq!(parse_cents(&json!("abc")), None);
        assert_eq!(parse_cents(&json!("1.234")), None);
    }
}
