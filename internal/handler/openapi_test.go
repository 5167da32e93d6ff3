package handler_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/go-chi/chi/v5"

	"github.com/wemesse/server/api"
	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/handler"
	"github.com/wemesse/server/internal/service"
)

// The contract tests hold api/openapi.yaml and the server to each other:
// every route the router registers is described, every described operation
// is served, and every response of a real server on a real database (its
// status, headers, keys and types) is one the document allows.

const contractFile = "api/openapi.yaml"

func init() {
	// Builds are served with the Android package type; the validator reads
	// them as opaque bytes, as it does application/octet-stream.
	openapi3filter.RegisterBodyDecoder("application/vnd.android.package-archive", openapi3filter.FileBodyDecoder)
	// The console's pages and assets are text; their schema is a string.
	for _, t := range []string{"text/html", "text/css", "text/javascript"} {
		openapi3filter.RegisterBodyDecoder(t, openapi3filter.PlainBodyDecoder)
	}
}

// loadContract parses and validates the embedded document.
func loadContract(tb testing.TB) *openapi3.T {
	tb.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPIYAML)
	if err != nil {
		tb.Fatalf("%s does not parse: %v", contractFile, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		hint := ""
		if strings.Contains(err.Error(), "conflicting paths") {
			hint = "\nOpenAPI allows one parameter name per position of a path: describe every method of such a path under one path item, " +
				"with one parameter name (chi may name it differently per method; the tests compare paths with the names erased)."
		}
		tb.Fatalf("%s is not a valid OpenAPI document: %v%s", contractFile, err, hint)
	}
	return doc
}

// docPath turns a chi route pattern into OpenAPI's form: a regexp in a
// parameter goes, and the trailing wildcard of /uploads/* becomes the
// parameter {key} (a key spans several segments).
func docPath(pattern string) string {
	pattern = chiRegexpParam.ReplaceAllString(pattern, "{$1}")
	if strings.HasSuffix(pattern, "/*") {
		pattern = strings.TrimSuffix(pattern, "*") + "{key}"
	}
	return pattern
}

var chiRegexpParam = regexp.MustCompile(`\{(\w+):[^}]*\}`)

// pathShape is a path with its parameters' names erased. OpenAPI allows
// one parameter name per position in a path, where chi lets each method
// name its own (GET /api/v1/updates/{version}, PATCH /api/v1/updates/{id}),
// so paths are the same when their shapes are.
func pathShape(path string) string { return docParam.ReplaceAllString(docPath(path), "{}") }

var docParam = regexp.MustCompile(`\{[^}]*\}`)

// TestOpenAPI_RoutesDocumented fails when the router registers a route and
// method that the document does not describe, or the other way round.
func TestOpenAPI_RoutesDocumented(t *testing.T) {
	doc := loadContract(t)
	routes := routerOf(t, newTestServer(t, dbtest.SQLite(t)))
	registered := map[string]bool{}
	chiRoute := map[string]string{} // shape → the route as OpenAPI writes it
	err := chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		registered[method+" "+pathShape(route)] = true
		chiRoute[method+" "+pathShape(route)] = docPath(route)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	docRoute := map[string]string{} // shape → the path in the document
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+pathShape(path)] = true
			docRoute[method+" "+pathShape(path)] = method + " " + path
		}
	}
	for _, k := range sortedKeys(registered) {
		if !documented[k] {
			method, _, _ := strings.Cut(k, " ")
			path := chiRoute[k]
			t.Errorf("%s %s is registered in internal/handler/routes.go but %s does not describe it.\n"+
				"Add to %s, under paths:\n  %q:\n    %s:\n      operationId: ...\n      parameters: [every path, query and header parameter]\n"+
				"      requestBody: ... (if it takes one)\n      responses: {every status it writes, each with its schema; errors $ref #/components/responses/...}",
				method, path, contractFile, contractFile, path, strings.ToLower(method))
		}
	}
	for _, k := range sortedKeys(documented) {
		if !registered[k] {
			t.Errorf("%s describes %s, but the router does not serve it: remove it from %s or register the route in internal/handler/routes.go.", contractFile, docRoute[k], contractFile)
		}
	}
}

// TestOpenAPI_Served checks that GET /api/v1/openapi.json, without a
// signature, serves the embedded document.
func TestOpenAPI_Served(t *testing.T) {
	want := loadContract(t)
	ts := newTestServer(t, dbtest.SQLite(t))
	resp, body := ts.do(http.MethodGet, "/api/v1/openapi.json", "", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200 (body %s)", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want JSON", ct)
	}
	got, err := openapi3.NewLoader().LoadFromData(body)
	if err != nil {
		t.Fatalf("the served document does not load: %v", err)
	}
	gotJSON, _ := got.MarshalJSON()
	wantJSON, _ := want.MarshalJSON()
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Errorf("the served document differs from %s", contractFile)
	}
}

// contractCase is one request of TestOpenAPI_Responses.
type contractCase struct {
	name   string
	method string
	path   string
	secret string // "admin", "client", "wrong" or none
	body   []byte
	ctype  string
	header []string // name, value pairs; "$etag" is the last ETag seen
	want   int
	// refusals: the same request follows under the client secret (403)
	// and a wrong one (401), as every admin route refuses both.
	refusals bool
	// breaks says how the request breaks the document on purpose (a
	// missing signature, a version that does not parse): request
	// validation must reject it, which shows the document states the rule.
	breaks string
}

// TestOpenAPI_Responses drives every documented operation of a real server,
// on SQLite and on PostgreSQL, and validates each request and response
// against the document: a status, header, key or type that the document
// does not allow fails, and so does a documented operation or status that
// no request here exercises.
func TestOpenAPI_Responses(t *testing.T) {
	doc := loadContract(t)
	dbtest.Each(t, func(t *testing.T, dsn string) {
		cv := newContractValidator(doc)

		ts := newTestServer(t, dsn, withAnswerKeys(t, newAnswerKey(t)))
		upload := func(fields ...string) ([]byte, string) {
			b, ct := form(t, fields...)
			return b.Bytes(), ct
		}
		build, buildType := upload("appVersion", "2267_00", "appNotes", "Mandatory", "tmpFile", "wemesse.apk|build 2267_00")
		abiBuild, abiBuildType := upload("appVersion", "2267_01", "appNotes", "Fixes login", "targetABI", "arm64", "rollout", "50", "tmpFile", "wemesse.apk|build 2267_01")
		noFile, noFileType := upload("appVersion", "2267_02")
		emptyFile, emptyFileType := upload("appVersion", "2267_02", "tmpFile", "wemesse.apk|")
		bigFile, bigFileType := upload("appVersion", "2267_02", "tmpFile", "wemesse.apk|"+strings.Repeat("x", int(ts.maxUpload)+1))
		consoleBuild, consoleBuildType := upload("appVersion", "2267_05", "tmpFile", "wemesse.apk|build 2267_05")
		report := []byte(`{"AppLocale":"en","AppVersion":"2267_00","DeviceLocale":"en-us","DeviceMac":"02:30:54:89:2d:5e","DeviceModel":"OnePlus A6000","DeviceSDK":"SDK 30","SessionActivity":1636201000,"SessionID":2,"SessionRegister":1636034599,"TgVersion":"8.1.2"}`)
		huge := []byte(`{"SessionID":1,"AppVersion":"2267_00","Message":"` + strings.Repeat("x", 70<<10) + `"}`)
		const js = "application/json"
		const fm = "application/x-www-form-urlencoded"
		formOf := func(kv ...string) []byte {
			v := url.Values{}
			for i := 0; i+1 < len(kv); i += 2 {
				v.Set(kv[i], kv[i+1])
			}
			return []byte(v.Encode())
		}

		cases := []contractCase{
			{name: "health", method: "GET", path: "/healthz", want: 200},
			{name: "ready", method: "GET", path: "/readyz", want: 200},
			{name: "contract", method: "GET", path: "/api/v1/openapi.json", want: 200},
			{name: "answer keys", method: "GET", path: "/api/v1/keys", want: 200},
			{name: "no releases", method: "GET", path: "/api/v1/updates", secret: "admin", want: 200},
			{name: "check, none", method: "GET", path: "/api/v1/updates/2267_00", want: 404},
			{name: "check, bad version", method: "GET", path: "/api/v1/updates/v1", want: 400, breaks: "version pattern"},
			{name: "upload", method: "POST", path: "/api/v1/updates", secret: "admin", body: build, ctype: buildType, want: 201, refusals: true},
			{name: "upload for an ABI", method: "POST", path: "/api/v1/updates", secret: "admin", body: abiBuild, ctype: abiBuildType, want: 201},
			{name: "upload, version exists", method: "POST", path: "/api/v1/updates", secret: "admin", body: build, ctype: buildType, want: 409},
			{name: "upload, no file", method: "POST", path: "/api/v1/updates", secret: "admin", body: noFile, ctype: noFileType, want: 400, breaks: "tmpFile required"},
			{name: "upload, empty file", method: "POST", path: "/api/v1/updates", secret: "admin", body: emptyFile, ctype: emptyFileType, want: 400},
			{name: "upload, too large", method: "POST", path: "/api/v1/updates", secret: "admin", body: bigFile, ctype: bigFileType, want: 413},
			{name: "upload, not multipart", method: "POST", path: "/api/v1/updates", secret: "admin", body: []byte(`{}`), ctype: js, want: 415, breaks: "media type"},
			{name: "upload, no secret", method: "POST", path: "/api/v1/updates", body: build, ctype: buildType, want: 401, breaks: "security"},
			{name: "check", method: "GET", path: "/api/v1/updates/2267_00arm64?device=abc", want: 200},
			{name: "check, cached", method: "GET", path: "/api/v1/updates/2267_00arm64?device=abc", header: []string{"If-None-Match", "$etag"}, want: 304},
			{name: "download", method: "GET", path: "/uploads/2267_00/wemesse.apk", want: 200},
			{name: "download, cached", method: "GET", path: "/uploads/2267_00/wemesse.apk", header: []string{"If-None-Match", "$etag"}, want: 304},
			{name: "download, range", method: "GET", path: "/uploads/arm64/2267_01/wemesse.apk", header: []string{"Range", "bytes=6-"}, want: 206},
			{name: "download, range outside", method: "GET", path: "/uploads/2267_00/wemesse.apk", header: []string{"Range", "bytes=9999-"}, want: 416},
			{name: "download, absent", method: "GET", path: "/uploads/2267_00/other.apk", want: 404},
			{name: "list releases", method: "GET", path: "/api/v1/updates", secret: "admin", want: 200, refusals: true},
			{name: "edit", method: "PATCH", path: "/api/v1/updates/2", secret: "admin", body: []byte(`{"Message":"Fixes login and sync","Rollout":80}`), ctype: js, want: 200, refusals: true},
			{name: "edit, bad rollout", method: "PATCH", path: "/api/v1/updates/2", secret: "admin", body: []byte(`{"Rollout":0}`), ctype: js, want: 400, breaks: "Rollout minimum"},
			{name: "edit, bad id", method: "PATCH", path: "/api/v1/updates/two", secret: "admin", body: []byte(`{}`), ctype: js, want: 400, breaks: "id is an integer"},
			{name: "edit, absent", method: "PATCH", path: "/api/v1/updates/99", secret: "admin", body: []byte(`{}`), ctype: js, want: 404},
			{name: "edit, too large", method: "PATCH", path: "/api/v1/updates/2", secret: "admin", body: huge, ctype: js, want: 413, breaks: "additionalProperties (a user report)"},
			{name: "edit, unknown key", method: "PATCH", path: "/api/v1/updates/2", secret: "admin", body: []byte(`{"Paused":true}`), ctype: js, want: 400, breaks: "additionalProperties"},
			{name: "halt, deadline, schedule", method: "PATCH", path: "/api/v1/updates/2", secret: "admin", body: []byte(`{"Halted":true,"MandatoryAt":"2030-01-01T00:00:00Z","Schedule":[{"At":"2999-01-01T00:00:00Z","Rollout":90}]}`), ctype: js, want: 200},
			{name: "resume, no deadline", method: "PATCH", path: "/api/v1/updates/2", secret: "admin", body: []byte(`{"Halted":false,"MandatoryAt":null}`), ctype: js, want: 200},
			{name: "promote", method: "POST", path: "/api/v1/updates/2/promote", secret: "admin", body: []byte(`{"Track":"beta"}`), ctype: js, want: 200, refusals: true},
			{name: "promote, unknown track", method: "POST", path: "/api/v1/updates/2/promote", secret: "admin", body: []byte(`{"Track":"nightly"}`), ctype: js, want: 400},
			{name: "promote, no track", method: "POST", path: "/api/v1/updates/2/promote", secret: "admin", body: []byte(`{}`), ctype: js, want: 400, breaks: "Track required"},
			{name: "promote, absent", method: "POST", path: "/api/v1/updates/99/promote", secret: "admin", body: []byte(`{"Track":"beta"}`), ctype: js, want: 404},
			{name: "check, beta", method: "GET", path: "/api/v1/updates/2267_00arm64?device=abc&track=beta", want: 200},
			{name: "check, bad track", method: "GET", path: "/api/v1/updates/2267_00arm64?track=Beta!", want: 400, breaks: "track pattern"},
			{name: "report", method: "POST", path: "/api/v1/users", secret: "client", body: report, ctype: js, want: 200},
			{name: "report, no session", method: "POST", path: "/api/v1/users", secret: "client", body: []byte(`{"AppVersion":"2267_00","SessionID":0}`), ctype: js, want: 400, breaks: "SessionID not 0"},
			{name: "report, not JSON", method: "POST", path: "/api/v1/users", secret: "client", body: []byte(`{"SessionID":`), ctype: js, want: 400, breaks: "JSON"},
			{name: "report, too large", method: "POST", path: "/api/v1/users", secret: "client", body: huge, ctype: js, want: 413},
			{name: "report, wrong secret", method: "POST", path: "/api/v1/users", secret: "wrong", body: report, ctype: js, want: 401},
			{name: "list users", method: "GET", path: "/api/v1/users", secret: "admin", want: 200, refusals: true},
			{name: "list users, a page", method: "GET", path: "/api/v1/users?after=0&limit=1", secret: "admin", want: 200},
			{name: "list users, bad limit", method: "GET", path: "/api/v1/users?limit=0", secret: "admin", want: 400, breaks: "limit minimum"},
			{name: "stats", method: "GET", path: "/api/v1/stats", secret: "admin", want: 200, refusals: true},
			{name: "audit", method: "GET", path: "/api/v1/audit", secret: "admin", want: 200, refusals: true},
			{name: "audit, a page", method: "GET", path: "/api/v1/audit?after=1&limit=2", secret: "admin", want: 200},
			{name: "audit, bad limit", method: "GET", path: "/api/v1/audit?limit=0", secret: "admin", want: 400, breaks: "limit minimum"},
			{name: "stats of a track", method: "GET", path: "/api/v1/stats?track=beta", secret: "admin", want: 200},
			{name: "history", method: "GET", path: "/api/v1/stats/history?days=2", secret: "admin", want: 200, refusals: true},
			{name: "history, bad days", method: "GET", path: "/api/v1/stats/history?days=0", secret: "admin", want: 400, breaks: "days minimum"},
			// The console, as a browser uses it.
			{name: "root", method: "GET", path: "/", want: 302},
			{name: "console, no session", method: "GET", path: "/console/", want: 303, breaks: "session cookie"},
			{name: "login page", method: "GET", path: "/console/login", want: 200},
			{name: "login, wrong secret", method: "POST", path: "/console/login", body: formOf("secret", "not-a-secret"), ctype: fm, want: 401},
			{name: "login, cross-origin", method: "POST", path: "/console/login", body: formOf("secret", "admin"), ctype: fm, header: []string{"Sec-Fetch-Site", "cross-site"}, want: 403},
			{name: "login", method: "POST", path: "/console/login", body: []byte("secret=$admin"), ctype: fm, want: 303},
			{name: "dashboard", method: "GET", path: "/console/", want: 200},
			{name: "console script", method: "GET", path: "/console/static/console.js", want: 200},
			{name: "console style", method: "GET", path: "/console/static/console.css", want: 200},
			{name: "console asset, absent", method: "GET", path: "/console/static/none.js", want: 404},
			{name: "htmx", method: "GET", path: "/console/third_party/htmx.min.js", want: 200},
			{name: "a licence", method: "GET", path: "/console/third_party/LICENSE.htmx", want: 200},
			{name: "console releases", method: "GET", path: "/console/releases", want: 200},
			{name: "console releases, no such page", method: "GET", path: "/console/releases?page=9", want: 404},
			{name: "console release", method: "GET", path: "/console/releases/2", want: 200},
			{name: "console release, absent", method: "GET", path: "/console/releases/99", want: 404},
			{name: "console notes", method: "POST", path: "/console/releases/2/notes", body: formOf("notes", "Fixes login"), ctype: fm, want: 303},
			{name: "console rollout, bad", method: "POST", path: "/console/releases/2/rollout", body: formOf("rollout", "0"), ctype: fm, want: 400},
			{name: "console rollout", method: "POST", path: "/console/releases/2/rollout", body: formOf("rollout", "90"), ctype: fm, want: 303},
			{name: "console halt", method: "POST", path: "/console/releases/2/halt", body: formOf(), ctype: fm, want: 303},
			{name: "console resume", method: "POST", path: "/console/releases/2/resume", body: formOf(), ctype: fm, want: 303},
			{name: "console promote", method: "POST", path: "/console/releases/2/promote", body: formOf("track", "beta", "rollout", ""), ctype: fm, want: 303},
			{name: "console mandatory, cleared", method: "POST", path: "/console/releases/2/mandatory", body: formOf("mandatoryAt", ""), ctype: fm, want: 303},
			{name: "console schedule, cleared", method: "POST", path: "/console/releases/2/schedule", body: formOf(), ctype: fm, want: 303},
			{name: "console upload page", method: "GET", path: "/console/upload", want: 200},
			{name: "console upload", method: "POST", path: "/console/upload", body: consoleBuild, ctype: consoleBuildType, want: 201},
			{name: "console upload, version exists", method: "POST", path: "/console/upload", body: consoleBuild, ctype: consoleBuildType, want: 409},
			{name: "console yank, unconfirmed", method: "POST", path: "/console/releases/3/yank", body: formOf(), ctype: fm, want: 400},
			{name: "console yank", method: "POST", path: "/console/releases/3/yank", body: formOf("confirm", "yes"), ctype: fm, want: 303},
			{name: "console purge", method: "POST", path: "/console/releases/3/purge", body: formOf("confirm", "yes"), ctype: fm, want: 303},
			{name: "console devices", method: "GET", path: "/console/devices?q=OnePlus", want: 200},
			{name: "console devices, bad after", method: "GET", path: "/console/devices?after=x", want: 400, breaks: "after is an integer"},
			{name: "console secrets", method: "GET", path: "/console/secrets", want: 200},
			{name: "console audit", method: "GET", path: "/console/audit?action=release.edit&release=2", want: 200},
			{name: "console audit, bad release", method: "GET", path: "/console/audit?release=x", want: 400},
			{name: "console new secret", method: "POST", path: "/console/secrets", body: formOf("role", "client", "name", "contract", "expires", "30"), ctype: fm, want: 201},
			{name: "console new secret, name taken", method: "POST", path: "/console/secrets", body: formOf("role", "client", "name", "contract"), ctype: fm, want: 409},
			{name: "console new secret, bad role", method: "POST", path: "/console/secrets", body: formOf("role", "root"), ctype: fm, want: 400, breaks: "role enum"},
			{name: "console revoke", method: "POST", path: "/console/secrets/3/revoke", body: formOf("confirm", "yes"), ctype: fm, want: 303},
			{name: "console revoke, absent", method: "POST", path: "/console/secrets/99/revoke", body: formOf("confirm", "yes"), ctype: fm, want: 404},
			{name: "logout", method: "POST", path: "/console/logout", want: 303},
			{name: "console after logout", method: "GET", path: "/console/secrets", want: 303, breaks: "session cookie"},
			{name: "yank, bad purge", method: "DELETE", path: "/api/v1/updates/2?purge=maybe", secret: "admin", want: 400, breaks: "purge is a boolean"},
			{name: "yank", method: "DELETE", path: "/api/v1/updates/2", secret: "admin", want: 204, refusals: true},
			{name: "purge", method: "DELETE", path: "/api/v1/updates/1?purge=true", secret: "admin", want: 204},
			{name: "yank, absent", method: "DELETE", path: "/api/v1/updates/99", secret: "admin", want: 404},
			{name: "unknown route", method: "GET", path: "/api/v1/nothing", want: 404},
			{name: "wrong method", method: "PUT", path: "/api/v1/updates", secret: "admin", want: 405},
		}
		cv.run(t, ts, withRefusals(cases))

		// A server that verifies uploads, as servers do by default.
		verifying := newVerifyingServer(t, dsn)
		apkBuild, apkBuildType := upload("appVersion", "2267_00", "tmpFile", "wemesse.apk|"+apkFixture(t, "good.apk"))
		unsigned, unsignedType := upload("appVersion", "2267_01", "tmpFile", "wemesse.apk|"+apkFixture(t, "unsigned.apk"))
		cv.run(t, verifying, []contractCase{
			{name: "upload an APK", method: "POST", path: "/api/v1/updates", secret: "admin", body: apkBuild, ctype: apkBuildType, want: 201},
			{name: "upload, unsigned APK", method: "POST", path: "/api/v1/updates", secret: "admin", body: unsigned, ctype: unsignedType, want: 422},
			{name: "check, with the device's SDK", method: "GET", path: "/api/v1/updates/2266_00?sdk=30", want: 200},
			{name: "check, SDK below every build's", method: "GET", path: "/api/v1/updates/2266_00?sdk=23", want: 404},
			{name: "check, bad SDK", method: "GET", path: "/api/v1/updates/2266_00?sdk=0", want: 400, breaks: "sdk minimum"},
		})

		// The unhappy server: its database does not answer, and one failed
		// signature check per minute is allowed.
		down := newTestServer(t, dsn, func(d *handler.Deps, _ *service.SignaturesConfig) {
			d.Ready = func(context.Context) error { return errors.New("connection refused") }
			d.AuthFailuresPerMinute = 1
		})
		cv.run(t, down, []contractCase{
			{name: "not ready", method: "GET", path: "/readyz", want: 503},
			{name: "first failure", method: "GET", path: "/api/v1/stats", secret: "wrong", want: 401},
			{name: "too many failures", method: "GET", path: "/api/v1/stats", secret: "wrong", want: 429},
			{name: "console login, too many failures", method: "POST", path: "/console/login", body: formOf("secret", "not-a-secret"), ctype: fm, want: 429},
		})
		cv.checkCoverage(t)
	})
}

// withRefusals follows each case marked refusals with its request under
// the client secret and under a wrong one.
func withRefusals(cases []contractCase) []contractCase {
	var out []contractCase
	for _, c := range cases {
		out = append(out, c)
		if c.refusals {
			client, wrong := c, c
			client.name, client.secret, client.want, client.refusals = c.name+", client secret", "client", http.StatusForbidden, false
			wrong.name, wrong.secret, wrong.want, wrong.refusals = c.name+", wrong secret", "wrong", http.StatusUnauthorized, false
			out = append(out, client, wrong)
		}
	}
	return out
}

// notExercised lists the documented responses that TestOpenAPI_Responses
// cannot provoke on a healthy test server, with the test that covers each
// instead. A status is listed alone, or after an operationId.
var notExercised = map[string]string{
	"500":          "unexpected failures; TestRecoverJSON and the fault tests provoke them",
	"download 302": "needs object storage with redirected downloads; the S3 tests in cmd/wemesse cover it",
}

// contractValidator validates exchanges against the document and records
// which operation answered with which status.
type contractValidator struct {
	doc      *openapi3.T
	opts     *openapi3filter.Options
	exercise map[string]bool // "operationId status"
	statuses map[string]bool // every status seen
	etag     string
}

func newContractValidator(doc *openapi3.T) *contractValidator {
	return &contractValidator{
		doc: doc,
		opts: &openapi3filter.Options{
			IncludeResponseStatus: true,
			MultiError:            true,
			AuthenticationFunc:    checkCredentialsSent,
			// A failure names the broken rule; the schema is in the document.
			SchemaValidationOptions: []openapi3.SchemaValidationOption{openapi3.DisableSchemaErrorDetails()},
		},
		exercise: map[string]bool{},
		statuses: map[string]bool{},
	}
}

// checkCredentialsSent passes a security scheme when the request carries its
// credential at all: whether the secret is good is the server's to say.
func checkCredentialsSent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	h := in.RequestValidationInput.Request.Header
	switch s := in.SecurityScheme; {
	case s.Type == "apiKey" && s.In == "header" && h.Get(s.Name) != "":
		return nil
	case s.Type == "apiKey" && s.In == "cookie":
		if _, err := in.RequestValidationInput.Request.Cookie(s.Name); err == nil {
			return nil
		}
	case s.Type == "http" && s.Scheme == "bearer" && strings.HasPrefix(strings.ToLower(h.Get("Authorization")), "bearer "):
		return nil
	}
	return fmt.Errorf("no %s credential", in.SecuritySchemeName)
}

func (cv *contractValidator) run(t *testing.T, ts *testServer, cases []contractCase) {
	t.Helper()
	mux := routerOf(t, ts)
	// A browser's client: it keeps the console's session cookie, and
	// shows redirects rather than following them.
	client := *ts.Client()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	client.Jar = jar
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	newRequest := func(c contractCase, secret string, header []string) *http.Request {
		req, err := http.NewRequest(c.method, ts.URL+c.path, bytes.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if secret != "" {
			req.Header.Set("signature", secret)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		for _, ck := range jar.Cookies(req.URL) {
			req.AddCookie(ck) // for the validator's copy; the client adds its own
		}
		return req
	}
	for _, c := range cases {
		header := slices.Clone(c.header)
		for i := range header {
			if header[i] == "$etag" {
				header[i] = cv.etag
			}
		}
		if c.ctype != "" {
			header = append(header, "Content-Type", c.ctype)
		}
		secret := map[string]string{"admin": ts.admin, "client": ts.client, "wrong": "not-a-secret"}[c.secret]
		c.body = bytes.ReplaceAll(c.body, []byte("$admin"), []byte(url.QueryEscape(ts.admin)))
		req := newRequest(c, secret, header)
		send := newRequest(c, secret, header)
		send.Header.Del("Cookie")
		resp, err := client.Do(send)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != c.want {
			t.Errorf("%s: %s %s: status %d, want %d (body %.300s)", c.name, c.method, c.path, resp.StatusCode, c.want, body)
			continue
		}
		if e := resp.Header.Get("ETag"); e != "" {
			cv.etag = e
		}
		cv.statuses[fmt.Sprint(resp.StatusCode)] = true
		if err := cv.validate(mux, req, c, resp, body); err != nil {
			t.Errorf("%s: %s %s answered %d:\n%v", c.name, c.method, c.path, resp.StatusCode, err)
		}
	}
}

// validate checks one exchange against the document.
func (cv *contractValidator) validate(mux *chi.Mux, req *http.Request, c contractCase, resp *http.Response, body []byte) error {
	ctx := context.Background()
	rctx := chi.NewRouteContext()
	pattern := mux.Find(rctx, req.Method, req.URL.Path)
	var path string
	var item *openapi3.PathItem
	var op *openapi3.Operation
	for p, it := range cv.doc.Paths.Map() {
		if pattern != "" && pathShape(p) == pathShape(pattern) {
			path, item, op = p, it, it.GetOperation(req.Method)
		}
	}
	if op == nil {
		// No operation: the router's own 404 and 405 answer.
		return cv.validateRouterError(ctx, req, resp, body)
	}
	// chi's parameters, in order, under the document's names.
	params := map[string]string{}
	for i, name := range docParam.FindAllString(path, -1) {
		if i < len(rctx.URLParams.Values) {
			params[strings.Trim(name, "{}")] = rctx.URLParams.Values[i]
		}
	}
	in := &openapi3filter.RequestValidationInput{
		Request:    req,
		PathParams: params,
		Route:      &routers.Route{Spec: cv.doc, Path: path, PathItem: item, Method: req.Method, Operation: op},
		Options:    cv.opts,
	}
	reqErr := openapi3filter.ValidateRequest(ctx, in)
	switch {
	case c.breaks == "" && reqErr != nil:
		return fmt.Errorf("the request breaks %s: %v\n(describe the request in %s, or mark the case with what it breaks)", contractFile, reqErr, contractFile)
	case c.breaks != "" && reqErr == nil:
		return fmt.Errorf("the request breaks %q on purpose, but %s allows it: state that rule in the document", c.breaks, contractFile)
	}
	status := fmt.Sprint(resp.StatusCode)
	cv.exercise[op.OperationID+" "+status] = true
	err := openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                cv.opts,
	})
	if err != nil {
		return contractFix(req.Method, path, op, resp.StatusCode, body, err)
	}
	return nil
}

// validateRouterError checks a response to a request that no operation
// serves against components.responses NotFound or MethodNotAllowed.
func (cv *contractValidator) validateRouterError(ctx context.Context, req *http.Request, resp *http.Response, body []byte) error {
	name := map[int]string{http.StatusNotFound: "NotFound", http.StatusMethodNotAllowed: "MethodNotAllowed"}[resp.StatusCode]
	ref := cv.doc.Components.Responses[name]
	if ref == nil {
		return fmt.Errorf("%s %s matches no operation and answered %d; only 404 and 405 (components.responses NotFound and MethodNotAllowed) are documented for that", req.Method, req.URL.Path, resp.StatusCode)
	}
	status := fmt.Sprint(resp.StatusCode)
	// A stand-in operation with that one response.
	op := &openapi3.Operation{Responses: openapi3.NewResponses(openapi3.WithStatus(resp.StatusCode, ref))}
	in := &openapi3filter.RequestValidationInput{
		Request: req,
		Route:   &routers.Route{Spec: cv.doc, Path: req.URL.Path, PathItem: &openapi3.PathItem{}, Method: req.Method, Operation: op},
		Options: cv.opts,
	}
	err := openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(body)), Options: cv.opts,
	})
	if err != nil {
		return fmt.Errorf("the answer breaks components.responses.%s of %s (status %s): %v\nbody: %.500s", name, contractFile, status, err, body)
	}
	return nil
}

// contractFix explains a response the document does not allow, and what to
// change in the document if the server is right.
func contractFix(method, path string, op *openapi3.Operation, status int, body []byte, err error) error {
	var b strings.Builder
	fmt.Fprintf(&b, "the response breaks %s (paths.%q.%s, operationId %s):\n", contractFile, path, strings.ToLower(method), op.OperationID)
	for _, line := range strings.Split(strings.TrimSpace(err.Error()), "\n") {
		fmt.Fprintf(&b, "    %s\n", line)
	}
	fmt.Fprintf(&b, "body: %.500s\n", bytes.TrimSpace(body))
	fmt.Fprintf(&b, "If the server is right, change %s in the same commit:\n", contractFile)
	if op.Responses.Status(status) == nil {
		fmt.Fprintf(&b, "  - add responses.\"%d\" to that operation (errors: $ref \"#/components/responses/<Name>\");\n", status)
	}
	b.WriteString("  - a new key: add it to the response schema's properties (with its type) and to required;\n" +
		"  - a renamed or removed key: clients depend on the old one; keep it, or add the new key beside it;\n" +
		"  - a new header or media type: add it under the response's headers or content.\n")
	return errors.New(b.String())
}

// checkCoverage fails for a documented operation, or one of its 2xx
// statuses, that no request exercised; and for any other status documented
// somewhere that no request provoked anywhere.
func (cv *contractValidator) checkCoverage(t *testing.T) {
	t.Helper()
	exercised := map[string]bool{} // operations
	for k := range cv.exercise {
		op, _, _ := strings.Cut(k, " ")
		exercised[op] = true
	}
	var missing []string
	for path, item := range cv.doc.Paths.Map() {
		for method, op := range item.Operations() {
			if !exercised[op.OperationID] {
				missing = append(missing, fmt.Sprintf("%s %s (%s), with any status", method, path, op.OperationID))
			}
			for status := range op.Responses.Map() {
				key := op.OperationID + " " + status
				if cv.exercise[key] || notExercised[key] != "" || notExercised[status] != "" {
					continue
				}
				if strings.HasPrefix(status, "2") || !cv.statuses[status] {
					missing = append(missing, fmt.Sprintf("%s %s (%s) → %s", method, path, op.OperationID, status))
				}
			}
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("%s documents %s, but no request in TestOpenAPI_Responses provokes it: add a case that does, or list it in notExercised with the test that covers it", contractFile, m)
	}
}

// routerOf is the chi router a test server serves, which the contract tests
// walk and ask which route a request takes.
func routerOf(tb testing.TB, ts *testServer) *chi.Mux {
	tb.Helper()
	mux, ok := ts.Config.Handler.(*chi.Mux)
	if !ok {
		tb.Fatalf("handler.NewServer returned %T; the contract tests need the *chi.Mux itself to walk its routes", ts.Config.Handler)
	}
	return mux
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
