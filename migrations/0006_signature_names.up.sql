-- 0006_signature_names: names and expiry for signatures. Mirrors AutoMigrate
-- like 0001; apply after 0005. Idempotent.

-- A unique name for people and the audit trail (NULL for the signatures made
-- before names existed, shown as #<id>), and the moment the secret stops
-- authenticating (NULL: never).
ALTER TABLE middlewares ADD COLUMN IF NOT EXISTS name text;
ALTER TABLE middlewares ADD COLUMN IF NOT EXISTS expires_at timestamp with time zone;
CREATE UNIQUE INDEX IF NOT EXISTS idx_middlewares_name ON middlewares (name);
