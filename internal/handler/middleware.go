package handler

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/go-chi/httprate"

	"github.com/wemesse/server/internal/logbatch"
	"github.com/wemesse/server/internal/metrics"
	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/service"
)

// requestIDHeader carries a request's id both ways: a client (or a proxy)
// may send one; every response carries the one that was used.
const requestIDHeader = "X-Request-Id"

// requestID gives each request an id and returns it in the X-Request-Id
// header: the client's own when it sent a valid one (validRequestID), else
// this process's prefix and a counter, as chi's middleware.RequestID would
// make it. Logs take it from there (requestIDOf): it is the one the client
// can quote, and keeping it out of the context spares a copy of every
// request. Neither costs an allocation per request: the client's header
// value is reused, and ours are made in batches (requestIDs).
func requestID(next http.Handler) http.Handler {
	ids := &requestIDs{prefix: requestIDPrefix(), next: 1}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := r.Header[requestIDHeader]
		if len(v) == 0 || !validRequestID(v[0]) {
			v = ids.take()
		}
		w.Header()[requestIDHeader] = v[:1:1]
		next.ServeHTTP(w, r)
	})
}

// requestIDBatch is how many ids requestIDs makes at once.
const requestIDBatch = 64

// requestIDs hands out this process's request ids, each as a header value
// of its own, made requestIDBatch at a time into one string and one slice:
// two allocations for a batch rather than two for every request.
type requestIDs struct {
	prefix string
	mu     sync.Mutex
	next   uint64   // the counter of the next batch's first id
	ids    []string // the batch's ids not yet handed out
}

// take returns the next id as a header value.
func (g *requestIDs) take() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.ids) == 0 {
		var ends [requestIDBatch]int
		b := make([]byte, 0, requestIDBatch*(len(g.prefix)+8))
		for i := range requestIDBatch {
			b = appendRequestID(b, g.prefix, g.next+uint64(i))
			ends[i] = len(b)
		}
		all := string(b)
		g.ids = make([]string, requestIDBatch)
		start := 0
		for i, end := range ends {
			g.ids[i], start = all[start:end], end
		}
		g.next += requestIDBatch
	}
	v := g.ids[:1:1]
	g.ids = g.ids[1:]
	return v
}

// requestIDOf is the id requestID gave the request that w answers.
func requestIDOf(w http.ResponseWriter) string { return headerValue(w.Header(), requestIDHeader) }

// headerValue is r.Header.Get(name) for a name already in canonical form,
// without canonicalizing it again on every request.
func headerValue(h http.Header, name string) string {
	if v := h[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// maxRequestIDLen bounds a client's request id: it is echoed and logged
// with every line of its request.
const maxRequestIDLen = 128

// validRequestID reports whether a client's id is short and made of
// characters that need no escaping in logs and headers; any other is
// replaced by one of ours.
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for _, c := range []byte(id) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.:/+=", c) >= 0) {
			return false
		}
	}
	return true
}

// requestIDPrefix names this process: host/random, so that ids from
// several servers or restarts do not collide.
func requestIDPrefix() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return host + "/" + rand.Text()[:10]
}

// appendRequestID appends prefix-n, n with at least six digits: it is
// fmt.Sprintf("%s-%06d", prefix, n) without fmt's cost.
func appendRequestID(b []byte, prefix string, n uint64) []byte {
	b = append(b, prefix...)
	b = append(b, '-')
	for p := uint64(100000); p > 1 && n < p; p /= 10 {
		b = append(b, '0')
	}
	return strconv.AppendUint(b, n, 10)
}

// accessLog counts every request in the metrics and, at level info, writes
// one line per request: request id, method, route pattern, status, bytes
// and duration. Headers, hence secrets, are never logged.
//
// With out set, the line is encoded here, as log/slog's JSON handler would
// write it, and written to out (a logbatch.Writer, which takes many lines
// in one write): slog would build a record, format the duration through
// encoding/json's reflection and write each line on its own. Without out
// the line goes through log.
func accessLog(log *slog.Logger, m *metrics.Metrics, out io.Writer) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			defer func() {
				end := time.Now()
				took := end.Sub(start)
				route := routePattern(r)
				if m != nil {
					m.Request(route, r.Method, ww.Status(), took)
				}
				if !log.Enabled(r.Context(), slog.LevelInfo) {
					return // spare building the line on the hot path
				}
				// The id in the log line is the one the client can quote.
				line := accessLine{
					time: end, requestID: requestIDOf(ww), method: r.Method, route: route,
					status: ww.Status(), bytes: ww.BytesWritten(), took: took, remote: clientIP(r),
				}
				if out == nil {
					line.log(r.Context(), log)
					return
				}
				bp := accessBuffers.Get().(*[]byte)
				*bp = line.appendJSON((*bp)[:0])
				_, _ = out.Write(*bp)
				accessBuffers.Put(bp)
			}()
			next.ServeHTTP(ww, r)
		})
	}
}

// accessLine is what one access line says.
type accessLine struct {
	time                     time.Time
	requestID, method, route string
	status, bytes            int
	took                     time.Duration
	remote                   string
}

// durationMS is the duration as the line gives it: milliseconds, to the
// microsecond.
func (l accessLine) durationMS() float64 { return float64(l.took.Microseconds()) / 1000 }

// log writes the line through log.
func (l accessLine) log(ctx context.Context, log *slog.Logger) {
	log.LogAttrs(ctx, slog.LevelInfo, "request", l.attrs()...)
}

func (l accessLine) attrs() []slog.Attr {
	return []slog.Attr{
		slog.String("request_id", l.requestID),
		slog.String("method", l.method),
		slog.String("route", l.route),
		slog.Int("status", l.status),
		slog.Int("bytes", l.bytes),
		slog.Float64("duration_ms", l.durationMS()),
		slog.String("remote", l.remote),
	}
}

// accessBuffers holds the buffers access lines are encoded into.
var accessBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// appendJSON appends the line as log/slog's JSON handler writes it, with
// its newline: the same keys in the same order, the time in milliseconds.
func (l accessLine) appendJSON(b []byte) []byte {
	b = append(b, `{"time":"`...)
	b = logbatch.AppendTime(b, l.time)
	b = append(b, `","level":"INFO","msg":"request","request_id":`...)
	b = appendJSONString(b, l.requestID)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, l.method)
	b = append(b, `,"route":`...)
	b = appendJSONString(b, l.route)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(l.status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, int64(l.bytes), 10)
	b = append(b, `,"duration_ms":`...)
	// encoding/json writes a float in this range as 'f' does.
	b = strconv.AppendFloat(b, l.durationMS(), 'f', -1, 64)
	b = append(b, `,"remote":`...)
	b = appendJSONString(b, l.remote)
	return append(b, "}\n"...)
}

// appendJSONString appends s as a JSON string, escaped as encoding/json
// escapes it without HTML escaping (as log/slog does); invalid UTF-8
// becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// routePattern is the pattern of the route that served r, "" when none
// did. chi records it in r.Pattern; the route context is the fallback for
// a request that a middleware replaced on its way down.
func routePattern(r *http.Request) string {
	if r.Pattern != "" {
		return r.Pattern
	}
	return chi.RouteContext(r.Context()).RoutePattern()
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

// nosniff tells browsers to take every answer's Content-Type as sent:
// JSON is never sniffed into a page, nor a download into a script.
func nosniff(next http.Handler) http.Handler {
	value := []string{"nosniff"}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["X-Content-Type-Options"] = value
		next.ServeHTTP(w, r)
	})
}

// noStore keeps answers out of every cache: admin answers list releases,
// devices and statistics that no proxy or browser should keep.
func noStore(next http.Handler) http.Handler {
	value := []string{"no-store"}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Cache-Control"] = value
		next.ServeHTTP(w, r)
	})
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
				refuseBody(w, r)
				fail(w, r, a.log, model.Errorf(model.Forbidden, "This signature may not call this endpoint; it needs the admin role."))
				return
			}
			if role == model.RoleAdmin {
				// Admin endpoints make the changes the audit trail records;
				// the device reports of the client role need no actor.
				r = r.WithContext(model.WithActor(r.Context(), sig.Label()))
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
	sig, ok := a.check(w, r, secret)
	if !ok {
		refuseBody(w, r)
	}
	return sig, ok
}

// refuseBody makes sure the body of a refused request is never read: net/http
// would otherwise wait for up to 256 KiB of it before answering, for as long
// as the read deadline allows, to keep the connection. The connection is
// closed after the answer instead.
func refuseBody(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength != 0 {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	}
}

// check is authenticate without refuseBody.
func (a *authenticator) check(w http.ResponseWriter, r *http.Request, secret string) (model.Signature, bool) {
	if a.tooManyFailures(r) {
		w.Header().Set("Retry-After", "60")
		fail(w, r, a.log, model.Errorf(model.TooMany, "Too many failed signature checks from this address; retry later."))
		return model.Signature{}, false
	}
	sig, err := a.sigs.Authenticate(r.Context(), secret)
	if err != nil {
		if model.ErrorCode(err) == model.Unauthorized {
			a.countFailure(r)
			w.Header().Set("WWW-Authenticate", `Bearer realm="wemesse"`)
		}
		fail(w, r, a.log, err)
		return model.Signature{}, false
	}
	return sig, true
}

// tooManyFailures reports whether r's client address has reached the
// limit of failed checks: signature checks and console logins alike.
func (a *authenticator) tooManyFailures(r *http.Request) bool {
	// OnLimit counts failures up to the limit, so reaching it is the signal.
	_, rate, _ := a.failures.Status(clientIP(r))
	return rate >= float64(a.maxFailures)
}

// countFailure counts a failed check from r's client address.
func (a *authenticator) countFailure(r *http.Request) {
	a.failures.OnLimit(discardHeaders{}, r, clientIP(r))
}

// maxSecretLen bounds the secret read from a request; a longer one is
// treated as missing rather than hashed.
const maxSecretLen = 512

// secretOf reads the secret from the signature header, or else from an
// Authorization: Bearer header.
func secretOf(r *http.Request) string {
	s := headerValue(r.Header, "Signature")
	if s == "" {
		if auth := headerValue(r.Header, "Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
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
//
// A deadline moves at most every stall/8: moving it on each small read or
// write would cost more than the I/O, so a stalled client is dropped between
// 7/8 stall and stall after its last progress. The read deadline matters
// only while a body is read (net/http sets its own for the headers and the
// idle time), so only a request with a body gets one.
//
// On a connection the kernel already guards (ConnContext), HTTP/1 writes
// are left to it: a client that stops reading its response is dropped by
// the kernel after stall, and only a body's reads move a deadline. That
// spares the update check and downloads any deadline timer, and is exact
// where write deadlines are not: they see progress only between writes,
// and one write may wait until a third of the socket's send buffer has
// drained, so a client reading less than that per stall can be dropped
// while it reads; the kernel counts acknowledgements. HTTP/2 streams share
// their connection and keep their own write deadlines.
//
// A body must also keep up an average of minRate bytes a second (0: no
// minimum) from its first bytes, with one stall of slack: one that trickles
// a byte just often enough to show progress is dropped once it is behind by
// more than that (errBodyTooSlow), and its connection with it.
func progressDeadlines(stall time.Duration, minRate int64, log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if stall <= 0 {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hasBody := r.Body != nil && r.Body != http.NoBody
			kernel := r.ProtoMajor == 1 && r.Context().Value(kernelStallKey{}) != nil
			if kernel && !hasBody {
				next.ServeHTTP(w, r)
				return
			}
			p := &progressWriter{ResponseWriter: w, stall: stall, kernelWrites: kernel}
			if hasBody {
				p.moveRead(time.Time{})
				r.Body = &progressReader{ReadCloser: r.Body, p: p, minRate: minRate}
			}
			if kernel {
				next.ServeHTTP(w, r)
				return
			}
			p.moveWrite()
			next.ServeHTTP(p, r)
			// net/http writes what is left of the response after this: a
			// slow handler has not used up the client's time.
			p.moveWrite()
		})
	}
}

// kernelStallKey marks the context of a connection whose stalled sends the
// kernel drops (ConnContext).
type kernelStallKey struct{}

// ConnContext returns the http.Server ConnContext for a server whose
// handler was made with this stall (Deps.StallTimeout): on Linux it asks
// the kernel to drop a TCP connection once data sent on it has gone
// unacknowledged, or unsent behind a zero window, for stall
// (TCP_USER_TIMEOUT), and marks the connection's context so that
// progressDeadlines leaves that half of its work to the kernel. Elsewhere,
// or on a connection that refuses the option, it changes nothing.
func ConnContext(stall time.Duration) func(context.Context, net.Conn) context.Context {
	return func(ctx context.Context, c net.Conn) context.Context {
		if stall > 0 && setUserTimeout(c, stall) {
			return context.WithValue(ctx, kernelStallKey{}, true)
		}
		return ctx
	}
}

// moment is when a deadline last moved, as the time since processStart on
// the monotonic clock; 0 is never. Atomic: a handler may read the body and
// write the response from different goroutines.
type moment struct{ atomic.Int64 }

var processStart = time.Now()

// due reports whether the moment is never or at least every ago, and if so
// makes it now and returns now.
func (m *moment) due(every time.Duration) (time.Time, bool) {
	t := time.Since(processStart) + 1 // never 0
	if last := m.Load(); last != 0 && t-time.Duration(last) < every {
		return time.Time{}, false
	}
	m.Store(int64(t))
	return processStart.Add(t), true
}

// progressWriter moves the deadlines of the connection a request arrived on
// as its response is written and its body read.
type progressWriter struct {
	http.ResponseWriter
	stall        time.Duration
	wrote, read  moment // when the write and read deadlines last moved
	kernelWrites bool   // the kernel drops stalled sends: no write deadline
}

// moveWrite moves the write deadline to now+stall, unless it moved less
// than stall/8 ago. Unsupported deadlines (a test recorder) just mean no
// deadline.
func (p *progressWriter) moveWrite() {
	if p.kernelWrites {
		return
	}
	if t, ok := p.wrote.due(p.stall / 8); ok {
		_ = http.NewResponseController(p.ResponseWriter).SetWriteDeadline(t.Add(p.stall))
	}
}

// moveRead moves the read deadline like moveWrite, but no later than
// limit unless that is zero.
func (p *progressWriter) moveRead(limit time.Time) {
	if t, ok := p.read.due(p.stall / 8); ok {
		t = t.Add(p.stall)
		if !limit.IsZero() && limit.Before(t) {
			t = limit
		}
		_ = http.NewResponseController(p.ResponseWriter).SetReadDeadline(t)
	}
}

func (p *progressWriter) Write(b []byte) (int, error) {
	// Before the write, which may block on the connection: a handler that
	// took long to start its answer has not used up the client's time.
	p.moveWrite()
	return p.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (p *progressWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// progressReader moves its request's deadlines as the body is read, and
// holds the body to its minimum rate.
type progressReader struct {
	io.ReadCloser
	p       *progressWriter
	minRate int64     // bytes a second; 0: none
	first   time.Time // when the first bytes arrived
	got     int64     // bytes read
	err     error     // errBodyTooSlow once the body fell behind
}

// errBodyTooSlow fails the read of a body that fell behind its minimum
// rate (WEMESSE_MIN_BODY_RATE).
var errBodyTooSlow = errors.New("the request body arrives too slowly")

func (r *progressReader) Read(b []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.ReadCloser.Read(b)
	if n > 0 {
		var limit time.Time
		if r.minRate > 0 {
			now := time.Now()
			if r.first.IsZero() {
				r.first = now
			}
			r.got += int64(n)
			// The moment the average, with its slack, falls below the
			// minimum unless more arrives.
			limit = r.first.Add(r.p.stall + time.Duration(float64(r.got)/float64(r.minRate)*float64(time.Second)))
			if now.After(limit) {
				r.err = errBodyTooSlow
				// Whatever else the client sends is not waited for:
				// net/http then closes the connection rather than drain it.
				_ = http.NewResponseController(r.p.ResponseWriter).SetReadDeadline(now)
				return 0, r.err
			}
		}
		// Reading moves the write deadline too: the response to a long
		// upload is written only after its body is read.
		r.p.moveRead(limit)
		r.p.moveWrite()
	}
	return n, err
}

// unparsableForwarded is the RemoteAddr of a request whose trusted proxy
// forwarded an X-Forwarded-For that names no address where the client's
// should be: clientIP gives all such requests one address of their own.
const unparsableForwarded = "unparsable-x-forwarded-for:0"

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
			forwarded := r.Header.Values("X-Forwarded-For")
			if len(forwarded) == 0 {
				next.ServeHTTP(w, r) // the proxy's own request
				return
			}
			hops := strings.Split(strings.Join(forwarded, ","), ",")
			for i := len(hops) - 1; i >= 0; i-- {
				a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
				if err != nil {
					// Whoever sent it is not known: its failures go to a
					// bucket of their own, not to the proxy's address,
					// which real clients share.
					r.RemoteAddr = unparsableForwarded
					break
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
