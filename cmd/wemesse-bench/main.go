// Command wemesse-bench is the Wemesse server's load tool. It starts the real
// server binary as a child process on 127.0.0.1, drives it through one
// scenario, and prints a table of measured values against their targets.
//
//	wemesse-bench [SCENARIO] [flags]     run a scenario (default: auth)
//	wemesse-bench all [flags]            run every scenario (make bench)
//	wemesse-bench list                   list the scenarios
//	wemesse-bench SCENARIO -h            show a scenario's flags
//
// The update, device, users and upload scenarios run each server row on
// SQLite and on PostgreSQL (a throwaway cluster the tool starts, see -db),
// next to a reference measured in the same run: a minimal net/http handler,
// pgbench, psql, the sqlite3 CLI. The update and device load comes from wrk
// when it is installed, else from vegeta in process (-load); the rest from
// vegeta or the tool's own client.
//
// It exits non-zero when any target fails, unless -no-fail is given.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "wemesse-bench:", err)
		os.Exit(1)
	}
}

// defaultScenario runs when no scenario is named.
const defaultScenario = "auth"

// errTargetsFailed is returned when a measured value misses its target.
var errTargetsFailed = errors.New("targets failed")

// run is the whole program, with its I/O passed in so tests can drive it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	name := defaultScenario
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	switch name {
	case "list", "help":
		printScenarios(stdout)
		return nil
	case staticChildCommand:
		return runStaticChild(args, os.Stdin, stdout)
	}
	sc, ok := lookupScenario(name)
	if !ok {
		printScenarios(stderr)
		return fmt.Errorf("unknown scenario %q", name)
	}

	fs := flag.NewFlagSet("wemesse-bench "+sc.Name(), flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts options
	opts.register(fs)
	sc.SetFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: wemesse-bench %s [flags]\n\n%s\n\nflags:\n", sc.Name(), sc.Summary())
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	b := &bench{opts: opts, stderr: stderr}
	defer b.close() // also on a panic; close is idempotent
	rep := newReport(sc.Name(), readMachine())
	if la := loadAverage(); la != "" {
		rep.setupf("load average (1, 5, 15 min) at the start: %s; the tool, the server and the databases share the machine's cores with anything else running", la)
	}
	runErr := sc.Run(ctx, b, rep)
	b.close()
	if la := loadAverage(); la != "" {
		rep.notef("load average (1, 5, 15 min) at the end: %s", la)
	}
	// What was measured is printed even when the run stopped early.
	if len(rep.rows) > 0 || len(rep.results) > 0 || runErr == nil {
		rep.write(stdout, opts.markdown)
	}
	if runErr != nil {
		return fmt.Errorf("%s: %w", sc.Name(), runErr)
	}
	if n := rep.failures(); n > 0 {
		if opts.noFail {
			fmt.Fprintf(stderr, "%d of %d targets failed (-no-fail: reporting only)\n", n, rep.checks())
			return nil
		}
		return fmt.Errorf("%d of %d %w", n, rep.checks(), errTargetsFailed)
	}
	return nil
}

func printScenarios(w io.Writer) {
	fmt.Fprintln(w, "usage: wemesse-bench [SCENARIO] [flags]   (default scenario: "+defaultScenario+")")
	fmt.Fprintln(w, "\nscenarios:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, sc := range scenarios() {
		fmt.Fprintf(tw, "  %s\t%s\n", sc.Name(), sc.Summary())
	}
	tw.Flush()
}
