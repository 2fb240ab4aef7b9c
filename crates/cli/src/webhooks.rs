//! `erpsync webhooks register|list|remove`: the shops' webhook subscriptions for this server.

use crate::WebhooksCommand;
use anyhow::{Context, Result, bail};
use erpsync_connectors::WebhookSubscriptions;
use erpsync_engine::config::Config;
use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::Arc;

/// A system whose API manages subscriptions, the topics its webhook-driven flows need, and
/// where deliveries must go.
struct Target {
    system: String,
    api: Arc<dyn WebhookSubscriptions>,
    topics: BTreeSet<String>,
    url: Option<String>,
}

pub async fn run(config: &Config, action: &WebhooksCommand) -> Result<ExitCode> {
    let only = match action {
        WebhooksCommand::Register { system } | WebhooksCommand::List { system, .. } => system.as_deref(),
        WebhooksCommand::Remove { system, .. } => Some(system.as_str()),
    };
    let targets = targets(config, only)?;
    match action {
        WebhooksCommand::Register { .. } => {
            let mut registered = 0;
            for target in &targets {
                let url = require_url(target)?;
                for topic in &target.topics {
                    let subscription = target
                        .api
                        .register(topic, url)
                        .await
                        .with_context(|| format!("registering {topic} on {}", target.system))?;
                    println!(
                        "{}: {} -> {} (id {})",
                        target.system, subscription.topic, subscription.url, subscription.id
                    );
                    registered += 1;
                }
            }
            if registered == 0 {
                println!("no webhook-driven flow reads from a system whose API manages subscriptions");
            }
            Ok(ExitCode::SUCCESS)
        }
        WebhooksCommand::List { json, .. } => {
            let mut rows = Vec::new();
            let mut missing = Vec::new();
            for target in &targets {
                let existing = target.api.list().await.with_context(|| format!("listing on {}", target.system))?;
                for topic in &target.topics {
                    let present =
                        existing.iter().any(|s| &s.topic == topic && Some(s.url.as_str()) == target.url.as_deref());
                    if !present {
                        missing.push(format!("{}: {topic}", target.system));
                    }
                }
                for subscription in existing {
                    let ours = Some(subscription.url.as_str()) == target.url.as_deref();
                    rows.push((target.system.clone(), subscription, ours));
                }
            }
            if *json {
                let value: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|(system, s, ours)| {
                        serde_json::json!({ "system": system, "id": s.id, "topic": s.topic, "url": s.url, "ours": ours })
                    })
                    .collect();
                println!("{}", serde_json::json!({ "subscriptions": value, "missing": missing }));
            } else {
                for (system, s, ours) in &rows {
                    let mark = if *ours { "" } else { "  (not this server)" };
                    println!("{system}\t{}\t{}\t{}{mark}", s.id, s.topic, s.url);
                }
                for gap in &missing {
                    eprintln!("warning: no subscription for {gap}: run `erpsync webhooks register`");
                }
            }
            Ok(if missing.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        WebhooksCommand::Remove { ids, all, .. } => {
            let target = targets.first().context("that system's API does not manage webhook subscriptions")?;
            let ids: Vec<String> = if *all {
                let url = require_url(target)?;
                target.api.list().await?.into_iter().filter(|s| s.url == url).map(|s| s.id).collect()
            } else {
                ids.clone()
            };
            if ids.is_empty() {
                bail!("name the subscription ids to remove, or --all for every subscription of this server");
            }
            for id in ids {
                target.api.remove(&id).await.with_context(|| format!("removing subscription {id}"))?;
                println!("{}: removed {id}", target.system);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Registers every subscription the configuration's webhook-driven flows need (what
/// `erpsync webhooks register` does); returns how many exist for this server afterwards.
pub async fn register_all(config: &Config) -> Result<usize> {
    let mut count = 0;
    for target in targets(config, None)? {
        let url = require_url(&target)?;
        for topic in &target.topics {
            target
                .api
                .register(topic, url)
                .await
                .with_context(|| format!("registering {topic} on {}", target.system))?;
            count += 1;
        }
    }
    Ok(count)
}

fn require_url(target: &Target) -> Result<&str> {
    target.url.as_deref().context("set [server] public_url: the address the shop delivers webhooks to")
}

fn targets(config: &Config, only: Option<&str>) -> Result<Vec<Target>> {
    if let Some(name) = only
        && !config.systems.contains_key(name)
    {
        bail!("no system named {name:?} in the configuration");
    }
    let mut targets = Vec::new();
    for (name, system) in &config.systems {
        if only.is_some_and(|only| only != name) {
            continue;
        }
        let Some(api) = system.build_subscriptions(name)? else {
            if only.is_some() {
                bail!("system {name:?} ({}) has no webhook subscriptions to manage", system.type_name());
            }
            continue;
        };
        let topics: BTreeSet<String> = config
            .flows
            .values()
            .filter(|flow| flow.enabled && &flow.source == name)
            .flat_map(|flow| api.topics(flow.entity))
            .collect();
        let url =
            config.server.public_url.as_ref().map(|base| format!("{}/webhooks/{name}", base.trim_end_matches('/')));
        targets.push(Target { system: name.clone(), api, topics, url });
    }
    Ok(targets)
}

/// What `validate` can say without calling any system: webhook-driven flows (no schedule of
/// their own) of systems whose subscriptions erpsync manages, when no public URL is set for
/// the shop to deliver to. `erpsync webhooks list` checks the subscriptions themselves.
pub fn offline_warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    for (name, system) in &config.systems {
        let Ok(Some(_)) = system.build_subscriptions(name) else { continue };
        for flow in config.flows.values().filter(|flow| flow.enabled && &flow.source == name && flow.trigger.is_none())
        {
            if config.server.public_url.is_none() {
                warnings.push(format!(
                    "flow {:?} waits for webhooks from {name:?}, but [server] public_url is not set, so no \
                     subscription can deliver to this server (it still reconciles on its schedule)",
                    flow.name
                ));
            }
        }
    }
    warnings
}
