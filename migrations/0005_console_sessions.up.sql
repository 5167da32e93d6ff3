-- 0005_console_sessions: console logins, kept in the database so that every
-- replica accepts them. Mirrors AutoMigrate like 0001; apply after 0004.
-- Idempotent.

-- token_hash is the SHA-256 of the cookie's token; the token itself is
-- never stored. A session ends when unused for WEMESSE_SESSION_IDLE, or
-- WEMESSE_SESSION_MAX after created_at.
CREATE TABLE IF NOT EXISTS console_sessions (
	id bigserial PRIMARY KEY,
	token_hash text NOT NULL,
	signature_id bigint NOT NULL,
	created_at timestamptz NOT NULL,
	last_seen_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_console_sessions_token ON console_sessions (token_hash);
