package model

import (
	"strings"
	"testing"
)

func TestParseClientVersion(t *testing.T) {
	tests := []struct {
		in, version, abi string
		ok               bool
	}{
		{"2267_01", "2267_01", "", true},
		{"2267.01", "2267.01", "", true},
		{"10000_00", "10000_00", "", true},
		{"7", "7", "", true},
		{"2267_00arm64", "2267_00", "arm64", true},
		{"2267_00arm", "2267_00", "arm", true},
		{"2267_00x86", "2267_00", "x86", true},
		{"2267_00x86_64", "2267_00", "x86_64", true},
		{"99999999999999999999999_1", "99999999999999999999999_1", "", true},
		{"", "", "", false},
		{"abc", "", "", false},
		{"2267_", "", "", false},
		{"_2267", "", "", false},
		{"2267__01", "", "", false},
		{"2267_01mips", "", "", false},
		{"2267_01 arm64", "", "", false},
		{"arm64", "", "", false},
		{"2267_00ARM64", "", "", false},
		{"1_2_3_4_5_6_7_8", "1_2_3_4_5_6_7_8", "", true},
		{"1_2_3_4_5_6_7_8_9", "", "", false},
		{"2267._01", "", "", false},
		{".", "", "", false},
		{strings.Repeat("1", MaxVersionLen+1), "", "", false},
		{"-1", "", "", false},
		{"２２６７", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			v, abi, err := ParseClientVersion(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if !tt.ok {
				if ErrorCode(err) != Invalid {
					t.Errorf("code = %v, want %v", ErrorCode(err), Invalid)
				}
				return
			}
			if v.String() != tt.version || abi != tt.abi {
				t.Errorf("got (%q, %q), want (%q, %q)", v.String(), abi, tt.version, tt.abi)
			}
		})
	}
}

func TestParseVersion_rejectsABISuffix(t *testing.T) {
	if _, err := ParseVersion("2267_00arm64"); ErrorCode(err) != Invalid {
		t.Fatalf("got %v, want an Invalid error", err)
	}
}

func TestVersion_Compare(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"10000_00", "9999_99", 1},
		{"2267_10", "2267_9", 1},
		{"2267_01", "2267_01", 0},
		{"2267_1", "2267_01", 0},
		{"2267.01", "2267_01", 0},
		{"2267", "2267_00", 0},
		{"2267_00_1", "2267_00", 1},
		{"2264_00", "2267_01", -1},
		{"99999999999999999999999", "99999999999999999999998", 1},
		{"0_1", "0_0_9", 1},
	}
	for _, tt := range tests {
		t.Run(tt.a+"_vs_"+tt.b, func(t *testing.T) {
			a, b := mustVersion(t, tt.a), mustVersion(t, tt.b)
			if got := a.Compare(b); got != tt.want {
				t.Errorf("Compare = %d, want %d", got, tt.want)
			}
			if got := b.Compare(a); got != -tt.want {
				t.Errorf("reverse Compare = %d, want %d", got, -tt.want)
			}
		})
	}
}

func TestVersion_Mandatory(t *testing.T) {
	tests := map[string]bool{
		"2264_00": true, "2264_0": true, "2264.000": true, "00_00": true, "2264_01": false,
		"2264_10": false, "2264": false, "0": true, "2264_00_01": false,
	}
	for in, want := range tests {
		if got := mustVersion(t, in).Mandatory(); got != want {
			t.Errorf("%s: Mandatory = %v, want %v", in, got, want)
		}
	}
}

func mustVersion(tb testing.TB, s string) Version {
	tb.Helper()
	v, err := ParseVersion(s)
	if err != nil {
		tb.Fatalf("ParseVersion(%q): %v", s, err)
	}
	return v
}
