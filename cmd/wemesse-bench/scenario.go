package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wemesse/server/internal/pgcluster"
	"github.com/wemesse/server/internal/proctest"
)

// A scenario is one benchmark: it starts what it needs (usually the server,
// through bench.startServer), measures, and adds rows to the report. To add
// one, implement this interface and list it in scenarios.
type scenario interface {
	// Name is the subcommand that selects the scenario.
	Name() string
	// Summary is one line for `wemesse-bench list`.
	Summary() string
	// SetFlags registers the scenario's own flags, with their defaults.
	SetFlags(fs *flag.FlagSet)
	// Run measures and records every value in rep. It must bound every loop
	// in count and time, target only 127.0.0.1, and stop whatever it
	// started before returning.
	Run(ctx context.Context, b *bench, rep *report) error
}

// scenarios lists every scenario, the default first.
func scenarios() []scenario {
	return []scenario{
		&authScenario{},
		&updateScenario{},
		&deviceScenario{},
		&usersScenario{},
		&uploadScenario{},
		&consoleScenario{},
		&allScenario{},
	}
}

func lookupScenario(name string) (scenario, bool) {
	for _, sc := range scenarios() {
		if sc.Name() == name {
			return sc, true
		}
	}
	return nil, false
}

// options are the flags every scenario shares.
type options struct {
	serverPath string    // a prebuilt server binary; empty: build bin/wemesse
	noFail     bool      // report failed targets without failing the run
	serverEnv  envSetter // extra settings for every server started
	dbs        dbList    // the databases of server rows (not auth's)
	pgBin      string    // PostgreSQL server binaries; empty: looked up
	pgSettings pgSetter  // extra -c NAME=VALUE for the PostgreSQL cluster
	markdown   bool      // print the tables as Markdown
	load       string    // the update and device runs' generator: auto, wrk or vegeta
}

func (o *options) register(fs *flag.FlagSet) {
	fs.StringVar(&o.load, "load", "auto", "load generator of the update and device runs: wrk, vegeta (in process), or auto: wrk when it is on $PATH or apt-get can install it (as root)")
	fs.StringVar(&o.serverPath, "server", "", "server binary to run (default: build bin/wemesse with CGO_ENABLED=0)")
	fs.BoolVar(&o.noFail, "no-fail", false, "only report failed targets; exit 0")
	fs.Var(&o.serverEnv, "set", "`WEMESSE_NAME=VALUE` for every server started (repeatable), e.g. -set WEMESSE_ARGON2_CONCURRENCY=4")
	o.dbs = dbList{dbSQLite, dbPostgres}
	fs.Var(&o.dbs, "db", "comma-separated `databases` to run the server rows on: sqlite, postgres (auth runs on SQLite only)")
	fs.StringVar(&o.pgBin, "pg-bin", "", "`DIR` with initdb, pg_ctl and postgres (default: $WEMESSE_PG_BIN, /usr/lib/postgresql/15/bin, the newest /usr/lib/postgresql/*/bin, pg_config --bindir, $PATH)")
	fs.Var(&o.pgSettings, "pg-set", "`NAME=VALUE` setting for the throwaway PostgreSQL cluster (repeatable), e.g. -pg-set synchronous_commit=off; default: PostgreSQL's own defaults, fsync on")
	fs.BoolVar(&o.markdown, "markdown", false, "print the tables as Markdown (for BENCHMARKS.md)")
}

// dbList is the -db flag.
type dbList []string

func (d *dbList) String() string {
	if d == nil {
		return ""
	}
	return strings.Join(*d, ",")
}

func (d *dbList) Set(s string) error {
	var out dbList
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		switch name {
		case dbSQLite, dbPostgres:
			if !slices.Contains(out, name) {
				out = append(out, name)
			}
		default:
			return fmt.Errorf("unknown database %q: want sqlite, postgres or both", name)
		}
	}
	*d = out
	return nil
}

// pgSetter collects -pg-set NAME=VALUE flags.
type pgSetter []string

func (p *pgSetter) String() string {
	if p == nil {
		return ""
	}
	return strings.Join(*p, " ")
}

func (p *pgSetter) Set(s string) error {
	k, _, ok := strings.Cut(s, "=")
	if !ok || k == "" || strings.ContainsAny(k, " \t") {
		return errors.New("want NAME=VALUE")
	}
	switch k {
	case "port", "listen_addresses", "unix_socket_directories":
		return fmt.Errorf("%s is chosen by the harness", k)
	}
	*p = append(*p, s)
	return nil
}

// harnessOwned are the settings the harness always chooses itself.
var harnessOwned = []string{"WEMESSE_ADDR", "WEMESSE_DATABASE_URL", "WEMESSE_UPLOAD_DIR", "WEMESSE_SIGNATURE", "WEMESSE_PUBLIC_URL"}

// envSetter collects -set NAME=VALUE flags.
type envSetter map[string]string

func (e *envSetter) String() string {
	if e == nil || len(*e) == 0 {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(*e)) {
		parts = append(parts, k+"="+(*e)[k])
	}
	return strings.Join(parts, " ")
}

func (e *envSetter) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || !strings.HasPrefix(k, "WEMESSE_") {
		return errors.New("want WEMESSE_NAME=VALUE")
	}
	if slices.Contains(harnessOwned, k) {
		return fmt.Errorf("%s is chosen by the harness", k)
	}
	if *e == nil {
		*e = envSetter{}
	}
	(*e)[k] = v
	return nil
}

// bench is what a scenario gets from the harness.
type bench struct {
	opts   options
	stderr io.Writer

	buildOnce sync.Once
	binary    string
	buildErr  error
	source    string // git describe of the built tree, when known

	pgOnce sync.Once
	pg     *pgcluster.Cluster
	pgErr  error
}

// postgres returns the throwaway PostgreSQL cluster, started on first use
// and stopped by close.
func (b *bench) postgres(ctx context.Context) (*pgcluster.Cluster, error) {
	b.pgOnce.Do(func() {
		dir, err := findPGBin(b.opts.pgBin)
		if err != nil {
			b.pgErr = err
			return
		}
		b.logf("starting PostgreSQL from %s", dir)
		// PostgreSQL's defaults (fsync on, synchronous_commit on) plus -pg-set.
		b.pg, b.pgErr = pgcluster.New(ctx, pgcluster.Options{BinDir: dir, TempPrefix: "wemesse-bench-pg-", Settings: b.opts.pgSettings})
		if b.pgErr == nil {
			b.logf("PostgreSQL pid %d listening on 127.0.0.1:%d (data in %s)", b.pg.PID(), b.pg.Port(), b.pg.DataDir())
		}
	})
	return b.pg, b.pgErr
}

// close stops what the harness shares between scenarios.
func (b *bench) close() {
	if b.pg != nil {
		b.logf("stopping PostgreSQL")
		_ = b.pg.Close()
		b.pg = nil
	}
}

// describePostgres adds the cluster's settings to the report, once.
func (b *bench) describePostgres(ctx context.Context, rep *report) {
	if b.pg == nil || rep.pgDescribed {
		return
	}
	desc, err := describePG(ctx, b.pg)
	if err != nil {
		desc = "(settings unreadable: " + err.Error() + ")"
	}
	rep.pgDescribed = true
	extra := ""
	if len(b.opts.pgSettings) > 0 {
		extra = "; set with -pg-set: " + b.opts.pgSettings.String()
	}
	rep.setupf("PostgreSQL: throwaway cluster (initdb -A trust --locale=C) on 127.0.0.1, shared by the server, pgbench and psql; %s%s", desc, extra)
}

// newGenerator returns the generator -load names, with conns connections,
// and a description of it for the report. With -load auto, wrk is
// installed (apt-get install wrk) when it is absent and the tool runs as
// root; vegeta runs where it cannot be.
func (b *bench) newGenerator(ctx context.Context, conns int) (generator, string, error) {
	choice := b.opts.load
	if choice == "auto" {
		choice = "vegeta"
		if _, err := b.debianTool(ctx, "wrk", "wrk"); err == nil {
			choice = "wrk"
		}
	}
	switch choice {
	case "vegeta":
		return newLoadClient(conns), "vegeta, in the bench process", nil
	case "wrk":
		path, err := exec.LookPath("wrk")
		if err != nil {
			return nil, "", fmt.Errorf("-load wrk: %w (Debian: apt-get install wrk)", err)
		}
		g := newWrkGenerator(path, conns)
		return g, fmt.Sprintf("wrk (%s, %d threads), a process of its own", path, g.threads), nil
	}
	return nil, "", fmt.Errorf("-load must be auto, wrk or vegeta, not %q", b.opts.load)
}

// logf writes a progress line to stderr; stdout carries only the report.
func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.stderr, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// serverBinary returns the server binary: -server, or bin/wemesse built
// once from this module.
func (b *bench) serverBinary(ctx context.Context) (string, error) {
	b.buildOnce.Do(func() {
		if b.opts.serverPath != "" {
			b.binary, b.buildErr = filepath.Abs(b.opts.serverPath)
			if b.buildErr == nil {
				b.buildErr = proctest.CheckExecutable(b.binary)
			}
			return
		}
		b.binary, b.buildErr = b.buildServer(ctx)
	})
	return b.binary, b.buildErr
}

// buildServer builds bin/wemesse in the module root, which `go env GOMOD`
// locates from the working directory.
func (b *bench) buildServer(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	root, err := proctest.ModuleRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, "bin", "wemesse")
	b.logf("building %s", bin)
	// What was built, for the report: the commit, and whether the tree
	// had uncommitted changes.
	if out, err := exec.CommandContext(ctx, "git", "-C", root, "describe", "--always", "--dirty").Output(); err == nil {
		b.source = strings.TrimSpace(string(out))
	}
	return bin, proctest.Build(ctx, root, bin)
}

// rangeFlag is a numeric flag that takes only values from lo to hi: the
// flag package refuses any other when it parses the command line, before a
// scenario (or any member of all) starts.
type rangeFlag[T int | int64 | time.Duration] struct {
	p      *T
	lo, hi T
}

// rangeVar defines the flag name for p, with its default and range.
func rangeVar[T int | int64 | time.Duration](fs *flag.FlagSet, p *T, name string, def, lo, hi T, usage string) {
	*p = def
	fs.Var(rangeFlag[T]{p, lo, hi}, name, fmt.Sprintf("%s (%v to %v)", usage, lo, hi))
}

func (f rangeFlag[T]) String() string {
	if f.p == nil {
		return ""
	}
	return fmt.Sprint(*f.p)
}

func (f rangeFlag[T]) Set(s string) error {
	var v T
	if _, ok := any(v).(time.Duration); ok {
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		v = T(d)
	} else {
		n, err := strconv.ParseInt(s, 0, 64)
		if err != nil {
			return err
		}
		v = T(n)
	}
	if v < f.lo || v > f.hi {
		return fmt.Errorf("must be from %v to %v", f.lo, f.hi)
	}
	*f.p = v
	return nil
}
