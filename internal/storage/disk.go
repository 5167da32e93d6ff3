// Package storage keeps build files. Disk stores them under one directory on
// local disk; staged files live in a hidden subdirectory until published, so
// a download never sees a partial file.
package storage

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/wemesse/server/internal/model"
)

// stagingDir holds files being received. Its leading dot keeps it out of
// every key, hence out of downloads.
const stagingDir = ".staging"

// Disk stores files under a root directory. Every access goes through an
// os.Root, so no path, and no symbolic link planted in the directory, can
// lead outside it; and no write or read goes through a symbolic link even
// inside it (noLinks), nor is a file with other hard links served: whatever
// such a link points at is not a build this server stored.
type Disk struct {
	dir  string // absolute
	root *os.Root
}

// NewDisk returns a Disk rooted at dir, creating it if needed.
func NewDisk(dir string) (*Disk, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return nil, fmt.Errorf("storage: create %s: %w", abs, err)
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", abs, err)
	}
	if err := root.Mkdir(stagingDir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
		root.Close()
		return nil, fmt.Errorf("storage: create %s: %w", filepath.Join(abs, stagingDir), err)
	}
	return &Disk{dir: abs, root: root}, nil
}

// Stage streams r into a new staged file, synced to disk, and returns its
// id. On error nothing remains.
func (d *Disk) Stage(ctx context.Context, r io.Reader) (staged string, size int64, err error) {
	if err := ctx.Err(); err != nil {
		return "", 0, err
	}
	if err := d.noLinks(stagingDir); err != nil {
		return "", 0, fmt.Errorf("storage: stage: %w", err)
	}
	staged = "upload-" + rand.Text()
	name := path.Join(stagingDir, staged)
	f, err := d.root.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", 0, fmt.Errorf("storage: stage: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			d.root.Remove(name)
		}
	}()
	size, err = io.Copy(&stagingWriter{ctx: ctx, f: f}, r)
	if err != nil {
		return "", 0, err
	}
	if err := f.Sync(); err != nil {
		return "", 0, fmt.Errorf("storage: stage: sync: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", 0, fmt.Errorf("storage: stage: close: %w", err)
	}
	return staged, size, nil
}

// Publish moves a staged file to key atomically, replacing any file there.
// A directory on the way that is a symbolic link fails it: the file would
// land wherever the link points.
func (d *Disk) Publish(ctx context.Context, staged, key string) error {
	src, err := d.stagedName(staged)
	if err != nil {
		return err
	}
	if !ValidKey(key) {
		return model.Errorf(model.Invalid, "Invalid file path %q.", key)
	}
	dir := path.Dir(key)
	if err := d.mkdirs(dir); err != nil {
		return fmt.Errorf("storage: publish: %w", err)
	}
	if err := d.root.Rename(src, key); err != nil {
		return fmt.Errorf("storage: publish: %w", err)
	}
	return d.syncDir(dir)
}

// mkdirs makes the directory dir and its parents, each a real directory.
func (d *Disk) mkdirs(dir string) error {
	if dir == "." {
		return nil
	}
	if err := d.mkdirs(path.Dir(dir)); err != nil {
		return err
	}
	info, err := d.root.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := d.root.Mkdir(dir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		return d.noLinks(dir) // a racing creator made it a link
	case err != nil:
		return err
	case !info.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

// noLinks fails when name, or a directory on its way, is a symbolic link
// (or anything but a directory on the way).
func (d *Disk) noLinks(name string) error {
	for p := name; p != "."; p = path.Dir(p) {
		info, err := d.root.Lstat(p)
		if err != nil {
			return err
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%s is a symbolic link", p)
		}
		if p != name && !info.IsDir() {
			return fmt.Errorf("%s is not a directory", p)
		}
	}
	return nil
}

// OpenStaged opens a staged file for reading.
func (d *Disk) OpenStaged(ctx context.Context, staged string) (io.ReadSeekCloser, error) {
	name, err := d.stagedName(staged)
	if err != nil {
		return nil, err
	}
	f, err := d.root.Open(name)
	if err != nil {
		return nil, fmt.Errorf("storage: open staged: %w", err)
	}
	return f, nil
}

// Discard removes a staged file. A missing one is not an error.
func (d *Disk) Discard(ctx context.Context, staged string) error {
	name, err := d.stagedName(staged)
	if err != nil {
		return err
	}
	if err := d.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("storage: discard: %w", err)
	}
	return nil
}

// Remove deletes the file at key, and its directory if that becomes empty.
// A missing file is not an error.
func (d *Disk) Remove(ctx context.Context, key string) error {
	if !ValidKey(key) {
		return model.Errorf(model.Invalid, "Invalid file path %q.", key)
	}
	if err := d.noLinks(path.Dir(key)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("storage: remove: %w", err)
	}
	if err := d.root.Remove(key); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("storage: remove: %w", err)
	}
	d.root.Remove(path.Dir(key)) // fails, harmlessly, unless empty
	return nil
}

// Open opens the file at key for reading. It returns NotFound when there is
// no such regular file, and for a symbolic link or a file with other hard
// links.
func (d *Disk) Open(ctx context.Context, key string) (io.ReadSeekCloser, fs.FileInfo, error) {
	notFound := model.Errorf(model.NotFound, "The file does not exist.")
	if !ValidKey(key) || d.noLinks(key) != nil {
		return nil, nil, notFound
	}
	f, err := d.root.Open(key)
	if err != nil {
		return nil, nil, notFound
	}
	info, err := f.Stat()
	if err != nil || !info.Mode().IsRegular() || hardLinked(info) {
		f.Close()
		return nil, nil, notFound
	}
	return f, info, nil
}

// CleanStaging removes staged files that no upload is writing and returns
// how many it removed. One server owns an upload directory, so at start and
// after shutdown every staged file is a leftover.
func (d *Disk) CleanStaging(ctx context.Context) (int, error) {
	if err := d.noLinks(stagingDir); err != nil {
		return 0, fmt.Errorf("storage: clean staging: %w", err)
	}
	dir, err := d.root.Open(stagingDir)
	if err != nil {
		return 0, fmt.Errorf("storage: clean staging: %w", err)
	}
	entries, err := dir.ReadDir(-1)
	dir.Close()
	if err != nil {
		return 0, fmt.Errorf("storage: clean staging: %w", err)
	}
	n := 0
	for _, e := range entries {
		if err := d.root.RemoveAll(path.Join(stagingDir, e.Name())); err != nil {
			return n, fmt.Errorf("storage: clean staging: %w", err)
		}
		n++
	}
	return n, nil
}

// stagedName is the root-relative name of a staged file.
func (d *Disk) stagedName(staged string) (string, error) {
	if staged == "" || staged != path.Base(staged) || strings.HasPrefix(staged, ".") || strings.ContainsRune(staged, '\\') {
		return "", fmt.Errorf("storage: invalid staged id %q", staged)
	}
	return path.Join(stagingDir, staged), nil
}

// MaxKeyDepth bounds how many path segments a key has. A release's file is
// <abi>/<version>/<name> at most; the bound leaves room for an object
// storage prefix and an earlier server's layout, and keeps the per-segment
// link checks of Disk cheap.
const MaxKeyDepth = 16

// ValidKey reports whether key is a safe relative file path for storage.
func ValidKey(key string) bool {
	if key == "" || len(key) > 1024 || !fs.ValidPath(key) || strings.ContainsRune(key, '\\') ||
		strings.Count(key, "/") >= MaxKeyDepth {
		return false
	}
	for _, seg := range strings.Split(key, "/") {
		if strings.HasPrefix(seg, ".") {
			return false
		}
	}
	return true
}

// Key returns the storage key of a release's file: <version>/<name>, or
// <abi>/<version>/<name> for an ABI build as the earlier server laid them.
func Key(version, abi, name string) string {
	if abi == "" {
		return path.Join(version, name)
	}
	return path.Join(abi, version, name)
}

// MaxNameLen bounds a stored file name, in bytes.
const MaxNameLen = 128

// FallbackName is the stored name of an upload whose own name has nothing
// safe left in it.
const FallbackName = "build.apk"

// SafeName reduces an uploaded file name to a safe base name: no directory
// survives, only letters, digits, '.', '-' and '_' remain (anything else
// becomes '_'), it never starts with a dot, and it is at most MaxNameLen
// bytes. A name with nothing left becomes FallbackName.
func SafeName(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	var b strings.Builder
	for _, r := range name {
		switch {
		case r == utf8.RuneError:
			continue
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '.' || r == '-' || r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := strings.TrimLeft(b.String(), "._")
	for len(s) > MaxNameLen {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	if strings.Trim(s, "._-") == "" {
		return FallbackName
	}
	return s
}

// syncDir makes a rename in dir durable.
func (d *Disk) syncDir(dir string) error {
	f, err := d.root.Open(dir)
	if err != nil {
		return fmt.Errorf("storage: sync %s: %w", dir, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("storage: sync %s: %w", dir, err)
	}
	return nil
}

// writebackEvery is how many bytes a staged file may gain before its
// writeback to disk is started: the disk writes while the rest of the file
// is received, the final sync has little left, and a file's pages leave
// the page cache once on disk.
const writebackEvery = 8 << 20

// stagingWriter writes a staged file. It fails writes once ctx is done, so
// that a cancelled request stops a long copy. Every writebackEvery bytes it
// starts writing the new bytes to disk and waits for the bytes before them,
// which it drops from the page cache. It is not an io.ReaderFrom, so
// io.Copy uses the source's io.WriterTo when there is one.
type stagingWriter struct {
	ctx     context.Context
	f       *os.File
	written int64 // bytes written
	started int64 // bytes whose writeback was started
	dropped int64 // bytes on disk and out of the page cache
}

func (w *stagingWriter) Write(p []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := w.f.Write(p)
	w.written += int64(n)
	if err != nil {
		return n, fmt.Errorf("storage: stage: %w", err)
	}
	if w.written-w.started >= writebackEvery {
		w.writeback()
	}
	return n, nil
}

// writeback starts the writeback of the bytes written since the last call
// and finishes that of the bytes before them. Its calls are only hints: the
// sync at the end is what makes the file durable, so their errors are
// left to it.
func (w *stagingWriter) writeback() {
	_ = startWriteback(w.f, w.started, w.written-w.started)
	_ = dropWritten(w.f, w.dropped, w.started-w.dropped)
	w.dropped, w.started = w.started, w.written
}

// contextReader fails reads once ctx is done, so a cancelled request stops
// a long copy.
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
