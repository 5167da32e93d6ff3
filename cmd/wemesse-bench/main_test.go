package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wemesse/server/internal/apk"
	"github.com/wemesse/server/internal/proctest"
)

func TestRunListsScenarios(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"list"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "auth") {
		t.Errorf("list output lacks the auth scenario:\n%s", out.String())
	}
}

func TestRunRejectsBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"nope"},
		{"auth", "extra"},
		{"auth", "-set", "WEMESSE_ADDR=:1"},
		{"auth", "-set", "PATH=/"},
		{"auth", "-flood-duration", "1ms", "-server", "/nonexistent"},
		{"update", "-load", "nope", "-server", "/nonexistent"},
	} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, &out, &errOut); err == nil {
			t.Errorf("run(%q) = nil, want an error", args)
		}
	}
}

func TestRunHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"auth", "-h"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut.String(), "-flood-duration") {
		t.Errorf("help lacks -flood-duration:\n%s", errOut.String())
	}
}

func TestPercentile(t *testing.T) {
	ds := func() []time.Duration {
		return []time.Duration{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 5}, {0.99, 10}, {1, 10}, {0.1, 1}, {0.01, 1}} {
		if got := percentile(ds(), tc.p); got != tc.want {
			t.Errorf("percentile(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile(nil) = %v", got)
	}
}

func TestReportChecks(t *testing.T) {
	r := newReport("t", machine{nproc: 1, cpu: "cpu", goVer: "go"})
	r.info("a", "x", "1")
	if !r.check("a", "lt", target{value: 1, op: "<", limit: 2, format: fmtCount}) {
		t.Error("1 < 2 failed")
	}
	if r.check("a", "eq", target{value: 1, op: "==", limit: 0, format: fmtCount}) {
		t.Error("1 == 0 passed")
	}
	if !r.check("b", "le", target{value: 3, op: "<=", limit: 3, format: fmtRatio}) {
		t.Error("3 <= 3 failed")
	}
	if r.checks() != 3 || r.failures() != 1 {
		t.Errorf("checks %d failures %d, want 3 and 1", r.checks(), r.failures())
	}
	var out bytes.Buffer
	r.print(&out)
	for _, want := range []string{"PASS", "FAIL", "<= 3.00", "2 of 3 targets passed", "nproc 1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestFmtDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		9150 * time.Millisecond:   "9.15 s",
		42 * time.Second:          "42.0 s",
		134400 * time.Microsecond: "134 ms",
		4690 * time.Microsecond:   "4.69 ms",
		63200 * time.Nanosecond:   "63.2 µs",
		500 * time.Nanosecond:     "0.50 µs",
	} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestRunListsEveryScenario(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"list"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"auth", "update", "device", "users", "upload", "all"} {
		if !strings.Contains(out.String(), "  "+name+" ") {
			t.Errorf("list output lacks %s:\n%s", name, out.String())
		}
	}
}

// Invalid flags fail before anything is built or started.
func TestRunRejectsBadScenarioFlags(t *testing.T) {
	for _, args := range [][]string{
		{"update", "-update-duration", "1ms"},
		{"update", "-update-connections", "0"},
		{"device", "-device-clients", "0"},
		{"device", "-device-users", "0"},
		{"users", "-list-users", "0"},
		{"upload", "-upload-bytes", "0"},
		{"update", "-db", "mysql"},
		{"update", "-pg-set", "port=5432"},
		{"update", "-pg-set", "novalue"},
		{"all", "-requests", "0"},
	} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, &out, &errOut); err == nil {
			t.Errorf("run(%q) = nil, want an error", args)
		}
	}
}

func TestAllRegistersEveryFlag(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"all", "-h"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"-update-duration", "-device-users", "-list-users", "-upload-bytes", "-flood-duration", "-db", "-markdown"} {
		if !strings.Contains(errOut.String(), f) {
			t.Errorf("all -h lacks %s", f)
		}
	}
}

func TestDBList(t *testing.T) {
	var d dbList
	if err := d.Set("postgres, sqlite,postgres"); err != nil {
		t.Fatal(err)
	}
	if d.String() != "postgres,sqlite" {
		t.Errorf("got %q", d.String())
	}
	if d.Set("oracle") == nil {
		t.Error("oracle accepted")
	}
}

func TestRowCounter(t *testing.T) {
	body := `[{"ID":1,"x":"{\"ID\""},{"ID":2},{"ID":3}]` + "\n"
	for size := 1; size <= len(body); size++ {
		c := &rowCounter{}
		for i := 0; i < len(body); i += size {
			c.Write([]byte(body[i:min(i+size, len(body))]))
		}
		if c.rows != 3 || c.bytes != int64(len(body)) || !c.complete() {
			t.Errorf("chunks of %d: rows %d bytes %d complete %t", size, c.rows, c.bytes, c.complete())
		}
	}
	c := &rowCounter{}
	c.Write([]byte(`[{"ID":1}`))
	if c.complete() {
		t.Error("a cut array counts as complete")
	}
}

func TestMultipartBodyStreams(t *testing.T) {
	const size = 3<<20 + 123
	m, err := newMultipartBody("2267_00", size)
	if err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(m.reader())
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(all)) != m.length() {
		t.Fatalf("read %d bytes, length says %d", len(all), m.length())
	}
	_, params, _ := mime.ParseMediaType(m.contentType)
	mr := multipart.NewReader(bytes.NewReader(all), params["boundary"])
	sizes := map[string]int64{}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, p)
		sizes[p.FormName()] = n
	}
	if sizes["tmpFile"] != size || sizes["appVersion"] != 7 {
		t.Errorf("parts %v", sizes)
	}

	srv := httptest.NewServer(http.HandlerFunc(discardMultipart))
	defer srv.Close()
	if _, err := m.post(context.Background(), srv.URL, "", http.StatusCreated); err != nil {
		t.Fatal(err)
	}
}

func TestReportResults(t *testing.T) {
	r := newReport("t", machine{nproc: 2, cpu: "cpu", goVer: "go"})
	r.result(resultRow{scenario: "s", db: "sqlite", measured: "10 req/s", checks: []rowCheck{
		{label: "ratio", target: target{value: 0.95, op: ">=", limit: 0.9, format: fmtRatio}},
		{label: "p99", target: target{value: 12, op: "<", limit: 10, format: fmtMS}},
	}})
	r.result(resultRow{scenario: "info", db: "postgres", measured: "1 s"})
	r.check("a", "x", target{value: 1, op: "==", limit: 1, format: fmtCount})
	if r.checks() != 3 || r.failures() != 1 {
		t.Errorf("checks %d failures %d, want 3 and 1", r.checks(), r.failures())
	}
	var text, md bytes.Buffer
	r.write(&text, false)
	r.write(&md, true)
	for _, want := range []string{"ratio >= 0.90", "p99 < 10.0 ms", "FAIL (p99 12.0 ms)", "2 of 3 targets passed", "SERVER PEAK RSS"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	for _, want := range []string{"| scenario | db |", "|---|", "| s | sqlite | 10 req/s |", "- machine: nproc 2"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown report lacks %q:\n%s", want, md.String())
		}
	}
}

func TestLoadStatsAdd(t *testing.T) {
	var s loadStats
	s.add(loadStats{ok: 10, codes: map[uint16]int{200: 10}, latencies: make([]time.Duration, 10), elapsed: time.Second})
	s.add(loadStats{ok: 20, codes: map[uint16]int{200: 20, 0: 1}, errors: map[string]int{"x": 1}, latencies: make([]time.Duration, 21), elapsed: time.Second})
	if s.ok != 30 || s.failed() != 1 || s.rate() != 15 || len(s.latencies) != 31 {
		t.Errorf("got %+v", s)
	}
}

func TestFmtInt(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1000: "-1,000"} {
		if got := fmtInt(n); got != want {
			t.Errorf("fmtInt(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestRangeFlags: a flag's value outside its range, or not a number,
// fails when the command line is parsed, alone or under all, before any
// scenario runs; one inside it is taken.
func TestRangeFlags(t *testing.T) {
	for _, args := range [][]string{
		{"users", "-list-users", "0"},
		{"all", "-console-releases", "3"},
		{"all", "-update-warmup", "2m"},
		{"upload", "-upload-bytes", "1e3"},
		{"auth", "-flood-duration", "10"},
	} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, &out, &errOut); err == nil || !strings.Contains(err.Error(), "invalid value") {
			t.Errorf("%q: err = %v, want an invalid value", args, err)
		}
	}
	var d deviceScenario
	fs := flag.NewFlagSet("device", flag.ContinueOnError)
	d.SetFlags(fs)
	if err := fs.Parse([]string{"-device-warmup", "0s", "-device-users", "20_000_000"}); err != nil {
		t.Fatal(err)
	}
	if d.warmup != 0 || d.users != 20_000_000 || d.rounds != 3 || d.duration != 4*time.Second {
		t.Errorf("parsed %+v, want warm-up 0, 20000000 users and the other defaults", d)
	}
}

// TestStaticChild runs the reference process's program in process: it
// serves the file's bytes with the Content-Type given, on loopback, until
// its stdin closes.
func TestStaticChild(t *testing.T) {
	file := t.TempDir() + "/body"
	if err := os.WriteFile(file, []byte(`{"Version":"2267_00"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- runStaticChild([]string{"-content-type", "application/json; charset=utf-8", "-body-file", file}, stdinR, stdoutW)
	}()
	line, err := bufio.NewReader(stdoutR).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	url := strings.TrimSpace(line)
	if err := proctest.LoopbackOnly(url); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(url + "/api/v1/updates/2266_00?device=x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != `{"Version":"2267_00"}` || resp.Header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("got %q with %q", body, resp.Header.Get("Content-Type"))
	}
	stdinW.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("child returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the child kept serving after its stdin closed")
	}
}

// TestNewAPK checks that the bench's generated builds verify as the
// server verifies uploads.
func TestNewAPK(t *testing.T) {
	for _, size := range []int64{4096, 3<<20 + 123} {
		a, err := newAPKOfSize(size)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(a.reader())
		if err != nil || int64(len(b)) != size {
			t.Fatalf("read %d bytes (%v), want %d", len(b), err, size)
		}
		info, err := apk.Verify(bytes.NewReader(b), size)
		if err != nil || info.Package != "org.wemesse.app" || len(info.Schemes) != 1 || info.Schemes[0] != 2 {
			t.Errorf("size %d: %+v, %v", size, info, err)
		}
		// The chunk digests computed while streaming stand for the chunks:
		// right ones verify, and wrong ones fail, so they are used.
		streamed := apk.NewChunks()
		streamed.Write(b)
		if _, err := apk.VerifyWith(bytes.NewReader(b), size, streamed); err != nil {
			t.Errorf("size %d with streamed chunk digests: %v", size, err)
		}
		if size > 1<<20 {
			wrong := apk.NewChunks()
			wrong.Write(bytes.Repeat([]byte{1}, len(b)))
			if _, err := apk.VerifyWith(bytes.NewReader(b), size, wrong); err == nil {
				t.Errorf("size %d: wrong chunk digests verified", size)
			}
		}
	}
}

func TestParseMachineCPU(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		busy, idle time.Duration
		wantErr    bool
	}{
		{"eight fields and guests", "cpu  100 5 50 800 20 3 7 15 0 0", 1800 * time.Millisecond, 8200 * time.Millisecond, false},
		{"a core's line", "cpu0 1 2 3 4 5 6 7 8", 0, 0, true},
		{"short", "cpu 1 2 3", 0, 0, true},
		{"bad number", "cpu 1 2 x 4 5 6 7 8", 0, 0, true},
	} {
		busy, idle, err := parseMachineCPU(tc.line)
		if busy != tc.busy || idle != tc.idle || (err != nil) != tc.wantErr {
			t.Errorf("%s: parseMachineCPU = %v, %v, %v; want %v, %v (error %t)", tc.name, busy, idle, err, tc.busy, tc.idle, tc.wantErr)
		}
	}
}

func TestMeasureCPU(t *testing.T) {
	side := time.Duration(0)
	used, err := measureCPU(func() (time.Duration, error) { return side, nil }, func() error {
		side = 3 * time.Second
		for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
		}
		return nil
	})
	if err != nil || used.side != 3*time.Second || used.bench <= 0 || used.busy <= 0 {
		t.Errorf("measureCPU = %+v, %v: want the side's 3s and some of this process's and the cores' time", used, err)
	}
	if s := perAnswer(3*time.Second, 1000); s != "3000.0 µs" {
		t.Errorf("perAnswer = %q", s)
	}
}
