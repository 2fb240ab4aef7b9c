-- erpsync store, SQLite, version 1: the initial schema.
--
-- Timestamps are INTEGER microseconds since the Unix epoch (UTC), so they sort and compare as
-- numbers. JSON is TEXT, hashes are BLOB. Tables are STRICT so a wrongly typed bind fails loudly.
-- The PostgreSQL migration of the same version number creates the same tables.

-- The identity hub: one row per business record, whatever systems it lives in.
CREATE TABLE records (
    record_uid  INTEGER PRIMARY KEY,
    entity      TEXT    NOT NULL,
    natural_key TEXT,
    created_at  INTEGER NOT NULL
) STRICT;
-- Serves matching by (entity, natural key) and `find_records` by natural key alone.
CREATE INDEX records_by_natural_key ON records (natural_key, entity) WHERE natural_key IS NOT NULL;

-- The identity map: which record is which id in which system. A record has at most one id per
-- system, and an id of one entity in one system belongs to at most one record.
CREATE TABLE links (
    record_uid  INTEGER NOT NULL REFERENCES records (record_uid),
    system      TEXT    NOT NULL,
    entity      TEXT    NOT NULL,
    external_id TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (record_uid, system)
) STRICT, WITHOUT ROWID;
-- Unique per (entity, system, external id); the column order also serves `find_records` by an
-- external id of any system, and the index covers the record_uid (the primary key).
CREATE UNIQUE INDEX links_by_external_id ON links (external_id, system, entity);

-- Snapshot of the last payload written to a target for a record, and where it was read from.
CREATE TABLE snapshots (
    record_uid    INTEGER NOT NULL REFERENCES records (record_uid),
    target_system TEXT    NOT NULL,
    target_hash   BLOB,
    last_origin   TEXT,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (record_uid, target_system)
) STRICT, WITHOUT ROWID;

CREATE TABLE checkpoints (
    flow          TEXT    NOT NULL,
    source_system TEXT    NOT NULL,
    watermark     INTEGER,
    cursor        TEXT,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (flow, source_system)
) STRICT, WITHOUT ROWID;

CREATE TABLE runs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    flow            TEXT    NOT NULL,
    triggered_by    TEXT    NOT NULL,
    full_sync       INTEGER NOT NULL,
    dry_run         INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    count_read      INTEGER NOT NULL DEFAULT 0,
    count_created   INTEGER NOT NULL DEFAULT 0,
    count_updated   INTEGER NOT NULL DEFAULT 0,
    count_unchanged INTEGER NOT NULL DEFAULT 0,
    count_skipped   INTEGER NOT NULL DEFAULT 0,
    count_failed    INTEGER NOT NULL DEFAULT 0,
    count_deleted   INTEGER NOT NULL DEFAULT 0,
    error           TEXT,
    started_at      INTEGER NOT NULL,
    finished_at     INTEGER
) STRICT;
CREATE INDEX runs_by_started_at ON runs (started_at, id);
CREATE INDEX runs_by_flow ON runs (flow, started_at, id);
CREATE INDEX runs_running ON runs (started_at) WHERE status = 'running';

CREATE TABLE record_log (
    id            INTEGER PRIMARY KEY,
    run_id        INTEGER,
    flow          TEXT    NOT NULL,
    record_uid    INTEGER,
    source_system TEXT    NOT NULL,
    source_id     TEXT    NOT NULL,
    target_system TEXT    NOT NULL,
    target_id     TEXT,
    action        TEXT    NOT NULL,
    message       TEXT,
    origin        TEXT,
    at            INTEGER NOT NULL
) STRICT;
CREATE INDEX record_log_by_record ON record_log (record_uid, id);

-- Records a person must look at. `history` is a JSON array of {at, event, detail}.
CREATE TABLE dead_letters (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    flow          TEXT    NOT NULL,
    entity        TEXT    NOT NULL,
    source_system TEXT    NOT NULL,
    source_id     TEXT    NOT NULL,
    target_system TEXT    NOT NULL,
    record_uid    INTEGER,
    natural_key   TEXT,
    origin        TEXT,
    status        TEXT    NOT NULL,
    error_kind    TEXT    NOT NULL,
    error         TEXT    NOT NULL,
    payload       TEXT    NOT NULL,
    history       TEXT    NOT NULL DEFAULT '[]',
    attempts      INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;
-- At most one unresolved dead letter per record of a flow towards a target.
CREATE UNIQUE INDEX dead_letters_unresolved ON dead_letters (flow, source_id, target_system)
    WHERE status IN ('open', 'retrying');
CREATE INDEX dead_letters_by_source ON dead_letters (flow, source_id, status);
CREATE INDEX dead_letters_by_status ON dead_letters (status, flow, updated_at);

CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT    NOT NULL,
    dedupe_key   TEXT,
    payload      TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    run_at       INTEGER NOT NULL,
    lease_owner  TEXT,
    lease_until  INTEGER,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) STRICT;
-- A dedupe key is held by at most one pending or running job.
CREATE UNIQUE INDEX jobs_dedupe ON jobs (dedupe_key) WHERE state IN ('pending', 'running');
CREATE INDEX jobs_due ON jobs (state, run_at, id);
CREATE INDEX jobs_leases ON jobs (lease_until) WHERE state = 'running';

CREATE TABLE inbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    system       TEXT    NOT NULL,
    delivery_id  TEXT    NOT NULL,
    topic        TEXT    NOT NULL,
    headers      TEXT    NOT NULL,
    body         BLOB    NOT NULL,
    received_at  INTEGER NOT NULL,
    processed_at INTEGER,
    error        TEXT,
    UNIQUE (system, delivery_id)
) STRICT;
CREATE INDEX inbox_pending ON inbox (received_at, id) WHERE processed_at IS NULL;

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    actor   TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    target  TEXT    NOT NULL,
    details TEXT    NOT NULL,
    at      INTEGER NOT NULL
) STRICT;
CREATE INDEX audit_log_by_at ON audit_log (at, id);
