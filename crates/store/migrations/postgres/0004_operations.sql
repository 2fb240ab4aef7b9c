-- Operating erpsync: flows an operator paused, and the access tokens of the admin API.

-- A paused flow gets no scheduled or webhook-triggered runs until it is resumed (the row is
-- deleted then). Who paused it and why is kept here and in the audit log.
CREATE TABLE paused_flows (
    flow      text        PRIMARY KEY,
    paused_by text        NOT NULL,
    reason    text        NOT NULL,
    paused_at timestamptz NOT NULL
);

-- Access tokens. Only the SHA-256 digest of a secret is stored; the secret is shown once when
-- the token is created. A revoked token keeps its row (the audit log names it).
CREATE TABLE api_tokens (
    id          bigserial   PRIMARY KEY,
    name        text        NOT NULL,
    role        text        NOT NULL,
    secret_hash bytea       NOT NULL,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
-- Names identify tokens in the audit log: at most one active token per name.
CREATE UNIQUE INDEX api_tokens_active_name ON api_tokens (name) WHERE revoked_at IS NULL;
CREATE UNIQUE INDEX api_tokens_by_hash ON api_tokens (secret_hash);

-- Run lists filtered by status (the admin API) without scanning every run.
CREATE INDEX runs_by_status ON runs (status, started_at, id);
