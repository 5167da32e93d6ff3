package service_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/repository"
	"github.com/wemesse/server/internal/service"
)

// clock is a settable time for the history job.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time)     { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func (c *clock) add(d time.Duration) { c.set(c.now().Add(d)) }

// historyFixture makes two releases created on March 5 (1_0, universal)
// and March 7 (2_0, arm64), and devices registered and seen over March.
func historyFixture(t *testing.T, dsn string) (*gorm.DB, *repository.Releases) {
	t.Helper()
	ctx := context.Background()
	db := openDB(t, dsn)
	releases := repository.NewReleases(db)
	for _, r := range []struct {
		version, abi string
		created      time.Time
	}{
		{"1_0", "", time.Date(2026, 3, 5, 9, 0, 0, 0, time.UTC)},
		{"2_0", "arm64", time.Date(2026, 3, 7, 18, 0, 0, 0, time.UTC)},
	} {
		rel := model.Release{Version: mustVersion(t, r.version), TargetABI: r.abi, Name: "a.apk", Rollout: 100, FilePath: r.version}
		if err := releases.Create(ctx, &rel, "", nil, func() error { return nil }, model.ChangeBy(ctx, model.ActionReleaseUpload)); err != nil {
			t.Fatal(err)
		}
		if err := db.Exec("UPDATE apps SET created_at = ?, downloads = ? WHERE id = ?", r.created, rel.ID*7, rel.ID).Error; err != nil {
			t.Fatal(err)
		}
	}
	// Device i registers on March 1 + i%12 days and was last seen i%20
	// days after; versions and ABIs vary, some on no release at all.
	base := time.Date(2026, 3, 1, 6, 0, 0, 0, time.UTC)
	for i := range 120 {
		reg := base.Add(time.Duration(i%12)*24*time.Hour + time.Duration(i)*time.Minute)
		seen := reg.Add(time.Duration(i%20) * 24 * time.Hour)
		version := []string{"1_0", "2_0", "2_0", "3_0"}[i%4]
		abi := []string{"", "arm64", "x86"}[i%3]
		if err := db.Exec(`INSERT INTO users (session_id, device_mac, app_version, target_abi, session_register, session_activity)
			VALUES (?, ?, ?, ?, ?, ?)`, i+1, fmt.Sprint("mac", i), version, abi, reg.Unix(), seen.Unix()).Error; err != nil {
			t.Fatal(err)
		}
	}
	return db, releases
}

// sqlCounts counts one release's devices as of end straight from users:
// 1_0 is universal, so it counts every 1_0 device; 2_0 exists for arm64
// only, the default ABI, so it counts 2_0 devices on arm64 or none.
func sqlCounts(t *testing.T, db *gorm.DB, version string, start, end time.Time) (devices, active, fresh int64) {
	t.Helper()
	abis := []string{"", "arm64", "x86"}
	if version == "2_0" { // 1_0 and 3_0 are universal
		abis = []string{"", "arm64"}
	}
	var row struct{ Devices, Active, Fresh int64 }
	err := db.Raw(`SELECT
		COUNT(CASE WHEN session_register < @end THEN 1 END) AS devices,
		COUNT(CASE WHEN session_register < @end AND session_activity >= @active THEN 1 END) AS active,
		COUNT(CASE WHEN session_register >= @start AND session_register < @end THEN 1 END) AS fresh
		FROM users WHERE app_version = @version AND target_abi IN @abis`,
		map[string]any{"start": start.Unix(), "end": end.Unix(), "active": end.Add(-30 * 24 * time.Hour).Unix(), "version": version, "abis": abis}).
		Scan(&row).Error
	if err != nil {
		t.Fatal(err)
	}
	return row.Devices, row.Active, row.Fresh
}

func mustVersion(tb testing.TB, s string) model.Version {
	tb.Helper()
	v, err := model.ParseVersion(s)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

func recorded(t *testing.T, h *repository.History) []model.ReleaseDay {
	t.Helper()
	rows, err := h.Days(context.Background(), time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), nil)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestHistory checks the daily record: the first run catches up from the
// first release's day to yesterday; each day matches direct SQL counts; a
// second run changes nothing; missed days are recorded on the next run;
// today is counted live.
func TestHistory(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db, releases := historyFixture(t, dsn)
		store := repository.NewHistory(db)
		clk := &clock{t: time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)}
		h := service.NewHistory(store, releases, service.HistoryConfig{DefaultABI: "arm64"}, clk.now, slog.New(slog.DiscardHandler))

		if err := h.Record(ctx); err != nil {
			t.Fatal(err)
		}
		first := recorded(t, store)
		checkAgainstSQL(t, db, clk.now(), first, time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC))

		t.Run("second_run_same_rows", func(t *testing.T) {
			if err := h.Record(ctx); err != nil {
				t.Fatal(err)
			}
			if again := recorded(t, store); !slices.Equal(again, first) {
				t.Errorf("a second run changed the rows:\n got %v\nwant %v", again, first)
			}
			// Saving a recorded day again replaces it rather than adding to it.
			day := time.Date(2026, 3, 8, 0, 0, 0, 0, time.UTC)
			var rows []model.ReleaseDay
			for _, r := range first {
				if r.Day.Equal(day) {
					rows = append(rows, r)
				}
			}
			if err := store.SaveDay(ctx, day, rows); err != nil {
				t.Fatal(err)
			}
			if again := recorded(t, store); !slices.Equal(again, first) {
				t.Errorf("saving a day again changed the rows:\n got %v\nwant %v", again, first)
			}
		})

		t.Run("catches_up_missed_days", func(t *testing.T) {
			clk.add(3 * 24 * time.Hour) // the server was down March 10 to 13
			if err := h.Record(ctx); err != nil {
				t.Fatal(err)
			}
			rows := recorded(t, store)
			if !slices.Equal(rows[:len(first)], first) {
				t.Errorf("catching up changed days already recorded")
			}
			checkAgainstSQL(t, db, clk.now(), rows, time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 12, 0, 0, 0, 0, time.UTC))
		})

		t.Run("servers_record_at_once", func(t *testing.T) {
			clk.add(2 * 24 * time.Hour) // two more days ended
			var wg sync.WaitGroup
			errs := make([]error, 4)
			for i := range errs {
				other := service.NewHistory(repository.NewHistory(db), releases, service.HistoryConfig{DefaultABI: "arm64"}, clk.now, slog.New(slog.DiscardHandler))
				wg.Go(func() { errs[i] = other.Record(ctx) })
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("server %d: %v", i, err)
				}
			}
			checkAgainstSQL(t, db, clk.now(), recorded(t, store), time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC))
			if err := h.Record(ctx); err != nil {
				t.Fatal(err)
			}
		})

		t.Run("today_is_live", func(t *testing.T) {
			days, err := h.Days(ctx, 30, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(days) != 30 || !days[29].Day.Equal(time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC)) || !days[0].Day.Equal(time.Date(2026, 2, 14, 0, 0, 0, 0, time.UTC)) {
				t.Fatalf("days run %v to %v (%d), want 2026-02-14 to 2026-03-15", days[0].Day, days[len(days)-1].Day, len(days))
			}
			if len(days[0].Releases) != 0 || len(days[19].Releases) != 1 || len(days[21].Releases) != 2 {
				t.Errorf("releases per day: Feb 14 %d, Mar 5 %d, Mar 7 %d; want 0, 1, 2", len(days[0].Releases), len(days[19].Releases), len(days[21].Releases))
			}
			before := days[29].Releases[0]
			now := clk.now()
			if err := db.Exec(`INSERT INTO users (session_id, device_mac, app_version, target_abi, session_register, session_activity)
				VALUES (9999, 'new', '1_0', '', ?, ?)`, now.Add(-time.Minute).Unix(), now.Unix()).Error; err != nil {
				t.Fatal(err)
			}
			days, err = h.Days(ctx, 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			after := days[0].Releases[0]
			if after.Devices != before.Devices+1 || after.NewDevices != before.NewDevices+1 || after.Active30d != before.Active30d+1 {
				t.Errorf("after a device registered today: %+v, want one more device, new and active than %+v", after, before)
			}
			checkAgainstSQL(t, db, clk.now(), days[0].Releases, days[0].Day, days[0].Day)
		})

		t.Run("new_release_shows_at_once", func(t *testing.T) {
			// Counted once an hour, today still follows the releases: 3_0,
			// uploaded after the count, gets its devices from that count.
			cached := service.NewHistory(store, releases, service.HistoryConfig{DefaultABI: "arm64", Live: time.Hour}, clk.now, slog.New(slog.DiscardHandler))
			before, err := cached.Today(ctx)
			if err != nil {
				t.Fatal(err)
			}
			rel := model.Release{Version: mustVersion(t, "3_0"), Name: "a.apk", Rollout: 100, FilePath: "3_0"}
			if err := releases.Create(ctx, &rel, "", nil, func() error { return nil }, model.ChangeBy(ctx, model.ActionReleaseUpload)); err != nil {
				t.Fatal(err)
			}
			after, err := cached.Today(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(after.Releases) != len(before.Releases)+1 {
				t.Fatalf("today lists %d releases after an upload, want %d", len(after.Releases), len(before.Releases)+1)
			}
			devices, _, _ := sqlCounts(t, db, "3_0", after.Day, clk.now().Add(time.Second))
			if got := after.Releases[len(after.Releases)-1]; got.ReleaseID != rel.ID || got.Devices != devices || devices == 0 {
				t.Errorf("the new release today: %+v, want id %d with the %d devices on 3_0", got, rel.ID, devices)
			}
		})

		t.Run("in_memory_list", func(t *testing.T) {
			// With the releases from memory (as serve runs it), today's
			// rows are added up once per count and list: the same rows
			// again until a reload replaces the list, which shows a new
			// release at once.
			var list []model.Release
			load := func() {
				var err error
				if list, err = releases.List(ctx); err != nil {
					t.Fatal(err)
				}
			}
			load()
			current := func(context.Context) ([]model.Release, error) { return list, nil }
			mem := service.NewHistory(store, releases, service.HistoryConfig{DefaultABI: "arm64", Live: time.Hour, Current: current}, clk.now, slog.New(slog.DiscardHandler))
			first, err := mem.Today(ctx)
			if err != nil {
				t.Fatal(err)
			}
			again, err := mem.Today(ctx)
			if err != nil || len(again.Releases) == 0 || &again.Releases[0] != &first.Releases[0] {
				t.Fatalf("a second view added today up again (%v), want the same rows", err)
			}
			rel := model.Release{Version: mustVersion(t, "4_0"), Name: "a.apk", Rollout: 100, FilePath: "4_0"}
			if err := releases.Create(ctx, &rel, "", nil, func() error { return nil }, model.ChangeBy(ctx, model.ActionReleaseUpload)); err != nil {
				t.Fatal(err)
			}
			load()
			after, err := mem.Today(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(after.Releases) != len(first.Releases)+1 || after.Releases[len(after.Releases)-1].ReleaseID != rel.ID {
				t.Errorf("after a reload today lists %+v, want the %d releases before and %d", after.Releases, len(first.Releases), rel.ID)
			}
		})

		t.Run("bounds", func(t *testing.T) {
			for _, n := range []int{0, -1, model.MaxHistoryDays + 1} {
				if _, err := h.Days(ctx, n, nil); model.ErrorCode(err) != model.Invalid {
					t.Errorf("Days(%d): err = %v, want invalid", n, err)
				}
			}
		})
	})
}

// checkAgainstSQL checks that rows hold every day from first to last, with
// the releases that existed at each day's end, and that each row equals
// the direct SQL counts. A day not over at now ends at now.
func checkAgainstSQL(t *testing.T, db *gorm.DB, now time.Time, rows []model.ReleaseDay, first, last time.Time) {
	t.Helper()
	byDay := map[time.Time][]model.ReleaseDay{}
	for _, r := range rows {
		byDay[r.Day] = append(byDay[r.Day], r)
	}
	for d := first; !d.After(last); d = d.Add(24 * time.Hour) {
		got := byDay[d]
		want := 1
		if !d.Before(time.Date(2026, 3, 7, 0, 0, 0, 0, time.UTC)) {
			want = 2
		}
		if len(got) != want {
			t.Errorf("%s: %d releases recorded, want %d", d.Format(time.DateOnly), len(got), want)
			continue
		}
		end := d.Add(24 * time.Hour)
		if end.After(now) {
			end = now
		}
		for _, r := range got {
			devices, active, fresh := sqlCounts(t, db, r.Version, d, end)
			if r.Devices != devices || r.Active30d != active || r.NewDevices != fresh || r.Downloads != r.ReleaseID*7 {
				t.Errorf("%s %s: recorded devices %d, active %d, new %d, downloads %d; SQL counts %d, %d, %d, %d",
					d.Format(time.DateOnly), r.Version, r.Devices, r.Active30d, r.NewDevices, r.Downloads, devices, active, fresh, r.ReleaseID*7)
			}
			if r.Devices == 0 && d.After(time.Date(2026, 3, 8, 0, 0, 0, 0, time.UTC)) {
				t.Errorf("%s %s: no devices; the fixture has some", d.Format(time.DateOnly), r.Version)
			}
		}
	}
}
