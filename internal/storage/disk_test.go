package storage

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/wemesse/server/internal/model"
)

func TestSafeName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"wemesse.apk", "wemesse.apk"},
		{"../../x", "x"},
		{"..", FallbackName},
		{"", FallbackName},
		{"...", FallbackName},
		{"/etc/passwd", "passwd"},
		{`C:\Users\ops\wemesse.apk`, "wemesse.apk"},
		{".hidden.apk", "hidden.apk"},
		{"we messe (1).apk", "we_messe__1_.apk"},
		{"Вемесса.apk", "Вемесса.apk"},
		{"名前.apk", "名前.apk"},
		{"a\x00b\nc.apk", "a_b_c.apk"},
		{"bad\xffname.apk", "badname.apk"},
		{"x/..", FallbackName},
		{"-flag.apk", "-flag.apk"},
		{strings.Repeat("a", 300) + ".apk", strings.Repeat("a", MaxNameLen)},
		{strings.Repeat("я", 100), strings.Repeat("я", MaxNameLen/2)},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := SafeName(tt.in)
			if got != tt.want {
				t.Errorf("SafeName(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if !ValidKey(Key("1_0", "", got)) {
				t.Errorf("SafeName(%q) = %q is not a valid key segment", tt.in, got)
			}
		})
	}
}

func TestValidKey(t *testing.T) {
	tests := map[string]bool{
		"2267_01/wemesse.apk":       true,
		"arm64/2267_01/wemesse.apk": true,
		"../x":                      false,
		"a/../b":                    false,
		"/abs":                      false,
		".staging/upload-1":         false,
		"a/.hidden":                 false,
		"":                          false,
		"a//b":                      false,
		`a\..\b`:                    false,
		"a/":                        false,
		strings.Repeat("a/", MaxKeyDepth-1) + "b": true,
		strings.Repeat("a/", MaxKeyDepth) + "b":   false,
	}
	for key, want := range tests {
		if got := ValidKey(key); got != want {
			t.Errorf("ValidKey(%q) = %v, want %v", key, got, want)
		}
	}
}

func TestDisk_StagePublishOpen(t *testing.T) {
	ctx := context.Background()
	d := newDisk(t)
	staged, n, err := d.Stage(ctx, strings.NewReader("hello"))
	if err != nil || n != 5 {
		t.Fatalf("Stage = (%q, %d, %v), want 5 bytes", staged, n, err)
	}
	if _, _, err := d.Open(ctx, ".staging/"+staged); model.ErrorCode(err) != model.NotFound {
		t.Fatalf("a staged file is reachable by key: %v", err)
	}
	if err := d.Publish(ctx, staged, "1_0/app.apk"); err != nil {
		t.Fatal(err)
	}
	f, info, err := d.Open(ctx, "1_0/app.apk")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	if string(b) != "hello" || info.Size() != 5 {
		t.Errorf("got %q (%d bytes), want hello", b, info.Size())
	}
	assertFiles(t, d.dir, "1_0/app.apk")
	if err := d.Remove(ctx, "1_0/app.apk"); err != nil {
		t.Fatal(err)
	}
	assertFiles(t, d.dir)
}

func TestDisk_StageFailureLeavesNothing(t *testing.T) {
	d := newDisk(t)
	boom := errors.New("boom")
	_, _, err := d.Stage(context.Background(), io.MultiReader(strings.NewReader("partial"), iotest.ErrReader(boom)))
	if !errors.Is(err, boom) {
		t.Fatalf("Stage err = %v, want %v", err, boom)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := d.Stage(ctx, strings.NewReader("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Stage on a cancelled context: err = %v", err)
	}
	assertFiles(t, d.dir)
}

func TestDisk_StageSeveralWritebackWindows(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), (3*writebackEvery+12345)/16)
	sources := map[string]func() io.Reader{
		"WriterTo": func() io.Reader { return bytes.NewReader(data) },
		"Reader":   func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) },
	}
	for name, src := range sources {
		d := newDisk(t)
		staged, n, err := d.Stage(context.Background(), src())
		if err != nil || n != int64(len(data)) {
			t.Fatalf("%s: Stage = (%q, %d, %v), want %d bytes", name, staged, n, err, len(data))
		}
		name, _ := d.stagedName(staged)
		p := filepath.Join(d.dir, name)
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: staged file: %d bytes, %v; equal %t", name, len(got), err, bytes.Equal(got, data))
		}
	}
}

func TestDisk_StageCancelledMidFileLeavesNothing(t *testing.T) {
	d := newDisk(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := strings.NewReader(strings.Repeat("x", 2*writebackEvery+1))
	rest := strings.NewReader(strings.Repeat("y", writebackEvery))
	src := io.MultiReader(first, readFunc(func([]byte) (int, error) { cancel(); return 0, io.EOF }), rest)
	if _, _, err := d.Stage(ctx, src); !errors.Is(err, context.Canceled) {
		t.Fatalf("Stage err = %v, want %v", err, context.Canceled)
	}
	assertFiles(t, d.dir)
}

type readFunc func([]byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }

func TestDisk_RejectsEscapingKeys(t *testing.T) {
	ctx := context.Background()
	d := newDisk(t)
	staged, _, err := d.Stage(ctx, strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"../escape.apk", "/tmp/escape.apk", ".staging/x", "a/../../b"} {
		if err := d.Publish(ctx, staged, key); err == nil {
			t.Errorf("Publish to %q succeeded", key)
		}
		if _, _, err := d.Open(ctx, key); model.ErrorCode(err) != model.NotFound {
			t.Errorf("Open(%q) = %v, want NotFound", key, err)
		}
	}
	for _, bad := range []string{"../x", "", ".."} {
		if err := d.Discard(ctx, bad); err == nil {
			t.Errorf("Discard(%q) succeeded", bad)
		}
	}
	if err := d.Discard(ctx, staged); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(d.dir), "escape.apk")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a file escaped the root: %v", err)
	}
}

func TestDisk_CleanStaging(t *testing.T) {
	d := newDisk(t)
	for range 3 {
		if _, _, err := d.Stage(context.Background(), strings.NewReader("left over")); err != nil {
			t.Fatal(err)
		}
	}
	n, err := d.CleanStaging(context.Background())
	if err != nil || n != 3 {
		t.Fatalf("CleanStaging = (%d, %v), want 3", n, err)
	}
	assertFiles(t, d.dir)
}

func newDisk(tb testing.TB) *Disk {
	tb.Helper()
	d, err := NewDisk(filepath.Join(tb.TempDir(), "uploads"))
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// assertFiles checks that root holds exactly the given regular files,
// staging included.
func assertFiles(tb testing.TB, root string, want ...string) {
	tb.Helper()
	var got []string
	filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			rel, _ := filepath.Rel(root, p)
			got = append(got, filepath.ToSlash(rel))
		}
		return nil
	})
	if strings.Join(got, ",") != strings.Join(want, ",") {
		tb.Errorf("files under root = %v, want %v", got, want)
	}
}
