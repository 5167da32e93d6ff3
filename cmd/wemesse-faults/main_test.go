package main

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// resolveTest counts A and B on universal releases, C on an arm64 build for
// arm64 devices (the default) and on the universal one otherwise; Z has no
// release.
func resolveTest(version, abi string) (releaseKey, bool) {
	if abi == "" {
		abi = "arm64"
	}
	switch {
	case version == "C" && abi == "arm64":
		return releaseKey{"C", "arm64"}, true
	case version == "A", version == "B", version == "C":
		return releaseKey{version, ""}, true
	}
	return releaseKey{}, false
}

func dev(abi string, steps ...string) *ledgerDevice {
	d := &ledgerDevice{session: 1, mac: "m", abi: abi}
	for _, s := range steps {
		v, o, _ := strings.Cut(s, ":")
		a := attempt{version: v, outcome: acked}
		switch o {
		case "?":
			a.outcome = unknown
		case "x":
			a.outcome = refused
		}
		d.attempts = append(d.attempts, a)
	}
	return d
}

func TestSettleDefinite(t *testing.T) {
	// New device, repeat (no count), change, back again, a version without a
	// release, and refused reports that must be ignored.
	st := settle([]*ledgerDevice{dev("", "A", "A", "B:x", "B", "A", "Z", "Z", "C")}, resolveTest, 12, nil)
	want := map[releaseKey]span{{"A", ""}: {2, 2}, {"B", ""}: {1, 1}, {"C", "arm64"}: {1, 1}}
	if !maps.Equal(st.uploads, want) {
		t.Errorf("uploads = %v, want %v", st.uploads, want)
	}
	e := st.devices[0]
	if !e.definite || !e.mustExist || !e.mayExist || len(e.finals) != 1 || !e.finals["C"] {
		t.Errorf("device = %+v", e)
	}
}

func TestSettleABI(t *testing.T) {
	st := settle([]*ledgerDevice{dev("x86", "C"), dev("arm64", "C"), dev("", "C")}, resolveTest, 12, nil)
	want := map[releaseKey]span{{"C", ""}: {1, 1}, {"C", "arm64"}: {2, 2}}
	if !maps.Equal(st.uploads, want) {
		t.Errorf("uploads = %v, want %v", st.uploads, want)
	}
}

func TestSettleUnknown(t *testing.T) {
	// A (acked), B (unknown), A (acked): if B committed, A counts twice.
	st := settle([]*ledgerDevice{dev("", "A", "B:?", "A")}, resolveTest, 12, nil)
	want := map[releaseKey]span{{"A", ""}: {1, 2}, {"B", ""}: {0, 1}}
	if !maps.Equal(st.uploads, want) {
		t.Errorf("uploads = %v, want %v", st.uploads, want)
	}
	e := st.devices[0]
	if e.definite || !e.mustExist || len(e.finals) != 1 || !e.finals["A"] || e.unknowns != 1 {
		t.Errorf("device = %+v", e)
	}
	if st.exhaustive != 1 || st.approximated != 0 {
		t.Errorf("exhaustive %d, approximated %d", st.exhaustive, st.approximated)
	}

	// Only unknown reports: the row may or may not exist.
	st = settle([]*ledgerDevice{dev("", "A:?", "B:?")}, resolveTest, 12, nil)
	e = st.devices[0]
	if e.mustExist || !e.mayExist || !e.finals["A"] || !e.finals["B"] || len(e.finals) != 2 {
		t.Errorf("device = %+v", e)
	}
	want = map[releaseKey]span{{"A", ""}: {0, 1}, {"B", ""}: {0, 1}}
	if !maps.Equal(st.uploads, want) {
		t.Errorf("uploads = %v, want %v", st.uploads, want)
	}

	// Only refused reports: no row, nothing counted.
	st = settle([]*ledgerDevice{dev("", "A:x", "B:x")}, resolveTest, 12, nil)
	if e := st.devices[0]; e.mayExist || e.mustExist || len(st.uploads) != 0 {
		t.Errorf("device = %+v, uploads %v", e, st.uploads)
	}
}

func TestSettleObserved(t *testing.T) {
	d := func() []*ledgerDevice { return []*ledgerDevice{dev("", "A", "B:?")} }
	row := func(found bool, v string) func(int) observation {
		return func(int) observation { return observation{found, v} }
	}
	for _, tc := range []struct {
		obs  func(int) observation
		want map[releaseKey]span
	}{
		{nil, map[releaseKey]span{{"A", ""}: {1, 1}, {"B", ""}: {0, 1}}},
		{row(true, "B"), map[releaseKey]span{{"A", ""}: {1, 1}, {"B", ""}: {1, 1}}},
		{row(true, "A"), map[releaseKey]span{{"A", ""}: {1, 1}, {"B", ""}: {0, 0}}},
		// A row no subset explains: the bounds stay unconditioned.
		{row(true, "C"), map[releaseKey]span{{"A", ""}: {1, 1}, {"B", ""}: {0, 1}}},
		{row(false, ""), map[releaseKey]span{{"A", ""}: {1, 1}, {"B", ""}: {0, 1}}},
	} {
		st := settle(d(), resolveTest, 12, tc.obs)
		if !maps.Equal(st.uploads, tc.want) {
			t.Errorf("uploads = %v, want %v", st.uploads, tc.want)
		}
		if e := st.devices[0]; !e.finals["A"] || !e.finals["B"] || len(e.finals) != 2 {
			t.Errorf("finals = %v: the row expectations must not be conditioned", e.finals)
		}
	}
	// A, B (unknown), A: the row is A either way, so B stays open.
	st := settle([]*ledgerDevice{dev("", "A", "B:?", "A")}, resolveTest, 12, row(true, "A"))
	if want := (map[releaseKey]span{{"A", ""}: {1, 2}, {"B", ""}: {0, 1}}); !maps.Equal(st.uploads, want) {
		t.Errorf("uploads = %v, want %v", st.uploads, want)
	}
}

// TestSettleLooseContainsExact checks that the loose bounds, used for
// devices with many unknown reports, contain the exact ones.
func TestSettleLooseContainsExact(t *testing.T) {
	versions := []string{"A", "B", "C", "Z"}
	for seed := range 300 {
		var steps []string
		for i := range 2 + seed%7 {
			s := versions[(seed*7+i*3+i*i)%len(versions)]
			switch (seed + i) % 3 {
			case 1:
				s += ":?"
			case 2:
				if seed%5 == 0 {
					s += ":x"
				}
			}
			steps = append(steps, s)
		}
		exact := settle([]*ledgerDevice{dev("", steps...)}, resolveTest, 12, nil)
		loose := settle([]*ledgerDevice{dev("", steps...)}, resolveTest, 0, nil)
		if exact.devices[0].unknowns == 0 {
			continue
		}
		for k, e := range exact.uploads {
			l := loose.uploads[k]
			if l.min > e.min || l.max < e.max {
				t.Errorf("%v: %v exact %v, loose %v", steps, k, e, l)
			}
		}
		for f := range exact.devices[0].finals {
			if !loose.devices[0].finals[f] {
				t.Errorf("%v: final %s missing from loose %v", steps, f, loose.devices[0].finals)
			}
		}
		if exact.devices[0].mustExist != loose.devices[0].mustExist {
			t.Errorf("%v: mustExist exact %t loose %t", steps, exact.devices[0].mustExist, loose.devices[0].mustExist)
		}
	}
}

func TestClassify(t *testing.T) {
	t0 := time.Unix(1000, 0)
	from, to := t0.Add(10*time.Second), t0.Add(20*time.Second)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	for _, tc := range []struct {
		status     int
		start, end float64
		want       outcome
	}{
		{200, 1, 2, acked},
		{200, 12, 13, acked},
		{503, 12, 13, refused},
		{503, 9, 11, unknown},  // across the stop
		{503, 19, 21, unknown}, // across the start
		{503, 1, 2, unknown},   // outside the outage
		{0, 12, 13, unknown},   // no answer: the report may still be queued and committed later
		{500, 12, 13, unknown},
	} {
		if got := classify(tc.status, at(tc.start), at(tc.end), from, to); got != tc.want {
			t.Errorf("classify(%d, %v..%v) = %v, want %v", tc.status, tc.start, tc.end, got, tc.want)
		}
	}
	if got := classify(503, at(12), at(13), time.Time{}, time.Time{}); got != unknown {
		t.Errorf("no outage window: %v", got)
	}
}

func TestJSONError(t *testing.T) {
	for _, tc := range []struct {
		ct, body string
		want     bool
	}{
		{"application/json; charset=utf-8", `{"error":"Bad."}`, true},
		{"application/json", `{"error":"Bad."}` + "\n", true},
		{"text/plain; charset=utf-8", `{"error":"Bad."}`, false},
		{"application/json", `{"error":""}`, false},
		{"application/json", `{"error":"Bad.","extra":1}`, false},
		{"application/json", `{"error":3}`, false},
		{"application/json", `400 Bad Request`, false},
		{"", `{"error":"Bad."}`, false},
	} {
		if _, got := jsonError(tc.ct, []byte(tc.body)); got != tc.want {
			t.Errorf("jsonError(%q, %q) = %t", tc.ct, tc.body, got)
		}
	}
}

func TestPaceDelay(t *testing.T) {
	if d := paceDelay(1<<20, 1<<20, 0); d != time.Second {
		t.Errorf("1 MiB at 1 MiB/s from 0: %v", d)
	}
	if d := paceDelay(1<<20, 1<<20, 2*time.Second); d >= 0 {
		t.Errorf("behind schedule: %v", d)
	}
	if d := paceDelay(100, 0, 0); d != 0 {
		t.Errorf("no rate: %v", d)
	}
}

func TestRandomDataIsDeterministic(t *testing.T) {
	a, sa := randomData(7, 1000)
	b, sb := randomData(7, 1000)
	c, sc := randomData(8, 1000)
	if !bytes.Equal(a, b) || sa != sb || bytes.Equal(a, c) || sa == sc {
		t.Error("randomData is not a deterministic function of its seed")
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-quick", "-only", "flood,outage"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.outage != 5*time.Second || o.flood != 3*time.Second || !slices.Equal(o.only, []string{"outage", "flood"}) {
		t.Errorf("options = %+v", o)
	}
	o, err = parseFlags([]string{"-quick", "-outage", "7s"}, &bytes.Buffer{})
	if err != nil || o.outage != 7*time.Second || len(o.only) != len(scenarioNames) {
		t.Errorf("options = %+v, %v", o, err)
	}
	for _, args := range [][]string{
		{"-only", "nope"}, {"-only", ","}, {"-outage", "10ms"}, {"extra"}, {"-server", "/nonexistent/wemesse"},
		{"-short-shutdown", "20s"}, {"-timeout", "1s"},
	} {
		if _, err := parseFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parseFlags(%q): no error", args)
		}
	}
}

func TestRunHelpAndBadFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, &out, &errOut); err != nil {
		t.Errorf("-h: %v", err)
	}
	if !strings.Contains(errOut.String(), "-outage") {
		t.Errorf("help lacks -outage:\n%s", errOut.String())
	}
	if err := run(context.Background(), []string{"-only", "nope"}, &out, &errOut); err == nil {
		t.Error("-only nope: no error")
	}
}

func TestSummaryLine(t *testing.T) {
	var out bytes.Buffer
	h := &harness{out: &out, scenarioStart: time.Now()}
	h.check(true, "one")
	h.check(false, "two")
	h.pass("three")
	h.summary()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if got := lines[len(lines)-1]; got != "2 passed, 1 failed" {
		t.Errorf("last line %q", got)
	}
	if !strings.Contains(out.String(), "FAIL    two") {
		t.Errorf("output:\n%s", out.String())
	}
}
