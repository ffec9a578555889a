-- Issue 12: a burst collapses as it is planned. When one planning batch queues several
-- deployments of a service, the planner inserts the older ones `superseded` by the newest one
-- at once (`store::planning`), instead of inserting them queued and updating each again.
-- Outside the store nothing changes: such a deployment was, as far as anybody watching is
-- concerned, queued and then superseded, so its insert journals both events, in that order —
-- `deployment.queued` (no reason: the planner collapses only deployments planned without
-- one) and `deployment.superseded` with its reason — as the insert and the UPDATE did.

DROP TRIGGER deployments_inserted_event;

CREATE TRIGGER deployments_inserted_event AFTER INSERT ON deployments
BEGIN
    INSERT INTO events (at, type, app, service, deployment_id, delivery_id, reason)
    SELECT CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER), 'deployment.queued',
           NEW.app, NEW.service, NEW.id, NEW.delivery_id, NULL
    WHERE NEW.state = 'superseded';
    INSERT INTO events (at, type, app, service, deployment_id, delivery_id, reason)
    VALUES (CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER),
            CASE NEW.state WHEN 'running' THEN 'deployment.started' ELSE 'deployment.' || NEW.state END,
            NEW.app, NEW.service, NEW.id, NEW.delivery_id, NEW.reason);
END;
