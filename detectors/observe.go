package detectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// Defaults of DBRulesConfig.
const (
	DefaultReuseGrace        = 10 * time.Second
	DefaultUnknownLeaseGrace = time.Minute
	DefaultOrphanGrace       = 2 * time.Minute
	DefaultClockSkew         = 30 * time.Second
)

// DBRulesConfig configures the rules judged on each pass of the database
// observer:
//
//   - ghost-session (critical; enforce by default): a session whose role
//     was dropped under it (usesysid matches no role). In enforce mode it is
//     terminated, by pid and only if its backend_start is still the one
//     observed, and only a client backend whose former role matches the
//     managed pattern or is unknown to the observer's history (unless
//     GhostKnownOnly). No revocation command: no role is left to drop. The
//     termination's result is in the finding's facts ("termination").
//   - credential-reuse-after-revoke (critical; enforce): a live session of
//     a role whose lease in the ledger is revoked or expired, ReuseGrace
//     after the lease ended. Enforce: a signed revocation command (the
//     revoker terminates the sessions and drops the role).
//   - credential-reuse-unknown-lease (critical; observe): a live session of
//     a managed role created after the coverage watermark that no lease
//     accounts for, UnknownLeaseGrace after the role was first seen.
//   - orphan-role (high with an ended lease, medium with none; observe): a
//     managed role still present OrphanGrace after its lease ended, or
//     created after the watermark with no lease and present OrphanGrace
//     after it was first seen.
//
// A role that may predate the watermark (there at the observer's first
// pass) is never judged as having no lease. A lease linked only by Vault's
// username template (its user was HMAC'd in the audit log) gives findings
// but never enforcement.
type DBRulesConfig struct {
	Modes Modes
	Scope Scope
	// ManagedPattern decides which ghost sessions may be terminated
	// (default ^v-, as the revoker's).
	ManagedPattern *regexp.Regexp
	// ReuseGrace: after a lease ended, how long a session may still be
	// seen before it is reuse (Vault's own drop in flight, clock skew).
	// Default 10s.
	ReuseGrace time.Duration
	// UnknownLeaseGrace: after a role is first seen, how long the ledger
	// has to learn of its lease (audit ingest lag). Default 1m.
	UnknownLeaseGrace time.Duration
	// OrphanGrace: how long a role may outlive its lease, or exist with no
	// lease. Default 2m.
	OrphanGrace time.Duration
	// ClockSkew tolerated between Vault's clock (lease times) and the
	// database's (role creation, backend_start) when linking HMAC'd leases
	// by time and telling whether a session started after its lease ended.
	// Default 30s.
	ClockSkew time.Duration
	// ApprovalTTL: how long a revocation of a rule in approve mode waits
	// for an owner (approval.go); 0 means DefaultApprovalTTL.
	ApprovalTTL time.Duration
	// GhostKnownOnly terminates only ghosts whose former role the
	// observer's history knows (and that matches the managed pattern);
	// by default a client backend of a role history does not know is
	// terminated too.
	GhostKnownOnly bool
}

// DefaultDBRulesConfig returns the documented defaults.
func DefaultDBRulesConfig() DBRulesConfig {
	m, _ := ParseModes("")
	return DBRulesConfig{
		Modes:             m,
		ManagedPattern:    regexp.MustCompile(`^v-`),
		ReuseGrace:        DefaultReuseGrace,
		UnknownLeaseGrace: DefaultUnknownLeaseGrace,
		OrphanGrace:       DefaultOrphanGrace,
		ClockSkew:         DefaultClockSkew,
	}
}

// WithDefaults fills unset fields (nil, zero) with the defaults.
func (c DBRulesConfig) WithDefaults() DBRulesConfig {
	d := DefaultDBRulesConfig()
	if c.Modes == nil {
		c.Modes = d.Modes
	}
	if c.ManagedPattern == nil {
		c.ManagedPattern = d.ManagedPattern
	}
	for _, f := range []struct{ v, def *time.Duration }{
		{&c.ReuseGrace, &d.ReuseGrace}, {&c.UnknownLeaseGrace, &d.UnknownLeaseGrace},
		{&c.OrphanGrace, &d.OrphanGrace}, {&c.ClockSkew, &d.ClockSkew},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	return c
}

// Validate checks the configuration.
func (c DBRulesConfig) Validate() error {
	if c.ReuseGrace < 0 || c.UnknownLeaseGrace < 0 || c.OrphanGrace < 0 || c.ClockSkew < 0 {
		return errors.New("observer rules: graces and clock skew must not be negative")
	}
	return nil
}

// GhostTerminator ends ghost sessions in a target database. Each session
// is terminated only if, at that moment, the pid still has the observed
// backend_start and usesysid, no role has that oid and it is a client
// backend; it returns the pids terminated.
type GhostTerminator interface {
	TerminateGhosts(ctx context.Context, database string, sessions []store.DBSession) (map[int32]bool, error)
}

// DBRulesDeps are the observer rules' collaborators.
type DBRulesDeps struct {
	Signer     Signer
	Sink       CommandSink
	Terminator GhostTerminator
	Evidence   evidence.Builder
	Logger     *slog.Logger
	// Metrics: share the expiry detector's (leaseguard_findings_total).
	Metrics *Metrics
	// Vault turns on verify-before-destroy (observe_vault.go); nil: off.
	Vault *VaultVerify
}

// DBRules judges each pass of the database observer (see DBRulesConfig).
// Evaluate runs in the observer's pass transaction, which holds the duty
// of the target, so one process at a time judges a target.
type DBRules struct {
	cfg DBRulesConfig
	DBRulesDeps
	mu sync.Mutex
	// carry holds, per database, findings whose action (a command
	// queued, a session terminated) happened in a pass whose commit may have
	// failed: they are recorded again until a pass sees them recorded.
	carry map[string][]pending
	// ghostFailures counts failed terminations per finding id.
	ghostFailures map[string]int
	// vaultChecks: verify-before-destroy's answers by lease or role,
	// reused until rechecked.
	vaultChecks map[string]vaultCheck
}

type pending struct {
	f  schemas.Finding
	lc *evidence.LeaseContext
	// ghost is the session a ghost-session finding may terminate.
	ghost *store.DBSession
}

// NewDBRules builds the rules; cfg's unset fields get the defaults.
func NewDBRules(cfg DBRulesConfig, d DBRulesDeps) (*DBRules, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Signer == nil || d.Sink == nil || d.Terminator == nil {
		return nil, errors.New("observer rules: signer, sink and terminator are required")
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Metrics == nil {
		d.Metrics = NewMetrics(nil)
	}
	return &DBRules{cfg: cfg, DBRulesDeps: d, carry: map[string][]pending{}, ghostFailures: map[string]int{}}, nil
}

// DBReport is what one evaluation did.
type DBReport struct {
	// Findings recorded by this pass (new ones, and carried ones).
	Findings []schemas.Finding
	// Commands queued, ghost sessions terminated.
	Commands   int
	Terminated int
	// Ambiguous counts roles not judged "unknown" because HMAC'd leases
	// issued while they were created might be theirs.
	Ambiguous int
}

// Evaluate judges one observed pass inside its transaction: findings are
// recorded with their evidence in tx; commands are queued and ghost sessions
// terminated before it commits. An error means tx must be rolled back.
func (r *DBRules) Evaluate(ctx context.Context, tx pgx.Tx, p *store.ObservedPass) (DBReport, error) {
	var rep DBReport
	now := p.ObservedAt
	live := map[string][]store.ObservedSession{}
	var ghosts []store.ObservedSession
	names := make([]string, 0, len(p.Roles))
	for _, s := range p.Sessions {
		if s.Ghost {
			ghosts = append(ghosts, s)
			if s.FormerUser != "" {
				names = append(names, s.FormerUser)
			}
			continue
		}
		live[s.UserName] = append(live[s.UserName], s)
	}
	for _, role := range p.Roles {
		names = append(names, role.Name)
	}
	exact, err := store.LeasesNamingUsers(ctx, tx, names)
	if err != nil {
		return rep, err
	}
	hmac, err := r.hmacCandidates(ctx, tx, p, exact)
	if err != nil {
		return rep, err
	}

	var vs []*verdict
	for _, s := range ghosts {
		var l *store.Lease
		if ls := exact[s.FormerUser]; s.FormerUser != "" && len(ls) > 0 {
			l = &ls[0]
		}
		vs = append(vs, judgeGhost(p.Database, s, l, r.cfg))
	}
	links, err := r.linkPass(ctx, tx, p, exact, hmac)
	if err != nil {
		return rep, err
	}
	for _, role := range p.Roles {
		c := roleCase{role: role, sessions: live[role.Name], link: links[role.Name]}
		if c.link.kind == linkAmbiguous {
			rep.Ambiguous++
		}
		for _, v := range []*verdict{
			judgeReuseAfterRevoke(p.Database, c, now, r.cfg),
			judgeReuseUnknownLease(p.Database, c, p.Coverage, now, r.cfg),
			judgeOrphanRole(p.Database, c, p.Coverage, now, r.cfg),
		} {
			if v != nil {
				vs = append(vs, v)
			}
		}
	}

	if err := r.verifyBeforeDestroy(ctx, tx, p.Database, now, vs); err != nil {
		return rep, err
	}

	// Carried findings first; then new verdicts whose finding is not
	// recorded yet (a condition that lasts is one finding).
	carried := r.takeCarry(p.Database)
	ids := make([]string, 0, len(carried)+len(vs))
	for _, c := range carried {
		ids = append(ids, c.f.ID)
	}
	for _, v := range vs {
		ids = append(ids, v.id)
	}
	recorded, err := existingFindings(ctx, tx, ids)
	if err != nil {
		r.putCarry(p.Database, carried)
		return rep, err
	}
	var todo []pending
	inTodo := map[string]bool{}
	for _, c := range carried {
		if !recorded[c.f.ID] {
			todo = append(todo, c)
			inTodo[c.f.ID] = true
		}
	}
	// Carried findings not yet seen recorded stay carried whatever happens
	// to this pass.
	acted := append([]pending(nil), todo...)
	defer func() { r.putCarry(p.Database, acted) }()

	var cmds []schemas.RevocationCommand
	var terminate []int
	hold := newApprovalHold(r.cfg.ApprovalTTL)
	fresh := len(todo)
	for _, v := range vs {
		if recorded[v.id] || inTodo[v.id] {
			continue
		}
		inTodo[v.id] = true
		f, cmd, err := r.finding(p.Database, now, v)
		if err != nil {
			return rep, err
		}
		if cmd = hold.route(&f, cmd, now); cmd != nil {
			cmds = append(cmds, *cmd)
		}
		pd := pending{f: f, lc: leaseContext(v.lease)}
		if v.ghost != nil && f.Facts["termination"] == nil {
			pd.ghost = &v.ghost.DBSession
			terminate = append(terminate, len(todo))
		}
		todo = append(todo, pd)
	}

	// Act, before any evidence is appended: appending holds the chain head
	// until commit, and the revoker (when it runs in this process) appends
	// evidence of its own.
	if len(cmds) > 0 {
		if err := r.Sink.Submit(ctx, cmds); err != nil {
			return rep, fmt.Errorf("queue %d revocations: %w", len(cmds), err)
		}
		rep.Commands = len(cmds)
		for i := fresh; i < len(todo); i++ {
			if todo[i].f.Action == schemas.ActionRevocationRequested {
				acted = append(acted, todo[i])
			}
		}
	}
	skip := map[int]bool{}
	if len(terminate) > 0 {
		var retry []int
		rep.Terminated, retry = r.terminate(ctx, p.Database, todo, terminate)
		for _, i := range retry {
			skip[i] = true
		}
		for _, i := range terminate {
			if !skip[i] {
				acted = append(acted, todo[i])
			}
		}
	}

	if err := hold.save(ctx, tx); err != nil {
		return rep, err
	}
	for i := range todo {
		if skip[i] {
			continue
		}
		if err := r.record(ctx, tx, &todo[i]); err != nil {
			return rep, err
		}
		rep.Findings = append(rep.Findings, todo[i].f)
	}
	for _, f := range rep.Findings {
		r.Metrics.findings.WithLabelValues(f.Rule, string(f.Severity), string(f.Mode), f.Action).Inc()
	}
	return rep, nil
}

// hmacCandidates reads the HMAC'd leases issued while roles without an
// exact lease, created after the watermark, were created.
func (r *DBRules) hmacCandidates(ctx context.Context, tx pgx.Tx, p *store.ObservedPass, exact map[string][]store.Lease) ([]store.Lease, error) {
	var from, to time.Time
	for _, role := range p.Roles {
		if len(exact[role.Name]) > 0 || !createdAfterCoverage(role, p.Coverage) {
			continue
		}
		f, t, ok := creationWindow(role, r.cfg.ClockSkew)
		if !ok {
			continue
		}
		if from.IsZero() || f.Before(from) {
			from = f
		}
		if t.After(to) {
			to = t
		}
	}
	if from.IsZero() {
		return nil, nil
	}
	return store.HMACLeases(ctx, tx, p.Database, from, to)
}

// finding turns a verdict into a finding under the rule's mode and the
// scope, and into a signed command when it is to be enforced by the
// revoker.
func (r *DBRules) finding(db string, now time.Time, v *verdict) (schemas.Finding, *schemas.RevocationCommand, error) {
	mode := r.cfg.Modes.Mode(v.rule)
	var mount, role, entity, leaseID string
	if v.lease != nil {
		mount, role, entity, leaseID = v.lease.Mount, v.lease.Role, v.lease.EntityID, v.lease.LeaseID
	}
	inScope := r.cfg.Scope.Contains(db, mount, role)
	f := schemas.Finding{
		Type: schemas.FindingType, ID: v.id, Rule: v.rule, Severity: v.severity, Mode: mode, InScope: inScope,
		DetectedAt: now.UTC(), Database: db, DBUser: v.dbUser, LeaseID: leaseID, Mount: mount, Role: role,
		EntityID: entity, Summary: v.summary, Facts: v.facts, Action: schemas.ActionNone,
	}
	notAct := ""
	switch {
	case !Acts(mode):
		notAct = "observe mode"
	case mode == schemas.ModeApprove && v.ghost != nil:
		notAct = "approve mode: a ghost session has no role left to approve dropping; only enforce terminates it"
	case !inScope:
		notAct = "outside the enforcement scope"
	case !v.mayEnforce:
		notAct = v.whyNot
	}
	if v.ghost != nil {
		if notAct != "" {
			f.Facts["termination"] = "not attempted: " + notAct
		}
		return f, nil, nil
	}
	if notAct != "" {
		if Acts(mode) {
			f.Facts["not_enforced"] = notAct
		}
		return f, nil, nil
	}
	cmd := schemas.RevocationCommand{
		Type:      schemas.RevocationCommandType,
		ID:        id("revoke", db, v.dbUser, leaseID, v.rule, oidString(v.oid)),
		IssuedAt:  now.UTC(),
		Issuer:    "detector",
		Rule:      v.rule,
		FindingID: f.ID,
		Database:  db,
		DBUser:    v.dbUser,
		LeaseID:   leaseID,
		Reason:    f.Summary,
	}
	if err := r.Signer.Sign(&cmd); err != nil {
		return f, nil, fmt.Errorf("sign command for %s: %w", v.dbUser, err)
	}
	f.Action = schemas.ActionRevocationRequested
	f.CommandID = cmd.ID
	return f, &cmd, nil
}

// ghostAttempts is how many passes in a row may fail to terminate a ghost
// (the target refused the statement) before its finding is recorded with the
// failure.
const ghostAttempts = 3

// terminate ends the ghost sessions of todo[idx] and records each result in
// its finding's facts. It returns how many were terminated, and the indexes
// whose termination failed and is to be retried on the next pass (their
// findings are not recorded yet).
func (r *DBRules) terminate(ctx context.Context, db string, todo []pending, idx []int) (int, []int) {
	sessions := make([]store.DBSession, 0, len(idx))
	for _, i := range idx {
		sessions = append(sessions, *todo[i].ghost)
	}
	done, err := r.Terminator.TerminateGhosts(ctx, db, sessions)
	n := 0
	var retry []int
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, i := range idx {
		facts := todo[i].f.Facts
		id := todo[i].f.ID
		if err != nil {
			r.ghostFailures[id]++
			if r.ghostFailures[id] < ghostAttempts {
				r.Logger.Warn("cannot terminate ghost session; will retry", "database", db, "pid", sessions[k].PID, "err", err)
				retry = append(retry, i)
				continue
			}
		}
		delete(r.ghostFailures, id)
		switch {
		case err != nil:
			facts["termination"] = fmt.Sprintf("failed %d times: %v", ghostAttempts, err)
		case done[sessions[k].PID]:
			facts["termination"] = "terminated"
			n++
		default:
			facts["termination"] = "not terminated: the session had ended, or its pid, start or role no longer matched"
		}
		r.Logger.Warn("ghost session", "database", db, "pid", sessions[k].PID, "former_user", todo[i].f.DBUser,
			"termination", facts["termination"], "finding_id", id)
	}
	return n, retry
}

// record appends the finding's evidence and inserts it. A client chooses
// its application_name: one that looks like a secret is withheld from both
// (evidence.Builder, store.InsertFinding), never a reason to stop.
func (r *DBRules) record(ctx context.Context, tx pgx.Tx, p *pending) error {
	ev, err := r.Evidence.Finding(p.f, p.lc)
	if err != nil {
		return fmt.Errorf("build finding evidence %s: %w", p.f.ID, err)
	}
	ev, err = evidence.Append(ctx, tx, ev)
	if err != nil {
		return fmt.Errorf("append finding evidence: %w", err)
	}
	if _, err := store.InsertFinding(ctx, tx, p.f, ev.ID); err != nil {
		return err
	}
	return nil
}

func leaseContext(l *store.Lease) *evidence.LeaseContext {
	if l == nil {
		return nil
	}
	return &evidence.LeaseContext{LeaseID: l.LeaseID, VaultRequestID: l.LastRequestID, EntityID: l.EntityID,
		RemoteAddress: l.RemoteAddress, Mount: l.Mount, Role: l.Role}
}

func existingFindings(ctx context.Context, q store.Querier, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, `SELECT id FROM findings WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("recorded findings: %w", err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("recorded findings: %w", err)
	}
	for _, id := range found {
		out[id] = true
	}
	return out, nil
}

func (r *DBRules) takeCarry(db string) []pending {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.carry[db]
	delete(r.carry, db)
	return c
}

func (r *DBRules) putCarry(db string, ps []pending) {
	if len(ps) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.carry[db] = append(r.carry[db], ps...)
}
