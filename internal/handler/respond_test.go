package handler

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRecoverJSON(t *testing.T) {
	var logs bytes.Buffer
	h := recoverJSON(slog.New(slog.NewJSONHandler(&logs, nil)))(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("boom: SELECT secret FROM middlewares")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status = %d, want 500", rec.Code)
	}
	if got := strings.TrimSpace(rec.Body.String()); got != `{"error":"Internal error."}` {
		t.Errorf("body = %s, want a plain internal error", got)
	}
	if !strings.Contains(logs.String(), "boom") {
		t.Errorf("the panic was not logged: %s", logs.String())
	}
}

func TestFail_clientGone(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	fail(rec, httptest.NewRequest("POST", "/api/v1/users", nil).WithContext(ctx), log, fmt.Errorf("waiting: %w", context.Canceled))
	if rec.Code != statusClientClosed || strings.Contains(logs.String(), "ERROR") {
		t.Errorf("status %d, log %s; want 499 and no error logged", rec.Code, logs.String())
	}
}
