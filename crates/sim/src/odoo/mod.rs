//! Odoo simulator: an HTTP server on 127.0.0.1 speaking Odoo's external APIs (JSON-RPC at
//! `/jsonrpc`, XML-RPC at `/xmlrpc/2/*`, JSON-2 at `/json/2/<model>/<method>`) over an
//! in-memory ORM with the models a shop sync touches (products and variants, pricelists,
//! stock, partners, sales orders, transfers, invoices), plus a control API under `/_sim/` for
//! seeding and fault injection.
//!
//! - `schema`: the models and their typed fields.
//! - `store`: the generic record store (search, read, create, write, unlink, x2many commands).
//! - `domain`: the domain language and `order`.
//! - `business`: computed fields, defaults, constraints, workflow methods, the invoice PDF.
//! - `server`: the HTTP routes, method binding and error shapes.
//! - `xmlrpc`: the XML-RPC reader and writer for `/xmlrpc/2/*`.
//! - `control`: `/_sim/` routes, faults and counters.
//! - `seed`: the deterministic seed data.
//! - `webhook`: automation-rule webhooks sent after commit, with delivery faults.

pub mod business;
pub mod control;
pub mod domain;
pub mod error;
pub mod schema;
pub mod seed;
pub mod server;
pub mod store;
pub mod webhook;
pub mod xmlrpc;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use control::{Counters, FaultKind, FaultRule, Faults, PartialFailure};
pub use error::{ErrorKind, OdooError};
pub use seed::{SeedConfig, SeedSummary};
pub use store::OdooState;

/// How to start a simulator.
#[derive(Debug, Clone)]
pub struct OdooSimConfig {
    pub db: String,
    pub login: String,
    pub password: String,
    /// Accepted as the JSON-2 bearer key and, as in Odoo, in place of the password.
    pub api_key: String,
    /// Seed data to load at start; `None` leaves only the base data of a fresh database.
    pub seed: Option<SeedConfig>,
    /// Reported by `common.version` and `/web/version`.
    pub server_version: String,
    /// Where to listen; 127.0.0.1 on a free port by default.
    pub bind: SocketAddr,
}

impl Default for OdooSimConfig {
    fn default() -> Self {
        OdooSimConfig {
            db: "odoo".into(),
            login: "admin".into(),
            password: "admin".into(),
            api_key: "0123456789abcdef0123456789abcdef01234567".into(),
            seed: None,
            server_version: "17.0".into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OdooSimError {
    #[error("binding the odoo simulator to {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("loading the odoo simulator's data")]
    Data {
        #[source]
        source: OdooError,
    },
}

/// What the HTTP handlers share.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<OdooState>,
    shutdown: watch::Receiver<bool>,
    version: String,
    webhook_sender: tokio::sync::mpsc::Sender<webhook::Delivery>,
}

impl Shared {
    /// Locks the state. A panic while holding the lock cannot leave it half-written in a way
    /// that matters to a test double, so a poisoned lock is recovered.
    pub fn lock(&self) -> MutexGuard<'_, OdooState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Empties every table and installs the base data of a fresh database.
pub fn reset(state: &mut OdooState) -> Result<(), OdooError> {
    let fresh = OdooState::new(&state.db, &state.login, &state.password, &state.api_key);
    let faults = std::mem::take(&mut state.faults);
    let clock = state.clock.clone();
    let sessions = std::mem::take(&mut state.sessions);
    let webhooks = std::mem::take(&mut state.webhooks);
    *state = fresh;
    state.webhooks = webhooks;
    state.faults = faults;
    state.clock = clock;
    state.sessions = sessions;
    let login = state.login.clone();
    business::install_base_data(state, &login)
}

pub struct OdooSim;

impl OdooSim {
    /// Builds the state (base data, then the seed if any) and serves it.
    pub async fn start(config: OdooSimConfig) -> Result<RunningOdooSim, OdooSimError> {
        let mut state = OdooState::new(&config.db, &config.login, &config.password, &config.api_key);
        reset(&mut state).map_err(|source| OdooSimError::Data { source })?;
        if let Some(seed_config) = &config.seed {
            seed_config.validate().map_err(|message| OdooSimError::Data { source: OdooError::value(message) })?;
            seed::seed(&mut state, seed_config).map_err(|source| OdooSimError::Data { source })?;
        }
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|source| OdooSimError::Bind { address: config.bind, source })?;
        let address = listener.local_addr().map_err(|source| OdooSimError::Bind { address: config.bind, source })?;
        let (shutdown_sender, shutdown_receiver) = watch::channel(false);
        let (webhook_sender, webhook_receiver) = tokio::sync::mpsc::channel(webhook::QUEUE_CAPACITY);
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            shutdown: shutdown_receiver.clone(),
            version: config.server_version,
            webhook_sender,
        });
        let webhook_task =
            tokio::spawn(webhook::run_worker(shared.clone(), webhook_receiver, shutdown_receiver.clone()));
        let app = server::router(shared.clone());
        let mut stop = shutdown_receiver;
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                })
                .await;
            if let Err(error) = served {
                tracing::warn!(error = %error, "Odoo simulator stopped with an error.");
            }
        });
        tracing::info!(address = %address, "Odoo simulator listening.");
        Ok(RunningOdooSim { address, shared, shutdown: shutdown_sender, tasks: vec![task, webhook_task] })
    }
}

/// A running simulator; dropping it stops the server.
pub struct RunningOdooSim {
    address: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningOdooSim {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("RunningOdooSim").field("address", &self.address).finish()
    }
}

impl RunningOdooSim {
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Runs `f` on the state under the lock (do not await inside).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut OdooState) -> R) -> R {
        f(&mut self.shared.lock())
    }

    pub fn counters(&self) -> Counters {
        self.shared.lock().counters.clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().faults = faults;
    }

    /// Stops accepting connections, ends hanging requests and waits for the server task.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for RunningOdooSim {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
