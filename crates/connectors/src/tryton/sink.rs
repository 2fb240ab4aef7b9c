//! Writing to Tryton: products (templates with variants, created in batches), customers
//! (parties with addresses and contact mechanisms), orders (sales, imported once per web shop
//! and web id, then quoted and confirmed), order status (cancellation, confirmation) and
//! refunds (credit notes for the customer of the refunded order's sale, posted).
//!
//! Lookup before creating: products by template code or variant code (SKU), customers by
//! e-mail (or party code), orders by `web_shop` + `web_id`. An order is also searched right
//! before it is created, so a replayed batch never imports it twice; a sale found in draft or
//! quotation is taken on from where it stopped (quoted, confirmed). A refund's credit note is
//! searched by its `reference` (the refund's number) and the sale's party right before it is
//! created, the same way; one found in draft is posted.

use crate::tryton::TrytonConnector;
use crate::tryton::client::Setup;
use crate::tryton::config::MAX_BATCH_SIZE;
use crate::tryton::map::{
    TemplatePlan, decode_decimal, encode_date, encode_decimal, id, ids, like_exact, net_unit_price, plan_credit_note,
    plan_template, text, truthy, variant_values,
};
use crate::{Capabilities, ConnectorError, ErrorKind, Sink, WriteBatch, WriteItem, WriteOutcome};
use async_trait::async_trait;
use erpsync_model::{Address, AddressKind, Customer, EntityKind, Order, OrderState, OrderStatusChange, Record};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};
use std::collections::HashMap;

#[async_trait]
impl Sink for TrytonConnector {
    fn capabilities(&self, entity: EntityKind) -> Capabilities {
        match entity {
            EntityKind::Product | EntityKind::Customer | EntityKind::Order => {
                Capabilities { write: true, lookup: true, ..Capabilities::default() }
            }
            EntityKind::OrderStatus | EntityKind::Refund => Capabilities { write: true, ..Capabilities::default() },
            _ => Capabilities::default(),
        }
    }

    fn max_batch_size(&self, _entity: EntityKind) -> usize {
        self.config.batch_size.min(MAX_BATCH_SIZE)
    }

    async fn lookup(&self, entity: EntityKind, natural_keys: &[String]) -> Result<Vec<Option<String>>, ConnectorError> {
        let context = format!("looking up {entity} in tryton {:?}", self.system);
        if natural_keys.is_empty() {
            return Ok(Vec::new());
        }
        match entity {
            EntityKind::Product => self.lookup_products(natural_keys, &context).await,
            EntityKind::Customer => {
                let mut found = Vec::with_capacity(natural_keys.len());
                for key in natural_keys {
                    found.push(self.find_party(key, &context).await?.map(|party| party.to_string()));
                }
                Ok(found)
            }
            EntityKind::Order => {
                let sales = self.find_sales(natural_keys, &context).await?;
                Ok(natural_keys.iter().map(|key| sales.get(key).map(|(id, _)| id.to_string())).collect())
            }
            _ => Ok(vec![None; natural_keys.len()]),
        }
    }

    async fn write_batch(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let context = format!("writing {} to tryton {:?}", batch.entity, self.system);
        match batch.entity {
            EntityKind::Product => self.write_products(&batch.items, &context).await,
            EntityKind::Customer => {
                let mut outcomes = Vec::with_capacity(batch.items.len());
                for item in &batch.items {
                    let context = format!("{context}: {}", item.natural_key);
                    outcomes.push(outcome(self.write_customer(item, &context).await, item));
                }
                Ok(outcomes)
            }
            EntityKind::Order => {
                let mut outcomes = Vec::with_capacity(batch.items.len());
                for item in &batch.items {
                    let context = format!("{context}: order {}", item.natural_key);
                    outcomes.push(self.write_order(item, &context).await);
                }
                Ok(outcomes)
            }
            EntityKind::OrderStatus => {
                let mut outcomes = Vec::with_capacity(batch.items.len());
                for item in &batch.items {
                    let context = format!("{context}: {}", item.natural_key);
                    outcomes.push(self.write_status(item, &context).await);
                }
                Ok(outcomes)
            }
            EntityKind::Refund => {
                let mut outcomes = Vec::with_capacity(batch.items.len());
                for item in &batch.items {
                    let context = format!("{context}: refund {}", item.natural_key);
                    outcomes.push(outcome(self.write_refund(item, &context).await, item));
                }
                Ok(outcomes)
            }
            other => Err(ConnectorError::new(
                ErrorKind::InvalidRequest,
                &context,
                format!("the tryton connector does not write {other}"),
            )),
        }
    }
}

fn outcome(result: Result<(i64, bool), ConnectorError>, _item: &WriteItem) -> WriteOutcome {
    match result {
        Ok((id, true)) => WriteOutcome::Created { target_id: id.to_string() },
        Ok((id, false)) => WriteOutcome::Updated { target_id: id.to_string() },
        Err(error) => WriteOutcome::Failed(error),
    }
}

fn invalid(context: &str, message: impl Into<String>) -> ConnectorError {
    ConnectorError::new(ErrorKind::InvalidRequest, context, message)
}

fn wrong_record(context: &str, record: &Record) -> ConnectorError {
    invalid(context, format!("expected a record of the batch's entity, got a {}", record.kind()))
}

fn list(value: Value, context: &str, what: &str) -> Result<Vec<Value>, ConnectorError> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(ConnectorError::new(
            ErrorKind::InvalidResponse,
            context,
            format!("{what} did not return a list: {}", other.to_string().chars().take(200).collect::<String>()),
        )),
    }
}

fn quantity(value: Decimal) -> Value {
    // Tryton's quantities are floats; a decimal quantity goes over as its nearest float.
    json!(value.to_f64().unwrap_or_default())
}

impl TrytonConnector {
    async fn search_read(
        &self,
        model: &str,
        domain: Value,
        limit: Option<usize>,
        fields: &[&str],
        context: &str,
    ) -> Result<Vec<Value>, ConnectorError> {
        let result = self
            .execute(
                model,
                "search_read",
                vec![domain, json!(0), json!(limit), json!([["id", "ASC"]]), json!(fields)],
                None,
                context,
            )
            .await?;
        list(result, context, &format!("{model}.search_read"))
    }

    async fn lookup_products(&self, keys: &[String], context: &str) -> Result<Vec<Option<String>>, ConnectorError> {
        let templates = self
            .search_read(
                "product.template",
                json!([["code", "in", keys], ["active", "in", [true, false]]]),
                None,
                &["code"],
                context,
            )
            .await?;
        let variants = self
            .search_read(
                "product.product",
                json!([["code", "in", keys], ["active", "in", [true, false]]]),
                None,
                &["code", "template"],
                context,
            )
            .await?;
        let mut found: HashMap<String, i64> = HashMap::new();
        for row in &variants {
            if let (Some(code), Some(template)) = (text(row, "code"), id(row, "template")) {
                found.entry(code).or_insert(template);
            }
        }
        // A template's own code wins over a variant's.
        for row in &templates {
            if let (Some(code), Some(template)) = (text(row, "code"), id(row, "id")) {
                found.insert(code, template);
            }
        }
        Ok(keys.iter().map(|key| found.get(key.trim()).map(|id| id.to_string())).collect())
    }

    fn template_values(&self, plan: &TemplatePlan, setup: &Setup) -> Value {
        let variants: Vec<Value> =
            plan.variants.iter().map(|variant| variant_values(variant, plan.list_price)).collect();
        let mut values = json!({
            "name": plan.name,
            "code": plan.prefix,
            "type": "goods",
            "salable": true,
            "default_uom": setup.unit,
            "sale_uom": setup.unit,
            "list_price": encode_decimal(plan.list_price),
            "active": plan.active,
            "products": [["create", variants]],
        });
        if let Some(category) = setup.account_category {
            values["account_category"] = json!(category);
        }
        values
    }

    async fn write_products(&self, items: &[WriteItem], context: &str) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let setup = self.setup(context).await?.clone();
        let mut outcomes: Vec<Option<WriteOutcome>> = items.iter().map(|_| None).collect();
        let mut creates: Vec<(usize, TemplatePlan)> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let item_context = format!("{context}: {}", item.natural_key);
            let Record::Product(product) = &item.record else {
                outcomes[index] = Some(WriteOutcome::Failed(wrong_record(&item_context, &item.record)));
                continue;
            };
            match &item.target_id {
                Some(target) => {
                    outcomes[index] =
                        Some(outcome(self.update_product(target, product, &setup, &item_context).await, item));
                }
                None => match plan_template(product, setup.currency, None) {
                    Ok(plan) => creates.push((index, plan)),
                    Err(message) => outcomes[index] = Some(WriteOutcome::Failed(invalid(&item_context, message))),
                },
            }
        }
        // Chunks of at most `batch_size` variants: the SKU uniqueness check runs per call.
        let limit = self.config.batch_size.clamp(1, MAX_BATCH_SIZE);
        let mut chunk: Vec<(usize, TemplatePlan)> = Vec::new();
        let mut chunk_variants = 0;
        let mut chunks = Vec::new();
        for (index, plan) in creates {
            if !chunk.is_empty() && chunk_variants + plan.variants.len() > limit {
                chunks.push(std::mem::take(&mut chunk));
                chunk_variants = 0;
            }
            chunk_variants += plan.variants.len();
            chunk.push((index, plan));
        }
        if !chunk.is_empty() {
            chunks.push(chunk);
        }
        for chunk in chunks {
            let values: Vec<Value> = chunk.iter().map(|(_, plan)| self.template_values(plan, &setup)).collect();
            match self.execute("product.template", "create", vec![Value::Array(values)], None, context).await {
                Ok(created) => {
                    let created: Vec<i64> = created
                        .as_array()
                        .map(|ids| ids.iter().filter_map(Value::as_i64).collect())
                        .unwrap_or_default();
                    if created.len() != chunk.len() {
                        return Err(ConnectorError::new(
                            ErrorKind::InvalidResponse,
                            context,
                            format!(
                                "product.template.create returned {} ids for {} templates",
                                created.len(),
                                chunk.len()
                            ),
                        ));
                    }
                    for ((index, _), template) in chunk.iter().zip(created) {
                        outcomes[*index] = Some(WriteOutcome::Created { target_id: template.to_string() });
                    }
                }
                Err(error) if error.kind == ErrorKind::InvalidRequest && chunk.len() > 1 => {
                    // One bad product fails the whole call (Tryton rolls it back): create them
                    // one by one so that only the bad one fails, with its own message.
                    for (index, plan) in &chunk {
                        let item_context = format!("{context}: {}", items[*index].natural_key);
                        let values = vec![json!([self.template_values(plan, &setup)])];
                        outcomes[*index] =
                            Some(match self.execute("product.template", "create", values, None, &item_context).await {
                                Ok(created) => match created.get(0).and_then(Value::as_i64) {
                                    Some(template) => WriteOutcome::Created { target_id: template.to_string() },
                                    None => WriteOutcome::Failed(ConnectorError::new(
                                        ErrorKind::InvalidResponse,
                                        &item_context,
                                        "product.template.create returned no id",
                                    )),
                                },
                                Err(error) => WriteOutcome::Failed(error),
                            });
                    }
                }
                Err(error) => {
                    for (index, _) in &chunk {
                        let mut copy = ConnectorError::new(
                            error.kind,
                            format!("{context}: {}", items[*index].natural_key),
                            error.message.clone(),
                        )
                        .with_retryable(error.retryable);
                        copy.fault = error.fault;
                        outcomes[*index] = Some(WriteOutcome::Failed(copy));
                    }
                }
            }
        }
        Ok(outcomes.into_iter().map(|outcome| outcome.expect("every product got an outcome")).collect())
    }

    async fn update_product(
        &self,
        target: &str,
        product: &erpsync_model::Product,
        setup: &Setup,
        context: &str,
    ) -> Result<(i64, bool), ConnectorError> {
        let template: i64 =
            target.parse().map_err(|_| invalid(context, format!("{target:?} is not a product.template id")))?;
        let rows = self
            .search_read(
                "product.template",
                json!([["id", "=", template], ["active", "in", [true, false]]]),
                Some(1),
                &["code"],
                context,
            )
            .await?;
        let Some(row) = rows.first() else {
            return Err(ConnectorError::new(
                ErrorKind::NotFound,
                context,
                format!("product.template {template} does not exist"),
            ));
        };
        let prefix = text(row, "code");
        let plan = plan_template(product, setup.currency, Some(prefix.as_deref()))
            .map_err(|message| invalid(context, message))?;
        let existing = self
            .search_read(
                "product.product",
                json!([["template", "=", template], ["active", "in", [true, false]]]),
                None,
                &["code"],
                context,
            )
            .await?;
        let by_code: HashMap<String, i64> =
            existing.iter().filter_map(|row| Some((text(row, "code")?, id(row, "id")?))).collect();
        let mut commands = Vec::new();
        let mut new_variants = Vec::new();
        let mut kept = Vec::new();
        for variant in &plan.variants {
            let values = variant_values(variant, plan.list_price);
            match by_code.get(&variant.sku) {
                Some(variant_id) => {
                    kept.push(*variant_id);
                    commands.push(json!(["write", [variant_id], values]));
                }
                None => new_variants.push(values),
            }
        }
        let retired: Vec<i64> = by_code.values().filter(|id| !kept.contains(id)).copied().collect();
        if !retired.is_empty() {
            // Variants gone from the source are archived, not deleted: sales may refer to them.
            commands.push(json!(["write", retired, { "active": false }]));
        }
        if !new_variants.is_empty() {
            commands.push(json!(["create", new_variants]));
        }
        let values = json!({
            "name": plan.name,
            "list_price": encode_decimal(plan.list_price),
            "active": plan.active,
            "products": commands,
        });
        self.execute("product.template", "write", vec![json!([template]), values], None, context).await?;
        Ok((template, false))
    }

    /// The party with this e-mail (case-insensitive), or with this party code.
    async fn find_party(&self, key: &str, context: &str) -> Result<Option<i64>, ConnectorError> {
        let key = key.trim();
        if key.contains('@') {
            let rows = self
                .search_read(
                    "party.contact_mechanism",
                    json!([["type", "=", "email"], ["value", "ilike", like_exact(key)]]),
                    Some(1),
                    &["party"],
                    context,
                )
                .await?;
            Ok(rows.first().and_then(|row| id(row, "party")))
        } else {
            let rows =
                self.search_read("party.party", json!([["code", "=", key]]), Some(1), &["code"], context).await?;
            Ok(rows.first().and_then(|row| id(row, "id")))
        }
    }

    async fn country_ids(&self, addresses: &[&Address], context: &str) -> Result<HashMap<String, i64>, ConnectorError> {
        let mut codes: Vec<String> =
            addresses.iter().map(|address| address.country.trim().to_ascii_uppercase()).collect();
        codes.sort();
        codes.dedup();
        if codes.is_empty() {
            return Ok(HashMap::new());
        }
        let rows =
            self.search_read("country.country", json!([["code", "in", codes]]), None, &["code"], context).await?;
        let found: HashMap<String, i64> =
            rows.iter().filter_map(|row| Some((text(row, "code")?, id(row, "id")?))).collect();
        if let Some(missing) = codes.iter().find(|code| !found.contains_key(*code)) {
            return Err(invalid(context, format!("country {missing:?} is not in tryton (create it there, or map it)")));
        }
        Ok(found)
    }

    fn address_values(address: &Address, countries: &HashMap<String, i64>, fallback_name: &str) -> Value {
        let person = [address.first_name.as_deref(), address.last_name.as_deref()]
            .into_iter()
            .flatten()
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let street = match address.line2.as_deref().map(str::trim).filter(|line| !line.is_empty()) {
            Some(line2) => format!("{}\n{line2}", address.line1.trim()),
            None => address.line1.trim().to_string(),
        };
        json!({
            "party_name": if person.is_empty() { address.company.clone().unwrap_or_else(|| fallback_name.to_string()) } else { person },
            "street": street,
            "postal_code": address.postal_code,
            "city": address.city,
            "country": countries.get(&address.country.trim().to_ascii_uppercase()),
            "invoice": matches!(address.kind, AddressKind::Billing | AddressKind::Both),
            "delivery": matches!(address.kind, AddressKind::Shipping | AddressKind::Both),
        })
    }

    fn party_name(company: Option<&str>, first: Option<&str>, last: Option<&str>, email: Option<&str>) -> String {
        let person =
            [first, last].into_iter().flatten().map(str::trim).filter(|p| !p.is_empty()).collect::<Vec<_>>().join(" ");
        match company.map(str::trim).filter(|c| !c.is_empty()) {
            Some(company) => company.to_string(),
            None if !person.is_empty() => person,
            None => email.unwrap_or("Customer").to_string(),
        }
    }

    /// Creates or completes the party of `customer`: returns its id and whether it was created.
    async fn write_customer(&self, item: &WriteItem, context: &str) -> Result<(i64, bool), ConnectorError> {
        let Record::Customer(customer) = &item.record else {
            return Err(wrong_record(context, &item.record));
        };
        let target = match &item.target_id {
            Some(target) => {
                Some(target.parse::<i64>().map_err(|_| invalid(context, format!("{target:?} is not a party id")))?)
            }
            None => None,
        };
        self.upsert_party(target, customer, context).await
    }

    async fn upsert_party(
        &self,
        target: Option<i64>,
        customer: &Customer,
        context: &str,
    ) -> Result<(i64, bool), ConnectorError> {
        let name = Self::party_name(
            customer.company.as_deref(),
            customer.first_name.as_deref(),
            customer.last_name.as_deref(),
            customer.email.as_deref(),
        );
        let addresses: Vec<&Address> = customer.addresses.iter().collect();
        let countries = self.country_ids(&addresses, context).await?;
        let mut mechanisms = Vec::new();
        if let Some(email) = customer.email.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
            mechanisms.push(("email", email.to_string()));
        }
        if let Some(phone) = customer.phone.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
            mechanisms.push(("phone", phone.to_string()));
        }
        let Some(party) = target else {
            let values = json!({
                "name": name,
                "addresses": [["create", addresses.iter().map(|a| Self::address_values(a, &countries, &name)).collect::<Vec<_>>()]],
                "contact_mechanisms": [["create", mechanisms.iter().map(|(kind, value)| json!({"type": kind, "value": value})).collect::<Vec<_>>()]],
            });
            let created = self.execute("party.party", "create", vec![json!([values])], None, context).await?;
            let party = created.get(0).and_then(Value::as_i64).ok_or_else(|| {
                ConnectorError::new(ErrorKind::InvalidResponse, context, "party.party.create returned no id")
            })?;
            return Ok((party, true));
        };
        // An existing party: its name follows the source; e-mails, phones and addresses it
        // lacks are added (nothing is removed: sales and invoices refer to them).
        let rows = self
            .execute(
                "party.party",
                "read",
                vec![json!([party]), json!(["contact_mechanisms", "addresses"])],
                None,
                context,
            )
            .await?;
        let Some(row) = rows.get(0) else {
            return Err(ConnectorError::new(ErrorKind::NotFound, context, format!("party {party} does not exist")));
        };
        let known_mechanisms = self
            .execute(
                "party.contact_mechanism",
                "read",
                vec![json!(ids(row, "contact_mechanisms")), json!(["type", "value"])],
                None,
                context,
            )
            .await?;
        let known_addresses = self
            .execute(
                "party.address",
                "read",
                vec![json!(ids(row, "addresses")), json!(["street", "postal_code", "city"])],
                None,
                context,
            )
            .await?;
        let new_mechanisms: Vec<Value> = mechanisms
            .iter()
            .filter(|(kind, value)| {
                !known_mechanisms.as_array().into_iter().flatten().any(|row| {
                    text(row, "type").as_deref() == Some(*kind)
                        && text(row, "value").is_some_and(|known| known.eq_ignore_ascii_case(value))
                })
            })
            .map(|(kind, value)| json!({"type": kind, "value": value}))
            .collect();
        let new_addresses: Vec<Value> = addresses
            .iter()
            .filter(|address| !Self::has_address(&known_addresses, address))
            .map(|address| Self::address_values(address, &countries, &name))
            .collect();
        let mut values = json!({ "name": name });
        if !new_mechanisms.is_empty() {
            values["contact_mechanisms"] = json!([["create", new_mechanisms]]);
        }
        if !new_addresses.is_empty() {
            values["addresses"] = json!([["create", new_addresses]]);
        }
        self.execute("party.party", "write", vec![json!([party]), values], None, context).await?;
        Ok((party, false))
    }

    fn has_address(known: &Value, address: &Address) -> bool {
        let same = |a: Option<String>, b: &str| a.unwrap_or_default().trim().eq_ignore_ascii_case(b.trim());
        known.as_array().into_iter().flatten().any(|row| {
            let street = text(row, "street").unwrap_or_default();
            same(Some(street.lines().next().unwrap_or_default().to_string()), &address.line1)
                && same(text(row, "postal_code"), address.postal_code.as_deref().unwrap_or_default())
                && same(text(row, "city"), &address.city)
        })
    }

    /// The id of the party's address matching `address`, created when missing.
    async fn address_of(
        &self,
        party: i64,
        address: &Address,
        name: &str,
        context: &str,
    ) -> Result<i64, ConnectorError> {
        let rows = self
            .search_read(
                "party.address",
                json!([["party", "=", party]]),
                None,
                &["street", "postal_code", "city"],
                context,
            )
            .await?;
        for row in &rows {
            if Self::has_address(&json!([row]), address) {
                return id(row, "id")
                    .ok_or_else(|| ConnectorError::new(ErrorKind::InvalidResponse, context, "an address without id"));
            }
        }
        let countries = self.country_ids(&[address], context).await?;
        let mut values = Self::address_values(address, &countries, name);
        values["party"] = json!(party);
        let created = self.execute("party.address", "create", vec![json!([values])], None, context).await?;
        created.get(0).and_then(Value::as_i64).ok_or_else(|| {
            ConnectorError::new(ErrorKind::InvalidResponse, context, "party.address.create returned no id")
        })
    }

    /// Sales of the configured web shop by web id: id and state.
    async fn find_sales(
        &self,
        numbers: &[String],
        context: &str,
    ) -> Result<HashMap<String, (i64, String)>, ConnectorError> {
        let setup = self.setup(context).await?;
        let domain = match setup.web_shop {
            Some(shop) => json!([["web_shop", "=", shop], ["web_id", "in", numbers]]),
            None => json!([["reference", "in", numbers]]),
        };
        let rows = self.search_read("sale.sale", domain, None, &["web_id", "reference", "state"], context).await?;
        let key = if setup.web_shop.is_some() { "web_id" } else { "reference" };
        Ok(rows
            .iter()
            .filter_map(|row| Some((text(row, key)?, (id(row, "id")?, text(row, "state").unwrap_or_default()))))
            .collect())
    }

    /// Quotes and (when configured) confirms a sale, then reads its state back: `confirm` runs
    /// the sale's processing in a queued task whose failure the call does not report.
    async fn advance_sale(
        &self,
        sale: i64,
        state: &str,
        confirm: bool,
        context: &str,
    ) -> Result<String, ConnectorError> {
        if state == "draft" {
            self.execute("sale.sale", "quote", vec![json!([sale])], None, context).await?;
        }
        if confirm && matches!(state, "draft" | "quotation") {
            self.execute("sale.sale", "confirm", vec![json!([sale])], None, context).await?;
        }
        let rows = self.execute("sale.sale", "read", vec![json!([sale]), json!(["state"])], None, context).await?;
        let state = rows.get(0).and_then(|row| text(row, "state")).unwrap_or_default();
        let expected: &[&str] = if confirm { &["confirmed", "processing", "done"] } else { &["quotation"] };
        if !expected.contains(&state.as_str()) {
            return Err(ConnectorError::new(
                ErrorKind::InvalidResponse,
                context,
                format!(
                    "sale {sale} is in state {state:?} after quote/confirm, expected one of {expected:?}: a queued task failed in tryton (see its log); the next retry takes the sale on from there"
                ),
            )
            .with_retryable(false));
        }
        Ok(state)
    }

    async fn write_order(&self, item: &WriteItem, context: &str) -> WriteOutcome {
        match self.import_order(item, context).await {
            Ok((sale, created)) => {
                if created {
                    WriteOutcome::Created { target_id: sale.to_string() }
                } else {
                    WriteOutcome::Updated { target_id: sale.to_string() }
                }
            }
            Err(error) => WriteOutcome::Failed(error),
        }
    }

    async fn import_order(&self, item: &WriteItem, context: &str) -> Result<(i64, bool), ConnectorError> {
        let Record::Order(order) = &item.record else {
            return Err(wrong_record(context, &item.record));
        };
        let setup = self.setup(context).await?.clone();
        let Some(shop) = setup.web_shop else {
            return Err(invalid(context, "set `web_shop` on the system to write orders: it makes imports idempotent"));
        };
        let number = order.number.trim().to_string();
        // Searched again here, not only in lookup: a replayed batch must never import twice.
        if let Some((sale, state)) = self.find_sales(std::slice::from_ref(&number), context).await?.remove(&number) {
            match (order.cancellation.is_some(), state.as_str()) {
                // Cancelled in the shop while still a draft or quotation here: cancelled, never
                // confirmed. (A confirmed sale is cancelled through the order status flow, which
                // says what Tryton allows.)
                (true, "draft" | "quotation") => self.cancel_sale(sale, context).await?,
                (true, _) => {}
                (false, _) => {
                    self.advance_sale(sale, &state, self.config.confirm_orders, context).await?;
                }
            }
            return Ok((sale, false));
        }
        let sale = self.create_sale(order, shop, &setup, context).await?;
        if order.cancellation.is_some() {
            // Cancelled in the shop before it reached Tryton: kept for the record, cancelled.
            self.cancel_sale(sale, context).await?;
        } else {
            self.advance_sale(sale, "draft", self.config.confirm_orders, context).await?;
        }
        Ok((sale, true))
    }

    /// Cancels a draft or quotation sale and reads its state back.
    async fn cancel_sale(&self, sale: i64, context: &str) -> Result<(), ConnectorError> {
        self.execute("sale.sale", "cancel", vec![json!([sale])], None, context).await?;
        let rows = self.execute("sale.sale", "read", vec![json!([sale]), json!(["state"])], None, context).await?;
        match rows.get(0).and_then(|row| text(row, "state")).as_deref() {
            Some("cancelled") => Ok(()),
            other => Err(ConnectorError::new(
                ErrorKind::InvalidResponse,
                context,
                format!("sale {sale} is in state {other:?} after cancel"),
            )),
        }
    }

    async fn create_sale(&self, order: &Order, shop: i64, setup: &Setup, context: &str) -> Result<i64, ConnectorError> {
        // Tryton's sale lines carry one net unit price, without tax.
        let mut unit_prices = Vec::with_capacity(order.lines.len());
        for line in &order.lines {
            let price = net_unit_price(line, order.prices_include_tax, order.totals.tax_total)
                .map_err(|message| invalid(context, message))?;
            unit_prices.push(price);
        }
        let currencies = self
            .search_read(
                "currency.currency",
                json!([["code", "=", order.currency.as_str()]]),
                Some(1),
                &["code"],
                context,
            )
            .await?;
        let currency = currencies
            .first()
            .and_then(|row| id(row, "id"))
            .ok_or_else(|| invalid(context, format!("currency {} is not in tryton", order.currency)))?;
        let mut skus: Vec<String> = order.lines.iter().map(|line| line.sku.trim().to_string()).collect();
        skus.sort();
        skus.dedup();
        let products =
            self.search_read("product.product", json!([["code", "in", skus]]), None, &["code"], context).await?;
        let product_ids: HashMap<String, i64> =
            products.iter().filter_map(|row| Some((text(row, "code")?, id(row, "id")?))).collect();
        let missing: Vec<&String> = skus.iter().filter(|sku| !product_ids.contains_key(*sku)).collect();
        if !missing.is_empty() {
            // Most likely the product is not synced yet: worth waiting for.
            return Err(ConnectorError::new(
                ErrorKind::NotFound,
                context,
                format!("unknown sku {missing:?} in tryton (not synced yet?)"),
            )
            .with_retryable(true));
        }

        let customer = &order.customer;
        let name = Self::party_name(
            customer.company.as_deref(),
            customer.first_name.as_deref(),
            customer.last_name.as_deref(),
            customer.email.as_deref(),
        );
        let found = match customer.email.as_deref().filter(|email| email.contains('@')) {
            Some(email) => self.find_party(email, context).await?,
            None => None,
        };
        let party = match found {
            Some(party) => party,
            None => {
                let as_customer = Customer {
                    email: customer.email.clone(),
                    first_name: customer.first_name.clone(),
                    last_name: customer.last_name.clone(),
                    company: customer.company.clone(),
                    phone: customer.phone.clone(),
                    ..Customer::default()
                };
                self.upsert_party(None, &as_customer, context).await?.0
            }
        };
        let shipping = order.shipping_address.as_ref().or(order.billing_address.as_ref());
        let billing = order.billing_address.as_ref().or(order.shipping_address.as_ref());
        let (shipment_address, invoice_address) = match (shipping, billing) {
            (Some(shipping), Some(billing)) => (
                self.address_of(party, shipping, &name, context).await?,
                self.address_of(party, billing, &name, context).await?,
            ),
            _ => {
                let rows = self
                    .search_read("party.address", json!([["party", "=", party]]), Some(1), &["id"], context)
                    .await?;
                let address = rows
                    .first()
                    .and_then(|row| id(row, "id"))
                    .ok_or_else(|| invalid(context, "the order has no address and its customer has none in tryton"))?;
                (address, address)
            }
        };
        let lines: Vec<Value> = order
            .lines
            .iter()
            .zip(unit_prices)
            .map(|(line, unit_price)| {
                json!({
                    "type": "line",
                    "product": product_ids[line.sku.trim()],
                    "description": line.title,
                    "quantity": quantity(line.quantity),
                    "unit": setup.unit,
                    "unit_price": encode_decimal(unit_price),
                })
            })
            .collect();
        let mut values = json!({
            "party": party,
            "invoice_address": invoice_address,
            "shipment_address": shipment_address,
            "currency": currency,
            "web_shop": shop,
            "web_id": order.number.trim(),
            "reference": order.number.trim(),
            "description": format!("Web order {}", order.number.trim()),
            "comment": order.note,
            "lines": [["create", lines]],
        });
        if let Some(warehouse) = setup.shop_warehouse {
            values["warehouse"] = json!(warehouse);
        }
        if let Some(placed) = order.placed_at {
            values["sale_date"] = encode_date(placed.date_naive());
        }
        let created = self.execute("sale.sale", "create", vec![json!([values])], None, context).await?;
        created
            .get(0)
            .and_then(Value::as_i64)
            .ok_or_else(|| ConnectorError::new(ErrorKind::InvalidResponse, context, "sale.sale.create returned no id"))
    }

    /// A refund as a credit note (`account.invoice` of type `out` with negative quantities)
    /// for the party of the refunded order's sale: `(invoice id, created)`.
    async fn write_refund(&self, item: &WriteItem, context: &str) -> Result<(i64, bool), ConnectorError> {
        let Record::Refund(refund) = &item.record else {
            return Err(wrong_record(context, &item.record));
        };
        let number = refund.number.trim();
        let order_number = refund.order_number.trim().to_string();
        if number.is_empty() {
            return Err(invalid(context, "number: a refund needs its number (it is the credit note's reference)"));
        }
        let Some((sale, _)) =
            self.find_sales(std::slice::from_ref(&order_number), context).await?.remove(&order_number)
        else {
            // The order may not be imported yet: worth waiting for.
            return Err(ConnectorError::new(
                ErrorKind::NotFound,
                context,
                format!("order_number: no sale for order {order_number:?} in tryton (not imported yet?)"),
            )
            .with_retryable(true));
        };
        let sales = self
            .execute(
                "sale.sale",
                "read",
                vec![json!([sale]), json!(["party", "invoice_address", "currency", "lines"])],
                None,
                context,
            )
            .await?;
        let sale_row = list(sales, context, "sale.sale.read")?.into_iter().next().ok_or_else(|| {
            ConnectorError::new(ErrorKind::NotFound, context, format!("sale {sale} vanished")).with_retryable(true)
        })?;
        let party = id(&sale_row, "party")
            .ok_or_else(|| ConnectorError::new(ErrorKind::InvalidResponse, context, "the sale has no party"))?;
        // Searched right before creating: a replayed batch or a repeated sync never credits twice.
        let existing = self
            .search_read(
                "account.invoice",
                json!([["type", "=", "out"], ["reference", "=", number], ["party", "=", party]]),
                Some(1),
                &["state"],
                context,
            )
            .await?;
        if let Some(found) = existing.first() {
            let invoice = id(found, "id")
                .ok_or_else(|| ConnectorError::new(ErrorKind::InvalidResponse, context, "an invoice without id"))?;
            if self.config.post_credit_notes && text(found, "state").as_deref() == Some("draft") {
                self.post_credit_note(invoice, context).await?;
            }
            return Ok((invoice, false));
        }
        let currency = id(&sale_row, "currency").unwrap_or_default();
        let codes =
            self.execute("currency.currency", "read", vec![json!([currency]), json!(["code"])], None, context).await?;
        let sale_currency = codes.get(0).and_then(|row| text(row, "code")).unwrap_or_default();
        if sale_currency != refund.currency.as_str() {
            return Err(invalid(
                context,
                format!(
                    "currency: the refund is in {}, the sale of order {order_number:?} in {sale_currency}",
                    refund.currency
                ),
            ));
        }
        // The sale's products by SKU: their price (to spread amounts a shop did not itemise),
        // unit and revenue account.
        let sale_lines = self
            .execute(
                "sale.line",
                "read",
                vec![json!(ids(&sale_row, "lines")), json!(["type", "product", "unit", "unit_price"])],
                None,
                context,
            )
            .await?;
        let sale_lines: Vec<Value> = list(sale_lines, context, "sale.line.read")?
            .into_iter()
            .filter(|line| text(line, "type").as_deref() == Some("line") && id(line, "product").is_some())
            .collect();
        let mut product_ids: Vec<i64> = sale_lines.iter().filter_map(|line| id(line, "product")).collect();
        product_ids.sort_unstable();
        product_ids.dedup();
        let products = self
            .execute("product.product", "read", vec![json!(product_ids), json!(["code", "template"])], None, context)
            .await?;
        let products = list(products, context, "product.product.read")?;
        let codes: HashMap<i64, String> =
            products.iter().filter_map(|row| Some((id(row, "id")?, text(row, "code")?))).collect();
        // The sale's invoice lines: a credit note line credits one of them (its `origin`), as
        // Tryton's own credit does, which ties it to the sale without touching what the sale
        // still has to invoice (a line with the sale line as origin would count as invoiced).
        let origins: Vec<String> =
            sale_lines.iter().filter_map(|line| Some(format!("sale.line,{}", id(line, "id")?))).collect();
        let invoiced = self
            .search_read(
                "account.invoice.line",
                json!([["origin", "in", origins], ["invoice.type", "=", "out"], ["invoice.state", "!=", "cancelled"]]),
                None,
                &["origin"],
                context,
            )
            .await?;
        let invoice_line_of: HashMap<String, i64> =
            invoiced.iter().filter_map(|row| Some((text(row, "origin")?, id(row, "id")?))).collect();
        let mut by_sku: HashMap<String, (i64, Option<i64>, Decimal, Option<i64>)> = HashMap::new();
        for line in &sale_lines {
            let Some(product) = id(line, "product") else { continue };
            let Some(sku) = codes.get(&product) else { continue };
            let price = line.get("unit_price").and_then(decode_decimal).unwrap_or_default();
            let invoice_line =
                id(line, "id").and_then(|sale_line| invoice_line_of.get(&format!("sale.line,{sale_line}")));
            by_sku.entry(sku.clone()).or_insert((product, id(line, "unit"), price, invoice_line.copied()));
        }
        let sale_prices: HashMap<String, Decimal> =
            by_sku.iter().map(|(sku, (_, _, price, _))| (sku.clone(), *price)).collect();
        let plan = plan_credit_note(refund, &sale_prices, refund.currency.minor_units())
            .map_err(|message| invalid(context, message))?;
        let revenue = self.revenue_accounts(&products, context).await?;
        // Amounts without a product go to the revenue account of the first refunded product,
        // else of the sale's first product.
        let fallback_product = plan
            .iter()
            .find_map(|line| line.sku.as_ref().and_then(|sku| by_sku.get(sku)).map(|(product, ..)| *product))
            .or_else(|| sale_lines.first().and_then(|line| id(line, "product")));
        let account_of = |product: Option<i64>| -> Result<i64, ConnectorError> {
            let product = product.or(fallback_product).ok_or_else(|| {
                invalid(
                    context,
                    format!("the sale of order {order_number:?} has no product line to take a revenue account from"),
                )
            })?;
            revenue.get(&product).copied().ok_or_else(|| {
                invalid(
                    context,
                    format!(
                        "product {} has no revenue account in tryton (give it an accounting category)",
                        codes.get(&product).cloned().unwrap_or_else(|| product.to_string())
                    ),
                )
            })
        };
        // A line of money alone (shipping, an amount without lines) credits the sale's first
        // invoiced line, so that the credit note is tied to the order as well when no line names
        // a product (a refund of an amount, as Medusa makes them).
        let fallback_origin =
            sale_lines.iter().find_map(|line| invoice_line_of.get(&format!("sale.line,{}", id(line, "id")?))).copied();
        let mut lines = Vec::with_capacity(plan.len());
        for line in &plan {
            let product = line.sku.as_ref().and_then(|sku| by_sku.get(sku));
            let mut values = json!({
                "type": "line",
                "description": line.description,
                "quantity": quantity(-line.quantity),
                "unit_price": encode_decimal(line.unit_price),
                "account": account_of(product.map(|(product, ..)| *product))?,
                // The line's currency must be the invoice's (it defaults to the company's).
                "currency": currency,
            });
            if let Some((product, unit, _, invoice_line)) = product {
                values["product"] = json!(product);
                values["unit"] = json!(unit.unwrap_or(self.setup(context).await?.unit));
                if let Some(invoice_line) = invoice_line {
                    values["origin"] = json!(format!("account.invoice.line,{invoice_line}"));
                }
            } else if let Some(invoice_line) = fallback_origin {
                values["origin"] = json!(format!("account.invoice.line,{invoice_line}"));
            }
            lines.push(values);
        }
        let receivable = self.receivable_account(party, context).await?;
        let journals =
            self.search_read("account.journal", json!([["type", "=", "revenue"]]), Some(1), &["id"], context).await?;
        let journal = journals
            .first()
            .and_then(|row| id(row, "id"))
            .ok_or_else(|| invalid(context, "tryton has no journal of type revenue for customer invoices"))?;
        let mut values = json!({
            "type": "out",
            "party": party,
            "invoice_address": id(&sale_row, "invoice_address"),
            "currency": currency,
            "account": receivable,
            "journal": journal,
            "reference": number,
            "description": format!("Refund {number} of order {order_number}"),
            "comment": refund.reason,
            "lines": [["create", lines]],
        });
        if let Some(refunded) = refund.refunded_at {
            values["invoice_date"] = encode_date(refunded.date_naive());
        }
        let created = self.execute("account.invoice", "create", vec![json!([values])], None, context).await?;
        let invoice = created.get(0).and_then(Value::as_i64).ok_or_else(|| {
            ConnectorError::new(ErrorKind::InvalidResponse, context, "account.invoice.create returned no id")
        })?;
        if self.config.post_credit_notes {
            self.post_credit_note(invoice, context).await?;
        }
        Ok((invoice, true))
    }

    /// Posts a credit note and reads its state back.
    async fn post_credit_note(&self, invoice: i64, context: &str) -> Result<(), ConnectorError> {
        self.execute("account.invoice", "post", vec![json!([invoice])], None, context).await?;
        let rows =
            self.execute("account.invoice", "read", vec![json!([invoice]), json!(["state"])], None, context).await?;
        match rows.get(0).and_then(|row| text(row, "state")).as_deref() {
            Some("posted" | "paid") => Ok(()),
            other => Err(ConnectorError::new(
                ErrorKind::InvalidResponse,
                context,
                format!("credit note {invoice} is in state {other:?} after post; the next retry posts it again"),
            )),
        }
    }

    /// The party's receivable account, else the company's default one.
    async fn receivable_account(&self, party: i64, context: &str) -> Result<i64, ConnectorError> {
        let rows = self
            .execute("party.party", "read", vec![json!([party]), json!(["account_receivable"])], None, context)
            .await?;
        if let Some(account) = rows.get(0).and_then(|row| id(row, "account_receivable")) {
            return Ok(account);
        }
        let rows = self
            .execute(
                "account.configuration",
                "read",
                vec![json!([1]), json!(["default_account_receivable"])],
                None,
                context,
            )
            .await?;
        rows.get(0).and_then(|row| id(row, "default_account_receivable")).ok_or_else(|| {
            invalid(context, format!("party {party} has no receivable account and tryton has no default one"))
        })
    }

    /// Revenue account by product id (`product.product` rows with `template`): the template's
    /// accounting category's, or its parent's when the category takes the parent's accounts.
    async fn revenue_accounts(&self, products: &[Value], context: &str) -> Result<HashMap<i64, i64>, ConnectorError> {
        let mut template_ids: Vec<i64> = products.iter().filter_map(|row| id(row, "template")).collect();
        template_ids.sort_unstable();
        template_ids.dedup();
        let templates = self
            .execute("product.template", "read", vec![json!(template_ids), json!(["account_category"])], None, context)
            .await?;
        let category_of: HashMap<i64, i64> = list(templates, context, "product.template.read")?
            .iter()
            .filter_map(|row| Some((id(row, "id")?, id(row, "account_category")?)))
            .collect();
        let mut categories: HashMap<i64, Value> = HashMap::new();
        let mut wanted: Vec<i64> = category_of.values().copied().collect();
        // Categories that take their parent's accounts send us up the tree, a few levels at most.
        for _ in 0..8 {
            wanted.retain(|category| !categories.contains_key(category));
            wanted.sort_unstable();
            wanted.dedup();
            if wanted.is_empty() {
                break;
            }
            let rows = self
                .execute(
                    "product.category",
                    "read",
                    vec![json!(wanted), json!(["account_revenue", "account_parent", "parent"])],
                    None,
                    context,
                )
                .await?;
            wanted = Vec::new();
            for row in list(rows, context, "product.category.read")? {
                if truthy(&row, "account_parent")
                    && let Some(parent) = id(&row, "parent")
                {
                    wanted.push(parent);
                }
                if let Some(category) = id(&row, "id") {
                    categories.insert(category, row);
                }
            }
        }
        let revenue_of = |mut category: i64| -> Option<i64> {
            for _ in 0..8 {
                let row = categories.get(&category)?;
                if truthy(row, "account_parent") {
                    category = id(row, "parent")?;
                    continue;
                }
                return id(row, "account_revenue");
            }
            None
        };
        Ok(products
            .iter()
            .filter_map(|row| {
                let category = category_of.get(&id(row, "template")?)?;
                Some((id(row, "id")?, revenue_of(*category)?))
            })
            .collect())
    }

    async fn write_status(&self, item: &WriteItem, context: &str) -> WriteOutcome {
        let Record::OrderStatus(change) = &item.record else {
            return WriteOutcome::Failed(wrong_record(context, &item.record));
        };
        match self.apply_status(change, context).await {
            Ok(sale) => WriteOutcome::Updated { target_id: sale.to_string() },
            Err(error) => WriteOutcome::Failed(error),
        }
    }

    async fn apply_status(&self, change: &OrderStatusChange, context: &str) -> Result<i64, ConnectorError> {
        let number = change.order_number.trim().to_string();
        let Some((sale, state)) = self.find_sales(std::slice::from_ref(&number), context).await?.remove(&number) else {
            // The order may not be imported yet: worth waiting for.
            return Err(ConnectorError::new(ErrorKind::NotFound, context, format!("no sale for order {number:?}"))
                .with_retryable(true));
        };
        match (change.state, state.as_str()) {
            (OrderState::Cancelled, "cancelled") => Ok(sale),
            (OrderState::Cancelled, "draft" | "quotation") => {
                self.cancel_sale(sale, context).await?;
                Ok(sale)
            }
            (OrderState::Cancelled, other) => Err(invalid(
                context,
                format!(
                    "sale {sale} is {other}: Tryton cancels only draft and quotation sales; cancel its shipments and invoices in tryton"
                ),
            )),
            (OrderState::Processing, "draft" | "quotation") => {
                self.advance_sale(sale, &state, true, context).await?;
                Ok(sale)
            }
            (OrderState::Open, "draft" | "quotation") | (OrderState::Processing, "confirmed" | "processing") => {
                Ok(sale)
            }
            (wanted, other) => Err(invalid(
                context,
                format!(
                    "sale {sale} is {other}; writing {wanted:?} to tryton is not supported (only cancellation and confirmation)"
                ),
            )),
        }
    }
}
