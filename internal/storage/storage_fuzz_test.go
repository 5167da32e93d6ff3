package storage

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/wemesse/server/internal/model"
)

// FuzzSafeName checks SafeName on arbitrary upload file names:
//   - the result is non-empty, at most MaxNameLen bytes, valid UTF-8, made
//     of letters, digits, '.', '-' and '_' only (so no '/', '\\' or NUL), and
//     never starts with a dot;
//   - it is a valid key segment: ValidKey("v/"+name) and ValidKey(Key(...));
//   - no directory survives: only what follows the last '/' or '\\' counts;
//   - a base name that is already safe is kept as it is;
//   - SafeName is idempotent.
func FuzzSafeName(f *testing.F) {
	for _, s := range []string{
		"wemesse.apk", "../../x", "..", "", "...", "/etc/passwd", `C:\Users\ops\wemesse.apk`,
		".hidden.apk", "we messe (1).apk", "Вемесса.apk", "名前.apk", "a\x00b\nc.apk", "bad\xffname.apk",
		"x/..", "-flag.apk", strings.Repeat("a", 300) + ".apk", strings.Repeat("я", 100), "\ufffd.apk",
		"_._-", "ǅ.apk", "\u202eevil.apk", "a/b\\c/..\\d.apk",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got := SafeName(name)
		if got == "" || len(got) > MaxNameLen || !utf8.ValidString(got) {
			t.Fatalf("SafeName(%q) = %q: empty, over %d bytes or not UTF-8", name, got, MaxNameLen)
		}
		if strings.ContainsAny(got, "/\\\x00") || strings.HasPrefix(got, ".") {
			t.Fatalf("SafeName(%q) = %q holds a separator or NUL or starts with a dot", name, got)
		}
		for _, r := range got {
			if !safeRune(r) {
				t.Fatalf("SafeName(%q) = %q holds %q", name, got, r)
			}
		}
		if !ValidKey("v/"+got) || !ValidKey(Key("2267_01", "arm64", got)) || !ValidKey(Key("2267_01", "", got)) {
			t.Fatalf("SafeName(%q) = %q is not a valid key segment", name, got)
		}
		base := name
		if i := strings.LastIndexAny(name, `/\`); i >= 0 {
			base = name[i+1:]
		}
		if b := SafeName(base); b != got {
			t.Fatalf("SafeName(%q) = %q but SafeName of its base %q = %q", name, got, base, b)
		}
		if alreadySafe(base) && got != base {
			t.Fatalf("SafeName changed the safe name %q to %q", base, got)
		}
		if again := SafeName(got); again != got {
			t.Fatalf("SafeName is not idempotent: %q -> %q -> %q", name, got, again)
		}
	})
}

func safeRune(r rune) bool {
	return r != utf8.RuneError && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '.' || r == '-' || r == '_')
}

// alreadySafe reports whether a base name needs no change by the rules
// SafeName documents.
func alreadySafe(s string) bool {
	if s == "" || len(s) > MaxNameLen || !utf8.ValidString(s) || strings.HasPrefix(s, ".") || strings.HasPrefix(s, "_") || strings.Trim(s, "._-") == "" {
		return false
	}
	for _, r := range s {
		if !safeRune(r) {
			return false
		}
	}
	return true
}

// FuzzDiskKeys drives a Disk rooted in a fresh temporary directory with
// arbitrary keys and content, and checks:
//   - nothing is reachable by key before it is published, staged files
//     included;
//   - Publish accepts only keys ValidKey accepts and puts the file exactly
//     at root/key, inside the root, readable back through Open;
//   - a failed Publish leaves the staged file for Discard, which removes it;
//   - Remove deletes a published file, after which Open says NotFound;
//   - at the end no regular file remains under the root and staging is
//     empty;
//   - nothing outside the root is created, changed or removed: the parent
//     directory holds the root and the sentinel files, untouched;
//   - nothing panics.
func FuzzDiskKeys(f *testing.F) {
	for _, s := range [][2]string{
		{"2267_01/wemesse.apk", "arm64/2267_01/wemesse.apk"},
		{"../outside.txt", "../outside/victim.apk"},
		{"../uploads2/x", "a/../../outside.txt"},
		{"/etc/passwd", `..\outside.txt`},
		{".staging/upload-1", ".staging"},
		{"a", "a/b"},
		{"a/b", "a"},
		{"x", "x"},
		{"", "."},
		{"a//b", "a/./b"},
		{"Вемесса/名前.apk", "v/\x00"},
		{strings.Repeat("a", 300), strings.Repeat("a/", 512) + "b"},
	} {
		f.Add(s[0], s[1], []byte("build"))
	}
	f.Fuzz(func(t *testing.T, key1, key2 string, content []byte) {
		ctx := context.Background()
		parent := t.TempDir()
		root := filepath.Join(parent, "uploads")
		for p, c := range map[string]string{"outside.txt": "keep", "outside/victim.apk": "keep", "uploads2/x": "keep"} {
			if err := os.MkdirAll(filepath.Join(parent, filepath.Dir(p)), 0o750); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(parent, p), []byte(c), 0o640); err != nil {
				t.Fatal(err)
			}
		}
		before := snapshotOutside(t, parent, "uploads")
		d, err := NewDisk(root)
		if err != nil {
			t.Fatal(err)
		}

		for _, k := range []string{key1, key2} {
			if _, _, err := d.Open(ctx, k); model.ErrorCode(err) != model.NotFound {
				t.Fatalf("Open(%q) on an empty disk = %v, want NotFound", k, err)
			}
		}

		live := map[string][]byte{} // published keys and their content
		contents := [][]byte{content, append(bytes.Clone(content), '2')}
		for i, k := range []string{key1, key2} {
			staged, n, err := d.Stage(ctx, bytes.NewReader(contents[i]))
			if err != nil || n != int64(len(contents[i])) {
				t.Fatalf("Stage = (%q, %d, %v), want %d bytes", staged, n, err, len(contents[i]))
			}
			for _, probe := range []string{k, stagingDir + "/" + staged, staged} {
				if _, ok := live[probe]; ok {
					continue
				}
				if f, _, err := d.Open(ctx, probe); model.ErrorCode(err) != model.NotFound {
					if f != nil {
						f.Close()
					}
					t.Fatalf("Open(%q) with only a staged file = %v, want NotFound", probe, err)
				}
			}
			err = d.Publish(ctx, staged, k)
			if err != nil {
				if err := d.Discard(ctx, staged); err != nil {
					t.Fatalf("Discard after failed Publish(%q): %v", k, err)
				}
				continue
			}
			if !ValidKey(k) {
				t.Fatalf("Publish accepted the invalid key %q", k)
			}
			p := filepath.Join(root, filepath.FromSlash(k))
			if rel, err := filepath.Rel(root, p); err != nil || rel == "." || strings.HasPrefix(rel, "..") || strings.HasPrefix(rel, stagingDir) {
				t.Fatalf("key %q was published at %s, outside the root %s", k, p, root)
			}
			if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, contents[i]) {
				t.Fatalf("file at %s after Publish(%q): %q, %v", p, k, got, err)
			}
			for lk := range live {
				// A key that is a directory of another cannot both be files.
				if strings.HasPrefix(k, lk+"/") || strings.HasPrefix(lk, k+"/") {
					t.Fatalf("published both %q and %q", lk, k)
				}
			}
			live[k] = contents[i]
		}

		for k, want := range live {
			rc, info, err := d.Open(ctx, k)
			if err != nil {
				t.Fatalf("Open(%q) after Publish: %v", k, err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, want) || info.Size() != int64(len(want)) {
				t.Fatalf("Open(%q) read %q (size %d), %v; want %q", k, got, info.Size(), err, want)
			}
		}
		files := regularFiles(t, root)
		wantFiles := make([]string, 0, len(live))
		for k := range live {
			wantFiles = append(wantFiles, k)
		}
		slices.Sort(wantFiles)
		if !slices.Equal(files, wantFiles) {
			t.Fatalf("files under the root = %q, want %q", files, wantFiles)
		}

		for _, k := range []string{key2, key1} {
			_, published := live[k]
			err := d.Remove(ctx, k)
			if !ValidKey(k) && err == nil {
				t.Fatalf("Remove accepted the invalid key %q", k)
			}
			if published {
				if err != nil {
					t.Fatalf("Remove(%q) of a published file: %v", k, err)
				}
				delete(live, k)
			}
			if _, _, err := d.Open(ctx, k); model.ErrorCode(err) != model.NotFound {
				t.Fatalf("Open(%q) after Remove = %v, want NotFound", k, err)
			}
		}
		if files := regularFiles(t, root); len(files) != 0 {
			t.Fatalf("files left under the root: %q", files)
		}
		if entries, err := os.ReadDir(filepath.Join(root, stagingDir)); err != nil || len(entries) != 0 {
			t.Fatalf("staging holds %v (%v), want nothing", entries, err)
		}
		if after := snapshotOutside(t, parent, "uploads"); !maps.Equal(before, after) {
			t.Fatalf("outside the root changed:\nbefore %q\nafter  %q", before, after)
		}
	})
}

// snapshotOutside returns every path under parent except the subtree skip,
// with the content of each regular file, and the type of everything else.
func snapshotOutside(tb testing.TB, parent, skip string) map[string]string {
	tb.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(parent, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(parent, p)
		if rel == skip {
			return fs.SkipDir
		}
		switch {
		case e.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = "file:" + string(b)
		default:
			out[rel] = e.Type().String()
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// regularFiles lists the regular files under root outside staging, and
// fails on anything that is neither a file nor a directory.
func regularFiles(tb testing.TB, root string) []string {
	tb.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case rel == stagingDir:
			return fs.SkipDir
		case e.Type().IsRegular():
			out = append(out, filepath.ToSlash(rel))
		case !e.IsDir():
			tb.Fatalf("unexpected %s at %s", e.Type(), rel)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	slices.Sort(out)
	return out
}
