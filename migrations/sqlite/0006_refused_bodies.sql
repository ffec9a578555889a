-- Storage hygiene (issue 8): a refused delivery keeps at most 4 KiB of its body, and only the
-- newest 1,000 refused deliveries of each app are kept.
-- The size of the body as received, set only when the stored body was cut short.
ALTER TABLE deliveries ADD COLUMN body_size INTEGER;
-- Pruning walks an app's refused deliveries newest first, without touching accepted ones.
CREATE INDEX deliveries_rejected ON deliveries (app, id) WHERE status = 'rejected';
-- Refused deliveries stored before this migration are cut down the same way.
UPDATE deliveries SET body_size = length(body), body = substr(body, 1, 4096)
WHERE status = 'rejected' AND length(body) > 4096;
