package handler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wemesse/server/internal/dbtest"
)

// patch sends PATCH /api/v1/updates/{id} as admin and wants 200.
func (ts *testServer) patch(id any, body string) map[string]any {
	ts.tb.Helper()
	resp, b := ts.do("PATCH", fmt.Sprint("/api/v1/updates/", id), ts.admin, strings.NewReader(body))
	if resp.StatusCode != http.StatusOK {
		ts.tb.Fatalf("PATCH %v %s: %d %s", id, body, resp.StatusCode, b)
	}
	return decodeObject(ts.tb, b)
}

// release returns release id from the admin list.
func (ts *testServer) release(id float64) map[string]any {
	ts.tb.Helper()
	_, body := ts.do("GET", "/api/v1/updates", ts.admin, nil)
	for _, r := range decodeArray(ts.tb, body) {
		if r["Id"] == id {
			return r
		}
	}
	ts.tb.Fatalf("release %v not listed", id)
	return nil
}

// stepStates lists the states of a release's schedule steps.
func stepStates(rel map[string]any) string {
	var states []string
	for _, s := range rel["Schedule"].([]any) {
		states = append(states, s.(map[string]any)["State"].(string))
	}
	return strings.Join(states, ",")
}

// rfc3339 formats t as the API takes it.
func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// TestUpdateCheck_tracks runs the offer rules over track × halted ×
// MandatoryAt × schedule against a real server, with the tracks internal,
// beta, stable.
func TestUpdateCheck_tracks(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newTestServer(t, dsn)
		past := "2000-01-01T00:00:00Z"
		stable := ts.mustUpload("3000_01", "mandatoryAt", past)                                  // stable, forced by date
		beta := ts.mustUpload("3001_01", "track", "beta", "mandatoryAt", "2999-01-01T00:00:00Z") // forced later
		ts.mustUpload("3002_00", "track", "internal")                                            // mandatory by version
		halted := ts.mustUpload("3003_01", "mandatoryAt", past)                                  // stable, forced, halted below
		ramp := ts.mustUpload("3004_01", "track", "beta", "rollout", "10")                       // beta, ramped below
		if stable["Track"] != "stable" || beta["Track"] != "beta" || beta["MandatoryAt"] != "2999-01-01T00:00:00Z" {
			t.Fatalf("upload answers: %v / %v", stable, beta)
		}
		if got := ts.patch(halted["Id"], `{"Halted": true}`); got["Halted"] != true || got["Rollout"] != float64(100) {
			t.Fatalf("halt: %v", got)
		}

		type check struct {
			client, track string
			version       string // want
			skipped       bool
		}
		run := func(t *testing.T, tests []check) {
			t.Helper()
			for _, tt := range tests {
				path := "/api/v1/updates/" + tt.client
				if tt.track != "" {
					path += "?track=" + tt.track
				}
				resp, body := ts.do("GET", path, "", nil)
				if resp.StatusCode != 200 {
					t.Fatalf("%s: status %d body %s", path, resp.StatusCode, body)
				}
				got := decodeObject(t, body)
				if got["Version"] != tt.version || got["Skipped"] != tt.skipped {
					t.Errorf("%s: got %v Skipped %v, want %v Skipped %v", path, got["Version"], got["Skipped"], tt.version, tt.skipped)
				}
			}
		}
		t.Run("tracks, halted, MandatoryAt", func(t *testing.T) {
			run(t, []check{
				{"2999_01", "", "3000_01", false},         // default track; its MandatoryAt has passed
				{"2999_01", "stable", "3000_01", false},   // the halted 3003_01 is not offered
				{"3000_01", "stable", "3000_01", true},    // and the halted one forces nobody
				{"2999_01", "beta", "3001_01", false},     // forced by the stable release it follows
				{"3000_01", "beta", "3001_01", true},      // 3001_01's MandatoryAt is to come
				{"3000_01", "internal", "3002_00", false}, // every track; _00 forces
				{"3002_00", "internal", "3002_00", true},  // 3004_01 is at 10%, no device
				{"3002_00", "beta", "3001_01", true},      // an internal build is not offered to beta
			})
			resp, body := ts.do("GET", "/api/v1/updates/3000_01?track=nightly", "", nil)
			if msg := wantError(t, resp, body, http.StatusBadRequest); !strings.Contains(msg, "internal, beta, stable") {
				t.Errorf("unknown track: %q", msg)
			}
		})
		t.Run("MandatoryAt set, then cleared", func(t *testing.T) {
			if got := ts.patch(beta["Id"], `{"MandatoryAt": "`+past+`"}`); got["MandatoryAt"] != past {
				t.Fatalf("set: %v", got["MandatoryAt"])
			}
			run(t, []check{{"3000_01", "beta", "3001_01", false}, {"3000_01", "stable", "3000_01", true}})
			if got := ts.patch(beta["Id"], `{"MandatoryAt": null}`); got["MandatoryAt"] != nil {
				t.Fatalf("clear: %v", got["MandatoryAt"])
			}
			run(t, []check{{"3000_01", "beta", "3001_01", true}})
		})
		t.Run("a MandatoryAt passing changes the answer", func(t *testing.T) {
			ts.patch(beta["Id"], `{"MandatoryAt": "`+rfc3339(ts.clock.now().Add(time.Hour))+`"}`)
			run(t, []check{{"3000_01", "beta", "3001_01", true}})
			ts.clock.advance(2 * time.Hour)
			run(t, []check{{"3000_01", "beta", "3001_01", false}})
			ts.patch(beta["Id"], `{"MandatoryAt": null}`)
		})
		t.Run("resume", func(t *testing.T) {
			ts.patch(halted["Id"], `{"Halted": false}`)
			run(t, []check{{"3000_01", "stable", "3003_01", false}, {"3002_00", "beta", "3003_01", false}})
			ts.patch(halted["Id"], `{"Halted": true}`)
		})
		t.Run("schedule, paused by a halt", func(t *testing.T) {
			at := ts.clock.now().Add(time.Hour).Truncate(time.Second)
			got := ts.patch(ramp["Id"], `{"Schedule": [{"At": "`+rfc3339(at)+`", "Rollout": 100}]}`)
			if stepStates(got) != "pending" || got["Rollout"] != float64(10) {
				t.Fatalf("schedule: %v", got)
			}
			ts.patch(ramp["Id"], `{"Halted": true}`)
			ts.clock.advance(2 * time.Hour)
			if err := ts.releases.ApplyDue(context.Background()); err != nil {
				t.Fatal(err)
			}
			if rel := ts.release(ramp["Id"].(float64)); stepStates(rel) != "pending" || rel["Rollout"] != float64(10) {
				t.Fatalf("a halted release's step was applied: %v", rel)
			}
			// Resuming moves the step two hours later, to one hour from now.
			rel := ts.patch(ramp["Id"], `{"Halted": false}`)
			step := rel["Schedule"].([]any)[0].(map[string]any)
			if moved, _ := time.Parse(time.RFC3339, step["At"].(string)); moved.Sub(at) < 2*time.Hour || moved.Sub(at) > 2*time.Hour+time.Minute {
				t.Errorf("after resume the step is at %v, want about %v", moved, at.Add(2*time.Hour))
			}
			if err := ts.releases.ApplyDue(context.Background()); err != nil {
				t.Fatal(err)
			}
			run(t, []check{{"3002_00", "beta", "3001_01", true}})
			ts.clock.advance(90 * time.Minute)
			if err := ts.releases.ApplyDue(context.Background()); err != nil {
				t.Fatal(err)
			}
			if rel := ts.release(ramp["Id"].(float64)); stepStates(rel) != "applied" || rel["Rollout"] != float64(100) {
				t.Fatalf("the due step was not applied: %v", rel)
			}
			// The server applied the step: the audit trail's last row says so.
			_, body := ts.do("GET", "/api/v1/audit", ts.admin, nil)
			var audit []map[string]any
			if err := json.Unmarshal(body, &audit); err != nil || len(audit) == 0 {
				t.Fatalf("audit: %s", body)
			}
			if last := audit[len(audit)-1]; last["Actor"] != "system" || last["Action"] != "release.step" || last["ReleaseId"] != ramp["Id"] ||
				!strings.Contains(last["Detail"].(string), "Rollout: 10 → 100") {
				t.Errorf("the applied step's audit row: %v, want system's release.step, Rollout: 10 → 100", last)
			}
			run(t, []check{{"3002_00", "beta", "3004_01", true}, {"3002_00", "stable", "3000_01", true}})
		})
	})
}

func TestReleaseEdit_strict(t *testing.T) {
	ts := newTestServer(t, dbtest.SQLite(t))
	rel := ts.mustUpload("3000_01", "rollout", "10")
	for _, tt := range []struct{ body, want string }{
		{`{"Rollout": 50, "Foo": 1, "bar": true}`, `Unknown fields: "Foo", "bar".`},
		{`{"rollout": 50}`, `Unknown fields: "rollout".`},
		{`{"Track": "beta"}`, `Unknown fields: "Track".`},
		{`{"MandatoryAt": "tomorrow"}`, `MandatoryAt must be an RFC 3339 time`},
		{`{"Schedule": [{"At": "2000-01-01T00:00:00Z", "Rollout": 50}]}`, `At must be in the future`},
		{`{"Schedule": [{"At": "2999-01-01T00:00:00Z", "Rollout": 0}]}`, `Rollout must be an integer from 1 to 100`},
		{`{"Schedule": [{"At": "2999-01-02T00:00:00Z", "Rollout": 20}, {"At": "2999-01-01T00:00:00Z", "Rollout": 50}]}`, `later than step 1's`},
	} {
		resp, body := ts.do("PATCH", fmt.Sprint("/api/v1/updates/", rel["Id"]), ts.admin, strings.NewReader(tt.body))
		if msg := wantError(t, resp, body, http.StatusBadRequest); !strings.Contains(msg, tt.want) {
			t.Errorf("%s: error %q, want it to contain %q", tt.body, msg, tt.want)
		}
	}
	if got := ts.release(rel["Id"].(float64)); got["Rollout"] != float64(10) || stepStates(got) != "" {
		t.Errorf("a refused PATCH changed the release: %v", got)
	}
}

// TestReleaseEdit_handChangeCancelsSchedule: a Rollout set by hand after a
// schedule cancels the steps still pending; a new Schedule starts over.
func TestReleaseEdit_handChangeCancelsSchedule(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newTestServer(t, dsn)
		rel := ts.mustUpload("3000_01", "rollout", "1")
		now := ts.clock.now()
		ts.patch(rel["Id"], `{"Schedule": [{"At": "`+rfc3339(now.Add(time.Hour))+`", "Rollout": 10}, {"At": "`+rfc3339(now.Add(2*time.Hour))+`", "Rollout": 50}]}`)
		ts.clock.advance(90 * time.Minute)
		if err := ts.releases.ApplyDue(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := ts.release(rel["Id"].(float64)); stepStates(got) != "applied,pending" || got["Rollout"] != float64(10) {
			t.Fatalf("after the first step: %v", got)
		}
		if got := ts.patch(rel["Id"], `{"Rollout": 5}`); stepStates(got) != "applied,cancelled" || got["Rollout"] != float64(5) {
			t.Fatalf("after a hand change: %v", got)
		}
		ts.clock.advance(time.Hour)
		if err := ts.releases.ApplyDue(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := ts.release(rel["Id"].(float64)); got["Rollout"] != float64(5) {
			t.Errorf("a cancelled step changed the rollout: %v", got)
		}
		got := ts.patch(rel["Id"], `{"Rollout": 20, "Schedule": [{"At": "`+rfc3339(ts.clock.now().Add(time.Hour))+`", "Rollout": 100}]}`)
		if stepStates(got) != "pending" || got["Rollout"] != float64(20) {
			t.Errorf("a new schedule with a rollout: %v", got)
		}
		if got := ts.patch(rel["Id"], `{"Schedule": []}`); stepStates(got) != "" {
			t.Errorf("an empty schedule left steps: %v", got)
		}
	})
}

func TestPromote(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newTestServer(t, dsn)
		beta := ts.mustUpload("3000_01", "track", "beta", "rollout", "20")
		files := ts.files()
		path := fmt.Sprint("/api/v1/updates/", beta["Id"], "/promote")

		resp, body := ts.do("POST", path, ts.admin, strings.NewReader(`{"Track": "stable"}`))
		if resp.StatusCode != 200 {
			t.Fatalf("promote: %d %s", resp.StatusCode, body)
		}
		got := decodeObject(t, body)
		wantKeys(t, got, releaseKeys...)
		for _, k := range []string{"Id", "Checksum", "SHA256", "URI", "Version", "Rollout"} {
			if got[k] != beta[k] {
				t.Errorf("%s = %v after promote, want %v", k, got[k], beta[k])
			}
		}
		if got["Track"] != "stable" {
			t.Errorf("Track = %v, want stable", got["Track"])
		}
		if ts.count("apps") != 1 || strings.Join(ts.files(), ",") != strings.Join(files, ",") {
			t.Errorf("promote added rows or files: %d rows, files %v", ts.count("apps"), ts.files())
		}
		device := deviceFor(t, "3000_01", 20, true)
		if _, body := ts.do("GET", "/api/v1/updates/2999_01?device="+device, "", nil); decodeObject(t, body)["Version"] != "3000_01" {
			t.Errorf("a stable client inside the rollout got %s", body)
		}

		resp, body = ts.do("POST", path, ts.admin, strings.NewReader(`{"Track": "stable", "Rollout": 100}`))
		if resp.StatusCode != 200 || decodeObject(t, body)["Rollout"] != float64(100) {
			t.Errorf("promote with Rollout: %d %s", resp.StatusCode, body)
		}
		for _, tt := range []struct {
			path, secret, body string
			status             int
		}{
			{path, ts.admin, `{"Track": "nightly"}`, http.StatusBadRequest},
			{path, ts.admin, `{}`, http.StatusBadRequest},
			{path, ts.admin, `{"Track": "beta", "Rollout": 0}`, http.StatusBadRequest},
			{path, ts.admin, `{"Track": "beta", "Halted": true}`, http.StatusBadRequest},
			{"/api/v1/updates/999/promote", ts.admin, `{"Track": "beta"}`, http.StatusNotFound},
			{path, ts.client, `{"Track": "beta"}`, http.StatusForbidden},
		} {
			resp, body := ts.do("POST", tt.path, tt.secret, strings.NewReader(tt.body))
			wantError(t, resp, body, tt.status)
		}
		if got := ts.release(beta["Id"].(float64)); got["Track"] != "stable" || got["Rollout"] != float64(100) {
			t.Errorf("refused promotes changed the release: %v", got)
		}
	})
}

func TestUpload_track(t *testing.T) {
	ts := newTestServer(t, dbtest.SQLite(t))
	resp, body := ts.upload(ts.admin, "appVersion", "3000_01", "track", "nightly", "tmpFile", "a.apk|x")
	wantError(t, resp, body, http.StatusBadRequest)
	resp, body = ts.upload(ts.admin, "appVersion", "3000_01", "mandatoryAt", "soon", "tmpFile", "a.apk|x")
	wantError(t, resp, body, http.StatusBadRequest)
	if n := ts.count("apps"); n != 0 {
		t.Errorf("refused uploads left %d rows", n)
	}
	ts.mustUpload("3000_01", "track", "beta")
	ts.mustUpload("3001_01")
	_, body = ts.do("GET", "/api/v1/stats?track=beta", ts.admin, nil)
	if rels := decodeObject(t, body)["Releases"].([]any); len(rels) != 1 || rels[0].(map[string]any)["Version"] != "3000_01" {
		t.Errorf("stats of beta: %s", body)
	}
	resp, body = ts.do("GET", "/api/v1/stats?track=Bad!", ts.admin, nil)
	wantError(t, resp, body, http.StatusBadRequest)
}
