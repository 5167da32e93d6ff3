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
		Rollout:     int64(rel.Rollout),
	}
	err := r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(&row).Error; err != nil {
			return translate(err, fmt.Sprintf("release %s", rel.Version))
		}
		if err := announce(tx, TopicReleases); err != nil {
			return err
		}
		return publish()
	})
	if err != nil {
		return err
	}
	rel.ID, rel.CreatedAt = row.ID, row.CreatedAt
	return nil
}

// Get returns release id. NotFound when absent.
func (r *Releases) Get(ctx context.Context, id int64) (model.Release, error) {
	var row appRow
	if err := r.db.WithContext(ctx).Take(&row, id).Error; err != nil {
		return model.Release{}, translate(err, fmt.Sprintf("release %d", id))
	}
	return toRelease(row)
}

// Update applies the set fields of patch to release id and returns it.
// NotFound when absent.
func (r *Releases) Update(ctx context.Context, id int64, patch model.ReleasePatch) (model.Release, error) {
	fields := map[string]any{}
	if patch.Notes != nil {
		fields["app_notes"] = *patch.Notes
	}
	if patch.Skipped != nil {
		fields["skipped"] = *patch.Skipped
	}
	if patch.Rollout != nil {
		fields["rollout"] = *patch.Rollout
	}
	if patch.Yanked != nil {
		fields["yanked"] = *patch.Yanked
	}
	var row appRow
	err := r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if len(fields) > 0 {
			res := tx.Model(&appRow{}).Where("id = ?", id).Updates(fields)
			if res.Error != nil {
				return res.Error
			}
			if err := announce(tx, TopicReleases); err != nil {
				return err
			}
		}
		return tx.Take(&row, id).Error
	})
	if err != nil {
		return model.Release{}, translate(err, fmt.Sprintf("release %d", id))
	}
	return toRelease(row)
}

// Delete removes release id and returns what it was. NotFound when absent.
func (r *Releases) Delete(ctx context.Context, id int64) (model.Release, error) {
	var row appRow
	err := r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Take(&row, id).Error; err != nil {
			return err
		}
		if err := announce(tx, TopicReleases); err != nil {
			return err
		}
		return tx.Delete(&appRow{}, id).Error
	})
	if err != nil {
		return model.Release{}, translate(err, fmt.Sprintf("release %d", id))
	}
	return toRelease(row)
}

// CountDownload adds one to the downloads of the release stored at key. A
// key without a release (a file left in place) counts nothing.
func (r *Releases) CountDownload(ctx context.Context, key string) error {
	err := r.db.WithContext(ctx).Exec("UPDATE apps SET downloads = COALESCE(downloads, 0) + 1 WHERE file_path = ?", key).Error
	return translate(err, "download count")
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
		Downloads: row.Downloads,
		Rollout:   int(row.Rollout),
		Yanked:    row.Yanked,
		FilePath:  row.FilePath,
		CreatedAt: row.CreatedAt,
	}, nil
}
