package service_test

import (
	"context"
	"os"
	"testing"

	"gorm.io/gorm"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/repository"
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
