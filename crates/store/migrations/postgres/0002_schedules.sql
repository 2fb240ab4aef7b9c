-- When each scheduled trigger of a flow is next due. `spec` is the trigger as configured: when
-- the configuration changes it, the stored time is recomputed instead of trusted.
CREATE TABLE schedules (
    name        text        PRIMARY KEY,
    spec        text        NOT NULL,
    next_run_at timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
