package repository

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"

	"github.com/wemesse/server/internal/dbtest"
)

// TestMigrations checks that migrations/*.up.sql, which people apply by hand,
// creates exactly the schema that Migrate (GORM AutoMigrate) creates, and
// that the server accepts a database made from those files as it is.
func TestMigrations(t *testing.T) {
	ctx := context.Background()
	files := upMigrations(t)

	fromSQL := dbtest.Postgres(t)
	applySQL(t, fromSQL, files)
	sqlDB := openDB(t, fromSQL)

	fromGORM := openDB(t, dbtest.Postgres(t))
	if err := Migrate(ctx, fromGORM); err != nil {
		t.Fatalf("Migrate on an empty database: %v", err)
	}

	t.Run("sql_matches_automigrate", func(t *testing.T) {
		diffSchemas(t, "migrations/*.up.sql", schemaOf(t, sqlDB), "Migrate", schemaOf(t, fromGORM))
	})

	t.Run("sql_is_idempotent", func(t *testing.T) {
		before := schemaOf(t, sqlDB)
		applySQL(t, fromSQL, files)
		diffSchemas(t, "before", before, "after applying the files again", schemaOf(t, sqlDB))
	})

	t.Run("migrate_changes_nothing_on_sql_schema", func(t *testing.T) {
		before := schemaOf(t, sqlDB)
		if err := Migrate(ctx, sqlDB); err != nil {
			t.Fatalf("Migrate on the database made from the SQL files: %v", err)
		}
		diffSchemas(t, "before Migrate", before, "after Migrate", schemaOf(t, sqlDB))
	})
}

// upMigrations returns the paths of migrations/*.up.sql in the order they
// apply.
func upMigrations(tb testing.TB) []string {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "migrations", "*.up.sql"))
	if err != nil {
		tb.Fatal(err)
	}
	if len(files) == 0 {
		tb.Fatal("no migrations/*.up.sql found")
	}
	slices.Sort(files)
	return files
}

// applySQL runs each file as one multi-statement simple query, as psql -f
// would.
func applySQL(tb testing.TB, dsn string, files []string) {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	for _, f := range files {
		sql, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := conn.Exec(ctx, string(sql)).ReadAll(); err != nil {
			tb.Fatalf("apply %s: %v", f, err)
		}
	}
}

func openDB(tb testing.TB, dsn string) *gorm.DB {
	tb.Helper()
	db, err := Open(context.Background(), dsn)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { Close(db) })
	return db
}

// seqDefault matches a serial column's default; sequence names are compared
// separately, through the sequences themselves.
var seqDefault = regexp.MustCompile(`nextval\('[^']*'::regclass\)`)

// schemaOf describes the public schema as sorted lines: columns, indexes,
// constraints and sequences. Column order is left out on purpose: a column
// added by a later migration lands at the end, while AutoMigrate on an empty
// database puts it where the struct field is.
func schemaOf(tb testing.TB, db *gorm.DB) []string {
	tb.Helper()
	queries := []struct{ kind, sql string }{
		{"column", `SELECT table_name, column_name, data_type, is_nullable, COALESCE(column_default, '')
			FROM information_schema.columns WHERE table_schema = 'public'`},
		{"index", `SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'`},
		{"constraint", `SELECT conrelid::regclass::text, conname, contype::text, pg_get_constraintdef(oid)
			FROM pg_constraint WHERE connamespace = 'public'::regnamespace`},
		{"sequence", `SELECT sequence_name, data_type, start_value, minimum_value, maximum_value, increment, cycle_option
			FROM information_schema.sequences WHERE sequence_schema = 'public'`},
		{"sequence_owner", `SELECT s.relname, t.relname, a.attname FROM pg_class s
			JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a'
			JOIN pg_class t ON t.oid = d.refobjid
			JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
			WHERE s.relkind = 'S' AND s.relnamespace = 'public'::regnamespace`},
	}
	var lines []string
	for _, q := range queries {
		rows, err := db.Raw(q.sql).Rows()
		if err != nil {
			tb.Fatalf("read %s schema: %v", q.kind, err)
		}
		cols, err := rows.Columns()
		if err != nil {
			tb.Fatal(err)
		}
		for rows.Next() {
			vals := make([]string, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				tb.Fatalf("scan %s schema: %v", q.kind, err)
			}
			if q.kind == "column" {
				vals[4] = seqDefault.ReplaceAllString(vals[4], "nextval(<sequence>)")
			}
			lines = append(lines, q.kind+" "+strings.Join(vals, " | "))
		}
		if err := rows.Err(); err != nil {
			tb.Fatal(err)
		}
		rows.Close()
	}
	slices.Sort(lines)
	if len(lines) == 0 {
		tb.Fatal("the public schema is empty")
	}
	return lines
}

// diffSchemas fails with every line that only one side has.
func diffSchemas(tb testing.TB, nameA string, a []string, nameB string, b []string) {
	tb.Helper()
	var diff []string
	for _, l := range a {
		if !slices.Contains(b, l) {
			diff = append(diff, fmt.Sprintf("only in %s: %s", nameA, l))
		}
	}
	for _, l := range b {
		if !slices.Contains(a, l) {
			diff = append(diff, fmt.Sprintf("only in %s: %s", nameB, l))
		}
	}
	if len(diff) > 0 {
		tb.Errorf("schemas differ (%s vs %s):\n%s", nameA, nameB, strings.Join(diff, "\n"))
	}
}
