package repository

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/wemesse/server/internal/model"
)

// The row structs below are the schema. Column names are part of the API
// contract; columns stay nullable as the earlier server left them, so that
// upgrading its databases needs no table rewrite.

// appRow is a row of apps: one uploaded build.
type appRow struct {
	ID          int64     `gorm:"column:id;primaryKey"`
	TargetABI   string    `gorm:"column:target_abi;type:text;uniqueIndex:idx_apps_version_abi,priority:2"`
	AppChecksum string    `gorm:"column:app_checksum;type:text"`
	AppName     string    `gorm:"column:app_name;type:text"`
	AppNotes    string    `gorm:"column:app_notes;type:text"`
	AppSize     string    `gorm:"column:app_size;type:text"`
	AppVersion  string    `gorm:"column:app_version;type:text;uniqueIndex:idx_apps_version_abi,priority:1"`
	Skipped     bool      `gorm:"column:skipped"`
	Uploads     int64     `gorm:"column:uploads"`
	URI         string    `gorm:"column:uri;type:text"`
	SHA256      string    `gorm:"column:sha256;type:text"`
	SizeBytes   int64     `gorm:"column:size_bytes"`
	FilePath    string    `gorm:"column:file_path;type:text"`
	CreatedAt   time.Time `gorm:"column:created_at"`
	Rollout     int64     `gorm:"column:rollout"`
	Yanked      bool      `gorm:"column:yanked"`
	Downloads   int64     `gorm:"column:downloads"`
	Track       string    `gorm:"column:track;type:text"`
	Halted      bool      `gorm:"column:halted"`
	// HaltedAt is when the current pause of the schedule began: the halt,
	// or a schedule set while halted. Resuming moves pending steps later
	// by the time since.
	HaltedAt    *time.Time `gorm:"column:halted_at"`
	MandatoryAt *time.Time `gorm:"column:mandatory_at"`
	// What the APK declares and who signed it (see apk.Verify); NULL for
	// builds stored before verification or without it.
	PackageName  string `gorm:"column:package_name;type:text"`
	VersionCode  int64  `gorm:"column:version_code"`
	VersionName  string `gorm:"column:version_name;type:text"`
	MinSdk       int64  `gorm:"column:min_sdk"`
	TargetSdk    int64  `gorm:"column:target_sdk"`
	SignerSHA256 string `gorm:"column:signer_sha256;type:text"`
}

func (appRow) TableName() string { return "apps" }

// stepRow is a row of release_steps: one step of a release's scheduled
// rollout ramp.
type stepRow struct {
	ID        int64      `gorm:"column:id;primaryKey"`
	ReleaseID int64      `gorm:"column:release_id;index:idx_release_steps_release"`
	At        time.Time  `gorm:"column:due_at"`
	Rollout   int64      `gorm:"column:rollout"`
	State     string     `gorm:"column:state;type:text"` // pending, applied or cancelled
	AppliedAt *time.Time `gorm:"column:applied_at"`
}

func (stepRow) TableName() string { return "release_steps" }

// signatureRow is a row of middlewares: the Argon2id hash of one secret.
type signatureRow struct {
	ID         int64      `gorm:"column:id;primaryKey"`
	Signature  string     `gorm:"column:signature;type:text"`
	Hint       string     `gorm:"column:hint;type:text"`
	Role       string     `gorm:"column:role;type:text"`
	CreatedAt  time.Time  `gorm:"column:created_at"`
	LastUsedAt *time.Time `gorm:"column:last_used_at"`
	// Name is NULL for an unnamed signature, so that unnamed ones do not
	// collide in the unique index.
	Name      *string    `gorm:"column:name;type:text;uniqueIndex:idx_middlewares_name"`
	ExpiresAt *time.Time `gorm:"column:expires_at"`
}

func (signatureRow) TableName() string { return "middlewares" }

// userRow is a row of users: one device's latest session.
type userRow struct {
	ID              int64  `gorm:"column:id;primaryKey"`
	AppLocale       string `gorm:"column:app_locale;type:text"`
	AppVersion      string `gorm:"column:app_version;type:text;index:idx_users_adoption,priority:1"`
	DeviceLocale    string `gorm:"column:device_locale;type:text"`
	DeviceMac       string `gorm:"column:device_mac;type:text;uniqueIndex:idx_users_session_device,priority:2"`
	DeviceModel     string `gorm:"column:device_model;type:text"`
	DeviceSDK       string `gorm:"column:device_sdk;type:text"`
	SessionActivity int64  `gorm:"column:session_activity;index:idx_users_adoption,priority:3"`
	SessionID       int64  `gorm:"column:session_id;uniqueIndex:idx_users_session_device,priority:1"`
	SessionRegister int64  `gorm:"column:session_register"`
	TgVersion       string `gorm:"column:tg_version;type:text"`
	TargetABI       string `gorm:"column:target_abi;type:text;index:idx_users_adoption,priority:2"`
}

func (userRow) TableName() string { return "users" }

// releaseDayRow is a row of release_days: one release's adoption on one day.
type releaseDayRow struct {
	Day        string `gorm:"column:day;type:text;primaryKey"` // YYYY-MM-DD, UTC
	ReleaseID  int64  `gorm:"column:release_id;primaryKey;autoIncrement:false"`
	Version    string `gorm:"column:version;type:text;not null"`
	TargetABI  string `gorm:"column:target_abi;type:text;not null"`
	Devices    int64  `gorm:"column:devices;not null"`
	Active30d  int64  `gorm:"column:active30d;not null"`
	Downloads  int64  `gorm:"column:downloads;not null"`
	NewDevices int64  `gorm:"column:new_devices;not null"`
}

func (releaseDayRow) TableName() string { return "release_days" }

// sessionRow is a row of console_sessions: one console login. The token
// itself lives only in the browser's cookie.
type sessionRow struct {
	ID          int64     `gorm:"column:id;primaryKey"`
	TokenHash   string    `gorm:"column:token_hash;type:text;not null;uniqueIndex:idx_console_sessions_token"`
	SignatureID int64     `gorm:"column:signature_id;not null"`
	CreatedAt   time.Time `gorm:"column:created_at;not null"`
	LastSeenAt  time.Time `gorm:"column:last_seen_at;not null"`
}

func (sessionRow) TableName() string { return "console_sessions" }

// migrationLock is the PostgreSQL advisory lock key that serializes
// migrations of servers starting at once (AutoMigrate alone races).
const migrationLock = 0x77656d65 // "weme"

// Migrate creates or upgrades the schema, including databases left by the
// earlier Wemesse server: it fills NULLs the new rules cannot hold, merges
// duplicate devices before the unique index exists, and records each legacy
// release's file path. Running it again changes nothing.
func Migrate(ctx context.Context, db *gorm.DB) error {
	return db.WithContext(ctx).Connection(func(conn *gorm.DB) error {
		if conn.Dialector.Name() == "postgres" {
			if err := conn.Exec("SELECT pg_advisory_lock(?)", migrationLock).Error; err != nil {
				return fmt.Errorf("repository: migrate: lock: %w", err)
			}
			defer conn.Exec("SELECT pg_advisory_unlock(?)", migrationLock)
		}
		return conn.Transaction(func(tx *gorm.DB) error {
			if err := upgradeLegacy(tx); err != nil {
				return fmt.Errorf("repository: migrate: upgrade legacy rows: %w", err)
			}
			if err := tx.AutoMigrate(&appRow{}, &signatureRow{}, &userRow{}, &releaseDayRow{}, &sessionRow{}, &stepRow{}, &auditRow{}); err != nil {
				return fmt.Errorf("repository: migrate: %w", err)
			}
			return backfill(tx)
		})
	})
}

// upgradeLegacy prepares tables of the earlier server for the unique indexes.
func upgradeLegacy(tx *gorm.DB) error {
	m := tx.Migrator()
	if m.HasTable("apps") && m.HasColumn(&appRow{}, "target_abi") {
		if err := tx.Exec("UPDATE apps SET target_abi = '' WHERE target_abi IS NULL").Error; err != nil {
			return err
		}
		if !m.HasIndex(&appRow{}, "idx_apps_version_abi") {
			// Two builds of one version and ABI cannot be told apart, and
			// which to drop is for a person to decide.
			var dups []string
			if err := tx.Raw(`SELECT app_version || ' ' || target_abi FROM apps
				GROUP BY app_version, target_abi HAVING COUNT(*) > 1 ORDER BY 1 LIMIT 5`).Scan(&dups).Error; err != nil {
				return err
			}
			if len(dups) > 0 {
				return fmt.Errorf("apps holds several rows for one (app_version, target_abi), for example %q; delete the unwanted rows, then start again", dups)
			}
		}
	}
	if !m.HasTable("users") || m.HasIndex(&userRow{}, "idx_users_session_device") {
		return nil
	}
	if err := tx.Exec("UPDATE users SET device_mac = '' WHERE device_mac IS NULL").Error; err != nil {
		return err
	}
	// Keep the smallest id of each device; give it the fields of the row
	// with the most recent session_activity, then drop the others. A NULL
	// session_activity is the oldest (PostgreSQL would sort it first in
	// DESC order).
	const ranked = `SELECT id, MIN(id) OVER w AS keep_id, COUNT(*) OVER w AS n,
		ROW_NUMBER() OVER (PARTITION BY session_id, device_mac
			ORDER BY (session_activity IS NULL), session_activity DESC, id DESC) AS rn
		FROM users WHERE session_id IS NOT NULL WINDOW w AS (PARTITION BY session_id, device_mac)`
	merge := `UPDATE users SET app_locale = l.app_locale, app_version = l.app_version, device_locale = l.device_locale,
		device_model = l.device_model, device_sdk = l.device_sdk, session_activity = l.session_activity,
		session_register = l.session_register, tg_version = l.tg_version`
	if m.HasColumn(&userRow{}, "target_abi") {
		merge += ", target_abi = l.target_abi"
	}
	merge += ` FROM users l JOIN (` + ranked + `) r ON r.id = l.id
		WHERE r.rn = 1 AND r.n > 1 AND users.id = r.keep_id AND users.id <> l.id`
	if err := tx.Exec(merge).Error; err != nil {
		return err
	}
	return tx.Exec(`DELETE FROM users WHERE id IN (SELECT id FROM (` + ranked + `) r WHERE r.n > 1 AND r.id <> r.keep_id)`).Error
}

// backfill fills columns that rows of the earlier server lack.
func backfill(tx *gorm.DB) error {
	for _, stmt := range []string{
		// The earlier server stored builds as <target_abi>/<app_version>/<app_name>.
		`UPDATE apps SET file_path = CASE WHEN target_abi = '' THEN app_version || '/' || app_name
			ELSE target_abi || '/' || app_version || '/' || app_name END
			WHERE file_path IS NULL OR file_path = ''`,
		`UPDATE apps SET uploads = 0 WHERE uploads IS NULL`,
		`UPDATE apps SET downloads = 0 WHERE downloads IS NULL`,
		`UPDATE apps SET rollout = 100 WHERE rollout IS NULL OR rollout < 1 OR rollout > 100`,
		`UPDATE apps SET yanked = false WHERE yanked IS NULL`,
		`UPDATE apps SET track = '` + model.DefaultTrack + `' WHERE track IS NULL OR track = ''`,
		`UPDATE apps SET halted = false WHERE halted IS NULL`,
		`UPDATE middlewares SET role = 'admin' WHERE role IS NULL OR role = ''`,
	} {
		if err := tx.Exec(stmt).Error; err != nil {
			return fmt.Errorf("repository: migrate: backfill: %w", err)
		}
	}
	return nil
}
