package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
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

func TestParseStatus(t *testing.T) {
	m, err := parseStatus(strings.NewReader("Name:\twemesse\nVmHWM:\t  402000 kB\nVmRSS:\t  120000 kB\nThreads:\t9\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m.rssKB != 120000 || m.hwmKB != 402000 {
		t.Errorf("got %+v", m)
	}
	if _, err := parseStatus(strings.NewReader("Name:\tx\n")); err == nil {
		t.Error("missing fields accepted")
	}
}

func TestParseCreated(t *testing.T) {
	id, secret, err := parseCreated("Created client signature 7. Copy the secret below now: it is stored only as a hash and will not be shown again.\nabc_DEF-123\n")
	if err != nil || id != 7 || secret != "abc_DEF-123" {
		t.Errorf("got %d %q %v", id, secret, err)
	}
	if _, _, err := parseCreated("only one line\n"); err == nil {
		t.Error("one line accepted")
	}
}

func TestLoopbackOnly(t *testing.T) {
	if err := loopbackOnly("http://127.0.0.1:9000/x"); err != nil {
		t.Error(err)
	}
	for _, u := range []string{"http://localhost:9000/", "http://10.0.0.1/", "https://example.com/"} {
		if loopbackOnly(u) == nil {
			t.Errorf("%s accepted", u)
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
