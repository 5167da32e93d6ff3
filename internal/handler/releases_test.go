package handler_test

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wemesse/server/internal/dbtest"
)

func TestUpdateCheck(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newTestServer(t, dsn)

		resp, body := ts.do("GET", "/api/v1/updates/2264_00", "", nil)
		wantError(t, resp, body, http.StatusNotFound)

		ts.mustUpload("2264_00", "appNotes", "mandatory")
		ts.mustUpload("9999_99")
		ts.mustUpload("10000_01", "appNotes", "newest")

		tests := []struct {
			version  string
			status   int
			skipped  bool
			wantNote string
		}{
			{"2263_99", 200, false, "newest"},
			{"2263_99arm64", 200, false, "newest"},
			{"2263_99x86_64", 200, false, "newest"},
			{"2264_00", 200, true, "newest"},
			{"2264_00arm", 200, true, "newest"},
			{"10000_01", 200, true, "newest"},
			{"20000_00", 200, true, "newest"},
			{"abc", 400, false, ""},
			{"2264_00mips", 400, false, ""},
			{"2264__00", 400, false, ""},
		}
		for _, tt := range tests {
			t.Run(tt.version, func(t *testing.T) {
				resp, body := ts.do("GET", "/api/v1/updates/"+tt.version, "", nil)
				if tt.status != 200 {
					wantError(t, resp, body, tt.status)
					return
				}
				if resp.StatusCode != 200 {
					t.Fatalf("status = %d, body %s", resp.StatusCode, body)
				}
				got := decodeObject(t, body)
				wantKeys(t, got, releaseKeys...)
				if got["Version"] != "10000_01" || got["Skipped"] != tt.skipped || got["Message"] != tt.wantNote {
					t.Errorf("got %s, want Version 10000_01, Skipped %v", body, tt.skipped)
				}
				if got["URI"] != mirrorURL+"/10000_01/wemesse.apk" {
					t.Errorf("URI = %v, want the mirror's", got["URI"])
				}
			})
		}
	})
}

func TestReleaseList(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newTestServer(t, dsn)
		resp, body := ts.do("GET", "/api/v1/updates", ts.admin, nil)
		if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "[]" {
			t.Fatalf("empty list: status %d body %s, want 200 []", resp.StatusCode, body)
		}
		ts.mustUpload("10000_00")
		ts.mustUpload("9999_01")
		resp, body = ts.do("GET", "/api/v1/updates", ts.admin, nil)
		list := decodeArray(t, body)
		if resp.StatusCode != 200 || len(list) != 2 {
			t.Fatalf("status %d, body %s", resp.StatusCode, body)
		}
		for i, want := range []struct {
			version string
			skipped bool
		}{{"10000_00", false}, {"9999_01", true}} {
			wantKeys(t, list[i], releaseKeys...)
			if list[i]["Id"] != float64(i+1) || list[i]["Version"] != want.version || list[i]["Skipped"] != want.skipped {
				t.Errorf("list[%d] = %v, want Id %d Version %s Skipped %v", i, list[i], i+1, want.version, want.skipped)
			}
			if list[i]["URI"] != publicURL+"/"+want.version+"/wemesse.apk" {
				t.Errorf("URI = %v, want this server's", list[i]["URI"])
			}
		}
	})
}

func TestUpload(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newTestServer(t, dsn)
		content := strings.Repeat("apk bytes ", 1500)
		resp, body := ts.upload(ts.admin, "tmpFile", "../../etc/Wemesse Beta.apk|"+content, "appNotes", "Fixes.", "appVersion", "2267_01")
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("status %d, body %s", resp.StatusCode, body)
		}
		got := decodeObject(t, body)
		wantKeys(t, got, releaseKeys...)
		md5sum, shasum := md5.Sum([]byte(content)), sha256.Sum256([]byte(content))
		want := map[string]any{
			"Id": float64(1), "Checksum": hex.EncodeToString(md5sum[:]), "SHA256": hex.EncodeToString(shasum[:]),
			"Name": "Wemesse_Beta.apk", "Message": "Fixes.", "Size": "15.0 kB", "Version": "2267_01",
			"Skipped": true, "Uploads": float64(0), "URI": publicURL + "/2267_01/Wemesse_Beta.apk", "TargetABI": "",
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %v, want %v", k, got[k], v)
			}
		}
		if files := ts.files(); strings.Join(files, ",") != "2267_01/Wemesse_Beta.apk" {
			t.Errorf("files = %v", files)
		}
		resp, body = ts.do("GET", "/uploads/2267_01/Wemesse_Beta.apk", "", nil)
		if resp.StatusCode != 200 || string(body) != content {
			t.Errorf("download: status %d, %d bytes", resp.StatusCode, len(body))
		}
		if m := ts.mustUpload("2267_00"); m["Skipped"] != false {
			t.Errorf("a version ending in _00 uploaded with Skipped %v, want false", m["Skipped"])
		}
	})
}

// TestUpload_failuresLeaveNothing checks every failing upload leaves no
// row, no file and no staged file behind.
func TestUpload_failuresLeaveNothing(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newTestServer(t, dsn)
		ts.mustUpload("2267_01")
		big := strings.Repeat("x", int(ts.maxUpload)+1)
		tests := []struct {
			name   string
			fields []string
			status int
		}{
			{"missing version", []string{"tmpFile", "a.apk|data"}, 400},
			{"missing file", []string{"appVersion", "2267_02"}, 400},
			{"empty file", []string{"appVersion", "2267_02", "tmpFile", "a.apk|"}, 400},
			{"invalid version", []string{"appVersion", "beta", "tmpFile", "a.apk|data"}, 400},
			{"version with ABI suffix", []string{"appVersion", "2267_02arm64", "tmpFile", "a.apk|data"}, 400},
			{"version after the file is invalid", []string{"tmpFile", "a.apk|data", "appVersion", "x"}, 400},
			{"unknown ABI", []string{"appVersion", "2267_02", "targetABI", "mips", "tmpFile", "a.apk|data"}, 400},
			{"two files", []string{"appVersion", "2267_02", "tmpFile", "a.apk|data", "tmpFile", "b.apk|data"}, 400},
			{"duplicate version", []string{"appVersion", "2267_01", "tmpFile", "a.apk|data"}, 409},
			{"numerically equal version", []string{"appVersion", "2267.1", "tmpFile", "a.apk|data"}, 409},
			{"file over the limit", []string{"appVersion", "2267_02", "tmpFile", "a.apk|" + big}, 413},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				resp, body := ts.upload(ts.admin, tt.fields...)
				wantError(t, resp, body, tt.status)
				ts.wantOnlyFirstRelease(t)
			})
		}
		t.Run("not multipart", func(t *testing.T) {
			resp, body := ts.do("POST", "/api/v1/updates", ts.admin, strings.NewReader(`{"appVersion":"1"}`), "Content-Type", "application/json")
			wantError(t, resp, body, http.StatusUnsupportedMediaType)
			resp, body = ts.do("POST", "/api/v1/updates", ts.admin, strings.NewReader("x"))
			wantError(t, resp, body, http.StatusUnsupportedMediaType)
		})
		t.Run("malformed multipart", func(t *testing.T) {
			resp, body := ts.do("POST", "/api/v1/updates", ts.admin, strings.NewReader("--b\r\nnot a header\r\n"), "Content-Type", "multipart/form-data; boundary=b")
			wantError(t, resp, body, http.StatusBadRequest)
			ts.wantOnlyFirstRelease(t)
		})
		t.Run("client disconnects mid-file", func(t *testing.T) {
			ts.abortUpload(t, "2267_03")
			deadline := time.Now().Add(5 * time.Second)
			for len(ts.files()) != 1 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			ts.wantOnlyFirstRelease(t)
		})
	})
}

func (ts *testServer) wantOnlyFirstRelease(tb testing.TB) {
	tb.Helper()
	if n := ts.count("apps"); n != 1 {
		tb.Errorf("apps has %d rows, want 1", n)
	}
	if files := ts.files(); strings.Join(files, ",") != "2267_01/wemesse.apk" {
		tb.Errorf("files = %v, want only 2267_01/wemesse.apk", files)
	}
}

// abortUpload starts a multipart upload on a raw connection, sends part of
// the file and hangs up.
func (ts *testServer) abortUpload(tb testing.TB, version string) {
	tb.Helper()
	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	head := fmt.Sprintf("--b\r\nContent-Disposition: form-data; name=\"appVersion\"\r\n\r\n%s\r\n"+
		"--b\r\nContent-Disposition: form-data; name=\"tmpFile\"; filename=\"a.apk\"\r\n\r\n", version)
	fmt.Fprintf(conn, "POST /api/v1/updates HTTP/1.1\r\nHost: x\r\nsignature: %s\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n%s%s",
		ts.admin, head, strings.Repeat("y", 5000))
	time.Sleep(100 * time.Millisecond)
	conn.Close()
}

func TestDownload(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newTestServer(t, dsn)
		ts.mustUpload("2267_01")
		const content = "build 2267_01"
		path := "/uploads/2267_01/wemesse.apk"

		resp, body := ts.do("GET", path, "", nil)
		etag := resp.Header.Get("ETag")
		if resp.StatusCode != 200 || string(body) != content || etag == "" || resp.Header.Get("Accept-Ranges") != "bytes" {
			t.Fatalf("GET: status %d body %q ETag %q", resp.StatusCode, body, etag)
		}
		resp, body = ts.do("GET", path, "", nil, "Range", "bytes=6-")
		if resp.StatusCode != http.StatusPartialContent || string(body) != content[6:] {
			t.Errorf("Range: status %d body %q, want 206 %q", resp.StatusCode, body, content[6:])
		}
		resp, _ = ts.do("GET", path, "", nil, "If-None-Match", etag)
		if resp.StatusCode != http.StatusNotModified {
			t.Errorf("If-None-Match: status %d, want 304", resp.StatusCode)
		}
		resp, body = ts.do("HEAD", path, "", nil)
		if resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength != int64(len(content)) {
			t.Errorf("HEAD: status %d, length %d", resp.StatusCode, resp.ContentLength)
		}
		for _, missing := range []string{"/uploads/2267_01/other.apk", "/uploads/../go.mod", "/uploads/.staging/x", "/uploads/2267_01", "/uploads/"} {
			resp, body := ts.do("GET", missing, "", nil)
			wantError(t, resp, body, http.StatusNotFound)
		}
	})
}

func TestRouterErrors(t *testing.T) {
	ts := newTestServer(t, dbtest.SQLite(t))
	resp, body := ts.do("GET", "/api/v2/nothing", "", nil)
	wantError(t, resp, body, http.StatusNotFound)
	resp, body = ts.do("PUT", "/api/v1/updates", ts.admin, nil)
	wantError(t, resp, body, http.StatusMethodNotAllowed)
	resp, body = ts.do("DELETE", "/api/v1/users", ts.admin, nil)
	wantError(t, resp, body, http.StatusMethodNotAllowed)
	if allow := resp.Header.Get("Allow"); allow != "GET, HEAD, POST" {
		t.Errorf("Allow = %q, want GET, HEAD, POST", allow)
	}
	if resp, _ := ts.do("HEAD", "/healthz", "", nil); resp.StatusCode != 200 {
		t.Errorf("HEAD /healthz: %d, want 200", resp.StatusCode)
	}
	resp, body = ts.do("GET", "/healthz", "", nil)
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"status":"ok"}` {
		t.Errorf("healthz: %d %s", resp.StatusCode, body)
	}
}
