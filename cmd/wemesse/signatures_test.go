package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/wemesse/server/internal/dbtest"
)

// TestRun_signatureNamesAndExpiry creates named secrets, one expiring in
// 3s: it works at first, then gets the same 401 as a wrong secret.
func TestRun_signatureNamesAndExpiry(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		env := map[string]string{
			"WEMESSE_DATABASE_URL": dsn, "WEMESSE_UPLOAD_DIR": t.TempDir(), "WEMESSE_ARGON2_MEMORY": "1024",
			"WEMESSE_AUTH_REFRESH": "200ms", "WEMESSE_SIGNATURE": "bootstrap-secret-0123456789",
		}
		s := startServer(t, env)

		out, err := signature(t, env, "create", "--name", "ci-bot", "--expires", "3s")
		if err != nil {
			t.Fatal(err)
		}
		short := lastLine(out)
		if !strings.Contains(out, "Its name is ci-bot.") || !strings.Contains(out, "It expires at ") {
			t.Errorf("create printed %q, want the name and the expiry", out)
		}
		if code, body := get(t, s, "/api/v1/stats", short); code != 200 {
			t.Fatalf("the new secret, before it expires: %d %s", code, body)
		}
		uploadBuild(t, s, short, "2264_00", "build")
		_, wrong := get(t, s, "/api/v1/stats", "not-a-secret")
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, body := get(t, s, "/api/v1/stats", short)
			if code == 401 {
				if string(body) != string(wrong) {
					t.Errorf("expired secret: %s, want the same body as a wrong one: %s", body, wrong)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the secret that expires after 3s still gets %d after 30s", code)
			}
			time.Sleep(100 * time.Millisecond)
		}

		if _, err := signature(t, env, "create", "--role", "client", "--name", "android-app", "--expires", "30d"); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"create", "--name", "ci-bot"},     // taken
			{"create", "--name", "#3"},         // looks like an unnamed label
			{"create", "--name", "cli"},        // the CLI's own actor name
			{"create", "--expires", "soon"},    // not a duration
			{"create", "--expires", "1.5d"},    // days are whole
			{"create", "--expires", "-1h"},     // in the past
			{"create", "--name", "x", "extra"}, // stray argument
			{"create", "--name", strings.Repeat("n", 65)},
		} {
			if out, err := signature(t, env, args...); err == nil {
				t.Errorf("signature %q succeeded: %s", args, out)
			}
		}
		out, err = signature(t, env, "list")
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 || strings.Join(strings.Fields(lines[0]), " ") != "ID NAME ROLE CREATED EXPIRES LAST USED" {
			t.Fatalf("signature list:\n%s", out)
		}
		want := []struct{ name, role string }{{"#1", "admin"}, {"ci-bot", "admin"}, {"android-app", "client"}}
		for i, w := range want {
			f := strings.Fields(lines[i+1])
			if len(f) != 6 || f[1] != w.name || f[2] != w.role {
				t.Errorf("list row %d = %q, want name %s and role %s", i+1, lines[i+1], w.name, w.role)
			}
		}
		if f := strings.Fields(lines[3]); len(f) == 6 {
			if exp, err := time.Parse(time.RFC3339, f[4]); err != nil || exp.Sub(time.Now()) < 29*24*time.Hour {
				t.Errorf("android-app expires %s, want in 30 days", f[4])
			}
		}
		// The audit trail, through the CLI: the bootstrap by the server, the
		// two creations by the CLI, the upload by ci-bot; nothing for the
		// refused creations.
		var audit bytes.Buffer
		if err := run(context.Background(), []string{"audit"}, func(k string) string { return env[k] }, &audit, io.Discard); err != nil {
			t.Fatal(err)
		}
		rows := strings.Split(strings.TrimSpace(audit.String()), "\n")
		wantRows := [][]string{
			{"ID", "AT", "ACTOR", "ACTION", "RELEASE", "DETAIL"},
			{"1", "*", "system", "signature.create", "-", "admin", "#1"},
			{"2", "*", "cli", "signature.create", "-", "admin", "ci-bot,", "expires"},
			{"3", "*", "ci-bot", "release.upload", "1", "2264_00"},
			{"4", "*", "cli", "signature.create", "-", "client", "android-app,", "expires"},
		}
		if len(rows) != len(wantRows) {
			t.Fatalf("wemesse audit:\n%s", audit.String())
		}
		for i, w := range wantRows {
			f := strings.Fields(rows[i])
			for j, v := range w {
				if j >= len(f) || (v != "*" && f[j] != v) {
					t.Errorf("audit row %d = %q, want %v", i, rows[i], w)
					break
				}
			}
		}
		if out, err := signature(t, env, "list"); err != nil || strings.Contains(audit.String(), "argon2") {
			t.Errorf("list: %v; the audit shows a hash:\n%s%s", err, audit.String(), out)
		}
		if f := strings.Fields(lines[1]); len(f) == 6 && f[4] != "-" {
			t.Errorf("the bootstrap row %q: want no expiry", lines[1])
		}
		if f := strings.Fields(lines[2]); len(f) == 6 && f[5] == "-" {
			t.Errorf("the ci-bot row %q: want its last use", lines[2])
		}
	})
}

func TestParseDays(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"3s", 3 * time.Second, true},
		{"90m", 90 * time.Minute, true},
		{"30d", 30 * 24 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true},
		{"d", 0, false},
		{"1.5d", 0, false},
		{"-1d", 0, false},
		{"2dx", 0, false},
		{"soon", 0, false},
	}
	for _, tt := range tests {
		got, err := parseDays(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("parseDays(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
