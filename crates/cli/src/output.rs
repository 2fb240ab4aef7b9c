//! What the commands print: tables for people, JSON for scripts, and the progress bar.

use anyhow::Result;
use erpsync_engine::{FlowStatus, RunSummary, TraceReport};
use erpsync_store::{DeadLetter, RunCounts};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

pub fn print_connectors() {
    for info in erpsync_connectors::catalog() {
        let entities: Vec<&str> = info.entities.iter().map(|entity| entity.as_str()).collect();
        println!("{:<12} {}", info.name, info.description);
        println!(
            "{:<12} entities: {}; read: {}, write: {}, webhooks: {}",
            "",
            entities.join(", "),
            info.read,
            info.write,
            info.webhooks
        );
    }
}

pub fn progress_bar(flow: &str, enabled: bool) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} [{elapsed_precise}] {msg}").expect("the template is valid"),
    );
    bar.set_prefix(flow.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

pub fn update_progress(bar: &ProgressBar, counts: &RunCounts) {
    bar.set_message(format!(
        "read {} · created {} · updated {} · unchanged {} · failed {}",
        counts.read, counts.created, counts.updated, counts.unchanged, counts.failed
    ));
}

pub fn print_summary(summary: &RunSummary, json: bool) -> Result<()> {
    let counts = summary.counts;
    if json {
        let value = serde_json::json!({
            "run_id": summary.run_id,
            "flow": summary.flow,
            "status": summary.status.as_str(),
            "dry_run": summary.dry_run,
            "pages": summary.pages,
            "seconds": summary.duration.as_secs_f64(),
            "counts": counts,
            "error": summary.error,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let dry = if summary.dry_run { " (dry run: nothing written)" } else { "" };
    println!(
        "flow {}: {} in {:.2}s, run {}{dry}",
        summary.flow,
        summary.status.as_str().replace('_', " "),
        summary.duration.as_secs_f64(),
        summary.run_id
    );
    println!(
        "  read {}  created {}  updated {}  unchanged {}  skipped {}  failed {}",
        counts.read, counts.created, counts.updated, counts.unchanged, counts.skipped, counts.failed
    );
    if let Some(error) = &summary.error {
        println!("  error: {error}");
    }
    if counts.failed > 0 {
        println!("  {} records failed: see `erpsync failures list --flow {}`", counts.failed, summary.flow);
    }
    Ok(())
}

pub fn print_status(statuses: &[FlowStatus], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(statuses)?);
        return Ok(());
    }
    if statuses.is_empty() {
        println!("no flows configured");
        return Ok(());
    }
    println!(
        "{:<24} {:<12} {:<22} {:<18} {:>9} {:>8}",
        "FLOW", "ENTITY", "SOURCE → TARGET", "LAST RUN", "LAG", "FAILURES"
    );
    for status in statuses {
        let last = match (&status.paused, &status.last_run) {
            (Some(_), _) => "paused".to_string(),
            _ if status.circuit.is_some() => status
                .circuit
                .as_ref()
                .map(|circuit| format!("circuit {} {}", circuit.system, circuit.state.as_str().replace('_', "-")))
                .unwrap_or_default(),
            (None, Some(run)) => run.status.as_str().to_string(),
            (None, None) => "never".to_string(),
        };
        let lag = status.lag_seconds.map(human_seconds).unwrap_or_else(|| "-".into());
        println!(
            "{:<24} {:<12} {:<22} {:<18} {:>9} {:>8}",
            status.name,
            status.entity,
            format!("{} → {}", status.source, status.target),
            last,
            lag,
            status.open_failures
        );
    }
    // Open circuits say why their flows are held, once per system.
    let mut told = std::collections::BTreeSet::new();
    for circuit in statuses.iter().filter_map(|status| status.circuit.as_ref()) {
        if !told.insert(circuit.system.clone()) {
            continue;
        }
        let when = match (circuit.state, circuit.probe_at) {
            (erpsync_engine::circuit::CircuitState::Open, Some(at)) => {
                format!("flows held; next probe at {}", at.format("%Y-%m-%d %H:%M:%S UTC"))
            }
            _ => "a probe passed; the next run decides".to_string(),
        };
        println!(
            "circuit of system {} is {} after {} failed run(s) ({}: {}); {when}",
            circuit.system,
            circuit.state.as_str().replace('_', "-"),
            circuit.failures,
            circuit.error_kind.as_deref().unwrap_or("unknown"),
            circuit.error.as_deref().unwrap_or("no message"),
        );
    }
    Ok(())
}

fn human_seconds(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

pub fn print_failures(letters: &[DeadLetter], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(letters)?);
        return Ok(());
    }
    if letters.is_empty() {
        println!("no failures");
        return Ok(());
    }
    println!("{:>6} {:<20} {:<10} {:<12} {:<24} REASON", "ID", "FLOW", "STATUS", "KIND", "RECORD");
    for letter in letters {
        println!(
            "{:>6} {:<20} {:<10} {:<12} {:<24} {}",
            letter.id,
            letter.flow,
            letter.status.as_str(),
            letter.error_kind,
            letter.natural_key.as_deref().unwrap_or(&letter.source_id),
            letter.error
        );
    }
    Ok(())
}

/// Dead queue jobs: each a run request (flow, trigger, records by id) the queue gave up on.
pub fn print_dead_jobs(jobs: &[erpsync_queue::DeadJob], json: bool) -> Result<()> {
    let flow_of = |job: &erpsync_queue::DeadJob| job.payload["flow"].as_str().unwrap_or("").to_string();
    let what_of = |job: &erpsync_queue::DeadJob| match job.payload["ids"].as_array() {
        Some(ids) => format!("{} record(s) by id", ids.len()),
        None => format!("pull ({})", job.payload["trigger"].as_str().unwrap_or("?")),
    };
    if json {
        let views: Vec<serde_json::Value> = jobs
            .iter()
            .map(|job| {
                serde_json::json!({
                    "id": job.id, "kind": job.kind, "key": job.key, "flow": flow_of(job),
                    "payload": job.payload, "attempts": job.attempts, "error": job.error,
                    "died_at": job.died_at,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&views)?);
        return Ok(());
    }
    if jobs.is_empty() {
        println!("no dead jobs");
        return Ok(());
    }
    println!("{:>8} {:<20} {:<24} {:>8} {:<20} ERROR", "JOB", "FLOW", "WHAT", "ATTEMPTS", "DIED");
    for job in jobs {
        println!(
            "{:>8} {:<20} {:<24} {:>8} {:<20} {}",
            job.id,
            flow_of(job),
            what_of(job),
            job.attempts,
            job.died_at.format("%Y-%m-%d %H:%M:%S"),
            job.error
        );
    }
    Ok(())
}

pub fn print_failure(letter: &DeadLetter, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(letter)?);
        return Ok(());
    }
    println!("failure {} ({})", letter.id, letter.status.as_str());
    println!("  flow:      {} ({}: {} → {})", letter.flow, letter.entity, letter.source_system, letter.target_system);
    println!("  record:    {}", letter.natural_key.as_deref().unwrap_or(&letter.source_id));
    if let Some(origin) = &letter.origin {
        println!("  from:      {origin}");
    }
    println!("  kind:      {}", letter.error_kind);
    println!("  error:     {}", letter.error);
    println!("  attempts:  {}", letter.attempts);
    println!("  history:");
    for event in &letter.history {
        println!("    {}  {:<10} {}", event.at.format("%Y-%m-%d %H:%M:%S"), event.event, event.detail);
    }
    println!("  payload:");
    for line in serde_json::to_string_pretty(&letter.payload)?.lines() {
        println!("    {line}");
    }
    Ok(())
}

pub fn print_trace(report: &TraceReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    if report.records.is_empty() {
        println!("no record known by {:?}", report.key);
        return Ok(());
    }
    for traced in &report.records {
        let identity = &traced.identity;
        println!("{} {}", identity.entity, identity.natural_key.as_deref().unwrap_or(&report.key));
        for link in &identity.links {
            println!("  in {:<20} id {}", link.system, link.external_id);
        }
        for event in &traced.events {
            println!(
                "  {}  {:<20} {:<10} {} → {}{}",
                event.at.format("%Y-%m-%d %H:%M:%S"),
                event.flow,
                event.action.as_str(),
                event.source_system,
                event.target_system,
                event.message.as_deref().map(|message| format!(": {message}")).unwrap_or_default()
            );
        }
        for letter in &traced.dead_letters {
            println!("  failure {} ({}): {}", letter.id, letter.status.as_str(), letter.error);
        }
    }
    Ok(())
}
