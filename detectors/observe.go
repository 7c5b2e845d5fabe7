package detectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/observer/observed"
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
//     was dropped under it (usesysid matches no role; on MySQL, a
//     processlist user with no account left in mysql.user). In enforce mode a
//     signed terminate_session command names it (pid, backend_start, user
//     oid), for a client backend whose former role the observer's history
//     knows and that matches the managed pattern; the revoker ends it only
//     if the database still shows exactly that ghost, behind its guards,
//     the blast-radius limit and its evidence. The ghost of a role history
//     does not know (dropped before leaseguard saw it) is reported, never
//     ended: nothing shows that leaseguard manages it.
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
	// Modes and Scope are the policy when DBRulesDeps.Policy is nil.
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
	// CommandTTL is the lifetime of the commands issued (default 10m): a
	// command that never reached the revoker's record within it is issued
	// again while its condition lasts.
	CommandTTL time.Duration
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
		CommandTTL:        10 * time.Minute,
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
		{&c.OrphanGrace, &d.OrphanGrace}, {&c.ClockSkew, &d.ClockSkew}, {&c.CommandTTL, &d.CommandTTL},
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

// DBRulesDeps are the observer rules' collaborators.
type DBRulesDeps struct {
	Issuer   Issuer
	Sink     CommandSink
	Evidence evidence.Builder
	Logger   *slog.Logger
	// Metrics: share the expiry detector's (leaseguard_findings_total).
	Metrics *Metrics
	// Vault lets the rules ask Vault before they destroy (observe_vault.go);
	// nil: only the database can corroborate.
	Vault *VaultVerify
	// Policy is read at the start of every evaluation (nil: DBRulesConfig's
	// Modes and Scope).
	Policy PolicySource
}

// DBRules judges each pass of the database observer (see DBRulesConfig).
// Evaluate runs in the observer's pass transaction, which holds the duty
// of the target, so one process at a time judges a target.
type DBRules struct {
	cfg DBRulesConfig
	DBRulesDeps
	mu sync.Mutex
	// carry holds, per database, findings whose command was queued in a
	// pass whose commit may have failed: they are recorded again until a
	// pass sees them recorded.
	carry map[string][]heldFinding
	// vaultChecks: Vault's answers by lease or role, reused until
	// rechecked.
	vaultChecks map[string]vaultCheck
}

// heldFinding is a finding a pass judged, with its lease context, until it
// is recorded.
type heldFinding struct {
	f  schemas.Finding
	lc *evidence.LeaseContext
}

// NewDBRules builds the rules; cfg's unset fields get the defaults.
func NewDBRules(cfg DBRulesConfig, d DBRulesDeps) (*DBRules, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Issuer == nil || d.Sink == nil {
		return nil, errors.New("observer rules: issuer and sink are required")
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
	return &DBRules{cfg: cfg, DBRulesDeps: d, carry: map[string][]heldFinding{}}, nil
}

// Evaluate judges one observed pass inside its transaction: findings are
// recorded with their evidence in tx; commands are queued and ghost sessions
// terminated before it commits. An error means tx must be rolled back.
func (r *DBRules) Evaluate(ctx context.Context, tx pgx.Tx, p *observed.Pass) (observed.Report, error) {
	e := &evaluation{r: r, p: p, now: p.ObservedAt}
	if err := lockServer(ctx, tx, p); err != nil {
		return e.rep, err
	}
	if err := e.judge(ctx, tx); err != nil {
		return e.rep, err
	}
	if err := e.takeRecorded(ctx, tx); err != nil {
		return e.rep, err
	}
	// Carried findings not yet seen recorded stay carried whatever happens
	// to this pass.
	defer func() { r.putCarry(p.Database, e.acted) }()
	e.plan()
	if err := e.act(ctx); err != nil {
		return e.rep, err
	}
	if err := e.record(ctx, tx); err != nil {
		return e.rep, err
	}
	return e.rep, nil
}

// lockServer serialises, until tx ends, the evaluations of the targets that
// share the pass's server (in every process: the lock is the state
// store's, for its schema): each then sees the findings about the server's
// roles that the one before recorded, and a role is found once.
func lockServer(ctx context.Context, tx pgx.Tx, p *observed.Pass) error {
	if p.Server == "" || len(p.ServerTargets)+len(p.UnknownServerTargets) <= 1 {
		return nil
	}
	if _, err := tx.Exec(ctx, ServerLockSQL, p.Server); err != nil {
		return fmt.Errorf("lock the server of %s: %w", p.Database, err)
	}
	return nil
}

// ServerLockSQL takes the lock of server $1 (observed.Pass.Server) in the
// state store's schema until the transaction ends.
const ServerLockSQL = `SELECT pg_advisory_xact_lock(` + ServerLockKeySQL + `)`

// ServerLockKeySQL is the advisory lock key of server $1.
const ServerLockKeySQL = `hashtextextended('leaseguard.server:' || current_schema() || ':' || $1, 0)`

// evaluation is one pass being judged: its verdicts, the findings to
// record (todo: the carried ones first, then the fresh), the commands to
// issue, and the findings acted on that stay carried until seen recorded.
type evaluation struct {
	r   *DBRules
	p   *observed.Pass
	now time.Time
	pol Policy
	rep observed.Report

	vs       []*verdict
	recorded map[string]bool
	todo     []heldFinding
	inTodo   map[string]bool
	fresh    int // todo[fresh:] are this pass's new findings
	acted    []heldFinding
	cmds     []schemas.RevocationCommand
	reissued []string
	hold     *approvalHold
}

// judge reads the policy in force (in the pass's transaction, never kept
// for the next pass), links the pass's roles and sessions to their leases,
// and has every rule give its verdicts, marked for pilots, stranded leases
// and what Vault says.
func (e *evaluation) judge(ctx context.Context, tx pgx.Tx) (err error) {
	r, p := e.r, e.p
	if e.pol, err = r.Policy.Policy(ctx, tx); err != nil {
		return fmt.Errorf("read the enforcement policy: %w", err)
	}
	live, ghosts, names := sessionsByUser(p)
	exact, err := leasesOfPass(ctx, tx, p, names)
	if err != nil {
		return err
	}
	hmac, err := r.hmacCandidates(ctx, tx, p, exact)
	if err != nil {
		return err
	}
	for _, s := range ghosts {
		var l *store.Lease
		if ls := exact[s.FormerUser]; s.FormerUser != "" && len(ls) > 0 {
			l = &ls[0]
		}
		e.vs = append(e.vs, judgeGhost(p.Database, s, l, e.now, r.cfg))
	}
	links, err := r.linkPass(ctx, tx, p, exact, hmac)
	if err != nil {
		return err
	}
	scope, leaseDBs := p.RoleScope(), p.LeaseTargets()
	for _, role := range p.Roles {
		e.judgeRole(roleCase{role: role, sessions: live[role.Name], link: links.of(role.Name), scope: scope, leaseDBs: leaseDBs})
	}
	adaptEngine(p, e.vs)
	markPilots(e.pol, p.Database, e.vs)
	if err := r.markStranded(ctx, tx, e.now, e.vs); err != nil {
		return err
	}
	return r.corroborate(ctx, tx, e.pol, p.Database, e.now, e.vs)
}

// sessionsByUser splits the pass's sessions into the live ones by user and
// the ghosts, and lists the user names whose leases the rules need: the
// ghosts' former users, and the roles' unless the observer recorded them
// (rolesByName).
func sessionsByUser(p *observed.Pass) (live map[string][]observed.Session, ghosts []observed.Session, names []string) {
	live = map[string][]observed.Session{}
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
	if rolesByName(p) {
		return live, ghosts, names
	}
	names = slices.Grow(names, len(p.Roles))
	for _, role := range p.Roles {
		names = append(names, role.Name)
	}
	return live, ghosts, names
}

// rolesByName reports whether the pass's roles may be looked up in the
// ledger through what the observer recorded of them: it did, and they are
// in order of name, so that the leases of roles not judged are dropped
// without a set of every name.
func rolesByName(p *observed.Pass) bool {
	return p.RolesRecorded && slices.IsSortedFunc(p.Roles, func(a, b observed.Role) int { return strings.Compare(a.Name, b.Name) })
}

// leasesOfPass are the leases naming the pass's roles and the given names,
// newest first per name (store.LeasesNamingUsers). A recorded pass's roles
// are looked up without sending their names: the leases of roles the
// rules do not judge are dropped.
func leasesOfPass(ctx context.Context, tx pgx.Tx, p *observed.Pass, names []string) (map[string][]store.Lease, error) {
	if !rolesByName(p) {
		return store.LeasesNamingUsers(ctx, tx, names)
	}
	exact, err := store.LeasesNamingRecordedRoles(ctx, tx, p.Database, names)
	if err != nil {
		return nil, err
	}
	maps.DeleteFunc(exact, func(user string, _ []store.Lease) bool {
		_, judged := slices.BinarySearchFunc(p.Roles, user, func(r observed.Role, n string) int { return strings.Compare(r.Name, n) })
		return !judged && !slices.Contains(names, user)
	})
	return exact, nil
}

// judgeRole adds the verdicts of the rules about one role.
//
// The role is the server's: its verdicts are keyed by the server's scope,
// not the target's, so that a sibling target's pass finds them recorded.
func (e *evaluation) judgeRole(c roleCase) {
	scope, now, cfg := c.scopeOr(e.p.Database), e.now, e.r.cfg
	if c.link.kind == linkAmbiguous {
		e.rep.Ambiguous++
	}
	for _, v := range []*verdict{
		judgeReuseAfterRevoke(scope, c, now, cfg),
		judgeReuseUnknownLease(scope, c, e.p.Coverage, now, cfg),
		judgeOrphanRole(scope, c, e.p.Coverage, now, cfg),
	} {
		if v == nil {
			continue
		}
		if len(e.p.ServerTargets) > 1 {
			v.facts["server_targets"] = e.p.ServerTargets
		}
		e.vs = append(e.vs, v)
	}
}

// takeRecorded takes the carried findings and reads which findings, carried
// or judged now, are recorded already. The carried ones not yet recorded
// start the todo list, and stay carried (acted).
func (e *evaluation) takeRecorded(ctx context.Context, tx pgx.Tx) (err error) {
	carried := e.r.takeCarry(e.p.Database)
	ids := make([]string, 0, len(carried)+len(e.vs))
	for _, c := range carried {
		ids = append(ids, c.f.ID)
	}
	for _, v := range e.vs {
		ids = append(ids, v.id)
	}
	if e.recorded, err = existingFindings(ctx, tx, ids); err != nil {
		e.r.putCarry(e.p.Database, carried)
		return err
	}
	e.inTodo = map[string]bool{}
	for _, c := range carried {
		if !e.recorded[c.f.ID] {
			e.todo = append(e.todo, c)
			e.inTodo[c.f.ID] = true
		}
	}
	e.acted = append([]heldFinding(nil), e.todo...)
	e.fresh = len(e.todo)
	return nil
}

// plan turns the verdicts whose finding is not recorded yet into findings
// (a condition that lasts is one finding) and their commands, held for an
// owner in approve mode; a recorded verdict that asks for it has its command
// issued again.
func (e *evaluation) plan() {
	r, db := e.r, e.p.Database
	e.hold = newApprovalHold(r.cfg.ApprovalTTL, r.Issuer)
	for _, v := range e.vs {
		if e.recorded[v.id] && v.reissue {
			if f, cmd := r.finding(e.pol, db, e.now, v); cmd != nil && f.Action == schemas.ActionRevocationRequested {
				e.cmds, e.reissued = append(e.cmds, *cmd), append(e.reissued, f.ID)
			}
			continue
		}
		if e.recorded[v.id] || e.inTodo[v.id] {
			continue
		}
		e.inTodo[v.id] = true
		f, cmd := r.finding(e.pol, db, e.now, v)
		if cmd = e.hold.route(&f, cmd, e.now); cmd != nil {
			e.cmds = append(e.cmds, *cmd)
		}
		e.todo = append(e.todo, heldFinding{f: f, lc: leaseContext(v.lease)})
	}
}

// act issues and queues the commands, before any evidence is appended:
// appending holds the chain head until commit, and the revoker (when it
// runs in this process) appends evidence of its own. The new findings that
// requested a revocation stay carried until seen recorded.
func (e *evaluation) act(ctx context.Context) error {
	if len(e.cmds) == 0 {
		return nil
	}
	if err := e.r.Issuer.Issue(ctx, e.cmds); err != nil {
		return fmt.Errorf("issue %d commands: %w", len(e.cmds), err)
	}
	if err := e.r.Sink.Submit(ctx, e.cmds); err != nil {
		return fmt.Errorf("queue %d commands: %w", len(e.cmds), err)
	}
	e.rep.Commands = len(e.cmds)
	for _, h := range e.todo[e.fresh:] {
		if h.f.Action == schemas.ActionRevocationRequested {
			e.acted = append(e.acted, h)
		}
	}
	return nil
}

// record saves the held approvals, marks the reissued commands and records
// the findings with their evidence, in tx.
func (e *evaluation) record(ctx context.Context, tx pgx.Tx) error {
	if err := e.hold.save(ctx, tx); err != nil {
		return err
	}
	if err := store.MarkCommandIssued(ctx, tx, e.reissued, e.now); err != nil {
		return err
	}
	for i := range e.todo {
		if err := e.r.record(ctx, tx, &e.todo[i]); err != nil {
			return err
		}
		e.rep.Findings = append(e.rep.Findings, e.todo[i].f)
	}
	for _, f := range e.rep.Findings {
		e.r.Metrics.findings.WithLabelValues(f.Rule, string(f.Severity), string(f.Mode), f.Action).Inc()
	}
	return nil
}

// markStranded marks the verdicts whose finding is recorded with a command
// that never reached the revoker's record within a command's lifetime (it
// expired in a queue, or was refused for a key not yet accepted): while
// the condition lasts, the command is issued again.
func (r *DBRules) markStranded(ctx context.Context, tx pgx.Tx, now time.Time, vs []*verdict) error {
	ids := make([]string, len(vs))
	for i, v := range vs {
		ids[i] = v.id
	}
	stranded, err := store.StrandedFindings(ctx, tx, ids, now.Add(-r.cfg.CommandTTL))
	if err != nil {
		return err
	}
	for _, v := range vs {
		v.reissue = stranded[v.id] // corroborated again before it is issued
	}
	return nil
}

// hmacCandidates reads the HMAC'd leases issued while roles without an
// exact lease, created after the watermark, were created.
func (r *DBRules) hmacCandidates(ctx context.Context, tx pgx.Tx, p *observed.Pass, exact map[string][]store.Lease) ([]store.Lease, error) {
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
	return store.HMACLeases(ctx, tx, p.LeaseTargets(), from, to)
}

// markPilots gives the verdicts a rule would act on outside the scope
// their pilot finding id, before anything looks their findings up.
func markPilots(pol Policy, db string, vs []*verdict) {
	for _, v := range vs {
		mount, role := v.leaseRole()
		if pol.pilot(v.rule, db, mount, role) {
			v.id = pilotID(v.id)
		}
	}
}

// leaseRole is the Vault mount and role of the verdict's lease, if any.
func (v *verdict) leaseRole() (mount, role string) {
	if v.lease == nil {
		return "", ""
	}
	return v.lease.Mount, v.lease.Role
}

// finding turns a verdict into a finding under the rule's mode and the
// scope, and into a command proposal (unsigned) when it is to be acted on:
// a drop, or for a ghost session a termination. A verdict that would act
// but is not corroborated is recorded unconfirmed; one outside the scope is
// a pilot (pilotFinding).
func (r *DBRules) finding(pol Policy, db string, now time.Time, v *verdict) (schemas.Finding, *schemas.RevocationCommand) {
	mode := pol.Modes.Mode(v.rule)
	var entity, leaseID string
	if v.lease != nil {
		entity, leaseID = v.lease.EntityID, v.lease.LeaseID
	}
	mount, role := v.leaseRole()
	inScope := pol.Scope.Contains(db, mount, role)
	f := schemas.Finding{
		Type: schemas.FindingType, ID: v.id, Rule: v.rule, Severity: v.severity, Mode: mode, InScope: inScope,
		DetectedAt: now.UTC(), Database: db, DBUser: v.dbUser, LeaseID: leaseID, Mount: mount, Role: role,
		EntityID: entity, Summary: v.summary, Facts: v.facts, Action: schemas.ActionNone,
	}
	if notAct := r.whyNotAct(mode, v); notAct != "" {
		switch {
		case v.ghost != nil:
			f.Facts["termination"] = "not attempted: " + notAct
		case Acts(mode):
			f.Facts["not_enforced"] = notAct
		}
		return f, nil
	}
	pol.note(f.Facts)
	if !inScope {
		return r.pilotFinding(f, db, now, v), nil
	}
	f.Facts["corroboration"] = corroborationFacts(v, now)
	if v.corroboration == nil {
		f.Action = schemas.ActionUnconfirmed
		return f, nil
	}
	cmd := r.proposal(db, f, v)
	f.Action = schemas.ActionRevocationRequested
	f.CommandID = cmd.ID
	if v.ghost != nil {
		f.Facts["termination"] = "requested"
	}
	return f, cmd
}

// pilotFinding records what a verdict outside the scope would have done:
// would_drop or would_terminate when corroborated, nothing otherwise.
func (r *DBRules) pilotFinding(f schemas.Finding, db string, now time.Time, v *verdict) schemas.Finding {
	pilotFacts(f.Facts, f.Mode)
	f.Facts["corroboration"] = corroborationFacts(v, now)
	if v.ghost != nil {
		f.Facts["termination"] = "not attempted: outside the enforcement scope"
	}
	if v.corroboration != nil {
		f.Action = wouldAction(r.proposal(db, f, v))
	}
	return f
}

func corroborationFacts(v *verdict, now time.Time) map[string]any {
	if v.corroboration == nil {
		return map[string]any{"source": "none", "why": v.unconfirmed, "checked_at": rfc(now)}
	}
	return map[string]any{"source": v.corroboration.Source, "detail": v.corroboration.Detail,
		"checked_at": rfc(v.corroboration.CheckedAt)}
}

// whyNotAct says why a verdict is not acted on (nor would be, outside the
// scope), or "" if it is.
func (r *DBRules) whyNotAct(mode schemas.Mode, v *verdict) string {
	switch {
	case !Acts(mode):
		return "observe mode"
	case mode == schemas.ModeApprove && v.ghost != nil:
		return "approve mode: a ghost session has no role left to approve dropping; only enforce terminates it"
	case !v.mayEnforce:
		return v.whyNot
	}
	return ""
}

// proposal is the command a corroborated verdict asks for, to be issued
// (signed) or held for approval.
func (r *DBRules) proposal(db string, f schemas.Finding, v *verdict) *schemas.RevocationCommand {
	cmd := &schemas.RevocationCommand{
		Action: schemas.ActionDropRole, Issuer: "detector", Rule: v.rule, FindingID: f.ID, Database: db,
		DBUser: v.dbUser, RoleOID: v.oid, LeaseID: f.LeaseID, Reason: f.Summary, Corroboration: *v.corroboration,
	}
	if v.ghost == nil {
		// One command per server: a sibling target's pass that judged the
		// role too issues the same id, which the revoker runs once.
		cmd.ID = id("revoke", v.role.scopeOr(db), v.dbUser, f.LeaseID, v.rule, oidString(v.oid))
		return cmd
	}
	s := v.ghost
	cmd.ID = id("terminate", db, strconv.Itoa(int(s.PID)), strconv.FormatInt(s.BackendStart.UnixMicro(), 10))
	cmd.Action, cmd.RoleOID = schemas.ActionTerminateSession, 0
	cmd.Session = &schemas.SessionRef{PID: s.PID, BackendStart: s.BackendStart.UTC(), UserOID: s.UserOID}
	return cmd
}

// record appends the finding's evidence and inserts it. A client chooses
// its application_name: one that looks like a secret is withheld from both
// (evidence.Builder, store.InsertFinding), never a reason to stop.
func (r *DBRules) record(ctx context.Context, tx pgx.Tx, p *heldFinding) error {
	ev, err := r.Evidence.Finding(p.f, p.lc)
	if err != nil {
		return fmt.Errorf("build finding evidence %s: %w", p.f.ID, err)
	}
	if _, err := store.InsertFinding(ctx, tx, p.f, ev.ID); err != nil {
		return err
	}
	if _, err := evidence.Append(ctx, tx, ev); err != nil {
		return fmt.Errorf("append finding evidence: %w", err)
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

func (r *DBRules) takeCarry(db string) []heldFinding {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.carry[db]
	delete(r.carry, db)
	return c
}

func (r *DBRules) putCarry(db string, ps []heldFinding) {
	if len(ps) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.carry[db] = append(r.carry[db], ps...)
}
