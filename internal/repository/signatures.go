package repository

import (
	"context"
	"errors"
	"time"

	"gorm.io/gorm"

	"github.com/wemesse/server/internal/model"
)

// Signatures stores credentials in the middlewares table.
type Signatures struct{ db *gorm.DB }

// NewSignatures returns a Signatures on db.
func NewSignatures(db *gorm.DB) *Signatures { return &Signatures{db: db} }

// List returns every signature ordered by id.
func (s *Signatures) List(ctx context.Context) ([]model.Signature, error) {
	var rows []signatureRow
	if err := s.db.WithContext(ctx).Order("id").Find(&rows).Error; err != nil {
		return nil, translate(err, "signature list")
	}
	out := make([]model.Signature, len(rows))
	for i, r := range rows {
		out[i] = toSignature(r)
	}
	return out, nil
}

// Create stores sig's hash, hint, role, name and expiry as a new signature,
// recording c. Conflict when its name is taken.
func (s *Signatures) Create(ctx context.Context, sig model.Signature, c model.Change) (model.Signature, error) {
	row := signatureRow{Signature: sig.Hash, Hint: sig.Hint, Role: sig.Role}
	if sig.Name != "" {
		row.Name = &sig.Name
	}
	if !sig.ExpiresAt.IsZero() {
		row.ExpiresAt = &sig.ExpiresAt
	}
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(&row).Error; err != nil {
			return err
		}
		if err := record(tx, c, 0, model.DescribeSignature(toSignature(row))); err != nil {
			return err
		}
		return announce(tx, TopicSignatures)
	})
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return model.Signature{}, model.Errorf(model.Conflict, "A signature named %q exists; choose another name.", sig.Name)
	}
	if err != nil {
		return model.Signature{}, translate(err, "signature")
	}
	return toSignature(row), nil
}

// CreateIfEmpty stores the signature that make returns only when the table
// holds none, atomically even with several servers starting at once, and
// records c. created reports whether it stored one.
func (s *Signatures) CreateIfEmpty(ctx context.Context, make func() (model.Signature, error), c model.Change) (created bool, err error) {
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if tx.Dialector.Name() == "postgres" {
			if err := tx.Exec("LOCK TABLE middlewares IN SHARE ROW EXCLUSIVE MODE").Error; err != nil {
				return err
			}
		}
		var n int64
		if err := tx.Model(&signatureRow{}).Count(&n).Error; err != nil || n > 0 {
			return err
		}
		sig, err := make()
		if err != nil {
			return err
		}
		created = true
		row := signatureRow{Signature: sig.Hash, Hint: sig.Hint, Role: sig.Role}
		if err := tx.Create(&row).Error; err != nil {
			return err
		}
		return record(tx, c, 0, model.DescribeSignature(toSignature(row)))
	})
	if err != nil {
		return false, translate(err, "bootstrap signature")
	}
	return created, nil
}

// Rehash replaces the stored hash and hint of signature id.
func (s *Signatures) Rehash(ctx context.Context, id int64, hash, hint string) error {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Model(&signatureRow{}).Where("id = ?", id).Updates(map[string]any{"signature": hash, "hint": hint}).Error; err != nil {
			return err
		}
		return announce(tx, TopicSignatures)
	})
	return translate(err, "signature")
}

// Touch records that signature id was used at t.
func (s *Signatures) Touch(ctx context.Context, id int64, t time.Time) error {
	return translate(s.db.WithContext(ctx).Model(&signatureRow{}).Where("id = ?", id).Update("last_used_at", t).Error, "signature")
}

// Delete removes signature id, recording c. It returns NotFound when there
// is none.
func (s *Signatures) Delete(ctx context.Context, id int64, c model.Change) error {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var row signatureRow
		if err := tx.Take(&row, id).Error; errors.Is(err, gorm.ErrRecordNotFound) {
			return model.Errorf(model.NotFound, "Signature %d does not exist.", id)
		} else if err != nil {
			return err
		}
		res := tx.Delete(&signatureRow{}, id)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return model.Errorf(model.NotFound, "Signature %d does not exist.", id)
		}
		if err := record(tx, c, 0, model.DescribeSignature(toSignature(row))); err != nil {
			return err
		}
		return announce(tx, TopicSignatures)
	})
	return translate(err, "signature")
}

func toSignature(r signatureRow) model.Signature {
	sig := model.Signature{ID: r.ID, Hash: r.Signature, Hint: r.Hint, Role: r.Role, CreatedAt: r.CreatedAt}
	if r.LastUsedAt != nil {
		sig.LastUsedAt = *r.LastUsedAt
	}
	if r.Name != nil {
		sig.Name = *r.Name
	}
	if r.ExpiresAt != nil {
		sig.ExpiresAt = *r.ExpiresAt
	}
	return sig
}
