package service

import (
	"context"

	"github.com/wemesse/server/internal/model"
)

// AuditStore reads the audit trail, which the other stores write with each
// change.
type AuditStore interface {
	// List returns the entries after page.After, oldest first, at most
	// page.Limit of them (0: all).
	List(ctx context.Context, page model.Page) ([]model.AuditEntry, error)
	// Search returns the entries f selects, newest first.
	Search(ctx context.Context, f model.AuditFilter) ([]model.AuditEntry, error)
	// Uploaders returns who uploaded each of the releases ids, where the
	// trail knows it.
	Uploaders(ctx context.Context, ids []int64) (map[int64]string, error)
}

// Audit is the audit trail: one entry per change made through the API or
// the command line.
type Audit struct{ store AuditStore }

// NewAudit returns an Audit.
func NewAudit(store AuditStore) *Audit { return &Audit{store: store} }

// List returns a page of the trail, oldest first. Invalid for a bad page.
func (a *Audit) List(ctx context.Context, page model.Page) ([]model.AuditEntry, error) {
	if err := page.Validate(); err != nil {
		return nil, err
	}
	return a.store.List(ctx, page)
}

// Search returns the entries f selects, newest first. Invalid for bad
// bounds.
func (a *Audit) Search(ctx context.Context, f model.AuditFilter) ([]model.AuditEntry, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return a.store.Search(ctx, f)
}

// Uploaders returns who uploaded each of the releases ids, where the trail
// knows it (releases uploaded before it existed have no entry).
func (a *Audit) Uploaders(ctx context.Context, ids []int64) (map[int64]string, error) {
	return a.store.Uploaders(ctx, ids)
}
