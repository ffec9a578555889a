-- Superseding walks only the queued deployments of one service, not its whole history:
-- without this, planning a burst was quadratic in the number of deployments a service had.
CREATE INDEX deployments_queued ON deployments (app, service, id) WHERE state = 'queued';
