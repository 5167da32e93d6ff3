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
	results  []resultRow
	rows     []row
	notes    []string

	pgDescribed bool // the PostgreSQL settings are in setup
}

// resultRow is one measured row of a load scenario: what the server did,
// its same-run reference, their ratio and the row's targets.
type resultRow struct {
	scenario, db string
	measured     string // req/s, or time and throughput
	p50, p99     string
	rss          string // the server's peak RSS (VmHWM), or its growth
	reference    string // what the server is compared with, measured in the same run
	ratio        string
	checks       []rowCheck
}

// rowCheck is one target of a resultRow.
type rowCheck struct {
	label string // what is compared, e.g. "ratio" or "p99"
	target
	pass bool
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
	line := fmt.Sprintf(format, args...)
	for _, s := range r.setup {
		if s == line { // scenarios run by all share lines
			return
		}
	}
	r.setup = append(r.setup, line)
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

// result records a load scenario's row; its checks are evaluated here. It
// reports whether every check passed.
func (r *report) result(x resultRow) bool {
	ok := true
	for i := range x.checks {
		x.checks[i].pass = x.checks[i].target.pass()
		ok = ok && x.checks[i].pass
	}
	r.results = append(r.results, x)
	return ok
}

func (r *report) checks() int {
	n := 0
	for _, x := range r.rows {
		if x.result != "" {
			n++
		}
	}
	for _, x := range r.results {
		n += len(x.checks)
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
	for _, x := range r.results {
		for _, c := range x.checks {
			if !c.pass {
				n++
			}
		}
	}
	return n
}

// print writes the report as aligned text.
func (r *report) print(w io.Writer) { r.write(w, false) }

// write writes the report as aligned text or, with markdown, as GitHub
// Markdown tables.
func (r *report) write(w io.Writer, markdown bool) {
	fmt.Fprintf(w, "wemesse-bench %s\n", r.scenario)
	if markdown {
		fmt.Fprintln(w)
	}
	bullet := "  "
	if markdown {
		bullet = "- "
	}
	fmt.Fprintf(w, "%smachine: %s\n", bullet, r.machine)
	for _, s := range r.setup {
		fmt.Fprintf(w, "%s%s\n", bullet, s)
	}
	if len(r.results) > 0 {
		fmt.Fprintln(w)
		header := []string{"SCENARIO", "DB", "MEASURED", "P50", "P99", "SERVER PEAK RSS", "REFERENCE (SAME RUN)", "RATIO", "TARGET", "RESULT"}
		var lines [][]string
		for _, x := range r.results {
			line := []string{x.scenario, x.db, x.measured, x.p50, x.p99, x.rss, x.reference, x.ratio, "-", ""}
			if len(x.checks) == 0 {
				lines = append(lines, line)
			}
			for i, c := range x.checks {
				if i > 0 {
					line = make([]string, len(header))
				}
				line[8] = c.label + " " + c.op + " " + c.format(c.limit)
				line[9] = resultFail
				if c.pass {
					line[9] = resultPass
				}
				if i > 0 || c.label != "ratio" {
					line[9] += " (" + c.label + " " + c.format(c.value) + ")"
				}
				lines = append(lines, line)
			}
		}
		writeTable(w, header, lines, markdown)
	}
	if len(r.rows) > 0 {
		fmt.Fprintln(w)
		var lines [][]string
		prev := ""
		for _, x := range r.rows {
			section := x.section
			if section == prev {
				section = ""
			} else {
				prev = section
			}
			lines = append(lines, []string{section, x.measure, x.value, x.target, x.result})
		}
		writeTable(w, []string{"ROW", "MEASURE", "VALUE", "TARGET", "RESULT"}, lines, markdown)
	}
	if len(r.notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.notes {
			if markdown {
				fmt.Fprintf(w, "- note: %s\n", n)
			} else {
				fmt.Fprintf(w, "note: %s\n", n)
			}
		}
	}
	fmt.Fprintf(w, "\n%d of %d targets passed\n", r.checks()-r.failures(), r.checks())
}

// writeTable writes a table aligned with tabwriter, or as Markdown.
func writeTable(w io.Writer, header []string, lines [][]string, markdown bool) {
	if markdown {
		md := func(cells []string) string {
			esc := make([]string, len(cells))
			for i, c := range cells {
				esc[i] = strings.ReplaceAll(c, "|", "\\|")
			}
			return "| " + strings.Join(esc, " | ") + " |"
		}
		lower := make([]string, len(header))
		sep := make([]string, len(header))
		for i, h := range header {
			lower[i] = strings.ToLower(h)
			sep[i] = "---"
		}
		fmt.Fprintln(w, md(lower))
		fmt.Fprintln(w, "|"+strings.Join(sep, "|")+"|")
		for _, l := range lines {
			fmt.Fprintln(w, md(l))
		}
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, l := range lines {
		fmt.Fprintln(tw, strings.Join(l, "\t"))
	}
	tw.Flush()
}

// target is a measured value and the bound it must respect.
type target struct {
	value  float64
	op     string // "<", "<=", "==", ">=" or ">"
	limit  float64
	format func(float64) string
}

func (c target) pass() bool {
	switch c.op {
	case ">":
		return c.value > c.limit
	case ">=":
		return c.value >= c.limit
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

// loadAverage is the first three fields of /proc/loadavg, or "".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
