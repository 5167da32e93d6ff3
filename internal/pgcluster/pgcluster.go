// Package pgcluster runs a throwaway PostgreSQL cluster on 127.0.0.1: it
// finds the server binaries, runs initdb in a directory of its own, starts
// and stops the server with pg_ctl on a fixed port, creates and drops
// databases and, unless the caller owns the directory, removes everything
// again, with a watchdog process doing so should the owning process die.
//
// PostgreSQL refuses to run as root; when the caller is root the server
// programs run as the "postgres" OS user.
//
// The package is meant for tests and development tools, and only works on
// Unix-like systems.
package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wemesse/server/internal/proctest"
)

// User is the superuser role initdb creates and, when the caller is root,
// the OS user the server runs as.
const User = "postgres"

// Bounds on pg_ctl.
const (
	startTimeout = 60 * time.Second // pg_ctl start -w -t
	stopTimeout  = 30 * time.Second // pg_ctl stop -w -t
	startTries   = 3                // ports tried by New
)

// serverPrograms are what FindBin requires in a directory.
var serverPrograms = []string{"initdb", "pg_ctl", "postgres"}

// FindBin returns the directory holding initdb, pg_ctl and postgres. If dir
// is not empty only dir is considered; otherwise /usr/lib/postgresql/15/bin,
// the newest /usr/lib/postgresql/*/bin, `pg_config --bindir` and finally
// $PATH are tried in turn. The error says where it looked.
func FindBin(dir string) (string, error) {
	if dir != "" {
		if err := checkBin(dir); err != nil {
			return "", err
		}
		return dir, nil
	}
	var tried []string
	try := func(dir string) bool {
		if checkBin(dir) != nil {
			tried = append(tried, dir)
			return false
		}
		return true
	}
	if d := "/usr/lib/postgresql/15/bin"; try(d) {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return majorOf(dirs[i]) > majorOf(dirs[j]) })
	for _, d := range dirs {
		if try(d) {
			return d, nil
		}
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err != nil {
		tried = append(tried, "pg_config --bindir")
	} else if d := strings.TrimSpace(string(out)); d != "" && try(d) {
		return d, nil
	}
	if p, err := exec.LookPath("pg_ctl"); err != nil {
		tried = append(tried, "$PATH")
	} else if d := filepath.Dir(p); try(d) {
		return d, nil
	}
	return "", errors.New("looked in " + strings.Join(tried, ", "))
}

// checkBin returns an error naming the server programs missing in dir.
func checkBin(dir string) error {
	var missing []string
	for _, name := range serverPrograms {
		if !isExecutable(filepath.Join(dir, name)) {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s missing in %s", strings.Join(missing, ", "), dir)
	}
	return nil
}

// majorOf extracts the major version from /usr/lib/postgresql/V/bin, or -1.
func majorOf(binDir string) float64 {
	v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	if err != nil {
		return -1
	}
	return v
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// account is the OS user the server programs run as; nil means the caller.
type account struct{ uid, gid int }

// osAccount returns the account to run the server as: nil unless the caller
// is root, else the "postgres" OS user, or an error when there is none.
func osAccount() (*account, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(User)
	if err != nil {
		return nil, fmt.Errorf("running as root, but the %q OS user to run PostgreSQL as was not found: %v", User, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("OS user %q has non-numeric uid/gid %q/%q", User, u.Uid, u.Gid)
	}
	return &account{uid: uid, gid: gid}, nil
}

// Check reports why a cluster cannot be started with the binaries in dir
// ("" to look them up, as FindBin does): the binaries are missing or, when
// the caller is root, there is no "postgres" OS user. It returns nil when
// nothing is known to be missing.
func Check(dir string) error {
	if _, err := FindBin(dir); err != nil {
		return err
	}
	_, err := osAccount()
	return err
}

// Options configure New.
type Options struct {
	// BinDir holds the server binaries; empty means FindBin("").
	BinDir string
	// Dir is where the cluster lives (data/, sock/ and server.log are
	// created in it). The caller owns it: Close leaves it in place and no
	// watchdog is started (see StartWatchdog). When empty, New creates a
	// temporary directory named TempPrefix followed by random characters,
	// which Close removes, as does a watchdog should this process die
	// first.
	Dir string
	// TempPrefix names the temporary directory; default "pgcluster-".
	TempPrefix string
	// Settings are NAME=VALUE server settings, passed as -c options after
	// the port, socket directory and listen_addresses=127.0.0.1.
	Settings []string
}

// Cluster is a throwaway PostgreSQL cluster started by New.
type Cluster struct {
	binDir  string
	acct    *account // nil: run as ourselves
	dir     string
	ownsDir bool // dir is a temp dir New created
	data    string
	sock    string
	logFile string
	port    int
	version string
	opts    string // postgres options for pg_ctl -o

	watchdog *Watchdog
}

// New runs initdb in a new data directory and starts the server on a free
// port of 127.0.0.1, trying another port if the start fails. On error,
// whatever was started has been stopped and a temporary directory removed.
func New(ctx context.Context, o Options) (_ *Cluster, err error) {
	c := &Cluster{binDir: o.BinDir, dir: o.Dir}
	if c.binDir == "" {
		if c.binDir, err = FindBin(""); err != nil {
			return nil, err
		}
	}
	if c.acct, err = osAccount(); err != nil {
		return nil, err
	}
	if c.dir == "" {
		prefix := o.TempPrefix
		if prefix == "" {
			prefix = "pgcluster-"
		}
		if c.dir, err = os.MkdirTemp(tempParent(c.acct != nil), prefix); err != nil {
			return nil, err
		}
		c.ownsDir = true
	} else if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = c.Close()
		}
	}()
	// The server's OS user must be able to traverse dir.
	if err := os.Chmod(c.dir, 0o755); err != nil {
		return nil, err
	}
	c.data = filepath.Join(c.dir, "data")
	c.sock = filepath.Join(c.dir, "sock")
	c.logFile = filepath.Join(c.dir, "server.log")
	if c.ownsDir {
		if c.watchdog, err = StartWatchdog(c.data, c.dir); err != nil {
			return nil, fmt.Errorf("starting cleanup watchdog: %w", err)
		}
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
	if c.acct != nil {
		for _, p := range []string{c.data, c.sock, c.logFile} {
			if err := os.Chown(p, c.acct.uid, c.acct.gid); err != nil {
				return nil, err
			}
		}
	}
	out, err := c.run(ctx, "initdb", "-D", c.data, "-A", "trust", "-U", User,
		"--no-sync", "-E", "UTF8", "--locale=C")
	if err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if v, err := os.ReadFile(filepath.Join(c.data, "PG_VERSION")); err == nil {
		c.version = strings.TrimSpace(string(v))
	}

	var errs []error
	for try := 1; try <= startTries; try++ {
		if c.port, err = proctest.FreePort(); err != nil {
			return nil, err
		}
		c.opts = serverOptions(c.port, c.sock, o.Settings)
		if err = c.pgCtlStart(ctx); err == nil {
			return c, nil
		}
		errs = append(errs, fmt.Errorf("attempt %d: %w", try, err))
		// In case pg_ctl gave up waiting on a server that did start.
		_ = c.Stop(ctx, "immediate")
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("%w\nserver log (tail):\n%s", errors.Join(errs...), proctest.TailFile(c.logFile, 40))
}

// tempParent returns the directory to create a temporary directory in. When
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

// serverOptions are the postgres options for pg_ctl -o, which hands them to
// /bin/sh; every setting is quoted.
func serverOptions(port int, sock string, settings []string) string {
	opts := []string{"-p", strconv.Itoa(port), "-k", shellQuote(sock), "-c", "listen_addresses=127.0.0.1"}
	for _, s := range settings {
		opts = append(opts, "-c", shellQuote(s))
	}
	return strings.Join(opts, " ")
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// pgCtlStart runs pg_ctl start and waits until the server accepts
// connections.
func (c *Cluster) pgCtlStart(ctx context.Context) error {
	out, err := c.run(ctx, "pg_ctl", "-w", "-t", strconv.Itoa(int(startTimeout/time.Second)),
		"-D", c.data, "-l", c.logFile, "-o", c.opts, "start")
	if err != nil {
		return fmt.Errorf("pg_ctl start (port %d): %v\n%s", c.port, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Start starts the server again, after Stop, on the same port and data
// directory, and waits until it accepts connections.
func (c *Cluster) Start(ctx context.Context) error {
	if err := c.pgCtlStart(ctx); err != nil {
		return fmt.Errorf("%w\nserver log (tail):\n%s", err, proctest.TailFile(c.logFile, 20))
	}
	return nil
}

// Stop stops the server with pg_ctl's shutdown mode ("smart", "fast" or
// "immediate") and waits until it has exited.
func (c *Cluster) Stop(ctx context.Context, mode string) error {
	out, err := c.run(ctx, "pg_ctl", "-D", c.data, "-m", mode, "-w",
		"-t", strconv.Itoa(int(stopTimeout/time.Second)), "stop")
	if err != nil {
		return fmt.Errorf("pg_ctl stop -m %s: %v\n%s", mode, err, out)
	}
	return nil
}

// Close stops a server that still runs (immediate shutdown) and, when New
// created the directory, removes it and releases the watchdog. It is safe
// to call on a partly started cluster.
func (c *Cluster) Close() error {
	var errs []error
	if _, err := os.Stat(filepath.Join(c.data, "postmaster.pid")); c.data != "" && err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout+10*time.Second)
		errs = append(errs, c.Stop(ctx, "immediate"))
		cancel()
	}
	if c.ownsDir {
		errs = append(errs, os.RemoveAll(c.dir))
	}
	if c.watchdog != nil {
		c.watchdog.Release()
	}
	return errors.Join(errs...)
}

// PID is the postmaster's process id, 0 when it is not running.
func (c *Cluster) PID() int {
	if c.data == "" {
		return 0
	}
	b, err := os.ReadFile(filepath.Join(c.data, "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

// Port is the TCP port the server listens on, on 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// Version is the server's major version, as in PG_VERSION.
func (c *Cluster) Version() string { return c.version }

// Dir is the directory holding the data directory, sockets and log.
func (c *Cluster) Dir() string { return c.dir }

// DataDir is the data directory.
func (c *Cluster) DataDir() string { return c.data }

// OSUser is the OS user the server runs as: "postgres" when the caller is
// root, "" when the server runs as the caller.
func (c *Cluster) OSUser() string {
	if c.acct == nil {
		return ""
	}
	return User
}

// DSN is the URL of database db, as the superuser, over TCP.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", User, c.port, db)
}

// CreateDB creates an empty database.
func (c *Cluster) CreateDB(ctx context.Context, name string) error {
	return c.exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
}

// DropDB drops a database if it exists, even while clients are connected
// to it (WITH (FORCE)).
func (c *Cluster) DropDB(ctx context.Context, name string) error {
	return c.exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

// exec runs stmt on a new connection to the "postgres" database.
func (c *Cluster) exec(ctx context.Context, stmt string) error {
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, stmt)
	return err
}

// Tool returns the path of a client program such as psql or pgbench: the
// one next to the server binaries, else the one on $PATH.
func (c *Cluster) Tool(name string) (string, error) {
	if p := filepath.Join(c.binDir, name); isExecutable(p) {
		return p, nil
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found next to %s nor on PATH", name, c.binDir)
	}
	return p, nil
}

// ClientEnv is the environment for client programs (psql, pgbench): the
// caller's without PG* and locale variables, in the C locale, without a
// .psqlrc.
func ClientEnv() []string { return append(serverEnv(), "PSQLRC=/dev/null") }

// serverEnv is the caller's environment without PG* variables (which could
// point pg_ctl elsewhere) and locale variables, in the C locale.
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

// run runs a server program as the server's OS user and returns its
// combined output. The output goes through a file, not a pipe: pg_ctl start
// leaves the postmaster running, and it must not hold a pipe of ours open.
func (c *Cluster) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	f, err := os.CreateTemp("", "pgcluster-cmd-*.out")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, name), args...)
	cmd.Dir, cmd.Env = c.dir, serverEnv()
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = runAsAttr(c.acct)
	runErr := cmd.Run()
	out, _ := os.ReadFile(f.Name())
	return out, runErr
}

// Watchdog is a detached process that stops a PostgreSQL server and
// removes a directory once the process that started it exits or calls
// Release.
type Watchdog struct {
	cmd  *exec.Cmd
	pipe *os.File // write end; closing it (or dying) wakes the watchdog
}

// watchdogScript waits until its stdin reaches EOF, when the owner closes
// the pipe or dies, then shuts down a postmaster still running in data
// directory $1 and removes $2 unless it is empty.
const watchdogScript = `
cat >/dev/null
pidfile="$1/postmaster.pid"
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
[ -z "$2" ] || rm -rf "$2"
`

// StartWatchdog starts a watchdog that, once this process exits without
// calling Release (after a panic, a timeout or a kill), stops the server
// whose data directory is dataDir (SIGQUIT, then SIGKILL) and removes
// removeDir unless it is empty. It runs in its own session, so a Ctrl-C at
// the terminal does not stop it before it has cleaned up.
func StartWatchdog(dataDir, removeDir string) (*Watchdog, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", watchdogScript, "pgcluster-watchdog", dataDir, removeDir)
	cmd.Stdin = r
	// Stdout and stderr go to /dev/null so that `go test` does not wait
	// for the watchdog.
	cmd.SysProcAttr = detachedAttr()
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, err
	}
	return &Watchdog{cmd: cmd, pipe: w}, nil
}

// Release wakes the watchdog, which cleans up whatever is left, and waits
// for it to exit (at most 15 seconds, then kills it).
func (w *Watchdog) Release() {
	w.pipe.Close()
	done := make(chan struct{})
	go func() { _ = w.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = w.cmd.Process.Kill()
		<-done
	}
}
