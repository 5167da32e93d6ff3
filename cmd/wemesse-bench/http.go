package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"math"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// requestTimeout bounds every single request the tool sends.
const requestTimeout = 30 * time.Second

// newClient returns a keep-alive client that never uses a proxy.
func newClient() *http.Client {
	return &http.Client{
		Timeout: requestTimeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        64,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		},
	}
}

// reply is a finished request: status and the time to read the whole body.
type reply struct {
	status  int
	elapsed time.Duration
}

// send makes one request and reads the body to the end, so the connection
// is reused. secret, when set, goes in the signature header.
func send(ctx context.Context, c *http.Client, method, rawURL, secret, contentType string, body []byte) (reply, error) {
	if err := loopbackOnly(rawURL); err != nil {
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

// loopbackOnly refuses any URL whose host is not 127.0.0.1: the tool loads
// nothing but the server it started.
func loopbackOnly(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	if u.Hostname() != "127.0.0.1" {
		return fmt.Errorf("refusing to send load to %q: only 127.0.0.1 is a target", u.Host)
	}
	return nil
}

// uploadBuild posts a small random build as version, as ops do.
func uploadBuild(ctx context.Context, c *http.Client, baseURL, admin, version string, size int) error {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if err := mw.WriteField("appVersion", version); err != nil {
		return err
	}
	if err := mw.WriteField("appNotes", "wemesse-bench"); err != nil {
		return err
	}
	fw, err := mw.CreateFormFile("tmpFile", "wemesse.apk")
	if err != nil {
		return err
	}
	file := make([]byte, size)
	_, _ = rand.Read(file)
	if _, err := fw.Write(file); err != nil {
		return err
	}
	if err := mw.Close(); err != nil {
		return err
	}
	_, err = expect(ctx, c, http.StatusCreated, http.MethodPost, baseURL+"/api/v1/updates", admin, mw.FormDataContentType(), buf.Bytes())
	return err
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
