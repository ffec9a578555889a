-- (0010, not 0009: the GitHub deployments branch adds 0009_github_deployments; the two are
-- independent of each other.)
-- Issue 10 part 6: container events. The watcher (`crate::watch`) writes container.died,
-- container.unhealthy and container.restarted into the `events` journal itself: they come
-- from Docker, not from a state change in this database, so no trigger can. What such an
-- event says of the container (name, id, image, exit code, …) is a JSON object in `detail`;
-- `deployment_id` is then the service's current deployment (the version that was running).
ALTER TABLE events ADD COLUMN detail TEXT;
