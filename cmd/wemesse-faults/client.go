package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/wemesse/server/internal/proctest"
)

// requestTimeout bounds a request of the load; the verifications demand far
// less.
const requestTimeout = 10 * time.Second

// newHTTPClient returns a keep-alive client with no overall timeout: each
// request carries its own deadline.
func newHTTPClient() *http.Client { return proctest.NewClient(128) }

// response is the outcome of one request.
type response struct {
	status     int // 0: no response (err says why)
	header     http.Header
	body       []byte
	err        error
	start, end time.Time
	variant    string // which variant of a malformed request this was
}

func (r response) elapsed() time.Duration { return r.end.Sub(r.start) }

// describe is a short text for reports: the status and error message, or
// the transport error.
func (r response) describe() string {
	if r.status == 0 {
		return fmt.Sprintf("no response (%v)", r.err)
	}
	if r.status < 400 {
		return strconv.Itoa(r.status)
	}
	msg, _ := jsonError(r.header.Get("Content-Type"), r.body)
	if msg == "" {
		msg = string(bytes.TrimSpace(r.body[:min(len(r.body), 120)]))
	}
	return fmt.Sprintf("%d %q", r.status, msg)
}

// maxBody bounds a response body the tool reads into memory.
const maxBody = 8 << 20

// do sends one request to 127.0.0.1 and reads the whole response, within
// timeout. secret, when set, goes in the signature header.
func do(ctx context.Context, c *http.Client, method, rawURL, secret, contentType string, body []byte, timeout time.Duration) (r response) {
	r.start = time.Now()
	defer func() { r.end = time.Now() }()
	if err := proctest.LoopbackOnly(rawURL); err != nil {
		r.err = err
		return r
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
	if err != nil {
		r.err = err
		return r
	}
	if secret != "" {
		req.Header.Set("signature", secret)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.Do(req)
	if err != nil {
		r.err = err
		return r
	}
	defer resp.Body.Close()
	r.status, r.header = resp.StatusCode, resp.Header
	r.body, r.err = io.ReadAll(io.LimitReader(resp.Body, maxBody))
	return r
}

// jsonError returns the message of a body {"error": "..."} sent as JSON,
// and whether the body is exactly that.
func jsonError(contentType string, body []byte) (string, bool) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" {
		return "", false
	}
	var v map[string]any
	if json.Unmarshal(body, &v) != nil || len(v) != 1 {
		return "", false
	}
	msg, ok := v["error"].(string)
	return msg, ok && msg != ""
}

// releaseJSON is a release as the API returns it.
type releaseJSON struct {
	ID        int64  `json:"Id"`
	Checksum  string `json:"Checksum"`
	Name      string `json:"Name"`
	Version   string `json:"Version"`
	URI       string `json:"URI"`
	SHA256    string `json:"SHA256"`
	TargetABI string `json:"TargetABI"`
	Uploads   int64  `json:"Uploads"`
	Downloads int64  `json:"Downloads"`
}

// userJSON is a device as the API returns it.
type userJSON struct {
	ID         int64  `json:"ID"`
	AppVersion string `json:"AppVersion"`
	DeviceMac  string `json:"DeviceMac"`
	SessionID  int64  `json:"SessionID"`
	TargetABI  string `json:"TargetABI"`
}

// multipartBody builds an upload form in memory.
func multipartBody(fields [][2]string, fileName string, file []byte) (contentType string, body []byte) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range fields {
		mw.WriteField(f[0], f[1])
	}
	if file != nil {
		w, _ := mw.CreateFormFile("tmpFile", fileName)
		w.Write(file)
	}
	mw.Close()
	return mw.FormDataContentType(), buf.Bytes()
}

// upload posts a build held in memory; abi may be empty.
func upload(ctx context.Context, c *http.Client, base, secret, version, abi, name string, file []byte) (response, releaseJSON) {
	fields := [][2]string{{"appVersion", version}, {"appNotes", "wemesse-faults"}}
	if abi != "" {
		fields = append(fields, [2]string{"targetABI", abi})
	}
	ct, body := multipartBody(fields, name, file)
	r := do(ctx, c, "POST", base+"/api/v1/updates", secret, ct, body, time.Minute)
	var rel releaseJSON
	if r.status == http.StatusCreated {
		if err := json.Unmarshal(r.body, &rel); err != nil {
			r.err = fmt.Errorf("decode release: %w", err)
		}
	}
	return r, rel
}

// getJSON GETs a URL and decodes a 200 body into v.
func getJSON(ctx context.Context, c *http.Client, rawURL, secret string, v any) error {
	r := do(ctx, c, "GET", rawURL, secret, "", nil, 30*time.Second)
	if r.status != http.StatusOK {
		return fmt.Errorf("GET %s: %s", rawURL, r.describe())
	}
	return json.Unmarshal(r.body, v)
}

// download GETs a file and returns its status, size and MD5, streaming.
func download(ctx context.Context, c *http.Client, rawURL string) (status int, size int64, sum string, err error) {
	if err := proctest.LoopbackOnly(rawURL); err != nil {
		return 0, 0, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", rawURL, nil)
	if err != nil {
		return 0, 0, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, "", err
	}
	defer resp.Body.Close()
	h := md5.New()
	size, err = io.Copy(h, resp.Body)
	return resp.StatusCode, size, hex.EncodeToString(h.Sum(nil)), err
}

// fileMD5 returns the size and MD5 of a file on disk.
func fileMD5(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := md5.New()
	n, err := io.Copy(h, f)
	return n, hex.EncodeToString(h.Sum(nil)), err
}

// newRand returns a deterministic generator for seed.
func newRand(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	copy(s[8:], "wemesse-faults")
	return rand.NewChaCha8(s)
}

// randomData returns n pseudo-random bytes for seed and their MD5.
func randomData(seed uint64, n int) ([]byte, string) {
	b := make([]byte, n)
	newRand(seed).Read(b)
	sum := md5.Sum(b)
	return b, hex.EncodeToString(sum[:])
}

// paceDelay is how long to wait after sending sent bytes in elapsed time to
// keep to rate bytes per second; zero or less when behind.
func paceDelay(sent int64, rate float64, elapsed time.Duration) time.Duration {
	if rate <= 0 {
		return 0
	}
	return time.Duration(float64(sent)/rate*float64(time.Second)) - elapsed
}

// streamUpload is an upload of a large pseudo-random file, generated and
// sent at a set rate so that it can be interrupted mid-way.
type streamUpload struct {
	version, name string
	size          int64
	sent          atomic.Int64
	sum           atomic.Pointer[string] // MD5 of the whole file, once every byte was read
	done          chan struct{}          // closed when resp is set
	resp          response
}

// startStreamUpload posts version with a file of size bytes at rate bytes
// a second, chunked.
func startStreamUpload(ctx context.Context, c *http.Client, base, secret, version, name string, size int64, rate float64, seed uint64) *streamUpload {
	u := &streamUpload{version: version, name: name, size: size, done: make(chan struct{})}
	file := &pacedFile{ctx: ctx, u: u, rate: rate, rng: newRand(seed), h: md5.New()}
	go func() {
		defer close(u.done)
		r := response{start: time.Now()}
		req, err := proctest.UploadRequest(ctx, base, secret, []proctest.Field{{Name: "appVersion", Value: version}}, name, file)
		if err == nil {
			var resp *http.Response
			if resp, err = c.Do(req); err == nil {
				r.status, r.header = resp.StatusCode, resp.Header
				r.body, err = io.ReadAll(io.LimitReader(resp.Body, maxBody))
				resp.Body.Close()
			}
		}
		r.err, r.end = err, time.Now()
		u.resp = r
	}()
	return u
}

// pacedFile is the file of a streamUpload: pseudo-random bytes, read no
// faster than rate.
type pacedFile struct {
	ctx   context.Context
	u     *streamUpload
	rate  float64
	rng   *rand.ChaCha8
	h     hash.Hash
	begin time.Time
}

func (f *pacedFile) Read(p []byte) (int, error) {
	sent := f.u.sent.Load()
	if sent == 0 {
		f.begin = time.Now()
	}
	if sent == f.u.size {
		sum := hex.EncodeToString(f.h.Sum(nil))
		f.u.sum.Store(&sum)
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), 64<<10, f.u.size-sent))
	f.rng.Read(p[:n])
	f.h.Write(p[:n])
	sent += int64(n)
	f.u.sent.Store(sent)
	if d := paceDelay(sent, f.rate, time.Since(f.begin)); d > 0 {
		select {
		case <-time.After(d):
		case <-f.ctx.Done():
			return n, f.ctx.Err()
		}
	}
	return n, nil
}

// wait waits at most d for the response.
func (u *streamUpload) wait(d time.Duration) (response, bool) {
	select {
	case <-u.done:
		return u.resp, true
	case <-time.After(d):
		return response{}, false
	}
}

// md5 is the MD5 of the whole file; empty unless every byte was read.
func (u *streamUpload) md5() string {
	if sum := u.sum.Load(); sum != nil {
		return *sum
	}
	return ""
}

// waitStaged waits until a file of at least minBytes exists in dir, and
// returns its name and size. It gives up when timeout passes or the upload
// ends.
func waitStaged(ctx context.Context, dir string, minBytes int64, timeout time.Duration, u *streamUpload) (string, int64, error) {
	deadline := time.Now().Add(timeout)
	for {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if info, err := e.Info(); err == nil && info.Mode().IsRegular() && info.Size() >= minBytes {
				return e.Name(), info.Size(), nil
			}
		}
		select {
		case <-u.done:
			return "", 0, fmt.Errorf("the upload ended before a staged file of %d bytes appeared: %s", minBytes, u.resp.describe())
		case <-ctx.Done():
			return "", 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return "", 0, fmt.Errorf("no staged file of %d bytes in %s within %s", minBytes, dir, timeout)
		}
	}
}

// dirEntries lists the names in dir; a missing dir is empty.
func dirEntries(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, err
}

// exists reports whether path exists.
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// mib formats bytes as MiB.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// releaseFile is where the server stores a universal release's file.
func releaseFile(uploadDir, version, name string) string {
	return filepath.Join(uploadDir, version, name)
}
