package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/wemesse/server/internal/pgcluster"
	"github.com/wemesse/server/internal/proctest"
)

// harness holds what every scenario shares: the report, the PostgreSQL
// cluster, the server binary and everything that must be cleaned up.
type harness struct {
	out  io.Writer
	opts options
	base string // the one temporary directory; everything lives below it

	mu             sync.Mutex
	passed, failed int
	scenarioStart  time.Time

	bin   string             // server binary
	pg    *pgcluster.Cluster // shared cluster; each scenario has its own database
	admin string             // WEMESSE_SIGNATURE of every server

	servers []*serverProc

	watchdog    *pgcluster.Watchdog
	cleanupOnce sync.Once
}

// newHarness creates the temporary directory and starts the watchdog that
// removes it (and stops PostgreSQL) should this process die without
// cleaning up.
func newHarness(out io.Writer, opts options) (*harness, error) {
	parent := os.TempDir()
	if os.Geteuid() == 0 {
		parent = "/tmp" // the postgres user must be able to reach the data directory
	}
	base, err := os.MkdirTemp(parent, "wemesse-faults-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(base, 0o755); err != nil {
		os.RemoveAll(base)
		return nil, err
	}
	h := &harness{out: out, opts: opts, base: base, admin: proctest.NewSecret(32), scenarioStart: time.Now()}
	// Should we die, it stops PostgreSQL and removes base unless -keep.
	remove := base
	if opts.keep {
		remove = ""
	}
	if h.watchdog, err = pgcluster.StartWatchdog(filepath.Join(base, "pg", "data"), remove); err != nil {
		os.RemoveAll(base)
		return nil, fmt.Errorf("start the cleanup watchdog: %w", err)
	}
	return h, nil
}

// prepare builds (or takes) the server binary and starts PostgreSQL.
func (h *harness) prepare(ctx context.Context, pgBin string) error {
	bin, err := h.serverBinary(ctx)
	if err != nil {
		return err
	}
	h.bin = bin
	begin := time.Now()
	pg, err := pgcluster.New(ctx, pgcluster.Options{BinDir: pgBin, Dir: filepath.Join(h.base, "pg"),
		Settings: []string{"fsync=off", "full_page_writes=off", "max_connections=200", "shared_buffers=64MB"}})
	if err != nil {
		return err
	}
	h.pg = pg
	user := "this user"
	if pg.OSUser() != "" {
		user = fmt.Sprintf("the %q OS user", pg.OSUser())
	}
	h.printf("PostgreSQL %s started as %s on 127.0.0.1:%d in %s (postmaster pid %d)",
		pg.Version(), user, pg.Port(), time.Since(begin).Round(time.Millisecond), pg.PID())
	return nil
}

// cleanup stops every process this run started and removes the temporary
// directory. It is safe to call more than once.
func (h *harness) cleanup() {
	h.cleanupOnce.Do(func() {
		h.killServers()
		if h.pg != nil {
			if err := h.pg.Close(); err != nil {
				fmt.Fprintf(h.out, "cleanup: stopping PostgreSQL: %v\n", err)
			}
		}
		if h.opts.keep {
			fmt.Fprintf(h.out, "kept %s (-keep)\n", h.base)
		} else if err := os.RemoveAll(h.base); err != nil {
			fmt.Fprintf(h.out, "cleanup: %v\n", err)
		}
		if h.watchdog != nil {
			h.watchdog.Release()
		}
	})
}

// track registers a server process so that it is stopped on every path.
func (h *harness) track(s *serverProc) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.servers = append(h.servers, s)
}

// stopServers kills the servers a scenario left running.
func (h *harness) stopServers() { h.killServers() }

func (h *harness) killServers() {
	h.mu.Lock()
	servers := h.servers
	h.servers = nil
	h.mu.Unlock()
	for _, s := range servers {
		s.Kill()
	}
}

// mkdir creates a directory below the temporary directory.
func (h *harness) mkdir(name string) (string, error) {
	dir := filepath.Join(h.base, name)
	return dir, os.MkdirAll(dir, 0o755)
}

// Reporting. Every line carries the time since the scenario began.

func (h *harness) line(tag, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	msg = strings.ReplaceAll(strings.TrimRight(msg, "\n"), "\n", "\n                   ")
	h.mu.Lock()
	defer h.mu.Unlock()
	fmt.Fprintf(h.out, "%7.2fs  %-7s %s\n", time.Since(h.scenarioStart).Seconds(), tag, msg)
}

func (h *harness) printf(format string, args ...any) { h.line("", format, args...) }

// inject reports a fault being injected.
func (h *harness) inject(format string, args ...any) { h.line("INJECT", format, args...) }

// info reports an observation that is not a verification.
func (h *harness) info(format string, args ...any) { h.line("info", format, args...) }

// note reports something worth a reader's attention that is not a failure.
func (h *harness) note(format string, args ...any) { h.line("NOTE", format, args...) }

func (h *harness) pass(format string, args ...any) {
	h.mu.Lock()
	h.passed++
	h.mu.Unlock()
	h.line("PASS", format, args...)
}

func (h *harness) fail(format string, args ...any) {
	h.mu.Lock()
	h.failed++
	h.mu.Unlock()
	h.line("FAIL", format, args...)
}

// check counts one verification: PASS when ok, else FAIL. The message says
// what was verified; detail, if any, is appended.
func (h *harness) check(ok bool, format string, args ...any) bool {
	if ok {
		h.pass(format, args...)
	} else {
		h.fail(format, args...)
	}
	return ok
}

func (h *harness) section(title string) {
	h.mu.Lock()
	h.scenarioStart = time.Now()
	fmt.Fprintf(h.out, "\n== %s\n", title)
	h.mu.Unlock()
}

// summary prints the last line: exactly "N passed, M failed".
func (h *harness) summary() {
	h.mu.Lock()
	defer h.mu.Unlock()
	fmt.Fprintf(h.out, "\n%d passed, %d failed\n", h.passed, h.failed)
}
