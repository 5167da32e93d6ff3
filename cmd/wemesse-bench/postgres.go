package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wemesse/server/internal/pgcluster"
)

// pgStmtTimeout bounds CREATE / DROP DATABASE and reading the settings.
const pgStmtTimeout = 60 * time.Second

// pgShownSettings are reported with every run on PostgreSQL.
var pgShownSettings = []string{
	"server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_level",
	"shared_buffers", "work_mem", "max_wal_size", "checkpoint_timeout", "max_connections",
}

// findPGBin returns the directory holding initdb, pg_ctl and postgres: dir
// if given, else $WEMESSE_PG_BIN if it holds them, else /usr/lib/postgresql/15/bin,
// the newest /usr/lib/postgresql/*/bin, `pg_config --bindir` or $PATH.
func findPGBin(dir string) (string, error) {
	if env := os.Getenv("WEMESSE_PG_BIN"); dir == "" && env != "" {
		if _, err := pgcluster.FindBin(env); err == nil {
			dir = env
		}
	}
	found, err := pgcluster.FindBin(dir)
	if err != nil {
		return "", fmt.Errorf("PostgreSQL server binaries not found (%v); pass -pg-bin DIR or -db sqlite", err)
	}
	return found, nil
}

// describePG lists the settings that matter for the comparison.
func describePG(ctx context.Context, pg *pgcluster.Cluster) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, pgStmtTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	var parts []string
	for _, name := range pgShownSettings {
		var v string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
			return strings.Join(parts, " "), err
		}
		parts = append(parts, name+"="+v)
	}
	return strings.Join(parts, " "), nil
}
