//! Configuration of the `tryton` connector and its pure validation.
//!
//! ```toml
//! [systems.erp]
//! type = "tryton"
//! url = "https://tryton.example.com"
//! database = "erp"
//! username = "erpsync"
//! password = "${TRYTON_PASSWORD}"
//! company = "My Company"              # or its id: company = 1
//! web_shop = "eu-store"               # web.shop that imported orders belong to
//! warehouses = { main = "WH", outlet = "WH2" }   # canonical location -> stock.location code
//! price_list_groups = { "Wholesale" = "B2B-GOLD" }  # price list name -> customer group
//! batch_size = 50
//! ```

use crate::http::config::parse_duration;
use crate::secret::SecretRef;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Most records per `create` call on SQLite: trytond checks exclusion constraints (SKU
/// uniqueness) in one nested query per call, which overflows SQLite's parser past about 85.
pub const MAX_BATCH_SIZE: usize = 80;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrytonConfig {
    /// The server's base URL, without the database: `http://127.0.0.1:8000`.
    pub url: String,
    pub database: String,
    pub username: String,
    pub password: SecretRef,
    /// The company every call works in (`company` in the context): its id or its party name.
    pub company: IdOrName,
    /// Canonical location name -> code of a `stock.location` of type warehouse. Empty: every
    /// warehouse, named by its code.
    #[serde(default)]
    pub warehouses: BTreeMap<String, String>,
    /// The `web.shop` (id or name) that imported orders belong to; with the shop's order number
    /// as `web_id` it makes an import idempotent. Required to write orders.
    #[serde(default)]
    pub web_shop: Option<IdOrName>,
    /// Product category (id or name) with accounting given to created templates, so that their
    /// sales can be invoiced.
    #[serde(default)]
    pub account_category: Option<IdOrName>,
    /// Unit of measure of created products and order lines, by name.
    #[serde(default = "default_unit")]
    pub unit: String,
    #[serde(default = "default_language")]
    pub language: String,
    /// Records per create call, at most 80 (see [`MAX_BATCH_SIZE`]).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Per call, e.g. `"60s"`. Confirming a sale and posting an invoice take a second or so.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
    /// How far an incremental read reaches back before its watermark.
    #[serde(default = "default_overlap")]
    pub overlap: String,
    /// Whether imported sales are confirmed after being quoted (else they stay quotations).
    #[serde(default = "default_true")]
    pub confirm_orders: bool,
    /// Name of a Tryton sale price list (`product.price_list`) -> the canonical customer group
    /// it is read with. A list not named here has its own name as customer group, except the
    /// company's default sale price list, which is the base list (no group).
    #[serde(default)]
    pub price_list_groups: BTreeMap<String, String>,
    /// Whether credit notes written for refunds are posted (else they stay drafts for the
    /// accountant). Posting needs a fiscal year and a credit note sequence in Tryton.
    #[serde(default = "default_true")]
    pub post_credit_notes: bool,
}

/// A record named by its database id or by its name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum IdOrName {
    Id(i64),
    Name(String),
}

fn default_unit() -> String {
    "Unit".into()
}
fn default_language() -> String {
    "en".into()
}
fn default_batch_size() -> usize {
    50
}
fn default_timeout() -> String {
    "60s".into()
}
fn default_connect_timeout() -> String {
    "10s".into()
}
fn default_overlap() -> String {
    "60s".into()
}
fn default_true() -> bool {
    true
}

impl TrytonConfig {
    /// Every problem, each with its field path. Pure: no network, no secrets.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut push = |field: &str, message: String| problems.push((field.to_string(), message));
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            push("url", format!("{:?} must start with http:// or https://", self.url));
        }
        if self.url.trim_end_matches('/').ends_with("/rpc") {
            push("url", "give the server's base URL; erpsync appends /<database>/rpc/ itself".into());
        }
        if self.database.trim().is_empty() || self.database.contains('/') {
            push("database", "must be a database name (no slashes)".into());
        }
        if self.username.trim().is_empty() {
            push("username", "is required".into());
        }
        for (field, value) in [("company", Some(&self.company)), ("web_shop", self.web_shop.as_ref())] {
            match value {
                Some(IdOrName::Id(id)) if *id <= 0 => push(field, format!("{id} is not a record id")),
                Some(IdOrName::Name(name)) if name.trim().is_empty() => push(field, "must not be empty".into()),
                _ => {}
            }
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH_SIZE {
            push(
                "batch_size",
                format!(
                    "{} is out of range: use 1 to {MAX_BATCH_SIZE} (Tryton on SQLite fails above about 85 records per call)",
                    self.batch_size
                ),
            );
        }
        for (field, value) in
            [("timeout", &self.timeout), ("connect_timeout", &self.connect_timeout), ("overlap", &self.overlap)]
        {
            if let Err(message) = parse_duration(value) {
                push(field, message);
            }
        }
        for (name, code) in &self.warehouses {
            if name.trim().is_empty() || code.trim().is_empty() {
                push(&format!("warehouses.{name}"), "location names and codes must not be empty".into());
            }
        }
        for (name, group) in &self.price_list_groups {
            if name.trim().is_empty() || group.trim().is_empty() {
                push(
                    &format!("price_list_groups.{name}"),
                    "price list names and customer groups must not be empty".into(),
                );
            }
        }
        if self.unit.trim().is_empty() {
            push("unit", "must name a unit of measure, e.g. \"Unit\"".into());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> TrytonConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn validates_every_field_with_its_path() {
        let config = parse(
            r#"
            url = "127.0.0.1:8000/erp/rpc"
            database = ""
            username = " "
            password = "${TRYTON_PASSWORD}"
            company = 0
            web_shop = ""
            batch_size = 200
            timeout = "soon"
            warehouses = { main = "" }
            price_list_groups = { "Gold" = " " }
            "#,
        );
        let fields: Vec<String> = config.validate().into_iter().map(|(field, _)| field).collect();
        for expected in [
            "url",
            "database",
            "username",
            "company",
            "web_shop",
            "batch_size",
            "timeout",
            "warehouses.main",
            "price_list_groups.Gold",
        ] {
            assert!(fields.iter().any(|field| field == expected), "{expected} missing from {fields:?}");
        }
        let good = parse(
            r#"
            url = "http://127.0.0.1:8000"
            database = "erp"
            username = "admin"
            password = { file = "/run/secrets/tryton" }
            company = "My Company"
            web_shop = 1
            warehouses = { main = "WH" }
            "#,
        );
        assert_eq!(good.validate(), Vec::<(String, String)>::new());
        assert_eq!(good.company, IdOrName::Name("My Company".into()));
        assert_eq!(good.web_shop, Some(IdOrName::Id(1)));
        assert_eq!(good.batch_size, 50);
        assert!(good.post_credit_notes && good.price_list_groups.is_empty());
    }
}
