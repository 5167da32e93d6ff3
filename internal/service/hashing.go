package service

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"sync"
	"sync/atomic"
)

// An upload is hashed in chunks of hashChunkSize bytes, at most hashChunks
// of them in flight: the memory one upload holds while it is received.
const (
	hashChunkSize = 1 << 20
	hashChunks    = 4
)

// chunk is one buffer of an upload, shared by its reader and the hashers.
type chunk struct {
	buf  []byte
	refs atomic.Int32 // users left; the last one returns it to free
	free chan<- *chunk
}

// release marks one user done with c.
func (c *chunk) release() {
	if c.refs.Add(-1) == 0 {
		c.free <- c // never blocks: free holds every chunk
	}
}

// hashingReader reads r in chunks and computes the MD5 and the SHA-256 of
// every byte read, and writes them to any extra writers, each in a
// goroutine of its own, so that the hashes and the reader's consumer (the
// write to storage) run side by side instead of one after the other. Close
// must be called once done with it.
type hashingReader struct {
	r       io.Reader
	md5     hash.Hash
	sha256  hash.Hash
	hashers []chan *chunk
	wg      sync.WaitGroup
	free    chan *chunk
	made    int   // chunks allocated so far, at most hashChunks
	hashed  int64 // bytes handed to the hashers
	cur     *chunk
	off     int   // of the next byte of cur to hand out
	err     error // r's error, returned once cur is drained
	closed  bool
}

func newHashingReader(r io.Reader, extra ...io.Writer) *hashingReader {
	h := &hashingReader{r: r, md5: md5.New(), sha256: sha256.New(), free: make(chan *chunk, hashChunks)}
	for _, hh := range append([]io.Writer{h.md5, h.sha256}, extra...) {
		in := make(chan *chunk, hashChunks)
		h.hashers = append(h.hashers, in)
		h.wg.Go(func() {
			for c := range in {
				hh.Write(c.buf)
				c.release()
			}
		})
	}
	return h
}

// Read implements io.Reader.
func (h *hashingReader) Read(p []byte) (int, error) {
	if h.cur == nil {
		if err := h.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, h.cur.buf[h.off:])
	h.off += n
	if h.off == len(h.cur.buf) {
		h.cur.release()
		h.cur = nil
	}
	return n, nil
}

// WriteTo implements io.WriterTo, so that io.Copy writes whole chunks
// without copying them first.
func (h *hashingReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if h.cur == nil {
			if err := h.next(); err == io.EOF {
				return total, nil
			} else if err != nil {
				return total, err
			}
		}
		n, err := w.Write(h.cur.buf[h.off:])
		total += int64(n)
		h.off += n
		if err == nil && h.off < len(h.cur.buf) {
			err = io.ErrShortWrite
		}
		if err != nil {
			return total, err
		}
		h.cur.release()
		h.cur = nil
	}
}

// next fills a chunk from r, hands it to the hashers and makes it cur. It
// returns r's error once r has nothing more, or at once if r failed.
func (h *hashingReader) next() error {
	if h.err != nil {
		return h.err
	}
	c := h.chunk()
	n, err := fill(h.r, c.buf[:cap(c.buf)])
	h.err = err
	if n == 0 || (err != nil && err != io.EOF) {
		// A failed read fails the upload: report it now rather than
		// whatever writing the rest would, such as the request's context
		// ending because its connection was cut.
		h.free <- c
		return h.err
	}
	c.buf = c.buf[:n]
	c.refs.Store(int32(len(h.hashers)) + 1)
	for _, in := range h.hashers {
		in <- c // never blocks: each channel holds every chunk
	}
	h.hashed += int64(n)
	h.cur, h.off = c, 0
	return nil
}

// chunk returns a free chunk, waiting for the hashers to finish one when
// all are in use.
func (h *hashingReader) chunk() *chunk {
	if len(h.free) == 0 && h.made < hashChunks {
		h.made++
		return &chunk{buf: make([]byte, hashChunkSize), free: h.free}
	}
	return <-h.free
}

// fill reads r into buf until buf is full or r fails.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Close stops the hashers and waits for them. It may be called more than
// once.
func (h *hashingReader) Close() {
	if h.closed {
		return
	}
	h.closed = true
	for _, in := range h.hashers {
		close(in)
	}
	h.wg.Wait()
}

// Sums stops the hashers and returns the hex MD5 and SHA-256 of everything
// read, which must be size bytes.
func (h *hashingReader) Sums(size int64) (md5Hex, sha256Hex string, err error) {
	h.Close()
	if h.hashed != size {
		return "", "", fmt.Errorf("service: hashed %d bytes of a %d-byte upload", h.hashed, size)
	}
	return hex.EncodeToString(h.md5.Sum(nil)), hex.EncodeToString(h.sha256.Sum(nil)), nil
}
