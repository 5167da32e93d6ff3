package proctest

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseStatus(t *testing.T) {
	for _, tc := range []struct {
		name, status string
		want         Memory
		wantErr      bool
	}{
		{"both", "Name:\twemesse\nVmHWM:\t  402000 kB\nVmRSS:\t  120000 kB\nThreads:\t9\n", Memory{RSSKB: 120000, HWMKB: 402000}, false},
		{"missing", "Name:\tx\n", Memory{}, true},
		{"bad number", "VmRSS:\tlots kB\nVmHWM:\t1 kB\n", Memory{}, true},
	} {
		m, err := ParseStatus(strings.NewReader(tc.status))
		if m != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("%s: ParseStatus = %+v, %v", tc.name, m, err)
		}
	}
}

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, stat string
		want       Stat
		wantErr    bool
	}{
		{"plain", "4242 (wemesse) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 130 0 0 20 0 9 0 1000 0 0", Stat{PPid: 1, CPU: 3800 * time.Millisecond}, false},
		{"command with spaces and parens", "7 (a (b) c) R 3 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 0 0", Stat{PPid: 3, CPU: 30 * time.Millisecond}, false},
		{"short", "7 (x) R 1 7", Stat{}, true},
		{"no command", "7 x R", Stat{}, true},
		{"bad number", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 many 2 0 0", Stat{}, true},
	} {
		got, err := ParseStat(tc.stat)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("%s: ParseStat = %+v, %v; want %+v (error %t)", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestParseCreated(t *testing.T) {
	id, secret, err := ParseCreated("Created client signature 7. Copy the secret below now: it is stored only as a hash and will not be shown again.\nabc_DEF-123\n")
	if err != nil || id != 7 || secret != "abc_DEF-123" {
		t.Errorf("got %d %q %v", id, secret, err)
	}
	if _, _, err := ParseCreated("only one line\n"); err == nil {
		t.Error("one line accepted")
	}
}

func TestLoopbackOnly(t *testing.T) {
	if err := LoopbackOnly("http://127.0.0.1:9000/x"); err != nil {
		t.Error(err)
	}
	for _, u := range []string{"http://localhost:9000/", "http://10.0.0.1/", "https://example.com/"} {
		if LoopbackOnly(u) == nil {
			t.Errorf("%s accepted", u)
		}
	}
}

func TestLastLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb", 5, "a\nb"},
		{"", 1, ""},
	} {
		if got := LastLines(tc.in, tc.n); got != tc.want {
			t.Errorf("LastLines(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// TestServer runs the real binary through its life: start on SQLite with a
// WEMESSE_* variable of ours filtered out, a secret from the CLI, an upload,
// its memory, SIGTERM, a restart on the same data, and kill -9.
func TestServer(t *testing.T) {
	ctx := context.Background()
	root, err := ModuleRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "wemesse")
	if err := Build(ctx, root, bin); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WEMESSE_SIGNATURE", "must-not-leak")
	const admin = "proctest-admin-secret"
	s, err := Start(ctx, Options{Binary: bin, Dir: t.TempDir(), Settings: map[string]string{
		"WEMESSE_SIGNATURE": admin, "WEMESSE_ARGON2_MEMORY": "1024",
		"WEMESSE_VERIFY_APK": "false", // the harness is tested, not the build: it uploads made-up bytes
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Kill)

	_, client, err := s.CreateSecret(ctx, "client")
	if err != nil || client == "" {
		t.Fatalf("CreateSecret: %q %v", client, err)
	}
	req, err := UploadRequest(ctx, s.URL, admin, []Field{{"appVersion", "2264_00"}}, "wemesse.apk", strings.NewReader("build"))
	if err != nil {
		t.Fatal(err)
	}
	if code, body := do(t, req); code != http.StatusCreated {
		t.Fatalf("upload: %d %s", code, body)
	}
	if m, err := s.Memory(); err != nil || m.RSSKB <= 0 || m.HWMKB < m.RSSKB {
		t.Errorf("Memory = %+v, %v", m, err)
	}

	s.Stop()
	if !s.Exited() || s.ExitErr() != nil {
		t.Fatalf("after SIGTERM: exited %t, %s", s.Exited(), s.ExitDescription())
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	// The upload survived; the secrets authenticate (the client one is
	// known but not admin: 403); the caller's WEMESSE_SIGNATURE does not.
	for _, tc := range []struct {
		path, secret string
		want         int
	}{
		{"/api/v1/updates", admin, http.StatusOK},
		{"/api/v1/stats", client, http.StatusForbidden},
		{"/api/v1/stats", "must-not-leak", http.StatusUnauthorized},
	} {
		req, _ := http.NewRequest(http.MethodGet, s.URL+tc.path, nil)
		req.Header.Set("signature", tc.secret)
		code, body := do(t, req)
		if code != tc.want || (code == http.StatusOK && !strings.Contains(string(body), "2264_00")) {
			t.Errorf("after the restart, GET %s with %q: %d %s, want %d", tc.path, tc.secret, code, body, tc.want)
		}
	}

	// kill -9 loses the lines not yet flushed: wait for the last request's.
	if !s.WaitLog("/api/v1/stats", 10*time.Second) {
		t.Fatalf("the restart's log has no access line for /api/v1/stats after 10s:\n%s", s.Log())
	}
	if err := s.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !s.WaitExit(10*time.Second) || s.ExitErr() == nil {
		t.Errorf("after SIGKILL: %s", s.ExitDescription())
	}
	if log := s.Log(); strings.Contains(log, admin) {
		t.Errorf("the restart's log holds the secret:\n%s", log)
	}
}

func do(t *testing.T, req *http.Request) (int, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}
