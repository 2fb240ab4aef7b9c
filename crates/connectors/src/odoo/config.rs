//! Configuration of the `odoo` connector and its pure validation.
//!
//! ```toml
//! [systems.odoo]
//! type = "odoo"
//! url = "https://erp.example.com"
//! database = "production"
//! protocol = "json2"                       # Odoo 19+; "jsonrpc" for older servers
//! api_key = "${ODOO_API_KEY}"
//! warehouses = { main = "WH", outlet = "WH2" }
//! price_lists = { wholesale = "Wholesale", vip = "VIP" }
//! confirm_orders = true
//! shipping_product = "SHIP"
//! ```

use crate::http::config::parse_duration;
use crate::secret::SecretRef;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OdooConfig {
    /// `https://host` (with a path prefix if Odoo is served under one), without `/jsonrpc`.
    pub url: String,
    /// The database name: sent as `X-Odoo-Database` (JSON-2) and in every JSON-RPC call.
    pub database: String,
    #[serde(default)]
    pub protocol: Protocol,
    /// JSON-2: the bearer API key. JSON-RPC: may replace `password` (Odoo accepts a key there).
    #[serde(default)]
    pub api_key: Option<SecretRef>,
    /// JSON-RPC: the user's login.
    #[serde(default)]
    pub login: Option<String>,
    /// JSON-RPC: the user's password (or an API key).
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// The company to work in (multi-company databases): sent as `allowed_company_ids` in the
    /// context and set on created orders.
    #[serde(default)]
    pub company_id: Option<i64>,
    /// Canonical location name -> `stock.warehouse` code or `stock.location` name. Empty: one
    /// location per warehouse, named by its code.
    #[serde(default)]
    pub warehouses: BTreeMap<String, String>,
    /// Customer group -> `product.pricelist` name.
    #[serde(default)]
    pub price_lists: BTreeMap<String, String>,
    /// Runs `action_confirm` on each sales order created.
    #[serde(default)]
    pub confirm_orders: bool,
    /// `default_code` of the product used for shipping lines of orders.
    #[serde(default)]
    pub shipping_product: Option<String>,
    /// Records per `create` call (orders, customers).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Currency of amounts when the Odoo model has no `currency_id` field to say it.
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Per request, e.g. `"60s"`.
    #[serde(default = "default_timeout")]
    pub timeout: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// `POST /json/2/<model>/<method>` with `Authorization: bearer <api key>` (Odoo 19+).
    #[default]
    Json2,
    /// `POST /jsonrpc` with `object.execute_kw` and a uid from `common.authenticate`.
    Jsonrpc,
}

fn default_batch_size() -> usize {
    100
}

fn default_currency() -> String {
    "EUR".into()
}

fn default_timeout() -> String {
    "60s".into()
}

/// Most records one `create` call takes: Odoo runs a call in one transaction, and a very large
/// one holds locks for long.
pub const MAX_BATCH_SIZE: usize = 1000;

impl OdooConfig {
    /// Every problem, each with its field path. Pure: no network, no secrets.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut push = |field: &str, message: String| problems.push((field.to_string(), message));
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            push("url", format!("{:?} must start with http:// or https://", self.url));
        }
        if self.url.trim_end_matches('/').ends_with("/jsonrpc") || self.url.contains("/json/2") {
            push("url", "is the server's address only: the connector adds /jsonrpc or /json/2 itself".into());
        }
        if self.database.trim().is_empty() {
            push("database", "is required (the Odoo database name)".into());
        }
        match self.protocol {
            Protocol::Json2 => {
                if self.api_key.is_none() {
                    push("api_key", "is required with protocol = \"json2\" (a bearer API key)".into());
                }
                if self.login.is_some() || self.password.is_some() {
                    push(
                        "protocol",
                        "login and password are for protocol = \"jsonrpc\"; JSON-2 uses api_key only".into(),
                    );
                }
            }
            Protocol::Jsonrpc => {
                if self.login.as_deref().is_none_or(|login| login.trim().is_empty()) {
                    push("login", "is required with protocol = \"jsonrpc\"".into());
                }
                if self.password.is_none() && self.api_key.is_none() {
                    push("password", "is required with protocol = \"jsonrpc\" (a password or an API key)".into());
                }
                if self.password.is_some() && self.api_key.is_some() {
                    push("api_key", "give either password or api_key with protocol = \"jsonrpc\", not both".into());
                }
            }
        }
        if let Some(company) = self.company_id
            && company <= 0
        {
            push("company_id", format!("{company} is not a record id (ids start at 1)"));
        }
        for (name, target) in &self.warehouses {
            if name.trim().is_empty() {
                push("warehouses", "a location name is empty".into());
            }
            if target.trim().is_empty() {
                push(&format!("warehouses.{name}"), "needs a warehouse code or a location name".into());
            }
        }
        for (group, list) in &self.price_lists {
            if list.trim().is_empty() {
                push(&format!("price_lists.{group}"), "needs a product.pricelist name".into());
            }
        }
        if self.shipping_product.as_deref().is_some_and(|code| code.trim().is_empty()) {
            push("shipping_product", "is empty: give the default_code of the shipping product or leave it out".into());
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH_SIZE {
            push("batch_size", format!("must be between 1 and {MAX_BATCH_SIZE}"));
        }
        if self.currency.parse::<erpsync_model::Currency>().is_err() {
            push("currency", format!("{:?} is not an ISO 4217 code such as EUR", self.currency));
        }
        if let Err(message) = parse_duration(&self.timeout) {
            push("timeout", message);
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> OdooConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn json2_needs_a_key_and_jsonrpc_a_login() {
        let config = parse("url = \"https://erp.example.com\"\ndatabase = \"prod\"\napi_key = \"${ODOO_KEY}\"");
        assert_eq!(config.protocol, Protocol::Json2);
        assert!(config.validate().is_empty(), "{:?}", config.validate());

        let config =
            parse("url = \"erp.example.com/jsonrpc\"\ndatabase = \"\"\nprotocol = \"jsonrpc\"\nbatch_size = 0");
        let fields: Vec<String> = config.validate().into_iter().map(|(field, _)| field).collect();
        for expected in ["url", "database", "login", "password", "batch_size"] {
            assert!(fields.iter().any(|field| field == expected), "{expected} missing in {fields:?}");
        }
    }

    #[test]
    fn names_the_warehouse_and_price_list_entries() {
        let config = parse(
            "url = \"http://localhost:8069\"\ndatabase = \"odoo\"\nprotocol = \"jsonrpc\"\nlogin = \"admin\"\npassword = \"${P}\"\nwarehouses = { main = \"\" }\nprice_lists = { vip = \" \" }\ncurrency = \"EURO\"",
        );
        let problems = config.validate();
        let fields: Vec<&str> = problems.iter().map(|(field, _)| field.as_str()).collect();
        assert_eq!(fields, ["warehouses.main", "price_lists.vip", "currency"], "{problems:?}");
    }
}
