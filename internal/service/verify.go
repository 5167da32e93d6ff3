package service

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/wemesse/server/internal/apk"
	"github.com/wemesse/server/internal/model"
)

// verifyBuild checks the staged file as Android would before installing
// it, and the rules that need no other release: it is an APK whose
// signatures verify for its SDK range, not debuggable or testOnly, and its
// native libraries agree with the form's targetABI (abi, possibly empty).
// chunks holds the digests of the file's chunks computed while it was
// staged. Unprocessable for a broken rule.
func (s *Releases) verifyBuild(ctx context.Context, staged string, size int64, chunks *apk.Chunks, abi string) (model.Build, error) {
	f, err := s.files.OpenStaged(ctx, staged)
	if err != nil {
		return model.Build{}, err
	}
	defer f.Close()
	build, err := verifyAPK(f, size, chunks)
	if err != nil {
		return model.Build{}, err
	}
	if err := build.CheckInstallable(); err != nil {
		return model.Build{}, err
	}
	return build, build.CheckABI(abi)
}

// verifyAPK verifies the APK in f, of size bytes, whose chunk digests are
// known when chunks is not nil. Unprocessable when Android would not
// install it.
func verifyAPK(f io.ReadSeeker, size int64, chunks *apk.Chunks) (model.Build, error) {
	ra, ok := f.(io.ReaderAt)
	if !ok {
		ra = &seekReaderAt{r: f}
	}
	info, err := apk.VerifyWith(ra, size, chunks)
	var verdict *apk.Error
	if errors.As(err, &verdict) {
		return model.Build{}, model.Errorf(model.Unprocessable, "The file is not an APK that Android would install: %s.", verdict.Reason)
	}
	if err != nil {
		return model.Build{}, err
	}
	return model.Build{
		PackageName: info.Package, VersionCode: info.VersionCode, VersionName: info.VersionName,
		MinSdk: info.MinSdk, TargetSdk: info.TargetSdk, Debuggable: info.Debuggable, TestOnly: info.TestOnly,
		NativeABIs: info.ABIs, SignerSHA256: info.SignerSHA256, Lineage: info.Lineage,
	}, nil
}

// withBuild records in rel what its verified build declares.
func withBuild(rel model.Release, b model.Build) model.Release {
	rel.PackageName, rel.VersionCode, rel.VersionName = b.PackageName, b.VersionCode, b.VersionName
	rel.MinSdk, rel.TargetSdk, rel.SignerSHA256 = b.MinSdk, b.TargetSdk, b.SignerSHA256
	return rel
}

// seekReaderAt reads at offsets by seeking, for stores whose readers only
// seek (object storage, where each seek starts a ranged read).
type seekReaderAt struct {
	mu sync.Mutex
	r  io.ReadSeeker
}

func (s *seekReaderAt) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.r.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	return io.ReadFull(s.r, p)
}

// VerifyStored checks every stored build as Upload checks a new one (its
// signatures for its SDK range, not debuggable or testOnly) and records
// what each verified build declares (PackageName, VersionCode, ...). It
// changes nothing else and deletes nothing. progress is called as bytes
// are read, with the bytes read so far and the bytes of all builds; report
// is called once per release, with the error that failed it or nil. It
// returns how many failed; an error only when the store fails.
func (s *Releases) VerifyStored(ctx context.Context, progress func(done, total int64), report func(rel model.Release, err error)) (failed int, err error) {
	all, err := s.store.List(ctx)
	if err != nil {
		return 0, err
	}
	var total, done int64
	for _, r := range all {
		total += r.Size
	}
	for _, r := range all {
		build, err := s.verifyStoredBuild(ctx, r, func(n int64) {
			done += n
			progress(min(done, total), total)
		})
		if err == nil {
			err = build.CheckInstallable()
		}
		if err != nil {
			failed++
			report(r, err)
			continue
		}
		rel := withBuild(r, build)
		if err := s.store.SetBuild(ctx, r.ID, rel, model.ChangeBy(ctx, model.ActionReleaseVerify)); err != nil {
			return failed, err
		}
		report(rel, nil)
	}
	s.reload(ctx)
	return failed, nil
}

func (s *Releases) verifyStoredBuild(ctx context.Context, r model.Release, read func(int64)) (model.Build, error) {
	f, info, err := s.files.Open(ctx, r.FilePath)
	if err != nil {
		return model.Build{}, err
	}
	defer f.Close()
	return verifyAPK(&countingReader{r: f, read: read}, info.Size(), nil)
}

// countingReader reports the bytes read through it.
type countingReader struct {
	r    io.ReadSeeker
	read func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.read(int64(n))
	return n, err
}

func (c *countingReader) Seek(off int64, whence int) (int64, error) { return c.r.Seek(off, whence) }
