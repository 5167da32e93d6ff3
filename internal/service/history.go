package service

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/wemesse/server/internal/model"
)

// HistoryStore keeps the daily adoption record.
type HistoryStore interface {
	// DayCounts counts the devices per version and ABI registered before
	// end, those of them seen since active, and those registered in
	// [start, end); Unix seconds.
	DayCounts(ctx context.Context, start, end, active int64) ([]model.DayCount, error)
	// LastDay returns the latest recorded day; ok false when none is.
	LastDay(ctx context.Context) (day time.Time, ok bool, err error)
	// SaveDay replaces the rows of day with rows, atomically.
	SaveDay(ctx context.Context, day time.Time, rows []model.ReleaseDay) error
	// Days returns the rows recorded from through to, by day and release
	// id; with non-nil ids only those releases'.
	Days(ctx context.Context, from, to time.Time, ids []int64) ([]model.ReleaseDay, error)
	// DayTotals returns each recorded day's sums over every release.
	DayTotals(ctx context.Context, from, to time.Time) ([]model.ReleaseDay, error)
	// Exclusive runs fn under the cluster-wide history lock and reports
	// true, or runs nothing and reports false when another server holds it.
	Exclusive(ctx context.Context, fn func(ctx context.Context) error) (bool, error)
}

// HistoryConfig tunes History.
type HistoryConfig struct {
	DefaultABI string // ABI of a device that names none
	// Live is how often Run counts today again and records the days that
	// ended; 0 counts today on every call.
	Live time.Duration
	// Current returns the releases as they stand, without a database read
	// (Releases.Current); nil: the store's List.
	Current func(ctx context.Context) ([]model.Release, error)
}

// History is the daily adoption record of every release. Past days are
// recorded once, by one server of the cluster (Record); today is counted
// from the users table as it stands (at most Live old).
type History struct {
	store    HistoryStore
	releases ReleaseStore
	cfg      HistoryConfig
	now      func() time.Time
	log      *slog.Logger

	mu        sync.Mutex // one count of today at a time
	counts    []model.DayCount
	countedAt time.Time
	// today is counts added up per release, kept while neither the counts
	// nor the releases (the in-memory list, which a reload replaces and
	// never changes) move: pages ask for it on every view.
	today    []model.ReleaseDay
	todayFor []model.Release

	pastMu sync.Mutex
	past   map[pastKey]pastRows // see pastDays
}

// NewHistory returns a History. now is the clock, time.Now in production.
func NewHistory(store HistoryStore, releases ReleaseStore, cfg HistoryConfig, now func() time.Time, log *slog.Logger) *History {
	return &History{store: store, releases: releases, cfg: cfg, now: now, log: log}
}

const day = 24 * time.Hour

// Record writes every day not yet recorded, up to yesterday: after the
// last recorded day or, on a first run, from the day of the first release
// (at most model.MaxHistoryDays back). Only one server of a cluster records
// at a time; days already recorded are left alone, so running it again, or
// on every server, counts nothing twice.
func (h *History) Record(ctx context.Context) error {
	defer h.forgetPast()
	_, err := h.store.Exclusive(ctx, func(ctx context.Context) error {
		releases, err := h.releases.List(ctx)
		if err != nil || len(releases) == 0 {
			return err
		}
		today := model.Day(h.now())
		from := today.Add(-model.MaxHistoryDays * day)
		last, ok, err := h.store.LastDay(ctx)
		switch {
		case err != nil:
			return err
		case ok:
			from = later(from, last.Add(day))
		default:
			first := slices.MinFunc(releases, func(a, b model.Release) int { return a.CreatedAt.Compare(b.CreatedAt) })
			from = later(from, model.Day(first.CreatedAt))
		}
		for d := from; d.Before(today); d = d.Add(day) {
			rows, err := h.count(ctx, releases, d, d.Add(day))
			if err != nil {
				return err
			}
			if err := h.store.SaveDay(ctx, d, rows); err != nil {
				return err
			}
			h.log.Info("recorded adoption history", "day", d.Format(time.DateOnly), "releases", len(rows))
		}
		return nil
	})
	return err
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// count returns the adoption of each release created before end, as of
// end, with the day that starts at start. Devices count where their
// reports do: the build for their ABI, else the universal one.
func (h *History) count(ctx context.Context, releases []model.Release, start, end time.Time) ([]model.ReleaseDay, error) {
	counts, err := h.store.DayCounts(ctx, start.Unix(), end.Unix(), end.Add(-activeWindow).Unix())
	if err != nil {
		return nil, err
	}
	return h.attribute(releases, counts, start, end), nil
}

// attribute adds counts up per release, for the releases created before
// end (every release when end is zero: today's are all that exist).
func (h *History) attribute(releases []model.Release, counts []model.DayCount, start, end time.Time) []model.ReleaseDay {
	var existing []model.Release
	for _, r := range releases {
		if end.IsZero() || r.CreatedAt.Before(end) {
			existing = append(existing, r)
		}
	}
	find := releaseFinder(existing, h.cfg.DefaultABI)
	rows := make([]model.ReleaseDay, len(existing))
	for i, r := range existing {
		rows[i] = model.ReleaseDay{Day: start, ReleaseID: r.ID, Version: r.Version.String(), TargetABI: r.TargetABI, Downloads: r.Downloads}
	}
	for _, c := range counts {
		if i, ok := find(c.Version, c.TargetABI); ok {
			rows[i].Devices += c.Devices
			rows[i].Active30d += c.Active30d
			rows[i].NewDevices += c.NewDevices
		}
	}
	return rows
}

// releaseFinder returns the index in releases of the release that counts a
// device on version with abi: the build for its ABI (abi, or defaultABI
// when empty), else the universal one.
func releaseFinder(releases []model.Release, defaultABI string) func(version, abi string) (int, bool) {
	type key struct{ version, abi string }
	index := make(map[key]int, len(releases))
	for i, r := range releases {
		index[key{r.Version.String(), r.TargetABI}] = i
	}
	return func(version, abi string) (int, bool) {
		if abi == "" {
			abi = defaultABI
		}
		if i, ok := index[key{version, abi}]; ok {
			return i, true
		}
		i, ok := index[key{version, ""}]
		return i, ok
	}
}

// Today returns today's adoption, its releases ordered by id: the devices
// as Run last counted them (or counted now when Run has not within two
// Live periods: counting reads every user, so pages must not do it on each
// request), added up per release as the releases stand now, so that a new
// release, a purge or a download shows at once. Callers must not change
// the rows: they are shared until either moves.
func (h *History) Today(ctx context.Context) (model.HistoryDay, error) {
	return h.countToday(ctx, false)
}

func (h *History) countToday(ctx context.Context, force bool) (model.HistoryDay, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	start := model.Day(now)
	if force || h.countedAt.IsZero() || now.Sub(h.countedAt) >= 2*h.cfg.Live || !model.Day(h.countedAt).Equal(start) {
		// Up to the end of this second: devices that registered in it count.
		end := now.Truncate(time.Second).Add(time.Second)
		counts, err := h.store.DayCounts(ctx, start.Unix(), end.Unix(), end.Add(-activeWindow).Unix())
		if err != nil {
			return model.HistoryDay{}, err
		}
		h.counts, h.countedAt, h.today = counts, now, nil
	}
	releases, err := h.current(ctx)
	if err != nil {
		return model.HistoryDay{}, err
	}
	if h.today == nil || !sameList(h.todayFor, releases) {
		h.today, h.todayFor = h.attribute(releases, h.counts, start, time.Time{}), releases
	}
	return model.HistoryDay{Day: start, Releases: h.today}, nil
}

// sameList reports whether a and b are the same slice of releases, not
// merely equal ones.
func sameList(a, b []model.Release) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// current returns the releases as they stand: from memory when the
// configuration says how, else from the store.
func (h *History) current(ctx context.Context) ([]model.Release, error) {
	if h.cfg.Current != nil {
		return h.cfg.Current(ctx)
	}
	return h.releases.List(ctx)
}

// Days returns the adoption of the last days days, oldest first, the last
// being today (live); a day with no record has no releases. keep, when
// not nil, says which releases to return. Invalid unless 1 ≤ days ≤
// model.MaxHistoryDays.
func (h *History) Days(ctx context.Context, days int, keep func(id int64) bool) ([]model.HistoryDay, error) {
	if days < 1 || days > model.MaxHistoryDays {
		return nil, model.Errorf(model.Invalid, "days must be an integer from 1 to %d.", model.MaxHistoryDays)
	}
	today, err := h.Today(ctx)
	if err != nil {
		return nil, err
	}
	from := today.Day.Add(-time.Duration(days-1) * day)
	rows, err := h.store.Days(ctx, from, today.Day.Add(-day), nil)
	if err != nil {
		return nil, err
	}
	out := make([]model.HistoryDay, days)
	for i := range out {
		out[i].Day = from.Add(time.Duration(i) * day)
	}
	out[days-1].Releases = today.Releases
	for _, r := range rows {
		if i := int(r.Day.Sub(from) / day); i >= 0 && i < days-1 {
			out[i].Releases = append(out[i].Releases, r)
		}
	}
	if keep != nil {
		for i := range out {
			out[i].Releases = slices.DeleteFunc(slices.Clone(out[i].Releases), func(r model.ReleaseDay) bool { return !keep(r.ReleaseID) })
		}
	}
	return out, nil
}

// Series is one line of an adoption chart: devices per day.
type Series struct {
	ReleaseID int64 // 0 for the sum of the releases not drawn on their own
	Label     string
	Devices   []int64
}

// Chart is devices per release over days, for a stacked chart.
type Chart struct {
	Days   []time.Time
	Series []Series
}

// Chart returns the devices on each of the releases ids over the last days
// days (today live), and, with other, one more series summing every other
// release. Its cost does not grow with the number of releases beyond ids.
func (h *History) Chart(ctx context.Context, days int, ids []int64, other bool) (Chart, error) {
	if days < 1 || days > model.MaxHistoryDays {
		return Chart{}, model.Errorf(model.Invalid, "days must be an integer from 1 to %d.", model.MaxHistoryDays)
	}
	today, err := h.Today(ctx)
	if err != nil {
		return Chart{}, err
	}
	from := today.Day.Add(-time.Duration(days-1) * day)
	yesterday := today.Day.Add(-day)
	past, err := h.pastDays(ctx, from, yesterday, ids, other)
	if err != nil {
		return Chart{}, err
	}
	rows := past.rows
	c := Chart{Days: make([]time.Time, days)}
	for i := range c.Days {
		c.Days[i] = from.Add(time.Duration(i) * day)
	}
	pos := make(map[int64]int, len(ids))
	for _, id := range ids {
		pos[id] = len(c.Series)
		c.Series = append(c.Series, Series{ReleaseID: id, Devices: make([]int64, days)})
	}
	drawn := make([]int64, days) // per day, the devices of the drawn releases
	place := func(i int, r model.ReleaseDay) {
		if p, ok := pos[r.ReleaseID]; ok {
			c.Series[p].Devices[i] = r.Devices
			c.Series[p].Label = cmp.Or(c.Series[p].Label, label(r.Version, r.TargetABI))
			drawn[i] += r.Devices
		}
	}
	for _, r := range rows {
		if i := int(r.Day.Sub(from) / day); i >= 0 && i < days-1 {
			place(i, r)
		}
	}
	var todayTotal int64
	for _, r := range today.Releases {
		place(days-1, r)
		todayTotal += r.Devices
	}
	if other {
		totals := past.totals
		s := Series{Label: "other releases", Devices: make([]int64, days)}
		for _, t := range totals {
			if i := int(t.Day.Sub(from) / day); i >= 0 && i < days-1 {
				s.Devices[i] = t.Devices - drawn[i]
			}
		}
		s.Devices[days-1] = todayTotal - drawn[days-1]
		c.Series = append(c.Series, s)
	}
	return c, nil
}

// pastKey identifies the recorded rows a chart reads.
type pastKey struct {
	from, to time.Time
	ids      string
	other    bool
}

// pastRows are a chart's recorded rows, and each day's totals when it sums
// the other releases.
type pastRows struct{ rows, totals []model.ReleaseDay }

// maxPastCharts bounds the charts whose recorded rows are kept.
const maxPastCharts = 256

// pastDays returns the recorded rows of ids from through to, with the
// daily totals when other is set. Recorded days do not change, so they are
// read once per chart until Run's next tick, which forgets them all (it
// may have recorded a day, here or on another server): pages then cost no
// more than a few reads, however many releases and days there are.
func (h *History) pastDays(ctx context.Context, from, to time.Time, ids []int64, other bool) (pastRows, error) {
	key := pastKey{from: from, to: to, ids: fmt.Sprint(ids), other: other}
	h.pastMu.Lock()
	p, ok := h.past[key]
	h.pastMu.Unlock()
	if ok {
		return p, nil
	}
	var err error
	if p.rows, err = h.store.Days(ctx, from, to, ids); err != nil {
		return pastRows{}, err
	}
	if other {
		if p.totals, err = h.store.DayTotals(ctx, from, to); err != nil {
			return pastRows{}, err
		}
	}
	h.pastMu.Lock()
	if h.past == nil || len(h.past) >= maxPastCharts {
		h.past = map[pastKey]pastRows{}
	}
	h.past[key] = p
	h.pastMu.Unlock()
	return p, nil
}

// forgetPast drops the recorded rows pastDays kept.
func (h *History) forgetPast() {
	h.pastMu.Lock()
	h.past = nil
	h.pastMu.Unlock()
}

// label names a release in charts: its version, and its ABI when it has one.
func label(version, abi string) string {
	if abi == "" {
		return version
	}
	return version + " " + abi
}

// Run records missed days at once, then every Live counts today again and
// records the days that ended, until ctx ends. Failures are logged and
// retried at the next tick.
func (h *History) Run(ctx context.Context) {
	log := h.log.With("what", "adoption history")
	tick := func(ctx context.Context) error {
		defer h.forgetPast()
		if err := h.Record(ctx); err != nil {
			return err
		}
		_, err := h.countToday(ctx, true)
		return err
	}
	if err := tick(ctx); err != nil && ctx.Err() == nil {
		log.Warn("reload", "err", err)
	}
	reloadEvery(ctx, cmp.Or(h.cfg.Live, time.Minute), tick, log)
}
