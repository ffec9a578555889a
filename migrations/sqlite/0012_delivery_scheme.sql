-- Issue 11 (delivery inspector): which scheme verified a delivery (`github`, `hmac`, `bearer`,
-- `standard`, … as `sources::verify::Scheme::as_str` names them; `admin_token` for deliveries
-- the API stored; NULL when nothing verified it, and for deliveries stored before this).
ALTER TABLE deliveries ADD COLUMN scheme TEXT;
-- The HTTP status a refused hook request was answered with (401: verification failed; 415,
-- 400: its body or modifiers), so the inspector tells a failed verification from the rest.
ALTER TABLE deliveries ADD COLUMN refused_with INTEGER;
-- Duplicates are not stored (a sender's retry must not pile up rows), but the original keeps
-- how many came and when the last did, so the inspector can say "received again N times".
ALTER TABLE deliveries ADD COLUMN duplicates INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN duplicate_at INTEGER;
-- The dashboard filters deployments by state (`?state=running`): each filter walks its own
-- index newest first, instead of every deployment of the app (or of all apps) when the state
-- is rare (bench/pages: `?state=running` with none running, 1M deliveries / 95k deployments:
-- p99 51 ms before).
CREATE INDEX deployments_state ON deployments (state, id);
CREATE INDEX deployments_app_state ON deployments (app, state, id);
