package handler

import (
	"bytes"
	"cmp"
	"context"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/service"
)

// The console's pages, its own script and style, and the vendored
// libraries with their licences (console/third_party/fetch.sh checks them).
//
//go:embed console/templates console/static console/third_party/*.js console/third_party/*.css console/third_party/LICENSE.*
var consoleFiles embed.FS

// consolePrefix is where the console lives.
const consolePrefix = "/console"

// consoleCSP allows scripts, styles and fetches from this server only: no
// inline script, no eval, no framing.
const consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// consoleDeps is what the console's handlers use: the same services as the
// API.
type consoleDeps struct {
	Deps
	auth  *authenticator
	pages map[string]*template.Template
}

// addConsole serves the console under /console/ and redirects / there.
func addConsole(r chi.Router, d Deps, auth *authenticator) {
	c := &consoleDeps{Deps: d, auth: auth, pages: consolePages()}
	static, err := fs.Sub(consoleFiles, "console")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	r.Get("/", http.RedirectHandler(consolePrefix+"/", http.StatusFound).ServeHTTP)
	r.Route(consolePrefix, func(r chi.Router) {
		r.Use(consoleHeaders)
		r.Use(c.crossOriginProtection())
		assets := http.StripPrefix(consolePrefix, http.FileServerFS(static))
		for _, dir := range []string{"/static/*", "/third_party/*"} {
			r.Get(dir, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "public, max-age=3600")
				assets.ServeHTTP(w, r)
			})
		}
		r.Get("/login", c.loginPage)
		r.Post("/login", c.login)
		r.Group(func(r chi.Router) {
			r.Use(c.requireSession)
			r.Post("/logout", c.logout)
			r.Get("/", c.dashboard)
			r.Get("/releases", c.releaseList)
			r.Get("/releases/{id}", c.release)
			r.Post("/releases/{id}/notes", c.releaseNotes)
			r.Post("/releases/{id}/rollout", c.releaseRollout)
			r.Post("/releases/{id}/yank", c.releaseYank)
			r.Post("/releases/{id}/purge", c.releasePurge)
			r.Post("/releases/{id}/halt", c.releaseHalted(true))
			r.Post("/releases/{id}/resume", c.releaseHalted(false))
			r.Post("/releases/{id}/promote", c.releasePromote)
			r.Post("/releases/{id}/mandatory", c.releaseMandatory)
			r.Post("/releases/{id}/schedule", c.releaseSchedule)
			r.Get("/upload", c.uploadPage)
			r.Post("/upload", c.upload)
			r.Get("/devices", c.devices)
			r.Get("/secrets", c.secrets)
			r.Post("/secrets", c.secretCreate)
			r.Post("/secrets/{id}/revoke", c.secretRevoke)
			r.Get("/audit", c.audit)
		})
	})
}

// crossOriginProtection refuses a form posted from another origin with the
// error page and the status the table gives Forbidden.
func (c *consoleDeps) crossOriginProtection() func(http.Handler) http.Handler {
	p := http.NewCrossOriginProtection()
	p.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, model.Errorf(model.Forbidden, "This form came from another site; open the console and submit it from there."))
	}))
	return p.Handler
}

// consoleHeaders sets the console's security headers. Pages are never
// cached: they show what only a logged-in admin may see.
func consoleHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", consoleCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// sessionCookie names the session cookie: with the __Host- prefix under
// TLS, where the browser then refuses it unless Secure, host-only and for
// the whole site.
func sessionCookie(r *http.Request) string {
	if r.TLS != nil {
		return "__Host-wemesse_session"
	}
	return "wemesse_session"
}

func sessionToken(r *http.Request) string {
	c, err := r.Cookie(sessionCookie(r))
	if err != nil || len(c.Value) > maxSecretLen {
		return ""
	}
	return c.Value
}

func setSessionCookie(w http.ResponseWriter, r *http.Request, token string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie(r), Value: token, Path: "/", MaxAge: int(maxAge / time.Second),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
}

type actorKey struct{}

// actorOf is the signature whose session made r.
func actorOf(r *http.Request) model.Signature {
	sig, _ := r.Context().Value(actorKey{}).(model.Signature)
	return sig
}

// requireSession admits requests with a live session, and sends others to
// the login page.
func (c *consoleDeps) requireSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sig, err := c.Sessions.Check(r.Context(), sessionToken(r))
		if model.ErrorCode(err) == model.Unauthorized {
			if r.Header.Get("HX-Request") != "" {
				w.Header().Set("HX-Redirect", consolePrefix+"/login")
			}
			http.Redirect(w, r, consolePrefix+"/login", http.StatusSeeOther)
			return
		}
		if err != nil {
			c.fail(w, r, err)
			return
		}
		// The session's signature is also the actor of the changes the
		// audit trail records.
		ctx := model.WithActor(context.WithValue(r.Context(), actorKey{}, sig), sig.Label())
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func (c *consoleDeps) loginPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "login", "Log in", nil)
}

// login starts a session for an admin secret. A wrong secret, or one
// without the admin role, counts toward the address's failure limit like a
// failed API check.
func (c *consoleDeps) login(w http.ResponseWriter, r *http.Request) {
	if c.auth.tooManyFailures(r) {
		w.Header().Set("Retry-After", "60")
		c.render(w, r, http.StatusTooManyRequests, "login", "Log in", "Too many failed attempts from this address; retry in a minute.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxJSONBytes)
	secret := r.PostFormValue("secret")
	if len(secret) > maxSecretLen {
		secret = ""
	}
	token, _, err := c.Sessions.Login(r.Context(), secret)
	switch model.ErrorCode(err) {
	case model.Unauthorized, model.Forbidden:
		c.auth.countFailure(r)
		c.render(w, r, http.StatusUnauthorized, "login", "Log in", "That secret is wrong, or it may not use the console: only admin secrets may.")
		return
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	setSessionCookie(w, r, token, c.SessionMax)
	http.Redirect(w, r, consolePrefix+"/", http.StatusSeeOther)
}

func (c *consoleDeps) logout(w http.ResponseWriter, r *http.Request) {
	if err := c.Sessions.Logout(r.Context(), sessionToken(r)); err != nil {
		c.fail(w, r, err)
		return
	}
	setSessionCookie(w, r, "", -time.Second)
	http.Redirect(w, r, consolePrefix+"/login", http.StatusSeeOther)
}

// page is what every console template receives.
type page struct {
	Title  string
	Nav    string // the template's name, to mark the current link
	Actor  model.Signature
	Error  string
	Notice string
	Data   any
}

// render writes the page made by template name. data is the page's Data;
// a string is an error message shown instead.
func (c *consoleDeps) render(w http.ResponseWriter, r *http.Request, status int, name, title string, data any) {
	p := page{Title: title, Nav: name, Actor: actorOf(r), Notice: noticeOf(r), Data: data}
	if msg, ok := data.(string); ok {
		p.Error, p.Data = msg, nil
	}
	c.renderPage(w, r, status, name, p)
}

// renderPage writes p with template name: the whole page, or under htmx
// only the template's "fragment" when it has one.
func (c *consoleDeps) renderPage(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	t := c.pages[name]
	root := "layout"
	if r.Header.Get("HX-Request") != "" && t.Lookup("fragment") != nil {
		root = "fragment"
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, root, p); err != nil {
		c.Log.ErrorContext(r.Context(), "render console page", "request_id", requestIDOf(w), "page", name, "err", err)
		http.Error(w, "Internal error.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// fail shows err on the error page with the status the API would give it.
func (c *consoleDeps) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := model.ErrorCode(err)
	status := statusOf[code]
	switch code {
	case model.Internal:
		c.Log.ErrorContext(r.Context(), "console request failed", "request_id", requestIDOf(w), "err", err)
	case model.Unavailable:
		c.Log.WarnContext(r.Context(), "console request failed", "request_id", requestIDOf(w), "err", err)
		w.Header().Set("Retry-After", "1")
	}
	c.render(w, r, cmp.Or(status, http.StatusInternalServerError), "error", "Error", model.ErrorMessage(err))
}

// notices are the messages a redirect after a change may ask for, by key:
// the URL names the key, never the text.
var notices = map[string]string{
	"notes":     "The notes are saved.",
	"rollout":   "The rollout is saved.",
	"yank":      "The release is yanked: it is offered to no one.",
	"purge":     "The release and its file are deleted.",
	"revoke":    "The secret is revoked.",
	"halt":      "The release is halted: it is offered to no one, and its schedule waits.",
	"resume":    "The release is resumed.",
	"promote":   "The release is promoted.",
	"mandatory": "The mandatory date is saved.",
	"schedule":  "The schedule is saved.",
}

func noticeOf(r *http.Request) string { return notices[r.URL.Query().Get("done")] }

// consolePages parses each page with the layout.
func consolePages() map[string]*template.Template {
	funcs := template.FuncMap{
		"date":      formatDate,
		"unix":      func(s int64) string { return formatDate(time.Unix(s, 0)) },
		"thousands": thousands,
		"symbol":    stateSymbol,
		"percent":   percent,
		"state":     releaseState,
		"minute":    func(t time.Time) string { return t.UTC().Format(localMinute) },
		"inc":       func(n int) int { return n + 1 },
		"dec":       func(n int) int { return n - 1 },
		"last": func(v []int64) int64 {
			if len(v) == 0 {
				return 0
			}
			return v[len(v)-1]
		},
		// chart gathers what the "chart" template draws.
		"chart": func(id, label, data string, series []service.Series) chartView {
			return chartView{ID: id, Label: label, Chart: data, Series: series}
		},
	}
	layout := template.Must(template.New("layout").Funcs(funcs).ParseFS(consoleFiles, "console/templates/layout.html"))
	names, err := fs.Glob(consoleFiles, "console/templates/*.html")
	if err != nil {
		panic(err)
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(n[strings.LastIndexByte(n, '/')+1:], ".html")
		if name == "layout" {
			continue
		}
		pages[name] = template.Must(template.Must(layout.Clone()).ParseFS(consoleFiles, n))
	}
	return pages
}

func formatDate(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

// thousands writes n with commas between groups of three digits.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && c != '-' && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// stateSymbol goes with a state's word in its badge, never instead of it.
func stateSymbol(state string) string {
	switch state {
	case "yanked":
		return "✕"
	case "halted":
		return "‖"
	case "scheduled":
		return "◔"
	}
	return "●"
}

// releaseState is a release's badge: yanked, halted, scheduled (a step
// is pending) or live.
func releaseState(rel model.Release) string {
	switch {
	case rel.Yanked:
		return "yanked"
	case rel.Halted:
		return "halted"
	case slices.ContainsFunc(rel.Schedule, func(s model.Step) bool { return s.State == model.StepPending }):
		return "scheduled"
	}
	return "live"
}

// chartView is one chart on a page: its element id, accessible label,
// data (chartJSON) and series, also shown as a table.
type chartView struct {
	ID, Label, Chart string
	Series           []service.Series
}

// percent writes part of whole as a percentage with one decimal.
func percent(part, whole int64) string {
	if whole == 0 {
		return "–"
	}
	tenths := (part*1000 + whole/2) / whole
	return strconv.FormatInt(tenths/10, 10) + "." + strconv.FormatInt(tenths%10, 10) + " %"
}
