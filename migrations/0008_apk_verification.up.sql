-- 0008_apk_verification: what each uploaded APK declares and who signed it,
-- as the server's verification found it. Mirrors AutoMigrate like 0001;
-- apply after 0007. Idempotent. Rows stored before verification keep NULL
-- until `wemesse releases verify` fills them in.
ALTER TABLE apps ADD COLUMN IF NOT EXISTS package_name text;
ALTER TABLE apps ADD COLUMN IF NOT EXISTS version_code bigint;
ALTER TABLE apps ADD COLUMN IF NOT EXISTS version_name text;
ALTER TABLE apps ADD COLUMN IF NOT EXISTS min_sdk bigint;
ALTER TABLE apps ADD COLUMN IF NOT EXISTS target_sdk bigint;
-- Lowercase hex SHA-256 of the signer's certificate, as apksigner prints it.
ALTER TABLE apps ADD COLUMN IF NOT EXISTS signer_sha256 text;
