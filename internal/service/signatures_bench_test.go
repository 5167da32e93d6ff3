package service_test

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/alexedwards/argon2id"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/repository"
	"github.com/wemesse/server/internal/service"
)

// BenchmarkSignatures_Authenticate measures one check of a valid secret
// with the server's default Argon2id parameters, on a real SQLite database
// holding that one signature:
//
//   - cold: a new Signatures (empty caches) for every check, so Argon2id runs;
//   - warm: one Signatures, the same secret again and again, served from the
//     verified cache.
func BenchmarkSignatures_Authenticate(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	db := openDB(b, dbtest.SQLite(b))
	store := repository.NewSignatures(db)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The server's defaults (internal/config).
	cfg := service.SignaturesConfig{
		Params: argon2id.Params{
			Memory: 64 * 1024, Iterations: 1, Parallelism: uint8(runtime.NumCPU()), SaltLength: 16, KeyLength: 32,
		},
		Limits:      service.Argon2Limits{Memory: 256 * 1024, Iterations: 10, Parallelism: 16},
		Concurrency: runtime.NumCPU(),
		Wait:        2 * time.Second,
		CacheSize:   10000,
		CacheTTL:    10 * time.Minute,
		Refresh:     2 * time.Second,
	}
	secret, _, err := service.NewSignatures(store, cfg, log).Create(ctx, model.RoleClient)
	if err != nil {
		b.Fatal(err)
	}

	b.Run("cold", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			sigs := service.NewSignatures(store, cfg, log)
			if err := sigs.Load(ctx); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, err := sigs.Authenticate(ctx, secret); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("warm", func(b *testing.B) {
		sigs := service.NewSignatures(store, cfg, log)
		if err := sigs.Load(ctx); err != nil {
			b.Fatal(err)
		}
		if _, err := sigs.Authenticate(ctx, secret); err != nil { // fills the cache
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := sigs.Authenticate(ctx, secret); err != nil {
				b.Fatal(err)
			}
		}
	})
}
