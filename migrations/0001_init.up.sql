-- 0001_init: the Wemesse schema on PostgreSQL.
--
-- This file mirrors what the server's own migration (repository.Migrate, GORM
-- AutoMigrate of the row structs in internal/repository/schema.go) creates on
-- an empty database. It exists for people who apply schema by hand or with a
-- migration tool; the server does not read it and creates the same schema
-- itself at start. internal/repository/migrations_test.go fails when the two
-- drift apart, so change both together.
--
-- Table and column names are those the earlier server used; keep them.
-- Columns stay nullable, as the earlier server left them, so that upgrading
-- its databases needs no table rewrite. Every statement is idempotent.
--
-- This is for a NEW database. A database left by the earlier server already
-- has these tables but may hold duplicate devices, which would make the
-- unique indexes below fail; let the server upgrade such a database (it
-- merges duplicates and hashes plaintext signatures at start).

-- apps: one uploaded build per (app_version, target_abi).
CREATE TABLE IF NOT EXISTS apps (
    id           bigserial PRIMARY KEY,       -- apps_id_seq, apps_pkey
    target_abi   text,                        -- '' for a universal build
    app_checksum text,                        -- MD5 hex, verified by clients
    app_name     text,                        -- file name
    app_notes    text,
    app_size     text,                        -- human-readable, e.g. '52.3 MB'
    app_version  text,                        -- e.g. '2267_01'
    skipped      boolean,                     -- false for a mandatory release
    uploads      bigint,                      -- adoption counter
    uri          text,
    sha256       text,                        -- SHA-256 hex of the file
    size_bytes   bigint,
    file_path    text,                        -- path below WEMESSE_UPLOAD_DIR
    created_at   timestamp with time zone
);

CREATE UNIQUE INDEX IF NOT EXISTS idx_apps_version_abi ON apps (app_version, target_abi);

-- middlewares: Argon2id hashes of the secrets accepted in the signature
-- header. Never the secrets themselves.
CREATE TABLE IF NOT EXISTS middlewares (
    id           bigserial PRIMARY KEY,       -- middlewares_id_seq, middlewares_pkey
    signature    text,                        -- $argon2id$... hash
    role         text,                        -- 'admin' or 'client'
    created_at   timestamp with time zone,
    last_used_at timestamp with time zone
);

-- users: the latest session of each device, one row per (session_id, device_mac).
CREATE TABLE IF NOT EXISTS users (
    id               bigserial PRIMARY KEY,   -- users_id_seq, users_pkey
    app_locale       text,
    app_version      text,
    device_locale    text,
    device_mac       text,
    device_model     text,
    device_sdk       text,
    session_activity bigint,                  -- Unix seconds
    session_id       bigint,
    session_register bigint,                  -- Unix seconds
    tg_version       text,
    target_abi       text
);

CREATE UNIQUE INDEX IF NOT EXISTS idx_users_session_device ON users (session_id, device_mac);
