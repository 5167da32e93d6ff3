package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRequest(t *testing.T) {
	m := New(nil)
	m.Request("/api/v1/updates/{version}", "GET", 200, time.Millisecond)
	m.Request("/api/v1/updates/{version}", "GET", 200, time.Millisecond)
	m.Request("/api/v1/updates/{version}", "GET", 304, time.Millisecond)
	m.Request("", "PUT", 405, time.Millisecond)
	m.Request("", "BREW", 405, time.Millisecond)
	m.Request("", "X-1234", 405, time.Millisecond)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`wemesse_http_requests_total{method="GET",route="/api/v1/updates/{version}",status="200"} 2`,
		`wemesse_http_requests_total{method="GET",route="/api/v1/updates/{version}",status="304"} 1`,
		`wemesse_http_requests_total{method="PUT",route="unmatched",status="405"} 1`,
		`wemesse_http_request_duration_seconds_count{method="GET",route="/api/v1/updates/{version}"} 3`,
		`wemesse_http_request_duration_seconds_count{method="PUT",route="unmatched"} 1`,
		`wemesse_http_requests_total{method="other",route="unmatched",status="405"} 2`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("no %s in\n%s", want, body)
		}
	}
	if strings.Contains(string(body), "BREW") {
		t.Errorf("a made-up method became a label value:\n%s", body)
	}
}

func TestRequest_beyondTheCache(t *testing.T) {
	m := New(nil)
	for i := range maxCachedSeries + 10 {
		m.Request("/r", "GET", 100+i, 0)
		m.Request("/r", "GET", 100+i, 0)
	}
	if n := len(*m.series.Load()); n != maxCachedSeries {
		t.Errorf("%d series cached, want at most %d", n, maxCachedSeries)
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if want := `wemesse_http_requests_total{method="GET",route="/r",status="` + "621" + `"} 2`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("a request beyond the cache was not counted: no %s", want)
	}
}
