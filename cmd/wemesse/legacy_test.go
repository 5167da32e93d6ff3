package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/repository"
)

// The legacy tests start the real server on a database as the earlier
// Wemesse server left it (testdata/legacy: no unique indexes, a plaintext
// signature, a duplicated device, target_abi columns) and an upload
// directory in its <target_abi>/<app_version>/<app_name> layout.

const (
	legacyDir    = "../../testdata/legacy"
	legacySecret = "legacy-client-secret-0001"

	legacyActivity   = 1636209999 // the later session_activity of the duplicated device
	reportedActivity = 1636300000 // the one it reports in checkLegacyAPI
)

// legacyFiles are the builds the earlier server left in its deploy directory.
var legacyFiles = map[string]string{
	"arm/2264_00/wemesse.apk":   "legacy build arm 2264_00",
	"arm64/2264_00/wemesse.apk": "legacy build arm64 2264_00 (a bit longer)",
	"arm64/2267_01/wemesse.apk": "legacy build arm64 2267_01, the newest one",
}

func TestLegacyUpgradePostgres(t *testing.T) {
	dsn := dbtest.Postgres(t)
	loadLegacyPostgres(t, dsn)
	testLegacyUpgrade(t, dsn)
}

// TestLegacyUpgradeSQLite runs the same checks on a SQLite file holding the
// legacy schema. Production legacy databases are PostgreSQL, but the upgrade
// must not depend on the dialect.
func TestLegacyUpgradeSQLite(t *testing.T) {
	dsn := dbtest.SQLite(t)
	loadLegacySQLite(t, dsn)
	testLegacyUpgrade(t, dsn)
}

// loadLegacyPostgres loads the dumped legacy schema and the sample rows,
// each file as one simple-protocol Exec.
func loadLegacyPostgres(t *testing.T, dsn string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	for _, name := range []string{"schema.sql", "sample-rows.sql"} {
		b, err := os.ReadFile(filepath.Join(legacyDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, string(b), pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("load %s: %v", name, err)
		}
	}
}

// loadLegacySQLite creates the legacy tables in SQLite (the PostgreSQL dump
// does not load there) and inserts the sample rows.
func loadLegacySQLite(t *testing.T, dsn string) {
	t.Helper()
	db, err := repository.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer repository.Close(db)
	createLegacySQLite(t, db)
	b, err := os.ReadFile(filepath.Join(legacyDir, "sample-rows.sql"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range strings.Split(string(b), ";\n") {
		var lines []string
		for _, l := range strings.Split(s, "\n") {
			if !strings.HasPrefix(strings.TrimSpace(l), "--") {
				lines = append(lines, l)
			}
		}
		if s := strings.TrimSpace(strings.Join(lines, "\n")); s != "" {
			if err := db.Exec(strings.ReplaceAll(s, "public.", "")).Error; err != nil {
				t.Fatalf("load legacy rows into SQLite: %v\n%s", err, s)
			}
		}
	}
}

// createLegacySQLite creates the tables of schema.sql in SQLite.
func createLegacySQLite(t *testing.T, db *gorm.DB) {
	t.Helper()
	for _, s := range []string{
		`CREATE TABLE apps (id integer PRIMARY KEY AUTOINCREMENT, target_abi text, app_checksum text, app_name text,
			app_notes text, app_size text, app_version text, skipped numeric, uploads integer, uri text)`,
		`CREATE TABLE middlewares (id integer PRIMARY KEY AUTOINCREMENT, signature text)`,
		`CREATE TABLE users (id integer PRIMARY KEY AUTOINCREMENT, app_locale text, app_version text, device_locale text,
			device_mac text, device_model text, device_sdk text, session_activity integer, session_id integer,
			session_register integer, tg_version text, target_abi text)`,
	} {
		if err := db.Exec(s).Error; err != nil {
			t.Fatalf("create legacy tables in SQLite: %v", err)
		}
	}
}

// TestLegacyMergeEdgeCases runs the migration on legacy rows with the NULLs
// the legacy columns allow: a duplicate whose session_activity is NULL is
// not "the most recent", a NULL device_mac is the empty one, a NULL
// target_abi is a universal build.
func TestLegacyMergeEdgeCases(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db, err := repository.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer repository.Close(db)
		prefix := ""
		if db.Dialector.Name() == "postgres" {
			b, err := os.ReadFile(filepath.Join(legacyDir, "schema.sql"))
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Exec(string(b)).Error; err != nil {
				t.Fatalf("load schema.sql: %v", err)
			}
			prefix = "public."
		} else {
			createLegacySQLite(t, db)
		}
		for _, s := range []string{
			`INSERT INTO ` + prefix + `users (id, app_version, device_mac, device_model, session_activity, session_id) VALUES
				(1, '2264_00', 'aa', 'null activity', NULL, 21),
				(2, '2267_01', 'aa', 'latest', 100, 21),
				(3, '2267_01', NULL, 'null mac, newer', 60, 22),
				(4, '2264_00', '', 'empty mac, older', 50, 22),
				(5, '2264_00', 'bb', 'alone', 70, 23)`,
			`INSERT INTO ` + prefix + `apps (id, target_abi, app_name, app_version, skipped, uploads) VALUES
				(1, NULL, 'wemesse.apk', '2264_00', false, NULL)`,
		} {
			if err := db.Exec(s).Error; err != nil {
				t.Fatal(err)
			}
		}
		if err := repository.Migrate(ctx, db); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		once := snapshot(t, db)
		if err := repository.Migrate(ctx, db); err != nil {
			t.Fatalf("Migrate again: %v", err)
		}
		compareSnapshots(t, "a second Migrate", once, snapshot(t, db))

		got := queryText(t, db, `SELECT id, app_version, device_mac, device_model, session_activity, session_id FROM users ORDER BY id`)
		want := []string{
			"id=1 app_version=2267_01 device_mac=aa device_model=latest session_activity=100 session_id=21",
			"id=3 app_version=2267_01 device_mac= device_model=null mac, newer session_activity=60 session_id=22",
			"id=5 app_version=2264_00 device_mac=bb device_model=alone session_activity=70 session_id=23",
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("users after Migrate:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		got = queryText(t, db, `SELECT id, target_abi, file_path, uploads FROM apps ORDER BY id`)
		if want := "id=1 target_abi= file_path=2264_00/wemesse.apk uploads=0"; strings.Join(got, "\n") != want {
			t.Errorf("apps after Migrate: %q, want %q", got, want)
		}
	})
}

func testLegacyUpgrade(t *testing.T, dsn string) {
	uploads := t.TempDir()
	for key, content := range legacyFiles {
		p := filepath.Join(uploads, filepath.FromSlash(key))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	db, err := repository.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repository.Close(db) })

	// First start: the upgrade.
	srv := startServer(t, map[string]string{"WEMESSE_DATABASE_URL": dsn, "WEMESSE_UPLOAD_DIR": uploads})
	fresh := snapshot(t, db)
	checkLegacyRows(t, db, legacyActivity)
	checkLegacyAPI(t, srv.base)
	srv.stop(t)

	// Second start: nothing changes.
	before := snapshot(t, db)
	srv = startServer(t, map[string]string{"WEMESSE_DATABASE_URL": dsn, "WEMESSE_UPLOAD_DIR": uploads})
	after := snapshot(t, db)
	compareSnapshots(t, "the second start", before, after)
	checkLegacyRows(t, db, reportedActivity) // as after the first start and the report
	if got := getJSON[[]map[string]any](t, srv.base+"/api/v1/updates", http.StatusOK); len(got) != 3 {
		t.Errorf("after the second start, GET /api/v1/updates lists %d releases, want 3", len(got))
	}
	srv.stop(t)

	// Only the use of the signature (last_used_at) and the device report
	// may differ from right after the upgrade; nothing was added or lost.
	final := snapshot(t, db)
	for _, table := range []string{"apps", "users", "middlewares"} {
		if len(final[table]) != len(fresh[table]) {
			t.Errorf("%s: %d rows after the test, %d after the upgrade", table, len(final[table]), len(fresh[table]))
		}
	}
	compareSnapshots(t, "the requests (schema only)", map[string][]string{"schema": fresh["schema"]}, map[string][]string{"schema": final["schema"]})
}

// wantApp is a legacy release row as the sample holds it, with the file
// path the upgrade must record.
type wantApp struct {
	ID                                              int64
	TargetABI, Checksum, Name, Notes, Size, Version string
	Skipped                                         bool
	Uploads                                         int64
	URI, FilePath                                   string
}

var wantApps = []wantApp{
	{1, "arm", "9e107d9d372bb6826bd81d3542a419d6", "wemesse.apk", "first", "48.1 MB", "2264_00", false, 12,
		"http://203.0.113.7/wemesse/source/arm/2264_00/wemesse.apk", "arm/2264_00/wemesse.apk"},
	{2, "arm64", "e4d909c290d0fb1ca068ffaddf22cbd0", "wemesse.apk", "first", "52.3 MB", "2264_00", false, 30,
		"http://203.0.113.7/wemesse/source/arm64/2264_00/wemesse.apk", "arm64/2264_00/wemesse.apk"},
	{3, "arm64", "d41d8cd98f00b204e9800998ecf8427e", "wemesse.apk", "second", "52.4 MB", "2267_01", true, 5,
		"http://203.0.113.7/wemesse/source/arm64/2267_01/wemesse.apk", "arm64/2267_01/wemesse.apk"},
}

type wantUser struct {
	ID                                                               int64
	AppLocale, AppVersion, DeviceLocale, DeviceMac, DeviceModel, SDK string
	SessionActivity, SessionID, SessionRegister                      int64
	TgVersion, TargetABI                                             string
}

// wantUsers returns the users after the upgrade: the two rows of device (11, 02:00:00:00:00:00) merged into the
// smaller id with the fields of the later session_activity, which is
// mergedActivity once the device has reported again.
func wantUsers(mergedActivity int64) []wantUser {
	return []wantUser{
		{1, "en", "2267_01", "en-us", "02:00:00:00:00:00", "Pixel 4a", "SDK 30", mergedActivity, 11, 1636034599, "8.1.2", "arm64"},
		{3, "ru", "2264_00", "ru-ru", "02:00:00:00:00:00", "OnePlus A6000", "SDK 29", 1636100000, 12, 1636000000, "8.1.2", "arm"},
		{4, "ru", "2264_00", "ru-ru", "", "Redmi Note 8", "SDK 28", 1636100500, 13, 1636000100, "8.1.2", "arm"},
	}
}

// checkLegacyRows checks the upgraded tables directly.
func checkLegacyRows(t *testing.T, db *gorm.DB, mergedActivity int64) {
	t.Helper()
	var apps []wantApp
	rows, err := db.Raw(`SELECT id, target_abi, app_checksum, app_name, app_notes, app_size, app_version, skipped, uploads, uri, file_path
		FROM apps ORDER BY id`).Rows()
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var a wantApp
		if err := rows.Scan(&a.ID, &a.TargetABI, &a.Checksum, &a.Name, &a.Notes, &a.Size, &a.Version, &a.Skipped, &a.Uploads, &a.URI, &a.FilePath); err != nil {
			t.Fatal(err)
		}
		apps = append(apps, a)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(apps) != fmt.Sprint(wantApps) {
		t.Errorf("apps after the upgrade:\n got %v\nwant %v", apps, wantApps)
	}

	var users []wantUser
	rows, err = db.Raw(`SELECT id, app_locale, app_version, device_locale, device_mac, device_model, device_sdk,
		session_activity, session_id, session_register, tg_version, target_abi FROM users ORDER BY id`).Rows()
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var u wantUser
		if err := rows.Scan(&u.ID, &u.AppLocale, &u.AppVersion, &u.DeviceLocale, &u.DeviceMac, &u.DeviceModel, &u.SDK,
			&u.SessionActivity, &u.SessionID, &u.SessionRegister, &u.TgVersion, &u.TargetABI); err != nil {
			t.Fatal(err)
		}
		users = append(users, u)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		t.Fatal(err)
	}
	if want := wantUsers(mergedActivity); fmt.Sprint(users) != fmt.Sprint(want) {
		t.Errorf("users after the upgrade:\n got %v\nwant %v", users, want)
	}

	var sigs []string
	if err := db.Raw("SELECT signature FROM middlewares ORDER BY id").Scan(&sigs).Error; err != nil {
		t.Fatal(err)
	}
	if len(sigs) != 1 {
		t.Errorf("middlewares holds %d rows, want the 1 legacy row", len(sigs))
	}
	for _, s := range sigs {
		if !strings.HasPrefix(s, "$argon2id$") || strings.Contains(s, legacySecret) {
			t.Errorf("middlewares.signature = %q, want an Argon2id hash of the legacy secret", s)
		}
	}

	m := db.Migrator()
	for _, ix := range []struct{ table, name string }{{"users", "idx_users_session_device"}, {"apps", "idx_apps_version_abi"}} {
		if !m.HasIndex(ix.table, ix.name) {
			t.Errorf("index %s on %s is missing", ix.name, ix.table)
		}
	}
}

// checkLegacyAPI checks the upgraded database through the running server.
func checkLegacyAPI(t *testing.T, base string) {
	t.Helper()
	// The plaintext secret inside shipped apps still authenticates.
	list := getJSON[[]struct {
		ID      int64 `json:"Id"`
		Version string
		URI     string
		Uploads int64
	}](t, base+"/api/v1/updates", http.StatusOK)
	if len(list) != len(wantApps) {
		t.Fatalf("GET /api/v1/updates lists %d releases, want %d", len(list), len(wantApps))
	}
	for i, rel := range list {
		w := wantApps[i]
		if rel.ID != w.ID || rel.Version != w.Version || rel.Uploads != w.Uploads {
			t.Errorf("release %d: got %+v, want id %d version %s uploads %d", i, rel, w.ID, w.Version, w.Uploads)
		}
		if want := base + "/uploads/" + w.FilePath; rel.URI != want {
			t.Errorf("release %d: URI %q, want %q", rel.ID, rel.URI, want)
			continue
		}
		// Each legacy build downloads from the old directory.
		resp, err := http.Get(rel.URI)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != legacyFiles[w.FilePath] {
			t.Errorf("GET %s: %d %q, want 200 %q", rel.URI, resp.StatusCode, body, legacyFiles[w.FilePath])
		}
	}

	// A wrong secret is still refused.
	req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/updates", nil)
	req.Header.Set("signature", legacySecret+"x")
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a wrong signature got %d, want 401", resp.StatusCode)
	}

	// The update check of an arm64 client on the mandatory 2264_00.
	check := getJSON[struct {
		Version   string
		TargetABI string
		URI       string
		Skipped   bool
	}](t, base+"/api/v1/updates/2264_00arm64", http.StatusOK)
	if check.Version != "2267_01" || check.TargetABI != "arm64" || !strings.HasSuffix(check.URI, "/arm64/2267_01/wemesse.apk") || !check.Skipped {
		t.Errorf("update check 2264_00arm64 = %+v, want 2267_01 arm64 (skippable) at .../arm64/2267_01/wemesse.apk", check)
	}

	// The merged device reports again: it is the kept row, and the same
	// version counts nothing.
	report := map[string]any{
		"AppLocale": "en", "AppVersion": "2267_01", "DeviceLocale": "en-us", "DeviceMac": "02:00:00:00:00:00",
		"DeviceModel": "Pixel 4a", "DeviceSDK": "SDK 30", "SessionActivity": 1636300000, "SessionID": 11,
		"SessionRegister": 1636034599, "TgVersion": "8.1.2", "TargetABI": "arm64",
	}
	b, _ := json.Marshal(report)
	req, _ = http.NewRequest(http.MethodPost, base+"/api/v1/users", bytes.NewReader(b))
	req.Header.Set("signature", legacySecret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var user struct {
		ID              int64
		AppVersion      string
		SessionActivity int64
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /api/v1/users for the merged device: %d %s", resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, &user); err != nil {
		t.Fatal(err)
	}
	if user.ID != 1 || user.AppVersion != "2267_01" || user.SessionActivity != reportedActivity {
		t.Errorf("POST /api/v1/users for the merged device = %s, want ID 1, 2267_01, activity 1636300000", body)
	}
	users := getJSON[[]struct{ ID int64 }](t, base+"/api/v1/users", http.StatusOK)
	if len(users) != 3 {
		t.Errorf("GET /api/v1/users lists %d users after the report, want 3", len(users))
	}
	after := getJSON[[]struct{ Uploads int64 }](t, base+"/api/v1/updates", http.StatusOK)
	for i := range after {
		if after[i].Uploads != wantApps[i].Uploads {
			t.Errorf("release %d: uploads %d after a report of the same version, want %d", wantApps[i].ID, after[i].Uploads, wantApps[i].Uploads)
		}
	}
}

// getJSON GETs url with the legacy signature and decodes the answer.
func getJSON[T any](t *testing.T, url string, status int) T {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("signature", legacySecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var v T
	if resp.StatusCode != status {
		t.Fatalf("GET %s: %d %s, want %d", url, resp.StatusCode, body, status)
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, body)
	}
	return v
}

// snapshot returns every row of the three tables, and the schema, as text.
func snapshot(t *testing.T, db *gorm.DB) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, table := range []string{"apps", "users", "middlewares"} {
		out[table] = queryText(t, db, "SELECT * FROM "+table+" ORDER BY id")
	}
	if db.Dialector.Name() == "postgres" {
		out["schema"] = append(
			queryText(t, db, `SELECT table_name, column_name, data_type, is_nullable, column_default
				FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2`),
			queryText(t, db, `SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1`)...)
	} else {
		out["schema"] = queryText(t, db, "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name")
	}
	return out
}

// queryText runs query and renders each row as text.
func queryText(t *testing.T, db *gorm.DB, query string) []string {
	t.Helper()
	rows, err := db.Raw(query).Rows()
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		fields := make([]string, len(cols))
		for i, v := range vals {
			fields[i] = cols[i] + "=NULL"
			if v.Valid {
				fields[i] = cols[i] + "=" + v.String
			}
		}
		out = append(out, strings.Join(fields, " "))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func compareSnapshots(t *testing.T, what string, before, after map[string][]string) {
	t.Helper()
	for table, b := range before {
		a := after[table]
		if strings.Join(a, "\n") != strings.Join(b, "\n") {
			t.Errorf("%s changed %s:\nbefore:\n%s\nafter:\n%s", what, table, strings.Join(b, "\n"), strings.Join(a, "\n"))
		}
	}
}
