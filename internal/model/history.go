package model

import "time"

// ReleaseDay is one release's adoption on one day (UTC).
type ReleaseDay struct {
	Day        time.Time // midnight UTC
	ReleaseID  int64
	Version    string
	TargetABI  string
	Devices    int64 // devices on the release, registered by the day's end
	Active30d  int64 // of those, devices seen in the 30 days before the day's end
	Downloads  int64 // the release's download counter when the day was recorded
	NewDevices int64 // devices on the release that registered that day
}

// HistoryDay is the adoption of every release on one day.
type HistoryDay struct {
	Day      time.Time
	Releases []ReleaseDay
}

// DayCount counts the devices on one version and ABI as of a day's end
// (see ReleaseDay).
type DayCount struct {
	Version    string
	TargetABI  string // as the devices reported it; empty when unknown
	Devices    int64
	Active30d  int64
	NewDevices int64
}

// MaxHistoryDays bounds a history request, in days.
const MaxHistoryDays = 366

// Day is t's day: midnight UTC.
func Day(t time.Time) time.Time {
	return t.UTC().Truncate(24 * time.Hour)
}
