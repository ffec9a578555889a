-- Issue 13: replicas. Which ferry (`server.node`) runs a deployment, and until when its claim
-- holds without that ferry's heartbeat (unix ms): a replica renews the leases of what it runs
-- every third of `server.lease`; a `running` deployment whose lease has run out belongs to a
-- replica that died (or lost the database), and another replica records it `interrupted` and
-- queues its retry. The same migration, with the same meaning, is
-- migrations/sqlite/0015_nodes.sql.
ALTER TABLE deployments ADD COLUMN node TEXT;
ALTER TABLE deployments ADD COLUMN lease_until BIGINT;
-- The heartbeat's and the lease check's rows: few at any time.
CREATE INDEX deployments_running ON deployments (node) WHERE state = 'running';
