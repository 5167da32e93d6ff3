package proctest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Bounds on a server's life cycle.
const (
	startTimeout = 30 * time.Second // until /healthz answers
	stopTimeout  = 20 * time.Second // after SIGTERM, before SIGKILL
	cliTimeout   = time.Minute      // one `wemesse signature ...` run
	startTries   = 3                // a free port may be taken before the server binds it
)

// Options say how to start a server.
type Options struct {
	Binary string // the server binary
	// Dir is the working directory (so no .env of the caller's is read)
	// and holds the log, server.log, and by default the SQLite database
	// and the uploads.
	Dir string
	// Settings are WEMESSE_* variables over the defaults: a free port of
	// 127.0.0.1, WEMESSE_PUBLIC_URL on it, Dir/wemesse.db and Dir/uploads.
	Settings map[string]string
}

// Server is the server binary running as a child process. It can be
// stopped, killed and started again with the same settings.
type Server struct {
	URL     string // http://127.0.0.1:PORT
	LogPath string

	binary   string
	dir      string
	settings map[string]string

	cmd       *exec.Cmd
	done      chan struct{} // closed when the current process has exited
	exitErr   error
	exitedAt  time.Time
	logOffset int64 // where the current process's log begins
}

// Start starts a server and waits until /healthz answers. The caller must
// Stop or Kill it on every path.
func Start(ctx context.Context, o Options) (*Server, error) {
	var errs []error
	for try := 1; try <= startTries; try++ {
		s, err := newServer(o)
		if err != nil {
			return nil, err
		}
		if err = s.Restart(ctx); err == nil {
			return s, nil
		}
		errs = append(errs, err)
		// Another process may have taken the free port: try another,
		// unless the caller chose the address.
		if ctx.Err() != nil || o.Settings["WEMESSE_ADDR"] != "" {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func newServer(o Options) (*Server, error) {
	addr := o.Settings["WEMESSE_ADDR"]
	if addr == "" {
		var err error
		if addr, err = FreeAddr(); err != nil {
			return nil, err
		}
	}
	s := &Server{URL: "http://" + addr, LogPath: filepath.Join(o.Dir, "server.log"), binary: o.Binary, dir: o.Dir}
	s.settings = map[string]string{
		"WEMESSE_ADDR":         addr,
		"WEMESSE_PUBLIC_URL":   s.URL + "/uploads",
		"WEMESSE_DATABASE_URL": filepath.Join(o.Dir, "wemesse.db"),
		"WEMESSE_UPLOAD_DIR":   filepath.Join(o.Dir, "uploads"),
	}
	maps.Copy(s.settings, o.Settings)
	return s, nil
}

// Getenv returns a variable of the server's environment.
func (s *Server) Getenv(key string) string {
	if strings.HasPrefix(key, "WEMESSE_") {
		return s.settings[key]
	}
	return os.Getenv(key)
}

// Set changes a setting for the next Restart.
func (s *Server) Set(key, value string) { s.settings[key] = value }

// Addr is the server's 127.0.0.1:PORT.
func (s *Server) Addr() string { return s.settings["WEMESSE_ADDR"] }

// UploadDir is the server's WEMESSE_UPLOAD_DIR.
func (s *Server) UploadDir() string { return s.settings["WEMESSE_UPLOAD_DIR"] }

// StagingDir is where the server stages uploads on disk.
func (s *Server) StagingDir() string { return filepath.Join(s.UploadDir(), ".staging") }

// Env is our environment without any WEMESSE_* variable, so that the
// caller's cannot leak in, plus the server's settings.
func (s *Server) Env() []string {
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

// Restart starts the process (again) and waits for /healthz.
func (s *Server) Restart(ctx context.Context) error {
	if s.cmd != nil && !s.Exited() {
		return errors.New("server: start while running")
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return err
	}
	logFile, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor
	if fi, err := logFile.Stat(); err == nil {
		s.logOffset = fi.Size()
	}
	cmd := exec.Command(s.binary, "serve")
	cmd.Dir = s.dir
	cmd.Env = s.Env()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = ChildAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	done := make(chan struct{})
	s.cmd, s.done, s.exitErr = cmd, done, nil
	go func() {
		err := cmd.Wait()
		s.exitErr, s.exitedAt = err, time.Now()
		close(done)
	}()
	c := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: time.Second}
	defer c.CloseIdleConnections()
	wctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if err := WaitHealthy(wctx, c, s.URL, done); err != nil {
		s.Kill()
		return fmt.Errorf("%w (%s)\nserver log (tail):\n%s", err, s.ExitDescription(), s.LogTail(20))
	}
	return nil
}

// Pid is the current process's id.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Exited reports whether the current process has ended.
func (s *Server) Exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// WaitExit waits at most d for the process to end.
func (s *Server) WaitExit(d time.Duration) bool {
	select {
	case <-s.done:
		return true
	case <-time.After(d):
		return false
	}
}

// ExitErr is how the process ended (nil: status 0), once it has.
func (s *Server) ExitErr() error { return s.exitErr }

// ExitedAt is when the process ended, once it has.
func (s *Server) ExitedAt() time.Time { return s.exitedAt }

// ExitDescription says how the process ended.
func (s *Server) ExitDescription() string {
	if !s.Exited() {
		return "running"
	}
	if s.exitErr == nil {
		return "exit status 0"
	}
	return s.exitErr.Error()
}

// Signal sends sig to the process.
func (s *Server) Signal(sig syscall.Signal) error { return s.cmd.Process.Signal(sig) }

// Kill ends the process with SIGKILL and waits for it. It is safe to call
// more than once and after the process has exited.
func (s *Server) Kill() {
	if s.cmd == nil || s.Exited() {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Stop ends the process gracefully (SIGTERM), or with SIGKILL after 20s.
// It is safe to call more than once and after the process has exited.
func (s *Server) Stop() {
	if s.cmd == nil || s.Exited() {
		return
	}
	_ = s.Signal(syscall.SIGTERM)
	if !s.WaitExit(stopTimeout) {
		s.Kill()
	}
}

// Log is the current process's log so far (its last 16 KiB at most).
func (s *Server) Log() string {
	f, err := os.Open(s.LogPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	return readTail(f, s.logOffset)
}

// WaitLog waits up to d for the current process's log to contain substr,
// and reports whether it does. The server writes its log in batches, at
// least every 100 ms, so a line is not in the file the moment it is logged.
func (s *Server) WaitLog(substr string, d time.Duration) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		if strings.Contains(s.Log(), substr) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// LogTail returns the last n lines of the current process's log.
func (s *Server) LogTail(n int) string { return LastLines(s.Log(), n) }

// CreateSecret runs `wemesse signature create --role ROLE` with the
// server's settings and returns the new signature's id and secret.
func (s *Server) CreateSecret(ctx context.Context, role string) (id int64, secret string, err error) {
	ctx, cancel := context.WithTimeout(ctx, cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.binary, "signature", "create", "--role", role)
	cmd.Dir = s.dir
	cmd.Env = s.Env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return 0, "", fmt.Errorf("signature create: %w\n%s", err, stderr.String())
	}
	return ParseCreated(stdout.String())
}

// ParseCreated reads the CLI's output: "Created ROLE signature ID. ..." and
// the secret alone on the last line.
func ParseCreated(out string) (int64, string, error) {
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

// Memory is a process's resident set, current and peak, in kB.
type Memory struct{ RSSKB, HWMKB int64 }

// Memory reads VmRSS and VmHWM from /proc/PID/status.
func (s *Server) Memory() (Memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.Pid()))
	if err != nil {
		return Memory{}, err
	}
	defer f.Close()
	return ParseStatus(f)
}

// CPUTime is the CPU time, user and system, that the process and all its
// threads have used.
func (s *Server) CPUTime() (time.Duration, error) {
	st, err := ReadStat(s.Pid())
	return st.CPU, err
}

// Stat is what the tools read of a process's /proc/PID/stat.
type Stat struct {
	PPid int           // the parent's pid
	CPU  time.Duration // user and system time of all its threads
}

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Stat{}, err
	}
	return ParseStat(string(b))
}

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// ParseStat reads a /proc/PID/stat text: ppid is its 4th field, utime and
// stime its 14th and 15th. The 2nd, the command, may hold spaces and
// parentheses, so fields are counted from its closing one.
func ParseStat(stat string) (Stat, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return Stat{}, errors.New("/proc stat: no command")
	}
	f := strings.Fields(stat[i+1:]) // f[0] is the 3rd field, the state
	if len(f) < 13 {
		return Stat{}, errors.New("/proc stat: too few fields")
	}
	var n [3]int64
	for j, k := range []int{1, 11, 12} {
		v, err := strconv.ParseInt(f[k], 10, 64)
		if err != nil || v < 0 {
			return Stat{}, fmt.Errorf("/proc stat: field %d is %q", k+3, f[k])
		}
		n[j] = v
	}
	return Stat{PPid: int(n[0]), CPU: time.Duration(n[1]+n[2]) * time.Second / clockTicks}, nil
}

// ResetPeak makes VmHWM start again from the current VmRSS (Linux 4.0+:
// "5" written to /proc/PID/clear_refs), so that a later VmHWM is the peak of
// what ran in between.
func (s *Server) ResetPeak() error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", s.Pid()), []byte("5"), 0)
}

// ParseStatus reads VmRSS and VmHWM from a /proc/PID/status text.
func ParseStatus(r io.Reader) (Memory, error) {
	var m Memory
	found := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return Memory{}, fmt.Errorf("parse %s: %w", k, err)
		}
		if k == "VmRSS" {
			m.RSSKB = n
		} else {
			m.HWMKB = n
		}
		found++
	}
	if err := sc.Err(); err != nil {
		return Memory{}, err
	}
	if found < 2 {
		return Memory{}, errors.New("VmRSS/VmHWM not found in /proc status")
	}
	return m, nil
}
