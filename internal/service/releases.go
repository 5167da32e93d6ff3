// Package service holds Wemesse's rules: which release a client is offered,
// how a build is received, how device sessions are counted and how
// signatures are checked. It declares the stores it needs as interfaces.
package service

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/wemesse/server/internal/apk"
	"github.com/wemesse/server/internal/model"
)

// ReleaseStore keeps releases.
type ReleaseStore interface {
	// List returns every release ordered by id.
	List(ctx context.Context) ([]model.Release, error)
	// Create inserts rel, calling admit (when not nil) with every stored
	// release, serialized with other Creates, and publish before the
	// commit; admit's error, or Conflict when its version and ABI exist.
	// Create, Update, ApplyDue and Delete record their change c in the
	// audit trail, in the same transaction.
	Create(ctx context.Context, rel *model.Release, uri string, admit func(existing []model.Release) error, publish func() error, c model.Change) error
	// SetBuild records what verification found in release id's build;
	// NotFound when absent.
	SetBuild(ctx context.Context, id int64, rel model.Release, c model.Change) error
	// Update applies patch to release id at now, in one transaction;
	// NotFound when absent.
	Update(ctx context.Context, id int64, patch model.ReleasePatch, now time.Time, c model.Change) (model.Release, error)
	// ApplyDue applies the schedule steps due at now of releases that are
	// not halted, each once across every server sharing the store, and
	// returns them.
	ApplyDue(ctx context.Context, now time.Time, c model.Change) ([]model.AppliedStep, error)
	// Delete removes release id and returns it; NotFound when absent.
	Delete(ctx context.Context, id int64, c model.Change) (model.Release, error)
	// CountDownload counts a completed download of the file at key.
	CountDownload(ctx context.Context, key string) error
}

// Files keeps build files under slash-separated keys.
type Files interface {
	// Stage streams r into a hidden staged file; on error nothing remains.
	Stage(ctx context.Context, r io.Reader) (staged string, size int64, err error)
	// Publish moves a staged file to key atomically.
	Publish(ctx context.Context, staged, key string) error
	// Discard removes a staged file.
	Discard(ctx context.Context, staged string) error
	// OpenStaged opens a staged file for reading.
	OpenStaged(ctx context.Context, staged string) (io.ReadSeekCloser, error)
	// Remove deletes the file at key.
	Remove(ctx context.Context, key string) error
	// Open opens the file at key; NotFound when absent.
	Open(ctx context.Context, key string) (io.ReadSeekCloser, fs.FileInfo, error)
}

// Presigner is a Files that can hand out a short-lived URL at which the
// store itself serves the file at key (object storage). NotFound when
// absent.
type Presigner interface {
	PresignedURL(ctx context.Context, key string, ttl time.Duration) (string, error)
}

// DownloadURLTTL is how long a download URL from DownloadURL stays valid.
const DownloadURLTTL = 15 * time.Minute

// Part is one field of an upload form. Body is read at most once.
type Part struct {
	Field    string
	FileName string
	Body     io.Reader
}

// Form yields the parts of an upload form in order, then io.EOF.
type Form interface {
	Next() (Part, error)
}

// maxFieldBytes bounds a text field of the upload form.
const maxFieldBytes = 64 << 10

// Releases is the update side of Wemesse.
type Releases struct {
	store      ReleaseStore
	files      Files
	keyOf      func(version, abi, name string) string
	safeName   func(string) string
	publicURL  string
	maxUpload  int64
	defaultABI string
	refresh    time.Duration
	observer   Observer
	redirect   bool
	tracks     model.Tracks
	now        func() time.Time
	verifyAPK  bool
	log        *slog.Logger

	// current is every release as last read, for the update check, which
	// must not touch the database. Every write on this server re-reads it;
	// Run re-reads it every refresh for counters and other servers' writes.
	current atomic.Pointer[snapshot]
	loadMu  sync.Mutex
	// missReadAt is when a download of an unknown key last re-read the
	// releases, in Unix nanoseconds.
	missReadAt atomic.Int64
}

// snapshot is the releases as read at one moment.
type snapshot struct {
	releases []model.Release
	tag      string              // changes whenever any release's offer-relevant field does
	files    map[string]struct{} // every release's FilePath: the only keys served
}

// ReleasesConfig holds what Releases needs besides its stores.
type ReleasesConfig struct {
	PublicURL  string // base of the URI recorded with each upload
	MaxUpload  int64  // largest accepted build, in bytes
	DefaultABI string // ABI of a client that names none
	// Refresh is how often Run re-reads the releases.
	Refresh time.Duration
	// Observer counts upload bytes; nil: NopObserver.
	Observer Observer

	// Key and SafeName come from the storage in use.
	Key      func(version, abi, name string) string
	SafeName func(string) string

	// Redirect sends downloads to the store (DownloadURL) when the Files
	// is a Presigner.
	Redirect bool

	// Tracks are the release tracks, most adventurous first; nil: only
	// model.DefaultTrack.
	Tracks model.Tracks
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// VerifyAPK checks every upload as Android would before installing it
	// (see Upload); false stores any bytes.
	VerifyAPK bool
}

// NewReleases returns a Releases.
func NewReleases(store ReleaseStore, files Files, cfg ReleasesConfig, log *slog.Logger) *Releases {
	r := &Releases{
		store: store, files: files, keyOf: cfg.Key, safeName: cfg.SafeName,
		publicURL: cfg.PublicURL, maxUpload: cfg.MaxUpload, defaultABI: cfg.DefaultABI, refresh: cfg.Refresh,
		observer: cmp.Or[Observer](cfg.Observer, NopObserver{}), redirect: cfg.Redirect, log: log,
		tracks: cfg.Tracks, now: cfg.Now, verifyAPK: cfg.VerifyAPK,
	}
	if r.tracks == nil {
		r.tracks = model.Tracks{model.DefaultTrack}
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r
}

// Check answers a client's update check. clientVersion is the version the
// client runs, optionally followed by its ABI (2267_00arm64); device is the
// client's id for staged rollouts, empty when it sent none; track is the
// client's track, empty for model.DefaultTrack. The result is the newest
// release offered to the client (model.NewestFor), with Skipped false when
// it must update; tag identifies the state of all releases, for caching.
// sdk is the device's API level, 0 when it sent none: only builds whose
// minSdk it reaches are offered. It reads memory only. It returns Invalid
// for an unparsable version or an unknown track and NotFound when nothing
// is offered.
func (s *Releases) Check(ctx context.Context, clientVersion, device, track string, sdk int) (rel model.Release, tag string, err error) {
	current, abi, err := model.ParseClientVersion(clientVersion)
	if err != nil {
		return model.Release{}, "", err
	}
	if len(device) > model.MaxTextLen {
		return model.Release{}, "", model.Errorf(model.Invalid, "device must be at most %d characters.", model.MaxTextLen)
	}
	if abi == "" {
		abi = s.defaultABI
	}
	tracks, err := s.tracks.From(cmp.Or(track, model.DefaultTrack))
	if err != nil {
		return model.Release{}, "", err
	}
	snap, err := s.snapshot(ctx)
	if err != nil {
		return model.Release{}, "", err
	}
	client := model.Client{Version: current, ABI: abi, Device: device, Tracks: tracks, SDK: sdk}
	newest, mustUpdate, ok := model.NewestFor(snap.releases, client, s.now())
	if !ok {
		return model.Release{}, snap.tag, model.Errorf(model.NotFound, "No release exists yet for this client.")
	}
	newest.Skipped = !mustUpdate
	return newest, snap.tag, nil
}

// snapshot returns the releases in memory, reading them on first use.
func (s *Releases) snapshot(ctx context.Context) (*snapshot, error) {
	if snap := s.current.Load(); snap != nil {
		return snap, nil
	}
	if err := s.Load(ctx); err != nil {
		return nil, err
	}
	return s.current.Load(), nil
}

// Load re-reads every release into memory.
func (s *Releases) Load(ctx context.Context) error {
	s.loadMu.Lock() // a slow read must not overwrite a newer one
	defer s.loadMu.Unlock()
	all, err := s.store.List(ctx)
	if err != nil {
		return err
	}
	h := sha256.New()
	for _, r := range all {
		fmt.Fprintf(h, "%d|%s|%s|%t|%d|%t|%s|%q|%s|%t|%v|%v|%d\n", r.ID, r.Version, r.TargetABI, r.Skipped, r.Rollout, r.Yanked, r.MD5, r.Notes,
			r.Track, r.Halted, r.MandatoryAt, r.Schedule, r.MinSdk)
	}
	files := make(map[string]struct{}, len(all))
	for _, r := range all {
		files[r.FilePath] = struct{}{}
	}
	s.current.Store(&snapshot{releases: all, tag: hex.EncodeToString(h.Sum(nil)[:12]), files: files})
	return nil
}

// Run applies the schedule steps that fell due, then every Refresh
// re-reads the releases and applies the steps due since, until ctx ends.
// A failed read keeps the last good snapshot, so the update check keeps
// answering.
func (s *Releases) Run(ctx context.Context) {
	log := s.log.With("what", "releases")
	if err := s.ApplyDue(ctx); err != nil && ctx.Err() == nil {
		log.Warn("apply schedule steps", "err", err)
	}
	reloadEvery(ctx, s.refresh, func(ctx context.Context) error {
		if err := s.Load(ctx); err != nil {
			return err
		}
		return s.ApplyDue(ctx)
	}, log)
}

// ApplyDue applies the schedule steps due now, when the releases in memory
// have any; the store sees that each is applied once across servers.
func (s *Releases) ApplyDue(ctx context.Context) error {
	snap, err := s.snapshot(ctx)
	if err != nil {
		return err
	}
	now := s.now()
	if !slices.ContainsFunc(snap.releases, func(r model.Release) bool { return r.Due(now) }) {
		return nil
	}
	applied, err := s.store.ApplyDue(ctx, now, model.ChangeBy(ctx, model.ActionReleaseStep))
	for _, a := range applied {
		s.log.Info("schedule step applied", "release", a.ReleaseID, "version", a.Version.String(), "at", a.At, "rollout", a.Rollout)
	}
	if len(applied) > 0 {
		s.reload(ctx)
	}
	return err
}

// reload re-reads the releases after a write on this server. A failure is
// logged; Run catches up.
func (s *Releases) reload(ctx context.Context) {
	if err := s.Load(context.WithoutCancel(ctx)); err != nil {
		s.log.Warn("reload releases after a write", "err", err)
	}
}

// Edit applies patch to release id in one write and returns the result:
// notes, the mandatory flag and deadline, rollout, halt and resume, the
// schedule (see model.ReleasePatch). Invalid for bad values, NotFound when
// absent.
func (s *Releases) Edit(ctx context.Context, id int64, patch model.ReleasePatch) (model.Release, error) {
	return s.edit(ctx, id, patch, editAction(patch))
}

// editAction is how the audit trail names an edit: a halt, a resume or a
// new schedule, else an edit.
func editAction(p model.ReleasePatch) string {
	switch {
	case p.Halted != nil && *p.Halted:
		return model.ActionReleaseHalt
	case p.Halted != nil:
		return model.ActionReleaseResume
	case p.Schedule != nil:
		return model.ActionReleaseSchedule
	}
	return model.ActionReleaseEdit
}

// edit is Edit, recorded in the audit trail as action.
func (s *Releases) edit(ctx context.Context, id int64, patch model.ReleasePatch, action string) (model.Release, error) {
	now := s.now()
	if err := patch.Validate(now); err != nil {
		return model.Release{}, err
	}
	if patch.Track != nil {
		if err := s.tracks.Check(*patch.Track); err != nil {
			return model.Release{}, err
		}
	}
	rel, err := s.store.Update(ctx, id, patch, now, model.ChangeBy(ctx, action))
	if err != nil {
		return model.Release{}, err
	}
	s.reload(ctx)
	return rel, nil
}

// Promote moves release id to track, the same row with the same file and
// hashes. It keeps its rollout unless rollout is set, which is a hand
// change of the rollout. Invalid for an unknown track or a bad rollout,
// NotFound when absent.
func (s *Releases) Promote(ctx context.Context, id int64, track string, rollout *int) (model.Release, error) {
	return s.edit(ctx, id, model.ReleasePatch{Track: &track, Rollout: rollout}, model.ActionReleasePromote)
}

// Yank stops offering release id; its file stays downloadable for clients
// mid-download. With purge, the row and the file go too. NotFound when
// absent.
func (s *Releases) Yank(ctx context.Context, id int64, purge bool) error {
	if !purge {
		yanked := true
		_, err := s.edit(ctx, id, model.ReleasePatch{Yanked: &yanked}, model.ActionReleaseYank)
		return err
	}
	// The row goes first: a file without a row is harmless, a row without
	// its file is not.
	rel, err := s.store.Delete(ctx, id, model.ChangeBy(ctx, model.ActionReleasePurge))
	if err != nil {
		return err
	}
	s.reload(ctx)
	if err := s.files.Remove(context.WithoutCancel(ctx), rel.FilePath); err != nil {
		s.log.Error("remove the file of a purged release", "id", id, "key", rel.FilePath, "err", err)
	}
	return nil
}

// CountDownload records a completed download of the file at key.
func (s *Releases) CountDownload(ctx context.Context, key string) error {
	return s.store.CountDownload(ctx, key)
}

// List returns every release ordered by id.
func (s *Releases) List(ctx context.Context) ([]model.Release, error) {
	return s.store.List(ctx)
}

// Tracks returns the release tracks, most adventurous first.
func (s *Releases) Tracks() model.Tracks { return s.tracks }

// Current returns every release ordered by id as last read into memory
// (at most Refresh old; this server's own writes at once), without a
// database read. The slice is shared: do not modify it.
func (s *Releases) Current(ctx context.Context) ([]model.Release, error) {
	snap, err := s.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return snap.releases, nil
}

// Open opens a stored build for download. NotFound when absent, and when
// key is not the file of a release: nothing else in the store is served.
func (s *Releases) Open(ctx context.Context, key string) (io.ReadSeekCloser, fs.FileInfo, error) {
	if err := s.known(ctx, key); err != nil {
		return nil, nil, err
	}
	return s.files.Open(ctx, key)
}

// rereadMissEvery bounds how often a key that no release in memory names
// makes known re-read the releases.
const rereadMissEvery = time.Second

// known returns nil when key is the file of a release (yanked ones
// included: clients may be mid-download), else NotFound. A key missing
// from memory re-reads the releases, at most every rereadMissEvery
// whatever the traffic, so a release another server just created is found.
func (s *Releases) known(ctx context.Context, key string) error {
	snap, err := s.snapshot(ctx)
	if err != nil {
		return err
	}
	if _, ok := snap.files[key]; ok {
		return nil
	}
	last := s.missReadAt.Load()
	now := time.Now().UnixNano()
	if time.Duration(now-last) >= rereadMissEvery && s.missReadAt.CompareAndSwap(last, now) {
		if err := s.Load(ctx); err != nil {
			return err
		}
		if _, ok := s.current.Load().files[key]; ok {
			return nil
		}
	}
	return model.Errorf(model.NotFound, "The file does not exist.")
}

// DownloadURL returns a short-lived URL (DownloadURLTTL) at which the store
// serves the file at key, with ok true, when downloads are redirected;
// ok is false when they are served by Open. NotFound when absent.
func (s *Releases) DownloadURL(ctx context.Context, key string) (url string, ok bool, err error) {
	p, isPresigner := s.files.(Presigner)
	if !s.redirect || !isPresigner {
		return "", false, nil
	}
	if err := s.known(ctx, key); err != nil {
		return "", true, err
	}
	url, err = p.PresignedURL(ctx, key, DownloadURLTTL)
	if err != nil {
		return "", true, err
	}
	return url, true, nil
}

// upload collects an upload form's fields.
type upload struct {
	version     model.Version
	notes       string
	abi         string
	track       string
	mandatoryAt *time.Time
	rollout     int
	fileName    string
	staged      string
	size        int64
	md5         string
	sha256      string
	chunks      *apk.Chunks // the APK chunk digests, computed while staging when verifying
	seen        map[string]bool
}

// Upload receives a build from form: the fields appVersion (required, no ABI
// suffix), appNotes, targetABI, rollout, track, mandatoryAt (RFC 3339) and
// the file tmpFile, in any order. The file streams to staging while its MD5
// and SHA-256 are computed. With VerifyAPK the staged file is then verified
// as Android would before installing it (see verifyBuild), and its ABI
// taken from its native libraries when the form names none; the package,
// signer and versionCode rules are checked against the stored releases in
// the same transaction as the insert. Then it is published and recorded in
// one step. After any failure no row, file or staged file remains. Errors:
// Invalid, TooLarge, Conflict, Unprocessable.
func (s *Releases) Upload(ctx context.Context, form Form) (rel model.Release, err error) {
	u := upload{seen: map[string]bool{}, rollout: model.FullRollout, track: model.DefaultTrack}
	defer func() {
		if err != nil && u.staged != "" {
			if derr := s.files.Discard(context.WithoutCancel(ctx), u.staged); derr != nil {
				s.log.Error("discard staged upload", "err", derr)
			}
		}
	}()
	if err := s.readForm(ctx, form, &u); err != nil {
		return model.Release{}, err
	}
	switch {
	case !u.seen["appVersion"]:
		return model.Release{}, model.Errorf(model.Invalid, "The field appVersion is required.")
	case u.staged == "":
		return model.Release{}, model.Errorf(model.Invalid, "The file field tmpFile is required.")
	case u.size == 0:
		return model.Release{}, model.Errorf(model.Invalid, "The uploaded file is empty.")
	}
	var build model.Build
	var admit func([]model.Release) error
	if s.verifyAPK {
		if build, err = s.verifyBuild(ctx, u.staged, u.size, u.chunks, u.abi); err != nil {
			return model.Release{}, err
		}
		u.abi = cmp.Or(u.abi, build.ABI())
	}
	existing, err := s.store.List(ctx)
	if err != nil {
		return model.Release{}, err
	}
	for _, r := range existing {
		if r.TargetABI == u.abi && r.Version.Compare(u.version) == 0 {
			if r.Version.String() == u.version.String() {
				return model.Release{}, model.Errorf(model.Conflict, "Version %s already exists%s; upload a new version.", u.version, abiNote(u.abi))
			}
			return model.Release{}, model.Errorf(model.Conflict, "Version %s equals the existing version %s%s; upload a new version.", u.version, r.Version, abiNote(u.abi))
		}
	}
	name := s.safeName(u.fileName)
	rel = model.Release{
		Version:   u.version,
		TargetABI: u.abi,
		Name:      name,
		Notes:     u.notes,
		Size:      u.size,
		SizeText:  model.FormatSize(u.size),
		MD5:       u.md5,
		SHA256:    u.sha256,
		Skipped:   !u.version.Mandatory(),
		Rollout:   u.rollout,
		FilePath:  s.keyOf(u.version.String(), u.abi, name),

		Track:       u.track,
		MandatoryAt: u.mandatoryAt,
	}
	if s.verifyAPK {
		rel = withBuild(rel, build)
		admit = func(existing []model.Release) error { return model.CheckSuccession(existing, rel, build.Lineage) }
	}
	published := false
	err = s.store.Create(ctx, &rel, s.publicURL+"/"+rel.FilePath, admit, func() error {
		if err := s.files.Publish(ctx, u.staged, rel.FilePath); err != nil {
			return err
		}
		published = true
		return nil
	}, model.ChangeBy(ctx, model.ActionReleaseUpload))
	if err != nil {
		if published {
			// The file is in place but the row did not commit.
			if rerr := s.files.Remove(context.WithoutCancel(ctx), rel.FilePath); rerr != nil {
				s.log.Error("remove file of failed upload", "key", rel.FilePath, "err", rerr)
			}
		}
		return model.Release{}, err
	}
	u.staged = ""
	s.reload(ctx)
	return rel, nil
}

// readForm reads every part of form into u, staging the file.
func (s *Releases) readForm(ctx context.Context, form Form, u *upload) error {
	for {
		p, err := form.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if u.seen[p.Field] {
			return model.Errorf(model.Invalid, "The field %s appears more than once.", p.Field)
		}
		switch p.Field {
		case "appVersion", "appNotes", "targetABI", "rollout", "track", "mandatoryAt":
			u.seen[p.Field] = true
			value, err := readField(p)
			if err != nil {
				return err
			}
			switch p.Field {
			case "appVersion":
				if u.version, err = model.ParseVersion(strings.TrimSpace(value)); err != nil {
					return model.Errorf(model.Invalid, "appVersion: %s", model.ErrorMessage(err))
				}
			case "appNotes":
				u.notes = value
			case "targetABI":
				u.abi = strings.TrimSpace(value)
				if !model.ValidABI(u.abi) {
					return model.Errorf(model.Invalid, "targetABI must be empty or one of arm, arm64, x86, x86_64.")
				}
			case "rollout":
				if strings.TrimSpace(value) == "" {
					break // an empty field, as Postman sends a blank row: the default
				}
				n, err := strconv.Atoi(strings.TrimSpace(value))
				if err != nil || n < 1 || n > model.FullRollout {
					return model.Errorf(model.Invalid, "rollout must be an integer from 1 to 100.")
				}
				u.rollout = n
			case "track":
				if value = strings.TrimSpace(value); value == "" {
					break
				}
				if err := s.tracks.Check(value); err != nil {
					return err
				}
				u.track = value
			case "mandatoryAt":
				if value = strings.TrimSpace(value); value == "" {
					break
				}
				at, err := time.Parse(time.RFC3339, value)
				if err != nil {
					return model.Errorf(model.Invalid, "mandatoryAt must be an RFC 3339 time such as 2026-12-24T18:00:00Z.")
				}
				u.mandatoryAt = &at
			}
		case "tmpFile":
			u.seen[p.Field] = true
			if err := s.stage(ctx, p, u); err != nil {
				return err
			}
		default:
			// Unknown fields are drained and ignored, within the body limit.
			if _, err := io.Copy(io.Discard, p.Body); err != nil {
				return err
			}
		}
	}
}

// stage streams the file part to staging, hashing it on the way: MD5,
// SHA-256 and, when uploads are verified, the APK chunk digests, so that
// verification need not read the whole file again.
func (s *Releases) stage(ctx context.Context, p Part, u *upload) error {
	var extra []io.Writer
	if s.verifyAPK {
		u.chunks = apk.NewChunks()
		extra = append(extra, u.chunks)
	}
	body := newHashingReader(&limitedReader{r: p.Body, limit: s.maxUpload}, extra...)
	defer body.Close()
	staged, size, err := s.files.Stage(ctx, body)
	s.observer.UploadBytes(size)
	if err != nil {
		return err
	}
	u.staged, u.size, u.fileName = staged, size, p.FileName
	u.md5, u.sha256, err = body.Sums(size)
	return err
}

func readField(p Part) (string, error) {
	b, err := io.ReadAll(io.LimitReader(p.Body, maxFieldBytes+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxFieldBytes {
		return "", model.Errorf(model.Invalid, "The field %s is longer than %d bytes.", p.Field, maxFieldBytes)
	}
	// PostgreSQL text cannot hold NUL; refuse it here rather than fail there.
	if !utf8.Valid(b) || strings.ContainsRune(string(b), 0) {
		return "", model.Errorf(model.Invalid, "The field %s must be UTF-8 text without NUL characters.", p.Field)
	}
	return string(b), nil
}

// limitedReader fails with TooLarge once more than limit bytes are read.
type limitedReader struct {
	r     io.Reader
	limit int64
	read  int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if room := l.limit - l.read + 1; int64(len(p)) > room {
		p = p[:room]
	}
	n, err := l.r.Read(p)
	l.read += int64(n)
	if l.read > l.limit {
		return 0, model.Errorf(model.TooLarge, "The file is larger than the limit of %d bytes.", l.limit)
	}
	return n, err
}

func abiNote(abi string) string {
	if abi == "" {
		return ""
	}
	return " for " + abi
}
