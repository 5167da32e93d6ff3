package service_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/repository"
	"github.com/wemesse/server/internal/service"
)

// poisoned is a real store that fails any batch holding the device "bad",
// as a database would reject one row it cannot store.
type poisoned struct {
	*repository.Users
	mu      sync.Mutex
	batches []int
}

func (p *poisoned) WriteBatch(ctx context.Context, reports []model.DeviceReport) (func() ([]model.User, error), error) {
	p.mu.Lock()
	p.batches = append(p.batches, len(reports))
	p.mu.Unlock()
	for _, r := range reports {
		if r.User.DeviceMac == "bad" {
			return nil, errors.New("row rejected")
		}
	}
	return p.Users.WriteBatch(ctx, reports)
}

// TestUsers_Report_groupCommit sends concurrent reports: they share
// transactions, each is answered after its commit, and one report the
// database rejects fails alone.
func TestUsers_Report_groupCommit(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := openDB(t, dsn)
		store := &poisoned{Users: repository.NewUsers(db)}
		defer store.Close()
		users := service.NewUsers(store, service.UsersConfig{DefaultABI: "arm64", Writers: 1, MaxBatch: 64})
		defer users.Close()

		var wg sync.WaitGroup
		errs := make([]error, 100)
		for i := range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mac := fmt.Sprint("mac-", i)
				if i == 50 {
					mac = "bad"
				}
				_, errs[i] = users.Report(ctx, model.User{SessionID: int64(i + 1), DeviceMac: mac, AppVersion: "1_0"})
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if (err != nil) != (i == 50) {
				t.Errorf("report %d: err = %v", i, err)
			}
		}
		var n int64
		db.Table("users").Count(&n)
		if n != 99 {
			t.Errorf("users = %d, want 99", n)
		}
		biggest := 0
		for _, b := range store.batches {
			biggest = max(biggest, b)
		}
		if biggest < 2 {
			t.Errorf("no two reports shared a transaction: batches %v", store.batches)
		}
		t.Logf("batch sizes: %v", store.batches)
	})
}
