package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/wemesse/server/internal/proctest"
)

// The upload scenario's targets.
const (
	uploadMaxGrowthMB = 64  // server RSS growth during the upload
	uploadMinRatio    = 0.5 // server throughput / the discarding handler's
	uploadTimeout     = 15 * time.Minute
	uploadBlock       = 1 << 20 // the generated file repeats this many random bytes
)

// uploadScenario posts one large build, generated on the fly, to the
// server and to a handler that reads the same multipart body and discards
// it.
type uploadScenario struct {
	size int64
}

func (*uploadScenario) Name() string { return "upload" }

func (*uploadScenario) Summary() string {
	return "POST /api/v1/updates of a 1 GiB build: server RSS growth, throughput vs a handler discarding the same body"
}

func (u *uploadScenario) SetFlags(fs *flag.FlagSet) {
	rangeVar(fs, &u.size, "upload-bytes", 1<<30, 1, 64<<30, "size of the uploaded file")
}

func (u *uploadScenario) Run(ctx context.Context, b *bench, rep *report) error {
	rep.setupf("upload: one POST /api/v1/updates (admin secret) of a %s APK (the manifest of testdata/apk/good.apk and one stored asset, a random 1 MiB block repeated, signed with APK Signature Scheme v2 by a key made for the run; generated while sending, never held whole) as multipart/form-data with appVersion and appNotes; the server hashes it, writes it with fsync into its upload dir, a temp dir on the same disk, and verifies it as Android would (WEMESSE_VERIFY_APK's default) before it answers; the reference is a net/http handler in the bench process that reads every part of the same body into io.Discard; reference first, then the server",
		fmtSize(u.size))
	return b.forEachDB(func(kind string) error { return u.runDB(ctx, b, rep, kind) })
}

func (u *uploadScenario) runDB(ctx context.Context, b *bench, rep *report, kind string) error {
	var env map[string]string
	if u.size > 1<<30 { // the server's default limit
		env = map[string]string{"WEMESSE_MAX_UPLOAD_BYTES": strconv.FormatInt(u.size, 10)}
	}
	r, err := b.newRig(ctx, rep, kind, "upload", env)
	if err != nil {
		return err
	}
	defer r.close()
	body, err := newMultipartBody(benchVersion, u.size)
	if err != nil {
		return err
	}
	ref, err := startStatic(http.HandlerFunc(discardMultipart))
	if err != nil {
		return err
	}
	defer ref.close()

	b.logf("upload on %s: %s to the discarding handler", kind, fmtSize(u.size))
	var refTime time.Duration
	refCPU, err := measureCPU(nil, func() (err error) {
		refTime, err = body.post(ctx, ref.URL+"/", "", http.StatusCreated)
		return err
	})
	if err != nil {
		return fmt.Errorf("reference: %w", err)
	}
	if err := warmSecret(ctx, b, r.srv, r.admin); err != nil {
		return err
	}
	b.logf("upload on %s: %s to the server", kind, fmtSize(u.size))
	pt, err := trackPeak(ctx, r.srv)
	if err != nil {
		return err
	}
	before := pt.before
	var srvTime time.Duration
	srvCPU, err := measureCPU(r.srv.CPUTime, func() (err error) {
		srvTime, err = body.post(ctx, r.srv.URL+"/api/v1/updates", r.admin, http.StatusCreated)
		return err
	})
	peak := pt.done()
	if err != nil {
		return err
	}
	if err := findFileOfSize(filepath.Join(r.fx.dir, "uploads"), u.size); err != nil {
		return err
	}
	growth := kbToMB(peak - before.RSSKB)
	srvRate, refRate := float64(u.size)/srvTime.Seconds(), float64(u.size)/refTime.Seconds()
	rep.result(resultRow{
		scenario:  "upload, " + fmtSize(u.size),
		db:        kind,
		measured:  fmt.Sprintf("%s: %s", fmtDuration(srvTime), fmtMiBps(srvRate)),
		p50:       "-",
		p99:       "-",
		rss:       fmt.Sprintf("+%s (%s → %s)", fmtMB(growth), fmtMB(kbToMB(before.RSSKB)), fmtMB(kbToMB(peak))),
		reference: fmt.Sprintf("%s: %s: net/http handler, multipart body to io.Discard", fmtDuration(refTime), fmtMiBps(refRate)),
		ratio:     fmtRatio(srvRate / refRate),
		checks: []rowCheck{
			{label: "ratio", target: target{value: srvRate / refRate, op: ">=", limit: uploadMinRatio, format: fmtRatio}},
			{label: "RSS growth", target: target{value: growth, op: "<", limit: uploadMaxGrowthMB, format: fmtMB}},
		},
	})
	// The CPU each run took, and what it implies: however the server
	// spreads its work, the machine's cores cannot do it in less time.
	cores := runtime.NumCPU()
	used := srvCPU.side + srvCPU.bench
	floor := used / time.Duration(cores)
	rep.notef("upload on %s, CPU (user and system) for the %s: the reference run %.2f s (the bench process: client and discarding handler), cores idle %.0f %%; the server run %.2f s (server %.2f s, client %.2f s), cores idle %.0f %%. On %d cores the server run cannot take less than %.2f s: a ratio of at most %.2f.",
		kind, fmtSize(u.size), refCPU.bench.Seconds(), 100*refCPU.idleShare(), used.Seconds(), srvCPU.side.Seconds(), srvCPU.bench.Seconds(), 100*srvCPU.idleShare(), cores, floor.Seconds(), refTime.Seconds()/floor.Seconds())
	return nil
}

// discardMultipart reads every part of a multipart body into io.Discard
// with io.Copy's 32 KiB buffer, as the server's staging does, and answers
// 201.
func discardMultipart(w http.ResponseWriter, r *http.Request) {
	mr, err := r.MultipartReader()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	buf := make([]byte, 32<<10)
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{p}, buf); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write([]byte("{}\n"))
}

// multipartBody is an upload form whose file, a signed APK, is generated
// while it is sent: prefix, the APK, suffix.
type multipartBody struct {
	prefix, suffix []byte
	contentType    string
	apk            *apkFile
}

func newMultipartBody(version string, size int64) (*multipartBody, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if err := mw.WriteField("appVersion", version); err != nil {
		return nil, err
	}
	if err := mw.WriteField("appNotes", "wemesse-bench upload"); err != nil {
		return nil, err
	}
	if _, err := mw.CreateFormFile("tmpFile", "wemesse.apk"); err != nil {
		return nil, err
	}
	m := &multipartBody{prefix: bytes.Clone(buf.Bytes()), contentType: mw.FormDataContentType()}
	buf.Reset()
	if err := mw.Close(); err != nil {
		return nil, err
	}
	m.suffix = bytes.Clone(buf.Bytes())
	var err error
	m.apk, err = newAPKOfSize(size)
	return m, err
}

func (m *multipartBody) length() int64 {
	return int64(len(m.prefix)) + m.apk.size() + int64(len(m.suffix))
}

func (m *multipartBody) reader() io.Reader {
	return io.MultiReader(bytes.NewReader(m.prefix), m.apk.reader(), bytes.NewReader(m.suffix))
}

// post sends the body to url and returns the time until the whole answer,
// which must have status want, was read.
func (m *multipartBody) post(ctx context.Context, url, secret string, want int) (time.Duration, error) {
	if err := proctest.LoopbackOnly(url); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, uploadTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, m.reader())
	if err != nil {
		return 0, err
	}
	req.ContentLength = m.length()
	req.Header.Set("Content-Type", m.contentType)
	if secret != "" {
		req.Header.Set("signature", secret)
	}
	c := newClient()
	c.Timeout = uploadTimeout
	defer c.CloseIdleConnections()
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	elapsed := time.Since(start)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != want {
		return 0, fmt.Errorf("POST %s: status %d, want %d: %s", url, resp.StatusCode, want, b)
	}
	return elapsed, nil
}

// repeatReader yields block over and over, left bytes in all.
type repeatReader struct {
	block []byte
	off   int
	left  int64
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.block[r.off:])
		n += c
		r.off = (r.off + c) % len(r.block)
	}
	r.left -= int64(n)
	return n, nil
}

// findFileOfSize checks that the server stored a file of size under dir,
// outside its staging area.
func findFileOfSize(dir string, size int64) error {
	found := false
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".staging" {
			return filepath.SkipDir
		}
		if info, err := d.Info(); err == nil && info.Mode().IsRegular() && info.Size() == size {
			found = true
			return filepath.SkipAll
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("no file of %d bytes in the server's upload dir %s", size, dir)
	}
	return nil
}
