package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgCluster is a throwaway PostgreSQL cluster on 127.0.0.1, its data in a
// temporary directory, run as the "postgres" OS user when we are root
// (PostgreSQL refuses to run as root).
type pgCluster struct {
	binDir  string
	base    string // data, sock and the server log live here
	data    string
	sock    string
	logFile string
	port    int
	version string
	cred    *syscall.Credential // nil: run as ourselves
}

// findPGBin returns the directory holding initdb, pg_ctl and postgres: the
// flag, else $WEMESSE_PG_BIN, else /usr/lib/postgresql/15/bin.
func findPGBin(flagDir string) (string, error) {
	dir, from := flagDir, "-pg-bin"
	if dir == "" {
		dir, from = os.Getenv("WEMESSE_PG_BIN"), "WEMESSE_PG_BIN"
	}
	if dir == "" {
		dir, from = "/usr/lib/postgresql/15/bin", "the default"
	}
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		if err := checkExecutable(filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("PostgreSQL server binaries not found in %s (%s): %v; install PostgreSQL 15 or set WEMESSE_PG_BIN", dir, from, err)
		}
	}
	return dir, nil
}

// startCluster runs initdb in base and starts the server on a free port. On
// error the returned cluster, if not nil, must still be destroyed.
func startCluster(ctx context.Context, base, binDir string) (*pgCluster, error) {
	c := &pgCluster{binDir: binDir, base: base, data: filepath.Join(base, "data"),
		sock: filepath.Join(base, "sock"), logFile: filepath.Join(base, "server.log")}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf(`running as root, but there is no "postgres" OS user to run PostgreSQL as: %w`, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, err
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
	if c.cred != nil {
		for _, p := range []string{c.data, c.sock, c.logFile} {
			if err := os.Chown(p, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
				return nil, err
			}
		}
	}
	if out, err := c.run(ctx, "initdb", "-D", c.data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if v, err := os.ReadFile(filepath.Join(c.data, "PG_VERSION")); err == nil {
		c.version = strings.TrimSpace(string(v))
	}
	var errs []error
	for try := 1; try <= 3; try++ {
		port, err := freePort()
		if err != nil {
			return c, err
		}
		c.port = port
		if err := c.start(ctx); err == nil {
			return c, nil
		} else {
			errs = append(errs, err)
		}
		c.stop(ctx, "immediate") // in case pg_ctl gave up on a server that did start
		if ctx.Err() != nil {
			break
		}
	}
	return c, errors.Join(errs...)
}

// start starts the server on c.port and waits until it accepts connections.
func (c *pgCluster) start(ctx context.Context) error {
	opts := strings.Join([]string{
		"-p", strconv.Itoa(c.port), "-k", c.sock,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200", "-c", "shared_buffers=64MB",
	}, " ")
	if out, err := c.run(ctx, "pg_ctl", "-w", "-t", "60", "-D", c.data, "-l", c.logFile, "-o", opts, "start"); err != nil {
		return fmt.Errorf("pg_ctl start (port %d): %v\n%s\nserver log (tail):\n%s", c.port, err, out, tailFile(c.logFile, 20))
	}
	return nil
}

// stop stops the server with pg_ctl's mode (smart, fast or immediate) and
// waits until it has exited.
func (c *pgCluster) stop(ctx context.Context, mode string) error {
	if out, err := c.run(ctx, "pg_ctl", "-D", c.data, "-m", mode, "-w", "-t", "30", "stop"); err != nil {
		return fmt.Errorf("pg_ctl stop -m %s: %v\n%s", mode, err, out)
	}
	return nil
}

// destroy stops a server that still runs. The directory goes with the
// harness's.
func (c *pgCluster) destroy() error {
	if _, err := os.Stat(filepath.Join(c.data, "postmaster.pid")); err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	return c.stop(ctx, "immediate")
}

// pid is the postmaster's process id, 0 when it is not running.
func (c *pgCluster) pid() int {
	b, err := os.ReadFile(filepath.Join(c.data, "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

// dsn is the URL of database db as the superuser, over TCP.
func (c *pgCluster) dsn(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// connect opens one connection to database db.
func (c *pgCluster) connect(ctx context.Context, db string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return pgx.Connect(ctx, c.dsn(db))
}

// createDB creates an empty database.
func (c *pgCluster) createDB(ctx context.Context, name string) error {
	conn, err := c.connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	return err
}

// run runs one of the server programs as the server's OS user and returns
// its output. Output goes through a file, not a pipe: pg_ctl start leaves
// the postmaster running, and it must not hold a pipe of ours open.
func (c *pgCluster) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, name), args...)
	cmd.Dir = c.base
	cmd.Env = pgEnv()
	f, err := os.CreateTemp(c.base, "cmd-*.out")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	runErr := cmd.Run()
	f.Seek(0, io.SeekStart)
	out, _ := io.ReadAll(f)
	return out, runErr
}

// pgEnv is our environment without PG* variables (which could point pg_ctl
// elsewhere), in the C locale.
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

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tailFile returns about the last n lines of a file.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	const maxBytes = 16 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > maxBytes {
		_, _ = f.Seek(-maxBytes, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return lastLines(string(b), n)
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
