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
	updateMinRatio = 0.9                   // server req/s / reference req/s
	updateMaxP99   = 10 * time.Millisecond // server p99
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
}

func (*updateScenario) Name() string { return "update" }

func (*updateScenario) Summary() string {
	return "GET /api/v1/updates/{version} vs a minimal net/http handler returning the same bytes, 64 connections"
}

func (u *updateScenario) SetFlags(fs *flag.FlagSet) {
	rangeVar(fs, &u.duration, "update-duration", 2*time.Second, time.Second, 2*time.Minute, "length of each measured update-check run (server and reference)")
	rangeVar(fs, &u.rounds, "update-rounds", 5, 1, 20, "measured runs per side, reference and server alternating; their stats are merged")
	rangeVar(fs, &u.warmup, "update-warmup", time.Second, 0, time.Minute, "unmeasured load on each side before the update-check runs")
	rangeVar(fs, &u.conns, "update-connections", 64, 1, 1024, "concurrent keep-alive connections of the update-check runs")
}

func (u *updateScenario) Run(ctx context.Context, b *bench, rep *report) error {
	gen, genDesc, err := b.newGenerator(u.conns)
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
	r, err := b.newRig(ctx, rep, kind, "update", nil)
	if err != nil {
		return err
	}
	defer r.close()
	c := newClient()
	defer c.CloseIdleConnections()
	if err := uploadBuild(ctx, c, r.srv.URL, r.admin, benchVersion, 4096); err != nil {
		return err
	}
	devices := make([]string, updateDevices)
	for i := range devices {
		devices[i] = proctest.NewSecret(12)
	}
	path := func(i uint64) string {
		return "/api/v1/updates/" + updateClientVersion + "?device=" + devices[i%uint64(len(devices))]
	}
	body, contentType, err := captureUpdate(ctx, c, r.srv.URL, path)
	if err != nil {
		return err
	}
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

	paths := make([]string, len(devices))
	for i := range paths {
		paths[i] = luaString(path(uint64(i)))
	}
	work := workload{
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
	if u.warmup > 0 {
		b.logf("update on %s: %s warm-up on each side", kind, u.warmup)
		for _, base := range sides {
			if _, err := gen.run(ctx, base, work, u.warmup); err != nil {
				return err
			}
		}
	}
	if err := settle(ctx, b, r.srv); err != nil {
		return err
	}
	var inSt, refSt, srvSt loadStats
	var peak int64
	for round := 1; round <= u.rounds; round++ {
		b.logf("update on %s: round %d of %d: reference process, then server, %s each", kind, round, u.rounds, u.duration)
		if inprocURL != "" {
			st, err := gen.run(ctx, inprocURL, work, u.duration)
			if err != nil {
				return err
			}
			inSt.add(st)
		}
		st, err := gen.run(ctx, ref.URL, work, u.duration)
		if err != nil {
			return err
		}
		refSt.add(st)
		pt, err := trackPeak(ctx, r.srv)
		if err != nil {
			return err
		}
		st, err = gen.run(ctx, r.srv.URL, work, u.duration)
		peak = max(peak, pt.done())
		if err != nil {
			return err
		}
		srvSt.add(st)
	}

	row := resultRow{
		scenario:  fmt.Sprintf("update check, %d conns", u.conns),
		db:        kind,
		measured:  fmtRate(srvSt.rate(), "req/s"),
		p50:       fmtDuration(srvSt.p(0.5)),
		p99:       fmtDuration(srvSt.p(0.99)),
		rss:       fmtMB(kbToMB(peak)),
		reference: fmt.Sprintf("%s, p50 %s, p99 %s: net/http handler process, same %d bytes", fmtRate(refSt.rate(), "req/s"), fmtDuration(refSt.p(0.5)), fmtDuration(refSt.p(0.99)), len(body)),
		ratio:     fmtRatio(srvSt.rate() / refSt.rate()),
		checks: []rowCheck{
			{label: "ratio", target: target{value: srvSt.rate() / refSt.rate(), op: ">=", limit: updateMinRatio, format: fmtRatio}},
			{label: "p99", target: target{value: ms(srvSt.p(0.99)), op: "<", limit: ms(updateMaxP99), format: fmtMS}},
		},
	}
	row.checks = appendFailures(row.checks, srvSt)
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
	noteFailures(rep, "update check on "+kind+", server", srvSt)
	noteFailures(rep, "update check on "+kind+", reference process", refSt)
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
