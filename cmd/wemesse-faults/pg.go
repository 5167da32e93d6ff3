package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wemesse/server/internal/pgcluster"
)

// findPGBin returns the directory holding initdb, pg_ctl and postgres: the
// flag, else $WEMESSE_PG_BIN, else /usr/lib/postgresql/15/bin.
func findPGBin(flagDir string) (string, error) {
	dir, from := flagDir, "-pg-bin"
	if dir == "" {
		dir, from = os.Getenv("WEMESSE_PG_BIN"), "WEMESSE_PG_BIN"
	}
	if dir == "" {
		dir, from = "/usr/lib/postgresql/15/bin", "the default"
	}
	if _, err := pgcluster.FindBin(dir); err != nil {
		return "", fmt.Errorf("PostgreSQL server binaries not found (%s): %v; install PostgreSQL 15 or set WEMESSE_PG_BIN", from, err)
	}
	return dir, nil
}

// connect opens one connection to database db of the shared cluster.
func (h *harness) connect(ctx context.Context, db string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return pgx.Connect(ctx, h.pg.DSN(db))
}
