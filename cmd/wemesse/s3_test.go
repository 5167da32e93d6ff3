package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/s3test"
)

// s3Env returns the server settings for object storage in bucket under
// prefix, on the test gateway.
func s3Env(tb testing.TB, dsn, bucket, prefix string) map[string]string {
	tb.Helper()
	env := s3test.Env(tb)
	env["WEMESSE_DATABASE_URL"] = dsn
	env["WEMESSE_STORAGE_URL"] = "s3://" + bucket + "/" + prefix
	return env
}

// download GETs path with the given headers, not following redirects.
func download(tb testing.TB, s *server, path string, header ...string) (*http.Response, []byte) {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.base+path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := *s.client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp, b
}

// releaseDownloads lists the releases: version → Downloads.
func releaseDownloads(tb testing.TB, s *server, secret string) map[string]float64 {
	tb.Helper()
	code, body := get(tb, s, "/api/v1/updates", secret)
	if code != http.StatusOK {
		tb.Fatalf("list: %d %s", code, body)
	}
	var list []map[string]any
	if err := json.Unmarshal(body, &list); err != nil {
		tb.Fatal(err)
	}
	out := map[string]float64{}
	for _, r := range list {
		out[r["Version"].(string)] = r["Downloads"].(float64)
	}
	return out
}

// waitBucket waits until bucket holds exactly the objects want and no
// incomplete multipart upload: a failed request cleans up after its answer.
func waitBucket(tb testing.TB, bucket string, want ...string) {
	tb.Helper()
	slices.Sort(want)
	var objects, uploads []string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		objects, uploads = s3test.Objects(tb, bucket, ""), s3test.Uploads(tb, bucket, "")
		if slices.Equal(objects, want) && len(uploads) == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("bucket holds objects %v and uploads %v, want objects %v and no upload", objects, uploads, want)
		}
	}
}

// TestRun_objectStorage runs the server on object storage: uploads stream
// to the bucket, downloads serve ranges and ETags, failed uploads leave no
// object and no row, and redirect mode hands out presigned URLs.
func TestRun_objectStorage(t *testing.T) {
	s3test.Start(t) // skip both subtests at once when there is no gateway
	dbtest.Each(t, func(t *testing.T, dsn string) {
		const secret = "s3-test-secret"
		const maxUpload = 18 << 20
		bucket := s3test.Bucket(t)
		env := s3Env(t, dsn, bucket, "wemesse/builds")
		env["WEMESSE_SIGNATURE"] = secret
		env["WEMESSE_MAX_UPLOAD_BYTES"] = fmt.Sprint(maxUpload)
		unused := t.TempDir() + "/unused"
		env["WEMESSE_UPLOAD_DIR"] = unused // must stay untouched
		s := startServer(t, env)

		// An upload of two parts (16 MiB each) streams to the bucket.
		build := make([]byte, 17<<20+321)
		r := rand.New(rand.NewPCG(1, 2))
		for i := range build {
			build[i] = byte(r.Uint32())
		}
		if code, body := postUpload(context.Background(), s, secret, "2264_00", bytes.NewReader(build)); code != http.StatusCreated {
			t.Fatalf("upload: %d %s", code, body)
		}
		const key = "wemesse/builds/2264_00/wemesse.apk"
		waitBucket(t, bucket, key)

		// Full download, ETag and 304, ranges.
		resp, body := download(t, s, "/uploads/2264_00/wemesse.apk")
		etag := resp.Header.Get("ETag")
		if resp.StatusCode != 200 || !bytes.Equal(body, build) || etag == "" {
			t.Fatalf("download: %d, %d bytes, equal %v, ETag %q", resp.StatusCode, len(body), bytes.Equal(body, build), etag)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/vnd.android.package-archive" {
			t.Errorf("Content-Type = %q", ct)
		}
		if resp, _ := download(t, s, "/uploads/2264_00/wemesse.apk", "If-None-Match", etag); resp.StatusCode != http.StatusNotModified {
			t.Errorf("If-None-Match with the ETag: %d, want 304", resp.StatusCode)
		}
		resp, body = download(t, s, "/uploads/2264_00/wemesse.apk", "Range", "bytes=1000-1999")
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, build[1000:2000]) {
			t.Errorf("Range bytes=1000-1999: %d, %d bytes", resp.StatusCode, len(body))
		}
		resp, body = download(t, s, "/uploads/2264_00/wemesse.apk", "Range", "bytes=17000000-", "If-Range", etag)
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, build[17000000:]) {
			t.Errorf("resumed download: %d, %d bytes", resp.StatusCode, len(body))
		}
		if resp, _ := download(t, s, "/uploads/2264_00/missing.apk"); resp.StatusCode != http.StatusNotFound {
			t.Errorf("a missing file: %d, want 404", resp.StatusCode)
		}
		if resp, _ := download(t, s, "/uploads/.staging/x"); resp.StatusCode != http.StatusNotFound {
			t.Errorf("staging by key: %d, want 404", resp.StatusCode)
		}
		if got := releaseDownloads(t, s, secret)["2264_00"]; got != 2 {
			t.Errorf("Downloads = %v after a full GET and a resumed one, want 2", got)
		}

		// Failed uploads leave no object, no multipart upload and no row:
		// a duplicate version (409, after the whole file was staged), a file
		// over the limit (413, after a part was stored) and a client that
		// goes away mid-file.
		if code, body := postUpload(context.Background(), s, secret, "2264_00", bytes.NewReader(build[:5000])); code != http.StatusConflict {
			t.Errorf("duplicate upload: %d %s, want 409", code, body)
		}
		waitBucket(t, bucket, key)
		if code, body := postUpload(context.Background(), s, secret, "2265_00", bytes.NewReader(make([]byte, maxUpload+1))); code != http.StatusRequestEntityTooLarge {
			t.Errorf("upload over the limit: %d %s, want 413", code, body)
		}
		waitBucket(t, bucket, key)
		cutOffUpload(t, s, secret, "2266_00", 17<<20)
		waitBucket(t, bucket, key)
		if versions := releaseDownloads(t, s, secret); len(versions) != 1 {
			t.Errorf("releases after failed uploads = %v, want 2264_00 only", versions)
		}
		s.stop(t)
		waitBucket(t, bucket, key)

		// Redirect mode: a 302 to a presigned URL that serves the bytes, Range
		// included; a GET that starts a transfer counts.
		env["WEMESSE_STORAGE_REDIRECT"] = "true"
		s = startServer(t, env)
		resp, _ = download(t, s, "/uploads/2264_00/wemesse.apk")
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, env["AWS_ENDPOINT_URL"]+"/"+bucket+"/"+key+"?") {
			t.Fatalf("redirect mode: %d, Location %q", resp.StatusCode, loc)
		}
		u, _ := url.Parse(loc)
		if exp := u.Query().Get("X-Amz-Expires"); exp != "900" {
			t.Errorf("the presigned URL lives %ss, want 900", exp)
		}
		presigned, err := http.Get(loc)
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(presigned.Body)
		presigned.Body.Close()
		if presigned.StatusCode != 200 || !bytes.Equal(body, build) {
			t.Errorf("GET of the presigned URL: %d, %d bytes", presigned.StatusCode, len(body))
		}
		// A client that follows the redirect with its Range.
		req, _ := http.NewRequest(http.MethodGet, s.base+"/uploads/2264_00/wemesse.apk", nil)
		req.Header.Set("Range", "bytes=5-9")
		followed, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(followed.Body)
		followed.Body.Close()
		if followed.StatusCode != http.StatusPartialContent || !bytes.Equal(body, build[5:10]) {
			t.Errorf("followed redirect with Range: %d %x", followed.StatusCode, body)
		}
		head, _ := http.NewRequest(http.MethodHead, s.base+"/uploads/2264_00/wemesse.apk", nil)
		if resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(head); err != nil || resp.StatusCode != http.StatusFound {
			t.Errorf("HEAD in redirect mode: %v %v", resp, err)
		} else {
			resp.Body.Close()
		}
		if resp, body := download(t, s, "/uploads/2264_00/missing.apk"); resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), `"error"`) {
			t.Errorf("a missing file in redirect mode: %d %s, want a 404 from the server", resp.StatusCode, body)
		}
		// 2 before, +1 for the first redirect; the ranged one and HEAD do not count.
		if got := releaseDownloads(t, s, secret)["2264_00"]; got != 3 {
			t.Errorf("Downloads = %v in redirect mode, want 3", got)
		}

		// Purging a release removes its object.
		code, list := get(t, s, "/api/v1/updates", secret)
		var rels []struct{ Id int64 }
		if err := json.Unmarshal(list, &rels); code != 200 || err != nil || len(rels) != 1 {
			t.Fatalf("list: %d %s", code, list)
		}
		req, _ = http.NewRequest(http.MethodDelete, fmt.Sprintf("%s/api/v1/updates/%d?purge=true", s.base, rels[0].Id), nil)
		req.Header.Set("signature", secret)
		if resp, err := s.client.Do(req); err != nil || resp.StatusCode/100 != 2 {
			t.Fatalf("purge: %v %v", resp, err)
		} else {
			resp.Body.Close()
		}
		waitBucket(t, bucket)
		s.stop(t)
		if _, err := os.Stat(unused); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the upload directory was used: %v", err)
		}
		if log := s.log.String(); strings.Contains(log, env["AWS_SECRET_ACCESS_KEY"]) {
			t.Error("the store's secret key appears in the log")
		}
	})
}

// cutOffUpload starts an upload of size bytes and drops the connection
// after most of it was sent.
func cutOffUpload(tb testing.TB, s *server, secret, version string, size int) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The client goes away before the end of the form.
	file := io.MultiReader(bytes.NewReader(make([]byte, size)), goAway(cancel))
	if code, body := postUpload(ctx, s, secret, version, file); code != 0 {
		tb.Fatalf("a cut-off upload got %d %s", code, body)
	}
}

// goAway is a reader that cancels the request it is the body of.
type goAway context.CancelFunc

func (g goAway) Read([]byte) (int, error) {
	g()
	return 0, context.Canceled
}

// TestRun_objectStorageBadConfig: a missing bucket stops the start with a
// clear error.
func TestRun_objectStorageBadConfig(t *testing.T) {
	env := s3Env(t, dbtest.SQLite(t), "no-such-bucket", "")
	env["WEMESSE_ADDR"] = freeAddr(t)
	err := run(context.Background(), []string{"serve"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `bucket "no-such-bucket" does not exist`) {
		t.Errorf("run = %v, want a missing-bucket error", err)
	}
}

// TestRun_objectStorageServesOnlyReleases: an object under the prefix that
// no release names is neither served nor presigned.
func TestRun_objectStorageServesOnlyReleases(t *testing.T) {
	s3test.Start(t)
	dbtest.Each(t, func(t *testing.T, dsn string) {
		bucket := s3test.Bucket(t)
		env := s3Env(t, dsn, bucket, "builds")
		env["WEMESSE_SIGNATURE"] = "s3-test-secret"
		content := "not a release"
		if _, err := s3test.Client(t).PutObject(context.Background(), bucket, "builds/private/notes.apk",
			strings.NewReader(content), int64(len(content)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, redirect := range []string{"false", "true"} {
			env["WEMESSE_STORAGE_REDIRECT"] = redirect
			s := startServer(t, env)
			if resp, body := download(t, s, "/uploads/private/notes.apk"); resp.StatusCode != http.StatusNotFound {
				t.Errorf("redirect %s: an object no release names: %d %q, Location %q, want 404", redirect, resp.StatusCode, body, resp.Header.Get("Location"))
			}
			s.stop(t)
		}
	})
}
