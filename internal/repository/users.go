package repository

import (
	"cmp"
	"context"
	"database/sql"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"gorm.io/gorm"

	"github.com/wemesse/server/internal/model"
)

// Users stores device sessions in the users table.
type Users struct {
	db     *gorm.DB
	mu     sync.Mutex
	pipe   *devicePipeline // PostgreSQL: made on first use, see writePostgres
	closed bool
}

// NewUsers returns a Users on db. Close closes what it opened.
func NewUsers(db *gorm.DB) *Users { return &Users{db: db} }

// Close closes the connection that writes device sessions on PostgreSQL;
// rounds still on it fail. The pool of db stays open.
func (r *Users) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.pipe != nil {
		r.pipe.Close()
	}
}

// userColumns are the columns a report writes, in the order of the VALUES
// lists below.
var userColumns = []string{"session_id", "device_mac", "app_locale", "app_version", "device_locale", "device_model",
	"device_sdk", "session_activity", "session_register", "tg_version", "target_abi"}

// device identifies a user row.
type device struct {
	sessionID int64
	mac       string
}

// UpsertBatch stores reports as if one after the other in order: each
// (SessionID, DeviceMac) is one row, inserted when new and updated in place
// when known. Each time a device is new or reports a different AppVersion
// than it had, the uploads counter of that version's release grows by one:
// the build for the report's ABI if it exists, else the universal one. A
// report's row and its count are committed together. Known rows are locked
// first and new ones inserted with ON CONFLICT DO NOTHING, so a device that
// another transaction inserts meanwhile is still counted once. On SQLite
// the batch is one transaction; on PostgreSQL one statement, or one more
// for each repeat of a device in the batch (see writePostgres). It returns
// the stored users in the order of reports, once committed.
func (r *Users) UpsertBatch(ctx context.Context, reports []model.DeviceReport) ([]model.User, error) {
	commit, err := r.WriteBatch(ctx, reports)
	if err != nil {
		return nil, err
	}
	return commit()
}

// WriteBatch is UpsertBatch in two steps: it returns once the batch is
// written, and commit waits until it is committed and returns the users,
// or the error that kept it from committing. A batch written after
// WriteBatch returns commits after this one. On PostgreSQL the next batch
// can thus be sent while this one's commit is still under way; on SQLite
// WriteBatch commits before it returns. ctx bounds both steps.
func (r *Users) WriteBatch(ctx context.Context, reports []model.DeviceReport) (commit func() ([]model.User, error), err error) {
	if r.db.Dialector.Name() == "postgres" {
		return r.writePostgres(ctx, reports)
	}
	users, err := r.upsertSQLite(ctx, reports)
	if err != nil {
		return nil, err
	}
	return func() ([]model.User, error) { return users, nil }, nil
}

// upsertSQLite is UpsertBatch on SQLite, in one transaction.
func (r *Users) upsertSQLite(ctx context.Context, reports []model.DeviceReport) ([]model.User, error) {
	// A device's row ends up holding its last report. Rows are written in
	// key order, so concurrent batches lock them in the same order.
	last := map[device]int{}
	for i, rep := range reports {
		last[device{rep.User.SessionID, rep.User.DeviceMac}] = i
	}
	keys := make([]device, 0, len(last))
	for k := range last {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b device) int {
		return cmp.Or(cmp.Compare(a.sessionID, b.sessionID), strings.Compare(a.mac, b.mac))
	})
	ids := make(map[device]int64, len(keys))
	old := make(map[device]string, len(keys)) // app_version before this batch, for known devices
	values := func(ks []device) (string, []any) {
		return rowValues(len(ks), func(i int) []any {
			u := reports[last[ks[i]]].User
			return []any{u.SessionID, u.DeviceMac, u.AppLocale, u.AppVersion, u.DeviceLocale, u.DeviceModel,
				u.DeviceSDK, u.SessionActivity, u.SessionRegister, u.TgVersion, u.TargetABI}
		})
	}

	err := r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := lockDevices(tx, keys, ids, old); err != nil {
			return err
		}
		// New devices, unless a concurrent transaction inserts one first.
		var fresh []device
		for _, k := range keys {
			if _, ok := ids[k]; !ok {
				fresh = append(fresh, k)
			}
		}
		if len(fresh) > 0 {
			q, args := values(fresh)
			var inserted []struct {
				ID        int64
				SessionID int64
				DeviceMac string
			}
			err := tx.Raw("INSERT INTO users ("+strings.Join(userColumns, ", ")+") VALUES "+q+
				" ON CONFLICT (session_id, device_mac) DO NOTHING RETURNING id, session_id, device_mac", args...).Scan(&inserted).Error
			if err != nil {
				return err
			}
			for _, row := range inserted {
				ids[device{row.SessionID, row.DeviceMac}] = row.ID
			}
			var raced []device
			for _, k := range fresh {
				if _, ok := ids[k]; !ok {
					raced = append(raced, k)
				}
			}
			if err := lockDevices(tx, raced, ids, old); err != nil {
				return err
			}
		}
		// Known devices: one multi-row update.
		var known []device
		for _, k := range keys {
			if _, ok := old[k]; ok {
				known = append(known, k)
			}
		}
		if len(known) > 0 {
			q, args := values(known)
			set := make([]string, 0, len(userColumns))
			for _, c := range userColumns[2:] {
				set = append(set, c+" = v."+c)
			}
			err := tx.Exec("WITH v ("+strings.Join(userColumns, ", ")+") AS (VALUES "+q+") UPDATE users SET "+strings.Join(set, ", ")+
				" FROM v WHERE users.session_id = v.session_id AND users.device_mac = v.device_mac", args...).Error
			if err != nil {
				return err
			}
		}
		return countAdoption(tx, reports, old)
	})
	if err != nil {
		return nil, translate(err, "device sessions")
	}
	out := make([]model.User, len(reports))
	for i, rep := range reports {
		out[i] = rep.User
		out[i].ID = ids[device{rep.User.SessionID, rep.User.DeviceMac}]
	}
	return out, nil
}

// lockDevices reads, and on PostgreSQL locks, the rows of keys, recording
// their ids and app versions. SQLite needs no lock: its write transaction
// already excludes every other writer.
func lockDevices(tx *gorm.DB, keys []device, ids map[device]int64, versions map[device]string) error {
	if len(keys) == 0 {
		return nil
	}
	var rows []struct {
		ID         int64
		SessionID  int64
		DeviceMac  string
		AppVersion string
	}
	q, args := rowValues(len(keys), func(i int) []any { return []any{keys[i].sessionID, keys[i].mac} })
	sql := "SELECT id, session_id, device_mac, COALESCE(app_version, '') AS app_version FROM users WHERE (session_id, device_mac) IN (VALUES " + q + ") ORDER BY session_id, device_mac"
	if tx.Dialector.Name() == "postgres" {
		sql += " FOR UPDATE"
	}
	if err := tx.Raw(sql, args...).Scan(&rows).Error; err != nil {
		return err
	}
	for _, row := range rows {
		k := device{row.SessionID, row.DeviceMac}
		ids[k], versions[k] = row.ID, row.AppVersion
	}
	return nil
}

// countAdoption adds each device's changes of version, in report order, to
// the uploads of the releases concerned. old holds the versions of devices
// known before the batch.
func countAdoption(tx *gorm.DB, reports []model.DeviceReport, old map[device]string) error {
	type release struct{ version, abi string }
	counts := map[release]int{}
	current := maps.Clone(old)
	for _, rep := range reports {
		k := device{rep.User.SessionID, rep.User.DeviceMac}
		if v, ok := current[k]; !ok || v != rep.User.AppVersion {
			counts[release{rep.User.AppVersion, rep.ABI}]++
		}
		current[k] = rep.User.AppVersion
	}
	for rel, n := range counts {
		err := tx.Exec(`UPDATE apps SET uploads = COALESCE(uploads, 0) + ? WHERE id = (
			SELECT id FROM apps WHERE app_version = ? AND target_abi IN (?, '')
			ORDER BY CASE WHEN target_abi = '' THEN 1 ELSE 0 END LIMIT 1)`, n, rel.version, rel.abi).Error
		if err != nil {
			return err
		}
	}
	return nil
}

// rowValues writes n parenthesized rows of placeholders, each cast so that
// PostgreSQL knows the column types, and returns them with their arguments.
func rowValues(n int, row func(i int) []any) (string, []any) {
	var b strings.Builder
	var args []any
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for j, v := range row(i) {
			if j > 0 {
				b.WriteString(", ")
			}
			if _, ok := v.(int64); ok {
				b.WriteString("CAST(? AS bigint)")
			} else {
				b.WriteString("CAST(? AS text)")
			}
			args = append(args, v)
		}
		b.WriteByte(')')
	}
	return b.String(), args
}

// listColumns are the columns Each scans, in its order.
const listColumns = "id, app_locale, app_version, device_locale, device_mac, device_model, device_sdk, " +
	"session_activity, session_id, session_register, tg_version, target_abi"

// Each calls fn for every user in id order, streaming rows from a cursor so
// that no list is ever held whole in memory. It stops at fn's first error.
func (r *Users) Each(ctx context.Context, page model.Page, fn func(model.User) error) error {
	q := r.db.WithContext(ctx).Model(&userRow{}).Select(listColumns).Where("id > ?", page.After).Order("id")
	if page.Limit > 0 {
		q = q.Limit(page.Limit)
	}
	rows, err := q.Rows()
	if err != nil {
		return translate(err, "user list")
	}
	defer rows.Close()
	// Scanning each row by hand, not through gorm's reflection, halves the
	// cost of listing a million users. Legacy rows may hold NULLs.
	var (
		u                                       model.User
		locale, version, dlocale, mac, devModel sql.NullString
		sdk, tg, abi                            sql.NullString
		activity, session, register             sql.NullInt64
	)
	for rows.Next() {
		if err := rows.Scan(&u.ID, &locale, &version, &dlocale, &mac, &devModel, &sdk, &activity, &session, &register, &tg, &abi); err != nil {
			return translate(err, "user list")
		}
		u.AppLocale, u.AppVersion, u.DeviceLocale, u.DeviceMac = locale.String, version.String, dlocale.String, mac.String
		u.DeviceModel, u.DeviceSDK, u.TgVersion, u.TargetABI = devModel.String, sdk.String, tg.String, abi.String
		u.SessionActivity, u.SessionID, u.SessionRegister = activity.Int64, session.Int64, register.Int64
		if err := fn(u); err != nil {
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

// Search returns the users of page whose SessionID or DeviceMac is query,
// or whose DeviceModel starts with it (any case); every user when query
// is empty. Ordered by id.
func (r *Users) Search(ctx context.Context, query string, page model.Page) ([]model.User, error) {
	q := r.db.WithContext(ctx).Where("id > ?", page.After).Order("id")
	if query != "" {
		like := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(strings.ToLower(query)) + "%"
		cond := r.db.Where("device_mac = ?", query).Or(`LOWER(device_model) LIKE ? ESCAPE '\'`, like)
		if n, err := strconv.ParseInt(query, 10, 64); err == nil {
			cond = cond.Or("session_id = ?", n)
		}
		q = q.Where(cond)
	}
	if page.Limit > 0 {
		q = q.Limit(page.Limit)
	}
	var rows []userRow
	if err := q.Find(&rows).Error; err != nil {
		return nil, translate(err, "user search")
	}
	out := make([]model.User, len(rows))
	for i, row := range rows {
		out[i] = toUser(row)
	}
	return out, nil
}
