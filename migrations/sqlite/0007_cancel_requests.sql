-- `POST /api/v1/deployments/ID/cancel` on a running deployment: when it was asked. The lanes stop
-- the run and record `cancelled`; a restart that cut the stop short records it `cancelled` too
-- (not `interrupted`, and not retried).
ALTER TABLE deployments ADD COLUMN cancel_requested_at INTEGER;
