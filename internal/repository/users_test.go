package repository

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/model"
)

func report(session int64, mac, version string) model.DeviceReport {
	return model.DeviceReport{User: model.User{SessionID: session, DeviceMac: mac, AppVersion: version, DeviceModel: "m-" + version}, ABI: "arm64"}
}

func openMigrated(tb testing.TB, dsn string) *Users {
	tb.Helper()
	db, err := OpenMigrated(context.Background(), dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { Close(db) })
	for _, v := range []string{"1_00", "2_00", "3_00"} {
		if err := db.Exec("INSERT INTO apps (app_version, target_abi, uploads, rollout, yanked, downloads, file_path) VALUES (?, '', 0, 100, false, 0, ?)", v, v+"/a.apk").Error; err != nil {
			tb.Fatal(err)
		}
	}
	u := NewUsers(db)
	tb.Cleanup(u.Close)
	return u
}

func uploads(tb testing.TB, u *Users) map[string]int64 {
	tb.Helper()
	var rows []struct {
		AppVersion string
		Uploads    int64
	}
	if err := u.db.Raw("SELECT app_version, uploads FROM apps ORDER BY app_version").Scan(&rows).Error; err != nil {
		tb.Fatal(err)
	}
	out := map[string]int64{}
	for _, r := range rows {
		out[r.AppVersion] = r.Uploads
	}
	return out
}

// TestUsers_UpsertBatch checks a batch behaves as its reports one after
// the other: duplicates, version changes, known and new devices.
func TestUsers_UpsertBatch(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		u := openMigrated(t, dsn)
		if _, err := u.UpsertBatch(ctx, []model.DeviceReport{report(3, "c", "1_00")}); err != nil {
			t.Fatal(err)
		}
		got, err := u.UpsertBatch(ctx, []model.DeviceReport{
			report(1, "a", "1_00"), // new: 1_00 +1
			report(1, "a", "2_00"), // changed: 2_00 +1
			report(2, "b", "1_00"), // new: 1_00 +1
			report(1, "a", "2_00"), // same: nothing
			report(3, "c", "1_00"), // known, same: nothing
			report(3, "c", "3_00"), // known, changed: 3_00 +1
		})
		if err != nil {
			t.Fatal(err)
		}
		if got[0].ID != got[1].ID || got[0].ID != got[3].ID || got[4].ID != 1 || got[2].ID == got[0].ID {
			t.Errorf("ids = %d %d %d %d %d %d", got[0].ID, got[1].ID, got[2].ID, got[3].ID, got[4].ID, got[5].ID)
		}
		if want := map[string]int64{"1_00": 3, "2_00": 1, "3_00": 1}; fmt.Sprint(uploads(t, u)) != fmt.Sprint(want) {
			t.Errorf("uploads = %v, want %v", uploads(t, u), want)
		}
		var rows []userRow
		u.db.Order("id").Find(&rows)
		if len(rows) != 3 || rows[0].AppVersion != "3_00" || rows[0].DeviceModel != "m-3_00" || rows[1].AppVersion != "2_00" {
			t.Errorf("rows = %+v", rows)
		}
	})
}

// TestUsers_UpsertBatch_concurrentWriters runs the same batches from
// several writers at once, each with its own connection as several servers
// would: every device is one row, inserted once, and each version it moves
// to is counted exactly once, however the transactions interleave.
func TestUsers_UpsertBatch_concurrentWriters(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		u := openMigrated(t, dsn)
		const devices, writers = 80, 6
		versions := []string{"1_00", "2_00", "3_00"}
		// phase moves device d to versions[(d+shift)%3], from every writer
		// at once: each batch touches every release row.
		phase := func(shift int) {
			var wg sync.WaitGroup
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var batch []model.DeviceReport
					for d := range devices {
						if w%2 == 1 {
							d = devices - 1 - d // the other order too: locks must not deadlock
						}
						batch = append(batch, report(int64(d), fmt.Sprint("mac-", d), versions[(d+shift)%len(versions)]))
					}
					wu := NewUsers(u.db)
					defer wu.Close()
					if _, err := wu.UpsertBatch(ctx, batch); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
		}
		phase(0) // every writer inserts the same new devices
		phase(1) // every writer moves them to the same new versions
		var n int64
		u.db.Table("users").Count(&n)
		if n != devices {
			t.Errorf("users = %d, want %d", n, devices)
		}
		// Each device is counted once on each of the two versions it had.
		want := map[string]int64{}
		for d := range devices {
			want[versions[d%3]]++
			want[versions[(d+1)%3]]++
		}
		if fmt.Sprint(uploads(t, u)) != fmt.Sprint(want) {
			t.Errorf("uploads = %v, want %v", uploads(t, u), want)
		}
	})
}

// TestUsers_UpsertBatch_insertedMeanwhile writes devices that another
// transaction inserts while the batch waits for it: each such device is
// still one row, holding the batch's report, and counted only if the batch
// changed its version.
func TestUsers_UpsertBatch_insertedMeanwhile(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		u := openMigrated(t, dsn)
		other := u.db.Begin()
		for _, row := range []struct {
			session int64
			version string
		}{{1, "1_00"}, {2, "2_00"}} {
			if err := other.Exec("INSERT INTO users (session_id, device_mac, app_version) VALUES (?, 'm', ?)", row.session, row.version).Error; err != nil {
				t.Fatal(err)
			}
		}
		done := make(chan error, 1)
		go func() {
			_, err := u.UpsertBatch(ctx, []model.DeviceReport{
				report(1, "m", "1_00"), // inserted meanwhile on the same version: nothing
				report(2, "m", "1_00"), // inserted meanwhile on 2_00: 1_00 +1
				report(3, "m", "1_00"), // new: 1_00 +1
			})
			done <- err
		}()
		if u.db.Dialector.Name() == "postgres" {
			waitForLockWaiter(t, u)
		} else {
			time.Sleep(100 * time.Millisecond) // SQLite: the batch waits on the busy timeout
		}
		if err := other.Commit().Error; err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		var rows []userRow
		u.db.Order("session_id").Find(&rows)
		if len(rows) != 3 || rows[0].DeviceModel != "m-1_00" || rows[1].AppVersion != "1_00" || rows[1].DeviceModel != "m-1_00" {
			t.Errorf("rows = %+v", rows)
		}
		if want := map[string]int64{"1_00": 2, "2_00": 0, "3_00": 0}; fmt.Sprint(uploads(t, u)) != fmt.Sprint(want) {
			t.Errorf("uploads = %v, want %v", uploads(t, u), want)
		}
	})
}

// TestUsers_UpsertBatch_otherSequence: a users table whose ids come from a
// sequence not named users_id_seq (an earlier server's, a restored dump)
// gets its new ids from that sequence.
func TestUsers_UpsertBatch_otherSequence(t *testing.T) {
	ctx := context.Background()
	u := openMigrated(t, dbtest.Postgres(t))
	for _, q := range []string{
		`ALTER SEQUENCE users_id_seq RENAME TO "Device ids"`,
		`SELECT setval('"Device ids"', 41)`,
	} {
		if err := u.db.Exec(q).Error; err != nil {
			t.Fatal(err)
		}
	}
	got, err := u.UpsertBatch(ctx, []model.DeviceReport{report(1, "a", "1_00"), report(2, "b", "1_00")})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].ID != 42 || got[1].ID != 43 {
		t.Errorf("ids = %d, %d; want 42, 43 from the renamed sequence", got[0].ID, got[1].ID)
	}
}
