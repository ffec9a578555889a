-- Issue 15: reconcile. The reconcile task reads, about every second and per service with
-- `reconcile`, when the service last ran something (the newest end of a deployment that
-- started) and when it last reconciled (the newest deployment with event `reconcile`): two
-- index lookups, however long the history. The same migration, with the same meaning, is
-- migrations/sqlite/0017_reconcile.sql.
CREATE INDEX deployments_ran ON deployments (app, service, finished_at)
    WHERE started_at IS NOT NULL AND finished_at IS NOT NULL;
CREATE INDEX deployments_reconciles ON deployments (app, service, created_at)
    WHERE event = 'reconcile';
