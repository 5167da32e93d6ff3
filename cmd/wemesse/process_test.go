package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wemesse/server/internal/dbtest"
)

// buildBinary builds the server into a temp dir, once per test.
func buildBinary(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "wemesse")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startProcess runs the binary with env and waits for /healthz.
func startProcess(tb testing.TB, bin string, env map[string]string) (*exec.Cmd, *server) {
	tb.Helper()
	cmd := exec.Command(bin, "serve")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	s := &server{base: "http://" + env["WEMESSE_ADDR"], client: http.DefaultClient, env: env, log: logs}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(s.base + "/healthz"); err == nil {
			resp.Body.Close()
			return cmd, s
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the server did not start:\n%s", logs.String())
		}
	}
}

// TestProcess_kill9DuringUpload kills a real server process mid-upload:
// after a restart, nothing of the upload is visible and no staged file is
// left.
func TestProcess_kill9DuringUpload(t *testing.T) {
	bin := buildBinary(t)
	dbtest.Each(t, func(t *testing.T, dsn string) {
		const secret = "kill-test-secret"
		dir := t.TempDir()
		env := map[string]string{
			"WEMESSE_ADDR": freeAddr(t), "WEMESSE_DATABASE_URL": dsn, "WEMESSE_UPLOAD_DIR": dir,
			"WEMESSE_SIGNATURE": secret, "WEMESSE_ARGON2_MEMORY": "1024",
		}
		cmd, s := startProcess(t, bin, env)
		uploadBuild(t, s, secret, "2264_00", "kept")
		status := slowUpload(s, secret, "2264_01", 8<<20, 10*time.Second)
		staging := filepath.Join(dir, ".staging")
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if entries, _ := os.ReadDir(staging); len(entries) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the upload never reached staging")
			}
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		if got := <-status; got != 0 {
			t.Fatalf("the killed upload got status %d", got)
		}
		if entries, _ := os.ReadDir(staging); len(entries) == 0 {
			t.Fatal("kill -9 left no staged file: the test did not catch the upload mid-way")
		}

		_, s = startProcess(t, bin, env)
		if code, body := get(t, s, "/api/v1/updates", secret); code != 200 || strings.Contains(string(body), "2264_01") || !strings.Contains(string(body), "2264_00") {
			t.Errorf("after restart: %d %s", code, body)
		}
		if code, _ := get(t, s, "/uploads/2264_01/slow.apk", ""); code != 404 {
			t.Errorf("the killed upload's file: %d, want 404", code)
		}
		wantTree(t, dir, "2264_00/wemesse.apk")
		if !strings.Contains(s.log.String(), "removed staged files left by an interrupted upload") {
			t.Errorf("the restart did not report removing the staged file:\n%s", s.log.String())
		}
	})
}
