package repository

import (
	"context"
	"time"

	"gorm.io/gorm"

	"github.com/wemesse/server/internal/model"
)

// Sessions stores console sessions in console_sessions.
type Sessions struct{ db *gorm.DB }

// NewSessions returns a Sessions on db.
func NewSessions(db *gorm.DB) *Sessions { return &Sessions{db: db} }

// Create stores s and returns it with its id.
func (r *Sessions) Create(ctx context.Context, s model.Session) (model.Session, error) {
	row := sessionRow{TokenHash: s.TokenHash, SignatureID: s.SignatureID, CreatedAt: s.CreatedAt, LastSeenAt: s.LastSeenAt}
	if err := r.db.WithContext(ctx).Create(&row).Error; err != nil {
		return model.Session{}, translate(err, "session")
	}
	s.ID = row.ID
	return s, nil
}

// Get returns the session whose token hashes to tokenHash; NotFound when
// there is none.
func (r *Sessions) Get(ctx context.Context, tokenHash string) (model.Session, error) {
	var row sessionRow
	if err := r.db.WithContext(ctx).Where("token_hash = ?", tokenHash).Take(&row).Error; err != nil {
		return model.Session{}, translate(err, "session")
	}
	return model.Session{ID: row.ID, TokenHash: row.TokenHash, SignatureID: row.SignatureID, CreatedAt: row.CreatedAt, LastSeenAt: row.LastSeenAt}, nil
}

// Touch records that session id was used at t.
func (r *Sessions) Touch(ctx context.Context, id int64, t time.Time) error {
	return translate(r.db.WithContext(ctx).Model(&sessionRow{}).Where("id = ?", id).Update("last_seen_at", t).Error, "session")
}

// Delete removes the session whose token hashes to tokenHash, if any.
func (r *Sessions) Delete(ctx context.Context, tokenHash string) error {
	return translate(r.db.WithContext(ctx).Where("token_hash = ?", tokenHash).Delete(&sessionRow{}).Error, "session")
}

// DeleteExpired removes the sessions last seen before idleBefore or
// created before createdBefore.
func (r *Sessions) DeleteExpired(ctx context.Context, idleBefore, createdBefore time.Time) error {
	err := r.db.WithContext(ctx).Where("last_seen_at < ? OR created_at < ?", idleBefore, createdBefore).Delete(&sessionRow{}).Error
	return translate(err, "expired sessions")
}
