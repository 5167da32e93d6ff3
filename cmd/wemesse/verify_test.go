package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/s3test"
)

func apkFixture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "apk", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestRun_verifiesUploadsOnObjectStorage uploads a good APK, then every
// fixture that breaks a rule, to a server on object storage that verifies
// uploads (the default): each bad one gets 422 and leaves no staged object,
// no multipart upload and no row, on SQLite and PostgreSQL.
func TestRun_verifiesUploadsOnObjectStorage(t *testing.T) {
	s3test.Start(t)
	dbtest.Each(t, func(t *testing.T, dsn string) {
		const secret = "s3-verify-secret"
		bucket := s3test.Bucket(t)
		env := s3Env(t, dsn, bucket, "builds")
		env["WEMESSE_SIGNATURE"] = secret
		env["WEMESSE_VERIFY_APK"] = "true"
		s := startServer(t, env)
		if code, body := postUpload(context.Background(), s, secret, "1_00", bytes.NewReader(apkFixture(t, "good.apk"))); code != http.StatusCreated {
			t.Fatalf("good.apk: %d %s", code, body)
		}
		const key = "builds/1_00/wemesse.apk"
		waitBucket(t, bucket, key)
		for _, name := range []string{"tampered.apk", "unsigned.apk", "othersigner.apk", "otherpackage.apk", "debuggable.apk", "testonly.apk", "backwards.apk", "random.bin", "v1target34.apk"} {
			code, body := postUpload(context.Background(), s, secret, "2_00", bytes.NewReader(apkFixture(t, name)))
			if code != http.StatusUnprocessableEntity || !bytes.HasPrefix(body, []byte(`{"error":`)) {
				t.Errorf("%s: %d %s, want 422 with an error", name, code, body)
			}
			waitBucket(t, bucket, key)
		}
		code, body := get(t, s, "/api/v1/updates", secret)
		if code != http.StatusOK || bytes.Count(body, []byte(`"Id"`)) != 1 {
			t.Errorf("releases after the refusals: %d %s, want the one good release", code, body)
		}
	})
}

// TestRun_releasesVerify stores builds without verification, then runs
// `wemesse releases verify`: it fills in what the APK declares, reports
// the build that is not an APK, fails, and deletes nothing.
func TestRun_releasesVerify(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		const secret = "verify-cli-secret"
		dir := t.TempDir()
		s := startServer(t, map[string]string{"WEMESSE_DATABASE_URL": dsn, "WEMESSE_UPLOAD_DIR": dir, "WEMESSE_SIGNATURE": secret})
		for _, up := range []struct{ version, file string }{{"1_00", "good.apk"}, {"1_01", "random.bin"}} {
			if code, body := postUpload(context.Background(), s, secret, up.version, bytes.NewReader(apkFixture(t, up.file))); code != http.StatusCreated {
				t.Fatalf("%s: %d %s", up.file, code, body)
			}
		}
		s.stop(t)

		var stdout, stderr bytes.Buffer
		env := map[string]string{"WEMESSE_DATABASE_URL": dsn, "WEMESSE_UPLOAD_DIR": dir, "WEMESSE_LOG_LEVEL": "error"}
		err := run(context.Background(), []string{"releases", "verify"}, func(k string) string { return env[k] }, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), "1 builds failed") {
			t.Errorf("releases verify: err %v, want 1 failed", err)
		}
		out := stdout.String()
		if !strings.Contains(out, "ok    release 1 (1_00): org.wemesse.app versionCode 10 (1.0.10), minSdk 24, targetSdk 34, signer c7b4b4ab42221a81b0b5353b42f59d4c5464889a795f1ce82f84454f0ba2a7a3") ||
			!strings.Contains(out, "FAIL  release 2 (1_01, 1_01/wemesse.apk): The file is not an APK") {
			t.Errorf("stdout:\n%s", out)
		}
		if !strings.Contains(stderr.String(), "verifying [") || !strings.Contains(stderr.String(), "100%") {
			t.Errorf("no progress bar on stderr:\n%s", stderr.String())
		}
		for _, f := range []string{"1_00/wemesse.apk", "1_01/wemesse.apk"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Errorf("%s: %v; releases verify must delete nothing", f, err)
			}
		}

		s = startServer(t, map[string]string{"WEMESSE_DATABASE_URL": dsn, "WEMESSE_UPLOAD_DIR": dir, "WEMESSE_SIGNATURE": secret})
		code, body := get(t, s, "/api/v1/updates", secret)
		var list []map[string]any
		if err := json.Unmarshal(body, &list); code != http.StatusOK || err != nil || len(list) != 2 {
			t.Fatalf("list: %d %s", code, body)
		}
		if list[0]["PackageName"] != "org.wemesse.app" || list[0]["VersionCode"] != 10.0 || list[1]["PackageName"] != "" {
			t.Errorf("after verify: %s", body)
		}
		// The CLI's change is in the audit trail; the failed build's is not.
		code, body = get(t, s, "/api/v1/audit?after=3", secret)
		var audit []map[string]any
		if err := json.Unmarshal(body, &audit); code != http.StatusOK || err != nil || len(audit) != 1 ||
			audit[0]["Actor"] != "cli" || audit[0]["Action"] != "release.verify" || audit[0]["ReleaseId"] != 1.0 ||
			!strings.Contains(audit[0]["Detail"].(string), "org.wemesse.app versionCode 10") {
			t.Errorf("audit after verify: %d %s, want one release.verify of release 1 by cli", code, body)
		}
	})
}
