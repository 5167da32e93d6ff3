package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/s3test"
)

// TestProcess_twoServers runs two server processes on one PostgreSQL
// database and one S3-compatible store (a real versitygw): a release
// uploaded through A downloads through B, whole and by range, and B offers
// it within a second; concurrent device reports spread over both give exact
// rows and counts; a signature revoked through the CLI stops working on both
// within a second.
func TestProcess_twoServers(t *testing.T) {
	bin := buildBinary(t)
	const secret = "two-servers-secret"
	env := s3Env(t, dbtest.Postgres(t), s3test.Bucket(t), "builds")
	env["WEMESSE_SIGNATURE"] = secret
	env["WEMESSE_ARGON2_MEMORY"] = "1024" // also for the CLI below
	// Longer than the test's bounds, so only notifications can explain a prompt change.
	env["WEMESSE_RELEASES_REFRESH"], env["WEMESSE_AUTH_REFRESH"] = "1m", "1m"
	a, b := startProcess(t, bin, env), startProcess(t, bin, env)

	content := strings.Repeat("shared build ", 100000)
	began := time.Now()
	uploadBuild(t, a, secret, "2264_00", content)
	for {
		code, body := get(t, b, "/api/v1/updates/2263_00", "")
		if code == 200 && strings.Contains(string(body), `"Version":"2264_00"`) {
			break
		}
		if time.Since(began) > time.Second {
			t.Fatalf("B did not offer A's upload within 1s: %d %s", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("B offered A's upload %v after the upload began", time.Since(began))
	if code, body := get(t, b, "/uploads/2264_00/wemesse.apk", ""); code != 200 || string(body) != content {
		t.Errorf("download through B: %d, %d bytes", code, len(body))
	}
	req, _ := http.NewRequest("GET", b.base+"/uploads/2264_00/wemesse.apk", nil)
	req.Header.Set("Range", "bytes=1000-1999")
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || string(part) != content[1000:2000] {
		t.Errorf("range through B: %d, %d bytes", resp.StatusCode, len(part))
	}

	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := []*server{a, b}[i%2]
			// 100 devices, each reported twice, once through each server.
			body := fmt.Sprintf(`{"SessionID": %d, "AppVersion": "2264_00", "DeviceMac": "m"}`, i/2+1)
			req, _ := http.NewRequest("POST", s.base+"/api/v1/users", strings.NewReader(body))
			req.Header.Set("signature", secret)
			resp, err := s.client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("report %d: %d", i, resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	if _, body := get(t, a, "/api/v1/updates", secret); !strings.Contains(string(body), `"Uploads":100,`) {
		t.Errorf("100 devices reported twice over two servers: %s, want Uploads 100", body)
	}
	if _, body := get(t, b, "/api/v1/users?limit=100000", secret); strings.Count(string(body), `"ID"`) != 100 {
		t.Errorf("%d users, want 100", strings.Count(string(body), `"ID"`))
	}

	out, err := signature(t, env, "create")
	if err != nil {
		t.Fatal(err)
	}
	extra := lastLine(out)
	for _, s := range []*server{a, b} {
		if code, _ := get(t, s, "/api/v1/users?limit=1", extra); code != 200 {
			t.Errorf("a secret created by the CLI: %d on %s", code, s.base)
		}
	}
	if _, err := signature(t, env, "revoke", "2"); err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	for _, s := range []*server{a, b} {
		for {
			code, _ := get(t, s, "/api/v1/users?limit=1", extra)
			if code == 401 {
				break
			}
			if time.Since(began) > time.Second {
				t.Fatalf("%s still accepts a revoked secret after 1s", s.base)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestRun_concurrentStart starts three servers at once against an empty
// PostgreSQL database, several times: migration and bootstrap must not race.
func TestRun_concurrentStart(t *testing.T) {
	for round := range 4 {
		dsn := dbtest.Postgres(t)
		var wg sync.WaitGroup
		servers := make([]*server, 3)
		for i := range servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				servers[i] = startServer(t, map[string]string{"WEMESSE_DATABASE_URL": dsn, "WEMESSE_SIGNATURE": "start-secret"})
			}()
		}
		wg.Wait()
		for _, s := range servers {
			if s == nil {
				t.Fatalf("round %d: a server did not start", round)
			}
			if code, _ := get(t, s, "/api/v1/users", "start-secret"); code != 200 {
				t.Errorf("round %d: %s answers %d", round, s.base, code)
			}
			s.stop(t)
		}
		out, err := signature(t, map[string]string{"WEMESSE_DATABASE_URL": dsn}, "list")
		if err != nil || strings.Count(strings.TrimSpace(out), "\n") != 1 {
			t.Errorf("round %d: signatures after three bootstraps:\n%s (%v), want exactly one", round, out, err)
		}
	}
}
