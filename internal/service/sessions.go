package service

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/wemesse/server/internal/model"
)

// SessionStore keeps console sessions.
type SessionStore interface {
	// Create stores a session and returns it with its id.
	Create(ctx context.Context, s model.Session) (model.Session, error)
	// Get returns the session with tokenHash; NotFound when absent.
	Get(ctx context.Context, tokenHash string) (model.Session, error)
	// Touch records the session's use at t.
	Touch(ctx context.Context, id int64, t time.Time) error
	// Delete removes the session with tokenHash, if any.
	Delete(ctx context.Context, tokenHash string) error
	// DeleteExpired removes sessions last seen before idleBefore or
	// created before createdBefore.
	DeleteExpired(ctx context.Context, idleBefore, createdBefore time.Time) error
}

// SessionsConfig bounds console sessions.
type SessionsConfig struct {
	Idle time.Duration // a session unused this long ends
	Max  time.Duration // a session ends this long after login
}

// Sessions logs admins in to the console. A session lives in the
// database, so every server of a cluster accepts it; the browser holds a
// random token, the database only its SHA-256.
type Sessions struct {
	store SessionStore
	sigs  *Signatures
	cfg   SessionsConfig
	now   func() time.Time
	log   *slog.Logger
}

// NewSessions returns a Sessions. now is the clock, time.Now in production.
func NewSessions(store SessionStore, sigs *Signatures, cfg SessionsConfig, now func() time.Time, log *slog.Logger) *Sessions {
	return &Sessions{store: store, sigs: sigs, cfg: cfg, now: now, log: log}
}

var errNoSession = model.Errorf(model.Unauthorized, "Log in to use the console.")

// Login checks secret and starts a session for it, returning the token
// for the browser. Unauthorized for a wrong secret, Forbidden for one
// without the admin role, Unavailable when hashing is saturated.
func (s *Sessions) Login(ctx context.Context, secret string) (token string, sig model.Signature, err error) {
	sig, err = s.sigs.Authenticate(ctx, secret)
	if err != nil {
		return "", model.Signature{}, err
	}
	if sig.Role != model.RoleAdmin {
		return "", model.Signature{}, model.Errorf(model.Forbidden, "Only an admin secret may log in to the console.")
	}
	token = rand.Text()
	now := s.now()
	if _, err := s.store.Create(ctx, model.Session{TokenHash: tokenHash(token), SignatureID: sig.ID, CreatedAt: now, LastSeenAt: now}); err != nil {
		return "", model.Signature{}, err
	}
	return token, sig, nil
}

// touchEvery is how stale a session's last use may be in the database:
// writing it on every page would make each page a write.
const touchEvery = time.Minute

// Check returns the signature whose session token is; Unauthorized when
// there is no such session, it has been idle for Idle or lived Max, or its
// signature was revoked or has expired.
func (s *Sessions) Check(ctx context.Context, token string) (model.Signature, error) {
	if token == "" {
		return model.Signature{}, errNoSession
	}
	sess, err := s.store.Get(ctx, tokenHash(token))
	if model.ErrorCode(err) == model.NotFound {
		return model.Signature{}, errNoSession
	}
	if err != nil {
		return model.Signature{}, err
	}
	now := s.now()
	sig, ok := s.sigs.byID(sess.SignatureID)
	expired := !sig.ExpiresAt.IsZero() && !now.Before(sig.ExpiresAt)
	if !ok || sig.Role != model.RoleAdmin || expired || now.Sub(sess.LastSeenAt) >= s.cfg.Idle || now.Sub(sess.CreatedAt) >= s.cfg.Max {
		if err := s.store.Delete(ctx, sess.TokenHash); err != nil {
			s.log.Warn("delete an ended console session", "err", err)
		}
		return model.Signature{}, errNoSession
	}
	if now.Sub(sess.LastSeenAt) >= min(touchEvery, s.cfg.Idle/10) {
		if err := s.store.Touch(ctx, sess.ID, now); err != nil {
			return model.Signature{}, err
		}
	}
	return sig, nil
}

// Logout ends the session of token, if any.
func (s *Sessions) Logout(ctx context.Context, token string) error {
	if token == "" {
		return nil
	}
	return s.store.Delete(ctx, tokenHash(token))
}

// Run deletes ended sessions every Idle until ctx ends.
func (s *Sessions) Run(ctx context.Context) {
	reloadEvery(ctx, s.cfg.Idle, func(ctx context.Context) error {
		now := s.now()
		return s.store.DeleteExpired(ctx, now.Add(-s.cfg.Idle), now.Add(-s.cfg.Max))
	}, s.log.With("what", "console sessions"))
}

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
