package model

import (
	"testing"
	"time"
)

func TestFormatSize(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1, "1 B"},
		{999, "999 B"},
		{1000, "1.0 kB"},
		{1500, "1.5 kB"},
		{52_300_000, "52.3 MB"},
		{999_949, "999.9 kB"},
		{999_950, "1.0 MB"},
		{1_000_000_000, "1.0 GB"},
		{1 << 62, "4.6 EB"},
	}
	for _, tt := range tests {
		if got := FormatSize(tt.n); got != tt.want {
			t.Errorf("FormatSize(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestNewestFor(t *testing.T) {
	rel := func(id int64, v, abi string, minSdk int) Release {
		version := mustVersion(t, v)
		return Release{ID: id, Version: version, TargetABI: abi, Skipped: !version.Mandatory(), Track: DefaultTrack, MinSdk: minSdk}
	}
	releases := []Release{
		rel(1, "2264_00", "", 21),
		rel(2, "2265_00", "arm", 0),
		rel(3, "2267_01", "", 24),
		rel(4, "2267_01", "arm64", 26),
		rel(5, "2268_00", "x86", 0),
	}
	tests := []struct {
		name       string
		current    string
		abi        string
		sdk        int
		wantID     int64
		mustUpdate bool
	}{
		{"arm64 behind a mandatory release", "2263_05", "arm64", 0, 4, true},
		{"arm64 at the mandatory release", "2264_00", "arm64", 0, 4, false},
		{"arm64 on the newest", "2267_01", "arm64", 0, 4, false},
		{"arm64 ahead of every release", "9999_00", "arm64", 0, 4, false},
		{"arm sees its own mandatory build", "2264_05", "arm", 0, 3, true},
		{"arm past its mandatory build", "2265_00", "arm", 0, 3, false},
		{"x86 gets its newer build and must update", "2267_01", "x86", 0, 5, true},
		{"numeric, not string, order", "10000_00", "x86_64", 0, 3, false},
		{"sdk 25: the arm64 build needs 26, the universal one does", "2263_05", "arm64", 25, 3, true},
		{"sdk 23: only the build for 21 and up", "2263_05", "arm64", 23, 1, true},
		{"sdk 26 sees every build", "2263_05", "arm64", 26, 4, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, must, ok := NewestFor(releases, Client{Version: mustVersion(t, tt.current), ABI: tt.abi, Tracks: Tracks{DefaultTrack}, SDK: tt.sdk}, time.Now())
			if !ok || got.ID != tt.wantID || must != tt.mustUpdate {
				t.Errorf("got (id %d, must %v, ok %v), want (id %d, must %v)", got.ID, must, ok, tt.wantID, tt.mustUpdate)
			}
		})
	}
	arm64 := Client{Version: mustVersion(t, "1"), ABI: "arm64", Tracks: Tracks{DefaultTrack}}
	if _, _, ok := NewestFor(nil, arm64, time.Now()); ok {
		t.Error("NewestFor(nil) reported a release")
	}
	if _, _, ok := NewestFor(releases[4:], arm64, time.Now()); ok {
		t.Error("an x86-only list offered a release to arm64")
	}
}

// TestNewestFor_tracks runs the selection over track × halted ×
// MandatoryAt: a client is offered the newest release among its track and
// the later ones, and only those count toward its mandatory rule.
func TestNewestFor_tracks(t *testing.T) {
	tracks := Tracks{"internal", "beta", "stable"}
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	past, future := now.Add(-time.Hour), now.Add(time.Hour)
	rel := func(id int64, v, track string, edit ...func(*Release)) Release {
		r := Release{ID: id, Version: mustVersion(t, v), Track: track, Skipped: true, Rollout: FullRollout}
		for _, e := range edit {
			e(&r)
		}
		return r
	}
	halted := func(r *Release) { r.Halted = true }
	due := func(r *Release) { r.MandatoryAt = &past }
	later := func(r *Release) { r.MandatoryAt = &future }
	mandatory := func(r *Release) { r.Skipped = false }
	tests := []struct {
		name       string
		releases   []Release
		track      string
		current    string
		wantID     int64 // 0: nothing offered
		mustUpdate bool
	}{
		{"stable sees stable only", []Release{rel(1, "10_01", "stable"), rel(2, "11_01", "beta")}, "stable", "9_01", 1, false},
		{"beta sees its newer beta", []Release{rel(1, "10_01", "stable"), rel(2, "11_01", "beta")}, "beta", "9_01", 2, false},
		{"beta gets a stable newer than the last beta", []Release{rel(1, "12_01", "stable"), rel(2, "11_01", "beta")}, "beta", "9_01", 1, false},
		{"internal sees every track", []Release{rel(1, "10_01", "stable"), rel(2, "11_01", "beta"), rel(3, "12_01", "internal")}, "internal", "9_01", 3, false},
		{"a release on an unlisted track is offered to nobody", []Release{rel(1, "10_01", "stable"), rel(2, "11_01", "gone")}, "internal", "9_01", 1, false},
		{"a beta mandatory release does not force stable", []Release{rel(1, "10_01", "stable"), rel(2, "11_00", "beta", mandatory)}, "stable", "10_01", 1, false},
		{"a stable mandatory release forces beta", []Release{rel(1, "10_00", "stable", mandatory), rel(2, "11_01", "beta")}, "beta", "9_01", 2, true},
		{"halted is offered to nobody", []Release{rel(1, "10_01", "stable"), rel(2, "11_01", "stable", halted)}, "stable", "9_01", 1, false},
		{"halted mandatory forces nobody", []Release{rel(1, "10_01", "stable"), rel(2, "11_00", "stable", mandatory, halted)}, "stable", "10_01", 1, false},
		{"halted alone: nothing", []Release{rel(1, "10_01", "beta", halted)}, "beta", "9_01", 0, false},
		{"MandatoryAt passed forces", []Release{rel(1, "10_01", "stable", due)}, "stable", "9_01", 1, true},
		{"MandatoryAt to come does not", []Release{rel(1, "10_01", "stable", later)}, "stable", "9_01", 1, false},
		{"MandatoryAt passed but halted", []Release{rel(1, "10_01", "stable"), rel(2, "11_01", "stable", due, halted)}, "stable", "9_01", 1, false},
		{"MandatoryAt passed on a track not followed", []Release{rel(1, "10_01", "stable"), rel(2, "11_01", "beta", due)}, "stable", "9_01", 1, false},
		{"MandatoryAt passed on a followed track", []Release{rel(1, "10_01", "stable", due), rel(2, "11_01", "beta")}, "beta", "9_01", 2, true},
		{"MandatoryAt passed, client already on it", []Release{rel(1, "10_01", "stable", due)}, "stable", "10_01", 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from, err := tracks.From(tt.track)
			if err != nil {
				t.Fatal(err)
			}
			got, must, ok := NewestFor(tt.releases, Client{Version: mustVersion(t, tt.current), ABI: "arm64", Tracks: from}, now)
			if tt.wantID == 0 {
				if ok {
					t.Errorf("got id %d, want nothing offered", got.ID)
				}
				return
			}
			if !ok || got.ID != tt.wantID || must != tt.mustUpdate {
				t.Errorf("got (id %d, must %v, ok %v), want (id %d, must %v)", got.ID, must, ok, tt.wantID, tt.mustUpdate)
			}
		})
	}
}

func TestTracks(t *testing.T) {
	for _, tt := range []struct {
		in      string
		wantErr bool
	}{
		{"internal,beta,stable", false},
		{" alpha , stable ", false},
		{"stable", false},
		{"beta", true},
		{"beta,stable,beta", true},
		{"Beta,stable", true},
		{"beta,,stable", true},
		{"a-very-long-track-name-over-32-chars,stable", true},
	} {
		if _, err := ParseTracks(tt.in); (err != nil) != tt.wantErr {
			t.Errorf("ParseTracks(%q) err = %v, want error %v", tt.in, err, tt.wantErr)
		}
	}
	ts := Tracks{"internal", "beta", "stable"}
	if got, _ := ts.From("beta"); len(got) != 2 || got[0] != "beta" || got[1] != "stable" {
		t.Errorf("From(beta) = %v", got)
	}
	if _, err := ts.From("nightly"); ErrorCode(err) != Invalid {
		t.Errorf("From(nightly) err = %v, want Invalid", err)
	}
}
