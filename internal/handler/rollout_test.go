package handler_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/model"
)

// deviceFor finds a device id whose bucket for each version is inside (<) or
// outside (>=) the given rollout.
func deviceFor(tb testing.TB, rules ...any) string {
	tb.Helper()
	for i := range 100000 {
		d := fmt.Sprint(i)
		ok := true
		for j := 0; j < len(rules); j += 3 {
			v, err := model.ParseVersion(rules[j].(string))
			if err != nil {
				tb.Fatal(err)
			}
			inside := model.Bucket(d, v) < rules[j+1].(int)
			ok = ok && inside == rules[j+2].(bool)
		}
		if ok {
			return d
		}
	}
	tb.Fatalf("no device matches %v", rules)
	return ""
}

// TestUpdateCheck_selection runs the offer rules (ABI × rollout × mandatory
// × yanked × client version) against a real server.
func TestUpdateCheck_selection(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newTestServer(t, dsn)
		ts.mustUpload("2264_00")                                            // 1: universal, mandatory
		ts.mustUpload("2265_00", "targetABI", "arm")                        // 2: arm, mandatory, yanked below
		ts.mustUpload("2266_01", "targetABI", "arm64")                      // 3: arm64
		ts.mustUpload("2267_00", "rollout", "50")                           // 4: universal, mandatory, 50%
		ts.mustUpload("2267_01", "targetABI", "arm64", "rollout", "10")     // 5: arm64, 10%
		ts.mustUpload("2268_00", "targetABI", "x86")                        // 6: x86, mandatory
		ts.mustUpload("2269_00", "targetABI", "x86_64", "appNotes", "gone") // 7: x86_64, mandatory, yanked below
		for _, id := range []string{"2", "7"} {
			if resp, body := ts.do("DELETE", "/api/v1/updates/"+id, ts.admin, nil); resp.StatusCode != http.StatusNoContent {
				t.Fatalf("yank %s: %d %s", id, resp.StatusCode, body)
			}
		}
		in := deviceFor(t, "2267_00", 50, true, "2267_01", 10, true)
		half := deviceFor(t, "2267_00", 50, true, "2267_01", 10, false)
		out := deviceFor(t, "2267_00", 50, false, "2267_01", 10, false)

		tests := []struct {
			name, client, device string
			version, abi         string // want; empty version: 404
			skipped              bool
		}{
			{"arm64 without device sees full rollouts only", "2263_00arm64", "", "2266_01", "arm64", false},
			{"arm64 past the mandatory release", "2264_00arm64", "", "2266_01", "arm64", true},
			{"no suffix means arm64", "2264_00", "", "2266_01", "arm64", true},
			{"arm64 inside both rollouts gets the newest", "2264_00arm64", in, "2267_01", "arm64", false},
			{"arm64 inside both, already on the mandatory one", "2267_00arm64", in, "2267_01", "arm64", true},
			{"no suffix inside both rollouts", "2266_01", in, "2267_01", "arm64", false},
			{"arm64 inside 50% only", "2266_01arm64", half, "2267_00", "", false},
			{"arm64 outside both", "2266_01arm64", out, "2266_01", "arm64", true},
			{"arm sees universal only; its mandatory build is yanked", "2263_00arm", "", "2264_00", "", false},
			{"arm past a yanked mandatory release is not forced back", "2265_00arm", "", "2264_00", "", true},
			{"arm inside 50%", "2265_00arm", in, "2267_00", "", false},
			{"x86 gets its own mandatory build", "2267_00x86", "", "2268_00", "x86", false},
			{"x86 on its build", "2268_00x86", out, "2268_00", "x86", true},
			{"x86_64's only build is yanked", "2264_00x86_64", "", "2264_00", "", true},
			{"x86_64 behind the universal mandatory", "2000_01x86_64", "", "2264_00", "", false},
			{"far ahead of everything", "9999_00arm64", in, "2267_01", "arm64", true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				path := "/api/v1/updates/" + tt.client
				if tt.device != "" {
					path += "?device=" + tt.device
				}
				resp, body := ts.do("GET", path, "", nil)
				if resp.StatusCode != 200 {
					t.Fatalf("status %d body %s", resp.StatusCode, body)
				}
				got := decodeObject(t, body)
				if got["Version"] != tt.version || got["TargetABI"] != tt.abi || got["Skipped"] != tt.skipped {
					t.Errorf("got %v %q Skipped %v, want %v %q Skipped %v", got["Version"], got["TargetABI"], got["Skipped"], tt.version, tt.abi, tt.skipped)
				}
			})
		}

		t.Run("raising a rollout keeps devices that saw it", func(t *testing.T) {
			resp, body := ts.do("PATCH", "/api/v1/updates/5", ts.admin, strings.NewReader(`{"Rollout": 60}`))
			if resp.StatusCode != 200 || decodeObject(t, body)["Rollout"] != float64(60) {
				t.Fatalf("PATCH: %d %s", resp.StatusCode, body)
			}
			_, body = ts.do("GET", "/api/v1/updates/2264_00arm64?device="+in, "", nil)
			if decodeObject(t, body)["Version"] != "2267_01" {
				t.Errorf("after raising the rollout the device got %s", body)
			}
		})
	})
}

func TestUpdateCheck_noBuildForABI(t *testing.T) {
	ts := newTestServer(t, dbtest.SQLite(t))
	ts.mustUpload("2264_00", "targetABI", "arm")
	resp, body := ts.do("GET", "/api/v1/updates/2264_00x86", "", nil)
	wantError(t, resp, body, http.StatusNotFound)
	if resp, _ := ts.do("GET", "/api/v1/updates/2264_00arm", "", nil); resp.StatusCode != 200 {
		t.Errorf("arm client: %d, want 200", resp.StatusCode)
	}
}
