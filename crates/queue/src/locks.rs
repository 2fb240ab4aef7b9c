//! Named read/write locks across processes: a pull of a flow holds its flow's lock exclusively,
//! a job about one record of the flow holds it shared. So a pull never runs beside another pull
//! or beside a record job of its flow, while record jobs run side by side.
//!
//! [`PostgresLocks`] takes PostgreSQL session advisory locks (`pg_try_advisory_lock` and its
//! `_shared` form, in the two-integer space under [`PostgresLocks::LOCK_CLASS`]) on a pooled
//! connection held for as long as the lock is. A process that dies loses its sessions, and
//! PostgreSQL frees their locks at once. Like [`crate::PostgresLeader`], this is SQL outside the
//! store crate because it is about coordination between processes, not erpsync's state.
//!
//! [`FileLocks`] are `flock` locks on files in a folder (the embedded store's data folder): an
//! `erpsync sync` and `erpsync serve` on one SQLite store are different processes on one host.
//! The system frees them when the process ends. [`LocalLocks`] are in-process read/write locks.

use crate::{QueueError, Result};
use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, PgPoolOptions, Postgres};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Beside other shared holders, never beside an exclusive one.
    Shared,
    /// Alone.
    Exclusive,
}

/// A lock held until [`LockGuard::release`] (or until dropped, which releases it too).
pub struct LockGuard {
    inner: Option<Held>,
}

enum Held {
    /// Released when dropped.
    Local {
        _guard: LocalHeld,
    },
    /// Unlocked when the file is closed, on drop.
    File {
        _file: std::fs::File,
    },
    Postgres {
        connection: PoolConnection<Postgres>,
        class: i32,
        id: i32,
        mode: LockMode,
    },
}

enum LocalHeld {
    Shared { _guard: tokio::sync::OwnedRwLockReadGuard<()> },
    Exclusive { _guard: tokio::sync::OwnedRwLockWriteGuard<()> },
}

impl LockGuard {
    /// Gives the lock back.
    pub async fn release(mut self) {
        if let Some(Held::Postgres { mut connection, class, id, mode }) = self.inner.take() {
            let sql = match mode {
                LockMode::Shared => "SELECT pg_advisory_unlock_shared($1, $2)",
                LockMode::Exclusive => "SELECT pg_advisory_unlock($1, $2)",
            };
            let unlocked = sqlx::query_scalar::<_, bool>(sql).bind(class).bind(id).fetch_one(&mut *connection).await;
            if !matches!(unlocked, Ok(true)) {
                // The session may still hold it: end the session, which frees every lock of it.
                tracing::warn!(class, id, "Could not release an advisory lock; closing its connection.");
                drop(connection.detach());
            }
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(Held::Postgres { connection, .. }) = self.inner.take() {
            // Not released by `release`: closing the session frees the lock without a query.
            drop(connection.detach());
        }
    }
}

/// Named read/write locks.
#[async_trait]
pub trait Locks: Send + Sync + 'static {
    /// Takes the lock `name` in `mode` when it is free for that mode; `None` when it is not.
    async fn try_lock(&self, name: &str, mode: LockMode) -> Result<Option<LockGuard>>;
}

/// In-process locks: one process (the embedded deployment).
#[derive(Default)]
pub struct LocalLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::RwLock<()>>>>,
}

#[async_trait]
impl Locks for LocalLocks {
    async fn try_lock(&self, name: &str, mode: LockMode) -> Result<Option<LockGuard>> {
        let lock = self
            .locks
            .lock()
            .expect("locks map poisoned: a panic while holding it")
            .entry(name.to_string())
            .or_default()
            .clone();
        let held = match mode {
            LockMode::Shared => lock.try_read_owned().ok().map(|_guard| LocalHeld::Shared { _guard }),
            LockMode::Exclusive => lock.try_write_owned().ok().map(|_guard| LocalHeld::Exclusive { _guard }),
        };
        Ok(held.map(|_guard| LockGuard { inner: Some(Held::Local { _guard }) }))
    }
}

/// `flock` locks on `<folder>/<name>.lock`, across the processes of one host.
pub struct FileLocks {
    folder: std::path::PathBuf,
}

impl FileLocks {
    /// Locks in `folder`, created when missing.
    pub fn new(folder: &std::path::Path) -> Self {
        FileLocks { folder: folder.to_path_buf() }
    }
}

#[async_trait]
impl Locks for FileLocks {
    async fn try_lock(&self, name: &str, mode: LockMode) -> Result<Option<LockGuard>> {
        let file_name: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        let path = self.folder.join(format!("{file_name}-{:08x}.lock", lock_id(name)));
        let io = |error: std::io::Error| QueueError::Lock { path: path.display().to_string(), source: error };
        std::fs::create_dir_all(&self.folder).map_err(io)?;
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io)?;
        let taken = match mode {
            LockMode::Shared => file.try_lock_shared(),
            LockMode::Exclusive => file.try_lock(),
        };
        match taken {
            Ok(()) => Ok(Some(LockGuard { inner: Some(Held::File { _file: file }) })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(error)) => Err(io(error)),
        }
    }
}

/// PostgreSQL advisory locks, across every process on one database.
pub struct PostgresLocks {
    pool: PgPool,
}

impl PostgresLocks {
    /// The first integer of erpsync's two-integer advisory locks: the ASCII of "erpl".
    pub const LOCK_CLASS: i32 = 0x6572_706c;

    /// Locks on the database at `url`, with up to `max_held` locks held at once by this process
    /// (each holds a connection). Connects lazily.
    pub fn new(url: &str, max_held: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_held.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy(url)
            .map_err(|source| QueueError::Postgres { doing: "setting up the advisory locks' connections", source })?;
        Ok(PostgresLocks { pool })
    }
}

/// The second integer of a lock: FNV-1a of the name folded to 32 bits, stable across versions.
fn lock_id(name: &str) -> i32 {
    let hash = crate::partition_of(name, u32::MAX);
    i32::from_ne_bytes(hash.to_ne_bytes())
}

#[async_trait]
impl Locks for PostgresLocks {
    async fn try_lock(&self, name: &str, mode: LockMode) -> Result<Option<LockGuard>> {
        let mut connection = self.pool.acquire().await.map_err(|source| QueueError::Postgres {
            doing: "connecting to PostgreSQL for an advisory lock",
            source,
        })?;
        let (class, id) = (Self::LOCK_CLASS, lock_id(name));
        let sql = match mode {
            LockMode::Shared => "SELECT pg_try_advisory_lock_shared($1, $2)",
            LockMode::Exclusive => "SELECT pg_try_advisory_lock($1, $2)",
        };
        let taken: bool = sqlx::query_scalar(sql)
            .bind(class)
            .bind(id)
            .fetch_one(&mut *connection)
            .await
            .map_err(|source| QueueError::Postgres { doing: "taking an advisory lock", source })?;
        Ok(taken.then(|| LockGuard { inner: Some(Held::Postgres { connection, class, id, mode }) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_locks_are_shared_or_exclusive() {
        let locks = LocalLocks::default();
        let first = locks.try_lock("flow:a", LockMode::Shared).await.unwrap().expect("free");
        let second = locks.try_lock("flow:a", LockMode::Shared).await.unwrap().expect("shared beside shared");
        assert!(locks.try_lock("flow:a", LockMode::Exclusive).await.unwrap().is_none());
        assert!(locks.try_lock("flow:b", LockMode::Exclusive).await.unwrap().is_some(), "other names are apart");
        first.release().await;
        second.release().await;
        let exclusive = locks.try_lock("flow:a", LockMode::Exclusive).await.unwrap().expect("free again");
        assert!(locks.try_lock("flow:a", LockMode::Shared).await.unwrap().is_none());
        drop(exclusive);
        assert!(locks.try_lock("flow:a", LockMode::Shared).await.unwrap().is_some(), "dropping releases");
    }

    #[tokio::test]
    async fn file_locks_exclude_across_open_files() {
        let folder = tempfile::tempdir().unwrap();
        // Two instances open the files on their own, as two processes do.
        let (one, other) = (FileLocks::new(folder.path()), FileLocks::new(folder.path()));
        let shared = one.try_lock("flow:a", LockMode::Shared).await.unwrap().expect("free");
        assert!(other.try_lock("flow:a", LockMode::Shared).await.unwrap().is_some(), "shared beside shared");
        assert!(other.try_lock("flow:a", LockMode::Exclusive).await.unwrap().is_none());
        assert!(other.try_lock("flow/a", LockMode::Exclusive).await.unwrap().is_some(), "names stay apart");
        drop(shared);
        let exclusive = other.try_lock("flow:a", LockMode::Exclusive).await.unwrap().expect("free again");
        assert!(one.try_lock("flow:a", LockMode::Shared).await.unwrap().is_none());
        exclusive.release().await;
        assert!(one.try_lock("flow:a", LockMode::Exclusive).await.unwrap().is_some());
    }

    #[test]
    fn lock_ids_are_stable() {
        assert_eq!(lock_id("flow:orders"), lock_id("flow:orders"));
        assert_ne!(lock_id("flow:orders"), lock_id("flow:products"));
    }
}
