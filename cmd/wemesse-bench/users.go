package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/wemesse/server/internal/pgcluster"
	"github.com/wemesse/server/internal/proctest"
)

// The users scenario's targets.
const (
	listMaxRSSMB = 100 // server peak RSS while listing
	listMaxRatio = 2.0 // server time / the database's own JSON dump
	listTimeout  = 10 * time.Minute
)

// The reference dumps of users as JSON, one object a row, to /dev/null.
const (
	listPsqlCopy = `\copy (SELECT row_to_json(u) FROM users u ORDER BY id) TO STDOUT`
	listSQLite   = `SELECT json_object('id', id, 'app_locale', app_locale, 'app_version', app_version,
	'device_locale', device_locale, 'device_mac', device_mac, 'device_model', device_model, 'device_sdk', device_sdk,
	'session_activity', session_activity, 'session_id', session_id, 'session_register', session_register,
	'tg_version', tg_version, 'target_abi', target_abi) FROM users ORDER BY id`
)

// usersScenario lists every user through the server's streaming endpoint
// and compares it with the database dumping the same rows as JSON.
type usersScenario struct {
	users int
}

func (*usersScenario) Name() string { return "users" }

func (*usersScenario) Summary() string {
	return "GET /api/v1/users of 1,000,000 users: server peak RSS, time vs psql \\copy row_to_json (sqlite3 json_object on SQLite)"
}

func (u *usersScenario) SetFlags(fs *flag.FlagSet) {
	rangeVar(fs, &u.users, "list-users", 1_000_000, 1, 20_000_000, "users loaded and listed by the users scenario")
}

func (u *usersScenario) Run(ctx context.Context, b *bench, rep *report) error {
	rep.setupf("users: %s users loaded with SQL, then one GET /api/v1/users (admin secret) read to the end and checked (one object per user); the reference runs once unmeasured to warm the caches, then measured: `psql -c \"%s\" > /dev/null` on PostgreSQL, the sqlite3 CLI's json_object() of every column in id order > /dev/null on SQLite",
		fmtInt(int64(u.users)), listPsqlCopy)
	return b.forEachDB(func(kind string) error { return u.runDB(ctx, b, rep, kind) })
}

func (u *usersScenario) runDB(ctx context.Context, b *bench, rep *report, kind string) error {
	r, err := b.newRig(ctx, rep, kind, "users", nil)
	if err != nil {
		return err
	}
	defer r.close()
	if err := b.loadUsersNoted(ctx, rep, r.fx, "users", u.users); err != nil {
		return err
	}

	b.logf("users on %s: reference (warm-up, then measured)", kind)
	if _, _, err := listReference(ctx, r.fx); err != nil {
		return err
	}
	refTime, refTool, err := listReference(ctx, r.fx)
	if err != nil {
		return err
	}

	var driverTime time.Duration
	var driverTool string
	if kind == dbSQLite && strings.HasPrefix(refTool, "sqlite3 CLI") {
		// The server reads SQLite through a pure-Go driver, the CLI is C:
		// the same dump through that driver shows which part is which.
		if driverTime, driverTool, err = listSQLiteInProcess(ctx, r.fx); err != nil {
			return err
		}
	}
	if err := warmSecret(ctx, b, r.srv, r.admin); err != nil {
		return err
	}
	lifetime, err := r.srv.Memory() // VmHWM before trackPeak resets it
	if err != nil {
		return err
	}
	b.logf("users on %s: GET /api/v1/users", kind)
	pt, err := trackPeak(ctx, r.srv)
	if err != nil {
		return err
	}
	before := pt.before
	cnt, elapsed, err := listUsers(ctx, r.srv.URL, r.admin)
	peak := pt.done()
	if err != nil {
		return err
	}
	rep.notef("users on %s: server VmHWM since its start %s, the Argon2id hashes of the bootstrap secret and of the first admin request included; the row's peak is that of the list alone, measured after the server settled",
		kind, fmtMB(kbToMB(max(lifetime.HWMKB, peak))))
	if cnt.rows != int64(u.users) || !cnt.complete() {
		return fmt.Errorf("GET /api/v1/users returned %d users in %d bytes (complete array: %t), want %d", cnt.rows, cnt.bytes, cnt.complete(), u.users)
	}
	ratio := elapsed.Seconds() / refTime.Seconds()
	rep.result(resultRow{
		scenario: fmt.Sprintf("user list, %s users", fmtInt(int64(u.users))),
		db:       kind,
		measured: fmt.Sprintf("%s (%s, %s)", fmtDuration(elapsed), fmtRate(float64(cnt.rows)/elapsed.Seconds(), "rows/s"),
			fmtSize(cnt.bytes)),
		p50:       "-",
		p99:       "-",
		rss:       fmt.Sprintf("%s (%s before)", fmtMB(kbToMB(peak)), fmtMB(kbToMB(before.RSSKB))),
		reference: fmtDuration(refTime) + ": " + refTool,
		ratio:     fmtRatio(ratio),
		checks: []rowCheck{
			{label: "time ratio", target: target{value: ratio, op: "<=", limit: listMaxRatio, format: fmtRatio}},
			{label: "peak RSS", target: target{value: kbToMB(peak), op: "<", limit: listMaxRSSMB, format: fmtMB}},
		},
	})
	if driverTime > 0 {
		rep.result(resultRow{
			scenario:  "(diagnosis) the reference's dump through the server's SQLite driver",
			db:        kind,
			measured:  fmtDuration(driverTime) + ": " + driverTool,
			p50:       "-",
			p99:       "-",
			rss:       "-",
			reference: "the sqlite3 CLI: " + fmtDuration(refTime),
			ratio:     fmtRatio(driverTime.Seconds() / refTime.Seconds()),
		})
	}
	return nil
}

// listReference dumps users as JSON to /dev/null with the database's own
// client and returns how long it took.
func listReference(ctx context.Context, fx *fixture) (time.Duration, string, error) {
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	var cmd *exec.Cmd
	var tool string
	switch fx.kind {
	case dbPostgres:
		psql, err := fx.pg.Tool("psql")
		if err != nil {
			return 0, "", err
		}
		cmd = exec.CommandContext(ctx, psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
			"-p", strconv.Itoa(fx.pg.Port()), "-U", pgcluster.User, "-d", fx.pgName, "-c", listPsqlCopy)
		tool = "psql \\copy (SELECT row_to_json(u) … ORDER BY id) TO STDOUT > /dev/null"
	default:
		sqlite3, err := exec.LookPath("sqlite3")
		if err != nil {
			return listSQLiteInProcess(ctx, fx)
		}
		cmd = exec.CommandContext(ctx, sqlite3, fx.dsn, listSQLite)
		tool = "sqlite3 CLI, json_object(every column) ORDER BY id > /dev/null"
	}
	cmd.Env = pgcluster.ClientEnv()
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = nil, &stderr // nil: /dev/null
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, "", fmt.Errorf("%s: %w\n%s", tool, err, stderr.String())
	}
	return time.Since(start), tool, nil
}

// listSQLiteInProcess is the SQLite reference without the sqlite3 CLI: the
// same query through the server's driver, written to /dev/null.
func listSQLiteInProcess(ctx context.Context, fx *fixture) (time.Duration, string, error) {
	tool := "in process through the server's pure-Go SQLite driver > /dev/null"
	if err := fx.open(ctx); err != nil {
		return 0, "", err
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return 0, "", err
	}
	defer null.Close()
	w := bufio.NewWriterSize(null, 64<<10)
	start := time.Now()
	rows, err := fx.sqlDB.QueryContext(ctx, listSQLite)
	if err != nil {
		return 0, "", err
	}
	defer rows.Close()
	var s []byte
	for rows.Next() {
		if err := rows.Scan(&s); err != nil {
			return 0, "", err
		}
		w.Write(s)
		w.WriteByte('\n')
	}
	if err := rows.Err(); err != nil {
		return 0, "", err
	}
	if err := w.Flush(); err != nil {
		return 0, "", err
	}
	return time.Since(start), tool, nil
}

// listUsers reads GET /api/v1/users to the end, counting the users.
func listUsers(ctx context.Context, base, admin string) (*rowCounter, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	url := base + "/api/v1/users"
	if err := proctest.LoopbackOnly(url); err != nil {
		return nil, 0, err
	}
	c := newClient()
	c.Timeout = listTimeout
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("signature", admin)
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, 0, fmt.Errorf("GET /api/v1/users: status %d: %s", resp.StatusCode, b)
	}
	cnt := &rowCounter{}
	if _, err := io.CopyBuffer(cnt, resp.Body, make([]byte, 256<<10)); err != nil {
		return nil, 0, fmt.Errorf("GET /api/v1/users: after %d bytes: %w", cnt.bytes, err)
	}
	return cnt, time.Since(start), nil
}

// rowCounter counts the user objects of a streamed JSON array: each starts
// with {"ID":, the response's first key.
type rowCounter struct {
	rows, bytes int64
	first       byte
	tail        []byte // the last len(rowStart)-1 bytes seen
}

var rowStart = []byte(`{"ID":`)

func (c *rowCounter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.bytes == 0 {
		c.first = p[0]
	}
	c.bytes += int64(len(p))
	keep := len(rowStart) - 1
	// A start split between the previous chunk and this one.
	straddle := append(append([]byte(nil), c.tail...), p[:min(len(p), keep)]...)
	c.rows += int64(bytes.Count(straddle, rowStart))
	c.rows += int64(bytes.Count(p, rowStart))
	joined := append(append([]byte(nil), c.tail...), p[max(0, len(p)-keep):]...)
	c.tail = joined[max(0, len(joined)-keep):]
	return len(p), nil
}

// complete reports whether the body was a whole array: "[" … "]\n".
func (c *rowCounter) complete() bool {
	return c.first == '[' && bytes.HasSuffix(c.tail, []byte("]\n"))
}
