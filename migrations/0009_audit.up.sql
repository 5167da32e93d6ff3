-- 0009_audit: the audit trail. Mirrors AutoMigrate like 0001; apply after
-- 0008. Idempotent.

-- One row per change made through the API or the command line, written in
-- the change's own transaction: when (UTC), who (a signature's name, #<id>
-- for one without, cli or system), which action (release.upload,
-- release.edit, release.yank, release.purge, signature.create,
-- signature.revoke, ...), the release concerned if any, and what changed.
-- Never a secret.
CREATE TABLE IF NOT EXISTS audit (
    id         bigserial PRIMARY KEY,         -- audit_id_seq, audit_pkey
    at         timestamp with time zone NOT NULL,
    actor      text NOT NULL,
    action     text NOT NULL,
    release_id bigint,
    detail     text NOT NULL
);
