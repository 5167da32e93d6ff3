-- 0002_release_management: staged rollout, yank, download counts and the
-- index behind the adoption statistics. Mirrors AutoMigrate like 0001; apply
-- after it. Every statement is idempotent.

-- Percent of devices offered the release (1 to 100; 100 for rows from
-- before this migration, which the server backfills at start).
ALTER TABLE apps ADD COLUMN IF NOT EXISTS rollout bigint;
-- A yanked release is never offered again; its file stays downloadable.
ALTER TABLE apps ADD COLUMN IF NOT EXISTS yanked boolean;
-- Completed downloads of the release's file.
ALTER TABLE apps ADD COLUMN IF NOT EXISTS downloads bigint;

-- GET /api/v1/stats counts devices per (version, ABI) and the active ones
-- among them from this index alone.
CREATE INDEX IF NOT EXISTS idx_users_adoption ON users (app_version, target_abi, session_activity);
