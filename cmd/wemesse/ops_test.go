package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wemesse/server/internal/dbtest"
)

// TestRun_metricsReadyAndLogs checks /metrics serves the listed series on
// its own listener only, /readyz answers, and access lines carry the
// request id the client sees.
func TestRun_metricsReadyAndLogs(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		metricsAddr := freeAddr(t)
		const secret = "metrics-test-secret"
		s := startServer(t, map[string]string{"WEMESSE_DATABASE_URL": dsn, "WEMESSE_METRICS_ADDR": metricsAddr, "WEMESSE_SIGNATURE": secret})
		uploadBuild(t, s, secret, "2264_00", "metrics build")
		get(t, s, "/api/v1/updates/2263_00", "")
		get(t, s, "/api/v1/users", "wrong-secret")
		if code, body := get(t, s, "/readyz", ""); code != 200 || !strings.Contains(string(body), "ready") {
			t.Errorf("/readyz: %d %s", code, body)
		}
		if code, _ := get(t, s, "/metrics", ""); code != 404 {
			t.Errorf("/metrics on the API listener: %d, want 404", code)
		}
		// Profiles only when WEMESSE_PPROF asks for them.
		if resp, err := http.Get("http://" + metricsAddr + "/debug/pprof/"); err != nil || resp.StatusCode != 404 {
			t.Errorf("/debug/pprof/ without WEMESSE_PPROF: %v %v, want 404", resp, err)
		} else {
			resp.Body.Close()
		}
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{
			`wemesse_http_requests_total{method="GET",route="/api/v1/updates/{version}",status="200"} 1`,
			`wemesse_http_requests_total{method="POST",route="/api/v1/updates",status="201"} 1`,
			`wemesse_http_request_duration_seconds_bucket{method="GET",route="/api/v1/updates/{version}"`,
			`wemesse_upload_bytes_total 13`,
			`wemesse_signature_verifications_total{result="match"} 1`,
			`wemesse_signature_cache_total{result="miss"}`,
			`wemesse_device_write_batch_size_bucket`,
			`go_sql_open_connections{db_name="wemesse"}`,
			`wemesse_log_lines_dropped_total 0`,
		} {
			if !strings.Contains(string(body), want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}

		req, _ := http.NewRequest("GET", s.base+"/api/v1/updates/2263_00", nil)
		resp, err = s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		id := resp.Header.Get("X-Request-Id")
		s.stop(t)
		found := false
		sc := bufio.NewScanner(strings.NewReader(s.log.String()))
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				t.Errorf("a log line is not JSON: %s", sc.Text())
				continue
			}
			if line["msg"] == "request" && line["request_id"] == id {
				found = line["route"] == "/api/v1/updates/{version}" && line["status"] == float64(200) && line["method"] == "GET"
			}
		}
		if id == "" || !found {
			t.Errorf("no access line with request_id %q, route, method and status", id)
		}
		if strings.Contains(s.log.String(), secret) || strings.Contains(s.log.String(), "wrong-secret") {
			t.Error("a secret appears in the log")
		}
	})
}

// slowUpload starts an upload of a file of size bytes sent over about
// duration, and returns a channel with its status (0 when cut off).
func slowUpload(s *server, secret, version string, size int, duration time.Duration) <-chan int {
	status := make(chan int, 1)
	go func() {
		code, _ := postUpload(context.Background(), s, secret, version, &pacedReader{left: size, size: size, duration: duration})
		status <- code
	}()
	return status
}

// pacedReader yields size bytes over about duration.
type pacedReader struct {
	left, size int
	duration   time.Duration
}

func (r *pacedReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.left)
	time.Sleep(r.duration * time.Duration(n) / time.Duration(r.size))
	for i := range p[:n] {
		p[i] = 's'
	}
	r.left -= n
	return n, nil
}

// TestRun_pprof checks WEMESSE_PPROF serves Go's profiles on the metrics
// listener, and never on the API's.
func TestRun_pprof(t *testing.T) {
	metricsAddr := freeAddr(t)
	s := startServer(t, map[string]string{"WEMESSE_DATABASE_URL": filepath.Join(t.TempDir(), "w.db"),
		"WEMESSE_METRICS_ADDR": metricsAddr, "WEMESSE_PPROF": "true"})
	if code, _ := get(t, s, "/debug/pprof/", ""); code != 404 {
		t.Errorf("/debug/pprof/ on the API listener: %d, want 404", code)
	}
	for path, want := range map[string]string{
		"/debug/pprof/":                  "goroutine",
		"/debug/pprof/heap?debug=1":      "heap profile",
		"/debug/pprof/profile?seconds=1": "", // a gzipped protobuf: any bytes
		"/debug/pprof/cmdline":           "",
	} {
		resp, err := http.Get("http://" + metricsAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(body) == 0 || !strings.Contains(string(body), want) {
			t.Errorf("%s: %d, %d bytes, want 200 with %q", path, resp.StatusCode, len(body), want)
		}
	}
}

// TestRun_shutdownDuringUpload stops the server (as SIGTERM does) in the
// middle of uploads: one that fits in the shutdown timeout completes; one
// that does not leaves no row and no file.
func TestRun_shutdownDuringUpload(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		const secret = "shutdown-test-secret"
		dir := t.TempDir()
		env := map[string]string{
			"WEMESSE_DATABASE_URL": dsn, "WEMESSE_UPLOAD_DIR": dir, "WEMESSE_SIGNATURE": secret,
			"WEMESSE_SHUTDOWN_TIMEOUT": "5s",
		}
		s := startServer(t, env)
		status := slowUpload(s, secret, "2264_01", 4<<20, 1500*time.Millisecond)
		time.Sleep(300 * time.Millisecond)
		s.stop(t)
		if got := <-status; got != http.StatusCreated {
			t.Fatalf("an upload that fits in the shutdown timeout got %d, want 201", got)
		}

		env["WEMESSE_SHUTDOWN_TIMEOUT"] = "300ms"
		s = startServer(t, env)
		if code, body := get(t, s, "/api/v1/updates", secret); code != 200 || !strings.Contains(string(body), "2264_01") {
			t.Fatalf("the completed upload is missing after restart: %d %s", code, body)
		}
		status = slowUpload(s, secret, "2264_02", 4<<20, 5*time.Second)
		time.Sleep(300 * time.Millisecond)
		s.stop(t)
		if got := <-status; got == http.StatusCreated {
			t.Fatal("an upload longer than the shutdown timeout succeeded")
		}
		wantTree(t, dir, "2264_01/wemesse.apk")
		s = startServer(t, env)
		if _, body := get(t, s, "/api/v1/updates", secret); strings.Contains(string(body), "2264_02") {
			t.Errorf("the cut-off upload left a row: %s", body)
		}
	})
}

// wantTree checks the files under dir, staging included.
func wantTree(tb testing.TB, dir string, want ...string) {
	tb.Helper()
	var got []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			got = append(got, filepath.ToSlash(rel))
		}
		return nil
	})
	if fmt.Sprint(got) != fmt.Sprint(want) {
		tb.Errorf("files = %v, want %v", got, want)
	}
}
