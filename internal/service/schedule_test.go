package service_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/repository"
	"github.com/wemesse/server/internal/service"
	"github.com/wemesse/server/internal/storage"
)

// newReleases is a Releases on db with files on disk and the clock now.
func newReleases(tb testing.TB, db *gorm.DB, now func() time.Time) *service.Releases {
	tb.Helper()
	disk, err := storage.NewDisk(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	return service.NewReleases(repository.NewReleases(db), disk, service.ReleasesConfig{
		PublicURL: "http://x/uploads", MaxUpload: 1 << 20, DefaultABI: "arm64", Key: storage.Key, SafeName: storage.SafeName,
		Tracks: model.Tracks{"beta", "stable"}, Now: now,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func upload(tb testing.TB, releases *service.Releases, version string, fields ...string) model.Release {
	tb.Helper()
	f := form{{Field: "appVersion", Body: strings.NewReader(version)}, {Field: "tmpFile", FileName: "w.apk", Body: strings.NewReader("build " + version)}}
	for i := 0; i+1 < len(fields); i += 2 {
		f = append(f, service.Part{Field: fields[i], Body: strings.NewReader(fields[i+1])})
	}
	rel, err := releases.Upload(context.Background(), &f)
	if err != nil {
		tb.Fatal(err)
	}
	return rel
}

// TestReleases_haltResumeSameDevices halts a partial rollout and resumes it:
// over 10,000 device ids, the halt offers it to none, and the resume to
// exactly the devices that had it before, which are those model.Bucket
// puts inside the rollout.
func TestReleases_haltResumeSameDevices(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		releases := newReleases(t, openDB(t, dsn), time.Now)
		rel := upload(t, releases, "3000_01", "rollout", "37")
		offered := func() map[string]bool {
			set := map[string]bool{}
			for i := range 10000 {
				device := fmt.Sprint("device-", i)
				got, _, err := releases.Check(ctx, "2999_01", device, "", 0)
				switch {
				case err == nil && got.ID == rel.ID:
					set[device] = true
				case model.ErrorCode(err) != model.NotFound:
					t.Fatalf("Check(%s) = %v, %v", device, got.ID, err)
				}
			}
			return set
		}
		before := offered()
		for i := range 10000 {
			device := fmt.Sprint("device-", i)
			if before[device] != (model.Bucket(device, rel.Version) < 37) {
				t.Fatalf("device %s: offered %v, but its bucket is %d", device, before[device], model.Bucket(device, rel.Version))
			}
		}
		halt, resume := true, false
		if _, err := releases.Edit(ctx, rel.ID, model.ReleasePatch{Halted: &halt}); err != nil {
			t.Fatal(err)
		}
		if during := offered(); len(during) != 0 {
			t.Fatalf("a halted release reached %d devices", len(during))
		}
		resumed, err := releases.Edit(ctx, rel.ID, model.ReleasePatch{Halted: &resume})
		if err != nil || resumed.Rollout != 37 {
			t.Fatalf("resume: rollout %d, %v", resumed.Rollout, err)
		}
		after := offered()
		if len(after) != len(before) {
			t.Fatalf("before the halt %d devices, after the resume %d", len(before), len(after))
		}
		for d := range before {
			if !after[d] {
				t.Fatalf("device %s lost the release across halt and resume", d)
			}
		}
		t.Logf("a 37%% rollout reached %d of 10000 devices before the halt and after the resume", len(before))
	})
}

// TestReleases_ApplyDue_reportsOnlyCommitted: a step whose transaction
// fails at its end is rolled back, and ApplyDue neither reports it as
// applied (the server would log it) nor leaves it applied. The failing
// statement is the last one: on PostgreSQL the announcement to the other
// servers (pg_notify), on SQLite, which announces nothing, the audit record.
func TestReleases_ApplyDue_reportsOnlyCommitted(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		start := time.Now()
		releases := newReleases(t, openDB(t, dsn), func() time.Time { return start })
		rel := upload(t, releases, "3000_01", "rollout", "1")
		steps := []model.Step{{At: start.Add(time.Minute), Rollout: 50}}
		if _, err := releases.Edit(ctx, rel.ID, model.ReleasePatch{Schedule: &steps}); err != nil {
			t.Fatal(err)
		}
		db := openDB(t, dsn)
		boom := errors.New("injected failure")
		fail := func(tx *gorm.DB) {
			if strings.Contains(tx.Statement.SQL.String(), "pg_notify") || (db.Dialector.Name() != "postgres" && tx.Statement.Table == "audit") {
				_ = tx.AddError(boom)
			}
		}
		if err := db.Callback().Raw().Before("gorm:raw").Register("test:fail_notify", fail); err != nil {
			t.Fatal(err)
		}
		if err := db.Callback().Create().Before("gorm:create").Register("test:fail_audit", fail); err != nil {
			t.Fatal(err)
		}
		got, err := repository.NewReleases(db).ApplyDue(ctx, start.Add(time.Hour), model.ChangeBy(ctx, model.ActionReleaseStep))
		if err == nil || len(got) != 0 {
			t.Fatalf("ApplyDue = %+v, %v; want no step and the failure", got, err)
		}
		after, err := repository.NewReleases(openDB(t, dsn)).Get(ctx, rel.ID)
		if err != nil {
			t.Fatal(err)
		}
		if after.Rollout != 1 || len(after.Schedule) != 1 || after.Schedule[0].State != model.StepPending {
			t.Errorf("after the failed step: rollout %d, schedule %+v; want 1 and the step still pending", after.Rollout, after.Schedule)
		}
	})
}

// TestReleases_ApplyDue_onceAcrossServers: two servers' stores on one
// database race to apply ten due steps from several goroutines each; every
// step is applied exactly once, in order.
func TestReleases_ApplyDue_onceAcrossServers(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		start := time.Now()
		clock := start
		releases := newReleases(t, openDB(t, dsn), func() time.Time { return clock })
		rel := upload(t, releases, "3000_01", "rollout", "1")
		var steps []model.Step
		for i := range 10 {
			steps = append(steps, model.Step{At: start.Add(time.Duration(i+1) * time.Minute), Rollout: 10 * (i + 1)})
		}
		if _, err := releases.Edit(ctx, rel.ID, model.ReleasePatch{Schedule: &steps}); err != nil {
			t.Fatal(err)
		}
		stores := []*repository.Releases{repository.NewReleases(openDB(t, dsn)), repository.NewReleases(openDB(t, dsn))}
		due := start.Add(time.Hour)
		var (
			mu      sync.Mutex
			applied []model.AppliedStep
			wg      sync.WaitGroup
		)
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 3 {
					got, err := stores[g%2].ApplyDue(ctx, due, model.ChangeBy(ctx, model.ActionReleaseStep))
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					applied = append(applied, got...)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(applied) != len(steps) {
			t.Fatalf("%d steps applied, want each of %d once", len(applied), len(steps))
		}
		seen := map[int]bool{}
		for _, a := range applied {
			if seen[a.Rollout] {
				t.Errorf("step to %d%% applied twice", a.Rollout)
			}
			seen[a.Rollout] = true
		}
		got, err := stores[0].Get(ctx, rel.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Rollout != 100 {
			t.Errorf("rollout %d after every step, want the last step's 100", got.Rollout)
		}
		for i, s := range got.Schedule {
			if s.State != model.StepApplied {
				t.Errorf("step %d is %s, want applied", i+1, s.State)
			}
		}
	})
}
