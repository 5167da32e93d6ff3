package model

import (
	"fmt"
	"slices"
)

// Build is what a verified APK declares and who signed it.
type Build struct {
	PackageName  string
	VersionCode  int64
	VersionName  string
	MinSdk       int
	TargetSdk    int
	Debuggable   bool
	TestOnly     bool
	NativeABIs   []string // directories under lib/, as Android names them
	SignerSHA256 string
	// Lineage is the SHA-256 of each certificate of the signer's v3
	// proof-of-rotation, oldest first; empty without rotation.
	Lineage []string
}

// nativeABI maps Android's ABI names to Wemesse's.
var nativeABI = map[string]string{"arm64-v8a": "arm64", "armeabi-v7a": "arm", "x86": "x86", "x86_64": "x86_64"}

// ABI returns the Wemesse ABI of a build whose native libraries are for
// exactly one known ABI, and "" (universal) otherwise.
func (b Build) ABI() string {
	if len(b.NativeABIs) != 1 {
		return ""
	}
	return nativeABI[b.NativeABIs[0]]
}

// CheckABI returns Unprocessable when the form's targetABI contradicts the
// build's native libraries: it has some, and none for that ABI. An empty
// targetABI, or a build without native code, contradicts nothing.
func (b Build) CheckABI(abi string) error {
	if abi == "" || len(b.NativeABIs) == 0 {
		return nil
	}
	for _, n := range b.NativeABIs {
		if nativeABI[n] == abi {
			return nil
		}
	}
	return Errorf(Unprocessable, "targetABI %s contradicts the APK's native libraries, which are for %v.", abi, b.NativeABIs)
}

// CheckInstallable returns Unprocessable for a build no device should be
// offered as an update: a debuggable or testOnly one.
func (b Build) CheckInstallable() error {
	switch {
	case b.Debuggable:
		return Errorf(Unprocessable, "The APK is debuggable (android:debuggable=\"true\"); upload a release build.")
	case b.TestOnly:
		return Errorf(Unprocessable, "The APK is testOnly (android:testOnly=\"true\"); upload a release build.")
	}
	return nil
}

// CheckSuccession returns Unprocessable when rel, a verified build with the
// given signer lineage, could not update a device that installed one of
// existing (the releases already stored): its package name differs from the
// first verified release's; its signer is neither the pinned one (that of
// the latest verified release) nor a v3 rotation whose lineage includes it;
// or its versionCode is out of order with a release for the same ABI
// (universal builds count for every ABI): a higher version must have a
// higher versionCode. Releases without a signer (stored before
// verification) are not compared.
func CheckSuccession(existing []Release, rel Release, lineage []string) error {
	var first, pin *Release
	for i := range existing {
		r := &existing[i]
		if r.SignerSHA256 == "" {
			continue
		}
		if first == nil || r.ID < first.ID {
			first = r
		}
		if pin == nil || r.ID > pin.ID {
			pin = r
		}
	}
	if first == nil {
		return nil // the first verified release pins the package and signer
	}
	if rel.PackageName != first.PackageName {
		return Errorf(Unprocessable, "The APK's package name %s differs from %s, the package of release %s; Android installs a new version only over the same package.", rel.PackageName, first.PackageName, first.Version)
	}
	if rel.SignerSHA256 != pin.SignerSHA256 && !slices.Contains(lineage, pin.SignerSHA256) {
		return Errorf(Unprocessable, "The APK is signed by certificate SHA-256 %s, not by the pinned %s (release %s) nor by a v3 rotation of it; Android refuses a new version signed by another key.", rel.SignerSHA256, pin.SignerSHA256, pin.Version)
	}
	for _, r := range existing {
		if r.SignerSHA256 == "" || (r.TargetABI != "" && rel.TargetABI != "" && r.TargetABI != rel.TargetABI) {
			continue
		}
		c := r.Version.Compare(rel.Version)
		if (c < 0 && r.VersionCode >= rel.VersionCode) || (c > 0 && r.VersionCode <= rel.VersionCode) {
			return Errorf(Unprocessable, "The APK's versionCode %d is out of order: release %s%s has versionCode %d, and a higher version must have a higher versionCode.", rel.VersionCode, r.Version, abiSuffix(r.TargetABI), r.VersionCode)
		}
	}
	return nil
}

func abiSuffix(abi string) string {
	if abi == "" {
		return " (universal)"
	}
	return fmt.Sprintf(" (%s)", abi)
}
