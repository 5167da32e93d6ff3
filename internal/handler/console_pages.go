package handler

import (
	"cmp"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/service"
)

// Console page sizes and chart bounds.
const (
	chartDays       = 90  // the adoption charts' span
	chartReleases   = 8   // releases the dashboard draws on their own; the rest are summed
	releasesPerPage = 100 // rows of the releases table
	devicesPerPage  = 50  // rows of a device search
)

// releaseRow is a release with its adoption today.
type releaseRow struct {
	model.Release
	Devices, Active30d int64
	Share              string // of all active devices
}

// adoption is the releases and today's adoption, both read from memory:
// a page's cost does not grow with the number of devices, and it builds
// rows only for the releases it shows.
type adoption struct {
	releases []model.Release    // by id; shared, read only
	today    []model.ReleaseDay // by release id (History.Today)
	total    model.ReleaseDay   // over every release
}

func (c *consoleDeps) adoption(r *http.Request) (adoption, error) {
	rels, err := c.Releases.Current(r.Context())
	if err != nil {
		return adoption{}, err
	}
	today, err := c.History.Today(r.Context())
	if err != nil {
		return adoption{}, err
	}
	a := adoption{releases: rels, today: today.Releases}
	for _, d := range today.Releases {
		a.total.Devices += d.Devices
		a.total.Active30d += d.Active30d
		a.total.NewDevices += d.NewDevices
	}
	for _, rel := range rels {
		a.total.Downloads += rel.Downloads
	}
	return a, nil
}

// row is rel with its adoption today.
func (a adoption) row(rel model.Release) releaseRow {
	var d model.ReleaseDay
	if i, ok := slices.BinarySearchFunc(a.today, rel.ID, func(d model.ReleaseDay, id int64) int { return cmp.Compare(d.ReleaseID, id) }); ok {
		d = a.today[i]
	}
	return releaseRow{Release: rel, Devices: d.Devices, Active30d: d.Active30d, Share: percent(d.Active30d, a.total.Active30d)}
}

// chartJSON is what console.js draws: days as Unix seconds, one series
// per label.
type chartJSON struct {
	Days   []int64      `json:"days"`
	Series []seriesJSON `json:"series"`
}

type seriesJSON struct {
	Label  string  `json:"label"`
	Values []int64 `json:"values"`
}

func toChartJSON(ch service.Chart) string {
	out := chartJSON{Days: make([]int64, len(ch.Days))}
	for i, d := range ch.Days {
		out.Days[i] = d.Unix()
	}
	for _, s := range ch.Series {
		out.Series = append(out.Series, seriesJSON{Label: s.Label, Values: s.Devices})
	}
	b, _ := json.Marshal(out) // plain slices and strings: cannot fail
	return string(b)
}

type dashboardData struct {
	Total    model.ReleaseDay
	Releases int
	Chart    string
	Series   []service.Series
	Rollouts []releaseRow
}

func (c *consoleDeps) dashboard(w http.ResponseWriter, r *http.Request) {
	a, err := c.adoption(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	byDevices := slices.Clone(a.today)
	slices.SortFunc(byDevices, func(x, y model.ReleaseDay) int {
		return cmp.Or(cmp.Compare(y.Devices, x.Devices), cmp.Compare(y.ReleaseID, x.ReleaseID))
	})
	var ids []int64
	for _, d := range byDevices[:min(chartReleases, len(byDevices))] {
		ids = append(ids, d.ReleaseID)
	}
	chart, err := c.History.Chart(r.Context(), chartDays, ids, len(a.today) > len(ids))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d := dashboardData{Total: a.total, Releases: len(a.releases), Chart: toChartJSON(chart), Series: chart.Series}
	for _, rel := range slices.Backward(a.releases) {
		if !rel.Yanked && rel.Rollout < model.FullRollout {
			d.Rollouts = append(d.Rollouts, a.row(rel))
		}
	}
	c.render(w, r, http.StatusOK, "dashboard", "Dashboard", d)
}

type releasesData struct {
	Rows       []releaseRow
	Page, Last int
}

func (c *consoleDeps) releaseList(w http.ResponseWriter, r *http.Request) {
	a, err := c.adoption(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	last := max(1, (len(a.releases)+releasesPerPage-1)/releasesPerPage)
	p, err := strconv.Atoi(cmp.Or(r.URL.Query().Get("page"), "1"))
	if err != nil || p < 1 || p > last {
		c.fail(w, r, model.Errorf(model.NotFound, "There is no page %s of releases.", r.URL.Query().Get("page")))
		return
	}
	// Newest first: page p holds ids from the end.
	rows := make([]releaseRow, 0, releasesPerPage)
	for i := len(a.releases) - 1 - (p-1)*releasesPerPage; i >= 0 && len(rows) < releasesPerPage; i-- {
		rows = append(rows, a.row(a.releases[i]))
	}
	c.render(w, r, http.StatusOK, "releases", "Releases", releasesData{Rows: rows, Page: p, Last: last})
}

type releaseData struct {
	releaseRow
	Chart  string
	Series []service.Series
}

func releaseID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id < 1 {
		return 0, model.Errorf(model.NotFound, "There is no such release.")
	}
	return id, nil
}

func (c *consoleDeps) release(w http.ResponseWriter, r *http.Request) {
	c.showRelease(w, r, http.StatusOK, "")
}

// showRelease renders release {id}, with an error message when a change
// to it failed.
func (c *consoleDeps) showRelease(w http.ResponseWriter, r *http.Request, status int, errMsg string) {
	id, err := releaseID(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	a, err := c.adoption(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	i, found := slices.BinarySearchFunc(a.releases, id, func(rel model.Release, id int64) int { return cmp.Compare(rel.ID, id) })
	if !found {
		c.fail(w, r, model.Errorf(model.NotFound, "There is no release %d; it may have been purged.", id))
		return
	}
	chart, err := c.History.Chart(r.Context(), chartDays, []int64{id}, false)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d := releaseData{releaseRow: a.row(a.releases[i]), Chart: toChartJSON(chart), Series: chart.Series}
	title := "Release " + d.Version.String()
	if errMsg != "" {
		p := page{Title: title, Nav: "release", Actor: actorOf(r), Error: errMsg, Data: d}
		c.renderPage(w, r, status, "release", p)
		return
	}
	c.render(w, r, status, "release", title, d)
}

// edit applies a change to release {id} through the same service method
// as the API, then shows the release again: with done's notice after a
// redirect, or with the error.
func (c *consoleDeps) edit(w http.ResponseWriter, r *http.Request, done string, change func(id int64) error) {
	id, err := releaseID(r)
	if err == nil {
		r.Body = http.MaxBytesReader(w, r.Body, model.MaxNotesLen+maxJSONBytes)
		if err = r.ParseForm(); err != nil {
			err = model.Errorf(model.Invalid, "The form is too large or malformed.")
		}
	}
	if err == nil {
		err = change(id)
	}
	switch {
	case err == nil && done == "purge":
		http.Redirect(w, r, consolePrefix+"/releases?done=purge", http.StatusSeeOther)
	case err == nil:
		http.Redirect(w, r, consolePrefix+"/releases/"+strconv.FormatInt(id, 10)+"?done="+done, http.StatusSeeOther)
	case model.ErrorCode(err) == model.Invalid:
		c.showRelease(w, r, http.StatusBadRequest, model.ErrorMessage(err))
	default:
		c.fail(w, r, err)
	}
}

var errConfirm = model.Errorf(model.Invalid, "Tick the box to confirm.")

func (c *consoleDeps) releaseNotes(w http.ResponseWriter, r *http.Request) {
	c.edit(w, r, "notes", func(id int64) error {
		notes := strings.ReplaceAll(r.PostFormValue("notes"), "\r\n", "\n")
		_, err := c.Releases.Edit(r.Context(), id, model.ReleasePatch{Notes: &notes})
		return err
	})
}

func (c *consoleDeps) releaseRollout(w http.ResponseWriter, r *http.Request) {
	c.edit(w, r, "rollout", func(id int64) error {
		n, err := strconv.Atoi(r.PostFormValue("rollout"))
		if err != nil {
			return model.Errorf(model.Invalid, "Rollout must be an integer from 1 to 100.")
		}
		_, err = c.Releases.Edit(r.Context(), id, model.ReleasePatch{Rollout: &n})
		return err
	})
}

func (c *consoleDeps) releaseYank(w http.ResponseWriter, r *http.Request) {
	c.edit(w, r, "yank", func(id int64) error {
		if r.PostFormValue("confirm") != "yes" {
			return errConfirm
		}
		return c.Releases.Yank(r.Context(), id, false)
	})
}

func (c *consoleDeps) releasePurge(w http.ResponseWriter, r *http.Request) {
	c.edit(w, r, "purge", func(id int64) error {
		if r.PostFormValue("confirm") != "yes" {
			return errConfirm
		}
		return c.Releases.Yank(r.Context(), id, true)
	})
}

type uploadData struct {
	ABIs     []string
	MaxBytes int64
	Uploaded *model.Release
}

func (c *consoleDeps) uploadData() uploadData {
	return uploadData{ABIs: model.ABIs, MaxBytes: c.MaxUploadBytes}
}

func (c *consoleDeps) uploadPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "upload", "Upload", c.uploadData())
}

// upload receives a build through the same path as POST /api/v1/updates.
// Under htmx only the result is sent back, for the form's result area.
func (c *consoleDeps) upload(w http.ResponseWriter, r *http.Request) {
	d := c.uploadData()
	rel, err := upload(w, r, c.Releases, c.MaxUploadBytes)
	if err != nil {
		if model.ErrorCode(err) == model.Internal || model.ErrorCode(err) == model.Unavailable {
			c.fail(w, r, err)
			return
		}
		c.renderPage(w, r, statusOf[model.ErrorCode(err)], "upload", page{Title: "Upload", Nav: "upload", Actor: actorOf(r), Error: model.ErrorMessage(err), Data: d})
		return
	}
	d.Uploaded = &rel
	c.render(w, r, http.StatusCreated, "upload", "Upload", d)
}

type devicesData struct {
	Query string
	Users []model.User
	Next  int64 // the after= of the next page; 0 when this is the last
}

func (c *consoleDeps) devices(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	var after int64
	if v := r.URL.Query().Get("after"); v != "" {
		var err error
		if after, err = strconv.ParseInt(v, 10, 64); err != nil {
			c.fail(w, r, model.Errorf(model.Invalid, "after must be a non-negative id."))
			return
		}
	}
	users, err := c.Users.Search(r.Context(), q, model.Page{After: after, Limit: devicesPerPage})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d := devicesData{Query: q, Users: users}
	if len(users) == devicesPerPage {
		d.Next = users[len(users)-1].ID
	}
	c.render(w, r, http.StatusOK, "devices", "Devices", d)
}

type secretsData struct {
	Signatures []model.Signature
	Roles      []string
	NewSecret  string // shown once, in the answer to its creation
	NewRole    string
}

func (c *consoleDeps) showSecrets(w http.ResponseWriter, r *http.Request, status int, d secretsData) {
	sigs, err := c.Signatures.List(r.Context())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d.Signatures, d.Roles = sigs, []string{model.RoleAdmin, model.RoleClient}
	c.render(w, r, status, "secrets", "Secrets", d)
}

func (c *consoleDeps) secrets(w http.ResponseWriter, r *http.Request) {
	c.showSecrets(w, r, http.StatusOK, secretsData{})
}

// secretCreate makes a secret and shows it in its answer, once: never in a
// URL, and the page is not cached (consoleHeaders).
func (c *consoleDeps) secretCreate(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxJSONBytes)
	secret, sig, err := c.Signatures.Create(r.Context(), r.PostFormValue("role"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.showSecrets(w, r, http.StatusCreated, secretsData{NewSecret: secret, NewRole: sig.Role})
}

func (c *consoleDeps) secretRevoke(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxJSONBytes)
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil {
		c.fail(w, r, model.Errorf(model.NotFound, "There is no such secret."))
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		c.fail(w, r, errConfirm)
		return
	}
	if err := c.Signatures.Revoke(r.Context(), id); err != nil {
		c.fail(w, r, err)
		return
	}
	http.Redirect(w, r, consolePrefix+"/secrets?done=revoke", http.StatusSeeOther)
}
