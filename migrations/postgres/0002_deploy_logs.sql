-- Issue 13: deploy logs where every replica reads them. A deployment's log is the
-- concatenation of its chunks in `seq` order: exactly the bytes its replica wrote to its log
-- file (`data_dir/logs/ID.log`), so a byte offset (the live stream's Last-Event-ID) means the
-- same in both. `at`: unix ms when the chunk was written. Written by the replica that runs
-- the deployment (and by `ferry migrate`, from an SQLite store's log files); SQLite keeps logs
-- in files only (one ferry), so it has no such table.
CREATE TABLE deploy_logs (
    deployment_id BIGINT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    seq           BIGINT NOT NULL,
    at            BIGINT NOT NULL,
    chunk         BYTEA NOT NULL,
    PRIMARY KEY (deployment_id, seq)
);
