package repository

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/model"
)

var errForcedCommit = errors.New("forced commit failure")

// failCommitPool is the database's pool whose transactions fail at COMMIT:
// every statement of the transaction runs, then the commit is refused (the
// transaction rolls back), as when the server dies or the disk fills at
// that moment.
type failCommitPool struct{ gorm.ConnPool }

func (p failCommitPool) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	tx, err := p.ConnPool.(gorm.TxBeginner).BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &failCommitTx{tx}, nil
}

type failCommitTx struct{ *sql.Tx }

func (t *failCommitTx) Commit() error {
	if err := t.Tx.Rollback(); err != nil {
		return err
	}
	return errForcedCommit
}

// failingCommits returns db whose transactions all fail at COMMIT.
func failingCommits(db *gorm.DB) *gorm.DB {
	f := db.WithContext(context.Background()) // a Statement of its own
	f.Statement.ConnPool = failCommitPool{db.ConnPool}
	return f
}

func openAuditDB(tb testing.TB, dsn string) *gorm.DB {
	tb.Helper()
	db, err := Open(context.Background(), dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { Close(db) })
	if err := Migrate(context.Background(), db); err != nil {
		tb.Fatal(err)
	}
	return db
}

// TestAudit_commitFailure forces every kind of change to fail at COMMIT:
// neither the change nor its audit row remains. Then the same changes
// commit, each with exactly one row naming its actor.
func TestAudit_commitFailure(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, dsn string) {
		ctx := model.WithActor(context.Background(), "alice")
		db := openAuditDB(t, dsn)
		good, bad := NewReleases(db), NewReleases(failingCommits(db))
		goodSigs, badSigs := NewSignatures(db), NewSignatures(failingCommits(db))
		audit := NewAudit(db)
		count := func(table string) int64 {
			var n int64
			if err := db.Table(table).Count(&n).Error; err != nil {
				t.Fatal(err)
			}
			return n
		}
		wantAudit := func(step string, n int) []model.AuditEntry {
			t.Helper()
			all, err := audit.List(ctx, model.Page{})
			if err != nil {
				t.Fatal(err)
			}
			if len(all) != n {
				t.Fatalf("%s: %d audit rows, want %d: %+v", step, len(all), n, all)
			}
			return all
		}
		change := func(action string) model.Change { return model.ChangeBy(ctx, action) }

		v, _ := model.ParseVersion("2267_01")
		rel := model.Release{Version: v, Name: "wemesse.apk", Size: 4, Rollout: 100, FilePath: "2267_01/wemesse.apk"}
		published := false
		publish := func() error { published = true; return nil }
		if err := bad.Create(ctx, &rel, "u", nil, publish, change(model.ActionReleaseUpload)); !errors.Is(err, errForcedCommit) {
			t.Fatalf("create under a failing commit: %v, want %v", err, errForcedCommit)
		}
		if !published || count("apps") != 0 {
			t.Fatalf("failed create: published %t, %d apps rows; want the publish run and no row", published, count("apps"))
		}
		wantAudit("failed create", 0)
		if err := good.Create(ctx, &rel, "u", nil, publish, change(model.ActionReleaseUpload)); err != nil {
			t.Fatal(err)
		}
		wantAudit("create", 1)

		rollout := 10
		if _, err := bad.Update(ctx, rel.ID, model.ReleasePatch{Rollout: &rollout}, time.Now(), change(model.ActionReleaseEdit)); !errors.Is(err, errForcedCommit) {
			t.Fatalf("update under a failing commit: %v", err)
		}
		if got, _ := good.Get(ctx, rel.ID); got.Rollout != 100 {
			t.Fatalf("failed update left rollout %d, want 100", got.Rollout)
		}
		wantAudit("failed update", 1)
		if _, err := good.Update(ctx, rel.ID, model.ReleasePatch{Rollout: &rollout}, time.Now(), change(model.ActionReleaseEdit)); err != nil {
			t.Fatal(err)
		}
		if e := wantAudit("update", 2)[1]; e.Detail != "Rollout: 100 → 10" || e.ReleaseID != rel.ID || e.Actor != "alice" || e.Action != model.ActionReleaseEdit {
			t.Errorf("update row %+v, want alice's release.edit of %d with Rollout: 100 → 10", e, rel.ID)
		}

		if _, err := bad.Delete(ctx, rel.ID, change(model.ActionReleasePurge)); !errors.Is(err, errForcedCommit) {
			t.Fatalf("delete under a failing commit: %v", err)
		}
		if count("apps") != 1 {
			t.Fatal("failed delete removed the row")
		}
		wantAudit("failed delete", 2)
		if _, err := good.Delete(ctx, rel.ID, change(model.ActionReleasePurge)); err != nil {
			t.Fatal(err)
		}
		wantAudit("delete", 3)

		sig := model.Signature{Hash: "$argon2id$x", Hint: "abcd", Role: model.RoleAdmin, Name: "ci"}
		if _, err := badSigs.Create(ctx, sig, change(model.ActionSignatureCreate)); !errors.Is(err, errForcedCommit) {
			t.Fatalf("signature create under a failing commit: %v", err)
		}
		if count("middlewares") != 0 {
			t.Fatal("failed signature create left a row")
		}
		wantAudit("failed signature create", 3)
		created, err := goodSigs.Create(ctx, sig, change(model.ActionSignatureCreate))
		if err != nil {
			t.Fatal(err)
		}
		wantAudit("signature create", 4)
		if err := badSigs.Delete(ctx, created.ID, change(model.ActionSignatureRevoke)); !errors.Is(err, errForcedCommit) {
			t.Fatalf("signature delete under a failing commit: %v", err)
		}
		if count("middlewares") != 1 {
			t.Fatal("failed signature delete removed the row")
		}
		wantAudit("failed signature delete", 4)
		if err := goodSigs.Delete(ctx, created.ID, change(model.ActionSignatureRevoke)); err != nil {
			t.Fatal(err)
		}
		all := wantAudit("signature delete", 5)
		wantActions := []string{model.ActionReleaseUpload, model.ActionReleaseEdit, model.ActionReleasePurge, model.ActionSignatureCreate, model.ActionSignatureRevoke}
		for i, e := range all {
			if e.Action != wantActions[i] || e.Actor != "alice" || e.At.IsZero() || (i < 3) != (e.ReleaseID == rel.ID) {
				t.Errorf("row %d = %+v, want alice's %s", i, e, wantActions[i])
			}
		}
		if page, err := audit.List(ctx, model.Page{After: all[1].ID, Limit: 2}); err != nil || len(page) != 2 || page[0].ID != all[2].ID {
			t.Errorf("page after %d, limit 2: %+v, %v", all[1].ID, page, err)
		}
	})
}
