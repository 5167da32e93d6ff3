package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/wemesse/server/internal/proctest"
)

// staticChildCommand is the hidden subcommand with which the tool runs its
// own minimal handler as a separate process, so that a reference stands
// where the server stands: in a process of its own, reached over loopback.
const staticChildCommand = "static-reference"

// staticHandler is the minimal net/http handler the references run: it
// writes body with contentType, whatever the request.
func staticHandler(contentType string, body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write(body)
	})
}

// runStaticChild is the child's whole program: it serves the bytes of
// -body-file on 127.0.0.1, prints its URL on stdout, and stops when stdin
// closes (the parent went away or closed it).
func runStaticChild(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet(staticChildCommand, flag.ContinueOnError)
	contentType := fs.String("content-type", "application/json", "Content-Type of the answer")
	bodyFile := fs.String("body-file", "", "file holding the answer's bytes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	body, err := os.ReadFile(*bodyFile)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: staticHandler(*contentType, body), ReadHeaderTimeout: 10 * time.Second}
	go func() { _, _ = io.Copy(io.Discard, stdin); _ = srv.Close() }()
	fmt.Fprintf(stdout, "http://%s\n", l.Addr())
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// staticProcess is a running static-reference child.
type staticProcess struct {
	URL   string
	cmd   *exec.Cmd
	stdin io.Closer
	dir   string
}

// startStaticProcess runs this tool as a static-reference child serving
// body, and waits until it listens. The caller must close it.
// cpuTime is the CPU time the process has used.
func (p *staticProcess) cpuTime() (time.Duration, error) { return processTreeCPU(p.cmd.Process.Pid) }

func startStaticProcess(ctx context.Context, contentType string, body []byte) (_ *staticProcess, err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "wemesse-bench-static-")
	if err != nil {
		return nil, err
	}
	p := &staticProcess{dir: dir}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	file := dir + "/body"
	if err := os.WriteFile(file, body, 0o600); err != nil {
		return nil, err
	}
	p.cmd = exec.CommandContext(ctx, self, staticChildCommand, "-content-type", contentType, "-body-file", file)
	p.cmd.SysProcAttr = proctest.ChildAttr()
	p.cmd.Stderr = os.Stderr
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("static reference: no address: %w", err)
	}
	p.URL = strings.TrimSpace(line)
	return p, proctest.LoopbackOnly(p.URL)
}

// close stops the child and removes its files.
func (p *staticProcess) close() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.stdin.Close()
		done := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
		}
	}
	_ = os.RemoveAll(p.dir)
}
