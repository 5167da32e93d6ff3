// Package proctest runs the server binary as a child process on 127.0.0.1.
// The process tests of cmd/wemesse, the load tool cmd/wemesse-bench and the
// fault tool cmd/wemesse-faults all start, stop, kill and measure the server
// through it: it builds the binary, starts it with a filtered environment
// and waits for /healthz, creates secrets through its CLI, reads its memory
// from /proc, tails its log and sends multipart uploads.
package proctest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// ModuleRoot is the directory of the go.mod that `go env GOMOD` finds from
// the working directory: the server's module.
func ModuleRoot(ctx context.Context) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("the go tool is not on PATH; pass -server PATH to use a built server")
	}
	out, err := exec.CommandContext(ctx, goTool, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the server's Go module; run from the repository or pass -server PATH")
	}
	return filepath.Dir(gomod), nil
}

// Build builds ./cmd/wemesse of the module in root into out, static and
// CGO-free as `make build` does.
func Build(ctx context.Context, root, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./cmd/wemesse")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the server: %w\n%s", err, b)
	}
	return nil
}

// CheckExecutable says why path is not a runnable server binary, if it is
// not.
func CheckExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("server binary: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("server binary %s is not an executable file", path)
	}
	return nil
}

// FreeAddr returns a 127.0.0.1:PORT that was free a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	addr, err := FreeAddr()
	if err != nil {
		return 0, err
	}
	_, port, _ := net.SplitHostPort(addr)
	var n int
	_, err = fmt.Sscan(port, &n)
	return n, err
}

// NewClient returns a keep-alive client for the servers a tool starts: no
// proxy, a 5s dial timeout, up to conns idle connections, no compression,
// no redirect followed and no overall timeout (each request carries its
// own deadline).
func NewClient(conns int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// NewSecret returns n random bytes, base64url-encoded.
func NewSecret(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// LoopbackOnly refuses any URL whose host is not 127.0.0.1: the tools send
// nothing but to the servers they started.
func LoopbackOnly(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	if u.Hostname() != "127.0.0.1" {
		return fmt.Errorf("refusing to send to %q: only 127.0.0.1 is a target", u.Host)
	}
	return nil
}

// LastLines returns the last n lines of s.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TailFile returns about the last n lines of the file at path, from its
// last 16 KiB at most.
func TailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	return LastLines(readTail(f, 0), n)
}

// readTail reads f from offset on, or its last 16 KiB if that is less.
func readTail(f *os.File, offset int64) string {
	const maxBytes = 16 << 10
	if fi, err := f.Stat(); err == nil && fi.Size()-offset > maxBytes {
		offset = fi.Size() - maxBytes
	}
	_, _ = f.Seek(offset, io.SeekStart)
	b, _ := io.ReadAll(f)
	return string(b)
}

// WaitHealthy polls base+"/healthz" until it answers 200, exited is closed
// (the server stopped) or ctx ends.
func WaitHealthy(ctx context.Context, c *http.Client, base string, exited <-chan struct{}) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
		if err != nil {
			return err
		}
		if resp, err := c.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return errors.New("the server exited while starting")
		case <-ctx.Done():
			return fmt.Errorf("the server did not answer /healthz: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// Field is one form field of an upload.
type Field struct{ Name, Value string }

// UploadRequest returns a POST of base+"/api/v1/updates" signed with secret
// whose multipart/form-data body is written as it is sent: the fields in
// order, then file as the part tmpFile named fileName. An error reading
// file ends the body with that error, as a client that goes away does.
func UploadRequest(ctx context.Context, base, secret string, fields []Field, fileName string, file io.Reader) (*http.Request, error) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/updates", pr)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if secret != "" {
		req.Header.Set("signature", secret)
	}
	go func() {
		pw.CloseWithError(writeForm(mw, fields, fileName, file))
	}()
	return req, nil
}

func writeForm(mw *multipart.Writer, fields []Field, fileName string, file io.Reader) error {
	for _, f := range fields {
		if err := mw.WriteField(f.Name, f.Value); err != nil {
			return err
		}
	}
	w, err := mw.CreateFormFile("tmpFile", fileName)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, file); err != nil {
		return err
	}
	return mw.Close()
}
