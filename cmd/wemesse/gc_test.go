package main

import (
	"io"
	"log/slog"
	"runtime/debug"
	"testing"

	"github.com/wemesse/server/internal/config"
)

// TestTuneGC checks the server's GC settings, and that GOGC or GOMEMLIMIT
// in the environment leave Go's own in force. Not parallel: the settings
// are the whole process's.
func TestTuneGC(t *testing.T) {
	percent, limit := debug.SetGCPercent(100), debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(percent); debug.SetMemoryLimit(limit) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := config.Config{Argon2: config.Argon2{Memory: 64 * 1024}, Argon2Concurrency: 2}

	for _, env := range []string{"GOGC", "GOMEMLIMIT"} {
		debug.SetGCPercent(100)
		debug.SetMemoryLimit(1 << 40)
		tuneGC(cfg, func(name string) string {
			if name == env {
				return "123"
			}
			return ""
		}, log)
		if p, l := debug.SetGCPercent(100), debug.SetMemoryLimit(-1); p != 100 || l != 1<<40 {
			t.Errorf("with %s set: GOGC %d, limit %d; want Go's left alone", env, p, l)
		}
	}

	tuneGC(cfg, func(string) string { return "" }, log)
	if p, l := debug.SetGCPercent(100), debug.SetMemoryLimit(-1); p != gcPercent || l != 256<<20 {
		t.Errorf("GOGC %d, limit %d; want %d and 256 MiB (128 MiB + 2 × 64 MiB)", p, l, gcPercent)
	}
}
