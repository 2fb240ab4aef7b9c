-- Alerts: one row per incident of a rule (what fired, when, when it cleared), and every message
-- sent about it. See docs/alerts.md.

-- An incident of rule `rule` about `scope` (a flow or a system). At most one is open (not
-- resolved) per rule and scope. `notify` is 0 for an incident that began within the cool-down
-- of the previous message of its rule and scope: it is recorded, but no message is sent.
CREATE TABLE alerts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    rule        TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    scope       TEXT    NOT NULL,
    summary     TEXT    NOT NULL,
    notify      INTEGER NOT NULL,
    opened_at   INTEGER NOT NULL,
    resolved_at INTEGER,
    resolution  TEXT
) STRICT;
CREATE UNIQUE INDEX alerts_open_by_rule ON alerts (rule, scope) WHERE resolved_at IS NULL;
CREATE INDEX alerts_by_rule ON alerts (rule, scope, id);

-- Each message about an incident on each channel, delivered or not.
CREATE TABLE alert_deliveries (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id INTEGER NOT NULL REFERENCES alerts (id),
    event    TEXT    NOT NULL,
    channel  TEXT    NOT NULL,
    ok       INTEGER NOT NULL,
    detail   TEXT    NOT NULL,
    at       INTEGER NOT NULL
) STRICT;
CREATE INDEX alert_deliveries_by_alert ON alert_deliveries (alert_id, id);
