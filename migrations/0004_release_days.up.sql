-- 0004_release_days: the daily adoption record behind
-- GET /api/v1/stats/history and the console's charts. Mirrors AutoMigrate
-- like 0001; apply after 0003. Idempotent.

-- One row per day (YYYY-MM-DD, UTC) and release, written once after the day
-- ends: devices on the release, those seen in the 30 days before the day's
-- end, the download counter when recorded, and the day's new devices.
CREATE TABLE IF NOT EXISTS release_days (
	day text NOT NULL,
	release_id bigint NOT NULL,
	version text NOT NULL,
	target_abi text NOT NULL,
	devices bigint NOT NULL,
	active30d bigint NOT NULL,
	downloads bigint NOT NULL,
	new_devices bigint NOT NULL,
	PRIMARY KEY (day, release_id)
);
