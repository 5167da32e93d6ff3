package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/wemesse/server/internal/proctest"
)

// requestTimeout bounds every single request the tool sends.
const requestTimeout = 30 * time.Second

// newClient returns a keep-alive client that never uses a proxy and
// gives up on a request after requestTimeout.
func newClient() *http.Client {
	c := proctest.NewClient(64)
	c.Timeout = requestTimeout
	return c
}

// reply is a finished request: status and the time to read the whole body.
type reply struct {
	status  int
	elapsed time.Duration
}

// send makes one request and reads the body to the end, so the connection
// is reused. secret, when set, goes in the signature header.
func send(ctx context.Context, c *http.Client, method, rawURL, secret, contentType string, body []byte) (reply, error) {
	if err := proctest.LoopbackOnly(rawURL); err != nil {
		return reply{}, err
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
	if err != nil {
		return reply{}, err
	}
	if secret != "" {
		req.Header.Set("signature", secret)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return reply{}, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	r := reply{status: resp.StatusCode, elapsed: time.Since(start)}
	return r, err
}

// expect sends a request and fails unless it gets want.
func expect(ctx context.Context, c *http.Client, want int, method, rawURL, secret, contentType string, body []byte) (time.Duration, error) {
	r, err := send(ctx, c, method, rawURL, secret, contentType, body)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, rawURL, err)
	}
	if r.status != want {
		return 0, fmt.Errorf("%s %s: status %d, want %d", method, rawURL, r.status, want)
	}
	return r.elapsed, nil
}

// uploadBuild posts a small signed APK (see newAPK) as version, as ops do.
func uploadBuild(ctx context.Context, c *http.Client, baseURL, admin, version string, size int) error {
	build, err := newAPKOfSize(int64(size))
	if err != nil {
		return err
	}
	fields := []proctest.Field{{Name: "appVersion", Value: version}, {Name: "appNotes", Value: "wemesse-bench"}}
	req, err := proctest.UploadRequest(ctx, baseURL, admin, fields, "wemesse.apk", build.reader())
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("upload %s: %w", version, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("upload %s: status %d, want %d", version, resp.StatusCode, http.StatusCreated)
	}
	return nil
}

// percentile returns the nearest-rank p-quantile (0 < p <= 1) of ds; ds is
// sorted in place. Zero for no samples.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(math.Ceil(p*float64(len(ds)))) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

func sum(ds []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t
}
