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
	out := make([]model.AuditEntry, len(rows))
	for i, r := range rows {
		out[i] = model.AuditEntry{ID: r.ID, At: r.At, Actor: r.Actor, Action: r.Action, Detail: r.Detail}
		if r.ReleaseID != nil {
			out[i].ReleaseID = *r.ReleaseID
		}
	}
	return out, nil
}
