package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/proctest"
)

// The auth scenario's targets.
const (
	maxSignedRatio    = 3.0                    // signed / unsigned sequential time
	maxPeakRSSMB      = 512                    // server VmHWM during a flood
	maxValidMedian    = 100 * time.Millisecond // valid client's median under a flood
	maxValidFailures  = 0
	maxValidRequests  = 1_000_000 // count bound on the valid client's loop
	rssSampleInterval = 20 * time.Millisecond
	benchVersion      = "2267_00"
)

// validBody is the device report the valid client sends; after the first
// one every report updates the same row.
var validBody = []byte(`{"AppVersion":"` + benchVersion + `","SessionID":1,"DeviceMac":"aa"}`)

// authScenario measures what signature checks cost: the cached path against
// no check at all, a cold check against a warm one, and a flood of wrong
// signatures against one valid client.
type authScenario struct {
	requests      int
	coldSecrets   int
	warmRequests  int
	floodDuration time.Duration
	attackers     int
	floodLimit    int
	sameHint      int
}

func (*authScenario) Name() string { return "auth" }

func (*authScenario) Summary() string {
	return "signature checks: cached vs none, cold vs warm, a flood of wrong signatures"
}

func (a *authScenario) SetFlags(fs *flag.FlagSet) {
	rangeVar(fs, &a.requests, "requests", 500, 1, 100_000, "sequential requests per series in the sequential row")
	rangeVar(fs, &a.coldSecrets, "cold-secrets", 5, 1, 50, "client secrets created to time a cold (uncached) check")
	rangeVar(fs, &a.warmRequests, "warm-requests", 100, 1, 100_000, "requests timed with a cached secret in the cold vs warm row")
	rangeVar(fs, &a.floodDuration, "flood-duration", 10*time.Second, time.Second, 10*time.Minute, "length of each flood")
	rangeVar(fs, &a.attackers, "attackers", 32, 1, 1024, "concurrent attackers in each flood")
	rangeVar(fs, &a.sameHint, "same-hint-secrets", 300, 1, 100_000,
		"wrong secrets minted with the client secret's public hint for the same-hint flood (each costs ~65,000 SHA-256 tries)")
	rangeVar(fs, &a.floodLimit, "flood-failure-limit", 1_000_000, 1, 1_000_000,
		"WEMESSE_AUTH_FAILURES_PER_MINUTE for the second flood; the default, the most the server accepts, is in effect no limit")
}

func (a *authScenario) Run(ctx context.Context, b *bench, rep *report) error {
	bin, err := b.serverBinary(ctx)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "wemesse-bench-auth-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	spec := serverSpec{binary: bin, dataDir: dir, admin: proctest.NewSecret(32)}

	srv, err := b.startServer(ctx, spec)
	if err != nil {
		return err
	}
	defer srv.Stop()
	cfg := srv.Config
	rep.setupf("server: %s (child process on 127.0.0.1, SQLite in a temp dir, default settings unless stated)", bin)
	rep.setupf("auth: Argon2id m=%d KiB t=%d p=%d; %d hashing slots, slot wait %s; cache %d entries for %s; signatures re-read every %s",
		cfg.Argon2.Memory, cfg.Argon2.Iterations, cfg.Argon2.Parallelism, cfg.Argon2Concurrency, cfg.Argon2Wait,
		cfg.AuthCacheSize, cfg.AuthCacheTTL, cfg.AuthRefresh)

	if len(b.opts.serverEnv) > 0 {
		rep.setupf("settings from -set: %s", b.opts.serverEnv.String())
	}

	c := newClient()
	defer c.CloseIdleConnections()
	b.logf("uploading build %s", benchVersion)
	if err := uploadBuild(ctx, c, srv.URL, spec.admin, benchVersion, 4096); err != nil {
		return err
	}
	b.logf("creating 1 + %d client secrets with `wemesse signature create`", a.coldSecrets)
	_, client, err := srv.CreateSecret(ctx, model.RoleClient)
	if err != nil {
		return err
	}
	cold := make([]coldSecret, a.coldSecrets)
	for i := range cold {
		if cold[i].id, cold[i].secret, err = srv.CreateSecret(ctx, model.RoleClient); err != nil {
			return err
		}
	}
	// The running server sees rows made by the CLI at its next refresh.
	if err := sleep(ctx, cfg.AuthRefresh+cfg.AuthRefresh/2+250*time.Millisecond); err != nil {
		return err
	}

	if err := a.sequential(ctx, b, rep, srv, c, spec.admin); err != nil {
		return err
	}
	if err := a.coldWarm(ctx, b, rep, srv, c, client, cold); err != nil {
		return err
	}
	srv.Stop()

	// Each flood runs on a server started for it over the same database, so
	// its VmHWM is the flood's alone.
	rep.setupf("floods: %d attackers for %s each, every request a new random signature; one valid client in a loop; server restarted for each flood",
		a.attackers, a.floodDuration)
	random := floodKind{name: "flood", secrets: "random signature", next: func() string { return proctest.NewSecret(24) }}
	if err := a.flood(ctx, b, rep, spec, client, random); err != nil {
		return err
	}
	spec.env = map[string]string{"WEMESSE_AUTH_FAILURES_PER_MINUTE": strconv.Itoa(a.floodLimit)}
	if err := a.flood(ctx, b, rep, spec, client, random); err != nil {
		return err
	}
	// The client secret ships inside the app, so its hint is public: wrong
	// secrets with that hint, minted offline, each reach Argon2id unless the
	// server bounds them (WEMESSE_AUTH_HINT_FAILURES_PER_MINUTE).
	hint := model.HintOf(client)
	b.logf("same-hint flood: minting %d wrong secrets with hint %s", a.sameHint, hint)
	minted := mintWithHint(ctx, hint, a.sameHint)
	if err := ctx.Err(); err != nil {
		return err
	}
	rep.setupf("same-hint flood: %d wrong secrets minted offline with the client secret's public hint, sent in turn (a secret sent again is refused from the failed cache)", len(minted))
	var turn atomic.Int64
	sameHint := floodKind{name: "same-hint flood", secrets: "wrong signature with the client's hint", next: func() string {
		return minted[int(turn.Add(1)-1)%len(minted)]
	}}
	return a.flood(ctx, b, rep, spec, client, sameHint)
}

// floodKind is what the attackers of a flood send.
type floodKind struct {
	name    string        // the section's name, before its limit
	secrets string        // what each request's signature is
	next    func() string // the signature of the next request; safe for concurrent use
}

// mintWithHint returns n distinct random secrets whose hint is hint, as an
// attacker who knows the hint makes them offline, on every CPU.
func mintWithHint(ctx context.Context, hint string, n int) []string {
	out := make(chan string, n)
	var wg sync.WaitGroup
	var found atomic.Int64
	for range runtime.NumCPU() {
		wg.Go(func() {
			for ctx.Err() == nil && found.Load() < int64(n) {
				if s := proctest.NewSecret(24); model.HintOf(s) == hint && found.Add(1) <= int64(n) {
					out <- s
				}
			}
		})
	}
	wg.Wait()
	close(out)
	var secrets []string
	for s := range out {
		secrets = append(secrets, s)
	}
	return secrets
}

// sequential times unsigned update checks against signed release lists
// whose secret is cached, one request at a time on one connection.
func (a *authScenario) sequential(ctx context.Context, b *bench, rep *report, srv *server, c *http.Client, admin string) error {
	const section = "sequential"
	b.logf("sequential: %d + %d requests", a.requests, a.requests)
	series := []struct {
		name, path, secret string
	}{
		{fmt.Sprintf("%d × GET /api/v1/updates/%s, no signature", a.requests, benchVersion), "/api/v1/updates/" + benchVersion, ""},
		{fmt.Sprintf("%d × GET /api/v1/updates, admin signature (cached)", a.requests), "/api/v1/updates", admin},
	}
	var totals [2]time.Duration
	for i, s := range series {
		// The warm-up call fills the cache and opens the connection.
		if _, err := expect(ctx, c, http.StatusOK, http.MethodGet, srv.URL+s.path, s.secret, "", nil); err != nil {
			return err
		}
		start := time.Now()
		for range a.requests {
			if _, err := expect(ctx, c, http.StatusOK, http.MethodGet, srv.URL+s.path, s.secret, "", nil); err != nil {
				return err
			}
		}
		totals[i] = time.Since(start)
		rep.info(section, s.name, fmt.Sprintf("%s (%s each)", fmtDuration(totals[i]), fmtDuration(totals[i]/time.Duration(a.requests))))
	}
	rep.check(section, "ratio signed / unsigned", target{
		value: float64(totals[1]) / float64(totals[0]), op: "<=", limit: maxSignedRatio, format: fmtRatio,
	})
	return nil
}

// coldSecret is a client secret the server has not checked yet.
type coldSecret struct {
	id     int64
	secret string
	first  time.Duration
}

// coldWarm times the first request of each new secret, when Argon2id runs,
// against the median of requests with a secret already cached.
func (a *authScenario) coldWarm(ctx context.Context, b *bench, rep *report, srv *server, c *http.Client, client string, cold []coldSecret) error {
	const section = "cold vs warm"
	b.logf("cold vs warm: %d cold requests, %d warm", len(cold), a.warmRequests)
	usersURL := srv.URL + "/api/v1/users"
	// Make the device row exist, so every timed request is the same update.
	for range 2 {
		if _, err := expect(ctx, c, http.StatusOK, http.MethodPost, usersURL, client, "application/json", validBody); err != nil {
			return err
		}
	}
	firsts := make([]time.Duration, len(cold))
	for i := range cold {
		d, err := expect(ctx, c, http.StatusOK, http.MethodPost, usersURL, cold[i].secret, "application/json", validBody)
		if err != nil {
			return fmt.Errorf("first request with new secret %d: %w", cold[i].id, err)
		}
		cold[i].first, firsts[i] = d, d
	}
	warm := make([]time.Duration, a.warmRequests)
	for i := range warm {
		d, err := expect(ctx, c, http.StatusOK, http.MethodPost, usersURL, cold[0].secret, "application/json", validBody)
		if err != nil {
			return err
		}
		warm[i] = d
	}
	coldMedian, warmMedian := percentile(slices.Clone(firsts), 0.5), percentile(warm, 0.5)
	lo, hi := slices.Min(firsts), slices.Max(firsts)
	rep.info(section, fmt.Sprintf("cold: first POST /api/v1/users of %d new secrets, median (min–max)", len(cold)),
		fmt.Sprintf("%s (%s–%s)", fmtDuration(coldMedian), fmtDuration(lo), fmtDuration(hi)))
	rep.info(section, fmt.Sprintf("warm: median of %d POST /api/v1/users, cached secret", a.warmRequests), fmtDuration(warmMedian))
	rep.info(section, "ratio cold / warm", fmtRatio(float64(coldMedian)/float64(warmMedian)))

	parts := make([]string, len(cold))
	for i, s := range cold {
		parts[i] = fmt.Sprintf("row %d: %s", s.id, fmtDuration(s.first))
	}
	rep.notef("cold check by signature row: %s. An uncached secret is hashed only against rows whose hint (two bytes of its SHA-256) matches, so a cold check costs about one Argon2id whatever the row, and a wrong secret almost never costs one (%d rows here).",
		strings.Join(parts, ", "), int(cold[len(cold)-1].id))
	return nil
}

// attackStats summarises the attackers' results.
type attackStats struct {
	total     int
	codes     map[uint16]int
	errors    map[string]int // transport errors (code 0)
	latencies []time.Duration
	first429  time.Duration // since the attack began; 0 when none
	elapsed   time.Duration
}

// flood starts a server with spec, then runs the attackers and the valid
// client side by side for floodDuration while sampling the server's RSS.
func (a *authScenario) flood(ctx context.Context, b *bench, rep *report, spec serverSpec, client string, kind floodKind) error {
	srv, err := b.startServer(ctx, spec)
	if err != nil {
		return err
	}
	defer srv.Stop()
	section := fmt.Sprintf("%s, limit %d/min", kind.name, srv.Config.AuthFailuresPerMin)
	b.logf("%s: %d attackers for %s", section, a.attackers, a.floodDuration)
	c := newClient()
	defer c.CloseIdleConnections()
	usersURL := srv.URL + "/api/v1/users"
	if err := proctest.LoopbackOnly(usersURL); err != nil {
		return err
	}
	// Warm: the first request hashes, the rest hit the cache.
	for range 2 {
		if _, err := expect(ctx, c, http.StatusOK, http.MethodPost, usersURL, client, "application/json", validBody); err != nil {
			return err
		}
	}
	before, err := srv.Memory()
	if err != nil {
		return err
	}

	floodCtx, cancel := context.WithTimeout(ctx, a.floodDuration+2*requestTimeout)
	defer cancel()
	peakRSS := sampleRSS(floodCtx, srv)

	attacker := vegeta.NewAttacker(
		vegeta.Workers(uint64(a.attackers)), vegeta.MaxWorkers(uint64(a.attackers)),
		vegeta.Connections(a.attackers), vegeta.KeepAlive(true), vegeta.MaxBody(0),
		vegeta.Timeout(requestTimeout), vegeta.Redirects(vegeta.NoFollow),
		vegeta.Proxy(func(*http.Request) (*url.URL, error) { return nil, nil }),
	)
	targeter := func(t *vegeta.Target) error {
		t.Method = http.MethodGet
		t.URL = usersURL
		t.Header = http.Header{"Signature": []string{kind.next()}}
		return nil
	}
	attackStart := time.Now()
	results := attacker.Attack(targeter, vegeta.Rate{Freq: 0}, a.floodDuration, "flood") // as fast as the workers go
	attackDone := make(chan attackStats, 1)
	go func() {
		st := attackStats{codes: map[uint16]int{}, errors: map[string]int{}}
		for r := range results {
			st.total++
			st.codes[r.Code]++
			st.latencies = append(st.latencies, r.Latency)
			if at := r.End().Sub(attackStart); r.Code == http.StatusTooManyRequests && (st.first429 == 0 || at < st.first429) {
				st.first429 = at
			}
			if r.Code == 0 && len(st.errors) < 20 {
				st.errors[r.Error]++
			}
		}
		st.elapsed = time.Since(attackStart)
		attackDone <- st
	}()
	go func() {
		<-floodCtx.Done() // ends the attack early on Ctrl-C or the safety timeout
		attacker.Stop()
	}()

	// The valid client, in a loop bounded in time and count.
	var latencies []time.Duration
	failures := map[string]int{}
	nFailed := 0
	start := time.Now()
	deadline := start.Add(a.floodDuration)
	for i := 0; i < maxValidRequests && time.Now().Before(deadline) && floodCtx.Err() == nil; i++ {
		t0 := time.Now()
		r, err := send(floodCtx, c, http.MethodPost, usersURL, client, "application/json", validBody)
		latencies = append(latencies, time.Since(t0))
		switch {
		case err != nil:
			nFailed++
			failures[err.Error()]++
		case r.status != http.StatusOK:
			nFailed++
			failures["status "+strconv.Itoa(r.status)]++
		}
	}
	validElapsed := time.Since(start)

	// The attack ends at floodDuration, or at once when floodCtx ends; either
	// way its in-flight requests finish within requestTimeout.
	st := <-attackDone
	alive := !srv.Exited()
	var after proctest.Memory
	if alive {
		after, _ = srv.Memory()
	}
	cancel()
	peak := <-peakRSS
	if err := ctx.Err(); err != nil {
		return err
	}

	// Attackers.
	other := st.total
	for _, code := range []uint16{401, 429, 503} {
		other -= st.codes[code]
	}
	rep.info(section, fmt.Sprintf("attackers: %d × GET /api/v1/users, %s", a.attackers, kind.secrets),
		fmt.Sprintf("%d requests (%.0f/s)", st.total, float64(st.total)/st.elapsed.Seconds()))
	rep.info(section, "attackers: 401 / 429 / 503 / other",
		fmt.Sprintf("%d / %d / %d / %d", st.codes[401], st.codes[429], st.codes[503], other))
	first429 := "none"
	if st.first429 > 0 {
		first429 = fmtDuration(st.first429) + " after the start"
	}
	rep.info(section, "attackers: first 429", first429)
	rep.info(section, "attackers: median / max latency",
		fmtDuration(percentile(st.latencies, 0.5))+" / "+fmtDuration(percentile(st.latencies, 1)))
	if other > 0 {
		rep.notef("%s: attacker statuses other than 401/429/503: %s %s", section, fmtCodes(st.codes), fmtErrors(st.errors))
	}

	// Server memory.
	rep.info(section, "server VmRSS before the flood", fmtMB(kbToMB(before.RSSKB)))
	rep.info(section, fmt.Sprintf("server peak VmRSS, sampled every %s", rssSampleInterval), fmtMB(kbToMB(peak)))
	hwm := max(after.HWMKB, peak)
	rep.check(section, "server peak RSS (VmHWM)", target{value: kbToMB(hwm), op: "<", limit: maxPeakRSSMB, format: fmtMB})
	rep.check(section, "server still running after the flood", target{value: boolValue(alive), op: "==", limit: 1, format: fmtYesNo})
	if !alive {
		rep.notef("%s: the server exited during the flood; log tail:\n%s", section, srv.LogTail(20))
	}

	// The valid client.
	n := len(latencies)
	rep.info(section, "valid client: POST /api/v1/users in a loop, cached secret",
		fmt.Sprintf("%d OK of %d (%.0f/s)", n-nFailed, n, float64(n)/validElapsed.Seconds()))
	rep.check(section, "valid client: failures", target{value: float64(nFailed), op: "==", limit: maxValidFailures, format: fmtCount})
	if nFailed > 0 {
		rep.notef("%s: valid-client failures: %s", section, fmtErrors(failures))
	}
	median := time.Duration(1<<63 - 1) // no sample fails the target
	if n > 0 {
		median = percentile(latencies, 0.5)
	}
	rep.check(section, "valid client: median latency", target{value: ms(median), op: "<", limit: ms(maxValidMedian), format: fmtMS})
	rep.info(section, "valid client: p99 latency", fmtDuration(percentile(latencies, 0.99)))
	return nil
}

// sampleRSS polls the server's VmRSS until ctx ends, then sends the peak.
func sampleRSS(ctx context.Context, srv *server) <-chan int64 {
	out := make(chan int64, 1)
	go func() {
		var peak int64
		t := time.NewTicker(rssSampleInterval)
		defer t.Stop()
		for {
			if m, err := srv.Memory(); err == nil {
				peak = max(peak, m.RSSKB)
			}
			select {
			case <-ctx.Done():
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

func kbToMB(kb int64) float64 { return float64(kb) / 1024 }

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func fmtYesNo(v float64) string {
	if v != 0 {
		return "yes"
	}
	return "no"
}

func fmtCodes(codes map[uint16]int) string {
	var parts []string
	for _, code := range slices.Sorted(maps.Keys(codes)) {
		parts = append(parts, fmt.Sprintf("%d×%d", codes[code], code))
	}
	return strings.Join(parts, ", ")
}

func fmtErrors(errs map[string]int) string {
	var parts []string
	for _, e := range slices.Sorted(maps.Keys(errs)) {
		parts = append(parts, fmt.Sprintf("%d× %q", errs[e], e))
	}
	return strings.Join(parts, "; ")
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
