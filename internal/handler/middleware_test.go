package handler

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestRequestID(t *testing.T) {
	var got string
	h := requestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = requestIDOf(w)
	}))

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if got == "" || rec.Header().Get("X-Request-Id") != got {
		t.Fatalf("id for the logs %q, in the response %q; want the same, not empty", got, rec.Header().Get("X-Request-Id"))
	}
	first := got
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	if got == first {
		t.Errorf("two requests got the same id %q", got)
	}

	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-Request-Id", "from-the-proxy")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if got != "from-the-proxy" || rec.Header().Get("X-Request-Id") != "from-the-proxy" {
		t.Errorf("a client's id: %q in the context, %q in the response; want it kept", got, rec.Header().Get("X-Request-Id"))
	}

	// Ids too long or with characters a log line would need to escape are
	// replaced, not echoed.
	for _, bad := range []string{strings.Repeat("a", maxRequestIDLen+1), "two words", "a\"b", "ünï", "x\x00y"} {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("X-Request-Id", bad)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if got == bad || got == "" || rec.Header().Get("X-Request-Id") != got {
			t.Errorf("client id %q: %q in the context, %q in the response; want one of ours in both", bad, got, rec.Header().Get("X-Request-Id"))
		}
	}
	req = httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-Request-Id", strings.Repeat("a", maxRequestIDLen))
	h.ServeHTTP(httptest.NewRecorder(), req)
	if got != strings.Repeat("a", maxRequestIDLen) {
		t.Errorf("an id of %d characters was not kept", maxRequestIDLen)
	}
}

func TestAppendRequestID(t *testing.T) {
	for _, n := range []uint64{0, 1, 42, 99999, 100000, 123456, 1234567, 1<<64 - 1} {
		if got, want := string(appendRequestID([]byte("x"), "host/abc", n)), fmt.Sprintf("x%s-%06d", "host/abc", n); got != want {
			t.Errorf("appendRequestID(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestRequestIDs checks that the ids made in batches are the counter's, in
// order, each a header value of its own.
func TestRequestIDs(t *testing.T) {
	g := &requestIDs{prefix: "h/p", next: 1}
	var vals [][]string
	for range 3*requestIDBatch + 5 {
		vals = append(vals, g.take())
	}
	for i, v := range vals {
		if want := fmt.Sprintf("h/p-%06d", i+1); len(v) != 1 || cap(v) != 1 || v[0] != want {
			t.Fatalf("id %d: got %q (cap %d), want [%s]", i, v, cap(v), want)
		}
	}
}

func TestQueryValue(t *testing.T) {
	for _, q := range []string{
		"", "device=abc", "device=", "device", "a=1&device=x&device=y", "device=%41%42+c",
		"dev%69ce=esc", "device=%zz&device=ok", "device=a;b&device=c", "x;=1&device=d",
		"&&device=e&", "=f&device", "device=g=h", "DEVICE=i",
	} {
		want := must(url.ParseQuery(q)).Get("device")
		if got := queryValue(q, "device"); got != want {
			t.Errorf("queryValue(%q) = %q, want %q as url.ParseQuery reads it", q, got, want)
		}
	}
}

func FuzzQueryValue(f *testing.F) {
	f.Add("device=a%20b&x=1", "device")
	f.Add("a;b=1&a=2", "a")
	f.Fuzz(func(t *testing.T, q, key string) {
		want := must(url.ParseQuery(q)).Get(key)
		if got := queryValue(q, key); got != want {
			t.Errorf("queryValue(%q, %q) = %q, want %q as url.ParseQuery reads it", q, key, got, want)
		}
	})
}

// must drops url.ParseQuery's error, as URL.Query does.
func must(v url.Values, _ error) url.Values { return v }

func TestEtagMatches(t *testing.T) {
	const etag = `W/"abc-1-false"`
	for header, want := range map[string]bool{
		"":                           false,
		`"abc-1-false"`:              true,
		`W/"abc-1-false"`:            true,
		`"x", W/"abc-1-false"`:       true,
		` "x" ,  "abc-1-false" , `:   true,
		"*":                          true,
		`"abc-1-true"`:               false,
		`"x",,"y"`:                   false,
		`W/"abc-1-false"x`:           false,
		`"abc-1-false", "something"`: true,
	} {
		if got := etagMatches(header, etag); got != want {
			t.Errorf("etagMatches(%q) = %v, want %v", header, got, want)
		}
	}
}

// stallModes are the two ways a stall is caught: deadlines that each
// request moves itself, and a connection the kernel guards as well
// (ConnContext), where a request without a body leaves its response's
// stall to the kernel.
var stallModes = []struct {
	name   string
	kernel bool
}{{"deadlines", false}, {"kernel-guarded", true}}

// stallServer serves h behind progressDeadlines with the given stall, its
// connections guarded by the kernel when kernel is set, as the server's are.
func stallServer(t *testing.T, stall time.Duration, kernel bool, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(progressDeadlines(stall, 0, slog.New(slog.DiscardHandler))(h))
	if kernel {
		srv.Config.ConnContext = ConnContext(stall)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func TestProgressDeadlines_stalledReaderIsDropped(t *testing.T) {
	for _, m := range stallModes {
		t.Run(m.name, func(t *testing.T) {
			const stall = 300 * time.Millisecond
			written := make(chan error, 1)
			srv := stallServer(t, stall, m.kernel, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/small" {
					io.WriteString(w, "ok")
					return
				}
				chunk := make([]byte, 64<<10)
				for range 1 << 12 { // 256 MiB: more than any socket buffers
					if _, err := w.Write(chunk); err != nil {
						written <- err
						return
					}
				}
				written <- nil
			})
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// A request answered in full first: the stalled one is not the
			// first on its connection.
			br := bufio.NewReader(conn)
			if _, err := io.WriteString(conn, "GET /small HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if _, err := io.WriteString(conn, "GET /large HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			// The client reads nothing more.
			select {
			case err := <-written:
				if err == nil {
					t.Fatal("the whole response was written to a client that reads nothing")
				}
			case <-time.After(20 * stall):
				t.Fatalf("a client that stopped reading was not dropped within %s", 20*stall)
			}
		})
	}
}

// TestProgressDeadlines_kernelGuardedWrites: on a guarded connection an
// HTTP/1 response gets no write deadline (the kernel drops stalled sends)
// while a body still moves its read deadline; HTTP/2, whose streams share
// the connection, and an unguarded connection get both.
func TestProgressDeadlines_kernelGuardedWrites(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		guarded, body         bool
		protoMajor            int
		wantWrites, wantReads bool
	}{
		{"guarded HTTP/1 GET", true, false, 1, false, false},
		{"guarded HTTP/1 POST", true, true, 1, false, true},
		{"guarded HTTP/2 GET", true, false, 2, true, false},
		{"guarded HTTP/2 POST", true, true, 2, true, true},
		{"unguarded HTTP/1 GET", false, false, 1, true, false},
		{"unguarded HTTP/1 POST", false, true, 1, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var writes, reads bool
			h := progressDeadlines(time.Second, 0, slog.New(slog.DiscardHandler))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, writes = w.(*progressWriter)
				_, reads = r.Body.(*progressReader)
			}))
			var body io.Reader
			if tc.body {
				body = strings.NewReader("{}")
			}
			r := httptest.NewRequest(http.MethodPost, "/", body)
			r.ProtoMajor = tc.protoMajor
			if tc.guarded {
				r = r.WithContext(context.WithValue(r.Context(), kernelStallKey{}, true))
			}
			h.ServeHTTP(httptest.NewRecorder(), r)
			if writes != tc.wantWrites || reads != tc.wantReads {
				t.Errorf("write deadlines %v, read deadlines %v; want %v, %v", writes, reads, tc.wantWrites, tc.wantReads)
			}
		})
	}
}

func TestProgressDeadlines_slowBodyIsServedStalledIsNot(t *testing.T) {
	for _, m := range stallModes {
		t.Run(m.name, func(t *testing.T) {
			// A second of stall against a write every fifth of it: a loaded
			// machine (the race detector, other packages' tests) can delay a
			// writer by a few hundred milliseconds, which must not count.
			const stall = time.Second
			srv := stallServer(t, stall, m.kernel, func(w http.ResponseWriter, r *http.Request) {
				n, err := io.Copy(io.Discard, r.Body)
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					w.WriteHeader(http.StatusRequestTimeout)
					return
				}
				fmt.Fprint(w, n)
			})
			send := func(pause time.Duration, stallAfter int) (string, error) {
				pr, pw := io.Pipe()
				go func() {
					for i := range 6 {
						if i == stallAfter {
							time.Sleep(3 * stall)
						}
						pw.Write([]byte("0123456789"))
						time.Sleep(pause)
					}
					pw.Close()
				}()
				ctx, cancel := context.WithTimeout(context.Background(), 20*stall)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL, pr)
				resp, err := srv.Client().Do(req)
				if err != nil {
					return "", err
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return fmt.Sprintf("%d %s", resp.StatusCode, b), nil
			}
			// A body that keeps coming, slower than stall in all, is read whole.
			if got, err := send(stall/5, -1); err != nil || got != "200 60" {
				t.Errorf("slow body: %q, %v; want 200 60", got, err)
			}
			// One that stops for longer than stall is not.
			if got, err := send(0, 3); err == nil && got == "200 60" {
				t.Errorf("stalled body: %q; want it dropped", got)
			}
		})
	}
}

// TestProgressDeadlines_slowHandlerAfterBody: once the body is read whole,
// the time the handler takes (a commit, a flush to disk) is not a stall of
// the client's: the request's context stays alive.
func TestProgressDeadlines_slowHandlerAfterBody(t *testing.T) {
	for _, m := range stallModes {
		t.Run(m.name, func(t *testing.T) {
			const stall = 200 * time.Millisecond
			srv := stallServer(t, stall, m.kernel, func(w http.ResponseWriter, r *http.Request) {
				if _, err := io.Copy(io.Discard, r.Body); err != nil {
					w.WriteHeader(http.StatusBadRequest)
					return
				}
				select {
				case <-r.Context().Done():
					w.WriteHeader(http.StatusRequestTimeout)
				case <-time.After(3 * stall):
					fmt.Fprint(w, "done")
				}
			})
			resp, err := srv.Client().Post(srv.URL, "text/plain", strings.NewReader(strings.Repeat("body", 1<<18)))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || string(b) != "done" {
				t.Errorf("got %d %q; want 200 done", resp.StatusCode, b)
			}
		})
	}
}

// TestAccessLine_sameAsSlog checks that the access line encoded by hand is
// byte for byte what log/slog's JSON handler writes for it.
func TestAccessLine_sameAsSlog(t *testing.T) {
	at := time.Date(2026, 12, 4, 19, 21, 42, 123456789, time.FixedZone("", -3*3600))
	for _, l := range []accessLine{
		{time: at, requestID: "host/AbC-000001", method: "GET", route: "/api/v1/updates/{version}", status: 200, bytes: 512, took: 1234 * time.Microsecond, remote: "127.0.0.1"},
		{time: at.UTC(), requestID: "", method: "BREW", route: "", status: 404, bytes: 0, took: 0, remote: "::1"},
		{time: at, requestID: "x", method: "POST", route: "/a\"b\\c\n\r\t\x01\x1f\u2028\u2029é\xff<>&", status: 599, bytes: 1 << 40, took: 12*time.Second + 7*time.Microsecond, remote: "2001:db8::1"},
		{time: at, requestID: "y", method: "GET", route: "/", status: 200, bytes: 1, took: time.Microsecond, remote: "unparsable-x-forwarded-for:0"},
		{time: at, requestID: "z", method: "GET", route: "/", status: 200, bytes: 1, took: 999 * time.Nanosecond, remote: "10.0.0.1"},
	} {
		var want strings.Builder
		rec := slog.NewRecord(l.time, slog.LevelInfo, "request", 0)
		rec.AddAttrs(l.attrs()...)
		if err := slog.NewJSONHandler(&want, nil).Handle(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
		if got := string(l.appendJSON(nil)); got != want.String() {
			t.Errorf("got  %s want %s", got, want.String())
		}
	}
}

// TestAccessLog_levels checks that access lines go to the sink at level
// info, and not at warn or above.
func TestAccessLog_levels(t *testing.T) {
	for _, tc := range []struct {
		level slog.Level
		lines int
	}{{slog.LevelDebug, 1}, {slog.LevelInfo, 1}, {slog.LevelWarn, 0}, {slog.LevelError, 0}} {
		t.Run(tc.level.String(), func(t *testing.T) {
			var out, other strings.Builder
			log := slog.New(slog.NewJSONHandler(&other, &slog.HandlerOptions{Level: tc.level}))
			h := requestID(accessLog(log, nil, &out)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusTeapot)
				_, _ = w.Write([]byte("tea"))
			})))
			req := httptest.NewRequest(http.MethodGet, "/pot", nil)
			req.Header.Set(requestIDHeader, "client-id-1")
			h.ServeHTTP(httptest.NewRecorder(), req)
			if got := strings.Count(out.String(), "\n"); got != tc.lines || other.Len() != 0 {
				t.Fatalf("%d access lines in the sink (want %d), %q through the logger", got, tc.lines, other.String())
			}
			if tc.lines == 0 {
				return
			}
			var line map[string]any
			if err := json.Unmarshal([]byte(out.String()), &line); err != nil {
				t.Fatal(err)
			}
			for k, want := range map[string]any{"level": "INFO", "msg": "request", "request_id": "client-id-1", "method": "GET", "status": float64(418), "bytes": float64(3), "remote": "192.0.2.1"} {
				if line[k] != want {
					t.Errorf("%s: got %v, want %v", k, line[k], want)
				}
			}
			if _, ok := line["duration_ms"].(float64); !ok {
				t.Errorf("duration_ms: got %v", line["duration_ms"])
			}
		})
	}
}
