//! Leadership of the scheduler role: exactly one process leads at a time.
//!
//! [`PostgresLeader`] holds a session advisory lock (`pg_try_advisory_lock`) on a connection of
//! its own for as long as it leads. PostgreSQL releases the lock when that session ends, so a
//! leader that dies (process killed, connection dropped, backend terminated) frees the lead, and
//! the next contender's [`Leader::check`] takes it. A leader learns that it lost its connection
//! at its next `check`, which pings the connection: call `check` every few seconds and stop the
//! scheduler when it returns `false`.
//!
//! This module holds the only SQL outside the store crate: it is about which process leads, not
//! about erpsync's state, and needs a connection held outside any pool.
//!
//! [`EmbeddedLeader`] always leads: the embedded deployment has one process.

use crate::{QueueError, Result};
use async_trait::async_trait;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// One contender for a role.
#[async_trait]
pub trait Leader: Send + Sync + 'static {
    /// Takes the lead when nobody holds it, and checks that a lead already held is still held.
    /// `true` while this contender leads. An error means the lead could not be checked: treat
    /// it as not leading.
    async fn check(&self) -> Result<bool>;
    /// Gives up the lead, so another contender may take it at once.
    async fn resign(&self) -> Result<()>;
}

/// The embedded deployment's leader: there is one process, and it leads.
#[derive(Debug, Default)]
pub struct EmbeddedLeader;

#[async_trait]
impl Leader for EmbeddedLeader {
    async fn check(&self) -> Result<bool> {
        Ok(true)
    }

    async fn resign(&self) -> Result<()> {
        Ok(())
    }
}

/// Leadership by a PostgreSQL session advisory lock.
pub struct PostgresLeader {
    url: String,
    lock_id: i64,
    /// The session that holds the lock while leading. An async mutex: `check` awaits on the
    /// connection while holding it, and only one check runs at a time.
    session: tokio::sync::Mutex<Option<PgConnection>>,
}

impl PostgresLeader {
    /// The advisory lock id of the scheduler role: the ASCII of "erpsched".
    pub const SCHEDULER_LOCK_ID: i64 = 0x6572_7073_6368_6564;

    /// A contender for the role `lock_id` on the database at `url`. Connects at the first check.
    pub fn new(url: &str, lock_id: i64) -> Self {
        PostgresLeader { url: url.to_string(), lock_id, session: tokio::sync::Mutex::new(None) }
    }

    /// The backend process id of the leading session (tests terminate it to play a crash).
    pub async fn backend_pid(&self) -> Result<Option<i32>> {
        let mut session = self.session.lock().await;
        let Some(connection) = session.as_mut() else { return Ok(None) };
        let pid = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(connection)
            .await
            .map_err(|source| QueueError::Postgres { doing: "reading the leader's backend pid", source })?;
        Ok(Some(pid))
    }
}

#[async_trait]
impl Leader for PostgresLeader {
    async fn check(&self) -> Result<bool> {
        let mut session = self.session.lock().await;
        if let Some(connection) = session.as_mut() {
            // Holding the session means holding the lock: it is only kept while leading.
            match connection.ping().await {
                Ok(()) => return Ok(true),
                Err(error) => {
                    tracing::warn!(%error, lock_id = self.lock_id, "Lost the leader's connection: no longer leading.");
                    *session = None;
                    return Ok(false);
                }
            }
        }
        let mut connection = PgConnection::connect(&self.url).await.map_err(|source| QueueError::Postgres {
            doing: "connecting to PostgreSQL to contend for the lead",
            source,
        })?;
        let acquired: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(self.lock_id)
            .fetch_one(&mut connection)
            .await
            .map_err(|source| QueueError::Postgres { doing: "trying the leader's advisory lock", source })?;
        if !acquired {
            // Not kept: an idle session per follower would only hold a connection slot.
            let _ = connection.close().await;
            return Ok(false);
        }
        tracing::info!(lock_id = self.lock_id, "Took the lead.");
        *session = Some(connection);
        Ok(true)
    }

    async fn resign(&self) -> Result<()> {
        let mut session = self.session.lock().await;
        let Some(mut connection) = session.take() else { return Ok(()) };
        let unlocked = sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
            .bind(self.lock_id)
            .fetch_one(&mut connection)
            .await
            .map_err(|source| QueueError::Postgres { doing: "releasing the leader's advisory lock", source });
        // Closing the session releases the lock as well, whatever the unlock said.
        let _ = connection.close().await;
        unlocked.map(|_| ())
    }
}
