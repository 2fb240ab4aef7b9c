//! Configuration of the `medusa` connector and its pure validation.
//!
//! ```toml
//! [systems.shop]
//! type = "medusa"
//! url = "https://shop.example.com"             # the Medusa server, without /admin
//! api_key = "${MEDUSA_API_KEY}"                # a secret API key (sk_…)
//! sales_channel = "Default Sales Channel"      # name or id (sc_…)
//! currency = "EUR"
//! region = "Europe"                            # optional: name or id (reg_…)
//! stock_locations = { main = "Main WH", outlet = "Second WH" }   # canonical -> Medusa name
//! webhook_secret = "${MEDUSA_WEBHOOK_SECRET}"  # what the forwarding subscriber signs with
//! ```

use crate::http::config::parse_duration;
use crate::secret::SecretRef;
use erpsync_model::Currency;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Medusa's largest `limit` on list requests is not documented as a hard cap; 1000 keeps one
/// response well under the body cap with the fields we ask for.
pub const MAX_PAGE_SIZE: usize = 1000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MedusaConfig {
    /// The server's base URL, without `/admin`: `https://shop.example.com`.
    pub url: String,
    /// A secret API key (`sk_…`, created under Settings → Secret API Keys or with
    /// `POST /admin/api-keys {"type":"secret"}`), sent as HTTP Basic with an empty password.
    pub api_key: SecretRef,
    /// The sales channel created products are published in, by name or id (`sc_…`).
    pub sales_channel: String,
    /// The currency of prices written and read (Medusa keeps a price per currency).
    pub currency: String,
    /// A region (name or id, `reg_…`) whose currency must equal `currency`; checked when the
    /// connector first talks to the shop. Optional.
    #[serde(default)]
    pub region: Option<String>,
    /// Canonical location name -> Medusa stock location name. Empty: every stock location, by
    /// its Medusa name.
    #[serde(default)]
    pub stock_locations: BTreeMap<String, String>,
    /// The shipping profile (name or id, `sp_…`) of created products; default: the profile of
    /// type `default`.
    #[serde(default)]
    pub shipping_profile: Option<String>,
    /// The secret the forwarding subscriber (`tools/medusa/src/subscribers/webhook.js`) signs
    /// events with; without it every delivery is refused.
    #[serde(default)]
    pub webhook_secret: Option<SecretRef>,
    /// Records per list request, 1 to 1000.
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    /// Per request, e.g. `"30s"`.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
    /// How far each incremental read reaches back before the last watermark.
    #[serde(default = "default_overlap")]
    pub overlap: String,
    /// Whether a shipment written to Medusa is also marked as delivered at once (Medusa keeps
    /// shipped and delivered apart; most ERPs report only "shipped").
    #[serde(default)]
    pub mark_delivered: bool,
}

fn default_page_size() -> usize {
    100
}
fn default_timeout() -> String {
    "30s".into()
}
fn default_connect_timeout() -> String {
    "10s".into()
}
fn default_overlap() -> String {
    "60s".into()
}

/// The settings after validation.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The base URL, no trailing slash.
    pub base: String,
    pub currency: Currency,
    pub page_size: usize,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub overlap: Duration,
}

impl MedusaConfig {
    /// Every problem, each with its field path. Pure: no network, no secrets.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut push = |field: &str, message: String| problems.push((field.to_string(), message));
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            push("url", format!("{:?} must start with https:// or http://", self.url));
        }
        if self.url.trim_end_matches('/').ends_with("/admin") || self.url.contains("/admin/") {
            push("url", "is the server's base URL, without /admin (erpsync adds the paths)".into());
        }
        if self.url.contains('?') || self.url.contains('#') {
            push("url", "must not contain a query or a fragment".into());
        }
        if self.sales_channel.trim().is_empty() {
            push("sales_channel", "must name a sales channel (its name or its id sc_…)".into());
        }
        if self.currency.parse::<Currency>().is_err() {
            push("currency", format!("{:?} is not an ISO 4217 currency code", self.currency));
        }
        if self.region.as_deref().is_some_and(|region| region.trim().is_empty()) {
            push("region", "must not be empty; leave it out to skip the region check".into());
        }
        if self.shipping_profile.as_deref().is_some_and(|profile| profile.trim().is_empty()) {
            push("shipping_profile", "must not be empty; leave it out for the default profile".into());
        }
        for (canonical, medusa) in &self.stock_locations {
            if canonical.trim().is_empty() || medusa.trim().is_empty() {
                push(
                    &format!("stock_locations.{canonical}"),
                    "maps a canonical location name to a Medusa stock location name; neither may be empty".into(),
                );
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for medusa in self.stock_locations.values() {
            if !seen.insert(medusa) {
                push(
                    "stock_locations",
                    format!("{medusa:?} is mapped twice: each Medusa location may have one canonical name"),
                );
            }
        }
        if self.page_size == 0 || self.page_size > MAX_PAGE_SIZE {
            push("page_size", format!("must be between 1 and {MAX_PAGE_SIZE}"));
        }
        for (field, value) in
            [("timeout", &self.timeout), ("connect_timeout", &self.connect_timeout), ("overlap", &self.overlap)]
        {
            if let Err(message) = parse_duration(value) {
                push(field, message);
            }
        }
        problems
    }

    /// The validated settings; `Err` carries the first problem.
    pub fn settings(&self) -> Result<Settings, (String, String)> {
        if let Some(problem) = self.validate().into_iter().next() {
            return Err(problem);
        }
        let duration = |field: &str, text: &str| parse_duration(text).map_err(|message| (field.to_string(), message));
        Ok(Settings {
            base: self.url.trim_end_matches('/').to_string(),
            currency: self.currency.parse().map_err(|_| ("currency".to_string(), "not a currency".to_string()))?,
            page_size: self.page_size,
            timeout: duration("timeout", &self.timeout)?,
            connect_timeout: duration("connect_timeout", &self.connect_timeout)?,
            overlap: duration("overlap", &self.overlap)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> MedusaConfig {
        toml::from_str(text).unwrap()
    }

    const BASE: &str = "api_key = \"${K}\"\nsales_channel = \"Default Sales Channel\"\ncurrency = \"EUR\"\n";

    #[test]
    fn defaults_are_valid() {
        let ok = config(&format!("url = \"http://127.0.0.1:9000/\"\n{BASE}"));
        assert_eq!(ok.validate(), Vec::<(String, String)>::new());
        let settings = ok.settings().unwrap();
        assert_eq!(settings.base, "http://127.0.0.1:9000");
        assert_eq!(settings.page_size, 100);
        assert_eq!(settings.overlap, Duration::from_secs(60));
    }

    #[test]
    fn every_mistake_is_named_with_its_field() {
        let bad = config(
            "url = \"shop.example/admin\"\napi_key = \"${K}\"\nsales_channel = \" \"\ncurrency = \"EURO\"\npage_size = 0\ntimeout = \"soon\"\nregion = \"\"\nstock_locations = { main = \"A\", outlet = \"A\" }\n",
        );
        let fields: Vec<String> = bad.validate().into_iter().map(|(field, _)| field).collect();
        for expected in ["url", "sales_channel", "currency", "page_size", "timeout", "region", "stock_locations"] {
            assert!(fields.iter().any(|f| f == expected), "{expected} missing from {fields:?}");
        }
        assert!(toml::from_str::<MedusaConfig>(&format!("url = \"https://x\"\n{BASE}colour = 1\n")).is_err());
        assert!(
            toml::from_str::<MedusaConfig>(
                "url = \"https://x\"\napi_key = \"sk_literal\"\nsales_channel = \"s\"\ncurrency = \"EUR\"\n"
            )
            .is_err()
        );
    }
}
