package model

import (
	"crypto/sha256"
	"encoding/hex"
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
	CreatedAt  time.Time
	LastUsedAt time.Time // zero when never used
}

// HintOf returns the first two bytes of SHA-256(secret) in hex. Stored with
// a signature, it lets a check run Argon2id only against rows whose hint
// matches, so a wrong secret almost never costs a hash. Sixteen bits of a
// fast hash say nothing useful about a secret that Argon2id protects.
func HintOf(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:2])
}
