package service

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/wemesse/server/internal/model"
)

// UserStore keeps device sessions.
type UserStore interface {
	// WriteBatch stores reports as if in order, and counts each device's
	// new or changed version on its release, committed with its report. It
	// returns once the batch is written; commit waits until it is committed
	// and returns the stored users. A batch written after WriteBatch
	// returns commits after this one. ctx bounds both steps.
	WriteBatch(ctx context.Context, reports []model.DeviceReport) (commit func() ([]model.User, error), err error)
	// Each calls fn for every user of page in id order, streaming.
	Each(ctx context.Context, page model.Page, fn func(model.User) error) error
	// Search returns the users of page whose SessionID or DeviceMac is
	// query or whose DeviceModel starts with it; all when query is "".
	Search(ctx context.Context, query string, page model.Page) ([]model.User, error)
}

// UsersConfig tunes Users.
type UsersConfig struct {
	DefaultABI string // ABI of a device that names none
	// Writers is how many transactions write device sessions at once, and
	// MaxBatch how many sessions one of them writes at most.
	Writers  int
	MaxBatch int
	Observer Observer // nil: NopObserver
}

// Users is the device registry. Reports that arrive while a transaction is
// writing are written together by the next one (group commit), so the
// database's per-transaction cost is shared; each report is answered only
// once its transaction has committed. A writer writes its next batch as soon
// as the last one is written, while that one commits. A device always goes
// to the same writer, so its reports are written in arrival order.
type Users struct {
	store  UserStore
	cfg    UsersConfig
	seed   maphash.Seed
	queues []chan pending
	wg     sync.WaitGroup
}

type pending struct {
	report model.DeviceReport
	done   chan result // buffered: the writer never waits for a caller
}

type result struct {
	user model.User
	err  error
}

// writeTimeout bounds one batch's transaction.
const writeTimeout = 30 * time.Second

// NewUsers returns a Users and starts its writers; Close stops them.
func NewUsers(store UserStore, cfg UsersConfig) *Users {
	cfg.Writers, cfg.MaxBatch = max(cfg.Writers, 1), max(cfg.MaxBatch, 1)
	if cfg.Observer == nil {
		cfg.Observer = NopObserver{}
	}
	s := &Users{store: store, cfg: cfg, seed: maphash.MakeSeed()}
	for range cfg.Writers {
		q := make(chan pending, cfg.MaxBatch)
		s.queues = append(s.queues, q)
		s.wg.Add(1)
		go s.write(q)
	}
	return s
}

// Close writes and commits what is queued and stops the writers. Report
// must not be called after it.
func (s *Users) Close() {
	for _, q := range s.queues {
		close(q)
	}
	s.wg.Wait()
}

// Report records a device session and returns the stored user once it is
// committed. It returns Invalid when u breaks a rule.
func (s *Users) Report(ctx context.Context, u model.User) (model.User, error) {
	if err := u.Validate(); err != nil {
		return model.User{}, err
	}
	u.ID = 0
	abi := u.TargetABI
	if abi == "" {
		abi = s.cfg.DefaultABI
	}
	var h maphash.Hash
	h.SetSeed(s.seed)
	h.WriteString(u.DeviceMac)
	q := s.queues[(h.Sum64()^uint64(u.SessionID))%uint64(len(s.queues))]
	p := pending{report: model.DeviceReport{User: u, ABI: abi}, done: make(chan result, 1)}
	select {
	case q <- p:
	case <-ctx.Done():
		return model.User{}, ctx.Err()
	}
	select {
	case r := <-p.done:
		return r.user, r.err
	case <-ctx.Done():
		return model.User{}, ctx.Err()
	}
}

// write takes whatever reports are queued, up to MaxBatch, and writes them
// in one batch, until q is closed.
func (s *Users) write(q chan pending) {
	defer s.wg.Done()
	for p := range q {
		batch := []pending{p}
	collect:
		for len(batch) < s.cfg.MaxBatch {
			select {
			case p, ok := <-q:
				if !ok {
					break collect
				}
				batch = append(batch, p)
			default:
				break collect
			}
		}
		s.flush(batch)
	}
}

// flush writes batch and leaves its commit, and answering its requests, to
// another goroutine, so the writer sends the next batch while the database
// commits this one.
func (s *Users) flush(batch []pending) {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	reports := make([]model.DeviceReport, len(batch))
	for i, p := range batch {
		reports[i] = p.report
	}
	commit, err := s.store.WriteBatch(ctx, reports)
	if err != nil && len(batch) > 1 && model.ErrorCode(err) != model.Unavailable {
		cancel()
		// One bad report must not fail the others: write each alone.
		for _, p := range batch {
			s.flush([]pending{p})
		}
		return
	}
	if err == nil {
		s.cfg.Observer.DeviceBatch(len(batch))
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		var users []model.User
		if err == nil {
			users, err = commit()
		}
		for i, p := range batch {
			if err != nil {
				p.done <- result{err: err}
			} else {
				p.done <- result{user: users[i]}
			}
		}
	}()
}

// Each calls fn for every user of page in id order. Invalid for a bad page.
func (s *Users) Each(ctx context.Context, page model.Page, fn func(model.User) error) error {
	if err := page.Validate(); err != nil {
		return err
	}
	return s.store.Each(ctx, page, fn)
}

// Search returns at most page.Limit users after page.After whose
// SessionID or DeviceMac is query, or whose DeviceModel starts with it
// (any case); every user when query is empty. Invalid for a bad page or
// a query longer than model.MaxTextLen.
func (s *Users) Search(ctx context.Context, query string, page model.Page) ([]model.User, error) {
	if err := page.Validate(); err != nil {
		return nil, err
	}
	if len(query) > model.MaxTextLen {
		return nil, model.Errorf(model.Invalid, "The search must be at most %d characters.", model.MaxTextLen)
	}
	return s.store.Search(ctx, query, page)
}
