package handler_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/wemesse/server/internal/dbtest"
)

// The certificates of testdata/apk's signers (see testdata/apk/make.sh).
const (
	signerA = "c7b4b4ab42221a81b0b5353b42f59d4c5464889a795f1ce82f84454f0ba2a7a3"
	signerB = "755083981e459a507ab9db5c6e7b4628a2be4ee162264ac73e598ca7f53060ef"
)

// apkFixture returns the bytes of testdata/apk/<name>.
func apkFixture(tb testing.TB, name string) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "apk", name))
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// uploadFixture uploads testdata/apk/<name> as version, with more form
// fields.
func (ts *testServer) uploadFixture(version, name string, fields ...string) (*http.Response, []byte) {
	ts.tb.Helper()
	return ts.upload(ts.admin, append([]string{"appVersion", version, "tmpFile", "wemesse.apk|" + apkFixture(ts.tb, name)}, fields...)...)
}

// TestUpload_verification uploads each APK fixture, in order, to a server
// that verifies uploads, on SQLite and PostgreSQL: each is accepted with
// what it declares, or refused with 422 and a sentence naming the rule,
// leaving no row, file or staged file behind.
func TestUpload_verification(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newVerifyingServer(t, dsn)
		tests := []struct {
			name    string
			version string
			file    string
			fields  []string
			status  int
			want    string         // part of the error, or of the body
			keys    map[string]any // of an accepted release
		}{
			{"good (v2+v3) pins package and signer", "1_00", "good.apk", nil, 201, "", map[string]any{
				"PackageName": "org.wemesse.app", "VersionCode": 10.0, "VersionName": "1.0.10", "MinSdk": 24.0,
				"TargetSdk": 34.0, "SignerSHA256": signerA, "TargetABI": ""}},
			{"v1-only for minSdk 21, targetSdk 29", "1_01", "v1only.apk", nil, 201, "", map[string]any{"MinSdk": 21.0, "VersionCode": 11.0}},
			{"arm64-only is stored as arm64", "1_02", "arm64.apk", nil, 201, "", map[string]any{"TargetABI": "arm64", "VersionCode": 12.0}},
			{"tampered", "2_00", "tampered.apk", nil, 422, "changed after signing", nil},
			{"unsigned", "2_00", "unsigned.apk", nil, 422, "not signed", nil},
			{"another signer", "2_00", "othersigner.apk", nil, 422, "not by the pinned " + signerA, nil},
			{"another package", "2_00", "otherpackage.apk", nil, 422, "package name org.example.other differs from org.wemesse.app", nil},
			{"debuggable", "2_00", "debuggable.apk", nil, 422, "debuggable", nil},
			{"testOnly", "2_00", "testonly.apk", nil, 422, "testOnly", nil},
			{"versionCode backwards", "2_00", "backwards.apk", nil, 422, "versionCode 5 is out of order", nil},
			{"ABI contradiction", "2_00", "arm64.apk", []string{"targetABI", "x86"}, 422, "targetABI x86 contradicts", nil},
			{"random bytes", "2_00", "random.bin", nil, 422, "not an APK", nil},
			{"v1-only targeting SDK 34", "2_00", "v1target34.apk", nil, 422, "targetSdkVersion 34 requires", nil},
			{"rotated signer (v3 lineage) moves the pin", "2_00", "rotated.apk", nil, 201, "", map[string]any{"SignerSHA256": signerB, "VersionCode": 40.0}},
			{"the old signer after rotation", "3_00", "newest.apk", nil, 422, "not by the pinned " + signerB, nil},
		}
		for _, tt := range tests {
			rows, files := ts.count("apps"), len(ts.files())
			resp, body := ts.uploadFixture(tt.version, tt.file, tt.fields...)
			if resp.StatusCode != tt.status {
				t.Fatalf("%s: status %d %s, want %d", tt.name, resp.StatusCode, body, tt.status)
			}
			got := decodeObject(t, body)
			if tt.status != http.StatusCreated {
				msg, _ := got["error"].(string)
				if len(got) != 1 || !strings.Contains(msg, tt.want) {
					t.Errorf("%s: body %s, want {\"error\"} containing %q", tt.name, body, tt.want)
				}
				if r, f := ts.count("apps"), len(ts.files()); r != rows || f != files {
					t.Errorf("%s: %d rows and %d files after the refusal, want %d and %d: %v", tt.name, r, f, rows, files, ts.files())
				}
				continue
			}
			for k, v := range tt.keys {
				if got[k] != v {
					t.Errorf("%s: %s = %#v, want %#v", tt.name, k, got[k], v)
				}
			}
		}

		// minSdk gating: v1only (minSdk 21) is the newest build a device on
		// SDK 23 can install; without ?sdk= nothing is filtered.
		for _, c := range []struct{ query, want string }{{"?sdk=23", "1_01"}, {"?sdk=24", "2_00"}, {"", "2_00"}, {"?sdk=20", ""}} {
			resp, body := ts.do("GET", "/api/v1/updates/1_00arm64"+c.query, "", nil)
			if c.want == "" {
				if resp.StatusCode != http.StatusNotFound {
					t.Errorf("check%s: %d %s, want 404", c.query, resp.StatusCode, body)
				}
				continue
			}
			if v := decodeObject(t, body)["Version"]; resp.StatusCode != 200 || v != c.want {
				t.Errorf("check%s: %d, Version %v; want %s", c.query, resp.StatusCode, v, c.want)
			}
		}
		if resp, body := ts.do("GET", "/api/v1/updates/1_00?sdk=abc", "", nil); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("check?sdk=abc: %d %s, want 400", resp.StatusCode, body)
		}
	})
}

// TestUpload_verificationRace uploads, at once, two builds that are each
// acceptable alone but not together (version 2 with versionCode 20 and
// version 1 with versionCode 30): exactly one must be stored, on SQLite and
// PostgreSQL, round after round.
func TestUpload_verificationRace(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newVerifyingServer(t, dsn)
		for round := range 20 {
			var wg sync.WaitGroup
			statuses := make([]int, 2)
			for i, up := range []struct{ version, file string }{{"2_00", "newer.apk"}, {"1_00", "newest.apk"}} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					body, ctype := form(t, "appVersion", up.version, "tmpFile", "wemesse.apk|"+apkFixture(t, up.file))
					req, _ := http.NewRequest("POST", ts.URL+"/api/v1/updates", body)
					req.Header.Set("signature", ts.admin)
					req.Header.Set("Content-Type", ctype)
					resp, err := ts.Client().Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
					statuses[i] = resp.StatusCode
				}()
			}
			wg.Wait()
			if fmt.Sprint(statuses) != "[201 422]" && fmt.Sprint(statuses) != "[422 201]" {
				t.Fatalf("round %d: statuses %v, want one 201 and one 422", round, statuses)
			}
			if n := ts.count("apps"); n != 1 {
				t.Fatalf("round %d: %d rows, want 1", round, n)
			}
			var id int64
			if err := ts.db.Table("apps").Select("id").Scan(&id).Error; err != nil {
				t.Fatal(err)
			}
			if resp, body := ts.do("DELETE", fmt.Sprintf("/api/v1/updates/%d?purge=true", id), ts.admin, nil); resp.StatusCode != http.StatusNoContent {
				t.Fatalf("purge: %d %s", resp.StatusCode, body)
			}
		}
	})
}
