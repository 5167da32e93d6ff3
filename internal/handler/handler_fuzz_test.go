package handler_test

// Fuzz targets for the HTTP layer. Each builds one real server (SQLite,
// fast Argon2) per fuzz worker, outside f.Fuzz, and calls its http.Handler
// directly with httptest requests, so that any bytes reach the handlers.
// Set WEMESSE_FUZZ_POSTGRES=1 to run them on a throwaway PostgreSQL
// database instead.

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/handler"
	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/service"
	"github.com/wemesse/server/internal/storage"
)

// fuzzDSN is a fresh database for one fuzz target.
func fuzzDSN(f *testing.F) string {
	if os.Getenv("WEMESSE_FUZZ_POSTGRES") == "1" {
		return dbtest.Postgres(f)
	}
	return dbtest.SQLite(f)
}

// serveDirect runs req through h and returns the recorded response.
func serveDirect(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// wantJSONError checks a {"error": "<non-empty>"} body with a JSON type.
func wantJSONError(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("status %d: Content-Type %q, want JSON (body %q)", rec.Code, ct, rec.Body.Bytes())
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("status %d: body %q is not a JSON object: %v", rec.Code, rec.Body.Bytes(), err)
	}
	if msg, ok := m["error"].(string); !ok || msg == "" || len(m) != 1 {
		t.Fatalf("status %d: body %q, want exactly {\"error\": \"...\"}", rec.Code, rec.Body.Bytes())
	}
}

// decodeStrict decodes a JSON object into v, failing on unknown keys and
// checking that the object has exactly keys.
func decodeStrict(t *testing.T, body []byte, v any, keys []string) {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", body, err)
	}
	got := make([]string, 0, len(m))
	for k := range m {
		got = append(got, k)
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(keys))
	if !slices.Equal(got, want) {
		t.Fatalf("keys = %v, want %v", got, want)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
}

// fuzzUser is both the request shape of POST /api/v1/users (the handler's
// userRequest) and, with ID, its response.
type fuzzUser struct {
	ID              int64  `json:"ID" gorm:"column:id"`
	AppLocale       string `json:"AppLocale" gorm:"column:app_locale"`
	AppVersion      string `json:"AppVersion" gorm:"column:app_version"`
	DeviceLocale    string `json:"DeviceLocale" gorm:"column:device_locale"`
	DeviceMac       string `json:"DeviceMac" gorm:"column:device_mac"`
	DeviceModel     string `json:"DeviceModel" gorm:"column:device_model"`
	DeviceSDK       string `json:"DeviceSDK" gorm:"column:device_sdk"`
	SessionActivity int64  `json:"SessionActivity" gorm:"column:session_activity"`
	SessionID       int64  `json:"SessionID" gorm:"column:session_id"`
	SessionRegister int64  `json:"SessionRegister" gorm:"column:session_register"`
	TgVersion       string `json:"TgVersion" gorm:"column:tg_version"`
	TargetABI       string `json:"TargetABI" gorm:"column:target_abi"`
}

// maxJSONBytes is the handler's bound on JSON bodies.
const maxJSONBytes = 64 << 10

// FuzzUserReport posts arbitrary bytes to POST /api/v1/users with a client
// signature and checks:
//   - the status is 200, 400 or 413, and every error is {"error": ...};
//   - the request is accepted exactly when json.Unmarshal reads it into the
//     request shape (one JSON object, nothing after it) and the user it gives
//     passes the documented rules (model.User.Validate), and the body is
//     within the JSON limit;
//   - an accepted report round-trips: the returned user has exactly the
//     documented keys and equals the unmarshalled request after the
//     documented normalization (an ABI suffix of AppVersion moves into
//     TargetABI), with an ID, and the stored row equals it.
func FuzzUserReport(f *testing.F) {
	ts := newTestServer(f, fuzzDSN(f))
	h := ts.Config.Handler
	for _, s := range []string{
		fmt.Sprintf(device, "2264_00", "02:30:54:89:2d:5e", 2),
		fmt.Sprintf(device, "2264_00arm64", "02:30:54:89:2d:5e", 2),
		`{"SessionID": 1, "AppVersion": "2267_01x86", "TargetABI": "x86"}`,
		`{"SessionID": 1, "AppVersion": "2267_01x86", "TargetABI": "arm"}`,
		`{"SessionID": -9223372036854775808, "AppVersion": "1", "DeviceModel": "名前 \u202e \ud800"}`,
		`{"sessionid": 3, "appversion": "3", "AppVersion": "4"}`,
		`{"SessionID": 1.5, "AppVersion": "1"}`,
		`{"SessionID": 1, "AppVersion": "1"`,
		`[1, 2]`,
		`null`,
		``,
		`{"SessionID": 1, "AppVersion": "1"} {}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/users", bytes.NewReader(body))
		req.Header.Set("signature", ts.client)
		req.Header.Set("Content-Type", "application/json")
		rec := serveDirect(h, req)

		var in fuzzUser
		uerr := json.Unmarshal(body, &in)
		u := model.User{
			AppLocale: in.AppLocale, AppVersion: in.AppVersion, DeviceLocale: in.DeviceLocale, DeviceMac: in.DeviceMac,
			DeviceModel: in.DeviceModel, DeviceSDK: in.DeviceSDK, SessionActivity: in.SessionActivity,
			SessionID: in.SessionID, SessionRegister: in.SessionRegister, TgVersion: in.TgVersion, TargetABI: in.TargetABI,
		}
		var verr error
		if uerr == nil {
			verr = u.Validate()
		}
		wantOK := uerr == nil && verr == nil && len(body) <= maxJSONBytes

		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d, want 200, 400 or 413 (body %q)", rec.Code, rec.Body.Bytes())
		}
		if (rec.Code == http.StatusOK) != wantOK {
			t.Fatalf("status %d (%q) but json.Unmarshal: %v, Validate: %v, %d bytes", rec.Code, rec.Body.Bytes(), uerr, verr, len(body))
		}
		if rec.Code != http.StatusOK {
			wantJSONError(t, rec)
			if rec.Code == http.StatusRequestEntityTooLarge && len(body) <= maxJSONBytes {
				t.Fatalf("413 for %d bytes, within the limit of %d", len(body), maxJSONBytes)
			}
			return
		}
		var got fuzzUser
		decodeStrict(t, rec.Body.Bytes(), &got, userKeys)
		want := fuzzUser{
			ID: got.ID, AppLocale: u.AppLocale, AppVersion: u.AppVersion, DeviceLocale: u.DeviceLocale, DeviceMac: u.DeviceMac,
			DeviceModel: u.DeviceModel, DeviceSDK: u.DeviceSDK, SessionActivity: u.SessionActivity,
			SessionID: u.SessionID, SessionRegister: u.SessionRegister, TgVersion: u.TgVersion, TargetABI: u.TargetABI,
		}
		if got.ID <= 0 || got != want {
			t.Fatalf("returned user\n %+v\nwant\n %+v", got, want)
		}
		var stored fuzzUser
		if err := ts.db.Table("users").Where("id = ?", got.ID).Take(&stored).Error; err != nil {
			t.Fatalf("read back user %d: %v", got.ID, err)
		}
		if stored != got {
			t.Fatalf("stored user\n %+v\nreturned\n %+v", stored, got)
		}
	})
}

// FuzzSignatureHeader sends arbitrary signature and Authorization header
// values (any bytes: the handler is called directly) from fuzzed client
// addresses to GET /api/v1/users and checks:
//   - the status is 200, 401, 429 or 503, never 500;
//   - 200 comes exactly for the admin secret, sent as the signature header
//     or, without one, as Authorization: Bearer (scheme in any case,
//     surrounding spaces ignored), and carries a JSON array;
//   - every 401 is byte-for-byte the 401 of a request with no secret, with
//     the same WWW-Authenticate; every 429 is the same JSON error with
//     Retry-After: 60; a 503 is a JSON error with Retry-After.
func FuzzSignatureHeader(f *testing.F) {
	ts := newTestServer(f, fuzzDSN(f), func(d *handler.Deps, c *service.SignaturesConfig) {
		d.AuthFailuresPerMinute = 30 // so that 429 shows up too
		c.CacheTTL = 24 * time.Hour  // the admin secret stays verified
	})
	h := ts.Config.Handler
	get := func(sig, authz, remote string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/users", nil)
		req.RemoteAddr = remote
		if sig != "" {
			req.Header.Set("signature", sig)
		}
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		return serveDirect(h, req)
	}
	missing := get("", "", "198.51.100.1:1234")
	if missing.Code != http.StatusUnauthorized {
		f.Fatalf("no secret: status %d, want 401", missing.Code)
	}
	if rec := get(ts.admin, "", "198.51.100.2:1234"); rec.Code != http.StatusOK {
		f.Fatalf("admin secret: status %d, want 200 (%s)", rec.Code, rec.Body.Bytes())
	}
	var tooMany []byte // the first 429 body seen

	for _, s := range []struct {
		sig, authz string
		ip         uint16
	}{
		{ts.admin, "", 1},
		{"", "Bearer " + ts.admin, 2},
		{"", "bEaReR \t " + ts.admin + " \t", 3},
		{"wrong", "Bearer " + ts.admin, 4},
		{ts.admin + " ", "", 5},
		{"", "Basic " + ts.admin, 6},
		{"", "Bearer", 7},
		{"", "Bearer ", 8},
		{strings.Repeat("s", 513), "Bearer " + ts.admin, 9},
		{"\x00\r\n\xff", "Bearer \x00", 10},
		{"", "", 11},
	} {
		f.Add(s.sig, s.authz, s.ip)
	}
	f.Fuzz(func(t *testing.T, sig, authz string, ip uint16) {
		rec := get(sig, authz, fmt.Sprintf("10.0.%d.%d:4321", ip>>8, ip&0xff))
		admin := documentedSecret(sig, authz) == ts.admin
		switch {
		case admin:
			if rec.Code != http.StatusOK {
				t.Fatalf("the admin secret (signature %q, Authorization %q) got %d, want 200", sig, authz, rec.Code)
			}
			var a []json.RawMessage
			if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
				t.Fatalf("200 body %q is not a JSON array: %v", rec.Body.Bytes(), err)
			}
		case rec.Code == http.StatusUnauthorized:
			if !bytes.Equal(rec.Body.Bytes(), missing.Body.Bytes()) ||
				rec.Header().Get("WWW-Authenticate") != missing.Header().Get("WWW-Authenticate") ||
				rec.Header().Get("Content-Type") != missing.Header().Get("Content-Type") {
				t.Fatalf("this 401 (%q, %v) differs from the 401 of a missing secret (%q, %v)",
					rec.Body.Bytes(), rec.Header(), missing.Body.Bytes(), missing.Header())
			}
		case rec.Code == http.StatusTooManyRequests:
			wantJSONError(t, rec)
			if rec.Header().Get("Retry-After") != "60" {
				t.Fatalf("429 with Retry-After %q", rec.Header().Get("Retry-After"))
			}
			if tooMany == nil {
				tooMany = bytes.Clone(rec.Body.Bytes())
			} else if !bytes.Equal(tooMany, rec.Body.Bytes()) {
				t.Fatalf("429 bodies differ: %q and %q", tooMany, rec.Body.Bytes())
			}
		case rec.Code == http.StatusServiceUnavailable:
			wantJSONError(t, rec)
			if rec.Header().Get("Retry-After") == "" {
				t.Fatal("503 without Retry-After")
			}
		default:
			t.Fatalf("signature %q, Authorization %q: status %d (%q), want 401, 429 or 503", sig, authz, rec.Code, rec.Body.Bytes())
		}
	})
}

// documentedSecret is the secret a request carries by docs/operations.md: the
// signature header, else Authorization: Bearer <secret>; an overlong one
// counts as missing.
func documentedSecret(sig, authz string) string {
	s := sig
	if s == "" && len(authz) > len("Bearer ") && strings.EqualFold(authz[:len("Bearer ")], "Bearer ") {
		s = strings.TrimSpace(authz[len("Bearer "):])
	}
	if len(s) > 512 {
		return ""
	}
	return s
}

// Uploads.

const (
	fuzzBoundary  = "wemesse-fuzz-boundary"
	fuzzMaxUpload = 4 << 10 // WEMESSE_MAX_UPLOAD_BYTES of the fuzzed server
	fuzzOverhead  = 1 << 20 // the handler's room for the form beyond the file
	fuzzMaxHeap   = 256 << 20
	fuzzMaxRows   = 128 // the apps table is emptied when it grows past this
)

var fuzzMultipart = "multipart/form-data; boundary=" + fuzzBoundary

// fuzzApp is a row of apps.
type fuzzApp struct {
	ID          int64  `gorm:"column:id"`
	AppVersion  string `gorm:"column:app_version"`
	TargetABI   string `gorm:"column:target_abi"`
	AppName     string `gorm:"column:app_name"`
	AppNotes    string `gorm:"column:app_notes"`
	AppChecksum string `gorm:"column:app_checksum"`
	SHA256      string `gorm:"column:sha256"`
	SizeBytes   int64  `gorm:"column:size_bytes"`
	FilePath    string `gorm:"column:file_path"`
	URI         string `gorm:"column:uri"`
	Rollout     int64  `gorm:"column:rollout"`
	Skipped     bool   `gorm:"column:skipped"`
}

// uploadFuzz is a server for the upload targets, with a small upload
// limit so memory stays bounded.
type uploadFuzz struct {
	ts *testServer
	h  http.Handler
}

func newUploadFuzz(f *testing.F) *uploadFuzz {
	ts := newTestServer(f, fuzzDSN(f), func(d *handler.Deps, _ *service.SignaturesConfig) { d.MaxUploadBytes = fuzzMaxUpload })
	u := &uploadFuzz{ts: ts, h: ts.Config.Handler}
	// Some releases to clash with.
	for _, v := range []string{"2267_01", "2267_00"} {
		body, ctype := form(f, "appVersion", v, "tmpFile", "wemesse.apk|build "+v)
		req := httptest.NewRequest(http.MethodPost, "/api/v1/updates", body)
		req.Header.Set("signature", ts.admin)
		req.Header.Set("Content-Type", ctype)
		if rec := serveDirect(u.h, req); rec.Code != http.StatusCreated {
			f.Fatalf("upload %s: %d %s", v, rec.Code, rec.Body.Bytes())
		}
	}
	return u
}

// uploadState is what an upload may change.
type uploadState struct {
	rows    []fuzzApp
	files   []string // regular files under the upload dir, outside staging
	staging []string // entries of the staging dir
	outside []string // entries of the upload dir's parent
}

func (u *uploadFuzz) state(t *testing.T) uploadState {
	t.Helper()
	var s uploadState
	if err := u.ts.db.Table("apps").Order("id").Find(&s.rows).Error; err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(u.ts.dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(u.ts.dir, p)
		switch {
		case rel == ".staging":
			entries, err := os.ReadDir(p)
			for _, e := range entries {
				s.staging = append(s.staging, e.Name())
			}
			if err != nil {
				return err
			}
			return fs.SkipDir
		case e.Type().IsRegular():
			s.files = append(s.files, filepath.ToSlash(rel))
		case !e.IsDir():
			t.Fatalf("unexpected %s at %s in the upload dir", e.Type(), rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(s.files)
	entries, err := os.ReadDir(filepath.Dir(u.ts.dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		s.outside = append(s.outside, e.Name())
	}
	return s
}

// reset empties the apps table and the upload dir once they grow large,
// so that each input costs about the same.
func (u *uploadFuzz) reset(t *testing.T) {
	t.Helper()
	var n int64
	if err := u.ts.db.Table("apps").Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	if n <= fuzzMaxRows {
		return
	}
	if err := u.ts.db.Exec("DELETE FROM apps").Error; err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(u.ts.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != ".staging" {
			if err := os.RemoveAll(filepath.Join(u.ts.dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// expectedUpload is what the documented upload rules make of a body.
type expectedUpload struct {
	status                       int
	version, abi, notes, rollout string // the fields as sent
	fileName                     string // as the multipart reader reads it
	content                      []byte
}

// expectUpload applies the upload rules of docs/api.md to body, read with Go's
// multipart reader as any server would, against the existing rows: parts
// are read in order and the first bad one decides; appVersion is required,
// has no ABI suffix and must not equal an existing version of the same
// ABI; targetABI is empty or known; rollout is blank (the default, 100)
// or 1 to 100; text fields are UTF-8 without NUL, of at most 64 KiB;
// tmpFile is required, non-empty and at most the upload limit; a field may
// not repeat; unknown fields are ignored.
func expectUpload(ctype string, body []byte, rows []fuzzApp) expectedUpload {
	e := expectedUpload{status: http.StatusBadRequest}
	if mt, _, _ := strings.Cut(ctype, ";"); mt != "multipart/form-data" {
		e.status = http.StatusUnsupportedMediaType
		return e
	}
	if len(body) > fuzzMaxUpload+fuzzOverhead {
		e.status = http.StatusRequestEntityTooLarge
		return e
	}
	mr := multipart.NewReader(bytes.NewReader(body), fuzzBoundary)
	seen := map[string]bool{}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return e
		}
		field := p.FormName()
		if seen[field] {
			return e
		}
		switch field {
		case "appVersion", "appNotes", "targetABI", "rollout":
			seen[field] = true
			b, err := io.ReadAll(io.LimitReader(p, 64<<10+1))
			if err != nil || len(b) > 64<<10 || !utf8.Valid(b) || bytes.IndexByte(b, 0) >= 0 {
				return e
			}
			value := string(b)
			switch field {
			case "appVersion":
				e.version = value
				if _, err := model.ParseVersion(strings.TrimSpace(value)); err != nil {
					return e
				}
			case "appNotes":
				e.notes = value
			case "targetABI":
				e.abi = value
				if !model.ValidABI(strings.TrimSpace(value)) {
					return e
				}
			case "rollout":
				e.rollout = value
				if strings.TrimSpace(value) == "" {
					break // a blank field means the default
				}
				if n, err := strconv.Atoi(strings.TrimSpace(value)); err != nil || n < 1 || n > 100 {
					return e
				}
			}
		case "tmpFile":
			seen[field] = true
			b, err := io.ReadAll(io.LimitReader(p, fuzzMaxUpload+1))
			if len(b) > fuzzMaxUpload {
				e.status = http.StatusRequestEntityTooLarge
				return e
			}
			if err != nil {
				return e
			}
			e.fileName, e.content = p.FileName(), b
		default:
			if _, err := io.Copy(io.Discard, p); err != nil {
				return e
			}
		}
	}
	if !seen["appVersion"] || !seen["tmpFile"] || len(e.content) == 0 {
		return e
	}
	v, _ := model.ParseVersion(strings.TrimSpace(e.version))
	for _, r := range rows {
		rv, err := model.ParseVersion(r.AppVersion)
		if err == nil && r.TargetABI == strings.TrimSpace(e.abi) && rv.Compare(v) == 0 {
			e.status = http.StatusConflict
			return e
		}
	}
	e.status = http.StatusCreated
	return e
}

// check posts body and checks the outcome against expectUpload and the
// invariants that hold after any upload:
//   - the status is 201, 400, 409, 413 or 415, and the one the rules give;
//   - a failure is a JSON error and leaves no new row and no new file;
//   - a success adds exactly one row and one file, and round-trips: the
//     release JSON and the row hold the fields as sent (version and ABI
//     trimmed, rollout 100 by default, the name SafeName of the file name),
//     and the stored file is the content sent, with its size and hashes;
//   - staging is empty; every file under the upload dir is at
//     <version>/<name> or <abi>/<version>/<name> of exactly one row, and
//     every row has its file; nothing appears beside the upload dir;
//   - the heap in use stays under fuzzMaxHeap.
func (u *uploadFuzz) check(t *testing.T, ctype string, body []byte) {
	u.reset(t)
	before := u.state(t)
	want := expectUpload(ctype, body, before.rows)

	req := httptest.NewRequest(http.MethodPost, "/api/v1/updates", bytes.NewReader(body))
	req.Header.Set("signature", u.ts.admin)
	req.Header.Set("Content-Type", ctype)
	rec := serveDirect(u.h, req)
	after := u.state(t)

	switch rec.Code {
	case http.StatusCreated, http.StatusBadRequest, http.StatusConflict, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
	default:
		t.Fatalf("status %d (%q), want 201, 400, 409, 413 or 415", rec.Code, rec.Body.Bytes())
	}
	if rec.Code != want.status {
		t.Fatalf("status %d (%q), but the upload rules give %d", rec.Code, rec.Body.Bytes(), want.status)
	}
	if len(after.staging) != 0 {
		t.Fatalf("staging holds %v after the request", after.staging)
	}
	if !slices.Equal(after.outside, []string{filepath.Base(u.ts.dir)}) {
		t.Fatalf("the upload dir's parent holds %v", after.outside)
	}
	checkFilesMatchRows(t, u.ts.dir, after)

	if rec.Code != http.StatusCreated {
		wantJSONError(t, rec)
		if !slices.Equal(before.rows, after.rows) || !slices.Equal(before.files, after.files) {
			t.Fatalf("a %d changed the releases: rows %d -> %d, files %v -> %v", rec.Code, len(before.rows), len(after.rows), before.files, after.files)
		}
	} else {
		u.checkCreated(t, rec, want, before, after)
	}

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if ms.HeapInuse > fuzzMaxHeap {
		t.Fatalf("heap in use %d MB, over %d MB", ms.HeapInuse>>20, fuzzMaxHeap>>20)
	}
}

func (u *uploadFuzz) checkCreated(t *testing.T, rec *httptest.ResponseRecorder, want expectedUpload, before, after uploadState) {
	t.Helper()
	if len(after.rows) != len(before.rows)+1 || !slices.Equal(after.rows[:len(before.rows)], before.rows) {
		t.Fatalf("201 but rows went from %d to %d", len(before.rows), len(after.rows))
	}
	row := after.rows[len(after.rows)-1]
	var rel handler.ReleaseResponse
	decodeStrict(t, rec.Body.Bytes(), &rel, releaseKeys)

	version, abi := strings.TrimSpace(want.version), strings.TrimSpace(want.abi)
	rollout := 100
	if strings.TrimSpace(want.rollout) != "" {
		rollout, _ = strconv.Atoi(strings.TrimSpace(want.rollout))
	}
	name := storage.SafeName(want.fileName)
	key := storage.Key(version, abi, name)
	v, _ := model.ParseVersion(version)
	md5sum, shasum := md5.Sum(want.content), sha256.Sum256(want.content)
	wantRow := fuzzApp{
		ID: row.ID, AppVersion: version, TargetABI: abi, AppName: name, AppNotes: want.notes,
		AppChecksum: hex.EncodeToString(md5sum[:]), SHA256: hex.EncodeToString(shasum[:]), SizeBytes: int64(len(want.content)),
		FilePath: key, URI: publicURL + "/" + key, Rollout: int64(rollout), Skipped: !v.Mandatory(),
	}
	if row != wantRow {
		t.Fatalf("stored row\n %+v\nwant\n %+v", row, wantRow)
	}
	wantRel := handler.ReleaseResponse{
		ID: row.ID, Checksum: wantRow.AppChecksum, Name: name, Message: want.notes, Size: model.FormatSize(int64(len(want.content))),
		Version: version, Skipped: wantRow.Skipped, URI: escapedURL(publicURL, key), SHA256: wantRow.SHA256,
		TargetABI: abi, Rollout: rollout, Track: model.DefaultTrack, Schedule: []handler.StepResponse{},
	}
	if !reflect.DeepEqual(rel, wantRel) {
		t.Fatalf("release JSON\n %+v\nwant\n %+v", rel, wantRel)
	}
	if got := slices.DeleteFunc(slices.Clone(after.files), func(f string) bool { return slices.Contains(before.files, f) }); !slices.Equal(got, []string{key}) || len(after.files) != len(before.files)+1 {
		t.Fatalf("201 added the files %v, want only %s", got, key)
	}
	content, err := os.ReadFile(filepath.Join(u.ts.dir, filepath.FromSlash(key)))
	if err != nil || !bytes.Equal(content, want.content) {
		t.Fatalf("stored file %s: %d bytes (%v), want the %d bytes sent", key, len(content), err, len(want.content))
	}
}

// escapedURL is base/key with each segment of key path-escaped.
func escapedURL(base, key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return base + "/" + strings.Join(segs, "/")
}

// checkFilesMatchRows checks that files and rows correspond one to one, each
// file at the documented path of its row.
func checkFilesMatchRows(t *testing.T, dir string, s uploadState) {
	t.Helper()
	paths := make([]string, 0, len(s.rows))
	for _, r := range s.rows {
		v, err := model.ParseVersion(r.AppVersion)
		if err != nil || !model.ValidABI(r.TargetABI) || r.AppName != storage.SafeName(r.AppName) {
			t.Fatalf("row %+v: bad version, ABI or name", r)
		}
		want := v.String() + "/" + r.AppName
		if r.TargetABI != "" {
			want = r.TargetABI + "/" + want
		}
		if r.FilePath != want {
			t.Fatalf("row %d stored at %q, want %q", r.ID, r.FilePath, want)
		}
		if info, err := os.Stat(filepath.Join(dir, filepath.FromSlash(want))); err != nil || !info.Mode().IsRegular() || info.Size() != r.SizeBytes {
			t.Fatalf("row %d: file %s missing or not %d bytes (%v)", r.ID, want, r.SizeBytes, err)
		}
		paths = append(paths, want)
	}
	slices.Sort(paths)
	if !slices.Equal(paths, s.files) {
		t.Fatalf("files under the upload dir %v, rows' files %v", s.files, paths)
	}
}

// uploadForm builds a multipart body with fuzzBoundary from structured
// inputs. flags: 1 omits appVersion, 2 omits the file, 4 repeats appVersion,
// 8 puts the file first, 16 sends targetABI, 32 sends rollout, 64 sends a
// non-multipart Content-Type, 128 cuts the closing boundary. The file's
// content is content repeated up to size bytes (size % 3 × the limit).
func uploadForm(version, abi, rollout, notes, fileField, fileName string, content []byte, size uint16, flags uint8) (ctype string, body []byte) {
	if n := int(size) % (3 * fuzzMaxUpload); n > len(content) && len(content) > 0 {
		content = bytes.Repeat(content, n/len(content)+1)[:n]
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.SetBoundary(fuzzBoundary)
	file := func() {
		if flags&2 == 0 {
			w, _ := mw.CreateFormFile(fileField, fileName)
			w.Write(content)
		}
	}
	if flags&8 != 0 {
		file()
	}
	if flags&1 == 0 {
		mw.WriteField("appVersion", version)
	}
	if notes != "" {
		mw.WriteField("appNotes", notes)
	}
	if flags&16 != 0 {
		mw.WriteField("targetABI", abi)
	}
	if flags&32 != 0 {
		mw.WriteField("rollout", rollout)
	}
	if flags&8 == 0 {
		file()
	}
	if flags&4 != 0 {
		mw.WriteField("appVersion", version)
	}
	mw.Close()
	body = buf.Bytes()
	if flags&128 != 0 {
		body = bytes.TrimSuffix(body, []byte("--"+fuzzBoundary+"--\r\n"))
	}
	ctype = fuzzMultipart
	if flags&64 != 0 {
		ctype = "application/octet-stream"
	}
	return ctype, body
}

// uploadSeeds are structured upload inputs, shared by both upload targets.
var uploadSeeds = []struct {
	version, abi, rollout, notes, fileField, fileName string
	content                                           string
	size                                              uint16
	flags                                             uint8
}{
	{"2267_02", "", "", "Fixes.", "tmpFile", "wemesse.apk", "apk bytes", 0, 0},
	{"2267_03", "arm64", "10", "", "tmpFile", "wemesse-arm64.apk", "apk", 0, 16 | 32},
	{"2267_01", "", "", "", "tmpFile", "wemesse.apk", "dup", 0, 0},
	{"2267.1", "", "", "", "tmpFile", "wemesse.apk", "numerically equal", 0, 0},
	{" 2267_04 ", " x86 ", " 100 ", "notes\x00\r\n", "tmpFile", "../../etc/Wemesse Beta.apk", "x", 0, 16 | 32},
	{"2267_05", "", "", "", "tmpFile", "../../x", "x", 0, 8},
	{"2267_06", "", "", "", "tmpFile", `C:\Users\ops\.hidden`, "x", 0, 0},
	{"2267_07", "", "", "", "tmpFile", "Вемесса 名前.apk", "x", 0, 0},
	{"2267_08", "", "", "", "tmpFile", "big.apk", "0123456789", fuzzMaxUpload + 1, 0},
	{"2267_09", "", "", "", "tmpFile", "max.apk", "0123456789", fuzzMaxUpload, 0},
	{"2267_10", "mips", "", "", "tmpFile", "a.apk", "x", 0, 16},
	{"2267_11", "", "0", "", "tmpFile", "a.apk", "x", 0, 32},
	{"2267_12arm64", "", "", "", "tmpFile", "a.apk", "x", 0, 0},
	{"99999999999999999999999999999999_1", "", "", "", "tmpFile", "a.apk", "x", 0, 0},
	{"2267_13", "", "", "", "tmpFile", "a.apk", "", 0, 0},
	{"2267_14", "", "", "", "tmpFile", "a.apk", "x", 0, 1},
	{"2267_15", "", "", "", "tmpFile", "a.apk", "x", 0, 2},
	{"2267_16", "", "", "", "tmpFile", "a.apk", "x", 0, 4},
	{"2267_17", "", "", "", "tmpFile", "a.apk", "x", 0, 64},
	{"2267_18", "", "", "", "tmpFile", "a.apk", "x", 0, 128},
	{"2267_19", "", "", "", "otherFile", "a.apk", "x", 0, 0},
	{"2267_20", "", "", "", "tmpFile", "", "x", 0, 0},
	{"2267_21", "", "", "", "tmp\"File", "a\"\\.apk\r\n", "x", 0, 0},
}

// FuzzUpload posts arbitrary bytes as a multipart body (fixed boundary) to
// POST /api/v1/updates and checks them with uploadFuzz.check.
func FuzzUpload(f *testing.F) {
	u := newUploadFuzz(f)
	for _, s := range uploadSeeds {
		if _, body := uploadForm(s.version, s.abi, s.rollout, s.notes, s.fileField, s.fileName, []byte(s.content), s.size, s.flags&^64); len(body) > 0 {
			f.Add(body)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		u.check(t, fuzzMultipart, body)
	})
}

// FuzzUploadForm builds well-formed (or deliberately broken, see
// uploadForm's flags) multipart forms from fuzzed field values, file field
// name, file name and content, so that the fuzzer reaches the validation
// and storage paths more often than with raw bytes, and checks them with
// uploadFuzz.check.
func FuzzUploadForm(f *testing.F) {
	u := newUploadFuzz(f)
	for _, s := range uploadSeeds {
		f.Add(s.version, s.abi, s.rollout, s.notes, s.fileField, s.fileName, []byte(s.content), s.size, s.flags)
	}
	f.Fuzz(func(t *testing.T, version, abi, rollout, notes, fileField, fileName string, content []byte, size uint16, flags uint8) {
		ctype, body := uploadForm(version, abi, rollout, notes, fileField, fileName, content, size, flags)
		u.check(t, ctype, body)
	})
}
