package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wemesse/server/internal/config"
)

// Bounds on the server's life cycle.
const (
	startTimeout = 30 * time.Second // until /healthz answers
	stopTimeout  = 15 * time.Second // SIGTERM, then SIGKILL
	cliTimeout   = 60 * time.Second // one `wemesse signature ...` run
	startTries   = 3                // a free port may be taken before the server binds it
)

// serverSpec says how to start a server.
type serverSpec struct {
	binary  string
	dataDir string            // holds the SQLite database, the uploads and the log
	dsn     string            // WEMESSE_DATABASE_URL; empty: wemesse.db in dataDir
	admin   string            // WEMESSE_SIGNATURE
	env     map[string]string // extra WEMESSE_* settings
}

// server is a running child process of the server binary on 127.0.0.1.
type server struct {
	spec    serverSpec
	URL     string        // http://127.0.0.1:PORT
	Config  config.Config // the server's effective configuration
	env     []string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	waitErr error

	stopOnce sync.Once
}

// startServer starts the server and waits until /healthz answers. The
// caller must Stop it on every path. -set settings apply, under spec.env.
func (b *bench) startServer(ctx context.Context, spec serverSpec) (*server, error) {
	env := maps.Clone(map[string]string(b.opts.serverEnv))
	if env == nil {
		env = map[string]string{}
	}
	maps.Copy(env, spec.env)
	spec.env = env
	var errs []error
	for try := 1; try <= startTries; try++ {
		s, err := tryStart(ctx, spec)
		if err == nil {
			b.logf("server pid %d listening on %s", s.cmd.Process.Pid, s.URL)
			return s, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func tryStart(ctx context.Context, spec serverSpec) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	s := &server{
		spec:    spec,
		URL:     "http://" + addr,
		logPath: filepath.Join(spec.dataDir, "server.log"),
		done:    make(chan struct{}),
	}
	settings := map[string]string{
		"WEMESSE_ADDR":         addr,
		"WEMESSE_DATABASE_URL": filepath.Join(spec.dataDir, "wemesse.db"),
		"WEMESSE_UPLOAD_DIR":   filepath.Join(spec.dataDir, "uploads"),
		"WEMESSE_PUBLIC_URL":   s.URL + "/uploads",
		"WEMESSE_SIGNATURE":    spec.admin,
		"WEMESSE_LOG_LEVEL":    "error",
	}
	if spec.dsn != "" {
		settings["WEMESSE_DATABASE_URL"] = spec.dsn
	}
	for k, v := range spec.env {
		settings[k] = v
	}
	s.env = childEnv(settings)
	if s.Config, err = config.Load(lookup(s.env)); err != nil {
		return nil, err
	}

	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	s.cmd = exec.Command(spec.binary, "serve")
	s.cmd.Dir = spec.dataDir // no .env from the caller's directory
	s.cmd.Env = s.env
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	s.cmd.SysProcAttr = childAttr()
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start server: %w", err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.done)
	}()
	if err := s.waitHealthy(ctx); err != nil {
		s.Stop()
		return nil, fmt.Errorf("%w\nserver log (tail):\n%s", err, tailFile(s.logPath, 20))
	}
	return s, nil
}

// waitHealthy polls /healthz until it answers 200, the process exits or
// startTimeout passes.
func (s *server) waitHealthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	c := newClient()
	defer c.CloseIdleConnections()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if r, err := send(ctx, c, http.MethodGet, s.URL+"/healthz", "", "", nil); err == nil && r.status == http.StatusOK {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("server exited at start: %v", s.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("server not healthy within %s: %w", startTimeout, ctx.Err())
		case <-tick.C:
		}
	}
}

// Stop ends the server: SIGTERM, then SIGKILL after stopTimeout. It is safe
// to call more than once and after the process has exited.
func (s *server) Stop() {
	s.stopOnce.Do(func() {
		select {
		case <-s.done:
			return
		default:
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(stopTimeout):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
}

// Pid is the server's process id.
func (s *server) Pid() int { return s.cmd.Process.Pid }

// Exited reports whether the server process has ended.
func (s *server) Exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// LogTail returns the end of the server's log.
func (s *server) LogTail(lines int) string { return tailFile(s.logPath, lines) }

// CreateSecret runs `wemesse signature create --role ROLE` with the
// server's settings and returns the new signature's id and secret.
func (s *server) CreateSecret(ctx context.Context, role string) (id int64, secret string, err error) {
	ctx, cancel := context.WithTimeout(ctx, cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.spec.binary, "signature", "create", "--role", role)
	cmd.Dir = s.spec.dataDir
	cmd.Env = s.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return 0, "", fmt.Errorf("signature create: %w\n%s", err, stderr.String())
	}
	return parseCreated(stdout.String())
}

// parseCreated reads the CLI's output: "Created ROLE signature ID. ..." and
// the secret alone on the last line.
func parseCreated(out string) (int64, string, error) {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	secret := strings.TrimSpace(lines[len(lines)-1])
	if len(lines) < 2 || secret == "" || strings.ContainsAny(secret, " \t") {
		return 0, "", fmt.Errorf("signature create: unexpected output (%d lines)", len(lines))
	}
	var id int64
	var role string
	if _, err := fmt.Sscanf(lines[0], "Created %s signature %d.", &role, &id); err != nil {
		id = 0 // the id is informative only
	}
	return id, secret, nil
}

// memory is a process's resident set, current and peak, in kB.
type memory struct{ rssKB, hwmKB int64 }

// Memory reads VmRSS and VmHWM from /proc/PID/status.
func (s *server) Memory() (memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.Pid()))
	if err != nil {
		return memory{}, err
	}
	defer f.Close()
	return parseStatus(f)
}

// ResetPeak makes VmHWM start again from the current VmRSS (Linux 4.0+:
// "5" written to /proc/PID/clear_refs), so that a later VmHWM is the peak of
// what ran in between.
func (s *server) ResetPeak() error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", s.Pid()), []byte("5"), 0)
}

func parseStatus(r io.Reader) (memory, error) {
	var m memory
	found := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return memory{}, fmt.Errorf("parse %s: %w", k, err)
		}
		if k == "VmRSS" {
			m.rssKB = n
		} else {
			m.hwmKB = n
		}
		found++
	}
	if found < 2 {
		return memory{}, errors.New("VmRSS/VmHWM not found in /proc status")
	}
	return m, sc.Err()
}

// childEnv is our environment without any WEMESSE_* variable (so the
// caller's settings cannot leak in), plus settings.
func childEnv(settings map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WEMESSE_") {
			env = append(env, kv)
		}
	}
	for k, v := range settings {
		env = append(env, k+"="+v)
	}
	return env
}

// lookup returns a getenv over env.
func lookup(env []string) func(string) string {
	m := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return func(k string) string { return m[k] }
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

// randomSecret returns n random bytes, base64url-encoded.
func randomSecret(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
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
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
