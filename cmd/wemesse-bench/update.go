package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/wemesse/server/internal/proctest"
)

// The update scenario's targets.
const (
	updateMinRatio = 0.9 // server req/s / reference req/s
	// updateMinNginxRatio is the server at its defaults against nginx.
	updateMinNginxRatio = 1.0
	updateMaxP99        = 10 * time.Millisecond // server p99
	// updateClientVersion is the version the checking clients run: older
	// than benchVersion, so every answer offers benchVersion.
	updateClientVersion = "2266_00"
	updateDevices       = 1024 // distinct ?device= ids cycled through
)

// updateScenario compares the update check with the fastest possible
// answer: a minimal net/http handler, in this process, that returns the
// very bytes the server returned.
type updateScenario struct {
	duration time.Duration
	rounds   int
	warmup   time.Duration
	conns    int
	nginx    bool
}

func (*updateScenario) Name() string { return "update" }

func (*updateScenario) Summary() string {
	return "GET /api/v1/updates/{version} vs a minimal net/http handler returning the same bytes, and at its defaults (access log on) vs nginx serving them from a file; 64 connections"
}

func (u *updateScenario) SetFlags(fs *flag.FlagSet) {
	rangeVar(fs, &u.duration, "update-duration", 2*time.Second, time.Second, 2*time.Minute, "length of each measured update-check run (server and reference)")
	rangeVar(fs, &u.rounds, "update-rounds", 5, 1, 20, "measured runs per side, reference and server alternating; their stats are merged")
	rangeVar(fs, &u.warmup, "update-warmup", time.Second, 0, time.Minute, "unmeasured load on each side before the update-check runs")
	rangeVar(fs, &u.conns, "update-connections", 64, 1, 1024, "concurrent keep-alive connections of the update-check runs")
	fs.BoolVar(&u.nginx, "update-nginx", true, "also run the update check vs nginx row (nginx from Debian's package, installed with apt-get when absent and running as root)")
}

func (u *updateScenario) Run(ctx context.Context, b *bench, rep *report) error {
	gen, genDesc, err := b.newGenerator(ctx, u.conns)
	if err != nil {
		return err
	}
	defer gen.close()
	rep.setupf("update: GET /api/v1/updates/%s?device=ID (%d ids cycled, the answer offers %s) with %d keep-alive connections, closed loop (%s, as fast as answered), %s warm-up, then %d × %s measured per side, the sides alternating; the reference is a minimal net/http handler writing the bytes (and Content-Type) captured from the server, run as a separate process of this tool on another 127.0.0.1 port, as the server is",
		updateClientVersion, updateDevices, benchVersion, u.conns, genDesc, u.warmup, u.rounds, u.duration)
	if gen.inProcess() {
		rep.setupf("update, (bound) row: with vegeta the same handler also runs inside the bench process, next to the load generator, skipping the cross-process hand-offs any server pays")
	}
	return b.forEachDB(func(kind string) error { return u.runDB(ctx, b, rep, gen, kind) })
}

func (u *updateScenario) runDB(ctx context.Context, b *bench, rep *report, gen generator, kind string) error {
	if err := u.runHandler(ctx, b, rep, gen, kind); err != nil {
		return err
	}
	if u.nginx {
		return u.runNginx(ctx, b, rep, gen, kind)
	}
	return nil
}

// updateRig is a server with a release to offer, and the update check's
// load on it.
type updateRig struct {
	*rig
	body        []byte // the answer, the same for every device
	contentType string
	work        workload
}

// newUpdateRig starts a server with env and the release every check is
// offered, and captures its answer. The caller must close it.
func (u *updateScenario) newUpdateRig(ctx context.Context, b *bench, rep *report, kind, scenario string, env map[string]string) (_ *updateRig, err error) {
	r, err := b.newReleaseRig(ctx, rep, kind, scenario, env)
	if err != nil {
		return nil, err
	}
	ur := &updateRig{rig: r}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	c := newClient()
	defer c.CloseIdleConnections()
	devices := make([]string, updateDevices)
	for i := range devices {
		devices[i] = proctest.NewSecret(12)
	}
	path := func(i uint64) string {
		return "/api/v1/updates/" + updateClientVersion + "?device=" + devices[i%uint64(len(devices))]
	}
	if ur.body, ur.contentType, err = captureUpdate(ctx, c, r.srv.URL, path); err != nil {
		return nil, err
	}
	paths := make([]string, len(devices))
	for i := range paths {
		paths[i] = luaString(path(uint64(i)))
	}
	ur.work = workload{
		targeter: func(base string) vegeta.Targeter {
			var n atomic.Uint64
			return func(t *vegeta.Target) error {
				t.Method, t.URL = http.MethodGet, base+path(n.Add(1))
				return nil
			}
		},
		lua: "wrk.method = \"GET\"\nlocal paths = {" + strings.Join(paths, ",") + `}
local n = 0
function request()
  n = n + 1
  return wrk.format(nil, paths[n % #paths + 1])
end
`,
	}
	return ur, nil
}

// warmUp loads each of sides for the warm-up time, then settles the
// server.
func (u *updateScenario) warmUp(ctx context.Context, b *bench, gen generator, r *updateRig, what string, sides ...string) error {
	if u.warmup > 0 {
		b.logf("%s on %s: %s warm-up on each side", what, r.kind, u.warmup)
		for _, base := range sides {
			if _, err := gen.run(ctx, base, r.work, u.warmup); err != nil {
				return err
			}
		}
	}
	return settle(ctx, b, r.srv)
}

// measure runs one measured run on the side at base, whose CPU time side
// reads, and returns its stats and the CPU it cost.
func (u *updateScenario) measure(ctx context.Context, gen generator, r *updateRig, base string, side func() (time.Duration, error)) (st loadStats, used cpuMark, err error) {
	used, err = measureCPU(side, func() (err error) {
		st, err = gen.run(ctx, base, r.work, u.duration)
		return err
	})
	return st, used, err
}

// pairedRuns adds up the measured runs of a reference and the server,
// taken in turns.
type pairedRuns struct {
	ref, srv       loadStats
	refCPU, srvCPU cpuMark
	peak           int64 // the server's peak RSS, kB
}

// round runs one measured run on the reference at refURL, whose CPU time
// refCPU reads, then one on the server, and adds them up.
func (p *pairedRuns) round(ctx context.Context, u *updateScenario, gen generator, r *updateRig, refURL string, refCPU func() (time.Duration, error)) error {
	st, used, err := u.measure(ctx, gen, r, refURL, refCPU)
	if err != nil {
		return err
	}
	p.ref.add(st)
	p.refCPU = p.refCPU.add(used)
	pt, err := trackPeak(ctx, r.srv)
	if err != nil {
		return err
	}
	st, used, err = u.measure(ctx, gen, r, r.srv.URL, r.srv.CPUTime)
	p.peak = max(p.peak, pt.done())
	if err != nil {
		return err
	}
	p.srv.add(st)
	p.srvCPU = p.srvCPU.add(used)
	return nil
}

// row is the server's result against the reference, described as what,
// with its targets: the ratio of rates at least minRatio, and p99.
func (p *pairedRuns) row(scenario, db, what string, minRatio float64) resultRow {
	ratio := p.srv.rate() / p.ref.rate()
	return resultRow{
		scenario:  scenario,
		db:        db,
		measured:  fmtRate(p.srv.rate(), "req/s"),
		p50:       fmtDuration(p.srv.p(0.5)),
		p99:       fmtDuration(p.srv.p(0.99)),
		rss:       fmtMB(kbToMB(p.peak)),
		reference: fmt.Sprintf("%s, p50 %s, p99 %s: %s", fmtRate(p.ref.rate(), "req/s"), fmtDuration(p.ref.p(0.5)), fmtDuration(p.ref.p(0.99)), what),
		ratio:     fmtRatio(ratio),
		checks: []rowCheck{
			{label: "ratio", target: target{value: ratio, op: ">=", limit: minRatio, format: fmtRatio}},
			{label: "p99", target: target{value: ms(p.srv.p(0.99)), op: "<", limit: ms(updateMaxP99), format: fmtMS}},
		},
	}
}

// noteCPU says where each side's time went: the CPU per answer, and the
// cores left idle while answers were awaited.
func (p *pairedRuns) noteCPU(rep *report, what, refName string) {
	rep.notef("%s, CPU per answer (user and system, the kernel's network work included): %s %s, its load generator %s, cores idle %.1f %%; the server %s, its load generator %s, cores idle %.1f %%",
		what, refName, perAnswer(p.refCPU.side, p.ref.ok), perAnswer(p.refCPU.bench, p.ref.ok), 100*p.refCPU.idleShare(),
		perAnswer(p.srvCPU.side, p.srv.ok), perAnswer(p.srvCPU.bench, p.srv.ok), 100*p.srvCPU.idleShare())
}

func (u *updateScenario) runHandler(ctx context.Context, b *bench, rep *report, gen generator, kind string) error {
	r, err := u.newUpdateRig(ctx, b, rep, kind, "update", nil)
	if err != nil {
		return err
	}
	defer r.close()
	body, contentType := r.body, r.contentType
	// The reference: the minimal handler in a process of its own, as the
	// server is.
	ref, err := startStaticProcess(ctx, contentType, body)
	if err != nil {
		return err
	}
	defer ref.close()
	sides := []string{ref.URL, r.srv.URL}
	// With vegeta the load generator is in this process: the same handler
	// here, next to it, skips the cross-process hand-offs the server cannot,
	// so it only bounds what any separate server reaches.
	var inprocURL string
	if gen.inProcess() {
		inproc, err := startStatic(staticHandler(contentType, body))
		if err != nil {
			return err
		}
		defer inproc.close()
		inprocURL = inproc.URL
		sides = append(sides, inprocURL)
	}
	if err := u.warmUp(ctx, b, gen, r, "update", sides...); err != nil {
		return err
	}
	var inSt loadStats
	var runs pairedRuns
	for round := 1; round <= u.rounds; round++ {
		b.logf("update on %s: round %d of %d: reference process, then server, %s each", kind, round, u.rounds, u.duration)
		if inprocURL != "" {
			st, err := gen.run(ctx, inprocURL, r.work, u.duration)
			if err != nil {
				return err
			}
			inSt.add(st)
		}
		if err := runs.round(ctx, u, gen, r, ref.URL, ref.cpuTime); err != nil {
			return err
		}
	}
	refSt, srvSt := runs.ref, runs.srv

	row := runs.row(fmt.Sprintf("update check, %d conns", u.conns), kind, fmt.Sprintf("net/http handler process, same %d bytes", len(body)), updateMinRatio)
	row.checks = appendFailures(row.checks, runs.srv)
	rep.result(row)
	if inprocURL != "" {
		rep.result(resultRow{
			scenario:  "(bound) the same handler inside the load generator's process",
			db:        kind,
			measured:  fmtRate(inSt.rate(), "req/s"),
			p50:       fmtDuration(inSt.p(0.5)),
			p99:       fmtDuration(inSt.p(0.99)),
			rss:       "-",
			reference: fmt.Sprintf("the server: %s; the reference process: %s", fmtRate(srvSt.rate(), "req/s"), fmtRate(refSt.rate(), "req/s")),
			ratio:     fmt.Sprintf("%s (server), %s (reference)", fmtRatio(srvSt.rate()/inSt.rate()), fmtRatio(refSt.rate()/inSt.rate())),
		})
		noteFailures(rep, "update check on "+kind+", in-process handler", inSt)
	}
	runs.noteCPU(rep, "update on "+kind, "the reference process")
	noteFailures(rep, "update check on "+kind+", server", srvSt)
	noteFailures(rep, "update check on "+kind+", reference process", refSt)
	return nil
}

// runNginx measures the update check as operators run the server (access
// lines on, metrics served, answers signed) against nginx serving the same
// bytes from a file with its access log on: what a team weighs the server
// against.
func (u *updateScenario) runNginx(ctx context.Context, b *bench, rep *report, gen generator, kind string) error {
	nginxPath, err := b.debianTool(ctx, "nginx", "nginx")
	if err != nil {
		return err
	}
	metricsAddr, err := proctest.FreeAddr()
	if err != nil {
		return err
	}
	// WEMESSE_LOG_LEVEL's default and the metrics listener that
	// docker-compose.yml's replicas serve.
	env := map[string]string{"WEMESSE_LOG_LEVEL": "info", "WEMESSE_METRICS_ADDR": metricsAddr}
	r, err := u.newUpdateRig(ctx, b, rep, kind, "update vs nginx", env)
	if err != nil {
		return err
	}
	defer r.close()
	ng, err := startNginx(ctx, nginxPath, r.contentType, r.body)
	if err != nil {
		return err
	}
	defer ng.close()
	rep.setupf("update vs nginx: a server of its own, as operators run it: WEMESSE_LOG_LEVEL=info (its default: one JSON access line per request, on stderr into a file), WEMESSE_METRICS_ADDR on 127.0.0.1 (as docker-compose.yml's replicas), answers signed; against %s (%s) serving the same bytes from a file on another 127.0.0.1 port, worker_processes auto, sendfile on, its default (combined) access_log into a file, keepalive_requests raised to 1000000 so that neither side closes connections; the same load, warm-up and alternation as the update row, nginx first",
		ng.Version, nginxPath)
	if err := u.warmUp(ctx, b, gen, r, "update vs nginx", ng.URL, r.srv.URL); err != nil {
		return err
	}
	before, err := ng.accessLines()
	if err != nil {
		return err
	}
	var runs pairedRuns
	for round := 1; round <= u.rounds; round++ {
		b.logf("update vs nginx on %s: round %d of %d: nginx, then server, %s each", kind, round, u.rounds, u.duration)
		if err := runs.round(ctx, u, gen, r, ng.URL, ng.cpuTime); err != nil {
			return err
		}
	}
	ngSt, srvSt := runs.ref, runs.srv
	// Both logs must have a line for every request answered: each side
	// pays for what it is compared on. The server writes its lines within
	// its flush interval (100 ms).
	if after, err := ng.accessLines(); err != nil || after-before < ngSt.ok {
		return fmt.Errorf("nginx's access log has %d new lines for %d answers (%v)", after-before, ngSt.ok, err)
	}
	time.Sleep(time.Second)
	if n, err := countLines(r.srv.LogPath, []byte(`"msg":"request"`)); err != nil || n < srvSt.ok {
		return fmt.Errorf("the server's log has %d access lines for %d answers (%v)", n, srvSt.ok, err)
	}
	row := runs.row(fmt.Sprintf("update check vs nginx, %d conns, access log on", u.conns), kind, fmt.Sprintf("nginx, same %d bytes from a file, access_log on", len(r.body)), updateMinNginxRatio)
	row.checks = appendFailures(row.checks, runs.srv)
	rep.result(row)
	runs.noteCPU(rep, "update vs nginx on "+kind, "nginx")
	noteFailures(rep, "update check vs nginx on "+kind+", server", srvSt)
	noteFailures(rep, "update check vs nginx on "+kind+", nginx", ngSt)
	return nil
}

// captureUpdate reads the server's answer to the update check, and checks
// that it is the same for a few devices, so one body stands for all.
func captureUpdate(ctx context.Context, c *http.Client, base string, path func(uint64) string) (body []byte, contentType string, err error) {
	for i := range uint64(8) {
		if err := proctest.LoopbackOnly(base); err != nil {
			return nil, "", err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path(i), nil)
		if err != nil {
			return nil, "", err
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, "", err
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			return nil, "", err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, "", fmt.Errorf("update check: status %d: %s", resp.StatusCode, b)
		}
		if resp.Header.Get("Signature") == "" {
			return nil, "", errors.New("update check: the answer is not signed; the row must include signing")
		}
		if i == 0 {
			body, contentType = b, resp.Header.Get("Content-Type")
		} else if !bytes.Equal(b, body) {
			return nil, "", errors.New("update check: the answer differs between devices; the reference cannot stand for all of them")
		}
	}
	return body, contentType, nil
}

// appendFailures adds a failing check when requests of a run failed, so a
// row that lost requests cannot pass.
func appendFailures(checks []rowCheck, st loadStats) []rowCheck {
	if st.failed() == 0 {
		return checks
	}
	return append(checks, rowCheck{label: "failed requests", target: target{value: float64(st.failed()), op: "==", limit: 0, format: fmtCount}})
}

func noteFailures(rep *report, what string, st loadStats) {
	if st.failed() > 0 {
		rep.notef("%s: %s", what, st.describeFailures())
	}
}
