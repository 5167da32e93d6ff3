package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// serverProc is the server binary running as our child on 127.0.0.1. It can
// be killed, stopped and started again with the same settings.
type serverProc struct {
	h        *harness
	name     string
	settings map[string]string // WEMESSE_* variables
	dir      string            // working directory (no stray .env) and log
	logPath  string
	addr     string // 127.0.0.1:PORT
	URL      string // http://127.0.0.1:PORT

	cmd       *exec.Cmd
	done      chan struct{} // closed when the current process has exited
	exitErr   error
	exitedAt  time.Time
	logOffset int64 // where the current process's log begins
}

// startServer starts a server on a free port with the harness's defaults,
// overridden by settings, and waits until /healthz answers.
func (h *harness) startServer(ctx context.Context, name, db string, settings map[string]string) (*serverProc, error) {
	dir, err := h.mkdir("server-" + name)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &serverProc{h: h, name: name, dir: dir, logPath: filepath.Join(dir, "server.log"),
		addr: "127.0.0.1:" + strconv.Itoa(port)}
	s.URL = "http://" + s.addr
	s.settings = map[string]string{
		"WEMESSE_ADDR":         s.addr,
		"WEMESSE_DATABASE_URL": h.pg.DSN(db),
		"WEMESSE_UPLOAD_DIR":   filepath.Join(dir, "uploads"),
		"WEMESSE_PUBLIC_URL":   s.URL + "/uploads",
		"WEMESSE_SIGNATURE":    h.admin,
		// Cheap hashes: the bootstrap and CLI secrets are hashed with these.
		"WEMESSE_ARGON2_MEMORY":      "1024",
		"WEMESSE_ARGON2_ITERATIONS":  "1",
		"WEMESSE_ARGON2_PARALLELISM": "1",
		"WEMESSE_LOG_LEVEL":          "info",
	}
	for k, v := range settings {
		s.settings[k] = v
	}
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// uploadDir is the server's WEMESSE_UPLOAD_DIR.
func (s *serverProc) uploadDir() string { return s.settings["WEMESSE_UPLOAD_DIR"] }

// stagingDir is where the server stages uploads.
func (s *serverProc) stagingDir() string { return filepath.Join(s.uploadDir(), ".staging") }

// env is our environment without WEMESSE_* variables, plus the settings.
func (s *serverProc) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WEMESSE_") {
			env = append(env, kv)
		}
	}
	for k, v := range s.settings {
		env = append(env, k+"="+v)
	}
	return env
}

// start launches the process (again) and waits for /healthz.
func (s *serverProc) start(ctx context.Context) error {
	if s.cmd != nil && !s.exited() {
		return errors.New("server: start while running")
	}
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor
	if fi, err := logFile.Stat(); err == nil {
		s.logOffset = fi.Size()
	}
	cmd := exec.Command(s.h.bin, "serve")
	cmd.Dir = s.dir
	cmd.Env = s.env()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	s.cmd, s.done, s.exitErr = cmd, make(chan struct{}), nil
	s.h.track(s)
	done := s.done
	go func() {
		err := cmd.Wait()
		s.exitErr, s.exitedAt = err, time.Now()
		close(done)
	}()
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := do(ctx, c, "GET", s.URL+"/healthz", "", "", nil, time.Second)
		if r.status == http.StatusOK {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("server exited at start: %v\nserver log (tail):\n%s", s.exitErr, lastLines(s.logText(), 15))
		case <-ctx.Done():
			s.kill()
			return ctx.Err()
		case <-time.After(30 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("server not healthy within 30s\nserver log (tail):\n%s", lastLines(s.logText(), 15))
		}
	}
}

// pid is the current process's id.
func (s *serverProc) pid() int { return s.cmd.Process.Pid }

// exited reports whether the current process has ended.
func (s *serverProc) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// waitExit waits at most d for the process to end.
func (s *serverProc) waitExit(d time.Duration) bool {
	select {
	case <-s.done:
		return true
	case <-time.After(d):
		return false
	}
}

// signal sends sig to the process.
func (s *serverProc) signal(sig syscall.Signal) error { return s.cmd.Process.Signal(sig) }

// kill ends the process with SIGKILL and waits for it.
func (s *serverProc) kill() {
	if s.cmd == nil || s.exited() {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

// stop ends the process gracefully (SIGTERM), or with SIGKILL after 20s.
func (s *serverProc) stop() {
	if s.cmd == nil || s.exited() {
		return
	}
	_ = s.signal(syscall.SIGTERM)
	if !s.waitExit(20 * time.Second) {
		s.kill()
	}
}

// logText is the current process's log so far.
func (s *serverProc) logText() string {
	f, err := os.Open(s.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	f.Seek(s.logOffset, io.SeekStart)
	b, _ := io.ReadAll(f)
	return string(b)
}

// errorLines returns the log lines of every run of this server at level
// ERROR or that mention a panic.
func (s *serverProc) errorLines() []string {
	var out []string
	b, _ := os.ReadFile(s.logPath)
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, "panic") {
			out = append(out, line)
		}
	}
	return out
}

// rss reads VmRSS and VmHWM of the process, in kB.
func (s *serverProc) rss() (memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid()))
	if err != nil {
		return memory{}, err
	}
	return parseStatus(bytes.NewReader(b))
}

// createSecret runs `wemesse signature create --role ROLE` with the
// server's settings and returns the secret, the last line of its output.
func (s *serverProc) createSecret(ctx context.Context, role string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.h.bin, "signature", "create", "--role", role)
	cmd.Dir = s.dir
	cmd.Env = s.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("signature create: %w\n%s", err, stderr.String())
	}
	secret := strings.TrimSpace(lastLines(stdout.String(), 1))
	if secret == "" || strings.ContainsAny(secret, " \t") {
		return "", fmt.Errorf("signature create: unexpected output %q", stdout.String())
	}
	// A running server learns of the new row within WEMESSE_AUTH_REFRESH.
	// Wait for it on an endpoint that writes nothing: 403 (known, not
	// admin) or 200 means it authenticates. Few tries, far below the
	// per-address failure limit.
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	created := time.Now()
	for try := 0; ; try++ {
		r := do(ctx, c, "GET", s.URL+"/api/v1/stats", secret, "", nil, 5*time.Second)
		if r.status == http.StatusForbidden || r.status == http.StatusOK {
			s.h.info("a %s-role secret was created with `wemesse signature create`; the running server accepted it %s later (%d refused tries)",
				role, time.Since(created).Round(time.Millisecond), try)
			return secret, nil
		}
		if try == 20 || ctx.Err() != nil {
			return "", fmt.Errorf("the server does not accept the new %s secret: %s", role, r.describe())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// exitDescription says how the process ended.
func (s *serverProc) exitDescription() string {
	if s.exitErr == nil {
		return "exit status 0"
	}
	return s.exitErr.Error()
}

// memory is a resident set, current and peak, in kB.
type memory struct{ rssKB, hwmKB int64 }

// parseStatus reads VmRSS and VmHWM from a /proc/PID/status text.
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
	if err := sc.Err(); err != nil {
		return memory{}, err
	}
	if found < 2 {
		return memory{}, errors.New("VmRSS/VmHWM not found in /proc status")
	}
	return m, nil
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

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
