//! Verification of inbound webhooks signed with HMAC-SHA256, in the configurable shape most
//! REST systems use: a signature header (hex or base64, optionally prefixed), a delivery id
//! header, and optionally a timestamp that is signed too and bounds replays.

use crate::http::config::{WebhookConfig, parse_duration};
use crate::secret::Secret;
use crate::{ConnectorError, ErrorKind, EventRef, VerifiedDelivery, WebhookReceiver};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use erpsync_model::EntityKind;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::time::Duration;

pub(crate) struct WebhookSettings {
    secret: Secret,
    signature_header: String,
    base64: bool,
    prefix: String,
    id_header: String,
    topic_header: Option<String>,
    timestamp_header: Option<String>,
    timestamp_path: Option<String>,
    tolerance: Duration,
    topics: std::collections::BTreeMap<String, EntityKind>,
    record_id: String,
}

impl WebhookSettings {
    pub(crate) fn new(config: &WebhookConfig) -> Result<Self, String> {
        Ok(WebhookSettings {
            secret: config.secret.resolve().map_err(|error| error.to_string())?,
            signature_header: config.signature_header.to_ascii_lowercase(),
            base64: config.encoding == "base64",
            prefix: config.prefix.clone(),
            id_header: config.id_header.to_ascii_lowercase(),
            topic_header: config.topic_header.as_ref().map(|header| header.to_ascii_lowercase()),
            timestamp_header: config.timestamp_header.as_ref().map(|header| header.to_ascii_lowercase()),
            timestamp_path: config.timestamp_path.clone(),
            tolerance: parse_duration(&config.tolerance)?,
            topics: config
                .topics
                .iter()
                .map(|(topic, entity)| {
                    entity.parse::<EntityKind>().map(|entity| (topic.clone(), entity)).map_err(|e| e.to_string())
                })
                .collect::<Result<_, _>>()?,
            record_id: config.record_id.clone(),
        })
    }

    /// Checks a delivery over its raw body. Headers are `(lower-case name, value)` pairs.
    pub(crate) fn verify(
        &self,
        headers: &[(String, String)],
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<VerifiedDelivery, ConnectorError> {
        let context = "verifying a webhook";
        let header = |name: &str| {
            headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
        };
        let reject = |message: String| ConnectorError::new(ErrorKind::Auth, context, message);
        let signature =
            header(&self.signature_header).ok_or_else(|| reject(format!("no {} header", self.signature_header)))?;
        let signature = signature.strip_prefix(self.prefix.as_str()).unwrap_or(signature);
        let given = if self.base64 {
            base64::engine::general_purpose::STANDARD
                .decode(signature.trim())
                .map_err(|_| reject("the signature is not base64".into()))?
        } else {
            hex::decode(signature.trim()).map_err(|_| reject("the signature is not hex".into()))?
        };
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.secret.expose().as_bytes()).expect("HMAC takes keys of any length");
        let mut timestamp = None;
        if let Some(name) = &self.timestamp_header {
            let text = header(name).ok_or_else(|| reject(format!("no {name} header")))?;
            let seconds: i64 = text.trim().parse().map_err(|_| reject(format!("{name} is not a Unix time")))?;
            let at = DateTime::from_timestamp(seconds, 0).ok_or_else(|| reject(format!("{name} is out of range")))?;
            let age = (now - at).abs().to_std().unwrap_or(Duration::MAX);
            if age > self.tolerance {
                return Err(reject(format!("the delivery is {}s old, more than the tolerance", age.as_secs())));
            }
            mac.update(text.trim().as_bytes());
            mac.update(b".");
            timestamp = Some(at);
        }
        mac.update(body);
        // `verify_slice` compares in constant time.
        mac.verify_slice(&given).map_err(|_| reject("the signature does not match the body".into()))?;
        if let Some(path) = &self.timestamp_path {
            let at = body_time(body, path).map_err(reject)?;
            let age = (now - at).abs().to_std().unwrap_or(Duration::MAX);
            if age > self.tolerance {
                return Err(reject(format!(
                    "the delivery's {path} is {}s from now, more than the tolerance of {}s",
                    age.as_secs(),
                    self.tolerance.as_secs()
                )));
            }
            timestamp = timestamp.or(Some(at));
        }
        let delivery_id = header(&self.id_header).ok_or_else(|| reject(format!("no {} header", self.id_header)))?;
        Ok(VerifiedDelivery {
            delivery_id: delivery_id.to_string(),
            topic: self.topic_header.as_ref().and_then(|name| header(name)).map(str::to_string),
            timestamp,
        })
    }
}

/// The time at the dotted `path` of a signed body: RFC 3339 text or Unix seconds.
fn body_time(body: &[u8], path: &str) -> Result<DateTime<Utc>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| format!("the body is not JSON, so it has no {path}"))?;
    match crate::http::map::get_path(&value, path) {
        Some(serde_json::Value::String(text)) => DateTime::parse_from_rfc3339(text.trim())
            .map(|at| at.with_timezone(&Utc))
            .map_err(|_| format!("{path} is {text:?}, not an RFC 3339 time")),
        Some(serde_json::Value::Number(number)) => number
            .as_i64()
            .and_then(|seconds| DateTime::from_timestamp(seconds, 0))
            .ok_or_else(|| format!("{path} is {number}, not a Unix time in seconds")),
        Some(other) => Err(format!("{path} is {other}, not a time")),
        None => Err(format!("the body has no {path}")),
    }
}

impl WebhookSettings {
    /// The record a delivery is about, from its topic and body (see the `topics` setting).
    pub(crate) fn decode(&self, topic: &str, body: &[u8]) -> Result<Option<Vec<EventRef>>, ConnectorError> {
        let context = "reading a webhook delivery";
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|error| {
            ConnectorError::new(ErrorKind::InvalidRequest, context, format!("the body is not JSON: {error}"))
        })?;
        if self.topics.is_empty() {
            return Ok(None);
        }
        let Some(entity) = self.topics.get(topic) else {
            let known: Vec<&str> = self.topics.keys().map(String::as_str).collect();
            return Err(ConnectorError::new(
                ErrorKind::InvalidRequest,
                context,
                format!("unknown topic {topic:?}; this system is configured for {}", known.join(", ")),
            ));
        };
        let id = crate::http::map::get_path(&value, &self.record_id).and_then(crate::http::map::id_text).ok_or_else(
            || {
                ConnectorError::new(
                    ErrorKind::InvalidRequest,
                    context,
                    format!("the {topic:?} delivery has no record id at {:?}", self.record_id),
                )
            },
        )?;
        Ok(Some(vec![EventRef { entity: *entity, id }]))
    }
}

impl WebhookReceiver for crate::http::HttpConnector {
    fn decode(&self, topic: &str, body: &[u8]) -> Result<Option<Vec<EventRef>>, ConnectorError> {
        match &self.webhook {
            Some(settings) => settings.decode(topic, body),
            None => Ok(None),
        }
    }

    /// Verifies an inbound webhook for this system over its raw body. A system without
    /// `[systems.<name>.webhook]` settings has no secret and rejects every delivery.
    fn verify(
        &self,
        headers: &[(String, String)],
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<VerifiedDelivery, ConnectorError> {
        match &self.webhook {
            Some(settings) => settings.verify(headers, body, now),
            None => Err(ConnectorError::new(
                ErrorKind::Auth,
                format!("verifying a webhook for http {:?}", self.system),
                "no webhook secret is configured for this system, so every delivery is rejected",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretRef;

    fn settings(timestamp: bool, base64: bool) -> WebhookSettings {
        settings_with(timestamp, base64, None)
    }

    fn settings_with(timestamp: bool, base64: bool, timestamp_path: Option<&str>) -> WebhookSettings {
        // Tests run in parallel and several build the same settings: each writes and removes a
        // secret file of its own (a shared name let one test remove another's file mid-read).
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "erpsync-webhook-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::write(&dir, "whsec").unwrap();
        let config = WebhookConfig {
            secret: SecretRef::File(dir.clone()),
            signature_header: "X-Signature".into(),
            encoding: if base64 { "base64".into() } else { "hex".into() },
            prefix: "sha256=".into(),
            id_header: "X-Delivery-Id".into(),
            topic_header: Some("X-Topic".into()),
            timestamp_header: timestamp.then(|| "X-Timestamp".into()),
            timestamp_path: timestamp_path.map(str::to_string),
            tolerance: "5m".into(),
            topics: [("product.updated".to_string(), "product".to_string())].into(),
            record_id: "data.id".into(),
        };
        let settings = WebhookSettings::new(&config).unwrap();
        std::fs::remove_file(dir).ok();
        settings
    }

    fn sign(content: &[u8], base64: bool) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec").unwrap();
        mac.update(content);
        let bytes = mac.finalize().into_bytes();
        let encoded = if base64 { base64::engine::general_purpose::STANDARD.encode(bytes) } else { hex::encode(bytes) };
        format!("sha256={encoded}")
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())).collect()
    }

    #[test]
    fn accepts_a_correct_signature_and_refuses_a_tampered_body() {
        let body = br#"{"id": 7}"#;
        for base64 in [false, true] {
            let settings = settings(false, base64);
            let good = headers(&[
                ("X-Signature", &sign(body, base64)),
                ("X-Delivery-Id", "d-1"),
                ("X-Topic", "product.updated"),
            ]);
            let delivery = settings.verify(&good, body, Utc::now()).unwrap();
            assert_eq!(delivery.delivery_id, "d-1");
            assert_eq!(delivery.topic.as_deref(), Some("product.updated"));
            let error = settings.verify(&good, br#"{"id": 8}"#, Utc::now()).unwrap_err();
            assert_eq!(error.kind, ErrorKind::Auth);
        }
    }

    #[test]
    fn a_signed_timestamp_bounds_replays() {
        let settings = settings(true, false);
        let body = b"{}";
        let now = Utc::now();
        let old = (now - chrono::Duration::minutes(10)).timestamp().to_string();
        let fresh = now.timestamp().to_string();
        let signed = |ts: &str| sign(format!("{ts}.{{}}").as_bytes(), false);
        let ok = headers(&[("X-Signature", &signed(&fresh)), ("X-Timestamp", &fresh), ("X-Delivery-Id", "d")]);
        assert!(settings.verify(&ok, body, now).is_ok());
        let replay = headers(&[("X-Signature", &signed(&old)), ("X-Timestamp", &old), ("X-Delivery-Id", "d")]);
        assert!(settings.verify(&replay, body, now).unwrap_err().to_string().contains("old"));
        let missing = headers(&[("X-Signature", &signed(&fresh)), ("X-Delivery-Id", "d")]);
        assert!(settings.verify(&missing, body, now).is_err());
    }

    #[test]
    fn a_time_in_the_signed_body_bounds_replays_for_senders_without_a_timestamp_header() {
        let settings = settings_with(false, false, Some("meta.sent_at"));
        let now = Utc::now();
        let verify = |body: String| {
            let good = headers(&[("X-Signature", &sign(body.as_bytes(), false)), ("X-Delivery-Id", "d")]);
            settings.verify(&good, body.as_bytes(), now)
        };
        let fresh = verify(format!(r#"{{"meta": {{"sent_at": "{}"}}}}"#, now.to_rfc3339())).unwrap();
        assert_eq!(fresh.timestamp.map(|at| at.timestamp()), Some(now.timestamp()));
        let seconds = verify(format!(r#"{{"meta": {{"sent_at": {}}}}}"#, now.timestamp() - 30)).unwrap();
        assert_eq!(seconds.timestamp.map(|at| at.timestamp()), Some(now.timestamp() - 30));
        let old = (now - chrono::Duration::minutes(10)).to_rfc3339();
        let error = verify(format!(r#"{{"meta": {{"sent_at": "{old}"}}}}"#)).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Auth);
        assert!(error.message.contains("meta.sent_at is 600s from now"), "{error}");
        let error = verify(r#"{"meta": {}}"#.to_string()).unwrap_err();
        assert!(error.message.contains("no meta.sent_at"), "{error}");
        let error = verify(r#"{"meta": {"sent_at": "yesterday"}}"#.to_string()).unwrap_err();
        assert!(error.message.contains("not an RFC 3339 time"), "{error}");
    }

    #[test]
    fn decode_names_the_record_or_says_why_not() {
        let settings = settings(false, false);
        let refs = settings.decode("product.updated", br#"{"data": {"id": 12}}"#).unwrap().unwrap();
        assert_eq!(refs, vec![EventRef { entity: EntityKind::Product, id: "12".into() }]);
        let error = settings.decode("order.updated", br#"{"data": {"id": 12}}"#).unwrap_err();
        assert!(error.message.contains("unknown topic"), "{error}");
        let error = settings.decode("product.updated", b"[1, 2").unwrap_err();
        assert!(error.message.contains("not JSON"), "{error}");
        let error = settings.decode("product.updated", br#"{"data": {"name": "x"}}"#).unwrap_err();
        assert!(error.message.contains("no record id"), "{error}");
    }
}
