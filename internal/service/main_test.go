package service_test

import (
	"context"
	"log/slog"
	"os"
	"testing"

	"github.com/alexedwards/argon2id"
	"gorm.io/gorm"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/repository"
	"github.com/wemesse/server/internal/service"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// openDB opens and migrates the database at dsn; it is closed when the
// test ends.
func openDB(tb testing.TB, dsn string) *gorm.DB {
	tb.Helper()
	db, err := repository.OpenMigrated(context.Background(), dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { repository.Close(db) })
	return db
}

// newSignatures is Signatures on db with Argon2id at its cheapest (and
// limits to match) and cfg's other settings, logging nowhere.
func newSignatures(db *gorm.DB, cfg service.SignaturesConfig) *service.Signatures {
	cfg.Params = argon2id.Params{Memory: 1024, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32}
	cfg.Limits = service.Argon2Limits{Memory: 1024, Iterations: 1, Parallelism: 1}
	return service.NewSignatures(repository.NewSignatures(db), cfg, slog.New(slog.DiscardHandler))
}
