package model

import (
	"strings"
)

// ABIs a build may target. The empty ABI is a universal build.
var ABIs = []string{"arm", "arm64", "x86", "x86_64"}

// MaxVersionLen bounds the length of a version string, ABI suffix included.
const MaxVersionLen = 64

// maxGroups bounds the number of digit groups in a version.
const maxGroups = 8

// Version is a client version such as 2267_01: groups of digits separated by
// '_' or '.', compared numerically group by group.
type Version struct {
	raw string // as written, without the ABI suffix; checked by ParseClientVersion
}

// ParseVersion parses a version with no ABI suffix.
func ParseVersion(s string) (Version, error) {
	v, abi, err := ParseClientVersion(s)
	if err != nil {
		return Version{}, err
	}
	if abi != "" {
		return Version{}, Errorf(Invalid, "Version %q must not carry an ABI suffix.", s)
	}
	return v, nil
}

// ParseClientVersion parses a version as a client sends it: optionally
// followed by its ABI, as in 2267_00arm64. The ABI is empty when absent.
func ParseClientVersion(s string) (Version, string, error) {
	if s == "" || len(s) > MaxVersionLen {
		return Version{}, "", Errorf(Invalid, "A version is 1 to %d characters of digit groups separated by '_' or '.', like 2267_01.", MaxVersionLen)
	}
	end := 0
	for end < len(s) && (isDigit(s[end]) || s[end] == '_' || s[end] == '.') {
		end++
	}
	raw, abi := s[:end], s[end:]
	if raw == "" {
		return Version{}, "", Errorf(Invalid, "Version %q does not start with digits; write it like 2267_01.", s)
	}
	if abi != "" && !ValidABI(abi) {
		return Version{}, "", Errorf(Invalid, "Version %q has an unknown ABI suffix; use one of arm, arm64, x86, x86_64.", s)
	}
	n, afterSep := 1, true
	for i := range len(raw) {
		sep := raw[i] == '_' || raw[i] == '.'
		if sep && afterSep {
			return Version{}, "", notGroups(s) // an empty group
		}
		if sep {
			n++
		}
		afterSep = sep
	}
	if afterSep || n > maxGroups {
		return Version{}, "", notGroups(s)
	}
	return Version{raw: raw}, abi, nil
}

// nextGroup splits the first group off a valid version's text, its leading
// zeros stripped.
func nextGroup(s string) (group, rest string) {
	i := strings.IndexAny(s, "_.")
	if i < 0 {
		return strings.TrimLeft(s, "0"), ""
	}
	return strings.TrimLeft(s[:i], "0"), s[i+1:]
}

func notGroups(s string) error {
	return Errorf(Invalid, "Version %q is not digit groups separated by '_' or '.', like 2267_01.", s)
}

// ValidABI reports whether abi names a known ABI. The empty string (a
// universal build) is valid too.
func ValidABI(abi string) bool {
	if abi == "" {
		return true
	}
	for _, a := range ABIs {
		if a == abi {
			return true
		}
	}
	return false
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// String returns the version as written, without any ABI suffix.
func (v Version) String() string { return v.raw }

// IsZero reports whether v is the zero Version.
func (v Version) IsZero() bool { return v.raw == "" }

// Mandatory reports whether a release of this version must be installed: its
// last group is all zeros, as in 2264_00.
func (v Version) Mandatory() bool {
	return v.raw != "" && strings.Trim(v.raw[strings.LastIndexAny(v.raw, "_.")+1:], "0") == ""
}

// Compare returns -1, 0 or +1 as v is older than, equal to or newer than w.
// Groups compare as numbers of any size; a missing group counts as zero.
func (v Version) Compare(w Version) int {
	a, b := v.raw, w.raw
	for a != "" || b != "" {
		var ga, gb string
		ga, a = nextGroup(a)
		gb, b = nextGroup(b)
		if c := compareDigits(ga, gb); c != 0 {
			return c
		}
	}
	return 0
}

// compareDigits compares two digit strings without leading zeros as numbers.
func compareDigits(a, b string) int {
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}
