package model

import "testing"

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
	rel := func(id int64, v, abi string) Release {
		version := mustVersion(t, v)
		return Release{ID: id, Version: version, TargetABI: abi, Skipped: !version.Mandatory()}
	}
	releases := []Release{
		rel(1, "2264_00", ""),
		rel(2, "2265_00", "arm"),
		rel(3, "2267_01", ""),
		rel(4, "2267_01", "arm64"),
		rel(5, "2268_00", "x86"),
	}
	tests := []struct {
		name       string
		current    string
		abi        string
		wantID     int64
		mustUpdate bool
	}{
		{"arm64 behind a mandatory release", "2263_05", "arm64", 4, true},
		{"arm64 at the mandatory release", "2264_00", "arm64", 4, false},
		{"arm64 on the newest", "2267_01", "arm64", 4, false},
		{"arm64 ahead of every release", "9999_00", "arm64", 4, false},
		{"arm sees its own mandatory build", "2264_05", "arm", 3, true},
		{"arm past its mandatory build", "2265_00", "arm", 3, false},
		{"x86 gets its newer build and must update", "2267_01", "x86", 5, true},
		{"numeric, not string, order", "10000_00", "x86_64", 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, must, ok := NewestFor(releases, mustVersion(t, tt.current), tt.abi, "")
			if !ok || got.ID != tt.wantID || must != tt.mustUpdate {
				t.Errorf("got (id %d, must %v, ok %v), want (id %d, must %v)", got.ID, must, ok, tt.wantID, tt.mustUpdate)
			}
		})
	}
	if _, _, ok := NewestFor(nil, mustVersion(t, "1"), "arm64", ""); ok {
		t.Error("NewestFor(nil) reported a release")
	}
	if _, _, ok := NewestFor(releases[4:], mustVersion(t, "1"), "arm64", ""); ok {
		t.Error("an x86-only list offered a release to arm64")
	}
}
