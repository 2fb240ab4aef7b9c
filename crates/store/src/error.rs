//! Store errors.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store url {0:?}: expected sqlite:///path/to/file.db or postgres://user@host/database")]
    InvalidUrl(String),
    #[error("opening the store at {location}: {source}")]
    Open {
        location: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrating the store: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("store query failed while {doing}: {source}")]
    Query {
        doing: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("stored data is corrupt ({what}): {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: i64 },
    /// The job is not (or no longer) running under this worker's lease: it was completed,
    /// reclaimed after its lease expired, or claimed by another worker.
    #[error("job {id} is not leased to worker {worker:?}")]
    LeaseLost { id: i64, worker: String },
    /// A unique name is taken (an active access token with this name, say).
    #[error("{what} {name:?} already exists")]
    AlreadyExists { what: &'static str, name: String },
}

impl StoreError {
    /// Adapter for `map_err`: `query.await.map_err(StoreError::query("claiming jobs"))`.
    pub fn query(doing: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError::Query { doing, source }
    }
}
