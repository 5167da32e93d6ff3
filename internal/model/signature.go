package model

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strconv"
	"time"
)

// Roles a signature may hold.
const (
	RoleAdmin  = "admin"  // may call every guarded endpoint
	RoleClient = "client" // ships inside the app: may only report device sessions
)

// Signature is a stored credential: the Argon2id hash of a secret, never the
// secret itself.
type Signature struct {
	ID         int64
	Hash       string
	Hint       string // HintOf the secret: picks the rows worth hashing against
	Role       string
	Name       string // unique; empty for secrets made before names existed
	CreatedAt  time.Time
	ExpiresAt  time.Time // zero: never
	LastUsedAt time.Time // zero when never used
}

// Label is how the signature is named to people: its name, or #<id> when it
// has none.
func (s Signature) Label() string {
	if s.Name != "" {
		return s.Name
	}
	return "#" + strconv.FormatInt(s.ID, 10)
}

// Expired reports whether the signature has expired at now.
func (s Signature) Expired(now time.Time) bool {
	return !s.ExpiresAt.IsZero() && !now.Before(s.ExpiresAt)
}

// signatureName is what a name may look like: it never starts with #, so
// it cannot pass for an unnamed signature's label.
var signatureName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$`)

// ValidateSignatureName checks a new signature's name. Invalid unless it is
// 1 to 64 letters, digits and . _ @ + -, starting with a letter or digit,
// and not one of the actors the audit trail names itself (cli, system).
func ValidateSignatureName(name string) error {
	if !signatureName.MatchString(name) {
		return Errorf(Invalid, "A signature name is 1 to 64 letters, digits and . _ @ + -, starting with a letter or digit.")
	}
	if name == ActorCLI || name == ActorSystem {
		return Errorf(Invalid, "The signature name %q is reserved.", name)
	}
	return nil
}

// HintOf returns the first two bytes of SHA-256(secret) in hex. Stored with
// a signature, it lets a check run Argon2id only against rows whose hint
// matches, so a wrong secret almost never costs a hash. Sixteen bits of a
// fast hash say nothing useful about a secret that Argon2id protects.
func HintOf(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:2])
}
