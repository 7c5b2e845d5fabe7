package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// Errors of the policy's changes.
var (
	// ErrInvalid: the change lacks its reason or actor, or names a bad
	// scope, mode or version.
	ErrInvalid = errors.New("invalid policy change")
	// ErrNothingChanges: the change would record the policy in force.
	ErrNothingChanges = errors.New("the policy would not change")
	// ErrConflict: another change was recorded since the policy was read.
	ErrConflict = errors.New("the policy changed meanwhile")
	// ErrUnknownVersion: no such version is recorded.
	ErrUnknownVersion = errors.New("no such policy version")
	// ErrNoPolicy: the state store holds no policy (Bootstrap records the
	// configured one).
	ErrNoPolicy = errors.New("no enforcement policy is recorded")
)

// Spec is an enforcement policy: where rules may act, and how.
type Spec struct {
	Scope detectors.Scope
	Modes detectors.Modes
}

// ParseSpec reads a scope ("", "*", "db:<glob>,role:<glob>") and modes
// ("rule=mode,…" over the defaults), as the configuration gives them.
func ParseSpec(scope, modes string) (Spec, error) {
	sc, err := detectors.ParseScope(scope)
	if err != nil {
		return Spec{}, fmt.Errorf("scope: %w", err)
	}
	m, err := detectors.ParseModes(modes)
	if err != nil {
		return Spec{}, fmt.Errorf("modes: %w", err)
	}
	if err := detectors.ValidateModes(m); err != nil {
		return Spec{}, fmt.Errorf("modes: %w", err)
	}
	return Spec{Scope: sc, Modes: m}, nil
}

// Equal compares canonical forms.
func (s Spec) Equal(o Spec) bool {
	return s.Scope.String() == o.Scope.String() && s.Modes.String() == o.Modes.String()
}

// state is the spec as evidence records it.
func (s Spec) state(version int64) schemas.PolicyState {
	return schemas.PolicyState{Version: version, Scope: s.Scope.String(), Modes: modeMap(s.Modes)}
}

// modeMap is every known rule's mode.
func modeMap(m detectors.Modes) map[string]schemas.Mode {
	out := make(map[string]schemas.Mode, len(detectors.DefaultModes))
	for r := range detectors.DefaultModes {
		out[r] = m.Mode(r)
	}
	return out
}

// Record is one recorded version of the policy.
type Record struct {
	Version int64
	Kind    schemas.PolicyChangeKind
	Spec
	Actor                 string
	Reason                string
	RestoredVersion       int64
	RestoredConfiguration bool
	ChangedAt             time.Time
	EvidenceID            string
}

// Policies is the policy store of one state store. It is a
// detectors.PolicySource.
type Policies struct {
	pool       *pgxpool.Pool
	evidence   evidence.Builder
	configured Spec
	// guard sets apart in the report the users the revoker would spare.
	guard NameGuard
}

var _ detectors.PolicySource = (*Policies)(nil)

// New returns the policies of the state store behind pool; configured is
// the configuration's starting point (nil modes: the defaults).
func New(pool *pgxpool.Pool, b evidence.Builder, configured Spec) *Policies {
	if configured.Modes == nil {
		configured.Modes, _ = detectors.ParseModes("")
	}
	return &Policies{pool: pool, evidence: b, configured: configured}
}

// WithGuard makes the report set apart the users g (the revoker's name
// guards) would spare; it returns p.
func (p *Policies) WithGuard(g NameGuard) *Policies {
	p.guard = g
	return p
}

// Configured is the configuration's starting point.
func (p *Policies) Configured() Spec { return p.configured }

// Policy is the policy in force, read with q (a pass's transaction). It is
// never cached: every pass reads it, so a change recorded by any process
// applies on every process from its next pass.
//
// Read first in a pass's transaction, it takes the policy's shared lock
// for that transaction: a change (which takes it exclusively) waits for the
// passes in flight, so the pilot judgements they record are there to be
// armed again, and a pass that starts during a change waits for it.
func (p *Policies) Policy(ctx context.Context, q store.Querier) (detectors.Policy, error) {
	if _, err := q.Exec(ctx, `SELECT pg_advisory_xact_lock_shared(`+policyLockKey+`)`); err != nil {
		return detectors.Policy{}, fmt.Errorf("lock the policy: %w", err)
	}
	r, err := current(ctx, q)
	if err != nil {
		return detectors.Policy{}, err
	}
	return detectors.Policy{Version: r.Version, Modes: r.Modes, Scope: r.Scope}, nil
}

// RequiresApproval reports whether rule is in approve mode in the policy
// in force: the revoker asks for each command, so a mode changed at run
// time applies to commands already queued (a rule moved from enforce to
// approve has them refused unless approved). When the policy cannot be
// read it returns the error, and the revoker hands the command back for a
// later attempt: it fails closed (nothing is dropped) without refusing,
// as a refusal is final and a state store out of connections for a
// moment would leave the user in place for good.
func (p *Policies) RequiresApproval(ctx context.Context, rule string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err := current(ctx, p.pool)
	if err != nil {
		return false, fmt.Errorf("read the policy in force: %w", err)
	}
	return r.Modes.Mode(rule) == schemas.ModeApprove, nil
}

// Current is the policy in force.
func (p *Policies) Current(ctx context.Context) (Record, error) { return current(ctx, p.pool) }

// History is the last limit versions, newest first.
func (p *Policies) History(ctx context.Context, limit int) ([]Record, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+recordColumns+` FROM rollout_policies ORDER BY version DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("read policy history: %w", err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read policy history: %w", err)
	}
	return out, nil
}

// policyLockKey is the advisory lock of the policy of this schema: passes
// hold it shared, changes exclusively (transaction locks).
const policyLockKey = `hashtextextended('leaseguard.rollout.policy:' || current_schema(), 0)`

const recordColumns = `version, kind, scope, modes, actor, reason, coalesce(restored_version, 0), restored_configuration,
	changed_at, evidence_id`

// current is the newest version. A version whose evidence is not in the
// outbox was not recorded by leaseguard (every change appends its evidence
// in its transaction): it is refused, so no pass acts under it.
func current(ctx context.Context, q store.Querier) (Record, error) {
	var evidenced bool
	r, err := scanRecord(q.QueryRow(ctx, `SELECT `+recordColumns+`,
			EXISTS (SELECT 1 FROM evidence_outbox AS o WHERE o.id = p.evidence_id)
		FROM rollout_policies AS p ORDER BY version DESC LIMIT 1`), &evidenced)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Record{}, ErrNoPolicy
	case err != nil:
		return Record{}, err
	case !evidenced:
		return Record{}, fmt.Errorf("policy version %d has no evidence in the outbox: it was not recorded by leaseguard; refused", r.Version)
	}
	return r, nil
}

func version(ctx context.Context, q store.Querier, v int64) (Record, error) {
	r, err := scanRecord(q.QueryRow(ctx, `SELECT `+recordColumns+` FROM rollout_policies WHERE version = $1`, v))
	if errors.Is(err, pgx.ErrNoRows) {
		return Record{}, fmt.Errorf("%w: version %d", ErrUnknownVersion, v)
	}
	return r, err
}

// scanRecord reads one row. A policy this binary cannot read (a bad scope,
// a mode a rule cannot have) is an error, so no pass runs under a policy
// it misreads; rules this binary does not know are ignored, and rules the
// row does not name (added since) have their default mode.
func scanRecord(row pgx.Row, extra ...any) (Record, error) {
	var r Record
	var scope, kind string
	var modes map[string]schemas.Mode
	dest := append([]any{&r.Version, &kind, &scope, &modes, &r.Actor, &r.Reason, &r.RestoredVersion,
		&r.RestoredConfiguration, &r.ChangedAt, &r.EvidenceID}, extra...)
	if err := row.Scan(dest...); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return r, err
		}
		return r, fmt.Errorf("read policy: %w", err)
	}
	r.Kind = schemas.PolicyChangeKind(kind)
	sc, err := detectors.ParseScope(scope)
	if err != nil {
		return r, fmt.Errorf("policy version %d: scope: %w", r.Version, err)
	}
	m, _ := detectors.ParseModes("")
	for rule, mode := range modes {
		switch mode {
		case schemas.ModeObserve, schemas.ModeApprove, schemas.ModeEnforce:
		default:
			return r, fmt.Errorf("policy version %d: rule %s: mode %q is not observe, approve or enforce", r.Version, rule, mode)
		}
		if _, known := detectors.DefaultModes[rule]; known {
			m[rule] = mode
		}
	}
	if err := detectors.ValidateModes(m); err != nil {
		return r, fmt.Errorf("policy version %d: %w", r.Version, err)
	}
	r.Spec = Spec{Scope: sc, Modes: m}
	return r, nil
}

func encodeModes(m detectors.Modes) ([]byte, error) {
	b, err := json.Marshal(modeMap(m))
	if err != nil {
		return nil, fmt.Errorf("encode modes: %w", err)
	}
	return b, nil
}

// checkWho refuses a change without an actor or a reason.
func checkWho(actor, reason string) error {
	switch {
	case strings.TrimSpace(reason) == "":
		return fmt.Errorf("%w: a reason is required", ErrInvalid)
	case strings.TrimSpace(actor) == "":
		return fmt.Errorf("%w: an actor is required", ErrInvalid)
	}
	return nil
}
