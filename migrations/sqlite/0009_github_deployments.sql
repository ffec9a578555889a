-- Issue 10: GitHub Deployments. The id GitHub gave each deployment ferry created for one of
-- its own (a GitHub push's), written in the transaction that marks the creating notification
-- sent; the statuses of that deployment, sent later from the same queue, are posted to it.
-- (A deployment caused by a GitHub `deployment` event needs no row: the event names its id.)
CREATE TABLE github_deployments (
    deployment_id   INTEGER PRIMARY KEY,      -- ferry's deployment
    github_id       INTEGER NOT NULL,         -- GitHub's deployment id
    notification_id INTEGER NOT NULL,         -- the notification that created it
    created_at      INTEGER NOT NULL          -- unix ms
);
