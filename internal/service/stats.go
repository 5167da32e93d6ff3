package service

import (
	"context"
	"slices"
	"time"

	"github.com/wemesse/server/internal/model"
)

// AdoptionStore counts devices.
type AdoptionStore interface {
	// Adoption counts the devices on each of versions per ABI, and those
	// active since activeSince (Unix seconds).
	Adoption(ctx context.Context, versions []string, activeSince int64) ([]model.Adoption, error)
}

// activeWindow is how recent a session must be for a device to be active.
const activeWindow = 30 * 24 * time.Hour

// Stats reports release adoption.
type Stats struct {
	releases   ReleaseStore
	devices    AdoptionStore
	defaultABI string
	now        func() time.Time
}

// NewStats returns a Stats. now is the clock, time.Now in production.
func NewStats(releases ReleaseStore, devices AdoptionStore, defaultABI string, now func() time.Time) *Stats {
	return &Stats{releases: releases, devices: devices, defaultABI: defaultABI, now: now}
}

// Get returns, per release, the devices on it (counted where their reports
// are counted: the build for their ABI, else the universal one), the active
// ones among them, uploads and downloads, and totals. With track set, only
// the releases on that track count. Invalid for a malformed track.
func (s *Stats) Get(ctx context.Context, track string) (model.Stats, error) {
	if track != "" && !model.ValidTrack(track) {
		return model.Stats{}, model.Errorf(model.Invalid, "track must match [a-z0-9-]{1,32}.")
	}
	releases, err := s.releases.List(ctx)
	if err != nil {
		return model.Stats{}, err
	}
	if track != "" {
		releases = slices.DeleteFunc(releases, func(r model.Release) bool { return r.Track != track })
	}
	var versions []string
	seen := map[string]bool{}
	out := model.Stats{Releases: make([]model.ReleaseStats, len(releases))}
	for i, r := range releases {
		if v := r.Version.String(); !seen[v] {
			seen[v] = true
			versions = append(versions, v)
		}
		out.Releases[i] = model.ReleaseStats{ID: r.ID, Version: r.Version.String(), TargetABI: r.TargetABI, Uploads: r.Uploads, Downloads: r.Downloads}
		out.Totals.Uploads += r.Uploads
		out.Totals.Downloads += r.Downloads
	}
	groups, err := s.devices.Adoption(ctx, versions, s.now().Add(-activeWindow).Unix())
	if err != nil {
		return model.Stats{}, err
	}
	find := releaseFinder(releases, s.defaultABI)
	for _, g := range groups {
		if i, ok := find(g.Version, g.TargetABI); ok {
			out.Releases[i].Devices += g.Devices
			out.Releases[i].Active30d += g.Active
			out.Totals.Devices += g.Devices
			out.Totals.Active30d += g.Active
		}
	}
	return out, nil
}
