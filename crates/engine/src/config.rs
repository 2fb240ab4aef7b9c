//! The configuration file: systems, flows and triggers, parsed and validated in a pure step.
//!
//! Parsing collects every problem at once, each with file, line, column and field, instead of
//! stopping at the first: a user fixing a configuration should see the whole list.

use crate::merge::{FieldRule, FieldRules};
use crate::schedule::Trigger;
use croner::Cron;
use erpsync_connectors::{DeleteMode, SystemConfig};
use erpsync_mapping::{CompileContext, LookupSpec, LookupTable, Lookups, Mapping, MappingSpec};
use erpsync_model::EntityKind;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the file was read from; relative paths in it are relative to its folder.
    pub source: PathBuf,
    pub store: StoreSettings,
    /// `[queue]`: where jobs go; without a URL, the store's jobs table.
    pub queue: QueueSettings,
    pub engine: EngineSettings,
    pub server: ServerSettings,
    pub systems: BTreeMap<String, SystemConfig>,
    pub flows: BTreeMap<String, FlowConfig>,
    /// Lookup tables from `[lookups.<name>]`, shared by every flow's mapping.
    pub lookups: Lookups,
    /// `[alerts]`: rules, channels and message templates; `None` when the section is absent.
    pub alerts: Option<crate::alerts::AlertSettings>,
}

/// Where erpsync keeps its state: links, checkpoints, runs, dead letters, jobs, the webhook
/// inbox, the audit log.
#[derive(Debug, Clone, Deserialize, JsonSchema, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `sqlite:///path/erpsync.db` or `postgres://...`. Default: `erpsync.db` in the data
    /// directory.
    pub url: Option<String>,
    /// PostgreSQL connections per process (1 to 1000). A receiver taking a burst of webhooks
    /// writes each delivery on a connection of its own: raise it for receivers, within the
    /// server's `max_connections` over all processes. Not used by SQLite.
    pub pool: u32,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings { url: None, pool: erpsync_store::postgres::DEFAULT_POOL }
    }
}

/// `[queue]`: with `url`, jobs go through NATS JetStream (scale-out); without, through the
/// store's jobs table (embedded, or several processes on one PostgreSQL store).
#[derive(Debug, Clone, Deserialize, JsonSchema, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    /// `nats://host:4222`.
    pub url: Option<String>,
    /// Names this installation's streams on the NATS server: letters, digits, `_` and `-`.
    pub installation: String,
    /// NATS partitions: at most this many jobs run at once in the whole installation. Fixed
    /// for the life of an installation.
    pub partitions: u32,
    /// Deliveries of a job before it is dead (listed with the failures).
    pub max_deliveries: u32,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self { url: None, installation: "erpsync".into(), partitions: 16, max_deliveries: 20 }
    }
}

/// What is wrong with a `[queue]` section, as `(field, message)`.
fn queue_problems(queue: &QueueSettings) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    if let Some(url) = &queue.url {
        let rest = url.strip_prefix("nats://").or_else(|| url.strip_prefix("tls://"));
        let host_port = rest.map(|rest| rest.rsplit('@').next().unwrap_or(rest).trim_end_matches('/'));
        let valid = host_port.is_some_and(|host_port| match host_port.rsplit_once(':') {
            Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|port| port > 0),
            None => !host_port.is_empty() && !host_port.contains('/'),
        });
        if !valid {
            found.push(("queue.url", format!("{url:?}: expected nats://host:port (NATS with JetStream)")));
        }
    }
    let plain = |name: &str| {
        !name.is_empty() && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
    };
    if !plain(&queue.installation) {
        found.push(("queue.installation", format!("{:?}: letters, digits, '_' and '-' only", queue.installation)));
    }
    if queue.partitions == 0 || queue.partitions > 1024 {
        found.push(("queue.partitions", format!("{}: expected 1 to 1024", queue.partitions)));
    }
    if queue.max_deliveries == 0 {
        found.push(("queue.max_deliveries", "expected at least 1".to_string()));
    }
    found
}

/// The HTTP server of `erpsync serve`: webhooks, the admin API, the dashboard, metrics and
/// health.
#[derive(Debug, Clone, Deserialize, JsonSchema, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to listen on. Loopback by default: put a reverse proxy with TLS in front to
    /// receive webhooks from the internet.
    pub listen: std::net::SocketAddr,
    /// Largest webhook body accepted; larger deliveries are refused with 413.
    pub max_body_bytes: usize,
    /// The address the internet reaches this server at (`https://sync.example.com`): webhook
    /// subscriptions deliver to `<public_url>/webhooks/<system>`.
    pub public_url: Option<String>,
    /// PEM certificate chain and private key: with both, the server speaks HTTPS itself.
    /// Relative paths are relative to the configuration file's folder.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8480)),
            max_body_bytes: 2 * 1024 * 1024,
            public_url: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// How flows are run: leases, concurrency, time zone, webhook coalescing.
#[derive(Debug, Clone, Deserialize, JsonSchema, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSettings {
    /// How long a claimed job stays leased without a heartbeat (heartbeats come every third of
    /// it); a process that died frees its flow after this, or at once on the same host.
    #[serde(with = "duration_text")]
    #[schemars(with = "String")]
    pub lease: Duration,
    /// How many flows `serve` runs at the same time. A job waiting for its flow's lock (another
    /// run of the flow holds it) does not take one of these slots; a worker holds at most 64 such
    /// jobs besides.
    pub concurrency: usize,
    /// Time zone of cron schedules (IANA name, `Europe/Berlin`); a flow's `timezone` overrides.
    pub timezone: String,
    /// Webhook events waiting for one flow above this many records are a mass change: the flow
    /// pulls what changed in pages instead of fetching each record by id.
    pub coalesce_above: usize,
    /// Circuit breakers per system (see docs/operations.md, "Circuit breakers").
    pub circuit: CircuitSettings,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            concurrency: 4,
            timezone: "UTC".into(),
            coalesce_above: 200,
            circuit: CircuitSettings::default(),
        }
    }
}

/// When a system's circuit opens and how long it stays open before a probe.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitSettings {
    /// Runs in a row that fail because a system is down or throttling (`unavailable`,
    /// `timeout`, `rate_limited` after the flow's retries) before its circuit opens and the
    /// flows using it are held; `0` switches circuit breakers off.
    pub failures: u32,
    /// How long an open circuit waits before a probe (the connector's health check) may
    /// half-open it.
    #[serde(with = "duration_text")]
    #[schemars(with = "String")]
    pub cooldown: Duration,
}

impl Default for CircuitSettings {
    fn default() -> Self {
        Self { failures: 3, cooldown: Duration::from_secs(30) }
    }
}

/// One flow: an entity moving from a source system to a target system.
#[derive(Debug, Clone)]
pub struct FlowConfig {
    pub name: String,
    pub entity: EntityKind,
    pub source: String,
    pub target: String,
    pub trigger: Option<Trigger>,
    /// How often a full reconciliation pass runs (reads everything, writes what differs): it
    /// picks up what webhooks missed. `None` when switched off.
    pub reconcile: Option<Duration>,
    pub page_size: usize,
    pub retry: RetryPolicy,
    pub enabled: bool,
    /// Compiled `[flows.<name>.mapping]`; the identity when the flow has none.
    pub mapping: Mapping,
    /// Two-way merge rules per field (`[flows.<name>.fields]`): `None` for a one-way flow,
    /// which writes the source's record as it is.
    pub fields: Option<FieldRules>,
    /// What a full reconciliation does in the target with a record deleted at the source.
    pub on_delete: DeleteMode,
}

/// Backoff for transient failures (429, 5xx, timeouts, disk errors): `initial * 2^attempt`,
/// capped at `max`, with jitter.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts before a run fails or a record becomes a dead letter.
    pub max_attempts: u32,
    /// The first backoff; it doubles with each attempt.
    #[serde(with = "duration_text")]
    #[schemars(with = "String")]
    pub initial: Duration,
    /// The longest backoff; a longer `Retry-After` from the system is honoured.
    #[serde(with = "duration_text")]
    #[schemars(with = "String")]
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 5, initial: Duration::from_millis(500), max: Duration::from_secs(60) }
    }
}

/// One flow: an entity moving from a source system to a target system. A flow without
/// `interval` or `schedule` runs when asked, on webhooks of its source, and on its
/// reconciliation pass.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    /// What moves: `product`, `price_list`, `stock_level`, `customer`, `order`,
    /// `order_status`, `shipment`, `document` or `refund`.
    entity: String,
    /// The system records are read from (a name under `[systems]`).
    source: String,
    /// The system records are written to.
    target: String,
    /// Run every `30s`, `15m`, `2h`, `1d` under `serve`.
    interval: Option<String>,
    /// Or a cron expression (`"*/15 * * * *"`, `"0 6 * * 1-5"`); not both.
    schedule: Option<String>,
    /// The time zone `schedule` is read in (IANA name); default `engine.timezone`.
    timezone: Option<String>,
    /// How often a full reconciliation pass runs under `serve` (reads everything, writes only
    /// what differs; catches what webhooks missed); `"off"` switches it off. Default `1h` for
    /// a flow without `interval` or `schedule`, else off.
    reconcile: Option<String>,
    /// Records per page: the unit of commit and of checkpoint.
    #[serde(default = "default_page_size")]
    page_size: usize,
    /// Retries of transient failures.
    #[serde(default)]
    retry: RetryPolicy,
    /// `serve` skips a disabled flow; `erpsync sync` still runs it.
    #[serde(default = "default_true")]
    enabled: bool,
    /// Field overrides and a filter in JSONata (`filter`, `fields`): see "Mappings" in
    /// docs/configuration.md.
    #[serde(default)]
    #[schemars(schema_with = "crate::config::mapping_schema")]
    mapping: Option<MappingSpec>,
    /// Two-way merge rules per field (`source`, `target`, `newest`): see "Two-way sync" in
    /// docs/configuration.md.
    #[serde(default)]
    fields: Option<BTreeMap<String, String>>,
    /// What a full reconciliation does in the target with a record the source no longer has.
    #[serde(default)]
    #[schemars(schema_with = "crate::config::delete_mode_schema")]
    on_delete: DeleteMode,
}

fn default_page_size() -> usize {
    500
}

fn default_true() -> bool {
    true
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted path of the field: `flows.products.source`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}: {}", self.file, self.line, self.column, self.field, self.message)
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "{n} problem{} in the configuration:", if n == 1 { "" } else { "s" })?;
        for problem in &self.0 {
            writeln!(f, "  {problem}")?;
        }
        Ok(())
    }
}

struct Problems<'a> {
    file: String,
    text: &'a str,
    list: Vec<ConfigProblem>,
}

impl Problems<'_> {
    fn push(&mut self, offset: usize, field: impl Into<String>, message: impl Into<String>) {
        let (line, column) = line_column(self.text, offset);
        self.list.push(ConfigProblem {
            file: self.file.clone(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        });
    }

    fn push_toml(&mut self, fallback_offset: usize, field: &str, error: &toml::de::Error) {
        let offset = error.span().map(|span| span.start).unwrap_or(fallback_offset);
        let message = error.message().trim().trim_end_matches('.').to_string();
        // Serde names the offending key in its message; say which table it is in as the field.
        self.push(offset, field, message);
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map(|newline| offset - newline).unwrap_or(offset + 1);
    (line, column)
}

impl Config {
    /// Reads and validates a configuration file. `${VAR}` references are left for the
    /// connectors' secret types; no network and no secrets are touched here.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigErrors(vec![ConfigProblem {
                file: path.display().to_string(),
                line: 0,
                column: 0,
                field: String::new(),
                message: format!("cannot read the configuration file: {error}"),
            }])
        })?;
        Config::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        let mut problems = Problems { file: path.display().to_string(), text, list: Vec::new() };
        let (root, parse_errors) = DeTable::parse_recoverable(text);
        for error in &parse_errors {
            problems.push_toml(0, "", error);
        }
        if !parse_errors.is_empty() {
            return Err(ConfigErrors(problems.list));
        }
        let root = root.into_inner();

        let mut store = StoreSettings::default();
        let mut queue = QueueSettings::default();
        let mut queue_offset = None;
        let mut engine = EngineSettings::default();
        let mut server = ServerSettings::default();
        let mut systems = BTreeMap::new();
        let mut flows = BTreeMap::new();
        let mut system_spans = BTreeMap::new();
        let mut raw_flows: Vec<(String, usize, Spanned<DeValue>)> = Vec::new();
        let mut lookups = Lookups::new();
        let mut raw_alerts: Option<(usize, crate::alerts::RawAlerts)> = None;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();

        for (key, value) in root.iter() {
            let offset = key.span().start;
            match key.get_ref().as_ref() {
                "store" => {
                    if let Some(parsed) = deserialize_item::<StoreSettings>(&mut problems, value, "store") {
                        if let Some(url) = &parsed.url
                            && erpsync_store::StoreUrl::parse(url).is_err()
                        {
                            let offset = value
                                .get_ref()
                                .as_table()
                                .and_then(|table| table.get("url"))
                                .map(|url| url.span().start)
                                .unwrap_or(offset);
                            problems.push(
                                offset,
                                "store.url",
                                format!("{url:?}: expected sqlite:///path/to/file.db or postgres://user@host/database"),
                            );
                        }
                        if !(1..=1000).contains(&parsed.pool) {
                            let offset = value
                                .get_ref()
                                .as_table()
                                .and_then(|table| table.get("pool"))
                                .map(|pool| pool.span().start)
                                .unwrap_or(offset);
                            problems.push(
                                offset,
                                "store.pool",
                                format!("{}: expected a number of connections from 1 to 1000", parsed.pool),
                            );
                        }
                        store = parsed;
                    }
                }
                "queue" => {
                    if let Some(parsed) = deserialize_item::<QueueSettings>(&mut problems, value, "queue") {
                        for (field, message) in queue_problems(&parsed) {
                            let name = field.trim_start_matches("queue.");
                            let offset = value
                                .get_ref()
                                .as_table()
                                .and_then(|table| table.get(name))
                                .map(|item| item.span().start)
                                .unwrap_or(offset);
                            problems.push(offset, field, message);
                        }
                        queue_offset = Some(offset);
                        queue = parsed;
                    }
                }
                "engine" => {
                    if let Some(parsed) = deserialize_item::<EngineSettings>(&mut problems, value, "engine") {
                        engine = parsed;
                    }
                }
                "server" => {
                    if let Some(mut parsed) = deserialize_item::<ServerSettings>(&mut problems, value, "server") {
                        if parsed.tls_cert.is_some() != parsed.tls_key.is_some() {
                            problems.push(
                                offset,
                                "server",
                                "set both `tls_cert` and `tls_key` (PEM files) to serve HTTPS, or neither",
                            );
                        }
                        for path in [&mut parsed.tls_cert, &mut parsed.tls_key].into_iter().flatten() {
                            if path.is_relative() {
                                *path = base_dir.join(&*path);
                            }
                        }
                        server = parsed;
                    }
                }
                "systems" => {
                    let Some(table) = value.get_ref().as_table() else {
                        problems.push(value.span().start, "systems", "expected a table of systems: [systems.<name>]");
                        continue;
                    };
                    for (name, system) in table.iter() {
                        let field = format!("systems.{}", name.get_ref());
                        check_name(&mut problems, name.span().start, &field, name.get_ref());
                        system_spans.insert(name.get_ref().to_string(), system.span().start);
                        if let Some(parsed) = deserialize_item::<SystemConfig>(&mut problems, system, &field) {
                            for (sub_field, message) in parsed.validate() {
                                problems.push(system.span().start, format!("{field}.{sub_field}"), message);
                            }
                            systems.insert(name.get_ref().to_string(), parsed);
                        }
                    }
                }
                "flows" => {
                    let Some(table) = value.get_ref().as_table() else {
                        problems.push(value.span().start, "flows", "expected a table of flows: [flows.<name>]");
                        continue;
                    };
                    for (name, flow) in table.iter() {
                        let field = format!("flows.{}", name.get_ref());
                        check_name(&mut problems, name.span().start, &field, name.get_ref());
                        raw_flows.push((name.get_ref().to_string(), name.span().start, flow.clone()));
                    }
                }
                "lookups" => {
                    let Some(table) = value.get_ref().as_table() else {
                        problems.push(value.span().start, "lookups", "expected a table of lookups: [lookups.<name>]");
                        continue;
                    };
                    for (name, lookup) in table.iter() {
                        let field = format!("lookups.{}", name.get_ref());
                        let at = lookup.span().start;
                        let Some(spec) = deserialize_item::<LookupSpec>(&mut problems, lookup, &field) else {
                            continue;
                        };
                        if let Err(spec_problems) = spec.validate() {
                            for problem in spec_problems {
                                problems.push(at, format!("{field}.{}", problem.field), problem.message);
                            }
                            continue;
                        }
                        let file_text = match &spec.file {
                            None => None,
                            Some(file) => match std::fs::read_to_string(base_dir.join(file)) {
                                Ok(text) => Some(text),
                                Err(error) => {
                                    problems.push(
                                        at,
                                        format!("{field}.file"),
                                        format!("cannot read {}: {error}", base_dir.join(file).display()),
                                    );
                                    continue;
                                }
                            },
                        };
                        match LookupTable::from_spec(name.get_ref(), &spec, file_text.as_deref()) {
                            Ok(table) => lookups.insert(table),
                            Err(errors) => {
                                for error in errors {
                                    problems.push(at, field.clone(), error.to_string());
                                }
                            }
                        }
                    }
                }
                "alerts" => {
                    // Validated after the flows, which its rules name.
                    raw_alerts = deserialize_item::<crate::alerts::RawAlerts>(&mut problems, value, "alerts")
                        .map(|raw| (value.span().start, raw));
                }
                other => problems.push(
                    offset,
                    other,
                    format!(
                        "unknown section `{other}`, expected one of `store`, `queue`, `engine`, `server`, `systems`, `flows`, `lookups`, `alerts`"
                    ),
                ),
            }
        }

        let engine_timezone = engine.timezone.clone();
        if engine_timezone.parse::<chrono_tz::Tz>().is_err() {
            let at = root.get("engine").map(|value| value.span().start).unwrap_or(0);
            problems.push(
                at,
                "engine.timezone",
                format!(
                    "{engine_timezone:?} is not a time zone; use an IANA name such as \"Europe/Berlin\" or \"UTC\""
                ),
            );
        }
        for (name, offset, flow) in raw_flows {
            let field = format!("flows.{name}");
            let Some(raw) = deserialize_item::<RawFlow>(&mut problems, &flow, &field) else {
                continue;
            };
            let table = flow.get_ref().as_table();
            let value_offset = |key: &str| -> usize {
                table.and_then(|table| table.get(key)).map(|value| value.span().start).unwrap_or(offset)
            };
            let entity = match EntityKind::from_str(&raw.entity) {
                Ok(entity) => Some(entity),
                Err(error) => {
                    problems.push(value_offset("entity"), format!("{field}.entity"), error.to_string());
                    None
                }
            };
            for (key, system) in [("source", &raw.source), ("target", &raw.target)] {
                if !systems.contains_key(system) && !system_spans.contains_key(system) {
                    let known: Vec<&str> = system_spans.keys().map(String::as_str).collect();
                    problems.push(
                        value_offset(key),
                        format!("{field}.{key}"),
                        format!(
                            "unknown system {system:?}; configured systems: {}",
                            if known.is_empty() { "none".to_string() } else { known.join(", ") }
                        ),
                    );
                }
            }
            if raw.source == raw.target {
                problems.push(
                    value_offset("target"),
                    format!("{field}.target"),
                    "source and target are the same system",
                );
            }
            let trigger = match (&raw.interval, &raw.schedule) {
                (Some(_), Some(_)) => {
                    problems.push(
                        value_offset("schedule"),
                        format!("{field}.schedule"),
                        "set either `interval` or `schedule`, not both",
                    );
                    None
                }
                (Some(interval), None) => match parse_duration(interval) {
                    Ok(duration) if duration >= Duration::from_secs(1) => Some(Trigger::Interval(duration)),
                    Ok(_) => {
                        problems.push(value_offset("interval"), format!("{field}.interval"), "must be at least 1s");
                        None
                    }
                    Err(message) => {
                        problems.push(value_offset("interval"), format!("{field}.interval"), message);
                        None
                    }
                },
                (None, Some(schedule)) => match Cron::from_str(schedule) {
                    Ok(cron) => {
                        let zone_text = raw.timezone.as_deref().unwrap_or(&engine_timezone);
                        match zone_text.parse::<chrono_tz::Tz>() {
                            Ok(zone) => Some(Trigger::Cron { cron: Box::new(cron), text: schedule.clone(), zone }),
                            Err(_) => {
                                let (at, where_) = if raw.timezone.is_some() {
                                    (value_offset("timezone"), format!("{field}.timezone"))
                                } else {
                                    (value_offset("schedule"), "engine.timezone".to_string())
                                };
                                problems.push(
                                    at,
                                    where_,
                                    format!("{zone_text:?} is not a time zone; use an IANA name such as \"Europe/Berlin\" or \"UTC\""),
                                );
                                None
                            }
                        }
                    }
                    Err(error) => {
                        problems.push(
                            value_offset("schedule"),
                            format!("{field}.schedule"),
                            format!("{schedule:?} is not a cron expression ({error}); example: \"*/15 * * * *\""),
                        );
                        None
                    }
                },
                (None, None) => None,
            };
            if raw.timezone.is_some() && raw.schedule.is_none() {
                problems.push(
                    value_offset("timezone"),
                    format!("{field}.timezone"),
                    "a time zone only applies to a cron `schedule`",
                );
            }
            let reconcile = match raw.reconcile.as_deref() {
                Some("off") => None,
                Some(text) => match parse_duration(text) {
                    Ok(duration) if duration >= Duration::from_secs(60) => Some(duration),
                    Ok(_) => {
                        problems.push(value_offset("reconcile"), format!("{field}.reconcile"), "must be at least 1m");
                        None
                    }
                    Err(message) => {
                        problems.push(
                            value_offset("reconcile"),
                            format!("{field}.reconcile"),
                            format!("{message}; or \"off\""),
                        );
                        None
                    }
                },
                // A flow without a schedule of its own runs on webhooks and by hand: an hourly
                // full pass catches what webhooks missed.
                None if trigger.is_none() => Some(Duration::from_secs(3600)),
                None => None,
            };
            let fields = raw.fields.as_ref().map(|table| {
                let mut rules = FieldRules::default();
                for (key, value) in table {
                    let rule = match value.as_str() {
                        "newest" => Some(FieldRule::Newest),
                        system if system == raw.source || system == raw.target => {
                            Some(FieldRule::Owner(system.to_string()))
                        }
                        other => {
                            problems.push(
                                value_offset("fields"),
                                format!("{field}.fields.{key}"),
                                format!(
                                    "{other:?}: a field belongs to {:?} or {:?}, or to the \"newest\" change",
                                    raw.source, raw.target
                                ),
                            );
                            None
                        }
                    };
                    if let Some(rule) = rule {
                        if key == "*" {
                            rules.default = Some(rule);
                        } else {
                            rules.fields.insert(key.clone(), rule);
                        }
                    }
                }
                rules
            });
            if raw.page_size == 0 || raw.page_size > 10_000 {
                problems.push(value_offset("page_size"), format!("{field}.page_size"), "must be between 1 and 10000");
            }
            if raw.retry.max_attempts == 0 {
                problems.push(value_offset("retry"), format!("{field}.retry.max_attempts"), "must be at least 1");
            }
            let mut mapping = Mapping::identity();
            if let (Some(spec), Some(entity)) = (&raw.mapping, entity) {
                let mapping_table = table.and_then(|table| table.get("mapping"));
                let mapping_offset = mapping_table.map(|value| value.span().start).unwrap_or(offset);
                let setting_offset = |setting: &str| -> usize {
                    let inner = mapping_table.and_then(|value| value.get_ref().as_table());
                    let found = match setting.strip_prefix("fields.") {
                        Some(key) => inner
                            .and_then(|inner| inner.get("fields"))
                            .and_then(|fields| fields.get_ref().as_table())
                            .and_then(|fields| fields.get(key.trim_matches('"'))),
                        None => inner.and_then(|inner| inner.get(setting)),
                    };
                    found.map(|value| value.span().start).unwrap_or(mapping_offset)
                };
                if let Err(spec_problems) = spec.validate() {
                    for problem in spec_problems {
                        problems.push(
                            setting_offset(&problem.field),
                            format!("{field}.mapping.{}", problem.field),
                            problem.message,
                        );
                    }
                } else {
                    let context = CompileContext::new(path, name.clone(), entity);
                    match Mapping::compile(spec, &lookups, &context) {
                        Ok(compiled) => mapping = compiled,
                        Err(errors) => {
                            for error in errors {
                                let inside = error
                                    .position
                                    .map(|position| format!(" (in the expression at {position})"))
                                    .unwrap_or_default();
                                problems.push(
                                    setting_offset(&error.field),
                                    format!("{field}.mapping.{}", error.field),
                                    format!("{}{inside}", error.problem),
                                );
                            }
                        }
                    }
                }
            }
            if let Some(entity) = entity {
                flows.insert(
                    name.clone(),
                    FlowConfig {
                        name,
                        entity,
                        source: raw.source,
                        target: raw.target,
                        trigger,
                        reconcile,
                        page_size: raw.page_size,
                        retry: raw.retry,
                        enabled: raw.enabled,
                        mapping,
                        fields,
                        on_delete: raw.on_delete,
                    },
                );
            }
        }

        // Two flows of one entity in opposite directions are a two-way sync. Without rules of
        // their own, customers' fields go to the newest change (contact data is edited on both
        // sides); other entities keep "the source writes its record" (the ERP's products and
        // stock, the shop's orders) with echo suppression.
        let two_way_customers: Vec<String> = flows
            .values()
            .filter(|flow| flow.fields.is_none() && flow.entity == EntityKind::Customer)
            .filter(|flow| {
                flows.values().any(|other| {
                    other.entity == flow.entity && other.source == flow.target && other.target == flow.source
                })
            })
            .map(|flow| flow.name.clone())
            .collect();
        for name in two_way_customers {
            if let Some(flow) = flows.get_mut(&name) {
                flow.fields = Some(FieldRules { default: Some(FieldRule::Newest), fields: BTreeMap::new() });
            }
        }

        let mut alerts = None;
        if let Some((at, raw)) = raw_alerts {
            let flow_names: Vec<&str> = flows.keys().map(String::as_str).collect();
            let system_names: Vec<&str> = system_spans.keys().map(String::as_str).collect();
            match crate::alerts::validate(raw, &flow_names, &system_names, &engine_timezone, &base_dir) {
                Ok(settings) => alerts = Some(settings),
                Err(alert_problems) => {
                    for (field, message) in alert_problems {
                        problems.push(at, format!("alerts.{field}"), message);
                    }
                }
            }
        }

        // Processes sharing NATS must share the state and the locks: a PostgreSQL store.
        let postgres_store = store.url.as_deref().is_some_and(|url| url.starts_with("postgres"));
        if let (Some(url), Some(offset)) = (&queue.url, queue_offset)
            && !postgres_store
        {
            problems.push(
                offset,
                "queue.url",
                format!("{url:?}: a NATS queue is for several processes, which need the PostgreSQL store ([store] url = \"postgres://…\")"),
            );
        }
        if !problems.list.is_empty() {
            problems.list.sort_by_key(|problem| (problem.line, problem.column));
            return Err(ConfigErrors(problems.list));
        }
        // Relative paths in the file are relative to the file, not to where erpsync runs.
        for system in systems.values_mut() {
            system.resolve_paths(&base_dir);
        }
        Ok(Config { source: path.to_path_buf(), store, queue, engine, server, systems, flows, lookups, alerts })
    }

    /// The folder relative paths in the configuration are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.source.parent().map(Path::to_path_buf).unwrap_or_default()
    }

    pub fn flow(&self, name: &str) -> Option<&FlowConfig> {
        self.flows.get(name)
    }
}

fn check_name(problems: &mut Problems<'_>, offset: usize, field: &str, name: &str) {
    let valid =
        !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        problems.push(offset, field, "names may use letters, digits, `-` and `_` (at most 64)");
    }
}

fn deserialize_item<T: DeserializeOwned>(
    problems: &mut Problems<'_>,
    value: &Spanned<DeValue<'_>>,
    field: &str,
) -> Option<T> {
    let deserializer = ValueDeserializer::from(value.clone());
    match T::deserialize(deserializer) {
        Ok(parsed) => Some(parsed),
        Err(error) => {
            problems.push_toml(value.span().start, field, &error);
            None
        }
    }
}

/// Parses `500ms`, `30s`, `15m`, `2h`, `1d`.
/// The shortest exact text `parse_duration` reads back: `1h`, `90s`, `250ms`.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if !millis.is_multiple_of(1000) {
        return format!("{millis}ms");
    }
    let seconds = duration.as_secs();
    match seconds {
        0 => "0s".into(),
        s if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        s if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        s if s.is_multiple_of(60) => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; write a number and a unit: 500ms, 30s, 15m, 2h, 1d"))?;
    let seconds = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(value)),
        "s" | "" => value,
        "m" => value * 60,
        "h" => value * 3600,
        "d" => value * 86_400,
        other => return Err(format!("unknown unit {other:?} in {text:?}; use ms, s, m, h or d")),
    };
    Ok(Duration::from_secs(seconds))
}

/// The configuration file as written, for its reference (`erpsync config reference`): the
/// sections that [`Config::parse`] reads one by one.
#[derive(JsonSchema)]
#[allow(dead_code)] // Never built: only its schema is used.
struct ConfigFile {
    store: StoreSettings,
    queue: QueueSettings,
    engine: EngineSettings,
    server: ServerSettings,
    /// One per configured endpoint. `type` selects the connector
    /// (`erpsync connectors` lists them); the other keys are the connector's own, documented
    /// in docs/connectors/. Names use letters, digits, `-` and `_`.
    #[schemars(schema_with = "crate::config::systems_schema")]
    systems: (),
    flows: BTreeMap<String, RawFlow>,
    /// Value translation tables for mappings (`values`, `file`, `default`,
    /// `on_unknown`): see "Lookups" in docs/configuration.md.
    #[schemars(schema_with = "crate::config::lookups_schema")]
    lookups: (),
    /// Alert rules and channels: see docs/alerts.md.
    alerts: Option<crate::alerts::RawAlerts>,
}

/// The JSON Schema of the configuration file, with the doc comments of its types as
/// descriptions: the source of docs/configuration-reference.md.
pub fn reference_schema() -> schemars::Schema {
    schemars::SchemaGenerator::new(schemars::generate::SchemaSettings::draft2020_12())
        .into_root_schema_for::<ConfigFile>()
}

fn mapping_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "object" })
}

/// A table of tables whose keys are documented elsewhere.
fn lookups_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "object", "additionalProperties": { "type": "object" } })
}

fn systems_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "object", "additionalProperties": { "type": "object" } })
}

/// `on_delete`'s values, each checked against [`DeleteMode`] by a test.
const DELETE_MODES: [&str; 3] = ["ignore", "archive", "delete"];

fn delete_mode_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "enum": DELETE_MODES, "default": "ignore" })
}

mod duration_text {
    use serde::{Deserialize, Deserializer, Serializer, de};
    use std::time::Duration;

    /// For the defaults in the configuration reference.
    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_duration(*duration))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_duration(&text).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Config::parse(text, Path::new("erpsync.toml"))
    }

    const GOOD: &str = r#"
[systems.erp]
type = "files"
path = "in"

[systems.shop]
type = "files"
path = "out"

[flows.products]
entity = "product"
source = "erp"
target = "shop"
interval = "5m"
"#;

    #[test]
    fn the_reference_schema_names_exactly_the_sections_the_parser_reads() {
        let schema = serde_json::to_value(reference_schema()).unwrap();
        let sections: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
        // Every section of the schema is one the parser accepts…
        for section in &sections {
            let text = format!("{GOOD}\n[{section}]\n");
            let text = if ["systems", "flows"].contains(&section.as_str()) { GOOD.to_string() } else { text };
            if let Err(errors) = parse(&text) {
                assert!(!errors.to_string().contains("unknown section"), "{section}: {errors}");
            }
        }
        // …and every section the parser accepts is in the schema.
        let errors = parse("[nonsense]\n").unwrap_err().to_string();
        let listed = errors.split("expected one of").nth(1).unwrap();
        let accepted: Vec<&str> = listed.split('`').skip(1).step_by(2).collect();
        let mut expected: Vec<&str> = sections.iter().map(|section| section.as_str()).collect();
        expected.sort();
        let mut accepted_sorted = accepted.clone();
        accepted_sorted.sort();
        assert_eq!(accepted_sorted, expected, "{errors}");
    }

    #[test]
    fn every_documented_delete_mode_is_one() {
        for mode in DELETE_MODES {
            let parsed: DeleteMode = serde_json::from_value(serde_json::json!(mode)).unwrap();
            assert_eq!(serde_json::to_value(parsed).unwrap(), serde_json::json!(mode));
        }
        assert!(serde_json::from_value::<DeleteMode>(serde_json::json!("erase")).is_err());
    }

    #[test]
    fn parses_a_good_configuration() {
        let config = parse(GOOD).unwrap();
        let flow = config.flow("products").unwrap();
        assert_eq!(flow.entity, EntityKind::Product);
        assert!(matches!(flow.trigger, Some(Trigger::Interval(d)) if d == Duration::from_secs(300)));
        assert_eq!(config.systems.len(), 2);
    }

    #[test]
    fn the_store_pool_defaults_to_eight_and_must_be_from_1_to_1000() {
        assert_eq!(parse(GOOD).unwrap().store.pool, 8);
        let config = parse(&format!("[store]\nurl = \"postgres://erpsync@db/erpsync\"\npool = 32\n{GOOD}")).unwrap();
        assert_eq!(config.store.pool, 32);
        for bad in ["0", "1001"] {
            let errors = parse(&format!("[store]\npool = {bad}\n{GOOD}")).unwrap_err();
            let found: Vec<&str> = errors.0.iter().map(|problem| problem.field.as_str()).collect();
            assert_eq!(found, vec!["store.pool"], "{errors}");
        }
    }

    #[test]
    fn queue_section_selects_nats_and_reports_bad_values_with_line_and_field() {
        assert_eq!(parse(GOOD).unwrap().queue.url, None, "the embedded default names no queue");
        let store = "[store]\nurl = \"postgres://erpsync@db/erpsync\"\n";
        let config = parse(&format!("[queue]\nurl = \"nats://127.0.0.1:4222\"\n{store}{GOOD}")).unwrap();
        assert_eq!(config.queue.url.as_deref(), Some("nats://127.0.0.1:4222"));
        assert_eq!((config.queue.installation.as_str(), config.queue.partitions), ("erpsync", 16));

        let text = format!("[queue]\nurl = \"redis://x\"\ninstallation = \"a.b\"\npartitions = 0\n{store}{GOOD}");
        let errors = parse(&text).unwrap_err();
        let found: Vec<(&str, usize)> = errors.0.iter().map(|problem| (problem.field.as_str(), problem.line)).collect();
        assert_eq!(found, vec![("queue.url", 2), ("queue.installation", 3), ("queue.partitions", 4)], "{errors}");
        assert!(errors.to_string().contains("expected nats://host:port"), "{errors}");
        assert!(parse(&format!("[queue]\nurl = \"nats://:x\"\n{store}{GOOD}")).is_err());
        assert!(parse(&format!("[queue]\nurl = \"nats://host\"\n{store}{GOOD}")).is_ok());
        let unknown = parse(&format!("[queue]\nnats = \"x\"\n{GOOD}")).unwrap_err();
        assert!(unknown.0[0].field.starts_with("queue"), "{unknown}");
        // NATS without PostgreSQL: the processes would not share their state.
        let sqlite = parse(&format!("[queue]\nurl = \"nats://127.0.0.1:4222\"\n{GOOD}")).unwrap_err();
        assert_eq!((sqlite.0[0].field.as_str(), sqlite.0[0].line), ("queue.url", 1), "{sqlite}");
        assert!(sqlite.to_string().contains("PostgreSQL store"), "{sqlite}");
    }

    #[test]
    fn schedules_time_zones_and_reconciliation() {
        let config =
            parse(&GOOD.replace("interval = \"5m\"", "schedule = \"0 6 * * *\"\ntimezone = \"Europe/Berlin\""))
                .unwrap();
        let flow = config.flow("products").unwrap();
        assert_eq!(flow.trigger.as_ref().unwrap().spec(), "cron 0 6 * * * Europe/Berlin");
        assert_eq!(flow.reconcile, None, "a scheduled flow needs no reconciliation by default");

        let config = parse(&GOOD.replace("interval = \"5m\"", "")).unwrap();
        assert_eq!(config.flow("products").unwrap().reconcile, Some(Duration::from_secs(3600)));
        let config = parse(&GOOD.replace("interval = \"5m\"", "reconcile = \"off\"")).unwrap();
        assert_eq!(config.flow("products").unwrap().reconcile, None);

        let bad =
            GOOD.replace("interval = \"5m\"", "schedule = \"0 6 * * *\"\ntimezone = \"Berlin\"\nreconcile = \"soon\"");
        let errors = parse(&format!("[engine]\ntimezone = \"Mars/Olympus\"\n{bad}")).unwrap_err();
        let rendered = errors.to_string();
        let fields: Vec<&str> = errors.0.iter().map(|problem| problem.field.as_str()).collect();
        assert!(fields.contains(&"engine.timezone"), "{rendered}");
        assert!(fields.contains(&"flows.products.timezone"), "{rendered}");
        assert!(fields.contains(&"flows.products.reconcile"), "{rendered}");
        assert!(rendered.contains("\"Berlin\" is not a time zone"), "{rendered}");
    }

    #[test]
    fn reports_every_problem_with_line_and_field() {
        let text = r#"
[systems.erp]
type = "files"
path = "in"
colour = "blue"

[flows.products]
entity = "produkt"
source = "erpp"
target = "erp"
schedule = "every day"

[mystery]
"#;
        let errors = parse(text).unwrap_err();
        let rendered = errors.to_string();
        let fields: Vec<&str> = errors.0.iter().map(|problem| problem.field.as_str()).collect();
        assert!(fields.contains(&"systems.erp"), "{rendered}");
        assert!(rendered.contains("colour"), "{rendered}");
        assert!(fields.contains(&"flows.products.entity"), "{rendered}");
        assert!(fields.contains(&"flows.products.source"), "{rendered}");
        assert!(fields.contains(&"flows.products.schedule"), "{rendered}");
        assert!(fields.contains(&"mystery"), "{rendered}");
        let entity = errors.0.iter().find(|problem| problem.field == "flows.products.entity").unwrap();
        assert_eq!(entity.line, 8, "{rendered}");
        assert!(rendered.contains("erpsync.toml:8:"), "{rendered}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let errors = parse("[systems.erp\ntype = 1").unwrap_err();
        assert_eq!(errors.0[0].line, 1, "{errors}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 weeks").is_err());
    }
}
