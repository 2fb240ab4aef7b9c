-- When each scheduled trigger of a flow is next due. `spec` is the trigger as configured: when
-- the configuration changes it, the stored time is recomputed instead of trusted.
CREATE TABLE schedules (
    name        TEXT    PRIMARY KEY,
    spec        TEXT    NOT NULL,
    next_run_at INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
