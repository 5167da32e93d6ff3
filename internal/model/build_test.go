package model

import (
	"strings"
	"testing"
)

func TestBuild_ABI(t *testing.T) {
	tests := []struct {
		native []string
		want   string
	}{
		{nil, ""},
		{[]string{"arm64-v8a"}, "arm64"},
		{[]string{"armeabi-v7a"}, "arm"},
		{[]string{"x86"}, "x86"},
		{[]string{"x86_64"}, "x86_64"},
		{[]string{"armeabi-v7a", "x86"}, ""},
		{[]string{"mips"}, ""},
	}
	for _, tt := range tests {
		if got := (Build{NativeABIs: tt.native}).ABI(); got != tt.want {
			t.Errorf("ABI(%v) = %q, want %q", tt.native, got, tt.want)
		}
	}
}

func TestBuild_CheckABI(t *testing.T) {
	tests := []struct {
		native []string
		abi    string
		ok     bool
	}{
		{nil, "x86", true},
		{[]string{"arm64-v8a"}, "", true},
		{[]string{"arm64-v8a"}, "arm64", true},
		{[]string{"arm64-v8a"}, "x86", false},
		{[]string{"armeabi-v7a", "x86"}, "x86", true},
		{[]string{"armeabi-v7a", "x86"}, "arm64", false},
	}
	for _, tt := range tests {
		err := Build{NativeABIs: tt.native}.CheckABI(tt.abi)
		if (err == nil) != tt.ok || (err != nil && ErrorCode(err) != Unprocessable) {
			t.Errorf("CheckABI(%v, %q) = %v, want ok %v", tt.native, tt.abi, err, tt.ok)
		}
	}
}

func TestCheckSuccession(t *testing.T) {
	const a, b, c = "aa", "bb", "cc"
	rel := func(id int64, v, abi, pkg, signer string, code int64) Release {
		return Release{ID: id, Version: mustVersion(t, v), TargetABI: abi, PackageName: pkg, SignerSHA256: signer, VersionCode: code}
	}
	existing := []Release{
		{ID: 1, Version: mustVersion(t, "1_00")}, // stored before verification
		rel(2, "2_00", "", "org.app", a, 20),
		rel(3, "3_00", "arm64", "org.app", a, 31),
		rel(4, "3_00", "x86", "org.app", a, 30),
	}
	tests := []struct {
		name    string
		rel     Release
		lineage []string
		want    string // part of the error; "" for none
	}{
		{"next universal", rel(0, "4_00", "", "org.app", a, 40), nil, ""},
		{"another package", rel(0, "4_00", "", "org.other", a, 40), nil, "package name org.other differs from org.app"},
		{"another signer", rel(0, "4_00", "", "org.app", c, 40), nil, "not by the pinned aa"},
		{"rotated from the pin", rel(0, "4_00", "", "org.app", b, 40), []string{a, b}, ""},
		{"rotation that skips the pin", rel(0, "4_00", "", "org.app", b, 40), []string{c, b}, "not by the pinned aa"},
		{"versionCode backwards", rel(0, "4_00", "", "org.app", a, 25), nil, "versionCode 25 is out of order"},
		{"versionCode equal to an older one", rel(0, "4_00", "", "org.app", a, 31), nil, "out of order"},
		{"arm64 needs more than arm64's 31", rel(0, "4_00", "arm64", "org.app", a, 31), nil, "release 3_00 (arm64)"},
		{"x86 only above x86's and universal", rel(0, "4_00", "x86", "org.app", a, 31), nil, ""},
		{"older version needs a lower code", rel(0, "2_50", "x86", "org.app", a, 35), nil, "release 3_00 (x86)"},
		{"older version between", rel(0, "2_50", "x86", "org.app", a, 25), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckSuccession(existing, tt.rel, tt.lineage)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("got %v, want no error", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || ErrorCode(err) != Unprocessable):
				t.Fatalf("got %v, want Unprocessable containing %q", err, tt.want)
			}
		})
	}
	// The pin moves with a rotation: after b's release, b is pinned.
	moved := append(existing, rel(5, "4_00", "", "org.app", b, 40))
	if err := CheckSuccession(moved, rel(0, "5_00", "", "org.app", b, 50), nil); err != nil {
		t.Errorf("after rotation, b: %v", err)
	}
	if err := CheckSuccession(moved, rel(0, "5_00", "", "org.app", a, 50), nil); err == nil {
		t.Error("after rotation, the old key a was accepted")
	}
	if err := CheckSuccession(existing[:1], rel(0, "5_00", "", "any.pkg", c, 1), nil); err != nil {
		t.Errorf("first verified release: %v", err)
	}
}
