// Package dbtest gives each test a fresh, real database: a new SQLite file
// or a new, empty database on a throwaway PostgreSQL cluster that the test
// binary starts itself.
//
// A package that uses Postgres (directly or through Each) should install
// Main as its TestMain so that the shared cluster is stopped and removed
// when the tests finish:
//
//	func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }
//
// The cluster is started lazily, on the first call to Postgres or
// PostgresAdmin, and is shared by all tests of the test binary. Every call
// to Postgres creates its own database, which is dropped when the test ends.
//
// PostgreSQL server binaries (initdb, pg_ctl, postgres) are looked up in
// $WEMESSE_PG_BIN, /usr/lib/postgresql/15/bin, the newest
// /usr/lib/postgresql/*/bin, `pg_config --bindir` and finally $PATH. When
// they cannot be found, PostgreSQL tests are skipped, except when CI=true,
// where they fail.
//
// PostgreSQL refuses to run as root; when the tests run as root the server
// is run as the "postgres" OS user.
//
// The package only works on Unix-like systems.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// envPGBin names the environment variable that overrides where the
// PostgreSQL server binaries are looked up.
const envPGBin = "WEMESSE_PG_BIN"

// pgUser is both the OS user the server runs as when the tests run as root
// and the superuser role created by initdb.
const pgUser = "postgres"

// Timeouts for the individual steps.
const (
	startTimeout = 60 * time.Second // pg_ctl -w -t
	stmtTimeout  = 30 * time.Second // CREATE / DROP DATABASE
	startRetries = 3
)

var (
	clusterOnce sync.Once
	shared      *cluster // set by clusterOnce when the start succeeded
	sharedErr   error    // set by clusterOnce when the start failed
	sharedSkip  string   // set by clusterOnce when binaries are missing
	sharedMu    sync.Mutex

	dbCounter atomic.Int64
)

// Main runs the tests and afterwards stops and removes the PostgreSQL
// cluster if one was started. It starts nothing eagerly. Use it as
//
//	func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }
//
// If the test binary dies without returning from Main (for example because
// a test panicked), a watchdog process started together with the cluster
// shuts the server down and removes its directory.
func Main(m *testing.M) int {
	code := m.Run()
	if err := shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "dbtest: stopping PostgreSQL: %v\n", err)
	}
	return code
}

// Postgres returns the DSN of a new, empty PostgreSQL database created for
// this test only, in the form
//
//	postgres://postgres@127.0.0.1:PORT/t_N_RANDOM?sslmode=disable
//
// The database is dropped (WITH (FORCE)) in tb.Cleanup. The shared cluster
// is started on the first call. If no PostgreSQL server binaries are found
// the test is skipped, or fails when the environment variable CI is true.
func Postgres(tb testing.TB) string {
	tb.Helper()
	c := sharedCluster(tb)

	name := fmt.Sprintf("t_%d_%s", dbCounter.Add(1), randomSuffix())
	ctx, cancel := context.WithTimeout(context.Background(), stmtTimeout)
	defer cancel()
	if _, err := c.pool.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		tb.Fatalf("dbtest: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stmtTimeout)
		defer cancel()
		stmt := "DROP DATABASE IF EXISTS " + pgx.Identifier{name}.Sanitize() + " WITH (FORCE)"
		if _, err := c.pool.Exec(ctx, stmt); err != nil {
			tb.Errorf("dbtest: drop database %s: %v", name, err)
		}
	})
	return c.dsn(name)
}

// PostgresAdmin returns the DSN of the "postgres" maintenance database of
// the shared cluster, connecting as the superuser "postgres". It is meant
// for tests that create or drop databases themselves; such tests are
// responsible for cleaning up what they create. The cluster is started (or
// the test skipped) exactly as for Postgres.
func PostgresAdmin(tb testing.TB) string {
	tb.Helper()
	return sharedCluster(tb).dsn("postgres")
}

// SQLite returns the path of a new SQLite database file inside
// tb.TempDir(). The file does not exist yet; SQLite creates it on first
// open, and it is removed together with the temporary directory.
func SQLite(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(tb.TempDir(), "test.db")
}

// Each runs fn as two subtests, "sqlite" and "postgres", passing each its
// own fresh DSN from SQLite and Postgres respectively. The postgres subtest
// is skipped (or fails under CI=true) when PostgreSQL is not available.
func Each(t *testing.T, fn func(t *testing.T, dsn string)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) {
		fn(t, SQLite(t))
	})
	t.Run("postgres", func(t *testing.T) {
		fn(t, Postgres(t))
	})
}

// Available reports whether the PostgreSQL server binaries were found and,
// when running as root, whether the "postgres" OS user exists. If not, the
// string explains why.
func Available() (bool, string) {
	if _, err := findBinaries(); err != nil {
		return false, err.Error()
	}
	if os.Geteuid() == 0 {
		if _, err := lookupPGUser(); err != nil {
			return false, err.Error()
		}
	}
	return true, ""
}

// sharedCluster starts the cluster on first use and returns it, or skips or
// fails tb.
func sharedCluster(tb testing.TB) *cluster {
	tb.Helper()
	clusterOnce.Do(func() {
		if ok, why := Available(); !ok {
			sharedSkip = why
			return
		}
		begin := time.Now()
		c, err := startCluster()
		sharedMu.Lock()
		shared, sharedErr = c, err
		sharedMu.Unlock()
		if err == nil {
			tb.Logf("dbtest: started PostgreSQL %s on 127.0.0.1:%d in %v (data in %s)",
				c.version, c.port, time.Since(begin).Round(time.Millisecond), c.base)
		}
	})
	switch {
	case sharedSkip != "":
		msg := "PostgreSQL server binaries not found (" + sharedSkip + "); set " + envPGBin
		if inCI() {
			tb.Fatal("dbtest: " + msg + " (CI=true, so this is a failure, not a skip)")
		}
		tb.Skip("dbtest: " + msg)
	case sharedErr != nil:
		tb.Fatalf("dbtest: starting PostgreSQL: %v", sharedErr)
	}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil {
		tb.Fatal("dbtest: the PostgreSQL cluster has already been stopped (Postgres called after Main's m.Run returned?)")
	}
	return shared
}

// shutdown stops and removes the shared cluster, if any.
func shutdown() error {
	sharedMu.Lock()
	c := shared
	shared = nil
	sharedMu.Unlock()
	if c == nil {
		return nil
	}
	return c.stop()
}

// inCI reports whether the tests run under CI (CI=true), where skipping
// PostgreSQL tests counts as a failure.
func inCI() bool {
	ok, _ := strconv.ParseBool(os.Getenv("CI"))
	return ok
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error
	return hex.EncodeToString(b[:])
}

// binaries holds absolute paths of the server programs.
type binaries struct {
	initdb, pgCtl, postgres string
}

// findBinaries locates initdb, pg_ctl and postgres; see the package
// documentation for the search order.
func findBinaries() (binaries, error) {
	if dir := os.Getenv(envPGBin); dir != "" {
		b, err := binariesIn(dir)
		if err != nil {
			return binaries{}, fmt.Errorf("%s=%s: %w", envPGBin, dir, err)
		}
		return b, nil
	}

	var tried []string
	try := func(dir string) (binaries, bool) {
		b, err := binariesIn(dir)
		if err != nil {
			tried = append(tried, dir)
			return binaries{}, false
		}
		return b, true
	}

	if b, ok := try("/usr/lib/postgresql/15/bin"); ok {
		return b, nil
	}
	if dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin"); len(dirs) > 0 {
		sort.Slice(dirs, func(i, j int) bool {
			return versionOf(dirs[i]) > versionOf(dirs[j])
		})
		for _, dir := range dirs {
			if b, ok := try(dir); ok {
				return b, nil
			}
		}
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); dir != "" {
			if b, ok := try(dir); ok {
				return b, nil
			}
		}
	} else {
		tried = append(tried, "pg_config --bindir")
	}

	var b binaries
	var missing []string
	for _, p := range []struct {
		name string
		dst  *string
	}{{"initdb", &b.initdb}, {"pg_ctl", &b.pgCtl}, {"postgres", &b.postgres}} {
		path, err := exec.LookPath(p.name)
		if err != nil {
			missing = append(missing, p.name)
			continue
		}
		*p.dst = path
	}
	if len(missing) == 0 {
		return b, nil
	}
	tried = append(tried, "$PATH (missing "+strings.Join(missing, ", ")+")")
	return binaries{}, errors.New("looked in " + strings.Join(tried, ", "))
}

// versionOf extracts the numeric major version from /usr/lib/postgresql/V/bin,
// or -1.
func versionOf(binDir string) float64 {
	v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	if err != nil {
		return -1
	}
	return v
}

// binariesIn returns the server programs in dir, or an error naming the
// ones that are missing.
func binariesIn(dir string) (binaries, error) {
	b := binaries{
		initdb:   filepath.Join(dir, "initdb"),
		pgCtl:    filepath.Join(dir, "pg_ctl"),
		postgres: filepath.Join(dir, "postgres"),
	}
	var missing []string
	for _, p := range []string{b.initdb, b.pgCtl, b.postgres} {
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			missing = append(missing, filepath.Base(p))
		}
	}
	if len(missing) > 0 {
		return binaries{}, fmt.Errorf("%s missing in %s", strings.Join(missing, ", "), dir)
	}
	return b, nil
}

// pgAccount is the OS account the server runs as when the tests run as root.
type pgAccount struct {
	uid, gid int
}

func lookupPGUser() (pgAccount, error) {
	u, err := user.Lookup(pgUser)
	if err != nil {
		return pgAccount{}, fmt.Errorf("running as root, but the %q OS user to run PostgreSQL as was not found: %v", pgUser, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return pgAccount{}, fmt.Errorf("OS user %q has non-numeric uid/gid %q/%q", pgUser, u.Uid, u.Gid)
	}
	return pgAccount{uid: uid, gid: gid}, nil
}

// cluster is a running throwaway PostgreSQL cluster.
type cluster struct {
	bin     binaries
	account *pgAccount // nil unless running as root
	base    string     // temp dir holding everything below
	data    string     // base/data
	sock    string     // base/sock
	logFile string     // base/server.log
	port    int
	version string

	pool *pgxpool.Pool // connected to the "postgres" database

	watchdog     *exec.Cmd
	watchdogPipe *os.File // write end; closing it (or dying) wakes the watchdog
}

func (c *cluster) dsn(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", pgUser, c.port, db)
}

// startCluster creates, initialises and starts a new cluster.
func startCluster() (_ *cluster, err error) {
	bin, err := findBinaries()
	if err != nil {
		return nil, err
	}
	c := &cluster{bin: bin}
	if os.Geteuid() == 0 {
		acct, err := lookupPGUser()
		if err != nil {
			return nil, err
		}
		c.account = &acct
	}

	if c.base, err = os.MkdirTemp(tempParent(c.account != nil), "wemesse-dbtest-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = c.stop()
		}
	}()
	// The server's OS user must be able to traverse base.
	if err := os.Chmod(c.base, 0o755); err != nil {
		return nil, err
	}
	c.data = filepath.Join(c.base, "data")
	c.sock = filepath.Join(c.base, "sock")
	c.logFile = filepath.Join(c.base, "server.log")
	if err := c.startWatchdog(); err != nil {
		return nil, fmt.Errorf("starting cleanup watchdog: %w", err)
	}
	if err := os.Mkdir(c.data, 0o700); err != nil {
		return nil, err
	}
	if err := os.Mkdir(c.sock, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(c.logFile, nil, 0o644); err != nil {
		return nil, err
	}
	if c.account != nil {
		for _, p := range []string{c.data, c.sock, c.logFile} {
			if err := os.Chown(p, c.account.uid, c.account.gid); err != nil {
				return nil, err
			}
		}
	}

	out, err := c.run(c.bin.initdb, "-D", c.data, "-A", "trust", "-U", pgUser,
		"--no-sync", "-E", "UTF8", "--locale=C")
	if err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if v, err := os.ReadFile(filepath.Join(c.data, "PG_VERSION")); err == nil {
		c.version = strings.TrimSpace(string(v))
	}

	var errs []error
	for attempt := 1; attempt <= startRetries; attempt++ {
		if c.port, err = freePort(); err != nil {
			return nil, err
		}
		out, err = c.run(c.bin.pgCtl, "-w", "-t", strconv.Itoa(int(startTimeout/time.Second)),
			"-D", c.data, "-l", c.logFile, "-o", c.serverOptions(), "start")
		if err == nil {
			break
		}
		errs = append(errs, fmt.Errorf("attempt %d (port %d): pg_ctl start: %v\n%s", attempt, c.port, err, strings.TrimSpace(string(out))))
		// In case pg_ctl gave up waiting on a server that did start.
		_, _ = c.run(c.bin.pgCtl, "-D", c.data, "-m", "immediate", "-w", "stop")
	}
	if err != nil {
		return nil, fmt.Errorf("%w\nserver log (tail):\n%s", errors.Join(errs...), tail(c.logFile, 40))
	}

	ctx, cancel := context.WithTimeout(context.Background(), stmtTimeout)
	defer cancel()
	cfg, err := pgxpool.ParseConfig(c.dsn("postgres"))
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 4
	if c.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, err
	}
	if err := c.pool.Ping(ctx); err != nil {
		return nil, fmt.Errorf("connecting to the new cluster: %v\nserver log (tail):\n%s", err, tail(c.logFile, 40))
	}
	return c, nil
}

// tempParent returns the directory to create the cluster directory in. When
// the server runs as another user, every ancestor must be traversable by it;
// otherwise /tmp is used.
func tempParent(otherUser bool) string {
	dir := os.TempDir()
	if !otherUser {
		return dir
	}
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if d == filepath.Dir(d) {
			return dir
		}
	}
}

func (c *cluster) serverOptions() string {
	return strings.Join([]string{
		"-p", strconv.Itoa(c.port),
		"-k", c.sock,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=300",
		"-c", "shared_buffers=64MB",
	}, " ")
}

// run runs a server program as the server's OS user and returns its
// combined output.
func (c *cluster) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = c.base
	cmd.Env = serverEnv()
	// Collect output in a file rather than a pipe: pg_ctl start leaves the
	// postmaster running, and nothing must keep a pipe of ours open.
	f, err := os.CreateTemp("", "dbtest-cmd-*.out")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if c.account != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{
			Uid:    uint32(c.account.uid),
			Gid:    uint32(c.account.gid),
			Groups: []uint32{},
		}}
	}
	runErr := cmd.Run()
	out, _ := os.ReadFile(f.Name())
	return out, runErr
}

// serverEnv is the environment for server programs: ours without PG*
// variables (which could point pg_ctl elsewhere), with the C locale.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C", "LANG=C")
}

// watchdogScript waits until its stdin reaches EOF — when the test binary
// closes the pipe or dies — then shuts down a postmaster that is still
// running in $1/data and removes $1.
const watchdogScript = `
cat >/dev/null
pidfile="$1/data/postmaster.pid"
if [ -f "$pidfile" ]; then
	pid=$(head -n 1 "$pidfile")
	if [ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null; then
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
			sleep 0.1
			i=$((i+1))
		done
		kill -KILL "$pid" 2>/dev/null
	fi
fi
rm -rf "$1"
`

// startWatchdog starts a detached shell that cleans up the cluster if the
// test binary exits without calling stop (for example after a panic, a
// test timeout or a missing TestMain).
func (c *cluster) startWatchdog() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", watchdogScript, "dbtest-watchdog", c.base)
	cmd.Stdin = r
	// Stdout and stderr go to /dev/null so that `go test` does not wait
	// for the watchdog; its own session keeps it alive on Ctrl-C.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return err
	}
	c.watchdog, c.watchdogPipe = cmd, w
	return nil
}

// stop shuts the server down, removes its directory and releases the
// watchdog. It is safe to call on a partially started cluster.
func (c *cluster) stop() error {
	var errs []error
	if c.pool != nil {
		c.pool.Close()
	}
	if c.data != "" {
		if _, err := os.Stat(filepath.Join(c.data, "postmaster.pid")); err == nil {
			if out, err := c.run(c.bin.pgCtl, "-D", c.data, "-m", "immediate", "-w", "stop"); err != nil {
				errs = append(errs, fmt.Errorf("pg_ctl stop: %v\n%s", err, out))
			}
		}
	}
	if c.base != "" {
		if err := os.RemoveAll(c.base); err != nil {
			errs = append(errs, err)
		}
	}
	if c.watchdog != nil {
		c.watchdogPipe.Close()
		done := make(chan error, 1)
		go func() { done <- c.watchdog.Wait() }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = c.watchdog.Process.Kill()
			<-done
		}
	}
	return errors.Join(errs...)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns about the last n lines of the file at path.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	const maxBytes = 8 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > maxBytes {
		_, _ = f.Seek(-maxBytes, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
