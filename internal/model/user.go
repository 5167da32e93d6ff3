package model

import (
	"strings"
	"unicode/utf8"
)

// DeviceReport is one device session to store, with the ABI whose release
// counts it.
type DeviceReport struct {
	User User
	ABI  string
}

// Page selects part of a list ordered by id: the rows with id above After,
// at most Limit of them (0: no limit).
type Page struct {
	After int64
	Limit int
}

// MaxPageLimit bounds Page.Limit.
const MaxPageLimit = 100000

// Validate checks the page's bounds.
func (p Page) Validate() error {
	if p.After < 0 || p.Limit < 0 || p.Limit > MaxPageLimit {
		return Errorf(Invalid, "after must be a non-negative id and limit an integer from 1 to %d.", MaxPageLimit)
	}
	return nil
}

// MaxTextLen bounds every text field of a device report, in characters.
const MaxTextLen = 256

// User is one device's session, identified by (SessionID, DeviceMac).
type User struct {
	ID              int64
	AppLocale       string
	AppVersion      string // the version without its ABI suffix
	TargetABI       string // the ABI the device reported, empty when unknown
	DeviceLocale    string
	DeviceMac       string
	DeviceModel     string
	DeviceSDK       string
	SessionActivity int64 // Unix seconds
	SessionID       int64
	SessionRegister int64 // Unix seconds
	TgVersion       string
}

// Validate checks the rules of a device report and normalizes AppVersion:
// an ABI suffix moves into TargetABI.
func (u *User) Validate() error {
	if u.SessionID == 0 {
		return Errorf(Invalid, "SessionID must be a non-zero integer.")
	}
	texts := []struct{ name, value string }{
		{"AppLocale", u.AppLocale}, {"AppVersion", u.AppVersion}, {"DeviceLocale", u.DeviceLocale},
		{"DeviceMac", u.DeviceMac}, {"DeviceModel", u.DeviceModel}, {"DeviceSDK", u.DeviceSDK},
		{"TgVersion", u.TgVersion}, {"TargetABI", u.TargetABI},
	}
	for _, f := range texts {
		if !utf8.ValidString(f.value) || strings.ContainsRune(f.value, 0) {
			return Errorf(Invalid, "%s must be valid UTF-8 text without NUL characters.", f.name)
		}
		if utf8.RuneCountInString(f.value) > MaxTextLen {
			return Errorf(Invalid, "%s must be at most %d characters.", f.name, MaxTextLen)
		}
	}
	v, abi, err := ParseClientVersion(u.AppVersion)
	if err != nil {
		return Errorf(Invalid, "AppVersion: %s", ErrorMessage(err))
	}
	if !ValidABI(u.TargetABI) {
		return Errorf(Invalid, "TargetABI must be one of arm, arm64, x86, x86_64.")
	}
	if abi != "" && u.TargetABI != "" && abi != u.TargetABI {
		return Errorf(Invalid, "AppVersion's ABI suffix %q contradicts TargetABI %q.", abi, u.TargetABI)
	}
	u.AppVersion = v.String()
	if abi != "" {
		u.TargetABI = abi
	}
	return nil
}
