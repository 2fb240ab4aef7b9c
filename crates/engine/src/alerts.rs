//! Alerts: rules from `[alerts]` over what the store knows (runs, their counts and times),
//! evaluated periodically by `serve`, and messages about each incident by e-mail (SMTP with
//! STARTTLS, through lettre) and by webhook (Slack-compatible `{"text": ...}`).
//!
//! An incident opens when a rule's condition starts to hold for a flow and is recorded in the
//! store; one message goes out for it, and one more when it clears. An incident that begins
//! within `cooldown` of the previous message of the same rule and flow is recorded without a
//! message (a flapping condition does not flood anyone). Messages are minijinja templates that
//! users may replace; the defaults are below. See docs/alerts.md.

use crate::config::parse_duration;
use crate::{Engine, EngineError};
use chrono::{DateTime, Datelike, NaiveTime, TimeZone, Utc, Weekday};
use erpsync_connectors::secret::SecretRef;
use erpsync_store::{Alert, AlertDelivery, AlertFilter, NewAlert, Run, RunFilter, RunStatus, StoreError};
use lettre::message::Mailbox;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

// --- configuration -------------------------------------------------------------------------------

/// `[alerts]`: alert rules, their channels (e-mail, webhook) and message templates; see
/// docs/alerts.md.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// How often `serve` evaluates the rules.
    #[serde(default = "default_interval")]
    pub interval: String,
    /// No second message about one rule and flow within this long of the previous one.
    #[serde(default = "default_cooldown")]
    pub cooldown: String,
    #[serde(default)]
    pub email: Option<RawEmail>,
    #[serde(default)]
    pub webhook: Option<WebhookSettings>,
    #[serde(default)]
    pub templates: TemplateTexts,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

fn default_interval() -> String {
    "1m".into()
}

fn default_cooldown() -> String {
    "30m".into()
}

/// The e-mail channel: messages over SMTP.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEmail {
    /// The SMTP server (relay) to send through.
    pub smtp_host: String,
    /// Default: 587 with STARTTLS, 465 with TLS, 25 without.
    #[serde(default)]
    pub smtp_port: Option<u16>,
    /// `starttls` (default), `tls` (TLS from the first byte) or `none` (plain text, for a
    /// relay on the same host only).
    #[serde(default)]
    pub tls: SmtpTls,
    /// SMTP login, with `password`; none logs in without.
    #[serde(default)]
    pub username: Option<String>,
    /// `"${SMTP_PASSWORD}"` or `{ file = "path" }`, never the password itself.
    #[serde(default)]
    #[schemars(schema_with = "secret_schema")]
    pub password: Option<SecretRef>,
    /// PEM file of a certificate authority to trust besides the public ones (a company relay).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The sender: `erpsync <erpsync@example.com>`.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
}

fn secret_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string" })
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    #[default]
    Starttls,
    Tls,
    None,
}

/// The webhook channel: Slack-compatible `{"text": ...}` posts.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// The incoming-webhook URL (`${SLACK_WEBHOOK_URL}`): it is a secret, like a password.
    #[schemars(schema_with = "secret_schema")]
    pub url: SecretRef,
}

/// Message templates (minijinja). Each one left out is the built-in default.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateTexts {
    /// The subject (and the first line of a webhook post) when an incident opens.
    pub subject: Option<String>,
    /// The body when an incident opens.
    pub body: Option<String>,
    /// The subject when an incident resolves.
    pub resolved_subject: Option<String>,
    /// The body when an incident resolves.
    pub resolved_body: Option<String>,
}

/// One alert rule, `[[alerts.rules]]`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// The rule's name: letters, digits, `-` and `_`, unique.
    pub name: String,
    /// `failures`, `lag`, `no_sync`, `slow_run`, `run_failed` or `circuit_open`.
    pub kind: String,
    /// The flow it watches; every enabled flow when left out. Not for `circuit_open`.
    #[serde(default)]
    pub flow: Option<String>,
    /// `circuit_open`: the system it watches; every system when left out.
    #[serde(default)]
    pub system: Option<String>,
    /// `failures`: fires when more than this many records failed within `window` (default 0).
    #[serde(default)]
    pub threshold: Option<u64>,
    /// `failures`: the window the failures are counted in (`15m`).
    #[serde(default)]
    pub window: Option<String>,
    /// `lag`: since the last successful run; `slow_run`: a run's duration.
    #[serde(default)]
    pub limit: Option<String>,
    /// `no_sync`: opening time without a record created or updated.
    #[serde(default)]
    pub period: Option<String>,
    /// `no_sync`: opening days, `mon-fri` or `mon,tue,sat`; default every day.
    #[serde(default)]
    pub days: Option<String>,
    /// `no_sync`: opening hours, `08:00-18:00`; default the whole day.
    #[serde(default)]
    pub hours: Option<String>,
    /// `no_sync`: the time zone of `days` and `hours` (IANA name); default `engine.timezone`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// `email`, `webhook`: default every configured channel.
    #[serde(default)]
    pub channels: Option<Vec<String>>,
}

/// A validated `[alerts]` section.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    pub interval: Duration,
    pub cooldown: Duration,
    pub email: Option<EmailSettings>,
    pub webhook: Option<WebhookSettings>,
    pub templates: TemplateTexts,
    pub rules: Vec<AlertRule>,
}

#[derive(Debug, Clone)]
pub struct EmailSettings {
    pub smtp_host: String,
    pub smtp_port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<SecretRef>,
    pub ca_file: Option<PathBuf>,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Webhook,
}

impl Channel {
    pub fn as_str(&self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AlertRule {
    pub name: String,
    pub flow: Option<String>,
    /// The system a `circuit_open` rule watches; every system when `None`.
    pub system: Option<String>,
    pub condition: Condition,
    pub channels: Vec<Channel>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// More than `threshold` records failed in runs started within `window`.
    Failures { threshold: u64, window: Duration },
    /// The last successful run finished more than `limit` ago.
    Lag { limit: Duration },
    /// No record created or updated for `period` of opening time.
    NoSync { period: Duration, hours: OpeningHours },
    /// The latest run took (or, still running, has taken) longer than `limit`.
    SlowRun { limit: Duration },
    /// The latest finished run failed: the source or the target could not be read or written
    /// after the flow's retries (the system is down or refuses erpsync).
    RunFailed,
    /// A system's circuit is open or half-open: runs touching it kept failing because it was
    /// down or throttling (see [`crate::circuit`]). The incident is about the system.
    CircuitOpen,
}

impl Condition {
    pub fn kind(&self) -> &'static str {
        match self {
            Condition::Failures { .. } => "failures",
            Condition::Lag { .. } => "lag",
            Condition::NoSync { .. } => "no_sync",
            Condition::SlowRun { .. } => "slow_run",
            Condition::RunFailed => "run_failed",
            Condition::CircuitOpen => "circuit_open",
        }
    }
}

/// Opening days and hours in a time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct OpeningHours {
    /// Monday first.
    pub days: [bool; 7],
    pub open: NaiveTime,
    pub close: NaiveTime,
    pub zone: chrono_tz::Tz,
}

impl OpeningHours {
    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.zone);
        self.days[local.weekday().num_days_from_monday() as usize]
            && local.time() >= self.open
            && local.time() < self.close
    }

    /// How much opening time lies between `from` and `to` (each day's hours in its own
    /// offset, so a change to or from daylight-saving time counts right). At most 400 days are
    /// looked at.
    pub fn open_time_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
        if to <= from {
            return Duration::ZERO;
        }
        let mut total = chrono::Duration::zero();
        let mut day = from.with_timezone(&self.zone).date_naive();
        let last = to.with_timezone(&self.zone).date_naive();
        for _ in 0..400 {
            if day > last {
                break;
            }
            if self.days[day.weekday().num_days_from_monday() as usize] {
                let local = |time: NaiveTime| {
                    self.zone.from_local_datetime(&day.and_time(time)).earliest().map(|at| at.with_timezone(&Utc))
                };
                if let (Some(open), Some(close)) = (local(self.open), local(self.close)) {
                    let start = open.max(from);
                    let end = close.min(to);
                    if end > start {
                        total += end - start;
                    }
                }
            }
            let Some(next) = day.succ_opt() else { break };
            day = next;
        }
        total.to_std().unwrap_or_default()
    }
}

/// Validates `[alerts]`: every problem as `(field under alerts, message)`. `flows` are the
/// configured flows' names; `default_zone` is `engine.timezone`; relative paths are made
/// relative to `base_dir`.
pub fn validate(
    raw: RawAlerts,
    flows: &[&str],
    systems: &[&str],
    default_zone: &str,
    base_dir: &Path,
) -> Result<AlertSettings, Vec<(String, String)>> {
    let mut problems: Vec<(String, String)> = Vec::new();
    let interval = checked_duration(&mut problems, "interval", Some(&raw.interval), Duration::from_secs(1))
        .unwrap_or(Duration::from_secs(60));
    let cooldown = checked_duration(&mut problems, "cooldown", Some(&raw.cooldown), Duration::ZERO)
        .unwrap_or(Duration::from_secs(1800));
    let email = raw.email.and_then(|email| {
        let mut mailbox = |field: &str, text: &str| match text.parse::<Mailbox>() {
            Ok(mailbox) => Some(mailbox),
            Err(error) => {
                problems.push((
                    format!("email.{field}"),
                    format!("{text:?} is not an e-mail address ({error}); example: \"erpsync <erpsync@example.com>\""),
                ));
                None
            }
        };
        let from = mailbox("from", &email.from);
        let to: Vec<Mailbox> = email.to.iter().filter_map(|to| mailbox("to", to)).collect();
        if email.to.is_empty() {
            problems.push(("email.to".into(), "name at least one recipient".into()));
        }
        if email.smtp_host.trim().is_empty() {
            problems.push(("email.smtp_host".into(), "name the SMTP server".into()));
        }
        if email.password.is_some() && email.username.is_none() {
            problems.push(("email.username".into(), "a password needs a username".into()));
        }
        let smtp_port = email.smtp_port.unwrap_or(match email.tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        });
        let mut password = email.password;
        if let Some(password) = &mut password {
            password.resolve_path(base_dir);
        }
        let ca_file = email.ca_file.map(|path| if path.is_relative() { base_dir.join(path) } else { path });
        Some(EmailSettings {
            smtp_host: email.smtp_host,
            smtp_port,
            tls: email.tls,
            username: email.username,
            password,
            ca_file,
            from: from?,
            to,
        })
    });
    let webhook = raw.webhook.map(|mut webhook| {
        webhook.url.resolve_path(base_dir);
        webhook
    });
    let templates = raw.templates;
    for (field, text) in [
        ("subject", &templates.subject),
        ("body", &templates.body),
        ("resolved_subject", &templates.resolved_subject),
        ("resolved_body", &templates.resolved_body),
    ] {
        if let Some(text) = text
            && let Err(error) = minijinja::Environment::new().template_from_str(text)
        {
            problems.push((format!("templates.{field}"), format!("not a valid template: {error}")));
        }
    }
    let mut rules = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (index, rule) in raw.rules.into_iter().enumerate() {
        let at = format!("rules[{index}]");
        let valid_name = !rule.name.is_empty()
            && rule.name.len() <= 64
            && rule.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_name {
            problems.push((format!("{at}.name"), "names may use letters, digits, `-` and `_` (at most 64)".into()));
        }
        if !names.insert(rule.name.clone()) {
            problems.push((format!("{at}.name"), format!("two rules are called {:?}", rule.name)));
        }
        if let Some(flow) = &rule.flow
            && !flows.contains(&flow.as_str())
        {
            problems
                .push((format!("{at}.flow"), format!("unknown flow {flow:?}; configured flows: {}", flows.join(", "))));
        }
        let second = Duration::from_secs(1);
        let condition = match rule.kind.as_str() {
            "failures" => {
                let window = checked_duration(&mut problems, &format!("{at}.window"), rule.window.as_deref(), second);
                window.map(|window| Condition::Failures { threshold: rule.threshold.unwrap_or(0), window })
            }
            "lag" => checked_duration(&mut problems, &format!("{at}.limit"), rule.limit.as_deref(), second)
                .map(|limit| Condition::Lag { limit }),
            "slow_run" => checked_duration(&mut problems, &format!("{at}.limit"), rule.limit.as_deref(), second)
                .map(|limit| Condition::SlowRun { limit }),
            "run_failed" => Some(Condition::RunFailed),
            "circuit_open" => {
                if rule.flow.is_some() {
                    problems.push((
                        format!("{at}.flow"),
                        "a circuit_open rule watches systems, not flows: use `system`".into(),
                    ));
                }
                Some(Condition::CircuitOpen)
            }
            "no_sync" => {
                let minute = Duration::from_secs(60);
                let period = checked_duration(&mut problems, &format!("{at}.period"), rule.period.as_deref(), minute);
                let hours = opening_hours(&rule, default_zone).map_err(|(field, message)| {
                    problems.push((format!("{at}.{field}"), message));
                });
                match (period, hours) {
                    (Some(period), Ok(hours)) => Some(Condition::NoSync { period, hours }),
                    _ => None,
                }
            }
            other => {
                problems.push((
                    format!("{at}.kind"),
                    format!("unknown kind {other:?}; use failures, lag, no_sync, slow_run, run_failed or circuit_open"),
                ));
                None
            }
        };
        let channels = match &rule.channels {
            None => {
                let mut all = Vec::new();
                if email.is_some() {
                    all.push(Channel::Email);
                }
                if webhook.is_some() {
                    all.push(Channel::Webhook);
                }
                all
            }
            Some(names) => names
                .iter()
                .filter_map(|name| match name.as_str() {
                    "email" if email.is_some() => Some(Channel::Email),
                    "webhook" if webhook.is_some() => Some(Channel::Webhook),
                    other => {
                        problems.push((
                            format!("{at}.channels"),
                            format!("{other:?} is not a configured channel: set up [alerts.email] or [alerts.webhook]"),
                        ));
                        None
                    }
                })
                .collect(),
        };
        if let Some(system) = &rule.system {
            if rule.kind != "circuit_open" {
                problems.push((format!("{at}.system"), "only circuit_open rules watch a system: use `flow`".into()));
            } else if !systems.contains(&system.as_str()) {
                problems.push((
                    format!("{at}.system"),
                    format!("unknown system {system:?}; configured systems: {}", systems.join(", ")),
                ));
            }
        }
        if let Some(condition) = condition {
            rules.push(AlertRule { name: rule.name, flow: rule.flow, system: rule.system, condition, channels });
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(AlertSettings { interval, cooldown, email, webhook, templates, rules })
}

/// A duration setting of at least `minimum`; `None` (and a problem) when it is missing, not
/// a duration or too short.
fn checked_duration(
    problems: &mut Vec<(String, String)>,
    field: &str,
    text: Option<&str>,
    minimum: Duration,
) -> Option<Duration> {
    let Some(text) = text else {
        let setting = field.rsplit('.').next().unwrap_or(field);
        problems.push((field.to_string(), format!("this kind of rule needs `{setting}`")));
        return None;
    };
    match parse_duration(text) {
        Ok(value) if value >= minimum => Some(value),
        Ok(_) => {
            problems.push((field.to_string(), format!("must be at least {}", crate::config::format_duration(minimum))));
            None
        }
        Err(message) => {
            problems.push((field.to_string(), message));
            None
        }
    }
}

fn opening_hours(rule: &RawRule, default_zone: &str) -> Result<OpeningHours, (String, String)> {
    let zone_text = rule.timezone.as_deref().unwrap_or(default_zone);
    let zone = zone_text.parse::<chrono_tz::Tz>().map_err(|_| {
        (
            "timezone".to_string(),
            format!("{zone_text:?} is not a time zone; use an IANA name such as \"Europe/Berlin\""),
        )
    })?;
    let days_text = rule.days.as_deref().unwrap_or("mon-sun");
    let days = parse_days(days_text)
        .ok_or_else(|| ("days".to_string(), format!("{days_text:?}: write days as \"mon-fri\" or \"mon,wed,sat\"")))?;
    let hours_text = rule.hours.as_deref().unwrap_or("00:00-24:00");
    let (open, close) = parse_hours(hours_text).ok_or_else(|| {
        (
            "hours".to_string(),
            format!("{hours_text:?}: write opening hours as \"08:00-18:00\" (opening before closing)"),
        )
    })?;
    Ok(OpeningHours { days, open, close, zone })
}

fn parse_days(text: &str) -> Option<[bool; 7]> {
    let day = |name: &str| -> Option<usize> {
        let weekday: Weekday = name.trim().parse().ok()?;
        Some(weekday.num_days_from_monday() as usize)
    };
    let mut days = [false; 7];
    for part in text.split(',') {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (day(first)?, day(last)?);
                if first > last {
                    return None;
                }
                days[first..=last].iter_mut().for_each(|open| *open = true);
            }
            None => days[day(part)?] = true,
        }
    }
    Some(days)
}

fn parse_hours(text: &str) -> Option<(NaiveTime, NaiveTime)> {
    let (open, close) = text.split_once('-')?;
    let time = |text: &str| -> Option<NaiveTime> {
        match text.trim() {
            // The end of the day: every time of the day is before it.
            "24:00" => NaiveTime::from_hms_nano_opt(23, 59, 59, 999_999_999),
            text => NaiveTime::parse_from_str(text, "%H:%M").ok(),
        }
    };
    let (open, close) = (time(open)?, time(close)?);
    (open < close).then_some((open, close))
}

// --- evaluation ----------------------------------------------------------------------------------

/// What one rule found for one flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observation {
    pub rule: String,
    pub kind: String,
    pub scope: String,
    /// `None` when the rule does not apply now (a `no_sync` rule outside opening hours, a
    /// flow that never ran): an open incident stays as it is.
    pub firing: Option<bool>,
    /// What was seen, in a sentence: `3 records failed in 15m (more than 0)`.
    pub summary: String,
}

/// Runs of `flow` started at or after `since`, newest first, at most 10000.
async fn runs_since(engine: &Engine, flow: &str, since: DateTime<Utc>) -> Result<Vec<Run>, EngineError> {
    let mut runs = Vec::new();
    let mut before = None;
    loop {
        let filter = RunFilter { flow: Some(flow.to_string()), status: None, trigger: None, before, limit: 500 };
        let page = engine.store().find_runs(&filter).await?;
        let done = page.len() < 500;
        before = page.last().map(|run| run.id);
        for run in page {
            if run.started_at < since {
                return Ok(runs);
            }
            runs.push(run);
        }
        if done || runs.len() >= 10_000 {
            return Ok(runs);
        }
    }
}

fn duration_text(duration: Duration) -> String {
    crate::config::format_duration(Duration::from_secs(duration.as_secs()))
}

impl Engine {
    /// Evaluates every `[alerts]` rule for the flows it watches, as of `now`. Reads only.
    pub async fn evaluate_alerts(&self, now: DateTime<Utc>) -> Result<Vec<Observation>, EngineError> {
        let Some(settings) = &self.config().alerts else { return Ok(Vec::new()) };
        let statuses = self.status().await?;
        let mut observations = Vec::new();
        for rule in &settings.rules {
            if rule.condition == Condition::CircuitOpen {
                observations.extend(self.circuit_observations(rule).await?);
                continue;
            }
            for status in statuses.iter().filter(|status| status.enabled) {
                if rule.flow.as_ref().is_some_and(|flow| flow != &status.name) {
                    continue;
                }
                let flow = status.name.as_str();
                let (firing, summary) = match &rule.condition {
                    Condition::Failures { threshold, window } => {
                        let since = now - chrono::Duration::from_std(*window).unwrap_or_default();
                        let runs = runs_since(self, flow, since).await?;
                        let failed: i64 = runs.iter().map(|run| run.counts.failed).sum();
                        let firing = u64::try_from(failed).unwrap_or(0) > *threshold;
                        let summary = format!(
                            "{failed} record(s) of flow {flow} failed in the last {} (alert above {threshold})",
                            duration_text(*window)
                        );
                        (Some(firing), summary)
                    }
                    Condition::Lag { limit } => match status.lag_seconds {
                        None => (None, format!("flow {flow} has not synced successfully yet")),
                        Some(lag) => {
                            let lag = Duration::from_secs(u64::try_from(lag).unwrap_or(0));
                            let summary = format!(
                                "flow {flow} last synced successfully {} ago (limit {})",
                                duration_text(lag),
                                duration_text(*limit)
                            );
                            (Some(lag > *limit), summary)
                        }
                    },
                    Condition::SlowRun { limit } => match &status.last_run {
                        None => (None, format!("flow {flow} has not run yet")),
                        Some(run) => {
                            let end = run.finished_at.unwrap_or(now);
                            let took = (end - run.started_at).to_std().unwrap_or_default();
                            let verb = if run.finished_at.is_some() { "took" } else { "has been running for" };
                            let summary = format!(
                                "run {} of flow {flow} {verb} {} (limit {})",
                                run.id,
                                duration_text(took),
                                duration_text(*limit)
                            );
                            (Some(took > *limit), summary)
                        }
                    },
                    Condition::RunFailed => {
                        let runs = self.store().list_runs(Some(flow), 20).await?;
                        match runs.iter().find(|run| run.status != RunStatus::Running && !run.dry_run) {
                            None => (None, format!("flow {flow} has no finished run yet")),
                            Some(run) if run.status == RunStatus::Failed => (
                                Some(true),
                                format!(
                                    "run {} of flow {flow} failed: {}",
                                    run.id,
                                    run.error.as_deref().unwrap_or("no reason recorded")
                                ),
                            ),
                            Some(run) => {
                                (Some(false), format!("run {} of flow {flow} ended {}", run.id, run.status.as_str()))
                            }
                        }
                    }
                    Condition::CircuitOpen => unreachable!("circuit rules are observed per system, above"),
                    Condition::NoSync { period, hours } => {
                        if !hours.is_open(now) {
                            (None, format!("outside the opening hours of rule {}", rule.name))
                        } else {
                            self.no_sync(flow, *period, hours, now).await?
                        }
                    }
                };
                observations.push(Observation {
                    rule: rule.name.clone(),
                    kind: rule.condition.kind().to_string(),
                    scope: flow.to_string(),
                    firing,
                    summary,
                });
            }
        }
        Ok(observations)
    }

    /// A `circuit_open` rule's observation of each system it watches.
    async fn circuit_observations(&self, rule: &AlertRule) -> Result<Vec<Observation>, EngineError> {
        let mut observations = Vec::new();
        for circuit in self.circuits().await? {
            if rule.system.as_ref().is_some_and(|system| system != &circuit.system) {
                continue;
            }
            let system = &circuit.system;
            let summary = match circuit.state {
                crate::circuit::CircuitState::Closed => {
                    format!("the circuit of system {system} is closed; its flows run")
                }
                state => format!(
                    "the circuit of system {system} is {} after {} failed run(s) in a row ({}: {}); flows held: {}",
                    state.as_str().replace('_', "-"),
                    circuit.failures,
                    circuit.error_kind.as_deref().unwrap_or("unknown"),
                    circuit.error.as_deref().unwrap_or("no message"),
                    if circuit.flows.is_empty() { "none".to_string() } else { circuit.flows.join(", ") },
                ),
            };
            observations.push(Observation {
                rule: rule.name.clone(),
                kind: rule.condition.kind().to_string(),
                scope: system.clone(),
                firing: Some(circuit.is_open()),
                summary,
            });
        }
        Ok(observations)
    }

    async fn no_sync(
        &self,
        flow: &str,
        period: Duration,
        hours: &OpeningHours,
        now: DateTime<Utc>,
    ) -> Result<(Option<bool>, String), EngineError> {
        // Look back far enough to cover a long weekend of closed hours as well as the period.
        let horizon = now - chrono::Duration::from_std(period).unwrap_or_default() - chrono::Duration::days(14);
        let runs = runs_since(self, flow, horizon).await?;
        let synced = runs
            .iter()
            .filter(|run| !run.dry_run && run.counts.created + run.counts.updated > 0)
            .filter_map(|run| run.finished_at)
            .max();
        let since = match (synced, runs.last()) {
            (Some(at), _) => at,
            // Nothing synced in the horizon: count from the oldest run looked at.
            (None, Some(oldest)) => oldest.started_at,
            (None, None) => return Ok((None, format!("flow {flow} has not run yet"))),
        };
        let open_time = hours.open_time_between(since, now);
        let what = match synced {
            Some(_) => "since its last record",
            None => "without a record",
        };
        let summary = format!(
            "flow {flow} synced no record for {} of opening time ({what}; limit {})",
            duration_text(open_time),
            duration_text(period)
        );
        Ok((Some(open_time > period), summary))
    }
}

// --- incidents and messages ----------------------------------------------------------------------

/// What one evaluation changed: incidents opened and resolved, each with whether a message
/// went out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AlertChanges {
    pub opened: Vec<Alert>,
    pub resolved: Vec<Alert>,
}

/// Sends alert messages and keeps incidents in the store. Built once by `serve`.
pub struct Alerter {
    engine: Arc<Engine>,
    http: reqwest::Client,
}

const DEFAULT_SUBJECT: &str = "[erpsync] {{ rule }}: {{ scope }}";
const DEFAULT_BODY: &str = "{{ summary }}\n\n\
Rule: {{ rule }} ({{ kind }})\n\
{% if kind == \"circuit_open\" %}System{% else %}Flow{% endif %}: {{ scope }}\n\
Since: {{ opened_at }}\n\
{% if dashboard_url %}Dashboard: {{ dashboard_url }}\n{% endif %}";
const DEFAULT_RESOLVED_SUBJECT: &str = "[erpsync] resolved: {{ rule }}: {{ scope }}";
const DEFAULT_RESOLVED_BODY: &str = "{{ resolution }}\n\n\
Rule: {{ rule }} ({{ kind }})\n\
{% if kind == \"circuit_open\" %}System{% else %}Flow{% endif %}: {{ scope }}\n\
Firing from {{ opened_at }} to {{ resolved_at }}: {{ summary }}\n\
{% if dashboard_url %}Dashboard: {{ dashboard_url }}\n{% endif %}";

/// Where a message goes wrong, for the incident's delivery record.
type DeliveryResult = Result<String, String>;

impl Alerter {
    pub fn new(engine: Arc<Engine>) -> Self {
        // One TLS provider for the whole binary (ring): the webhook client needs it installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { engine, http }
    }

    /// Evaluates the rules as of `now`, opens and resolves incidents, and sends their messages.
    pub async fn evaluate(&self, now: DateTime<Utc>) -> Result<AlertChanges, EngineError> {
        let Some(settings) = self.engine.config().alerts.as_ref() else { return Ok(AlertChanges::default()) };
        let observations = self.engine.evaluate_alerts(now).await?;
        let store = self.engine.store();
        let mut open: HashMap<(String, String), Alert> = store
            .list_alerts(&AlertFilter { open_only: true, ..Default::default() })
            .await?
            .into_iter()
            .map(|alert| ((alert.rule.clone(), alert.scope.clone()), alert))
            .collect();
        let mut changes = AlertChanges::default();
        for observation in observations {
            let Some(rule) = settings.rules.iter().find(|rule| rule.name == observation.rule) else { continue };
            let key = (observation.rule.clone(), observation.scope.clone());
            match (observation.firing, open.remove(&key)) {
                (Some(true), None) => {
                    let cooldown = chrono::Duration::from_std(settings.cooldown).unwrap_or_default();
                    let recent = store
                        .list_alerts(&AlertFilter {
                            rule: Some(observation.rule.clone()),
                            scope: Some(observation.scope.clone()),
                            open_only: false,
                            limit: 50,
                        })
                        .await?;
                    let notify = !recent.iter().any(|alert| {
                        alert.deliveries.iter().any(|delivery| delivery.ok && delivery.at + cooldown > now)
                    });
                    let new = NewAlert {
                        rule: observation.rule.clone(),
                        kind: observation.kind.clone(),
                        scope: observation.scope.clone(),
                        summary: observation.summary.clone(),
                        notify,
                        opened_at: now,
                    };
                    let id = match store.insert_alert(&new).await {
                        Ok(id) => id,
                        // Another `serve` opened it first: it sends the message.
                        Err(StoreError::AlreadyExists { .. }) => continue,
                        Err(error) => return Err(error.into()),
                    };
                    tracing::warn!(rule = %observation.rule, flow = %observation.scope, summary = %observation.summary, notify, "Alert firing.");
                    let mut alert = Alert {
                        id,
                        rule: new.rule,
                        kind: new.kind,
                        scope: new.scope,
                        summary: new.summary,
                        notify,
                        opened_at: now,
                        resolved_at: None,
                        resolution: None,
                        deliveries: Vec::new(),
                    };
                    if notify {
                        alert.deliveries = self.send(settings, rule, &alert, "firing", now).await?;
                    }
                    changes.opened.push(alert);
                }
                (Some(false), Some(mut alert)) => {
                    if !store.resolve_alert(alert.id, now, &observation.summary).await? {
                        continue;
                    }
                    tracing::info!(rule = %alert.rule, flow = %alert.scope, summary = %observation.summary, "Alert resolved.");
                    alert.resolved_at = Some(now);
                    alert.resolution = Some(observation.summary);
                    if alert.notify {
                        let sent = self.send(settings, rule, &alert, "resolved", now).await?;
                        alert.deliveries.extend(sent);
                    }
                    changes.resolved.push(alert);
                }
                // Still firing, still clear, or the rule does not apply now: nothing changes.
                _ => {}
            }
        }
        Ok(changes)
    }

    async fn send(
        &self,
        settings: &AlertSettings,
        rule: &AlertRule,
        alert: &Alert,
        event: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<AlertDelivery>, EngineError> {
        let (subject, body) = render(settings, self.engine.config().server.public_url.as_deref(), alert, event);
        let mut deliveries = Vec::new();
        for channel in &rule.channels {
            let result = match (channel, &subject, &body) {
                (_, Err(error), _) | (_, _, Err(error)) => Err(error.clone()),
                (Channel::Email, Ok(subject), Ok(body)) => match &settings.email {
                    Some(email) => send_email(email, subject, body).await,
                    None => Err("no [alerts.email] is configured".into()),
                },
                (Channel::Webhook, Ok(subject), Ok(body)) => match &settings.webhook {
                    Some(webhook) => self.send_webhook(webhook, subject, body).await,
                    None => Err("no [alerts.webhook] is configured".into()),
                },
            };
            if let Err(error) = &result {
                tracing::error!(rule = %alert.rule, channel = channel.as_str(), error = %error, "Could not send an alert message.");
            }
            let delivery = AlertDelivery {
                event: event.to_string(),
                channel: channel.as_str().to_string(),
                ok: result.is_ok(),
                detail: result.unwrap_or_else(|error| error),
                at: now,
            };
            self.engine.store().record_alert_delivery(alert.id, &delivery).await?;
            deliveries.push(delivery);
        }
        Ok(deliveries)
    }

    async fn send_webhook(&self, webhook: &WebhookSettings, subject: &str, body: &str) -> DeliveryResult {
        let url = webhook.url.resolve().map_err(|error| format!("resolving the webhook URL: {error}"))?;
        let text = format!("*{subject}*\n{body}");
        let response = self
            .http
            .post(url.expose())
            .json(&serde_json::json!({ "text": text }))
            .send()
            .await
            // reqwest's errors carry the URL, which is a secret here: keep only what happened.
            .map_err(|error| format!("posting to the alert webhook: {}", error.without_url()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the alert webhook answered {status}"));
        }
        Ok(format!("answered {status}"))
    }
}

/// Subject and body of a message about `alert` (`event` is `firing` or `resolved`).
pub fn render(
    settings: &AlertSettings,
    public_url: Option<&str>,
    alert: &Alert,
    event: &str,
) -> (Result<String, String>, Result<String, String>) {
    let texts = &settings.templates;
    let (subject, body) = if event == "resolved" {
        (
            texts.resolved_subject.as_deref().unwrap_or(DEFAULT_RESOLVED_SUBJECT),
            texts.resolved_body.as_deref().unwrap_or(DEFAULT_RESOLVED_BODY),
        )
    } else {
        (texts.subject.as_deref().unwrap_or(DEFAULT_SUBJECT), texts.body.as_deref().unwrap_or(DEFAULT_BODY))
    };
    let dashboard_url = public_url.map(|url| format!("{}/alerts", url.trim_end_matches('/')));
    let format_time = |at: DateTime<Utc>| at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let context = minijinja::context! {
        rule => alert.rule,
        kind => alert.kind,
        scope => alert.scope,
        flow => alert.scope,
        event => event,
        summary => alert.summary,
        resolution => alert.resolution,
        opened_at => format_time(alert.opened_at),
        resolved_at => alert.resolved_at.map(format_time),
        dashboard_url => dashboard_url,
    };
    let mut environment = minijinja::Environment::new();
    // Messages are plain text, not HTML.
    environment.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    let render = |text: &str| {
        environment
            .render_str(text, &context)
            .map(|text| text.trim_end().to_string())
            .map_err(|error| format!("rendering the alert template: {error}"))
    };
    (render(subject).map(|subject| subject.replace(['\r', '\n'], " ")), render(body))
}

async fn send_email(email: &EmailSettings, subject: &str, body: &str) -> DeliveryResult {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let mut message = Message::builder().from(email.from.clone()).subject(subject);
    for to in &email.to {
        message = message.to(to.clone());
    }
    let message = message
        .header(lettre::message::header::ContentType::TEXT_PLAIN)
        .body(body.to_string())
        .map_err(|error| format!("building the e-mail: {error}"))?;
    let tls = match email.tls {
        SmtpTls::None => Tls::None,
        mode => {
            let mut parameters = TlsParameters::builder(email.smtp_host.clone());
            if let Some(path) = &email.ca_file {
                let pem = tokio::fs::read(path)
                    .await
                    .map_err(|error| format!("reading the SMTP certificate authority {}: {error}", path.display()))?;
                let certificate = Certificate::from_pem(&pem)
                    .map_err(|error| format!("reading the SMTP certificate authority {}: {error}", path.display()))?;
                parameters = parameters.add_root_certificate(certificate);
            }
            let parameters = parameters.build_rustls().map_err(|error| format!("setting up TLS for SMTP: {error}"))?;
            if mode == SmtpTls::Tls { Tls::Wrapper(parameters) } else { Tls::Required(parameters) }
        }
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(email.smtp_host.as_str())
        .port(email.smtp_port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(30)));
    if let (Some(username), Some(password)) = (&email.username, &email.password) {
        let password = password.resolve().map_err(|error| format!("resolving the SMTP password: {error}"))?;
        transport = transport.credentials(Credentials::new(username.clone(), password.expose().to_string()));
    }
    let response = transport
        .build()
        .send(message)
        .await
        .map_err(|error| format!("sending the e-mail through {}:{}: {error}", email.smtp_host, email.smtp_port))?;
    Ok(format!("{} {}", response.code(), response.message().collect::<Vec<_>>().join(" ")))
}

/// Evaluates the alert rules every `[alerts] interval` until shutdown; a failure is logged
/// and the next round tries again. Started by [`Engine::serve`], which awaits it on the way out.
pub(crate) fn spawn(engine: &Arc<Engine>, shutdown: crate::shutdown::Shutdown) -> Option<tokio::task::JoinHandle<()>> {
    let interval = engine.config().alerts.as_ref()?.interval;
    let alerter = Alerter::new(engine.clone());
    let mut shutdown = shutdown;
    Some(tokio::spawn(async move {
        while !shutdown.is_requested() {
            if let Err(error) = alerter.evaluate(Utc::now()).await {
                tracing::error!(error = %error, "Could not evaluate the alert rules.");
            }
            shutdown.sleep(interval).await;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(days: &str, hours: &str, zone: &str) -> OpeningHours {
        let rule = RawRule {
            name: "r".into(),
            kind: "no_sync".into(),
            flow: None,
            system: None,
            threshold: None,
            window: None,
            limit: None,
            period: Some("2h".into()),
            days: Some(days.into()),
            hours: Some(hours.into()),
            timezone: Some(zone.into()),
            channels: None,
        };
        opening_hours(&rule, "UTC").unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn opening_hours_in_a_time_zone() {
        let shop = hours("mon-fri", "08:00-18:00", "Europe/Berlin");
        // Monday 2026-03-02, 08:30 in Berlin is 07:30 UTC.
        assert!(shop.is_open(utc("2026-03-02T07:30:00Z")));
        assert!(!shop.is_open(utc("2026-03-02T06:30:00Z")), "07:30 in Berlin");
        assert!(!shop.is_open(utc("2026-03-02T17:00:00Z")), "18:00 in Berlin is closing time");
        assert!(!shop.is_open(utc("2026-03-07T10:00:00Z")), "Saturday");
        // Friday 17:00 to Monday 09:00 (Berlin): one hour on Friday and one on Monday.
        let open = shop.open_time_between(utc("2026-03-06T16:00:00Z"), utc("2026-03-09T08:00:00Z"));
        assert_eq!(open, Duration::from_secs(2 * 3600));
        // Across the change to summer time (Sunday 2026-03-29): Monday opens at 06:00 UTC.
        let open = shop.open_time_between(utc("2026-03-27T16:00:00Z"), utc("2026-03-30T07:00:00Z"));
        assert_eq!(open, Duration::from_secs(2 * 3600));
        assert_eq!(shop.open_time_between(utc("2026-03-09T08:00:00Z"), utc("2026-03-09T07:00:00Z")), Duration::ZERO);
    }

    #[test]
    fn days_and_hours_are_parsed_or_refused() {
        assert_eq!(parse_days("mon-fri"), Some([true, true, true, true, true, false, false]));
        assert_eq!(parse_days("sat,mon"), Some([true, false, false, false, false, true, false]));
        assert_eq!(parse_days("fri-mon"), None);
        assert_eq!(parse_days("someday"), None);
        assert!(parse_hours("08:00-18:00").is_some());
        assert!(parse_hours("00:00-24:00").is_some());
        assert!(parse_hours("18:00-08:00").is_none());
        assert!(parse_hours("8-18").is_none());
    }

    fn settings(toml_text: &str) -> Result<AlertSettings, Vec<(String, String)>> {
        let raw: RawAlerts = toml::from_str(toml_text).unwrap();
        validate(raw, &["orders", "products"], &["erp", "shop"], "Europe/Berlin", Path::new("/etc/erpsync"))
    }

    #[test]
    fn rules_are_validated_with_every_problem() {
        let problems = settings(
            r#"
interval = "soon"
[email]
smtp_host = "mail.example.com"
from = "not an address"
to = ["ops@example.com"]
[[rules]]
name = "a"
kind = "failures"
flow = "invoices"
[[rules]]
name = "a"
kind = "weather"
[[rules]]
name = "b"
kind = "no_sync"
period = "2h"
hours = "18:00-08:00"
channels = ["webhook"]
"#,
        )
        .unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|(field, _)| field.as_str()).collect();
        for expected in [
            "interval",
            "email.from",
            "rules[0].flow",
            "rules[0].window",
            "rules[1].name",
            "rules[1].kind",
            "rules[2].hours",
            "rules[2].channels",
        ] {
            assert!(fields.contains(&expected), "{expected} missing from {problems:?}");
        }
    }

    #[test]
    fn messages_use_the_templates() {
        let settings = settings(
            r#"
[webhook]
url = "${HOOK}"
[templates]
subject = "{{ rule | upper }} on {{ flow }}"
[[rules]]
name = "orders-failing"
kind = "failures"
window = "15m"
threshold = 5
flow = "orders"
"#,
        )
        .unwrap();
        assert_eq!(settings.rules[0].channels, vec![Channel::Webhook]);
        assert_eq!(settings.rules[0].condition, Condition::Failures { threshold: 5, window: Duration::from_secs(900) });
        let alert = Alert {
            id: 1,
            rule: "orders-failing".into(),
            kind: "failures".into(),
            scope: "orders".into(),
            summary: "6 record(s) of flow orders failed".into(),
            notify: true,
            opened_at: utc("2026-03-02T07:30:00Z"),
            resolved_at: None,
            resolution: None,
            deliveries: Vec::new(),
        };
        let (subject, body) = render(&settings, Some("https://sync.example.com/"), &alert, "firing");
        assert_eq!(subject.unwrap(), "ORDERS-FAILING on orders");
        let body = body.unwrap();
        assert!(body.starts_with("6 record(s) of flow orders failed\n"), "{body}");
        assert!(body.contains("Since: 2026-03-02 07:30:00 UTC"), "{body}");
        assert!(body.contains("Dashboard: https://sync.example.com/alerts"), "{body}");
        let (subject, _) = render(&settings, None, &alert, "resolved");
        assert_eq!(subject.unwrap(), "[erpsync] resolved: orders-failing: orders");
    }
}
