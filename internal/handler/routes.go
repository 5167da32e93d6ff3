package handler

import (
	"github.com/go-chi/chi/v5"

	"github.com/wemesse/server/internal/model"
)

// addRoutes is the whole API surface.
func addRoutes(r chi.Router, d Deps) {
	auth := newAuth(d.Signatures, d.AuthFailuresPerMinute, d.Log)

	r.Get("/healthz", handleHealth())
	r.Get("/readyz", handleReady(d.Ready, d.Log))
	r.Get("/uploads/*", handleDownload(d.Releases, d.Log))

	r.Route("/api/v1", func(r chi.Router) {
		r.Get("/updates/{version}", handleUpdateCheck(d.Releases, d.MirrorURL, d.UpdateMaxAge, d.Log))

		r.With(auth.require(model.RoleClient)).Post("/users", handleUserReport(d.Users, d.Log))

		r.Group(func(r chi.Router) {
			r.Use(auth.require(model.RoleAdmin))
			r.Get("/updates", handleReleaseList(d.Releases, d.PublicURL, d.Log))
			r.Post("/updates", handleUpload(d.Releases, d.PublicURL, d.MaxUploadBytes, d.Log))
			r.Patch("/updates/{id}", handleReleaseEdit(d.Releases, d.PublicURL, d.Log))
			r.Delete("/updates/{id}", handleReleaseYank(d.Releases, d.Log))
			r.Get("/users", handleUserList(d.Users, d.Log))
			r.Get("/stats", handleStats(d.Stats, d.Log))
		})
	})
}
