// Package s3test gives tests a real S3-compatible object store: Versity's
// versitygw gateway with its posix backend, built at a pinned version and
// started by the test binary itself, on a free loopback port.
//
// A package that uses it should install Main as its TestMain so that the
// gateway is stopped and its directory removed when the tests finish:
//
//	func TestMain(m *testing.M) { os.Exit(s3test.Main(m)) }
//
// or, together with dbtest,
//
//	func TestMain(m *testing.M) { os.Exit(s3test.Main(m, dbtest.Main)) }
//
// The gateway is built and started lazily, on the first call to Start,
// Bucket, Client or Env, and is shared by all tests of the test binary. Every
// call to Bucket creates a new, empty bucket.
//
// The binary is looked up in $WEMESSE_VERSITYGW, then in the cache
// (${XDG_CACHE_HOME:-$HOME/.cache}/wemesse/versitygw-VERSION/versitygw). When
// it is not there it is built with `go install` in a temporary module
// directory, outside the project (a minute or two the first time, while
// the modules download), and kept in the cache. When it cannot be built,
// the tests that need it are skipped, except when CI=true, where they fail.
//
// The package only works on Unix-like systems.
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/wemesse/server/internal/proctest"
)

// Version is the versitygw release the tests run against.
const Version = "v1.8.0"

// module is the package built with go install.
const module = "github.com/versity/versitygw/cmd/versitygw"

// envBinary names the environment variable that points at a versitygw
// binary to use instead of the cached or built one.
const envBinary = "WEMESSE_VERSITYGW"

// Region is the region the gateway answers for.
const Region = "us-east-1"

const (
	buildTimeout = 8 * time.Minute
	startTimeout = 30 * time.Second
	startRetries = 3
	opTimeout    = 30 * time.Second
)

var (
	gwOnce    sync.Once
	shared    *gateway // set by gwOnce when the start succeeded
	sharedErr error    // set by gwOnce when the start failed
	sharedMu  sync.Mutex
	skipWhy   string // set by gwOnce when the binary cannot be had

	bucketCounter atomic.Int64
)

// Main runs the tests, through the given wrappers such as dbtest.Main
// (each receives m and returns an exit code; at most one is meaningful),
// and afterwards stops the gateway and removes its directory if one was
// started. It starts nothing eagerly.
func Main(m *testing.M, inner ...func(*testing.M) int) int {
	var code int
	if len(inner) > 0 && inner[0] != nil {
		code = inner[0](m)
	} else {
		code = m.Run()
	}
	if err := shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "s3test: stopping versitygw: %v\n", err)
	}
	return code
}

// Start starts the shared gateway if it is not running and returns its
// endpoint (http://127.0.0.1:PORT) and root credentials. The test is
// skipped (or fails under CI=true) when versitygw cannot be built.
func Start(tb testing.TB) (endpoint, access, secret string) {
	tb.Helper()
	g := sharedGateway(tb)
	return g.endpoint, g.access, g.secret
}

// Env returns the standard AWS variables that point a client at the shared
// gateway: AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY.
func Env(tb testing.TB) map[string]string {
	tb.Helper()
	endpoint, access, secret := Start(tb)
	return map[string]string{
		"AWS_ENDPOINT_URL":      endpoint,
		"AWS_REGION":            Region,
		"AWS_ACCESS_KEY_ID":     access,
		"AWS_SECRET_ACCESS_KEY": secret,
	}
}

// Client returns a client for the shared gateway, with root credentials.
func Client(tb testing.TB) *minio.Client {
	tb.Helper()
	return sharedGateway(tb).client
}

// Bucket creates a new, empty bucket for this test only and returns its
// name. It is removed, with everything in it, when the test ends.
func Bucket(tb testing.TB) string {
	tb.Helper()
	g := sharedGateway(tb)
	name := fmt.Sprintf("t-%d-%s", bucketCounter.Add(1), randomHex(4))
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := g.client.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: Region}); err != nil {
		tb.Fatalf("s3test: create bucket %s: %v", name, err)
	}
	tb.Cleanup(func() {
		// The posix backend keeps a bucket, its objects and its multipart
		// uploads in one directory.
		if err := os.RemoveAll(filepath.Join(g.root, name)); err != nil {
			tb.Errorf("s3test: remove bucket %s: %v", name, err)
		}
	})
	return name
}

// Objects lists the keys of every object in bucket (under prefix, if not
// empty), sorted.
func Objects(tb testing.TB, bucket, prefix string) []string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	var keys []string
	for obj := range Client(tb).ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			tb.Fatalf("s3test: list objects of %s: %v", bucket, obj.Err)
		}
		keys = append(keys, obj.Key)
	}
	sort.Strings(keys)
	return keys
}

// Uploads lists the object keys of every incomplete multipart upload in
// bucket (under prefix, if not empty), sorted.
func Uploads(tb testing.TB, bucket, prefix string) []string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	var keys []string
	for u := range Client(tb).ListIncompleteUploads(ctx, bucket, prefix, true) {
		if u.Err != nil {
			tb.Fatalf("s3test: list multipart uploads of %s: %v", bucket, u.Err)
		}
		keys = append(keys, u.Key)
	}
	sort.Strings(keys)
	return keys
}

// sharedGateway starts the gateway on first use and returns it, or skips
// or fails tb.
func sharedGateway(tb testing.TB) *gateway {
	tb.Helper()
	gwOnce.Do(func() {
		begin := time.Now()
		bin, built, err := binary()
		if err != nil {
			skipWhy = err.Error()
			return
		}
		if built {
			tb.Logf("s3test: built versitygw %s in %v (%s)", Version, time.Since(begin).Round(time.Millisecond), bin)
		}
		begin = time.Now()
		g, err := startGateway(bin)
		sharedMu.Lock()
		shared, sharedErr = g, err
		sharedMu.Unlock()
		if err == nil {
			tb.Logf("s3test: started versitygw on %s in %v (data in %s)", g.endpoint, time.Since(begin).Round(time.Millisecond), g.root)
		}
	})
	switch {
	case skipWhy != "":
		msg := "versitygw is not available: " + skipWhy + "; set " + envBinary + " to a versitygw binary"
		if inCI() {
			tb.Fatal("s3test: " + msg + " (CI=true, so this is a failure, not a skip)")
		}
		tb.Skip("s3test: " + msg)
	case sharedErr != nil:
		tb.Fatalf("s3test: starting versitygw: %v", sharedErr)
	}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil {
		tb.Fatal("s3test: the gateway has already been stopped (used after Main's m.Run returned?)")
	}
	return shared
}

// shutdown stops the shared gateway, if any.
func shutdown() error {
	sharedMu.Lock()
	g := shared
	shared = nil
	sharedMu.Unlock()
	if g == nil {
		return nil
	}
	return g.stop()
}

// inCI reports whether the tests run under CI (CI=true), where a missing
// gateway is a failure.
func inCI() bool {
	ok, _ := strconv.ParseBool(os.Getenv("CI"))
	return ok
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error
	return hex.EncodeToString(b)
}

// CachedBinary returns where the built binary is kept.
func CachedBinary() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "wemesse", "versitygw-"+Version, "versitygw"), nil
}

// binary returns the versitygw binary to run, building it into the cache
// when needed; built reports whether it was built now.
func binary() (path string, built bool, err error) {
	if p := os.Getenv(envBinary); p != "" {
		if !executable(p) {
			return "", false, fmt.Errorf("%s=%s is not an executable file", envBinary, p)
		}
		return p, false, nil
	}
	path, err = CachedBinary()
	if err != nil {
		return "", false, fmt.Errorf("no cache directory: %v", err)
	}
	if executable(path) {
		return path, false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", false, err
	}
	// Several test binaries may want it at once: one builds, the others
	// wait and reuse it.
	unlock, err := lockFile(filepath.Join(filepath.Dir(path), ".lock"))
	if err != nil {
		return "", false, err
	}
	defer unlock()
	if executable(path) {
		return path, false, nil
	}
	if err := build(path); err != nil {
		return "", false, err
	}
	return path, true, nil
}

// build runs go install in a temporary module-less directory, so that the
// project's go.mod is never touched, and moves the result to dst.
func build(dst string) error {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		goCmd = filepath.Join(runtime.GOROOT(), "bin", "go")
		if !executable(goCmd) {
			return errors.New("the go command was not found to build it")
		}
	}
	work, err := os.MkdirTemp("", "wemesse-versitygw-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	gobin := filepath.Join(work, "bin")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goCmd, "install", module+"@"+Version)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=-mod=mod", "GOWORK=off", "GO111MODULE=on")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go install %s@%s failed: %v\n%s", module, Version, err, proctest.LastLines(string(out), 30))
	}
	tmp := dst + ".tmp-" + randomHex(4)
	if err := copyFile(filepath.Join(gobin, "versitygw"), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	return out.Close()
}

// lockFile takes an exclusive lock on path, waiting for it.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// gateway is a running versitygw.
type gateway struct {
	base     string // temp dir holding everything below
	root     string // base/root: the posix backend's top directory
	logFile  string // base/versitygw.log
	endpoint string
	access   string
	secret   string
	client   *minio.Client

	transport *http.Transport

	cmd          *exec.Cmd
	exited       chan struct{} // closed when cmd has been waited for
	watchdog     *exec.Cmd
	watchdogPipe *os.File // write end; closing it (or dying) wakes the watchdog
}

// startGateway starts versitygw on a free loopback port and waits until it
// answers S3 requests.
func startGateway(bin string) (_ *gateway, err error) {
	g := &gateway{access: "wemesse-" + randomHex(6), secret: randomHex(20)}
	if g.base, err = os.MkdirTemp("", "wemesse-s3test-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = g.stop()
		}
	}()
	g.root = filepath.Join(g.base, "root")
	g.logFile = filepath.Join(g.base, "versitygw.log")
	if err := os.Mkdir(g.root, 0o755); err != nil {
		return nil, err
	}
	if err := g.startWatchdog(); err != nil {
		return nil, fmt.Errorf("starting cleanup watchdog: %w", err)
	}
	var errs []error
	for attempt := 1; attempt <= startRetries; attempt++ {
		if err = g.start(bin); err == nil {
			return g, nil
		}
		errs = append(errs, fmt.Errorf("attempt %d: %w", attempt, err))
	}
	return nil, errors.Join(errs...)
}

// start runs the gateway once, on a port that was free a moment ago.
func (g *gateway) start(bin string) error {
	port, err := proctest.FreePort()
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	logf, err := os.OpenFile(g.logFile, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "--port", addr, "--access", g.access, "--secret", g.secret,
		"--region", Region, "--quiet", "posix", g.root)
	cmd.Dir = g.base
	cmd.Env = gatewayEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	// The gateway dies with the test binary even without Main.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread() // Pdeathsig follows the thread that started it
	err = cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	g.cmd, g.exited = cmd, exited
	// The watchdog kills whatever pid the file names.
	if err := os.WriteFile(filepath.Join(g.base, "pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		g.kill()
		return err
	}
	g.endpoint = "http://" + addr
	g.transport = http.DefaultTransport.(*http.Transport).Clone()
	g.client, err = minio.New(addr, &minio.Options{
		Creds:        credentials.NewStaticV4(g.access, g.secret, ""),
		Region:       Region,
		BucketLookup: minio.BucketLookupPath,
		Transport:    g.transport,
		MaxRetries:   1,
	})
	if err != nil {
		g.kill()
		return err
	}
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-exited:
			return fmt.Errorf("versitygw exited while starting (%v)\nlog (tail):\n%s", cmd.ProcessState, proctest.TailFile(g.logFile, 30))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := g.client.ListBuckets(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			g.kill()
			return fmt.Errorf("versitygw did not answer on %s within %v: %v\nlog (tail):\n%s", addr, startTimeout, err, proctest.TailFile(g.logFile, 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gatewayEnv is our environment without variables that would configure the
// gateway behind our back.
func gatewayEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VGW_") || strings.HasPrefix(kv, "ROOT_") || strings.HasPrefix(kv, "AWS_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// watchdogScript waits until its stdin reaches EOF — when the test binary
// closes the pipe or dies — then kills the gateway named by $1/pid and
// removes $1.
const watchdogScript = `
cat >/dev/null
if [ -f "$1/pid" ]; then
	kill -KILL "$(cat "$1/pid")" 2>/dev/null
fi
rm -rf "$1"
`

// startWatchdog starts a detached shell that cleans up if the test binary
// exits without calling stop (after a panic, a test timeout or without
// Main).
func (g *gateway) startWatchdog() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", watchdogScript, "s3test-watchdog", g.base)
	cmd.Stdin = r
	// Stdout and stderr go to /dev/null so that go test does not wait for
	// the watchdog; its own session keeps it alive on Ctrl-C.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return err
	}
	g.watchdog, g.watchdogPipe = cmd, w
	return nil
}

// kill stops the gateway process, if running.
func (g *gateway) kill() {
	if g.cmd == nil {
		return
	}
	select {
	case <-g.exited:
		return
	default:
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
	case <-time.After(5 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.exited
	}
}

// stop shuts the gateway down, removes its directory and releases the
// watchdog. It is safe to call on a partially started gateway.
func (g *gateway) stop() error {
	g.kill()
	var err error
	if g.base != "" {
		err = os.RemoveAll(g.base)
	}
	if g.watchdog != nil {
		g.watchdogPipe.Close()
		done := make(chan error, 1)
		go func() { done <- g.watchdog.Wait() }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = g.watchdog.Process.Kill()
			<-done
		}
	}
	if g.transport != nil {
		g.transport.CloseIdleConnections()
	}
	return err
}
