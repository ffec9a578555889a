-- Issue 10: the outbox. Every deployment state change and every refused delivery is written to
-- the `events` journal inside the transaction that made the change — by the triggers below
-- (and, for deliveries refused on the request path, by the intake writer) — so an event
-- commits with the change that caused it, wherever in the store the change is made.
-- One background task (`notify`) fans each event out into `notifications` (one per target
-- that wants it) and marks it fanned out, in one transaction; another part of it sends them.

CREATE TABLE events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            INTEGER NOT NULL,            -- unix milliseconds
    type          TEXT    NOT NULL,            -- deployment.queued, delivery.rejected, … (EventType)
    app           TEXT    NOT NULL,
    service       TEXT,                        -- deployment events
    deployment_id INTEGER,                     -- deployment events
    delivery_id   INTEGER,
    reason        TEXT,                        -- the deployment's reason / the delivery's error then
    fanned_out    INTEGER NOT NULL DEFAULT 0   -- 1 once its notifications are in `notifications`
);
-- The fan-out's queue: only the events not fanned out yet (a handful at any time).
CREATE INDEX events_unfanned ON events (id) WHERE fanned_out = 0;
-- Pruning of fanned-out events by age.
CREATE INDEX events_at ON events (at);

-- Times are unix ms from julianday('now'), not unixepoch('subsec'): that needs SQLite 3.42,
-- and other tools that write to the database (bench/growth through Python's SQLite 3.40) would
-- store NULL and fail.

-- A deployment is inserted queued (the planner, a retry of an interrupted one) or skipped.
CREATE TRIGGER deployments_inserted_event AFTER INSERT ON deployments
BEGIN
    INSERT INTO events (at, type, app, service, deployment_id, delivery_id, reason)
    VALUES (CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER),
            CASE NEW.state WHEN 'running' THEN 'deployment.started' ELSE 'deployment.' || NEW.state END,
            NEW.app, NEW.service, NEW.id, NEW.delivery_id, NEW.reason);
END;

-- Every change of state: started, superseded, cancelled, and how it ended.
CREATE TRIGGER deployments_state_event AFTER UPDATE OF state ON deployments
WHEN OLD.state IS NOT NEW.state
BEGIN
    INSERT INTO events (at, type, app, service, deployment_id, delivery_id, reason)
    VALUES (CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER),
            CASE NEW.state WHEN 'running' THEN 'deployment.started' ELSE 'deployment.' || NEW.state END,
            NEW.app, NEW.service, NEW.id, NEW.delivery_id, NEW.reason);
END;

-- A delivery refused on the request path is stored `rejected` by the intake writer, which
-- journals `delivery.rejected` itself, in the same transaction (`store::outbox::journal_refused`):
-- any row trigger on deliveries, even one whose WHEN is false, makes SQLite stage every
-- multi-row INSERT in a temporary table first, which cost accepted deliveries (7.7 KB bodies)
-- about 15 % more per insert (BENCHMARKS.md).

-- A delivery the planner refuses for its values.
CREATE TRIGGER deliveries_rejected_later_event AFTER UPDATE OF status ON deliveries
WHEN NEW.status = 'rejected' AND OLD.status IS NOT 'rejected'
BEGIN
    INSERT INTO events (at, type, app, delivery_id, reason)
    VALUES (CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER), 'delivery.rejected',
            NEW.app, NEW.id, NEW.error);
END;

-- Outgoing notifications: one per (event, target), sent in id order per target.
CREATE TABLE notifications (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    uid           TEXT    NOT NULL,            -- stable id (Standard Webhooks `webhook-id`)
    event_id      INTEGER NOT NULL,
    target        TEXT    NOT NULL,            -- the receiver's queue: notify:<hash>, dockerhub:<app>
    kind          TEXT    NOT NULL,            -- how it is sent: webhook, slack, dockerhub
    event         TEXT    NOT NULL,            -- the event type
    app           TEXT    NOT NULL,
    service       TEXT,
    deployment_id INTEGER,
    delivery_id   INTEGER,
    receiver      TEXT    NOT NULL,            -- scheme://host[:port] of the URL, for people
    url           TEXT,                        -- only a URL that is no secret and not in config
    body          TEXT    NOT NULL,            -- the rendered JSON body
    state         TEXT    NOT NULL,            -- pending | sent | dead (NotificationState)
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       INTEGER NOT NULL,            -- unix ms: not tried before
    created_at    INTEGER NOT NULL,
    retried_at    INTEGER,                     -- a manual retry restarts the retry window here
    sent_at       INTEGER,
    last_error    TEXT,
    last_status   INTEGER                      -- the receiver's last HTTP status
);
CREATE UNIQUE INDEX notifications_uid ON notifications (uid);
-- Each target's oldest pending notification (the head of its queue).
CREATE INDEX notifications_queue ON notifications (state, target, id);
-- Lists: by state, by app, newest first.
CREATE INDEX notifications_state ON notifications (state, id);
CREATE INDEX notifications_app ON notifications (app, id);
