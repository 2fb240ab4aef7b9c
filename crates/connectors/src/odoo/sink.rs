//! Writing to Odoo: customers (`res.partner` with delivery and invoice contacts), sales orders
//! (never created twice: an order is looked up by `client_order_ref` before it is created),
//! refunds as draft credit notes, and cancellations.
//!
//! Creates are batched: one `create` call with a list of value dicts. Odoo runs a call in one
//! transaction, so one bad record rolls the whole call back; the batch is then created one by
//! one, so that only the bad record fails.

use crate::odoo::OdooConnector;
use crate::odoo::client::SearchOptions;
use crate::odoo::map::{
    address_values, decimal, discount_percent, float, format_datetime, many2one_id, partner_type, partner_values,
    same_address, text,
};
use crate::{Capabilities, ConnectorError, ErrorKind, Sink, WriteBatch, WriteItem, WriteOutcome};
use async_trait::async_trait;
use erpsync_model::{Address, AddressKind, Customer, EntityKind, Order, OrderState, Record, Refund};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashMap};

/// A contact to create for an order: its address key and type.
type ContactKey = Option<(String, &'static str)>;

/// `['|', (field, op, a), '|', (field, op, b), (field, op, c)]`: any of the values.
fn any_of(field: &str, operator: &str, values: &[String]) -> Vec<Value> {
    let mut domain = Vec::new();
    for (index, value) in values.iter().enumerate() {
        if index + 1 < values.len() {
            domain.push(json!("|"));
        }
        domain.push(json!([field, operator, value]));
    }
    domain
}

fn failed(kind: ErrorKind, context: &str, message: impl Into<String>) -> WriteOutcome {
    WriteOutcome::Failed(ConnectorError::new(kind, context, message))
}

/// A dependency not synced yet: retried later, not a dead letter at once.
fn waiting(context: &str, message: impl Into<String>) -> WriteOutcome {
    WriteOutcome::Failed(ConnectorError::new(ErrorKind::NotFound, context, message).with_retryable(true))
}

fn done(item: &WriteItem, id: i64) -> WriteOutcome {
    match item.target_id {
        Some(_) => WriteOutcome::Updated { target_id: id.to_string() },
        None => WriteOutcome::Created { target_id: id.to_string() },
    }
}

#[async_trait]
impl Sink for OdooConnector {
    fn capabilities(&self, entity: EntityKind) -> Capabilities {
        let write =
            matches!(entity, EntityKind::Customer | EntityKind::Order | EntityKind::Refund | EntityKind::OrderStatus);
        Capabilities {
            write,
            lookup: matches!(entity, EntityKind::Customer | EntityKind::Order | EntityKind::Refund),
            ..Capabilities::default()
        }
    }

    fn max_batch_size(&self, _entity: EntityKind) -> usize {
        self.config.batch_size
    }

    async fn lookup(&self, entity: EntityKind, natural_keys: &[String]) -> Result<Vec<Option<String>>, ConnectorError> {
        if natural_keys.is_empty() {
            return Ok(Vec::new());
        }
        let found: HashMap<String, i64> = match entity {
            EntityKind::Customer => {
                let (emails, numbers): (Vec<String>, Vec<String>) =
                    natural_keys.iter().cloned().partition(|key| key.contains('@'));
                let mut found = HashMap::new();
                for (email, id) in self.partners_by_email(&emails).await? {
                    found.insert(email, id);
                }
                if !numbers.is_empty() {
                    let rows = self
                        .search_read(
                            "res.partner",
                            json!([["parent_id", "=", false], ["ref", "in", numbers]]),
                            &["ref".into()],
                            SearchOptions { order: Some("id asc"), ..Default::default() },
                        )
                        .await?;
                    for row in rows {
                        if let (Some(number), Some(id)) = (text(row.get("ref")), row.get("id").and_then(Value::as_i64))
                        {
                            found.entry(number).or_insert(id);
                        }
                    }
                }
                found
            }
            EntityKind::Order => {
                self.orders_by_number(natural_keys).await?.into_iter().map(|(k, (id, _))| (k, id)).collect()
            }
            EntityKind::Refund => self.credit_notes_by_ref(natural_keys).await?,
            _ => HashMap::new(),
        };
        Ok(natural_keys
            .iter()
            .map(|key| {
                let lookup_key = if entity == EntityKind::Customer { key.to_lowercase() } else { key.clone() };
                found.get(&lookup_key).or_else(|| found.get(key)).map(|id| id.to_string())
            })
            .collect())
    }

    async fn write_batch(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        match batch.entity {
            EntityKind::Customer => self.write_customers(batch).await,
            EntityKind::Order => self.write_orders(batch).await,
            EntityKind::Refund => self.write_refunds(batch).await,
            EntityKind::OrderStatus => self.write_status(batch).await,
            other => Err(ConnectorError::new(
                ErrorKind::InvalidRequest,
                format!("writing {other} to odoo {:?}", self.system),
                "the odoo connector writes customer, order, refund and order_status",
            )),
        }
    }
}

impl OdooConnector {
    /// Top-level partners by e-mail (case-insensitive): lower-cased e-mail -> lowest id.
    async fn partners_by_email(&self, emails: &[String]) -> Result<HashMap<String, i64>, ConnectorError> {
        let mut found = HashMap::new();
        if emails.is_empty() {
            return Ok(found);
        }
        let mut domain = vec![json!(["parent_id", "=", false])];
        domain.extend(any_of("email", "=ilike", emails));
        let rows = self
            .search_read(
                "res.partner",
                Value::Array(domain),
                &["email".into()],
                SearchOptions { order: Some("id asc"), ..Default::default() },
            )
            .await?;
        for row in rows {
            if let (Some(email), Some(id)) = (text(row.get("email")), row.get("id").and_then(Value::as_i64)) {
                found.entry(email.trim().to_lowercase()).or_insert(id);
            }
        }
        Ok(found)
    }

    /// Sales orders by the shop's order number: number -> (id, state).
    async fn orders_by_number(&self, numbers: &[String]) -> Result<HashMap<String, (i64, String)>, ConnectorError> {
        if numbers.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = self
            .search_read(
                "sale.order",
                json!([["client_order_ref", "in", numbers]]),
                &["client_order_ref".into(), "state".into(), "name".into()],
                SearchOptions { order: Some("id asc"), ..Default::default() },
            )
            .await?;
        let mut found = HashMap::new();
        for row in rows {
            if let (Some(number), Some(id)) = (text(row.get("client_order_ref")), row.get("id").and_then(Value::as_i64))
            {
                found.entry(number).or_insert((id, text(row.get("state")).unwrap_or_default()));
            }
        }
        Ok(found)
    }

    async fn credit_notes_by_ref(&self, numbers: &[String]) -> Result<HashMap<String, i64>, ConnectorError> {
        let rows = self
            .search_read(
                "account.move",
                json!([["move_type", "=", "out_refund"], ["ref", "in", numbers]]),
                &["ref".into()],
                SearchOptions { order: Some("id asc"), ..Default::default() },
            )
            .await?;
        let mut found = HashMap::new();
        for row in rows {
            if let (Some(number), Some(id)) = (text(row.get("ref")), row.get("id").and_then(Value::as_i64)) {
                found.entry(number).or_insert(id);
            }
        }
        Ok(found)
    }

    /// `product.product` by `default_code`: SKU -> id.
    async fn products_by_sku(&self, skus: &BTreeSet<String>) -> Result<HashMap<String, i64>, ConnectorError> {
        if skus.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = self
            .search_read(
                "product.product",
                json!([["default_code", "in", skus.iter().collect::<Vec<_>>()]]),
                &["default_code".into()],
                SearchOptions { order: Some("id asc"), ..Default::default() },
            )
            .await?;
        let mut found = HashMap::new();
        for row in rows {
            if let (Some(sku), Some(id)) = (text(row.get("default_code")), row.get("id").and_then(Value::as_i64)) {
                found.entry(sku).or_insert(id);
            }
        }
        Ok(found)
    }

    /// res.country ids by ISO code, cached.
    async fn countries(&self, codes: &BTreeSet<String>) -> Result<HashMap<String, i64>, ConnectorError> {
        let missing: Vec<String> = {
            let cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            codes.iter().filter(|code| !cache.countries.contains_key(*code)).cloned().collect()
        };
        if !missing.is_empty() {
            let rows = self
                .search_read(
                    "res.country",
                    json!([["code", "in", missing]]),
                    &["code".into()],
                    SearchOptions::default(),
                )
                .await?;
            let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for row in rows {
                if let (Some(code), Some(id)) = (text(row.get("code")), row.get("id").and_then(Value::as_i64)) {
                    cache.countries.insert(code.to_uppercase(), id);
                }
            }
        }
        let cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(codes.iter().filter_map(|code| cache.countries.get(code).map(|id| (code.clone(), *id))).collect())
    }

    /// Creates records in one call; when Odoo refuses the call because of one record's data,
    /// creates them one by one so that only that record fails. A failure that is not about the
    /// data (outage, auth) is the whole batch's.
    async fn create_isolating(
        &self,
        model: &str,
        vals_list: Vec<Value>,
    ) -> Result<Vec<Result<i64, ConnectorError>>, ConnectorError> {
        if vals_list.is_empty() {
            return Ok(Vec::new());
        }
        match self.create(model, vals_list.clone()).await {
            Ok(ids) => Ok(ids.into_iter().map(Ok).collect()),
            Err(error)
                if vals_list.len() > 1 && matches!(error.kind, ErrorKind::InvalidRequest | ErrorKind::NotFound) =>
            {
                let mut results = Vec::with_capacity(vals_list.len());
                for vals in vals_list {
                    match self.create(model, vec![vals]).await {
                        Ok(ids) => results.push(Ok(ids[0])),
                        Err(error) if matches!(error.kind, ErrorKind::InvalidRequest | ErrorKind::NotFound) => {
                            results.push(Err(error))
                        }
                        Err(error) => return Err(error),
                    }
                }
                Ok(results)
            }
            Err(error) if matches!(error.kind, ErrorKind::InvalidRequest | ErrorKind::NotFound) => Ok(vec![Err(error)]),
            Err(error) => Err(error),
        }
    }

    async fn write_customers(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let context = format!("writing customers to odoo {:?}", self.system);
        let mut outcomes: Vec<Option<WriteOutcome>> = batch.items.iter().map(|_| None).collect();
        let mut customers: Vec<(usize, &Customer)> = Vec::new();
        for (index, item) in batch.items.iter().enumerate() {
            match &item.record {
                Record::Customer(customer) => customers.push((index, customer)),
                other => {
                    outcomes[index] = Some(failed(
                        ErrorKind::InvalidRequest,
                        &context,
                        format!("expected a customer, got a {}", other.kind()),
                    ))
                }
            }
        }
        let emails: Vec<String> = customers
            .iter()
            .filter_map(|(_, customer)| customer.email.as_deref())
            .map(|email| email.trim().to_lowercase())
            .collect();
        let existing = self.partners_by_email(&emails).await?;
        let codes: BTreeSet<String> = customers
            .iter()
            .flat_map(|(_, customer)| customer.addresses.iter().map(|a| a.country.trim().to_uppercase()))
            .collect();
        let countries = self.countries(&codes).await?;

        let mut creates: Vec<(usize, Value)> = Vec::new();
        let mut updates: Vec<(usize, i64, &Customer)> = Vec::new();
        for (index, customer) in &customers {
            let item = &batch.items[*index];
            let known = item.target_id.as_deref().and_then(|id| id.parse::<i64>().ok()).or_else(|| {
                customer.email.as_deref().and_then(|email| existing.get(&email.trim().to_lowercase()).copied())
            });
            match known {
                Some(id) => updates.push((*index, id, customer)),
                None => creates.push((*index, new_partner_values(customer, &countries))),
            }
        }
        let results =
            self.create_isolating("res.partner", creates.iter().map(|(_, vals)| vals.clone()).collect()).await?;
        for ((index, _), result) in creates.iter().zip(results) {
            outcomes[*index] = Some(match result {
                Ok(id) => WriteOutcome::Created { target_id: id.to_string() },
                Err(error) => WriteOutcome::Failed(error),
            });
        }
        if !updates.is_empty() {
            let partner_ids: Vec<i64> = updates.iter().map(|(_, id, _)| *id).collect();
            let children = self
                .search_read(
                    "res.partner",
                    json!([["parent_id", "in", partner_ids]]),
                    &["parent_id".into(), "type".into(), "street".into(), "city".into(), "zip".into()],
                    SearchOptions::default(),
                )
                .await?;
            for (index, id, customer) in updates {
                let item = &batch.items[index];
                let mut vals = partner_values(customer);
                let name = vals.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
                let (main, others) = split_addresses(&customer.addresses);
                if let Some(main) = main {
                    for (key, value) in contact_values(main, "contact", &name, &countries) {
                        if key != "name" && key != "type" {
                            vals.insert(key, value);
                        }
                    }
                }
                // Contacts are added, never removed: orders and invoices may point at them.
                let mut commands = Vec::new();
                for address in others {
                    let kind = partner_type(address.kind);
                    let exists = children.iter().any(|child| {
                        many2one_id(child.get("parent_id")) == Some(id)
                            && text(child.get("type")).as_deref() == Some(kind)
                            && same_address(child, address)
                    });
                    if !exists {
                        commands.push(json!([0, 0, contact_values(address, kind, &name, &countries)]));
                    }
                }
                if !commands.is_empty() {
                    vals.insert("child_ids".into(), Value::Array(commands));
                }
                vals.remove("customer_rank");
                outcomes[index] = Some(match self.write("res.partner", &[id], Value::Object(vals)).await {
                    Ok(()) => done(item, id),
                    Err(error) if matches!(error.kind, ErrorKind::InvalidRequest | ErrorKind::NotFound) => {
                        WriteOutcome::Failed(error)
                    }
                    Err(error) => return Err(error),
                });
            }
        }
        Ok(outcomes.into_iter().map(|outcome| outcome.expect("every customer got an outcome")).collect())
    }

    /// Finds or creates the partner of each order and its invoice and delivery contacts:
    /// order index -> (partner, invoice contact, delivery contact).
    async fn order_partners(
        &self,
        orders: &[(usize, &Order)],
        context: &str,
    ) -> Result<HashMap<usize, Result<(i64, i64, i64), WriteOutcome>>, ConnectorError> {
        let mut result = HashMap::new();
        let emails: Vec<String> = orders
            .iter()
            .filter_map(|(_, order)| order.customer.email.as_deref())
            .map(|email| email.trim().to_lowercase())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut partners = self.partners_by_email(&emails).await?;
        let codes: BTreeSet<String> = orders
            .iter()
            .flat_map(|(_, order)| [&order.billing_address, &order.shipping_address])
            .flatten()
            .map(|address| address.country.trim().to_uppercase())
            .collect();
        let countries = self.countries(&codes).await?;

        // New partners, one per e-mail, from the order's customer and billing address.
        let mut new_partners: Vec<(String, Value)> = Vec::new();
        for (index, order) in orders {
            let Some(email) =
                order.customer.email.as_deref().map(|email| email.trim().to_lowercase()).filter(|e| !e.is_empty())
            else {
                result.insert(
                    *index,
                    Err(failed(
                        ErrorKind::InvalidRequest,
                        context,
                        "the order has no customer e-mail to find or create its partner by",
                    )),
                );
                continue;
            };
            if partners.contains_key(&email) || new_partners.iter().any(|(known, _)| *known == email) {
                continue;
            }
            let customer = Customer {
                email: Some(email.clone()),
                number: order.customer.number.clone(),
                first_name: order.customer.first_name.clone(),
                last_name: order.customer.last_name.clone(),
                company: order.customer.company.clone(),
                phone: order.customer.phone.clone(),
                ..Customer::default()
            };
            let mut vals = partner_values(&customer);
            if let Some(address) = order.billing_address.as_ref().or(order.shipping_address.as_ref()) {
                for (key, value) in contact_values(address, "contact", "", &countries) {
                    if key != "name" && key != "type" {
                        vals.insert(key, value);
                    }
                }
            }
            new_partners.push((email, Value::Object(vals)));
        }
        let created =
            self.create_isolating("res.partner", new_partners.iter().map(|(_, vals)| vals.clone()).collect()).await?;
        let mut partner_failures: HashMap<String, ConnectorError> = HashMap::new();
        for ((email, _), outcome) in new_partners.iter().zip(created) {
            match outcome {
                Ok(id) => {
                    partners.insert(email.clone(), id);
                }
                Err(error) => {
                    partner_failures.insert(email.clone(), error);
                }
            }
        }

        // Invoice and delivery contacts: the partner itself when its address is the same, an
        // existing child contact of that type at that address, or a new one.
        let partner_ids: Vec<i64> = partners.values().copied().collect();
        let known_contacts = if partner_ids.is_empty() {
            Vec::new()
        } else {
            self.search_read(
                "res.partner",
                json!(["|", ["id", "in", partner_ids], ["parent_id", "in", partner_ids]]),
                &["parent_id".into(), "type".into(), "street".into(), "city".into(), "zip".into()],
                SearchOptions { order: Some("id asc"), ..Default::default() },
            )
            .await?
        };
        let mut new_contacts: Vec<((i64, &'static str, String), Value)> = Vec::new();
        let mut pending: Vec<(usize, i64, [ContactKey; 2])> = Vec::new();
        for (index, order) in orders {
            if result.contains_key(index) {
                continue;
            }
            let email = order.customer.email.as_deref().unwrap_or_default().trim().to_lowercase();
            let Some(partner) = partners.get(&email).copied() else {
                let message = partner_failures
                    .get(&email)
                    .map(|error| format!("creating the customer {email} failed: {}", error.message))
                    .unwrap_or_else(|| format!("no partner for {email}"));
                result.insert(*index, Err(failed(ErrorKind::InvalidRequest, context, message)));
                continue;
            };
            let mut keys: [ContactKey; 2] = [None, None];
            for (slot, (address, kind)) in
                [(&order.billing_address, "invoice"), (&order.shipping_address, "delivery")].into_iter().enumerate()
            {
                let Some(address) = address else { continue };
                let matches = |contact: &&Value| {
                    let own = contact.get("id").and_then(Value::as_i64) == Some(partner);
                    let child = many2one_id(contact.get("parent_id")) == Some(partner)
                        && text(contact.get("type")).as_deref() == Some(kind);
                    (own || child) && same_address(contact, address)
                };
                if known_contacts.iter().any(|contact| matches(&contact)) {
                    continue;
                }
                let key = format!(
                    "{}|{}|{}",
                    address.line1.trim(),
                    address.city.trim(),
                    address.postal_code.as_deref().unwrap_or_default()
                );
                if !new_contacts.iter().any(|((p, k, a), _)| *p == partner && *k == kind && *a == key) {
                    let mut vals = contact_values(address, kind, "", &countries);
                    vals.insert("parent_id".into(), json!(partner));
                    new_contacts.push(((partner, kind, key.clone()), Value::Object(vals)));
                }
                keys[slot] = Some((key, kind));
            }
            pending.push((*index, partner, keys));
        }
        let created =
            self.create_isolating("res.partner", new_contacts.iter().map(|(_, vals)| vals.clone()).collect()).await?;
        let mut contact_ids: HashMap<(i64, &'static str, String), Result<i64, String>> = HashMap::new();
        for ((key, _), outcome) in new_contacts.into_iter().zip(created) {
            contact_ids.insert(key, outcome.map_err(|error| error.message));
        }
        for (index, partner, keys) in pending {
            let (_, order) = orders.iter().find(|(i, _)| *i == index).expect("pending orders come from `orders`");
            let mut chosen = [partner, partner];
            let mut problem = None;
            for (slot, (address, kind)) in
                [(&order.billing_address, "invoice"), (&order.shipping_address, "delivery")].into_iter().enumerate()
            {
                let Some(address) = address else { continue };
                match &keys[slot] {
                    Some((key, kind)) => match contact_ids.get(&(partner, *kind, key.clone())) {
                        Some(Ok(id)) => chosen[slot] = *id,
                        Some(Err(message)) => problem = Some(format!("creating the {kind} address failed: {message}")),
                        None => {}
                    },
                    None => {
                        let existing = known_contacts.iter().find(|contact| {
                            let child = many2one_id(contact.get("parent_id")) == Some(partner)
                                && text(contact.get("type")).as_deref() == Some(kind);
                            child && same_address(contact, address)
                        });
                        if let Some(id) = existing.and_then(|contact| contact.get("id")).and_then(Value::as_i64) {
                            chosen[slot] = id;
                        }
                    }
                }
            }
            result.insert(
                index,
                match problem {
                    Some(message) => Err(failed(ErrorKind::InvalidRequest, context, message)),
                    None => Ok((partner, chosen[0], chosen[1])),
                },
            );
        }
        Ok(result)
    }

    async fn write_orders(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let context = format!("writing orders to odoo {:?}", self.system);
        let mut outcomes: Vec<Option<WriteOutcome>> = batch.items.iter().map(|_| None).collect();
        let mut orders: Vec<(usize, &Order)> = Vec::new();
        for (index, item) in batch.items.iter().enumerate() {
            match &item.record {
                Record::Order(order) => orders.push((index, order)),
                other => {
                    outcomes[index] = Some(failed(
                        ErrorKind::InvalidRequest,
                        &context,
                        format!("expected an order, got a {}", other.kind()),
                    ))
                }
            }
        }

        // An order that already exists (a create whose answer was lost, a link not stored) is
        // never created again.
        let numbers: Vec<String> = orders.iter().map(|(_, order)| order.number.trim().to_string()).collect();
        let existing = self.orders_by_number(&numbers).await?;
        let mut new_orders: Vec<(usize, &Order)> = Vec::new();
        for (index, order) in &orders {
            let item = &batch.items[*index];
            match existing.get(order.number.trim()) {
                Some((id, state)) => {
                    outcomes[*index] = Some(self.settle_existing(item, order, *id, state, &context).await?)
                }
                None => new_orders.push((*index, order)),
            }
        }
        if new_orders.is_empty() {
            return Ok(outcomes.into_iter().map(|outcome| outcome.expect("every order got an outcome")).collect());
        }

        let line_fields = self.fields("sale.order.line").await?;
        let tax_field = line_fields.first_of(&["tax_ids", "tax_id"]).unwrap_or("tax_id");
        let mut skus: BTreeSet<String> = new_orders
            .iter()
            .flat_map(|(_, order)| order.lines.iter().map(|line| line.sku.trim().to_string()))
            .collect();
        if let Some(shipping) = &self.config.shipping_product {
            skus.insert(shipping.clone());
        }
        let products = self.products_by_sku(&skus).await?;
        let needs_taxes = new_orders.iter().any(|(_, order)| {
            order.lines.iter().any(|line| !line.tax_lines.is_empty())
                || order.shipping_lines.iter().any(|line| !line.tax_lines.is_empty())
        });
        let taxes = if needs_taxes {
            self.search_read(
                "account.tax",
                json!([["type_tax_use", "=", "sale"], ["amount_type", "=", "percent"]]),
                &["amount".into(), "price_include".into(), "name".into()],
                SearchOptions { order: Some("sequence asc, id asc"), ..Default::default() },
            )
            .await?
        } else {
            Vec::new()
        };
        let pricelists = self.pricelist_ids(&context).await?;

        // Orders that cannot be written yet (unknown SKU) or at all (data) fail before any
        // partner is created for them.
        let mut ready: Vec<(usize, &Order)> = Vec::new();
        for (index, order) in &new_orders {
            let context = format!("{context}: order {}", order.number);
            if let Some(line) = order.lines.iter().find(|line| !products.contains_key(line.sku.trim())) {
                outcomes[*index] = Some(waiting(
                    &context,
                    format!(
                        "waits for product SKU {:?} to be synced to odoo (no product.product has it as internal reference)",
                        line.sku
                    ),
                ));
                continue;
            }
            if !order.shipping_lines.is_empty() {
                match &self.config.shipping_product {
                    None => {
                        outcomes[*index] = Some(failed(
                            ErrorKind::InvalidRequest,
                            &context,
                            "the order has shipping lines but the odoo system has no shipping_product configured",
                        ));
                        continue;
                    }
                    Some(code) if !products.contains_key(code) => {
                        outcomes[*index] = Some(failed(
                            ErrorKind::InvalidRequest,
                            &context,
                            format!("shipping_product {code:?} is not the internal reference of any product in odoo"),
                        ));
                        continue;
                    }
                    Some(_) => {}
                }
            }
            let allocated: Decimal = order.lines.iter().map(|line| line.discount).sum();
            if order.totals.discount_total - allocated > Decimal::new(1, 2) {
                outcomes[*index] = Some(failed(
                    ErrorKind::InvalidRequest,
                    &context,
                    format!(
                        "the order has {} of discounts not allocated to lines; odoo takes discounts per line (allocate them in the mapping)",
                        order.totals.discount_total - allocated
                    ),
                ));
                continue;
            }
            ready.push((*index, order));
        }
        let partners = self.order_partners(&ready, &context).await?;

        let mut creates: Vec<(usize, Value)> = Vec::new();
        for (index, order) in &ready {
            let context = format!("{context}: order {}", order.number);
            let (partner, invoice, delivery) = match partners.get(index) {
                Some(Ok(ids)) => *ids,
                Some(Err(outcome)) => {
                    outcomes[*index] = Some(match outcome {
                        WriteOutcome::Failed(error) => failed(error.kind, &context, error.message.clone()),
                        _ => failed(ErrorKind::InvalidRequest, &context, "no partner"),
                    });
                    continue;
                }
                None => {
                    outcomes[*index] = Some(failed(ErrorKind::InvalidRequest, &context, "no partner was resolved"));
                    continue;
                }
            };
            match order_values(
                order,
                (partner, invoice, delivery),
                &products,
                &taxes,
                tax_field,
                self.config.shipping_product.as_deref(),
                &pricelists,
                self.config.company_id,
            ) {
                Ok(vals) => creates.push((*index, vals)),
                Err(message) => outcomes[*index] = Some(failed(ErrorKind::InvalidRequest, &context, message)),
            }
        }
        let results =
            self.create_isolating("sale.order", creates.iter().map(|(_, vals)| vals.clone()).collect()).await?;
        let mut created: Vec<(usize, i64)> = Vec::new();
        for ((index, _), result) in creates.iter().zip(results) {
            match result {
                Ok(id) => created.push((*index, id)),
                Err(error) => outcomes[*index] = Some(WriteOutcome::Failed(error)),
            }
        }
        // An order cancelled in the shop before it reached Odoo is created and cancelled at
        // once (kept for the record, never confirmed).
        let cancelled_before: Vec<(usize, i64)> = created
            .iter()
            .filter(|(index, _)| orders.iter().any(|(i, order)| i == index && order.cancellation.is_some()))
            .copied()
            .collect();
        for (index, id) in &cancelled_before {
            if let Err(error) = self.action("sale.order", "action_cancel", &[*id]).await {
                if error.kind.is_transient() {
                    return Err(error);
                }
                outcomes[*index] = Some(failed(
                    error.kind,
                    &context,
                    format!("created as sale.order {id} but action_cancel failed: {}", error.message),
                ));
            }
        }
        let created: Vec<(usize, i64)> =
            created.into_iter().filter(|(index, _)| !cancelled_before.iter().any(|(i, _)| i == index)).collect();
        for (index, id) in &cancelled_before {
            if outcomes[*index].is_none() {
                outcomes[*index] = Some(done(&batch.items[*index], *id));
            }
        }
        if self.config.confirm_orders && !created.is_empty() {
            let ids: Vec<i64> = created.iter().map(|(_, id)| *id).collect();
            if self.action("sale.order", "action_confirm", &ids).await.is_err() {
                for (index, id) in &created {
                    if let Err(error) = self.action("sale.order", "action_confirm", &[*id]).await {
                        // The order exists: a retry finds it by its number and confirms it then.
                        let retryable = error.retryable;
                        outcomes[*index] = Some(WriteOutcome::Failed(
                            ConnectorError::new(
                                error.kind,
                                format!(
                                    "{context}: order {}",
                                    orders
                                        .iter()
                                        .find(|(i, _)| i == index)
                                        .map(|(_, o)| o.number.as_str())
                                        .unwrap_or("?")
                                ),
                                format!("created as sale.order {id} but action_confirm failed: {}", error.message),
                            )
                            .with_retryable(retryable),
                        ));
                    }
                }
            }
        }
        for (index, id) in created {
            if outcomes[index].is_none() {
                outcomes[index] = Some(done(&batch.items[index], id));
            }
        }
        Ok(outcomes.into_iter().map(|outcome| outcome.expect("every order got an outcome")).collect())
    }

    /// An order already in Odoo: applies a cancellation, confirms it when configured and still
    /// a quotation, and reports it as written. Lines are not changed after creation.
    async fn settle_existing(
        &self,
        item: &WriteItem,
        order: &Order,
        id: i64,
        state: &str,
        context: &str,
    ) -> Result<WriteOutcome, ConnectorError> {
        let context = format!("{context}: order {}", order.number);
        let action = if order.cancellation.is_some() && state != "cancel" {
            Some("action_cancel")
        } else if self.config.confirm_orders && order.cancellation.is_none() && matches!(state, "draft" | "sent") {
            Some("action_confirm")
        } else {
            None
        };
        if let Some(action) = action
            && let Err(error) = self.action("sale.order", action, &[id]).await
        {
            if error.kind.is_transient() {
                return Err(error);
            }
            return Ok(failed(
                error.kind,
                &context,
                format!("sale.order {id} exists but {action} failed: {}", error.message),
            ));
        }
        Ok(done(item, id))
    }

    /// Customer group -> pricelist id, for the configured `price_lists`.
    async fn pricelist_ids(&self, context: &str) -> Result<HashMap<String, i64>, ConnectorError> {
        if self.config.price_lists.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = self
            .search_read(
                "product.pricelist",
                json!([["name", "in", self.config.price_lists.values().collect::<Vec<_>>()]]),
                &["name".into()],
                SearchOptions { order: Some("id asc"), ..Default::default() },
            )
            .await?;
        let mut ids = HashMap::new();
        for (group, name) in &self.config.price_lists {
            let id = rows
                .iter()
                .find(|row| text(row.get("name")).as_deref() == Some(name.as_str()))
                .and_then(|row| row.get("id"))
                .and_then(Value::as_i64);
            match id {
                Some(id) => {
                    ids.insert(group.to_lowercase(), id);
                }
                None => {
                    return Err(ConnectorError::new(
                        ErrorKind::InvalidRequest,
                        context,
                        format!("price_lists.{group}: no product.pricelist named {name:?}"),
                    ));
                }
            }
        }
        Ok(ids)
    }

    async fn write_refunds(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let context = format!("writing refunds to odoo {:?}", self.system);
        let mut outcomes: Vec<Option<WriteOutcome>> = batch.items.iter().map(|_| None).collect();
        let mut refunds: Vec<(usize, &Refund)> = Vec::new();
        for (index, item) in batch.items.iter().enumerate() {
            match &item.record {
                Record::Refund(refund) => refunds.push((index, refund)),
                other => {
                    outcomes[index] = Some(failed(
                        ErrorKind::InvalidRequest,
                        &context,
                        format!("expected a refund, got a {}", other.kind()),
                    ))
                }
            }
        }
        let numbers: Vec<String> = refunds.iter().map(|(_, refund)| refund.number.clone()).collect();
        let existing = if numbers.is_empty() { HashMap::new() } else { self.credit_notes_by_ref(&numbers).await? };
        let order_numbers: Vec<String> = refunds
            .iter()
            .map(|(_, refund)| refund.order_number.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let orders = if order_numbers.is_empty() {
            Vec::new()
        } else {
            self.search_read(
                "sale.order",
                json!([["client_order_ref", "in", order_numbers]]),
                &["client_order_ref".into(), "name".into(), "partner_invoice_id".into(), "partner_id".into()],
                SearchOptions { order: Some("id asc"), ..Default::default() },
            )
            .await?
        };
        let mut skus: BTreeSet<String> =
            refunds.iter().flat_map(|(_, refund)| refund.lines.iter().map(|line| line.sku.clone())).collect();
        if let Some(shipping) = &self.config.shipping_product {
            skus.insert(shipping.clone());
        }
        let products = self.products_by_sku(&skus).await?;
        let mut creates: Vec<(usize, Value)> = Vec::new();
        for (index, refund) in &refunds {
            let context = format!("{context}: refund {}", refund.number);
            if let Some(id) = existing.get(&refund.number) {
                outcomes[*index] = Some(done(&batch.items[*index], *id));
                continue;
            }
            let Some(order) = orders
                .iter()
                .find(|order| text(order.get("client_order_ref")).as_deref() == Some(refund.order_number.as_str()))
            else {
                outcomes[*index] =
                    Some(waiting(&context, format!("waits for order {:?} to be synced to odoo", refund.order_number)));
                continue;
            };
            if let Some(line) = refund.lines.iter().find(|line| !products.contains_key(&line.sku)) {
                outcomes[*index] =
                    Some(waiting(&context, format!("waits for product SKU {:?} to be synced to odoo", line.sku)));
                continue;
            }
            let reason = refund.reason.clone().unwrap_or_else(|| format!("Refund {}", refund.number));
            let mut lines: Vec<Value> = refund
                .lines
                .iter()
                .filter(|line| line.quantity > Decimal::ZERO)
                .map(|line| {
                    json!([0, 0, {
                        "product_id": products[&line.sku],
                        "name": format!("{reason}: {}", line.sku),
                        "quantity": float(line.quantity),
                        "price_unit": float((line.amount / line.quantity).round_dp(6)),
                    }])
                })
                .collect();
            let lines_total: Decimal = refund.lines.iter().map(|line| line.amount).sum();
            if refund.shipping_amount > Decimal::ZERO {
                let mut vals = json!({"name": format!("{reason}: shipping"), "quantity": 1.0, "price_unit": float(refund.shipping_amount)});
                if let Some(product) = self.config.shipping_product.as_ref().and_then(|code| products.get(code)) {
                    vals["product_id"] = json!(product);
                }
                lines.push(json!([0, 0, vals]));
            }
            let rest = refund.amount - lines_total - refund.shipping_amount;
            if rest > Decimal::new(1, 2) {
                lines.push(json!([0, 0, {"name": reason, "quantity": 1.0, "price_unit": float(rest)}]));
            }
            let partner = many2one_id(order.get("partner_invoice_id")).or_else(|| many2one_id(order.get("partner_id")));
            let mut vals = json!({
                "move_type": "out_refund",
                "partner_id": partner,
                "ref": refund.number,
                "invoice_origin": text(order.get("name")),
                "invoice_line_ids": lines,
            });
            if let Some(at) = refund.refunded_at {
                vals["invoice_date"] = json!(at.format("%Y-%m-%d").to_string());
            }
            creates.push((*index, vals));
        }
        let results =
            self.create_isolating("account.move", creates.iter().map(|(_, vals)| vals.clone()).collect()).await?;
        for ((index, _), result) in creates.iter().zip(results) {
            outcomes[*index] = Some(match result {
                Ok(id) => done(&batch.items[*index], id),
                Err(error) => WriteOutcome::Failed(error),
            });
        }
        Ok(outcomes.into_iter().map(|outcome| outcome.expect("every refund got an outcome")).collect())
    }

    async fn write_status(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let context = format!("writing order status to odoo {:?}", self.system);
        let numbers: Vec<String> = batch
            .items
            .iter()
            .filter_map(|item| match &item.record {
                Record::OrderStatus(change) => Some(change.order_number.clone()),
                _ => None,
            })
            .collect();
        let orders = self.orders_by_number(&numbers).await?;
        let mut outcomes = Vec::with_capacity(batch.items.len());
        for item in &batch.items {
            let Record::OrderStatus(change) = &item.record else {
                outcomes.push(failed(
                    ErrorKind::InvalidRequest,
                    &context,
                    format!("expected an order status, got a {}", item.record.kind()),
                ));
                continue;
            };
            let context = format!("{context}: order {}", change.order_number);
            let Some((id, state)) = orders.get(&change.order_number) else {
                outcomes
                    .push(waiting(&context, format!("waits for order {:?} to be synced to odoo", change.order_number)));
                continue;
            };
            // Only a cancellation has an action in Odoo; other states are the ERP's to set.
            if change.state == OrderState::Cancelled && state != "cancel" {
                match self.action("sale.order", "action_cancel", &[*id]).await {
                    Ok(_) => {}
                    Err(error) if error.kind.is_transient() => return Err(error),
                    Err(error) => {
                        outcomes.push(failed(
                            error.kind,
                            &context,
                            format!("action_cancel on sale.order {id} failed: {}", error.message),
                        ));
                        continue;
                    }
                }
            }
            outcomes.push(WriteOutcome::Updated { target_id: id.to_string() });
        }
        Ok(outcomes)
    }
}

/// The values of an address contact, with its country.
fn contact_values(
    address: &Address,
    partner_type: &str,
    fallback_name: &str,
    countries: &HashMap<String, i64>,
) -> Map<String, Value> {
    let mut vals = address_values(address, partner_type, fallback_name);
    if let Some(country) = countries.get(&address.country.trim().to_uppercase()) {
        vals.insert("country_id".into(), json!(country));
    }
    vals
}

/// The `res.partner` values that create a customer: its main address on the partner itself,
/// the other addresses as child contacts. `countries` maps ISO codes to Odoo country ids.
pub(crate) fn new_partner_values(customer: &Customer, countries: &HashMap<String, i64>) -> Value {
    let (main, others) = split_addresses(&customer.addresses);
    let mut vals = partner_values(customer);
    let name = vals.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    if let Some(main) = main {
        for (key, value) in contact_values(main, "contact", &name, countries) {
            if key != "name" && key != "type" {
                vals.insert(key, value);
            }
        }
    }
    let children: Vec<Value> = others
        .iter()
        .map(|address| json!([0, 0, contact_values(address, partner_type(address.kind), &name, countries)]))
        .collect();
    if !children.is_empty() {
        vals.insert("child_ids".into(), Value::Array(children));
    }
    Value::Object(vals)
}

/// The main address of a customer (the default one, else the first) and the others.
fn split_addresses(addresses: &[Address]) -> (Option<&Address>, Vec<&Address>) {
    let main =
        addresses.iter().position(|address| address.is_default).or(if addresses.is_empty() { None } else { Some(0) });
    match main {
        None => (None, Vec::new()),
        Some(position) => {
            let main_address = &addresses[position];
            let others = addresses
                .iter()
                .enumerate()
                .filter(|(index, address)| {
                    *index != position && (address.kind != AddressKind::Both || address.line1 != main_address.line1)
                })
                .map(|(_, address)| address)
                .collect();
            (Some(main_address), others)
        }
    }
}

/// Tax ids for a line's tax lines: sale taxes of the same percentage and price inclusion.
fn tax_ids(
    tax_lines: &[erpsync_model::TaxLine],
    taxes: &[Value],
    prices_include_tax: bool,
) -> Result<Vec<i64>, String> {
    let mut ids = Vec::new();
    for tax in tax_lines {
        let percent = (tax.rate * Decimal::ONE_HUNDRED).normalize();
        let found = taxes.iter().find(|candidate| {
            decimal(candidate.get("amount")).normalize() == percent
                && candidate.get("price_include").and_then(Value::as_bool).unwrap_or(false) == prices_include_tax
        });
        match found.and_then(|tax| tax.get("id")).and_then(Value::as_i64) {
            Some(id) => ids.push(id),
            None => {
                return Err(format!(
                    "no sale tax of {percent} % ({}) in odoo for tax line {:?}",
                    if prices_include_tax { "included in price" } else { "excluded from price" },
                    tax.title
                ));
            }
        }
    }
    Ok(ids)
}

/// The values of a `sale.order` for an order whose products and partners are known.
#[allow(clippy::too_many_arguments)]
pub(crate) fn order_values(
    order: &Order,
    (partner, invoice, delivery): (i64, i64, i64),
    products: &HashMap<String, i64>,
    taxes: &[Value],
    tax_field: &str,
    shipping_product: Option<&str>,
    pricelists: &HashMap<String, i64>,
    company: Option<i64>,
) -> Result<Value, String> {
    let mut lines = Vec::new();
    for line in &order.lines {
        let mut vals = json!({
            "product_id": products[line.sku.trim()],
            "product_uom_qty": float(line.quantity),
            "price_unit": float(line.unit_price),
        });
        if !line.title.trim().is_empty() {
            vals["name"] = json!(line.title);
        }
        let discount = discount_percent(line.unit_price, line.quantity, line.discount);
        if discount > Decimal::ZERO {
            vals["discount"] = float(discount);
        }
        if !line.tax_lines.is_empty() {
            vals[tax_field] = json!([[6, 0, tax_ids(&line.tax_lines, taxes, order.prices_include_tax)?]]);
        }
        lines.push(json!([0, 0, vals]));
    }
    for shipping in &order.shipping_lines {
        let Some(code) = shipping_product else { continue };
        let mut vals = json!({
            "product_id": products[code],
            "product_uom_qty": 1.0,
            "price_unit": float(shipping.price),
            "name": if shipping.title.trim().is_empty() { shipping.method.clone() } else { shipping.title.clone() },
        });
        if !shipping.tax_lines.is_empty() {
            vals[tax_field] = json!([[6, 0, tax_ids(&shipping.tax_lines, taxes, order.prices_include_tax)?]]);
        }
        lines.push(json!([0, 0, vals]));
    }
    let mut vals = json!({
        "partner_id": partner,
        "partner_invoice_id": invoice,
        "partner_shipping_id": delivery,
        "client_order_ref": order.number.trim(),
        "origin": order.sales_channel.clone().unwrap_or_else(|| "erpsync".into()),
        "order_line": lines,
    });
    if let Some(at) = order.placed_at {
        vals["date_order"] = json!(format_datetime(at));
    }
    if let Some(note) = order.note.as_deref().filter(|note| !note.trim().is_empty()) {
        vals["note"] = json!(note);
    }
    if let Some(pricelist) = order.customer.group.as_deref().and_then(|group| pricelists.get(&group.to_lowercase())) {
        vals["pricelist_id"] = json!(pricelist);
    }
    if let Some(company) = company {
        vals["company_id"] = json!(company);
    }
    Ok(vals)
}
