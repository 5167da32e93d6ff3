// Package httpsig signs the update check's answers and verifies them: HTTP
// Message Signatures (RFC 9421) with Ed25519 over the status and the
// Content-Digest (RFC 9530), and the public keys as a JWK Set (RFC 7517,
// RFC 8037) whose key ids are RFC 7638 thumbprints.
package httpsig

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// Key is an Ed25519 key; Private is nil for a key known only by its public
// half.
type Key struct {
	ID      string // RFC 7638 thumbprint of the public key
	Public  ed25519.PublicKey
	Private ed25519.PrivateKey
}

// NewKeyPEM generates an Ed25519 private key as PKCS#8 PEM.
func NewKeyPEM() ([]byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("httpsig: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("httpsig: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKeyPEM reads an Ed25519 key from PEM: a PKCS#8 private key or a
// PKIX public key.
func ParseKeyPEM(data []byte) (Key, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return Key{}, errors.New("no PEM block found")
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return Key{}, err
		}
		priv, ok := k.(ed25519.PrivateKey)
		if !ok {
			return Key{}, fmt.Errorf("the private key is a %T, not Ed25519", k)
		}
		pub := priv.Public().(ed25519.PublicKey)
		return Key{ID: Thumbprint(pub), Public: pub, Private: priv}, nil
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return Key{}, err
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return Key{}, fmt.Errorf("the public key is a %T, not Ed25519", k)
		}
		return Key{ID: Thumbprint(pub), Public: pub}, nil
	}
	return Key{}, fmt.Errorf("PEM block %q is neither PRIVATE KEY nor PUBLIC KEY", block.Type)
}

// LoadKeyFile reads a key with ParseKeyPEM from a file.
func LoadKeyFile(path string) (Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Key{}, fmt.Errorf("httpsig: %w", err)
	}
	k, err := ParseKeyPEM(data)
	if err != nil {
		return Key{}, fmt.Errorf("httpsig: %s: %w", path, err)
	}
	return k, nil
}

// jwk is one Ed25519 key in a JWK Set (RFC 8037).
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	Kid string `json:"kid"`
	X   string `json:"x"`
}

// Thumbprint is the RFC 7638 thumbprint of an Ed25519 public key: the
// base64url SHA-256 of its required JWK members in lexicographic order.
func Thumbprint(pub ed25519.PublicKey) string {
	canonical := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// JWKSet encodes the public halves of keys, in order, as a JWK Set.
func JWKSet(keys []Key) ([]byte, error) {
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: make([]jwk, len(keys))}
	for i, k := range keys {
		set.Keys[i] = jwk{Kty: "OKP", Crv: "Ed25519", Kid: k.ID, X: base64.RawURLEncoding.EncodeToString(k.Public)}
	}
	return json.Marshal(set)
}

// KeySet is the public keys a verifier trusts, by key id.
type KeySet map[string]ed25519.PublicKey

// ParseJWKSet reads a JWK Set, keeping its Ed25519 keys. A key whose kid
// is not its thumbprint is an error: the kid is what signatures name.
func ParseJWKSet(data []byte) (KeySet, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("httpsig: JWK Set: %w", err)
	}
	out := KeySet{}
	for _, k := range set.Keys {
		if k.Kty != "OKP" || k.Crv != "Ed25519" {
			continue
		}
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("httpsig: JWK %q: x is not an Ed25519 public key", k.Kid)
		}
		if Thumbprint(x) != k.Kid {
			return nil, fmt.Errorf("httpsig: JWK %q: kid is not the key's thumbprint", k.Kid)
		}
		out[k.Kid] = x
	}
	return out, nil
}
