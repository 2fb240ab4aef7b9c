-- Alerts: one row per incident of a rule (what fired, when, when it cleared), and every message
-- sent about it. See docs/alerts.md.

-- An incident of rule `rule` about `scope` (a flow or a system). At most one is open (not
-- resolved) per rule and scope. `notify` is false for an incident that began within the
-- cool-down of the previous message of its rule and scope: it is recorded, but no message is sent.
CREATE TABLE alerts (
    id          bigserial   PRIMARY KEY,
    rule        text        NOT NULL,
    kind        text        NOT NULL,
    scope       text        NOT NULL,
    summary     text        NOT NULL,
    notify      boolean     NOT NULL,
    opened_at   timestamptz NOT NULL,
    resolved_at timestamptz,
    resolution  text
);
CREATE UNIQUE INDEX alerts_open_by_rule ON alerts (rule, scope) WHERE resolved_at IS NULL;
CREATE INDEX alerts_by_rule ON alerts (rule, scope, id);

-- Each message about an incident on each channel, delivered or not.
CREATE TABLE alert_deliveries (
    id       bigserial   PRIMARY KEY,
    alert_id bigint      NOT NULL REFERENCES alerts (id),
    event    text        NOT NULL,
    channel  text        NOT NULL,
    ok       boolean     NOT NULL,
    detail   text        NOT NULL,
    at       timestamptz NOT NULL
);
CREATE INDEX alert_deliveries_by_alert ON alert_deliveries (alert_id, id);
