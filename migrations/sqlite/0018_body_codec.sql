-- Issue 12: a delivery's body may be stored compressed (`src/store/body.rs`). `codec` names
-- how: NULL is the body as received (every body stored before this), 'lz4' LZ4's block format
-- after the decoded size (4 bytes, little-endian). A 7.7 KB push then takes part of one page
-- instead of three, in the WAL and again in the database file.
ALTER TABLE delivery_bodies ADD COLUMN codec TEXT;
