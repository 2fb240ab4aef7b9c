//! Configuration of the `shopify` connector and its pure validation.
//!
//! ```toml
//! [systems.eu-store]
//! type = "shopify"
//! url = "https://eu-store.myshopify.com"
//! api_version = "2026-10"
//! access_token = "${SHOPIFY_TOKEN}"
//! webhook_secret = "${SHOPIFY_CLIENT_SECRET}"
//! bulk_threshold = 250
//! locations = { "WH-MAIN" = "Main warehouse" }
//! price_lists = { "B2B-GOLD" = "gid://shopify/PriceList/12" }
//! ```

use crate::http::config::parse_duration;
use crate::secret::SecretRef;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The API version used when none is configured: a stable quarterly release.
pub const DEFAULT_API_VERSION: &str = "2026-10";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopifyConfig {
    /// The shop's base URL: `https://<shop>.myshopify.com` (or a simulator's address).
    pub url: String,
    /// `YYYY-MM` of a quarterly release (`01`, `04`, `07`, `10`) or `unstable`.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// The Admin API access token (`X-Shopify-Access-Token`).
    pub access_token: SecretRef,
    /// The app's client secret, the key of webhook signatures. Without it every webhook is
    /// rejected.
    #[serde(default)]
    pub webhook_secret: Option<SecretRef>,
    /// A product batch with more records than this is written through a bulk operation.
    #[serde(default = "default_bulk_threshold")]
    pub bulk_threshold: usize,
    /// Canonical location name -> Shopify location name or `gid://shopify/Location/<id>`.
    /// Names not listed are matched to a Shopify location of the same name.
    #[serde(default)]
    pub locations: BTreeMap<String, String>,
    /// Customer group (or price list code) -> Shopify price list name or
    /// `gid://shopify/PriceList/<id>`.
    #[serde(default)]
    pub price_lists: BTreeMap<String, String>,
    /// Per request, e.g. `"30s"`.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// How long a bulk operation may run before the batch is given up as timed out.
    #[serde(default = "default_bulk_timeout")]
    pub bulk_timeout: String,
    /// How far an incremental read reaches back before the watermark.
    #[serde(default = "default_overlap")]
    pub overlap: String,
    /// Deliveries whose `X-Shopify-Triggered-At` is older than this are refused as replays.
    #[serde(default = "default_webhook_tolerance")]
    pub webhook_tolerance: String,
    /// Namespace of the order metafields that carry documents (invoice, delivery note).
    #[serde(default = "default_metafield_namespace")]
    pub document_namespace: String,
    /// An order cancelled from the ERP is refunded to the original payment methods in Shopify.
    /// Off by default: money goes back only when someone decided it should.
    #[serde(default)]
    pub cancel_refund: bool,
    /// An order cancelled from the ERP puts its items back in stock in Shopify.
    #[serde(default = "default_true")]
    pub cancel_restock: bool,
}

fn default_true() -> bool {
    true
}

fn default_api_version() -> String {
    DEFAULT_API_VERSION.into()
}
fn default_bulk_threshold() -> usize {
    250
}
fn default_timeout() -> String {
    "30s".into()
}
fn default_bulk_timeout() -> String {
    "30m".into()
}
fn default_overlap() -> String {
    "5s".into()
}
fn default_webhook_tolerance() -> String {
    "1h".into()
}
fn default_metafield_namespace() -> String {
    "erpsync".into()
}

/// Whether `text` is `YYYY-MM` with a quarterly month, or `unstable`.
fn is_api_version(text: &str) -> bool {
    if text == "unstable" {
        return true;
    }
    let bytes = text.as_bytes();
    text.len() == 7
        && bytes[4] == b'-'
        && text[..4].chars().all(|c| c.is_ascii_digit())
        && matches!(&text[5..], "01" | "04" | "07" | "10")
}

impl ShopifyConfig {
    /// Every problem, each with its field path. Pure: no network, no secrets.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut push = |field: &str, message: String| problems.push((field.to_string(), message));
        let url = self.url.trim_end_matches('/');
        match reqwest::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => {
                if parsed.path() != "/" && !parsed.path().is_empty() {
                    push(
                        "url",
                        format!(
                            "{:?} must be the shop's base URL without a path, e.g. https://my-shop.myshopify.com",
                            self.url
                        ),
                    );
                }
            }
            _ => push("url", format!("{:?} must be an http(s) URL such as https://my-shop.myshopify.com", self.url)),
        }
        if !is_api_version(&self.api_version) {
            push(
                "api_version",
                format!(
                    "{:?} is not an API version: use YYYY-MM of a quarterly release (e.g. 2026-10) or unstable",
                    self.api_version
                ),
            );
        }
        if self.bulk_threshold == 0 {
            push("bulk_threshold", "must be at least 1".into());
        }
        for (field, text) in [
            ("timeout", &self.timeout),
            ("bulk_timeout", &self.bulk_timeout),
            ("overlap", &self.overlap),
            ("webhook_tolerance", &self.webhook_tolerance),
        ] {
            if let Err(message) = parse_duration(text) {
                push(field, message);
            }
        }
        for (name, target) in &self.locations {
            if name.trim().is_empty() {
                push("locations", "a location name is empty".into());
            }
            if target.trim().is_empty() {
                push(&format!("locations.{name}"), "names no Shopify location".into());
            }
            if target.starts_with("gid://") && !target.starts_with("gid://shopify/Location/") {
                push(
                    &format!("locations.{name}"),
                    format!("{target:?} is not a location id (gid://shopify/Location/<id>)"),
                );
            }
        }
        for (group, target) in &self.price_lists {
            if target.trim().is_empty() {
                push(&format!("price_lists.{group}"), "names no Shopify price list".into());
            }
            if target.starts_with("gid://") && !target.starts_with("gid://shopify/PriceList/") {
                push(
                    &format!("price_lists.{group}"),
                    format!("{target:?} is not a price list id (gid://shopify/PriceList/<id>)"),
                );
            }
        }
        if self.document_namespace.len() < 3 || self.document_namespace.len() > 255 {
            push("document_namespace", "must be 3 to 255 characters long".into());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ShopifyConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_and_problems_with_their_fields() {
        let config = parse("url = \"https://x.myshopify.com\"\naccess_token = \"${T}\"");
        assert_eq!(config.api_version, DEFAULT_API_VERSION);
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        let config = parse(
            "url = \"ftp://x\"\napi_version = \"2026-05\"\naccess_token = \"${T}\"\nbulk_threshold = 0\n\
             timeout = \"3 weeks\"\nlocations = { A = \"gid://shopify/Product/1\" }",
        );
        let problems = config.validate();
        let fields: Vec<&str> = problems.iter().map(|(field, _)| field.as_str()).collect();
        assert_eq!(fields, ["url", "api_version", "bulk_threshold", "timeout", "locations.A"]);
    }
}
