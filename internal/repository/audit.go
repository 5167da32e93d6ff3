package repository

import (
	"context"
	"time"

	"gorm.io/gorm"

	"github.com/wemesse/server/internal/model"
)

// auditRow is a row of audit: one change, written in the change's own
// transaction.
type auditRow struct {
	ID        int64     `gorm:"column:id;primaryKey"`
	At        time.Time `gorm:"column:at;not null"`
	Actor     string    `gorm:"column:actor;type:text;not null"`
	Action    string    `gorm:"column:action;type:text;not null"`
	ReleaseID *int64    `gorm:"column:release_id"`
	Detail    string    `gorm:"column:detail;type:text;not null"`
}

func (auditRow) TableName() string { return "audit" }

// record writes c to the audit trail inside tx, the transaction of the
// change, so that the row commits exactly when the change does.
func record(tx *gorm.DB, c model.Change, releaseID int64, detail string) error {
	row := auditRow{At: time.Now().UTC(), Actor: c.Actor, Action: c.Action, Detail: detail}
	if releaseID != 0 {
		row.ReleaseID = &releaseID
	}
	return tx.Create(&row).Error
}

// Audit reads the audit trail.
type Audit struct{ db *gorm.DB }

// NewAudit returns an Audit on db.
func NewAudit(db *gorm.DB) *Audit { return &Audit{db: db} }

// List returns the rows after page.After, oldest first, at most page.Limit
// of them (0: all).
func (a *Audit) List(ctx context.Context, page model.Page) ([]model.AuditEntry, error) {
	q := a.db.WithContext(ctx).Where("id > ?", page.After).Order("id")
	if page.Limit > 0 {
		q = q.Limit(page.Limit)
	}
	var rows []auditRow
	if err := q.Find(&rows).Error; err != nil {
		return nil, translate(err, "audit trail")
	}
	return toAuditEntries(rows), nil
}

// Search returns the rows f selects, newest first.
func (a *Audit) Search(ctx context.Context, f model.AuditFilter) ([]model.AuditEntry, error) {
	q := a.db.WithContext(ctx).Order("id DESC").Limit(f.Limit)
	if f.Before > 0 {
		q = q.Where("id < ?", f.Before)
	}
	if f.Actor != "" {
		q = q.Where("actor = ?", f.Actor)
	}
	if f.Action != "" {
		q = q.Where("action = ?", f.Action)
	}
	if f.ReleaseID != 0 {
		q = q.Where("release_id = ?", f.ReleaseID)
	}
	var rows []auditRow
	if err := q.Find(&rows).Error; err != nil {
		return nil, translate(err, "audit trail")
	}
	return toAuditEntries(rows), nil
}

// Uploaders returns who uploaded each of the releases ids that the trail
// knows the upload of.
func (a *Audit) Uploaders(ctx context.Context, ids []int64) (map[int64]string, error) {
	out := make(map[int64]string, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	var rows []auditRow
	err := a.db.WithContext(ctx).Select("release_id, actor").
		Where("action = ? AND release_id IN ?", model.ActionReleaseUpload, ids).Find(&rows).Error
	if err != nil {
		return nil, translate(err, "audit trail")
	}
	for _, r := range rows {
		if r.ReleaseID != nil {
			out[*r.ReleaseID] = r.Actor
		}
	}
	return out, nil
}

func toAuditEntries(rows []auditRow) []model.AuditEntry {
	out := make([]model.AuditEntry, len(rows))
	for i, r := range rows {
		out[i] = model.AuditEntry{ID: r.ID, At: r.At, Actor: r.Actor, Action: r.Action, Detail: r.Detail}
		if r.ReleaseID != nil {
			out[i].ReleaseID = *r.ReleaseID
		}
	}
	return out
}
