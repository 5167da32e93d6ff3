package handler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/service"
)

// TestAudit drives every audited change through the API: each writes one
// row naming its actor (a signature's name, #<id> without one, cli or
// system), failed changes write none, and GET /api/v1/audit pages like the
// user list.
func TestAudit(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newTestServer(t, dsn)
		cli := model.WithActor(context.Background(), model.ActorCLI)
		alice, _, err := ts.sigs.CreateNamed(cli, service.NewSignature{Role: model.RoleAdmin, Name: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		for _, step := range []struct {
			method, path, secret, body string
			want                       int
		}{
			{"PATCH", "/api/v1/updates/1", ts.admin, `{"Rollout":10}`, 404}, // no such release
			{"PATCH", "/api/v1/updates/1", ts.admin, `{"Rollout":0}`, 400},  // invalid
			{"DELETE", "/api/v1/updates/1?purge=true", alice, "", 404},      // no such release
			{"DELETE", "/api/v1/updates/1", ts.client, "", 403},             // not admin
		} {
			resp, body := ts.do(step.method, step.path, step.secret, strings.NewReader(step.body))
			if resp.StatusCode != step.want {
				t.Fatalf("%s %s: %d %s, want %d", step.method, step.path, resp.StatusCode, body, step.want)
			}
		}
		if resp, body := ts.upload(alice, "appVersion", "2267_01", "tmpFile", "wemesse.apk|build"); resp.StatusCode != 201 {
			t.Fatalf("upload: %d %s", resp.StatusCode, body)
		}
		if resp, _ := ts.upload(alice, "appVersion", "2267_01", "tmpFile", "wemesse.apk|again"); resp.StatusCode != 409 {
			t.Fatalf("duplicate upload: %d, want 409", resp.StatusCode)
		}
		ts.mustUpload("2267_02") // by the bootstrap admin, which has no name
		for _, step := range []struct{ method, path, secret, body string }{
			{"POST", "/api/v1/updates/1/promote", alice, `{"Track":"beta"}`},
			{"PATCH", "/api/v1/updates/1", alice, `{"Halted":true}`},
			{"PATCH", "/api/v1/updates/1", alice, `{"Halted":false}`},
			{"PATCH", "/api/v1/updates/1", alice, `{"Schedule":[{"At":"2999-01-01T00:00:00Z","Rollout":90}]}`},
			{"PATCH", "/api/v1/updates/1", ts.admin, `{"Rollout":10,"Message":"Fixes."}`},
			{"DELETE", "/api/v1/updates/1", alice, ""},
			{"DELETE", "/api/v1/updates/2?purge=true", alice, ""},
		} {
			if resp, body := ts.do(step.method, step.path, step.secret, strings.NewReader(step.body)); resp.StatusCode/100 != 2 {
				t.Fatalf("%s %s: %d %s", step.method, step.path, resp.StatusCode, body)
			}
		}

		resp, body := ts.do("GET", "/api/v1/audit", ts.admin, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("audit: %d %s", resp.StatusCode, body)
		}
		var rows []map[string]any
		if err := json.Unmarshal(body, &rows); err != nil {
			t.Fatal(err)
		}
		want := []struct {
			actor, action string
			release       float64 // 0: none
			detail        string  // a part of it
		}{
			{"system", "signature.create", 0, "admin #1"},
			{"system", "signature.create", 0, "client #2"},
			{"cli", "signature.create", 0, "admin alice"},
			{"alice", "release.upload", 1, "2267_01 universal, wemesse.apk, 5 bytes"},
			{"#1", "release.upload", 2, "2267_02"},
			{"alice", "release.promote", 1, "Track: "},
			{"alice", "release.halt", 1, "Halted: false → true"},
			{"alice", "release.resume", 1, "Halted: true → false"},
			{"alice", "release.schedule", 1, "Schedule: none → [2999-01-01T00:00:00Z 90% pending]"},
			{"#1", "release.edit", 1, `Message: "" → "Fixes."; Rollout: 100 → 10`},
			{"alice", "release.yank", 1, "Yanked: false → true"},
			{"alice", "release.purge", 2, "2267_02"},
		}
		if len(rows) != len(want) {
			t.Fatalf("audit has %d rows, want %d:\n%s", len(rows), len(want), body)
		}
		for i, w := range want {
			r := rows[i]
			release, _ := r["ReleaseId"].(float64)
			detail, _ := r["Detail"].(string)
			if r["Actor"] != w.actor || r["Action"] != w.action || release != w.release || !strings.Contains(detail, w.detail) {
				t.Errorf("row %d = %v, want %s %s on release %v with %q", i, r, w.actor, w.action, w.release, w.detail)
			}
			if w.release == 0 {
				wantKeys(t, r, "Id", "At", "Actor", "Action", "Detail")
			} else {
				wantKeys(t, r, "Id", "At", "Actor", "Action", "ReleaseId", "Detail")
			}
		}
		for _, secret := range []string{ts.admin, ts.client, alice} {
			if strings.Contains(string(body), secret) {
				t.Error("the audit trail shows a secret")
			}
		}

		third := int64(rows[2]["Id"].(float64))
		resp, body = ts.do("GET", fmt.Sprintf("/api/v1/audit?after=%d&limit=2", third), ts.admin, nil)
		var page []map[string]any
		if err := json.Unmarshal(body, &page); resp.StatusCode != 200 || err != nil || len(page) != 2 || page[0]["Id"] != rows[3]["Id"] || page[1]["Id"] != rows[4]["Id"] {
			t.Errorf("page after %d, limit 2: %d %s", third, resp.StatusCode, body)
		}
		resp, body = ts.do("GET", "/api/v1/audit?limit=0", ts.admin, nil)
		wantError(t, resp, body, http.StatusBadRequest)
		resp, body = ts.do("GET", "/api/v1/audit", ts.client, nil)
		wantError(t, resp, body, http.StatusForbidden)
	})
}
