//! Configuration of the `woocommerce` connector and its pure validation.
//!
//! ```toml
//! [systems.shop]
//! type = "woocommerce"
//! url = "https://shop.example.com"
//! consumer_key = "${WOO_KEY}"
//! consumer_secret = "${WOO_SECRET}"
//! webhook_secret = "${WOO_WEBHOOK_SECRET}"
//! currency = "EUR"
//! ```

use crate::http::config::parse_duration;
use crate::secret::SecretRef;
use erpsync_model::Currency;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WooConfig {
    /// The site's URL (WordPress home), without `/wp-json`: `https://shop.example.com`.
    pub url: String,
    pub consumer_key: SecretRef,
    pub consumer_secret: SecretRef,
    /// `basic` (HTTPS only) or `oauth1`; default: `basic` for https URLs, `oauth1` for http.
    #[serde(default)]
    pub auth: Option<AuthMode>,
    /// The secret WooCommerce signs webhook deliveries with; without it every delivery is
    /// refused and `erpsync webhooks register` cannot register any.
    #[serde(default)]
    pub webhook_secret: Option<SecretRef>,
    /// Deliveries whose record was last modified longer ago than this (`date_modified_gmt` in
    /// the signed body) are refused as replays. Generous by default: WooCommerce sends webhooks
    /// from its action queue, which WP-Cron runs only when the site has visitors, and it disables
    /// a webhook after 5 refused deliveries.
    #[serde(default = "default_webhook_tolerance")]
    pub webhook_tolerance: String,
    /// The shop's currency (WooCommerce has one per shop; product prices carry none).
    pub currency: String,
    /// Whether the shop's catalog prices include tax (WooCommerce's "prices entered with tax").
    #[serde(default)]
    pub prices_include_tax: bool,
    /// The shop's weight unit (WooCommerce setting): `kg`, `g`, `lb` or `oz`.
    #[serde(default = "default_weight_unit")]
    pub weight_unit: String,
    /// Records per list request, 1 to 100 (WordPress's maximum).
    #[serde(default = "default_per_page")]
    pub per_page: usize,
    /// Per request, e.g. `"30s"`.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
    /// How far each incremental read reaches back before the last watermark.
    #[serde(default = "default_overlap")]
    pub overlap: String,
    /// WooCommerce keeps one stock number per product or variation. When set, only stock
    /// levels of this location are written and levels of other locations fail with a reason;
    /// when absent, every level received is taken as the SKU's total.
    #[serde(default)]
    pub stock_location: Option<String>,
    /// Whether a shipment moves its order to `completed` (besides adding the tracking note).
    #[serde(default = "default_true")]
    pub shipment_completes_order: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    Basic,
    Oauth1,
}

fn default_weight_unit() -> String {
    "kg".into()
}
fn default_per_page() -> usize {
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
fn default_webhook_tolerance() -> String {
    "24h".into()
}
fn default_true() -> bool {
    true
}

/// The settings after validation.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `{url}/wp-json/wc/v3`, no trailing slash.
    pub api_base: String,
    pub auth: AuthMode,
    pub currency: Currency,
    pub per_page: usize,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub overlap: Duration,
    pub webhook_tolerance: Duration,
}

impl WooConfig {
    /// Every problem, each with its field path. Pure: no network, no secrets.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut push = |field: &str, message: String| problems.push((field.to_string(), message));
        let https = self.url.starts_with("https://");
        if !(https || self.url.starts_with("http://")) {
            push("url", format!("{:?} must start with https:// (or http:// with auth = \"oauth1\")", self.url));
        }
        if self.url.contains("/wp-json") {
            push("url", "is the site's URL, without /wp-json/wc/v3 (erpsync adds it)".into());
        }
        if self.url.contains('?') || self.url.contains('#') {
            push("url", "must not contain a query or a fragment".into());
        }
        if self.auth == Some(AuthMode::Basic) && !https {
            push(
                "auth",
                "WooCommerce accepts Basic authentication only over HTTPS; use https:// or auth = \"oauth1\"".into(),
            );
        }
        if self.currency.parse::<Currency>().is_err() {
            push("currency", format!("{:?} is not an ISO 4217 currency code", self.currency));
        }
        if !matches!(self.weight_unit.as_str(), "kg" | "g" | "lb" | "oz") {
            push("weight_unit", format!("{:?}: use kg, g, lb or oz", self.weight_unit));
        }
        if self.per_page == 0 || self.per_page > 100 {
            push("per_page", "must be between 1 and 100 (WordPress refuses more)".into());
        }
        for (field, value) in [
            ("timeout", &self.timeout),
            ("connect_timeout", &self.connect_timeout),
            ("overlap", &self.overlap),
            ("webhook_tolerance", &self.webhook_tolerance),
        ] {
            if let Err(message) = parse_duration(value) {
                push(field, message);
            }
        }
        if self.stock_location.as_deref().is_some_and(|location| location.trim().is_empty()) {
            push("stock_location", "must not be empty; leave it out to take every level as the total".into());
        }
        problems
    }

    /// The validated settings; `Err` carries the first problem.
    pub fn settings(&self) -> Result<Settings, (String, String)> {
        if let Some(problem) = self.validate().into_iter().next() {
            return Err(problem);
        }
        let auth =
            self.auth.unwrap_or(if self.url.starts_with("https://") { AuthMode::Basic } else { AuthMode::Oauth1 });
        let duration = |field: &str, text: &str| parse_duration(text).map_err(|message| (field.to_string(), message));
        Ok(Settings {
            api_base: format!("{}/wp-json/wc/v3", self.url.trim_end_matches('/')),
            auth,
            currency: self.currency.parse().map_err(|_| ("currency".to_string(), "not a currency".to_string()))?,
            per_page: self.per_page,
            timeout: duration("timeout", &self.timeout)?,
            connect_timeout: duration("connect_timeout", &self.connect_timeout)?,
            overlap: duration("overlap", &self.overlap)?,
            webhook_tolerance: duration("webhook_tolerance", &self.webhook_tolerance)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> WooConfig {
        toml::from_str(text).unwrap()
    }

    const BASE: &str = "consumer_key = \"${K}\"\nconsumer_secret = \"${S}\"\ncurrency = \"EUR\"\n";

    #[test]
    fn defaults_pick_basic_for_https_and_oauth_for_http() {
        let https = config(&format!("url = \"https://shop.example\"\n{BASE}"));
        assert!(https.validate().is_empty());
        let settings = https.settings().unwrap();
        assert_eq!(settings.auth, AuthMode::Basic);
        assert_eq!(settings.api_base, "https://shop.example/wp-json/wc/v3");
        assert_eq!(settings.per_page, 100);
        let http = config(&format!("url = \"http://shop.example/\"\n{BASE}"));
        assert_eq!(http.settings().unwrap().auth, AuthMode::Oauth1);
    }

    #[test]
    fn every_mistake_is_named_with_its_field() {
        let bad = config(
            "url = \"http://shop.example/wp-json/wc/v3\"\nauth = \"basic\"\nper_page = 250\ntimeout = \"soon\"\nweight_unit = \"stone\"\nconsumer_key = \"${K}\"\nconsumer_secret = \"${S}\"\ncurrency = \"EURO\"\n",
        );
        let fields: Vec<String> = bad.validate().into_iter().map(|(field, _)| field).collect();
        for expected in ["url", "auth", "per_page", "timeout", "weight_unit", "currency"] {
            assert!(fields.iter().any(|f| f == expected), "{expected} missing from {fields:?}");
        }
        assert!(toml::from_str::<WooConfig>(&format!("url = \"https://x\"\n{BASE}colour = 1\n")).is_err());
    }
}
