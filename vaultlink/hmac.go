package vaultlink

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/store"
)

// Hasher computes an audit device's HMAC of a string (*Client).
type Hasher interface {
	AuditHash(ctx context.Context, device, input string) (string, error)
}

var _ Hasher = (*Client)(nil)

// HMACResolverConfig configures the HMACResolver.
type HMACResolverConfig struct {
	// Device is the path of the audit device whose entries leaseguard
	// receives (e.g. "file"): its salt makes the HMACs in the ledger.
	Device string
	// ManagedPattern: only role names it matches are hashed.
	ManagedPattern *regexp.Regexp
	// Interval between passes (default 2s); Batch: names hashed per pass
	// (default 200).
	Interval time.Duration
	Batch    int
}

// HMACResolver links leases whose user the audit log showed only as an
// HMAC (an untuned database mount) to their users, exactly: it hashes each
// newly seen managed role name (db_roles, written by the observer) through
// sys/audit-hash/<device>, records the HMAC, and links every HMAC'd lease
// whose user HMAC equals it (the lease row gets the plain name; the link is
// recorded with method "hmac"). Without Vault, the observer's rules still
// link by the username template, as "probable".
type HMACResolver struct {
	cfg     HMACResolverConfig
	pool    *pgxpool.Pool
	hasher  Hasher
	logger  *slog.Logger
	metrics *Metrics
	now     func() time.Time
	// after pages through the names (role names sort by byte).
	after string
}

// NewHMACResolver builds a resolver.
func NewHMACResolver(cfg HMACResolverConfig, pool *pgxpool.Pool, h Hasher, logger *slog.Logger, m *Metrics, clock func() time.Time) (*HMACResolver, error) {
	if cfg.Device == "" || cfg.ManagedPattern == nil || pool == nil || h == nil {
		return nil, errors.New("hmac resolver: device, managed pattern, pool and hasher are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 200
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	if clock == nil {
		clock = time.Now
	}
	return &HMACResolver{cfg: cfg, pool: pool, hasher: h, logger: logger, metrics: m, now: clock}, nil
}

// Run resolves until ctx ends.
func (h *HMACResolver) Run(ctx context.Context) error {
	for {
		if _, err := h.Pass(ctx); err != nil && ctx.Err() == nil {
			h.logger.Warn("hmac resolution pass failed", "err", err)
		}
		t := time.NewTimer(h.cfg.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Pass hashes the names not hashed yet (one batch) and links what their
// HMACs match. It returns the links made.
func (h *HMACResolver) Pass(ctx context.Context) ([]store.LeaseLink, error) {
	limit := h.cfg.Batch * 4
	names, err := store.UnhashedRoleNames(ctx, h.pool, h.cfg.Device, h.after, limit)
	if err != nil {
		return nil, err
	}
	h.after = ""
	if len(names) == limit {
		h.after = names[len(names)-1]
	}
	hashes := map[string]string{}
	var hashErr error
	prev := ""
	for _, n := range names {
		if len(hashes) >= h.cfg.Batch {
			h.after = prev // go on from n next pass
			break
		}
		prev = n
		if !h.cfg.ManagedPattern.MatchString(n) {
			continue
		}
		sum, err := h.hasher.AuditHash(ctx, h.cfg.Device, n)
		if err != nil {
			h.metrics.hashed.WithLabelValues("error").Inc()
			hashErr = err
			h.after = "" // Vault down or refusing: the next pass starts again
			break
		}
		h.metrics.hashed.WithLabelValues("ok").Inc()
		hashes[n] = sum
	}
	now := h.now()
	var links []store.LeaseLink
	err = pgx.BeginFunc(ctx, h.pool, func(tx pgx.Tx) error {
		if err := store.SaveUserHMACs(ctx, tx, h.cfg.Device, hashes, now); err != nil {
			return err
		}
		var err error
		links, err = store.LinkHMACLeases(ctx, tx, h.cfg.Device, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		h.metrics.hmacLinks.Inc()
		h.logger.Info("hmac'd lease linked to its user", "lease_id", l.LeaseID, "database", l.Database, "db_user", l.DBUser, "method", l.Method)
	}
	return links, hashErr
}
