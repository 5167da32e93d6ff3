package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// The console scenario's target: each page's p99 with this many users and
// releases.
const consoleMaxP99 = 100 * time.Millisecond

// consoleScenario loads many users, releases and days of history, logs in
// to the console and measures its busiest pages under load.
type consoleScenario struct {
	users, releases, conns int
	duration               time.Duration
}

func (*consoleScenario) Name() string { return "console" }

func (*consoleScenario) Summary() string {
	return "GET /console/ and /console/releases with 1,000,000 users, 1,000 releases and 89 days of history: p99 < 100 ms, vs a net/http process serving the same page"
}

func (c *consoleScenario) SetFlags(fs *flag.FlagSet) {
	rangeVar(fs, &c.users, "console-users", 1_000_000, 1, 20_000_000, "users loaded for the console scenario")
	rangeVar(fs, &c.releases, "console-releases", 1000, 4, 100_000, "releases loaded for the console scenario")
	rangeVar(fs, &c.conns, "console-conns", 4, 1, 256, "concurrent clients of each console page run")
	rangeVar(fs, &c.duration, "console-duration", 10*time.Second, time.Second, 10*time.Minute, "measured time of each console page run")
}

// consoleHistoryDays are the recorded days loaded before today.
const consoleHistoryDays = 89

// The releases: the four versions the loaded users run (universal, so
// every user counts on one), then older ones; every 50th at a 20 %
// rollout, every 97th yanked. Then one history row per release and day.
const (
	consoleReleasesPG = `INSERT INTO apps (app_version, target_abi, app_checksum, app_name, app_notes, app_size, skipped, uploads,
	uri, sha256, size_bytes, file_path, created_at, rollout, yanked, downloads)
SELECT CASE WHEN i <= 4 THEN '226' || (3 + i)::text || '_00' ELSE '1' || lpad(i::text, 5, '0') || '_01' END, '',
	md5(i::text), 'wemesse.apk', 'Notes', '52.3 MB', i > 4, 0, '', '', 52300000, 'v' || i || '/wemesse.apk',
	now() - (({N} - i) * interval '1 hour'), CASE WHEN i % 50 = 0 THEN 20 ELSE 100 END, i % 97 = 0, i * 10
FROM generate_series(1, {N}) AS i`
	consoleReleasesSQLite = `WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {N})
INSERT INTO apps (app_version, target_abi, app_checksum, app_name, app_notes, app_size, skipped, uploads,
	uri, sha256, size_bytes, file_path, created_at, rollout, yanked, downloads)
SELECT CASE WHEN i <= 4 THEN '226' || (3 + i) || '_00' ELSE '1' || printf('%05d', i) || '_01' END, '',
	hex(randomblob(16)), 'wemesse.apk', 'Notes', '52.3 MB', i > 4, 0, '', '', 52300000, 'v' || i || '/wemesse.apk',
	datetime('now', '-' || ({N} - i) || ' hours'), CASE WHEN i % 50 = 0 THEN 20 ELSE 100 END, i % 97 = 0, i * 10
FROM s`
	consoleHistoryPG = `INSERT INTO release_days (day, release_id, version, target_abi, devices, active30d, downloads, new_devices)
SELECT to_char((now() AT TIME ZONE 'UTC')::date - d, 'YYYY-MM-DD'), a.id, a.app_version, a.target_abi, 1000 + a.id, 500, a.downloads, 10
FROM apps a CROSS JOIN generate_series(1, {D}) AS d`
	consoleHistorySQLite = `WITH RECURSIVE s(d) AS (SELECT 1 UNION ALL SELECT d + 1 FROM s WHERE d < {D})
INSERT INTO release_days (day, release_id, version, target_abi, devices, active30d, downloads, new_devices)
SELECT date('now', '-' || d || ' days'), a.id, a.app_version, a.target_abi, 1000 + a.id, 500, a.downloads, 10
FROM apps a, s`
)

func (c *consoleScenario) Run(ctx context.Context, b *bench, rep *report) error {
	rep.setupf("console: %s users loaded with SQL (as in users), %s releases and %d days of history rows (one per release and day) inserted with SQL, the server restarted so that its first count of today sees them; then one login (POST /console/login, admin secret) and, per page, a 2 s warm-up and a %s closed-loop run with %d clients (vegeta, in process) carrying the session cookie; the reference is a net/http process serving the page's bytes, measured the same way",
		fmtInt(int64(c.users)), fmtInt(int64(c.releases)), consoleHistoryDays, c.duration, c.conns)
	return b.forEachDB(func(kind string) error { return c.runDB(ctx, b, rep, kind) })
}

func (c *consoleScenario) runDB(ctx context.Context, b *bench, rep *report, kind string) error {
	r, err := b.newRig(ctx, rep, kind, "console", nil)
	if err != nil {
		return err
	}
	defer r.close()
	if err := b.loadUsersNoted(ctx, rep, r.fx, "console", c.users); err != nil {
		return err
	}
	releases, history := consoleReleasesSQLite, consoleHistorySQLite
	settleDB := []string{"ANALYZE", "PRAGMA wal_checkpoint(TRUNCATE)"}
	if kind == dbPostgres {
		releases, history = consoleReleasesPG, consoleHistoryPG
		settleDB = []string{"VACUUM ANALYZE apps", "VACUUM ANALYZE release_days", "CHECKPOINT"}
	}
	b.logf("console on %s: loading %d releases and their history", kind, c.releases)
	stmts := append([]string{withN(releases, c.releases), strings.ReplaceAll(history, "{D}", fmt.Sprint(consoleHistoryDays))}, settleDB...)
	if err := r.fx.exec(ctx, stmts...); err != nil {
		return err
	}
	r.srv.Stop()
	if err := r.srv.Restart(ctx); err != nil {
		return err
	}
	cookie, err := consoleLogin(ctx, r.srv.URL, r.admin)
	if err != nil {
		return err
	}
	if err := settle(ctx, b, r.srv); err != nil {
		return err
	}
	for _, page := range []struct{ path, want string }{
		{"/console/", fmtInt(int64(c.users))}, // the devices on a release: every user
		{"/console/releases", fmt.Sprintf("page 1 of %d", (c.releases+99)/100)},
	} {
		if err := c.measure(ctx, b, rep, r, kind, cookie, page.path, page.want); err != nil {
			return err
		}
	}
	return nil
}

// measure loads one page with the session cookie, checks it shows want,
// and runs it and its reference.
func (c *consoleScenario) measure(ctx context.Context, b *bench, rep *report, r *rig, kind, cookie, path, want string) error {
	body, err := consoleGet(ctx, r.srv.URL+path, cookie)
	if err != nil {
		return err
	}
	if !strings.Contains(string(body), want) {
		return fmt.Errorf("GET %s does not show %q", path, want)
	}
	ref, err := startStaticProcess(ctx, "text/html; charset=utf-8", body)
	if err != nil {
		return err
	}
	defer ref.close()
	w := workload{targeter: func(base string) vegeta.Targeter {
		return func(t *vegeta.Target) error {
			t.Method, t.URL, t.Header = http.MethodGet, strings.TrimSuffix(base, "/")+path, http.Header{"Cookie": {cookie}}
			return nil
		}
	}}
	stats := map[string]loadStats{}
	for _, side := range []struct{ name, url string }{{"reference", ref.URL}, {"server", r.srv.URL}} {
		gen := newLoadClient(c.conns)
		b.logf("console on %s: %s %s, warm-up then %s", kind, side.name, path, c.duration)
		if _, err := gen.run(ctx, side.url, w, 2*time.Second); err != nil {
			gen.close()
			return err
		}
		st, err := gen.run(ctx, side.url, w, c.duration)
		gen.close()
		if err != nil {
			return err
		}
		stats[side.name] = st
	}
	srv, refSt := stats["server"], stats["reference"]
	row := resultRow{
		scenario:  fmt.Sprintf("console GET %s, %d conns", path, c.conns),
		db:        kind,
		measured:  fmtRate(srv.rate(), "req/s"),
		p50:       fmtDuration(srv.p(0.5)),
		p99:       fmtDuration(srv.p(0.99)),
		rss:       "-",
		reference: fmt.Sprintf("%s, p50 %s, p99 %s: net/http process, same %s", fmtRate(refSt.rate(), "req/s"), fmtDuration(refSt.p(0.5)), fmtDuration(refSt.p(0.99)), fmtSize(int64(len(body)))),
		ratio:     fmtRatio(srv.rate() / refSt.rate()),
		checks: []rowCheck{
			{label: "p99", target: target{value: ms(srv.p(0.99)), op: "<", limit: ms(consoleMaxP99), format: fmtMS}},
		},
	}
	row.checks = appendFailures(row.checks, srv)
	rep.result(row)
	noteFailures(rep, "console "+path+" on "+kind+", server", srv)
	return nil
}

// consoleLogin logs in with secret and returns the session cookie as a
// Cookie header's value.
func consoleLogin(ctx context.Context, base, secret string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/console/login", strings.NewReader(url.Values{"secret": {secret}}.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := newClient().Transport.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	for _, c := range resp.Cookies() {
		if strings.HasSuffix(c.Name, "wemesse_session") && c.Value != "" {
			return c.Name + "=" + c.Value, nil
		}
	}
	return "", fmt.Errorf("console login: status %d and no session cookie", resp.StatusCode)
}

// consoleGet reads one console page with the session cookie.
func consoleGet(ctx context.Context, rawURL, cookie string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Cookie", cookie)
	c := newClient()
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d: %.300s", rawURL, resp.StatusCode, body)
	}
	return body, nil
}
