package repository

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/wemesse/server/internal/model"
)

// dayLayout is how release_days writes a day.
const dayLayout = time.DateOnly

// historyLock is the PostgreSQL advisory lock key held while a server
// records days, so that one server of a cluster does it.
const historyLock = 0x77656d66 // "wemf"

// History stores the daily adoption record.
type History struct{ db *gorm.DB }

// NewHistory returns a History on db.
func NewHistory(db *gorm.DB) *History { return &History{db: db} }

// dayCountsQuery counts, per version and ABI, the devices registered
// before @end, those of them seen at or after @active, and those
// registered in [@start, @end). One pass over users.
const dayCountsQuery = `SELECT COALESCE(app_version, '') AS version, COALESCE(target_abi, '') AS target_abi,
	COUNT(CASE WHEN COALESCE(session_register, 0) < @end THEN 1 END) AS devices,
	COUNT(CASE WHEN COALESCE(session_register, 0) < @end AND session_activity >= @active THEN 1 END) AS active30d,
	COUNT(CASE WHEN session_register >= @start AND session_register < @end THEN 1 END) AS new_devices
	FROM users GROUP BY COALESCE(app_version, ''), COALESCE(target_abi, '')`

// DayCounts counts the devices per version and ABI as of end: registered
// before it, seen since active, and registered in [start, end). Times are
// Unix seconds.
func (h *History) DayCounts(ctx context.Context, start, end, active int64) ([]model.DayCount, error) {
	var out []model.DayCount
	err := h.db.WithContext(ctx).Raw(dayCountsQuery,
		map[string]any{"start": start, "end": end, "active": active}).Scan(&out).Error
	return out, translate(err, "day counts")
}

// LastDay returns the latest recorded day; ok is false when none is.
func (h *History) LastDay(ctx context.Context) (day time.Time, ok bool, err error) {
	var last *string
	if err := h.db.WithContext(ctx).Model(&releaseDayRow{}).Select("MAX(day)").Scan(&last).Error; err != nil {
		return time.Time{}, false, translate(err, "last recorded day")
	}
	if last == nil {
		return time.Time{}, false, nil
	}
	day, err = time.Parse(dayLayout, *last)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("repository: last recorded day %q: %w", *last, err)
	}
	return day, true, nil
}

// SaveDay replaces day's rows with rows, in one transaction: saving a day
// again leaves it as the last save wrote it.
func (h *History) SaveDay(ctx context.Context, day time.Time, rows []model.ReleaseDay) error {
	d := day.UTC().Format(dayLayout)
	err := h.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Where("day = ?", d).Delete(&releaseDayRow{}).Error; err != nil {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		out := make([]releaseDayRow, len(rows))
		for i, r := range rows {
			out[i] = releaseDayRow{Day: d, ReleaseID: r.ReleaseID, Version: r.Version, TargetABI: r.TargetABI,
				Devices: r.Devices, Active30d: r.Active30d, Downloads: r.Downloads, NewDevices: r.NewDevices}
		}
		return tx.Clauses(clause.OnConflict{UpdateAll: true}).CreateInBatches(out, 500).Error
	})
	return translate(err, "history day")
}

// Days returns the recorded rows of the days from through to, ordered by
// day and release id; with ids, only those releases' rows.
func (h *History) Days(ctx context.Context, from, to time.Time, ids []int64) ([]model.ReleaseDay, error) {
	q := h.db.WithContext(ctx).Where("day >= ? AND day <= ?", from.UTC().Format(dayLayout), to.UTC().Format(dayLayout))
	if ids != nil {
		if len(ids) == 0 {
			return nil, nil
		}
		q = q.Where("release_id IN ?", ids)
	}
	var rows []releaseDayRow
	if err := q.Order("day, release_id").Find(&rows).Error; err != nil {
		return nil, translate(err, "history")
	}
	return toReleaseDays(rows)
}

func toReleaseDays(rows []releaseDayRow) ([]model.ReleaseDay, error) {
	out := make([]model.ReleaseDay, 0, len(rows))
	for _, r := range rows {
		day, err := time.Parse(dayLayout, r.Day)
		if err != nil {
			return nil, fmt.Errorf("repository: history day %q: %w", r.Day, err)
		}
		out = append(out, model.ReleaseDay{Day: day, ReleaseID: r.ReleaseID, Version: r.Version, TargetABI: r.TargetABI,
			Devices: r.Devices, Active30d: r.Active30d, Downloads: r.Downloads, NewDevices: r.NewDevices})
	}
	return out, nil
}

// DayTotals returns, per recorded day from through to, the sums over
// every release, ordered by day; ReleaseID is 0.
func (h *History) DayTotals(ctx context.Context, from, to time.Time) ([]model.ReleaseDay, error) {
	var rows []releaseDayRow
	err := h.db.WithContext(ctx).Model(&releaseDayRow{}).
		Select("day, SUM(devices) AS devices, SUM(active30d) AS active30d, SUM(downloads) AS downloads, SUM(new_devices) AS new_devices").
		Where("day >= ? AND day <= ?", from.UTC().Format(dayLayout), to.UTC().Format(dayLayout)).
		Group("day").Order("day").Scan(&rows).Error
	if err != nil {
		return nil, translate(err, "history totals")
	}
	return toReleaseDays(rows)
}

// Exclusive runs fn while holding the cluster-wide history lock and
// reports true; on PostgreSQL, when another server holds it, it runs
// nothing and reports false. SQLite has one writer, so fn just runs.
func (h *History) Exclusive(ctx context.Context, fn func(ctx context.Context) error) (ran bool, err error) {
	if h.db.Dialector.Name() != "postgres" {
		return true, fn(ctx)
	}
	err = h.db.WithContext(ctx).Connection(func(conn *gorm.DB) error {
		var got bool
		if err := conn.Raw("SELECT pg_try_advisory_lock(?)", historyLock).Scan(&got).Error; err != nil {
			return translate(err, "history lock")
		}
		if !got {
			return nil
		}
		// Unlock even when ctx has ended: the lock belongs to the pooled
		// connection, which outlives this call.
		defer conn.WithContext(context.WithoutCancel(ctx)).Exec("SELECT pg_advisory_unlock(?)", historyLock)
		ran = true
		return fn(ctx)
	})
	return ran, err
}
