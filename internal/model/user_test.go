package model

import (
	"strings"
	"testing"
)

func TestUser_Validate(t *testing.T) {
	valid := func() User { return User{SessionID: 2, AppVersion: "2264_00", DeviceMac: "02:30:54:89:2d:5e"} }
	tests := []struct {
		name    string
		edit    func(*User)
		ok      bool
		version string
		abi     string
	}{
		{"plain", func(*User) {}, true, "2264_00", ""},
		{"ABI suffix moves to TargetABI", func(u *User) { u.AppVersion = "2264_00arm" }, true, "2264_00", "arm"},
		{"TargetABI key", func(u *User) { u.TargetABI = "x86" }, true, "2264_00", "x86"},
		{"suffix agreeing with TargetABI", func(u *User) { u.AppVersion, u.TargetABI = "2264_00x86", "x86" }, true, "2264_00", "x86"},
		{"suffix contradicting TargetABI", func(u *User) { u.AppVersion, u.TargetABI = "2264_00x86", "arm" }, false, "", ""},
		{"zero SessionID", func(u *User) { u.SessionID = 0 }, false, "", ""},
		{"negative SessionID is allowed", func(u *User) { u.SessionID = -5 }, true, "2264_00", ""},
		{"bad version", func(u *User) { u.AppVersion = "latest" }, false, "", ""},
		{"missing version", func(u *User) { u.AppVersion = "" }, false, "", ""},
		{"unknown TargetABI", func(u *User) { u.TargetABI = "mips" }, false, "", ""},
		{"256 characters", func(u *User) { u.DeviceModel = strings.Repeat("я", 256) }, true, "2264_00", ""},
		{"257 characters", func(u *User) { u.DeviceModel = strings.Repeat("я", 257) }, false, "", ""},
		{"invalid UTF-8", func(u *User) { u.AppLocale = "\xff" }, false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := valid()
			tt.edit(&u)
			err := u.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tt.ok)
			}
			if err != nil {
				if ErrorCode(err) != Invalid {
					t.Errorf("code = %v, want %v", ErrorCode(err), Invalid)
				}
				return
			}
			if u.AppVersion != tt.version || u.TargetABI != tt.abi {
				t.Errorf("got (%q, %q), want (%q, %q)", u.AppVersion, u.TargetABI, tt.version, tt.abi)
			}
		})
	}
}
