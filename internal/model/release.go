package model

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
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

	Track       string     // the track it is offered on (see Tracks)
	Halted      bool       // offered to nobody, schedule paused, until resumed
	MandatoryAt *time.Time // from then on it counts as mandatory; nil: never by date
	Schedule    []Step     // the rollout ramp, in time order

	// What the APK declares and who signed it; empty for releases stored
	// before verification, or uploaded with it turned off (see Build).
	PackageName  string
	VersionCode  int64
	VersionName  string
	MinSdk       int
	TargetSdk    int
	SignerSHA256 string // lowercase hex SHA-256 of the signer's certificate
}

// ReleasePatch holds the fields of a release an admin may change; nil
// fields stay as they are.
//
// Setting Rollout is a hand change: it cancels the schedule's pending
// steps, since a person's decision wins over a plan made before it; a new
// Schedule in the same patch starts a new plan. Setting Halted to false
// resumes the schedule with every pending step moved later by the time the
// release spent halted, so the ramp keeps its spacing.
type ReleasePatch struct {
	Notes       *string
	Skipped     *bool
	Rollout     *int
	Yanked      *bool
	Track       *string
	Halted      *bool
	MandatoryAt *Deadline // nil: unchanged
	Schedule    *[]Step   // replaces every step; empty clears the schedule
}

// Deadline is a new MandatoryAt; a nil At clears it.
type Deadline struct{ At *time.Time }

// Validate checks the patch's values at now. Track is checked by the
// caller, which knows the configured tracks.
func (p ReleasePatch) Validate(now time.Time) error {
	if p.Rollout != nil && (*p.Rollout < 1 || *p.Rollout > FullRollout) {
		return Errorf(Invalid, "Rollout must be an integer from 1 to 100.")
	}
	if p.Schedule != nil {
		if err := validateSchedule(*p.Schedule, now); err != nil {
			return err
		}
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

// Client is who asks for an update.
type Client struct {
	Version Version
	ABI     string
	Device  string // empty when the client sent none
	Tracks  Tracks // its track and every later one (Tracks.From)
	SDK     int    // the device's API level; 0 when it sent none
}

// OfferedTo reports whether the release may be offered to client c: it is
// neither yanked nor halted, its minSdk is at most c's SDK (when c sent
// one), it is on one of c's tracks, it is built for
// c's ABI or universal, and c's device falls inside its rollout. Without a
// device id only full rollouts are offered.
func (r Release) OfferedTo(c Client) bool {
	if r.Yanked || r.Halted || (r.TargetABI != "" && r.TargetABI != c.ABI) || !slices.Contains(c.Tracks, r.Track) ||
		(c.SDK > 0 && r.MinSdk > c.SDK) {
		return false
	}
	if r.Rollout >= FullRollout || r.Rollout == 0 {
		return true
	}
	return c.Device != "" && Bucket(c.Device, r.Version) < r.Rollout
}

// Mandatory reports whether the release must be installed at now: it is
// marked so (Skipped false, as a _00 version is at upload), or its
// MandatoryAt has come.
func (r Release) Mandatory(now time.Time) bool {
	return !r.Skipped || (r.MandatoryAt != nil && !now.Before(*r.MandatoryAt))
}

// NewestFor picks the release client c should be offered at now, from
// releases in any order. Only releases offered to c (see OfferedTo) count.
// It returns the newest of them (an ABI build wins a tie with a universal
// one) and whether c must update, which it must when any release among
// them that is mandatory at now is newer than c's version. ok is false when
// no release is offered to c at all.
func NewestFor(releases []Release, c Client, now time.Time) (newest Release, mustUpdate, ok bool) {
	for _, r := range releases {
		if !r.OfferedTo(c) {
			continue
		}
		if r.Version.Compare(c.Version) > 0 && r.Mandatory(now) {
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
