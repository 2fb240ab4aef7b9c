//! Every webhook decoder fed random bodies and headers: it never panics, and never accepts a
//! delivery whose signature was not made with the secret.

use chrono::Utc;
use erpsync_connectors::{SystemConfig, WebhookReceiver};
use proptest::prelude::*;
use std::sync::Arc;

/// The receivers of every connector that takes webhooks, each with the secret `s3cret`, built
/// once.
fn receivers() -> &'static [(&'static str, Arc<dyn WebhookReceiver>)] {
    static RECEIVERS: std::sync::OnceLock<Vec<(&'static str, Arc<dyn WebhookReceiver>)>> = std::sync::OnceLock::new();
    RECEIVERS.get_or_init(build_receivers)
}

fn build_receivers() -> Vec<(&'static str, Arc<dyn WebhookReceiver>)> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("erpsync-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, "s3cret").unwrap();
    let secret = secret.display().to_string();
    let configs = [
        (
            "http",
            format!(
                r#"type = "http"
base_url = "http://127.0.0.1:9"
webhook = {{ secret = {{ file = "{secret}" }}, signature_header = "X-Signature", id_header = "X-Id", topic_header = "X-Topic", topics = {{ "a" = "order" }} }}
"#
            ),
        ),
        (
            "shopify",
            format!(
                r#"type = "shopify"
url = "http://127.0.0.1:9"
access_token = {{ file = "{secret}" }}
webhook_secret = {{ file = "{secret}" }}
"#
            ),
        ),
        (
            "woocommerce",
            format!(
                r#"type = "woocommerce"
url = "http://127.0.0.1:9"
consumer_key = {{ file = "{secret}" }}
consumer_secret = {{ file = "{secret}" }}
webhook_secret = {{ file = "{secret}" }}
currency = "EUR"
"#
            ),
        ),
        (
            "medusa",
            format!(
                r#"type = "medusa"
url = "http://127.0.0.1:9"
sales_channel = "Default Sales Channel"
currency = "eur"
api_key = {{ file = "{secret}" }}
webhook_secret = {{ file = "{secret}" }}
"#
            ),
        ),
    ];
    configs
        .into_iter()
        .map(|(name, text)| {
            let config: SystemConfig = toml::from_str(&text).unwrap();
            (name, config.build_webhook_receiver(name).unwrap().expect("this connector receives webhooks"))
        })
        .collect()
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("x-signature".to_string()),
        Just("x-id".to_string()),
        Just("x-topic".to_string()),
        Just("x-shopify-hmac-sha256".to_string()),
        Just("x-shopify-webhook-id".to_string()),
        Just("x-shopify-topic".to_string()),
        Just("x-wc-webhook-signature".to_string()),
        Just("x-wc-webhook-delivery-id".to_string()),
        Just("x-signature-sha256".to_string()),
        "[a-z-]{1,20}",
    ]
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof!["[0-9a-f]{64}", "[A-Za-z0-9+/]{43}=", "sha256=[0-9a-f]{64}", Just("a".to_string()), ".{0,80}",]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_deliveries_are_refused_without_panicking(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        headers in proptest::collection::vec((header_name(), header_value()), 0..8),
    ) {
        for (name, receiver) in receivers() {
            let verified = receiver.verify(&headers, &body, Utc::now());
            prop_assert!(verified.is_err(), "{name} accepted a delivery nobody signed: {headers:?}");
            // Decoding is only done after verification, but must not panic on anything.
            let _ = receiver.decode("a", &body);
        }
    }
}
