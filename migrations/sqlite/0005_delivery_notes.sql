-- Issue 8: what the planner noted about a delivery it planned, e.g. that an event time later
-- than the time received was replaced by the time received.
ALTER TABLE deliveries ADD COLUMN note TEXT;
-- Defuse time bombs planned before that rule: an event time later than the deployment's
-- creation (about when its delivery was received) plus the same 5 minutes becomes the
-- creation time, so one payload dated 2999 no longer makes every later push stale.
UPDATE deployments SET event_time = created_at WHERE event_time > created_at + 300000;
