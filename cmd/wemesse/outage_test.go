package main

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wemesse/server/internal/dbtest"
)

// proxy forwards TCP connections to target until it is cut; cutting closes
// every open connection and refuses new ones, as a stopped database does.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  []net.Conn
}

func newProxy(tb testing.TB, target string) *proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	tb.Cleanup(func() { ln.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		go func() { io.Copy(u, c); u.Close() }()
		go func() { io.Copy(c, u); c.Close() }()
	}
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// TestRun_databaseOutage cuts the server off PostgreSQL: requests that need
// the database get a prompt 503 with Retry-After, the update check keeps
// answering from memory, /readyz reports it, and service comes back by
// itself once the database is reachable again.
func TestRun_databaseOutage(t *testing.T) {
	dsn, err := url.Parse(dbtest.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, dsn.Host)
	dsn.Host = p.ln.Addr().String()
	const secret = "outage-test-secret"
	s := startServer(t, map[string]string{"WEMESSE_DATABASE_URL": dsn.String(), "WEMESSE_SIGNATURE": secret})
	uploadBuild(t, s, secret, "2264_00", "build")
	report := func() (int, time.Duration) {
		start := time.Now()
		req, _ := http.NewRequest("POST", s.base+"/api/v1/users", strings.NewReader(`{"SessionID": 1, "AppVersion": "2264_00", "DeviceMac": "m"}`))
		req.Header.Set("signature", secret)
		resp, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == 503 && resp.Header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
		return resp.StatusCode, time.Since(start)
	}
	if code, _ := report(); code != 200 {
		t.Fatalf("before the outage: %d", code)
	}

	p.cut()
	for range 5 {
		code, took := report()
		if code != http.StatusServiceUnavailable || took > 5*time.Second {
			t.Errorf("during the outage: %d after %v, want a prompt 503", code, took)
		}
	}
	if code, body := get(t, s, "/api/v1/updates/2263_00", ""); code != 200 || !strings.Contains(string(body), "2264_00") {
		t.Errorf("the update check during the outage: %d %s", code, body)
	}
	if code, _ := get(t, s, "/readyz", ""); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz during the outage: %d, want 503", code)
	}

	p.restore()
	back := time.Now()
	for {
		if code, _ := report(); code == 200 {
			break
		}
		if time.Since(back) > 2*time.Second {
			t.Fatalf("not recovered 2s after the database returned")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("recovered %v after the database returned", time.Since(back))
	if code, _ := get(t, s, "/readyz", ""); code != 200 {
		t.Errorf("/readyz after the outage: %d", code)
	}
}
