package main

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/pgcluster"
)

// The device scenario's targets.
const (
	deviceMinRatio     = 1.0 // server req/s / single-statement upsert ceiling
	deviceMinFullRatio = 0.9 // with the users loaded / on the empty table
	// Random devices have session ids from 2^40 on, so they never meet
	// the loaded users (1..N).
	deviceMinSession = 1 << 40
	deviceMaxSession = 1<<62 - 1
	// deviceNoReleaseVersion has no release: a report of it updates no
	// uploads counter.
	deviceNoReleaseVersion = "2267_01"
)

// deviceUpsert is the reference: the device report as one SQL statement.
// $SID is the session id; the rest are the values the server stores for
// the devices the scenario sends.
const deviceUpsert = `INSERT INTO users (app_locale, app_version, device_locale, device_mac, device_model, device_sdk,
	session_activity, session_id, session_register, tg_version, target_abi)
VALUES ('en', '` + benchVersion + `', 'en_US', $MAC, 'Pixel 7', '34', 1700000000, $SID, 1690000000, '10.14.5', 'arm64')
ON CONFLICT (session_id, device_mac) DO UPDATE SET app_locale = excluded.app_locale, app_version = excluded.app_version,
	device_locale = excluded.device_locale, device_model = excluded.device_model, device_sdk = excluded.device_sdk,
	session_activity = excluded.session_activity, session_register = excluded.session_register,
	tg_version = excluded.tg_version, target_abi = excluded.target_abi`

// deviceScenario compares device reports through the server with the
// database's own ceiling for the same upsert, and itself on an empty table
// with a table of many users.
type deviceScenario struct {
	duration time.Duration
	rounds   int
	warmup   time.Duration
	clients  int
	users    int
	// noCounter adds a row of devices on a version without a release, so
	// that no uploads counter is updated: what the counter costs.
	noCounter bool
}

func (*deviceScenario) Name() string { return "device" }

func (*deviceScenario) Summary() string {
	return "POST /api/v1/users (new random devices) vs a single-statement upsert (pgbench / in-process SQLite), empty table and 1,000,000 users"
}

func (d *deviceScenario) SetFlags(fs *flag.FlagSet) {
	rangeVar(fs, &d.duration, "device-duration", 4*time.Second, time.Second, 2*time.Minute, "length of each measured device-post run (server and reference)")
	rangeVar(fs, &d.rounds, "device-rounds", 3, 1, 20, "measured runs per side and table, reference and server alternating; their stats are merged")
	rangeVar(fs, &d.warmup, "device-warmup", time.Second, 0, time.Minute, "unmeasured device posts before the first run")
	rangeVar(fs, &d.clients, "device-clients", 16, 1, 256, "concurrent connections (server) and clients (reference) of the device runs")
	rangeVar(fs, &d.users, "device-users", 1_000_000, 1, 20_000_000, "users loaded for the full-table row")
	fs.BoolVar(&d.noCounter, "device-no-counter", false, "add a row (no target) of devices on a version that has no release, so no uploads counter is updated")
}

func (d *deviceScenario) Run(ctx context.Context, b *bench, rep *report) error {
	gen, genDesc, err := b.newGenerator(ctx, d.clients)
	if err != nil {
		return err
	}
	defer gen.close()
	rep.setupf("device: POST /api/v1/users with a client-role secret (cached after one warm request), every request a new random device (SessionID, DeviceMac) on AppVersion %s, which has a release, so each also adds one to that release's uploads counter; %d keep-alive connections, closed loop (%s, as fast as answered), %s warm-up; two servers, each on a database of its own: one on an empty table (emptied before every run), one on a table with the users loaded; %d rounds of %s runs, each round the reference and the server on the empty table, then the server and the reference on the loaded one, so that the runs compared share the machine's drift; every run after a checkpoint, the server settled (see server peak RSS) before each of its runs",
		benchVersion, d.clients, genDesc, d.warmup, d.rounds, d.duration)
	rep.setupf("device reference: the same device as one INSERT … ON CONFLICT (session_id, device_mac) DO UPDATE with a random session id, %d clients for the same time: pgbench on PostgreSQL; on SQLite %d goroutines in the bench process through the server's own driver, settings and connection pool (repository.Open)",
		d.clients, d.clients)
	return b.forEachDB(func(kind string) error { return d.runDB(ctx, b, rep, gen, kind) })
}

// deviceSide is one server of the scenario on a database of its own: the
// empty table's or the loaded table's. Both run for the whole scenario, so
// that their runs can alternate and share the machine's drift.
type deviceSide struct {
	*rig
	workload func(version string) workload
}

// newSide starts a server on a new database with a release of benchVersion
// and a client secret.
func (d *deviceScenario) newSide(ctx context.Context, b *bench, rep *report, kind, table string) (_ *deviceSide, err error) {
	r, err := b.newReleaseRig(ctx, rep, kind, "device", nil)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	c := newClient()
	defer c.CloseIdleConnections()
	b.logf("device on %s, %s: creating a client secret", kind, table)
	_, client, err := r.srv.CreateSecret(ctx, model.RoleClient)
	if err != nil {
		return nil, err
	}
	// The running server sees rows made by the CLI at its next refresh.
	cfg := r.srv.Config
	if err := sleep(ctx, cfg.AuthRefresh+cfg.AuthRefresh/2+250*time.Millisecond); err != nil {
		return nil, err
	}
	usersURL := r.srv.URL + usersPath
	if _, err := expect(ctx, c, http.StatusOK, http.MethodPost, usersURL, client, "application/json", deviceBody(benchVersion)); err != nil {
		return nil, fmt.Errorf("warm request: %w", err)
	}
	side := &deviceSide{rig: r, workload: func(version string) workload {
		header := http.Header{"Signature": {client}, "Content-Type": {"application/json"}}
		return workload{
			targeter: func(string) vegeta.Targeter {
				return func(t *vegeta.Target) error {
					t.Method, t.URL, t.Header, t.Body = http.MethodPost, usersURL, header, deviceBody(version)
					return nil
				}
			},
			lua: deviceLua(version),
			env: map[string]string{deviceSignatureEnv: client},
		}
	}}
	return side, nil
}

// warmUp sends device posts to the side's server, unmeasured.
func (d *deviceScenario) warmUp(ctx context.Context, b *bench, gen generator, side *deviceSide, kind, table string) error {
	if d.warmup <= 0 {
		return nil
	}
	b.logf("device on %s, %s: %s warm-up", kind, table, d.warmup)
	_, err := gen.run(ctx, side.srv.URL, side.workload(benchVersion), d.warmup)
	return err
}

func (d *deviceScenario) runDB(ctx context.Context, b *bench, rep *report, gen generator, kind string) error {
	empty, err := d.newSide(ctx, b, rep, kind, "empty table")
	if err != nil {
		return err
	}
	defer empty.close()
	full, err := d.newSide(ctx, b, rep, kind, "loaded table")
	if err != nil {
		return err
	}
	defer full.close()
	// Loaded before its warm-up: a report still in flight when a run ends
	// may commit after the table was emptied for the load.
	if err := b.loadUsersNoted(ctx, rep, full.fx, "device", d.users); err != nil {
		return err
	}
	if err := d.warmUp(ctx, b, gen, empty, kind, "empty table"); err != nil {
		return err
	}
	if err := d.warmUp(ctx, b, gen, full, kind, "loaded table"); err != nil {
		return err
	}

	// Each round: the reference and the server on the empty table, each
	// from empty, then the server and the reference on the loaded one.
	var ref0, ref1 refResult
	var s0, s1, sNC loadStats
	var peak0, peak1 int64
	work := empty.workload(benchVersion)
	for round := 1; round <= d.rounds; round++ {
		if err := empty.fx.truncateUsers(ctx); err != nil {
			return err
		}
		b.logf("device on %s: round %d of %d on the empty table: reference for %s", kind, round, d.rounds, d.duration)
		ref, err := d.reference(ctx, empty.fx)
		if err != nil {
			return fmt.Errorf("reference: %w", err)
		}
		ref0.add(ref)
		b.logf("device on %s: %s", kind, fmtRate(ref.rate, ref.unit))
		if err := empty.fx.truncateUsers(ctx); err != nil {
			return err
		}
		b.logf("device on %s: round %d of %d on the empty table: server for %s", kind, round, d.rounds, d.duration)
		st, peak, err := d.serverRun(ctx, b, empty.rig, gen, work)
		if err != nil {
			return err
		}
		s0.add(st)
		b.logf("device on %s: %s", kind, fmtRate(st.rate(), "req/s"))
		peak0 = max(peak0, peak)
		if d.noCounter {
			if err := empty.fx.truncateUsers(ctx); err != nil {
				return err
			}
			b.logf("device on %s: round %d of %d on the empty table: server, version without a release, for %s", kind, round, d.rounds, d.duration)
			st, _, err := d.serverRun(ctx, b, empty.rig, gen, empty.workload(deviceNoReleaseVersion))
			if err != nil {
				return err
			}
			sNC.add(st)
		}

		if err := full.fx.checkpoint(ctx); err != nil {
			return err
		}
		b.logf("device on %s: round %d of %d with %s users: server for %s", kind, round, d.rounds, fmtInt(int64(d.users)), d.duration)
		st, peak, err = d.serverRun(ctx, b, full.rig, gen, full.workload(benchVersion))
		if err != nil {
			return err
		}
		s1.add(st)
		b.logf("device on %s: %s", kind, fmtRate(st.rate(), "req/s"))
		peak1 = max(peak1, peak)
		if err := full.fx.checkpoint(ctx); err != nil {
			return err
		}
		b.logf("device on %s: round %d of %d with %s users: reference for %s", kind, round, d.rounds, fmtInt(int64(d.users)), d.duration)
		if ref, err = d.reference(ctx, full.fx); err != nil {
			return fmt.Errorf("reference: %w", err)
		}
		ref1.add(ref)
		b.logf("device on %s: %s", kind, fmtRate(ref.rate, ref.unit))
	}

	conns := fmt.Sprintf("%d conns", d.clients)
	row0 := resultRow{
		scenario:  "device post, empty table, " + conns,
		db:        kind,
		measured:  fmtRate(s0.rate(), "req/s"),
		p50:       fmtDuration(s0.p(0.5)),
		p99:       fmtDuration(s0.p(0.99)),
		rss:       fmtMB(kbToMB(peak0)),
		reference: ref0.describe(),
		ratio:     fmtRatio(s0.rate() / ref0.rate),
		checks: []rowCheck{
			{label: "ratio", target: target{value: s0.rate() / ref0.rate, op: ">=", limit: deviceMinRatio, format: fmtRatio}},
		},
	}
	row0.checks = appendFailures(row0.checks, s0)
	rep.result(row0)
	if d.noCounter {
		rep.result(resultRow{
			scenario:  fmt.Sprintf("(diagnosis) device post on %s, a version without a release, empty table, %s", deviceNoReleaseVersion, conns),
			db:        kind,
			measured:  fmtRate(sNC.rate(), "req/s"),
			p50:       fmtDuration(sNC.p(0.5)),
			p99:       fmtDuration(sNC.p(0.99)),
			rss:       "-",
			reference: "the server with the counter: " + fmtRate(s0.rate(), "req/s"),
			ratio:     fmtRatio(sNC.rate() / s0.rate()),
		})
	}
	row1 := resultRow{
		scenario:  fmt.Sprintf("device post, %s users, %s", fmtInt(int64(d.users)), conns),
		db:        kind,
		measured:  fmtRate(s1.rate(), "req/s"),
		p50:       fmtDuration(s1.p(0.5)),
		p99:       fmtDuration(s1.p(0.99)),
		rss:       fmtMB(kbToMB(peak1)),
		reference: "the server on the empty table: " + fmtRate(s0.rate(), "req/s"),
		ratio:     fmtRatio(s1.rate() / s0.rate()),
		checks: []rowCheck{
			{label: "ratio", target: target{value: s1.rate() / s0.rate(), op: ">=", limit: deviceMinFullRatio, format: fmtRatio}},
		},
	}
	row1.checks = appendFailures(row1.checks, s1)
	rep.result(row1)
	rep.result(resultRow{
		scenario:  fmt.Sprintf("(reference) upsert, %s users, %d clients", fmtInt(int64(d.users)), d.clients),
		db:        kind,
		measured:  fmtRate(ref1.rate, ref1.unit),
		p50:       fmtDuration(percentile(ref1.latencies, 0.5)),
		p99:       fmtDuration(percentile(ref1.latencies, 0.99)),
		rss:       "-",
		reference: "the same on the empty table: " + fmtRate(ref0.rate, ref0.unit),
		ratio:     fmtRatio(ref1.rate / ref0.rate),
	})
	noteFailures(rep, "device post on "+kind+", empty table", s0)
	noteFailures(rep, "device post on "+kind+", loaded table", s1)
	for _, ref := range []refResult{ref0, ref1} {
		if ref.failed > 0 {
			rep.notef("device reference on %s: %d statements failed: %s", kind, ref.failed, ref.firstErr)
		}
	}
	return nil
}

// serverRun measures the server under device posts and returns its peak
// RSS during the run, in kB.
func (d *deviceScenario) serverRun(ctx context.Context, b *bench, r *rig, gen generator, w workload) (loadStats, int64, error) {
	if err := settle(ctx, b, r.srv); err != nil {
		return loadStats{}, 0, err
	}
	pt, err := trackPeak(ctx, r.srv)
	if err != nil {
		return loadStats{}, 0, err
	}
	st, err := gen.run(ctx, r.srv.URL, w, d.duration)
	peak := pt.done()
	return st, peak, err
}

// deviceBody is the report of a new random device.
func deviceBody(version string) []byte {
	sid := deviceMinSession + rand.Int64N(deviceMaxSession-deviceMinSession)
	mac := fmt.Sprintf("%012x", rand.Uint64()&0xffff_ffff_ffff)
	now := time.Now().Unix()
	return []byte(`{"AppLocale":"en","AppVersion":"` + version + `","DeviceLocale":"en_US","DeviceMac":"` + mac +
		`","DeviceModel":"Pixel 7","DeviceSDK":"34","SessionActivity":` + strconv.FormatInt(now, 10) +
		`,"SessionID":` + strconv.FormatInt(sid, 10) + `,"SessionRegister":` + strconv.FormatInt(now-86400, 10) +
		`,"TgVersion":"10.14.5","TargetABI":"arm64"}`)
}

// usersPath is where devices report.
const usersPath = "/api/v1/users"

// deviceSignatureEnv carries the client secret to deviceLua's script.
const deviceSignatureEnv = "WEMESSE_BENCH_SIGNATURE"

// deviceLua is deviceBody as a wrk script: every request a new random
// device. Session ids stay below 2^53, where Lua's numbers are exact.
func deviceLua(version string) string {
	return fmt.Sprintf(`wrk.method = "POST"
wrk.path = %q
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Signature"] = os.getenv(%q)
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end
function init(args)
  math.randomseed(os.time() * 1000 + (thread_no or 0))
end
local head = '{"AppLocale":"en","AppVersion":' .. %s .. ',"DeviceLocale":"en_US","DeviceMac":"'
function request()
  local sid = %d + math.floor(math.random() * %d)
  local mac = string.format("%%06x%%06x", math.random(0, 16777215), math.random(0, 16777215))
  local now = os.time()
  return wrk.format(nil, nil, nil, head .. mac ..
    '","DeviceModel":"Pixel 7","DeviceSDK":"34","SessionActivity":' .. now ..
    ',"SessionID":' .. string.format("%%.0f", sid) .. ',"SessionRegister":' .. (now - 86400) ..
    ',"TgVersion":"10.14.5","TargetABI":"arm64"}')
end
`, usersPath, deviceSignatureEnv, luaString(strconv.Quote(version)), int64(deviceMinSession), int64(1<<53-deviceMinSession))
}

// refResult is a reference run.
type refResult struct {
	rate      float64 // statements per second: count / elapsed
	count     int
	elapsed   time.Duration
	unit      string
	latencies []time.Duration
	failed    int
	firstErr  string
	tool      string
}

// add merges another run of the same reference.
func (r *refResult) add(o refResult) {
	r.count += o.count
	r.elapsed += o.elapsed
	r.rate = float64(r.count) / r.elapsed.Seconds()
	r.unit, r.tool = o.unit, o.tool
	r.latencies = append(r.latencies, o.latencies...)
	r.failed += o.failed
	if r.firstErr == "" {
		r.firstErr = o.firstErr
	}
}

func (r refResult) describe() string {
	return fmt.Sprintf("%s, p50 %s, p99 %s: %s", fmtRate(r.rate, r.unit), fmtDuration(percentile(r.latencies, 0.5)),
		fmtDuration(percentile(r.latencies, 0.99)), r.tool)
}

// reference runs the single-statement upsert with d.clients clients for
// d.duration on fx's database.
func (d *deviceScenario) reference(ctx context.Context, fx *fixture) (refResult, error) {
	if fx.kind == dbPostgres {
		return d.pgbench(ctx, fx)
	}
	if err := fx.open(ctx); err != nil {
		return refResult{}, err
	}
	return sqliteUpsert(ctx, fx.sqlDB, d.clients, d.duration)
}

// pgbench runs the upsert with pgbench: -c clients, -j min(clients, nproc),
// -T seconds, a log of every transaction for the latencies.
func (d *deviceScenario) pgbench(ctx context.Context, fx *fixture) (refResult, error) {
	tool, err := fx.pg.Tool("pgbench")
	if err != nil {
		return refResult{}, err
	}
	dir, err := os.MkdirTemp("", "wemesse-bench-pgbench-")
	if err != nil {
		return refResult{}, err
	}
	defer os.RemoveAll(dir)
	script := fmt.Sprintf("\\set sid random(%d, %d)\n", int64(deviceMinSession), int64(deviceMaxSession)) +
		strings.NewReplacer("$MAC", "'aabbccddeeff'", "$SID", ":sid", "\n", " ").Replace(deviceUpsert) + ";\n"
	scriptPath := filepath.Join(dir, "upsert.sql")
	if err := os.WriteFile(scriptPath, []byte(script), 0o644); err != nil {
		return refResult{}, err
	}
	secs := int(math.Ceil(d.duration.Seconds()))
	threads := min(d.clients, runtime.NumCPU())
	runCtx, cancel := context.WithTimeout(ctx, d.duration+2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(runCtx, tool, "-n", "-h", "127.0.0.1", "-p", strconv.Itoa(fx.pg.Port()), "-U", pgcluster.User,
		"-c", strconv.Itoa(d.clients), "-j", strconv.Itoa(threads), "-T", strconv.Itoa(secs),
		"-f", scriptPath, "-l", "--log-prefix", filepath.Join(dir, "log"), fx.pgName)
	cmd.Dir, cmd.Env = dir, pgcluster.ClientEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return refResult{}, fmt.Errorf("pgbench: %w\n%s", err, out)
	}
	res := refResult{unit: "tx/s", tool: fmt.Sprintf("pgbench -c %d -j %d, single-statement upsert", d.clients, threads)}
	m := regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`).FindSubmatch(out)
	if m == nil {
		return refResult{}, fmt.Errorf("pgbench: no tps in its output:\n%s", out)
	}
	res.rate, _ = strconv.ParseFloat(string(m[1]), 64)
	m = regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)`).FindSubmatch(out)
	if m == nil || res.rate <= 0 {
		return refResult{}, fmt.Errorf("pgbench: no transaction count in its output:\n%s", out)
	}
	res.count, _ = strconv.Atoi(string(m[1]))
	res.elapsed = time.Duration(float64(res.count) / res.rate * float64(time.Second))
	if m := regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`).FindSubmatch(out); m != nil {
		res.failed, _ = strconv.Atoi(string(m[1]))
		if res.failed > 0 {
			res.firstErr = "see pgbench's output"
		}
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "log.*"))
	for _, p := range logs {
		lat, err := readPgbenchLog(p)
		if err != nil {
			return refResult{}, err
		}
		res.latencies = append(res.latencies, lat...)
	}
	if len(res.latencies) == 0 {
		return refResult{}, errors.New("pgbench wrote no transaction log")
	}
	return res, nil
}

// readPgbenchLog reads the latencies of a pgbench -l log: "client_id
// transaction_no time script_no time_epoch time_us", time in µs.
func readPgbenchLog(path string) ([]time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []time.Duration
	sc := bufio.NewScanner(f)
	for sc.Scan() && len(out) < maxLoadResults {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		us, err := strconv.ParseInt(fields[2], 10, 64)
		if err != nil {
			continue // a failed transaction is logged as "failed" or "serialization"
		}
		out = append(out, time.Duration(us)*time.Microsecond)
	}
	return out, sc.Err()
}

// sqliteUpsert runs the upsert from clients goroutines on db for duration.
func sqliteUpsert(ctx context.Context, db *sql.DB, clients int, duration time.Duration) (refResult, error) {
	q := strings.NewReplacer("$MAC", "?", "$SID", "?").Replace(deviceUpsert)
	runCtx, cancel := context.WithTimeout(ctx, duration+requestTimeout)
	defer cancel()
	var mu sync.Mutex
	res := refResult{unit: "stmt/s", tool: fmt.Sprintf("%d goroutines, single-statement upsert, same driver and settings as the server", clients)}
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(duration)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			failed, firstErr := 0, ""
			for n := 0; n < maxLoadResults/clients && time.Now().Before(deadline) && runCtx.Err() == nil; n++ {
				sid := deviceMinSession + rand.Int64N(deviceMaxSession-deviceMinSession)
				mac := fmt.Sprintf("%012x", rand.Uint64()&0xffff_ffff_ffff)
				t0 := time.Now()
				_, err := db.ExecContext(runCtx, q, mac, sid)
				if err != nil {
					failed++
					if firstErr == "" {
						firstErr = err.Error()
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			res.latencies = append(res.latencies, lat...)
			res.failed += failed
			if res.firstErr == "" {
				res.firstErr = firstErr
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.count, res.elapsed = len(res.latencies), elapsed
	res.rate = float64(res.count) / elapsed.Seconds()
	if len(res.latencies) == 0 {
		return res, fmt.Errorf("no upsert succeeded: %s", res.firstErr)
	}
	return res, nil
}
