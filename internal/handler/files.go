package handler

import (
	"context"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/wemesse/server/api"
	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/service"
)

// handleDownload serves GET and HEAD /uploads/{path}: a stored build, with
// Range, ETag and If-None-Match handled by http.ServeContent so that a
// phone on a bad network can resume. A download counts once its last byte
// is written: a full GET, or a range that ends the file.
//
// When downloads are redirected (object storage with
// WEMESSE_STORAGE_REDIRECT), the answer is a 302 to a short-lived presigned
// URL at the store, which handles Range and ETag itself. The transfer then
// completes at the store, out of sight, so a redirect counts as the
// download: a GET that starts a transfer (no Range, or a range from the
// first byte) counts once; resumptions do not.
func handleDownload(releases *service.Releases, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.URL.Path, "/uploads/")
		count := func() {
			if err := releases.CountDownload(context.WithoutCancel(r.Context()), key); err != nil {
				log.WarnContext(r.Context(), "count download", "request_id", requestIDOf(w), "key", key, "err", err)
			}
		}
		if url, ok, err := releases.DownloadURL(r.Context(), key); err != nil {
			fail(w, r, log, err)
			return
		} else if ok {
			w.Header().Set("Cache-Control", "no-store") // the URL expires
			http.Redirect(w, r, url, http.StatusFound)
			if rg := r.Header.Get("Range"); r.Method == http.MethodGet && (rg == "" || strings.HasPrefix(strings.TrimSpace(rg), "bytes=0-")) {
				count()
			}
			return
		}
		f, info, err := releases.Open(r.Context(), key)
		if err != nil {
			fail(w, r, log, err)
			return
		}
		defer f.Close()
		name := path.Base(key)
		// Never a type taken from the name, such as text/html for an
		// uploaded .html: a browser must not render a download.
		ctype := "application/octet-stream"
		if strings.EqualFold(path.Ext(name), ".apk") {
			ctype = "application/vnd.android.package-archive"
		}
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
		// Published files never change in place, so size and time identify them.
		w.Header().Set("ETag", fmt.Sprintf(`"%x-%x"`, info.Size(), info.ModTime().UnixNano()))
		cw := &countingWriter{ResponseWriter: w}
		http.ServeContent(cw, r, name, info.ModTime(), f)
		if r.Method == http.MethodGet && cw.deliveredEnd(info.Size()) {
			count()
		}
	}
}

// countingWriter records the status and the body bytes that were written
// without error.
type countingWriter struct {
	http.ResponseWriter
	status  int
	written int64
}

func (c *countingWriter) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
	c.ResponseWriter.WriteHeader(status)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(b)
	c.written += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// deliveredEnd reports whether the response carried at least one byte and
// the file's last byte in full: a complete 200, or a single-range 206
// ending at the last byte whose every byte was written. An empty range
// (bytes=-0) delivers nothing, so it counts nothing.
func (c *countingWriter) deliveredEnd(size int64) bool {
	if c.written == 0 {
		return false
	}
	switch c.status {
	case http.StatusOK:
		return c.written == size
	case http.StatusPartialContent:
		var first, last, total int64
		if _, err := fmt.Sscanf(c.Header().Get("Content-Range"), "bytes %d-%d/%d", &first, &last, &total); err != nil {
			return false // several ranges: not counted
		}
		return last == size-1 && total == size && c.written == last-first+1
	}
	return false
}

// handleHealth answers GET /healthz while the process runs.
func handleHealth() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		encode(w, http.StatusOK, map[string]string{"status": "ok"})
	}
}

// handleReady answers GET /readyz: 200 while the database answers, 503
// with Retry-After while it does not.
func handleReady(ready func(context.Context) error, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := ready(ctx); err != nil {
				fail(w, r, log, fmt.Errorf("not ready: %w: %w", model.Errorf(model.Unavailable, "The database is unavailable; retry shortly."), err))
				return
			}
		}
		encode(w, http.StatusOK, map[string]string{"status": "ready"})
	}
}

// handleOpenAPI answers GET /api/v1/openapi.json with the embedded
// contract, converted to JSON once.
func handleOpenAPI(log *slog.Logger) http.HandlerFunc {
	doc, err := api.OpenAPIJSON()
	return func(w http.ResponseWriter, r *http.Request) {
		if err != nil {
			fail(w, r, log, err)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Write(doc)
	}
}
