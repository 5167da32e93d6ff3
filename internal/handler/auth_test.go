package handler_test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/handler"
	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/service"
)

func TestSignatures(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newTestServer(t, dsn)
		guarded := []struct{ method, path string }{
			{"GET", "/api/v1/updates"}, {"POST", "/api/v1/updates"}, {"GET", "/api/v1/users"}, {"POST", "/api/v1/users"},
		}
		var first string
		for _, g := range guarded {
			for _, secret := range []string{"", "wrong", strings.Repeat("s", 10000), ts.admin + "x"} {
				resp, body := ts.do(g.method, g.path, secret, nil)
				msg := wantError(t, resp, body, http.StatusUnauthorized)
				if first == "" {
					first = msg
				}
				if msg != first {
					t.Errorf("%s %s with %.8q: message %q differs from %q", g.method, g.path, secret, msg, first)
				}
			}
		}
		t.Run("admin calls everything", func(t *testing.T) {
			for _, path := range []string{"/api/v1/updates", "/api/v1/users"} {
				if resp, body := ts.do("GET", path, ts.admin, nil); resp.StatusCode != 200 {
					t.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
				}
			}
			resp, body := ts.do("GET", "/api/v1/users", "", nil, "Authorization", "Bearer "+ts.admin)
			if resp.StatusCode != 200 {
				t.Errorf("Bearer: %d %s", resp.StatusCode, body)
			}
		})
		t.Run("client reports devices only", func(t *testing.T) {
			ts.mustUpload("1_00")
			if resp, body := ts.report("1_00", "m", 1); resp.StatusCode != 200 {
				t.Errorf("POST /users with the client secret: %d %s", resp.StatusCode, body)
			}
			for _, g := range guarded[:3] {
				body, ctype := form(t, "appVersion", "2_01", "tmpFile", "a.apk|x")
				resp, b := ts.do(g.method, g.path, ts.client, body, "Content-Type", ctype)
				wantError(t, resp, b, http.StatusForbidden)
			}
			if n := ts.count("apps"); n != 1 {
				t.Errorf("apps = %d after a client upload, want 1", n)
			}
		})
		t.Run("revocation reaches a server with a warm cache", func(t *testing.T) {
			ctx := context.Background()
			secret, sig, err := ts.sigs.Create(ctx, "admin")
			if err != nil {
				t.Fatal(err)
			}
			if resp, _ := ts.do("GET", "/api/v1/users", secret, nil); resp.StatusCode != 200 {
				t.Fatalf("new secret: %d", resp.StatusCode)
			}
			// Revoke through the store directly, as another process (the
			// CLI) would, so this server learns only from its refresh.
			if err := ts.db.Exec("DELETE FROM middlewares WHERE id = ?", sig.ID).Error; err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			for {
				resp, _ := ts.do("GET", "/api/v1/users", secret, nil)
				if resp.StatusCode == http.StatusUnauthorized {
					break
				}
				if time.Since(start) > 5*time.Second {
					t.Fatalf("revoked secret still accepted after %v", time.Since(start))
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
		t.Run("stored secrets are hashes", func(t *testing.T) {
			var hashes []string
			ts.db.Raw("SELECT signature FROM middlewares").Scan(&hashes)
			for _, h := range hashes {
				if !strings.HasPrefix(h, "$argon2id$") || strings.Contains(h, ts.admin) || strings.Contains(h, ts.client) {
					t.Errorf("stored signature %q is not an Argon2id hash of a secret", h)
				}
			}
		})
	})
}

func TestSignatures_failureRateLimit(t *testing.T) {
	ts := newTestServer(t, dbtest.SQLite(t), func(d *handler.Deps, _ *service.SignaturesConfig) { d.AuthFailuresPerMinute = 3 })
	ts.mustUpload("1_00") // warms the admin secret's cache entry
	for range 3 {
		resp, body := ts.do("GET", "/api/v1/users", "wrong", nil)
		wantError(t, resp, body, http.StatusUnauthorized)
	}
	resp, body := ts.report("1_00", "m", 1) // the client secret is not cached yet
	wantError(t, resp, body, http.StatusTooManyRequests)
	if resp.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	if resp, body := ts.do("GET", "/api/v1/users", ts.admin, nil); resp.StatusCode != 200 {
		t.Errorf("a cached secret from a limited address: %d %s, want 200", resp.StatusCode, body)
	}
}

func TestSignatures_busyHashingIs503(t *testing.T) {
	// A wait bound of 1ns has passed before any hashing slot is tried.
	ts := newTestServer(t, dbtest.SQLite(t), func(_ *handler.Deps, c *service.SignaturesConfig) { c.Wait = time.Nanosecond })
	// A wrong secret whose hint matches the admin's still needs a hash.
	s := "wrong"
	for i := 0; model.HintOf(s) != model.HintOf(ts.admin); i++ {
		s = fmt.Sprint("wrong-", i)
	}
	resp, body := ts.do("GET", "/api/v1/users", s, nil)
	wantError(t, resp, body, http.StatusServiceUnavailable)
	if resp.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
}

// TestSignatures_wrongSecretsDoNotHash checks a wrong secret whose hint
// matches no row is refused without trying to hash: with a wait bound that
// has always passed, any hashing would answer 503.
func TestSignatures_wrongSecretsDoNotHash(t *testing.T) {
	ts := newTestServer(t, dbtest.SQLite(t), func(_ *handler.Deps, c *service.SignaturesConfig) { c.Wait = time.Nanosecond })
	for i := 0; i < 50; i++ {
		s := fmt.Sprint("random-", i)
		if model.HintOf(s) == model.HintOf(ts.admin) || model.HintOf(s) == model.HintOf(ts.client) {
			continue
		}
		resp, body := ts.do("GET", "/api/v1/users", s, nil)
		wantError(t, resp, body, http.StatusUnauthorized)
	}
}

// TestSignatures_failureLimitBehindProxy checks the per-address failure
// limit uses X-Forwarded-For only from a trusted proxy.
func TestSignatures_failureLimitBehindProxy(t *testing.T) {
	for _, tt := range []struct {
		name    string
		trusted []netip.Prefix
		// whether the second client, after the first used its budget, is refused
		sharedBudget bool
	}{
		{"trusted proxy: each client has its own budget", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, false},
		{"untrusted peer: forwarded headers are ignored", nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t, dbtest.SQLite(t), func(d *handler.Deps, _ *service.SignaturesConfig) {
				d.AuthFailuresPerMinute, d.TrustedProxies = 3, tt.trusted
			})
			for range 3 {
				resp, body := ts.do("GET", "/api/v1/users", "wrong", nil, "X-Forwarded-For", "198.51.100.9, 203.0.113.5")
				wantError(t, resp, body, http.StatusUnauthorized)
			}
			resp, body := ts.do("GET", "/api/v1/users", "wrong", nil, "X-Forwarded-For", "203.0.113.5")
			wantError(t, resp, body, http.StatusTooManyRequests)
			resp, body = ts.do("GET", "/api/v1/users", "wrong", nil, "X-Forwarded-For", "203.0.113.6")
			want := http.StatusUnauthorized
			if tt.sharedBudget {
				want = http.StatusTooManyRequests
			}
			wantError(t, resp, body, want)
		})
	}
}
