package handler

import (
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// setUserTimeout asks the kernel to drop c once data sent on it has gone
// unacknowledged, or unsent behind a zero window, for d (TCP_USER_TIMEOUT).
// It reports whether c is a TCP connection that took the option.
func setUserTimeout(c net.Conn, d time.Duration) bool {
	for { // *tls.Conn, a connection of LimitConnections
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = w.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ms := int(min(max(d.Milliseconds(), 1), 1<<31-1)) // 0 would mean the system's default
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, ms)
	}); err != nil {
		return false
	}
	return serr == nil
}
