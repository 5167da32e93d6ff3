// Package handler is Wemesse's HTTP layer: the chi router, one handler maker
// per endpoint, middleware, JSON encoding and the mapping of error codes to
// statuses.
package handler

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/wemesse/server/internal/httpsig"
	"github.com/wemesse/server/internal/metrics"
	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/service"
)

// Deps is everything the HTTP layer needs.
type Deps struct {
	Releases   *service.Releases
	Users      *service.Users
	Signatures *service.Signatures
	Audit      *service.Audit
	Stats      *service.Stats
	History    *service.History
	Sessions   *service.Sessions // console logins
	// SessionMax is how long a console session lives at most.
	SessionMax time.Duration
	Log        *slog.Logger
	// AccessLog takes the access lines, JSON as Log's handler writes them,
	// when set (a logbatch.Writer, the sink of Log's handler); nil: they
	// go through Log.
	AccessLog io.Writer

	PublicURL      string // base of links to this server's files
	MirrorURL      string // base of links in the update check
	MaxUploadBytes int64
	UpdateMaxAge   time.Duration // how long clients may cache an update check
	// AnswerSigner signs the update check's answers; nil: unsigned.
	AnswerSigner *httpsig.Signer
	// AnswerKeys are published at /api/v1/keys, the signer's first.
	AnswerKeys []httpsig.Key
	// StallTimeout drops a request whose body or response makes no progress
	// for this long: a slow phone is served, a stalled one is not.
	StallTimeout time.Duration
	// MinBodyRate, in bytes a second, is the least average rate at which a
	// request body must arrive, with StallTimeout of slack; 0: no minimum.
	MinBodyRate int64
	// Ready reports whether the database answers, for /readyz.
	Ready func(ctx context.Context) error
	// Metrics records requests; nil records nothing.
	Metrics *metrics.Metrics
	// TrustedProxies are reverse proxies whose X-Forwarded-For names the
	// client, for the per-address failure limit and the logs.
	TrustedProxies []netip.Prefix
	// AuthFailuresPerMinute bounds failed signature checks per client IP.
	AuthFailuresPerMinute int
}

// NewServer returns the whole API as an http.Handler.
func NewServer(d Deps) http.Handler {
	r := chi.NewRouter()
	r.Use(trustedProxies(d.TrustedProxies))
	r.Use(requestID)
	r.Use(nosniff)
	r.Use(middleware.GetHead)
	r.Use(accessLog(d.Log, d.Metrics, d.AccessLog))
	r.Use(recoverJSON(d.Log))
	r.Use(progressDeadlines(d.StallTimeout, d.MinBodyRate, d.Log))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		fail(w, r, d.Log, model.Errorf(model.NotFound, "No such endpoint: %s %s.", r.Method, r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		allowed := allowedMethods(r)
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		fail(w, r, d.Log, model.Errorf(model.NotAllowed, "Method %s is not allowed on %s; use %s.", r.Method, r.URL.Path, strings.Join(allowed, " or ")))
	})
	addRoutes(r, d)
	return r
}

// allowedMethods lists the methods the router serves for r's path, for the
// Allow header of a 405.
func allowedMethods(r *http.Request) []string {
	rctx := chi.RouteContext(r.Context())
	var out []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		// GetHead serves HEAD wherever GET is routed.
		probe := m
		if m == http.MethodHead {
			probe = http.MethodGet
		}
		if rctx.Routes.Match(chi.NewRouteContext(), probe, r.URL.Path) {
			out = append(out, m)
		}
	}
	return out
}
