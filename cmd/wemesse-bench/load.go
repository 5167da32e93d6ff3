package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/wemesse/server/internal/proctest"
)

// maxLoadResults bounds the latencies kept from one load run; past it the
// run stops early.
const maxLoadResults = 20_000_000

// loadStats is the outcome of a closed-loop load run: conns clients, each
// sending its next request as soon as the previous one is answered.
type loadStats struct {
	ok        int // 2xx
	codes     map[uint16]int
	errors    map[string]int // transport errors (code 0), a sample
	latencies []time.Duration
	elapsed   time.Duration // first request sent to last response read
}

func (s loadStats) total() int {
	n := 0
	for _, c := range s.codes {
		n += c
	}
	return n
}

func (s loadStats) failed() int { return s.total() - s.ok }

// rate is successful requests per second.
func (s loadStats) rate() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.ok) / s.elapsed.Seconds()
}

// p is a latency percentile over every request.
func (s loadStats) p(q float64) time.Duration { return percentile(s.latencies, q) }

// add merges the stats of another run of the same load: rates and
// percentiles then cover both.
func (s *loadStats) add(o loadStats) {
	if s.codes == nil {
		s.codes, s.errors = map[uint16]int{}, map[string]int{}
	}
	s.ok += o.ok
	for k, v := range o.codes {
		s.codes[k] += v
	}
	for k, v := range o.errors {
		if len(s.errors) < 20 {
			s.errors[k] += v
		}
	}
	s.latencies = append(s.latencies, o.latencies...)
	s.elapsed += o.elapsed
}

// describeFailures lists what failed, for a note.
func (s loadStats) describeFailures() string {
	return fmt.Sprintf("%d of %d requests failed: %s %s", s.failed(), s.total(), fmtCodes(s.codes), fmtErrors(s.errors))
}

// A generator runs closed-loop load: its connections each send their next
// request as soon as the previous one is answered. The update and device
// scenarios use wrk when it is installed (see -load), vegeta otherwise.
type generator interface {
	// run sends w's requests to base, which must be on 127.0.0.1, for
	// duration.
	run(ctx context.Context, base string, w workload, duration time.Duration) (loadStats, error)
	// inProcess reports whether the generator runs inside this process.
	inProcess() bool
	close()
}

// workload is what a run sends, in each generator's terms.
type workload struct {
	targeter func(base string) vegeta.Targeter // vegeta: every request's target
	// lua is wrk's script: it sets wrk.method and wrk.headers and defines
	// request(); env is added to wrk's environment (os.getenv), so that
	// no secret is written to the script's file.
	lua string
	env map[string]string
}

// loadClient is the HTTP client behind every vegeta attacker: keep-alive
// connections, at most conns of them per host, no proxy. One loadClient
// serves a warm-up and the measured run, so they share connections.
type loadClient struct {
	conns int
	http  *http.Client
}

func newLoadClient(conns int) *loadClient {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4 * conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &loadClient{conns: conns, http: &http.Client{Transport: tr, Timeout: requestTimeout}}
}

func (c *loadClient) close() { c.http.CloseIdleConnections() }

func (c *loadClient) inProcess() bool { return true }

// run sends requests from w.targeter with conns concurrent workers for
// duration, as fast as they are answered (vegeta at rate 0). Every target
// URL must start with base, which must be on 127.0.0.1.
func (c *loadClient) run(ctx context.Context, base string, w workload, duration time.Duration) (loadStats, error) {
	if err := proctest.LoopbackOnly(base); err != nil {
		return loadStats{}, err
	}
	targeter := w.targeter(base)
	base = strings.TrimSuffix(base, "/") + "/"
	checked := func(t *vegeta.Target) error {
		if err := targeter(t); err != nil {
			return err
		}
		if !strings.HasPrefix(t.URL, base) {
			return fmt.Errorf("target %q is not under %s", t.URL, base)
		}
		return nil
	}
	atk := vegeta.NewAttacker(
		vegeta.Client(c.http),
		vegeta.Workers(uint64(c.conns)), vegeta.MaxWorkers(uint64(c.conns)),
		vegeta.MaxBody(0), vegeta.Redirects(vegeta.NoFollow),
	)
	runCtx, cancel := context.WithTimeout(ctx, duration+2*requestTimeout)
	defer cancel()
	go func() {
		<-runCtx.Done()
		atk.Stop()
	}()
	st := loadStats{codes: map[uint16]int{}, errors: map[string]int{}}
	var first, last time.Time
	for r := range atk.Attack(checked, vegeta.Rate{Freq: 0}, duration, "") {
		st.codes[r.Code]++
		if r.Code >= 200 && r.Code < 300 {
			st.ok++
		}
		st.latencies = append(st.latencies, r.Latency)
		if r.Code == 0 && len(st.errors) < 20 {
			st.errors[r.Error]++
		}
		if first.IsZero() || r.Timestamp.Before(first) {
			first = r.Timestamp
		}
		if end := r.End(); end.After(last) {
			last = end
		}
		if len(st.latencies) >= maxLoadResults {
			atk.Stop()
		}
	}
	st.elapsed = last.Sub(first)
	if err := ctx.Err(); err != nil {
		return st, err
	}
	if st.total() == 0 {
		return st, fmt.Errorf("no request completed in %s", duration)
	}
	return st, nil
}
