-- Issue 15: every Alertmanager alert received, one row per alert and matching rule (one with
-- no rule when none matches), with what ferry decided: `acted` (deployment_id set), or
-- skipped as `duplicate`, `cooldown`, `capped`, `unmatched`, `no_action`, with the reason.
-- Written by the planner in its transaction; the rows go with their delivery. The same
-- migration, with the same meaning, is migrations/postgres/0016_alerts.sql.
CREATE TABLE alerts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id   INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    app           TEXT    NOT NULL,
    rule          TEXT,
    fingerprint   TEXT    NOT NULL,
    alertname     TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    starts_at     TEXT    NOT NULL,
    ends_at       TEXT,
    labels        TEXT    NOT NULL,
    annotations   TEXT    NOT NULL,
    action        TEXT,
    outcome       TEXT    NOT NULL,
    reason        TEXT,
    deployment_id INTEGER,
    created_at    INTEGER NOT NULL
);
-- A rule's actions on one alert: duplicate (same startsAt and status) and cooldown.
CREATE INDEX alerts_rule_fingerprint ON alerts (app, rule, fingerprint, created_at) WHERE outcome = 'acted';
-- A rule's actions in the last hour (the cap).
CREATE INDEX alerts_rule_acted ON alerts (app, rule, created_at) WHERE outcome = 'acted';
CREATE INDEX alerts_delivery ON alerts (delivery_id);
CREATE INDEX alerts_deployment ON alerts (deployment_id) WHERE deployment_id IS NOT NULL;
CREATE INDEX alerts_app ON alerts (app, id);
