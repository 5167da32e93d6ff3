package config_test

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/wemesse/server/internal/config"
)

// The deployment files live at the repository root, two levels up.
var (
	composeFile        = filepath.Join("..", "..", "docker-compose.yml")
	dockerfile         = filepath.Join("..", "..", "Dockerfile")
	envExample         = filepath.Join("..", "..", "configs", "wemesse.env.example")
	postgresEnvExample = filepath.Join("..", "..", "configs", "postgres.env.example")
)

// anyVariable matches a WEMESSE_* name anywhere in a file.
var anyVariable = regexp.MustCompile(`WEMESSE_[A-Z0-9_]*[A-Z0-9]`)

// TestCompose_setsOnlyKnownVariables fails when a service in
// docker-compose.yml sets a WEMESSE_* variable that the server never reads: a
// typo there is silently ignored at run time.
func TestCompose_setsOnlyKnownVariables(t *testing.T) {
	raw, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Environment yaml.Node `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatalf("parse %s: %v", composeFile, err)
	}
	if len(compose.Services) == 0 {
		t.Fatalf("%s: no services", composeFile)
	}
	found := 0
	for name, svc := range compose.Services {
		for _, v := range environmentNames(t, name, &svc.Environment) {
			if !strings.HasPrefix(v, "WEMESSE_") {
				continue
			}
			found++
			if !slices.Contains(config.Variables, v) {
				t.Errorf("service %s sets %s, which the server does not read (see config.Variables)", name, v)
			}
		}
	}
	if found == 0 {
		t.Errorf("%s: no service sets any WEMESSE_* variable; is the file parsed right?", composeFile)
	}
	// Interpolations such as ${WEMESSE_PUBLIC_URL} and comments too.
	checkMentions(t, composeFile, raw)
}

// environmentNames returns the variable names of a service's environment,
// in either of Compose's forms: a map, or a list of NAME=value / NAME.
func environmentNames(tb testing.TB, service string, env *yaml.Node) []string {
	tb.Helper()
	var names []string
	switch env.Kind {
	case 0: // no environment
	case yaml.MappingNode:
		for i := 0; i < len(env.Content); i += 2 {
			names = append(names, env.Content[i].Value)
		}
	case yaml.SequenceNode:
		for _, item := range env.Content {
			if item.Kind != yaml.ScalarNode {
				tb.Errorf("service %s: environment item at line %d is not a string", service, item.Line)
				continue
			}
			name, _, _ := strings.Cut(item.Value, "=")
			names = append(names, name)
		}
	default:
		tb.Errorf("service %s: environment at line %d is neither a map nor a list", service, env.Line)
	}
	return names
}

// TestDeployFiles_mentionOnlyKnownVariables checks the Dockerfile and the
// Compose env example for misspelt variables.
func TestDeployFiles_mentionOnlyKnownVariables(t *testing.T) {
	for _, path := range []string{dockerfile, postgresEnvExample} {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		checkMentions(t, path, raw)
	}
}

// checkMentions fails for every WEMESSE_* name in raw that the server does
// not read.
func checkMentions(tb testing.TB, path string, raw []byte) {
	tb.Helper()
	for i, line := range bytes.Split(raw, []byte("\n")) {
		for _, v := range anyVariable.FindAllString(string(line), -1) {
			if !slices.Contains(config.Variables, v) {
				tb.Errorf("%s:%d mentions %s, which the server does not read (see config.Variables)", path, i+1, v)
			}
		}
	}
}

// assignment matches a documented variable in the env example: NAME=value,
// commented out or not.
var assignment = regexp.MustCompile(`^#?(WEMESSE_[A-Z0-9_]+)=(.*)$`)

// TestEnvExample_documentsEveryVariable checks configs/wemesse.env.example
// against config.Variables both ways, and that each value it shows is the
// default: setting it changes nothing.
func TestEnvExample_documentsEveryVariable(t *testing.T) {
	raw, err := os.ReadFile(envExample)
	if err != nil {
		t.Fatal(err)
	}
	checkMentions(t, envExample, raw)

	documented := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for n := 1; sc.Scan(); n++ {
		m := assignment.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		if _, dup := documented[m[1]]; dup {
			t.Errorf("%s:%d documents %s a second time", envExample, n, m[1])
		}
		documented[m[1]] = m[2]
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, v := range config.Variables {
		if _, ok := documented[v]; !ok {
			t.Errorf("%s does not document %s (want a line %s=<default> or #%s=<default>)", envExample, v, v, v)
		}
	}

	defaults, err := config.Load(envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	for name, value := range documented {
		if value == "" {
			continue // unset or computed; the comment says which
		}
		got, err := config.Load(envOf(map[string]string{name: value}))
		if err != nil {
			t.Errorf("%s shows %s=%s, which Load rejects: %v", envExample, name, value, err)
			continue
		}
		if !reflect.DeepEqual(got, defaults) {
			t.Errorf("%s shows %s=%s, which is not the default:\ngot  %+v\nwant %+v", envExample, name, value, got, defaults)
		}
	}
}

// TestCompose_scaleProfile checks what can be checked without a Docker
// engine of the "scale" profile: two or more server replicas on the shared
// PostgreSQL and object store, each with a health check, a reverse proxy
// whose nginx configuration names every replica and streams uploads, MinIO
// with a health check, and dependencies that point at existing services.
func TestCompose_scaleProfile(t *testing.T) {
	raw, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	type service struct {
		Profiles    []string             `yaml:"profiles"`
		Build       string               `yaml:"build"`
		Image       string               `yaml:"image"`
		Environment map[string]string    `yaml:"environment"`
		DependsOn   map[string]yaml.Node `yaml:"depends_on"`
		Healthcheck *struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
		Volumes []string `yaml:"volumes"`
		Ports   []string `yaml:"ports"`
	}
	var compose struct {
		Services map[string]service `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatal(err)
	}
	var replicas []string
	var proxy, minio string
	for name, svc := range compose.Services {
		for dep := range svc.DependsOn {
			if _, ok := compose.Services[dep]; !ok {
				t.Errorf("%s depends on %s, which is not a service", name, dep)
			}
		}
		if !slices.Contains(svc.Profiles, "scale") {
			continue
		}
		switch {
		case svc.Build == ".":
			replicas = append(replicas, name)
			for _, v := range []string{"WEMESSE_DATABASE_URL", "WEMESSE_STORAGE_URL", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "WEMESSE_PUBLIC_URL"} {
				if svc.Environment[v] == "" {
					t.Errorf("replica %s does not set %s", name, v)
				}
			}
			if !strings.HasPrefix(svc.Environment["WEMESSE_DATABASE_URL"], "postgres://") || !strings.HasPrefix(svc.Environment["WEMESSE_STORAGE_URL"], "s3://") {
				t.Errorf("replica %s must use PostgreSQL and object storage", name)
			}
			if _, ok := svc.DependsOn["postgres"]; !ok {
				t.Errorf("replica %s does not wait for postgres", name)
			}
		case strings.HasPrefix(svc.Image, "nginx"):
			proxy = name
			if len(svc.Ports) == 0 {
				t.Errorf("proxy %s publishes no port", name)
			}
		case strings.HasPrefix(svc.Image, "minio/minio"):
			minio = name
		}
		if svc.Healthcheck == nil && svc.Image != "" && !strings.HasPrefix(svc.Image, "minio/mc") {
			t.Errorf("scale service %s has no health check", name)
		}
	}
	if len(replicas) < 2 || proxy == "" || minio == "" {
		t.Fatalf("scale profile: replicas %v, proxy %q, object store %q; want two or more replicas, a proxy and MinIO", replicas, proxy, minio)
	}
	conf, err := os.ReadFile(filepath.Join("..", "..", "configs", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(compose.Services[proxy].Volumes, func(v string) bool { return strings.HasPrefix(v, "./configs/nginx.conf:") }) {
		t.Errorf("proxy %s does not mount configs/nginx.conf", proxy)
	}
	for _, r := range replicas {
		if !strings.Contains(string(conf), "server "+r+":9000") {
			t.Errorf("configs/nginx.conf does not route to %s", r)
		}
	}
	for _, want := range []string{"proxy_request_buffering off", "client_max_body_size"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("configs/nginx.conf lacks %s", want)
		}
	}
	if strings.Contains(string(conf), "non_idempotent") {
		t.Error("configs/nginx.conf would replay uploads and device reports on another replica")
	}
}
