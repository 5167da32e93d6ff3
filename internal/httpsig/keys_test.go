package httpsig

import (
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

// TestThumbprint_RFC8037 checks the thumbprint against RFC 8037, appendix A.3.
func TestThumbprint_RFC8037(t *testing.T) {
	x, err := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := Thumbprint(ed25519.PublicKey(x)), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// TestContentDigest_RFC9530 checks the digest of {"hello": "world"} from
// RFC 9530, appendix B.1.
func TestContentDigest_RFC9530(t *testing.T) {
	got := ContentDigest([]byte(`{"hello": "world"}`))
	if want := "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// TestSign_Base checks the headers and the signature base against the
// shape of RFC 9421, section 2.5.
func TestSign_Base(t *testing.T) {
	pemKey, err := NewKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	key, err := ParseKeyPEM(pemKey)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(key, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	created := time.Unix(1618884473, 0)
	got := s.Sign(200, "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:", created)
	params := `("@status" "content-digest");created=1618884473;expires=1618970873;keyid="` + key.ID + `";alg="ed25519"`
	if want := "wemesse=" + params; got.SignatureInput != want {
		t.Errorf("Signature-Input: got %s, want %s", got.SignatureInput, want)
	}
	wantBase := "\"@status\": 200\n\"content-digest\": sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:\n\"@signature-params\": " + params
	if b := string(base(200, "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:", params)); b != wantBase {
		t.Errorf("base: got %q, want %q", b, wantBase)
	}
	raw := strings.TrimSuffix(strings.TrimPrefix(got.Signature, "wemesse=:"), ":")
	sig, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		t.Fatalf("Signature %q: %v", got.Signature, err)
	}
	if !ed25519.Verify(key.Public, []byte(wantBase), sig) {
		t.Error("the signature does not verify over the RFC 9421 signature base")
	}
}

func TestParseKeyPEM_PublicOnly(t *testing.T) {
	const pub = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n"
	k, err := ParseKeyPEM([]byte(pub))
	if err != nil {
		t.Fatal(err)
	}
	if k.Private != nil || len(k.Public) != ed25519.PublicKeySize {
		t.Errorf("got %+v, want a public-only Ed25519 key", k)
	}
	if _, err := NewSigner(k, time.Hour); err == nil {
		t.Error("NewSigner accepted a public key")
	}
}
