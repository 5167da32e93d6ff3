package handler_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/handler"
	"github.com/wemesse/server/internal/service"
)

func TestUpdateCheck_caching(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newTestServer(t, dsn)
		ts.mustUpload("2264_00")
		resp, _ := ts.do("GET", "/api/v1/updates/2263_00", "", nil)
		etag := resp.Header.Get("ETag")
		if etag == "" || resp.Header.Get("Cache-Control") != "public, max-age=60" {
			t.Fatalf("ETag %q, Cache-Control %q", etag, resp.Header.Get("Cache-Control"))
		}
		if resp, body := ts.do("GET", "/api/v1/updates/2263_00", "", nil, "If-None-Match", etag); resp.StatusCode != http.StatusNotModified || len(body) != 0 {
			t.Errorf("If-None-Match: %d %q, want an empty 304", resp.StatusCode, body)
		}
		for _, change := range []func(){
			func() { ts.mustUpload("2264_01", "targetABI", "x86") }, // not even offered to this client
			func() { ts.do("PATCH", "/api/v1/updates/1", ts.admin, strings.NewReader(`{"Message": "new notes"}`)) },
			func() { ts.do("DELETE", "/api/v1/updates/2", ts.admin, nil) },
		} {
			change()
			resp, _ := ts.do("GET", "/api/v1/updates/2263_00", "", nil, "If-None-Match", etag)
			if resp.StatusCode != 200 || resp.Header.Get("ETag") == etag {
				t.Fatalf("after a change: status %d, ETag %q (was %q); want 200 and a new ETag", resp.StatusCode, resp.Header.Get("ETag"), etag)
			}
			etag = resp.Header.Get("ETag")
		}
	})
}

func TestReleaseEditAndYank(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newTestServer(t, dsn)
		ts.mustUpload("2264_01")
		ts.mustUpload("2265_01")

		resp, body := ts.do("PATCH", "/api/v1/updates/1", ts.admin, strings.NewReader(`{"Message": "Now mandatory.", "Skipped": false, "Rollout": 40}`))
		got := decodeObject(t, body)
		if resp.StatusCode != 200 || got["Message"] != "Now mandatory." || got["Skipped"] != false || got["Rollout"] != float64(40) || got["Version"] != "2264_01" {
			t.Fatalf("PATCH: %d %s", resp.StatusCode, body)
		}
		wantKeys(t, got, releaseKeys...)
		resp, body = ts.do("PATCH", "/api/v1/updates/1", ts.admin, strings.NewReader(`{"Rollout": 100}`))
		if got := decodeObject(t, body); resp.StatusCode != 200 || got["Message"] != "Now mandatory." || got["Rollout"] != float64(100) {
			t.Errorf("a partial PATCH changed other fields: %s", body)
		}
		if _, body := ts.do("GET", "/api/v1/updates/2264_00", "", nil); decodeObject(t, body)["Skipped"] != false {
			t.Errorf("a release forced by PATCH does not force clients: %s", body)
		}
		for _, bad := range []struct {
			path, body string
			status     int
		}{
			{"/api/v1/updates/1", `{"Rollout": 0}`, 400},
			{"/api/v1/updates/1", `{"Rollout": 101}`, 400},
			{"/api/v1/updates/1", `{"Skipped": "yes"}`, 400},
			{"/api/v1/updates/1", `[]`, 400},
			{"/api/v1/updates/1", `{"Message": "a\u0000b"}`, 400},
			{"/api/v1/updates/x", `{}`, 400},
			{"/api/v1/updates/99", `{"Message": "x"}`, 404},
		} {
			resp, body := ts.do("PATCH", bad.path, ts.admin, strings.NewReader(bad.body))
			wantError(t, resp, body, bad.status)
		}
		for _, method := range []string{"PATCH", "DELETE"} {
			resp, body := ts.do(method, "/api/v1/updates/1", ts.client, strings.NewReader(`{}`))
			wantError(t, resp, body, http.StatusForbidden)
		}

		// Yank: not offered, listed as yanked, still downloadable.
		if resp, body := ts.do("DELETE", "/api/v1/updates/2", ts.admin, nil); resp.StatusCode != http.StatusNoContent || len(body) != 0 {
			t.Fatalf("DELETE: %d %s", resp.StatusCode, body)
		}
		if _, body := ts.do("GET", "/api/v1/updates/2264_01", "", nil); decodeObject(t, body)["Version"] != "2264_01" {
			t.Errorf("a yanked release is still offered: %s", body)
		}
		_, body = ts.do("GET", "/api/v1/updates", ts.admin, nil)
		if list := decodeArray(t, body); len(list) != 2 || list[1]["Yanked"] != true || list[0]["Yanked"] != false {
			t.Errorf("list after yank: %s", body)
		}
		if resp, _ := ts.do("GET", "/uploads/2265_01/wemesse.apk", "", nil); resp.StatusCode != 200 {
			t.Errorf("a yanked release's file: %d, want 200", resp.StatusCode)
		}

		// Purge: row and file gone.
		if resp, body := ts.do("DELETE", "/api/v1/updates/2?purge=true", ts.admin, nil); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("purge: %d %s", resp.StatusCode, body)
		}
		if n := ts.count("apps"); n != 1 {
			t.Errorf("apps = %d after purge, want 1", n)
		}
		resp, body = ts.do("GET", "/uploads/2265_01/wemesse.apk", "", nil)
		wantError(t, resp, body, http.StatusNotFound)
		if files := ts.files(); strings.Join(files, ",") != "2264_01/wemesse.apk" {
			t.Errorf("files after purge = %v", files)
		}
		resp, body = ts.do("DELETE", "/api/v1/updates/2", ts.admin, nil)
		wantError(t, resp, body, http.StatusNotFound)
		resp, body = ts.do("DELETE", "/api/v1/updates/1?purge=maybe", ts.admin, nil)
		wantError(t, resp, body, http.StatusBadRequest)
	})
}

// TestDownloads_countCompletedOnly aborts a transfer midway, resumes it
// with Range, and checks one completed download is counted.
func TestDownloads_countCompletedOnly(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newTestServer(t, dsn, func(d *handler.Deps, _ *service.SignaturesConfig) { d.MaxUploadBytes = 32 << 20 })
		// 24 MB, read through a small receive buffer: far more than the
		// kernel can hold on the way, so hanging up really cuts it short.
		content := strings.Repeat("0123456789", 2_400_000)
		resp, body := ts.upload(ts.admin, "appVersion", "3_01", "tmpFile", "big.apk|"+content)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("upload: %d %s", resp.StatusCode, body)
		}
		downloads := func() float64 {
			_, body := ts.do("GET", "/api/v1/updates", ts.admin, nil)
			return decodeArray(t, body)[0]["Downloads"].(float64)
		}

		// Read the first 100 kB of a full GET, then hang up.
		conn, err := net.Dial("tcp", ts.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn.(*net.TCPConn).SetReadBuffer(16 << 10)
		fmt.Fprintf(conn, "GET /uploads/3_01/big.apk HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(conn)
		got, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		partial := make([]byte, 100_000)
		if _, err := io.ReadFull(got.Body, partial); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		time.Sleep(300 * time.Millisecond) // let the server notice
		if n := downloads(); n != 0 {
			t.Fatalf("an aborted transfer counted: Downloads = %v", n)
		}
		// A range that stops short of the end does not count either.
		if resp, _ := ts.do("GET", "/uploads/3_01/big.apk", "", nil, "Range", "bytes=100000-200000"); resp.StatusCode != 206 || downloads() != 0 {
			t.Fatalf("a middle range: status %d, Downloads %v", resp.StatusCode, downloads())
		}
		// Resuming to the end completes the download.
		resp, rest := ts.do("GET", "/uploads/3_01/big.apk", "", nil, "Range", "bytes=100000-")
		if resp.StatusCode != 206 || string(partial)+string(rest) != content {
			t.Fatalf("resume: status %d, %d bytes", resp.StatusCode, len(rest))
		}
		if n := downloads(); n != 1 {
			t.Errorf("Downloads = %v after the resumed transfer finished, want 1", n)
		}
		ts.do("GET", "/uploads/3_01/big.apk", "", nil)
		ts.do("HEAD", "/uploads/3_01/big.apk", "", nil)
		if n := downloads(); n != 2 {
			t.Errorf("Downloads = %v after a full GET and a HEAD, want 2", n)
		}
	})
}

// TestStats counts devices per release on both databases: the build for
// their ABI, else the universal one, whatever order the builds came in.
func TestStats(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newTestServer(t, dsn)
		ts.mustUpload("2268_00", "targetABI", "arm64") // 1: before its universal build
		ts.mustUpload("2268_00")                       // 2
		ts.mustUpload("2269_00", "targetABI", "x86")   // 3
		ts.mustUpload("2269_00", "targetABI", "arm")   // 4
		now := time.Now().Unix()
		for i, d := range []struct {
			version string
			active  int64
		}{
			{"2268_00arm64", now}, {"2268_00", now}, {"2268_00x86", now - 40*86400}, {"2269_00x86", now}, {"2269_00arm64", now}, {"1_0", now},
		} {
			body := fmt.Sprintf(`{"SessionID": %d, "AppVersion": %q, "DeviceMac": "m", "SessionActivity": %d}`, i+1, d.version, d.active)
			if resp, b := ts.do("POST", "/api/v1/users", ts.client, strings.NewReader(body)); resp.StatusCode != 200 {
				t.Fatalf("report: %d %s", resp.StatusCode, b)
			}
		}
		var got struct {
			Releases []struct {
				Id                          int64
				Devices, Active30d, Uploads int64
			}
			Totals struct{ Devices, Active30d, Uploads int64 }
		}
		ts.adminJSON("/api/v1/stats", &got)
		// arm64 and no-suffix (arm64) devices count on 1; x86 on 2268_00 has
		// no build of its own, so on 2; 2269_00 has no arm64 build and no
		// universal one, so that device counts nowhere; 1_0 has no release.
		want := map[int64][2]int64{1: {2, 2}, 2: {1, 0}, 3: {1, 1}, 4: {0, 0}}
		for _, r := range got.Releases {
			if w := want[r.Id]; r.Devices != w[0] || r.Active30d != w[1] || r.Uploads != r.Devices {
				t.Errorf("release %d: Devices %d Active30d %d Uploads %d, want %d %d and Uploads = Devices", r.Id, r.Devices, r.Active30d, r.Uploads, w[0], w[1])
			}
		}
		if got.Totals.Devices != 4 || got.Totals.Active30d != 3 {
			t.Errorf("totals = %+v, want 4 devices, 3 active", got.Totals)
		}
		resp, b := ts.do("GET", "/api/v1/stats", ts.client, nil)
		wantError(t, resp, b, http.StatusForbidden)
	})
}

// TestStats_matchesSQL generates 100,000 users and checks every number of
// /api/v1/stats against a direct SQL count written independently of the
// server's queries.
func TestStats_matchesSQL(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newTestServer(t, dsn)
		ts.mustUpload("2264_00")
		ts.mustUpload("2264_00", "targetABI", "arm")
		ts.mustUpload("2265_01", "targetABI", "arm64")
		ts.mustUpload("2265_01")
		ts.mustUpload("2266_00", "targetABI", "x86")
		now := time.Now().Unix()
		gen := `WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 100000)
			INSERT INTO users (session_id, device_mac, app_version, target_abi, session_activity)
			SELECT n, 'mac', CASE n % 4 WHEN 0 THEN '2264_00' WHEN 1 THEN '2265_01' WHEN 2 THEN '2266_00' ELSE '9_9' END,
				CASE n % 5 WHEN 0 THEN '' WHEN 1 THEN 'arm' WHEN 2 THEN 'arm64' WHEN 3 THEN 'x86' ELSE 'x86_64' END,
				? - (n % 60) * 86400 - 43200 FROM g`
		if strings.HasPrefix(dsn, "postgres") {
			gen = `INSERT INTO users (session_id, device_mac, app_version, target_abi, session_activity)
				SELECT n, 'mac', CASE n % 4 WHEN 0 THEN '2264_00' WHEN 1 THEN '2265_01' WHEN 2 THEN '2266_00' ELSE '9_9' END,
					CASE n % 5 WHEN 0 THEN '' WHEN 1 THEN 'arm' WHEN 2 THEN 'arm64' WHEN 3 THEN 'x86' ELSE 'x86_64' END,
					? - (n % 60) * 86400 - 43200 FROM generate_series(1, 100000) n`
		}
		if err := ts.db.Exec(gen, now).Error; err != nil {
			t.Fatal(err)
		}
		var got struct {
			Releases []struct {
				Id                 int64
				Version, TargetABI string
				Devices, Active30d int64
			}
			Totals struct{ Devices, Active30d int64 }
		}
		ts.adminJSON("/api/v1/stats", &got)
		// Activities sit half a day off the 30-day line, so the second the
		// server reads its clock cannot matter.
		// A device counts on the build for its ABI (none reported: arm64),
		// else on the universal build of its version.
		const effective = `COALESCE(NULLIF(u.target_abi, ''), 'arm64')`
		var sumDevices, sumActive int64
		for _, r := range got.Releases {
			where := `u.app_version = ? AND ` + effective + ` = ?`
			args := []any{r.Version, r.TargetABI}
			if r.TargetABI == "" {
				where = `u.app_version = ? AND NOT EXISTS (SELECT 1 FROM apps a WHERE a.app_version = u.app_version AND a.target_abi = ` + effective + `)`
				args = []any{r.Version}
			}
			var want struct{ Devices, Active int64 }
			q := `SELECT COUNT(*) AS devices, SUM(CASE WHEN u.session_activity >= ? THEN 1 ELSE 0 END) AS active FROM users u WHERE ` + where
			if err := ts.db.Raw(q, append([]any{now - 30*86400}, args...)...).Scan(&want).Error; err != nil {
				t.Fatal(err)
			}
			if r.Devices != want.Devices || r.Active30d != want.Active {
				t.Errorf("release %d (%s %q): Devices %d Active30d %d, SQL says %d %d", r.Id, r.Version, r.TargetABI, r.Devices, r.Active30d, want.Devices, want.Active)
			}
			sumDevices, sumActive = sumDevices+want.Devices, sumActive+want.Active
		}
		if got.Totals.Devices != sumDevices || got.Totals.Active30d != sumActive || sumDevices == 0 {
			t.Errorf("totals %+v, SQL says %d devices, %d active", got.Totals, sumDevices, sumActive)
		}
	})
}

// TestHistory_endpoint checks GET /api/v1/stats/history: days oldest
// first, today last and live, the exact keys, bounds, and the admin role.
func TestHistory_endpoint(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newTestServer(t, dsn)
		ts.mustUpload("2268_00")
		body := fmt.Sprintf(`{"SessionID": 1, "AppVersion": "2268_00", "DeviceMac": "m", "SessionActivity": %d, "SessionRegister": %d}`, time.Now().Unix(), time.Now().Unix())
		if resp, b := ts.do("POST", "/api/v1/users", ts.client, strings.NewReader(body)); resp.StatusCode != 200 {
			t.Fatalf("report: %d %s", resp.StatusCode, b)
		}
		var got map[string][]map[string]json.RawMessage
		ts.adminJSON("/api/v1/stats/history?days=3", &got)
		days := got["Days"]
		if len(days) != 3 {
			t.Fatalf("%d days, want 3: %v", len(days), got)
		}
		today := time.Now().UTC().Format(time.DateOnly)
		if string(days[2]["Day"]) != `"`+today+`"` || string(days[0]["Day"]) >= string(days[1]["Day"]) {
			t.Errorf("days %s, %s, %s; want oldest first, the last %s", days[0]["Day"], days[1]["Day"], days[2]["Day"], today)
		}
		var releases []map[string]any
		if err := json.Unmarshal(days[2]["Releases"], &releases); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"Id": 1.0, "Version": "2268_00", "TargetABI": "", "Devices": 1.0, "Active30d": 1.0, "Downloads": 0.0, "NewDevices": 1.0}
		if len(releases) != 1 || !reflect.DeepEqual(releases[0], want) {
			t.Errorf("today = %v, want [%v]", releases, want)
		}
		if resp, b := ts.do("GET", "/api/v1/stats/history", ts.admin, nil); resp.StatusCode != 200 || strings.Count(string(b), `"Day"`) != 30 {
			t.Errorf("default: %d, %d days; want 200 and 30", resp.StatusCode, strings.Count(string(b), `"Day"`))
		}
		for _, q := range []string{"0", "367", "x"} {
			resp, b := ts.do("GET", "/api/v1/stats/history?days="+q, ts.admin, nil)
			wantError(t, resp, b, http.StatusBadRequest)
		}
		resp, b := ts.do("GET", "/api/v1/stats/history", ts.client, nil)
		wantError(t, resp, b, http.StatusForbidden)
	})
}
