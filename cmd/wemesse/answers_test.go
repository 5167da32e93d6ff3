package main

import (
	"bytes"
	"context"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/httpsig"
	"github.com/wemesse/server/internal/proctest"
)

// answerKeyFile runs `wemesse answer-key create` into a file and returns
// its path and the key.
func answerKeyFile(tb testing.TB, name string) (string, httpsig.Key) {
	tb.Helper()
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"answer-key", "create"}, func(string) string { return "" }, &stdout, &stderr); err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(path, stdout.Bytes(), 0o600); err != nil {
		tb.Fatal(err)
	}
	k, err := httpsig.ParseKeyPEM(stdout.Bytes())
	if err != nil || k.Private == nil {
		tb.Fatalf("answer-key create printed %q: %v, want a PKCS#8 Ed25519 private key", stdout.String(), err)
	}
	return path, k
}

// checkSigned fetches the update check and the key set from s and verifies
// the answer as a client does; it returns the answer, the kids in the set
// in order, and the signature's parameters.
func checkSigned(tb testing.TB, s *server) (http.Header, []byte, []string, httpsig.Params) {
	tb.Helper()
	code, set := get(tb, s, "/api/v1/keys", "")
	if code != 200 {
		tb.Fatalf("keys: %d %s", code, set)
	}
	keys, err := httpsig.ParseJWKSet(set)
	if err != nil {
		tb.Fatal(err)
	}
	var kids []string
	for _, part := range strings.Split(string(set), `"kid":"`)[1:] {
		kids = append(kids, part[:strings.IndexByte(part, '"')])
	}
	resp, err := s.client.Get(s.base + "/api/v1/updates/2263_00")
	if err != nil {
		tb.Fatal(err)
	}
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	resp.Body.Close()
	p, err := httpsig.Verify(resp.StatusCode, resp.Header, body.Bytes(), keys, time.Now(), time.Time{})
	if err != nil {
		tb.Fatalf("the answer does not verify: %v\n%v %s", err, resp.Header, body.Bytes())
	}
	return resp.Header, body.Bytes(), kids, p
}

// TestProcess_answerKeyRotation restarts a server process with a new
// current key and the old one retired: answers verify with the new kid, the
// set still lists the old one (so answers clients hold still verify), and
// two servers with the same key files sign answers that both verify.
func TestProcess_answerKeyRotation(t *testing.T) {
	ctx := context.Background()
	bin := buildBinary(t)
	oldFile, oldKey := answerKeyFile(t, "old.pem")
	newFile, newKey := answerKeyFile(t, "new.pem")
	const secret = "rotation-test-secret"
	dir := t.TempDir()
	settings := map[string]string{
		"WEMESSE_DATABASE_URL": dbtest.SQLite(t), "WEMESSE_UPLOAD_DIR": dir,
		"WEMESSE_SIGNATURE": secret, "WEMESSE_ARGON2_MEMORY": "1024", "WEMESSE_ANSWER_KEY_FILE": oldFile,
		"WEMESSE_VERIFY_APK": "false", // a made-up build: the answers are tested
	}
	start := func() *proctest.Server {
		p, err := proctest.Start(ctx, proctest.Options{Binary: bin, Dir: t.TempDir(), Settings: maps.Clone(settings)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Kill)
		return p
	}
	client := func(p *proctest.Server) *server { return &server{base: p.URL, client: http.DefaultClient} }

	p := start()
	uploadBuild(t, client(p), secret, "2264_00", "build")
	oldHeader, oldBody, kids, params := checkSigned(t, client(p))
	if params.KeyID != oldKey.ID || len(kids) != 1 || kids[0] != oldKey.ID {
		t.Fatalf("first run: kid %s, set %v; want %s alone", params.KeyID, kids, oldKey.ID)
	}

	p.Stop()
	p.Set("WEMESSE_ANSWER_KEY_FILE", newFile)
	p.Set("WEMESSE_ANSWER_KEYS_RETIRED", oldFile)
	if err := p.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	settings["WEMESSE_ANSWER_KEY_FILE"], settings["WEMESSE_ANSWER_KEYS_RETIRED"] = newFile, oldFile
	second := start()
	for i, p := range []*proctest.Server{p, second} {
		_, _, kids, params := checkSigned(t, client(p))
		if params.KeyID != newKey.ID || len(kids) != 2 || kids[0] != newKey.ID || kids[1] != oldKey.ID {
			t.Errorf("server %d after rotation: kid %s, set %v; want %s, then %s", i+1, params.KeyID, kids, newKey.ID, oldKey.ID)
		}
		if strings.Contains(p.Log(), "not signed") {
			t.Errorf("server %d has a key but logged that answers are unsigned:\n%s", i+1, p.Log())
		}
	}
	_, set := get(t, client(p), "/api/v1/keys", "")
	keys, err := httpsig.ParseJWKSet(set)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := httpsig.Verify(200, oldHeader, oldBody, keys, time.Now(), time.Time{}); err != nil {
		t.Errorf("an answer signed before the rotation no longer verifies: %v", err)
	}
}

// TestRun_unsignedAnswersLogged checks that a server without an answer key
// says so once at start.
func TestRun_unsignedAnswersLogged(t *testing.T) {
	s := startServer(t, map[string]string{})
	s.stop(t)
	if n := strings.Count(s.log.String(), "Update answers are not signed"); n != 1 {
		t.Errorf("the log says %d times that answers are unsigned, want once:\n%s", n, s.log.String())
	}
}
