package vaultlink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/ops/progress"
)

// Hasher computes an audit device's HMAC of a string (*Client).
type Hasher interface {
	AuditHash(ctx context.Context, device, input string) (string, error)
}

var _ Hasher = (*Client)(nil)

// HMACResolverConfig configures the HMACResolver.
type HMACResolverConfig struct {
	// Devices are the paths of the audit devices whose entries leaseguard
	// receives (e.g. "file", "socket"). Each device hashes with its own
	// salt, and the ledger keeps the HMAC of whichever device's entry
	// arrived first: every device that feeds leaseguard must be listed.
	Devices []string
	// ManagedPattern: only role names it matches are hashed.
	ManagedPattern *regexp.Regexp
	// Interval between passes (default 2s); Batch: names hashed per device
	// per pass (default 200).
	Interval time.Duration
	Batch    int
	// Progress hears of each pass (nil: nobody).
	Progress *progress.Worker
}

// HMACResolver links leases whose user the audit log showed only as an
// HMAC (an untuned database mount) to their users, exactly: it hashes each
// newly seen managed role name (db_roles, written by the observer) through
// sys/audit-hash/<device> for every device, records the HMACs, and links
// every HMAC'd lease whose user HMAC equals one of them (the lease row gets
// the plain name; the link is recorded with method "hmac" and the device).
// Without Vault, the observer's rules still link by the username template,
// as "probable".
type HMACResolver struct {
	cfg     HMACResolverConfig
	pool    *pgxpool.Pool
	hasher  Hasher
	logger  *slog.Logger
	metrics *Metrics
	now     func() time.Time
	// after pages through the names of each device (role names sort by
	// byte).
	after map[string]string
}

// NewHMACResolver builds a resolver.
func NewHMACResolver(cfg HMACResolverConfig, pool *pgxpool.Pool, h Hasher, logger *slog.Logger, m *Metrics, clock func() time.Time) (*HMACResolver, error) {
	devices, err := CleanDevices(cfg.Devices)
	if err != nil {
		return nil, fmt.Errorf("hmac resolver: %w", err)
	}
	cfg.Devices = devices
	if cfg.ManagedPattern == nil || pool == nil || h == nil {
		return nil, errors.New("hmac resolver: managed pattern, pool and hasher are required")
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
	return &HMACResolver{cfg: cfg, pool: pool, hasher: h, logger: logger, metrics: m, now: clock, after: map[string]string{}}, nil
}

// CleanDevices returns the audit device paths without surrounding slashes
// or blanks, each once, in the order given. None, or a path with "..", is
// an error.
func CleanDevices(devices []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, d := range devices {
		d = strings.Trim(strings.TrimSpace(d), "/")
		switch {
		case d == "":
			continue
		case strings.Contains(d, ".."):
			return nil, fmt.Errorf("%q is not an audit device path", d)
		case seen[d]:
			continue
		}
		seen[d] = true
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, errors.New("no audit device")
	}
	return out, nil
}

// Run resolves until ctx ends.
func (h *HMACResolver) Run(ctx context.Context) error {
	return every(ctx, h.cfg.Interval, h.logger, "hmac resolution pass", h.cfg.Progress, func(ctx context.Context) error {
		_, err := h.Pass(ctx)
		return err
	})
}

// Pass hashes, for each device, the names not hashed yet (one batch) and
// links what their HMACs match. It returns the links made.
func (h *HMACResolver) Pass(ctx context.Context) ([]LeaseLink, error) {
	hashes := map[string]map[string]string{}
	var hashErr error
	for _, dev := range h.cfg.Devices {
		hs, err := h.hashDevice(ctx, dev)
		if len(hs) > 0 {
			hashes[dev] = hs
		}
		if err != nil {
			hashErr = err
			break
		}
	}
	now := h.now()
	var links []LeaseLink
	err := pgx.BeginFunc(ctx, h.pool, func(tx pgx.Tx) error {
		for _, dev := range h.cfg.Devices {
			if err := SaveUserHMACs(ctx, tx, dev, hashes[dev], now); err != nil {
				return err
			}
		}
		var err error
		links, err = LinkHMACLeases(ctx, tx, h.cfg.Devices, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		h.metrics.hmacLinks.Inc()
		h.logger.Info("hmac'd lease linked to its user", "lease_id", l.LeaseID, "database", l.Database, "db_user", l.DBUser,
			"method", l.Method, "device", l.Device)
	}
	return links, hashErr
}

// hashDevice hashes up to one batch of the managed names that have no HMAC
// for dev yet. A Vault error ends the batch; what was hashed is returned.
func (h *HMACResolver) hashDevice(ctx context.Context, dev string) (map[string]string, error) {
	limit := h.cfg.Batch * 4
	names, err := UnhashedRoleNames(ctx, h.pool, dev, h.after[dev], limit)
	if err != nil {
		return nil, err
	}
	h.after[dev] = ""
	if len(names) == limit {
		h.after[dev] = names[len(names)-1]
	}
	hashes := map[string]string{}
	prev := ""
	for _, n := range names {
		if len(hashes) >= h.cfg.Batch {
			h.after[dev] = prev // go on from n next pass
			break
		}
		prev = n
		if !h.cfg.ManagedPattern.MatchString(n) {
			continue
		}
		sum, err := h.hasher.AuditHash(ctx, dev, n)
		if err != nil {
			h.metrics.hashed.WithLabelValues("error").Inc()
			h.after[dev] = "" // Vault down or refusing: the next pass starts again
			return hashes, err
		}
		h.metrics.hashed.WithLabelValues("ok").Inc()
		hashes[n] = sum
	}
	return hashes, nil
}
