package handler_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/handler"
	"github.com/wemesse/server/internal/logbatch"
	"github.com/wemesse/server/internal/metrics"
	"github.com/wemesse/server/internal/service"
)

// discardWriter is a ResponseWriter that keeps nothing but its headers,
// cleared between requests, so that a benchmark counts the handler's
// allocations rather than a recorder's.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }

// The deadlines of a connection, as http.ResponseController finds them.
func (w *discardWriter) SetReadDeadline(time.Time) error  { return nil }
func (w *discardWriter) SetWriteDeadline(time.Time) error { return nil }

// BenchmarkUpdateCheck drives the whole handler stack (middleware, router,
// metrics, the update check) in memory, as the server runs it: metrics on,
// the stall timeout set; "quiet" logs at level error, "defaults" at info
// with access lines through a logbatch.Writer (to io.Discard) and answers
// signed.
//
//	go test ./internal/handler -run '^$' -bench UpdateCheck -benchmem -cpuprofile cpu.out
func BenchmarkUpdateCheck(b *testing.B) {
	for _, defaults := range []bool{false, true} {
		name := "quiet"
		if defaults {
			name = "defaults"
		}
		b.Run(name, func(b *testing.B) {
			sink := logbatch.New(io.Discard, logbatch.Options{})
			defer sink.Close()
			opts := []serverOption{func(d *handler.Deps, _ *service.SignaturesConfig) {
				d.Metrics = metrics.New(nil)
				d.StallTimeout = 30 * time.Second
				d.Log = slog.New(slog.NewJSONHandler(sink, &slog.HandlerOptions{Level: slog.LevelError}))
				if defaults {
					d.Log = slog.New(slog.NewJSONHandler(sink, nil))
					d.AccessLog = sink
				}
			}}
			if defaults {
				opts = append(opts, withAnswerKeys(b, newAnswerKey(b)))
			}
			ts := newTestServer(b, dbtest.SQLite(b), opts...)
			ts.mustUpload("2267_00")
			h := ts.Config.Handler
			devices := make([]*http.Request, 64)
			for i := range devices {
				devices[i] = httptest.NewRequest(http.MethodGet, "/api/v1/updates/2266_00?device=dev"+strconv.Itoa(i), nil)
			}
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				clear(w.h)
				h.ServeHTTP(w, devices[i%len(devices)])
				if w.status != http.StatusOK {
					b.Fatalf("status %d", w.status)
				}
			}
		})
	}
}
