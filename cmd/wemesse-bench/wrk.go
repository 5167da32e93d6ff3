package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/wemesse/server/internal/proctest"
)

// wrkGenerator runs the load with wrk (Debian package wrk): a C
// event loop whose cost per request is a fraction of an HTTP client's in
// Go, so on a small machine more of the cores are left to what is
// measured. A Lua script makes every request (workload.lua); wrkReport
// prints wrk's totals and latency histogram for parseWrk.
type wrkGenerator struct {
	path    string
	conns   int
	threads int
}

func newWrkGenerator(path string, conns int) *wrkGenerator {
	return &wrkGenerator{path: path, conns: conns, threads: min(conns, runtime.NumCPU())}
}

func (g *wrkGenerator) inProcess() bool { return false }

func (g *wrkGenerator) close() {}

// wrkQuantiles is how many latency quantiles wrkReport prints: every 0.1%.
const wrkQuantiles = 1000

// wrkReport is appended to every workload's script. wrk calls done once,
// after the run, with the totals of all its threads; latencies are in µs.
var wrkReport = fmt.Sprintf(`
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("wemesse-wrk %%d %%d %%d %%d %%d %%d %%d\n", summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout))
  local q = {}
  for i = 1, %[1]d - 1 do q[i] = string.format("%%d", latency:percentile(i * 100 / %[1]d)) end
  q[%[1]d] = string.format("%%d", latency.max)
  io.write("wemesse-wrk-latency-us " .. table.concat(q, ",") .. "\n")
end
`, wrkQuantiles)

// run sends w's requests to base for duration, rounded up to whole seconds
// (wrk's unit).
func (g *wrkGenerator) run(ctx context.Context, base string, w workload, duration time.Duration) (loadStats, error) {
	if err := proctest.LoopbackOnly(base); err != nil {
		return loadStats{}, err
	}
	if w.lua == "" {
		return loadStats{}, errors.New("wrk: the workload has no script")
	}
	dir, err := os.MkdirTemp("", "wemesse-bench-wrk-")
	if err != nil {
		return loadStats{}, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "load.lua")
	if err := os.WriteFile(script, []byte(w.lua+wrkReport), 0o600); err != nil {
		return loadStats{}, err
	}
	secs := max(1, int(math.Ceil(duration.Seconds())))
	runCtx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+2*requestTimeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, g.path, "-t", strconv.Itoa(g.threads), "-c", strconv.Itoa(g.conns),
		"-d", strconv.Itoa(secs)+"s", "--timeout", strconv.Itoa(int(requestTimeout.Seconds()))+"s", "-s", script, base)
	cmd.Env = os.Environ()
	for k, v := range w.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return loadStats{}, ctx.Err()
		}
		return loadStats{}, fmt.Errorf("wrk: %w\n%s%s", err, stdout.Bytes(), stderr.Bytes())
	}
	st, err := parseWrk(stdout.Bytes())
	if err != nil {
		return loadStats{}, fmt.Errorf("wrk: %w\n%s%s", err, stdout.Bytes(), stderr.Bytes())
	}
	if st.total() == 0 {
		return st, fmt.Errorf("no request completed in %s", duration)
	}
	return st, nil
}

// parseWrk reads the lines wrkReport printed. wrk reports no status code
// but counts answers of 400 and above: the rest are counted as 200, which
// the scenarios' warm requests check they answer. Failures are code 0,
// described in errors. The latencies are wrkQuantiles quantiles of the
// run, not one per request: merged runs weigh alike.
func parseWrk(out []byte) (loadStats, error) {
	st := loadStats{codes: map[uint16]int{}, errors: map[string]int{}}
	var sawTotals, sawLatency bool
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		switch fields[0] {
		case "wemesse-wrk":
			if len(fields) != 8 {
				return st, fmt.Errorf("malformed totals line %q", sc.Text())
			}
			var n [7]int64
			for i := range n {
				v, err := strconv.ParseInt(fields[i+1], 10, 64)
				if err != nil || v < 0 {
					return st, fmt.Errorf("malformed totals line %q", sc.Text())
				}
				n[i] = v
			}
			requests, durationUS, status := int(n[0]), n[1], int(n[5])
			if status > requests {
				return st, fmt.Errorf("more failed statuses (%d) than requests (%d)", status, requests)
			}
			st.ok = requests - status
			st.codes[200] = st.ok
			st.elapsed = time.Duration(durationUS) * time.Microsecond
			for i, what := range []string{"connect", "read", "write", "status >= 400", "timeout"} {
				if v := int(n[i+2]); v > 0 {
					st.errors[what] += v
					st.codes[0] += v
				}
			}
			sawTotals = true
		case "wemesse-wrk-latency-us":
			if len(fields) != 2 {
				return st, errors.New("malformed latency line")
			}
			parts := strings.Split(fields[1], ",")
			if len(parts) != wrkQuantiles {
				return st, fmt.Errorf("%d latency quantiles, want %d", len(parts), wrkQuantiles)
			}
			st.latencies = make([]time.Duration, len(parts))
			for i, p := range parts {
				us, err := strconv.ParseInt(p, 10, 64)
				if err != nil || us < 0 {
					return st, fmt.Errorf("malformed latency %q", p)
				}
				st.latencies[i] = time.Duration(us) * time.Microsecond
			}
			sawLatency = true
		}
	}
	if !sawTotals || !sawLatency {
		return st, errors.New("no report in its output (is it wrk 4?)")
	}
	return st, nil
}

// luaString quotes s as a Lua string literal.
func luaString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range []byte(s) {
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
