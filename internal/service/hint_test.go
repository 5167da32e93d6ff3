package service_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/service"
)

// countingObserver counts verifications by result.
type countingObserver struct {
	service.NopObserver
	mu sync.Mutex
	n  map[string]int
}

func (o *countingObserver) Verification(result string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.n[result]++
}

func (o *countingObserver) count(result string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[result]
}

// withHint returns a secret that starts with prefix and has hint.
func withHint(prefix, hint string) string {
	for i := 0; ; i++ {
		if s := fmt.Sprint(prefix, i); model.HintOf(s) == hint {
			return s
		}
	}
}

// TestSignatures_hintBudget: wrong secrets whose hint a row has cost at
// most the hint's budget of Argon2id runs a minute; those whose hint no
// row has wait as long as a hashed failure and are charged alike, so
// neither the time of a refusal nor the budget tells the two apart.
func TestSignatures_hintBudget(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		obs := &countingObserver{n: map[string]int{}}
		sigs := newSignatures(openDB(t, dsn), service.SignaturesConfig{
			Concurrency: 1, Wait: time.Minute, CacheSize: 100, CacheTTL: time.Minute, Refresh: time.Minute,
			HintFailures: 2, Observer: obs,
		})
		var paced []time.Duration
		service.SetSleep(sigs, func(_ context.Context, d time.Duration) { paced = append(paced, d) })
		const admin = "the-admin-secret"
		if _, err := sigs.Bootstrap(ctx, admin); err != nil {
			t.Fatal(err)
		}
		if err := sigs.Load(ctx); err != nil {
			t.Fatal(err)
		}
		hit := model.HintOf(admin)
		miss := "0000"
		if miss == hit {
			miss = "0001"
		}
		// Five wrong secrets of each kind against a budget of two: the
		// hit hint's cost two Argon2id runs in all (a check may hash twice,
		// around a re-read of the rows), the miss hint's two paces; every
		// other check of either is refused at once.
		for i := range 5 {
			for _, s := range []string{withHint(fmt.Sprint("hit-", i, "-"), hit), withHint(fmt.Sprint("miss-", i, "-"), miss)} {
				if _, err := sigs.Authenticate(ctx, s); model.ErrorCode(err) != model.Unauthorized {
					t.Fatalf("%s: err %v, want Unauthorized", s, err)
				}
			}
		}
		if got := obs.count("mismatch"); got != 2 {
			t.Errorf("%d Argon2id runs for wrong secrets with a stored hint, want the budget, 2", got)
		}
		if len(paced) != 2 {
			t.Errorf("%d wrong secrets with an unstored hint paced, want the budget, 2", len(paced))
		}
		if got := obs.count("hint_budget"); got < 3+3 {
			t.Errorf("%d checks refused on budget, want at least 6", got)
		}
		// The price: a valid secret that is not cached is refused too
		// while its hint's budget is spent.
		if _, err := sigs.Authenticate(ctx, admin); model.ErrorCode(err) != model.Unauthorized {
			t.Errorf("the uncached admin secret, its hint's budget spent: %v, want Unauthorized", err)
		}
		if got := obs.count("match"); got != 0 {
			t.Errorf("%d matches, want 0", got)
		}
		for _, d := range paced {
			if d <= 0 {
				t.Errorf("a miss was paced %v, want the time of a hash", d)
			}
		}
	})
}
