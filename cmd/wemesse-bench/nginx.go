package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/wemesse/server/internal/proctest"
)

// nginxProcess is nginx serving one file's bytes on 127.0.0.1, from a
// prefix of its own in a temp dir: its configuration, pid file, temp paths,
// error log and access log. It needs no privilege: a port above 1024, and
// every path in the temp dir (readable by the workers' user when the tool
// runs as root, whose nginx hands the workers to nobody).
type nginxProcess struct {
	URL     string
	Version string
	cmd     *exec.Cmd
	done    chan struct{}
	dir     string
}

// nginxConf is the whole configuration. Access lines go to a file in the
// default (combined) format, and sendfile and tcp_nopush are on, as in
// Debian's nginx.conf; every request on the port gets the file, with the
// server's Content-Type. keepalive_requests is raised from its default of
// 1,000 so that nginx, like the server, keeps each connection for the
// whole run.
const nginxConf = `daemon off;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events {
  worker_connections 1024;
}
http {
  access_log %[1]s/access.log;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path %[1]s/tmp/body;
  proxy_temp_path %[1]s/tmp/proxy;
  fastcgi_temp_path %[1]s/tmp/fastcgi;
  uwsgi_temp_path %[1]s/tmp/uwsgi;
  scgi_temp_path %[1]s/tmp/scgi;
  types { }
  default_type %[2]q;
  server {
    listen %[3]s;
    root %[1]s/www;
    location / {
      try_files /update.json =404;
    }
  }
}
`

// startNginx starts nginx (at path) serving body with contentType, and
// waits until it answers with those bytes. The caller must close it.
func startNginx(ctx context.Context, path, contentType string, body []byte) (_ *nginxProcess, err error) {
	if strings.ContainsAny(contentType, "\"\\{}\n") {
		return nil, fmt.Errorf("nginx: unexpected Content-Type %q", contentType)
	}
	dir, err := os.MkdirTemp("", "wemesse-bench-nginx-")
	if err != nil {
		return nil, err
	}
	n := &nginxProcess{dir: dir}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	for _, d := range []string{dir, dir + "/www", dir + "/tmp"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		if err := os.Chmod(d, 0o755); err != nil { // MkdirTemp's 0700 keeps the workers out
			return nil, err
		}
	}
	if err := os.WriteFile(dir+"/www/update.json", body, 0o644); err != nil {
		return nil, err
	}
	addr, err := proctest.FreeAddr()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, dir, contentType, addr), 0o644); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, path, "-v").CombinedOutput(); err == nil {
		n.Version = strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: ")
	}
	n.cmd = exec.Command(path, "-p", dir, "-c", conf, "-e", dir+"/error.log")
	n.cmd.SysProcAttr = proctest.ChildAttr()
	var stderr bytes.Buffer
	n.cmd.Stdout, n.cmd.Stderr = &stderr, &stderr
	if err := n.cmd.Start(); err != nil {
		return nil, fmt.Errorf("nginx: %w", err)
	}
	n.done = make(chan struct{})
	go func() { _ = n.cmd.Wait(); close(n.done) }()
	n.URL = "http://" + addr
	if err := n.waitServing(ctx, body); err != nil {
		errLog, _ := os.ReadFile(dir + "/error.log")
		return nil, fmt.Errorf("nginx: %w\n%s%s", err, stderr.Bytes(), errLog)
	}
	return n, nil
}

// waitServing waits until nginx answers with body, for at most 10 s.
func (n *nginxProcess) waitServing(ctx context.Context, body []byte) error {
	c := newClient()
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+"/api/v1/updates/"+updateClientVersion+"?device=x", nil)
		if err != nil {
			return err
		}
		if resp, err := c.Do(req); err == nil {
			got, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Equal(got, body) {
				return nil
			}
			return fmt.Errorf("answers %d with %d bytes, want 200 with the %d bytes of the file", resp.StatusCode, len(got), len(body))
		}
		select {
		case <-n.done:
			return errors.New("exited at start")
		case <-ctx.Done():
			return errors.New("not answering after 10s")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// accessLines counts the lines of nginx's access log.
// cpuTime is the CPU time nginx's master and workers have used.
func (n *nginxProcess) cpuTime() (time.Duration, error) { return processTreeCPU(n.cmd.Process.Pid) }

func (n *nginxProcess) accessLines() (int, error) { return countLines(n.dir+"/access.log", nil) }

// countLines counts the lines of a file that contain substr (all lines
// when it is empty), reading it a line at a time.
func countLines(path string, substr []byte) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if len(substr) == 0 || bytes.Contains(sc.Bytes(), substr) {
			n++
		}
	}
	return n, sc.Err()
}

// close stops nginx (SIGQUIT, then SIGKILL after 5 s) and removes its
// prefix.
func (n *nginxProcess) close() {
	if n.cmd != nil && n.cmd.Process != nil && n.done != nil {
		_ = n.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-n.done:
		case <-time.After(5 * time.Second):
			// The workers are in the master's process group.
			_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
			<-n.done
		}
	}
	_ = os.RemoveAll(n.dir)
}

// debianTool returns the path of command, installing Debian package pkg
// with apt-get when it is absent and this runs as root (a fresh machine or
// CI container); otherwise it says how to install it.
func (b *bench) debianTool(ctx context.Context, command, pkg string) (string, error) {
	if p, err := findTool(command, pkg); err == nil {
		return p, nil
	}
	if _, err := exec.LookPath("apt-get"); err != nil || os.Geteuid() != 0 {
		return findTool(command, pkg)
	}
	b.logf("%s is not installed: apt-get install %s", command, pkg)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "--no-install-recommends", pkg}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return findTool(command, pkg)
}

// findTool returns the path of command, on $PATH or in /usr/sbin or /sbin
// (not on every user's PATH), or says how to install it.
func findTool(command, pkg string) (string, error) {
	if p, err := exec.LookPath(command); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, command); isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not installed (Debian: apt-get install %s)", command, pkg)
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
