//! The `erpsync` command: validate, migrate, sync, status, failures, trace, serve, demo.

mod demo;
mod mapping;
mod output;
mod reference;
mod sim;
mod token;
mod webhooks;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use erpsync_engine::config::Config;
use erpsync_engine::shutdown::{self, Shutdown};
use erpsync_engine::{Engine, Role, RunOptions};
use erpsync_store::{DeadLetterFilter, DeadLetterStatus, RunStatus, StoreUrl};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Exit code when the command worked but some records failed (they are dead letters).
pub(crate) const EXIT_RECORDS_FAILED: u8 = 3;

#[derive(Parser)]
#[command(name = "erpsync", version, about = "Keeps an ERP and online shops in step")]
struct Cli {
    /// Configuration file.
    #[arg(long, short, global = true, env = "ERPSYNC_CONFIG", default_value = "erpsync.toml")]
    config: PathBuf,
    /// Folder for the embedded store (used when the configuration names no store URL).
    #[arg(long, global = true, env = "ERPSYNC_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Log format on standard error.
    #[arg(long, global = true, env = "ERPSYNC_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check the configuration and report every problem with file, line and field.
    Validate,
    /// Create or upgrade the store's schema.
    Migrate,
    /// Run one flow now.
    Sync {
        flow: String,
        /// Read everything from the start, not from the checkpoint (unchanged records are
        /// still skipped by hash).
        #[arg(long)]
        full: bool,
        /// Read and compare, but write nothing.
        #[arg(long)]
        dry_run: bool,
        /// No progress bar.
        #[arg(long)]
        no_progress: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Flows, their last run, lag and open failures.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Records that failed and wait for a person: list, show, retry, discard.
    Failures {
        #[command(subcommand)]
        action: FailuresCommand,
    },
    /// Every id of one record in every system and every sync event about it.
    Trace {
        /// Any id or natural key: an order number, a SKU, an e-mail, a system id.
        key: String,
        #[arg(long)]
        json: bool,
    },
    /// Run flows on their schedules until stopped (Ctrl-C or SIGTERM finish the current page
    /// and hand the unfinished jobs back).
    Serve {
        /// What this process does: `receiver` (the HTTP server: webhooks into the inbox, admin
        /// API, dashboard), `scheduler` (one leads: schedules, inbox to jobs, retries, alerts),
        /// `worker` (runs jobs), or `all` of them.
        #[arg(long, default_value = "all", value_parser = ["all", "worker", "scheduler", "receiver"])]
        role: String,
        /// Also serve `/healthz`, `/readyz` and `/metrics` (plain HTTP) on this address, for
        /// workers and schedulers, which serve no HTTP otherwise: `127.0.0.1:9464`.
        #[arg(long, env = "ERPSYNC_METRICS_LISTEN", value_name = "ADDR")]
        metrics_listen: Option<std::net::SocketAddr>,
    },
    /// Try and test flows' mappings without touching any system.
    Mapping {
        #[command(subcommand)]
        action: MappingCommand,
    },
    /// Run a simulator of an external API on 127.0.0.1 until stopped (for trials and demos).
    Sim {
        #[command(subcommand)]
        which: SimCommand,
    },
    /// The shops' webhook subscriptions for this server (`[server] public_url`).
    Webhooks {
        #[command(subcommand)]
        action: WebhooksCommand,
    },
    /// Access tokens of the admin API (`serve`): create, list, revoke.
    Token {
        #[command(subcommand)]
        action: token::TokenCommand,
    },
    /// List the connectors this build knows.
    Connectors,
    /// About the configuration file itself.
    Config {
        #[command(subcommand)]
        action: ConfigCommand,
    },
    /// Odoo and Shopify simulators with seed data, synced both ways by `serve`, with a running
    /// printout; stops on Ctrl-C or after `--duration`.
    Demo {
        /// Where the configuration and the store go.
        #[arg(long, default_value = "erpsync-demo")]
        dir: PathBuf,
        /// Product templates in the ERP (each with up to 3 variants).
        #[arg(long, default_value_t = 1000)]
        products: usize,
        /// Stop after this long (`60s`, `5m`) and print a summary.
        #[arg(long, value_parser = parse_duration_arg)]
        duration: Option<std::time::Duration>,
        /// Orders placed in the shop per minute.
        #[arg(long, default_value_t = 60)]
        orders_per_minute: u32,
    },
}

#[derive(Subcommand)]
enum SimCommand {
    /// Shopify Admin GraphQL: cost throttling, products, inventory, orders, webhooks, bulk
    /// operations; control API under /_sim.
    Shopify {
        /// 0 picks a free port.
        #[arg(long, default_value_t = 0)]
        port: u16,
        #[arg(long, default_value_t = 100)]
        products: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// WooCommerce REST API v3: OAuth 1.0a over plain HTTP, batches, webhooks; control API
    /// under /_sim.
    Woocommerce {
        #[arg(long, default_value_t = 0)]
        port: u16,
        #[arg(long, default_value_t = 100)]
        products: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Odoo JSON-RPC, JSON-2 and XML-RPC over an in-memory database; control API under /_sim.
    Odoo {
        #[arg(long, default_value_t = 0)]
        port: u16,
        #[arg(long, default_value_t = 100)]
        products: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Subcommand)]
pub(crate) enum WebhooksCommand {
    /// Subscribe this server to the topics its webhook-driven flows need (existing ones are kept).
    Register {
        #[arg(long)]
        system: Option<String>,
    },
    /// The subscriptions of each system, and warnings for missing ones (exit 1 when any is missing).
    List {
        #[arg(long)]
        system: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Remove subscriptions of one system by id, or all of this server's.
    Remove {
        system: String,
        ids: Vec<String>,
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum MappingCommand {
    /// Run the test cases of a file (`[[tests]]` with flow, input and expected output, error
    /// or skip) against the flows' mappings.
    Test { file: PathBuf },
    /// Print what a flow's mapping makes of one record (a JSON file, or `-` for standard input).
    Eval { flow: String, record: PathBuf },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the reference of every configuration key (Markdown), made from the code:
    /// docs/configuration-reference.md is this output.
    Reference,
}

#[derive(Subcommand)]
enum FailuresCommand {
    List {
        #[arg(long)]
        flow: Option<String>,
        /// open, retrying, resolved, discarded, or all.
        #[arg(long, default_value = "open")]
        status: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Process failed records again through their flow.
    Retry {
        ids: Vec<i64>,
        /// Retry every open failure (of `--flow` if given).
        #[arg(long)]
        all: bool,
        #[arg(long)]
        flow: Option<String>,
    },
    /// Close failed records without syncing them.
    Discard {
        ids: Vec<i64>,
        #[arg(long)]
        reason: String,
    },
    /// Jobs the queue gave up on: runs that failed as a whole on every delivery (`[queue]
    /// max_deliveries`), oldest first, with their last error.
    Jobs {
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}

/// mimalloc instead of the system allocator: erpsync builds and drops many small JSON values
/// per record, and glibc's malloc was a third of the mapping benchmark's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    // One TLS provider for the whole process (reqwest is built without one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(cli: &Cli) {
    let default = if matches!(cli.command, Command::Serve { .. }) { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ERPSYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if cli.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Connectors => {
            output::print_connectors();
            return Ok(ExitCode::SUCCESS);
        }
        Command::Demo { dir, products, duration, orders_per_minute } => {
            return demo::run(demo::DemoOptions {
                dir,
                products: *products,
                duration: *duration,
                orders_per_minute: *orders_per_minute,
            })
            .await;
        }
        Command::Sim { which } => return sim::run(which).await,
        Command::Config { action: ConfigCommand::Reference } => {
            print!("{}", reference::markdown());
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let config = load_config(&cli.config)?;
    if let Command::Mapping { action } = &cli.command {
        return mapping::run(&config, action);
    }
    if let Command::Webhooks { action } = &cli.command {
        return webhooks::run(&config, action).await;
    }
    if matches!(cli.command, Command::Validate) {
        for warning in webhooks::offline_warnings(&config) {
            eprintln!("warning: {warning}");
        }
        println!(
            "{}: configuration is valid ({} systems, {} flows)",
            cli.config.display(),
            config.systems.len(),
            config.flows.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let store_url = store_url(&config, &cli.data_dir)?;
    let store = erpsync_store::open_with_pool(&store_url, config.store.pool).await.context("opening the store")?;
    let engine = match cli.command {
        // Only `serve` takes jobs from the queue (NATS with `[queue] url`).
        Command::Serve { .. } => {
            let queue = config.queue.url.clone().unwrap_or_default();
            Engine::connect(Arc::new(config), store)
                .await
                .with_context(|| format!("connecting to the job queue {queue} ([queue] url in the configuration)"))?
        }
        _ => Engine::new(Arc::new(config), store),
    };
    let mut engine = engine;
    if let StoreUrl::Sqlite(path) = &store_url {
        engine.use_lock_folder(&path.parent().unwrap_or(Path::new(".")).join("locks"));
    }
    let engine = Arc::new(engine);
    let actor = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()));

    match cli.command {
        Command::Validate
        | Command::Connectors
        | Command::Demo { .. }
        | Command::Mapping { .. }
        | Command::Webhooks { .. }
        | Command::Config { .. }
        | Command::Sim { .. } => {
            unreachable!("handled above")
        }
        Command::Migrate => {
            engine.store().migrate().await?;
            println!("store schema is at version {}", engine.store().schema_version().await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync { flow, full, dry_run, no_progress, json } => {
            let (trigger, listener) = shutdown::channel();
            spawn_signal_handler(trigger);
            let options = RunOptions { full, dry_run, trigger: "manual".into() };
            sync_flow(&engine, &flow, &options, &listener, !no_progress && !json, json).await
        }
        Command::Status { json } => {
            let statuses = engine.status().await?;
            output::print_status(&statuses, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Trace { key, json } => {
            let report = engine.trace(&key).await?;
            output::print_trace(&report, json)?;
            Ok(if report.records.is_empty() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        Command::Failures { action } => failures(&engine, action, &actor).await,
        Command::Token { action } => token::run(&engine, action, &actor).await,
        Command::Serve { role, metrics_listen } => {
            let role = Role::parse(&role).expect("clap checks the role");
            let (trigger, listener) = shutdown::channel();
            let ops = match metrics_listen {
                Some(address) => {
                    let socket = tokio::net::TcpListener::bind(address)
                        .await
                        .with_context(|| format!("listening on {address} (--metrics-listen)"))?;
                    Some(tokio::spawn(erpsync_server::serve_ops(socket, engine.clone(), listener.clone())))
                }
                None => None,
            };
            // The HTTP server (webhooks into the inbox, health) runs beside the scheduler and
            // the worker, and stops with them.
            let http = if role.runs_http() {
                let listen = engine.config().server.listen;
                let socket = erpsync_server::listen(&engine)
                    .await
                    .with_context(|| format!("listening on {listen} ([server] listen in the configuration)"))?;
                Some(tokio::spawn(erpsync_server::serve(socket, engine.clone(), listener.clone())))
            } else {
                None
            };
            spawn_signal_handler(trigger);
            let served = engine.serve_role(role, listener).await;
            if let Some(http) = http {
                match http.await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        anyhow::bail!("the HTTP server on {} failed: {error}", engine.config().server.listen)
                    }
                    Err(error) => anyhow::bail!("the HTTP server task failed: {error}"),
                }
            }
            if let Some(ops) = ops {
                match ops.await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => anyhow::bail!("the health and metrics server failed: {error}"),
                    Err(error) => anyhow::bail!("the health and metrics server task failed: {error}"),
                }
            }
            served?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn parse_duration_arg(text: &str) -> Result<std::time::Duration, String> {
    erpsync_engine::config::parse_duration(text)
}

pub(crate) fn load_config(path: &Path) -> Result<Config> {
    match Config::load(path) {
        Ok(config) => Ok(config),
        Err(errors) => bail!("{}", errors.to_string().trim_end()),
    }
}

pub(crate) fn store_url(config: &Config, data_dir: &Path) -> Result<StoreUrl> {
    match &config.store.url {
        Some(url) => Ok(StoreUrl::parse(url)?),
        None => Ok(StoreUrl::Sqlite(data_dir.join("erpsync.db"))),
    }
}

pub(crate) async fn sync_flow(
    engine: &Engine,
    flow: &str,
    options: &RunOptions,
    shutdown: &Shutdown,
    show_progress: bool,
    json: bool,
) -> Result<ExitCode> {
    let bar = output::progress_bar(flow, show_progress);
    let report = |counts: &erpsync_store::RunCounts| output::update_progress(&bar, counts);
    let summary = engine.sync(flow, options, shutdown, &report).await?;
    bar.finish_and_clear();
    output::print_summary(&summary, json)?;
    Ok(match summary.status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        RunStatus::PartiallyFailed => ExitCode::from(EXIT_RECORDS_FAILED),
        RunStatus::Failed | RunStatus::Interrupted | RunStatus::Running => ExitCode::FAILURE,
    })
}

/// First Ctrl-C or SIGTERM: finish the current page and stop. Second: exit at once.
fn spawn_signal_handler(trigger: shutdown::ShutdownTrigger) {
    tokio::spawn(async move {
        wait_for_signal().await;
        eprintln!("stopping after the current page (press Ctrl-C again to exit at once)");
        trigger.trigger();
        wait_for_signal().await;
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = match signal(SignalKind::terminate()) {
            Ok(terminate) => terminate,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn failures(engine: &Engine, action: FailuresCommand, actor: &str) -> Result<ExitCode> {
    let store = engine.store();
    match action {
        FailuresCommand::List { flow, status, limit, json } => {
            let status = match status.as_str() {
                "all" => None,
                other => Some(DeadLetterStatus::parse(other).with_context(|| {
                    format!("unknown status {other:?}: use open, retrying, resolved, discarded or all")
                })?),
            };
            let letters = store.list_dead_letters(&DeadLetterFilter { flow, status, limit }).await?;
            output::print_failures(&letters, json)?;
            if !json {
                let dead = engine.queue().dead(1000).await?;
                if !dead.is_empty() {
                    println!(
                        "\n{} job(s) dead in the queue (whole runs, not records): erpsync failures jobs",
                        dead.len()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        FailuresCommand::Jobs { limit, json } => {
            let dead = engine.queue().dead(limit).await?;
            output::print_dead_jobs(&dead, json)?;
            Ok(ExitCode::SUCCESS)
        }
        FailuresCommand::Show { id, json } => {
            let letter = store.dead_letter(id).await?.with_context(|| format!("failure {id} not found"))?;
            output::print_failure(&letter, json)?;
            Ok(ExitCode::SUCCESS)
        }
        FailuresCommand::Retry { ids, all, flow } => {
            let ids = if all {
                store
                    .list_dead_letters(&DeadLetterFilter { flow, status: Some(DeadLetterStatus::Open), limit: 100_000 })
                    .await?
                    .into_iter()
                    .map(|letter| letter.id)
                    .collect()
            } else if ids.is_empty() {
                bail!("name the failures to retry (ids from `erpsync failures list`) or pass --all");
            } else {
                ids
            };
            let mut still_failing = 0;
            for id in ids {
                match engine.retry_dead_letter(id, actor).await {
                    Ok(summary) if summary.counts.failed == 0 && summary.error.is_none() => {
                        println!("failure {id}: resolved")
                    }
                    Ok(summary) => {
                        still_failing += 1;
                        let reason = match store.dead_letter(id).await? {
                            Some(letter) => letter.error,
                            None => summary.error.unwrap_or_default(),
                        };
                        println!("failure {id}: still failing: {reason}");
                    }
                    Err(error) => {
                        still_failing += 1;
                        println!("failure {id}: {error}");
                    }
                }
            }
            Ok(if still_failing > 0 { ExitCode::from(EXIT_RECORDS_FAILED) } else { ExitCode::SUCCESS })
        }
        FailuresCommand::Discard { ids, reason } => {
            if ids.is_empty() {
                bail!("name the failures to discard (ids from `erpsync failures list`)");
            }
            for id in ids {
                engine.discard_dead_letter(id, actor, &reason).await?;
                println!("failure {id}: discarded");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
