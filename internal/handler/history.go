package handler

import (
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/service"
)

// defaultHistoryDays is how many days GET /api/v1/stats/history returns
// without ?days=.
const defaultHistoryDays = 30

type historyResponse struct {
	Days []historyDay `json:"Days"`
}

type historyDay struct {
	Day      string           `json:"Day"` // YYYY-MM-DD, UTC
	Releases []historyRelease `json:"Releases"`
}

type historyRelease struct {
	ID         int64  `json:"Id"`
	Version    string `json:"Version"`
	TargetABI  string `json:"TargetABI"`
	Devices    int64  `json:"Devices"`
	Active30d  int64  `json:"Active30d"`
	Downloads  int64  `json:"Downloads"`
	NewDevices int64  `json:"NewDevices"`
}

// handleHistory answers GET /api/v1/stats/history?days=N&track=T: the
// adoption of each release per day, oldest first, the last day being
// today; with track, only the releases now on that track.
func handleHistory(history *service.History, releases *service.Releases, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		days := defaultHistoryDays
		if v := r.URL.Query().Get("days"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				fail(w, r, log, model.Errorf(model.Invalid, "days must be an integer from 1 to %d.", model.MaxHistoryDays))
				return
			}
			days = n
		}
		var keep func(int64) bool
		if track := r.URL.Query().Get("track"); track != "" {
			if err := releases.Tracks().Check(track); err != nil {
				fail(w, r, log, err)
				return
			}
			all, err := releases.Current(r.Context())
			if err != nil {
				fail(w, r, log, err)
				return
			}
			on := map[int64]bool{}
			for _, rel := range all {
				on[rel.ID] = rel.Track == track
			}
			keep = func(id int64) bool { return on[id] }
		}
		got, err := history.Days(r.Context(), days, keep)
		if err != nil {
			fail(w, r, log, err)
			return
		}
		out := historyResponse{Days: make([]historyDay, len(got))}
		for i, d := range got {
			out.Days[i] = historyDay{Day: d.Day.Format(time.DateOnly), Releases: make([]historyRelease, len(d.Releases))}
			for j, rd := range d.Releases {
				out.Days[i].Releases[j] = historyRelease{ID: rd.ReleaseID, Version: rd.Version, TargetABI: rd.TargetABI,
					Devices: rd.Devices, Active30d: rd.Active30d, Downloads: rd.Downloads, NewDevices: rd.NewDevices}
			}
		}
		encode(w, http.StatusOK, out)
	}
}
