package ingest

import (
	"context"
	"log/slog"
	"time"

	"github.com/leaseguard/leaseguard/internal/pause"
	"github.com/leaseguard/leaseguard/ops/progress"
	"github.com/leaseguard/leaseguard/store"
)

// ExpiryStore is the part of the ledger that fills in expire times.
type ExpiryStore interface {
	ResolveExpiry(ctx context.Context, r store.ValidUntilReader, ttls store.RoleTTLs, now time.Time, limit int) (int, error)
}

// ExpiryResolver reads the expiry of newly issued or renewed leases from the
// target databases (pg_roles.rolvaliduntil), falling back to configured role
// TTLs. The audit log carries no TTL, so this is where expiry comes from. It
// runs when kicked (after ingest commits an issue or renewal) and on an
// interval, so leases written by replay or left over from a database outage
// are resolved too.
type ExpiryResolver struct {
	Store    ExpiryStore
	Reader   store.ValidUntilReader
	TTLs     store.RoleTTLs
	Interval time.Duration
	Batch    int
	Clock    func() time.Time
	Logger   *slog.Logger
	// Progress hears of each pass (nil: nobody).
	Progress *progress.Worker
	// PassTimeout bounds one pass (state store and target reads): one
	// that runs out is tried again on the next kick or interval.
	PassTimeout time.Duration
	kick        chan struct{}
}

// NewExpiryResolver builds a resolver with defaults filled in.
func NewExpiryResolver(st ExpiryStore, r store.ValidUntilReader, ttls store.RoleTTLs, logger *slog.Logger) *ExpiryResolver {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &ExpiryResolver{
		Store: st, Reader: r, TTLs: ttls, Interval: 5 * time.Second, Batch: 1000,
		Clock: time.Now, Logger: logger, PassTimeout: DefaultCommitTimeout, kick: make(chan struct{}, 1),
	}
}

// Kick asks for a resolution pass soon; it never blocks.
func (r *ExpiryResolver) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// ResolveAll runs passes until nothing is left to resolve (or ctx ends).
func (r *ExpiryResolver) ResolveAll(ctx context.Context) (int, error) {
	total := 0
	for ctx.Err() == nil {
		n, err := r.pass(ctx)
		total += n
		if err != nil || n < r.Batch {
			return total, err
		}
	}
	return total, ctx.Err()
}

// pass resolves one batch within PassTimeout.
func (r *ExpiryResolver) pass(ctx context.Context) (int, error) {
	if r.PassTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.PassTimeout)
		defer cancel()
	}
	return r.Store.ResolveExpiry(ctx, r.Reader, r.TTLs, r.Clock(), r.Batch)
}

// Run resolves on every kick and interval until ctx ends.
func (r *ExpiryResolver) Run(ctx context.Context) error {
	pause.Every(ctx, r.Interval, r.kick, func() {
		r.Progress.Start()
		n, err := r.ResolveAll(ctx)
		r.Progress.Finish(err)
		if err != nil && ctx.Err() == nil {
			r.Logger.Warn("expiry resolution incomplete; will retry", "resolved", n, "err", err)
		} else if n > 0 {
			r.Logger.Debug("expiry resolved", "leases", n)
		}
	})
	return nil
}
