package handler

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

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

// releaseLine is one row of a releases table, formatted once: templates
// reach a flat struct's string fields many times faster than the fields
// of an embedded struct through reflection.
type releaseLine struct {
	ID                                        int64
	Version, ABI, Track, State                string
	Devices, Share, Downloads, Size, Uploaded string
	APK, UploadedBy                           string
	Rollout                                   int
	Mandatory                                 bool
}

// line is rel's row in a releases table.
func (a adoption) line(rel model.Release) releaseLine {
	row := a.row(rel)
	abi := cmp.Or(rel.TargetABI, "universal")
	return releaseLine{
		ID: rel.ID, Version: rel.Version.String(), ABI: abi, Track: rel.Track, State: releaseState(rel),
		Devices: thousands(row.Devices), Share: row.Share, Downloads: thousands(rel.Downloads), Size: rel.SizeText,
		Uploaded: formatDate(rel.CreatedAt), APK: apkFacts(rel), Rollout: rel.Rollout, Mandatory: !rel.Skipped,
	}
}

// apkFacts sums up what a release's APK declares: "com.wemesse 1.0.3
// (code 3), SDK 21–34"; empty when it was not verified.
func apkFacts(rel model.Release) string {
	if rel.PackageName == "" {
		return ""
	}
	return fmt.Sprintf("%s %s (code %d), SDK %d–%d", rel.PackageName, rel.VersionName, rel.VersionCode, rel.MinSdk, rel.TargetSdk)
}

// uploaders fills in who uploaded each line's release, from the audit
// trail: one query for the page.
func (c *consoleDeps) uploaders(r *http.Request, lines []releaseLine) error {
	ids := make([]int64, len(lines))
	for i, l := range lines {
		ids[i] = l.ID
	}
	by, err := c.Audit.Uploaders(r.Context(), ids)
	if err != nil {
		return err
	}
	for i := range lines {
		lines[i].UploadedBy = by[lines[i].ID]
	}
	return nil
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
	Rollouts []releaseLine
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
			d.Rollouts = append(d.Rollouts, a.line(rel))
		}
	}
	c.render(w, r, http.StatusOK, "dashboard", "Dashboard", d)
}

type releasesData struct {
	Rows       []releaseLine
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
	rows := make([]releaseLine, 0, releasesPerPage)
	for i := len(a.releases) - 1 - (p-1)*releasesPerPage; i >= 0 && len(rows) < releasesPerPage; i-- {
		rows = append(rows, a.line(a.releases[i]))
	}
	if err := c.uploaders(r, rows); err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "releases", "Releases", releasesData{Rows: rows, Page: p, Last: last})
}

type releaseData struct {
	releaseRow
	Line        releaseLine // the release as the releases table shows it
	Chart       string
	Series      []service.Series
	Tracks      model.Tracks
	MandatoryAt string // for a datetime-local input, UTC
	StepRows    []int  // empty rows of the schedule form
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
	line := []releaseLine{a.line(a.releases[i])}
	if err := c.uploaders(r, line); err != nil {
		c.fail(w, r, err)
		return
	}
	d := releaseData{releaseRow: a.row(a.releases[i]), Line: line[0], Chart: toChartJSON(chart), Series: chart.Series, Tracks: c.Releases.Tracks()}
	if at := d.Release.MandatoryAt; at != nil {
		d.MandatoryAt = at.UTC().Format(localMinute)
	}
	for n := range min(3, model.MaxSteps-len(d.Schedule)) {
		d.StepRows = append(d.StepRows, n)
	}
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

// localMinute is how a datetime-local input writes a time; the console
// reads and writes them in UTC.
const localMinute = "2006-01-02T15:04"

func parseMinute(field, v string) (time.Time, error) {
	t, err := time.ParseInLocation(localMinute, strings.TrimSpace(v), time.UTC)
	if err != nil {
		return time.Time{}, model.Errorf(model.Invalid, "%s must be a date and time like 2026-12-24T18:00 (UTC).", field)
	}
	return t, nil
}

// releaseHalted halts or resumes a release, as PATCH {"Halted": …} does.
func (c *consoleDeps) releaseHalted(halted bool) http.HandlerFunc {
	done := map[bool]string{true: "halt", false: "resume"}[halted]
	return func(w http.ResponseWriter, r *http.Request) {
		c.edit(w, r, done, func(id int64) error {
			_, err := c.Releases.Edit(r.Context(), id, model.ReleasePatch{Halted: &halted})
			return err
		})
	}
}

// releasePromote moves a release to another track, as POST …/promote does.
func (c *consoleDeps) releasePromote(w http.ResponseWriter, r *http.Request) {
	c.edit(w, r, "promote", func(id int64) error {
		var rollout *int
		if v := strings.TrimSpace(r.PostFormValue("rollout")); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return model.Errorf(model.Invalid, "Rollout must be an integer from 1 to 100.")
			}
			rollout = &n
		}
		_, err := c.Releases.Promote(r.Context(), id, r.PostFormValue("track"), rollout)
		return err
	})
}

// releaseMandatory sets or clears the time from which a release is
// mandatory.
func (c *consoleDeps) releaseMandatory(w http.ResponseWriter, r *http.Request) {
	c.edit(w, r, "mandatory", func(id int64) error {
		deadline := model.Deadline{}
		if v := r.PostFormValue("mandatoryAt"); strings.TrimSpace(v) != "" {
			at, err := parseMinute("Mandatory from", v)
			if err != nil {
				return err
			}
			deadline.At = &at
		}
		_, err := c.Releases.Edit(r.Context(), id, model.ReleasePatch{MandatoryAt: &deadline})
		return err
	})
}

// releaseSchedule replaces a release's pending rollout steps with the
// form's rows (at, rollout); rows left empty are ignored, and no row
// clears the schedule.
func (c *consoleDeps) releaseSchedule(w http.ResponseWriter, r *http.Request) {
	c.edit(w, r, "schedule", func(id int64) error {
		ats, rollouts := r.PostForm["at"], r.PostForm["rollout"]
		if len(ats) != len(rollouts) || len(ats) > model.MaxSteps {
			return model.Errorf(model.Invalid, "The schedule form is malformed.")
		}
		steps := []model.Step{}
		for i := range ats {
			if strings.TrimSpace(ats[i]) == "" && strings.TrimSpace(rollouts[i]) == "" {
				continue
			}
			at, err := parseMinute(fmt.Sprintf("Step %d's time", len(steps)+1), ats[i])
			if err != nil {
				return err
			}
			n, err := strconv.Atoi(strings.TrimSpace(rollouts[i]))
			if err != nil {
				return model.Errorf(model.Invalid, "Step %d: Rollout must be an integer from 1 to 100.", len(steps)+1)
			}
			steps = append(steps, model.Step{At: at, Rollout: n})
		}
		_, err := c.Releases.Edit(r.Context(), id, model.ReleasePatch{Schedule: &steps})
		return err
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
	Now        time.Time // to tell expired secrets
	Roles      []string
	Lifetimes  []lifetime
	NewSecret  string // shown once, in the answer to its creation
	NewRole    string
}

func (c *consoleDeps) showSecrets(w http.ResponseWriter, r *http.Request, status int, d secretsData) {
	sigs, err := c.Signatures.List(r.Context())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d.Signatures, d.Roles, d.Lifetimes, d.Now = sigs, []string{model.RoleAdmin, model.RoleClient}, secretLifetimes, time.Now()
	c.render(w, r, status, "secrets", "Secrets", d)
}

func (c *consoleDeps) secrets(w http.ResponseWriter, r *http.Request) {
	c.showSecrets(w, r, http.StatusOK, secretsData{})
}

// lifetime is an expiry the secrets form offers.
type lifetime struct {
	Value, Label string
	Days         int
}

// secretLifetimes are the expiries the secrets form offers.
var secretLifetimes = []lifetime{{"", "never", 0}, {"1", "in 1 day", 1}, {"7", "in 7 days", 7}, {"30", "in 30 days", 30}, {"90", "in 90 days", 90}, {"365", "in a year", 365}}

// secretCreate makes a secret and shows it in its answer, once: never in a
// URL, and the page is not cached (consoleHeaders).
func (c *consoleDeps) secretCreate(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxJSONBytes)
	n := service.NewSignature{Role: r.PostFormValue("role"), Name: strings.TrimSpace(r.PostFormValue("name"))}
	if v := r.PostFormValue("expires"); v != "" {
		i := slices.IndexFunc(secretLifetimes, func(l lifetime) bool { return l.Value == v })
		if i < 0 {
			c.fail(w, r, model.Errorf(model.Invalid, "Pick an expiry from the list."))
			return
		}
		n.ExpiresAt = time.Now().AddDate(0, 0, secretLifetimes[i].Days)
	}
	secret, sig, err := c.Signatures.CreateNamed(r.Context(), n)
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

// auditPerPage is how many entries the audit screen shows at once.
const auditPerPage = 50

type auditData struct {
	Filter  model.AuditFilter
	Actions []string
	Entries []model.AuditEntry
	Next    int64 // the before= of the next page; 0 when this is the last
}

// audit shows the trail, newest first, filtered by actor, action and
// release.
func (c *consoleDeps) audit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := model.AuditFilter{Actor: strings.TrimSpace(q.Get("actor")), Action: q.Get("action"), Limit: auditPerPage}
	for name, dst := range map[string]*int64{"release": &f.ReleaseID, "before": &f.Before} {
		if v := strings.TrimSpace(q.Get(name)); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				c.fail(w, r, model.Errorf(model.Invalid, "%s must be an id.", name))
				return
			}
			*dst = n
		}
	}
	entries, err := c.Audit.Search(r.Context(), f)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d := auditData{Filter: f, Entries: entries, Actions: model.AuditActions}
	if len(entries) == auditPerPage {
		d.Next = entries[len(entries)-1].ID
	}
	c.render(w, r, http.StatusOK, "audit", "Audit trail", d)
}
