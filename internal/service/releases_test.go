package service_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/repository"
	"github.com/wemesse/server/internal/service"
	"github.com/wemesse/server/internal/storage"
)

// Conformance of the adapters to the interfaces the services declare.
var (
	_ service.ReleaseStore   = (*repository.Releases)(nil)
	_ service.UserStore      = (*repository.Users)(nil)
	_ service.SignatureStore = (*repository.Signatures)(nil)
	_ service.Files          = (*storage.Disk)(nil)
)

// failingCommit is a real store whose transaction fails after the file is
// published, as a lost connection at COMMIT would.
type failingCommit struct{ *repository.Releases }

var errCommit = errors.New("commit failed")

func (f failingCommit) Create(ctx context.Context, rel *model.Release, uri string, admit func([]model.Release) error, publish func() error, c model.Change) error {
	err := f.Releases.Create(ctx, rel, uri, admit, func() error {
		if err := publish(); err != nil {
			return err
		}
		return errCommit
	}, c)
	return err
}

type form []service.Part

func (f *form) Next() (service.Part, error) {
	if len(*f) == 0 {
		return service.Part{}, io.EOF
	}
	p := (*f)[0]
	*f = (*f)[1:]
	return p, nil
}

func TestReleases_Upload_failedCommitRemovesFile(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := openDB(t, dsn)
		dir := t.TempDir()
		disk, err := storage.NewDisk(dir)
		if err != nil {
			t.Fatal(err)
		}
		releases := service.NewReleases(failingCommit{repository.NewReleases(db)}, disk, service.ReleasesConfig{
			PublicURL: "http://x/uploads", MaxUpload: 1 << 20, DefaultABI: "arm64", Key: storage.Key, SafeName: storage.SafeName,
		}, slog.New(slog.NewTextHandler(io.Discard, nil)))

		_, err = releases.Upload(ctx, &form{
			{Field: "appVersion", Body: strings.NewReader("2267_01")},
			{Field: "tmpFile", FileName: "wemesse.apk", Body: strings.NewReader("data")},
		})
		if !errors.Is(err, errCommit) {
			t.Fatalf("Upload err = %v, want %v", err, errCommit)
		}
		var n int64
		db.Table("apps").Count(&n)
		if n != 0 {
			t.Errorf("apps has %d rows, want 0", n)
		}
		filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				t.Errorf("file left behind: %s", p)
			}
			return nil
		})
	})
}
