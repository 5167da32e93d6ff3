package handler

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/wemesse/server/internal/httpsig"
	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/service"
)

// releaseResponse is a release as clients see it. The keys are the
// contract's; SHA256 and TargetABI were added to it.
type releaseResponse struct {
	ID        int64  `json:"Id"`
	Checksum  string `json:"Checksum"`
	Name      string `json:"Name"`
	Message   string `json:"Message"`
	Size      string `json:"Size"`
	Version   string `json:"Version"`
	Skipped   bool   `json:"Skipped"`
	Uploads   int64  `json:"Uploads"`
	URI       string `json:"URI"`
	SHA256    string `json:"SHA256"`
	TargetABI string `json:"TargetABI"`
	Rollout   int    `json:"Rollout"`
	Yanked    bool   `json:"Yanked"`
	Downloads int64  `json:"Downloads"`

	Track       string         `json:"Track"`
	Halted      bool           `json:"Halted"`
	MandatoryAt *time.Time     `json:"MandatoryAt"` // RFC 3339; null when none
	Schedule    []stepResponse `json:"Schedule"`
	// What the verified APK declares and who signed it; empty for builds
	// stored before verification or without it.
	PackageName  string `json:"PackageName"`
	VersionCode  int64  `json:"VersionCode"`
	VersionName  string `json:"VersionName"`
	MinSdk       int    `json:"MinSdk"`
	TargetSdk    int    `json:"TargetSdk"`
	SignerSHA256 string `json:"SignerSHA256"`
}

// stepResponse is one step of a release's Schedule.
type stepResponse struct {
	At      time.Time `json:"At"`
	Rollout int       `json:"Rollout"`
	State   string    `json:"State"` // pending, applied or cancelled
}

// toReleaseResponse converts a release, linking its file under base.
func toReleaseResponse(r model.Release, base string) releaseResponse {
	out := releaseResponse{
		ID: r.ID, Checksum: r.MD5, Name: r.Name, Message: r.Notes, Size: r.SizeText,
		Version: r.Version.String(), Skipped: r.Skipped, Uploads: r.Uploads,
		URI: fileURL(base, r.FilePath), SHA256: r.SHA256, TargetABI: r.TargetABI,
		Rollout: r.Rollout, Yanked: r.Yanked, Downloads: r.Downloads,
		Track: r.Track, Halted: r.Halted, MandatoryAt: r.MandatoryAt, Schedule: make([]stepResponse, len(r.Schedule)),
		PackageName: r.PackageName, VersionCode: r.VersionCode, VersionName: r.VersionName,
		MinSdk: r.MinSdk, TargetSdk: r.TargetSdk, SignerSHA256: r.SignerSHA256,
	}
	for i, st := range r.Schedule {
		out.Schedule[i] = stepResponse{At: st.At, Rollout: st.Rollout, State: string(st.State)}
	}
	return out
}

// fileURL joins base and a storage key, escaping each segment.
func fileURL(base, key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return base + "/" + strings.Join(segs, "/")
}

// handleUpdateCheck answers GET /api/v1/updates/{version}?device=ID&track=T&sdk=N,
// N being the device's API level: only builds whose minSdk it reaches are
// offered. The answer may be cached for maxAge; its ETag changes with any
// upload, edit or yank, and If-None-Match gets 304. With a signer, a 200
// carries Content-Digest and an RFC 9421 signature; a 304 refers to the
// signed answer the client holds.
func handleUpdateCheck(releases *service.Releases, mirrorURL string, maxAge time.Duration, signer *httpsig.Signer, log *slog.Logger) http.HandlerFunc {
	cacheControl := []string{fmt.Sprintf("public, max-age=%d", int(maxAge.Seconds()))}
	jsonType := []string{"application/json; charset=utf-8"}
	answers := answerCache{signer: signer}
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.RawQuery
		sdk, err := sdkParam(queryValue(q, "sdk"))
		if err != nil {
			fail(w, r, log, err)
			return
		}
		rel, tag, err := releases.Check(r.Context(), chi.URLParam(r, "version"), queryValue(q, "device"), queryValue(q, "track"), sdk)
		if err != nil {
			fail(w, r, log, err)
			return
		}
		a, err := answers.get(rel, tag, mirrorURL)
		if err != nil {
			fail(w, r, log, err)
			return
		}
		h := w.Header()
		h["Etag"], h["Cache-Control"] = a.etag, cacheControl
		if etagMatches(headerValue(r.Header, "If-None-Match"), a.etag[0]) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h["Content-Type"] = jsonType
		if st := answers.signed(a); st != nil {
			h["Content-Digest"], h["Signature-Input"], h["Signature"] = a.digest, st.input, st.signature
		}
		w.WriteHeader(http.StatusOK)
		w.Write(a.body)
	}
}

// sdkParam parses the sdk query parameter: empty is 0 (no filter).
func sdkParam(v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 10000 {
		return 0, model.Errorf(model.Invalid, "sdk must be an API level, an integer from 1 to 10000.")
	}
	return n, nil
}

// answerCache keeps the encoded answers of the update check: every client
// on one version asks the same question, so each answer is encoded, and
// signed, once per state of the releases rather than once per request.
type answerCache struct {
	signer *httpsig.Signer // nil: answers go unsigned

	mu sync.RWMutex
	m  map[answerKey]*answer
}

// answerKey is everything an encoded answer depends on.
type answerKey struct {
	tag                string // the releases' offer-relevant state
	id                 int64
	skipped            bool
	uploads, downloads int64
}

type answer struct {
	etag   []string
	body   []byte
	digest []string // Content-Digest

	stamp     atomic.Pointer[stamp] // the latest signature; nil unsigned
	resigning atomic.Bool
}

// stamp is one signature of an answer, as header values.
type stamp struct {
	created          time.Time
	input, signature []string
}

// Signatures are renewed so that created is never more than maxStampAge
// old when sent: in the background once one is resignAfter old, so that
// under traffic no request waits for Ed25519; by the request itself only
// when the answer went unasked for that long.
const (
	resignAfter = 20 * time.Second
	maxStampAge = 50 * time.Second
)

// maxAnswers bounds the cache; counters that move make old keys dead.
const maxAnswers = 1024

func (c *answerCache) get(rel model.Release, tag, base string) (*answer, error) {
	k := answerKey{tag, rel.ID, rel.Skipped, rel.Uploads, rel.Downloads}
	c.mu.RLock()
	a, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return a, nil
	}
	body, err := json.Marshal(toReleaseResponse(rel, base))
	if err != nil {
		return nil, err
	}
	body = append(body, '\n')
	// Weak: the counters in the body may move without the answer changing.
	a = &answer{etag: []string{fmt.Sprintf(`W/"%s-%d-%t"`, tag, rel.ID, rel.Skipped)}, body: body}
	if c.signer != nil {
		a.digest = []string{httpsig.ContentDigest(body)}
		c.sign(a)
	}
	c.mu.Lock()
	if len(c.m) >= maxAnswers || c.m == nil {
		c.m = make(map[answerKey]*answer)
	}
	c.m[k] = a
	c.mu.Unlock()
	return a, nil
}

// sign stamps a with a new signature.
func (c *answerCache) sign(a *answer) *stamp {
	s := c.signer.Sign(http.StatusOK, a.digest[0], time.Now())
	st := &stamp{created: s.Created, input: []string{s.SignatureInput}, signature: []string{s.Signature}}
	a.stamp.Store(st)
	return st
}

// signed returns a's signature, renewed as resignAfter and maxStampAge
// say; nil when answers go unsigned.
func (c *answerCache) signed(a *answer) *stamp {
	st := a.stamp.Load()
	if st == nil {
		return nil
	}
	age := time.Since(st.created)
	switch {
	case age >= maxStampAge:
		return c.sign(a)
	case age >= resignAfter && a.resigning.CompareAndSwap(false, true):
		go func() {
			c.sign(a)
			a.resigning.Store(false)
		}()
	}
	return st
}

// etagMatches reports whether an If-None-Match header names etag, compared
// weakly as RFC 9110 asks for If-None-Match.
func etagMatches(header, etag string) bool {
	etag = strings.TrimPrefix(etag, "W/")
	for header != "" {
		var t string
		t, header, _ = strings.Cut(header, ",")
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// queryValue is the first value of key in a URL's raw query, as
// url.ParseQuery reads it, without decoding the rest of the query.
func queryValue(rawQuery, key string) string {
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		if pair == "" || strings.Contains(pair, ";") {
			continue // url.ParseQuery skips or rejects these pairs
		}
		k, v, _ := strings.Cut(pair, "=")
		if k, err := url.QueryUnescape(k); err != nil || k != key {
			continue
		}
		if v, err := url.QueryUnescape(v); err == nil {
			return v
		}
	}
	return ""
}

// releasePatch is the body of PATCH /api/v1/updates/{id}; absent keys
// stay, unknown keys are refused.
type releasePatch struct {
	Message     *string             `json:"Message"`
	Skipped     *bool               `json:"Skipped"`
	Rollout     *int                `json:"Rollout"`
	Halted      *bool               `json:"Halted"`
	MandatoryAt optional[string]    `json:"MandatoryAt"` // RFC 3339, or null to clear
	Schedule    *[]releasePatchStep `json:"Schedule"`
}

type releasePatchStep struct {
	At      string `json:"At"`
	Rollout int    `json:"Rollout"`
}

// toPatch checks the times of req and converts it.
func (req releasePatch) toPatch() (model.ReleasePatch, error) {
	patch := model.ReleasePatch{Notes: req.Message, Skipped: req.Skipped, Rollout: req.Rollout, Halted: req.Halted}
	if req.MandatoryAt.Set {
		patch.MandatoryAt = &model.Deadline{}
		if req.MandatoryAt.Value != nil {
			at, err := time.Parse(time.RFC3339, *req.MandatoryAt.Value)
			if err != nil {
				return patch, model.Errorf(model.Invalid, "MandatoryAt must be an RFC 3339 time such as 2026-12-24T18:00:00Z, or null.")
			}
			patch.MandatoryAt.At = &at
		}
	}
	if req.Schedule != nil {
		steps := make([]model.Step, len(*req.Schedule))
		for i, st := range *req.Schedule {
			at, err := time.Parse(time.RFC3339, st.At)
			if err != nil {
				return patch, model.Errorf(model.Invalid, "Schedule step %d: At must be an RFC 3339 time such as 2026-12-24T18:00:00Z.", i+1)
			}
			steps[i] = model.Step{At: at, Rollout: st.Rollout}
		}
		patch.Schedule = &steps
	}
	return patch, nil
}

// handleReleaseEdit answers PATCH /api/v1/updates/{id}.
func handleReleaseEdit(releases *service.Releases, publicURL string, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := pathID(r)
		if err != nil {
			fail(w, r, log, err)
			return
		}
		req, err := decodeStrict[releasePatch](w, r)
		if err != nil {
			fail(w, r, log, err)
			return
		}
		patch, err := req.toPatch()
		if err != nil {
			fail(w, r, log, err)
			return
		}
		rel, err := releases.Edit(r.Context(), id, patch)
		if err != nil {
			fail(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, toReleaseResponse(rel, publicURL))
	}
}

// promoteRequest is the body of POST /api/v1/updates/{id}/promote.
type promoteRequest struct {
	Track   string `json:"Track"`
	Rollout *int   `json:"Rollout"`
}

// handleReleasePromote answers POST /api/v1/updates/{id}/promote.
func handleReleasePromote(releases *service.Releases, publicURL string, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := pathID(r)
		if err != nil {
			fail(w, r, log, err)
			return
		}
		req, err := decodeStrict[promoteRequest](w, r)
		if err != nil {
			fail(w, r, log, err)
			return
		}
		if req.Track == "" {
			fail(w, r, log, model.Errorf(model.Invalid, "Track is required."))
			return
		}
		rel, err := releases.Promote(r.Context(), id, req.Track, req.Rollout)
		if err != nil {
			fail(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, toReleaseResponse(rel, publicURL))
	}
}

// handleReleaseYank answers DELETE /api/v1/updates/{id}[?purge=true].
func handleReleaseYank(releases *service.Releases, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := pathID(r)
		if err != nil {
			fail(w, r, log, err)
			return
		}
		purge, err := strconv.ParseBool(cmp.Or(r.URL.Query().Get("purge"), "false"))
		if err != nil {
			fail(w, r, log, model.Errorf(model.Invalid, "purge must be true or false."))
			return
		}
		if err := releases.Yank(r.Context(), id, purge); err != nil {
			fail(w, r, log, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// pathID reads the {id} path parameter.
func pathID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, model.Errorf(model.Invalid, "The release id must be a positive integer.")
	}
	return id, nil
}

// statsResponse is the body of GET /api/v1/stats.
type statsResponse struct {
	Releases []releaseStats `json:"Releases"`
	Totals   releaseStats   `json:"Totals"`
}

type releaseStats struct {
	ID        int64  `json:"Id,omitempty"`
	Version   string `json:"Version,omitempty"`
	TargetABI string `json:"TargetABI"`
	Devices   int64  `json:"Devices"`
	Active30d int64  `json:"Active30d"`
	Uploads   int64  `json:"Uploads"`
	Downloads int64  `json:"Downloads"`
}

// handleStats answers GET /api/v1/stats[?track=T].
func handleStats(stats *service.Stats, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		st, err := stats.Get(r.Context(), r.URL.Query().Get("track"))
		if err != nil {
			fail(w, r, log, err)
			return
		}
		out := statsResponse{Releases: make([]releaseStats, len(st.Releases)), Totals: releaseStats(st.Totals)}
		for i, rs := range st.Releases {
			out.Releases[i] = releaseStats(rs)
		}
		encode(w, http.StatusOK, out)
	}
}

// handleReleaseList answers GET /api/v1/updates.
func handleReleaseList(releases *service.Releases, publicURL string, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		all, err := releases.List(r.Context())
		if err != nil {
			fail(w, r, log, err)
			return
		}
		out := make([]releaseResponse, len(all))
		for i, rel := range all {
			out[i] = toReleaseResponse(rel, publicURL)
		}
		encode(w, http.StatusOK, out)
	}
}

// multipartOverhead is the room left beyond the file for the form's other
// fields and boundaries.
const multipartOverhead = 1 << 20

// uploadReadBuffer is the read buffer of an upload's body.
const uploadReadBuffer = 256 << 10

// handleUpload answers POST /api/v1/updates, a multipart form.
func handleUpload(releases *service.Releases, publicURL string, maxUpload int64, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rel, err := upload(w, r, releases, maxUpload)
		if err != nil {
			fail(w, r, log, err)
			return
		}
		encode(w, http.StatusCreated, toReleaseResponse(rel, publicURL))
	}
}

// upload streams r's multipart form to releases.Upload, for the API and
// the console alike.
func upload(w http.ResponseWriter, r *http.Request, releases *service.Releases, maxUpload int64) (model.Release, error) {
	mediaType, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/form-data" {
		return model.Release{}, model.Errorf(model.Unsupported, "The body must be multipart/form-data with the fields appVersion, appNotes and tmpFile.")
	}
	if r.ContentLength > maxUpload+multipartOverhead {
		return model.Release{}, model.Errorf(model.TooLarge, "The upload is larger than the limit of %d bytes.", maxUpload)
	}
	if params["boundary"] == "" {
		return model.Release{}, model.Errorf(model.Invalid, "The multipart body is malformed: %s.", http.ErrMissingBoundary.Error())
	}
	// multipart.Reader reads through the bufio.Reader it is given when
	// that is large enough: one read takes a large piece of the body,
	// where its own would take 4 KiB.
	body := bufio.NewReaderSize(http.MaxBytesReader(w, r.Body, maxUpload+multipartOverhead), uploadReadBuffer)
	return releases.Upload(r.Context(), multipartForm{multipart.NewReader(body, params["boundary"])})
}

// multipartForm adapts a multipart.Reader to service.Form, turning transport
// errors into model errors.
type multipartForm struct{ mr *multipart.Reader }

func (f multipartForm) Next() (service.Part, error) {
	p, err := f.mr.NextPart()
	if err != nil {
		return service.Part{}, formError(err)
	}
	return service.Part{Field: p.FormName(), FileName: p.FileName(), Body: formReader{p}}, nil
}

type formReader struct{ r io.Reader }

func (f formReader) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	return n, formError(err)
}

func formError(err error) error {
	var tooLarge *http.MaxBytesError
	switch {
	// Only a bare io.EOF ends a part or the form: NextPart wraps io.EOF
	// when the body stops before the closing delimiter, which is a cut-off
	// body, not the end of the form.
	case err == nil || err == io.EOF:
		return err
	case errors.As(err, &tooLarge):
		return model.Errorf(model.TooLarge, "The upload is larger than the limit.")
	}
	return model.Errorf(model.Invalid, "The multipart body is malformed or was cut off: %s.", err.Error())
}

// handleKeys answers GET /api/v1/keys: the public keys that sign update
// answers, as a JWK Set, the current key first.
func handleKeys(keys []httpsig.Key, log *slog.Logger) http.HandlerFunc {
	set, err := httpsig.JWKSet(keys)
	return func(w http.ResponseWriter, r *http.Request) {
		if err != nil {
			fail(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, json.RawMessage(set))
	}
}
