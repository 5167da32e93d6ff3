package model

import "time"

// Session is a console login: the SHA-256 of its token (the cookie holds
// the token itself) and the signature that logged in.
type Session struct {
	ID          int64
	TokenHash   string // hex SHA-256 of the token
	SignatureID int64
	CreatedAt   time.Time
	LastSeenAt  time.Time
}
