package handler_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/wemesse/server/internal/dbtest"
)

const device = `{"AppLocale": "en", "AppVersion": "%s", "DeviceLocale": "en-us", "DeviceMac": "%s",
 "DeviceModel": "OnePlus A6000", "DeviceSDK": "SDK 30", "SessionActivity": 1636201000,
 "SessionID": %d, "SessionRegister": 1636034599, "TgVersion": "8.1.2", "Unknown": [1, {"x": 2}]}`

func (ts *testServer) report(version, mac string, session int) (*http.Response, []byte) {
	return ts.do("POST", "/api/v1/users", ts.client, strings.NewReader(fmt.Sprintf(device, version, mac, session)), "Content-Type", "application/json")
}

// uploads returns the Uploads counter of each release by version.
func (ts *testServer) uploads() map[string]float64 {
	ts.tb.Helper()
	_, body := ts.do("GET", "/api/v1/updates", ts.admin, nil)
	out := map[string]float64{}
	for _, r := range decodeArray(ts.tb, body) {
		out[r["Version"].(string)+r["TargetABI"].(string)] = r["Uploads"].(float64)
	}
	return out
}

func TestUserReport(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newTestServer(t, dsn)
		ts.mustUpload("2264_00")
		ts.mustUpload("2267_01")

		resp, body := ts.report("2264_00", "02:30:54:89:2d:5e", 2)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d body %s", resp.StatusCode, body)
		}
		got := decodeObject(t, body)
		wantKeys(t, got, userKeys...)
		want := map[string]any{
			"ID": float64(1), "AppLocale": "en", "AppVersion": "2264_00", "DeviceLocale": "en-us",
			"DeviceMac": "02:30:54:89:2d:5e", "DeviceModel": "OnePlus A6000", "DeviceSDK": "SDK 30",
			"SessionActivity": float64(1636201000), "SessionID": float64(2), "SessionRegister": float64(1636034599),
			"TgVersion": "8.1.2", "TargetABI": "",
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %v, want %v", k, got[k], v)
			}
		}
		steps := []struct {
			name    string
			version string
			mac     string
			session int
			wantID  float64
			counts  map[string]float64
		}{
			{"same device, same version: no count", "2264_00", "02:30:54:89:2d:5e", 2, 1, map[string]float64{"2264_00": 1, "2267_01": 0}},
			{"same device, new version", "2267_01arm64", "02:30:54:89:2d:5e", 2, 1, map[string]float64{"2264_00": 1, "2267_01": 1}},
			{"same device, back to the old version", "2264_00", "02:30:54:89:2d:5e", 2, 1, map[string]float64{"2264_00": 2, "2267_01": 1}},
			{"same MAC, other session is another device", "2264_00", "02:30:54:89:2d:5e", 3, 2, map[string]float64{"2264_00": 3, "2267_01": 1}},
			{"version without a release counts nothing", "2265_00", "aa", 4, 3, map[string]float64{"2264_00": 3, "2267_01": 1}},
		}
		for _, s := range steps {
			resp, body := ts.report(s.version, s.mac, s.session)
			if resp.StatusCode != 200 || decodeObject(t, body)["ID"] != s.wantID {
				t.Fatalf("%s: status %d body %s, want ID %v", s.name, resp.StatusCode, body, s.wantID)
			}
			if got := ts.uploads(); fmt.Sprint(got) != fmt.Sprint(s.counts) {
				t.Errorf("%s: uploads = %v, want %v", s.name, got, s.counts)
			}
		}
		if n := ts.count("users"); n != 3 {
			t.Errorf("users = %d, want 3", n)
		}

		_, body = ts.do("GET", "/api/v1/users", ts.admin, nil)
		list := decodeArray(t, body)
		if len(list) != 3 || list[0]["ID"] != float64(1) || list[2]["ID"] != float64(3) || list[0]["AppVersion"] != "2264_00" {
			t.Errorf("user list = %s", body)
		}
		for _, u := range list {
			wantKeys(t, u, userKeys...)
		}
		for query, want := range map[string]string{
			"?limit=2": "1,2", "?after=2": "3", "?after=1&limit=1": "2", "?after=3": "", "?limit=100000": "1,2,3",
		} {
			resp, body := ts.do("GET", "/api/v1/users"+query, ts.admin, nil)
			var ids []string
			for _, u := range decodeArray(t, body) {
				ids = append(ids, fmt.Sprint(u["ID"]))
			}
			if resp.StatusCode != 200 || strings.Join(ids, ",") != want {
				t.Errorf("GET /api/v1/users%s: %d ids %v, want %s", query, resp.StatusCode, ids, want)
			}
		}
		for _, query := range []string{"?limit=0", "?limit=x", "?after=-1", "?limit=100001", "?after=1.5"} {
			resp, body := ts.do("GET", "/api/v1/users"+query, ts.admin, nil)
			wantError(t, resp, body, http.StatusBadRequest)
		}
	})
}

func TestUserReport_rejectsBadInput(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newTestServer(t, dsn)
		tests := []struct {
			name, body string
			status     int
		}{
			{"empty body", "", 400},
			{"not JSON", "hello", 400},
			{"array", "[]", 400},
			{"trailing data", `{"SessionID": 1, "AppVersion": "1_0"} {}`, 400},
			{"zero SessionID", `{"SessionID": 0, "AppVersion": "1_0"}`, 400},
			{"missing SessionID", `{"AppVersion": "1_0"}`, 400},
			{"SessionID as string", `{"SessionID": "1", "AppVersion": "1_0"}`, 400},
			{"fractional time", `{"SessionID": 1, "AppVersion": "1_0", "SessionActivity": 1.5}`, 400},
			{"bad version", `{"SessionID": 1, "AppVersion": "one"}`, 400},
			{"long text", `{"SessionID": 1, "AppVersion": "1_0", "DeviceModel": "` + strings.Repeat("m", 257) + `"}`, 400},
			{"too large", `{"SessionID": 1, "AppVersion": "1_0", "Pad": "` + strings.Repeat("p", 70000) + `"}`, 413},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				resp, body := ts.do("POST", "/api/v1/users", ts.client, strings.NewReader(tt.body))
				wantError(t, resp, body, tt.status)
			})
		}
		if n := ts.count("users"); n != 0 {
			t.Errorf("users = %d, want 0", n)
		}
		resp, body := ts.do("GET", "/api/v1/users", ts.admin, nil)
		if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "[]" {
			t.Errorf("empty user list: %d %s, want 200 []", resp.StatusCode, body)
		}
	})
}

// TestUserReport_concurrent fires simultaneous reports: one device many
// times, and many devices once, and checks rows and counters are exact.
func TestUserReport_concurrent(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newTestServer(t, dsn)
		ts.mustUpload("2264_00")
		ts.mustUpload("2267_01")

		parallel := func(n int, fn func(i int) (*http.Response, []byte)) {
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if resp, body := fn(i); resp.StatusCode != 200 {
						t.Errorf("report %d: status %d body %s", i, resp.StatusCode, body)
					}
				}()
			}
			wg.Wait()
		}
		parallel(50, func(int) (*http.Response, []byte) { return ts.report("2264_00", "one-device", 1) })
		if n, got := ts.count("users"), ts.uploads()["2264_00"]; n != 1 || got != 1 {
			t.Fatalf("one device x50: %d rows, uploads %v; want 1 row, 1 upload", n, got)
		}
		parallel(50, func(int) (*http.Response, []byte) { return ts.report("2267_01", "one-device", 1) })
		if got := ts.uploads()["2267_01"]; got != 1 {
			t.Fatalf("one device updating x50: uploads %v, want 1", got)
		}
		parallel(100, func(i int) (*http.Response, []byte) { return ts.report("2264_00", fmt.Sprintf("mac-%d", i), 1000+i) })
		if n, got := ts.count("users"), ts.uploads()["2264_00"]; n != 101 || got != 101 {
			t.Fatalf("100 devices: %d rows, uploads %v; want 101 rows, 101 uploads", n, got)
		}
	})
}
