package logbatch_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wemesse/server/internal/logbatch"
)

// sink records what reaches it; while gate is held, writes wait.
type sink struct {
	gate   sync.RWMutex // held for writing: writes block
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
	fail   bool
}

func (s *sink) Write(p []byte) (int, error) {
	s.gate.RLock()
	defer s.gate.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return 0, errors.New("sink failed")
	}
	s.writes++
	return s.buf.Write(p)
}

func (s *sink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// lines splits out into its lines, the drop reports apart.
func lines(t *testing.T, out string) (lines []string, dropReports []map[string]any) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), `{"time"`) {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("drop report %q is not JSON: %v", sc.Text(), err)
			}
			dropReports = append(dropReports, m)
			continue
		}
		lines = append(lines, sc.Text())
	}
	return lines, dropReports
}

func TestWriter_closeWritesEverythingInOrder(t *testing.T) {
	var s sink
	// An interval no test waits for: only Close can have written the lines.
	w := logbatch.New(&s, logbatch.Options{Interval: time.Hour, BufferSize: 256, Buffers: 3})
	const n = 1000
	for i := range n {
		fmt.Fprintf(w, "line %d\n", i)
	}
	fmt.Fprintf(w, "%s\n", strings.Repeat("x", 1000)) // longer than a buffer
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, "after close\n")
	got, reports := lines(t, s.String())
	if len(got) != n+2 || len(reports) != 0 {
		t.Fatalf("got %d lines and %d drop reports, want %d and 0", len(got), len(reports), n+2)
	}
	for i := range n {
		if want := fmt.Sprintf("line %d", i); got[i] != want {
			t.Fatalf("line %d: got %q, want %q", i, got[i], want)
		}
	}
	if got[n] != strings.Repeat("x", 1000) || got[n+1] != "after close" {
		t.Errorf("last lines: got %q…, %q", got[n][:10], got[n+1])
	}
	if s.writes >= n/2 {
		t.Errorf("%d writes for %d lines: not batched", s.writes, n)
	}
	if w.Dropped() != 0 {
		t.Errorf("Dropped = %d, want 0", w.Dropped())
	}
}

func TestWriter_flushesWithoutClose(t *testing.T) {
	var s sink
	w := logbatch.New(&s, logbatch.Options{Interval: 10 * time.Millisecond})
	defer w.Close()
	fmt.Fprintf(w, "one line\n")
	// Not a timing assertion: the line must come out at some point without
	// Close or more lines pushing it.
	deadline := time.Now().Add(10 * time.Second)
	for s.String() != "one line\n" {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s the sink holds %q", s.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWriter_stalledSinkDropsCountsAndReports(t *testing.T) {
	var s sink
	w := logbatch.New(&s, logbatch.Options{Interval: 20 * time.Millisecond, BufferSize: 64, Buffers: 2})
	fmt.Fprintf(w, "before the stall\n")
	s.gate.Lock() // the sink stalls
	// Every Write must return while the sink is stalled: memory is bounded
	// and no caller waits for the sink for long.
	const n = 200
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		for i := range n {
			fmt.Fprintf(w, "line %03d\n", i)
		}
	}()
	select {
	case <-returned:
	case <-time.After(time.Minute):
		t.Fatal("writes blocked on a stalled sink")
	}
	dropped := w.Dropped()
	// 2 buffers of 64 bytes hold at most 14 of the lines (one more may be
	// in the flusher's write), so most were dropped.
	if dropped < n-30 {
		t.Errorf("Dropped = %d of %d lines with 128 bytes of buffers", dropped, n)
	}
	s.gate.Unlock()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, reports := lines(t, s.String())
	if uint64(len(got)) != n+1-dropped {
		t.Errorf("%d lines written and %d dropped of %d", len(got), dropped, n+1)
	}
	if len(reports) != 1 {
		t.Fatalf("%d drop reports, want 1: %q", len(reports), s.String())
	}
	if reports[0]["level"] != "WARN" || reports[0]["dropped"] != float64(dropped) {
		t.Errorf("drop report %v, want level WARN and dropped %d", reports[0], dropped)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] && got[i-1] != "before the stall" {
			t.Errorf("lines out of order: %q after %q", got[i], got[i-1])
		}
	}
}

func TestWriter_failingSinkCounts(t *testing.T) {
	s := sink{fail: true}
	w := logbatch.New(&s, logbatch.Options{Interval: time.Hour})
	fmt.Fprintf(w, "a\nb\n")
	fmt.Fprintf(w, "c\n")
	w.Close()
	if got := w.Dropped(); got != 3 {
		t.Errorf("Dropped = %d, want 3", got)
	}
}

func TestWriter_concurrentLinesArriveWhole(t *testing.T) {
	var s sink
	// Small buffers, so that writers often wait for the flusher: a line is
	// written whole or dropped and counted, never torn.
	w := logbatch.New(&s, logbatch.Options{Interval: 5 * time.Millisecond, BufferSize: 512, Buffers: 4})
	const writers, each = 8, 500
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range each {
				fmt.Fprintf(w, "writer %d line %d\n", g, i)
			}
		})
	}
	wg.Wait()
	w.Close()
	got, reports := lines(t, s.String())
	if uint64(len(got))+w.Dropped() != writers*each {
		t.Fatalf("%d lines written, %d dropped, want %d in all", len(got), w.Dropped(), writers*each)
	}
	var reported float64
	for _, r := range reports {
		reported += r["dropped"].(float64)
	}
	if reported != float64(w.Dropped()) {
		t.Errorf("%d lines dropped, %v reported", w.Dropped(), reported)
	}
	next := make([]int, writers)
	for _, l := range got {
		var g, i int
		if _, err := fmt.Sscanf(l, "writer %d line %d", &g, &i); err != nil || g < 0 || g >= writers || i < next[g] {
			t.Fatalf("line %q: torn, or out of order", l)
		}
		next[g] = i + 1
	}
}

func TestAppendTime(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(2026, 12, 4, 19, 21, 42, 0, time.UTC),
		time.Date(2026, 12, 4, 19, 21, 42, 120_999_999, time.FixedZone("", 3600)),
	} {
		var buf bytes.Buffer
		if err := slog.NewJSONHandler(&buf, nil).Handle(context.Background(), slog.NewRecord(tm, slog.LevelInfo, "m", 0)); err != nil {
			t.Fatal(err)
		}
		want := `{"time":"` + string(logbatch.AppendTime(nil, tm)) + `","level":"INFO","msg":"m"}` + "\n"
		if buf.String() != want {
			t.Errorf("got %s, want slog's %s", want, buf.String())
		}
	}
}

func TestWriter_flushWritesWhatIsHeld(t *testing.T) {
	var s sink
	w := logbatch.New(&s, logbatch.Options{Interval: time.Hour, BufferSize: 64, Buffers: 2})
	defer w.Close()
	for i := range 5 {
		fmt.Fprintf(w, "line %d of twenty\n", i) // the first buffer fills and is queued
	}
	if !w.Flush(time.Minute) {
		t.Fatal("Flush timed out on a sink that takes every line")
	}
	if got, _ := lines(t, s.String()); len(got) != 5 || got[4] != "line 4 of twenty" {
		t.Fatalf("after Flush the sink holds %q", got)
	}
	s.gate.Lock() // a stalled sink: Flush gives up after its timeout
	fmt.Fprintf(w, "stuck\n")
	if w.Flush(50 * time.Millisecond) {
		t.Error("Flush reported success on a stalled sink")
	}
	s.gate.Unlock()
}
