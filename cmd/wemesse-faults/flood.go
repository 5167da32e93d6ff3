package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wemesse/server/internal/proctest"
)

// Settings of the flood scenario's server.
const (
	floodMaxUpload     = 1 << 20 // WEMESSE_MAX_UPLOAD_BYTES: oversized uploads are cheap to send
	floodHeaderTimeout = 2 * time.Second
	floodStall         = 3 * time.Second
	floodWorkers       = 8
	slowlorisConns     = 32
	stalledBodies      = 8
	closeSlack         = 3 * time.Second // past a timeout, for the server to drop a connection
)

// garbage is one kind of malformed request.
type garbage struct {
	name    string
	allowed []int // the statuses it may get; all 4xx
	// protocol: malformed HTTP, which net/http answers itself before any
	// handler runs (text/plain) or by closing the connection.
	protocol bool
	mayClose bool // the server may close the connection without answering
	send     func(ctx context.Context, f *flood, rng *rand.Rand) response
}

// flood is what the garbage senders need.
type flood struct {
	c             *http.Client
	base, addr    string
	admin, client string
	existing      string // a version that exists: uploading it again conflicts
	seq           atomic.Int64
}

// floodOutcome is one garbage request and how it was answered.
type floodOutcome struct {
	kind *garbage
	r    response
}

func (f *flood) post(ctx context.Context, path, secret, contentType string, body []byte) response {
	return do(ctx, f.c, "POST", f.base+path, secret, contentType, body, 5*time.Second)
}

// rawExchange writes payload on a new connection (then closes our write
// side if halfClose) and reads one response, within timeout.
func rawExchange(ctx context.Context, addr string, payload []byte, halfClose bool, timeout time.Duration) (r response) {
	r.start = time.Now()
	defer func() { r.end = time.Now() }()
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		r.err = err
		return r
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	go func() {
		if _, err := conn.Write(payload); err == nil && halfClose {
			conn.(*net.TCPConn).CloseWrite()
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		r.err = err
		return r
	}
	defer resp.Body.Close()
	r.status, r.header = resp.StatusCode, resp.Header
	r.body, _ = io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return r
}

// pick returns a random element.
func pick[T any](rng *rand.Rand, xs ...T) T { return xs[rng.IntN(len(xs))] }

// validReport is a device report that the server accepts.
func validReport(session int64, version string) []byte {
	b, _ := json.Marshal(map[string]any{"SessionID": session, "DeviceMac": "02:00:00:00:00:01", "AppVersion": version,
		"AppLocale": "en", "DeviceLocale": "en-us", "DeviceModel": "faults", "DeviceSDK": "SDK 34", "TgVersion": "10.0"})
	return b
}

// garbageKinds lists the malformed requests of the flood.
func garbageKinds() []*garbage {
	nested := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	return []*garbage{
		{name: "invalid JSON in a device report", allowed: []int{400}, send: func(ctx context.Context, f *flood, rng *rand.Rand) response {
			body := pick(rng, `{"SessionID":`, `not json at all`, `{"SessionID": 1,,}`, "\x00\xff\xfe\xfd", `[1,2,3]`, `"a string"`,
				`{"SessionID":1,"AppVersion":"3000_01"}{"x":2}`, `{"SessionID":1,"AppVersion":"3000_01"}]`, `{"SessionID": 1e400}`, nested,
				`{"AppVersion":"3000_01"}`, `{"SessionID":1,"AppVersion":"3000_01","DeviceMac":"m\u0000"}`, ``, `{"SessionID":1,"AppVersion":"3000_01","DeviceModel":"`+strings.Repeat("x", 300)+`"}`)
			return f.post(ctx, "/api/v1/users", f.client, "application/json", []byte(body))
		}},
		{name: "wrong JSON types in a device report", allowed: []int{400}, send: func(ctx context.Context, f *flood, rng *rand.Rand) response {
			body := pick(rng, `{"SessionID":"abc","AppVersion":"3000_01"}`, `{"SessionID":1.5,"AppVersion":"3000_01"}`, `{"SessionID":1,"AppVersion":3000}`,
				`{"SessionID":99999999999999999999999,"AppVersion":"3000_01"}`, `{"SessionID":true}`, `{"SessionID":1,"AppVersion":["3000_01"]}`, `{"SessionID":{"a":1}}`)
			return f.post(ctx, "/api/v1/users", f.client, "application/json", []byte(body))
		}},
		{name: "invalid version or ABI in a device report", allowed: []int{400}, send: func(ctx context.Context, f *flood, rng *rand.Rand) response {
			v := pick(rng, "", "abc", "1__2", "_1", "1.", "3000_01mips", strings.Repeat("9", 65), "3000_01arm64x86", "٣٠٠٠", "1_2_3_4_5_6_7_8_9", "3000 01")
			m := map[string]any{"SessionID": 7, "DeviceMac": "m", "AppVersion": v}
			if rng.IntN(3) == 0 {
				m["AppVersion"], m["TargetABI"] = pick(rng, "3000_01", "3000_01x86"), pick(rng, "mips", "ARM64", "arm64")
				if m["TargetABI"] == "arm64" {
					m["AppVersion"] = "3000_01x86" // contradicts TargetABI
				}
			}
			body, _ := json.Marshal(m)
			return f.post(ctx, "/api/v1/users", f.client, "application/json", body)
		}},
		{name: "oversized JSON body (100 KB)", allowed: []int{413}, send: func(ctx context.Context, f *flood, rng *rand.Rand) response {
			body := `{"SessionID":1,"AppVersion":"3000_01","DeviceModel":"` + strings.Repeat("x", 100<<10) + `"}`
			return f.post(ctx, "/api/v1/users", f.client, "application/json", []byte(body))
		}},
		{name: "missing, wrong or malformed signature", allowed: []int{401, 429}, send: func(ctx context.Context, f *flood, rng *rand.Rand) response {
			req, _ := http.NewRequestWithContext(ctx, "POST", f.base+"/api/v1/users", bytes.NewReader(validReport(9, "3000_01")))
			switch rng.IntN(5) {
			case 1:
				req.Header.Set("signature", proctest.NewSecret(32))
			case 2:
				req.Header.Set("Authorization", "Basic "+proctest.NewSecret(12))
			case 3:
				req.Header.Set("Authorization", "Bearer "+strings.Repeat("A", 600))
			case 4:
				req.Header.Set("signature", f.client[:len(f.client)-1])
			}
			return doReq(f.c, req)
		}},
		{name: "client secret on an admin endpoint", allowed: []int{403, 405}, send: func(ctx context.Context, f *flood, rng *rand.Rand) response {
			return do(ctx, f.c, pick(rng, "GET", "POST"), f.base+pick(rng, "/api/v1/updates", "/api/v1/stats"), f.client, "application/json", []byte("{}"), 5*time.Second)
		}},
		{name: "wrong content type for an upload", allowed: []int{400, 415}, send: func(ctx context.Context, f *flood, rng *rand.Rand) response {
			ct := pick(rng, "application/json", "text/plain", "multipart/mixed; boundary=x", "", "multipart/form-data",
				"multipart/form-data; boundary=", "application/x-www-form-urlencoded", "multipart/form-data; boundary=\"unterminated")
			return f.post(ctx, "/api/v1/updates", f.admin, ct, []byte("appVersion=6000_01&tmpFile=abc"))
		}},
		{name: "truncated multipart upload", allowed: []int{400}, send: func(ctx context.Context, f *flood, rng *rand.Rand) response {
			file, _ := randomData(rng.Uint64(), 64<<10)
			ct, body := multipartBody([][2]string{{"appVersion", fmt.Sprintf("6000_%d", f.seq.Add(1))}}, "cut.apk", file)
			cut := 10 + rng.IntN(len(body)-80)
			return f.post(ctx, "/api/v1/updates", f.admin, ct, body[:cut])
		}},
		{name: "truncated multipart upload, connection half-closed", allowed: []int{400}, mayClose: true, send: func(ctx context.Context, f *flood, rng *rand.Rand) response {
			file, _ := randomData(rng.Uint64(), 32<<10)
			ct, body := multipartBody([][2]string{{"appVersion", fmt.Sprintf("6000_%d", f.seq.Add(1))}}, "half.apk", file)
			head := fmt.Sprintf("POST /api/v1/updates HTTP/1.1\r\nHost: %s\r\nsignature: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", f.addr, f.admin, ct, len(body))
			return rawExchange(ctx, f.addr, append([]byte(head), body[:len(body)/2]...), true, 5*time.Second)
		}},
		{name: "invalid upload fields", allowed: []int{400, 409}, send: func(ctx context.Context, f *flood, rng *rand.Rand) response {
			v := fmt.Sprintf("6000_%d", f.seq.Add(1))
			file := []byte("not really an apk")
			fields := [][2]string{{"appVersion", v}}
			switch rng.IntN(10) {
			case 0:
				fields[0][1] = pick(rng, "abc", v+"arm64", "", " ", "1__2", strings.Repeat("1", 70))
			case 1:
				fields = nil
			case 2:
				file = nil
			case 3:
				file = []byte{}
			case 4:
				fields = append(fields, [2]string{"appVersion", v + "1"})
			case 5:
				fields = append(fields, [2]string{"rollout", pick(rng, "0", "101", "abc", "-5", "1.5")})
			case 6:
				fields = append(fields, [2]string{"targetABI", pick(rng, "mips", "ARM64", "x86-64")})
			case 7:
				fields[0][1] = f.existing
			case 8:
				fields = append(fields, [2]string{"appNotes", strings.Repeat("n", 70<<10)})
			case 9:
				fields = append(fields, [2]string{"appNotes", "\xff\xfe"})
			}
			ct, body := multipartBody(fields, "x.apk", file)
			r := f.post(ctx, "/api/v1/updates", f.admin, ct, body)
			r.variant = fmt.Sprintf("fields %q, file of %d bytes", fields, len(file))
			if file == nil {
				r.variant = fmt.Sprintf("fields %q, no file", fields)
			}
			return r
		}},
		{name: "invalid version in an update check", allowed: []int{400, 404}, send: func(ctx context.Context, f *flood, rng *rand.Rand) response {
			v := pick(rng, "abc", "1__2", strings.Repeat("9", 100), "2267_00armv9", "_1", "1.", "%00", "1%2F2", "-1", "1e5", "%ff%fe", "3000_01?device="+strings.Repeat("d", 300))
			return do(ctx, f.c, "GET", f.base+"/api/v1/updates/"+v, "", "", nil, 5*time.Second)
		}},
		{name: "unknown route, wrong method or bad id", allowed: []int{400, 404, 405}, send: func(ctx context.Context, f *flood, rng *rand.Rand) response {
			type rq struct{ method, path, secret, body string }
			q := pick(rng,
				rq{"PUT", "/api/v1/users", f.client, "{}"}, rq{"DELETE", "/healthz", "", ""}, rq{"GET", "/api/v2/updates", "", ""},
				rq{"POST", "/api/v1/updates/1", f.admin, "{}"}, rq{"GET", "/uploads/../../../../etc/passwd", "", ""},
				rq{"GET", "/uploads/.staging/upload-1", "", ""}, rq{"PATCH", "/api/v1/updates/abc", f.admin, `{"Rollout":50}`},
				rq{"PATCH", "/api/v1/updates/999999", f.admin, `{"Rollout":50}`}, rq{"DELETE", "/api/v1/updates/999999?purge=maybe", f.admin, ""},
				rq{"PATCH", "/api/v1/updates/1", f.admin, `{"Rollout":0}`}, rq{"PATCH", "/api/v1/updates/1", f.admin, `{"Rollout":"x"}`},
				rq{"GET", "/api/v1/users?limit=abc", f.admin, ""}, rq{"GET", "/api/v1/users?after=-1", f.admin, ""},
				rq{"GET", "/api/v1/users?limit=0", f.admin, ""}, rq{"GET", "/" + strings.Repeat("long/", 4000), "", ""})
			var body []byte
			if q.body != "" {
				body = []byte(q.body)
			}
			return do(ctx, f.c, q.method, f.base+q.path, q.secret, "application/json", body, 5*time.Second)
		}},
		{name: "header near the limit (60 KB signature)", allowed: []int{401, 429}, send: func(ctx context.Context, f *flood, rng *rand.Rand) response {
			return f.post(ctx, "/api/v1/users", strings.Repeat("s", 60<<10), "application/json", validReport(11, "3000_01"))
		}},
		{name: "huge header (100 KB)", allowed: []int{431}, protocol: true, mayClose: true, send: func(ctx context.Context, f *flood, rng *rand.Rand) response {
			head := fmt.Sprintf("GET /api/v1/updates/1 HTTP/1.1\r\nHost: %s\r\nX-Huge: %s\r\n\r\n", f.addr, strings.Repeat("h", 100<<10))
			return rawExchange(ctx, f.addr, []byte(head), false, 5*time.Second)
		}},
		{name: "random bytes on raw TCP", allowed: []int{400}, protocol: true, mayClose: true, send: func(ctx context.Context, f *flood, rng *rand.Rand) response {
			b := make([]byte, 64+rng.IntN(4096))
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			return rawExchange(ctx, f.addr, b, rng.IntN(2) == 0, 5*time.Second)
		}},
		{name: "malformed request line or headers", allowed: []int{400}, protocol: true, mayClose: true, send: func(ctx context.Context, f *flood, rng *rand.Rand) response {
			p := pick(rng,
				"GET /\r\n\r\n", "GET / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n",
				"GET / HTTP/1.1\r\nHost: a\r\nHo\x01st: b\r\n\r\n", "GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n",
				"POST /api/v1/users HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
				"POST /api/v1/users HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n",
				"GET  HTTP/1.1\r\nHost: a\r\n\r\n", "\r\n\r\n\r\nGET")
			return rawExchange(ctx, f.addr, []byte(p), true, 5*time.Second)
		}},
		{name: "broken chunked body", allowed: []int{400}, mayClose: true, send: func(ctx context.Context, f *flood, rng *rand.Rand) response {
			body := pick(rng, "zz\r\n{}\r\n0\r\n\r\n", "5\r\n{\"Ses\r\n", "ffffffffffffffffff\r\n{", "3\r\n{}x\r\n0\r\n\r\n")
			head := fmt.Sprintf("POST /api/v1/users HTTP/1.1\r\nHost: %s\r\nsignature: %s\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n", f.addr, f.client)
			return rawExchange(ctx, f.addr, []byte(head+body), true, 5*time.Second)
		}},
		{name: "oversized upload (3 MiB file, limit 1 MiB)", allowed: []int{413}, mayClose: true, send: func(ctx context.Context, f *flood, rng *rand.Rand) response {
			file, _ := randomData(rng.Uint64(), 3<<20)
			ct, body := multipartBody([][2]string{{"appVersion", fmt.Sprintf("6000_%d", f.seq.Add(1))}}, "big.apk", file)
			req, _ := http.NewRequestWithContext(ctx, "POST", f.base+"/api/v1/updates", io.MultiReader(bytes.NewReader(body))) // chunked: no length
			if rng.IntN(2) == 0 {
				req, _ = http.NewRequestWithContext(ctx, "POST", f.base+"/api/v1/updates", bytes.NewReader(body))
			}
			req.Header.Set("Content-Type", ct)
			req.Header.Set("signature", f.admin)
			return doReq(f.c, req)
		}},
		{name: "upload declaring a 10 GiB Content-Length", allowed: []int{413}, mayClose: true, send: func(ctx context.Context, f *flood, rng *rand.Rand) response {
			head := fmt.Sprintf("POST /api/v1/updates HTTP/1.1\r\nHost: %s\r\nsignature: %s\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: %d\r\n\r\n--x\r\n",
				f.addr, f.admin, int64(10)<<30)
			return rawExchange(ctx, f.addr, []byte(head), false, 5*time.Second)
		}},
	}
}

// doReq sends a prepared request with a 5 s deadline and reads the answer.
func doReq(c *http.Client, req *http.Request) response {
	r := response{start: time.Now()}
	ctx, cancel := context.WithTimeout(req.Context(), 5*time.Second)
	defer cancel()
	resp, err := c.Do(req.WithContext(ctx))
	if err != nil {
		r.err, r.end = err, time.Now()
		return r
	}
	defer resp.Body.Close()
	r.status, r.header = resp.StatusCode, resp.Header
	r.body, r.err = io.ReadAll(io.LimitReader(resp.Body, maxBody))
	r.end = time.Now()
	return r
}

// held is how a deliberately slow connection ended.
type held struct {
	took   time.Duration
	status int // a response, if any
	closed bool
}

// slowConn opens a connection, writes head, then dribbles one byte of
// trickle every 300 ms (none when trickle is 0) until the server answers or
// closes, or limit passes.
func slowConn(ctx context.Context, addr, head string, trickle byte, limit time.Duration) held {
	start := time.Now()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return held{took: time.Since(start)}
	}
	defer conn.Close()
	conn.SetReadDeadline(start.Add(limit))
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		if _, err := io.WriteString(conn, head); err != nil || trickle == 0 {
			return
		}
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-time.After(300 * time.Millisecond):
			}
			if _, err := conn.Write([]byte{trickle}); err != nil {
				return
			}
		}
	}()
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	h := held{took: time.Since(start)}
	if err == nil {
		h.status = resp.StatusCode
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return h
	}
	var ne net.Error
	h.closed = !(errors.As(err, &ne) && ne.Timeout())
	return h
}

func runFlood(ctx context.Context, h *harness) error {
	rg, err := h.newRig(ctx, "flood", true, map[string]string{
		"WEMESSE_MAX_UPLOAD_BYTES":    strconv.Itoa(floodMaxUpload),
		"WEMESSE_READ_HEADER_TIMEOUT": floodHeaderTimeout.String(),
		"WEMESSE_STALL_TIMEOUT":       floodStall.String(),
	})
	if err != nil {
		return err
	}
	defer rg.close()
	h.info("server pid %d on %s, database %s, WEMESSE_MAX_UPLOAD_BYTES=%d, WEMESSE_READ_HEADER_TIMEOUT=%s, WEMESSE_STALL_TIMEOUT=%s",
		rg.s.Pid(), rg.s.URL, rg.db, floodMaxUpload, floodHeaderTimeout, floodStall)
	if err := floodSetup(ctx, rg); err != nil {
		return err
	}
	base, err := rg.s.Memory()
	if err != nil {
		return err
	}
	res := floodInject(ctx, rg, base)
	floodVerifyAnswers(h, res)
	floodVerifyHeld(h, res)
	return floodVerifyAfter(ctx, rg, base, res.peak)
}

// floodSetup uploads release 7000_01 and reports a device, so that both
// secrets are cached.
func floodSetup(ctx context.Context, rg *rig) error {
	h, c, s := rg.h, rg.c, rg.s
	data, _ := randomData(700, 64<<10)
	if r, _ := upload(ctx, c, s.URL, h.admin, "7000_01", "", "wemesse.apk", data); r.status != http.StatusCreated {
		h.fail("setup: upload 7000_01: %s", r.describe())
		return fmt.Errorf("setup failed")
	}
	if r := do(ctx, c, "POST", s.URL+"/api/v1/users", rg.client, "application/json", validReport(1, "7000_01"), 5*time.Second); r.status != 200 {
		h.fail("setup: a valid device report: %s", r.describe())
		return fmt.Errorf("setup failed")
	}
	h.pass("setup: release 7000_01 uploaded (201) and a valid device report answered 200; both secrets are now cached")
	return nil
}

// floodResult is what the flood saw.
type floodResult struct {
	kinds         []*garbage
	outcomes      []floodOutcome
	peak          int64 // highest VmRSS sampled, kB
	slow, stalled []held
	during        response // a valid update check in the middle of it
}

// floodInject sends garbage from floodWorkers goroutines for -flood, with
// slowloris connections and stalled bodies meanwhile, and samples the
// server's memory.
func floodInject(ctx context.Context, rg *rig, base proctest.Memory) floodResult {
	h, c, s := rg.h, rg.c, rg.s
	res := floodResult{kinds: garbageKinds()}
	f := &flood{c: c, base: s.URL, addr: s.Addr(), admin: h.admin, client: rg.client, existing: "7000_01"}
	kinds := res.kinds
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.name
	}
	h.inject("%d goroutines send malformed requests for %s, each picking at random among: %s",
		floodWorkers, h.opts.flood, strings.Join(names, "; "))
	h.inject("meanwhile %d slowloris connections dribble a header byte every 300ms, and %d device reports stall after 9 bytes of their body",
		slowlorisConns, stalledBodies)

	floodCtx, stopFlood := context.WithTimeout(ctx, h.opts.flood)
	defer stopFlood()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range floodWorkers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w)+77, 0xf100d))
			var mine []floodOutcome
			for floodCtx.Err() == nil {
				k := kinds[rng.IntN(len(kinds))]
				mine = append(mine, floodOutcome{kind: k, r: k.send(ctx, f, rng)})
			}
			mu.Lock()
			res.outcomes = append(res.outcomes, mine...)
			mu.Unlock()
		})
	}
	// Peak resident set while the flood lasts.
	var peak atomic.Int64
	peak.Store(base.RSSKB)
	wg.Go(func() {
		for floodCtx.Err() == nil {
			if m, err := s.Memory(); err == nil && m.RSSKB > peak.Load() {
				peak.Store(m.RSSKB)
			}
			sleepCtx(floodCtx, 50*time.Millisecond)
		}
	})
	limit := floodHeaderTimeout + closeSlack
	res.slow = make([]held, slowlorisConns)
	slow := res.slow
	var slowWG sync.WaitGroup
	for i := range slow {
		slowWG.Go(func() {
			slow[i] = slowConn(ctx, s.Addr(), "GET /api/v1/updates/1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", 'a', limit+5*time.Second)
		})
	}
	res.stalled = make([]held, stalledBodies)
	stalled := res.stalled
	for i := range stalled {
		slowWG.Go(func() {
			head := fmt.Sprintf("POST /api/v1/users HTTP/1.1\r\nHost: 127.0.0.1\r\nsignature: %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"Session", rg.client)
			stalled[i] = slowConn(ctx, s.Addr(), head, 0, floodStall+closeSlack+5*time.Second)
		})
	}
	time.Sleep(500 * time.Millisecond)
	res.during = do(ctx, c, "GET", s.URL+"/api/v1/updates/1", "", "", nil, 5*time.Second)
	wg.Wait()
	slowWG.Wait()
	res.peak = peak.Load()
	return res
}

// floodVerifyAnswers checks the answers to the garbage: 4xx each as its
// kind allows, as JSON past the HTTP parser, none dropped.
func floodVerifyAnswers(h *harness, res floodResult) {
	type tally struct {
		statuses map[int]int
		closed   int
	}
	per := map[*garbage]*tally{}
	var fiveXX, accepted, wrongStatus, notJSON, dropped []string
	protoPlain := 0
	for _, o := range res.outcomes {
		t := per[o.kind]
		if t == nil {
			t = &tally{statuses: map[int]int{}}
			per[o.kind] = t
		}
		r := o.r
		ex := fmt.Sprintf("%s → %s", o.kind.name, r.describe())
		if r.variant != "" {
			ex = fmt.Sprintf("%s (%s) → %s", o.kind.name, r.variant, r.describe())
		}
		if r.status == 0 {
			t.closed++
			if !o.kind.mayClose {
				dropped = append(dropped, ex)
			}
			continue
		}
		t.statuses[r.status]++
		_, isJSON := jsonError(r.header.Get("Content-Type"), r.body)
		switch {
		case r.status >= 500:
			fiveXX = append(fiveXX, ex)
		case r.status < 400:
			accepted = append(accepted, ex)
		case !slices.Contains(o.kind.allowed, r.status):
			wrongStatus = append(wrongStatus, ex)
		}
		if r.status >= 400 && !isJSON {
			if o.kind.protocol {
				protoPlain++
			} else {
				notJSON = append(notJSON, ex)
			}
		}
		if strings.Contains(string(r.body), "root:") {
			accepted = append(accepted, ex+" (served /etc/passwd!)")
		}
	}
	for _, k := range res.kinds {
		t := per[k]
		if t == nil {
			h.info("%-52s not drawn", k.name)
			continue
		}
		var parts []string
		for _, st := range slices.Sorted(maps.Keys(t.statuses)) {
			parts = append(parts, fmt.Sprintf("%d×%d", t.statuses[st], st))
		}
		if t.closed > 0 {
			parts = append(parts, fmt.Sprintf("%d closed without an answer", t.closed))
		}
		h.info("%-52s %s", k.name, strings.Join(parts, ", "))
	}
	h.check(len(res.outcomes) > 0 && len(fiveXX) == 0, "no 5xx in %d answers to garbage (the database is up, so not even 503)%s", len(res.outcomes), ex(fiveXX))
	h.check(len(accepted) == 0, "no garbage was accepted: no 2xx or 3xx%s", ex(accepted))
	h.check(len(wrongStatus) == 0, "each kind of garbage got only its expected 4xx (400, 401/429, 403, 404, 405, 409, 413, 415, 431 as listed per kind)%s", ex(wrongStatus))
	h.check(len(notJSON) == 0, "every error from the API (everything past the HTTP parser) was a JSON {\"error\": \"...\"}%s", ex(notJSON))
	h.check(len(dropped) == 0, "every well-formed request was answered: no dropped connection where an answer is due%s", ex(dropped))
	if protoPlain > 0 {
		h.note("%d answers to malformed HTTP (request line, header bytes, a header over the server's 64 KB MaxHeaderBytes) came from Go's net/http parser before any handler runs: fixed text/plain bodies such as \"400 Bad Request\" and \"431 Request Header Fields Too Large\", not JSON. The server cannot shape these without replacing the parser; they are 4xx as they must be", protoPlain)
	}
	h.check(res.during.status == 200 && res.during.elapsed() < 2*time.Second, "during the flood and slowloris, a valid update check was answered 200 in %s", res.during.elapsed().Round(time.Millisecond))
}

// ex gives up to three examples for a report line.
func ex(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return fmt.Sprintf("; e.g. %s", strings.Join(s[:min(len(s), 3)], " | "))
}

// floodVerifyHeld checks that the server closed the slowloris connections
// and the stalled bodies within its timeouts.
func floodVerifyHeld(h *harness, res floodResult) {
	slow, stalled := res.slow, res.stalled
	limit := floodHeaderTimeout + closeSlack
	var slowBad []string
	for _, x := range slow {
		if !x.closed || x.took > limit {
			slowBad = append(slowBad, fmt.Sprintf("%+v", x))
		}
	}
	slowest := time.Duration(0)
	for _, x := range slow {
		slowest = max(slowest, x.took)
	}
	h.check(len(slowBad) == 0, "each of %d slowloris connections was closed by the server (no answer) within WEMESSE_READ_HEADER_TIMEOUT %s + %s; the last after %s%s",
		len(slow), floodHeaderTimeout, closeSlack, slowest.Round(time.Millisecond), ex(slowBad))
	var stallBad []string
	slowest = 0
	for _, x := range stalled {
		slowest = max(slowest, x.took)
		if !(x.closed || (x.status >= 400 && x.status < 500)) || x.took > floodStall+closeSlack {
			stallBad = append(stallBad, fmt.Sprintf("%+v", x))
		}
	}
	h.check(len(stallBad) == 0, "each of %d stalled request bodies was dropped within WEMESSE_STALL_TIMEOUT %s + %s (4xx or closed); the last after %s%s",
		len(stalled), floodStall, closeSlack, slowest.Round(time.Millisecond), ex(stallBad))

}

// floodVerifyAfter checks the server after the flood: up, its memory
// bounded, serving, and no row or staged file left by the garbage.
func floodVerifyAfter(ctx context.Context, rg *rig, base proctest.Memory, peak int64) error {
	h, c, s := rg.h, rg.c, rg.s
	end, err := s.Memory()
	h.check(err == nil && !s.Exited(), "the server process (pid %d) is still up", s.Pid())
	limitKB := h.opts.rssLimitMB << 10
	h.check(peak < limitKB && end.HWMKB < limitKB, "memory stayed bounded: VmRSS %.1f MB before, peak %.1f MB sampled every 50ms, VmHWM %.1f MB, now %.1f MB (limit %d MB)",
		float64(base.RSSKB)/1024, float64(peak)/1024, float64(end.HWMKB)/1024, float64(end.RSSKB)/1024, h.opts.rssLimitMB)
	r := do(ctx, c, "POST", s.URL+"/api/v1/users", rg.client, "application/json", validReport(2, "7000_01"), 5*time.Second)
	h.check(r.status == 200, "afterwards a valid device report is answered 200 (%s)", r.describe())
	data, _ := randomData(701, 64<<10)
	r, _ = upload(ctx, c, s.URL, h.admin, "7000_02", "", "wemesse.apk", data)
	h.check(r.status == http.StatusCreated, "afterwards a valid upload is answered 201 (%s)", r.describe())
	var rel releaseJSON
	gerr := getJSON(ctx, c, s.URL+"/api/v1/updates/7000_01", "", &rel)
	h.check(gerr == nil && rel.Version == "7000_02", "afterwards the update check offers the new release 7000_02 (%v %s)", gerr, rel.Version)
	r = do(ctx, c, "GET", s.URL+"/readyz", "", "", nil, 5*time.Second)
	h.check(r.status == 200, "afterwards /readyz is 200 (%s)", r.describe())

	conn, err := rg.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	q, _ := conn.Query(ctx, "SELECT app_version FROM apps ORDER BY id")
	versions, err := pgx.CollectRows(q, pgx.RowTo[string])
	if err != nil {
		return err
	}
	q, _ = conn.Query(ctx, "SELECT session_id FROM users ORDER BY session_id")
	users, err := pgx.CollectRows(q, pgx.RowTo[int64])
	if err != nil {
		return err
	}
	h.check(slices.Equal(versions, []string{"7000_01", "7000_02"}) && slices.Equal(users, []int64{1, 2}),
		"SQL: the garbage left no row: apps holds only %v and users only sessions %v", versions, users)
	staged, _ := dirEntries(s.StagingDir())
	h.check(len(staged) == 0, "disk: truncated, oversized and half-closed uploads left no staged file (%v)", staged)
	rg.verifyNoErrors()
	return nil
}
