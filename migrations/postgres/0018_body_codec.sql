-- As SQLite's 0018: how a delivery's body is stored (NULL: as received; 'lz4': see
-- `src/store/body.rs`). Replicas decode what any of them wrote.
ALTER TABLE delivery_bodies ADD COLUMN codec TEXT;
