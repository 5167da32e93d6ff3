package main

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
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Bounds on the throwaway PostgreSQL cluster.
const (
	pgStartTimeout = 60 * time.Second // until it accepts connections
	pgStopTimeout  = 30 * time.Second // fast shutdown, then immediate
	pgStmtTimeout  = 60 * time.Second // CREATE / DROP DATABASE
	pgStartTries   = 3
	pgUser         = "postgres" // superuser role and, when we are root, OS user
)

// pgShownSettings are reported with every run on PostgreSQL.
var pgShownSettings = []string{
	"server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_level",
	"shared_buffers", "work_mem", "max_wal_size", "checkpoint_timeout", "max_connections",
}

// pgCluster is a PostgreSQL cluster the tool created in a temporary
// directory and runs as a child process on 127.0.0.1. The server and
// pgbench use the same cluster, so a comparison between them is fair.
type pgCluster struct {
	binDir   string
	account  *pgAccount // nil unless we are root
	base     string     // temp dir holding data/, sock/ and server.log
	data     string
	sock     string
	logPath  string
	port     int
	settings []string // -c NAME=VALUE given to postgres

	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error

	watchdog     *exec.Cmd
	watchdogPipe *os.File
}

type pgAccount struct{ uid, gid int }

// findPGBin returns the directory holding initdb and postgres: dir if
// given, else $WEMESSE_PG_BIN, /usr/lib/postgresql/15/bin, the newest
// /usr/lib/postgresql/*/bin or `pg_config --bindir`.
func findPGBin(dir string) (string, error) {
	var candidates []string
	if dir != "" {
		candidates = []string{dir}
	} else {
		if env := os.Getenv("WEMESSE_PG_BIN"); env != "" {
			candidates = append(candidates, env)
		}
		candidates = append(candidates, "/usr/lib/postgresql/15/bin")
		globbed, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		sort.Slice(globbed, func(i, j int) bool { return pgMajor(globbed[i]) > pgMajor(globbed[j]) })
		candidates = append(candidates, globbed...)
		if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
			candidates = append(candidates, strings.TrimSpace(string(out)))
		}
	}
	for _, d := range candidates {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", fmt.Errorf("PostgreSQL server binaries (initdb, postgres) not found in %s; pass -pg-bin DIR or -db sqlite", strings.Join(candidates, ", "))
}

func pgMajor(binDir string) float64 {
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

// pgTool returns the path of a client program (psql, pgbench): the one next
// to the server binaries, else the one on PATH.
func (c *pgCluster) pgTool(name string) (string, error) {
	if p := filepath.Join(c.binDir, name); isExecutable(p) {
		return p, nil
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found next to %s nor on PATH", name, c.binDir)
	}
	return p, nil
}

// startPostgres creates a cluster in a new temp directory and starts it on
// a free port of 127.0.0.1, with PostgreSQL's defaults (fsync on,
// synchronous_commit on) plus settings ("NAME=VALUE").
func startPostgres(ctx context.Context, binDir string, settings []string, logf func(string, ...any)) (_ *pgCluster, err error) {
	c := &pgCluster{binDir: binDir, settings: settings}
	if os.Geteuid() == 0 {
		u, err := user.Lookup(pgUser)
		if err != nil {
			return nil, fmt.Errorf("running as root, PostgreSQL must run as the %q OS user, which was not found: %w", pgUser, err)
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("OS user %q has a non-numeric uid or gid", pgUser)
		}
		c.account = &pgAccount{uid: uid, gid: gid}
	}
	// /tmp, not $TMPDIR: as root, the postgres user must reach it.
	parent := os.TempDir()
	if c.account != nil {
		parent = "/tmp"
	}
	if c.base, err = os.MkdirTemp(parent, "wemesse-bench-pg-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	if err := os.Chmod(c.base, 0o755); err != nil {
		return nil, err
	}
	c.data, c.sock, c.logPath = filepath.Join(c.base, "data"), filepath.Join(c.base, "sock"), filepath.Join(c.base, "server.log")
	c.startWatchdog()
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{c.data, 0o700}, {c.sock, 0o755}} {
		if err := os.Mkdir(d.path, d.mode); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(c.logPath, nil, 0o644); err != nil {
		return nil, err
	}
	if c.account != nil {
		for _, p := range []string{c.data, c.sock, c.logPath} {
			if err := os.Chown(p, c.account.uid, c.account.gid); err != nil {
				return nil, err
			}
		}
	}
	initCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	initdb := exec.CommandContext(initCtx, filepath.Join(binDir, "initdb"), "-D", c.data, "-A", "trust", "-U", pgUser,
		"-E", "UTF8", "--locale=C", "--no-sync")
	initdb.Dir, initdb.Env, initdb.SysProcAttr = "/", pgEnv(), pgAttr(c.account)
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	var errs []error
	for try := 1; try <= pgStartTries; try++ {
		if err := c.start(ctx); err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		logf("PostgreSQL pid %d listening on 127.0.0.1:%d (data in %s)", c.cmd.Process.Pid, c.port, c.data)
		return c, nil
	}
	return nil, errors.Join(errs...)
}

// start runs postgres on a free port and waits until it accepts connections.
func (c *pgCluster) start(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	c.port = port
	args := []string{"-D", c.data, "-p", strconv.Itoa(port), "-k", c.sock, "-c", "listen_addresses=127.0.0.1"}
	for _, s := range c.settings {
		args = append(args, "-c", s)
	}
	logFile, err := os.OpenFile(c.logPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer logFile.Close()
	c.cmd = exec.Command(filepath.Join(c.binDir, "postgres"), args...)
	c.cmd.Dir, c.cmd.Env, c.cmd.SysProcAttr = "/", pgEnv(), pgChildAttr(c.account)
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	if err := c.cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	c.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		c.waitErr = cmd.Wait()
		close(done)
	}(c.cmd, c.done)

	waitCtx, cancel := context.WithTimeout(ctx, pgStartTimeout)
	defer cancel()
	for {
		connCtx, cancelConn := context.WithTimeout(waitCtx, 2*time.Second)
		conn, err := pgx.Connect(connCtx, c.dsn("postgres"))
		cancelConn()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		select {
		case <-c.done:
			return fmt.Errorf("postgres exited at start: %v\n%s", c.waitErr, tailFile(c.logPath, 20))
		case <-waitCtx.Done():
			c.kill()
			return fmt.Errorf("postgres not ready within %s: %w\n%s", pgStartTimeout, err, tailFile(c.logPath, 20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// dsn is the URL of database db, as the superuser, over TCP.
func (c *pgCluster) dsn(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", pgUser, c.port, db)
}

// admin runs fn on a connection to the maintenance database.
func (c *pgCluster) admin(ctx context.Context, fn func(*pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, pgStmtTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.dsn("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return fn(conn)
}

// createDatabase creates an empty database and returns its DSN.
func (c *pgCluster) createDatabase(ctx context.Context, name string) (string, error) {
	err := c.admin(ctx, func(conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
		return err
	})
	if err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return c.dsn(name), nil
}

func (c *pgCluster) dropDatabase(ctx context.Context, name string) error {
	return c.admin(ctx, func(conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		return err
	})
}

// describe lists the settings that matter for the comparison.
func (c *pgCluster) describe(ctx context.Context) (string, error) {
	var parts []string
	err := c.admin(ctx, func(conn *pgx.Conn) error {
		for _, name := range pgShownSettings {
			var v string
			if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
				return err
			}
			parts = append(parts, name+"="+v)
		}
		return nil
	})
	return strings.Join(parts, " "), err
}

// kill ends the postmaster at once; its backends go with it.
func (c *pgCluster) kill() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// stop shuts the cluster down (fast, then immediate), removes its
// directory and releases the watchdog. Safe on a partly started cluster.
func (c *pgCluster) stop() {
	if c.cmd != nil && c.cmd.Process != nil && c.done != nil {
		select {
		case <-c.done:
		default:
			_ = c.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
			select {
			case <-c.done:
			case <-time.After(pgStopTimeout):
				c.kill()
			}
		}
	}
	if c.base != "" {
		_ = os.RemoveAll(c.base)
	}
	if c.watchdog != nil {
		c.watchdogPipe.Close()
		done := make(chan struct{})
		go func() { _ = c.watchdog.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = c.watchdog.Process.Kill()
			<-done
		}
	}
}

// pgWatchdogScript waits until its stdin reaches EOF — when the tool closes
// the pipe or dies — then stops a postmaster still running in $1/data and
// removes $1.
const pgWatchdogScript = `
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

// startWatchdog starts a detached shell that cleans up if the tool exits
// without calling stop. Without /bin/sh there is no watchdog; the
// postmaster still gets SIGQUIT when the tool dies (Linux).
func (c *pgCluster) startWatchdog() {
	r, w, err := os.Pipe()
	if err != nil {
		return
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", pgWatchdogScript, "wemesse-bench-pg-watchdog", c.base)
	cmd.Stdin = r
	cmd.SysProcAttr = detachedAttr()
	if err := cmd.Start(); err != nil {
		w.Close()
		return
	}
	c.watchdog, c.watchdogPipe = cmd, w
}

// pgEnv is our environment without PG* and locale variables, in the C
// locale.
func pgEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C", "LANG=C")
}

// clientEnv is the environment for psql and pgbench: no PG* variable from
// the caller, no .psqlrc.
func clientEnv() []string {
	return append(pgEnv(), "PSQLRC=/dev/null")
}
