-- Issue 13: replicas. Which ferry (`server.node`) runs a deployment, and until when its claim
-- holds without that ferry's heartbeat (unix ms). On SQLite there is one ferry: the columns
-- are written the same way, and recovery at start still takes every `running` deployment.
-- The same migration, with the same meaning, is migrations/postgres/0015_nodes.sql.
ALTER TABLE deployments ADD COLUMN node TEXT;
ALTER TABLE deployments ADD COLUMN lease_until INTEGER;
