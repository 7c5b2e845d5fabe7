package vaultlink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/ops/progress"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// LeaseConfirmer asks Vault about the leases the ledger knows from the
// audit stream and Vault has not confirmed yet (sys/leases/lookup), and
// records that Vault holds them (vault_seen_at). That record is what lets
// Vault corroborate a lease's end later: Vault no longer holding a lease it
// held is a lease that ended; Vault not holding a lease it never held is a
// lease known from the bus alone (a forged entry, perhaps), and corroborates
// nothing. When the database gives the lease no expiry (a password valid
// without limit, or an engine without VALID UNTIL), Vault's expire_time
// becomes the lease's expiry (source vault_lookup).
type LeaseConfirmer struct {
	cfg    ConfirmerConfig
	pool   *pgxpool.Pool
	vault  LeaseLookup
	logger *slog.Logger
	clock  func() time.Time
}

// LeaseLookup is what the confirmer asks of Vault (Client).
type LeaseLookup interface {
	LookupLease(ctx context.Context, leaseID string) (LeaseInfo, bool, error)
}

// ConfirmerConfig configures a LeaseConfirmer.
type ConfirmerConfig struct {
	// PerSecond bounds the lookups (default 20): each is one Vault request
	// and two audit entries per device.
	PerSecond int
	// Window: leases first seen longer ago are not asked about (default
	// 24h); a lease Vault never confirmed stays unconfirmed.
	Window time.Duration
	// RetryAfter: a lease Vault did not hold is asked again after this
	// (default 1m): its issue may be newer than the audit entry's order.
	RetryAfter time.Duration
	// Progress hears of each pass (nil: nobody).
	Progress *progress.Worker
}

func (c ConfirmerConfig) withDefaults() ConfirmerConfig {
	if c.PerSecond <= 0 {
		c.PerSecond = 20
	}
	if c.Window <= 0 {
		c.Window = 24 * time.Hour
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = time.Minute
	}
	return c
}

// NewLeaseConfirmer builds a confirmer; clock nil means time.Now.
func NewLeaseConfirmer(cfg ConfirmerConfig, pool *pgxpool.Pool, vault LeaseLookup, logger *slog.Logger, clock func() time.Time) (*LeaseConfirmer, error) {
	if pool == nil || vault == nil {
		return nil, errors.New("lease confirmer: pool and vault are required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if clock == nil {
		clock = time.Now
	}
	return &LeaseConfirmer{cfg: cfg.withDefaults(), pool: pool, vault: vault, logger: logger, clock: clock}, nil
}

// Run confirms leases, PerSecond each second, until ctx ends.
func (c *LeaseConfirmer) Run(ctx context.Context) error {
	return every(ctx, time.Second, c.logger, "lease confirmation", c.cfg.Progress, func(ctx context.Context) error {
		_, err := c.Pass(ctx)
		return err
	})
}

// confirmSelect picks the leases to ask about: not confirmed by Vault, not
// judged by the expiry detector, first seen within the window, not asked
// about recently; those never asked first.
const confirmSelect = `SELECT lease_id, COALESCE(expire_source, '') FROM leases
	WHERE vault_seen_at IS NULL AND expiry_judged_at IS NULL
	  AND (vault_checked_at IS NULL OR vault_checked_at <= $1)
	  AND first_seen_at >= $2
	ORDER BY vault_checked_at NULLS FIRST, lease_id LIMIT $3`

// Pass asks Vault about up to PerSecond leases and returns how many Vault
// confirmed.
func (c *LeaseConfirmer) Pass(ctx context.Context) (int, error) {
	now := c.clock()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rows, err := c.pool.Query(ctx, confirmSelect, now.Add(-c.cfg.RetryAfter), now.Add(-c.cfg.Window), c.cfg.PerSecond)
	if err != nil {
		return 0, fmt.Errorf("leases to confirm: %w", err)
	}
	type lease struct{ id, source string }
	ls, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (lease, error) {
		var l lease
		return l, r.Scan(&l.id, &l.source)
	})
	if err != nil {
		return 0, fmt.Errorf("leases to confirm: %w", err)
	}
	confirmed := 0
	for _, l := range ls {
		ok, err := c.confirm(ctx, l.id, l.source, now)
		if err != nil {
			return confirmed, err
		}
		if ok {
			confirmed++
		}
	}
	return confirmed, nil
}

// confirm asks Vault about one lease and records the answer.
func (c *LeaseConfirmer) confirm(ctx context.Context, leaseID, source string, now time.Time) (bool, error) {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	info, found, err := c.vault.LookupLease(lctx, leaseID)
	cancel()
	if err != nil {
		return false, fmt.Errorf("look up lease %s: %w", leaseID, err)
	}
	if !found {
		return false, store.MarkVaultChecked(ctx, c.pool, leaseID, now)
	}
	// Vault's expiry is the lease's when the database gives none.
	var expire *time.Time
	if source != string(schemas.ExpireFromValidUntil) && info.ExpireTime != nil && !info.ExpireTime.IsZero() {
		expire = info.ExpireTime
	}
	if err := store.ConfirmInVault(ctx, c.pool, leaseID, now, expire); err != nil {
		return false, err
	}
	return true, nil
}
