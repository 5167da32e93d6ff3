package model

import (
	"math/big"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseClientVersion checks version parsing on arbitrary strings:
//   - a rejected input gets an Invalid error with a message, never a panic;
//   - an accepted input is at most MaxVersionLen bytes and round-trips:
//     String() followed by the ABI is the input, and re-parsing String()
//     gives an equal version (Compare == 0, same String and Mandatory);
//   - ParseVersion accepts exactly the accepted inputs without an ABI;
//   - Compare agrees with a reference that reads each group as a big
//     integer (missing groups are zero), is reflexive and antisymmetric
//     against a second fuzzed version;
//   - Mandatory is "the last group is all zeros".
func FuzzParseClientVersion(f *testing.F) {
	for _, s := range [][2]string{
		{"2267_01", "2267_00"},
		{"2267_00arm64", "2267_00"},
		{"2267.1", "2267_01"},
		{"10000_00", "9999_99"},
		{"2267_10x86_64", "2267_9"},
		{"1", "1.0.0"},
		{"0_0", ""},
		{"007", "7"},
		{"2267__01", "_2267"},
		{"2267_01mips", "latest"},
		{"99999999999999999999999999999999_1", "99999999999999999999999999999999_01"},
		{"1.2.3.4.5.6.7.8", "1.2.3.4.5.6.7.8.9"},
		{strings.Repeat("9", MaxVersionLen), strings.Repeat("9", MaxVersionLen+1)},
		{"١٢٣", "2267_01\x00"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, s, other string) {
		v, abi, err := ParseClientVersion(s)
		if err != nil {
			if ErrorCode(err) != Invalid || ErrorMessage(err) == "" {
				t.Fatalf("ParseClientVersion(%q) error %v has code %q, want %q with a message", s, err, ErrorCode(err), Invalid)
			}
			if _, err := ParseVersion(s); err == nil {
				t.Fatalf("ParseVersion(%q) accepts what ParseClientVersion rejects", s)
			}
			return
		}
		if len(s) == 0 || len(s) > MaxVersionLen {
			t.Fatalf("ParseClientVersion accepts %d bytes; the bound is 1 to %d", len(s), MaxVersionLen)
		}
		if v.IsZero() || v.String()+abi != s {
			t.Fatalf("ParseClientVersion(%q) = (%q, %q): String()+abi is not the input", s, v, abi)
		}
		if !ValidABI(abi) {
			t.Fatalf("ParseClientVersion(%q) returned the unknown ABI %q", s, abi)
		}
		if strings.Trim(v.String(), "0123456789_.") != "" {
			t.Fatalf("version %q holds more than digits and separators", v)
		}
		w, abi2, err := ParseClientVersion(v.String())
		if err != nil || abi2 != "" {
			t.Fatalf("re-parsing %q: abi %q, err %v", v, abi2, err)
		}
		if w.String() != v.String() || w.Compare(v) != 0 || v.Compare(w) != 0 || w.Mandatory() != v.Mandatory() {
			t.Fatalf("re-parsing %q gives %q (compare %d, mandatory %t vs %t)", v, w, w.Compare(v), w.Mandatory(), v.Mandatory())
		}
		if pv, err := ParseVersion(s); (err == nil) != (abi == "") || (err == nil && pv.String() != v.String()) {
			t.Fatalf("ParseVersion(%q) = %q, %v; ParseClientVersion gave abi %q", s, pv, err, abi)
		}
		groups := strings.FieldsFunc(v.String(), func(r rune) bool { return r == '_' || r == '.' })
		if want := strings.Trim(groups[len(groups)-1], "0") == ""; v.Mandatory() != want {
			t.Fatalf("%q.Mandatory() = %t, want %t", v, v.Mandatory(), want)
		}
		if c := v.Compare(v); c != 0 {
			t.Fatalf("%q.Compare(itself) = %d", v, c)
		}

		o, _, err := ParseClientVersion(other)
		if err != nil {
			return
		}
		c, d := v.Compare(o), o.Compare(v)
		if c < -1 || c > 1 || c != -d {
			t.Fatalf("Compare(%q, %q) = %d but Compare(%q, %q) = %d", v, o, c, o, v, d)
		}
		if want := refCompare(v.String(), o.String()); c != want {
			t.Fatalf("Compare(%q, %q) = %d, want %d (groups as numbers)", v, o, c, want)
		}
	})
}

// refCompare compares two parsed versions group by group as big integers.
func refCompare(a, b string) int {
	split := func(s string) []string {
		return strings.FieldsFunc(s, func(r rune) bool { return r == '_' || r == '.' })
	}
	ga, gb := split(a), split(b)
	num := func(gs []string, i int) *big.Int {
		n := new(big.Int)
		if i < len(gs) {
			n.SetString(gs[i], 10)
		}
		return n
	}
	for i := range max(len(ga), len(gb)) {
		if c := num(ga, i).Cmp(num(gb, i)); c != 0 {
			return c
		}
	}
	return 0
}

// FuzzUserValidate checks User.Validate on arbitrary field values:
//   - it accepts exactly the users a reference reading of the rules accepts
//     (non-zero SessionID; every text valid UTF-8 and at most MaxTextLen
//     characters; AppVersion a client version; TargetABI known; an ABI suffix
//     agreeing with TargetABI), and rejects the rest with Invalid;
//   - an accepted user is normalized: AppVersion re-parses with no ABI, the
//     suffix (if any) moved into TargetABI, nothing else changed;
//   - Validate is idempotent: the normalized user validates again unchanged.
func FuzzUserValidate(f *testing.F) {
	type seed struct {
		appLocale, appVersion, targetABI, deviceLocale, deviceMac, deviceModel, deviceSDK, tgVersion string
		activity, id, register                                                                       int64
	}
	for _, s := range []seed{
		{"en", "2264_00", "", "en-us", "02:30:54:89:2d:5e", "OnePlus A6000", "SDK 30", "8.1.2", 1636201000, 2, 1636034599},
		{"ru", "2264_00arm", "", "ru-ru", "02:00:00:00:00:00", "Pixel 7", "SDK 34", "10.0", 0, -5, 0},
		{"", "2264_00x86", "x86", "", "", "", "", "", 0, 1, 0},
		{"", "2264_00x86", "arm", "", "", "", "", "", 0, 1, 0},
		{"", "2264_00", "mips", "", "", "", "", "", 0, 1, 0},
		{"", "latest", "", "", "", "", "", "", 0, 1, 0},
		{"", "", "", "", "", "", "", "", 0, 1, 0},
		{"", "1", "", "", "", "", "", "", -1 << 63, 0, 1<<63 - 1},
		{"\xff", "1", "", "", "", strings.Repeat("я", MaxTextLen), "", "", 0, 1, 0},
		{"", "1", "", "", "", strings.Repeat("я", MaxTextLen+1), "", "", 0, 1, 0},
		{"日本語", "1_0arm64", "arm64", "\x00", "../../x", "\u202e", "\ufffd", "1.0", 1, 1, 1},
	} {
		f.Add(s.appLocale, s.appVersion, s.targetABI, s.deviceLocale, s.deviceMac, s.deviceModel, s.deviceSDK, s.tgVersion, s.activity, s.id, s.register)
	}
	f.Fuzz(func(t *testing.T, appLocale, appVersion, targetABI, deviceLocale, deviceMac, deviceModel, deviceSDK, tgVersion string, activity, id, register int64) {
		in := User{
			AppLocale: appLocale, AppVersion: appVersion, TargetABI: targetABI, DeviceLocale: deviceLocale,
			DeviceMac: deviceMac, DeviceModel: deviceModel, DeviceSDK: deviceSDK, TgVersion: tgVersion,
			SessionActivity: activity, SessionID: id, SessionRegister: register,
		}
		u := in
		err := u.Validate()
		want, why := refValid(in)
		if (err == nil) != want {
			t.Fatalf("Validate(%+v) = %v, but by the rules it should be ok=%t (%s)", in, err, want, why)
		}
		if err != nil {
			if ErrorCode(err) != Invalid || ErrorMessage(err) == "" {
				t.Fatalf("Validate error %v has code %q, want %q with a message", err, ErrorCode(err), Invalid)
			}
			return
		}
		for _, s := range []string{u.AppLocale, u.AppVersion, u.TargetABI, u.DeviceLocale, u.DeviceMac, u.DeviceModel, u.DeviceSDK, u.TgVersion} {
			if !utf8.ValidString(s) || strings.ContainsRune(s, 0) || utf8.RuneCountInString(s) > MaxTextLen {
				t.Fatalf("accepted text %q is not valid UTF-8 of at most %d characters", s, MaxTextLen)
			}
		}
		v, err := ParseVersion(u.AppVersion)
		if err != nil || v.String() != u.AppVersion {
			t.Fatalf("normalized AppVersion %q does not re-parse without an ABI: %v", u.AppVersion, err)
		}
		// Only AppVersion and TargetABI may change, and only by moving the suffix.
		suffix := strings.TrimPrefix(in.AppVersion, u.AppVersion)
		if !strings.HasPrefix(in.AppVersion, u.AppVersion) || (suffix != "" && suffix != u.TargetABI) ||
			(in.TargetABI != "" && in.TargetABI != u.TargetABI) || (in.TargetABI == "" && u.TargetABI != suffix) {
			t.Fatalf("normalized (%q, %q) from (%q, %q)", u.AppVersion, u.TargetABI, in.AppVersion, in.TargetABI)
		}
		same, back := u, in
		same.AppVersion, same.TargetABI, back.AppVersion, back.TargetABI = "", "", "", ""
		if same != back {
			t.Fatalf("Validate changed more than AppVersion and TargetABI: %+v -> %+v", in, u)
		}
		again := u
		if err := again.Validate(); err != nil || again != u {
			t.Fatalf("Validate is not idempotent: %+v -> %+v, %v", u, again, err)
		}
	})
}

// refValid is the rules of a device report, read from the documentation.
func refValid(u User) (bool, string) {
	if u.SessionID == 0 {
		return false, "zero SessionID"
	}
	for _, s := range []string{u.AppLocale, u.AppVersion, u.TargetABI, u.DeviceLocale, u.DeviceMac, u.DeviceModel, u.DeviceSDK, u.TgVersion} {
		if !utf8.ValidString(s) || strings.ContainsRune(s, 0) || utf8.RuneCountInString(s) > MaxTextLen {
			return false, "a text is not UTF-8 or too long"
		}
	}
	_, abi, err := ParseClientVersion(u.AppVersion)
	switch {
	case err != nil:
		return false, "AppVersion does not parse"
	case !ValidABI(u.TargetABI):
		return false, "unknown TargetABI"
	case abi != "" && u.TargetABI != "" && abi != u.TargetABI:
		return false, "suffix contradicts TargetABI"
	}
	return true, "all rules hold"
}
