package service

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alexedwards/argon2id"
	lru "github.com/hashicorp/golang-lru/v2/expirable"

	"github.com/wemesse/server/internal/model"
)

// SignatureStore keeps credentials.
type SignatureStore interface {
	// List returns every signature ordered by id.
	List(ctx context.Context) ([]model.Signature, error)
	// Create stores a signature's hash, hint, role, name and expiry;
	// Conflict when its name is taken. Create, CreateIfEmpty and Delete
	// record their change in the audit trail in the same transaction.
	Create(ctx context.Context, sig model.Signature, c model.Change) (model.Signature, error)
	// CreateIfEmpty stores the signature make returns only when there is none.
	CreateIfEmpty(ctx context.Context, make func() (model.Signature, error), c model.Change) (bool, error)
	// Rehash replaces a signature's hash and hint.
	Rehash(ctx context.Context, id int64, hash, hint string) error
	// Touch records a signature's use; NotFound is not reported.
	Touch(ctx context.Context, id int64, t time.Time) error
	// Delete removes a signature; NotFound when absent.
	Delete(ctx context.Context, id int64, c model.Change) error
}

// Argon2Limits bound the parameters of any hash the server will run, its
// own or one found in the database.
type Argon2Limits struct {
	Memory      uint32 // KiB
	Iterations  uint32
	Parallelism uint8
}

// SignaturesConfig tunes Signatures.
type SignaturesConfig struct {
	Params      argon2id.Params // for new hashes
	Limits      Argon2Limits    // for every hash
	Concurrency int             // Argon2 verifications at once
	Wait        time.Duration   // longest wait for a verification slot
	CacheSize   int             // entries in each of the verified and failed caches
	CacheTTL    time.Duration   // a verified secret stays cached this long after its last use
	Refresh     time.Duration   // how often the table is re-read
	// HintFailures bounds the failed checks per hint per minute that may
	// cost an Argon2id run; past it, that hint's checks are refused without
	// one. 0: no bound.
	HintFailures int
	Observer     Observer // nil: NopObserver
}

// Signatures checks secrets against the Argon2id hashes in the store.
//
// Argon2id costs tens of milliseconds and megabytes per check, so a secret
// that verified is remembered (by its SHA-256, never in clear) with the id of
// its row, and a secret that failed is remembered too. The rows are re-read
// every Refresh, so a revoked row stops authenticating everywhere within
// that time. At most Concurrency checks hash at once.
type Signatures struct {
	store SignatureStore
	cfg   SignaturesConfig
	log   *slog.Logger
	slots chan struct{}
	rows  atomic.Pointer[map[int64]model.Signature]
	// rereadAt is when a failed check last re-read the rows, in Unix
	// nanoseconds.
	rereadAt atomic.Int64
	ok       *lru.LRU[[32]byte, int64]
	failed   *lru.LRU[[32]byte, struct{}]

	mu      sync.Mutex
	refused map[int64]bool      // rows already logged as refused
	touched map[int64]time.Time // when each row's last use was written

	// freedAt is when freeMemory last ran, in Unix nanoseconds, and
	// freeing whether a run is scheduled; freeMemory is debug.FreeOSMemory
	// (tests replace it).
	freedAt    atomic.Int64
	freeing    atomic.Bool
	freeMemory func()

	hints hintBudget
	// hashTook is the running mean of a failed Argon2id check's time, in
	// nanoseconds, which a wrong secret that needs none waits out (pace);
	// firstHash measures one hash for it before any check has run.
	hashTook  atomic.Int64
	firstHash func() time.Duration
	// sleep waits d or until ctx ends (tests replace it).
	sleep func(ctx context.Context, d time.Duration)
}

// NewSignatures returns a Signatures. Call Load before serving and Run to
// keep it current.
func NewSignatures(store SignatureStore, cfg SignaturesConfig, log *slog.Logger) *Signatures {
	s := &Signatures{
		store:      store,
		cfg:        cfg,
		log:        log,
		slots:      make(chan struct{}, max(cfg.Concurrency, 1)),
		ok:         lru.NewLRU[[32]byte, int64](max(cfg.CacheSize, 1), nil, cfg.CacheTTL),
		failed:     lru.NewLRU[[32]byte, struct{}](max(cfg.CacheSize, 1), nil, cfg.CacheTTL),
		refused:    map[int64]bool{},
		touched:    map[int64]time.Time{},
		freeMemory: debug.FreeOSMemory,
		hints:      hintBudget{max: cfg.HintFailures, used: map[string]*hintWindow{}},
		sleep:      sleepCtx,
	}
	s.firstHash = sync.OnceValue(func() time.Duration {
		if cfg.Params.Iterations == 0 || cfg.Params.Parallelism == 0 {
			return 0 // no parameters to hash with (a test's)
		}
		start := time.Now()
		_, _ = s.hash("")
		return time.Since(start)
	})
	s.rows.Store(&map[int64]model.Signature{})
	if s.cfg.Observer == nil {
		s.cfg.Observer = NopObserver{}
	}
	return s
}

// Authenticate returns the signature that secret matches. A missing, wrong,
// revoked or expired secret all get the same Unauthorized; Unavailable when the
// server is too busy hashing to check in time.
func (s *Signatures) Authenticate(ctx context.Context, secret string) (model.Signature, error) {
	return s.authenticate(ctx, secret, false)
}

func (s *Signatures) authenticate(ctx context.Context, secret string, reread bool) (model.Signature, error) {
	if secret == "" {
		// The caller knows it sent nothing, so answering at once reveals
		// nothing; and no stored hash of "" may ever let it in.
		return model.Signature{}, errUnauthorized
	}
	if sig, ok := s.Cached(ctx, secret); ok {
		return sig, nil
	}
	key := sha256.Sum256([]byte(secret))
	snapshot := s.rows.Load()
	rows := *snapshot
	if s.failed.Contains(key) {
		s.cfg.Observer.AuthCache("failed_hit")
		return model.Signature{}, errUnauthorized
	}
	s.cfg.Observer.AuthCache("miss")
	// Only rows whose hint matches can match; rows from before hints
	// existed always might.
	hint := model.HintOf(secret)
	now := time.Now()
	var ids []int64
	for id, sig := range rows {
		if (sig.Hint == hint || sig.Hint == "") && !sig.Expired(now) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	// The hint of the client secret is public, and wrong secrets with it
	// are cheap to make: each would cost an Argon2id run. Past its budget
	// a hint is refused without one, whether any row has it or not, so
	// the refusal tells nothing either.
	// Each run takes its share of the budget before it starts, so that
	// concurrent checks cannot overrun it; a match gives it back.
	deadline := time.Now().Add(s.cfg.Wait)
	for _, id := range ids {
		if !s.hints.take(hint) {
			s.cfg.Observer.Verification("hint_budget")
			return model.Signature{}, errUnauthorized
		}
		match, err := s.verify(ctx, secret, rows[id].Hash, deadline)
		if err != nil || match {
			s.hints.refund(hint)
		}
		if err != nil {
			return model.Signature{}, err
		}
		if match {
			s.ok.Add(key, id)
			s.touch(ctx, id)
			return rows[id], nil
		}
	}
	// The secret may belong to a row created since the last read (by the
	// CLI, say): re-read, at most twice a second whatever the traffic.
	if !reread && s.reread(ctx) {
		return s.authenticate(ctx, secret, true)
	}
	// Remember the failure only if the rows it was checked against are
	// still current: Load swaps the rows before it purges the failures, so
	// a failure recorded against rows it replaced is caught here, not kept.
	s.failed.Add(key, struct{}{})
	if s.rows.Load() != snapshot {
		s.failed.Remove(key)
		if !reread {
			return s.authenticate(ctx, secret, true)
		}
	}
	if len(ids) == 0 {
		// Charged once per check like a run, after any re-read.
		if !s.hints.take(hint) {
			s.cfg.Observer.Verification("hint_budget")
			return model.Signature{}, errUnauthorized
		}
		s.pace(ctx)
	}
	return model.Signature{}, errUnauthorized
}

// pace makes a wrong secret whose hint no row has take as long as one that
// was hashed: the time of a check would otherwise tell which hints the
// stored secrets have. It holds no hashing slot and no memory.
func (s *Signatures) pace(ctx context.Context) {
	d := time.Duration(s.hashTook.Load())
	if d == 0 {
		d = s.firstHash()
	}
	s.sleep(ctx, d)
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// hintBudget counts failed checks per hint in one-minute windows.
type hintBudget struct {
	max  int // per hint per minute; 0: no bound
	mu   sync.Mutex
	used map[string]*hintWindow
}

type hintWindow struct {
	start    time.Time
	failures int
}

// take counts one failed check against hint ahead of the check, and
// reports whether hint's budget had room for it.
func (b *hintBudget) take(hint string) bool {
	if b.max <= 0 {
		return true
	}
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.used[hint]
	if w == nil || now.Sub(w.start) >= time.Minute {
		if len(b.used) >= maxHintWindows {
			for h, old := range b.used {
				if now.Sub(old.start) >= time.Minute {
					delete(b.used, h)
				}
			}
		}
		w = &hintWindow{start: now}
		b.used[hint] = w
	}
	if w.failures >= b.max {
		return false
	}
	w.failures++
	return true
}

// refund gives back what take counted for a check that did not fail.
func (b *hintBudget) refund(hint string) {
	if b.max <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if w := b.used[hint]; w != nil && w.failures > 0 {
		w.failures--
	}
}

// maxHintWindows is how many hints' windows are kept before the ended ones
// are dropped; there are 65536 hints in all.
const maxHintWindows = 4096

// rereadEvery bounds how often a failed check may re-read the signatures.
const rereadEvery = 500 * time.Millisecond

// reread re-reads the signatures unless a failed check did in the last
// rereadEvery, and reports whether it did.
func (s *Signatures) reread(ctx context.Context) bool {
	last := s.rereadAt.Load()
	if time.Since(time.Unix(0, last)) < rereadEvery || !s.rereadAt.CompareAndSwap(last, time.Now().UnixNano()) {
		return false
	}
	return s.Load(ctx) == nil
}

// Cached returns the signature secret matched recently, if its row still
// exists: the microsecond path, with no hashing.
func (s *Signatures) Cached(ctx context.Context, secret string) (model.Signature, bool) {
	key := sha256.Sum256([]byte(secret))
	id, ok := s.ok.Get(key)
	if !ok {
		return model.Signature{}, false
	}
	sig, ok := (*s.rows.Load())[id]
	if !ok || sig.Expired(time.Now()) {
		s.ok.Remove(key) // revoked or expired
		return model.Signature{}, false
	}
	// Renewed on use: a secret in use stays cached, so the per-address
	// failure limit, which only uncached secrets meet, never locks it out.
	s.ok.Add(key, id)
	s.cfg.Observer.AuthCache("hit")
	s.touch(ctx, id)
	return sig, true
}

var errBusy = model.Errorf(model.Unavailable, "The server is busy checking signatures; retry shortly.")

var errUnauthorized = model.Errorf(model.Unauthorized, "A valid signature header is required.")

// verify runs one Argon2id comparison in a bounded slot, waiting for one no
// later than deadline.
func (s *Signatures) verify(ctx context.Context, secret, hash string, deadline time.Time) (bool, error) {
	wait := time.Until(deadline)
	if wait <= 0 {
		s.cfg.Observer.Verification("busy")
		return false, errBusy
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case s.slots <- struct{}{}:
	case <-timer.C:
		s.cfg.Observer.Verification("busy")
		return false, errBusy
	case <-ctx.Done():
		return false, ctx.Err()
	}
	start := time.Now()
	match, err := argon2id.ComparePasswordAndHash(secret, hash)
	took := time.Since(start)
	<-s.slots
	s.releaseArgon2()
	if err != nil {
		match = false // Load already refused malformed hashes
	}
	if match {
		s.cfg.Observer.Verification("match")
	} else {
		s.cfg.Observer.Verification("mismatch")
		// A running mean over about the last eight.
		for {
			old := s.hashTook.Load()
			mean := int64(took)
			if old != 0 {
				mean = old + (int64(took)-old)/8
			}
			if s.hashTook.CompareAndSwap(old, mean) {
				break
			}
		}
	}
	return match, nil
}

// releaseEvery bounds how often releaseArgon2 frees memory.
const releaseEvery = time.Second

// releaseArgon2 hands the memory of finished Argon2id runs back to the
// system. Each run allocates Params.Memory (64 MiB by default) that is
// garbage as soon as it returns, but a server that then sees little traffic
// allocates too little for the collector to run (GOGC=400) and would keep it
// for minutes. After the last running check, memory is freed in the
// background: at once, or releaseEvery after the previous time if that was
// more recent, so a burst of checks costs at most one collection a second.
func (s *Signatures) releaseArgon2() {
	if len(s.slots) > 0 || !s.freeing.CompareAndSwap(false, true) {
		return // a check still runs, or a release is already due: it covers this one
	}
	wait := time.Duration(s.freedAt.Load()) + releaseEvery - time.Duration(time.Now().UnixNano())
	time.AfterFunc(max(wait, 0), func() {
		// A check that ends from here on schedules its own release: this
		// one may have looked at its memory while it was still in use.
		s.freedAt.Store(time.Now().UnixNano())
		s.freeing.Store(false)
		s.freeMemory()
	})
}

// touch records a row's use, at most once a minute per row so that the
// write stays off nearly every request. A failure is only logged: it must
// not refuse a valid secret.
func (s *Signatures) touch(ctx context.Context, id int64) {
	now := time.Now().UTC()
	s.mu.Lock()
	if now.Sub(s.touched[id]) < time.Minute {
		s.mu.Unlock()
		return
	}
	s.touched[id] = now
	s.mu.Unlock()
	if err := s.store.Touch(ctx, id, now); err != nil {
		s.log.Warn("record signature use", "id", id, "err", err)
	}
}

// Load re-reads the signatures. Rows whose hash is malformed or whose
// parameters exceed the limits are refused, with an error logged once.
func (s *Signatures) Load(ctx context.Context) error {
	all, err := s.store.List(ctx)
	if err != nil {
		return err
	}
	rows := make(map[int64]model.Signature, len(all))
	for _, sig := range all {
		if err := s.usable(sig.Hash); err != nil {
			s.mu.Lock()
			if !s.refused[sig.ID] {
				s.refused[sig.ID] = true
				s.log.Error("signature refused: it will not authenticate", "id", sig.ID, "reason", err)
			}
			s.mu.Unlock()
			continue
		}
		rows[sig.ID] = sig
	}
	old := s.rows.Swap(&rows)
	for id := range rows {
		if _, ok := (*old)[id]; !ok {
			// A new row may match a secret that failed before it existed.
			s.failed.Purge()
			break
		}
	}
	return nil
}

// usable checks that hash is an Argon2id hash within the limits.
func (s *Signatures) usable(hash string) error {
	p, salt, key, err := argon2id.DecodeHash(hash)
	if err != nil {
		return fmt.Errorf("not an Argon2id hash")
	}
	l := s.cfg.Limits
	if p.Memory > l.Memory || p.Iterations > l.Iterations || p.Parallelism > l.Parallelism || p.Iterations == 0 || p.Parallelism == 0 || len(salt) > 64 || len(key) > 64 || len(key) < 16 {
		return fmt.Errorf("parameters m=%d t=%d p=%d exceed the limits m=%d t=%d p=%d", p.Memory, p.Iterations, p.Parallelism, l.Memory, l.Iterations, l.Parallelism)
	}
	return nil
}

// Run re-reads the signatures every Refresh until ctx ends.
func (s *Signatures) Run(ctx context.Context) {
	reloadEvery(ctx, s.cfg.Refresh, s.Load, s.log.With("what", "signatures"))
}

// reloadEvery calls load every period until ctx ends, logging failures;
// what was loaded before stays in use.
func reloadEvery(ctx context.Context, period time.Duration, load func(context.Context) error, log *slog.Logger) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := load(ctx); err != nil && ctx.Err() == nil {
				log.Warn("reload", "err", err)
			}
		}
	}
}

// Create makes a new unnamed secret for role that never expires; see
// CreateNamed.
func (s *Signatures) Create(ctx context.Context, role string) (string, model.Signature, error) {
	return s.CreateNamed(ctx, NewSignature{Role: role})
}

// NewSignature describes a signature to create.
type NewSignature struct {
	Role      string
	Name      string    // unique; empty: none, shown as #<id>
	ExpiresAt time.Time // zero: never
}

// CreateNamed makes a new secret as n says, stores its hash and returns the
// secret, which is never stored or shown again. Invalid for a bad role or
// name or an expiry in the past, Conflict when the name is taken.
func (s *Signatures) CreateNamed(ctx context.Context, n NewSignature) (string, model.Signature, error) {
	if n.Role != model.RoleAdmin && n.Role != model.RoleClient {
		return "", model.Signature{}, model.Errorf(model.Invalid, "Role must be admin or client.")
	}
	if n.Name != "" {
		if err := model.ValidateSignatureName(n.Name); err != nil {
			return "", model.Signature{}, err
		}
	}
	if !n.ExpiresAt.IsZero() && !n.ExpiresAt.After(time.Now()) {
		return "", model.Signature{}, model.Errorf(model.Invalid, "The expiry must be in the future.")
	}
	secret, err := newSecret()
	if err != nil {
		return "", model.Signature{}, err
	}
	hash, err := s.hash(secret)
	if err != nil {
		return "", model.Signature{}, err
	}
	sig, err := s.store.Create(ctx, model.Signature{Hash: hash, Hint: model.HintOf(secret), Role: n.Role, Name: n.Name, ExpiresAt: n.ExpiresAt}, model.ChangeBy(ctx, model.ActionSignatureCreate))
	if err != nil {
		return "", model.Signature{}, err
	}
	return secret, sig, s.Load(ctx)
}

// Bootstrap makes sure a signature exists. On an empty table it stores the
// hash of secret, or of a new random secret when secret is empty, as an
// admin signature. generated is that random secret, to be shown once; it is
// empty when nothing was generated.
func (s *Signatures) Bootstrap(ctx context.Context, secret string) (generated string, err error) {
	if secret == "" {
		if generated, err = newSecret(); err != nil {
			return "", err
		}
		secret = generated
	}
	created, err := s.store.CreateIfEmpty(ctx, func() (model.Signature, error) {
		hash, err := s.hash(secret)
		return model.Signature{Hash: hash, Hint: model.HintOf(secret), Role: model.RoleAdmin}, err
	}, model.ChangeBy(ctx, model.ActionSignatureCreate))
	if err != nil || !created {
		return "", err
	}
	return generated, nil
}

// UpgradePlaintext hashes, in place, every stored signature that the earlier
// server kept in plain text, so that the secrets inside shipped apps keep
// working. It returns how many it hashed.
func (s *Signatures) UpgradePlaintext(ctx context.Context) (int, error) {
	all, err := s.store.List(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, sig := range all {
		if strings.HasPrefix(sig.Hash, "$argon2id$") {
			continue
		}
		if strings.TrimSpace(sig.Hash) == "" {
			// An empty secret would admit requests that send none; Load
			// refuses the row and logs it.
			continue
		}
		hash, err := s.hash(sig.Hash)
		if err != nil {
			return n, err
		}
		if err := s.store.Rehash(ctx, sig.ID, hash, model.HintOf(sig.Hash)); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// List returns every stored signature.
func (s *Signatures) List(ctx context.Context) ([]model.Signature, error) {
	return s.store.List(ctx)
}

// Revoke deletes signature id; it stops authenticating on this server at
// once and on others at their next refresh. NotFound when absent.
func (s *Signatures) Revoke(ctx context.Context, id int64) error {
	if err := s.store.Delete(ctx, id, model.ChangeBy(ctx, model.ActionSignatureRevoke)); err != nil {
		return err
	}
	return s.Load(ctx)
}

func (s *Signatures) hash(secret string) (string, error) {
	p := s.cfg.Params
	h, err := argon2id.CreateHash(secret, &p)
	if err != nil {
		return "", fmt.Errorf("signatures: hash: %w", err)
	}
	return h, nil
}

// newSecret returns 32 random bytes, base64url-encoded.
func newSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("signatures: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// byID returns signature id as last read, and whether it exists.
func (s *Signatures) byID(id int64) (model.Signature, bool) {
	sig, ok := (*s.rows.Load())[id]
	return sig, ok
}
