package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/proctest"
	"github.com/wemesse/server/internal/repository"
)

// stepApplied matches a server's log line for a schedule step it applied.
var stepApplied = regexp.MustCompile(`"msg":"schedule step applied".*?"rollout":(\d+)`)

// TestProcess_scheduleTwoServers runs two server processes on one
// PostgreSQL, both looking for due steps every 50ms. Three steps fall due
// while they run; then both stop, a fourth step falls due, and both start
// again at once. Every step is applied exactly once, by one of the two
// servers in one of their two runs, and both then offer the release at its
// final rollout; a halt through one reaches the other.
func TestProcess_scheduleTwoServers(t *testing.T) {
	bin := buildBinary(t)
	const secret = "schedule-secret"
	env := map[string]string{
		"WEMESSE_DATABASE_URL": dbtest.Postgres(t), "WEMESSE_UPLOAD_DIR": t.TempDir(),
		"WEMESSE_SIGNATURE": secret, "WEMESSE_ARGON2_MEMORY": "1024", "WEMESSE_RELEASES_REFRESH": "50ms",
		"WEMESSE_VERIFY_APK": "false", // a made-up build: the schedule is tested
	}
	var procs [2]*proctest.Server
	var servers [2]*server
	// each runs f on both servers at once.
	each := func(f func(i int) error) {
		errs := make([]error, len(procs))
		var wg sync.WaitGroup
		for i := range procs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = f(i)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	}
	each(func(i int) error {
		p, err := proctest.Start(context.Background(), proctest.Options{Binary: bin, Dir: t.TempDir(), Settings: maps.Clone(env)})
		if err != nil {
			return err
		}
		t.Cleanup(p.Kill)
		procs[i], servers[i] = p, &server{base: p.URL, client: http.DefaultClient}
		return nil
	})
	stopBoth := func() {
		each(func(i int) error {
			procs[i].Stop()
			if err := procs[i].ExitErr(); err != nil {
				return fmt.Errorf("stop: %s\n%s", procs[i].ExitDescription(), procs[i].LogTail(20))
			}
			return nil
		})
	}
	patch := func(s *server, body string) {
		req, _ := http.NewRequest("PATCH", s.base+"/api/v1/updates/1", strings.NewReader(body))
		req.Header.Set("signature", secret)
		resp, err := s.client.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("PATCH %s: %v %v", body, resp, err)
		}
		resp.Body.Close()
	}
	release := func(s *server) map[string]any {
		code, body := get(t, s, "/api/v1/updates", secret)
		var list []map[string]any
		if err := json.Unmarshal(body, &list); code != 200 || err != nil || len(list) != 1 {
			t.Fatalf("release list: %d %s", code, body)
		}
		return list[0]
	}
	states := func(rel map[string]any) string {
		var out []string
		for _, s := range rel["Schedule"].([]any) {
			out = append(out, s.(map[string]any)["State"].(string))
		}
		return strings.Join(out, ",")
	}

	a, b := servers[0], servers[1]
	uploadBuild(t, a, secret, "3000_01", "scheduled build")
	now := time.Now()
	at := func(d time.Duration) string { return now.Add(d).UTC().Format(time.RFC3339Nano) }
	offline := now.Add(20 * time.Second) // the step that falls due while both are stopped
	body := fmt.Sprintf(`{"Rollout": 1, "Schedule": [{"At": %q, "Rollout": 10}, {"At": %q, "Rollout": 20}, {"At": %q, "Rollout": 50}, {"At": %q, "Rollout": 100}]}`,
		at(2*time.Second), at(3*time.Second), at(4*time.Second), offline.UTC().Format(time.RFC3339Nano))
	patch(b, body)

	for deadline := time.Now().Add(30 * time.Second); states(release(a)) != "applied,applied,applied,pending"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the first three steps were not applied: %v", release(a))
		}
	}
	stopBoth()
	if time.Now().After(offline) {
		t.Fatal("the servers stopped after the last step fell due; the test needs a later step")
	}
	if got := storedStates(t, env["WEMESSE_DATABASE_URL"]); got != "applied,applied,applied,pending" {
		t.Fatalf("steps stored when the servers stopped: %s", got)
	}
	time.Sleep(time.Until(offline) + 100*time.Millisecond)

	each(func(i int) error { return procs[i].Restart(context.Background()) })
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ra, rb := release(a), release(b)
		if states(ra) == "applied,applied,applied,applied" && ra["Rollout"] == float64(100) && rb["Rollout"] == float64(100) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart: A %v, B %v", ra, rb)
		}
	}
	for _, s := range servers {
		if code, body := get(t, s, "/api/v1/updates/2999_01", ""); code != 200 || !strings.Contains(string(body), `"Version":"3000_01"`) {
			t.Errorf("%s does not offer the release at 100%%: %d %s", s.base, code, body)
		}
	}
	// A halt through A reaches B at once through LISTEN/NOTIFY, and within
	// WEMESSE_RELEASES_REFRESH without it.
	began := time.Now()
	patch(a, `{"Halted": true}`)
	for code, body := get(t, b, "/api/v1/updates/2999_01", ""); code != 404; code, body = get(t, b, "/api/v1/updates/2999_01", "") {
		if time.Since(began) > 5*time.Second {
			t.Fatalf("B still offers the halted release: %d %s", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("B stopped offering the release %v after the halt on A", time.Since(began))
	stopBoth()

	// Each server's log file holds both of its runs.
	applied := map[string][]string{}
	for i, p := range procs {
		log, err := os.ReadFile(p.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range stepApplied.FindAllStringSubmatch(string(log), -1) {
			applied[m[1]] = append(applied[m[1]], fmt.Sprintf("server %c", 'A'+i))
		}
	}
	for _, rollout := range []string{"10", "20", "50", "100"} {
		if len(applied[rollout]) != 1 {
			t.Errorf("the step to %s%% was applied %d times (%v), want once", rollout, len(applied[rollout]), applied[rollout])
		}
	}
	t.Logf("applied by: %v", applied)
}

// storedStates reads the steps' states straight from the database.
func storedStates(tb testing.TB, dsn string) string {
	tb.Helper()
	db, err := repository.Open(context.Background(), dsn)
	if err != nil {
		tb.Fatal(err)
	}
	defer repository.Close(db)
	var states []string
	if err := db.Raw("SELECT state FROM release_steps ORDER BY due_at").Scan(&states).Error; err != nil {
		tb.Fatal(err)
	}
	return strings.Join(states, ",")
}
