package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wemesse/server/internal/proctest"
)

// serverProc is the server binary running as our child on 127.0.0.1 for
// one scenario. It can be killed, stopped and started again with the same
// settings; the harness kills it at the end of the scenario.
type serverProc struct {
	*proctest.Server
	h *harness
}

// startServer starts a server on a free port with the harness's defaults,
// overridden by settings, and waits until /healthz answers.
func (h *harness) startServer(ctx context.Context, name, db string, settings map[string]string) (*serverProc, error) {
	dir, err := h.mkdir("server-" + name)
	if err != nil {
		return nil, err
	}
	all := map[string]string{
		"WEMESSE_DATABASE_URL": h.pg.DSN(db),
		"WEMESSE_SIGNATURE":    h.admin,
		// Cheap hashes: the bootstrap and CLI secrets are hashed with these.
		"WEMESSE_ARGON2_MEMORY":      "1024",
		"WEMESSE_ARGON2_ITERATIONS":  "1",
		"WEMESSE_ARGON2_PARALLELISM": "1",
		"WEMESSE_LOG_LEVEL":          "info",
		// The faults upload made-up bytes; what they test is not the APK.
		"WEMESSE_VERIFY_APK": "false",
	}
	maps.Copy(all, settings)
	p, err := proctest.Start(ctx, proctest.Options{Binary: h.bin, Dir: dir, Settings: all})
	if err != nil {
		return nil, err
	}
	s := &serverProc{Server: p, h: h}
	h.track(s)
	return s, nil
}

// errorLines returns the log lines of every run of this server at level
// ERROR or that mention a panic.
func (s *serverProc) errorLines() []string {
	var out []string
	b, _ := os.ReadFile(s.LogPath)
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, "panic") {
			out = append(out, line)
		}
	}
	return out
}

// createSecret creates a secret of role with `wemesse signature create`
// and waits until the running server accepts it.
func (s *serverProc) createSecret(ctx context.Context, role string) (string, error) {
	_, secret, err := s.CreateSecret(ctx, role)
	if err != nil {
		return "", err
	}
	// A running server learns of the new row within WEMESSE_AUTH_REFRESH.
	// Wait for it on an endpoint that writes nothing: 403 (known, not
	// admin) or 200 means it authenticates. Few tries, far below the
	// per-address failure limit.
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	created := time.Now()
	for try := 0; ; try++ {
		r := do(ctx, c, "GET", s.URL+"/api/v1/stats", secret, "", nil, 5*time.Second)
		if r.status == http.StatusForbidden || r.status == http.StatusOK {
			s.h.info("a %s-role secret was created with `wemesse signature create`; the running server accepted it %s later (%d refused tries)",
				role, time.Since(created).Round(time.Millisecond), try)
			return secret, nil
		}
		if try == 20 || ctx.Err() != nil {
			return "", fmt.Errorf("the server does not accept the new %s secret: %s", role, r.describe())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// rig is one scenario's database, server and HTTP client: what its setup,
// inject and verify steps share.
type rig struct {
	h      *harness
	db     string // faults_NAME on the shared cluster
	s      *serverProc
	c      *http.Client
	client string // a client-role secret, when the scenario asked for one
}

// newRig creates the database faults_NAME and starts a server on it with
// settings; withClient also creates a client-role secret through the CLI.
// The caller must close the rig.
func (h *harness) newRig(ctx context.Context, name string, withClient bool, settings map[string]string) (_ *rig, err error) {
	r := &rig{h: h, db: "faults_" + name, c: newHTTPClient()}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if err := h.pg.CreateDB(ctx, r.db); err != nil {
		return nil, err
	}
	if r.s, err = h.startServer(ctx, name, r.db, settings); err != nil {
		return nil, err
	}
	if withClient {
		if r.client, err = r.s.createSecret(ctx, "client"); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (r *rig) close() {
	r.c.CloseIdleConnections()
	if r.s != nil {
		r.s.Stop()
	}
}

// connect opens one connection to the rig's database.
func (r *rig) connect(ctx context.Context) (*pgx.Conn, error) { return r.h.connect(ctx, r.db) }

// verifyNoErrors checks that no run of the server logged an ERROR or a
// panic.
func (r *rig) verifyNoErrors() {
	errs := r.s.errorLines()
	r.h.check(len(errs) == 0, "no run of the server logged an ERROR or a panic (%d such lines)%s", len(errs), firstLine(errs))
}
