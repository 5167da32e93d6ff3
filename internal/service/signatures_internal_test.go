package service

import (
	"log/slog"
	"testing"
	"time"
)

// TestReleaseArgon2 checks when the memory of finished Argon2id runs is
// handed back: only after the last running check, at most once a second.
func TestReleaseArgon2(t *testing.T) {
	s := NewSignatures(nil, SignaturesConfig{Concurrency: 2}, slog.New(slog.DiscardHandler))
	freed := make(chan struct{}, 10)
	s.freeMemory = func() { freed <- struct{}{} }
	expect := func(what string, want int) {
		t.Helper()
		got := 0
		for timeout := time.After(200 * time.Millisecond); ; {
			select {
			case <-freed:
				got++
				continue
			case <-timeout:
			}
			break
		}
		if got != want {
			t.Errorf("%s: memory freed %d times, want %d", what, got, want)
		}
	}

	s.slots <- struct{}{} // another check still hashes
	s.releaseArgon2()
	expect("while a check runs", 0)

	<-s.slots
	s.releaseArgon2()
	expect("after the last check", 1)

	s.releaseArgon2()
	expect("again within a second", 0)

	s.freedAt.Add(-int64(time.Second))
	s.releaseArgon2()
	expect("a second later", 1)
}
