package repository

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/model"
)

// TestDevicePipeline_ordered writes batches back to back, each sent while
// the ones before it may still be committing, and commits them only at the
// end: a device's reports land in the order written and every change of
// version is counted once.
func TestDevicePipeline_ordered(t *testing.T) {
	ctx := context.Background()
	u := openMigrated(t, dbtest.Postgres(t))
	versions := []string{"1_00", "2_00", "3_00"}
	var commits []func() ([]model.User, error)
	const batches = 60
	for i := range batches {
		commit, err := u.WriteBatch(ctx, []model.DeviceReport{
			report(1, "moving", versions[i%3]), // a change every batch
			report(int64(100+i), "new", "1_00"),
		})
		if err != nil {
			t.Fatal(err)
		}
		commits = append(commits, commit)
	}
	for i, commit := range commits {
		got, err := commit()
		if err != nil {
			t.Fatal(err)
		}
		if got[0].ID != 1 || got[1].ID != int64(i+2) {
			t.Fatalf("batch %d: ids %d, %d; want 1, %d (dense, in order)", i, got[0].ID, got[1].ID, i+2)
		}
	}
	var row userRow
	if err := u.db.Where("device_mac = ?", "moving").Take(&row).Error; err != nil {
		t.Fatal(err)
	}
	if want := versions[(batches-1)%3]; row.AppVersion != want {
		t.Errorf("moving device on %s, want the last report's %s", row.AppVersion, want)
	}
	want := map[string]int64{"1_00": batches/3 + batches, "2_00": batches / 3, "3_00": batches / 3}
	if fmt.Sprint(uploads(t, u)) != fmt.Sprint(want) {
		t.Errorf("uploads = %v, want %v", uploads(t, u), want)
	}
}

// TestDevicePipeline_genericPlanUsesIndex: the statement's generic plan,
// made while the table holds two analyzed rows, still reaches users through
// its unique index. A sequential scan, the cheaper plan for two rows, would
// read the whole table for every device as it grows, until the next ANALYZE.
func TestDevicePipeline_genericPlanUsesIndex(t *testing.T) {
	ctx := context.Background()
	dsn := dbtest.Postgres(t)
	u := openMigrated(t, dsn)
	if _, err := u.UpsertBatch(ctx, []model.DeviceReport{report(1, "a", "1_00"), report(2, "b", "1_00")}); err != nil {
		t.Fatal(err)
	}
	if err := u.db.Exec("ANALYZE users").Error; err != nil {
		t.Fatal(err)
	}
	sqlDB, err := u.db.DB()
	if err != nil {
		t.Fatal(err)
	}
	text, err := upsertSQL(ctx, sqlDB)
	if err != nil {
		t.Fatal(err)
	}
	p, err := newDevicePipeline(dsn, text)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	if err := p.prepare(ctx, pc); err != nil {
		t.Fatal(err)
	}
	results, err := pc.Exec(ctx, "SET plan_cache_mode = force_generic_plan; EXPLAIN EXECUTE "+pipeStatement+
		"('{1}', '{a}', '{en}', '{1_00}', '{en}', '{m}', '{34}', '{1}', '{1}', '{t}', '{x}', '{x}')").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var plan strings.Builder
	for _, row := range results[len(results)-1].Rows {
		plan.Write(row[0])
		plan.WriteByte('\n')
	}
	if strings.Contains(plan.String(), "Seq Scan on users") || !strings.Contains(plan.String(), "using idx_users_session_device on users") {
		t.Errorf("the generic plan does not look devices up through idx_users_session_device:\n%s", plan.String())
	}
}

// TestDevicePipeline_failedRound: a round the database rejects fails alone;
// the next one, on the same connection, is written.
func TestDevicePipeline_failedRound(t *testing.T) {
	ctx := context.Background()
	u := openMigrated(t, dbtest.Postgres(t))
	if _, err := u.UpsertBatch(ctx, []model.DeviceReport{report(1, "nul\x00byte", "1_00")}); err == nil {
		t.Fatal("a NUL byte in a text column was accepted")
	} else if model.ErrorCode(err) == model.Unavailable {
		t.Fatalf("rejected row reported as an unavailable database: %v", err)
	}
	got, err := u.UpsertBatch(ctx, []model.DeviceReport{report(2, "fine", "1_00")})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].ID == 0 {
		t.Errorf("no id for the round after the failed one")
	}
	if want := map[string]int64{"1_00": 1, "2_00": 0, "3_00": 0}; fmt.Sprint(uploads(t, u)) != fmt.Sprint(want) {
		t.Errorf("uploads = %v, want %v", uploads(t, u), want)
	}
}

// TestDevicePipeline_connectionLost ends the pipeline's backend while a
// round waits on a lock, then while the pipeline is idle: the waiting
// round fails as an unavailable database and leaves nothing behind, and
// the next rounds are written on a new connection.
func TestDevicePipeline_connectionLost(t *testing.T) {
	ctx := context.Background()
	u := openMigrated(t, dbtest.Postgres(t))
	terminate := func() {
		t.Helper()
		var n int64
		err := u.db.Raw("SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE 'WITH v AS MATERIALIZED%' AND pid <> pg_backend_pid()").Scan(&n).Error
		if err != nil || n != 1 {
			t.Fatalf("terminated %d pipeline backends (%v), want 1", n, err)
		}
	}
	if _, err := u.UpsertBatch(ctx, []model.DeviceReport{report(1, "a", "1_00")}); err != nil {
		t.Fatal(err)
	}

	// A round waiting for another transaction's row when its connection ends.
	other := u.db.Begin()
	if err := other.Exec("INSERT INTO users (session_id, device_mac, app_version) VALUES (9, 'held', '2_00')").Error; err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := u.UpsertBatch(ctx, []model.DeviceReport{report(9, "held", "1_00"), report(10, "b", "1_00")})
		done <- err
	}()
	waitForLockWaiter(t, u)
	terminate()
	select {
	case err := <-done:
		if model.ErrorCode(err) != model.Unavailable {
			t.Fatalf("round on a terminated connection: %v, want Unavailable", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the round never failed after its connection ended")
	}
	if err := other.Rollback().Error; err != nil {
		t.Fatal(err)
	}
	var n int64
	u.db.Table("users").Where("session_id IN (9, 10)").Count(&n)
	if want := map[string]int64{"1_00": 1, "2_00": 0, "3_00": 0}; n != 0 || fmt.Sprint(uploads(t, u)) != fmt.Sprint(want) {
		t.Errorf("after the failed round: %d of its rows, uploads %v; want none and %v", n, uploads(t, u), want)
	}

	// An idle connection ended: the next rounds find a new one. One sent
	// before the pipeline notices may fail, as unavailable.
	if _, err := u.UpsertBatch(ctx, []model.DeviceReport{report(11, "c", "1_00")}); err != nil {
		t.Fatal(err)
	}
	terminate()
	for try := 0; ; try++ {
		_, err := u.UpsertBatch(ctx, []model.DeviceReport{report(12, "d", "1_00")})
		if err == nil {
			break
		}
		if model.ErrorCode(err) != model.Unavailable || try == 3 {
			t.Fatalf("after the idle connection ended, try %d: %v", try, err)
		}
	}
	if want := map[string]int64{"1_00": 3, "2_00": 0, "3_00": 0}; fmt.Sprint(uploads(t, u)) != fmt.Sprint(want) {
		t.Errorf("uploads = %v, want %v", uploads(t, u), want)
	}
}

// TestDevicePipeline_deadline: a round still waiting when its context ends
// fails promptly, and leaves the pipeline usable.
func TestDevicePipeline_deadline(t *testing.T) {
	u := openMigrated(t, dbtest.Postgres(t))
	other := u.db.Begin()
	defer other.Rollback()
	if err := other.Exec("INSERT INTO users (session_id, device_mac, app_version) VALUES (9, 'held', '2_00')").Error; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := u.UpsertBatch(ctx, []model.DeviceReport{report(9, "held", "1_00")}); model.ErrorCode(err) != model.Unavailable {
		t.Fatalf("round past its deadline: %v, want Unavailable", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the round failed %v after its 300ms deadline", took)
	}
	other.Rollback()
	if _, err := u.UpsertBatch(context.Background(), []model.DeviceReport{report(9, "held", "1_00")}); err != nil {
		t.Fatal(err)
	}
}

// waitForLockWaiter waits until some transaction waits for a lock.
func waitForLockWaiter(t *testing.T, u *Users) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var waiting int64
		u.db.Raw("SELECT COUNT(*) FROM pg_locks WHERE NOT granted").Scan(&waiting)
		if waiting > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the round never waited for the other transaction")
		}
	}
}

// TestDevicePipeline_unprepared: with a DSN that asks pgx not to prepare
// statements (a pooler in transaction mode), each round parses its
// statement and is written all the same.
func TestDevicePipeline_unprepared(t *testing.T) {
	ctx := context.Background()
	dsn := dbtest.Postgres(t)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	u := openMigrated(t, dsn+sep+"default_query_exec_mode=simple_protocol")
	for i := range 3 {
		if _, err := u.UpsertBatch(ctx, []model.DeviceReport{report(1, "a", []string{"1_00", "2_00", "1_00"}[i])}); err != nil {
			t.Fatal(err)
		}
	}
	if u.pipe == nil || u.pipe.named {
		t.Fatal("the device pipeline prepared its statement despite simple_protocol")
	}
	if want := map[string]int64{"1_00": 2, "2_00": 1, "3_00": 0}; fmt.Sprint(uploads(t, u)) != fmt.Sprint(want) {
		t.Errorf("uploads = %v, want %v", uploads(t, u), want)
	}
}

// TestDevicePipeline_closed: after Close, a batch fails as an unavailable
// database, whether or not a batch was written before.
func TestDevicePipeline_closed(t *testing.T) {
	ctx := context.Background()
	for _, used := range []bool{false, true} {
		u := openMigrated(t, dbtest.Postgres(t))
		if used {
			if _, err := u.UpsertBatch(ctx, []model.DeviceReport{report(1, "a", "1_00")}); err != nil {
				t.Fatal(err)
			}
		}
		u.Close()
		if _, err := u.UpsertBatch(ctx, []model.DeviceReport{report(2, "b", "1_00")}); model.ErrorCode(err) != model.Unavailable {
			t.Errorf("used %v: a batch after Close: %v, want Unavailable", used, err)
		}
	}
}
