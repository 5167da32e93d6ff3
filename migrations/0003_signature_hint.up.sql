-- 0003_signature_hint: a short hint beside each signature's hash. Mirrors
-- AutoMigrate like 0001; apply after 0002. Idempotent.

-- The first two bytes of SHA-256(secret), in hex. A check runs Argon2id only
-- against rows whose hint matches (or that have none, from before this
-- column), so a wrong secret almost never costs a hash. Sixteen bits of a
-- fast hash reveal nothing useful about a secret that Argon2id protects.
ALTER TABLE middlewares ADD COLUMN IF NOT EXISTS hint text;
