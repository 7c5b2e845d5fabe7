package vaultlink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/ops/progress"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// Ledger applies lease events to the lease ledger (*store.Store).
type Ledger interface {
	Apply(ctx context.Context, b store.Batch) (store.ApplyStats, error)
}

var _ Ledger = (*store.Store)(nil)

// RevocationLinkerConfig configures the RevocationLinker.
type RevocationLinkerConfig struct {
	// Devices are the audit devices whose entries leaseguard receives (see
	// HMACResolverConfig.Devices).
	Devices []string
	// Interval between passes (default 1s).
	Interval time.Duration
	// Wanted: lease ids hashed per device per pass while a hashed
	// revocation waits for its lease (default 200); the newest leases
	// issued before the latest waiting revocation first.
	Wanted int
	// Ahead: newly issued lease ids hashed per device per pass before any
	// revocation names them (default 20), so that a revocation is usually
	// linked at once; negative: none (only on demand).
	Ahead int
	// AheadWindow: leases first seen within it count as newly issued
	// (default 1h); older ones are hashed only when a revocation may name
	// them.
	AheadWindow time.Duration
	// LookBack: hashed revocations older than this no longer make
	// leaseguard hash leases for them (default 24h); an HMAC already known
	// still links them.
	LookBack time.Duration
	// Recheck: after the leases a waiting revocation may name are all
	// hashed and none matched, how long before they are looked for again
	// while the waiting revocations stay the same (default 1m; late issue
	// entries). Newly issued leases are hashed ahead meanwhile.
	Recheck time.Duration
	// MaxLinks: revocations linked per pass (default 500).
	MaxLinks int
	// Progress hears of each pass (nil: nobody).
	Progress *progress.Worker
}

// RevocationLinker links revocations through the API body
// (sys/leases/revoke with the lease id in the body, which Vault's audit
// devices log only as an HMAC, kept in hashed_revocations) to their leases,
// exactly: lease ids are plain in the issue response, so it hashes the
// ledger's lease ids through sys/audit-hash/<device> for every device —
// each at most once per device (vault_lease_id_hmacs) — and a hashed
// revocation whose HMAC is one of them is applied to the ledger as the
// revoked event a revoke naming the lease in plain would have given (the
// same lease event, state and revocation method), and recorded in
// vault_revocation_links with method "hmac", the device and the event id.
//
// Cost: newly issued leases (first seen within AheadWindow) are hashed
// ahead at a bounded rate (Ahead per device per pass); a revocation that
// finds no HMAC has the leases that may be its own hashed (Wanted per
// pass, newest first, only leases seen before the revocation and not ended
// before it). A revocation no lease of the ledger matches (a lease of
// another engine) costs one search per Recheck once every candidate is
// hashed. Every audit-hash call is itself an entry in Vault's audit log.
type RevocationLinker struct {
	cfg     RevocationLinkerConfig
	pool    *pgxpool.Pool
	ledger  Ledger
	hasher  Hasher
	logger  *slog.Logger
	metrics *Metrics
	now     func() time.Time
	// exhausted: per device, the waiting revocations for which no lease
	// was left to hash, and when that was found.
	exhausted map[string]exhaustedSearch
}

type exhaustedSearch struct {
	pending PendingHashedRevocations
	at      time.Time
}

// NewRevocationLinker builds a linker.
func NewRevocationLinker(cfg RevocationLinkerConfig, pool *pgxpool.Pool, ledger Ledger, h Hasher, logger *slog.Logger, m *Metrics, clock func() time.Time) (*RevocationLinker, error) {
	devices, err := CleanDevices(cfg.Devices)
	if err != nil {
		return nil, fmt.Errorf("revocation linker: %w", err)
	}
	cfg.Devices = devices
	if pool == nil || ledger == nil || h == nil {
		return nil, errors.New("revocation linker: pool, ledger and hasher are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Wanted <= 0 {
		cfg.Wanted = 200
	}
	if cfg.Ahead == 0 {
		cfg.Ahead = 20
	}
	if cfg.AheadWindow <= 0 {
		cfg.AheadWindow = time.Hour
	}
	if cfg.LookBack <= 0 {
		cfg.LookBack = 24 * time.Hour
	}
	if cfg.Recheck <= 0 {
		cfg.Recheck = time.Minute
	}
	if cfg.MaxLinks <= 0 {
		cfg.MaxLinks = 500
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
	return &RevocationLinker{cfg: cfg, pool: pool, ledger: ledger, hasher: h, logger: logger, metrics: m, now: clock,
		exhausted: map[string]exhaustedSearch{}}, nil
}

// Run links until ctx ends.
func (l *RevocationLinker) Run(ctx context.Context) error {
	return every(ctx, l.cfg.Interval, l.logger, "revocation linking pass", l.cfg.Progress, func(ctx context.Context) error {
		_, err := l.Pass(ctx)
		return err
	})
}

// Pass links what the known HMACs match, hashes one round of lease ids
// (those a waiting revocation may name, then newly issued ones), and links
// again. It returns the revocations linked.
func (l *RevocationLinker) Pass(ctx context.Context) ([]RevocationMatch, error) {
	linked, err := l.link(ctx)
	if err != nil {
		return linked, err
	}
	pending, err := HashedRevocationsPending(ctx, l.pool, l.now().Add(-l.cfg.LookBack))
	if err != nil {
		return linked, err
	}
	hashed, hashErr := 0, error(nil)
	for _, dev := range l.cfg.Devices {
		n, err := l.hashDevice(ctx, dev, pending)
		hashed += n
		if err != nil {
			hashErr = err
			break
		}
	}
	if hashed > 0 {
		more, err := l.link(ctx)
		linked = append(linked, more...)
		if err != nil {
			return linked, err
		}
		pending.Count -= len(more)
	}
	l.metrics.revokePending.Set(float64(max(pending.Count, 0)))
	return linked, hashErr
}

// hashDevice hashes, through dev, the lease ids a waiting revocation may
// name (when one waits) and then newly issued ones, and records the HMACs.
// It returns how many it recorded; on a Vault error, what was hashed
// before it is recorded.
func (l *RevocationLinker) hashDevice(ctx context.Context, dev string, pending PendingHashedRevocations) (int, error) {
	type want struct{ id, reason string }
	var todo []want
	seen := map[string]bool{}
	add := func(ids []string, reason string) {
		for _, id := range ids {
			if !seen[id] {
				seen[id] = true
				todo = append(todo, want{id, reason})
			}
		}
	}
	now := l.now()
	ex, seenBefore := l.exhausted[dev]
	if pending.Count > 0 && !(seenBefore && samePending(ex.pending, pending) && now.Sub(ex.at) < l.cfg.Recheck) {
		ids, err := UnhashedLeaseIDs(ctx, l.pool, dev, LeaseWindow{From: pending.Earliest, To: pending.Latest}, l.cfg.Wanted)
		if err != nil {
			return 0, err
		}
		add(ids, "wanted")
		if len(ids) == 0 {
			l.exhausted[dev] = exhaustedSearch{pending: pending, at: now}
		} else {
			delete(l.exhausted, dev)
		}
	}
	if l.cfg.Ahead > 0 {
		ids, err := UnhashedLeaseIDs(ctx, l.pool, dev, LeaseWindow{SeenSince: now.Add(-l.cfg.AheadWindow)}, l.cfg.Ahead)
		if err != nil {
			return 0, err
		}
		add(ids, "ahead")
	}
	hashes := map[string]string{}
	var hashErr error
	for _, w := range todo {
		sum, err := l.hasher.AuditHash(ctx, dev, w.id)
		if err != nil {
			l.metrics.leaseHashed.WithLabelValues(w.reason, "error").Inc()
			hashErr = err
			break
		}
		l.metrics.leaseHashed.WithLabelValues(w.reason, "ok").Inc()
		hashes[w.id] = sum
	}
	if err := SaveLeaseIDHMACs(ctx, l.pool, dev, hashes, l.now()); err != nil {
		return 0, err
	}
	return len(hashes), hashErr
}

// link applies every hashed revocation a recorded lease id HMAC matches
// (up to MaxLinks) as the plain revocation it is, then records the links.
// Applying is idempotent (the event id is the plain revocation's), so a
// failure between the two steps is repaired by the next pass.
func (l *RevocationLinker) link(ctx context.Context) ([]RevocationMatch, error) {
	ms, err := MatchHashedRevocations(ctx, l.pool, l.cfg.Devices, l.cfg.MaxLinks)
	if err != nil || len(ms) == 0 {
		return nil, err
	}
	events := make([]schemas.LeaseEvent, len(ms))
	ids := make([]string, len(ms))
	for i, m := range ms {
		events[i] = m.Event()
		ids[i] = store.EventID(&events[i])
	}
	if _, err := l.ledger.Apply(ctx, store.Batch{Leases: events}); err != nil {
		return nil, fmt.Errorf("apply %d linked revocations: %w", len(events), err)
	}
	if err := RecordRevocationLinks(ctx, l.pool, ms, ids, l.now()); err != nil {
		return nil, err
	}
	for _, m := range ms {
		l.metrics.revokeLinks.Inc()
		l.logger.Info("revocation through the API body linked to its lease", "lease_id", m.LeaseID, "database", m.Database,
			"revoked_at", m.RevokedAt, "vault_request_id", m.RequestID, "method", "hmac", "device", m.Device)
	}
	return ms, nil
}

func samePending(a, b PendingHashedRevocations) bool {
	return a.Count == b.Count && a.Earliest.Equal(b.Earliest) && a.Latest.Equal(b.Latest)
}
