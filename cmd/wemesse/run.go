package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/alexedwards/argon2id"
	"gorm.io/gorm"

	"github.com/wemesse/server/internal/config"
	"github.com/wemesse/server/internal/handler"
	"github.com/wemesse/server/internal/httpsig"
	"github.com/wemesse/server/internal/logbatch"
	"github.com/wemesse/server/internal/metrics"
	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/repository"
	"github.com/wemesse/server/internal/service"
	"github.com/wemesse/server/internal/storage"
)

const usage = `usage:
  wemesse [serve]                              run the server
  wemesse signature create [--role admin|client] [--name NAME] [--expires DURATION]
                                               store a new signature and print its secret;
                                               DURATION as Go writes it (90m, 12h) or in days (30d)
  wemesse signature list                       list signatures (id, name, role, created, expires, last used)
  wemesse signature revoke ID                  delete a signature
  wemesse audit [--after ID] [--limit N]       print the audit trail, oldest first
  wemesse answer-key create                    print a new Ed25519 key (PKCS#8 PEM) for signing update answers
  wemesse releases verify                      verify every stored build as an upload is; fill in what
                                               each declares (PackageName, ...); report failures, delete nothing
Settings come from WEMESSE_* environment variables and a .env file.`

// logOptions batch serve's log: logbatch's defaults, which tests change.
var logOptions logbatch.Options

// run is the whole program, with its environment passed in so tests can
// drive it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	if cmd == "serve" {
		// The server's lines go out in batches (see logbatch): one
		// write(2) per line would cost an update check much of its time.
		sink := logbatch.New(stderr, logOptions)
		defer sink.Close()
		log := slog.New(slog.NewJSONHandler(sink, &slog.HandlerOptions{Level: cfg.LogLevel}))
		return serve(ctx, cfg, log, sink, getenv)
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	switch cmd {
	case "signature":
		return signatureCommand(model.WithActor(ctx, model.ActorCLI), cfg, log, args, stdout, getenv)
	case "audit":
		return auditCommand(ctx, cfg, log, args, stdout, getenv)
	case "answer-key":
		if len(args) != 1 || args[0] != "create" {
			return errors.New("answer-key: want create\n" + usage)
		}
		key, err := httpsig.NewKeyPEM()
		if err != nil {
			return err
		}
		_, err = stdout.Write(key)
		return err
	case "releases":
		return releasesCommand(model.WithActor(ctx, model.ActorCLI), cfg, log, args, stdout, stderr, getenv)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", cmd, usage)
}

// fileStore is where builds live: storage.Disk, or storage.S3 when
// WEMESSE_STORAGE_URL names a bucket.
type fileStore interface {
	service.Files
	// CleanStaging removes staged files that no upload is writing.
	CleanStaging(ctx context.Context) (int, error)
}

// app is the wired application.
type app struct {
	db         *gorm.DB
	metrics    *metrics.Metrics
	files      fileStore
	releases   *service.Releases
	users      *service.Users
	userStore  *repository.Users
	signatures *service.Signatures
	audit      *service.Audit
	stats      *service.Stats
	history    *service.History
	sessions   *service.Sessions
}

// open connects to the database, migrates it and wires the services.
// getenv supplies what the storage reads besides cfg (AWS_*).
func open(ctx context.Context, cfg config.Config, log *slog.Logger, getenv func(string) string) (*app, error) {
	db, err := repository.OpenMigrated(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	files, err := openFiles(ctx, cfg, getenv)
	if err != nil {
		repository.Close(db)
		return nil, err
	}
	sqlDB, err := db.DB()
	if err != nil {
		repository.Close(db)
		return nil, err
	}
	a := &app{db: db, files: files, metrics: metrics.New(sqlDB)}
	a.releases = service.NewReleases(repository.NewReleases(db), files, service.ReleasesConfig{
		PublicURL: cfg.PublicURL, MaxUpload: cfg.MaxUploadBytes, DefaultABI: cfg.DefaultABI,
		Refresh: cfg.ReleasesRefresh, Key: storage.Key, SafeName: storage.SafeName, Observer: a.metrics,
		Redirect: cfg.StorageRedirect, Tracks: cfg.Tracks, VerifyAPK: cfg.VerifyAPK,
	}, log)
	if !cfg.VerifyAPK {
		log.Warn("WEMESSE_VERIFY_APK=false: uploads are stored without verification, and devices may be offered builds Android refuses to install")
	}
	users := repository.NewUsers(db)
	a.userStore = users
	a.users = service.NewUsers(users, service.UsersConfig{
		DefaultABI: cfg.DefaultABI, Writers: cfg.DeviceWriters, MaxBatch: cfg.DeviceBatch, Observer: a.metrics,
	})
	a.stats = service.NewStats(repository.NewReleases(db), users, cfg.DefaultABI, time.Now)
	a.history = service.NewHistory(repository.NewHistory(db), repository.NewReleases(db),
		service.HistoryConfig{DefaultABI: cfg.DefaultABI, Live: cfg.HistoryRefresh, Current: a.releases.Current}, time.Now, log)
	a.audit = service.NewAudit(repository.NewAudit(db))
	a.signatures = service.NewSignatures(repository.NewSignatures(db), service.SignaturesConfig{
		Params: argon2id.Params{
			Memory: cfg.Argon2.Memory, Iterations: cfg.Argon2.Iterations, Parallelism: cfg.Argon2.Parallelism,
			SaltLength: 16, KeyLength: 32,
		},
		Limits: service.Argon2Limits{
			Memory: config.MaxArgon2Memory, Iterations: config.MaxArgon2Iterations, Parallelism: config.MaxArgon2Parallel,
		},
		Concurrency:  cfg.Argon2Concurrency,
		Wait:         cfg.Argon2Wait,
		CacheSize:    cfg.AuthCacheSize,
		CacheTTL:     cfg.AuthCacheTTL,
		HintFailures: cfg.AuthHintFailures,
		Refresh:      cfg.AuthRefresh,
		Observer:     a.metrics,
	}, log)
	a.sessions = service.NewSessions(repository.NewSessions(db), a.signatures,
		service.SessionsConfig{Idle: cfg.SessionIdle, Max: cfg.SessionMax}, time.Now, log)
	return a, nil
}

// openFiles returns the storage that cfg selects: the bucket of
// WEMESSE_STORAGE_URL, with endpoint, region and credentials from the
// standard AWS_* variables, or else WEMESSE_UPLOAD_DIR on local disk.
func openFiles(ctx context.Context, cfg config.Config, getenv func(string) string) (fileStore, error) {
	if cfg.StorageURL != "" {
		return storage.NewS3(ctx, cfg.StorageURL, getenv)
	}
	return storage.NewDisk(cfg.UploadDir)
}

// close writes what is queued, then closes the database.
func (a *app) close() {
	a.users.Close()
	a.userStore.Close()
	repository.Close(a.db)
}

// gcPercent is the server's GOGC. Its live heap is a few megabytes, so
// Go's default of 100 collects many times a second under load; 400 costs
// some tens of megabytes and saves about a tenth of the CPU of an update
// check (BENCHMARKS.md).
const gcPercent = 400

// tuneGC sets GOGC to gcPercent with a soft memory limit of 128 MiB plus
// what the Argon2id hashes may hold at once, so that their 64 MiB buffers
// do not let the heap grow fivefold before a collection. GOGC or
// GOMEMLIMIT in the environment leave Go's settings alone.
func tuneGC(cfg config.Config, getenv func(string) string, log *slog.Logger) {
	if getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := 128<<20 + (int64(cfg.Argon2.Memory)<<10)*int64(cfg.Argon2Concurrency) // Memory is in KiB
	debug.SetGCPercent(gcPercent)
	debug.SetMemoryLimit(limit)
	log.Debug("garbage collector tuned", "gogc", gcPercent, "memory_limit_bytes", limit)
}

// serve runs the HTTP server until ctx ends, then shuts down gracefully.
// Its lines go to log, whose handler writes to sink, which also takes
// the access lines directly.
func serve(ctx context.Context, cfg config.Config, log *slog.Logger, sink *logbatch.Writer, getenv func(string) string) error {
	log.Info("starting", "config", cfg)
	tuneGC(cfg, getenv, log)
	signer, keys, err := answerKeys(cfg)
	if err != nil {
		return err
	}
	if signer == nil {
		log.Warn("Update answers are not signed: WEMESSE_ANSWER_KEY_FILE is not set.")
	} else {
		log.Info("update answers are signed", "kid", signer.KeyID(), "published_keys", len(keys))
	}

	a, err := open(ctx, cfg, log, getenv)
	if err != nil {
		return err
	}
	defer a.close()
	a.metrics.CountDroppedLogLines(sink.Dropped)

	if n, err := a.files.CleanStaging(context.WithoutCancel(ctx)); err != nil {
		return err
	} else if n > 0 {
		log.Info("removed staged files left by an interrupted upload", "count", n)
	}
	if n, err := a.signatures.UpgradePlaintext(ctx); err != nil {
		return err
	} else if n > 0 {
		log.Info("hashed plaintext signatures left by the earlier server", "count", n)
	}
	generated, err := a.signatures.Bootstrap(ctx, cfg.Signature)
	if err != nil {
		return err
	}
	if generated != "" {
		// The one time a secret is ever written out: nobody could call the
		// API otherwise.
		log.Warn("No signature was configured, so one was generated and its hash stored. Copy it now: it will not be shown again.", "signature", generated)
	}
	if err := a.signatures.Load(ctx); err != nil {
		return err
	}
	go a.signatures.Run(ctx)
	if err := a.releases.Load(ctx); err != nil {
		return err
	}
	go a.releases.Run(ctx)
	go a.history.Run(ctx)
	go a.sessions.Run(ctx)
	if cfg.IsPostgres() {
		// Other servers' writes arrive at once; Run's re-reads are the fallback.
		go repository.Listen(ctx, cfg.DatabaseURL, func(topic string) {
			var err error
			switch topic {
			case repository.TopicReleases:
				err = a.releases.Load(ctx)
			case repository.TopicSignatures:
				err = a.signatures.Load(ctx)
			}
			if err != nil && ctx.Err() == nil {
				log.Warn("reload after a change", "topic", topic, "err", err)
			}
		}, log)
	}

	var inflight sync.WaitGroup
	api := handler.NewServer(handler.Deps{
		Releases: a.releases, Users: a.users, Signatures: a.signatures, Audit: a.audit, Stats: a.stats, History: a.history, Sessions: a.sessions, SessionMax: cfg.SessionMax, Log: log, AccessLog: sink, Metrics: a.metrics,
		PublicURL: cfg.PublicURL, MirrorURL: cfg.MirrorURL, MaxUploadBytes: cfg.MaxUploadBytes, UpdateMaxAge: cfg.UpdateMaxAge,
		AnswerSigner: signer, AnswerKeys: keys,
		AuthFailuresPerMinute: cfg.AuthFailuresPerMin, StallTimeout: cfg.StallTimeout, MinBodyRate: cfg.MinBodyRate, TrustedProxies: cfg.TrustedProxies,
		Ready: func(ctx context.Context) error { return repository.Ping(ctx, a.db) },
	})
	srv := &http.Server{
		Addr: cfg.Addr,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			inflight.Add(1)
			defer inflight.Done()
			api.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ConnContext:       handler.ConnContext(cfg.StallTimeout),
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		TLSConfig:         serverTLS(),
	}
	// Metrics first: once the API answers, so do they.
	if cfg.MetricsAddr != "" {
		stopMetrics, err := serveMetrics(cfg.MetricsAddr, cfg.Pprof, a.metrics, log)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ln = handler.LimitConnections(ln, cfg.MaxConnections, log)
	log.Info("listening", "addr", ln.Addr().String(), "tls", cfg.TLSCert != "")
	// The start-up lines (a generated secret, staged files removed) are
	// out before the first answer: whoever sees the server answer can read
	// them, and a crash right after start cannot lose them.
	if !sink.Flush(time.Second) {
		log.Warn("the log sink took more than 1s to take the start-up lines")
	}
	errc := make(chan error, 1)
	go func() {
		if cfg.TLSCert != "" {
			errc <- srv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
		} else {
			errc <- srv.Serve(ln)
		}
	}()

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		srv.Close()
		log.Warn("shutdown cut off requests still running", "err", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	// Requests cut off at the deadline clean up after themselves as their
	// connections close; wait for that, then make sure no staged file is
	// left either way.
	done := make(chan struct{})
	go func() { inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		log.Warn("requests still running 10s after the shutdown deadline")
	}
	if n, err := a.files.CleanStaging(context.WithoutCancel(ctx)); err != nil {
		log.Warn("clean staging at shutdown", "err", err)
	} else if n > 0 {
		log.Info("removed staged files of uploads cut off by the shutdown", "count", n)
	}
	log.Info("stopped")
	return nil
}

// answerKeys loads the key that signs update answers and the retired ones,
// and returns its signer (nil without a current key) and every key to
// publish, the current first.
func answerKeys(cfg config.Config) (*httpsig.Signer, []httpsig.Key, error) {
	var keys []httpsig.Key
	var signer *httpsig.Signer
	if cfg.AnswerKeyFile != "" {
		k, err := httpsig.LoadKeyFile(cfg.AnswerKeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("WEMESSE_ANSWER_KEY_FILE: %w", err)
		}
		if signer, err = httpsig.NewSigner(k, cfg.AnswerTTL); err != nil {
			return nil, nil, fmt.Errorf("WEMESSE_ANSWER_KEY_FILE: %w", err)
		}
		keys = append(keys, k)
	}
	for _, f := range cfg.AnswerKeysRetired {
		k, err := httpsig.LoadKeyFile(f)
		if err != nil {
			return nil, nil, fmt.Errorf("WEMESSE_ANSWER_KEYS_RETIRED: %w", err)
		}
		if !slices.ContainsFunc(keys, func(o httpsig.Key) bool { return o.ID == k.ID }) {
			keys = append(keys, httpsig.Key{ID: k.ID, Public: k.Public})
		}
	}
	return signer, keys, nil
}

// serveMetrics serves /metrics, and Go's profiles at /debug/pprof/ when
// profiles is set, on their own listener, so that they are not exposed with
// the API. The returned function stops it.
func serveMetrics(addr string, profiles bool, m *metrics.Metrics, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	if profiles {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	log.Info("metrics listening", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}

// signatureCommand runs `wemesse signature ...`.
func signatureCommand(ctx context.Context, cfg config.Config, log *slog.Logger, args []string, stdout io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return errors.New("signature: want create, list or revoke\n" + usage)
	}
	a, err := open(ctx, cfg, log, getenv)
	if err != nil {
		return err
	}
	defer a.close()
	switch args[0] {
	case "create":
		fs := flag.NewFlagSet("signature create", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		role := fs.String("role", "admin", "admin or client")
		name := fs.String("name", "", "a unique name, for people and the audit trail")
		expires := fs.String("expires", "", "how long the secret works: a Go duration or days (30d); empty: forever")
		if err := fs.Parse(args[1:]); err != nil {
			return fmt.Errorf("signature create: %w", err)
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("signature create: unexpected argument %q", fs.Arg(0))
		}
		n := service.NewSignature{Role: *role, Name: *name}
		if *expires != "" {
			d, err := parseDays(*expires)
			if err != nil || d <= 0 {
				return fmt.Errorf("signature create: --expires %q is not a positive duration such as 12h or 30d", *expires)
			}
			n.ExpiresAt = time.Now().Add(d)
		}
		secret, sig, err := a.signatures.CreateNamed(ctx, n)
		if err != nil {
			return err
		}
		about := ""
		if sig.Name != "" {
			about += fmt.Sprintf(" Its name is %s.", sig.Name)
		}
		if !sig.ExpiresAt.IsZero() {
			about += " It expires at " + formatTime(sig.ExpiresAt) + "."
		}
		fmt.Fprintf(stdout, "Created %s signature %d.%s Copy the secret below now: it is stored only as a hash and will not be shown again.\n%s\n", sig.Role, sig.ID, about, secret)
		return nil
	case "list":
		sigs, err := a.signatures.List(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tROLE\tCREATED\tEXPIRES\tLAST USED")
		for _, s := range sigs {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Label(), s.Role, formatTime(s.CreatedAt), formatTime(s.ExpiresAt), formatTime(s.LastUsedAt))
		}
		return tw.Flush()
	case "revoke":
		if len(args) != 2 {
			return errors.New("signature revoke: want exactly one ID")
		}
		id, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil || id <= 0 {
			return fmt.Errorf("signature revoke: %q is not a signature ID", args[1])
		}
		if err := a.signatures.Revoke(ctx, id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Revoked signature %d. Running servers refuse it within %s.\n", id, cfg.AuthRefresh)
		return nil
	}
	return fmt.Errorf("signature: unknown command %q", args[0])
}

// auditCommand runs `wemesse audit`: the trail as a table.
func auditCommand(ctx context.Context, cfg config.Config, log *slog.Logger, args []string, stdout io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	after := fs.Int64("after", 0, "print entries after this id")
	limit := fs.Int("limit", 0, "print at most this many entries; 0: all")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("audit: unexpected argument %q", fs.Arg(0))
	}
	a, err := open(ctx, cfg, log, getenv)
	if err != nil {
		return err
	}
	defer a.close()
	entries, err := a.audit.List(ctx, model.Page{After: *after, Limit: *limit})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAT\tACTOR\tACTION\tRELEASE\tDETAIL")
	for _, e := range entries {
		release := "-"
		if e.ReleaseID != 0 {
			release = strconv.FormatInt(e.ReleaseID, 10)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.ID, formatTime(e.At), e.Actor, e.Action, release, e.Detail)
	}
	return tw.Flush()
}

// parseDays is time.ParseDuration that also takes a whole number of days
// first: 30d, 1d12h.
func parseDays(s string) (time.Duration, error) {
	days, rest, ok := strings.Cut(s, "d")
	if !ok {
		return time.ParseDuration(s)
	}
	n, err := strconv.ParseUint(days, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%q: the days must be a whole number", s)
	}
	d := time.Duration(n) * 24 * time.Hour
	if rest == "" {
		return d, nil
	}
	r, err := time.ParseDuration(rest)
	return d + r, err
}

// releasesCommand runs `wemesse releases verify`: a progress bar on stderr,
// one line per release on stdout, and an error when any build failed.
func releasesCommand(ctx context.Context, cfg config.Config, log *slog.Logger, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) != 1 || args[0] != "verify" {
		return errors.New("releases: want verify\n" + usage)
	}
	a, err := open(ctx, cfg, log, getenv)
	if err != nil {
		return err
	}
	defer a.close()
	bar := progressBar{w: stderr, last: -1}
	failed, err := a.releases.VerifyStored(ctx, bar.draw, func(rel model.Release, err error) {
		bar.clear()
		name := rel.Version.String()
		if rel.TargetABI != "" {
			name += " " + rel.TargetABI
		}
		if err != nil {
			fmt.Fprintf(stdout, "FAIL  release %d (%s, %s): %s\n", rel.ID, name, rel.FilePath, model.ErrorMessage(err))
			return
		}
		fmt.Fprintf(stdout, "ok    release %d (%s): %s versionCode %d (%s), minSdk %d, targetSdk %d, signer %s\n",
			rel.ID, name, rel.PackageName, rel.VersionCode, rel.VersionName, rel.MinSdk, rel.TargetSdk, rel.SignerSHA256)
	})
	bar.clear()
	if err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("releases verify: %d builds failed; nothing was deleted", failed)
	}
	return nil
}

// progressBar draws "verifying [#####     ]  50% 1.0 GB of 2.0 GB" on one
// line, redrawn when the percentage changes.
type progressBar struct {
	w    io.Writer
	last int
}

func (b *progressBar) draw(done, total int64) {
	pct := 100
	if total > 0 {
		pct = int(done * 100 / total)
	}
	if pct == b.last {
		return
	}
	b.last = pct
	fill := pct * 30 / 100
	fmt.Fprintf(b.w, "\rverifying [%s%s] %3d%% %s of %s", strings.Repeat("#", fill), strings.Repeat(" ", 30-fill), pct, model.FormatSize(done), model.FormatSize(total))
}

// clear ends the bar's line, if one is drawn, so that other output starts
// on a fresh line; the next draw starts a new bar.
func (b *progressBar) clear() {
	if b.last >= 0 {
		fmt.Fprintln(b.w)
		b.last = -1
	}
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// serverTLS is the API's TLS configuration: TLS 1.2 or later, and on TLS 1.2
// only suites with forward secrecy and authenticated encryption (no CBC,
// whose padding has been attacked again and again). TLS 1.3 has no others.
func serverTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
}
