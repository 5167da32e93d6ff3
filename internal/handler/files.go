package handler

import (
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/wemesse/server/internal/service"
)

// handleDownload serves GET and HEAD /uploads/{path}: a stored build, with
// Range, ETag and If-None-Match handled by http.ServeContent so that a
// phone on a bad network can resume.
func handleDownload(releases *service.Releases, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.URL.Path, "/uploads/")
		f, info, err := releases.Open(r.Context(), key)
		if err != nil {
			fail(w, r, log, err)
			return
		}
		defer f.Close()
		name := path.Base(key)
		ctype := mime.TypeByExtension(path.Ext(name))
		if strings.EqualFold(path.Ext(name), ".apk") {
			ctype = "application/vnd.android.package-archive"
		}
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
		// Published files never change in place, so size and time identify them.
		w.Header().Set("ETag", fmt.Sprintf(`"%x-%x"`, info.Size(), info.ModTime().UnixNano()))
		http.ServeContent(w, r, name, info.ModTime(), f)
	}
}

// handleHealth answers GET /healthz while the process runs.
func handleHealth() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		encode(w, http.StatusOK, map[string]string{"status": "ok"})
	}
}
