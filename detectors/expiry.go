package detectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// Signer signs revocation commands.
type Signer interface {
	Sign(cmd *schemas.RevocationCommand) error
}

// CommandSink delivers revocation commands to the revoker. Submit returns
// only when every command is durably queued; commands carry deterministic
// ids, so submitting one twice is harmless.
type CommandSink interface {
	Submit(ctx context.Context, cmds []schemas.RevocationCommand) error
}

// ValidUntilReader reads pg_roles.rolvaliduntil in a target database.
type ValidUntilReader interface {
	ValidUntil(ctx context.Context, database string, users []string) (map[string]time.Time, error)
}

// ExpiryConfig configures the expiry detector.
type ExpiryConfig struct {
	// Grace after the expire time before a lease is due (Vault's own
	// revocation usually lands within seconds; give it the chance).
	Grace    time.Duration
	Interval time.Duration
	Batch    int
	Modes    Modes
	Scope    Scope
	// ApprovalTTL: how long a revocation of a rule in approve mode waits
	// for an owner (approval.go); 0 means DefaultApprovalTTL.
	ApprovalTTL time.Duration
}

// Validate checks the configuration.
func (c ExpiryConfig) Validate() error {
	switch {
	case c.Grace < 0:
		return errors.New("expiry grace is negative")
	case c.Interval <= 0:
		return errors.New("expiry interval must be positive")
	case c.Batch <= 0:
		return errors.New("expiry batch must be positive")
	}
	return nil
}

// Expiry finds leases past their expiry plus grace with no revocation, and
// raises lease-expired-not-revoked: a finding, and in enforce mode a signed
// revocation command.
type Expiry struct {
	cfg      ExpiryConfig
	pool     *pgxpool.Pool
	reader   ValidUntilReader
	signer   Signer
	sink     CommandSink
	evidence evidence.Builder
	clock    func() time.Time
	logger   *slog.Logger
	metrics  *Metrics
}

// ExpiryDeps are the expiry detector's collaborators.
type ExpiryDeps struct {
	// Pool of the state store (search_path set to its schema).
	Pool     *pgxpool.Pool
	Reader   ValidUntilReader
	Signer   Signer
	Sink     CommandSink
	Evidence evidence.Builder
	Clock    func() time.Time
	Logger   *slog.Logger
	Metrics  *Metrics
}

// NewExpiry builds the detector.
func NewExpiry(cfg ExpiryConfig, d ExpiryDeps) (*Expiry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Pool == nil || d.Reader == nil || d.Signer == nil || d.Sink == nil {
		return nil, errors.New("expiry detector: pool, reader, signer and sink are required")
	}
	if cfg.Modes == nil {
		cfg.Modes, _ = ParseModes("")
	}
	if d.Clock == nil {
		d.Clock = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Metrics == nil {
		d.Metrics = NewMetrics(nil)
	}
	return &Expiry{cfg: cfg, pool: d.Pool, reader: d.Reader, signer: d.Signer, sink: d.Sink,
		evidence: d.Evidence, clock: d.Clock, logger: d.Logger, metrics: d.Metrics}, nil
}

// Run ticks until ctx ends. A tick that found a full batch is followed at
// once by another, so a mass expiry drains without waiting for the interval.
func (e *Expiry) Run(ctx context.Context) error {
	t := time.NewTicker(e.cfg.Interval)
	defer t.Stop()
	for {
		n, err := e.Tick(ctx)
		if err != nil && ctx.Err() == nil {
			e.logger.Warn("expiry pass failed; will retry", "err", err)
		}
		if err == nil && n >= e.cfg.Batch {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Tick handles one batch of due leases and returns how many it claimed.
func (e *Expiry) Tick(ctx context.Context) (int, error) {
	start := time.Now()
	defer func() { e.metrics.tick.Observe(time.Since(start).Seconds()) }()
	now := e.clock()
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	due, err := store.ClaimDue(ctx, tx, now.Add(-e.cfg.Grace), e.cfg.Batch)
	if err != nil || len(due) == 0 {
		return 0, err
	}
	validUntil := e.readValidUntil(ctx, due)

	var findings []schemas.Finding
	var expired []string
	var cmds []schemas.RevocationCommand
	hold := newApprovalHold(e.cfg.ApprovalTTL)
	for _, l := range due {
		vu, known := validUntil[l.Database]
		if !known {
			continue // target unreachable: leave the lease for a later pass
		}
		if until, ok := vu[l.DBUser]; ok && until.After(now) {
			// The database still honours the password: Vault renewed the
			// lease and the ledger has not seen it. Never drop on a stale
			// expiry.
			if err := store.ExtendExpiry(ctx, tx, l.LeaseID, until, now); err != nil {
				return 0, err
			}
			e.metrics.extended.Inc()
			e.logger.Info("lease still valid in the database; expiry moved", "lease_id", l.LeaseID, "valid_until", until)
			continue
		}
		f, cmd, err := e.judge(l, now, vu)
		if err != nil {
			return 0, err
		}
		if cmd = hold.route(&f, cmd, now); cmd != nil {
			cmds = append(cmds, *cmd)
		}
		findings = append(findings, f)
		expired = append(expired, l.LeaseID)
	}
	if len(cmds) > 0 {
		if err := e.sink.Submit(ctx, cmds); err != nil {
			return 0, fmt.Errorf("queue %d revocations: %w", len(cmds), err)
		}
	}
	if err := store.MarkExpired(ctx, tx, expired, now); err != nil {
		return 0, err
	}
	if err := hold.save(ctx, tx); err != nil {
		return 0, err
	}
	// Evidence last: appending holds the chain head lock until commit.
	if err := e.recordAll(ctx, tx, findings, due); err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("commit expiry pass: %w", err)
	}
	for _, f := range findings {
		e.metrics.findings.WithLabelValues(f.Rule, string(f.Severity), string(f.Mode), f.Action).Inc()
	}
	return len(due), nil
}

// readValidUntil reads rolvaliduntil per database; a database that cannot
// be read is missing from the result.
func (e *Expiry) readValidUntil(ctx context.Context, due []store.DueLease) map[string]map[string]time.Time {
	users := map[string][]string{}
	for _, l := range due {
		users[l.Database] = append(users[l.Database], l.DBUser)
	}
	out := map[string]map[string]time.Time{}
	for db, us := range users {
		vu, err := e.reader.ValidUntil(ctx, db, us)
		if err != nil {
			e.logger.Warn("cannot read target; its due leases wait", "database", db, "err", err)
			e.metrics.targetErrors.WithLabelValues(db).Inc()
			continue
		}
		out[db] = vu
	}
	return out
}

func (e *Expiry) judge(l store.DueLease, now time.Time, vu map[string]time.Time) (schemas.Finding, *schemas.RevocationCommand, error) {
	mode := e.cfg.Modes.Mode(RuleLeaseExpired)
	inScope := e.cfg.Scope.Contains(l.Database, l.Mount, l.Role)
	facts := map[string]any{
		"expire_at":     l.ExpireAt.UTC().Format(time.RFC3339Nano),
		"expire_source": l.ExpireSource,
		"grace_seconds": e.cfg.Grace.Seconds(),
		"last_event":    l.LastEvent,
	}
	if !l.LastEventAt.IsZero() {
		facts["last_event_at"] = l.LastEventAt.UTC().Format(time.RFC3339Nano)
	}
	if l.LastRequestID != "" {
		facts["last_vault_request_id"] = l.LastRequestID
	}
	if l.IssuedAt != nil {
		facts["issued_at"] = l.IssuedAt.UTC().Format(time.RFC3339Nano)
	}
	if until, ok := vu[l.DBUser]; ok {
		facts["pg_valid_until"] = until.UTC().Format(time.RFC3339Nano)
	}
	f := schemas.Finding{
		Type:       schemas.FindingType,
		ID:         id(RuleLeaseExpired, l.LeaseID, l.ExpireAt.UTC().Format(time.RFC3339Nano)),
		Rule:       RuleLeaseExpired,
		Severity:   schemas.SeverityHigh,
		Mode:       mode,
		InScope:    inScope,
		DetectedAt: now.UTC(),
		Database:   l.Database,
		DBUser:     l.DBUser,
		LeaseID:    l.LeaseID,
		Mount:      l.Mount,
		Role:       l.Role,
		EntityID:   l.EntityID,
		Summary: fmt.Sprintf("lease %s expired at %s (%s) and no revocation was seen within %s",
			l.LeaseID, l.ExpireAt.UTC().Format(time.RFC3339), l.ExpireSource, e.cfg.Grace),
		Facts:  facts,
		Action: schemas.ActionNone,
	}
	if !Acts(mode) || !inScope {
		return f, nil, nil
	}
	cmd := schemas.RevocationCommand{
		Type:      schemas.RevocationCommandType,
		ID:        id("revoke", l.Database, l.DBUser, l.LeaseID, RuleLeaseExpired),
		IssuedAt:  now.UTC(),
		Issuer:    "detector",
		Rule:      RuleLeaseExpired,
		FindingID: f.ID,
		Database:  l.Database,
		DBUser:    l.DBUser,
		LeaseID:   l.LeaseID,
		Reason:    f.Summary,
	}
	if err := e.signer.Sign(&cmd); err != nil {
		return f, nil, fmt.Errorf("sign command for %s: %w", l.LeaseID, err)
	}
	f.Action = schemas.ActionRevocationRequested
	f.CommandID = cmd.ID
	return f, &cmd, nil
}

// recordAll appends the evidence of the findings to the outbox (the chain
// head locked once for the pass) and records each finding with its
// evidence id.
func (e *Expiry) recordAll(ctx context.Context, tx pgx.Tx, findings []schemas.Finding, due []store.DueLease) error {
	if len(findings) == 0 {
		return nil
	}
	byLease := make(map[string]*store.DueLease, len(due))
	for i := range due {
		byLease[due[i].LeaseID] = &due[i]
	}
	evs := make([]evidence.Event, len(findings))
	for i, f := range findings {
		var lc *evidence.LeaseContext
		if l, ok := byLease[f.LeaseID]; ok {
			lc = &evidence.LeaseContext{LeaseID: l.LeaseID, VaultRequestID: l.LastRequestID, EntityID: l.EntityID,
				RemoteAddress: l.RemoteAddress, Mount: l.Mount, Role: l.Role}
		}
		ev, err := e.evidence.Finding(f, lc)
		if err != nil {
			return fmt.Errorf("build finding evidence: %w", err)
		}
		evs[i] = ev
	}
	evs, err := evidence.AppendMany(ctx, tx, evs)
	if err != nil {
		return fmt.Errorf("append finding evidence: %w", err)
	}
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID
	}
	_, err = store.InsertFindings(ctx, tx, findings, ids)
	return err
}

// Metrics are the detectors' Prometheus metrics.
type Metrics struct {
	findings     *prometheus.CounterVec
	extended     prometheus.Counter
	targetErrors *prometheus.CounterVec
	tick         prometheus.Histogram
}

// NewMetrics creates and registers (when reg is not nil) detector metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		findings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaseguard_findings_total",
			Help: "Findings raised, by rule, severity, mode and action.",
		}, []string{"rule", "severity", "mode", "action"}),
		extended: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leaseguard_expiry_extended_total",
			Help: "Due leases whose user the database still showed valid (a renewal the ledger missed); not revoked.",
		}),
		targetErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaseguard_detector_target_errors_total",
			Help: "Detector passes that could not read a target database.",
		}, []string{"database"}),
		tick: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "leaseguard_detector_pass_seconds",
			Help:    "Duration of one expiry detector pass.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.findings, m.extended, m.targetErrors, m.tick)
	}
	return m
}
