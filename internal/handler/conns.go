package handler

import (
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// LimitConnections returns a listener that keeps at most max connections
// open at once. A connection accepted beyond that is closed at once: a
// flood of idle or slow connections cannot use up the process's file
// descriptors and memory, and its excess sees a refusal rather than a hang
// in the accept queue. Refusals are logged at most once a minute.
func LimitConnections(ln net.Listener, max int, log *slog.Logger) net.Listener {
	return &limitListener{Listener: ln, max: int64(max), log: log}
}

type limitListener struct {
	net.Listener
	max      int64
	open     atomic.Int64
	refused  atomic.Int64 // since the last warning
	warnedAt atomic.Int64 // Unix nanoseconds
	log      *slog.Logger
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &limitConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		c.Close()
		l.warn()
	}
}

// warn logs refused connections, at most once a minute.
func (l *limitListener) warn() {
	n := l.refused.Add(1)
	last := l.warnedAt.Load()
	now := time.Now().UnixNano()
	if time.Duration(now-last) < time.Minute || !l.warnedAt.CompareAndSwap(last, now) {
		return
	}
	l.refused.Add(-n)
	l.log.Warn("connections refused: WEMESSE_MAX_CONNECTIONS are open", "refused", n, "max", l.max)
}

// limitConn gives its slot back when closed.
type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}

// NetConn returns the connection it wraps, as tls.Conn's does: socket
// options are set on it (ConnContext).
func (c *limitConn) NetConn() net.Conn { return c.Conn }

// ReadFrom keeps the wrapped connection's own, with which net/http sends a
// download's file by sendfile.
func (c *limitConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}
