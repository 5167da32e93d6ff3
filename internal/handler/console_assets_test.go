package handler

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"strings"
	"testing"
)

// TestConsoleAssets_match checks that every vendored file the binary
// embeds has the hash that console/third_party/SHA256SUMS (written by
// fetch.sh) records, and that each library's licence is embedded with it.
func TestConsoleAssets_match(t *testing.T) {
	f, err := os.Open("console/third_party/SHA256SUMS")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	listed := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q is not <sha256>  <name>", sc.Text())
		}
		b, err := fs.ReadFile(consoleFiles, "console/third_party/"+name)
		if err != nil {
			t.Errorf("%s is listed but not embedded: %v", name, err)
			continue
		}
		if got := sha256.Sum256(b); hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s: sha256 %x, SHA256SUMS says %s", name, got, sum)
		}
		listed[name] = true
	}
	embedded, err := fs.Glob(consoleFiles, "console/third_party/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range embedded {
		if name := strings.TrimPrefix(p, "console/third_party/"); !listed[name] {
			t.Errorf("%s is embedded but not in SHA256SUMS", name)
		}
	}
	for _, lic := range []string{"LICENSE.htmx", "LICENSE.uplot"} {
		if !listed[lic] {
			t.Errorf("%s is missing", lic)
		}
	}
}
