package service

import (
	"context"

	"github.com/wemesse/server/internal/model"
)

// UserStore keeps device sessions.
type UserStore interface {
	// Upsert stores u by (SessionID, DeviceMac) and counts a new or changed
	// version on the release for abi.
	Upsert(ctx context.Context, u model.User, abi string) (model.User, error)
	// Each calls fn for every user of page in id order, streaming.
	Each(ctx context.Context, page model.Page, fn func(model.User) error) error
}

// Users is the device registry.
type Users struct {
	store      UserStore
	defaultABI string
}

// NewUsers returns a Users. defaultABI is the ABI of a device that names none.
func NewUsers(store UserStore, defaultABI string) *Users {
	return &Users{store: store, defaultABI: defaultABI}
}

// Report records a device session and returns the stored user. It returns
// Invalid when u breaks a rule.
func (s *Users) Report(ctx context.Context, u model.User) (model.User, error) {
	if err := u.Validate(); err != nil {
		return model.User{}, err
	}
	u.ID = 0
	abi := u.TargetABI
	if abi == "" {
		abi = s.defaultABI
	}
	return s.store.Upsert(ctx, u, abi)
}

// Each calls fn for every user of page in id order. Invalid for a bad page.
func (s *Users) Each(ctx context.Context, page model.Page, fn func(model.User) error) error {
	if err := page.Validate(); err != nil {
		return err
	}
	return s.store.Each(ctx, page, fn)
}
