package service

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

func TestHashingReader_sumsEqualDirectHashes(t *testing.T) {
	sizes := []int{1, hashChunkSize - 1, hashChunkSize, hashChunkSize + 1, (hashChunks+2)*hashChunkSize + 12345}
	for _, size := range sizes {
		data := randomBytes(size)
		wantMD5, wantSHA := md5.Sum(data), sha256.Sum256(data)
		copies := map[string]func(dst io.Writer, h *hashingReader) (int64, error){
			"WriteTo": func(dst io.Writer, h *hashingReader) (int64, error) { return io.Copy(dst, h) },
			"Read": func(dst io.Writer, h *hashingReader) (int64, error) {
				// Hide WriteTo, and read in pieces that do not divide a chunk.
				return io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{h}, make([]byte, 7777))
			},
		}
		for name, copyTo := range copies {
			// HalfReader makes fill assemble each chunk from short reads.
			h := newHashingReader(iotest.HalfReader(bytes.NewReader(data)))
			var got bytes.Buffer
			n, err := copyTo(&got, h)
			if err != nil || n != int64(size) || !bytes.Equal(got.Bytes(), data) {
				t.Fatalf("%d bytes, %s: copied (%d, %v), equal %t", size, name, n, err, bytes.Equal(got.Bytes(), data))
			}
			gotMD5, gotSHA, err := h.Sums(n)
			if err != nil {
				t.Fatal(err)
			}
			if gotMD5 != hex.EncodeToString(wantMD5[:]) || gotSHA != hex.EncodeToString(wantSHA[:]) {
				t.Errorf("%d bytes, %s: sums (%s, %s), want (%x, %x)", size, name, gotMD5, gotSHA, wantMD5, wantSHA)
			}
			h.Close() // a second Close is harmless
		}
	}
}

func TestHashingReader_sumsRefuseAShortRead(t *testing.T) {
	h := newHashingReader(bytes.NewReader(randomBytes(3 * hashChunkSize)))
	if _, err := h.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.Sums(10); err == nil {
		t.Error("Sums of a partly read upload succeeded")
	}
}

func TestHashingReader_errors(t *testing.T) {
	boom := errors.New("boom")
	t.Run("source", func(t *testing.T) {
		src := io.MultiReader(bytes.NewReader(randomBytes(2*hashChunkSize+5)), iotest.ErrReader(boom))
		h := newHashingReader(src)
		defer h.Close()
		var got bytes.Buffer
		n, err := io.Copy(&got, h)
		// The chunk the error cut short is dropped: the upload fails anyway.
		if !errors.Is(err, boom) || n != 2*hashChunkSize {
			t.Errorf("Copy = (%d, %v), want the whole chunks before the error, then %v", n, err, boom)
		}
		if _, err := h.Read(make([]byte, 1)); !errors.Is(err, boom) {
			t.Errorf("Read after the error = %v, want %v", err, boom)
		}
	})
	t.Run("writer", func(t *testing.T) {
		h := newHashingReader(bytes.NewReader(randomBytes((hashChunks + 3) * hashChunkSize)))
		defer h.Close()
		w := &failingWriter{left: 2, err: boom}
		if _, err := io.Copy(w, h); !errors.Is(err, boom) {
			t.Errorf("Copy err = %v, want %v", err, boom)
		}
	})
	t.Run("short write", func(t *testing.T) {
		h := newHashingReader(bytes.NewReader(randomBytes(10)))
		defer h.Close()
		if _, err := h.WriteTo(shortWriter{}); !errors.Is(err, io.ErrShortWrite) {
			t.Errorf("WriteTo err = %v, want %v", err, io.ErrShortWrite)
		}
	})
}

// failingWriter accepts left writes, then fails with err.
type failingWriter struct {
	left int
	err  error
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.left == 0 {
		return 0, w.err
	}
	w.left--
	return len(p), nil
}

// shortWriter takes one byte of each write and reports no error.
type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return min(len(p), 1), nil }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{1})
	r.Read(b)
	return b
}
