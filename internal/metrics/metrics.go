// Package metrics exposes Wemesse's Prometheus series. One Metrics value
// holds a private registry, so tests and several servers in one process do
// not share counters.
package metrics

import (
	"database/sql"
	"maps"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics records what the server does.
type Metrics struct {
	registry      *prometheus.Registry
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	uploadBytes   prometheus.Counter
	verifications *prometheus.CounterVec
	authCache     *prometheus.CounterVec
	deviceBatch   prometheus.Histogram

	// series holds the request series already looked up, so that
	// counting a request does not hash and check its labels again.
	series   atomic.Pointer[map[requestKey]requestSeries]
	seriesMu sync.Mutex // serialises additions to series
}

// requestKey is the labels of one request's series.
type requestKey struct {
	route, method string
	status        int
}

// requestSeries is the series a request is counted in.
type requestSeries struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// maxCachedSeries bounds the series kept in Metrics.series; requests with
// labels beyond it are counted through the label lookup.
const maxCachedSeries = 512

// New registers every series, plus Go runtime and process collectors, and
// the connection pool statistics of db when it is not nil.
func New(db *sql.DB) *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wemesse_http_requests_total", Help: "HTTP requests by route pattern, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "wemesse_http_request_duration_seconds", Help: "HTTP request latency by route pattern and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route", "method"}),
		uploadBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wemesse_upload_bytes_total", Help: "Bytes of build files received into staging.",
		}),
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wemesse_signature_verifications_total", Help: "Argon2id verifications by result: match, mismatch or busy; hint_budget counts checks refused without one.",
		}, []string{"result"}),
		authCache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wemesse_signature_cache_total", Help: "Signature checks by cache outcome: hit, failed_hit (a recently failed secret) or miss.",
		}, []string{"result"}),
		deviceBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "wemesse_device_write_batch_size", Help: "Device sessions written per database transaction.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512},
		}),
	}
	m.series.Store(&map[requestKey]requestSeries{})
	m.registry.MustRegister(m.requests, m.duration, m.uploadBytes, m.verifications, m.authCache, m.deviceBatch,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if db != nil {
		m.registry.MustRegister(collectors.NewDBStatsCollector(db, "wemesse"))
	}
	return m
}

// Handler serves the series in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// Request records one finished HTTP request.
func (m *Metrics) Request(route, method string, status int, d time.Duration) {
	if route == "" {
		route = "unmatched" // keeps arbitrary paths out of the label set
	}
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
	default:
		method = "other" // any token is a method to net/http: keep them out too
	}
	s := m.requestSeries(requestKey{route, method, status})
	s.count.Inc()
	s.duration.Observe(d.Seconds())
}

// requestSeries returns the series of k, from the cache when it is there.
// The cache is copied on each addition, which is rare: a few routes,
// methods and statuses.
func (m *Metrics) requestSeries(k requestKey) requestSeries {
	if s, ok := (*m.series.Load())[k]; ok {
		return s
	}
	s := requestSeries{
		count:    m.requests.WithLabelValues(k.route, k.method, strconv.Itoa(k.status)),
		duration: m.duration.WithLabelValues(k.route, k.method),
	}
	m.seriesMu.Lock()
	defer m.seriesMu.Unlock()
	if old := *m.series.Load(); len(old) < maxCachedSeries {
		next := maps.Clone(old)
		next[k] = s
		m.series.Store(&next)
	}
	return s
}

// CountDroppedLogLines publishes dropped, a running count of log lines
// dropped rather than written (logbatch.Writer.Dropped).
func (m *Metrics) CountDroppedLogLines(dropped func() uint64) {
	m.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "wemesse_log_lines_dropped_total", Help: "Log lines dropped because the log sink was stalled or failing.",
	}, func() float64 { return float64(dropped()) }))
}

// UploadBytes counts received build bytes.
func (m *Metrics) UploadBytes(n int64) { m.uploadBytes.Add(float64(n)) }

// Verification counts one Argon2id verification: match, mismatch or busy,
// or a check refused without one: hint_budget.
func (m *Metrics) Verification(result string) { m.verifications.WithLabelValues(result).Inc() }

// AuthCache counts one signature check by cache outcome.
func (m *Metrics) AuthCache(result string) { m.authCache.WithLabelValues(result).Inc() }

// DeviceBatch records how many device sessions one transaction wrote.
func (m *Metrics) DeviceBatch(n int) { m.deviceBatch.Observe(float64(n)) }
