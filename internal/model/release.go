package model

import (
	"fmt"
	"time"
)

// Release is one uploaded build of the client.
type Release struct {
	ID        int64
	Version   Version
	TargetABI string // empty for a universal build
	Name      string // the stored file's base name
	Notes     string
	Size      int64  // bytes; legacy rows may only know SizeText
	SizeText  string // as shown to clients, like "52.3 MB"
	MD5       string // hex
	SHA256    string // hex; empty for legacy rows
	Skipped   bool   // false: the client must install it
	Uploads   int64  // devices that reported this version
	FilePath  string // slash-separated, relative to the storage root
	CreatedAt time.Time
}

// NewestFor picks the release a client on version current with the given ABI
// should be offered, from releases in any order. It returns the newest
// release the client can install (a build for its ABI or a universal one; an
// ABI build wins a tie) and whether the client must update, which it must when
// any mandatory release it could install is newer than current. ok is false
// when there is no release for the client at all.
func NewestFor(releases []Release, current Version, abi string) (newest Release, mustUpdate, ok bool) {
	for _, r := range releases {
		if r.TargetABI != "" && r.TargetABI != abi {
			continue
		}
		if !r.Skipped && r.Version.Compare(current) > 0 {
			mustUpdate = true
		}
		if !ok {
			newest, ok = r, true
			continue
		}
		switch c := r.Version.Compare(newest.Version); {
		case c > 0, c == 0 && newest.TargetABI == "" && r.TargetABI != "", c == 0 && r.TargetABI == newest.TargetABI && r.ID > newest.ID:
			newest = r
		}
	}
	return newest, mustUpdate, ok
}

// FormatSize writes n bytes in SI decimal units with one decimal: "0 B",
// "999 B", "1.5 kB", "52.3 MB".
func FormatSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	value := float64(n) / float64(div)
	// Rounding may carry into the next unit: 999,960 B is "1.0 MB", not "1000.0 kB".
	if value >= 999.95 && exp < 5 {
		value /= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", value, "kMGTPE"[exp])
}
