package config_test

import (
	"bytes"
	"log/slog"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wemesse/server/internal/config"
	"github.com/wemesse/server/internal/model"
)

// envOf returns a getenv that serves m.
func envOf(m map[string]string) func(string) string {
	return func(name string) string { return m[name] }
}

// defaults is the configuration of an empty environment.
func defaults() config.Config {
	return config.Config{
		Addr:            ":9000",
		DatabaseURL:     "data/wemesse.db",
		UploadDir:       "uploads",
		PublicURL:       "http://localhost:9000/uploads",
		MirrorURL:       "http://localhost:9000/uploads",
		MaxUploadBytes:  1 << 30,
		DefaultABI:      "arm64",
		UpdateMaxAge:    time.Minute,
		ReleasesRefresh: time.Second,
		StallTimeout:    30 * time.Second,
		MinBodyRate:     1024,
		MaxConnections:  10000,
		DeviceWriters:   1,
		DeviceBatch:     256,
		HistoryRefresh:  time.Minute,
		SessionIdle:     30 * time.Minute,
		SessionMax:      12 * time.Hour,
		Tracks:          model.Tracks{"internal", "beta", "stable"},
		LogLevel:        slog.LevelInfo,
		VerifyAPK:       true,
		Argon2: config.Argon2{
			Memory:      64 * 1024,
			Iterations:  1,
			Parallelism: uint8(runtime.NumCPU()),
		},
		Argon2Concurrency:  runtime.NumCPU(),
		Argon2Wait:         2 * time.Second,
		AuthCacheSize:      10000,
		AuthCacheTTL:       10 * time.Minute,
		AuthRefresh:        2 * time.Second,
		AuthFailuresPerMin: 60,
		AuthHintFailures:   30,
		ReadHeaderTimeout:  10 * time.Second,
		IdleTimeout:        120 * time.Second,
		ShutdownTimeout:    30 * time.Second,
		AnswerTTL:          24 * time.Hour,
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name   string
		env    map[string]string
		want   func(c *config.Config) // changes to defaults()
		wantPG bool
	}{
		{name: "defaults", want: func(*config.Config) {}},
		{
			name: "answer_keys",
			env:  map[string]string{"WEMESSE_ANSWER_KEY_FILE": "new.pem", "WEMESSE_ANSWER_KEYS_RETIRED": " old.pem, ,older.pem", "WEMESSE_ANSWER_TTL": "1h"},
			want: func(c *config.Config) {
				c.AnswerKeyFile, c.AnswerKeysRetired, c.AnswerTTL = "new.pem", []string{"old.pem", "older.pem"}, time.Hour
			},
		},
		{
			name: "mirror_url_defaults_to_public_url",
			env:  map[string]string{"WEMESSE_PUBLIC_URL": "https://updates.example.com/uploads"},
			want: func(c *config.Config) {
				c.PublicURL = "https://updates.example.com/uploads"
				c.MirrorURL = "https://updates.example.com/uploads"
			},
		},
		{
			name: "trailing_slashes_trimmed",
			env: map[string]string{
				"WEMESSE_PUBLIC_URL": "https://updates.example.com/uploads/",
				"WEMESSE_MIRROR_URL": "https://mirror.example.com//",
			},
			want: func(c *config.Config) {
				c.PublicURL = "https://updates.example.com/uploads"
				c.MirrorURL = "https://mirror.example.com"
			},
		},
		{
			name: "mirror_url_defaults_to_trimmed_public_url",
			env:  map[string]string{"WEMESSE_PUBLIC_URL": "https://updates.example.com/"},
			want: func(c *config.Config) {
				c.PublicURL = "https://updates.example.com"
				c.MirrorURL = "https://updates.example.com"
			},
		},
		{
			name: "postgres_url",
			env:  map[string]string{"WEMESSE_DATABASE_URL": "postgres://u:p@db:5432/wemesse?sslmode=disable"},
			want: func(c *config.Config) {
				c.DatabaseURL = "postgres://u:p@db:5432/wemesse?sslmode=disable"
			},
			wantPG: true,
		},
		{
			name:   "postgresql_url",
			env:    map[string]string{"WEMESSE_DATABASE_URL": "postgresql://db/wemesse"},
			want:   func(c *config.Config) { c.DatabaseURL = "postgresql://db/wemesse" },
			wantPG: true,
		},
		{
			name: "sqlite_path",
			env:  map[string]string{"WEMESSE_DATABASE_URL": "/var/lib/wemesse/data/wemesse.db"},
			want: func(c *config.Config) { c.DatabaseURL = "/var/lib/wemesse/data/wemesse.db" },
		},
		{
			name: "tls_cert_and_key",
			env:  map[string]string{"WEMESSE_TLS_CERT": "cert.pem", "WEMESSE_TLS_KEY": "key.pem"},
			want: func(c *config.Config) { c.TLSCert, c.TLSKey = "cert.pem", "key.pem" },
		},
		{
			name: "signature_and_strings",
			env: map[string]string{
				"WEMESSE_SIGNATURE": "s3cret", "WEMESSE_ADDR": "127.0.0.1:8080",
				"WEMESSE_UPLOAD_DIR": "/srv/uploads", "WEMESSE_DEFAULT_ABI": "x86_64",
			},
			want: func(c *config.Config) {
				c.Signature, c.Addr, c.UploadDir, c.DefaultABI = "s3cret", "127.0.0.1:8080", "/srv/uploads", "x86_64"
			},
		},
		{
			name: "lower_bounds",
			env: map[string]string{
				"WEMESSE_MAX_UPLOAD_BYTES": "1", "WEMESSE_ARGON2_MEMORY": "8", "WEMESSE_ARGON2_ITERATIONS": "1",
				"WEMESSE_ARGON2_PARALLELISM": "1", "WEMESSE_ARGON2_CONCURRENCY": "1", "WEMESSE_AUTH_CACHE_SIZE": "1",
				"WEMESSE_AUTH_FAILURES_PER_MINUTE": "1",
			},
			want: func(c *config.Config) {
				c.MaxUploadBytes = 1
				c.Argon2 = config.Argon2{Memory: 8, Iterations: 1, Parallelism: 1}
				c.Argon2Concurrency, c.AuthCacheSize, c.AuthFailuresPerMin = 1, 1, 1
			},
		},
		{
			name: "upper_bounds",
			env: map[string]string{
				"WEMESSE_MAX_UPLOAD_BYTES": "1125899906842624", "WEMESSE_ARGON2_MEMORY": "262144",
				"WEMESSE_ARGON2_ITERATIONS": "10", "WEMESSE_ARGON2_PARALLELISM": "16",
				"WEMESSE_ARGON2_CONCURRENCY": "256", "WEMESSE_AUTH_CACHE_SIZE": "10000000",
				"WEMESSE_AUTH_FAILURES_PER_MINUTE": "1000000",
			},
			want: func(c *config.Config) {
				c.MaxUploadBytes = 1 << 50
				c.Argon2 = config.Argon2{
					Memory: config.MaxArgon2Memory, Iterations: config.MaxArgon2Iterations, Parallelism: config.MaxArgon2Parallel,
				}
				c.Argon2Concurrency, c.AuthCacheSize, c.AuthFailuresPerMin = 256, 10_000_000, 1_000_000
			},
		},
		{
			name: "durations",
			env: map[string]string{
				"WEMESSE_ARGON2_WAIT": "500ms", "WEMESSE_AUTH_CACHE_TTL": "1h", "WEMESSE_AUTH_REFRESH": "1m30s",
				"WEMESSE_READ_HEADER_TIMEOUT": "1s", "WEMESSE_IDLE_TIMEOUT": "5m", "WEMESSE_SHUTDOWN_TIMEOUT": "1ns",
			},
			want: func(c *config.Config) {
				c.Argon2Wait, c.AuthCacheTTL, c.AuthRefresh = 500*time.Millisecond, time.Hour, 90*time.Second
				c.ReadHeaderTimeout, c.IdleTimeout, c.ShutdownTimeout = time.Second, 5*time.Minute, time.Nanosecond
			},
		},
		{
			name: "tracks",
			env:  map[string]string{"WEMESSE_TRACKS": "canary, beta,stable"},
			want: func(c *config.Config) { c.Tracks = model.Tracks{"canary", "beta", "stable"} },
		},
		{
			name: "log_level_debug",
			env:  map[string]string{"WEMESSE_LOG_LEVEL": "debug"},
			want: func(c *config.Config) { c.LogLevel = slog.LevelDebug },
		},
		{
			name: "log_level_upper_case",
			env:  map[string]string{"WEMESSE_LOG_LEVEL": "WARN"},
			want: func(c *config.Config) { c.LogLevel = slog.LevelWarn },
		},
		{
			name: "log_level_error",
			env:  map[string]string{"WEMESSE_LOG_LEVEL": "error"},
			want: func(c *config.Config) { c.LogLevel = slog.LevelError },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := config.Load(envOf(tt.env))
			if err != nil {
				t.Fatalf("Load: got error %v, want none", err)
			}
			want := defaults()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Load:\ngot  %+v\nwant %+v", got, want)
			}
			if got.IsPostgres() != tt.wantPG {
				t.Errorf("IsPostgres: got %v, want %v", got.IsPostgres(), tt.wantPG)
			}
		})
	}
}

func TestLoad_errors(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		names string // the variable the message must name
	}{
		{"answer_ttl_too_short", map[string]string{"WEMESSE_ANSWER_TTL": "4m"}, "WEMESSE_ANSWER_TTL"},
		{"max_upload_not_a_number", map[string]string{"WEMESSE_MAX_UPLOAD_BYTES": "1GB"}, "WEMESSE_MAX_UPLOAD_BYTES"},
		{"max_upload_fraction", map[string]string{"WEMESSE_MAX_UPLOAD_BYTES": "1.5"}, "WEMESSE_MAX_UPLOAD_BYTES"},
		{"max_upload_zero", map[string]string{"WEMESSE_MAX_UPLOAD_BYTES": "0"}, "WEMESSE_MAX_UPLOAD_BYTES"},
		{"max_upload_negative", map[string]string{"WEMESSE_MAX_UPLOAD_BYTES": "-1"}, "WEMESSE_MAX_UPLOAD_BYTES"},
		{"max_upload_too_large", map[string]string{"WEMESSE_MAX_UPLOAD_BYTES": "1125899906842625"}, "WEMESSE_MAX_UPLOAD_BYTES"},
		{"max_upload_overflow", map[string]string{"WEMESSE_MAX_UPLOAD_BYTES": "99999999999999999999"}, "WEMESSE_MAX_UPLOAD_BYTES"},
		{"max_upload_spaces", map[string]string{"WEMESSE_MAX_UPLOAD_BYTES": " 10"}, "WEMESSE_MAX_UPLOAD_BYTES"},
		{"argon2_memory_too_small", map[string]string{"WEMESSE_ARGON2_MEMORY": "7"}, "WEMESSE_ARGON2_MEMORY"},
		{"argon2_memory_too_large", map[string]string{"WEMESSE_ARGON2_MEMORY": "262145"}, "WEMESSE_ARGON2_MEMORY"},
		{"argon2_memory_beyond_uint32", map[string]string{"WEMESSE_ARGON2_MEMORY": "4294967304"}, "WEMESSE_ARGON2_MEMORY"},
		{"argon2_iterations_zero", map[string]string{"WEMESSE_ARGON2_ITERATIONS": "0"}, "WEMESSE_ARGON2_ITERATIONS"},
		{"argon2_iterations_too_many", map[string]string{"WEMESSE_ARGON2_ITERATIONS": "11"}, "WEMESSE_ARGON2_ITERATIONS"},
		{"argon2_parallelism_zero", map[string]string{"WEMESSE_ARGON2_PARALLELISM": "0"}, "WEMESSE_ARGON2_PARALLELISM"},
		{"argon2_parallelism_too_many", map[string]string{"WEMESSE_ARGON2_PARALLELISM": "17"}, "WEMESSE_ARGON2_PARALLELISM"},
		{"argon2_parallelism_wraps_uint8", map[string]string{"WEMESSE_ARGON2_PARALLELISM": "256"}, "WEMESSE_ARGON2_PARALLELISM"},
		{"argon2_concurrency_zero", map[string]string{"WEMESSE_ARGON2_CONCURRENCY": "0"}, "WEMESSE_ARGON2_CONCURRENCY"},
		{"argon2_concurrency_too_many", map[string]string{"WEMESSE_ARGON2_CONCURRENCY": "257"}, "WEMESSE_ARGON2_CONCURRENCY"},
		{"auth_cache_size_zero", map[string]string{"WEMESSE_AUTH_CACHE_SIZE": "0"}, "WEMESSE_AUTH_CACHE_SIZE"},
		{"auth_failures_zero", map[string]string{"WEMESSE_AUTH_FAILURES_PER_MINUTE": "0"}, "WEMESSE_AUTH_FAILURES_PER_MINUTE"},
		{"duration_without_unit", map[string]string{"WEMESSE_ARGON2_WAIT": "5"}, "WEMESSE_ARGON2_WAIT"},
		{"duration_negative", map[string]string{"WEMESSE_AUTH_CACHE_TTL": "-1s"}, "WEMESSE_AUTH_CACHE_TTL"},
		{"duration_zero", map[string]string{"WEMESSE_AUTH_REFRESH": "0s"}, "WEMESSE_AUTH_REFRESH"},
		{"duration_garbage", map[string]string{"WEMESSE_READ_HEADER_TIMEOUT": "soon"}, "WEMESSE_READ_HEADER_TIMEOUT"},
		{"idle_timeout_bad", map[string]string{"WEMESSE_IDLE_TIMEOUT": "1 minute"}, "WEMESSE_IDLE_TIMEOUT"},
		{"shutdown_timeout_bad", map[string]string{"WEMESSE_SHUTDOWN_TIMEOUT": "30"}, "WEMESSE_SHUTDOWN_TIMEOUT"},
		{"public_url_not_a_url", map[string]string{"WEMESSE_PUBLIC_URL": "not a url"}, "WEMESSE_PUBLIC_URL"},
		{"public_url_without_scheme", map[string]string{"WEMESSE_PUBLIC_URL": "updates.example.com/uploads"}, "WEMESSE_PUBLIC_URL"},
		{"public_url_host_port_only", map[string]string{"WEMESSE_PUBLIC_URL": "localhost:9000"}, "WEMESSE_PUBLIC_URL"},
		{"public_url_relative", map[string]string{"WEMESSE_PUBLIC_URL": "/uploads"}, "WEMESSE_PUBLIC_URL"},
		{"public_url_without_host", map[string]string{"WEMESSE_PUBLIC_URL": "http://"}, "WEMESSE_PUBLIC_URL"},
		{"public_url_bad_escape", map[string]string{"WEMESSE_PUBLIC_URL": "http://host/%zz"}, "WEMESSE_PUBLIC_URL"},
		{"mirror_url_without_scheme", map[string]string{"WEMESSE_MIRROR_URL": "mirror.example.com"}, "WEMESSE_MIRROR_URL"},
		{"tls_cert_without_key", map[string]string{"WEMESSE_TLS_CERT": "cert.pem"}, "WEMESSE_TLS_KEY"},
		{"tls_key_without_cert", map[string]string{"WEMESSE_TLS_KEY": "key.pem"}, "WEMESSE_TLS_CERT"},
		{"log_level_unknown", map[string]string{"WEMESSE_LOG_LEVEL": "verbose"}, "WEMESSE_LOG_LEVEL"},
		{"default_abi_unknown", map[string]string{"WEMESSE_DEFAULT_ABI": "mips"}, "WEMESSE_DEFAULT_ABI"},
		{"default_abi_case", map[string]string{"WEMESSE_DEFAULT_ABI": "ARM64"}, "WEMESSE_DEFAULT_ABI"},
		{"pprof_without_metrics", map[string]string{"WEMESSE_PPROF": "true"}, "WEMESSE_METRICS_ADDR"},
		{"tracks_without_stable", map[string]string{"WEMESSE_TRACKS": "beta,production"}, "WEMESSE_TRACKS"},
		{"tracks_bad_name", map[string]string{"WEMESSE_TRACKS": "Beta,stable"}, "WEMESSE_TRACKS"},
		{"tracks_twice", map[string]string{"WEMESSE_TRACKS": "beta,beta,stable"}, "WEMESSE_TRACKS"},
		// Credentials belong in AWS_*: in the URL they would reach the start-up log.
		{"storage_url_with_credentials", map[string]string{"WEMESSE_STORAGE_URL": "s3://AKIA:s3-secret@bucket/prefix"}, "WEMESSE_STORAGE_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := config.Load(envOf(tt.env))
			if err == nil {
				t.Fatalf("Load: got no error, want one naming %s (config %+v)", tt.names, got)
			}
			if !strings.Contains(err.Error(), tt.names) {
				t.Errorf("Load: got error %q, want one naming %s", err, tt.names)
			}
			if !reflect.DeepEqual(got, config.Config{}) {
				t.Errorf("Load: got config %+v with the error, want the zero Config", got)
			}
		})
	}
}

// TestLoad_defaultArgon2WithinBounds guards the CPU-derived defaults: a
// default beyond the bounds would make the server store hashes that it then
// refuses to verify.
func TestLoad_defaultArgon2WithinBounds(t *testing.T) {
	c, err := config.Load(envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Argon2.Parallelism; p < 1 || p > config.MaxArgon2Parallel {
		t.Errorf("default Argon2 parallelism on %d CPUs: got %d, want 1 to %d", runtime.NumCPU(), p, config.MaxArgon2Parallel)
	}
	if c.Argon2.Memory > config.MaxArgon2Memory || c.Argon2.Iterations > config.MaxArgon2Iterations || c.Argon2.Iterations < 1 {
		t.Errorf("default Argon2 parameters: got %+v, want within the Max* bounds", c.Argon2)
	}
	if n := c.Argon2Concurrency; n < 1 || n > 256 {
		t.Errorf("default Argon2 concurrency on %d CPUs: got %d, want 1 to 256", runtime.NumCPU(), n)
	}
}

// TestVariables_matchLoad checks that Variables names exactly the variables
// Load reads.
func TestVariables_matchLoad(t *testing.T) {
	var read []string
	if _, err := config.Load(func(name string) string {
		read = append(read, name)
		return ""
	}); err != nil {
		t.Fatal(err)
	}
	for _, name := range read {
		if !slices.Contains(config.Variables, name) {
			t.Errorf("Load reads %s, which config.Variables does not list", name)
		}
	}
	for _, name := range config.Variables {
		if !slices.Contains(read, name) {
			t.Errorf("config.Variables lists %s, which Load does not read", name)
		}
	}
	seen := map[string]bool{}
	for _, name := range config.Variables {
		if seen[name] {
			t.Errorf("config.Variables lists %s twice", name)
		}
		seen[name] = true
	}
}

func TestConfig_LogValue_hidesSecrets(t *testing.T) {
	c, err := config.Load(envOf(map[string]string{
		"WEMESSE_SIGNATURE":    "bootstrap-secret-123",
		"WEMESSE_DATABASE_URL": "postgres://wemesse:db-password-456@db:5432/wemesse",
	}))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("starting", "config", c)
	for _, secret := range []string{"bootstrap-secret-123", "db-password-456"} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("log line %s shows %q", buf.String(), secret)
		}
	}
	if !strings.Contains(buf.String(), `"signature_set":true`) {
		t.Errorf("log line %s: want signature_set true", buf.String())
	}
}
