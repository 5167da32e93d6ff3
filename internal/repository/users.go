package repository

import (
	"context"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/wemesse/server/internal/model"
)

// Users stores device sessions in the users table.
type Users struct{ db *gorm.DB }

// NewUsers returns a Users on db.
func NewUsers(db *gorm.DB) *Users { return &Users{db: db} }

// Upsert stores u under its (SessionID, DeviceMac), inserting a new device
// or updating a known one in place. When the device is new or reports a
// different AppVersion, the uploads counter of the release with that version
// grows by one: the one built for abi if it exists, else the universal one.
// Everything happens in one transaction; under any concurrency a device is
// one row and each change of version is counted once.
func (r *Users) Upsert(ctx context.Context, u model.User, abi string) (model.User, error) {
	row := fromUser(u)
	err := r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		fields := map[string]any{
			"app_locale": row.AppLocale, "app_version": row.AppVersion, "device_locale": row.DeviceLocale,
			"device_model": row.DeviceModel, "device_sdk": row.DeviceSDK, "session_activity": row.SessionActivity,
			"session_register": row.SessionRegister, "tg_version": row.TgVersion, "target_abi": row.TargetABI,
		}
		// update writes the device's row where cond holds and reports
		// whether it did. Conditions are re-checked under the row lock, so
		// of two concurrent reports of one new version only one matches.
		update := func(cond string, args ...any) (bool, error) {
			var got []userRow
			res := tx.Model(&got).Clauses(clause.Returning{Columns: []clause.Column{{Name: "id"}}}).
				Where("session_id = ? AND device_mac = ?", row.SessionID, row.DeviceMac).Where(cond, args...).Updates(fields)
			if res.Error != nil || len(got) == 0 {
				return false, res.Error
			}
			row.ID = got[0].ID
			return true, nil
		}
		versionChanged := func() (bool, error) { return update("COALESCE(app_version, '') <> ?", row.AppVersion) }
		known := func() (bool, error) { return update("1 = 1") }

		counted, err := versionChanged()
		if err != nil || counted {
			return r.count(tx, counted, row.AppVersion, abi, err)
		}
		if found, err := known(); err != nil || found {
			return err
		}
		// A new device, unless a concurrent report inserts it first.
		ins := tx.Clauses(clause.OnConflict{
			Columns:   []clause.Column{{Name: "session_id"}, {Name: "device_mac"}},
			DoNothing: true,
		}).Create(&row)
		if ins.Error != nil || ins.RowsAffected == 1 {
			return r.count(tx, true, row.AppVersion, abi, ins.Error)
		}
		if counted, err = versionChanged(); err != nil || counted {
			return r.count(tx, counted, row.AppVersion, abi, err)
		}
		_, err = known()
		return err
	})
	if err != nil {
		return model.User{}, translate(err, "device session")
	}
	return toUser(row), nil
}

// count adds one to the uploads of the release of version for abi, else of
// the universal one, when counted and err is nil.
func (r *Users) count(tx *gorm.DB, counted bool, version, abi string, err error) error {
	if err != nil || !counted {
		return err
	}
	return tx.Exec(`UPDATE apps SET uploads = COALESCE(uploads, 0) + 1 WHERE id = (
		SELECT id FROM apps WHERE app_version = ? AND target_abi IN (?, '')
		ORDER BY CASE WHEN target_abi = '' THEN 1 ELSE 0 END LIMIT 1)`, version, abi).Error
}

// Each calls fn for every user in id order, streaming rows from a cursor so
// that no list is ever held whole in memory. It stops at fn's first error.
func (r *Users) Each(ctx context.Context, page model.Page, fn func(model.User) error) error {
	db := r.db.WithContext(ctx)
	q := db.Model(&userRow{}).Where("id > ?", page.After).Order("id")
	if page.Limit > 0 {
		q = q.Limit(page.Limit)
	}
	rows, err := q.Rows()
	if err != nil {
		return translate(err, "user list")
	}
	defer rows.Close()
	for rows.Next() {
		var row userRow
		if err := db.ScanRows(rows, &row); err != nil {
			return translate(err, "user list")
		}
		if err := fn(toUser(row)); err != nil {
			return err
		}
	}
	return translate(rows.Err(), "user list")
}

func fromUser(u model.User) userRow {
	return userRow{
		ID: u.ID, AppLocale: u.AppLocale, AppVersion: u.AppVersion, DeviceLocale: u.DeviceLocale,
		DeviceMac: u.DeviceMac, DeviceModel: u.DeviceModel, DeviceSDK: u.DeviceSDK,
		SessionActivity: u.SessionActivity, SessionID: u.SessionID, SessionRegister: u.SessionRegister,
		TgVersion: u.TgVersion, TargetABI: u.TargetABI,
	}
}

func toUser(r userRow) model.User {
	return model.User{
		ID: r.ID, AppLocale: r.AppLocale, AppVersion: r.AppVersion, DeviceLocale: r.DeviceLocale,
		DeviceMac: r.DeviceMac, DeviceModel: r.DeviceModel, DeviceSDK: r.DeviceSDK,
		SessionActivity: r.SessionActivity, SessionID: r.SessionID, SessionRegister: r.SessionRegister,
		TgVersion: r.TgVersion, TargetABI: r.TargetABI,
	}
}

// adoptionQuery counts the devices on one version per ABI, and the active
// ones, from a range of idx_users_adoption. One version is a small part of
// the table, so the planner reads the index rather than the whole table.
const adoptionQuery = `SELECT COALESCE(target_abi, '') AS target_abi, COUNT(*) AS devices,
	COUNT(CASE WHEN session_activity >= ? THEN 1 END) AS active
	FROM users WHERE app_version = ? GROUP BY target_abi`

// Adoption counts the devices on each of versions per ABI, and those whose
// last session is at or after activeSince, one indexed aggregate a version.
func (r *Users) Adoption(ctx context.Context, versions []string, activeSince int64) ([]model.Adoption, error) {
	var out []model.Adoption
	for _, v := range versions {
		var rows []struct {
			TargetABI string
			Devices   int64
			Active    int64
		}
		if err := r.db.WithContext(ctx).Raw(adoptionQuery, activeSince, v).Scan(&rows).Error; err != nil {
			return nil, translate(err, "adoption counts")
		}
		for _, row := range rows {
			out = append(out, model.Adoption{Version: v, TargetABI: row.TargetABI, Devices: row.Devices, Active: row.Active})
		}
	}
	return out, nil
}
