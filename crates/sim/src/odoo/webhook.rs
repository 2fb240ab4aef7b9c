//! Outbound webhooks as Odoo's automation rules send them ("Send Webhook Notification"): an
//! unsigned JSON POST `{_model, _id, _action, id, ...selected fields}` per record, no retry.
//! Deliveries leave after the call's transaction commits, through one worker task, with
//! optional faults: dropped, duplicated and out-of-order deliveries.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::Shared;
use super::schema::{FieldKind, registry};
use super::store::{Context, OdooState};

/// Deliveries waiting for the worker; beyond this, new ones are dropped with a warning.
pub const QUEUE_CAPACITY: usize = 4096;
/// Kept delivery results, newest last.
pub const LOG_CAPACITY: usize = 1000;
/// Odoo posts with a short timeout and does not wait for slow receivers.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    OnCreate,
    OnWrite,
    OnCreateOrWrite,
    OnUnlink,
}

/// One automation rule with a webhook action.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookRule {
    #[serde(default)]
    pub id: i64,
    #[serde(default = "default_name")]
    pub name: String,
    /// `http://host:port/path`; only plain HTTP is sent by the simulator.
    pub url: String,
    pub model: String,
    pub trigger: Trigger,
    #[serde(default)]
    pub fields: Vec<String>,
}

fn default_name() -> String {
    "Send Webhook Notification".into()
}

/// Faults on outgoing deliveries, each counting down.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WebhookFaults {
    /// The next N deliveries are not sent.
    #[serde(default)]
    pub drop: u32,
    /// The next N deliveries are sent twice.
    #[serde(default)]
    pub duplicate: u32,
    /// The next N deliveries are held back and sent after the delivery that follows them.
    #[serde(default)]
    pub reorder: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub url: String,
    pub body: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryResult {
    pub url: String,
    pub body: String,
    /// The HTTP status answered, or `None` when the POST failed.
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// The webhook part of the state.
#[derive(Debug, Default)]
pub struct Webhooks {
    pub rules: Vec<WebhookRule>,
    pub faults: WebhookFaults,
    /// Deliveries produced by the current call, sent when it commits.
    pub outbox: Vec<Delivery>,
    /// A delivery held back by the reorder fault.
    pub held: Option<Delivery>,
    pub log: Vec<DeliveryResult>,
    next_rule_id: i64,
}

impl Webhooks {
    pub fn add_rule(&mut self, mut rule: WebhookRule) -> WebhookRule {
        self.next_rule_id += 1;
        rule.id = self.next_rule_id;
        self.rules.push(rule.clone());
        rule
    }

    /// Applies the faults and returns what to send now, in order.
    pub fn take_outbox(&mut self) -> Vec<Delivery> {
        let mut ready = Vec::new();
        for delivery in std::mem::take(&mut self.outbox) {
            if self.faults.drop > 0 {
                self.faults.drop -= 1;
                continue;
            }
            if self.faults.reorder > 0 && self.held.is_none() {
                self.faults.reorder -= 1;
                self.held = Some(delivery);
                continue;
            }
            if self.faults.duplicate > 0 {
                self.faults.duplicate -= 1;
                ready.push(delivery.clone());
            }
            ready.push(delivery);
            if let Some(held) = self.held.take() {
                ready.push(held);
            }
        }
        ready
    }

    pub fn record(&mut self, result: DeliveryResult) {
        if self.log.len() >= LOG_CAPACITY {
            self.log.remove(0);
        }
        self.log.push(result);
    }
}

/// Queues the deliveries that rules on `model` produce for `event` on record `id`. The
/// payload is `record.read(fields, load=None)`: many2one values as bare ids.
pub fn enqueue(state: &mut OdooState, model: &str, id: i64, event: Trigger) {
    let matching: Vec<WebhookRule> = state
        .webhooks
        .rules
        .iter()
        .filter(|rule| rule.model == model)
        .filter(|rule| match (rule.trigger, event) {
            (Trigger::OnCreateOrWrite, Trigger::OnCreate | Trigger::OnWrite) => true,
            (trigger, event) => trigger == event,
        })
        .cloned()
        .collect();
    if matching.is_empty() {
        return;
    }
    let Some(definition) = registry().model(model) else { return };
    for rule in matching {
        let mut payload = Map::new();
        payload.insert("_model".into(), json!(model));
        payload.insert("_id".into(), json!(id));
        payload.insert("_action".into(), json!(format!("{}(#{})", rule.name, rule.id)));
        if !rule.fields.is_empty()
            && let Ok(rows) = state.read(model, &[id], &rule.fields, &Context::default())
            && let Some(Value::Object(row)) = rows.into_iter().next()
        {
            for (name, value) in row {
                let is_many2one =
                    definition.field(&name).is_some_and(|field| matches!(field.kind, FieldKind::Many2one(_)));
                let value = match (is_many2one, value) {
                    (true, Value::Array(pair)) => pair.first().cloned().unwrap_or(Value::Bool(false)),
                    (_, other) => other,
                };
                payload.insert(name, value);
            }
        }
        payload.insert("id".into(), json!(id));
        // serde_json keeps object keys sorted, as Odoo's `json.dumps(sort_keys=True)` does.
        let body = serde_json::to_string(&Value::Object(payload)).unwrap_or_default();
        state.webhooks.outbox.push(Delivery { url: rule.url.clone(), body });
    }
}

/// Sends the committed call's deliveries to the worker.
pub fn flush(shared: &Shared, state: &mut OdooState) {
    for delivery in state.webhooks.take_outbox() {
        if shared.webhook_sender.try_send(delivery).is_err() {
            tracing::warn!("Odoo simulator webhook queue is full; a delivery was dropped.");
        }
    }
}

/// The worker: posts deliveries one at a time until shutdown.
pub async fn run_worker(
    shared: Arc<Shared>,
    mut receiver: mpsc::Receiver<Delivery>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let delivery = tokio::select! {
            received = receiver.recv() => match received {
                Some(delivery) => delivery,
                None => return,
            },
            _ = shutdown.wait_for(|stopped| *stopped) => return,
        };
        let result = match tokio::time::timeout(DELIVERY_TIMEOUT, post(&delivery.url, &delivery.body)).await {
            Ok(Ok(status)) => {
                DeliveryResult { url: delivery.url, body: delivery.body, status: Some(status), error: None }
            }
            Ok(Err(error)) => {
                DeliveryResult { url: delivery.url, body: delivery.body, status: None, error: Some(error) }
            }
            Err(_) => {
                DeliveryResult { url: delivery.url, body: delivery.body, status: None, error: Some("timed out".into()) }
            }
        };
        shared.lock().webhooks.record(result);
    }
}

/// A minimal HTTP/1.1 POST over a plain TCP connection; returns the response status.
async fn post(url: &str, body: &str) -> Result<u16, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("only http:// URLs are supported, not {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(position) => (&rest[..position], &rest[position..]),
        None => (rest, "/"),
    };
    let address = if authority.contains(':') { authority.to_owned() } else { format!("{authority}:80") };
    let mut stream =
        tokio::net::TcpStream::connect(&address).await.map_err(|error| format!("connecting to {address}: {error}"))?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: Odoo (erpsync-sim)\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.map_err(|error| format!("sending to {address}: {error}"))?;
    let mut head = vec![0u8; 64];
    let read = stream.read(&mut head).await.map_err(|error| format!("reading from {address}: {error}"))?;
    let text = String::from_utf8_lossy(&head[..read]);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("no HTTP status from {address}"))
}
