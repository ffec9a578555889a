-- Deliveries: every request received on a hook, as received.
CREATE TABLE deliveries (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    app                TEXT    NOT NULL,
    source             TEXT    NOT NULL,
    event              TEXT,
    source_delivery_id TEXT,             -- the sender's own id (X-GitHub-Delivery, Idempotency-Key)
    dedupe_key         TEXT,             -- set only on accepted deliveries: a rejected one must not block a good retry
    received_at        INTEGER NOT NULL, -- unix milliseconds
    verified           INTEGER NOT NULL,
    status             TEXT    NOT NULL, -- received | planned | rejected
    error              TEXT,
    query              TEXT,             -- raw query string: the Cloud 66 modifiers
    headers            TEXT    NOT NULL, -- JSON object of the headers kept
    body               BLOB    NOT NULL,
    replay_of          INTEGER,
    planned_at         INTEGER
);
CREATE UNIQUE INDEX deliveries_dedupe ON deliveries (app, dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX deliveries_unplanned ON deliveries (id) WHERE status = 'received';
CREATE INDEX deliveries_app ON deliveries (app, id);

-- Deployments: one run of one service to one version.
CREATE TABLE deployments (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    app         TEXT    NOT NULL,
    service     TEXT    NOT NULL,
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
    state       TEXT    NOT NULL,
    reason      TEXT,
    source      TEXT    NOT NULL,
    event       TEXT    NOT NULL,
    git_repo    TEXT,
    git_branch  TEXT,
    git_ref     TEXT,
    git_commit  TEXT,
    event_time  INTEGER,                 -- unix milliseconds (commit time); orders events per service
    profile     TEXT,
    attempt     INTEGER NOT NULL DEFAULT 1,
    retry_of    INTEGER,
    exit_code   INTEGER,
    created_at  INTEGER NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER
);
CREATE INDEX deployments_service ON deployments (app, service, id);
CREATE INDEX deployments_active ON deployments (state) WHERE state IN ('queued', 'running');
CREATE INDEX deployments_delivery ON deployments (delivery_id);
CREATE INDEX deployments_app ON deployments (app, id);
