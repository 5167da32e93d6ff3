package handler

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/go-chi/httprate"

	"github.com/wemesse/server/internal/metrics"
	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/service"
)

// accessLog writes one line per request: request id, method, route
// pattern, status, bytes and duration. Headers, hence secrets, are never
// logged.
func accessLog(log *slog.Logger, m *metrics.Metrics) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			// The id in the log line is the one the client can quote.
			w.Header().Set("X-Request-Id", middleware.GetReqID(r.Context()))
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			defer func() {
				route := ""
				if rctx := chi.RouteContext(r.Context()); rctx != nil {
					route = rctx.RoutePattern()
				}
				if m != nil {
					m.Request(route, r.Method, ww.Status(), time.Since(start))
				}
				if !log.Enabled(r.Context(), slog.LevelInfo) {
					return // spare building the line on the hot path
				}
				log.InfoContext(r.Context(), "request",
					"request_id", middleware.GetReqID(r.Context()),
					"method", r.Method,
					"route", route,
					"status", ww.Status(),
					"bytes", ww.BytesWritten(),
					"duration_ms", float64(time.Since(start).Microseconds())/1000,
					"remote", clientIP(r),
				)
			}()
			next.ServeHTTP(ww, r)
		})
	}
}

// clientIP is the client's address without its port: the peer's, or the
// one trustedProxies found in X-Forwarded-For.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return httprate.CanonicalizeIP(host)
}

// authenticator guards endpoints with signatures.
type authenticator struct {
	sigs        *service.Signatures
	failures    *httprate.RateLimiter
	maxFailures int
	log         *slog.Logger
}

func newAuth(sigs *service.Signatures, failuresPerMinute int, log *slog.Logger) *authenticator {
	return &authenticator{
		sigs:        sigs,
		failures:    httprate.NewRateLimiter(failuresPerMinute, time.Minute),
		maxFailures: failuresPerMinute,
		log:         log,
	}
}

// require admits requests whose signature holds role, or admin. The secret
// comes from the signature header or from Authorization: Bearer. Missing,
// unknown and revoked secrets get the same 401, and all go through the same
// check; a client IP with too many recent failures gets 429.
func (a *authenticator) require(role string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			secret := secretOf(r)
			sig, ok := a.sigs.Cached(r.Context(), secret)
			if !ok {
				sig, ok = a.authenticate(w, r, secret)
			}
			if !ok {
				return
			}
			if sig.Role != model.RoleAdmin && sig.Role != role {
				writeError(w, http.StatusForbidden, "This signature may not call this endpoint; it needs the admin role.")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// authenticate runs the full check for a secret that is not cached,
// writing the error response itself when it fails. A client IP with too many
// recent failures is refused before any hashing; a secret that is cached
// passes even from such an address, so an attacker sharing a NAT with real
// clients does not lock them out.
func (a *authenticator) authenticate(w http.ResponseWriter, r *http.Request, secret string) (model.Signature, bool) {
	ip := clientIP(r)
	// OnLimit counts failures up to the limit, so reaching it is the signal.
	if _, rate, _ := a.failures.Status(ip); rate >= float64(a.maxFailures) {
		w.Header().Set("Retry-After", "60")
		writeError(w, http.StatusTooManyRequests, "Too many failed signature checks from this address; retry later.")
		return model.Signature{}, false
	}
	sig, err := a.sigs.Authenticate(r.Context(), secret)
	if err != nil {
		if model.ErrorCode(err) == model.Unauthorized {
			a.failures.OnLimit(discardHeaders{}, r, ip) // counts the failure
			w.Header().Set("WWW-Authenticate", `Bearer realm="wemesse"`)
		}
		fail(w, r, a.log, err)
		return model.Signature{}, false
	}
	return sig, true
}

// maxSecretLen bounds the secret read from a request; a longer one is
// treated as missing rather than hashed.
const maxSecretLen = 512

// secretOf reads the secret from the signature header, or else from an
// Authorization: Bearer header.
func secretOf(r *http.Request) string {
	s := r.Header.Get("signature")
	if s == "" {
		if auth := r.Header.Get("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
			s = strings.TrimSpace(auth[7:])
		}
	}
	if len(s) > maxSecretLen {
		return "" // checked like a missing one
	}
	return s
}

// discardHeaders is a ResponseWriter for the limiter's bookkeeping, whose
// headers must not reach a request that is not limited.
type discardHeaders struct{}

func (discardHeaders) Header() http.Header         { return http.Header{} }
func (discardHeaders) Write(b []byte) (int, error) { return len(b), nil }
func (discardHeaders) WriteHeader(int)             {}

// progressDeadlines lets a request live as long as it makes progress: the
// connection's read deadline moves forward with every body read and its
// write deadline with every write, each by stall. A phone on a slow network
// is served; one that stops sending or reading is dropped.
func progressDeadlines(stall time.Duration, log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if stall <= 0 {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rc := http.NewResponseController(w)
			extend := func(set func(time.Time) error) {
				// Unsupported deadlines (a test recorder) just mean no deadline.
				_ = set(time.Now().Add(stall))
			}
			extend(rc.SetReadDeadline)
			extend(rc.SetWriteDeadline)
			if r.Body != nil && r.Body != http.NoBody {
				// Reading moves the write deadline too: the response to a long
				// upload is written only after its body is read.
				r.Body = &progressReader{ReadCloser: r.Body, progress: progress{every: stall / 8, extend: func() {
					extend(rc.SetReadDeadline)
					extend(rc.SetWriteDeadline)
				}}}
			}
			next.ServeHTTP(&progressWriter{ResponseWriter: w, progress: progress{every: stall / 8, extend: func() { extend(rc.SetWriteDeadline) }}}, r)
		})
	}
}

// progress moves a deadline forward after progress, at most every so often:
// moving it on each small read or write would cost more than the I/O.
type progress struct {
	every  time.Duration
	last   time.Time
	extend func()
}

func (p *progress) made() {
	if now := time.Now(); now.Sub(p.last) >= p.every {
		p.last = now
		p.extend()
	}
}

type progressReader struct {
	io.ReadCloser
	progress
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.ReadCloser.Read(b)
	if n > 0 {
		p.made()
	}
	return n, err
}

type progressWriter struct {
	http.ResponseWriter
	progress
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.ResponseWriter.Write(b)
	if n > 0 {
		p.made()
	}
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (p *progressWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// trustedProxies takes the client address from X-Forwarded-For when the
// peer is one of trusted (a reverse proxy of ours): the rightmost address
// not itself trusted, since anything left of it may be forged by the client.
// Requests from anyone else keep their peer address, whatever they claim.
func trustedProxies(trusted []netip.Prefix) func(http.Handler) http.Handler {
	isTrusted := func(a netip.Addr) bool {
		return slices.ContainsFunc(trusted, func(p netip.Prefix) bool { return p.Contains(a.Unmap()) })
	}
	return func(next http.Handler) http.Handler {
		if len(trusted) == 0 {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			peer, err := netip.ParseAddrPort(r.RemoteAddr)
			if err != nil || !isTrusted(peer.Addr()) {
				next.ServeHTTP(w, r)
				return
			}
			hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
			for i := len(hops) - 1; i >= 0; i-- {
				a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
				if err != nil {
					break // unparsable: stop at the last address we could trust
				}
				if !isTrusted(a) {
					r.RemoteAddr = netip.AddrPortFrom(a, 0).String()
					break
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}
