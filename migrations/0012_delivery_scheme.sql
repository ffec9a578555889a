-- Issue 11 (delivery inspector): which scheme verified a delivery (`github`, `hmac`, `bearer`,
-- `standard`, … as `sources::verify::Scheme::as_str` names them; `admin_token` for deliveries
-- the API stored; NULL when nothing verified it, and for deliveries stored before this).
ALTER TABLE deliveries ADD COLUMN scheme TEXT;
-- Duplicates are not stored (a sender's retry must not pile up rows), but the original keeps
-- how many came and when the last did, so the inspector can say "received again N times".
ALTER TABLE deliveries ADD COLUMN duplicates INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN duplicate_at INTEGER;
