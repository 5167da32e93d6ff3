package main

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/wemesse/server/internal/httpsig"
	"github.com/wemesse/server/internal/proctest"
)

// rig is a server started on a fresh database for one scenario's rows.
type rig struct {
	kind  string
	fx    *fixture
	srv   *server
	admin string // WEMESSE_SIGNATURE, the bootstrap admin secret
}

// newRig creates a database of kind and starts a server on it with env.
// The caller must close the rig.
func (b *bench) newRig(ctx context.Context, rep *report, kind, scenario string, env map[string]string) (_ *rig, err error) {
	bin, err := b.serverBinary(ctx)
	if err != nil {
		return nil, err
	}
	fx, err := b.newFixture(ctx, kind, scenario)
	if err != nil {
		return nil, err
	}
	r := &rig{kind: kind, fx: fx, admin: proctest.NewSecret(32)}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if kind == dbPostgres {
		b.describePostgres(ctx, rep)
	}
	src := ""
	if b.source != "" {
		src = " (built from git " + b.source + ")"
	}
	rep.setupf("server: %s%s, a child process on 127.0.0.1 per scenario and database (two in the device scenario), each on a database of its own: a SQLite file in a temp dir or a new database on the PostgreSQL cluster; uploads in a temp dir on the same disk; WEMESSE_LOG_LEVEL=error, WEMESSE_ANSWER_KEY_FILE a new Ed25519 key (update answers signed), every other setting its default%s",
		bin, src, setSuffix(b.opts.serverEnv))
	rep.setupf("server peak RSS: VmHWM of the server process, reset (/proc/PID/clear_refs) at the start of each measured run, after the server settled: light unsigned traffic until VmRSS stops falling, so that the Argon2id garbage of a secret's first check (64 MiB) is not counted")
	// Every server signs its update answers, as production servers should.
	keyFile := filepath.Join(fx.dir, "answer-key.pem")
	key, err := httpsig.NewKeyPEM()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		return nil, err
	}
	env = maps.Clone(env)
	if env == nil {
		env = map[string]string{}
	}
	env["WEMESSE_ANSWER_KEY_FILE"] = keyFile
	b.logf("%s on %s: starting the server", scenario, kind)
	if r.srv, err = b.startServer(ctx, fx.spec(bin, r.admin, env)); err != nil {
		return nil, err
	}
	return r, nil
}

// newReleaseRig is newRig with a small build of benchVersion uploaded: the
// release that update checks are offered and device reports count.
func (b *bench) newReleaseRig(ctx context.Context, rep *report, kind, scenario string, env map[string]string) (*rig, error) {
	r, err := b.newRig(ctx, rep, kind, scenario, env)
	if err != nil {
		return nil, err
	}
	c := newClient()
	defer c.CloseIdleConnections()
	if err := uploadBuild(ctx, c, r.srv.URL, r.admin, benchVersion, 4096); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func setSuffix(e envSetter) string {
	if len(e) == 0 {
		return ""
	}
	return " (plus -set " + e.String() + ")"
}

func (r *rig) close() {
	if r.srv != nil {
		r.srv.Stop()
	}
	r.fx.Close()
}

// forEachDB runs fn for every database of -db, in order.
func (b *bench) forEachDB(fn func(kind string) error) error {
	for _, kind := range b.opts.dbs {
		if err := fn(kind); err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
	}
	return nil
}

// peakTracker measures a server's resident memory over one phase: it
// resets VmHWM at the start (see server.ResetPeak) and samples VmRSS
// meanwhile, in case the reset is refused.
type peakTracker struct {
	srv    *server
	before proctest.Memory
	reset  bool
	stop   context.CancelFunc
	peak   <-chan int64
}

func trackPeak(ctx context.Context, srv *server) (*peakTracker, error) {
	t := &peakTracker{srv: srv, reset: srv.ResetPeak() == nil}
	var err error
	if t.before, err = srv.Memory(); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	t.stop, t.peak = cancel, sampleRSS(sctx, srv)
	return t, nil
}

// done ends the phase and returns the peak RSS during it, in kB: VmHWM
// since the reset, or the highest VmRSS sampled when the reset failed.
func (t *peakTracker) done() int64 {
	t.stop()
	peak := <-t.peak
	if t.reset {
		if m, err := t.srv.Memory(); err == nil {
			peak = max(peak, m.HWMKB)
		}
	}
	return peak
}

// staticServer is an in-process HTTP server on 127.0.0.1: the reference a
// server row is compared with.
type staticServer struct {
	URL string
	srv *http.Server
}

func startStatic(h http.Handler) (*staticServer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &staticServer{URL: "http://" + l.Addr().String(), srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}
	go func() { _ = s.srv.Serve(l) }()
	return s, nil
}

func (s *staticServer) close() { _ = s.srv.Close() }

// Formats.

// fmtInt writes n with thousands separators.
func fmtInt(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := ""
	if n < 0 {
		neg, s = "-", s[1:]
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return neg + s
}

func fmtRate(perSec float64, unit string) string {
	if perSec >= 100 {
		return fmtInt(int64(perSec+0.5)) + " " + unit
	}
	return sig3(perSec) + " " + unit
}

// fmtMiBps prints bytes per second in MiB/s.
func fmtMiBps(bytesPerSec float64) string { return sig3(bytesPerSec/(1<<20)) + " MiB/s" }

// fmtSize prints a byte count in GiB or MiB.
func fmtSize(n int64) string {
	if n >= 1<<30 {
		return sig3(float64(n)/(1<<30)) + " GiB"
	}
	return sig3(float64(n)/(1<<20)) + " MiB"
}

func fmtX(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) + "×" }

// settle lets a server give back memory it no longer uses before a phase
// whose RSS is measured. A secret's first check runs Argon2id (64 MiB by
// default): garbage that the Go runtime frees only at a GC, which the heap
// goal raised by that very allocation puts off, and returns to the OS some
// time after. Light traffic (unsigned update checks from two clients)
// brings those GCs about; settle returns once VmRSS has not fallen by 1 MB
// for settleQuiet (and at least settleMin has passed), or after settleMax.
func settle(ctx context.Context, b *bench, srv *server) error {
	const (
		settleMin   = 2 * time.Second
		settleQuiet = 2 * time.Second
		settleMax   = 20 * time.Second
	)
	ctx, cancel := context.WithTimeout(ctx, settleMax)
	defer cancel()
	url := srv.URL + "/api/v1/updates/" + updateClientVersion
	done := make(chan struct{})
	for range 2 {
		go func() {
			defer func() { done <- struct{}{} }()
			c := newClient()
			defer c.CloseIdleConnections()
			for ctx.Err() == nil {
				_, _ = send(ctx, c, http.MethodGet, url, "", "", nil)
			}
		}()
	}
	defer func() {
		cancel()
		<-done
		<-done
	}()
	first, err := srv.Memory()
	if err != nil {
		return err
	}
	begin := time.Now()
	low, lowAt := first.RSSKB, begin
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			b.logf("settle: VmRSS %s → %s in %s, maybe still falling", fmtMB(kbToMB(first.RSSKB)), fmtMB(kbToMB(low)), settleMax)
			return nil
		case <-tick.C:
		}
		m, err := srv.Memory()
		if err != nil {
			return err
		}
		if m.RSSKB < low-1024 {
			low, lowAt = m.RSSKB, time.Now()
		}
		if time.Since(begin) >= settleMin && time.Since(lowAt) >= settleQuiet {
			b.logf("settle: VmRSS %s → %s in %s", fmtMB(kbToMB(first.RSSKB)), fmtMB(kbToMB(m.RSSKB)), time.Since(begin).Round(100*time.Millisecond))
			return nil
		}
	}
}

// warmSecret makes the server check secret once (Argon2id), so that the
// measured requests find it cached, then settles the server's memory.
func warmSecret(ctx context.Context, b *bench, srv *server, secret string) error {
	c := newClient()
	defer c.CloseIdleConnections()
	if _, err := expect(ctx, c, http.StatusOK, http.MethodGet, srv.URL+"/api/v1/updates", secret, "", nil); err != nil {
		return fmt.Errorf("warm the admin secret: %w", err)
	}
	return settle(ctx, b, srv)
}
