package apk_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wemesse/server/internal/apk"
)

const signerA = "c7b4b4ab42221a81b0b5353b42f59d4c5464889a795f1ce82f84454f0ba2a7a3"

func fixture(name string) string { return filepath.Join("..", "..", "testdata", "apk", name) }

func verifyFile(tb testing.TB, path string) (apk.Info, error) {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		tb.Fatal(err)
	}
	return apk.Verify(f, st.Size())
}

// TestVerify_fixtures checks each fixture's verdict, and that it equals
// apksigner's when apksigner is installed (under CI=true it must be).
func TestVerify_fixtures(t *testing.T) {
	apksigner := findApksigner(t)
	tests := []struct {
		file   string
		ok     bool
		reason string // part of the verdict when !ok
		check  func(apk.Info) string
	}{
		{file: "good.apk", ok: true},
		{file: "v1only.apk", ok: true},
		{file: "jarsigner.apk", ok: true},
		{file: "arm64.apk", ok: true},
		{file: "multiabi.apk", ok: true},
		{file: "newer.apk", ok: true},
		{file: "newest.apk", ok: true},
		{file: "rotated.apk", ok: true},
		{file: "othersigner.apk", ok: true},
		{file: "otherpackage.apk", ok: true},
		{file: "debuggable.apk", ok: true},
		{file: "testonly.apk", ok: true},
		{file: "backwards.apk", ok: true},
		{file: "unsigned.apk", reason: "not signed"},
		{file: "tampered.apk", reason: "changed after signing"},
		{file: "v1target34.apk", reason: "targetSdkVersion 34 requires"},
		{file: "random.bin", reason: "not a ZIP archive"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			info, err := verifyFile(t, fixture(tt.file))
			compareApksigner(t, apksigner, fixture(tt.file), info, err)
			var verdict *apk.Error
			if err != nil && !errors.As(err, &verdict) {
				t.Fatalf("read error: %v", err)
			}
			if got := err == nil; got != tt.ok {
				t.Fatalf("accepted %v (%v), want %v", got, err, tt.ok)
			}
			if err != nil && !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("verdict %q, want it to contain %q", err, tt.reason)
			}
		})
	}
}

// findApksigner returns apksigner's path, "" when it is not installed;
// under CI=true it must be.
func findApksigner(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("apksigner")
	if err != nil && os.Getenv("CI") == "true" {
		tb.Fatal("apksigner is not installed; .ci/run installs it")
	}
	return path
}

// compareApksigner checks that apksigner accepts the file at path exactly
// when Verify did (err nil), and names the same signer.
func compareApksigner(tb testing.TB, apksigner, path string, info apk.Info, err error) {
	tb.Helper()
	if apksigner == "" {
		return
	}
	out, aerr := exec.Command(apksigner, "verify", "--print-certs", path).CombinedOutput()
	theirs := aerr == nil && !strings.Contains(string(out), "DOES NOT VERIFY")
	if theirs != (err == nil) {
		tb.Errorf("apksigner accepts %v, Verify %v (%v): %s", theirs, err == nil, err, out)
	}
	if theirs && err == nil && !strings.Contains(string(out), "certificate SHA-256 digest: "+info.SignerSHA256+"\n") {
		tb.Errorf("signer %s is not apksigner's: %s", info.SignerSHA256, out)
	}
}

// TestVerify_mutations changes signed fixtures the ways an attacker or a
// broken tool would, and checks the verdict against apksigner's.
func TestVerify_mutations(t *testing.T) {
	apksigner := findApksigner(t)
	read := func(name string) []byte {
		b, err := os.ReadFile(fixture(name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	replace := func(name, old, new string) []byte {
		b := read(name)
		if !bytes.Contains(b, []byte(old)) {
			t.Fatalf("%s has no %q", name, old)
		}
		return bytes.Replace(b, []byte(old), []byte(new), 1)
	}
	tests := []struct {
		name   string
		file   []byte
		reason string // "" when it must verify
	}{
		// The stored asset of a JAR-only APK, changed: its manifest digest no longer matches.
		{"v1 entry changed", replace("v1only.apk", "hello wemesse v1only", "hello wemesse v1evil"), `"assets/hello.txt"`},
		// A v1+v2+v3 APK whose asset changed: caught by v2 first.
		{"v1v2v3 entry changed", replace("multiabi.apk", "hello wemesse multiabi", "hello wemesse multievil"[:22]), "changed after signing"},
		// The APK Signing Block removed: the JAR signature's stripping protection catches it.
		{"v2 and v3 stripped", stripSigningBlock(t, read("multiabi.apk")), "also signed with APK Signature Scheme v2"},
		// The signing block's magic damaged: no block, and minSdk 24 leaves only v1, which is absent.
		{"block magic broken", replace("good.apk", "APK Sig Block 42", "APK Sig Block 41"), "not signed"},
		{"empty", nil, "too short"},
		{"end record only", []byte("PK\x05\x06" + strings.Repeat("\x00", 18)), "no AndroidManifest.xml"},
		{"central directory past the end", append([]byte("PK\x05\x06"+strings.Repeat("\x00", 8)), 0xff, 0xff, 0xff, 0x01, 0, 0, 0, 0, 0, 0), "exceeds the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "mutated.apk")
			if err := os.WriteFile(path, tt.file, 0o600); err != nil {
				t.Fatal(err)
			}
			info, err := verifyFile(t, path)
			var v *apk.Error
			if err != nil && !errors.As(err, &v) {
				t.Fatalf("read error: %v", err)
			}
			if tt.reason == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tt.reason != "" && (err == nil || !strings.Contains(err.Error(), tt.reason)) {
				t.Fatalf("verdict %v, want one containing %q", err, tt.reason)
			}
			if len(tt.file) > 22 {
				compareApksigner(t, apksigner, path, info, err)
			}
		})
	}
}

// stripSigningBlock removes the APK Signing Block from an APK, fixing the
// end record's central directory offset, as a downgrade attack would.
func stripSigningBlock(tb testing.TB, b []byte) []byte {
	tb.Helper()
	eocd := bytes.LastIndex(b, []byte("PK\x05\x06"))
	cd := int(binary.LittleEndian.Uint32(b[eocd+16:]))
	size := int(binary.LittleEndian.Uint64(b[cd-24:]))
	start := cd - size - 8
	out := append(append([]byte(nil), b[:start]...), b[cd:]...)
	binary.LittleEndian.PutUint32(out[len(out)-(len(b)-eocd)+16:], uint32(start))
	return out
}
