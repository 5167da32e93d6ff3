package handler_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/handler"
	"github.com/wemesse/server/internal/service"
)

// browser is an HTTP client with a cookie jar, as a browser keeps a
// session.
type browser struct {
	tb     testing.TB
	base   string
	client *http.Client
}

func newBrowser(tb testing.TB, srv *httptest.Server) *browser {
	tb.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		tb.Fatal(err)
	}
	c := *srv.Client()
	c.Jar = jar
	return &browser{tb: tb, base: srv.URL, client: &c}
}

// do sends a request as the page's own form or link would (same-origin)
// unless header says otherwise, follows redirects, and returns the
// final response with its body.
func (b *browser) do(method, path string, body io.Reader, header ...string) (*http.Response, string) {
	b.tb.Helper()
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.tb.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.tb.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		b.tb.Fatal(err)
	}
	return resp, string(out)
}

func (b *browser) post(path string, form url.Values, header ...string) (*http.Response, string) {
	b.tb.Helper()
	return b.do(http.MethodPost, path, strings.NewReader(form.Encode()), header...)
}

func (b *browser) login(secret string) (*http.Response, string) {
	b.tb.Helper()
	return b.post("/console/login", url.Values{"secret": {secret}})
}

// wantPage checks a console answer's status, its security headers and
// that it holds each of wants.
func wantPage(tb testing.TB, resp *http.Response, body string, status int, wants ...string) {
	tb.Helper()
	if resp.StatusCode != status {
		tb.Errorf("%s: status %d, want %d\n%.600s", resp.Request.URL.Path, resp.StatusCode, status, body)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
		tb.Errorf("%s: Content-Security-Policy %q, want script-src 'self' and nothing unsafe", resp.Request.URL.Path, csp)
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, " on") && strings.Contains(body, "onclick=") {
		tb.Errorf("%s: the page holds inline script", resp.Request.URL.Path)
	}
	for _, w := range wants {
		if !strings.Contains(body, w) {
			tb.Errorf("%s: the page lacks %q", resp.Request.URL.Path, w)
		}
	}
}

// TestConsole_pages opens every screen on both databases and checks its
// status and key content, then makes each change a screen offers.
func TestConsole_pages(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newTestServer(t, dsn)
		ts.mustUpload("2268_00")
		ts.mustUpload("2269_01", "targetABI", "arm64", "rollout", "20", "appNotes", "Faster sync")
		now := time.Now().Unix()
		for i, v := range []string{"2268_00", "2269_01arm64", "2269_01arm64"} {
			body := fmt.Sprintf(`{"SessionID": %d, "AppVersion": %q, "DeviceMac": "02:00:00:00:00:%02d", "DeviceModel": "Pixel %d", "SessionActivity": %d, "SessionRegister": %d}`, i+1, v, i, i+6, now, now)
			if resp, b := ts.do("POST", "/api/v1/users", ts.client, strings.NewReader(body)); resp.StatusCode != 200 {
				t.Fatalf("report: %d %s", resp.StatusCode, b)
			}
		}
		b := newBrowser(t, ts.Server)

		resp, body := b.do("GET", "/", nil)
		wantPage(t, resp, body, http.StatusOK, "Admin secret", `type="password"`)
		if resp.Request.URL.Path != "/console/login" {
			t.Errorf("/ without a session ends at %s, want /console/login", resp.Request.URL.Path)
		}
		resp, body = b.login(ts.admin)
		wantPage(t, resp, body, http.StatusOK, "Dashboard", "Devices active in the last 30 days", `data-chart="{`, "2269_01", "20 %", "Log out")

		for _, p := range []struct {
			path  string
			wants []string
		}{
			{"/console/", []string{"<dd>3</dd>", "Current rollouts", "2269_01 arm64"}},
			{"/console", []string{"<dd>3</dd>", "Current rollouts"}}, // the mount serves it as /console/
			{"/console/releases", []string{"2268_00", "2269_01", "universal", "arm64", "20 %", "live", "mandatory", "66.7 %", "33.3 %"}},
			{"/console/releases/2", []string{"Release 2269_01", "Faster sync", `id="rollout"`, `value="20"`, "Yank", "Purge", `id="release-chart"`}},
			{"/console/upload", []string{`enctype="multipart/form-data"`, `hx-post="/console/upload"`, "<progress", "x86_64"}},
			{"/console/devices", []string{"02:00:00:00:00:00", "02:00:00:00:00:02", "Pixel 8"}},
			{"/console/devices?q=pixel+7", []string{"02:00:00:00:00:01", "Pixel 7"}},
			{"/console/devices?q=2", []string{"02:00:00:00:00:01"}},
			{"/console/secrets", []string{"admin", "client", "Create a secret", "Revoke secret 1"}},
		} {
			resp, body := b.do("GET", p.path, nil)
			wantPage(t, resp, body, http.StatusOK, p.wants...)
			if strings.Contains(body, ts.admin) || strings.Contains(body, ts.client) {
				t.Errorf("%s shows a secret", p.path)
			}
		}
		if _, body := b.do("GET", "/console/devices?q=pixel+7", nil); strings.Contains(body, "Pixel 8") {
			t.Errorf("the search for pixel 7 shows Pixel 8")
		}
		resp, body = b.do("GET", "/console/releases/99", nil)
		wantPage(t, resp, body, http.StatusNotFound, "There is no release 99")
		resp, body = b.do("GET", "/console/third_party/htmx.min.js", nil)
		if resp.StatusCode != 200 || !strings.Contains(body, "htmx") {
			t.Errorf("htmx: %d", resp.StatusCode)
		}

		t.Run("changes", func(t *testing.T) {
			resp, body := b.post("/console/releases/2/rollout", url.Values{"rollout": {"55"}})
			wantPage(t, resp, body, http.StatusOK, "The rollout is saved.", `value="55"`)
			resp, body = b.post("/console/releases/2/rollout", url.Values{"rollout": {"0"}})
			wantPage(t, resp, body, http.StatusBadRequest, "Rollout must be an integer from 1 to 100.", `value="55"`)
			resp, body = b.post("/console/releases/2/notes", url.Values{"notes": {"Line one\r\n<b>two</b>"}})
			wantPage(t, resp, body, http.StatusOK, "The notes are saved.", "Line one\n&lt;b&gt;two&lt;/b&gt;")
			resp, body = b.post("/console/releases/2/halt", nil)
			wantPage(t, resp, body, http.StatusOK, "The release is halted", "halted", `id="resume"`)
			resp, body = b.do("GET", "/console/releases", nil)
			wantPage(t, resp, body, http.StatusOK, "halted")
			resp, body = b.post("/console/releases/2/resume", nil)
			wantPage(t, resp, body, http.StatusOK, "The release is resumed.", `id="halt"`)
			resp, body = b.post("/console/releases/2/promote", url.Values{"track": {"beta"}, "rollout": {"30"}})
			wantPage(t, resp, body, http.StatusOK, "The release is promoted.", "<dd>beta</dd>", `value="30"`)
			resp, body = b.post("/console/releases/2/promote", url.Values{"track": {"nightly"}})
			wantPage(t, resp, body, http.StatusBadRequest, "track must be one of")
			later := time.Now().UTC().Add(48 * time.Hour).Truncate(time.Minute)
			resp, body = b.post("/console/releases/2/mandatory", url.Values{"mandatoryAt": {later.Format("2006-01-02T15:04")}})
			wantPage(t, resp, body, http.StatusOK, "The mandatory date is saved.", later.Format("2006-01-02 15:04 UTC"))
			resp, body = b.post("/console/releases/2/schedule", url.Values{
				"at":      {later.Format("2006-01-02T15:04"), "", later.Add(24 * time.Hour).Format("2006-01-02T15:04")},
				"rollout": {"40", "", "80"},
			})
			wantPage(t, resp, body, http.StatusOK, "The schedule is saved.", "scheduled", "40 %", "80 %", "pending")
			resp, body = b.post("/console/releases/2/schedule", url.Values{"at": {"yesterday"}, "rollout": {"40"}})
			wantPage(t, resp, body, http.StatusBadRequest, "must be a date and time")
			_, apiBody := ts.do("GET", "/api/v1/updates", ts.admin, nil)
			if api := string(apiBody); !strings.Contains(api, `"Track":"beta"`) || !strings.Contains(api, `"Rollout":80,"State":"pending"`) {
				t.Errorf("the API does not show the console's track and schedule: %s", api)
			}
			resp, body = b.post("/console/releases/2/rollout", url.Values{"rollout": {"55"}})
			wantPage(t, resp, body, http.StatusOK, "The rollout is saved.")
			resp, body = b.post("/console/releases/2/yank", url.Values{})
			wantPage(t, resp, body, http.StatusBadRequest, "Tick the box to confirm.")
			resp, body = b.post("/console/releases/2/yank", url.Values{"confirm": {"yes"}})
			wantPage(t, resp, body, http.StatusOK, "The release is yanked", "yanked")
			// The API sees what the console did.
			_, apiBody = ts.do("GET", "/api/v1/updates", ts.admin, nil)
			api := string(apiBody)
			if !strings.Contains(api, `"Rollout":55`) || !strings.Contains(api, `"Yanked":true`) || !strings.Contains(api, `Line one\n\u003cb\u003etwo`) {
				t.Errorf("the API does not show the console's changes: %s", api)
			}
			resp, body = b.post("/console/releases/2/purge", url.Values{"confirm": {"yes"}})
			wantPage(t, resp, body, http.StatusOK, "The release and its file are deleted.")
			if strings.Contains(body, "2269_01") {
				t.Errorf("the purged release is still listed")
			}

			resp, body = b.post("/console/secrets", url.Values{"role": {"client"}, "name": {"android-app"}, "expires": {"30"}})
			wantPage(t, resp, body, http.StatusCreated, "Copy this client secret now", `id="new-secret"`, "android-app",
				time.Now().UTC().AddDate(0, 0, 30).Format("2006-01-02"))
			resp, body = b.post("/console/secrets", url.Values{"role": {"client"}, "name": {"android-app"}})
			wantPage(t, resp, body, http.StatusConflict)
			resp, body = b.post("/console/secrets", url.Values{"role": {"client"}, "expires": {"2"}})
			wantPage(t, resp, body, http.StatusBadRequest, "Pick an expiry from the list.")
			if strings.Contains(resp.Request.URL.String(), "secret=") {
				t.Errorf("the new secret's page has a secret in its URL: %s", resp.Request.URL)
			}
			resp, body = b.post("/console/secrets/2/revoke", url.Values{"confirm": {"yes"}})
			wantPage(t, resp, body, http.StatusOK, "The secret is revoked.")
			if strings.Contains(body, "Revoke secret 2") {
				t.Errorf("the revoked secret is still listed")
			}
			// The audit trail names the session's signature (#1, unnamed)
			// as the actor of every change made here.
			_, auditBody := ts.do("GET", "/api/v1/audit?after=4", ts.admin, nil)
			var rows []struct{ Actor, Action string }
			if err := json.Unmarshal(auditBody, &rows); err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for _, r := range rows {
				seen[r.Action] = true
				if r.Actor != "#1" {
					t.Errorf("audit row %+v, want the actor #1", r)
				}
			}
			for _, a := range []string{"release.edit", "release.halt", "release.resume", "release.promote", "release.schedule", "release.yank", "release.purge", "signature.create", "signature.revoke"} {
				if !seen[a] {
					t.Errorf("no %s in the audit after the console's changes: %s", a, auditBody)
				}
			}

			// The audit screen shows the same trail, newest first, filtered.
			resp, body = b.do("GET", "/console/audit", nil)
			wantPage(t, resp, body, http.StatusOK, "Audit trail", "signature.revoke", "release.halt", "#1", `href="/console/releases/2"`)
			_, table, _ := strings.Cut(body, "<caption>") // past the filter's list of actions
			if strings.Index(table, "signature.revoke") > strings.Index(table, "release.halt") {
				t.Errorf("the audit screen is not newest first")
			}
			resp, body = b.do("GET", "/console/audit?action=release.halt&release=2", nil)
			wantPage(t, resp, body, http.StatusOK, "release.halt", "Halted: false → true")
			if _, table, _ := strings.Cut(body, "<caption>"); strings.Contains(table, "release.resume") || strings.Contains(table, "signature.revoke") {
				t.Errorf("the filtered audit screen shows other actions")
			}
			resp, body = b.do("GET", "/console/audit?actor=nobody", nil)
			wantPage(t, resp, body, http.StatusOK, "No change matches.")
			resp, body = b.do("GET", "/console/audit?release=x", nil)
			wantPage(t, resp, body, http.StatusBadRequest, "release must be an id.")
			// Who uploaded each release, from the trail.
			resp, body = b.do("GET", "/console/releases", nil)
			wantPage(t, resp, body, http.StatusOK, " by #1")
		})

		t.Run("upload", func(t *testing.T) {
			body, ctype := form(t, "appVersion", "2270_00", "targetABI", "x86", "tmpFile", "wemesse.apk|console build")
			resp, page := b.do("POST", "/console/upload", body, "Content-Type", ctype, "HX-Request", "true", "Sec-Fetch-Site", "same-origin")
			wantPage(t, resp, page, http.StatusCreated, "Uploaded", "2270_00 x86")
			if strings.Contains(page, "<html") {
				t.Errorf("an htmx upload got a whole page, want the result alone")
			}
			body, ctype = form(t, "appVersion", "2270_00", "targetABI", "x86", "tmpFile", "wemesse.apk|again")
			resp, page = b.do("POST", "/console/upload", body, "Content-Type", ctype, "HX-Request", "true", "Sec-Fetch-Site", "same-origin")
			wantPage(t, resp, page, http.StatusConflict, "The upload was refused", "already exists")
		})

		t.Run("logout", func(t *testing.T) {
			resp, body := b.post("/console/logout", nil)
			wantPage(t, resp, body, http.StatusOK, "Admin secret")
			resp, _ = b.do("GET", "/console/releases", nil)
			if resp.Request.URL.Path != "/console/login" {
				t.Errorf("after logout /console/releases ends at %s, want the login page", resp.Request.URL.Path)
			}
		})
	})
}

// TestConsole_login checks the session cookie, that a client secret
// cannot log in, that failed logins share the per-address limit with
// failed API checks, and that a cross-site POST carrying the session
// cookie is refused.
func TestConsole_login(t *testing.T) {
	ts := newTestServer(t, dbtest.SQLite(t), func(d *handler.Deps, _ *service.SignaturesConfig) { d.AuthFailuresPerMinute = 3 })
	ts.mustUpload("2268_00")
	b := newBrowser(t, ts.Server)

	resp, body := b.login(ts.client)
	wantPage(t, resp, body, http.StatusUnauthorized, "only admin secrets may")
	resp, body = b.login("wrong")
	wantPage(t, resp, body, http.StatusUnauthorized, "That secret is wrong")
	if r, _ := ts.do("GET", "/api/v1/stats", "wrong-too", nil); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("third failure, through the API: %d, want 401", r.StatusCode)
	}
	resp, body = b.login(ts.admin)
	wantPage(t, resp, body, http.StatusTooManyRequests, "Too many failed attempts")
	if r, _ := ts.do("GET", "/api/v1/stats", "wrong", nil); r.StatusCode != http.StatusTooManyRequests {
		t.Errorf("after failed logins the API answers %d, want 429", r.StatusCode)
	}

	// A fresh server, so the limit above does not stand in the way.
	ts = newTestServer(t, dbtest.SQLite(t))
	ts.mustUpload("2268_00")
	b = newBrowser(t, ts.Server)
	req, _ := http.NewRequest("POST", ts.URL+"/console/login", strings.NewReader(url.Values{"secret": {ts.admin}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	raw, err := ts.Client().Transport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	raw.Body.Close()
	cookies := raw.Cookies()
	if raw.StatusCode != http.StatusSeeOther || len(cookies) != 1 {
		t.Fatalf("login: %d with %d cookies, want 303 and one", raw.StatusCode, len(cookies))
	}
	c := cookies[0]
	if c.Name != "wemesse_session" || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure || c.Path != "/" {
		t.Errorf("cookie %+v, want wemesse_session, HttpOnly, SameSite=Strict, Path=/, not Secure over plain HTTP", c)
	}
	if strings.Contains(raw.Header.Get("Location"), c.Value) {
		t.Errorf("the redirect after login carries the token")
	}
	var n int64
	ts.db.Table("console_sessions").Where("token_hash = ?", c.Value).Count(&n)
	if n != 0 {
		t.Errorf("the session token is stored in clear")
	}

	u, _ := url.Parse(ts.URL)
	b.client.Jar.SetCookies(u, []*http.Cookie{c})
	for _, h := range [][]string{
		{"Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "same-site"},
		{"Sec-Fetch-Site", "", "Origin", "http://evil.example"},
	} {
		resp, body := b.post("/console/releases/1/rollout", url.Values{"rollout": {"5"}}, h...)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("cross-origin POST with %v: %d, want 403\n%.300s", h, resp.StatusCode, body)
		}
	}
	if _, api := ts.do("GET", "/api/v1/updates", ts.admin, nil); !strings.Contains(string(api), `"Rollout":100`) {
		t.Errorf("a cross-origin POST changed the rollout: %s", api)
	}
	resp, body = b.post("/console/releases/1/rollout", url.Values{"rollout": {"5"}})
	wantPage(t, resp, body, http.StatusOK, "The rollout is saved.")
}

// TestConsole_tls checks the cookie under TLS: Secure, with the __Host-
// prefix.
func TestConsole_tls(t *testing.T) {
	ts := newTestServer(t, dbtest.SQLite(t))
	tlsSrv := httptest.NewUnstartedServer(ts.Config.Handler)
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	req, _ := http.NewRequest("POST", tlsSrv.URL+"/console/login", strings.NewReader(url.Values{"secret": {ts.admin}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := tlsSrv.Client().Transport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if len(cookies) != 1 || cookies[0].Name != "__Host-wemesse_session" || !cookies[0].Secure || !cookies[0].HttpOnly ||
		cookies[0].SameSite != http.SameSiteStrictMode || cookies[0].Path != "/" || cookies[0].Domain != "" {
		t.Fatalf("cookies under TLS %+v, want one __Host-wemesse_session, Secure, HttpOnly, SameSite=Strict, Path=/, no Domain", cookies)
	}
	b := newBrowser(t, tlsSrv)
	u, _ := url.Parse(tlsSrv.URL)
	b.client.Jar.SetCookies(u, cookies)
	resp, body := b.do("GET", "/console/", nil)
	wantPage(t, resp, body, http.StatusOK, "Devices active in the last 30 days")
}
