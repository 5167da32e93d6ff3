package model

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
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
	Downloads int64  // completed downloads of the file
	Rollout   int    // percent of devices that are offered it, 1 to 100
	Yanked    bool   // never offered again; the file stays downloadable
	FilePath  string // slash-separated, relative to the storage root
	CreatedAt time.Time
}

// ReleasePatch holds the fields of a release an admin may change; nil
// fields stay as they are.
type ReleasePatch struct {
	Notes   *string
	Skipped *bool
	Rollout *int
	Yanked  *bool
}

// Validate checks the patch's values.
func (p ReleasePatch) Validate() error {
	if p.Rollout != nil && (*p.Rollout < 1 || *p.Rollout > FullRollout) {
		return Errorf(Invalid, "Rollout must be an integer from 1 to 100.")
	}
	if p.Notes != nil && len(*p.Notes) > MaxNotesLen {
		return Errorf(Invalid, "Message must be at most %d bytes.", MaxNotesLen)
	}
	if p.Notes != nil && (!utf8.ValidString(*p.Notes) || strings.ContainsRune(*p.Notes, 0)) {
		return Errorf(Invalid, "Message must be UTF-8 text without NUL characters.")
	}
	return nil
}

// MaxNotesLen bounds a release's notes, in bytes.
const MaxNotesLen = 64 << 10

// Adoption counts the devices on one version and ABI.
type Adoption struct {
	Version   string
	TargetABI string // as the devices reported it; empty when unknown
	Devices   int64
	Active    int64 // devices whose last session is recent
}

// FullRollout is the rollout of a release offered to every device.
const FullRollout = 100

// Bucket places a device in one of 100 buckets for a version: the first
// eight bytes of SHA-256("<device>:<version>"), big-endian, modulo 100. A
// device sees a release with rollout r iff its bucket is below r, so raising
// r never hides a release from a device that saw it, and every device's
// answer can be predicted.
func Bucket(device string, version Version) int {
	sum := sha256.Sum256([]byte(device + ":" + version.String()))
	return int(binary.BigEndian.Uint64(sum[:8]) % 100)
}

// OfferedTo reports whether the release may be offered to a client with the
// given ABI and device id (empty when the client sent none): it is not
// yanked, it is built for that ABI or universal, and the device falls inside
// its rollout. Without a device id only full rollouts are offered.
func (r Release) OfferedTo(abi, device string) bool {
	if r.Yanked || (r.TargetABI != "" && r.TargetABI != abi) {
		return false
	}
	if r.Rollout >= FullRollout || r.Rollout == 0 {
		return true
	}
	return device != "" && Bucket(device, r.Version) < r.Rollout
}

// NewestFor picks the release a client on version current should be
// offered, from releases in any order. Only releases offered to the client
// (see OfferedTo) count. It returns the newest of them (an ABI build wins a
// tie with a universal one) and whether the client must update, which it
// must when any mandatory release among them is newer than current. ok is
// false when no release is offered to the client at all.
func NewestFor(releases []Release, current Version, abi, device string) (newest Release, mustUpdate, ok bool) {
	for _, r := range releases {
		if !r.OfferedTo(abi, device) {
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

// ReleaseStats is the adoption of one release.
type ReleaseStats struct {
	ID        int64
	Version   string
	TargetABI string
	Devices   int64 // devices whose current version is this release
	Active30d int64 // of those, devices seen in the last 30 days
	Uploads   int64
	Downloads int64
}

// Stats is the adoption of every release, with totals over them. Devices
// on a version without a release are not counted.
type Stats struct {
	Releases []ReleaseStats
	Totals   ReleaseStats // Devices and Active30d over all devices
}
