package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wemesse/server/internal/proctest"
)

// options are the command-line flags.
type options struct {
	serverPath   string
	pgBin        string
	outage       time.Duration
	flood        time.Duration
	quick        bool
	only         []string
	timeout      time.Duration
	rssLimitMB   int64
	keep         bool
	longShutdown time.Duration
	cutShutdown  time.Duration
}

// scenarioNames lists the scenarios in the order they run.
var scenarioNames = []string{"outage", "kill9", "sigterm", "flood"}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("wemesse-faults", flag.ContinueOnError)
	fs.SetOutput(stderr)
	only := fs.String("only", strings.Join(scenarioNames, ","), "comma-separated scenarios to run: "+strings.Join(scenarioNames, ", "))
	fs.StringVar(&o.serverPath, "server", "", "server binary to run (default: build bin/wemesse with CGO_ENABLED=0)")
	fs.StringVar(&o.pgBin, "pg-bin", "", "directory of initdb, pg_ctl and postgres (default: $WEMESSE_PG_BIN, else /usr/lib/postgresql/15/bin)")
	fs.DurationVar(&o.outage, "outage", 10*time.Second, "how long PostgreSQL stays stopped in the outage scenario")
	fs.DurationVar(&o.flood, "flood", 5*time.Second, "how long the flood of malformed requests lasts")
	fs.BoolVar(&o.quick, "quick", false, "shorter phases for CI: outage 5s, flood 3s, smaller uploads")
	fs.DurationVar(&o.timeout, "timeout", 4*time.Minute, "bound on the whole run")
	fs.Int64Var(&o.rssLimitMB, "rss-limit-mb", 256, "largest server resident set (MB) accepted during the flood")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs, data) for inspection; processes are still stopped")
	fs.DurationVar(&o.longShutdown, "long-shutdown", 30*time.Second, "WEMESSE_SHUTDOWN_TIMEOUT for the upload that must complete after SIGTERM")
	fs.DurationVar(&o.cutShutdown, "short-shutdown", 2*time.Second, "WEMESSE_SHUTDOWN_TIMEOUT for the upload that must be cut off")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: wemesse-faults [flags]\n\nInjects faults into real server processes on 127.0.0.1 and verifies the outcome.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		if !set["outage"] {
			o.outage = 5 * time.Second
		}
		if !set["flood"] {
			o.flood = 3 * time.Second
		}
	}
	for _, name := range strings.Split(*only, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if !slices.Contains(scenarioNames, name) {
			return o, fmt.Errorf("-only: unknown scenario %q (have %s)", name, strings.Join(scenarioNames, ", "))
		}
		if !slices.Contains(o.only, name) {
			o.only = append(o.only, name)
		}
	}
	// Always in the documented order.
	slices.SortFunc(o.only, func(a, b string) int { return slices.Index(scenarioNames, a) - slices.Index(scenarioNames, b) })
	switch {
	case len(o.only) == 0:
		return o, errors.New("-only: no scenario selected")
	case o.outage < time.Second || o.outage > time.Minute:
		return o, errors.New("-outage must be from 1s to 1m")
	case o.flood < time.Second || o.flood > time.Minute:
		return o, errors.New("-flood must be from 1s to 1m")
	case o.timeout < 30*time.Second:
		return o, errors.New("-timeout must be at least 30s")
	case o.rssLimitMB < 16:
		return o, errors.New("-rss-limit-mb must be at least 16")
	case o.cutShutdown <= 0 || o.longShutdown < 5*time.Second || o.cutShutdown*2 > o.longShutdown:
		return o, errors.New("-short-shutdown must be positive and at most half of -long-shutdown (at least 5s)")
	}
	if o.serverPath != "" {
		p, err := filepath.Abs(o.serverPath)
		if err != nil {
			return o, err
		}
		if err := proctest.CheckExecutable(p); err != nil {
			return o, err
		}
		o.serverPath = p
	}
	return o, nil
}

// run is the whole program, with its I/O passed in so that tests can drive
// it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	pgBin, err := findPGBin(opts.pgBin)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.timeout)
	defer cancel()

	h, err := newHarness(stdout, opts)
	if err != nil {
		return err
	}
	defer func() {
		h.cleanup()
		if err == nil && h.failed > 0 {
			err = fmt.Errorf("%d verification(s) failed", h.failed)
		}
	}()
	h.printf("wemesse-faults: %s; PostgreSQL from %s; temporary files in %s", strings.Join(opts.only, ", "), pgBin, h.base)

	if err := h.prepare(ctx, pgBin); err != nil {
		h.fail("setup: %v", err)
		h.summary()
		return err
	}
	for _, name := range opts.only {
		if ctx.Err() != nil {
			break
		}
		sc := scenarios[name]
		h.section(sc.title)
		func() {
			defer h.stopServers() // whatever the scenario left running
			if err := sc.run(ctx, h); err != nil {
				h.fail("%s stopped early: %v", name, err)
			}
		}()
	}
	interrupted := ctx.Err()
	if interrupted != nil {
		h.fail("the run was interrupted: %v", context.Cause(ctx))
	}
	h.summary()
	if interrupted != nil {
		return fmt.Errorf("interrupted: %w", interrupted)
	}
	return nil
}

// scenario is one fault and its verifications.
type scenario struct {
	title string
	run   func(ctx context.Context, h *harness) error
}

var scenarios = map[string]scenario{
	"outage":  {"1. PostgreSQL stopped under mixed load", runOutage},
	"kill9":   {"2. kill -9 in the middle of an upload", runKill9},
	"sigterm": {"3. SIGTERM during slow uploads", runSigterm},
	"flood":   {"4. flood of malformed requests", runFlood},
}

// serverBinary returns -server, or builds bin/wemesse in the module root
// as `make build` does.
func (h *harness) serverBinary(ctx context.Context) (string, error) {
	if h.opts.serverPath != "" {
		return h.opts.serverPath, nil
	}
	root, err := proctest.ModuleRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, "bin", "wemesse")
	begin := time.Now()
	if err := proctest.Build(ctx, root, bin); err != nil {
		return "", err
	}
	h.printf("built %s (CGO_ENABLED=0) in %s", bin, time.Since(begin).Round(time.Millisecond))
	return bin, nil
}
