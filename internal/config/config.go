// Package config reads Wemesse's settings from the environment. Every
// default lives here.
package config

import (
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/wemesse/server/internal/model"
)

// Config is the server's effective configuration.
type Config struct {
	Addr            string         // WEMESSE_ADDR
	DatabaseURL     string         // WEMESSE_DATABASE_URL: postgres:// URL or SQLite path
	UploadDir       string         // WEMESSE_UPLOAD_DIR
	PublicURL       string         // WEMESSE_PUBLIC_URL, without a trailing slash
	MirrorURL       string         // WEMESSE_MIRROR_URL, without a trailing slash
	MaxUploadBytes  int64          // WEMESSE_MAX_UPLOAD_BYTES
	Signature       string         // WEMESSE_SIGNATURE: bootstrap secret; never log it
	TLSCert         string         // WEMESSE_TLS_CERT
	TLSKey          string         // WEMESSE_TLS_KEY
	DefaultABI      string         // WEMESSE_DEFAULT_ABI: the ABI of a client that names none
	UpdateMaxAge    time.Duration  // WEMESSE_UPDATE_MAX_AGE (seconds): how long clients may cache an update check
	ReleasesRefresh time.Duration  // WEMESSE_RELEASES_REFRESH: how often releases are re-read into memory
	MetricsAddr     string         // WEMESSE_METRICS_ADDR: listener for /metrics; empty: off
	Pprof           bool           // WEMESSE_PPROF: Go's profiles at /debug/pprof/ on the metrics listener
	StallTimeout    time.Duration  // WEMESSE_STALL_TIMEOUT: drop a request that makes no progress this long
	MinBodyRate     int64          // WEMESSE_MIN_BODY_RATE: bytes/s a request body must average; 0: none
	MaxConnections  int            // WEMESSE_MAX_CONNECTIONS: connections open at once; more are refused
	DeviceWriters   int            // WEMESSE_DEVICE_WRITERS: concurrent device-session writers
	DeviceBatch     int            // WEMESSE_DEVICE_BATCH: most device sessions per transaction
	StorageURL      string         // WEMESSE_STORAGE_URL: s3://bucket/prefix selects object storage; empty: WEMESSE_UPLOAD_DIR
	StorageRedirect bool           // WEMESSE_STORAGE_REDIRECT: downloads redirect to short-lived presigned URLs
	TrustedProxies  []netip.Prefix // WEMESSE_TRUSTED_PROXIES: reverse proxies whose X-Forwarded-For is believed
	HistoryRefresh  time.Duration  // WEMESSE_HISTORY_REFRESH: how often today's adoption is counted again
	SessionIdle     time.Duration  // WEMESSE_SESSION_IDLE: a console session unused this long ends
	SessionMax      time.Duration  // WEMESSE_SESSION_MAX: a console session ends this long after login
	Tracks          model.Tracks   // WEMESSE_TRACKS: release tracks, most adventurous first
	LogLevel        slog.Level
	// VerifyAPK (WEMESSE_VERIFY_APK, default true) checks every upload as
	// Android would before installing it; false stores any bytes, which is
	// unsafe for APKs: devices may be offered builds they cannot install.
	VerifyAPK bool

	AnswerKeyFile     string        // WEMESSE_ANSWER_KEY_FILE: PEM of the key that signs update answers; empty: unsigned
	AnswerKeysRetired []string      // WEMESSE_ANSWER_KEYS_RETIRED: PEM files of older keys, still published
	AnswerTTL         time.Duration // WEMESSE_ANSWER_TTL: how long an answer's signature stays valid

	Argon2 Argon2 // parameters for new hashes

	// Verification cache and bounded hashing (see service.Signatures).
	Argon2Concurrency  int           // WEMESSE_ARGON2_CONCURRENCY
	Argon2Wait         time.Duration // WEMESSE_ARGON2_WAIT: longest wait for a hashing slot
	AuthCacheSize      int           // WEMESSE_AUTH_CACHE_SIZE
	AuthCacheTTL       time.Duration // WEMESSE_AUTH_CACHE_TTL
	AuthRefresh        time.Duration // WEMESSE_AUTH_REFRESH: how often signatures are re-read
	AuthFailuresPerMin int           // WEMESSE_AUTH_FAILURES_PER_MINUTE: per client IP
	AuthHintFailures   int           // WEMESSE_AUTH_HINT_FAILURES_PER_MINUTE: hashed failures per secret hint

	ReadHeaderTimeout time.Duration // WEMESSE_READ_HEADER_TIMEOUT
	IdleTimeout       time.Duration // WEMESSE_IDLE_TIMEOUT
	ShutdownTimeout   time.Duration // WEMESSE_SHUTDOWN_TIMEOUT
}

// Argon2 holds Argon2id parameters; the defaults are the library's.
type Argon2 struct {
	Memory      uint32 // KiB; WEMESSE_ARGON2_MEMORY
	Iterations  uint32 // WEMESSE_ARGON2_ITERATIONS
	Parallelism uint8  // WEMESSE_ARGON2_PARALLELISM
}

// Bounds on Argon2 parameters, for new hashes and for stored ones alike: a
// hash beyond them would let a row in the database exhaust the server.
const (
	MaxArgon2Memory     = 256 * 1024 // KiB
	MaxArgon2Iterations = 10
	MaxArgon2Parallel   = 16
)

// MinAnswerTTL is the shortest WEMESSE_ANSWER_TTL: a signature must outlive
// the minute between its renewals, with room for clients' clocks.
const MinAnswerTTL = 5 * time.Minute

// Variables lists every environment variable the server reads.
var Variables = []string{
	"WEMESSE_ADDR", "WEMESSE_DATABASE_URL", "WEMESSE_UPLOAD_DIR", "WEMESSE_PUBLIC_URL",
	"WEMESSE_MIRROR_URL", "WEMESSE_MAX_UPLOAD_BYTES", "WEMESSE_SIGNATURE", "WEMESSE_TLS_CERT",
	"WEMESSE_TLS_KEY", "WEMESSE_DEFAULT_ABI", "WEMESSE_LOG_LEVEL", "WEMESSE_ARGON2_MEMORY",
	"WEMESSE_ARGON2_ITERATIONS", "WEMESSE_ARGON2_PARALLELISM", "WEMESSE_ARGON2_CONCURRENCY",
	"WEMESSE_ARGON2_WAIT", "WEMESSE_AUTH_CACHE_SIZE", "WEMESSE_AUTH_CACHE_TTL", "WEMESSE_AUTH_REFRESH",
	"WEMESSE_AUTH_FAILURES_PER_MINUTE", "WEMESSE_AUTH_HINT_FAILURES_PER_MINUTE", "WEMESSE_READ_HEADER_TIMEOUT", "WEMESSE_IDLE_TIMEOUT",
	"WEMESSE_SHUTDOWN_TIMEOUT", "WEMESSE_UPDATE_MAX_AGE", "WEMESSE_RELEASES_REFRESH", "WEMESSE_METRICS_ADDR",
	"WEMESSE_STALL_TIMEOUT", "WEMESSE_MIN_BODY_RATE", "WEMESSE_MAX_CONNECTIONS", "WEMESSE_DEVICE_WRITERS", "WEMESSE_DEVICE_BATCH", "WEMESSE_STORAGE_URL",
	"WEMESSE_STORAGE_REDIRECT", "WEMESSE_TRUSTED_PROXIES", "WEMESSE_PPROF", "WEMESSE_HISTORY_REFRESH",
	"WEMESSE_SESSION_IDLE", "WEMESSE_SESSION_MAX",
	"WEMESSE_ANSWER_KEY_FILE", "WEMESSE_ANSWER_KEYS_RETIRED", "WEMESSE_ANSWER_TTL", "WEMESSE_TRACKS", "WEMESSE_VERIFY_APK",
}

// Load reads the configuration through getenv and checks it.
func Load(getenv func(string) string) (Config, error) {
	p := parser{getenv: getenv}
	c := Config{
		Addr:            p.str("WEMESSE_ADDR", ":9000"),
		DatabaseURL:     p.str("WEMESSE_DATABASE_URL", "data/wemesse.db"),
		UploadDir:       p.str("WEMESSE_UPLOAD_DIR", "uploads"),
		PublicURL:       strings.TrimRight(p.str("WEMESSE_PUBLIC_URL", "http://localhost:9000/uploads"), "/"),
		MaxUploadBytes:  p.int64("WEMESSE_MAX_UPLOAD_BYTES", 1<<30, 1, 1<<50),
		Signature:       getenv("WEMESSE_SIGNATURE"),
		TLSCert:         getenv("WEMESSE_TLS_CERT"),
		TLSKey:          getenv("WEMESSE_TLS_KEY"),
		DefaultABI:      p.str("WEMESSE_DEFAULT_ABI", "arm64"),
		UpdateMaxAge:    time.Duration(p.int64("WEMESSE_UPDATE_MAX_AGE", 60, 0, 86400)) * time.Second,
		ReleasesRefresh: p.duration("WEMESSE_RELEASES_REFRESH", time.Second),
		MetricsAddr:     getenv("WEMESSE_METRICS_ADDR"),
		Pprof:           p.bool("WEMESSE_PPROF"),
		StallTimeout:    p.duration("WEMESSE_STALL_TIMEOUT", 30*time.Second),
		MinBodyRate:     p.int64("WEMESSE_MIN_BODY_RATE", 1024, 0, 1<<40),
		MaxConnections:  int(p.int64("WEMESSE_MAX_CONNECTIONS", 10000, 1, 10_000_000)),
		DeviceWriters:   int(p.int64("WEMESSE_DEVICE_WRITERS", 1, 0, 64)),
		DeviceBatch:     int(p.int64("WEMESSE_DEVICE_BATCH", 256, 1, 1000)),
		StorageURL:      getenv("WEMESSE_STORAGE_URL"),
		StorageRedirect: p.bool("WEMESSE_STORAGE_REDIRECT"),
		VerifyAPK:       p.boolOr("WEMESSE_VERIFY_APK", true),
		TrustedProxies:  p.prefixes("WEMESSE_TRUSTED_PROXIES"),
		HistoryRefresh:  p.duration("WEMESSE_HISTORY_REFRESH", time.Minute),
		SessionIdle:     p.duration("WEMESSE_SESSION_IDLE", 30*time.Minute),
		SessionMax:      p.duration("WEMESSE_SESSION_MAX", 12*time.Hour),
		Tracks:          p.tracks("WEMESSE_TRACKS", "internal,beta,stable"),
		Argon2: Argon2{
			Memory:      uint32(p.int64("WEMESSE_ARGON2_MEMORY", 64*1024, 8, MaxArgon2Memory)),
			Iterations:  uint32(p.int64("WEMESSE_ARGON2_ITERATIONS", 1, 1, MaxArgon2Iterations)),
			Parallelism: uint8(p.int64("WEMESSE_ARGON2_PARALLELISM", int64(min(runtime.NumCPU(), MaxArgon2Parallel)), 1, MaxArgon2Parallel)),
		},
		Argon2Concurrency:  int(p.int64("WEMESSE_ARGON2_CONCURRENCY", int64(runtime.NumCPU()), 1, 256)),
		Argon2Wait:         p.duration("WEMESSE_ARGON2_WAIT", 2*time.Second),
		AuthCacheSize:      int(p.int64("WEMESSE_AUTH_CACHE_SIZE", 10000, 1, 10_000_000)),
		AuthCacheTTL:       p.duration("WEMESSE_AUTH_CACHE_TTL", 10*time.Minute),
		AuthRefresh:        p.duration("WEMESSE_AUTH_REFRESH", 2*time.Second),
		AuthFailuresPerMin: int(p.int64("WEMESSE_AUTH_FAILURES_PER_MINUTE", 60, 1, 1_000_000)),
		AuthHintFailures:   int(p.int64("WEMESSE_AUTH_HINT_FAILURES_PER_MINUTE", 30, 0, 1_000_000)),
		ReadHeaderTimeout:  p.duration("WEMESSE_READ_HEADER_TIMEOUT", 10*time.Second),
		IdleTimeout:        p.duration("WEMESSE_IDLE_TIMEOUT", 120*time.Second),
		ShutdownTimeout:    p.duration("WEMESSE_SHUTDOWN_TIMEOUT", 30*time.Second),
	}
	c.AnswerKeyFile = getenv("WEMESSE_ANSWER_KEY_FILE")
	c.AnswerKeysRetired = p.list("WEMESSE_ANSWER_KEYS_RETIRED")
	c.AnswerTTL = p.duration("WEMESSE_ANSWER_TTL", 24*time.Hour)
	c.MirrorURL = strings.TrimRight(p.str("WEMESSE_MIRROR_URL", c.PublicURL), "/")
	if err := c.LogLevel.UnmarshalText([]byte(p.str("WEMESSE_LOG_LEVEL", "info"))); err != nil {
		p.fail("WEMESSE_LOG_LEVEL must be debug, info, warn or error")
	}
	for _, u := range []struct{ name, value string }{{"WEMESSE_PUBLIC_URL", c.PublicURL}, {"WEMESSE_MIRROR_URL", c.MirrorURL}} {
		if parsed, err := url.Parse(u.value); err != nil || parsed.Scheme == "" || parsed.Host == "" {
			p.fail(u.name + " must be an absolute URL such as https://updates.example.com/uploads")
		}
	}
	if u, err := url.Parse(c.StorageURL); c.StorageURL != "" && (err != nil || u.Scheme != "s3" || u.Host == "") {
		p.fail("WEMESSE_STORAGE_URL must look like s3://bucket/prefix")
	} else if c.StorageURL != "" && u.User != nil {
		p.fail("WEMESSE_STORAGE_URL must not hold credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	if c.StorageRedirect && c.StorageURL == "" {
		p.fail("WEMESSE_STORAGE_REDIRECT needs WEMESSE_STORAGE_URL: only object storage can presign download links")
	}
	if c.Pprof && c.MetricsAddr == "" {
		p.fail("WEMESSE_PPROF needs WEMESSE_METRICS_ADDR: profiles are served on the metrics listener only")
	}
	if c.AnswerTTL < MinAnswerTTL {
		p.fail(fmt.Sprintf("WEMESSE_ANSWER_TTL must be at least %s: signatures are renewed about every minute", MinAnswerTTL))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		p.fail("WEMESSE_TLS_CERT and WEMESSE_TLS_KEY must be set together")
	}
	switch c.DefaultABI {
	case "arm", "arm64", "x86", "x86_64":
	default:
		p.fail("WEMESSE_DEFAULT_ABI must be one of arm, arm64, x86, x86_64")
	}
	if p.err != nil {
		return Config{}, p.err
	}
	return c, nil
}

// IsPostgres reports whether DatabaseURL selects PostgreSQL.
func (c Config) IsPostgres() bool { return IsPostgresURL(c.DatabaseURL) }

// IsPostgresURL reports whether a database URL selects PostgreSQL.
func IsPostgresURL(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// LogValue writes the configuration for the start-up log, secrets masked.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("addr", c.Addr),
		slog.String("database", redactURL(c.DatabaseURL)),
		slog.String("upload_dir", c.UploadDir),
		slog.String("storage_url", c.StorageURL),
		slog.Bool("storage_redirect", c.StorageRedirect),
		slog.Bool("verify_apk", c.VerifyAPK),
		slog.String("public_url", c.PublicURL),
		slog.String("mirror_url", c.MirrorURL),
		slog.Int64("max_upload_bytes", c.MaxUploadBytes),
		slog.Bool("signature_set", c.Signature != ""),
		slog.Bool("tls", c.TLSCert != ""),
		slog.String("default_abi", c.DefaultABI),
		slog.String("tracks", strings.Join(c.Tracks, ",")),
		slog.Int("argon2_concurrency", c.Argon2Concurrency),
		slog.String("answer_key_file", c.AnswerKeyFile),
		slog.Int("answer_keys_retired", len(c.AnswerKeysRetired)),
		slog.Duration("answer_ttl", c.AnswerTTL),
	)
}

// redactURL hides a password in a database URL.
func redactURL(dsn string) string {
	if !IsPostgresURL(dsn) {
		return dsn
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "postgres://(unparsable)"
	}
	return u.Redacted()
}

// parser reads variables and keeps the first error.
type parser struct {
	getenv func(string) string
	err    error
}

func (p *parser) fail(msg string) {
	if p.err == nil {
		p.err = fmt.Errorf("config: %s", msg)
	}
}

func (p *parser) str(name, def string) string {
	if v := p.getenv(name); v != "" {
		return v
	}
	return def
}

func (p *parser) int64(name string, def, lo, hi int64) int64 {
	v := p.getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		p.fail(fmt.Sprintf("%s must be an integer from %d to %d", name, lo, hi))
		return def
	}
	return n
}

// list reads a comma-separated list, dropping empty items.
func (p *parser) list(name string) []string {
	var out []string
	for _, f := range strings.Split(p.getenv(name), ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// prefixes reads a comma-separated list of CIDR prefixes or addresses.
func (p *parser) prefixes(name string) []netip.Prefix {
	var out []netip.Prefix
	for _, f := range strings.Split(p.getenv(name), ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if a, err := netip.ParseAddr(f); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		pre, err := netip.ParsePrefix(f)
		if err != nil {
			p.fail(name + " must be comma-separated addresses or CIDR prefixes such as 10.0.0.0/8")
			return nil
		}
		out = append(out, pre.Masked())
	}
	return out
}

// tracks reads a comma-separated list of release tracks.
func (p *parser) tracks(name, def string) model.Tracks {
	ts, err := model.ParseTracks(p.str(name, def))
	if err != nil {
		p.fail(name + ": " + model.ErrorMessage(err))
	}
	return ts
}

func (p *parser) bool(name string) bool { return p.boolOr(name, false) }

func (p *parser) boolOr(name string, def bool) bool {
	v := p.getenv(name)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.fail(name + " must be true or false")
	}
	return b
}

func (p *parser) duration(name string, def time.Duration) time.Duration {
	v := p.getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		p.fail(name + " must be a positive duration such as 5s")
		return def
	}
	return d
}
