package handler

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/service"
)

// auditResponse is one entry of GET /api/v1/audit.
type auditResponse struct {
	ID        int64  `json:"Id"`
	At        string `json:"At"` // RFC 3339, UTC
	Actor     string `json:"Actor"`
	Action    string `json:"Action"`
	ReleaseID *int64 `json:"ReleaseId,omitempty"`
	Detail    string `json:"Detail"`
}

func toAuditResponse(e model.AuditEntry) auditResponse {
	out := auditResponse{ID: e.ID, At: e.At.UTC().Format(time.RFC3339), Actor: e.Actor, Action: e.Action, Detail: e.Detail}
	if e.ReleaseID != 0 {
		out.ReleaseID = &e.ReleaseID
	}
	return out
}

// handleAudit answers GET /api/v1/audit[?limit=N&after=ID]: the audit
// trail, oldest first.
func handleAudit(audit *service.Audit, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		page, err := pageOf(r)
		if err != nil {
			fail(w, r, log, err)
			return
		}
		entries, err := audit.List(r.Context(), page)
		if err != nil {
			fail(w, r, log, err)
			return
		}
		out := make([]auditResponse, len(entries))
		for i, e := range entries {
			out[i] = toAuditResponse(e)
		}
		encode(w, http.StatusOK, out)
	}
}
