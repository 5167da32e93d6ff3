package service_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/service"
	"github.com/wemesse/server/internal/storage"
)

// memStore keeps releases in memory; its other methods are not used.
type memStore struct {
	service.ReleaseStore
	rels []model.Release
}

func (m *memStore) List(context.Context) ([]model.Release, error) { return m.rels, nil }

func (m *memStore) Create(ctx context.Context, rel *model.Release, uri string, admit func([]model.Release) error, publish func() error, _ model.Change) error {
	if admit != nil {
		if err := admit(m.rels); err != nil {
			return err
		}
	}
	if err := publish(); err != nil {
		return err
	}
	rel.ID = int64(len(m.rels) + 1)
	m.rels = append(m.rels, *rel)
	return nil
}

func newDiskReleases(t *testing.T) (*service.Releases, string) {
	t.Helper()
	dir := t.TempDir()
	disk, err := storage.NewDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	return service.NewReleases(&memStore{}, disk, service.ReleasesConfig{
		PublicURL: "http://x/uploads", MaxUpload: 64 << 20, DefaultABI: "arm64", Key: storage.Key, SafeName: storage.SafeName,
	}, slog.New(slog.NewTextHandler(io.Discard, nil))), dir
}

func TestReleases_Upload_hashesAndStoresTheFile(t *testing.T) {
	releases, dir := newDiskReleases(t)
	data := make([]byte, 9<<20+17) // several hashing chunks and writeback windows
	rand.NewChaCha8([32]byte{2}).Read(data)
	rel, err := releases.Upload(context.Background(), &form{
		{Field: "appVersion", Body: strings.NewReader("2267_01")},
		{Field: "tmpFile", FileName: "wemesse.apk", Body: bytes.NewReader(data)},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantMD5, wantSHA := md5.Sum(data), sha256.Sum256(data)
	if rel.MD5 != hex.EncodeToString(wantMD5[:]) || rel.SHA256 != hex.EncodeToString(wantSHA[:]) || rel.Size != int64(len(data)) {
		t.Errorf("release has MD5 %s, SHA-256 %s, size %d; want %x, %x, %d", rel.MD5, rel.SHA256, rel.Size, wantMD5, wantSHA, len(data))
	}
	got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel.FilePath)))
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("stored file: %d bytes, %v; equal %t", len(got), err, bytes.Equal(got, data))
	}
}

func TestReleases_Upload_failureMidFileLeavesNothing(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name string
		body func(cancel context.CancelFunc) io.Reader
		want error
	}{
		{"cancelled", func(cancel context.CancelFunc) io.Reader {
			return io.MultiReader(strings.NewReader(strings.Repeat("x", 3<<20)), cancelReader{cancel}, strings.NewReader(strings.Repeat("y", 3<<20)))
		}, context.Canceled},
		{"read error", func(context.CancelFunc) io.Reader {
			return io.MultiReader(strings.NewReader(strings.Repeat("x", 3<<20)), errReader{boom})
		}, boom},
		{"too large", func(context.CancelFunc) io.Reader {
			return strings.NewReader(strings.Repeat("x", 64<<20+1))
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			releases, dir := newDiskReleases(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, err := releases.Upload(ctx, &form{
				{Field: "appVersion", Body: strings.NewReader("2267_01")},
				{Field: "tmpFile", FileName: "wemesse.apk", Body: tt.body(cancel)},
			})
			switch {
			case tt.want == nil && model.ErrorCode(err) != model.TooLarge:
				t.Errorf("Upload err = %v, want TooLarge", err)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Errorf("Upload err = %v, want %v", err, tt.want)
			}
			filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
				if err == nil && !e.IsDir() {
					t.Errorf("file left behind: %s", p)
				}
				return nil
			})
		})
	}
}

// cancelReader cancels a context when read, and reads nothing.
type cancelReader struct{ cancel context.CancelFunc }

func (c cancelReader) Read([]byte) (int, error) {
	c.cancel()
	return 0, io.EOF
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
