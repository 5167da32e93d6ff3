package service

import (
	"log/slog"
	"testing"
	"time"
)

// TestReleaseArgon2 checks when the memory of finished Argon2id runs is
// handed back: after the last running check, at most once per
// releaseEvery, and never skipped for a check that ends in between.
func TestReleaseArgon2(t *testing.T) {
	s := NewSignatures(nil, SignaturesConfig{Concurrency: 2}, slog.New(slog.DiscardHandler))
	freed := make(chan time.Time, 10)
	s.freeMemory = func() { freed <- time.Now() }
	count := func(within time.Duration) int {
		n := 0
		for timeout := time.After(within); ; {
			select {
			case <-freed:
				n++
				continue
			case <-timeout:
			}
			return n
		}
	}

	s.slots <- struct{}{} // another check still hashes
	s.releaseArgon2()
	if n := count(200 * time.Millisecond); n != 0 {
		t.Fatalf("freed %d times while a check runs, want 0", n)
	}

	<-s.slots
	start := time.Now()
	s.releaseArgon2()
	select {
	case <-freed:
	case <-time.After(2 * time.Second):
		t.Fatal("not freed after the last check")
	}

	// Two more checks end within the second: one release, a second after
	// the first.
	s.releaseArgon2()
	s.releaseArgon2()
	select {
	case at := <-freed:
		if gap := at.Sub(start); gap < releaseEvery-50*time.Millisecond {
			t.Errorf("freed again %s after the first release, want at least %s", gap, releaseEvery)
		}
	case <-time.After(releaseEvery + 2*time.Second):
		t.Fatal("the checks that ended within the second were never released")
	}
	if n := count(300 * time.Millisecond); n != 0 {
		t.Errorf("freed %d more times, want one release for both checks", n)
	}
}
