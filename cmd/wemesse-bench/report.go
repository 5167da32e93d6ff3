package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// report collects a scenario's measured values and prints them as a table.
type report struct {
	scenario string
	machine  machine
	setup    []string // lines describing what was run
	rows     []row
	notes    []string
}

// row is one measured value. Target and Result are empty for values that
// are reported without a target.
type row struct {
	section, measure, value, target, result string
}

const (
	resultPass = "PASS"
	resultFail = "FAIL"
)

func newReport(scenario string, m machine) *report {
	return &report{scenario: scenario, machine: m}
}

// setupf adds a line to the header that describes the setup.
func (r *report) setupf(format string, args ...any) {
	r.setup = append(r.setup, fmt.Sprintf(format, args...))
}

// notef adds a line under the table.
func (r *report) notef(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// info records a value that has no target.
func (r *report) info(section, measure, value string) {
	r.rows = append(r.rows, row{section: section, measure: measure, value: value, target: "-"})
}

// check records a value against a target and reports whether it passed.
func (r *report) check(section, measure string, c target) bool {
	ok := c.pass()
	res := resultFail
	if ok {
		res = resultPass
	}
	r.rows = append(r.rows, row{
		section: section, measure: measure, value: c.format(c.value),
		target: c.op + " " + c.format(c.limit), result: res,
	})
	return ok
}

func (r *report) checks() int {
	n := 0
	for _, x := range r.rows {
		if x.result != "" {
			n++
		}
	}
	return n
}

func (r *report) failures() int {
	n := 0
	for _, x := range r.rows {
		if x.result == resultFail {
			n++
		}
	}
	return n
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "wemesse-bench %s\n", r.scenario)
	fmt.Fprintf(w, "machine: %s\n", r.machine)
	for _, s := range r.setup {
		fmt.Fprintf(w, "  %s\n", s)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ROW\tMEASURE\tVALUE\tTARGET\tRESULT")
	prev := ""
	for _, x := range r.rows {
		section := x.section
		if section == prev {
			section = ""
		} else {
			prev = section
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", section, x.measure, x.value, x.target, x.result)
	}
	tw.Flush()
	if len(r.notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.notes {
			fmt.Fprintf(w, "note: %s\n", n)
		}
	}
	fmt.Fprintf(w, "\n%d of %d targets passed\n", r.checks()-r.failures(), r.checks())
}

// target is a measured value and the bound it must respect.
type target struct {
	value  float64
	op     string // "<", "<=" or "=="
	limit  float64
	format func(float64) string
}

func (c target) pass() bool {
	switch c.op {
	case "<":
		return c.value < c.limit
	case "<=":
		return c.value <= c.limit
	case "==":
		return c.value == c.limit
	}
	return false
}

// Formats for values and targets.

func fmtMS(v float64) string    { return fmtDuration(time.Duration(v * float64(time.Millisecond))) }
func fmtRatio(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
func fmtCount(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
func fmtMB(v float64) string    { return strconv.FormatFloat(v, 'f', 1, 64) + " MB" }

// fmtDuration prints a duration in s, ms or µs with about three
// significant digits.
func fmtDuration(d time.Duration) string {
	switch {
	case d >= time.Second:
		return sig3(d.Seconds()) + " s"
	case d >= time.Millisecond:
		return sig3(float64(d)/float64(time.Millisecond)) + " ms"
	default:
		return sig3(float64(d)/float64(time.Microsecond)) + " µs"
	}
}

// sig3 prints v >= 0 with about three significant digits, never in
// exponent form.
func sig3(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// machine describes where the benchmark ran.
type machine struct {
	nproc    int
	cpu      string
	memTotal string
	goVer    string
}

func (m machine) String() string {
	s := fmt.Sprintf("nproc %d, %s, %s %s/%s", m.nproc, m.cpu, m.goVer, runtime.GOOS, runtime.GOARCH)
	if m.memTotal != "" {
		s += ", RAM " + m.memTotal
	}
	return s
}

func readMachine() machine {
	m := machine{nproc: runtime.NumCPU(), cpu: "unknown CPU", goVer: runtime.Version()}
	if v := procField("/proc/cpuinfo", "model name"); v != "" {
		m.cpu = v
	}
	if v := procField("/proc/meminfo", "MemTotal"); v != "" {
		if kb, err := strconv.ParseFloat(strings.TrimSuffix(v, " kB"), 64); err == nil {
			m.memTotal = fmt.Sprintf("%.1f GB", kb/1024/1024)
		}
	}
	return m
}

// procField returns the value of the first "key: value" line of a /proc
// file, or "".
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
