package repository

import (
	"context"
	"fmt"

	"gorm.io/gorm"

	"github.com/wemesse/server/internal/model"
)

// Releases stores releases in the apps table.
type Releases struct{ db *gorm.DB }

// NewReleases returns a Releases on db.
func NewReleases(db *gorm.DB) *Releases { return &Releases{db: db} }

// List returns every release ordered by id.
func (r *Releases) List(ctx context.Context) ([]model.Release, error) {
	var rows []appRow
	if err := r.db.WithContext(ctx).Order("id").Find(&rows).Error; err != nil {
		return nil, translate(err, "release list")
	}
	out := make([]model.Release, 0, len(rows))
	for _, row := range rows {
		rel, err := toRelease(row)
		if err != nil {
			return nil, err
		}
		out = append(out, rel)
	}
	return out, nil
}

// Create inserts rel and sets its ID. Inside the same transaction it calls
// publish, which puts the release's file in place; if publish fails, or the
// commit does, no row remains. While publish runs, the row's unique key is
// held, so no concurrent upload of the same version and ABI gets that far.
// It returns Conflict when the version and ABI already exist.
func (r *Releases) Create(ctx context.Context, rel *model.Release, uri string, publish func() error) error {
	row := appRow{
		TargetABI:   rel.TargetABI,
		AppChecksum: rel.MD5,
		AppName:     rel.Name,
		AppNotes:    rel.Notes,
		AppSize:     rel.SizeText,
		AppVersion:  rel.Version.String(),
		Skipped:     rel.Skipped,
		Uploads:     rel.Uploads,
		URI:         uri,
		SHA256:      rel.SHA256,
		SizeBytes:   rel.Size,
		FilePath:    rel.FilePath,
	}
	err := r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(&row).Error; err != nil {
			return translate(err, fmt.Sprintf("release %s", rel.Version))
		}
		return publish()
	})
	if err != nil {
		return err
	}
	rel.ID, rel.CreatedAt = row.ID, row.CreatedAt
	return nil
}

// toRelease converts a row. Legacy rows may hold versions this server would
// not accept; they are reported rather than silently dropped.
func toRelease(row appRow) (model.Release, error) {
	v, err := model.ParseVersion(row.AppVersion)
	if err != nil {
		return model.Release{}, fmt.Errorf("repository: release %d has unparsable version %q: %w", row.ID, row.AppVersion, err)
	}
	return model.Release{
		ID:        row.ID,
		Version:   v,
		TargetABI: row.TargetABI,
		Name:      row.AppName,
		Notes:     row.AppNotes,
		Size:      row.SizeBytes,
		SizeText:  row.AppSize,
		MD5:       row.AppChecksum,
		SHA256:    row.SHA256,
		Skipped:   row.Skipped,
		Uploads:   row.Uploads,
		FilePath:  row.FilePath,
		CreatedAt: row.CreatedAt,
	}, nil
}
