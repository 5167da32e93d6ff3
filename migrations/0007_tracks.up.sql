-- 0007_tracks: release tracks, halt and resume, the mandatory deadline and
-- scheduled rollout steps. Mirrors AutoMigrate like 0001; apply after 0006.
-- Every statement is idempotent.

-- The track a release is offered on ('stable' for rows from before this
-- migration, which the server backfills at start).
ALTER TABLE apps ADD COLUMN IF NOT EXISTS track text;
-- A halted release is offered to nobody and its schedule waits.
ALTER TABLE apps ADD COLUMN IF NOT EXISTS halted boolean;
-- When the current pause of the schedule began; resuming moves the pending
-- steps later by the time since.
ALTER TABLE apps ADD COLUMN IF NOT EXISTS halted_at timestamp with time zone;
-- From then on the release counts as mandatory.
ALTER TABLE apps ADD COLUMN IF NOT EXISTS mandatory_at timestamp with time zone;

-- release_steps: the scheduled rollout ramp of a release. A server applies
-- a due step by turning its state from pending to applied, under the lock
-- of the release's row, so each step is applied once per cluster.
CREATE TABLE IF NOT EXISTS release_steps (
    id         bigserial PRIMARY KEY,       -- release_steps_id_seq, release_steps_pkey
    release_id bigint,                      -- apps.id
    due_at     timestamp with time zone,    -- when the step applies
    rollout    bigint,                      -- the rollout it sets, 1 to 100
    state      text,                        -- pending, applied or cancelled
    applied_at timestamp with time zone
);
CREATE INDEX IF NOT EXISTS idx_release_steps_release ON release_steps (release_id);
