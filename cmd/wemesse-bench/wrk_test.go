package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// wrkOutput is what wrkReport prints: totals, then quantiles 1..n µs.
func wrkOutput(totals string, n int) string {
	q := make([]string, n)
	for i := range q {
		q[i] = fmt.Sprint(i + 1)
	}
	return "Running 1s test @ http://127.0.0.1:1\n" + totals + "\nwemesse-wrk-latency-us " + strings.Join(q, ",") + "\n"
}

func TestParseWrk(t *testing.T) {
	st, err := parseWrk([]byte(wrkOutput("wemesse-wrk 1000 2000000 1 2 0 10 3", wrkQuantiles)))
	if err != nil {
		t.Fatal(err)
	}
	// 10 of the 1000 answers failed, and 6 requests got none.
	if st.ok != 990 || st.total() != 1006 || st.failed() != 16 {
		t.Errorf("ok %d, total %d, failed %d; want 990 ok of 1006 with 16 failed", st.ok, st.total(), st.failed())
	}
	if st.codes[0] != 16 || st.errors["status >= 400"] != 10 || st.errors["timeout"] != 3 {
		t.Errorf("codes %v, errors %v", st.codes, st.errors)
	}
	if st.elapsed != 2*time.Second || st.rate() != 495 {
		t.Errorf("elapsed %s, rate %v; want 2s, 495", st.elapsed, st.rate())
	}
	if p := st.p(0.5); p != 500*time.Microsecond {
		t.Errorf("p50 = %s, want 500µs", p)
	}
	if p := st.p(0.99); p != 990*time.Microsecond {
		t.Errorf("p99 = %s, want 990µs", p)
	}

	for name, out := range map[string]string{
		"empty":             "",
		"no latencies":      "wemesse-wrk 1 1 0 0 0 0 0\n",
		"no totals":         wrkOutput("", wrkQuantiles),
		"short totals":      wrkOutput("wemesse-wrk 1 1 0 0 0 0", wrkQuantiles),
		"negative":          wrkOutput("wemesse-wrk -1 1 0 0 0 0 0", wrkQuantiles),
		"more failed":       wrkOutput("wemesse-wrk 1 1 0 0 0 2 0", wrkQuantiles),
		"too few quantiles": wrkOutput("wemesse-wrk 1 1 0 0 0 0 0", wrkQuantiles-1),
		"bad quantile":      strings.Replace(wrkOutput("wemesse-wrk 1 1 0 0 0 0 0", wrkQuantiles), ",7,", ",x,", 1),
	} {
		if _, err := parseWrk([]byte(out)); err == nil {
			t.Errorf("%s: parseWrk succeeded, want an error", name)
		}
	}
}

func TestLuaString(t *testing.T) {
	for in, want := range map[string]string{
		``:          `""`,
		`/a?b=c`:    `"/a?b=c"`,
		`"2267_00"`: `"\"2267_00\""`,
		`a\b`:       `"a\\b"`,
		"a\nb\x7f":  `"a\010b\127"`,
	} {
		if got := luaString(in); got != want {
			t.Errorf("luaString(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestWrkGenerator drives real wrk, when installed, with the device
// scenario's script against a handler that checks every request.
func TestWrkGenerator(t *testing.T) {
	path, err := exec.LookPath("wrk")
	if err != nil {
		t.Skip("wrk is not installed (Debian: apt-get install wrk); .ci/run installs it")
	}
	var (
		served atomic.Int64
		mu     sync.Mutex
		bad    []string
		seen   = map[int64]bool{}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			AppVersion string
			SessionID  int64
			DeviceMac  string
		}
		err := json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method != http.MethodPost || r.URL.Path != usersPath:
			bad = append(bad, r.Method+" "+r.URL.Path)
		case r.Header.Get("Signature") != "s3cret" || r.Header.Get("Content-Type") != "application/json":
			bad = append(bad, fmt.Sprint("headers ", r.Header))
		case err != nil || body.AppVersion != benchVersion || len(body.DeviceMac) != 12 ||
			body.SessionID < deviceMinSession || body.SessionID >= 1<<53:
			bad = append(bad, fmt.Sprintf("body %+v: %v", body, err))
		case seen[body.SessionID]:
			bad = append(bad, fmt.Sprint("repeated session ", body.SessionID))
		default:
			seen[body.SessionID] = true
			served.Add(1)
			w.WriteHeader(http.StatusOK)
			return
		}
		http.Error(w, "bad", http.StatusBadRequest)
	}))
	defer srv.Close()

	g := newWrkGenerator(path, 4)
	st, err := g.run(context.Background(), srv.URL, workload{lua: deviceLua(benchVersion), env: map[string]string{deviceSignatureEnv: "s3cret"}}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("%d bad requests, the first: %s", len(bad), bad[0])
	}
	if st.ok == 0 || st.failed() != 0 {
		t.Fatalf("ok %d, failed %d: %s", st.ok, st.failed(), st.describeFailures())
	}
	// wrk counts answers read before it stopped; the server may have
	// answered a few more.
	if n := served.Load(); int64(st.ok) > n || int64(st.ok) < n-int64(g.conns) {
		t.Errorf("wrk counted %d answers, the server sent %d", st.ok, n)
	}
	if st.elapsed < 900*time.Millisecond || st.elapsed > 5*time.Second {
		t.Errorf("elapsed %s for a 1s run", st.elapsed)
	}
	if len(st.latencies) != wrkQuantiles || st.p(0.5) <= 0 || st.p(1) < st.p(0.99) {
		t.Errorf("%d latencies, p50 %s, p99 %s, max %s", len(st.latencies), st.p(0.5), st.p(0.99), st.p(1))
	}

	if _, err := g.run(context.Background(), "http://example.com", workload{lua: "x"}, time.Second); err == nil {
		t.Error("wrk ran against a host that is not 127.0.0.1")
	}
}
