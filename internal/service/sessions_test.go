package service_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/repository"
	"github.com/wemesse/server/internal/service"
)

// TestSessions checks console sessions on both databases: only admin
// secrets log in; a session ends when idle, at its absolute limit, on
// logout, and when its secret is revoked; another server on the same
// database accepts it.
func TestSessions(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := openDB(t, dsn)
		log := slog.New(slog.DiscardHandler)
		sigs := newSignatures(db, service.SignaturesConfig{Concurrency: 1, Wait: time.Second, CacheSize: 10, CacheTTL: time.Minute})
		admin, adminSig, err := sigs.Create(ctx, model.RoleAdmin)
		if err != nil {
			t.Fatal(err)
		}
		client, _, err := sigs.Create(ctx, model.RoleClient)
		if err != nil {
			t.Fatal(err)
		}
		clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
		cfg := service.SessionsConfig{Idle: 30 * time.Minute, Max: 2 * time.Hour}
		sessions := service.NewSessions(repository.NewSessions(db), sigs, cfg, clk.now, log)
		other := service.NewSessions(repository.NewSessions(db), sigs, cfg, clk.now, log) // another replica

		if _, _, err := sessions.Login(ctx, client); model.ErrorCode(err) != model.Forbidden {
			t.Errorf("client secret: err = %v, want forbidden", err)
		}
		if _, _, err := sessions.Login(ctx, "wrong"); model.ErrorCode(err) != model.Unauthorized {
			t.Errorf("wrong secret: err = %v, want unauthorized", err)
		}
		token, _, err := sessions.Login(ctx, admin)
		if err != nil {
			t.Fatal(err)
		}
		if sig, err := other.Check(ctx, token); err != nil || sig.ID != adminSig.ID {
			t.Fatalf("another server: %v, %v; want the admin signature", sig, err)
		}
		// Used every 20 minutes, it lives past the idle limit, but not past
		// the absolute one.
		for range 5 {
			clk.add(20 * time.Minute)
			if _, err := sessions.Check(ctx, token); err != nil {
				t.Fatalf("at %s: %v", clk.now(), err)
			}
		}
		clk.add(20 * time.Minute) // two hours after login
		if _, err := sessions.Check(ctx, token); model.ErrorCode(err) != model.Unauthorized {
			t.Errorf("after the absolute limit: err = %v, want unauthorized", err)
		}

		token, _, err = sessions.Login(ctx, admin)
		if err != nil {
			t.Fatal(err)
		}
		clk.add(31 * time.Minute)
		if _, err := sessions.Check(ctx, token); model.ErrorCode(err) != model.Unauthorized {
			t.Errorf("idle 31 minutes: err = %v, want unauthorized", err)
		}

		token, _, _ = sessions.Login(ctx, admin)
		if err := sessions.Logout(ctx, token); err != nil {
			t.Fatal(err)
		}
		if _, err := sessions.Check(ctx, token); model.ErrorCode(err) != model.Unauthorized {
			t.Errorf("after logout: err = %v, want unauthorized", err)
		}

		token, _, _ = sessions.Login(ctx, admin)
		if err := sigs.Revoke(ctx, adminSig.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := sessions.Check(ctx, token); model.ErrorCode(err) != model.Unauthorized {
			t.Errorf("after its secret was revoked: err = %v, want unauthorized", err)
		}
		var n int64
		db.Table("console_sessions").Count(&n)
		if n != 0 {
			t.Errorf("%d sessions left in the table after they all ended, want 0", n)
		}
	})
}
