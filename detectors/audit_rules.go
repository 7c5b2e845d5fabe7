package detectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/internal/pause"
	"github.com/leaseguard/leaseguard/ops/progress"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// The audit-log rules: they judge what the audit stream says Vault did.
// unaudited-issue and mass-revocation name no database user, so they only
// observe. The audit-signal rules (audit_signal_*.go) run in the same passes.
const (
	// RuleUnauditedIssue: a creds request entry with no response entry after
	// a window. The response audit write failed (Vault then fails the
	// request), but the backend may already have created a database user
	// that no client holds.
	RuleUnauditedIssue = "unaudited-issue"
	// RuleMassRevocation: sys/leases/revoke-prefix or revoke-force was used.
	RuleMassRevocation = "mass-revocation"
)

// Defaults of AuditRulesConfig.
const (
	DefaultUnauditedWindow    = 2 * time.Minute
	DefaultAuditRulesBatch    = 500
	DefaultAuditRulesInterval = 10 * time.Second
)

// AuditRulesConfig configures the audit-log rules.
type AuditRulesConfig struct {
	// Modes: both rules only observe; enforce is refused. Modes and Scope
	// are the policy when AuditRulesDeps.Policy is nil.
	Modes Modes
	// Scope sets Finding.InScope: an unaudited issue is placed by its Vault
	// mount and role (its database is unknown); a prefix revocation is in
	// scope only when the scope is everywhere ("*").
	Scope Scope
	// UnauditedWindow is how long a creds request may wait for its
	// response entry before unaudited-issue reports it.
	UnauditedWindow time.Duration
	// Batch is the most events of each rule one pass reports.
	Batch    int
	Interval time.Duration
	// Signals configures the audit-signal rules (zero fields: defaults).
	Signals SignalRulesConfig
	// ApprovalTTL: how long a revocation of an audit-signal rule in approve
	// mode waits for an owner (approval.go); 0 means DefaultApprovalTTL.
	ApprovalTTL time.Duration
	// PassTimeout bounds one pass of every rule (0: DefaultPassTimeout).
	PassTimeout time.Duration
}

// DefaultAuditRulesConfig returns the documented defaults.
func DefaultAuditRulesConfig() AuditRulesConfig {
	return AuditRulesConfig{UnauditedWindow: DefaultUnauditedWindow, Batch: DefaultAuditRulesBatch,
		Interval: DefaultAuditRulesInterval, Signals: DefaultSignalRulesConfig()}
}

// Validate checks the configuration.
func (c AuditRulesConfig) Validate() error {
	switch {
	case c.UnauditedWindow <= 0:
		return errors.New("unaudited-issue window must be positive")
	case c.Interval <= 0:
		return errors.New("audit rules interval must be positive")
	case c.Batch <= 0:
		return errors.New("audit rules batch must be positive")
	case c.PassTimeout < 0:
		return errors.New("audit rules pass timeout is negative")
	}
	for _, r := range []string{RuleUnauditedIssue, RuleMassRevocation} {
		if Acts(c.Modes.Mode(r)) {
			return fmt.Errorf("rule %s names no database user and can only observe", r)
		}
	}
	if err := CheckSignalModes(c.Modes); err != nil {
		return err
	}
	return c.Signals.WithDefaults().Validate()
}

// AuditRules runs unaudited-issue and mass-revocation over the ledger. Each
// event is reported once: the rows are claimed FOR UPDATE SKIP LOCKED and
// marked reported in the transaction that records the finding and its
// evidence, so several processes share the work without repeating it.
type AuditRules struct {
	cfg      AuditRulesConfig
	pool     *pgxpool.Pool
	evidence evidence.Builder
	clock    func() time.Time
	logger   *slog.Logger
	metrics  *Metrics
	issuer   Issuer
	sink     CommandSink
	vault    VaultLeases
	policy   PolicySource
	progress *progress.Worker
	// pruned is when the audit-signal scan last pruned its tables.
	pruned time.Time
}

// AuditRulesDeps are the audit rules' collaborators.
type AuditRulesDeps struct {
	// Pool of the state store (search_path set to its schema).
	Pool     *pgxpool.Pool
	Evidence evidence.Builder
	Logger   *slog.Logger
	Metrics  *Metrics
	Clock    func() time.Time
	// Issuer and Sink are required when credential-foreign-address or
	// renewal-past-max-ttl enforce.
	Issuer Issuer
	Sink   CommandSink
	// Vault corroborates those two rules (sys/leases/lookup); nil: their
	// findings stay unconfirmed and nothing is dropped.
	Vault VaultLeases
	// Progress hears of each pass (nil: nobody).
	Progress *progress.Worker
	// Policy is read at the start of every pass (nil: AuditRulesConfig's
	// Modes and Scope). With a policy that may change at run time, Issuer
	// and Sink are required.
	Policy PolicySource
}

// NewAuditRules builds the rules.
func NewAuditRules(cfg AuditRulesConfig, d AuditRulesDeps) (*AuditRules, error) {
	if cfg.Modes == nil {
		cfg.Modes, _ = ParseModes("")
	}
	cfg.Signals = cfg.Signals.WithDefaults()
	if cfg.PassTimeout == 0 {
		cfg.PassTimeout = DefaultPassTimeout
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for _, r := range []string{RuleForeignAddress, RuleRenewalPastMaxTTL} {
		if (d.Policy != nil || Acts(cfg.Modes.Mode(r))) && (d.Issuer == nil || d.Sink == nil) {
			return nil, fmt.Errorf("audit rules: %s may ask for revocations: issuer and sink are required", r)
		}
	}
	if d.Policy == nil {
		d.Policy = StaticPolicy(cfg.Modes, cfg.Scope)
	}
	if d.Pool == nil {
		return nil, errors.New("audit rules: pool is required")
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
	return &AuditRules{cfg: cfg, pool: d.Pool, evidence: d.Evidence, clock: d.Clock, logger: d.Logger, metrics: d.Metrics,
		issuer: d.Issuer, sink: d.Sink, vault: d.Vault, policy: d.Policy, progress: d.Progress}, nil
}

// Run ticks until ctx ends. A pass that claimed a full batch is followed at
// once by another.
func (a *AuditRules) Run(ctx context.Context) error {
	pause.Repeat(ctx, a.cfg.Interval, func() bool {
		a.progress.Start()
		n, err := a.tick(ctx)
		a.progress.Finish(err)
		if err != nil && ctx.Err() == nil {
			a.logger.Warn("audit rules pass failed; will retry", "err", err)
		}
		return err == nil && n >= a.cfg.Batch
	})
	return nil
}

// tick is Tick within PassTimeout: a pass that runs out (a silent state
// store) is rolled back and tried again at the next interval.
func (a *AuditRules) tick(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.PassTimeout)
	defer cancel()
	return a.Tick(ctx)
}

// Tick runs one pass of each rule and returns how many queued events
// (creds requests, prefix revocations, audit-device entries) they claimed.
// The rules use separate transactions: one failing does not hold up the
// others. The scanning audit-signal rules run in one more transaction,
// which also commits when it found nothing (its marks and prunes).
func (a *AuditRules) Tick(ctx context.Context) (int, error) {
	start := time.Now()
	defer func() { a.metrics.tick.Observe(time.Since(start).Seconds()) }()
	now := a.clock()
	n1, err1 := a.inTx(ctx, false, func(tx pgx.Tx, pol Policy) (int, []schemas.Finding, error) { return a.unaudited(ctx, tx, pol, now) })
	n2, err2 := a.inTx(ctx, false, func(tx pgx.Tx, pol Policy) (int, []schemas.Finding, error) {
		return a.massRevocations(ctx, tx, pol, now)
	})
	n3, err3 := a.inTx(ctx, false, func(tx pgx.Tx, pol Policy) (int, []schemas.Finding, error) { return a.auditDevices(ctx, tx, pol, now) })
	_, err4 := a.inTx(ctx, true, func(tx pgx.Tx, pol Policy) (int, []schemas.Finding, error) { return a.signalScan(ctx, tx, pol, now) })
	return n1 + n2 + n3, errors.Join(err1, err2, err3, err4)
}

// inTx runs one pass in its own transaction, under the policy read in it
// (never kept for the next pass).
func (a *AuditRules) inTx(ctx context.Context, always bool, pass func(pgx.Tx, Policy) (int, []schemas.Finding, error)) (int, error) {
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer rollback(ctx, tx)
	pol, err := a.policy.Policy(ctx, tx)
	if err != nil {
		return 0, fmt.Errorf("read the enforcement policy: %w", err)
	}
	n, fresh, err := pass(tx, pol)
	if err != nil || (n == 0 && !always) {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("commit audit rules pass: %w", err)
	}
	for _, f := range fresh {
		a.metrics.findings.WithLabelValues(f.Rule, string(f.Severity), string(f.Mode), f.Action).Inc()
	}
	return n, nil
}

func (a *AuditRules) unaudited(ctx context.Context, tx pgx.Tx, pol Policy, now time.Time) (int, []schemas.Finding, error) {
	reqs, err := store.ClaimUnauditedIssues(ctx, tx, now.Add(-a.cfg.UnauditedWindow), a.cfg.Batch)
	if err != nil || len(reqs) == 0 {
		return 0, nil, err
	}
	ids := make([]string, len(reqs))
	for i, r := range reqs {
		ids[i] = r.RequestID
	}
	if err := store.MarkUnauditedReported(ctx, tx, ids, now); err != nil {
		return 0, nil, err
	}
	// Evidence last: appending holds the chain head lock until commit.
	var fresh []schemas.Finding
	for _, r := range reqs {
		f := a.unauditedFinding(pol, r, now)
		lc := &evidence.LeaseContext{VaultRequestID: r.RequestID, EntityID: r.EntityID,
			RemoteAddress: r.RemoteAddress, Mount: r.Mount, Role: r.Role}
		isNew, err := a.record(ctx, tx, f, lc)
		if err != nil {
			return 0, nil, err
		}
		if isNew {
			fresh = append(fresh, f)
		}
	}
	return len(reqs), fresh, nil
}

func (a *AuditRules) unauditedFinding(pol Policy, r store.CredsRecord, now time.Time) schemas.Finding {
	facts := map[string]any{
		"vault_request_id": r.RequestID,
		"path":             r.Path,
		"mount":            r.Mount,
		"role":             r.Role,
		"entity_id":        r.EntityID,
		"remote_address":   r.RemoteAddress,
		"requested_at":     r.Time.UTC().Format(time.RFC3339Nano),
		"window_seconds":   a.cfg.UnauditedWindow.Seconds(),
	}
	for k, v := range map[string]string{"namespace": r.Namespace, "token_accessor": r.TokenAccessor, "display_name": r.DisplayName} {
		if v != "" {
			facts[k] = v
		}
	}
	path := r.Path
	if path == "" {
		path = r.Mount + "/creds/" + r.Role
	}
	return schemas.Finding{
		Type:       schemas.FindingType,
		ID:         id(RuleUnauditedIssue, r.RequestID),
		Rule:       RuleUnauditedIssue,
		Severity:   schemas.SeverityHigh,
		Mode:       pol.Modes.Mode(RuleUnauditedIssue),
		InScope:    pol.Scope.Contains("", r.Mount, r.Role),
		DetectedAt: now.UTC(),
		Mount:      r.Mount,
		Role:       r.Role,
		EntityID:   r.EntityID,
		Summary: fmt.Sprintf("creds request %s (%s) logged at %s has no response entry after %s: Vault may have created a database user that no client holds",
			r.RequestID, path, r.Time.UTC().Format(time.RFC3339), a.cfg.UnauditedWindow),
		Facts:  facts,
		Action: schemas.ActionNone,
	}
}

func (a *AuditRules) massRevocations(ctx context.Context, tx pgx.Tx, pol Policy, now time.Time) (int, []schemas.Finding, error) {
	ps, err := store.ClaimPrefixRevocations(ctx, tx, a.cfg.Batch)
	if err != nil || len(ps) == 0 {
		return 0, nil, err
	}
	if err := store.MarkPrefixRevocationsReported(ctx, tx, ps, now); err != nil {
		return 0, nil, err
	}
	var fresh []schemas.Finding
	for _, p := range ps {
		f := massRevocationFinding(pol, p, now)
		isNew, err := a.record(ctx, tx, f, &evidence.LeaseContext{VaultRequestID: p.VaultRequestID})
		if err != nil {
			return 0, nil, err
		}
		if isNew {
			fresh = append(fresh, f)
		}
	}
	return len(ps), fresh, nil
}

func massRevocationFinding(pol Policy, p store.PrefixRevocation, now time.Time) schemas.Finding {
	at := p.RevokedAt.UTC().Format(time.RFC3339Nano)
	facts := map[string]any{
		"prefix":         p.Prefix,
		"method":         p.Method,
		"revoked_at":     at,
		"leases_revoked": p.LeasesRevoked,
	}
	if p.VaultRequestID != "" {
		facts["vault_request_id"] = p.VaultRequestID
	}
	if p.Namespace != "" {
		facts["namespace"] = p.Namespace
	}
	return schemas.Finding{
		Type:       schemas.FindingType,
		ID:         id(RuleMassRevocation, p.Prefix, at),
		Rule:       RuleMassRevocation,
		Severity:   schemas.SeverityMedium,
		Mode:       pol.Modes.Mode(RuleMassRevocation),
		InScope:    pol.Scope.All,
		DetectedAt: now.UTC(),
		Summary: fmt.Sprintf("%s of prefix %q at %s revoked %d lease(s) known to the ledger",
			p.Method, p.Prefix, p.RevokedAt.UTC().Format(time.RFC3339), p.LeasesRevoked),
		Facts:  facts,
		Action: schemas.ActionNone,
	}
}

// record appends the finding's evidence and stores the finding, in tx; it
// reports whether the finding is new.
func (a *AuditRules) record(ctx context.Context, tx pgx.Tx, f schemas.Finding, lc *evidence.LeaseContext) (bool, error) {
	ev, err := a.evidence.Finding(f, lc)
	if err != nil {
		return false, fmt.Errorf("build finding evidence: %w", err)
	}
	fresh, err := store.InsertFinding(ctx, tx, f, ev.ID)
	if err != nil {
		return false, err
	}
	// Evidence last: appending holds the chain head lock until commit.
	if _, err := evidence.Append(ctx, tx, ev); err != nil {
		return false, fmt.Errorf("append finding evidence: %w", err)
	}
	return fresh, nil
}
