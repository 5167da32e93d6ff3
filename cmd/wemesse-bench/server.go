package main

import (
	"context"
	"maps"

	"github.com/wemesse/server/internal/config"
	"github.com/wemesse/server/internal/proctest"
)

// serverSpec says how to start a server.
type serverSpec struct {
	binary  string
	dataDir string            // holds the SQLite database, the uploads and the log
	dsn     string            // WEMESSE_DATABASE_URL; empty: wemesse.db in dataDir
	admin   string            // WEMESSE_SIGNATURE
	env     map[string]string // extra WEMESSE_* settings
}

// server is a running child process of the server binary on 127.0.0.1,
// with its effective configuration.
type server struct {
	*proctest.Server
	Config config.Config
}

// startServer starts the server and waits until /healthz answers. The
// caller must Stop it on every path. -set settings apply, under spec.env.
func (b *bench) startServer(ctx context.Context, spec serverSpec) (*server, error) {
	settings := map[string]string{"WEMESSE_SIGNATURE": spec.admin, "WEMESSE_LOG_LEVEL": "error"}
	if spec.dsn != "" {
		settings["WEMESSE_DATABASE_URL"] = spec.dsn
	}
	maps.Copy(settings, b.opts.serverEnv)
	maps.Copy(settings, spec.env)
	p, err := proctest.Start(ctx, proctest.Options{Binary: spec.binary, Dir: spec.dataDir, Settings: settings})
	if err != nil {
		return nil, err
	}
	s := &server{Server: p}
	if s.Config, err = config.Load(p.Getenv); err != nil {
		p.Stop()
		return nil, err
	}
	b.logf("server pid %d listening on %s", p.Pid(), p.URL)
	return s, nil
}
