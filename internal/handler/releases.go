package handler

import (
	"errors"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-chi/chi/v5"

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
}

// toReleaseResponse converts a release, linking its file under base.
func toReleaseResponse(r model.Release, base string) releaseResponse {
	return releaseResponse{
		ID: r.ID, Checksum: r.MD5, Name: r.Name, Message: r.Notes, Size: r.SizeText,
		Version: r.Version.String(), Skipped: r.Skipped, Uploads: r.Uploads,
		URI: fileURL(base, r.FilePath), SHA256: r.SHA256, TargetABI: r.TargetABI,
	}
}

// fileURL joins base and a storage key, escaping each segment.
func fileURL(base, key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return base + "/" + strings.Join(segs, "/")
}

// handleUpdateCheck answers GET /api/v1/updates/{version}.
func handleUpdateCheck(releases *service.Releases, mirrorURL string, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rel, err := releases.Check(r.Context(), chi.URLParam(r, "version"))
		if err != nil {
			fail(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, toReleaseResponse(rel, mirrorURL))
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

// handleUpload answers POST /api/v1/updates, a multipart form.
func handleUpload(releases *service.Releases, publicURL string, maxUpload int64, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mediaType != "multipart/form-data" {
			writeError(w, http.StatusUnsupportedMediaType, "The body must be multipart/form-data with the fields appVersion, appNotes and tmpFile.")
			return
		}
		if r.ContentLength > maxUpload+multipartOverhead {
			fail(w, r, log, model.Errorf(model.TooLarge, "The upload is larger than the limit of %d bytes.", maxUpload))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxUpload+multipartOverhead)
		mr, err := r.MultipartReader()
		if err != nil {
			writeError(w, http.StatusBadRequest, "The multipart body is malformed: "+err.Error()+".")
			return
		}
		rel, err := releases.Upload(r.Context(), multipartForm{mr})
		if err != nil {
			fail(w, r, log, err)
			return
		}
		encode(w, http.StatusCreated, toReleaseResponse(rel, publicURL))
	}
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
	case err == nil || errors.Is(err, io.EOF):
		return err
	case errors.As(err, &tooLarge):
		return model.Errorf(model.TooLarge, "The upload is larger than the limit.")
	}
	return model.Errorf(model.Invalid, "The multipart body is malformed or was cut off: %s.", err.Error())
}
