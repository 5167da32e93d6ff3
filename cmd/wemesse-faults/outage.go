package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Bounds the outage scenario verifies.
const (
	maxLatency      = 5 * time.Second // every request, outage or not
	maxRecovery     = 2 * time.Second // from PostgreSQL accepting connections to a device report succeeding
	deviceWorkers   = 4
	devicesInFlight = 6 // live devices per worker; each is retired after a few reports
	maxUnknownExact = 12
)

// loadRec is one request of the mixed load.
type loadRec struct {
	kind       string // "device", "check", "list", "ready"
	status     int
	err        error
	retryAfter bool
	bodyOK     bool // device: the 200 echoed the device; check: the expected release
	start, end time.Time
}

// loadDevice is a device of the load with the raw outcome of its reports.
type loadDevice struct {
	*ledgerDevice
	viaSuffix bool // the ABI travels as a suffix of AppVersion
	raw       []loadRec
	versions  []string
}

// outageLoad is the mixed load: device reports, update checks, release
// list reads and readiness probes.
type outageLoad struct {
	ctx      context.Context // for requests: outlives the load, so stopping it cuts nothing
	loadCtx  context.Context // the load stops when it ends
	c        *http.Client
	base     string
	admin    string
	client   string
	reported []string // versions devices report
	newest   string   // what every update check must answer

	mu      sync.Mutex
	recs    []loadRec
	devices []*loadDevice
}

func (l *outageLoad) add(recs []loadRec, devs []*loadDevice) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, recs...)
	l.devices = append(l.devices, devs...)
}

// pace sleeps what is left of every after start; false when the load ends.
func (l *outageLoad) pace(start time.Time, every time.Duration) bool {
	select {
	case <-l.loadCtx.Done():
		return false
	case <-time.After(every - time.Since(start)):
		return true
	}
}

func (l *outageLoad) deviceWorker(w int) {
	rng := rand.New(rand.NewPCG(uint64(w)+1, 0x5eed))
	type live struct {
		d    *loadDevice
		left int
	}
	var active []*live
	var mine []*loadDevice
	var recs []loadRec
	n := 0
	defer func() { l.add(recs, mine) }()
	for l.loadCtx.Err() == nil {
		for len(active) < devicesInFlight {
			n++
			d := &loadDevice{ledgerDevice: &ledgerDevice{
				session: int64(w+1)*1_000_000 + int64(n),
				mac:     fmt.Sprintf("02:fa:%02x:%02x:%02x:%02x", w, byte(n>>16), byte(n>>8), byte(n)),
			}}
			switch rng.IntN(5) {
			case 3: // an x86 device that says so in TargetABI
				d.abi, d.rowABI = "x86", "x86"
			case 4: // an arm64 device that appends its ABI to the version
				d.abi, d.rowABI, d.viaSuffix = "arm64", "arm64", true
			}
			mine = append(mine, d)
			active = append(active, &live{d: d, left: 2 + rng.IntN(8)})
		}
		i := rng.IntN(len(active))
		lv := active[i]
		d := lv.d
		v := l.reported[rng.IntN(len(l.reported))]
		if len(d.versions) > 0 && rng.IntN(4) == 0 {
			v = d.versions[len(d.versions)-1] // the same version again: must not count
		}
		report := map[string]any{
			"AppLocale": "en", "AppVersion": v, "DeviceLocale": "en-us", "DeviceMac": d.mac,
			"DeviceModel": "wemesse-faults", "DeviceSDK": "SDK 34", "SessionActivity": time.Now().Unix(),
			"SessionID": d.session, "SessionRegister": 1700000000, "TgVersion": "10.0",
		}
		switch {
		case d.viaSuffix:
			report["AppVersion"] = v + d.abi
		case d.abi != "":
			report["TargetABI"] = d.abi
		}
		body, _ := json.Marshal(report)
		r := do(l.ctx, l.c, "POST", l.base+"/api/v1/users", l.client, "application/json", body, requestTimeout)
		rec := loadRec{kind: "device", status: r.status, err: r.err, start: r.start, end: r.end,
			retryAfter: r.status > 0 && r.header.Get("Retry-After") != ""}
		if r.status == http.StatusOK {
			var u userJSON
			rec.bodyOK = json.Unmarshal(r.body, &u) == nil && u.SessionID == d.session && u.DeviceMac == d.mac &&
				u.AppVersion == v && u.TargetABI == d.rowABI
		}
		recs = append(recs, rec)
		d.raw = append(d.raw, rec)
		d.versions = append(d.versions, v)
		if lv.left--; lv.left == 0 {
			active = slices.Delete(active, i, i+1)
		}
		if !l.pace(r.start, 20*time.Millisecond) {
			return
		}
	}
}

func (l *outageLoad) checkWorker() {
	var recs []loadRec
	defer func() { l.add(recs, nil) }()
	clients := []string{"2999_99", "3000_01", "3000_05x86", "3000_10arm64"}
	for i := 0; l.loadCtx.Err() == nil; i++ {
		u := fmt.Sprintf("%s/api/v1/updates/%s?device=%d", l.base, clients[i%len(clients)], i)
		r := do(l.ctx, l.c, "GET", u, "", "", nil, requestTimeout)
		rec := loadRec{kind: "check", status: r.status, err: r.err, start: r.start, end: r.end}
		if r.status == http.StatusOK {
			var rel releaseJSON
			rec.bodyOK = json.Unmarshal(r.body, &rel) == nil && rel.Version == l.newest
		}
		recs = append(recs, rec)
		if !l.pace(r.start, 10*time.Millisecond) {
			return
		}
	}
}

// simpleWorker GETs a URL every so often.
func (l *outageLoad) simpleWorker(kind, path, secret string, every time.Duration) {
	var recs []loadRec
	defer func() { l.add(recs, nil) }()
	for l.loadCtx.Err() == nil {
		r := do(l.ctx, l.c, "GET", l.base+path, secret, "", nil, requestTimeout)
		recs = append(recs, loadRec{kind: kind, status: r.status, err: r.err, start: r.start, end: r.end,
			retryAfter: r.status > 0 && r.header.Get("Retry-After") != ""})
		if !l.pace(r.start, every) {
			return
		}
	}
}

// sleepCtx sleeps d unless ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func runOutage(ctx context.Context, h *harness) error {
	rg, err := h.newRig(ctx, "outage", true, nil)
	if err != nil {
		return err
	}
	defer rg.close()
	h.info("server pid %d on %s; PostgreSQL postmaster pid %d on 127.0.0.1:%d, database %s",
		rg.s.Pid(), rg.s.URL, h.pg.PID(), h.pg.Port(), rg.db)
	ids, err := outageSetup(ctx, rg)
	if err != nil {
		return err
	}
	l, tl, err := outageInject(ctx, rg)
	if err != nil {
		return err
	}
	outageVerifyLoad(rg, l, tl)
	return verifyLedger(ctx, rg, l, ids, tl)
}

// outageCatalog is the releases the devices report. 3000_02 also has an
// arm64 build, which counts arm64 devices (the default ABI) while x86 ones
// count on the universal build; 2999_99 has no release at all.
var outageCatalog = []releaseKey{{"3000_01", ""}, {"3000_02", ""}, {"3000_02", "arm64"}, {"3000_03", ""}, {"3000_10", ""}, {"3001_00", ""}}

// outageSetup uploads the catalog and returns each release's id.
func outageSetup(ctx context.Context, rg *rig) (map[releaseKey]int64, error) {
	ids := map[releaseKey]int64{}
	for i, k := range outageCatalog {
		data, _ := randomData(uint64(100+i), 32<<10)
		r, rel := upload(ctx, rg.c, rg.s.URL, rg.h.admin, k.version, k.abi, "wemesse.apk", data)
		if r.status != http.StatusCreated {
			rg.h.fail("setup: upload %s %s: %s", k.version, k.abi, r.describe())
			return nil, errors.New("setup failed")
		}
		ids[k] = rel.ID
	}
	rg.h.pass("setup: %d releases uploaded, each answered 201 (3000_01, 3000_02 universal and arm64, 3000_03, 3000_10, 3001_00)", len(outageCatalog))
	return ids, nil
}

// resolverOf resolves a report to the release of ids it counts on.
func resolverOf(ids map[releaseKey]int64) resolver {
	return func(version, abi string) (releaseKey, bool) {
		if abi == "" {
			abi = "arm64" // WEMESSE_DEFAULT_ABI
		}
		for _, k := range []releaseKey{{version, abi}, {version, ""}} {
			if _, ok := ids[k]; ok {
				return k, true
			}
		}
		return releaseKey{}, false
	}
}

// outageTimeline is when the fault's steps happened.
type outageTimeline struct {
	stopBegin time.Time // pg_ctl stop began
	downFrom  time.Time // PostgreSQL was down
	downTo    time.Time // pg_ctl start began
	acceptAt  time.Time // PostgreSQL accepted this tool's connection again
	alive     bool      // the server process was alive at the end of the outage
	down      bool      // PostgreSQL is still stopped: the fault ended early
}

// outageInject runs the mixed load and, under it, stops PostgreSQL for
// -outage and starts it again.
func outageInject(ctx context.Context, rg *rig) (*outageLoad, outageTimeline, error) {
	h := rg.h
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	l := &outageLoad{ctx: ctx, loadCtx: loadCtx, c: rg.c, base: rg.s.URL, admin: h.admin, client: rg.client,
		reported: []string{"2999_99", "3000_01", "3000_02", "3000_03", "3000_10", "3001_00"}, newest: "3001_00"}
	var wg sync.WaitGroup
	for w := range deviceWorkers {
		wg.Go(func() { l.deviceWorker(w) })
	}
	wg.Go(l.checkWorker)
	wg.Go(func() { l.simpleWorker("list", "/api/v1/updates", h.admin, 50*time.Millisecond) })
	wg.Go(func() { l.simpleWorker("ready", "/readyz", "", 100*time.Millisecond) })
	h.info("load started: %d goroutines report devices (each device from one goroutine, one report at a time, new devices all along, versions changing, repeating and going back), 1 checks for updates every 10ms, 1 lists releases every 50ms, 1 probes /readyz every 100ms", deviceWorkers)

	var tl outageTimeline
	err := pgOutage(ctx, rg, &tl)
	stopLoad()
	wg.Wait()
	if tl.down {
		// Leave the cluster running for the other scenarios.
		if serr := h.pg.Start(context.WithoutCancel(ctx)); serr != nil && err == nil {
			err = serr
		}
	}
	return l, tl, err
}

// pgOutage stops PostgreSQL after a warm-up, tries an upload while it is
// down, starts it again after -outage and lets the load run on.
func pgOutage(ctx context.Context, rg *rig, tl *outageTimeline) error {
	h, s := rg.h, rg.s
	warmup, after := 3*time.Second, 4*time.Second
	if h.opts.quick {
		warmup, after = 2*time.Second, 3*time.Second
	}
	if err := sleepCtx(ctx, warmup); err != nil {
		return err
	}
	pid := h.pg.PID()
	tl.stopBegin = time.Now()
	h.inject("pg_ctl stop -m fast: PostgreSQL (postmaster pid %d) stops under load", pid)
	if err := h.pg.Stop(ctx, "fast"); err != nil {
		return err
	}
	tl.down, tl.downFrom = true, time.Now()
	h.info("PostgreSQL is down (pg_ctl stop took %s); it stays down for %s while the load goes on",
		tl.downFrom.Sub(tl.stopBegin).Round(time.Millisecond), h.opts.outage)
	if err := sleepCtx(ctx, h.opts.outage/3); err != nil {
		return err
	}
	// An upload streams to staging before it needs the database.
	data, _ := randomData(150, 2<<20)
	up, _ := upload(ctx, rg.c, s.URL, h.admin, "3002_00", "", "outage.apk", data)
	staged, _ := dirEntries(s.StagingDir())
	h.check(up.status == 503 && up.header.Get("Retry-After") != "" && len(staged) == 0 && !exists(releaseFile(s.UploadDir(), "3002_00", "")),
		"during the outage, an upload of 3002_00 (2 MiB) got 503 with Retry-After (%s) and left no staged file (%v) and no file", up.describe(), staged)
	if err := sleepCtx(ctx, time.Until(tl.downFrom.Add(h.opts.outage))); err != nil {
		return err
	}
	tl.alive = !s.Exited()
	tl.downTo = time.Now()
	h.inject("pg_ctl start: PostgreSQL restarts on the same port; the server is not restarted")
	accepted := make(chan time.Time, 1)
	pollCtx, stopPoll := context.WithTimeout(ctx, time.Minute)
	defer stopPoll()
	go func() {
		for pollCtx.Err() == nil {
			if conn, err := rg.connect(pollCtx); err == nil {
				accepted <- time.Now()
				conn.Close(pollCtx)
				return
			}
			sleepCtx(pollCtx, 10*time.Millisecond)
		}
	}()
	if err := h.pg.Start(ctx); err != nil {
		return err
	}
	tl.down = false
	started := time.Now()
	select {
	case tl.acceptAt = <-accepted:
	case <-time.After(5 * time.Second):
		tl.acceptAt = started
	}
	h.info("PostgreSQL accepts connections again (new postmaster pid %d), %s after pg_ctl start began",
		h.pg.PID(), tl.acceptAt.Sub(tl.downTo).Round(time.Millisecond))
	return sleepCtx(ctx, after)
}

// loadRecs are requests of the load.
type loadRecs []loadRec

// where returns the requests of kind ("" for all) for which keep, if set,
// is true.
func (rs loadRecs) where(kind string, keep func(loadRec) bool) loadRecs {
	var out loadRecs
	for _, r := range rs {
		if (kind == "" || r.kind == kind) && (keep == nil || keep(r)) {
			out = append(out, r)
		}
	}
	return out
}

// failing returns the requests for which ok is false.
func (rs loadRecs) failing(ok func(loadRec) bool) loadRecs {
	return rs.where("", func(r loadRec) bool { return !ok(r) })
}

// slowest is the longest request.
func (rs loadRecs) slowest() time.Duration {
	var d time.Duration
	for _, r := range rs {
		d = max(d, r.end.Sub(r.start))
	}
	return d
}

// example describes the first request, for a report line.
func (rs loadRecs) example(since time.Time) string {
	if len(rs) == 0 {
		return ""
	}
	r := rs[0]
	if r.status == 0 {
		return fmt.Sprintf("; e.g. %s at +%s: no response (%v)", r.kind, r.start.Sub(since).Round(time.Millisecond), r.err)
	}
	return fmt.Sprintf("; e.g. %s at +%s: %d", r.kind, r.start.Sub(since).Round(time.Millisecond), r.status)
}

// checkAll counts one verification: every request of rs passes ok, and
// there is at least one.
func (rs loadRecs) checkAll(h *harness, ok func(loadRec) bool, format string, args ...any) {
	bad := rs.failing(ok)
	h.check(len(rs) > 0 && len(bad) == 0, format+": %d of %d%s", append(args, len(rs)-len(bad), len(rs), bad.example(h.scenarioStart))...)
}

// outageVerifyLoad checks what the load saw before, during and after the
// outage.
func outageVerifyLoad(rg *rig, l *outageLoad, tl outageTimeline) {
	h, s := rg.h, rg.s
	recs := loadRecs(l.recs)
	h.info("load finished: %d requests (%d device reports, %d update checks, %d list reads, %d readiness probes)",
		len(recs), len(recs.where("device", nil)), len(recs.where("check", nil)), len(recs.where("list", nil)), len(recs.where("ready", nil)))

	inside := func(r loadRec) bool { return r.start.After(tl.downFrom) && r.end.Before(tl.downTo) }
	devIn := recs.where("device", inside)
	devIn.checkAll(h, func(r loadRec) bool { return r.status == 503 && r.retryAfter },
		"during the outage, device reports sent and answered while PostgreSQL was down got a prompt 503 with Retry-After, the slowest in %s", devIn.slowest().Round(time.Millisecond))
	recs.where("list", inside).checkAll(h, func(r loadRec) bool { return r.status == 503 && r.retryAfter },
		"during the outage, release list reads got 503 with Retry-After")
	recs.where("check", inside).checkAll(h, func(r loadRec) bool { return r.status == 200 && r.bodyOK },
		"during the outage, update checks kept answering 200 with release %s from memory", l.newest)
	recs.where("ready", inside).checkAll(h, func(r loadRec) bool { return r.status == 503 },
		"during the outage, /readyz answered 503")
	h.check(tl.alive && !s.Exited(), "the server process (pid %d) stayed alive through the outage and was never restarted", s.Pid())

	// Over the whole run.
	recs.checkAll(h, func(r loadRec) bool { return r.status != 0 },
		"every request got an HTTP response: no timeout, no dropped connection")
	h.check(recs.slowest() <= maxLatency, "no request hung: the slowest of %d took %s (bound %s)", len(recs), recs.slowest().Round(time.Millisecond), maxLatency)
	recs.checkAll(h, func(r loadRec) bool { return r.status < 500 || r.status == 503 }, "no 5xx other than 503")
	allowed := map[string][]int{"device": {200, 503}, "list": {200, 503}, "check": {200}, "ready": {200, 503}}
	recs.checkAll(h, func(r loadRec) bool { return r.status == 0 || slices.Contains(allowed[r.kind], r.status) },
		"only expected statuses: device reports, list reads and /readyz 200 or 503, update checks 200")
	devOK := recs.where("device", func(r loadRec) bool { return r.status == 200 })
	devOK.checkAll(h, func(r loadRec) bool { return r.bodyOK },
		"every 200 to a device report echoed its SessionID, DeviceMac, bare AppVersion and TargetABI")
	recs.where("device", func(r loadRec) bool { return r.end.Before(tl.stopBegin) }).checkAll(h, func(r loadRec) bool { return r.status == 200 },
		"before the stop, every device report was answered 200")
	outageVerifyRecovery(h, recs, devOK, tl)
}

// outageVerifyRecovery checks that service came back, promptly, without a
// server restart.
func outageVerifyRecovery(h *harness, recs, devOK loadRecs, tl outageTimeline) {
	var recovered time.Time
	for _, r := range devOK {
		if r.end.After(tl.acceptAt) && (recovered.IsZero() || r.end.Before(recovered)) {
			recovered = r.end
		}
	}
	if recovered.IsZero() {
		h.fail("no device report succeeded after PostgreSQL came back")
		return
	}
	took := recovered.Sub(tl.acceptAt)
	when := fmt.Sprintf("%s after PostgreSQL accepted this tool's first connection", took.Round(time.Millisecond))
	if took < 0 {
		when = fmt.Sprintf("%s before this tool's own probe connected", (-took).Round(time.Millisecond))
	}
	h.check(took <= maxRecovery, "service recovered without a server restart: the first device report succeeded %s after pg_ctl start began, %s (bound %s)",
		recovered.Sub(tl.downTo).Round(time.Millisecond), when, maxRecovery)
	recs.where("", func(r loadRec) bool { return r.start.After(recovered) }).checkAll(h, func(r loadRec) bool { return r.status == 200 },
		"after recovery every request of every kind was answered 200 (/readyz included)")
}

// deviceKey is a users row's identity.
type deviceKey struct {
	session int64
	mac     string
}

// deviceRow is what a users row holds.
type deviceRow struct{ version, abi string }

// verifyLedger checks the users table and the uploads counters, by SQL and
// through the API, against what the clients saw.
func verifyLedger(ctx context.Context, rg *rig, l *outageLoad, ids map[releaseKey]int64, tl outageTimeline) error {
	h := rg.h
	var devs []*ledgerDevice
	counts := map[outcome]int{}
	for _, d := range l.devices {
		d.attempts = d.attempts[:0]
		for i, r := range d.raw {
			o := classify(r.status, r.start, r.end, tl.downFrom, tl.downTo)
			counts[o]++
			d.attempts = append(d.attempts, attempt{version: d.versions[i], outcome: o})
		}
		devs = append(devs, d.ledgerDevice)
	}
	conn, err := rg.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows := map[deviceKey]deviceRow{}
	var k deviceKey
	var r deviceRow
	q, _ := conn.Query(ctx, "SELECT session_id, device_mac, COALESCE(app_version, ''), COALESCE(target_abi, '') FROM users")
	total, err := pgx.ForEachRow(q, []any{&k.session, &k.mac, &r.version, &r.abi}, func() error {
		rows[k] = r
		return nil
	})
	if err != nil {
		return err
	}
	h.check(int(total.RowsAffected()) == len(rows), "SQL: users holds one row per (SessionID, DeviceMac): %d rows, %d distinct devices", total.RowsAffected(), len(rows))
	var outageRows int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM apps WHERE app_version = '3002_00'").Scan(&outageRows); err != nil {
		return err
	}
	h.check(outageRows == 0, "SQL: the upload refused during the outage left no row (%d)", outageRows)
	resolve := resolverOf(ids)
	st := settle(devs, resolve, maxUnknownExact, nil)
	// For the counters: only the commits that explain each row.
	stRows := settle(devs, resolve, maxUnknownExact, func(i int) observation {
		r, ok := rows[deviceKey{devs[i].session, devs[i].mac}]
		return observation{found: ok, version: r.version}
	})
	h.info("ledger: %d devices, %d reports: %d acknowledged (200), %d refused (503 while the database was down throughout: not committed), %d unknown (503 or error across the stop or the start: may have committed)",
		len(devs), counts[acked]+counts[refused]+counts[unknown], counts[acked], counts[refused], counts[unknown])
	verifyDeviceRows(h, devs, st, rows)
	uploads := map[releaseKey]int64{}
	var rk releaseKey
	var n int64
	q, _ = conn.Query(ctx, "SELECT app_version, COALESCE(target_abi, ''), COALESCE(uploads, 0) FROM apps")
	if _, err := pgx.ForEachRow(q, []any{&rk.version, &rk.abi, &n}, func() error {
		uploads[rk] = n
		return nil
	}); err != nil {
		return err
	}
	verifyUploadCounts(h, ids, st, stRows, uploads)
	verifyAPIAgrees(ctx, rg, rows, uploads, len(ids))
	rg.verifyNoErrors()
	return nil
}

// verifyDeviceRows checks each device's row against the states its reports
// allow.
func verifyDeviceRows(h *harness, devs []*ledgerDevice, st settlement, rows map[deviceKey]deviceRow) {
	var exactBad, unsureBad, ghostBad []string
	exactN, unsureN, ackedN, definite := 0, 0, 0, 0
	known := map[deviceKey]bool{}
	for i, d := range devs {
		k := deviceKey{d.session, d.mac}
		known[k] = true
		e := st.devices[i]
		r, found := rows[k]
		ok := (found || !e.mustExist) && (!found || e.mayExist) && (!found || (e.finals[r.version] && r.abi == d.rowABI))
		desc := func() string {
			got := "no row"
			if found {
				got = fmt.Sprintf("row %s/%q", r.version, r.abi)
			}
			return fmt.Sprintf("device %d/%s: %s, want one of %v (ABI %q), must exist %t; reports %v", d.session, d.mac, got, slices.Sorted(maps.Keys(e.finals)), d.rowABI, e.mustExist, d.attempts)
		}
		if e.mustExist {
			ackedN++
		}
		if e.definite {
			definite++
		}
		switch {
		case !e.mayExist:
			if found {
				ghostBad = append(ghostBad, desc())
			}
		case e.definite:
			exactN++
			if !ok {
				exactBad = append(exactBad, desc())
			}
		default:
			unsureN++
			if !ok {
				unsureBad = append(unsureBad, desc())
			}
		}
	}
	h.info("ledger: %d devices have only definite outcomes (one possible state); %d have unknown reports, settled by trying every subset of them; %d were bounded loosely",
		definite, st.exhaustive, st.approximated)
	h.check(len(exactBad) == 0, "SQL: each of the %d devices with only definite outcomes has its row with exactly its last acknowledged version and its ABI%s", exactN, firstLine(exactBad))
	h.check(len(unsureBad) == 0, "SQL: each of the %d devices with unknown reports has a row only if one may have committed, holding its last acknowledged version or a later unknown one%s", unsureN, firstLine(unsureBad))
	h.check(len(ghostBad) == 0, "SQL: devices whose every report was refused during the outage have no row%s", firstLine(ghostBad))
	var strangers []string
	for k := range rows {
		if !known[k] {
			strangers = append(strangers, fmt.Sprintf("%d/%s", k.session, k.mac))
		}
	}
	h.check(len(strangers) == 0, "SQL: no row belongs to a device that was never reported (%d rows, %d devices had an acknowledged report)%s", len(rows), ackedN, firstLine(strangers))
}

// verifyUploadCounts checks each release's uploads counter against the
// (device, version) transitions the reports and the rows allow.
func verifyUploadCounts(h *harness, ids map[releaseKey]int64, st, stRows settlement, uploads map[releaseKey]int64) {
	for k := range ids {
		for _, m := range []map[releaseKey]span{st.uploads, stRows.uploads} {
			if _, ok := m[k]; !ok {
				m[k] = span{}
			}
		}
	}
	for _, k := range sortedKeys(st.uploads) {
		open, want, got := st.uploads[k], stRows.uploads[k], uploads[k]
		name := k.version
		if k.abi != "" {
			name += " (" + k.abi + ")"
		} else {
			name += " (universal)"
		}
		between := fmt.Sprintf("from the reports alone %d..%d", open.min, open.max)
		if open.min == open.max {
			between = "the reports alone give the same"
		}
		if want.min == want.max {
			h.check(got == want.min && open.min <= got && got <= open.max,
				"SQL: apps.uploads of %s is %d: exactly the (device, version) transitions derived from the acknowledged reports and the devices' rows (%s)", name, got, between)
		} else {
			h.check(want.min <= got && got <= want.max && open.min <= got && got <= open.max,
				"SQL: apps.uploads of %s is %d: within %d..%d, the transitions the reports and rows allow (%s; the spread is reports of unknown outcome)", name, got, want.min, want.max, between)
		}
	}
}

// verifyAPIAgrees checks that the API lists the same devices and counters
// as SQL.
func verifyAPIAgrees(ctx context.Context, rg *rig, rows map[deviceKey]deviceRow, uploads map[releaseKey]int64, releases int) {
	h := rg.h
	var apiUsers []userJSON
	if err := getJSON(ctx, rg.c, rg.s.URL+"/api/v1/users", h.admin, &apiUsers); err != nil {
		h.fail("API: GET /api/v1/users: %v", err)
	} else {
		var diff []string
		seen := map[deviceKey]bool{}
		for _, u := range apiUsers {
			k := deviceKey{u.SessionID, u.DeviceMac}
			seen[k] = true
			if r, ok := rows[k]; !ok || r.version != u.AppVersion || r.abi != u.TargetABI {
				diff = append(diff, fmt.Sprintf("%d/%s: API %s/%q, SQL %+v (present %t)", u.SessionID, u.DeviceMac, u.AppVersion, u.TargetABI, r, ok))
			}
		}
		for k := range rows {
			if !seen[k] {
				diff = append(diff, fmt.Sprintf("%d/%s missing from the API", k.session, k.mac))
			}
		}
		h.check(len(diff) == 0 && len(apiUsers) == len(rows), "API: GET /api/v1/users lists the same %d devices with the same versions and ABIs as SQL%s", len(apiUsers), firstLine(diff))
	}
	var apiRels []releaseJSON
	if err := getJSON(ctx, rg.c, rg.s.URL+"/api/v1/updates", h.admin, &apiRels); err != nil {
		h.fail("API: GET /api/v1/updates: %v", err)
		return
	}
	var diff []string
	for _, r := range apiRels {
		k := releaseKey{r.Version, r.TargetABI}
		if r.Uploads != uploads[k] {
			diff = append(diff, fmt.Sprintf("%s %q: API %d, SQL %d", r.Version, r.TargetABI, r.Uploads, uploads[k]))
		}
	}
	h.check(len(diff) == 0 && len(apiRels) == releases, "API: GET /api/v1/updates shows the same Uploads as SQL for all %d releases%s", len(apiRels), firstLine(diff))
}
