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
	"github.com/leaseguard/leaseguard/internal/pause"
	"github.com/leaseguard/leaseguard/ops/progress"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
)

// Issuer completes and signs revocation commands (revoker.Issuer): it
// gives each its lifetime, nonce, the target's identity and the role's oid.
type Issuer interface {
	Issue(ctx context.Context, cmds []schemas.RevocationCommand) error
	ProposalSigner
}

// CommandSink delivers revocation commands to the revoker. Submit returns
// only when every command is durably queued; commands carry deterministic
// ids, so submitting one twice is harmless.
type CommandSink interface {
	Submit(ctx context.Context, cmds []schemas.RevocationCommand) error
}

// RoleReader reads pg_roles of users in a target database (target.Set):
// each existing user's oid and rolvaliduntil (nil: NULL or infinity).
type RoleReader interface {
	Roles(ctx context.Context, database string, users []string) (map[string]target.Role, error)
}

// ExpiryConfig configures the expiry detector.
type ExpiryConfig struct {
	// Grace after the expire time before a lease is due (Vault's own
	// revocation usually lands within seconds; give it the chance).
	Grace    time.Duration
	Interval time.Duration
	Batch    int
	// Modes and Scope are the policy when ExpiryDeps.Policy is nil.
	Modes Modes
	Scope Scope
	// ApprovalTTL: how long a revocation of a rule in approve mode waits
	// for an owner (approval.go); 0 means DefaultApprovalTTL.
	ApprovalTTL time.Duration
	// VaultRecheck: how long a lease whose end Vault could not be asked
	// about waits before it is judged again (default 1m).
	VaultRecheck time.Duration
	// CommandTTL is the lifetime of the commands issued (default 10m): a
	// command that never reached the revoker's record within it is issued
	// again (RearmStranded).
	CommandTTL time.Duration
	// PassTimeout bounds one pass, every call in it included: state
	// store, targets, Vault, the queue (default DefaultPassTimeout). A
	// pass that runs out is rolled back and tried again.
	PassTimeout time.Duration
}

// DefaultPassTimeout bounds a detector pass when its configuration gives
// no PassTimeout.
const DefaultPassTimeout = 10 * time.Second

// rollback ends tx after a failed pass, within a bound of its own: ctx may
// have ended, and a silent server must not hold the loop.
func rollback(ctx context.Context, tx pgx.Tx) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	_ = tx.Rollback(rctx) // after a commit, a no-op
}

// rollbackTimeout bounds a rollback.
const rollbackTimeout = 5 * time.Second

// Validate checks the configuration.
func (c ExpiryConfig) Validate() error {
	switch {
	case c.Grace < 0:
		return errors.New("expiry grace is negative")
	case c.Interval <= 0:
		return errors.New("expiry interval must be positive")
	case c.Batch <= 0:
		return errors.New("expiry batch must be positive")
	case c.VaultRecheck < 0:
		return errors.New("expiry vault recheck is negative")
	case c.PassTimeout < 0:
		return errors.New("expiry pass timeout is negative")
	}
	return nil
}

// Expiry finds leases past their expiry plus grace that it has not judged
// (active ones, and ones revoked per the audit log: a revocation seen only
// on the bus neither arms nor disarms a drop), and raises
// lease-expired-not-revoked for those whose user is still in the database.
// It acts only on corroboration, checked in the pass, just before the
// command is issued: the role's rolvaliduntil is finite and has passed, or,
// for a user whose password never expires (NULL or infinity), Vault says
// the lease has ended. Without it, the finding is recorded unconfirmed (it
// raises an alert) and nothing is dropped.
type Expiry struct {
	cfg ExpiryConfig
	// rearmed is when stranded commands were last looked for.
	rearmed  time.Time
	pool     *pgxpool.Pool
	reader   RoleReader
	issuer   Issuer
	sink     CommandSink
	vault    VaultLeases
	policy   PolicySource
	evidence evidence.Builder
	clock    func() time.Time
	logger   *slog.Logger
	metrics  *Metrics
	progress *progress.Worker
}

// ExpiryDeps are the expiry detector's collaborators.
type ExpiryDeps struct {
	// Pool of the state store (search_path set to its schema).
	Pool   *pgxpool.Pool
	Reader RoleReader
	Issuer Issuer
	Sink   CommandSink
	// Vault, when set, is asked about leases whose user's password never
	// expires in the database. nil: such leases stay unconfirmed.
	Vault VaultLeases
	// Policy is read at the start of every pass (nil: ExpiryConfig's
	// Modes and Scope).
	Policy   PolicySource
	Evidence evidence.Builder
	Clock    func() time.Time
	Logger   *slog.Logger
	Metrics  *Metrics
	// Progress hears of each pass (nil: nobody).
	Progress *progress.Worker
}

// NewExpiry builds the detector.
func NewExpiry(cfg ExpiryConfig, d ExpiryDeps) (*Expiry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Pool == nil || d.Reader == nil || d.Issuer == nil || d.Sink == nil {
		return nil, errors.New("expiry detector: pool, reader, issuer and sink are required")
	}
	if cfg.Modes == nil {
		cfg.Modes, _ = ParseModes("")
	}
	if cfg.VaultRecheck == 0 {
		cfg.VaultRecheck = time.Minute
	}
	if cfg.CommandTTL == 0 {
		cfg.CommandTTL = 10 * time.Minute
	}
	if cfg.PassTimeout == 0 {
		cfg.PassTimeout = DefaultPassTimeout
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
	if d.Policy == nil {
		d.Policy = StaticPolicy(cfg.Modes, cfg.Scope)
	}
	return &Expiry{cfg: cfg, pool: d.Pool, reader: d.Reader, issuer: d.Issuer, sink: d.Sink, vault: d.Vault,
		policy: d.Policy, evidence: d.Evidence, clock: d.Clock, logger: d.Logger, metrics: d.Metrics, progress: d.Progress}, nil
}

// Run ticks until ctx ends. A tick that found a full batch is followed at
// once by another, so a mass expiry drains without waiting for the interval.
// Each tick is bounded by PassTimeout: one that runs out (a silent state
// store, target or queue) is logged and tried again at the next interval.
func (e *Expiry) Run(ctx context.Context) error {
	pause.Repeat(ctx, e.cfg.Interval, func() bool {
		e.progress.Start()
		e.rearm(ctx)
		n, err := e.tick(ctx)
		e.progress.Finish(err)
		if err != nil && ctx.Err() == nil {
			e.logger.Warn("expiry pass failed; will retry", "err", err)
		}
		return err == nil && n >= e.cfg.Batch
	})
	return nil
}

// rearm makes due again, every quarter of the command lifetime, the leases
// whose command never reached the revoker's record within its lifetime
// (expired in a long queue, or refused before it was recorded): their
// users would otherwise stay.
func (e *Expiry) rearm(ctx context.Context) {
	now := e.clock()
	if now.Sub(e.rearmed) < e.cfg.CommandTTL/4 {
		return
	}
	e.rearmed = now
	ctx, cancel := context.WithTimeout(ctx, e.cfg.PassTimeout)
	defer cancel()
	ids, err := store.RearmStranded(ctx, e.pool, RuleLeaseExpired, now.Add(-e.cfg.CommandTTL), e.cfg.Batch)
	if err != nil {
		e.logger.Warn("cannot look for stranded revocation commands; will retry", "err", err)
		return
	}
	if len(ids) > 0 {
		e.metrics.rearmed.Add(float64(len(ids)))
		e.logger.Warn("revocation commands never reached the revoker within their lifetime; the leases are judged again",
			"leases", len(ids))
	}
}

// expiryPass is what one pass decided, applied in its transaction.
type expiryPass struct {
	now       time.Time
	policy    Policy
	findings  []schemas.Finding
	cmds      []schemas.RevocationCommand
	judged    []string
	postponed []string
	seen      []string
	hold      *approvalHold
}

// tick is Tick within PassTimeout.
func (e *Expiry) tick(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.PassTimeout)
	defer cancel()
	return e.Tick(ctx)
}

// Tick handles one batch of due leases and returns how many it claimed.
func (e *Expiry) Tick(ctx context.Context) (int, error) {
	start := time.Now()
	defer func() { e.metrics.tick.Observe(time.Since(start).Seconds()) }()
	step := start
	now := e.clock()
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer rollback(ctx, tx)
	// Read first in the pass's transaction (a change of the policy waits
	// for the pass), never kept for the next pass.
	pol, err := e.policy.Policy(ctx, tx)
	if err != nil {
		return 0, fmt.Errorf("read the enforcement policy: %w", err)
	}
	due, err := store.ClaimDue(ctx, tx, now.Add(-e.cfg.Grace), now, e.cfg.Batch)
	if err != nil || len(due) == 0 {
		return 0, err
	}
	step = e.metrics.step("claim", step)
	roles := e.readRoles(ctx, due)
	step = e.metrics.step("read_targets", step)
	p := &expiryPass{now: now, policy: pol, hold: newApprovalHold(e.cfg.ApprovalTTL, e.issuer)}
	for _, l := range due {
		vu, known := roles[l.Database]
		if !known {
			continue // target unreachable: leave the lease for a later pass
		}
		role, present := vu[l.DBUser]
		if err := e.judgeLease(ctx, tx, p, l, role, present); err != nil {
			return 0, err
		}
	}
	step = e.metrics.step("judge", step)
	step, err = e.apply(ctx, tx, p, due, step)
	if err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("commit expiry pass: %w", err)
	}
	e.metrics.step("commit", step)
	for _, f := range p.findings {
		e.metrics.findings.WithLabelValues(f.Rule, string(f.Severity), string(f.Mode), f.Action).Inc()
	}
	return len(due), nil
}

// apply queues the pass's commands, then records its transitions, held
// approvals and findings in tx. Commands go first: if they cannot be
// queued the pass rolls back and the leases stay due. step is when the
// current step began; apply returns when the last of its own ended.
func (e *Expiry) apply(ctx context.Context, tx pgx.Tx, p *expiryPass, due []store.DueLease, step time.Time) (time.Time, error) {
	if len(p.cmds) > 0 {
		if err := e.issuer.Issue(ctx, p.cmds); err != nil {
			return step, fmt.Errorf("issue %d revocations: %w", len(p.cmds), err)
		}
		step = e.metrics.step("issue", step)
		if err := e.sink.Submit(ctx, p.cmds); err != nil {
			return step, fmt.Errorf("queue %d revocations: %w", len(p.cmds), err)
		}
		step = e.metrics.step("queue", step)
	}
	if err := e.mark(ctx, tx, p); err != nil {
		return step, err
	}
	step = e.metrics.step("mark", step)
	// Evidence last: appending holds the chain head lock until commit.
	if err := e.recordAll(ctx, tx, p.findings, due); err != nil {
		return step, err
	}
	return e.metrics.step("record", step), nil
}

// mark records in tx which leases the pass judged, postponed or asked
// Vault about, and the approvals it holds.
func (e *Expiry) mark(ctx context.Context, tx pgx.Tx, p *expiryPass) error {
	if err := store.MarkVaultSeen(ctx, tx, p.seen, p.now); err != nil {
		return err
	}
	if err := store.MarkJudged(ctx, tx, p.judged, p.now); err != nil {
		return err
	}
	if err := store.PostponeJudgement(ctx, tx, p.postponed, p.now.Add(e.cfg.VaultRecheck)); err != nil {
		return err
	}
	return p.hold.save(ctx, tx)
}

// readRoles reads pg_roles per database; a database that cannot be read is
// missing from the result.
func (e *Expiry) readRoles(ctx context.Context, due []store.DueLease) map[string]map[string]target.Role {
	users := map[string][]string{}
	for _, l := range due {
		users[l.Database] = append(users[l.Database], l.DBUser)
	}
	out := map[string]map[string]target.Role{}
	for db, us := range users {
		vu, err := e.reader.Roles(ctx, db, us)
		if err != nil {
			e.logger.Warn("cannot read target; its due leases wait", "database", db, "err", err)
			e.metrics.targetErrors.WithLabelValues(db).Inc()
			continue
		}
		out[db] = vu
	}
	return out
}

// judgeLease decides one due lease: still honoured (its expiry moves), gone
// from the database (Vault's unaudited revocation did its job), or still
// there after its end, corroborated or not.
func (e *Expiry) judgeLease(ctx context.Context, tx pgx.Tx, p *expiryPass, l store.DueLease, role target.Role, present bool) error {
	if !present {
		p.judged = append(p.judged, l.LeaseID)
		return nil
	}
	v := corroborateEnd(ctx, e.vault, l.LeaseID, l.VaultSeenAt, role, p.now)
	if v.seen {
		p.seen = append(p.seen, l.LeaseID)
	}
	if v.extendTo != nil {
		e.metrics.extended.Inc()
		e.logger.Info("lease still valid; expiry moved", "lease_id", l.LeaseID, "until", *v.extendTo, "source", v.extendSource)
		return store.ExtendExpiry(ctx, tx, l.LeaseID, *v.extendTo, p.now, v.extendSource)
	}
	if v.postpone {
		p.postponed = append(p.postponed, l.LeaseID)
	} else {
		p.judged = append(p.judged, l.LeaseID)
	}
	f, cmd := e.judge(p.policy, l, role, p.now, v)
	if cmd = p.hold.route(&f, cmd, p.now); cmd != nil {
		p.cmds = append(p.cmds, *cmd)
	}
	p.findings = append(p.findings, f)
	return nil
}

// judge turns a verdict into a finding under the pass's policy, and into a
// command when the rule enforces (or holds it for approval) in scope. A
// lease outside the scope of a rule that would act is a pilot: corroborated
// like any other, recorded as would_drop, and not acted on.
func (e *Expiry) judge(pol Policy, l store.DueLease, role target.Role, now time.Time, v expiryVerdict) (schemas.Finding, *schemas.RevocationCommand) {
	mode := pol.Modes.Mode(RuleLeaseExpired)
	inScope := pol.Scope.Contains(l.Database, l.Mount, l.Role)
	f := expiryFinding(l, role, now, e.cfg.Grace, v)
	f.Mode, f.InScope = mode, inScope
	if !Acts(mode) {
		return f, nil
	}
	pol.note(f.Facts)
	if !inScope {
		f.ID = pilotID(f.ID)
		pilotFacts(f.Facts, mode)
		if v.corroboration != nil {
			f.Action = schemas.ActionWouldDrop
		}
		return f, nil
	}
	if v.corroboration == nil {
		f.Action = schemas.ActionUnconfirmed
		return f, nil
	}
	cmd := schemas.RevocationCommand{
		ID:            id("revoke", l.Database, l.DBUser, l.LeaseID, RuleLeaseExpired),
		Action:        schemas.ActionDropRole,
		Issuer:        "detector",
		Rule:          RuleLeaseExpired,
		FindingID:     f.ID,
		Database:      l.Database,
		DBUser:        l.DBUser,
		RoleOID:       role.OID,
		LeaseID:       l.LeaseID,
		Reason:        f.Summary,
		Corroboration: *v.corroboration,
	}
	f.Action = schemas.ActionRevocationRequested
	f.CommandID = cmd.ID
	return f, &cmd
}

// expiryFinding is the finding of a judged lease, before mode and scope.
func expiryFinding(l store.DueLease, role target.Role, now time.Time, grace time.Duration, v expiryVerdict) schemas.Finding {
	facts := map[string]any{
		"expire_at":     rfc(l.ExpireAt),
		"expire_source": l.ExpireSource,
		"grace_seconds": grace.Seconds(),
		"last_event":    l.LastEvent,
		"role_oid":      role.OID,
		"corroboration": v.facts(),
	}
	if !l.LastEventAt.IsZero() {
		facts["last_event_at"] = rfc(l.LastEventAt)
	}
	if l.LastRequestID != "" {
		facts["last_vault_request_id"] = l.LastRequestID
	}
	if l.IssuedAt != nil {
		facts["issued_at"] = rfc(*l.IssuedAt)
	}
	if role.ValidUntil != nil {
		facts["pg_valid_until"] = rfc(*role.ValidUntil)
	} else {
		facts["pg_valid_until"] = "none (NULL or infinity)"
	}
	summary := fmt.Sprintf("lease %s expired at %s (%s) and no revocation was seen within %s",
		l.LeaseID, l.ExpireAt.UTC().Format(time.RFC3339), l.ExpireSource, grace)
	if l.State == store.StateRevoked && l.RevokedAt != nil {
		facts["revoked_per_audit_at"] = rfc(*l.RevokedAt)
		summary = fmt.Sprintf("lease %s was revoked per the audit log at %s, and its user is still in the database after the lease's expiry at %s: Vault's revocation evidently failed",
			l.LeaseID, l.RevokedAt.UTC().Format(time.RFC3339), l.ExpireAt.UTC().Format(time.RFC3339))
	}
	fid := id(RuleLeaseExpired, l.LeaseID, rfc(l.ExpireAt))
	if v.corroboration == nil {
		fid = id(fid, "unconfirmed", v.result)
		summary += "; not confirmed: " + v.why
	}
	return schemas.Finding{
		Type: schemas.FindingType, ID: fid, Rule: RuleLeaseExpired, Severity: schemas.SeverityHigh,
		DetectedAt: now.UTC(), Database: l.Database, DBUser: l.DBUser, LeaseID: l.LeaseID, Mount: l.Mount,
		Role: l.Role, EntityID: l.EntityID, Summary: summary, Facts: facts, Action: schemas.ActionNone,
	}
}

// recordAll appends the evidence of the findings not recorded yet to the
// outbox (the chain head locked once for the pass) and records each with
// its evidence id. A finding recorded before (a lease whose judgement was
// postponed and is unconfirmed again) gets no second evidence.
func (e *Expiry) recordAll(ctx context.Context, tx pgx.Tx, findings []schemas.Finding, due []store.DueLease) error {
	if len(findings) == 0 {
		return nil
	}
	ids := make([]string, len(findings))
	for i, f := range findings {
		ids[i] = f.ID
	}
	recorded, err := existingFindings(ctx, tx, ids)
	if err != nil {
		return err
	}
	byLease := make(map[string]*store.DueLease, len(due))
	for i := range due {
		byLease[due[i].LeaseID] = &due[i]
	}
	var fresh []schemas.Finding
	var evs []evidence.Event
	for _, f := range findings {
		if recorded[f.ID] {
			continue
		}
		var lc *evidence.LeaseContext
		if l, ok := byLease[f.LeaseID]; ok {
			lc = &evidence.LeaseContext{LeaseID: l.LeaseID, VaultRequestID: l.LastRequestID, EntityID: l.EntityID,
				RemoteAddress: l.RemoteAddress, Mount: l.Mount, Role: l.Role}
		}
		ev, err := e.evidence.Finding(f, lc)
		if err != nil {
			return fmt.Errorf("build finding evidence: %w", err)
		}
		fresh, evs = append(fresh, f), append(evs, ev)
	}
	if len(fresh) == 0 {
		return nil
	}
	evIDs := make([]string, len(evs))
	for i, ev := range evs {
		evIDs[i] = ev.ID
	}
	if _, err := store.InsertFindings(ctx, tx, fresh, evIDs); err != nil {
		return err
	}
	// Evidence last: appending holds the chain head lock until commit.
	if _, err := evidence.AppendMany(ctx, tx, evs); err != nil {
		return fmt.Errorf("append finding evidence: %w", err)
	}
	return nil
}

// Metrics are the detectors' Prometheus metrics.
type Metrics struct {
	findings     *prometheus.CounterVec
	extended     prometheus.Counter
	rearmed      prometheus.Counter
	targetErrors *prometheus.CounterVec
	tick         prometheus.Histogram
	steps        *prometheus.HistogramVec
}

// PassSteps are the steps of an expiry pass, in order, as
// leaseguard_detector_pass_step_seconds labels them.
var PassSteps = []string{"claim", "read_targets", "judge", "issue", "queue", "mark", "record", "commit"}

// step observes the time since start as one pass's time in step, and
// returns now, the start of the next step.
func (m *Metrics) step(step string, start time.Time) time.Time {
	now := time.Now()
	m.steps.WithLabelValues(step).Observe(now.Sub(start).Seconds())
	return now
}

// NewMetrics creates and registers (when reg is not nil) detector metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		findings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaseguard_findings_total",
			Help: "Findings raised, by rule, severity, mode and action.",
		}, []string{"rule", "severity", "mode", "action"}),
		rearmed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leaseguard_expiry_commands_reissued_total",
			Help: "Leases judged again because their revocation command never reached the revoker within its lifetime.",
		}),
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
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "leaseguard_detector_pass_step_seconds",
			Help: "Time one expiry detector pass that found due leases spent in each step: claim (the policy and " +
				"the due leases), read_targets (pg_roles of each target), judge (corroboration, Vault included), " +
				"issue (signing the commands), queue (the revocation queue), mark (the leases' transitions), " +
				"record (findings and their evidence) and commit.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"step"}),
	}
	// Exported from the start (a Vec shows no series before its first
	// use), so dashboards have every step before the first due lease.
	for _, step := range PassSteps {
		m.steps.WithLabelValues(step)
	}
	if reg != nil {
		reg.MustRegister(m.findings, m.extended, m.rearmed, m.targetErrors, m.tick, m.steps)
	}
	return m
}
