package apk

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// allocBound is the most a single Verify may allocate beyond the bytes of
// its input: the fixed limits (central directory, signing block, manifest,
// one META-INF file, a digest chunk) with room to spare.
const allocBound = maxCentralDir*4 + maxBlock*2 + maxManifestXML*4 + maxMetaFile*4 + 4*chunkSize

func seedFixtures(f *testing.F) {
	f.Helper()
	paths, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "apk", "*.apk"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("PK\x05\x06" + string(make([]byte, 18))))
}

// FuzzVerify feeds arbitrary files to Verify: it must return a verdict or
// accept, never panic, never fail to read an in-memory file, and allocate
// within allocBound.
func FuzzVerify(f *testing.F) {
	seedFixtures(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := Verify(bytes.NewReader(b), int64(len(b)))
		runtime.ReadMemStats(&after)
		var v *Error
		if err != nil && !errors.As(err, &v) {
			t.Fatalf("not a verdict: %v", err)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > allocBound+uint64(8*len(b)) {
			t.Fatalf("allocated %d bytes for a %d-byte input", grew, len(b))
		}
	})
}

// FuzzManifest feeds arbitrary binary XML to the manifest parser.
func FuzzManifest(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "apk", "*.apk"))
	for _, p := range paths {
		r, err := os.Open(p)
		if err != nil {
			f.Fatal(err)
		}
		st, _ := r.Stat()
		l, err := findLayout(r, st.Size())
		if err == nil {
			if _, byName, err := openZip(r, l); err == nil {
				if m, ok := byName["AndroidManifest.xml"]; ok {
					if b, err := readEntry(m, maxManifestXML); err == nil {
						f.Add(b)
					}
				}
			}
		}
		r.Close()
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := parseManifest(b)
		var v *Error
		if err != nil && !errors.As(err, &v) {
			t.Fatalf("not a verdict: %v", err)
		}
		if err == nil && info.Package == "" {
			t.Fatal("accepted a manifest without a package name")
		}
	})
}
