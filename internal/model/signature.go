package model

import "time"

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
	Role       string
	CreatedAt  time.Time
	LastUsedAt time.Time // zero when never used
}
