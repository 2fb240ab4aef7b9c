-- The state of a record in one system as of the last sync that touched it there (read from it
-- or written to it): the common base of two-way merges, which tell from it which side changed
-- a field since the last sync.
CREATE TABLE record_states (
    record_uid bigint      NOT NULL REFERENCES records (record_uid),
    system     text        NOT NULL,
    payload    jsonb       NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (record_uid, system)
);
