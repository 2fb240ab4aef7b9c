//! The in-memory ORM: records per model with integer ids, typed field conversion, x2many
//! command tuples, `search`/`read`/`create`/`write`/`unlink`, and a per-call journal so that a
//! failing call leaves nothing behind (each Odoo RPC call is one transaction).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{Duration, NaiveDate, NaiveDateTime, Timelike, Utc};
use serde_json::{Map, Value, json};

use super::business::{self, ComputeCache};
use super::control::{Counters, Faults};
use super::domain::{self, ids_of};
use super::error::{OdooError, OdooResult};
use super::schema::{DefaultValue, FieldDef, FieldKind, ModelDef, registry};
use super::webhook::{self, Trigger, Webhooks};

pub type Record = BTreeMap<&'static str, Value>;

/// Odoo's defaults for `base.login_cooldown_after` and `base.login_cooldown_duration`.
pub const LOGIN_COOLDOWN_AFTER: u32 = 5;
pub const LOGIN_COOLDOWN_SECONDS: i64 = 60;

/// Odoo's datetime format: naive UTC, second precision.
pub const DATETIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";
pub const DATE_FORMAT: &str = "%Y-%m-%d";

#[derive(Debug, Clone, Default)]
pub struct Table {
    pub next_id: i64,
    pub rows: BTreeMap<i64, Record>,
}

/// The simulated clock: real time shifted by an offset, or frozen at an instant.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    pub frozen: Option<NaiveDateTime>,
    pub offset_seconds: i64,
}

impl Clock {
    pub fn now(&self) -> NaiveDateTime {
        let now = self.frozen.unwrap_or_else(|| Utc::now().naive_utc() + Duration::seconds(self.offset_seconds));
        now.with_nanosecond(0).unwrap_or(now)
    }
    pub fn now_text(&self) -> String {
        self.now().format(DATETIME_FORMAT).to_string()
    }
}

/// The context keys the simulator honours.
#[derive(Debug, Clone)]
pub struct Context {
    pub active_test: bool,
    pub location: Option<i64>,
    pub warehouse: Option<i64>,
    pub inventory_mode: bool,
}

impl Default for Context {
    fn default() -> Self {
        Context { active_test: true, location: None, warehouse: None, inventory_mode: false }
    }
}

impl Context {
    pub fn from_value(value: Option<&Value>) -> Context {
        let mut ctx = Context::default();
        let Some(Value::Object(map)) = value else {
            return ctx;
        };
        if let Some(Value::Bool(active_test)) = map.get("active_test") {
            ctx.active_test = *active_test;
        }
        ctx.location = map.get("location").and_then(Value::as_i64);
        ctx.warehouse = map.get("warehouse").and_then(Value::as_i64);
        ctx.inventory_mode = map.get("inventory_mode").and_then(Value::as_bool).unwrap_or(false);
        ctx
    }
}

#[derive(Debug)]
enum JournalEntry {
    Row { model: &'static str, id: i64, before: Option<Record> },
    NextId { model: &'static str, before: i64 },
}

/// Everything the simulator holds. Locked briefly per request, never across an await.
#[derive(Debug)]
pub struct OdooState {
    tables: HashMap<&'static str, Table>,
    pub clock: Clock,
    journal: Option<Vec<JournalEntry>>,
    pub sequences: HashMap<String, i64>,
    pub counters: Counters,
    pub faults: Faults,
    pub db: String,
    pub login: String,
    pub password: String,
    pub api_key: String,
    pub uid: i64,
    pub sessions: HashSet<String>,
    /// Index of the record within the current `create` batch, for the partial-failure fault.
    pub batch_position: usize,
    /// Set while a variant creates its own template, which then must not add a default variant.
    pub skip_default_variant: bool,
    indexes: Indexes,
    /// (model, operation) pairs the simulated user may not perform: `read`, `write`,
    /// `create` or `unlink`.
    pub denied: Vec<(String, String)>,
    /// Failed logins in a row and when the last one happened, for Odoo's login cooldown.
    pub login_failures: u32,
    pub last_login_failure: Option<NaiveDateTime>,
    pub webhooks: Webhooks,
}

/// The fields looked up by value on every create (uniqueness checks, children of a parent):
/// indexed so that large seeds do not turn quadratic.
const INDEXED_FIELDS: &[(&str, &str)] = &[
    ("product.product", "barcode"),
    ("product.product", "default_code"),
    ("stock.quant", "product_id"),
    ("sale.order.line", "order_id"),
    ("account.move.line", "move_id"),
    ("res.partner", "parent_id"),
    ("stock.move", "picking_id"),
];

fn index_key(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn indexed_keys(model: &str, record: &Record) -> Vec<(&'static str, String)> {
    INDEXED_FIELDS
        .iter()
        .filter(|(indexed_model, _)| *indexed_model == model)
        .filter_map(|(_, field)| record.get(field).and_then(index_key).map(|key| (*field, key)))
        .collect()
}

#[derive(Debug, Default)]
struct Indexes {
    entries: HashMap<(&'static str, &'static str), HashMap<String, BTreeSet<i64>>>,
}

impl Indexes {
    fn add(&mut self, model: &'static str, id: i64, keys: Vec<(&'static str, String)>) {
        for (field, key) in keys {
            self.entries.entry((model, field)).or_default().entry(key).or_default().insert(id);
        }
    }
    fn remove(&mut self, model: &'static str, id: i64, keys: Vec<(&'static str, String)>) {
        for (field, key) in keys {
            if let Some(ids) = self.entries.get_mut(&(model, field)).and_then(|values| values.get_mut(&key)) {
                ids.remove(&id);
            }
        }
    }
}

pub fn model_def(name: &str) -> OdooResult<&'static ModelDef> {
    registry().model(name).ok_or_else(|| OdooError::user(format!("Object {name} doesn't exist")))
}

pub fn format_datetime(value: NaiveDateTime) -> String {
    value.format(DATETIME_FORMAT).to_string()
}

impl OdooState {
    pub fn new(db: &str, login: &str, password: &str, api_key: &str) -> OdooState {
        let tables =
            registry().models.keys().map(|name| (*name, Table { next_id: 1, rows: BTreeMap::new() })).collect();
        OdooState {
            tables,
            clock: Clock::default(),
            journal: None,
            sequences: HashMap::new(),
            counters: Counters::default(),
            faults: Faults::default(),
            db: db.into(),
            login: login.into(),
            password: password.into(),
            api_key: api_key.into(),
            uid: 2,
            sessions: HashSet::new(),
            batch_position: 0,
            skip_default_variant: false,
            indexes: Indexes::default(),
            denied: Vec::new(),
            login_failures: 0,
            last_login_failure: None,
            webhooks: Webhooks::default(),
        }
    }

    /// Checks a login the way `res.users._login` does: after `LOGIN_COOLDOWN_AFTER` failures
    /// in a row, every attempt (even a right one) fails for `LOGIN_COOLDOWN_SECONDS`.
    pub fn check_login(&mut self, db: &str, login: &str, password: &str) -> bool {
        let now = self.clock.now();
        let cooling = self.login_failures >= LOGIN_COOLDOWN_AFTER
            && self.last_login_failure.is_some_and(|last| (now - last).num_seconds() < LOGIN_COOLDOWN_SECONDS);
        if cooling {
            return false;
        }
        let accepted = db == self.db && login == self.login && (password == self.password || password == self.api_key);
        if accepted {
            self.login_failures = 0;
        } else {
            self.login_failures += 1;
            self.last_login_failure = Some(now);
        }
        accepted
    }

    /// Refuses an operation denied through the control API, with Odoo's access message.
    pub fn check_access(&self, model: &ModelDef, operation: &str) -> OdooResult<()> {
        if !self
            .denied
            .iter()
            .any(|(denied_model, denied_operation)| denied_model == model.name && denied_operation == operation)
        {
            return Ok(());
        }
        let verb = match operation {
            "read" => "access",
            "write" => "modify",
            "create" => "create",
            _ => "delete",
        };
        Err(OdooError::new(
            super::error::ErrorKind::AccessError,
            format!(
                "You are not allowed to {verb} '{}' ({}) records.\n\nThis operation is allowed for the following groups:\n\t- Administration/Settings\n\nContact your administrator to request access if necessary.",
                model.description, model.name
            ),
        ))
    }

    // ---- transactions -------------------------------------------------------------------

    pub fn begin(&mut self) {
        self.journal = Some(Vec::new());
    }

    pub fn commit(&mut self) {
        self.journal = None;
    }

    /// Undoes everything since `begin`, newest first.
    pub fn rollback(&mut self) {
        // Deliveries of a rolled-back call never leave.
        self.webhooks.outbox.clear();
        let Some(entries) = self.journal.take() else {
            return;
        };
        for entry in entries.into_iter().rev() {
            match entry {
                JournalEntry::Row { model, id, before } => {
                    let Some(table) = self.tables.get_mut(model) else { continue };
                    let current = match before {
                        Some(record) => {
                            let added = indexed_keys(model, &record);
                            let current = table.rows.insert(id, record);
                            self.indexes.add(model, id, added);
                            current
                        }
                        None => table.rows.remove(&id),
                    };
                    if let Some(current) = current {
                        self.indexes.remove(model, id, indexed_keys(model, &current));
                    }
                }
                JournalEntry::NextId { model, before } => {
                    if let Some(table) = self.tables.get_mut(model) {
                        table.next_id = before;
                    }
                }
            }
        }
    }

    // ---- raw rows ---------------------------------------------------------------------

    pub fn table(&self, model: &str) -> Option<&Table> {
        self.tables.get(model)
    }

    pub fn row(&self, model: &str, id: i64) -> Option<&Record> {
        self.tables.get(model).and_then(|table| table.rows.get(&id))
    }

    pub fn exists(&self, model: &str, id: i64) -> bool {
        self.row(model, id).is_some()
    }

    pub fn ids(&self, model: &str) -> Vec<i64> {
        self.tables.get(model).map(|table| table.rows.keys().copied().collect()).unwrap_or_default()
    }

    pub fn is_indexed(&self, model: &str, field: &str) -> bool {
        INDEXED_FIELDS.iter().any(|(indexed_model, indexed_field)| *indexed_model == model && *indexed_field == field)
    }

    /// Ids of the records whose indexed `field` holds `value` (see `INDEXED_FIELDS`); other
    /// fields are scanned.
    pub fn lookup(&self, model: &str, field: &str, value: &Value) -> Vec<i64> {
        let Some(key) = index_key(value) else { return Vec::new() };
        let indexed = INDEXED_FIELDS
            .iter()
            .any(|(indexed_model, indexed_field)| *indexed_model == model && *indexed_field == field);
        if !indexed {
            return self
                .find_ids(model, |record| record.get(field).and_then(index_key).as_deref() == Some(key.as_str()));
        }
        let model_key = INDEXED_FIELDS
            .iter()
            .find(|(indexed_model, indexed_field)| *indexed_model == model && *indexed_field == field);
        model_key
            .and_then(|(indexed_model, indexed_field)| self.indexes.entries.get(&(*indexed_model, *indexed_field)))
            .and_then(|values| values.get(&key))
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Ids of the records of `model` whose stored values satisfy `predicate`, without copying
    /// values: the scans business rules run on every create stay cheap on large seeds.
    pub fn find_ids(&self, model: &str, predicate: impl Fn(&Record) -> bool) -> Vec<i64> {
        self.tables
            .get(model)
            .map(|table| table.rows.iter().filter(|(_, record)| predicate(record)).map(|(id, _)| *id).collect())
            .unwrap_or_default()
    }

    /// A stored value as kept in the record, `false` when absent.
    pub fn raw(&self, model: &str, id: i64, field: &str) -> Value {
        self.row(model, id).and_then(|record| record.get(field)).cloned().unwrap_or(Value::Bool(false))
    }

    pub fn raw_f64(&self, model: &str, id: i64, field: &str) -> f64 {
        self.raw(model, id, field).as_f64().unwrap_or(0.0)
    }

    pub fn raw_id(&self, model: &str, id: i64, field: &str) -> Option<i64> {
        self.raw(model, id, field).as_i64()
    }

    pub fn raw_text(&self, model: &str, id: i64, field: &str) -> Option<String> {
        self.raw(model, id, field).as_str().map(str::to_owned)
    }

    fn insert_row(&mut self, model: &'static str, record: Record) -> i64 {
        let table = self.tables.entry(model).or_default();
        let id = table.next_id;
        let before = table.next_id;
        table.next_id += 1;
        let keys = indexed_keys(model, &record);
        table.rows.insert(id, record);
        self.indexes.add(model, id, keys);
        if let Some(journal) = self.journal.as_mut() {
            journal.push(JournalEntry::NextId { model, before });
            journal.push(JournalEntry::Row { model, id, before: None });
        }
        id
    }

    /// Changes stored fields without any validation or `write_date` bump.
    pub fn set_raw(&mut self, model: &'static str, id: i64, values: &[(&'static str, Value)]) {
        let Some(record) = self.tables.get_mut(model).and_then(|table| table.rows.get_mut(&id)) else {
            return;
        };
        if let Some(journal) = self.journal.as_mut() {
            journal.push(JournalEntry::Row { model, id, before: Some(record.clone()) });
        }
        let old_keys = indexed_keys(model, record);
        for (field, value) in values {
            record.insert(field, value.clone());
        }
        let new_keys = indexed_keys(model, record);
        if old_keys != new_keys {
            self.indexes.remove(model, id, old_keys);
            self.indexes.add(model, id, new_keys);
        }
    }

    fn delete_row(&mut self, model: &'static str, id: i64) {
        let Some(record) = self.tables.get_mut(model).and_then(|table| table.rows.remove(&id)) else {
            return;
        };
        self.indexes.remove(model, id, indexed_keys(model, &record));
        if let Some(journal) = self.journal.as_mut() {
            journal.push(JournalEntry::Row { model, id, before: Some(record) });
        }
    }

    /// Sets `write_date` (and the record's other values) directly: the control API's "touch".
    pub fn touch(&mut self, model: &'static str, id: i64, write_date: &str) {
        self.set_raw(model, id, &[("write_date", Value::String(write_date.into()))]);
    }

    pub fn next_sequence(&mut self, code: &str) -> i64 {
        let counter = self.sequences.entry(code.into()).or_insert(0);
        *counter += 1;
        *counter
    }

    // ---- values ------------------------------------------------------------------------

    /// A field's value in storage form (many2one as an id or `false`, x2many as an id list),
    /// computing computed and related fields.
    pub fn field_value(
        &self,
        model: &'static ModelDef,
        id: i64,
        field: &'static FieldDef,
        ctx: &Context,
        cache: &mut ComputeCache,
    ) -> Value {
        if field.name == "id" {
            return json!(id);
        }
        if field.name == "display_name" {
            return Value::String(self.display_name(model.name, id));
        }
        if let Some((through, target)) = field.related {
            let Some(related_id) = self.raw_id(model.name, id, through) else {
                return field.kind.empty_value();
            };
            let Some(through_field) = model.field(through) else { return field.kind.empty_value() };
            let Some(comodel) = through_field.kind.comodel().and_then(|name| registry().model(name)) else {
                return field.kind.empty_value();
            };
            let Some(target_field) = comodel.field(target) else { return field.kind.empty_value() };
            return self.field_value(comodel, related_id, target_field, ctx, cache);
        }
        if field.computed {
            return business::compute(self, model, id, field, ctx, cache);
        }
        if let FieldKind::One2many { comodel, inverse } = field.kind {
            return Value::Array(cache.children(self, comodel, inverse, id).into_iter().map(Value::from).collect());
        }
        match self.row(model.name, id).and_then(|record| record.get(field.name)) {
            Some(value) => value.clone(),
            None => field.kind.empty_value(),
        }
    }

    pub fn display_name(&self, model: &str, id: i64) -> String {
        business::display_name(self, model, id)
    }

    pub fn descendants(&self, model: &str, parent_field: &str, roots: &[i64]) -> HashSet<i64> {
        let mut children: HashMap<i64, Vec<i64>> = HashMap::new();
        if let Some(table) = self.tables.get(model) {
            for (id, record) in &table.rows {
                if let Some(parent) = record.get(parent_field).and_then(Value::as_i64) {
                    children.entry(parent).or_default().push(*id);
                }
            }
        }
        domain::closure(|id| children.get(&id).cloned().unwrap_or_default(), roots)
    }

    pub fn ancestors(&self, model: &str, parent_field: &str, roots: &[i64]) -> HashSet<i64> {
        domain::closure(|id| self.raw_id(model, id, parent_field).into_iter().collect(), roots)
    }

    // ---- search / read -----------------------------------------------------------------

    pub fn search(
        &self,
        model_name: &str,
        domain_value: &Value,
        offset: usize,
        limit: Option<usize>,
        order: Option<&str>,
        ctx: &Context,
    ) -> OdooResult<Vec<i64>> {
        let model = model_def(model_name)?;
        let parsed = domain::parse(model, domain_value)?;
        let filter_active = model.has_active() && ctx.active_test && !parsed.mentions("active");
        let terms =
            domain::parse_order(model, order.filter(|text| !text.trim().is_empty()).unwrap_or(model.default_order))?;
        let mut cache = ComputeCache::default();
        let candidates = parsed.candidates(self, model).unwrap_or_else(|| self.ids(model.name));
        let mut ids: Vec<i64> = candidates
            .into_iter()
            .filter(|id| !filter_active || self.raw(model.name, *id, "active") != Value::Bool(false))
            .filter(|id| parsed.matches(self, model, *id, ctx, &mut cache))
            .collect();
        domain::sort_ids(self, model, &mut ids, &terms, ctx, &mut cache);
        let ids: Vec<i64> = ids.into_iter().skip(offset).take(limit.unwrap_or(usize::MAX)).collect();
        Ok(ids)
    }

    pub fn search_count(
        &self,
        model_name: &str,
        domain_value: &Value,
        limit: Option<usize>,
        ctx: &Context,
    ) -> OdooResult<usize> {
        Ok(self.search(model_name, domain_value, 0, limit, Some("id"), ctx)?.len())
    }

    /// `read(ids, fields)`: an empty field list means every field.
    pub fn read(&self, model_name: &str, ids: &[i64], fields: &[String], ctx: &Context) -> OdooResult<Vec<Value>> {
        let model = model_def(model_name)?;
        let missing: Vec<i64> = ids.iter().copied().filter(|id| !self.exists(model.name, *id)).collect();
        if !missing.is_empty() {
            return Err(OdooError::missing(model.name, &missing));
        }
        let selected: Vec<&'static FieldDef> = if fields.is_empty() {
            model.fields.iter().collect()
        } else {
            let mut selected = Vec::new();
            for name in fields {
                selected.push(model.field(name).ok_or_else(|| OdooError::invalid_field(model.name, name))?);
            }
            selected
        };
        let mut cache = ComputeCache::default();
        let mut rows = Vec::with_capacity(ids.len());
        for id in ids {
            let mut row = Map::new();
            row.insert("id".into(), json!(id));
            for field in &selected {
                let value = self.field_value(model, *id, field, ctx, &mut cache);
                let value = match field.kind {
                    FieldKind::Many2one(comodel) => match value.as_i64() {
                        Some(related) if self.exists(comodel, related) => {
                            json!([related, self.display_name(comodel, related)])
                        }
                        _ => Value::Bool(false),
                    },
                    FieldKind::Char | FieldKind::Text => match value {
                        Value::String(text) if text.is_empty() => Value::Bool(false),
                        other => other,
                    },
                    _ => value,
                };
                row.insert(field.name.into(), value);
            }
            rows.push(Value::Object(row));
        }
        Ok(rows)
    }

    // ---- create / write / unlink -------------------------------------------------------

    pub fn create(&mut self, model_name: &str, vals_list: &[Value], ctx: &Context) -> OdooResult<Vec<i64>> {
        let model = model_def(model_name)?;
        let mut ids = Vec::with_capacity(vals_list.len());
        for (position, vals) in vals_list.iter().enumerate() {
            let Value::Object(vals) = vals else {
                return Err(OdooError::type_error(format!("'{}' object is not a mapping", python_type_name(vals))));
            };
            self.batch_position = position + 1;
            if let Some(message) = self.faults.partial_failure(model.name, position + 1) {
                return Err(OdooError::validation(message));
            }
            ids.push(self.create_one(model, vals.clone(), ctx)?);
        }
        self.batch_position = 0;
        Ok(ids)
    }

    pub fn create_one(
        &mut self,
        model: &'static ModelDef,
        mut vals: Map<String, Value>,
        ctx: &Context,
    ) -> OdooResult<i64> {
        for key in vals.keys() {
            if model.field(key).is_none() {
                return Err(OdooError::invalid_field(model.name, key));
            }
        }
        if let Some(existing) = business::merge_on_create(self, model, &vals, ctx)? {
            return Ok(existing);
        }
        business::prepare_create(self, model, &mut vals, ctx)?;
        let now = self.clock.now();
        for field in &model.fields {
            if vals.contains_key(field.name) {
                continue;
            }
            let default = match &field.default {
                DefaultValue::None => continue,
                DefaultValue::Value(value) => value.clone(),
                DefaultValue::Now => Value::String(format_datetime(now)),
                DefaultValue::Today => Value::String(now.date().format(DATE_FORMAT).to_string()),
            };
            vals.insert(field.name.into(), default);
        }
        let mut record = Record::new();
        let mut deferred: Vec<(&'static FieldDef, Value)> = Vec::new();
        for field in &model.fields {
            if matches!(field.name, "id" | "display_name" | "create_date" | "write_date") || field.computed {
                continue;
            }
            let value = vals.get(field.name);
            if field.kind.is_x2many() || field.related.is_some() {
                if let Some(value) = value {
                    deferred.push((field, value.clone()));
                }
                if matches!(field.kind, FieldKind::Many2many(_)) && field.related.is_none() {
                    record.insert(field.name, json!([]));
                }
                continue;
            }
            let converted = match value {
                Some(value) => self.convert(model, field, value)?,
                None => field.kind.empty_value(),
            };
            record.insert(field.name, converted);
        }
        for field in &model.fields {
            if field.required && field.is_stored() && record.get(field.name).is_none_or(is_empty_value) {
                return Err(not_null_error(model, field));
            }
        }
        let now_text = format_datetime(now);
        record.insert("create_date", Value::String(now_text.clone()));
        record.insert("write_date", Value::String(now_text));
        let id = self.insert_row(model.name, record);
        for (field, value) in deferred {
            if field.related.is_some() {
                self.write_related(model, id, field, value, ctx)?;
            } else {
                self.apply_x2many(model, id, field, &value, ctx)?;
            }
        }
        business::after_create(self, model, id, &vals, ctx)?;
        webhook::enqueue(self, model.name, id, Trigger::OnCreate);
        Ok(id)
    }

    pub fn write(&mut self, model_name: &str, ids: &[i64], vals: &Map<String, Value>, ctx: &Context) -> OdooResult<()> {
        let model = model_def(model_name)?;
        let missing: Vec<i64> = ids.iter().copied().filter(|id| !self.exists(model.name, *id)).collect();
        if !missing.is_empty() {
            return Err(OdooError::missing(model.name, &missing));
        }
        for key in vals.keys() {
            if model.field(key).is_none() {
                return Err(OdooError::invalid_field(model.name, key));
            }
        }
        let prepared = business::prepare_write(model, vals, ctx);
        let vals = &prepared;
        business::check_write(self, model, ids, vals, ctx)?;
        let now_text = self.clock.now_text();
        for id in ids {
            let mut scalars: Vec<(&'static str, Value)> = Vec::new();
            for (key, value) in vals {
                let Some(field) = model.field(key) else { continue };
                // Odoo drops the log-access columns and ignores computed fields without inverse.
                if matches!(field.name, "id" | "display_name" | "create_date" | "write_date") || field.computed {
                    continue;
                }
                if field.related.is_some() {
                    self.write_related(model, *id, field, value.clone(), ctx)?;
                } else if field.kind.is_x2many() {
                    self.apply_x2many(model, *id, field, value, ctx)?;
                } else {
                    let converted = self.convert(model, field, value)?;
                    if field.required && is_empty_value(&converted) {
                        return Err(not_null_error(model, field));
                    }
                    scalars.push((field.name, converted));
                }
            }
            scalars.push(("write_date", Value::String(now_text.clone())));
            self.set_raw(model.name, *id, &scalars);
        }
        business::after_write(self, model, ids, vals, ctx)?;
        for id in ids {
            webhook::enqueue(self, model.name, *id, Trigger::OnWrite);
        }
        Ok(())
    }

    pub fn unlink(&mut self, model_name: &str, ids: &[i64]) -> OdooResult<()> {
        let model = model_def(model_name)?;
        let missing: Vec<i64> = ids.iter().copied().filter(|id| !self.exists(model.name, *id)).collect();
        if !missing.is_empty() {
            return Err(OdooError::missing(model.name, &missing));
        }
        let recompute = business::before_unlink(self, model, ids)?;
        for id in ids {
            webhook::enqueue(self, model.name, *id, Trigger::OnUnlink);
        }
        for id in ids {
            self.unlink_cascade(model, *id)?;
        }
        for (recompute_model, recompute_id) in recompute {
            if self.exists(recompute_model, recompute_id) {
                business::recompute(self, recompute_model, recompute_id);
            }
        }
        Ok(())
    }

    /// Deletes one record and what depends on it: rows whose many2one is `ondelete=cascade`
    /// are deleted, optional references are cleared, required ones refuse the deletion.
    fn unlink_cascade(&mut self, model: &'static ModelDef, id: i64) -> OdooResult<()> {
        if !self.exists(model.name, id) {
            return Ok(());
        }
        self.delete_row(model.name, id);
        for other in registry().models.values() {
            for field in &other.fields {
                if !field.is_stored() {
                    continue;
                }
                match field.kind {
                    FieldKind::Many2one(comodel) if comodel == model.name => {
                        let referencing: Vec<i64> = self
                            .ids(other.name)
                            .into_iter()
                            .filter(|other_id| self.raw_id(other.name, *other_id, field.name) == Some(id))
                            .collect();
                        for other_id in referencing {
                            if field.cascade {
                                self.unlink_cascade(other, other_id)?;
                            } else if field.required {
                                return Err(OdooError::validation(format!(
                                    "The operation cannot be completed: another model requires the record being deleted. If possible, archive it instead.\n\nModel: {} ({}), Field: {} ({})",
                                    other.description, other.name, field.label, field.name
                                )));
                            } else {
                                self.set_raw(other.name, other_id, &[(field.name, Value::Bool(false))]);
                            }
                        }
                    }
                    FieldKind::Many2many(comodel) if comodel == model.name => {
                        let referencing: Vec<i64> = self
                            .ids(other.name)
                            .into_iter()
                            .filter(|other_id| ids_of(&self.raw(other.name, *other_id, field.name)).contains(&id))
                            .collect();
                        for other_id in referencing {
                            let kept: Vec<i64> = ids_of(&self.raw(other.name, other_id, field.name))
                                .into_iter()
                                .filter(|kept| *kept != id)
                                .collect();
                            self.set_raw(other.name, other_id, &[(field.name, json!(kept))]);
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn write_related(
        &mut self,
        model: &'static ModelDef,
        id: i64,
        field: &'static FieldDef,
        value: Value,
        ctx: &Context,
    ) -> OdooResult<()> {
        let Some((through, target)) = field.related else { return Ok(()) };
        let Some(target_id) = self.raw_id(model.name, id, through) else { return Ok(()) };
        let Some(comodel) = model.field(through).and_then(|through_field| through_field.kind.comodel()) else {
            return Ok(());
        };
        let mut vals = Map::new();
        vals.insert(target.into(), value);
        self.write(comodel, &[target_id], &vals, ctx)
    }

    /// Converts a value given by a client into the stored form, raising the errors Odoo raises.
    pub fn convert(&self, model: &'static ModelDef, field: &'static FieldDef, value: &Value) -> OdooResult<Value> {
        let wrong_value = || {
            OdooError::value(format!("Wrong value for {}.{}: {}", model.name, field.name, domain::python_repr(value)))
        };
        match field.kind {
            FieldKind::Char | FieldKind::Text => match value {
                Value::String(_) => Ok(value.clone()),
                Value::Bool(false) | Value::Null => Ok(Value::Bool(false)),
                Value::Number(number) => Ok(Value::String(number.to_string())),
                _ => Err(wrong_value()),
            },
            FieldKind::Integer => match value {
                Value::Bool(false) | Value::Null => Ok(json!(0)),
                Value::Bool(true) => Ok(json!(1)),
                Value::Number(number) => Ok(json!(number.as_f64().unwrap_or(0.0) as i64)),
                Value::String(text) => text
                    .trim()
                    .parse::<i64>()
                    .map(|parsed| json!(parsed))
                    .map_err(|_| OdooError::value(format!("invalid literal for int() with base 10: '{text}'"))),
                _ => Err(wrong_value()),
            },
            FieldKind::Float | FieldKind::Monetary => match value {
                Value::Bool(false) | Value::Null => Ok(json!(0.0)),
                Value::Bool(true) => Ok(json!(1.0)),
                Value::Number(number) => Ok(json!(number.as_f64().unwrap_or(0.0))),
                Value::String(text) => text
                    .trim()
                    .parse::<f64>()
                    .map(|parsed| json!(parsed))
                    .map_err(|_| OdooError::value(format!("could not convert string to float: '{text}'"))),
                _ => Err(wrong_value()),
            },
            FieldKind::Boolean => Ok(Value::Bool(match value {
                Value::Bool(flag) => *flag,
                Value::Null => false,
                Value::Number(number) => number.as_f64().unwrap_or(0.0) != 0.0,
                Value::String(text) => !text.is_empty(),
                Value::Array(items) => !items.is_empty(),
                Value::Object(map) => !map.is_empty(),
            })),
            FieldKind::Selection(allowed) => match value {
                Value::Bool(false) | Value::Null => Ok(Value::Bool(false)),
                Value::String(text) if allowed.contains(&text.as_str()) => Ok(value.clone()),
                _ => Err(wrong_value()),
            },
            FieldKind::Date => match value {
                Value::Bool(false) | Value::Null => Ok(Value::Bool(false)),
                Value::String(text) => {
                    let head = text.get(..10).unwrap_or(text);
                    NaiveDate::parse_from_str(head, DATE_FORMAT)
                        .map(|date| Value::String(date.format(DATE_FORMAT).to_string()))
                        .map_err(|_| OdooError::value(format!("time data '{text}' does not match format '%Y-%m-%d'")))
                }
                _ => Err(wrong_value()),
            },
            FieldKind::Datetime => match value {
                Value::Bool(false) | Value::Null => Ok(Value::Bool(false)),
                Value::String(text) => {
                    parse_datetime(text).map(|parsed| Value::String(format_datetime(parsed))).ok_or_else(|| {
                        OdooError::value(format!("time data '{text}' does not match format '%Y-%m-%d %H:%M:%S'"))
                    })
                }
                _ => Err(wrong_value()),
            },
            FieldKind::Many2one(comodel) => {
                let id = match value {
                    Value::Bool(false) | Value::Null => return Ok(Value::Bool(false)),
                    Value::Number(number) => number.as_i64(),
                    // A `[id, name]` pair as read returns it is accepted back.
                    Value::Array(pair) => pair.first().and_then(Value::as_i64),
                    _ => None,
                };
                let Some(id) = id else { return Err(wrong_value()) };
                if !self.exists(comodel, id) {
                    return Err(OdooError::missing(comodel, &[id]));
                }
                Ok(json!(id))
            }
            FieldKind::One2many { .. } | FieldKind::Many2many(_) => Err(wrong_value()),
        }
    }

    /// Applies x2many commands: `(0,0,vals)` create, `(1,id,vals)` update, `(2,id)` delete,
    /// `(3,id)` unlink, `(4,id)` link, `(5,)` clear, `(6,0,ids)` set. A plain id list on a
    /// many2many means `(6,0,ids)`.
    pub fn apply_x2many(
        &mut self,
        model: &'static ModelDef,
        id: i64,
        field: &'static FieldDef,
        value: &Value,
        ctx: &Context,
    ) -> OdooResult<()> {
        let commands = parse_commands(model, field, value)?;
        let comodel_name = field.kind.comodel().unwrap_or_default();
        let comodel = model_def(comodel_name)?;
        for command in commands {
            match command {
                Command::Create(vals) => {
                    let mut vals = vals;
                    if let FieldKind::One2many { inverse, .. } = field.kind {
                        vals.insert(inverse.into(), json!(id));
                    }
                    let child = self.create_one(comodel, vals, ctx)?;
                    if matches!(field.kind, FieldKind::Many2many(_)) {
                        self.m2m_link(model, id, field, &[child]);
                    }
                }
                Command::Update(child, vals) => self.write(comodel.name, &[child], &vals, ctx)?,
                Command::Delete(child) => {
                    if matches!(field.kind, FieldKind::Many2many(_)) {
                        self.m2m_unlink(model, id, field, child);
                    }
                    if self.exists(comodel.name, child) {
                        self.unlink(comodel.name, &[child])?;
                    }
                }
                Command::Unlink(child) => self.x2many_unlink(model, id, field, comodel, child, ctx)?,
                Command::Link(child) => {
                    if !self.exists(comodel.name, child) {
                        return Err(OdooError::missing(comodel.name, &[child]));
                    }
                    match field.kind {
                        FieldKind::One2many { inverse, .. } => {
                            let mut vals = Map::new();
                            vals.insert(inverse.into(), json!(id));
                            self.write(comodel.name, &[child], &vals, ctx)?;
                        }
                        _ => self.m2m_link(model, id, field, &[child]),
                    }
                }
                Command::Clear => {
                    let current = ids_of(&self.field_value(model, id, field, ctx, &mut ComputeCache::default()));
                    for child in current {
                        self.x2many_unlink(model, id, field, comodel, child, ctx)?;
                    }
                }
                Command::Set(children) => {
                    for child in &children {
                        if !self.exists(comodel.name, *child) {
                            return Err(OdooError::missing(comodel.name, &[*child]));
                        }
                    }
                    match field.kind {
                        FieldKind::One2many { inverse, .. } => {
                            let current =
                                ids_of(&self.field_value(model, id, field, ctx, &mut ComputeCache::default()));
                            for child in current.iter().filter(|child| !children.contains(child)) {
                                self.x2many_unlink(model, id, field, comodel, *child, ctx)?;
                            }
                            let mut vals = Map::new();
                            vals.insert(inverse.into(), json!(id));
                            for child in children.iter().filter(|child| !current.contains(child)) {
                                self.write(comodel.name, &[*child], &vals, ctx)?;
                            }
                        }
                        _ => {
                            let mut unique: Vec<i64> = Vec::new();
                            for child in children {
                                if !unique.contains(&child) {
                                    unique.push(child);
                                }
                            }
                            self.set_raw(model.name, id, &[(field.name, json!(unique))]);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn m2m_link(&mut self, model: &'static ModelDef, id: i64, field: &'static FieldDef, children: &[i64]) {
        let mut current = ids_of(&self.raw(model.name, id, field.name));
        for child in children {
            if !current.contains(child) {
                current.push(*child);
            }
        }
        self.set_raw(model.name, id, &[(field.name, json!(current))]);
    }

    fn m2m_unlink(&mut self, model: &'static ModelDef, id: i64, field: &'static FieldDef, child: i64) {
        let current: Vec<i64> =
            ids_of(&self.raw(model.name, id, field.name)).into_iter().filter(|kept| *kept != child).collect();
        self.set_raw(model.name, id, &[(field.name, json!(current))]);
    }

    /// `(3, id)`: for a one2many whose inverse is required (and cascading) the child is
    /// deleted, otherwise its inverse is cleared; for a many2many the link goes.
    fn x2many_unlink(
        &mut self,
        model: &'static ModelDef,
        id: i64,
        field: &'static FieldDef,
        comodel: &'static ModelDef,
        child: i64,
        ctx: &Context,
    ) -> OdooResult<()> {
        match field.kind {
            FieldKind::One2many { inverse, .. } => {
                if self.raw_id(comodel.name, child, inverse) != Some(id) {
                    return Ok(());
                }
                let inverse_required = comodel.field(inverse).is_some_and(|inverse_field| inverse_field.required);
                if inverse_required {
                    self.unlink(comodel.name, &[child])
                } else {
                    let mut vals = Map::new();
                    vals.insert(inverse.into(), Value::Bool(false));
                    self.write(comodel.name, &[child], &vals, ctx)
                }
            }
            _ => {
                self.m2m_unlink(model, id, field, child);
                Ok(())
            }
        }
    }
}

pub fn parse_datetime(text: &str) -> Option<NaiveDateTime> {
    let normalized = text.replace('T', " ");
    let head = normalized.get(..19).unwrap_or(&normalized);
    NaiveDateTime::parse_from_str(head, DATETIME_FORMAT)
        .ok()
        .or_else(|| NaiveDate::parse_from_str(head, DATE_FORMAT).ok().and_then(|date| date.and_hms_opt(0, 0, 0)))
}

fn is_empty_value(value: &Value) -> bool {
    matches!(value, Value::Null | Value::Bool(false)) || value.as_str().is_some_and(str::is_empty)
}

fn python_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(number) if number.is_i64() => "int",
        Value::Number(_) => "float",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// The message Odoo 16+ turns a PostgreSQL NOT NULL violation into.
fn not_null_error(model: &ModelDef, field: &FieldDef) -> OdooError {
    OdooError::validation(format!(
        "The operation cannot be completed:\n- Create/update: a mandatory field is not set.\n- Delete: another model requires the record being deleted. If possible, archive it instead.\n\nModel: {} ({})\nField: {} ({})\n",
        model.description, model.name, field.label, field.name
    ))
}

#[derive(Debug)]
enum Command {
    Create(Map<String, Value>),
    Update(i64, Map<String, Value>),
    Delete(i64),
    Unlink(i64),
    Link(i64),
    Clear,
    Set(Vec<i64>),
}

fn parse_commands(model: &ModelDef, field: &FieldDef, value: &Value) -> OdooResult<Vec<Command>> {
    let invalid = |item: &Value| {
        OdooError::value(format!(
            "Invalid command {} for field {}.{}",
            domain::python_repr(item),
            model.name,
            field.name
        ))
    };
    let items = match value {
        Value::Bool(false) | Value::Null => return Ok(vec![Command::Clear]),
        Value::Array(items) => items,
        other => return Err(invalid(other)),
    };
    if matches!(field.kind, FieldKind::Many2many(_)) && items.iter().all(Value::is_i64) {
        return Ok(vec![Command::Set(items.iter().filter_map(Value::as_i64).collect())]);
    }
    let mut commands = Vec::with_capacity(items.len());
    for item in items {
        let Some(parts) = item.as_array() else { return Err(invalid(item)) };
        let code = parts.first().and_then(Value::as_i64).ok_or_else(|| invalid(item))?;
        let target = || parts.get(1).and_then(Value::as_i64).ok_or_else(|| invalid(item));
        let vals = || match parts.get(2) {
            Some(Value::Object(map)) => Ok(map.clone()),
            _ => Err(invalid(item)),
        };
        commands.push(match code {
            0 => Command::Create(vals()?),
            1 => Command::Update(target()?, vals()?),
            2 => Command::Delete(target()?),
            3 => Command::Unlink(target()?),
            4 => Command::Link(target()?),
            5 => Command::Clear,
            6 => Command::Set(ids_of(parts.get(2).ok_or_else(|| invalid(item))?)),
            _ => return Err(invalid(item)),
        });
    }
    Ok(commands)
}

/// A record's many2one (or integer) value.
pub fn record_id(record: &Record, field: &str) -> Option<i64> {
    record.get(field).and_then(Value::as_i64)
}

/// A record's text value.
pub fn record_text<'a>(record: &'a Record, field: &str) -> Option<&'a str> {
    record.get(field).and_then(Value::as_str)
}
