package handler

import (
	"github.com/go-chi/chi/v5"

	"github.com/wemesse/server/internal/model"
)

// apiPrefix is the base of the API's routes. They are registered with it
// on the one router rather than on a router mounted under it, so that a
// request is routed once: the update check is the hot path.
const apiPrefix = "/api/v1"

// addRoutes is the whole API surface.
func addRoutes(r chi.Router, d Deps) {
	auth := newAuth(d.Signatures, d.AuthFailuresPerMinute, d.Log)

	r.Get("/healthz", handleHealth())
	r.Get("/readyz", handleReady(d.Ready, d.Log))
	r.Get("/uploads/*", handleDownload(d.Releases, d.Log))
	addConsole(r, d, auth)
	r.Get(apiPrefix+"/openapi.json", handleOpenAPI(d.Log))

	r.Get(apiPrefix+"/updates/{version}", handleUpdateCheck(d.Releases, d.MirrorURL, d.UpdateMaxAge, d.AnswerSigner, d.Log))
	r.Get(apiPrefix+"/keys", handleKeys(d.AnswerKeys, d.Log))

	r.With(auth.require(model.RoleClient)).Post(apiPrefix+"/users", handleUserReport(d.Users, d.Log))

	r.Group(func(r chi.Router) {
		r.Use(noStore, auth.require(model.RoleAdmin))
		r.Get(apiPrefix+"/updates", handleReleaseList(d.Releases, d.PublicURL, d.Log))
		r.Post(apiPrefix+"/updates", handleUpload(d.Releases, d.PublicURL, d.MaxUploadBytes, d.Log))
		r.Patch(apiPrefix+"/updates/{id}", handleReleaseEdit(d.Releases, d.PublicURL, d.Log))
		r.Delete(apiPrefix+"/updates/{id}", handleReleaseYank(d.Releases, d.Log))
		r.Post(apiPrefix+"/updates/{id}/promote", handleReleasePromote(d.Releases, d.PublicURL, d.Log))
		r.Get(apiPrefix+"/users", handleUserList(d.Users, d.Log))
		r.Get(apiPrefix+"/stats", handleStats(d.Stats, d.Log))
		r.Get(apiPrefix+"/audit", handleAudit(d.Audit, d.Log))
		r.Get(apiPrefix+"/stats/history", handleHistory(d.History, d.Releases, d.Log))
	})
}
