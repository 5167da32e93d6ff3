package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// server is the real program, run by run in this process.
type server struct {
	base   string // http(s)://127.0.0.1:PORT
	client *http.Client
	env    map[string]string
	cancel context.CancelFunc
	done   chan error
	log    *syncBuffer
}

// startServer runs `wemesse serve` with env over test defaults (a free
// loopback port, fast Argon2, a SQLite file and upload dir in a temp dir)
// and waits until it answers /healthz. tlsClient, when set, is the client
// for an HTTPS server.
func startServer(tb testing.TB, env map[string]string, tlsClient ...*http.Client) *server {
	tb.Helper()
	for attempt := 0; ; attempt++ {
		s, err := tryStart(tb, env, tlsClient...)
		if err == nil {
			return s
		}
		// Another process may take the free port between probe and listen.
		if attempt == 2 || !strings.Contains(err.Error(), "address already in use") {
			tb.Fatal(err)
		}
	}
}

func tryStart(tb testing.TB, env map[string]string, tlsClient ...*http.Client) (*server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := tb.TempDir()
	full := map[string]string{
		"WEMESSE_ADDR":          addr,
		"WEMESSE_DATABASE_URL":  dir + "/wemesse.db",
		"WEMESSE_UPLOAD_DIR":    dir + "/uploads",
		"WEMESSE_PUBLIC_URL":    "http://" + addr + "/uploads",
		"WEMESSE_ARGON2_MEMORY": "1024",
	}
	for k, v := range env {
		full[k] = v
	}
	s := &server{base: "http://" + addr, client: http.DefaultClient, env: full, done: make(chan error, 1), log: &syncBuffer{}}
	if len(tlsClient) > 0 {
		s.base, s.client = "https://"+addr, tlsClient[0]
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		s.done <- run(ctx, []string{"serve"}, func(k string) string { return full[k] }, io.Discard, s.log)
	}()
	tb.Cleanup(func() {
		s.cancel()
		err := <-s.done
		s.done <- err
		if tb.Failed() {
			tb.Logf("server log:\n%s", s.log.String())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-s.done:
			s.done <- err
			return nil, fmt.Errorf("the server stopped while starting: %v\nlog:\n%s", err, s.log.String())
		default:
		}
		if resp, err := s.client.Get(s.base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the server did not answer /healthz within 60s\nlog:\n%s", s.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop cancels the server and checks that it stopped cleanly.
func (s *server) stop(tb testing.TB) {
	tb.Helper()
	s.cancel()
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup
		if err != nil {
			tb.Fatalf("run returned %v", err)
		}
	case <-time.After(60 * time.Second):
		tb.Fatal("the server did not stop within 60s")
	}
}

// syncBuffer is a bytes.Buffer safe for the server's log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
