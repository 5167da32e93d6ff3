package handler

import (
	"context"
	"net"
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
