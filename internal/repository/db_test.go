package repository

import (
	"context"
	"testing"
	"time"

	"github.com/wemesse/server/internal/dbtest"
)

// TestPing_deadIdleConnections: after an outage the pool holds idle
// connections whose backends are gone; Ping still reports the database
// that answers again as up.
func TestPing_deadIdleConnections(t *testing.T) {
	ctx := context.Background()
	dsn := dbtest.Postgres(t)
	db, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer Close(db)
	sqlDB, _ := db.DB()
	const idle = 5
	// Idle connections in the pool, each just used: the driver checks a
	// connection it hands out only when it has been idle for a second.
	for range 2 {
		conns := make([]interface{ Close() error }, idle)
		for i := range conns {
			c, err := sqlDB.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			conns[i] = c
		}
		for _, c := range conns {
			c.Close()
		}
	}
	admin, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer Close(admin)
	var ended int64
	err = admin.Raw("SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()").Scan(&ended).Error
	if err != nil || ended < idle {
		t.Fatalf("ended %d backends (%v), want at least %d", ended, err, idle)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var left int64
		admin.Raw("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()").Scan(&left)
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d backends still there", left)
		}
	}
	if err := Ping(ctx, db); err != nil {
		t.Errorf("Ping with %d dead idle connections: %v", idle, err)
	}
}
