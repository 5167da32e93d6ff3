package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wemesse/server/internal/proctest"
)

// server is the real program, run by run in this process, or the binary
// as a child process (startProcess).
type server struct {
	base   string // http(s)://127.0.0.1:PORT
	client *http.Client
	env    map[string]string
	cancel context.CancelFunc
	exited chan struct{} // closed when run has returned runErr
	runErr error
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
	addr := freeAddr(tb)
	dir := tb.TempDir()
	full := map[string]string{
		"WEMESSE_ADDR":          addr,
		"WEMESSE_DATABASE_URL":  dir + "/wemesse.db",
		"WEMESSE_UPLOAD_DIR":    dir + "/uploads",
		"WEMESSE_PUBLIC_URL":    "http://" + addr + "/uploads",
		"WEMESSE_ARGON2_MEMORY": "1024",
		// These tests upload made-up bytes; TestServer_verifiesUploads and
		// the handler tests check verification.
		"WEMESSE_VERIFY_APK": "false",
	}
	maps.Copy(full, env)
	s := &server{base: "http://" + addr, client: http.DefaultClient, env: full, exited: make(chan struct{}), log: &syncBuffer{}}
	if len(tlsClient) > 0 {
		s.base, s.client = "https://"+addr, tlsClient[0]
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		s.runErr = run(ctx, []string{"serve"}, func(k string) string { return full[k] }, io.Discard, s.log)
		close(s.exited)
	}()
	tb.Cleanup(func() {
		s.cancel()
		<-s.exited
		if tb.Failed() {
			tb.Logf("server log:\n%s", s.log.String())
		}
	})
	wctx, stop := context.WithTimeout(ctx, 60*time.Second)
	defer stop()
	if err := proctest.WaitHealthy(wctx, s.client, s.base, s.exited); err != nil {
		return nil, fmt.Errorf("%w: %v\nlog:\n%s", err, s.runErr, s.log.String())
	}
	return s, nil
}

// startProcess runs bin, the server built by proctest.Build, with env over
// proctest's defaults and upload verification off (these tests upload
// made-up bytes), and kills it at the end of the test.
func startProcess(tb testing.TB, bin string, env map[string]string) *server {
	tb.Helper()
	settings := map[string]string{"WEMESSE_VERIFY_APK": "false"}
	maps.Copy(settings, env)
	p, err := proctest.Start(context.Background(), proctest.Options{Binary: bin, Dir: tb.TempDir(), Settings: settings})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Kill)
	return &server{base: p.URL, client: http.DefaultClient, env: env}
}

// buildBinary builds the server into a temp dir.
func buildBinary(tb testing.TB) string {
	tb.Helper()
	ctx := context.Background()
	root, err := proctest.ModuleRoot(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	bin := filepath.Join(tb.TempDir(), "wemesse")
	if err := proctest.Build(ctx, root, bin); err != nil {
		tb.Fatal(err)
	}
	return bin
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	addr, err := proctest.FreeAddr()
	if err != nil {
		tb.Fatal(err)
	}
	return addr
}

// stop cancels the server and checks that it stopped cleanly.
func (s *server) stop(tb testing.TB) {
	tb.Helper()
	s.cancel()
	select {
	case <-s.exited:
		if s.runErr != nil {
			tb.Fatalf("run returned %v", s.runErr)
		}
	case <-time.After(60 * time.Second):
		tb.Fatal("the server did not stop within 60s")
	}
}

// postUpload streams file as the build of version and returns the status
// and body; status 0 when the request failed.
func postUpload(ctx context.Context, s *server, secret, version string, file io.Reader) (int, []byte) {
	req, err := proctest.UploadRequest(ctx, s.base, secret, []proctest.Field{{Name: "appVersion", Value: version}}, "wemesse.apk", file)
	if err != nil {
		return 0, []byte(err.Error())
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// uploadBuild uploads content as the build of version, or fails the test.
func uploadBuild(tb testing.TB, s *server, secret, version, content string) {
	tb.Helper()
	if code, body := postUpload(context.Background(), s, secret, version, strings.NewReader(content)); code != http.StatusCreated {
		tb.Fatalf("upload: %d %s", code, body)
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
