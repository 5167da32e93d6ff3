package handler

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestConnContext_setsUserTimeout: a TCP connection gets TCP_USER_TIMEOUT
// of the stall and a marked context; one that cannot take it (a Unix
// socket) or a server without a stall keeps its context unmarked.
func TestConnContext_setsUserTimeout(t *testing.T) {
	accept := func(t *testing.T, network, addr string) net.Conn {
		t.Helper()
		ln, err := net.Listen(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		client, err := net.Dial(network, ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close() })
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	userTimeout := func(t *testing.T, c net.Conn) int {
		t.Helper()
		raw, err := c.(syscall.Conn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var v int
		var gerr error
		raw.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT) })
		if gerr != nil {
			t.Fatal(gerr)
		}
		return v
	}
	guarded := func(ctx context.Context) bool { return ctx.Value(kernelStallKey{}) != nil }

	tcp := accept(t, "tcp", "127.0.0.1:0")
	if ctx := ConnContext(1500*time.Millisecond)(context.Background(), tcp); !guarded(ctx) {
		t.Error("a TCP connection was not marked as guarded")
	}
	if got := userTimeout(t, tcp); got != 1500 {
		t.Errorf("TCP_USER_TIMEOUT = %d ms, want 1500", got)
	}

	other := accept(t, "tcp", "127.0.0.1:0")
	if ctx := ConnContext(0)(context.Background(), other); guarded(ctx) {
		t.Error("without a stall, a connection was marked as guarded")
	}
	if got := userTimeout(t, other); got != 0 {
		t.Errorf("without a stall, TCP_USER_TIMEOUT = %d ms, want the default 0", got)
	}

	unixConn := accept(t, "unix", filepath.Join(t.TempDir(), "s"))
	if ctx := ConnContext(time.Second)(context.Background(), unixConn); guarded(ctx) {
		t.Error("a Unix socket was marked as guarded")
	}
}

// TestProgressDeadlines_slowReaderIsServed: on a kernel-guarded
// connection, a client that reads a large response slowly, pausing for
// less than stall each time, gets all of it, though the whole takes many
// times stall. Per-request deadlines cannot promise this: they see
// progress only between writes, and one write may wait for a third of the
// socket's send buffer to drain, which at this pace takes longer than
// stall (with them this test fails).
func TestProgressDeadlines_slowReaderIsServed(t *testing.T) {
	const (
		stall = 400 * time.Millisecond
		size  = 8 << 20
	)
	srv := stallServer(t, stall, true, func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 64<<10)
		for range size / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	start := time.Now()
	buf := make([]byte, 512<<10)
	var n int64
	for {
		k, err := io.ReadFull(resp.Body, buf)
		n += int64(k)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes in %s: %v", n, time.Since(start), err)
		}
		time.Sleep(stall / 3)
	}
	if n != size {
		t.Fatalf("read %d bytes in %s, want %d", n, time.Since(start), size)
	}
	if took := time.Since(start); took < 3*stall {
		t.Fatalf("the response took %s, less than 3 × stall: the test proves nothing", took)
	}
}
