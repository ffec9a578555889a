-- Image-based services (issue 5): what a deployment runs, pinned by digest, with the tag it
-- was pushed as (for the history and for semver ordering).
ALTER TABLE deployments ADD COLUMN image TEXT;
ALTER TABLE deployments ADD COLUMN image_tag TEXT;
ALTER TABLE deployments ADD COLUMN image_digest TEXT;
-- What an image deployment replaced, so that a rollback can restore it.
ALTER TABLE deployments ADD COLUMN rollback_of INTEGER;
