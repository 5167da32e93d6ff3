// Package dbtest gives each test a fresh, real database: a new SQLite file
// or a new, empty database on a throwaway PostgreSQL cluster that the test
// binary starts itself.
//
// A package that uses Postgres (directly or through Each) should install
// Main as its TestMain so that the shared cluster is stopped and removed
// when the tests finish:
//
//	func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }
//
// The cluster is started lazily, on the first call to Postgres or
// PostgresAdmin, and is shared by all tests of the test binary. Every call
// to Postgres creates its own database, which is dropped when the test ends.
//
// PostgreSQL server binaries (initdb, pg_ctl, postgres) are looked up in
// $WEMESSE_PG_BIN, /usr/lib/postgresql/15/bin, the newest
// /usr/lib/postgresql/*/bin, `pg_config --bindir` and finally $PATH. When
// they cannot be found, PostgreSQL tests are skipped, except when CI=true,
// where they fail.
//
// PostgreSQL refuses to run as root; when the tests run as root the server
// is run as the "postgres" OS user.
//
// The package only works on Unix-like systems.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wemesse/server/internal/pgcluster"
)

// envPGBin names the environment variable that overrides where the
// PostgreSQL server binaries are looked up.
const envPGBin = "WEMESSE_PG_BIN"

// stmtTimeout bounds CREATE and DROP DATABASE.
const stmtTimeout = 30 * time.Second

var (
	clusterOnce sync.Once
	shared      *pgcluster.Cluster // set by clusterOnce when the start succeeded
	sharedErr   error              // set by clusterOnce when the start failed
	sharedSkip  string             // set by clusterOnce when binaries are missing
	sharedMu    sync.Mutex

	dbCounter atomic.Int64
)

// Main runs the tests and afterwards stops and removes the PostgreSQL
// cluster if one was started. It starts nothing eagerly. Use it as
//
//	func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }
//
// If the test binary dies without returning from Main (for example because
// a test panicked), a watchdog process started together with the cluster
// shuts the server down and removes its directory.
func Main(m *testing.M) int {
	code := m.Run()
	if err := shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "dbtest: stopping PostgreSQL: %v\n", err)
	}
	return code
}

// Postgres returns the DSN of a new, empty PostgreSQL database created for
// this test only, in the form
//
//	postgres://postgres@127.0.0.1:PORT/t_N_RANDOM?sslmode=disable
//
// The database is dropped (WITH (FORCE)) in tb.Cleanup. The shared cluster
// is started on the first call. If no PostgreSQL server binaries are found
// the test is skipped, or fails when the environment variable CI is true.
func Postgres(tb testing.TB) string {
	tb.Helper()
	c := sharedCluster(tb)

	name := fmt.Sprintf("t_%d_%s", dbCounter.Add(1), randomSuffix())
	ctx, cancel := context.WithTimeout(context.Background(), stmtTimeout)
	defer cancel()
	if err := c.CreateDB(ctx, name); err != nil {
		tb.Fatalf("dbtest: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stmtTimeout)
		defer cancel()
		if err := c.DropDB(ctx, name); err != nil {
			tb.Errorf("dbtest: drop database %s: %v", name, err)
		}
	})
	return c.DSN(name)
}

// PostgresAdmin returns the DSN of the "postgres" maintenance database of
// the shared cluster, connecting as the superuser "postgres". It is meant
// for tests that create or drop databases themselves; such tests are
// responsible for cleaning up what they create. The cluster is started (or
// the test skipped) exactly as for Postgres.
func PostgresAdmin(tb testing.TB) string {
	tb.Helper()
	return sharedCluster(tb).DSN("postgres")
}

// SQLite returns the path of a new SQLite database file inside
// tb.TempDir(). The file does not exist yet; SQLite creates it on first
// open, and it is removed together with the temporary directory.
func SQLite(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(tb.TempDir(), "test.db")
}

// Each runs fn as two subtests, "sqlite" and "postgres", passing each its
// own fresh DSN from SQLite and Postgres respectively. The postgres subtest
// is skipped (or fails under CI=true) when PostgreSQL is not available.
func Each(t *testing.T, fn func(t *testing.T, dsn string)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) {
		fn(t, SQLite(t))
	})
	t.Run("postgres", func(t *testing.T) {
		fn(t, Postgres(t))
	})
}

// Available reports whether the PostgreSQL server binaries were found and,
// when running as root, whether the "postgres" OS user exists. If not, the
// string explains why.
func Available() (bool, string) {
	dir := os.Getenv(envPGBin)
	if err := pgcluster.Check(dir); err != nil {
		if dir != "" {
			return false, envPGBin + "=" + dir + ": " + err.Error()
		}
		return false, err.Error()
	}
	return true, ""
}

// sharedCluster starts the cluster on first use and returns it, or skips or
// fails tb.
func sharedCluster(tb testing.TB) *pgcluster.Cluster {
	tb.Helper()
	clusterOnce.Do(func() {
		if ok, why := Available(); !ok {
			sharedSkip = why
			return
		}
		begin := time.Now()
		c, err := pgcluster.New(context.Background(), pgcluster.Options{
			BinDir:     os.Getenv(envPGBin),
			TempPrefix: "wemesse-dbtest-",
			Settings: []string{"fsync=off", "synchronous_commit=off", "full_page_writes=off",
				"max_connections=300", "shared_buffers=64MB"},
		})
		sharedMu.Lock()
		shared, sharedErr = c, err
		sharedMu.Unlock()
		if err == nil {
			tb.Logf("dbtest: started PostgreSQL %s on 127.0.0.1:%d in %v (data in %s)",
				c.Version(), c.Port(), time.Since(begin).Round(time.Millisecond), c.Dir())
		}
	})
	switch {
	case sharedSkip != "":
		msg := "PostgreSQL server binaries not found (" + sharedSkip + "); set " + envPGBin
		if inCI() {
			tb.Fatal("dbtest: " + msg + " (CI=true, so this is a failure, not a skip)")
		}
		tb.Skip("dbtest: " + msg)
	case sharedErr != nil:
		tb.Fatalf("dbtest: starting PostgreSQL: %v", sharedErr)
	}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil {
		tb.Fatal("dbtest: the PostgreSQL cluster has already been stopped (Postgres called after Main's m.Run returned?)")
	}
	return shared
}

// shutdown stops and removes the shared cluster, if any.
func shutdown() error {
	sharedMu.Lock()
	c := shared
	shared = nil
	sharedMu.Unlock()
	if c == nil {
		return nil
	}
	return c.Close()
}

// inCI reports whether the tests run under CI (CI=true), where skipping
// PostgreSQL tests counts as a failure.
func inCI() bool {
	ok, _ := strconv.ParseBool(os.Getenv("CI"))
	return ok
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error
	return hex.EncodeToString(b[:])
}
