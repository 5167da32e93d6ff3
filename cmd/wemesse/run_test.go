package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wemesse/server/internal/dbtest"
)

// signature runs `wemesse signature args...` on env and returns stdout.
func signature(tb testing.TB, env map[string]string, args ...string) (string, error) {
	tb.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), append([]string{"signature"}, args...), func(k string) string { return env[k] }, &stdout, &stderr)
	return stdout.String(), err
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

func get(tb testing.TB, s *server, path, secret string) (int, []byte) {
	tb.Helper()
	req, _ := http.NewRequest("GET", s.base+path, nil)
	if secret != "" {
		req.Header.Set("signature", secret)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

var generatedSecret = regexp.MustCompile(`"signature":"([A-Za-z0-9_-]{43})"`)

// TestRun_bootstrapAndRestart starts on an empty database without
// WEMESSE_SIGNATURE: a secret is generated and printed once; it works; the
// data and the secret survive a restart, which prints nothing secret.
func TestRun_bootstrapAndRestart(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		dir := t.TempDir()
		env := map[string]string{"WEMESSE_DATABASE_URL": dsn, "WEMESSE_UPLOAD_DIR": dir}
		s := startServer(t, env)
		m := generatedSecret.FindStringSubmatch(s.log.String())
		if m == nil {
			t.Fatalf("no generated signature in the log:\n%s", s.log.String())
		}
		secret := m[1]
		if !strings.Contains(s.log.String(), "will not be shown again") {
			t.Error("the bootstrap log line does not say the secret will not be shown again")
		}
		uploadBuild(t, s, secret, "2264_00", "persisted build")
		s.stop(t)

		s = startServer(t, env)
		if strings.Contains(s.log.String(), secret) || generatedSecret.MatchString(s.log.String()) {
			t.Errorf("the second start printed a secret:\n%s", s.log.String())
		}
		code, body := get(t, s, "/api/v1/updates", secret)
		if code != 200 || !strings.Contains(string(body), `"Version":"2264_00"`) {
			t.Fatalf("after restart: %d %s", code, body)
		}
		if code, body := get(t, s, "/uploads/2264_00/wemesse.apk", ""); code != 200 || string(body) != "persisted build" {
			t.Errorf("download after restart: %d %q", code, body)
		}
		s.stop(t)
		if n := strings.Count(s.log.String(), secret); n != 0 {
			t.Errorf("the secret appears %d times in the second run's log", n)
		}
	})
}

// TestRun_configuredSignature checks WEMESSE_SIGNATURE is stored hashed,
// authenticates, and is never logged.
func TestRun_configuredSignature(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		const secret = "configured-secret-0123456789"
		s := startServer(t, map[string]string{"WEMESSE_DATABASE_URL": dsn, "WEMESSE_SIGNATURE": secret})
		if code, body := get(t, s, "/api/v1/users", secret); code != 200 {
			t.Fatalf("configured secret: %d %s", code, body)
		}
		if code, _ := get(t, s, "/api/v1/users", "not-it"); code != 401 {
			t.Errorf("wrong secret: %d, want 401", code)
		}
		s.stop(t)
		if strings.Contains(s.log.String(), secret) || generatedSecret.MatchString(s.log.String()) {
			t.Errorf("a secret was logged:\n%s", s.log.String())
		}
		out, err := signature(t, s.env, "list")
		if err != nil || strings.Contains(out, secret) || strings.Contains(out, "argon2") {
			t.Errorf("signature list = %q, %v; want no secret or hash", out, err)
		}
	})
}

// TestRun_signatureCommands drives create, list and revoke.
func TestRun_signatureCommands(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		env := map[string]string{
			"WEMESSE_DATABASE_URL": dsn, "WEMESSE_UPLOAD_DIR": t.TempDir(), "WEMESSE_ARGON2_MEMORY": "1024",
			"WEMESSE_AUTH_REFRESH": "200ms",
		}
		out, err := signature(t, env, "create")
		if err != nil {
			t.Fatal(err)
		}
		admin := lastLine(out)
		out, err = signature(t, env, "create", "--role", "client")
		if err != nil {
			t.Fatal(err)
		}
		client := lastLine(out)
		if len(admin) != 43 || len(client) != 43 || admin == client {
			t.Fatalf("secrets %q and %q, want two different 43-character secrets", admin, client)
		}
		if _, err := signature(t, env, "create", "--role", "root"); err == nil {
			t.Error("create --role root succeeded")
		}

		s := startServer(t, env)
		if code, _ := get(t, s, "/api/v1/users", admin); code != 200 {
			t.Errorf("admin secret from the CLI: %d, want 200", code)
		}
		if code, _ := get(t, s, "/api/v1/users", client); code != 403 {
			t.Errorf("client secret on the user list: %d, want 403", code)
		}

		out, err = signature(t, env, "list")
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[1], "admin") || !strings.Contains(lines[2], "client") {
			t.Errorf("signature list:\n%s", out)
		}
		if strings.Contains(out, admin) || strings.Contains(out, client) || strings.Contains(out, "$argon2") {
			t.Errorf("signature list shows a secret or hash:\n%s", out)
		}

		if _, err := signature(t, env, "revoke", "1"); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			code, _ := get(t, s, "/api/v1/users", admin)
			if code == 401 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("revoked secret still gets %d after 5s", code)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := signature(t, env, "revoke", "1"); err == nil {
			t.Error("revoking a revoked signature succeeded")
		}
		if _, err := signature(t, env, "revoke", "x"); err == nil {
			t.Error("revoke x succeeded")
		}
		s.stop(t)
		for _, secret := range []string{admin, client} {
			if strings.Contains(s.log.String(), secret) {
				t.Error("a secret appears in the server log")
			}
		}
	})
}

// TestRun_TLS serves HTTPS with a generated self-signed certificate.
func TestRun_TLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	s := startServer(t, map[string]string{"WEMESSE_TLS_CERT": certFile, "WEMESSE_TLS_KEY": keyFile}, client)
	code, body := get(t, s, "/healthz", "")
	if code != 200 || !json.Valid(body) {
		t.Fatalf("https /healthz: %d %s", code, body)
	}
	if resp, err := http.Get(strings.Replace(s.base, "https://", "http://", 1) + "/healthz"); err == nil {
		if resp.StatusCode == 200 {
			t.Error("plain HTTP was served on the TLS port")
		}
		resp.Body.Close()
	}
}

// TestRun_TLSRefusesCBC: on TLS 1.2 only AEAD suites are served.
func TestRun_TLSRefusesCBC(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	s := startServer(t, map[string]string{"WEMESSE_TLS_CERT": certFile, "WEMESSE_TLS_KEY": keyFile}, client)
	addr := strings.TrimPrefix(s.base, "https://")
	for _, tt := range []struct {
		name   string
		suites []uint16
		ok     bool
	}{
		{"CBC", []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
			tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA,
		}, false},
		{"GCM", []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, true},
	} {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12, CipherSuites: tt.suites})
		if err == nil {
			conn.Close()
		}
		if (err == nil) != tt.ok {
			t.Errorf("TLS 1.2 with only %s suites: err %v, want success %v", tt.name, err, tt.ok)
		}
	}
}

func TestRun_badConfig(t *testing.T) {
	for _, env := range []map[string]string{
		{"WEMESSE_MAX_UPLOAD_BYTES": "lots"},
		{"WEMESSE_TLS_CERT": "cert.pem"},
		{"WEMESSE_PUBLIC_URL": "not a url"},
		{"WEMESSE_ANSWER_TTL": "1m"},
		{"WEMESSE_ANSWER_KEY_FILE": filepath.Join(t.TempDir(), "missing.pem")},
		{"WEMESSE_ANSWER_KEY_FILE": publicKeyFile(t)},
	} {
		err := run(context.Background(), nil, func(k string) string { return env[k] }, io.Discard, io.Discard)
		if err == nil {
			t.Errorf("run with %v succeeded", env)
		}
	}
	if err := run(context.Background(), []string{"frobnicate"}, func(string) string { return "" }, io.Discard, io.Discard); err == nil {
		t.Error("an unknown command succeeded")
	}
}

// publicKeyFile writes an Ed25519 public key, which cannot sign.
func publicKeyFile(tb testing.TB) string {
	tb.Helper()
	_, k := answerKeyFile(tb, "private.pem")
	der, err := x509.MarshalPKIXPublicKey(k.Public)
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), "public.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(tb testing.TB) (certFile, keyFile string, pool *x509.CertPool) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "wemesse test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestRun_maxConnections: past WEMESSE_MAX_CONNECTIONS open connections, a
// new one is closed unanswered; once one closes, the next is served.
func TestRun_maxConnections(t *testing.T) {
	const max = 3
	s := startServer(t, map[string]string{"WEMESSE_MAX_CONNECTIONS": fmt.Sprint(max)})
	s.client.CloseIdleConnections() // startServer's own
	addr := strings.TrimPrefix(s.base, "http://")
	// healthz opens a connection and reports whether it was answered; the
	// connection stays open (keep-alive) unless the server closed it.
	healthz := func() (net.Conn, bool) {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return conn, false
		}
		resp.Body.Close()
		return conn, resp.StatusCode == http.StatusOK
	}
	// The server may not have seen startServer's connection close yet.
	var open []net.Conn
	for start := time.Now(); len(open) < max; {
		conn, ok := healthz()
		if ok {
			open = append(open, conn)
			continue
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("only %d connections of %d were served", len(open), max)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, ok := healthz(); ok {
		t.Fatalf("connection %d was served with WEMESSE_MAX_CONNECTIONS=%d", max+1, max)
	}
	open[0].Close()
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		conn, ok := healthz()
		if ok {
			break
		}
		conn.Close()
		if time.Since(start) > 5*time.Second {
			t.Fatal("no connection served after one of the open ones closed")
		}
	}
}
