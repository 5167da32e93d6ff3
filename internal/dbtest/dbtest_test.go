package dbtest_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wemesse/server/internal/dbtest"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// connect opens a pgx connection to dsn that is closed when t ends.
func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// dbName returns the database name of a postgres:// DSN.
func dbName(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("parse DSN %q: %v", dsn, err)
	}
	if u.Scheme != "postgres" || u.Hostname() != "127.0.0.1" || u.Query().Get("sslmode") != "disable" {
		t.Fatalf("unexpected DSN %q", dsn)
	}
	return strings.TrimPrefix(u.Path, "/")
}

func TestEach(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		switch {
		case strings.HasSuffix(t.Name(), "/sqlite"):
			tmp := os.TempDir()
			if rel, err := filepath.Rel(tmp, dsn); err != nil || strings.HasPrefix(rel, "..") {
				t.Errorf("SQLite path %q is not inside the temp dir %q", dsn, tmp)
			}
			if _, err := os.Stat(filepath.Dir(dsn)); err != nil {
				t.Errorf("directory of SQLite path %q: %v", dsn, err)
			}
		case strings.HasSuffix(t.Name(), "/postgres"):
			conn := connect(t, dsn)
			var one int
			if err := conn.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil || one != 1 {
				t.Fatalf("SELECT 1 = %d, %v", one, err)
			}
			var current string
			if err := conn.QueryRow(context.Background(), "SELECT current_database()").Scan(&current); err != nil {
				t.Fatal(err)
			}
			if want := dbName(t, dsn); current != want {
				t.Errorf("current_database() = %q, want %q", current, want)
			}
			// The database is fresh: no user tables.
			var n int
			if err := conn.QueryRow(context.Background(),
				"SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("new database has %d user tables", n)
			}
		default:
			t.Fatalf("unexpected subtest %q", t.Name())
		}
	})
}

func TestSQLiteDistinct(t *testing.T) {
	a, b := dbtest.SQLite(t), dbtest.SQLite(t)
	if a == b {
		t.Fatalf("two SQLite calls returned the same path %q", a)
	}
}

func TestPostgresDistinctAndDropped(t *testing.T) {
	dsn1 := dbtest.Postgres(t)
	dsn2 := dbtest.Postgres(t)
	name1, name2 := dbName(t, dsn1), dbName(t, dsn2)
	if name1 == name2 {
		t.Fatalf("two Postgres calls returned the same database %q", name1)
	}

	// Databases created in a subtest are dropped when the subtest ends.
	var inner string
	t.Run("inner", func(t *testing.T) {
		inner = dbName(t, dbtest.Postgres(t))
		connect(t, dbtest.Postgres(t)) // an open connection must not block the drop
	})
	admin := connect(t, dbtest.PostgresAdmin(t))
	var exists bool
	if err := admin.QueryRow(context.Background(),
		"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", inner).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("database %q still exists after its test ended", inner)
	}
}

func TestPostgresParallel(t *testing.T) {
	for i := range 8 {
		t.Run("", func(t *testing.T) {
			t.Parallel()
			conn := connect(t, dbtest.Postgres(t))
			if _, err := conn.Exec(context.Background(), "CREATE TABLE t (id int PRIMARY KEY)"); err != nil {
				t.Fatalf("%d: %v", i, err)
			}
		})
	}
}

func TestAvailable(t *testing.T) {
	ok, why := dbtest.Available()
	t.Logf("Available() = %v, %q", ok, why)
	if ok != (why == "") {
		t.Errorf("Available() = %v, %q: reason must be empty exactly when available", ok, why)
	}
}
