package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/logbatch"
	"github.com/wemesse/server/internal/proctest"
)

// TestProcess_sigtermLosesNoAccessLine sends SIGTERM to a server process
// while clients keep it busy: every request that got an answer has its
// access line in the log, though lines are written in batches.
func TestProcess_sigtermLosesNoAccessLine(t *testing.T) {
	ctx := context.Background()
	bin := buildBinary(t)
	p, err := proctest.Start(ctx, proctest.Options{Binary: bin, Dir: t.TempDir(), Settings: map[string]string{
		"WEMESSE_DATABASE_URL": dbtest.SQLite(t), "WEMESSE_ARGON2_MEMORY": "1024", "WEMESSE_LOG_LEVEL": "info",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)

	const clients = 8
	var (
		mu       sync.Mutex
		answered []string // request ids of the answers received
		wg       sync.WaitGroup
	)
	started := make(chan struct{}, clients)
	for c := range clients {
		wg.Go(func() {
			client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second}
			defer client.CloseIdleConnections()
			// Bounded: the server stops answering within the test's time.
			for i := 0; i < 100_000; i++ {
				id := fmt.Sprintf("sigterm-%d-%d", c, i)
				req, _ := http.NewRequest(http.MethodGet, p.URL+"/api/v1/updates/2264_00", nil)
				req.Header.Set("X-Request-Id", id)
				resp, err := client.Do(req)
				if err != nil {
					return // the server has stopped
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				answered = append(answered, id)
				mu.Unlock()
				if i == 20 {
					started <- struct{}{}
				}
			}
		})
	}
	for range clients {
		<-started
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !p.WaitExit(60 * time.Second) {
		t.Fatal("the server did not stop within 60s of SIGTERM")
	}
	wg.Wait()
	if p.ExitErr() != nil {
		t.Fatalf("exit: %s\n%s", p.ExitDescription(), p.LogTail(20))
	}

	log, err := os.ReadFile(p.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	logged := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(log))
	for sc.Scan() {
		var line struct {
			Msg       string `json:"msg"`
			RequestID string `json:"request_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("a log line is not JSON: %q", sc.Text())
		}
		if line.Msg == "request" {
			logged[line.RequestID] = true
		}
	}
	if len(answered) < clients*20 {
		t.Fatalf("only %d requests answered", len(answered))
	}
	missing := 0
	for _, id := range answered {
		if !logged[id] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d answered requests have no access line after SIGTERM", missing, len(answered))
	}
	t.Logf("%d requests answered, all logged", len(answered))
}

// TestRun_shutdownWritesHeldLines holds every log line after start-up
// until shutdown (a flush interval of an hour): run must write them all
// before it returns, as it does on SIGTERM. The start-up lines are out
// before the server answers.
func TestRun_shutdownWritesHeldLines(t *testing.T) {
	defer func(o logbatch.Options) { logOptions = o }(logOptions)
	logOptions = logbatch.Options{Interval: time.Hour}
	s := startServer(t, map[string]string{"WEMESSE_LOG_LEVEL": "info"})
	started := s.log.String() // the start-up lines, written before serving
	if !strings.Contains(started, `"msg":"listening"`) {
		t.Fatalf("the start-up lines were not written before serving: %.300s", started)
	}
	const n = 100 // lines well under one buffer (64 KiB), so none is written early
	for i := range n {
		req, _ := http.NewRequest(http.MethodGet, s.base+"/api/v1/updates/2264_00", nil)
		req.Header.Set("X-Request-Id", fmt.Sprintf("held-%d", i))
		resp, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if got := s.log.String(); got != started {
		t.Fatalf("lines were written before shutdown, so this test shows nothing: %.300s", got[len(started):])
	}
	s.stop(t)
	logged := s.log.String()
	for i := range n {
		if !strings.Contains(logged, fmt.Sprintf(`"request_id":"held-%d"`, i)) {
			t.Fatalf("no access line for request %d after shutdown", i)
		}
	}
	if !strings.Contains(logged, `"msg":"stopped"`) {
		t.Error("no stopped line: the log was cut before the end")
	}
}
