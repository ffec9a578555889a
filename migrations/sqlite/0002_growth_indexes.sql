-- Keep planning, status and retention flat as the tables grow (issue 4).
-- Staleness: newest event time per service.
CREATE INDEX deployments_service_time ON deployments (app, service, event_time);
-- Retention: deliveries older than `server.keep`.
CREATE INDEX deliveries_received ON deliveries (received_at);
-- Retention clears replay links to pruned deliveries.
CREATE INDEX deliveries_replay ON deliveries (replay_of) WHERE replay_of IS NOT NULL;
