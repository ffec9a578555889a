-- Issue 12: a delivery's body in a table of its own. SQLite rewrites a record whole (its
-- overflow pages too) on any UPDATE, so while the body lived in `deliveries` the planner's
-- `status = 'planned'` rewrote every 7.7 KB body into the WAL a second time (38–41 µs per
-- delivery, BENCHMARKS.md). Now the intake writer inserts the body here, in the transaction
-- that inserts its delivery, and the `deliveries` row that planning, duplicates and notes
-- update stays small. A body is stored once and goes when its delivery goes (retention, the
-- refused-delivery prune): ON DELETE CASCADE. Readers take a missing row as an empty body.
CREATE TABLE delivery_bodies (
    delivery_id INTEGER PRIMARY KEY REFERENCES deliveries (id) ON DELETE CASCADE,
    body        BLOB    NOT NULL
);

-- Stores made before this keep every body.
INSERT INTO delivery_bodies (delivery_id, body) SELECT id, body FROM deliveries;

ALTER TABLE deliveries DROP COLUMN body;
