-- The steps of a deployment's run (pull, create, start, health, remove, rollback; run for a
-- command), in the order the executor took them. `seq` numbers them within the deployment;
-- a step still going has no `ended_at` nor `outcome`. Deleted with their deployment.
CREATE TABLE deployment_steps (
    deployment_id INTEGER NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    outcome TEXT,
    detail TEXT,
    PRIMARY KEY (deployment_id, seq)
) WITHOUT ROWID;
