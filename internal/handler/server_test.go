package handler_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alexedwards/argon2id"
	"gorm.io/gorm"

	"github.com/wemesse/server/internal/handler"
	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/repository"
	"github.com/wemesse/server/internal/service"
	"github.com/wemesse/server/internal/storage"
)

const (
	publicURL = "http://public.test/uploads"
	mirrorURL = "https://mirror.test/wemesse"
)

// testServer is the real HTTP stack on a real database.
type testServer struct {
	*httptest.Server
	tb        testing.TB
	db        *gorm.DB
	dir       string
	sigs      *service.Signatures
	admin     string // an admin secret
	client    string // a client secret
	maxUpload int64
	releases  *service.Releases
	clock     *testClock
}

// testClock is the releases' clock: the real time plus an offset a test
// moves forward.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// advance moves the clock forward by d.
func (c *testClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

type serverOption func(*handler.Deps, *service.SignaturesConfig)

// newTestServer serves the API on dsn with fast Argon2 parameters and
// upload verification off, so that tests may upload made-up bytes.
func newTestServer(tb testing.TB, dsn string, opts ...serverOption) *testServer {
	tb.Helper()
	return startTestServer(tb, dsn, false, opts...)
}

// newVerifyingServer is newTestServer with upload verification on, as a
// server runs by default.
func newVerifyingServer(tb testing.TB, dsn string, opts ...serverOption) *testServer {
	tb.Helper()
	return startTestServer(tb, dsn, true, opts...)
}

func startTestServer(tb testing.TB, dsn string, verifyAPK bool, opts ...serverOption) *testServer {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	db, err := repository.OpenMigrated(ctx, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { repository.Close(db) })
	dir := filepath.Join(tb.TempDir(), "uploads")
	files, err := storage.NewDisk(dir)
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	deps := handler.Deps{
		Log: log, PublicURL: publicURL, MirrorURL: mirrorURL, MaxUploadBytes: 1 << 20, AuthFailuresPerMinute: 1000,
		UpdateMaxAge: time.Minute,
	}
	sigCfg := service.SignaturesConfig{
		Params:      argon2id.Params{Memory: 1024, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32},
		Limits:      service.Argon2Limits{Memory: 256 * 1024, Iterations: 10, Parallelism: 16},
		Concurrency: 2, Wait: 2 * time.Second, CacheSize: 100, CacheTTL: time.Minute, Refresh: 200 * time.Millisecond,
	}
	for _, o := range opts {
		o(&deps, &sigCfg)
	}
	clock := &testClock{}
	deps.Releases = service.NewReleases(repository.NewReleases(db), files, service.ReleasesConfig{
		PublicURL: publicURL, MaxUpload: deps.MaxUploadBytes, DefaultABI: "arm64", Refresh: 100 * time.Millisecond,
		Key: storage.Key, SafeName: storage.SafeName, Tracks: model.Tracks{"internal", "beta", "stable"}, Now: clock.now, VerifyAPK: verifyAPK,
	}, log)
	writers := 1
	if strings.HasPrefix(dsn, "postgres") {
		writers = 4
	}
	store := repository.NewUsers(db)
	tb.Cleanup(store.Close) // after deps.Users.Close: cleanups run last first
	deps.Users = service.NewUsers(store, service.UsersConfig{DefaultABI: "arm64", Writers: writers, MaxBatch: 64})
	tb.Cleanup(deps.Users.Close)
	deps.Stats = service.NewStats(repository.NewReleases(db), store, "arm64", time.Now)
	deps.History = service.NewHistory(repository.NewHistory(db), repository.NewReleases(db), service.HistoryConfig{DefaultABI: "arm64", Current: deps.Releases.Current}, time.Now, log)
	go deps.Releases.Run(ctx)
	deps.Signatures = service.NewSignatures(repository.NewSignatures(db), sigCfg, log)
	deps.Audit = service.NewAudit(repository.NewAudit(db))
	deps.Sessions = service.NewSessions(repository.NewSessions(db), deps.Signatures, service.SessionsConfig{Idle: 30 * time.Minute, Max: 12 * time.Hour}, time.Now, log)
	deps.SessionMax = 12 * time.Hour
	ts := &testServer{tb: tb, db: db, dir: dir, sigs: deps.Signatures, admin: "admin-secret-for-tests", maxUpload: deps.MaxUploadBytes, releases: deps.Releases, clock: clock}
	if _, err := deps.Signatures.Bootstrap(ctx, ts.admin); err != nil {
		tb.Fatal(err)
	}
	if ts.client, _, err = deps.Signatures.Create(ctx, model.RoleClient); err != nil {
		tb.Fatal(err)
	}
	go deps.Signatures.Run(ctx)
	ts.Server = httptest.NewServer(handler.NewServer(deps))
	tb.Cleanup(ts.Close)
	return ts
}

// do sends a request and returns the response with its body read.
func (ts *testServer) do(method, path, secret string, body io.Reader, header ...string) (*http.Response, []byte) {
	ts.tb.Helper()
	req, err := http.NewRequest(method, ts.URL+path, body)
	if err != nil {
		ts.tb.Fatal(err)
	}
	if secret != "" {
		req.Header.Set("signature", secret)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		ts.tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		ts.tb.Fatal(err)
	}
	return resp, b
}

// adminJSON GETs path with the admin secret and decodes the 200 answer
// into v.
func (ts *testServer) adminJSON(path string, v any) {
	ts.tb.Helper()
	resp, body := ts.do("GET", path, ts.admin, nil)
	if resp.StatusCode != 200 {
		ts.tb.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		ts.tb.Fatalf("GET %s: %v", path, err)
	}
}

// upload posts a multipart form; fields are name/value pairs and a
// "tmpFile" field takes filename and content as "name|content".
func (ts *testServer) upload(secret string, fields ...string) (*http.Response, []byte) {
	ts.tb.Helper()
	body, ctype := form(ts.tb, fields...)
	return ts.do(http.MethodPost, "/api/v1/updates", secret, body, "Content-Type", ctype)
}

func form(tb testing.TB, fields ...string) (*bytes.Buffer, string) {
	tb.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		if fields[i] == "tmpFile" {
			name, content, _ := strings.Cut(fields[i+1], "|")
			w, _ := mw.CreateFormFile("tmpFile", name)
			io.WriteString(w, content)
			continue
		}
		mw.WriteField(fields[i], fields[i+1])
	}
	mw.Close()
	return &buf, mw.FormDataContentType()
}

// mustUpload uploads a build and fails the test unless it is created.
func (ts *testServer) mustUpload(version string, fields ...string) map[string]any {
	ts.tb.Helper()
	fields = append([]string{"appVersion", version, "tmpFile", "wemesse.apk|build " + version}, fields...)
	resp, body := ts.upload(ts.admin, fields...)
	if resp.StatusCode != http.StatusCreated {
		ts.tb.Fatalf("upload %s: status %d %s", version, resp.StatusCode, body)
	}
	return decodeObject(ts.tb, body)
}

// count returns the rows in table.
func (ts *testServer) count(table string) int64 {
	ts.tb.Helper()
	var n int64
	if err := ts.db.Table(table).Count(&n).Error; err != nil {
		ts.tb.Fatal(err)
	}
	return n
}

// files lists every regular file under the upload dir, staging included.
func (ts *testServer) files() []string {
	var out []string
	filepath.WalkDir(ts.dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			rel, _ := filepath.Rel(ts.dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func decodeObject(tb testing.TB, body []byte) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		tb.Fatalf("body %q is not a JSON object: %v", body, err)
	}
	return m
}

func decodeArray(tb testing.TB, body []byte) []map[string]any {
	tb.Helper()
	var a []map[string]any
	if err := json.Unmarshal(body, &a); err != nil {
		tb.Fatalf("body %q is not a JSON array: %v", body, err)
	}
	return a
}

// wantError checks an error response: status, JSON content type and a
// single non-empty "error" key.
func wantError(tb testing.TB, resp *http.Response, body []byte, status int) string {
	tb.Helper()
	if resp.StatusCode != status {
		tb.Fatalf("status = %d, want %d (body %s)", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		tb.Errorf("Content-Type = %q, want JSON", ct)
	}
	m := decodeObject(tb, body)
	msg, ok := m["error"].(string)
	if !ok || msg == "" || len(m) != 1 {
		tb.Errorf("body = %s, want exactly {\"error\": ...}", body)
	}
	return msg
}

// wantKeys checks that obj has exactly the given keys.
func wantKeys(tb testing.TB, obj map[string]any, keys ...string) {
	tb.Helper()
	var got []string
	for k := range obj {
		got = append(got, k)
	}
	sort.Strings(got)
	sort.Strings(keys)
	if strings.Join(got, ",") != strings.Join(keys, ",") {
		tb.Errorf("keys = %v, want %v", got, keys)
	}
}

var releaseKeys = []string{"Id", "Checksum", "Name", "Message", "Size", "Version", "Skipped", "Uploads", "URI", "SHA256", "TargetABI", "Rollout", "Yanked", "Downloads", "Track", "Halted", "MandatoryAt", "Schedule",
	"PackageName", "VersionCode", "VersionName", "MinSdk", "TargetSdk", "SignerSHA256"}
var userKeys = []string{"ID", "AppLocale", "AppVersion", "DeviceLocale", "DeviceMac", "DeviceModel", "DeviceSDK", "SessionActivity", "SessionID", "SessionRegister", "TgVersion", "TargetABI"}
