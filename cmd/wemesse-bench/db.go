package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wemesse/server/internal/pgcluster"
	"github.com/wemesse/server/internal/repository"
)

// The databases a server row runs on.
const (
	dbSQLite   = "sqlite"
	dbPostgres = "postgres"
)

// loadTimeout bounds filling the users table and VACUUM ANALYZE.
const loadTimeout = 10 * time.Minute

// fixture is one fresh database, and a temp dir for the server's uploads,
// log and (on SQLite) database file. The tool reads and writes the database
// itself only to prepare it (bulk loads, TRUNCATE) and for the in-process
// SQLite reference, never while a measured server run is going on.
type fixture struct {
	kind   string // dbSQLite or dbPostgres
	dir    string
	dsn    string // the server's WEMESSE_DATABASE_URL
	pg     *pgcluster.Cluster
	pgName string

	sqlDB  *sql.DB   // SQLite, opened like the server opens it
	pgConn *pgx.Conn // PostgreSQL
}

// newFixture creates an empty database of kind for scenario.
func (b *bench) newFixture(ctx context.Context, kind, scenario string) (_ *fixture, err error) {
	dir, err := os.MkdirTemp("", "wemesse-bench-"+scenario+"-"+kind+"-")
	if err != nil {
		return nil, err
	}
	fx := &fixture{kind: kind, dir: dir}
	defer func() {
		if err != nil {
			fx.Close()
		}
	}()
	switch kind {
	case dbSQLite:
		fx.dsn = filepath.Join(dir, "wemesse.db")
	case dbPostgres:
		if fx.pg, err = b.postgres(ctx); err != nil {
			return nil, err
		}
		var suffix [4]byte
		_, _ = rand.Read(suffix[:])
		name := "wb_" + scenario + "_" + hex.EncodeToString(suffix[:])
		cctx, cancel := context.WithTimeout(ctx, pgStmtTimeout)
		err = fx.pg.CreateDB(cctx, name)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("create database %s: %w", name, err)
		}
		fx.dsn, fx.pgName = fx.pg.DSN(name), name
	default:
		return nil, fmt.Errorf("unknown database %q", kind)
	}
	return fx, nil
}

// spec is how to start a server on this database.
func (fx *fixture) spec(bin, admin string, env map[string]string) serverSpec {
	s := serverSpec{binary: bin, dataDir: fx.dir, admin: admin, env: env}
	if fx.kind == dbPostgres {
		s.dsn = fx.dsn
	}
	return s
}

// Close drops the database and removes the temp dir.
func (fx *fixture) Close() {
	if fx.sqlDB != nil {
		fx.sqlDB.Close()
	}
	if fx.pgConn != nil {
		fx.pgConn.Close(context.Background())
	}
	if fx.pgName != "" {
		ctx, cancel := context.WithTimeout(context.Background(), pgStmtTimeout)
		_ = fx.pg.DropDB(ctx, fx.pgName)
		cancel()
	}
	if fx.dir != "" {
		_ = os.RemoveAll(fx.dir)
	}
}

// open connects the tool to the database, once.
func (fx *fixture) open(ctx context.Context) error {
	switch {
	case fx.kind == dbSQLite && fx.sqlDB == nil:
		gdb, err := repository.Open(ctx, fx.dsn)
		if err != nil {
			return err
		}
		fx.sqlDB, err = gdb.DB()
		return err
	case fx.kind == dbPostgres && fx.pgConn == nil:
		var err error
		fx.pgConn, err = pgx.Connect(ctx, fx.dsn)
		return err
	}
	return nil
}

// exec runs statements, one after the other.
func (fx *fixture) exec(ctx context.Context, stmts ...string) error {
	if err := fx.open(ctx); err != nil {
		return err
	}
	for _, q := range stmts {
		var err error
		if fx.kind == dbSQLite {
			_, err = fx.sqlDB.ExecContext(ctx, q)
		} else {
			_, err = fx.pgConn.Exec(ctx, q)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", firstWords(q, 4), err)
		}
	}
	return nil
}

func firstWords(s string, n int) string {
	f := strings.Fields(s)
	return strings.Join(f[:min(n, len(f))], " ")
}

// countUsers counts the rows of users.
func (fx *fixture) countUsers(ctx context.Context) (int64, error) {
	if err := fx.open(ctx); err != nil {
		return 0, err
	}
	var n int64
	const q = "SELECT COUNT(*) FROM users"
	if fx.kind == dbSQLite {
		return n, fx.sqlDB.QueryRowContext(ctx, q).Scan(&n)
	}
	return n, fx.pgConn.QueryRow(ctx, q).Scan(&n)
}

// truncateUsers empties users and settles the database, so the next run
// starts on an empty table.
func (fx *fixture) truncateUsers(ctx context.Context) error {
	stmt := "TRUNCATE users RESTART IDENTITY"
	if fx.kind == dbSQLite {
		stmt = "DELETE FROM users"
	}
	if err := fx.exec(ctx, stmt); err != nil {
		return err
	}
	return fx.checkpoint(ctx)
}

// checkpoint settles the database before a measured run: the WAL written
// by the run before (on PostgreSQL by any database of the cluster) is
// checkpointed, so that no run pays for another's.
func (fx *fixture) checkpoint(ctx context.Context) error {
	if fx.kind == dbSQLite {
		return fx.exec(ctx, "PRAGMA wal_checkpoint(TRUNCATE)")
	}
	return fx.exec(ctx, "CHECKPOINT")
}

// The loaded users: distinct (session_id, device_mac), four versions, one
// ABI, activity spread over 30 days. Randomly generated devices of the
// device scenario never collide with them (session ids above 2^40).
const (
	loadUsersPG = `INSERT INTO users (app_locale, app_version, device_locale, device_mac, device_model, device_sdk,
	session_activity, session_id, session_register, tg_version, target_abi)
SELECT 'en', '226' || (4 + i % 4)::text || '_00', 'en_US', lpad(to_hex(i), 12, '0'), 'Pixel 7', '34',
	1700000000 + i % 2592000, i, 1690000000 + i, '10.14.5', 'arm64'
FROM generate_series(1, {N}) AS i`
	loadUsersSQLite = `WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {N})
INSERT INTO users (app_locale, app_version, device_locale, device_mac, device_model, device_sdk,
	session_activity, session_id, session_register, tg_version, target_abi)
SELECT 'en', '226' || (4 + i % 4) || '_00', 'en_US', printf('%012x', i), 'Pixel 7', '34',
	1700000000 + i % 2592000, i, 1690000000 + i, '10.14.5', 'arm64'
FROM s`
)

// loadUsersNoted is loadUsers for a scenario, logged and with its time
// noted under the table.
func (b *bench) loadUsersNoted(ctx context.Context, rep *report, fx *fixture, scenario string, n int) error {
	b.logf("%s on %s: loading %s users", scenario, fx.kind, fmtInt(int64(n)))
	loadTime, err := fx.loadUsers(ctx, n)
	if err != nil {
		return fmt.Errorf("load users: %w", err)
	}
	rep.notef("%s on %s: %s users loaded in %s (%s)", scenario, fx.kind, fmtInt(int64(n)), fmtDuration(loadTime), fx.loadDesc())
	return nil
}

// loadUsers empties users and inserts n rows with one SQL statement
// (generate_series on PostgreSQL, a recursive CTE on SQLite), then
// VACUUM ANALYZE and a checkpoint on PostgreSQL, ANALYZE and a WAL
// checkpoint on SQLite (a fresh bulk insert leaves nothing to vacuum). The
// server's schema must exist: start the server first.
func (fx *fixture) loadUsers(ctx context.Context, n int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	start := time.Now()
	if err := fx.truncateUsers(ctx); err != nil {
		return 0, err
	}
	var err error
	if fx.kind == dbSQLite {
		err = fx.exec(ctx, withN(loadUsersSQLite, n), "ANALYZE", "PRAGMA wal_checkpoint(TRUNCATE)")
	} else {
		err = fx.exec(ctx, withN(loadUsersPG, n), "VACUUM ANALYZE users", "CHECKPOINT")
	}
	if err != nil {
		return 0, err
	}
	got, err := fx.countUsers(ctx)
	if err != nil {
		return 0, err
	}
	if got != int64(n) {
		return 0, fmt.Errorf("loaded %d users, want %d", got, n)
	}
	return time.Since(start), nil
}

func withN(q string, n int) string { return strings.ReplaceAll(q, "{N}", strconv.Itoa(n)) }

// loadDesc says how users were loaded, for the report.
func (fx *fixture) loadDesc() string {
	if fx.kind == dbSQLite {
		return "one INSERT … SELECT from a recursive CTE, then ANALYZE and PRAGMA wal_checkpoint(TRUNCATE)"
	}
	return "one INSERT … SELECT FROM generate_series, then VACUUM ANALYZE users and CHECKPOINT"
}
