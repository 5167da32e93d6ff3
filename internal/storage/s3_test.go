package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/s3test"
)

func TestMain(m *testing.M) { os.Exit(s3test.Main(m)) }

// newTestS3 returns an S3 on a fresh bucket of the test gateway, under
// prefix, whose requests rec records.
func newTestS3(tb testing.TB, bucket, prefix string, rec *recorder) *S3 {
	tb.Helper()
	env := s3test.Env(tb)
	var transport http.RoundTripper
	if rec != nil {
		transport = rec
	}
	s, err := newS3(context.Background(), "s3://"+bucket+"/"+prefix, func(k string) string { return env[k] }, transport)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// recorder is a transport that records the store requests and how many
// body bytes each response delivered.
type recorder struct {
	mu   sync.Mutex
	reqs []*recorded
}

type recorded struct {
	method, rawQuery, rangeHeader string
	status                        int
	bodyBytes                     int64
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	rec := &recorded{method: req.Method, rawQuery: req.URL.RawQuery, rangeHeader: req.Header.Get("Range"), status: resp.StatusCode}
	r.mu.Lock()
	r.reqs = append(r.reqs, rec)
	r.mu.Unlock()
	resp.Body = &countingBody{ReadCloser: resp.Body, r: r, rec: rec}
	return resp, nil
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = nil
}

// gets returns the object GETs (not listings) and the bytes they delivered.
func (r *recorder) gets() (ranges []string, bytes int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, q := range r.reqs {
		if q.method == http.MethodGet && q.rawQuery == "" {
			ranges = append(ranges, q.rangeHeader)
			bytes += q.bodyBytes
		}
	}
	return ranges, bytes
}

func (r *recorder) count(method, queryPart string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, q := range r.reqs {
		if q.method == method && strings.Contains(q.rawQuery, queryPart) {
			n++
		}
	}
	return n
}

type countingBody struct {
	io.ReadCloser
	r   *recorder
	rec *recorded
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.r.mu.Lock()
	b.rec.bodyBytes += int64(n)
	b.r.mu.Unlock()
	return n, err
}

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func wantObjects(tb testing.TB, bucket string, want ...string) {
	tb.Helper()
	slices.Sort(want)
	if got := s3test.Objects(tb, bucket, ""); !slices.Equal(got, want) {
		tb.Errorf("objects = %v, want %v", got, want)
	}
}

func wantNoUploads(tb testing.TB, bucket string) {
	tb.Helper()
	if got := s3test.Uploads(tb, bucket, ""); len(got) != 0 {
		tb.Errorf("incomplete multipart uploads = %v, want none", got)
	}
}

func TestS3_StagePublishOpenRemove(t *testing.T) {
	ctx := context.Background()
	bucket := s3test.Bucket(t)
	s := newTestS3(t, bucket, "builds/v1", nil)
	staged, n, err := s.Stage(ctx, strings.NewReader("hello"))
	if err != nil || n != 5 {
		t.Fatalf("Stage = (%q, %d, %v), want 5 bytes", staged, n, err)
	}
	wantObjects(t, bucket, "builds/v1/.staging/"+staged)
	if _, _, err := s.Open(ctx, ".staging/"+staged); model.ErrorCode(err) != model.NotFound {
		t.Fatalf("a staged object is reachable by key: %v", err)
	}
	if err := s.Publish(ctx, staged, "1_0/app.apk"); err != nil {
		t.Fatal(err)
	}
	wantObjects(t, bucket, "builds/v1/1_0/app.apk")
	f, info, err := s.Open(ctx, "1_0/app.apk")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	f.Close()
	if err != nil || string(b) != "hello" || info.Size() != 5 || info.Name() != "app.apk" || info.IsDir() {
		t.Errorf("read %q, %v; info %s %d", b, err, info.Name(), info.Size())
	}
	if d := time.Since(info.ModTime()); d < -time.Minute || d > time.Minute {
		t.Errorf("ModTime %v is not about now", info.ModTime())
	}
	if _, _, err := s.Open(ctx, "1_0/missing.apk"); model.ErrorCode(err) != model.NotFound {
		t.Errorf("Open of a missing key: %v, want NotFound", err)
	}
	if _, _, err := s.Open(ctx, "1_0"); model.ErrorCode(err) != model.NotFound {
		t.Errorf("Open of a 'directory': %v, want NotFound", err)
	}
	if err := s.Remove(ctx, "1_0/app.apk"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "1_0/app.apk"); err != nil {
		t.Errorf("removing a missing object: %v", err)
	}
	if _, _, err := s.Open(ctx, "1_0/app.apk"); model.ErrorCode(err) != model.NotFound {
		t.Errorf("Open after Remove: %v, want NotFound", err)
	}
	wantObjects(t, bucket)
	wantNoUploads(t, bucket)
}

func TestS3_EmptyAndNoPrefix(t *testing.T) {
	ctx := context.Background()
	bucket := s3test.Bucket(t)
	s := newTestS3(t, bucket, "", nil)
	staged, n, err := s.Stage(ctx, strings.NewReader(""))
	if err != nil || n != 0 {
		t.Fatalf("Stage of nothing = (%q, %d, %v)", staged, n, err)
	}
	if err := s.Publish(ctx, staged, "arm64/1_0/empty.apk"); err != nil {
		t.Fatal(err)
	}
	wantObjects(t, bucket, "arm64/1_0/empty.apk")
	f, info, err := s.Open(ctx, "arm64/1_0/empty.apk")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if b, err := io.ReadAll(f); err != nil || len(b) != 0 || info.Size() != 0 {
		t.Errorf("read %q, %v, size %d", b, err, info.Size())
	}
}

// TestS3_ServeContent serves an object of two parts through
// http.ServeContent, as the download handler does, and checks that ranges
// are answered from ranged GETs that fetch about what they send.
func TestS3_ServeContent(t *testing.T) {
	ctx := context.Background()
	bucket := s3test.Bucket(t)
	rec := &recorder{}
	s := newTestS3(t, bucket, "p", rec)
	data := randomBytes(20<<20 + 12345) // two parts
	staged, n, err := s.Stage(ctx, bytes.NewReader(data))
	if err != nil || n != int64(len(data)) {
		t.Fatalf("Stage = (%q, %d, %v)", staged, n, err)
	}
	if got := rec.count(http.MethodPut, "partNumber=2"); got != 1 {
		t.Errorf("%d PUTs of part 2, want 1: the upload is not multipart", got)
	}
	if err := s.Publish(ctx, staged, "2_0/big.apk"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, info, err := s.Open(r.Context(), strings.TrimPrefix(r.URL.Path, "/"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		defer f.Close()
		http.ServeContent(w, r, info.Name(), info.ModTime(), f)
	}))
	defer srv.Close()
	get := func(rangeHeader string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/2_0/big.apk", nil)
		if rangeHeader != "" {
			req.Header.Set("Range", rangeHeader)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	size := int64(len(data))

	rec.reset()
	resp, body := get("")
	if resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("full GET: %d, %d bytes, equal %v", resp.StatusCode, len(body), bytes.Equal(body, data))
	}
	ranges, fetched := rec.gets()
	if fetched != size {
		t.Errorf("full GET fetched %d bytes from the store, want %d", fetched, size)
	}
	t.Logf("full GET of %d bytes: %d ranged GETs", size, len(ranges))

	for _, tc := range []struct {
		header     string
		first, end int64 // the bytes [first, end) are expected
		maxFetch   int64
	}{
		{"bytes=1000-1999", 1000, 2000, 1000},
		{"bytes=0-0", 0, 1, 1},
		{"bytes=-100", size - 100, size, 100},
		{"bytes=17000000-", 17000000, size, size - 17000000},
		{"bytes=5000000-9999999", 5000000, 10000000, 2*5000000 + 32<<10},
	} {
		rec.reset()
		resp, body := get(tc.header)
		wantRange := fmt.Sprintf("bytes %d-%d/%d", tc.first, tc.end-1, size)
		if resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Range") != wantRange || !bytes.Equal(body, data[tc.first:tc.end]) {
			t.Errorf("%s: %d %q, %d bytes, want 206 %q", tc.header, resp.StatusCode, resp.Header.Get("Content-Range"), len(body), wantRange)
			continue
		}
		ranges, fetched := rec.gets()
		if fetched < tc.end-tc.first || fetched > tc.maxFetch {
			t.Errorf("%s: fetched %d bytes from the store in %v, want %d to %d", tc.header, fetched, ranges, tc.end-tc.first, tc.maxFetch)
		}
		if len(ranges) == 0 || !strings.HasPrefix(ranges[0], fmt.Sprintf("bytes=%d-", tc.first)) {
			t.Errorf("%s: store GETs %v do not start at byte %d", tc.header, ranges, tc.first)
		}
	}

	// Several ranges: a multipart/byteranges answer.
	resp, body = get("bytes=0-9,3000000-3000009")
	if resp.StatusCode != http.StatusPartialContent || !strings.HasPrefix(resp.Header.Get("Content-Type"), "multipart/byteranges") {
		t.Fatalf("two ranges: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	_, params, _ := strings.Cut(resp.Header.Get("Content-Type"), "boundary=")
	mr := multipart.NewReader(bytes.NewReader(body), params)
	for _, want := range [][]byte{data[0:10], data[3000000:3000010]} {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(p)
		if !bytes.Equal(got, want) {
			t.Errorf("a part of two ranges = %x, want %x", got, want)
		}
	}

	// HEAD reads nothing.
	rec.reset()
	req, _ := http.NewRequest(http.MethodHead, srv.URL+"/2_0/big.apk", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 || resp.ContentLength != size {
		t.Errorf("HEAD: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if ranges, _ := rec.gets(); len(ranges) != 0 {
		t.Errorf("HEAD made object GETs: %v", ranges)
	}
}

// TestS3_ReaderSeeks reads at scattered offsets.
func TestS3_ReaderSeeks(t *testing.T) {
	ctx := context.Background()
	s := newTestS3(t, s3test.Bucket(t), "", nil)
	data := randomBytes(300 << 10)
	staged, _, err := s.Stage(ctx, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(ctx, staged, "1/x.bin"); err != nil {
		t.Fatal(err)
	}
	f, _, err := s.Open(ctx, "1/x.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, off := range []int64{0, 200000, 5, 299000, 100} {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 700)
		n, err := io.ReadFull(f, buf)
		want := data[off:min(off+700, int64(len(data)))]
		if !bytes.Equal(buf[:n], want) || (err != nil && n != len(want)) {
			t.Errorf("at %d: read %d bytes, %v", off, n, err)
		}
	}
	if end, err := f.Seek(0, io.SeekEnd); err != nil || end != int64(len(data)) {
		t.Errorf("Seek(0, End) = %d, %v", end, err)
	}
	if n, err := f.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Errorf("Read at the end = %d, %v; want EOF", n, err)
	}
	if _, err := f.Seek(-1, io.SeekStart); err == nil {
		t.Error("Seek to -1 succeeded")
	}
}

// TestS3_ReplacedDuringRead: a download whose object is replaced midway
// fails instead of mixing two files.
func TestS3_ReplacedDuringRead(t *testing.T) {
	ctx := context.Background()
	s := newTestS3(t, s3test.Bucket(t), "", nil)
	publish := func(content string) {
		t.Helper()
		staged, _, err := s.Stage(ctx, strings.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Publish(ctx, staged, "1/x.apk"); err != nil {
			t.Fatal(err)
		}
	}
	publish(strings.Repeat("a", 1000))
	f, _, err := s.Open(ctx, "1/x.apk")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.ReadFull(f, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	publish(strings.Repeat("b", 1000))
	rest, err := io.ReadAll(f)
	if err == nil || strings.Contains(string(rest), "b") {
		t.Errorf("reading on after a replacement: %d bytes, %v; want an error", len(rest), err)
	}
	t.Logf("reading on after a replacement: %v", err)
}

// failingReader yields n bytes, then fails with err.
func failingReader(n int64, err error) io.Reader {
	return io.MultiReader(io.LimitReader(zeros{}, n), errReader{err})
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// TestS3_StageFailureLeavesNothing fails uploads after a first part was
// stored: no object and no incomplete multipart upload remains, and the
// reader's error comes back as it was.
func TestS3_StageFailureLeavesNothing(t *testing.T) {
	bucket := s3test.Bucket(t)
	rec := &recorder{}
	s := newTestS3(t, bucket, "p", rec)
	boom := errors.New("boom")
	_, _, err := s.Stage(context.Background(), failingReader(17<<20, boom))
	if !errors.Is(err, boom) {
		t.Fatalf("Stage err = %v, want %v", err, boom)
	}
	if rec.count(http.MethodPost, "uploads") != 1 || rec.count(http.MethodPut, "partNumber=1") != 1 {
		t.Errorf("no multipart upload was started and a part stored: %d starts, %d part PUTs",
			rec.count(http.MethodPost, "uploads"), rec.count(http.MethodPut, "partNumber=1"))
	}
	if rec.count(http.MethodDelete, "uploadId=") == 0 {
		t.Error("the multipart upload was not aborted")
	}
	wantObjects(t, bucket)
	wantNoUploads(t, bucket)

	tooLarge := model.Errorf(model.TooLarge, "too large")
	if _, _, err := s.Stage(context.Background(), failingReader(16<<20+1, tooLarge)); model.ErrorCode(err) != model.TooLarge {
		t.Errorf("Stage err = %v, want TooLarge", err)
	}

	// A cancelled request, mid-part and mid-upload.
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	go func() {
		pw.Write(make([]byte, 20<<20))
		cancel()
		pw.Write(make([]byte, 1<<20))
		pw.Close()
	}()
	if _, _, err := s.Stage(ctx, pr); !errors.Is(err, context.Canceled) {
		t.Errorf("Stage on a cancelled context: err = %v", err)
	}
	pr.Close()
	wantObjects(t, bucket)
	wantNoUploads(t, bucket)
	if len(s.active) != 0 {
		t.Errorf("failed stages still marked active: %v", s.active)
	}
}

func TestS3_Discard(t *testing.T) {
	ctx := context.Background()
	bucket := s3test.Bucket(t)
	s := newTestS3(t, bucket, "p", nil)
	staged, _, err := s.Stage(ctx, strings.NewReader("discard me"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Discard(ctx, staged); err != nil {
		t.Fatal(err)
	}
	if err := s.Discard(ctx, staged); err != nil {
		t.Errorf("discarding twice: %v", err)
	}
	for _, bad := range []string{"", "../x", "..", "x", "zz-zz", "ab-", "-ab", "ab-cd/ef", "AB-CD"} {
		if err := s.Discard(ctx, bad); err == nil {
			t.Errorf("Discard(%q) succeeded", bad)
		}
	}
	if err := s.Publish(ctx, staged, "1/x.apk"); err == nil {
		t.Error("publishing a discarded file succeeded")
	}
	wantObjects(t, bucket)
	wantNoUploads(t, bucket)
}

// TestS3_CleanStaging shares a bucket between two servers: each removes its
// own leftovers, keeps uploads in progress, and removes another's only once
// they are stale.
func TestS3_CleanStaging(t *testing.T) {
	ctx := context.Background()
	bucket := s3test.Bucket(t)
	a := newTestS3(t, bucket, "p", nil)
	b := newTestS3(t, bucket, "p", nil)
	if a.instance == b.instance {
		t.Fatal("two servers share an instance name")
	}
	client := s3test.Client(t)
	core := minio.Core{Client: client}
	put := func(name string) {
		t.Helper()
		if _, err := client.PutObject(ctx, bucket, name, strings.NewReader("x"), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	startUpload := func(name string) {
		t.Helper()
		if _, err := core.NewMultipartUpload(ctx, bucket, name, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pending, _, err := a.Stage(ctx, strings.NewReader("awaiting publish")) // a's, in use
	if err != nil {
		t.Fatal(err)
	}
	others, _, err := b.Stage(ctx, strings.NewReader("b's upload")) // b's, in use
	if err != nil {
		t.Fatal(err)
	}
	put("p/.staging/" + a.instance + "-0a")         // a's leftover
	startUpload("p/.staging/" + a.instance + "-0b") // a's leftover upload
	startUpload("p/.staging/" + b.instance + "-0c") // b's upload in progress
	put("p/1_0/kept.apk")                           // a published file
	put("elsewhere/.staging/" + a.instance + "-0d") // outside the prefix

	n, err := a.CleanStaging(ctx)
	if err != nil || n != 2 {
		t.Fatalf("CleanStaging = (%d, %v), want 2", n, err)
	}
	wantObjects(t, bucket, "elsewhere/.staging/"+a.instance+"-0d", "p/.staging/"+pending,
		"p/.staging/"+others, "p/1_0/kept.apk")
	if got := s3test.Uploads(t, bucket, ""); !slices.Equal(got, []string{"p/.staging/" + b.instance + "-0c"}) {
		t.Errorf("uploads = %v, want b's only", got)
	}

	// An upload in progress on a, a part stored, is a's and stays.
	pr, pw := io.Pipe()
	type staged struct {
		id  string
		err error
	}
	done := make(chan staged, 1)
	go func() {
		id, _, err := a.Stage(ctx, pr)
		done <- staged{id, err}
	}()
	pw.Write(make([]byte, 17<<20)) // returns once part 1 is read
	for deadline := time.Now().Add(10 * time.Second); len(s3test.Uploads(t, bucket, "p/.staging/"+a.instance)) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the upload in progress does not show")
		}
	}
	if n, err := a.CleanStaging(ctx); err != nil || n != 0 {
		t.Fatalf("CleanStaging during an upload = (%d, %v), want 0", n, err)
	}
	pw.Close()
	inProgress := <-done
	if inProgress.err != nil {
		t.Fatalf("the upload in progress failed: %v", inProgress.err)
	}
	if err := a.Discard(ctx, inProgress.id); err != nil {
		t.Fatal(err)
	}

	// A day later, b's are leftovers of a server that died.
	defer func(d time.Duration) { s3StaleAfter = d }(s3StaleAfter)
	s3StaleAfter = -time.Minute
	n, err = a.CleanStaging(ctx)
	if err != nil || n != 2 {
		t.Fatalf("CleanStaging of stale files = (%d, %v), want 2", n, err)
	}
	wantObjects(t, bucket, "elsewhere/.staging/"+a.instance+"-0d", "p/.staging/"+pending, "p/1_0/kept.apk")
	wantNoUploads(t, bucket)

	// The upload in progress completes.
	if err := a.Publish(ctx, pending, "1_1/x.apk"); err != nil {
		t.Fatal(err)
	}
	wantObjects(t, bucket, "elsewhere/.staging/"+a.instance+"-0d", "p/1_0/kept.apk", "p/1_1/x.apk")
}

func TestS3_RejectsEscapingKeys(t *testing.T) {
	ctx := context.Background()
	bucket := s3test.Bucket(t)
	s := newTestS3(t, bucket, "p", nil)
	staged, _, err := s.Stage(ctx, strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"../escape.apk", "/escape.apk", ".staging/x", "a/../../b", "", "a//b", `a\b`, "a/"} {
		if err := s.Publish(ctx, staged, key); err == nil {
			t.Errorf("Publish to %q succeeded", key)
		}
		if _, _, err := s.Open(ctx, key); model.ErrorCode(err) != model.NotFound {
			t.Errorf("Open(%q) = %v, want NotFound", key, err)
		}
		if err := s.Remove(ctx, key); err == nil {
			t.Errorf("Remove(%q) succeeded", key)
		}
		if _, err := s.PresignedURL(ctx, key, time.Minute); model.ErrorCode(err) != model.NotFound {
			t.Errorf("PresignedURL(%q) = %v, want NotFound", key, err)
		}
	}
	if err := s.Discard(ctx, staged); err != nil {
		t.Fatal(err)
	}
	wantObjects(t, bucket)
}

func TestS3_PresignedURL(t *testing.T) {
	ctx := context.Background()
	bucket := s3test.Bucket(t)
	s := newTestS3(t, bucket, "p", nil)
	data := randomBytes(100000)
	staged, _, err := s.Stage(ctx, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(ctx, staged, "2_0/wemesse.apk"); err != nil {
		t.Fatal(err)
	}
	u, err := s.PresignedURL(ctx, "2_0/wemesse.apk", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("GET presigned: %d, %d bytes", resp.StatusCode, len(body))
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.Contains(cd, "wemesse.apk") {
		t.Errorf("Content-Disposition = %q", cd)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/vnd.android.package-archive" {
		t.Errorf("Content-Type = %q", ct)
	}
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Range", "bytes=10-19")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, data[10:20]) {
		t.Errorf("ranged GET presigned: %d %x", resp.StatusCode, body)
	}
	if _, err := s.PresignedURL(ctx, "2_0/missing.apk", time.Minute); model.ErrorCode(err) != model.NotFound {
		t.Errorf("PresignedURL of a missing key: %v, want NotFound", err)
	}
}

func TestNewS3_Errors(t *testing.T) {
	ctx := context.Background()
	env := s3test.Env(t)
	getenv := func(over map[string]string) func(string) string {
		return func(k string) string {
			if v, ok := over[k]; ok {
				return v
			}
			return env[k]
		}
	}
	bucket := s3test.Bucket(t)
	for _, tc := range []struct {
		url  string
		over map[string]string
		want string
	}{
		{"s3://no-such-bucket-here/p", nil, `bucket "no-such-bucket-here" does not exist`},
		{"s3://" + bucket + "/../x", nil, "invalid prefix"},
		{"s3://" + bucket + "/.staging", nil, "invalid prefix"},
		{"s3://" + bucket + "/a//b", nil, "invalid prefix"},
		{"http://" + bucket, nil, "not an s3://bucket/prefix URL"},
		{"s3:///p", nil, "not an s3://bucket/prefix URL"},
		{"s3://" + bucket, map[string]string{"AWS_ACCESS_KEY_ID": ""}, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"},
		{"s3://" + bucket, map[string]string{"AWS_ENDPOINT_URL": "ftp://x"}, "AWS_ENDPOINT_URL must look like"},
		{"s3://" + bucket, map[string]string{"AWS_ENDPOINT_URL": env["AWS_ENDPOINT_URL"] + "/path"}, "AWS_ENDPOINT_URL must look like"},
		{"s3://" + bucket, map[string]string{"AWS_SECRET_ACCESS_KEY": "wrong"}, "check bucket"},
	} {
		_, err := NewS3(ctx, tc.url, getenv(tc.over))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewS3(%q, %v) = %v, want an error with %q", tc.url, tc.over, err, tc.want)
		}
	}
	// AWS_ENDPOINT_URL_S3 wins over AWS_ENDPOINT_URL; a trailing slash is fine.
	s, err := NewS3(ctx, "s3://"+bucket+"/", getenv(map[string]string{
		"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ENDPOINT_URL_S3": env["AWS_ENDPOINT_URL"] + "/",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if s.prefix != "" || s.bucket != bucket {
		t.Errorf("bucket %q, prefix %q", s.bucket, s.prefix)
	}
}
