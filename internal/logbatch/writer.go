// Package logbatch batches log lines on their way to a slow sink (stderr,
// a pipe, a file): one write(2) carries many lines instead of one each.
// Its memory is bounded, it writes what it holds at least every flush
// interval and on Close, and a line that finds every buffer full while the
// sink is stalled is dropped and counted rather than blocking its caller
// for longer than the interval.
package logbatch

import (
	"bytes"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Options.
const (
	DefaultInterval   = 100 * time.Millisecond
	DefaultBufferSize = 64 << 10
	DefaultBuffers    = 8
)

// Options shape a Writer; zero fields take the defaults.
type Options struct {
	// Interval is the longest a line waits before it is written, and the
	// longest a Write waits for a buffer when the sink is behind.
	Interval time.Duration
	// BufferSize is the size of one buffer; a longer line is written
	// through a buffer of its own size.
	BufferSize int
	// Buffers is how many buffers there are: the memory held is at most
	// Buffers × BufferSize (plus one line longer than a buffer).
	Buffers int
}

// Writer is an io.Writer for whole lines (each Write one or more complete
// lines, as log/slog's handlers make them). It is safe for concurrent use.
type Writer struct {
	out      io.Writer
	interval time.Duration
	size     int

	mu       sync.Mutex
	cur      []byte // the buffer being filled
	closed   bool
	dropping bool       // a line was dropped and no buffer has come free since
	direct   sync.Mutex // serialises the writes after Close

	free chan []byte // empty buffers
	full chan []byte // buffers for the flusher, in order

	dropped  atomic.Uint64 // lines dropped, ever
	reported uint64        // dropped lines already reported in the sink (flusher only)

	flushes chan chan struct{} // Flush's requests, each closed when done
	stop    chan struct{}
	done    chan struct{}
}

// New starts a Writer that writes to out. Close must be called to write
// what is held and to stop its goroutine.
func New(out io.Writer, o Options) *Writer {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.BufferSize <= 0 {
		o.BufferSize = DefaultBufferSize
	}
	if o.Buffers < 2 {
		o.Buffers = DefaultBuffers
	}
	w := &Writer{
		out: out, interval: o.Interval, size: o.BufferSize,
		cur:     make([]byte, 0, o.BufferSize),
		free:    make(chan []byte, o.Buffers),
		full:    make(chan []byte, o.Buffers),
		flushes: make(chan chan struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	for range o.Buffers - 1 {
		w.free <- make([]byte, 0, o.BufferSize)
	}
	go w.flush()
	return w
}

// Dropped is how many lines were dropped because the sink was stalled or
// failed: a count for the metrics.
func (w *Writer) Dropped() uint64 { return w.dropped.Load() }

// Write copies p, one or more whole lines, into the current buffer. It
// waits for the sink only when every buffer is full, and for at most the
// flush interval; then, and while the sink stays that far behind, p is
// dropped and counted. It never fails: a log line is not worth failing a
// request for. After Close it writes p straight to the sink.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	for !w.closed && len(w.cur)+len(p) > cap(w.cur) {
		b, ok := w.takeFree()
		if !ok {
			w.mu.Unlock()
			w.dropped.Add(lines(p))
			return len(p), nil
		}
		if w.closed {
			break
		}
		if len(w.cur)+len(p) <= cap(w.cur) {
			w.free <- b // another writer made room meanwhile
			break
		}
		w.swap(b, max(w.size, len(p)))
	}
	if w.closed {
		w.mu.Unlock()
		w.writeDirect(p)
		return len(p), nil
	}
	w.cur = append(w.cur, p...)
	w.mu.Unlock()
	return len(p), nil
}

// takeFree takes an empty buffer, with w.mu held. When none is free it
// waits for one, for at most the interval and without w.mu, unless lines
// are already being dropped: then the sink is stalled and it fails at once,
// until a buffer comes free again.
func (w *Writer) takeFree() ([]byte, bool) {
	select {
	case b := <-w.free:
		w.dropping = false
		return b, true
	default:
	}
	if w.dropping {
		return nil, false
	}
	w.mu.Unlock()
	t := time.NewTimer(w.interval)
	var b []byte
	ok := true
	select {
	case b = <-w.free:
	case <-t.C:
		ok = false
	}
	t.Stop()
	w.mu.Lock()
	w.dropping = !ok
	return b, ok
}

// swap queues the current buffer, when it holds lines, and makes b (or a
// new buffer in its place, when b is smaller than size) the current one.
// The number of buffers stays the same, so full has room for every one.
func (w *Writer) swap(b []byte, size int) {
	if len(w.cur) > 0 {
		w.full <- w.cur
	} else {
		w.free <- w.cur[:0]
	}
	if cap(b) < size {
		b = make([]byte, 0, size)
	}
	w.cur = b
}

// writeDirect writes p to the sink after Close, once the flusher has
// written everything before it.
func (w *Writer) writeDirect(p []byte) {
	<-w.done
	w.direct.Lock()
	defer w.direct.Unlock()
	if _, err := w.out.Write(p); err != nil {
		w.dropped.Add(lines(p))
	}
}

// flush is the goroutine that writes the queued buffers, and the current
// one at least every interval.
func (w *Writer) flush() {
	defer close(w.done)
	tick := time.NewTicker(w.interval)
	defer tick.Stop()
	for {
		select {
		case b := <-w.full:
			w.write(b)
		case <-tick.C:
			w.writeCurrent()
		case done := <-w.flushes:
			w.writeAll()
			close(done)
		case <-w.stop:
			for {
				select {
				case b := <-w.full:
					w.write(b)
				default:
					w.report()
					return
				}
			}
		}
	}
}

// writeAll writes the queued buffers and the current one, holding w.mu so
// that no line comes between them: Writes wait meanwhile.
func (w *Writer) writeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.full) > 0 { // only the flusher takes from full, and no Write adds to it now
		w.write(<-w.full)
	}
	if len(w.cur) > 0 {
		if _, err := w.out.Write(w.cur); err != nil {
			w.dropped.Add(lines(w.cur))
		}
		w.cur = w.cur[:0]
	}
	w.report()
}

// Flush writes every line held so far, and waits at most timeout for
// that; it reports whether they were written in time. The server calls it
// once its start-up lines are logged, before it serves, so that they are
// out before the first answer.
func (w *Writer) Flush(timeout time.Duration) bool {
	done := make(chan struct{})
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case w.flushes <- done:
	case <-w.done:
		return true // closed: everything was written
	case <-t.C:
		return false
	}
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// writeCurrent queues the current buffer when it holds lines and an empty
// one can take its place (when none can, the queue is being written), so
// that it is written after those queued before it.
func (w *Writer) writeCurrent() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.cur) == 0 {
		return
	}
	select {
	case b := <-w.free:
		w.full <- w.cur
		w.cur = b
	default:
	}
}

// write writes b to the sink and gives it back to the free list. Lines
// the sink refused are counted as dropped. The first write that succeeds
// after lines were dropped reports them, once, as a line of its own.
func (w *Writer) write(b []byte) {
	if _, err := w.out.Write(b); err != nil {
		w.dropped.Add(lines(b))
	} else {
		w.report()
	}
	if cap(b) > w.size {
		b = make([]byte, 0, w.size) // an outsized line's buffer is not kept
	}
	w.free <- b[:0] // never blocks: only buffers taken from free come back
}

// report writes one line that says how many lines were dropped since the
// last report, if any were.
func (w *Writer) report() {
	if d := w.dropped.Load(); d > w.reported {
		if _, err := w.out.Write(dropReport(time.Now(), d-w.reported)); err == nil {
			w.reported = d
		}
	}
}

// dropReport is the warning line, in the JSON of log/slog, that says n
// lines were dropped.
func dropReport(now time.Time, n uint64) []byte {
	b := []byte(`{"time":"`)
	b = AppendTime(b, now)
	b = append(b, `","level":"WARN","msg":"The log sink was stalled or failing; log lines were dropped rather than delay requests (wemesse_log_lines_dropped_total counts them).","dropped":`...)
	b = strconv.AppendUint(b, n, 10)
	return append(b, "}\n"...)
}

// AppendTime appends t as log/slog's JSON handler writes times.
func AppendTime(b []byte, t time.Time) []byte { return t.AppendFormat(b, time.RFC3339Nano) }

// Close writes every line held, reports dropped lines not yet reported,
// and stops the flusher; later Writes go straight to the sink. It waits
// for the sink: a stalled one holds it up.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	if len(w.cur) > 0 {
		w.full <- w.cur
	}
	w.cur = nil
	w.mu.Unlock()
	close(w.stop)
	<-w.done
	return nil
}

// lines counts the lines in p (a last one without its newline too).
func lines(p []byte) uint64 {
	n := bytes.Count(p, []byte{'\n'})
	if len(p) > 0 && p[len(p)-1] != '\n' {
		n++
	}
	return uint64(n)
}
