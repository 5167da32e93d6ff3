package s3test_test

import (
	"context"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/wemesse/server/internal/s3test"
)

func TestMain(m *testing.M) { os.Exit(s3test.Main(m)) }

func TestStartBucketAndHelpers(t *testing.T) {
	endpoint, access, secret := s3test.Start(t)
	if !strings.HasPrefix(endpoint, "http://127.0.0.1:") || access == "" || secret == "" {
		t.Fatalf("Start = %q, %q, %q", endpoint, access, secret)
	}
	// Without credentials the gateway refuses: it is a real S3 server.
	resp, err := http.Get(endpoint + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("anonymous ListBuckets: %d, want 403", resp.StatusCode)
	}

	a, b := s3test.Bucket(t), s3test.Bucket(t)
	if a == b {
		t.Fatalf("two buckets named %q", a)
	}
	ctx := context.Background()
	c := s3test.Client(t)
	if _, err := c.PutObject(ctx, a, "p/x.txt", strings.NewReader("x"), 1, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := s3test.Objects(t, a, ""); !slices.Equal(got, []string{"p/x.txt"}) {
		t.Errorf("Objects(a) = %v", got)
	}
	if got := s3test.Objects(t, b, ""); len(got) != 0 {
		t.Errorf("Objects(b) = %v, want none", got)
	}
	core := minio.Core{Client: c}
	id, err := core.NewMultipartUpload(ctx, a, "p/incomplete", minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := s3test.Uploads(t, a, "p/"); !slices.Equal(got, []string{"p/incomplete"}) {
		t.Errorf("Uploads(a) = %v", got)
	}
	if err := core.AbortMultipartUpload(ctx, a, "p/incomplete", id); err != nil {
		t.Fatal(err)
	}
	if got := s3test.Uploads(t, a, ""); len(got) != 0 {
		t.Errorf("Uploads(a) after abort = %v", got)
	}
	env := s3test.Env(t)
	if env["AWS_ENDPOINT_URL"] != endpoint || env["AWS_ACCESS_KEY_ID"] != access || env["AWS_SECRET_ACCESS_KEY"] != secret {
		t.Errorf("Env = %v", env)
	}
}

func TestBucketRemovedAfterTest(t *testing.T) {
	var name string
	t.Run("inner", func(t *testing.T) {
		name = s3test.Bucket(t)
		if _, err := s3test.Client(t).PutObject(context.Background(), name, "a/b", strings.NewReader("b"), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	})
	ok, err := s3test.Client(t).BucketExists(context.Background(), name)
	if err != nil || ok {
		t.Errorf("BucketExists(%s) after its test = %v, %v; want false", name, ok, err)
	}
}

func TestCachedBinary(t *testing.T) {
	p, err := s3test.CachedBinary()
	if err != nil {
		t.Skip(err)
	}
	if !strings.HasSuffix(p, "/wemesse/versitygw-"+s3test.Version+"/versitygw") {
		t.Errorf("CachedBinary() = %q", p)
	}
}
