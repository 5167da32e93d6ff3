package repository

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/wemesse/server/internal/model"
)

// Releases stores releases in the apps table.
type Releases struct{ db *gorm.DB }

// NewReleases returns a Releases on db.
func NewReleases(db *gorm.DB) *Releases { return &Releases{db: db} }

// List returns every release ordered by id, each with its schedule.
func (r *Releases) List(ctx context.Context) ([]model.Release, error) {
	return listReleases(r.db.WithContext(ctx))
}

func listReleases(db *gorm.DB) ([]model.Release, error) {
	var rows []appRow
	if err := db.Order("id").Find(&rows).Error; err != nil {
		return nil, translate(err, "release list")
	}
	var steps []stepRow
	if err := db.Order("release_id, due_at, id").Find(&steps).Error; err != nil {
		return nil, translate(err, "release steps")
	}
	byRelease := map[int64][]stepRow{}
	for _, s := range steps {
		byRelease[s.ReleaseID] = append(byRelease[s.ReleaseID], s)
	}
	out := make([]model.Release, 0, len(rows))
	for _, row := range rows {
		rel, err := toRelease(row, byRelease[row.ID])
		if err != nil {
			return nil, err
		}
		out = append(out, rel)
	}
	return out, nil
}

// uploadLock is the PostgreSQL advisory lock key that serializes uploads'
// admission checks with their inserts.
const uploadLock = 0x77656d66

// Create inserts rel and sets its ID. Inside one transaction it first calls
// admit (when not nil) with every stored release, with uploads serialized
// (an advisory lock on PostgreSQL, an immediate transaction on SQLite), so
// that what admit checks still holds at the commit; then it inserts the row
// and calls publish, which puts the release's file in place. If admit,
// publish or the commit fails, no row remains. While publish runs, the
// row's unique key is held, so no concurrent upload of the same version and
// ABI gets that far. It records c in the audit trail. It returns admit's
// error, or Conflict when the version and ABI already exist.
func (r *Releases) Create(ctx context.Context, rel *model.Release, uri string, admit func(existing []model.Release) error, publish func() error, c model.Change) error {
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
		Track:       rel.Track,
		MandatoryAt: utc(rel.MandatoryAt),

		PackageName:  rel.PackageName,
		VersionCode:  rel.VersionCode,
		VersionName:  rel.VersionName,
		MinSdk:       int64(rel.MinSdk),
		TargetSdk:    int64(rel.TargetSdk),
		SignerSHA256: rel.SignerSHA256,
	}
	err := r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if admit != nil {
			if tx.Dialector.Name() == "postgres" {
				if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", uploadLock).Error; err != nil {
					return translate(err, "upload lock")
				}
			}
			existing, err := listReleases(tx)
			if err != nil {
				return err
			}
			if err := admit(existing); err != nil {
				return err
			}
		}
		if err := tx.Create(&row).Error; err != nil {
			return translate(err, fmt.Sprintf("release %s", rel.Version))
		}
		if err := announce(tx, TopicReleases); err != nil {
			return err
		}
		if err := record(tx, c, row.ID, model.DescribeRelease(*rel)); err != nil {
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
	rel, err := readRelease(r.db.WithContext(ctx), id)
	if err != nil {
		return model.Release{}, translate(err, fmt.Sprintf("release %d", id))
	}
	return rel, nil
}

// Update applies the set fields of patch to release id at time now, in one
// transaction, and returns the result (see model.ReleasePatch for what a
// hand change of the rollout and a resume do to the schedule), recording c
// with what changed. NotFound when absent.
func (r *Releases) Update(ctx context.Context, id int64, patch model.ReleasePatch, now time.Time, c model.Change) (model.Release, error) {
	now = now.UTC()
	var rel model.Release
	err := r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		row, err := lockRelease(tx, id)
		if err != nil {
			return err
		}
		before, err := readRelease(tx, id)
		if err != nil {
			return err
		}
		fields := map[string]any{}
		if patch.Notes != nil {
			fields["app_notes"] = *patch.Notes
		}
		if patch.Skipped != nil {
			fields["skipped"] = *patch.Skipped
		}
		if patch.Yanked != nil {
			fields["yanked"] = *patch.Yanked
		}
		if patch.Track != nil {
			fields["track"] = *patch.Track
		}
		if patch.MandatoryAt != nil {
			fields["mandatory_at"] = utc(patch.MandatoryAt.At)
		}
		if patch.Rollout != nil {
			fields["rollout"] = *patch.Rollout
			if err := setPendingSteps(tx, id, "state", string(model.StepCancelled)); err != nil {
				return err
			}
		}
		halted := row.Halted
		if patch.Halted != nil && *patch.Halted != row.Halted {
			halted = *patch.Halted
			fields["halted"] = halted
			if halted {
				fields["halted_at"] = now
			} else {
				fields["halted_at"] = nil
				if err := delayPendingSteps(tx, id, row.HaltedAt, now); err != nil {
					return err
				}
			}
		}
		if patch.Schedule != nil {
			if err := replaceSteps(tx, id, *patch.Schedule); err != nil {
				return err
			}
			if halted {
				fields["halted_at"] = now // the new steps' pause starts now
			}
		}
		if len(fields) > 0 {
			if err := tx.Model(&appRow{}).Where("id = ?", id).Updates(fields).Error; err != nil {
				return err
			}
		}
		if len(fields) == 0 && patch.Schedule == nil {
			rel = before
			return nil
		}
		if err := announce(tx, TopicReleases); err != nil {
			return err
		}
		if rel, err = readRelease(tx, id); err != nil {
			return err
		}
		return record(tx, c, id, model.DescribeEdit(before, rel))
	})
	if err != nil {
		return model.Release{}, translate(err, fmt.Sprintf("release %d", id))
	}
	return rel, nil
}

// ApplyDue applies, in time order, every pending schedule step whose time
// has come at now, of releases that are not halted, and returns the steps
// it applied (committed), recording each as c. Each step is applied once
// across every server sharing the database: under the lock of its
// release's row, only the transaction that turns the step from pending to
// applied sets the rollout.
func (r *Releases) ApplyDue(ctx context.Context, now time.Time, c model.Change) ([]model.AppliedStep, error) {
	now = now.UTC()
	db := r.db.WithContext(ctx)
	var pending []stepRow
	if err := db.Where("state = ?", model.StepPending).Order("due_at, id").Find(&pending).Error; err != nil {
		return nil, translate(err, "pending steps")
	}
	var applied []model.AppliedStep
	for _, p := range pending {
		if p.At.After(now) {
			break
		}
		var done *model.AppliedStep // set once the step is written; counted once committed
		err := db.Transaction(func(tx *gorm.DB) error {
			row, err := lockRelease(tx, p.ReleaseID)
			if err != nil || row.Halted {
				return err
			}
			var step stepRow
			if err := tx.Take(&step, p.ID).Error; err != nil || step.At.After(now) {
				return err // deleted by a new schedule, or moved by a resume
			}
			res := tx.Model(&stepRow{}).Where("id = ? AND state = ?", step.ID, model.StepPending).
				Updates(map[string]any{"state": string(model.StepApplied), "applied_at": now})
			if res.Error != nil || res.RowsAffected != 1 {
				return res.Error // another server applied it, or a hand change cancelled it
			}
			if err := tx.Model(&appRow{}).Where("id = ?", step.ReleaseID).Update("rollout", step.Rollout).Error; err != nil {
				return err
			}
			detail := fmt.Sprintf("Rollout: %d → %d (the step due at %s)", row.Rollout, step.Rollout, step.At.UTC().Format(time.RFC3339))
			if err := record(tx, c, step.ReleaseID, detail); err != nil {
				return err
			}
			v, err := model.ParseVersion(row.AppVersion)
			if err != nil {
				return err
			}
			done = &model.AppliedStep{ReleaseID: step.ReleaseID, Version: v, At: step.At, Rollout: int(step.Rollout)}
			return announce(tx, TopicReleases)
		})
		if err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
			return applied, translate(err, fmt.Sprintf("apply step %d", p.ID))
		}
		if err == nil && done != nil {
			applied = append(applied, *done)
		}
	}
	return applied, nil
}

// lockRelease reads release id's row, locking it until tx ends, so that
// writes to one release and its steps take turns. (SQLite transactions
// here lock the whole database from their start.)
func lockRelease(tx *gorm.DB, id int64) (appRow, error) {
	q := tx
	if tx.Dialector.Name() == "postgres" {
		q = tx.Clauses(clause.Locking{Strength: "UPDATE"})
	}
	var row appRow
	err := q.Take(&row, id).Error
	return row, err
}

// readRelease reads release id with its schedule.
func readRelease(tx *gorm.DB, id int64) (model.Release, error) {
	var row appRow
	if err := tx.Take(&row, id).Error; err != nil {
		return model.Release{}, err
	}
	var steps []stepRow
	if err := tx.Where("release_id = ?", id).Order("due_at, id").Find(&steps).Error; err != nil {
		return model.Release{}, err
	}
	return toRelease(row, steps)
}

// setPendingSteps sets column to value on release id's pending steps.
func setPendingSteps(tx *gorm.DB, id int64, column string, value any) error {
	return tx.Model(&stepRow{}).Where("release_id = ? AND state = ?", id, model.StepPending).Update(column, value).Error
}

// delayPendingSteps moves release id's pending steps later by the time
// from since to now, the pause of a halt.
func delayPendingSteps(tx *gorm.DB, id int64, since *time.Time, now time.Time) error {
	if since == nil || !now.After(*since) {
		return nil
	}
	var steps []stepRow
	if err := tx.Where("release_id = ? AND state = ?", id, model.StepPending).Find(&steps).Error; err != nil {
		return err
	}
	for _, s := range steps {
		if err := tx.Model(&stepRow{}).Where("id = ?", s.ID).Update("due_at", s.At.Add(now.Sub(*since)).UTC()).Error; err != nil {
			return err
		}
	}
	return nil
}

// replaceSteps makes steps, all pending, release id's whole schedule.
func replaceSteps(tx *gorm.DB, id int64, steps []model.Step) error {
	if err := tx.Where("release_id = ?", id).Delete(&stepRow{}).Error; err != nil {
		return err
	}
	if len(steps) == 0 {
		return nil
	}
	rows := make([]stepRow, len(steps))
	for i, s := range steps {
		rows[i] = stepRow{ReleaseID: id, At: s.At.UTC(), Rollout: int64(s.Rollout), State: string(model.StepPending)}
	}
	return tx.Create(&rows).Error
}

// Delete removes release id, with its schedule, and returns what it was,
// recording c. NotFound when absent.
func (r *Releases) Delete(ctx context.Context, id int64, c model.Change) (model.Release, error) {
	var rel model.Release
	err := r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var err error
		if rel, err = readRelease(tx, id); err != nil {
			return err
		}
		if err := announce(tx, TopicReleases); err != nil {
			return err
		}
		if err := tx.Where("release_id = ?", id).Delete(&stepRow{}).Error; err != nil {
			return err
		}
		if err := record(tx, c, id, model.DescribeRelease(rel)); err != nil {
			return err
		}
		return tx.Delete(&appRow{}, id).Error
	})
	if err != nil {
		return model.Release{}, translate(err, fmt.Sprintf("release %d", id))
	}
	return rel, nil
}

// CountDownload adds one to the downloads of the release stored at key. A
// key without a release (a file left in place) counts nothing.
func (r *Releases) CountDownload(ctx context.Context, key string) error {
	err := r.db.WithContext(ctx).Exec("UPDATE apps SET downloads = COALESCE(downloads, 0) + 1 WHERE file_path = ?", key).Error
	return translate(err, "download count")
}

// toRelease converts a row and its steps. Legacy rows may hold versions
// this server would not accept; they are reported rather than silently
// dropped.
func toRelease(row appRow, steps []stepRow) (model.Release, error) {
	v, err := model.ParseVersion(row.AppVersion)
	if err != nil {
		return model.Release{}, fmt.Errorf("repository: release %d has unparsable version %q: %w", row.ID, row.AppVersion, err)
	}
	schedule := make([]model.Step, len(steps))
	for i, s := range steps {
		schedule[i] = model.Step{At: s.At.UTC(), Rollout: int(s.Rollout), State: model.StepState(s.State)}
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

		Track:       cmp.Or(row.Track, model.DefaultTrack),
		Halted:      row.Halted,
		MandatoryAt: utc(row.MandatoryAt),
		Schedule:    schedule,

		PackageName:  row.PackageName,
		VersionCode:  row.VersionCode,
		VersionName:  row.VersionName,
		MinSdk:       int(row.MinSdk),
		TargetSdk:    int(row.TargetSdk),
		SignerSHA256: row.SignerSHA256,
	}, nil
}

// utc is t in UTC; nil stays nil.
func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// SetBuild records what verification found in the stored build of release
// id. NotFound when absent.
func (r *Releases) SetBuild(ctx context.Context, id int64, rel model.Release, c model.Change) error {
	err := r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Model(&appRow{}).Where("id = ?", id).Updates(map[string]any{
			"package_name": rel.PackageName, "version_code": rel.VersionCode, "version_name": rel.VersionName,
			"min_sdk": rel.MinSdk, "target_sdk": rel.TargetSdk, "signer_sha256": rel.SignerSHA256,
		})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return model.Errorf(model.NotFound, "Release %d does not exist.", id)
		}
		detail := fmt.Sprintf("verified build: %s versionCode %d (%s), minSdk %d, targetSdk %d, signer %s",
			rel.PackageName, rel.VersionCode, rel.VersionName, rel.MinSdk, rel.TargetSdk, rel.SignerSHA256)
		return record(tx, c, id, detail)
	})
	return translate(err, fmt.Sprintf("release %d", id))
}
