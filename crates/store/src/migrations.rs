//! The embedded migrations of both backends, under the same version numbers.

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// `(version, description, sql)` of every SQLite migration.
const SQLITE: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/sqlite/0001_initial.sql")),
    (2, "schedules", include_str!("../migrations/sqlite/0002_schedules.sql")),
    (3, "record states", include_str!("../migrations/sqlite/0003_record_states.sql")),
    (4, "operations", include_str!("../migrations/sqlite/0004_operations.sql")),
    (5, "alerts", include_str!("../migrations/sqlite/0005_alerts.sql")),
    (6, "job keys", include_str!("../migrations/sqlite/0006_job_keys.sql")),
];

/// `(version, description, sql)` of every PostgreSQL migration: the same versions as SQLite.
const POSTGRES: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/postgres/0001_initial.sql")),
    (2, "schedules", include_str!("../migrations/postgres/0002_schedules.sql")),
    (3, "record states", include_str!("../migrations/postgres/0003_record_states.sql")),
    (4, "operations", include_str!("../migrations/postgres/0004_operations.sql")),
    (5, "alerts", include_str!("../migrations/postgres/0005_alerts.sql")),
    (6, "job keys", include_str!("../migrations/postgres/0006_job_keys.sql")),
];

/// Embedded with `include_str!` rather than `sqlx::migrate!`, which needs the `macros` feature;
/// the migrations table and checksums are sqlx's own, so the `sqlx` CLI reads them as usual.
pub(crate) fn sqlite() -> Migrator {
    migrator(SQLITE)
}

pub(crate) fn postgres() -> Migrator {
    migrator(POSTGRES)
}

/// Highest version shipped in this build (the same for both backends).
pub(crate) fn latest_version() -> i64 {
    SQLITE.iter().map(|(version, _, _)| *version).max().unwrap_or(0)
}

fn migrator(migrations: &[(i64, &'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        migrations
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(*version, (*description).into(), MigrationType::Simple, sql.into_sql_str(), false)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_have_the_same_versions() {
        let sqlite: Vec<i64> = SQLITE.iter().map(|(version, _, _)| *version).collect();
        let postgres: Vec<i64> = POSTGRES.iter().map(|(version, _, _)| *version).collect();
        assert_eq!(sqlite, postgres);
    }
}
