package handler

import (
	"testing"
	"time"

	"github.com/wemesse/server/internal/httpsig"
	"github.com/wemesse/server/internal/model"
)

// TestAnswerCache_resigns checks that a signature is renewed in the
// background once resignAfter old, and by the request once maxStampAge old.
func TestAnswerCache_resigns(t *testing.T) {
	pem, err := httpsig.NewKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	key, err := httpsig.ParseKeyPEM(pem)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := httpsig.NewSigner(key, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := answerCache{signer: signer}
	a, err := c.get(model.Release{ID: 1}, "tag", "https://mirror.test")
	if err != nil {
		t.Fatal(err)
	}
	age := func(d time.Duration) *stamp {
		st := *a.stamp.Load()
		st.created = time.Now().Add(-d).Truncate(time.Second)
		a.stamp.Store(&st)
		return &st
	}

	fresh := a.stamp.Load()
	if got := c.signed(a); got != fresh {
		t.Fatal("a fresh signature was renewed")
	}
	old := age(maxStampAge + time.Second)
	if got := c.signed(a); got == old || time.Since(got.created) > 2*time.Second {
		t.Fatalf("a signature %s old was sent, want a new one", maxStampAge)
	}
	aging := age(resignAfter + time.Second)
	if got := c.signed(a); got != aging {
		t.Fatal("a signature due for renewal was not sent while the new one is made")
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.stamp.Load() == aging {
		if time.Now().After(deadline) {
			t.Fatal("the signature was not renewed in the background")
		}
		time.Sleep(time.Millisecond)
	}
}
