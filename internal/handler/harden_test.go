package handler_test

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/handler"
	"github.com/wemesse/server/internal/service"
)

// The tests in this file reproduce the findings of a black-box review
// (issue 21), each one failing on the code before its fix.

// TestLimiter_secretInUseStaysCached: a valid secret used more often than
// the cache TTL passes from an address over its failure limit, however
// long ago it was first verified.
func TestLimiter_secretInUseStaysCached(t *testing.T) {
	const ttl = 3 * time.Second
	ts := newTestServer(t, dbtest.SQLite(t), func(d *handler.Deps, c *service.SignaturesConfig) {
		d.AuthFailuresPerMinute, c.CacheTTL = 5, ttl
	})
	if resp, body := ts.report("1_00", "m", 1); resp.StatusCode != http.StatusOK {
		t.Fatalf("first report: %d %s", resp.StatusCode, body)
	}
	first, last := time.Now(), time.Now()
	for range 5 {
		resp, body := ts.do("POST", "/api/v1/users", "wrong", nil)
		wantError(t, resp, body, http.StatusUnauthorized)
	}
	// Used every sixth of the TTL until twice the TTL has passed.
	for i := 2; time.Since(first) < 2*ttl; i++ {
		time.Sleep(ttl / 6)
		if gap := time.Since(last); gap >= ttl {
			t.Fatalf("the machine stalled the test for %v, more than the TTL: rerun it", gap)
		}
		resp, body := ts.report("1_00", "m", i)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("report %v after the first: %d %s, want 200", time.Since(first), resp.StatusCode, body)
		}
		last = time.Now()
	}
}

// TestLimiter_garbageForwardedFor: a trusted proxy's X-Forwarded-For that
// names no address charges failures to a bucket of its own, not to the
// proxy's address that its real clients share.
func TestLimiter_garbageForwardedFor(t *testing.T) {
	ts := newTestServer(t, dbtest.SQLite(t), func(d *handler.Deps, _ *service.SignaturesConfig) {
		d.AuthFailuresPerMinute, d.TrustedProxies = 3, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	for _, garbage := range []string{"garbage", "not-an-ip", "1.2.3.4, garbage"} {
		resp, body := ts.do("GET", "/api/v1/users", "wrong", nil, "X-Forwarded-For", garbage)
		wantError(t, resp, body, http.StatusUnauthorized)
	}
	resp, body := ts.do("GET", "/api/v1/users", "wrong", nil, "X-Forwarded-For", "garbage")
	wantError(t, resp, body, http.StatusTooManyRequests)
	// The proxy's own address, and a client it names, keep their budgets.
	resp, body = ts.do("GET", "/api/v1/users", "wrong", nil)
	wantError(t, resp, body, http.StatusUnauthorized)
	resp, body = ts.do("GET", "/api/v1/users", "wrong", nil, "X-Forwarded-For", "203.0.113.6")
	wantError(t, resp, body, http.StatusUnauthorized)
}

// TestDownloads_emptyRangeDoesNotCount: a transfer counts only when it
// delivered at least one byte and the file's last byte; bytes=-0 is a
// 206 with nothing in it.
func TestDownloads_emptyRangeDoesNotCount(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newTestServer(t, dsn)
		ts.mustUpload("3_01")
		downloads := func() float64 {
			_, body := ts.do("GET", "/api/v1/updates", ts.admin, nil)
			return decodeArray(t, body)[0]["Downloads"].(float64)
		}
		for range 5 {
			resp, body := ts.do("GET", "/uploads/3_01/wemesse.apk", "", nil, "Range", "bytes=-0")
			if resp.StatusCode == http.StatusOK || len(body) != 0 {
				t.Fatalf("bytes=-0: status %d, %d bytes", resp.StatusCode, len(body))
			}
		}
		if n := downloads(); n != 0 {
			t.Errorf("Downloads = %v after five empty ranges, want 0", n)
		}
		resp, body := ts.do("GET", "/uploads/3_01/wemesse.apk", "", nil, "Range", "bytes=-1")
		if resp.StatusCode != http.StatusPartialContent || len(body) != 1 {
			t.Fatalf("bytes=-1: status %d, %d bytes", resp.StatusCode, len(body))
		}
		if n := downloads(); n != 1 {
			t.Errorf("Downloads = %v after the last byte, want 1", n)
		}
	})
}

// TestHeaders: downloads are never sniffed nor typed from their name; every
// answer says nosniff; admin answers are never stored by a cache.
func TestHeaders(t *testing.T) {
	ts := newTestServer(t, dbtest.SQLite(t))
	ts.mustUpload("4_00")
	resp, body := ts.upload(ts.admin, "appVersion", "4_01", "targetABI", "x86", "tmpFile", "page.html|<script>alert(1)</script>")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %d %s", resp.StatusCode, body)
	}
	for _, tt := range []struct{ path, ctype string }{
		{"/uploads/4_00/wemesse.apk", "application/vnd.android.package-archive"},
		{"/uploads/x86/4_01/page.html", "application/octet-stream"},
	} {
		resp, _ := ts.do("GET", tt.path, "", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", tt.path, resp.StatusCode)
		}
		if got := resp.Header.Get("Content-Type"); got != tt.ctype {
			t.Errorf("GET %s: Content-Type %q, want %q", tt.path, got, tt.ctype)
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q, want nosniff", tt.path, got)
		}
	}
	for _, tt := range []struct {
		name, method, path, secret string
		noStore                    bool
	}{
		{"update check", "GET", "/api/v1/updates/1_00", "", false},
		{"health", "GET", "/healthz", "", false},
		{"unknown route", "GET", "/nothing", "", false},
		{"release list", "GET", "/api/v1/updates", ts.admin, true},
		{"device list", "GET", "/api/v1/users", ts.admin, true},
		{"stats", "GET", "/api/v1/stats", ts.admin, true},
		{"admin route refused", "GET", "/api/v1/stats", "wrong", true},
	} {
		resp, _ := ts.do(tt.method, tt.path, tt.secret, nil)
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q, want nosniff", tt.name, got)
		}
		if got := resp.Header.Get("Cache-Control"); tt.noStore && got != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store", tt.name, got)
		}
	}
}

// rawRequest sends head on a new connection and returns it with a reader
// of what comes back.
func (ts *testServer) rawRequest(head string) (net.Conn, *bufio.Reader) {
	ts.tb.Helper()
	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		ts.tb.Fatal(err)
	}
	ts.tb.Cleanup(func() { conn.Close() })
	if _, err := fmt.Fprint(conn, head); err != nil {
		ts.tb.Fatal(err)
	}
	return conn, bufio.NewReader(conn)
}

// TestConnections_slowBodyIsDropped: a body that trickles just often
// enough to show progress is dropped once it falls behind the minimum rate.
func TestConnections_slowBodyIsDropped(t *testing.T) {
	const stall = time.Second
	ts := newTestServer(t, dbtest.SQLite(t), func(d *handler.Deps, _ *service.SignaturesConfig) {
		d.StallTimeout, d.MinBodyRate = stall, 1000
	})
	conn, br := ts.rawRequest("POST /api/v1/users HTTP/1.1\r\nHost: x\r\nSignature: " + ts.client +
		"\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n")
	// Ten bytes every stall/5: progress all along, at 50 bytes a second.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(stall / 5):
				if _, err := conn.Write([]byte("          ")); err != nil {
					return
				}
			}
		}
	}()
	// The rule drops it after about one stall; the trickle alone would
	// last twenty minutes.
	conn.SetReadDeadline(time.Now().Add(8 * stall))
	resp, err := http.ReadResponse(br, nil)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status %d, want 400", resp.StatusCode)
		}
		_, err = br.ReadByte() // then the connection closes
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a body trickled at 50 bytes/s was still read after %v", 8*stall)
	}
}

// TestConnections_refusedBodyIsNotAwaited: a request refused by the
// signature check gets its 401 at once and its connection closed, without
// waiting for the body it declared and never sends.
func TestConnections_refusedBodyIsNotAwaited(t *testing.T) {
	const stall = 10 * time.Second
	ts := newTestServer(t, dbtest.SQLite(t), func(d *handler.Deps, _ *service.SignaturesConfig) { d.StallTimeout = stall })
	for _, secret := range []string{"", "wrong"} {
		conn, br := ts.rawRequest("POST /api/v1/users HTTP/1.1\r\nHost: x\r\nSignature: " + secret +
			"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
		conn.SetReadDeadline(time.Now().Add(stall / 2))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("secret %q: no answer within %v: %v", secret, stall/2, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("secret %q: status %d, want 401", secret, resp.StatusCode)
		}
		if _, err := br.ReadByte(); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("secret %q: the connection stayed open after the 401", secret)
		}
	}
}

// TestServedFiles_plantedLinks plants symbolic and hard links in the upload
// dir, pointing out of it and into it: none is served, and no upload writes
// through one.
func TestServedFiles_plantedLinks(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newTestServer(t, dsn)
		outside := t.TempDir()
		secret := filepath.Join(outside, "passwd")
		if err := os.WriteFile(secret, []byte("root:x:0:0"), 0o644); err != nil {
			t.Fatal(err)
		}
		ts.mustUpload("1_00")
		in := func(p string) string { return filepath.Join(ts.dir, filepath.FromSlash(p)) }
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		for _, tt := range []struct {
			name  string
			plant func()
			path  string
		}{
			{"symlink to a directory outside", func() { must(os.Symlink(outside, in("etclink"))) }, "/uploads/etclink/passwd"},
			{"symlink to a file outside", func() { must(os.Symlink(secret, in("passwd.apk"))) }, "/uploads/passwd.apk"},
			{"hard link to a file outside", func() { must(os.Link(secret, in("hard.apk"))) }, "/uploads/hard.apk"},
			{"symlink to a release's file", func() { must(os.Symlink(in("1_00/wemesse.apk"), in("alias.apk"))) }, "/uploads/alias.apk"},
			{"hard link to a release's file", func() { must(os.Link(in("1_00/wemesse.apk"), in("copy.apk"))) }, "/uploads/copy.apk"},
			{"a file no release names", func() { must(os.WriteFile(in("stray.apk"), []byte("stray"), 0o644)) }, "/uploads/stray.apk"},
			{"release's file replaced by a symlink", func() {
				must(os.Remove(in("1_00/wemesse.apk")))
				must(os.Symlink(secret, in("1_00/wemesse.apk")))
			}, "/uploads/1_00/wemesse.apk"},
			{"release's file replaced by a hard link", func() {
				must(os.Remove(in("1_00/wemesse.apk")))
				must(os.Link(secret, in("1_00/wemesse.apk")))
			}, "/uploads/1_00/wemesse.apk"},
			{"release's directory replaced by a symlink", func() {
				must(os.RemoveAll(in("1_00")))
				must(os.Symlink(outside, in("1_00")))
				must(os.WriteFile(filepath.Join(outside, "wemesse.apk"), []byte("outside"), 0o644))
			}, "/uploads/1_00/wemesse.apk"},
		} {
			tt.plant()
			resp, body := ts.do("GET", tt.path, "", nil)
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s: GET %s = %d %q, want 404", tt.name, tt.path, resp.StatusCode, body)
			}
		}

		// Uploads whose path goes through a planted link fail and write
		// nothing outside.
		before := listDir(t, outside)
		must(os.Symlink(outside, in("2_00")))
		must(os.Symlink(outside, in("x86")))
		for _, up := range [][]string{
			{"appVersion", "2_00", "tmpFile", "wemesse.apk|through a version link"},
			{"appVersion", "3_00", "targetABI", "x86", "tmpFile", "wemesse.apk|through an ABI link"},
		} {
			if resp, body := ts.upload(ts.admin, up...); resp.StatusCode == http.StatusCreated {
				t.Errorf("upload %v through a symlinked directory: %d %s", up[1], resp.StatusCode, body)
			}
		}
		if after := listDir(t, outside); !maps.Equal(after, before) {
			t.Errorf("outside the upload dir: %v, want %v", after, before)
		}
		// A hard link where the build lands is replaced, not written through.
		victim := filepath.Join(outside, "victim.apk")
		must(os.WriteFile(victim, []byte("keep"), 0o644))
		must(os.MkdirAll(in("4_00"), 0o750))
		must(os.Link(victim, in("4_00/wemesse.apk")))
		before = listDir(t, outside)
		ts.mustUpload("4_00")
		if resp, body := ts.do("GET", "/uploads/4_00/wemesse.apk", "", nil); resp.StatusCode != 200 || string(body) != "build 4_00" {
			t.Errorf("the upload over a hard link: GET = %d %q", resp.StatusCode, body)
		}
		// The staging directory replaced by a link.
		must(os.RemoveAll(in(".staging")))
		must(os.Symlink(outside, in(".staging")))
		if resp, body := ts.upload(ts.admin, "appVersion", "5_00", "tmpFile", "wemesse.apk|through staging"); resp.StatusCode == http.StatusCreated {
			t.Errorf("upload through a symlinked staging dir: %d %s", resp.StatusCode, body)
		}
		if after := listDir(t, outside); !maps.Equal(after, before) {
			t.Errorf("outside the upload dir: %v, want %v", after, before)
		}
		var versions []string
		ts.db.Table("apps").Order("id").Pluck("app_version", &versions)
		if !slices.Equal(versions, []string{"1_00", "4_00"}) {
			t.Errorf("releases = %v, want [1_00 4_00]", versions)
		}
	})
}

// listDir maps each file under dir to its content.
func listDir(tb testing.TB, dir string) map[string]string {
	tb.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			out[p] = string(b)
		}
		return nil
	})
	return out
}
